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
        /// The messages (in the compact form of [`items`]).
        #[serde(borrow, with = "items")]
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

/// The compact form of a [`DeliveryFrame::Messages`] frame's items: one byte string,
/// in which each item says in a flags byte what it shares with the envelope before it
/// (most messages in a frame go to the same actor, with the next id, as the same type),
/// so a message costs its payload and a few bytes rather than two 128-bit ids and a
/// dozen fields.
///
/// ```text
/// items    := count:varint item*
/// item     := flags:u8 seq:zigzag-varint(seq - previous seq)
///             [id:varint]          unless ID_NEXT (the previous envelope's id + 1)
///             [to]                 unless SAME_TO
///             [message:varint]     unless SAME_MESSAGE
///             [count:varint (node:varint n:varint)*]   if CAUSAL
///             payload-length:varint payload           if PRESENT (else nothing after seq)
/// to       := 0 identity:varint target:varint | 1 channel:varint key-length:varint key
/// ```
pub mod items {
    use std::borrow::Cow;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Envelope, To};
    use crate::format::Format;
    use crate::ids::{ActorId, LocalActorId, MessageId, NodeId, WireId};
    use crate::proto::delivery::outbox::Seq;
    use crate::proto::wire::channel::Channel;
    use crate::proto::wire::fast_path::put_varint as put;

    const PRESENT: u8 = 1;
    const ID_NEXT: u8 = 1 << 1;
    const SAME_TO: u8 = 1 << 2;
    const SAME_MESSAGE: u8 = 1 << 3;
    const JSON: u8 = 1 << 4;
    const REPLY: u8 = 1 << 5;
    const DEDUP: u8 = 1 << 6;
    const CAUSAL: u8 = 1 << 7;

    /// Writes `items` in the compact form.
    pub fn encode(items: &[(Seq, Option<Envelope<'_>>)], out: &mut Vec<u8>) {
        let mut encoder = Encoder::new();
        for (seq, envelope) in items {
            encoder.push(*seq, envelope.clone());
        }
        put(out, encoder.count);
        out.extend_from_slice(&encoder.body);
    }

    /// Writes items one at a time, for a frame filled up to a size: the service encodes
    /// each message straight from what it keeps, with no list of envelopes in between.
    #[derive(Debug, Default)]
    pub struct Encoder<'a> {
        body: Vec<u8>,
        count: u64,
        prev_seq: Seq,
        /// The previous envelope (its stamp left out): what the next may share.
        prev: Option<Envelope<'a>>,
    }

    impl<'a> Encoder<'a> {
        /// An encoder with nothing written.
        pub fn new() -> Self {
            Self::default()
        }

        /// The items written so far.
        pub fn count(&self) -> u64 {
            self.count
        }

        /// The bytes written so far.
        pub fn len(&self) -> usize {
            self.body.len()
        }

        /// Nothing written.
        pub fn is_empty(&self) -> bool {
            self.count == 0
        }

        /// Writes message `seq` (`None`: a skipped number).
        pub fn push(&mut self, seq: Seq, envelope: Option<Envelope<'a>>) {
            let out = &mut self.body;
            self.count += 1;
            let delta = seq.wrapping_sub(self.prev_seq) as i64;
            self.prev_seq = seq;
            let Some(e) = envelope else {
                out.push(0);
                put(out, zigzag(delta));
                return;
            };
            let prev = self.prev.as_ref();
            let mut flags = PRESENT;
            let id_next = prev.is_some_and(|p| p.id.0.wrapping_add(1) == e.id.0);
            let same_to = prev.is_some_and(|p| p.to == e.to);
            let same_message = prev.is_some_and(|p| p.message == e.message);
            flags |= if id_next { ID_NEXT } else { 0 };
            flags |= if same_to { SAME_TO } else { 0 };
            flags |= if same_message { SAME_MESSAGE } else { 0 };
            flags |= match e.format {
                Format::Postcard => 0,
                Format::Json => JSON,
            };
            flags |= if e.reply { REPLY } else { 0 };
            flags |= if e.dedup { DEDUP } else { 0 };
            flags |= if e.causal.is_some() { CAUSAL } else { 0 };
            out.push(flags);
            put(out, zigzag(delta));
            if !id_next {
                put128(out, e.id.0);
            }
            if !same_to {
                match &e.to {
                    To::Actor { identity, target } => {
                        out.push(0);
                        put128(out, identity.0);
                        put(out, target.0);
                    }
                    To::Sink { channel, key } => {
                        out.push(1);
                        put(out, u64::from(channel.0));
                        put(out, key.len() as u64);
                        out.extend_from_slice(key.as_bytes());
                    }
                }
            }
            if !same_message {
                put(out, e.message.0);
            }
            if let Some(stamp) = &e.causal {
                put(out, stamp.len() as u64);
                for (node, n) in stamp.iter() {
                    put128(out, node.0);
                    put(out, *n);
                }
            }
            put(out, e.payload.len() as u64);
            out.extend_from_slice(e.payload);
            self.prev = Some(Envelope { causal: None, ..e });
        }

        /// The [`DeliveryFrame::Messages`](super::DeliveryFrame::Messages) frame of what was
        /// written, byte for byte what serde writes for it (tested below); the encoder is
        /// empty again.
        pub fn frame(&mut self, ordered: bool, epoch: u32, confirmed: Seq) -> Vec<u8> {
            let mut count = Vec::with_capacity(10);
            put(&mut count, self.count);
            let mut out = Vec::with_capacity(self.body.len() + 40);
            put(&mut out, MESSAGES_VARIANT);
            out.push(u8::from(ordered));
            put(&mut out, u64::from(epoch));
            put(&mut out, confirmed);
            put(&mut out, (count.len() + self.body.len()) as u64);
            out.extend_from_slice(&count);
            out.extend_from_slice(&self.body);
            self.body.clear();
            self.count = 0;
            self.prev_seq = 0;
            self.prev = None;
            out
        }
    }

    /// The index serde gives [`DeliveryFrame::Messages`](super::DeliveryFrame::Messages):
    /// its place among the variants (checked by a test).
    const MESSAGES_VARIANT: u64 = 0;

    /// Reads items in the compact form, borrowing payloads and keys from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Vec<(Seq, Option<Envelope<'_>>)>, String> {
        let mut r = Reader(bytes);
        let count = r.varint()?;
        // Every item takes two bytes at least: a count past that is a lie.
        if count > bytes.len() as u64 / 2 {
            return Err(format!("{count} items in {} bytes", bytes.len()));
        }
        let mut items = Vec::with_capacity(count as usize);
        let mut prev_seq: Seq = 0;
        // What the next envelope may share: the previous one's id, destination and type.
        let mut prev: Option<(MessageId, To<'_>, WireId)> = None;
        for _ in 0..count {
            let flags = r.byte()?;
            let delta = unzigzag(r.varint()?);
            let seq = prev_seq.wrapping_add(delta as u64);
            prev_seq = seq;
            if flags & PRESENT == 0 {
                if flags != 0 {
                    return Err(format!("flags {flags:#x} on a skipped number"));
                }
                items.push((seq, None));
                continue;
            }
            let shared = |what: &str| match &prev {
                Some(p) => Ok(p),
                None => Err(format!("the first message says its {what} is the previous one's")),
            };
            let id = if flags & ID_NEXT != 0 {
                MessageId(shared("id")?.0 .0.wrapping_add(1))
            } else {
                MessageId(r.varint128()?)
            };
            let to = if flags & SAME_TO != 0 {
                shared("destination")?.1.clone()
            } else {
                match r.byte()? {
                    0 => To::Actor { identity: ActorId(r.varint128()?), target: LocalActorId(r.varint()?) },
                    1 => {
                        let channel = u16::try_from(r.varint()?).map_err(|_| "a channel past u16".to_owned())?;
                        let len = r.len()?;
                        let key = std::str::from_utf8(r.take(len)?).map_err(|e| format!("a sink key: {e}"))?;
                        To::Sink { channel: Channel(channel), key }
                    }
                    tag => return Err(format!("unknown destination tag {tag}")),
                }
            };
            let message = if flags & SAME_MESSAGE != 0 { shared("type")?.2 } else { WireId(r.varint()?) };
            let causal = if flags & CAUSAL != 0 {
                let n = r.varint()?;
                // Each entry takes two bytes at least.
                if n > r.0.len() as u64 / 2 {
                    return Err(format!("a stamp of {n} entries in {} bytes", r.0.len()));
                }
                let mut stamp = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    stamp.push((NodeId(r.varint128()?), r.varint()?));
                }
                Some(Cow::Owned(stamp))
            } else {
                None
            };
            let len = r.len()?;
            let payload = r.take(len)?;
            let format = if flags & JSON != 0 { Format::Json } else { Format::Postcard };
            let e = Envelope {
                id,
                to,
                message,
                format,
                reply: flags & REPLY != 0,
                dedup: flags & DEDUP != 0,
                causal,
                payload,
            };
            prev = Some((e.id, e.to.clone(), e.message));
            items.push((seq, Some(e)));
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the last item", r.0.len()));
        }
        Ok(items)
    }

    /// Serde's side of [`encode`]: one byte string.
    pub fn serialize<S: Serializer>(items: &[(Seq, Option<Envelope<'_>>)], s: S) -> Result<S::Ok, S::Error> {
        let size: usize = items.iter().map(|(_, e)| e.as_ref().map_or(2, |e| e.payload.len() + 8)).sum();
        let mut out = Vec::with_capacity(size + 48);
        encode(items, &mut out);
        s.serialize_bytes(&out)
    }

    /// Serde's side of [`decode`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Seq, Option<Envelope<'de>>)>, D::Error> {
        let bytes = <&'de [u8]>::deserialize(d)?;
        decode(bytes).map_err(D::Error::custom)
    }

    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    fn put128(out: &mut Vec<u8>, mut v: u128) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A cursor over the items' bytes; every read is checked.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn byte(&mut self) -> Result<u8, String> {
            let (&b, rest) = self.0.split_first().ok_or("the items end early")?;
            self.0 = rest;
            Ok(b)
        }

        fn varint128(&mut self) -> Result<u128, String> {
            let mut v = 0u128;
            for shift in (0..128).step_by(7) {
                let b = self.byte()?;
                let bits = u128::from(b & 0x7f);
                if shift == 126 && bits > 3 {
                    return Err("a varint past 128 bits".into());
                }
                v |= bits << shift;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err("a varint past 128 bits".into())
        }

        fn varint(&mut self) -> Result<u64, String> {
            u64::try_from(self.varint128()?).map_err(|_| "a varint past 64 bits".to_owned())
        }

        fn len(&mut self) -> Result<usize, String> {
            let n = self.varint()?;
            usize::try_from(n)
                .ok()
                .filter(|n| *n <= self.0.len())
                .ok_or_else(|| format!("a length of {n} past the end"))
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if n > self.0.len() {
                return Err(format!("{n} bytes past the end"));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
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

    fn run(n: u64, first_id: u128) -> Vec<(Seq, Option<Envelope<'static>>)> {
        (0..n)
            .map(|i| {
                let e = Envelope {
                    id: MessageId(first_id.wrapping_add(u128::from(i))),
                    to: To::Actor { identity: ActorId(u128::MAX / 3), target: LocalActorId(77) },
                    message: WireId(0x1234_5678_9abc_def0),
                    format: Format::Postcard,
                    reply: false,
                    dedup: false,
                    causal: None,
                    payload: b"0123456789abcdef0123456789abcdef",
                };
                (1000 + i, Some(e))
            })
            .collect()
    }

    #[test]
    fn a_run_of_messages_to_one_actor_costs_its_payloads_and_a_few_bytes_each() {
        let items = run(100, u128::MAX - 10);
        let mut out = Vec::new();
        items::encode(&items, &mut out);
        // 32 payload bytes, its length, flags and the number step: 35 a message past the first.
        assert!(out.len() < 100 * 35 + 60, "{} bytes", out.len());
        assert_eq!(items::decode(&out), Ok(items));
        // Numbers out of order (a resend among new messages) and skipped numbers.
        let mut mixed = run(3, 5);
        mixed.push((2, None));
        mixed.extend(run(2, 4));
        mixed[3].0 = 1;
        let mut out = Vec::new();
        items::encode(&mixed, &mut out);
        assert_eq!(items::decode(&out), Ok(mixed));
    }

    #[test]
    fn the_encoder_writes_the_frame_serde_writes() {
        let mut items = run(5, 9);
        items.push((2000, None));
        items.extend(run(2, u128::MAX));
        let mut encoder = items::Encoder::new();
        for (seq, e) in &items {
            encoder.push(*seq, e.clone());
        }
        assert_eq!(encoder.count(), 8);
        let frame = DeliveryFrame::Messages { ordered: true, epoch: 300, confirmed: 999, items };
        assert_eq!(encoder.frame(true, 300, 999), frame.encode());
        assert!(encoder.is_empty());
        assert_eq!(
            encoder.frame(false, 1, 0),
            DeliveryFrame::Messages { ordered: false, epoch: 1, confirmed: 0, items: vec![] }.encode()
        );
    }

    #[test]
    fn compact_items_that_lie_are_refused() {
        let refused = |bytes: &[u8]| items::decode(bytes).expect_err("decoded");
        // The first message cannot share anything with one before it.
        for flags in [0b011u8, 0b101, 0b1001] {
            let e = refused(&[1, flags, 2, 1, 0, 9, 0]);
            assert!(e.contains("previous"), "{e}");
        }
        // More items than bytes, a skipped number with flags, an unknown destination, a
        // payload past the end, bytes after the last item, an overlong varint.
        assert!(refused(&[200, 0, 2]).contains("items"));
        assert!(refused(&[1, 0b100_0000, 2]).contains("skipped"));
        assert!(refused(&[1, 1, 2, 5, 7, 0]).contains("tag"));
        assert!(refused(&[1, 1, 2, 5, 0, 1, 1, 9, 40, 1]).contains("past the end"));
        assert!(refused(&[1, 0, 2, 0]).contains("after the last"));
        assert!(refused(&[
            1, 1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0x7f
        ])
        .contains("128 bits"));
    }
}
