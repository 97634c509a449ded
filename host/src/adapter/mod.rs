//! Worker adapters: peers that start and stop groups of workers when the scheduler says so.
//! docs/adapters.md describes the protocol they speak and how to write one for another engine.
//!
//! - [`native`]: local `ebbtide worker` processes.
//! - [`slurm`]: one Slurm job per group, on a Slurm cluster.

pub mod native;
pub mod slurm;

use std::time::Duration;

use ebbtide_sdk::CapMap;

use crate::protocol::peer::Outbox;
use crate::protocol::{AdapterHeartbeat, Address, CommandResponse, Message};
use crate::scheduler::config::HEARTBEAT_INTERVAL;

/// What every adapter is told, whatever engine it drives.
#[derive(Clone, Debug)]
pub struct AdapterOptions {
    pub address: Address,
    /// The adapter id policies see; unique per scheduler (for Slurm also per Slurm user: it tags
    /// the jobs).
    pub id: String,
    /// 0: unbounded.
    pub max_worker_groups: u32,
    pub workers_per_group: u32,
    /// What this adapter's workers offer; `None`: any set.
    pub capabilities: Option<CapMap>,
    pub priority: i32,
    /// The adapter's own token (`adapter_token` on the scheduler).
    pub token: String,
    /// The token its workers present (`worker_token` on the scheduler).
    pub worker_token: String,
    /// Between the TERM signal to a group's workers and killing them (native: SIGKILL; Slurm:
    /// cancelling the job).
    pub grace: Duration,
    /// The worker command: a program and its first arguments, to which each worker's own are added
    /// (`ADDRESS --group ID [--capabilities C] [--allow-exec]`, with the token in `EBBTIDE_TOKEN`).
    pub worker_command: Vec<String>,
    /// Passed to workers (`--allow-exec`).
    pub allow_exec: bool,
}

/// Sends the adapter's heartbeat (its limits and capabilities) every interval, until the connection
/// is gone.
async fn heartbeats(outbox: Outbox, heartbeat: AdapterHeartbeat) {
    while outbox.send(&Message::AdapterHeartbeat(heartbeat.clone())) {
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
    }
}

/// The answer to a shutdown: the group is gone (request id 0: shutdowns carry none).
fn stopped(group_id: u64) -> CommandResponse {
    CommandResponse { request_id: 0, ok: true, group_id, worker_ids: vec![], message: String::new() }
}

/// `ebbtide worker` of this very binary: the worker command of both adapters when none is configured
/// (for Slurm, compute nodes must see the binary at the same path).
pub fn default_worker_command() -> Vec<String> {
    let program = std::env::current_exe().unwrap_or_else(|_| std::path::PathBuf::from("ebbtide"));
    vec![program.to_string_lossy().into_owned(), "worker".to_owned()]
}
