//! The test-vector harness (tests/vectors/FORMAT.md): parse a vector file, turn each step into a
//! [`Snapshot`], run any `decide` on it, and compare the commands as a multiset.
//!
//! The same harness drives a policy natively in unit tests and through the WebAssembly runtime in
//! `ebbtide policy test`, so both are judged by one reading of the format.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::builder::{CapMap, SnapshotBuilder};
use crate::model::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    pub policy: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default = "empty_object")]
    pub params: Value,
    pub steps: Vec<Step>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub snapshot: SnapshotSpec,
    pub expect: Expect,
}

/// A snapshot written with readable names and capability maps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSpec {
    pub now_ms: u64,
    #[serde(default)]
    pub trigger: Trigger,
    #[serde(default)]
    pub adapters: Vec<AdapterSpec>,
    #[serde(default)]
    pub task_groups: Vec<TaskGroupSpec>,
    #[serde(default)]
    pub worker_groups: Vec<WorkerGroupSpec>,
    #[serde(default)]
    pub misses: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSpec {
    pub id: String,
    pub max_worker_groups: u32,
    pub workers_per_group: u32,
    #[serde(default)]
    pub capabilities: Option<CapMap>,
    #[serde(default)]
    pub priority: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskGroupSpec {
    pub capabilities: CapMap,
    pub pending: u32,
    pub running: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerGroupSpec {
    pub id: String,
    pub adapter: Option<String>,
    pub capabilities: CapMap,
    #[serde(default = "running")]
    pub state: GroupState,
    pub workers: u32,
    pub queued_tasks: u32,
    #[serde(default)]
    pub idle_workers: Option<u32>,
    #[serde(default)]
    pub idle_ms: u64,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

fn running() -> GroupState {
    GroupState::Running
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub commands: Vec<ExpectedCommand>,
    #[serde(default)]
    pub diagnostics: Option<Vec<String>>,
}

/// A command in the readable JSON shape of the vector files (also used by the decision log).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReadableCommand {
    Start { adapter: String, capabilities: CapMap },
    Shutdown(String),
}

impl std::fmt::Display for ReadableCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadableCommand::Start { adapter, capabilities } => {
                let caps: Vec<String> = capabilities.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                write!(f, "start({adapter}, {{{}}})", caps.join(","))
            }
            ReadableCommand::Shutdown(id) => write!(f, "shutdown({id})"),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ExpectedCommand {
    #[serde(flatten)]
    pub command: ReadableCommand,
    #[serde(default = "one")]
    pub count: usize,
}

fn one() -> usize {
    1
}

/// A snapshot built from a spec, with the mapping between readable group ids and contract ids.
pub struct BuiltSnapshot {
    pub snapshot: Snapshot,
    /// Contract id to readable id.
    pub group_names: HashMap<u64, String>,
}

impl SnapshotSpec {
    /// Builds the contract snapshot. Group ids are numbered from 1 in ascending string order of the
    /// readable ids, as FORMAT.md prescribes.
    pub fn build(&self) -> BuiltSnapshot {
        let mut sorted: Vec<&str> = self.worker_groups.iter().map(|g| g.id.as_str()).collect();
        sorted.sort();
        let id_of: HashMap<&str, u64> = sorted.iter().enumerate().map(|(i, s)| (*s, i as u64 + 1)).collect();

        let mut b = SnapshotBuilder::new(self.now_ms, self.trigger);
        for a in &self.adapters {
            b.named_adapter(&a.id, a.max_worker_groups, a.workers_per_group, a.capabilities.as_ref(), a.priority);
        }
        for t in &self.task_groups {
            let capabilities = b.capset_of(&t.capabilities);
            b.task_group(TaskGroup { capabilities, pending: t.pending, running: t.running });
        }
        for g in &self.worker_groups {
            let adapter = g.adapter.as_deref().map(|a| b.name(a));
            let capabilities = b.capset_of(&g.capabilities);
            let index = b.worker_group(WorkerGroup {
                id: id_of[g.id.as_str()],
                adapter,
                capabilities,
                state: g.state,
                workers: g.workers,
                queued_tasks: g.queued_tasks,
                idle_workers: g.idle_workers.unwrap_or(g.workers.saturating_sub(g.queued_tasks)),
                idle_ms: g.idle_ms,
            });
            for (name, value) in &g.metrics {
                b.metric(index, name, *value);
            }
        }
        for (adapter, count) in &self.misses {
            b.miss(adapter, *count);
        }
        let group_names = id_of.iter().map(|(s, id)| (*id, s.to_string())).collect();
        BuiltSnapshot { snapshot: b.finish(), group_names }
    }
}

/// A contract command in the readable shape, given the snapshot it answers.
pub fn readable(command: &Command, snapshot: &Snapshot, group_names: &HashMap<u64, String>) -> ReadableCommand {
    match command {
        Command::Start { adapter, capabilities } => ReadableCommand::Start {
            adapter: snapshot.name(*adapter).to_owned(),
            capabilities: capabilities.iter().map(|c| (c.name.clone(), c.value)).collect(),
        },
        Command::Shutdown(id) => {
            ReadableCommand::Shutdown(group_names.get(id).cloned().unwrap_or_else(|| format!("#{id}")))
        }
    }
}

/// The outcome of one step.
#[derive(Debug)]
pub struct StepOutcome {
    pub case: String,
    /// 1-based.
    pub step: usize,
    /// Sorted, with repeats.
    pub expected: Vec<String>,
    pub produced: Vec<String>,
    pub missing_diagnostics: Vec<String>,
    /// `decide` failed (an error string from the policy or the runtime).
    pub error: Option<String>,
}

impl StepOutcome {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.expected == self.produced && self.missing_diagnostics.is_empty()
    }
}

/// Runs every step of every case. `decide` gets the params as JSON text, the snapshot and the state.
pub fn run(
    file: &VectorFile,
    mut decide: impl FnMut(&str, &Snapshot, &[u8]) -> Result<Decision, String>,
) -> Vec<StepOutcome> {
    let mut outcomes = Vec::new();
    for case in &file.cases {
        let params = case.params.to_string();
        let mut state = Vec::new();
        for (i, step) in case.steps.iter().enumerate() {
            let built = step.snapshot.build();
            let mut expected: Vec<String> =
                step.expect.commands.iter().flat_map(|e| std::iter::repeat_n(e.command.to_string(), e.count)).collect();
            expected.sort();
            let mut outcome = StepOutcome {
                case: case.name.clone(),
                step: i + 1,
                expected,
                produced: Vec::new(),
                missing_diagnostics: Vec::new(),
                error: None,
            };
            match decide(&params, &built.snapshot, &state) {
                Ok(decision) => {
                    outcome.produced = decision
                        .commands
                        .iter()
                        .map(|c| readable(c, &built.snapshot, &built.group_names).to_string())
                        .collect();
                    outcome.produced.sort();
                    outcome.missing_diagnostics = step
                        .expect
                        .diagnostics
                        .iter()
                        .flatten()
                        .filter(|code| !decision.diagnostics.iter().any(|d| &d.code == *code))
                        .cloned()
                        .collect();
                    state = decision.state;
                }
                Err(e) => outcome.error = Some(e),
            }
            outcomes.push(outcome);
        }
    }
    outcomes
}

impl StepOutcome {
    /// One line naming file, case and step, with expected and produced commands side by side.
    pub fn describe(&self, file: &str) -> String {
        let mut line = format!("FAIL {file}: case {:?} step {}: ", self.case, self.step);
        if let Some(e) = &self.error {
            line.push_str(&format!("decide failed: {e}"));
            return line;
        }
        if self.expected != self.produced {
            line.push_str(&format!(
                "expected [{}] | produced [{}]",
                self.expected.join(", "),
                self.produced.join(", ")
            ));
        }
        if !self.missing_diagnostics.is_empty() {
            line.push_str(&format!(" missing diagnostics [{}]", self.missing_diagnostics.join(", ")));
        }
        line
    }
}

/// Reads and parses a vector file; the error names the file.
pub fn load(path: &std::path::Path) -> Result<VectorFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a vector file: {e}", path.display()))
}

/// For native unit tests: every step of the file passes against `P`; the panic lists each failure.
pub fn assert_passes<P: crate::Policy>(path: impl AsRef<std::path::Path>) {
    let path = path.as_ref();
    let file = load(path).unwrap_or_else(|e| panic!("{e}"));
    let outcomes = run(&file, crate::decide_json::<P>);
    let failures: Vec<String> =
        outcomes.iter().filter(|o| !o.passed()).map(|o| o.describe(&path.display().to_string())).collect();
    assert!(!outcomes.is_empty(), "{}: no steps", path.display());
    assert!(failures.is_empty(), "{} of {} steps failed:\n{}", failures.len(), outcomes.len(), failures.join("\n"));
}
