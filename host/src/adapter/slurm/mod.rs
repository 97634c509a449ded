//! `ebbtide adapter slurm`: each worker group is one Slurm job whose `workers_per_group` tasks each
//! run one worker (`srun` inside the batch script); the workers connect to the scheduler by
//! themselves, as the native adapter's do.
//!
//! - **Starts** run `sbatch` at once, each in its own task (at most `max_concurrent_submits` at a
//!   time), so all starts of a decision go out together. A start is answered when sbatch returns:
//!   with the job id, or with sbatch's own message ("Invalid feature specification").
//! - **Liveness** is one `squeue` for all jobs per `poll_ms`, never one per job. A job that ends for
//!   any reason (time limit, node failure, `scancel` from outside, its workers exiting) is reported
//!   lost with Slurm's state and reason, and the scheduler requeues its tasks.
//! - **Shutdowns** gathered over a few milliseconds become one `scancel --signal=TERM` for running
//!   jobs (one `scancel` for pending ones); a job still there after `grace` is cancelled. The
//!   shutdown is confirmed once squeue shows the job ended.
//! - **Restart safety**: the job name `ebbtide-<adapter id>-<group id>` tags every job. At start-up
//!   the adapter cancels every active job with its tag: the scheduler forgot those groups when the
//!   earlier run's connection closed, so adopting them could only start work twice. Later, an active
//!   tagged job the adapter is not running (an sbatch that timed out on our side but went through)
//!   is cancelled too. Two adapters with the same id under the same Slurm user would cancel each
//!   other's jobs: ids must be unique per user.

mod commands;
mod job;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ebbtide_sdk::CapMap;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

pub use commands::{JobRow, Slurm};
pub use job::JobTag;

use super::{AdapterOptions, heartbeats, stopped};
use crate::protocol::peer::{Connection, Outbox};
use crate::protocol::{AdapterCommand, AdapterHeartbeat, Address, CommandResponse, Message, Role};

/// The Slurm-specific settings: `[adapter.slurm]` in a configuration, flags of `ebbtide adapter slurm`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition`; absent: the cluster's default.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time`, in any form sbatch takes (`30`, `01:00:00`, `1-0`); absent: the partition's default.
    pub time_limit: Option<String>,
    /// More sbatch options, one per item, after ours (so they win where they repeat one).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// Capability name → sbatch options for groups that ask for it; `{value}` is its quantity.
    /// E.g. `gpu = "--gres=gpu:{value}"`, `avx512 = "--constraint=avx512"`.
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    /// The address workers connect to, when it differs from the adapter's (compute nodes usually
    /// cannot reach the scheduler's loopback address).
    pub worker_address: Option<String>,
    /// Milliseconds between two liveness queries.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// sbatch commands running at once, at most.
    #[serde(default = "default_max_concurrent_submits")]
    pub max_concurrent_submits: u32,
    /// A Slurm command that takes longer than this has failed.
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
}

fn default_poll_ms() -> u64 {
    1000
}
fn default_max_concurrent_submits() -> u32 {
    16
}
fn default_command_timeout_ms() -> u64 {
    30_000
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            account: None,
            time_limit: None,
            sbatch_args: vec![],
            requests: BTreeMap::new(),
            worker_address: None,
            poll_ms: default_poll_ms(),
            max_concurrent_submits: default_max_concurrent_submits(),
            command_timeout_ms: default_command_timeout_ms(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SlurmOptions {
    pub adapter: AdapterOptions,
    pub slurm: SlurmSettings,
}

/// Shutdowns arriving within this window (one decision's) become one scancel.
const STOP_GATHER: Duration = Duration::from_millis(20);
/// A job squeue has not listed this many times in a row has ended (purged after `MinJobAge`).
const UNLISTED_LIMIT: u32 = 2;

/// A group's job, from its start to its end.
struct Job {
    /// `None` while sbatch runs.
    id: Option<String>,
    /// What the last listing said.
    running: bool,
    /// Listings in a row that did not show the job.
    unlisted: u32,
    stop: Stop,
}

/// Where a job is on its way out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The scheduler has not asked.
    No,
    /// Asked; it is signalled once it has a job id (sbatch still runs) or the gather window ends.
    Asked,
    /// Signalled or cancelled; cancelled (again) if it is still there at this time.
    Sent { cancel_at: Instant },
}

enum Event {
    Submitted { group_id: u64, request_id: u64, result: Result<String, String> },
    Listed(Result<Vec<JobRow>, String>),
}

struct Adapter {
    options: SlurmOptions,
    worker_address: Address,
    slurm: Arc<Slurm>,
    tag: JobTag,
    jobs: HashMap<u64, Job>,
    submits: Arc<Semaphore>,
    events: mpsc::UnboundedSender<Event>,
    outbox: Outbox,
    /// A listing is in flight.
    listing: bool,
    /// Groups to signal or cancel at the end of the gather window.
    to_stop: Vec<u64>,
}

/// Checks the settings and Slurm itself (the tools on PATH, a controller that answers), and cancels
/// jobs an earlier run of this adapter left behind. Fails with a message saying what to fix.
pub async fn prepare(options: &SlurmOptions) -> anyhow::Result<Slurm> {
    job::validate(&options.slurm).map_err(anyhow::Error::msg)?;
    if options.adapter.worker_command.is_empty() {
        anyhow::bail!(
            "the worker command is empty; leave it out for `ebbtide worker`, or give e.g. [\"python3\", \"-m\", \"ebbtide.worker\"]"
        );
    }
    let tag = JobTag::new(&options.adapter.id).map_err(anyhow::Error::msg)?;
    let slurm = Slurm::locate(Duration::from_millis(options.slurm.command_timeout_ms))?;
    let rows = slurm.jobs().await.map_err(|e| {
        anyhow::anyhow!("cannot list Slurm jobs; is the controller (slurmctld) running and reachable? {e}")
    })?;
    let leftovers: Vec<String> =
        rows.iter().filter(|r| !r.ended() && tag.group_of(&r.name).is_some()).map(|r| r.id.clone()).collect();
    if !leftovers.is_empty() {
        tracing::warn!(adapter = %options.adapter.id, "cancelling {} jobs an earlier run left behind: {}", leftovers.len(), leftovers.join(" "));
        slurm.cancel(&leftovers).await.map_err(|e| anyhow::anyhow!("cannot cancel jobs left behind: {e}"))?;
    }
    Ok(slurm)
}

/// [`prepare`], then [`serve`].
pub async fn run(options: SlurmOptions, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let slurm = prepare(&options).await?;
    serve(options, slurm, shutdown).await
}

/// Runs until `shutdown` turns true or the scheduler goes away; then cancels every job it started.
pub async fn serve(options: SlurmOptions, slurm: Slurm, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let slurm = Arc::new(slurm);
    let worker_address = match &options.slurm.worker_address {
        Some(a) => a.parse().map_err(|e| anyhow::anyhow!("worker_address: {e}"))?,
        None => options.adapter.address.clone(),
    };
    let mut connection =
        Connection::open(&options.adapter.address, Role::Adapter, &options.adapter.id, &options.adapter.token).await?;
    tracing::info!(adapter = %options.adapter.id, "connected to {}", options.adapter.address);
    let heartbeat = tokio::spawn(heartbeats(
        connection.outbox.clone(),
        AdapterHeartbeat {
            max_worker_groups: options.adapter.max_worker_groups,
            workers_per_group: options.adapter.workers_per_group,
            capabilities: options.adapter.capabilities.clone(),
            priority: options.adapter.priority,
        },
    ));
    let (events, mut incoming) = mpsc::unbounded_channel();
    let mut poll = tokio::time::interval(Duration::from_millis(options.slurm.poll_ms.max(1)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut adapter = Adapter {
        submits: Arc::new(Semaphore::new(options.slurm.max_concurrent_submits.max(1) as usize)),
        tag: JobTag::new(&options.adapter.id).map_err(anyhow::Error::msg)?,
        options,
        worker_address,
        slurm,
        jobs: HashMap::new(),
        events,
        outbox: connection.outbox.clone(),
        listing: false,
        to_stop: vec![],
    };
    let mut flush_at: Option<Instant> = None;

    let outcome = loop {
        tokio::select! {
            message = connection.recv() => match message {
                Ok(Some(Message::AdapterCommand(AdapterCommand::Start { request_id, group_id, capabilities }))) => {
                    adapter.start(request_id, group_id, &capabilities);
                }
                Ok(Some(Message::AdapterCommand(AdapterCommand::Shutdown { group_id }))) => {
                    if adapter.shutdown(group_id) {
                        flush_at.get_or_insert(Instant::now() + STOP_GATHER);
                    }
                }
                Ok(Some(Message::Goodbye(reason))) => break Err(anyhow::anyhow!("the scheduler closed the connection: {reason}")),
                Ok(Some(other)) => tracing::debug!("ignoring a {} message", other.kind()),
                Ok(None) => break Err(anyhow::anyhow!("the scheduler closed the connection")),
                Err(e) => break Err(e),
            },
            Some(event) = incoming.recv() => {
                if adapter.on_event(event) {
                    flush_at.get_or_insert(Instant::now() + STOP_GATHER);
                }
            }
            _ = poll.tick() => adapter.poll(),
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                flush_at = None;
                adapter.flush_stops();
            }
            _ = shutdown.changed() => break Ok(()),
        }
    };
    heartbeat.abort();
    adapter.stop_all(&mut incoming).await;
    connection.outbox.send(&Message::Goodbye("adapter stopping".into()));
    connection.finish().await;
    outcome
}

impl Adapter {
    /// Submits the group's job in its own task; the answer goes out when sbatch returns.
    fn start(&mut self, request_id: u64, group_id: u64, requested: &CapMap) {
        if let Some(refusal) = self.refusal(group_id) {
            tracing::warn!(group = group_id, "start refused: {refusal}");
            let response = CommandResponse { request_id, ok: false, group_id, worker_ids: vec![], message: refusal };
            self.outbox.send(&Message::CommandResponse(response));
            return;
        }
        let o = &self.options;
        // The adapter's own capabilities describe its nodes; the start may add to them.
        let mut capabilities = o.adapter.capabilities.clone().unwrap_or_default();
        capabilities.extend(requested.iter().map(|(k, v)| (k.clone(), *v)));
        let mut worker_args = vec![self.worker_address.to_string(), "--group".to_owned(), group_id.to_string()];
        if !capabilities.is_empty() {
            let caps: Vec<String> =
                capabilities.iter().map(|(k, v)| if *v == -1 { k.clone() } else { format!("{k}={v}") }).collect();
            worker_args.extend(["--capabilities".to_owned(), caps.join(",")]);
        }
        if o.adapter.allow_exec {
            worker_args.push("--allow-exec".to_owned());
        }
        let args = job::sbatch_args(&o.slurm, &self.tag, group_id, o.adapter.workers_per_group, requested);
        let script = job::script(&o.adapter.worker_command, &worker_args);
        let (slurm, submits, events, token) =
            (self.slurm.clone(), self.submits.clone(), self.events.clone(), o.adapter.worker_token.clone());
        self.jobs.insert(group_id, Job { id: None, running: false, unlisted: 0, stop: Stop::No });
        tokio::spawn(async move {
            let _permit = submits.acquire_owned().await;
            let result = slurm.submit(&args, &script, &token).await;
            let _ = events.send(Event::Submitted { group_id, request_id, result });
        });
    }

    /// Why a start cannot be taken, if it cannot: the scheduler keeps within `max_worker_groups` and
    /// never reuses a group id, so this only guards against a peer that does not.
    fn refusal(&self, group_id: u64) -> Option<String> {
        let max = self.options.adapter.max_worker_groups as usize;
        let live = self.jobs.values().filter(|j| j.stop == Stop::No).count();
        if self.jobs.contains_key(&group_id) {
            Some(format!("group {group_id} already has a job"))
        } else if max > 0 && live >= max {
            Some(format!("this adapter already runs {live} groups (max_worker_groups = {max})"))
        } else {
            None
        }
    }

    /// Marks the group's job for stopping; true when it can be signalled now.
    fn shutdown(&mut self, group_id: u64) -> bool {
        let Some(job) = self.jobs.get_mut(&group_id) else {
            // Unknown here (already gone): confirm, so the scheduler forgets it too.
            self.outbox.send(&Message::CommandResponse(stopped(group_id)));
            return false;
        };
        if job.stop != Stop::No {
            return false;
        }
        job.stop = Stop::Asked;
        if job.id.is_none() {
            return false; // signalled once sbatch returns
        }
        self.to_stop.push(group_id);
        true
    }

    /// Handles a finished sbatch or squeue; true when a job now waits to be signalled.
    fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Submitted { group_id, request_id, result } => self.submitted(group_id, request_id, result),
            Event::Listed(Ok(rows)) => {
                self.listing = false;
                self.reconcile(&rows);
                false
            }
            Event::Listed(Err(e)) => {
                self.listing = false;
                tracing::warn!(adapter = %self.options.adapter.id, "cannot list jobs (will retry): {e}");
                false
            }
        }
    }

    fn submitted(&mut self, group_id: u64, request_id: u64, result: Result<String, String>) -> bool {
        let response = match result {
            Ok(id) => {
                let worker_ids =
                    (0..self.options.adapter.workers_per_group).map(|task| format!("{id}.{task}")).collect();
                tracing::info!(group = group_id, job = %id, "group submitted");
                let job = self.jobs.get_mut(&group_id).expect("inserted by start, removed only once known");
                job.id = Some(id);
                CommandResponse { request_id, ok: true, group_id, worker_ids, message: String::new() }
            }
            Err(message) => {
                tracing::warn!(group = group_id, "start failed: {message}");
                self.jobs.remove(&group_id);
                CommandResponse { request_id, ok: false, group_id, worker_ids: vec![], message }
            }
        };
        let stop_now = response.ok && self.jobs.get(&group_id).is_some_and(|j| j.stop != Stop::No);
        self.outbox.send(&Message::CommandResponse(response));
        if stop_now {
            self.to_stop.push(group_id);
        }
        stop_now
    }

    /// One listing for every job, unless one is in flight or there is nothing to watch.
    fn poll(&mut self) {
        if self.listing || !self.jobs.values().any(|j| j.id.is_some()) {
            return;
        }
        self.listing = true;
        let (slurm, events) = (self.slurm.clone(), self.events.clone());
        tokio::spawn(async move {
            let _ = events.send(Event::Listed(slurm.jobs().await));
        });
    }

    /// Reports ended jobs, cancels overdue and stray ones.
    fn reconcile(&mut self, rows: &[JobRow]) {
        let now = Instant::now();
        let by_id: HashMap<&str, &JobRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut ended = Vec::new();
        let mut overdue = Vec::new();
        for (group, job) in &mut self.jobs {
            let Some(id) = &job.id else { continue };
            match by_id.get(id.as_str()) {
                Some(row) if row.ended() => ended.push((*group, format!("Slurm job {id} ended: {}", row.outcome()))),
                Some(row) => {
                    job.running = row.running();
                    job.unlisted = 0;
                }
                None => {
                    job.unlisted += 1;
                    if job.unlisted >= UNLISTED_LIMIT {
                        ended.push((*group, format!("Slurm job {id} is no longer listed by squeue")));
                    }
                }
            }
            if let Stop::Sent { cancel_at } = &mut job.stop
                && now >= *cancel_at
            {
                overdue.push(id.clone());
                *cancel_at = now + self.options.adapter.grace;
            }
        }
        for (group, reason) in ended {
            let job = self.jobs.remove(&group).expect("listed above");
            if job.stop != Stop::No {
                tracing::info!(group, "group stopped: {reason}");
                self.outbox.send(&Message::CommandResponse(stopped(group)));
            } else {
                tracing::warn!(group, "group lost: {reason}");
                self.outbox.send(&Message::GroupLost { group_id: group, reason });
            }
        }
        // Active jobs with our tag that we are not running: left by a start whose sbatch timed out.
        let ours: HashSet<u64> = self.jobs.keys().copied().collect();
        let known: HashSet<&str> = self.jobs.values().filter_map(|j| j.id.as_deref()).collect();
        let strays: Vec<String> = rows
            .iter()
            .filter(|r| !r.ended() && !known.contains(r.id.as_str()))
            .filter(|r| self.tag.group_of(&r.name).is_some_and(|g| !ours.contains(&g) || self.jobs[&g].id.is_some()))
            .map(|r| r.id.clone())
            .collect();
        if !strays.is_empty() {
            tracing::warn!(adapter = %self.options.adapter.id, "cancelling jobs this adapter is not running: {}", strays.join(" "));
        }
        overdue.extend(strays);
        self.spawn_cancel(overdue);
    }

    /// Signals running jobs to stop (their workers get SIGTERM) and cancels pending ones.
    fn flush_stops(&mut self) {
        let deadline = Instant::now() + self.options.adapter.grace;
        let (mut running, mut pending) = (vec![], vec![]);
        for group in std::mem::take(&mut self.to_stop) {
            let Some(job) = self.jobs.get_mut(&group) else { continue };
            let Some(id) = job.id.clone() else { continue };
            job.stop = Stop::Sent { cancel_at: deadline };
            if job.running { running.push(id) } else { pending.push(id) }
        }
        if !running.is_empty() {
            let slurm = self.slurm.clone();
            tokio::spawn(async move {
                if let Err(e) = slurm.signal(&running, "TERM").await {
                    // A job that just ended cannot be signalled; the listing will show it.
                    tracing::debug!("scancel --signal=TERM: {e}");
                }
            });
        }
        self.spawn_cancel(pending);
    }

    fn spawn_cancel(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let slurm = self.slurm.clone();
        tokio::spawn(async move {
            if let Err(e) = slurm.cancel(&ids).await {
                tracing::warn!("scancel {}: {e}", ids.join(" "));
            }
        });
    }

    /// Cancels every job (waiting for sbatch commands in flight first) and waits until squeue shows
    /// them ended, for up to the grace period plus the command timeout.
    async fn stop_all(&mut self, incoming: &mut mpsc::UnboundedReceiver<Event>) {
        let timeout = Duration::from_millis(self.options.slurm.command_timeout_ms);
        let deadline = Instant::now() + timeout;
        while self.jobs.values().any(|j| j.id.is_none()) {
            match tokio::time::timeout_at(deadline, incoming.recv()).await {
                Ok(Some(Event::Submitted { group_id, result, .. })) => match result {
                    Ok(id) => self.jobs.get_mut(&group_id).expect("submitting").id = Some(id),
                    Err(_) => drop(self.jobs.remove(&group_id)),
                },
                Ok(Some(Event::Listed(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let ids: Vec<String> = self.jobs.values().filter_map(|j| j.id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        tracing::info!(adapter = %self.options.adapter.id, "cancelling {} jobs: {}", ids.len(), ids.join(" "));
        if let Err(e) = self.slurm.cancel(&ids).await {
            tracing::warn!("scancel {}: {e}", ids.join(" "));
        }
        let deadline = Instant::now() + self.options.adapter.grace + timeout;
        while Instant::now() < deadline {
            match self.slurm.jobs().await {
                Ok(rows) if !rows.iter().any(|r| ids.contains(&r.id) && !r.ended()) => return,
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot list jobs: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tracing::warn!(adapter = %self.options.adapter.id, "jobs still active after cancelling them: {}", ids.join(" "));
    }
}

/// For `[adapter.slurm]` checks made while reading a configuration.
pub fn check_settings(settings: &SlurmSettings) -> Result<(), String> {
    job::validate(settings)
}
