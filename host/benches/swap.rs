//! Swap latency: a new build of a ~200 KB component lands on the watched path; how long until it
//! serves its first decision, and how late any tick is meanwhile (compilation must never delay a
//! decision). The real scheduler binary, a real file, timings from its decision log.
//!
//!     cargo bench -p ebbtide --bench swap

#[path = "../../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::time::Duration;

use cluster::{Proc, decisions, unix_ms, wait_for};
use ebbtide::policy::{builtin, component};

const SWAPS: usize = 20;
const TICK_MS: u64 = 20;

fn main() {
    let dir = std::env::temp_dir().join(format!("ebbtide-bench-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.wasm");
    let log = dir.join("decisions.jsonl");
    let vanilla = builtin::find("vanilla").unwrap().component;
    std::fs::write(&policy, vanilla).unwrap();
    let content = format!("scaling={}", policy.display());
    let mut scheduler = Proc::start(
        &dir,
        "scheduler",
        &[
            "scheduler",
            "tcp://127.0.0.1:0",
            "--policy-content",
            &content,
            "--tick-ms",
            &TICK_MS.to_string(),
            "--decision-log",
            log.to_str().unwrap(),
        ],
    );
    scheduler.listening();
    println!(
        "swap: {SWAPS} new builds of vanilla ({} KB) written to the watched path, ticks every {TICK_MS} ms",
        vanilla.len() / 1000
    );

    let (mut latencies, mut worst_late) = (Vec::new(), 0u64);
    for i in 0..SWAPS {
        std::thread::sleep(Duration::from_millis(200));
        let bytes = common::tagged(vanilla, &format!("bench build {i} {}", std::process::id()));
        let digest = component::digest(&bytes);
        let tmp = dir.join("policy.tmp");
        std::fs::write(&tmp, &bytes).unwrap();
        let written = unix_ms();
        std::fs::rename(&tmp, &policy).unwrap();
        let mut served = 0;
        wait_for("the new build to decide", Duration::from_secs(10), || {
            served = decisions(&log)
                .iter()
                .find(|d| d["policy_digest"] == digest.as_str())
                .map_or(0, |d| d["time_ms"].as_u64().unwrap());
            served > 0
        });
        latencies.push(served.saturating_sub(written));
        // Decisions from the write to the first of the new build: any gap beyond a tick is a late tick.
        let times: Vec<u64> = decisions(&log)
            .iter()
            .map(|d| d["time_ms"].as_u64().unwrap())
            .filter(|t| (written.saturating_sub(TICK_MS)..=served).contains(t))
            .collect();
        let late = times.windows(2).map(|w| (w[1] - w[0]).saturating_sub(TICK_MS)).max().unwrap_or(0);
        worst_late = worst_late.max(late);
    }
    latencies.sort_unstable();
    println!(
        "  write to first decision: median {} ms, p90 {} ms, max {} ms (target: median under 250 ms)",
        latencies[SWAPS / 2],
        latencies[SWAPS * 9 / 10],
        latencies[SWAPS - 1]
    );
    println!("  latest tick during the swaps: {worst_late} ms late (target: at most 10 ms)");
    let _ = std::fs::remove_dir_all(&dir);
}
