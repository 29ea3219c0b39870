//! Pure protocol logic: no sockets, no clocks, no tasks.
//!
//! Everything here is deterministic and unit-tested without I/O: inputs are `handle_*(now,
//! ..)` calls, outputs are taken with `poll_*`, time is a `Duration` since an arbitrary
//! origin and randomness comes from seeded generators. The [`transport`](crate::transport),
//! [`node`](crate::node) and [`services`](crate::services) layers drive it.

pub mod activation;
pub mod backoff;
pub mod broker;
pub mod delivery;
pub mod flow;
pub mod membership;
pub mod migration;
pub mod placement;
pub mod registry;
pub mod snapshot;
pub mod timer;
pub mod wire;
pub mod wire_id;

pub use wire_id::wire_id;
