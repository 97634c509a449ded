//! The per-store environment a policy runs in: an empty WASI context (no environment, arguments,
//! files or sockets; clocks frozen at zero; random bytes from a fixed sequence), the memory limiter,
//! the guest's captured output, and the host's `log` import.
//!
//! Policies are pure by contract; this makes them pure in fact, so a recorded call replays exactly.
//!
//! Time cannot be used to stall a call either: epoch interruption stops guest code at its deadline,
//! but not a host call that blocks, so every way to wait (`subscribe-duration`, `subscribe-instant`,
//! and through them `poll` and `pollable.block`) is replaced ([`add_virtual_sleep`]): a wait of zero
//! is ready at once, and any longer wait fails the call at once with a message that says why.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::ebbtide::policy::host::{Host, Level};

/// At most this many `log` lines per call reach the host's log; the rest are counted.
const MAX_LOG_LINES_PER_CALL: u32 = 100;
/// Longer `log` messages are cut.
const MAX_LOG_LINE: usize = 4096;
/// Guest stdout/stderr kept between drains; older bytes are dropped.
const MAX_GUEST_OUTPUT: usize = 64 * 1024;

pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) output: GuestOutput,
    policy: Arc<str>,
    log_lines: u32,
}

impl StoreState {
    pub fn new(policy: Arc<str>, memory_mib: u64) -> Self {
        let output = GuestOutput::default();
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x2a; 32]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0x2a; 32]))
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_mib),
            output,
            policy,
            log_lines: 0,
        }
    }

    /// Called before each call into the guest.
    pub(super) fn begin_call(&mut self) {
        self.limiter.exceeded = false;
        self.log_lines = 0;
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The `types` interface has no functions; its trait is empty.
impl super::bindings::ebbtide::policy::types::Host for StoreState {}

impl Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            if self.log_lines == MAX_LOG_LINES_PER_CALL + 1 {
                tracing::warn!(policy = %self.policy, "policy logs more than {MAX_LOG_LINES_PER_CALL} lines in one call; the rest are dropped");
            }
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let policy = &*self.policy;
        match level {
            Level::Trace => tracing::trace!(policy, "{message}"),
            Level::Debug => tracing::debug!(policy, "{message}"),
            Level::Info => tracing::info!(policy, "{message}"),
            Level::Warn => tracing::warn!(policy, "{message}"),
            Level::Error => tracing::error!(policy, "{message}"),
        }
    }
}

/// Caps an instance's memories and tables together (a guest with several memories cannot multiply
/// its budget), and records whether a grow was refused, so a failed call can be told apart as a
/// memory error rather than a plain trap.
pub struct MemoryLimiter {
    /// Bytes of linear memory across every memory of the store (one store per instance).
    memory_bytes: usize,
    /// Table elements across every table of the store.
    table_elements: usize,
    pub(super) exceeded: bool,
    pub(super) limit_mib: u64,
}

/// Table elements allowed per instance: far above what any toolchain emits (a few thousand), far
/// below what would cost the host real memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl MemoryLimiter {
    fn new(limit_mib: u64) -> Self {
        MemoryLimiter { memory_bytes: 0, table_elements: 0, exceeded: false, limit_mib }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_bytes.saturating_sub(current).saturating_add(desired);
        let allowed = total <= (self.limit_mib << 20) as usize && maximum.is_none_or(|m| desired <= m);
        if allowed {
            self.memory_bytes = total;
        }
        self.exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_sub(current).saturating_add(desired);
        let allowed = total <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m);
        if allowed {
            self.table_elements = total;
        }
        self.exceeded |= !allowed;
        Ok(allowed)
    }
}

/// Replaces WASI's monotonic-clock subscriptions. Inside a policy the clock stands still at zero, so
/// a wait could only ever end by the host's real timer, holding the call (and the scheduler's one
/// decision in flight) past its deadline where epoch interruption cannot reach it. A zero wait (a
/// runtime polling its event loop) is ready at once; any other wait fails the call at once.
pub fn add_virtual_sleep(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |store: StoreContextMut<'_, StoreState>, (nanos,): (u64,)| {
        Ok((no_waiting(store, nanos)?,))
    })?;
    // Instants are on the frozen clock, which reads 0: an instant is a wait of that many nanoseconds.
    clock.func_wrap("subscribe-instant", |store: StoreContextMut<'_, StoreState>, (instant,): (u64,)| {
        Ok((no_waiting(store, instant)?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The interface `wasmtime_wasi::p2::add_to_linker_sync` defines (guests importing any 0.2.x match it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

fn no_waiting(mut store: StoreContextMut<'_, StoreState>, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
    if nanos > 0 {
        wasmtime::bail!(
            "the policy tried to sleep for {} ms; a policy cannot wait: its clocks stand still at 0 and a call must \
             return within its deadline",
            nanos.div_ceil(1_000_000)
        );
    }
    let table = &mut store.data_mut().table;
    let deadline = table.push(PassedDeadline)?;
    subscribe(table, deadline)
}

/// A deadline in the past.
struct PassedDeadline;

#[wasmtime_wasi::async_trait]
impl Pollable for PassedDeadline {
    async fn ready(&mut self) {}
}

/// Time stands still inside a policy: both clocks read zero.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The guest's stdout and stderr: kept in memory (the newest [`MAX_GUEST_OUTPUT`] bytes) and drained
/// to the log after each call. Writes never fail, so a chatty guest cannot make itself panic.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Vec<u8>>>);

impl GuestOutput {
    fn append(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        if buf.len() > MAX_GUEST_OUTPUT {
            let excess = buf.len() - MAX_GUEST_OUTPUT;
            buf.drain(..excess);
        }
    }

    /// Everything written since the last drain.
    pub fn drain(&self) -> String {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&buf).into_owned();
        buf.clear();
        text
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_GUEST_OUTPUT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_counts_every_memory_of_the_instance_together() {
        let mut limiter = MemoryLimiter::new(4);
        let mib = 1 << 20;
        // Two memories of 2 MiB each fill a 4 MiB instance budget; a third cannot even start.
        assert!(limiter.memory_growing(0, 2 * mib, None).unwrap());
        assert!(limiter.memory_growing(0, 2 * mib, None).unwrap());
        assert!(!limiter.memory_growing(0, mib, None).unwrap(), "a third memory exceeds the instance's cap");
        assert!(limiter.exceeded);
        // Growing one of them counts only the growth.
        let mut limiter = MemoryLimiter::new(4);
        assert!(limiter.memory_growing(0, 3 * mib, None).unwrap());
        assert!(limiter.memory_growing(3 * mib, 4 * mib, None).unwrap());
        assert!(!limiter.memory_growing(4 * mib, 5 * mib, None).unwrap());
    }

    #[test]
    fn tables_are_capped_per_instance_too() {
        let mut limiter = MemoryLimiter::new(4);
        assert!(limiter.table_growing(0, MAX_TABLE_ELEMENTS / 2, None).unwrap());
        assert!(limiter.table_growing(0, MAX_TABLE_ELEMENTS / 2, None).unwrap());
        assert!(!limiter.table_growing(0, 1, None).unwrap());
    }
}
