//! A driver for the core in tests, in the spirit of quinn-proto's: peers join and speak at chosen
//! virtual times, and what the core asks for is collected for the test to assert. No sockets, no
//! clock, no policy: a test answers each decision itself with the commands it wants the guard rails
//! and the fleet to see. `tests/properties.rs` answers with the real built-ins instead.
//!
//! ```ignore
//! let mut h = Harness::new(CoreConfig::default());
//! let a = h.adapter("A", 2, 1, None);
//! let (seq, snapshot) = h.decision().expect("membership asks for a decision");
//! h.answer(seq, vec![Harness::start(&snapshot, "A", &[])]);
//! assert_eq!(h.commands_to(a).len(), 1);
//! ```

use ebbtide_sdk::{CapMap, Command, Decision, NamedCapability, Snapshot};

use super::{CoreConfig, DecisionFailure, GroupId, Input, Output, PeerId, Scheduler};
use crate::protocol::{
    AdapterCommand, AdapterHeartbeat, CommandResponse, Hello, Message, PROTOCOL_VERSION, Role, Task, TaskResult,
    TaskStatus, WorkerHeartbeat,
};

pub struct Harness {
    pub core: Scheduler,
    pub now: u64,
    next_peer: PeerId,
    /// What the core asked for and the test has not looked at yet.
    pub outputs: Vec<Output>,
}

impl Harness {
    /// A core at time 0.
    pub fn new(config: CoreConfig) -> Self {
        Harness { core: Scheduler::new(config, 0), now: 0, next_peer: 1, outputs: Vec::new() }
    }

    /// Moves the clock to `ms` (never back) and lets the core fire what is due.
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.now = self.now.max(ms);
        self.core.poll(self.now);
        self.collect();
        self
    }

    fn collect(&mut self) {
        let more = self.core.take_outputs();
        self.outputs.extend(more);
    }

    /// Feeds one input now, then polls (as the shells do after every event).
    pub fn input(&mut self, input: Input) {
        self.core.handle(self.now, input);
        self.core.poll(self.now);
        self.collect();
    }

    pub fn message(&mut self, peer: PeerId, message: Message) {
        self.input(Input::Message { peer, message });
    }

    /// A new connection that says hello with `role`; its welcome is consumed.
    pub fn join(&mut self, role: Role, identity: &str) -> PeerId {
        let peer = self.next_peer;
        self.next_peer += 1;
        self.input(Input::Connected { peer });
        let hello = Hello { role, protocol_version: PROTOCOL_VERSION, identity: identity.into(), token: String::new() };
        self.message(peer, Message::Hello(hello));
        self.outputs.retain(|o| !matches!(o, Output::Send { peer: p, message: Message::Welcome { .. } } if *p == peer));
        peer
    }

    pub fn client(&mut self) -> PeerId {
        self.join(Role::Client, "client")
    }

    /// An adapter that has sent its first heartbeat.
    pub fn adapter(
        &mut self,
        id: &str,
        max_worker_groups: u32,
        workers_per_group: u32,
        caps: Option<CapMap>,
    ) -> PeerId {
        let peer = self.join(Role::Adapter, id);
        let hb = AdapterHeartbeat { max_worker_groups, workers_per_group, capabilities: caps, priority: 0 };
        self.message(peer, Message::AdapterHeartbeat(hb));
        peer
    }

    /// A worker of `group` (`None`: unmanaged) that has sent its first heartbeat.
    pub fn worker(&mut self, group: Option<GroupId>, caps: CapMap, gauges: Vec<(String, f64)>) -> PeerId {
        let peer = self.join(Role::Worker, "worker");
        self.heartbeat(peer, group, caps, gauges);
        peer
    }

    pub fn heartbeat(&mut self, peer: PeerId, group: Option<GroupId>, caps: CapMap, gauges: Vec<(String, f64)>) {
        let hb = WorkerHeartbeat { capabilities: caps, group, assigned: vec![], gauges };
        self.message(peer, Message::WorkerHeartbeat(hb));
    }

    /// The adapter confirms the start of `group` and its `workers` connect; returns the workers.
    pub fn bring_up(&mut self, adapter: PeerId, group: GroupId, workers: u32, caps: CapMap) -> Vec<PeerId> {
        self.respond(adapter, group, true);
        (0..workers).map(|_| self.worker(Some(group), caps.clone(), vec![])).collect()
    }

    /// The adapter answers a command about `group`.
    pub fn respond(&mut self, adapter: PeerId, group: GroupId, ok: bool) {
        let r = CommandResponse { request_id: group, ok, group_id: group, worker_ids: vec![], message: String::new() };
        self.message(adapter, Message::CommandResponse(r));
    }

    /// A client submits a task requiring `caps`.
    pub fn submit(&mut self, client: PeerId, id: u64, caps: CapMap) {
        let task = Task { id, function: "sleep".into(), payload: b"1000".to_vec(), capabilities: caps };
        self.message(client, Message::TaskSubmit(task));
    }

    /// A worker finishes task `id` (the scheduler's id, as it was sent to the worker).
    pub fn finish(&mut self, worker: PeerId, id: u64) {
        self.answer_task(worker, id, TaskStatus::Done);
    }

    pub fn disconnect(&mut self, peer: PeerId) {
        self.input(Input::Disconnected { peer, reason: "test".into() });
    }

    /// Takes everything the core asked for so far.
    pub fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Takes the decision the core asked for, if any (other outputs stay).
    pub fn decision(&mut self) -> Option<(u64, Snapshot)> {
        let i = self.outputs.iter().position(|o| matches!(o, Output::Decide { .. }))?;
        match self.outputs.remove(i) {
            Output::Decide { seq, snapshot, .. } => Some((seq, snapshot)),
            _ => unreachable!("matched above"),
        }
    }

    /// Answers decision `seq` with `commands`.
    pub fn answer(&mut self, seq: u64, commands: Vec<Command>) {
        let decision = Decision { commands, ..Decision::default() };
        self.input(Input::Decided { seq, outcome: Ok(decision), duration_us: 1 });
    }

    /// Answers decision `seq` with a failure of `kind`.
    pub fn fail(&mut self, seq: u64, kind: &'static str) {
        let outcome = Err(DecisionFailure::new(kind, format!("{kind}: failed on purpose")));
        self.input(Input::Decided { seq, outcome, duration_us: 1 });
    }

    /// Takes the decision record the last answer produced.
    pub fn record(&mut self) -> Option<Box<super::DecisionRecord>> {
        let i = self.outputs.iter().position(|o| matches!(o, Output::Record(_)))?;
        match self.outputs.remove(i) {
            Output::Record(r) => Some(r),
            _ => unreachable!("matched above"),
        }
    }

    /// Takes the adapter commands sent to `adapter`.
    pub fn commands_to(&mut self, adapter: PeerId) -> Vec<AdapterCommand> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Send { peer, message: Message::AdapterCommand(c) } if *peer == adapter => {
                out.push(c.clone());
                false
            }
            _ => true,
        });
        out
    }

    /// Takes the tasks sent to `worker`: their scheduler ids.
    pub fn tasks_to(&mut self, worker: PeerId) -> Vec<u64> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Send { peer, message: Message::TaskSubmit(t) } if *peer == worker => {
                out.push(t.id);
                false
            }
            _ => true,
        });
        out
    }

    /// Takes the cancels sent to `worker`: the scheduler's task ids.
    pub fn cancels_to(&mut self, worker: PeerId) -> Vec<u64> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Send { peer, message: Message::TaskCancel(id) } if *peer == worker => {
                out.push(*id);
                false
            }
            _ => true,
        });
        out
    }

    /// Takes the results sent to `client`: its task ids and their status.
    pub fn results_to(&mut self, client: PeerId) -> Vec<(u64, TaskStatus)> {
        let mut out = Vec::new();
        self.outputs.retain(|o| match o {
            Output::Send { peer, message: Message::TaskResult(r) } if *peer == client => {
                out.push((r.id, r.status));
                false
            }
            _ => true,
        });
        out
    }

    /// A worker answers task `id` with `status`.
    pub fn answer_task(&mut self, worker: PeerId, id: u64, status: TaskStatus) {
        let r = TaskResult { id, status, output: vec![] };
        self.message(worker, Message::TaskResult(r));
    }

    /// A start command in the decision's own terms (the adapter named as in `snapshot`).
    pub fn start(snapshot: &Snapshot, adapter: &str, caps: &[(&str, i64)]) -> Command {
        let id = snapshot.names.iter().position(|n| n == adapter).map_or(u32::MAX, |i| i as u32);
        let capabilities = caps.iter().map(|(n, v)| NamedCapability { name: (*n).into(), value: *v }).collect();
        Command::Start { adapter: id, capabilities }
    }
}

/// `{gpu: 1}` from `&[("gpu", 1)]`.
pub fn caps(pairs: &[(&str, i64)]) -> CapMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}
