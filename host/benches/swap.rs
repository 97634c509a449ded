//! Swap latency: a build of a ~220 KB component reaches the scheduler; how long until it serves its
//! first decision, how long the swap pipeline itself took, and how late any tick is meanwhile
//! (compilation must never delay a decision). The real scheduler binary, real files, real HTTP,
//! timings from its decision log. One run measures, interleaved round by round:
//!
//! - the reference: compiling the build with Cranelift in this process (the engine's settings);
//! - the same build with the baseline compiler (Winch);
//! - a new build (served from its Winch build while Cranelift compiles it), a build seen before (the
//!   in-memory cache), the same builds after a restart with the disk cache (`compile_cache_dir`), and
//!   after a restart without disk cache and Winch: the path before this work, in the same run.
//!
//! Each tiered swap is followed by its optimizing compile; the next swap waits for it to end, so
//! swaps are measured one at a time.
//!
//! Each build arrives twice: written to the watched file (write to first decision, which includes
//! the watch's 20 ms quiet period and the wait for the next tick) and uploaded with `POST /policy`
//! (request to installed, as the scheduler reports it: the pipeline alone).
//!
//!     cargo bench -p ebbtide --bench swap

#[path = "../../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::{Proc, decisions, http_post, unix_ms, wait_for};
use ebbtide::policy::{builtin, component, engine};

const ROUNDS: usize = 10;
const TICK_MS: u64 = 20;

/// One scheduler watching `dir/policy.wasm`, with its cache in `cache` (`None`: disk cache off).
struct Scheduler {
    _proc: Proc,
    admin: String,
    log: PathBuf,
    dir: PathBuf,
}

impl Scheduler {
    fn start(dir: &Path, name: &str, cache: Option<&Path>, first: &[u8]) -> Scheduler {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join(format!("{name}.jsonl"));
        let policy = dir.join("policy.wasm");
        std::fs::write(&policy, first).unwrap();
        let content = format!("scaling={}", policy.display());
        let cache_dir = cache.unwrap_or(dir).to_str().unwrap();
        // Without a cache folder: the path before this work (no disk cache, no baseline compile).
        let bound = if cache.is_some() { "compile_cache_mb=1024" } else { "compile_cache_mb=0" };
        let baseline = if cache.is_some() { "true" } else { "false" };
        let tick = TICK_MS.to_string();
        let mut proc = Proc::start(
            dir,
            name,
            &[
                "scheduler",
                "tcp://127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--policy-content",
                &content,
                "--tick-ms",
                &tick,
                "--decision-log",
                log.to_str().unwrap(),
                "--compile-cache-dir",
                cache_dir,
                "--limit",
                bound,
                "--baseline-compiler",
                baseline,
            ],
        );
        let (_, admin) = proc.listening();
        Scheduler { _proc: proc, admin: admin.unwrap(), log, dir: dir.to_owned() }
    }

    /// The first decision by `digest` at or after `since` (unix ms), waiting for it.
    fn first_decision(&self, digest: &str, since: u64) -> u64 {
        let mut at = 0;
        wait_for("the build to decide", Duration::from_secs(30), || {
            at = decisions(&self.log)
                .iter()
                .map(|d| (d["policy_digest"] == digest, d["time_ms"].as_u64().unwrap()))
                .find(|(by, time)| *by && *time >= since)
                .map_or(0, |(_, time)| time);
            at > 0
        });
        at
    }

    /// Waits until no optimizing compile runs (each tiered swap starts one), so that swaps are
    /// measured one at a time.
    fn settle(&self) {
        let count = |stage: &str| {
            let (_, body) = cluster::http_get(&self.admin, "/metrics", None);
            let prefix = format!("ebbtide_tiered_swaps_total{{stage=\"{stage}\"}} ");
            body.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse::<u64>().unwrap())
        };
        wait_for("the optimized build", Duration::from_secs(30), || count("baseline") == count("optimized"));
    }

    /// Writes `bytes` to the watched file; returns (write to first decision, latest tick meanwhile).
    fn write(&self, bytes: &[u8]) -> (f64, u64) {
        let tmp = self.dir.join("policy.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        let written = unix_ms();
        std::fs::rename(&tmp, self.dir.join("policy.wasm")).unwrap();
        let served = self.first_decision(&component::digest(bytes), written);
        self.settle();
        let times: Vec<u64> = decisions(&self.log)
            .iter()
            .map(|d| d["time_ms"].as_u64().unwrap())
            .filter(|t| (written.saturating_sub(TICK_MS)..=served).contains(t))
            .collect();
        let late = times.windows(2).map(|w| (w[1] - w[0]).saturating_sub(TICK_MS)).max().unwrap_or(0);
        (served.saturating_sub(written) as f64, late)
    }

    /// Uploads `bytes` (`POST /policy`); returns the pipeline time the scheduler reports. Then
    /// points the scheduler back at the watched file (an upload replaces the watched source).
    fn upload(&self, bytes: &[u8]) -> f64 {
        let post = |content_type, body: &[u8]| -> serde_json::Value {
            let (code, reply) = http_post(&self.admin, "/policy", content_type, body);
            assert_eq!(code, 200, "{reply}");
            serde_json::from_str(&reply).unwrap()
        };
        let installed = post("application/wasm", bytes)["duration_ms"].as_f64().expect("the reply has duration_ms");
        self.settle();
        let file = self.dir.join("policy.wasm");
        post("application/json", serde_json::json!({ "scaling": file }).to_string().as_bytes());
        installed
    }
}

/// Median, min and max, as text.
fn summary(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    format!("median {:7.1} ms  [{:.1} .. {:.1}]", values[values.len() / 2], values[0], values[values.len() - 1])
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Default)]
struct Path2 {
    write: Vec<f64>,
    upload: Vec<f64>,
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ebbtide-bench-swap-{}", std::process::id()));
    let cache = dir.join("compile-cache");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let vanilla = builtin::find("vanilla").unwrap().component;
    let tag = |what: &str, i: usize| common::tagged(vanilla, &format!("bench {what} {i} {}", std::process::id()));
    println!(
        "swap: vanilla ({} KB), ticks every {TICK_MS} ms, {ROUNDS} rounds; each build written to the watched file \
         (write -> first decision) and, as a twin build, uploaded (POST /policy -> installed)",
        vanilla.len() / 1000
    );

    let (mut compile, mut winch, mut new, mut seen, mut disk, mut cold) =
        (Vec::new(), Vec::new(), Path2::default(), Path2::default(), Path2::default(), Path2::default());
    let mut worst_late = 0;
    // Builds: written (w) and uploaded (u) twins, so each path meets a build it has not seen.
    let (w, u): (Vec<_>, Vec<_>) = (0..ROUNDS).map(|i| (tag("write", i), tag("upload", i))).unzip();

    let first = Scheduler::start(&dir.join("first"), "first", Some(&cache), vanilla);
    for i in 0..ROUNDS {
        // The reference: this build compiled by Cranelift with the scheduler's engine settings.
        let reference = tag("reference", i);
        let t = Instant::now();
        wasmtime::component::Component::new(engine::engine(), &reference).expect("compiles");
        compile.push(t.elapsed().as_secs_f64() * 1e3);
        // The same build with the baseline compiler (Winch), which new builds serve from first.
        if let Some(baseline) = engine::baseline_engine() {
            let t = Instant::now();
            wasmtime::component::Component::new(baseline, &reference).expect("compiles");
            winch.push(t.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_millis(100));
        let (ms, late) = first.write(&w[i]);
        new.write.push(ms);
        worst_late = worst_late.max(late);
        new.upload.push(first.upload(&u[i]));
        if i > 0 {
            // Back to the previous round's builds: both in this process's memory.
            let (ms, late) = first.write(&w[i - 1]);
            seen.write.push(ms);
            worst_late = worst_late.max(late);
            seen.upload.push(first.upload(&u[i - 1]));
        }
    }
    drop(first);

    // After a restart: a fresh process meets the same builds, with the disk cache and without.
    let with_disk = Scheduler::start(&dir.join("restart"), "restart", Some(&cache), vanilla);
    let without = Scheduler::start(&dir.join("restart-off"), "restart-off", None, vanilla);
    for i in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(100));
        disk.write.push(with_disk.write(&w[i]).0);
        disk.upload.push(with_disk.upload(&u[i]));
        cold.write.push(without.write(&w[i]).0);
        cold.upload.push(without.upload(&u[i]));
    }
    drop((with_disk, without));

    let reference = median(&compile);
    println!("  full Cranelift compile of a build (this process): {}", summary(&mut compile));
    if !winch.is_empty() {
        let ratio = 100.0 * median(&winch) / reference;
        println!("  Winch (baseline) compile of the same builds:      {}   {ratio:5.1}%", summary(&mut winch));
    }
    println!(
        "                                 write -> first decision                 POST -> installed                        (medians / compile)"
    );
    for (label, path) in [
        ("new build (tiered)", &mut new),
        ("seen before (memory)", &mut seen),
        ("after restart (disk)", &mut disk),
        ("before: no disk cache, no Winch", &mut cold),
    ] {
        let (w, u) = (median(&path.write), median(&path.upload));
        println!(
            "  {label:<26} {}   {}   {:5.1}% / {:5.1}%",
            summary(&mut path.write),
            summary(&mut path.upload),
            100.0 * w / reference,
            100.0 * u / reference
        );
    }
    println!("  latest tick during the swaps: {worst_late} ms late (target: at most 10 ms)");
    let _ = std::fs::remove_dir_all(&dir);
}
