//! The hooks section: what tests (and unusual deployments) plug into a node: the network
//! links run over, the DNS resolver, the seed of every random choice and the frame shaper.

use std::sync::Arc;

use crate::transport::network::{Network, NetworkHandle};
use crate::transport::resolver::{Resolver, ResolverHandle};
use crate::transport::shaper::{Shaper, ShaperHandle};

/// Injected dependencies of a node.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// The network links run over; TCP by default.
    pub network: NetworkHandle,
    /// The resolver of DNS discovery; the system resolver by default.
    pub resolver: ResolverHandle,
    /// Seeds every random choice of the node (node id, jitter, SWIM); from the operating
    /// system when unset.
    pub rng_seed: Option<u64>,
    /// Decides the fate of every frame the node writes (tests impose network conditions).
    pub shaper: Option<ShaperHandle>,
    /// The wall-clock time the node takes as its start, in ms since the Unix epoch (its
    /// wall clock then runs with the node's clock); the system clock when unset.
    /// Simulations fix it so runs reproduce; tests skew it to model clock drift.
    pub wall_clock_origin_ms: Option<u64>,
}

impl Hooks {
    /// Sets the network.
    pub fn with_network(mut self, network: Arc<dyn Network>) -> Self {
        self.network = NetworkHandle(network);
        self
    }

    /// Sets the resolver.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = ResolverHandle(resolver);
        self
    }

    /// Sets the frame shaper.
    pub fn with_shaper(mut self, shaper: Arc<dyn Shaper>) -> Self {
        self.shaper = Some(ShaperHandle(shaper));
        self
    }
}
