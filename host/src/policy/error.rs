//! Everything that can go wrong loading or calling a policy, as one typed error.
//!
//! Each variant has a stable `kind()` (for counters, `/status` and tests) and a message a person can
//! act on. None of them is fatal to the process.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("timeout: the policy did not return from {call} within {deadline_ms} ms and was stopped")]
    Timeout { call: &'static str, deadline_ms: u64 },

    #[error("memory: the policy tried to grow its memory past its cap of {limit_mib} MiB during {call}")]
    Memory { call: &'static str, limit_mib: u64 },

    #[error("fuel: the policy used up its budget of {budget} fuel units during {call}")]
    Fuel { call: &'static str, budget: u64 },

    #[error("trap: the policy trapped during {call}: {message}")]
    Trap { call: &'static str, message: String },

    #[error("invalid-decision: {0}")]
    InvalidDecision(String),

    /// `decide` returned an error of its own (for example, params it does not accept).
    #[error("policy-error: the policy refused to decide: {0}")]
    Refused(String),

    #[error("incompatible: {0}")]
    Incompatible(String),

    #[error("invalid-component: {0}")]
    InvalidComponent(String),

    #[error("instantiate: could not create an instance of the policy: {0}")]
    Instantiate(String),
}

impl PolicyError {
    /// Every [`PolicyError::kind`], for counters that list each kind from the start.
    pub const KINDS: [&'static str; 9] = [
        "timeout",
        "memory",
        "fuel",
        "trap",
        "invalid-decision",
        "policy-error",
        "incompatible",
        "invalid-component",
        "instantiate",
    ];

    /// A stable, machine-readable name for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::Timeout { .. } => "timeout",
            PolicyError::Memory { .. } => "memory",
            PolicyError::Fuel { .. } => "fuel",
            PolicyError::Trap { .. } => "trap",
            PolicyError::InvalidDecision(_) => "invalid-decision",
            PolicyError::Refused(_) => "policy-error",
            PolicyError::Incompatible(_) => "incompatible",
            PolicyError::InvalidComponent(_) => "invalid-component",
            PolicyError::Instantiate(_) => "instantiate",
        }
    }
}
