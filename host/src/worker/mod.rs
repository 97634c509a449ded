//! `ebbtide worker`: connects to the scheduler, runs one task at a time, and exits when the scheduler
//! closes the connection (so a worker never outlives its scheduler or its group).
//!
//! Its heartbeat carries its gauges (H7): the values given with `--gauge`, as updated by the `gauge`
//! function. A `gauge` task sends a heartbeat at once, before its result, so the scheduler knows the
//! new value when it learns the task is done.

mod functions;

use std::collections::BTreeMap;
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
    holding: Arc<Mutex<Option<u64>>>,
    gauges: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Reporter {
    /// Sends a heartbeat; false once the connection is gone.
    fn heartbeat(&self) -> bool {
        let assigned = self.holding.lock().expect("not poisoned").iter().copied().collect();
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
        holding: Arc::default(),
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

    // One task at a time, in arrival order. A cancel stops the running function at once (for `exec`,
    // its whole process group) and reports it cancelled; only then does the scheduler count the
    // worker free.
    let (tasks, mut queue) = mpsc::unbounded_channel::<Task>();
    let cancels = Arc::new(Cancels::default());
    let runner = {
        let allow_exec = options.allow_exec;
        let cancels = cancels.clone();
        tokio::spawn(async move {
            while let Some(task) = queue.recv().await {
                *reporter.holding.lock().expect("not poisoned") = Some(task.id);
                let result = if task.function == "gauge" {
                    let result = functions::set_gauge(&task, &mut reporter.gauges.lock().expect("not poisoned"));
                    reporter.heartbeat();
                    result
                } else {
                    let cancelled = cancels.arm(task.id);
                    let result = tokio::select! {
                        result = functions::run(&task, allow_exec) => result,
                        _ = cancelled => TaskResult { id: task.id, status: TaskStatus::Cancelled, output: Vec::new() },
                    };
                    cancels.disarm();
                    result
                };
                *reporter.holding.lock().expect("not poisoned") = None;
                if !outbox.send(&Message::TaskResult(result)) {
                    break;
                }
            }
        })
    };

    let reason = loop {
        match connection.recv().await {
            Ok(Some(Message::TaskSubmit(task))) => {
                let _ = tasks.send(task);
            }
            Ok(Some(Message::TaskCancel(id))) => cancels.cancel(id),
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

/// Cancels for the task being run, and for tasks cancelled before they started.
#[derive(Default)]
struct Cancels(Mutex<CancelState>);

#[derive(Default)]
struct CancelState {
    running: Option<(u64, oneshot::Sender<()>)>,
    /// Cancelled before they began (the scheduler sends one task at a time, so this stays tiny).
    early: Vec<u64>,
}

impl Cancels {
    /// Resolves when task `id` is cancelled (at once if it already was).
    fn arm(&self, id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.0.lock().expect("not poisoned");
        if let Some(i) = state.early.iter().position(|e| *e == id) {
            state.early.swap_remove(i);
            let _ = tx.send(());
        } else {
            state.running = Some((id, tx));
        }
        rx
    }

    fn disarm(&self) {
        self.0.lock().expect("not poisoned").running = None;
    }

    fn cancel(&self, id: u64) {
        let mut state = self.0.lock().expect("not poisoned");
        match state.running.take() {
            Some((running, tx)) if running == id => {
                let _ = tx.send(());
            }
            other => {
                state.running = other;
                if state.early.len() < 64 {
                    state.early.push(id);
                }
            }
        }
    }
}
