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
