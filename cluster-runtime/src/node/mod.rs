//! The node kernel: identity and lifecycle ([`system`], [`builder`]), peers and
//! connections, the local actor table, request correlation, the frame router, and the
//! control task that drives the services ([`service`], [`driver`], `services`).
//!
//! Dependencies point one way: `system` and `builder` on top; `router`, `connect`,
//! `outbound` and `driver` over `kernel`; `kernel` over the tables (`peers`, `requests`,
//! `actors`), `clock` and the service interface.

pub(crate) mod actors;
pub mod builder;
pub(crate) mod clock;
pub(crate) mod connect;
pub(crate) mod driver;
pub(crate) mod kernel;
pub(crate) mod outbound;
pub mod peers;
pub(crate) mod requests;
pub(crate) mod router;
pub(crate) mod service;
pub(crate) mod services;
pub mod system;

pub use builder::ClusterSystemBuilder;
pub use peers::PeerInfo;
pub use system::{ClusterSystem, WeakClusterSystem};
