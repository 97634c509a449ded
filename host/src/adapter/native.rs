//! `ebbtide adapter native`: starts and stops local worker processes in groups: `ebbtide worker` by
//! default, or any command that takes the same arguments (`python3 -m ebbtide.worker`, see docs/python.md).
//!
//! Each start spawns its group's processes at once (so a batch of starts boots in parallel) and is
//! answered straight away; the workers then connect to the scheduler by themselves. A group whose
//! processes have all exited on their own is reported lost. A shutdown sends SIGTERM, then SIGKILL
//! after the grace period. Workers die with the adapter (parent-death signal) and exit when the
//! scheduler closes their connection, so nothing is left behind.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use ebbtide_sdk::CapMap;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{AdapterOptions, heartbeats, stopped};
use crate::protocol::peer::{Connection, Outbox};
use crate::protocol::{AdapterCommand, AdapterHeartbeat, CommandResponse, Message, Role};

struct RunningGroup {
    stop: oneshot::Sender<()>,
    supervisor: JoinHandle<()>,
}

/// Runs until `shutdown` turns true or the scheduler goes away; then stops every group it started.
pub async fn run(options: AdapterOptions, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut connection = Connection::open(&options.address, Role::Adapter, &options.id, &options.token).await?;
    tracing::info!(adapter = %options.id, "connected to {}", options.address);
    let outbox = connection.outbox.clone();
    let heartbeat = tokio::spawn(heartbeats(
        outbox.clone(),
        AdapterHeartbeat {
            max_worker_groups: options.max_worker_groups,
            workers_per_group: options.workers_per_group,
            capabilities: options.capabilities.clone(),
            priority: options.priority,
        },
    ));
    let (exited_tx, mut exited) = mpsc::unbounded_channel::<u64>();
    let mut groups: HashMap<u64, RunningGroup> = HashMap::new();

    let outcome = loop {
        tokio::select! {
            message = connection.recv() => match message {
                Ok(Some(Message::AdapterCommand(AdapterCommand::Start { request_id, group_id, capabilities }))) => {
                    let response = match start_group(&options, group_id, &capabilities, outbox.clone(), exited_tx.clone()) {
                        Ok((group, pids)) => {
                            groups.insert(group_id, group);
                            CommandResponse { request_id, ok: true, group_id, worker_ids: pids, message: String::new() }
                        }
                        Err(e) => {
                            tracing::warn!(group = group_id, "start failed: {e:#}");
                            CommandResponse { request_id, ok: false, group_id, worker_ids: vec![], message: format!("{e:#}") }
                        }
                    };
                    outbox.send(&Message::CommandResponse(response));
                }
                Ok(Some(Message::AdapterCommand(AdapterCommand::Shutdown { group_id }))) => {
                    if let Some(group) = groups.remove(&group_id) {
                        let _ = group.stop.send(());
                    } else {
                        // Unknown here (already gone): confirm, so the scheduler forgets it too.
                        outbox.send(&Message::CommandResponse(stopped(group_id)));
                    }
                }
                Ok(Some(Message::Goodbye(reason))) => break Err(anyhow::anyhow!("the scheduler closed the connection: {reason}")),
                Ok(Some(other)) => tracing::debug!("ignoring a {} message", other.kind()),
                Ok(None) => break Err(anyhow::anyhow!("the scheduler closed the connection")),
                Err(e) => break Err(e),
            },
            Some(group_id) = exited.recv() => { groups.remove(&group_id); }
            _ = shutdown.changed() => break Ok(()),
        }
    };
    heartbeat.abort();
    stop_all(groups).await;
    connection.outbox.send(&Message::Goodbye("adapter stopping".into()));
    connection.finish().await;
    outcome
}

/// Spawns the group's processes and a supervisor that reports their end.
fn start_group(
    options: &AdapterOptions,
    group_id: u64,
    requested: &CapMap,
    outbox: Outbox,
    exited: mpsc::UnboundedSender<u64>,
) -> anyhow::Result<(RunningGroup, Vec<String>)> {
    // The adapter's own capabilities describe its machines; the start may add to them.
    let mut capabilities = options.capabilities.clone().unwrap_or_default();
    capabilities.extend(requested.iter().map(|(k, v)| (k.clone(), *v)));
    let mut children = Vec::new();
    for _ in 0..options.workers_per_group {
        match spawn_worker(options, group_id, &capabilities) {
            Ok(child) => children.push(child),
            Err(e) => {
                for child in &mut children {
                    let _ = child.start_kill();
                }
                return Err(e);
            }
        }
    }
    let pids: Vec<String> = children.iter().filter_map(|c| c.id()).map(|p| p.to_string()).collect();
    tracing::info!(group = group_id, pids = ?pids, "group started");
    let (stop, stop_rx) = oneshot::channel();
    let grace = options.grace;
    let supervisor = tokio::spawn(async move {
        let lost = supervise(children, stop_rx, grace).await;
        let message = if lost {
            tracing::warn!(group = group_id, "every worker of the group exited");
            Message::GroupLost { group_id, reason: "every worker process exited".into() }
        } else {
            tracing::info!(group = group_id, "group stopped");
            Message::CommandResponse(stopped(group_id))
        };
        outbox.send(&message);
        let _ = exited.send(group_id);
    });
    Ok((RunningGroup { stop, supervisor }, pids))
}

fn spawn_worker(options: &AdapterOptions, group_id: u64, capabilities: &CapMap) -> anyhow::Result<Child> {
    let caps: Vec<String> =
        capabilities.iter().map(|(k, v)| if *v == -1 { k.clone() } else { format!("{k}={v}") }).collect();
    let (program, leading) =
        options.worker_command.split_first().ok_or_else(|| anyhow::anyhow!("the worker command is empty"))?;
    let mut command = Command::new(program);
    command
        .args(leading)
        .arg(options.address.to_string())
        .arg("--group")
        .arg(group_id.to_string())
        .env("EBBTIDE_TOKEN", &options.worker_token)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if !caps.is_empty() {
        command.arg("--capabilities").arg(caps.join(","));
    }
    if options.allow_exec {
        command.arg("--allow-exec");
    }
    // SAFETY: prctl is async-signal-safe; it makes the kernel kill the worker if the adapter dies.
    #[cfg(target_os = "linux")]
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.spawn().map_err(|e| anyhow::anyhow!("cannot start the worker command {:?}: {e}", options.worker_command))
}

/// Waits for the processes to exit (true: on their own) or for a stop (false), which terminates them.
async fn supervise(mut children: Vec<Child>, stop: oneshot::Receiver<()>, grace: Duration) -> bool {
    let all_exited = async {
        for child in &mut children {
            let _ = child.wait().await;
        }
    };
    tokio::select! {
        _ = all_exited => return true,
        _ = stop => {}
    }
    for child in &children {
        if let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    let exited = tokio::time::timeout(grace, async {
        for child in &mut children {
            let _ = child.wait().await;
        }
    })
    .await;
    if exited.is_err() {
        for child in &mut children {
            let _ = child.kill().await;
        }
    }
    false
}

/// Stops every group and waits for their processes to be gone.
async fn stop_all(groups: HashMap<u64, RunningGroup>) {
    let mut supervisors = Vec::new();
    for (_, group) in groups {
        let _ = group.stop.send(());
        supervisors.push(group.supervisor);
    }
    for supervisor in supervisors {
        let _ = supervisor.await;
    }
}
