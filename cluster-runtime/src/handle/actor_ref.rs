//! [`ActorRef`]: a location-transparent handle, either local or remote with the same
//! `send` / `do_send` / `tell` / `send_timeout` API.
//!
//! Sending a message the actor does not accept from the network does not compile: every
//! method requires `M: RemoteMessage<A>`, which holds only for the messages listed in
//! `#[distributed_actor(messages(...))]`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::dispatch::StopHandle;
use actix::{Addr, MailboxError};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::actor::{DistributedActor, RemoteMessage};
use crate::error::{ClusterError, SendError};
use crate::handle::deferred::Deferred;
use crate::handle::keyed::Keyed;
use crate::handle::remote_addr::RemoteAddr;
use crate::ids::{ActorId, ActorTypeId, LocalActorId};
use crate::node::actors::{Gate, LocalSend, Resume};
use crate::node::{context, ClusterSystem};
use crate::proto::registry::record::ActorLocation;

/// A local actor reachable from the network: its node, its id there, its identity, and
/// the gate that is set while its messages are held (it is moving to another node).
#[derive(Clone)]
pub(crate) struct Hosted {
    pub(crate) system: ClusterSystem,
    pub(crate) id: LocalActorId,
    pub(crate) identity: ActorId,
    pub(crate) gate: Gate,
}

impl Hosted {
    /// True if the actor's messages are held; counts the message for its idleness otherwise.
    fn held(&self) -> bool {
        let held = self.gate.held.load(std::sync::atomic::Ordering::Acquire);
        if !held {
            self.gate.touch();
        }
        held
    }
}

/// Where a message from a local handle to a held actor goes once it is released.
enum Dest<A: DistributedActor> {
    /// The actor takes messages again.
    Here(Addr<A>),
    /// The actor moved: a handle to where it is.
    There(ActorRef<A>),
}

enum Repr<A: DistributedActor> {
    Local {
        addr: Addr<A>,
        registered: Option<Hosted>,
        stop: StopHandle,
    },
    Remote(RemoteAddr<A>),
    /// Being started where its placement says (`start_distributed()`).
    Deferred(Arc<Deferred<ActorRef<A>>>),
    /// A keyed actor: whichever activation its key has (`actor_for`).
    Keyed(Arc<Keyed<ActorRef<A>>>),
}

/// A location-transparent handle: the same API whether the actor runs on this node or on
/// another. Returned by `start_distributed()`, `ClusterSystem::spawn` and
/// `ClusterSystem::remote_actor`, and found by name with `system.registry().lookup(..)`.
///
/// It names the actor by its cluster-wide [`ActorId`] and keeps where the actor was last
/// known to run. An ask whose target node answers that the actor is not there, or whose
/// node incarnation is known gone (restarted, down) before it is sent, finds the actor
/// again through the registry and is sent there, within the same deadline; the awaiting
/// [`tell`](Self::tell) does the same for a gone node. A message that may have been
/// handled is never sent again: an ask whose link dropped fails with `LinkDown`.
///
/// Handles are serializable: an `ActorRef` inside a cluster message, a reply or a spawn
/// state arrives as a working handle on the receiving node (the reply-to pattern).
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
            Repr::Deferred(d) => Repr::Deferred(d.clone()),
            Repr::Keyed(k) => Repr::Keyed(k.clone()),
        };
        Self { repr }
    }
}

impl<A: DistributedActor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Local { registered, .. } => f
                .debug_struct("ActorRef::Local")
                .field("identity", &registered.as_ref().map(|r| r.identity))
                .field("id", &registered.as_ref().map(|r| r.id))
                .finish(),
            Repr::Remote(r) => f.debug_tuple("ActorRef::Remote").field(r).finish(),
            Repr::Deferred(d) => match d.get() {
                Some(Ok(started)) => started.fmt(f),
                Some(Err(e)) => f.debug_struct("ActorRef::NotStarted").field("error", e).finish(),
                None => f.write_str("ActorRef::Starting"),
            },
            Repr::Keyed(k) => f
                .debug_struct("ActorRef::Keyed")
                .field("actor", &A::NAME)
                .field("key", &k.key())
                .field("activation", &k.started())
                .finish(),
        }
    }
}

impl<A: DistributedActor> ActorRef<A> {
    pub(crate) fn local(addr: Addr<A>, registered: Option<Hosted>, stop: StopHandle) -> Self {
        Self { repr: Repr::Local { addr, registered, stop } }
    }

    pub(crate) fn remote(remote: RemoteAddr<A>) -> Self {
        Self { repr: Repr::Remote(remote) }
    }

    pub(crate) fn deferred(deferred: Arc<Deferred<ActorRef<A>>>) -> Self {
        Self { repr: Repr::Deferred(deferred) }
    }

    pub(crate) fn keyed(keyed: Arc<Keyed<ActorRef<A>>>) -> Self {
        Self { repr: Repr::Keyed(keyed) }
    }

    /// The identity and location of the actor, if it runs on `system`'s node.
    pub(crate) fn hosted_here(&self, system: &ClusterSystem) -> Option<(ActorId, ActorLocation)> {
        let h = match &self.repr {
            Repr::Local { registered: Some(h), .. } => h.clone(),
            Repr::Deferred(_) => return self.started()?.hosted_here(system),
            Repr::Keyed(k) => return k.started()?.hosted_here(system),
            // A handle from another node (or one that came over the network) to an actor here.
            Repr::Remote(r) => {
                let location = r.location();
                let here = location.node_id == system.node_id() && system.node.actors.type_of(location.actor).is_some();
                return here.then(|| (r.identity(), location));
            }
            Repr::Local { registered: None, .. } => return None,
        };
        if h.system.node_id() != system.node_id() {
            return None;
        }
        let location = ActorLocation { node: system.node_name().to_owned(), node_id: system.node_id(), actor: h.id };
        Some((h.identity, location))
    }

    /// The identity of the running actor this handle reaches: a keyed handle's current
    /// activation's own (the key's identity names the key, not one activation).
    pub(crate) fn running_identity(&self) -> Option<ActorId> {
        match &self.repr {
            Repr::Keyed(k) => k.started()?.identity(),
            _ => self.identity(),
        }
    }

    /// The actor this handle names now runs at `to` (a migration): a keyed handle sends
    /// there from now on (others keep their location, and are forwarded).
    pub(crate) fn note_moved(&self, to: &ActorRef<A>) {
        if let Repr::Keyed(k) = &self.repr {
            k.moved(to.clone());
        }
    }

    /// The key, for a handle from [`ClusterSystem::actor_for`].
    pub fn key(&self) -> Option<&str> {
        match &self.repr {
            Repr::Keyed(k) => Some(k.key()),
            _ => None,
        }
    }

    /// The started actor's handle, for a handle whose start is over and succeeded.
    fn started(&self) -> Option<&Self> {
        match &self.repr {
            Repr::Deferred(d) => d.get().and_then(|s| s.as_ref().ok()),
            _ => Some(self),
        }
    }

    /// For a handle still being started: waits until it is, and answers the started
    /// actor's handle (or why it could not start). Any other handle is answered at once.
    async fn ready(&self) -> Result<&Self, ClusterError> {
        match &self.repr {
            Repr::Deferred(d) => d.wait().await.as_ref().map_err(not_started::<A>),
            _ => Ok(self),
        }
    }

    /// True while the actor is still being started where its placement says (a handle
    /// from `start_distributed()` for a type placed on other nodes). Tells sent meanwhile
    /// go out, in order, once it runs; asks wait for it.
    pub fn is_starting(&self) -> bool {
        matches!(&self.repr, Repr::Deferred(d) if d.get().is_none())
    }

    /// Waits until the actor runs (for a handle still being started; any other handle is
    /// ready at once). Fails with [`ClusterError::NotStarted`] if it could not be started.
    pub async fn started_handle(&self) -> Result<Self, ClusterError> {
        self.ready().await.cloned()
    }

    /// The actor's id on its node (`None` for a local actor started without a cluster system).
    pub fn actor_id(&self) -> Option<LocalActorId> {
        match &self.repr {
            Repr::Local { registered, .. } => registered.as_ref().map(|r| r.id),
            Repr::Remote(r) => Some(r.actor_id()),
            Repr::Deferred(_) => self.started()?.actor_id(),
            Repr::Keyed(k) => k.started()?.actor_id(),
        }
    }

    /// The actor's cluster-wide identity, the same wherever it runs (`None` for a local
    /// actor started without a cluster system).
    pub fn identity(&self) -> Option<ActorId> {
        match &self.repr {
            Repr::Local { registered, .. } => registered.as_ref().map(|r| r.identity),
            Repr::Remote(r) => Some(r.identity()),
            Repr::Deferred(_) => self.started()?.identity(),
            Repr::Keyed(k) => Some(k.identity()),
        }
    }

    /// Where the actor runs, as far as this handle knows (`None` for a local actor started
    /// without a cluster system).
    pub fn location(&self) -> Option<ActorLocation> {
        match &self.repr {
            Repr::Local { registered, .. } => registered.as_ref().map(|r| ActorLocation {
                node: r.system.node_name().to_owned(),
                node_id: r.system.node_id(),
                actor: r.id,
            }),
            Repr::Remote(r) => Some(r.location()),
            Repr::Deferred(_) => self.started()?.location(),
            Repr::Keyed(k) => k.started()?.location(),
        }
    }

    /// True if the actor runs on this node.
    pub fn is_local(&self) -> bool {
        match &self.repr {
            Repr::Deferred(_) => self.started().is_some_and(Self::is_local),
            Repr::Keyed(k) => k.started().is_some_and(|a| a.is_local()),
            repr => matches!(repr, Repr::Local { .. }),
        }
    }

    /// The local actix address, if the actor runs on this node (`None` for a keyed handle,
    /// whose activation may change: use [`location`](Self::location)).
    pub fn local_addr(&self) -> Option<&Addr<A>> {
        match &self.repr {
            Repr::Local { addr, .. } => Some(addr),
            Repr::Remote(_) => None,
            Repr::Deferred(_) => self.started()?.local_addr(),
            Repr::Keyed(_) => None,
        }
    }

    /// The remote address, if the actor runs on another node (`None` for a keyed handle).
    pub fn remote_addr(&self) -> Option<&RemoteAddr<A>> {
        match &self.repr {
            Repr::Remote(r) => Some(r),
            Repr::Local { .. } => None,
            Repr::Deferred(_) => self.started()?.remote_addr(),
            Repr::Keyed(_) => None,
        }
    }

    /// The name of the node the actor runs on (`None` for a local actor started without a
    /// cluster system, and for a keyed handle: see [`location`](Self::location)).
    pub fn node_name(&self) -> Option<&str> {
        match &self.repr {
            Repr::Local { registered, .. } => registered.as_ref().map(|r| r.system.node_name()),
            Repr::Remote(r) => Some(r.node_name()),
            Repr::Deferred(_) => self.started()?.node_name(),
            Repr::Keyed(_) => None,
        }
    }

    /// Asks: sends `msg` and waits for the result. Remote asks time out after the node's
    /// request timeout; local asks wait like actix's `Addr::send`.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        if let Repr::Keyed(k) = &self.repr {
            let timeout = k.system().config().request_timeout();
            return Box::pin(Self::ask_keyed(k, msg, timeout)).await;
        }
        let this = self.ready().await?;
        this.check_running()?;
        match &this.repr {
            Repr::Local { addr, registered: Some(h), .. } if h.held() => {
                let timeout = h.system.config().request_timeout();
                Box::pin(Self::ask_held(h, addr, msg, timeout)).await
            }
            Repr::Local { addr, .. } => M::send_local(addr, msg, None).await.map_err(|e| mailbox_error(e, None)),
            Repr::Remote(r) => Self::ask_remote(r, msg, r.system().config().request_timeout()).await,
            Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("a started handle is not deferred or keyed"),
        }
    }

    /// Asks a remote actor; if its node answers that it is not there, or the node
    /// incarnation the handle names is gone before anything was sent, finds the actor again
    /// through the registry and asks there, within `timeout` in all.
    async fn ask_remote<M>(r: &RemoteAddr<A>, msg: M, timeout: Duration) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        if r.node_gone() {
            // Nothing was sent: the actor may run elsewhere now (recovered, moved).
            if let Some(moved) = Self::relocated(r, deadline).await {
                return moved.ask_by(msg, deadline).await;
            }
        }
        let first = r.ask(&msg, timeout).await;
        let Err(ClusterError::ActorNotFound { .. }) = &first else { return first };
        // Not handled there: safe to send again where the directory says it is now.
        match Self::relocated(r, deadline).await {
            Some(moved) => moved.ask_by(msg, deadline).await,
            None => first,
        }
    }

    /// Where the directory says the actor `r` names runs now, if somewhere else (looked up
    /// until `deadline`).
    async fn relocated(r: &RemoteAddr<A>, deadline: tokio::time::Instant) -> Option<Self> {
        match tokio::time::timeout_at(deadline, r.system().registry().relocate::<A>(r.identity())).await {
            Ok(Ok(Some(moved))) if moved.location() != Some(r.location()) => Some(moved),
            _ => None,
        }
    }

    /// Asks through a handle the registry just gave, until `deadline`, without looking again.
    async fn ask_by<M>(&self, msg: M, deadline: tokio::time::Instant) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match &self.repr {
            Repr::Local { addr, .. } => {
                M::send_local(addr, msg, Some(left)).await.map_err(|e| mailbox_error(e, Some(left)))
            }
            Repr::Remote(there) => there.ask(&msg, left).await,
            Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("the registry answers started handles"),
        }
    }

    /// Asks with an explicit deadline, local or remote.
    pub async fn send_timeout<M>(&self, msg: M, timeout: Duration) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        if let Repr::Keyed(k) = &self.repr {
            return Box::pin(Self::ask_keyed(k, msg, timeout)).await;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let this = match tokio::time::timeout_at(deadline, self.ready()).await {
            Ok(ready) => ready?,
            Err(_) => return Err(ClusterError::Timeout(timeout)),
        };
        this.check_running()?;
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        match &this.repr {
            Repr::Local { addr, registered: Some(h), .. } if h.held() => {
                Box::pin(Self::ask_held(h, addr, msg, timeout)).await
            }
            Repr::Local { addr, .. } => {
                M::send_local(addr, msg, Some(timeout)).await.map_err(|e| mailbox_error(e, Some(timeout)))
            }
            Repr::Remote(r) => Self::ask_remote(r, msg, timeout).await,
            Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("a started handle is not deferred or keyed"),
        }
    }

    /// Tells without waiting. Local: like actix's `do_send`. Remote: see [`RemoteAddr::do_send`]
    /// (it does not look the actor up again: if its node is gone, the message comes back
    /// with `NodeRestarted` or `LinkDown`, and the awaiting [`tell`](Self::tell) will). While
    /// the actor is still being started, the message waits (in order with the other tells)
    /// and goes out once it runs. On failure the message comes back in the error.
    pub fn do_send<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        M: RemoteMessage<A>,
    {
        if let Err(error) = self.check_running() {
            return Err(SendError { error, message: msg });
        }
        match &self.repr {
            Repr::Local { addr, registered, .. } => {
                Self::tell_local(addr, registered.as_ref(), msg);
                Ok(())
            }
            Repr::Remote(r) => r.do_send(msg),
            Repr::Keyed(k) => Self::do_send_keyed(k, msg),
            Repr::Deferred(d) => {
                let mut waiting = Some(msg);
                let queued = d.queue_unless_started(|| {
                    let msg = waiting.take().expect("built once");
                    Box::new(move |actor: ActorRef<A>| {
                        Box::pin(async move {
                            if let Err(e) = actor.tell(msg).await {
                                tracing::warn!(actor = A::NAME, message = M::NAME, error = %e, "a tell sent while the actor was starting was lost");
                            }
                        })
                    })
                });
                let Some(started) = queued else { return Ok(()) };
                let msg = waiting.take().expect("not queued");
                match started {
                    Ok(actor) => actor.do_send(msg),
                    Err(cause) => Err(SendError { error: not_started::<A>(cause), message: msg }),
                }
            }
        }
    }

    /// Tells, waiting for room in the link's queue if the actor is remote (and for the
    /// actor to run if it is still being started). If the node incarnation the handle names
    /// is gone, the actor is looked up again through the registry first and told where it
    /// runs now.
    pub async fn tell<M>(&self, msg: M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        // The rare paths are boxed: this future stays as small as the tell itself.
        let this = match &self.repr {
            Repr::Keyed(k) => return Box::pin(Self::tell_keyed(k, msg)).await,
            Repr::Deferred(_) => Box::pin(self.ready()).await?,
            _ => self,
        };
        this.check_running()?;
        match &this.repr {
            Repr::Local { addr, registered, .. } => {
                Self::tell_local(addr, registered.as_ref(), msg);
                Ok(())
            }
            Repr::Remote(r) => match r.tell_ref(&msg).await {
                Err(e @ (ClusterError::NodeRestarted { .. } | ClusterError::LinkDown { .. })) if r.node_gone() => {
                    Box::pin(Self::tell_elsewhere(r, msg, e)).await
                }
                told => told,
            },
            Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("a started handle is not deferred or keyed"),
        }
    }

    /// A tell that could not be queued for a node incarnation that is gone: told where the
    /// directory says the actor runs now, or failed with `e` if it knows no other place.
    async fn tell_elsewhere<M>(r: &RemoteAddr<A>, msg: M, e: ClusterError) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let deadline = tokio::time::Instant::now() + r.system().config().request_timeout();
        let Some(moved) = Self::relocated(r, deadline).await else { return Err(e) };
        match &moved.repr {
            Repr::Local { addr, .. } => {
                M::do_send_local(addr, msg);
                Ok(())
            }
            Repr::Remote(there) => there.tell(msg).await,
            Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("the registry answers started handles"),
        }
    }
}

impl<A: DistributedActor> ActorRef<A> {
    /// Stops the actor, wherever it runs, after the message it is handling (messages still
    /// in its mailbox are dropped), and returns once it has stopped. Fails with
    /// `ActorNotFound` if a remote actor no longer exists; stopping a local actor that
    /// already stopped does nothing.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        if let Repr::Keyed(k) = &self.repr {
            // The current activation, if any; the next message activates the key again.
            return match k.started() {
                Some(activation) => Box::pin(activation.stop()).await,
                None => Ok(()),
            };
        }
        let this = self.ready().await?;
        this.check_running()?;
        match &this.repr {
            Repr::Local { stop, .. } => {
                stop.stop_and_wait().await;
                Ok(())
            }
            Repr::Remote(r) => r.stop().await,
            Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("a started handle is not deferred or keyed"),
        }
    }

    /// Every call through a handle of a node that was shut down fails with `Shutdown`.
    fn check_running(&self) -> Result<(), ClusterError> {
        match &self.repr {
            Repr::Local { registered: Some(r), .. } if r.system.node.life.is_shut_down() => Err(ClusterError::Shutdown),
            Repr::Deferred(d) => match d.get() {
                Some(Ok(started)) => started.check_running(),
                Some(Err(cause)) => Err(not_started::<A>(cause)),
                None => Ok(()),
            },
            Repr::Keyed(k) if k.system().node.life.is_shut_down() => Err(ClusterError::Shutdown),
            _ => Ok(()),
        }
    }
}

/// Local handles to an actor whose messages are held (it is moving): the message waits with
/// the others and goes where the actor is once released, in order.
impl<A: DistributedActor> ActorRef<A> {
    /// Keeps `f` (which owns the message) with the actor's held messages; runs it now if the
    /// actor is no longer held.
    fn park(h: &Hosted, addr: &Addr<A>, f: impl FnOnce(Dest<A>) + Send + 'static) {
        let system = h.system.clone();
        let identity = h.identity;
        let send: LocalSend = Box::new(move |resume| match resume {
            Resume::Here(erased) => {
                if let Some(addr) = erased.downcast_ref::<Addr<A>>() {
                    f(Dest::Here(addr.clone()));
                }
            }
            Resume::There(to) => f(Dest::There(system.handle_at(identity, to.clone()))),
        });
        if let Err((send, moved)) = h.system.node.actors.park_local(h.id, send) {
            match moved {
                Some(to) => send(Resume::There(&to)),
                None => {
                    let erased: crate::dispatch::ErasedAddr = Arc::new(addr.clone());
                    send(Resume::Here(&erased));
                }
            }
        }
    }

    /// Tells a local actor: into its mailbox, or with its held messages if it is moving.
    fn tell_local<M: RemoteMessage<A>>(addr: &Addr<A>, hosted: Option<&Hosted>, msg: M) {
        match hosted {
            Some(h) if h.held() => Self::tell_held(h, addr, msg),
            _ => M::do_send_local(addr, msg),
        }
    }

    fn tell_held<M: RemoteMessage<A>>(h: &Hosted, addr: &Addr<A>, msg: M) {
        Self::park(h, addr, move |dest| match dest {
            Dest::Here(addr) => M::do_send_local(&addr, msg),
            Dest::There(there) => {
                if let Err(back) = there.do_send(msg) {
                    // Out of credit there: wait for it rather than lose the message.
                    actix::spawn(async move {
                        if let Err(e) = there.tell(back.message).await {
                            tracing::warn!(actor = A::NAME, error = %e, "a tell to a moved actor was lost");
                        }
                    });
                }
            }
        });
    }

    async fn ask_held<M: RemoteMessage<A>>(
        h: &Hosted,
        addr: &Addr<A>,
        msg: M,
        timeout: Duration,
    ) -> Result<M::Result, ClusterError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        Self::park(h, addr, move |dest| {
            actix::spawn(async move {
                let answer = match dest {
                    Dest::Here(addr) => {
                        M::send_local(&addr, msg, Some(timeout)).await.map_err(|e| mailbox_error(e, Some(timeout)))
                    }
                    Dest::There(there) => there.send_timeout(msg, timeout).await,
                };
                let _ = tx.send(answer);
            });
        });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ClusterError::ActorStopped),
            Err(_) => Err(ClusterError::Timeout(timeout)),
        }
    }
}

/// Keyed handles: calls go to the key's current activation; one that is gone is replaced
/// (found again, or activated anew) and the call goes to the next one when it certainly did
/// not reach the old one.
impl<A: DistributedActor> ActorRef<A> {
    async fn ask_keyed<M>(k: &Keyed<ActorRef<A>>, msg: M, timeout: Duration) -> Result<M::Result, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut activation = k.current();
        for first in [true, false] {
            let started = match tokio::time::timeout_at(deadline, activation.wait()).await {
                Err(_) => return Err(ClusterError::Timeout(timeout)),
                Ok(Err(cause)) => {
                    k.renew(&activation);
                    return Err(not_started::<A>(cause));
                }
                Ok(Ok(started)) => started.clone(),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match &started.repr {
                Repr::Local { addr, registered, .. } => {
                    if first && !addr.connected() {
                        activation = k.renew(&activation);
                        continue;
                    }
                    // Held (moving, yielding, passivating): it waits with the held messages.
                    if let Some(h) = registered.as_ref().filter(|h| h.held()) {
                        return Box::pin(Self::ask_held(h, addr, msg, left)).await;
                    }
                    return M::send_local(addr, msg, Some(left)).await.map_err(|e| mailbox_error(e, Some(left)));
                }
                Repr::Remote(r) => {
                    if first && r.node_gone() {
                        activation = k.renew(&activation);
                        continue;
                    }
                    match r.ask(&msg, left).await {
                        // Not handled there: the next activation gets it.
                        Err(ClusterError::ActorNotFound { .. }) if first => {
                            activation = k.renew(&activation);
                        }
                        Err(e @ (ClusterError::LinkDown { .. } | ClusterError::NodeRestarted { .. })) => {
                            // It may have been handled: not sent again, but the next call finds
                            // the key's next activation.
                            k.renew(&activation);
                            return Err(e);
                        }
                        answered => return answered,
                    }
                }
                Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("activations are started handles"),
            }
        }
        Err(ClusterError::Timeout(timeout))
    }

    async fn tell_keyed<M>(k: &Keyed<ActorRef<A>>, msg: M) -> Result<(), ClusterError>
    where
        M: RemoteMessage<A>,
    {
        let mut activation = k.current();
        for first in [true, false] {
            let started = match activation.wait().await {
                Err(cause) => {
                    k.renew(&activation);
                    return Err(not_started::<A>(cause));
                }
                Ok(started) => started.clone(),
            };
            match &started.repr {
                Repr::Local { addr, registered, .. } => {
                    if first && !addr.connected() {
                        activation = k.renew(&activation);
                        continue;
                    }
                    Self::tell_local(addr, registered.as_ref(), msg);
                    return Ok(());
                }
                Repr::Remote(r) => match r.tell_ref(&msg).await {
                    // Not queued: the next activation gets it.
                    Err(ClusterError::NodeRestarted { .. } | ClusterError::LinkDown { .. }) if first => {
                        activation = k.renew(&activation);
                    }
                    told => return told,
                },
                Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("activations are started handles"),
            }
        }
        Err(ClusterError::Timeout(k.system().config().request_timeout()))
    }

    fn do_send_keyed<M>(k: &Keyed<ActorRef<A>>, msg: M) -> Result<(), SendError<M>>
    where
        M: RemoteMessage<A>,
    {
        let mut activation = k.current();
        let gone = match activation.get() {
            Some(Ok(started)) => match &started.repr {
                Repr::Local { addr, .. } => !addr.connected(),
                Repr::Remote(r) => r.node_gone(),
                _ => false,
            },
            Some(Err(_)) => true,
            None => false,
        };
        if gone {
            activation = k.renew(&activation);
        }
        match ActorRef::deferred(activation.clone()).do_send(msg) {
            Err(SendError {
                error:
                    ClusterError::NodeRestarted { .. } | ClusterError::LinkDown { .. } | ClusterError::NotStarted { .. },
                message,
            }) => ActorRef::deferred(k.renew(&activation)).do_send(message),
            sent => sent,
        }
    }
}

/// The error every call through a handle whose start failed returns.
fn not_started<A: DistributedActor>(cause: &Arc<ClusterError>) -> ClusterError {
    ClusterError::NotStarted { actor: A::NAME.to_owned(), cause: cause.clone() }
}

fn mailbox_error(e: MailboxError, timeout: Option<Duration>) -> ClusterError {
    match e {
        MailboxError::Closed => ClusterError::ActorStopped,
        MailboxError::Timeout => ClusterError::Timeout(timeout.unwrap_or_default()),
    }
}

/// How a handle crosses the network.
#[derive(Serialize, Deserialize)]
struct WireRef {
    identity: ActorId,
    actor_type: ActorTypeId,
    location: ActorLocation,
}

impl<A: DistributedActor> Serialize for ActorRef<A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Repr::Keyed(k) = &self.repr {
            return match k.started() {
                Some(activation) => activation.serialize(serializer),
                None => Err(S::Error::custom(format!(
                    "a handle to the `{}` of key `{}` cannot leave its node before it is activated (send it a message first)",
                    A::NAME,
                    k.key()
                ))),
            };
        }
        if self.is_starting() {
            return Err(S::Error::custom(format!(
                "a handle to a `{}` still being started cannot leave its node (await `started_handle()` first)",
                A::NAME
            )));
        }
        let (Some(identity), Some(location)) = (self.identity(), self.location()) else {
            return Err(S::Error::custom(format!(
                "a handle to a `{}` started without a cluster system, or whose start failed, cannot leave its node",
                A::NAME
            )));
        };
        WireRef { identity, actor_type: ActorTypeId(A::TYPE_ID), location }.serialize(serializer)
    }
}

impl<'de, A: DistributedActor> Deserialize<'de> for ActorRef<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = WireRef::deserialize(deserializer)?;
        if w.actor_type != ActorTypeId(A::TYPE_ID) {
            return Err(D::Error::custom(format!(
                "a handle to actor type {} where a handle to a `{}` was expected",
                w.actor_type,
                A::NAME
            )));
        }
        let node = context::decoder().ok_or_else(|| {
            D::Error::custom(
                "an ActorRef can only be decoded by a cluster node (in a message, reply or state it receives)",
            )
        })?;
        Ok(ClusterSystem { node }.handle_at(w.identity, w.location))
    }
}

/// Where an actor runs now, once found (`None` if nowhere is known).
pub(crate) type Located = std::pin::Pin<Box<dyn std::future::Future<Output = Option<ActorLocation>>>>;

/// Finds where an actor runs now (after a guaranteed message found it gone from where it
/// was).
#[derive(Clone)]
pub(crate) enum Locator {
    /// The registry's directory, asked by `find` (which knows the actor's type): made for
    /// every guaranteed send, so it allocates nothing.
    Registry { system: ClusterSystem, find: fn(ClusterSystem, ActorId) -> Located },
    /// A key's next activation.
    Keyed(Arc<dyn Fn() -> Located + Send + Sync>),
}

impl Locator {
    /// Looks for actor `identity`.
    pub(crate) fn locate(&self, identity: ActorId) -> Located {
        match self {
            Locator::Registry { system, find } => find(system.clone(), identity),
            Locator::Keyed(f) => f(),
        }
    }
}

/// [`Locator::Registry`]'s lookup for actors of type `A`.
fn relocate<A: DistributedActor>(system: ClusterSystem, identity: ActorId) -> Located {
    Box::pin(async move { system.registry().relocate::<A>(identity).await.ok().flatten()?.location() })
}

/// What the delivery service needs to know about a handle's actor.
pub(crate) struct Target {
    /// The node the handle belongs to.
    pub(crate) system: ClusterSystem,
    /// The actor's identity.
    pub(crate) identity: ActorId,
    /// Where it runs, as far as the handle knows.
    pub(crate) location: Arc<ActorLocation>,
    /// How to find it again.
    pub(crate) locator: Locator,
}

impl<A: DistributedActor> ActorRef<A> {
    /// The node of a started, registered handle (`None` for one being started, keyed, or
    /// not distributed).
    pub(crate) fn started_system(&self) -> Option<ClusterSystem> {
        match &self.repr {
            Repr::Local { registered: Some(h), .. } => Some(h.system.clone()),
            Repr::Remote(r) => Some(r.system().clone()),
            _ => None,
        }
    }

    /// The actor's identity, location and how to find it again, for a guaranteed send
    /// (waits for a handle still being started, and for a key's activation).
    pub(crate) async fn guaranteed_target(&self) -> Result<Target, ClusterError> {
        if let Repr::Keyed(k) = &self.repr {
            let started = match k.current().wait().await {
                Ok(started) => started.clone(),
                Err(cause) => return Err(not_started::<A>(cause)),
            };
            let location = started.location().ok_or(ClusterError::Shutdown)?;
            let keyed = k.clone();
            let locator = Locator::Keyed(Arc::new(move || {
                let keyed = keyed.clone();
                Box::pin(async move {
                    // The activation the message went to is gone: the key's next one.
                    let next = keyed.renew(&keyed.current());
                    let started = next.wait().await.as_ref().ok()?.clone();
                    started.location()
                })
            }));
            return Ok(Target {
                system: k.system().clone(),
                identity: k.identity(),
                location: Arc::new(location),
                locator,
            });
        }
        let this = self.ready().await?;
        let (system, identity, location) = match &this.repr {
            Repr::Local { registered: Some(h), .. } => {
                let location = Arc::new(ActorLocation {
                    node: h.system.node_name().to_owned(),
                    node_id: h.system.node_id(),
                    actor: h.id,
                });
                (h.system.clone(), h.identity, location)
            }
            Repr::Local { registered: None, .. } => {
                return Err(crate::error::RegistryError::NotDistributed(A::NAME.to_owned()).into())
            }
            Repr::Remote(r) => (r.system().clone(), r.identity(), r.shared_location()),
            Repr::Deferred(_) | Repr::Keyed(_) => unreachable!("a started handle is not deferred or keyed"),
        };
        let locator = Locator::Registry { system: system.clone(), find: relocate::<A> };
        Ok(Target { system, identity, location, locator })
    }
}
