//! The delivery service's frames (channel 6): messages of reliable streams, the receiver's
//! grants with the outcomes of what it handled, and its resend requests.
//!
//! A node keeps two streams to every peer incarnation it sends guaranteed messages to: an
//! unordered one (at-least-once, exactly-once) and an ordered one. A stream is named by the
//! sending node's incarnation (the link it comes on) and `ordered`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::RemoteError;
use crate::format::{postcard_exact, Format, Inexact};
use crate::ids::{ActorId, LocalActorId, MessageId, NodeId, WireId};
use crate::proto::delivery::outbox::Seq;
use crate::proto::delivery::transaction::TxnFrame;
use crate::proto::registry::record::ActorLocation;
use crate::proto::wire::channel::Channel;

/// One guaranteed message as it crosses the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<'a> {
    /// Its id: the same for every copy, resends and re-routes included.
    pub id: MessageId,
    /// Where it goes on the receiving node.
    #[serde(borrow)]
    pub to: To<'a>,
    /// The message's type.
    pub message: WireId,
    /// The payload's format.
    pub format: Format,
    /// The sender waits for the handler's result (an ask).
    pub reply: bool,
    /// De-duplicate by `id` within the receiver's window (exactly once).
    pub dedup: bool,
    /// Causal (point-to-point): the sending node's clock when it sent the message, an
    /// entry per node incarnation. The receiver holds the message back until the messages
    /// to its actor that happened before it are handled.
    pub causal: Option<Cow<'a, [(NodeId, u64)]>>,
    /// The encoded message.
    #[serde(borrow, with = "serde_bytes")]
    pub payload: &'a [u8],
}

/// Where a guaranteed message goes on its receiving node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum To<'a> {
    /// A local actor.
    Actor {
        /// Its cluster-wide identity.
        identity: ActorId,
        /// Its id on the receiving node.
        target: LocalActorId,
    },
    /// A service of the receiving node (the broker: a topic's subscribers there).
    Sink {
        /// The service's channel.
        channel: Channel,
        /// What the service delivers it to (a topic).
        key: &'a str,
    },
}

/// What became of a handled message, when there is more to say than "handled".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<'a> {
    /// The handler's result (asks).
    #[serde(borrow)]
    Reply(#[serde(with = "serde_bytes")] &'a [u8]),
    /// Not handled: the actor runs there now.
    Moved(ActorLocation),
    /// Not handled, and never will be here: why.
    Refused(RemoteError),
}

/// A delivery frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryFrame<'a> {
    /// Messages of the sender's stream, by number; an envelope is `None` for a skipped
    /// (expired) number.
    Messages {
        /// Which of the sender's two streams.
        ordered: bool,
        /// The stream's epoch: a sender that gives a stream up (its receiver was marked
        /// down) starts the next one to that receiver with a higher epoch, numbered anew.
        epoch: u32,
        /// Everything up to here is confirmed, as far as the sender knows.
        confirmed: Seq,
        /// The messages.
        #[serde(borrow)]
        items: Vec<(Seq, Option<Envelope<'a>>)>,
    },
    /// The receiver's grant: handled up to `confirmed`, send up to `up_to`; with the
    /// outcomes of the numbers up to `confirmed` the sender may not have seen yet.
    Grant {
        /// Which stream.
        ordered: bool,
        /// The stream's epoch.
        epoch: u32,
        /// Handled with none missing up to here.
        confirmed: Seq,
        /// The sender may send up to here.
        up_to: Seq,
        /// Outcomes by number (numbers not listed were handled, nothing more to say).
        #[serde(borrow)]
        outcomes: Vec<(Seq, Outcome<'a>)>,
    },
    /// The receiver misses everything from `from` on.
    Resend {
        /// Which stream.
        ordered: bool,
        /// The stream's epoch.
        epoch: u32,
        /// The first missing number.
        from: Seq,
    },
    /// Two-phase commit of a transactional send or publish.
    Txn(TxnFrame),
    /// Causal (point-to-point): which of your messages to `identity`, numbered up to
    /// `up_to`, are not settled yet? (A message held back here depends on them.)
    CausalAsk {
        /// The destination actor.
        identity: ActorId,
        /// The highest number the held message depends on.
        up_to: u64,
    },
    /// The answer to [`DeliveryFrame::CausalAsk`]: up to `covers`, the messages to
    /// `identity` not settled are `unsettled`; no other one is waited for.
    CausalAnswer {
        /// The destination actor.
        identity: ActorId,
        /// How far the answer goes.
        covers: u64,
        /// The numbers not settled, ascending.
        unsettled: Vec<u64>,
    },
}

/// One message of a transaction, for one target on the participant's node; a participant's
/// part of a transaction (its `Prepare` message) is a list of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnItem {
    /// The message's id.
    pub id: MessageId,
    /// Where it goes.
    pub to: TxnTo,
    /// The message's type.
    pub message: WireId,
    /// The payload's format.
    pub format: Format,
    /// The encoded message.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Where a transaction's message goes on its participant's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnTo {
    /// A local actor.
    Actor {
        /// Its identity.
        identity: ActorId,
        /// Its id there.
        target: LocalActorId,
    },
    /// A service (the broker: a topic's subscribers there).
    Sink {
        /// The service's channel.
        channel: Channel,
        /// What it delivers to (a topic).
        key: String,
    },
}

impl TxnItem {
    /// Encodes a participant's part.
    pub fn encode_all(items: &[TxnItem]) -> Vec<u8> {
        postcard::to_allocvec(items).unwrap_or_default()
    }

    /// Decodes a participant's part.
    pub fn decode_all(bytes: &[u8]) -> Result<Vec<TxnItem>, FrameError> {
        postcard_exact(bytes).map_err(|e| match e {
            Inexact::Malformed(detail) => FrameError::Malformed(detail),
            Inexact::Trailing(n) => FrameError::Trailing(n),
        })
    }
}

/// Bytes that are not one delivery frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a frame.
    #[error("malformed delivery frame: {0}")]
    Malformed(String),
    /// A frame followed by more bytes.
    #[error("{0} trailing bytes after a delivery frame")]
    Trailing(usize),
}

impl<'a> DeliveryFrame<'a> {
    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Encodes the frame into a buffer made for about `size` bytes.
    pub fn encode_sized(&self, size: usize) -> Vec<u8> {
        postcard::to_extend(self, Vec::with_capacity(size + 32)).unwrap_or_default()
    }

    /// Decodes a frame, borrowing payloads from `bytes`; trailing bytes are an error.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        postcard_exact(bytes).map_err(|e| match e {
            Inexact::Malformed(detail) => FrameError::Malformed(detail),
            Inexact::Trailing(n) => FrameError::Trailing(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RemoteErrorKind;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let payload = [1u8, 2, 3];
        let frames = [
            DeliveryFrame::Messages {
                ordered: true,
                epoch: 1,
                confirmed: 5,
                items: vec![
                    (
                        7,
                        Some(Envelope {
                            id: MessageId(u128::MAX - 3),
                            to: To::Actor { identity: ActorId(42), target: LocalActorId(9) },
                            message: WireId(0xfeed),
                            format: Format::Postcard,
                            reply: true,
                            dedup: false,
                            causal: Some(Cow::Owned(vec![(NodeId(4), 7), (NodeId(u128::MAX), 1)])),
                            payload: &payload,
                        }),
                    ),
                    (8, None),
                    (
                        9,
                        Some(Envelope {
                            id: MessageId(1),
                            to: To::Sink { channel: Channel(7), key: "type:Price" },
                            message: WireId(3),
                            format: Format::Json,
                            reply: false,
                            dedup: true,
                            causal: None,
                            payload: &payload,
                        }),
                    ),
                ],
            },
            DeliveryFrame::Messages { ordered: false, epoch: 2, confirmed: 5, items: vec![(8, None)] },
            DeliveryFrame::Grant {
                ordered: false,
                epoch: 3,
                confirmed: 8,
                up_to: 300,
                outcomes: vec![
                    (6, Outcome::Reply(&payload)),
                    (
                        7,
                        Outcome::Moved(ActorLocation { node: "n2".into(), node_id: NodeId(3), actor: LocalActorId(1) }),
                    ),
                    (8, Outcome::Refused(RemoteError::new(RemoteErrorKind::UnknownActor, "gone"))),
                ],
            },
            DeliveryFrame::Resend { ordered: true, epoch: 1, from: 3 },
            DeliveryFrame::CausalAsk { identity: ActorId(9), up_to: 12 },
            DeliveryFrame::CausalAnswer { identity: ActorId(9), covers: 12, unsettled: vec![3, 11] },
            DeliveryFrame::Txn(TxnFrame::Vote { txn: 4, refused: Some("no such actor".into()) }),
            DeliveryFrame::Txn(TxnFrame::Prepare {
                txn: 5,
                message: TxnItem::encode_all(&[TxnItem {
                    id: MessageId(8),
                    to: TxnTo::Sink { channel: Channel(7), key: "type:Price".into() },
                    message: WireId(1),
                    format: Format::Postcard,
                    payload: vec![1, 2],
                }]),
            }),
        ];
        for frame in frames {
            let bytes = frame.encode();
            assert_eq!(DeliveryFrame::decode(&bytes), Ok(frame.clone()));
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(DeliveryFrame::decode(&longer), Err(FrameError::Trailing(1)));
            for cut in 0..bytes.len() {
                assert!(DeliveryFrame::decode(&bytes[..cut]).is_err(), "a frame cut at {cut} decodes");
            }
        }
        assert!(matches!(DeliveryFrame::decode(&[0xff; 12]), Err(FrameError::Malformed(_))));
    }
}
