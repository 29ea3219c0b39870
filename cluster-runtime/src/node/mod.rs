//! The node: a [`ClusterSystem`] owns the listener, the links to peers, the table of local
//! actors reachable from the network and the pending requests. It drives the pure logic in
//! [`proto`](crate::proto) and the links in [`transport`](crate::transport).

mod config;
pub mod discovery;
pub(crate) mod id_hasher;
mod membership;
mod resources;
mod system;

pub use config::{Architecture, ClusterConfig, ClusterConfigBuilder, DiscoveryMethod};
pub(crate) use system::Reply;
pub use system::{ClusterSystem, ClusterSystemBuilder, NodeId, PeerInfo, Replier};
