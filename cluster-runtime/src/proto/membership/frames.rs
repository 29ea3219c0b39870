//! The membership service's frames, carried in `Frame::Service` on
//! [`Channel::MEMBERSHIP`](crate::proto::wire::channel::Channel::MEMBERSHIP).

use serde::{Deserialize, Serialize};

use crate::format::{postcard_exact, Inexact};

use crate::proto::membership::table::{Member, ResourceReport};

/// The version of these frames this build speaks, announced in the hello.
pub const VERSION: u16 = 1;

/// One membership frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipFrame<'a> {
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
}

/// A membership frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipFrameError {
    /// The bytes are not a membership frame.
    #[error("malformed membership frame: {0}")]
    Malformed(String),
    /// A valid frame was followed by extra bytes.
    #[error("malformed membership frame: {0} trailing bytes")]
    TrailingBytes(usize),
}

impl MembershipFrame<'_> {
    /// Encodes the frame (the body of a service frame).
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec fails only if serde reports an error, which these types never do.
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

/// Decodes a service frame body, rejecting trailing bytes.
pub fn decode(body: &[u8]) -> Result<MembershipFrame<'_>, MembershipFrameError> {
    postcard_exact(body).map_err(|e| match e {
        Inexact::Malformed(e) => MembershipFrameError::Malformed(e),
        Inexact::Trailing(n) => MembershipFrameError::TrailingBytes(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        for f in [
            MembershipFrame::Swim(&[1, 2, 3]),
            MembershipFrame::Resources(ResourceReport {
                cpu_millicores: 1,
                memory_bytes: 2,
                actor_count: 3,
                in_flight: 4,
            }),
            MembershipFrame::Leaving,
            MembershipFrame::View { version: 9, members: vec![] },
        ] {
            assert_eq!(decode(&f.encode()), Ok(f));
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[250, 1]).is_err());
        let mut b = MembershipFrame::Leaving.encode();
        b.push(0);
        assert_eq!(decode(&b), Err(MembershipFrameError::TrailingBytes(1)));
    }
}
