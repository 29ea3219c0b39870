//! Guaranteed sends: [`ActorRef::tell_with`] and [`ActorRef::send_with`], the
//! [`DeliveryGuarantee`] they take, and the [`Receipt`] they return.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::actor::{DistributedActor, RemoteMessage, WireType};
use crate::error::{ClusterError, RemoteError};
use crate::format::Format;
use crate::handle::actor_ref::ActorRef;
use crate::ids::{ActorId, MessageId, NodeId, WireId};
use crate::node::context;
use crate::node::service::{call_on, Input};
use crate::node::system::ClusterSystem;
use crate::proto::delivery::wire::{TxnItem, TxnTo};
use crate::proto::wire::channel::Channel;
use crate::services::delivery::{DeliveryService, DeliveryShared, Dest, Submit};

/// What a send promises. See the README's table for what each promises when nothing
/// crashes, when the receiver or the sender crashes, and under a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryGuarantee {
    /// Today's `tell` / `send`: sent once, never confirmed; lost if the link or the
    /// receiver fails. The fastest.
    AtMostOnce,
    /// Sent again until the receiver confirms that the handler ran; kept across link drops
    /// and reconnects, and re-routed when the actor moves or its node is lost. A message
    /// can be handled more than once.
    AtLeastOnce,
    /// At-least-once, and the receiving node handles each message id once within its
    /// de-duplication window (an ask's retry gets the first reply).
    ExactlyOnce,
    /// Exactly-once, and the messages this node sends to one actor are handled in the
    /// order they were sent, across reconnects and moves.
    Ordered,
    /// Ordered, and causality respected across senders. Point-to-point: an actor handles
    /// a message after every causal message to it that happened before it was sent (one a
    /// node sent before it handled, or sent, what led to this one), whichever node sent
    /// it. Publishes: the messages of a topic are handled by every subscriber in an order
    /// that respects causality between them (a publish made by a node after it handled
    /// another publish of the topic is handled after it everywhere); exactly-once per
    /// subscribing node. Causality is tracked per node (conservative within a node) and
    /// only through causal messages.
    Causal,
    /// All or nothing, by two-phase commit: a publish reaches every subscribing node or
    /// none (several targets at once: [`DeliveryApi::transaction`]). The receipt settles
    /// `Delivered` once every node committed, `Failed(Aborted)` if none delivered (safe to
    /// retry), `Failed(InDoubt)` if committed but not confirmed everywhere in time.
    Transactional,
}

/// A guarantee plus the options of one send: its id (for application-level idempotency)
/// and a deadline.
///
/// ```
/// # use actix_cluster_runtime::{Delivery, DeliveryGuarantee};
/// # use std::time::Duration;
/// let d = Delivery::from(DeliveryGuarantee::ExactlyOnce).id("order-42").expire_after(Duration::from_secs(10));
/// assert_eq!(d.guarantee(), DeliveryGuarantee::ExactlyOnce);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    guarantee: DeliveryGuarantee,
    id: Option<MessageId>,
    expire_after: Option<Duration>,
}

impl From<DeliveryGuarantee> for Delivery {
    fn from(guarantee: DeliveryGuarantee) -> Self {
        Self { guarantee, id: None, expire_after: None }
    }
}

impl Delivery {
    /// Names the message with the application's key (an order number, a request id): every
    /// send with the same key to the same actor is the same message, so with
    /// [`DeliveryGuarantee::ExactlyOnce`] a resend after a sender restart is handled once.
    /// The same key with another payload fails with [`DeliveryFailure::IdReused`].
    pub fn id(mut self, key: &str) -> Self {
        self.id = Some(MessageId::from_key(key));
        self
    }

    /// Gives up if the receiver has not confirmed the message within `after`: the receipt
    /// turns [`DeliveryStatus::Expired`]. A message never sent is then never delivered;
    /// one already sent may have been handled.
    pub fn expire_after(mut self, after: Duration) -> Self {
        self.expire_after = Some(after);
        self
    }

    /// The guarantee.
    pub fn guarantee(&self) -> DeliveryGuarantee {
        self.guarantee
    }

    /// The id the application gave, if any.
    pub(crate) fn message_id(&self) -> Option<MessageId> {
        self.id
    }

    /// The deadline, if any.
    pub(crate) fn expiry(&self) -> Option<Duration> {
        self.expire_after
    }
}

/// Why a guaranteed message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryFailure {
    /// The actor could not be found (its node is gone and the directory knows no other
    /// place for it within `delivery.relocate_for`, or it stopped).
    #[error("actor {0} could not be found")]
    ActorNotFound(ActorId),
    /// The receiving node refused it (it does not accept the message type, the payload did
    /// not decode, ...).
    #[error("refused: {0}")]
    Refused(RemoteError),
    /// The message's id was used before for another payload.
    #[error("message id {0} was used before for another payload")]
    IdReused(MessageId),
    /// The receiving node is gone and the message was for that node alone (a publish's
    /// copy for its subscribers there, which went with it).
    #[error("node `{0}` is gone")]
    NodeGone(String),
    /// A transactional send or publish was aborted: nothing was delivered anywhere (safe
    /// to retry); why.
    #[error("the transaction was aborted: {0}")]
    Aborted(String),
    /// A transactional send or publish committed, but these nodes had not confirmed by
    /// the deadline: delivered elsewhere, maybe not there yet.
    #[error("the transaction committed, but nodes {0:?} did not confirm in time")]
    InDoubt(Vec<String>),
    /// The sending node shut down before the message was confirmed.
    #[error("the node shut down before the message was confirmed")]
    Shutdown,
    /// The message could not be sent (an at-most-once send failed, or a re-routed message
    /// found its new stream full): the error, as text.
    #[error("{0}")]
    Send(String),
}

/// Where a guaranteed message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Not confirmed yet.
    Pending,
    /// An at-most-once message was handed to the link; nothing more will be known.
    Sent,
    /// The receiver's handler ran.
    Delivered,
    /// It will not be delivered.
    Failed(DeliveryFailure),
    /// Not confirmed by its deadline.
    Expired,
}

impl DeliveryStatus {
    /// True once the status will not change any more.
    pub fn is_final(&self) -> bool {
        !matches!(self, DeliveryStatus::Pending)
    }
}

/// Why awaiting a [`Receipt`] gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// Not delivered.
    #[error("not delivered: {0}")]
    Failed(#[from] DeliveryFailure),
    /// Not confirmed by its deadline; it may have been handled if it was sent.
    #[error("not confirmed by its deadline")]
    Expired,
    /// The reply did not decode.
    #[error("the reply did not decode: {0}")]
    Reply(String),
}

/// A receipt's state as the delivery service updates it.
#[derive(Debug, Clone)]
pub(crate) struct ReceiptState {
    pub(crate) status: DeliveryStatus,
    /// The handler's encoded result, once delivered.
    pub(crate) reply: Option<Bytes>,
}

/// What a receipt shares with the delivery service: its state, and the task waiting for
/// it (a receipt has one end, so one waiter at most).
#[derive(Debug)]
struct ReceiptCell {
    state: std::sync::Mutex<ReceiptState>,
    /// The state is final (read without the lock).
    done: std::sync::atomic::AtomicBool,
    settled: futures_util::task::AtomicWaker,
}

impl ReceiptCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReceiptState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_done(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The delivery service's end of a receipt: it settles it once. Dropped while the receipt
/// is pending (the node stopped), it settles it `Failed(Shutdown)`.
#[derive(Debug)]
pub(crate) struct ReceiptSender(std::sync::Arc<ReceiptCell>);

/// The receipt's end.
#[derive(Debug)]
struct ReceiptWatch(std::sync::Arc<ReceiptCell>);

/// A pending receipt's two ends.
fn receipt_channel() -> (ReceiptSender, ReceiptWatch) {
    let cell = std::sync::Arc::new(ReceiptCell {
        state: std::sync::Mutex::new(ReceiptState { status: DeliveryStatus::Pending, reply: None }),
        done: std::sync::atomic::AtomicBool::new(false),
        settled: futures_util::task::AtomicWaker::new(),
    });
    (ReceiptSender(cell.clone()), ReceiptWatch(cell))
}

impl ReceiptSender {
    /// A sender whose receipt nobody holds (a send of a previous run, a transaction's
    /// part delivered here).
    pub(crate) fn detached() -> Self {
        receipt_channel().0
    }

    /// Settles the receipt with `state` (a final state; later ones are ignored).
    pub(crate) fn send(&self, state: ReceiptState) {
        {
            let mut s = self.0.lock();
            if s.status.is_final() {
                return;
            }
            let done = state.status.is_final();
            *s = state;
            if done {
                self.0.done.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        self.0.settled.wake();
    }
}

impl Drop for ReceiptSender {
    fn drop(&mut self) {
        if !self.0.is_done() {
            self.send(failed(DeliveryFailure::Shutdown));
        }
    }
}

impl ReceiptWatch {
    fn status(&self) -> DeliveryStatus {
        self.0.lock().status.clone()
    }

    fn reply(&self) -> Option<Bytes> {
        self.0.lock().reply.clone()
    }

    /// Ready once the status is final.
    fn poll_settled(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if !self.0.is_done() {
            // Registered before looking again, so a settlement in between wakes it.
            self.0.settled.register(cx.waker());
            if !self.0.is_done() {
                return std::task::Poll::Pending;
            }
        }
        std::task::Poll::Ready(())
    }

    async fn settled(&self) -> DeliveryStatus {
        std::future::poll_fn(|cx| self.poll_settled(cx)).await;
        self.status()
    }
}

/// What became of one guaranteed send: its status, which moves from
/// [`Pending`](DeliveryStatus::Pending) to a final one, and, awaited, the handler's result.
///
/// Dropping a receipt does not cancel the send.
pub struct Receipt<R> {
    id: MessageId,
    state: ReceiptWatch,
    system: ClusterSystem,
    format: Format,
    _reply: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Receipt<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt").field("id", &self.id).field("status", &self.status()).finish()
    }
}

impl<R> Receipt<R> {
    fn new(id: MessageId, state: ReceiptWatch, system: ClusterSystem, format: Format) -> Self {
        Self { id, state, system, format, _reply: PhantomData }
    }

    /// A pending receipt and the service's end of it.
    pub(crate) fn pending(id: MessageId, system: ClusterSystem, format: Format) -> (ReceiptSender, Self) {
        let (tx, rx) = receipt_channel();
        (tx, Self::new(id, rx, system, format))
    }

    /// The message's id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The status now.
    pub fn status(&self) -> DeliveryStatus {
        self.state.status()
    }

    /// Waits until the status is final and returns it.
    pub async fn settled(&mut self) -> DeliveryStatus {
        self.state.settled().await
    }
}

impl<R: WireType> Receipt<R> {
    /// The result for a final `status`.
    fn outcome(&self, status: DeliveryStatus) -> Result<R, DeliveryError> {
        match status {
            DeliveryStatus::Delivered | DeliveryStatus::Sent => {
                let reply = self.state.reply();
                match reply {
                    Some(bytes) => context::decoding(&self.system.node.slot, || self.format.decode(&bytes, "reply"))
                        .map_err(|e| DeliveryError::Reply(e.to_string())),
                    // A tell (`R` is `()`): nothing came back.
                    None => self
                        .format
                        .encode(&(), "reply")
                        .and_then(|unit| self.format.decode(&unit, "reply"))
                        .map_err(|e| DeliveryError::Reply(e.to_string())),
                }
            }
            DeliveryStatus::Expired => Err(DeliveryError::Expired),
            DeliveryStatus::Failed(f) => Err(DeliveryError::Failed(f)),
            DeliveryStatus::Pending => unreachable!("settled"),
        }
    }
}

/// A [`Receipt`] awaited: the handler's result once the status is final.
#[must_use = "futures do nothing unless polled"]
pub struct ReceiptFuture<R>(Receipt<R>);

impl<R> fmt::Debug for ReceiptFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReceiptFuture").field(&self.0).finish()
    }
}

impl<R: WireType> Future for ReceiptFuture<R> {
    type Output = Result<R, DeliveryError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::task::ready!(self.0.state.poll_settled(cx));
        let status = self.0.state.status();
        std::task::Poll::Ready(self.0.outcome(status))
    }
}

impl<R: WireType> IntoFuture for Receipt<R> {
    type Output = Result<R, DeliveryError>;
    type IntoFuture = ReceiptFuture<R>;

    /// Waits for the final status: the handler's result once delivered.
    fn into_future(self) -> Self::IntoFuture {
        ReceiptFuture(self)
    }
}

impl<A: DistributedActor> ActorRef<A> {
    /// Tells with `delivery` (a [`DeliveryGuarantee`], or a [`Delivery`] with options):
    /// returns once the message is accepted (kept until confirmed), with a receipt that
    /// says when the receiver's handler has run.
    ///
    /// Fails at once with `Backpressure` if the stream to the actor's node keeps
    /// `delivery.outbox_capacity` unconfirmed messages, with `Encode` if the message does
    /// not serialize, and with `Shutdown` once the node stopped.
    pub async fn tell_with<M>(&self, msg: M, delivery: impl Into<Delivery>) -> Result<Receipt<()>, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        self.guaranteed(msg, delivery.into(), false).await
    }

    /// Asks with `delivery`: like [`tell_with`](Self::tell_with); awaiting the receipt
    /// gives the handler's result. With [`DeliveryGuarantee::ExactlyOnce`] a copy the
    /// receiver already handled is answered with the first result.
    pub async fn send_with<M>(&self, msg: M, delivery: impl Into<Delivery>) -> Result<Receipt<M::Result>, ClusterError>
    where
        M: RemoteMessage<A>,
    {
        self.guaranteed(msg, delivery.into(), true).await
    }

    async fn guaranteed<M, R>(&self, msg: M, delivery: Delivery, reply: bool) -> Result<Receipt<R>, ClusterError>
    where
        M: RemoteMessage<A>,
        R: WireType,
    {
        let format = A::format();
        let (tx, rx) = receipt_channel();
        if delivery.guarantee == DeliveryGuarantee::AtMostOnce {
            // Today's send: no identity or locator needed.
            let system = match self.started_system() {
                Some(system) => system,
                None => self.guaranteed_target().await?.system,
            };
            let ids = system.node.shared::<DeliveryShared>().ok_or(ClusterError::Shutdown)?;
            let id = delivery.id.unwrap_or_else(|| ids.next_id());
            let receipt = Receipt::new(id, rx, system, format);
            self.at_most_once(msg, reply, tx, format).await?;
            return Ok(receipt);
        }
        let target = self.guaranteed_target().await?;
        let system = target.system;
        let ids = system.node.shared_ref::<DeliveryShared>();
        let (Some(ids), false) = (ids, system.node.life.is_shut_down()) else { return Err(ClusterError::Shutdown) };
        let id = delivery.id.unwrap_or_else(|| ids.next_id());
        let receipt = Receipt::new(id, rx, system.clone(), format);
        if delivery.guarantee == DeliveryGuarantee::Transactional {
            // One target: a transaction with one participant (an ask's reply is not kept).
            let (system, this, timeout) = (system.clone(), self.clone(), delivery.expire_after);
            actix::spawn(async move {
                let txn = system.delivery().transaction().tell(&this, msg).timeout_opt(timeout);
                let state = match txn.commit().await {
                    Ok(TxnOutcome::Committed) => ReceiptState { status: DeliveryStatus::Delivered, reply: None },
                    Ok(TxnOutcome::Aborted(why)) => failed(DeliveryFailure::Aborted(why)),
                    Ok(TxnOutcome::InDoubt(nodes)) => failed(DeliveryFailure::InDoubt(nodes)),
                    Err(e) => failed(DeliveryFailure::Send(e.to_string())),
                };
                tx.send(state);
            });
            return Ok(receipt);
        }
        let payload = format.encode_bytes(&msg, M::NAME)?;
        let submit = Submit {
            id,
            dest: Dest::Actor { identity: target.identity, location: target.location, locator: Some(target.locator) },
            message: WireId(M::WIRE_ID),
            format,
            payload,
            reply,
            dedup: matches!(
                delivery.guarantee,
                DeliveryGuarantee::ExactlyOnce | DeliveryGuarantee::Ordered | DeliveryGuarantee::Causal
            ),
            ordered: matches!(delivery.guarantee, DeliveryGuarantee::Ordered | DeliveryGuarantee::Causal),
            expire_after: delivery.expire_after,
            receipt: tx,
            counted: false,
            causal: delivery.guarantee == DeliveryGuarantee::Causal,
        };
        if !ids.durable {
            // Accepted without a round trip to the service: it takes queued sends in batches.
            ids.enqueue(&system, submit)?;
            // A loop of awaited sends that never wait would keep the service (on this
            // thread) from sending anything until it ends: yield when the budget is spent.
            tokio::task::consume_budget().await;
            return Ok(receipt);
        }
        let (answer, accepted) = tokio::sync::oneshot::channel();
        system.node.to_control(Input::Call(
            Channel::DELIVERY,
            call_on(move |s: &mut DeliveryService, cx| s.submit(cx, submit, answer)),
        ));
        match accepted.await {
            Ok(Ok(())) => Ok(receipt),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClusterError::Shutdown),
        }
    }

    /// Today's send, reported through a receipt: a tell is handed to the link here (its
    /// errors are the caller's), an ask's reply comes to the receipt.
    async fn at_most_once<M: RemoteMessage<A>>(
        &self,
        msg: M,
        reply: bool,
        tx: ReceiptSender,
        format: Format,
    ) -> Result<(), ClusterError> {
        if !reply {
            self.tell(msg).await?;
            tx.send(ReceiptState { status: DeliveryStatus::Sent, reply: None });
            return Ok(());
        }
        let this = self.clone();
        actix::spawn(async move {
            let state = match this.send(msg).await.and_then(|r| format.encode(&r, "reply")) {
                Ok(bytes) => ReceiptState { status: DeliveryStatus::Delivered, reply: Some(Bytes::from(bytes)) },
                Err(e) => failed(DeliveryFailure::Send(e.to_string())),
            };
            tx.send(state);
        });
        Ok(())
    }
}

/// A final failed state.
pub(crate) fn failed(failure: DeliveryFailure) -> ReceiptState {
    ReceiptState { status: DeliveryStatus::Failed(failure), reply: None }
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnOutcome {
    /// Every participant node committed: each target's node has taken its message for
    /// delivery (handled once, following an actor that moves meanwhile).
    Committed,
    /// Nothing was delivered anywhere; safe to retry. Why.
    Aborted(String),
    /// Committed, but these nodes had not confirmed by the deadline: delivered where
    /// confirmed, maybe not (yet) on these.
    InDoubt(Vec<String>),
}

/// One participant node's part, found when the transaction commits.
type Part = Pin<Box<dyn Future<Output = Result<(NodeId, String, TxnItem), ClusterError>>>>;

/// A send to several targets that reaches all of them or none (two-phase commit: each
/// target's node checks it can deliver and stages the message, then all deliver or none
/// does). Build it with [`DeliveryApi::transaction`].
///
/// ```no_run
/// # use actix_cluster_runtime::{ClusterSystem, TxnOutcome};
/// # async fn f(system: ClusterSystem) {
/// // let outcome = system.delivery().transaction().tell(&from, Withdraw(5)).tell(&to, Deposit(5)).commit().await?;
/// # }
/// ```
#[must_use = "a transaction does nothing until committed"]
pub struct Transaction<'a> {
    system: &'a ClusterSystem,
    parts: Vec<Part>,
    timeout: Option<Duration>,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction").field("messages", &self.parts.len()).field("timeout", &self.timeout).finish()
    }
}

impl<'a> Transaction<'a> {
    /// Adds `msg` for the actor `to` names.
    pub fn tell<A: DistributedActor, M: RemoteMessage<A>>(mut self, to: &ActorRef<A>, msg: M) -> Self {
        let handle = to.clone();
        let ids = self.system.node.shared::<DeliveryShared>();
        self.parts.push(Box::pin(async move {
            let format = A::format();
            let payload = format.encode(&msg, M::NAME)?;
            let target = handle.guaranteed_target().await?;
            let id = ids.ok_or(ClusterError::Shutdown)?.next_id();
            let to = TxnTo::Actor { identity: target.identity, target: target.location.actor };
            let item = TxnItem { id, to, message: WireId(M::WIRE_ID), format, payload };
            Ok((target.location.node_id, target.location.node.clone(), item))
        }));
        self
    }

    /// Adds a message for the service on `channel` of node `node_id` (the broker's topic).
    pub(crate) fn sink(
        mut self,
        node_id: NodeId,
        node: String,
        channel: Channel,
        key: String,
        item: (WireId, Format, Vec<u8>),
    ) -> Self {
        let ids = self.system.node.shared::<DeliveryShared>();
        self.parts.push(Box::pin(async move {
            let id = ids.ok_or(ClusterError::Shutdown)?.next_id();
            let (message, format, payload) = item;
            Ok((node_id, node, TxnItem { id, to: TxnTo::Sink { channel, key }, message, format, payload }))
        }));
        self
    }

    /// Aborts unless every node has voted within `timeout` (default `delivery.txn_timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn timeout_opt(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout.or(self.timeout);
        self
    }

    /// Runs the transaction: returns how it ended. Fails before anything is sent if a
    /// message does not serialize or a target cannot be found.
    pub async fn commit(self) -> Result<TxnOutcome, ClusterError> {
        let mut parts: std::collections::BTreeMap<NodeId, (String, Vec<TxnItem>)> = std::collections::BTreeMap::new();
        for part in self.parts {
            let (node_id, node, item) = part.await?;
            parts.entry(node_id).or_insert_with(|| (node, Vec::new())).1.push(item);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let timeout = self.timeout;
        self.system.node.to_control(Input::Call(
            Channel::DELIVERY,
            call_on(move |s: &mut DeliveryService, cx| s.begin_txn(cx, parts, timeout, tx)),
        ));
        rx.await.map_err(|_| ClusterError::Shutdown)
    }
}

/// Figures about guaranteed delivery on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Guaranteed messages sent from here not yet confirmed.
    pub unconfirmed: usize,
    /// Delivered (confirmed) so far.
    pub delivered: u64,
    /// Failed so far.
    pub failed: u64,
    /// Expired so far.
    pub expired: u64,
    /// Sent again to another place (the actor moved, or its node was lost) so far.
    pub rerouted: u64,
    /// Copies this node received and recognised as already handled (exactly-once) so far.
    pub duplicates: u64,
    /// Message ids this node remembers for exactly-once now.
    pub remembered: usize,
    /// Messages a previous run of this node left in the durable outbox, sent again.
    pub resumed: u64,
    /// Causal messages held back now, waiting for messages they depend on.
    pub causal_held: usize,
    /// Local actors this node keeps what causal messages they received for (forgotten when
    /// they stop).
    pub causal_receivers: usize,
}

/// Guaranteed delivery on this node: see [`ClusterSystem::delivery`].
#[derive(Debug, Clone, Copy)]
pub struct DeliveryApi<'a> {
    system: &'a ClusterSystem,
}

impl ClusterSystem {
    /// Guaranteed delivery on this node (figures). Sends go through
    /// [`ActorRef::tell_with`] and [`ActorRef::send_with`].
    pub fn delivery(&self) -> DeliveryApi<'_> {
        DeliveryApi { system: self }
    }
}

impl<'a> DeliveryApi<'a> {
    /// A transaction: messages to several actors (and publishes) that all reach their
    /// targets or none does.
    pub fn transaction(&self) -> Transaction<'a> {
        Transaction { system: self.system, parts: Vec::new(), timeout: None }
    }

    /// Figures about guaranteed delivery here; zeros once the node has stopped.
    pub async fn stats(&self) -> DeliveryStats {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.system.node.to_control(Input::Call(
            Channel::DELIVERY,
            call_on(move |s: &mut DeliveryService, _| {
                let _ = tx.send(s.stats());
            }),
        ));
        rx.await.unwrap_or_default()
    }
}

pub(crate) use crate::handle::actor_ref::Locator;
