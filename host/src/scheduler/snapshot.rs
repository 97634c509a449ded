//! The contract's snapshot of the cluster: aggregated by capability set, names interned (H1, H2, H5, H6),
//! with the metrics of each worker group (H7, [`super::metrics`]).

use ebbtide_sdk::{GroupState, Snapshot, SnapshotBuilder, TaskGroup, Trigger, WorkerGroup};

use super::{GroupPhase, Scheduler};

impl Scheduler {
    /// The snapshot for a decision now. Consumes the misses counted since the previous one (H5).
    pub(super) fn snapshot(&mut self, trigger: Trigger) -> Snapshot {
        let now = self.now_ms;
        let mut b = SnapshotBuilder::new(now, trigger);
        for (name, a) in &self.adapters {
            b.named_adapter(name, a.max_worker_groups, a.workers_per_group, a.capabilities.as_ref(), a.priority);
        }

        // Prefetched tasks count as pending, as if they were still queued (see `holding`).
        let demand = self.demand();
        for (caps, d) in &demand {
            let capabilities = b.capset_of(caps);
            b.task_group(TaskGroup { capabilities, pending: d.pending, running: d.running });
        }

        let shares = self.queue_shares(&demand);
        for (id, g) in &self.groups {
            let adapter = g.adapter.as_deref().map(|a| b.name(a));
            let capabilities = b.capset_of(&g.capabilities);
            let workers = g.workers.len() as u32;
            let index = b.worker_group(WorkerGroup {
                id: *id,
                adapter,
                capabilities,
                state: match g.phase {
                    GroupPhase::Starting => GroupState::Starting,
                    GroupPhase::Running => GroupState::Running,
                    GroupPhase::Draining => GroupState::Draining,
                },
                workers,
                queued_tasks: g.busy,
                idle_workers: workers.saturating_sub(g.busy),
                idle_ms: if g.busy == 0 { now.saturating_sub(g.idle_since_ms) } else { 0 },
            });
            self.group_metrics(&mut b, index, *id, &shares);
        }

        for (adapter, count) in std::mem::take(&mut self.misses) {
            b.miss(&adapter, count);
        }
        b.finish()
    }
}
