//! Decision latency on the large sample snapshot (the same generator as `ebbtide policy bench`):
//! native Rust, a reused instance and a fresh instance, for the built-ins in the README's "Measured" table.
//!
//! Run with `cargo bench -p ebbtide`; compare the three lines of one policy within one run.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ebbtide::policy::{CallLimits, Decider, PolicySource, sample};

fn decide(c: &mut Criterion) {
    let snapshot = sample::snapshot(sample::Size::Large);
    for name in ["vanilla", "capability", "buffer"] {
        let source = PolicySource::Builtin(name);
        let builtin = source.builtin().expect("a built-in");
        let policy: Arc<_> = source.load(CallLimits::default()).expect("the built-in loads");
        let params = sample::params(name);
        let mut group = c.benchmark_group(format!("decide/{name}/large"));
        group.bench_function("native", |b| b.iter(|| (builtin.native)(params, &snapshot, &[]).expect("decides")));
        let mut reused = Decider::new(policy.clone(), true);
        group.bench_function("reused_instance", |b| b.iter(|| reused.decide(params, &snapshot, &[]).expect("decides")));
        group.bench_function("fresh_instance", |b| b.iter(|| policy.decide(params, &snapshot, &[]).expect("decides")));
        group.finish();
    }
}

criterion_group!(benches, decide);
criterion_main!(benches);
