//! Causal delivery within a group (the subscribers of a topic, where every member gets
//! every message), pure: vector clocks and a hold-back queue.
//!
//! A node's clock counts, per member, the group's messages from that member it has
//! delivered, and its own entry counts what it sent. A message carries its sender's clock
//! as it was when sent (own entry ticked): everything the sender had delivered before
//! sending it *happened before* it. A receiver delivers a message from `j` once it is the
//! next from `j` (`stamp[j] == delivered[j] + 1`) and everything it depends on is delivered
//! (`stamp[k] <= delivered[k]` for every other `k`); until then it is held back.
//!
//! A member that leaves is pruned: its entry goes from the clock and from every held
//! stamp (what depended on it no longer waits), and messages of its held back here are
//! dropped (what came before them from it will never come); both are counted.

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

/// A group member's causal state: its clock and the messages it holds back.
#[derive(Debug)]
pub struct CausalGroup<N: Ord, P> {
    me: N,
    clock: VClock<N>,
    held: Vec<(N, VClock<N>, P)>,
    capacity: usize,
    dropped: u64,
}

/// The hold-back queue is full: the message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} messages are held back waiting for what they depend on, the most kept")]
pub struct HoldBackFull(pub usize);

impl<N: Ord + Clone, P> CausalGroup<N, P> {
    /// Member `me`, nothing sent or delivered, holding back at most `capacity` messages.
    pub fn new(me: N, capacity: usize) -> Self {
        Self { me, clock: VClock::default(), held: Vec::new(), capacity, dropped: 0 }
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

    /// Messages held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Held-back messages dropped because their sender left.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A message from `sender` stamped `stamp`: returns what can be delivered now, in
    /// causal order (it, and what was held back for it). A duplicate returns nothing.
    pub fn receive(&mut self, sender: N, stamp: VClock<N>, payload: P) -> Result<Vec<P>, HoldBackFull> {
        if stamp.get(&sender) <= self.clock.get(&sender) {
            return Ok(Vec::new());
        }
        if !self.deliverable(&sender, &stamp) {
            if self.held.len() >= self.capacity {
                return Err(HoldBackFull(self.held.len()));
            }
            self.held.push((sender, stamp, payload));
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        self.deliver(&sender, payload, &mut out);
        self.release(&mut out);
        Ok(out)
    }

    /// Member `node` left: it no longer counts, and nothing waits for it. Returns what
    /// that releases.
    pub fn prune(&mut self, node: &N) -> Vec<P> {
        self.clock.prune(node);
        let before = self.held.len();
        self.held.retain(|(sender, _, _)| sender != node);
        self.dropped += (before - self.held.len()) as u64;
        for (_, stamp, _) in &mut self.held {
            stamp.prune(node);
        }
        let mut out = Vec::new();
        self.release(&mut out);
        out
    }

    fn deliverable(&self, sender: &N, stamp: &VClock<N>) -> bool {
        stamp.get(sender) == self.clock.get(sender) + 1
            && stamp.0.iter().filter(|(n, _)| *n != sender).all(|(n, c)| *c <= self.clock.get(n))
    }

    fn deliver(&mut self, sender: &N, payload: P, out: &mut Vec<P>) {
        self.clock.tick(sender);
        out.push(payload);
    }

    /// Delivers held-back messages that became deliverable, until none does.
    fn release(&mut self, out: &mut Vec<P>) {
        loop {
            // Duplicates held back meanwhile go.
            let clock = &self.clock;
            self.held.retain(|(sender, stamp, _)| stamp.get(sender) > clock.get(sender));
            let Some(i) = self.held.iter().position(|(s, stamp, _)| self.deliverable(s, stamp)) else { return };
            let (sender, _, payload) = self.held.swap_remove(i);
            self.deliver(&sender, payload, out);
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

    #[test]
    fn a_reply_is_held_until_what_it_answers_is_delivered() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let question = a.send();
        assert_eq!(b.receive("a", question.clone(), "question"), Ok(vec!["question"]));
        let answer = b.send();
        // c gets the answer first: held back, then both in causal order.
        assert_eq!(c.receive("b", answer, "answer"), Ok(vec![]));
        assert_eq!(c.held(), 1);
        assert_eq!(c.receive("a", question.clone(), "question"), Ok(vec!["question", "answer"]));
        // A duplicate is dropped.
        assert_eq!(c.receive("a", question, "question"), Ok(vec![]));
        assert!(VClock(BTreeMap::from([("a", 1)])).le(c.clock()));
    }

    #[test]
    fn concurrent_messages_are_delivered_as_they_come() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let (x, y) = (a.send(), b.send());
        assert_eq!(c.receive("b", y, "y"), Ok(vec!["y"]));
        assert_eq!(c.receive("a", x, "x"), Ok(vec!["x"]));
    }

    #[test]
    fn a_member_that_left_is_pruned_and_what_waited_for_it_goes_on() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let first = a.send();
        let second = a.send();
        b.receive("a", first, "a1").expect("room");
        b.receive("a", second.clone(), "a2").expect("room");
        let reply = b.send();
        // c missed a's first message; a leaves before it is resent.
        assert_eq!(c.receive("a", second, "a2"), Ok(vec![]));
        assert_eq!(c.receive("b", reply, "reply"), Ok(vec![]));
        assert_eq!(c.prune(&"a"), vec!["reply"], "b's reply no longer waits for a");
        assert_eq!(c.dropped(), 1, "a's second message can never be delivered in order");
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn the_hold_back_queue_is_bounded() {
        let mut a = Member::new("a", 8);
        let mut c = Member::new("c", 1);
        let (_, second, third) = (a.send(), a.send(), a.send());
        c.receive("a", second, "a2").expect("room");
        assert_eq!(c.receive("a", third, "a3"), Err(HoldBackFull(1)));
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
            // Rounds: a random member sends (after delivering everything sent so far to it).
            let mut sent: Vec<(&str, VClock<&str>)> = Vec::new();
            for _ in 0..40 {
                let i = rng.random_range(0..names.len());
                for (id, (from, stamp)) in sent.iter().enumerate() {
                    if *from != names[i] && rng.random_bool(0.5) {
                        let _ = members[i].receive(*from, stamp.clone(), (id, stamp.clone()));
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
                delivered.extend(observer.receive(*from, stamp.clone(), (id, stamp.clone())).expect("room"));
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
