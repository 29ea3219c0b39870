//! The placement service: keeps the up members (with roles and latest resource reports)
//! from membership events, and decides where new actors go with the pure [`place`], on the
//! node's control task.
//!
//! In the centralized architecture a worker asks a master, which decides from its view of
//! every worker (work distribution); while no master answers within the request timeout, the
//! worker decides itself.

pub mod api;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::oneshot;

use crate::config::membership::Architecture;
use crate::ids::NodeId;
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Install, Service, ServiceFrameError};
use crate::proto::membership::{Member, MembershipEvent};
use crate::proto::placement::{place, Candidate, Placement, PlacementError, PlacementFrame, PlacementState};
use crate::proto::wire::channel::Channel;
use crate::transport::link::LinkEnd;

/// The version of placement's frames.
const VERSION: u16 = 1;

/// The answer a spawn waits for.
pub(crate) type Decision = oneshot::Sender<Result<String, PlacementError>>;

struct Pending {
    placement: Placement,
    key: Option<String>,
    deadline: Duration,
    reply: Decision,
}

/// The placement service of one node.
pub(crate) struct PlacementService {
    policies: crate::config::PlacementConfig,
    local: String,
    members: BTreeMap<String, Candidate>,
    state: PlacementState,
    rng: SmallRng,
    /// The masters to ask (empty unless this node is a centralized worker).
    masters: Vec<String>,
    /// Masters currently linked, by node id.
    linked_masters: BTreeMap<NodeId, String>,
    /// Peers currently linked, by node id: only they (and this node) can take an actor.
    linked: BTreeMap<NodeId, String>,
    next_request: u64,
    pending: BTreeMap<u64, Pending>,
    timeout: Duration,
}

/// What placement shares with its API: nothing yet, the API calls the service.
#[derive(Debug, Default)]
pub(crate) struct PlacementShared;

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (PlacementService, Arc<PlacementShared>) {
    let local = i.config.node_name().to_owned();
    let me = Candidate { name: local.clone(), roles: i.config.profile().roles.clone(), load: None };
    let m = i.config.membership();
    let masters = if m.architecture == Architecture::Centralized && !m.masters.contains(&local) {
        m.masters.clone()
    } else {
        Vec::new()
    };
    let service = PlacementService {
        policies: i.config.placement().clone(),
        members: BTreeMap::from([(local.clone(), me)]),
        local,
        state: PlacementState::default(),
        rng: SmallRng::seed_from_u64(i.seed),
        masters,
        linked_masters: BTreeMap::new(),
        linked: BTreeMap::new(),
        next_request: 1,
        pending: BTreeMap::new(),
        timeout: i.config.request_timeout(),
    };
    (service, Arc::new(PlacementShared))
}

fn candidate(m: &Member) -> Candidate {
    Candidate { name: m.name.clone(), roles: m.profile.roles.clone(), load: m.resources }
}

impl PlacementService {
    /// Where an actor placed by `placement` (with `key`) goes, decided here.
    fn decide_here(&mut self, placement: &Placement, key: Option<&str>) -> Result<String, PlacementError> {
        // Members that are up and reachable: this node, and the peers it is linked to.
        let reachable = |name: &String| *name == self.local || self.linked.values().any(|l| l == name);
        let members: Vec<Candidate> = self.members.values().filter(|c| reachable(&c.name)).cloned().collect();
        if let Placement::Custom(name) = placement {
            let policy = self.policies.policy(name).ok_or_else(|| PlacementError::UnknownPolicy(name.clone()))?;
            let chosen = policy.choose(&members, key).ok_or_else(|| PlacementError::PolicyDeclined(name.clone()))?;
            // A policy can only choose a member that is up and reachable.
            if !members.iter().any(|m| m.name == chosen) {
                return Err(PlacementError::UnknownNode(chosen));
            }
            return Ok(chosen);
        }
        place(placement, key, &self.local, &members, &mut self.state, &mut self.rng)
    }

    /// Decides where an actor placed by `placement` (with `key`) goes and answers on
    /// `reply`: here, or by asking a master (a centralized worker; it decides itself if
    /// none answers).
    pub(crate) fn decide(&mut self, cx: &mut Cx<'_>, placement: Placement, key: Option<String>, reply: Decision) {
        let explicit = matches!(placement, Placement::Local | Placement::Node(_));
        if let (false, Some((&master, _))) = (explicit, self.linked_masters.iter().next()) {
            let id = self.next_request;
            self.next_request += 1;
            let frame = PlacementFrame::Request { id, placement: placement.clone(), key: key.clone() };
            if cx.send(master, &frame.encode()) {
                self.pending.insert(id, Pending { placement, key, deadline: cx.now() + self.timeout, reply });
                return;
            }
        }
        let _ = reply.send(self.decide_here(&placement, key.as_deref()));
    }
}

impl Service for PlacementService {
    fn channel(&self) -> Channel {
        Channel::PLACEMENT
    }

    fn version(&self) -> u16 {
        VERSION
    }

    fn handle_link_up(&mut self, _: &mut Cx<'_>, peer: &PeerInfo) {
        self.linked.insert(peer.id, peer.name.clone());
        if self.masters.contains(&peer.name) {
            self.linked_masters.insert(peer.id, peer.name.clone());
        }
    }

    fn handle_link_down(&mut self, _: &mut Cx<'_>, peer: &PeerInfo, _: &LinkEnd) {
        self.linked.remove(&peer.id);
        if self.linked_masters.remove(&peer.id).is_some() && self.linked_masters.is_empty() {
            // No master left to answer: decide what was waiting here.
            for (_, p) in std::mem::take(&mut self.pending) {
                let result = self.decide_here(&p.placement, p.key.as_deref());
                let _ = p.reply.send(result);
            }
        }
    }

    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError> {
        match PlacementFrame::decode(body).map_err(ServiceFrameError)? {
            PlacementFrame::Request { id, placement, key } => {
                let result = self.decide_here(&placement, key.as_deref());
                cx.send(from.id, &PlacementFrame::Decision { id, result }.encode());
            }
            PlacementFrame::Decision { id, result } => {
                if !self.linked_masters.contains_key(&from.id) {
                    return Err(ServiceFrameError(format!("placement decision from `{}`, not a master", from.name)));
                }
                if let Some(p) = self.pending.remove(&id) {
                    let _ = p.reply.send(result);
                }
            }
        }
        Ok(())
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

    fn handle_timeout(&mut self, _: &mut Cx<'_>, now: Duration) {
        // No answer from the master in time: decide here.
        let expired: Vec<u64> = self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let result = self.decide_here(&p.placement, p.key.as_deref());
                let _ = p.reply.send(result);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.pending.values().map(|p| p.deadline).min()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
