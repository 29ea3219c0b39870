//! The placement service: keeps the up members (with roles and latest resource reports)
//! from membership events, and decides where new actors go with the pure
//! [`place`], on the node's control task.

pub mod api;

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::node::service::{Cx, Install, Service, ServiceFrameError};
use crate::proto::membership::{Member, MembershipEvent};
use crate::proto::placement::{place, Candidate, PlacementError, PlacementState, Strategy};
use crate::proto::wire::channel::Channel;

/// The version of placement's (so far absent) frames.
const VERSION: u16 = 1;

/// The placement service of one node.
pub(crate) struct PlacementService {
    policies: crate::config::PlacementConfig,
    local: String,
    members: BTreeMap<String, Candidate>,
    state: PlacementState,
    rng: SmallRng,
}

/// What placement shares with its API: nothing yet, the API calls the service.
#[derive(Debug, Default)]
pub(crate) struct PlacementShared;

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (PlacementService, Arc<PlacementShared>) {
    let local = i.config.node_name().to_owned();
    let me = Candidate { name: local.clone(), roles: i.config.profile().roles.clone(), load: None };
    let service = PlacementService {
        policies: i.config.placement().clone(),
        members: BTreeMap::from([(local.clone(), me)]),
        local,
        state: PlacementState::default(),
        rng: SmallRng::seed_from_u64(i.seed),
    };
    (service, Arc::new(PlacementShared))
}

fn candidate(m: &Member) -> Candidate {
    Candidate { name: m.name.clone(), roles: m.profile.roles.clone(), load: m.resources }
}

impl PlacementService {
    /// Where an actor placed by `strategy` goes.
    pub(crate) fn decide(&mut self, strategy: &Strategy) -> Result<String, PlacementError> {
        let members: Vec<Candidate> = self.members.values().cloned().collect();
        if let Strategy::Custom(name, key) = strategy {
            let policy = self.policies.policy(name).ok_or_else(|| PlacementError::UnknownPolicy(name.clone()))?;
            let chosen =
                policy.choose(&members, key.as_deref()).ok_or_else(|| PlacementError::PolicyDeclined(name.clone()))?;
            // A policy can only choose a member that is up.
            if !self.members.contains_key(&chosen) {
                return Err(PlacementError::UnknownNode(chosen));
            }
            return Ok(chosen);
        }
        place(strategy, &self.local, &members, &mut self.state, &mut self.rng)
    }
}

impl Service for PlacementService {
    fn channel(&self) -> Channel {
        Channel::PLACEMENT
    }

    fn version(&self) -> u16 {
        VERSION
    }

    fn handle_frame(
        &mut self,
        _: &mut Cx<'_>,
        _: &crate::node::peers::PeerInfo,
        _: &[u8],
    ) -> Result<(), ServiceFrameError> {
        Err(ServiceFrameError("placement has no frames".into()))
    }

    fn handle_membership(&mut self, _: &mut Cx<'_>, event: &MembershipEvent) {
        match event {
            MembershipEvent::MemberUp(m) => {
                self.members.insert(m.name.clone(), candidate(m));
            }
            // Only members that are up receive new actors; this node always may.
            MembershipEvent::MemberSuspect(m)
            | MembershipEvent::MemberDown(m)
            | MembershipEvent::MemberLeft(m)
            | MembershipEvent::MemberRemoved(m) => {
                if m.name != self.local {
                    self.members.remove(&m.name);
                }
            }
            MembershipEvent::ResourcesChanged(m) => {
                if let Some(c) = self.members.get_mut(&m.name) {
                    c.load = m.resources;
                }
            }
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
