//! The scheduler's shell: sockets, the clock, the policy thread and the decision log around the
//! I/O-free core ([`crate::scheduler::Scheduler`]).
//!
//! One task owns the core and everything it touches (the event loop). Each connection has a reader
//! task, which decodes frames and forwards them as events, and a writer task. A malformed frame
//! ends that connection only, with a logged reason.

mod connection;
pub mod decision_log;
pub mod history;
mod policy_thread;
mod shadow;
pub mod shell_status;
pub mod swap;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::policy::LoadedPolicy;
use crate::policy::ReadRules;
use crate::policy::candidate::{Candidate, Rejection, Stage};
use crate::protocol::peer::Outbox;
use crate::protocol::{Address, Message};
use crate::scheduler::record::{DecidedBy, DecisionRecord, ShadowVerdict};
use crate::scheduler::{Allocate, CoreConfig, Input, Output, PeerId, Scheduler, Status};
use decision_log::DecisionLog;
use history::{History, HistoryLimits};
use shadow::{Shadow, ShadowAnswer, ShadowJob};
pub use shell_status::{PolicyStatus, ShadowStatus, ShellStatus, SwapOutcome, SwapStats};
use swap::{SwapJob, SwapRequest, Ticket};

/// Everything the scheduler needs to run.
pub struct ServerConfig {
    pub address: Address,
    pub core: CoreConfig,
    /// The policy to start with, already through the swap pipeline.
    pub policy: Candidate,
    pub shadow: Option<ShadowSetup>,
    pub decision_log: Option<PathBuf>,
    /// What the dashboard's history may hold.
    pub history: HistoryLimits,
}

/// `[scaling.shadow]`, loaded.
pub struct ShadowSetup {
    pub policy: Arc<LoadedPolicy>,
    pub params: String,
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
    Status(oneshot::Sender<(ShellStatus, Status)>),
    /// The policy thread answered a decision.
    Decided {
        input: Input,
        by: Arc<DecidedBy>,
    },
    /// The policy thread installed a new policy.
    Installed(Box<(PolicyStatus, Ticket)>),
    SwapRejected(swap::Rejected),
    /// The policy kept failing; the fallback decides now.
    Fallback(String),
    Shadow {
        seq: u64,
        answer: ShadowAnswer,
    },
    Reconfigure {
        tick_ms: u64,
        allocate: Allocate,
    },
}

/// A handle on a running scheduler: its bound address and a way to ask it things.
#[derive(Clone)]
pub struct Handle {
    pub address: SocketAddr,
    events: mpsc::UnboundedSender<Event>,
    swaps: std_mpsc::SyncSender<SwapJob>,
    /// `swap_queue`, for the refusal when it is full.
    swap_queue: usize,
    history: Arc<Mutex<History>>,
}

impl Handle {
    pub async fn status(&self) -> Option<(ShellStatus, Status)> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Event::Status(tx)).ok()?;
        rx.await.ok()
    }

    /// Runs a swap request through the pipeline; the outcome arrives once it is installed or rejected.
    pub fn swap(&self, request: SwapRequest) -> oneshot::Receiver<SwapOutcome> {
        let (tx, rx) = oneshot::channel();
        let ticket = Ticket { trigger: request.trigger, started: Instant::now(), reply: Some(tx) };
        let trigger = request.trigger;
        if let Err(std_mpsc::TrySendError::Full(job)) = self.swaps.try_send(SwapJob { request, ticket, seen: None }) {
            let why = format!("{} swaps are already waiting, the limit (swap_queue); try again", self.swap_queue);
            let ticket = Ticket { trigger, started: Instant::now(), reply: job.ticket.reply };
            let _ = self.events.send(Event::SwapRejected(Box::new((
                ticket,
                String::new(),
                Rejection::new(Stage::Read, why),
            ))));
        }
        rx
    }

    /// Reports a swap that failed before reaching the pipeline (an unreadable configuration).
    pub fn reject(&self, request: &SwapRequest, source: String, rejection: Rejection) {
        let ticket = Ticket { trigger: request.trigger, started: Instant::now(), reply: None };
        let _ = self.events.send(Event::SwapRejected(Box::new((ticket, source, rejection))));
    }

    pub fn reconfigure(&self, tick_ms: u64, allocate: Allocate) {
        let _ = self.events.send(Event::Reconfigure { tick_ms, allocate });
    }

    /// The dashboard's recent history (read without waiting on the event loop).
    pub fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Gives the heap that compiling a policy freed back to the system. Cranelift allocates tens of
/// megabytes on the compiling thread; glibc keeps what is freed in that thread's arena, where an idle
/// scheduler would hold it for good.
pub fn return_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Binds the address and starts the scheduler on the current tokio runtime.
pub async fn start(config: ServerConfig) -> anyhow::Result<Handle> {
    let listener = TcpListener::bind(config.address.socket()).await.map_err(|e| {
        let setting = "`address` (the ADDRESS argument, or [scheduler] address)";
        anyhow::anyhow!("cannot listen on {}: {}", config.address, crate::protocol::bind_error(&e, setting))
    })?;
    let address = listener.local_addr()?;
    let limits = config.core.limits.clone();
    let log = config
        .decision_log
        .as_deref()
        .map(|path| DecisionLog::open(path, limits.decision_log_max_mb, limits.decision_log_keep))
        .transpose()?;
    let (events, rx) = mpsc::unbounded_channel();
    let (inputs, inputs_rx) = mpsc::channel(limits.event_queue);
    let last = Arc::new(Mutex::new(None));
    let policy_status = PolicyStatus::of(&config.policy);
    let first_decision = Arc::new(policy_thread::FirstDecision::default());
    let policy_jobs = policy_thread::spawn(config.policy.clone(), last.clone(), first_decision.clone(), events.clone());
    let rules = ReadRules { max_bytes: limits.max_policy_bytes, dirs: limits.policy_dirs.clone() };
    crate::policy::component::set_compile_timeout(Duration::from_millis(limits.compile_timeout_ms));
    let swap_queue = limits.swap_queue;
    let swaps =
        swap::spawn(&config.policy, policy_jobs.clone(), last, first_decision, events.clone(), rules, swap_queue);
    tokio::spawn(connection::accept_loop(listener, inputs, limits));

    let origin = Instant::now();
    let mut core_config = config.core;
    core_config.clock_origin_unix_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let shadow = config.shadow.map(|s| {
        let status = ShadowStatus {
            source: s.source,
            name: s.policy.info.name.clone(),
            digest: s.policy.digest.clone(),
            ..ShadowStatus::default()
        };
        (Shadow::spawn(s.policy, s.params, events.clone()), status)
    });
    let history = Arc::new(Mutex::new(History::new(config.history, core_config.clock_origin_unix_ms)));
    let mut core = Scheduler::new(core_config, 0);
    core.set_policy_label(&policy_status.label());
    let event_loop = EventLoop {
        history: history.clone(),
        next_sample_ms: 0,
        sampled_idle: false,
        core,
        origin,
        connections: HashMap::new(),
        policy_jobs,
        log,
        policy_status,
        swaps: SwapStats::default(),
        decided_by: HashMap::new(),
        shadow,
        shadow_answers: HashMap::new(),
        waiting_for_shadow: HashMap::new(),
    };
    tokio::spawn(event_loop.run(rx, inputs_rx));
    return_freed_heap();
    tracing::debug!(%address, "scheduler listening");
    Ok(Handle { address, events, swaps, swap_queue, history })
}

/// Events handled per wake-up before the clock is looked at again.
const MAX_EVENTS_PER_WAKE: usize = 4096;

struct Connection {
    outbox: Outbox,
    reader: tokio::task::AbortHandle,
}

struct EventLoop {
    core: Scheduler,
    origin: Instant,
    connections: HashMap<PeerId, Connection>,
    policy_jobs: std_mpsc::Sender<policy_thread::PolicyJob>,
    log: Option<DecisionLog>,
    policy_status: PolicyStatus,
    swaps: SwapStats,
    /// Who answered each decision, until its record is written.
    decided_by: HashMap<u64, Arc<DecidedBy>>,
    shadow: Option<(Shadow, ShadowStatus)>,
    /// Decisions handed to the shadow: `None` until it answers.
    shadow_answers: HashMap<u64, Option<ShadowAnswer>>,
    /// Records whose shadow answer is still to come.
    waiting_for_shadow: HashMap<u64, Box<DecisionRecord>>,
    /// The dashboard's history, shared with the admin endpoints.
    history: Arc<Mutex<History>>,
    next_sample_ms: u64,
    /// The latest sample was taken while the core was idle.
    sampled_idle: bool,
}

impl EventLoop {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// `events` carries the shell's own events; `inputs` what peers sent (bounded, so a flooding
    /// peer waits on TCP rather than growing a queue here).
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>, mut inputs: mpsc::Receiver<Event>) {
        loop {
            // No timer at all when nothing is due: an idle scheduler sleeps until something arrives.
            let due = self.core.next_deadline_ms().min(self.next_sample_due_ms());
            let wake = (due != u64::MAX).then(|| self.origin + Duration::from_millis(due));
            let timer = async {
                match wake {
                    Some(wake) => tokio::time::sleep_until(wake.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.on_event(event);
                }
                Some(event) = inputs.recv() => self.on_event(event),
                _ = timer => {}
            }
            // Take everything already queued before deciding anything: a burst that arrives together
            // is seen together. Bounded, so a flood cannot starve the clock.
            for _ in 0..MAX_EVENTS_PER_WAKE {
                match events.try_recv().or_else(|_| inputs.try_recv()) {
                    Ok(event) => self.on_event(event),
                    Err(_) => break,
                }
            }
            self.core.poll(self.now_ms());
            self.carry_out();
            self.maybe_sample();
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the next history sample is due: about every second, except while the core is idle and
    /// a sample already shows it so (nothing changes until an input wakes the loop, which samples).
    fn next_sample_due_ms(&self) -> u64 {
        if self.core.idle() && self.sampled_idle { u64::MAX } else { self.next_sample_ms }
    }

    /// A history sample about every second while anything can change.
    fn maybe_sample(&mut self) {
        let now = self.now_ms();
        if now < self.next_sample_ms {
            return;
        }
        self.next_sample_ms = now + history::SAMPLE_INTERVAL_MS;
        self.sampled_idle = self.core.idle();
        let (status, fleet) = (self.core.status(), self.core.observe_fleet());
        let unix_ms = self.core.config().clock_origin_unix_ms + now;
        self.history().sample(unix_ms, &status, fleet);
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
                    // The writer may be the one that broke; the reader must not outlive it.
                    c.reader.abort();
                }
                self.core.handle(now, Input::Disconnected { peer, reason });
            }
            Event::Status(reply) => {
                let shell = ShellStatus {
                    decision_log: self.log.as_ref().map(|log| log.stats.figures()),
                    policy: self.policy_status.clone(),
                    swaps: self.swaps.clone(),
                    shadow: self.shadow.as_ref().map(|(_, s)| s.clone()),
                };
                let _ = reply.send((shell, self.core.status()));
            }
            Event::Decided { input, by } => {
                if let Input::Decided { seq, .. } = &input {
                    self.decided_by.insert(*seq, by);
                }
                self.core.handle(now, input);
            }
            Event::Installed(installed) => {
                let (status, ticket) = *installed;
                let (outcome, reply) = ticket.conclude(status.source.clone(), Ok((&status.digest, &status.name)));
                tracing::info!(
                    "swap ({}) done in {:.1} ms: {}",
                    outcome.trigger,
                    outcome.duration_ms,
                    status.changes_from(&self.policy_status)
                );
                self.swaps.record(&outcome);
                self.history().swap(&outcome);
                self.core.set_policy_label(&status.label());
                self.policy_status = status;
                return_freed_heap();
                // The new policy decides at once rather than at the next tick.
                self.core.handle(now, Input::DecideNow);
                reply.map(|r| r.send(outcome));
            }
            Event::SwapRejected(rejected) => {
                let (ticket, source, rejection) = *rejected;
                let (outcome, reply) = ticket.conclude(source, Err(rejection));
                self.swaps.record(&outcome);
                self.history().swap(&outcome);
                reply.map(|r| r.send(outcome));
            }
            Event::Fallback(reason) => {
                self.policy_status.fallback_active = true;
                self.policy_status.fallback_reason = Some(reason);
            }
            Event::Shadow { seq, answer } => match self.waiting_for_shadow.remove(&seq) {
                Some(record) => self.write_record(record, Some(answer)),
                None => {
                    self.shadow_answers.insert(seq, Some(answer));
                }
            },
            Event::Reconfigure { tick_ms, allocate } => self.core.reconfigure(tick_ms, allocate),
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
                let snapshot = Arc::new(snapshot);
                if let Some((shadow, status)) = &mut self.shadow {
                    if shadow.offer(ShadowJob { seq, snapshot: snapshot.clone() }) {
                        self.shadow_answers.insert(seq, None);
                    } else {
                        status.skipped += 1;
                    }
                }
                let job = policy_thread::DecideJob { seq, snapshot, state };
                if self.policy_jobs.send(policy_thread::PolicyJob::Decide(job)).is_err() {
                    tracing::error!("the policy thread is gone");
                }
            }
            Output::Record(mut record) => {
                if let Some(by) = self.decided_by.remove(&record.seq) {
                    record.decided_by(&by);
                }
                match self.shadow_answers.remove(&record.seq) {
                    Some(None) => {
                        self.waiting_for_shadow.insert(record.seq, record);
                    }
                    Some(Some(answer)) => self.write_record(record, Some(answer)),
                    None => self.write_record(record, None),
                }
            }
        }
    }

    /// Compares the shadow's answer (if any) with the record, then writes the record.
    fn write_record(&mut self, mut record: Box<DecisionRecord>, answer: Option<ShadowAnswer>) {
        if let (Some(answer), Some((shadow, status))) = (answer, &mut self.shadow) {
            let verdict = compare(&record, answer, &shadow.digest);
            if verdict.error.is_some() {
                status.failed += 1;
            }
            if verdict.agrees {
                status.equal += 1;
            } else {
                status.different += 1;
                status.last_difference = Some(shell_status::ShadowDifference {
                    seq: record.seq,
                    active: record.commands.clone(),
                    shadow: verdict.commands.clone(),
                    shadow_error: verdict.error.clone(),
                });
            }
            record.shadow = Some(verdict);
        }
        self.history().record(&record);
        if let Some(log) = &self.log {
            log.write(record);
        }
    }
}

/// Same commands in any order, or both failing, is agreement.
fn compare(record: &DecisionRecord, answer: ShadowAnswer, digest: &str) -> ShadowVerdict {
    let (commands, error) = match answer {
        Ok(commands) => (commands, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let agrees = match (&record.error, &error) {
        (None, None) => {
            let (mut a, mut b) = (record.commands.clone(), commands.clone());
            a.sort();
            b.sort();
            a == b
        }
        (Some(_), Some(_)) => true,
        _ => false,
    };
    ShadowVerdict { digest: digest.to_owned(), agrees, commands, error }
}
