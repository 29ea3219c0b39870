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

/// Point-to-point causal delivery, one node's side of it, pure: a message to an actor is
/// handled there after every message to that actor that *happened before* it was sent.
///
/// The node keeps one clock for all its point-to-point causal sends ([`send`](Self::send)
/// ticks its own entry; a delivered message's stamp is merged in), so causality is tracked
/// per node: conservative within a node. Messages from one sender to one actor arrive in
/// the order they were sent (an ordered, exactly-once stream carries them), so a message
/// only waits for *other* senders' messages to its actor: for each member `n` in its stamp,
/// every message `n` sent to that actor with a number up to the stamp's entry must have
/// been delivered first. The receiver knows what it delivered from `n`; for the rest it
/// asks `n` ([`waiting_on`](Self::waiting_on)), which answers with the numbers of its
/// messages to that actor, up to the one asked about, that are not settled yet
/// ([`unsettled`](Self::unsettled)): the others were delivered (or never will be), so
/// they are not waited for; for each of these, the receiver waits until it is delivered
/// here, or until a later answer no longer lists it.
///
/// `K` names a destination actor, `N` a member (a node incarnation), `P` what is held.
#[derive(Debug)]
pub struct CausalSends<N: Ord, K, P> {
    me: N,
    clock: VClock<N>,
    /// Sender side: per destination, the numbers of this member's messages not settled.
    unsettled: std::collections::HashMap<K, std::collections::BTreeSet<u64>>,
    /// Receiver side: per local destination, what was delivered and what is held.
    receiving: std::collections::HashMap<K, Receiving<N, P>>,
    /// Members that left: nothing waits for their messages any more.
    departed: std::collections::BTreeSet<N>,
    held: usize,
    capacity: usize,
}

/// A member's answer about its messages to one destination: up to `covers`, those not
/// settled when it answered are `unsettled` (ascending); no other one is waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    covers: u64,
    unsettled: Vec<u64>,
}

/// What one destination received, per sender, and what it holds back.
#[derive(Debug)]
struct Receiving<N: Ord, P> {
    /// The number of the last message delivered from each sender.
    received: BTreeMap<N, u64>,
    /// Each sender's latest answer about its messages not settled.
    known: BTreeMap<N, Known>,
    /// Held back, per sender, in the order they came (which is the order they were sent).
    queues: BTreeMap<N, std::collections::VecDeque<(VClock<N>, P)>>,
}

impl<N: Ord, P> Default for Receiving<N, P> {
    fn default() -> Self {
        Self { received: BTreeMap::new(), known: BTreeMap::new(), queues: BTreeMap::new() }
    }
}

impl<N: Ord, P> Receiving<N, P> {
    /// Whether every message from `n` to this destination numbered up to `c` is delivered
    /// (`None`: not known without asking `n`).
    fn done_up_to(&self, n: &N, c: u64) -> Option<bool> {
        let received = self.received.get(n).copied().unwrap_or(0);
        if c <= received {
            return Some(true);
        }
        let known = self.known.get(n).filter(|k| k.covers >= c)?;
        let last = known.unsettled.iter().take_while(|x| **x <= c).last();
        Some(last.is_none_or(|l| *l <= received))
    }
}

impl<N: Ord + Clone, K: Eq + std::hash::Hash + Clone, P> CausalSends<N, K, P> {
    /// Member `me`, nothing sent or received, holding back at most `capacity` messages.
    pub fn new(me: N, capacity: usize) -> Self {
        Self {
            me,
            clock: VClock::default(),
            unsettled: Default::default(),
            receiving: Default::default(),
            departed: Default::default(),
            held: 0,
            capacity,
        }
    }

    /// The stamp of this member's next message, to `to`; its number (the stamp's own
    /// entry) stays unsettled until [`settled`](Self::settled).
    pub fn send(&mut self, to: &K) -> VClock<N> {
        let me = self.me.clone();
        let number = self.clock.tick(&me);
        self.unsettled.entry(to.clone()).or_default().insert(number);
        self.clock.clone()
    }

    /// The clock now.
    pub fn clock(&self) -> &VClock<N> {
        &self.clock
    }

    /// Messages held back now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Destinations this member keeps what they received for.
    pub fn receivers(&self) -> usize {
        self.receiving.len()
    }

    /// Message `number` to `to` will not be delivered anywhere any more, or was: nothing
    /// waits for it. Returns what that releases here (`to` may be local).
    pub fn settled(&mut self, to: &K, number: u64) -> Vec<P> {
        if let Some(set) = self.unsettled.get_mut(to) {
            set.remove(&number);
            if set.is_empty() {
                self.unsettled.remove(to);
            }
        }
        self.release(to)
    }

    /// The answer to a member asking about this member's messages to `to` up to `up_to`:
    /// the numbers not settled, at most `most` of them, and how far the answer goes (below
    /// the first number left out, if any was).
    pub fn unsettled(&self, to: &K, up_to: u64, most: usize) -> (u64, Vec<u64>) {
        let Some(set) = self.unsettled.get(to) else { return (up_to, Vec::new()) };
        let mut listed: Vec<u64> = set.range(..=up_to).take(most + 1).copied().collect();
        if listed.len() > most {
            let first_left_out = listed.pop().unwrap_or(1);
            return (first_left_out - 1, listed);
        }
        (up_to, listed)
    }

    /// A message for local destination `to` from `from`, stamped `stamp`. `from`'s
    /// messages to `to` must come in the order they were sent, each once. Returns what can
    /// be delivered now, in causal order; a message that would be held while the hold-back
    /// queue is full is given back.
    pub fn receive(&mut self, to: &K, from: N, stamp: VClock<N>, payload: P) -> Result<Vec<P>, (HoldBackFull, P)> {
        let r = self.receiving.entry(to.clone()).or_default();
        if r.queues.get(&from).is_none_or(|q| q.is_empty()) && self.deliverable(to, &from, &stamp) {
            let mut out = Vec::new();
            self.deliver(to, from, stamp, payload, &mut out);
            out.extend(self.release(to));
            return Ok(out);
        }
        if self.held >= self.capacity {
            return Err((HoldBackFull(self.held), payload));
        }
        self.held += 1;
        self.receiving.entry(to.clone()).or_default().queues.entry(from).or_default().push_back((stamp, payload));
        Ok(Vec::new())
    }

    /// What held-back messages wait for that this member cannot tell on its own: per
    /// destination, the member to ask and the number to ask up to
    /// ([`unsettled`](Self::unsettled) there, then [`answer`](Self::answer) here).
    pub fn waiting_on(&self) -> Vec<(K, N, u64)> {
        let mut out: Vec<(K, N, u64)> = Vec::new();
        for (to, r) in &self.receiving {
            for (from, q) in &r.queues {
                let Some((stamp, _)) = q.front() else { continue };
                for (n, c) in &stamp.0 {
                    if n == from || *n == self.me || self.departed.contains(n) || r.done_up_to(n, *c) == Some(true) {
                        continue;
                    }
                    match out.iter_mut().find(|(k, m, _)| k == to && m == n) {
                        Some(ask) => ask.2 = ask.2.max(*c),
                        None => out.push((to.clone(), n.clone(), *c)),
                    }
                }
            }
        }
        out
    }

    /// Member `from` answered about its messages to `to`: up to `covers`, those not settled
    /// are `unsettled`. Returns what that releases.
    pub fn answer(&mut self, to: &K, from: &N, covers: u64, mut unsettled: Vec<u64>) -> Vec<P> {
        let Some(r) = self.receiving.get_mut(to) else { return Vec::new() };
        let received = r.received.get(from).copied().unwrap_or(0);
        unsettled.sort_unstable();
        unsettled.retain(|x| *x > received && *x <= covers);
        // Numbers only ever settle: a newer answer that goes as far is at least as exact.
        if r.known.get(from).is_none_or(|k| k.covers <= covers) {
            r.known.insert(from.clone(), Known { covers, unsettled });
        }
        self.release(to)
    }

    /// Member `node` left: nothing waits for its messages any more (those that arrived are
    /// still delivered in its order), and its clock entry goes. Returns what that releases,
    /// per destination.
    pub fn prune(&mut self, node: &N) -> Vec<(K, P)> {
        self.departed.insert(node.clone());
        self.clock.prune(node);
        let mut out = Vec::new();
        let keys: Vec<K> = self.receiving.keys().cloned().collect();
        for to in keys {
            if let Some(r) = self.receiving.get_mut(&to) {
                r.known.remove(node);
                if r.queues.get(node).is_none_or(|q| q.is_empty()) {
                    r.received.remove(node);
                }
            }
            out.extend(self.release(&to).into_iter().map(|p| (to.clone(), p)));
        }
        out
    }

    /// Destination `to` is not here (any more): what this member knew about what it
    /// received is forgotten, and what was held for it is returned (to be refused where
    /// it is not).
    pub fn reset(&mut self, to: &K) -> Vec<P> {
        let Some(r) = self.receiving.remove(to) else { return Vec::new() };
        let mut out = Vec::new();
        for (_, q) in r.queues {
            self.held -= q.len();
            out.extend(q.into_iter().map(|(_, p)| p));
        }
        out
    }

    fn deliverable(&self, to: &K, from: &N, stamp: &VClock<N>) -> bool {
        let r = self.receiving.get(to);
        stamp.0.iter().filter(|(n, _)| *n != from).all(|(n, c)| {
            if self.departed.contains(n) {
                return true;
            }
            if *n == self.me {
                // This member's own messages to `to`: it knows which are not settled.
                let received = r.and_then(|r| r.received.get(n)).copied().unwrap_or(0);
                let last = self.unsettled.get(to).and_then(|set| set.range(..=*c).next_back());
                return last.is_none_or(|l| *l <= received);
            }
            r.and_then(|r| r.done_up_to(n, *c)).unwrap_or(false)
        })
    }

    fn deliver(&mut self, to: &K, from: N, stamp: VClock<N>, payload: P, out: &mut Vec<P>) {
        let seq = stamp.get(&from);
        let r = self.receiving.entry(to.clone()).or_default();
        if let Some(known) = r.known.get_mut(&from) {
            known.unsettled.retain(|x| *x > seq);
        }
        let received = r.received.entry(from).or_insert(0);
        *received = (*received).max(seq);
        let me = self.me.clone();
        let own = self.clock.get(&me);
        self.clock.merge(&stamp);
        self.clock.0.insert(me, own);
        for departed in &self.departed {
            self.clock.0.remove(departed);
        }
        out.push(payload);
    }

    /// Delivers the held-back messages for `to` that became deliverable, until none does.
    fn release(&mut self, to: &K) -> Vec<P> {
        let mut out = Vec::new();
        loop {
            let Some(r) = self.receiving.get(to) else { return out };
            let ready = r.queues.iter().find_map(|(from, q)| {
                let (stamp, _) = q.front()?;
                self.deliverable(to, from, stamp).then(|| from.clone())
            });
            let Some(from) = ready else { return out };
            let Some(r) = self.receiving.get_mut(to) else { return out };
            let Some(q) = r.queues.get_mut(&from) else { return out };
            let Some((stamp, payload)) = q.pop_front() else { return out };
            if q.is_empty() {
                r.queues.remove(&from);
            }
            self.held -= 1;
            self.deliver(to, from, stamp, payload, &mut out);
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

    type Node = CausalSends<&'static str, &'static str, &'static str>;

    #[test]
    fn an_answer_to_an_actor_waits_for_the_question_sent_to_it_first() {
        let (mut a, mut b, mut c) = (Node::new("a", 8), Node::new("b", 8), Node::new("c", 8));
        // a tells c's actor the question, then b's actor; b's actor answers to c's actor.
        let to_c = a.send(&"log");
        let to_b = a.send(&"responder");
        assert_eq!(b.receive(&"responder", "a", to_b, "question"), Ok(vec!["question"]));
        let answer = b.send(&"log");
        assert_eq!(c.receive(&"log", "b", answer, "answer"), Ok(vec![]), "held: a's message may be on its way");
        assert_eq!(c.waiting_on(), vec![("log", "a", 2)]);
        // a: of its messages to "log" up to 2, number 1 is not settled.
        let (covers, unsettled) = a.unsettled(&"log", 2, 64);
        assert_eq!((covers, unsettled.clone()), (2, vec![1]));
        assert_eq!(c.answer(&"log", &"a", covers, unsettled), Vec::<&str>::new());
        assert_eq!(c.receive(&"log", "a", to_c, "question"), Ok(vec!["question", "answer"]));
        assert_eq!(c.held(), 0);
    }

    #[test]
    fn what_a_member_sent_elsewhere_is_not_waited_for_once_it_says_so() {
        let (mut a, mut b, mut c) = (Node::new("a", 8), Node::new("b", 8), Node::new("c", 8));
        let q = a.send(&"responder");
        b.receive(&"responder", "a", q, "question").expect("room");
        let answer = b.send(&"log");
        assert_eq!(c.receive(&"log", "b", answer, "answer"), Ok(vec![]));
        let (covers, unsettled) = a.unsettled(&"log", 1, 64);
        assert_eq!(c.answer(&"log", &"a", covers, unsettled), vec!["answer"]);
        // A later message of b's needs no new question to a.
        let again = b.send(&"log");
        assert_eq!(c.receive(&"log", "b", again, "again"), Ok(vec!["again"]));
    }

    #[test]
    fn a_message_settled_meanwhile_releases_what_waited_on_the_answer() {
        let (mut a, mut b, mut c) = (Node::new("a", 8), Node::new("b", 8), Node::new("c", 8));
        let _lost = a.send(&"log");
        let q = a.send(&"responder");
        b.receive(&"responder", "a", q, "question").expect("room");
        let answer = b.send(&"log");
        assert_eq!(c.receive(&"log", "b", answer, "answer"), Ok(vec![]));
        let (covers, unsettled) = a.unsettled(&"log", 2, 64);
        assert_eq!(c.answer(&"log", &"a", covers, unsettled), Vec::<&str>::new());
        // The message never comes here (it expired, or went where the actor is now): once
        // a settles it, its next answer releases the wait.
        assert!(a.settled(&"log", 1).is_empty());
        assert_eq!(c.waiting_on(), vec![("log", "a", 2)]);
        let (covers, unsettled) = a.unsettled(&"log", 2, 64);
        assert_eq!(c.answer(&"log", &"a", covers, unsettled), vec!["answer"]);
    }

    #[test]
    fn a_local_message_not_yet_handed_over_holds_back_what_depends_on_it() {
        let (mut a, mut b) = (Node::new("a", 8), Node::new("b", 8));
        // a sends to its own actor (queued, not handed over yet), then asks b.
        let local = a.send(&"mine");
        let q = a.send(&"responder");
        b.receive(&"responder", "a", q, "question").expect("room");
        let answer = b.send(&"mine");
        assert_eq!(a.receive(&"mine", "b", answer, "answer"), Ok(vec![]));
        assert!(a.waiting_on().is_empty(), "a knows its own messages");
        assert_eq!(a.receive(&"mine", "a", local, "local"), Ok(vec!["local", "answer"]));
    }

    #[test]
    fn later_messages_of_a_sender_stay_behind_its_held_one() {
        let (mut a, mut b, mut c) = (Node::new("a", 8), Node::new("b", 8), Node::new("c", 8));
        let q = a.send(&"responder");
        b.receive(&"responder", "a", q, "question").expect("room");
        let (first, second) = (b.send(&"log"), b.send(&"log"));
        assert_eq!(c.receive(&"log", "b", first, "first"), Ok(vec![]));
        assert_eq!(c.receive(&"log", "b", second, "second"), Ok(vec![]), "its second waits behind its first");
        assert_eq!(c.held(), 2);
        assert_eq!(c.answer(&"log", &"a", 1, Vec::new()), vec!["first", "second"]);
    }

    #[test]
    fn a_departed_member_is_not_waited_for_and_a_moved_actor_gives_back_what_it_held() {
        let (mut a, mut b, mut c) = (Node::new("a", 8), Node::new("b", 8), Node::new("c", 8));
        let q = a.send(&"responder");
        b.receive(&"responder", "a", q, "question").expect("room");
        let (x, y) = (b.send(&"log"), b.send(&"other"));
        assert_eq!(c.receive(&"log", "b", x, "x"), Ok(vec![]));
        assert_eq!(c.receive(&"other", "b", y, "y"), Ok(vec![]));
        assert_eq!(c.reset(&"other"), vec!["y"], "the actor left: what it held goes back");
        assert_eq!(c.held(), 1);
        assert_eq!(c.prune(&"a"), vec![("log", "x")]);
        assert_eq!(c.clock().get(&"a"), 0, "a's entry is gone");
        assert!(c.waiting_on().is_empty());
    }

    #[test]
    fn the_point_to_point_hold_back_queue_is_bounded() {
        let (mut a, mut b) = (Node::new("a", 8), Node::new("b", 1));
        let q = a.send(&"responder");
        let (x, y) = (b.send(&"x"), b.send(&"y"));
        let _ = q;
        let mut c = Node::new("c", 1);
        // Both depend on nothing c lacks but come from b after a's unknown message.
        let mut stamp = x.clone();
        stamp.0.insert("a", 1);
        assert_eq!(c.receive(&"log", "b", stamp.clone(), "x"), Ok(vec![]));
        stamp.0.insert("b", 2);
        assert_eq!(c.receive(&"log", "b", stamp, "y"), Err((HoldBackFull(1), "y")));
        let _ = y;
    }

    /// Members sending to actors on each other (and on themselves), messages of one sender
    /// to one actor in order but everything else interleaved at random, answers and
    /// settlements late: every message is delivered once, and no actor handles a message
    /// before one to it that happened before it.
    #[test]
    fn point_to_point_any_interleaving_respects_causality() {
        use std::collections::{HashMap, VecDeque};
        for seed in 0..40u64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let names = ["a", "b", "c", "d"];
            let actors = ["a0", "a1", "b0", "c0", "c1", "d0"];
            let host = |actor: &str| names.iter().position(|n| actor.starts_with(n)).expect("host");
            let mut nodes: Vec<CausalSends<&str, &str, usize>> =
                names.iter().map(|n| CausalSends::new(*n, 10_000)).collect();
            // (sender, actor) → FIFO of message ids; every message's (sender, actor, stamp).
            let mut channels: HashMap<(usize, &str), VecDeque<usize>> = HashMap::new();
            let mut msgs: Vec<(usize, &str, VClock<&str>)> = Vec::new();
            let mut settlements: Vec<usize> = Vec::new();
            // Answers on their way: (asker, destination, answering member, answer).
            type Answer = (usize, &'static str, usize, (u64, Vec<u64>));
            let mut answers: Vec<Answer> = Vec::new();
            let mut delivered: HashMap<&str, Vec<usize>> = HashMap::new();
            let mut record = |to: &'static str, ids: Vec<usize>, settlements: &mut Vec<usize>| {
                for id in ids {
                    delivered.entry(to).or_default().push(id);
                    settlements.push(id);
                }
            };
            let mut sends = 0;
            for step in 0.. {
                let held: usize = nodes.iter().map(|n| n.held()).sum();
                assert!(step < 100_000, "stuck (seed {seed}): {held} held");
                let busy = !channels.values().all(VecDeque::is_empty) || !settlements.is_empty() || !answers.is_empty();
                let asks: Vec<(usize, &str, usize, u64)> = (0..names.len())
                    .flat_map(|i| {
                        let me = &nodes[i];
                        me.waiting_on()
                            .into_iter()
                            .map(move |(k, n, up)| (i, k, names.iter().position(|x| *x == n).expect("member"), up))
                    })
                    .collect();
                if sends >= 120 && !busy && asks.is_empty() {
                    break;
                }
                match rng.random_range(0..10) {
                    0..=2 if sends < 120 => {
                        let i = rng.random_range(0..names.len());
                        let to = actors[rng.random_range(0..actors.len())];
                        let stamp = nodes[i].send(&to);
                        channels.entry((i, to)).or_default().push_back(msgs.len());
                        msgs.push((i, to, stamp));
                        sends += 1;
                    }
                    0..=5 => {
                        let open: Vec<(usize, &str)> =
                            channels.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
                        if let Some(&(i, to)) = open.get(rng.random_range(0..open.len().max(1))) {
                            let id = channels.get_mut(&(i, to)).and_then(VecDeque::pop_front).expect("queued");
                            let stamp = msgs[id].2.clone();
                            let out = nodes[host(to)].receive(&to, names[i], stamp, id).expect("room");
                            record(to, out, &mut settlements);
                        }
                    }
                    6 | 7 if !settlements.is_empty() => {
                        let id = settlements.swap_remove(rng.random_range(0..settlements.len()));
                        let (i, to, stamp) = &msgs[id];
                        let out = nodes[*i].settled(to, stamp.get(&names[*i]));
                        record(to, out, &mut settlements);
                    }
                    _ => {
                        if !answers.is_empty() && rng.random_bool(0.5) {
                            let (i, to, n, (covers, unsettled)) =
                                answers.swap_remove(rng.random_range(0..answers.len()));
                            let out = nodes[i].answer(&to, &names[n], covers, unsettled);
                            record(to, out, &mut settlements);
                        } else if let Some(&(i, to, n, up)) = asks.get(rng.random_range(0..asks.len().max(1))) {
                            answers.push((i, to, n, nodes[n].unsettled(&to, up, 3)));
                        }
                    }
                }
            }
            let count: usize = delivered.values().map(Vec::len).sum();
            assert_eq!(count, msgs.len(), "each delivered once (seed {seed})");
            for (to, order) in &delivered {
                for (i, first) in order.iter().enumerate() {
                    for then in &order[i + 1..] {
                        let (a, b) = (&msgs[*first].2, &msgs[*then].2);
                        assert!(!(b.le(a) && b != a), "{to} handled {then} after {first}, its effect (seed {seed})");
                    }
                }
            }
        }
    }
}
