//! The TOML configuration (examples/native.toml), and `policy_content`.
//!
//! Every key can also be given as a flag or an `EBBTIDE_*` variable (flags win, then variables, then
//! the file, then the defaults). An unknown key or a bad value stops start-up with a message that
//! names it and lists what is accepted.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub use crate::fleet_config::{ADAPTER_TYPES, AdapterSection, parse_capabilities};
use crate::policy::{PolicySource, ScalingLimits};
use crate::scheduler::Allocate;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub scheduler: SchedulerSection,
    #[serde(default)]
    pub scaling: ScalingSection,
    #[serde(default)]
    pub adapter: Vec<AdapterSection>,
    /// Bounds on what peers, policies and admin requests can make the scheduler hold.
    #[serde(default)]
    pub limits: crate::scheduler::Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    pub address: Option<String>,
    pub admin_address: Option<String>,
    pub policy_content: Option<String>,
    pub tick_ms: Option<u64>,
    pub pressure_delay_ms: Option<u64>,
    pub start_timeout_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
    pub worker_prefetch: Option<usize>,
    pub max_starts_per_tick: Option<u32>,
    pub max_shutdowns_per_tick: Option<u32>,
    pub token: Option<String>,
    pub client_token: Option<String>,
    pub worker_token: Option<String>,
    pub adapter_token: Option<String>,
    pub decision_log: Option<PathBuf>,
    pub history_decisions: Option<usize>,
    pub history_detail_mib: Option<usize>,
    pub pid_file: Option<PathBuf>,
    pub compile_cache_dir: Option<PathBuf>,
    pub baseline_compiler: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSection {
    /// Handed to the policy as a JSON object.
    pub params: Option<toml::Table>,
    pub limits: Option<ScalingLimits>,
    /// A candidate that decides beside the active policy; its commands are compared, never run.
    pub shadow: Option<ShadowSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSection {
    /// A built-in name or a path to a `.wasm` file (relative to the configuration's folder).
    pub policy: String,
    pub params: Option<toml::Table>,
    pub limits: Option<ScalingLimits>,
}

impl FileConfig {
    pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        FileConfig::parse(&text).with_context(|| format!("invalid configuration {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
        let config: FileConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", types_in_words(&e.to_string())))?;
        for (i, a) in config.adapter.iter().enumerate() {
            match a.kind.as_str() {
                "native" if a.slurm.is_some() => {
                    anyhow::bail!("[[adapter]] #{}: `slurm` is a setting of type = \"slurm\" adapters", i + 1)
                }
                "native" => {}
                "slurm" if a.command.as_ref().is_some_and(|c| c.is_empty()) => anyhow::bail!(
                    "[[adapter]] #{}: command is empty; leave it out for `ebbtide worker`, or give e.g. [\"python3\", \"-m\", \"ebbtide.worker\"]",
                    i + 1
                ),
                "slurm" => crate::adapter::slurm::check_settings(a.slurm.as_ref().unwrap_or(&Default::default()))
                    .map_err(|e| anyhow::anyhow!("[[adapter]] #{}: {e}", i + 1))?,
                other => anyhow::bail!("[[adapter]] #{}: unknown type {other:?}; accepted: {ADAPTER_TYPES}", i + 1),
            }
            if a.workers_per_group == 0 {
                anyhow::bail!("[[adapter]] #{}: workers_per_group must be at least 1, got 0", i + 1);
            }
            if a.command.as_ref().is_some_and(|c| c.first().is_none_or(|p| p.trim().is_empty())) {
                anyhow::bail!(
                    "[[adapter]] #{}: command must start with a program, e.g. command = [\"python3\", \"-m\", \"ebbtide.worker\"]",
                    i + 1
                );
            }
            if let Some(caps) = &a.capabilities {
                parse_capabilities(caps).map_err(|e| anyhow::anyhow!("[[adapter]] #{}: {e}", i + 1))?;
            }
        }
        Ok(config)
    }
}

/// A deserializer's message with Rust's type names said in words: "expected u64" reads "expected a
/// whole number >= 0". Readers of a configuration error need not know Rust.
pub fn types_in_words(message: &str) -> String {
    const WORDS: [(&[&str], &str); 6] = [
        (&["u8", "u16", "u32", "u64", "u128", "usize"], "a whole number >= 0"),
        (&["i8", "i16", "i32", "i64", "i128", "isize"], "a whole number"),
        (&["f32", "f64"], "a number"),
        (&["a boolean"], "true or false"),
        (&["a sequence"], "a list"),
        (&["a map"], "a table"),
    ];
    let mut out = message.to_owned();
    for (names, words) in WORDS {
        for name in names {
            let pattern = format!("expected {name}");
            let mut from = 0;
            while let Some(at) = out[from..].find(&pattern).map(|i| i + from) {
                let end = at + pattern.len();
                // Whole words only: `u8` must not match the start of `u8x`, say.
                if out[end..].chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    from = end;
                    continue;
                }
                out.replace_range(at..end, &format!("expected {words}"));
                from = at + "expected ".len() + words.len();
            }
        }
    }
    out
}

/// `policy_content`: `key=value` pairs separated by `;`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyContent {
    pub allocate: Allocate,
    pub scaling: PolicySource,
}

/// The default pairing: tasks go only to workers with the capabilities they require, so scaling must
/// start groups with those capabilities too. `capability` does, per capability set; `vanilla` starts
/// groups without capabilities, so a task that requires one would wait forever under it.
pub const DEFAULT_POLICY_CONTENT: &str = "allocate=capability; scaling=capability";

impl PolicyContent {
    /// Relative `.wasm` paths are taken relative to `base` (the configuration's folder) when given.
    pub fn parse(text: &str, base: Option<&Path>) -> Result<PolicyContent, String> {
        let mut content = PolicyContent { allocate: Allocate::Capability, scaling: PolicySource::Builtin("vanilla") };
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "policy_content: {part:?} is not key=value; expected e.g. {DEFAULT_POLICY_CONTENT:?}"
                ));
            };
            match (key.trim(), value.trim()) {
                ("allocate", v) => content.allocate = Allocate::parse(v).map_err(|e| format!("policy_content: {e}"))?,
                ("scaling", v) => {
                    content.scaling =
                        PolicySource::parse(v, base).map_err(|e| format!("policy_content: scaling: {e}"))?
                }
                (other, _) => {
                    return Err(format!("policy_content: unknown key {other:?}; accepted keys: allocate, scaling"));
                }
            }
        }
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_what_is_accepted() {
        let e = format!("{:#}", FileConfig::parse("[scheduler]\ntick = 5\n").unwrap_err());
        assert!(e.contains("unknown field `tick`") && e.contains("tick_ms"), "{e}");
        let e = format!("{:#}", FileConfig::parse("[[adapter]]\ntype = \"k8s\"\n").unwrap_err());
        assert!(e.contains("\"k8s\"") && e.contains("native"), "{e}");
        let e = format!("{:#}", FileConfig::parse("[[adapter]]\ntype = \"native\"\ncommand = []\n").unwrap_err());
        assert!(e.contains("command must start with a program"), "{e}");
    }

    #[test]
    fn slurm_adapters_parse_and_bad_slurm_settings_are_named() {
        let example = include_str!("../../../examples/slurm.toml");
        let config = FileConfig::parse(example).unwrap();
        let slurm = config.adapter[0].slurm.as_ref().unwrap();
        assert_eq!(slurm.requests["gpu"], "--constraint=gpu");
        assert_eq!(slurm.time_limit.as_deref(), Some("01:00:00"));
        let e = format!("{:#}", FileConfig::parse("[[adapter]]\ntype = \"native\"\n[adapter.slurm]\n").unwrap_err());
        assert!(e.contains("type = \"slurm\""), "{e}");
        let e = format!(
            "{:#}",
            FileConfig::parse("[[adapter]]\ntype = \"slurm\"\n[adapter.slurm.requests]\ngpu = \"gres=gpu:1\"\n")
                .unwrap_err()
        );
        assert!(e.contains("#1") && e.contains("gres=gpu:1"), "{e}");
        let e = format!(
            "{:#}",
            FileConfig::parse("[[adapter]]\ntype = \"slurm\"\n[adapter.slurm]\nqueue = \"x\"\n").unwrap_err()
        );
        assert!(e.contains("unknown field `queue`") && e.contains("partition"), "{e}");
    }

    #[test]
    fn worker_prefetch_comes_from_the_file_or_the_flag_and_a_bad_value_is_named() {
        use crate::cli::scheduler::SchedulerArgs;
        let file = FileConfig::parse("[scheduler]\nworker_prefetch = 3\n").unwrap();
        assert_eq!(SchedulerArgs::default().resolve(&file, None).unwrap().core.worker_prefetch, 3);
        let flag = SchedulerArgs { worker_prefetch: Some(1), ..Default::default() };
        assert_eq!(flag.resolve(&file, None).unwrap().core.worker_prefetch, 1, "the flag wins");
        let default = SchedulerArgs::default().resolve(&FileConfig::default(), None).unwrap();
        assert_eq!(default.core.worker_prefetch, crate::scheduler::config::DEFAULT_WORKER_PREFETCH);
        let zero = SchedulerArgs { worker_prefetch: Some(0), ..Default::default() };
        let e = format!("{:#}", zero.resolve(&file, None).err().expect("0 is refused"));
        assert!(e.contains("worker_prefetch") && e.contains("got 0") && e.contains("1 (one task at a time)"), "{e}");
    }

    #[test]
    fn policy_content_names_bad_parts() {
        let c = PolicyContent::parse("allocate=even_load; scaling=capability", None).unwrap();
        assert_eq!(c.allocate, Allocate::EvenLoad);
        assert_eq!(c.scaling, PolicySource::Builtin("capability"));
        assert!(PolicyContent::parse("allocate=random", None).unwrap_err().contains("even_load, capability"));
        assert!(PolicyContent::parse("scaling=fastest", None).unwrap_err().contains("vanilla"));
        assert!(PolicyContent::parse("speed=1", None).unwrap_err().contains("allocate, scaling"));
    }
}
