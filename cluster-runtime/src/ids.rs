//! Typed ids, and the fast map keyed by them.
//!
//! Every number that names something on the wire or in a node's tables has its own type,
//! so a request id cannot be passed where an actor id is expected. On the wire each is its
//! inner integer (postcard encodes a newtype struct as its content).
//!
//! The maps keyed by these ids use a multiplicative hash (as in rustc's FxHash): keys are
//! random node ids or sequential numbers this node hands out itself, so SipHash's flooding
//! resistance buys nothing here and costs on every message.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $fmt:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
    };
}

id_type!(
    /// A node's id: random, new for every start of the node (its incarnation).
    NodeId(u128), "{:032x}"
);
id_type!(
    /// An actor's id on the node that runs it, handed out by that node. The cluster-wide
    /// identity, independent of where the actor runs, is its [`ActorId`].
    LocalActorId(u64), "{}"
);
id_type!(
    /// An actor's identity in the whole cluster, independent of where it runs: it stays the
    /// same when the actor moves, so a handle can find the actor again through the registry.
    /// Made unique by the node that first starts the actor (see [`ActorId::first`]).
    ActorId(u128), "{:032x}"
);
id_type!(
    /// A guaranteed message's id: the same for every copy of it (resends, re-routes), so a
    /// receiver can tell a copy from a new message. Random unless the sender names it
    /// ([`MessageId::from_key`]).
    MessageId(u128), "{:032x}"
);
id_type!(
    /// A request's id, unique among the requests one node sends.
    RequestId(u64), "{}"
);
id_type!(
    /// One link (connection) of a node, unique per node.
    LinkId(u64), "{}"
);
id_type!(
    /// A message type's stable wire id, computed at compile time from its stable name.
    WireId(u64), "{:#018x}"
);
id_type!(
    /// An actor type's stable id, computed at compile time from its stable name.
    ActorTypeId(u64), "{:#018x}"
);

impl MessageId {
    /// The id of the message named `key` by the application (an idempotency key such as an
    /// order number): the same key gives the same id on every node and every run.
    pub fn from_key(key: &str) -> Self {
        // Two FNV-1a passes with different offsets: 128 bits from the key's bytes.
        let pass =
            |offset: u64| key.bytes().fold(offset, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
        Self((u128::from(pass(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(pass(0x6c62_272e_07bb_0142)))
    }
}

impl ActorId {
    /// The identity of an actor first started on node `node` under local id `local`: the
    /// node id's high half (random per incarnation) and the local id, so that both sides of
    /// a remote spawn derive it without another message.
    pub fn first(node: NodeId, local: LocalActorId) -> Self {
        Self((node.0 & !u128::from(u64::MAX)) | u128::from(local.0))
    }
}

const K: u64 = 0x517c_c1b7_2722_0a95;

/// FxHash-style hasher.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` keyed by ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_the_high_bits() {
        // hashbrown takes its 7 control bits from the top of the hash.
        let tops: std::collections::HashSet<u64> = (1..=1000u64)
            .map(|i| {
                let mut h = IdHasher::default();
                h.write_u64(i);
                h.finish() >> 57
            })
            .collect();
        assert!(tops.len() > 100, "only {} distinct top-7-bit values", tops.len());
    }
}
