//! The command line: one binary, `ebbtide`, with a subcommand per job.

pub mod config;
mod demo;
mod new;
mod peers;
mod pid_file;
pub mod policy;
mod replay;
pub mod scheduler;
mod simulate;
mod swap;
mod top;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ebbtide",
    version,
    about = "A task scheduler for elastic worker fleets, scaled by WebAssembly policies",
    long_about = "ebbtide schedules tasks on elastic worker fleets. On every tick, and at once when demand \
spikes, it asks a scaling policy (a WebAssembly component) what to start and stop.",
    after_help = "Examples:\n  ebbtide demo\n  ebbtide up examples/native.toml\n  ebbtide scheduler tcp://127.0.0.1:8516 --admin 127.0.0.1:8517\n  \
ebbtide adapter native tcp://127.0.0.1:8516 --max-groups 8\n  ebbtide submit tcp://127.0.0.1:8516 --function sleep --payload 500 --count 64 --wait\n  \
ebbtide policy list"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "EBBTIDE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter, as in RUST_LOG (e.g. `warn`, `ebbtide=debug`) [default: info for the scheduler,
    /// `up` and adapters, whose operators want to see swaps, reloads and lost workers; warn otherwise].
    #[arg(long, global = true, env = "EBBTIDE_LOG")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the scheduler: tasks, workers, adapters and the scaling loop.
    #[command(after_help = "Examples:\n  ebbtide scheduler tcp://127.0.0.1:8516\n  \
ebbtide scheduler tcp://0.0.0.0:8516 --token s3cret --admin 127.0.0.1:8517 --decision-log decisions.jsonl\n  \
ebbtide scheduler --config ebbtide.toml --policy-content 'allocate=capability; scaling=capability'")]
    Scheduler(scheduler::SchedulerArgs),
    /// The scheduler plus the adapters of a TOML file, in one process (like `scaler config.toml`).
    #[command(
        after_help = "Example:\n  ebbtide up examples/native.toml\n\nThe file's [scheduler] keys can be overridden with flags or EBBTIDE_* variables."
    )]
    Up {
        /// The configuration (see examples/).
        config: PathBuf,
        #[command(flatten)]
        scheduler: scheduler::SchedulerArgs,
    },
    /// A burst scaled up and back down on local workers, shown live (about 10 s).
    #[command(
        after_help = "Examples:\n  ebbtide demo\n  ebbtide demo --stay     # keep the dashboard up after the summary"
    )]
    Demo(demo::DemoArgs),
    /// Start and stop workers for a scheduler.
    #[command(subcommand)]
    Adapter(peers::AdapterCommand),
    /// Run tasks for a scheduler (normally started by an adapter).
    Worker(peers::WorkerArgs),
    /// Send tasks to a scheduler and, with --wait, report how they went.
    Submit(peers::SubmitArgs),
    /// Re-run every decision of a decision log: with the build that made each one, a determinism
    /// check; with --policy or --params, how a candidate would have decided instead.
    #[command(
        after_help = "Examples:\n  ebbtide replay decisions.jsonl\n  ebbtide replay decisions.jsonl --build old/my_policy.wasm\n  ebbtide replay decisions.jsonl --policy ./candidate.wasm --params '{\"target\": 4}'\n\n\
Each line is replayed with the build that made it, found by sha256: at the source the line names, or\n\
among the --build files. A line whose build is not available is reported (SKIPPED) and not replayed.\n\
The last lines sum up: `replayed N decisions: E equal, D differ`, the starts and shutdowns added and\n\
removed, and the skipped lines.\n\n\
Exit status: 0 when every line was replayed and equal (or, with --policy or --params, when the\n\
comparison ran); 1 when a line differed or was skipped, or the log cannot be read."
    )]
    Replay(replay::ReplayArgs),
    /// Try policies against a workload on a virtual clock: the scheduler's own core and policy
    /// runtime with simulated adapters and workers; figures, charts and an HTML report to compare.
    #[command(
        after_help = "Examples:\n  ebbtide simulate --workload burst --policy vanilla --policy capability --out report/\n  ebbtide simulate --workload diurnal --duration 24h --policy vanilla\n  ebbtide simulate --workload trace.csv --config ebbtide.toml --policy ./mine.wasm:'{\"target\": 4}'\n  ebbtide simulate --workload burst --policy vanilla --adapter 'pool max_groups=8 workers=4 latency=500..2000 cost=1.5'\n\nSame inputs and --seed give a byte-identical summary.json."
    )]
    Simulate(simulate::SimulateArgs),
    /// Watch a running scheduler in the terminal: fleet, queue, policy and decisions, live.
    #[command(
        after_help = "Examples:\n  ebbtide top 127.0.0.1:8517\n  ebbtide top 10.0.0.5:8517 --token s3cret --interval-ms 500\n  ebbtide top 127.0.0.1:8517 --once      # one frame, for scripts\n\nThe same view in a browser: http://ADMIN_ADDRESS/ (see docs/dashboard.md)."
    )]
    Top(top::TopArgs),
    /// Author, inspect, test and benchmark scaling policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

impl Cli {
    /// The command line, or exit with a message that teaches: a bad value from an `EBBTIDE_*`
    /// variable is named as that variable, and a number that does not parse says what is expected.
    pub fn parse_or_exit() -> Cli {
        Cli::try_parse().unwrap_or_else(|e| match explain(&e) {
            Some(message) => {
                eprintln!("error: {message}");
                std::process::exit(2)
            }
            None => e.exit(),
        })
    }

    /// The log filter: `--log`, or the command's default.
    pub fn log_filter(&self) -> &str {
        match (&self.log, &self.command) {
            (Some(filter), _) => filter,
            (None, Command::Scheduler(_) | Command::Up { .. } | Command::Adapter(_)) => "info",
            (None, _) => "warn",
        }
    }
}

/// A clearer message for a value that did not parse, when there is one to give.
fn explain(e: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::ValueValidation && e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) =
        (e.get(ContextKind::InvalidArg), e.get(ContextKind::InvalidValue))
    else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let reason = match std::error::Error::source(e).map(|s| s.to_string()) {
        Some(s) if s.contains("invalid digit") || s.contains("empty string") => "expected a whole number".to_owned(),
        Some(s) if s.contains("too large") => "too large for this setting".to_owned(),
        Some(s) if s.contains("invalid float") => "expected a number".to_owned(),
        Some(s) => s,
        None => return None,
    };
    let on_command_line = std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
    let from_variable =
        env_of(&Cli::command(), long).filter(|env| !on_command_line && std::env::var(env).is_ok_and(|v| v == *value));
    Some(match from_variable {
        Some(env) => format!("{env}={value:?}: {reason} (the variable sets --{long}; see --help)"),
        None => format!("--{long} {value:?}: {reason} (see --help)"),
    })
}

/// The environment variable behind `--LONG`, in this command or any subcommand.
fn env_of(command: &clap::Command, long: &str) -> Option<String> {
    let here = command.get_arguments().find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env());
    here.map(|env| env.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(|sub| env_of(sub, long)))
}

/// What a command reports back to `main`: success, or a failure already explained to the user.
pub enum Outcome {
    Success,
    /// The command ran and found a problem (a rejected policy, a failing vector); exit 1.
    Failed,
}

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Scheduler(args) => {
            let file = match &args.config {
                Some(path) => config::FileConfig::read(path)?,
                None => config::FileConfig::default(),
            };
            let base = args.config.as_deref().and_then(|p| p.parent()).map(|p| p.to_path_buf());
            let ready = args.resolve(&file, base.as_deref())?.load()?;
            runtime()?.block_on(async {
                // Held until the process stops: it owns the pid file.
                let _launched = scheduler::launch(ready, Some((args.clone(), args.config.clone()))).await?;
                scheduler::stop_requested().await;
                anyhow::Ok(())
            })?;
            Ok(Outcome::Success)
        }
        Command::Up { config, scheduler } => up::run(&config, scheduler).map(|_| Outcome::Success),
        Command::Demo(args) => demo::run(args).map(|_| Outcome::Success),
        Command::Adapter(cmd) => peers::adapter(cmd),
        Command::Worker(args) => peers::worker(args),
        Command::Submit(args) => peers::submit(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Replay(args) => replay::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Top(args) => top::run(args).map(|_| Outcome::Success),
    }
}

/// The runtime for the networked commands: one thread. Their work is many small messages; on one
/// thread, a task that wakes another costs a function call, not a futex and a context switch, and an
/// idle process holds one thread's stack. Policies, swaps and the decision log have threads of their own.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
