//! One line of the decision log: everything needed to replay the decision and to see what came of it.

use base64::Engine as _;
use ebbtide_sdk::{Diagnostic, Snapshot, Trigger, vectors::ReadableCommand};
use serde::{Deserialize, Serialize};

use super::InFlight;

#[derive(Debug, Serialize)]
pub struct DecisionRecord {
    /// Contiguous from 1.
    pub seq: u64,
    /// Unix epoch milliseconds when the answer was applied.
    pub time_ms: u64,
    pub trigger: Trigger,
    /// The policy that decided; filled in by whoever runs it (the shell).
    pub policy_digest: String,
    /// Where it came from (`builtin:vanilla`, a path, `upload`).
    pub policy_source: String,
    /// The params it decided with.
    pub params: serde_json::Value,
    pub snapshot: Snapshot,
    /// The state handed to the policy, base64: with the snapshot and params it replays the decision.
    pub state: String,
    /// What the policy returned, in the JSON shape of the vector files.
    pub commands: Vec<ReadableCommand>,
    /// Commands the guard rails refused, with why.
    pub dropped: Vec<DroppedCommand>,
    pub diagnostics: Vec<Diagnostic>,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure's kind (`PolicyError::kind()`), when the decision failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// What the shadow policy decided on the same snapshot, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowVerdict>,
}

/// Who made a decision: enough to find the policy again and replay it.
#[derive(Clone, Debug, Default)]
pub struct DecidedBy {
    pub digest: String,
    pub source: String,
    pub params: serde_json::Value,
}

impl DecidedBy {
    /// `params` is the JSON text the policy decides with.
    pub fn new(digest: &str, source: String, params: &str) -> Self {
        DecidedBy { digest: digest.to_owned(), source, params: serde_json::from_str(params).unwrap_or_default() }
    }
}

/// A shadow policy's decision beside the active one's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShadowVerdict {
    pub digest: String,
    /// Same commands as the active policy (both failing also agrees).
    pub agrees: bool,
    pub commands: Vec<ReadableCommand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DroppedCommand {
    pub command: ReadableCommand,
    /// [`DropReason::kind`](super::DropReason::kind), e.g. `adapter_full`.
    pub kind: &'static str,
    pub reason: String,
}

impl DecisionRecord {
    pub(super) fn new(seq: u64, time_ms: u64, flight: &InFlight, duration_us: u64) -> Self {
        DecisionRecord {
            seq,
            time_ms,
            trigger: flight.snapshot.trigger,
            policy_digest: String::new(),
            policy_source: String::new(),
            params: serde_json::Value::Null,
            snapshot: flight.snapshot.clone(),
            state: base64::engine::general_purpose::STANDARD.encode(&flight.state_in),
            commands: Vec::new(),
            dropped: Vec::new(),
            diagnostics: Vec::new(),
            duration_us,
            error: None,
            error_kind: None,
            shadow: None,
        }
    }

    /// Names the policy that decided.
    pub fn decided_by(&mut self, by: &DecidedBy) {
        self.policy_digest = by.digest.clone();
        self.policy_source = by.source.clone();
        self.params = by.params.clone();
    }
}
