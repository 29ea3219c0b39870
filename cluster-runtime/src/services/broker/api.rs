//! Publish/subscribe across the cluster: [`subscribe_cluster`] from inside an actor,
//! [`Broker::publish`] from anywhere.

use std::hash::{Hash, Hasher};

use actix::{Actor, AsyncContext, Context, Handler};

use crate::actor::ClusterMessage;
use crate::error::ClusterError;
use crate::ids::MessageId;
use crate::ids::{NodeId, WireId};
use crate::node::context;
use crate::node::service::{call_on, Input};
use crate::node::system::ClusterSystem;
use crate::proto::wire::channel::Channel;
use crate::services::broker::{Acked, BrokerService, BrokerStats, SubKey, Subscriber};
use crate::services::delivery::api::{
    Delivery, DeliveryFailure, DeliveryGuarantee, DeliveryStatus, Receipt, ReceiptState, TxnOutcome,
};
use crate::services::delivery::{DeliveryService, DeliveryShared, Dest, Submit};

/// The topic every publish of message type `M` goes to (unless published to a named topic).
fn type_topic<M: ClusterMessage>() -> String {
    format!("type:{}", M::NAME)
}

fn named_topic(name: &str) -> String {
    format!("topic:{name}")
}

/// The key of the actor behind `ctx` (its mailbox), among this process's actors.
fn actor_key<A: Actor<Context = Context<A>>>(ctx: &Context<A>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::any::TypeId::of::<A>().hash(&mut h);
    ctx.address().hash(&mut h);
    h.finish()
}

/// Subscribes the actor running in `ctx` to every publish of `M` in the cluster, on the
/// thread's current cluster system ([`ClusterSystem::current`]). Call it from the actor
/// (in `started`, say); the subscription ends when the actor stops or calls
/// [`unsubscribe_cluster`]. Fails with `Shutdown` if no cluster system runs here.
pub fn subscribe_cluster<M, A>(ctx: &mut Context<A>) -> Result<(), ClusterError>
where
    M: ClusterMessage + actix::Message<Result = ()>,
    A: Actor<Context = Context<A>> + Handler<M>,
{
    let system = ClusterSystem::current().ok_or(ClusterError::Shutdown)?;
    system.broker().subscribe::<M, A>(ctx, None);
    Ok(())
}

/// Ends the subscription of the actor running in `ctx` to `M`'s publishes.
pub fn unsubscribe_cluster<M, A>(ctx: &mut Context<A>) -> Result<(), ClusterError>
where
    M: ClusterMessage,
    A: Actor<Context = Context<A>>,
{
    let system = ClusterSystem::current().ok_or(ClusterError::Shutdown)?;
    system.broker().unsubscribe::<M, A>(ctx, None);
    Ok(())
}

/// The distributed broker on one node: see [`ClusterSystem::broker`].
#[derive(Debug, Clone, Copy)]
pub struct Broker<'a> {
    system: &'a ClusterSystem,
}

impl ClusterSystem {
    /// The distributed broker: publish a message to every actor in the cluster that
    /// subscribed to its type (or to a named topic).
    pub fn broker(&self) -> Broker<'_> {
        Broker { system: self }
    }

    /// Publishes `msg` to every subscriber of its type in the cluster with `delivery`: see
    /// [`Broker::publish_with_guarantee`].
    pub async fn publish_with_guarantee<M: ClusterMessage>(
        &self,
        msg: M,
        delivery: impl Into<Delivery>,
    ) -> Result<PublishReceipt, ClusterError> {
        self.broker().publish_with_guarantee(msg, delivery).await
    }

    /// Publishes `msg` to every subscriber of its type in the cluster, at most once: one
    /// copy to each node with subscribers, handed there to each of them. Returns how many
    /// nodes (this one included) it went to.
    pub async fn publish<M: ClusterMessage>(&self, msg: M) -> Result<usize, ClusterError> {
        self.broker().publish(msg).await
    }
}

/// What became of a guaranteed publish: one receipt per node it went to (each settles once
/// every subscriber there handled it).
#[derive(Debug)]
pub struct PublishReceipt {
    id: MessageId,
    nodes: Vec<(String, Receipt<()>)>,
    sent: usize,
}

/// The final statuses of a publish's copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Nodes whose subscribers all handled it.
    pub delivered: Vec<String>,
    /// Nodes that went away before confirming (their subscribers with them).
    pub gone: Vec<String>,
    /// Nodes whose copy failed or expired, with the status.
    pub failed: Vec<(String, DeliveryStatus)>,
}

impl PublishReceipt {
    /// The publish's message id (the same on every node).
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// How many nodes it went to (this one included, if it has subscribers).
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Each node's status now (empty for an at-most-once publish).
    pub fn statuses(&self) -> Vec<(String, DeliveryStatus)> {
        self.nodes.iter().map(|(n, r)| (n.clone(), r.status())).collect()
    }

    /// Waits until every copy's status is final.
    pub async fn settled(mut self) -> PublishOutcome {
        let mut outcome = PublishOutcome { delivered: Vec::new(), gone: Vec::new(), failed: Vec::new() };
        for (node, receipt) in &mut self.nodes {
            match receipt.settled().await {
                DeliveryStatus::Delivered => outcome.delivered.push(node.clone()),
                DeliveryStatus::Failed(DeliveryFailure::NodeGone(_)) => outcome.gone.push(node.clone()),
                other => outcome.failed.push((node.clone(), other)),
            }
        }
        outcome
    }
}

/// Ends a subscription when the actor's context drops it (the actor stopped).
struct Leave {
    system: crate::node::system::WeakClusterSystem,
    actor: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Some(system) = self.system.upgrade() {
            let actor = self.actor;
            system.node.to_control(Input::Call(
                Channel::BROKER,
                call_on(move |s: &mut BrokerService, cx| s.actor_stopped(cx, actor)),
            ));
        }
    }
}

impl Broker<'_> {
    fn post(&self, f: impl FnOnce(&mut BrokerService, &mut crate::node::service::Cx<'_>) + Send + 'static) {
        self.system.node.to_control(Input::Call(Channel::BROKER, call_on(f)));
    }

    /// Subscribes the actor running in `ctx` to `M`'s publishes (`topic: None`) or to the
    /// `M`s published to the named `topic`.
    pub fn subscribe<M, A>(&self, ctx: &mut Context<A>, topic: Option<&str>)
    where
        M: ClusterMessage + actix::Message<Result = ()>,
        A: Actor<Context = Context<A>> + Handler<M>,
    {
        let topic = topic.map_or_else(type_topic::<M>, named_topic);
        let actor = actor_key(ctx);
        let recipient = ctx.address().recipient::<M>();
        let system = self.system.downgrade();
        let deliver = Box::new(move |format: crate::format::Format, payload: &[u8], acked: bool| {
            let Some(system) = system.upgrade() else { return Err("the node stopped".to_owned()) };
            let msg: M =
                context::decoding(&system.node.slot, || format.decode(payload, M::NAME)).map_err(|e| e.to_string())?;
            if acked {
                let handled = recipient.send(msg);
                let ack: Acked = Box::pin(async move { handled.await.is_ok() });
                return Ok(Some(ack));
            }
            // Into the mailbox whatever its fill, as a local `do_send`: a burst of publishes is
            // not dropped at a busy subscriber.
            recipient.do_send(msg);
            Ok(None)
        });
        let key: SubKey = (actor, WireId(M::WIRE_ID));
        let subscriber = Subscriber { message: WireId(M::WIRE_ID), deliver };
        self.post(move |s, cx| s.subscribe(cx, topic, key, subscriber));
        // The context drops this when the actor stops: its subscriptions end.
        let leave = Leave { system: self.system.downgrade(), actor };
        ctx.spawn(actix::fut::wrap_future(async move {
            let _leave = leave;
            std::future::pending::<()>().await;
        }));
    }

    /// Ends the subscription of the actor running in `ctx` to `M` (on `topic`, or `M`'s own).
    pub fn unsubscribe<M, A>(&self, ctx: &mut Context<A>, topic: Option<&str>)
    where
        M: ClusterMessage,
        A: Actor<Context = Context<A>>,
    {
        let topic = topic.map_or_else(type_topic::<M>, named_topic);
        let key: SubKey = (actor_key(ctx), WireId(M::WIRE_ID));
        self.post(move |s, cx| s.unsubscribe(cx, &topic, key));
    }

    /// Publishes `msg` to every subscriber of its type, at most once (see
    /// [`ClusterSystem::publish`]).
    pub async fn publish<M: ClusterMessage>(&self, msg: M) -> Result<usize, ClusterError> {
        self.publish_on(type_topic::<M>(), msg).await
    }

    /// Publishes `msg` to the subscribers of the named `topic` that take its type, at most once.
    pub async fn publish_to<M: ClusterMessage>(&self, topic: &str, msg: M) -> Result<usize, ClusterError> {
        self.publish_on(named_topic(topic), msg).await
    }

    async fn publish_on<M: ClusterMessage>(&self, topic: String, msg: M) -> Result<usize, ClusterError> {
        // Published messages are in postcard, whatever their subscribers' actor formats.
        let format = crate::format::Format::Postcard;
        let payload = format.encode(&msg, M::NAME)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.post(move |s, cx| {
            let _ = tx.send(s.publish(cx, &topic, WireId(M::WIRE_ID), format, &payload));
        });
        rx.await.map_err(|_| ClusterError::Shutdown)
    }

    /// The nodes (this one included) that have subscribers for `M`'s publishes
    /// (`topic: None`) or for the named `topic`, as this node knows them now.
    pub async fn subscribed_nodes<M: ClusterMessage>(&self, topic: Option<&str>) -> Vec<String> {
        let topic = topic.map_or_else(type_topic::<M>, named_topic);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.system.node_name().to_owned();
        self.post(move |s, _| {
            let _ = tx.send(s.nodes_for(&topic, &me));
        });
        rx.await.unwrap_or_default()
    }

    /// Publishes `msg` to every subscriber of its type with `delivery` (a
    /// [`DeliveryGuarantee`], or a [`Delivery`] with options): one guaranteed copy to each
    /// node that has subscribers now, confirmed once every subscriber there has handled it.
    /// At-most-once is [`publish`](Self::publish).
    pub async fn publish_with_guarantee<M: ClusterMessage>(
        &self,
        msg: M,
        delivery: impl Into<Delivery>,
    ) -> Result<PublishReceipt, ClusterError> {
        self.publish_guaranteed(type_topic::<M>(), msg, delivery.into()).await
    }

    /// Like [`publish_with_guarantee`](Self::publish_with_guarantee), to the named `topic`.
    pub async fn publish_to_with_guarantee<M: ClusterMessage>(
        &self,
        topic: &str,
        msg: M,
        delivery: impl Into<Delivery>,
    ) -> Result<PublishReceipt, ClusterError> {
        self.publish_guaranteed(named_topic(topic), msg, delivery.into()).await
    }

    async fn publish_guaranteed<M: ClusterMessage>(
        &self,
        topic: String,
        msg: M,
        delivery: Delivery,
    ) -> Result<PublishReceipt, ClusterError> {
        let system = self.system;
        let ids = system.node.shared::<DeliveryShared>().ok_or(ClusterError::Shutdown)?;
        let id = delivery.message_id().unwrap_or_else(|| ids.next_id());
        if delivery.guarantee() == DeliveryGuarantee::AtMostOnce {
            let nodes = self.publish_on(topic, msg).await?;
            return Ok(PublishReceipt { id, nodes: Vec::new(), sent: nodes });
        }
        let format = crate::format::Format::Postcard;
        let payload = format.encode_bytes(&msg, M::NAME)?;
        // Where it goes: the subscribing peers, and this node if it has subscribers.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let looked_up = topic.clone();
        let me = (system.node_id(), system.node_name().to_owned());
        self.post(move |s, _| {
            let mut nodes = s.peers_for(&looked_up);
            if s.has_local(&looked_up) {
                nodes.push(me);
            }
            let _ = tx.send(nodes);
        });
        let nodes = rx.await.map_err(|_| ClusterError::Shutdown)?;
        if delivery.guarantee() == DeliveryGuarantee::Transactional {
            return Ok(self.publish_transactional(
                nodes,
                topic,
                WireId(M::WIRE_ID),
                format,
                payload.to_vec(),
                id,
                delivery,
            ));
        }
        if delivery.guarantee() == DeliveryGuarantee::Causal {
            return self.publish_causal(nodes, topic, WireId(M::WIRE_ID), format, payload, id, delivery).await;
        }
        let mut receipts = Vec::new();
        let mut submits = Vec::new();
        for (node_id, node) in nodes {
            let (state, receipt) = Receipt::<()>::pending(id, system.clone(), format);
            receipts.push((node.clone(), receipt));
            submits.push(Submit {
                id,
                dest: Dest::Sink { node, node_id, channel: Channel::BROKER, key: topic.clone() },
                message: WireId(M::WIRE_ID),
                format,
                payload: payload.clone(),
                reply: false,
                dedup: matches!(delivery.guarantee(), DeliveryGuarantee::ExactlyOnce | DeliveryGuarantee::Ordered),
                ordered: delivery.guarantee() == DeliveryGuarantee::Ordered,
                expire_after: delivery.expiry(),
                receipt: state,
                counted: false,
                causal: false,
            });
        }
        let (answer, accepted) = tokio::sync::oneshot::channel();
        system.node.to_control(Input::Call(
            Channel::DELIVERY,
            call_on(move |s: &mut DeliveryService, cx| {
                let mut refused = None;
                for submit in submits {
                    let (tx, mut rx) = tokio::sync::oneshot::channel();
                    s.submit(cx, submit, tx);
                    // Publishes are not kept in the durable outbox: accepted (or not) at once.
                    if let Ok(Err(e)) = rx.try_recv() {
                        refused = Some(e);
                    }
                }
                let _ = answer.send(refused.map_or(Ok(()), Err));
            }),
        ));
        accepted.await.map_err(|_| ClusterError::Shutdown)??;
        let sent = receipts.len();
        Ok(PublishReceipt { id, nodes: receipts, sent })
    }

    /// A causal publish: stamped by this node's broker and handed to the delivery service
    /// in the same step (so the streams carry a node's publishes in stamp order), one
    /// ordered exactly-once copy per subscribing peer; this node's subscribers get it at
    /// once.
    #[allow(clippy::too_many_arguments)]
    async fn publish_causal(
        &self,
        nodes: Vec<(NodeId, String)>,
        topic: String,
        message: WireId,
        format: crate::format::Format,
        payload: bytes::Bytes,
        id: MessageId,
        delivery: Delivery,
    ) -> Result<PublishReceipt, ClusterError> {
        let me = self.system.node_id();
        let peers: Vec<(NodeId, String)> = nodes.into_iter().filter(|(n, _)| *n != me).collect();
        let mut receipts = Vec::new();
        let mut states = Vec::new();
        for (node_id, node) in &peers {
            let (state, receipt) = Receipt::<()>::pending(id, self.system.clone(), format);
            receipts.push((node.clone(), receipt));
            states.push((*node_id, node.clone(), state));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let expiry = delivery.expiry();
        self.post(move |s, cx| {
            let ids: Vec<NodeId> = states.iter().map(|(n, _, _)| *n).collect();
            let copies = s.causal_publish(&topic, message, format, &payload, &ids);
            let key = format!("{}{topic}", crate::services::broker::CAUSAL);
            let submits: Vec<Submit> = states
                .into_iter()
                .zip(copies)
                .map(|((node_id, node, state), (_, body))| Submit {
                    id,
                    dest: Dest::Sink { node, node_id, channel: Channel::BROKER, key: key.clone() },
                    message,
                    format,
                    payload: bytes::Bytes::from(body),
                    reply: false,
                    dedup: true,
                    ordered: true,
                    expire_after: expiry,
                    receipt: state,
                    counted: false,
                    causal: false,
                })
                .collect();
            cx.node().post(
                Channel::DELIVERY,
                call_on(move |d: &mut DeliveryService, cx| {
                    for submit in submits {
                        let (accepted, _) = tokio::sync::oneshot::channel();
                        d.submit(cx, submit, accepted);
                    }
                }),
            );
            let _ = tx.send(());
        });
        rx.await.map_err(|_| ClusterError::Shutdown)?;
        let sent = receipts.len();
        Ok(PublishReceipt { id, nodes: receipts, sent })
    }

    /// A transactional publish: all subscribing nodes or none. Each node's receipt settles
    /// from the transaction's outcome.
    #[allow(clippy::too_many_arguments)]
    fn publish_transactional(
        &self,
        nodes: Vec<(NodeId, String)>,
        topic: String,
        message: WireId,
        format: crate::format::Format,
        payload: Vec<u8>,
        id: MessageId,
        delivery: Delivery,
    ) -> PublishReceipt {
        let system = self.system.clone();
        let mut states = Vec::new();
        let mut receipts = Vec::new();
        for (_, node) in &nodes {
            let (state, receipt) = Receipt::<()>::pending(id, system.clone(), format);
            states.push((node.clone(), state));
            receipts.push((node.clone(), receipt));
        }
        let sent = receipts.len();
        actix::spawn(async move {
            let mut txn = system.delivery().transaction();
            if let Some(after) = delivery.expiry() {
                txn = txn.timeout(after);
            }
            for (node_id, node) in nodes {
                txn = txn.sink(node_id, node, Channel::BROKER, topic.clone(), (message, format, payload.clone()));
            }
            let outcome = txn.commit().await;
            for (node, state) in states {
                let status = match &outcome {
                    Ok(TxnOutcome::Committed) => DeliveryStatus::Delivered,
                    Ok(TxnOutcome::InDoubt(nodes)) if !nodes.contains(&node) => DeliveryStatus::Delivered,
                    Ok(TxnOutcome::InDoubt(nodes)) => DeliveryStatus::Failed(DeliveryFailure::InDoubt(nodes.clone())),
                    Ok(TxnOutcome::Aborted(why)) => DeliveryStatus::Failed(DeliveryFailure::Aborted(why.clone())),
                    Err(e) => DeliveryStatus::Failed(DeliveryFailure::Send(e.to_string())),
                };
                state.send(ReceiptState { status, reply: None });
            }
        });
        PublishReceipt { id, nodes: receipts, sent }
    }

    /// Figures about the broker here; zeros once the node has stopped.
    pub async fn stats(&self) -> BrokerStats {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.post(move |s, _| {
            let _ = tx.send(s.stats());
        });
        rx.await.unwrap_or_default()
    }
}
