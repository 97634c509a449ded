//! `ebbtide replay DECISION_LOG`: re-runs every logged decision on its logged snapshot and state.
//!
//! Determinism mode (the default): every line is replayed with the very build that made it, found by
//! its sha256 (at the source the line names, or among `--build` files); a line whose build is not
//! available is reported and skipped. Exit 1 on any difference or skip, 0 only when everything is
//! equal. What-if mode (`--policy`, `--params`): differences are the point: it counts them and lists
//! the starts and shutdowns added and removed, so a policy can be judged on yesterday's traffic
//! before it is swapped in, and exits 0.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use clap::Args;
use ebbtide_sdk::vectors::ReadableCommand;
use ebbtide_sdk::{Diagnostic, Snapshot, Trigger};
use serde::Deserialize;

use super::Outcome;
use crate::policy::{CallLimits, LoadedPolicy, PolicySource};
use crate::scheduler::readable;

#[derive(Args)]
pub struct ReplayArgs {
    /// A file written by `--decision-log`.
    #[arg(value_name = "DECISION_LOG")]
    decision_log: PathBuf,
    /// What-if: replay with this policy (built-in name or .wasm path) instead of the one each line names.
    #[arg(long)]
    policy: Option<String>,
    /// What-if: params as a JSON object. Default: the params each line was decided with; with --policy,
    /// `{}` (the candidate's defaults).
    #[arg(long)]
    params: Option<String>,
    /// A .wasm build that some lines were decided with (an earlier build of a policy file, or an
    /// upload), matched to lines by sha256. Repeatable.
    #[arg(long = "build", value_name = "WASM")]
    builds: Vec<PathBuf>,
    /// How many differing or skipped decisions to print in full.
    #[arg(long, default_value_t = 10)]
    show: usize,
}

/// The fields of a decision-log line that a replay needs.
#[derive(Deserialize)]
struct Logged {
    seq: u64,
    trigger: Trigger,
    policy_digest: String,
    policy_source: String,
    params: serde_json::Value,
    snapshot: Snapshot,
    state: String,
    commands: Vec<ReadableCommand>,
    diagnostics: Vec<Diagnostic>,
    error: Option<String>,
}

/// What a decision produced, in the terms of the log.
#[derive(PartialEq)]
struct Produced {
    commands: Vec<ReadableCommand>,
    diagnostics: Vec<Diagnostic>,
    failed: bool,
}

/// Starts and shutdowns one side has and the other lacks (as multisets).
#[derive(Default)]
struct Delta {
    added: Vec<ReadableCommand>,
    removed: Vec<ReadableCommand>,
}

/// The builds that made the logged decisions, by sha256: those named with `--build`, and those
/// found at the source a line names when their digest matches. A digest whose build is nowhere to
/// be found maps to the reason, so that each line of it is skipped, never replayed with another build.
#[derive(Default)]
struct Builds {
    by_digest: HashMap<String, Result<Arc<LoadedPolicy>, String>>,
}

impl Builds {
    fn with_files(files: &[PathBuf]) -> anyhow::Result<Builds> {
        let mut builds = Builds::default();
        for file in files {
            let spec = file.to_str().with_context(|| format!("--build {}: not a UTF-8 path", file.display()))?;
            let policy = load(spec).with_context(|| format!("--build {}", file.display()))?;
            builds.by_digest.insert(policy.digest.clone(), Ok(policy));
        }
        Ok(builds)
    }

    /// The build that made `logged`, or why it is not available.
    fn of(&mut self, logged: &Logged) -> Result<Arc<LoadedPolicy>, String> {
        if let Some(found) = self.by_digest.get(&logged.policy_digest) {
            return found.clone();
        }
        // A fallback decision names its built-in as `builtin:NAME (fallback)`.
        let source = logged.policy_source.trim_end_matches(" (fallback)");
        let spec = source.strip_prefix("builtin:").unwrap_or(source);
        let short = &logged.policy_digest[..logged.policy_digest.len().min(16)];
        let found = if spec == "upload" || spec.is_empty() {
            Err(format!("made by an upload with sha256 {short}; name its file with --build"))
        } else {
            match load(spec) {
                Ok(policy) if policy.digest == logged.policy_digest => Ok(policy),
                Ok(policy) => {
                    let now = format!("{source} is now sha256 {}", &policy.digest[..16]);
                    self.by_digest.entry(policy.digest.clone()).or_insert(Ok(policy));
                    Err(format!("made by {source} with sha256 {short}, but {now}; name the old build with --build"))
                }
                Err(e) => Err(format!("made by {source} with sha256 {short}, which cannot be loaded: {e:#}")),
            }
        };
        self.by_digest.insert(logged.policy_digest.clone(), found.clone());
        found
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<Outcome> {
    let candidate = args.policy.as_deref().map(load).transpose()?;
    let what_if = candidate.is_some() || args.params.is_some();
    let mut builds = Builds::with_files(&args.builds)?;
    let file = std::fs::File::open(&args.decision_log)
        .with_context(|| format!("cannot read {}", args.decision_log.display()))?;
    let (mut total, mut equal, mut skipped) = (0usize, 0usize, Vec::new());
    let mut summary: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let logged: Logged = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a decision-log line", args.decision_log.display(), index + 1))?;
        let policy = match &candidate {
            Some(p) => p.clone(),
            None => match builds.of(&logged) {
                Ok(p) => p,
                Err(why) => {
                    if skipped.len() < args.show {
                        println!("seq {} ({:?}) SKIPPED: {why}", logged.seq, logged.trigger);
                    }
                    skipped.push(logged.seq);
                    continue;
                }
            },
        };
        let params = match (&args.params, &candidate) {
            (Some(p), _) => p.clone(),
            (None, Some(_)) => "{}".to_owned(),
            (None, None) => logged.params.to_string(),
        };
        let produced = replay(&policy, &params, &logged)?;
        let recorded = Produced {
            commands: logged.commands.clone(),
            diagnostics: logged.diagnostics.clone(),
            failed: logged.error.is_some(),
        };
        total += 1;
        if produced == recorded {
            equal += 1;
            continue;
        }
        let delta = delta(&recorded.commands, &produced.commands);
        for c in &delta.added {
            summary.entry(kind(c)).or_default().0 += 1;
        }
        for c in &delta.removed {
            summary.entry(kind(c)).or_default().1 += 1;
        }
        if total - equal <= args.show {
            let label = if what_if { "differs" } else { "NOT REPRODUCED" };
            println!("seq {} ({:?}) {label}: {}", logged.seq, logged.trigger, describe(&delta, &recorded, &produced));
        }
    }
    let differ = total - equal;
    println!("replayed {total} decisions: {equal} equal, {differ} differ");
    for (kind, (added, removed)) in &summary {
        println!("  {kind}: +{added} added, -{removed} removed");
    }
    if !skipped.is_empty() {
        println!("skipped {} decisions whose build is not available: seq {}", skipped.len(), ranges(&skipped));
    }
    if what_if {
        return Ok(Outcome::Success);
    }
    if differ > 0 {
        println!("{differ} decisions were not reproduced by the build that made them: it is not deterministic");
    }
    Ok(if differ > 0 || !skipped.is_empty() { Outcome::Failed } else { Outcome::Success })
}

/// `1-3, 7, 9-12`: sequence numbers, ascending, as runs.
fn ranges(seqs: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &seq in seqs {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == seq => *end = seq,
            _ => runs.push((seq, seq)),
        }
    }
    let runs: Vec<String> =
        runs.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    runs.join(", ")
}

fn load(spec: &str) -> anyhow::Result<Arc<LoadedPolicy>> {
    let source = PolicySource::parse(spec, None)?;
    source.load(CallLimits::default()).with_context(|| format!("cannot load policy {source}"))
}

fn replay(policy: &LoadedPolicy, params: &str, logged: &Logged) -> anyhow::Result<Produced> {
    let state = base64::engine::general_purpose::STANDARD
        .decode(&logged.state)
        .with_context(|| format!("decision {}: the state is not base64", logged.seq))?;
    Ok(match policy.decide(params, &logged.snapshot, &state) {
        Ok(d) => Produced {
            commands: d.commands.iter().map(|c| readable(c, &logged.snapshot)).collect(),
            diagnostics: d.diagnostics,
            failed: false,
        },
        Err(_) => Produced { commands: Vec::new(), diagnostics: Vec::new(), failed: true },
    })
}

fn delta(recorded: &[ReadableCommand], produced: &[ReadableCommand]) -> Delta {
    let mut left: Vec<ReadableCommand> = recorded.to_vec();
    let mut delta = Delta::default();
    for c in produced {
        match left.iter().position(|l| l == c) {
            Some(i) => {
                left.swap_remove(i);
            }
            None => delta.added.push(c.clone()),
        }
    }
    delta.removed = left;
    delta
}

fn kind(c: &ReadableCommand) -> &'static str {
    match c {
        ReadableCommand::Start { .. } => "starts",
        ReadableCommand::Shutdown(_) => "shutdowns",
    }
}

fn describe(delta: &Delta, recorded: &Produced, produced: &Produced) -> String {
    let mut parts: Vec<String> = delta.added.iter().map(|c| format!("+{c}")).collect();
    parts.extend(delta.removed.iter().map(|c| format!("-{c}")));
    if recorded.failed != produced.failed {
        parts.push(if produced.failed { "now fails".into() } else { "now succeeds".into() });
    }
    if parts.is_empty() {
        parts.push("same commands, other order or diagnostics".into());
    }
    parts.join(", ")
}
