//! Errors by layer:
//!
//! - [`ConfigError`]: a setting was rejected while building the configuration;
//! - [`StartError`]: a node could not start (configuration, listener, type table);
//! - [`ClusterError`]: one call failed (a send, an ask, a remote spawn);
//! - [`RemoteError`]: what a peer answered when it refused one request, carried on the wire;
//! - `ProtocolError` (crate-private, in the transport layer): a peer broke the protocol
//!   and its link is closed.
//!
//! Each service adds its own error enum with a `From` into [`ClusterError`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{ActorId, LocalActorId};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration was rejected; the message says which setting and why.
    #[error("invalid cluster configuration: {0}")]
    Config(#[from] ConfigError),

    /// The node could not bind its listener; check that the address is free and local.
    #[error("cannot bind the cluster listener on {addr}: {source}")]
    Bind {
        /// The address the node tried to bind.
        addr: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// Two message types share one wire id. Give one of them a distinct `name = "..."`.
    #[error(
        "two cluster messages share wire id {id:#018x}: `{first}` and `{second}`; \
         give one of them a distinct #[cluster_message(name = \"...\")]"
    )]
    DuplicateMessageId {
        /// The wire id both types map to.
        id: u64,
        /// The first type (its Rust path and stable name).
        first: String,
        /// The second type (its Rust path and stable name).
        second: String,
    },

    /// Two actor types share one wire id. Give one of them a distinct `name = "..."`.
    #[error(
        "two distributed actors share type id {id:#018x}: `{first}` and `{second}`; \
         give one of them a distinct #[distributed_actor(name = \"...\")]"
    )]
    DuplicateActorId {
        /// The type id both actors map to.
        id: u64,
        /// The first type (its Rust path and stable name).
        first: String,
        /// The second type (its Rust path and stable name).
        second: String,
    },
}

/// Why one call (a send, an ask, a remote spawn) failed.
///
/// Network failures always surface as one of these variants, never as a panic or a hang.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node could not start (so that one `?` covers start-up and calls in a `main`).
    #[error(transparent)]
    Start(#[from] StartError),

    /// No node of that name is linked to this one. Check the name and that the node is up.
    #[error("unknown node `{0}`: no link to a node of that name")]
    UnknownNode(String),

    /// The remote node does not have this actor type registered (is it built with it?).
    #[error("actor type `{actor}` is not registered on node `{node}`")]
    ActorTypeNotRegistered {
        /// The stable name of the actor type.
        actor: String,
        /// The node that refused the spawn.
        node: String,
    },

    /// A payload could not be decoded (locally, or on the remote node as reported by it).
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's explanation.
        detail: String,
    },

    /// A value could not be encoded for the wire.
    #[error("cannot encode {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The encoder's explanation.
        detail: String,
    },

    /// No reply arrived within the deadline. The message may or may not have been processed.
    #[error("no reply within {0:?}")]
    Timeout(Duration),

    /// The link to the node is down (connection lost, node stopped or killed).
    #[error("link to node `{node}` is down")]
    LinkDown {
        /// The node whose link went down.
        node: String,
    },

    /// The node the handle names was restarted: its actors are gone with the old
    /// incarnation (the node's name is linked again, as a new incarnation). Spawn or look
    /// up the actor again.
    #[error("node `{node}` restarted; the actor this handle names is gone")]
    NodeRestarted {
        /// The node's name.
        node: String,
    },

    /// The node refused the request because this node reached one of its limits (asks in
    /// flight, actors spawned there, …); the detail names the limit. Retry later.
    #[error("node `{node}` refused the request: {detail}")]
    Overloaded {
        /// The refusing node.
        node: String,
        /// Which limit.
        detail: String,
    },

    /// The outbound queue to the node is full; retry later or use the awaiting `tell`.
    #[error("outbound queue to node `{node}` is full")]
    Backpressure {
        /// The node whose queue is full.
        node: String,
    },

    /// The target actor does not exist (anymore) on its node.
    #[error("actor {actor} does not exist on node `{node}`")]
    ActorNotFound {
        /// The actor id on that node.
        actor: LocalActorId,
        /// The node that was asked.
        node: String,
    },

    /// The target actor does not accept this message type from the network.
    #[error("actor on node `{node}` does not accept message `{message}` from the network")]
    MessageNotAccepted {
        /// The message's stable name or wire id.
        message: String,
        /// The node that refused the message.
        node: String,
    },

    /// The target actor has stopped; its mailbox is closed.
    #[error("the target actor has stopped")]
    ActorStopped,

    /// The remote node refused the request for a reason not covered above.
    #[error("node `{node}` refused the request: {error}")]
    Remote {
        /// The node that refused.
        node: String,
        /// What it answered.
        error: RemoteError,
    },

    /// The message (or spawn state) is larger than the receiving node accepts; it was not
    /// sent, and nothing else on the link was affected. Send less, or raise the receiver's
    /// `max_frame_size`.
    #[error("a frame of {size} bytes exceeds the {max} bytes the receiving node accepts")]
    TooLarge {
        /// The frame body's size.
        size: usize,
        /// The receiver's maximum frame body.
        max: usize,
    },

    /// No node could be chosen for a new actor.
    #[error(transparent)]
    Placement(#[from] PlacementError),

    /// The cluster registry refused or could not answer.
    #[error(transparent)]
    Registry(#[from] RegistryError),

    /// A live migration failed; the actor keeps running where it was.
    #[error(transparent)]
    Migration(#[from] MigrationError),

    /// The actor a handle from `start_distributed()` names could not be started where its
    /// type's placement says; every call through that handle fails with this.
    #[error("`{actor}` could not be started where its placement says: {cause}")]
    NotStarted {
        /// The stable name of the actor type.
        actor: String,
        /// Why the start failed.
        #[source]
        cause: std::sync::Arc<ClusterError>,
    },

    /// The cluster system has been shut down.
    #[error("the cluster system is shut down")]
    Shutdown,

    /// The call is not offered (the text says why and what to use instead).
    #[error("not supported: {0}")]
    Unsupported(String),

    /// The durable outbox could not keep a guaranteed message; it was not sent.
    #[error("the durable outbox could not keep the message: {0}")]
    Storage(String),
}

/// Why a migration failed; the actor keeps running at the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MigrationError {
    /// The actor refused to move (its prepare hook), or its state could not be serialized.
    #[error("the actor refused to move: {0}")]
    ActorRefused(String),
    /// The target could not build it.
    #[error("node `{node}` refused the actor: {reason}")]
    TargetRefused {
        /// The target.
        node: String,
        /// Why.
        reason: String,
    },
    /// The target did not answer in time, or went down.
    #[error("node `{0}` did not take the actor in time")]
    TargetUnavailable(String),
    /// The directory no longer named the actor's old location (it moved, or stopped).
    #[error("the directory no longer names the actor at its old location")]
    Superseded,
    /// The actor is already being migrated.
    #[error("the actor is already being migrated")]
    InProgress,
    /// The actor does not run where its handle says (it stopped or moved).
    #[error("the actor does not run where its handle says")]
    NotHere,
    /// The node the actor runs on did not answer the request to move it.
    #[error("node `{0}`, where the actor runs, did not answer")]
    Unanswered(String),
}

/// Why the cluster registry refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The name is registered to another actor (the first writer keeps it).
    #[error("the name `{name}` is taken by actor {holder} on node `{node}`")]
    Taken {
        /// The name.
        name: String,
        /// The actor that holds it.
        holder: ActorId,
        /// The node that runs that actor.
        node: String,
    },
    /// The name is bound to an actor of another type.
    #[error("the name `{name}` is bound to a `{found}`, not a `{expected}`")]
    WrongType {
        /// The name.
        name: String,
        /// The type asked for.
        expected: String,
        /// The type of the registered actor (its stable name, or its type id if this node
        /// does not know the type).
        found: String,
    },
    /// `unregister` was called for a name no actor on this node holds.
    #[error("no actor on this node is registered as `{0}`")]
    NotRegisteredHere(String),
    /// The actor was started without a cluster system (or its node stopped); it cannot be
    /// reached from the network, so it cannot be registered.
    #[error("actor `{0}` is not reachable from the network and cannot be registered")]
    NotDistributed(String),
    /// The node asked to register one of its actors no longer runs it.
    #[error("node `{node}` no longer runs actor {actor}")]
    NotHere {
        /// The node asked.
        node: String,
        /// The actor's id on that node.
        actor: LocalActorId,
    },
    /// No directory node is up (centralized architecture with no master up); cached and
    /// local entries still resolve.
    #[error("no directory node is up (no master is up)")]
    NoDirectory,
}

/// Why no member could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PlacementError {
    /// No member is up.
    #[error("no member is up to place the actor on")]
    NoMember,
    /// The named node is not an up member.
    #[error("node `{0}` is not an up member")]
    UnknownNode(String),
    /// No up member has the role.
    #[error("no up member has the role `{0}`")]
    NoRole(String),
    /// Consistent-hash placement was asked for without a key.
    #[error("consistent-hash placement needs a key: give one with `.key(..)` on the spawn")]
    NeedsKey,
    /// No placement policy of that name is registered in the configuration.
    #[error("no placement policy named `{0}`: register it with `ClusterConfig::new().placement_policy(..)`")]
    UnknownPolicy(String),
    /// The policy found no member for the actor.
    #[error("placement policy `{0}` chose no member")]
    PolicyDeclined(String),
}

/// A tell that could not be queued: why, and the message, handed back.
#[derive(thiserror::Error)]
#[error("{error}")]
pub struct SendError<M> {
    /// Why (`Backpressure` when the actor's credit or the link's queue is exhausted).
    pub error: ClusterError,
    /// The message that was not sent.
    pub message: M,
}

impl<M> SendError<M> {
    /// The message, to try again later.
    pub fn into_message(self) -> M {
        self.message
    }
}

impl<M> std::fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<M> From<SendError<M>> for ClusterError {
    fn from(e: SendError<M>) -> Self {
        e.error
    }
}

impl From<ConfigError> for ClusterError {
    fn from(e: ConfigError) -> Self {
        ClusterError::Start(StartError::Config(e))
    }
}

/// A rejected configuration setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The node name is empty or contains characters other than letters, digits, `-`, `_`, `.`.
    #[error("node name `{0}` is invalid: use 1-64 letters, digits, '-', '_' or '.'")]
    InvalidNodeName(String),
    /// The cluster name is empty or contains characters other than letters, digits, `-`, `_`, `.`.
    #[error("cluster name `{0}` is invalid: use 1-64 letters, digits, '-', '_' or '.'")]
    InvalidClusterName(String),
    /// The bind address is not `ip:port`.
    #[error("bind address `{0}` is not an `ip:port` socket address")]
    InvalidBindAddress(String),
    /// A seed node address is not `host:port`.
    #[error("seed node `{0}` is not a `host:port` address")]
    InvalidSeed(String),
    /// No bind address was configured.
    #[error("no bind address: call .bind(\"127.0.0.1:7001\") (port 0 picks a free port)")]
    MissingBind,
    /// The node's hello (its name, address and profile) would not fit in the frame a peer
    /// accepts before the handshake; the field named is the largest part of it.
    #[error("the node's hello would be {size} bytes, above the {max} bytes peers accept before the handshake; shorten `{field}`")]
    HelloTooLarge {
        /// The largest part of the hello.
        field: &'static str,
        /// The hello's encoded size at most.
        size: usize,
        /// What peers accept before the handshake.
        max: usize,
    },
    /// A size or duration is out of its allowed range.
    #[error("{setting} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The setting's name.
        setting: &'static str,
        /// The rejected value.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
}

/// What a peer answered when it refused one request; carried in an error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct RemoteError {
    /// What kind of failure.
    pub kind: RemoteErrorKind,
    /// A human-readable explanation.
    pub detail: String,
}

impl RemoteError {
    /// A refusal of `kind`, explained by `detail`.
    pub fn new(kind: RemoteErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
}

/// Why a remote node rejected one message or request; sent back in an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteErrorKind {
    /// No actor with that id exists on the node.
    UnknownActor,
    /// The actor does not accept a message with that wire id.
    UnknownMessage,
    /// The payload did not decode as the message type.
    Decode,
    /// The reply could not be encoded.
    Encode,
    /// No factory is registered for that actor type id.
    UnknownActorType,
    /// The actor stopped before replying.
    ActorStopped,
    /// The reply was larger than the asking node accepts.
    TooLarge,
    /// The request was refused because the sender reached one of this node's limits.
    Overloaded,
    /// The actor moved, and forwarding the ask to its new node failed: it may or may not
    /// have been handled there.
    ForwardFailed,
    /// A guaranteed message's id was used before for another payload (exactly-once).
    IdReused,
}

impl fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteErrorKind::UnknownActor => "unknown actor",
            RemoteErrorKind::UnknownMessage => "message not accepted",
            RemoteErrorKind::Decode => "cannot decode",
            RemoteErrorKind::Encode => "cannot encode the reply",
            RemoteErrorKind::UnknownActorType => "actor type not registered",
            RemoteErrorKind::ActorStopped => "actor stopped",
            RemoteErrorKind::TooLarge => "reply too large",
            RemoteErrorKind::Overloaded => "over a limit",
            RemoteErrorKind::ForwardFailed => "forwarding to the actor's new node failed",
            RemoteErrorKind::IdReused => "message id used before for another payload",
        })
    }
}
