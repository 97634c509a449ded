//! Limits on every call into a policy: what bounds a call, and what happens when it is exceeded.
//!
//! A call that exceeds a limit is stopped and fails with a typed [`PolicyError`](super::PolicyError)
//! (`timeout`, `memory` or `fuel`); the runtime itself is unaffected and serves the next call.

use serde::{Deserialize, Serialize};

use super::engine::MAX_MEMORY_MIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallLimits {
    /// Wall-clock deadline per call, enforced by epoch interruption. Default 100 ms: a decision takes
    /// microseconds, so this only stops runaway guests, and leaves room for slow interpreters.
    pub deadline_ms: u64,
    /// Cap on the guest's linear memory. Default 64 MiB: ample for any snapshot we produce, small
    /// enough that a leaking guest cannot hurt the scheduler.
    pub memory_mib: u64,
    /// Optional instruction budget per call (deterministic, unlike the deadline). Default: none.
    pub fuel: Option<u64>,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits { deadline_ms: 100, memory_mib: 64, fuel: None }
    }
}

impl CallLimits {
    /// Checks the values; the error names the bad one and what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        if self.deadline_ms == 0 || self.deadline_ms > 60_000 {
            return Err(format!("deadline_ms: expected 1 to 60000, got {}", self.deadline_ms));
        }
        if self.memory_mib == 0 || self.memory_mib > MAX_MEMORY_MIB {
            return Err(format!("memory_mib: expected 1 to {MAX_MEMORY_MIB}, got {}", self.memory_mib));
        }
        if self.fuel == Some(0) {
            return Err("fuel: expected a positive instruction budget, or leave it out for none".into());
        }
        Ok(())
    }
}

/// `[scaling.limits]`: the per-call limits, plus what happens when calls keep failing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingLimits {
    pub deadline_ms: u64,
    pub memory_mib: u64,
    pub fuel: Option<u64>,
    /// After this many failed decisions in a row, `fallback` decides until a new policy is loaded.
    /// Default 3: one bad decision is noise, three is a broken policy.
    pub max_consecutive_failures: u32,
    /// The built-in that decides while the policy is failing. Default `vanilla`.
    pub fallback: String,
    /// The fallback's own params (a table in TOML, an object in JSON); default `{}`. Checked with the
    /// fallback's `validate` and a dry-run decision whenever a policy is loaded, at start-up and on
    /// every swap, so a fallback that could not decide (`buffer` without `adapter_id`, say) is
    /// refused before it is ever needed.
    pub fallback_params: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Default for ScalingLimits {
    fn default() -> Self {
        let call = CallLimits::default();
        ScalingLimits {
            deadline_ms: call.deadline_ms,
            memory_mib: call.memory_mib,
            fuel: call.fuel,
            max_consecutive_failures: 3,
            fallback: "vanilla".into(),
            fallback_params: None,
        }
    }
}

impl ScalingLimits {
    pub fn call(&self) -> CallLimits {
        CallLimits { deadline_ms: self.deadline_ms, memory_mib: self.memory_mib, fuel: self.fuel }
    }

    /// The fallback's params as the JSON text it decides with.
    pub fn fallback_params_json(&self) -> String {
        serde_json::to_string(&self.fallback_params.clone().unwrap_or_default()).expect("a JSON map serializes")
    }

    /// Checks every value; the error names the bad one and what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        self.call().validate()?;
        if self.max_consecutive_failures == 0 {
            return Err("max_consecutive_failures: expected at least 1, got 0".into());
        }
        if super::builtin::find(&self.fallback).is_none() {
            return Err(format!(
                "fallback: unknown built-in {:?}; accepted: {}",
                self.fallback,
                super::builtin::names()
            ));
        }
        Ok(())
    }
}
