//! The `metrics` of the snapshot (H7), from two sources:
//!
//! - **Derived by the host** for every worker group with at least one worker:
//!   - `utilization`: busy workers over workers, 0 to 1.
//!   - `queue_depth`: the pending tasks (queued, or prefetched behind a running task) the group's
//!     workers could run, per worker able to run them.
//!     Each queue (one per capability set) is shared among every worker, in any group that is not
//!     draining, whose capabilities allow its tasks; a worker's figure is the sum of its shares, and
//!     the group's is the mean over its workers. So 10 pending tasks and 2 capable groups of one
//!     worker each give each group 5, and summing a role's groups (as `pd_coordinated` does) gives
//!     the role's backlog rather than a multiple of it.
//! - **Reported by workers**: named gauges in their heartbeats ([`WorkerHeartbeat::gauges`]). A
//!   heartbeat carries the worker's current gauges, which replace those of its previous heartbeat.
//!   The group's sample of a gauge is the mean over its workers that report it. A gauge named like a
//!   derived metric replaces the host's figure for that group (the worker knows its engine best).
//!
//! Bounds, so that a worker cannot make the scheduler hold or forward much: at most
//! [`MAX_GAUGES_PER_WORKER`] gauges per worker (the first ones of the heartbeat; the rest are
//! dropped), names of 1 to [`MAX_GAUGE_NAME_BYTES`] bytes of letters, digits and `_-.:/` (others
//! dropped), finite values only (NaN and infinities dropped). Dropped gauges are logged at debug level.
//!
//! [`WorkerHeartbeat::gauges`]: crate::protocol::WorkerHeartbeat::gauges

use std::collections::BTreeMap;

use ebbtide_sdk::{CapMap, SnapshotBuilder};

use super::{GroupId, GroupPhase, PeerId, Scheduler};

/// Gauges kept per worker; the rest of a heartbeat's gauges are dropped.
pub const MAX_GAUGES_PER_WORKER: usize = 32;
/// Longest gauge name kept, in bytes.
pub const MAX_GAUGE_NAME_BYTES: usize = 64;

/// The names of the metrics the host derives for every group.
pub const UTILIZATION: &str = "utilization";
pub const QUEUE_DEPTH: &str = "queue_depth";

/// The gauges of a heartbeat that the scheduler keeps (see the module's bounds).
pub fn keep_gauges(peer: PeerId, gauges: Vec<(String, f64)>) -> BTreeMap<String, f64> {
    let mut kept = BTreeMap::new();
    let offered = gauges.len();
    for (name, value) in gauges {
        if kept.len() >= MAX_GAUGES_PER_WORKER {
            break;
        }
        if gauge_name_ok(&name) && value.is_finite() {
            kept.insert(name, value);
        }
    }
    if kept.len() < offered {
        tracing::debug!(
            peer,
            offered,
            kept = kept.len(),
            "dropped gauges: at most {MAX_GAUGES_PER_WORKER} per worker, names of 1 to {MAX_GAUGE_NAME_BYTES} \
             letters, digits or _-.:/ characters, finite values"
        );
    }
    kept
}

/// Is this a gauge name the scheduler keeps?
pub fn gauge_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GAUGE_NAME_BYTES
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
}

impl Scheduler {
    /// Adds the metric samples of group `id`, at index `index` of the snapshot's worker groups.
    pub(super) fn group_metrics(&self, b: &mut SnapshotBuilder, index: u32, id: GroupId, depth: &QueueShares) {
        let Some(g) = self.groups.get(&id) else { return };
        if g.workers.is_empty() {
            return;
        }
        let workers: Vec<_> = g.workers.iter().filter_map(|p| self.workers.get(p)).collect();
        let n = workers.len().max(1) as f64;
        let mut samples: BTreeMap<&str, f64> = BTreeMap::new();
        samples.insert(UTILIZATION, f64::from(g.busy) / g.workers.len() as f64);
        if g.phase != GroupPhase::Draining {
            let total: f64 = workers.iter().map(|w| depth.of(&w.capabilities)).sum();
            samples.insert(QUEUE_DEPTH, total / n);
        }
        let mut reported: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
        for w in &workers {
            for (name, value) in &w.gauges {
                let e = reported.entry(name.as_str()).or_default();
                e.0 += *value;
                e.1 += 1;
            }
        }
        for (name, (sum, count)) in reported {
            samples.insert(name, sum / f64::from(count));
        }
        for (name, value) in samples {
            b.metric(index, name, value);
        }
    }

    /// Each capability set's pending tasks (queued or prefetched, from [`Scheduler::demand`]) per
    /// capable worker, for `queue_depth`.
    pub(super) fn queue_shares(&self, demand: &BTreeMap<&CapMap, super::holding::Demand>) -> QueueShares {
        // Workers that may take tasks, by capability set.
        let mut by_caps: BTreeMap<&CapMap, u32> = BTreeMap::new();
        for g in self.groups.values().filter(|g| g.phase != GroupPhase::Draining) {
            for w in g.workers.iter().filter_map(|p| self.workers.get(p)) {
                *by_caps.entry(&w.capabilities).or_default() += 1;
            }
        }
        // Each queue, with how many of those workers share it.
        let queues: Vec<(&CapMap, f64)> = demand
            .iter()
            .filter(|(_, d)| d.pending > 0)
            .map(|(task_caps, d)| {
                let capable: u32 = by_caps.iter().filter(|(c, _)| self.capable(c, task_caps)).map(|(_, n)| n).sum();
                (*task_caps, f64::from(d.pending) / f64::from(capable.max(1)))
            })
            .collect();
        let mut per_set = BTreeMap::new();
        for caps in by_caps.keys() {
            let share: f64 = queues.iter().filter(|(task_caps, _)| self.capable(caps, task_caps)).map(|(_, s)| s).sum();
            per_set.insert((*caps).clone(), share);
        }
        QueueShares(per_set)
    }
}

/// The pending tasks per capable worker, by worker capability set.
pub(super) struct QueueShares(BTreeMap<CapMap, f64>);

impl QueueShares {
    fn of(&self, caps: &CapMap) -> f64 {
        self.0.get(caps).copied().unwrap_or(0.0)
    }
}
