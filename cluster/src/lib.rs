//! # actix-cluster
//!
//! Distributed actors for [actix]: annotate an actor and its messages, start a
//! [`ClusterSystem`] on each node, and send typed messages to actors on other nodes over TCP.
//!
//! ```no_run
//! use actix_cluster::prelude::*;
//!
//! #[cluster_message(result = "u64")]
//! #[derive(Serialize, Deserialize)]
//! struct Add(u64);
//!
//! #[distributed_actor(messages(Add))]
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { total: u64 }
//!
//! impl Handler<Add> for Counter {
//!     type Result = u64;
//!     fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> u64 {
//!         self.total += msg.0;
//!         self.total
//!     }
//! }
//!
//! async fn run() -> Result<(), ClusterError> {
//!     let config = ClusterConfig::new()
//!         .node_name("node-1")
//!         .bind("127.0.0.1:7001")
//!         .seed_nodes(["127.0.0.1:7002"])
//!         .build()?;
//!     let system = ClusterSystem::new("shop", config).start().await?;
//!     system.wait_for_peers(&["node-2"], std::time::Duration::from_secs(10)).await?;
//!
//!     let local = Counter::default().start_distributed();          // where its placement says: here
//!     let remote = system.remote_actor::<Counter>("node-2").await?; // spawned on node-2
//!     assert_eq!(local.send(Add(1)).await?, 1);
//!     assert_eq!(remote.send(Add(5)).await?, 5);                    // typed ask over TCP
//!     remote.do_send(Add(1))?;                                      // tell
//!     system.shutdown().await;
//!     Ok(())
//! }
//!
//! fn main() -> Result<(), ClusterError> {
//!     actix_cluster::rt::System::new().block_on(run())
//! }
//! ```
//!
//! ## The two attributes
//!
//! - [`#[cluster_message(result = "T")]`](cluster_message) implements actix `Message` and
//!   [`ClusterMessage`]: a stable 64-bit wire id computed at compile time from the type's
//!   path, or from `name = "..."` so a type can move without breaking the wire.
//! - [`#[distributed_actor(messages(...))]`](distributed_actor) implements
//!   [`DistributedActor`] and [`Handles<M>`](Handles) for each listed message, and registers a
//!   factory (remote spawn from serialized state) and a dispatch table.
//!
//! Sending a message the actor does not list is a compile error that names both types.
//! Network failures are [`ClusterError`] values, never panics or hangs.
//!
//! ## Handles
//!
//! [`ActorRef<A>`](ActorRef) is location-transparent: `send` (ask), `send_timeout`,
//! `do_send` (tell, fails fast when the link's queue is full) and `tell` (waits for room)
//! work the same for a local and a remote actor. [`RemoteAddr<A>`](RemoteAddr) is the
//! remote-only handle.
//!
//! ## The node and its services
//!
//! A [`ClusterSystem`] is one node: its links, its actors, its pending requests, and its
//! services, each reached through an accessor. [`ClusterSystem::membership`] returns the
//! [`Membership`] API: `members()`, `up_members()`, `subscribe(recipient)` for
//! [`MembershipEvent`]s, `watch()`. Configuration comes by section ([`NodeConfig`],
//! [`TransportConfig`], [`MembershipConfig`], [`Hooks`]) through the flat
//! [`ClusterConfigBuilder`].
//!
//! Errors come by layer: [`ConfigError`] from `build()`, [`StartError`] from `start()`,
//! [`ClusterError`] from calls, with [`RemoteError`] for what a peer answered. `shutdown()`
//! ends every task of the node.
//!
//! ## Your crate's dependencies
//!
//! Generated code names only `::actix_cluster::…` paths, and the attributes point serde's
//! derives at the serde this crate re-exports, so `actix-cluster` is the only dependency a
//! crate of actors needs. The [`prelude`] has actix's prelude, serde's derives and this crate's
//! types; [`rt`] is actix's runtime.

pub use actix_cluster_macros::{cluster_message, distributed_actor};
pub use actix_cluster_runtime::config::MembershipConfig;
pub use actix_cluster_runtime::config::{
    DeliveryConfig, Hooks, LimitsConfig, MigrationConfig, NodeConfig, PlacementConfig, PlacementPolicy, RegistryConfig,
    TransportConfig,
};
pub use actix_cluster_runtime::proto::migration::MigrationError;
pub use actix_cluster_runtime::proto::placement::Candidate;
pub use actix_cluster_runtime::transport::resolver::{Resolver, StaticResolver, SystemResolver};
pub use actix_cluster_runtime::{
    subscribe_cluster, unsubscribe_cluster, Broker, BrokerStats, PublishOutcome, PublishReceipt, Transaction,
    TxnOutcome,
};
pub use actix_cluster_runtime::{
    ActorId, ActorLocation, ActorRef, Architecture, ClusterConfig, ClusterConfigBuilder, ClusterError, ClusterMessage,
    ClusterSystem, ClusterSystemBuilder, ConfigError, Delivery, DeliveryApi, DeliveryError, DeliveryFailure,
    DeliveryGuarantee, DeliveryStats, DeliveryStatus, DiscoveryMethod, DistributedActor, DistributedActorExt, Format,
    Handles, KeyedActor, LocalActorId, Member, MemberStatus, MembersSnapshot, Membership, MembershipEvent, MessageId,
    NameEvent, NameWatch, NodeId, PeerInfo, Placement, PlacementError, Profile, Receipt, ReceiptFuture, Recovery,
    RecoveryStats, Refusals, Registry, RegistryError, RegistryStats, RemoteAddr, RemoteError, RemoteErrorKind,
    RemoteMessage, ResourceReport, SendError, Spawn, StartError, WeakClusterSystem,
};

/// The test toolkit (feature `testkit`): see `docs/testing.md`.
#[cfg(feature = "testkit")]
pub use actix_cluster_runtime::testkit;

/// actix's runtime (`System`, `spawn`, `time`), to run a node without a direct dependency.
pub use actix_rt as rt;

/// Everything a crate of distributed actors usually needs.
pub mod prelude {
    pub use actix::prelude::*;
    pub use serde::{Deserialize, Serialize};

    pub use crate::{
        cluster_message, distributed_actor, subscribe_cluster, ActorRef, Architecture, ClusterConfig, ClusterError,
        ClusterMessage, ClusterSystem, Delivery, DeliveryGuarantee, DiscoveryMethod, DistributedActor,
        DistributedActorExt, Format, Handles, KeyedActor, Member, MemberStatus, MembershipEvent, Placement, RemoteAddr,
        StartError,
    };
}

/// Items generated code refers to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use actix;
    pub use actix_cluster_runtime::actor::{Probe, TakeState};
    pub use actix_cluster_runtime::dispatch::{
        assert_wire_type, default_state, dispatch, encode_state, handled_in_order, probe, spawn_from_state,
        spawn_keyed, take_state,
    };
    pub use actix_cluster_runtime::proto::wire_id;
    pub use actix_cluster_runtime::types::{ActorRegistration, HandlerRegistration, MessageRegistration};
    pub use actix_cluster_runtime::types::{KeyedRegistration, RecoveryRegistration};
    pub use inventory;
    pub use serde;
}

/// The testing guide's examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "sim"))]
#[doc = include_str!("../../docs/testing.md")]
struct TestingGuideDoctests;

/// The README's usage example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
