//! Workers, worker groups and adapters, and their lifecycles.
//!
//! A managed group is created by an accepted start (`starting`, H1), becomes `running` once all its
//! workers have connected (the adapter's confirmation may arrive before or after), `draining` when shut down (H2: no new tasks, no capacity), and is gone when the
//! adapter confirms the shutdown, reports it lost, or the start times out. Workers that connect without
//! a group join the unmanaged group of their capability set (H6). When a group or its adapter goes, its
//! workers are disconnected and their tasks go back to pending.

use ebbtide_sdk::CapMap;

use super::{AdapterEntry, Group, GroupId, GroupPhase, PeerId, Scheduler, Worker};
use crate::protocol::{AdapterCommand, AdapterHeartbeat, CommandResponse, Message, WorkerHeartbeat};

impl Scheduler {
    pub(super) fn worker_heartbeat(&mut self, peer: PeerId, hb: WorkerHeartbeat) {
        if let Some(w) = self.workers.get_mut(&peer) {
            w.gauges = super::metrics::keep_gauges(peer, hb.gauges);
            return self.touch_worker(peer);
        }
        if let Err(refusal) = super::tasks::check_names("", &hb.capabilities, &self.config.limits) {
            self.counters.protocol_errors += 1;
            return self.close(peer, format!("worker capabilities {refusal}"));
        }
        let group = match hb.group {
            Some(id) => match self.groups.get(&id) {
                Some(g) if g.adapter.is_some() => id,
                _ => {
                    self.counters.protocol_errors += 1;
                    return self.close(peer, format!("group {id} is unknown (never started, timed out or gone)"));
                }
            },
            None => self.unmanaged_group(&hb.capabilities),
        };
        let identity = self.identity(peer);
        tracing::debug!(peer, %identity, group, "worker registered");
        let gauges = super::metrics::keep_gauges(peer, hb.gauges);
        let worker = Worker {
            identity,
            group,
            capabilities: hb.capabilities,
            held: Default::default(),
            revoked: Vec::new(),
            listed: None,
            last_seen_ms: self.now_ms,
            gauges,
        };
        self.workers.insert(peer, worker);
        let g = self.groups.get_mut(&group).expect("chosen above");
        g.workers.insert(peer);
        if g.phase != GroupPhase::Draining {
            self.reindex(peer);
            self.recheck_unrunnable();
            self.feed(peer);
        }
        self.maybe_running(group);
    }

    /// A starting group is running once every worker it will have has connected. That proves the
    /// start even when the adapter's confirmation is still on its way (it may come second), and a
    /// policy must not count idle connected workers of a `starting` group as busy meanwhile.
    fn maybe_running(&mut self, id: GroupId) {
        let now = self.now_ms;
        let Some(g) = self.groups.get_mut(&id) else { return };
        let size = g.adapter.as_ref().and_then(|a| self.adapters.get(a)).map_or(1, |a| a.workers_per_group as usize);
        if g.phase == GroupPhase::Starting && g.workers.len() >= size.max(1) {
            g.phase = GroupPhase::Running;
            g.phase_since_ms = now;
            self.membership_owed = true;
            self.adopt_adapter_capabilities(id);
        }
    }

    /// A started group has what its adapter's machines offer, plus what the start asked for (a `{}`
    /// start on a GPU adapter runs on GPU machines). Idempotent.
    fn adopt_adapter_capabilities(&mut self, id: GroupId) {
        let Some(g) = self.groups.get_mut(&id) else { return };
        let offered = g.adapter.as_ref().and_then(|a| self.adapters.get(a)).and_then(|a| a.capabilities.clone());
        if let Some(mut caps) = offered {
            caps.extend(std::mem::take(&mut g.capabilities));
            g.capabilities = caps;
        }
    }

    fn unmanaged_group(&mut self, caps: &CapMap) -> GroupId {
        if let Some(id) = self.unmanaged.get(caps) {
            return *id;
        }
        let id = self.new_group(None, caps.clone(), GroupPhase::Running);
        self.unmanaged.insert(caps.clone(), id);
        id
    }

    pub(super) fn new_group(&mut self, adapter: Option<String>, capabilities: CapMap, phase: GroupPhase) -> GroupId {
        let id = self.next_group;
        self.next_group += 1;
        let now = self.now_ms;
        let group = Group {
            adapter,
            capabilities,
            phase,
            phase_since_ms: now,
            confirmed: phase != GroupPhase::Starting,
            workers: Default::default(),
            busy: 0,
            idle_since_ms: now,
        };
        self.groups.insert(id, group);
        self.membership_owed = true;
        id
    }

    pub(super) fn touch_worker(&mut self, peer: PeerId) {
        if let Some(w) = self.workers.get_mut(&peer) {
            w.last_seen_ms = self.now_ms;
        }
    }

    pub(super) fn remove_worker(&mut self, peer: PeerId, reason: &str) {
        let Some(w) = self.workers.remove(&peer) else { return };
        self.idle.remove(&peer);
        if let Some(key) = w.listed {
            self.loaded.remove(&key);
        }
        // A worker leaving a group that is gone or draining is expected (logged with the group); one
        // leaving a live group is a lost worker, which an operator wants to see.
        match self.groups.get(&w.group).map(|g| g.phase) {
            Some(GroupPhase::Starting | GroupPhase::Running) => {
                tracing::warn!(peer, identity = %w.identity, group = w.group, "worker lost: {reason}")
            }
            _ => tracing::debug!(peer, identity = %w.identity, group = w.group, "worker gone: {reason}"),
        }
        if let Some(g) = self.groups.get_mut(&w.group) {
            g.workers.remove(&peer);
            if !w.held.is_empty() {
                g.busy = g.busy.saturating_sub(1);
            }
            if g.adapter.is_none() && g.workers.is_empty() {
                self.groups.remove(&w.group);
                self.unmanaged.retain(|_, id| *id != w.group);
                self.membership_owed = true;
            }
        }
        // Everything it held goes back, in order; what it was told to cancel is held elsewhere.
        let mine: Vec<_> = w.held.iter().copied().filter(|t| self.holder(*t) == Some(peer)).collect();
        let reason = format!("worker {} ({}): {reason}", peer, w.identity);
        self.requeue(&mine, Some(super::tasks::Lost { reason: &reason, running: w.held.front().copied() }));
    }

    pub(super) fn adapter_heartbeat(&mut self, peer: PeerId, hb: AdapterHeartbeat) {
        let name = self.identity(peer);
        if let Some(a) = self.adapters.get_mut(&name)
            && a.peer == peer
        {
            let changed = (a.max_worker_groups, a.workers_per_group, &a.capabilities, a.priority)
                != (hb.max_worker_groups, hb.workers_per_group, &hb.capabilities, hb.priority);
            a.max_worker_groups = hb.max_worker_groups;
            a.workers_per_group = hb.workers_per_group;
            a.capabilities = hb.capabilities;
            a.priority = hb.priority;
            a.last_seen_ms = self.now_ms;
            self.membership_owed |= changed;
            return;
        }
        let refuse = if name.is_empty() {
            Some("an adapter needs an identity in its hello: it is the adapter id policies see".to_owned())
        } else if self.adapters.contains_key(&name) {
            Some(format!("adapter id {name:?} is already connected; every adapter needs a unique id"))
        } else if hb.workers_per_group == 0 {
            Some("workers_per_group must be at least 1".to_owned())
        } else if let Some(Err(refusal)) =
            hb.capabilities.as_ref().map(|c| super::tasks::check_names("", c, &self.config.limits))
        {
            Some(format!("adapter capabilities {refusal}"))
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.counters.protocol_errors += 1;
            return self.close(peer, reason);
        }
        tracing::info!(adapter = %name, max_groups = hb.max_worker_groups, workers_per_group = hb.workers_per_group, "adapter joined");
        self.adapters.insert(
            name,
            AdapterEntry {
                peer,
                max_worker_groups: hb.max_worker_groups,
                workers_per_group: hb.workers_per_group,
                capabilities: hb.capabilities,
                priority: hb.priority,
                last_seen_ms: self.now_ms,
            },
        );
        self.membership_owed = true;
        self.recheck_unrunnable();
    }

    fn adapter_of(&self, peer: PeerId) -> Option<String> {
        self.adapters.iter().find(|(_, a)| a.peer == peer).map(|(name, _)| name.clone())
    }

    pub(super) fn remove_adapter(&mut self, peer: PeerId, reason: &str, expected: bool) {
        let Some(name) = self.adapter_of(peer) else { return };
        self.adapters.remove(&name);
        if expected {
            tracing::info!(adapter = %name, "adapter left");
        } else {
            tracing::warn!(adapter = %name, "adapter gone: {reason}; its groups leave the fleet");
        }
        let groups: Vec<GroupId> =
            self.groups.iter().filter(|(_, g)| g.adapter.as_deref() == Some(&name)).map(|(id, _)| *id).collect();
        for id in groups {
            self.remove_group(id, "its adapter is gone");
        }
        self.membership_owed = true;
    }

    /// The group is gone: its workers are disconnected and their tasks go back to pending.
    pub(super) fn remove_group(&mut self, id: GroupId, reason: &str) {
        let Some(group) = self.groups.remove(&id) else { return };
        tracing::info!(group = id, adapter = ?group.adapter, "group gone: {reason}");
        for worker in group.workers {
            self.remove_worker(worker, reason);
            // Expected, not a fault: logged with the group above, not per worker.
            self.outputs.push(super::Output::Close { peer: worker, reason: format!("group {id} is gone: {reason}") });
        }
        self.membership_owed = true;
    }

    /// The managed group `id`, if `peer` is the adapter that owns it.
    fn owned_group(&self, peer: PeerId, id: GroupId) -> Option<GroupPhase> {
        let name = self.adapter_of(peer)?;
        self.groups.get(&id).filter(|g| g.adapter.as_deref() == Some(name.as_str())).map(|g| g.phase)
    }

    pub(super) fn command_response(&mut self, peer: PeerId, r: CommandResponse) {
        if let Some(a) = self.adapter_of(peer).and_then(|n| self.adapters.get_mut(&n)) {
            a.last_seen_ms = self.now_ms;
        }
        match (self.owned_group(peer, r.group_id), r.ok) {
            (Some(GroupPhase::Starting), true) => {
                self.groups.get_mut(&r.group_id).expect("owned").confirmed = true;
                self.adopt_adapter_capabilities(r.group_id);
                self.maybe_running(r.group_id);
            }
            (Some(GroupPhase::Starting), false) => {
                self.counters.start_failures += 1;
                tracing::warn!(group = r.group_id, "start failed: {}", r.message);
                self.remove_group(r.group_id, "its start failed");
            }
            (Some(GroupPhase::Draining), ok) => {
                if !ok {
                    tracing::warn!(group = r.group_id, "shutdown reported a failure: {}", r.message);
                }
                self.remove_group(r.group_id, "shut down");
            }
            (Some(GroupPhase::Running), _) => {}
            (None, _) => tracing::debug!(peer, group = r.group_id, "response for a group that is gone"),
        }
    }

    pub(super) fn group_lost(&mut self, peer: PeerId, id: GroupId, reason: &str) {
        if self.owned_group(peer, id).is_some() {
            self.counters.groups_lost += 1;
            tracing::warn!(group = id, "group lost: {reason}");
            self.remove_group(id, &format!("lost ({reason})"));
        }
    }

    /// H1: a start not confirmed within `start_timeout_ms` is gone, and the adapter told to clean up.
    /// A confirmed start with some of its workers runs with those.
    pub(super) fn expire_starts(&mut self) {
        let deadline = self.config.start_timeout_ms;
        let expired: Vec<(GroupId, Option<String>, bool)> = self
            .groups
            .iter()
            .filter(|(_, g)| g.phase == GroupPhase::Starting && self.now_ms >= g.phase_since_ms + deadline)
            .map(|(id, g)| (*id, g.adapter.clone(), g.confirmed && !g.workers.is_empty()))
            .collect();
        for (id, adapter, partly_up) in expired {
            if partly_up {
                let g = self.groups.get_mut(&id).expect("listed above");
                tracing::warn!(
                    group = id,
                    "only {} workers connected within {deadline} ms; running with those",
                    g.workers.len()
                );
                g.phase = GroupPhase::Running;
                g.phase_since_ms = self.now_ms;
                self.membership_owed = true;
                continue;
            }
            self.counters.start_failures += 1;
            tracing::warn!(group = id, "start not confirmed within {deadline} ms; dropping it");
            if let Some(peer) = adapter.and_then(|a| self.adapters.get(&a)).map(|a| a.peer) {
                self.send(peer, Message::AdapterCommand(AdapterCommand::Shutdown { group_id: id }));
            }
            self.remove_group(id, "start timed out");
        }
    }

    pub(super) fn expire_silent_peers(&mut self) {
        let timeout = self.config.heartbeat_timeout_ms;
        let now = self.now_ms;
        let silent_workers: Vec<PeerId> =
            self.workers.iter().filter(|(_, w)| now >= w.last_seen_ms + timeout).map(|(p, _)| *p).collect();
        let silent_adapters: Vec<PeerId> =
            self.adapters.values().filter(|a| now >= a.last_seen_ms + timeout).map(|a| a.peer).collect();
        for peer in silent_workers.into_iter().chain(silent_adapters) {
            let reason = format!("no heartbeat for {timeout} ms");
            self.close(peer, reason.clone());
            self.on_disconnected(peer, &reason);
        }
    }
}
