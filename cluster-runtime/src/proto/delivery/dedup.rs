//! Exactly-once de-duplication, pure: the ids of the messages a receiver handled within a
//! window of time (default two minutes), each with a fingerprint of its payload and, for
//! an ask, its reply, so a retry is answered with the first reply instead of running the
//! handler again.
//!
//! Memory is bounded twice: entries older than the window go, and past
//! [`DedupConfig::capacity`] the oldest go first (counted in [`DedupWindow::evicted`], so
//! a promise that no longer holds is visible). The same id with a different payload is an
//! error, never a silent duplicate.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// How long and how many message ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// How long a handled message's id is remembered.
    pub window: Duration,
    /// The most ids remembered at once.
    pub capacity: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self { window: Duration::from_secs(120), capacity: 1_000_000 }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<R> {
    /// Not seen within the window: handle it, then [`DedupWindow::handled`].
    New,
    /// Handled already: do not handle it again; for an ask, answer with this reply.
    Duplicate(Option<R>),
    /// Its first copy is being handled now: answer when it is (or drop a tell).
    InProgress,
}

/// The same message id came with a different payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message id reused with a different payload")]
pub struct IdReused;

#[derive(Debug)]
struct Seen<R> {
    fingerprint: u64,
    at: Duration,
    /// `None` while its handler runs; then `Some(reply)` (`Some(None)` for a tell).
    reply: Option<Option<R>>,
}

/// The ids seen within the window. `K` is the message id, `R` the encoded reply.
#[derive(Debug)]
pub struct DedupWindow<K, R> {
    config: DedupConfig,
    seen: HashMap<K, Seen<R>>,
    /// Ids in the order they were first seen (the order they expire in).
    order: VecDeque<(Duration, K)>,
    evicted: u64,
}

impl<K: Hash + Eq + Clone, R: Clone> DedupWindow<K, R> {
    /// An empty window.
    pub fn new(config: DedupConfig) -> Self {
        Self { config, seen: HashMap::new(), order: VecDeque::new(), evicted: 0 }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True if no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Ids forgotten before their window ended because the capacity was reached.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Message `id` with a payload whose fingerprint is `fingerprint` arrived.
    pub fn check(&mut self, now: Duration, id: &K, fingerprint: u64) -> Result<Verdict<R>, IdReused> {
        self.expire(now);
        if let Some(seen) = self.seen.get(id) {
            if seen.fingerprint != fingerprint {
                return Err(IdReused);
            }
            return Ok(match &seen.reply {
                Some(reply) => Verdict::Duplicate(reply.clone()),
                None => Verdict::InProgress,
            });
        }
        while self.seen.len() >= self.config.capacity {
            let Some((at, oldest)) = self.order.pop_front() else { break };
            // Entries forgotten meanwhile left their place in the order behind.
            if self.seen.get(&oldest).is_some_and(|s| s.at == at) {
                self.seen.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.seen.insert(id.clone(), Seen { fingerprint, at: now, reply: None });
        self.order.push_back((now, id.clone()));
        Ok(Verdict::New)
    }

    /// The handler of message `id` has run; `reply` is an ask's encoded reply (`None` for a
    /// tell). Retries are answered with it until the window ends.
    pub fn handled(&mut self, id: &K, reply: Option<R>) {
        if let Some(seen) = self.seen.get_mut(id) {
            seen.reply = Some(reply);
        }
    }

    /// The handler of message `id` failed before it ran (refused, the actor stopped): a
    /// retry may run it.
    pub fn forget(&mut self, id: &K) {
        if self.seen.get(id).is_some_and(|s| s.reply.is_none()) {
            self.seen.remove(id);
        }
    }

    /// Forgets the ids older than the window.
    pub fn expire(&mut self, now: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_sub(*at) < self.config.window {
                break;
            }
            if let Some((at, id)) = self.order.pop_front() {
                // Forgotten and seen again later: that later entry stays.
                if self.seen.get(&id).is_some_and(|s| s.at == at) {
                    self.seen.remove(&id);
                }
            }
        }
    }

    /// When the next id expires.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.order.front().map(|(at, _)| *at + self.config.window)
    }
}

/// A payload's fingerprint (FNV-1a 64; ids are the identity, the fingerprint only tells a
/// retry from a reuse).
pub fn fingerprint(payload: &[u8]) -> u64 {
    payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn window(capacity: usize) -> DedupWindow<u64, &'static str> {
        DedupWindow::new(DedupConfig { window: 120 * S, capacity })
    }

    #[test]
    fn a_retry_is_answered_with_the_first_reply_not_handled_again() {
        let mut d = window(10);
        let f = fingerprint(b"add 5");
        assert_eq!(d.check(Duration::ZERO, &7, f), Ok(Verdict::New));
        assert_eq!(d.check(S, &7, f), Ok(Verdict::InProgress), "the first copy still runs");
        d.handled(&7, Some("total 5"));
        assert_eq!(d.check(2 * S, &7, f), Ok(Verdict::Duplicate(Some("total 5"))));
        // A tell: nothing to answer with.
        assert_eq!(d.check(2 * S, &8, f), Ok(Verdict::New));
        d.handled(&8, None);
        assert_eq!(d.check(3 * S, &8, f), Ok(Verdict::Duplicate(None)));
    }

    #[test]
    fn the_same_id_with_another_payload_is_an_error() {
        let mut d = window(10);
        d.check(Duration::ZERO, &1, fingerprint(b"a")).expect("new");
        assert_eq!(d.check(S, &1, fingerprint(b"b")), Err(IdReused));
    }

    #[test]
    fn ids_are_forgotten_after_the_window() {
        let mut d = window(10);
        d.check(Duration::ZERO, &1, 1).expect("new");
        d.handled(&1, None);
        d.check(60 * S, &2, 2).expect("new");
        assert_eq!(d.poll_timeout(), Some(120 * S));
        assert_eq!(d.check(119 * S, &1, 1), Ok(Verdict::Duplicate(None)));
        assert_eq!(d.check(120 * S, &1, 1), Ok(Verdict::New), "the window ended: new again");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn memory_is_bounded_and_evictions_are_counted() {
        let mut d = window(3);
        for id in 0..5 {
            d.check(Duration::from_millis(id), &id, id).expect("new");
        }
        assert_eq!(d.len(), 3);
        assert_eq!(d.evicted(), 2);
        assert_eq!(d.check(S, &4, 4), Ok(Verdict::InProgress), "the newest stay");
        assert_eq!(d.check(S, &0, 0), Ok(Verdict::New), "the oldest went first");
    }

    #[test]
    fn a_message_whose_handler_never_ran_may_run_on_a_retry() {
        let mut d = window(3);
        d.check(Duration::ZERO, &1, 1).expect("new");
        d.forget(&1);
        assert_eq!(d.check(S, &1, 1), Ok(Verdict::New));
        d.handled(&1, None);
        d.forget(&1);
        assert_eq!(d.check(S, &1, 1), Ok(Verdict::Duplicate(None)), "handled ones are kept");
    }
}
