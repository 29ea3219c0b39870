//! Starting actors so the cluster can address them: on this node
//! ([`DistributedActorExt::start_distributed`], [`ClusterSystem::spawn_local`]) or on
//! another ([`ClusterSystem::remote_actor`]).

use crate::actor::DistributedActor;
use crate::dispatch::{start_watched, StopHandle, StopNotice};
use crate::error::{ClusterError, RemoteErrorKind};
use crate::handle::actor_ref::{ActorRef, Hosted};
use crate::handle::remote_addr::RemoteAddr;
use crate::ids::{ActorId, ActorTypeId};
use crate::node::outbound::check_size;
use crate::node::requests::Reply;
use crate::node::ClusterSystem;
use crate::proto::wire::frame::{self, Frame};

/// Starting actors so that the cluster can address them.
pub trait DistributedActorExt: DistributedActor {
    /// Starts the actor on the current thread's cluster system (the one started last on
    /// this thread) and returns a location-transparent handle. Without a running system
    /// the actor still starts, with a handle usable only on this node.
    fn start_distributed(self) -> ActorRef<Self> {
        match ClusterSystem::current() {
            Some(system) => system.spawn_local(self),
            None => {
                let stop = StopHandle::default();
                let addr = start_watched(self, stop.watch(StopNotice::none()));
                ActorRef::local(addr, None, stop)
            }
        }
    }

    /// Starts the actor on the given cluster system.
    fn start_distributed_on(self, system: &ClusterSystem) -> ActorRef<Self> {
        system.spawn_local(self)
    }
}

impl<A: DistributedActor> DistributedActorExt for A {}

impl ClusterSystem {
    /// Starts `actor` on this node, reachable from the network, and returns its handle.
    /// The actor leaves the node's table when it stops.
    pub fn spawn_local<A: DistributedActor>(&self, actor: A) -> ActorRef<A> {
        let (id, addr, stop) = self.node.actors.start(actor);
        let hosted = Hosted { system: self.clone(), id, identity: ActorId::first(self.node_id(), id) };
        ActorRef::local(addr, Some(hosted), stop)
    }

    /// Spawns a default-constructed `T` on node `node` and returns a handle to it.
    pub async fn remote_actor<T: DistributedActor + Default>(&self, node: &str) -> Result<ActorRef<T>, ClusterError> {
        self.remote_actor_with(node, T::default()).await
    }

    /// Spawns `T` on node `node`, built there from `state`, and returns a handle to it.
    pub async fn remote_actor_with<T: DistributedActor>(
        &self,
        node: &str,
        state: T,
    ) -> Result<ActorRef<T>, ClusterError> {
        if node == self.node_name() {
            return Ok(self.spawn_local(state));
        }
        if self.node.life.is_shut_down() {
            return Err(ClusterError::Shutdown);
        }
        let peer = self.peer(node).ok_or_else(|| ClusterError::UnknownNode(node.to_owned()))?;
        let format = T::format();
        let bytes = format.encode(&state, T::NAME)?;
        let timeout = self.config().request_timeout();
        let actor_type = ActorTypeId(T::TYPE_ID);
        let reply = self
            .node
            .request(peer.id, &peer.name, timeout, |request| {
                let frame = frame::encode(&Frame::Spawn { request, actor_type, format, state: &bytes })
                    .map_err(|e| ClusterError::Encode { what: "spawn request".into(), detail: e.to_string() })?;
                check_size(frame, peer.max_frame)
            })
            .await
            .map_err(|e| match e {
                ClusterError::Remote { node, error } if error.kind == RemoteErrorKind::UnknownActorType => {
                    ClusterError::ActorTypeNotRegistered { actor: T::NAME.to_owned(), node }
                }
                ClusterError::Remote { node, error } if error.kind == RemoteErrorKind::Overloaded => {
                    ClusterError::Overloaded { node, detail: error.detail }
                }
                ClusterError::Remote { node, error } if error.kind == RemoteErrorKind::Decode => ClusterError::Decode {
                    what: format!("state of `{}` on node `{node}`", T::NAME),
                    detail: error.detail,
                },
                other => other,
            })?;
        match reply {
            Reply::Spawned(actor) => Ok(ActorRef::remote(RemoteAddr::new(self.clone(), peer, actor))),
            Reply::Value(_) => Err(ClusterError::Decode {
                what: "spawn reply".into(),
                detail: "node answered a spawn with a value".into(),
            }),
        }
    }
}
