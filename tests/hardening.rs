//! The scheduler as a server on an untrusted network: each attack of the hardening issue, and each
//! bound of `[limits]`, against the real binary on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{config, http_get, http_post, rss_kib, scheduler, status, submit, up, wait_for};
use ebbtide::protocol::{Hello, Message, PROTOCOL_VERSION, Role, Task, TaskResult, TaskStatus, WorkerHeartbeat};

const NATIVE_ADAPTER: &str =
    "[[adapter]]\ntype = \"native\"\nid = \"local\"\nmax_worker_groups = 4\nworkers_per_group = 1\n";

fn socket(address: &str) -> String {
    address.trim_start_matches("tcp://").to_owned()
}

/// A protocol peer on a plain blocking socket, so a test can misbehave exactly as it wants.
struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    fn connect(address: &str) -> RawPeer {
        let stream = TcpStream::connect(socket(address)).expect("connects");
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        RawPeer { stream }
    }

    /// Connects and says hello; panics unless welcomed.
    fn join(address: &str, role: Role, token: &str) -> RawPeer {
        let mut peer = RawPeer::connect(address);
        peer.send(&hello(role, token));
        match peer.recv() {
            Some(Message::Welcome { .. }) => peer,
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    fn send(&mut self, message: &Message) {
        self.stream.write_all(&message.encode()).expect("write");
    }

    /// The next message, or `None` when the connection is closed.
    fn recv(&mut self) -> Option<Message> {
        let mut count = [0u8; 4];
        self.stream.read_exact(&mut count).ok()?;
        let segments = u32::from_le_bytes(count) as usize + 1;
        let table_len = (4 * (segments + 1)).next_multiple_of(8) - 4;
        let mut table = vec![0u8; table_len];
        self.stream.read_exact(&mut table).ok()?;
        let words: usize =
            (0..segments).map(|i| u32::from_le_bytes(table[4 * i..4 * i + 4].try_into().unwrap()) as usize).sum();
        let mut body = vec![0u8; words * 8];
        self.stream.read_exact(&mut body).ok()?;
        let frame = [&count[..], &table, &body].concat();
        Some(Message::decode(&frame).expect("the scheduler sends valid frames"))
    }

    /// Reads until a goodbye (returned) or the end of the connection (`None`).
    fn goodbye(&mut self) -> Option<String> {
        loop {
            match self.recv()? {
                Message::Goodbye(reason) => return Some(reason),
                _ => continue,
            }
        }
    }
}

fn hello(role: Role, token: &str) -> Message {
    Message::Hello(Hello {
        role,
        protocol_version: PROTOCOL_VERSION,
        identity: format!("test-{}", role.as_str()),
        token: token.into(),
    })
}

fn task(id: u64, function: &str, payload: &str) -> Message {
    Message::TaskSubmit(Task {
        id,
        function: function.into(),
        payload: payload.into(),
        capabilities: Default::default(),
    })
}

/// 100 connections that each claim a 16 MiB frame and send nothing else: before a hello, frames are
/// capped at 64 KiB, so each is refused after its 8-byte header and memory does not move.
#[test]
fn header_only_connections_before_a_hello_cost_no_memory() {
    let dir = common::temp_dir("hardening-headers");
    let (proc, address, _) = scheduler(&dir, "scheduler", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(proc.pid());
    let mut peers: Vec<RawPeer> = (0..100).map(|_| RawPeer::connect(&address)).collect();
    for peer in &mut peers {
        peer.stream.write_all(&[0, 0, 0, 0, 0xfe, 0xff, 0x1f, 0]).unwrap();
    }
    let reasons: Vec<Option<String>> = peers.iter_mut().map(RawPeer::goodbye).collect();
    let after = rss_kib(proc.pid());
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    assert!(grown_mib < 64.0, "RSS grew by {grown_mib:.1} MiB under 100 header-only connections");
    for reason in &reasons {
        let reason = reason.as_deref().unwrap_or("closed without a goodbye");
        assert!(reason.contains("hello_frame_bytes"), "the refusal names the setting: {reason}");
    }
    eprintln!("RSS before {before} KiB, after 100 header-only connections {after} KiB ({grown_mib:.1} MiB)");
}

/// After a hello, a frame that stops midway is dropped after frame_timeout_ms; a peer that sends no
/// hello at all is dropped after hello_timeout_ms.
#[test]
fn stalled_frames_and_silent_peers_are_dropped_on_time() {
    let dir = common::temp_dir("hardening-stall");
    let (_proc, address, _) =
        scheduler(&dir, "scheduler", &["--limit", "frame_timeout_ms=300", "--limit", "hello_timeout_ms=500"]);
    let mut stalled = RawPeer::join(&address, Role::Client, "");
    // A frame claiming 1 MiB, of which 16 bytes arrive.
    stalled.stream.write_all(&[0, 0, 0, 0, 0, 0, 2, 0]).unwrap();
    stalled.stream.write_all(&[7u8; 16]).unwrap();
    let reason = stalled.goodbye().expect("a goodbye");
    assert!(reason.contains("frame_timeout_ms"), "{reason}");

    let mut silent = RawPeer::connect(&address);
    let reason = silent.goodbye().expect("a goodbye");
    assert!(reason.contains("hello_timeout_ms"), "{reason}");
}

/// At max_connections, a new connection is refused with a goodbye naming the setting, and the
/// scheduler logs it; those already connected are served.
#[test]
fn connections_past_the_cap_are_refused_naming_the_setting() {
    let dir = common::temp_dir("hardening-cap");
    let (proc, address, admin) = scheduler(&dir, "scheduler", &["--limit", "max_connections=5"]);
    let mut held: Vec<RawPeer> = (0..5).map(|_| RawPeer::join(&address, Role::Client, "")).collect();
    let mut refused = RawPeer::connect(&address);
    let reason = refused.goodbye().expect("a goodbye");
    assert!(reason.contains("max_connections"), "{reason}");
    wait_for("the refusal in the log", Duration::from_secs(5), || proc.stderr().contains("max_connections"));
    // The admitted are still served.
    held[0].send(&Message::TaskSubmit(Task {
        id: 1,
        function: "echo".into(),
        payload: b"x".to_vec(),
        capabilities: [("gpu".to_owned(), 1)].into_iter().collect(),
    }));
    wait_for("the task to be queued", Duration::from_secs(5), || status(&admin)["tasks"]["pending"] == 1);
    // A slot frees when a connection ends.
    drop(held.pop());
    wait_for("a free slot", Duration::from_secs(5), || {
        let mut peer = RawPeer::connect(&address);
        peer.send(&hello(Role::Client, ""));
        matches!(peer.recv(), Some(Message::Welcome { .. }))
    });
}

/// A worker that holds no task sends results for ids 1 to 20: none reaches the client, each is
/// counted, the forger is closed, and the real worker's result is the one the client gets.
#[test]
fn forged_results_never_reach_the_client() {
    let dir = common::temp_dir("hardening-forge");
    let (_proc, address, admin) = scheduler(&dir, "scheduler", &["--token", "secret"]);
    let worker_log = dir.join("worker.stderr");
    let mut worker = std::process::Command::new(common::cluster::binary())
        .args(["worker", &address, "--token", "secret"])
        .stderr(std::fs::File::create(&worker_log).unwrap())
        .spawn()
        .expect("worker starts");
    wait_for("the worker", Duration::from_secs(10), || status_with_token(&admin)["workers"] == 1);
    let mut client = RawPeer::join(&address, Role::Client, "secret");
    client.send(&task(1, "sleep", "1500"));
    wait_for("the task to run", Duration::from_secs(5), || status_with_token(&admin)["tasks"]["running"] == 1);

    let mut forger = RawPeer::join(&address, Role::Worker, "secret");
    forger.send(&Message::WorkerHeartbeat(WorkerHeartbeat {
        capabilities: Default::default(),
        group: None,
        assigned: vec![],
        gauges: vec![],
    }));
    for id in 1..=20 {
        forger.send(&Message::TaskResult(TaskResult { id, status: TaskStatus::Failed, output: b"forged".to_vec() }));
    }
    let reason = forger.goodbye().expect("the forger is closed");
    assert!(reason.contains("max_violations"), "{reason}");

    match client.recv() {
        Some(Message::TaskResult(r)) => {
            assert_eq!((r.id, r.status), (1, TaskStatus::Done), "the real result: {r:?}");
            assert!(r.output.is_empty(), "not the forger's output: {:?}", String::from_utf8_lossy(&r.output));
        }
        other => panic!("expected the task's result, got {other:?}"),
    }
    let (_, metrics) = http_get(&admin, "/metrics", Some("secret"));
    assert!(metrics.contains(r#"ebbtide_protocol_violations_total{kind="result-not-held"} 16"#), "{metrics}");
    let _ = worker.kill();
    let _ = worker.wait();
}

fn status_with_token(admin: &str) -> serde_json::Value {
    let (code, body) = http_get(admin, "/status", Some("secret"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Each role has its own token: a leaked client token cannot join a worker or an adapter.
#[test]
fn role_tokens_keep_roles_apart() {
    let dir = common::temp_dir("hardening-roles");
    let (_proc, address, _) = scheduler(
        &dir,
        "scheduler",
        &["--client-token", "for-clients", "--worker-token", "for-workers", "--adapter-token", "for-adapters"],
    );
    RawPeer::join(&address, Role::Client, "for-clients");
    RawPeer::join(&address, Role::Worker, "for-workers");
    RawPeer::join(&address, Role::Adapter, "for-adapters");
    for role in [Role::Worker, Role::Adapter] {
        let mut peer = RawPeer::connect(&address);
        peer.send(&hello(role, "for-clients"));
        let reason = peer.goodbye().expect("refused");
        assert!(reason.contains(&format!("{}_token", role.as_str())), "{reason}");
    }
}

/// Past max_queued_tasks a submission fails naming the setting; oversized capability sets and
/// names are refused naming theirs; a client that leaves takes its queued tasks with it.
#[test]
fn quotas_refuse_with_the_setting_and_a_leaving_client_takes_its_tasks() {
    let dir = common::temp_dir("hardening-quotas");
    let (_proc, address, admin) = scheduler(&dir, "scheduler", &["--limit", "max_queued_tasks=100"]);
    // No workers: every accepted task stays queued.
    let mut client = RawPeer::join(&address, Role::Client, "");
    let caps = (0..40).map(|i| (format!("c{i}"), 1)).collect();
    client.send(&Message::TaskSubmit(Task { id: 1000, function: "echo".into(), payload: vec![], capabilities: caps }));
    let long_name = "x".repeat(200);
    client.send(&Message::TaskSubmit(Task {
        id: 1001,
        function: long_name,
        payload: vec![],
        capabilities: Default::default(),
    }));
    for setting in ["max_capabilities", "max_name_bytes"] {
        match client.recv() {
            Some(Message::TaskResult(r)) => {
                let text = String::from_utf8_lossy(&r.output).into_owned();
                assert!(text.contains(setting), "{text}");
            }
            other => panic!("expected a refusal naming {setting}, got {other:?}"),
        }
    }
    for id in 1..=150 {
        client.send(&task(id, "echo", "x"));
    }
    let mut refused = 0;
    while refused < 50 {
        match client.recv() {
            Some(Message::TaskResult(r)) => {
                assert_eq!(r.status, TaskStatus::Failed);
                assert!(String::from_utf8_lossy(&r.output).contains("max_queued_tasks"), "{r:?}");
                refused += 1;
            }
            other => panic!("expected refusals, got {other:?}"),
        }
    }
    assert_eq!(status(&admin)["tasks"]["pending"], 100);
    drop(client);
    wait_for("the leaving client's tasks to go", Duration::from_secs(5), || status(&admin)["tasks"]["pending"] == 0);
}

/// An `ebbtide worker --allow-exec` joined to the scheduler (its stderr in `dir`).
fn exec_worker(dir: &Path, address: &str, admin: &str) -> std::process::Child {
    let worker = std::process::Command::new(common::cluster::binary())
        .args(["worker", address, "--allow-exec"])
        .stderr(std::fs::File::create(dir.join("worker.stderr")).unwrap())
        .spawn()
        .expect("worker starts");
    wait_for("the worker", Duration::from_secs(10), || status(admin)["workers"] == 1);
    worker
}

/// A cancel stops the running task at once, process group and all, and the worker is free again
/// only after it said so.
#[test]
fn cancel_stops_the_whole_process_group_and_frees_the_worker() {
    let dir = common::temp_dir("hardening-cancel");
    let (_proc, address, admin) = scheduler(&dir, "scheduler", &[]);
    let mut worker = exec_worker(&dir, &address, &admin);
    let pid_file = dir.join("grandchild.pid");
    let command = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let mut client = RawPeer::join(&address, Role::Client, "");
    client.send(&task(1, "exec", &command));
    wait_for("the grandchild to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
    });
    let grandchild: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    client.send(&Message::TaskCancel(1));
    match client.recv() {
        Some(Message::TaskResult(r)) => assert_eq!(r.status, TaskStatus::Cancelled),
        other => panic!("expected the cancellation, got {other:?}"),
    }
    wait_for("the grandchild to be killed", Duration::from_secs(10), || {
        // Gone, or a zombie waiting for init to reap it.
        std::fs::read_to_string(format!("/proc/{grandchild}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    client.send(&task(2, "echo", "after"));
    match client.recv() {
        Some(Message::TaskResult(r)) => {
            assert_eq!((r.id, r.status, r.output), (2, TaskStatus::Done, b"after".to_vec()))
        }
        other => panic!("the freed worker runs the next task; got {other:?}"),
    }
    let _ = worker.kill();
    let _ = worker.wait();
}

/// A task cancelled while it waits behind the running one (prefetched) is dropped by the worker unrun,
/// and the worker goes on with the next.
#[test]
fn a_cancelled_prefetched_task_never_runs() {
    let dir = common::temp_dir("hardening-cancel-prefetched");
    let (_proc, address, admin) = scheduler(&dir, "scheduler", &["--worker-prefetch", "4"]);
    let mut worker = exec_worker(&dir, &address, &admin);
    let marker = dir.join("ran");
    let mut client = RawPeer::join(&address, Role::Client, "");
    client.send(&task(1, "sleep", "1500"));
    client.send(&task(2, "exec", &format!("touch {}", marker.display())));
    wait_for("task 2 prefetched behind task 1", Duration::from_secs(10), || status(&admin)["tasks"]["prefetched"] == 1);
    client.send(&Message::TaskCancel(2));
    client.send(&task(3, "echo", "after"));
    let mut results = Vec::new();
    while results.len() < 3 {
        match client.recv() {
            Some(Message::TaskResult(r)) => results.push((r.id, r.status)),
            other => panic!("expected results, got {other:?}"),
        }
    }
    assert_eq!(results, [(2, TaskStatus::Cancelled), (1, TaskStatus::Done), (3, TaskStatus::Done)]);
    assert!(!marker.exists(), "the cancelled task ran");
    assert_eq!(status(&admin)["counters"]["protocol_violations"], serde_json::json!({}), "its answer is no violation");
    let _ = worker.kill();
    let _ = worker.wait();
}

/// A task that kills every worker it lands on fails after max_task_attempts, naming the attempts,
/// instead of taking the fleet down one worker at a time for ever.
#[test]
fn a_task_that_kills_its_workers_fails_after_max_task_attempts() {
    let dir = common::temp_dir("hardening-attempts");
    let adapter = format!("{NATIVE_ADAPTER}allow_exec = true\n");
    let config = config("scaling=vanilla", 50, None, &format!("[limits]\nmax_task_attempts = 2\n\n{adapter}"));
    let (_up, address, _admin) = up(&dir, "up", &config);
    let summary = submit(&address, &["--function", "exec", "--payload", "kill -9 $PPID", "--count", "1"]);
    assert_eq!(summary["failed"], 1, "{summary}");
    let why = summary["first_failure"].as_str().unwrap_or_default();
    assert!(why.contains("failed after 2 attempts (max_task_attempts = 2)"), "{why}");
}

/// A policy that sleeps for an hour while there is work: each decision fails at once (it cannot
/// wait), the fallback engages after max_consecutive_failures, and the fallback starts the groups.
#[test]
fn a_sleeping_policy_fails_its_decisions_and_the_fallback_serves() {
    let dir = common::temp_dir("hardening-sleep");
    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    let log = dir.join("decisions.jsonl");
    let tables = format!(
        "[scaling.params]\nmode = \"sleep-when-busy-later\"\n\n[scaling.limits]\nmax_consecutive_failures = 2\n\n{NATIVE_ADAPTER}"
    );
    let config = config(&format!("scaling={}", hostile.display()), 50, Some(&log), &tables);
    let (_up, address, admin) = up(&dir, "up", &config);
    let summary = submit(&address, &["--function", "sleep", "--payload", "50", "--count", "20"]);
    assert_eq!(summary["done"], 20, "{summary}");
    let s = status(&admin);
    assert_eq!(s["fallback_active"], true, "{}", s["policy"]);
    let failed: Vec<serde_json::Value> =
        common::cluster::decisions(&log).into_iter().filter(|d| d.get("error").is_some_and(|e| !e.is_null())).collect();
    assert_eq!(failed.len(), 2, "two failures, then the fallback decides");
    for d in &failed {
        assert!(d["error"].to_string().contains("tried to sleep"), "{}", d["error"]);
        // The decision ended within its deadline (100 ms), not after the hour it asked for.
        assert!(d["duration_us"].as_u64().unwrap() < 100_000, "{d}");
    }
}

/// The admin endpoint reads only regular files under the size cap and inside policy_dirs, takes
/// only JSON and wasm bodies, and drops a client that sends no headers.
#[test]
fn admin_refuses_devices_fifos_big_files_foreign_folders_and_form_posts() {
    let dir = common::temp_dir("hardening-admin");
    let allowed = dir.join("policies");
    std::fs::create_dir_all(&allowed).unwrap();
    let (_proc, _address, admin) = scheduler(
        &dir,
        "scheduler",
        &[
            "--limit",
            &format!("policy_dirs={}:/dev", allowed.display()),
            "--limit",
            "max_policy_bytes=100000",
            "--limit",
            "admin_header_timeout_ms=500",
        ],
    );
    let swap = |spec: &str| {
        let started = Instant::now();
        let (code, body) =
            http_post(&admin, "/policy", "application/json", format!("{{\"scaling\": \"{spec}\"}}").as_bytes());
        (code, body, started.elapsed())
    };
    let (code, body, took) = swap("/dev/zero");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("not a regular file"), "{body}");
    assert!(took < Duration::from_secs(5), "answered in {took:?}");

    let fifo = allowed.join("pipe.wasm");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let (code, body, _) = swap(fifo.to_str().unwrap());
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("not a regular file"), "a FIFO is refused without waiting for a writer: {body}");

    let big = allowed.join("big.wasm");
    std::fs::write(&big, vec![0u8; 200_000]).unwrap();
    let (code, body, _) = swap(big.to_str().unwrap());
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("max_policy_bytes"), "{body}");

    let elsewhere = dir.join("elsewhere.wasm");
    std::fs::write(&elsewhere, ebbtide::policy::builtin::find("no").unwrap().component).unwrap();
    let (code, body, _) = swap(elsewhere.to_str().unwrap());
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("policy_dirs"), "{body}");

    let (code, body) = http_post(&admin, "/policy", "text/plain", b"{\"scaling\": \"vanilla\"}");
    assert_eq!(code, 415, "a form post cannot swap the policy: {body}");
    let (code, body) = http_post(&admin, "/policy", "application/wasm", &vec![0u8; 200_000]);
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("max_policy_bytes"), "{body}");

    let mut idle = TcpStream::connect(&admin).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5), "a client sending no headers is dropped");
}

/// 2,000 idle connections, a client flooding submissions and a client that never reads its
/// results, while ordinary work goes on: the flood is slowed, the non-reader is closed, the rest
/// completes. Bounded: about 10 s.
#[test]
fn idle_floods_and_non_readers_do_not_stop_normal_work() {
    let dir = common::temp_dir("hardening-load");
    let (proc, address, admin) = scheduler(&dir, "scheduler", &["--limit", "write_timeout_ms=1000"]);
    let mut workers: Vec<std::process::Child> = (0..2)
        .map(|_| {
            std::process::Command::new(common::cluster::binary())
                .args(["worker", &address])
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("worker starts")
        })
        .collect();
    wait_for("two workers", Duration::from_secs(10), || status(&admin)["workers"] == 2);

    let idle: Vec<TcpStream> =
        (0..2000).map(|_| TcpStream::connect(socket(&address)).expect("idle connection")).collect();

    // The non-reader: submits 300 echoes of 64 KiB (19 MiB of results, more than any socket
    // buffer) and never reads; once its buffers are full it is closed after write_timeout_ms.
    let mut deaf = RawPeer::join(&address, Role::Client, "");
    let payload = "x".repeat(64 << 10);
    for id in 1..=300 {
        // It may be closed before it has even sent them all.
        if deaf.stream.write_all(&task(id, "echo", &payload).encode()).is_err() {
            break;
        }
    }
    wait_for("the non-reader to be closed", Duration::from_secs(20), || {
        let log = proc.stderr();
        log.contains("write_timeout_ms") || log.contains("max_outbox_bytes")
    });
    // The flooder: writes submissions as fast as it can for 3 s, reading nothing until then.
    let flood_address = address.clone();
    let flooder = std::thread::spawn(move || {
        let mut peer = RawPeer::join(&flood_address, Role::Client, "");
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(3) {
            let batch: Vec<u8> = (0..100).flat_map(|i| task(sent + i + 1, "echo", "f").encode()).collect();
            if peer.stream.write_all(&batch).is_err() {
                break;
            }
            sent += 100;
        }
        sent
    });

    let summary = submit(&address, &["--function", "echo", "--payload", "ok", "--count", "500"]);
    assert_eq!(summary["done"], 500, "normal work completes: {summary}");
    let flooded = flooder.join().unwrap();
    let s = status(&admin);
    eprintln!("flooder sent {flooded} submissions in 3 s; status counters: {}", s["counters"]);
    drop(idle);
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
}

/// A policy that takes longer than compile_timeout_ms to compile is refused at the compile stage,
/// naming the setting (here at start-up, where a 1 ms budget cannot compile any component; the
/// compile cache is off, so that an earlier run cannot spare this one the compile).
#[test]
fn a_compile_over_its_timeout_is_refused_naming_the_setting() {
    let output = std::process::Command::new(common::cluster::binary())
        .args([
            "scheduler",
            "tcp://127.0.0.1:0",
            "--policy-content",
            "scaling=vanilla",
            "--limit",
            "compile_timeout_ms=1",
            "--limit",
            "compile_cache_mb=0",
        ])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "start-up must fail: {stderr}");
    assert!(stderr.contains("compile_timeout_ms"), "the refusal names the setting: {stderr}");
}
