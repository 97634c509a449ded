//! Properties of the common model (POLICIES.md section 0) that every built-in must keep, on random
//! snapshots: starts within free slots and the start budget; shutdowns only of live, managed groups
//! that the policy's rule allows; no further starts when the accepted starts are shown as `starting`
//! (host obligation H1); any state bytes accepted.

use std::collections::{BTreeMap, HashMap};

use ebbtide::policy::builtin;
use ebbtide_sdk::vectors::{AdapterSpec, SnapshotSpec, TaskGroupSpec, WorkerGroupSpec};
use ebbtide_sdk::{Command, Decision, GroupState, Snapshot};
use proptest::prelude::*;

const CAPS: [&str; 2] = ["gpu", "ssd"];

fn caps(mask: u8, value: i64) -> BTreeMap<String, i64> {
    CAPS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| (n.to_string(), value)).collect()
}

fn snapshot_spec() -> impl Strategy<Value = SnapshotSpec> {
    let adapter = (0u32..4, 1u32..4, prop::option::of(0u8..4), 0i32..3);
    let task = (0u8..4, 0u32..60, 0u32..20);
    let group = (prop::option::of(0usize..3), 0u8..4, 0u8..3, 0u32..4, 0u32..8, 0u64..100_000);
    (
        prop::collection::vec(adapter, 1..4),
        prop::collection::vec(task, 0..5),
        prop::collection::vec(group, 0..9),
        0u64..1_000_000,
    )
        .prop_map(|(adapters, tasks, groups, now_ms)| {
            let adapters: Vec<AdapterSpec> = adapters
                .into_iter()
                .enumerate()
                .map(|(i, (max, wpg, mask, priority))| AdapterSpec {
                    id: format!("a{i}"),
                    max_worker_groups: max,
                    workers_per_group: wpg,
                    capabilities: mask.map(|m| caps(m, -1)),
                    priority,
                })
                .collect();
            let adapter_count = adapters.len();
            SnapshotSpec {
                now_ms,
                adapters,
                task_groups: tasks
                    .into_iter()
                    .map(|(mask, pending, running)| TaskGroupSpec { capabilities: caps(mask, 1), pending, running })
                    .collect(),
                worker_groups: groups
                    .into_iter()
                    .enumerate()
                    .map(|(i, (adapter, mask, state, workers, queued, idle_ms))| {
                        let state = [GroupState::Starting, GroupState::Running, GroupState::Draining][state as usize];
                        WorkerGroupSpec {
                            id: format!("g{i}"),
                            adapter: adapter.map(|a| format!("a{}", a % adapter_count)),
                            capabilities: caps(mask, -1),
                            state,
                            workers: if state == GroupState::Starting { 0 } else { workers },
                            queued_tasks: queued,
                            idle_workers: None,
                            idle_ms: if queued > 0 { 0 } else { idle_ms },
                            metrics: BTreeMap::from([("queue_depth".to_string(), f64::from(queued))]),
                        }
                    })
                    .collect(),
                ..SnapshotSpec::default()
            }
        })
}

/// Params for each built-in with a start budget and an idle rule where it has them.
fn params(policy: &str, budget: u64, min_idle_ms: u64) -> String {
    match policy {
        "vanilla" | "capability" | "fixed_elastic" => {
            format!(r#"{{"max_starts_per_tick": {budget}, "min_idle_ms": {min_idle_ms}}}"#)
        }
        "buffer" => {
            r#"{"adapter_id": "a0", "min_ready": 2, "target_buffer": 3, "scale_down_stabilization_ms": 0}"#.into()
        }
        "pd_coordinated" => format!(
            r#"{{"max_starts_per_tick": {budget}, "scale_down_stabilization_ms": 0, "roles": [
                {{"name": "decode", "capabilities": {{"ssd": 1}}, "max_replicas": 6}},
                {{"name": "prefill", "capabilities": {{"gpu": 1}}, "max_replicas": 6}}]}}"#
        ),
        _ => "{}".into(),
    }
}

/// Checks one decision against the common-model rules; the error says which rule broke.
fn check_rules(policy: &str, snapshot: &Snapshot, d: &Decision, budget: u64, min_idle_ms: u64) -> Result<(), String> {
    let mut starts: HashMap<u32, u64> = HashMap::new();
    let mut shutdowns = Vec::new();
    for c in &d.commands {
        match c {
            Command::Start { adapter, .. } => *starts.entry(*adapter).or_default() += 1,
            Command::Shutdown(id) => shutdowns.push(*id),
        }
    }
    let total: u64 = starts.values().sum();
    if budget > 0 && policy != "buffer" && total > budget {
        return Err(format!("{total} starts exceed the budget of {budget}"));
    }
    for (adapter, n) in &starts {
        let a = snapshot.adapter(*adapter).ok_or_else(|| format!("start on unknown adapter id {adapter}"))?;
        if a.max_worker_groups > 0 {
            let used = snapshot.worker_groups.iter().filter(|g| g.adapter == Some(*adapter)).count() as u64;
            let free = u64::from(a.max_worker_groups).saturating_sub(used);
            if *n > free {
                return Err(format!("{n} starts on {} with {free} free slots", snapshot.name(*adapter)));
            }
        }
    }
    let mut seen = Vec::new();
    for id in shutdowns {
        if seen.contains(&id) {
            return Err(format!("group {id} shut down twice"));
        }
        seen.push(id);
        let g = snapshot
            .worker_groups
            .iter()
            .find(|g| g.id == id)
            .ok_or_else(|| format!("shutdown of unknown group {id}"))?;
        if g.adapter.is_none() {
            return Err(format!("shutdown of unmanaged group {id}"));
        }
        if g.state == GroupState::Draining {
            return Err(format!("shutdown of draining group {id}"));
        }
        let running = g.state == GroupState::Running;
        let allowed = match policy {
            "vanilla" | "capability" | "fixed_elastic" => !running || g.idle_ms >= min_idle_ms,
            "buffer" => !running || (g.queued_tasks == 0 && g.idle_workers >= g.workers),
            _ => true,
        };
        if !allowed {
            return Err(format!("shutdown of busy group {id} ({g:?}) breaks the {policy} rule"));
        }
    }
    Ok(())
}

/// The snapshot the host would show next (H1, H2): accepted starts as `starting`, shutdowns draining.
fn apply(spec: &SnapshotSpec, snapshot: &Snapshot, d: &Decision, names: &HashMap<u64, String>) -> SnapshotSpec {
    let mut next = spec.clone();
    for (i, c) in d.commands.iter().enumerate() {
        match c {
            Command::Start { adapter, capabilities } => next.worker_groups.push(WorkerGroupSpec {
                id: format!("s{i:04}"),
                adapter: Some(snapshot.name(*adapter).to_owned()),
                capabilities: capabilities.iter().map(|c| (c.name.clone(), c.value)).collect(),
                state: GroupState::Starting,
                workers: 0,
                queued_tasks: 0,
                idle_workers: None,
                idle_ms: 0,
                metrics: BTreeMap::new(),
            }),
            Command::Shutdown(id) => {
                if let Some(g) = next.worker_groups.iter_mut().find(|g| Some(&g.id) == names.get(id)) {
                    g.state = GroupState::Draining;
                }
            }
        }
    }
    next
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_builtin_keeps_the_common_model(spec in snapshot_spec(), budget in 0u64..4, min_idle_ms in 0u64..60_000,
                                            garbage in prop::collection::vec(any::<u8>(), 0..40)) {
        for b in builtin::all() {
            let params = params(b.name, budget, min_idle_ms);
            let built = spec.build();
            let first = (b.native)(&params, &built.snapshot, &[]).map_err(|e| TestCaseError::fail(format!("{}: {e}", b.name)))?;
            check_rules(b.name, &built.snapshot, &first, budget, min_idle_ms)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}\nsnapshot: {spec:?}", b.name)))?;

            // Undecodable state is "no state", never a failure.
            let with_garbage = (b.native)(&params, &built.snapshot, &garbage);
            prop_assert!(with_garbage.is_ok(), "{}: garbage state refused: {:?}", b.name, with_garbage);

            // H1: with the accepted starts shown as starting groups, a repeated call starts nothing more,
            // unless the first call could not place everything (slots or budget ran out).
            let unplaceable = first.diagnostics.iter().any(|d| d.code == "unplaceable");
            if !unplaceable && first.starts() > 0 {
                let next_spec = apply(&spec, &built.snapshot, &first, &built.group_names);
                let next = next_spec.build();
                let second = (b.native)(&params, &next.snapshot, &first.state).map_err(TestCaseError::fail)?;
                prop_assert_eq!(second.starts(), 0, "{}: starts again after its starts were accepted\nfirst: {:?}\nsecond: {:?}\nsnapshot: {:?}",
                    b.name, first.commands, second.commands, next_spec);
            }
        }
    }
}
