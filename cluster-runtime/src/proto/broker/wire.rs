//! The broker's frames (channel 7): subscription announcements and at-most-once publishes.

use serde::{Deserialize, Serialize};

use crate::format::{postcard_exact, Format, Inexact};
use crate::ids::WireId;
use crate::proto::broker::subscriptions::{FrameError, SubscriptionFrame};

/// A broker frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerFrame<'a> {
    /// About the sender's subscriptions.
    Subscriptions(SubscriptionFrame),
    /// A message published to `topic`, for the receiver's local subscribers.
    Publish {
        /// The topic.
        topic: &'a str,
        /// The message's type.
        message: WireId,
        /// The payload's format.
        format: Format,
        /// The encoded message.
        #[serde(borrow, with = "serde_bytes")]
        payload: &'a [u8],
    },
    /// Causal publishes to `topic`: which of yours did you send me last, of how many?
    CausalAsk {
        /// The topic.
        topic: &'a str,
    },
    /// Causal publishes to `topic`: the answer to [`BrokerFrame::CausalAsk`].
    CausalAnswer {
        /// The topic.
        topic: &'a str,
        /// The number of the last of the sender's publishes sent to the receiver (0: none).
        last_sent: u64,
        /// How many the sender published in all.
        count: u64,
    },
}

/// A causal publish as the broker sends it to a subscribing node (in a guaranteed,
/// ordered delivery to that node's broker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalEnvelope {
    /// The publishing node.
    pub from: crate::ids::NodeId,
    /// The publisher's clock for the topic when it published (its own entry counted).
    pub stamp: Vec<(crate::ids::NodeId, u64)>,
    /// The number of the publisher's previous causal publish of the topic to this node
    /// (0: none).
    pub prev: u64,
    /// The encoded message.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl CausalEnvelope {
    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes it; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        postcard_exact(bytes).map_err(|e| match e {
            Inexact::Malformed(detail) => FrameError::Malformed(detail),
            Inexact::Trailing(n) => FrameError::Trailing(n),
        })
    }
}

impl<'a> BrokerFrame<'a> {
    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes a frame, borrowing from `bytes`; trailing bytes are an error.
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

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let frames = [
            BrokerFrame::Subscriptions(SubscriptionFrame::Ask),
            BrokerFrame::Publish { topic: "prices", message: WireId(7), format: Format::Json, payload: b"{}" },
            BrokerFrame::CausalAsk { topic: "prices" },
            BrokerFrame::CausalAnswer { topic: "prices", last_sent: 12, count: 30 },
        ];
        for frame in frames {
            let bytes = frame.encode();
            assert_eq!(BrokerFrame::decode(&bytes), Ok(frame.clone()));
            for cut in 0..bytes.len() {
                assert!(BrokerFrame::decode(&bytes[..cut]).is_err(), "a frame cut at {cut} decodes");
            }
            let mut longer = bytes;
            longer.push(1);
            assert_eq!(BrokerFrame::decode(&longer), Err(FrameError::Trailing(1)));
        }
    }
}
