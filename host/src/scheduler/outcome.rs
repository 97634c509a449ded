//! Typed outcomes of a decision, carried as types to where they are counted (`/metrics`) and
//! recorded (the decision log): why a guard rail dropped a command (H4), and why a decision failed.

use std::fmt;

use super::GroupId;

/// Why the guard rails (H4) dropped a command the policy returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A start on an adapter that is not connected.
    UnknownAdapter { adapter: String },
    /// A start on an adapter whose `max_worker_groups` are all live (starting, running or draining).
    AdapterFull { adapter: String, live: usize, max: u32 },
    /// The decision already started `max_starts_per_tick` groups.
    MaxStartsPerTick { max: u32 },
    /// A shutdown of a group that does not exist (never started, or gone).
    UnknownGroup { group: GroupId },
    /// A shutdown of unmanaged workers (H6), which no adapter can stop.
    Unmanaged { group: GroupId },
    /// A shutdown of a group already being shut down (H2).
    AlreadyDraining { group: GroupId },
    /// The decision already shut down `max_shutdowns_per_tick` groups.
    MaxShutdownsPerTick { max: u32 },
}

impl DropReason {
    /// Every kind, in the order `/metrics` lists them.
    pub const KINDS: [&'static str; 7] = [
        "unknown_adapter",
        "adapter_full",
        "max_starts_per_tick",
        "unknown_group",
        "unmanaged_group",
        "already_draining",
        "max_shutdowns_per_tick",
    ];

    /// A stable name for counters and the decision log.
    pub fn kind(&self) -> &'static str {
        match self {
            DropReason::UnknownAdapter { .. } => "unknown_adapter",
            DropReason::AdapterFull { .. } => "adapter_full",
            DropReason::MaxStartsPerTick { .. } => "max_starts_per_tick",
            DropReason::UnknownGroup { .. } => "unknown_group",
            DropReason::Unmanaged { .. } => "unmanaged_group",
            DropReason::AlreadyDraining { .. } => "already_draining",
            DropReason::MaxShutdownsPerTick { .. } => "max_shutdowns_per_tick",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::UnknownAdapter { adapter } => write!(f, "unknown adapter {adapter:?}"),
            DropReason::AdapterFull { adapter, live, max } => {
                write!(f, "adapter {adapter:?} is full ({live} of {max} groups)")
            }
            DropReason::MaxStartsPerTick { max } => write!(f, "max_starts_per_tick ({max}) reached"),
            DropReason::UnknownGroup { group } => write!(f, "unknown group {group}"),
            DropReason::Unmanaged { group } => write!(f, "group {group} is unmanaged"),
            DropReason::AlreadyDraining { group } => write!(f, "group {group} is already draining"),
            DropReason::MaxShutdownsPerTick { max } => write!(f, "max_shutdowns_per_tick ({max}) reached"),
        }
    }
}

/// A decision the policy did not make: the runtime's failure kind (`PolicyError::kind()`, such as
/// `timeout` or `trap`) and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionFailure {
    pub kind: &'static str,
    pub message: String,
}

impl DecisionFailure {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        DecisionFailure { kind, message: message.into() }
    }
}

impl fmt::Display for DecisionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
