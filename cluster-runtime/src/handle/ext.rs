//! Starting actors so the cluster can address them: where their placement says
//! ([`DistributedActorExt::start_distributed`]), on this node
//! ([`ClusterSystem::spawn_local`]) or on another ([`ClusterSystem::remote_actor`]).

use std::sync::Arc;

use crate::actor::{DistributedActor, Placement};
use crate::dispatch::{start_watched, StopHandle, StopNotice};
use crate::error::{ClusterError, RemoteErrorKind};
use crate::handle::actor_ref::{ActorRef, Hosted};
use crate::handle::deferred::Deferred;
use crate::handle::remote_addr::RemoteAddr;
use crate::ids::{ActorId, ActorTypeId};
use crate::node::outbound::check_size;
use crate::node::requests::Reply;
use crate::node::ClusterSystem;
use crate::proto::wire::frame::{self, Frame};

/// Starting actors so that the cluster can address them.
pub trait DistributedActorExt: DistributedActor {
    /// Starts the actor on the current thread's cluster system (the one started last on
    /// this thread), on the node its type's placement chooses
    /// (`#[distributed_actor(placement = "...")]`; this node by default), and returns a
    /// location-transparent handle at once. Without a running system the actor starts
    /// here, with a handle usable only on this node.
    ///
    /// Placed on this node, the actor runs when this returns. Placed elsewhere, it is
    /// started in the background: tells sent meanwhile go out in order once it runs, asks
    /// wait for it, and if it cannot be started every call through the handle fails with
    /// [`ClusterError::NotStarted`]. Use `system.spawn(state).await` to see the outcome
    /// of the start itself.
    fn start_distributed(self) -> ActorRef<Self> {
        match ClusterSystem::current() {
            Some(system) => system.start_placed(self),
            None => {
                let stop = StopHandle::default();
                let addr = start_watched(self, stop.watch(StopNotice::none()));
                ActorRef::local(addr, None, stop)
            }
        }
    }

    /// Like [`start_distributed`](Self::start_distributed), on the given cluster system.
    fn start_distributed_on(self, system: &ClusterSystem) -> ActorRef<Self> {
        system.start_placed(self)
    }
}

impl<A: DistributedActor> DistributedActorExt for A {}

impl ClusterSystem {
    /// Starts `actor` where its type's placement says, returning at once: a local actor
    /// runs already, any other is started by a task of the node behind a deferred handle.
    fn start_placed<A: DistributedActor>(&self, actor: A) -> ActorRef<A> {
        let placement = A::placement();
        if placement == Placement::Local {
            return self.spawn_local(actor);
        }
        let deferred = Arc::new(Deferred::new(A::NAME));
        let handle = ActorRef::deferred(deferred.clone());
        let system = self.clone();
        let stopping = self.node.life.stopping.clone();
        self.node.life.tasks.spawn_local(async move {
            let started = tokio::select! {
                biased;
                () = stopping.cancelled() => Err(ClusterError::Shutdown),
                started = system.spawn(actor).placement(placement) => started,
            };
            if let Err(e) = &started {
                tracing::warn!(node = %system.node_name(), actor = A::NAME, error = %e, "could not start the actor where its placement says");
            }
            deferred.finish(started.map_err(Arc::new)).await;
        });
        handle
    }

    /// Starts `actor` on this node, reachable from the network, and returns its handle.
    /// The actor leaves the node's table when it stops.
    pub fn spawn_local<A: DistributedActor>(&self, actor: A) -> ActorRef<A> {
        let (id, addr, stop, gate) = self.node.actors.start(actor);
        let hosted = Hosted { system: self.clone(), id, identity: ActorId::first(self.node_id(), id), gate };
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
