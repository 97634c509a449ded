//! The [`Policy`] trait: what a Rust policy implements, and the JSON-params entry points that the
//! WebAssembly export and native callers (tests, benchmarks) share.

use crate::model::{Decision, PolicyInfo, Snapshot};

/// A scaling policy: a pure function of params, snapshot and the state it returned last time.
pub trait Policy {
    /// The parsed, validated params.
    type Params;

    /// Name, version, one-line summary and the params it accepts.
    fn info() -> PolicyInfo;

    /// Parses params (a JSON object); every error names the key and what it accepts.
    fn parse_params(json: &str) -> Result<Self::Params, Vec<String>>;

    /// The decision. `state` is what the previous call returned: empty on the first call, and possibly
    /// bytes of another version after a hot swap; treat bytes you cannot decode as "no state".
    fn decide(params: &Self::Params, snapshot: &Snapshot, state: &[u8]) -> Decision;
}

/// `validate` of the contract.
pub fn validate_json<P: Policy>(params: &str) -> Result<(), Vec<String>> {
    P::parse_params(params).map(|_| ())
}

/// `decide` of the contract: params arrive as JSON, and invalid params are an error, not a panic.
pub fn decide_json<P: Policy>(params: &str, snapshot: &Snapshot, state: &[u8]) -> Result<Decision, String> {
    let params = P::parse_params(params).map_err(|errors| format!("invalid params: {}", errors.join("; ")))?;
    Ok(P::decide(&params, snapshot, state))
}

/// Exports a [`Policy`](crate::Policy) as the component's `ebbtide:policy/policy` interface. Expands to nothing when
/// not compiling for WebAssembly, so the same crate builds natively for tests and benchmarks.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::guest::ebbtide::policy::types as __types;
            struct __EbbtideExport;
            impl $crate::guest::exports::ebbtide::policy::policy::Guest for __EbbtideExport {
                fn describe() -> __types::PolicyInfo {
                    $crate::guest::describe::<$policy>()
                }
                fn validate(params: String) -> Result<(), Vec<String>> {
                    $crate::validate_json::<$policy>(&params)
                }
                fn decide(
                    params: String,
                    snapshot: $crate::Snapshot,
                    state: Vec<u8>,
                ) -> Result<__types::Decision, String> {
                    $crate::guest::decide::<$policy>(&params, &snapshot, &state)
                }
            }
    $crate::guest::__export_scaling_policy!(__EbbtideExport with_types_in $crate::guest);
        };
    };
}
