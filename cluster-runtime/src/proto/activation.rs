//! Keyed (virtual) actors on one node, pure: which keys run here, when an idle one is
//! passivated, what happens to messages that arrive while it is, and which keys a
//! rebalance moves after membership changed.
//!
//! - A key's identity is a fixed function of its actor type and key ([`keyed_identity`]),
//!   the same on every node and in every build, so any node names it without asking.
//! - An activation is idle once no message reached it for its type's `passivate_after`;
//!   a sweep every half of the shortest such period finds idle keys ([`Output::Passivate`]).
//!   The driver holds the actor (new messages are buffered), removes its directory entry
//!   and stops it once its mailbox is empty, then reports [`Activations::handle_passivated`]
//!   with the number of messages it buffered meanwhile. None: the key is forgotten. Some:
//!   [`Output::Reactivate`], and the buffered messages go to the next activation — a
//!   message is never dropped because its actor was passivating.
//! - After a view change, keys whose consistent-hash owner is another node are moved to it in
//!   batches of at most `batch` per `interval` ([`Output::Rebalance`]), never all at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::ids::{ActorId, ActorTypeId, LocalActorId};
use crate::proto::registry::ring;

/// A keyed actor: its type and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActivationKey {
    /// The actor type.
    pub actor_type: ActorTypeId,
    /// The key.
    pub key: String,
}

impl ActivationKey {
    /// The string consistent-hash placement hashes for this key: the key itself, as
    /// `system.spawn(..).placement(ConsistentHash).key(key)` hashes it (so a rebalance moves
    /// a key exactly where a new activation of it would go).
    pub fn ring_key(&self) -> &str {
        &self.key
    }
}

/// The identity of the keyed actor `key` of type `actor_type`: two 64-bit FNV-1a hashes of
/// the type id and the key (with different offset bases), the same everywhere. Its top bit
/// is set, so it never equals the identity of an actor first started by a spawn on a node
/// whose id has the top bit clear, and collisions between keys are as unlikely as between
/// 127-bit random numbers.
pub fn keyed_identity(actor_type: ActorTypeId, key: &str) -> ActorId {
    fn fnv(basis: u64, parts: &[&[u8]]) -> u64 {
        let mut hash = basis;
        for part in parts {
            for b in *part {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            // A separator so ("ab", "c") and ("a", "bc") differ.
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }
    let type_bytes = actor_type.0.to_le_bytes();
    let parts: [&[u8]; 2] = [&type_bytes, key.as_bytes()];
    let high = fnv(0xcbf2_9ce4_8422_2325, &parts);
    let low = fnv(0x8422_2325_cbf2_9ce4, &parts);
    ActorId(((u128::from(high) << 64) | u128::from(low)) | (1 << 127))
}

/// How a type's activations behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedPolicy {
    /// Idle time after which an activation is passivated (`None`: never).
    pub passivate_after: Option<Duration>,
}

/// Rebalancing after membership changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// Off: keys stay where they were activated.
    pub enabled: bool,
    /// At most this many keys start moving per interval.
    pub batch: usize,
    /// The interval.
    pub interval: Duration,
}

/// What the table wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Hold `actor` (buffer new messages), remove its directory entry and stop it once its
    /// mailbox is empty; then report [`Activations::handle_passivated`].
    Passivate {
        /// The key.
        key: ActivationKey,
        /// The activation.
        actor: LocalActorId,
    },
    /// Messages arrived while `key` was passivating: activate it again (where placement
    /// says) and deliver them, in order.
    Reactivate {
        /// The key.
        key: ActivationKey,
        /// How many messages wait.
        buffered: usize,
    },
    /// Move the activation of `key` to node `to` (it now owns the key).
    Rebalance {
        /// The key.
        key: ActivationKey,
        /// The activation here.
        actor: LocalActorId,
        /// The node that owns the key now.
        to: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    Passivating { buffered: usize },
    Moving,
}

#[derive(Debug, Clone)]
struct Activation {
    actor: LocalActorId,
    last: Duration,
    phase: Phase,
    /// Placed by consistent hashing of its key (so a rebalance may move it).
    hashed: bool,
}

/// The keyed activations of one node.
#[derive(Debug)]
pub struct Activations {
    me: String,
    policies: BTreeMap<ActorTypeId, KeyedPolicy>,
    rebalance: RebalanceConfig,
    active: BTreeMap<ActivationKey, Activation>,
    /// The members keys are hashed over (the up members, this node included).
    members: BTreeSet<String>,
    next_sweep: Option<Duration>,
    next_rebalance: Option<Duration>,
    /// At most this many activations are being passivated at once; the others wait for
    /// the next sweep, `batch_pause` later.
    passivation_batch: usize,
    batch_pause: Duration,
    out: std::collections::VecDeque<Output>,
}

impl Activations {
    /// The table of node `me`.
    pub fn new(me: &str, rebalance: RebalanceConfig) -> Self {
        Self {
            me: me.to_owned(),
            policies: BTreeMap::new(),
            rebalance,
            active: BTreeMap::new(),
            members: BTreeSet::from([me.to_owned()]),
            next_sweep: None,
            next_rebalance: None,
            passivation_batch: usize::MAX,
            batch_pause: Duration::from_millis(20),
            out: std::collections::VecDeque::new(),
        }
    }

    /// Passivates at most `batch` activations at once; when more are idle, sweeps again
    /// `pause` later (a burst of idle keys does not flood the directory).
    pub fn set_passivation_batch(&mut self, batch: usize, pause: Duration) {
        self.passivation_batch = batch.max(1);
        self.batch_pause = pause;
    }

    /// Sets the policy of `actor_type`'s activations.
    pub fn set_policy(&mut self, actor_type: ActorTypeId, policy: KeyedPolicy) {
        self.policies.insert(actor_type, policy);
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next deadline (a passivation sweep or a rebalance batch).
    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.next_sweep, self.next_rebalance].into_iter().flatten().min()
    }

    /// The activation of `key` here, if it takes messages (not passivating or moving).
    pub fn local(&self, key: &ActivationKey) -> Option<LocalActorId> {
        self.active.get(key).filter(|a| a.phase == Phase::Active).map(|a| a.actor)
    }

    /// Activations here: (taking messages, passivating or moving).
    pub fn counts(&self) -> (usize, usize) {
        let taking = self.active.values().filter(|a| a.phase == Phase::Active).count();
        (taking, self.active.len() - taking)
    }

    /// The node consistent hashing gives `key` among the current members.
    pub fn owner_of(&self, key: &ActivationKey) -> Option<&str> {
        ring::owner(key.ring_key(), self.members.iter().map(String::as_str))
    }

    /// `key` was activated here as `actor` (`hashed`: placed by consistent hashing).
    pub fn handle_activated(&mut self, now: Duration, key: ActivationKey, actor: LocalActorId, hashed: bool) {
        self.active.insert(key.clone(), Activation { actor, last: now, phase: Phase::Active, hashed });
        if let Some(after) = self.policy(&key).passivate_after {
            let sweep = now + sweep_period(after);
            self.next_sweep = Some(self.next_sweep.map_or(sweep, |s| s.min(sweep)));
        }
    }

    /// A message reached `key`'s activation here. If it is passivating, the driver
    /// buffered the message: answers true, and it is counted for the next activation.
    pub fn handle_message(&mut self, now: Duration, key: &ActivationKey) -> bool {
        let Some(a) = self.active.get_mut(key) else { return false };
        a.last = now;
        match &mut a.phase {
            Phase::Passivating { buffered } => {
                *buffered += 1;
                true
            }
            Phase::Active | Phase::Moving => false,
        }
    }

    /// The passivated activation of `key` has stopped and its directory entry is gone.
    pub fn handle_passivated(&mut self, _now: Duration, key: &ActivationKey) {
        let Some(a) = self.active.get(key) else { return };
        let Phase::Passivating { buffered } = a.phase else { return };
        self.active.remove(key);
        if buffered > 0 {
            self.out.push_back(Output::Reactivate { key: key.clone(), buffered });
        }
    }

    /// The activation of `key` stopped here for another reason (its actor stopped, or it
    /// moved to another node).
    pub fn handle_gone(&mut self, key: &ActivationKey) {
        self.active.remove(key);
    }

    /// Forgets the activations taking messages whose actor `keep` rejects (they stopped).
    pub fn retain_running(&mut self, keep: impl Fn(LocalActorId) -> bool) {
        self.active.retain(|_, a| a.phase != Phase::Active || keep(a.actor));
    }

    /// A rebalance move of `key` failed: the activation stays and takes messages.
    pub fn handle_move_failed(&mut self, now: Duration, key: &ActivationKey) {
        if let Some(a) = self.active.get_mut(key) {
            if a.phase == Phase::Moving {
                a.phase = Phase::Active;
                a.last = now;
            }
        }
    }

    /// The members keys are hashed over changed; if keys here now belong elsewhere, a
    /// rebalance starts one interval after the last change (membership settles first: no
    /// key moves while members come and go).
    pub fn handle_view(&mut self, now: Duration, members: BTreeSet<String>) {
        self.members = members;
        self.members.insert(self.me.clone());
        self.next_rebalance =
            (self.rebalance.enabled && self.misplaced().next().is_some()).then_some(now + self.rebalance.interval);
    }

    /// Sweeps for idle activations and starts the next rebalance batch when due.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.next_sweep.is_some_and(|at| at <= now) {
            self.sweep(now);
        }
        if self.next_rebalance.is_some_and(|at| at <= now) {
            self.rebalance_batch(now);
        }
    }

    fn policy(&self, key: &ActivationKey) -> KeyedPolicy {
        self.policies.get(&key.actor_type).copied().unwrap_or(KeyedPolicy { passivate_after: None })
    }

    fn sweep(&mut self, now: Duration) {
        let mut next: Option<Duration> = None;
        let mut idle = Vec::new();
        for (key, a) in &self.active {
            let Some(after) = self.policy(key).passivate_after else { continue };
            if a.phase == Phase::Active && now.saturating_sub(a.last) >= after {
                idle.push((key.clone(), a.actor));
            } else if a.phase == Phase::Active {
                let at = now + sweep_period(after);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let passivating = self.active.values().filter(|a| matches!(a.phase, Phase::Passivating { .. })).count();
        let room = self.passivation_batch.saturating_sub(passivating);
        if idle.len() > room {
            let soon = now + self.batch_pause;
            next = Some(next.map_or(soon, |n| n.min(soon)));
        }
        for (key, actor) in idle.into_iter().take(room) {
            if let Some(a) = self.active.get_mut(&key) {
                a.phase = Phase::Passivating { buffered: 0 };
            }
            self.out.push_back(Output::Passivate { key, actor });
        }
        self.next_sweep = next;
    }

    fn misplaced(&self) -> impl Iterator<Item = (&ActivationKey, &Activation, &str)> {
        self.active.iter().filter(|(_, a)| a.hashed && a.phase == Phase::Active).filter_map(|(key, a)| {
            let owner = ring::owner(key.ring_key(), self.members.iter().map(String::as_str))?;
            (owner != self.me).then_some((key, a, owner))
        })
    }

    fn rebalance_batch(&mut self, now: Duration) {
        let batch: Vec<(ActivationKey, LocalActorId, String)> = self
            .misplaced()
            .take(self.rebalance.batch)
            .map(|(key, a, owner)| (key.clone(), a.actor, owner.to_owned()))
            .collect();
        for (key, actor, to) in batch {
            if let Some(a) = self.active.get_mut(&key) {
                a.phase = Phase::Moving;
            }
            self.out.push_back(Output::Rebalance { key, actor, to });
        }
        self.next_rebalance =
            (self.rebalance.enabled && self.misplaced().next().is_some()).then_some(now + self.rebalance.interval);
    }
}

/// How often idle activations of a type are looked for: half its idle period, so one is
/// passivated at most 1.5 periods after its last message.
fn sweep_period(after: Duration) -> Duration {
    (after / 2).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: ActorTypeId = ActorTypeId(11);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key(k: &str) -> ActivationKey {
        ActivationKey { actor_type: TYPE, key: k.into() }
    }

    fn drain(a: &mut Activations) -> Vec<Output> {
        std::iter::from_fn(|| a.poll_output()).collect()
    }

    fn table() -> Activations {
        let mut t = Activations::new("n1", RebalanceConfig { enabled: true, batch: 2, interval: ms(100) });
        t.set_policy(TYPE, KeyedPolicy { passivate_after: Some(ms(1000)) });
        t
    }

    #[test]
    fn identities_are_fixed_distinct_and_marked() {
        assert_eq!(keyed_identity(ActorTypeId(1), "cart-42"), keyed_identity(ActorTypeId(1), "cart-42"));
        assert_ne!(keyed_identity(ActorTypeId(1), "cart-42"), keyed_identity(ActorTypeId(2), "cart-42"));
        assert_ne!(keyed_identity(ActorTypeId(1), "a"), keyed_identity(ActorTypeId(1), "b"));
        let ids: BTreeSet<u128> = (0..10_000).map(|i| keyed_identity(TYPE, &format!("k{i}")).0).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id >> 127 == 1));
    }

    /// Pinned: changing the function renames every keyed actor of a running cluster.
    #[test]
    fn identity_golden_vectors() {
        assert_eq!(keyed_identity(ActorTypeId(0), "").0, GOLDEN[0]);
        assert_eq!(keyed_identity(ActorTypeId(1), "cart-42").0, GOLDEN[1]);
        assert_eq!(keyed_identity(ActorTypeId(u64::MAX), "ключ").0, GOLDEN[2]);
    }

    const GOLDEN: [u128; 3] = [
        0xe7fa_88cc_1f65_6703_b354_4ea3_14e4_3a7a,
        0xf1ba_f80e_dc1f_8935_cfe7_dcd5_0363_99be,
        0xcb41_9bfd_4ee2_ae5f_68e5_8a2b_7075_03ee,
    ];

    #[test]
    fn an_idle_activation_is_passivated_within_one_and_a_half_periods() {
        let mut t = table();
        t.handle_activated(ms(0), key("a"), LocalActorId(1), true);
        t.handle_activated(ms(0), key("b"), LocalActorId(2), true);
        assert_eq!(t.poll_timeout(), Some(ms(500)));
        t.handle_timeout(ms(500));
        assert!(drain(&mut t).is_empty(), "not idle long enough yet");
        // `b` keeps getting messages; `a` does not.
        for at in (100..3000).step_by(100) {
            t.handle_message(ms(at), &key("b"));
            if t.poll_timeout().is_some_and(|d| d <= ms(at)) {
                t.handle_timeout(ms(at));
            }
        }
        assert_eq!(drain(&mut t), vec![Output::Passivate { key: key("a"), actor: LocalActorId(1) }]);
        assert_eq!(t.local(&key("a")), None, "a passivating key takes no messages directly");
        assert_eq!(t.local(&key("b")), Some(LocalActorId(2)));
        assert_eq!(t.counts(), (1, 1));
        // Passivated with nothing waiting: forgotten.
        t.handle_passivated(ms(3000), &key("a"));
        assert!(drain(&mut t).is_empty());
        assert_eq!(t.counts(), (1, 0));
    }

    #[test]
    fn messages_during_passivation_go_to_the_next_activation() {
        let mut t = table();
        t.handle_activated(ms(0), key("a"), LocalActorId(1), true);
        t.handle_timeout(ms(1000));
        assert!(matches!(&drain(&mut t)[..], [Output::Passivate { .. }]));
        assert!(t.handle_message(ms(1001), &key("a")), "buffered by the driver");
        assert!(t.handle_message(ms(1002), &key("a")));
        t.handle_passivated(ms(1003), &key("a"));
        assert_eq!(drain(&mut t), vec![Output::Reactivate { key: key("a"), buffered: 2 }]);
        // The next activation starts afresh.
        t.handle_activated(ms(1004), key("a"), LocalActorId(9), true);
        assert_eq!(t.local(&key("a")), Some(LocalActorId(9)));
    }

    #[test]
    fn a_burst_of_idle_keys_is_passivated_a_batch_at_a_time() {
        let mut t = table();
        t.set_passivation_batch(3, ms(20));
        for i in 0..10 {
            t.handle_activated(ms(0), key(&format!("k{i}")), LocalActorId(i), true);
        }
        t.handle_timeout(ms(1000));
        let first = drain(&mut t);
        assert_eq!(first.len(), 3, "{first:?}");
        assert_eq!(t.poll_timeout(), Some(ms(1020)), "the rest soon after");
        t.handle_timeout(ms(1020));
        assert!(drain(&mut t).is_empty(), "three still in flight");
        for o in first {
            let Output::Passivate { key, .. } = o else { panic!("{o:?}") };
            t.handle_passivated(ms(1030), &key);
        }
        t.handle_timeout(ms(1040));
        assert_eq!(drain(&mut t).len(), 3);
    }

    #[test]
    fn types_without_an_idle_period_are_never_passivated() {
        let mut t = Activations::new("n1", RebalanceConfig { enabled: false, batch: 1, interval: ms(1) });
        t.handle_activated(ms(0), key("a"), LocalActorId(1), true);
        assert_eq!(t.poll_timeout(), None);
        t.handle_timeout(ms(1_000_000));
        assert!(drain(&mut t).is_empty());
    }

    #[test]
    fn a_join_moves_only_the_keys_the_new_node_owns_in_bounded_batches() {
        let mut t = table();
        t.set_policy(TYPE, KeyedPolicy { passivate_after: None });
        for i in 0..40 {
            t.handle_activated(ms(0), key(&format!("k{i}")), LocalActorId(i), true);
        }
        // One key placed explicitly (not by hashing) never moves.
        t.handle_activated(ms(0), key("pinned"), LocalActorId(999), false);
        let members: BTreeSet<String> = ["n1", "n2"].iter().map(|s| s.to_string()).collect();
        t.handle_view(ms(10), members);
        let expected: BTreeSet<ActivationKey> =
            (0..40).map(|i| key(&format!("k{i}"))).filter(|k| t.owner_of(k) == Some("n2")).collect();
        assert!(!expected.is_empty() && expected.len() < 40, "{}", expected.len());
        assert_eq!(t.poll_timeout(), Some(ms(110)), "one interval after the view changed");
        let mut moved = BTreeSet::new();
        let mut now = ms(10);
        while let Some(at) = t.poll_timeout() {
            now = at;
            t.handle_timeout(now);
            let batch = drain(&mut t);
            assert!(batch.len() <= 2, "at most a batch per interval: {batch:?}");
            for o in batch {
                let Output::Rebalance { key, to, .. } = o else { panic!("{o:?}") };
                assert_eq!(to, "n2");
                t.handle_gone(&key);
                moved.insert(key);
            }
        }
        assert_eq!(moved, expected);
        assert_eq!(now, ms(110) + ms(100) * ((expected.len() as u32 - 1) / 2));
        assert_eq!(t.local(&key("pinned")), Some(LocalActorId(999)));
    }

    #[test]
    fn a_failed_move_keeps_the_activation_and_it_is_tried_again() {
        let mut t = table();
        t.set_policy(TYPE, KeyedPolicy { passivate_after: None });
        let k = (0..100).map(|i| key(&format!("k{i}"))).find(|k| ring::owner(k.ring_key(), ["n1", "n2"]) == Some("n2"));
        let k = k.expect("some key belongs to n2");
        t.handle_activated(ms(0), k.clone(), LocalActorId(1), true);
        t.handle_view(ms(1), ["n2".to_string()].into());
        t.handle_timeout(ms(101));
        assert!(matches!(&drain(&mut t)[..], [Output::Rebalance { .. }]));
        assert_eq!(t.local(&k), None, "moving: messages are held by the migration");
        t.handle_move_failed(ms(2), &k);
        assert_eq!(t.local(&k), Some(LocalActorId(1)));
        t.handle_view(ms(3), ["n2".to_string()].into());
        t.handle_timeout(ms(103));
        assert!(matches!(&drain(&mut t)[..], [Output::Rebalance { .. }]));
    }

    #[test]
    fn rebalancing_can_be_switched_off() {
        let mut t = Activations::new("n1", RebalanceConfig { enabled: false, batch: 10, interval: ms(1) });
        for i in 0..20 {
            t.handle_activated(ms(0), key(&format!("k{i}")), LocalActorId(i), true);
        }
        t.handle_view(ms(1), ["n2".to_string(), "n3".to_string()].into());
        assert_eq!(t.poll_timeout(), None);
        t.handle_timeout(ms(1000));
        assert!(drain(&mut t).is_empty());
    }
}
