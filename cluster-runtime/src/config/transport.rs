//! The transport section: frame sizes, link timing and queue bounds. The only copy of
//! their defaults.

use std::time::Duration;

use crate::config::validate::{dur, range};
use crate::error::ConfigError;

/// Limits and timing of the links between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Largest frame accepted from a peer once the handshake has completed (1 KiB ..= 1 GiB).
    pub max_frame_size: usize,
    /// How long a peer has to complete the handshake.
    pub handshake_timeout: Duration,
    /// A heartbeat is written on a link idle for this long.
    pub heartbeat_interval: Duration,
    /// A link silent for this long is closed (at least three heartbeat intervals).
    pub idle_timeout: Duration,
    /// Capacity of each link's outbound queue, in frames.
    pub outbound_queue: usize,
    /// Capacity of each link's outbound queue, in bytes (one larger frame fits an empty queue).
    pub outbound_queue_bytes: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 8 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            outbound_queue: 65_536,
            outbound_queue_bytes: 64 << 20,
        }
    }
}

impl TransportConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range("max_frame_size", self.max_frame_size, 1024, 1 << 30, "1 KiB ..= 1 GiB")?;
        range("outbound_queue", self.outbound_queue, 1, 1 << 24, "1 ..= 16 777 216 frames")?;
        range("outbound_queue_bytes", self.outbound_queue_bytes, 64 * 1024, 1 << 34, "64 KiB ..= 16 GiB")?;
        dur("handshake_timeout", self.handshake_timeout, "greater than zero")?;
        dur("heartbeat interval", self.heartbeat_interval, "greater than zero")?;
        // Heartbeats go out at most two intervals apart on an idle link.
        if self.idle_timeout < self.heartbeat_interval * 3 {
            return Err(ConfigError::OutOfRange {
                setting: "idle_timeout",
                value: format!("{:?}", self.idle_timeout),
                expected: "at least three heartbeat intervals",
            });
        }
        Ok(())
    }
}
