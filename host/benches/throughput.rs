//! Scheduler throughput: 10,000 `echo` tasks through the real scheduler binary and 2 real worker
//! processes on 127.0.0.1, and the median round trip of a single task beside its floor measured in
//! the same run: a raw TCP ping-pong of 64 bytes between this process and a child process (this
//! benchmark re-run as an echo peer), over 127.0.0.1, with blocking sockets and no delay. The two
//! alternate, one task round trip then one ping-pong, so that noise hits both alike.
//!
//!     cargo bench -p ebbtide --bench throughput
//!
//! `EBBTIDE_BENCH_BINARY=PATH` runs the scheduler and workers of another build (say, the commit
//! before a change), so that two builds can be alternated in one sitting.

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
/// Round trips of each kind before the measured ones, to warm both paths up.
const WARM_UP: usize = 100;

/// Set in the child process of the ping-pong: the address to connect to and echo.
const ECHO_PEER: &str = "EBBTIDE_BENCH_ECHO_PEER";
/// Set in the child process of the ping-pong: the CPU to pin it to.
const ECHO_CPU: &str = "EBBTIDE_BENCH_ECHO_CPU";
const PING_BYTES: usize = 64;

fn main() {
    if let Ok(address) = std::env::var(ECHO_PEER) {
        return echo_peer(&address);
    }
    let dir = std::env::temp_dir().join(format!("ebbtide-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (scheduler_process, address, admin) = scheduler(&dir, "scheduler", &[]);
    let workers: Vec<Proc> = (0..2).map(|i| Proc::start(&dir, &format!("w{i}"), &["worker", &address])).collect();
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

    // The task round trip and its floor alternate, one of each at a time, so that a noisy moment on
    // these shared machines slows both alike. A hop between processes costs far more when the two
    // sit on different CPUs (the kernel wakes an idle CPU: about 30 us a hop on these VMs, against
    // 7 on one CPU), so the comparison is made twice: as deployed (nothing pinned) against a
    // ping-pong across two CPUs, then with every process pinned to one CPU against a ping-pong on it.
    let mut series = vec![("as deployed, nothing pinned", "two CPUs", 1, None)];
    let mut pids: Vec<i32> = workers.iter().map(Proc::pid).collect();
    pids.push(scheduler_process.pid());
    series.push(("every process pinned to CPU 0", "CPU 0", 0, Some(pids)));
    if available_cpus() == 1 {
        series.remove(0);
    }
    for (label, ping_placement, echo_cpu, pinned) in series {
        if let Some(pids) = &pinned {
            pids.iter().for_each(|&pid| pin_process(pid, 0));
        }
        let mut peer = EchoPeer::start(echo_cpu);
        let (tasks, pings) = runtime.block_on(round_trips(&options, &mut peer, pinned.is_some()));
        peer.stop();
        let (median, p99) = median_and_p99(tasks);
        let (ping_median, ping_p99) = median_and_p99(pings);
        println!("single task round trip (client -> scheduler -> worker -> scheduler -> client), {label}:");
        println!("  {ROUND_TRIPS} in sequence: median {median:.0} us, p99 {p99:.0} us");
        println!(
            "  raw two-process TCP ping-pong on 127.0.0.1 ({PING_BYTES} bytes) on {ping_placement}, one after each: \
             median {ping_median:.0} us, p99 {ping_p99:.0} us; the task round trip is {:.1}x it",
            median / ping_median
        );
    }
}

/// Task round trips, each followed by a ping-pong; the client runs on CPU 0 when `pinned`, and the
/// ping-pong's side of this process always does (its peer is pinned where it was started).
async fn round_trips(options: &SubmitOptions, peer: &mut EchoPeer, pinned: bool) -> (Vec<Duration>, Vec<Duration>) {
    let mut c = Connection::open(&options.address, Role::Client, "bench", "").await.unwrap();
    let (mut tasks, mut pings) = (Vec::new(), Vec::new());
    let all_cpus = pin_thread(pinned.then_some(0));
    for id in 1..=(WARM_UP + ROUND_TRIPS) as u64 {
        let started = Instant::now();
        let task = Task { id, function: "echo".into(), payload: b"x".to_vec(), capabilities: Default::default() };
        c.outbox.send(&Message::TaskSubmit(task));
        loop {
            if let Some(Message::TaskResult(r)) = c.recv().await.unwrap() {
                assert_eq!(r.id, id);
                break;
            }
        }
        let task_time = started.elapsed();
        if !pinned {
            pin_thread(Some(0));
        }
        let ping_time = peer.round_trip();
        if !pinned {
            set_affinity(0, &all_cpus);
        }
        if id as usize > WARM_UP {
            tasks.push(task_time);
            pings.push(ping_time);
        }
    }
    set_affinity(0, &all_cpus);
    (tasks, pings)
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling thread to `cpu` (leaves it as it is for `None`); returns the previous mask.
fn pin_thread(cpu: Option<usize>) -> libc::cpu_set_t {
    // SAFETY: plain affinity syscalls on the calling thread, with masks owned here.
    unsafe {
        let mut previous: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut previous);
        if let Some(cpu) = cpu {
            let mut mask: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut mask);
            set_affinity(0, &mask);
        }
        previous
    }
}

/// Pins every thread of process `pid` to `cpu`.
fn pin_process(pid: i32, cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes within it.
    let mask = unsafe {
        let mut mask: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut mask);
        mask
    };
    for thread in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: i32 = thread.unwrap().file_name().to_string_lossy().parse().unwrap();
        set_affinity(tid, &mask);
    }
}

/// `sched_setaffinity` of one thread (0: the calling one).
fn set_affinity(tid: i32, mask: &libc::cpu_set_t) {
    // SAFETY: the mask is a valid cpu_set_t of the size given.
    unsafe {
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), mask);
    }
}

/// Median and 99th percentile, in microseconds.
fn median_and_p99(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(times[times.len() / 2]), us(times[times.len() * 99 / 100]))
}

/// A raw ping-pong with a child process: the floor under one hop there and back.
struct EchoPeer {
    child: std::process::Child,
    stream: TcpStream,
    buf: [u8; PING_BYTES],
}

impl EchoPeer {
    /// An echo peer pinned to `cpu`.
    fn start(cpu: usize) -> EchoPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(ECHO_PEER, &address)
            .env(ECHO_CPU, cpu.to_string())
            .spawn()
            .expect("the echo peer starts");
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        EchoPeer { child, stream, buf: [7; PING_BYTES] }
    }

    fn round_trip(&mut self) -> Duration {
        let started = Instant::now();
        self.stream.write_all(&self.buf).unwrap();
        self.stream.read_exact(&mut self.buf).unwrap();
        started.elapsed()
    }

    fn stop(mut self) {
        drop(self.stream);
        self.child.wait().unwrap();
    }
}

/// The child side of [`ping_pong`]: echoes until the parent closes.
fn echo_peer(address: &str) {
    pin_thread(std::env::var(ECHO_CPU).ok().and_then(|c| c.parse().ok()));
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = [0u8; PING_BYTES];
    while stream.read_exact(&mut buf).is_ok() {
        stream.write_all(&buf).unwrap();
    }
}
