//! The scheduler end to end: the real binary, real sockets on 127.0.0.1, real worker processes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::cluster::{
    Proc, decisions, http_get, live_groups, processes_matching, starts, status, submit, up, wait_for,
};
use ebbtide::protocol::{AdapterHeartbeat, Hello, Message, PROTOCOL_VERSION, Role};
use serde_json::Value;

/// A burst of 64 `sleep 500` tasks leads to one decision, the first that sees it, with all 8 starts;
/// every result returns; once idle every group is shut down.
fn burst(name: &str, policy_content: &str, adapters: &str, task_caps: &[&str], expect_adapter: &str) {
    let dir = common::temp_dir(name);
    let log = dir.join("decisions.jsonl");
    let config = format!(
        r#"
[scheduler]
address = "tcp://127.0.0.1:0"
admin_address = "127.0.0.1:0"
policy_content = "{policy_content}"
tick_ms = 500
decision_log = "{}"

[scaling.params]
upper_task_ratio = 8

{adapters}
"#,
        log.display()
    );
    let (_up, address, admin) = up(&dir, name, &config);
    let adapter_count = adapters.matches("[[adapter]]").count();
    wait_for("the adapters to join", Duration::from_secs(10), || {
        status(&admin)["adapters"].as_array().unwrap().len() == adapter_count
    });

    let mut args = vec!["--function", "sleep", "--payload", "500", "--count", "64"];
    args.extend_from_slice(task_caps);
    let summary = submit(&address, &args);
    assert_eq!(summary["done"], 64, "{summary}");

    let scaling: Vec<Value> = decisions(&log).into_iter().filter(|d| !starts(d).is_empty()).collect();
    assert_eq!(scaling.len(), 1, "exactly one decision starts groups: {scaling:#?}");
    let first = &scaling[0];
    let starts = starts(first);
    assert_eq!(starts.len(), 8, "{first}");
    assert!(starts.iter().all(|s| s["start"]["adapter"] == expect_adapter), "{first}");
    assert!(first["dropped"].as_array().unwrap().is_empty(), "{first}");
    // Every start went out in the first decision that saw the burst (latency itself is measured by
    // the throughput benchmark, not asserted here).
    let saw_burst = decisions(&log)
        .into_iter()
        .find(|d| d["snapshot"]["task_groups"].as_array().unwrap().iter().any(|t| t["pending"].as_u64() > Some(0)))
        .expect("a decision saw the burst");
    assert_eq!(saw_burst["seq"], first["seq"], "the first decision that saw the burst started everything: {saw_burst}");
    assert_eq!(first["trigger"], "pressure", "{first}");
    assert!(first["snapshot"]["task_groups"].as_array().unwrap().iter().any(|t| t["pending"].as_u64() >= Some(56)));

    // Sequence numbers are contiguous from 1, and every line can be replayed.
    let all = decisions(&log);
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d["seq"], (i + 1) as u64);
        assert_eq!(d["policy_digest"].as_str().unwrap().len(), 64);
        assert!(d["state"].is_string() && d["duration_us"].is_u64());
    }

    wait_for("every group to be shut down", Duration::from_secs(20), || live_groups(&admin) == 0);
}

#[test]
fn burst_with_vanilla_scales_in_one_decision_and_back_to_zero() {
    burst(
        "burst-vanilla",
        "allocate=capability; scaling=vanilla",
        "[[adapter]]\ntype = \"native\"\nid = \"local\"\nmax_worker_groups = 8\nworkers_per_group = 1\ngrace_ms = 1000\n",
        &[],
        "local",
    );
}

#[test]
fn burst_with_capability_starts_only_where_gpus_are() {
    burst(
        "burst-capability",
        "allocate=capability; scaling=capability",
        "[[adapter]]\ntype = \"native\"\nid = \"cpu\"\ncapabilities = \"\"\nmax_worker_groups = 8\ngrace_ms = 1000\n\n\
         [[adapter]]\ntype = \"native\"\nid = \"gpu\"\ncapabilities = \"gpu=1\"\nmax_worker_groups = 8\ngrace_ms = 1000\n",
        &["--capabilities", "gpu=1"],
        "gpu",
    );
}

/// A scheduler with no adapters (`scaling=no`) and `n` workers started by hand.
fn scheduler_with_workers(dir: &Path, extra: &[&str], n: usize) -> (Proc, String, String, Vec<Proc>) {
    let mut args = vec!["scheduler", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0", "--policy-content", "scaling=no"];
    args.extend_from_slice(extra);
    let mut scheduler = Proc::start(dir, "scheduler", &args);
    let (address, admin) = scheduler.listening();
    let admin = admin.unwrap();
    let token: Vec<&str> = extra.windows(2).filter(|w| w[0] == "--token").flat_map(|w| ["--token", w[1]]).collect();
    let workers: Vec<Proc> = (0..n)
        .map(|i| {
            let mut a = vec!["worker", address.as_str()];
            a.extend_from_slice(&token);
            Proc::start(dir, &format!("worker-{i}"), &a)
        })
        .collect();
    (scheduler, address, admin, workers)
}

fn workers_connected(admin: &str, token: Option<&str>) -> u64 {
    let (_, body) = http_get(admin, "/status", token);
    serde_json::from_str::<Value>(&body).map(|s| s["workers"].as_u64().unwrap_or(0)).unwrap_or(0)
}

#[test]
fn a_killed_worker_loses_no_task() {
    let dir = common::temp_dir("sigkill-worker");
    let (_scheduler, address, admin, workers) = scheduler_with_workers(&dir, &[], 2);
    wait_for("2 workers", Duration::from_secs(10), || workers_connected(&admin, None) == 2);
    let client =
        std::thread::spawn(move || submit(&address, &["--function", "sleep", "--payload", "400", "--count", "6"]));
    wait_for("both workers busy", Duration::from_secs(10), || status(&admin)["tasks"]["running"] == 2);
    workers[0].signal(libc::SIGKILL);
    let summary = client.join().unwrap();
    assert_eq!(summary["done"], 6, "{summary}");
    assert!(status(&admin)["counters"]["tasks_requeued"].as_u64().unwrap() >= 1);
}

#[test]
fn a_worker_killed_while_holding_prefetched_tasks_loses_none() {
    let dir = common::temp_dir("sigkill-prefetch");
    let (_scheduler, address, admin, workers) = scheduler_with_workers(&dir, &["--worker-prefetch", "5"], 1);
    wait_for("1 worker", Duration::from_secs(10), || workers_connected(&admin, None) == 1);
    let submit_to = address.clone();
    let client =
        std::thread::spawn(move || submit(&submit_to, &["--function", "sleep", "--payload", "2000", "--count", "5"]));
    wait_for("one task running and four prefetched behind it", Duration::from_secs(10), || {
        let tasks = &status(&admin)["tasks"];
        (tasks["running"].as_u64(), tasks["prefetched"].as_u64()) == (Some(1), Some(4))
    });
    workers[0].signal(libc::SIGKILL);
    wait_for("the worker's loss", Duration::from_secs(10), || workers_connected(&admin, None) == 0);
    let tasks = &status(&admin)["tasks"];
    assert_eq!((tasks["pending"].as_u64(), tasks["prefetched"].as_u64()), (Some(5), Some(0)), "{tasks}");
    let _another = Proc::start(&dir, "another", &["worker", &address]);
    let summary = client.join().unwrap();
    assert_eq!((summary["done"].as_u64(), summary["failed"].as_u64()), (Some(5), Some(0)), "{summary}");
    assert_eq!(status(&admin)["counters"]["tasks_requeued"], 5, "the running task and the four prefetched");
}

/// Opens a raw connection, sends `bytes` (then ends the stream when `hang_up`), and reports whether
/// the scheduler closed it within 5 s.
fn closed_after(address: &str, bytes: &[u8], hang_up: bool) -> bool {
    let mut stream = TcpStream::connect(address.trim_start_matches("tcp://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = stream.write_all(bytes);
    if hang_up {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut sink = Vec::new();
    // The scheduler may say goodbye first; either way the stream must end.
    stream.read_to_end(&mut sink).is_ok()
}

fn hello(role: Role, version: u32, token: &str) -> Vec<u8> {
    Message::Hello(Hello { role, protocol_version: version, identity: "probe".into(), token: token.into() }).encode()
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let dir = common::temp_dir("malformed");
    let (scheduler, address, admin, _workers) = scheduler_with_workers(&dir, &["--token", "s3cret"], 2);
    wait_for("2 workers", Duration::from_secs(10), || workers_connected(&admin, Some("s3cret")) == 2);

    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut huge = vec![0u8; 8];
    huge[4..8].copy_from_slice(&(1u32 << 27).to_le_bytes()); // one segment of 2^27 words = 1 GiB
    let valid = hello(Role::Client, PROTOCOL_VERSION, "s3cret");
    let truncated = &valid[..valid.len() - 5];
    let mut wrong_role = hello(Role::Client, PROTOCOL_VERSION, "s3cret");
    wrong_role.extend(
        Message::AdapterHeartbeat(AdapterHeartbeat {
            max_worker_groups: 1,
            workers_per_group: 1,
            capabilities: None,
            priority: 0,
        })
        .encode(),
    );
    let cases: [(&str, &[u8]); 6] = [
        ("random bytes", &random),
        ("a 1 GiB frame header", &huge),
        ("a truncated frame", truncated),
        ("a message from the wrong role", &wrong_role),
        ("a wrong protocol version", &hello(Role::Client, PROTOCOL_VERSION + 1, "s3cret")),
        ("a wrong token", &hello(Role::Client, PROTOCOL_VERSION, "guess")),
    ];
    for (what, bytes) in cases {
        let hang_up = what == "a truncated frame";
        assert!(closed_after(&address, bytes, hang_up), "the connection sending {what} was not closed");
    }
    let log = scheduler.stderr();
    for reason in ["exceeds the limit", "in the middle of a frame", "may not send", "protocol version", "token"] {
        assert!(log.contains(reason), "no logged reason mentioning {reason:?} in:\n{log}");
    }

    // Everyone else is unaffected: the workers still run tasks for a client with the token.
    let output = std::process::Command::new(common::cluster::binary())
        .args(["submit", &address, "--function", "echo", "--payload", "hi", "--count", "50", "--wait", "--json"])
        .env("EBBTIDE_TOKEN", "s3cret")
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["done"], 50);
    assert_eq!(workers_connected(&admin, Some("s3cret")), 2);
    // Admin requires the token too.
    assert_eq!(http_get(&admin, "/status", None).0, 401);
}

#[test]
fn a_lost_adapter_leaves_the_snapshot_and_its_tasks_complete_later() {
    let dir = common::temp_dir("adapter-lost");
    let mut scheduler = Proc::start(
        &dir,
        "scheduler",
        &["scheduler", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0", "--params", r#"{"upper_task_ratio": 1}"#],
    );
    let (address, admin) = scheduler.listening();
    let admin = admin.unwrap();
    let adapter_args = ["adapter", "native", address.as_str(), "--id", "a", "--max-groups", "4", "--grace-ms", "500"];
    let first = Proc::start(&dir, "adapter-1", &adapter_args);
    wait_for("the adapter", Duration::from_secs(10), || status(&admin)["adapters"].as_array().unwrap().len() == 1);

    let client = {
        let address = address.clone();
        std::thread::spawn(move || submit(&address, &["--function", "sleep", "--payload", "1500", "--count", "4"]))
    };
    wait_for("4 tasks running", Duration::from_secs(15), || status(&admin)["tasks"]["running"] == 4);
    first.signal(libc::SIGKILL);
    wait_for("the adapter's groups to leave", Duration::from_secs(10), || {
        let s = status(&admin);
        s["adapters"].as_array().unwrap().is_empty() && live_groups(&admin) == 0 && s["tasks"]["pending"] == 4
    });
    let _second = Proc::start(&dir, "adapter-2", &adapter_args);
    let summary = client.join().unwrap();
    assert_eq!(summary["done"], 4, "{summary}");
    drop(first);
}

#[test]
fn a_policy_that_fails_at_start_up_is_refused_naming_the_stage() {
    let dir = common::temp_dir("failing-policy");
    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    let content = format!("scaling={}", hostile.display());
    let out = std::process::Command::new(common::cluster::binary())
        .current_dir(&dir)
        .args(["scheduler", "tcp://127.0.0.1:0", "--policy-content", &content, "--params", r#"{"mode": "trap"}"#])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected at dry-run: trap"), "{stderr}");
}

#[test]
fn demo_finishes_and_leaves_nothing_behind() {
    let dir = common::temp_dir("demo");
    let mut demo = Proc::start(&dir, "demo", &["demo"]);
    let (address, _) = demo.listening();
    let status = demo.wait_exit(Duration::from_secs(60)).expect("the demo finishes within 60 s");
    let mut stdout = String::new();
    demo.child.stdout.take().map(|mut s| s.read_to_string(&mut stdout));
    assert!(status.success(), "demo failed: {}", demo.stderr());
    std::thread::sleep(Duration::from_millis(200));
    let left = processes_matching(&address);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// `[scaling.limits] fallback` passes the swap pipeline with its own `fallback_params` at start-up: a
/// fallback that could not decide refuses start-up, naming it and why.
#[test]
fn a_fallback_that_cannot_decide_refuses_start_up_naming_it() {
    let dir = common::temp_dir("fallback-refused");
    let path = dir.join("refused.toml");
    std::fs::write(&path, "[scaling.limits]\nfallback = \"buffer\"\n").unwrap();
    let out = std::process::Command::new(common::cluster::binary())
        .args(["scheduler", "tcp://127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the fallback buffer (fallback_params in [scaling.limits])"), "{stderr}");
    assert!(stderr.contains("adapter_id"), "the reason names the missing param: {stderr}");
}

/// A failing policy hands over to a fallback that decides with its own params; `/metrics` counts the
/// failures by kind and the guard-rail drops by reason (every reason listed, at 0 until it happens).
#[test]
fn the_fallback_decides_with_its_own_params_and_failures_are_counted_by_kind() {
    let dir = common::temp_dir("fallback-params");
    let log = dir.join("decisions.jsonl");
    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    let tables = "[scaling.params]\nmode = \"trap-when-busy-later\"\n\n[scaling.limits]\nmax_consecutive_failures = 2\n\
        fallback = \"buffer\"\nfallback_params = { adapter_id = \"pool\", target_buffer = 1 }\n\n\
        [[adapter]]\ntype = \"native\"\nid = \"pool\"\nmax_worker_groups = 4\nworkers_per_group = 1\n";
    let config = common::cluster::config(&format!("scaling={}", hostile.display()), 50, Some(&log), tables);
    let (_up, address, admin) = up(&dir, "up", &config);
    let summary = submit(&address, &["--function", "sleep", "--payload", "50", "--count", "20"]);
    assert_eq!(summary["done"], 20, "{summary}");

    let by_fallback: Vec<Value> = decisions(&log)
        .into_iter()
        .filter(|d| d["policy_source"].as_str().is_some_and(|s| s.ends_with("(fallback)")))
        .collect();
    let first = by_fallback.first().expect("the fallback decided");
    assert_eq!(first["params"]["adapter_id"], "pool", "the fallback's own params: {first}");
    assert!(by_fallback.iter().any(|d| !starts(d).is_empty()), "the fallback started groups for the work");
    let (_, metrics) = http_get(&admin, "/metrics", None);
    assert!(metrics.contains(r#"ebbtide_decisions_failed_total{kind="trap"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"ebbtide_decisions_failed_total{kind="timeout"} 0"#), "{metrics}");
    for reason in ["unknown_adapter", "adapter_full", "max_starts_per_tick", "already_draining"] {
        assert!(metrics.contains(&format!("ebbtide_commands_dropped_total{{reason=\"{reason}\"}}")), "{metrics}");
    }
}

/// Voluntary context switches of each thread of a process: how often each went to sleep and was woken.
fn wakeups(pid: i32) -> std::collections::HashMap<String, u64> {
    let mut by_thread = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
        let count = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"));
        if let Some(count) = count {
            by_thread.insert(task.file_name().to_string_lossy().into_owned(), count.trim().parse().unwrap());
        }
    }
    by_thread
}

/// No timer fires in an idle scheduler: after a worker and a client came and left, its threads are
/// not woken over three seconds (before: an epoch ticker 500 times a second, housekeeping 4 times).
#[test]
fn an_idle_scheduler_is_never_woken() {
    let dir = common::temp_dir("idle-never-woken");
    let (scheduler, address, admin) = common::cluster::scheduler(&dir, "scheduler", &["--tick-ms", "100"]);
    {
        let _worker = Proc::start(&dir, "worker", &["worker", &address]);
        wait_for("a worker", Duration::from_secs(10), || status(&admin)["workers"] == 1);
        let summary = submit(&address, &["--function", "echo", "--count", "20"]);
        assert_eq!(summary["done"], 20, "{summary}");
    }
    wait_for("the worker gone", Duration::from_secs(10), || status(&admin)["workers"] == 0);
    // The history takes one more sample showing the idle state, a second later.
    std::thread::sleep(Duration::from_millis(1500));
    let before = wakeups(scheduler.pid());
    std::thread::sleep(Duration::from_secs(3));
    let after = wakeups(scheduler.pid());
    let woken: u64 = after.iter().map(|(tid, n)| n - before.get(tid).copied().unwrap_or(*n)).sum();
    assert!(woken <= 3, "the idle scheduler's threads were woken {woken} times in 3 s: {before:?} -> {after:?}");
}
