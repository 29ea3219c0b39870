//! The data plane's encoder: a tell or ask frame whose payload is serialized straight into
//! a scratch buffer, one allocation per frame, byte-equal to serde's encoding of the same
//! [`Frame`](crate::proto::wire::frame::Frame) (tested below). The variant indexes come
//! from [`FrameTag`] and the format's wire index, both derived from their declarations at
//! compile time.

use crate::format::Format;
use crate::ids::{LocalActorId, RequestId, WireId};
use crate::proto::wire::frame::{EncodedFrame, FrameTag, LENGTH_PREFIX};

/// The head of a frame that carries a message: a tell or an ask.
#[derive(Debug, Clone, Copy)]
pub enum MessageHead {
    /// A tell to `target`.
    Tell {
        /// Target actor id.
        target: LocalActorId,
    },
    /// An ask to `target` with request id `request`.
    Ask {
        /// Request id.
        request: RequestId,
        /// Target actor id.
        target: LocalActorId,
    },
}

/// Appends `v` as postcard writes a `u64` (LEB128).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes a tell or ask frame whose payload is written by `payload` into a scratch
/// buffer: one allocation per frame, the same bytes as
/// [`encode`](crate::proto::wire::frame::encode) of the equivalent frame.
pub fn encode_message<E>(
    head: MessageHead,
    message: WireId,
    format: Format,
    payload: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<EncodedFrame, E> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        payload(&mut scratch)?;
        let mut out = Vec::with_capacity(LENGTH_PREFIX + 32 + scratch.len());
        out.extend_from_slice(&[0u8; LENGTH_PREFIX]);
        match head {
            MessageHead::Tell { target } => {
                put_varint(&mut out, FrameTag::Tell as u64);
                put_varint(&mut out, target.0);
            }
            MessageHead::Ask { request, target } => {
                put_varint(&mut out, FrameTag::Ask as u64);
                put_varint(&mut out, request.0);
                put_varint(&mut out, target.0);
            }
        }
        put_varint(&mut out, message.0);
        put_varint(&mut out, format.wire_index());
        put_varint(&mut out, scratch.len() as u64);
        out.extend_from_slice(&scratch);
        // Frames above 4 GiB are refused by every peer's maximum long before this.
        let len = (out.len() - LENGTH_PREFIX) as u32;
        out[..LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::frame::{encode, Frame};

    #[test]
    fn the_message_fast_path_writes_the_same_bytes_as_serde() {
        for format in [Format::Postcard, Format::Json] {
            for (target, request, message) in [(0u64, 0u64, 0u64), (1, 300, u64::MAX), (u64::MAX, 1 << 40, 12345)] {
                let (target, request, message) = (LocalActorId(target), RequestId(request), WireId(message));
                let payload: Vec<u8> = (0..200u8).collect();
                let fast = encode_message::<()>(MessageHead::Tell { target }, message, format, |b| {
                    b.extend_from_slice(&payload);
                    Ok(())
                })
                .expect("fast");
                let slow = encode(&Frame::Tell { target, message, format, payload: &payload }).expect("serde");
                assert_eq!(fast, slow);
                let fast = encode_message::<()>(MessageHead::Ask { request, target }, message, format, |b| {
                    b.extend_from_slice(&payload[..3]);
                    Ok(())
                })
                .expect("fast");
                let slow =
                    encode(&Frame::Ask { request, target, message, format, payload: &payload[..3] }).expect("serde");
                assert_eq!(fast, slow);
            }
        }
    }
}
