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
        let id = self.next_task;
        self.next_task += 1;
        self.by_client.insert((client, task.id), id);
        self.tasks.insert(
            id,
            TaskEntry {
                client,
                client_id: task.id,
                function: task.function,
                payload: task.payload,
                capabilities: task.capabilities,
                worker: None,
            },
        );
        self.counters.tasks_submitted += 1;
        if !self.place(id) {
            self.record_miss(id);
            let caps = self.tasks[&id].capabilities.clone();
            self.queues.entry(caps).or_default().push_back(id);
        }
    }

    pub(super) fn cancel(&mut self, client: PeerId, client_id: u64) {
        let Some(id) = self.by_client.remove(&(client, client_id)) else { return };
        let Some(task) = self.tasks.remove(&id) else { return };
        match task.worker {
            // The worker finishes it; its result is then ignored.
            Some(worker) => self.release_worker(worker),
            None => self.unqueue(id, &task.capabilities),
        }
        self.counters.tasks_cancelled += 1;
        self.reply(client, client_id, TaskStatus::Cancelled, Vec::new());
    }

    pub(super) fn task_result(&mut self, worker: PeerId, result: TaskResult) {
        self.touch_worker(worker);
        let held = self.workers.get(&worker).and_then(|w| w.task) == Some(result.id);
        if held {
            self.release_worker(worker);
        }
        // A result for a task that was requeued meanwhile still completes it (at least once).
        let Some(task) = self.tasks.remove(&result.id) else { return };
        match task.worker {
            Some(other) if other != worker => self.release_worker(other),
            None => self.unqueue(result.id, &task.capabilities),
            _ => {}
        }
        self.by_client.remove(&(task.client, task.client_id));
        match result.status {
            TaskStatus::Done => self.counters.tasks_done += 1,
            _ => self.counters.tasks_failed += 1,
        }
        self.reply(task.client, task.client_id, result.status, result.output);
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

    /// Puts a task that lost its worker back at the head of its queue, then looks for another worker.
    pub(super) fn requeue(&mut self, id: TaskId) {
        let Some(task) = self.tasks.get_mut(&id) else { return };
        task.worker = None;
        self.counters.tasks_requeued += 1;
        if !self.place(id) {
            let caps = self.tasks[&id].capabilities.clone();
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

    /// Gives the task to an idle capable worker, if there is one. Every worker runs one task at a
    /// time, so any idle worker is a least-loaded one; the lowest id keeps the choice stable.
    fn place(&mut self, id: TaskId) -> bool {
        let caps = &self.tasks[&id].capabilities;
        let Some(worker) = self.idle.iter().copied().find(|w| self.capable(&self.workers[w].capabilities, caps)) else {
            return false;
        };
        self.assign(id, worker);
        true
    }

    fn assign(&mut self, id: TaskId, worker: PeerId) {
        self.idle.remove(&worker);
        let task = self.tasks.get_mut(&id).expect("assigned tasks exist");
        task.worker = Some(worker);
        let message = Message::TaskSubmit(Task {
            id,
            function: task.function.clone(),
            payload: task.payload.clone(),
            capabilities: task.capabilities.clone(),
        });
        let w = self.workers.get_mut(&worker).expect("idle workers exist");
        w.task = Some(id);
        let group = w.group;
        if let Some(g) = self.groups.get_mut(&group) {
            g.busy += 1;
        }
        self.send(worker, message);
    }

    /// Gives an idle worker the oldest pending task it can run, if any.
    pub(super) fn feed(&mut self, worker: PeerId) {
        if !self.idle.contains(&worker) {
            return;
        }
        let worker_caps = &self.workers[&worker].capabilities;
        let oldest = self
            .queues
            .iter()
            .filter(|(caps, _)| self.capable(worker_caps, caps))
            .filter_map(|(caps, queue)| queue.front().map(|id| (*id, caps)))
            .min_by_key(|(id, _)| *id);
        if let Some((id, caps)) = oldest {
            let caps = caps.clone();
            let queue = self.queues.get_mut(&caps).expect("found above");
            queue.pop_front();
            if queue.is_empty() {
                self.queues.remove(&caps);
            }
            self.assign(id, worker);
        }
    }

    /// Counts a miss against every adapter that could run the task, and arms the pressure trigger.
    fn record_miss(&mut self, id: TaskId) {
        let caps = self.tasks[&id].capabilities.clone();
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

    pub(super) fn pending_count(&self) -> usize {
        self.queues.values().map(|q| q.len()).sum()
    }
}

/// `{gpu=1, linux}` for messages.
pub(crate) fn describe(caps: &CapMap) -> String {
    let parts: Vec<String> = caps.iter().map(|(k, v)| if *v == -1 { k.clone() } else { format!("{k}={v}") }).collect();
    format!("{{{}}}", parts.join(", "))
}
