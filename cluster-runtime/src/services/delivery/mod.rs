//! The delivery service: guaranteed point-to-point messages over reliable streams
//! ([`Outbox`] and [`Inbox`]), one unordered and one ordered stream per peer incarnation.
//!
//! As a **sender** it numbers each guaranteed message on the stream to its target's node,
//! keeps it until the receiver confirms that the handler ran, and settles its receipt. A
//! message that comes back unhandled (the actor moved, or is not there) or whose node
//! incarnation is gone is sent again where the actor is now, found through the handle's
//! locator (the directory, or the key's next activation), with the same id. Ordered
//! messages to one actor wait while earlier ones are still on their way to a place the
//! actor left, so they are handled in the order they were sent.
//!
//! As a **receiver** it delivers each message to the local actor like a remote ask (held
//! while the actor is held, `Moved` when it moved), confirms it once the handler has run,
//! and returns the outcomes that matter (an ask's reply, a move, a refusal) with its
//! grants. Exactly-once messages are checked against a window of ids ([`DedupWindow`]):
//! a copy of a handled message is not handled again, and an ask's copy gets the first reply.

pub mod api;
pub(crate) mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::DeliveryConfig;
use crate::error::{ClusterError, RemoteError, RemoteErrorKind};
use crate::format::Format;
use crate::ids::{ActorId, IdMap, LocalActorId, MessageId, NodeId, WireId};
use crate::node::peers::PeerInfo;
use crate::node::service::{
    call_on, BatchItem, Cx, Delivered, Handled, Install, Metrics, Service, ServiceFrameError, Stop,
};
use crate::proto::delivery::causal::{CausalSends, VClock};
use crate::proto::delivery::dedup::{fingerprint, DedupConfig, DedupWindow, Verdict};
use crate::proto::delivery::inbox::{self, Inbox, InboxConfig};
use crate::proto::delivery::outbox::{self, Grant, Outbox, OutboxConfig, Seq};
use crate::proto::delivery::transaction::{
    AbortReason, Coordinator, CoordinatorOutput, Outcome as TxnResult, Participant, ParticipantOutput, TxnConfig,
    TxnFrame, TxnId,
};
use crate::proto::delivery::wire::{self, DeliveryFrame, Envelope, Outcome, To, TxnItem, TxnTo};
use crate::proto::membership::MembershipEvent;
use crate::proto::registry::record::ActorLocation;
use crate::proto::wire::channel::Channel;
use crate::services::delivery::api::{
    failed, DeliveryFailure, DeliveryStats, DeliveryStatus, ReceiptSender, ReceiptState,
};
use crate::transport::link::LinkEnd;

/// The version of delivery's frames.
const VERSION: u16 = 3;

/// Causal messages held back at most (they wait for the messages they depend on).
const CAUSAL_HOLD_BACK: usize = 100_000;

/// A node asked which of its causal messages are not settled is asked again after this
/// long while messages still wait.
const CAUSAL_ASK_AGAIN: Duration = Duration::from_millis(200);

/// The most unsettled numbers an answer lists (it then covers less).
const CAUSAL_ANSWER_MOST: usize = 1024;

/// A message that came back unhandled is sent elsewhere at most this many times.
const MAX_REROUTES: u32 = 8;

/// What the API hands the service for one guaranteed send.
pub(crate) struct Submit {
    pub(crate) id: MessageId,
    pub(crate) dest: Dest,
    pub(crate) message: WireId,
    pub(crate) format: Format,
    pub(crate) payload: Bytes,
    pub(crate) reply: bool,
    pub(crate) dedup: bool,
    pub(crate) ordered: bool,
    pub(crate) expire_after: Option<Duration>,
    pub(crate) receipt: ReceiptSender,
    /// Its send was counted against its destination's node (see
    /// [`DeliveryShared::enqueue`]).
    pub(crate) counted: bool,
    /// Causal: stamped with the node's clock when the service takes it.
    pub(crate) causal: bool,
}

/// Where a guaranteed message goes.
pub(crate) enum Dest {
    /// An actor: where it is thought to run, and how to find it again (`None`: ask the
    /// directory).
    Actor { identity: ActorId, location: Arc<ActorLocation>, locator: Option<api::Locator> },
    /// The service on `channel` of node incarnation `node_id` (named `node`), for `key`
    /// (the broker, for a topic's subscribers there). It is not sent anywhere else.
    Sink { node: String, node_id: NodeId, channel: Channel, key: String },
}

impl Dest {
    /// The node incarnation it is thought to be on.
    fn node_id(&self) -> NodeId {
        match self {
            Dest::Actor { location, .. } => location.node_id,
            Dest::Sink { node_id, .. } => *node_id,
        }
    }

    /// The identity messages to this destination are ordered and routed by (a sink's is
    /// made from its channel, key and node).
    fn identity(&self) -> ActorId {
        match self {
            Dest::Actor { identity, .. } => *identity,
            Dest::Sink { node_id, channel, key, .. } => {
                ActorId(MessageId::from_key(&format!("{channel}/{key}@{node_id}")).0)
            }
        }
    }
}

/// An outcome as the sender keeps it.
#[derive(Debug, Clone)]
enum Owned {
    Reply(Bytes),
    Moved(ActorLocation),
    Refused(RemoteError),
}

impl Owned {
    fn from_wire(o: &Outcome<'_>) -> Self {
        match o {
            Outcome::Reply(bytes) => Owned::Reply(Bytes::copy_from_slice(bytes)),
            Outcome::Moved(to) => Owned::Moved(to.clone()),
            Outcome::Refused(e) => Owned::Refused(e.clone()),
        }
    }

    fn to_wire(&self) -> Outcome<'_> {
        match self {
            Owned::Reply(bytes) => Outcome::Reply(bytes),
            Owned::Moved(to) => Outcome::Moved(to.clone()),
            Owned::Refused(e) => Outcome::Refused(e.clone()),
        }
    }

    fn size(&self) -> usize {
        match self {
            Owned::Reply(bytes) => bytes.len() + 8,
            Owned::Moved(to) => to.node.len() + 40,
            Owned::Refused(e) => e.detail.len() + 8,
        }
    }
}

/// Where a sent message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Being written to the durable outbox (sent once it is kept).
    Storing,
    /// Waiting in its target's queue (to be routed).
    Queued,
    /// On a stream to another node.
    Stream,
    /// Given to a local actor.
    Local,
}

/// A guaranteed message this node sent and has not settled.
struct Entry {
    id: MessageId,
    identity: ActorId,
    message: WireId,
    format: Format,
    payload: Bytes,
    reply: bool,
    dedup: bool,
    ordered: bool,
    deadline: Option<Duration>,
    receipt: ReceiptSender,
    /// How to find an actor again (`None` for a sink).
    locator: Option<api::Locator>,
    /// A service's channel and key, for a message to a sink.
    sink: Option<Box<(Channel, String)>>,
    at: At,
    /// The place it was last sent to.
    sent_to: Option<Arc<ActorLocation>>,
    /// The outcome a grant brought (before the grant's confirmation settles it).
    outcome: Option<Box<Owned>>,
    reroutes: u32,
    /// Its key in the durable outbox, if it is kept there.
    stored: Option<u64>,
    /// The node its send was counted against.
    counted: Option<NodeId>,
    /// Causal: its number and its stamp.
    causal: Option<Box<Stamped>>,
}

/// A causal entry's number and the stamp it carries (its node's clock when sent).
type Stamped = (u64, Vec<(NodeId, u64)>);

/// The unsettled entries by number. Numbers are given out in order and mostly settle in
/// order, so they sit in a queue from the oldest unsettled one on: no hashing, and no
/// table to rebuild as entries come and go.
#[derive(Default)]
struct Entries {
    /// The number of the first slot.
    base: u64,
    slots: VecDeque<Option<Entry>>,
    len: usize,
}

impl Entries {
    /// Adds entry `no`, the next number given out.
    fn insert(&mut self, no: u64, e: Entry) {
        if self.slots.is_empty() {
            self.base = no;
        }
        let Some(index) = no.checked_sub(self.base).and_then(|i| usize::try_from(i).ok()) else { return };
        while self.slots.len() <= index {
            self.slots.push_back(None);
        }
        if self.slots[index].replace(e).is_none() {
            self.len += 1;
        }
    }

    fn index(&self, no: u64) -> Option<usize> {
        no.checked_sub(self.base).and_then(|i| usize::try_from(i).ok())
    }

    fn get(&self, no: &u64) -> Option<&Entry> {
        self.slots.get(self.index(*no)?)?.as_ref()
    }

    fn get_mut(&mut self, no: &u64) -> Option<&mut Entry> {
        let index = self.index(*no)?;
        self.slots.get_mut(index)?.as_mut()
    }

    /// Drops entry `no` in its slot.
    fn discard(&mut self, no: u64) {
        let Some(slot) = self.index(no).and_then(|i| self.slots.get_mut(i)) else { return };
        if slot.is_some() {
            *slot = None;
            self.len -= 1;
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn drain(&mut self) -> impl Iterator<Item = Entry> + '_ {
        self.len = 0;
        self.slots.drain(..).flatten()
    }
}

/// A sender's stream to one peer incarnation.
struct OutStream {
    name: String,
    /// Its epoch (see [`DeliveryFrame::Messages`]).
    epoch: u32,
    outbox: Outbox<u64>,
}

/// What the sender knows about one target actor.
#[derive(Default)]
struct Target {
    /// Where it runs, as far as known (`None`: to be found).
    route: Option<Arc<ActorLocation>>,
    /// Messages sent and not settled, per node incarnation.
    outstanding: Outstanding,
    /// Messages that came back unhandled, oldest first: sent again before `queue`.
    rerouted: VecDeque<u64>,
    /// New messages waiting for the route (or, ordered, for earlier ones to settle).
    queue: VecDeque<u64>,
    /// A lookup is under way.
    locating: bool,
    /// When the next lookup may start, after one found nothing.
    locate_at: Option<Duration>,
    /// Since when the target has been looked for without success.
    lost_since: Option<Duration>,
}

/// Messages sent to a target and not settled, per node incarnation: mostly one node, so a
/// short list rather than a tree.
#[derive(Default)]
struct Outstanding(Vec<(NodeId, u32)>);

impl Outstanding {
    fn add(&mut self, node: NodeId) {
        match self.0.iter_mut().find(|(n, _)| *n == node) {
            Some((_, count)) => *count += 1,
            None => self.0.push((node, 1)),
        }
    }

    /// One fewer on `node` (if any were counted there).
    fn remove_one(&mut self, node: NodeId) {
        if let Some(i) = self.0.iter().position(|(n, _)| *n == node) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.swap_remove(i);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Some are on a node other than `node`.
    fn elsewhere(&self, node: NodeId) -> bool {
        self.0.iter().any(|(n, _)| *n != node)
    }
}

impl Target {
    fn is_idle(&self) -> bool {
        self.outstanding.is_empty() && self.rerouted.is_empty() && self.queue.is_empty() && !self.locating
    }
}

/// Where an arrived message goes.
#[derive(Debug, Clone)]
enum ArrivedTo {
    Actor { identity: ActorId, target: LocalActorId },
    Sink { channel: Channel, key: String },
}

impl ArrivedTo {
    /// The scope its message ids are unique in (exactly-once).
    fn scope(&self) -> u128 {
        match self {
            ArrivedTo::Actor { identity, .. } => identity.0,
            ArrivedTo::Sink { channel, key } => MessageId::from_key(key).0 ^ u128::from(channel.0),
        }
    }
}

/// A message as the receiver keeps it until delivered.
#[derive(Debug, Clone)]
struct Arrived {
    id: MessageId,
    to: ArrivedTo,
    message: WireId,
    format: Format,
    reply: bool,
    dedup: bool,
    payload: Bytes,
    causal: Option<Vec<(NodeId, u64)>>,
}

/// A receiver's stream from one peer incarnation.
struct InStream {
    /// The sender's epoch of this stream.
    epoch: u32,
    inbox: Inbox<Arrived>,
    /// The sender's confirmed watermark, as its last message said.
    sender_confirmed: Seq,
    /// Outcomes of handled numbers the sender may not have seen yet.
    kept: BTreeMap<Seq, Owned>,
}

/// A message for a local actor, waiting for the end of the step to be delivered (or held
/// back, causal, until what it depends on is).
struct Arrival {
    back: Back,
    target: LocalActorId,
    item: BatchItem,
    /// Causal: the actor's identity.
    causal: Option<ActorId>,
}

/// Where the handling of an arrival is reported.
#[derive(Debug, Clone, Copy)]
enum Back {
    /// To the stream it came on.
    Stream { key: StreamKey, epoch: u32, seq: Seq, dkey: Option<DedupKey> },
    /// To this node's own entry (a causal message to a local actor).
    Local(u64),
}

/// A stream's key: the peer incarnation and whether it is the ordered one.
type StreamKey = (NodeId, bool);

/// Exactly-once: a message id in its scope (an actor, or a sink).
type DedupKey = (u128, MessageId);

/// The delivery service of one node.
pub(crate) struct DeliveryService {
    node_id: NodeId,
    config: DeliveryConfig,
    max_frame: usize,
    // Sending.
    entries: Entries,
    next_entry: u64,
    outs: IdMap<StreamKey, OutStream>,
    targets: IdMap<ActorId, Target>,
    expiries: BTreeSet<(Duration, u64)>,
    // Receiving.
    ins: IdMap<StreamKey, InStream>,
    dedup: DedupWindow<DedupKey, Bytes>,
    /// Copies that arrived while the first was being handled: answered with its outcome.
    copies: HashMap<DedupKey, Vec<(StreamKey, u32, Seq)>>,
    /// Numbers the outboxes asked to transmit in this step: (stream, epoch, number, entry);
    /// sent in frames of several messages when the step ends.
    transmits: Vec<(StreamKey, u32, Seq, Option<u64>)>,
    /// The API's queue of sends, swapped in when taken.
    spare_submits: Vec<Submit>,
    /// Targets whose messages settled, or that were sent new ones, in this step: pumped
    /// when it ends.
    touched: Vec<ActorId>,
    /// Streams a pump put messages on: flushed when it is done.
    dirty_outs: Vec<StreamKey>,
    /// Targets that found nothing, by when they look again (entries whose target has
    /// moved on since are skipped when due): the next deadline without a look at every
    /// target.
    locate_due: BTreeSet<(Duration, ActorId)>,
    /// Counted sends that settled in this step: released when it ends.
    released: Vec<NodeId>,
    /// Messages for local actors that arrived in this step: delivered in batches per actor
    /// when the step ends.
    arrivals: Vec<Arrival>,
    // Causal (point-to-point): this node's clock, what it sent and not settled, and what
    // it holds back.
    causal: CausalSends<NodeId, ActorId, Arrival>,
    /// Causal entries by entry number: their target and number.
    causal_numbers: IdMap<u64, (ActorId, u64)>,
    /// Local actors causal messages were delivered to: what they received is forgotten
    /// when they stop.
    causal_actors: IdMap<LocalActorId, ActorId>,
    /// When each node was last asked about its messages to an actor.
    causal_asked: HashMap<(ActorId, NodeId), Duration>,
    /// When held-back causal messages next make this node ask again.
    causal_check: Option<Duration>,
    /// Causal state changed in this step: what is held is looked at when it ends.
    causal_dirty: bool,
    // Peers.
    linked: IdMap<NodeId, PeerInfo>,
    addrs: HashMap<String, String>,
    /// The epoch of the latest stream to each peer.
    epochs: IdMap<StreamKey, u32>,
    /// Node incarnations marked down (they may come back up if they were alive).
    gone: BTreeSet<NodeId>,
    /// Node incarnations gone for good (left, removed, or replaced by a newer one).
    departed: BTreeSet<NodeId>,
    stats: DeliveryStats,
    stopped: bool,
    // The durable outbox.
    store: Option<store::StoreWriter>,
    /// Why the durable outbox could not be opened (every durable send fails with it).
    store_failed: Option<String>,
    next_key: u64,
    /// Records of the previous run, sent again once the node starts.
    resume: Vec<(u64, store::Stored)>,
    wall_origin_ms: u64,
    // Transactions: this node coordinates its own and takes part in others'.
    me: String,
    coordinator: Coordinator<NodeId>,
    participant: Participant<NodeId>,
    txns: HashMap<TxnId, (BTreeMap<NodeId, String>, tokio::sync::oneshot::Sender<api::TxnOutcome>)>,
    next_txn: TxnId,
    shared: Arc<DeliveryShared>,
}

/// What the service shares with its API: the source of message ids, and the queue of
/// sends that do not wait for the service to accept them.
#[derive(Debug)]
pub(crate) struct DeliveryShared {
    /// This incarnation's half of every id it hands out.
    high: u128,
    next: std::sync::atomic::AtomicU64,
    /// A durable outbox is configured: a tell is accepted once kept, so it waits.
    pub(crate) durable: bool,
    /// Unconfirmed sends counted against one node at most.
    capacity: usize,
    queue: std::sync::Mutex<SubmitQueue>,
}

/// Sends handed over by the API and not yet taken by the service.
#[derive(Default)]
struct SubmitQueue {
    submits: Vec<Submit>,
    /// A call to take them is on its way to the service.
    scheduled: bool,
    /// The service stopped: nothing more is taken.
    stopped: bool,
    /// Unconfirmed sends per node they were counted against.
    unconfirmed: IdMap<NodeId, usize>,
}

impl std::fmt::Debug for SubmitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitQueue").field("submits", &self.submits.len()).field("stopped", &self.stopped).finish()
    }
}

impl DeliveryShared {
    /// A new message id, unique among every node incarnation's ids.
    pub(crate) fn next_id(&self) -> MessageId {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        MessageId(self.high | u128::from(n))
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, SubmitQueue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands send `s` to the service without waiting for it, counted against the node its
    /// target is thought to run on: fails with `Backpressure` if `delivery.outbox_capacity`
    /// sends to that node are unconfirmed, with `Shutdown` once the service stopped. The
    /// service takes the queued sends in one call, in the order they were queued.
    pub(crate) fn enqueue(
        &self,
        kernel: &crate::node::system::ClusterSystem,
        mut s: Submit,
    ) -> Result<(), ClusterError> {
        let node = s.dest.node_id();
        let mut q = self.queue();
        if q.stopped {
            return Err(ClusterError::Shutdown);
        }
        let n = q.unconfirmed.entry(node).or_default();
        if *n >= self.capacity {
            let name = match &s.dest {
                Dest::Actor { location, .. } => location.node.clone(),
                Dest::Sink { node, .. } => node.clone(),
            };
            return Err(ClusterError::Backpressure { node: name });
        }
        *n += 1;
        s.counted = true;
        q.submits.push(s);
        if !q.scheduled {
            q.scheduled = true;
            drop(q);
            kernel.node.to_control(crate::node::service::Input::Call(
                Channel::DELIVERY,
                call_on(|s: &mut DeliveryService, cx| s.take_queued(cx)),
            ));
        }
        Ok(())
    }

    /// A counted send settled.
    fn release(&self, node: NodeId) {
        self.release_all(&[node]);
    }

    /// Counted sends settled.
    fn release_all(&self, nodes: &[NodeId]) {
        let mut q = self.queue();
        for node in nodes {
            if let Some(n) = q.unconfirmed.get_mut(node) {
                *n -= 1;
                if *n == 0 {
                    q.unconfirmed.remove(node);
                }
            }
        }
    }
}

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (DeliveryService, Arc<DeliveryShared>) {
    let config = i.config.delivery().clone();
    let (mut store, mut store_failed, mut resume) = (None, None, Vec::new());
    if let Some(path) = &config.outbox_path {
        use store::OutboxStore as _;
        let opened = store::RedbStore::open(path).and_then(|mut s| s.load().map(|records| (s, records)));
        match opened {
            Ok((s, records)) => {
                resume = records;
                store = Some(store::StoreWriter::start(Box::new(s)));
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "the durable outbox could not be opened");
                store_failed = Some(e.to_string());
            }
        }
    }
    let next_key = resume.last().map_or(1, |(k, _)| k + 1);
    let dedup = DedupWindow::new(DedupConfig { window: config.dedup_window, capacity: config.dedup_capacity });
    let txn_config = TxnConfig { resend_after: config.gap_resend_after, give_up: config.txn_give_up };
    let shared = Arc::new(DeliveryShared {
        high: i.node_id.0 & !u128::from(u64::MAX),
        next: 1.into(),
        durable: config.outbox_path.is_some(),
        capacity: config.outbox_capacity,
        queue: std::sync::Mutex::new(SubmitQueue::default()),
    });
    let service = DeliveryService {
        shared: shared.clone(),
        node_id: i.node_id,
        config,
        max_frame: i.config.transport().max_frame_size,
        entries: Entries::default(),
        next_entry: 1,
        outs: IdMap::default(),
        targets: IdMap::default(),
        expiries: BTreeSet::new(),
        ins: IdMap::default(),
        dedup,
        store,
        store_failed,
        next_key,
        resume,
        wall_origin_ms: i.wall_origin_ms,
        me: i.config.node_name().to_owned(),
        coordinator: Coordinator::new(txn_config),
        participant: Participant::new(txn_config),
        txns: HashMap::new(),
        next_txn: 1,
        copies: HashMap::new(),
        transmits: Vec::new(),
        spare_submits: Vec::new(),
        touched: Vec::new(),
        dirty_outs: Vec::new(),
        locate_due: BTreeSet::new(),
        released: Vec::new(),
        arrivals: Vec::new(),
        causal: CausalSends::new(i.node_id, CAUSAL_HOLD_BACK),
        causal_numbers: IdMap::default(),
        causal_actors: IdMap::default(),
        causal_asked: HashMap::new(),
        causal_check: None,
        causal_dirty: false,
        linked: IdMap::default(),
        addrs: HashMap::new(),
        gone: BTreeSet::new(),
        departed: BTreeSet::new(),
        epochs: IdMap::default(),
        stats: DeliveryStats::default(),
        stopped: false,
    };
    (service, shared)
}

impl DeliveryService {
    fn outbox_config(&self) -> OutboxConfig {
        OutboxConfig {
            initial_window: self.config.initial_window,
            capacity: self.config.outbox_capacity,
            resend_after: self.config.resend_after,
        }
    }

    fn inbox_config(&self, ordered: bool) -> InboxConfig {
        InboxConfig {
            ordered,
            window: self.config.window,
            resend_after: self.config.gap_resend_after,
            ack_every: self.config.ack_every,
            ack_delay: self.config.ack_delay,
        }
    }

    /// Figures for the API.
    pub(crate) fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            unconfirmed: self.entries.len(),
            remembered: self.dedup.len(),
            causal_held: self.causal.held(),
            causal_receivers: self.causal.receivers(),
            ..self.stats
        }
    }

    // ---- Sending ----

    /// A guaranteed send from the API; `answer` hears when it is accepted (at once, or once
    /// the durable outbox keeps it).
    pub(crate) fn submit(&mut self, cx: &mut Cx<'_>, s: Submit, answer: Accepted) {
        self.submit_inner(cx, s, Some(answer), true);
    }

    /// Takes the sends the API queued (see [`DeliveryShared::enqueue`]); one that cannot
    /// be taken fails through its receipt.
    fn take_queued(&mut self, cx: &mut Cx<'_>) {
        // The two buffers trade places, so neither grows anew for every batch.
        let mut submits = std::mem::take(&mut self.spare_submits);
        {
            let mut q = self.shared.queue();
            q.scheduled = false;
            std::mem::swap(&mut q.submits, &mut submits);
        }
        for s in submits.drain(..) {
            self.submit_inner(cx, s, None, false);
        }
        self.spare_submits = submits;
    }

    /// See [`submit`](Self::submit); `may_keep`: a tell may go to the durable outbox;
    /// without `answer`, a send refused fails through its receipt.
    fn submit_inner(&mut self, cx: &mut Cx<'_>, s: Submit, answer: Option<Accepted>, may_keep: bool) {
        let counted = s.counted.then(|| s.dest.node_id());
        let refuse = |s: Submit, answer: Option<Accepted>, e: ClusterError, shared: &DeliveryShared| {
            if let Some(node) = counted {
                shared.release(node);
            }
            match answer {
                Some(answer) => {
                    let _ = answer.send(Err(e));
                }
                None => {
                    let failure = match e {
                        ClusterError::Shutdown => DeliveryFailure::Shutdown,
                        e => DeliveryFailure::Send(e.to_string()),
                    };
                    s.receipt.send(failed(failure));
                }
            }
        };
        if self.stopped {
            refuse(s, answer, ClusterError::Shutdown, &self.shared);
            return;
        }
        let durable = may_keep
            && (self.store.is_some() || self.store_failed.is_some())
            && !s.reply
            && !s.causal
            && matches!(s.dest, Dest::Actor { .. });
        if durable {
            if let Some(e) = &self.store_failed {
                refuse(s, answer, ClusterError::Storage(e.clone()), &self.shared);
                return;
            }
        }
        let accept = |answer: Option<Accepted>| {
            if let Some(answer) = answer {
                let _ = answer.send(Ok(()));
            }
        };
        let identity = s.dest.identity();
        let first_node = match self.targets.get(&identity).and_then(|t| t.route.as_ref()) {
            Some(known) => known.node_id,
            None => match &s.dest {
                Dest::Actor { location, .. } => location.node_id,
                Dest::Sink { node_id, .. } => *node_id,
            },
        };
        if first_node != self.node_id && counted.is_none() {
            if let Some(out) = self.outs.get(&(first_node, s.ordered)) {
                if out.outbox.unconfirmed() >= self.config.outbox_capacity {
                    let node = out.name.clone();
                    refuse(s, answer, ClusterError::Backpressure { node }, &self.shared);
                    return;
                }
            }
        }
        let (location, locator, sink) = match s.dest {
            Dest::Actor { location, locator, .. } => (location, locator, None),
            Dest::Sink { node, node_id, channel, key } => {
                (Arc::new(ActorLocation { node, node_id, actor: LocalActorId(0) }), None, Some((channel, key)))
            }
        };
        if sink.is_some() && self.gone.contains(&location.node_id) {
            if let Some(node) = counted {
                self.shared.release(node);
            }
            s.receipt.send(failed(DeliveryFailure::NodeGone(location.node.clone())));
            accept(answer);
            return;
        }
        let no = self.next_entry;
        self.next_entry += 1;
        let deadline = s.expire_after.map(|after| cx.now() + after);
        if let Some(at) = deadline {
            self.expiries.insert((at, no));
        }
        let causal = s.causal.then(|| {
            let stamp = self.causal.send(&identity);
            let number = stamp.get(&self.node_id);
            self.causal_numbers.insert(no, (identity, number));
            Box::new((number, stamp.0.into_iter().collect()))
        });
        self.entries.insert(
            no,
            Entry {
                id: s.id,
                identity,
                message: s.message,
                format: s.format,
                payload: s.payload,
                reply: s.reply,
                dedup: s.dedup,
                ordered: s.ordered,
                deadline,
                receipt: s.receipt,
                locator,
                sink: sink.map(Box::new),
                at: At::Queued,
                sent_to: None,
                outcome: None,
                reroutes: 0,
                stored: None,
                counted,
                causal,
            },
        );
        let target = self.targets.entry(identity).or_default();
        // A route known already (the actor may have moved since the handle was made) stays.
        if target.route.is_none() && !target.locating && target.rerouted.is_empty() {
            target.route = Some(location);
        }
        target.queue.push_back(no);
        match answer {
            Some(answer) if durable => self.keep(cx, no, answer),
            answer => accept(answer),
        }
        // Sent when the step ends, with whatever else came for the target in it.
        if self.touched.last() != Some(&identity) {
            self.touched.push(identity);
        }
    }

    /// Writes entry `no` to the durable outbox; it is sent, and `answer` told, once kept.
    fn keep(&mut self, cx: &mut Cx<'_>, no: u64, answer: Accepted) {
        let Some(e) = self.entries.get(&no) else { return };
        let location = e
            .sent_to
            .clone()
            .or_else(|| self.targets.get(&e.identity).and_then(|t| t.route.clone()))
            .map(|l| (*l).clone())
            .unwrap_or(ActorLocation { node: String::new(), node_id: NodeId(0), actor: LocalActorId(0) });
        let record = store::Stored {
            id: e.id,
            identity: e.identity,
            location,
            message: e.message,
            format: e.format,
            payload: e.payload.to_vec(),
            dedup: e.dedup,
            ordered: e.ordered,
            deadline_ms: e.deadline.map(|d| self.wall_origin_ms + d.as_millis() as u64),
        };
        let key = self.next_key;
        self.next_key += 1;
        if let Some(e) = self.entries.get_mut(&no) {
            e.stored = Some(key);
            e.at = At::Storing;
        }
        let Some(writer) = &self.store else { return };
        let (tx, rx) = tokio::sync::oneshot::channel();
        writer.apply(
            vec![store::StoreOp::Put(key, record)],
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        cx.node().spawn_call(
            Channel::DELIVERY,
            Box::pin(async move {
                let result = rx.await.unwrap_or_else(|_| Err("the durable outbox's writer stopped".to_owned()));
                Some(call_on(move |s: &mut DeliveryService, cx| s.kept(cx, no, result, answer)))
            }),
        );
    }

    /// The durable outbox kept entry `no` (or could not).
    fn kept(&mut self, cx: &mut Cx<'_>, no: u64, result: Result<(), String>, answer: Accepted) {
        let Some(e) = self.entries.get_mut(&no) else {
            let _ = answer.send(result.map_err(ClusterError::Storage));
            return;
        };
        let identity = e.identity;
        match result {
            Ok(()) => {
                if e.at == At::Storing {
                    e.at = At::Queued;
                }
                let _ = answer.send(Ok(()));
            }
            Err(err) => {
                e.stored = None;
                if let Some(t) = self.targets.get_mut(&identity) {
                    t.queue.retain(|n| *n != no);
                }
                self.settle(no, failed(DeliveryFailure::Send(err.clone())));
                let _ = answer.send(Err(ClusterError::Storage(err)));
            }
        }
        self.pump(cx, identity);
    }

    /// Sends again what the durable outbox kept from the previous run.
    fn resume_stored(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now();
        let wall_now = self.wall_origin_ms + now.as_millis() as u64;
        for (key, r) in std::mem::take(&mut self.resume) {
            let no = self.next_entry;
            self.next_entry += 1;
            let deadline = r.deadline_ms.map(|at| now + Duration::from_millis(at.saturating_sub(wall_now)));
            if let Some(at) = deadline {
                self.expiries.insert((at, no));
            }
            // Nobody waits for these receipts any more: the run that sent them is gone.
            let receipt = ReceiptSender::detached();
            let identity = r.identity;
            self.entries.insert(
                no,
                Entry {
                    id: r.id,
                    identity,
                    message: r.message,
                    format: r.format,
                    payload: Bytes::from(r.payload),
                    reply: false,
                    dedup: r.dedup,
                    ordered: r.ordered,
                    deadline,
                    receipt,
                    locator: None,
                    sink: None,
                    at: At::Queued,
                    sent_to: None,
                    outcome: None,
                    reroutes: 0,
                    stored: Some(key),
                    counted: None,
                    causal: None,
                },
            );
            self.stats.resumed += 1;
            let target = self.targets.entry(identity).or_default();
            if target.route.is_none() && !r.location.node.is_empty() {
                target.route = Some(Arc::new(r.location));
            }
            target.queue.push_back(no);
        }
        let identities: Vec<ActorId> = self.targets.keys().copied().collect();
        for identity in identities {
            self.pump(cx, identity);
        }
    }

    /// Sends what target `identity` has waiting, as far as its route and (ordered) its
    /// earlier messages allow; starts a lookup if its route is unknown.
    fn pump(&mut self, cx: &mut Cx<'_>, identity: ActorId) {
        let Some(t) = self.targets.get_mut(&identity) else { return };
        let Some(route) = t.route.clone() else {
            let now = cx.now();
            if !t.locating && t.locate_at.is_none_or(|at| at <= now) {
                self.locate(cx, identity);
            }
            return;
        };
        // Messages that came back go first, in the order they came back.
        while let Some(no) = self.targets.get_mut(&identity).and_then(|t| t.rerouted.pop_front()) {
            self.dispatch(cx, no, &route);
        }
        while let Some(t) = self.targets.get_mut(&identity) {
            let Some(&no) = t.queue.front() else { break };
            // A message still being written to the durable outbox holds back those after it.
            if self.entries.get(&no).is_some_and(|e| e.at == At::Storing) {
                break;
            }
            let ordered = self.entries.get(&no).is_some_and(|e| e.ordered);
            // An ordered message waits while earlier ones are on their way to another place.
            if ordered && t.outstanding.elsewhere(route.node_id) {
                break;
            }
            t.queue.pop_front();
            self.dispatch(cx, no, &route);
        }
        // The streams written to hand out what they now hold, once for all.
        while let Some(key) = self.dirty_outs.pop() {
            self.flush_out(key);
        }
        self.forget_if_idle(identity);
    }

    fn forget_if_idle(&mut self, identity: ActorId) {
        if self.targets.get(&identity).is_some_and(Target::is_idle) {
            self.targets.remove(&identity);
        }
    }

    /// Sends entry `no` to `to`: into the local actor, or onto the stream to its node.
    fn dispatch(&mut self, cx: &mut Cx<'_>, no: u64, to: &Arc<ActorLocation>) {
        let Some(e) = self.entries.get_mut(&no) else { return };
        e.sent_to = Some(to.clone());
        e.outcome = None;
        let identity = e.identity;
        self.targets.entry(identity).or_default().outstanding.add(to.node_id);
        if to.node_id == self.node_id {
            e.at = At::Local;
            let (message, format, payload) = (e.message, e.format, e.payload.clone());
            if let (Some(c), None) = (&e.causal, &e.sink) {
                // Causal: held back like one that arrived, until what it depends on is handled.
                let stamp = VClock(c.1.iter().copied().collect());
                let item = BatchItem { message, format, payload, reply: e.reply };
                let arrival = Arrival { back: Back::Local(no), target: to.actor, item, causal: Some(identity) };
                let me = self.node_id;
                self.causal_receive(cx, identity, me, stamp, arrival);
                return;
            }
            match e.sink.as_deref().cloned() {
                Some((channel, key)) => {
                    let delivered = Delivered { key, message, format, payload };
                    cx.node().post(
                        channel,
                        Box::new(move |service, cx| service.handle_delivered(cx, delivered, local_back(no))),
                    );
                }
                None => cx.node().deliver(Channel::DELIVERY, to.actor, message, format, payload, local_back(no)),
            }
            return;
        }
        e.at = At::Stream;
        let key = (to.node_id, e.ordered);
        if !self.outs.contains_key(&key) {
            let outbox = Outbox::new(self.outbox_config());
            let epoch = self.epochs.entry(key).or_insert(0);
            *epoch += 1;
            let epoch = *epoch;
            self.outs.insert(key, OutStream { name: to.node.clone(), epoch, outbox });
        }
        let linked = self.linked.contains_key(&to.node_id);
        let Some(out) = self.outs.get_mut(&key) else { return };
        match out.outbox.push(cx.now(), no, None) {
            Ok(_) => {}
            Err(full) => {
                // Re-routed messages can overfill a stream: the message fails rather than
                // growing the outbox without bound.
                let full_error = ClusterError::Backpressure { node: to.node.clone() };
                if let Some(t) = self.targets.get_mut(&identity) {
                    t.outstanding.remove_one(to.node_id);
                }
                self.settle(no, failed(DeliveryFailure::Send(full_error.to_string())));
                tracing::warn!(peer = %to.node, error = %full, "a re-routed guaranteed message did not fit its stream");
                return;
            }
        }
        if !linked {
            if let Some(addr) = self.addrs.get(&to.node) {
                cx.node().connect(Some(&to.node), addr);
            }
        }
        // Flushed once the pump that dispatched it is done.
        if self.dirty_outs.last() != Some(&key) {
            self.dirty_outs.push(key);
        }
    }

    /// Sends what the outbox of stream `key` asks for and settles what it confirmed.
    fn flush_out(&mut self, key: StreamKey) {
        loop {
            let Some(out) = self.outs.get_mut(&key) else { return };
            let epoch = out.epoch;
            let Some(output) = out.outbox.poll_output() else { return };
            match output {
                outbox::Output::Transmit { seq, payload, .. } => self.transmits.push((key, epoch, seq, payload)),
                outbox::Output::Receipt { fate, payload: no, .. } => {
                    match fate {
                        outbox::Fate::Delivered => {
                            let outcome = self.entries.get_mut(&no).and_then(|e| e.outcome.take()).map(|o| *o);
                            let handled = match outcome {
                                None => Handled::Done(Vec::new()),
                                Some(Owned::Reply(bytes)) => Handled::Done(bytes.to_vec()),
                                Some(Owned::Moved(to)) => Handled::Moved(to),
                                Some(Owned::Refused(e)) => Handled::Refused(e),
                            };
                            self.resolved(no, key.0, handled);
                        }
                        // Deadlines are kept by the service, not the outbox.
                        outbox::Fate::Expired => {}
                    }
                }
            }
        }
    }

    /// Sends the numbers the outboxes asked to transmit in this step, several messages per
    /// frame.
    fn send_transmits(&mut self, cx: &mut Cx<'_>) {
        if self.transmits.is_empty() {
            return;
        }
        let mut transmits = std::mem::take(&mut self.transmits);
        let budget = (self.max_frame / 2).clamp(1, 256 * 1024);
        let mut keys: Vec<StreamKey> = transmits.iter().map(|t| t.0).collect();
        keys.dedup();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let Some(out) = self.outs.get(&key) else { continue };
            let (epoch, confirmed) = (out.epoch, out.outbox.confirmed());
            let mut items = wire::items::Encoder::new();
            // Numbers of a stream given up in this step, or confirmed meanwhile, are not sent.
            for &(_, _, seq, no) in transmits.iter().filter(|t| t.0 == key && t.1 == epoch && t.2 > confirmed) {
                let entry = no.and_then(|no| self.entries.get(&no));
                let size = entry.map_or(16, |e| e.payload.len() + 64 + e.sink.as_ref().map_or(0, |sink| sink.1.len()));
                if items.len() + size > budget && !items.is_empty() {
                    cx.send(key.0, &items.frame(key.1, epoch, confirmed));
                }
                items.push(seq, entry.map(|e| envelope(e)));
            }
            if !items.is_empty() {
                cx.send(key.0, &items.frame(key.1, epoch, confirmed));
            }
        }
        transmits.clear();
        self.transmits = transmits;
    }

    /// Delivers the messages for local actors that arrived in this step, a batch per actor.
    fn deliver_arrivals(&mut self, cx: &mut Cx<'_>) {
        if self.arrivals.is_empty() {
            return;
        }
        let mut batches: Vec<(LocalActorId, Vec<Arrival>)> = Vec::new();
        let mut arrivals = std::mem::take(&mut self.arrivals);
        for a in arrivals.drain(..) {
            match batches.iter_mut().find(|(target, _)| *target == a.target) {
                Some((_, batch)) => batch.push(a),
                None => batches.push((a.target, vec![a])),
            }
        }
        self.arrivals = arrivals;
        for (target, batch) in batches {
            let (metas, items): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|a| ((a.back, a.item.reply, a.causal), a.item)).unzip();
            let done = Box::new(move |results: Vec<Handled>| {
                call_on(move |s: &mut DeliveryService, cx| {
                    for ((back, reply, causal), handled) in metas.into_iter().zip(results) {
                        s.arrival_handled(cx, back, reply, causal, handled);
                    }
                })
            });
            cx.node().deliver_batch(Channel::DELIVERY, target, items, done);
        }
    }

    /// An arrival was handled (or not): reported where it came from. A causal message whose
    /// actor is not here any more gives back what was held for that actor (refused in turn).
    fn arrival_handled(&mut self, cx: &mut Cx<'_>, back: Back, reply: bool, causal: Option<ActorId>, h: Handled) {
        let gone = match &h {
            Handled::Moved(_) => true,
            Handled::Refused(e) => matches!(e.kind, RemoteErrorKind::UnknownActor | RemoteErrorKind::ActorStopped),
            Handled::Done(_) => false,
        };
        if let (Some(identity), true) = (causal, gone) {
            self.causal_forget(identity);
        }
        match back {
            Back::Stream { key, epoch, seq, dkey } => self.handled(cx, key, epoch, seq, dkey, reply, h),
            Back::Local(no) => {
                let me = self.node_id;
                self.resolved(no, me, h);
            }
        }
    }

    /// A causal message for local actor `identity` from node `from`: delivered when the
    /// messages to that actor it depends on are (refused if the hold-back queue is full).
    fn causal_receive(&mut self, cx: &mut Cx<'_>, identity: ActorId, from: NodeId, stamp: VClock<NodeId>, a: Arrival) {
        self.causal_dirty = true;
        let target = a.target;
        match self.causal.receive(&identity, from, stamp, a) {
            Ok(ready) => self.arrivals.extend(ready),
            Err((full, a)) => {
                tracing::warn!(error = %full, "a causal message was refused");
                let e = RemoteError::new(RemoteErrorKind::Overloaded, full.to_string());
                self.arrival_handled(cx, a.back, a.item.reply, None, Handled::Refused(e));
            }
        }
        if self.causal_actors.insert(target, identity).is_none() && !cx.node().announce_stop(target) {
            // The actor is gone already: nothing is kept for it (its messages are refused).
            self.causal_actors.remove(&target);
            self.causal_forget(identity);
        }
    }

    /// Local actor `identity` is not here (any more): what it received is forgotten, and
    /// what was held for it goes on to be refused.
    fn causal_forget(&mut self, identity: ActorId) {
        let held = self.causal.reset(&identity);
        self.arrivals.extend(held);
    }

    /// Causal entry `no` settled, or its fate is known (handled, or never anywhere): nothing
    /// waits for it any more.
    fn causal_settled(&mut self, no: u64) {
        if let Some((identity, number)) = self.causal_numbers.remove(&no) {
            let ready = self.causal.settled(&identity, number);
            self.arrivals.extend(ready);
            self.causal_dirty = true;
        }
    }

    /// Node incarnation `node` is gone for good: its causal messages are not waited for.
    fn causal_departed(&mut self, node: NodeId) {
        let ready = self.causal.prune(&node);
        self.arrivals.extend(ready.into_iter().map(|(_, a)| a));
        self.causal_asked.retain(|(_, n), _| *n != node);
        self.causal_dirty = true;
    }

    /// Asks the nodes held-back causal messages wait for which of their messages are not
    /// settled (again after a while), and schedules the next look.
    fn causal_ask(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now();
        let waits = self.causal.waiting_on();
        self.causal_asked.retain(|(k, n), _| waits.iter().any(|(k2, n2, _)| k2 == k && n2 == n));
        for (identity, node, up_to) in waits {
            let due =
                self.causal_asked.get(&(identity, node)).is_none_or(|at| now.saturating_sub(*at) >= CAUSAL_ASK_AGAIN);
            if due && cx.send(node, &DeliveryFrame::CausalAsk { identity, up_to }.encode()) {
                self.causal_asked.insert((identity, node), now);
            }
        }
        self.causal_check = (self.causal.held() > 0).then(|| now + CAUSAL_ASK_AGAIN);
    }

    /// Entry `no`, sent to node `node`, came back: handled, moved or refused.
    fn resolved(&mut self, no: u64, node: NodeId, handled: Handled) {
        let Some(e) = self.entries.get(&no) else {
            // It expired meanwhile: its fate is known now.
            self.causal_settled(no);
            return;
        };
        let identity = e.identity;
        if let Some(t) = self.targets.get_mut(&identity) {
            t.outstanding.remove_one(node);
        }
        match handled {
            Handled::Done(bytes) => {
                let reply = e.reply.then(|| Bytes::from(bytes));
                self.stats.delivered += 1;
                self.settle(no, ReceiptState { status: DeliveryStatus::Delivered, reply });
            }
            Handled::Moved(to) => self.reroute(no, Some(to)),
            Handled::Refused(err)
                if matches!(err.kind, RemoteErrorKind::UnknownActor | RemoteErrorKind::ActorStopped) =>
            {
                self.reroute(no, None)
            }
            Handled::Refused(err) => {
                let failure = if err.kind == RemoteErrorKind::IdReused {
                    DeliveryFailure::IdReused(e.id)
                } else {
                    DeliveryFailure::Refused(err)
                };
                self.stats.failed += 1;
                self.settle(no, failed(failure));
            }
        }
        // Its target's next messages go when the step ends, once for all it settled.
        if self.touched.last() != Some(&identity) {
            self.touched.push(identity);
        }
    }

    /// Entry `no` was not handled where it went: it goes again where its actor is now
    /// (`to`, or found again).
    fn reroute(&mut self, no: u64, to: Option<ActorLocation>) {
        let Some(e) = self.entries.get_mut(&no) else { return };
        if e.sink.is_some() {
            // A sink is on one node only.
            let node = e.sent_to.as_ref().map(|l| l.node.clone()).unwrap_or_default();
            self.stats.failed += 1;
            self.settle(no, failed(DeliveryFailure::NodeGone(node)));
            return;
        }
        e.at = At::Queued;
        e.reroutes += 1;
        let identity = e.identity;
        let was = e.sent_to.clone();
        if e.reroutes > MAX_REROUTES {
            self.stats.failed += 1;
            self.settle(no, failed(DeliveryFailure::ActorNotFound(identity)));
            return;
        }
        self.stats.rerouted += 1;
        let t = self.targets.entry(identity).or_default();
        match to {
            Some(to) => t.route = Some(Arc::new(to)),
            // Only a route that still names the place that refused is dropped.
            None if t.route == was => t.route = None,
            None => {}
        }
        t.rerouted.push_back(no);
    }

    /// Looks for target `identity` with the locator of one of its messages.
    fn locate(&mut self, cx: &mut Cx<'_>, identity: ActorId) {
        let Some(t) = self.targets.get_mut(&identity) else { return };
        let Some(no) = t.rerouted.front().or(t.queue.front()).copied() else { return };
        let Some(e) = self.entries.get(&no) else { return };
        t.locating = true;
        t.lost_since.get_or_insert(cx.now());
        let find = match (&e.locator, &e.sink) {
            (Some(locator), _) => locator.locate(identity),
            // A sink is where it was: usable again once its node is back up.
            (None, Some(_)) => {
                let there = e.sent_to.as_deref().cloned();
                Box::pin(async move { there })
            }
            // A message from the durable outbox: the directory says where its actor is.
            (None, None) => directory_lookup(cx, identity),
        };
        cx.node().spawn_call(
            Channel::DELIVERY,
            Box::pin(async move {
                let found = find.await;
                Some(call_on(move |s: &mut DeliveryService, cx| s.located(cx, identity, found)))
            }),
        );
    }

    /// A lookup for target `identity` finished.
    fn located(&mut self, cx: &mut Cx<'_>, identity: ActorId, found: Option<ActorLocation>) {
        let Some(t) = self.targets.get_mut(&identity) else { return };
        t.locating = false;
        let now = cx.now();
        match found {
            // A place on a node incarnation known gone is no place.
            Some(to) if !self.gone.contains(&to.node_id) => {
                t.route = Some(Arc::new(to));
                t.lost_since = None;
                t.locate_at = None;
                self.pump(cx, identity);
            }
            found => {
                let departed = found.as_ref().is_some_and(|to| self.departed.contains(&to.node_id));
                if departed || t.lost_since.is_some_and(|since| now.saturating_sub(since) >= self.config.relocate_for) {
                    let waiting: Vec<u64> = t.rerouted.drain(..).chain(t.queue.drain(..)).collect();
                    t.lost_since = None;
                    for no in waiting {
                        self.stats.failed += 1;
                        let failure = match self.entries.get(&no).filter(|e| e.sink.is_some()) {
                            Some(e) => DeliveryFailure::NodeGone(
                                e.sent_to.as_ref().map(|l| l.node.clone()).unwrap_or_default(),
                            ),
                            None => DeliveryFailure::ActorNotFound(identity),
                        };
                        self.settle(no, failed(failure));
                    }
                    self.forget_if_idle(identity);
                } else {
                    let at = now + self.config.relocate_every;
                    t.locate_at = Some(at);
                    self.locate_due.insert((at, identity));
                }
            }
        }
    }

    /// Settles entry `no`'s receipt and forgets it (also in the durable outbox).
    fn settle(&mut self, no: u64, state: ReceiptState) {
        let Some(e) = self.entries.get(&no) else { return };
        // An expired message on its way may still be handled: a causal one is waited for
        // until its fate is known.
        let causal =
            e.causal.is_some() && !(state.status == DeliveryStatus::Expired && matches!(e.at, At::Stream | At::Local));
        let (deadline, stored, counted) = (e.deadline, e.stored, e.counted);
        e.receipt.send(state);
        // Dropped where it lies: an entry is too big to move out only to drop it.
        self.entries.discard(no);
        if causal {
            self.causal_settled(no);
        }
        if let Some(at) = deadline {
            self.expiries.remove(&(at, no));
        }
        if let (Some(key), Some(writer)) = (stored, &self.store) {
            writer.apply(vec![store::StoreOp::Remove(key)], Box::new(|_| {}));
        }
        if let Some(node) = counted {
            self.released.push(node);
        }
    }

    /// Peer incarnation `peer` is gone for good: what its streams had not confirmed goes
    /// where its actors are now.
    fn peer_gone(&mut self, cx: &mut Cx<'_>, peer: NodeId) {
        if !self.gone.insert(peer) {
            return;
        }
        self.linked.remove(&peer);
        self.ins.remove(&(peer, false));
        self.ins.remove(&(peer, true));
        let mut touched = BTreeSet::new();
        for ordered in [false, true] {
            let Some(mut out) = self.outs.remove(&(peer, ordered)) else { continue };
            for (_, no) in out.outbox.drain() {
                let Some(e) = self.entries.get(&no) else {
                    self.causal_settled(no);
                    continue;
                };
                let identity = e.identity;
                if let Some(t) = self.targets.get_mut(&identity) {
                    t.outstanding.remove_one(peer);
                }
                self.reroute_gone(no, peer);
                touched.insert(identity);
            }
        }
        // Targets whose route names the gone incarnation are looked for again.
        for (identity, t) in self.targets.iter_mut() {
            if t.route.as_ref().is_some_and(|r| r.node_id == peer) {
                t.route = None;
                touched.insert(*identity);
            }
        }
        for identity in touched {
            self.pump(cx, identity);
        }
    }

    fn reroute_gone(&mut self, no: u64, peer: NodeId) {
        let Some(e) = self.entries.get_mut(&no) else { return };
        // A sink's messages wait for its node to come back (marked down while alive);
        // they fail once it is gone for good.
        e.at = At::Queued;
        self.stats.rerouted += 1;
        let t = self.targets.entry(e.identity).or_default();
        if t.route.as_ref().is_some_and(|r| r.node_id == peer) {
            t.route = None;
        }
        t.rerouted.push_back(no);
    }

    /// Entries past their deadline expire.
    fn expire(&mut self, cx: &mut Cx<'_>, now: Duration) {
        let mut touched = BTreeSet::new();
        while let Some(&(at, no)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let Some(e) = self.entries.get(&no) else { continue };
            let identity = e.identity;
            match e.at {
                At::Queued | At::Storing => {
                    if let Some(t) = self.targets.get_mut(&identity) {
                        t.queue.retain(|n| *n != no);
                        t.rerouted.retain(|n| *n != no);
                    }
                }
                // Still counted as outstanding until its number is confirmed (or, local, handled).
                At::Stream | At::Local => {}
            }
            self.stats.expired += 1;
            self.settle(no, ReceiptState { status: DeliveryStatus::Expired, reply: None });
            touched.insert(identity);
        }
        for identity in touched {
            self.pump(cx, identity);
        }
    }

    /// A grant from `from` for its stream.
    fn handle_grant(
        &mut self,
        cx: &mut Cx<'_>,
        from: NodeId,
        ordered: bool,
        epoch: u32,
        grant: Grant,
        outcomes: &[(Seq, Outcome<'_>)],
    ) {
        let key = (from, ordered);
        // A grant for a stream given up is about numbers that mean nothing any more.
        let Some(out) = self.outs.get_mut(&key).filter(|o| o.epoch == epoch) else { return };
        for (seq, outcome) in outcomes {
            if let Some(e) = out.outbox.get(*seq).and_then(|no| self.entries.get_mut(no)) {
                e.outcome = Some(Box::new(Owned::from_wire(outcome)));
            }
        }
        out.outbox.handle_grant(cx.now(), grant);
        self.flush_out(key);
    }

    // ---- Receiving ----

    /// A message of `from`'s stream.
    #[allow(clippy::too_many_arguments)]
    fn handle_message(
        &mut self,
        cx: &mut Cx<'_>,
        from: NodeId,
        ordered: bool,
        epoch: u32,
        seq: Seq,
        confirmed: Seq,
        arrived: Option<Arrived>,
    ) -> Result<(), ServiceFrameError> {
        if self.gone.contains(&from) {
            return Ok(());
        }
        let key = (from, ordered);
        let config = self.inbox_config(ordered);
        let fresh = || InStream { epoch, inbox: Inbox::new(config), sender_confirmed: 0, kept: BTreeMap::new() };
        let stream = self.ins.entry(key).or_insert_with(fresh);
        if epoch < stream.epoch {
            // A frame of a stream the sender gave up.
            return Ok(());
        }
        if epoch > stream.epoch {
            // The sender gave the old stream up and numbers anew.
            *stream = fresh();
        }
        if confirmed > stream.sender_confirmed {
            stream.sender_confirmed = confirmed;
            // The sender has seen these outcomes.
            stream.kept = stream.kept.split_off(&(confirmed + 1));
        }
        stream.inbox.handle_message(cx.now(), seq, confirmed, arrived).map_err(|e| ServiceFrameError(e.to_string()))?;
        self.flush_in(cx, key);
        Ok(())
    }

    /// Hands out what the inbox of stream `key` asks for.
    fn flush_in(&mut self, cx: &mut Cx<'_>, key: StreamKey) {
        loop {
            let Some(stream) = self.ins.get_mut(&key) else { return };
            let Some(output) = stream.inbox.poll_output() else { return };
            match output {
                inbox::Output::Deliver { seq, payload } => self.deliver(cx, key, seq, payload),
                inbox::Output::Resend { from } => {
                    let epoch = self.ins.get(&key).map_or(0, |s| s.epoch);
                    cx.send(key.0, &DeliveryFrame::Resend { ordered: key.1, epoch, from }.encode());
                }
                inbox::Output::Grant(grant) => self.send_grant(cx, key, grant),
            }
        }
    }

    /// Sends a grant with the outcomes the sender may not have seen, as many as fit in a
    /// frame (the grant then confirms no further than they go).
    fn send_grant(&mut self, cx: &mut Cx<'_>, key: StreamKey, mut grant: Grant) {
        let Some(stream) = self.ins.get(&key) else { return };
        let budget = self.max_frame / 2;
        let mut used = 0;
        let mut outcomes = Vec::new();
        for (&seq, outcome) in stream.kept.range(..=grant.confirmed) {
            used += outcome.size();
            if used > budget && !outcomes.is_empty() {
                grant.confirmed = seq - 1;
                break;
            }
            outcomes.push((seq, outcome.to_wire()));
        }
        let frame = DeliveryFrame::Grant {
            ordered: key.1,
            epoch: stream.epoch,
            confirmed: grant.confirmed,
            up_to: grant.up_to,
            outcomes,
        };
        cx.send(key.0, &frame.encode());
    }

    /// Delivers message `seq` of stream `key` to its actor (once, for exactly-once).
    fn deliver(&mut self, cx: &mut Cx<'_>, key: StreamKey, seq: Seq, a: Arrived) {
        let epoch = self.ins.get(&key).map_or(0, |s| s.epoch);
        if a.dedup {
            let dkey = (a.to.scope(), a.id);
            let print = fingerprint(&a.payload) ^ a.message.0;
            match self.dedup.check(cx.now(), &dkey, print) {
                Ok(Verdict::New) => {}
                Ok(Verdict::Duplicate(reply)) => {
                    self.stats.duplicates += 1;
                    let bytes = reply.map(|b| b.to_vec()).unwrap_or_default();
                    self.handled(cx, key, epoch, seq, None, a.reply, Handled::Done(bytes));
                    return;
                }
                Ok(Verdict::InProgress) => {
                    self.stats.duplicates += 1;
                    self.copies.entry(dkey).or_default().push((key, epoch, seq));
                    return;
                }
                Err(_) => {
                    let e = RemoteError::new(
                        RemoteErrorKind::IdReused,
                        format!("message id {} was used before for another payload", a.id),
                    );
                    self.handled(cx, key, epoch, seq, None, a.reply, Handled::Refused(e));
                    return;
                }
            }
        }
        let dkey = a.dedup.then_some((a.to.scope(), a.id));
        match a.to {
            ArrivedTo::Actor { identity, target } => {
                let item = BatchItem { message: a.message, format: a.format, payload: a.payload, reply: a.reply };
                let back = Back::Stream { key, epoch, seq, dkey };
                match a.causal {
                    Some(stamp) => {
                        let arrival = Arrival { back, target, item, causal: Some(identity) };
                        self.causal_receive(cx, identity, key.0, VClock(stamp.into_iter().collect()), arrival);
                    }
                    None => self.arrivals.push(Arrival { back, target, item, causal: None }),
                }
            }
            ArrivedTo::Sink { channel, key: sink_key } => {
                let back = remote_back(key, epoch, seq, dkey, a.reply);
                let delivered = Delivered { key: sink_key, message: a.message, format: a.format, payload: a.payload };
                cx.node().post(channel, Box::new(move |service, cx| service.handle_delivered(cx, delivered, back)));
            }
        }
    }

    /// The handler ran for message `seq` of stream `key` in its `epoch` (or it was not
    /// handled here).
    #[allow(clippy::too_many_arguments)]
    fn handled(
        &mut self,
        cx: &mut Cx<'_>,
        key: StreamKey,
        epoch: u32,
        seq: Seq,
        dkey: Option<DedupKey>,
        reply: bool,
        h: Handled,
    ) {
        if let Some(dkey) = dkey {
            match &h {
                Handled::Done(bytes) => self.dedup.handled(&dkey, Some(Bytes::copy_from_slice(bytes))),
                // Not handled: a later copy may be.
                Handled::Moved(_) | Handled::Refused(_) => self.dedup.forget(&dkey),
            }
            for (k, e, s) in self.copies.remove(&dkey).unwrap_or_default() {
                let copy = match &h {
                    Handled::Done(bytes) => Handled::Done(bytes.clone()),
                    Handled::Moved(to) => Handled::Moved(to.clone()),
                    Handled::Refused(e) => Handled::Refused(e.clone()),
                };
                self.handled(cx, k, e, s, None, reply, copy);
            }
        }
        let Some(stream) = self.ins.get_mut(&key).filter(|s| s.epoch == epoch) else { return };
        let kept = match h {
            Handled::Done(bytes) if reply => Some(Owned::Reply(Bytes::from(bytes))),
            Handled::Done(_) => None,
            Handled::Moved(to) => Some(Owned::Moved(to)),
            Handled::Refused(e) => Some(Owned::Refused(e)),
        };
        if let Some(kept) = kept {
            if seq > stream.sender_confirmed {
                stream.kept.insert(seq, kept);
            }
        }
        stream.inbox.handle_handled(cx.now(), seq);
        self.flush_in(cx, key);
    }
}

impl DeliveryService {
    /// Begins a transaction with each participant's part; `answer` hears how it ended.
    pub(crate) fn begin_txn(
        &mut self,
        cx: &mut Cx<'_>,
        parts: BTreeMap<NodeId, (String, Vec<TxnItem>)>,
        timeout: Option<Duration>,
        answer: tokio::sync::oneshot::Sender<api::TxnOutcome>,
    ) {
        if self.stopped {
            let _ = answer.send(api::TxnOutcome::Aborted("the node is shutting down".to_owned()));
            return;
        }
        if parts.is_empty() {
            let _ = answer.send(api::TxnOutcome::Committed);
            return;
        }
        let txn = self.next_txn;
        self.next_txn += 1;
        let names = parts.iter().map(|(n, (name, _))| (*n, name.clone())).collect();
        let messages = parts.into_iter().map(|(n, (_, items))| (n, TxnItem::encode_all(&items))).collect();
        self.txns.insert(txn, (names, answer));
        let deadline = cx.now() + timeout.unwrap_or(self.config.txn_timeout);
        self.coordinator.begin(cx.now(), txn, messages, deadline);
        self.txn_flush(cx);
    }

    /// A transaction frame from `from` (or from this node to itself).
    fn txn_frame(&mut self, cx: &mut Cx<'_>, from: NodeId, frame: TxnFrame) {
        let now = cx.now();
        match frame {
            TxnFrame::Prepare { txn, message } => {
                let check = self.check_items(cx, &message);
                self.participant.handle_prepare(now, &from, txn, message, check);
            }
            frame @ (TxnFrame::Commit { .. } | TxnFrame::Abort { .. }) => {
                self.participant.handle_frame(now, &from, frame)
            }
            frame @ (TxnFrame::Vote { .. } | TxnFrame::Ack { .. } | TxnFrame::Query { .. }) => {
                self.coordinator.handle_frame(now, &from, frame)
            }
        }
    }

    /// Whether this node can deliver a participant's part: every actor runs here and
    /// takes its message.
    fn check_items(&self, cx: &mut Cx<'_>, message: &[u8]) -> Result<(), String> {
        let items = TxnItem::decode_all(message).map_err(|e| e.to_string())?;
        for item in &items {
            if let TxnTo::Actor { target, .. } = &item.to {
                cx.node().accepts(*target, item.message).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Runs the two roles' outputs until there are none (frames to this node are handled
    /// here at once).
    fn txn_flush(&mut self, cx: &mut Cx<'_>) {
        loop {
            let mut moved = false;
            while let Some(output) = self.coordinator.poll_output() {
                moved = true;
                match output {
                    CoordinatorOutput::Send { to, frame } if to == self.node_id => self.txn_frame(cx, to, frame),
                    CoordinatorOutput::Send { to, frame } => {
                        cx.send(to, &DeliveryFrame::Txn(frame).encode());
                    }
                    CoordinatorOutput::Done { txn, outcome } => {
                        if let Some((names, answer)) = self.txns.remove(&txn) {
                            let name = |n: &NodeId| names.get(n).cloned().unwrap_or_else(|| n.to_string());
                            let outcome = match outcome {
                                TxnResult::Committed => api::TxnOutcome::Committed,
                                TxnResult::Aborted(AbortReason::Refused { node, reason }) => {
                                    api::TxnOutcome::Aborted(format!("node `{}` refused: {reason}", name(&node)))
                                }
                                TxnResult::Aborted(AbortReason::Lost(node)) => {
                                    api::TxnOutcome::Aborted(format!("node `{}` was lost before it voted", name(&node)))
                                }
                                TxnResult::Aborted(AbortReason::Timeout) => {
                                    api::TxnOutcome::Aborted("not every participant voted in time".to_owned())
                                }
                                TxnResult::InDoubt(nodes) => api::TxnOutcome::InDoubt(nodes.iter().map(name).collect()),
                            };
                            let _ = answer.send(outcome);
                        }
                    }
                }
            }
            while let Some(output) = self.participant.poll_output() {
                moved = true;
                match output {
                    ParticipantOutput::Send { to, frame } if to == self.node_id => self.txn_frame(cx, to, frame),
                    ParticipantOutput::Send { to, frame } => {
                        cx.send(to, &DeliveryFrame::Txn(frame).encode());
                    }
                    ParticipantOutput::Deliver { message } => self.commit_items(cx, &message),
                    ParticipantOutput::GaveUp { txn, .. } => {
                        tracing::warn!(txn, "a transaction's decision never came; its staged messages were dropped");
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// A transaction committed: its messages for this node are delivered like guaranteed
    /// exactly-once messages sent from here (they follow an actor that moves meanwhile).
    fn commit_items(&mut self, cx: &mut Cx<'_>, message: &[u8]) {
        let Ok(items) = TxnItem::decode_all(message) else { return };
        for item in items {
            let dest = match item.to {
                TxnTo::Actor { identity, target } => Dest::Actor {
                    identity,
                    location: Arc::new(ActorLocation { node: self.me.clone(), node_id: self.node_id, actor: target }),
                    locator: None,
                },
                TxnTo::Sink { channel, key } => {
                    Dest::Sink { node: self.me.clone(), node_id: self.node_id, channel, key }
                }
            };
            let receipt = ReceiptSender::detached();
            let (answer, _) = tokio::sync::oneshot::channel();
            let submit = Submit {
                id: item.id,
                dest,
                message: item.message,
                format: item.format,
                payload: Bytes::from(item.payload),
                reply: false,
                dedup: true,
                ordered: false,
                expire_after: None,
                receipt,
                counted: false,
                causal: false,
            };
            self.submit_inner(cx, submit, Some(answer), false);
        }
    }
}

/// Where the acceptance of a guaranteed send is told.
pub(crate) type Accepted = tokio::sync::oneshot::Sender<Result<(), ClusterError>>;

/// Asks the directory where the actor with identity `identity` runs now.
fn directory_lookup(
    cx: &mut Cx<'_>,
    identity: ActorId,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<ActorLocation>>>> {
    use crate::proto::registry::record::{Answer, DirKey};
    use crate::services::registry::RegistryService;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let key = DirKey::Actor(identity);
    cx.node().post(
        Channel::REGISTRY,
        call_on(move |r: &mut RegistryService, cx| {
            r.invalidate(&key);
            r.lookup(cx, key, true, tx);
        }),
    );
    Box::pin(async move {
        match rx.await {
            Ok(Ok(Answer::Found(Some(record)))) => Some(record.location),
            _ => None,
        }
    })
}

/// Entry `e` as it crosses the network.
fn envelope(e: &Entry) -> Envelope<'_> {
    Envelope {
        id: e.id,
        to: match e.sink.as_deref() {
            Some((channel, key)) => To::Sink { channel: *channel, key },
            None => To::Actor {
                identity: e.identity,
                target: e.sent_to.as_ref().map(|l| l.actor).unwrap_or(LocalActorId(0)),
            },
        },
        message: e.message,
        format: e.format,
        reply: e.reply,
        dedup: e.dedup,
        causal: e.causal.as_ref().map(|c| std::borrow::Cow::Borrowed(&c.1[..])),
        payload: &e.payload,
    }
}

/// Where a local actor's handling of entry `no` is reported.
fn local_back(no: u64) -> crate::node::service::HandledFn {
    Box::new(move |handled: Handled| {
        call_on(move |s: &mut DeliveryService, _| {
            let me = s.node_id;
            s.resolved(no, me, handled);
        })
    })
}

/// Where the handling of message `seq` of stream `key` is reported.
fn remote_back(
    key: StreamKey,
    epoch: u32,
    seq: Seq,
    dkey: Option<DedupKey>,
    reply: bool,
) -> crate::node::service::HandledFn {
    Box::new(move |handled: Handled| {
        call_on(move |s: &mut DeliveryService, cx| s.handled(cx, key, epoch, seq, dkey, reply, handled))
    })
}

impl Service for DeliveryService {
    fn channel(&self) -> Channel {
        Channel::DELIVERY
    }

    fn version(&self) -> u16 {
        VERSION
    }

    fn start(&mut self, cx: &mut Cx<'_>) {
        if !self.resume.is_empty() {
            tracing::info!(messages = self.resume.len(), "sending again what the durable outbox kept");
            self.resume_stored(cx);
        }
    }

    fn handle_link_up(&mut self, cx: &mut Cx<'_>, peer: &PeerInfo) {
        self.addrs.insert(peer.name.clone(), peer.addr.clone());
        // Another incarnation of a node this one sent to or heard from: the old one is gone.
        let stale: BTreeSet<NodeId> = self
            .outs
            .iter()
            .filter(|(k, o)| o.name == peer.name && k.0 != peer.id)
            .map(|(k, _)| k.0)
            .chain(self.linked.values().filter(|p| p.name == peer.name && p.id != peer.id).map(|p| p.id))
            .collect();
        self.linked.insert(peer.id, peer.clone());
        for old in stale {
            self.departed.insert(old);
            self.peer_gone(cx, old);
            self.causal_departed(old);
        }
        for ordered in [false, true] {
            let key = (peer.id, ordered);
            if let Some(out) = self.outs.get_mut(&key) {
                out.outbox.handle_link_up(cx.now());
                self.flush_out(key);
            }
        }
    }

    fn handle_link_down(&mut self, _: &mut Cx<'_>, peer: &PeerInfo, _: &LinkEnd) {
        // The streams stay: what is unconfirmed goes again when the link is back.
        self.linked.remove(&peer.id);
    }

    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError> {
        self.handle_frame_bytes(cx, from, &Bytes::copy_from_slice(body))
    }

    fn handle_frame_bytes(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &Bytes) -> Result<(), ServiceFrameError> {
        let frame = DeliveryFrame::decode(body).map_err(|e| ServiceFrameError(e.to_string()))?;
        match frame {
            DeliveryFrame::Messages { ordered, epoch, confirmed, items } => {
                for (seq, envelope) in items {
                    let arrived = envelope.map(|e| Arrived {
                        id: e.id,
                        to: match e.to {
                            To::Actor { identity, target } => ArrivedTo::Actor { identity, target },
                            To::Sink { channel, key } => ArrivedTo::Sink { channel, key: key.to_owned() },
                        },
                        message: e.message,
                        format: e.format,
                        reply: e.reply,
                        dedup: e.dedup,
                        // A slice of the frame: no copy per message.
                        payload: body.slice_ref(e.payload),
                        causal: e.causal.map(std::borrow::Cow::into_owned),
                    });
                    self.handle_message(cx, from.id, ordered, epoch, seq, confirmed, arrived)?;
                }
                Ok(())
            }
            DeliveryFrame::Grant { ordered, epoch, confirmed, up_to, outcomes } => {
                self.handle_grant(cx, from.id, ordered, epoch, Grant { confirmed, up_to }, &outcomes);
                Ok(())
            }
            DeliveryFrame::Txn(frame) => {
                self.txn_frame(cx, from.id, frame);
                self.txn_flush(cx);
                Ok(())
            }
            DeliveryFrame::CausalAsk { identity, up_to } => {
                let (covers, unsettled) = self.causal.unsettled(&identity, up_to, CAUSAL_ANSWER_MOST);
                cx.send(from.id, &DeliveryFrame::CausalAnswer { identity, covers, unsettled }.encode());
                Ok(())
            }
            DeliveryFrame::CausalAnswer { identity, covers, unsettled } => {
                let ready = self.causal.answer(&identity, &from.id, covers, unsettled);
                self.arrivals.extend(ready);
                self.causal_dirty = true;
                Ok(())
            }
            DeliveryFrame::Resend { ordered, epoch, from: first } => {
                let key = (from.id, ordered);
                if let Some(out) = self.outs.get_mut(&key).filter(|o| o.epoch == epoch) {
                    out.outbox.handle_resend(cx.now(), first);
                    self.flush_out(key);
                }
                Ok(())
            }
        }
    }

    fn handle_membership(&mut self, cx: &mut Cx<'_>, event: &MembershipEvent) {
        let m = event.member();
        self.addrs.insert(m.name.clone(), m.addr.clone());
        match event {
            // A member marked down while alive comes back under the same incarnation: its
            // old streams were given up, new ones start.
            MembershipEvent::MemberUp(m) => {
                self.gone.remove(&m.id);
            }
            MembershipEvent::MemberDown(m) | MembershipEvent::MemberLeft(m) | MembershipEvent::MemberRemoved(m)
                if m.id != self.node_id =>
            {
                if !matches!(event, MembershipEvent::MemberDown(_)) {
                    self.departed.insert(m.id);
                    self.causal_departed(m.id);
                }
                self.peer_gone(cx, m.id);
                self.coordinator.handle_node_lost(&m.id);
                self.txn_flush(cx);
            }
            _ => {}
        }
    }

    fn handle_actor_stopped(&mut self, _: &mut Cx<'_>, actor: LocalActorId) {
        // What a stopped actor received is forgotten; what was held for it goes on to be
        // refused (its senders send it again where the actor is, if anywhere).
        if let Some(identity) = self.causal_actors.remove(&actor) {
            self.causal_forget(identity);
        }
    }

    fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Duration) {
        self.expire(cx, now);
        if self.causal_check.is_some_and(|at| at <= now) {
            self.causal_check = None;
            self.causal_dirty = true;
        }
        if self.coordinator.poll_timeout().is_some_and(|at| at <= now) {
            self.coordinator.handle_timeout(now);
        }
        if self.participant.poll_timeout().is_some_and(|at| at <= now) {
            self.participant.handle_timeout(now);
        }
        self.txn_flush(cx);
        let keys: Vec<StreamKey> = self.outs.keys().copied().collect();
        for key in keys {
            if let Some(out) = self.outs.get_mut(&key) {
                if out.outbox.poll_timeout().is_some_and(|at| at <= now) {
                    out.outbox.handle_timeout(now);
                    self.flush_out(key);
                }
            }
        }
        let keys: Vec<StreamKey> = self.ins.keys().copied().collect();
        for key in keys {
            if let Some(stream) = self.ins.get_mut(&key) {
                if stream.inbox.poll_timeout().is_some_and(|at| at <= now) {
                    stream.inbox.handle_timeout(now);
                    self.flush_in(cx, key);
                }
            }
        }
        if self.dedup.poll_timeout().is_some_and(|at| at <= now) {
            self.dedup.expire(now);
        }
        let mut due = Vec::new();
        while let Some((at, identity)) = self.locate_due.first().copied().filter(|(at, _)| *at <= now) {
            self.locate_due.pop_first();
            // An entry whose target has moved on (found, forgotten, asked again) is stale.
            let t = self.targets.get(&identity);
            if t.is_some_and(|t| !t.locating && t.route.is_none() && t.locate_at == Some(at)) {
                due.push(identity);
            }
        }
        for identity in due {
            if let Some(t) = self.targets.get_mut(&identity) {
                t.locate_at = None;
            }
            self.pump(cx, identity);
        }
    }

    fn flush(&mut self, cx: &mut Cx<'_>) {
        while !self.touched.is_empty() {
            let mut touched = std::mem::take(&mut self.touched);
            touched.sort_unstable();
            touched.dedup();
            for identity in touched {
                self.pump(cx, identity);
            }
        }
        if !self.released.is_empty() {
            self.shared.release_all(&self.released);
            self.released.clear();
        }
        if self.causal_dirty {
            self.causal_dirty = false;
            self.causal_ask(cx);
        }
        self.send_transmits(cx);
        self.deliver_arrivals(cx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let outs = self.outs.values().filter_map(|o| o.outbox.poll_timeout());
        let ins = self.ins.values().filter_map(|i| i.inbox.poll_timeout());
        let locates = self.locate_due.first().map(|(at, _)| *at);
        outs.chain(ins)
            .chain(locates)
            .chain(self.expiries.first().map(|&(at, _)| at))
            .chain(self.dedup.poll_timeout())
            .chain(self.coordinator.poll_timeout())
            .chain(self.participant.poll_timeout())
            .chain(self.causal_check)
            .min()
    }

    fn metrics(&self, out: &mut Metrics) {
        let s = self.stats();
        out.gauge(
            "delivery_unconfirmed",
            "Guaranteed messages sent from this node not yet confirmed.",
            s.unconfirmed as f64,
        );
        out.gauge("delivery_delivered_total", "Guaranteed messages confirmed delivered.", s.delivered as f64);
        out.gauge("delivery_failed_total", "Guaranteed messages that failed.", s.failed as f64);
        out.gauge("delivery_expired_total", "Guaranteed messages that expired.", s.expired as f64);
        out.gauge("delivery_rerouted_total", "Guaranteed messages sent again to another place.", s.rerouted as f64);
        out.gauge("delivery_duplicates_total", "Copies recognised as already handled.", s.duplicates as f64);
        out.gauge("delivery_remembered_ids", "Message ids remembered for exactly-once.", s.remembered as f64);
        out.gauge(
            "delivery_causal_held",
            "Causal messages held back until what they depend on is handled.",
            s.causal_held as f64,
        );
    }

    fn stop(&mut self, _: &mut Cx<'_>, _: Stop) {
        self.stopped = true;
        let queued = {
            let mut q = self.shared.queue();
            q.stopped = true;
            q.unconfirmed.clear();
            std::mem::take(&mut q.submits)
        };
        for s in queued {
            s.receipt.send(failed(DeliveryFailure::Shutdown));
        }
        for e in self.entries.drain() {
            e.receipt.send(failed(DeliveryFailure::Shutdown));
        }
        for (_, (_, answer)) in self.txns.drain() {
            let _ = answer.send(api::TxnOutcome::Aborted("the node shut down before the outcome was known".to_owned()));
        }
        self.expiries.clear();
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
