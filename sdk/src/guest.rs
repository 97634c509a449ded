//! The WebAssembly side: bindings generated from `wit/`, conversions between them and [`crate::model`],
//! and the glue behind [`crate::export_policy!`]. Compiled only for `wasm32` targets.

use crate::model as m;
use crate::policy::{Policy, decide_json};

wit_bindgen::generate!({
    path: "../wit",
    world: "scaling-policy",
    pub_export_macro: true,
    export_macro_name: "__export_scaling_policy",
    default_bindings_module: "ebbtide_sdk::guest",
});

use ebbtide::policy::types as w;

/// Sends a line to the host's log (at the given level), tagged with the policy.
pub fn log(level: ebbtide::policy::host::Level, message: &str) {
    ebbtide::policy::host::log(level, message);
}

pub fn describe<P: Policy>() -> w::PolicyInfo {
    let info = P::info();
    w::PolicyInfo {
        name: info.name,
        version: info.version,
        summary: info.summary,
        params: info
            .params
            .into_iter()
            .map(|p| w::ParamInfo { name: p.name, kind: p.kind, default: p.default, doc: p.doc })
            .collect(),
    }
}

pub fn decide<P: Policy>(params: &str, snapshot: w::Snapshot, state: &[u8]) -> Result<w::Decision, String> {
    let decision = decide_json::<P>(params, &snapshot_from_wit(snapshot), state)?;
    Ok(decision_to_wit(decision))
}

fn snapshot_from_wit(s: w::Snapshot) -> m::Snapshot {
    m::Snapshot {
        now_ms: s.now_ms,
        trigger: match s.trigger {
            w::Trigger::Tick => m::Trigger::Tick,
            w::Trigger::Pressure => m::Trigger::Pressure,
            w::Trigger::Membership => m::Trigger::Membership,
            w::Trigger::Manual => m::Trigger::Manual,
        },
        names: s.names,
        capability_sets: s
            .capability_sets
            .into_iter()
            .map(|set| set.into_iter().map(|c| m::Capability { name: c.name, value: c.value }).collect())
            .collect(),
        adapters: s
            .adapters
            .into_iter()
            .map(|a| m::Adapter {
                id: a.id,
                max_worker_groups: a.max_worker_groups,
                workers_per_group: a.workers_per_group,
                capabilities: a.capabilities,
                priority: a.priority,
            })
            .collect(),
        task_groups: s
            .task_groups
            .into_iter()
            .map(|t| m::TaskGroup { capabilities: t.capabilities, pending: t.pending, running: t.running })
            .collect(),
        worker_groups: s
            .worker_groups
            .into_iter()
            .map(|g| m::WorkerGroup {
                id: g.id,
                adapter: g.adapter,
                capabilities: g.capabilities,
                state: match g.state {
                    w::GroupState::Starting => m::GroupState::Starting,
                    w::GroupState::Running => m::GroupState::Running,
                    w::GroupState::Draining => m::GroupState::Draining,
                },
                workers: g.workers,
                queued_tasks: g.queued_tasks,
                idle_workers: g.idle_workers,
                idle_ms: g.idle_ms,
            })
            .collect(),
        metrics: s
            .metrics
            .into_iter()
            .map(|x| m::MetricSample { group: x.group, name: x.name, value: x.value })
            .collect(),
        misses: s.misses.into_iter().map(|x| m::Miss { adapter: x.adapter, count: x.count }).collect(),
    }
}

fn decision_to_wit(d: m::Decision) -> w::Decision {
    w::Decision {
        commands: d
            .commands
            .into_iter()
            .map(|c| match c {
                m::Command::Start { adapter, capabilities } => w::Command::Start(w::StartGroup {
                    adapter,
                    capabilities: capabilities
                        .into_iter()
                        .map(|c| w::NamedCapability { name: c.name, value: c.value })
                        .collect(),
                }),
                m::Command::Shutdown(id) => w::Command::Shutdown(id),
            })
            .collect(),
        state: d.state,
        diagnostics: d.diagnostics.into_iter().map(|x| w::Diagnostic { code: x.code, message: x.message }).collect(),
    }
}
