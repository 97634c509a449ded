//! The fast path for handing a snapshot to a guest.
//!
//! wasmtime lowers a `list<record>` field by field, looking up the guest's memory for every field,
//! and the generated bindings need an owned copy of the snapshot in their own types. Measured with
//! `ebbtide policy bench no --size large`, both were most of a decision. [`WireSnapshot`] is the
//! WIT `snapshot` record borrowed from the SDK's [`Snapshot`](m::Snapshot): nothing is copied on the
//! host, and every list of records is written in one pass over one borrow of guest memory, with the
//! canonical-ABI layout spelled out below. Only the names (strings) use wasmtime's own lowering.
//!
//! The layouts are pinned by compile-time checks against the generated bindings here and, end to
//! end, by a test guest that echoes back what it received (tests/runtime.rs).

use ebbtide_sdk as m;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext};
use wasmtime::component::{ComponentType, Lower};

use super::bindings::w;

/// The WIT `snapshot` record, borrowed from an SDK snapshot.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct WireSnapshot<'a> {
    #[component(name = "now-ms")]
    now_ms: u64,
    trigger: w::Trigger,
    names: &'a [String],
    /// One borrowed slice per set: a `list<list<capability>>`.
    #[component(name = "capability-sets")]
    capability_sets: Vec<&'a [FastCapability]>,
    adapters: &'a [FastAdapter],
    #[component(name = "task-groups")]
    task_groups: &'a [FastTaskGroup],
    #[component(name = "worker-groups")]
    worker_groups: &'a [FastWorkerGroup],
    metrics: &'a [FastMetricSample],
    misses: &'a [FastMiss],
}

impl<'a> WireSnapshot<'a> {
    pub fn new(s: &'a m::Snapshot) -> Self {
        WireSnapshot {
            now_ms: s.now_ms,
            trigger: match s.trigger {
                m::Trigger::Tick => w::Trigger::Tick,
                m::Trigger::Pressure => w::Trigger::Pressure,
                m::Trigger::Membership => w::Trigger::Membership,
                m::Trigger::Manual => w::Trigger::Manual,
            },
            names: &s.names,
            capability_sets: s.capability_sets.iter().map(|set| FastCapability::wrap(set)).collect(),
            adapters: FastAdapter::wrap(&s.adapters),
            task_groups: FastTaskGroup::wrap(&s.task_groups),
            worker_groups: FastWorkerGroup::wrap(&s.worker_groups),
            metrics: FastMetricSample::wrap(&s.metrics),
            misses: FastMiss::wrap(&s.misses),
        }
    }
}

/// Declares `$wrapper`, a transparent wrapper of the SDK record `$model`, lowered as the WIT record
/// whose generated binding is `$wit` (its type check and ABI are that binding's) by writing
/// `$size`-byte elements with `$write`. The wrappers are only ever list elements, so they are
/// always lowered to memory, never to flat values.
macro_rules! fast_record {
    ($wrapper:ident, $model:ty, $wit:ty, $size:expr, $align:expr, $write:expr) => {
        #[repr(transparent)]
        pub struct $wrapper($model);

        impl $wrapper {
            fn wrap(items: &[$model]) -> &[$wrapper] {
                // SAFETY: `$wrapper` is `repr(transparent)` over `$model`, so the slices have the
                // same layout.
                unsafe { std::slice::from_raw_parts(items.as_ptr().cast::<$wrapper>(), items.len()) }
            }
        }

        const _: () = assert!(<$wit as ComponentType>::ABI.size32 == $size);
        const _: () = assert!(<$wit as ComponentType>::ABI.align32 == $align);

        // SAFETY: the type check and ABI are those of the generated binding of the same WIT record;
        // the writer below fills exactly `$size` bytes per element, as that ABI says.
        unsafe impl ComponentType for $wrapper {
            type Lower = <$wit as ComponentType>::Lower;
            const ABI: CanonicalAbiInfo = <$wit as ComponentType>::ABI;
            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <$wit as ComponentType>::typecheck(ty, types)
            }
        }

        // SAFETY: as above; every write stays inside the range wasmtime allocated and checks.
        unsafe impl Lower for $wrapper {
            fn linear_lower_to_flat<T>(
                &self,
                _cx: &mut LowerContext<'_, T>,
                _ty: InterfaceType,
                _dst: &mut std::mem::MaybeUninit<Self::Lower>,
            ) -> wasmtime::Result<()> {
                wasmtime::bail!(concat!(stringify!($wrapper), " is only lowered as a list element, in memory"))
            }

            fn linear_lower_to_memory<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                offset: usize,
            ) -> wasmtime::Result<()> {
                Self::linear_store_list_to_memory(cx, ty, offset, std::slice::from_ref(self))
            }

            fn linear_store_list_to_memory<T>(
                cx: &mut LowerContext<'_, T>,
                _ty: InterfaceType,
                offset: usize,
                items: &[Self],
            ) -> wasmtime::Result<()> {
                let end = items.len() * $size + offset;
                let memory = cx.as_slice_mut();
                let Some(dst) = memory.get_mut(offset..end) else {
                    wasmtime::bail!("list of {} elements does not fit guest memory at {offset}", items.len());
                };
                let write: fn(&$model, &mut [u8]) = $write;
                for (item, out) in items.iter().zip(dst.chunks_exact_mut($size)) {
                    write(&item.0, out);
                }
                Ok(())
            }
        }
    };
}

fn put<const N: usize>(out: &mut [u8], at: usize, bytes: [u8; N]) {
    out[at..at + N].copy_from_slice(&bytes);
}

/// An `option<u32>` at `at`: tag byte, payload 4 bytes later.
fn put_option_u32(out: &mut [u8], at: usize, value: Option<u32>) {
    match value {
        None => out[at] = 0,
        Some(v) => {
            out[at] = 1;
            put(out, at + 4, v.to_le_bytes());
        }
    }
}

// record capability: name u32 @0; value s64 @8.
fast_record!(FastCapability, m::Capability, w::Capability, 16, 8, |c, out| {
    put(out, 0, c.name.to_le_bytes());
    put(out, 8, c.value.to_le_bytes());
});

// record adapter: id @0, max-worker-groups @4, workers-per-group @8 (u32); capabilities option<u32>
// @12 (tag u8, payload @16); priority s32 @20.
fast_record!(FastAdapter, m::Adapter, w::Adapter, 24, 4, |a, out| {
    put(out, 0, a.id.to_le_bytes());
    put(out, 4, a.max_worker_groups.to_le_bytes());
    put(out, 8, a.workers_per_group.to_le_bytes());
    put_option_u32(out, 12, a.capabilities);
    put(out, 20, a.priority.to_le_bytes());
});

// record task-group: capabilities @0, pending @4, running @8 (u32).
fast_record!(FastTaskGroup, m::TaskGroup, w::TaskGroup, 12, 4, |t, out| {
    put(out, 0, t.capabilities.to_le_bytes());
    put(out, 4, t.pending.to_le_bytes());
    put(out, 8, t.running.to_le_bytes());
});

// record worker-group: id u64 @0; adapter option<u32> @8 (tag u8, payload @12); capabilities u32
// @16; state enum u8 @20; workers @24, queued-tasks @28, idle-workers @32 (u32); idle-ms u64 @40.
fast_record!(FastWorkerGroup, m::WorkerGroup, w::WorkerGroup, 48, 8, |g, out| {
    put(out, 0, g.id.to_le_bytes());
    put_option_u32(out, 8, g.adapter);
    put(out, 16, g.capabilities.to_le_bytes());
    out[20] = match g.state {
        m::GroupState::Starting => 0,
        m::GroupState::Running => 1,
        m::GroupState::Draining => 2,
    };
    put(out, 24, g.workers.to_le_bytes());
    put(out, 28, g.queued_tasks.to_le_bytes());
    put(out, 32, g.idle_workers.to_le_bytes());
    put(out, 40, g.idle_ms.to_le_bytes());
});

// record metric-sample: group u32 @0; name u32 @4; value f64 @8.
fast_record!(FastMetricSample, m::MetricSample, w::MetricSample, 16, 8, |x, out| {
    put(out, 0, x.group.to_le_bytes());
    put(out, 4, x.name.to_le_bytes());
    put(out, 8, x.value.to_le_bytes());
});

// record miss: adapter @0, count @4 (u32).
fast_record!(FastMiss, m::Miss, w::Miss, 8, 4, |x, out| {
    put(out, 0, x.adapter.to_le_bytes());
    put(out, 4, x.count.to_le_bytes());
});
