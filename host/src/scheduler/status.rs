//! Counters and the state summary behind `/status` and `/metrics`.

use std::collections::BTreeMap;

use ebbtide_sdk::Trigger;
use serde::Serialize;

use super::{GroupPhase, Scheduler, tasks::describe};

/// Upper bounds of the decision latency histogram, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000];

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub decisions: u64,
    pub decisions_failed: u64,
    /// Failed decisions by `PolicyError::kind()` (`timeout`, `trap`, ...).
    pub decisions_failed_by_kind: BTreeMap<String, u64>,
    pub starts: u64,
    pub shutdowns: u64,
    pub commands_dropped: u64,
    /// Dropped commands by [`DropReason::kind`](super::DropReason::kind).
    pub commands_dropped_by_reason: BTreeMap<String, u64>,
    pub start_failures: u64,
    pub groups_lost: u64,
    pub tasks_submitted: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    pub tasks_cancelled: u64,
    pub tasks_requeued: u64,
    pub misses: u64,
    pub protocol_errors: u64,
    /// Messages dropped for breaking a rule, by kind (the peer is closed at `max_violations`).
    pub protocol_violations: std::collections::BTreeMap<&'static str, u64>,
    /// Submissions refused by a quota (`max_queued_tasks` and the like).
    pub tasks_refused: u64,
    /// Decision latency in microseconds, over [`LATENCY_BUCKETS_US`].
    pub latency_us: Histogram,
}

impl Counters {
    pub(super) fn observe_decision(&mut self, duration_us: u64) {
        self.decisions += 1;
        self.latency_us.observe(&LATENCY_BUCKETS_US, duration_us);
    }
}

/// Observations counted per bucket (a Prometheus histogram); the bounds are kept by the caller.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last counts what is above every bound.
    pub buckets: Vec<u64>,
    pub sum: u64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, bounds: &[u64], value: u64) {
        self.buckets.resize(bounds.len() + 1, 0);
        let bucket = bounds.iter().position(|b| value <= *b).unwrap_or(bounds.len());
        self.buckets[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LastDecision {
    pub time_ms: u64,
    pub trigger: Trigger,
    /// Commands sent (after the guard rails).
    pub commands: usize,
    pub dropped: usize,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdapterStatus {
    pub id: String,
    pub max_worker_groups: u32,
    pub workers_per_group: u32,
    pub capabilities: Option<String>,
    pub priority: i32,
    /// Live groups (starting, running or draining).
    pub groups: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupCounts {
    pub starting: usize,
    pub running: usize,
    pub draining: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskCounts {
    /// Queued, or prefetched: assigned to a worker busy with another task (as scaling counts them).
    pub pending: usize,
    /// Of `pending`, those prefetched.
    pub prefetched: usize,
    pub running: usize,
    pub done: u64,
    pub failed: u64,
}

/// The cluster as `/status` shows it (the shell adds the policy).
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub decisions_in_flight: bool,
    pub last_decision: Option<LastDecision>,
    pub adapters: Vec<AdapterStatus>,
    pub groups: GroupCounts,
    pub workers: usize,
    pub tasks: TaskCounts,
    pub diagnostics: Vec<String>,
    pub counters: Counters,
}

impl Scheduler {
    pub fn status(&self) -> Status {
        let mut groups = GroupCounts::default();
        for g in self.groups.values() {
            match g.phase {
                GroupPhase::Starting => groups.starting += 1,
                GroupPhase::Running => groups.running += 1,
                GroupPhase::Draining => groups.draining += 1,
            }
        }
        let adapters = self
            .adapters
            .iter()
            .map(|(id, a)| AdapterStatus {
                id: id.clone(),
                max_worker_groups: a.max_worker_groups,
                workers_per_group: a.workers_per_group,
                capabilities: a.capabilities.as_ref().map(describe),
                priority: a.priority,
                groups: self.groups.values().filter(|g| g.adapter.as_deref() == Some(id)).count(),
            })
            .collect();
        let pending: usize = self.demand().values().map(|d| d.pending as usize).sum();
        let queued: usize = self.queues.values().map(|q| q.len()).sum();
        Status {
            decisions_in_flight: self.in_flight.is_some(),
            last_decision: self.last_decision.clone(),
            adapters,
            groups,
            workers: self.workers.len(),
            tasks: TaskCounts {
                pending,
                prefetched: pending - queued,
                running: self.tasks.len() - pending,
                done: self.counters.tasks_done,
                failed: self.counters.tasks_failed,
            },
            diagnostics: self.unrunnable.values().cloned().chain(self.stuck_diagnostics()).collect(),
            counters: self.counters.clone(),
        }
    }
}
