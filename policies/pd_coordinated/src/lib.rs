//! `pd_coordinated`: prefill/decode soft coordination (docs/builtins.md#pd_coordinated, after kthena #948 with
//! the review fixes). One replica is one worker group. Each role's demand comes from its tasks and
//! metric targets; in `preferred` mode the total is split between roles by a blend of demand and
//! pressure, projected exactly onto the preferred bands; scale-down waits a window per role.
//!
//! State: the panic deadline and each role's pending shrink, in a few dozen bytes.

mod share;

use std::collections::BTreeMap;

use ebbtide_sdk::fleet::{live, out, victim_order};
use ebbtide_sdk::params::{MAX_STARTS_PER_TICK, infos};
use ebbtide_sdk::{
    Command, Decision, Fleet, GroupState, KeySet, NamedCapability, ParamReader, ParamSpec, Placer, Policy, PolicyInfo,
    Snapshot, StateReader, StateWriter, Unit, WorkerGroup,
};
use serde::Deserialize;

pub struct PdCoordinated;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    pub capabilities: BTreeMap<String, i64>,
    #[serde(default)]
    pub min_replicas: u64,
    /// 0 = unbounded.
    #[serde(default)]
    pub max_replicas: u64,
    #[serde(default)]
    pub preferred_share: Option<Band>,
    #[serde(default)]
    pub metric_targets: BTreeMap<String, f64>,
    #[serde(default = "five")]
    pub tasks_per_replica: u64,
}

fn five() -> u64 {
    5
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub min_pct: f64,
    pub max_pct: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Sum,
    Mean,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PressureMetric {
    pub name: String,
    pub agg: Aggregation,
}

pub struct Params {
    /// In name order: commands are emitted per role in this order.
    pub roles: Vec<Role>,
    pub preferred: bool,
    pub alpha: f64,
    pub pressure_metrics: Vec<PressureMetric>,
    pub tolerance: f64,
    pub require_all_roles: bool,
    pub panic_threshold_pct: f64,
    pub panic_hold_ms: u64,
    pub stabilization_ms: u64,
    pub max_starts_per_tick: u64,
}

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "roles",
        "a non-empty list of {name, capabilities, min_replicas, max_replicas, preferred_share: {min_pct, max_pct} | null, metric_targets, tasks_per_replica}",
        "null",
        "the roles; a group belongs to a role when its capability names equal the role's",
    ),
    ParamSpec::new("mode", "\"preferred\" or \"off\"", "\"preferred\"", "off = each role scales on its own demand"),
    ParamSpec::new("alpha", "a number in [0, 1]", "0.5", "weight of pressure against demand in the split"),
    ParamSpec::new(
        "pressure_metrics",
        "a list of {name, agg: \"sum\" | \"mean\"}",
        r#"[{"name":"queue_depth","agg":"sum"},{"name":"kv_cache_utilization","agg":"mean"},{"name":"ttft","agg":"mean"}]"#,
        "metrics whose relative size between roles shifts the split",
    ),
    ParamSpec::new("tolerance", "a number >= 0", "0.1", "demand within this fraction of the current count keeps it"),
    ParamSpec::new("require_all_roles", "a boolean", "true", "with any demand, every role keeps at least one replica"),
    ParamSpec::new("panic_threshold_pct", "a number > 100", "200", "demand at this % of current replicas enters panic"),
    ParamSpec::new("panic_hold_ms", "an integer >= 0", "60000", "how long panic lasts once entered"),
    ParamSpec::new("scale_down_stabilization_ms", "an integer >= 0", "300000", "a role shrinks only after this window"),
    MAX_STARTS_PER_TICK,
];

const STATE_TAG: u8 = 0xD1;

/// A role's pending shrink: since when, and the largest count wanted since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingShrink {
    down_since_ms: u64,
    hold: u64,
}

#[derive(Debug, Default, PartialEq)]
struct State {
    panic_until_ms: Option<u64>,
    shrinks: BTreeMap<String, PendingShrink>,
}

impl State {
    fn decode(bytes: &[u8]) -> Option<State> {
        let mut r = StateReader::new(bytes, STATE_TAG)?;
        let panic_until_ms = r.opt_u64()?;
        let mut shrinks = BTreeMap::new();
        for _ in 0..r.u64()? {
            let name = r.str()?.to_owned();
            shrinks.insert(name, PendingShrink { down_since_ms: r.u64()?, hold: r.u64()? });
        }
        r.is_done().then_some(State { panic_until_ms, shrinks })
    }

    fn encode(&self) -> Vec<u8> {
        if *self == State::default() {
            return Vec::new();
        }
        let mut w = StateWriter::new(STATE_TAG).opt_u64(self.panic_until_ms).u64(self.shrinks.len() as u64);
        for (name, s) in &self.shrinks {
            w = w.str(name).u64(s.down_since_ms).u64(s.hold);
        }
        w.finish()
    }
}

/// What one role looks like in this snapshot.
struct RoleView<'s> {
    /// Live groups (`cur_r` is their count).
    live: Vec<&'s WorkerGroup>,
    /// Per-metric values reported by each running group (finite values only).
    running_metrics: Vec<BTreeMap<&'s str, f64>>,
    demand: u64,
    /// Effective minimum `m_r`.
    min: u64,
    /// `max_r`, with 0 (unbounded) as `u64::MAX`.
    max: u64,
}

impl Policy for PdCoordinated {
    type Params = Params;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "pd_coordinated".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Prefill/decode roles: demand plus pressure split within preferred bands; panic on bursts; delayed shrink."
                .into(),
            params: infos(PARAMS),
        }
    }

    fn parse_params(json: &str) -> Result<Params, Vec<String>> {
        let mut p = ParamReader::new(PARAMS, json)?;
        let mut roles: Vec<Role> = p.structured::<Option<Vec<Role>>>("roles").flatten().unwrap_or_default();
        if roles.is_empty() && !p.is_given("roles") {
            p.error("roles: required: a non-empty list of roles, e.g. [{\"name\": \"prefill\", \"capabilities\": {\"prefill\": 1}}]");
        } else if roles.is_empty() {
            p.error("roles: expected a non-empty list of roles, got an empty one");
        }
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in roles.windows(2) {
            if pair[0].name == pair[1].name {
                p.error(format!("roles: role names must be unique; {:?} appears twice", pair[0].name));
            }
        }
        for r in &roles {
            if r.max_replicas > 0 && r.min_replicas > r.max_replicas {
                p.error(format!(
                    "roles[{}].max_replicas: expected 0 (unbounded) or >= min_replicas ({}), got {}",
                    r.name, r.min_replicas, r.max_replicas
                ));
            }
        }
        let params = Params {
            roles,
            preferred: p.choice("mode", &["preferred", "off"]) == "preferred",
            alpha: p.number("alpha", |v| (0.0..=1.0).contains(&v)),
            pressure_metrics: p.structured("pressure_metrics").unwrap_or_default(),
            tolerance: p.number("tolerance", |v| v >= 0.0),
            require_all_roles: p.boolean("require_all_roles"),
            panic_threshold_pct: p.number("panic_threshold_pct", |v| v > 100.0),
            panic_hold_ms: p.uint("panic_hold_ms", |_| true),
            stabilization_ms: p.uint("scale_down_stabilization_ms", |_| true),
            max_starts_per_tick: p.uint("max_starts_per_tick", |_| true),
        };
        p.finish(params)
    }

    fn decide(p: &Params, snapshot: &Snapshot, state: &[u8]) -> Decision {
        let fleet = Fleet::new(snapshot);
        let mut d = Decision::default();
        let mut st = State::decode(state).unwrap_or_default();
        let now = snapshot.now_ms;
        let role_keys: Vec<Option<KeySet>> =
            p.roles.iter().map(|r| fleet.keys.key_set_of_names(r.capabilities.keys().map(String::as_str))).collect();
        report_unmatched(&fleet, &role_keys, &mut d);

        // 1. Per-role demand.
        let mut views: Vec<RoleView> =
            p.roles.iter().zip(&role_keys).map(|(r, k)| role_view(&fleet, r, k.as_ref(), p.tolerance)).collect();

        // 2. Panic.
        let n_raw: u64 = views.iter().map(|v| v.demand).sum();
        let current: u64 = views.iter().map(|v| v.live.len() as u64).sum();
        if (current == 0 && n_raw > 0)
            || (current > 0 && 100.0 * n_raw as f64 >= p.panic_threshold_pct * current as f64)
        {
            st.panic_until_ms = Some(now + p.panic_hold_ms);
        }
        let panic = st.panic_until_ms.is_some_and(|until| now <= until);
        if !panic {
            st.panic_until_ms = None;
        }

        // 3. Effective minima.
        for v in &mut views {
            if p.require_all_roles && n_raw > 0 {
                v.min = v.min.max(1).min(v.max);
            }
        }

        // 4. Desired counts.
        let desired: Vec<u64> = if panic || !p.preferred {
            views
                .iter()
                .map(|v| {
                    let x = v.demand.max(v.min);
                    if panic { x.max(v.live.len() as u64) } else { x }
                })
                .collect()
        } else {
            share::split(p, &views_for_split(&p.roles, &views), n_raw, &mut d)
        };

        // 5. Scale-down stabilization (hold-max, per role); 6. commands in role-name order.
        let mut placer = Placer::new(&fleet, p.max_starts_per_tick);
        for ((role, view), x) in p.roles.iter().zip(&views).zip(desired) {
            let cur = view.live.len() as u64;
            let target = if x < cur {
                let s = st
                    .shrinks
                    .entry(role.name.clone())
                    .and_modify(|s| s.hold = s.hold.max(x))
                    .or_insert(PendingShrink { down_since_ms: now, hold: x });
                if now.saturating_sub(s.down_since_ms) >= p.stabilization_ms {
                    let target = s.hold.min(cur);
                    st.shrinks.remove(&role.name);
                    target
                } else {
                    cur
                }
            } else {
                st.shrinks.remove(&role.name);
                x
            };
            if target > cur {
                let caps: Vec<NamedCapability> =
                    role.capabilities.iter().map(|(n, v)| NamedCapability { name: n.clone(), value: *v }).collect();
                placer.place(target - cur, &caps, Unit::Groups, |_| true, &mut d);
            } else if target < cur {
                let mut victims: Vec<&WorkerGroup> =
                    view.live.iter().copied().filter(|g| g.adapter.is_some()).collect();
                victims.sort_by(|a, b| victim_order(a, b));
                for g in victims.into_iter().take((cur - target) as usize) {
                    d.commands.push(Command::Shutdown(g.id));
                }
            }
        }
        d.state = st.encode();
        d
    }
}

/// Gathers one role's groups, metrics and demand `D_r` (step 1).
fn role_view<'s>(fleet: &Fleet<'s>, role: &Role, keys: Option<&KeySet>, tolerance: f64) -> RoleView<'s> {
    let snapshot = fleet.snapshot;
    let member = |capset| keys.is_some_and(|k| fleet.keys.of(capset) == k);
    let live_groups: Vec<&WorkerGroup> =
        snapshot.worker_groups.iter().filter(|g| live(g) && member(g.capabilities)).collect();
    let running_metrics: Vec<BTreeMap<&str, f64>> = snapshot
        .worker_groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.state == GroupState::Running && member(g.capabilities))
        .map(|(i, _)| {
            snapshot
                .metrics
                .iter()
                .filter(|m| m.group as usize == i && m.value.is_finite())
                .map(|m| (snapshot.name(m.name), m.value))
                .collect()
        })
        .collect();

    let mut signals = Vec::new();
    if role.tasks_per_replica > 0 {
        let tasks: u64 = snapshot.task_groups.iter().filter(|t| member(t.capabilities)).map(out).sum();
        signals.push(tasks.div_ceil(role.tasks_per_replica));
    }
    for (metric, &target) in &role.metric_targets {
        let reported: Vec<f64> = running_metrics.iter().filter_map(|m| m.get(metric.as_str()).copied()).collect();
        if target > 0.0 && !reported.is_empty() {
            signals.push((reported.iter().sum::<f64>() / target).ceil().max(0.0) as u64);
        }
    }
    let cur = live_groups.len() as u64;
    let mut demand = signals.iter().copied().max().unwrap_or(cur);
    if cur > 0 && !signals.is_empty() && (demand as f64 / cur as f64 - 1.0).abs() <= tolerance {
        demand = cur;
    }
    let max = if role.max_replicas == 0 { u64::MAX } else { role.max_replicas };
    RoleView {
        live: live_groups,
        running_metrics,
        demand: demand.clamp(role.min_replicas, max),
        min: role.min_replicas,
        max,
    }
}

fn views_for_split<'a>(roles: &'a [Role], views: &'a [RoleView]) -> Vec<share::RoleInput<'a>> {
    roles
        .iter()
        .zip(views)
        .map(|(r, v)| share::RoleInput {
            name: &r.name,
            demand: v.demand,
            min: v.min,
            max: v.max,
            band: r.preferred_share,
            running_metrics: &v.running_metrics,
        })
        .collect()
}

/// Groups and task groups that belong to no role are ignored, and said so once.
fn report_unmatched(fleet: &Fleet, role_keys: &[Option<KeySet>], d: &mut Decision) {
    let snapshot = fleet.snapshot;
    let matches = |capset| role_keys.iter().flatten().any(|k| fleet.keys.of(capset) == k);
    let groups = snapshot.worker_groups.iter().filter(|g| live(g) && !matches(g.capabilities)).count();
    let tasks = snapshot.task_groups.iter().filter(|t| out(t) > 0 && !matches(t.capabilities)).count();
    if groups + tasks > 0 {
        d.diagnose(
            "unmatched_role",
            format!("{groups} worker groups and {tasks} task groups match no role's capabilities and are ignored"),
        );
    }
}

ebbtide_sdk::export_policy!(PdCoordinated);
