//! The membership section of the configuration (the membership service's own section):
//! architecture, masters and the failure detector's cadence. The only copy of their
//! defaults.

use std::time::Duration;

use crate::error::ConfigError;

/// How the cluster organizes membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Architecture {
    /// Every node is equal; membership spreads by gossip from seed nodes.
    #[default]
    Decentralized,
    /// Master node(s) own membership; workers register with them.
    Centralized,
}

/// Membership settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// The architecture.
    pub architecture: Architecture,
    /// The master nodes' names (centralized architecture).
    pub masters: Vec<String>,
    /// The SWIM probe interval (decentralized) and the interval workers report at
    /// (centralized); detection of a crashed member takes about 6 to 8 periods.
    pub probe_interval: Duration,
    /// How often a node reports its resources to its peers (`None` disables reports;
    /// workers always report every probe interval).
    pub resource_interval: Option<Duration>,
    /// How long a member that is down or left stays listed before it is removed.
    pub down_retention: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            architecture: Architecture::default(),
            masters: Vec::new(),
            probe_interval: Duration::from_secs(1),
            resource_interval: Some(Duration::from_secs(2)),
            down_retention: Duration::from_secs(30),
        }
    }
}

impl MembershipConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.probe_interval.is_zero() {
            return Err(ConfigError::OutOfRange {
                setting: "probe_interval",
                value: format!("{:?}", self.probe_interval),
                expected: "greater than zero",
            });
        }
        if self.resource_interval.is_some_and(|r| r.is_zero()) {
            return Err(ConfigError::OutOfRange {
                setting: "resource_interval",
                value: "0s".into(),
                expected: "greater than zero",
            });
        }
        for m in &self.masters {
            if !crate::proto::wire::handshake::valid_name(m) {
                return Err(ConfigError::InvalidNodeName(m.clone()));
            }
        }
        if self.architecture == Architecture::Centralized && self.masters.is_empty() {
            return Err(ConfigError::OutOfRange {
                setting: "master_nodes",
                value: "[]".into(),
                expected: "at least one master node name in the centralized architecture",
            });
        }
        Ok(())
    }
}
