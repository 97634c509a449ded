//! `buffer`: a warm pool on one adapter (docs/builtins.md#buffer). Keeps `target_buffer` idle workers
//! beside the busy ones and the queued demand, never fewer than `min_ready` and never more than
//! `max_replicas`; grows at once (reaching observed demand in one decision) and shrinks only after a
//! stabilization window, to the largest size wanted during it.
//!
//! State: `{down_since_ms, hold}` of a pending shrink, in a few bytes.

use ebbtide_sdk::fleet::live;
use ebbtide_sdk::params::infos;
use ebbtide_sdk::{
    Command, Decision, Fleet, GroupState, ParamReader, ParamSpec, Placer, Policy, PolicyInfo, Snapshot, StateReader,
    StateWriter, Unit, WorkerGroup,
};

pub struct Buffer;

pub struct Params {
    pub adapter_id: String,
    pub min_ready: Option<u64>,
    pub target_buffer: Option<u64>,
    pub max_replicas: Option<u64>,
    pub stabilization_ms: u64,
    pub max_scale_up_step: u64,
    pub count_pending: bool,
}

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("adapter_id", "an adapter id (string)", "null", "the pool's adapter: its live groups are the pool"),
    ParamSpec::new("min_ready", "an integer >= 0, or null", "null", "floor on total workers"),
    ParamSpec::new("target_buffer", "an integer >= 0, or null", "null", "idle (warm) workers to keep"),
    ParamSpec::new(
        "max_replicas",
        "an integer >= min_ready, or null",
        "null",
        "ceiling on total workers; null = unbounded (the adapter's max_worker_groups also caps)",
    ),
    ParamSpec::new(
        "scale_down_stabilization_ms",
        "an integer >= 0",
        "60000",
        "a shrink waits this long, to the largest size wanted meanwhile",
    ),
    ParamSpec::new(
        "max_scale_up_step",
        "an integer >= 0",
        "0",
        "workers added per decision above the floor; 0 = unlimited",
    ),
    ParamSpec::new("count_pending", "a boolean", "true", "count pending tasks the pool can run as demand"),
];

const STATE_TAG: u8 = 0xB1;

/// A pending shrink: since when it has been wanted, and the largest size wanted since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingShrink {
    down_since_ms: u64,
    hold: u64,
}

fn decode(state: &[u8]) -> Option<PendingShrink> {
    let mut r = StateReader::new(state, STATE_TAG)?;
    let shrink = PendingShrink { down_since_ms: r.u64()?, hold: r.u64()? };
    r.is_done().then_some(shrink)
}

fn encode(shrink: PendingShrink) -> Vec<u8> {
    StateWriter::new(STATE_TAG).u64(shrink.down_since_ms).u64(shrink.hold).finish()
}

impl Policy for Buffer {
    type Params = Params;

    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "buffer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Warm pool on one adapter: busy + target_buffer + demand, within min_ready..max_replicas; delayed shrink."
                .into(),
            params: infos(PARAMS),
        }
    }

    fn parse_params(json: &str) -> Result<Params, Vec<String>> {
        let mut p = ParamReader::new(PARAMS, json)?;
        let params = Params {
            adapter_id: p.required_string("adapter_id"),
            min_ready: p.opt_uint("min_ready", |_| true),
            target_buffer: p.opt_uint("target_buffer", |_| true),
            max_replicas: p.opt_uint("max_replicas", |_| true),
            stabilization_ms: p.uint("scale_down_stabilization_ms", |_| true),
            max_scale_up_step: p.uint("max_scale_up_step", |_| true),
            count_pending: p.boolean("count_pending"),
        };
        if let (Some(min), Some(max)) = (params.min_ready, params.max_replicas)
            && min > max
        {
            let (min_origin, max_origin) = (p.origin("min_ready"), p.origin("max_replicas"));
            p.error(format!(
                "max_replicas: expected an integer >= min_ready ({min}{min_origin}), got {max}{max_origin}"
            ));
        }
        p.finish(params)
    }

    fn decide(p: &Params, snapshot: &Snapshot, state: &[u8]) -> Decision {
        let mut d = Decision::default();
        if p.min_ready.is_none() && p.target_buffer.is_none() {
            return d; // disabled; the empty state clears any pending shrink
        }
        let fleet = Fleet::new(snapshot);
        let Some(ai) = snapshot.adapters.iter().position(|a| snapshot.name(a.id) == p.adapter_id) else {
            d.diagnose("unknown_adapter", format!("adapter {:?} is not in the snapshot; nothing to do", p.adapter_id));
            d.state = state.to_vec(); // keep a pending shrink until the adapter is back
            return d;
        };
        let adapter = &snapshot.adapters[ai];
        let w = u64::from(adapter.workers_per_group.max(1));
        let pool: Vec<&WorkerGroup> =
            snapshot.worker_groups.iter().filter(|g| g.adapter == Some(adapter.id) && live(g)).collect();

        let requested = pool.len() as u64 * w;
        let registered: u64 = pool.iter().map(|g| u64::from(g.workers)).sum();
        let free: u64 = pool
            .iter()
            .filter(|g| g.state == GroupState::Running)
            .map(|g| u64::from(g.workers.min(g.idle_workers)))
            .sum();
        let busy = registered.saturating_sub(free);

        let adapter_keys = adapter.capabilities.map(|c| fleet.keys.of(c).clone()).unwrap_or_default();
        let queued: u64 = if p.count_pending {
            snapshot
                .task_groups
                .iter()
                .filter(|t| fleet.keys.of(t.capabilities).is_subset(&adapter_keys))
                .map(|t| u64::from(t.pending))
                .sum()
        } else {
            0
        };
        // The host queues every task that found no free worker, so such a task is both queued and a
        // miss: the larger of the two counts it once (docs/builtins.md#buffer, rule 2).
        let demand = queued.max(snapshot.misses_for(adapter.id));

        let slot_cap = (adapter.max_worker_groups > 0).then(|| u64::from(adapter.max_worker_groups) * w);
        let clamp = |v: u64| {
            let v = v.max(p.min_ready.unwrap_or(0));
            v.min(p.max_replicas.unwrap_or(u64::MAX)).min(slot_cap.unwrap_or(u64::MAX))
        };
        let ideal = clamp(match p.target_buffer {
            None => requested,
            Some(buffer) => busy + buffer + demand,
        });

        if ideal > requested {
            let mut next = ideal;
            if p.max_scale_up_step > 0 && next - requested > p.max_scale_up_step {
                next = clamp(requested + p.max_scale_up_step);
            }
            if next > requested {
                let caps = adapter.capabilities.map(|c| snapshot.named_set(c)).unwrap_or_default();
                Placer::new(&fleet, 0).place(next - requested, &caps, Unit::Workers, |a| a.id == adapter.id, &mut d);
            }
            return d; // state cleared
        }
        if ideal == requested {
            return d; // steady: a pending shrink is cancelled
        }

        let shrink = match decode(state) {
            None => PendingShrink { down_since_ms: snapshot.now_ms, hold: ideal },
            Some(s) => PendingShrink { hold: s.hold.max(ideal), ..s },
        };
        if snapshot.now_ms.saturating_sub(shrink.down_since_ms) < p.stabilization_ms {
            d.state = encode(shrink);
            return d;
        }
        let k = (requested - shrink.hold.min(requested)) / w;
        let mut starting: Vec<&&WorkerGroup> = pool.iter().filter(|g| g.state == GroupState::Starting).collect();
        starting.sort_by_key(|g| g.id);
        let mut idle: Vec<&&WorkerGroup> = pool
            .iter()
            .filter(|g| g.state == GroupState::Running && g.queued_tasks == 0 && g.idle_workers >= g.workers)
            .collect();
        idle.sort_by(|a, b| b.idle_ms.cmp(&a.idle_ms).then(a.id.cmp(&b.id)));
        for g in starting.into_iter().chain(idle).take(k as usize) {
            d.commands.push(Command::Shutdown(g.id));
        }
        d
    }
}

ebbtide_sdk::export_policy!(Buffer);
