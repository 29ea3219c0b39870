//! The delivery service's section: reliable streams, de-duplication, re-routing.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::validate::{dur, range};
use crate::error::ConfigError;

/// How guaranteed messages (`tell_with` / `send_with` with at-least-once or stronger)
/// travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// How many messages a sender may have in flight on one stream beyond what this node
    /// confirmed (the window it grants).
    pub window: u64,
    /// How many a sender sends on a new stream before the receiver's first grant.
    pub initial_window: u64,
    /// Unconfirmed messages one stream keeps at most; sending more fails with
    /// `Backpressure` until some are confirmed.
    pub outbox_capacity: usize,
    /// Unconfirmed messages are sent again if nothing is confirmed for this long.
    pub resend_after: Duration,
    /// A receiver that misses a number asks for it again this often while it is missing.
    pub gap_resend_after: Duration,
    /// A receiver confirms at once when this many more messages were handled...
    pub ack_every: u64,
    /// ...and otherwise after at most this long.
    pub ack_delay: Duration,
    /// Exactly-once: how long a receiver remembers a message id (and an ask's reply).
    pub dedup_window: Duration,
    /// Exactly-once: how many ids a receiver remembers at most (the oldest go first).
    pub dedup_capacity: usize,
    /// A message whose target cannot be found (its node is gone and the directory does not
    /// know it yet, for example while it is being recovered) keeps being looked for this
    /// long before it fails.
    pub relocate_for: Duration,
    /// How often such a target is looked for again.
    pub relocate_every: Duration,
    /// A transaction whose participants have not all voted within this is aborted (unless
    /// the caller gives its own timeout).
    pub txn_timeout: Duration,
    /// A committed transaction's commit keeps being sent to participants that have not
    /// acknowledged it this long; a participant waits this long for a decision.
    pub txn_give_up: Duration,
    /// Keep guaranteed tells on disk in this file (a redb database, created if missing)
    /// until they are confirmed: a node restarted with the same file sends again what its
    /// previous run had not seen confirmed. `None` (the default): in memory only.
    pub outbox_path: Option<PathBuf>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            window: 1024,
            initial_window: 256,
            outbox_capacity: 200_000,
            resend_after: Duration::from_secs(1),
            gap_resend_after: Duration::from_millis(200),
            ack_every: 64,
            ack_delay: Duration::from_millis(5),
            dedup_window: Duration::from_secs(120),
            dedup_capacity: 1_000_000,
            relocate_for: Duration::from_secs(30),
            relocate_every: Duration::from_millis(250),
            outbox_path: None,
            txn_timeout: Duration::from_secs(5),
            txn_give_up: Duration::from_secs(60),
        }
    }
}

impl DeliveryConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range("delivery.window", self.window as usize, 1, 1 << 20, "1 to 1,048,576")?;
        range(
            "delivery.initial_window",
            self.initial_window as usize,
            1,
            self.window as usize,
            "1 to delivery.window",
        )?;
        range("delivery.outbox_capacity", self.outbox_capacity, 1, 100_000_000, "1 to 100,000,000")?;
        range("delivery.ack_every", self.ack_every as usize, 1, self.window as usize, "1 to delivery.window")?;
        range("delivery.dedup_capacity", self.dedup_capacity, 1, 100_000_000, "1 to 100,000,000")?;
        dur("delivery.resend_after", self.resend_after, "greater than zero")?;
        dur("delivery.gap_resend_after", self.gap_resend_after, "greater than zero")?;
        dur("delivery.ack_delay", self.ack_delay, "greater than zero")?;
        dur("delivery.dedup_window", self.dedup_window, "greater than zero")?;
        dur("delivery.relocate_for", self.relocate_for, "greater than zero")?;
        dur("delivery.relocate_every", self.relocate_every, "greater than zero")?;
        dur("delivery.txn_timeout", self.txn_timeout, "greater than zero")?;
        dur("delivery.txn_give_up", self.txn_give_up, "greater than zero")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_not() {
        assert_eq!(DeliveryConfig::default().validate(), Ok(()));
        let d = DeliveryConfig::default;
        assert!(DeliveryConfig { window: 0, ..d() }.validate().is_err());
        assert!(DeliveryConfig { initial_window: d().window + 1, ..d() }.validate().is_err());
        assert!(DeliveryConfig { resend_after: Duration::ZERO, ..d() }.validate().is_err());
        assert!(DeliveryConfig { dedup_capacity: 0, ..d() }.validate().is_err());
    }
}
