//! Worker adapters: peers that start and stop groups of workers when the scheduler says so.
//! docs/adapters.md describes the protocol they speak and how to write one for another engine.
//!
//! - [`native`]: local `ebbtide worker` processes.
//! - [`slurm`]: one Slurm job per group, on a Slurm cluster.

pub mod native;
pub mod slurm;

use crate::protocol::peer::Outbox;
use crate::protocol::{AdapterHeartbeat, CommandResponse, Message};
use crate::scheduler::config::HEARTBEAT_INTERVAL;

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
