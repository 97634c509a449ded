//! Stuck demand: tasks that an adapter *could* serve but that the policy leaves waiting. After
//! [`STUCK_AFTER_DECISIONS`] decisions with tasks of a capability set pending, no worker able to run
//! them and no group able to run them starting, the set gets a diagnostic in `/status` and one
//! warning in the log, naming the set, the count, the deciding policy and what would serve them.
//! (Sets that no adapter can serve at all have their own diagnostic, `unrunnable`, in `tasks`.)

use std::collections::{BTreeMap, BTreeSet};

use ebbtide_sdk::CapMap;

use super::tasks::describe;
use super::{GroupPhase, Scheduler};

/// Decisions a set may wait through before it is called stuck: the first decision after a burst may
/// be busy starting other groups, and a policy that scales in steps needs a few.
pub const STUCK_AFTER_DECISIONS: u32 = 3;

/// Decisions each waiting set has waited through, and whether its warning was logged.
#[derive(Default)]
pub(super) struct StuckSets {
    waited: BTreeMap<CapMap, (u32, bool)>,
    /// The active policy, as `/status` names it (set by the shell when a policy is installed).
    policy: String,
}

impl Scheduler {
    /// Names the policy that decides, for the stuck-demand diagnostic.
    pub fn set_policy_label(&mut self, label: &str) {
        self.stuck.policy = label.to_owned();
    }

    /// Called after every decision, successful or not: counts the decisions each unserved set has
    /// waited through and warns once when one is stuck.
    pub(super) fn note_stuck_demand(&mut self) {
        let waiting: BTreeSet<CapMap> = self
            .queues
            .iter()
            .filter(|(caps, queue)| !queue.is_empty() && !self.unrunnable.contains_key(*caps) && !self.served(caps))
            .map(|(caps, _)| caps.clone())
            .collect();
        self.stuck.waited.retain(|caps, _| waiting.contains(caps));
        for caps in waiting {
            let entry = self.stuck.waited.entry(caps.clone()).or_default();
            entry.0 += 1;
            if entry.0 >= STUCK_AFTER_DECISIONS && !entry.1 {
                entry.1 = true;
                tracing::warn!("{}", self.stuck_message(&caps));
            }
        }
    }

    /// The diagnostics of the sets that are stuck now, with their current counts.
    pub(super) fn stuck_diagnostics(&self) -> impl Iterator<Item = String> + '_ {
        self.stuck
            .waited
            .iter()
            .filter(|(_, (decisions, _))| *decisions >= STUCK_AFTER_DECISIONS)
            .map(|(caps, _)| self.stuck_message(caps))
    }

    /// A worker that can run tasks of `caps` is connected, or a group that will have one is starting.
    fn served(&self, caps: &CapMap) -> bool {
        self.workers.values().any(|w| self.capable(&w.capabilities, caps))
            || self.groups.values().any(|g| g.phase == GroupPhase::Starting && self.capable(&g.capabilities, caps))
    }

    fn stuck_message(&self, caps: &CapMap) -> String {
        let pending = self.queues.get(caps).map_or(0, |q| q.len());
        let decisions = self.stuck.waited.get(caps).map_or(0, |(d, _)| *d);
        let policy = if self.stuck.policy.is_empty() { "the active policy" } else { &self.stuck.policy };
        let hint = if caps.is_empty() {
            "a policy that scales on pending tasks would serve them, for example scaling=vanilla or \
             scaling=capability"
        } else {
            "a policy that starts groups with the capabilities tasks require would serve them, for example \
             scaling=capability"
        };
        format!(
            "{pending} tasks requiring {} have waited {decisions} decisions: no connected worker has these \
             capabilities and no group with them is starting, and {policy} has not started one although an \
             adapter could; {hint}",
            describe(caps)
        )
    }
}
