//! The swap pipeline (docs/architecture.md#the-policy-runtime): a candidate policy must pass every stage, in order,
//! before it may replace the active one. Each failure names its stage, so an operator knows whether
//! the bytes, the contract, the params or the behaviour was wrong.
//!
//! CPU-heavy (compilation): call off any async runtime.

use std::sync::Arc;

use ebbtide_sdk::{Decision, Snapshot};
use serde::Serialize;

use super::limits::ScalingLimits;
use super::source::ReadRules;
use super::{LoadedPolicy, PolicyError, PolicySource, SourceError, builtin, sample};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Reading the configuration or the file.
    Read,
    /// Parsing and compiling the bytes.
    Compile,
    /// Checking the world and contract version.
    World,
    Describe,
    Validate,
    /// `decide` on the last snapshot and on the sample snapshots, within the limits ([`dry_run`]).
    DryRun,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Compile => "compile",
            Stage::World => "world",
            Stage::Describe => "describe",
            Stage::Validate => "validate",
            Stage::DryRun => "dry-run",
        }
    }
}

/// Why a candidate was refused: the stage, a message, and the typed error behind it when there is one
/// (`std::error::Error::source`).
#[derive(Clone, Debug, Serialize)]
pub struct Rejection {
    pub stage: Stage,
    pub error: String,
    #[serde(skip)]
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rejected at {}: {}", self.stage.as_str(), self.error)
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Rejection {
    pub fn new(stage: Stage, error: impl Into<String>) -> Self {
        Rejection { stage, error: error.into(), cause: None }
    }

    /// A rejection caused by `error`, whose message it carries and which it keeps as its source.
    pub fn caused_by(stage: Stage, error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Rejection { stage, error: error.to_string(), cause: Some(Arc::new(error)) }
    }

    /// The same rejection, its message preceded by `context`.
    fn context(mut self, context: &str) -> Self {
        self.error = format!("{context}: {}", self.error);
        self
    }
}

/// Where a candidate's bytes come from.
#[derive(Clone, Debug)]
pub enum Origin {
    Source(PolicySource),
    /// Bytes sent to `POST /policy`.
    Upload(Arc<Vec<u8>>),
}

impl Origin {
    /// How `/status` and the decision log name it.
    pub fn label(&self) -> String {
        match self {
            Origin::Source(s) => s.to_string(),
            Origin::Upload(_) => "upload".into(),
        }
    }

    /// The candidate's bytes, read under `rules` (an upload is held to the same size cap).
    pub fn read(&self, rules: &ReadRules) -> Result<Arc<Vec<u8>>, Rejection> {
        match self {
            Origin::Source(s) => s.read_with(rules).map(Arc::new).map_err(|e| Rejection::caused_by(Stage::Read, e)),
            Origin::Upload(bytes) if bytes.len() > rules.max_bytes => Err(Rejection::new(
                Stage::Read,
                format!(
                    "the upload is {} bytes, over the limit of {} (max_policy_bytes)",
                    bytes.len(),
                    rules.max_bytes
                ),
            )),
            Origin::Upload(bytes) => Ok(bytes.clone()),
        }
    }
}

/// A policy that passed every stage: ready to install.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub policy: Arc<LoadedPolicy>,
    pub origin: Origin,
    pub params: String,
    pub limits: ScalingLimits,
    /// The built-in that decides if this policy keeps failing (loaded now, so engaging it costs nothing).
    pub fallback: Arc<LoadedPolicy>,
    /// The fallback's params (`fallback_params`), as JSON text; checked like the policy's.
    pub fallback_params: String,
}

/// Runs every stage on `bytes`. `last` is the snapshot and state of the last decision, if any; before
/// the first decision the cluster is empty, and so is the dry run's snapshot.
pub fn prepare(
    origin: Origin,
    bytes: &[u8],
    params: String,
    limits: ScalingLimits,
    last: Option<(&Snapshot, &[u8])>,
) -> Result<Candidate, Rejection> {
    prepare_with(origin, bytes, params, limits, last, false)
}

/// [`prepare`], compiling with the baseline compiler when `baseline` (and one is available): the
/// candidate serves at once, and its optimized build replaces it when ready (see `server::swap`).
pub fn prepare_with(
    origin: Origin,
    bytes: &[u8],
    params: String,
    limits: ScalingLimits,
    last: Option<(&Snapshot, &[u8])>,
    baseline: bool,
) -> Result<Candidate, Rejection> {
    limits.validate().map_err(|e| Rejection::new(Stage::Read, format!("[scaling.limits] {e}")))?;
    let loaded = match baseline.then(|| LoadedPolicy::load_baseline(bytes, limits.call())).flatten() {
        Some(loaded) => loaded,
        None => LoadedPolicy::load(bytes, limits.call()),
    };
    let policy = loaded.map_err(|e| Rejection::caused_by(load_stage(&e), e))?;
    let policy = Arc::new(policy);
    check_params(&policy, &params)?;
    dry_run(&policy, &params, last, |_, _| {})?;
    // The fallback passes the same stages with its own params: it must be able to decide the day
    // the policy cannot.
    let context = format!("the fallback {} (fallback_params in [scaling.limits])", limits.fallback);
    let fallback = load_builtin(&limits.fallback, &limits).map_err(|r| r.context(&context))?;
    let fallback_params = limits.fallback_params_json();
    check_params(&fallback, &fallback_params).map_err(|r| r.context(&context))?;
    dry_run(&fallback, &fallback_params, last.map(|(snapshot, _)| (snapshot, &[][..])), |_, _| {})
        .map_err(|r| r.context(&context))?;
    Ok(Candidate { policy, origin, params, limits, fallback, fallback_params })
}

/// The dry run, the same for a swap, the start-up load and `policy check`: `decide` on the last
/// decision's snapshot and state (an empty snapshot before the first decision), then on the small and
/// large sample snapshots (`policy::sample`) with empty state. An idle scheduler's snapshot has no
/// work in it; the samples have pending and running tasks, starting, running and draining groups,
/// bounded and unbounded adapters and metrics, so a build that fails only under load fails here.
/// Each call runs under the policy's own limits (its deadline, memory and fuel), which bound the
/// whole dry run at three deadlines. `seen` gets each input's name and decision.
pub fn dry_run(
    policy: &LoadedPolicy,
    params: &str,
    last: Option<(&Snapshot, &[u8])>,
    mut seen: impl FnMut(&str, &Decision),
) -> Result<(), Rejection> {
    let empty = Snapshot::default();
    let (snapshot, state) = last.unwrap_or((&empty, &[]));
    let small = sample::snapshot(sample::Size::Small);
    let large = sample::snapshot(sample::Size::Large);
    let inputs = [
        (if last.is_some() { "last snapshot" } else { "empty snapshot" }, snapshot, state),
        ("small sample snapshot", &small, &[][..]),
        ("large sample snapshot", &large, &[][..]),
    ];
    for (name, snapshot, state) in inputs {
        let decision = policy.decide(params, snapshot, state).map_err(|e| {
            let mut rejection = Rejection::caused_by(Stage::DryRun, e);
            rejection.error = format!("{} (deciding the {name})", rejection.error);
            rejection
        })?;
        seen(name, &decision);
    }
    Ok(())
}

/// Params are a JSON object; the error says so, with an example.
pub fn json_object(params: &str) -> Result<(), String> {
    match serde_json::from_str::<serde_json::Value>(params) {
        Ok(v) if v.is_object() => Ok(()),
        _ => Err(format!("params must be a JSON object such as {{\"upper_task_ratio\": 8}}, got {params}")),
    }
}

/// `validate(params)`, after checking they are a JSON object.
pub fn check_params(policy: &LoadedPolicy, params: &str) -> Result<(), Rejection> {
    let reject = |e: String| Rejection::new(Stage::Validate, e);
    json_object(params).map_err(reject)?;
    match policy.validate(params) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(errors)) => {
            Err(reject(format!("{} does not accept these params: {}", policy.info.name, errors.join("; "))))
        }
        Err(e) => Err(Rejection::caused_by(Stage::Validate, e)),
    }
}

/// A built-in, by name, under `limits`.
pub fn load_builtin(name: &str, limits: &ScalingLimits) -> Result<Arc<LoadedPolicy>, Rejection> {
    let source = builtin::find(name)
        .map(|b| PolicySource::Builtin(b.name))
        .ok_or_else(|| Rejection::caused_by(Stage::Read, SourceError::Unknown(name.to_owned())))?;
    source.load(limits.call()).map_err(|e| Rejection::caused_by(Stage::Compile, e))
}

/// Which stage a loading error belongs to (loading covers compile, world and describe).
fn load_stage(e: &PolicyError) -> Stage {
    match e {
        PolicyError::InvalidComponent(_) => Stage::Compile,
        PolicyError::Incompatible(_) => Stage::World,
        _ => Stage::Describe,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_rejection_is_an_error_whose_source_is_the_typed_cause() {
        let r = Rejection::caused_by(Stage::DryRun, PolicyError::Refused("no roles".into()));
        assert_eq!(r.to_string(), "rejected at dry-run: policy-error: the policy refused to decide: no roles");
        let source = r.source().expect("the cause is kept");
        assert_eq!(source.downcast_ref::<PolicyError>().map(PolicyError::kind), Some("policy-error"));
        assert!(Rejection::new(Stage::Read, "unreadable").source().is_none());
    }

    #[test]
    fn a_fallback_that_cannot_decide_is_rejected_with_the_reason() {
        let limits = ScalingLimits { fallback: "buffer".into(), ..ScalingLimits::default() };
        let bytes = PolicySource::Builtin("vanilla").read().expect("a built-in");
        let r = prepare(Origin::Upload(Arc::new(bytes.clone())), &bytes, "{}".into(), limits, None)
            .expect_err("buffer needs adapter_id");
        assert_eq!(r.stage, Stage::Validate, "{r}");
        assert!(r.error.contains("the fallback buffer") && r.error.contains("adapter_id"), "{r}");

        let mut limits = ScalingLimits { fallback: "buffer".into(), ..ScalingLimits::default() };
        limits.fallback_params = serde_json::from_str(r#"{"adapter_id": "pool"}"#).ok();
        let c = prepare(Origin::Upload(Arc::new(bytes.clone())), &bytes, "{}".into(), limits, None).expect("accepted");
        assert_eq!(c.fallback_params, r#"{"adapter_id":"pool"}"#);
    }
}
