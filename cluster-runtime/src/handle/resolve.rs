//! Turning a location (from the registry, or a handle that crossed the network) into a
//! working handle on this node.

use crate::actor::DistributedActor;
use crate::handle::actor_ref::{ActorRef, Hosted};
use crate::handle::remote_addr::RemoteAddr;
use crate::ids::ActorId;
use crate::node::{ClusterSystem, PeerInfo};
use crate::proto::registry::record::ActorLocation;

impl ClusterSystem {
    /// A handle to the actor `identity`, last known to run at `location` (both kept from
    /// [`ActorRef::identity`] and [`ActorRef::location`], in a database for instance). If the
    /// actor no longer runs there, asks find it again through the registry (when it is
    /// registered); otherwise calls fail with `ActorNotFound`.
    pub fn actor_ref_at<A: DistributedActor>(&self, identity: ActorId, location: ActorLocation) -> ActorRef<A> {
        self.handle_at(identity, location)
    }

    /// A handle to actor `identity` at `location`: local if it runs here, remote otherwise
    /// (linking to its node on first use if there is no link yet). A location on this node
    /// where the actor no longer runs gives a handle whose calls answer `ActorNotFound`
    /// (asks then look the identity up again).
    pub(crate) fn handle_at<A: DistributedActor>(&self, identity: ActorId, location: ActorLocation) -> ActorRef<A> {
        let here = location.node == self.node_name() && location.node_id == self.node_id();
        if here {
            if let Some((addr, stop, gate)) = self.node.actors.local_handle::<A>(location.actor) {
                let hosted = Hosted { system: self.clone(), id: location.actor, identity, gate };
                return ActorRef::local(addr, Some(hosted), stop);
            }
        }
        let linked = self.peer(&location.node).filter(|p| p.id == location.node_id);
        let unlinked = linked.is_none() && !here;
        let peer = linked.unwrap_or_else(|| {
            let member = self.membership().member(&location.node).filter(|m| m.id == location.node_id);
            if let Some(m) = &member {
                self.node.connect_to(Some(&m.name), &m.addr);
            }
            PeerInfo {
                id: location.node_id,
                name: location.node.clone(),
                addr: member.as_ref().map(|m| m.addr.clone()).unwrap_or_default(),
                generation: member.as_ref().map_or(0, |m| m.generation),
                profile: member.map(|m| m.profile).unwrap_or_default(),
                // Until the link says otherwise, the peer is taken to accept what this node does.
                max_frame: self.config().transport().max_frame_size,
            }
        });
        ActorRef::remote(RemoteAddr::at(self.clone(), peer, location.actor, identity, unlinked))
    }
}
