//! The swap thread: runs candidates through the pipeline (`policy::candidate`) off the async runtime
//! and off the policy thread, so no decision ever waits on a compilation. A candidate that passes is
//! handed to the policy thread, which installs it between two decisions; one that fails is reported
//! and the active policy keeps serving.
//!
//! This thread owns the configured policy (source, params, limits) and the file watch on it.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::Event;
use super::policy_thread::{FirstDecision, LastSnapshot, PolicyJob};
use super::shell_status::{SwapOutcome, unix_ms};
use super::watch::FileWatch;
use crate::policy::candidate::{self, Candidate, Origin, Rejection};
use crate::policy::{LoadedPolicy, PolicySource, ReadRules, ScalingLimits, component};

/// What asked for a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapTrigger {
    /// The watched `.wasm` changed.
    File,
    /// SIGHUP re-read the configuration.
    Signal,
    /// `POST /policy`.
    Admin,
}

impl SwapTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SwapTrigger::File => "file",
            SwapTrigger::Signal => "sighup",
            SwapTrigger::Admin => "admin",
        }
    }
}

/// A swap request; what it leaves out stays as configured.
#[derive(Debug)]
pub struct SwapRequest {
    pub trigger: SwapTrigger,
    pub origin: Option<Origin>,
    pub params: Option<String>,
    pub limits: Option<ScalingLimits>,
}

/// Travels with a request to its end: when it started, and who waits for the outcome.
#[derive(Debug)]
pub struct Ticket {
    pub trigger: SwapTrigger,
    pub started: Instant,
    pub reply: Option<oneshot::Sender<SwapOutcome>>,
}

impl Ticket {
    /// The outcome, and whoever waits for it. `source` names the candidate. The event loop calls
    /// this, so that `/status` already counts a swap when its requester hears of it.
    pub fn conclude(
        self,
        source: String,
        result: Result<(&str, &str), Rejection>,
    ) -> (SwapOutcome, Option<oneshot::Sender<SwapOutcome>>) {
        let (accepted, digest, name, rejection) = match result {
            Ok((digest, name)) => (true, Some(digest.to_owned()), Some(name.to_owned()), None),
            Err(r) => (false, None, None, Some(r)),
        };
        let outcome = SwapOutcome {
            accepted,
            trigger: self.trigger.as_str(),
            source,
            digest,
            name,
            rejection,
            duration_ms: self.started.elapsed().as_secs_f64() * 1e3,
            at_ms: unix_ms(),
        };
        (outcome, self.reply)
    }
}

pub struct SwapJob {
    pub request: SwapRequest,
    pub ticket: Ticket,
    /// For file triggers: the file's length and modification time when the change was seen, to tell
    /// a half-written file (which changes again) from a broken one.
    pub seen: Option<(u64, SystemTime)>,
}

/// The configured policy, as the last accepted swap left it.
struct Configured {
    origin: Origin,
    params: String,
    limits: ScalingLimits,
    digest: String,
}

/// A swap that failed: who asked, what it was, and the stage and reason.
pub type Rejected = Box<(Ticket, String, Rejection)>;

/// Starts the swap thread; it ends when every job sender is dropped.
pub(crate) fn spawn(
    initial: &Candidate,
    policy_jobs: std_mpsc::Sender<PolicyJob>,
    last: LastSnapshot,
    first_decision: Arc<FirstDecision>,
    events: mpsc::UnboundedSender<Event>,
    rules: ReadRules,
    queue: usize,
) -> std_mpsc::SyncSender<SwapJob> {
    let (tx, rx) = std_mpsc::sync_channel::<SwapJob>(queue);
    let mut configured = Configured {
        origin: initial.origin.clone(),
        params: initial.params.clone(),
        limits: initial.limits.clone(),
        digest: initial.policy.digest.clone(),
    };
    let own_jobs = tx.clone();
    // Watching starts here, before the scheduler says it is listening, so no early change is missed.
    let mut watch = None;
    rewatch(&mut watch, &configured.origin, &own_jobs);
    let mut optimizer = Optimizer::new(policy_jobs.clone(), first_decision);
    std::thread::Builder::new()
        .name("ebbtide-swap".into())
        .spawn(move || {
            for job in rx {
                let Some(outcome) = run(job, &mut configured, &last, &rules) else { continue };
                match outcome {
                    Ok((candidate, ticket, bytes)) => {
                        // Watch the new file before the swap is reported, so that a change right
                        // after the report is seen.
                        rewatch(&mut watch, &configured.origin, &own_jobs);
                        let baseline = candidate.policy.is_baseline();
                        let (limits, digest) = (candidate.limits.call(), candidate.policy.digest.clone());
                        let _ = policy_jobs.send(PolicyJob::Install(candidate, ticket));
                        if baseline {
                            optimizer.submit(Waiting { bytes, digest, limits });
                        }
                    }
                    Err(rejected) => {
                        if events.send(Event::SwapRejected(rejected)).is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .expect("spawning the swap thread");
    tx
}

/// The optimizing compiles of tiered swaps: one at a time, on one thread, so that the next swap need
/// not wait for one. A build installed while another compiles takes the waiting place, replacing any
/// build already there: only the newest installed build can still be active (the policy thread drops
/// an optimized build whose digest no longer is), so a burst of swaps holds one compile and one
/// waiting build, never a thread or a compile each.
struct Optimizer {
    waiting: Arc<(Mutex<Option<Waiting>>, Condvar)>,
    policy_jobs: std_mpsc::Sender<PolicyJob>,
    first_decision: Arc<FirstDecision>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A build waiting for its optimized compile, with the limits it was installed with.
struct Waiting {
    bytes: Arc<Vec<u8>>,
    digest: String,
    limits: crate::policy::CallLimits,
}

/// How long an optimizing compile waits for its build's first decision (see [`FirstDecision`]).
const FIRST_DECISION_WAIT: Duration = Duration::from_secs(1);

impl Optimizer {
    fn new(policy_jobs: std_mpsc::Sender<PolicyJob>, first_decision: Arc<FirstDecision>) -> Self {
        Optimizer { waiting: Arc::default(), policy_jobs, first_decision, thread: None }
    }

    /// Queues a build for an optimized compile, in place of any build still waiting.
    fn submit(&mut self, build: Waiting) {
        let (slot, wake) = &*self.waiting;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(build);
        wake.notify_one();
        if self.thread.is_none() {
            let (waiting, policy_jobs) = (self.waiting.clone(), self.policy_jobs.clone());
            let first_decision = self.first_decision.clone();
            match std::thread::Builder::new()
                .name("ebbtide-optimize".into())
                .spawn(move || optimize(&waiting, &policy_jobs, &first_decision))
            {
                Ok(thread) => self.thread = Some(thread),
                Err(e) => {
                    tracing::warn!("swap: cannot start the optimizing compiles ({e}); baseline builds keep deciding")
                }
            }
        }
    }
}

/// Compiles each waiting build with the optimizing compiler, once it has decided, and hands it to
/// the policy thread, until the policy thread is gone.
fn optimize(
    waiting: &(Mutex<Option<Waiting>>, Condvar),
    policy_jobs: &std_mpsc::Sender<PolicyJob>,
    first_decision: &FirstDecision,
) {
    let (slot, wake) = waiting;
    loop {
        let Waiting { bytes, digest, limits } = {
            let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            let mut guard = wake.wait_while(guard, |w| w.is_none()).unwrap_or_else(|e| e.into_inner());
            guard.take().expect("woken with a waiting build")
        };
        first_decision.wait(&digest, FIRST_DECISION_WAIT);
        let started = Instant::now();
        match LoadedPolicy::load(&bytes, limits) {
            Ok(policy) => {
                tracing::info!(
                    "swap: the optimized build of {} {} compiled in {:.0} ms",
                    policy.info.name,
                    &policy.digest[..12],
                    started.elapsed().as_secs_f64() * 1e3
                );
                if policy_jobs.send(PolicyJob::Optimized(Arc::new(policy))).is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!("swap: no optimized build ({e}); the baseline build keeps deciding"),
        }
    }
}

/// A swap's candidate, the ticket it travels with, and its bytes.
type Passed = (Box<Candidate>, Ticket, Arc<Vec<u8>>);

/// One request through the pipeline. `None`: nothing to report (a file that has not changed, or is
/// still being written); `Ok`: the candidate to install; `Err`: rejected. A build that would need
/// compiling is compiled with the baseline compiler, so it decides sooner (see [`optimize`]).
fn run(
    job: SwapJob,
    configured: &mut Configured,
    last: &LastSnapshot,
    rules: &ReadRules,
) -> Option<Result<Passed, Rejected>> {
    let SwapJob { request, ticket, seen } = job;
    let origin = request.origin.unwrap_or_else(|| configured.origin.clone());
    let params = request.params.unwrap_or_else(|| configured.params.clone());
    let limits = request.limits.unwrap_or_else(|| configured.limits.clone());
    let label = origin.label();
    let bytes = match origin.read(rules) {
        Ok(bytes) => bytes,
        Err(rejection) => return Some(Err(Box::new((ticket, label, rejection)))),
    };
    let digest = component::digest(&bytes);
    if ticket.trigger == SwapTrigger::File && digest == configured.digest {
        return None; // Touched, or rewritten with the same bytes.
    }
    let last = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let dry_run = last.as_ref().map(|(snapshot, state)| (&**snapshot, state.as_slice()));
    let baseline = !LoadedPolicy::is_compiled(&digest);
    match candidate::prepare_with(origin.clone(), &bytes, params.clone(), limits.clone(), dry_run, baseline) {
        Ok(candidate) => {
            tracing::info!(
                "swap ({}): {} {} from {label} passed every stage; installing",
                ticket.trigger.as_str(),
                candidate.policy.info.name,
                &candidate.policy.digest[..12]
            );
            if candidate.policy.is_baseline() {
                crate::policy::compile_cache::count_baseline();
                tracing::info!(
                    "swap: {} decides with its baseline (Winch) build until Cranelift has compiled it",
                    &digest[..12]
                );
            }
            *configured = Configured { origin, params, limits, digest: candidate.policy.digest.clone() };
            Some(Ok((Box::new(candidate), ticket, bytes)))
        }
        Err(rejection) => {
            if still_changing(&origin, seen) {
                tracing::debug!("{label} is still being written; waiting for the next change");
                return None;
            }
            tracing::warn!(
                "swap ({}) of {label} {rejection}; the active policy keeps serving",
                ticket.trigger.as_str()
            );
            Some(Err(Box::new((ticket, label, rejection))))
        }
    }
}

/// A watched file that changed since its change was seen: the next change event retries it.
fn still_changing(origin: &Origin, seen: Option<(u64, SystemTime)>) -> bool {
    let (Origin::Source(PolicySource::File(path)), Some(seen)) = (origin, seen) else { return false };
    super::watch::stamp(path) != Some(seen)
}

/// Watches the configured file, if the policy comes from one (and the watch is not already on it).
fn rewatch(watch: &mut Option<FileWatch>, origin: &Origin, jobs: &std_mpsc::SyncSender<SwapJob>) {
    let path: Option<PathBuf> = match origin {
        Origin::Source(PolicySource::File(path)) => Some(path.clone()),
        _ => None,
    };
    if watch.as_ref().map(|w| w.path()) == path.as_deref() {
        return;
    }
    *watch = path.and_then(|path| match FileWatch::start(path.clone(), jobs.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot watch {} for changes ({e:#}); swap it with SIGHUP or POST /policy", path.display());
            None
        }
    });
}
