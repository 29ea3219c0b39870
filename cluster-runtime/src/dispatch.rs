//! The generic functions the attributes' registrations point to: build an actor from its
//! serialized state, and decode a message and deliver it to an actor's mailbox.
//!
//! They know actors, formats and mailboxes, not nodes: the caller (the node's actor table)
//! decides ids, spawns reply tasks and keeps its tables.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::{ActorContext, ActorFutureExt, Addr, AsyncContext};
use tokio_util::sync::CancellationToken;

use crate::actor::{ClusterMessage, DistributedActor, Handles, Probe, WireType};
use crate::error::{RemoteError, RemoteErrorKind};
use crate::format::Format;

/// A type-erased `Addr<A>`.
pub type ErasedAddr = Arc<dyn Any + Send + Sync>;

/// The reply of an ask, once the handler has run: the encoded result, or why there is none.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, RemoteError>>>>;

/// Runs a callback when the actor it was given to stops (when its context is dropped).
pub struct StopNotice(Option<Box<dyn FnOnce()>>);

impl StopNotice {
    /// A notice that calls `f` when the actor stops.
    pub fn new(f: impl FnOnce() + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    /// A notice that does nothing.
    pub fn none() -> Self {
        Self(None)
    }
}

impl Drop for StopNotice {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl std::fmt::Debug for StopNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopNotice")
    }
}

/// Stops an actor and tells when it has stopped.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    /// Cancel to stop the actor.
    pub stop: CancellationToken,
    /// Cancelled once the actor has stopped.
    pub stopped: CancellationToken,
}

impl StopHandle {
    /// Stops the actor and waits until it has stopped (after the message it is handling).
    pub async fn stop_and_wait(&self) {
        self.stop.cancel();
        self.stopped.cancelled().await;
    }

    /// The watch to start the actor under: `notice` runs once it has stopped, after this
    /// handle reports it stopped.
    pub fn watch(&self, notice: StopNotice) -> Watch {
        let stopped = self.stopped.clone();
        let notice = StopNotice::new(move || {
            drop(notice);
            stopped.cancel();
        });
        Watch { notice, stop: self.stop.clone() }
    }
}

/// How the node watches an actor it hosts: `notice` runs when the actor stops, and
/// cancelling `stop` stops it.
#[derive(Debug)]
pub struct Watch {
    /// Runs when the actor stops.
    pub notice: StopNotice,
    /// Cancelled to stop the actor.
    pub stop: CancellationToken,
}

/// Starts `actor` under `watch`.
///
/// The watch lives in a future spawned on the actor's context: it stops the actor when
/// `stop` is cancelled, and actix drops it when the actor has stopped for any reason (an
/// explicit stop is not held up by spawned futures), which runs the notice.
pub fn start_watched<A: DistributedActor>(actor: A, watch: Watch) -> Addr<A> {
    A::create(move |ctx: &mut A::Context| {
        let Watch { notice, stop } = watch;
        let stopped = actix::fut::wrap_future::<_, A>(async move {
            stop.cancelled().await;
            drop(notice);
        });
        ctx.spawn(stopped.map(|(), _actor, ctx| ctx.stop()));
        actor
    })
}

/// Builds an actor of type `A` from its serialized state and starts it under `watch`.
/// Generated registrations point here.
pub fn spawn_from_state<A: DistributedActor>(
    format: Format,
    state: &[u8],
    watch: Watch,
) -> Result<ErasedAddr, RemoteError> {
    let actor: A =
        format.decode(state, A::NAME).map_err(|e| RemoteError::new(RemoteErrorKind::Decode, e.to_string()))?;
    Ok(Arc::new(start_watched(actor, watch)))
}

/// Decodes a message of type `M` and delivers it to the actor behind `target` (an
/// `Addr<A>`). For an ask, returns the future of the encoded reply. Generated
/// registrations point here.
pub fn dispatch<A, M>(
    target: &(dyn Any + Send + Sync),
    format: Format,
    payload: &[u8],
    ask: bool,
) -> Result<Option<ReplyFuture>, RemoteError>
where
    A: Handles<M>,
    M: ClusterMessage,
{
    let Some(addr) = target.downcast_ref::<Addr<A>>() else {
        return Err(RemoteError::new(RemoteErrorKind::UnknownMessage, format!("actor is not a `{}`", A::NAME)));
    };
    let msg: M =
        format.decode(payload, M::NAME).map_err(|e| RemoteError::new(RemoteErrorKind::Decode, e.to_string()))?;
    if !ask {
        addr.do_send(msg);
        return Ok(None);
    }
    let response = addr.send(msg);
    Ok(Some(Box::pin(async move {
        match response.await {
            Ok(result) => {
                format.encode(&result, "reply").map_err(|e| RemoteError::new(RemoteErrorKind::Encode, e.to_string()))
            }
            Err(_) => Err(RemoteError::new(RemoteErrorKind::ActorStopped, "the actor stopped before replying")),
        }
    })))
}

/// Whether `A`'s handler of `M` answers when it returns: its result type is the message's
/// result itself (or `MessageResult`), not a future the actor runs later. Then a message
/// sent as a tell has been handled once a probe sent after it is answered. Generated
/// registrations point here.
pub fn handled_in_order<A, M>() -> bool
where
    A: Handles<M>,
    M: ClusterMessage,
    <A as actix::Handler<M>>::Result: 'static,
{
    use std::any::TypeId;
    let result = TypeId::of::<<A as actix::Handler<M>>::Result>();
    result == TypeId::of::<M::Result>() || result == TypeId::of::<actix::MessageResult<M>>()
}

/// The future of a probe: true once the actor handled it, false if the actor stopped.
pub type ProbeFuture = Pin<Box<dyn Future<Output = bool>>>;

/// Sends a probe to the actor behind `target` (an `Addr<A>`). Generated registrations
/// point here.
pub fn probe<A: DistributedActor>(target: &(dyn Any + Send + Sync)) -> Option<ProbeFuture> {
    let addr = target.downcast_ref::<Addr<A>>()?.clone();
    Some(Box::pin(async move { addr.send(Probe).await.is_ok() }))
}

/// The serialized state of an actor, once it answered (`Err`: it has stopped, or its state
/// does not serialize).
pub type StateFuture = Pin<Box<dyn Future<Output = Result<(Format, Vec<u8>), String>>>>;

/// Serializes `actor` in its type's format. Generated `TakeState` handlers call it.
pub fn encode_state<A: DistributedActor>(actor: &A) -> Result<Vec<u8>, String> {
    A::format().encode(actor, A::NAME).map_err(|e| e.to_string())
}

/// The serialized `Default` of `A`: what it restarts from without replicas. Generated
/// registrations point here.
pub fn default_state<A: DistributedActor + Default>() -> Result<Vec<u8>, String> {
    encode_state(&A::default())
}

/// Asks the actor behind `target` (an `Addr<A>`) for its serialized state, in mailbox
/// order. Generated registrations point here.
pub fn take_state<A: DistributedActor>(target: &(dyn Any + Send + Sync)) -> Option<StateFuture> {
    let addr = target.downcast_ref::<Addr<A>>()?.clone();
    Some(Box::pin(async move {
        match addr.send(crate::actor::TakeState).await {
            Ok(state) => state.map(|bytes| (A::format(), bytes)),
            Err(_) => Err(format!("the `{}` stopped before its state was taken", A::NAME)),
        }
    }))
}

/// Builds the keyed actor `key` of type `A` and starts it under `watch`. Generated keyed
/// registrations point here.
pub fn spawn_keyed<A: crate::actor::KeyedActor>(key: &str, watch: Watch) -> ErasedAddr {
    Arc::new(start_watched(A::from_key(key), watch))
}

/// Compiles only if `T` can cross the network. Used by generated code, with the user's spans.
pub fn assert_wire_type<T: WireType>() {}
