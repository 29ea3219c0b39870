//! Keyed (virtual) actors: `system.actor_for::<A>(key)` returns a handle at once; the first
//! message finds the key's activation through the directory, or activates it where the
//! type's placement says (consistent hashing of the key by default). Activation is a
//! first-writer-wins registration of the key, so while membership is stable there is one
//! activation per key in the cluster: a node that loses the race stops its instance, which
//! never received a message, and uses the winner's. When the activation is gone (its node
//! restarted or is down, or it answers that the actor is not there), the handle finds or
//! makes the next one.

use std::sync::{Arc, Mutex};

use crate::actor::{DistributedActor, KeyedActor, Placement};
use crate::error::{ClusterError, RegistryError};
use crate::handle::actor_ref::ActorRef;
use crate::handle::deferred::Deferred;
use crate::ids::{ActorId, ActorTypeId};
use crate::node::ClusterSystem;
use crate::proto::activation::keyed_identity;
use crate::proto::registry::record::DirKey;

/// Registration attempts per activation before giving up (each lost race re-reads the winner).
const ATTEMPTS: usize = 4;

/// One activation being found or made, shared by the handle's clones.
pub(crate) type Activation<A> = Arc<Deferred<ActorRef<A>>>;

/// The shared state of a keyed handle.
pub(crate) struct Keyed<A: DistributedActor> {
    system: ClusterSystem,
    key: String,
    identity: ActorId,
    /// `A::from_key` (kept here so any handle type can carry a keyed actor).
    from_key: fn(&str) -> A,
    /// The current activation (found, being found, or failed); `None` before the first message.
    current: Mutex<Option<Activation<A>>>,
}

impl<A: DistributedActor> Keyed<A> {
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn identity(&self) -> ActorId {
        self.identity
    }

    pub(crate) fn system(&self) -> &ClusterSystem {
        &self.system
    }

    /// The current activation, starting to find or make one if there is none yet.
    pub(crate) fn current(&self) -> Activation<A> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.get_or_insert_with(|| self.start(false)).clone()
    }

    /// The activation, if one was found and still is the current one.
    pub(crate) fn started(&self) -> Option<ActorRef<A>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref()?.get()?.as_ref().ok().cloned()
    }

    /// `stale` turned out gone or failed: if it is still the current activation, starts
    /// finding the next one (asking the directory, not the cache). Returns the current one.
    pub(crate) fn renew(&self, stale: &Activation<A>) -> Activation<A> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match current.as_ref() {
            Some(c) if !Arc::ptr_eq(c, stale) => c.clone(),
            _ => {
                let next = self.start(true);
                *current = Some(next.clone());
                next
            }
        }
    }

    /// Finds or makes the activation in a task of the node.
    fn start(&self, fresh: bool) -> Activation<A> {
        let deferred = Arc::new(Deferred::new(A::NAME));
        let done = deferred.clone();
        let system = self.system.clone();
        let key = self.key.clone();
        let from_key = self.from_key;
        let stopping = self.system.node.life.stopping.clone();
        self.system.node.life.tasks.spawn_local(async move {
            let found = tokio::select! {
                biased;
                () = stopping.cancelled() => Err(ClusterError::Shutdown),
                found = activate::<A>(&system, &key, fresh, from_key) => found,
            };
            if let Err(e) = &found {
                tracing::warn!(node = %system.node_name(), actor = A::NAME, %key, error = %e, "could not activate the key");
            }
            done.finish(found.map_err(Arc::new)).await;
        });
        deferred
    }
}

/// The activation of `key`: the one the directory names, or a new one where the type's
/// placement says.
async fn activate<A: DistributedActor>(
    system: &ClusterSystem,
    key: &str,
    fresh: bool,
    from_key: fn(&str) -> A,
) -> Result<ActorRef<A>, ClusterError> {
    let dir_key = DirKey::Keyed { actor_type: ActorTypeId(A::TYPE_ID), key: key.to_owned() };
    let registry = system.registry();
    let mut uncached = fresh;
    for _ in 0..ATTEMPTS {
        if let Some(found) = registry.find_key::<A>(dir_key.clone(), uncached).await? {
            return Ok(found);
        }
        let placement = match A::placement() {
            Placement::Local => Placement::ConsistentHash,
            other => other,
        };
        let actor = system.spawn(from_key(key)).placement(placement).key(key).await?;
        match registry.register_key(dir_key.clone(), key, &actor).await {
            Ok(()) => return Ok(actor),
            Err(ClusterError::Registry(RegistryError::Taken { .. })) => {
                // Another node activated the key first: this instance never got a message.
                let _ = actor.stop().await;
                uncached = true;
            }
            Err(e) => {
                let _ = actor.stop().await;
                return Err(e);
            }
        }
    }
    Err(ClusterError::Timeout(system.config().request_timeout()))
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
        let keyed = Keyed { system: self.clone(), key, identity, from_key: A::from_key, current: Mutex::new(None) };
        ActorRef::keyed(Arc::new(keyed))
    }
}
