//! `ebbtide scheduler` and `ebbtide up`: settings from flags, variables and the file, then launch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use super::config::{DEFAULT_POLICY_CONTENT, FileConfig, PolicyContent};
use crate::policy::{CallLimits, LoadedPolicy};
use crate::protocol::Address;
use crate::scheduler::CoreConfig;
use crate::server::{self, Handle, ServerConfig};

/// Settings of `ebbtide scheduler`; each also reads an `EBBTIDE_*` variable and the `[scheduler]` table.
#[derive(Args, Debug, Default)]
pub struct SchedulerArgs {
    /// Address to listen on for clients, workers and adapters [default: tcp://127.0.0.1:8516].
    pub address: Option<String>,
    /// TOML configuration (DESIGN.md section 5); flags and variables override it.
    #[arg(long, env = "EBBTIDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// `allocate=even_load|capability; scaling=BUILTIN|PATH.wasm` [default: allocate=capability; scaling=vanilla].
    #[arg(long, env = "EBBTIDE_POLICY_CONTENT")]
    pub policy_content: Option<String>,
    /// Admin HTTP address (HOST:PORT) for /status and /metrics; off unless given.
    #[arg(long = "admin", env = "EBBTIDE_ADMIN_ADDRESS")]
    pub admin_address: Option<String>,
    /// Policy parameters as a JSON object, e.g. '{"upper_task_ratio": 8}'.
    #[arg(long, env = "EBBTIDE_PARAMS")]
    pub params: Option<String>,
    /// Milliseconds between periodic decisions [default: 1000].
    #[arg(long, env = "EBBTIDE_TICK_MS")]
    pub tick_ms: Option<u64>,
    /// How long a pressure trigger gathers a burst before deciding [default: 5].
    #[arg(long, env = "EBBTIDE_PRESSURE_DELAY_MS")]
    pub pressure_delay_ms: Option<u64>,
    /// A start the adapter has not confirmed by then is dropped [default: 30000].
    #[arg(long, env = "EBBTIDE_START_TIMEOUT_MS")]
    pub start_timeout_ms: Option<u64>,
    /// A worker or adapter silent this long is taken as dead [default: 10000].
    #[arg(long, env = "EBBTIDE_HEARTBEAT_TIMEOUT_MS")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// Host cap on starts per decision, whatever the policy asks [default: 1000].
    #[arg(long, env = "EBBTIDE_MAX_STARTS_PER_TICK")]
    pub max_starts_per_tick: Option<u32>,
    /// Host cap on shutdowns per decision [default: 1000].
    #[arg(long, env = "EBBTIDE_MAX_SHUTDOWNS_PER_TICK")]
    pub max_shutdowns_per_tick: Option<u32>,
    /// Shared secret: every hello must carry it, admin requests need `Authorization: Bearer TOKEN`.
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Append one JSON line per decision to this file.
    #[arg(long, env = "EBBTIDE_DECISION_LOG")]
    pub decision_log: Option<PathBuf>,
}

/// Everything resolved and checked, ready to launch.
pub struct Settings {
    pub server: ServerConfig,
    pub admin: Option<SocketAddr>,
    pub token: Option<String>,
}

impl SchedulerArgs {
    /// Merges flags over the file over the defaults, loads the policy and validates its params.
    pub fn resolve(self, file: &FileConfig, base: Option<&Path>) -> anyhow::Result<Settings> {
        let s = &file.scheduler;
        let address: Address = self
            .address
            .or(s.address.clone())
            .unwrap_or_else(|| "tcp://127.0.0.1:8516".into())
            .parse()
            .map_err(|e: String| anyhow::anyhow!("address: {e}"))?;
        let admin = self
            .admin_address
            .or(s.admin_address.clone())
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|_| anyhow::anyhow!("admin_address {a:?}: expected HOST:PORT, e.g. 127.0.0.1:8517"))
            })
            .transpose()?;
        let content_text =
            self.policy_content.or(s.policy_content.clone()).unwrap_or_else(|| DEFAULT_POLICY_CONTENT.into());
        let content = PolicyContent::parse(&content_text, base).map_err(anyhow::Error::msg)?;
        let token = self.token.or(s.token.clone()).filter(|t| !t.is_empty());

        let mut core = CoreConfig { allocate: content.allocate, token: token.clone(), ..CoreConfig::default() };
        core.tick_ms = self.tick_ms.or(s.tick_ms).unwrap_or(core.tick_ms);
        core.pressure_delay_ms = self.pressure_delay_ms.or(s.pressure_delay_ms).unwrap_or(core.pressure_delay_ms);
        core.start_timeout_ms = self.start_timeout_ms.or(s.start_timeout_ms).unwrap_or(core.start_timeout_ms);
        core.heartbeat_timeout_ms =
            self.heartbeat_timeout_ms.or(s.heartbeat_timeout_ms).unwrap_or(core.heartbeat_timeout_ms);
        core.max_starts_per_tick =
            self.max_starts_per_tick.or(s.max_starts_per_tick).unwrap_or(core.max_starts_per_tick);
        core.max_shutdowns_per_tick =
            self.max_shutdowns_per_tick.or(s.max_shutdowns_per_tick).unwrap_or(core.max_shutdowns_per_tick);
        for (name, value, min) in [
            ("tick_ms", core.tick_ms, 10),
            ("start_timeout_ms", core.start_timeout_ms, 100),
            ("heartbeat_timeout_ms", core.heartbeat_timeout_ms, 2000),
        ] {
            if value < min {
                bail!("{name}: expected at least {min}, got {value}");
            }
        }

        let limits = file.scaling.limits.unwrap_or_default();
        limits.validate().map_err(|e| anyhow::anyhow!("[scaling.limits] {e}"))?;
        let params = match (self.params, &file.scaling.params) {
            (Some(json), _) => {
                let value: serde_json::Value =
                    serde_json::from_str(&json).with_context(|| format!("--params {json:?} is not JSON"))?;
                if !value.is_object() {
                    bail!("--params: expected a JSON object such as '{{\"upper_task_ratio\": 8}}', got {json}");
                }
                json
            }
            (None, Some(table)) => serde_json::to_string(table)?,
            (None, None) => "{}".into(),
        };
        let policy = load_policy(&content, &params, limits)?;

        if token.is_none() && !address.is_loopback() {
            tracing::warn!(
                "listening on {address} without a token: anyone who can reach it can submit tasks and join workers"
            );
        }
        if token.is_none() && admin.is_some_and(|a| !a.ip().is_loopback()) {
            tracing::warn!("admin HTTP on a non-loopback address without a token");
        }
        let decision_log = self.decision_log.or(s.decision_log.clone());
        let server =
            ServerConfig { address, core, policy_source: content.scaling.to_string(), policy, params, decision_log };
        Ok(Settings { server, admin, token })
    }
}

fn load_policy(content: &PolicyContent, params: &str, limits: CallLimits) -> anyhow::Result<Arc<LoadedPolicy>> {
    let policy = content.scaling.load(limits).with_context(|| format!("cannot load policy {}", content.scaling))?;
    match policy.validate(params) {
        Ok(Ok(())) => Ok(policy),
        Ok(Err(errors)) => bail!("invalid params for policy {}: {}", policy.info.name, errors.join("; ")),
        Err(e) => bail!("policy {} failed to validate its params: {e}", policy.info.name),
    }
}

/// A launched scheduler: the handle and where it listens.
pub struct Launched {
    pub handle: Handle,
    pub address: Address,
    pub admin: Option<SocketAddr>,
}

/// Starts the scheduler (and admin HTTP) on the current runtime and prints where it listens.
pub async fn launch(settings: Settings) -> anyhow::Result<Launched> {
    let host = settings.server.address.host.clone();
    let handle = server::start(settings.server).await?;
    let address = Address { host, port: handle.address.port() };
    let admin = match settings.admin {
        Some(a) => Some(crate::admin::serve(a, handle.clone(), settings.token).await?),
        None => None,
    };
    match admin {
        Some(a) => println!("ebbtide scheduler listening on {address} (admin http://{a})"),
        None => println!("ebbtide scheduler listening on {address}"),
    }
    Ok(Launched { handle, address, admin })
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_requested() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
