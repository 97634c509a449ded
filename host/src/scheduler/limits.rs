//! The `[limits]` table: every resource a peer, a policy or an admin request can make the scheduler
//! hold has a bound here, with a default fit for a shared server. Hitting one gives a refusal that
//! names the setting (docs/security.md lists them all).
//!
//! Set in the file (`[limits]`), with `--limit KEY=VALUE` (repeatable), or with
//! `EBBTIDE_LIMITS="KEY=VALUE,KEY=VALUE"`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    // Connections and framing.
    /// Open protocol connections at once; more are closed at accept with a logged reason.
    pub max_connections: usize,
    /// The largest frame before a hello is accepted: a hello is tiny, so an unauthenticated peer
    /// cannot make the scheduler reserve more than this.
    pub hello_frame_bytes: usize,
    /// The largest frame after the hello (a task payload is the only large field).
    pub max_frame_bytes: usize,
    /// A new connection must say hello within this time.
    pub hello_timeout_ms: u64,
    /// Once a frame has begun, the rest of it must arrive within this time.
    pub frame_timeout_ms: u64,
    /// A peer that accepts none of our bytes for this long is closed.
    pub write_timeout_ms: u64,
    /// Bytes queued for one peer that it has not read yet; past it the peer is closed.
    pub max_outbox_bytes: usize,
    /// Messages read from peers and not yet handled; a peer that floods waits (TCP backpressure).
    pub event_queue: usize,
    /// Messages a peer may send that break the protocol's rules (a result for a task it does not
    /// hold, say) before it is closed. Each is dropped and counted.
    pub max_violations: u32,

    // Tasks.
    /// Tasks queued and running at once; past it a submission fails naming this setting.
    pub max_queued_tasks: usize,
    /// Payload bytes of the tasks held at once (queued or running).
    pub max_queued_bytes: usize,
    /// Capabilities one task or worker may name.
    pub max_capabilities: usize,
    /// Length of a capability name or task function name, in bytes.
    pub max_name_bytes: usize,
    /// Distinct capability sets known at once (queues, workers, groups).
    pub max_capability_sets: usize,
    /// A task whose worker died this many times fails, naming the attempts.
    pub max_task_attempts: u32,

    // Policies.
    /// The largest `.wasm` file or upload a swap reads.
    pub max_policy_bytes: usize,
    /// A policy that takes longer than this to compile is rejected at the compile stage.
    pub compile_timeout_ms: u64,
    /// Swap requests waiting for the swap thread; more are refused naming this setting.
    pub swap_queue: usize,
    /// Disk space for compiled policies (`compile_cache_dir`), in MiB; the least recently used
    /// entries are removed past it. 0 turns the disk cache off.
    pub compile_cache_mb: u64,
    /// When not empty, the only folders a policy path may be read from (through a swap request).
    pub policy_dirs: Vec<PathBuf>,

    // Admin HTTP and the decision log.
    /// An admin request's headers must arrive within this time.
    pub admin_header_timeout_ms: u64,
    /// An admin request's body must arrive within this time.
    pub admin_body_timeout_ms: u64,
    /// Open admin HTTP connections at once; more are closed at accept.
    pub admin_max_connections: usize,
    /// The decision log is rotated when it reaches this size (0: never).
    pub decision_log_max_mb: u64,
    /// Rotated decision logs kept (`LOG.1` newest ... `LOG.N`).
    pub decision_log_keep: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            hello_frame_bytes: 64 << 10,
            max_frame_bytes: crate::protocol::framing::MAX_FRAME_BYTES,
            hello_timeout_ms: 10_000,
            frame_timeout_ms: 30_000,
            write_timeout_ms: 30_000,
            max_outbox_bytes: 64 << 20,
            event_queue: 4096,
            max_violations: 16,
            max_queued_tasks: 1_000_000,
            max_queued_bytes: 1 << 30,
            max_capabilities: 32,
            max_name_bytes: 128,
            max_capability_sets: 4096,
            max_task_attempts: 3,
            max_policy_bytes: 32 << 20,
            compile_timeout_ms: 120_000,
            swap_queue: 8,
            compile_cache_mb: 256,
            policy_dirs: Vec::new(),
            admin_header_timeout_ms: 10_000,
            admin_body_timeout_ms: 30_000,
            admin_max_connections: 256,
            decision_log_max_mb: 256,
            decision_log_keep: 3,
        }
    }
}

impl Limits {
    /// Reads `KEY=VALUE` pairs over `self`; the error names the key and lists the accepted ones.
    pub fn set_pairs<'a>(&mut self, pairs: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        let mut table = toml::Table::try_from(&*self).map_err(|e| e.to_string())?;
        for pair in pairs.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("limit {pair:?}: expected KEY=VALUE, e.g. max_connections=1024"));
            };
            let (key, value) = (key.trim(), value.trim());
            if !table.contains_key(key) {
                return Err(format!("unknown limit {key:?}; accepted: {}", Limits::keys().join(", ")));
            }
            let parsed = match key {
                "policy_dirs" => toml::Value::Array(
                    value.split(':').filter(|d| !d.is_empty()).map(|d| toml::Value::String(d.into())).collect(),
                ),
                _ => toml::Value::Integer(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| format!("limit {key}: expected a whole number ≥ 0, got {value:?}"))?,
                ),
            };
            table.insert(key.to_owned(), parsed);
        }
        let limits: Limits = table.try_into().map_err(|e: toml::de::Error| format!("limits: {}", e.message()))?;
        limits.validate()?;
        *self = limits;
        Ok(())
    }

    /// Every key, for messages.
    pub fn keys() -> Vec<String> {
        toml::Table::try_from(Limits::default()).map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }

    /// Checks the values that must not be zero; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let at_least_one = [
            ("max_connections", self.max_connections as u64),
            ("hello_frame_bytes", self.hello_frame_bytes as u64),
            ("max_frame_bytes", self.max_frame_bytes as u64),
            ("hello_timeout_ms", self.hello_timeout_ms),
            ("frame_timeout_ms", self.frame_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
            ("max_outbox_bytes", self.max_outbox_bytes as u64),
            ("event_queue", self.event_queue as u64),
            ("max_violations", u64::from(self.max_violations)),
            ("max_queued_tasks", self.max_queued_tasks as u64),
            ("max_queued_bytes", self.max_queued_bytes as u64),
            ("max_name_bytes", self.max_name_bytes as u64),
            ("max_capability_sets", self.max_capability_sets as u64),
            ("max_task_attempts", u64::from(self.max_task_attempts)),
            ("max_policy_bytes", self.max_policy_bytes as u64),
            ("compile_timeout_ms", self.compile_timeout_ms),
            ("swap_queue", self.swap_queue as u64),
            ("admin_header_timeout_ms", self.admin_header_timeout_ms),
            ("admin_body_timeout_ms", self.admin_body_timeout_ms),
            ("admin_max_connections", self.admin_max_connections as u64),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limit {key}: expected a whole number ≥ 1, got 0"));
        }
        let frame_cap = crate::protocol::framing::MAX_FRAME_BYTES;
        if self.max_frame_bytes > frame_cap || self.hello_frame_bytes > self.max_frame_bytes {
            return Err(format!(
                "limit max_frame_bytes: expected hello_frame_bytes ≤ max_frame_bytes ≤ {frame_cap}, got {} and {}",
                self.hello_frame_bytes, self.max_frame_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_override_defaults_and_bad_keys_list_the_accepted_ones() {
        let mut limits = Limits::default();
        limits.set_pairs(["max_connections=10", " max_task_attempts = 5 "]).unwrap();
        assert_eq!((limits.max_connections, limits.max_task_attempts), (10, 5));
        let e = limits.set_pairs(["max_conections=10"]).unwrap_err();
        assert!(e.contains("\"max_conections\"") && e.contains("max_connections"), "{e}");
        let e = limits.set_pairs(["max_connections=lots"]).unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = limits.set_pairs(["max_connections=0"]).unwrap_err();
        assert!(e.contains("max_connections"), "{e}");
        limits.set_pairs(["policy_dirs=/srv/policies:/opt/p"]).unwrap();
        assert_eq!(limits.policy_dirs, vec![PathBuf::from("/srv/policies"), PathBuf::from("/opt/p")]);
    }
}
