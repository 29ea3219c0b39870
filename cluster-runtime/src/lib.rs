//! Runtime of actix-cluster: everything that runs behind the handles the attributes generate.
//!
//! Users depend on the `actix-cluster` facade crate, which re-exports what they need from here.
//! The layers, from the wire up:
//!
//! - [`proto`]: pure protocol logic with no I/O: frames, the handshake rules, wire ids,
//!   backoff, timers, and membership (table, SWIM, phi accrual, the centralized roles).
//! - [`transport`]: links over any `AsyncRead + AsyncWrite` stream: framing, handshake,
//!   batched writes, heartbeats, the frame-shaping hook.
//! - [`node`]: the kernel of a [`ClusterSystem`]: peers,
//!   connections, local actors, requests, the frame router and the control task that
//!   drives the services.
//! - [`services`]: subsystems on numbered channels, each a thin driver over a pure core
//!   (membership today).
//! - [`actor`], [`dispatch`], [`types`], [`handle`]: the traits the attributes implement,
//!   the functions their registrations point to, the table of registered types, and the
//!   typed handles users send through.
//! - [`config`]: the configuration, by section.

pub mod actor;
pub mod builder;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod format;
pub mod handle;
pub mod ids;
pub mod node;
pub mod proto;
pub mod services;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;
pub mod types;

pub use actor::{ClusterMessage, DistributedActor, Handles, KeyedActor, Placement, RemoteMessage};
pub use builder::ClusterSystemBuilder;
pub use config::Architecture;
pub use config::{ClusterConfig, ClusterConfigBuilder, DeliveryConfig, DiscoveryMethod};
pub use error::{ClusterError, ConfigError, RemoteError, RemoteErrorKind, SendError, StartError};
pub use error::{PlacementError, RegistryError};
pub use format::Format;
pub use handle::{ActorRef, DistributedActorExt, RemoteAddr, Spawn};
pub use ids::{ActorId, LocalActorId, MessageId, NodeId};
pub use node::{ClusterSystem, PeerInfo, Refusals, WeakClusterSystem};
pub use proto::membership::{Member, MemberStatus, MembershipEvent, Profile, ResourceReport};
pub use proto::registry::record::ActorLocation;
pub use services::broker::api::{subscribe_cluster, unsubscribe_cluster, Broker, PublishOutcome, PublishReceipt};
pub use services::broker::BrokerStats;
pub use services::delivery::api::{
    Delivery, DeliveryApi, DeliveryError, DeliveryFailure, DeliveryGuarantee, DeliveryStats, DeliveryStatus, Receipt,
    ReceiptFuture, Transaction, TxnOutcome,
};
pub use services::membership::{MembersSnapshot, Membership};
pub use services::recovery::{api::Recovery, RecoveryStats};
pub use services::registry::{NameEvent, NameWatch, Registry, RegistryStats};
