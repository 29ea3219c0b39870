//! The registry section: the cluster directory's timings.

use std::time::Duration;

use crate::config::validate::{dur, range};
use crate::error::ConfigError;

/// How the cluster directory behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryConfig {
    /// A directory request not answered within this is sent again (to the owner of the
    /// moment; requests are idempotent).
    pub retry: Duration,
    /// After an owner answered that its membership view differs, the wait before asking again.
    pub view_mismatch_backoff: Duration,
    /// After a membership change, an owner waits at most this long for every host to send
    /// its records before it answers from what it has.
    pub rebuild_timeout: Duration,
    /// Clocks of different nodes may differ by this much: registrations closer in time than
    /// this are ordered by holder, not by clock, when two sides of a partition conflict.
    pub clock_drift: Duration,
    /// Records per sync frame when a host sends its records to an owner.
    pub sync_batch: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            retry: Duration::from_millis(500),
            view_mismatch_backoff: Duration::from_millis(50),
            rebuild_timeout: Duration::from_secs(2),
            clock_drift: Duration::from_millis(500),
            sync_batch: 1_000,
        }
    }
}

impl RegistryConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        dur("registry.retry", self.retry, "greater than zero")?;
        dur("registry.view_mismatch_backoff", self.view_mismatch_backoff, "greater than zero")?;
        dur("registry.rebuild_timeout", self.rebuild_timeout, "greater than zero")?;
        range("registry.sync_batch", self.sync_batch, 1, 100_000, "1 to 100,000 records")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeros_are_not() {
        assert_eq!(RegistryConfig::default().validate(), Ok(()));
        let c = RegistryConfig { sync_batch: 0, ..RegistryConfig::default() };
        assert!(c.validate().is_err());
        let c = RegistryConfig { retry: Duration::ZERO, ..RegistryConfig::default() };
        assert!(c.validate().is_err());
    }
}
