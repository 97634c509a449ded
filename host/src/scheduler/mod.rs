//! The scheduler core: tasks, workers, groups, adapters and the scaling loop, free of sockets and wall
//! clocks. The network shell ([`crate::server`]) and the simulator drive the very same code by feeding
//! it [`Input`]s with a clock value and carrying out the [`Output`]s it returns.
//!
//! - [`peers`]: hellos, authentication and who is connected.
//! - [`tasks`]: submission, the queue per capability set, allocation, results, requeueing.
//! - [`holding`]: what each worker holds (the task it runs, the tasks prefetched behind it, the tasks
//!   taken back from it) and the indexes of free workers and free prefetch slots.
//! - [`fleet`]: workers, worker groups and adapters, and their lifecycles (H1, H2, H6).
//! - [`snapshot`]: the contract's snapshot of all this (H5), with [`metrics`] derived by the host and
//!   reported by workers (H7).
//! - [`scaling`]: triggers, the decision in flight, guard rails (H4) and dispatch (H3).

pub mod config;
mod fleet;
pub mod harness;
mod holding;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod outcome;
mod peers;
pub(crate) use peers::constant_time_eq;
pub mod record;
mod scaling;
pub use scaling::readable;
mod snapshot;
pub mod status;
mod stuck;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use ebbtide_sdk::{CapMap, Decision, Snapshot, Trigger};

pub use config::{Allocate, CoreConfig, Tokens};
pub use limits::Limits;
pub use outcome::{DecisionFailure, DropReason};
pub use record::DecisionRecord;
pub use status::{Counters, Status};

use crate::protocol::{Message, Role};

/// A connection, numbered by the shell.
pub type PeerId = u64;
pub type TaskId = u64;
pub type GroupId = u64;

/// What happened, as the shell tells the core. Every input comes with the current time in
/// milliseconds of a monotonic clock chosen by the caller.
#[derive(Debug)]
pub enum Input {
    Connected {
        peer: PeerId,
    },
    Message {
        peer: PeerId,
        message: Message,
    },
    /// The connection is gone (closed, broken, or closed by us).
    Disconnected {
        peer: PeerId,
        reason: String,
    },
    /// The policy answered decision `seq`.
    Decided {
        seq: u64,
        outcome: Result<Decision, DecisionFailure>,
        duration_us: u64,
    },
    /// An operator asked for a decision now.
    DecideNow,
}

/// What the core asks the shell to do.
#[derive(Debug)]
pub enum Output {
    Send {
        peer: PeerId,
        message: Message,
    },
    /// Close the connection after sending a goodbye with the reason.
    Close {
        peer: PeerId,
        reason: String,
    },
    /// Run the policy on this snapshot and state, then report back with [`Input::Decided`].
    Decide {
        seq: u64,
        snapshot: Snapshot,
        state: Vec<u8>,
    },
    /// A finished decision, for the decision log.
    Record(Box<DecisionRecord>),
}

struct Peer {
    role: Option<Role>,
    identity: String,
    /// Said goodbye: its disconnection is expected, not a failure.
    leaving: bool,
    /// Messages it sent that broke the protocol's rules (each dropped); at `max_violations` it is closed.
    violations: u32,
}

/// Kept small: a million queued tasks are a million of these (see `cargo bench --bench memory`).
struct TaskEntry {
    client: PeerId,
    client_id: u64,
    /// Shared with every task of the same function (see [`tasks::Interned`]).
    function: Arc<str>,
    payload: Box<[u8]>,
    /// Shared with every task of the same capability set.
    capabilities: Arc<CapMap>,
    /// The worker holding it (running it or prefetched), if any.
    worker: Option<PeerId>,
    /// Attempts so far: 1 + the workers lost while running it (holding it first: a prefetched task
    /// that never started counts none); past `max_task_attempts` it fails.
    attempts: u32,
}

struct Worker {
    identity: String,
    group: GroupId,
    capabilities: CapMap,
    /// The tasks assigned to it, in assignment order, at most `worker_prefetch`. A worker runs its
    /// tasks in that order, so the first is the one running and the rest are prefetched. In a
    /// draining group the first may be a copy whose task was requeued (see `scaling::shutdown`).
    held: VecDeque<TaskId>,
    /// Tasks taken back from it (for an idle worker, or because its group drains) that it was told to
    /// cancel and has not answered yet; their result, whatever it says, is dropped.
    revoked: Vec<TaskId>,
    /// The key under which it is in `Scheduler::loaded`, if it is.
    listed: Option<(usize, PeerId)>,
    last_seen_ms: u64,
    /// The gauges of its latest heartbeat, bounded ([`metrics`]).
    gauges: BTreeMap<String, f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupPhase {
    Starting,
    Running,
    Draining,
}

struct Group {
    /// `None`: unmanaged workers (H6).
    adapter: Option<String>,
    capabilities: CapMap,
    phase: GroupPhase,
    phase_since_ms: u64,
    /// The adapter confirmed the start. The group stays `starting` until its workers have connected
    /// too, so that a policy counts it at its full size meanwhile (anti-windup).
    confirmed: bool,
    workers: BTreeSet<PeerId>,
    /// Workers holding at least one task (running one), for `utilization` and `idle_workers`.
    busy: u32,
    /// When the group last had no task assigned (for `idle-ms`).
    idle_since_ms: u64,
}

struct AdapterEntry {
    peer: PeerId,
    max_worker_groups: u32,
    workers_per_group: u32,
    capabilities: Option<CapMap>,
    priority: i32,
    last_seen_ms: u64,
}

/// A decision handed to the policy and not yet answered.
struct InFlight {
    seq: u64,
    snapshot: Snapshot,
    state_in: Vec<u8>,
}

pub struct Scheduler {
    config: CoreConfig,
    now_ms: u64,
    outputs: Vec<Output>,
    peers: HashMap<PeerId, Peer>,

    tasks: HashMap<TaskId, TaskEntry>,
    /// Pending tasks, oldest first, one queue per capability set.
    queues: BTreeMap<CapMap, VecDeque<TaskId>>,
    /// The submitting client's id of each task, to route results back.
    by_client: HashMap<(PeerId, u64), TaskId>,
    next_task: TaskId,
    /// Payload bytes of every task held (queued or running), against `max_queued_bytes`.
    held_bytes: usize,
    interned: tasks::Interned,

    workers: HashMap<PeerId, Worker>,
    /// Workers with no task, in a group that may take tasks.
    idle: BTreeSet<PeerId>,
    /// Workers holding tasks, in a group that may take tasks, by outstanding tasks (held and revoked)
    /// then id: the least loaded first for a free prefetch slot, the most loaded first to take a
    /// prefetched task back for an idle worker.
    loaded: BTreeSet<(usize, PeerId)>,
    groups: BTreeMap<GroupId, Group>,
    unmanaged: BTreeMap<CapMap, GroupId>,
    next_group: GroupId,
    adapters: BTreeMap<String, AdapterEntry>,
    /// Tasks that found no capable free worker since the last decision, by adapter that could serve them.
    misses: BTreeMap<String, u32>,
    /// Capability sets no adapter or worker can serve, with the reason (logged once).
    unrunnable: BTreeMap<CapMap, String>,
    /// Capability sets that an adapter could serve and the policy leaves waiting.
    stuck: stuck::StuckSets,

    // The scaling loop.
    policy_state: Vec<u8>,
    next_seq: u64,
    in_flight: Option<InFlight>,
    next_tick_ms: u64,
    pressure_since_ms: Option<u64>,
    membership_owed: bool,
    manual_owed: bool,
    last_housekeeping_ms: u64,

    counters: Counters,
    last_decision: Option<status::LastDecision>,
}

impl Scheduler {
    pub fn new(config: CoreConfig, now_ms: u64) -> Self {
        Scheduler {
            next_tick_ms: now_ms + config.tick_ms,
            config,
            now_ms,
            outputs: Vec::new(),
            peers: HashMap::new(),
            tasks: HashMap::new(),
            queues: BTreeMap::new(),
            by_client: HashMap::new(),
            next_task: 1,
            held_bytes: 0,
            interned: tasks::Interned::default(),
            workers: HashMap::new(),
            idle: BTreeSet::new(),
            loaded: BTreeSet::new(),
            groups: BTreeMap::new(),
            unmanaged: BTreeMap::new(),
            next_group: 1,
            adapters: BTreeMap::new(),
            misses: BTreeMap::new(),
            unrunnable: BTreeMap::new(),
            stuck: stuck::StuckSets::default(),
            policy_state: Vec::new(),
            next_seq: 1,
            in_flight: None,
            pressure_since_ms: None,
            membership_owed: true,
            manual_owed: false,
            last_housekeeping_ms: now_ms,
            counters: Counters::default(),
            last_decision: None,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Applies a re-read configuration (SIGHUP): the tick and the allocation may change while running.
    pub fn reconfigure(&mut self, tick_ms: u64, allocate: Allocate) {
        if tick_ms != self.config.tick_ms {
            self.next_tick_ms = self.next_tick_ms.min(self.now_ms + tick_ms);
            self.config.tick_ms = tick_ms;
        }
        self.config.allocate = allocate;
    }

    /// Handles one input at time `now_ms`; collect what to do with [`Scheduler::take_outputs`].
    pub fn handle(&mut self, now_ms: u64, input: Input) {
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::Connected { peer } => {
                self.peers.insert(peer, Peer { role: None, identity: String::new(), leaving: false, violations: 0 });
            }
            Input::Message { peer, message } => self.on_message(peer, message),
            Input::Disconnected { peer, reason } => self.on_disconnected(peer, &reason),
            Input::Decided { seq, outcome, duration_us } => self.on_decided(seq, outcome, duration_us),
            Input::DecideNow => self.manual_owed = true,
        }
    }

    /// Advances the clock: fires due triggers, times out starts and silent peers.
    pub fn poll(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if !self.idle() && self.now_ms >= self.last_housekeeping_ms + HOUSEKEEPING_MS {
            self.last_housekeeping_ms = self.now_ms;
            self.expire_starts();
            self.expire_silent_peers();
        }
        self.fire_triggers();
    }

    /// When [`Scheduler::poll`] next has something to do; `u64::MAX` when nothing is due until an
    /// input arrives (see [`Scheduler::idle`]).
    pub fn next_deadline_ms(&self) -> u64 {
        let mut due =
            if self.idle() { u64::MAX } else { (self.last_housekeeping_ms + HOUSEKEEPING_MS).min(self.next_tick_ms) };
        if self.in_flight.is_none() {
            if let Some(since) = self.pressure_since_ms {
                due = due.min(since + self.config.pressure_delay_ms);
            }
            if self.membership_owed || self.manual_owed {
                due = self.now_ms;
            }
        }
        due
    }

    /// Nothing can change until an input arrives: no adapter, no group (so no worker) and no task.
    /// The tick and housekeeping then pause: a decision could neither start a group (no adapter to
    /// ask) nor stop one (there is none), no heartbeat or start can time out, and a decision in
    /// flight or owed still runs. The first input that changes this is served at once (a joining
    /// adapter or worker is a membership change; a task's tick is already due), then every `tick_ms`.
    pub fn idle(&self) -> bool {
        self.adapters.is_empty() && self.groups.is_empty() && self.workers.is_empty() && self.tasks.is_empty()
    }

    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    fn send(&mut self, peer: PeerId, message: Message) {
        self.outputs.push(Output::Send { peer, message });
    }

    fn close(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(peer, identity = %self.identity(peer), "closing connection: {reason}");
        self.outputs.push(Output::Close { peer, reason });
    }

    fn identity(&self, peer: PeerId) -> String {
        self.peers.get(&peer).map(|p| p.identity.clone()).unwrap_or_default()
    }

    fn on_message(&mut self, peer: PeerId, message: Message) {
        let Some(role) = self.peers.get(&peer).map(|p| p.role) else { return };
        let Some(role) = role else {
            return self.on_hello(peer, message);
        };
        match (role, message) {
            (Role::Client, Message::TaskSubmit(task)) => self.submit(peer, task),
            (Role::Client, Message::TaskCancel(id)) => self.cancel(peer, id),
            (Role::Worker, Message::WorkerHeartbeat(hb)) => self.worker_heartbeat(peer, hb),
            (Role::Worker, Message::TaskResult(result)) => self.task_result(peer, result),
            (Role::Adapter, Message::AdapterHeartbeat(hb)) => self.adapter_heartbeat(peer, hb),
            (Role::Adapter, Message::CommandResponse(response)) => self.command_response(peer, response),
            (Role::Adapter, Message::GroupLost { group_id, reason }) => self.group_lost(peer, group_id, &reason),
            (_, Message::Goodbye(reason)) => {
                tracing::debug!(peer, "peer says goodbye: {reason}");
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.leaving = true;
                }
            }
            (role, message) => {
                self.counters.protocol_errors += 1;
                self.close(peer, format!("a {} may not send a {} message", role.as_str(), message.kind()));
            }
        }
    }

    fn on_disconnected(&mut self, peer: PeerId, reason: &str) {
        let Some(p) = self.peers.remove(&peer) else { return };
        match p.role {
            Some(Role::Worker) => self.remove_worker(peer, reason),
            Some(Role::Adapter) => self.remove_adapter(peer, reason, p.leaving),
            // Nobody is left to receive a client's results: its queued tasks are dropped, running ones cancelled.
            Some(Role::Client) => self.drop_client_tasks(peer, reason),
            None => {}
        }
    }
}

/// How often start timeouts and heartbeats are checked.
const HOUSEKEEPING_MS: u64 = 250;

/// The trigger of the next decision, by priority, if one is due.
fn due_trigger(s: &Scheduler) -> Option<Trigger> {
    if s.in_flight.is_some() {
        return None;
    }
    if s.manual_owed {
        return Some(Trigger::Manual);
    }
    if s.pressure_since_ms.is_some_and(|since| s.now_ms >= since + s.config.pressure_delay_ms) {
        return Some(Trigger::Pressure);
    }
    if s.membership_owed {
        return Some(Trigger::Membership);
    }
    (!s.idle() && s.now_ms >= s.next_tick_ms).then_some(Trigger::Tick)
}
