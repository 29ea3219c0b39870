//! The migration section: how long a live migration may take, and how long the old node
//! forwards what is still sent there.

use std::time::Duration;

use crate::config::validate::dur;
use crate::error::ConfigError;

/// How live migration behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationConfig {
    /// The source gives up (and the actor keeps running there) if the target has not built
    /// the actor within this.
    pub timeout: Duration,
    /// After a move, the old node forwards the messages still sent there for this long;
    /// after it, they are refused and handles look the actor up again.
    pub grace: Duration,
    /// After a membership change, keyed activations placed by consistent hashing whose key
    /// now belongs to another node move there (off: they stay where they are).
    pub rebalance: bool,
    /// At most this many keyed activations start moving per `rebalance_interval`.
    pub rebalance_batch: usize,
    /// See `rebalance_batch`.
    pub rebalance_interval: Duration,
    /// Every node checks its keyed activations against the directory this often (and two
    /// rebalance intervals after every membership change): an activation the directory no
    /// longer names for its key yields to the one it names. Catches duplicates the
    /// directory's conflict notices missed while views were changing.
    pub verify_interval: Duration,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            rebalance: true,
            rebalance_batch: 64,
            rebalance_interval: Duration::from_secs(1),
            verify_interval: Duration::from_secs(30),
        }
    }
}

impl MigrationConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        dur("migration.timeout", self.timeout, "greater than zero")?;
        dur("migration.grace", self.grace, "greater than zero")?;
        dur("migration.rebalance_interval", self.rebalance_interval, "greater than zero")?;
        dur("migration.verify_interval", self.verify_interval, "greater than zero")?;
        crate::config::validate::range(
            "migration.rebalance_batch",
            self.rebalance_batch,
            1,
            1_000_000,
            "1 to 1,000,000",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeros_are_not() {
        assert_eq!(MigrationConfig::default().validate(), Ok(()));
        assert!(MigrationConfig { grace: Duration::ZERO, ..MigrationConfig::default() }.validate().is_err());
        let never = MigrationConfig { verify_interval: Duration::ZERO, ..MigrationConfig::default() };
        assert!(never.validate().is_err());
    }
}
