//! Prometheus text exposition of the scheduler's counters.

use std::fmt::Write;

use crate::scheduler::status::{LATENCY_BUCKETS_US, Status};
use crate::server::PolicyStatus;

pub fn render(policy: &PolicyStatus, s: &Status) -> String {
    let c = &s.counters;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP ebbtide_{name} {help}\n# TYPE ebbtide_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "ebbtide_{name}{labels} {value}");
        }
    };
    let info = format!(r#"{{name="{}",version="{}",digest="{}"}}"#, policy.name, policy.version, policy.digest);
    metric("policy_info", "gauge", "The active scaling policy.", &[(&info, 1.0)]);
    metric("decisions_total", "counter", "Scaling decisions made.", &[("", c.decisions as f64)]);
    metric("decision_failures_total", "counter", "Decisions the policy failed.", &[("", c.decisions_failed as f64)]);
    metric(
        "commands_dropped_total",
        "counter",
        "Commands refused by the guard rails.",
        &[("", c.commands_dropped as f64)],
    );
    metric("group_starts_total", "counter", "Group starts sent to adapters.", &[("", c.starts as f64)]);
    metric("group_shutdowns_total", "counter", "Group shutdowns sent to adapters.", &[("", c.shutdowns as f64)]);
    metric("start_failures_total", "counter", "Starts that failed or timed out.", &[("", c.start_failures as f64)]);
    metric("groups_lost_total", "counter", "Groups whose processes all exited.", &[("", c.groups_lost as f64)]);
    metric(
        "tasks_total",
        "counter",
        "Tasks by outcome.",
        &[
            (r#"{outcome="submitted"}"#, c.tasks_submitted as f64),
            (r#"{outcome="done"}"#, c.tasks_done as f64),
            (r#"{outcome="failed"}"#, c.tasks_failed as f64),
            (r#"{outcome="cancelled"}"#, c.tasks_cancelled as f64),
            (r#"{outcome="requeued"}"#, c.tasks_requeued as f64),
        ],
    );
    metric(
        "tasks",
        "gauge",
        "Unfinished tasks by state.",
        &[(r#"{state="pending"}"#, s.tasks.pending as f64), (r#"{state="running"}"#, s.tasks.running as f64)],
    );
    metric("workers", "gauge", "Connected workers.", &[("", s.workers as f64)]);
    metric(
        "groups",
        "gauge",
        "Worker groups by state.",
        &[
            (r#"{state="starting"}"#, s.groups.starting as f64),
            (r#"{state="running"}"#, s.groups.running as f64),
            (r#"{state="draining"}"#, s.groups.draining as f64),
        ],
    );
    metric(
        "protocol_errors_total",
        "counter",
        "Connections closed for a protocol violation.",
        &[("", c.protocol_errors as f64)],
    );

    let _ = writeln!(out, "# HELP ebbtide_decision_seconds Time the policy took per decision.");
    let _ = writeln!(out, "# TYPE ebbtide_decision_seconds histogram");
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BUCKETS_US.iter().zip(&c.latency_buckets) {
        cumulative += count;
        let _ = writeln!(out, r#"ebbtide_decision_seconds_bucket{{le="{}"}} {cumulative}"#, *bound as f64 / 1e6);
    }
    let _ = writeln!(out, r#"ebbtide_decision_seconds_bucket{{le="+Inf"}} {}"#, c.decisions);
    let _ = writeln!(out, "ebbtide_decision_seconds_sum {}", c.latency_sum_us as f64 / 1e6);
    let _ = writeln!(out, "ebbtide_decision_seconds_count {}", c.decisions);
    out
}
