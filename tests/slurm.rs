//! The Slurm adapter against a real single-node Slurm (`.ci/slurm.sh start`): the real scheduler,
//! the real adapter, real `sbatch`/`squeue`/`scancel`, real worker processes started by `srun`.
//!
//! Under `CI=true` a missing Slurm fails every test, naming what is missing; elsewhere the tests
//! print SKIPPED and return. They run one at a time (they share one small node) and each adapter has
//! its own id, so each test sees only its own jobs.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::cluster::{Proc, config, decisions, live_groups, starts, status, submit, up, wait_for};

/// One test at a time: the node has 16 slots.
static SLURM: Mutex<()> = Mutex::new(());

/// Why Slurm cannot be used here, if it cannot.
fn slurm_missing() -> Option<String> {
    for tool in ["sbatch", "squeue", "scancel", "srun"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map_or(true, |o| !o.status.success())
        {
            return Some(format!("`{tool}` is not on PATH (install slurm-client, or run .ci/slurm.sh start)"));
        }
    }
    match Command::new("squeue").args(["--noheader", "--me"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "no Slurm controller answers (squeue: {}); run .ci/slurm.sh start",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("squeue cannot run: {e}")),
    }
}

/// A test's hold on the node, and its adapter id: unique per run, since squeue keeps listing ended
/// jobs for `MinJobAge` (300 s) and an earlier run's jobs must not count.
struct Slot {
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    id: String,
}

/// Takes the Slurm lock, or returns `None` after printing why the test is skipped (never under CI).
fn slurm(test: &str) -> Option<Slot> {
    if let Some(why) = slurm_missing() {
        common::tool_missing("a running single-node Slurm (.ci/slurm.sh start)", &format!("{test} ({why})"));
        return None;
    }
    let lock = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    Some(Slot { _one_at_a_time: lock, id: format!("{test}-{}", std::process::id()) })
}

/// A job as `squeue -t all` lists it.
#[derive(Debug)]
struct Job {
    id: String,
    name: String,
    state: String,
}

const ENDED: [&str; 7] = ["CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"];

impl Job {
    fn active(&self) -> bool {
        !ENDED.contains(&self.state.as_str())
    }
}

/// Every job of adapter `id` that squeue lists, ended ones included.
fn jobs_of(id: &str) -> Vec<Job> {
    let out =
        Command::new("squeue").args(["--me", "--noheader", "--states=all", "--format=%i|%j|%T"]).output().unwrap();
    assert!(out.status.success(), "squeue failed: {}", String::from_utf8_lossy(&out.stderr));
    let prefix = format!("ebbtide-{id}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            Some(Job { id: f.next()?.to_owned(), name: f.next()?.to_owned(), state: f.next()?.to_owned() })
        })
        .filter(|j| j.name.starts_with(&prefix))
        .collect()
}

fn active_jobs(id: &str) -> Vec<Job> {
    jobs_of(id).into_iter().filter(Job::active).collect()
}

/// Polls squeue gently (it is a real controller on a small machine).
fn wait_for_jobs(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, timeout, || {
        std::thread::sleep(Duration::from_millis(150));
        check()
    });
}

/// An `[[adapter]]` of type slurm with id `id`; job output goes to `dir` for post-mortems.
fn slurm_adapter(id: &str, dir: &Path, max_groups: u32, workers: u32, extra: &str) -> String {
    format!(
        "[[adapter]]\ntype = \"slurm\"\nid = \"{id}\"\nmax_worker_groups = {max_groups}\nworkers_per_group = {workers}\n\
         grace_ms = 1000\n{extra}\n[adapter.slurm]\npoll_ms = 250\nsbatch_args = [\"--output={}/job-%j.out\"]\n",
        dir.display()
    )
}

#[test]
fn a_burst_becomes_many_jobs_in_one_decision_and_the_fleet_returns_to_zero() {
    let Some(slot) = slurm("burst") else { return };
    let id = slot.id.as_str();
    let dir = common::temp_dir("slurm-burst");
    let log = dir.join("decisions.jsonl");
    let tables = format!(
        "[scaling.params]\nupper_task_ratio = 2\nmax_shutdowns_per_tick = 8\n\n{}",
        slurm_adapter(id, &dir, 8, 2, "")
    );
    let (up, address, admin) =
        up(&dir, "up", &config("allocate=capability; scaling=vanilla", 500, Some(&log), &tables));
    wait_for("the adapter to join", Duration::from_secs(15), || {
        status(&admin)["adapters"].as_array().unwrap().len() == 1
    });

    let summary = submit(&address, &["--function", "sleep", "--payload", "1000", "--count", "32"]);
    assert_eq!(summary["done"], 32, "{summary}\n{}", up.stderr());

    let scaling: Vec<_> = decisions(&log).into_iter().filter(|d| !starts(d).is_empty()).collect();
    assert_eq!(scaling.len(), 1, "exactly one decision starts groups: {scaling:#?}");
    assert_eq!(starts(&scaling[0]).len(), 8, "{}", scaling[0]);
    let jobs = jobs_of(id);
    assert_eq!(jobs.len(), 8, "one job per group: {jobs:?}");
    assert!(status(&admin)["counters"]["start_failures"] == 0, "{}", up.stderr());

    wait_for("every group to be shut down", Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(100));
        live_groups(&admin) == 0
    });
    wait_for_jobs("no job of the adapter left in squeue", Duration::from_secs(30), || active_jobs(id).is_empty());
    let s = status(&admin);
    assert_eq!(s["counters"]["groups_lost"], 0, "shutdowns are confirmed, not lost: {s}");
}

#[test]
fn a_job_cancelled_from_outside_returns_its_tasks_and_capacity_comes_back() {
    let Some(slot) = slurm("cancelled") else { return };
    let id = slot.id.as_str();
    let dir = common::temp_dir("slurm-cancelled");
    let tables = format!("[scaling.params]\nupper_task_ratio = 1\n\n{}", slurm_adapter(id, &dir, 2, 1, ""));
    let (up, address, admin) = up(&dir, "up", &config("allocate=capability; scaling=vanilla", 500, None, &tables));
    wait_for("the adapter to join", Duration::from_secs(15), || {
        status(&admin)["adapters"].as_array().unwrap().len() == 1
    });

    let client =
        std::thread::spawn(move || submit(&address, &["--function", "sleep", "--payload", "4000", "--count", "2"]));
    wait_for("both tasks running", Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(100));
        status(&admin)["tasks"]["running"] == 2
    });
    let victim = active_jobs(id).into_iter().find(|j| j.state == "RUNNING").expect("a running job");
    let cancel = Command::new("scancel").arg(&victim.id).status().unwrap();
    assert!(cancel.success());

    let summary = client.join().unwrap();
    assert_eq!(summary["done"], 2, "{summary}\n{}", up.stderr());
    let s = status(&admin);
    assert!(s["counters"]["tasks_requeued"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["counters"]["groups_lost"].as_u64().unwrap() >= 1, "{s}");
    let stderr = up.stderr();
    assert!(
        stderr.contains(&format!("Slurm job {} ended: CANCELLED", victim.id)),
        "the loss names Slurm's reason:\n{stderr}"
    );
    // Capacity came back: a third job ran the requeued task.
    assert!(jobs_of(id).len() >= 3, "{:?}", jobs_of(id));
    wait_for_jobs("no job left", Duration::from_secs(60), || live_groups(&admin) == 0 && active_jobs(id).is_empty());
}

#[test]
fn an_adapter_killed_and_restarted_leaves_no_orphan_job() {
    let Some(slot) = slurm("restart") else { return };
    let id = slot.id.as_str();
    let dir = common::temp_dir("slurm-restart");
    let mut scheduler = Proc::start(
        &dir,
        "scheduler",
        &[
            "scheduler",
            "tcp://127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--tick-ms",
            "500",
            "--params",
            r#"{"upper_task_ratio": 1}"#,
        ],
    );
    let (address, admin) = scheduler.listening();
    let admin = admin.unwrap();
    let output = format!("--sbatch-arg=--output={}/job-%j.out", dir.display());
    let adapter = |name: &str, extra: &[&str]| {
        let mut args = vec!["adapter", "slurm", address.as_str(), "--id", id, "--max-groups", "2", "--poll-ms", "250"];
        args.push(&output);
        args.extend_from_slice(extra);
        Proc::start(&dir, name, &args)
    };
    // The first run's jobs are held, so they outlive it as they would on a busy cluster.
    let first = adapter("adapter-1", &["--sbatch-arg=--hold"]);
    wait_for("the adapter", Duration::from_secs(15), || status(&admin)["adapters"].as_array().unwrap().len() == 1);
    let client = {
        let address = address.clone();
        std::thread::spawn(move || submit(&address, &["--function", "sleep", "--payload", "200", "--count", "2"]))
    };
    wait_for_jobs("two held jobs", Duration::from_secs(15), || active_jobs(id).len() == 2);
    first.signal(libc::SIGKILL);
    let orphans = active_jobs(id);
    assert_eq!(orphans.len(), 2, "the killed adapter's jobs are still queued: {orphans:?}");

    let second = adapter("adapter-2", &[]);
    let summary = client.join().unwrap();
    assert_eq!(summary["done"], 2, "{summary}\n{}", second.stderr());
    let all = jobs_of(id);
    for orphan in &orphans {
        let now = all.iter().find(|j| j.id == orphan.id).expect("still listed");
        assert_eq!(now.state, "CANCELLED", "job {} of the killed adapter: {all:?}", orphan.id);
    }
    assert!(second.stderr().contains("left behind"), "{}", second.stderr());
    wait_for_jobs("no job left", Duration::from_secs(60), || live_groups(&admin) == 0 && active_jobs(id).is_empty());
}

#[test]
fn an_impossible_constraint_is_refused_with_slurms_message() {
    let Some(slot) = slurm("constraint") else { return };
    let id = slot.id.as_str();
    let dir = common::temp_dir("slurm-constraint");
    // A worker command given as a list (as a Python worker's would be): a shell that says so, then
    // runs `ebbtide worker` with the arguments the adapter appends.
    let command = format!(
        "command = [\"sh\", \"-c\", \"echo custom worker command >&2; exec \\\"$0\\\" \\\"$@\\\"\", \"{}\", \"worker\"]",
        common::cluster::binary().display()
    );
    let tables = slurm_adapter(id, &dir, 2, 1, &command)
        + "[adapter.slurm.requests]\nfpga = \"--constraint=fpga\"\ngpu = \"--constraint=gpu\"\n";
    let (up, address, admin) = up(&dir, "up", &config("allocate=capability; scaling=capability", 500, None, &tables));
    wait_for("the adapter to join", Duration::from_secs(15), || {
        status(&admin)["adapters"].as_array().unwrap().len() == 1
    });

    // The node has the `gpu` feature: that start goes through and its task runs.
    let summary = submit(&address, &["--function", "echo", "--payload", "x", "--capabilities", "gpu"]);
    assert_eq!(summary["done"], 1, "{summary}\n{}", up.stderr());
    // The job that ran it (the policy may have started another beside it) ran the configured command.
    wait_for("a job's output to show the configured command", Duration::from_secs(10), || {
        jobs_of(id).iter().any(|job| {
            std::fs::read_to_string(dir.join(format!("job-{}.out", job.id)))
                .is_ok_and(|output| output.contains("custom worker command"))
        })
    });
    // No node has `fpga`: sbatch refuses, and the scheduler hears Slurm's reason.
    // The client stays connected (it waits for a result that never comes): a client's tasks live only
    // while it is.
    let mut waiting = Command::new(common::cluster::binary())
        .args(["submit", &address, "--function", "echo", "--payload", "x", "--capabilities", "fpga", "--wait"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a refused start", Duration::from_secs(15), || {
        std::thread::sleep(Duration::from_millis(100));
        status(&admin)["counters"]["start_failures"].as_u64().unwrap() >= 1
    });
    let _ = waiting.kill();
    let _ = waiting.wait();
    let stderr = up.stderr();
    assert!(
        stderr.contains("start failed: sbatch: Batch job submission failed: Invalid feature specification"),
        "{stderr}"
    );
    assert!(active_jobs(id).iter().all(|j| j.state != "PENDING"), "no job waits for ever: {:?}", jobs_of(id));
}

#[test]
fn missing_tools_and_an_unreachable_controller_stop_the_adapter_at_start_up() {
    let Some(_slot) = slurm("preflight") else { return };
    let dir = common::temp_dir("slurm-preflight");
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(common::cluster::binary())
            .args(["adapter", "slurm", "tcp://127.0.0.1:9", "--id", "preflight"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(&[("PATH", "/nonexistent")]);
    assert!(stderr.contains("`sbatch` is not on PATH"), "{stderr}");

    // A configuration whose controller port nobody listens on (and a short message timeout).
    let conf = std::fs::read_to_string(std::env::var("SLURM_CONF").unwrap_or("/etc/slurm/slurm.conf".into())).unwrap();
    let conf: String = conf
        .lines()
        .filter(|l| !l.starts_with("SlurmctldPort") && !l.starts_with("MessageTimeout"))
        .map(|l| format!("{l}\n"))
        .collect();
    let bogus = dir.join("slurm.conf");
    std::fs::write(&bogus, conf + "SlurmctldPort=9\nMessageTimeout=1\n").unwrap();
    let stderr = run(&[("SLURM_CONF", bogus.to_str().unwrap())]);
    assert!(
        stderr.contains("is the controller (slurmctld) running and reachable?")
            && stderr.contains("Unable to contact slurm controller"),
        "{stderr}"
    );
}
