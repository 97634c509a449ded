//! The policy runtime against real components: hostile guests are contained, each failure is typed
//! and named, and the same runtime keeps serving good policies afterwards.

mod common;

use std::time::Duration;

use ebbtide::policy::{CallLimits, LoadedPolicy, PolicyError, PolicySource, builtin, sample};

fn vanilla() -> LoadedPolicy {
    LoadedPolicy::load(builtin::find("vanilla").expect("built-in").component, CallLimits::default())
        .expect("vanilla loads")
}

/// After any failure, a good policy still decides in the same process and engine.
fn good_policy_still_serves() {
    let snapshot = sample::snapshot(sample::Size::Small);
    let decision = vanilla().decide("{}", &snapshot, &[]).expect("vanilla decides after a hostile guest");
    let native = (builtin::find("vanilla").expect("built-in").native)("{}", &snapshot, &[]).expect("native decides");
    assert_eq!(decision, native, "the component and the native build must agree");
}

fn hostile(limits: CallLimits) -> LoadedPolicy {
    LoadedPolicy::load(&common::hostile(), limits).expect("the hostile guest is a valid component")
}

fn decide(policy: &LoadedPolicy, mode: &str) -> Result<ebbtide_sdk::Decision, PolicyError> {
    policy.decide(&format!(r#"{{"mode": "{mode}"}}"#), &sample::snapshot(sample::Size::Small), &[])
}

#[test]
fn endless_loop_is_stopped_as_a_timeout() {
    let limits = CallLimits { deadline_ms: 100, ..CallLimits::default() };
    let policy = hostile(limits);
    let err = within_ten_seconds(move || decide(&policy, "loop")).expect_err("an endless loop cannot succeed");
    assert_eq!(err.kind(), "timeout", "got {err}");
    good_policy_still_serves();
}

#[test]
fn growing_memory_past_the_cap_is_a_memory_error() {
    let policy = hostile(CallLimits { memory_mib: 32, ..CallLimits::default() });
    let err = decide(&policy, "grow").expect_err("unbounded growth cannot succeed");
    assert_eq!(err.kind(), "memory", "got {err}");
    assert!(err.to_string().contains("32 MiB"), "the message names the cap: {err}");
    good_policy_still_serves();
}

#[test]
fn a_panic_is_a_trap_error_carrying_the_guest_message() {
    let err = decide(&hostile(CallLimits::default()), "trap").expect_err("a panic cannot succeed");
    assert_eq!(err.kind(), "trap", "got {err}");
    assert!(err.to_string().contains("on purpose"), "the guest's panic message is kept: {err}");
    good_policy_still_serves();
}

#[test]
fn ten_million_commands_are_contained() {
    let err = decide(&hostile(CallLimits::default()), "huge").expect_err("an oversized decision is refused");
    assert!(matches!(err.kind(), "memory" | "invalid-decision"), "got {err}");
    good_policy_still_serves();
}

#[test]
fn a_guest_sees_no_environment_files_or_real_clock() {
    let d = decide(&hostile(CallLimits::default()), "snoop").expect("snooping is allowed, just fruitless");
    let seen: serde_json::Value = serde_json::from_str(&d.diagnostics[0].message).expect("json");
    assert_eq!(seen["env"], 0, "no environment variables: {seen}");
    assert_eq!(seen["args"], 0, "no arguments: {seen}");
    assert!(!seen["file"].as_str().unwrap_or("").chars().all(|c| c.is_ascii_digit()), "no file was read: {seen}");
    assert_eq!(seen["clock_ms"], 0, "the wall clock is frozen at zero: {seen}");
}

#[test]
fn a_component_of_another_world_is_refused_naming_both_worlds() {
    let bytes = std::fs::read(common::guest("ebbtide-test-guest-cli-command", "ebbtide-test-guest-cli-command.wasm"))
        .expect("readable");
    let err = LoadedPolicy::load(&bytes, CallLimits::default()).expect_err("a command is not a policy");
    let message = err.to_string();
    assert_eq!(err.kind(), "incompatible", "got {message}");
    assert!(message.contains("ebbtide:policy/scaling-policy@0.1.0"), "names the expected world: {message}");
    assert!(message.contains("wasi:cli/run"), "names what was found: {message}");
    good_policy_still_serves();
}

#[test]
fn a_component_of_a_future_contract_is_refused_naming_both_versions() {
    let path = common::guest("ebbtide-test-guest-future-version", "ebbtide_test_guest_future_version.wasm");
    let err = LoadedPolicy::load(&std::fs::read(path).expect("readable"), CallLimits::default())
        .expect_err("0.2.0 is not 0.1.0");
    let message = err.to_string();
    assert_eq!(err.kind(), "incompatible", "got {message}");
    assert!(message.contains("0.2.0") && message.contains("0.1.0"), "names both versions: {message}");
    good_policy_still_serves();
}

#[test]
fn garbage_bytes_and_empty_files_are_refused() {
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("garbage", b"this is not webassembly at all".to_vec()),
        ("truncated", builtin::find("vanilla").expect("built-in").component[..1000].to_vec()),
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
    ] {
        let err = LoadedPolicy::load(&bytes, CallLimits::default()).expect_err(what);
        assert_eq!(err.kind(), "invalid-component", "{what}: {err}");
    }
    good_policy_still_serves();
}

#[test]
fn a_snapshot_crosses_into_the_guest_unchanged() {
    // Pins the hand-written lowering (policy/lowering.rs) and the SDK lifting into its model.
    let policy = hostile(CallLimits::default());
    for size in [sample::Size::Small, sample::Size::Large] {
        let snapshot = sample::snapshot(size);
        let d = policy.decide(r#"{"mode": "echo"}"#, &snapshot, &[]).expect("echo");
        let echoed: ebbtide_sdk::Snapshot = serde_json::from_slice(&d.state).expect("the guest echoes JSON");
        assert_eq!(echoed, snapshot, "{size:?} snapshot differs after crossing");
    }
}

#[test]
fn a_reused_instance_is_replaced_after_a_failure() {
    let policy = std::sync::Arc::new(hostile(CallLimits::default()));
    let mut decider = ebbtide::policy::Decider::new(policy, true);
    let snapshot = sample::snapshot(sample::Size::Small);
    decider.decide(r#"{"mode": "ok"}"#, &snapshot, &[]).expect("ok");
    decider.decide(r#"{"mode": "trap"}"#, &snapshot, &[]).expect_err("trap");
    decider.decide(r#"{"mode": "ok"}"#, &snapshot, &[]).expect("a fresh instance serves after the trap");
}

#[test]
fn every_builtin_component_describes_itself_as_its_native_build() {
    for b in builtin::all() {
        let loaded = PolicySource::Builtin(b.name).load(CallLimits::default()).expect("built-in loads");
        assert_eq!(loaded.info, (b.info)(), "{}: describe() differs from the native info", b.name);
    }
}

#[test]
fn every_builtin_component_decides_as_its_native_build_on_the_large_sample() {
    let snapshot = sample::snapshot(sample::Size::Large);
    for b in builtin::all() {
        let loaded = PolicySource::Builtin(b.name).load(CallLimits::default()).expect("built-in loads");
        let params = sample::params(b.name);
        let wasm = loaded.decide(params, &snapshot, &[]).expect("component decides");
        let native = (b.native)(params, &snapshot, &[]).expect("native decides");
        assert_eq!(wasm, native, "{}: component and native decisions differ", b.name);
    }
}

/// Runs `f` on its own thread; a call that blocks for 10 s (100 times the deadline) fails the test
/// instead of hanging the suite.
fn within_ten_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the call blocked for 10 s; its deadline is 100 ms")
}

#[test]
fn a_guest_that_sleeps_for_an_hour_fails_at_once_naming_the_sleep() {
    let err = within_ten_seconds(|| decide(&hostile(CallLimits::default()), "sleep"))
        .expect_err("sleeping an hour cannot succeed");
    assert_eq!(err.kind(), "trap", "got {err}");
    assert!(err.to_string().contains("tried to sleep for 3600000 ms"), "the error names the sleep: {err}");
    good_policy_still_serves();
}

#[test]
fn a_guest_that_sleeps_while_validating_its_params_fails_at_once() {
    let result = within_ten_seconds(|| hostile(CallLimits::default()).validate(r#"{"mode": "sleep-in-validate"}"#));
    let err = result.expect_err("sleeping in validate cannot succeed");
    assert!(err.to_string().contains("tried to sleep"), "the error names the sleep: {err}");
}
