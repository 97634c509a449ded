//! Accepting connections and reading from them.

use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::Event;
use crate::protocol::framing::read_frame;
use crate::protocol::peer::spawn_writer;
use crate::protocol::{Message, ProtocolError};
use crate::scheduler::{Input, PeerId};

/// A connection must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn accept_loop(listener: TcpListener, events: mpsc::UnboundedSender<Event>) {
    let mut next_peer: PeerId = 1;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Usually out of file descriptors: wait rather than spin.
                tracing::error!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = next_peer;
        next_peer += 1;
        let _ = stream.set_nodelay(true);
        tracing::debug!(peer, %remote, "connection accepted");
        let (read, write) = stream.into_split();
        let (outbox, _) = spawn_writer(write);
        let reader = tokio::spawn(read_loop(peer, remote.to_string(), read, events.clone()));
        if events.send(Event::Accepted { peer, outbox, reader: reader.abort_handle() }).is_err() {
            break;
        }
    }
}

/// Forwards every message of one connection until it ends; a bad frame ends it with a logged reason.
async fn read_loop(
    peer: PeerId,
    remote: String,
    read: tokio::net::tcp::OwnedReadHalf,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut first = true;
    let reason = loop {
        let frame = if first {
            first = false;
            match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut reader)).await {
                Ok(frame) => frame,
                Err(_) => break format!("no hello within {} s", HELLO_TIMEOUT.as_secs()),
            }
        } else {
            read_frame(&mut reader).await
        };
        let message = match frame.and_then(|f| f.map(|f| Message::decode(&f)).transpose()) {
            Ok(Some(message)) => message,
            Ok(None) => break "closed by the peer".to_owned(),
            Err(ProtocolError::Io(e)) => break format!("connection error: {e}"),
            Err(e) => {
                tracing::warn!(peer, %remote, "closing connection: {e}");
                break e.to_string();
            }
        };
        if events.send(Event::Input(Input::Message { peer, message })).is_err() {
            return;
        }
    };
    let _ = events.send(Event::Broken { peer, reason });
}
