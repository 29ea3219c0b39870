//! `system.actor_for::<A>(key)`: handles to keyed (virtual) actors, and how a key's
//! activation is found or made (see [`keyed`](super::keyed) for the handle's state).

use std::sync::Arc;

use crate::actor::{KeyedActor, Placement};
use crate::error::{ClusterError, RegistryError};
use crate::handle::actor_ref::ActorRef;
use crate::handle::keyed::{Activate, Keyed};
use crate::ids::ActorTypeId;
use crate::node::ClusterSystem;
use crate::proto::activation::keyed_identity;
use crate::proto::registry::record::DirKey;
use crate::proto::registry::ring;
use crate::proto::snapshot::ClaimAnswer;

/// Registration attempts per activation before giving up (each lost race re-reads the winner).
const ATTEMPTS: usize = 4;

/// How long an activation waits before it looks again for a key whose replica's holder
/// still sees the old host, or is re-creating it.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The activation of `key`: the one the directory names, or a new one where the type's
/// placement says. A type that keeps replicas first claims the key's replica (see
/// [`claim`]); the holder that has it runs the key from it.
async fn activate<A: KeyedActor>(system: ClusterSystem, key: String, fresh: bool) -> Result<ActorRef<A>, ClusterError> {
    let (system, key) = (&system, key.as_str());
    let actor_type = ActorTypeId(A::TYPE_ID);
    let dir_key = DirKey::Keyed { actor_type, key: key.to_owned() };
    let registry = system.registry();
    let replicas = system.node.types.recovery(actor_type).filter(|r| r.restart && r.replicas > 0).map(|r| r.replicas);
    let deadline = tokio::time::Instant::now() + system.config().request_timeout();
    let mut uncached = fresh;
    let mut attempts = 0;
    while attempts < ATTEMPTS {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        if let Some(found) = registry.find_key::<A>(dir_key.clone(), uncached).await? {
            return Ok(found);
        }
        uncached = true;
        if let Some(replicas) = replicas {
            match claim(system, actor_type, key, replicas).await {
                ClaimAnswer::None => {}
                // It runs (from the replica, or another activation won): find it.
                ClaimAnswer::Running(_) => continue,
                ClaimAnswer::Retry if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(CLAIM_RETRY).await;
                    continue;
                }
                ClaimAnswer::Retry => break,
            }
        }
        attempts += 1;
        let placement = match A::placement() {
            Placement::Local => Placement::ConsistentHash,
            other => other,
        };
        let actor = system.spawn(A::from_key(key)).placement(placement).key(key).await?;
        match registry.register_key(dir_key.clone(), key, &actor).await {
            Ok(()) => return Ok(actor),
            Err(ClusterError::Registry(RegistryError::Taken { .. })) => {
                // Another node activated the key first: this instance never got a message.
                let _ = actor.stop().await;
            }
            Err(ClusterError::Registry(RegistryError::NotHere { .. })) => {
                // The instance is gone (its node stopped it) or its node cannot be reached
                // to register it: try again.
                let _ = actor.stop().await;
            }
            Err(e) => {
                let _ = actor.stop().await;
                return Err(e);
            }
        }
    }
    Err(ClusterError::Timeout(system.config().request_timeout()))
}

/// Claims the replica of `key` from the members that may hold it: the first `replicas + 1`
/// members not marked down, in the key's ring order (its host ranks among them while it is
/// still in this node's view, and holds none). The first that runs it answers; a member
/// that cannot tell yet (it still sees the host, or is unreachable) makes the activation
/// look again shortly; if none holds one the key activates afresh.
async fn claim(system: &ClusterSystem, actor_type: ActorTypeId, key: &str, replicas: usize) -> ClaimAnswer {
    use crate::proto::membership::MemberStatus;
    let mut members: Vec<String> = system
        .membership()
        .members()
        .into_iter()
        .filter(|m| matches!(m.status, MemberStatus::Up | MemberStatus::Suspect | MemberStatus::Leaving))
        .map(|m| m.name)
        .collect();
    members.sort_by(|a, b| ring::score(key, b).cmp(&ring::score(key, a)).then_with(|| a.cmp(b)));
    let identity = keyed_identity(actor_type, key);
    let mut answer = ClaimAnswer::None;
    for member in members.iter().take(replicas + 1) {
        match system.recovery().claim(member, identity).await {
            ClaimAnswer::None => {}
            ClaimAnswer::Retry => answer = ClaimAnswer::Retry,
            running => return running,
        }
    }
    tracing::debug!(node = %system.node_name(), %key, ?answer, "claimed a keyed replica");
    answer
}

impl ClusterSystem {
    /// A handle to the keyed actor `key` of type `A`, returned at once without a network
    /// round trip. The first message finds the key's activation, or activates it (built
    /// with [`KeyedActor::from_key`]) on the node the type's placement chooses: consistent
    /// hashing of the key unless the type sets another placement. Messages sent before the
    /// activation runs wait for it, in order.
    pub fn actor_for<A: KeyedActor>(&self, key: impl Into<String>) -> ActorRef<A> {
        let key = key.into();
        let identity = keyed_identity(ActorTypeId(A::TYPE_ID), &key);
        let activate: Activate<ActorRef<A>> = |system, key, fresh| Box::pin(activate::<A>(system, key, fresh));
        ActorRef::keyed(Arc::new(Keyed::new(self.clone(), key, identity, A::NAME, activate)))
    }
}
