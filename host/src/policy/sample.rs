//! Deterministic sample snapshots: the one generator behind `ebbtide policy bench`, `policy check`'s
//! dry run and the criterion benchmark, so every figure is measured on the same input.
//!
//! `Large` is the shape of the README's "Measured" figures: 100 task groups, 1,000 worker groups, 4 capability
//! names and 3 metrics per group.

use ebbtide_sdk::{Adapter, GroupState, Snapshot, SnapshotBuilder, TaskGroup, Trigger, WorkerGroup};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    Small,
    Large,
}

const CAPABILITY_NAMES: [&str; 4] = ["gpu", "highmem", "ssd", "arm"];
const METRICS: [&str; 3] = ["queue_depth", "kv_cache_utilization", "ttft"];

/// The sample snapshot of the given size.
pub fn snapshot(size: Size) -> Snapshot {
    let (task_groups, worker_groups) = match size {
        Size::Small => (4, 12),
        Size::Large => (100, 1000),
    };
    generate(task_groups, worker_groups)
}

/// Params under which each built-in does real work on the sample snapshots.
pub fn params(policy: &str) -> &'static str {
    match policy {
        "fixed_elastic" => r#"{"primary_adapters": ["pool-0"]}"#,
        "buffer" => r#"{"adapter_id": "pool-0", "min_ready": 2, "target_buffer": 4}"#,
        "pd_coordinated" => {
            r#"{"roles": [
                {"name": "decode", "capabilities": {"highmem": -1}, "max_replicas": 400, "preferred_share": {"min_pct": 50, "max_pct": 80}},
                {"name": "prefill", "capabilities": {"gpu": 1}, "max_replicas": 400, "preferred_share": {"min_pct": 20, "max_pct": 50}}
            ]}"#
        }
        _ => "{}",
    }
}

/// The capability names of key mask `mask` (bit i = `CAPABILITY_NAMES[i]`).
fn names_of(mask: usize) -> impl Iterator<Item = &'static str> {
    CAPABILITY_NAMES.iter().enumerate().filter(move |(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n)
}

fn generate(task_groups: usize, worker_groups: usize) -> Snapshot {
    let mut b = SnapshotBuilder::new(600_000, Trigger::Tick);
    let adapter_caps: [Option<usize>; 4] = [None, Some(0b0011), Some(0b1100), Some(0b1111)];
    let mut adapter_ids = Vec::new();
    for (i, caps) in adapter_caps.iter().enumerate() {
        let id = b.name(&format!("pool-{i}"));
        let capabilities = caps.map(|mask| b.capset(names_of(mask).map(|n| (n, -1))));
        b.adapter(Adapter {
            id,
            max_worker_groups: if i == 2 { 400 } else { 0 },
            workers_per_group: 1 + (i as u32 % 2),
            capabilities,
            priority: i as i32,
        });
        adapter_ids.push(id);
    }
    for i in 0..task_groups {
        // Distinct sets: the key mask cycles, the gpu quantity distinguishes repeats of a mask.
        let mask = i % 16;
        let quantity = 1 + (i / 16) as i64;
        let capabilities = b.capset(names_of(mask).map(|n| (n, if n == "gpu" { quantity } else { -1 })));
        b.task_group(TaskGroup { capabilities, pending: ((i * 37) % 50) as u32, running: ((i * 13) % 20) as u32 });
    }
    for i in 0..worker_groups {
        let capabilities = b.capset(names_of((i * 7) % 16).map(|n| (n, -1)));
        let state = match i {
            i if i % 10 == 3 => GroupState::Starting,
            i if i % 17 == 5 => GroupState::Draining,
            _ => GroupState::Running,
        };
        let workers = if state == GroupState::Starting { 0 } else { 1 + (i % 4) as u32 };
        let queued = ((i * 3) % 5) as u32;
        let index = b.worker_group(WorkerGroup {
            id: i as u64 + 1,
            adapter: (i % 10 != 9).then_some(adapter_ids[i % 4]),
            capabilities,
            state,
            workers,
            queued_tasks: queued,
            idle_workers: workers.saturating_sub(queued),
            idle_ms: if queued == 0 { ((i * 1000) % 60_000) as u64 } else { 0 },
        });
        for (k, metric) in METRICS.iter().enumerate() {
            b.metric(index, metric, ((i * (k + 3)) % 97) as f64 / 10.0);
        }
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_sample_has_the_documented_shape() {
        let s = snapshot(Size::Large);
        assert_eq!(s.task_groups.len(), 100);
        assert_eq!(s.worker_groups.len(), 1000);
        assert_eq!(s.metrics.len(), 3000);
        let mut sets: Vec<_> = s.task_groups.iter().map(|t| t.capabilities).collect();
        sets.dedup();
        assert_eq!(sets.len(), 100, "every task group is its own capability set");
    }
}
