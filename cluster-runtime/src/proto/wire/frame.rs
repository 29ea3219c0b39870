//! The core frames exchanged over a link, and their encoding.
//!
//! A frame on the wire is a 4-byte big-endian length followed by the postcard encoding of
//! [`Frame`]. Core frames carry the handshake, liveness and the data plane (tell, ask,
//! spawn, reply); everything else travels in [`Frame::Service`] on a numbered
//! [`Channel`], and each service decodes its own body. Payloads are borrowed from the
//! received buffer, so decoding copies nothing. [`decode`] rejects trailing bytes: a frame
//! is exactly one value.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::RemoteError;
use crate::format::{postcard_exact, Format, Inexact};
use crate::ids::{ActorTypeId, LocalActorId, NodeId, RequestId, WireId};
use crate::proto::flow::FlowWindow;
use crate::proto::membership::Profile;
use crate::proto::wire::channel::{Channel, ServiceVersion};

/// The protocol version this build speaks. A peer with another version is rejected.
///
/// Version 2: core frames plus [`Frame::Service`]; [`Hello`] lists the services.
pub const PROTOCOL_VERSION: u16 = 2;

/// Length of the frame length prefix, in bytes.
pub const LENGTH_PREFIX: usize = 4;

/// The maximum frame body [`Hello::new`] announces (the configuration's default).
pub const DEFAULT_MAX_FRAME: u32 = 8 * 1024 * 1024;

/// The flow-control window [`Hello::new`] announces (the configuration's default).
pub const DEFAULT_FLOW_WINDOW: FlowWindow = FlowWindow { bytes: 1 << 20, msgs: 16_384 };

/// The per-link flow-control window [`Hello::new`] announces (the configuration's default).
pub const DEFAULT_LINK_WINDOW: FlowWindow = FlowWindow { bytes: 16 << 20, msgs: 65_536 };

/// The body size of an encoded frame (without its length prefix).
pub fn body_len(frame: &EncodedFrame) -> usize {
    frame.len().saturating_sub(LENGTH_PREFIX)
}

/// The identity a node presents in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version of the sender ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// The cluster the sender belongs to; links only form within one cluster.
    pub cluster: String,
    /// The sender's node id, new for every incarnation of the node.
    pub node_id: NodeId,
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
    /// The services the sender speaks, with their versions.
    pub services: Vec<ServiceVersion>,
    /// The largest frame body the sender accepts once the handshake has completed; peers
    /// refuse to send it anything larger.
    pub max_frame: u32,
    /// The flow-control window the sender grants each link toward each of its actors.
    pub flow: FlowWindow,
    /// The flow-control window the sender grants each link over all its actors together.
    pub link_flow: FlowWindow,
}

impl Hello {
    /// A hello of this protocol version with no credentials, generation 0, an empty profile
    /// and no services; set the other fields as needed.
    pub fn new(
        cluster: impl Into<String>,
        node_id: NodeId,
        node_name: impl Into<String>,
        listen_addr: impl Into<String>,
    ) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            cluster: cluster.into(),
            node_id,
            node_name: node_name.into(),
            listen_addr: listen_addr.into(),
            auth: None,
            generation: 0,
            profile: Profile::default(),
            services: Vec::new(),
            max_frame: DEFAULT_MAX_FRAME,
            flow: DEFAULT_FLOW_WINDOW,
            link_flow: DEFAULT_LINK_WINDOW,
        }
    }

    /// The version of the service on `channel` the sender speaks, if it speaks it.
    pub fn service_version(&self, channel: Channel) -> Option<u16> {
        self.services.iter().find(|s| s.channel == channel).map(|s| s.version)
    }
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
        node: NodeId,
    },
    /// The peer's node name breaks the naming rules (1-64 letters, digits, `-`, `_`, `.`).
    InvalidNodeName,
    /// The peer's listen address is empty, too long or not printable.
    InvalidAddress,
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
        actor: LocalActorId,
    },
    /// The request failed on the replying node.
    Error(RemoteError),
}

/// Declares `Frame` and, from the same list, `FrameTag`: one fieldless variant per frame
/// variant, in the same order. serde numbers variants by position, and so does a fieldless
/// enum's discriminant, so `FrameTag::Tell as u64` is the index postcard writes for
/// `Frame::Tell`, derived at compile time from the declaration.
macro_rules! frames {
    (
        $(#[$meta:meta])*
        pub enum Frame<'a> {
            $(
                $(#[$vmeta:meta])*
                $variant:ident $( ( $($tuple:tt)* ) )? $( { $($fields:tt)* } )?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub enum Frame<'a> {
            $( $(#[$vmeta])* $variant $( ( $($tuple)* ) )? $( { $($fields)* } )? ),*
        }

        /// The kind of a [`Frame`], numbered as postcard numbers `Frame`'s variants.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u64)]
        pub enum FrameTag {
            $(
                #[doc = concat!("[`Frame::", stringify!($variant), "`]")]
                $variant
            ),*
        }

        impl Frame<'_> {
            /// The frame's kind.
            pub fn tag(&self) -> FrameTag {
                match self {
                    $( Frame::$variant { .. } => FrameTag::$variant ),*
                }
            }

            /// A short name of the frame's kind, for logs.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Frame::$variant { .. } => stringify!($variant) ),*
                }
            }
        }
    };
}

frames! {
    /// One frame on a link.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Frame<'a> {
        /// First frame of the connecting side. (Boxed: it is by far the largest variant, and
        /// every frame value would otherwise be as large as it.)
        Hello(Box<Hello>),
        /// The accepting side's answer to a valid [`Frame::Hello`], carrying its identity.
        Welcome(Box<Hello>),
        /// The handshake was refused; the connection closes after this frame.
        Reject(RejectReason),
        /// A one-way message to an actor.
        Tell {
            /// The target actor's id on the receiving node.
            target: LocalActorId,
            /// The message type's wire id.
            message: WireId,
            /// The payload's format.
            format: Format,
            /// The encoded message.
            #[serde(borrow, with = "serde_bytes")]
            payload: &'a [u8],
        },
        /// A request to an actor; answered by a [`Frame::Reply`] with the same `request`.
        Ask {
            /// The request id, unique per sending node.
            request: RequestId,
            /// The target actor's id on the receiving node.
            target: LocalActorId,
            /// The message type's wire id.
            message: WireId,
            /// The payload's format.
            format: Format,
            /// The encoded message.
            #[serde(borrow, with = "serde_bytes")]
            payload: &'a [u8],
        },
        /// A request to build an actor from serialized state on the receiving node.
        Spawn {
            /// The request id, unique per sending node.
            request: RequestId,
            /// The actor type's id.
            actor_type: ActorTypeId,
            /// The state's format.
            format: Format,
            /// The encoded initial state.
            #[serde(borrow, with = "serde_bytes")]
            state: &'a [u8],
        },
        /// The answer to an [`Frame::Ask`] or a [`Frame::Spawn`].
        Reply {
            /// The request being answered.
            request: RequestId,
            /// What happened.
            #[serde(borrow)]
            outcome: Outcome<'a>,
        },
        /// Sent when a link has been idle for a heartbeat interval; proves the peer is alive.
        Heartbeat,
        /// The sender is closing the link on purpose; no frame follows.
        Goodbye(GoodbyeReason),
        /// A frame of the service on `channel`; the service decodes `body` itself.
        Service {
            /// The service's channel.
            channel: Channel,
            /// The service's own encoding of its frame.
            #[serde(borrow, with = "serde_bytes")]
            body: &'a [u8],
        },
        /// A request to stop an actor on the receiving node; answered by a [`Frame::Reply`]
        /// with an empty value, or an `UnknownActor` error.
        Stop {
            /// The request id, unique per sending node.
            request: RequestId,
            /// The actor to stop.
            target: LocalActorId,
        },
        /// Flow-control credit: the receiver's actor `target` handled this many bytes and
        /// messages of the tells this link sent it.
        Credit {
            /// The actor.
            target: LocalActorId,
            /// Bytes of message frames.
            bytes: u64,
            /// Messages.
            msgs: u64,
        },
    }
}

/// Why a link is being closed on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoodbyeReason {
    /// The sending node is shutting down.
    Shutdown,
    /// Another link to the same peer won the tie-break; traffic moves there.
    Replaced,
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

/// Appends `frame` with its length prefix to `buf`.
pub fn encode_into(frame: &Frame<'_>, buf: &mut BytesMut) -> Result<(), FrameError> {
    let bytes = encode(frame)?;
    buf.put_slice(&bytes);
    Ok(())
}

/// Decodes one frame body (without its length prefix), rejecting trailing bytes.
pub fn decode(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    postcard_exact(body).map_err(|e| match e {
        Inexact::Malformed(e) => FrameError::Malformed(e),
        Inexact::Trailing(n) => FrameError::TrailingBytes(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RemoteErrorKind;

    fn hello() -> Hello {
        let mut h = Hello::new("shop", NodeId(0xdead_beef_u128 << 64 | 7), "node-1", "127.0.0.1:7001");
        h.services = vec![ServiceVersion { channel: Channel::MEMBERSHIP, version: 1 }];
        h
    }

    pub(crate) fn body(bytes: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(len, bytes.len() - LENGTH_PREFIX, "length prefix must cover the body exactly");
        &bytes[LENGTH_PREFIX..]
    }

    #[test]
    fn every_frame_kind_round_trips() {
        let (a, m, r) = (LocalActorId(1), WireId(2), RequestId(9));
        let frames = [
            Frame::Hello(Box::new(hello())),
            Frame::Welcome(Box::new(hello())),
            Frame::Reject(RejectReason::Version { ours: 1 }),
            Frame::Tell { target: a, message: m, format: Format::Postcard, payload: b"abc" },
            Frame::Ask { request: r, target: a, message: m, format: Format::Json, payload: b"{}" },
            Frame::Spawn { request: r, actor_type: ActorTypeId(3), format: Format::Postcard, state: &[1, 2, 3] },
            Frame::Reply { request: r, outcome: Outcome::Value(b"xyz") },
            Frame::Reply { request: r, outcome: Outcome::Spawned { actor: LocalActorId(4) } },
            Frame::Reply { request: r, outcome: Outcome::Error(RemoteError::new(RemoteErrorKind::Decode, "bad")) },
            Frame::Heartbeat,
            Frame::Goodbye(GoodbyeReason::Replaced),
            Frame::Service { channel: Channel::MEMBERSHIP, body: &[9, 9] },
            Frame::Stop { request: r, target: a },
            Frame::Credit { target: a, bytes: 4096, msgs: 3 },
        ];
        for frame in frames {
            let bytes = encode(&frame).expect("encode");
            let back = decode(body(&bytes)).expect("decode");
            assert_eq!(back.tag(), frame.tag());
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn the_first_byte_of_every_frame_is_its_tag() {
        // Each variant's index is below 128, so postcard writes it as one byte.
        let samples = [
            Frame::Heartbeat,
            Frame::Goodbye(GoodbyeReason::Shutdown),
            Frame::Tell { target: LocalActorId(1), message: WireId(2), format: Format::Json, payload: b"" },
            Frame::Service { channel: Channel(77), body: b"" },
            Frame::Reject(RejectReason::ShuttingDown),
        ];
        for frame in samples {
            let bytes = encode(&frame).expect("encode");
            assert_eq!(u64::from(body(&bytes)[0]), frame.tag() as u64, "{}", frame.kind());
        }
    }

    #[test]
    fn decoding_borrows_the_payload() {
        let frame =
            Frame::Tell { target: LocalActorId(1), message: WireId(2), format: Format::Postcard, payload: b"hello" };
        let bytes = encode(&frame).expect("encode");
        let b = body(&bytes);
        let Frame::Tell { payload, .. } = decode(b).expect("decode") else { panic!("not a tell") };
        let range = b.as_ptr_range();
        assert!(range.contains(&payload.as_ptr()), "payload must point into the frame buffer");
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
        let bytes = encode(&Frame::Hello(Box::new(hello()))).expect("encode");
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
