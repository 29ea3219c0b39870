//! What the directory stores and says: keys, the location of an actor, the record a host
//! writes for each key it holds, and the registry's frames.

use serde::{Deserialize, Serialize};

use crate::format::{postcard_exact, Inexact};
use crate::ids::{ActorId, ActorTypeId, LocalActorId, NodeId};
use crate::proto::registry::conflict::{Holder, Registration, VersionVector};

/// The version of the registry's frames this build speaks, announced in the hello.
pub const VERSION: u16 = 2;

/// A directory key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DirKey {
    /// A name given with `register` (first writer wins).
    Name(String),
    /// An actor's identity, so a handle whose cached location is stale finds it again.
    Actor(ActorId),
    /// The activation of a keyed (virtual) actor: first writer wins, like a name.
    Keyed {
        /// The actor type.
        actor_type: ActorTypeId,
        /// The key.
        key: String,
    },
}

impl DirKey {
    /// The string the ring hashes to find the key's owner (fixed: changing it moves keys).
    pub fn ring_key(&self) -> String {
        match self {
            DirKey::Name(n) => format!("n/{n}"),
            DirKey::Actor(a) => format!("a/{a}"),
            DirKey::Keyed { actor_type, key } => format!("k/{}/{key}", actor_type.0),
        }
    }
}

impl std::fmt::Display for DirKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirKey::Name(n) => write!(f, "name `{n}`"),
            DirKey::Actor(a) => write!(f, "actor {a}"),
            DirKey::Keyed { actor_type, key } => write!(f, "key `{key}` of actor type {actor_type}"),
        }
    }
}

/// Where an actor runs: a node (by name and incarnation) and the actor's id there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorLocation {
    /// The node's name.
    pub node: String,
    /// The node's id (incarnation).
    pub node_id: NodeId,
    /// The actor's id on that node.
    pub actor: LocalActorId,
}

/// One directory entry, written by the node that hosts the actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The actor's cluster-wide identity.
    pub actor: ActorId,
    /// The actor's type.
    pub actor_type: ActorTypeId,
    /// Where it runs.
    pub location: ActorLocation,
    /// The host's wall-clock time when it wrote the record, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The writes that led to it.
    pub version: VersionVector,
}

impl Record {
    /// The record as the conflict rules see it.
    pub fn registration(&self) -> Registration {
        Registration {
            holder: Holder {
                node: self.location.node.clone(),
                node_id: self.location.node_id.0,
                actor: self.location.actor.0,
            },
            identity: self.actor.0,
            at_ms: self.at_ms,
            version: self.version.clone(),
        }
    }
}

/// What a node asks a key's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The host writes its record for `key` (first writer wins for names).
    Register {
        /// The key.
        key: DirKey,
        /// The record.
        record: Record,
    },
    /// The host removes its record for `key` (if it still names `actor`).
    Unregister {
        /// The key.
        key: DirKey,
        /// The actor whose record it was.
        actor: ActorId,
    },
    /// A migration: replace the record of `key` with `record` only if it still names `from`.
    Move {
        /// The key.
        key: DirKey,
        /// The location the record must name now.
        from: ActorLocation,
        /// The record at the new location.
        record: Record,
    },
    /// Where `key` is; with `watch`, the owner also reports every later change.
    Lookup {
        /// The key.
        key: DirKey,
        /// Report later changes too.
        watch: bool,
    },
}

impl Op {
    /// The key the operation is about.
    pub fn key(&self) -> &DirKey {
        match self {
            Op::Register { key, .. } | Op::Unregister { key, .. } | Op::Move { key, .. } | Op::Lookup { key, .. } => {
                key
            }
        }
    }
}

/// An owner's answer to an [`Op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Registered or unregistered.
    Done,
    /// The record of a lookup, if any.
    Found(Option<Record>),
}

/// Why an owner or host did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The name is held by another actor: its record.
    Taken(Box<Record>),
    /// The asker's membership view is not the owner's: try again once they agree.
    ViewMismatch,
    /// In the owner's view the key belongs to another node.
    NotOwner,
    /// The asked host does not run that actor (any more).
    NotHere,
    /// The directory did not answer in time.
    Timeout,
    /// No directory node is up (centralized architecture without a master).
    NoDirectory,
    /// A move found the record naming another location than the one it moves from.
    Superseded,
}

/// One registry frame, carried in `Frame::Service` on the registry channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryFrame {
    /// An operation for the key's owner, with the sender's view version.
    Request {
        /// The sender's request number, echoed in the reply.
        req: u64,
        /// The sender's view version.
        view: u64,
        /// What is asked.
        op: Op,
    },
    /// The owner's answer.
    Reply {
        /// The request answered.
        req: u64,
        /// The answer.
        result: Result<Answer, Refusal>,
    },
    /// An owner asks a host for the records it owns in view `view` (ownership moved).
    SyncRequest {
        /// The owner's view version.
        view: u64,
    },
    /// A host's records for the receiving owner in view `view`, in batches; the last batch
    /// has `last` set, and the owner then drops what the host no longer holds.
    Sync {
        /// The host's view version.
        view: u64,
        /// Records of this batch.
        records: Vec<(DirKey, Record)>,
        /// The last batch.
        last: bool,
    },
    /// The owner tells an interested node that `key` changed (`None`: removed).
    Changed {
        /// The key.
        key: DirKey,
        /// Its record now.
        record: Option<Record>,
    },
    /// The owner tells a host that its record for `key` lost a conflict (healed partition).
    Lost {
        /// The key.
        key: DirKey,
        /// The host's actor that lost.
        loser: ActorId,
        /// The record that won.
        winner: Box<Record>,
    },
    /// Asks the node hosting actor `actor` to register it under `name`.
    HostRegister {
        /// The asker's request number.
        req: u64,
        /// The name (or key) to register it under.
        key: DirKey,
        /// The actor's id on the host.
        actor: LocalActorId,
    },
    /// The host's answer to [`HostRegister`](Self::HostRegister).
    HostReply {
        /// The request answered.
        req: u64,
        /// The outcome.
        result: Result<(), Refusal>,
    },
}

/// A registry frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryFrameError {
    /// The bytes are not a registry frame.
    #[error("malformed registry frame: {0}")]
    Malformed(String),
    /// A valid frame was followed by extra bytes.
    #[error("malformed registry frame: {0} trailing bytes")]
    TrailingBytes(usize),
}

impl RegistryFrame {
    /// Encodes the frame (the body of a service frame).
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec fails only if serde reports an error, which these types never do.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a service frame body, rejecting trailing bytes.
    pub fn decode(body: &[u8]) -> Result<Self, RegistryFrameError> {
        postcard_exact(body).map_err(|e| match e {
            Inexact::Malformed(e) => RegistryFrameError::Malformed(e),
            Inexact::Trailing(n) => RegistryFrameError::TrailingBytes(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        let mut version = VersionVector::new();
        version.bump("node-1");
        Record {
            actor: ActorId(7),
            actor_type: ActorTypeId(9),
            location: ActorLocation { node: "node-1".into(), node_id: NodeId(3), actor: LocalActorId(7) },
            at_ms: 1_000,
            version,
        }
    }

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let frames = [
            RegistryFrame::Request {
                req: 1,
                view: 2,
                op: Op::Register { key: DirKey::Name("cart".into()), record: record() },
            },
            RegistryFrame::Reply { req: 1, result: Err(Refusal::Taken(Box::new(record()))) },
            RegistryFrame::Sync { view: 2, records: vec![(DirKey::Actor(ActorId(7)), record())], last: true },
            RegistryFrame::Changed { key: DirKey::Name("cart".into()), record: None },
        ];
        for f in frames {
            let bytes = f.encode();
            assert_eq!(RegistryFrame::decode(&bytes), Ok(f));
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(RegistryFrame::decode(&longer), Err(RegistryFrameError::TrailingBytes(1)));
        }
        assert!(matches!(RegistryFrame::decode(&[0xff, 0xff]), Err(RegistryFrameError::Malformed(_))));
    }

    #[test]
    fn ring_keys_are_fixed() {
        assert_eq!(DirKey::Name("cart-7".into()).ring_key(), "n/cart-7");
        assert_eq!(DirKey::Actor(ActorId(0xab)).ring_key(), "a/000000000000000000000000000000ab");
    }
}
