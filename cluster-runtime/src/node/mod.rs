//! The node kernel: identity and lifecycle ([`system`]), peers and connections, the local
//! actor table, request correlation, the frame router, and the control task that drives
//! the services (`service`, `driver`). The kernel knows no concrete service: the list is
//! in [`services`](crate::services) and the two meet in [`builder`](crate::builder).
//!
//! Dependencies point one way: `system` on top; `router`, `connect`, `outbound` and
//! `driver` over `kernel`; `kernel` over the tables (`peers`, `requests`, `actors`),
//! `clock` and the service interface.

pub(crate) mod actors;
pub(crate) mod clock;
pub(crate) mod connect;
pub(crate) mod context;
pub(crate) mod driver;
pub(crate) mod forward;
pub(crate) mod kernel;
pub mod limits;
pub(crate) mod outbound;
pub mod peers;
pub(crate) mod requests;
pub(crate) mod router;
pub(crate) mod service;
pub mod system;

pub use limits::Refusals;
pub use peers::PeerInfo;
pub use system::{ClusterSystem, WeakClusterSystem};
