//! `ebbtide simulate`: what would these policies have done to this fleet under this workload?
//!
//! Each policy runs the very scheduler core and policy runtime the scheduler runs, on a virtual
//! clock, with simulated adapters, workers and client ([`world`]). Runs are deterministic: the same
//! inputs and seed give the same figures, byte for byte.
//!
//! - [`workload`]: built-in workloads and CSV traces.
//! - [`fleet`]: simulated adapters (start latency, cost).
//! - [`world`]: the virtual clock driving the core.
//! - [`record`], [`figures`]: what a run records, and the figures computed from it.
//! - [`report`]: the charts and the HTML report.

pub mod figures;
pub mod fleet;
mod record;
pub mod report;
pub mod workload;
mod world;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::policy::candidate::{self, Origin};
use crate::policy::{PolicySource, ScalingLimits};
use crate::scheduler::{Allocate, CoreConfig};
use figures::Figures;
use fleet::AdapterModel;
use record::Recorder;
use workload::Workload;

/// A policy to try, with its params.
#[derive(Clone, Debug)]
pub struct Contender {
    pub label: String,
    pub source: PolicySource,
    pub params: String,
}

pub struct Settings {
    pub workload: Workload,
    pub fleet: Vec<AdapterModel>,
    pub contenders: Vec<Contender>,
    pub tick_ms: u64,
    pub duration_ms: u64,
    pub seed: u64,
    pub allocate: Allocate,
    /// Write each run's decision log here (`decisions-LABEL.jsonl`), in the scheduler's format.
    pub decision_logs: Option<PathBuf>,
}

/// One policy's run.
pub struct Run {
    pub label: String,
    pub source: String,
    pub digest: String,
    pub params: serde_json::Value,
    pub recorder: Recorder,
    pub figures: Figures,
}

/// Runs every contender on the same workload and fleet.
pub fn run(settings: &Settings) -> anyhow::Result<Vec<Run>> {
    settings.contenders.iter().map(|c| run_one(settings, c)).collect()
}

fn run_one(settings: &Settings, contender: &Contender) -> anyhow::Result<Run> {
    // The scheduler's own pipeline: a policy the scheduler would refuse is refused here too.
    let origin = Origin::Source(contender.source.clone());
    let bytes =
        origin.read(&crate::policy::ReadRules::default()).map_err(|r| anyhow::anyhow!("{}: {r}", contender.label))?;
    let candidate = candidate::prepare(origin, &bytes, contender.params.clone(), ScalingLimits::default(), None)
        .map_err(|r| anyhow::anyhow!("policy {}: {r}", contender.label))?;
    let core = CoreConfig {
        allocate: settings.allocate,
        tick_ms: settings.tick_ms,
        // Simulated peers never go silent; they leave only when told to.
        heartbeat_timeout_ms: u64::MAX / 4,
        // Simulated workers run one task at a time, and a virtual network has no round trip for
        // prefetching to hide.
        worker_prefetch: 1,
        ..CoreConfig::default()
    };
    let log = match &settings.decision_logs {
        Some(dir) => {
            let path = dir.join(format!("decisions-{}.jsonl", file_safe(&contender.label)));
            Some(std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?)
        }
        None => None,
    };
    let mut world = world::World::new(&settings.workload, &settings.fleet, &candidate, core, settings.seed, log);
    world.run(settings.duration_ms)?;
    let figures = Figures::of(&world.recorder, &settings.workload, &settings.fleet);
    Ok(Run {
        label: contender.label.clone(),
        source: contender.source.to_string(),
        digest: candidate.policy.digest.clone(),
        params: serde_json::from_str(&contender.params).unwrap_or_default(),
        recorder: world.recorder,
        figures,
    })
}

fn file_safe(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[derive(Serialize)]
struct Summary<'a> {
    workload: WorkloadSummary<'a>,
    tick_ms: u64,
    allocate: Allocate,
    fleet: &'a [AdapterModel],
    policies: Vec<PolicySummary<'a>>,
}

#[derive(Serialize)]
struct WorkloadSummary<'a> {
    name: &'a str,
    seed: u64,
    duration_ms: u64,
    tasks: usize,
    bursts: &'a [(u64, u64)],
}

#[derive(Serialize)]
struct PolicySummary<'a> {
    label: &'a str,
    source: &'a str,
    digest: &'a str,
    params: &'a serde_json::Value,
    figures: &'a Figures,
}

/// `summary.json`: only simulated quantities, so that the same inputs give the same bytes.
pub fn summary_json(settings: &Settings, runs: &[Run]) -> String {
    let summary = Summary {
        workload: WorkloadSummary {
            name: &settings.workload.name,
            seed: settings.seed,
            duration_ms: settings.duration_ms,
            tasks: settings.workload.arrivals.len(),
            bursts: &settings.workload.bursts,
        },
        tick_ms: settings.tick_ms,
        allocate: settings.allocate,
        fleet: &settings.fleet,
        policies: runs
            .iter()
            .map(|r| PolicySummary {
                label: &r.label,
                source: &r.source,
                digest: &r.digest,
                params: &r.params,
                figures: &r.figures,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&summary).expect("the summary serializes") + "\n"
}

/// The columns of the figures table.
pub const COLUMNS: [&str; 14] = [
    "policy",
    "done",
    "wait avg",
    "p50",
    "p99",
    "to capacity",
    "worker-s",
    "idle",
    "cost",
    "starts",
    "stops",
    "peak",
    "decisions",
    "failed",
];

/// The figures as table cells, one row per policy (shared by the terminal and the HTML report).
pub fn rows(runs: &[Run]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            let f = &r.figures;
            let ttc: Vec<String> = f.time_to_capacity_ms.iter().map(|t| t.map_or("never".into(), seconds)).collect();
            vec![
                r.label.clone(),
                format!("{}/{}", f.tasks_done, f.tasks_arrived),
                seconds(f.queue_wait_ms.mean as u64),
                seconds(f.queue_wait_ms.p50),
                seconds(f.queue_wait_ms.p99),
                if ttc.is_empty() { "-".into() } else { ttc.join(",") },
                format!("{:.0}", f.worker_seconds),
                format!("{:.0}", f.idle_worker_seconds),
                format!("{:.0}", f.cost),
                f.starts.to_string(),
                f.shutdowns.to_string(),
                f.peak_groups.to_string(),
                f.decisions.to_string(),
                f.decision_failures.to_string(),
            ]
        })
        .collect()
}

/// The figures as a text table for the terminal.
pub fn table(runs: &[Run]) -> String {
    let rows = rows(runs);
    let width = |i: usize| rows.iter().map(|r| r[i].len()).chain([COLUMNS[i].len()]).max().unwrap_or(0);
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = width(i)) } else { format!("{c:>w$}", w = width(i)) })
            .collect();
        padded.join("  ") + "\n"
    };
    let mut out = line(COLUMNS.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Writes `summary.json`, each run's curve (`curve-LABEL.csv`, the data behind the charts), the
/// charts and `report.html` into `dir`.
pub fn write_report(dir: &Path, settings: &Settings, runs: &[Run]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let summary = dir.join("summary.json");
    std::fs::write(&summary, summary_json(settings, runs))
        .with_context(|| format!("cannot write {}", summary.display()))?;
    let mut curves = Vec::new();
    for run in runs {
        let path = dir.join(format!("curve-{}.csv", file_safe(&run.label)));
        let mut text = String::from("t_ms,demand,starting,busy,idle\n");
        for p in &run.recorder.curve {
            text.push_str(&format!("{},{},{},{},{}\n", p.t_ms, p.demand, p.starting, p.busy, p.idle));
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        curves.push(path);
    }
    let charts = report::charts(dir, runs, &settings.workload, settings.duration_ms)?;
    let title = format!(
        "ebbtide simulate: {} for {}, seed {}",
        settings.workload.name,
        workload::format_duration(settings.duration_ms),
        settings.seed
    );
    let html = report::html(dir, &title, &rows(runs), &charts)?;
    Ok([vec![summary], curves, charts, vec![html]].concat())
}
