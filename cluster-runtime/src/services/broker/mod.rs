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
use crate::proto::broker::wire::BrokerFrame;
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
}

/// The broker service of one node.
pub(crate) struct BrokerService {
    node_id: NodeId,
    table: Subscriptions<NodeId, SubKey>,
    subscribers: HashMap<Topic, BTreeMap<SubKey, Subscriber>>,
    linked: HashMap<NodeId, String>,
    stats: BrokerStats,
}

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (BrokerService, Arc<()>) {
    let service = BrokerService {
        node_id: i.node_id,
        table: Subscriptions::new(),
        subscribers: HashMap::new(),
        linked: HashMap::new(),
        stats: BrokerStats::default(),
    };
    (service, Arc::new(()))
}

impl BrokerService {
    /// Figures for the API.
    pub(crate) fn stats(&self) -> BrokerStats {
        BrokerStats {
            topics: self.subscribers.len(),
            subscribers: self.subscribers.values().map(BTreeMap::len).sum(),
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
            self.table.handle_peer_down(&old);
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
        }
        Ok(())
    }

    fn handle_delivered(&mut self, cx: &mut Cx<'_>, d: Delivered, done: HandledFn) {
        // Confirmed once every local subscriber's handler ran (or it stopped meanwhile).
        let (_, acks) = self.fan_out_with(&d.key, d.message, d.format, &d.payload, true);
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

    fn handle_membership(&mut self, _: &mut Cx<'_>, event: &MembershipEvent) {
        match event {
            MembershipEvent::MemberDown(m) | MembershipEvent::MemberLeft(m) | MembershipEvent::MemberRemoved(m)
                if m.id != self.node_id =>
            {
                self.linked.remove(&m.id);
                self.table.handle_peer_down(&m.id);
            }
            _ => {}
        }
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
