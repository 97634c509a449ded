//! `ebbtide scheduler` and `ebbtide up`: settings from flags, variables and the file, then launch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::config::{DEFAULT_POLICY_CONTENT, FileConfig, PolicyContent};
use super::pid_file::PidFile;
use crate::policy::candidate::{self, Candidate, Origin, Rejection, Stage};
use crate::policy::{PolicySource, ReadRules, ScalingLimits};
use crate::protocol::Address;
use crate::scheduler::config::MAX_WORKER_PREFETCH;
use crate::scheduler::{Allocate, CoreConfig, Tokens};
use crate::server::history::HistoryLimits;
use crate::server::swap::{SwapRequest, SwapTrigger};
use crate::server::{self, Handle, ServerConfig, ShadowSetup};

/// Settings of `ebbtide scheduler`; each also reads an `EBBTIDE_*` variable and the `[scheduler]` table.
#[derive(Args, Clone, Debug, Default)]
pub struct SchedulerArgs {
    /// Address to listen on for clients, workers and adapters [default: tcp://127.0.0.1:8516].
    pub address: Option<String>,
    /// TOML configuration (e.g. examples/native.toml); flags and variables override it.
    #[arg(long, env = "EBBTIDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// `allocate=even_load|capability; scaling=BUILTIN|PATH.wasm` [default: allocate=capability; scaling=capability].
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
    /// Tasks a worker may hold at once: the one it runs and the rest prefetched behind it, so that
    /// its next task is already there when one ends; idle workers are always served first. 1: one
    /// task at a time [default: 8].
    #[arg(long, env = "EBBTIDE_WORKER_PREFETCH")]
    pub worker_prefetch: Option<usize>,
    /// Host cap on starts per decision, whatever the policy asks [default: 1000].
    #[arg(long, env = "EBBTIDE_MAX_STARTS_PER_TICK")]
    pub max_starts_per_tick: Option<u32>,
    /// Host cap on shutdowns per decision [default: 1000].
    #[arg(long, env = "EBBTIDE_MAX_SHUTDOWNS_PER_TICK")]
    pub max_shutdowns_per_tick: Option<u32>,
    /// Shared secret: every hello must carry it, admin requests need `Authorization: Bearer TOKEN`.
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The token clients must present instead of --token (so a leaked client token cannot join workers).
    #[arg(long, env = "EBBTIDE_CLIENT_TOKEN", hide_env_values = true)]
    pub client_token: Option<String>,
    /// The token workers must present instead of --token.
    #[arg(long, env = "EBBTIDE_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// The token adapters must present instead of --token.
    #[arg(long, env = "EBBTIDE_ADAPTER_TOKEN", hide_env_values = true)]
    pub adapter_token: Option<String>,
    /// A bound from the [limits] table as KEY=VALUE, e.g. `--limit max_queued_tasks=100000`
    /// (repeatable; `EBBTIDE_LIMITS` takes them comma-separated). docs/security.md lists every key.
    #[arg(long = "limit", value_name = "KEY=VALUE", env = "EBBTIDE_LIMITS", value_delimiter = ',')]
    pub limits: Vec<String>,
    /// Append one JSON line per decision to this file.
    #[arg(long, env = "EBBTIDE_DECISION_LOG")]
    pub decision_log: Option<PathBuf>,
    /// Decisions the dashboard's history keeps (summaries) [default: 5000].
    #[arg(long, env = "EBBTIDE_HISTORY_DECISIONS")]
    pub history_decisions: Option<usize>,
    /// Memory for the full records (snapshot, commands) behind the dashboard's decision view, in MiB
    /// [default: 64]. The oldest go first; 0 keeps summaries only.
    #[arg(long, env = "EBBTIDE_HISTORY_DETAIL_MIB")]
    pub history_detail_mib: Option<usize>,
    /// Write the scheduler's process id to this file once it listens (removed when it stops), so that
    /// `kill -HUP $(cat FILE)` reloads the configuration of this process alone.
    #[arg(long, env = "EBBTIDE_PID_FILE")]
    pub pid_file: Option<PathBuf>,
    /// Folder for compiled policies, so a build seen before (also before a restart) skips the
    /// compiler [default: $XDG_CACHE_HOME/ebbtide/compiled or ~/.cache/ebbtide/compiled]. Bounded by
    /// `--limit compile_cache_mb=N`; `compile_cache_mb=0` turns it off.
    #[arg(long, env = "EBBTIDE_COMPILE_CACHE_DIR")]
    pub compile_cache_dir: Option<PathBuf>,
    /// Serve a new build from a quick baseline (Winch) compile while Cranelift compiles it, then
    /// move to the Cranelift build between two decisions [default: true].
    #[arg(long, env = "EBBTIDE_BASELINE_COMPILER", value_name = "true|false")]
    pub baseline_compiler: Option<bool>,
}

/// Everything resolved and checked, ready to launch.
pub struct Settings {
    pub address: Address,
    pub core: CoreConfig,
    pub policy: PolicySpec,
    pub decision_log: Option<PathBuf>,
    pub admin: Option<SocketAddr>,
    /// The admin token (the shared `token`).
    pub token: Option<String>,
    pub history: HistoryLimits,
    pub pid_file: Option<PathBuf>,
    /// Where compiled policies are kept (`None`: nowhere to keep them); bounded by `compile_cache_mb`.
    pub compile_cache_dir: Option<PathBuf>,
    /// Whether new builds serve from a baseline compile first.
    pub baseline_compiler: bool,
}

/// The policy as configured, not loaded yet.
#[derive(Clone)]
pub struct PolicySpec {
    pub source: PolicySource,
    pub params: String,
    pub limits: ScalingLimits,
    pub shadow: Option<ShadowSpec>,
}

#[derive(Clone)]
pub struct ShadowSpec {
    pub source: PolicySource,
    pub params: String,
    pub limits: ScalingLimits,
}

impl SchedulerArgs {
    /// Merges flags over the file over the defaults and checks every value.
    pub fn resolve(&self, file: &FileConfig, base: Option<&Path>) -> anyhow::Result<Settings> {
        let s = &file.scheduler;
        let address: Address = self
            .address
            .clone()
            .or(s.address.clone())
            .unwrap_or_else(|| "tcp://127.0.0.1:8516".into())
            .parse()
            .map_err(|e: String| anyhow::anyhow!("address: {e}"))?;
        let admin = self
            .admin_address
            .clone()
            .or(s.admin_address.clone())
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|_| anyhow::anyhow!("admin_address {a:?}: expected HOST:PORT, e.g. 127.0.0.1:8517"))
            })
            .transpose()?;
        let (policy, allocate) = self.policy(file, base)?;
        let token = self.token.clone().or(s.token.clone()).filter(|t| !t.is_empty());
        let role_token = |flag: &Option<String>, key: &Option<String>| {
            flag.clone().or(key.clone()).filter(|t| !t.is_empty()).or(token.clone())
        };
        let tokens = Tokens {
            client: role_token(&self.client_token, &s.client_token),
            worker: role_token(&self.worker_token, &s.worker_token),
            adapter: role_token(&self.adapter_token, &s.adapter_token),
        };
        let mut limits = file.limits.clone();
        limits.validate().map_err(|e| anyhow::anyhow!("[limits] {e}"))?;
        limits.set_pairs(self.limits.iter().map(String::as_str)).map_err(|e| anyhow::anyhow!("--limit: {e}"))?;

        let mut core = CoreConfig { allocate, tokens: tokens.clone(), limits, ..CoreConfig::default() };
        core.tick_ms = self.tick_ms(file)?;
        core.pressure_delay_ms = self.pressure_delay_ms.or(s.pressure_delay_ms).unwrap_or(core.pressure_delay_ms);
        core.start_timeout_ms = self.start_timeout_ms.or(s.start_timeout_ms).unwrap_or(core.start_timeout_ms);
        core.heartbeat_timeout_ms =
            self.heartbeat_timeout_ms.or(s.heartbeat_timeout_ms).unwrap_or(core.heartbeat_timeout_ms);
        core.max_starts_per_tick =
            self.max_starts_per_tick.or(s.max_starts_per_tick).unwrap_or(core.max_starts_per_tick);
        core.max_shutdowns_per_tick =
            self.max_shutdowns_per_tick.or(s.max_shutdowns_per_tick).unwrap_or(core.max_shutdowns_per_tick);
        core.worker_prefetch = self.worker_prefetch.or(s.worker_prefetch).unwrap_or(core.worker_prefetch);
        if !(1..=MAX_WORKER_PREFETCH).contains(&core.worker_prefetch) {
            bail!(
                "worker_prefetch: expected 1 (one task at a time) to {MAX_WORKER_PREFETCH}, got {}",
                core.worker_prefetch
            );
        }
        for (name, value, min) in [
            ("start_timeout_ms", core.start_timeout_ms, 100),
            ("heartbeat_timeout_ms", core.heartbeat_timeout_ms, 2000),
        ] {
            if value < min {
                bail!("{name}: expected at least {min}, got {value}");
            }
        }

        if (tokens.client.is_none() || tokens.worker.is_none() || tokens.adapter.is_none()) && !address.is_loopback() {
            tracing::warn!(
                "listening on {address} without a token: anyone who can reach it can submit tasks and join workers"
            );
        }
        if token.is_none() && admin.is_some_and(|a| !a.ip().is_loopback()) {
            tracing::warn!("admin HTTP on a non-loopback address without a token");
        }
        let decision_log = self.decision_log.clone().or(s.decision_log.clone());
        let defaults = HistoryLimits::default();
        let history = HistoryLimits {
            decisions: self.history_decisions.or(s.history_decisions).unwrap_or(defaults.decisions),
            detail_mib: self.history_detail_mib.or(s.history_detail_mib).unwrap_or(defaults.detail_mib),
        };
        history.validate().map_err(anyhow::Error::msg)?;
        let pid_file = self.pid_file.clone().or(s.pid_file.clone());

        let compile_cache_dir = self
            .compile_cache_dir
            .clone()
            .or(s.compile_cache_dir.clone())
            .or_else(crate::policy::compile_cache::default_dir);
        let baseline_compiler = self.baseline_compiler.or(s.baseline_compiler).unwrap_or(true);
        Ok(Settings {
            address,
            core,
            policy,
            decision_log,
            admin,
            token,
            history,
            compile_cache_dir,
            baseline_compiler,
            pid_file,
        })
    }

    /// What SIGHUP re-reads: the policy (source, params, limits, shadow), the allocation and the tick.
    pub fn policy(&self, file: &FileConfig, base: Option<&Path>) -> anyhow::Result<(PolicySpec, Allocate)> {
        let content_text = self
            .policy_content
            .clone()
            .or(file.scheduler.policy_content.clone())
            .unwrap_or_else(|| DEFAULT_POLICY_CONTENT.into());
        let content = PolicyContent::parse(&content_text, base).map_err(anyhow::Error::msg)?;
        let limits = file.scaling.limits.clone().unwrap_or_default();
        limits.validate().map_err(|e| anyhow::anyhow!("[scaling.limits] {e}"))?;
        let params = match &self.params {
            Some(json) => {
                candidate::json_object(json).map_err(|e| anyhow::anyhow!("--params: {e}"))?;
                json.clone()
            }
            None => serde_json::to_string(&file.scaling.params.clone().unwrap_or_default())?,
        };
        let shadow = file
            .scaling
            .shadow
            .as_ref()
            .map(|shadow| -> anyhow::Result<ShadowSpec> {
                let source = PolicySource::parse(&shadow.policy, base).context("[scaling.shadow] policy")?;
                let limits = shadow.limits.clone().unwrap_or_default();
                limits.validate().map_err(|e| anyhow::anyhow!("[scaling.shadow.limits] {e}"))?;
                let params = serde_json::to_string(&shadow.params.clone().unwrap_or_default())?;
                Ok(ShadowSpec { source, params, limits })
            })
            .transpose()?;
        Ok((PolicySpec { source: content.scaling, params, limits, shadow }, content.allocate))
    }

    pub fn tick_ms(&self, file: &FileConfig) -> anyhow::Result<u64> {
        let tick_ms = self.tick_ms.or(file.scheduler.tick_ms).unwrap_or(CoreConfig::default().tick_ms);
        if tick_ms < 10 {
            bail!("tick_ms: expected at least 10, got {tick_ms}");
        }
        Ok(tick_ms)
    }
}

impl PolicySpec {
    /// Loads the policy (through the whole swap pipeline) and the shadow. Compiles: call at start-up.
    pub fn load(self, rules: &ReadRules) -> anyhow::Result<(Candidate, Option<ShadowSetup>)> {
        let origin = Origin::Source(self.source.clone());
        let candidate = origin
            .read(rules)
            .and_then(|bytes| candidate::prepare(origin, &bytes, self.params, self.limits, None))
            .map_err(|r| anyhow::anyhow!("cannot load policy {}: {r}", self.source))?;
        let shadow = self
            .shadow
            .map(|s| -> anyhow::Result<ShadowSetup> {
                let policy = s
                    .source
                    .load(s.limits.call())
                    .with_context(|| format!("cannot load the shadow policy {}", s.source))?;
                candidate::check_params(&policy, &s.params).map_err(|r| anyhow::anyhow!("[scaling.shadow] {r}"))?;
                Ok(ShadowSetup { policy, params: s.params, source: s.source.to_string() })
            })
            .transpose()?;
        Ok((candidate, shadow))
    }
}

/// A launched scheduler: the handle and where it listens.
pub struct Launched {
    pub handle: Handle,
    pub address: Address,
    pub admin: Option<SocketAddr>,
    /// Removed when the launched scheduler is dropped.
    pub pid_file: Option<PidFile>,
}

/// What SIGHUP re-reads: the command's flags and its configuration file.
pub type Reload = (SchedulerArgs, Option<PathBuf>);

/// A scheduler ready to launch: its settings, and its policy loaded through the whole swap pipeline.
pub struct Ready {
    settings: Settings,
    policy: Candidate,
    shadow: Option<ShadowSetup>,
}

impl Ready {
    /// The peers' tokens, which the adapters started beside the scheduler present.
    pub fn tokens(&self) -> &Tokens {
        &self.settings.core.tokens
    }
}

impl Settings {
    /// Configures the policy runtime (compile timeout, compile cache, baseline compiler) and loads
    /// the policy, compiling it on first sight. Call it before the async runtime starts: a guest's
    /// output during the dry run goes through wasmtime-wasi, which must not block inside a runtime,
    /// and on the main thread what the load keeps stays in the main heap instead of a malloc arena
    /// of a thread of its own (0.75 MiB of an idle scheduler's memory).
    pub fn load(self) -> anyhow::Result<Ready> {
        let limits = &self.core.limits;
        let rules = ReadRules { max_bytes: limits.max_policy_bytes, dirs: limits.policy_dirs.clone() };
        crate::policy::component::set_compile_timeout(std::time::Duration::from_millis(limits.compile_timeout_ms));
        crate::policy::compile_cache::configure(self.compile_cache_dir.clone(), limits.compile_cache_mb);
        crate::policy::engine::set_baseline_compiler(self.baseline_compiler);
        match crate::policy::compile_cache::settings() {
            Some(c) => tracing::info!("compile cache: {} (at most {} MiB)", c.dir.display(), c.max_bytes >> 20),
            None => tracing::info!("compile cache: off (compile_cache_mb=0, or no cache folder)"),
        }
        let (policy, shadow) = self.policy.clone().load(&rules)?;
        Ok(Ready { settings: self, policy, shadow })
    }
}

/// Starts the scheduler (and admin HTTP) on the current runtime and prints where it listens; with
/// `reload`, SIGHUP re-reads the configuration (its handler is in place before the print).
pub async fn launch(ready: Ready, reload: Option<Reload>) -> anyhow::Result<Launched> {
    let Ready { settings, policy, shadow } = ready;
    let host = settings.address.host.clone();
    let admin_limits = settings.core.limits.clone();
    let policy_line = describe_policy(&policy, settings.core.allocate);
    let config = ServerConfig {
        address: settings.address,
        core: settings.core,
        policy,
        shadow,
        decision_log: settings.decision_log,
        history: settings.history,
    };
    let handle = server::start(config).await?;
    let address = Address { host, port: handle.address.port() };
    let admin = match settings.admin {
        Some(a) => Some(crate::admin::serve(a, handle.clone(), settings.token, &admin_limits).await?),
        None => None,
    };
    if let Some((args, config)) = reload {
        reload_on_hangup(handle.clone(), args, config);
    }
    let pid_file = settings.pid_file.as_deref().map(PidFile::write).transpose()?;
    match admin {
        Some(a) => println!("ebbtide scheduler listening on {address} (admin http://{a})"),
        None => println!("ebbtide scheduler listening on {address}"),
    }
    println!("  {policy_line}");
    if let Some(a) = admin {
        println!("  dashboard http://{a}/, status http://{a}/status, metrics http://{a}/metrics");
    }
    if let Some(p) = &pid_file {
        println!(
            "  pid file {} (kill -HUP $(cat {}) re-reads the configuration)",
            p.path().display(),
            p.path().display()
        );
    }
    Ok(Launched { handle, address, admin, pid_file })
}

/// The start-up line that says which policy decides: name, version, source, digest, params.
fn describe_policy(policy: &Candidate, allocate: Allocate) -> String {
    let p = &policy.policy;
    format!(
        "policy {} {} ({}, sha256 {}), params {}, allocate={}, fallback {}",
        p.info.name,
        p.info.version,
        policy.origin.label(),
        &p.digest[..12],
        policy.params,
        allocate.as_str(),
        policy.limits.fallback
    )
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_requested() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Re-reads the configuration on every SIGHUP: the policy goes through the swap pipeline (and stays
/// if anything is wrong), the tick and allocation apply at once. Other keys need a restart.
/// The handler is in place when this returns (a SIGHUP before it would end the process).
fn reload_on_hangup(handle: Handle, args: SchedulerArgs, config: Option<PathBuf>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return tracing::warn!("cannot listen for SIGHUP; swap with POST /policy instead");
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: re-reading the configuration");
            let read = || -> anyhow::Result<(PolicySpec, Allocate, u64)> {
                let file = match &config {
                    Some(path) => FileConfig::read(path)?,
                    None => FileConfig::default(),
                };
                let (spec, allocate) = args.policy(&file, config.as_deref().and_then(Path::parent))?;
                Ok((spec, allocate, args.tick_ms(&file)?))
            };
            let empty = SwapRequest { trigger: SwapTrigger::Signal, origin: None, params: None, limits: None };
            match read() {
                Ok((spec, allocate, tick_ms)) => {
                    if spec.shadow.is_some() {
                        tracing::info!("SIGHUP does not change [scaling.shadow]; restart to change it");
                    }
                    handle.reconfigure(tick_ms, allocate);
                    let request = SwapRequest {
                        origin: Some(Origin::Source(spec.source)),
                        params: Some(spec.params),
                        limits: Some(spec.limits),
                        ..empty
                    };
                    let _ = handle.swap(request);
                }
                Err(e) => {
                    tracing::warn!("SIGHUP: the configuration is not usable; nothing changes: {e:#}");
                    let source = config.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                    handle.reject(&empty, source, Rejection::new(Stage::Read, format!("{e:#}")));
                }
            }
        }
    });
}
