//! The registry's API, `system.registry()`: names for actors that any node can resolve,
//! and watches on names.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::actor::DistributedActor;
use crate::error::{ClusterError, RegistryError};
use crate::handle::ActorRef;
use crate::ids::{ActorId, ActorTypeId};
use crate::node::service::{Cx, Input};
use crate::node::ClusterSystem;
use crate::proto::registry::directory::KeyEvent;
use crate::proto::registry::record::{ActorLocation, Answer, DirKey, Record, Refusal};
use crate::proto::wire::channel::Channel;
use crate::services::registry::RegistryService;

/// The cluster registry, as seen from one node. Get it with [`ClusterSystem::registry`].
///
/// Names are held by a directory spread over the members (or on the masters, in the
/// centralized architecture); the node that runs an actor writes its records, and they go
/// when the actor stops or its node leaves or is marked down. Lookups are cached on each
/// node, and the directory keeps the caches fresh.
#[derive(Debug, Clone, Copy)]
pub struct Registry<'a> {
    system: &'a ClusterSystem,
}

/// A change of a watched name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameEvent {
    /// The name now names this actor (registered, or re-registered elsewhere).
    Registered {
        /// The actor's identity.
        actor: ActorId,
        /// Where it runs.
        location: ActorLocation,
    },
    /// The name was removed: its actor stopped or unregistered it, or its node is down.
    Unregistered,
    /// This node's actor lost the name to another registration made on the other side of a
    /// partition that has now healed (told on the node that ran the loser).
    Lost {
        /// The winning actor.
        winner: ActorId,
        /// Where it runs.
        location: ActorLocation,
    },
}

impl From<KeyEvent> for NameEvent {
    fn from(e: KeyEvent) -> Self {
        match e {
            KeyEvent::Registered(r) => NameEvent::Registered { actor: r.actor, location: r.location },
            KeyEvent::Unregistered => NameEvent::Unregistered,
            KeyEvent::Lost { winner, .. } => NameEvent::Lost { winner: winner.actor, location: winner.location },
        }
    }
}

/// The changes of one name, from [`Registry::watch`]. Dropping it ends the watch.
#[derive(Debug)]
pub struct NameWatch {
    events: mpsc::UnboundedReceiver<NameEvent>,
}

impl NameWatch {
    /// The next change; `None` once the node stopped.
    pub async fn next(&mut self) -> Option<NameEvent> {
        self.events.recv().await
    }

    /// The next change if one is already here.
    pub fn try_next(&mut self) -> Option<NameEvent> {
        self.events.try_recv().ok()
    }
}

/// Figures about one node's part of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryStats {
    /// The version of the node's membership view (equal on nodes that agree).
    pub view: u64,
    /// The directory members of that view.
    pub owners: Vec<String>,
    /// Names registered to actors on this node.
    pub hosted: usize,
    /// Names this node holds as their directory owner.
    pub owned: usize,
    /// Records in this node's lookup cache.
    pub cached: usize,
}

impl ClusterSystem {
    /// The cluster registry.
    pub fn registry(&self) -> Registry<'_> {
        Registry { system: self }
    }
}

impl Registry<'_> {
    /// Runs `f` on the registry service and returns its result.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RegistryService, &mut Cx<'_>) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        self.post(move |s, cx| {
            let _ = tx.send(f(s, cx));
        });
        rx.await.ok()
    }

    /// Hands `f` to the registry service, to run on the node's control task.
    fn post(&self, f: impl FnOnce(&mut RegistryService, &mut Cx<'_>) + Send + 'static) {
        self.system.node.to_control(Input::Call(
            Channel::REGISTRY,
            Box::new(move |service, cx| {
                if let Some(s) = service.as_any_mut().downcast_mut::<RegistryService>() {
                    f(s, cx);
                }
            }),
        ));
    }

    /// Runs a directory request and waits for its answer.
    async fn ask(
        &self,
        f: impl FnOnce(&mut RegistryService, &mut Cx<'_>, oneshot::Sender<Result<Answer, Refusal>>) + Send + 'static,
    ) -> Result<Answer, Refusal> {
        if self.system.node.life.is_shut_down() {
            return Err(Refusal::Timeout);
        }
        let (tx, rx) = oneshot::channel();
        self.call(move |s, cx| f(s, cx, tx)).await;
        rx.await.unwrap_or(Err(Refusal::Timeout))
    }

    fn timeout(&self) -> Duration {
        self.system.config().request_timeout()
    }

    fn refused(&self, refusal: Refusal, name: &str) -> ClusterError {
        if self.system.node.life.is_shut_down() {
            return ClusterError::Shutdown;
        }
        match refusal {
            Refusal::Taken(r) => {
                RegistryError::Taken { name: name.to_owned(), holder: r.actor, node: r.location.node }.into()
            }
            Refusal::NoDirectory => RegistryError::NoDirectory.into(),
            Refusal::NotHere => RegistryError::NotRegisteredHere(name.to_owned()).into(),
            Refusal::Timeout | Refusal::ViewMismatch | Refusal::NotOwner | Refusal::Superseded => {
                ClusterError::Timeout(self.timeout())
            }
        }
    }

    /// Registers `actor` under `name`. The first writer wins: a name held by another live
    /// actor fails with [`RegistryError::Taken`], naming the holder. Returns once the name
    /// resolves from every node. The record goes when the actor stops or its node leaves.
    pub async fn register<A: DistributedActor>(&self, name: &str, actor: &ActorRef<A>) -> Result<(), ClusterError> {
        self.register_key(DirKey::Name(name.to_owned()), name, actor).await
    }

    /// Registers `actor` under `key` (a name, or a keyed activation); `what` names it in errors.
    pub(crate) async fn register_key<A: DistributedActor>(
        &self,
        key: DirKey,
        what: &str,
        actor: &ActorRef<A>,
    ) -> Result<(), ClusterError> {
        let location = actor.location().ok_or_else(|| RegistryError::NotDistributed(A::NAME.to_owned()))?;
        let (node, local) = (location.node.clone(), location.actor);
        match self.ask(move |s, cx, tx| s.register(cx, key, location, tx)).await {
            Ok(_) => Ok(()),
            Err(Refusal::NotHere) => Err(RegistryError::NotHere { node, actor: local }.into()),
            Err(r) => Err(self.refused(r, what)),
        }
    }

    /// Removes the name this node's actor holds. Fails with
    /// [`RegistryError::NotRegisteredHere`] unless an actor on this node holds it.
    pub async fn unregister(&self, name: &str) -> Result<(), ClusterError> {
        let key = name.to_owned();
        match self.ask(move |s, cx, tx| s.unregister(cx, key, tx)).await {
            Ok(_) => Ok(()),
            Err(r) => Err(self.refused(r, name)),
        }
    }

    /// The actor registered as `name`, from any node; `None` if there is none. A name bound
    /// to an actor of another type fails with [`RegistryError::WrongType`].
    pub async fn lookup<A: DistributedActor>(&self, name: &str) -> Result<Option<ActorRef<A>>, ClusterError> {
        self.find(DirKey::Name(name.to_owned()), false, name).await
    }

    /// Like [`lookup`](Self::lookup), but asks the directory even if this node has the name
    /// in its cache.
    pub async fn lookup_uncached<A: DistributedActor>(&self, name: &str) -> Result<Option<ActorRef<A>>, ClusterError> {
        self.find(DirKey::Name(name.to_owned()), true, name).await
    }

    /// Who holds `name` and where it runs, as its directory owner says now (no cache, no
    /// handle built): for tools and checks.
    pub async fn locate(&self, name: &str) -> Result<Option<(ActorId, ActorLocation)>, ClusterError> {
        let key = DirKey::Name(name.to_owned());
        match self.ask(move |s, cx, tx| s.lookup(cx, key, true, tx)).await {
            Ok(Answer::Found(found)) => Ok(found.map(|r| (r.actor, r.location))),
            Ok(Answer::Done) => Ok(None),
            Err(r) => Err(self.refused(r, name)),
        }
    }

    /// Where the actor with identity `actor` runs now, if it is registered; `None` if the
    /// directory does not know it.
    pub async fn resolve<A: DistributedActor>(&self, actor: ActorId) -> Result<Option<ActorRef<A>>, ClusterError> {
        let key = DirKey::Actor(actor);
        let what = key.to_string();
        self.find(key, false, &what).await
    }

    /// Forgets the cached location of `actor` and asks the directory where it is now.
    pub(crate) async fn relocate<A: DistributedActor>(
        &self,
        actor: ActorId,
    ) -> Result<Option<ActorRef<A>>, ClusterError> {
        let key = DirKey::Actor(actor);
        let what = key.to_string();
        let stale = key.clone();
        self.call(move |s, _| s.invalidate(&stale)).await;
        self.find(key, true, &what).await
    }

    /// Where the activation registered under `key` runs, through the cache unless
    /// `uncached`.
    pub(crate) async fn find_key<A: DistributedActor>(
        &self,
        key: DirKey,
        uncached: bool,
    ) -> Result<Option<ActorRef<A>>, ClusterError> {
        let what = key.to_string();
        if uncached {
            let stale = key.clone();
            self.call(move |s, _| s.invalidate(&stale)).await;
        }
        self.find(key, uncached, &what).await
    }

    async fn find<A: DistributedActor>(
        &self,
        key: DirKey,
        uncached: bool,
        name: &str,
    ) -> Result<Option<ActorRef<A>>, ClusterError> {
        match self.ask(move |s, cx, tx| s.lookup(cx, key, uncached, tx)).await {
            Ok(Answer::Found(Some(record))) => self.handle(name, record).map(Some),
            Ok(_) => Ok(None),
            Err(r) => Err(self.refused(r, name)),
        }
    }

    fn handle<A: DistributedActor>(&self, name: &str, record: Record) -> Result<ActorRef<A>, ClusterError> {
        if record.actor_type != ActorTypeId(A::TYPE_ID) {
            let found = self
                .system
                .node
                .types
                .actor(record.actor_type)
                .map_or_else(|| format!("actor type {}", record.actor_type), |r| r.name.to_owned());
            return Err(RegistryError::WrongType { name: name.to_owned(), expected: A::NAME.to_owned(), found }.into());
        }
        Ok(self.system.handle_at(record.actor, record.location))
    }

    /// Reports every change of `name` from now on: registered (with the current holder, if
    /// any, first), unregistered, lost in a conflict.
    pub fn watch(&self, name: &str) -> NameWatch {
        let (tx, events) = mpsc::unbounded_channel();
        let key = DirKey::Name(name.to_owned());
        self.post(move |s, cx| s.watch(cx, key, tx));
        NameWatch { events }
    }

    /// Figures about this node's part of the directory.
    pub async fn stats(&self) -> RegistryStats {
        self.call(|s, _| s.stats()).await.unwrap_or_default()
    }

    /// The node that holds `name`'s directory entry in this node's view.
    pub async fn owner_of(&self, name: &str) -> Option<String> {
        let key = DirKey::Name(name.to_owned());
        self.call(move |s, _| s.owner_of(&key)).await.flatten()
    }
}
