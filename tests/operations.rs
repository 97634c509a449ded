//! What an operator meets first, on the real binary: tasks that wait get explained, signals reach
//! only the scheduler, `up` says what it started and logs what changes, and errors teach.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cluster::{Proc, binary, config, status, submit, wait_for};

/// `ebbtide ARGS` at the default log level, stderr to `DIR/NAME.stderr`; the caller reads stdout.
fn start_quiet(dir: &Path, name: &str, args: &[&str]) -> (Child, std::path::PathBuf) {
    let log = dir.join(format!("{name}.stderr"));
    let child = Command::new(binary())
        .args(args)
        .env_remove("EBBTIDE_LOG")
        .env_remove("EBBTIDE_TOKEN")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, log)
}

/// Stdout lines up to and including the first that contains `last`.
fn lines_until(child: &mut Child, last: &str) -> Vec<String> {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains(last);
        seen.push(line);
        if done {
            std::thread::spawn(move || for _ in lines {});
            return seen;
        }
    }
    panic!("stdout ended before {last:?}: {seen:?}");
}

fn stop(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn diagnostics(admin: &str) -> Vec<String> {
    status(admin)["diagnostics"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect()
}

/// Runs `submit ... --wait` in the background, so that its tasks stay queued (a client's tasks leave
/// with it).
fn submit_in_background(address: &str, args: &[&str]) -> Child {
    Command::new(binary())
        .args(["submit", address, "--wait"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The README's `submit --capabilities gpu=1`: under the default `policy_content` a native adapter's
/// group with gpu starts and runs it, and with no adapter at all `/status` says why it waits; under
/// `scaling=vanilla`, which starts groups without
/// capabilities, the task is stuck and `/status` and the log say so within a few decisions, naming the
/// capability, the count, the policy and what would serve it.
#[test]
fn a_task_no_policy_serves_is_explained_and_the_default_serves_it() {
    let dir = common::temp_dir("ops-stuck");
    let adapter = "[[adapter]]\ntype = \"native\"\nid = \"local\"\nmax_worker_groups = 2\nworkers_per_group = 1\n";
    let text = format!(
        "[scheduler]\naddress = \"tcp://127.0.0.1:0\"\nadmin_address = \"127.0.0.1:0\"\ntick_ms = 100\n\n{adapter}"
    );
    let (_up, address, _admin) = common::cluster::up(&dir, "default", &text);
    let summary = submit(&address, &["--function", "echo", "--payload", "hi", "--capabilities", "gpu=1"]);
    assert_eq!(summary["done"], 1, "the default pairing serves a gpu task: {summary}");

    // The default configuration with no adapter that could start a gpu worker: explained at once.
    let mut alone = Proc::start(&dir, "alone", &["scheduler", "tcp://127.0.0.1:0", "--admin", "127.0.0.1:0"]);
    let (address, admin) = alone.listening();
    let admin = admin.unwrap();
    let mut client = submit_in_background(&address, &["--function", "echo", "--capabilities", "gpu=1"]);
    wait_for("a diagnostic naming gpu", Duration::from_secs(10), || {
        diagnostics(&admin).iter().any(|d| d.contains("gpu"))
    });
    let _ = client.kill();
    let _ = client.wait();
    drop(alone);

    let (up, address, admin) = common::cluster::up(&dir, "vanilla", &config("scaling=vanilla", 100, None, adapter));
    let mut client = submit_in_background(&address, &["--function", "echo", "--capabilities", "gpu=1", "--count", "2"]);
    let mut said = Vec::new();
    wait_for("a diagnostic about the gpu tasks", Duration::from_secs(10), || {
        said = diagnostics(&admin);
        !said.is_empty()
    });
    let d = &said[0];
    assert!(d.contains("2 tasks requiring {gpu=1}"), "{d}");
    assert!(d.contains("the policy vanilla") && d.contains("scaling=capability"), "{d}");
    let decisions: u64 = d.split(" have waited ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((3..=10).contains(&decisions), "named after a few decisions: {d}");
    wait_for("more decisions", Duration::from_secs(5), || status(&admin)["decisions"]["total"].as_u64() > Some(12));
    let warnings = up.stderr().matches("2 tasks requiring {gpu=1} have waited").count();
    assert_eq!(warnings, 1, "one warning in the log, not one per decision:\n{}", up.stderr());
    let _ = client.kill();
    let _ = client.wait();
    wait_for("the diagnostic to clear once the tasks are gone", Duration::from_secs(10), || {
        diagnostics(&admin).is_empty()
    });
}

/// A worker and an adapter that receive SIGHUP keep running and serving; the scheduler's pid file
/// names it alone, and a reload through it that changes the policy is logged with what changed.
#[test]
fn sighup_reloads_the_scheduler_alone_and_says_what_changed() {
    let dir = common::temp_dir("ops-hup");
    let pid_file = dir.join("ebbtide.pid");
    let path = dir.join("up.toml");
    let adapter = "[[adapter]]\ntype = \"native\"\nid = \"local\"\nmax_worker_groups = 2\nworkers_per_group = 1\n";
    let write_config = |scaling: &str| {
        let text = config(scaling, 100, None, adapter)
            .replace("[scheduler]\n", &format!("[scheduler]\npid_file = \"{}\"\n", pid_file.display()));
        std::fs::write(&path, text).unwrap();
    };
    write_config("scaling=vanilla");
    let mut up = Proc::start(&dir, "up", &["up", path.to_str().unwrap()]);
    let (address, admin) = up.listening();
    let admin = admin.unwrap();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(pid, up.pid(), "the pid file names the scheduler");

    let mut worker = Proc::start(&dir, "worker", &["worker", &address]);
    wait_for("the worker to join", Duration::from_secs(10), || status(&admin)["workers"].as_u64() >= Some(1));
    worker.signal(libc::SIGHUP);
    let summary = submit(&address, &["--function", "echo", "--payload", "x", "--count", "20"]);
    assert_eq!(summary["done"], 20, "{summary}");
    assert!(worker.wait_exit(Duration::from_millis(300)).is_none(), "the worker survives SIGHUP");

    let mut adapter =
        Proc::start(&dir, "adapter", &["adapter", "native", &address, "--id", "spare", "--max-groups", "1"]);
    wait_for("the adapter to join", Duration::from_secs(10), || {
        status(&admin)["adapters"].as_array().unwrap().len() == 2
    });
    adapter.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert!(adapter.wait_exit(Duration::from_millis(100)).is_none(), "the adapter survives SIGHUP");
    assert_eq!(status(&admin)["adapters"].as_array().unwrap().len(), 2);

    write_config("scaling=capability");
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_for("the reload to install capability", Duration::from_secs(20), || {
        status(&admin)["policy"]["name"] == "capability"
    });
    wait_for("the reload to be logged", Duration::from_secs(5), || up.stderr().contains("swap (sighup) done"));
    let log = up.stderr();
    let line = log.lines().find(|l| l.contains("swap (sighup) done")).unwrap();
    assert!(line.contains("capability") && line.contains("replaces vanilla"), "{line}");
    assert!(worker.wait_exit(Duration::from_millis(10)).is_none(), "the worker was not signalled by the reload");

    up.signal(libc::SIGTERM);
    up.wait_exit(Duration::from_secs(20)).expect("up stops");
    assert!(!pid_file.exists(), "the pid file goes with the scheduler");
}

/// At the default log level `up` prints each adapter with its limits, the policy with its digest and
/// params and the admin URL, and logs swaps and a lost worker; a log that is a file has no colour.
#[test]
fn up_says_what_it_started_and_logs_what_happens() {
    let dir = common::temp_dir("ops-up");
    let text = config(
        "scaling=vanilla",
        100,
        None,
        "[scaling.params]\nupper_task_ratio = 2\n\n[[adapter]]\ntype = \"native\"\nid = \"local\"\nmax_worker_groups = 3\nworkers_per_group = 2\n",
    );
    let path = dir.join("up.toml");
    std::fs::write(&path, text).unwrap();
    let (mut up, log) = start_quiet(&dir, "up", &["up", path.to_str().unwrap()]);
    let lines = lines_until(&mut up, "adapter local");
    let all = lines.join("\n");
    let address = lines[0].split_whitespace().nth(4).unwrap().to_owned();
    let admin = lines[0].split("(admin http://").nth(1).unwrap().trim_end_matches(')').to_owned();
    assert!(
        all.contains("policy vanilla") && all.contains("sha256 ") && all.contains(r#"params {"upper_task_ratio":2}"#),
        "{all}"
    );
    assert!(all.contains(&format!("dashboard http://{admin}/")), "{all}");
    assert!(all.contains("adapter local: native, up to 3 groups of 2 workers, capabilities any"), "{all}");

    // A burst starts a group; killing one of its workers is a lost worker.
    let mut client = submit_in_background(&address, &["--function", "sleep", "--payload", "5000", "--count", "4"]);
    wait_for("a running group", Duration::from_secs(15), || status(&admin)["workers"].as_u64() >= Some(2));
    let victim = common::cluster::processes_matching(&address)
        .first()
        .and_then(|p| p.split(':').next().map(|pid| pid.parse::<i32>().unwrap()))
        .expect("a worker process");
    unsafe { libc::kill(victim, libc::SIGKILL) };
    // Whichever the scheduler hears of first, the broken connection or the adapter's report, it warns.
    wait_for("the lost worker in the log", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap();
        text.contains("worker lost") || text.contains("group lost")
    });
    let (ok, output) = {
        let out = Command::new(binary()).args(["policy", "swap", "--admin", &admin, "capability"]).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert!(ok, "{output}");
    wait_for("the swap in the log", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap().contains("swap (admin) done")
    });
    let _ = client.kill();
    let _ = client.wait();
    stop(up);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("capability") && text.contains("replaces vanilla"), "{text}");
    assert!(!text.contains('\u{1b}'), "no colour codes in a log file:\n{text}");
}

/// Errors name what to change: the variable a bad value came from, types in words, the setting that
/// picks a port in use, which port is which, a params default that fails, a guest's panic message.
#[test]
fn errors_teach() {
    let dir = common::temp_dir("ops-errors");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(binary()).args(args).envs(env.iter().copied()).current_dir(&dir).output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = run(&["scheduler", "tcp://127.0.0.1:0"], &[("EBBTIDE_TICK_MS", "soon")]);
    assert!(!ok && text.contains(r#"EBBTIDE_TICK_MS="soon": expected a whole number"#), "{text}");
    assert!(!text.contains("--tick-ms <TICK_MS>"), "{text}");

    std::fs::write(dir.join("bad.toml"), "[scheduler]\ntick_ms = \"soon\"\n").unwrap();
    let (ok, text) = run(&["scheduler", "--config", "bad.toml"], &[]);
    assert!(!ok && text.contains("expected a whole number >= 0") && !text.contains("u64"), "{text}");

    let (busy, address, admin) = common::cluster::scheduler(&dir, "busy", &[]);
    let (ok, text) = run(&["scheduler", &address], &[]);
    assert!(!ok && text.contains("in use") && text.contains("address"), "{text}");
    let (ok, text) = run(&["scheduler", "tcp://127.0.0.1:0", "--admin", &admin], &[]);
    assert!(!ok && text.contains("in use") && text.contains("admin_address"), "{text}");
    let (ok, text) = run(&["submit", &format!("tcp://{admin}"), "--function", "echo", "--wait"], &[]);
    assert!(!ok && text.contains("admin HTTP address") && !text.contains("segments"), "{text}");
    busy.signal(libc::SIGTERM);

    let (ok, text) = run(&["policy", "check", "vanilla", "--params", r#"{"upper_task_ratio": 0.5}"#], &[]);
    assert!(!ok && text.contains("got 1 (the policy's default)"), "{text}");

    let hostile = common::guest("ebbtide-test-guest-hostile", "ebbtide_test_guest_hostile.wasm");
    let (ok, text) = run(&["policy", "check", hostile.to_str().unwrap(), "--params", r#"{"mode": "trap"}"#], &[]);
    let rejected = text.lines().find(|l| l.starts_with("rejected")).unwrap_or(&text);
    assert!(!ok && rejected.contains("hostile guest panics on purpose"), "the panic message comes first: {text}");
    assert!(!text.contains("<wasm function") && !text.contains("RUST_BACKTRACE"), "{text}");

    let (_, text) = run(&["submit", "--help"], &[]);
    assert!(text.contains("milliseconds"), "payload units in --help: {text}");
}
