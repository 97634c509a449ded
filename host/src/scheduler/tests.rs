//! The core as a state machine: inputs at chosen virtual times, outputs asserted. Each test names the
//! rule it pins: a host obligation (H1 to H7, docs/architecture.md#host-obligations), a trigger, requeueing, or a
//! guard-rail drop reason.

use ebbtide_sdk::{CapMap, Command, GroupState, Snapshot, Trigger, WorkerGroup};

use super::harness::{Harness, caps};
use super::metrics::{MAX_GAUGE_NAME_BYTES, MAX_GAUGES_PER_WORKER};
use super::{CoreConfig, GroupId, Input, Output};
use crate::protocol::{AdapterCommand, Message, TaskStatus};

fn config() -> CoreConfig {
    // A long tick, so that only the trigger a test causes decides.
    CoreConfig { tick_ms: 60_000, pressure_delay_ms: 5, start_timeout_ms: 30_000, ..CoreConfig::default() }
}

/// Answers every decision asked for with no commands, and drops their records.
fn settle(h: &mut Harness) {
    while let Some((seq, _)) = h.decision() {
        h.answer(seq, vec![]);
    }
    while h.record().is_some() {}
}

/// Asks for a decision now, after any in flight, and returns its snapshot, leaving it in flight.
fn decide_now(h: &mut Harness) -> (u64, Snapshot) {
    settle(h);
    h.input(Input::DecideNow);
    h.decision().expect("a manual decision is asked for at once when none is in flight")
}

/// The snapshot now (the decision is answered with nothing).
fn look(h: &mut Harness) -> Snapshot {
    let (seq, snapshot) = decide_now(h);
    h.answer(seq, vec![]);
    settle(h);
    snapshot
}

fn group(s: &Snapshot, id: GroupId) -> Option<&WorkerGroup> {
    s.worker_groups.iter().find(|g| g.id == id)
}

fn metric(s: &Snapshot, id: GroupId, name: &str) -> Option<f64> {
    let index = s.worker_groups.iter().position(|g| g.id == id)? as u32;
    s.metrics.iter().find(|m| m.group == index && s.name(m.name) == name).map(|m| m.value)
}

fn caps_of(s: &Snapshot, g: &WorkerGroup) -> CapMap {
    s.capability_set(g.capabilities).iter().map(|c| (s.name(c.name).to_owned(), c.value)).collect()
}

/// Decides one start of `{}` on `adapter` and returns the group id the adapter was told.
fn start_one(h: &mut Harness, adapter_peer: u64, adapter: &str) -> GroupId {
    let (seq, s) = decide_now(h);
    h.answer(seq, vec![Harness::start(&s, adapter, &[])]);
    match h.commands_to(adapter_peer).as_slice() {
        [AdapterCommand::Start { group_id, .. }] => *group_id,
        other => panic!("expected one start sent to {adapter}, got {other:?}"),
    }
}

/// Answers a decision with `commands` and returns the kinds of the drops it caused.
fn drops(h: &mut Harness, commands: impl FnOnce(&Snapshot) -> Vec<Command>) -> Vec<&'static str> {
    let (seq, s) = decide_now(h);
    h.answer(seq, commands(&s));
    let record = h.record().expect("an answered decision is recorded");
    record.dropped.iter().map(|d| d.kind).collect()
}

fn dropped_count(h: &Harness, kind: &str) -> u64 {
    h.core.status().counters.commands_dropped_by_reason.get(kind).copied().unwrap_or(0)
}

// H1: a start the host accepted is a `starting` group in the next snapshot until it runs or fails.

#[test]
fn h1_accepted_start_is_starting_in_the_next_snapshot_then_running_once_confirmed_and_connected() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 0, 2, None);
    settle(&mut h);
    let g = start_one(&mut h, a, "A");
    let s = look(&mut h);
    let sg = group(&s, g).expect("the started group is in the next snapshot");
    assert_eq!((sg.state, sg.workers, sg.adapter.map(|n| s.name(n))), (GroupState::Starting, 0, Some("A")));

    h.respond(a, g, true);
    assert_eq!(group(&look(&mut h), g).unwrap().state, GroupState::Starting, "confirmed, no worker yet");
    h.worker(Some(g), CapMap::new(), vec![]);
    assert_eq!(group(&look(&mut h), g).unwrap().state, GroupState::Starting, "running only once all workers are in");
    h.worker(Some(g), CapMap::new(), vec![]);
    let s = look(&mut h);
    assert_eq!((group(&s, g).unwrap().state, group(&s, g).unwrap().workers), (GroupState::Running, 2));
}

#[test]
fn h1_group_whose_workers_all_connect_before_the_confirmation_runs_with_its_adapters_capabilities() {
    let mut h = Harness::new(config());
    let a = h.adapter("gpu-box", 0, 1, Some(caps(&[("gpu", 1)])));
    settle(&mut h);
    let g = start_one(&mut h, a, "gpu-box");
    h.worker(Some(g), caps(&[("gpu", 1)]), vec![]);
    let s = look(&mut h);
    let sg = group(&s, g).unwrap();
    assert_eq!((sg.state, sg.idle_workers), (GroupState::Running, 1), "an idle worker of a running group is free");
    assert_eq!(caps_of(&s, sg), caps(&[("gpu", 1)]));
    h.respond(a, g, true);
    assert_eq!(group(&look(&mut h), g).unwrap().state, GroupState::Running, "the late confirmation changes nothing");
}

#[test]
fn h1_start_not_confirmed_within_start_timeout_ms_is_gone_counted_and_cancelled() {
    let mut h = Harness::new(CoreConfig { start_timeout_ms: 1_000, ..config() });
    let a = h.adapter("A", 0, 1, None);
    settle(&mut h);
    let g = start_one(&mut h, a, "A");
    h.at(999);
    assert!(group(&look(&mut h), g).is_some(), "still starting before the timeout");
    h.at(1_250);
    assert!(group(&look(&mut h), g).is_none(), "gone after start_timeout_ms");
    assert_eq!(h.core.status().counters.start_failures, 1);
    assert!(h.commands_to(a).contains(&AdapterCommand::Shutdown { group_id: g }), "the adapter is told to clean up");
}

#[test]
fn h1_failed_start_is_gone_and_counted() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 0, 1, None);
    settle(&mut h);
    let g = start_one(&mut h, a, "A");
    h.respond(a, g, false);
    assert!(group(&look(&mut h), g).is_none());
    assert_eq!(h.core.status().counters.start_failures, 1);
}

// H2: a group being shut down is draining: it holds its slot, takes no tasks, adds no capacity.

#[test]
fn h2_shut_down_group_drains_holds_its_slot_takes_no_tasks_and_gives_back_its_task() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 1, 1, None);
    let client = h.client();
    settle(&mut h);
    let g = start_one(&mut h, a, "A");
    let workers = h.bring_up(a, g, 1, CapMap::new());
    settle(&mut h);
    h.submit(client, 1, CapMap::new());
    let task = h.tasks_to(workers[0]);
    assert_eq!(task.len(), 1, "the idle worker takes the task");

    let (seq, _) = decide_now(&mut h);
    h.answer(seq, vec![Command::Shutdown(g)]);
    assert_eq!(h.commands_to(a), vec![AdapterCommand::Shutdown { group_id: g }]);
    let s = look(&mut h);
    let sg = group(&s, g).unwrap();
    assert_eq!((sg.state, sg.queued_tasks), (GroupState::Draining, 0));
    assert_eq!(s.task_groups[0].pending, 1, "its task is pending again");
    assert_eq!(h.core.status().counters.tasks_requeued, 1);

    assert_eq!(
        drops(&mut h, |s| vec![Harness::start(s, "A", &[])]),
        ["adapter_full"],
        "a draining group holds its slot"
    );
    h.submit(client, 2, CapMap::new());
    assert!(h.tasks_to(workers[0]).is_empty(), "a draining worker gets no new task");

    h.respond(a, g, true);
    assert!(group(&look(&mut h), g).is_none(), "gone once the adapter confirms the shutdown");
}

// H3: every start of a decision goes out at once.

#[test]
fn h3_every_start_of_one_decision_is_sent_at_once() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 0, 1, None);
    settle(&mut h);
    let (seq, s) = decide_now(&mut h);
    h.answer(seq, (0..5).map(|_| Harness::start(&s, "A", &[])).collect());
    let sent = h.commands_to(a);
    assert_eq!(sent.len(), 5, "{sent:?}");
    let ids: std::collections::BTreeSet<_> = sent
        .iter()
        .map(|c| match c {
            AdapterCommand::Start { group_id, .. } => *group_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 5, "each start has its own group id");
}

// H4: guard rails, one test per drop reason; each drop is recorded with its kind and counted.

#[test]
fn h4_start_on_an_unknown_adapter_is_dropped_as_unknown_adapter() {
    let mut h = Harness::new(config());
    h.adapter("A", 0, 1, None);
    settle(&mut h);
    assert_eq!(drops(&mut h, |s| vec![Harness::start(s, "nowhere", &[])]), ["unknown_adapter"]);
    assert_eq!(dropped_count(&h, "unknown_adapter"), 1);
    assert_eq!(h.core.status().counters.starts, 0);
}

#[test]
fn h4_start_on_a_full_adapter_is_dropped_as_adapter_full() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 2, 1, None);
    settle(&mut h);
    let kinds = drops(&mut h, |s| (0..3).map(|_| Harness::start(s, "A", &[])).collect());
    assert_eq!(kinds, ["adapter_full"], "two slots, three starts");
    assert_eq!(h.commands_to(a).len(), 2);
    assert_eq!(dropped_count(&h, "adapter_full"), 1);
}

#[test]
fn h4_starts_past_max_starts_per_tick_are_dropped() {
    let mut h = Harness::new(CoreConfig { max_starts_per_tick: 2, ..config() });
    let a = h.adapter("A", 0, 1, None);
    settle(&mut h);
    let kinds = drops(&mut h, |s| (0..5).map(|_| Harness::start(s, "A", &[])).collect());
    assert_eq!(kinds, ["max_starts_per_tick"; 3]);
    assert_eq!(h.commands_to(a).len(), 2);
    assert_eq!(dropped_count(&h, "max_starts_per_tick"), 3);
}

#[test]
fn h4_shutdown_of_an_unknown_group_is_dropped_as_unknown_group() {
    let mut h = Harness::new(config());
    h.adapter("A", 0, 1, None);
    settle(&mut h);
    assert_eq!(drops(&mut h, |_| vec![Command::Shutdown(4242)]), ["unknown_group"]);
    assert_eq!(dropped_count(&h, "unknown_group"), 1);
}

#[test]
fn h4_h6_shutdown_of_unmanaged_workers_is_dropped_as_unmanaged_group() {
    let mut h = Harness::new(config());
    h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    let s = look(&mut h);
    let id = s.worker_groups[0].id;
    assert_eq!(drops(&mut h, |_| vec![Command::Shutdown(id)]), ["unmanaged_group"]);
    assert_eq!(dropped_count(&h, "unmanaged_group"), 1);
}

#[test]
fn h4_shutdown_of_a_draining_group_is_dropped_as_already_draining() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 0, 1, None);
    settle(&mut h);
    let g = start_one(&mut h, a, "A");
    assert_eq!(drops(&mut h, |_| vec![Command::Shutdown(g)]), Vec::<&str>::new());
    assert_eq!(drops(&mut h, |_| vec![Command::Shutdown(g)]), ["already_draining"]);
    assert_eq!(h.commands_to(a), vec![AdapterCommand::Shutdown { group_id: g }], "one shutdown sent, not two");
}

#[test]
fn h4_shutdowns_past_max_shutdowns_per_tick_are_dropped() {
    let mut h = Harness::new(CoreConfig { max_shutdowns_per_tick: 1, ..config() });
    let a = h.adapter("A", 0, 1, None);
    settle(&mut h);
    let (seq, s) = decide_now(&mut h);
    h.answer(seq, vec![Harness::start(&s, "A", &[]), Harness::start(&s, "A", &[])]);
    let ids: Vec<GroupId> = h
        .commands_to(a)
        .iter()
        .map(|c| match c {
            AdapterCommand::Start { group_id, .. } => *group_id,
            other => panic!("{other:?}"),
        })
        .collect();
    let kinds = drops(&mut h, |_| ids.iter().map(|id| Command::Shutdown(*id)).collect());
    assert_eq!(kinds, ["max_shutdowns_per_tick"]);
    assert_eq!(dropped_count(&h, "max_shutdowns_per_tick"), 1);
}

// H5: misses, idle workers and idle time are the host's.

#[test]
fn h5_misses_count_tasks_without_a_free_worker_per_capable_adapter_and_reset_after_a_decision() {
    let mut h = Harness::new(config());
    h.adapter("any", 0, 1, None);
    h.adapter("gpu", 0, 1, Some(caps(&[("gpu", -1)])));
    h.adapter("cpu", 0, 1, Some(caps(&[("cpu", -1)])));
    let client = h.client();
    settle(&mut h);
    for id in 0..3 {
        h.submit(client, id, CapMap::new());
    }
    h.submit(client, 3, caps(&[("gpu", 1)]));
    let s = look(&mut h);
    let misses: Vec<(&str, u32)> = s.misses.iter().map(|m| (s.name(m.adapter), m.count)).collect();
    // A `{}` task could run on a gpu worker too; a `{gpu}` task only where gpus are offered.
    assert_eq!(misses, [("any", 4), ("cpu", 3), ("gpu", 4)]);
    let pending: u32 = s.task_groups.iter().map(|t| t.pending).sum();
    assert_eq!(pending, 4, "a miss is also queued (and so pending)");
    assert!(look(&mut h).misses.is_empty(), "consumed by the decision that saw them");
}

#[test]
fn h5_idle_workers_and_idle_ms_come_from_the_host() {
    let mut h = Harness::new(config());
    let client = h.client();
    let w1 = h.worker(None, CapMap::new(), vec![]);
    h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    h.at(100);
    h.submit(client, 1, CapMap::new());
    let task = h.tasks_to(w1)[0];
    let s = look(&mut h);
    assert_eq!((s.worker_groups[0].idle_workers, s.worker_groups[0].idle_ms), (1, 0), "busy: not idle");
    h.finish(w1, task);
    h.at(800);
    let s = look(&mut h);
    assert_eq!((s.worker_groups[0].idle_workers, s.worker_groups[0].idle_ms), (2, 700));
}

// H6: workers without a group form unmanaged groups, one per capability set.

#[test]
fn h6_unmanaged_workers_form_one_group_per_capability_set() {
    let mut h = Harness::new(config());
    h.worker(None, CapMap::new(), vec![]);
    h.worker(None, CapMap::new(), vec![]);
    h.worker(None, caps(&[("gpu", 1)]), vec![]);
    settle(&mut h);
    let s = look(&mut h);
    let mut groups: Vec<(CapMap, u32, bool)> =
        s.worker_groups.iter().map(|g| (caps_of(&s, g), g.workers, g.adapter.is_none())).collect();
    groups.sort();
    assert_eq!(groups, [(CapMap::new(), 2, true), (caps(&[("gpu", 1)]), 1, true)]);
}

// H7: metrics derived by the host and reported by workers.

#[test]
fn h7_host_derives_utilization_and_queue_depth_for_every_group() {
    let mut h = Harness::new(config());
    let client = h.client();
    let w1 = h.worker(None, CapMap::new(), vec![]);
    h.worker(None, CapMap::new(), vec![]);
    h.worker(None, caps(&[("gpu", 1)]), vec![]);
    settle(&mut h);
    // 3 workers take 3 tasks, 6 more wait: 4 runnable anywhere, 2 only on the gpu worker.
    for id in 0..7 {
        h.submit(client, id, CapMap::new());
    }
    for id in 7..9 {
        h.submit(client, id, caps(&[("gpu", 1)]));
    }
    let s = look(&mut h);
    let plain = s.worker_groups.iter().find(|g| caps_of(&s, g).is_empty()).unwrap().id;
    let gpu = s.worker_groups.iter().find(|g| !caps_of(&s, g).is_empty()).unwrap().id;
    assert_eq!(metric(&s, plain, "utilization"), Some(1.0));
    // The 4 plain tasks are shared by 3 capable workers; the 2 gpu tasks by the gpu worker alone.
    assert_eq!(metric(&s, plain, "queue_depth"), Some(4.0 / 3.0));
    assert_eq!(metric(&s, gpu, "queue_depth"), Some(4.0 / 3.0 + 2.0));
    let _ = w1;
}

#[test]
fn h7_group_sample_is_the_mean_of_its_workers_latest_gauges() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 0, 2, None);
    settle(&mut h);
    let g = start_one(&mut h, a, "A");
    h.respond(a, g, true);
    let w1 = h.worker(Some(g), CapMap::new(), vec![("kv".into(), 0.25), ("ttft".into(), 1.0)]);
    h.worker(Some(g), CapMap::new(), vec![("kv".into(), 0.75)]);
    let s = look(&mut h);
    assert_eq!(metric(&s, g, "kv"), Some(0.5));
    assert_eq!(metric(&s, g, "ttft"), Some(1.0), "the mean over the workers that report it");
    h.heartbeat(w1, Some(g), CapMap::new(), vec![("kv".into(), 1.0)]);
    let s = look(&mut h);
    assert_eq!(metric(&s, g, "kv"), Some(0.875), "the latest heartbeat replaces the previous one");
    assert_eq!(metric(&s, g, "ttft"), None, "a gauge no longer reported is gone");
    h.heartbeat(w1, Some(g), CapMap::new(), vec![("queue_depth".into(), 9.0)]);
    assert_eq!(metric(&look(&mut h), g, "queue_depth"), Some(9.0), "a reported gauge replaces the host's figure");
}

#[test]
fn h7_gauges_are_bounded_per_worker() {
    let mut h = Harness::new(config());
    let mut gauges: Vec<(String, f64)> = (0..MAX_GAUGES_PER_WORKER + 8).map(|i| (format!("g{i:03}"), 1.0)).collect();
    gauges.insert(0, ("x".repeat(MAX_GAUGE_NAME_BYTES + 1), 1.0));
    gauges.insert(0, ("nan".into(), f64::NAN));
    gauges.insert(0, ("bad name".into(), 1.0));
    h.worker(None, CapMap::new(), gauges);
    settle(&mut h);
    let s = look(&mut h);
    let names: Vec<&str> = s.metrics.iter().map(|m| s.name(m.name)).filter(|n| n.starts_with('g')).collect();
    assert_eq!(names.len(), MAX_GAUGES_PER_WORKER, "the first {MAX_GAUGES_PER_WORKER} valid gauges are kept");
    assert!(s.names.iter().all(|n| n.len() <= MAX_GAUGE_NAME_BYTES && n != "nan" && n != "bad name"));
}

// Triggers: tick, pressure, membership, manual; at most one decision in flight.

#[test]
fn trigger_tick_decides_every_tick_ms() {
    let mut h = Harness::new(CoreConfig { tick_ms: 1_000, ..config() });
    h.at(0);
    h.adapter("A", 0, 1, None);
    settle(&mut h);
    h.at(999);
    assert!(h.decision().is_none(), "no decision before the tick");
    h.at(1_000);
    let (_, s) = h.decision().expect("a decision at the tick");
    assert_eq!((s.trigger, s.now_ms), (Trigger::Tick, 1_000));
}

#[test]
fn an_empty_scheduler_sets_no_timer_and_ticks_again_once_something_arrives() {
    let mut h = Harness::new(CoreConfig { tick_ms: 1_000, ..config() });
    h.at(0);
    settle(&mut h);
    assert!(h.core.idle());
    assert_eq!(h.core.next_deadline_ms(), u64::MAX, "nothing can change until an input arrives");
    h.at(10_000);
    assert!(h.decision().is_none(), "no tick while empty");
    let client = h.client();
    h.submit(client, 1, CapMap::new());
    assert!(!h.core.idle());
    assert!(h.core.next_deadline_ms() <= 10_000 + 250, "a held task brings the timers back");
    let (_, s) = h.decision().expect("the overdue tick decides at once");
    assert_eq!(s.trigger, Trigger::Tick);
}

#[test]
fn trigger_pressure_decides_pressure_delay_ms_after_the_first_miss() {
    let mut h = Harness::new(CoreConfig { pressure_delay_ms: 50, ..config() });
    h.adapter("A", 0, 1, None);
    let client = h.client();
    settle(&mut h);
    h.at(100);
    h.submit(client, 1, CapMap::new());
    h.at(120);
    h.submit(client, 2, CapMap::new());
    h.at(149);
    assert!(h.decision().is_none(), "the burst is gathered for pressure_delay_ms");
    h.at(150);
    let (_, s) = h.decision().expect("a pressure decision");
    assert_eq!((s.trigger, s.now_ms), (Trigger::Pressure, 150));
    assert_eq!(s.misses[0].count, 2, "both tasks of the burst are in it");
}

#[test]
fn trigger_membership_decides_at_once_when_the_fleet_changes() {
    let mut h = Harness::new(config());
    h.at(0);
    settle(&mut h);
    h.at(10);
    h.adapter("A", 0, 1, None);
    let (_, s) = h.decision().expect("an adapter joining decides at once");
    assert_eq!((s.trigger, s.now_ms, s.adapters.len()), (Trigger::Membership, 10, 1));
}

#[test]
fn one_decision_in_flight_other_triggers_wait_for_its_answer() {
    let mut h = Harness::new(CoreConfig { tick_ms: 1_000, ..config() });
    h.adapter("A", 0, 1, None);
    let client = h.client();
    let (first, _) = h.decision().expect("membership");
    h.at(5_000);
    h.submit(client, 1, CapMap::new());
    h.at(5_100);
    assert!(h.decision().is_none(), "ticks and pressure wait while a decision is in flight");
    h.answer(first, vec![]);
    h.record();
    let (second, s) = h.decision().expect("the owed trigger fires as soon as the answer is in");
    assert_eq!((s.trigger, s.now_ms), (Trigger::Pressure, 5_100));
    assert_eq!(second, first + 1);
    h.answer(first, vec![]);
    assert!(h.record().is_none(), "an answer for a decision not in flight is ignored");
}

#[test]
fn trigger_manual_decides_at_once() {
    let mut h = Harness::new(config());
    h.at(0);
    settle(&mut h);
    h.at(42);
    let (_, s) = decide_now(&mut h);
    assert_eq!((s.trigger, s.now_ms), (Trigger::Manual, 42));
}

// Requeueing: delivery is at least once.

#[test]
fn requeue_the_task_of_a_worker_that_dies_runs_next_before_older_queued_tasks() {
    let mut h = Harness::new(CoreConfig { worker_prefetch: 1, ..config() });
    let client = h.client();
    let w1 = h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    h.submit(client, 1, CapMap::new());
    h.submit(client, 2, CapMap::new());
    let first = h.tasks_to(w1);
    h.disconnect(w1);
    assert_eq!(h.core.status().counters.tasks_requeued, 1);
    let w2 = h.worker(None, CapMap::new(), vec![]);
    assert_eq!(h.tasks_to(w2), first, "the requeued task goes first");
}

// Fixes pinned.

#[test]
fn confirmed_group_carries_the_capabilities_its_adapter_reports() {
    let mut h = Harness::new(config());
    let a = h.adapter("gpu-box", 0, 1, Some(caps(&[("gpu", 1), ("linux", -1)])));
    settle(&mut h);
    let g = start_one(&mut h, a, "gpu-box");
    h.respond(a, g, true);
    let s = look(&mut h);
    assert_eq!(caps_of(&s, group(&s, g).unwrap()), caps(&[("gpu", 1), ("linux", -1)]), "a {{}} start on a GPU adapter");
}

#[test]
fn failed_decision_is_recorded_and_counted_by_kind_and_changes_nothing() {
    let mut h = Harness::new(config());
    let a = h.adapter("A", 0, 1, None);
    let (seq, _) = h.decision().expect("membership");
    h.fail(seq, "timeout");
    let record = h.record().expect("recorded");
    assert_eq!(record.error_kind, Some("timeout"));
    assert!(h.commands_to(a).is_empty());
    let counters = h.core.status().counters;
    assert_eq!((counters.decisions_failed, counters.decisions_failed_by_kind.get("timeout")), (1, Some(&1)));
    assert!(h.take().iter().all(|o| !matches!(o, Output::Send { message: Message::AdapterCommand(_), .. })));
}

// Prefetch: a worker holds up to `worker_prefetch` tasks, the first running (see `holding`).

fn prefetching(slots: usize) -> Harness {
    Harness::new(CoreConfig { worker_prefetch: slots, ..config() })
}

fn violations(h: &Harness) -> u64 {
    h.core.status().counters.protocol_violations.values().sum()
}

#[test]
fn prefetch_goes_to_idle_workers_first_then_the_least_loaded_busy_one_up_to_worker_prefetch() {
    let mut h = prefetching(3);
    let client = h.client();
    let w1 = h.worker(None, CapMap::new(), vec![]);
    let w2 = h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    for id in 1..=7 {
        h.submit(client, id, CapMap::new());
    }
    // 1 and 2 to the idle workers; then the least loaded (ties: the lower id), three each at most.
    assert_eq!((h.tasks_to(w1), h.tasks_to(w2)), (vec![1, 3, 5], vec![2, 4, 6]));
    let s = look(&mut h);
    assert_eq!((s.task_groups[0].pending, s.task_groups[0].running), (5, 2), "4 prefetched + 1 queued are pending");
    h.finish(w2, 2);
    assert_eq!(h.tasks_to(w2), [7], "a freed slot takes the oldest queued task");
}

#[test]
fn prefetch_of_one_is_one_task_at_a_time() {
    let mut h = prefetching(1);
    let client = h.client();
    let w = h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    h.submit(client, 1, CapMap::new());
    h.submit(client, 2, CapMap::new());
    assert_eq!(h.tasks_to(w), [1]);
    h.finish(w, 1);
    assert_eq!(h.tasks_to(w), [2]);
}

/// Task groups (pending, running), worker groups (workers, queued tasks, idle workers), metrics,
/// misses in the snapshot, misses counted, and the trigger.
type ScalingView = (Vec<(u32, u32)>, Vec<(u32, u32, u32)>, Vec<(String, f64)>, Vec<u32>, u64, Trigger);

/// What scaling sees of one worker given three tasks, with `slots` prefetch slots.
fn scaling_view(slots: usize) -> ScalingView {
    let mut h = prefetching(slots);
    h.adapter("A", 0, 1, None);
    let client = h.client();
    h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    for id in 1..=3 {
        h.submit(client, id, CapMap::new());
    }
    h.at(10);
    let (seq, s) = h.decision().expect("the misses armed the pressure trigger");
    h.answer(seq, vec![]);
    let tasks = s.task_groups.iter().map(|t| (t.pending, t.running)).collect();
    let groups = s.worker_groups.iter().map(|g| (g.workers, g.queued_tasks, g.idle_workers)).collect();
    let metrics = s.metrics.iter().map(|m| (s.name(m.name).to_owned(), m.value)).collect();
    let misses = s.misses.iter().map(|m| m.count).collect();
    (tasks, groups, metrics, misses, h.core.status().counters.misses, s.trigger)
}

#[test]
fn prefetch_leaves_what_scaling_sees_unchanged_prefetched_tasks_are_pending_and_missed() {
    let one_at_a_time = scaling_view(1);
    assert_eq!(one_at_a_time.0, [(2, 1)]);
    assert_eq!(one_at_a_time.1, [(1, 1, 0)]);
    assert_eq!(one_at_a_time.3, [2], "two tasks found no free worker");
    assert_eq!(one_at_a_time.5, Trigger::Pressure);
    assert_eq!(scaling_view(4), one_at_a_time, "tasks, groups, utilization, queue_depth, misses, trigger");
}

#[test]
fn prefetch_a_lost_worker_gives_back_all_it_held_in_order_and_only_its_running_task_counts_an_attempt() {
    let limits = super::Limits { max_task_attempts: 1, ..Default::default() };
    let mut h = Harness::new(CoreConfig { worker_prefetch: 3, limits, ..config() });
    let client = h.client();
    let w1 = h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    for id in 1..=4 {
        h.submit(client, id, CapMap::new());
    }
    assert_eq!(h.tasks_to(w1), [1, 2, 3]);
    h.disconnect(w1);
    let results = h.results_to(client);
    assert_eq!(results, [(1, TaskStatus::Failed)], "the running task used its one attempt; the prefetched did not");
    let w2 = h.worker(None, CapMap::new(), vec![]);
    assert_eq!(h.tasks_to(w2), [2, 3, 4], "given back at the head of the queue, in their order");
    assert_eq!(h.core.status().counters.tasks_requeued, 2);
}

#[test]
fn prefetch_a_draining_groups_prefetched_tasks_go_back_to_pending_at_once_and_are_cancelled() {
    let mut h = prefetching(3);
    let a = h.adapter("A", 0, 1, None);
    let client = h.client();
    settle(&mut h);
    let g = start_one(&mut h, a, "A");
    let workers = h.bring_up(a, g, 1, CapMap::new());
    settle(&mut h);
    for id in 1..=3 {
        h.submit(client, id, CapMap::new());
    }
    assert_eq!(h.tasks_to(workers[0]), [1, 2, 3]);
    let (seq, _) = decide_now(&mut h);
    h.answer(seq, vec![Command::Shutdown(g)]);
    assert_eq!(h.cancels_to(workers[0]), [2, 3], "the prefetched tasks, not the running one (its copy may finish)");
    let s = look(&mut h);
    assert_eq!((s.task_groups[0].pending, s.task_groups[0].running), (3, 0));
    assert_eq!(group(&s, g).unwrap().queued_tasks, 0);

    // The worker answers the cancels; those answers are neither results nor violations.
    h.answer_task(workers[0], 2, TaskStatus::Cancelled);
    h.answer_task(workers[0], 3, TaskStatus::Cancelled);
    assert!(h.results_to(client).is_empty());
    assert_eq!(violations(&h), 0);
    let w2 = h.worker(None, CapMap::new(), vec![]);
    assert_eq!(h.tasks_to(w2), [1, 2, 3], "all three run elsewhere, in order");
    h.finish(workers[0], 1);
    assert_eq!(h.results_to(client), [(1, TaskStatus::Done)], "the draining copy's result still wins");
    assert_eq!(h.cancels_to(w2), [1], "and the other copy is cancelled");
}

#[test]
fn prefetch_a_cancelled_prefetched_task_is_dropped_by_its_worker_and_frees_its_slot() {
    let mut h = prefetching(2);
    let client = h.client();
    let w = h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    for id in 1..=3 {
        h.submit(client, id, CapMap::new());
    }
    assert_eq!(h.tasks_to(w), [1, 2]);
    h.message(client, Message::TaskCancel(2));
    assert_eq!(h.cancels_to(w), [2]);
    assert_eq!(h.results_to(client), [(2, TaskStatus::Cancelled)]);
    assert!(h.tasks_to(w).is_empty(), "the slot is the worker's until it confirms");
    h.answer_task(w, 2, TaskStatus::Cancelled);
    assert_eq!(h.tasks_to(w), [3]);
    assert!(h.results_to(client).is_empty(), "no second result");
    assert_eq!(violations(&h), 0);
}

#[test]
fn prefetch_a_result_counts_only_from_the_worker_holding_the_task() {
    let mut h = prefetching(2);
    let client = h.client();
    let w1 = h.worker(None, CapMap::new(), vec![]);
    let w2 = h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    for id in 1..=3 {
        h.submit(client, id, CapMap::new());
    }
    assert_eq!((h.tasks_to(w1), h.tasks_to(w2)), (vec![1, 3], vec![2]));
    h.finish(w2, 3);
    assert!(h.results_to(client).is_empty());
    assert_eq!(h.core.status().counters.protocol_violations.get("result-not-held"), Some(&1));
    h.finish(w1, 3);
    assert_eq!(h.results_to(client), [(3, TaskStatus::Done)], "a prefetched task's holder may answer it");
}

#[test]
fn prefetch_an_idle_worker_takes_back_a_prefetched_task_from_the_most_loaded_one() {
    let mut h = prefetching(4);
    let client = h.client();
    let w1 = h.worker(None, CapMap::new(), vec![]);
    settle(&mut h);
    for id in 1..=3 {
        h.submit(client, id, CapMap::new());
    }
    assert_eq!(h.tasks_to(w1), [1, 2, 3]);
    let w2 = h.worker(None, CapMap::new(), vec![]);
    assert_eq!((h.cancels_to(w1), h.tasks_to(w2)), (vec![3], vec![3]), "the last prefetched task moves");
    h.answer_task(w1, 3, TaskStatus::Cancelled);
    assert!(h.results_to(client).is_empty(), "the answer to our cancel is no result");
    assert!(h.tasks_to(w1).is_empty() && h.tasks_to(w2).is_empty(), "w1 still runs 1 and holds 2; w2 runs 3");

    // Had w2 been idle while w1 had started the task (the cancel crossed it), w1's result wins.
    h.finish(w2, 3);
    assert_eq!(h.results_to(client), [(3, TaskStatus::Done)]);
    assert_eq!((h.cancels_to(w1), h.tasks_to(w2)), (vec![2], vec![2]), "idle again: w2 takes 2 back");
    h.finish(w1, 2);
    assert_eq!(h.results_to(client), [(2, TaskStatus::Done)], "the first result wins, even from the old holder");
    assert_eq!(h.cancels_to(w2), [2], "and the other copy is cancelled");
    h.answer_task(w2, 2, TaskStatus::Cancelled);
    h.finish(w1, 1);
    assert_eq!(h.results_to(client), [(1, TaskStatus::Done)]);
    assert_eq!(violations(&h), 0);
    assert_eq!(h.core.status().tasks.pending + h.core.status().tasks.running, 0);
}
