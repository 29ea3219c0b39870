//! Pure protocol logic: no sockets, no clocks, no tasks.
//!
//! Everything here is deterministic and unit-tested without I/O; the [`transport`](crate::transport)
//! and [`node`](crate::node) layers drive it.

pub mod backoff;
pub mod frame;
pub mod handshake;
pub mod membership;
pub mod phi_accrual;
pub mod wire_id;

pub use wire_id::wire_id;
