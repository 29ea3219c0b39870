//! `ProtocolError`: a peer broke the protocol, so the link to it can no longer be trusted
//! and is closed.

use crate::ids::RequestId;
use crate::proto::wire::frame::FrameError;

/// A peer broke the protocol: the link to it can no longer be trusted and is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame that is valid on the wire but not at this point of the link's life.
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// The peer sent an actor more tells than its flow-control window allows.
    #[error(transparent)]
    Flow(#[from] crate::proto::flow::FlowViolation),
    /// A reply names a request this node sent to another peer.
    #[error("reply to request {0} that was sent to another node")]
    ForeignReply(RequestId),
}
