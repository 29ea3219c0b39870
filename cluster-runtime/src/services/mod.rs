//! The node's services: each a thin driver over a pure core in [`proto`](crate::proto),
//! plugged into the node's control task through the crate's service interface, with its
//! own configuration section and API.

pub mod broker;
pub mod delivery;
pub mod membership;
pub mod migration;
pub mod placement;
pub mod recovery;
pub mod registry;

use crate::node::service::{Install, ServiceSet};

/// Builds every service of a node. Adding a service is one line here.
pub(crate) fn build(install: &Install<'_>) -> ServiceSet {
    let mut set = ServiceSet::default();
    set.add(membership::install(install));
    set.add(placement::install(install));
    set.add(registry::install(install));
    set.add(migration::install(install));
    set.add(recovery::install(install));
    set.add(delivery::install(install));
    set.add(broker::install(install));
    set
}
