//! Hot swap end to end: the real binary, real files, real HTTP, real signals.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::{Proc, binary, config, decisions, http_post, live_groups, status, submit, up, wait_for};
use ebbtide::policy::{builtin, component};
use serde_json::Value;

fn builtin_bytes(name: &str) -> Vec<u8> {
    builtin::find(name).expect("a built-in").component.to_vec()
}

fn swaps_seen(admin: &str) -> u64 {
    let s = status(admin);
    s["swaps"]["accepted"].as_u64().unwrap() + s["swaps"]["rejected"].as_u64().unwrap()
}

/// Writes `bytes` to `path`, either by an atomic rename or by rewriting the file in place.
fn replace_file(path: &Path, bytes: &[u8], atomic: bool) {
    if atomic {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

/// `ebbtide policy swap`: its exit status and output.
fn swap_cli(admin: &str, policy: &str, params: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(binary());
    cmd.args(["policy", "swap", "--admin", admin, policy]);
    if let Some(p) = params {
        cmd.args(["--params", p]);
    }
    let out = cmd.output().expect("the binary runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

const NATIVE_ADAPTER: &str =
    "[[adapter]]\ntype = \"native\"\nid = \"pool\"\nmax_worker_groups = 4\nworkers_per_group = 1\ngrace_ms = 500\n";

/// 100 swaps, mixing atomic renames, in-place rewrites, `POST /policy` and SIGHUP, while 2,000 tasks
/// flow: every task returns, every decision is made once, every swap is reported as it should be.
#[test]
fn swaps_under_load_lose_nothing() {
    let dir = common::temp_dir("swap-under-load");
    let policy = dir.join("policy.wasm");
    let vanilla = builtin_bytes("vanilla");
    std::fs::write(&policy, &vanilla).unwrap();
    let log = dir.join("decisions.jsonl");
    let tables = format!("[scaling.params]\nupper_task_ratio = 4\n\n{NATIVE_ADAPTER}");
    let config = config("scaling=policy.wasm", 50, Some(&log), &tables);
    let (up, address, admin) = up(&dir, "up", &config);
    let client =
        std::thread::spawn(move || submit(&address, &["--function", "sleep", "--payload", "5", "--count", "2000"]));

    let (mut accepted, mut rejected) = (0u64, 0u64);
    for i in 0..100u64 {
        let before = swaps_seen(&admin);
        // A cycle of four: SIGHUP (back to the file), a rename, a rewrite, then POST (every other
        // one with params vanilla refuses, which must be rejected and leave the file policy active).
        let (expect_accepted, expect_digest) = match i % 4 {
            0 => {
                up.signal(libc::SIGHUP);
                (true, Some(component::digest(&std::fs::read(&policy).unwrap())))
            }
            1 | 2 => {
                let bytes = common::tagged(&vanilla, &format!("build {i}"));
                replace_file(&policy, &bytes, i % 4 == 1);
                (true, Some(component::digest(&bytes)))
            }
            _ => {
                let good = i % 8 == 3;
                let body = if good {
                    r#"{"scaling": "vanilla", "params": {"upper_task_ratio": 2}}"#
                } else {
                    r#"{"scaling": "vanilla", "params": {"upper_task_ratio": "many"}}"#
                };
                let (code, reply) = http_post(&admin, "/policy", "application/json", body.as_bytes());
                assert_eq!(code, if good { 200 } else { 422 }, "swap {i}: {reply}");
                let reply: Value = serde_json::from_str(&reply).unwrap();
                assert_eq!(reply["accepted"], good, "{reply}");
                (good, good.then(|| component::digest(&builtin_bytes("vanilla"))))
            }
        };
        wait_for(&format!("swap {i} to be reported"), Duration::from_secs(10), || swaps_seen(&admin) == before + 1);
        let s = status(&admin);
        if expect_accepted {
            accepted += 1;
            assert_eq!(s["policy"]["digest"].as_str(), expect_digest.as_deref(), "swap {i}: {}", s["policy"]);
        } else {
            rejected += 1;
            assert_eq!(s["swaps"]["last_error"]["rejection"]["stage"], "validate", "swap {i}: {}", s["swaps"]);
        }
        assert_eq!(s["swaps"]["accepted"], accepted, "swap {i}: {}", s["swaps"]);
        assert_eq!(s["swaps"]["rejected"], rejected, "swap {i}: {}", s["swaps"]);
    }

    let summary = client.join().unwrap();
    assert_eq!(summary["done"], 2000, "{summary}");
    let all = decisions(&log);
    assert!(all.len() > 100, "{} decisions", all.len());
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d["seq"], (i + 1) as u64, "the decision log's seq is contiguous, with nothing decided twice");
        assert_eq!(d["policy_digest"].as_str().unwrap().len(), 64);
    }
    let digests: std::collections::BTreeSet<&str> = all.iter().map(|d| d["policy_digest"].as_str().unwrap()).collect();
    assert!(digests.len() > 40, "decisions name the digest that made them ({} seen)", digests.len());
    wait_for("the pool to shrink back", Duration::from_secs(20), || live_groups(&admin) == 0);
}

/// A candidate that fails at each stage is rejected, naming the stage, and the active policy stays
/// and keeps deciding.
#[test]
fn candidates_are_rejected_at_the_failing_stage() {
    let dir = common::temp_dir("swap-stages");
    let mut scheduler = Proc::start(
        &dir,
        "scheduler",
        &["scheduler", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0", "--tick-ms", "20"],
    );
    let (address, admin) = scheduler.listening();
    let admin = admin.unwrap();
    // A worker, so that the tick runs (an empty scheduler sets no timer and does not decide).
    let _worker = Proc::start(&dir, "worker", &["worker", &address]);
    wait_for("a worker", Duration::from_secs(10), || status(&admin)["workers"] == 1);
    let active = status(&admin)["policy"]["digest"].as_str().unwrap().to_owned();

    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0 this is not a component").unwrap();
    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    let hostile = hostile.to_str().unwrap();
    let command = common::guest("ebbtide-test-guest-cli-command", "ebbtide-test-guest-cli-command.wasm");
    // `trap-when-busy` decides the idle scheduler's last snapshot fine; the sample snapshots catch it.
    let cases: [(&str, Option<&str>, &str, &str); 6] = [
        (garbage.to_str().unwrap(), None, "compile", "invalid-component"),
        (command.to_str().unwrap(), None, "world", "ebbtide:policy/scaling-policy@0.1.0"),
        (hostile, Some(r#"{"mode": "sideways"}"#), "validate", "mode"),
        (hostile, Some(r#"{"mode": "trap"}"#), "dry-run", "trap"),
        (hostile, Some(r#"{"mode": "loop"}"#), "dry-run", "timeout"),
        (hostile, Some(r#"{"mode": "trap-when-busy"}"#), "dry-run", "small sample snapshot"),
    ];
    for (policy, params, stage, detail) in cases {
        let decisions_before = status(&admin)["decisions"]["total"].as_u64().unwrap();
        let (ok, output) = swap_cli(&admin, policy, params);
        assert!(!ok, "{policy} {params:?} must be rejected: {output}");
        assert!(output.contains(&format!("rejected at {stage}: ")) && output.contains(detail), "{output}");
        let s = status(&admin);
        assert_eq!(s["swaps"]["last_error"]["rejection"]["stage"], stage, "{}", s["swaps"]);
        assert_eq!(s["policy"]["digest"], active.as_str(), "the active policy stays");
        wait_for("the active policy to keep deciding", Duration::from_secs(5), || {
            status(&admin)["decisions"]["total"].as_u64().unwrap() > decisions_before + 2
        });
    }
    // An uploaded component goes through the same pipeline.
    let (code, reply) = http_post(&admin, "/policy", "application/wasm", b"not wasm at all");
    assert_eq!(code, 422, "{reply}");
    assert!(reply.contains(r#""stage":"compile""#), "{reply}");
    let (code, reply) = http_post(&admin, "/policy", "application/json", b"{\"scalling\": \"no\"}");
    assert_eq!(code, 400, "{reply}");
    assert!(reply.contains("scalling") && reply.contains("scaling, params, limits"), "{reply}");
    let s = status(&admin);
    assert_eq!(s["swaps"]["rejected"], 7);
    assert_eq!(s["swaps"]["accepted"], 0);
    let (code, metrics) = common::cluster::http_get(&admin, "/metrics", None);
    assert_eq!(code, 200);
    assert!(metrics.contains(r#"ebbtide_swaps_total{outcome="rejected"} 7"#), "{metrics}");
    assert!(metrics.contains("ebbtide_swap_seconds_bucket"), "{metrics}");
}

/// `buffer` keeps its scale-down window in its state; a swap to a new build hands the state over,
/// so the window is not restarted: the pool shrinks one full window after it went idle, not later.
#[test]
fn state_survives_a_swap() {
    const WINDOW_MS: u64 = 3000;
    let dir = common::temp_dir("swap-state");
    let policy = dir.join("buffer.wasm");
    let buffer = builtin_bytes("buffer");
    std::fs::write(&policy, &buffer).unwrap();
    let log = dir.join("decisions.jsonl");
    let tables = format!(
        "[scaling.params]\nadapter_id = \"pool\"\ntarget_buffer = 0\nmin_ready = 0\nscale_down_stabilization_ms = {WINDOW_MS}\n\n{NATIVE_ADAPTER}"
    );
    let config = config("scaling=buffer.wasm", 50, Some(&log), &tables);
    let (_up, address, admin) = up(&dir, "up", &config);
    let summary = submit(&address, &["--function", "sleep", "--payload", "200", "--count", "4"]);
    assert_eq!(summary["done"], 4, "{summary}");

    // The decision that opened the window: the one before the first to be handed a non-empty state.
    let holding = |d: &Value| d["state"].as_str().is_some_and(|s| !s.is_empty());
    let mut opened_ms = 0;
    wait_for("the scale-down window to open", Duration::from_secs(10), || {
        let all = decisions(&log);
        if let Some(i) = all.iter().position(holding) {
            opened_ms = all[i - 1]["snapshot"]["now_ms"].as_u64().unwrap();
        }
        opened_ms > 0
    });
    std::thread::sleep(Duration::from_millis(WINDOW_MS / 2));
    let new_build = common::tagged(&buffer, "rebuilt");
    replace_file(&policy, &new_build, true);
    let new_digest = component::digest(&new_build);
    wait_for("the pool to shrink", Duration::from_secs(15), || live_groups(&admin) == 0);

    let all = decisions(&log);
    let shrink = all
        .iter()
        .find(|d| d["commands"].as_array().unwrap().iter().any(|c| c.get("shutdown").is_some()))
        .expect("a decision shuts groups down");
    assert_eq!(shrink["policy_digest"], new_digest.as_str(), "the new build made the shrink");
    let waited = shrink["snapshot"]["now_ms"].as_u64().unwrap() - opened_ms;
    assert!(waited >= WINDOW_MS, "the shrink waited {waited} ms, less than the window");
    // The handover itself, from the log rather than from timing: the new build's first decision was
    // handed the state the old build's last decision returned (the open window), not an empty one.
    let first_new = all.iter().position(|d| d["policy_digest"] == new_digest.as_str()).expect("the new build decided");
    let handed = all[first_new]["state"].as_str().unwrap();
    assert!(!handed.is_empty(), "the new build started with an empty state: the window was lost");
}

/// After `max_consecutive_failures` failed decisions the fallback decides, `/status` and
/// `/metrics` say so, the work goes on, and a good swap ends it.
#[test]
fn fallback_engages_and_clears_on_a_good_swap() {
    let dir = common::temp_dir("swap-fallback");
    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    let tables = format!(
        "[scaling.params]\nmode = \"trap-when-busy-later\"\n\n[scaling.limits]\nmax_consecutive_failures = 2\nfallback = \"vanilla\"\n\n{NATIVE_ADAPTER}"
    );
    let config = config(&format!("scaling={}", hostile.display()), 50, None, &tables);
    let (_up, address, admin) = up(&dir, "up", &config);
    assert_eq!(status(&admin)["fallback_active"], false);
    // The hostile policy never starts anything and fails while there is work; the fallback starts
    // the groups that run it.
    let summary = submit(&address, &["--function", "sleep", "--payload", "50", "--count", "40"]);
    assert_eq!(summary["done"], 40, "{summary}");
    let s = status(&admin);
    assert_eq!(s["fallback_active"], true, "{}", s["policy"]);
    assert!(
        s["policy"]["fallback_reason"].as_str().unwrap().contains("2 consecutive failed decisions"),
        "{}",
        s["policy"]
    );
    assert_eq!(s["decisions"]["failed"], 2, "failures stop once the fallback decides");
    let (_, metrics) = common::cluster::http_get(&admin, "/metrics", None);
    assert!(metrics.contains("ebbtide_fallback_active 1"), "{metrics}");

    let (ok, output) = swap_cli(&admin, "vanilla", Some("{}"));
    assert!(ok, "{output}");
    assert!(output.starts_with("accepted: vanilla "), "{output}");
    let s = status(&admin);
    assert_eq!(s["fallback_active"], false, "{}", s["policy"]);
    let (_, metrics) = common::cluster::http_get(&admin, "/metrics", None);
    assert!(metrics.contains("ebbtide_fallback_active 0"), "{metrics}");
}

/// `ebbtide replay` reproduces a recorded run exactly with the policy that made it, and reports
/// the differences with another.
#[test]
fn replay_reproduces_a_run_and_compares_another_policy() {
    let dir = common::temp_dir("replay");
    let log = dir.join("decisions.jsonl");
    let tables = format!("[scaling.params]\nupper_task_ratio = 2\n\n{NATIVE_ADAPTER}");
    let config = config("scaling=vanilla", 50, Some(&log), &tables);
    let (_up, address, admin) = up(&dir, "up", &config);
    let summary = submit(&address, &["--function", "sleep", "--payload", "100", "--count", "40"]);
    assert_eq!(summary["done"], 40, "{summary}");
    wait_for("the pool to shrink back", Duration::from_secs(20), || live_groups(&admin) == 0);
    // The scheduler goes on deciding: replay a copy of the log as it is now.
    let log_copy = dir.join("replayed.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    std::fs::write(&log_copy, complete).unwrap();
    let log = log_copy;
    let recorded = decisions(&log);
    let starts: usize = recorded
        .iter()
        .map(|d| d["commands"].as_array().unwrap().iter().filter(|c| c.get("start").is_some()).count())
        .sum();
    assert!(starts > 0);

    let replay = |extra: &[&str]| {
        let out = Command::new(binary()).arg("replay").arg(&log).args(extra).output().expect("the binary runs");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, output) = replay(&[]);
    assert!(ok, "{output}");
    let n = recorded.len();
    assert!(output.contains(&format!("replayed {n} decisions: {n} equal, 0 differ")), "{output}");

    let (ok, output) = replay(&["--policy", "no"]);
    assert!(ok, "a candidate's differences are a report, not a failure: {output}");
    // `no` decides nothing and says nothing: every decision that did or said something differs.
    let said =
        |d: &&Value| !d["commands"].as_array().unwrap().is_empty() || !d["diagnostics"].as_array().unwrap().is_empty();
    let differ = recorded.iter().filter(said).count();
    assert!(output.contains(&format!("{} equal, {differ} differ", n - differ)), "{output}");
    assert!(output.contains(&format!("starts: +0 added, -{starts} removed")), "{output}");
}

/// A log that spans two builds at one path, with only the newer build on disk: `replay` replays
/// each line with the build that made it, reports and skips the lines of the missing build and
/// exits 1; given the old build with `--build`, every line is replayed and equal.
#[test]
fn replay_uses_the_build_that_made_each_line() {
    let dir = common::temp_dir("replay-builds");
    let log = dir.join("decisions.jsonl");
    let policy = dir.join("policy.wasm");
    let (old, new) = (common::tagged(&builtin_bytes("vanilla"), "one"), common::tagged(&builtin_bytes("vanilla"), "two"));
    std::fs::write(&policy, &old).unwrap();
    let tables = format!("[scaling.params]\nupper_task_ratio = 2\n\n{NATIVE_ADAPTER}");
    let config = config("scaling=policy.wasm", 50, Some(&log), &tables);
    let (_up, address, admin) = up(&dir, "up", &config);
    let summary = submit(&address, &["--function", "sleep", "--payload", "100", "--count", "8"]);
    assert_eq!(summary["done"], 8, "{summary}");
    replace_file(&policy, &new, true);
    wait_for("the new build to be swapped in", Duration::from_secs(20), || {
        status(&admin)["policy"]["digest"] == component::digest(&new).as_str()
    });
    let summary = submit(&address, &["--function", "sleep", "--payload", "100", "--count", "8"]);
    assert_eq!(summary["done"], 8, "{summary}");
    let text = std::fs::read_to_string(&log).unwrap();
    let copy = dir.join("replayed.jsonl");
    std::fs::write(&copy, &text[..text.rfind('\n').map_or(0, |i| i + 1)]).unwrap();
    let recorded = decisions(&copy);
    let old_digest = component::digest(&old);
    let old_seqs: Vec<u64> =
        recorded.iter().filter(|d| d["policy_digest"] == old_digest.as_str()).map(|d| d["seq"].as_u64().unwrap()).collect();
    assert!(!old_seqs.is_empty() && old_seqs.len() < recorded.len(), "the log spans both builds");

    let replay = |extra: &[&str]| {
        let out = Command::new(binary()).arg("replay").arg(&copy).args(extra).current_dir(&dir).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, output) = replay(&[]);
    assert_eq!(code, Some(1), "a skipped line fails the determinism check: {output}");
    let first = old_seqs[0];
    let last = old_seqs[old_seqs.len() - 1];
    assert_eq!(last - first + 1, old_seqs.len() as u64, "the old build's lines are one run");
    assert!(output.contains(&format!("seq {first} (")) && output.contains("SKIPPED"), "{output}");
    assert!(
        output.contains(&format!("skipped {} decisions whose build is not available: seq {first}-{last}", old_seqs.len())),
        "{output}"
    );
    let newer = recorded.len() - old_seqs.len();
    assert!(output.contains(&format!("replayed {newer} decisions: {newer} equal, 0 differ")), "{output}");

    let old_file = dir.join("old.wasm");
    std::fs::write(&old_file, &old).unwrap();
    let (code, output) = replay(&["--build", old_file.to_str().unwrap()]);
    let n = recorded.len();
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains(&format!("replayed {n} decisions: {n} equal, 0 differ")), "{output}");
}

/// Shadow mode: a candidate decides beside the active policy; its commands are compared, logged and
/// never run, and a failing shadow changes nothing for the active policy.
#[test]
fn shadow_decides_beside_the_active_policy_and_is_never_executed() {
    let dir = common::temp_dir("shadow");
    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    for (shadow, params) in [("no", ""), (hostile.to_str().unwrap(), "mode = \"trap\"")] {
        let log = dir.join(format!("decisions-{}.jsonl", params.len()));
        let tables = format!(
            "[scaling.params]\nupper_task_ratio = 2\n\n[scaling.shadow]\npolicy = \"{shadow}\"\n\n[scaling.shadow.params]\n{params}\n\n{NATIVE_ADAPTER}"
        );
        let config = config("scaling=vanilla", 50, Some(&log), &tables);
        let (_up, address, admin) = up(&dir, "up", &config);
        let summary = submit(&address, &["--function", "sleep", "--payload", "100", "--count", "20"]);
        assert_eq!(summary["done"], 20, "{summary}");
        let s = status(&admin);
        let shadow_status = &s["shadow"];
        assert!(shadow_status["different"].as_u64().unwrap() >= 1, "{shadow_status}");
        assert_eq!(s["decisions"]["failed"], 0, "the active policy is unaffected");
        let logged = decisions(&log);
        let verdicts: Vec<&Value> = logged.iter().filter_map(|d| d.get("shadow")).collect();
        assert!(verdicts.len() + 2 >= logged.len(), "nearly every decision has a shadow verdict");
        if params.is_empty() {
            // `no` agrees whenever vanilla does nothing, and its commands never ran: the groups
            // that ran the tasks were vanilla's.
            assert!(shadow_status["equal"].as_u64().unwrap() >= 1, "{shadow_status}");
            let active = &shadow_status["last_difference"]["active"];
            assert!(active.as_array().is_some_and(|a| !a.is_empty()), "{shadow_status}");
            assert!(verdicts.iter().all(|v| v["commands"].as_array().unwrap().is_empty()));
            assert_eq!(shadow_status["failed"], 0);
        } else {
            assert!(shadow_status["failed"].as_u64().unwrap() >= 1, "{shadow_status}");
            assert!(verdicts.iter().any(|v| v["error"].as_str().is_some_and(|e| e.contains("trap"))));
        }
    }
}
