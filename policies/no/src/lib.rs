//! `no`: never starts or stops anything and keeps no state. Useful for a fleet sized by hand, and as
//! the smallest possible example of a policy.

use ebbtide_sdk::{Decision, ParamReader, Policy, PolicyInfo, Snapshot};

pub struct No;

impl Policy for No {
    type Params = ();

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "no".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Never scales: no commands, no state.".into(),
            params: Vec::new(),
        }
    }

    fn parse_params(json: &str) -> Result<(), Vec<String>> {
        ParamReader::new(&[], json)?.finish(())
    }

    fn decide(_: &(), _: &Snapshot, _: &[u8]) -> Decision {
        Decision::default()
    }
}

ebbtide_sdk::export_policy!(No);
