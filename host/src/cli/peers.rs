//! `ebbtide worker`, `ebbtide adapter native|slurm` and `ebbtide submit`: the scheduler's peers.

use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::Outcome;
use super::config::parse_capabilities;
use crate::adapter::AdapterOptions;
use crate::adapter::native;
use crate::adapter::slurm::{self, SlurmOptions, SlurmSettings};
use crate::client::{Submission, SubmitOptions, Summary};
use crate::protocol::Address;
use crate::worker::{self, WorkerOptions};

fn address(s: &str) -> Result<Address, String> {
    s.parse()
}

#[derive(Args)]
#[command(
    after_help = "Functions: sleep (payload: milliseconds), spin (busy CPU, payload: milliseconds), echo (returns the payload), \
fail (fails with the payload as its message), gauge (payload: name=value, sets a gauge), exec (payload: a shell command; \
only with --allow-exec).\n\n\
Gauges: named numbers the worker reports in every heartbeat (about once a second), such as a queue depth or a \
KV-cache use. The scheduler gives policies each group's mean of them in the snapshot's metrics, beside the \
utilization and queue_depth it derives itself. Set them with --gauge at start, or later with a task of the gauge \
function, whose payload is name=value (the new value is reported before the task's result). At most 32 gauges per \
worker; names are 1 to 64 letters, digits or _-.:/ characters; values are finite numbers in any unit you choose.\n\n\
Examples:\n  ebbtide worker tcp://127.0.0.1:8516\n  ebbtide worker tcp://127.0.0.1:8516 --capabilities gpu=1,linux\n  \
ebbtide worker tcp://127.0.0.1:8516 --capabilities decode --gauge kv_cache_utilization=0.4 --gauge ttft=0.2\n  \
ebbtide submit tcp://127.0.0.1:8516 --function gauge --payload kv_cache_utilization=0.9"
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
    /// A gauge to report from the start, NAME=VALUE (e.g. kv_cache_utilization=0.4); repeat for more.
    #[arg(long = "gauge", value_name = "NAME=VALUE", value_parser = worker::parse_gauge)]
    pub gauges: Vec<(String, f64)>,
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
    /// Start and stop worker groups as Slurm jobs (one job per group, one worker per task).
    #[command(
        after_help = "Examples:\n  ebbtide adapter slurm tcp://127.0.0.1:8516 --max-groups 16 --workers-per-group 2\n  \
ebbtide adapter slurm tcp://10.0.0.5:8516 --partition batch --time-limit 01:00:00 --sbatch-arg=--qos=normal\n  \
ebbtide adapter slurm tcp://10.0.0.5:8516 --id gpu --capabilities gpu=4 --request 'gpu=--gres=gpu:{value}'\n  \
ebbtide adapter slurm tcp://10.0.0.5:8516 -- python3 -m ebbtide.worker\n\n\
Each group is one job named ebbtide-<id>-<group id>; its tasks run the worker command with\n\
ADDRESS --group ID [--capabilities ...] appended, through srun. The token reaches workers in the\n\
job's environment (EBBTIDE_TOKEN). Jobs left by an earlier run with the same id are cancelled at\n\
start-up. See docs/adapters.md."
    )]
    Slurm(SlurmArgs),
}

/// What both adapters take: where the scheduler is, their limits and tokens.
#[derive(Args)]
pub struct AdapterArgs {
    /// The scheduler, e.g. tcp://10.0.0.5:8516.
    #[arg(value_parser = address)]
    pub address: Address,
    /// At most this many groups at once (0: unbounded).
    #[arg(long, default_value_t = 8)]
    pub max_groups: u32,
    /// Workers per group (for Slurm, the job's --ntasks).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers_per_group: u32,
    /// What this adapter's workers offer, e.g. gpu=1,linux; leave out to offer any set.
    #[arg(long, value_parser = parse_capabilities)]
    pub capabilities: Option<ebbtide_sdk::CapMap>,
    /// Lower is preferred by policies.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Milliseconds between SIGTERM to a group's workers and killing them (native: SIGKILL; Slurm:
    /// cancelling the job).
    #[arg(long, default_value_t = 5000)]
    pub grace_ms: u64,
    /// Start workers with --allow-exec.
    #[arg(long)]
    pub allow_exec: bool,
    /// The token this adapter presents (the scheduler's adapter_token, or its token).
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
    /// The token its workers present (the scheduler's worker_token) [default: --token].
    #[arg(long, env = "EBBTIDE_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
}

impl AdapterArgs {
    /// The options of an adapter with this id and worker command (`None`: this binary's `worker`).
    fn options(self, id: String, worker_command: Option<Vec<String>>) -> AdapterOptions {
        AdapterOptions {
            address: self.address,
            id,
            max_worker_groups: self.max_groups,
            workers_per_group: self.workers_per_group,
            capabilities: self.capabilities,
            priority: self.priority,
            worker_token: self.worker_token.unwrap_or_else(|| self.token.clone()),
            token: self.token,
            grace: Duration::from_millis(self.grace_ms),
            worker_command: worker_command.unwrap_or_else(crate::adapter::default_worker_command),
            allow_exec: self.allow_exec,
        }
    }
}

#[derive(Args)]
pub struct NativeArgs {
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// The adapter id policies see; unique per scheduler.
    #[arg(long, default_value = "native")]
    pub id: String,
    /// The worker command, split on spaces, e.g. "python3 -m ebbtide.worker"; each worker gets
    /// ADDRESS --group ID [--capabilities C] added. Default: this binary's `ebbtide worker`.
    #[arg(long, value_parser = worker_command)]
    pub command: Option<WorkerCommand>,
}

#[derive(Args)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// The adapter id policies see; unique per scheduler and per Slurm user (it tags the jobs).
    #[arg(long, default_value = "slurm")]
    pub id: String,
    /// sbatch --partition (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// sbatch --account.
    #[arg(long)]
    pub account: Option<String>,
    /// sbatch --time, e.g. 30 (minutes), 01:00:00, 1-0 (a day).
    #[arg(long)]
    pub time_limit: Option<String>,
    /// One more sbatch option (repeatable; it wins over ours), e.g. --sbatch-arg=--qos=normal.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// CAPABILITY=OPTIONS: what groups asking for a capability request from Slurm (repeatable;
    /// {value} is its quantity), e.g. 'gpu=--gres=gpu:{value}' or 'avx512=--constraint=avx512'.
    #[arg(long = "request", value_name = "CAPABILITY=OPTIONS", value_parser = parse_request)]
    pub requests: Vec<(String, String)>,
    /// The address workers connect to, when compute nodes reach the scheduler by another address.
    #[arg(long, value_parser = address)]
    pub worker_address: Option<Address>,
    /// Milliseconds between two liveness queries (one squeue for all jobs).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_ms: u64,
    /// sbatch commands running at once, at most.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_submits: u32,
    /// Milliseconds after which a Slurm command counts as failed.
    #[arg(long, default_value_t = 30_000)]
    pub command_timeout_ms: u64,
    /// The worker command, after `--` (default: this binary's `worker`); it gets ADDRESS --group ID
    /// [--capabilities ...] appended.
    #[arg(last = true, value_name = "WORKER COMMAND")]
    pub command: Vec<String>,
}

fn parse_request(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, options)) if !name.trim().is_empty() && !options.trim().is_empty() => {
            Ok((name.trim().to_owned(), options.trim().to_owned()))
        }
        _ => Err(format!("{s:?}: expected CAPABILITY=OPTIONS, e.g. 'gpu=--gres=gpu:{{value}}'")),
    }
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
    /// sleep, spin, echo, fail, gauge or exec (see `ebbtide worker --help`).
    #[arg(long)]
    pub function: String,
    /// The task's input, read by its function: sleep and spin, milliseconds; echo, returned as is;
    /// fail, the error message; gauge, NAME=VALUE; exec, a shell command (workers need --allow-exec).
    #[arg(long, default_value = "")]
    pub payload: String,
    /// What the tasks require, e.g. gpu=1.
    #[arg(long, value_parser = parse_capabilities, default_value = "")]
    pub capabilities: ebbtide_sdk::CapMap,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: u64,
    /// Wait for every result, then print a summary (exit 1 if any failed). Without it, submit
    /// returns once the tasks are sent; the scheduler then drops them (a client's tasks live only
    /// while it is connected), so leave it out only to test admission.
    #[arg(long)]
    pub wait: bool,
    /// Print the summary as JSON.
    #[arg(long, requires = "wait")]
    pub json: bool,
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
}

/// Workers and adapters are long-lived children of a shell or an adapter; a terminal closing or
/// `kill -HUP` meant for the scheduler must not end them.
fn ignore_hangup() {
    // SAFETY: setting a signal to SIG_IGN has no handler to run; it cannot race with anything.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<Outcome> {
    ignore_hangup();
    let options = WorkerOptions {
        address: args.address,
        capabilities: args.capabilities,
        group: args.group,
        allow_exec: args.allow_exec,
        token: args.token,
        identity: format!("worker-{}", std::process::id()),
        gauges: args.gauges,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if let Some(reason) = runtime.block_on(worker::run(options))? {
        tracing::info!("the scheduler closed the connection: {reason}");
    }
    Ok(Outcome::Success)
}

pub fn adapter(command: AdapterCommand) -> anyhow::Result<Outcome> {
    ignore_hangup();
    let args = match command {
        AdapterCommand::Native(args) => args,
        AdapterCommand::Slurm(args) => return slurm_adapter(args),
    };
    let options = args.adapter.options(args.id, args.command.map(|c| c.0));
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

fn slurm_adapter(args: SlurmArgs) -> anyhow::Result<Outcome> {
    let worker_command = (!args.command.is_empty()).then_some(args.command);
    let options = SlurmOptions {
        adapter: args.adapter.options(args.id, worker_command),
        slurm: SlurmSettings {
            partition: args.partition,
            account: args.account,
            time_limit: args.time_limit,
            sbatch_args: args.sbatch_args,
            requests: args.requests.into_iter().collect(),
            worker_address: args.worker_address.map(|a| a.to_string()),
            poll_ms: args.poll_ms,
            max_concurrent_submits: args.max_concurrent_submits,
            command_timeout_ms: args.command_timeout_ms,
        },
    };
    super::runtime()?.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            super::scheduler::stop_requested().await;
            let _ = stop.send(true);
        });
        slurm::run(options, stopped).await
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
        println!(
            "submitted {} tasks and left; the scheduler drops a client's tasks when it leaves (use --wait to run them)",
            options.count
        );
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
