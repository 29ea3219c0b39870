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
//! A member that joins late (a node that subscribes to a topic while messages flow) never
//! gets the messages sent before it joined. Their senders tell it where its part starts: a
//! member's first message to it is marked (`first`), and a member it waits for without
//! having heard from it is asked ([`CausalGroup::unknown`], answered with
//! [`CausalGroup::raise`]). What a sender sent before that counts as delivered.
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
    /// Members whose part of the group's messages is known to start where the clock says
    /// (a message came from them, or they said where their part starts).
    known: std::collections::BTreeSet<N>,
}

/// The hold-back queue is full: the message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} messages are held back waiting for what they depend on, the most kept")]
pub struct HoldBackFull(pub usize);

impl<N: Ord + Clone, P> CausalGroup<N, P> {
    /// Member `me`, nothing sent or delivered, holding back at most `capacity` messages.
    pub fn new(me: N, capacity: usize) -> Self {
        Self { me, clock: VClock::default(), held: Vec::new(), capacity, dropped: 0, known: Default::default() }
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

    /// Like [`receive`](Self::receive), for the first message `sender` sends to this
    /// member: what it sent before was not for this member, and counts as delivered.
    pub fn receive_first(&mut self, sender: N, stamp: VClock<N>, payload: P) -> Result<Vec<P>, HoldBackFull> {
        let before = stamp.get(&sender).saturating_sub(1);
        let mut out = self.raise(&sender, before);
        out.extend(self.receive(sender, stamp, payload)?);
        Ok(out)
    }

    /// Member `node`'s messages up to `floor` will never come here (sent before this
    /// member joined, or not to it): they count as delivered. Returns what that releases.
    pub fn raise(&mut self, node: &N, floor: u64) -> Vec<P> {
        self.known.insert(node.clone());
        if floor > self.clock.get(node) {
            self.clock.0.insert(node.clone(), floor);
        }
        let mut out = Vec::new();
        self.release(&mut out);
        out
    }

    /// Members a held-back message waits for that this member has heard nothing from: ask
    /// each where its part starts, and [`raise`](Self::raise) with the answer.
    pub fn unknown(&self) -> Vec<N> {
        let mut out: Vec<N> = Vec::new();
        for (sender, stamp, _) in &self.held {
            for (n, c) in &stamp.0 {
                if n != sender && *n != self.me && !self.known.contains(n) && *c > self.clock.get(n) && !out.contains(n)
                {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// A message from `sender` stamped `stamp`: returns what can be delivered now, in
    /// causal order (it, and what was held back for it). A duplicate returns nothing.
    pub fn receive(&mut self, sender: N, stamp: VClock<N>, payload: P) -> Result<Vec<P>, HoldBackFull> {
        self.known.insert(sender.clone());
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
        self.known.remove(node);
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

    #[test]
    fn a_late_member_starts_where_each_sender_says() {
        // a and b exchange messages before c joins; c gets only what comes after.
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        for _ in 0..3 {
            let m = a.send();
            b.receive("a", m, "old").expect("room");
        }
        let _ = b.send();
        // a's next message is its first to c; b's reply to it depends on a's 4 and b's 1.
        let a4 = a.send();
        b.receive("a", a4.clone(), "a4").expect("room");
        let b2 = b.send();
        // The reply arrives first, marked as b's first to c: it waits for a's 4 only.
        assert_eq!(c.receive_first("b", b2, "b2"), Ok(vec![]));
        assert_eq!(c.unknown(), vec!["a"], "c must ask a where its part starts");
        assert_eq!(c.receive_first("a", a4, "a4"), Ok(vec!["a4", "b2"]));
        assert!(c.unknown().is_empty());
    }

    #[test]
    fn a_sender_that_says_nothing_was_for_this_member_releases_what_waited() {
        let (mut a, mut b, mut c) = (Member::new("a", 8), Member::new("b", 8), Member::new("c", 8));
        let a1 = a.send();
        b.receive("a", a1, "a1").expect("room");
        let b1 = b.send();
        assert_eq!(c.receive_first("b", b1, "b1"), Ok(vec![]));
        assert_eq!(c.unknown(), vec!["a"]);
        // a answers: nothing it sent so far was for c.
        assert_eq!(c.raise(&"a", 1), vec!["b1"]);
    }
}
