//! Typed handles: [`RemoteAddr`] for an actor on another node, and [`ActorRef`], which is
//! either local or remote with the same `send` / `do_send` / `tell` / `send_timeout` API.
//!
//! Sending a message the actor does not accept from the network does not compile: every
//! method requires `M: RemoteMessage<A>`, which holds only for the messages listed in
//! `#[distributed_actor(messages(...))]`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use actix::{Addr, MailboxError};

use crate::actor::{DistributedActor, RemoteMessage};
use crate::error::ClusterError;
use crate::node::{ClusterSystem, NodeId, PeerInfo};
use crate::proto::frame::{self, EncodedFrame, MessageHead};

/// A typed handle to an actor of type `A` on another node.
pub struct RemoteAddr<A> {
    system: ClusterSystem,
    node: PeerInfo,
    actor: u64,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for RemoteAddr<A> {
    fn clone(&self) -> Self {
        Self { system: self.system.clone(), node: self.node.clone(), actor: self.actor, _actor: PhantomData }
    }
}

impl<A> fmt::Debug for RemoteAddr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteAddr").field("node", &self.node.name).field("actor", &self.actor).finish()
    }
}

impl<A: DistributedActor> RemoteAddr<A> {
    pub(crate) fn new(system: ClusterSystem, node: PeerInfo, actor: u64) -> Self {
        Self { system, node, actor, _actor: PhantomData }
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
    pub fn actor_id(&self) -> u64 {
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
        let format = A::format();
        let target = self.actor;
        let reply = self
            .system
            .inner
            .request(self.node.id.0, timeout, |request| {
                frame::encode_message(MessageHead::Ask { request, target }, M::WIRE_ID, format, |buf| {
                    format.encode_into(&msg, buf, M::NAME)
                })
            })
            .await
            .map_err(|e| self.name_errors(e))?;
        match reply {
            crate::node::Reply::Value(bytes) => format.decode(&bytes, "reply"),
            crate::node::Reply::Spawned(_) => {
                Err(ClusterError::Decode { what: "reply".into(), detail: "node answered an ask with a spawn".into() })
            }
        }
    }

    /// Tells: queues `msg` without waiting. Fails with [`ClusterError::Backpressure`] if the
    /// link's queue is full and [`ClusterError::LinkDown`] if there is no link.
    pub fn do_send<M>(&self, msg: M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let bytes = self.tell_frame(&msg)?;
        self.system.inner.try_tell(self.node.id.0, &self.node.name, bytes)
    }

    /// Tells, waiting for room in the link's queue (backpressure) instead of failing.
    pub async fn tell<M>(&self, msg: M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let bytes = self.tell_frame(&msg)?;
        self.system.inner.tell(self.node.id.0, &self.node.name, bytes).await
    }

    fn tell_frame<M>(&self, msg: &M) -> Result<EncodedFrame, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let format = A::format();
        frame::encode_message(MessageHead::Tell { target: self.actor }, M::WIRE_ID, format, |buf| {
            format.encode_into(msg, buf, M::NAME)
        })
    }

    fn name_errors(&self, e: ClusterError) -> ClusterError {
        match e {
            ClusterError::LinkDown { .. } => ClusterError::LinkDown { node: self.node.name.clone() },
            ClusterError::ActorNotFound { node, .. } => ClusterError::ActorNotFound { actor: self.actor, node },
            other => other,
        }
    }
}

enum Repr<A: DistributedActor> {
    Local { addr: Addr<A>, registered: Option<(ClusterSystem, u64)> },
    Remote(RemoteAddr<A>),
}

/// A location-transparent handle: the same API whether the actor runs on this node or on
/// another. Returned by `start_distributed()` and `ClusterSystem::remote_actor`.
pub struct ActorRef<A: DistributedActor> {
    repr: Repr<A>,
}

impl<A: DistributedActor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        let repr = match &self.repr {
            Repr::Local { addr, registered } => Repr::Local { addr: addr.clone(), registered: registered.clone() },
            Repr::Remote(r) => Repr::Remote(r.clone()),
        };
        Self { repr }
    }
}

impl<A: DistributedActor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Local { registered, .. } => {
                f.debug_struct("ActorRef::Local").field("id", &registered.as_ref().map(|r| r.1)).finish()
            }
            Repr::Remote(r) => f.debug_tuple("ActorRef::Remote").field(r).finish(),
        }
    }
}

impl<A: DistributedActor> ActorRef<A> {
    pub(crate) fn local(addr: Addr<A>, registered: Option<(ClusterSystem, u64)>) -> Self {
        Self { repr: Repr::Local { addr, registered } }
    }

    pub(crate) fn remote(remote: RemoteAddr<A>) -> Self {
        Self { repr: Repr::Remote(remote) }
    }

    /// The actor's id on its node (`None` for a local actor started without a cluster system).
    pub fn actor_id(&self) -> Option<u64> {
        match &self.repr {
            Repr::Local { registered, .. } => registered.as_ref().map(|r| r.1),
            Repr::Remote(r) => Some(r.actor_id()),
        }
    }

    /// True if the actor runs on this node.
    pub fn is_local(&self) -> bool {
        matches!(self.repr, Repr::Local { .. })
    }

    /// The local actix address, if the actor runs on this node.
    pub fn local_addr(&self) -> Option<&Addr<A>> {
        match &self.repr {
            Repr::Local { addr, .. } => Some(addr),
            Repr::Remote(_) => None,
        }
    }

    /// The remote address, if the actor runs on another node.
    pub fn remote_addr(&self) -> Option<&RemoteAddr<A>> {
        match &self.repr {
            Repr::Remote(r) => Some(r),
            Repr::Local { .. } => None,
        }
    }

    /// The name of the node the actor runs on (`None` for a local actor started without a
    /// cluster system).
    pub fn node_name(&self) -> Option<&str> {
        match &self.repr {
            Repr::Local { registered, .. } => registered.as_ref().map(|(s, _)| s.node_name()),
            Repr::Remote(r) => Some(r.node_name()),
        }
    }

    /// Asks: sends `msg` and waits for the result. Remote asks time out after the node's
    /// request timeout; local asks wait like actix's `Addr::send`.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        match &self.repr {
            Repr::Local { addr, .. } => M::send_local(addr, msg, None).await.map_err(|e| mailbox_error(e, None)),
            Repr::Remote(r) => r.send(msg).await,
        }
    }

    /// Asks with an explicit deadline, local or remote.
    pub async fn send_timeout<M>(&self, msg: M, timeout: Duration) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        match &self.repr {
            Repr::Local { addr, .. } => {
                M::send_local(addr, msg, Some(timeout)).await.map_err(|e| mailbox_error(e, Some(timeout)))
            }
            Repr::Remote(r) => r.send_timeout(msg, timeout).await,
        }
    }

    /// Tells without waiting. Local: like actix's `do_send`. Remote: see [`RemoteAddr::do_send`].
    pub fn do_send<M>(&self, msg: M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        match &self.repr {
            Repr::Local { addr, .. } => {
                M::do_send_local(addr, msg);
                Ok(())
            }
            Repr::Remote(r) => r.do_send(msg),
        }
    }

    /// Tells, waiting for room in the link's queue if the actor is remote.
    pub async fn tell<M>(&self, msg: M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        match &self.repr {
            Repr::Local { addr, .. } => {
                M::do_send_local(addr, msg);
                Ok(())
            }
            Repr::Remote(r) => r.tell(msg).await,
        }
    }
}

fn mailbox_error(e: MailboxError, timeout: Option<Duration>) -> ClusterError {
    match e {
        MailboxError::Closed => ClusterError::ActorStopped,
        MailboxError::Timeout => ClusterError::Timeout(timeout.unwrap_or_default()),
    }
}
