//! Standard Cap'n Proto stream framing (a segment table, then the segments) over tokio, with limits
//! checked before anything is allocated: a header that claims a gigabyte is refused after 8 bytes,
//! and a frame's buffer only grows as its bytes arrive, so a claim costs nothing until it is paid.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ProtocolError;

/// The largest frame any setting may allow. A task payload is the only large field; 16 MiB is ample.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Our messages use one segment; a few more are allowed for other encoders.
pub const MAX_SEGMENTS: u64 = 64;
/// A frame's buffer grows by at most this much per read.
const GROWTH_STEP: usize = 64 << 10;

/// What a reader accepts: the largest frame (and the setting that chose it, for the error), and how
/// long the rest of a frame may take once its first byte has arrived.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub max_bytes: usize,
    pub setting: &'static str,
    pub stall: Option<Duration>,
}

impl FrameLimits {
    /// For peers of the scheduler: any frame up to [`MAX_FRAME_BYTES`], no stall timeout.
    pub const TRUSTING: FrameLimits =
        FrameLimits { max_bytes: MAX_FRAME_BYTES, setting: "max_frame_bytes", stall: None };
}

/// Reads one frame: the raw bytes of a message, segment table included. `Ok(None)` at a clean end of
/// stream (between frames). Waiting for a frame to begin has no time limit; finishing one does.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: FrameLimits,
) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut frame = Vec::new();
    Ok(read_frame_into(reader, limits, &mut frame).await?.then_some(frame))
}

/// [`read_frame`] into a buffer the caller reuses from frame to frame (its old content is replaced);
/// false at a clean end of stream. With a buffered reader, a burst of small frames costs one system
/// call and no allocation per frame.
pub async fn read_frame_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: FrameLimits,
    frame: &mut Vec<u8>,
) -> Result<bool, ProtocolError> {
    frame.clear();
    // Keep a buffer of ordinary size between frames, not the largest frame ever seen.
    frame.shrink_to(GROWTH_STEP);
    let mut first = [0u8; 1];
    if reader.read(&mut first).await? == 0 {
        return Ok(false);
    }
    let rest = read_rest(reader, first[0], limits, frame);
    match limits.stall {
        Some(stall) => tokio::time::timeout(stall, rest).await.map_err(|_| ProtocolError::Stalled(stall))?,
        None => rest.await,
    }
    .map(|()| true)
}

async fn read_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
    first_byte: u8,
    limits: FrameLimits,
    frame: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    let mut first = [first_byte, 0, 0, 0];
    read_exact(reader, &mut first[1..]).await?;
    if looks_like_http(&first) {
        return Err(ProtocolError::Http);
    }
    let segments = u64::from(u32::from_le_bytes(first)) + 1;
    if segments > MAX_SEGMENTS {
        return Err(ProtocolError::TooManySegments(segments));
    }
    // The table: one u32 per segment after the count, padded to a whole word.
    let table_len = (4 * (segments as usize + 1)).next_multiple_of(8) - 4;
    let mut table = [0u8; 4 * (MAX_SEGMENTS as usize + 1)];
    read_exact(reader, &mut table[..table_len]).await?;
    let words: u64 = (0..segments as usize)
        .map(|i| u64::from(u32::from_le_bytes(table[4 * i..4 * i + 4].try_into().expect("4 bytes"))))
        .sum();
    let total = 4 + table_len as u64 + words * 8;
    if total > limits.max_bytes as u64 {
        return Err(ProtocolError::TooLarge { claimed: total, limit: limits.max_bytes, setting: limits.setting });
    }
    let total = total as usize;
    frame.extend_from_slice(&first);
    frame.extend_from_slice(&table[..table_len]);
    while frame.len() < total {
        let step = (total - frame.len()).min(GROWTH_STEP);
        frame.reserve(step);
        let read = (&mut *reader).take(step as u64).read_buf(frame).await?;
        if read == 0 {
            return Err(ProtocolError::Truncated);
        }
    }
    Ok(())
}

/// The first four bytes of an HTTP request or response ("GET ", "POST", "HTTP/1.1 ..."): someone
/// pointed HTTP at the protocol port, or a protocol peer at an HTTP port.
pub fn looks_like_http(first: &[u8; 4]) -> bool {
    matches!(first, b"GET " | b"POST" | b"PUT " | b"HEAD" | b"HTTP" | b"DELE" | b"OPTI" | b"PATC" | b"CONN")
}

async fn read_exact<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<(), ProtocolError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProtocolError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Writes already-encoded frames (see [`Message::encode`](super::Message::encode)) and flushes.
pub async fn write_frames<W: AsyncWrite + Unpin>(writer: &mut W, frames: &[u8]) -> std::io::Result<()> {
    writer.write_all(frames).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: usize) -> FrameLimits {
        FrameLimits { max_bytes, setting: "hello_frame_bytes", stall: Some(Duration::from_millis(50)) }
    }

    #[tokio::test]
    async fn a_claim_over_the_limit_is_refused_after_the_header_naming_the_setting() {
        let header = [0u8, 0, 0, 0, 0xfe, 0xff, 0x1f, 0];
        let err = read_frame(&mut &header[..], limits(64 << 10)).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hello_frame_bytes") && text.contains("65536"), "{text}");
    }

    #[tokio::test]
    async fn a_frame_that_stalls_midway_is_dropped_after_the_stall_timeout() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        // A header claiming 2 words, then only one of them.
        client.write_all(&[0, 0, 0, 0, 2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]).await.unwrap();
        let err = read_frame(&mut server, limits(1 << 20)).await.unwrap_err();
        assert!(matches!(err, ProtocolError::Stalled(_)), "{err}");
        drop(client);
    }

    #[tokio::test]
    async fn frames_of_several_segments_are_read_whole() {
        // A payload larger than the encoder's first segment makes a second one.
        let task = crate::protocol::Task {
            id: 1,
            function: "echo".into(),
            payload: vec![7; 64 << 10],
            capabilities: Default::default(),
        };
        let encoded = crate::protocol::Message::TaskSubmit(task.clone()).encode();
        assert!(u32::from_le_bytes(encoded[..4].try_into().unwrap()) >= 1, "the sample has several segments");
        let frame = read_frame(&mut &encoded[..], limits(1 << 20)).await.unwrap().unwrap();
        assert_eq!(frame.len(), encoded.len());
        assert_eq!(crate::protocol::Message::decode(&frame).unwrap(), crate::protocol::Message::TaskSubmit(task));
    }

    #[tokio::test]
    async fn http_is_recognised() {
        let err = read_frame(&mut &b"GET /status HTTP/1.1\r\n\r\n"[..], limits(1 << 20)).await.unwrap_err();
        assert!(matches!(err, ProtocolError::Http), "{err}");
    }
}
