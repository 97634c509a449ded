//! Every built-in that scales on its own rules, in the real scheduler: the real binary, the native
//! adapter's worker processes, real sockets; asserted from the decision log (what each decision saw
//! and what it did), never from wall-clock times.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::cluster::{config, decisions, live_groups, processes_matching, status, submit, up, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A decision record's snapshot, read back: groups by role and metrics by group.
struct Seen<'a>(&'a Value);

impl<'a> Seen<'a> {
    fn name(&self, id: &Value) -> &'a str {
        self.0["snapshot"]["names"][id.as_u64().unwrap() as usize].as_str().unwrap()
    }

    /// The capability names of set `id`, joined with `,` (`{}` for none).
    fn set(&self, id: &Value) -> String {
        let set = &self.0["snapshot"]["capability_sets"][id.as_u64().unwrap() as usize];
        let names: Vec<&str> = set.as_array().unwrap().iter().map(|c| self.name(&c["name"])).collect();
        if names.is_empty() { "{}".into() } else { names.join(",") }
    }

    fn groups(&self) -> &'a [Value] {
        self.0["snapshot"]["worker_groups"].as_array().unwrap()
    }

    /// Live (starting or running) groups of each role.
    fn live_by_role(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for g in self.groups().iter().filter(|g| g["state"] != "draining") {
            *out.entry(self.set(&g["capabilities"])).or_default() += 1;
        }
        out
    }

    /// Every metric sample as (role of its group, metric name, value).
    fn metrics(&self) -> Vec<(String, String, f64)> {
        let groups = self.groups();
        self.0["snapshot"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let g = &groups[m["group"].as_u64().unwrap() as usize];
                (self.set(&g["capabilities"]), self.name(&m["name"]).to_owned(), m["value"].as_f64().unwrap())
            })
            .collect()
    }

    fn starts_by_role(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for c in self.0["commands"].as_array().unwrap() {
            if let Some(start) = c.get("start") {
                let caps = start["capabilities"].as_object().unwrap();
                let role =
                    if caps.is_empty() { "{}".into() } else { caps.keys().cloned().collect::<Vec<_>>().join(",") };
                *out.entry(role).or_default() += 1;
            }
        }
        out
    }

    /// The role of each group shut down.
    fn shutdown_roles(&self) -> Vec<String> {
        let ids: Vec<&str> =
            self.0["commands"].as_array().unwrap().iter().filter_map(|c| c["shutdown"].as_str()).collect();
        let groups = self.groups().iter().filter(|g| ids.contains(&g["id"].to_string().as_str()));
        groups.map(|g| self.set(&g["capabilities"])).collect()
    }

    fn shutdowns(&self) -> usize {
        self.0["commands"].as_array().unwrap().iter().filter(|c| c.get("shutdown").is_some()).count()
    }

    fn starts_on(&self, adapter: &str) -> usize {
        self.0["commands"].as_array().unwrap().iter().filter(|c| c["start"]["adapter"] == adapter).count()
    }
}

/// Waits until a decision satisfies `pick`, and returns it.
fn decision_where(log: &Path, what: &str, pick: impl Fn(&Seen) -> bool) -> Value {
    let mut found = None;
    wait_for(what, WAIT, || {
        found = decisions(log).into_iter().find(|d| pick(&Seen(d)));
        found.is_some()
    });
    found.unwrap()
}

fn after(seq: &Value) -> impl Fn(&Seen) -> bool + '_ {
    move |s: &Seen| s.0["seq"].as_u64() > seq.as_u64()
}

/// `fixed_elastic`: the primary starts eagerly and is never shut down; when its process dies it is
/// restored on the next decision; elastic groups come with a burst and go once it is done.
#[test]
fn fixed_elastic_restores_a_killed_primary_and_elastic_groups_come_and_go() {
    let dir = common::temp_dir("builtin-fixed-elastic");
    let log = dir.join("decisions.jsonl");
    let tables = r#"
[scaling.params]
primary_adapters = ["prim"]
primary_start = "eager"
upper_task_ratio = 2

[[adapter]]
type = "native"
id = "prim"
max_worker_groups = 1
workers_per_group = 1

[[adapter]]
type = "native"
id = "burst"
max_worker_groups = 4
workers_per_group = 1
priority = 1
"#;
    let text = config("scaling=fixed_elastic", 200, Some(&log), tables)
        .replace("tick_ms = 200\n", "tick_ms = 200\npressure_delay_ms = 200\n");
    let (_up, address, admin) = up(&dir, "fixed-elastic", &text);

    let first = decision_where(&log, "the eager primary start", |s| s.starts_on("prim") == 1);
    wait_for("the primary to run", WAIT, || status(&admin)["groups"]["running"] == 1);

    // 8 tasks at a ratio of 2 need 4 workers: the primary's and 3 elastic ones.
    let summary = submit(&address, &["--function", "sleep", "--payload", "1500", "--count", "8"]);
    assert_eq!(summary["done"], 8, "{summary}");
    let grew = decision_where(&log, "elastic starts", |s| s.starts_on("burst") > 0);
    assert_eq!(Seen(&grew).starts_on("burst"), 3, "{grew}");
    assert_eq!(Seen(&grew).starts_on("prim"), 0, "one primary only: {grew}");
    let shrank = decision_where(&log, "elastic groups shut down", |s| s.shutdowns() > 0);
    assert!(shrank["seq"].as_u64() > grew["seq"].as_u64());
    wait_for("only the primary to remain", WAIT, || live_groups(&admin) == 1);
    // The primary is never shut down: no shutdown names a group any snapshot shows on `prim`.
    let every = decisions(&log);
    let mut primaries = Vec::new();
    for d in &every {
        let seen = Seen(d);
        for g in seen.groups().iter().filter(|g| !g["adapter"].is_null() && seen.name(&g["adapter"]) == "prim") {
            primaries.push(g["id"].to_string());
        }
    }
    for d in &every {
        for c in d["commands"].as_array().unwrap() {
            if let Some(id) = c["shutdown"].as_str() {
                assert!(!primaries.contains(&id.to_owned()), "the primary {id} was shut down: {d}");
            }
        }
    }

    // Kill the primary's worker: its adapter reports the group lost, and the policy restores it.
    let now = decisions(&log).last().cloned().unwrap();
    let seen = Seen(&now);
    let primary = seen.groups().iter().find(|g| !g["adapter"].is_null() && seen.name(&g["adapter"]) == "prim").unwrap();
    // This scheduler's worker of that group (other tests' clusters run beside this one).
    let needle = format!("{address} --group {} ", primary["id"]);
    let procs = processes_matching(&needle);
    assert_eq!(procs.len(), 1, "{procs:?}");
    let pid: i32 = procs[0].split(':').next().unwrap().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let restored = decision_where(&log, "the primary restored", |s| after(&now["seq"])(s) && s.starts_on("prim") == 1);
    let seen = Seen(&restored);
    assert!(
        !seen.groups().iter().any(|g| g["id"] == primary["id"]),
        "the lost primary group is gone from the snapshot that restores it: {restored}"
    );
    assert!(first["seq"].as_u64() < restored["seq"].as_u64());
    wait_for("the new primary to run", WAIT, || status(&admin)["groups"]["running"] == 1);
}

/// `pd_coordinated` in the real scheduler: prefill and decode tasks run on their roles' workers, and
/// the gauges the workers report (`ttft` on prefill, `kv_cache_utilization` on decode) move the
/// split, which stays within the bands. The decision log shows the host-derived `utilization` and
/// `queue_depth` beside the reported gauges.
#[test]
fn pd_coordinated_reported_metrics_move_the_split_within_the_bands() {
    let dir = common::temp_dir("builtin-pd");
    let log = dir.join("decisions.jsonl");
    let tables = r#"
[scaling.params]
panic_threshold_pct = 1000
panic_hold_ms = 0
scale_down_stabilization_ms = 0

[[scaling.params.roles]]
name = "prefill"
capabilities = { prefill = 1 }
min_replicas = 1
max_replicas = 4
tasks_per_replica = 0
metric_targets = { ttft = 1.0 }
preferred_share = { min_pct = 20, max_pct = 80 }

[[scaling.params.roles]]
name = "decode"
capabilities = { decode = 1 }
min_replicas = 1
max_replicas = 4
tasks_per_replica = 0
metric_targets = { kv_cache_utilization = 0.5 }
preferred_share = { min_pct = 20, max_pct = 80 }

[[adapter]]
type = "native"
id = "pool"
max_worker_groups = 10
workers_per_group = 1
"#;
    let (_up, address, admin) = up(&dir, "pd", &config("scaling=pd_coordinated", 200, Some(&log), tables));
    // Live groups of each role once the decision is carried out.
    let split = |d: &Value| {
        let s = Seen(d);
        let mut live = s.live_by_role();
        for (role, n) in s.starts_by_role() {
            *live.entry(role).or_default() += n;
        }
        for role in s.shutdown_roles() {
            *live.entry(role).or_default() -= 1;
        }
        (live.get("prefill").copied().unwrap_or(0), live.get("decode").copied().unwrap_or(0))
    };
    let initial = decision_where(&log, "one group per role", |s| s.starts_by_role().len() == 2);
    assert_eq!(split(&initial), (1, 1), "{initial}");
    wait_for("both roles to run", WAIT, || status(&admin)["groups"]["running"] == 2);

    // Tasks of each role run on that role's workers.
    for role in ["prefill=1", "decode=1"] {
        let summary =
            submit(&address, &["--function", "echo", "--payload", "hi", "--capabilities", role, "--count", "4"]);
        assert_eq!(summary["done"], 4, "{role}: {summary}");
    }

    // A slow first token on the prefill worker: 3 s against a target of 1 s per replica.
    let summary = submit(&address, &["--function", "gauge", "--payload", "ttft=3", "--capabilities", "prefill=1"]);
    assert_eq!(summary["done"], 1, "{summary}");
    let grew = decision_where(&log, "prefill grown for its ttft", |s| {
        after(&initial["seq"])(s) && s.starts_by_role().contains_key("prefill")
    });
    let seen = Seen(&grew);
    let metrics = seen.metrics();
    for name in ["utilization", "queue_depth"] {
        assert!(metrics.iter().any(|(_, n, _)| n == name), "the host derives {name}: {metrics:?}");
    }
    assert!(metrics.contains(&("prefill".into(), "ttft".into(), 3.0)), "the worker's gauge: {metrics:?}");
    assert_eq!(split(&grew), (3, 1), "prefill 3 of 4 (75%, inside 20-80%): {grew}");
    wait_for("four groups running", WAIT, || status(&admin)["groups"]["running"] == 4);

    // A full KV cache on the decode worker: decode grows too.
    let summary = submit(
        &address,
        &["--function", "gauge", "--payload", "kv_cache_utilization=0.9", "--capabilities", "decode=1"],
    );
    assert_eq!(summary["done"], 1, "{summary}");
    let decode = decision_where(&log, "decode grown for its kv cache", |s| {
        after(&grew["seq"])(s) && s.starts_by_role().contains_key("decode")
    });
    assert_eq!(split(&decode), (3, 2), "{decode}");
    wait_for("five groups running", WAIT, || status(&admin)["groups"]["running"] == 5);

    // A fast first token again on that worker (the lowest idle one takes the task): prefill shrinks.
    let summary = submit(&address, &["--function", "gauge", "--payload", "ttft=0.2", "--capabilities", "prefill=1"]);
    assert_eq!(summary["done"], 1, "{summary}");
    let shrank = decision_where(&log, "prefill shrunk", |s| after(&decode["seq"])(s) && s.shutdowns() > 0);
    assert_eq!(split(&shrank), (1, 2), "{shrank}");

    // Every decision leaves a split inside the bands once both roles have groups.
    for d in decisions(&log) {
        let (p, dd) = split(&d);
        if p > 0 && dd > 0 {
            let share = p as f64 / (p + dd) as f64;
            assert!((0.2..=0.8).contains(&share), "prefill share {share} outside 20-80% after {d}");
        }
    }
}

/// `buffer`: a burst starts exactly `busy + target_buffer + burst` workers in one decision (each
/// queued task counted once, though it is also a miss), and a bigger one no more than `max_replicas`.
#[test]
fn buffer_starts_busy_plus_target_buffer_plus_burst_in_one_decision_up_to_max_replicas() {
    let dir = common::temp_dir("builtin-buffer");
    let log = dir.join("decisions.jsonl");
    let tables = r#"
[scaling.params]
adapter_id = "pool"
target_buffer = 2
max_replicas = 12

[[adapter]]
type = "native"
id = "pool"
max_worker_groups = 0
workers_per_group = 1
"#;
    let mut text = config("scaling=buffer", 60_000, Some(&log), tables);
    text = text.replace("tick_ms = 60000\n", "tick_ms = 60000\npressure_delay_ms = 300\n");
    let (_up, address, admin) = up(&dir, "buffer", &text);
    let warm = decision_where(&log, "the warm buffer", |s| s.starts_on("pool") > 0);
    assert_eq!(Seen(&warm).starts_on("pool"), 2, "target_buffer idle workers: {warm}");
    wait_for("the buffer to run", WAIT, || status(&admin)["groups"]["running"] == 2);

    // 6 tasks: 2 run on the warm workers, 4 wait (and are misses too): 2 busy + 2 buffer + 4 = 8.
    let submitter = {
        let address = address.clone();
        std::thread::spawn(move || submit(&address, &["--function", "sleep", "--payload", "4000", "--count", "6"]))
    };
    let burst = decision_where(&log, "the burst's starts", |s| after(&warm["seq"])(s) && s.starts_on("pool") > 0);
    let seen = Seen(&burst);
    assert_eq!(burst["trigger"], "pressure", "{burst}");
    assert_eq!(seen.starts_on("pool"), 6, "8 workers wanted, 2 there: {burst}");
    let misses: u64 =
        burst["snapshot"]["misses"].as_array().unwrap().iter().map(|m| m["count"].as_u64().unwrap()).sum();
    assert_eq!(misses, 4, "the queued tasks are also misses: {burst}");
    wait_for("eight groups running", WAIT, || status(&admin)["groups"]["running"] == 8);
    let others =
        decisions(&log).into_iter().filter(|d| after(&burst["seq"])(&Seen(d)) && Seen(d).starts_on("pool") > 0).count();
    assert_eq!(others, 0, "all in one decision, and none while the groups came up");

    // 40 more while the first run: the ideal is far above max_replicas, so 12 - 8 = 4 start.
    let big = submit(&address, &["--function", "sleep", "--payload", "200", "--count", "40"]);
    assert_eq!(big["done"], 40, "{big}");
    let capped = decision_where(&log, "the capped starts", |s| after(&burst["seq"])(s) && s.starts_on("pool") > 0);
    assert_eq!(Seen(&capped).starts_on("pool"), 4, "up to max_replicas: {capped}");
    assert_eq!(submitter.join().unwrap()["done"], 6);
}
