//! Keyed (virtual) actors: `system.actor_for::<A>(key)` returns a handle at once; the first
//! message finds the key's activation through the directory, or activates it where the
//! type's placement says (consistent hashing of the key by default). Activation is a
//! first-writer-wins registration of the key, so while membership is stable there is one
//! activation per key in the cluster: a node that loses the race stops its instance, which
//! never received a message, and uses the winner's. When the activation is gone (its node
//! restarted or is down, or it answers that the actor is not there), the handle finds or
//! makes the next one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::error::ClusterError;
use crate::handle::deferred::Deferred;
use crate::ids::ActorId;
use crate::node::ClusterSystem;

/// One activation being found or made, shared by the handle's clones; `T` is the handle of
/// a running actor.
pub(crate) type Activation<T> = Arc<Deferred<T>>;

/// Finds or makes the activation of a key (`fresh`: ask the directory, not the cache).
pub(crate) type Activate<T> = fn(ClusterSystem, String, bool) -> Pin<Box<dyn Future<Output = Result<T, ClusterError>>>>;

/// The shared state of a keyed handle.
pub(crate) struct Keyed<T> {
    system: ClusterSystem,
    key: String,
    identity: ActorId,
    /// The actor type's name, for the log.
    actor: &'static str,
    activate: Activate<T>,
    /// The current activation (found, being found, or failed); `None` before the first message.
    current: Mutex<Option<Activation<T>>>,
}

impl<T: Clone + 'static> Keyed<T> {
    pub(crate) fn new(
        system: ClusterSystem,
        key: String,
        identity: ActorId,
        actor: &'static str,
        activate: Activate<T>,
    ) -> Self {
        Self { system, key, identity, actor, activate, current: Mutex::new(None) }
    }

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
    pub(crate) fn current(&self) -> Activation<T> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.get_or_insert_with(|| self.start(false)).clone()
    }

    /// The activation, if one was found and still is the current one.
    pub(crate) fn started(&self) -> Option<T> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref()?.get()?.as_ref().ok().cloned()
    }

    /// The key's activation moved to `to` (a migration): calls go there from now on.
    pub(crate) fn moved(&self, to: T) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Some(Arc::new(Deferred::finished(self.actor, Ok(to))));
    }

    /// `stale` turned out gone or failed: if it is still the current activation, starts
    /// finding the next one (asking the directory, not the cache). Returns the current one.
    pub(crate) fn renew(&self, stale: &Activation<T>) -> Activation<T> {
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
    fn start(&self, fresh: bool) -> Activation<T> {
        let deferred = Arc::new(Deferred::new(self.actor));
        let done = deferred.clone();
        let system = self.system.clone();
        let key = self.key.clone();
        let work = (self.activate)(system.clone(), key.clone(), fresh);
        let actor = self.actor;
        let stopping = self.system.node.life.stopping.clone();
        self.system.node.life.tasks.spawn_local(async move {
            let found = tokio::select! {
                biased;
                () = stopping.cancelled() => Err(ClusterError::Shutdown),
                found = work => found,
            };
            if let Err(e) = &found {
                tracing::warn!(node = %system.node_name(), actor, %key, error = %e, "could not activate the key");
            }
            done.finish(found.map_err(Arc::new)).await;
        });
        deferred
    }
}
