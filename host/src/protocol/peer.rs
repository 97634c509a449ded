//! Connections: a writer task per connection that batches frames, and the peer side of the hello.

use anyhow::{Context, bail};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::framing::{read_frame, write_frames};
use super::{Address, Hello, Message, PROTOCOL_VERSION, Role};

enum Outgoing {
    Frames(Vec<u8>),
    Close,
}

/// The sending side of a connection. Cheap to clone; sends never block (frames are queued for the
/// writer task, which writes everything queued in one go).
#[derive(Clone)]
pub struct Outbox(mpsc::UnboundedSender<Outgoing>);

impl Outbox {
    /// Queues a message; false when the connection is gone.
    pub fn send(&self, message: &Message) -> bool {
        self.0.send(Outgoing::Frames(message.encode())).is_ok()
    }

    /// Queues several messages as one write.
    pub fn send_all<'a>(&self, messages: impl IntoIterator<Item = &'a Message>) -> bool {
        let frames: Vec<u8> = messages.into_iter().flat_map(|m| m.encode()).collect();
        self.0.send(Outgoing::Frames(frames)).is_ok()
    }

    /// Writes what is queued, then closes the sending half.
    pub fn close(&self) {
        let _ = self.0.send(Outgoing::Close);
    }
}

/// Starts the writer task of a connection.
pub fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(mut writer: W) -> (Outbox, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
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
            if write_frames(&mut writer, &batch).await.is_err() {
                break;
            }
            batch.clear();
            if closing {
                let _ = writer.shutdown().await;
                break;
            }
        }
    });
    (Outbox(tx), task)
}

/// A connection to the scheduler after a successful hello.
pub struct Connection {
    pub peer_id: u64,
    reader: BufReader<OwnedReadHalf>,
    pub outbox: Outbox,
    writer: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Connects and says hello; fails with the scheduler's reason when it refuses.
    pub async fn open(address: &Address, role: Role, identity: &str, token: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address.socket())
            .await
            .with_context(|| format!("cannot connect to the scheduler at {address}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (outbox, writer) = spawn_writer(write);
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
        match read_frame(&mut self.reader).await? {
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
