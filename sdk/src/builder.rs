//! Building a [`Snapshot`] from readable values: names and capability sets are interned here, once,
//! so every producer of snapshots (the scheduler, the vector harness, benchmarks) agrees on the shape.

use std::collections::{BTreeMap, HashMap};

use crate::model::*;

/// A capability map as people write it: name to value, -1 meaning "present, no quantity".
pub type CapMap = BTreeMap<String, i64>;

#[derive(Default)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
    names: HashMap<String, NameId>,
    sets: HashMap<Vec<Capability>, CapsetId>,
}

impl SnapshotBuilder {
    pub fn new(now_ms: u64, trigger: Trigger) -> Self {
        SnapshotBuilder { snapshot: Snapshot { now_ms, trigger, ..Snapshot::default() }, ..Self::default() }
    }

    /// The id of `name`, interning it on first use.
    pub fn name(&mut self, name: &str) -> NameId {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = self.snapshot.names.len() as NameId;
        self.snapshot.names.push(name.to_owned());
        self.names.insert(name.to_owned(), id);
        id
    }

    /// The id of a capability set, interning it on first use. Sets are compared by content, with
    /// capabilities in name order, so `{gpu:1, linux:-1}` and `{linux:-1, gpu:1}` are one set.
    pub fn capset<'a>(&mut self, caps: impl IntoIterator<Item = (&'a str, i64)>) -> CapsetId {
        let sorted: BTreeMap<&str, i64> = caps.into_iter().collect();
        let set: Vec<Capability> =
            sorted.into_iter().map(|(name, value)| Capability { name: self.name(name), value }).collect();
        if let Some(&id) = self.sets.get(&set) {
            return id;
        }
        let id = self.snapshot.capability_sets.len() as CapsetId;
        self.snapshot.capability_sets.push(set.clone());
        self.sets.insert(set, id);
        id
    }

    pub fn capset_of(&mut self, caps: &CapMap) -> CapsetId {
        self.capset(caps.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    pub fn adapter(&mut self, adapter: Adapter) -> &mut Self {
        self.snapshot.adapters.push(adapter);
        self
    }

    /// Adds an adapter described by name and capability map (`None`: it offers any set).
    pub fn named_adapter(
        &mut self,
        id: &str,
        max_worker_groups: u32,
        workers_per_group: u32,
        capabilities: Option<&CapMap>,
        priority: i32,
    ) -> &mut Self {
        let id = self.name(id);
        let capabilities = capabilities.map(|c| self.capset_of(c));
        self.adapter(Adapter { id, max_worker_groups, workers_per_group, capabilities, priority })
    }

    pub fn task_group(&mut self, group: TaskGroup) -> &mut Self {
        self.snapshot.task_groups.push(group);
        self
    }

    /// Adds a worker group and returns its index, which metric samples refer to.
    pub fn worker_group(&mut self, group: WorkerGroup) -> u32 {
        self.snapshot.worker_groups.push(group);
        (self.snapshot.worker_groups.len() - 1) as u32
    }

    pub fn metric(&mut self, group_index: u32, name: &str, value: f64) -> &mut Self {
        let name = self.name(name);
        self.snapshot.metrics.push(MetricSample { group: group_index, name, value });
        self
    }

    pub fn miss(&mut self, adapter: &str, count: u32) -> &mut Self {
        let adapter = self.name(adapter);
        self.snapshot.misses.push(Miss { adapter, count });
        self
    }

    pub fn finish(self) -> Snapshot {
        self.snapshot
    }
}
