//! The live dashboard's memory: a bounded ring of recent history, kept by the event loop and read by
//! the admin endpoints (`GET /history`, `GET /decision/SEQ`).
//!
//! - **Samples**, one about every [`SAMPLE_INTERVAL_MS`]: the fleet by adapter and group state, pending
//!   and running tasks, completions and queue wait. The last [`MAX_SAMPLES`] are kept (ten minutes).
//! - **Decisions**: a summary of each (trigger, duration, starts per adapter, shutdowns, dropped
//!   commands with their reason, diagnostics, the deciding policy, the error kind of a failure), at
//!   most `history_decisions` of them. Each also keeps its full record (snapshot, state, commands: the
//!   decision-log line) for the detail view, within `history_detail_mib` in all: the oldest details
//!   are let go first, and a single record larger than a sixteenth of that is not kept.
//! - **Swaps**: the last [`MAX_SWAPS`] outcomes, accepted or rejected with their stage.
//!
//! Every string a policy or peer controls is cut to a bounded length, so a summary is bounded too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ebbtide_sdk::Trigger;
use ebbtide_sdk::vectors::ReadableCommand;
use serde::{Deserialize, Serialize};

use super::SwapOutcome;
use crate::scheduler::DecisionRecord;
use crate::scheduler::observe::{AdapterFleet, FleetObservation};
use crate::scheduler::status::{GroupCounts, Status};

/// How often the event loop takes a sample.
pub const SAMPLE_INTERVAL_MS: u64 = 1000;
/// Samples kept: ten minutes at one a second.
pub const MAX_SAMPLES: usize = 600;
/// Swap outcomes kept.
pub const MAX_SWAPS: usize = 64;
/// The most decision summaries one `GET /history` answers with (the newest, when more are new).
pub const MAX_DECISIONS_PER_PAGE: usize = 500;
/// Adapters shown one by one in a sample; the rest are summed into one line.
const MAX_ADAPTERS_PER_SAMPLE: usize = 12;
/// Dropped commands and diagnostics listed in a summary (the totals are always given).
const MAX_LISTED: usize = 8;
/// Longest text kept from a policy or a peer (messages, reasons, errors), in bytes.
const MAX_TEXT: usize = 240;

/// `history_decisions` and `history_detail_mib`: what the ring may hold.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryLimits {
    /// Decision summaries kept.
    pub decisions: usize,
    /// Memory for full decision records (the detail view), in MiB.
    pub detail_mib: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits { decisions: 5000, detail_mib: 64 }
    }
}

impl HistoryLimits {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.decisions) {
            return Err(format!("history_decisions: expected 1 to 1000000, got {}", self.decisions));
        }
        if self.detail_mib > 4096 {
            return Err(format!("history_detail_mib: expected 0 to 4096, got {}", self.detail_mib));
        }
        Ok(())
    }

    fn detail_bytes(&self) -> usize {
        self.detail_mib << 20
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    pub fleet: Vec<AdapterFleet>,
    pub pending: usize,
    pub running: usize,
    /// Cumulative, so a rate is the difference between two samples.
    pub done: u64,
    pub failed: u64,
    pub decisions: u64,
    /// How long the oldest pending task has waited (to within a sample interval); `None`: none pending.
    pub queue_wait_ms: Option<u64>,
    /// The id the next task would get at this time: maps a task id to when it arrived.
    #[serde(skip)]
    next_task: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecisionSummary {
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    pub trigger: Trigger,
    pub duration_us: u64,
    /// Starts sent (after the guard rails), by adapter.
    pub starts: BTreeMap<String, u32>,
    /// Shutdowns sent.
    pub shutdowns: u32,
    pub dropped: Vec<DroppedSummary>,
    pub dropped_total: usize,
    pub diagnostics: Vec<ebbtide_sdk::Diagnostic>,
    pub diagnostics_total: usize,
    pub policy_digest: String,
    pub policy_source: String,
    /// `timeout`, `memory`, `fuel`, `trap`, `invalid-decision`, ... when the decision failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the shadow policy agreed, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_agrees: Option<bool>,
    pub detail: Detail,
}

#[derive(Clone, Debug, Serialize)]
pub struct DroppedSummary {
    pub command: String,
    pub reason: String,
}

/// Whether `GET /decision/SEQ` can show the full record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Kept,
    /// Larger than a sixteenth of `history_detail_mib` (any record, when that is 0).
    TooLarge,
    /// Let go to stay within `history_detail_mib`.
    Evicted,
}

struct Entry {
    summary: DecisionSummary,
    /// The decision-log line of this decision.
    record: Option<Arc<str>>,
}

/// What `GET /history` asks for: everything after what the page already has.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Samples with a higher `seq` (0: every sample kept).
    #[serde(default)]
    pub samples_after: u64,
    /// Decisions with a higher `seq` (0: the newest ones).
    #[serde(default)]
    pub decisions_after: u64,
    /// At most this many decisions, the newest (capped at [`MAX_DECISIONS_PER_PAGE`]).
    pub limit: Option<usize>,
}

/// The answer to `GET /history`.
#[derive(Debug, Serialize)]
pub struct HistoryPage {
    pub now_ms: u64,
    pub sample_interval_ms: u64,
    pub samples: Vec<Sample>,
    /// Oldest first.
    pub decisions: Vec<DecisionSummary>,
    /// Decisions after `decisions_after` left out by `limit` (the oldest of them).
    pub decisions_omitted: usize,
    pub last_decision_seq: u64,
    pub swaps: Vec<SwapOutcome>,
    pub limits: HistoryLimits,
    pub kept: Kept,
}

#[derive(Debug, Serialize)]
pub struct Kept {
    pub decisions: usize,
    pub records: usize,
    pub record_bytes: usize,
}

/// One decision's full record for `GET /decision/SEQ`.
pub enum Lookup {
    Found(Arc<str>),
    /// Still summarized, but its record is gone (or was never kept).
    NoRecord(Detail),
    Unknown,
}

pub struct History {
    limits: HistoryLimits,
    samples: VecDeque<Sample>,
    next_sample: u64,
    /// Ordered by `seq` (records can arrive slightly out of order while a shadow answers).
    decisions: VecDeque<Entry>,
    /// Seqs of decisions whose record is kept, oldest first: the order they are let go in.
    records: VecDeque<u64>,
    record_bytes: usize,
    swaps: VecDeque<SwapOutcome>,
    /// When the history began, and the first task id then: the arrival of any task still pending.
    origin: (u64, u64),
}

impl History {
    pub fn new(limits: HistoryLimits, now_ms: u64) -> Self {
        History {
            limits,
            samples: VecDeque::new(),
            next_sample: 1,
            decisions: VecDeque::new(),
            records: VecDeque::new(),
            record_bytes: 0,
            swaps: VecDeque::new(),
            origin: (now_ms, 1),
        }
    }

    /// Takes a sample of `status` and `fleet` at `time_ms` (Unix milliseconds).
    pub fn sample(&mut self, time_ms: u64, status: &Status, fleet: FleetObservation) {
        let queue_wait_ms = fleet.oldest_pending.map(|id| time_ms.saturating_sub(self.arrival_bound(id)));
        let sample = Sample {
            seq: self.next_sample,
            time_ms,
            fleet: fold_adapters(fleet.by_adapter),
            pending: status.tasks.pending,
            running: status.tasks.running,
            done: status.tasks.done,
            failed: status.tasks.failed,
            decisions: status.counters.decisions,
            queue_wait_ms,
            next_task: fleet.next_task,
        };
        self.next_sample += 1;
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The latest time known to be before task `id` arrived: the last sample taken before its id
    /// was handed out (or the oldest time still remembered).
    fn arrival_bound(&self, id: u64) -> u64 {
        let before = self.samples.partition_point(|s| s.next_task <= id);
        match before {
            0 if id >= self.origin.1 && self.samples.len() < MAX_SAMPLES => self.origin.0,
            0 => self.samples.front().map_or(self.origin.0, |s| s.time_ms),
            n => self.samples[n - 1].time_ms,
        }
    }

    /// Remembers a finished decision: its summary, and its full record while memory allows.
    pub fn record(&mut self, record: &DecisionRecord) {
        let mut summary = summarize(record);
        // With no memory for records (history_detail_mib = 0), do not even write one out.
        let line = (self.limits.detail_mib > 0).then(|| serde_json::to_string(record).ok()).flatten();
        let keep = line.as_ref().is_some_and(|l| l.len() <= self.limits.detail_bytes() / 16);
        if !keep {
            summary.detail = Detail::TooLarge;
        }
        let position = self.decisions.iter().rposition(|e| e.summary.seq < record.seq).map_or(0, |p| p + 1);
        let entry = Entry { summary, record: if keep { line.map(Arc::from) } else { None } };
        if let Some(line) = &entry.record {
            self.record_bytes += line.len();
            self.records.push_back(record.seq);
        }
        self.decisions.insert(position, entry);
        while self.decisions.len() > self.limits.decisions {
            if let Some(old) = self.decisions.pop_front()
                && let Some(line) = old.record
            {
                self.record_bytes -= line.len();
                // Records are let go oldest first, so this one is nearly always at the front.
                if self.records.front() == Some(&old.summary.seq) {
                    self.records.pop_front();
                } else {
                    self.records.retain(|s| *s != old.summary.seq);
                }
            }
        }
        while self.record_bytes > self.limits.detail_bytes() {
            let Some(seq) = self.records.pop_front() else { break };
            if let Some(entry) = self.entry_mut(seq)
                && let Some(line) = entry.record.take()
            {
                entry.summary.detail = Detail::Evicted;
                self.record_bytes -= line.len();
            }
        }
    }

    pub fn swap(&mut self, outcome: &SwapOutcome) {
        let mut outcome = outcome.clone();
        if let Some(r) = &mut outcome.rejection {
            r.error = cut(&r.error, 4 * MAX_TEXT);
        }
        if self.swaps.len() == MAX_SWAPS {
            self.swaps.pop_front();
        }
        self.swaps.push_back(outcome);
    }

    fn entry_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let i = self.decisions.binary_search_by_key(&seq, |e| e.summary.seq).ok()?;
        self.decisions.get_mut(i)
    }

    /// What is new since the query's cursors, bounded: at most [`MAX_SAMPLES`] samples and
    /// [`MAX_DECISIONS_PER_PAGE`] decision summaries.
    pub fn page(&self, query: &HistoryQuery, now_ms: u64) -> HistoryPage {
        let first_sample = self.samples.partition_point(|s| s.seq <= query.samples_after);
        let first_decision = self.decisions.partition_point(|e| e.summary.seq <= query.decisions_after);
        let limit = query.limit.unwrap_or(MAX_DECISIONS_PER_PAGE).min(MAX_DECISIONS_PER_PAGE);
        let new = self.decisions.len() - first_decision;
        let skip = new.saturating_sub(limit);
        HistoryPage {
            now_ms,
            sample_interval_ms: SAMPLE_INTERVAL_MS,
            samples: self.samples.range(first_sample..).cloned().collect(),
            decisions: self.decisions.range(first_decision + skip..).map(|e| e.summary.clone()).collect(),
            decisions_omitted: skip,
            last_decision_seq: self.decisions.back().map_or(0, |e| e.summary.seq),
            swaps: self.swaps.iter().cloned().collect(),
            limits: self.limits.clone(),
            kept: Kept {
                decisions: self.decisions.len(),
                records: self.records.len(),
                record_bytes: self.record_bytes,
            },
        }
    }

    pub fn lookup(&self, seq: u64) -> Lookup {
        match self.decisions.binary_search_by_key(&seq, |e| e.summary.seq) {
            Ok(i) => match &self.decisions[i].record {
                Some(line) => Lookup::Found(line.clone()),
                None => Lookup::NoRecord(self.decisions[i].summary.detail),
            },
            Err(_) => Lookup::Unknown,
        }
    }
}

fn summarize(record: &DecisionRecord) -> DecisionSummary {
    // What the policy asked for, less what the guard rails dropped, is what was sent.
    let mut starts: BTreeMap<String, i64> = BTreeMap::new();
    let mut shutdowns = 0i64;
    let mut tally = |command: &ReadableCommand, delta: i64| match command {
        ReadableCommand::Start { adapter, .. } => *starts.entry(cut(adapter, MAX_TEXT)).or_default() += delta,
        ReadableCommand::Shutdown(_) => shutdowns += delta,
    };
    record.commands.iter().for_each(|c| tally(c, 1));
    record.dropped.iter().for_each(|d| tally(&d.command, -1));
    // The typed kind the core recorded; older records (a replayed log) only have the text.
    let error_kind = record.error_kind.map(str::to_owned).or_else(|| record.error.as_deref().map(error_kind));
    DecisionSummary {
        seq: record.seq,
        time_ms: record.time_ms,
        trigger: record.trigger,
        duration_us: record.duration_us,
        starts: starts.into_iter().filter(|(_, n)| *n > 0).map(|(a, n)| (a, n as u32)).collect(),
        shutdowns: shutdowns.max(0) as u32,
        dropped: record
            .dropped
            .iter()
            .take(MAX_LISTED)
            .map(|d| DroppedSummary {
                command: cut(&d.command.to_string(), MAX_TEXT),
                reason: cut(&d.reason, MAX_TEXT),
            })
            .collect(),
        dropped_total: record.dropped.len(),
        diagnostics: record
            .diagnostics
            .iter()
            .take(MAX_LISTED)
            .map(|d| ebbtide_sdk::Diagnostic { code: cut(&d.code, 64), message: cut(&d.message, MAX_TEXT) })
            .collect(),
        diagnostics_total: record.diagnostics.len(),
        policy_digest: cut(&record.policy_digest, 64),
        policy_source: cut(&record.policy_source, MAX_TEXT),
        error_kind,
        error: record.error.as_deref().map(|e| cut(e, MAX_TEXT)),
        shadow_agrees: record.shadow.as_ref().map(|s| s.agrees),
        detail: Detail::Kept,
    }
}

/// The kind of a failed decision: the runtime's errors open with it (`timeout: ...`).
fn error_kind(error: &str) -> String {
    match error.split_once(':') {
        Some((kind, _))
            if !kind.is_empty() && kind.len() <= 32 && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') =>
        {
            kind.to_owned()
        }
        _ => "error".to_owned(),
    }
}

/// At most `max` bytes of `text`, cut on a character boundary, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Keeps the first adapters one by one and sums the rest into one entry, so a sample stays small.
fn fold_adapters(mut fleet: Vec<AdapterFleet>) -> Vec<AdapterFleet> {
    if fleet.len() <= MAX_ADAPTERS_PER_SAMPLE {
        return fleet;
    }
    let rest = fleet.split_off(MAX_ADAPTERS_PER_SAMPLE - 1);
    let mut other = AdapterFleet { adapter: Some(format!("({} more)", rest.len())), ..AdapterFleet::default() };
    let add = |sum: &mut GroupCounts, c: &GroupCounts| {
        sum.starting += c.starting;
        sum.running += c.running;
        sum.draining += c.draining;
    };
    for f in &rest {
        add(&mut other.groups, &f.groups);
        add(&mut other.workers, &f.workers);
    }
    fleet.push(other);
    fleet
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::record::DroppedCommand;

    fn record(seq: u64, snapshot_groups: usize) -> DecisionRecord {
        let mut snapshot = crate::policy::sample::snapshot(crate::policy::sample::Size::Small);
        snapshot.worker_groups.truncate(snapshot_groups.min(snapshot.worker_groups.len()));
        let start = |a: &str| ReadableCommand::Start { adapter: a.into(), capabilities: Default::default() };
        DecisionRecord {
            seq,
            time_ms: 1_000 + seq,
            trigger: Trigger::Tick,
            policy_digest: "d".repeat(64),
            policy_source: "builtin:vanilla".into(),
            params: serde_json::json!({}),
            snapshot,
            state: String::new(),
            commands: vec![start("a"), start("a"), start("b"), ReadableCommand::Shutdown("7".into())],
            dropped: vec![DroppedCommand {
                command: start("b"),
                kind: "adapter_full",
                reason: "adapter \"b\" is full".into(),
            }],
            diagnostics: vec![],
            duration_us: 40,
            error: None,
            error_kind: None,
            shadow: None,
        }
    }

    #[test]
    fn a_summary_counts_what_was_sent_per_adapter() {
        let s = summarize(&record(1, 1));
        assert_eq!(s.starts, BTreeMap::from([("a".to_owned(), 2)]));
        assert_eq!(s.shutdowns, 1);
        assert_eq!(s.dropped_total, 1);
        assert_eq!(s.dropped[0].reason, "adapter \"b\" is full");
    }

    #[test]
    fn a_failed_decision_is_summarized_with_its_kind() {
        let mut r = record(1, 1);
        r.error = Some("timeout: the policy did not return from decide within 100 ms and was stopped".into());
        assert_eq!(summarize(&r).error_kind.as_deref(), Some("timeout"));
        r.error = Some("something without a kind".into());
        assert_eq!(summarize(&r).error_kind.as_deref(), Some("error"));
    }

    #[test]
    fn decisions_beyond_history_decisions_are_forgotten_oldest_first() {
        let mut h = History::new(HistoryLimits { decisions: 3, detail_mib: 1 }, 0);
        for seq in 1..=5 {
            h.record(&record(seq, 1));
        }
        let page = h.page(&HistoryQuery::default(), 0);
        assert_eq!(page.decisions.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(matches!(h.lookup(2), Lookup::Unknown));
        assert!(matches!(h.lookup(3), Lookup::Found(_)));
        assert_eq!(page.kept.records, 3);
    }

    #[test]
    fn records_beyond_history_detail_mib_are_let_go_and_the_summaries_stay() {
        let one = serde_json::to_string(&record(1, 12)).unwrap().len();
        let fits = (1 << 20) / one;
        let mut h = History::new(HistoryLimits { decisions: fits + 100, detail_mib: 1 }, 0);
        for seq in 1..=(fits as u64 + 5) {
            h.record(&record(seq, 12));
        }
        let page = h.page(&HistoryQuery { limit: Some(500), ..HistoryQuery::default() }, 0);
        assert!(page.kept.record_bytes <= 1 << 20);
        assert_eq!(page.kept.decisions, fits + 5);
        assert!(matches!(h.lookup(1), Lookup::NoRecord(Detail::Evicted)));
        assert!(matches!(h.lookup(fits as u64 + 5), Lookup::Found(_)));
    }

    #[test]
    fn a_page_is_bounded_and_resumes_after_its_cursor() {
        let mut h = History::new(HistoryLimits { decisions: 2000, detail_mib: 0 }, 0);
        for seq in 1..=1200 {
            h.record(&record(seq, 1));
        }
        let page = h.page(&HistoryQuery::default(), 0);
        assert_eq!(page.decisions.len(), MAX_DECISIONS_PER_PAGE);
        assert_eq!(page.decisions_omitted, 1200 - MAX_DECISIONS_PER_PAGE);
        assert_eq!(page.decisions.last().unwrap().seq, 1200);
        assert_eq!(page.decisions[0].detail, Detail::TooLarge, "a 0 MiB budget keeps no record");
        let next = h.page(&HistoryQuery { decisions_after: 1198, ..HistoryQuery::default() }, 0);
        assert_eq!(next.decisions.iter().map(|d| d.seq).collect::<Vec<_>>(), [1199, 1200]);
    }

    #[test]
    fn records_arriving_out_of_order_are_kept_in_order() {
        let mut h = History::new(HistoryLimits::default(), 0);
        for seq in [1, 3, 2, 4] {
            h.record(&record(seq, 1));
        }
        let page = h.page(&HistoryQuery::default(), 0);
        assert_eq!(page.decisions.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn queue_wait_is_the_age_of_the_oldest_pending_task() {
        let mut h = History::new(HistoryLimits::default(), 10_000);
        let status = |pending| {
            let mut s = crate::scheduler::Scheduler::new(Default::default(), 0).status();
            s.tasks.pending = pending;
            s
        };
        let fleet = |next_task, oldest| FleetObservation { by_adapter: vec![], next_task, oldest_pending: oldest };
        h.sample(11_000, &status(0), fleet(1, None)); // no task yet
        h.sample(12_000, &status(3), fleet(4, Some(1))); // tasks 1..3 arrived between 11 s and 12 s
        h.sample(15_000, &status(1), fleet(6, Some(3)));
        let page = h.page(&HistoryQuery::default(), 0);
        let waits: Vec<_> = page.samples.iter().map(|s| s.queue_wait_ms).collect();
        assert_eq!(waits, [None, Some(1_000), Some(4_000)]);
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("ééé", 3), "é…");
        assert_eq!(cut("abc", 3), "abc");
    }
}
