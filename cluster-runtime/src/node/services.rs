//! The node's services: adding one is one line here.

use crate::node::service::{Install, ServiceSet};
use crate::services::membership;

/// Builds every service of a node.
pub(crate) fn build(install: &Install<'_>) -> ServiceSet {
    let mut set = ServiceSet::default();
    set.add(membership::install(install));
    set
}
