//! The scheduler's shell: sockets, the clock, the policy thread and the decision log around the
//! I/O-free core ([`crate::scheduler::Scheduler`]).
//!
//! One task owns the core and everything it touches (the event loop). Each connection has a reader
//! task, which decodes frames and forwards them as events, and a writer task. A malformed frame
//! ends that connection only, with a logged reason.

mod connection;
pub mod decision_log;
mod policy_thread;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::policy::LoadedPolicy;
use crate::protocol::peer::Outbox;
use crate::protocol::{Address, Message};
use crate::scheduler::{CoreConfig, Input, Output, PeerId, Scheduler, Status};
use decision_log::DecisionLog;

/// Everything the scheduler needs to run.
pub struct ServerConfig {
    pub address: Address,
    pub core: CoreConfig,
    pub policy: Arc<LoadedPolicy>,
    /// Where the policy came from (`builtin:vanilla` or a path), for `/status`.
    pub policy_source: String,
    pub params: String,
    pub decision_log: Option<PathBuf>,
}

/// The active policy, as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyStatus {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub source: String,
}

pub(crate) enum Event {
    Accepted {
        peer: PeerId,
        outbox: Outbox,
        reader: tokio::task::AbortHandle,
    },
    Input(Input),
    /// A connection broke or sent something unreadable.
    Broken {
        peer: PeerId,
        reason: String,
    },
    Status(oneshot::Sender<(PolicyStatus, Status)>),
    DecideNow,
}

/// A handle on a running scheduler: its bound address and a way to ask it things.
#[derive(Clone)]
pub struct Handle {
    pub address: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
}

impl Handle {
    pub async fn status(&self) -> Option<(PolicyStatus, Status)> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Event::Status(tx)).ok()?;
        rx.await.ok()
    }

    pub fn decide_now(&self) {
        let _ = self.events.send(Event::DecideNow);
    }
}

/// Binds the address and starts the scheduler on the current tokio runtime.
pub async fn start(config: ServerConfig) -> anyhow::Result<Handle> {
    let listener = TcpListener::bind(config.address.socket())
        .await
        .with_context(|| format!("cannot listen on {}", config.address))?;
    let address = listener.local_addr()?;
    let log = config.decision_log.as_deref().map(DecisionLog::open).transpose()?;
    let (events, rx) = mpsc::unbounded_channel();
    let policy_jobs = policy_thread::spawn(config.policy.clone(), config.params.clone(), events.clone());
    tokio::spawn(connection::accept_loop(listener, events.clone()));

    let origin = Instant::now();
    let mut core_config = config.core;
    core_config.clock_origin_unix_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let policy_status = PolicyStatus {
        name: config.policy.info.name.clone(),
        version: config.policy.info.version.clone(),
        digest: config.policy.digest.clone(),
        source: config.policy_source,
    };
    let event_loop = EventLoop {
        core: Scheduler::new(core_config, 0),
        origin,
        connections: HashMap::new(),
        policy_jobs,
        log,
        policy_status,
    };
    tokio::spawn(event_loop.run(rx));
    tracing::info!(%address, "scheduler listening");
    Ok(Handle { address, events })
}

struct Connection {
    outbox: Outbox,
    reader: tokio::task::AbortHandle,
}

struct EventLoop {
    core: Scheduler,
    origin: Instant,
    connections: HashMap<PeerId, Connection>,
    policy_jobs: std::sync::mpsc::Sender<policy_thread::DecideJob>,
    log: Option<DecisionLog>,
    policy_status: PolicyStatus,
}

impl EventLoop {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        loop {
            let wake = self.origin + Duration::from_millis(self.core.next_deadline_ms());
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.on_event(event);
                    // Take everything already queued before deciding anything: a burst that arrives
                    // together is seen together.
                    while let Ok(event) = events.try_recv() {
                        self.on_event(event);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.core.poll(self.now_ms());
            self.carry_out();
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = self.now_ms();
        match event {
            Event::Accepted { peer, outbox, reader } => {
                self.connections.insert(peer, Connection { outbox, reader });
                self.core.handle(now, Input::Connected { peer });
            }
            Event::Input(input) => self.core.handle(now, input),
            Event::Broken { peer, reason } => {
                if let Some(c) = self.connections.remove(&peer) {
                    c.outbox.send(&Message::Goodbye(reason.clone()));
                    c.outbox.close();
                }
                self.core.handle(now, Input::Disconnected { peer, reason });
            }
            Event::Status(reply) => {
                let _ = reply.send((self.policy_status.clone(), self.core.status()));
            }
            Event::DecideNow => self.core.handle(now, Input::DecideNow),
        }
        self.carry_out();
    }

    /// Carries out what the core asked for, until it asks for nothing more (closing a connection
    /// feeds a disconnection back, which may requeue tasks and so send more).
    fn carry_out(&mut self) {
        loop {
            let outputs = self.core.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                self.carry_out_one(output);
            }
        }
    }

    fn carry_out_one(&mut self, output: Output) {
        {
            match output {
                Output::Send { peer, message } => {
                    if let Some(c) = self.connections.get(&peer) {
                        c.outbox.send(&message);
                    }
                }
                Output::Close { peer, reason } => {
                    if let Some(c) = self.connections.remove(&peer) {
                        c.outbox.send(&Message::Goodbye(reason.clone()));
                        c.outbox.close();
                        c.reader.abort();
                    }
                    let now = self.now_ms();
                    self.core.handle(now, Input::Disconnected { peer, reason });
                }
                Output::Decide { seq, snapshot, state } => {
                    let job = policy_thread::DecideJob { seq, snapshot, state };
                    if self.policy_jobs.send(job).is_err() {
                        tracing::error!("the policy thread is gone");
                    }
                }
                Output::Record(mut record) => {
                    record.policy_digest = self.policy_status.digest.clone();
                    if let Some(log) = &self.log {
                        log.write(record);
                    }
                }
            }
        }
    }
}
