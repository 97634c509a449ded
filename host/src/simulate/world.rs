//! One policy on one workload and fleet, on a virtual clock: the real scheduler core (snapshot,
//! allocation, guard rails, triggers) and the real policy runtime, with simulated adapters, workers
//! and a client in place of sockets. Nothing here decides anything the scheduler decides.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::Write;

use ebbtide_sdk::CapMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::fleet::AdapterModel;
use super::record::Recorder;
use super::workload::{GaugeModel, Workload};
use crate::policy::Decider;
use crate::policy::candidate::Candidate;
use crate::protocol::{
    AdapterCommand, AdapterHeartbeat, CommandResponse, Hello, Message, PROTOCOL_VERSION, Role, Task, TaskResult,
    WorkerHeartbeat,
};
use crate::scheduler::record::DecidedBy;
use crate::scheduler::{CoreConfig, DecisionFailure, GroupId, Input, Output, PeerId, Scheduler};

const CLIENT: PeerId = 1;

/// What happens next, in time order (ties in the order they were scheduled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrive(usize),
    GroupUp(GroupId),
    TaskDone { worker: PeerId, task: usize },
}

struct SimGroup {
    adapter: usize,
    capabilities: CapMap,
    up: bool,
}

/// A worker and the task it runs, if any: its workload index and the scheduler's task id.
struct SimWorker {
    adapter: usize,
    group: GroupId,
    capabilities: CapMap,
    task: Option<(usize, u64)>,
}

pub struct World<'a> {
    core: Scheduler,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    scheduled: u64,
    workload: &'a Workload,
    fleet: &'a [AdapterModel],
    adapter_peers: Vec<PeerId>,
    groups: BTreeMap<GroupId, SimGroup>,
    workers: BTreeMap<PeerId, SimWorker>,
    next_peer: PeerId,
    decider: Decider,
    params: String,
    by: DecidedBy,
    rng: ChaCha8Rng,
    pub recorder: Recorder,
    log: Option<std::io::BufWriter<std::fs::File>>,
}

impl<'a> World<'a> {
    pub fn new(
        workload: &'a Workload,
        fleet: &'a [AdapterModel],
        policy: &Candidate,
        core: CoreConfig,
        seed: u64,
        log: Option<std::fs::File>,
    ) -> Self {
        let mut world = World {
            core: Scheduler::new(core, 0),
            now: 0,
            queue: BinaryHeap::new(),
            scheduled: 0,
            workload,
            fleet,
            adapter_peers: Vec::new(),
            groups: BTreeMap::new(),
            workers: BTreeMap::new(),
            next_peer: CLIENT + 1,
            decider: Decider::preferred(policy.policy.clone()),
            params: policy.params.clone(),
            by: DecidedBy::new(&policy.policy.digest, policy.origin.label(), &policy.params),
            rng: ChaCha8Rng::seed_from_u64(seed),
            recorder: Recorder::new(workload.arrivals.len(), fleet, workload.gauges != GaugeModel::None),
            log: log.map(std::io::BufWriter::new),
        };
        world.join(CLIENT, Role::Client, "simulated-client");
        for (i, a) in fleet.iter().enumerate() {
            let peer = world.new_peer();
            world.adapter_peers.push(peer);
            world.join(peer, Role::Adapter, &a.id);
            let heartbeat = AdapterHeartbeat {
                max_worker_groups: a.max_worker_groups,
                workers_per_group: a.workers_per_group,
                capabilities: a.capabilities.clone(),
                priority: a.priority,
            };
            world.core.handle(0, Input::Message { peer, message: Message::AdapterHeartbeat(heartbeat) });
            debug_assert_eq!(world.adapter_peers[i], peer);
        }
        for (i, a) in workload.arrivals.iter().enumerate() {
            world.schedule(a.at_ms, Event::Arrive(i));
        }
        world
    }

    fn new_peer(&mut self) -> PeerId {
        self.next_peer += 1;
        self.next_peer - 1
    }

    fn join(&mut self, peer: PeerId, role: Role, identity: &str) {
        let hello = Hello { role, protocol_version: PROTOCOL_VERSION, identity: identity.into(), token: String::new() };
        self.core.handle(self.now, Input::Connected { peer });
        self.core.handle(self.now, Input::Message { peer, message: Message::Hello(hello) });
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.scheduled += 1;
        self.queue.push(Reverse((at, self.scheduled, event)));
    }

    /// Runs until `until_ms` on the virtual clock.
    pub fn run(&mut self, until_ms: u64) -> anyhow::Result<()> {
        loop {
            let next_event = self.queue.peek().map_or(u64::MAX, |Reverse((at, _, _))| *at);
            let next = next_event.min(self.core.next_deadline_ms()).max(self.now);
            if next > until_ms {
                self.recorder.advance(until_ms);
                break;
            }
            self.recorder.advance(next);
            self.now = next;
            while let Some(Reverse((at, _, event))) = self.queue.peek().copied() {
                if at > self.now {
                    break;
                }
                self.queue.pop();
                self.on_event(event);
                self.pump()?;
            }
            self.core.poll(self.now);
            self.pump()?;
            self.recorder.mark(self.now);
        }
        if let Some(log) = &mut self.log {
            log.flush()?;
        }
        Ok(())
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Arrive(i) => {
                let a = &self.workload.arrivals[i];
                let mut payload = (i as u64).to_le_bytes().to_vec();
                payload.extend_from_slice(&a.duration_ms.to_le_bytes());
                let task =
                    Task { id: i as u64, function: "simulated".into(), payload, capabilities: a.capabilities.clone() };
                self.recorder.arrived();
                self.core.handle(self.now, Input::Message { peer: CLIENT, message: Message::TaskSubmit(task) });
            }
            Event::GroupUp(id) => {
                let Some(group) = self.groups.get_mut(&id) else { return }; // Shut down before it came up.
                group.up = true;
                let (adapter, caps) = (group.adapter, group.capabilities.clone());
                let size = self.fleet[adapter].workers_per_group;
                self.recorder.group_up(adapter, size);
                let response = CommandResponse {
                    request_id: id,
                    ok: true,
                    group_id: id,
                    worker_ids: vec![],
                    message: String::new(),
                };
                let peer = self.adapter_peers[adapter];
                self.core.handle(self.now, Input::Message { peer, message: Message::CommandResponse(response) });
                for n in 0..size {
                    let worker = self.new_peer();
                    let capabilities = caps.clone();
                    self.workers.insert(worker, SimWorker { adapter, group: id, capabilities, task: None });
                    self.join(worker, Role::Worker, &format!("{}-{id}-{n}", self.fleet[adapter].id));
                    self.heartbeat(worker, vec![]);
                }
            }
            Event::TaskDone { worker, task } => {
                let Some(w) = self.workers.get_mut(&worker).filter(|w| w.task.is_some_and(|(i, _)| i == task)) else {
                    return; // The worker is gone, and the task was requeued.
                };
                let (_, id) = w.task.take().expect("checked");
                let idle_gauges = self.workload.gauges.on_idle(&w.capabilities);
                self.recorder.task_finished();
                if let Some(gauges) = idle_gauges {
                    self.heartbeat(worker, gauges);
                }
                let result = TaskResult { id, status: crate::protocol::TaskStatus::Done, output: vec![] };
                self.core.handle(self.now, Input::Message { peer: worker, message: Message::TaskResult(result) });
            }
        }
    }

    /// A heartbeat from `worker` with its current gauges (which replace those it reported before).
    fn heartbeat(&mut self, worker: PeerId, gauges: Vec<(String, f64)>) {
        let Some(w) = self.workers.get(&worker) else { return };
        let hb = WorkerHeartbeat {
            capabilities: w.capabilities.clone(),
            group: Some(w.group),
            assigned: w.task.iter().map(|(_, id)| *id).collect(),
            gauges,
        };
        self.core.handle(self.now, Input::Message { peer: worker, message: Message::WorkerHeartbeat(hb) });
    }

    /// Carries out what the core asks until it asks for nothing more.
    fn pump(&mut self) -> anyhow::Result<()> {
        loop {
            let outputs = self.core.take_outputs();
            if outputs.is_empty() {
                return Ok(());
            }
            for output in outputs {
                self.carry_out(output)?;
            }
        }
    }

    fn carry_out(&mut self, output: Output) -> anyhow::Result<()> {
        match output {
            Output::Send { peer, message } => self.deliver(peer, message),
            Output::Close { peer, reason } => {
                if let Some(w) = self.workers.remove(&peer) {
                    self.recorder.worker_gone(w.adapter, w.task.is_some());
                }
                self.core.handle(self.now, Input::Disconnected { peer, reason });
            }
            Output::Decide { seq, snapshot, state } => {
                self.recorder.saw(&snapshot);
                let outcome = self
                    .decider
                    .decide(&self.params, &snapshot, &state)
                    .map_err(|e| DecisionFailure::new(e.kind(), e.to_string()));
                self.recorder.decided(outcome.is_err());
                self.core.handle(self.now, Input::Decided { seq, outcome, duration_us: 0 });
            }
            Output::Record(mut record) => {
                if let Some(log) = &mut self.log {
                    record.decided_by(&self.by);
                    serde_json::to_writer(&mut *log, &record)?;
                    log.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, peer: PeerId, message: Message) {
        match message {
            Message::TaskResult(result) if peer == CLIENT => self.recorder.done(result.id as usize, self.now),
            Message::TaskSubmit(task) => {
                let Some(w) = self.workers.get_mut(&peer) else { return };
                let field =
                    |i: usize| u64::from_le_bytes(task.payload[i * 8..i * 8 + 8].try_into().unwrap_or_default());
                let (index, duration) = (field(0) as usize, field(1));
                w.task = Some((index, task.id));
                self.recorder.task_started(index, self.now);
                self.schedule(self.now + duration, Event::TaskDone { worker: peer, task: index });
                let gauge = self.workload.gauges.on_start(&self.workload.arrivals[index], self.now);
                if let Some(gauge) = gauge {
                    self.heartbeat(peer, vec![gauge]);
                }
            }
            Message::AdapterCommand(AdapterCommand::Start { group_id, capabilities, .. }) => {
                let Some(adapter) = self.adapter_peers.iter().position(|p| *p == peer) else { return };
                let latency = self.fleet[adapter].start_latency.draw(&mut self.rng);
                self.groups.insert(group_id, SimGroup { adapter, capabilities, up: false });
                self.recorder.group_starting(self.fleet[adapter].workers_per_group);
                self.schedule(self.now + latency, Event::GroupUp(group_id));
            }
            Message::AdapterCommand(AdapterCommand::Shutdown { group_id }) => {
                // Stopped at once; the core then closes the group's workers.
                if let Some(group) = self.groups.remove(&group_id) {
                    self.recorder.group_stopped(self.fleet[group.adapter].workers_per_group, group.up);
                }
                let response =
                    CommandResponse { request_id: 0, ok: true, group_id, worker_ids: vec![], message: String::new() };
                self.core.handle(self.now, Input::Message { peer, message: Message::CommandResponse(response) });
            }
            _ => {}
        }
    }
}
