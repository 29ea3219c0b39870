//! Network conditions imposed on real links: latency with jitter, loss, duplication,
//! reordering, bandwidth, and blocked directions (partitions).
//!
//! A [`NetworkFaults`] plan is shared by the nodes of a test; each link's writer asks it
//! what happens to every frame it is about to write (its [`Fate`]). Faults therefore hit
//! the real codec and real sockets. The decisions come from one seeded RNG.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{rngs::SmallRng, Rng, SeedableRng};

pub use crate::transport::shaper::Fate;
use crate::transport::shaper::Shaper;

/// Conditions on one direction of traffic between two nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkConditions {
    /// Added one-way delay of every frame.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per frame (reorders frames).
    pub jitter: Duration,
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is sent twice.
    pub duplicate: f64,
    /// Probability that a frame is held back long enough for later frames to overtake it.
    pub reorder: f64,
    /// Throughput cap in bytes per second (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Every frame is dropped, handshakes included: a partition in this direction.
    pub blocked: bool,
}

impl LinkConditions {
    /// Conditions that change nothing.
    pub fn clear() -> Self {
        Self::default()
    }

    /// Adds a fixed latency and a jitter.
    pub fn with_latency(mut self, latency: Duration, jitter: Duration) -> Self {
        self.latency = latency;
        self.jitter = jitter;
        self
    }

    /// Sets the loss probability (0.0 ..= 1.0).
    pub fn with_loss(mut self, rate: f64) -> Self {
        self.loss = rate.clamp(0.0, 1.0);
        self
    }

    /// Sets the duplication probability (0.0 ..= 1.0).
    pub fn with_duplicates(mut self, rate: f64) -> Self {
        self.duplicate = rate.clamp(0.0, 1.0);
        self
    }

    /// Sets the reordering probability (0.0 ..= 1.0).
    pub fn with_reordering(mut self, rate: f64) -> Self {
        self.reorder = rate.clamp(0.0, 1.0);
        self
    }

    /// Caps the throughput.
    pub fn with_bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.bandwidth = Some(bytes_per_second.max(1));
        self
    }
}

/// Counters of what the plan did to one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames the plan was asked about.
    pub frames: u64,
    /// Frames dropped (loss or blocked).
    pub dropped: u64,
    /// Extra copies written.
    pub duplicated: u64,
    /// Frames held back to be overtaken.
    pub reordered: u64,
}

#[derive(Debug)]
struct Plan {
    default: LinkConditions,
    links: BTreeMap<(String, String), LinkConditions>,
    addrs: BTreeMap<String, String>,
    stats: BTreeMap<(String, String), FaultStats>,
    rng: SmallRng,
}

/// A shared, mutable plan of network conditions between named nodes.
#[derive(Debug, Clone)]
pub struct NetworkFaults {
    plan: Arc<Mutex<Plan>>,
}

impl NetworkFaults {
    /// An empty plan (no faults) whose random choices derive from `seed`.
    pub fn new(seed: u64) -> Self {
        let plan = Plan {
            default: LinkConditions::default(),
            links: BTreeMap::new(),
            addrs: BTreeMap::new(),
            stats: BTreeMap::new(),
            rng: SmallRng::seed_from_u64(seed),
        };
        Self { plan: Arc::new(Mutex::new(plan)) }
    }

    fn lock(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the plan which node listens on `addr`, so connection attempts to that
    /// address are subject to the conditions towards `name`.
    pub fn register_addr(&self, name: &str, addr: &str) {
        self.lock().addrs.insert(addr.to_owned(), name.to_owned());
    }

    /// The node listening on `addr`, if registered.
    pub fn name_of(&self, addr: &str) -> Option<String> {
        self.lock().addrs.get(addr).cloned()
    }

    /// Conditions for every direction without its own conditions.
    pub fn set_default(&self, conditions: LinkConditions) {
        self.lock().default = conditions;
    }

    /// Conditions from `from` to `to` (one direction).
    pub fn set_link(&self, from: &str, to: &str, conditions: LinkConditions) {
        self.lock().links.insert((from.to_owned(), to.to_owned()), conditions);
    }

    /// Conditions in both directions between `a` and `b`.
    pub fn set_both(&self, a: &str, b: &str, conditions: LinkConditions) {
        self.set_link(a, b, conditions.clone());
        self.set_link(b, a, conditions);
    }

    /// The conditions currently applying from `from` to `to`.
    pub fn conditions(&self, from: &str, to: &str) -> LinkConditions {
        let plan = self.lock();
        plan.links.get(&(from.to_owned(), to.to_owned())).unwrap_or(&plan.default).clone()
    }

    fn update(&self, from: &str, to: &str, f: impl FnOnce(&mut LinkConditions)) {
        let mut plan = self.lock();
        let default = plan.default.clone();
        f(plan.links.entry((from.to_owned(), to.to_owned())).or_insert(default));
    }

    /// Blocks traffic from `from` to `to` only (a one-way partition).
    pub fn block(&self, from: &str, to: &str) {
        self.update(from, to, |c| c.blocked = true);
    }

    /// Partitions group `a` from group `b` in both directions.
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        for x in a {
            for y in b {
                self.block(x, y);
                self.block(y, x);
            }
        }
    }

    /// Removes every partition; other conditions stay.
    pub fn heal(&self) {
        let mut plan = self.lock();
        plan.default.blocked = false;
        for c in plan.links.values_mut() {
            c.blocked = false;
        }
    }

    /// Removes every condition.
    pub fn clear(&self) {
        let mut plan = self.lock();
        plan.default = LinkConditions::default();
        plan.links.clear();
    }

    /// True if traffic from `from` to `to` is blocked.
    pub fn is_blocked(&self, from: &str, to: &str) -> bool {
        self.conditions(from, to).blocked
    }

    /// The set of directions currently blocked.
    pub fn blocked_directions(&self) -> BTreeSet<(String, String)> {
        self.lock().links.iter().filter(|(_, c)| c.blocked).map(|(k, _)| k.clone()).collect()
    }

    /// What the plan did to traffic from `from` to `to` so far.
    pub fn stats(&self, from: &str, to: &str) -> FaultStats {
        self.lock().stats.get(&(from.to_owned(), to.to_owned())).copied().unwrap_or_default()
    }

    /// Decides the fate of one frame from `from` to `to`.
    pub fn fate(&self, from: &str, to: &str) -> Fate {
        let mut plan = self.lock();
        let key = (from.to_owned(), to.to_owned());
        let c = plan.links.get(&key).unwrap_or(&plan.default).clone();
        let Plan { rng, stats, .. } = &mut *plan;
        let stats = stats.entry(key).or_default();
        stats.frames += 1;
        if c.blocked || (c.loss > 0.0 && rng.random_bool(c.loss)) {
            stats.dropped += 1;
            return Fate::Drop;
        }
        let copies = if c.duplicate > 0.0 && rng.random_bool(c.duplicate) {
            stats.duplicated += 1;
            2
        } else {
            1
        };
        let jitter = if c.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(rng.random_range(0..=c.jitter.as_nanos().min(u128::from(u64::MAX)) as u64))
        };
        let mut delay = c.latency + jitter;
        if c.reorder > 0.0 && rng.random_bool(c.reorder) {
            stats.reordered += 1;
            delay += c.latency + c.jitter + Duration::from_millis(5);
        }
        Fate::Deliver { copies, delay }
    }

    /// How long writing `bytes` takes at the direction's bandwidth cap.
    pub fn transmit_time(&self, from: &str, to: &str, bytes: usize) -> Duration {
        match self.conditions(from, to).bandwidth {
            Some(bps) => Duration::from_secs_f64(bytes as f64 / bps as f64),
            None => Duration::ZERO,
        }
    }
}

impl crate::config::ClusterConfigBuilder {
    /// Imposes the test's network conditions on this node's outgoing traffic.
    pub fn network_faults(self, faults: NetworkFaults) -> Self {
        self.frame_shaper(Arc::new(faults))
    }
}

impl Shaper for NetworkFaults {
    fn name_of(&self, addr: &str) -> Option<String> {
        NetworkFaults::name_of(self, addr)
    }

    fn is_blocked(&self, from: &str, to: &str) -> bool {
        NetworkFaults::is_blocked(self, from, to)
    }

    fn fate(&self, from: &str, to: &str) -> Fate {
        NetworkFaults::fate(self, from, to)
    }

    fn transmit_time(&self, from: &str, to: &str, bytes: usize) -> Duration {
        NetworkFaults::transmit_time(self, from, to, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_conditions_deliver_everything_at_once() {
        let f = NetworkFaults::new(1);
        for _ in 0..100 {
            assert_eq!(f.fate("a", "b"), Fate::Deliver { copies: 1, delay: Duration::ZERO });
        }
        assert_eq!(f.stats("a", "b"), FaultStats { frames: 100, ..Default::default() });
    }

    #[test]
    fn partitions_are_directional_and_heal_keeps_other_conditions() {
        let f = NetworkFaults::new(1);
        f.set_link("a", "b", LinkConditions::clear().with_latency(Duration::from_millis(5), Duration::ZERO));
        f.block("a", "b");
        assert_eq!(f.fate("a", "b"), Fate::Drop);
        assert!(matches!(f.fate("b", "a"), Fate::Deliver { .. }), "the other direction is open");
        f.partition(&["a"], &["c", "d"]);
        assert!(f.is_blocked("c", "a") && f.is_blocked("a", "d") && !f.is_blocked("c", "d"));
        f.heal();
        assert!(f.blocked_directions().is_empty());
        assert_eq!(f.conditions("a", "b").latency, Duration::from_millis(5));
    }

    #[test]
    fn loss_duplication_and_jitter_follow_the_configured_rates() {
        let f = NetworkFaults::new(7);
        let c = LinkConditions::clear()
            .with_loss(0.25)
            .with_duplicates(0.1)
            .with_latency(Duration::from_millis(10), Duration::from_millis(4));
        f.set_link("a", "b", c);
        let n = 20_000;
        let (mut dropped, mut dups) = (0, 0);
        for _ in 0..n {
            match f.fate("a", "b") {
                Fate::Drop => dropped += 1,
                Fate::Deliver { copies, delay } => {
                    dups += u32::from(copies == 2);
                    assert!(delay >= Duration::from_millis(10) && delay <= Duration::from_millis(14));
                }
            }
        }
        let loss = f64::from(dropped) / f64::from(n);
        assert!((loss - 0.25).abs() < 0.02, "loss {loss}");
        let dup = f64::from(dups) / f64::from(n - dropped);
        assert!((dup - 0.1).abs() < 0.02, "duplication {dup}");
    }

    #[test]
    fn the_same_seed_makes_the_same_decisions() {
        let run = |seed| {
            let f = NetworkFaults::new(seed);
            f.set_default(LinkConditions::clear().with_loss(0.5).with_reordering(0.3));
            (0..200).map(|_| f.fate("x", "y")).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
