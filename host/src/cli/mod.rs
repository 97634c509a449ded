//! The command line: one binary, `ebbtide`, with a subcommand per job.

pub mod policy;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ebbtide",
    version,
    about = "A task scheduler for elastic worker fleets, scaled by WebAssembly policies",
    long_about = "ebbtide schedules tasks on elastic worker fleets. On every tick, and at once when demand \
spikes, it asks a scaling policy (a WebAssembly component) what to start and stop.",
    after_help = "Examples:\n  ebbtide policy list\n  ebbtide policy bench vanilla --size large\n  ebbtide policy test tests/vectors/*.json"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "EBBTIDE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter, as in RUST_LOG (e.g. `info`, `ebbtide=debug`).
    #[arg(long, global = true, default_value = "warn", env = "EBBTIDE_LOG")]
    pub log: String,

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
    /// Author, inspect, test and benchmark scaling policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// What a command reports back to `main`: success, or a failure already explained to the user.
pub enum Outcome {
    Success,
    /// The command ran and found a problem (a rejected policy, a failing vector); exit 1.
    Failed,
}

pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Policy(cmd) => policy::run(cmd),
    }
}
