//! Accepting connections and reading from them, each within the budget of `[limits]`: a cap on
//! connections, small frames and a deadline until the hello, a stall timeout per frame after it, a
//! bounded queue towards the event loop (a flooding peer waits, through TCP), and a writer that gives
//! up on a peer that does not read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::Event;
use crate::protocol::framing::{FrameLimits, read_frame_into};
use crate::protocol::peer::{WriterLimits, spawn_writer};
use crate::protocol::{Message, ProtocolError};
use crate::scheduler::{Input, Limits, PeerId};

/// Bytes read from a socket at once: many small frames per system call, little memory per idle peer.
const READ_BUFFER: usize = 16 << 10;

/// Everything about a connection reaches the event loop through `inputs`, in order (its acceptance
/// before its first message); the channel is bounded, so a flooding peer waits for room.
pub(super) async fn accept_loop(listener: TcpListener, inputs: mpsc::Sender<Event>, limits: Limits) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut next_peer: PeerId = 1;
    let mut refused_since_log = 0u64;
    let mut last_refusal_log = Instant::now() - Duration::from_secs(60);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::error!("accepting a connection failed: {e}; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            refused_since_log += 1;
            if last_refusal_log.elapsed() >= Duration::from_secs(1) {
                tracing::warn!(
                    "refused {refused_since_log} connection(s): {} are open, the limit (max_connections)",
                    limits.max_connections
                );
                refused_since_log = 0;
                last_refusal_log = Instant::now();
            }
            let goodbye = Message::Goodbye(format!(
                "the scheduler has {} connections open, its limit (max_connections); retry later",
                limits.max_connections
            ));
            let _ = stream.try_write(&goodbye.encode());
            continue;
        }
        let slot = Slot::take(&open);
        let peer = next_peer;
        next_peer += 1;
        let _ = stream.set_nodelay(true);
        tracing::debug!(peer, %remote, "connection accepted");
        let (read, write) = stream.into_split();
        let writer_limits = WriterLimits {
            max_queued: limits.max_outbox_bytes,
            write_timeout: Some(Duration::from_millis(limits.write_timeout_ms)),
        };
        let (outbox, writer) = spawn_writer(write, writer_limits);
        let (abort_tx, abort_rx) = oneshot::channel();
        let connection = Accepted { peer, remote: remote.to_string(), outbox, abort: abort_rx, slot };
        let reader = tokio::spawn(read_loop(connection, read, inputs.clone(), limits.clone()));
        let _ = abort_tx.send(reader.abort_handle());
        // A writer that gives up (the peer reads nothing) ends the connection like a broken read.
        let broken = inputs.clone();
        tokio::spawn(async move {
            if let Ok(Err(reason)) = writer.await {
                tracing::warn!(peer, "closing connection: {reason}");
                let _ = broken.send(Event::Broken { peer, reason }).await;
            }
        });
    }
}

/// A connection just accepted, handed to its reader, which announces it before reading anything.
struct Accepted {
    peer: PeerId,
    remote: String,
    outbox: crate::protocol::peer::Outbox,
    /// The reader's own abort handle, for the event loop (sent once the reader task exists).
    abort: oneshot::Receiver<tokio::task::AbortHandle>,
    slot: Slot,
}

/// One open connection, counted against `max_connections` until its reader ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::Relaxed);
        Slot(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Forwards every message of one connection until it ends; a bad frame ends it with a logged reason.
async fn read_loop(
    connection: Accepted,
    read: tokio::net::tcp::OwnedReadHalf,
    inputs: mpsc::Sender<Event>,
    limits: Limits,
) {
    let Accepted { peer, remote, outbox, abort, slot: _slot } = connection;
    let Ok(abort) = abort.await else { return };
    if inputs.send(Event::Accepted { peer, outbox, reader: abort }).await.is_err() {
        return;
    }
    let mut reader = BufReader::with_capacity(READ_BUFFER, read);
    // Until a hello has been read, frames are small and the whole first frame is due in time.
    let hello_limits = FrameLimits { max_bytes: limits.hello_frame_bytes, setting: "hello_frame_bytes", stall: None };
    let hello_timeout = Duration::from_millis(limits.hello_timeout_ms);
    let frame_limits = FrameLimits {
        max_bytes: limits.max_frame_bytes,
        setting: "max_frame_bytes",
        stall: Some(Duration::from_millis(limits.frame_timeout_ms)),
    };
    let mut first = true;
    let mut frame = Vec::new();
    let reason = loop {
        let read = if first {
            match tokio::time::timeout(hello_timeout, read_frame_into(&mut reader, hello_limits, &mut frame)).await {
                Ok(read) => read,
                Err(_) => break format!("no hello within {} ms (hello_timeout_ms)", limits.hello_timeout_ms),
            }
        } else {
            read_frame_into(&mut reader, frame_limits, &mut frame).await
        };
        let message = match read.and_then(|more| more.then(|| Message::decode(&frame)).transpose()) {
            Ok(Some(message)) => message,
            Ok(None) => break "closed by the peer".to_owned(),
            Err(ProtocolError::Io(e)) => break format!("connection error: {e}"),
            Err(e) => {
                tracing::warn!(peer, %remote, "closing connection: {e}");
                break e.to_string();
            }
        };
        // Only a hello opens the connection to larger frames; anything else first is refused by the core.
        first &= !matches!(message, Message::Hello(_));
        if inputs.send(Event::Input(Input::Message { peer, message })).await.is_err() {
            return;
        }
    };
    let _ = inputs.send(Event::Broken { peer, reason }).await;
}
