//! Connections: a writer task per connection that batches frames, and the peer side of the hello.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::framing::{FrameLimits, read_frame, write_frames};
use super::{Address, Hello, Message, PROTOCOL_VERSION, Role};

enum Outgoing {
    Frames(Vec<u8>),
    Close,
}

/// The sending side of a connection. Cheap to clone; sends never block (frames are queued for the
/// writer task, which writes everything queued in one go). What is queued is bounded: a peer that
/// does not read cannot make us hold more than `max_queued` bytes for it.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    overflowed: Arc<AtomicBool>,
}

impl Outbox {
    /// Queues a message; false when the connection is gone or its queue is full (it is then closed).
    pub fn send(&self, message: &Message) -> bool {
        self.queue(message.encode())
    }

    /// Queues several messages as one write.
    pub fn send_all<'a>(&self, messages: impl IntoIterator<Item = &'a Message>) -> bool {
        self.queue(messages.into_iter().flat_map(|m| m.encode()).collect())
    }

    fn queue(&self, frames: Vec<u8>) -> bool {
        let len = frames.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > self.max_queued {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.overflowed.store(true, Ordering::Relaxed);
            self.close();
            return false;
        }
        self.tx.send(Outgoing::Frames(frames)).is_ok()
    }

    /// Writes what is queued, then closes the sending half.
    pub fn close(&self) {
        let _ = self.tx.send(Outgoing::Close);
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

/// Starts the writer task of a connection. The task ends with `Err(reason)` when the peer stopped
/// reading (a write timed out, or its queue overflowed) or the connection broke.
pub fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut writer: W,
    limits: WriterLimits,
) -> (Outbox, tokio::task::JoinHandle<Result<(), String>>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let overflowed = Arc::new(AtomicBool::new(false));
    let outbox = Outbox { tx, queued: queued.clone(), max_queued: limits.max_queued, overflowed: overflowed.clone() };
    let task = tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut closing = false;
            for item in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match item {
                    Outgoing::Frames(frames) => batch.extend_from_slice(&frames),
                    Outgoing::Close => {
                        closing = true;
                        break;
                    }
                }
            }
            if overflowed.load(Ordering::Relaxed) {
                return Err(format!(
                    "the peer reads too slowly: more than {} bytes queued for it (max_outbox_bytes)",
                    limits.max_queued
                ));
            }
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
            written.map_err(|e| format!("writing failed: {e}"))?;
            queued.fetch_sub(batch.len(), Ordering::Relaxed);
            batch.clear();
            if closing {
                let _ = writer.shutdown().await;
                break;
            }
        }
        Ok(())
    });
    (outbox, task)
}

/// A connection to the scheduler after a successful hello.
pub struct Connection {
    pub peer_id: u64,
    reader: BufReader<OwnedReadHalf>,
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
        let mut connection = Connection { peer_id: 0, reader, outbox, writer };
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
        match read_frame(&mut self.reader, FrameLimits::TRUSTING).await? {
            Some(frame) => Ok(Some(Message::decode(&frame)?)),
            None => Ok(None),
        }
    }

    /// Writes everything queued, then closes the connection.
    pub async fn finish(self) {
        self.outbox.close();
        let _ = self.writer.await;
    }
}
