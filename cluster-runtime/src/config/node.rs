//! The node section: identity, where to listen, whom to contact first, request deadlines
//! and reconnect backoff.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::validate::{dur, valid_host_port, valid_name};
use crate::error::ConfigError;
use crate::proto::membership::Profile;

/// How a node finds the nodes it first contacts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DiscoveryMethod {
    /// The seed nodes are the complete, fixed list of members.
    #[default]
    Static,
    /// Join through the seed nodes and learn the others by gossip.
    Gossip,
    /// Resolve `name` periodically (as a Kubernetes headless service resolves to every
    /// pod) and contact every address found, on `port`.
    Dns {
        /// The name to resolve.
        name: String,
        /// The port the nodes listen on.
        port: u16,
    },
}

/// Identity and contact settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster and stable across restarts.
    pub name: String,
    /// The address to accept links on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Nodes to link to at start (`host:port`), retried with backoff until they answer.
    pub seed_nodes: Vec<String>,
    /// How the first contacts are found.
    pub discovery: DiscoveryMethod,
    /// Roles, capabilities and metadata.
    pub profile: Profile,
    /// The incarnation generation (start time in milliseconds when unset).
    pub generation: Option<u64>,
    /// Default deadline of an ask.
    pub request_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_base: Duration,
    /// Ceiling of the reconnect delay.
    pub reconnect_max: Duration,
}

impl NodeConfig {
    /// Default deadline of an ask.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default first reconnect delay.
    pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(100);
    /// Default ceiling of the reconnect delay.
    pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_name(&self.name) {
            return Err(ConfigError::InvalidNodeName(self.name.clone()));
        }
        for seed in &self.seed_nodes {
            if !valid_host_port(seed) {
                return Err(ConfigError::InvalidSeed(seed.clone()));
            }
        }
        dur("request_timeout", self.request_timeout, "greater than zero")?;
        dur("reconnect_backoff base", self.reconnect_base, "greater than zero")?;
        if let DiscoveryMethod::Dns { name, port } = &self.discovery {
            if name.is_empty() || *port == 0 {
                return Err(ConfigError::InvalidSeed(format!("{name}:{port}")));
            }
        }
        Ok(())
    }
}
