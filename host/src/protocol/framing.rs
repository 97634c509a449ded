//! Standard Cap'n Proto stream framing (a segment table, then the segments) over tokio, with limits
//! checked before anything is allocated: a header that claims a gigabyte is refused after 8 bytes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ProtocolError;

/// The largest frame accepted. A task payload is the only large field; 16 MiB is ample.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Our messages use one segment; a few more are allowed for other encoders.
pub const MAX_SEGMENTS: u64 = 64;

/// Reads one frame: the raw bytes of a message, segment table included. `Ok(None)` at a clean end of
/// stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut first = [0u8; 4];
    match reader.read(&mut first[..1]).await? {
        0 => return Ok(None),
        _ => read_exact(reader, &mut first[1..]).await?,
    }
    let segments = u64::from(u32::from_le_bytes(first)) + 1;
    if segments > MAX_SEGMENTS {
        return Err(ProtocolError::TooManySegments(segments));
    }
    // The table: one u32 per segment after the count, padded to a whole word.
    let table_len = (4 * segments as usize).next_multiple_of(8) - 4;
    let mut table = vec![0u8; table_len];
    read_exact(reader, &mut table).await?;
    let words: u64 = (0..segments as usize)
        .map(|i| u64::from(u32::from_le_bytes(table[4 * i..4 * i + 4].try_into().expect("4 bytes"))))
        .sum();
    let body_len = words * 8;
    let total = 4 + table_len as u64 + body_len;
    if total > MAX_FRAME_BYTES as u64 {
        return Err(ProtocolError::TooLarge { claimed: total, limit: MAX_FRAME_BYTES });
    }
    let mut frame = Vec::with_capacity(total as usize);
    frame.extend_from_slice(&first);
    frame.extend_from_slice(&table);
    frame.resize(total as usize, 0);
    read_exact(reader, &mut frame[4 + table_len..]).await?;
    Ok(Some(frame))
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
