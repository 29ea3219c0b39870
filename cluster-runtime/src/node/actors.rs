//! The actors on this node that the network can reach, by local id, with the node that
//! spawned each. An actor that stops leaves the table (its stop notice removes it), and a
//! stopped actor's id answers `UnknownActor`; the node can stop any of them. Messages are
//! decoded outside the table's lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use actix::Addr;
use tokio::sync::mpsc;

use crate::actor::DistributedActor;
use crate::dispatch::{self, ErasedAddr, ProbeFuture, ReplyFuture, StopHandle, StopNotice, Watch};
use crate::error::{RemoteError, RemoteErrorKind};
use crate::format::Format;
use crate::ids::{ActorTypeId, IdMap, LinkId, LocalActorId, NodeId, WireId};
use crate::proto::flow::{Credit, FlowViolation, FlowWindow, InboundAccount, LinkAccount};
use crate::types::{ActorRegistration, HandlerRegistration, ProbeFn, TypeTable};

fn unknown_actor(target: LocalActorId) -> RemoteError {
    RemoteError::new(RemoteErrorKind::UnknownActor, format!("no actor with id {target} on this node"))
}

/// How an actor of `type_id` handles `message`, or why it does not.
fn handler(
    types: &TypeTable,
    type_id: ActorTypeId,
    target: LocalActorId,
    message: WireId,
) -> Result<&'static HandlerRegistration, RemoteError> {
    types.handler(type_id, message).ok_or_else(|| {
        let name = types.message(message).map(|m| m.name).unwrap_or("<unregistered>");
        RemoteError::new(
            RemoteErrorKind::UnknownMessage,
            format!("actor {target} does not accept message {message} ({name})"),
        )
    })
}

struct LocalActor {
    type_id: ActorTypeId,
    addr: ErasedAddr,
    stop: StopHandle,
    /// The node that spawned it (`None`: started on this node).
    spawner: Option<NodeId>,
    /// Tells in its mailbox not yet seen handled, per link (flow control).
    inbound: InboundAccount,
    probe: ProbeFn,
    /// The services are told when it stops (it is registered in the directory).
    announce: bool,
}

/// Why a tell or ask was not delivered.
pub(crate) enum Undelivered {
    /// Refused; the peer is told why.
    Refused(RemoteError),
    /// The link sent past its flow-control window: it breaks the protocol.
    Flow(FlowViolation),
}

/// A probe to await for actor `actor`; when it is answered, call [`Actors::probe_done`].
pub(crate) struct ProbeJob {
    pub(crate) actor: LocalActorId,
    pub(crate) future: ProbeFuture,
}

struct Table {
    actors: IdMap<LocalActorId, LocalActor>,
    /// Live actors per spawning node.
    spawned: IdMap<NodeId, usize>,
    /// Tells in all mailboxes not yet seen handled, per link (flow control).
    links: IdMap<LinkId, LinkAccount>,
    /// Where the credit of tells left in a stopped actor's mailbox goes.
    orphans: mpsc::UnboundedSender<OrphanCredit>,
    /// Where the ids of stopped actors the services follow go.
    departed: mpsc::UnboundedSender<LocalActorId>,
}

/// Credit for tells a stopped actor will never handle, to send back on `link`.
pub(crate) struct OrphanCredit {
    pub(crate) link: LinkId,
    pub(crate) actor: LocalActorId,
    pub(crate) bytes: u64,
    pub(crate) msgs: u64,
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
        // Its unhandled tells go back to their links as credit.
        for link in actor.inbound.links().collect::<Vec<_>>() {
            let (bytes, msgs) = actor.inbound.outstanding(link);
            if let Some(account) = self.links.get_mut(&link) {
                account.credited(id, bytes, msgs, true);
            }
            let _ = self.orphans.send(OrphanCredit { link, actor: id, bytes, msgs });
        }
        if actor.announce {
            let _ = self.departed.send(id);
        }
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
    window: FlowWindow,
    link_window: FlowWindow,
    max_frame: u64,
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

impl Actors {
    /// A table whose actors grant each link `window` (and `link_window` over all of them),
    /// with messages up to `max_frame` bytes; the credit of tells left in stopped actors'
    /// mailboxes comes out of the first receiver, the ids of stopped actors marked with
    /// [`announce_stop`](Self::announce_stop) out of the second.
    pub(crate) fn new(
        window: FlowWindow,
        link_window: FlowWindow,
        max_frame: usize,
    ) -> (Self, mpsc::UnboundedReceiver<OrphanCredit>, mpsc::UnboundedReceiver<LocalActorId>) {
        let (orphans, rx) = mpsc::unbounded_channel();
        let (departed, departures) = mpsc::unbounded_channel();
        let table =
            Table { actors: IdMap::default(), spawned: IdMap::default(), links: IdMap::default(), orphans, departed };
        let actors = Self {
            next: AtomicU64::new(1),
            table: Arc::new(Mutex::new(table)),
            window,
            link_window,
            max_frame: max_frame as u64,
        };
        (actors, rx, departures)
    }

    /// The services are told (through the departures receiver) when actor `id` stops;
    /// false if it already has.
    pub(crate) fn announce_stop(&self, id: LocalActorId) -> bool {
        lock(&self.table).actors.get_mut(&id).map(|a| a.announce = true).is_some()
    }

    /// The type of actor `id`, if it runs here.
    pub(crate) fn type_of(&self, id: LocalActorId) -> Option<ActorTypeId> {
        lock(&self.table).actors.get(&id).map(|a| a.type_id)
    }

    /// The address and stop handle of actor `id`, if it runs here and is an `A`.
    pub(crate) fn local_handle<A: DistributedActor>(&self, id: LocalActorId) -> Option<(Addr<A>, StopHandle)> {
        let table = lock(&self.table);
        let a = table.actors.get(&id)?;
        let addr = a.addr.downcast_ref::<Addr<A>>()?.clone();
        Some((addr, a.stop.clone()))
    }

    fn account(&self) -> InboundAccount {
        InboundAccount::new(self.window, self.max_frame)
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
        let entry = LocalActor {
            type_id: ActorTypeId(A::TYPE_ID),
            addr: erased,
            stop: stop.clone(),
            spawner: None,
            inbound: self.account(),
            probe: dispatch::probe::<A>,
            announce: false,
        };
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
        let entry = LocalActor {
            type_id: ActorTypeId(reg.type_id),
            addr,
            stop,
            spawner: Some(spawner),
            inbound: self.account(),
            probe: reg.probe,
            announce: false,
        };
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

    /// Decodes an ask for actor `target` and delivers it; returns the future of the reply.
    pub(crate) fn deliver_ask(
        &self,
        types: &TypeTable,
        target: LocalActorId,
        message: WireId,
        format: Format,
        payload: &[u8],
    ) -> Result<Option<ReplyFuture>, RemoteError> {
        let found = lock(&self.table).actors.get(&target).map(|a| (a.type_id, a.addr.clone()));
        let (type_id, addr) = found.ok_or_else(|| unknown_actor(target))?;
        let handler = handler(types, type_id, target, message)?;
        (handler.dispatch)(&*addr, format, payload, true)
    }

    /// Decodes a tell of `size` bytes from `link` for actor `target` and delivers it,
    /// counting it against the link's windows; returns the probes to await now.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver_tell(
        &self,
        types: &TypeTable,
        link: LinkId,
        target: LocalActorId,
        message: WireId,
        format: Format,
        payload: &[u8],
        size: usize,
    ) -> Result<Vec<ProbeJob>, Undelivered> {
        // Counted under the lock while the actor is looked up, decoded outside it; a tell that
        // does not decode is taken off the count again.
        let (addr, handler, actor_due, link_due) = {
            let mut table = lock(&self.table);
            let t = &mut *table;
            let actor = t.actors.get_mut(&target).ok_or_else(|| Undelivered::Refused(unknown_actor(target)))?;
            let handler = handler(types, actor.type_id, target, message).map_err(Undelivered::Refused)?;
            let (actor_due, first) = actor.inbound.deliver(link, size).map_err(Undelivered::Flow)?;
            let addr = actor.addr.clone();
            let account = t.links.entry(link).or_insert_with(|| LinkAccount::new(self.link_window, self.max_frame));
            let link_due = account.deliver(target, size, first).map_err(Undelivered::Flow)?;
            (addr, handler, actor_due, link_due)
        };
        if let Err(e) = (handler.dispatch)(&*addr, format, payload, false) {
            self.undeliver(link, target, size);
            return Err(Undelivered::Refused(e));
        }
        if !actor_due && !link_due {
            return Ok(Vec::new());
        }
        let mut table = lock(&self.table);
        let t = &mut *table;
        let Some(account) = t.links.get(&link) else { return Ok(Vec::new()) };
        let due: Vec<LocalActorId> = if link_due {
            // The link is at half its window: every actor holding its tells is probed.
            account.actors().collect()
        } else if actor_due {
            vec![target]
        } else {
            return Ok(Vec::new());
        };
        let mut jobs = Vec::new();
        for id in due {
            let Some(a) = t.actors.get_mut(&id) else { continue };
            if a.inbound.probing() {
                continue;
            }
            if let Some(future) = (a.probe)(&*a.addr) {
                a.inbound.probe_sent();
                jobs.push(ProbeJob { actor: id, future });
            }
        }
        Ok(jobs)
    }

    /// Takes a tell that was counted but not delivered off the counts.
    fn undeliver(&self, link: LinkId, target: LocalActorId, size: usize) {
        let mut table = lock(&self.table);
        let t = &mut *table;
        let drained = t.actors.get_mut(&target).is_none_or(|a| {
            a.inbound.undeliver(link, size);
            a.inbound.outstanding(link) == (0, 0)
        });
        if let Some(account) = t.links.get_mut(&link) {
            account.credited(target, size as u64, 1, drained);
        }
    }

    /// Actor `actor` answered its probe (`handled`), or stopped: returns the credit to send
    /// back and the next probe to await, if one is due.
    pub(crate) fn probe_done(&self, actor: LocalActorId, handled: bool) -> (Vec<Credit>, Option<ProbeJob>) {
        let mut table = lock(&self.table);
        let t = &mut *table;
        let Some(a) = t.actors.get_mut(&actor) else { return (Vec::new(), None) };
        let (credits, actor_due) = a.inbound.probe_done();
        for c in &credits {
            if let Some(account) = t.links.get_mut(&c.link) {
                account.credited(actor, c.bytes, c.msgs, a.inbound.outstanding(c.link) == (0, 0));
            }
        }
        let link_due = a.inbound.links().any(|l| t.links.get(&l).is_some_and(LinkAccount::over_half));
        let next = if (actor_due || link_due) && handled { (a.probe)(&*a.addr) } else { None };
        if next.is_some() {
            a.inbound.probe_sent();
        }
        (credits, next.map(|future| ProbeJob { actor, future }))
    }

    /// The link is gone: forget what it had outstanding.
    pub(crate) fn forget_link(&self, link: LinkId) {
        let mut table = lock(&self.table);
        table.links.remove(&link);
        for a in table.actors.values_mut() {
            a.inbound.forget(link);
        }
    }

    /// Number of actors in the table.
    pub(crate) fn len(&self) -> usize {
        lock(&self.table).actors.len()
    }

    /// Stops every actor and empties the table (the node stops).
    pub(crate) fn clear(&self) {
        let all = {
            let mut table = lock(&self.table);
            table.links.clear();
            table.spawned.clear();
            std::mem::take(&mut table.actors)
        };
        for actor in all.values() {
            actor.stop.stop.cancel();
        }
    }
}
