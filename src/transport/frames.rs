//! Raft frames after the handshake: one tagged, length-delimited frame per message, or a
//! run of chunks for a message larger than a frame (a big snapshot).
//!
//! ```text
//! frame   = length (u32, big endian; tokio-util's LengthDelimitedCodec) ‖ tag ‖ payload
//! tag 0   payload is one whole protobuf raft Message
//! tag 1   payload is a chunk of a Message; more chunks follow
//! tag 2   payload is the last chunk of a Message
//! ```
//!
//! Frames are limited to [`Limits::max_frame`] (tens of MiB) so that a peer's length prefix
//! never makes this node reserve more; a message made of chunks is limited to
//! [`Limits::max_message`] as it is reassembled. One connection carries one message at a
//! time, so chunks of two messages never interleave.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use protobuf::Message as _;
use raft::eraftpb::Message;
use thiserror::Error;

const TAG_MESSAGE: u8 = 0;
const TAG_CHUNK: u8 = 1;
const TAG_LAST: u8 = 2;

/// Size limits of the peer transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, tag included, either way.
    pub max_frame: usize,
    /// Largest message reassembled from chunks.
    pub max_message: usize,
    /// Inbound connections at once, handshaking or not.
    pub max_connections: usize,
    /// Inbound connections still in their handshake at once.
    pub max_handshakes: usize,
    /// Of those, from one source address: a flood from one host then only pushes out its
    /// own handshakes, never another host's.
    pub max_handshakes_per_ip: usize,
    /// Authenticated inbound connections per peer; a newer one closes the oldest.
    pub max_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            // A raft message's size is a u32 in protobuf, and one memwal record is at most
            // 4 GiB (durability-findings F6): nothing larger could be installed anyway.
            max_message: u32::MAX as usize,
            max_connections: 256,
            max_handshakes: 64,
            max_handshakes_per_ip: 32,
            max_per_peer: 4,
        }
    }
}

/// Default frame limit: 32 MiB, far above one append (raft sends at most 1 MiB of entries
/// per message, and a value is at most 4 MiB), far below what a stranger should make a
/// node reserve.
pub const DEFAULT_MAX_FRAME: usize = 32 << 20;

/// Smallest frame limit accepted (`--peer-max-frame`): a few appends' worth.
pub const MIN_MAX_FRAME: usize = 64 << 10;

/// A frame stream that breaks the protocol. The connection is closed.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("an empty frame")]
    Empty,
    #[error("a frame with unknown tag {0}")]
    UnknownTag(u8),
    #[error("a whole message in the middle of a chunked one")]
    Interleaved,
    #[error("a chunked message over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("a message that does not decode: {0}")]
    Decode(String),
}

/// Encode `msg` as frames of at most `max_frame` bytes each.
pub fn encode(msg: &Message, max_frame: usize) -> Vec<Bytes> {
    let size = msg.compute_size() as usize;
    let mut whole = Vec::with_capacity(1 + size);
    whole.push(TAG_MESSAGE);
    msg.write_to_vec(&mut whole).expect("raft messages encode");
    if whole.len() <= max_frame {
        return vec![whole.into()];
    }
    let body = &whole[1..];
    let per = max_frame - 1;
    let n = body.len().div_ceil(per);
    body.chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = Vec::with_capacity(1 + chunk.len());
            f.push(if i + 1 == n { TAG_LAST } else { TAG_CHUNK });
            f.extend_from_slice(chunk);
            Bytes::from(f)
        })
        .collect()
}

/// Turns one connection's frames back into messages.
#[derive(Debug)]
pub struct Reassembler {
    max_message: usize,
    partial: Option<BytesMut>,
}

impl Reassembler {
    pub fn new(limits: &Limits) -> Self {
        Reassembler {
            max_message: limits.max_message,
            partial: None,
        }
    }

    /// Take one frame; a message once it is complete.
    pub fn push(&mut self, frame: BytesMut) -> Result<Option<Message>, FrameError> {
        let frame = frame.freeze();
        let (&tag, payload) = frame.split_first().ok_or(FrameError::Empty)?;
        let decode = decode_message;
        match tag {
            TAG_MESSAGE if self.partial.is_some() => Err(FrameError::Interleaved),
            TAG_MESSAGE => decode(&frame.slice(1..)).map(Some),
            TAG_CHUNK | TAG_LAST => {
                let buf = self.partial.get_or_insert_with(BytesMut::new);
                if buf.len() + payload.len() > self.max_message {
                    self.partial = None;
                    return Err(FrameError::TooLarge {
                        limit: self.max_message,
                    });
                }
                buf.extend_from_slice(payload);
                if tag == TAG_CHUNK {
                    return Ok(None);
                }
                let whole = self.partial.take().expect("just filled");
                decode(&whole.freeze()).map(Some)
            }
            other => Err(FrameError::UnknownTag(other)),
        }
    }
}

/// Decode one raft message from `bytes`, with every length field bounded by the input:
/// protobuf 2 otherwise reserves what a field's length says (up to 10 MB) before it finds
/// the input shorter, so a ten-byte frame could cost megabytes (found by
/// `tests/fuzz`'s `raft_frame_stream`). The limit alone does not cover `bytes` fields
/// (entry data, context) read from a slice, which are still reserved first (a ten-byte
/// frame cost 48 KiB, found by the same target): read from [`Bytes`], they are bounds-
/// checked slices of the frame before anything is allocated.
fn decode_message(bytes: &Bytes) -> Result<Message, FrameError> {
    let bad = |e: protobuf::ProtobufError| FrameError::Decode(e.to_string());
    let mut input = protobuf::CodedInputStream::from_carllerche_bytes(bytes);
    let outer = input.push_limit(bytes.len() as u64).map_err(bad)?;
    let mut msg = Message::default();
    msg.merge_from(&mut input).map_err(bad)?;
    input.pop_limit(outer);
    // The decoded fields are slices of the connection's read buffer, which holds other
    // frames too (up to 32 MiB after a snapshot chunk): entries live in the log until it
    // is compacted, so each gets its own exact-sized copy rather than pinning the buffer.
    for e in msg.mut_entries() {
        e.data = Bytes::copy_from_slice(&e.data);
        e.context = Bytes::copy_from_slice(&e.context);
    }
    Ok(msg)
}

/// Read the messages of authenticated peer `peer` from `frames` (a stream of decoded
/// frames: a `LengthDelimitedCodec` at [`Limits::max_frame`]) until it ends, handing each
/// to `on_message` with the bytes of the frames that carried it. An error is a broken
/// protocol — an oversized or malformed frame, a message from a node other than `peer` —
/// and the caller closes the connection.
pub async fn read_messages<S>(
    frames: &mut S,
    limits: &Limits,
    peer: u64,
    mut on_message: impl FnMut(Message, u64),
) -> Result<(), String>
where
    S: Stream<Item = std::io::Result<BytesMut>> + Unpin,
{
    let mut messages = Reassembler::new(limits);
    // Bytes of the frames of the message being reassembled (its chunks, for a big one).
    let mut bytes = 0u64;
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| e.to_string())?;
        bytes += frame.len() as u64;
        let Some(msg) = messages.push(frame).map_err(|e| e.to_string())? else {
            continue;
        };
        if msg.from != peer {
            return Err(format!("it sent a message from node {}", msg.from));
        }
        on_message(msg, std::mem::take(&mut bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{MessageType, Snapshot};

    fn snapshot_message(bytes: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.to = 2;
        m.from = 1;
        let mut s = Snapshot::default();
        s.data = (0..bytes)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        m.set_snapshot(s);
        m
    }

    fn limits(max_message: usize) -> Limits {
        Limits {
            max_message,
            ..Limits::default()
        }
    }

    #[test]
    fn a_message_larger_than_a_frame_travels_in_chunks() {
        let m = snapshot_message(100_000);
        let frames = encode(&m, 16 * 1024);
        assert!(frames.len() > 6, "{} frames", frames.len());
        assert!(frames.iter().all(|f| f.len() <= 16 * 1024));
        let mut r = Reassembler::new(&limits(1 << 20));
        let mut out = Vec::new();
        for f in frames {
            out.extend(r.push(BytesMut::from(&f[..])).unwrap());
        }
        assert_eq!(out, vec![m]);
        let small = encode(&snapshot_message(10), 16 * 1024);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0][0], TAG_MESSAGE);
    }

    #[test]
    fn broken_frame_streams_are_refused() {
        let mut r = Reassembler::new(&limits(1000));
        assert!(matches!(r.push(BytesMut::new()), Err(FrameError::Empty)));
        assert!(matches!(
            r.push(BytesMut::from(&[9u8, 1][..])),
            Err(FrameError::UnknownTag(9))
        ));
        assert!(matches!(
            r.push(BytesMut::from(&[TAG_MESSAGE, 0xff, 0xff][..])),
            Err(FrameError::Decode(_))
        ));
        r.push(BytesMut::from(&[TAG_CHUNK, 1, 2][..])).unwrap();
        assert!(matches!(
            r.push(BytesMut::from(&[TAG_MESSAGE][..])),
            Err(FrameError::Interleaved)
        ));
        let mut r = Reassembler::new(&limits(1000));
        let big = vec![TAG_CHUNK; 600];
        r.push(BytesMut::from(&big[..])).unwrap();
        assert!(matches!(
            r.push(BytesMut::from(&big[..])),
            Err(FrameError::TooLarge { limit: 1000 })
        ));
    }
}
