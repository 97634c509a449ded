//! The one place that decides how wasmtime is configured.
//!
//! One engine per process: compiled components can only be used with the engine that compiled them,
//! and the pooling allocator reserves its address space up front, so sharing one engine keeps both
//! the cache and the reservation single. The exception is the baseline engine (Winch, a small pool),
//! which a new build serves from while Cranelift compiles it. Every default below states its trade-off.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, Strategy};

/// How often the epoch advances while a call runs. A call's deadline is a whole number of ticks, so
/// this is the granularity of timeouts: 2 ms keeps a 100 ms deadline within 2%. The ticker thread
/// only wakes while some call is in flight (see [`ticking`]); otherwise it sleeps until one starts.
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

/// The baseline engine: Winch instead of Cranelift, for tiered swaps. Winch compiles a component
/// about eight times faster and its code decides 1.2 to 1.5 times slower, so a new build serves
/// from it until its Cranelift build (from [`engine`]) is ready. Its components are never cached.
/// `None` where Winch does not run (it targets x86_64 only) or refuses this configuration.
pub fn baseline_engine() -> Option<&'static Engine> {
    BASELINE
        .get_or_init(|| {
            if !cfg!(target_arch = "x86_64") {
                return None;
            }
            let mut config = config();
            config.strategy(Strategy::Winch);
            // A baseline build serves for the seconds its optimized build takes: a small pool keeps
            // the second address-space reservation small.
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(baseline_pooling()));
            match Engine::new(&config) {
                Ok(engine) => {
                    start_epoch_ticker(&engine);
                    Some(engine)
                }
                Err(e) => {
                    tracing::warn!("no baseline compiler (Winch): {e:#}; new builds wait for Cranelift");
                    None
                }
            }
        })
        .as_ref()
}

/// Created on the first tiered swap, not at start-up: an idle scheduler keeps no second engine,
/// pool or ticker thread.
static BASELINE: OnceLock<Option<Engine>> = OnceLock::new();

/// `baseline_compiler` (on by default): whether new builds may serve from a baseline build.
static BASELINE_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn set_baseline_compiler(on: bool) {
    BASELINE_ON.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn baseline_compiler_on() -> bool {
    BASELINE_ON.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `engine` is the baseline one (without creating the baseline engine to find out).
pub fn is_baseline(engine: &Engine) -> bool {
    BASELINE.get().and_then(Option::as_ref).is_some_and(|b| Engine::same(b, engine))
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

/// A sixteenth of the main pool: a decision, a dry run and `describe` at a time, with room to spare.
fn baseline_pooling() -> PoolingAllocationConfig {
    let mut pool = pooling();
    pool.total_component_instances(8);
    pool.total_core_instances(64);
    pool.total_memories(16);
    pool.total_tables(64);
    pool
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
    // resident (reset in place when a slot is reused, instead of returned to the kernel and
    // faulted in again) halves the cost of a fresh decision on the large snapshot. A Rust guest's
    // first 1 MiB is its stack and its heap starts above it, so 1 MiB kept none of the heap: 4 MiB
    // keeps a large snapshot's (measured with `policy bench capability --size large`: 2 MiB already
    // sufficed, 8 MiB gained nothing).
    pool.linear_memory_keep_resident(4 << 20);
    pool.table_keep_resident(64 << 10);
    // Reset only the pages a guest actually wrote (Linux 6.7+, PAGEMAP_SCAN), not every page up to
    // the limit above: a memset of the whole region made untouched stack pages resident (1 MiB per
    // used slot, 5 MiB of an idle scheduler) and cost a fresh decision 13 us on the large sample.
    // Elsewhere wasmtime falls back to the memset.
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// Calls in flight, which the epoch ticker serves; it parks while there are none.
struct Ticker {
    calls: Mutex<usize>,
    started: Condvar,
}

static TICKER: Ticker = Ticker { calls: Mutex::new(0), started: Condvar::new() };

impl Ticker {
    fn calls(&self) -> std::sync::MutexGuard<'_, usize> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Held while guest code runs: the epoch advances (and so the call's deadline can pass) only while
/// at least one of these is alive. Take it after arming the deadline and drop it after the call.
#[must_use = "the epoch only advances while the guard is held"]
pub struct Ticking(());

/// Starts (or keeps) the epoch ticking for one call.
pub fn ticking() -> Ticking {
    let mut calls = TICKER.calls();
    *calls += 1;
    if *calls == 1 {
        TICKER.started.notify_all();
    }
    Ticking(())
}

impl Drop for Ticking {
    fn drop(&mut self) {
        *TICKER.calls() -= 1;
    }
}

/// Advances the epoch every [`EPOCH_TICK`] while a call is in flight, until the engine is dropped
/// (never, for the static one). With no call in flight it waits on a condition variable: an idle
/// scheduler has no timer firing. A call's deadline is armed relative to the current epoch, and
/// the first tick after a wait comes a full [`EPOCH_TICK`] later, so no deadline passes early.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ebbtide-epoch".into())
        .spawn(move || {
            loop {
                drop(TICKER.started.wait_while(TICKER.calls(), |calls| *calls == 0).unwrap_or_else(|e| e.into_inner()));
                std::thread::sleep(EPOCH_TICK);
                let Some(engine) = weak.upgrade() else { return };
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch ticker thread");
}
