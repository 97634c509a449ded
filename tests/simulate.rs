//! `ebbtide simulate` end to end: the real binary, its files, a real browser, and the real scheduler
//! for comparison.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::{binary, config, decisions, live_groups, submit, up, wait_for};
use serde_json::Value;

fn simulate(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("--log")
        .arg("warn")
        .arg("simulate")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "simulate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON")
}

/// The integral of busy + idle workers over a `curve-*.csv`, in worker-seconds.
fn capacity_integral(curve: &Path, until_ms: u64) -> f64 {
    let text = std::fs::read_to_string(curve).unwrap();
    let rows: Vec<Vec<u64>> =
        text.lines().skip(1).map(|l| l.split(',').map(|f| f.parse().unwrap()).collect()).collect();
    let mut worker_ms = 0u64;
    for (i, row) in rows.iter().enumerate() {
        let end = rows.get(i + 1).map_or(until_ms, |next| next[0]);
        worker_ms += (row[3] + row[4]) * (end - row[0]);
    }
    worker_ms as f64 / 1000.0
}

#[test]
fn burst_report_is_complete_consistent_and_renders() {
    let dir = common::temp_dir("simulate-burst");
    let out = dir.join("report");
    let table =
        simulate(&dir, &["--workload", "burst", "--policy", "vanilla", "--policy", "capability", "--out", "report"]);
    assert!(
        table.lines().any(|l| l.starts_with("vanilla ")) && table.lines().any(|l| l.starts_with("capability ")),
        "{table}"
    );
    for file in ["summary.json", "report.html", "demand.png", "capacity.png", "queue_wait.png"] {
        let path = out.join(file);
        assert!(path.metadata().is_ok_and(|m| m.len() > 1000), "{} is missing or empty", path.display());
    }
    let summary = read_json(&out.join("summary.json"));
    let duration = summary["workload"]["duration_ms"].as_u64().unwrap();
    let policies = summary["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 2);
    for p in policies {
        let f = &p["figures"];
        let label = p["label"].as_str().unwrap();
        assert_eq!(f["tasks_done"], f["tasks_arrived"], "{label}: every task that arrived was done");
        assert_eq!(f["tasks_arrived"], summary["workload"]["tasks"]);
        let integral = capacity_integral(&out.join(format!("curve-{label}.csv")), duration);
        let worker_seconds = f["worker_seconds"].as_f64().unwrap();
        assert!(
            (integral - worker_seconds).abs() < 1e-6,
            "{label}: worker-seconds {worker_seconds} vs the curve's {integral}"
        );
        assert!(f["idle_worker_seconds"].as_f64().unwrap() <= worker_seconds);
        assert!(f["decisions"].as_u64().unwrap() >= duration / 1000, "{label}: at least one decision per tick");
        assert_eq!(f["decision_failures"], 0);
        assert!(f["starts"].as_u64().unwrap() > 0 && f["time_to_capacity_ms"][0].is_u64(), "{label}: {f}");
    }
    render_in_browser(&out.join("report.html"), &dir);
}

/// Opens the report in headless Chromium and checks every chart loaded and has its size.
fn render_in_browser(report: &Path, dir: &Path) {
    let Some(chromium) = common::browser::chromium("the report's browser check") else { return };
    // The report as it is, plus a probe that writes what the browser made of each image into the DOM.
    let html = std::fs::read_to_string(report).unwrap();
    let probe = r#"<script>window.addEventListener('load', () => { const imgs = [...document.images]; const ok = imgs.filter(i => i.complete && i.naturalWidth >= 800 && i.getBoundingClientRect().height > 100); document.body.setAttribute('data-charts', ok.length + '/' + imgs.length); });</script></body>"#;
    let probed = dir.join("probed-report.html");
    std::fs::write(&probed, html.replace("</body>", probe)).unwrap();
    let url = format!("file://{}", probed.display());
    let (dom, _) = common::browser::dump_dom(&chromium, dir, &url, 5000, (1100, 2000));
    assert!(dom.contains(r#"data-charts="3/3""#), "chromium did not show all 3 charts: {}", &dom[..dom.len().min(400)]);
}

#[test]
fn same_inputs_and_seed_give_identical_summaries() {
    let dir = common::temp_dir("simulate-determinism");
    let args = |out: &str, seed: &str| {
        simulate(
            &dir,
            &[
                "--workload",
                "spiky",
                "--duration",
                "10m",
                "--seed",
                seed,
                "--policy",
                "vanilla",
                "--policy",
                "buffer:{\"adapter_id\": \"pool\", \"target_buffer\": 2}",
                "--out",
                out,
            ],
        );
        std::fs::read(dir.join(out).join("summary.json")).unwrap()
    };
    let first = args("a", "7");
    let second = args("b", "7");
    assert!(first == second, "the same inputs and seed gave different summaries");
    let other = args("c", "8");
    assert!(first != other, "another seed must give another run");
}

/// A short scripted scenario through `simulate` and through the real scheduler with the native
/// adapter: the same start and shutdown commands, in the same order.
#[test]
fn simulator_and_scheduler_share_the_scaling_core() {
    let dir = common::temp_dir("simulate-same-core");
    // Task A (3 s) at 0; task B (0.5 s) at 1 s: one start each; B's group goes first, then A's.
    std::fs::write(dir.join("scenario.csv"), "arrival_ms,duration_ms,capabilities\n0,3000,\n1000,500,\n").unwrap();
    let params = r#"{"upper_task_ratio": 1, "lower_task_ratio": 1}"#;
    let policy = format!("vanilla:{params}");
    simulate(
        &dir,
        &[
            "--workload",
            "scenario.csv",
            "--policy",
            &policy,
            "--adapter",
            "pool max_groups=4 workers=1 latency=50",
            "--tick-ms",
            "100",
            "--duration",
            "8s",
            "--out",
            "sim",
            "--decision-logs",
        ],
    );
    let simulated = commands(&dir.join("sim").join("decisions-vanilla.jsonl"));

    let log = dir.join("real.jsonl");
    let tables = "[scaling.params]\nupper_task_ratio = 1\nlower_task_ratio = 1\n\n[[adapter]]\ntype = \"native\"\nid = \"pool\"\nmax_worker_groups = 4\nworkers_per_group = 1\ngrace_ms = 500\n";
    let config = config("scaling=vanilla", 100, Some(&log), tables);
    let (_up, address, admin) = up(&dir, "up", &config);
    let a = {
        let address = address.clone();
        std::thread::spawn(move || submit(&address, &["--function", "sleep", "--payload", "3000"]))
    };
    std::thread::sleep(Duration::from_millis(1000));
    let b = submit(&address, &["--function", "sleep", "--payload", "500"]);
    assert_eq!(b["done"], 1);
    assert_eq!(a.join().unwrap()["done"], 1);
    wait_for("the pool to shrink back", Duration::from_secs(10), || live_groups(&admin) == 0);
    let real = commands(&log);

    let expected: Vec<String> =
        ["start(pool, {})", "start(pool, {})", "shutdown(2)", "shutdown(1)"].iter().map(|s| s.to_string()).collect();
    assert_eq!(simulated, expected, "the simulator");
    assert_eq!(real, simulated, "the scheduler and the simulator");
}

/// Every command of a decision log, in order, as text.
fn commands(log: &Path) -> Vec<String> {
    decisions(log)
        .iter()
        .flat_map(|d| d["commands"].as_array().unwrap().clone())
        .map(|c| match (c.get("start"), c.get("shutdown")) {
            (Some(s), _) => format!("start({}, {})", s["adapter"].as_str().unwrap(), s["capabilities"]),
            (_, Some(id)) => format!("shutdown({})", id.as_str().unwrap()),
            _ => panic!("unknown command {c}"),
        })
        .collect()
}

/// `pd_coordinated` on the `prefill-decode` workload (the prefill share of the tasks drifts from 80%
/// to 20%): the simulated engines report `ttft` and `kv_cache_utilization`, the host derives
/// `queue_depth`, and the split of the groups follows the pressure; the report charts both.
#[test]
fn prefill_decode_split_follows_the_pressure_and_is_charted() {
    let dir = common::temp_dir("simulate-pd");
    let args = ["--workload", "prefill-decode", "--duration", "12m", "--policy", "pd_coordinated"];
    simulate(&dir, &[&args[..], &["--out", "report", "--decision-logs"]].concat());
    let out = dir.join("report");
    for chart in ["split.png", "pressure.png"] {
        assert!(out.join(chart).metadata().is_ok_and(|m| m.len() > 1000), "{chart} is missing or empty");
    }
    let log = decisions(&out.join("decisions-pd_coordinated.jsonl"));
    let mut seen_metrics = std::collections::BTreeSet::new();
    // The prefill share of live groups over the first and the last quarter of the run.
    let (mut early, mut late) = (Vec::new(), Vec::new());
    let end = 12 * 60_000;
    for d in &log {
        let s = &d["snapshot"];
        let names = s["names"].as_array().unwrap();
        let role = |g: &Value| {
            let set = &s["capability_sets"][g["capabilities"].as_u64().unwrap() as usize];
            set.as_array()
                .unwrap()
                .first()
                .map(|c| names[c["name"].as_u64().unwrap() as usize].as_str().unwrap().to_owned())
        };
        for m in s["metrics"].as_array().unwrap() {
            seen_metrics.insert(names[m["name"].as_u64().unwrap() as usize].as_str().unwrap().to_owned());
        }
        let groups = s["worker_groups"].as_array().unwrap();
        let prefill = groups.iter().filter(|g| role(g).as_deref() == Some("prefill")).count() as f64;
        let decode = groups.iter().filter(|g| role(g).as_deref() == Some("decode")).count() as f64;
        if prefill + decode == 0.0 {
            continue;
        }
        let now = s["now_ms"].as_u64().unwrap();
        if now < end / 4 {
            early.push(prefill / (prefill + decode));
        } else if now > end * 3 / 4 {
            late.push(prefill / (prefill + decode));
        }
    }
    for name in ["utilization", "queue_depth", "ttft", "kv_cache_utilization"] {
        assert!(seen_metrics.contains(name), "no decision saw {name}: {seen_metrics:?}");
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (early, late) = (mean(&early), mean(&late));
    assert!(
        early > late + 0.2,
        "the prefill share of groups should fall with prefill pressure: {early:.2} -> {late:.2}"
    );
}
