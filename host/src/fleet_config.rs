//! Configuration values shared by the command line and the simulator, below both: capability
//! strings (`gpu=1,linux`) and the `[[adapter]]` table (docs/adapters.md).

use ebbtide_sdk::CapMap;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSection {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    #[serde(default = "default_max_groups")]
    pub max_worker_groups: u32,
    #[serde(default = "one")]
    pub workers_per_group: u32,
    /// `gpu=1,linux`; absent: the adapter offers any set.
    pub capabilities: Option<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    #[serde(default)]
    pub allow_exec: bool,
    /// The worker command, a program and its first arguments, e.g. `["python3", "-m", "ebbtide.worker"]`;
    /// absent: this binary's `ebbtide worker`.
    pub command: Option<Vec<String>>,
    /// `[adapter.slurm]`: partition, time limit, capability requests... (`type = "slurm"` only).
    pub slurm: Option<crate::adapter::slurm::SlurmSettings>,
}

fn default_max_groups() -> u32 {
    8
}
fn one() -> u32 {
    1
}
fn default_grace_ms() -> u64 {
    5000
}

pub const ADAPTER_TYPES: &str = "native, slurm";

/// `gpu=1,linux` → `{gpu: 1, linux: -1}` (a name alone means "present, no quantity").
pub fn parse_capabilities(text: &str) -> Result<CapMap, String> {
    let mut caps = CapMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => {
                let value = value.trim().parse::<i64>().map_err(|_| {
                    format!("capability {part:?}: the value must be an integer (or leave it out), e.g. gpu=1,linux")
                })?;
                (name.trim(), value)
            }
            None => (part, -1),
        };
        if name.is_empty()
            || name.len() > 256
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
        {
            return Err(format!(
                "capability name {name:?}: expected 1 to 256 letters, digits or _-.:/ characters, e.g. gpu=1,linux"
            ));
        }
        caps.insert(name.to_owned(), value);
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse() {
        let caps = parse_capabilities("gpu=1, linux").unwrap();
        assert_eq!(caps.get("gpu"), Some(&1));
        assert_eq!(caps.get("linux"), Some(&-1));
        assert!(parse_capabilities("gpu=lots").unwrap_err().contains("integer"));
    }
}
