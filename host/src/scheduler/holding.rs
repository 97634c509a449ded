//! What each worker holds, and the indexes that find a worker for a task.
//!
//! A worker may hold up to `worker_prefetch` tasks: it runs them in assignment order, so the first is
//! the one running and the rest are *prefetched*, already at the worker when the running one ends.
//! That hides the scheduler-worker round trip between two tasks, and lets both sides batch their
//! reads and writes. The rules:
//!
//! - **Idle workers first.** A task goes to an idle capable worker when there is one (the lowest
//!   id); only when none is idle may it go into a free slot of a busy capable worker, the least
//!   loaded first. A worker that becomes free takes the oldest pending tasks it can run, up to its
//!   slots. (No pending task ever has an idle capable worker, so filling slots never passes one by.)
//! - **Idle workers do not wait behind busy ones.** A worker left idle with no pending task it can
//!   run takes back the last prefetched task of the most loaded capable worker, which is told to
//!   cancel it. If that worker had started it already (the cancel crossed its previous result), the
//!   task runs twice and the first result wins: delivery stays at least once.
//! - **Scaling sees prefetched tasks as pending**, exactly as if they were still queued: task groups
//!   count them `pending`, a worker group's `queued_tasks`, `idle_workers` and `utilization` count
//!   the workers running a task, `queue_depth` counts prefetched tasks with the queue, and a task that
//!   found no idle capable worker is a miss (arming the pressure trigger) even when it went into a
//!   prefetch slot.
//! - **Nothing is lost.** A worker that is lost gives back every task it held, in order, at the head
//!   of their queues; only the one it was running counts an attempt against `max_task_attempts` (the
//!   others never started). A draining group's prefetched tasks go back to pending at once, and its
//!   workers are told to cancel them. A cancelled prefetched task is dropped by its worker unrun,
//!   which answers `cancelled`; the slot is free once that answer arrives.
//! - **A result counts only from a worker that holds the task** (or held it and was told to cancel:
//!   a `done` or `failed` result of such a task still completes it, a `cancelled` one is its answer to
//!   the cancel and is dropped). Anything else is a violation.
//!
//! The bundled workers (`ebbtide worker`, `python -m ebbtide.worker`) queue the tasks they are given
//! and run them in order; a worker that cannot must be served by a scheduler with `worker_prefetch = 1`.

use std::collections::BTreeMap;

use ebbtide_sdk::CapMap;

use super::{GroupPhase, PeerId, Scheduler, TaskId, Worker};
use crate::protocol::Message;

/// Tasks by capability set, as scaling counts them.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Demand {
    /// Queued, or prefetched behind a running task.
    pub pending: u32,
    /// Held first by a worker: running.
    pub running: u32,
}

impl Worker {
    /// Tasks it has been sent and not answered: held and revoked.
    fn outstanding(&self) -> usize {
        self.held.len() + self.revoked.len()
    }
}

impl Scheduler {
    /// Puts the worker in the index its state calls for: `idle` (it holds nothing), `loaded` (it holds
    /// tasks), or neither (its group drains). Called after every change to what it holds.
    pub(super) fn reindex(&mut self, peer: PeerId) {
        let Some(w) = self.workers.get_mut(&peer) else { return };
        if let Some(key) = w.listed.take() {
            self.loaded.remove(&key);
        }
        self.idle.remove(&peer);
        if self.groups.get(&w.group).is_none_or(|g| g.phase == GroupPhase::Draining) {
            return;
        }
        if w.held.is_empty() {
            self.idle.insert(peer);
        } else {
            let key = (w.outstanding(), peer);
            w.listed = Some(key);
            self.loaded.insert(key);
        }
    }

    /// The worker now holds task `id`, behind those it held.
    pub(super) fn hold(&mut self, peer: PeerId, id: TaskId) {
        let Some(w) = self.workers.get_mut(&peer) else { return };
        w.held.push_back(id);
        if w.held.len() == 1
            && let Some(g) = self.groups.get_mut(&w.group)
        {
            g.busy += 1;
        }
        self.reindex(peer);
    }

    /// The worker no longer holds task `id`; false if it did not hold it.
    pub(super) fn unhold(&mut self, peer: PeerId, id: TaskId) -> bool {
        let now = self.now_ms;
        let Some(w) = self.workers.get_mut(&peer) else { return false };
        let Some(i) = w.held.iter().position(|t| *t == id) else { return false };
        w.held.remove(i);
        if w.held.is_empty()
            && let Some(g) = self.groups.get_mut(&w.group)
        {
            g.busy = g.busy.saturating_sub(1);
            if g.busy == 0 {
                g.idle_since_ms = now;
            }
        }
        self.reindex(peer);
        true
    }

    /// Takes task `id` back from the worker, which is told to cancel it. The caller places it again.
    pub(super) fn revoke(&mut self, peer: PeerId, id: TaskId) {
        if self.unhold(peer, id) {
            if let Some(w) = self.workers.get_mut(&peer) {
                w.revoked.push(id);
            }
            if let Some(task) = self.tasks.get_mut(&id) {
                task.worker = None;
            }
            self.send(peer, Message::TaskCancel(id));
            self.reindex(peer);
        }
    }

    /// The worker answered task `id`, which had been taken back from it; false if it had not been.
    pub(super) fn settle_revoked(&mut self, peer: PeerId, id: TaskId) -> bool {
        let Some(w) = self.workers.get_mut(&peer) else { return false };
        let Some(i) = w.revoked.iter().position(|t| *t == id) else { return false };
        w.revoked.swap_remove(i);
        self.reindex(peer);
        true
    }

    /// Can this worker be given task `id` (of `caps`) now? Never one it was told to cancel and has
    /// not answered, so that its answer cannot be mistaken for the new copy's.
    fn fits(&self, peer: PeerId, id: TaskId, caps: &CapMap) -> bool {
        let w = &self.workers[&peer];
        self.capable(&w.capabilities, caps) && !w.revoked.contains(&id)
    }

    /// An idle worker for task `id`, the lowest id first.
    pub(super) fn idle_worker_for(&self, id: TaskId, caps: &CapMap) -> Option<PeerId> {
        self.idle.iter().copied().find(|w| self.fits(*w, id, caps))
    }

    /// A busy worker with a free prefetch slot for task `id`, the least loaded first.
    pub(super) fn free_slot_for(&self, id: TaskId, caps: &CapMap) -> Option<PeerId> {
        let slots = self.config.worker_prefetch;
        self.loaded.iter().take_while(|(load, _)| *load < slots).map(|(_, w)| *w).find(|w| self.fits(*w, id, caps))
    }

    /// Can the worker take another task now: is it idle, or busy with a free slot?
    pub(super) fn can_take(&self, peer: PeerId) -> bool {
        self.idle.contains(&peer)
            || self
                .workers
                .get(&peer)
                .and_then(|w| w.listed)
                .is_some_and(|(load, _)| load < self.config.worker_prefetch)
    }

    /// For an idle worker that found no pending task: takes back the last prefetched task it can run
    /// from the most loaded worker holding one, and gives it to this one.
    pub(super) fn take_back_for(&mut self, thief: PeerId) {
        if self.config.worker_prefetch <= 1 || !self.idle.contains(&thief) {
            return;
        }
        let found = self
            .loaded
            .iter()
            .rev()
            .take_while(|(load, _)| *load >= 2)
            .filter(|(_, victim)| *victim != thief)
            .find_map(|(_, victim)| {
                let w = &self.workers[victim];
                let last = *w.held.back()?;
                let task = self.tasks.get(&last)?;
                (w.held.len() >= 2 && task.worker == Some(*victim) && self.fits(thief, last, &task.capabilities))
                    .then_some((*victim, last))
            });
        if let Some((victim, id)) = found {
            tracing::debug!(task = id, from = victim, to = thief, "prefetched task taken back for an idle worker");
            self.revoke(victim, id);
            self.assign(id, thief);
        }
    }

    /// Tasks by capability set: pending (queued or prefetched) and running.
    pub(super) fn demand(&self) -> BTreeMap<&CapMap, Demand> {
        let mut demand: BTreeMap<&CapMap, Demand> = BTreeMap::new();
        for (caps, queue) in &self.queues {
            demand.entry(caps).or_default().pending += queue.len() as u32;
        }
        for (peer, w) in &self.workers {
            for (i, id) in w.held.iter().enumerate() {
                // A copy left on a draining worker, or a task cancelled meanwhile, is counted where
                // the task is now (or not at all).
                let Some(task) = self.tasks.get(id).filter(|t| t.worker == Some(*peer)) else { continue };
                let d = demand.entry(&*task.capabilities).or_default();
                if i == 0 {
                    d.running += 1;
                } else {
                    d.pending += 1;
                }
            }
        }
        demand
    }
}
