//! `fixed_elastic`: an always-kept primary group per primary adapter, plus elastic secondaries that
//! follow the vanilla ratio rules (docs/builtins.md#fixed_elastic). Stateless: a missing primary is derived from
//! the snapshot each time, so a lost primary is started again.

use ebbtide_sdk::fleet::ratio_scale_down;
use ebbtide_sdk::params::{
    MAX_SHUTDOWNS_PER_TICK, MAX_STARTS_PER_TICK, MIN_IDLE_MS, infos, lower_task_ratio, upper_task_ratio,
};
use ebbtide_sdk::{Decision, Fleet, ParamReader, ParamSpec, Placer, Policy, PolicyInfo, Snapshot, Unit};

pub struct FixedElastic;

pub struct Params {
    pub upper: f64,
    pub lower: f64,
    /// `None`: every adapter with `max_worker_groups == 1`.
    pub primary_adapters: Option<Vec<String>>,
    pub eager: bool,
    pub max_shutdowns_per_tick: u64,
    pub min_idle_ms: u64,
    pub max_starts_per_tick: u64,
}

const PARAMS: &[ParamSpec] = &[
    upper_task_ratio("10"),
    lower_task_ratio("1"),
    ParamSpec::new(
        "primary_adapters",
        "a list of adapter ids, or null",
        "null",
        "adapters that keep one group always; null = every adapter with max_worker_groups 1",
    ),
    ParamSpec::new(
        "primary_start",
        "\"on_demand\" or \"eager\"",
        "\"on_demand\"",
        "start a missing primary only when there is demand, or at once",
    ),
    MAX_SHUTDOWNS_PER_TICK,
    MIN_IDLE_MS,
    MAX_STARTS_PER_TICK,
];

impl Policy for FixedElastic {
    type Params = Params;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "fixed_elastic".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "One group always kept on each primary adapter; secondaries grow and shrink on the task ratio."
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
            primary_adapters: p.structured("primary_adapters").flatten(),
            eager: p.choice("primary_start", &["on_demand", "eager"]) == "eager",
            max_shutdowns_per_tick: p.uint("max_shutdowns_per_tick", |_| true),
            min_idle_ms: p.uint("min_idle_ms", |_| true),
            max_starts_per_tick: p.uint("max_starts_per_tick", |_| true),
        };
        p.finish(params)
    }

    fn decide(p: &Params, snapshot: &Snapshot, _state: &[u8]) -> Decision {
        let fleet = Fleet::new(snapshot);
        let mut d = Decision::default();
        let is_primary = |i: usize| {
            let a = &snapshot.adapters[i];
            match &p.primary_adapters {
                Some(ids) => ids.iter().any(|id| id == snapshot.name(a.id)),
                None => a.max_worker_groups == 1,
            }
        };
        let primaries: Vec<usize> = fleet.adapter_order().iter().copied().filter(|&i| is_primary(i)).collect();
        let mut missing: Vec<usize> = primaries
            .iter()
            .copied()
            .filter(|&i| !snapshot.worker_groups.iter().any(|g| g.adapter == Some(snapshot.adapters[i].id)))
            .collect();
        let (t, mut w) = (fleet.total_outstanding(), fleet.total_capacity());
        let mut placer = Placer::new(&fleet, p.max_starts_per_tick);

        let mut eager_started = 0;
        if p.eager {
            for &i in &missing {
                if placer.start_on(i, 1, &[], &mut d) == 1 {
                    eager_started += 1;
                    w += u64::from(snapshot.adapters[i].workers_per_group);
                }
            }
            missing.clear();
        }

        let wanted = (t as f64 / p.upper).ceil() as u64;
        let mut need = match (w, t) {
            (0, t) if t > 0 => wanted,
            (w, t) if w > 0 && t as f64 / w as f64 > p.upper => wanted - w,
            _ => 0,
        };
        if need > 0 {
            for &i in &missing {
                if need == 0 {
                    break;
                }
                if placer.start_on(i, 1, &[], &mut d) == 1 {
                    need = need.saturating_sub(u64::from(snapshot.adapters[i].workers_per_group));
                }
            }
            let secondary = |a: &ebbtide_sdk::Adapter| !is_primary_id(&primaries, snapshot, a.id);
            placer.place(need, &[], Unit::Workers, secondary, &mut d);
            return d;
        }
        if eager_started > 0 {
            return d;
        }
        if w > 0 && (t as f64 / w as f64) < p.lower {
            let candidates = fleet
                .victims(p.min_idle_ms)
                .into_iter()
                .filter(|g| !g.adapter.is_some_and(|a| is_primary_id(&primaries, snapshot, a)));
            ratio_scale_down(&fleet, candidates, (t, w), (p.upper, p.lower), p.max_shutdowns_per_tick, &mut d);
        }
        d
    }
}

/// Whether the adapter with this name id is one of the primaries (given as adapter indices).
fn is_primary_id(primaries: &[usize], snapshot: &Snapshot, id: ebbtide_sdk::NameId) -> bool {
    primaries.iter().any(|&i| snapshot.adapters[i].id == id)
}

ebbtide_sdk::export_policy!(FixedElastic);
