//! Plain Rust mirrors of the records in `wit/policy.wit`.
//!
//! Field for field the same as the contract: inside a WebAssembly guest the snapshot is lifted
//! straight into these types (see `guest`). The records a snapshot lists are `repr(C)`, the layout
//! the generated bindings assume: a list of records whose every bit pattern is valid (capabilities,
//! task groups, metric samples, misses) is handed over without a copy. They derive serde so hosts
//! can log and replay snapshots and decisions.

use serde::{Deserialize, Serialize};

/// Index into [`Snapshot::names`].
pub type NameId = u32;
/// Index into [`Snapshot::capability_sets`].
pub type CapsetId = u32;

/// One capability of a set; `value` -1 means "present, no quantity".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capability {
    pub name: NameId,
    pub value: i64,
}

/// A capability named by string, used in start commands (they may name capabilities the snapshot
/// has never seen, which have no [`NameId`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamedCapability {
    pub name: String,
    pub value: i64,
}

#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adapter {
    pub id: NameId,
    /// 0 means unbounded.
    pub max_worker_groups: u32,
    pub workers_per_group: u32,
    /// `None`: the adapter can provide any capability set.
    pub capabilities: Option<CapsetId>,
    /// Lower is preferred.
    pub priority: i32,
}

#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGroup {
    pub capabilities: CapsetId,
    pub pending: u32,
    pub running: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    Starting,
    Running,
    Draining,
}

#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerGroup {
    pub id: u64,
    /// `None`: unmanaged (static) workers, counted as capacity and never shut down.
    pub adapter: Option<NameId>,
    pub capabilities: CapsetId,
    pub state: GroupState,
    pub workers: u32,
    pub queued_tasks: u32,
    pub idle_workers: u32,
    pub idle_ms: u64,
}

#[repr(C)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Index into [`Snapshot::worker_groups`].
    pub group: u32,
    pub name: NameId,
    pub value: f64,
}

#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Miss {
    pub adapter: NameId,
    pub count: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Tick,
    Pressure,
    Membership,
    Manual,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub now_ms: u64,
    pub trigger: Trigger,
    pub names: Vec<String>,
    pub capability_sets: Vec<Vec<Capability>>,
    pub adapters: Vec<Adapter>,
    pub task_groups: Vec<TaskGroup>,
    pub worker_groups: Vec<WorkerGroup>,
    pub metrics: Vec<MetricSample>,
    pub misses: Vec<Miss>,
}

impl Snapshot {
    /// The interned name, or `"?"` for an id out of range (a malformed snapshot must not panic a guest).
    pub fn name(&self, id: NameId) -> &str {
        self.names.get(id as usize).map_or("?", String::as_str)
    }

    /// The capability set, empty for an id out of range.
    pub fn capability_set(&self, id: CapsetId) -> &[Capability] {
        self.capability_sets.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// A capability set with its names spelled out, as start commands carry it.
    pub fn named_set(&self, id: CapsetId) -> Vec<NamedCapability> {
        self.capability_set(id)
            .iter()
            .map(|c| NamedCapability { name: self.name(c.name).to_owned(), value: c.value })
            .collect()
    }

    pub fn adapter(&self, id: NameId) -> Option<&Adapter> {
        self.adapters.iter().find(|a| a.id == id)
    }

    /// The misses recorded for one adapter since the previous decision.
    pub fn misses_for(&self, adapter: NameId) -> u64 {
        self.misses.iter().filter(|m| m.adapter == adapter).map(|m| u64::from(m.count)).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Start { adapter: NameId, capabilities: Vec<NamedCapability> },
    Shutdown(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: String,
    pub message: String,
}

impl Diagnostic {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Diagnostic { code: code.to_owned(), message: message.into() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub commands: Vec<Command>,
    pub state: Vec<u8>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Decision {
    pub fn diagnose(&mut self, code: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(code, message));
    }

    pub fn starts(&self) -> usize {
        self.commands.iter().filter(|c| matches!(c, Command::Start { .. })).count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamInfo {
    pub name: String,
    pub kind: String,
    pub default: String,
    pub doc: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub params: Vec<ParamInfo>,
}
