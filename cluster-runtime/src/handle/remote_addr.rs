//! [`RemoteAddr`]: a typed handle to an actor on another node.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::actor::{DistributedActor, RemoteMessage};
use crate::error::{ClusterError, RemoteErrorKind, SendError};
use crate::ids::{ActorId, LocalActorId, NodeId, WireId};
use crate::node::context;
use crate::node::outbound::check_size;
use crate::node::requests::Reply;
use crate::node::{ClusterSystem, PeerInfo};
use crate::proto::membership::MemberStatus;
use crate::proto::registry::record::ActorLocation;
use crate::proto::wire::fast_path::{encode_message, MessageHead};
use crate::proto::wire::frame::{self, EncodedFrame, Frame};

/// A typed handle to an actor of type `A` on another node: the actor's cluster-wide
/// identity and where it was last known to run.
pub struct RemoteAddr<A> {
    system: ClusterSystem,
    node: PeerInfo,
    actor: LocalActorId,
    identity: ActorId,
    /// The handle came from the network and its node may not be linked yet: calls link first.
    unlinked: bool,
    /// Where the actor runs, made once for the guaranteed sends through this handle.
    location: std::sync::Arc<ActorLocation>,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for RemoteAddr<A> {
    fn clone(&self) -> Self {
        Self {
            system: self.system.clone(),
            node: self.node.clone(),
            actor: self.actor,
            identity: self.identity,
            unlinked: self.unlinked,
            location: self.location.clone(),
            _actor: PhantomData,
        }
    }
}

impl<A> fmt::Debug for RemoteAddr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAddr")
            .field("identity", &self.identity)
            .field("node", &self.node.name)
            .field("actor", &self.actor)
            .finish()
    }
}

impl<A: DistributedActor> RemoteAddr<A> {
    /// A handle to actor `actor` that linked peer `node` just spawned.
    pub(crate) fn new(system: ClusterSystem, node: PeerInfo, actor: LocalActorId) -> Self {
        let identity = ActorId::first(node.id, actor);
        Self::at(system, node, actor, identity, false)
    }

    /// A handle to the actor `identity` at `actor` on `node`; `unlinked` if the node may
    /// not be linked yet.
    pub(crate) fn at(
        system: ClusterSystem,
        node: PeerInfo,
        actor: LocalActorId,
        identity: ActorId,
        unlinked: bool,
    ) -> Self {
        let location = std::sync::Arc::new(ActorLocation { node: node.name.clone(), node_id: node.id, actor });
        Self { system, node, actor, identity, unlinked, location, _actor: PhantomData }
    }

    /// The actor's cluster-wide identity.
    pub fn identity(&self) -> ActorId {
        self.identity
    }

    /// Where the actor was last known to run.
    pub fn location(&self) -> ActorLocation {
        (*self.location).clone()
    }

    /// [`location`](Self::location), shared.
    pub(crate) fn shared_location(&self) -> std::sync::Arc<ActorLocation> {
        self.location.clone()
    }

    /// The node this handle names, for calls that fail without reaching it.
    pub(crate) fn system(&self) -> &ClusterSystem {
        &self.system
    }

    /// The name of the node the actor lives on.
    pub fn node_name(&self) -> &str {
        &self.node.name
    }

    /// The id of the node (incarnation) the actor lives on.
    pub fn node_id(&self) -> NodeId {
        self.node.id
    }

    /// The actor's id on its node.
    pub fn actor_id(&self) -> LocalActorId {
        self.actor
    }

    /// Asks: sends `msg` and waits for the handler's result, up to the node's request timeout.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        self.send_timeout(msg, self.system.config().request_timeout()).await
    }

    /// Asks with an explicit deadline.
    pub async fn send_timeout<M>(&self, msg: M, timeout: Duration) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        self.ask(&msg, timeout).await
    }

    /// Asks, keeping the message so that the caller can send it elsewhere if the actor was
    /// not there.
    pub(crate) async fn ask<M>(&self, msg: &M, timeout: Duration) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        self.ready(deadline).await?;
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let format = A::format();
        let target = self.actor;
        let reply = self
            .system
            .node
            .request(self.node.id, &self.node.name, timeout, |request| {
                let bytes = encode_message(MessageHead::Ask { request, target }, WireId(M::WIRE_ID), format, |buf| {
                    format.encode_into(msg, buf, M::NAME)
                })?;
                check_size(bytes, self.node.max_frame)
            })
            .await
            .map_err(|e| self.name_errors(e))?;
        match reply {
            // A handle in the reply comes out bound to this node.
            Reply::Value(bytes) => context::decoding(&self.system.node.slot, || format.decode(&bytes, "reply")),
            Reply::Spawned(_) => {
                Err(ClusterError::Decode { what: "reply".into(), detail: "node answered an ask with a spawn".into() })
            }
        }
    }

    /// Stops the actor on its node (after the message it is handling) and returns once it
    /// has stopped. Fails with `ActorNotFound` if it no longer exists.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let target = self.actor;
        let timeout = self.system.config().request_timeout();
        let stop = |request| {
            frame::encode(&Frame::Stop { request, target })
                .map_err(|e| ClusterError::Encode { what: "stop request".into(), detail: e.to_string() })
        };
        self.system
            .node
            .request(self.node.id, &self.node.name, timeout, stop)
            .await
            .map_err(|e| self.name_errors(e))?;
        Ok(())
    }

    /// Tells: queues `msg` without waiting. Fails with [`ClusterError::Backpressure`] when
    /// the actor's flow-control credit or the link's queue is exhausted, and with
    /// [`ClusterError::LinkDown`] if there is no link; the message comes back in the error.
    pub fn do_send<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        M: RemoteMessage<A>,
    {
        let sent = self.tell_frame(&msg).and_then(|bytes| {
            self.system.node.try_tell(self.node.id, &self.node.name, self.actor, bytes).map_err(|e| self.name_errors(e))
        });
        sent.map_err(|error| SendError { error, message: msg })
    }

    /// Tells, waiting for room in the link's queue (backpressure) instead of failing.
    pub async fn tell<M>(&self, msg: M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        self.tell_ref(&msg).await
    }

    /// Tells, keeping the message so that the caller can send it elsewhere if it could not
    /// be queued (an error means it was not).
    pub(crate) async fn tell_ref<M>(&self, msg: &M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        if self.unlinked || self.node.id == self.system.node_id() {
            self.ready(tokio::time::Instant::now() + self.system.config().request_timeout()).await?;
        }
        let bytes = self.tell_frame(msg)?;
        self.system.node.tell(self.node.id, &self.node.name, self.actor, bytes).await.map_err(|e| self.name_errors(e))
    }

    fn tell_frame<M>(&self, msg: &M) -> Result<EncodedFrame, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let format = A::format();
        let bytes = encode_message(MessageHead::Tell { target: self.actor }, WireId(M::WIRE_ID), format, |buf| {
            format.encode_into(msg, buf, M::NAME)
        })?;
        check_size(bytes, self.node.max_frame)
    }

    /// Before a call: an actor that was here is gone (`ActorNotFound`), and a handle that
    /// came from the network links to its node first (until `deadline`).
    async fn ready(&self, deadline: tokio::time::Instant) -> Result<(), ClusterError> {
        if self.node.id == self.system.node_id() {
            return Err(ClusterError::ActorNotFound { actor: self.actor, node: self.node.name.clone() });
        }
        if !self.unlinked {
            return Ok(());
        }
        let mut changes = self.system.watch_peers();
        loop {
            match self.system.peer(&self.node.name) {
                Some(p) if p.id == self.node.id => return Ok(()),
                Some(_) => return Err(ClusterError::NodeRestarted { node: self.node.name.clone() }),
                None => {}
            }
            if self.node_restarted() {
                return Err(ClusterError::NodeRestarted { node: self.node.name.clone() });
            }
            if let Some(m) = self.system.membership().member(&self.node.name) {
                self.system.node.connect_to(Some(&m.name), &m.addr);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ClusterError::Shutdown),
                Err(_) => return Err(ClusterError::LinkDown { node: self.node.name.clone() }),
            }
        }
    }

    /// True if the node incarnation this handle names is gone for good: it is not linked,
    /// and another incarnation of its node is known, or membership marked it down or
    /// removed, or no longer lists it. Nothing sent through this handle can reach the actor
    /// any more (a handle to a node that has not joined yet looks the actor up instead).
    pub(crate) fn node_gone(&self) -> bool {
        if self.system.node.peers.contains(self.node.id) {
            return false;
        }
        // Unlinked, and marked down, removed, or no longer a member at all (forgotten once
        // its removal was retained long enough): it cannot be reached again.
        self.node_restarted()
            || self
                .system
                .membership()
                .member(&self.node.name)
                .is_none_or(|m| m.id == self.node.id && matches!(m.status, MemberStatus::Down | MemberStatus::Removed))
    }

    /// True if another incarnation of the actor's node is known (linked, or in membership):
    /// the one this handle names is gone for good.
    fn node_restarted(&self) -> bool {
        let newer = |id: NodeId| id != self.node.id;
        self.system.peer(&self.node.name).is_some_and(|p| newer(p.id))
            || self.system.membership().member(&self.node.name).is_some_and(|m| newer(m.id))
    }

    /// Turns what the peer answered, or a dropped link, into the error that names this actor.
    fn name_errors(&self, e: ClusterError) -> ClusterError {
        if let ClusterError::LinkDown { node } = e {
            return if self.node_restarted() {
                ClusterError::NodeRestarted { node }
            } else {
                ClusterError::LinkDown { node }
            };
        }
        let ClusterError::Remote { node, error } = e else { return e };
        match error.kind {
            RemoteErrorKind::UnknownActor => ClusterError::ActorNotFound { actor: self.actor, node },
            RemoteErrorKind::UnknownMessage => ClusterError::MessageNotAccepted { message: error.detail, node },
            RemoteErrorKind::Decode => {
                ClusterError::Decode { what: format!("message on node `{node}`"), detail: error.detail }
            }
            RemoteErrorKind::ActorStopped => ClusterError::ActorStopped,
            RemoteErrorKind::Overloaded => ClusterError::Overloaded { node, detail: error.detail },
            RemoteErrorKind::Encode
            | RemoteErrorKind::UnknownActorType
            | RemoteErrorKind::TooLarge
            | RemoteErrorKind::ForwardFailed
            | RemoteErrorKind::IdReused => ClusterError::Remote { node, error },
        }
    }
}
