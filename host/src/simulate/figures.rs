//! The figures of one run, computed from what the recorder saw, and the series the charts draw.

use serde::Serialize;

use super::fleet::AdapterModel;
use super::record::{Point, Recorder};
use super::workload::Workload;

#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub tasks_arrived: usize,
    pub tasks_done: usize,
    pub queue_wait_ms: Wait,
    /// Per burst of the workload: from its start until the fleet first had as many workers as the
    /// burst's peak demand (or all it can have, if fewer); `null` if it never did during the burst
    /// or the following minute.
    pub time_to_capacity_ms: Vec<Option<u64>>,
    /// The integral of the capacity curve (workers connected, busy or idle).
    pub worker_seconds: f64,
    pub idle_worker_seconds: f64,
    /// Worker-seconds priced per adapter.
    pub cost: f64,
    pub starts: u64,
    pub shutdowns: u64,
    pub peak_groups: u32,
    pub decisions: u64,
    pub decision_failures: u64,
}

/// Time from arrival to first start, over the tasks that started.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Wait {
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
}

impl Figures {
    pub fn of(r: &Recorder, workload: &Workload, fleet: &[AdapterModel]) -> Figures {
        let mut waits: Vec<u64> = workload
            .arrivals
            .iter()
            .zip(&r.started_ms)
            .filter_map(|(a, started)| started.map(|s| s - a.at_ms))
            .collect();
        waits.sort_unstable();
        let at = |q: f64| waits.get(((waits.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        let queue_wait_ms = Wait {
            mean: round(waits.iter().sum::<u64>() as f64 / waits.len().max(1) as f64),
            p50: at(0.5),
            p99: at(0.99),
        };
        let most_workers: u32 = if fleet.iter().any(|a| a.max_worker_groups == 0) {
            u32::MAX
        } else {
            fleet.iter().map(|a| a.max_worker_groups * a.workers_per_group).sum()
        };
        Figures {
            tasks_arrived: r.arrived,
            tasks_done: r.done_ms.iter().filter(|d| d.is_some()).count(),
            queue_wait_ms,
            time_to_capacity_ms: workload.bursts.iter().map(|b| time_to_capacity(&r.curve, *b, most_workers)).collect(),
            worker_seconds: r.worker_ms as f64 / 1000.0,
            idle_worker_seconds: r.idle_worker_ms as f64 / 1000.0,
            cost: round(r.cost),
            starts: r.starts,
            shutdowns: r.shutdowns,
            peak_groups: r.peak_groups,
            decisions: r.decisions,
            decision_failures: r.decision_failures,
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn time_to_capacity(curve: &[Point], (start, end): (u64, u64), most_workers: u32) -> Option<u64> {
    let during = |p: &&Point| (start..end).contains(&p.t_ms);
    let peak = curve.iter().filter(during).map(|p| p.demand).max()?;
    let target = peak.min(most_workers);
    curve
        .iter()
        .filter(|p| p.t_ms >= start && p.t_ms < end + 60_000)
        .find(|p| p.busy + p.idle >= target)
        .map(|p| p.t_ms - start)
}

/// The curve's time-weighted mean over `buckets` equal slices of `[0, until)`: what the charts draw.
pub fn resample(curve: &[Point], until: u64, buckets: usize) -> Vec<[f64; 4]> {
    let width = (until as f64 / buckets as f64).max(1.0);
    let mut out = vec![[0.0; 4]; buckets];
    for (i, p) in curve.iter().enumerate() {
        let end = curve.get(i + 1).map_or(until, |n| n.t_ms).min(until);
        let values = [p.demand as f64, p.starting as f64, p.busy as f64, p.idle as f64];
        let mut t = p.t_ms as f64;
        while t < end as f64 {
            let b = ((t / width) as usize).min(buckets - 1);
            let slice_end = ((b + 1) as f64 * width).min(end as f64);
            for (o, v) in out[b].iter_mut().zip(values) {
                *o += v * (slice_end - t) / width;
            }
            t = slice_end;
            if b == buckets - 1 {
                break;
            }
        }
    }
    out
}

/// Mean queue wait (ms) of the tasks that started in each slice; `None` where none did.
pub fn wait_series(r: &Recorder, workload: &Workload, until: u64, buckets: usize) -> Vec<Option<f64>> {
    let width = (until as f64 / buckets as f64).max(1.0);
    let mut sums = vec![(0.0, 0u32); buckets];
    for (a, started) in workload.arrivals.iter().zip(&r.started_ms) {
        if let Some(s) = started.filter(|s| *s < until) {
            let b = ((s as f64 / width) as usize).min(buckets - 1);
            sums[b].0 += (s - a.at_ms) as f64;
            sums[b].1 += 1;
        }
    }
    sums.into_iter().map(|(sum, n)| (n > 0).then(|| sum / n as f64)).collect()
}
