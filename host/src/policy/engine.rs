//! The one place that decides how wasmtime is configured.
//!
//! One engine per process: compiled components can only be used with the engine that compiled them,
//! and the pooling allocator reserves its address space up front, so sharing one engine keeps both
//! the cache and the reservation single. Every default below states its trade-off.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How often the epoch advances. A call's deadline is a whole number of ticks, so this is the
/// granularity of timeouts: 2 ms keeps a 100 ms deadline within 2% while the ticker thread wakes
/// 500 times a second, which costs nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The largest linear memory any policy may be configured to use. Per-policy caps
/// (`Limits::memory_mib`) are enforced by the store's limiter below this.
pub const MAX_MEMORY_MIB: u64 = 1024;

/// The process-wide engine, created on first use together with its epoch ticker thread.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // A configuration that fails here is a bug in this function, not an input error.
        let engine = Engine::new(&config()).expect("the built-in wasmtime configuration is valid");
        start_epoch_ticker(&engine);
        engine
    })
}

fn config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Speed over compile time: components are compiled once per digest and off the decision path.
    config.cranelift_opt_level(OptLevel::Speed);
    // Deadlines: epoch interruption is a cheap check on loop back-edges and function entries, unlike
    // fuel, which counts every instruction. Fuel is still available per policy (see `Limits::fuel`),
    // so the engine must meter it; policies without a budget get an effectively infinite one.
    config.epoch_interruption(true);
    config.consume_fuel(true);
    // A fresh instance per decision is the default, so instantiation must be cheap: the pooling
    // allocator reuses pre-reserved slots (about 12 us to instantiate a Rust guest).
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
    // Trap messages carry a guest backtrace (symbolized when the guest kept its names), which is
    // what a policy author needs; a few frames are enough and keep messages short.
    config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(16));
    config
}

fn pooling() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    // Enough for decisions, dry runs, shadows and benchmarks at once, without reserving terabytes
    // of address space (each memory slot reserves its maximum size plus guard pages).
    pool.total_component_instances(128);
    pool.total_core_instances(1024);
    pool.total_memories(256);
    pool.total_tables(1024);
    pool.max_memory_size((MAX_MEMORY_MIB << 20) as usize);
    // Guests built by other toolchains (Python, JavaScript, C) use more than one table or memory
    // per module and larger instance metadata than a Rust guest.
    pool.max_tables_per_module(8);
    pool.max_memories_per_module(2);
    pool.max_core_instance_size(4 << 20);
    pool.max_component_instance_size(4 << 20);
    // A fresh instance per decision touches the same pages of memory every time. Keeping them
    // resident (reset with memset when a slot is reused, instead of returned to the kernel and
    // faulted in again) halves the cost of a fresh decision on the large snapshot. A Rust guest's
    // first 1 MiB is its stack and its heap starts above it, so 1 MiB kept none of the heap: 4 MiB
    // keeps a large snapshot's (measured with `policy bench capability --size large`: 2 MiB already
    // sufficed, 8 MiB gained nothing). Only pages a guest has touched are kept.
    pool.linear_memory_keep_resident(4 << 20);
    pool.table_keep_resident(64 << 10);
    pool
}

/// Advances the epoch every [`EPOCH_TICK`] until the engine is dropped (never, for the static one).
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ebbtide-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
