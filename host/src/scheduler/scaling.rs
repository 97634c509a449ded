//! The scaling loop: triggers (tick, pressure, membership, manual) coalesced so that at most one
//! decision is in flight, guard rails the policy cannot override (H4), and dispatch of what remains
//! to the adapters at once (H3).

use ebbtide_sdk::{CapMap, Command, Decision, Snapshot, vectors::ReadableCommand};

use super::record::{DecisionRecord, DroppedCommand};
use super::status::LastDecision;
use super::{DecisionFailure, DropReason, GroupPhase, InFlight, Output, Scheduler, TaskId, due_trigger};
use crate::protocol::{AdapterCommand, Message};

impl Scheduler {
    pub(super) fn fire_triggers(&mut self) {
        let Some(trigger) = due_trigger(self) else { return };
        // Whatever fires, the snapshot reflects everything, so every owed trigger is served.
        self.manual_owed = false;
        self.membership_owed = false;
        self.pressure_since_ms = None;
        if self.now_ms >= self.next_tick_ms {
            self.next_tick_ms = self.now_ms + self.config.tick_ms;
        }
        let snapshot = self.snapshot(trigger);
        let seq = self.next_seq;
        self.next_seq += 1;
        let state = self.policy_state.clone();
        self.in_flight = Some(InFlight { seq, snapshot: snapshot.clone(), state_in: state.clone() });
        self.outputs.push(Output::Decide { seq, snapshot, state });
    }

    pub(super) fn on_decided(&mut self, seq: u64, outcome: Result<Decision, DecisionFailure>, duration_us: u64) {
        let Some(flight) = self.in_flight.take_if(|f| f.seq == seq) else {
            return tracing::warn!(seq, "an answer for a decision that is not in flight; ignored");
        };
        self.counters.observe_decision(duration_us);
        let mut record = DecisionRecord::new(seq, self.config.clock_origin_unix_ms + self.now_ms, &flight, duration_us);
        match outcome {
            Ok(decision) => {
                record.commands = decision.commands.iter().map(|c| readable(c, &flight.snapshot)).collect();
                record.diagnostics = decision.diagnostics.clone();
                for d in &decision.diagnostics {
                    tracing::debug!(code = %d.code, "policy: {}", d.message);
                }
                self.policy_state = decision.state;
                record.dropped = self.dispatch(&flight.snapshot, decision.commands);
            }
            Err(failure) => {
                self.counters.decisions_failed += 1;
                *self.counters.decisions_failed_by_kind.entry(failure.kind.to_owned()).or_default() += 1;
                tracing::warn!(seq, kind = failure.kind, "decision failed; the fleet stays as it is: {failure}");
                record.error = Some(failure.message);
                record.error_kind = Some(failure.kind);
            }
        }
        self.last_decision = Some(LastDecision {
            time_ms: record.time_ms,
            trigger: record.trigger,
            commands: record.commands.len() - record.dropped.len(),
            dropped: record.dropped.len(),
            duration_us,
            error: record.error.clone(),
        });
        self.note_stuck_demand();
        self.outputs.push(Output::Record(Box::new(record)));
    }

    /// Applies the guard rails and sends what passes. Returns what was dropped (the record keeps the
    /// policy's own diagnostics apart, so a replay compares like with like).
    fn dispatch(&mut self, snapshot: &Snapshot, commands: Vec<Command>) -> Vec<DroppedCommand> {
        let (mut starts, mut shutdowns) = (0u32, 0u32);
        let mut dropped = Vec::new();
        for command in commands {
            let verdict = match &command {
                Command::Start { adapter, capabilities } => {
                    let caps: CapMap = capabilities.iter().map(|c| (c.name.clone(), c.value)).collect();
                    self.start(snapshot.name(*adapter), caps, &mut starts)
                }
                Command::Shutdown(id) => self.shutdown(*id, &mut shutdowns),
            };
            if let Err(reason) = verdict {
                let command = readable(&command, snapshot);
                tracing::warn!("dropped {command}: {reason}");
                self.counters.commands_dropped += 1;
                *self.counters.commands_dropped_by_reason.entry(reason.kind().to_owned()).or_default() += 1;
                dropped.push(DroppedCommand { command, kind: reason.kind(), reason: reason.to_string() });
            }
        }
        dropped
    }

    fn start(&mut self, adapter: &str, capabilities: CapMap, starts: &mut u32) -> Result<(), DropReason> {
        let Some(a) = self.adapters.get(adapter) else {
            return Err(DropReason::UnknownAdapter { adapter: adapter.to_owned() });
        };
        let live = self.groups.values().filter(|g| g.adapter.as_deref() == Some(adapter)).count();
        if a.max_worker_groups > 0 && live >= a.max_worker_groups as usize {
            return Err(DropReason::AdapterFull { adapter: adapter.to_owned(), live, max: a.max_worker_groups });
        }
        if *starts >= self.config.max_starts_per_tick {
            return Err(DropReason::MaxStartsPerTick { max: self.config.max_starts_per_tick });
        }
        *starts += 1;
        let peer = a.peer;
        let group_id = self.new_group(Some(adapter.to_owned()), capabilities.clone(), GroupPhase::Starting);
        self.counters.starts += 1;
        let command = AdapterCommand::Start { request_id: group_id, group_id, capabilities };
        self.send(peer, Message::AdapterCommand(command));
        Ok(())
    }

    fn shutdown(&mut self, id: u64, shutdowns: &mut u32) -> Result<(), DropReason> {
        let Some(group) = self.groups.get(&id) else { return Err(DropReason::UnknownGroup { group: id }) };
        let Some(adapter) = group.adapter.clone() else { return Err(DropReason::Unmanaged { group: id }) };
        if group.phase == GroupPhase::Draining {
            return Err(DropReason::AlreadyDraining { group: id });
        }
        if *shutdowns >= self.config.max_shutdowns_per_tick {
            return Err(DropReason::MaxShutdownsPerTick { max: self.config.max_shutdowns_per_tick });
        }
        *shutdowns += 1;
        self.counters.shutdowns += 1;
        let now = self.now_ms;
        let group = self.groups.get_mut(&id).expect("checked");
        group.phase = GroupPhase::Draining;
        group.phase_since_ms = now;
        // H2: no new tasks; what its workers hold goes back to pending and runs elsewhere. The
        // workers keep running their running tasks' copies until they stop: the first result to
        // arrive completes the task, and the other holder is told to cancel. Their prefetched tasks
        // never started: they are taken back at once (the workers are told to cancel them).
        let workers: Vec<_> = group.workers.iter().copied().collect();
        group.busy = 0;
        group.idle_since_ms = now;
        for worker in workers {
            self.reindex(worker);
            let Some(w) = self.workers.get(&worker) else { continue };
            let mine = |t: &TaskId| self.holder(*t) == Some(worker);
            let running = w.held.front().copied().filter(mine);
            let prefetched: Vec<TaskId> = w.held.iter().skip(1).copied().filter(mine).collect();
            for &id in &prefetched {
                self.revoke(worker, id);
            }
            let back: Vec<TaskId> = running.into_iter().chain(prefetched).collect();
            self.requeue(&back, None);
        }
        if let Some(peer) = self.adapters.get(&adapter).map(|a| a.peer) {
            self.send(peer, Message::AdapterCommand(AdapterCommand::Shutdown { group_id: id }));
        }
        Ok(())
    }
}

/// A command in the readable shape of the vector files: adapter by name, shutdown by group id.
pub fn readable(command: &Command, snapshot: &Snapshot) -> ReadableCommand {
    match command {
        Command::Start { adapter, capabilities } => ReadableCommand::Start {
            adapter: snapshot.name(*adapter).to_owned(),
            capabilities: capabilities.iter().map(|c| (c.name.clone(), c.value)).collect(),
        },
        Command::Shutdown(id) => ReadableCommand::Shutdown(id.to_string()),
    }
}
