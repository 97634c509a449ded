//! One line of the decision log: everything needed to replay the decision and to see what came of it.

use base64::Engine as _;
use ebbtide_sdk::{Diagnostic, Snapshot, Trigger, vectors::ReadableCommand};
use serde::Serialize;

use super::InFlight;

#[derive(Debug, Serialize)]
pub struct DecisionRecord {
    /// Contiguous from 1.
    pub seq: u64,
    /// Unix epoch milliseconds when the answer was applied.
    pub time_ms: u64,
    pub trigger: Trigger,
    /// Filled in by whoever knows the policy (the shell).
    pub policy_digest: String,
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
}

#[derive(Debug, Serialize)]
pub struct DroppedCommand {
    pub command: ReadableCommand,
    pub reason: String,
}

impl DecisionRecord {
    pub(super) fn new(seq: u64, time_ms: u64, flight: &InFlight, duration_us: u64) -> Self {
        DecisionRecord {
            seq,
            time_ms,
            trigger: flight.snapshot.trigger,
            policy_digest: String::new(),
            snapshot: flight.snapshot.clone(),
            state: base64::engine::general_purpose::STANDARD.encode(&flight.state_in),
            commands: Vec::new(),
            dropped: Vec::new(),
            diagnostics: Vec::new(),
            duration_us,
            error: None,
        }
    }
}
