//! The WebAssembly side: bindings generated from `wit/` (the snapshot lifted directly into
//! [`crate::model`]), the conversion of decisions to the bindings,
//! and the glue behind [`crate::export_policy!`]. Compiled only for `wasm32` targets.

use crate::model as m;
use crate::policy::{Policy, decide_json};

wit_bindgen::generate!({
    path: "../wit",
    world: "scaling-policy",
    pub_export_macro: true,
    export_macro_name: "__export_scaling_policy",
    default_bindings_module: "ebbtide_sdk::guest",
    // The snapshot is lifted straight into the SDK's own types, which mirror the contract field for
    // field: no second copy of 1,000 worker groups on every decision. The enums get the `_lift`
    // the generated code calls (below).
    with: {
        "ebbtide:policy/types@0.1.0/snapshot": crate::model::Snapshot,
        "ebbtide:policy/types@0.1.0/trigger": crate::model::Trigger,
        "ebbtide:policy/types@0.1.0/capability": crate::model::Capability,
        "ebbtide:policy/types@0.1.0/adapter": crate::model::Adapter,
        "ebbtide:policy/types@0.1.0/task-group": crate::model::TaskGroup,
        "ebbtide:policy/types@0.1.0/group-state": crate::model::GroupState,
        "ebbtide:policy/types@0.1.0/worker-group": crate::model::WorkerGroup,
        "ebbtide:policy/types@0.1.0/metric-sample": crate::model::MetricSample,
        "ebbtide:policy/types@0.1.0/miss": crate::model::Miss,
    },
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

pub fn decide<P: Policy>(params: &str, snapshot: &m::Snapshot, state: &[u8]) -> Result<w::Decision, String> {
    let decision = decide_json::<P>(params, snapshot, state)?;
    Ok(decision_to_wit(decision))
}

impl m::Trigger {
    /// Called by the generated lifting code with the enum's case index.
    #[doc(hidden)]
    pub unsafe fn _lift(value: u8) -> Self {
        match value {
            0 => m::Trigger::Tick,
            1 => m::Trigger::Pressure,
            2 => m::Trigger::Membership,
            // The canonical ABI traps on an out-of-range case before the guest sees it.
            _ => m::Trigger::Manual,
        }
    }
}

impl m::GroupState {
    /// Called by the generated lifting code with the enum's case index.
    #[doc(hidden)]
    pub unsafe fn _lift(value: u8) -> Self {
        match value {
            0 => m::GroupState::Starting,
            1 => m::GroupState::Running,
            // As for `Trigger`: 2 is the last case the ABI lets through.
            _ => m::GroupState::Draining,
        }
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
