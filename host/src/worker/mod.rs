//! `ebbtide worker`: connects to the scheduler, runs the tasks it is given one at a time in the order
//! given (the scheduler may send several, `worker_prefetch`: the next waits here while one runs), and
//! exits when the scheduler closes the connection (so a worker never outlives its scheduler or its
//! group). A cancel stops the running task, or drops a waiting one unrun; either is answered
//! `cancelled`.
//!
//! Its heartbeat carries its gauges (H7): the values given with `--gauge`, as updated by the `gauge`
//! function. A `gauge` task sends a heartbeat at once, before its result, so the scheduler knows the
//! new value when it learns the task is done.

mod functions;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use ebbtide_sdk::CapMap;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::peer::Connection;
use crate::protocol::{Address, Message, Role, Task, TaskResult, TaskStatus, WorkerHeartbeat};
use crate::scheduler::config::HEARTBEAT_INTERVAL;

use crate::protocol::peer::Outbox;
pub use functions::{FUNCTIONS, parse_gauge};

pub struct WorkerOptions {
    pub address: Address,
    pub capabilities: CapMap,
    /// The adapter-managed group, if started by an adapter.
    pub group: Option<u64>,
    pub allow_exec: bool,
    pub token: String,
    pub identity: String,
    /// Gauges reported from the first heartbeat on (`--gauge`).
    pub gauges: Vec<(String, f64)>,
}

/// What a heartbeat says; shared by the heartbeat loop and the `gauge` function.
#[derive(Clone)]
struct Reporter {
    outbox: Outbox,
    capabilities: ebbtide_sdk::CapMap,
    group: Option<u64>,
    held: Arc<Mutex<Held>>,
    gauges: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Reporter {
    /// Sends a heartbeat; false once the connection is gone.
    fn heartbeat(&self) -> bool {
        let assigned = self.held.lock().expect("not poisoned").ids.iter().copied().collect();
        let gauges = self.gauges.lock().expect("not poisoned").iter().map(|(k, v)| (k.clone(), *v)).collect();
        let hb = WorkerHeartbeat { capabilities: self.capabilities.clone(), group: self.group, assigned, gauges };
        self.outbox.send(&Message::WorkerHeartbeat(hb))
    }
}

/// Runs until the scheduler closes the connection; returns its reason, if it gave one.
pub async fn run(options: WorkerOptions) -> anyhow::Result<Option<String>> {
    let mut connection = Connection::open(&options.address, Role::Worker, &options.identity, &options.token).await?;
    let outbox = connection.outbox.clone();
    let reporter = Reporter {
        outbox: outbox.clone(),
        capabilities: options.capabilities.clone(),
        group: options.group,
        held: Arc::default(),
        gauges: Arc::new(Mutex::new(options.gauges.iter().cloned().collect())),
    };

    // Heartbeats, also while a long task runs.
    let heartbeat = {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            while reporter.heartbeat() {
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            }
        })
    };

    // One task at a time, in arrival order.
    let (tasks, mut queue) = mpsc::unbounded_channel::<Task>();
    let held = reporter.held.clone();
    let runner = {
        let allow_exec = options.allow_exec;
        let outbox = outbox.clone();
        tokio::spawn(async move {
            while let Some(task) = queue.recv().await {
                let Some(cancelled) = reporter.held.lock().expect("not poisoned").start(task.id) else {
                    continue; // Cancelled while it waited, and answered then.
                };
                let result = if task.function == "gauge" {
                    let result = functions::set_gauge(&task, &mut reporter.gauges.lock().expect("not poisoned"));
                    reporter.heartbeat();
                    result
                } else {
                    tokio::select! {
                        result = functions::run(&task, allow_exec) => result,
                        _ = cancelled => TaskResult { id: task.id, status: TaskStatus::Cancelled, output: Vec::new() },
                    }
                };
                reporter.held.lock().expect("not poisoned").finish(task.id);
                if !outbox.send(&Message::TaskResult(result)) {
                    break;
                }
            }
        })
    };

    let reason = loop {
        match connection.recv().await {
            Ok(Some(Message::TaskSubmit(task))) => {
                held.lock().expect("not poisoned").ids.push_back(task.id);
                let _ = tasks.send(task);
            }
            Ok(Some(Message::TaskCancel(id))) => {
                if held.lock().expect("not poisoned").cancel(id) {
                    outbox.send(&Message::TaskResult(TaskResult {
                        id,
                        status: TaskStatus::Cancelled,
                        output: Vec::new(),
                    }));
                }
            }
            Ok(Some(Message::Goodbye(reason))) => break Some(reason),
            Ok(Some(other)) => tracing::debug!("ignoring a {} message", other.kind()),
            Ok(None) => break None,
            Err(e) => break Some(format!("{e:#}")),
        }
    };
    heartbeat.abort();
    runner.abort();
    Ok(reason)
}

/// The tasks the worker holds, and the cancels that reach them.
#[derive(Default)]
struct Held {
    /// Every task given and not answered, in arrival order: the first is the one running.
    ids: VecDeque<u64>,
    /// The running task and what stops it.
    running: Option<(u64, oneshot::Sender<()>)>,
    /// Waiting tasks cancelled (and answered) before they began, for the runner to skip. Never
    /// more than `ids` held.
    dropped: Vec<u64>,
}

impl Held {
    /// The runner starts task `id`: what resolves when it is cancelled, or `None` to skip it.
    fn start(&mut self, id: u64) -> Option<oneshot::Receiver<()>> {
        if let Some(i) = self.dropped.iter().position(|d| *d == id) {
            self.dropped.swap_remove(i);
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.running = Some((id, tx));
        Some(rx)
    }

    /// Task `id` is answered.
    fn finish(&mut self, id: u64) {
        self.running = None;
        if let Some(i) = self.ids.iter().position(|t| *t == id) {
            self.ids.remove(i);
        }
    }

    /// Stops task `id` if it runs; drops it if it waits, and then returns true: the caller answers
    /// `cancelled` at once. A cancel of a task not held is stale, and ignored.
    fn cancel(&mut self, id: u64) -> bool {
        if let Some((_, stop)) = self.running.take_if(|(running, _)| *running == id) {
            let _ = stop.send(());
            return false;
        }
        let Some(i) = self.ids.iter().position(|t| *t == id) else { return false };
        self.ids.remove(i);
        self.dropped.push(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Held;

    #[test]
    fn a_cancelled_waiting_task_is_answered_at_once_and_skipped_and_the_running_one_is_stopped() {
        let mut held = Held::default();
        held.ids.extend([1, 2, 3]);
        let mut stop = held.start(1).expect("1 runs");
        assert!(held.cancel(2), "2 waits: dropped, answered by the caller");
        assert_eq!(held.ids, [1, 3], "the heartbeat lists what is still held");
        assert!(!held.cancel(1), "1 runs: stopped, answered by the runner");
        assert!(stop.try_recv().is_ok());
        held.finish(1);
        assert!(held.start(2).is_none(), "the runner skips 2");
        assert!(held.start(3).is_some());
        assert!(!held.cancel(9), "a stale cancel is ignored");
        held.finish(3);
        assert!(held.ids.is_empty() && held.dropped.is_empty());
    }
}
