//! The common model (docs/builtins.md#the-common-model), shared by every built-in: capacity (`cap`), demand
//! (`out`), adapter order and slots, `place`, and the victim order for shutdowns.
//!
//! [`Fleet`] is a read-only view of one snapshot with the lookups computed once. [`Placer`] carries
//! what one `decide` call has already issued (starts per adapter, the shared start budget), so slots
//! and budget are honoured across every `place` of the call.

use std::cmp::Ordering;

use crate::keys::KeyIndex;
use crate::model::*;

pub struct Fleet<'s> {
    pub snapshot: &'s Snapshot,
    pub keys: KeyIndex,
    /// Indices into `snapshot.adapters`, in adapter order `(priority asc, id asc)`.
    order: Vec<usize>,
    /// Per adapter index: its groups in `starting | running | draining`.
    groups: Vec<u64>,
}

impl<'s> Fleet<'s> {
    pub fn new(snapshot: &'s Snapshot) -> Self {
        let mut order: Vec<usize> = (0..snapshot.adapters.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&snapshot.adapters[a], &snapshot.adapters[b]);
            a.priority.cmp(&b.priority).then_with(|| snapshot.name(a.id).cmp(snapshot.name(b.id)))
        });
        let mut groups = vec![0u64; snapshot.adapters.len()];
        for g in &snapshot.worker_groups {
            if let Some(i) = g.adapter.and_then(|a| snapshot.adapters.iter().position(|x| x.id == a)) {
                groups[i] += 1;
            }
        }
        Fleet { snapshot, keys: KeyIndex::new(snapshot), order, groups }
    }

    /// Adapter indices in adapter order `(priority asc, id asc)`.
    pub fn adapter_order(&self) -> &[usize] {
        &self.order
    }

    pub fn adapter_index(&self, id: NameId) -> Option<usize> {
        self.snapshot.adapters.iter().position(|a| a.id == id)
    }

    /// `wpg(g)`: the group's adapter's workers per group; 0 if unmanaged or its adapter is unknown.
    pub fn wpg(&self, g: &WorkerGroup) -> u64 {
        g.adapter.and_then(|a| self.snapshot.adapter(a)).map_or(0, |a| u64::from(a.workers_per_group))
    }

    /// `cap(g)`: in-flight capacity counts (the anti-windup), draining capacity does not.
    pub fn cap(&self, g: &WorkerGroup) -> u64 {
        match g.state {
            GroupState::Running => u64::from(g.workers),
            GroupState::Starting => u64::from(g.workers).max(self.wpg(g)),
            GroupState::Draining => 0,
        }
    }

    /// `W`: capacity of every live group, unmanaged ones included.
    pub fn total_capacity(&self) -> u64 {
        self.snapshot.worker_groups.iter().map(|g| self.cap(g)).sum()
    }

    /// `T`: every unfinished task.
    pub fn total_outstanding(&self) -> u64 {
        self.snapshot.task_groups.iter().map(out).sum()
    }

    /// `eligible(a, names)`: the adapter can provide a set with these capability names.
    pub fn eligible<'n>(&self, adapter: &Adapter, mut names: impl Iterator<Item = &'n str>) -> bool {
        match adapter.capabilities {
            None => true,
            Some(set) => {
                let offered = self.snapshot.capability_set(set);
                names.all(|n| offered.iter().any(|c| self.snapshot.name(c.name) == n))
            }
        }
    }

    /// The live, managed groups that may be shut down, in victim order.
    pub fn victims(&self, min_idle_ms: u64) -> Vec<&'s WorkerGroup> {
        let mut v: Vec<&WorkerGroup> =
            self.snapshot.worker_groups.iter().filter(|g| shutdownable(g, min_idle_ms)).collect();
        v.sort_by(|a, b| victim_order(a, b));
        v
    }
}

/// `out(T) = pending + running`.
pub fn out(t: &TaskGroup) -> u64 {
    u64::from(t.pending) + u64::from(t.running)
}

/// `live(g)`: starting or running.
pub fn live(g: &WorkerGroup) -> bool {
    matches!(g.state, GroupState::Starting | GroupState::Running)
}

/// `shutdownable(g)`: managed, live, and starting or idle for at least `min_idle_ms`.
pub fn shutdownable(g: &WorkerGroup, min_idle_ms: u64) -> bool {
    g.adapter.is_some() && live(g) && (g.state == GroupState::Starting || g.idle_ms >= min_idle_ms)
}

/// Victim order: `(queued_tasks asc, starting before running, idle_ms desc, id asc)`.
pub fn victim_order(a: &WorkerGroup, b: &WorkerGroup) -> Ordering {
    let starting_first = |g: &WorkerGroup| g.state != GroupState::Starting;
    a.queued_tasks
        .cmp(&b.queued_tasks)
        .then_with(|| starting_first(a).cmp(&starting_first(b)))
        .then_with(|| b.idle_ms.cmp(&a.idle_ms))
        .then_with(|| a.id.cmp(&b.id))
}

/// What `need` counts in [`Placer::place`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Need is in workers; one start gives `workers_per_group`.
    Workers,
    /// Need is in groups; one start gives one.
    Groups,
}

/// `place` with the per-call bookkeeping: starts already issued per adapter, and the start budget
/// (`max_starts_per_tick`, 0 = unlimited) shared by the whole call.
pub struct Placer<'f, 's> {
    fleet: &'f Fleet<'s>,
    issued: Vec<u64>,
    budget: Option<u64>,
}

impl<'f, 's> Placer<'f, 's> {
    pub fn new(fleet: &'f Fleet<'s>, max_starts_per_tick: u64) -> Self {
        let budget = (max_starts_per_tick > 0).then_some(max_starts_per_tick);
        Placer { fleet, issued: vec![0; fleet.snapshot.adapters.len()], budget }
    }

    /// `slots(a)`: free group slots of the adapter at this index (`u64::MAX` when unbounded).
    pub fn slots(&self, adapter_index: usize) -> u64 {
        let a = &self.fleet.snapshot.adapters[adapter_index];
        if a.max_worker_groups == 0 {
            return u64::MAX;
        }
        u64::from(a.max_worker_groups).saturating_sub(self.fleet.groups[adapter_index] + self.issued[adapter_index])
    }

    /// Starts left in this call's budget (`u64::MAX` when unlimited).
    pub fn budget(&self) -> u64 {
        self.budget.unwrap_or(u64::MAX)
    }

    /// Emits up to `n` starts on one adapter, within its slots and the budget; returns how many.
    pub fn start_on(&mut self, adapter_index: usize, n: u64, caps: &[NamedCapability], d: &mut Decision) -> u64 {
        let n = n.min(self.slots(adapter_index)).min(self.budget());
        let adapter = self.fleet.snapshot.adapters[adapter_index].id;
        for _ in 0..n {
            d.commands.push(Command::Start { adapter, capabilities: caps.to_vec() });
        }
        self.issued[adapter_index] += n;
        if let Some(b) = self.budget.as_mut() {
            *b -= n;
        }
        n
    }

    /// Placement (docs/builtins.md#the-common-model): fills adapters in adapter order
    /// (only those `include` accepts and that are eligible for `caps`); what is left becomes an
    /// `unplaceable` diagnostic. Returns the number of starts emitted.
    pub fn place(
        &mut self,
        need: u64,
        caps: &[NamedCapability],
        unit: Unit,
        include: impl Fn(&Adapter) -> bool,
        d: &mut Decision,
    ) -> u64 {
        let mut need = need;
        let mut started = 0;
        for &ai in self.fleet.adapter_order() {
            if need == 0 || self.budget() == 0 {
                break;
            }
            let a = &self.fleet.snapshot.adapters[ai];
            if !include(a) || !self.fleet.eligible(a, caps.iter().map(|c| c.name.as_str())) {
                continue;
            }
            let per = match unit {
                Unit::Workers => u64::from(a.workers_per_group),
                Unit::Groups => 1,
            };
            if per == 0 {
                continue; // an adapter that starts empty groups can never meet a need in workers
            }
            let n = self.start_on(ai, need.div_ceil(per), caps, d);
            started += n;
            need = need.saturating_sub(n * per);
        }
        if need > 0 {
            let unit = if unit == Unit::Workers { "workers" } else { "groups" };
            d.diagnose(
                "unplaceable",
                format!(
                    "{need} {unit} short for {}: no eligible adapter has a free slot or the start budget ran out",
                    describe_caps(caps)
                ),
            );
        }
        started
    }
}

/// `{gpu:1,linux:-1}`, for messages.
pub fn describe_caps(caps: &[NamedCapability]) -> String {
    let parts: Vec<String> = caps.iter().map(|c| format!("{}:{}", c.name, c.value)).collect();
    format!("{{{}}}", parts.join(","))
}

/// The ratio scale-down loop of `vanilla` (docs/builtins.md#vanilla, rule 3), also used by
/// `fixed_elastic` on its secondaries. Walks `candidates` (already in victim order) and shuts groups
/// down while `T/W < lower`, at most `max_shutdowns`, never removing the last capacity while tasks
/// exist and never a group whose removal would push `T/W` above `upper` (the thrash guard).
pub fn ratio_scale_down<'s>(
    fleet: &Fleet<'s>,
    candidates: impl IntoIterator<Item = &'s WorkerGroup>,
    (tasks, capacity): (u64, u64),
    (upper, lower): (f64, f64),
    max_shutdowns: u64,
    d: &mut Decision,
) {
    let (t, mut w, mut k) = (tasks as f64, capacity, max_shutdowns);
    for g in candidates {
        if k == 0 || (w > 0 && t / w as f64 >= lower) {
            break;
        }
        let after = w.saturating_sub(fleet.cap(g));
        if tasks > 0 && after == 0 {
            continue; // the last capacity
        }
        if after > 0 && t / after as f64 > upper {
            continue; // removing it would trigger a scale-up
        }
        d.commands.push(Command::Shutdown(g.id));
        w = after;
        k -= 1;
    }
}
