//! [`ActorRef`]: a location-transparent handle, either local or remote with the same
//! `send` / `do_send` / `tell` / `send_timeout` API.
//!
//! Sending a message the actor does not accept from the network does not compile: every
//! method requires `M: RemoteMessage<A>`, which holds only for the messages listed in
//! `#[distributed_actor(messages(...))]`.

use std::fmt;
use std::time::Duration;

use crate::dispatch::StopHandle;
use actix::{Addr, MailboxError};

use crate::actor::{DistributedActor, RemoteMessage};
use crate::error::{ClusterError, SendError};
use crate::handle::remote_addr::RemoteAddr;
use crate::ids::LocalActorId;
use crate::node::ClusterSystem;

enum Repr<A: DistributedActor> {
    Local { addr: Addr<A>, registered: Option<(ClusterSystem, LocalActorId)>, stop: StopHandle },
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
            Repr::Local { addr, registered, stop } => {
                Repr::Local { addr: addr.clone(), registered: registered.clone(), stop: stop.clone() }
            }
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
    pub(crate) fn local(addr: Addr<A>, registered: Option<(ClusterSystem, LocalActorId)>, stop: StopHandle) -> Self {
        Self { repr: Repr::Local { addr, registered, stop } }
    }

    pub(crate) fn remote(remote: RemoteAddr<A>) -> Self {
        Self { repr: Repr::Remote(remote) }
    }

    /// The actor's id on its node (`None` for a local actor started without a cluster system).
    pub fn actor_id(&self) -> Option<LocalActorId> {
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
        self.check_running()?;
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
        self.check_running()?;
        match &self.repr {
            Repr::Local { addr, .. } => {
                M::send_local(addr, msg, Some(timeout)).await.map_err(|e| mailbox_error(e, Some(timeout)))
            }
            Repr::Remote(r) => r.send_timeout(msg, timeout).await,
        }
    }

    /// Tells without waiting. Local: like actix's `do_send`. Remote: see [`RemoteAddr::do_send`].
    /// On failure the message comes back in the error.
    pub fn do_send<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        M: RemoteMessage<A>,
    {
        if let Err(error) = self.check_running() {
            return Err(SendError { error, message: msg });
        }
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
        self.check_running()?;
        match &self.repr {
            Repr::Local { addr, .. } => {
                M::do_send_local(addr, msg);
                Ok(())
            }
            Repr::Remote(r) => r.tell(msg).await,
        }
    }
}

impl<A: DistributedActor> ActorRef<A> {
    /// Stops the actor, wherever it runs, after the message it is handling (messages still
    /// in its mailbox are dropped), and returns once it has stopped. Fails with
    /// `ActorNotFound` if a remote actor no longer exists; stopping a local actor that
    /// already stopped does nothing.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        self.check_running()?;
        match &self.repr {
            Repr::Local { stop, .. } => {
                stop.stop_and_wait().await;
                Ok(())
            }
            Repr::Remote(r) => r.stop().await,
        }
    }

    /// Every call through a handle of a node that was shut down fails with `Shutdown`.
    fn check_running(&self) -> Result<(), ClusterError> {
        match &self.repr {
            Repr::Local { registered: Some((system, _)), .. } if system.node.life.is_shut_down() => {
                Err(ClusterError::Shutdown)
            }
            _ => Ok(()),
        }
    }
}

fn mailbox_error(e: MailboxError, timeout: Option<Duration>) -> ClusterError {
    match e {
        MailboxError::Closed => ClusterError::ActorStopped,
        MailboxError::Timeout => ClusterError::Timeout(timeout.unwrap_or_default()),
    }
}
