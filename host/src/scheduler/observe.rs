//! What the live dashboard samples about the fleet and the queue, beyond `/status`: groups and workers
//! per adapter and per state, and the oldest pending task (for queue wait).
//!
//! Read-only and O(groups + pending tasks); the shell calls it about once a second.

use std::collections::BTreeMap;

use serde::Serialize;

use super::status::GroupCounts;
use super::{GroupPhase, Scheduler, TaskId};

/// One adapter's share of the fleet (`adapter` is `None` for unmanaged workers).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdapterFleet {
    pub adapter: Option<String>,
    pub groups: GroupCounts,
    /// Workers by the state of their group. A starting group counts at its adapter's
    /// `workers_per_group` (or at its connected workers, if more): the capacity on its way.
    pub workers: GroupCounts,
}

#[derive(Clone, Debug, Default)]
pub struct FleetObservation {
    /// By adapter name; unmanaged workers last.
    pub by_adapter: Vec<AdapterFleet>,
    /// The id the next submitted task will get (ids grow by one per submission).
    pub next_task: TaskId,
    /// The lowest id of a pending task: the one that has waited longest.
    pub oldest_pending: Option<TaskId>,
}

impl Scheduler {
    pub fn observe_fleet(&self) -> FleetObservation {
        let mut by_adapter: BTreeMap<Option<&str>, AdapterFleet> = BTreeMap::new();
        for name in self.adapters.keys() {
            by_adapter.entry(Some(name.as_str())).or_default();
        }
        for g in self.groups.values() {
            let entry = by_adapter.entry(g.adapter.as_deref()).or_default();
            let connected = g.workers.len();
            let (groups, workers, expected) = match g.phase {
                GroupPhase::Starting => (&mut entry.groups.starting, &mut entry.workers.starting, true),
                GroupPhase::Running => (&mut entry.groups.running, &mut entry.workers.running, false),
                GroupPhase::Draining => (&mut entry.groups.draining, &mut entry.workers.draining, false),
            };
            *groups += 1;
            let size = match (expected, g.adapter.as_ref().and_then(|a| self.adapters.get(a))) {
                (true, Some(a)) => connected.max(a.workers_per_group as usize),
                _ => connected,
            };
            *workers += size;
        }
        let mut fleet: Vec<AdapterFleet> = by_adapter
            .into_iter()
            .map(|(name, mut f)| {
                f.adapter = name.map(str::to_owned);
                f
            })
            .collect();
        // BTreeMap puts `None` first; unmanaged workers read better last.
        let unmanaged_first = fleet.first().is_some_and(|f| f.adapter.is_none());
        fleet.rotate_left(usize::from(unmanaged_first));
        FleetObservation {
            by_adapter: fleet,
            next_task: self.next_task,
            oldest_pending: self.queues.values().flat_map(|q| q.iter().copied()).min(),
        }
    }
}
