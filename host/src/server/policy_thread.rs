//! The policy runs on its own thread, off the async runtime: a slow or failing policy never delays
//! I/O. Decisions arrive one at a time (the core keeps at most one in flight).

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use ebbtide_sdk::Snapshot;
use tokio::sync::mpsc;

use super::Event;
use crate::policy::{Decider, LoadedPolicy};
use crate::scheduler::Input;

pub struct DecideJob {
    pub seq: u64,
    pub snapshot: Snapshot,
    pub state: Vec<u8>,
}

/// Starts the policy thread; it ends when the job sender is dropped.
pub fn spawn(
    policy: Arc<LoadedPolicy>,
    params: String,
    events: mpsc::UnboundedSender<Event>,
) -> std_mpsc::Sender<DecideJob> {
    let (tx, rx) = std_mpsc::channel::<DecideJob>();
    std::thread::Builder::new()
        .name("ebbtide-policy".into())
        .spawn(move || {
            // One instance kept between decisions; replaced after any failure.
            let mut decider = Decider::new(policy, true);
            for job in rx {
                let started = Instant::now();
                let outcome = decider.decide(&params, &job.snapshot, &job.state).map_err(|e| e.to_string());
                let duration_us = started.elapsed().as_micros() as u64;
                let input = Input::Decided { seq: job.seq, outcome, duration_us };
                if events.send(Event::Input(input)).is_err() {
                    break;
                }
            }
        })
        .expect("spawning the policy thread");
    tx
}
