//! `ebbtide submit`: sends tasks and, with `--wait`, collects every result with latency figures.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ebbtide_sdk::CapMap;
use serde::Serialize;

use crate::protocol::peer::Connection;
use crate::protocol::{Address, Message, Role, Task, TaskStatus};

pub struct SubmitOptions {
    pub address: Address,
    pub function: String,
    pub payload: Vec<u8>,
    pub capabilities: CapMap,
    pub count: u64,
    pub token: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub submitted: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub tasks_per_second: f64,
    pub elapsed_ms: f64,
    /// The output of the first failure, to show the user why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

/// Tasks are sent in batches of this many, each batch as one write.
const BATCH: u64 = 1000;

pub struct Submission {
    connection: Connection,
    sent: HashMap<u64, Instant>,
    started: Instant,
}

impl Submission {
    /// Connects and sends every task.
    pub async fn send(options: &SubmitOptions) -> anyhow::Result<Submission> {
        let identity = format!("submit-{}", std::process::id());
        let connection = Connection::open(&options.address, Role::Client, &identity, &options.token).await?;
        let started = Instant::now();
        let mut sent = HashMap::with_capacity(options.count as usize);
        let mut next = 1;
        while next <= options.count {
            let end = (next + BATCH).min(options.count + 1);
            let batch: Vec<Message> = (next..end)
                .map(|id| {
                    Message::TaskSubmit(Task {
                        id,
                        function: options.function.clone(),
                        payload: options.payload.clone(),
                        capabilities: options.capabilities.clone(),
                    })
                })
                .collect();
            connection.outbox.send_all(&batch);
            let now = Instant::now();
            sent.extend((next..end).map(|id| (id, now)));
            next = end;
        }
        Ok(Submission { connection, sent, started })
    }

    /// Leaves without waiting: the scheduler drops the tasks still queued and cancels those running.
    pub async fn detach(self) {
        self.connection.finish().await;
    }

    /// Waits for every result; `progress` is told each one.
    pub async fn wait(mut self, mut progress: impl FnMut(&Summary)) -> anyhow::Result<Summary> {
        let mut summary = Summary { submitted: self.sent.len() as u64, ..Summary::default() };
        let mut latencies = Vec::with_capacity(self.sent.len());
        while !self.sent.is_empty() {
            match self.connection.recv().await? {
                Some(Message::TaskResult(result)) => {
                    let Some(sent) = self.sent.remove(&result.id) else { continue };
                    latencies.push(sent.elapsed());
                    match result.status {
                        TaskStatus::Done => summary.done += 1,
                        TaskStatus::Failed => {
                            summary.failed += 1;
                            summary
                                .first_failure
                                .get_or_insert_with(|| String::from_utf8_lossy(&result.output).into_owned());
                        }
                        TaskStatus::Cancelled => summary.cancelled += 1,
                    }
                    progress(&summary);
                }
                Some(Message::Goodbye(reason)) => anyhow::bail!("the scheduler closed the connection: {reason}"),
                Some(_) => {}
                None => {
                    anyhow::bail!("the scheduler closed the connection with {} results outstanding", self.sent.len())
                }
            }
        }
        let elapsed = self.started.elapsed();
        latencies.sort();
        summary.p50_ms = percentile(&latencies, 0.50);
        summary.p99_ms = percentile(&latencies, 0.99);
        summary.elapsed_ms = elapsed.as_secs_f64() * 1e3;
        summary.tasks_per_second = summary.submitted as f64 / elapsed.as_secs_f64().max(1e-9);
        self.connection.finish().await;
        Ok(summary)
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e3
}
