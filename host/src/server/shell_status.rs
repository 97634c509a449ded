//! What the shell adds to the core's status: the active policy, swaps and the shadow.

use serde::Serialize;

use crate::policy::ScalingLimits;
use crate::policy::candidate::{Candidate, Rejection};
use crate::scheduler::status::Histogram;
use ebbtide_sdk::vectors::ReadableCommand;

/// Upper bounds of the swap latency histogram, in milliseconds.
pub const SWAP_BUCKETS_MS: [u64; 10] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// The active policy, as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyStatus {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub source: String,
    pub params: serde_json::Value,
    pub limits: ScalingLimits,
    /// Unix milliseconds when it was installed.
    pub loaded_at: u64,
    pub fallback_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

impl PolicyStatus {
    pub fn of(candidate: &Candidate) -> Self {
        let p = &candidate.policy;
        PolicyStatus {
            name: p.info.name.clone(),
            version: p.info.version.clone(),
            digest: p.digest.clone(),
            source: candidate.origin.label(),
            params: serde_json::from_str(&candidate.params).unwrap_or_default(),
            limits: candidate.limits.clone(),
            loaded_at: unix_ms(),
            fallback_active: false,
            fallback_reason: None,
        }
    }

    /// What differs from `old`, for the log line of a swap or reload: the build, the source, the params.
    pub fn changes_from(&self, old: &PolicyStatus) -> String {
        let build = |p: &PolicyStatus| format!("{} {} ({}, sha256 {})", p.name, p.version, p.source, &p.digest[..12]);
        let mut changes = Vec::new();
        if (&self.digest, &self.source) != (&old.digest, &old.source) {
            changes.push(format!("{} replaces {}", build(self), build(old)));
        }
        if self.params != old.params {
            changes.push(format!("params {} (were {})", self.params, old.params));
        }
        if self.limits != old.limits {
            changes.push("[scaling.limits] changed".to_owned());
        }
        match changes.is_empty() {
            true => format!("{} stays, with the same params and limits", build(self)),
            false => changes.join("; "),
        }
    }

    /// How logs and diagnostics name it: `the policy vanilla (builtin:vanilla)`.
    pub fn label(&self) -> String {
        format!("the policy {} ({})", self.name, self.source)
    }
}

/// What became of one swap request (the reply to `POST /policy`).
#[derive(Clone, Debug, Serialize)]
pub struct SwapOutcome {
    pub accepted: bool,
    /// What asked for it: `file`, `sighup` or `admin`.
    pub trigger: &'static str,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// From the request to the policy installed (or rejected).
    pub duration_ms: f64,
    /// Unix milliseconds.
    pub at_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SwapStats {
    pub accepted: u64,
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<SwapOutcome>,
    /// Unix milliseconds of the last accepted swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_swap_ms: Option<u64>,
    /// Swap latency in milliseconds, over [`SWAP_BUCKETS_MS`].
    pub latency_ms: Histogram,
}

impl SwapStats {
    pub fn record(&mut self, outcome: &SwapOutcome) {
        if outcome.accepted {
            self.accepted += 1;
            self.last_swap_ms = Some(outcome.at_ms);
            self.latency_ms.observe(&SWAP_BUCKETS_MS, outcome.duration_ms.round() as u64);
        } else {
            self.rejected += 1;
            self.last_error = Some(outcome.clone());
        }
    }
}

/// The shadow policy's agreement with the active one.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShadowStatus {
    pub source: String,
    pub name: String,
    pub digest: String,
    pub equal: u64,
    pub different: u64,
    /// Shadow decisions that failed (they never affect the active policy).
    pub failed: u64,
    /// Snapshots the shadow was too busy to decide on.
    pub skipped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_difference: Option<ShadowDifference>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ShadowDifference {
    pub seq: u64,
    pub active: Vec<ReadableCommand>,
    pub shadow: Vec<ReadableCommand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_error: Option<String>,
}

/// Everything the shell reports beside the core's status.
#[derive(Clone, Debug, Serialize)]
pub struct ShellStatus {
    pub policy: PolicyStatus,
    pub swaps: SwapStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
    /// Lines written, failed, dropped and rotations of `--decision-log`, when it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_log: Option<super::decision_log::LogFigures>,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
