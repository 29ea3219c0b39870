//! `system.spawn::<A>(state)`: start an actor where its placement says, with a builder to
//! override the placement or give the key consistent hashing needs.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use crate::actor::{DistributedActor, Placement};
use crate::error::ClusterError;
use crate::handle::actor_ref::ActorRef;
use crate::node::ClusterSystem;

/// A spawn being prepared; `.await` it to start the actor. Created by
/// [`ClusterSystem::spawn`].
#[must_use = "a spawn does nothing until it is awaited"]
pub struct Spawn<'a, A: DistributedActor> {
    system: &'a ClusterSystem,
    state: A,
    placement: Placement,
    key: Option<String>,
    name: Option<String>,
}

impl<A: DistributedActor> std::fmt::Debug for Spawn<'_, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawn")
            .field("actor", &A::NAME)
            .field("placement", &self.placement)
            .field("key", &self.key)
            .field("name", &self.name)
            .finish()
    }
}

impl ClusterSystem {
    /// Starts `state` as an actor on the node its type's placement chooses
    /// (`#[distributed_actor(placement = "...")]`, local by default). Await the result:
    /// `system.spawn(Counter::default()).await?`, or set the placement or key first.
    pub fn spawn<A: DistributedActor>(&self, state: A) -> Spawn<'_, A> {
        Spawn { system: self, state, placement: A::placement(), key: None, name: None }
    }
}

impl<'a, A: DistributedActor> Spawn<'a, A> {
    /// Places this actor by `placement` instead of its type's.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The key consistent-hash placement hashes (the same key lands on the same node from
    /// every node, while membership is stable).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Registers the actor under `name` in the cluster registry once it runs; the spawn
    /// returns only when the name resolves from every node. If the name is taken, the new
    /// actor is stopped and the spawn fails with
    /// [`RegistryError::Taken`](crate::RegistryError::Taken).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Chooses the node, starts the actor there, and registers its name if it has one.
    pub async fn start(self) -> Result<ActorRef<A>, ClusterError> {
        let Spawn { system, state, placement, key, name } = self;
        let actor = Self::place(system, state, placement, key).await?;
        if let Some(name) = name {
            if let Err(e) = system.registry().register(&name, &actor).await {
                // Best effort: the actor exists only for this name.
                let _ = actor.stop().await;
                return Err(e);
            }
        }
        Ok(actor)
    }

    async fn place(
        system: &ClusterSystem,
        state: A,
        placement: Placement,
        key: Option<String>,
    ) -> Result<ActorRef<A>, ClusterError> {
        if placement == Placement::Local {
            return Ok(system.spawn_local(state));
        }
        let node = system.choose_node(placement, key).await?;
        if node == system.node_name() {
            return Ok(system.spawn_local(state));
        }
        // An up member may still be linking to this node.
        system.wait_for_peers(&[&node], system.config().request_timeout()).await?;
        system.remote_actor_with(&node, state).await
    }
}

impl<'a, A: DistributedActor> IntoFuture for Spawn<'a, A> {
    type Output = Result<ActorRef<A>, ClusterError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}
