//! Scheduler throughput: 10,000 `echo` tasks through the real scheduler binary and 2 real worker
//! processes on 127.0.0.1, and the median round trip of a single task.
//!
//!     cargo bench -p ebbtide --bench throughput

#[path = "../../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Proc, scheduler, status, wait_for};
use ebbtide::client::{Submission, SubmitOptions};
use ebbtide::protocol::peer::Connection;
use ebbtide::protocol::{Message, Role, Task};

const TASKS: u64 = 10_000;
const ROUND_TRIPS: usize = 1_000;

fn main() {
    let dir = std::env::temp_dir().join(format!("ebbtide-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_scheduler, address, admin) = scheduler(&dir, "scheduler", &[]);
    let _workers: Vec<Proc> = (0..2).map(|i| Proc::start(&dir, &format!("w{i}"), &["worker", &address])).collect();
    wait_for("2 workers", Duration::from_secs(10), || status(&admin)["workers"] == 2);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let options = SubmitOptions {
        address: address.parse().unwrap(),
        function: "echo".into(),
        payload: b"hello".to_vec(),
        capabilities: Default::default(),
        count: TASKS,
        token: String::new(),
    };
    println!("throughput: {TASKS} echo tasks, 2 workers, scheduler and workers as separate processes");
    for run in 1..=3 {
        let summary = runtime.block_on(async { Submission::send(&options).await?.wait(|_| {}).await }).unwrap();
        assert_eq!(summary.done, TASKS);
        println!(
            "  run {run}: {:.0} tasks/s ({:.0} ms), latency under load p50 {:.1} ms, p99 {:.1} ms",
            summary.tasks_per_second, summary.elapsed_ms, summary.p50_ms, summary.p99_ms
        );
    }

    let mut round_trips = runtime.block_on(async {
        let mut c = Connection::open(&options.address, Role::Client, "bench", "").await.unwrap();
        let mut times = Vec::with_capacity(ROUND_TRIPS);
        for id in 1..=ROUND_TRIPS as u64 {
            let started = Instant::now();
            let task = Task { id, function: "echo".into(), payload: b"x".to_vec(), capabilities: Default::default() };
            c.outbox.send(&Message::TaskSubmit(task));
            loop {
                if let Some(Message::TaskResult(r)) = c.recv().await.unwrap() {
                    assert_eq!(r.id, id);
                    break;
                }
            }
            times.push(started.elapsed());
        }
        times
    });
    round_trips.sort();
    let median = round_trips[round_trips.len() / 2];
    let p99 = round_trips[round_trips.len() * 99 / 100];
    println!(
        "single task round trip (client -> scheduler -> worker -> scheduler -> client), {ROUND_TRIPS} in sequence: \
         median {:.0} us, p99 {:.0} us",
        median.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}
