//! The scheduler's own settings (the `[scheduler]` table, less the addresses the shell binds).

use std::time::Duration;

/// How tasks are matched to workers (`allocate=` in `policy_content`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocate {
    /// The least-loaded worker, whatever its capabilities.
    EvenLoad,
    /// Only workers whose capability names include all of the task's.
    #[default]
    Capability,
}

impl Allocate {
    pub const NAMES: &'static str = "even_load, capability";

    /// The name `allocate=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Allocate::EvenLoad => "even_load",
            Allocate::Capability => "capability",
        }
    }

    pub fn parse(s: &str) -> Result<Allocate, String> {
        match s {
            "even_load" => Ok(Allocate::EvenLoad),
            "capability" => Ok(Allocate::Capability),
            other => Err(format!("unknown allocate value {other:?}; accepted: {}", Allocate::NAMES)),
        }
    }
}

/// The default `worker_prefetch`: enough that a worker of short tasks never waits for the scheduler
/// between two tasks (see the throughput figures in the README), few enough that a scale-up finds
/// little work already promised to busy workers (and that little is taken back, see
/// [`super::holding`]).
pub const DEFAULT_WORKER_PREFETCH: usize = 8;
/// The largest `worker_prefetch` accepted.
pub const MAX_WORKER_PREFETCH: usize = 1024;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub allocate: Allocate,
    /// A decision every tick.
    pub tick_ms: u64,
    /// How long a pressure trigger waits to gather the rest of a burst before deciding.
    pub pressure_delay_ms: u64,
    /// A start the adapter has not confirmed by then is dropped (H1).
    pub start_timeout_ms: u64,
    /// A worker or adapter silent for this long is taken as dead.
    pub heartbeat_timeout_ms: u64,
    /// Tasks a worker may hold at once: the one it runs and up to `worker_prefetch - 1` waiting
    /// behind it, so that its next task is already there when one ends (1: one task at a time).
    /// Idle workers are always served first; see [`super::holding`].
    pub worker_prefetch: usize,
    /// Host-level caps on each decision (H4), whatever the policy asks.
    pub max_starts_per_tick: u32,
    pub max_shutdowns_per_tick: u32,
    /// The token each role's hello must carry, when set.
    pub tokens: Tokens,
    /// Bounds on what peers can make the scheduler hold.
    pub limits: super::Limits,
    /// The Unix time in milliseconds at clock value 0, for the wall-clock times in records.
    pub clock_origin_unix_ms: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            allocate: Allocate::Capability,
            tick_ms: 1000,
            pressure_delay_ms: 5,
            start_timeout_ms: 30_000,
            heartbeat_timeout_ms: 10_000,
            worker_prefetch: DEFAULT_WORKER_PREFETCH,
            max_starts_per_tick: 1000,
            max_shutdowns_per_tick: 1000,
            tokens: Tokens::default(),
            limits: super::Limits::default(),
            clock_origin_unix_ms: 0,
        }
    }
}

/// The secret each role must present in its hello (`None`: that role needs none). Separate tokens
/// mean a leaked client token cannot register workers or adapters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub client: Option<String>,
    pub worker: Option<String>,
    pub adapter: Option<String>,
}

impl Tokens {
    /// One token for every role.
    pub fn shared(token: Option<String>) -> Tokens {
        Tokens { client: token.clone(), worker: token.clone(), adapter: token }
    }

    pub fn for_role(&self, role: crate::protocol::Role) -> Option<&str> {
        use crate::protocol::Role;
        match role {
            Role::Client => self.client.as_deref(),
            Role::Worker => self.worker.as_deref(),
            Role::Adapter => self.adapter.as_deref(),
        }
    }
}

/// How often peers send heartbeats; the timeout above allows several to be missed.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
