//! Tasks: submission, one FIFO queue per capability set, allocation to workers, results, and
//! requeueing (delivery is at least once: a task is only forgotten once its result went out).

use ebbtide_sdk::CapMap;

use super::{AdapterEntry, Allocate, PeerId, Scheduler, TaskEntry, TaskId};
use crate::protocol::{Message, Task, TaskResult, TaskStatus};

impl Scheduler {
    pub(super) fn submit(&mut self, client: PeerId, task: Task) {
        if self.by_client.contains_key(&(client, task.id)) {
            return self.reply(client, task.id, TaskStatus::Failed, b"duplicate task id from this client".to_vec());
        }
        if let Err(refusal) = self.admissible(&task) {
            self.counters.tasks_refused += 1;
            return self.reply(client, task.id, TaskStatus::Failed, refusal.into_bytes());
        }
        let id = self.next_task;
        self.next_task += 1;
        self.by_client.insert((client, task.id), id);
        self.held_bytes += task.payload.len();
        self.tasks.insert(
            id,
            TaskEntry {
                client,
                client_id: task.id,
                function: self.interned.function(task.function),
                payload: task.payload.into_boxed_slice(),
                capabilities: self.interned.capabilities(task.capabilities),
                worker: None,
                attempts: 1,
            },
        );
        self.counters.tasks_submitted += 1;
        match self.place(id) {
            Placed::Idle => {}
            // No idle capable worker: a miss, as if the task had been queued (see `holding`).
            Placed::Prefetched => self.record_miss(id),
            Placed::Pending => {
                self.record_miss(id);
                let caps = CapMap::clone(&self.tasks[&id].capabilities);
                self.queues.entry(caps).or_default().push_back(id);
            }
        }
    }

    /// The quotas a submission must fit in; the refusal names the setting that bounds it.
    fn admissible(&self, task: &Task) -> Result<(), String> {
        let l = &self.config.limits;
        if self.tasks.len() >= l.max_queued_tasks {
            return Err(format!(
                "refused: the scheduler holds {} tasks, its limit (max_queued_tasks = {}); retry later",
                self.tasks.len(),
                l.max_queued_tasks
            ));
        }
        if self.held_bytes + task.payload.len() > l.max_queued_bytes {
            return Err(format!(
                "refused: the payloads held would exceed {} bytes (max_queued_bytes); retry later",
                l.max_queued_bytes
            ));
        }
        check_names(&task.function, &task.capabilities, l)?;
        if !self.queues.contains_key(&task.capabilities) && self.queues.len() >= l.max_capability_sets {
            return Err(format!(
                "refused: {} distinct capability sets are pending, the limit (max_capability_sets)",
                l.max_capability_sets
            ));
        }
        Ok(())
    }

    pub(super) fn cancel(&mut self, client: PeerId, client_id: u64) {
        let Some(&id) = self.by_client.get(&(client, client_id)) else { return };
        let Some(task) = self.forget(id) else { return };
        match task.worker {
            // The worker stays busy until it confirms it stopped (its result for the task).
            Some(worker) => self.send(worker, Message::TaskCancel(id)),
            None => self.unqueue(id, &task.capabilities),
        }
        self.counters.tasks_cancelled += 1;
        self.reply(client, client_id, TaskStatus::Cancelled, Vec::new());
    }

    /// A result counts only from a worker that was given the task and has not reported it yet: its
    /// holder, the worker of a draining group whose copy was requeued, or a worker it was taken back
    /// from (the first result wins, and the other holder is told to cancel; a `cancelled` answer to
    /// our own cancel is dropped). Anything else is forged or stale: dropped, counted, and the sender
    /// closed if it keeps at it.
    pub(super) fn task_result(&mut self, worker: PeerId, result: TaskResult) {
        self.touch_worker(worker);
        let held = self.unhold(worker, result.id);
        let revoked = !held && self.settle_revoked(worker, result.id);
        if !held && !revoked {
            return self.violation(
                worker,
                "result-not-held",
                format!("a result for task {} it does not hold", result.id),
            );
        }
        // A `cancelled` answer to our cancel: it stopped as told, and the task is elsewhere.
        if !(revoked && result.status == TaskStatus::Cancelled) {
            self.complete(worker, result);
        }
        self.feed(worker);
    }

    /// The first result of a task: it goes to the client, and any other copy is cancelled.
    fn complete(&mut self, worker: PeerId, result: TaskResult) {
        // Gone already: cancelled, or its client left. The worker confirmed it stopped.
        let Some(task) = self.forget(result.id) else { return };
        match task.worker {
            // Requeued or taken back, and held elsewhere: that copy is not needed. Its worker keeps
            // holding it until it confirms it stopped.
            Some(other) if other != worker => self.send(other, Message::TaskCancel(result.id)),
            None => self.unqueue(result.id, &task.capabilities),
            _ => {}
        }
        match result.status {
            TaskStatus::Done => self.counters.tasks_done += 1,
            _ => self.counters.tasks_failed += 1,
        }
        self.reply(task.client, task.client_id, result.status, result.output);
    }

    /// Removes a task from the table (not from its queue) and from the held-bytes count.
    fn forget(&mut self, id: TaskId) -> Option<TaskEntry> {
        let task = self.tasks.remove(&id)?;
        self.by_client.remove(&(task.client, task.client_id));
        self.held_bytes -= task.payload.len();
        Some(task)
    }

    /// A client left: its queued tasks are dropped and its running ones cancelled.
    pub(super) fn drop_client_tasks(&mut self, client: PeerId, reason: &str) {
        let ids: std::collections::HashSet<TaskId> =
            self.by_client.iter().filter(|((c, _), _)| *c == client).map(|(_, id)| *id).collect();
        if ids.is_empty() {
            return tracing::debug!(peer = client, "client gone: {reason}");
        }
        for id in &ids {
            if let Some(task) = self.forget(*id)
                && let Some(worker) = task.worker
            {
                self.send(worker, Message::TaskCancel(*id));
            }
        }
        // One pass over the queues, not one per task: a client may leave with a million queued.
        self.queues.retain(|_, queue| {
            queue.retain(|id| !ids.contains(id));
            !queue.is_empty()
        });
        self.counters.tasks_cancelled += ids.len() as u64;
        tracing::info!(peer = client, "client gone ({reason}): {} of its tasks dropped or cancelled", ids.len());
    }

    /// A peer broke a rule that is not worth a connection at once: the message is dropped and
    /// counted by kind; at `max_violations` the peer is closed.
    pub(super) fn violation(&mut self, peer: PeerId, kind: &'static str, what: String) {
        *self.counters.protocol_violations.entry(kind).or_default() += 1;
        let limit = self.config.limits.max_violations;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.violations += 1;
        let count = p.violations;
        tracing::debug!(peer, kind, "protocol violation: {what}");
        if count == limit {
            self.counters.protocol_errors += 1;
            self.close(peer, format!("{count} protocol violations (max_violations = {limit}); the last: {what}"));
        }
    }

    /// The worker a task is assigned to, if it is assigned.
    pub(super) fn holder(&self, id: TaskId) -> Option<PeerId> {
        self.tasks.get(&id).and_then(|t| t.worker)
    }

    fn reply(&mut self, client: PeerId, client_id: u64, status: TaskStatus, output: Vec<u8>) {
        self.send(client, Message::TaskResult(TaskResult { id: client_id, status, output }));
    }

    fn unqueue(&mut self, id: TaskId, caps: &CapMap) {
        if let Some(queue) = self.queues.get_mut(caps) {
            queue.retain(|t| *t != id);
            if queue.is_empty() {
                self.queues.remove(caps);
            }
        }
    }

    /// Puts tasks that lost their worker back at the head of their queues, in the order given (the
    /// worker's assignment order), then looks for other workers. `lost` says why the worker was lost
    /// (`None`: its group is only draining) and which task it was running: that one counts an attempt,
    /// and after `max_task_attempts` lost workers it fails instead (a task that kills its worker would
    /// otherwise kill the whole fleet, one worker at a time). Prefetched tasks never started: no attempt.
    pub(super) fn requeue(&mut self, ids: &[TaskId], lost: Option<Lost>) {
        let max = self.config.limits.max_task_attempts;
        let mut unplaced = Vec::new();
        for &id in ids {
            let Some(task) = self.tasks.get_mut(&id) else { continue };
            task.worker = None;
            if let Some(lost) = lost.filter(|l| l.running == Some(id)) {
                if task.attempts >= max {
                    let task = self.forget(id).expect("present above");
                    self.counters.tasks_failed += 1;
                    let why = format!(
                        "failed after {} attempts (max_task_attempts = {max}): each worker it ran on was lost; the last: {}",
                        task.attempts, lost.reason
                    );
                    tracing::warn!(task = id, "{why}");
                    self.reply(task.client, task.client_id, TaskStatus::Failed, why.into_bytes());
                    continue;
                }
                task.attempts += 1;
            }
            self.counters.tasks_requeued += 1;
            if self.place(id) == Placed::Pending {
                unplaced.push(id);
            }
        }
        for id in unplaced.into_iter().rev() {
            let caps = CapMap::clone(&self.tasks[&id].capabilities);
            self.queues.entry(caps).or_default().push_front(id);
        }
    }

    /// Can this worker run tasks that require `caps`?
    pub(super) fn capable(&self, worker_caps: &CapMap, caps: &CapMap) -> bool {
        match self.config.allocate {
            Allocate::EvenLoad => true,
            Allocate::Capability => caps.keys().all(|k| worker_caps.contains_key(k)),
        }
    }

    /// Can this adapter start workers for tasks that require `caps`? (It offers any set, or a capable one.)
    fn can_start(&self, adapter: &AdapterEntry, caps: &CapMap) -> bool {
        adapter.capabilities.as_ref().is_none_or(|offered| self.capable(offered, caps))
    }

    /// Gives the task to an idle capable worker if there is one, else to a free prefetch slot of a
    /// busy capable worker (see `holding` for the rules).
    fn place(&mut self, id: TaskId) -> Placed {
        let caps = self.tasks[&id].capabilities.clone();
        if let Some(worker) = self.idle_worker_for(id, &caps) {
            self.assign(id, worker);
            return Placed::Idle;
        }
        if let Some(worker) = self.free_slot_for(id, &caps) {
            self.assign(id, worker);
            return Placed::Prefetched;
        }
        Placed::Pending
    }

    pub(super) fn assign(&mut self, id: TaskId, worker: PeerId) {
        let task = self.tasks.get_mut(&id).expect("assigned tasks exist");
        task.worker = Some(worker);
        let message = Message::TaskSubmit(Task {
            id,
            function: task.function.to_string(),
            payload: task.payload.to_vec(),
            capabilities: CapMap::clone(&task.capabilities),
        });
        self.hold(worker, id);
        self.send(worker, message);
    }

    /// Gives a worker that can take tasks the oldest pending ones it can run, up to its free slots; an
    /// idle worker left with none takes a prefetched task back from a busy one.
    pub(super) fn feed(&mut self, worker: PeerId) {
        while self.can_take(worker) {
            let Some(w) = self.workers.get(&worker) else { return };
            let oldest = self
                .queues
                .iter()
                .filter(|(caps, _)| self.capable(&w.capabilities, caps))
                .filter_map(|(caps, queue)| queue.front().map(|id| (*id, caps)))
                .filter(|(id, _)| !w.revoked.contains(id))
                .min_by_key(|(id, _)| *id);
            let Some((id, caps)) = oldest else { break };
            let caps = caps.clone();
            let queue = self.queues.get_mut(&caps).expect("found above");
            queue.pop_front();
            if queue.is_empty() {
                self.queues.remove(&caps);
            }
            self.assign(id, worker);
        }
        self.take_back_for(worker);
    }

    /// Counts a miss against every adapter that could run the task, and arms the pressure trigger.
    fn record_miss(&mut self, id: TaskId) {
        let caps = CapMap::clone(&self.tasks[&id].capabilities);
        let capable: Vec<String> =
            self.adapters.iter().filter(|(_, a)| self.can_start(a, &caps)).map(|(name, _)| name.clone()).collect();
        for name in &capable {
            *self.misses.entry(name.clone()).or_default() += 1;
        }
        self.counters.misses += 1;
        self.pressure_since_ms.get_or_insert(self.now_ms);
        if capable.is_empty() && !self.workers.values().any(|w| self.capable(&w.capabilities, &caps)) {
            self.note_unrunnable(caps);
        }
    }

    /// Says once, and in `/status`, why tasks of a capability set cannot run anywhere.
    fn note_unrunnable(&mut self, caps: CapMap) {
        if self.unrunnable.contains_key(&caps) {
            return;
        }
        let offered: Vec<String> = self
            .adapters
            .iter()
            .map(|(name, a)| match &a.capabilities {
                Some(c) => format!("{name} offers {}", describe(c)),
                None => format!("{name} offers any set"),
            })
            .collect();
        let why = format!(
            "tasks requiring {} stay pending: no connected worker has these capabilities and no adapter can \
             start one ({})",
            describe(&caps),
            if offered.is_empty() { "no adapters are connected".to_owned() } else { offered.join("; ") }
        );
        tracing::warn!("{why}");
        self.unrunnable.insert(caps, why);
    }

    /// Forgets diagnostics that no longer hold (a capable adapter or worker has arrived).
    pub(super) fn recheck_unrunnable(&mut self) {
        let sets: Vec<CapMap> = self.unrunnable.keys().cloned().collect();
        for caps in sets {
            let runnable = !self.queues.contains_key(&caps)
                || self.adapters.values().any(|a| self.can_start(a, &caps))
                || self.workers.values().any(|w| self.capable(&w.capabilities, &caps));
            if runnable {
                self.unrunnable.remove(&caps);
            }
        }
    }
}

/// Where [`Scheduler::place`] put a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placed {
    /// With an idle worker, which runs it at once.
    Idle,
    /// In a free prefetch slot of a busy worker.
    Prefetched,
    /// Nowhere: the caller queues it.
    Pending,
}

/// Why a worker's tasks are requeued when it is lost.
#[derive(Clone, Copy)]
pub(super) struct Lost<'a> {
    pub reason: &'a str,
    /// The task it was running (it held it first), which alone counts an attempt.
    pub running: Option<TaskId>,
}

/// A function name and capability set within `max_name_bytes` and `max_capabilities`.
pub(super) fn check_names(function: &str, caps: &CapMap, limits: &super::Limits) -> Result<(), String> {
    let max = limits.max_name_bytes;
    if function.len() > max {
        return Err(format!("refused: the function name is {} bytes; at most {max} (max_name_bytes)", function.len()));
    }
    if caps.len() > limits.max_capabilities {
        return Err(format!(
            "refused: {} capabilities; at most {} (max_capabilities)",
            caps.len(),
            limits.max_capabilities
        ));
    }
    if let Some(name) = caps.keys().find(|k| k.len() > max) {
        return Err(format!(
            "refused: a capability name of {} bytes ({}...); at most {max} (max_name_bytes)",
            name.len(),
            name.chars().take(16).collect::<String>()
        ));
    }
    Ok(())
}

/// `{gpu=1, linux}` for messages.
pub(crate) fn describe(caps: &CapMap) -> String {
    let parts: Vec<String> = caps.iter().map(|(k, v)| if *v == -1 { k.clone() } else { format!("{k}={v}") }).collect();
    format!("{{{}}}", parts.join(", "))
}

/// One shared copy of each function name and capability set that tasks use, so a queued task holds
/// pointers rather than its own strings. Bounded: past [`Interned::MAX`] entries a name gets its
/// own copy (a client inventing names cannot grow this table).
#[derive(Default)]
pub(super) struct Interned {
    functions: std::collections::HashMap<String, std::sync::Arc<str>>,
    capabilities: std::collections::HashMap<CapMap, std::sync::Arc<CapMap>>,
}

impl Interned {
    const MAX: usize = 1024;

    fn function(&mut self, name: String) -> std::sync::Arc<str> {
        if let Some(shared) = self.functions.get(&name) {
            return shared.clone();
        }
        let shared: std::sync::Arc<str> = name.as_str().into();
        if self.functions.len() < Self::MAX {
            self.functions.insert(name, shared.clone());
        }
        shared
    }

    fn capabilities(&mut self, caps: CapMap) -> std::sync::Arc<CapMap> {
        if let Some(shared) = self.capabilities.get(&caps) {
            return shared.clone();
        }
        let shared = std::sync::Arc::new(caps.clone());
        if self.capabilities.len() < Self::MAX {
            self.capabilities.insert(caps, shared.clone());
        }
        shared
    }
}
