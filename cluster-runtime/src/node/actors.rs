//! The actors on this node that the network can reach, by local id, with the node that
//! spawned each. An actor that stops leaves the table (its stop notice removes it), and a
//! stopped actor's id answers `UnknownActor`; the node can stop any of them. Messages are
//! decoded outside the table's lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use actix::Addr;

use crate::actor::DistributedActor;
use crate::dispatch::{self, ErasedAddr, ReplyFuture, StopHandle, StopNotice, Watch};
use crate::error::{RemoteError, RemoteErrorKind};
use crate::format::Format;
use crate::ids::{ActorTypeId, IdMap, LocalActorId, NodeId, WireId};
use crate::types::{ActorRegistration, TypeTable};

struct LocalActor {
    type_id: ActorTypeId,
    addr: ErasedAddr,
    stop: StopHandle,
    /// The node that spawned it (`None`: started on this node).
    spawner: Option<NodeId>,
}

#[derive(Default)]
struct Table {
    actors: IdMap<LocalActorId, LocalActor>,
    /// Live actors per spawning node.
    spawned: IdMap<NodeId, usize>,
}

impl Table {
    fn insert(&mut self, id: LocalActorId, actor: LocalActor) {
        if let Some(node) = actor.spawner {
            *self.spawned.entry(node).or_default() += 1;
        }
        self.actors.insert(id, actor);
    }

    fn remove(&mut self, id: LocalActorId) -> Option<LocalActor> {
        let actor = self.actors.remove(&id)?;
        if let Some(node) = actor.spawner {
            if let Some(n) = self.spawned.get_mut(&node) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.spawned.remove(&node);
                }
            }
        }
        Some(actor)
    }
}

/// The local actor table.
pub(crate) struct Actors {
    next: AtomicU64,
    table: Arc<Mutex<Table>>,
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl Actors {
    pub(crate) fn new() -> Self {
        Self { next: AtomicU64::new(1), table: Arc::new(Mutex::new(Table::default())) }
    }

    /// A new id, its stop handle, and the watch that removes it from the table when its
    /// actor stops.
    fn reserve(&self) -> (LocalActorId, StopHandle, Watch) {
        let id = LocalActorId(self.next.fetch_add(1, Ordering::Relaxed));
        let table: Weak<Mutex<Table>> = Arc::downgrade(&self.table);
        let notice = StopNotice::new(move || {
            if let Some(table) = table.upgrade() {
                lock(&table).remove(id);
            }
        });
        let handle = StopHandle::default();
        let watch = handle.watch(notice);
        (id, handle, watch)
    }

    /// Starts `actor` and makes it reachable from the network.
    pub(crate) fn start<A: DistributedActor>(&self, actor: A) -> (LocalActorId, Addr<A>, StopHandle) {
        let (id, stop, watch) = self.reserve();
        let addr = dispatch::start_watched(actor, watch);
        let erased: ErasedAddr = Arc::new(addr.clone());
        let entry = LocalActor { type_id: ActorTypeId(A::TYPE_ID), addr: erased, stop: stop.clone(), spawner: None };
        lock(&self.table).insert(id, entry);
        (id, addr, stop)
    }

    /// Builds an actor of a registered type from its state for node `spawner`, which may
    /// have at most `limit` live actors here.
    pub(crate) fn spawn(
        &self,
        reg: &ActorRegistration,
        format: Format,
        state: &[u8],
        spawner: NodeId,
        limit: usize,
    ) -> Result<LocalActorId, RemoteError> {
        let live = self.spawned_by(spawner);
        if live >= limit {
            return Err(RemoteError::new(
                RemoteErrorKind::Overloaded,
                format!("{live} actors spawned by this node are alive here, the most allowed (max_spawned_per_peer)"),
            ));
        }
        let (id, stop, watch) = self.reserve();
        let addr = (reg.spawn)(format, state, watch)?;
        let entry = LocalActor { type_id: ActorTypeId(reg.type_id), addr, stop, spawner: Some(spawner) };
        lock(&self.table).insert(id, entry);
        Ok(id)
    }

    /// The stop handle of actor `id`, if it is in the table.
    pub(crate) fn stop_handle(&self, id: LocalActorId) -> Option<StopHandle> {
        lock(&self.table).actors.get(&id).map(|a| a.stop.clone())
    }

    /// Stops every actor node `spawner` spawned; returns how many.
    pub(crate) fn stop_spawned_by(&self, spawner: NodeId) -> usize {
        let stops: Vec<StopHandle> =
            lock(&self.table).actors.values().filter(|a| a.spawner == Some(spawner)).map(|a| a.stop.clone()).collect();
        stops.iter().for_each(|s| s.stop.cancel());
        stops.len()
    }

    /// Live actors node `spawner` spawned here.
    pub(crate) fn spawned_by(&self, spawner: NodeId) -> usize {
        lock(&self.table).spawned.get(&spawner).copied().unwrap_or(0)
    }

    /// Decodes a message for actor `target` and delivers it; for an ask, returns the future
    /// of the reply.
    pub(crate) fn deliver(
        &self,
        types: &TypeTable,
        target: LocalActorId,
        message: WireId,
        format: Format,
        payload: &[u8],
        ask: bool,
    ) -> Result<Option<ReplyFuture>, RemoteError> {
        let found = lock(&self.table).actors.get(&target).map(|a| (a.type_id, a.addr.clone()));
        let Some((type_id, addr)) = found else {
            return Err(RemoteError::new(
                RemoteErrorKind::UnknownActor,
                format!("no actor with id {target} on this node"),
            ));
        };
        let Some(handler) = types.handler(type_id, message) else {
            let name = types.message(message).map(|m| m.name).unwrap_or("<unregistered>");
            return Err(RemoteError::new(
                RemoteErrorKind::UnknownMessage,
                format!("actor {target} does not accept message {message} ({name})"),
            ));
        };
        (handler.dispatch)(&*addr, format, payload, ask)
    }

    /// Number of actors in the table.
    pub(crate) fn len(&self) -> usize {
        lock(&self.table).actors.len()
    }

    /// Stops every actor and empties the table (the node stops).
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *lock(&self.table));
        for actor in all.actors.values() {
            actor.stop.stop.cancel();
        }
    }
}
