//! The dashboard's endpoints at scale: the real scheduler binary with 1,000 worker groups (1,000
//! workers run by this process, each with a capability of its own, so each forms its own group)
//! and 10,000 decisions in its history (a decision every 10 ms), then the requests a page makes,
//! timed over HTTP on 127.0.0.1 (a new connection each, as `curl` would).
//!
//!     cargo bench -p ebbtide --bench dashboard

#[path = "../../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Proc, http_get, status, wait_for};
use ebbtide::worker::{self, WorkerOptions};

const GROUPS: usize = 1000;
const DECISIONS: u64 = 10_000;
const REQUESTS: usize = 30;

fn main() {
    let dir = std::env::temp_dir().join(format!("ebbtide-bench-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut scheduler = Proc::start(
        &dir,
        "scheduler",
        &[
            "scheduler",
            "tcp://127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--tick-ms",
            "10",
            "--history-decisions",
            &DECISIONS.to_string(),
            "--policy-content",
            "scaling=vanilla",
        ],
    );
    let (address, admin) = scheduler.listening();
    let admin = admin.unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for i in 0..GROUPS {
        let options = WorkerOptions {
            address: address.parse().unwrap(),
            capabilities: [(format!("w{i}"), -1)].into_iter().collect(),
            group: None,
            allow_exec: false,
            token: String::new(),
            identity: format!("bench-worker-{i}"),
            gauges: vec![],
        };
        runtime.spawn(async move { worker::run(options).await });
    }
    wait_for("1,000 workers", Duration::from_secs(120), || status(&admin)["workers"] == GROUPS);
    let started = Instant::now();
    wait_for("10,000 decisions", Duration::from_secs(900), || {
        status(&admin)["decisions"]["total"].as_u64().unwrap() >= DECISIONS + 100
    });
    let s = status(&admin);
    let groups = s["groups"]["running"].as_u64().unwrap();
    println!(
        "dashboard: {groups} worker groups, {} decisions made in {:.0} s (history keeps {DECISIONS})",
        s["decisions"]["total"],
        started.elapsed().as_secs_f64()
    );
    let (_, body) = http_get(&admin, "/history", None);
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    let last = first["last_decision_seq"].as_u64().unwrap();
    let samples = first["samples"].as_array().unwrap().len() as u64;
    println!(
        "  history holds {} decisions, {} full records ({:.1} MiB); {samples} samples",
        first["kept"]["decisions"],
        first["kept"]["records"],
        first["kept"]["record_bytes"].as_f64().unwrap() / 1048576.0
    );
    let poll =
        format!("/history?samples_after={}&decisions_after={}", samples.saturating_sub(1), last.saturating_sub(100));
    for (what, path) in [
        ("first load: /history (every sample, newest 500 decisions)", "/history".to_owned()),
        ("a poll: /history after a cursor (1 sample, 100 decisions)", poll),
        ("/status", "/status".to_owned()),
        ("/decision/SEQ (one full record)", format!("/decision/{last}")),
    ] {
        let mut times = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            let t = Instant::now();
            let (code, body) = http_get(&admin, &path, None);
            times.push(t.elapsed());
            assert_eq!(code, 200, "{path}: {body}");
            bytes = body.len();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {what}: median {:.1} ms, p90 {:.1} ms, max {:.1} ms, {:.0} KB",
            ms(times[REQUESTS / 2]),
            ms(times[REQUESTS * 9 / 10]),
            ms(times[REQUESTS - 1]),
            bytes as f64 / 1000.0
        );
    }
    scheduler.signal(libc::SIGTERM);
    let _ = scheduler.wait_exit(Duration::from_secs(10));
    drop(runtime);
}
