//! Recording what happened to each message, and checking the record, in the spirit of
//! Jepsen's total-queue checker: every message that had to arrive arrived, nothing arrived
//! twice (when that matters), nothing arrived that was never sent, and each sender's
//! messages arrived in the order they were sent (when that matters).
//!
//! The [`History`] is cheap to clone and safe to share between the test and the actors
//! that receive messages; [`check`] is a pure function over its events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// One observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `id` was sent on `stream` (a sender, or a sender-receiver pair).
    Sent {
        /// The ordering scope.
        stream: String,
        /// The message id, unique in the history.
        id: u64,
    },
    /// The sender got an acknowledgement for `id`.
    Acked {
        /// The message id.
        id: u64,
    },
    /// `id` was delivered to a receiver.
    Received {
        /// The message id.
        id: u64,
    },
}

/// A shared, append-only log of [`Event`]s.
#[derive(Debug, Clone, Default)]
pub struct History {
    events: Arc<Mutex<Vec<Event>>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, e: Event) {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    /// Records that `id` was sent on `stream`.
    pub fn sent(&self, stream: &str, id: u64) {
        self.push(Event::Sent { stream: stream.to_owned(), id });
    }

    /// Records an acknowledgement of `id`.
    pub fn acked(&self, id: u64) {
        self.push(Event::Acked { id });
    }

    /// Records a delivery of `id`.
    pub fn received(&self, id: u64) {
        self.push(Event::Received { id });
    }

    /// A copy of the events so far, in the order they were recorded.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks the events so far against `expect`.
    pub fn check(&self, expect: Expectation) -> Report {
        check(&self.events(), expect)
    }
}

/// Which messages must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MustArrive {
    /// Nothing must arrive (at-most-once): losses are not reported.
    Nothing,
    /// Every acknowledged message must arrive (at-least-once and stronger).
    Acknowledged,
    /// Every sent message must arrive.
    Everything,
}

/// What the checker holds the history to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    /// Which messages count as lost if they never arrive.
    pub must_arrive: MustArrive,
    /// Report messages received more than once.
    pub no_duplicates: bool,
    /// Report messages received before an earlier message of the same stream.
    pub ordered: bool,
}

impl Expectation {
    /// Everything sent arrives, once, in order: a reliable ordered channel.
    pub fn reliable_ordered() -> Self {
        Self { must_arrive: MustArrive::Everything, no_duplicates: true, ordered: true }
    }

    /// At-most-once: no duplicates, nothing unexpected; losses and reordering allowed.
    pub fn at_most_once() -> Self {
        Self { must_arrive: MustArrive::Nothing, no_duplicates: true, ordered: false }
    }

    /// At-least-once: every acknowledged message arrives; duplicates allowed.
    pub fn at_least_once() -> Self {
        Self { must_arrive: MustArrive::Acknowledged, no_duplicates: false, ordered: false }
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Messages sent.
    pub sent: usize,
    /// Distinct messages received.
    pub received: usize,
    /// Messages that had to arrive and did not, in id order.
    pub lost: Vec<u64>,
    /// Messages received more than once, with their count.
    pub duplicated: Vec<(u64, usize)>,
    /// `(id, overtaken_by)`: `id` arrived after `overtaken_by`, which was sent after it.
    pub reordered: Vec<(u64, u64)>,
    /// Messages received that were never sent.
    pub unexpected: Vec<u64>,
}

impl Report {
    /// True if nothing was found.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.reordered.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn few<T: fmt::Debug>(v: &[T]) -> String {
            if v.len() <= 10 {
                format!("{v:?}")
            } else {
                format!("{:?} and {} more", &v[..10], v.len() - 10)
            }
        }
        write!(f, "{} sent, {} received", self.sent, self.received)?;
        if !self.lost.is_empty() {
            write!(f, "; lost {}: {}", self.lost.len(), few(&self.lost))?;
        }
        if !self.duplicated.is_empty() {
            write!(f, "; duplicated {}: {}", self.duplicated.len(), few(&self.duplicated))?;
        }
        if !self.reordered.is_empty() {
            write!(f, "; reordered {}: {}", self.reordered.len(), few(&self.reordered))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; unexpected {}: {}", self.unexpected.len(), few(&self.unexpected))?;
        }
        Ok(())
    }
}

/// Checks `events` against `expect`.
pub fn check(events: &[Event], expect: Expectation) -> Report {
    // Where each id was sent: its stream and its position in that stream.
    let mut origin: BTreeMap<u64, (&str, usize)> = BTreeMap::new();
    let mut stream_len: BTreeMap<&str, usize> = BTreeMap::new();
    let mut acked = BTreeSet::new();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    let mut report = Report::default();
    // Per stream: the highest send position received so far, and its id.
    let mut high: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for e in events {
        match e {
            Event::Sent { stream, id } => {
                let pos = stream_len.entry(stream.as_str()).or_default();
                origin.insert(*id, (stream.as_str(), *pos));
                *pos += 1;
                report.sent += 1;
            }
            Event::Acked { id } => {
                acked.insert(*id);
            }
            Event::Received { id } => {
                let count = counts.entry(*id).or_default();
                *count += 1;
                if *count > 1 {
                    continue;
                }
                match origin.get(id) {
                    None => report.unexpected.push(*id),
                    Some(&(stream, pos)) => {
                        let h = high.entry(stream).or_insert((pos, *id));
                        if pos < h.0 {
                            report.reordered.push((*id, h.1));
                        } else {
                            *h = (pos, *id);
                        }
                    }
                }
            }
        }
    }
    report.received = counts.len();
    let must: Vec<u64> = match expect.must_arrive {
        MustArrive::Nothing => Vec::new(),
        MustArrive::Acknowledged => acked.iter().copied().collect(),
        MustArrive::Everything => origin.keys().copied().collect(),
    };
    report.lost = must.into_iter().filter(|id| !counts.contains_key(id)).collect();
    if expect.no_duplicates {
        report.duplicated = counts.iter().filter(|(_, &c)| c > 1).map(|(&id, &c)| (id, c)).collect();
    }
    if !expect.ordered {
        report.reordered.clear();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(script: &[(&str, u64)]) -> Vec<Event> {
        script
            .iter()
            .map(|&(what, id)| match what {
                "a" => Event::Acked { id },
                "r" => Event::Received { id },
                stream => Event::Sent { stream: stream.to_owned(), id },
            })
            .collect()
    }

    #[test]
    fn a_clean_history_is_clean() {
        let e = h(&[("s", 1), ("s", 2), ("r", 1), ("a", 1), ("r", 2), ("a", 2)]);
        let r = check(&e, Expectation::reliable_ordered());
        assert!(r.is_clean(), "{r}");
        assert_eq!((r.sent, r.received), (2, 2));
    }

    #[test]
    fn finds_each_kind_of_anomaly() {
        let e = h(&[("s", 1), ("s", 2), ("s", 3), ("t", 10), ("r", 2), ("r", 1), ("r", 2), ("r", 99), ("r", 10)]);
        let r = check(&e, Expectation::reliable_ordered());
        assert_eq!(r.lost, vec![3]);
        assert_eq!(r.duplicated, vec![(2, 2)]);
        assert_eq!(r.reordered, vec![(1, 2)], "1 arrived after 2, which was sent after it");
        assert_eq!(r.unexpected, vec![99]);
        assert!(r.to_string().contains("lost 1"), "{r}");
    }

    #[test]
    fn expectations_decide_what_counts() {
        let e = h(&[("s", 1), ("s", 2), ("a", 1), ("r", 2), ("r", 2)]);
        let r = check(&e, Expectation::at_most_once());
        assert!(r.lost.is_empty() && r.duplicated == vec![(2, 2)]);
        let r = check(&e, Expectation::at_least_once());
        assert_eq!(r.lost, vec![1], "1 was acknowledged but never arrived");
        assert!(r.duplicated.is_empty(), "duplicates are allowed at least once");
    }

    #[test]
    fn order_is_per_stream() {
        let e = h(&[("x", 1), ("y", 2), ("r", 2), ("r", 1)]);
        assert!(check(&e, Expectation::reliable_ordered()).is_clean());
    }
}
