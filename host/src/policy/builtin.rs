//! The built-in policies: their components (compiled by build.rs and embedded) and, for benchmarks
//! and comparison, the same logic as native Rust.

use ebbtide_sdk::{Decision, Policy, PolicyInfo, Snapshot, decide_json};

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// A native `decide` with JSON params: what the component computes, without the crossing.
pub type NativeDecide = fn(&str, &Snapshot, &[u8]) -> Result<Decision, String>;

#[derive(Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub component: &'static [u8],
    pub info: fn() -> PolicyInfo,
    pub native: NativeDecide,
}

fn entry<P: Policy>(name: &'static str) -> Builtin {
    let component = BUILTIN_COMPONENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("build.rs embeds every built-in; {name} is missing"));
    Builtin { name, component, info: P::info, native: decide_json::<P> }
}

/// Every built-in, in the order they are listed to users.
pub fn all() -> Vec<Builtin> {
    vec![
        entry::<ebbtide_policy_no::No>("no"),
        entry::<ebbtide_policy_vanilla::Vanilla>("vanilla"),
        entry::<ebbtide_policy_capability::CapabilityPolicy>("capability"),
        entry::<ebbtide_policy_fixed_elastic::FixedElastic>("fixed_elastic"),
        entry::<ebbtide_policy_pd_coordinated::PdCoordinated>("pd_coordinated"),
        entry::<ebbtide_policy_buffer::Buffer>("buffer"),
    ]
}

pub fn find(name: &str) -> Option<Builtin> {
    all().into_iter().find(|b| b.name == name)
}

/// The built-in names, comma-separated, for error messages.
pub fn names() -> String {
    all().iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}
