//! `ebbtide worker`: connects to the scheduler, runs one task at a time, and exits when the scheduler
//! closes the connection (so a worker never outlives its scheduler or its group).

mod functions;

use std::sync::{Arc, Mutex};

use ebbtide_sdk::CapMap;
use tokio::sync::{mpsc, oneshot};

use crate::protocol::peer::Connection;
use crate::protocol::{Address, Message, Role, Task, TaskResult, TaskStatus, WorkerHeartbeat};
use crate::scheduler::config::HEARTBEAT_INTERVAL;

pub use functions::FUNCTIONS;

pub struct WorkerOptions {
    pub address: Address,
    pub capabilities: CapMap,
    /// The adapter-managed group, if started by an adapter.
    pub group: Option<u64>,
    pub allow_exec: bool,
    pub token: String,
    pub identity: String,
}

/// Runs until the scheduler closes the connection; returns its reason, if it gave one.
pub async fn run(options: WorkerOptions) -> anyhow::Result<Option<String>> {
    let mut connection = Connection::open(&options.address, Role::Worker, &options.identity, &options.token).await?;
    let outbox = connection.outbox.clone();
    let holding: Arc<Mutex<Option<u64>>> = Arc::default();

    // Heartbeats, also while a long task runs.
    let heartbeat = {
        let (outbox, holding) = (outbox.clone(), holding.clone());
        let (capabilities, group) = (options.capabilities.clone(), options.group);
        tokio::spawn(async move {
            loop {
                let assigned = holding.lock().expect("not poisoned").iter().copied().collect();
                let hb = WorkerHeartbeat { capabilities: capabilities.clone(), group, assigned, gauges: vec![] };
                if !outbox.send(&Message::WorkerHeartbeat(hb)) {
                    break;
                }
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
                *holding.lock().expect("not poisoned") = Some(task.id);
                let cancelled = cancels.arm(task.id);
                let result = tokio::select! {
                    result = functions::run(&task, allow_exec) => result,
                    _ = cancelled => TaskResult { id: task.id, status: TaskStatus::Cancelled, output: Vec::new() },
                };
                cancels.disarm();
                *holding.lock().expect("not poisoned") = None;
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
