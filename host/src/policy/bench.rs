//! Decision latency, measured in one run so the figures compare: a fresh instance per decision, a
//! reused instance, and (for built-ins) the same logic as native Rust. Calls are interleaved, so
//! noise on these shared machines hits all three alike.

use std::time::Instant;

use ebbtide_sdk::Snapshot;
use serde::Serialize;

use super::PolicyError;
use super::builtin::NativeDecide;
use super::call::Decider;
use super::component::LoadedPolicy;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub policy: String,
    pub digest: String,
    pub size_bytes: usize,
    /// Loading: compiling, checking and `describe`, as the scheduler does on a swap.
    pub compile_ms: f64,
    /// The fastest instantiation at load.
    pub instantiate_us: u64,
    /// Whether the scheduler keeps one instance between decisions for this policy.
    pub reuses_instance: bool,
    pub iterations: usize,
    pub fresh_median_us: f64,
    pub fresh_p99_us: f64,
    pub reused_median_us: f64,
    pub reused_p99_us: f64,
    pub native_median_us: Option<f64>,
    /// Reused-instance median minus native median: the cost of crossing into WebAssembly.
    pub overhead_us: Option<f64>,
}

pub fn run(
    policy: std::sync::Arc<LoadedPolicy>,
    compile_ms: f64,
    native: Option<NativeDecide>,
    params: &str,
    snapshot: &Snapshot,
    iterations: usize,
) -> Result<BenchReport, PolicyError> {
    let mut reused = Decider::new(policy.clone(), true);
    let (mut fresh_us, mut reused_us, mut native_us) = (Vec::new(), Vec::new(), Vec::new());
    let warmup = (iterations / 10).max(5);
    for i in 0..warmup + iterations {
        let keep = i >= warmup;
        let t = Instant::now();
        policy.decide(params, snapshot, &[])?;
        let fresh = t.elapsed();
        let t = Instant::now();
        reused.decide(params, snapshot, &[])?;
        let reuse = t.elapsed();
        if let Some(native) = native {
            let t = Instant::now();
            // The native side must succeed where the component did; its error is the policy's own.
            native(params, snapshot, &[]).map_err(PolicyError::Refused)?;
            if keep {
                native_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        if keep {
            fresh_us.push(fresh.as_secs_f64() * 1e6);
            reused_us.push(reuse.as_secs_f64() * 1e6);
        }
    }
    let native_median_us = (!native_us.is_empty()).then(|| percentile(&mut native_us, 0.5));
    let reused_median_us = percentile(&mut reused_us, 0.5);
    Ok(BenchReport {
        policy: policy.info.name.clone(),
        digest: policy.digest.clone(),
        size_bytes: policy.size,
        compile_ms,
        instantiate_us: policy.instantiate_us,
        reuses_instance: policy.prefers_reuse(),
        iterations,
        fresh_median_us: percentile(&mut fresh_us, 0.5),
        fresh_p99_us: percentile(&mut fresh_us, 0.99),
        reused_median_us,
        reused_p99_us: percentile(&mut reused_us, 0.99),
        native_median_us,
        overhead_us: native_median_us.map(|n| reused_median_us - n),
    })
}

/// The `q` quantile (nearest rank) of the samples.
fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}
