//! The generic functions the attributes' registrations point to: build an actor from its
//! serialized state, and decode a message and deliver it to an actor's mailbox.
//!
//! They know actors, formats and mailboxes, not nodes: the caller (the node's actor table)
//! decides ids, spawns reply tasks and keeps its tables.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::{Addr, AsyncContext};

use crate::actor::{ClusterMessage, DistributedActor, Handles, WireType};
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

/// Starts `actor`; `notice` runs when it stops.
///
/// The notice lives in a future spawned on the actor's context, which actix drops when
/// the actor has stopped (an explicit stop is not held up by spawned futures).
pub fn start_watched<A: DistributedActor>(actor: A, notice: StopNotice) -> Addr<A> {
    A::create(move |ctx: &mut A::Context| {
        ctx.spawn(actix::fut::wrap_future::<_, A>(async move {
            let _notice = notice;
            std::future::pending::<()>().await;
        }));
        actor
    })
}

/// Builds an actor of type `A` from its serialized state and starts it; `notice` runs when
/// it stops. Generated registrations point here.
pub fn spawn_from_state<A: DistributedActor>(
    format: Format,
    state: &[u8],
    notice: StopNotice,
) -> Result<ErasedAddr, RemoteError> {
    let actor: A =
        format.decode(state, A::NAME).map_err(|e| RemoteError::new(RemoteErrorKind::Decode, e.to_string()))?;
    Ok(Arc::new(start_watched(actor, notice)))
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

/// Compiles only if `T` can cross the network. Used by generated code, with the user's spans.
pub fn assert_wire_type<T: WireType>() {}
