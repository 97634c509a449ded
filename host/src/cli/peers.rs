//! `ebbtide worker`, `ebbtide adapter native` and `ebbtide submit`: the scheduler's peers.

use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::Outcome;
use super::config::parse_capabilities;
use crate::adapter::native::{self, NativeOptions};
use crate::client::{Submission, SubmitOptions, Summary};
use crate::protocol::Address;
use crate::worker::{self, WorkerOptions};

fn address(s: &str) -> Result<Address, String> {
    s.parse()
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  ebbtide worker tcp://127.0.0.1:8516\n  ebbtide worker tcp://127.0.0.1:8516 --capabilities gpu=1,linux"
)]
pub struct WorkerArgs {
    /// The scheduler, e.g. tcp://127.0.0.1:8516.
    #[arg(value_parser = address)]
    pub address: Address,
    /// What this worker offers, e.g. gpu=1,linux (a name alone: present, no quantity).
    #[arg(long, value_parser = parse_capabilities, default_value = "")]
    pub capabilities: ebbtide_sdk::CapMap,
    /// The adapter group this worker belongs to (set by adapters; leave out for an unmanaged worker).
    #[arg(long)]
    pub group: Option<u64>,
    /// Allow the `exec` function (runs its payload with sh -c).
    #[arg(long)]
    pub allow_exec: bool,
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
}

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Start and stop local worker processes in groups (`ebbtide worker`, or any --command).
    #[command(after_help = "Examples:\n  ebbtide adapter native tcp://127.0.0.1:8516 --max-groups 8\n  \
ebbtide adapter native tcp://127.0.0.1:8516 --id gpu-box --capabilities gpu=1 --workers-per-group 2\n  \
ebbtide adapter native tcp://127.0.0.1:8516 --command \"python3 -m ebbtide.worker\"   # Python workers")]
    Native(NativeArgs),
}

#[derive(Args)]
pub struct NativeArgs {
    #[arg(value_parser = address)]
    pub address: Address,
    /// The adapter id policies see; unique per scheduler.
    #[arg(long, default_value = "native")]
    pub id: String,
    /// At most this many groups at once (0: unbounded).
    #[arg(long, default_value_t = 8)]
    pub max_groups: u32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers_per_group: u32,
    /// What this adapter's workers offer, e.g. gpu=1,linux; leave out to offer any set.
    #[arg(long, value_parser = parse_capabilities)]
    pub capabilities: Option<ebbtide_sdk::CapMap>,
    /// Lower is preferred by policies.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Milliseconds between SIGTERM and SIGKILL when a group is shut down.
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,
    /// Start workers with --allow-exec.
    #[arg(long)]
    pub allow_exec: bool,
    /// The worker command, split on spaces, e.g. "python3 -m ebbtide.worker"; each worker gets
    /// ADDRESS --group ID [--capabilities C] added. Default: this binary's `ebbtide worker`.
    #[arg(long, value_parser = worker_command)]
    pub command: Option<WorkerCommand>,
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
}

/// `--command`: a program and its first arguments (one value, so clap does not take it for a list).
#[derive(Clone, Debug)]
pub struct WorkerCommand(Vec<String>);

fn worker_command(s: &str) -> Result<WorkerCommand, String> {
    let words: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        return Err("the worker command is empty; expected e.g. \"python3 -m ebbtide.worker\"".into());
    }
    Ok(WorkerCommand(words))
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  ebbtide submit tcp://127.0.0.1:8516 --function sleep --payload 500 --count 64 --wait\n  \
ebbtide submit tcp://127.0.0.1:8516 --function echo --payload hi --capabilities gpu=1 --wait --json"
)]
pub struct SubmitArgs {
    #[arg(value_parser = address)]
    pub address: Address,
    /// sleep, spin, echo, fail or exec (see `ebbtide worker --help`).
    #[arg(long)]
    pub function: String,
    #[arg(long, default_value = "")]
    pub payload: String,
    /// What the tasks require, e.g. gpu=1.
    #[arg(long, value_parser = parse_capabilities, default_value = "")]
    pub capabilities: ebbtide_sdk::CapMap,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: u64,
    /// Wait for every result, then print a summary (exit 1 if any failed).
    #[arg(long)]
    pub wait: bool,
    /// Print the summary as JSON.
    #[arg(long, requires = "wait")]
    pub json: bool,
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<Outcome> {
    let options = WorkerOptions {
        address: args.address,
        capabilities: args.capabilities,
        group: args.group,
        allow_exec: args.allow_exec,
        token: args.token,
        identity: format!("worker-{}", std::process::id()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if let Some(reason) = runtime.block_on(worker::run(options))? {
        tracing::info!("the scheduler closed the connection: {reason}");
    }
    Ok(Outcome::Success)
}

pub fn adapter(command: AdapterCommand) -> anyhow::Result<Outcome> {
    let AdapterCommand::Native(args) = command;
    let options = NativeOptions {
        address: args.address,
        id: args.id,
        max_worker_groups: args.max_groups,
        workers_per_group: args.workers_per_group,
        capabilities: args.capabilities,
        priority: args.priority,
        token: args.token,
        grace: Duration::from_millis(args.grace_ms),
        worker_command: args.command.map(|c| c.0).unwrap_or_else(native::default_worker_command),
        allow_exec: args.allow_exec,
    };
    super::runtime()?.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            super::scheduler::stop_requested().await;
            let _ = stop.send(true);
        });
        native::run(options, stopped).await
    })?;
    Ok(Outcome::Success)
}

pub fn submit(args: SubmitArgs) -> anyhow::Result<Outcome> {
    let options = SubmitOptions {
        address: args.address,
        function: args.function,
        payload: args.payload.into_bytes(),
        capabilities: args.capabilities,
        count: args.count,
        token: args.token,
    };
    let runtime = super::runtime()?;
    let submission = runtime.block_on(Submission::send(&options))?;
    if !args.wait {
        runtime.block_on(submission.detach());
        println!("submitted {} tasks", options.count);
        return Ok(Outcome::Success);
    }
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(options.count) };
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} results  {per_sec}  eta {eta}").expect("template"),
    );
    let summary: Summary = runtime.block_on(submission.wait(|s| bar.set_position(s.done + s.failed + s.cancelled)))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} tasks: {} done, {} failed, {} cancelled\nlatency p50 {:.2} ms, p99 {:.2} ms; {:.0} tasks/s over {:.0} ms",
            summary.submitted,
            summary.done,
            summary.failed,
            summary.cancelled,
            summary.p50_ms,
            summary.p99_ms,
            summary.tasks_per_second,
            summary.elapsed_ms
        );
        if let Some(why) = &summary.first_failure {
            println!("first failure: {why}");
        }
    }
    Ok(if summary.failed > 0 { Outcome::Failed } else { Outcome::Success })
}
