//! The per-store environment a policy runs in: an empty WASI context (no environment, arguments,
//! files or sockets; clocks frozen at zero; random bytes from a fixed sequence), the memory limiter,
//! the guest's captured output, and the host's `log` import.
//!
//! Policies are pure by contract; this makes them pure in fact, so a recorded call replays exactly.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
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

/// `StoreLimits` plus a record of whether a memory grow was refused, so a failed call can be told
/// apart as a memory error rather than a plain trap.
pub struct MemoryLimiter {
    limits: StoreLimits,
    pub(super) exceeded: bool,
    pub(super) limit_mib: u64,
}

impl MemoryLimiter {
    fn new(limit_mib: u64) -> Self {
        let limits = StoreLimitsBuilder::new().memory_size((limit_mib << 20) as usize).build();
        MemoryLimiter { limits, exceeded: false, limit_mib }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
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
