//! Who subscribes to what across the cluster, pure: the broker's routing table.
//!
//! Each node knows its local subscribers per topic, and, per peer, the set of topics that
//! peer has at least one subscriber for. A publish goes once to each node in
//! [`Subscriptions::nodes_for`] and fans out there to [`Subscriptions::local_for`]: one copy
//! per subscribing node on the wire.
//!
//! - A node announces a topic when its first local subscriber arrives and withdraws it when
//!   its last one goes (unsubscribed or stopped); each announcement carries the next number
//!   of the node's subscription version.
//! - A peer that sees a version out of sequence (a lost or reordered frame, a restart)
//!   asks for the whole set, which replaces what it knew. A peer that links up is sent the
//!   whole set; a peer that goes down or leaves takes its topics with it.
//!
//! Topics are strings: the per-message-type topic is the message type's name, named topics
//! are the user's (the service keeps them apart by prefix).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::format::{postcard_exact, Inexact};

/// A topic's name.
pub type Topic = String;

/// The frames nodes exchange about subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionFrame {
    /// The sender now has subscribers for `topic` (`add`) or no longer has any.
    Change {
        /// The topic.
        topic: Topic,
        /// True: subscribed; false: withdrawn.
        add: bool,
        /// The sender's subscription version after the change.
        version: u64,
    },
    /// All the topics the sender has subscribers for, at `version`.
    Full {
        /// The topics.
        topics: BTreeSet<Topic>,
        /// The sender's subscription version.
        version: u64,
    },
    /// Send me your whole set.
    Ask,
}

impl SubscriptionFrame {
    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes a frame; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        postcard_exact(bytes).map_err(|e| match e {
            Inexact::Malformed(detail) => FrameError::Malformed(detail),
            Inexact::Trailing(n) => FrameError::Trailing(n),
        })
    }
}

/// Bytes that are not one subscription frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a frame.
    #[error("malformed subscription frame: {0}")]
    Malformed(String),
    /// A frame followed by more bytes.
    #[error("{0} trailing bytes after a subscription frame")]
    Trailing(usize),
}

/// What the table asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<N> {
    /// Send `frame` to peer `to`.
    Send {
        /// The peer.
        to: N,
        /// The frame.
        frame: SubscriptionFrame,
    },
    /// Send `frame` to every linked peer.
    Broadcast {
        /// The frame.
        frame: SubscriptionFrame,
    },
}

#[derive(Debug, Default)]
struct Peer {
    topics: BTreeSet<Topic>,
    version: u64,
    /// Waiting for its whole set: changes are ignored until it comes.
    asked: bool,
}

/// The routing table of one node. `N` names a peer, `A` a local subscriber.
#[derive(Debug)]
pub struct Subscriptions<N: Ord + Clone, A: Ord + Clone> {
    local: BTreeMap<Topic, BTreeSet<A>>,
    version: u64,
    peers: BTreeMap<N, Peer>,
    out: VecDeque<Output<N>>,
}

impl<N: Ord + Clone, A: Ord + Clone> Default for Subscriptions<N, A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N: Ord + Clone, A: Ord + Clone> Subscriptions<N, A> {
    /// An empty table.
    pub fn new() -> Self {
        Self { local: BTreeMap::new(), version: 0, peers: BTreeMap::new(), out: VecDeque::new() }
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output<N>> {
        self.out.pop_front()
    }

    /// The local subscribers of `topic`.
    pub fn local_for(&self, topic: &str) -> impl Iterator<Item = &A> + '_ {
        self.local.get(topic).into_iter().flatten()
    }

    /// The peers with subscribers for `topic`: each gets one copy of a publish.
    pub fn nodes_for<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a N> + 'a {
        self.peers.iter().filter(|(_, p)| p.topics.contains(topic)).map(|(n, _)| n)
    }

    /// The topics this node has subscribers for.
    pub fn local_topics(&self) -> BTreeSet<Topic> {
        self.local.keys().cloned().collect()
    }

    /// Local actor `actor` subscribes to `topic`.
    pub fn subscribe(&mut self, topic: &str, actor: A) {
        let subscribers = self.local.entry(topic.to_owned()).or_default();
        let first = subscribers.is_empty();
        subscribers.insert(actor);
        if first {
            self.announce(topic, true);
        }
    }

    /// Local actor `actor` unsubscribes from `topic`.
    pub fn unsubscribe(&mut self, topic: &str, actor: &A) {
        let Some(subscribers) = self.local.get_mut(topic) else { return };
        if subscribers.remove(actor) && subscribers.is_empty() {
            self.local.remove(topic);
            self.announce(topic, false);
        }
    }

    /// Local actor `actor` stopped: it leaves every topic.
    pub fn actor_stopped(&mut self, actor: &A) {
        let topics: Vec<Topic> = self.local.iter().filter(|(_, s)| s.contains(actor)).map(|(t, _)| t.clone()).collect();
        for topic in topics {
            self.unsubscribe(&topic, actor);
        }
    }

    /// A link to `peer` came up: it gets this node's whole set, and is asked for its own.
    /// What was known of the peer (a link that came back) stays until its set arrives, so
    /// publishes meanwhile still go to it.
    pub fn handle_peer_up(&mut self, peer: N) {
        self.peers.entry(peer.clone()).or_default().asked = true;
        self.out.push_back(Output::Send { to: peer.clone(), frame: self.full() });
        self.out.push_back(Output::Send { to: peer, frame: SubscriptionFrame::Ask });
    }

    /// `peer` is gone (link down for good, or no longer a member): its topics go.
    pub fn handle_peer_down(&mut self, peer: &N) {
        self.peers.remove(peer);
    }

    /// A frame from `peer`.
    pub fn handle_frame(&mut self, from: &N, frame: SubscriptionFrame) {
        match frame {
            SubscriptionFrame::Ask => self.out.push_back(Output::Send { to: from.clone(), frame: self.full() }),
            SubscriptionFrame::Full { topics, version } => {
                let peer = self.peers.entry(from.clone()).or_default();
                if peer.asked || version >= peer.version {
                    *peer = Peer { topics, version, asked: false };
                }
            }
            SubscriptionFrame::Change { topic, add, version } => {
                let peer = self.peers.entry(from.clone()).or_default();
                if peer.asked {
                    return;
                }
                if version == peer.version + 1 {
                    peer.version = version;
                    if add {
                        peer.topics.insert(topic);
                    } else {
                        peer.topics.remove(&topic);
                    }
                } else if version > peer.version + 1 {
                    // Missed one: the whole set replaces what is known.
                    peer.asked = true;
                    self.out.push_back(Output::Send { to: from.clone(), frame: SubscriptionFrame::Ask });
                }
                // An old change (reordered after a whole set) is already counted.
            }
        }
    }

    fn announce(&mut self, topic: &str, add: bool) {
        self.version += 1;
        let frame = SubscriptionFrame::Change { topic: topic.to_owned(), add, version: self.version };
        self.out.push_back(Output::Broadcast { frame });
    }

    fn full(&self) -> SubscriptionFrame {
        SubscriptionFrame::Full { topics: self.local_topics(), version: self.version }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Table = Subscriptions<&'static str, u32>;

    fn drain(t: &mut Table) -> Vec<Output<&'static str>> {
        std::iter::from_fn(|| t.poll_output()).collect()
    }

    /// Delivers every output of `from` (named `name`) to `to` (broadcasts included).
    fn relay(name: &'static str, from: &mut Table, to: &mut Table) {
        for o in drain(from) {
            match o {
                Output::Send { frame, .. } | Output::Broadcast { frame } => to.handle_frame(&name, frame),
            }
        }
    }

    fn nodes(t: &Table, topic: &str) -> Vec<&'static str> {
        t.nodes_for(topic).copied().collect()
    }

    #[test]
    fn a_topic_is_announced_by_its_first_subscriber_and_withdrawn_by_its_last() {
        let (mut a, mut b) = (Table::new(), Table::new());
        a.handle_peer_up("b");
        b.handle_peer_up("a");
        relay("a", &mut a, &mut b);
        relay("b", &mut b, &mut a);
        a.subscribe("prices", 1);
        a.subscribe("prices", 2);
        relay("a", &mut a, &mut b);
        assert_eq!(nodes(&b, "prices"), vec!["a"], "one copy for node a, however many subscribers");
        assert_eq!(a.local_for("prices").copied().collect::<Vec<_>>(), vec![1, 2]);
        a.unsubscribe("prices", &1);
        relay("a", &mut a, &mut b);
        assert_eq!(nodes(&b, "prices"), vec!["a"], "2 still subscribes");
        a.actor_stopped(&2);
        relay("a", &mut a, &mut b);
        assert!(nodes(&b, "prices").is_empty(), "the last subscriber stopped");
    }

    #[test]
    fn a_peer_that_links_up_learns_the_current_subscriptions() {
        let mut a = Table::new();
        a.subscribe("t1", 1);
        a.subscribe("t2", 1);
        drain(&mut a);
        let mut c = Table::new();
        a.handle_peer_up("c");
        c.handle_peer_up("a");
        relay("a", &mut a, &mut c);
        assert_eq!(nodes(&c, "t1"), vec!["a"]);
        assert_eq!(nodes(&c, "t2"), vec!["a"]);
        // And a peer that goes takes its topics along.
        c.handle_peer_down(&"a");
        assert!(nodes(&c, "t1").is_empty());
    }

    #[test]
    fn a_missed_change_makes_the_peer_ask_for_the_whole_set() {
        let (mut a, mut b) = (Table::new(), Table::new());
        b.handle_peer_up("a");
        drain(&mut b);
        a.handle_peer_up("b");
        relay("a", &mut a, &mut b);
        drain(&mut b);
        a.subscribe("x", 1);
        drain(&mut a); // lost on the way
        a.subscribe("y", 1);
        relay("a", &mut a, &mut b);
        assert!(nodes(&b, "y").is_empty(), "out of sequence: not applied");
        assert_eq!(drain(&mut b), vec![Output::Send { to: "a", frame: SubscriptionFrame::Ask }]);
        a.handle_frame(&"b", SubscriptionFrame::Ask);
        relay("a", &mut a, &mut b);
        assert_eq!((nodes(&b, "x"), nodes(&b, "y")), (vec!["a"], vec!["a"]));
    }

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let frame = SubscriptionFrame::Change { topic: "orders".into(), add: true, version: 7 };
        assert_eq!(SubscriptionFrame::decode(&frame.encode()), Ok(frame));
        assert!(SubscriptionFrame::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn a_link_that_comes_back_keeps_the_peers_topics_until_its_set_arrives() {
        let mut a: Subscriptions<&str, u32> = Subscriptions::new();
        a.handle_peer_up("b");
        a.handle_frame(&"b", SubscriptionFrame::Full { topics: BTreeSet::from(["t".to_owned()]), version: 1 });
        assert_eq!(a.nodes_for("t").collect::<Vec<_>>(), vec![&"b"]);
        // The link drops and comes back: b still counts for t until it says otherwise.
        a.handle_peer_up("b");
        assert_eq!(a.nodes_for("t").collect::<Vec<_>>(), vec![&"b"]);
        a.handle_frame(&"b", SubscriptionFrame::Full { topics: BTreeSet::new(), version: 2 });
        assert_eq!(a.nodes_for("t").count(), 0);
    }
}
