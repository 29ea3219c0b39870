//! Runtime of actix-cluster: everything that runs behind the handles the attributes generate.
//!
//! Users depend on the `actix-cluster` facade crate, which re-exports what they need from here.
//! The layers, from the wire up:
//!
//! - [`proto`]: pure protocol logic with no I/O: wire ids, frames, the handshake rules,
//!   reconnect backoff.
//! - [`transport`]: links over any `AsyncRead + AsyncWrite` stream: framing, handshake,
//!   batched writes, heartbeats.
//! - [`node`]: the [`ClusterSystem`](node::ClusterSystem) that owns the listener, the links
//!   to peers, the local actor table and pending requests.
//! - [`actor`], [`handle`]: the traits the attributes implement and the typed handles users
//!   send through.

pub mod actor;
pub mod error;
pub mod format;
pub mod handle;
pub mod node;
pub mod proto;
pub mod registry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;

pub use actor::{ClusterMessage, DistributedActor, Handles, Placement, RemoteMessage};
pub use error::{ClusterError, ConfigError, RemoteErrorKind};
pub use format::Format;
pub use handle::{ActorRef, RemoteAddr};
pub use node::{Architecture, ClusterConfig, ClusterSystem, ClusterSystemBuilder, DiscoveryMethod, NodeId, PeerInfo};
pub use proto::membership::{Member, MemberStatus, MembershipEvent, Profile, ResourceReport};
