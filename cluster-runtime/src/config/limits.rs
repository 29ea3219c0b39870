//! The limits section: what one peer (or the network before a handshake) can make this
//! node hold. Past each limit the node refuses with a clear error and a log line, counts
//! the refusal, and keeps serving everyone else.

use crate::error::ConfigError;
use crate::proto::flow::FlowWindow;
use crate::proto::wire::frame::{DEFAULT_FLOW_WINDOW, DEFAULT_LINK_WINDOW};

/// Limits a peer cannot exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Connections that have not completed their handshake, from everyone together; more
    /// are closed at once.
    pub pending_handshakes: usize,
    /// Connections that have not completed their handshake from one IP address.
    pub pending_handshakes_per_addr: usize,
    /// Asks from one peer being handled at once; more get an `Overloaded` error reply.
    pub inbound_asks_per_peer: usize,
    /// Bytes of asks from one peer being handled at once; more get an `Overloaded` error.
    pub inbound_ask_bytes_per_peer: usize,
    /// Actors one peer may have alive on this node; more spawns get an `Overloaded` error.
    pub spawned_per_peer: usize,
    /// Bytes per second one peer may send; above it the link stops reading for a while,
    /// so the sender's queues fill and it slows down (`None`: no limit).
    pub inbound_bytes_per_sec: Option<u64>,
    /// Flow control: bytes of tells one link may have waiting in one actor's mailbox; the
    /// sender waits for credit beyond it (one message may overdraw it).
    pub actor_window_bytes: u64,
    /// Flow control: tells one link may have waiting in one actor's mailbox.
    pub actor_window_msgs: u64,
    /// Flow control: bytes of tells one link may have waiting in all mailboxes together.
    pub link_window_bytes: u64,
    /// Flow control: tells one link may have waiting in all mailboxes together.
    pub link_window_msgs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            pending_handshakes: 256,
            pending_handshakes_per_addr: 32,
            inbound_asks_per_peer: 8192,
            inbound_ask_bytes_per_peer: 16 << 20,
            spawned_per_peer: 10_000,
            inbound_bytes_per_sec: Some(1 << 30),
            actor_window_bytes: DEFAULT_FLOW_WINDOW.bytes,
            actor_window_msgs: DEFAULT_FLOW_WINDOW.msgs,
            link_window_bytes: DEFAULT_LINK_WINDOW.bytes,
            link_window_msgs: DEFAULT_LINK_WINDOW.msgs,
        }
    }
}

impl LimitsConfig {
    /// The flow-control window per link and actor.
    pub fn actor_window(&self) -> FlowWindow {
        FlowWindow { bytes: self.actor_window_bytes, msgs: self.actor_window_msgs }
    }

    /// The flow-control window per link, over all actors.
    pub fn link_window(&self) -> FlowWindow {
        FlowWindow { bytes: self.link_window_bytes, msgs: self.link_window_msgs }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |setting: &'static str, v: usize| {
            if v == 0 {
                Err(ConfigError::OutOfRange { setting, value: "0".into(), expected: "at least 1" })
            } else {
                Ok(())
            }
        };
        positive("limits.pending_handshakes", self.pending_handshakes)?;
        positive("limits.pending_handshakes_per_addr", self.pending_handshakes_per_addr)?;
        positive("limits.inbound_asks_per_peer", self.inbound_asks_per_peer)?;
        positive("limits.inbound_ask_bytes_per_peer", self.inbound_ask_bytes_per_peer)?;
        positive("limits.spawned_per_peer", self.spawned_per_peer)?;
        if self.link_window_bytes < self.actor_window_bytes || self.link_window_msgs < self.actor_window_msgs {
            return Err(ConfigError::OutOfRange {
                setting: "limits.link_window_bytes / link_window_msgs",
                value: format!("{} bytes, {} messages", self.link_window_bytes, self.link_window_msgs),
                expected: "at least the actor window",
            });
        }
        if self.actor_window_bytes < 1024 || self.actor_window_msgs < 2 {
            return Err(ConfigError::OutOfRange {
                setting: "limits.actor_window_bytes / actor_window_msgs",
                value: format!("{} bytes, {} messages", self.actor_window_bytes, self.actor_window_msgs),
                expected: "at least 1 KiB and 2 messages",
            });
        }
        if self.inbound_bytes_per_sec.is_some_and(|r| r < 64 * 1024) {
            return Err(ConfigError::OutOfRange {
                setting: "limits.inbound_bytes_per_sec",
                value: format!("{:?}", self.inbound_bytes_per_sec),
                expected: "at least 64 KiB per second, or no limit",
            });
        }
        Ok(())
    }
}
