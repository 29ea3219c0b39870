//! The placement section: the user-defined placement policies a node knows, by name
//! (`Placement::Custom(name)`, `#[distributed_actor(placement = "custom:<name>")]`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::proto::placement::Candidate;

/// A user-defined placement policy.
pub trait PlacementPolicy: Send + Sync + 'static {
    /// The member a new actor goes to, among `members` (the members that are up, sorted by
    /// name), given the spawn's key if it has one; `None` if no member fits.
    fn choose(&self, members: &[Candidate], key: Option<&str>) -> Option<String>;
}

/// The named placement policies of a node.
#[derive(Clone, Default)]
pub struct PlacementConfig {
    policies: BTreeMap<String, Arc<dyn PlacementPolicy>>,
}

impl fmt::Debug for PlacementConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlacementConfig").field("policies", &self.policies.keys().collect::<Vec<_>>()).finish()
    }
}

impl PlacementConfig {
    /// Registers `policy` under `name`, replacing any policy of that name.
    pub fn with_policy(mut self, name: impl Into<String>, policy: Arc<dyn PlacementPolicy>) -> Self {
        self.policies.insert(name.into(), policy);
        self
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> Option<&Arc<dyn PlacementPolicy>> {
        self.policies.get(name)
    }
}
