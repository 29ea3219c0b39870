//! Node configuration, by section: [`NodeConfig`] (identity and contacts),
//! [`TransportConfig`] (links), [`MembershipConfig`] (the membership service's section) and
//! [`Hooks`] (what tests plug in). Each section validates itself and holds the only copy
//! of its defaults; [`ClusterConfigBuilder`] composes them and keeps the flat shortcuts.

pub mod delivery;
pub mod hooks;
pub mod limits;
pub mod membership;
pub mod migration;
pub mod node;
pub mod placement;
pub mod registry;
pub mod transport;
pub(crate) mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use delivery::DeliveryConfig;
pub use hooks::Hooks;
pub use limits::LimitsConfig;
pub use membership::{Architecture, MembershipConfig};
pub use migration::MigrationConfig;
pub use node::{DiscoveryMethod, NodeConfig};
pub use placement::{PlacementConfig, PlacementPolicy};
pub use registry::RegistryConfig;
pub use transport::TransportConfig;

use crate::error::ConfigError;
use crate::ids::NodeId;
use crate::proto::membership::Profile;
use crate::proto::wire::channel::{Channel, ServiceVersion};
use crate::proto::wire::frame::{self, Frame, Hello};
use crate::transport::codec::HANDSHAKE_MAX_FRAME;
use crate::transport::network::Network;
use crate::transport::resolver::Resolver;
use crate::transport::shaper::Shaper;

/// A validated node configuration. Build one with [`ClusterConfig::new`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    node: NodeConfig,
    transport: TransportConfig,
    limits: LimitsConfig,
    membership: MembershipConfig,
    placement: PlacementConfig,
    registry: RegistryConfig,
    migration: MigrationConfig,
    delivery: DeliveryConfig,
    hooks: Hooks,
}

impl ClusterConfig {
    /// Starts a configuration with defaults: decentralized, static discovery, no seeds,
    /// 8 MiB frames, 5 s requests, 1 s heartbeats, 5 s idle timeout.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> ClusterConfigBuilder {
        ClusterConfigBuilder::default()
    }

    /// The node section.
    pub fn node(&self) -> &NodeConfig {
        &self.node
    }

    /// The transport section.
    pub fn transport(&self) -> &TransportConfig {
        &self.transport
    }

    /// The limits section.
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }

    /// The membership section.
    pub fn membership(&self) -> &MembershipConfig {
        &self.membership
    }

    /// The placement section.
    pub fn placement(&self) -> &PlacementConfig {
        &self.placement
    }

    /// The registry section.
    pub fn registry(&self) -> &RegistryConfig {
        &self.registry
    }

    /// The migration section.
    pub fn migration(&self) -> &MigrationConfig {
        &self.migration
    }

    /// The delivery section.
    pub fn delivery(&self) -> &DeliveryConfig {
        &self.delivery
    }

    /// The hooks.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node.name
    }

    /// The address the node binds (port 0 means "pick a free port").
    pub fn bind_addr(&self) -> SocketAddr {
        self.node.bind
    }

    /// The seed nodes this node links to.
    pub fn seed_nodes(&self) -> &[String] {
        &self.node.seed_nodes
    }

    /// The configured architecture.
    pub fn architecture(&self) -> Architecture {
        self.membership.architecture
    }

    /// The configured discovery method.
    pub fn discovery(&self) -> &DiscoveryMethod {
        &self.node.discovery
    }

    /// The default deadline of an ask.
    pub fn request_timeout(&self) -> Duration {
        self.node.request_timeout
    }

    /// This node's roles, capabilities and metadata.
    pub fn profile(&self) -> &Profile {
        &self.node.profile
    }

    /// The master nodes' names (centralized architecture).
    pub fn master_nodes(&self) -> &[String] {
        &self.membership.masters
    }
}

/// Fails if the largest hello this node could send (its longest possible cluster name,
/// id, address, generation and a full list of services) exceeds what peers accept before
/// the handshake, naming the largest part of it.
fn check_hello_size(node: &NodeConfig) -> Result<(), ConfigError> {
    let name_port = format!("{}:65535", node.name);
    let bind = node.bind.to_string();
    let addr = if name_port.len() > bind.len() { name_port } else { bind };
    let mut hello = Hello::new("c".repeat(64), NodeId(u128::MAX), node.name.clone(), addr);
    hello.generation = u64::MAX;
    hello.max_frame = u32::MAX;
    hello.profile = node.profile.clone();
    hello.services = vec![ServiceVersion { channel: Channel(u16::MAX), version: u16::MAX }; 32];
    let size = frame::encode(&Frame::Hello(Box::new(hello))).map(|b| frame::body_len(&b)).unwrap_or(usize::MAX);
    if size <= HANDSHAKE_MAX_FRAME {
        return Ok(());
    }
    let parts: [(&'static str, usize); 4] = [
        ("profile.metadata", encoded_size(&node.profile.metadata)),
        ("profile.roles", encoded_size(&node.profile.roles)),
        ("profile.capabilities", encoded_size(&node.profile.capabilities)),
        ("node_name", node.name.len()),
    ];
    let field = parts.iter().max_by_key(|p| p.1).map_or("profile", |p| p.0);
    Err(ConfigError::HelloTooLarge { field, size, max: HANDSHAKE_MAX_FRAME })
}

/// The postcard size of a value.
fn encoded_size<T: serde::Serialize>(value: &T) -> usize {
    postcard::to_stdvec(value).map_or(usize::MAX, |v| v.len())
}

/// Builder of a [`ClusterConfig`]; every setting is checked by [`build`](Self::build).
#[derive(Debug, Clone)]
pub struct ClusterConfigBuilder {
    node_name: Option<String>,
    bind: Option<String>,
    seed_nodes: Vec<String>,
    discovery: DiscoveryMethod,
    profile: Profile,
    generation: Option<u64>,
    request_timeout: Duration,
    reconnect_base: Duration,
    reconnect_max: Duration,
    transport: TransportConfig,
    limits: LimitsConfig,
    membership: MembershipConfig,
    placement: PlacementConfig,
    registry: RegistryConfig,
    migration: MigrationConfig,
    delivery: DeliveryConfig,
    hooks: Hooks,
}

impl Default for ClusterConfigBuilder {
    fn default() -> Self {
        Self {
            node_name: None,
            bind: None,
            seed_nodes: Vec::new(),
            discovery: DiscoveryMethod::default(),
            profile: Profile::default(),
            generation: None,
            request_timeout: NodeConfig::DEFAULT_REQUEST_TIMEOUT,
            reconnect_base: NodeConfig::DEFAULT_RECONNECT_BASE,
            reconnect_max: NodeConfig::DEFAULT_RECONNECT_MAX,
            transport: TransportConfig::default(),
            limits: LimitsConfig::default(),
            membership: MembershipConfig::default(),
            placement: PlacementConfig::default(),
            registry: RegistryConfig::default(),
            migration: MigrationConfig::default(),
            delivery: DeliveryConfig::default(),
            hooks: Hooks::default(),
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
        self.membership.architecture = architecture;
        self
    }

    /// The discovery method.
    pub fn discovery(mut self, discovery: DiscoveryMethod) -> Self {
        self.discovery = discovery;
        self
    }

    /// Largest frame accepted from an authenticated peer (1 KiB ..= 1 GiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.transport.max_frame_size = bytes;
        self
    }

    /// How long a peer has to complete the handshake.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.transport.handshake_timeout = timeout;
        self
    }

    /// Heartbeat interval on idle links; links silent for the idle timeout are closed.
    pub fn heartbeat(mut self, interval: Duration, idle_timeout: Duration) -> Self {
        self.transport.heartbeat_interval = interval;
        self.transport.idle_timeout = idle_timeout;
        self
    }

    /// Capacity of each link's outbound queue, in frames.
    pub fn outbound_queue(mut self, frames: usize) -> Self {
        self.transport.outbound_queue = frames;
        self
    }

    /// The whole transport section.
    pub fn transport(mut self, transport: TransportConfig) -> Self {
        self.transport = transport;
        self
    }

    /// How guaranteed messages travel.
    pub fn delivery(mut self, delivery: DeliveryConfig) -> Self {
        self.delivery = delivery;
        self
    }

    /// Live migration's timings.
    pub fn migration(mut self, migration: MigrationConfig) -> Self {
        self.migration = migration;
        self
    }

    /// The cluster directory's timings.
    pub fn registry(mut self, registry: RegistryConfig) -> Self {
        self.registry = registry;
        self
    }

    /// The limits a peer cannot exceed.
    pub fn limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
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
    pub fn network(mut self, network: Arc<dyn Network>) -> Self {
        self.hooks = self.hooks.with_network(network);
        self
    }

    /// Seeds every random choice of the node (node id, reconnect jitter, SWIM), so a run
    /// can be reproduced. Unseeded nodes draw from the operating system.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.hooks.rng_seed = Some(seed);
        self
    }

    /// Decides the fate of every frame this node writes (the test kit's `NetworkFaults`
    /// imposes latency, loss, partitions...).
    pub fn frame_shaper(mut self, shaper: Arc<dyn Shaper>) -> Self {
        self.hooks = self.hooks.with_shaper(shaper);
        self
    }

    /// All hooks at once.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
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
        self.membership.masters = names.into_iter().map(Into::into).collect();
        self
    }

    /// Failure detection period: the SWIM probe interval (decentralized) and the
    /// heartbeat interval workers report at (centralized). Default 1 s; detection of a
    /// crashed member takes about 6 to 8 periods.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.membership.probe_interval = interval;
        self
    }

    /// How often the node reports its resources to its peers (`None` disables reports).
    pub fn resource_interval(mut self, interval: Option<Duration>) -> Self {
        self.membership.resource_interval = interval;
        self
    }

    /// How long a member that is down or left stays listed before it is removed.
    pub fn down_retention(mut self, retention: Duration) -> Self {
        self.membership.down_retention = retention;
        self
    }

    /// Registers a user-defined placement policy under `name`, for
    /// `Placement::Custom(name)` and `#[distributed_actor(placement = "custom:<name>")]`.
    pub fn placement_policy(mut self, name: impl Into<String>, policy: Arc<dyn PlacementPolicy>) -> Self {
        self.placement = self.placement.with_policy(name, policy);
        self
    }

    /// The whole membership section.
    pub fn membership(mut self, membership: MembershipConfig) -> Self {
        self.membership = membership;
        self
    }

    /// The resolver used by [`DiscoveryMethod::Dns`]; the system resolver by default.
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.hooks = self.hooks.with_resolver(resolver);
        self
    }

    /// Validates the settings and returns the configuration.
    pub fn build(self) -> Result<ClusterConfig, ConfigError> {
        #[allow(clippy::disallowed_methods, reason = "an unseeded node's generated name comes from the system RNG")]
        let name = match self.node_name {
            Some(n) => n,
            None => format!("node-{:08x}", self.hooks.rng_seed.map_or_else(rand::random::<u32>, |s| s as u32)),
        };
        let bind_text = self.bind.ok_or(ConfigError::MissingBind)?;
        let bind: SocketAddr = bind_text.parse().map_err(|_| ConfigError::InvalidBindAddress(bind_text.clone()))?;
        let node = NodeConfig {
            name,
            bind,
            seed_nodes: self.seed_nodes,
            discovery: self.discovery,
            profile: self.profile,
            generation: self.generation,
            request_timeout: self.request_timeout,
            reconnect_base: self.reconnect_base,
            reconnect_max: self.reconnect_max,
        };
        node.validate()?;
        check_hello_size(&node)?;
        self.transport.validate()?;
        self.limits.validate()?;
        self.membership.validate()?;
        self.registry.validate()?;
        self.migration.validate()?;
        self.delivery.validate()?;
        Ok(ClusterConfig {
            node,
            transport: self.transport,
            limits: self.limits,
            membership: self.membership,
            placement: self.placement,
            registry: self.registry,
            migration: self.migration,
            delivery: self.delivery,
            hooks: self.hooks,
        })
    }
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

    #[test]
    fn a_profile_too_large_for_the_handshake_is_refused_naming_the_field() {
        let base = || ClusterConfig::new().node_name("n").bind("127.0.0.1:0");
        let big = "x".repeat(5000);
        let err = base().metadata("notes", big.clone()).build().expect_err("too large");
        assert!(matches!(err, ConfigError::HelloTooLarge { field: "profile.metadata", max: 4096, .. }), "{err}");
        assert!(err.to_string().contains("profile.metadata"), "{err}");
        let err = base().role(big).build().expect_err("too large");
        assert!(matches!(err, ConfigError::HelloTooLarge { field: "profile.roles", .. }), "{err}");
        // Just under the cap builds.
        assert!(base().metadata("notes", "x".repeat(3000)).build().is_ok());
    }
}
