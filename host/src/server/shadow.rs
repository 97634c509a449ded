//! Shadow mode: a candidate decides on every snapshot beside the active policy, on its own thread
//! and within its own limits, with its own state. Its commands are only compared, never executed, so
//! a failing or slow shadow cannot affect the active policy.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use ebbtide_sdk::Snapshot;
use ebbtide_sdk::vectors::ReadableCommand;
use tokio::sync::mpsc;

use super::Event;
use crate::policy::{Decider, LoadedPolicy};
use crate::scheduler::readable;

/// Snapshots waiting for the shadow; beyond this it is too slow and skips some.
const BACKLOG: usize = 16;

pub struct ShadowJob {
    pub seq: u64,
    pub snapshot: Arc<Snapshot>,
}

/// The shadow's answer for decision `seq`: its commands, or why it failed.
pub type ShadowAnswer = Result<Vec<ReadableCommand>, String>;

pub struct Shadow {
    jobs: std_mpsc::SyncSender<ShadowJob>,
    pub digest: String,
}

impl Shadow {
    pub fn spawn(policy: Arc<LoadedPolicy>, params: String, events: mpsc::UnboundedSender<Event>) -> Shadow {
        let (tx, rx) = std_mpsc::sync_channel::<ShadowJob>(BACKLOG);
        let digest = policy.digest.clone();
        std::thread::Builder::new()
            .name("ebbtide-shadow".into())
            .spawn(move || {
                let mut decider = Decider::preferred(policy);
                let mut state = Vec::new();
                for job in rx {
                    let answer = match decider.decide(&params, &job.snapshot, &state) {
                        Ok(decision) => {
                            state = decision.state;
                            Ok(decision.commands.iter().map(|c| readable(c, &job.snapshot)).collect())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    if events.send(Event::Shadow { seq: job.seq, answer }).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the shadow thread");
        Shadow { jobs: tx, digest }
    }

    /// Hands a snapshot to the shadow; false when it is too far behind to take it.
    pub fn offer(&self, job: ShadowJob) -> bool {
        self.jobs.try_send(job).is_ok()
    }
}
