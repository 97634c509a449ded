//! `vanilla`: scales the whole fleet on the ratio of unfinished tasks to workers, ignoring
//! capabilities (docs/builtins.md#vanilla). Stateless.

use ebbtide_sdk::fleet::ratio_scale_down;
use ebbtide_sdk::params::{
    MAX_SHUTDOWNS_PER_TICK, MAX_STARTS_PER_TICK, MIN_IDLE_MS, infos, lower_task_ratio, upper_task_ratio,
};
use ebbtide_sdk::{Decision, Fleet, ParamReader, ParamSpec, Placer, Policy, PolicyInfo, Snapshot, Unit};

pub struct Vanilla;

pub struct Params {
    pub upper: f64,
    pub lower: f64,
    pub max_shutdowns_per_tick: u64,
    pub min_idle_ms: u64,
    pub max_starts_per_tick: u64,
}

const PARAMS: &[ParamSpec] =
    &[upper_task_ratio("10"), lower_task_ratio("1"), MAX_SHUTDOWNS_PER_TICK, MIN_IDLE_MS, MAX_STARTS_PER_TICK];

impl Policy for Vanilla {
    type Params = Params;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "vanilla".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Task-to-worker ratio over the whole fleet, capability-blind; reaches demand in one decision."
                .into(),
            params: infos(PARAMS),
        }
    }

    fn parse_params(json: &str) -> Result<Params, Vec<String>> {
        let mut p = ParamReader::new(PARAMS, json)?;
        let (upper, lower) = p.task_ratios();
        let params = Params {
            upper,
            lower,
            max_shutdowns_per_tick: p.uint("max_shutdowns_per_tick", |_| true),
            min_idle_ms: p.uint("min_idle_ms", |_| true),
            max_starts_per_tick: p.uint("max_starts_per_tick", |_| true),
        };
        p.finish(params)
    }

    fn decide(p: &Params, snapshot: &Snapshot, _state: &[u8]) -> Decision {
        let fleet = Fleet::new(snapshot);
        let mut d = Decision::default();
        let (t, w) = (fleet.total_outstanding(), fleet.total_capacity());
        let wanted = (t as f64 / p.upper).ceil() as u64;
        let mut placer = Placer::new(&fleet, p.max_starts_per_tick);
        if w == 0 {
            if t > 0 {
                placer.place(wanted, &[], Unit::Workers, |_| true, &mut d);
            }
            return d;
        }
        let ratio = t as f64 / w as f64;
        if ratio > p.upper {
            placer.place(wanted.saturating_sub(w), &[], Unit::Workers, |_| true, &mut d);
        } else if ratio < p.lower {
            let victims = fleet.victims(p.min_idle_ms);
            ratio_scale_down(&fleet, victims, (t, w), (p.upper, p.lower), p.max_shutdowns_per_tick, &mut d);
        }
        d
    }
}

ebbtide_sdk::export_policy!(Vanilla);
