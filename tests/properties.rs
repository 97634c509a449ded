//! Properties of the common model (docs/builtins.md#the-common-model) that every built-in must keep, on random
//! snapshots: starts within free slots and the start budget; shutdowns only of live, managed groups
//! that the policy's rule allows; any state bytes accepted. And, with the real scheduler core between
//! two decisions, no further starts once the core shows the accepted starts as `starting` (host
//! obligation H1).

use std::collections::{BTreeMap, HashMap};

use ebbtide::policy::builtin;
use ebbtide::scheduler::harness::Harness;
use ebbtide::scheduler::{CoreConfig, Input};
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
        }
    }

    /// H1 through the real core: the policy decides on the core's snapshot, the core applies the
    /// decision, and the next snapshot (asked for at once, as the new groups change the membership)
    /// shows the starts as `starting`, so the policy starts nothing more.
    #[test]
    fn h1_through_the_core_no_builtin_starts_again_once_its_starts_are_starting(
        spec in snapshot_spec(), budget in 0u64..4,
    ) {
        for b in builtin::all() {
            let params = params(b.name, budget, 0);
            let mut h = Harness::new(CoreConfig { tick_ms: 60_000, ..CoreConfig::default() });
            for a in &spec.adapters {
                h.adapter(&a.id, a.max_worker_groups, a.workers_per_group, a.capabilities.clone());
            }
            let client = h.client();
            let mut id = 0;
            for t in &spec.task_groups {
                for _ in 0..t.pending + t.running {
                    id += 1;
                    h.submit(client, id, t.capabilities.clone());
                }
            }
            h.at(10);
            // The decisions the joins asked for, answered with nothing; then one on everything.
            while let Some((seq, _)) = h.decision() {
                h.answer(seq, vec![]);
            }
            h.input(Input::DecideNow);
            let mut state = Vec::new();
            for round in 0..2 {
                let (seq, snapshot) = h
                    .decision()
                    .ok_or_else(|| TestCaseError::fail(format!("{}: no decision asked for in round {round}", b.name)))?;
                let decision = (b.native)(&params, &snapshot, &state).map_err(TestCaseError::fail)?;
                check_rules(b.name, &snapshot, &decision, budget, 0)
                    .map_err(|e| TestCaseError::fail(format!("{}: {e}\nsnapshot: {snapshot:?}", b.name)))?;
                let unplaceable = decision.diagnostics.iter().any(|d| d.code == "unplaceable");
                if round == 1 && !unplaceable {
                    prop_assert_eq!(decision.starts(), 0, "{}: starts again after its starts were accepted\nsnapshot: {:?}",
                        b.name, snapshot);
                }
                let started = decision.starts();
                state = decision.state.clone();
                h.answer(seq, decision.commands);
                let record = h.record().expect("an answered decision is recorded");
                prop_assert!(record.dropped.is_empty(), "{}: the guard rails dropped {:?}", b.name, record.dropped);
                if unplaceable || started == 0 {
                    break;
                }
            }
        }
    }
}
