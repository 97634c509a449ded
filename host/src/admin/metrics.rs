//! Prometheus text exposition of the scheduler's counters.

use std::fmt::Write;

use std::collections::BTreeMap;

use crate::scheduler::DropReason;
use crate::scheduler::status::{Histogram, LATENCY_BUCKETS_US, Status};
use crate::server::ShellStatus;
use crate::server::shell_status::SWAP_BUCKETS_MS;

pub fn render(shell: &ShellStatus, s: &Status) -> String {
    let (policy, swaps, c) = (&shell.policy, &shell.swaps, &s.counters);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP ebbtide_{name} {help}\n# TYPE ebbtide_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "ebbtide_{name}{labels} {value}");
        }
    };
    // The name and version come from the guest: escaped, so a policy cannot forge metric lines.
    let info = format!(
        r#"{{name="{}",version="{}",digest="{}"}}"#,
        escape(&policy.name),
        escape(&policy.version),
        escape(&policy.digest)
    );
    metric("policy_info", "gauge", "The active scaling policy.", &[(&info, 1.0)]);
    metric(
        "fallback_active",
        "gauge",
        "1 while the fallback built-in decides for a failing policy.",
        &[("", if policy.fallback_active { 1.0 } else { 0.0 })],
    );
    metric(
        "swaps_total",
        "counter",
        "Policy swaps by outcome.",
        &[(r#"{outcome="accepted"}"#, swaps.accepted as f64), (r#"{outcome="rejected"}"#, swaps.rejected as f64)],
    );
    if let Some(shadow) = &shell.shadow {
        metric(
            "shadow_decisions_total",
            "counter",
            "Shadow decisions compared with the active policy's.",
            &[
                (r#"{outcome="equal"}"#, shadow.equal as f64),
                (r#"{outcome="different"}"#, shadow.different as f64),
                (r#"{outcome="failed"}"#, shadow.failed as f64),
                (r#"{outcome="skipped"}"#, shadow.skipped as f64),
            ],
        );
    }
    let cache = crate::policy::compile_cache::counters();
    metric(
        "compile_cache_total",
        "counter",
        "Policy compilations by outcome: served from memory or disk, compiled (miss), disk entries ignored as invalid or evicted (compile_cache_mb).",
        &[
            (r#"{outcome="memory_hit"}"#, cache.memory_hit as f64),
            (r#"{outcome="disk_hit"}"#, cache.disk_hit as f64),
            (r#"{outcome="miss"}"#, cache.miss as f64),
            (r#"{outcome="invalid"}"#, cache.invalid as f64),
            (r#"{outcome="evicted"}"#, cache.evicted as f64),
        ],
    );
    let tiers = crate::policy::compile_cache::tiers();
    metric(
        "tiered_swaps_total",
        "counter",
        "New builds served first from the baseline compiler (Winch), and optimized (Cranelift) builds that took over.",
        &[(r#"{stage="baseline"}"#, tiers.baseline as f64), (r#"{stage="optimized"}"#, tiers.optimized as f64)],
    );
    metric("decisions_total", "counter", "Scaling decisions made.", &[("", c.decisions as f64)]);
    let failed = labelled("kind", crate::policy::PolicyError::KINDS.iter().copied(), &c.decisions_failed_by_kind);
    metric("decisions_failed_total", "counter", "Decisions the policy failed, by kind of failure.", &borrowed(&failed));
    let dropped = labelled("reason", DropReason::KINDS.iter().copied(), &c.commands_dropped_by_reason);
    metric("commands_dropped_total", "counter", "Commands refused by the guard rails, by reason.", &borrowed(&dropped));
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

    let violations: Vec<(String, f64)> =
        c.protocol_violations.iter().map(|(kind, n)| (format!(r#"{{kind="{}"}}"#, escape(kind)), *n as f64)).collect();
    let violations: Vec<(&str, f64)> = violations.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "protocol_violations_total",
        "counter",
        "Messages dropped for breaking a protocol rule, by kind (a peer is closed at max_violations).",
        &violations,
    );
    metric(
        "tasks_refused_total",
        "counter",
        "Submissions refused by a quota (max_queued_tasks, max_queued_bytes, name and capability limits).",
        &[("", c.tasks_refused as f64)],
    );
    if let Some(log) = &shell.decision_log {
        metric(
            "decision_log_lines_total",
            "counter",
            "Decision log lines by outcome (failed: a write failed; dropped: the disk could not keep up).",
            &[
                (r#"{outcome="written"}"#, log.written as f64),
                (r#"{outcome="failed"}"#, log.failed as f64),
                (r#"{outcome="dropped"}"#, log.dropped as f64),
            ],
        );
    }

    histogram(
        &mut out,
        "decision_seconds",
        "Time the policy took per decision.",
        &LATENCY_BUCKETS_US,
        1e6,
        &c.latency_us,
    );
    histogram(
        &mut out,
        "swap_seconds",
        "Time from a swap request to the new policy installed.",
        &SWAP_BUCKETS_MS,
        1e3,
        &swaps.latency_ms,
    );
    out
}

/// One sample per kind, every known kind listed (at 0 until it happens) so that rates work from the start.
fn labelled<'a>(
    label: &str,
    kinds: impl Iterator<Item = &'a str>,
    counts: &BTreeMap<String, u64>,
) -> Vec<(String, f64)> {
    let mut all: BTreeMap<&str, u64> = kinds.map(|k| (k, 0)).collect();
    for (kind, n) in counts {
        all.insert(kind, *n);
    }
    all.into_iter().map(|(kind, n)| (format!(r#"{{{label}="{kind}"}}"#), n as f64)).collect()
}

fn borrowed(samples: &[(String, f64)]) -> Vec<(&str, f64)> {
    samples.iter().map(|(l, v)| (l.as_str(), *v)).collect()
}

/// A Prometheus histogram from per-bucket counts; `scale` turns the unit into seconds.
fn histogram(out: &mut String, name: &str, help: &str, bounds: &[u64], scale: f64, h: &Histogram) {
    let _ = writeln!(out, "# HELP ebbtide_{name} {help}\n# TYPE ebbtide_{name} histogram");
    let mut cumulative = 0;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += h.buckets.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, r#"ebbtide_{name}_bucket{{le="{}"}} {cumulative}"#, *bound as f64 / scale);
    }
    let _ = writeln!(out, r#"ebbtide_{name}_bucket{{le="+Inf"}} {}"#, h.count);
    let _ = writeln!(out, "ebbtide_{name}_sum {}", h.sum as f64 / scale);
    let _ = writeln!(out, "ebbtide_{name}_count {}", h.count);
}

/// A Prometheus label value: backslash, double quote and newline escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(super::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
