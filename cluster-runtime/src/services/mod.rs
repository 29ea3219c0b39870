//! The node's services: each a thin driver over a pure core in [`proto`](crate::proto),
//! plugged into the node's control task through the crate's service interface, with its
//! own configuration section and API.

pub mod membership;
