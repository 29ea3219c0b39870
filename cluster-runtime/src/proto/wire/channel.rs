//! Service channels: the number that routes a [`Frame::Service`](super::frame::Frame::Service)
//! to the service that decodes it.
//!
//! Numbers are fixed forever once assigned; a node that receives a frame on a channel it
//! does not serve logs it and drops it, so services can be added without breaking peers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A service's channel number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Channel(pub u16);

impl Channel {
    /// Membership and failure detection.
    pub const MEMBERSHIP: Channel = Channel(1);
    /// The cluster registry (the directory of named actors and actor locations).
    pub const REGISTRY: Channel = Channel(2);
    /// Placement: a centralized worker asks a master where an actor goes.
    pub const PLACEMENT: Channel = Channel(3);
    /// Live migration: the handshake between an actor's old and new node.
    pub const MIGRATION: Channel = Channel(4);
    /// Recovery: snapshots of actors with a recovery policy, kept on other nodes.
    pub const RECOVERY: Channel = Channel(5);
    /// Guaranteed delivery: reliable streams between nodes.
    pub const DELIVERY: Channel = Channel(6);
    /// The distributed broker: subscriptions and publishes.
    pub const BROKER: Channel = Channel(7);
    // Assigned as the services land: 8 raft, 9 security.
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A service a node speaks, announced in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVersion {
    /// The service's channel.
    pub channel: Channel,
    /// The version of the service's frames the node speaks.
    pub version: u16,
}
