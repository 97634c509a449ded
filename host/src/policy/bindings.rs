//! Host bindings generated from `wit/` and the conversions from them to the SDK's plain types,
//! which the rest of ebbtide uses (snapshots are built, logged and replayed as SDK types; they go
//! to the guest through `lowering`, without conversion).

use ebbtide_sdk as m;

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
