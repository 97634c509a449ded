//! The scheduler's memory: resident set when idle, and per queued task with 1,000,000 queued `echo`
//! tasks (no workers, so every task stays queued). Reads /proc/PID/status of the real binary.
//!
//!     cargo bench -p ebbtide --bench memory

#[path = "../../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::time::Duration;

use cluster::{rss_kib, scheduler, status, wait_for};
use ebbtide::protocol::peer::Connection;
use ebbtide::protocol::{Message, Role, Task};

const TASKS: u64 = 1_000_000;

fn main() {
    let dir = std::env::temp_dir().join(format!("ebbtide-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (scheduler, address, admin) = scheduler(&dir, "scheduler", &[]);
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(scheduler.pid());
    println!("idle scheduler: RSS {:.1} MiB", idle as f64 / 1024.0);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let address = address.parse().unwrap();
    let connection = runtime.block_on(async {
        let c = Connection::open(&address, Role::Client, "bench", "").await.unwrap();
        for chunk in 0..TASKS / 1000 {
            let messages: Vec<Message> = (0..1000)
                .map(|i| {
                    Message::TaskSubmit(Task {
                        id: chunk * 1000 + i + 1,
                        function: "echo".into(),
                        payload: b"hello".to_vec(),
                        capabilities: Default::default(),
                    })
                })
                .collect();
            c.outbox.send_all(&messages);
        }
        c
    });
    wait_for("every task queued", Duration::from_secs(300), || status(&admin)["tasks"]["pending"] == TASKS);
    std::thread::sleep(Duration::from_secs(1));
    let loaded = rss_kib(scheduler.pid());
    println!(
        "{TASKS} queued echo tasks: RSS {:.1} MiB, {:.0} bytes per queued task",
        loaded as f64 / 1024.0,
        (loaded - idle) as f64 * 1024.0 / TASKS as f64
    );
    drop(connection);
    drop(runtime);
}
