//! The actors on this node that the network can reach, by local id. An actor that stops
//! leaves the table (its stop notice removes it), and a stopped actor's id answers
//! `UnknownActor`. Messages are decoded outside the table's lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use actix::Addr;

use crate::actor::DistributedActor;
use crate::dispatch::{self, ErasedAddr, ReplyFuture, StopNotice};
use crate::error::{RemoteError, RemoteErrorKind};
use crate::format::Format;
use crate::ids::{ActorTypeId, IdMap, LocalActorId, WireId};
use crate::types::{ActorRegistration, TypeTable};

struct LocalActor {
    type_id: ActorTypeId,
    addr: ErasedAddr,
}

type Table = Mutex<IdMap<LocalActorId, LocalActor>>;

/// The local actor table.
pub(crate) struct Actors {
    next: AtomicU64,
    table: Arc<Table>,
}

fn lock(table: &Table) -> MutexGuard<'_, IdMap<LocalActorId, LocalActor>> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl Actors {
    pub(crate) fn new() -> Self {
        Self { next: AtomicU64::new(1), table: Arc::new(Mutex::new(IdMap::default())) }
    }

    /// A new id and the notice that removes it from the table when its actor stops.
    fn reserve(&self) -> (LocalActorId, StopNotice) {
        let id = LocalActorId(self.next.fetch_add(1, Ordering::Relaxed));
        let table: Weak<Table> = Arc::downgrade(&self.table);
        let notice = StopNotice::new(move || {
            if let Some(table) = table.upgrade() {
                lock(&table).remove(&id);
            }
        });
        (id, notice)
    }

    /// Starts `actor` and makes it reachable from the network.
    pub(crate) fn start<A: DistributedActor>(&self, actor: A) -> (LocalActorId, Addr<A>) {
        let (id, notice) = self.reserve();
        let addr = dispatch::start_watched(actor, notice);
        let erased: ErasedAddr = Arc::new(addr.clone());
        lock(&self.table).insert(id, LocalActor { type_id: ActorTypeId(A::TYPE_ID), addr: erased });
        (id, addr)
    }

    /// Builds an actor of a registered type from its state (a remote spawn).
    pub(crate) fn spawn(
        &self,
        reg: &ActorRegistration,
        format: Format,
        state: &[u8],
    ) -> Result<LocalActorId, RemoteError> {
        let (id, notice) = self.reserve();
        let addr = (reg.spawn)(format, state, notice)?;
        lock(&self.table).insert(id, LocalActor { type_id: ActorTypeId(reg.type_id), addr });
        Ok(id)
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
        let found = lock(&self.table).get(&target).map(|a| (a.type_id, a.addr.clone()));
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
        lock(&self.table).len()
    }

    /// Empties the table (the node stops); actors no one else holds then stop.
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *lock(&self.table));
        drop(all);
    }
}
