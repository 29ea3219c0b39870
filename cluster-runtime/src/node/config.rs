//! Node configuration: a builder that validates everything in [`ClusterConfigBuilder::build`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ConfigError;
use crate::node::discovery::{Resolver, ResolverHandle};
use crate::proto::membership::Profile;
use crate::transport::link::LinkSettings;
use crate::transport::network::{Network, NetworkHandle};

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

/// A validated node configuration. Build one with [`ClusterConfig::new`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) node_name: String,
    pub(crate) bind: SocketAddr,
    pub(crate) seed_nodes: Vec<String>,
    pub(crate) architecture: Architecture,
    pub(crate) discovery: DiscoveryMethod,
    pub(crate) link: LinkSettings,
    pub(crate) request_timeout: Duration,
    pub(crate) reconnect_base: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) network: NetworkHandle,
    pub(crate) seed: Option<u64>,
    pub(crate) profile: Profile,
    pub(crate) generation: Option<u64>,
    pub(crate) masters: Vec<String>,
    pub(crate) probe_interval: Duration,
    pub(crate) resource_interval: Option<Duration>,
    pub(crate) down_retention: Duration,
    pub(crate) resolver: ResolverHandle,
}

impl ClusterConfig {
    /// Starts a configuration with defaults: decentralized, static discovery, no seeds,
    /// 8 MiB frames, 5 s requests, 1 s heartbeats, 5 s idle timeout.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> ClusterConfigBuilder {
        ClusterConfigBuilder::default()
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The address the node binds (port 0 means "pick a free port").
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind
    }

    /// The seed nodes this node links to.
    pub fn seed_nodes(&self) -> &[String] {
        &self.seed_nodes
    }

    /// The configured architecture.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The configured discovery method.
    pub fn discovery(&self) -> &DiscoveryMethod {
        &self.discovery
    }

    /// The default deadline of an ask.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// This node's roles, capabilities and metadata.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The master nodes' names (centralized architecture).
    pub fn master_nodes(&self) -> &[String] {
        &self.masters
    }
}

/// Builder of a [`ClusterConfig`]; every setting is checked by [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct ClusterConfigBuilder {
    node_name: Option<String>,
    bind: Option<String>,
    seed_nodes: Vec<String>,
    architecture: Architecture,
    discovery: DiscoveryMethod,
    max_frame_size: usize,
    handshake_timeout: Duration,
    heartbeat_interval: Duration,
    idle_timeout: Duration,
    queue_capacity: usize,
    request_timeout: Duration,
    reconnect_base: Duration,
    reconnect_max: Duration,
    network: NetworkHandle,
    seed: Option<u64>,
    #[cfg(feature = "testkit")]
    faults: Option<crate::testkit::faults::NetworkFaults>,
    profile: Profile,
    generation: Option<u64>,
    masters: Vec<String>,
    probe_interval: Duration,
    resource_interval: Option<Duration>,
    down_retention: Duration,
    resolver: ResolverHandle,
}

impl Default for ClusterConfigBuilder {
    fn default() -> Self {
        Self {
            node_name: None,
            bind: None,
            seed_nodes: Vec::new(),
            architecture: Architecture::default(),
            discovery: DiscoveryMethod::default(),
            max_frame_size: 8 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            queue_capacity: 65_536,
            request_timeout: Duration::from_secs(5),
            reconnect_base: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            network: NetworkHandle::default(),
            seed: None,
            #[cfg(feature = "testkit")]
            faults: None,
            profile: Profile::default(),
            generation: None,
            masters: Vec::new(),
            probe_interval: Duration::from_secs(1),
            resource_interval: Some(Duration::from_secs(2)),
            down_retention: Duration::from_secs(30),
            resolver: ResolverHandle::default(),
        }
    }
}

impl ClusterConfigBuilder {
    /// The node's name, unique in the cluster and stable across restarts. Defaults to a
    /// generated `node-<hex>` name.
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// The `ip:port` to accept links on; port 0 picks a free port.
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = Some(addr.into());
        self
    }

    /// Nodes to link to at start (`host:port`), retried with backoff until they answer.
    pub fn seed_nodes<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.seed_nodes = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// The membership architecture.
    pub fn architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = architecture;
        self
    }

    /// The discovery method.
    pub fn discovery(mut self, discovery: DiscoveryMethod) -> Self {
        self.discovery = discovery;
        self
    }

    /// Largest frame accepted from an authenticated peer (1 KiB ..= 1 GiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// How long a peer has to complete the handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Heartbeat interval on idle links; links silent for the idle timeout are closed.
    pub fn heartbeat(mut self, interval: Duration, idle_timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.idle_timeout = idle_timeout;
        self
    }

    /// Capacity of each link's outbound queue, in frames.
    pub fn outbound_queue(mut self, frames: usize) -> Self {
        self.queue_capacity = frames;
        self
    }

    /// Default deadline of an ask (`send`); `send_timeout` overrides it per call.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Reconnect backoff: first delay and ceiling.
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.reconnect_base = base;
        self.reconnect_max = max;
        self
    }

    /// The network links run over; TCP by default. Tests plug in a simulated network.
    pub fn network(mut self, network: std::sync::Arc<dyn Network>) -> Self {
        self.network = NetworkHandle(network);
        self
    }

    /// Seeds every random choice of the node (node id, reconnect jitter), so a run can be
    /// reproduced. Unseeded nodes draw from the operating system.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Imposes the test's network conditions on this node's outgoing traffic.
    #[cfg(feature = "testkit")]
    pub fn network_faults(mut self, faults: crate::testkit::faults::NetworkFaults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Adds a role (e.g. `"frontend"`).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.profile.roles.push(role.into());
        self
    }

    /// Adds a capability (e.g. `"gpu"`).
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.profile.capabilities.push(capability.into());
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.profile.metadata.insert(key.into(), value.into());
        self
    }

    /// The incarnation generation; a restarted node must present a higher one than its
    /// previous run. Defaults to the start time in milliseconds since the Unix epoch.
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// The master nodes, by name (centralized architecture). A node whose name is listed
    /// is a master; list their addresses as seed nodes so workers can reach them.
    pub fn master_nodes<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.masters = names.into_iter().map(Into::into).collect();
        self
    }

    /// Failure detection period: the SWIM probe interval (decentralized) and the
    /// heartbeat interval workers report at (centralized). Default 1 s; detection of a
    /// crashed member takes about 6 to 8 periods.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// How often the node reports its resources to its peers (`None` disables reports).
    pub fn resource_interval(mut self, interval: Option<Duration>) -> Self {
        self.resource_interval = interval;
        self
    }

    /// How long a member that is down or left stays listed before it is removed.
    pub fn down_retention(mut self, retention: Duration) -> Self {
        self.down_retention = retention;
        self
    }

    /// The resolver used by [`DiscoveryMethod::Dns`]; the system resolver by default.
    pub fn resolver(mut self, resolver: std::sync::Arc<dyn Resolver>) -> Self {
        self.resolver = ResolverHandle(resolver);
        self
    }

    /// Validates the settings and returns the configuration.
    pub fn build(self) -> Result<ClusterConfig, ConfigError> {
        let node_name = match self.node_name {
            Some(n) => n,
            None => format!("node-{:08x}", self.seed.map_or_else(rand::random::<u32>, |s| s as u32)),
        };
        if !valid_name(&node_name) {
            return Err(ConfigError::InvalidNodeName(node_name));
        }
        let bind_text = self.bind.ok_or(ConfigError::MissingBind)?;
        let bind: SocketAddr = bind_text.parse().map_err(|_| ConfigError::InvalidBindAddress(bind_text.clone()))?;
        for seed in &self.seed_nodes {
            if !valid_host_port(seed) {
                return Err(ConfigError::InvalidSeed(seed.clone()));
            }
        }
        range("max_frame_size", self.max_frame_size, 1024, 1 << 30, "1 KiB ..= 1 GiB")?;
        range("outbound_queue", self.queue_capacity, 1, 1 << 24, "1 ..= 16 777 216 frames")?;
        dur("handshake_timeout", self.handshake_timeout, "greater than zero")?;
        dur("request_timeout", self.request_timeout, "greater than zero")?;
        dur("heartbeat interval", self.heartbeat_interval, "greater than zero")?;
        dur("reconnect_backoff base", self.reconnect_base, "greater than zero")?;
        // Heartbeats go out at most two intervals apart on an idle link.
        if self.idle_timeout < self.heartbeat_interval * 3 {
            return Err(ConfigError::OutOfRange {
                setting: "idle_timeout",
                value: format!("{:?}", self.idle_timeout),
                expected: "at least three heartbeat intervals",
            });
        }
        dur("probe_interval", self.probe_interval, "greater than zero")?;
        if let Some(r) = self.resource_interval {
            dur("resource_interval", r, "greater than zero")?;
        }
        for m in &self.masters {
            if !valid_name(m) {
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
        if let DiscoveryMethod::Dns { name, port } = &self.discovery {
            if name.is_empty() || *port == 0 {
                return Err(ConfigError::InvalidSeed(format!("{name}:{port}")));
            }
        }
        Ok(ClusterConfig {
            node_name,
            bind,
            seed_nodes: self.seed_nodes,
            architecture: self.architecture,
            discovery: self.discovery,
            link: LinkSettings {
                max_frame: self.max_frame_size,
                handshake_timeout: self.handshake_timeout,
                heartbeat_interval: self.heartbeat_interval,
                idle_timeout: self.idle_timeout,
                queue_capacity: self.queue_capacity,
                #[cfg(feature = "testkit")]
                faults: self.faults,
            },
            request_timeout: self.request_timeout,
            reconnect_base: self.reconnect_base,
            reconnect_max: self.reconnect_max,
            network: self.network,
            seed: self.seed,
            profile: self.profile,
            generation: self.generation,
            masters: self.masters,
            probe_interval: self.probe_interval,
            resource_interval: self.resource_interval,
            down_retention: self.down_retention,
            resolver: self.resolver,
        })
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

fn range(setting: &'static str, v: usize, lo: usize, hi: usize, expected: &'static str) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::OutOfRange { setting, value: v.to_string(), expected });
    }
    Ok(())
}

fn dur(setting: &'static str, d: Duration, expected: &'static str) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::OutOfRange { setting, value: format!("{d:?}"), expected });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_valid_config() {
        let c = ClusterConfig::new()
            .node_name("node-1")
            .bind("127.0.0.1:0")
            .seed_nodes(["127.0.0.1:7002", "node-3.cluster.local:7001"])
            .build()
            .expect("valid");
        assert_eq!(c.node_name(), "node-1");
        assert_eq!(c.seed_nodes().len(), 2);
    }

    #[test]
    fn rejects_each_invalid_setting_with_its_own_error() {
        let base = || ClusterConfig::new().node_name("n").bind("127.0.0.1:0");
        assert_eq!(ClusterConfig::new().node_name("n").build().expect_err("invalid"), ConfigError::MissingBind);
        assert!(matches!(base().node_name("").build(), Err(ConfigError::InvalidNodeName(_))));
        assert!(matches!(base().node_name("a b").build(), Err(ConfigError::InvalidNodeName(_))));
        assert!(matches!(base().bind("localhost").build(), Err(ConfigError::InvalidBindAddress(_))));
        assert!(matches!(base().seed_nodes(["nope"]).build(), Err(ConfigError::InvalidSeed(_))));
        assert!(matches!(base().seed_nodes(["h:0"]).build(), Err(ConfigError::InvalidSeed(_))));
        assert!(matches!(
            base().max_frame_size(10).build(),
            Err(ConfigError::OutOfRange { setting: "max_frame_size", .. })
        ));
        assert!(matches!(
            base().heartbeat(Duration::from_secs(2), Duration::from_secs(1)).build(),
            Err(ConfigError::OutOfRange { setting: "idle_timeout", .. })
        ));
        let msg = base().bind("nope").build().expect_err("invalid").to_string();
        assert!(msg.contains("nope") && msg.contains("ip:port"), "{msg}");
    }
}
