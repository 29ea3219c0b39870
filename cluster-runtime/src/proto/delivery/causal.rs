//! Causal delivery within a group (the nodes with subscribers of a topic), pure: vector
//! clocks and a hold-back queue.
//!
//! A member's clock holds, per member, the highest of its messages that the messages
//! delivered here depend on, and its own entry counts what it sent. A message carries its
//! sender's clock as it was when sent (own entry ticked): everything the sender had
//! delivered before sending it *happened before* it. A receiver delivers a message once the
//! sender's previous message to it is delivered and every other member's messages it
//! depends on are delivered here (or known not to be coming here); until then it is held
//! back.
//!
//! Not every member gets every message (a node subscribes late, or is out of a sender's
//! view for a while): each message also carries `prev`, the sender's previous message *to
//! this receiver*, which is what the receiver waits for from the sender itself. A message
//! that depends on a third member's messages the receiver has not seen makes it ask that
//! member ([`CausalGroup::waiting_on`]) which of its messages it sent here last and how many
//! it sent in all ([`CausalGroup::answer`]): once the last one sent here is delivered,
//! nothing up to that count is waited for.
//!
//! A member that leaves is pruned: nothing waits for its messages any more (those that
//! arrived are still delivered in its order), and once none of its is held its entries go.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A vector clock: per member, a count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VClock<N: Ord>(pub BTreeMap<N, u64>);

impl<N: Ord> Default for VClock<N> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<N: Ord + Clone> VClock<N> {
    /// `node`'s count (0 if absent).
    pub fn get(&self, node: &N) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Adds one to `node`'s count.
    pub fn tick(&mut self, node: &N) -> u64 {
        let c = self.0.entry(node.clone()).or_insert(0);
        *c += 1;
        *c
    }

    /// Takes the larger count of each member.
    pub fn merge(&mut self, other: &Self) {
        for (n, c) in &other.0 {
            let mine = self.0.entry(n.clone()).or_insert(0);
            *mine = (*mine).max(*c);
        }
    }

    /// True if every count here is at most the other's (this happened before or equals it).
    pub fn le(&self, other: &Self) -> bool {
        self.0.iter().all(|(n, c)| *c <= other.get(n))
    }

    /// Forgets `node`.
    pub fn prune(&mut self, node: &N) {
        self.0.remove(node);
    }
}

/// A message held back until what it depends on is delivered.
#[derive(Debug)]
struct Held<N: Ord, P> {
    sender: N,
    stamp: VClock<N>,
    prev: u64,
    payload: P,
}

/// A group member's causal state: its clock and the messages it holds back.
#[derive(Debug)]
pub struct CausalGroup<N: Ord, P> {
    me: N,
    /// What this member's messages depend on: every delivered message's stamp merged, and
    /// its own count.
    clock: VClock<N>,
    /// Per sender, the number of the last of its messages delivered here.
    received: BTreeMap<N, u64>,
    /// Per sender, numbers up to which nothing more is coming here (what it sent to others).
    skipped: BTreeMap<N, u64>,
    /// Per sender, an answer waiting for the sender's messages before it to arrive:
    /// (the last it had sent here, its count then).
    pending: BTreeMap<N, (u64, u64)>,
    /// Members that left: nothing waits for them any more.
    departed: std::collections::BTreeSet<N>,
    held: Vec<Held<N, P>>,
    capacity: usize,
}

/// The hold-back queue is full: the message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} messages are held back waiting for what they depend on, the most kept")]
pub struct HoldBackFull(pub usize);

impl<N: Ord + Clone, P> CausalGroup<N, P> {
    /// Member `me`, nothing sent or delivered, holding back at most `capacity` messages.
    pub fn new(me: N, capacity: usize) -> Self {
        Self {
            me,
            clock: VClock::default(),
            received: BTreeMap::new(),
            skipped: BTreeMap::new(),
            pending: BTreeMap::new(),
            departed: Default::default(),
            held: Vec::new(),
            capacity,
        }
    }

    /// The stamp for the next message this member sends (it delivers its own at once).
    pub fn send(&mut self) -> VClock<N> {
        let me = self.me.clone();
        self.clock.tick(&me);
        self.clock.clone()
    }

    /// The clock now.
    pub fn clock(&self) -> &VClock<N> {
        &self.clock
    }

    /// This member's own count: how many messages it sent.
    pub fn sent(&self) -> u64 {
        self.clock.get(&self.me)
    }

    /// Messages held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// A message from `sender` stamped `stamp`; `prev` is the number of the sender's
    /// previous message *to this member* (0: none), so that what it sent only to others
    /// is not waited for. Returns what can be delivered now, in causal order (it, and what
    /// was held back for it). A duplicate returns nothing.
    pub fn receive(&mut self, sender: N, stamp: VClock<N>, prev: u64, payload: P) -> Result<Vec<P>, HoldBackFull> {
        let seq = stamp.get(&sender);
        if seq <= self.received.get(&sender).copied().unwrap_or(0)
            || self.held.iter().any(|h| h.sender == sender && h.stamp.get(&sender) == seq)
        {
            return Ok(Vec::new());
        }
        let held = Held { sender, stamp, prev, payload };
        if !self.deliverable(&held) {
            if self.held.len() >= self.capacity {
                return Err(HoldBackFull(self.held.len()));
            }
            self.held.push(held);
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.deliver(held, &mut out);
        self.release(&mut out);
        Ok(out)
    }

    /// Members a held-back message waits for (beyond what arrived from them): ask each
    /// which of its messages it sent here last, and its count ([`answer`](Self::answer)).
    pub fn waiting_on(&self) -> Vec<N> {
        let mut out: Vec<N> = Vec::new();
        for h in &self.held {
            for (n, c) in &h.stamp.0 {
                if *n != h.sender && *c > self.floor(n) && !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// `node` answered: the last of its messages it sent here is `last_sent`, and it had
    /// sent `count` in all. Once `last_sent` is delivered here, nothing it sent up to
    /// `count` is waited for any more. Returns what that releases.
    pub fn answer(&mut self, node: &N, last_sent: u64, count: u64) -> Vec<P> {
        if self.received.get(node).copied().unwrap_or(0) >= last_sent {
            let skipped = self.skipped.entry(node.clone()).or_insert(0);
            *skipped = (*skipped).max(count);
        } else {
            let (l, c) = self.pending.entry(node.clone()).or_insert((last_sent, count));
            if count > *c {
                (*l, *c) = (last_sent, count);
            }
        }
        let mut out = Vec::new();
        self.release(&mut out);
        out
    }

    /// Member `node` left: nothing waits for its messages any more; those of its messages
    /// that arrived are still delivered in its order. Returns what that releases.
    pub fn prune(&mut self, node: &N) -> Vec<P> {
        self.departed.insert(node.clone());
        self.pending.remove(node);
        let mut out = Vec::new();
        self.release(&mut out);
        out
    }

    /// Forgets a member that left once nothing of it is held (its entries go).
    pub fn forget(&mut self, node: &N) {
        if self.held.iter().any(|h| h.sender == *node) {
            return;
        }
        self.clock.prune(node);
        self.received.remove(node);
        self.skipped.remove(node);
        self.departed.remove(node);
        for h in &mut self.held {
            h.stamp.prune(node);
        }
    }

    /// Up to which of `n`'s numbers nothing more is waited for here.
    fn floor(&self, n: &N) -> u64 {
        if self.departed.contains(n) || *n == self.me {
            return u64::MAX;
        }
        self.received.get(n).copied().unwrap_or(0).max(self.skipped.get(n).copied().unwrap_or(0))
    }

    fn deliverable(&self, h: &Held<N, P>) -> bool {
        self.received.get(&h.sender).copied().unwrap_or(0) >= h.prev
            && h.stamp.0.iter().filter(|(n, _)| **n != h.sender).all(|(n, c)| *c <= self.floor(n))
    }

    fn deliver(&mut self, h: Held<N, P>, out: &mut Vec<P>) {
        let seq = h.stamp.get(&h.sender);
        self.received.insert(h.sender.clone(), seq);
        if let Some(&(last, count)) = self.pending.get(&h.sender) {
            if seq >= last {
                self.pending.remove(&h.sender);
                let skipped = self.skipped.entry(h.sender.clone()).or_insert(0);
                *skipped = (*skipped).max(count);
            }
        }
        let me = self.me.clone();
        let own = self.clock.get(&me);
        self.clock.merge(&h.stamp);
        self.clock.0.insert(me, own);
        out.push(h.payload);
    }

    /// Delivers held-back messages that became deliverable, until none does.
    fn release(&mut self, out: &mut Vec<P>) {
        loop {
            let received = &self.received;
            self.held.retain(|h| h.stamp.get(&h.sender) > received.get(&h.sender).copied().unwrap_or(0));
            let Some(i) = self.held.iter().position(|h| self.deliverable(h)) else { return };
            let h = self.held.swap_remove(i);
            self.deliver(h, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    type Member = CausalGroup<&'static str, &'static str>;

    /// The previous number of `from` in a stream where `to` gets all of `from`'s messages.
    fn prev(from: &str, stamp: &VClock<&'static str>) -> u64 {
        stamp.get(&from) - 1
    }

    #[test]
    fn a_reply_is_held_until_what_it_answers_is_delivered() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let question = a.send();
        assert_eq!(b.receive("a", question.clone(), 0, "question"), Ok(vec!["question"]));
        let answer = b.send();
        // c gets the answer first: held back, then both in causal order.
        assert_eq!(c.receive("b", answer, 0, "answer"), Ok(vec![]));
        assert_eq!(c.held(), 1);
        assert_eq!(c.waiting_on(), vec!["a"]);
        assert_eq!(c.receive("a", question.clone(), 0, "question"), Ok(vec!["question", "answer"]));
        // A duplicate is dropped.
        assert_eq!(c.receive("a", question, 0, "question"), Ok(vec![]));
        assert!(VClock(BTreeMap::from([("a", 1)])).le(c.clock()));
    }

    #[test]
    fn concurrent_messages_are_delivered_as_they_come() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let (x, y) = (a.send(), b.send());
        assert_eq!(c.receive("b", y, 0, "y"), Ok(vec!["y"]));
        assert_eq!(c.receive("a", x, 0, "x"), Ok(vec!["x"]));
    }

    #[test]
    fn what_a_sender_sent_only_to_others_is_not_waited_for() {
        // a sends three messages to b only, then one to both b and c; b answers it.
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        for _ in 0..3 {
            let m = a.send();
            b.receive("a", m.clone(), prev("a", &m), "to b").expect("room");
        }
        let a4 = a.send();
        b.receive("a", a4.clone(), 3, "a4").expect("room");
        let b1 = b.send();
        // c gets b's answer first: it waits for a's 4, not for a's first three.
        assert_eq!(c.receive("b", b1, 0, "b1"), Ok(vec![]));
        assert_eq!(c.receive("a", a4, 0, "a4"), Ok(vec!["a4", "b1"]), "a4 is a's first to c");
    }

    #[test]
    fn a_member_that_sent_nothing_here_releases_what_waited_once_it_says_so() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let a1 = a.send();
        b.receive("a", a1, 0, "a1").expect("room");
        let b1 = b.send();
        assert_eq!(c.receive("b", b1, 0, "b1"), Ok(vec![]));
        assert_eq!(c.waiting_on(), vec!["a"]);
        // a: the last it sent to c is none (0), and it sent 1 in all.
        assert_eq!(c.answer(&"a", 0, 1), vec!["b1"]);
    }

    #[test]
    fn an_answer_waits_for_what_was_sent_here_before_it() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let a1 = a.send();
        b.receive("a", a1.clone(), 0, "a1").expect("room");
        let b1 = b.send();
        assert_eq!(c.receive("b", b1, 0, "b1"), Ok(vec![]));
        // a says it sent 1 here: b1 still waits until a1 arrives.
        assert_eq!(c.answer(&"a", 1, 1), Vec::<&str>::new());
        assert_eq!(c.receive("a", a1, 0, "a1"), Ok(vec!["a1", "b1"]));
    }

    #[test]
    fn a_member_that_left_is_pruned_and_what_waited_for_it_goes_on() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let a1 = a.send();
        b.receive("a", a1, 0, "a1").expect("room");
        let reply = b.send();
        // c never gets a's message (a crashed with it); a is pruned.
        assert_eq!(c.receive("b", reply, 0, "reply"), Ok(vec![]));
        assert_eq!(c.prune(&"a"), vec!["reply"], "b's reply no longer waits for a");
        c.forget(&"a");
        assert_eq!(c.held(), 0);
        assert_eq!(c.clock().get(&"a"), 0, "a's entry is gone");
    }

    #[test]
    fn the_hold_back_queue_is_bounded() {
        let mut a = Member::new("a", 8);
        let mut c = Member::new("c", 1);
        let (_, second, third) = (a.send(), a.send(), a.send());
        c.receive("a", second, 1, "a2").expect("room");
        assert_eq!(c.receive("a", third, 2, "a3"), Err(HoldBackFull(1)));
    }

    /// Many members exchanging messages that depend on each other, each receiver getting
    /// them in a random order: every receiver delivers each message once and never before
    /// one it depends on.
    #[test]
    fn any_arrival_order_respects_causality() {
        for seed in 0..30u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let names = ["a", "b", "c", "d"];
            let mut members: Vec<CausalGroup<&str, (usize, VClock<&str>)>> =
                names.iter().map(|n| CausalGroup::new(*n, 1000)).collect();
            // Rounds: a random member sends (after delivering some of what was sent so far).
            let mut sent: Vec<(&str, VClock<&str>)> = Vec::new();
            for _ in 0..40 {
                let i = rng.random_range(0..names.len());
                for (id, (from, stamp)) in sent.iter().enumerate() {
                    if *from != names[i] && rng.random_bool(0.5) {
                        let p = prev(from, stamp);
                        let _ = members[i].receive(*from, stamp.clone(), p, (id, stamp.clone()));
                    }
                }
                let stamp = members[i].send();
                sent.push((names[i], stamp));
            }
            // A fresh observer gets everything in a random order, some twice.
            let mut observer: CausalGroup<&str, (usize, VClock<&str>)> = CausalGroup::new("z", 1000);
            let mut order: Vec<usize> = (0..sent.len()).chain(0..sent.len() / 4).collect();
            order.shuffle(&mut rng);
            let mut delivered: Vec<(usize, VClock<&str>)> = Vec::new();
            for id in order {
                let (from, stamp) = &sent[id];
                let p = prev(from, stamp);
                delivered.extend(observer.receive(*from, stamp.clone(), p, (id, stamp.clone())).expect("room"));
            }
            assert_eq!(delivered.len(), sent.len(), "each once (seed {seed})");
            for (i, (_, first)) in delivered.iter().enumerate() {
                for (_, then) in &delivered[i + 1..] {
                    assert!(!(then.le(first) && then != first), "delivered before its cause (seed {seed})");
                }
            }
        }
    }
}
