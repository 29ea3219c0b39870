//! The static type table: what `#[cluster_message]` and `#[distributed_actor]` submit
//! through `inventory`, checked for duplicate ids when a node starts. (The word "registry"
//! is kept for the cluster-wide registry of named actors.)

use std::any::Any;

use crate::dispatch::{ErasedAddr, ProbeFuture, ReplyFuture, StateFuture, Watch};
use crate::error::{RemoteError, StartError};
use crate::format::Format;
use crate::ids::{ActorTypeId, IdMap, WireId};

/// Builds and starts an actor from serialized state, under the node's watch.
pub type SpawnFn = fn(Format, &[u8], Watch) -> Result<ErasedAddr, RemoteError>;

/// Asks a type-erased `Addr` for its actor's serialized state.
pub type TakeStateFn = fn(&(dyn Any + Send + Sync)) -> Option<StateFuture>;

/// Sends the flow-control probe to a type-erased `Addr`.
pub type ProbeFn = fn(&(dyn Any + Send + Sync)) -> Option<ProbeFuture>;

/// Decodes a message and delivers it to a type-erased `Addr`; for an ask (`true`), returns
/// the future of the encoded reply.
pub type DispatchFn = fn(&(dyn Any + Send + Sync), Format, &[u8], bool) -> Result<Option<ReplyFuture>, RemoteError>;

/// A message type, submitted by `#[cluster_message]`.
#[derive(Debug)]
pub struct MessageRegistration {
    /// The stable name.
    pub name: &'static str,
    /// The wire id derived from the name.
    pub wire_id: u64,
    /// Where the type is defined (module path and identifier), for error messages.
    pub rust_path: &'static str,
}

/// An actor type, submitted by `#[distributed_actor]`.
#[derive(Debug)]
pub struct ActorRegistration {
    /// The stable name.
    pub name: &'static str,
    /// The type id derived from the name.
    pub type_id: u64,
    /// Where the type is defined, for error messages.
    pub rust_path: &'static str,
    /// The factory used for remote spawn.
    pub spawn: SpawnFn,
    /// Sends the flow-control probe.
    pub probe: ProbeFn,
    /// Asks for the actor's serialized state.
    pub take_state: TakeStateFn,
}

/// One (actor, message) pair the actor accepts from the network.
#[derive(Debug)]
pub struct HandlerRegistration {
    /// The actor's type id.
    pub actor_type_id: u64,
    /// The message's wire id.
    pub message_wire_id: u64,
    /// The message's stable name, for logs.
    pub message_name: &'static str,
    /// Decodes and delivers the message.
    pub dispatch: DispatchFn,
    /// Whether the handler's result is ready when it returns (not a future): then a tell
    /// is handled once a probe sent after it is answered.
    pub handled_in_order: fn() -> bool,
}

/// Builds a keyed actor from its key and starts it under a watch.
pub type KeyedSpawnFn = fn(&str, Watch) -> ErasedAddr;

/// A keyed (virtual) actor type, registered by `#[distributed_actor(keyed)]`: any node can
/// activate one of its keys (to deliver what reached a passivated activation).
#[derive(Debug)]
pub struct KeyedRegistration {
    /// The actor type's id.
    pub type_id: u64,
    /// Builds an activation from its key.
    pub activate: KeyedSpawnFn,
    /// How long an activation may sit idle before it is passivated.
    pub passivate_after: fn() -> Option<std::time::Duration>,
    /// The type's placement (keys placed by consistent hashing follow membership changes).
    pub placement: fn() -> crate::actor::Placement,
}

/// Serializes the state an actor restarts from.
pub type StateFn = fn() -> Result<Vec<u8>, String>;

/// An actor type's recovery policy, registered by `#[distributed_actor(recovery = ...)]`.
#[derive(Debug)]
pub struct RecoveryRegistration {
    /// The actor type's id.
    pub type_id: u64,
    /// `recovery = "restart"`: re-created on a surviving node when its node is lost.
    pub restart: bool,
    /// `replicas = N`: how many other nodes keep its latest snapshot.
    pub replicas: usize,
    /// `snapshot_every = "..."` in milliseconds; 0: a snapshot after each handled message.
    pub snapshot_every_ms: u64,
    /// The state it restarts from without replicas (its `Default`), for non-keyed types.
    pub restart_state: Option<StateFn>,
    /// Where it is re-created.
    pub placement: fn() -> crate::actor::Placement,
    /// Its state's format.
    pub format: fn() -> crate::format::Format,
    /// A keyed type (its replicas are kept per key and claimed by the key's next activation).
    pub keyed: bool,
}

impl RecoveryRegistration {
    /// The policy the snapshot bookkeeping follows.
    pub fn policy(&self) -> crate::proto::snapshot::RecoveryPolicy {
        use crate::proto::snapshot::SnapshotSchedule;
        let schedule = match self.snapshot_every_ms {
            0 => SnapshotSchedule::EveryMessage,
            ms => SnapshotSchedule::Every(std::time::Duration::from_millis(ms)),
        };
        crate::proto::snapshot::RecoveryPolicy { restart: self.restart, replicas: self.replicas, schedule }
    }
}

inventory::collect!(RecoveryRegistration);
inventory::collect!(KeyedRegistration);
inventory::collect!(MessageRegistration);
inventory::collect!(ActorRegistration);
inventory::collect!(HandlerRegistration);

/// The checked tables a node dispatches through.
#[derive(Debug, Default)]
pub struct TypeTable {
    messages: IdMap<u64, &'static MessageRegistration>,
    actors: IdMap<u64, &'static ActorRegistration>,
    handlers: IdMap<(u64, u64), &'static HandlerRegistration>,
    keyed: IdMap<u64, &'static KeyedRegistration>,
    recovery: IdMap<u64, &'static RecoveryRegistration>,
}

impl TypeTable {
    /// Collects every registration linked into this binary.
    pub fn from_inventory() -> Result<Self, StartError> {
        let mut table = Self::build(
            inventory::iter::<MessageRegistration>,
            inventory::iter::<ActorRegistration>,
            inventory::iter::<HandlerRegistration>,
        )?;
        for k in inventory::iter::<KeyedRegistration> {
            table.keyed.insert(k.type_id, k);
        }
        for r in inventory::iter::<RecoveryRegistration> {
            table.recovery.insert(r.type_id, r);
        }
        Ok(table)
    }

    /// The recovery policy of an actor type, if it has one.
    pub fn recovery(&self, type_id: ActorTypeId) -> Option<&'static RecoveryRegistration> {
        self.recovery.get(&type_id.0).copied()
    }

    /// How to activate keys of a keyed actor type.
    pub fn keyed(&self, type_id: ActorTypeId) -> Option<&'static KeyedRegistration> {
        self.keyed.get(&type_id.0).copied()
    }

    /// Every keyed actor type.
    pub fn keyed_types(&self) -> impl Iterator<Item = &'static KeyedRegistration> + '_ {
        self.keyed.values().copied()
    }

    /// Builds the tables, failing on the first wire id shared by two different types.
    pub fn build(
        messages: impl IntoIterator<Item = &'static MessageRegistration>,
        actors: impl IntoIterator<Item = &'static ActorRegistration>,
        handlers: impl IntoIterator<Item = &'static HandlerRegistration>,
    ) -> Result<Self, StartError> {
        let mut reg = TypeTable::default();
        // Sort so the error names the pair in a stable order whatever the link order.
        let mut messages: Vec<_> = messages.into_iter().collect();
        messages.sort_by_key(|m| (m.rust_path, m.name));
        for m in messages {
            if let Some(prev) = reg.messages.insert(m.wire_id, m) {
                if prev.rust_path != m.rust_path || prev.name != m.name {
                    return Err(StartError::DuplicateMessageId {
                        id: m.wire_id,
                        first: format!("{} (name \"{}\")", prev.rust_path, prev.name),
                        second: format!("{} (name \"{}\")", m.rust_path, m.name),
                    });
                }
            }
        }
        let mut actors: Vec<_> = actors.into_iter().collect();
        actors.sort_by_key(|a| (a.rust_path, a.name));
        for a in actors {
            if let Some(prev) = reg.actors.insert(a.type_id, a) {
                if prev.rust_path != a.rust_path || prev.name != a.name {
                    return Err(StartError::DuplicateActorId {
                        id: a.type_id,
                        first: format!("{} (name \"{}\")", prev.rust_path, prev.name),
                        second: format!("{} (name \"{}\")", a.rust_path, a.name),
                    });
                }
            }
        }
        for h in handlers {
            reg.handlers.insert((h.actor_type_id, h.message_wire_id), h);
        }
        Ok(reg)
    }

    /// The factory of an actor type.
    pub fn actor(&self, type_id: ActorTypeId) -> Option<&'static ActorRegistration> {
        self.actors.get(&type_id.0).copied()
    }

    /// How an actor type handles a message type, if it accepts it.
    pub fn handler(&self, actor_type: ActorTypeId, message: WireId) -> Option<&'static HandlerRegistration> {
        self.handlers.get(&(actor_type.0, message.0)).copied()
    }

    /// The registration of a message type.
    pub fn message(&self, wire_id: WireId) -> Option<&'static MessageRegistration> {
        self.messages.get(&wire_id.0).copied()
    }

    /// Number of registered message types.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Number of registered actor types.
    pub fn actor_count(&self) -> usize {
        self.actors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: MessageRegistration = MessageRegistration { name: "same", wire_id: 1, rust_path: "crate_a::Ping" };
    static B: MessageRegistration = MessageRegistration { name: "same", wire_id: 1, rust_path: "crate_b::Ping" };
    static C: MessageRegistration = MessageRegistration { name: "other", wire_id: 2, rust_path: "crate_c::Pong" };

    fn spawn_nothing(_: Format, _: &[u8], _: Watch) -> Result<ErasedAddr, RemoteError> {
        Ok(std::sync::Arc::new(()))
    }
    fn probe_nothing(_: &(dyn std::any::Any + Send + Sync)) -> Option<ProbeFuture> {
        None
    }
    fn no_state(_: &(dyn std::any::Any + Send + Sync)) -> Option<StateFuture> {
        None
    }
    static X: ActorRegistration = ActorRegistration {
        name: "x",
        type_id: 9,
        rust_path: "m::X",
        spawn: spawn_nothing,
        probe: probe_nothing,
        take_state: no_state,
    };
    static Y: ActorRegistration = ActorRegistration {
        name: "y",
        type_id: 9,
        rust_path: "m::Y",
        spawn: spawn_nothing,
        probe: probe_nothing,
        take_state: no_state,
    };

    #[test]
    fn distinct_ids_build() {
        let reg = TypeTable::build([&A, &C], [&X], []).expect("no duplicates");
        assert_eq!(reg.message_count(), 2);
        assert_eq!(reg.actor_count(), 1);
        assert!(reg.actor(ActorTypeId(9)).is_some());
    }

    #[test]
    fn duplicate_message_ids_name_both_types_in_any_order() {
        for order in [[&A, &B], [&B, &A]] {
            let err = TypeTable::build(order, [], []).expect_err("duplicate");
            let text = err.to_string();
            assert!(text.contains("crate_a::Ping") && text.contains("crate_b::Ping"), "{text}");
            assert!(text.find("crate_a").lt(&text.find("crate_b")), "stable order: {text}");
        }
    }

    #[test]
    fn duplicate_actor_ids_name_both_types() {
        let err = TypeTable::build([], [&X, &Y], []).expect_err("duplicate");
        assert!(matches!(err, StartError::DuplicateActorId { id: 9, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("m::X") && text.contains("m::Y"), "{text}");
    }
}
