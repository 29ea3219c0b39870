//! The actors on this node that the network can reach, by local id, with the node that
//! spawned each. An actor that stops leaves the table (its stop notice removes it), and a
//! stopped actor's id answers `UnknownActor`; the node can stop any of them. Messages are
//! decoded outside the table's lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use actix::Addr;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::actor::DistributedActor;
use crate::dispatch::{self, ErasedAddr, ProbeFuture, ReplyFuture, StopHandle, StopNotice, Watch};
use crate::error::{RemoteError, RemoteErrorKind};
use crate::format::Format;
use crate::ids::{ActorId, ActorTypeId, IdMap, LinkId, LocalActorId, NodeId, RequestId, WireId};
use crate::proto::activation::ActivationKey;
use crate::proto::flow::{Credit, FlowViolation, FlowWindow, InboundAccount, LinkAccount};
use crate::proto::registry::record::ActorLocation;
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
    /// Set while its inbound messages are held; local handles check it before sending.
    gate: Gate,
    /// The messages held, in arrival order (`Some` while held).
    parked: Option<Vec<Parked>>,
    /// The key and identity, for a keyed activation.
    keyed: Option<(ActivationKey, ActorId)>,
}

/// A keyed activation that takes messages, as the table reports it.
pub(crate) struct KeyedActivity {
    /// The activation.
    pub(crate) actor: LocalActorId,
    /// Its key.
    pub(crate) key: ActivationKey,
    /// Its identity in the directory.
    pub(crate) identity: ActorId,
    /// Messages that reached it so far.
    pub(crate) count: u64,
}

/// Shared by an actor's entry and its local handles: whether its inbound messages are held
/// (it is moving, or being passivated), and how many messages reached it (for idleness).
pub(crate) type Gate = Arc<ActorCell>;

/// Called when a message reaches a watched actor while it is clean (see [`ActorCell::touch`]).
pub(crate) type WatchFn = Box<dyn Fn() + Send + Sync>;

/// See [`Gate`].
#[derive(Default)]
pub(crate) struct ActorCell {
    /// Its inbound messages are held.
    pub(crate) held: AtomicBool,
    /// Messages that reached it so far.
    pub(crate) activity: AtomicU64,
    /// A message reached it since its state was last taken (watched actors).
    dirty: AtomicBool,
    /// Set for actors whose state is snapshotted: told of the first message after each take.
    watch: std::sync::OnceLock<WatchFn>,
}

impl std::fmt::Debug for ActorCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorCell")
            .field("held", &self.held)
            .field("activity", &self.activity)
            .field("watched", &self.watch.get().is_some())
            .finish()
    }
}

impl ActorCell {
    fn held(held: bool) -> Self {
        Self { held: AtomicBool::new(held), ..Self::default() }
    }

    /// Counts a message; a watched actor that was clean reports it. Called on the node's
    /// thread just before the message goes into the mailbox, so a state taken in answer
    /// comes after it in mailbox order.
    pub(crate) fn touch(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
        if let Some(watch) = self.watch.get() {
            if !self.dirty.swap(true, Ordering::AcqRel) {
                watch();
            }
        }
    }
}

/// A keyed activation that was passivated: what reaches it waits here for the next one.
struct Passivated {
    key: ActivationKey,
    parked: Vec<Parked>,
}

/// A message for an actor whose inbound messages are held, kept to be delivered later: to
/// the actor when it takes messages again, or where it moved.
pub(crate) enum Parked {
    /// A tell from a link (its flow-control credit stays taken until it is delivered or
    /// forwarded).
    Tell {
        /// The link it came on.
        link: LinkId,
        /// Its message type.
        message: WireId,
        /// Its format.
        format: Format,
        /// Its payload.
        payload: Bytes,
        /// Its frame's size.
        size: usize,
    },
    /// An ask from a peer (its slot among the peer's asks stays taken until it is answered).
    Ask {
        /// The asking node.
        peer: NodeId,
        /// Its request.
        request: RequestId,
        /// Its message type.
        message: WireId,
        /// Its format.
        format: Format,
        /// Its payload.
        payload: Bytes,
        /// Its frame's size.
        size: usize,
    },
    /// A message from a local handle.
    Local(LocalSend),
}

/// A message from a local handle to a held actor, run when it is resumed.
pub(crate) type LocalSend = Box<dyn FnOnce(Resume<'_>) + Send>;

/// Where a held message goes.
pub(crate) enum Resume<'a> {
    /// To the actor, which takes messages again.
    Here(&'a ErasedAddr),
    /// To where the actor moved.
    There(&'a ActorLocation),
}

/// Work for the node's forwarding task ([`forward`](crate::node::forward)).
pub(crate) enum Forward {
    /// A message for the actor now at `to`.
    Message {
        /// Where the actor is now.
        to: ActorLocation,
        /// The message.
        parked: Parked,
    },
    /// Runs once everything queued before it has been forwarded.
    Then(Box<dyn FnOnce() + Send>),
}

/// An ask delivered to an actor: its reply to come, or where it went.
pub(crate) enum Asked {
    /// In the mailbox; the reply comes out of the future.
    Reply(ReplyFuture),
    /// Held with the actor's other inbound messages.
    Parked,
    /// The actor moved there: the ask is to be forwarded.
    Moved(ActorLocation),
}

/// How a guaranteed message reaches its actor.
pub(crate) enum Guaranteed {
    /// Into its mailbox now: its address, the message's handler and its probe.
    Now(ErasedAddr, &'static HandlerRegistration, ProbeFn),
    /// Held with its other inbound messages (moving, yielding, passivated): it goes where
    /// the actor is once released.
    Held,
    /// The actor moved there.
    Moved(ActorLocation),
}

/// What resuming a held actor here produced: replies to await and the probe to send.
pub(crate) struct Resumed {
    /// Parked asks now in the mailbox: (asking node, request, frame size, reply).
    pub(crate) replies: Vec<(NodeId, RequestId, usize, ReplyFuture)>,
    /// Parked asks that did not decode: (asking node, request, frame size, error).
    pub(crate) refused: Vec<(NodeId, RequestId, usize, RemoteError)>,
    /// A flow-control probe for the tells now in the mailbox.
    pub(crate) probe: Option<ProbeJob>,
}

/// Why a tell or ask was not delivered.
pub(crate) enum Undelivered {
    /// Refused; the peer is told why.
    Refused(RemoteError),
    /// The actor moved there: the tell is to be forwarded.
    Moved(ActorLocation),
    /// The actor was passivated: the tell waits for its next activation.
    Passivated,
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
    /// Actors that moved away, and where, for the messages still sent here.
    moved: IdMap<LocalActorId, ActorLocation>,
    /// Keyed activations passivated here, with what reached them since.
    passivated: IdMap<LocalActorId, Passivated>,
    /// Where the first message for a passivated activation is announced.
    wakes: mpsc::UnboundedSender<(LocalActorId, ActivationKey)>,
}

impl Table {
    /// Keeps `parked` for passivated activation `id`, announcing the first; false if `id`
    /// is not a passivated activation.
    fn park_passivated(&mut self, id: LocalActorId, parked: Parked) -> bool {
        let Some(p) = self.passivated.get_mut(&id) else { return false };
        if p.parked.is_empty() {
            let _ = self.wakes.send((id, p.key.clone()));
        }
        p.parked.push(parked);
        true
    }
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

    /// Actor `id` no longer counts against, nor stops with, the node that spawned it.
    fn detach(&mut self, id: LocalActorId) {
        let Some(node) = self.actors.get_mut(&id).and_then(|a| a.spawner.take()) else { return };
        if let Some(n) = self.spawned.get_mut(&node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.spawned.remove(&node);
            }
        }
    }

    fn remove(&mut self, id: LocalActorId) -> Option<LocalActor> {
        let actor = self.actors.remove(&id)?;
        // A table that held many actors gives its room back once most are gone.
        if self.actors.capacity() > 64 && self.actors.len() < self.actors.capacity() / 4 {
            self.actors.shrink_to(self.actors.len() * 2);
        }
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

/// What the actor table reports to the node's tasks.
pub(crate) struct Outlets {
    /// Credit of tells left in stopped actors' mailboxes.
    pub(crate) orphans: mpsc::UnboundedReceiver<OrphanCredit>,
    /// Stopped actors the services follow.
    pub(crate) departures: mpsc::UnboundedReceiver<LocalActorId>,
    /// First messages for passivated activations.
    pub(crate) woken: mpsc::UnboundedReceiver<(LocalActorId, ActivationKey)>,
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
    pub(crate) fn new(window: FlowWindow, link_window: FlowWindow, max_frame: usize) -> (Self, Outlets) {
        let (orphans, rx) = mpsc::unbounded_channel();
        let (departed, departures) = mpsc::unbounded_channel();
        let (wakes, woken) = mpsc::unbounded_channel();
        let table = Table {
            actors: IdMap::default(),
            spawned: IdMap::default(),
            links: IdMap::default(),
            orphans,
            departed,
            moved: IdMap::default(),
            passivated: IdMap::default(),
            wakes,
        };
        let actors = Self {
            next: AtomicU64::new(1),
            table: Arc::new(Mutex::new(table)),
            window,
            link_window,
            max_frame: max_frame as u64,
        };
        (actors, Outlets { orphans: rx, departures, woken })
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

    /// The address, stop handle and gate of actor `id`, if it runs here and is an `A`.
    pub(crate) fn local_handle<A: DistributedActor>(&self, id: LocalActorId) -> Option<(Addr<A>, StopHandle, Gate)> {
        let table = lock(&self.table);
        let a = table.actors.get(&id)?;
        let addr = a.addr.downcast_ref::<Addr<A>>()?.clone();
        Some((addr, a.stop.clone(), a.gate.clone()))
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
    pub(crate) fn start<A: DistributedActor>(&self, actor: A) -> (LocalActorId, Addr<A>, StopHandle, Gate) {
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
            gate: Gate::default(),
            parked: None,
            keyed: None,
        };
        let gate = entry.gate.clone();
        lock(&self.table).insert(id, entry);
        (id, addr, stop, gate)
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
        self.spawn_gated(reg, format, state, Some(spawner), limit, false)
    }

    /// Builds an actor of a registered type from its state (for `spawner`, if a peer asked,
    /// which may have at most `limit` live actors here), holding its inbound messages from
    /// the start if `held`.
    pub(crate) fn spawn_gated(
        &self,
        reg: &ActorRegistration,
        format: Format,
        state: &[u8],
        spawner: Option<NodeId>,
        limit: usize,
        held: bool,
    ) -> Result<LocalActorId, RemoteError> {
        if let Some(spawner) = spawner {
            Self::check_spawned(self.spawned_by(spawner), limit)?;
        }
        let (id, stop, watch) = self.reserve();
        let addr = (reg.spawn)(format, state, watch)?;
        let entry = LocalActor {
            type_id: ActorTypeId(reg.type_id),
            addr,
            stop,
            spawner,
            inbound: self.account(),
            probe: reg.probe,
            announce: false,
            gate: Arc::new(ActorCell::held(held)),
            parked: held.then(Vec::new),
            keyed: None,
        };
        lock(&self.table).insert(id, entry);
        Ok(id)
    }

    fn check_spawned(live: usize, limit: usize) -> Result<(), RemoteError> {
        if live >= limit {
            return Err(RemoteError::new(
                RemoteErrorKind::Overloaded,
                format!("{live} actors spawned by this node are alive here, the most allowed (max_spawned_per_peer)"),
            ));
        }
        Ok(())
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

    /// Decodes an ask for actor `target` from `peer` and delivers it; returns the future of
    /// the reply (or that it was held, or where the actor moved).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver_ask(
        &self,
        types: &TypeTable,
        peer: NodeId,
        request: RequestId,
        target: LocalActorId,
        message: WireId,
        format: Format,
        payload: &[u8],
        body: &Bytes,
    ) -> Result<Asked, RemoteError> {
        let (type_id, addr) = {
            let mut table = lock(&self.table);
            let t = &mut *table;
            let Some(a) = t.actors.get_mut(&target) else {
                if let Some(to) = t.moved.get(&target) {
                    return Ok(Asked::Moved(to.clone()));
                }
                let parked =
                    Parked::Ask { peer, request, message, format, payload: body.slice_ref(payload), size: body.len() };
                return if t.park_passivated(target, parked) { Ok(Asked::Parked) } else { Err(unknown_actor(target)) };
            };
            handler(types, a.type_id, target, message)?;
            a.gate.touch();
            if let Some(parked) = a.parked.as_mut() {
                let payload = body.slice_ref(payload);
                parked.push(Parked::Ask { peer, request, message, format, payload, size: body.len() });
                return Ok(Asked::Parked);
            }
            (a.type_id, a.addr.clone())
        };
        let handler = handler(types, type_id, target, message)?;
        match (handler.dispatch)(&*addr, format, payload, true)? {
            Some(reply) => Ok(Asked::Reply(reply)),
            None => Err(RemoteError::new(RemoteErrorKind::Encode, "the ask produced no reply".to_owned())),
        }
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
        body: &Bytes,
    ) -> Result<Vec<ProbeJob>, Undelivered> {
        let size = body.len();
        // Counted under the lock while the actor is looked up, decoded outside it; a tell that
        // does not decode is taken off the count again.
        let (addr, handler, actor_due, link_due) = {
            let mut table = lock(&self.table);
            let t = &mut *table;
            let Some(actor) = t.actors.get_mut(&target) else {
                if let Some(to) = t.moved.get(&target) {
                    return Err(Undelivered::Moved(to.clone()));
                }
                let parked = Parked::Tell { link, message, format, payload: body.slice_ref(payload), size };
                return Err(if t.park_passivated(target, parked) {
                    Undelivered::Passivated
                } else {
                    Undelivered::Refused(unknown_actor(target))
                });
            };
            let handler = handler(types, actor.type_id, target, message).map_err(Undelivered::Refused)?;
            actor.gate.touch();
            let (actor_due, first) = actor.inbound.deliver(link, size).map_err(Undelivered::Flow)?;
            let addr = actor.addr.clone();
            let account = t.links.entry(link).or_insert_with(|| LinkAccount::new(self.link_window, self.max_frame));
            let link_due = account.deliver(target, size, first).map_err(Undelivered::Flow)?;
            if let Some(parked) = t.actors.get_mut(&target).and_then(|a| a.parked.as_mut()) {
                parked.push(Parked::Tell { link, message, format, payload: body.slice_ref(payload), size });
                return Ok(Vec::new());
            }
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

    /// Whether actor `target` runs here (or waits for its next activation here) and takes
    /// `message`, without delivering anything.
    pub(crate) fn accepts(&self, types: &TypeTable, target: LocalActorId, message: WireId) -> Result<(), RemoteError> {
        let table = lock(&self.table);
        if let Some(a) = table.actors.get(&target) {
            return handler(types, a.type_id, target, message).map(|_| ());
        }
        if let Some(p) = table.passivated.get(&target) {
            return handler(types, p.key.actor_type, target, message).map(|_| ());
        }
        if let Some(to) = table.moved.get(&target) {
            return Err(RemoteError::new(
                RemoteErrorKind::UnknownActor,
                format!("actor {target} moved to node `{}`", to.node),
            ));
        }
        Err(unknown_actor(target))
    }

    /// Finds how a guaranteed message for actor `target` reaches it: now (its address and
    /// handler), or held with its other inbound messages (as `park` builds it, given the
    /// handler), or where it moved.
    pub(crate) fn deliver_guaranteed(
        &self,
        types: &TypeTable,
        target: LocalActorId,
        message: WireId,
        park: impl FnOnce(&'static HandlerRegistration) -> LocalSend,
    ) -> Result<Guaranteed, RemoteError> {
        let mut table = lock(&self.table);
        let t = &mut *table;
        let Some(a) = t.actors.get_mut(&target) else {
            if let Some(to) = t.moved.get(&target) {
                return Ok(Guaranteed::Moved(to.clone()));
            }
            let Some(actor_type) = t.passivated.get(&target).map(|p| p.key.actor_type) else {
                return Err(unknown_actor(target));
            };
            let h = handler(types, actor_type, target, message)?;
            t.park_passivated(target, Parked::Local(park(h)));
            return Ok(Guaranteed::Held);
        };
        let h = handler(types, a.type_id, target, message)?;
        a.gate.touch();
        if let Some(parked) = a.parked.as_mut() {
            parked.push(Parked::Local(park(h)));
            return Ok(Guaranteed::Held);
        }
        Ok(Guaranteed::Now(a.addr.clone(), h, a.probe))
    }

    /// Holds actor `id`'s inbound messages from now on; false if it is not here.
    pub(crate) fn hold(&self, id: LocalActorId) -> bool {
        let mut table = lock(&self.table);
        let Some(a) = table.actors.get_mut(&id) else { return false };
        if a.parked.is_none() {
            a.parked = Some(Vec::new());
        }
        a.gate.held.store(true, Ordering::Release);
        true
    }

    /// A local handle's message for held actor `id`: kept with its other held messages.
    /// Given back, with where the actor moved if it did, when the actor is no longer held.
    pub(crate) fn park_local(
        &self,
        id: LocalActorId,
        send: LocalSend,
    ) -> Result<(), (LocalSend, Option<ActorLocation>)> {
        let mut table = lock(&self.table);
        if let Some(parked) = table.actors.get_mut(&id).and_then(|a| a.parked.as_mut()) {
            parked.push(Parked::Local(send));
            return Ok(());
        }
        if let Some(to) = table.moved.get(&id).cloned() {
            return Err((send, Some(to)));
        }
        if table.passivated.contains_key(&id) {
            table.park_passivated(id, Parked::Local(send));
            return Ok(());
        }
        Err((send, None))
    }

    /// Delivers held actor `id`'s messages to it, in order, and lets it take messages again.
    pub(crate) fn resume_here(&self, types: &TypeTable, id: LocalActorId) -> Resumed {
        let mut resumed = Resumed { replies: Vec::new(), refused: Vec::new(), probe: None };
        let mut table = lock(&self.table);
        let t = &mut *table;
        let Some(a) = t.actors.get_mut(&id) else { return resumed };
        let parked = a.parked.take().unwrap_or_default();
        let addr = a.addr.clone();
        let type_id = a.type_id;
        // Under the lock, so nothing that arrives meanwhile overtakes them.
        for p in parked {
            match p {
                Parked::Tell { link, message, format, payload, size } => {
                    let delivered = handler(types, type_id, id, message)
                        .and_then(|h| (h.dispatch)(&*addr, format, &payload, false));
                    if let Err(e) = delivered {
                        tracing::warn!(actor = %id, kind = ?e.kind, detail = %e.detail, "a held tell was not delivered");
                        if let Some(a) = t.actors.get_mut(&id) {
                            a.inbound.undeliver(link, size);
                        }
                    }
                }
                Parked::Ask { peer, request, message, format, payload, size } => {
                    let delivered =
                        handler(types, type_id, id, message).and_then(|h| (h.dispatch)(&*addr, format, &payload, true));
                    match delivered {
                        Ok(Some(reply)) => resumed.replies.push((peer, request, size, reply)),
                        Ok(None) => {}
                        Err(e) => resumed.refused.push((peer, request, size, e)),
                    }
                }
                Parked::Local(send) => send(Resume::Here(&addr)),
            }
        }
        if let Some(a) = t.actors.get_mut(&id) {
            a.gate.held.store(false, Ordering::Release);
            // The tells held meanwhile kept their credit: a probe returns it as they are handled.
            if a.inbound.links().next().is_some() && !a.inbound.probing() {
                if let Some(future) = (a.probe)(&*a.addr) {
                    a.inbound.probe_sent();
                    resumed.probe = Some(ProbeJob { actor: id, future });
                }
            }
        }
        resumed
    }

    /// Held actor `id` moved to `to`: it leaves the table (its tells' credit goes back), the
    /// messages still sent here are to be forwarded there, and the held ones are returned,
    /// in order, to forward first.
    pub(crate) fn move_away(&self, id: LocalActorId, to: ActorLocation) -> Vec<Parked> {
        let mut table = lock(&self.table);
        let parked = table.actors.get_mut(&id).and_then(|a| a.parked.take()).unwrap_or_default();
        table.moved.insert(id, to);
        table.remove(id);
        parked
    }

    /// Marks local actor `id` as the activation of `key`; false if it is not here. The
    /// activation belongs to its key from now on: it no longer stops with the node that
    /// spawned it.
    pub(crate) fn mark_keyed(&self, id: LocalActorId, key: ActivationKey, identity: ActorId) -> bool {
        let mut table = lock(&self.table);
        let Some(a) = table.actors.get_mut(&id) else { return false };
        a.keyed = Some((key, identity));
        table.detach(id);
        true
    }

    /// Actor `id` no longer stops with the node that spawned it; false if it is not here.
    pub(crate) fn detach(&self, id: LocalActorId) -> bool {
        let mut table = lock(&self.table);
        table.detach(id);
        table.actors.contains_key(&id)
    }

    /// Calls `watch` when a message reaches actor `id` after [`clean`](Self::clean) (or
    /// from now); false if it is not here or already watched.
    pub(crate) fn watch(&self, id: LocalActorId, watch: WatchFn) -> bool {
        let table = lock(&self.table);
        table.actors.get(&id).is_some_and(|a| a.gate.watch.set(watch).is_ok())
    }

    /// Actor `id`'s state is about to be taken: the next message makes it dirty again.
    pub(crate) fn clean(&self, id: LocalActorId) {
        if let Some(a) = lock(&self.table).actors.get(&id) {
            a.gate.dirty.store(false, Ordering::Release);
        }
    }

    /// True if actor `id`'s inbound messages are held.
    pub(crate) fn is_held(&self, id: LocalActorId) -> bool {
        lock(&self.table).actors.get(&id).is_some_and(|a| a.parked.is_some())
    }

    /// The key actor `id` is the activation of, if it is one.
    pub(crate) fn key_of(&self, id: LocalActorId) -> Option<ActivationKey> {
        lock(&self.table).actors.get(&id).and_then(|a| a.keyed.as_ref().map(|(key, _)| key.clone()))
    }

    /// Every keyed activation here that takes messages.
    pub(crate) fn keyed_activity(&self) -> Vec<KeyedActivity> {
        let table = lock(&self.table);
        table
            .actors
            .iter()
            .filter(|(_, a)| a.parked.is_none())
            .filter_map(|(id, a)| {
                let (key, identity) = a.keyed.clone()?;
                Some(KeyedActivity { actor: *id, key, identity, count: a.gate.activity.load(Ordering::Relaxed) })
            })
            .collect()
    }

    /// Actors of the keyed types `keyed` that a peer spawned here and that never became a
    /// key's activation (their registration failed and the spawner's stop never came).
    pub(crate) fn unclaimed(&self, keyed: &dyn Fn(ActorTypeId) -> bool) -> Vec<LocalActorId> {
        let table = lock(&self.table);
        table
            .actors
            .iter()
            .filter(|(_, a)| a.keyed.is_none() && a.spawner.is_some() && keyed(a.type_id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Held keyed activation `id` of `key` is passivated if nothing reached it while held:
    /// it leaves the table (the caller stops it) and what is sent to it from now on waits for
    /// the next activation. False if something did (it stays, held).
    pub(crate) fn passivate(&self, id: LocalActorId, key: ActivationKey) -> bool {
        let mut table = lock(&self.table);
        let Some(a) = table.actors.get(&id) else { return false };
        if a.parked.as_ref().is_some_and(|p| !p.is_empty()) {
            return false;
        }
        table.remove(id);
        table.passivated.insert(id, Passivated { key, parked: Vec::new() });
        true
    }

    /// The next activation of passivated `id` runs at `to`: what waited for it is returned,
    /// in order, to forward there, and what is still sent to `id` is forwarded too.
    pub(crate) fn release_passivated(&self, id: LocalActorId, to: ActorLocation) -> Vec<Parked> {
        let mut table = lock(&self.table);
        let parked = table.passivated.remove(&id).map(|p| p.parked).unwrap_or_default();
        table.moved.insert(id, to);
        parked
    }

    /// Activates `key` of a keyed type registered here, not held; `None` if the type is not.
    pub(crate) fn activate_key(&self, types: &TypeTable, key: &ActivationKey) -> Option<LocalActorId> {
        let keyed = types.keyed(key.actor_type)?;
        let reg = types.actor(key.actor_type)?;
        let (id, stop, watch) = self.reserve();
        let addr = (keyed.activate)(&key.key, watch);
        let entry = LocalActor {
            type_id: key.actor_type,
            addr,
            stop,
            spawner: None,
            inbound: self.account(),
            probe: reg.probe,
            announce: false,
            gate: Gate::default(),
            parked: None,
            keyed: None,
        };
        lock(&self.table).insert(id, entry);
        Some(id)
    }

    /// Delivers a forwarded message to actor `id` here (its next activation), outside flow
    /// control: the asks' replies to await, or false if the actor is not here.
    pub(crate) fn deliver_parked(
        &self,
        types: &TypeTable,
        id: LocalActorId,
        parked: Parked,
    ) -> Result<Option<(NodeId, RequestId, usize, ReplyFuture)>, RemoteError> {
        let (type_id, addr) = {
            let table = lock(&self.table);
            let a = table.actors.get(&id).ok_or_else(|| unknown_actor(id))?;
            a.gate.touch();
            (a.type_id, a.addr.clone())
        };
        match parked {
            Parked::Tell { message, format, payload, .. } => {
                let h = handler(types, type_id, id, message)?;
                (h.dispatch)(&*addr, format, &payload, false).map(|_| None)
            }
            Parked::Ask { peer, request, message, format, payload, size } => {
                let h = handler(types, type_id, id, message)?;
                Ok((h.dispatch)(&*addr, format, &payload, true)?.map(|reply| (peer, request, size, reply)))
            }
            Parked::Local(send) => {
                send(Resume::Here(&addr));
                Ok(None)
            }
        }
    }

    /// The messages still sent to moved actor `id` are refused from now on.
    pub(crate) fn forget_moved(&self, id: LocalActorId) {
        lock(&self.table).moved.remove(&id);
    }

    /// Asks actor `id` for its serialized state, in mailbox order.
    pub(crate) fn take_state(&self, types: &TypeTable, id: LocalActorId) -> Option<dispatch::StateFuture> {
        let table = lock(&self.table);
        let a = table.actors.get(&id)?;
        let reg = types.actor(a.type_id)?;
        (reg.take_state)(&*a.addr)
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
