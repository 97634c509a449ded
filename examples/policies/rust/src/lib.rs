//! `queue_depth`: enough workers for `target_tasks_per_worker` unfinished tasks each, scaling down
//! one idle group at a time once `cooldown_ms` has passed since the last start.
//! The same policy is written in Python, JavaScript and C beside this folder.

use ebbtide_sdk::params::MAX_STARTS_PER_TICK;
use ebbtide_sdk::params::infos;
use ebbtide_sdk::state::{StateReader, StateWriter};
use ebbtide_sdk::{Command, Decision, Fleet, GroupState, ParamReader, ParamSpec, Placer, Policy, PolicyInfo, Snapshot, Unit};

pub struct QueueDepth;

pub struct Params {
    target_tasks_per_worker: f64,
    cooldown_ms: u64,
    max_starts_per_tick: u64,
}

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("target_tasks_per_worker", "a number > 0", "4", "unfinished tasks each worker should have"),
    ParamSpec::new("cooldown_ms", "an integer >= 0", "30000", "no scale-down this soon after a start"),
    ParamSpec { default: "4", ..MAX_STARTS_PER_TICK },
];

/// The state: `last_start_ms`, tagged so that foreign bytes read as "no state".
const STATE_TAG: u8 = 0x51;

impl Policy for QueueDepth {
    type Params = Params;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "queue_depth".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Workers for a target number of unfinished tasks each, with a scale-down cooldown.".into(),
            params: infos(PARAMS),
        }
    }

    fn parse_params(json: &str) -> Result<Params, Vec<String>> {
        let mut p = ParamReader::new(PARAMS, json)?;
        let params = Params {
            target_tasks_per_worker: p.number("target_tasks_per_worker", |v| v > 0.0),
            cooldown_ms: p.uint("cooldown_ms", |_| true),
            max_starts_per_tick: p.uint("max_starts_per_tick", |_| true),
        };
        p.finish(params)
    }

    fn decide(p: &Params, snapshot: &Snapshot, state: &[u8]) -> Decision {
        let fleet = Fleet::new(snapshot);
        let mut d = Decision { state: state.to_vec(), ..Decision::default() };
        let (t, w) = (fleet.total_outstanding(), fleet.total_capacity());
        let need = (t as f64 / p.target_tasks_per_worker).ceil() as u64;
        if need > w {
            let started = Placer::new(&fleet, p.max_starts_per_tick).place(need - w, &[], Unit::Workers, |_| true, &mut d);
            if started > 0 {
                d.state = StateWriter::new(STATE_TAG).u64(snapshot.now_ms).finish();
            }
        } else if need < w {
            let last_start = StateReader::new(state, STATE_TAG).and_then(|mut r| r.u64());
            if last_start.is_some_and(|last| snapshot.now_ms.saturating_sub(last) < p.cooldown_ms) {
                d.diagnose("cooldown", format!("a group started less than {} ms ago", p.cooldown_ms));
                return d;
            }
            let mut idle: Vec<_> = snapshot
                .worker_groups
                .iter()
                .filter(|g| g.adapter.is_some() && g.state == GroupState::Running && g.queued_tasks == 0)
                .collect();
            idle.sort_by(|a, b| b.idle_ms.cmp(&a.idle_ms).then(a.id.cmp(&b.id)));
            if let Some(g) = idle.into_iter().find(|g| w - fleet.cap(g) >= need) {
                d.commands.push(Command::Shutdown(g.id));
            }
        }
        d
    }
}

ebbtide_sdk::export_policy!(QueueDepth);
