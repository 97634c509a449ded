//! Workloads: when tasks arrive, how long each runs, and what it needs. Built-in shapes are
//! generated from a seed (the same seed gives the same tasks); a CSV file replays a real trace.

use std::path::Path;

use anyhow::{Context, bail};
use ebbtide_sdk::CapMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fleet_config::parse_capabilities;

/// One task of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    pub at_ms: u64,
    pub duration_ms: u64,
    pub capabilities: CapMap,
}

/// A workload, generated: its tasks in arrival order, and the bursts it contains (for the time to
/// capacity after each).
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub arrivals: Vec<Arrival>,
    /// `(start_ms, end_ms)` of each burst.
    pub bursts: Vec<(u64, u64)>,
    /// The duration it is meant to be watched for.
    pub default_duration_ms: u64,
    /// What the simulated workers report in their heartbeats.
    pub gauges: GaugeModel,
}

/// Gauges the simulated workers report (H7), as the engines behind such a workload would.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GaugeModel {
    /// None: policies see only the metrics the host derives (`utilization`, `queue_depth`).
    #[default]
    None,
    /// An LLM serving fleet: a `prefill` worker reports `ttft`, the time to first token in seconds of
    /// the request it runs (its queue wait plus its prefill time), and nothing once idle; a `decode`
    /// worker reports `kv_cache_utilization`, 1 while it decodes and 0 when idle.
    Serving,
}

impl GaugeModel {
    /// The gauges a worker reports when it starts `task` at `now_ms`.
    pub fn on_start(self, task: &Arrival, now_ms: u64) -> Option<(String, f64)> {
        match self {
            GaugeModel::None => None,
            GaugeModel::Serving if task.capabilities.contains_key("prefill") => {
                let ttft_ms = now_ms.saturating_sub(task.at_ms) + task.duration_ms;
                Some(("ttft".into(), ttft_ms as f64 / 1000.0))
            }
            GaugeModel::Serving if task.capabilities.contains_key("decode") => {
                Some(("kv_cache_utilization".into(), 1.0))
            }
            GaugeModel::Serving => None,
        }
    }

    /// The gauges a worker of these capabilities reports when it becomes idle, if it reports at all:
    /// an idle engine has no recent first token (its `ttft` is withdrawn) and an empty KV cache.
    pub fn on_idle(self, capabilities: &CapMap) -> Option<Vec<(String, f64)>> {
        match self {
            GaugeModel::None => None,
            GaugeModel::Serving if capabilities.contains_key("decode") => {
                Some(vec![("kv_cache_utilization".into(), 0.0)])
            }
            GaugeModel::Serving => Some(vec![]),
        }
    }
}

/// Params that make `policy` meaningful on `workload` when none are given (`pd_coordinated` needs
/// its roles).
pub fn suggested_params(workload: &str, policy: &str) -> Option<&'static str> {
    match (workload, policy) {
        ("prefill-decode", "pd_coordinated") => Some(PD_ROLES),
        _ => None,
    }
}

/// The two roles of the `prefill-decode` workload: 2 tasks per replica, a TTFT target of 4 s per prefill
/// replica, shares within 10-90%.
pub const PD_ROLES: &str = r#"{"roles": [{"name": "prefill", "capabilities": {"prefill": 1}, "tasks_per_replica": 2, "metric_targets": {"ttft": 4.0}, "preferred_share": {"min_pct": 10, "max_pct": 90}}, {"name": "decode", "capabilities": {"decode": 1}, "tasks_per_replica": 2, "preferred_share": {"min_pct": 10, "max_pct": 90}}], "scale_down_stabilization_ms": 60000}"#;

pub const BUILT_IN: &str = "burst, diurnal, spiky, mixed-capabilities, prefill-decode";

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

impl Workload {
    /// A built-in name or a CSV file; `duration_ms` overrides the built-in's default length.
    pub fn load(spec: &str, duration_ms: Option<u64>, seed: u64) -> anyhow::Result<Workload> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = match spec {
            "burst" => burst(duration_ms.unwrap_or(10 * MINUTE), &mut rng),
            "diurnal" => diurnal(duration_ms.unwrap_or(24 * HOUR), &mut rng),
            "spiky" => spiky(duration_ms.unwrap_or(30 * MINUTE), &mut rng),
            "mixed-capabilities" => mixed(duration_ms.unwrap_or(10 * MINUTE), &mut rng),
            "prefill-decode" => prefill_decode(duration_ms.unwrap_or(30 * MINUTE), &mut rng),
            path if path.ends_with(".csv") || Path::new(path).exists() => csv(Path::new(path), duration_ms)?,
            other => bail!(
                "unknown workload {other:?}: expected one of {BUILT_IN}, or a CSV file (arrival_ms,duration_ms,capabilities)"
            ),
        };
        Ok(w)
    }
}

/// Arrivals of a Poisson process whose rate (tasks per second) varies with time, by thinning.
fn poisson(
    rng: &mut ChaCha8Rng,
    from_ms: u64,
    to_ms: u64,
    max_rate: f64,
    rate: impl Fn(u64) -> f64,
    mut task: impl FnMut(&mut ChaCha8Rng, u64) -> Arrival,
) -> Vec<Arrival> {
    let mut out = Vec::new();
    if max_rate <= 0.0 {
        return out;
    }
    let mut t = from_ms as f64;
    loop {
        let gap: f64 = -(1.0 - rng.random::<f64>()).ln() / max_rate * 1000.0;
        t += gap;
        if t >= to_ms as f64 {
            return out;
        }
        if rng.random::<f64>() * max_rate <= rate(t as u64) {
            out.push(task(rng, t as u64));
        }
    }
}

/// Exponentially distributed duration with this mean, at least 100 ms.
fn exp_ms(rng: &mut ChaCha8Rng, mean_ms: f64) -> u64 {
    ((-(1.0 - rng.random::<f64>()).ln() * mean_ms) as u64).max(100)
}

fn plain(mean_ms: f64) -> impl FnMut(&mut ChaCha8Rng, u64) -> Arrival {
    move |rng, at_ms| Arrival { at_ms, duration_ms: exp_ms(rng, mean_ms), capabilities: CapMap::new() }
}

fn sorted(mut arrivals: Vec<Arrival>) -> Vec<Arrival> {
    arrivals.sort_by_key(|a| a.at_ms);
    arrivals
}

/// Quiet (0.2 tasks/s), then 300 tasks within 10 s at one minute in, then quiet again.
fn burst(duration: u64, rng: &mut ChaCha8Rng) -> Workload {
    let start = MINUTE.min(duration / 4);
    let end = (start + 10_000).min(duration);
    let mut arrivals = poisson(rng, 0, duration, 0.2, |_| 0.2, plain(5_000.0));
    arrivals.extend(poisson(rng, start, end, 30.0, |_| 30.0, plain(8_000.0)));
    Workload {
        name: "burst".into(),
        arrivals: sorted(arrivals),
        bursts: vec![(start, end)],
        default_duration_ms: duration,
        gauges: GaugeModel::None,
    }
}

/// A day: from 0.1 tasks/s at midnight to 1 task/s at noon (20 s tasks on average), so the peak
/// needs about 20 busy workers.
fn diurnal(duration: u64, rng: &mut ChaCha8Rng) -> Workload {
    let day = (24 * HOUR) as f64;
    let rate = |t: u64| 0.1 + 0.9 * (1.0 - (2.0 * std::f64::consts::PI * t as f64 / day).cos()) / 2.0;
    let arrivals = poisson(rng, 0, duration, 1.0, rate, plain(20_000.0));
    Workload {
        name: "diurnal".into(),
        arrivals,
        bursts: vec![],
        default_duration_ms: duration,
        gauges: GaugeModel::None,
    }
}

/// 0.5 tasks/s with a spike to 15 tasks/s for 20 s every 3 to 8 minutes.
fn spiky(duration: u64, rng: &mut ChaCha8Rng) -> Workload {
    let mut bursts = Vec::new();
    let mut t = 2 * MINUTE;
    while t + 20_000 < duration {
        bursts.push((t, t + 20_000));
        t += rng.random_range(3 * MINUTE..8 * MINUTE);
    }
    let spikes = bursts.clone();
    let rate = move |t: u64| if spikes.iter().any(|(s, e)| (*s..*e).contains(&t)) { 15.0 } else { 0.5 };
    let arrivals = poisson(rng, 0, duration, 15.0, rate, plain(6_000.0));
    Workload { name: "spiky".into(), arrivals, bursts, default_duration_ms: duration, gauges: GaugeModel::None }
}

/// CPU tasks at 1/s with a burst at two minutes, and one GPU task (`gpu=1`) in four, longer.
fn mixed(duration: u64, rng: &mut ChaCha8Rng) -> Workload {
    let start = (2 * MINUTE).min(duration / 4);
    let end = (start + 15_000).min(duration);
    let gpu: CapMap = [("gpu".to_owned(), 1)].into();
    let task = move |rng: &mut ChaCha8Rng, at_ms| {
        if rng.random_range(0..4) == 0 {
            Arrival { at_ms, duration_ms: exp_ms(rng, 20_000.0), capabilities: gpu.clone() }
        } else {
            Arrival { at_ms, duration_ms: exp_ms(rng, 5_000.0), capabilities: CapMap::new() }
        }
    };
    let rate = move |t: u64| if (start..end).contains(&t) { 12.0 } else { 1.0 };
    let arrivals = poisson(rng, 0, duration, 12.0, rate, task);
    Workload {
        name: "mixed-capabilities".into(),
        arrivals,
        bursts: vec![(start, end)],
        default_duration_ms: duration,
        gauges: GaugeModel::None,
    }
}

/// 3 tasks/s, each `prefill=1` or `decode=1`; the prefill share drifts from 80% to 20%. Workers
/// report serving gauges ([`GaugeModel::Serving`]).
fn prefill_decode(duration: u64, rng: &mut ChaCha8Rng) -> Workload {
    let task = move |rng: &mut ChaCha8Rng, at_ms: u64| {
        let prefill_share = 0.8 - 0.6 * at_ms as f64 / duration.max(1) as f64;
        let (role, mean) = if rng.random::<f64>() < prefill_share { ("prefill", 2_000.0) } else { ("decode", 8_000.0) };
        Arrival { at_ms, duration_ms: exp_ms(rng, mean), capabilities: [(role.to_owned(), 1)].into() }
    };
    let arrivals = poisson(rng, 0, duration, 3.0, |_| 3.0, task);
    Workload {
        name: "prefill-decode".into(),
        arrivals,
        bursts: vec![],
        default_duration_ms: duration,
        gauges: GaugeModel::Serving,
    }
}

/// `arrival_ms,duration_ms,capabilities` per line (capabilities like `gpu=1;linux`, may be empty); a
/// header line is allowed.
fn csv(path: &Path, duration_ms: Option<u64>) -> anyhow::Result<Workload> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the workload {}", path.display()))?;
    let mut arrivals = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("arrival")) {
            continue;
        }
        let bad = |what: &str| {
            anyhow::anyhow!(
                "{} line {}: {what}; expected arrival_ms,duration_ms,capabilities (e.g. 1500,3000,gpu=1;linux)",
                path.display(),
                i + 1
            )
        };
        let mut fields = line.splitn(3, ',');
        let at_ms =
            fields.next().unwrap_or("").trim().parse::<u64>().map_err(|_| bad("arrival_ms is not a whole number"))?;
        let duration_ms =
            fields.next().unwrap_or("").trim().parse::<u64>().map_err(|_| bad("duration_ms is not a whole number"))?;
        let caps = fields.next().unwrap_or("").trim().replace(';', ",");
        let capabilities = parse_capabilities(&caps).map_err(|e| bad(&e))?;
        arrivals.push(Arrival { at_ms, duration_ms, capabilities });
    }
    if arrivals.is_empty() {
        bail!("{} has no tasks", path.display());
    }
    let arrivals = sorted(arrivals);
    let last = arrivals.iter().map(|a| a.at_ms + a.duration_ms).max().unwrap_or(0);
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "trace".into());
    Ok(Workload {
        name,
        arrivals,
        bursts: vec![],
        default_duration_ms: duration_ms.unwrap_or(last + MINUTE),
        gauges: GaugeModel::None,
    })
}

/// `90s`, `10m`, `24h`, `1500ms` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len()));
    let value: f64 = number.parse().map_err(|_| format!("duration {text:?}: expected e.g. 90s, 10m, 24h or 1500ms"))?;
    let scale = match unit {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "m" => 6e4,
        "h" => 3.6e6,
        "d" => 8.64e7,
        _ => return Err(format!("duration {text:?}: unknown unit {unit:?}; expected ms, s, m, h or d")),
    };
    Ok((value * scale) as u64)
}

/// `24h`, `10m`, `90s` or `1500ms`: the largest whole unit.
pub fn format_duration(ms: u64) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
