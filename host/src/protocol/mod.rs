//! The wire protocol: the Cap'n Proto schema (`host/schema/ebbtide.capnp`), the plain Rust messages
//! the rest of ebbtide uses, framing with limits, and the hello handshake.
//!
//! - [`message`]: [`Message`] and its encoding; the only code that touches the generated types.
//! - [`framing`]: standard Cap'n Proto stream framing with size and segment limits on every read.
//! - [`address`]: `tcp://HOST:PORT`.
//! - [`peer`]: connecting as a client, worker or adapter (hello, welcome, a writer task).

pub mod address;
#[allow(clippy::all, unused, unsafe_code, missing_docs)]
#[rustfmt::skip]
pub mod ebbtide_capnp;
pub mod framing;
pub mod message;
pub mod peer;

pub use address::{Address, bind_error};
pub use message::*;

/// Bumped on every incompatible change to the schema; a hello with another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Errors reading or decoding a message. Each closes the connection it came from, and only that one.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {claimed} bytes exceeds the limit of {limit} bytes ({setting})")]
    TooLarge { claimed: u64, limit: usize, setting: &'static str },
    #[error("a frame stalled: its rest did not arrive within {} ms (frame_timeout_ms)", .0.as_millis())]
    Stalled(std::time::Duration),
    #[error(
        "HTTP on a protocol connection: the scheduler's protocol address (`address`, tcp://HOST:PORT, for \
         clients, workers and adapters) and its admin HTTP address (`admin_address`, for /status, /metrics \
         and the dashboard) are different ports; check which one this is"
    )]
    Http,
    #[error("frame claims {0} segments; at most {max} are accepted", max = framing::MAX_SEGMENTS)]
    TooManySegments(u64),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl From<capnp::Error> for ProtocolError {
    fn from(e: capnp::Error) -> Self {
        ProtocolError::Malformed(e.to_string())
    }
}

impl From<capnp::NotInSchema> for ProtocolError {
    fn from(e: capnp::NotInSchema) -> Self {
        ProtocolError::Malformed(format!("unknown enum value or union member {}", e.0))
    }
}

impl From<std::str::Utf8Error> for ProtocolError {
    fn from(e: std::str::Utf8Error) -> Self {
        ProtocolError::Malformed(format!("text is not UTF-8: {e}"))
    }
}
