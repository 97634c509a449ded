//! `capability`: scales each capability set on its own, with an allocation model that gives every
//! task set the smallest capable pools first (docs/builtins.md#capability). Stateless.
//!
//! Allocation (A) is the heart of it: both scale-up (deficits) and the scale-down safety check
//! (would removing this group create a deficit?) run the same function.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use ebbtide_sdk::fleet::{live, out, shutdownable, victim_order};
use ebbtide_sdk::params::{MAX_STARTS_PER_TICK, MIN_IDLE_MS, infos, lower_task_ratio, upper_task_ratio};
use ebbtide_sdk::{
    Command, Decision, Fleet, KeySet, NamedCapability, ParamReader, ParamSpec, Placer, Policy, PolicyInfo, Snapshot,
    Unit, WorkerGroup,
};

pub struct CapabilityPolicy;

pub struct Params {
    pub upper: f64,
    pub lower: f64,
    pub min_idle_ms: u64,
    pub max_starts_per_tick: u64,
}

const PARAMS: &[ParamSpec] = &[upper_task_ratio("5"), lower_task_ratio("0.5"), MIN_IDLE_MS, MAX_STARTS_PER_TICK];

/// The unfinished tasks of one key set.
struct TaskSet {
    keys: KeySet,
    out: u64,
    /// The capability map of the first task group with these keys and `out > 0`: what starts carry.
    rep: Vec<NamedCapability>,
}

/// The result of allocation (A): tasks allocated to each pool, and each task set's unmet need.
struct Allocation {
    alloc: BTreeMap<KeySet, f64>,
    /// Workers still needed, per task set (same order as the task sets).
    deficit: Vec<u64>,
}

/// Allocation (A) over pools (key set -> capacity). Task sets must be in "most specific first" order.
fn allocate(sets: &[TaskSet], pools: &BTreeMap<KeySet, u64>, upper: f64) -> Allocation {
    let mut pool_order: Vec<(&KeySet, u64)> = pools.iter().map(|(k, c)| (k, *c)).collect();
    pool_order.sort_by(|a, b| a.0.cmp_smallest_first(b.0));
    // Tasks allocated per pool, by position in `pool_order`; keyed by key set once, at the end.
    let mut allocated = vec![0.0; pool_order.len()];
    let mut deficit = Vec::with_capacity(sets.len());
    for set in sets {
        let mut need = (set.out as f64 / upper).ceil() as u64;
        let mut n = set.out as f64;
        for ((keys, avail), alloc) in pool_order.iter_mut().zip(allocated.iter_mut()) {
            if need == 0 {
                break;
            }
            if *avail == 0 || !set.keys.is_subset(keys) {
                continue;
            }
            let take = need.min(*avail);
            *avail -= take;
            need -= take;
            let a = n.min(take as f64 * upper);
            *alloc += a;
            n -= a;
        }
        deficit.push(need);
    }
    let alloc = pool_order.iter().zip(allocated).map(|((keys, _), a)| ((*keys).clone(), a)).collect();
    Allocation { alloc, deficit }
}

/// Live groups' capacity by exact key set. Summed per capability set first, so a key set is cloned
/// once per distinct set rather than once per group.
fn pools(fleet: &Fleet) -> BTreeMap<KeySet, u64> {
    let mut by_set = vec![0u64; fleet.snapshot.capability_sets.len()];
    let mut seen = vec![false; by_set.len()];
    for g in fleet.snapshot.worker_groups.iter().filter(|g| live(g)) {
        if let Some(i) = by_set.get_mut(g.capabilities as usize) {
            *i += fleet.cap(g);
            seen[g.capabilities as usize] = true;
        }
    }
    let mut pools = BTreeMap::new();
    for (set, capacity) in by_set.into_iter().enumerate().filter(|(i, _)| seen[*i]) {
        *pools.entry(fleet.keys.of(set as u32).clone()).or_insert(0) += capacity;
    }
    pools
}

/// Task groups merged by key set, without empty sets, most specific first.
fn task_sets(fleet: &Fleet) -> Vec<TaskSet> {
    let snapshot = fleet.snapshot;
    let mut sets: Vec<TaskSet> = Vec::new();
    for t in &snapshot.task_groups {
        let keys = fleet.keys.of(t.capabilities);
        match sets.iter_mut().find(|s| &s.keys == keys) {
            Some(s) => {
                if s.out == 0 && out(t) > 0 {
                    s.rep = snapshot.named_set(t.capabilities);
                }
                s.out += out(t);
            }
            None => sets.push(TaskSet { keys: keys.clone(), out: out(t), rep: snapshot.named_set(t.capabilities) }),
        }
    }
    sets.retain(|s| s.out > 0);
    sets.sort_by(|a, b| a.keys.cmp_specific_first(&b.keys));
    sets
}

/// Each key set's first shutdownable group in victim order, most specific key set first. One pass
/// over the groups (a minimum per capability set, then per key set) instead of sorting them all.
fn first_victims<'f, 's>(fleet: &'f Fleet<'s>, min_idle_ms: u64) -> Vec<(&'f KeySet, &'s WorkerGroup)> {
    let mut by_set: Vec<Option<&'s WorkerGroup>> = vec![None; fleet.snapshot.capability_sets.len()];
    for g in fleet.snapshot.worker_groups.iter().filter(|g| shutdownable(g, min_idle_ms)) {
        if let Some(slot) = by_set.get_mut(g.capabilities as usize) {
            match slot {
                Some(v) if victim_order(g, v) != Ordering::Less => {}
                _ => *slot = Some(g),
            }
        }
    }
    let mut by_keys: Vec<(&'f KeySet, &'s WorkerGroup)> = Vec::new();
    for (set, g) in by_set.into_iter().enumerate().filter_map(|(i, g)| g.map(|g| (i as u32, g))) {
        let keys = fleet.keys.of(set);
        match by_keys.iter_mut().find(|(k, _)| *k == keys) {
            Some((_, v)) if victim_order(g, v) == Ordering::Less => *v = g,
            Some(_) => {}
            None => by_keys.push((keys, g)),
        }
    }
    by_keys.sort_by(|a, b| a.0.cmp_specific_first(b.0));
    by_keys
}

impl Policy for CapabilityPolicy {
    type Params = Params;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "capability".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary:
                "Per capability set: most specific tasks get the smallest capable pools; grows and shrinks each set."
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
            min_idle_ms: p.uint("min_idle_ms", |_| true),
            max_starts_per_tick: p.uint("max_starts_per_tick", |_| true),
        };
        p.finish(params)
    }

    fn decide(p: &Params, snapshot: &Snapshot, _state: &[u8]) -> Decision {
        let fleet = Fleet::new(snapshot);
        let mut d = Decision::default();
        let sets = task_sets(&fleet);
        let pool_caps = pools(&fleet);
        let allocation = allocate(&sets, &pool_caps, p.upper);

        // Scale-up: starts and shutdowns are never mixed in one decision.
        let mut placer = Placer::new(&fleet, p.max_starts_per_tick);
        let mut started = 0;
        for (set, &deficit) in sets.iter().zip(&allocation.deficit) {
            if deficit > 0 {
                started += placer.place(deficit, &set.rep, Unit::Workers, |_| true, &mut d);
            }
        }
        if started > 0 {
            return d;
        }

        // Scale-down: at most one group per key set whose pool is under-used, and only if the
        // remaining groups still serve every task set without a deficit.
        let victims = first_victims(&fleet, p.min_idle_ms);
        // Capacity by pool once the groups chosen so far are gone. At most one group per key set is
        // chosen: each key set's first group in victim order.
        let mut remaining = pool_caps.clone();
        for (keys, v) in victims {
            let capacity = pool_caps.get(keys).copied().unwrap_or(0);
            let allocated = allocation.alloc.get(keys).copied().unwrap_or(0.0);
            if capacity == 0 || allocated / capacity as f64 >= p.lower {
                continue;
            }
            let mut without = remaining.clone();
            if let Some(c) = without.get_mut(keys) {
                *c = c.saturating_sub(fleet.cap(v));
            }
            // (a) the last-capable rule: every task set keeps some capacity that serves it.
            let last_capable = sets
                .iter()
                .any(|set| without.iter().filter(|(k, _)| set.keys.is_subset(k)).map(|(_, c)| c).sum::<u64>() == 0);
            // (b) anti-thrash: without it, allocation still meets every task set.
            if last_capable || allocate(&sets, &without, p.upper).deficit.iter().any(|&x| x > 0) {
                continue;
            }
            remaining = without;
            d.commands.push(Command::Shutdown(v.id));
        }
        d
    }
}

ebbtide_sdk::export_policy!(CapabilityPolicy);
