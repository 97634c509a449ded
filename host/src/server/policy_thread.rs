//! The active policy runs on its own thread, off the async runtime: a slow or failing policy never
//! delays I/O. Jobs arrive in order, one decision at a time (the core keeps at most one in flight),
//! so an installation always lands between two decisions.
//!
//! This thread also owns the fallback: after `max_consecutive_failures` failed decisions in a row the
//! configured built-in decides, until the next installation.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ebbtide_sdk::Snapshot;
use tokio::sync::mpsc;

use super::swap::Ticket;
use super::{Event, PolicyStatus};
use crate::policy::candidate::Candidate;
use crate::policy::{Decider, LoadedPolicy};
use crate::scheduler::record::DecidedBy;
use crate::scheduler::{DecisionFailure, Input};

pub struct DecideJob {
    pub seq: u64,
    pub snapshot: Arc<Snapshot>,
    pub state: Vec<u8>,
}

pub enum PolicyJob {
    Decide(DecideJob),
    /// Replace the active policy (it passed the swap pipeline).
    Install(Box<Candidate>, Ticket),
    /// The optimized build of the active policy, which serves from its baseline build: replaces it
    /// if it is still active (same digest), between two decisions.
    Optimized(Arc<LoadedPolicy>),
}

/// The last baseline build to decide. The optimizing compile of a new build waits for its first
/// decision, which a swap asks for at once: Cranelift keeps every core busy while it compiles, and
/// that decision would otherwise wait 5 to 10 ms for one (measured with `cargo bench --bench swap`).
#[derive(Default)]
pub struct FirstDecision {
    digest: Mutex<Option<String>>,
    changed: Condvar,
}

impl FirstDecision {
    fn decided(&self, digest: &str) {
        let mut last = self.digest.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(digest) {
            *last = Some(digest.to_owned());
            self.changed.notify_all();
        }
    }

    /// Waits until the build `digest` has decided, or `timeout` has passed (a scheduler with
    /// nothing to decide still gets its optimized build).
    pub fn wait(&self, digest: &str, timeout: Duration) {
        let last = self.digest.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.changed.wait_timeout_while(last, timeout, |d| d.as_deref() != Some(digest));
    }
}

/// The snapshot and state of the last decision: what a candidate's dry run decides on.
pub type LastSnapshot = Arc<Mutex<Option<(Arc<Snapshot>, Vec<u8>)>>>;

/// A policy able to decide, and who it is for the decision log.
struct Deciding {
    decider: Decider,
    params: String,
    by: Arc<DecidedBy>,
}

impl Deciding {
    fn new(candidate: &Candidate, fallback: bool) -> Self {
        let (policy, params) = if fallback {
            (candidate.fallback.clone(), candidate.fallback_params.clone())
        } else {
            (candidate.policy.clone(), candidate.params.clone())
        };
        let source = if fallback {
            format!("builtin:{} (fallback)", candidate.limits.fallback)
        } else {
            candidate.origin.label()
        };
        let by = Arc::new(DecidedBy::new(&policy.digest, source, &params));
        Deciding { decider: Decider::preferred(policy), params, by }
    }
}

struct Active {
    candidate: Candidate,
    policy: Deciding,
    failures: u32,
    fallback: Option<Deciding>,
}

impl Active {
    fn new(candidate: Candidate) -> Self {
        Active { policy: Deciding::new(&candidate, false), candidate, failures: 0, fallback: None }
    }

    /// Moves the policy to its optimized build when `optimized` is the one serving from its baseline
    /// build; the decisions, the failure count and the fallback go on as they were.
    fn optimize(&mut self, optimized: Arc<LoadedPolicy>) {
        let current = &self.candidate.policy;
        if current.digest != optimized.digest || !current.is_baseline() {
            return; // Replaced by another swap meanwhile.
        }
        tracing::info!(
            "swap: {} {} now decides with its optimized (Cranelift) build",
            optimized.info.name,
            &optimized.digest[..12]
        );
        crate::policy::compile_cache::count_optimized();
        self.candidate.policy = optimized;
        self.policy = Deciding::new(&self.candidate, false);
    }

    /// Decides with the policy, or the fallback once engaged. Returns the outcome, who decided, and
    /// the reason when this failure just engaged the fallback.
    fn decide(
        &mut self,
        job: &DecideJob,
    ) -> (Result<ebbtide_sdk::Decision, DecisionFailure>, Arc<DecidedBy>, Option<String>) {
        let deciding = self.fallback.as_mut().unwrap_or(&mut self.policy);
        let outcome = deciding
            .decider
            .decide(&deciding.params, &job.snapshot, &job.state)
            .map_err(|e| DecisionFailure::new(e.kind(), e.to_string()));
        let by = deciding.by.clone();
        if self.fallback.is_some() {
            return (outcome, by, None);
        }
        let mut engaged = None;
        match &outcome {
            Ok(_) => self.failures = 0,
            Err(error) => {
                self.failures += 1;
                let max = self.candidate.limits.max_consecutive_failures;
                if self.failures >= max {
                    let reason = format!("{max} consecutive failed decisions; the last: {error}");
                    tracing::error!(
                        "policy {} is failing; the fallback {} decides until a new policy is loaded ({reason})",
                        self.candidate.policy.info.name,
                        self.candidate.limits.fallback
                    );
                    self.fallback = Some(Deciding::new(&self.candidate, true));
                    engaged = Some(reason);
                }
            }
        }
        (outcome, by, engaged)
    }
}

/// Starts the policy thread with `initial` installed; it ends when every job sender is dropped.
pub fn spawn(
    initial: Candidate,
    last: LastSnapshot,
    first_decision: Arc<FirstDecision>,
    events: mpsc::UnboundedSender<Event>,
) -> std_mpsc::Sender<PolicyJob> {
    let (tx, rx) = std_mpsc::channel::<PolicyJob>();
    std::thread::Builder::new()
        .name("ebbtide-policy".into())
        .spawn(move || {
            let mut active = Active::new(initial);
            for job in rx {
                let event = match job {
                    PolicyJob::Optimized(policy) => {
                        active.optimize(policy);
                        continue;
                    }
                    PolicyJob::Install(candidate, ticket) => {
                        active = Active::new(*candidate);
                        let status = PolicyStatus::of(&active.candidate);
                        Event::Installed(Box::new((status, ticket)))
                    }
                    PolicyJob::Decide(job) => {
                        *last.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((job.snapshot.clone(), job.state.clone()));
                        let started = Instant::now();
                        let (outcome, by, engaged) = active.decide(&job);
                        let duration_us = started.elapsed().as_micros() as u64;
                        if active.candidate.policy.is_baseline() {
                            first_decision.decided(&active.candidate.policy.digest);
                        }
                        if let Some(reason) = engaged {
                            let _ = events.send(Event::Fallback(reason));
                        }
                        Event::Decided { input: Input::Decided { seq: job.seq, outcome, duration_us }, by }
                    }
                };
                if events.send(event).is_err() {
                    break;
                }
            }
        })
        .expect("spawning the policy thread");
    tx
}
