//! Scheduler throughput: 10,000 `echo` tasks through the real scheduler binary and 2 real worker
//! processes on 127.0.0.1, and the median round trip of a single task beside its floor measured in
//! the same run: a raw TCP ping-pong of 64 bytes between this process and a child process (this
//! benchmark re-run as an echo peer), over 127.0.0.1, with blocking sockets and no delay.
//!
//!     cargo bench -p ebbtide --bench throughput

#[path = "../../tests/common/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use cluster::{Proc, scheduler, status, wait_for};
use ebbtide::client::{Submission, SubmitOptions};
use ebbtide::protocol::peer::Connection;
use ebbtide::protocol::{Message, Role, Task};

const TASKS: u64 = 10_000;
const ROUND_TRIPS: usize = 1_000;

/// Set in the child process of the ping-pong: the address to connect to and echo.
const ECHO_PEER: &str = "EBBTIDE_BENCH_ECHO_PEER";
const PING_BYTES: usize = 64;

fn main() {
    if let Ok(address) = std::env::var(ECHO_PEER) {
        return echo_peer(&address);
    }
    let dir = std::env::temp_dir().join(format!("ebbtide-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_scheduler, address, admin) = scheduler(&dir, "scheduler", &[]);
    let _workers: Vec<Proc> = (0..2).map(|i| Proc::start(&dir, &format!("w{i}"), &["worker", &address])).collect();
    wait_for("2 workers", Duration::from_secs(10), || status(&admin)["workers"] == 2);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
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

    let round_trips = runtime.block_on(async {
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
    let (median, p99) = median_and_p99(round_trips);
    let (ping_median, ping_p99) = median_and_p99(ping_pong());
    println!(
        "single task round trip (client -> scheduler -> worker -> scheduler -> client), {ROUND_TRIPS} in sequence: \
         median {median:.0} us, p99 {p99:.0} us"
    );
    println!(
        "raw two-process TCP ping-pong on 127.0.0.1 ({PING_BYTES} bytes), {ROUND_TRIPS} in sequence: median \
         {ping_median:.0} us, p99 {ping_p99:.0} us; the task round trip is {:.1}x it",
        median / ping_median
    );
}

/// Median and 99th percentile, in microseconds.
fn median_and_p99(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(times[times.len() / 2]), us(times[times.len() * 99 / 100]))
}

/// Round trips of a raw ping-pong with a child process: the floor under one hop there and back.
fn ping_pong() -> Vec<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ECHO_PEER, &address)
        .spawn()
        .expect("the echo peer starts");
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = [7u8; PING_BYTES];
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 100 {
        let started = Instant::now();
        stream.write_all(&buf).unwrap();
        stream.read_exact(&mut buf).unwrap();
        // The first hundred warm the path up.
        if i >= 100 {
            times.push(started.elapsed());
        }
    }
    drop(stream);
    child.wait().unwrap();
    times
}

/// The child side of [`ping_pong`]: echoes until the parent closes.
fn echo_peer(address: &str) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = [0u8; PING_BYTES];
    while stream.read_exact(&mut buf).is_ok() {
        stream.write_all(&buf).unwrap();
    }
}
