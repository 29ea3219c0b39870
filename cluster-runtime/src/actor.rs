//! The traits `#[cluster_message]` and `#[distributed_actor]` implement. Traits only: the
//! functions generated code calls are in [`dispatch`](crate::dispatch), the handles in
//! [`handle`](crate::handle).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, MailboxError, Message};
use serde::{de::DeserializeOwned, Serialize};

use crate::format::Format;

/// A message that can cross the network. Implemented by `#[cluster_message]`.
///
/// The wire id is computed at compile time from [`NAME`](Self::NAME), which defaults to the
/// type's module path and name and can be pinned with `#[cluster_message(name = "...")]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a cluster message",
    label = "not a cluster message",
    note = "add `#[cluster_message(result = \"...\")]` to the definition of `{Self}`"
)]
pub trait ClusterMessage: Message<Result: WireType + Send> + WireType + Send + 'static {
    /// The stable name the wire id is derived from.
    const NAME: &'static str;
    /// The stable 64-bit wire id.
    const WIRE_ID: u64;
}

/// The flow-control probe: the node sends it through an actor's mailbox and learns, when
/// it is answered, that everything sent before it has been handled. `#[distributed_actor]`
/// implements its (empty) handler.
#[derive(Debug)]
pub struct Probe;

impl Message for Probe {
    type Result = ();
}

/// Asks an actor for its serialized state, in mailbox order: everything sent before it has
/// been handled when it is answered. `#[distributed_actor]` implements its handler.
#[derive(Debug)]
pub struct TakeState;

impl Message for TakeState {
    type Result = Result<Vec<u8>, String>;
}

pub use crate::proto::placement::Placement;

/// An actor that can be spawned remotely and receive messages from the network.
/// Implemented by `#[distributed_actor]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a distributed actor",
    label = "not a distributed actor",
    note = "add `#[distributed_actor(messages(...))]` to the definition of `{Self}`"
)]
pub trait DistributedActor: Actor<Context = Context<Self>> + Handler<Probe> + Handler<TakeState> + WireType {
    /// The stable name the type id is derived from.
    const NAME: &'static str;
    /// The stable 64-bit type id used for remote spawn.
    const TYPE_ID: u64;

    /// Where new instances go when spawned through the cluster; set with
    /// `#[distributed_actor(placement = "...")]`.
    fn placement() -> Placement {
        Placement::Local
    }

    /// The format of this actor's messages, replies and state on the wire; set with
    /// `#[distributed_actor(format = "json")]`.
    fn format() -> Format {
        Format::Postcard
    }
}

/// A keyed (virtual) actor, as Orleans grains and Akka sharded entities: one activation per
/// key in the cluster, reached with `system.actor_for::<A>(key)` from any node and built
/// from its key when the first message for it arrives.
///
/// Mark the type `#[distributed_actor(keyed)]` (then implement this trait) or
/// `#[distributed_actor(keyed = "field")]` (then the attribute implements it: `Default`, with
/// the key in that field), so that any node can activate its keys.
pub trait KeyedActor: DistributedActor {
    /// The actor for `key`, as its activation starts.
    fn from_key(key: &str) -> Self;

    /// An activation that received no message for this long is passivated: it stops, and
    /// the next message for its key activates it again (`None`, the default: never).
    fn passivate_after() -> Option<std::time::Duration> {
        None
    }
}

/// Marks that actor `Self` accepts message `M` from the network. Implemented by
/// `#[distributed_actor(messages(M, ...))]` for every listed message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle `{M}` from the network",
    label = "`{M}` is not one of `{Self}`'s remote messages",
    note = "list it in `#[distributed_actor(messages({M}, ...))]` on `{Self}` and implement `Handler<{M}>` for it"
)]
pub trait Handles<M: ClusterMessage>: DistributedActor + Handler<M> {}

/// The reply of a local ask.
pub type LocalReply<M> = Pin<Box<dyn Future<Output = Result<<M as Message>::Result, MailboxError>>>>;

/// The message-side view of [`Handles`]: `M: RemoteMessage<A>` holds exactly when
/// `A: Handles<M>`. Handle methods are bounded by it, so the compiler takes the message type
/// from the argument and reports an unlisted message by name instead of guessing another.
#[diagnostic::on_unimplemented(
    message = "`{A}` does not handle `{Self}` from the network",
    label = "`{Self}` is not one of `{A}`'s remote messages",
    note = "list it in `#[distributed_actor(messages({Self}, ...))]` on `{A}` and implement `Handler<{Self}>` for it"
)]
pub trait RemoteMessage<A: DistributedActor>: ClusterMessage {
    /// Sends to a local actor (actix `Addr::send`), with an optional deadline.
    fn send_local(addr: &Addr<A>, msg: Self, timeout: Option<Duration>) -> LocalReply<Self>;
    /// Tells a local actor (actix `Addr::do_send`).
    fn do_send_local(addr: &Addr<A>, msg: Self);
}

impl<A: Handles<M>, M: ClusterMessage> RemoteMessage<A> for M {
    fn send_local(addr: &Addr<A>, msg: Self, timeout: Option<Duration>) -> LocalReply<Self> {
        match timeout {
            Some(t) => Box::pin(addr.send(msg).timeout(t)),
            None => Box::pin(addr.send(msg)),
        }
    }

    fn do_send_local(addr: &Addr<A>, msg: Self) {
        addr.do_send(msg)
    }
}

/// A type that can cross the network: it implements `Serialize` and `Deserialize`.
/// Generated code asserts it with the user's spans.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the network: it must implement `Serialize` and `Deserialize`",
    label = "missing `Serialize` / `Deserialize`",
    note = "add `#[derive(Serialize, Deserialize)]` (both are in `actix_cluster::prelude`)"
)]
pub trait WireType: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> WireType for T {}
