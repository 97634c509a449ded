//! A fast path for handing a snapshot to a guest.
//!
//! wasmtime lowers a `list<record>` field by field, looking up the guest's memory for every field.
//! Measured with `ebbtide policy bench no --size large`, that was 70% of a decision: 1,000 worker
//! groups of 8 fields and 3,000 metric samples of 3 fields. The two wrappers below write those two
//! lists in one pass over one borrow of guest memory, with the canonical-ABI layout spelled out;
//! every other part of the snapshot uses wasmtime's own lowering. `WireSnapshot` is the WIT
//! `snapshot` record built from them, and the `decide` export is called with it.
//!
//! The layouts are pinned by compile-time size checks here and, end to end, by a test guest that
//! echoes back what it received (tests/runtime.rs).

use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext};
use wasmtime::component::{ComponentType, Lower};

use super::bindings::w;

/// The WIT `snapshot` record, with the fast lists.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct WireSnapshot {
    #[component(name = "now-ms")]
    pub now_ms: u64,
    pub trigger: w::Trigger,
    pub names: Vec<String>,
    #[component(name = "capability-sets")]
    pub capability_sets: Vec<Vec<w::Capability>>,
    pub adapters: Vec<w::Adapter>,
    #[component(name = "task-groups")]
    pub task_groups: Vec<w::TaskGroup>,
    #[component(name = "worker-groups")]
    pub worker_groups: Vec<FastWorkerGroup>,
    pub metrics: Vec<FastMetricSample>,
    pub misses: Vec<w::Miss>,
}

/// Implements `ComponentType` and `Lower` for a wrapper by delegating to the wrapped bindgen type,
/// except `linear_store_list_to_memory`, which writes `$size`-byte elements with `$write`.
macro_rules! fast_list {
    ($wrapper:ident, $inner:ty, $size:expr, $align:expr, $write:expr) => {
        #[repr(transparent)]
        pub struct $wrapper(pub $inner);

        const _: () = assert!(<$inner as ComponentType>::ABI.size32 == $size);
        const _: () = assert!(<$inner as ComponentType>::ABI.align32 == $align);

        // SAFETY: every associated item is the wrapped type's own; the one overridden method writes
        // exactly `$size` bytes per element inside the range wasmtime allocated for the list.
        unsafe impl ComponentType for $wrapper {
            type Lower = <$inner as ComponentType>::Lower;
            const ABI: CanonicalAbiInfo = <$inner as ComponentType>::ABI;
            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
                <$inner as ComponentType>::typecheck(ty, types)
            }
        }

        // SAFETY: as above.
        unsafe impl Lower for $wrapper {
            fn linear_lower_to_flat<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                dst: &mut std::mem::MaybeUninit<Self::Lower>,
            ) -> wasmtime::Result<()> {
                self.0.linear_lower_to_flat(cx, ty, dst)
            }

            fn linear_lower_to_memory<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                offset: usize,
            ) -> wasmtime::Result<()> {
                self.0.linear_lower_to_memory(cx, ty, offset)
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
                let write: fn(&$inner, &mut [u8]) = $write;
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

// record worker-group: id u64 @0; adapter option<u32> @8 (tag u8, payload @12); capabilities u32
// @16; state enum u8 @20; workers @24, queued-tasks @28, idle-workers @32 (u32); idle-ms u64 @40.
fast_list!(FastWorkerGroup, w::WorkerGroup, 48, 8, |g, out| {
    put(out, 0, g.id.to_le_bytes());
    match g.adapter {
        None => out[8] = 0,
        Some(a) => {
            out[8] = 1;
            put(out, 12, a.to_le_bytes());
        }
    }
    put(out, 16, g.capabilities.to_le_bytes());
    out[20] = match g.state {
        w::GroupState::Starting => 0,
        w::GroupState::Running => 1,
        w::GroupState::Draining => 2,
    };
    put(out, 24, g.workers.to_le_bytes());
    put(out, 28, g.queued_tasks.to_le_bytes());
    put(out, 32, g.idle_workers.to_le_bytes());
    put(out, 40, g.idle_ms.to_le_bytes());
});

// record metric-sample: group u32 @0; name u32 @4; value f64 @8.
fast_list!(FastMetricSample, w::MetricSample, 16, 8, |m, out| {
    put(out, 0, m.group.to_le_bytes());
    put(out, 4, m.name.to_le_bytes());
    put(out, 8, m.value.to_le_bytes());
});
