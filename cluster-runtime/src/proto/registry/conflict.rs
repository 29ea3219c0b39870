//! Which registration of a name wins when two nodes disagree (after a partition heals, or
//! when an update races a re-registration), decided the same way on every node.
//!
//! Each registration carries a version vector (one counter per node that wrote the entry)
//! and the writer's wall-clock time. The rules, in order:
//!
//! 1. If one version vector dominates the other, its registration was written knowing the
//!    other: it wins (an unregister and register, or a move, seen in order).
//! 2. Otherwise the writers were concurrent (typically on two sides of a partition). For two
//!    registrations of *different* actors the first writer wins, as `register` promises: the
//!    earlier timestamp wins when the two are further apart than the clock-drift tolerance.
//!    For two records of the *same* actor (its location updated concurrently) the last writer
//!    wins, under the same tolerance.
//! 3. Within the tolerance the clocks cannot order them: the smaller holder (node name, then
//!    node id, then actor id) wins, deterministically.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A version vector: how many writes each node made to an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<String, u64>);

/// How two version vectors relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    /// The same history.
    Equal,
    /// The first saw everything the second did, and more.
    After,
    /// The second saw everything the first did, and more.
    Before,
    /// Neither saw all of the other: concurrent writes.
    Concurrent,
}

impl VersionVector {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more write by `node`.
    pub fn bump(&mut self, node: &str) {
        *self.0.entry(node.to_owned()).or_default() += 1;
    }

    /// Records that `node` made `writes` writes.
    pub fn set(&mut self, node: &str, writes: u64) {
        self.0.insert(node.to_owned(), writes);
    }

    /// The writes `node` made.
    pub fn get(&self, node: &str) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// The least vector that dominates both.
    pub fn merge(&mut self, other: &Self) {
        for (node, n) in &other.0 {
            let mine = self.0.entry(node.clone()).or_default();
            *mine = (*mine).max(*n);
        }
    }

    /// How `self` relates to `other`.
    pub fn compare(&self, other: &Self) -> Causality {
        let mut ahead = false;
        let mut behind = false;
        for node in self.0.keys().chain(other.0.keys()) {
            match self.get(node).cmp(&other.get(node)) {
                Ordering::Greater => ahead = true,
                Ordering::Less => behind = true,
                Ordering::Equal => {}
            }
        }
        match (ahead, behind) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (true, true) => Causality::Concurrent,
        }
    }
}

/// The actor a registration names, as the conflict rules see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    /// The node that hosts it.
    pub node: String,
    /// That node's id (incarnation).
    pub node_id: u128,
    /// The actor's id on that node.
    pub actor: u64,
}

/// One registration of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The actor it names.
    pub holder: Holder,
    /// Whether this record names the same actor as another, across moves: the cluster-wide
    /// identity of the actor.
    pub identity: u128,
    /// The writer's wall-clock time, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The writes that led to it.
    pub version: VersionVector,
}

/// Which of two registrations wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    /// The first one given.
    First,
    /// The second one given.
    Second,
}

/// Decides between two registrations of one name; `drift` is the clock-drift tolerance.
/// The result does not depend on the order the two are given in.
pub fn resolve(a: &Registration, b: &Registration, drift: Duration) -> Winner {
    match a.version.compare(&b.version) {
        Causality::After => return Winner::First,
        Causality::Before => return Winner::Second,
        Causality::Equal | Causality::Concurrent => {}
    }
    let drift = u64::try_from(drift.as_millis()).unwrap_or(u64::MAX);
    if a.at_ms.abs_diff(b.at_ms) > drift {
        let a_earlier = a.at_ms < b.at_ms;
        let same_actor = a.identity == b.identity;
        // Different actors: the first writer keeps the name. The same actor: its latest
        // location is right.
        return match (same_actor, a_earlier) {
            (false, true) | (true, false) => Winner::First,
            (false, false) | (true, true) => Winner::Second,
        };
    }
    if (&a.holder, a.identity) <= (&b.holder, b.identity) {
        Winner::First
    } else {
        Winner::Second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIFT: Duration = Duration::from_millis(500);

    fn vv(writes: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (node, n) in writes {
            for _ in 0..*n {
                v.bump(node);
            }
        }
        v
    }

    fn reg(node: &str, actor: u64, identity: u128, at_ms: u64, version: VersionVector) -> Registration {
        Registration { holder: Holder { node: node.into(), node_id: actor as u128, actor }, identity, at_ms, version }
    }

    /// Checks `resolve` both ways round and returns the winner's node.
    fn winner<'a>(a: &'a Registration, b: &'a Registration) -> &'a str {
        let w = resolve(a, b, DRIFT);
        let flipped = resolve(b, a, DRIFT);
        assert_ne!(w, flipped, "the same winner whatever the order");
        match w {
            Winner::First => &a.holder.node,
            Winner::Second => &b.holder.node,
        }
    }

    #[test]
    fn version_vectors_order_causal_writes_and_spot_concurrent_ones() {
        let a = vv(&[("n1", 2), ("n2", 1)]);
        let b = vv(&[("n1", 1), ("n2", 1)]);
        let c = vv(&[("n1", 1), ("n2", 2)]);
        assert_eq!(a.compare(&b), Causality::After);
        assert_eq!(b.compare(&a), Causality::Before);
        assert_eq!(a.compare(&c), Causality::Concurrent);
        assert_eq!(a.compare(&a.clone()), Causality::Equal);
        let mut m = a.clone();
        m.merge(&c);
        assert_eq!((m.get("n1"), m.get("n2")), (2, 2));
        assert_eq!(m.compare(&a), Causality::After);
    }

    #[test]
    fn a_write_that_saw_the_other_wins_whatever_the_clocks_say() {
        let old = reg("n1", 1, 10, 5_000, vv(&[("n1", 1)]));
        let newer = reg("n2", 2, 20, 1_000, vv(&[("n1", 1), ("n2", 1)]));
        assert_eq!(winner(&old, &newer), "n2");
    }

    #[test]
    fn concurrent_registrations_of_different_actors_keep_the_first_writer() {
        let left = reg("n1", 1, 10, 10_000, vv(&[("n1", 1)]));
        let right = reg("n2", 2, 20, 12_000, vv(&[("n2", 1)]));
        assert_eq!(winner(&left, &right), "n1");
    }

    #[test]
    fn concurrent_moves_of_the_same_actor_keep_the_latest_location() {
        let there = reg("n1", 1, 10, 10_000, vv(&[("n1", 1)]));
        let here = reg("n3", 7, 10, 12_000, vv(&[("n3", 1)]));
        assert_eq!(winner(&there, &here), "n3");
    }

    #[test]
    fn within_the_drift_tolerance_the_smaller_holder_wins_on_every_node() {
        let a = reg("n2", 2, 20, 10_000, vv(&[("n2", 1)]));
        let b = reg("n1", 1, 10, 10_400, vv(&[("n1", 1)]));
        assert_eq!(winner(&a, &b), "n1", "400 ms apart is within 500 ms: clocks are not trusted");
        let c = reg("n1", 1, 10, 10_600, vv(&[("n1", 1)]));
        assert_eq!(winner(&a, &c), "n2", "600 ms apart: the first writer");
    }

    #[test]
    fn a_table_of_cases_has_one_winner_in_both_orders() {
        // (a, b, expected winner)
        let cases = [
            (reg("x", 1, 1, 0, vv(&[("x", 1)])), reg("y", 2, 2, 0, vv(&[("y", 1)])), "x"),
            (reg("y", 2, 2, 0, vv(&[("y", 1)])), reg("x", 1, 1, 100_000, vv(&[("x", 1)])), "y"),
            (reg("x", 1, 1, 0, vv(&[("x", 2)])), reg("y", 2, 2, 0, vv(&[("x", 1)])), "x"),
            (reg("x", 1, 5, 0, vv(&[("x", 1)])), reg("y", 2, 5, 0, vv(&[("y", 1)])), "x"),
        ];
        for (a, b, expected) in &cases {
            assert_eq!(winner(a, b), *expected, "{a:?} vs {b:?}");
        }
    }
}
