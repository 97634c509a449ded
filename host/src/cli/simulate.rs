//! `ebbtide simulate`: try policies against a workload on a virtual clock and compare the figures.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::Outcome;
use super::config::FileConfig;
use crate::policy::PolicySource;
use crate::scheduler::Allocate;
use crate::simulate::fleet::{ADAPTER_SPEC_HELP, AdapterModel};
use crate::simulate::workload::{self, Workload};
use crate::simulate::{self, Contender, Settings};

#[derive(Args)]
pub struct SimulateArgs {
    /// burst, diurnal, spiky, mixed-capabilities, prefill-decode, or a CSV file of
    /// `arrival_ms,duration_ms,capabilities` lines (capabilities like `gpu=1;linux`).
    #[arg(long)]
    workload: String,
    /// A policy to try (repeat to compare): a built-in name or a .wasm path, with its own params
    /// after a colon: `vanilla:{"upper_task_ratio": 4}`.
    #[arg(long = "policy", required = true, value_name = "NAME|PATH[:PARAMS]")]
    policies: Vec<String>,
    /// Params for every --policy that has none of its own.
    #[arg(long, default_value = "{}")]
    params: String,
    /// A simulated adapter (repeat for several); replaces the workload's default fleet.
    #[arg(long = "adapter", value_name = "SPEC", help = format!("A simulated adapter: `{ADAPTER_SPEC_HELP}` (repeat for several; replaces the workload's default fleet)"))]
    adapters: Vec<String>,
    /// Take the fleet from the [[adapter]] tables of a scheduler configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// How long to simulate (90s, 10m, 24h); default: the workload's own length.
    #[arg(long, value_parser = workload::parse_duration)]
    duration: Option<u64>,
    /// Milliseconds between periodic decisions, as the scheduler's tick_ms.
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// Seed of the workload and the start latencies: same seed, same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How tasks are matched to workers.
    #[arg(long, default_value = "capability", value_parser = Allocate::parse)]
    allocate: Allocate,
    /// Write summary.json, report.html and one PNG per chart here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write each policy's decision log (the scheduler's format) into --out.
    #[arg(long, requires = "out")]
    decision_logs: bool,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<Outcome> {
    if args.tick_ms < 10 {
        bail!("--tick-ms: expected at least 10, got {}", args.tick_ms);
    }
    let workload = Workload::load(&args.workload, args.duration, args.seed)?;
    let fleet = fleet(&args)?;
    let contenders = contenders(&args.policies, &args.params, &workload.name)?;
    let duration_ms = args.duration.unwrap_or(workload.default_duration_ms);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let settings = Settings {
        workload,
        fleet,
        contenders,
        tick_ms: args.tick_ms,
        duration_ms,
        seed: args.seed,
        allocate: args.allocate,
        decision_logs: args.out.clone().filter(|_| args.decision_logs),
    };
    eprintln!(
        "simulating {} ({} tasks over {}) on {} adapter(s), {} polic{}",
        settings.workload.name,
        settings.workload.arrivals.len(),
        workload::format_duration(duration_ms),
        settings.fleet.len(),
        settings.contenders.len(),
        if settings.contenders.len() == 1 { "y" } else { "ies" }
    );
    let started = Instant::now();
    let runs = simulate::run(&settings)?;
    let elapsed = started.elapsed().as_secs_f64();
    let decisions: u64 = runs.iter().map(|r| r.figures.decisions).sum();
    print!("{}", simulate::table(&runs));
    eprintln!("{decisions} decisions in {elapsed:.1} s ({:.0} decisions/s)", decisions as f64 / elapsed.max(1e-9));
    if let Some(dir) = &args.out {
        for path in simulate::write_report(dir, &settings, &runs)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(Outcome::Success)
}

fn fleet(args: &SimulateArgs) -> anyhow::Result<Vec<AdapterModel>> {
    let mut fleet = Vec::new();
    if let Some(path) = &args.config {
        let file = FileConfig::read(path)?;
        for (i, a) in file.adapter.iter().enumerate() {
            fleet.push(
                AdapterModel::from_config(a, i)
                    .map_err(|e| anyhow::anyhow!("{}: [[adapter]] #{}: {e}", path.display(), i + 1))?,
            );
        }
        if fleet.is_empty() {
            bail!("{} has no [[adapter]] tables to simulate", path.display());
        }
    }
    for spec in &args.adapters {
        fleet.push(AdapterModel::parse(spec).map_err(anyhow::Error::msg)?);
    }
    if fleet.is_empty() {
        fleet = AdapterModel::defaults_for(&args.workload);
    }
    let mut ids: Vec<&str> = fleet.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        bail!("two simulated adapters are named {:?}; give each a distinct id", w[0]);
    }
    Ok(fleet)
}

/// `NAME|PATH[:PARAMS]` for each --policy; labels are made unique. A built-in given no params at all
/// gets the workload's suggestion, if it has one (`pd_coordinated` on `prefill-decode`: its roles).
fn contenders(specs: &[String], default_params: &str, workload: &str) -> anyhow::Result<Vec<Contender>> {
    let mut out: Vec<Contender> = Vec::new();
    for spec in specs {
        let (name, params) = match spec.find(":{") {
            Some(i) => (&spec[..i], &spec[i + 1..]),
            None => match workload::suggested_params(workload, spec) {
                Some(suggested) if default_params.trim() == "{}" => {
                    eprintln!("{spec}: the {workload} workload's params {suggested}");
                    (spec.as_str(), suggested)
                }
                _ => (spec.as_str(), default_params),
            },
        };
        crate::policy::candidate::json_object(params).map_err(|e| anyhow::anyhow!("--policy {spec:?}: {e}"))?;
        let source = PolicySource::parse(name, None)?;
        let base = match &source {
            PolicySource::Builtin(n) => n.to_string(),
            PolicySource::File(p) => {
                p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| name.into())
            }
        };
        let mut label = base.clone();
        let mut n = 1;
        while out.iter().any(|c| c.label == label) {
            n += 1;
            label = format!("{base}#{n}");
        }
        out.push(Contender { label, source, params: params.to_owned() });
    }
    Ok(out)
}
