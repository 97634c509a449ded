//! Connections: a writer task per connection that batches frames, and the peer side of the hello.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Notify;

use super::framing::{FrameLimits, read_frame_into, write_frames};
use super::{Address, Hello, Message, PROTOCOL_VERSION, Role};

/// The sending side of a connection. Cheap to clone; sends never block: a message is encoded
/// straight into the connection's pending bytes, and the writer task writes everything pending in
/// one write when it next runs (so the frames of one wake-up leave in one system call, and no frame
/// is allocated on its own). What is pending is bounded: a peer that does not read cannot make us
/// hold more than `max_queued` bytes for it.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Told when pending goes from empty to not, on close and on overflow.
    ready: Notify,
    max_queued: usize,
}

#[derive(Default)]
struct Pending {
    frames: Vec<u8>,
    /// Bytes the writer took and has not finished writing: they count against `max_queued` too.
    writing: usize,
    closing: bool,
    overflowed: bool,
    /// The writer ended: nothing more will be written.
    gone: bool,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Outbox {
    /// Queues a message; false when the connection is gone or closing, or its queue is full (it is
    /// then closed).
    pub fn send(&self, message: &Message) -> bool {
        self.send_all(std::iter::once(message))
    }

    /// Queues several messages.
    pub fn send_all<'a>(&self, messages: impl IntoIterator<Item = &'a Message>) -> bool {
        let mut pending = self.shared.pending();
        if pending.gone || pending.closing || pending.overflowed {
            return false;
        }
        let start = pending.frames.len();
        for message in messages {
            message.encode_into(&mut pending.frames);
        }
        let fits = pending.frames.len() + pending.writing <= self.shared.max_queued;
        if !fits {
            pending.frames.truncate(start);
            pending.overflowed = true;
        }
        let wake = start == 0 || !fits;
        drop(pending);
        if wake {
            self.shared.ready.notify_one();
        }
        fits
    }

    /// Writes what is queued, then closes the sending half.
    pub fn close(&self) {
        self.shared.pending().closing = true;
        self.shared.ready.notify_one();
    }
}

/// How a connection's writer behaves: how much it may queue, and how long a write may wait for the
/// peer to read before the connection is given up.
#[derive(Clone, Copy, Debug)]
pub struct WriterLimits {
    pub max_queued: usize,
    pub write_timeout: Option<Duration>,
}

impl WriterLimits {
    /// A peer's own connection to the scheduler: the scheduler is trusted to read.
    pub const TRUSTING: WriterLimits = WriterLimits { max_queued: usize::MAX, write_timeout: None };
}

/// What a writer keeps of its buffers' capacity between bursts (a burst of a million tasks must not
/// pin its memory for the rest of the connection).
const KEPT_CAPACITY: usize = 256 << 10;

/// Starts the writer task of a connection. The task ends with `Err(reason)` when the peer stopped
/// reading (a write timed out, or its queue overflowed) or the connection broke.
pub fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut writer: W,
    limits: WriterLimits,
) -> (Outbox, tokio::task::JoinHandle<Result<(), String>>) {
    let shared = Arc::new(Shared { pending: Mutex::default(), ready: Notify::new(), max_queued: limits.max_queued });
    let outbox = Outbox { shared: shared.clone() };
    let task = tokio::spawn(async move {
        // Swapped with the pending bytes at each wake-up, so neither side allocates once both are warm.
        let mut batch = Vec::new();
        let ended = loop {
            shared.ready.notified().await;
            let closing = {
                let mut pending = shared.pending();
                if pending.overflowed {
                    break Err(format!(
                        "the peer reads too slowly: more than {} bytes queued for it (max_outbox_bytes)",
                        limits.max_queued
                    ));
                }
                std::mem::swap(&mut pending.frames, &mut batch);
                pending.writing = batch.len();
                pending.closing
            };
            if !batch.is_empty() {
                let write = write_frames(&mut writer, &batch);
                let written = match limits.write_timeout {
                    Some(limit) => tokio::time::timeout(limit, write).await.unwrap_or_else(|_| {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the peer read nothing for {} ms (write_timeout_ms)", limit.as_millis()),
                        ))
                    }),
                    None => write.await,
                };
                if let Err(e) = written {
                    break Err(format!("writing failed: {e}"));
                }
                batch.clear();
                batch.shrink_to(KEPT_CAPACITY);
                shared.pending().writing = 0;
            }
            if closing {
                let _ = writer.shutdown().await;
                break Ok(());
            }
        };
        let mut pending = shared.pending();
        pending.gone = true;
        pending.frames = Vec::new();
        ended
    });
    (outbox, task)
}

/// A connection to the scheduler after a successful hello.
pub struct Connection {
    pub peer_id: u64,
    reader: BufReader<OwnedReadHalf>,
    /// The last frame read, its buffer reused for the next.
    frame: Vec<u8>,
    pub outbox: Outbox,
    writer: tokio::task::JoinHandle<Result<(), String>>,
}

impl Connection {
    /// Connects and says hello; fails with the scheduler's reason when it refuses.
    pub async fn open(address: &Address, role: Role, identity: &str, token: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address.socket())
            .await
            .with_context(|| format!("cannot connect to the scheduler at {address}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (outbox, writer) = spawn_writer(write, WriterLimits::TRUSTING);
        let reader = BufReader::with_capacity(64 * 1024, read);
        let mut connection = Connection { peer_id: 0, reader, frame: Vec::new(), outbox, writer };
        connection.outbox.send(&Message::Hello(Hello {
            role,
            protocol_version: PROTOCOL_VERSION,
            identity: identity.to_owned(),
            token: token.to_owned(),
        }));
        match connection.recv().await? {
            Some(Message::Welcome { peer_id }) => connection.peer_id = peer_id,
            Some(Message::Goodbye(reason)) => bail!("the scheduler at {address} refused the connection: {reason}"),
            Some(other) => bail!("the scheduler at {address} answered the hello with a {} message", other.kind()),
            None => bail!("the scheduler at {address} closed the connection during the hello"),
        }
        Ok(connection)
    }

    /// The next message, or `None` when the scheduler closed the connection.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Message>> {
        match read_frame_into(&mut self.reader, FrameLimits::TRUSTING, &mut self.frame).await? {
            true => Ok(Some(Message::decode(&self.frame)?)),
            false => Ok(None),
        }
    }

    /// Writes everything queued, then closes the connection.
    pub async fn finish(self) {
        self.outbox.close();
        let _ = self.writer.await;
    }
}
