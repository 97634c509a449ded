//! `ebbtide replay DECISION_LOG`: re-runs every logged decision on its logged snapshot and state.
//!
//! A decision replayed with the very policy that made it (same digest) must come out exactly the
//! same: any difference is a determinism failure and the command exits 1. With a candidate
//! (`--policy`), differences are the point: it counts them and lists the starts and shutdowns added
//! and removed, so a policy can be judged on yesterday's traffic before it is swapped in.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
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
    /// Replay with this policy (built-in name or .wasm path) instead of the one each line names.
    #[arg(long)]
    policy: Option<String>,
    /// Params as a JSON object. Default: the params each line was decided with; with --policy, `{}`
    /// (the candidate's defaults).
    #[arg(long)]
    params: Option<String>,
    /// How many differing decisions to print in full.
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

pub fn run(args: ReplayArgs) -> anyhow::Result<Outcome> {
    let candidate = args.policy.as_deref().map(load).transpose()?;
    let mut by_source: HashMap<String, Arc<LoadedPolicy>> = HashMap::new();
    let file = std::fs::File::open(&args.decision_log)
        .with_context(|| format!("cannot read {}", args.decision_log.display()))?;
    let (mut total, mut equal, mut unreproduced) = (0usize, 0usize, 0usize);
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
            None => recorded_policy(&logged, &mut by_source)?,
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
        // The policy that made it, with the params it had: it must reproduce the decision.
        let same_policy = policy.digest == logged.policy_digest && args.params.is_none();
        if same_policy {
            unreproduced += 1;
        }
        let delta = delta(&recorded.commands, &produced.commands);
        for c in &delta.added {
            summary.entry(kind(c)).or_default().0 += 1;
        }
        for c in &delta.removed {
            summary.entry(kind(c)).or_default().1 += 1;
        }
        if total - equal <= args.show {
            let label = if same_policy { "NOT REPRODUCED" } else { "differs" };
            println!("seq {} ({:?}) {label}: {}", logged.seq, logged.trigger, describe(&delta, &recorded, &produced));
        }
    }
    let differ = total - equal;
    println!("replayed {total} decisions: {equal} equal, {differ} differ");
    for (kind, (added, removed)) in &summary {
        println!("  {kind}: +{added} added, -{removed} removed");
    }
    if unreproduced > 0 {
        println!("{unreproduced} decisions were not reproduced by the policy that made them: it is not deterministic");
        return Ok(Outcome::Failed);
    }
    Ok(Outcome::Success)
}

fn load(spec: &str) -> anyhow::Result<Arc<LoadedPolicy>> {
    let source = PolicySource::parse(spec, None)?;
    source.load(CallLimits::default()).with_context(|| format!("cannot load policy {source}"))
}

/// The policy a line names, checked against the digest it was logged with.
fn recorded_policy(
    logged: &Logged,
    cache: &mut HashMap<String, Arc<LoadedPolicy>>,
) -> anyhow::Result<Arc<LoadedPolicy>> {
    if let Some(p) = cache.get(&logged.policy_source) {
        return Ok(p.clone());
    }
    // A fallback decision names its built-in as `builtin:NAME (fallback)`.
    let source = logged.policy_source.trim_end_matches(" (fallback)");
    let spec = source.strip_prefix("builtin:").unwrap_or(source);
    if spec == "upload" || spec.is_empty() {
        bail!("decision {} was made by an uploaded policy; name its file with --policy", logged.seq);
    }
    let policy = load(spec)?;
    if policy.digest != logged.policy_digest {
        bail!(
            "decision {} was made by {source} with sha256 {}, but it is now {}; name the old build with --policy",
            logged.seq,
            &logged.policy_digest[..logged.policy_digest.len().min(16)],
            &policy.digest[..16]
        );
    }
    cache.insert(logged.policy_source.clone(), policy.clone());
    Ok(policy)
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
