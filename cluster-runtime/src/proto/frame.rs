//! The wire frames exchanged over a link, and their encoding.
//!
//! A frame on the wire is a 4-byte big-endian length followed by the postcard encoding of
//! [`Frame`]. Payloads are borrowed from the received buffer, so decoding copies nothing.
//! [`decode`] rejects trailing bytes: a frame is exactly one value.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::RemoteErrorKind;
use crate::format::Format;
use crate::proto::membership::{Member, Profile, ResourceReport};

/// The protocol version this build speaks. A peer with another version is rejected.
pub const PROTOCOL_VERSION: u16 = 1;

/// Length of the frame length prefix, in bytes.
pub const LENGTH_PREFIX: usize = 4;

/// The identity a node presents in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version of the sender ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// The cluster the sender belongs to; links only form within one cluster.
    pub cluster: String,
    /// The sender's node id, new for every incarnation of the node.
    pub node_id: u128,
    /// The sender's node name, stable across restarts.
    pub node_name: String,
    /// The address the sender accepts links on.
    pub listen_addr: String,
    /// Reserved for authentication (challenge responses or tokens); empty today.
    pub auth: Option<Vec<u8>>,
    /// Incarnation generation: a restarted node presents a higher one.
    pub generation: u64,
    /// Roles, capabilities and metadata of the sender.
    pub profile: Profile,
}

/// Why a handshake was refused; sent in [`Frame::Reject`] before the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The protocol versions differ.
    Version {
        /// The refusing node's version.
        ours: u16,
    },
    /// The cluster names differ.
    ClusterMismatch,
    /// The connection reached the node itself.
    SelfConnection,
    /// A link between the two nodes already exists and wins the tie-break.
    DuplicateLink {
        /// The node id of the refusing node, so the opener knows whom it is linked to.
        node: u128,
    },
    /// Authentication data was sent but this node expects none (or it was wrong).
    Authentication,
    /// The node is shutting down.
    ShuttingDown,
}

/// The outcome carried by a [`Frame::Reply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<'a> {
    /// The handler's result, encoded in the actor's format.
    #[serde(borrow)]
    Value(#[serde(with = "serde_bytes")] &'a [u8]),
    /// A remote spawn succeeded; this is the new actor's id on the replying node.
    Spawned {
        /// The id of the new actor on the replying node.
        actor: u64,
    },
    /// The request failed on the replying node.
    Error {
        /// What kind of failure.
        kind: RemoteErrorKind,
        /// A human-readable explanation.
        detail: String,
    },
}

/// One frame on a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame<'a> {
    /// First frame of the connecting side.
    Hello(Hello),
    /// The accepting side's answer to a valid [`Frame::Hello`], carrying its identity.
    Welcome(Hello),
    /// The handshake was refused; the connection closes after this frame.
    Reject(RejectReason),
    /// A one-way message to an actor.
    Tell {
        /// The target actor's id on the receiving node.
        target: u64,
        /// The message type's wire id.
        message: u64,
        /// The payload's format.
        format: Format,
        /// The encoded message.
        #[serde(borrow, with = "serde_bytes")]
        payload: &'a [u8],
    },
    /// A request to an actor; answered by a [`Frame::Reply`] with the same `request`.
    Ask {
        /// The request id, unique per sending node.
        request: u64,
        /// The target actor's id on the receiving node.
        target: u64,
        /// The message type's wire id.
        message: u64,
        /// The payload's format.
        format: Format,
        /// The encoded message.
        #[serde(borrow, with = "serde_bytes")]
        payload: &'a [u8],
    },
    /// A request to build an actor from serialized state on the receiving node.
    Spawn {
        /// The request id, unique per sending node.
        request: u64,
        /// The actor type's wire id.
        actor_type: u64,
        /// The state's format.
        format: Format,
        /// The encoded initial state.
        #[serde(borrow, with = "serde_bytes")]
        state: &'a [u8],
    },
    /// The answer to an [`Frame::Ask`] or a [`Frame::Spawn`].
    Reply {
        /// The request being answered.
        request: u64,
        /// What happened.
        #[serde(borrow)]
        outcome: Outcome<'a>,
    },
    /// Sent when a link has been idle for a heartbeat interval; proves the peer is alive.
    Heartbeat,
    /// A packet of the SWIM failure detector (decentralized membership).
    Swim(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
    /// The sender's latest resource report.
    Resources(ResourceReport),
    /// The sender is leaving the cluster on purpose; its failure-detector goodbye follows.
    Leaving,
    /// A master's view of the cluster (centralized membership).
    View {
        /// Increases with every change the master makes.
        version: u64,
        /// Every member the master knows, itself included.
        members: Vec<Member>,
    },
    /// The sender is closing the link on purpose; no frame follows.
    Goodbye(GoodbyeReason),
}

/// Why a link is being closed on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoodbyeReason {
    /// The sending node is shutting down.
    Shutdown,
    /// Another link to the same peer won the tie-break; traffic moves there.
    Replaced,
}

impl Frame<'_> {
    /// A short name of the frame's kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Welcome(_) => "Welcome",
            Frame::Reject(_) => "Reject",
            Frame::Tell { .. } => "Tell",
            Frame::Ask { .. } => "Ask",
            Frame::Spawn { .. } => "Spawn",
            Frame::Reply { .. } => "Reply",
            Frame::Heartbeat => "Heartbeat",
            Frame::Swim(_) => "Swim",
            Frame::Resources(_) => "Resources",
            Frame::Leaving => "Leaving",
            Frame::View { .. } => "View",
            Frame::Goodbye(_) => "Goodbye",
        }
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A valid frame was followed by extra bytes inside the same length-delimited frame.
    #[error("malformed frame: {0} trailing bytes after the frame")]
    TrailingBytes(usize),
    /// The encoded frame exceeds the length prefix's range.
    #[error("frame of {0} bytes is too large to encode")]
    TooLarge(usize),
}

/// An encoded frame, length prefix included, ready to be written to a stream.
pub type EncodedFrame = Vec<u8>;

/// Encodes `frame` with its length prefix, ready to be written to a stream.
pub fn encode(frame: &Frame<'_>) -> Result<EncodedFrame, FrameError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0u8; LENGTH_PREFIX]);
    let mut out = postcard::to_extend(frame, out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = out.len() - LENGTH_PREFIX;
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    out[..LENGTH_PREFIX].copy_from_slice(&len32.to_be_bytes());
    Ok(out)
}

/// The head of a frame that carries a message: a [`Frame::Tell`] or a [`Frame::Ask`].
#[derive(Debug, Clone, Copy)]
pub enum MessageHead {
    /// A tell to `target`.
    Tell {
        /// Target actor id.
        target: u64,
    },
    /// An ask to `target` with request id `request`.
    Ask {
        /// Request id.
        request: u64,
        /// Target actor id.
        target: u64,
    },
}

// postcard variant indexes of `Frame` and `Format`; checked against serde by the tests.
const TELL_VARIANT: u64 = 3;
const ASK_VARIANT: u64 = 4;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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
/// buffer: one allocation per frame, the same bytes as [`encode`] of the equivalent
/// [`Frame`].
pub fn encode_message<E>(
    head: MessageHead,
    message: u64,
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
                put_varint(&mut out, TELL_VARIANT);
                put_varint(&mut out, target);
            }
            MessageHead::Ask { request, target } => {
                put_varint(&mut out, ASK_VARIANT);
                put_varint(&mut out, request);
                put_varint(&mut out, target);
            }
        }
        put_varint(&mut out, message);
        put_varint(&mut out, format.wire_index());
        put_varint(&mut out, scratch.len() as u64);
        out.extend_from_slice(&scratch);
        // Frames above 4 GiB are refused by every peer's maximum long before this.
        let len = (out.len() - LENGTH_PREFIX) as u32;
        out[..LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    })
}

/// Appends `frame` with its length prefix to `buf`.
pub fn encode_into(frame: &Frame<'_>, buf: &mut BytesMut) -> Result<(), FrameError> {
    let bytes = encode(frame)?;
    buf.put_slice(&bytes);
    Ok(())
}

/// Decodes one frame body (without its length prefix), rejecting trailing bytes.
pub fn decode(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    match postcard::take_from_bytes::<Frame<'_>>(body) {
        Ok((frame, [])) => Ok(frame),
        Ok((_, rest)) => Err(FrameError::TrailingBytes(rest.len())),
        Err(e) => Err(FrameError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster: "shop".into(),
            node_id: 0xdead_beef_u128 << 64 | 7,
            node_name: "node-1".into(),
            listen_addr: "127.0.0.1:7001".into(),
            auth: None,
            generation: 0,
            profile: Default::default(),
        }
    }

    fn body(bytes: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(len, bytes.len() - LENGTH_PREFIX, "length prefix must cover the body exactly");
        &bytes[LENGTH_PREFIX..]
    }

    #[test]
    fn every_frame_kind_round_trips() {
        let frames = [
            Frame::Hello(hello()),
            Frame::Welcome(hello()),
            Frame::Reject(RejectReason::Version { ours: 1 }),
            Frame::Tell { target: 1, message: 2, format: Format::Postcard, payload: b"abc" },
            Frame::Ask { request: 9, target: 1, message: 2, format: Format::Json, payload: b"{}" },
            Frame::Spawn { request: 10, actor_type: 3, format: Format::Postcard, state: &[1, 2, 3] },
            Frame::Reply { request: 9, outcome: Outcome::Value(b"xyz") },
            Frame::Reply { request: 10, outcome: Outcome::Spawned { actor: 4 } },
            Frame::Reply {
                request: 11,
                outcome: Outcome::Error { kind: RemoteErrorKind::Decode, detail: "bad".into() },
            },
            Frame::Heartbeat,
            Frame::Swim(&[9, 9]),
            Frame::Resources(ResourceReport { cpu_millicores: 15, memory_bytes: 10, actor_count: 2, in_flight: 3 }),
            Frame::Leaving,
            Frame::View { version: 4, members: vec![] },
            Frame::Goodbye(GoodbyeReason::Replaced),
        ];
        for frame in frames {
            let bytes = encode(&frame).expect("encode");
            assert_eq!(decode(body(&bytes)).expect("decode"), frame);
        }
    }

    #[test]
    fn decoding_borrows_the_payload() {
        let bytes = encode(&Frame::Tell { target: 1, message: 2, format: Format::Postcard, payload: b"hello" })
            .expect("encode");
        let b = body(&bytes);
        let Frame::Tell { payload, .. } = decode(b).expect("decode") else { panic!("not a tell") };
        let range = b.as_ptr_range();
        assert!(range.contains(&payload.as_ptr()), "payload must point into the frame buffer");
    }

    #[test]
    fn the_message_fast_path_writes_the_same_bytes_as_serde() {
        for format in [Format::Postcard, Format::Json] {
            for (target, request, message) in [(0u64, 0u64, 0u64), (1, 300, u64::MAX), (u64::MAX, 1 << 40, 12345)] {
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

    #[test]
    fn rejects_trailing_bytes() {
        let bytes = encode(&Frame::Heartbeat).expect("encode");
        let mut b = body(&bytes).to_vec();
        b.extend_from_slice(&[0, 0]);
        assert_eq!(decode(&b), Err(FrameError::TrailingBytes(2)));
    }

    #[test]
    fn rejects_garbage_truncation_and_unknown_variants() {
        assert!(matches!(decode(&[]), Err(FrameError::Malformed(_))));
        assert!(matches!(decode(&[0xff, 0xff, 0xff]), Err(FrameError::Malformed(_))));
        assert!(matches!(decode(&[200]), Err(FrameError::Malformed(_))), "unknown variant");
        let bytes = encode(&Frame::Hello(hello())).expect("encode");
        let b = body(&bytes);
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "truncated at {cut} must fail");
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..20_000 {
            let len = rng.random_range(0..64);
            let buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = decode(&buf);
        }
    }
}
