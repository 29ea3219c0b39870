//! A table of timers as data: each key has at most one deadline; the owner asks for the
//! earliest deadline, sleeps until then, and takes the keys that are due. Time is a
//! `Duration` since an arbitrary origin, injected by the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Deadlines by key.
#[derive(Debug, Clone)]
pub struct TimerTable<K: Ord + Clone> {
    by_key: BTreeMap<K, Duration>,
    by_deadline: BTreeSet<(Duration, K)>,
}

impl<K: Ord + Clone> Default for TimerTable<K> {
    fn default() -> Self {
        Self { by_key: BTreeMap::new(), by_deadline: BTreeSet::new() }
    }
}

impl<K: Ord + Clone> TimerTable<K> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s deadline to `at`, replacing any earlier setting; `None` cancels it.
    pub fn set(&mut self, key: K, at: Option<Duration>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_deadline.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.by_key.insert(key.clone(), at);
            self.by_deadline.insert((at, key));
        }
    }

    /// The deadline of `key`, if set.
    pub fn get(&self, key: &K) -> Option<Duration> {
        self.by_key.get(key).copied()
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// Removes and returns the keys whose deadline is at or before `now`, earliest first.
    pub fn take_expired(&mut self, now: Duration) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_deadline.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.by_deadline.pop_first() {
                self.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// Number of timers set.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True if no timer is set.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let mut t = TimerTable::new();
        t.set("b", Some(ms(20)));
        t.set("a", Some(ms(10)));
        t.set("c", Some(ms(30)));
        assert_eq!(t.next_deadline(), Some(ms(10)));
        assert!(t.take_expired(ms(9)).is_empty());
        assert_eq!(t.take_expired(ms(20)), ["a", "b"]);
        assert_eq!(t.next_deadline(), Some(ms(30)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn setting_again_moves_the_deadline_and_none_cancels() {
        let mut t = TimerTable::new();
        t.set(1, Some(ms(10)));
        t.set(1, Some(ms(50)));
        assert_eq!(t.take_expired(ms(40)), Vec::<i32>::new());
        assert_eq!(t.get(&1), Some(ms(50)));
        t.set(1, None);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }
}
