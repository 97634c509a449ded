//! Host bindings generated from `wit/` and the conversions between them and the SDK's plain types,
//! which the rest of ebbtide uses (snapshots are built, logged and replayed as SDK types).

use ebbtide_sdk as m;

use super::lowering::{FastMetricSample, FastWorkerGroup, WireSnapshot};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "scaling-policy",
});

pub use ebbtide::policy::types as w;

/// The contract's world, with its version, as components must export it.
pub const WORLD: &str = "ebbtide:policy/scaling-policy@0.1.0";
/// The interface a policy exports.
pub const POLICY_EXPORT: &str = "ebbtide:policy/policy@0.1.0";
/// The prefix shared by every version of that interface.
pub const POLICY_EXPORT_ANY_VERSION: &str = "ebbtide:policy/policy";

pub fn snapshot_to_wit(s: &m::Snapshot) -> WireSnapshot {
    WireSnapshot {
        now_ms: s.now_ms,
        trigger: match s.trigger {
            m::Trigger::Tick => w::Trigger::Tick,
            m::Trigger::Pressure => w::Trigger::Pressure,
            m::Trigger::Membership => w::Trigger::Membership,
            m::Trigger::Manual => w::Trigger::Manual,
        },
        names: s.names.clone(),
        capability_sets: s
            .capability_sets
            .iter()
            .map(|set| set.iter().map(|c| w::Capability { name: c.name, value: c.value }).collect())
            .collect(),
        adapters: s
            .adapters
            .iter()
            .map(|a| w::Adapter {
                id: a.id,
                max_worker_groups: a.max_worker_groups,
                workers_per_group: a.workers_per_group,
                capabilities: a.capabilities,
                priority: a.priority,
            })
            .collect(),
        task_groups: s
            .task_groups
            .iter()
            .map(|t| w::TaskGroup { capabilities: t.capabilities, pending: t.pending, running: t.running })
            .collect(),
        worker_groups: s
            .worker_groups
            .iter()
            .map(|g| {
                FastWorkerGroup(w::WorkerGroup {
                    id: g.id,
                    adapter: g.adapter,
                    capabilities: g.capabilities,
                    state: match g.state {
                        m::GroupState::Starting => w::GroupState::Starting,
                        m::GroupState::Running => w::GroupState::Running,
                        m::GroupState::Draining => w::GroupState::Draining,
                    },
                    workers: g.workers,
                    queued_tasks: g.queued_tasks,
                    idle_workers: g.idle_workers,
                    idle_ms: g.idle_ms,
                })
            })
            .collect(),
        metrics: s
            .metrics
            .iter()
            .map(|x| FastMetricSample(w::MetricSample { group: x.group, name: x.name, value: x.value }))
            .collect(),
        misses: s.misses.iter().map(|x| w::Miss { adapter: x.adapter, count: x.count }).collect(),
    }
}

pub fn decision_from_wit(d: w::Decision) -> m::Decision {
    m::Decision {
        commands: d
            .commands
            .into_iter()
            .map(|c| match c {
                w::Command::Start(s) => m::Command::Start {
                    adapter: s.adapter,
                    capabilities: s
                        .capabilities
                        .into_iter()
                        .map(|c| m::NamedCapability { name: c.name, value: c.value })
                        .collect(),
                },
                w::Command::Shutdown(id) => m::Command::Shutdown(id),
            })
            .collect(),
        state: d.state,
        diagnostics: d.diagnostics.into_iter().map(|x| m::Diagnostic { code: x.code, message: x.message }).collect(),
    }
}

pub fn info_from_wit(i: w::PolicyInfo) -> m::PolicyInfo {
    m::PolicyInfo {
        name: i.name,
        version: i.version,
        summary: i.summary,
        params: i
            .params
            .into_iter()
            .map(|p| m::ParamInfo { name: p.name, kind: p.kind, default: p.default, doc: p.doc })
            .collect(),
    }
}
