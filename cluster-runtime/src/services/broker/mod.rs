//! The broker service: cluster-wide publish/subscribe over the routing table
//! ([`Subscriptions`]).
//!
//! Local actors subscribe to a topic (a message type's, or a named one); the table tells
//! peers which topics this node has subscribers for, and learns theirs. A publish goes once
//! to each subscribing node and fans out there to its local subscribers. Subscriptions
//! follow membership: a peer that links up exchanges its whole set, a peer marked down or
//! gone takes its topics with it, and a subscriber that stops leaves its topics.

pub mod api;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::format::Format;
use crate::ids::{NodeId, WireId};
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Delivered, Handled, HandledFn, Install, Metrics, Service, ServiceFrameError};
use crate::proto::broker::subscriptions::{Output, Subscriptions, Topic};
use crate::proto::broker::wire::{BrokerFrame, CausalEnvelope};
use crate::proto::delivery::causal::{CausalGroup, VClock};
use crate::proto::membership::MembershipEvent;
use crate::proto::wire::channel::Channel;

/// The version of the broker's frames.
const VERSION: u16 = 1;

/// A local subscriber: its key (actor and message type), and how a payload reaches it.
/// `deliver` decodes the payload and puts the message in the actor's mailbox; it fails if
/// the payload does not decode or the actor is gone.
pub(crate) struct Subscriber {
    pub(crate) message: WireId,
    pub(crate) deliver: DeliverFn,
}

/// Decodes a published payload and puts it in a subscriber's mailbox; with `acked`, also
/// returns a future that ends once the subscriber's handler has run (true) or it stopped
/// without running it (false).
pub(crate) type DeliverFn = Box<dyn Fn(Format, &[u8], bool) -> Result<Option<Acked>, String> + Send>;

/// See [`DeliverFn`].
pub(crate) type Acked = std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>;

/// A subscriber's key: its actor and the message type it takes.
pub(crate) type SubKey = (u64, WireId);

/// Figures about the broker on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Topics with local subscribers.
    pub topics: usize,
    /// Local subscriptions.
    pub subscribers: usize,
    /// Publishes from this node so far.
    pub published: u64,
    /// Copies sent to other nodes so far (one per subscribing node per publish).
    pub sent: u64,
    /// Messages handed to local subscribers so far.
    pub delivered: u64,
    /// Copies for local subscribers that did not decode or whose actor was gone.
    pub undelivered: u64,
    /// Causal publishes held back now (waiting for one they depend on).
    pub causal_held: usize,
}

/// A causal publish waiting (held back) or delivered: the message, and where to say it was
/// handled.
struct CausalMsg {
    message: WireId,
    format: Format,
    payload: Vec<u8>,
    done: Option<HandledFn>,
}

/// Causal publishes of one topic on this node.
struct CausalTopic {
    group: CausalGroup<NodeId, CausalMsg>,
    /// Per subscribing node: the last of this node's numbers sent to it.
    last_sent: HashMap<NodeId, u64>,
    /// When each unknown member was last asked where its part starts.
    asked: HashMap<NodeId, std::time::Duration>,
}

/// The prefix of the delivery key of causal publishes (the topic follows).
pub(crate) const CAUSAL: &str = "causal:";

/// Causal publishes held back at most, per topic.
const HOLD_BACK: usize = 100_000;

/// A member asked where its part of a topic's causal publishes starts is asked again
/// after this long if the answer did not come.
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// The broker service of one node.
pub(crate) struct BrokerService {
    node_id: NodeId,
    causal: HashMap<Topic, CausalTopic>,
    table: Subscriptions<NodeId, SubKey>,
    subscribers: HashMap<Topic, BTreeMap<SubKey, Subscriber>>,
    linked: HashMap<NodeId, String>,
    stats: BrokerStats,
    /// When held-back causal publishes next make this node ask again where senders' parts start.
    causal_check: Option<std::time::Duration>,
    /// Peers marked down: their subscriptions are asked for again if they come back up.
    down: HashMap<NodeId, String>,
}

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (BrokerService, Arc<()>) {
    let service = BrokerService {
        node_id: i.node_id,
        table: Subscriptions::new(),
        causal: HashMap::new(),
        subscribers: HashMap::new(),
        linked: HashMap::new(),
        stats: BrokerStats::default(),
        causal_check: None,
        down: HashMap::new(),
    };
    (service, Arc::new(()))
}

impl BrokerService {
    fn causal_topic(&mut self, topic: &str) -> &mut CausalTopic {
        let me = self.node_id;
        self.causal.entry(topic.to_owned()).or_insert_with(|| CausalTopic {
            group: CausalGroup::new(me, HOLD_BACK),
            last_sent: HashMap::new(),
            asked: HashMap::new(),
        })
    }

    /// Stamps a causal publish to `topic` for `nodes` (its local subscribers get it at
    /// once): what to send each node.
    pub(crate) fn causal_publish(
        &mut self,
        topic: &str,
        message: WireId,
        format: Format,
        payload: &[u8],
        nodes: &[NodeId],
    ) -> Vec<(NodeId, Vec<u8>)> {
        let me = self.node_id;
        let t = self.causal_topic(topic);
        let stamp = t.group.send();
        let seq = stamp.get(&me);
        let stamp: Vec<(NodeId, u64)> = stamp.0.into_iter().collect();
        let mut out = Vec::new();
        for node in nodes {
            let prev = t.last_sent.insert(*node, seq).unwrap_or(0);
            let envelope = CausalEnvelope { from: me, stamp: stamp.clone(), prev, payload: payload.to_vec() };
            out.push((*node, envelope.encode()));
        }
        self.fan_out(topic, message, format, payload);
        out
    }

    /// A causal publish arrived: delivered to the local subscribers in causal order.
    fn causal_arrived(&mut self, cx: &mut Cx<'_>, topic: &str, d: Delivered, done: HandledFn) {
        let envelope = match CausalEnvelope::decode(&d.payload) {
            Ok(e) => e,
            Err(e) => {
                let refused = crate::error::RemoteError::new(crate::error::RemoteErrorKind::Decode, e.to_string());
                cx.node().post(Channel::DELIVERY, done(Handled::Refused(refused)));
                return;
            }
        };
        let stamp = VClock(envelope.stamp.into_iter().collect());
        let msg = CausalMsg { message: d.message, format: d.format, payload: envelope.payload, done: Some(done) };
        let t = self.causal_topic(topic);
        let released = t.group.receive(envelope.from, stamp, envelope.prev, msg);
        match released {
            Ok(ready) => self.causal_deliver(cx, topic, ready),
            Err(full) => tracing::warn!(%topic, error = %full, "a causal publish was not taken; it will come again"),
        }
        self.causal_ask(cx, topic);
    }

    /// Hands released causal publishes to the local subscribers, in order.
    fn causal_deliver(&mut self, cx: &mut Cx<'_>, topic: &str, ready: Vec<CausalMsg>) {
        for mut m in ready {
            let (_, acks) = self.fan_out_with(topic, m.message, m.format, &m.payload, true);
            if let Some(done) = m.done.take() {
                confirm_when_handled(cx, acks, done);
            }
        }
    }

    /// Asks the members held-back publishes of `topic` wait for, that this node heard
    /// nothing from, where their part starts (again after a while).
    fn causal_ask(&mut self, cx: &mut Cx<'_>, topic: &str) {
        let now = cx.now();
        let Some(t) = self.causal.get_mut(topic) else { return };
        if t.group.held() > 0 && self.causal_check.is_none() {
            self.causal_check = Some(now + ASK_AGAIN);
        }
        for node in t.group.waiting_on() {
            let due = t.asked.get(&node).is_none_or(|at| now.saturating_sub(*at) >= ASK_AGAIN);
            if due {
                t.asked.insert(node, now);
                cx.send(node, &BrokerFrame::CausalAsk { topic }.encode());
            }
        }
    }

    /// Node incarnation `node` is gone for good: its causal publishes are no longer waited
    /// for (those that arrived are still delivered in its order).
    fn causal_departed(&mut self, cx: &mut Cx<'_>, node: NodeId) {
        let topics: Vec<Topic> = self.causal.keys().cloned().collect();
        for topic in topics {
            if let Some(t) = self.causal.get_mut(&topic) {
                t.last_sent.remove(&node);
                t.asked.remove(&node);
                let ready = t.group.prune(&node);
                t.group.forget(&node);
                self.causal_deliver(cx, &topic, ready);
            }
        }
    }

    /// Figures for the API.
    pub(crate) fn stats(&self) -> BrokerStats {
        BrokerStats {
            topics: self.subscribers.len(),
            subscribers: self.subscribers.values().map(BTreeMap::len).sum(),
            causal_held: self.causal.values().map(|t| t.group.held()).sum(),
            ..self.stats
        }
    }

    /// The nodes (this one included) with subscribers for `topic`, by name.
    pub(crate) fn nodes_for(&self, topic: &str, me: &str) -> Vec<String> {
        let mut nodes: Vec<String> = self.table.nodes_for(topic).filter_map(|n| self.linked.get(n).cloned()).collect();
        if self.subscribers.contains_key(topic) {
            nodes.push(me.to_owned());
        }
        nodes.sort();
        nodes
    }

    /// Local subscriber `key` joins `topic`.
    pub(crate) fn subscribe(&mut self, cx: &mut Cx<'_>, topic: Topic, key: SubKey, subscriber: Subscriber) {
        self.subscribers.entry(topic.clone()).or_default().insert(key, subscriber);
        self.table.subscribe(&topic, key);
        self.flush(cx);
    }

    /// Local subscriber `key` leaves `topic`.
    pub(crate) fn unsubscribe(&mut self, cx: &mut Cx<'_>, topic: &str, key: SubKey) {
        if let Some(subs) = self.subscribers.get_mut(topic) {
            subs.remove(&key);
            if subs.is_empty() {
                self.subscribers.remove(topic);
            }
        }
        self.table.unsubscribe(topic, &key);
        self.flush(cx);
    }

    /// Local actor `actor` stopped: it leaves every topic.
    pub(crate) fn actor_stopped(&mut self, cx: &mut Cx<'_>, actor: u64) {
        self.subscribers.retain(|_, subs| {
            subs.retain(|k, _| k.0 != actor);
            !subs.is_empty()
        });
        let keys: Vec<SubKey> = self.table_keys().into_iter().filter(|k| k.0 == actor).collect();
        for key in keys {
            self.table.actor_stopped(&key);
        }
        self.flush(cx);
    }

    fn table_keys(&self) -> Vec<SubKey> {
        self.subscribers.values().flat_map(|s| s.keys().copied()).collect::<Vec<_>>()
    }

    /// Publishes at most once: one copy to each subscribing node, and to the local
    /// subscribers. Returns how many nodes (this one included) it went to.
    pub(crate) fn publish(
        &mut self,
        cx: &mut Cx<'_>,
        topic: &str,
        message: WireId,
        format: Format,
        payload: &[u8],
    ) -> usize {
        self.stats.published += 1;
        let nodes: Vec<NodeId> = self.table.nodes_for(topic).copied().filter(|n| self.linked.contains_key(n)).collect();
        let mut reached = 0;
        if !nodes.is_empty() {
            let frame = BrokerFrame::Publish { topic, message, format, payload }.encode();
            for node in &nodes {
                if cx.send(*node, &frame) {
                    reached += 1;
                    self.stats.sent += 1;
                }
            }
        }
        if self.fan_out(topic, message, format, payload) > 0 {
            reached += 1;
        }
        reached
    }

    /// The subscribing peers of `topic`: (node incarnation, name).
    pub(crate) fn peers_for(&self, topic: &str) -> Vec<(NodeId, String)> {
        self.table.nodes_for(topic).filter_map(|n| self.linked.get(n).map(|name| (*n, name.clone()))).collect()
    }

    /// True if `topic` has local subscribers.
    pub(crate) fn has_local(&self, topic: &str) -> bool {
        self.subscribers.contains_key(topic)
    }

    /// Hands a published message to the local subscribers of `topic` that take its type;
    /// returns how many took it.
    fn fan_out(&mut self, topic: &str, message: WireId, format: Format, payload: &[u8]) -> usize {
        self.fan_out_with(topic, message, format, payload, false).0
    }

    /// Like `fan_out`; with `acked`, also the futures that end when each handler ran.
    fn fan_out_with(
        &mut self,
        topic: &str,
        message: WireId,
        format: Format,
        payload: &[u8],
        acked: bool,
    ) -> (usize, Vec<Acked>) {
        let Some(subs) = self.subscribers.get(topic) else { return (0, Vec::new()) };
        let mut delivered = 0;
        let mut acks = Vec::new();
        for sub in subs.values() {
            if sub.message != message {
                continue;
            }
            match (sub.deliver)(format, payload, acked) {
                Ok(ack) => {
                    delivered += 1;
                    acks.extend(ack);
                }
                Err(e) => {
                    tracing::debug!(%topic, error = %e, "a publish did not reach a subscriber");
                    self.stats.undelivered += 1;
                }
            }
        }
        self.stats.delivered += delivered as u64;
        (delivered, acks)
    }

    fn flush(&mut self, cx: &mut Cx<'_>) {
        while let Some(output) = self.table.poll_output() {
            match output {
                Output::Send { to, frame } => {
                    cx.send(to, &BrokerFrame::Subscriptions(frame).encode());
                }
                Output::Broadcast { frame } => {
                    let peers: Vec<NodeId> = self.linked.keys().copied().collect();
                    cx.broadcast(&peers, &BrokerFrame::Subscriptions(frame).encode());
                }
            }
        }
    }
}

/// Tells the delivery service a published message was handled once every local
/// subscriber's handler ran (or the subscriber stopped meanwhile).
fn confirm_when_handled(cx: &mut Cx<'_>, acks: Vec<Acked>, done: HandledFn) {
    cx.node().spawn_call(
        Channel::DELIVERY,
        Box::pin(async move {
            for ack in acks {
                ack.await;
            }
            Some(done(Handled::Done(Vec::new())))
        }),
    );
}

impl Service for BrokerService {
    fn channel(&self) -> Channel {
        Channel::BROKER
    }

    fn version(&self) -> u16 {
        VERSION
    }

    fn handle_link_up(&mut self, cx: &mut Cx<'_>, peer: &PeerInfo) {
        // Another incarnation of the node: the old one's topics go.
        let stale: Vec<NodeId> =
            self.linked.iter().filter(|(id, name)| **name == peer.name && **id != peer.id).map(|(id, _)| *id).collect();
        for old in stale {
            self.linked.remove(&old);
            self.down.remove(&old);
            self.table.handle_peer_down(&old);
            self.causal_departed(cx, old);
        }
        self.linked.insert(peer.id, peer.name.clone());
        self.table.handle_peer_up(peer.id);
        self.flush(cx);
    }

    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError> {
        match BrokerFrame::decode(body).map_err(|e| ServiceFrameError(e.to_string()))? {
            BrokerFrame::Subscriptions(frame) => {
                self.table.handle_frame(&from.id, frame);
                self.flush(cx);
            }
            BrokerFrame::Publish { topic, message, format, payload } => {
                self.fan_out(topic, message, format, payload);
            }
            BrokerFrame::CausalAsk { topic } => {
                let (last_sent, count) = match self.causal.get(topic) {
                    Some(t) => (t.last_sent.get(&from.id).copied().unwrap_or(0), t.group.sent()),
                    None => (0, 0),
                };
                cx.send(from.id, &BrokerFrame::CausalAnswer { topic, last_sent, count }.encode());
            }
            BrokerFrame::CausalAnswer { topic, last_sent, count } => {
                if let Some(t) = self.causal.get_mut(topic) {
                    let ready = t.group.answer(&from.id, last_sent, count);
                    let topic = topic.to_owned();
                    self.causal_deliver(cx, &topic, ready);
                    self.causal_ask(cx, &topic);
                }
            }
        }
        Ok(())
    }

    fn handle_delivered(&mut self, cx: &mut Cx<'_>, d: Delivered, done: HandledFn) {
        if let Some(topic) = d.key.strip_prefix(CAUSAL) {
            let topic = topic.to_owned();
            self.causal_arrived(cx, &topic, d, done);
            return;
        }
        let (_, acks) = self.fan_out_with(&d.key, d.message, d.format, &d.payload, true);
        confirm_when_handled(cx, acks, done);
    }

    fn handle_membership(&mut self, cx: &mut Cx<'_>, event: &MembershipEvent) {
        let m = event.member();
        if m.id == self.node_id {
            return;
        }
        match event {
            // Marked down: its subscribers no longer count (publishes skip it)...
            MembershipEvent::MemberDown(m) => {
                if let Some(name) = self.linked.remove(&m.id) {
                    self.down.insert(m.id, name);
                }
                self.table.handle_peer_down(&m.id);
            }
            // ...until it comes back up (it was alive): its set is asked for again.
            MembershipEvent::MemberUp(m) => {
                if let Some(name) = self.down.remove(&m.id) {
                    self.linked.insert(m.id, name);
                    self.table.handle_peer_up(m.id);
                    self.flush(cx);
                }
            }
            // Gone for good: nothing waits for its causal publishes any more.
            MembershipEvent::MemberLeft(m) | MembershipEvent::MemberRemoved(m) => {
                self.linked.remove(&m.id);
                self.down.remove(&m.id);
                self.table.handle_peer_down(&m.id);
                self.causal_departed(cx, m.id);
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: std::time::Duration) {
        if self.causal_check.is_some_and(|at| at <= now) {
            self.causal_check = None;
            let waiting: Vec<Topic> =
                self.causal.iter().filter(|(_, t)| t.group.held() > 0).map(|(k, _)| k.clone()).collect();
            for topic in waiting {
                self.causal_ask(cx, &topic);
            }
        }
    }

    fn poll_timeout(&self) -> Option<std::time::Duration> {
        self.causal_check
    }

    fn metrics(&self, out: &mut Metrics) {
        let s = self.stats();
        out.gauge("broker_topics", "Topics with local subscribers.", s.topics as f64);
        out.gauge("broker_subscribers", "Local subscriptions.", s.subscribers as f64);
        out.gauge("broker_published_total", "Publishes from this node.", s.published as f64);
        out.gauge("broker_sent_total", "Copies of publishes sent to other nodes.", s.sent as f64);
        out.gauge("broker_delivered_total", "Published messages handed to local subscribers.", s.delivered as f64);
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
