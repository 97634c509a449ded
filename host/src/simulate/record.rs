//! What a simulated run records as it goes: the fleet's workers by state as a step curve (one point
//! per change, so its integral is exact), the time each task arrived, started and finished, and the
//! counts of decisions, starts and shutdowns.

use std::collections::BTreeMap;

use ebbtide_sdk::{GroupState, Snapshot};
use serde::Serialize;

use super::fleet::AdapterModel;

/// The fleet and demand from `t_ms` until the next point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    pub t_ms: u64,
    /// Tasks arrived and not finished (pending + running).
    pub demand: u32,
    /// Workers of groups started and not yet up.
    pub starting: u32,
    pub busy: u32,
    pub idle: u32,
}

/// What one decision saw of each role (a capability set, named by its keys): the split and the
/// pressure behind it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RolePoint {
    pub t_ms: u64,
    pub roles: BTreeMap<String, RoleView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RoleView {
    /// Live groups (starting or running).
    pub groups: u32,
    /// Tasks pending or running: the role's demand.
    pub outstanding: u32,
    /// The mean over the role's groups of each metric they report.
    pub metrics: BTreeMap<String, f64>,
}

pub struct Recorder {
    /// Whether to keep [`Recorder::roles`] (workloads whose workers report gauges).
    track_roles: bool,
    pub roles: Vec<RolePoint>,
    now: Point,
    last_t: u64,
    workers_by_adapter: Vec<u32>,
    cost_per_worker_second: Vec<f64>,
    live_groups: u32,
    pub curve: Vec<Point>,
    pub started_ms: Vec<Option<u64>>,
    pub done_ms: Vec<Option<u64>>,
    pub arrived: usize,
    pub worker_ms: u64,
    pub idle_worker_ms: u64,
    pub cost: f64,
    pub decisions: u64,
    pub decision_failures: u64,
    pub starts: u64,
    pub shutdowns: u64,
    pub peak_groups: u32,
}

impl Recorder {
    pub fn new(tasks: usize, fleet: &[AdapterModel], track_roles: bool) -> Self {
        Recorder {
            track_roles,
            roles: Vec::new(),
            now: Point::default(),
            last_t: 0,
            workers_by_adapter: vec![0; fleet.len()],
            cost_per_worker_second: fleet.iter().map(|a| a.cost_per_worker_second).collect(),
            live_groups: 0,
            curve: vec![Point::default()],
            started_ms: vec![None; tasks],
            done_ms: vec![None; tasks],
            arrived: 0,
            worker_ms: 0,
            idle_worker_ms: 0,
            cost: 0.0,
            decisions: 0,
            decision_failures: 0,
            starts: 0,
            shutdowns: 0,
            peak_groups: 0,
        }
    }

    /// Integrates the current state up to `t_ms`.
    pub fn advance(&mut self, t_ms: u64) {
        let dt = t_ms.saturating_sub(self.last_t);
        self.worker_ms += u64::from(self.now.busy + self.now.idle) * dt;
        self.idle_worker_ms += u64::from(self.now.idle) * dt;
        for (workers, cost) in self.workers_by_adapter.iter().zip(&self.cost_per_worker_second) {
            self.cost += f64::from(*workers) * cost * dt as f64 / 1000.0;
        }
        self.last_t = self.last_t.max(t_ms);
    }

    /// Adds a point to the curve if anything changed at `t_ms`.
    pub fn mark(&mut self, t_ms: u64) {
        let point = Point { t_ms, ..self.now };
        let last = self.curve.last_mut().expect("the curve starts with a point");
        if (Point { t_ms: last.t_ms, ..point }) == *last {
            return;
        }
        if last.t_ms == t_ms {
            *last = point;
        } else {
            self.curve.push(point);
        }
    }

    pub fn arrived(&mut self) {
        self.arrived += 1;
        self.now.demand += 1;
    }

    pub fn done(&mut self, task: usize, t_ms: u64) {
        if self.done_ms[task].replace(t_ms).is_none() {
            self.now.demand -= 1;
        }
    }

    pub fn task_started(&mut self, task: usize, t_ms: u64) {
        self.now.idle -= 1;
        self.now.busy += 1;
        self.started_ms[task].get_or_insert(t_ms);
    }

    pub fn task_finished(&mut self) {
        self.now.busy -= 1;
        self.now.idle += 1;
    }

    pub fn group_starting(&mut self, size: u32) {
        self.now.starting += size;
        self.starts += 1;
        self.live_groups += 1;
        self.peak_groups = self.peak_groups.max(self.live_groups);
    }

    pub fn group_up(&mut self, adapter: usize, size: u32) {
        self.now.starting -= size;
        self.now.idle += size;
        self.workers_by_adapter[adapter] += size;
    }

    /// A shutdown; the workers of a group that was up leave one by one with [`Recorder::worker_gone`].
    pub fn group_stopped(&mut self, size: u32, was_up: bool) {
        if !was_up {
            self.now.starting -= size;
        }
        self.shutdowns += 1;
        self.live_groups -= 1;
    }

    pub fn worker_gone(&mut self, adapter: usize, busy: bool) {
        if busy {
            self.now.busy -= 1;
        } else {
            self.now.idle -= 1;
        }
        self.workers_by_adapter[adapter] -= 1;
    }

    pub fn decided(&mut self, failed: bool) {
        self.decisions += 1;
        self.decision_failures += u64::from(failed);
    }

    /// Notes what a decision is about to see, by role.
    pub fn saw(&mut self, snapshot: &Snapshot) {
        if !self.track_roles {
            return;
        }
        let role = |capset: u32| -> String {
            let names: Vec<&str> = snapshot.capability_set(capset).iter().map(|c| snapshot.name(c.name)).collect();
            if names.is_empty() { "{}".into() } else { names.join(",") }
        };
        let mut point = RolePoint { t_ms: snapshot.now_ms, roles: BTreeMap::new() };
        for t in &snapshot.task_groups {
            point.roles.entry(role(t.capabilities)).or_default().outstanding += t.pending + t.running;
        }
        let mut sums: BTreeMap<(String, &str), (f64, u32)> = BTreeMap::new();
        for m in &snapshot.metrics {
            let Some(g) = snapshot.worker_groups.get(m.group as usize) else { continue };
            let e = sums.entry((role(g.capabilities), snapshot.name(m.name))).or_default();
            e.0 += m.value;
            e.1 += 1;
        }
        for g in snapshot.worker_groups.iter().filter(|g| g.state != GroupState::Draining) {
            point.roles.entry(role(g.capabilities)).or_default().groups += 1;
        }
        for ((r, name), (sum, n)) in sums {
            point.roles.entry(r).or_default().metrics.insert(name.to_owned(), sum / f64::from(n));
        }
        self.roles.push(point);
    }
}
