//! SWIM for the decentralized architecture: glue around `foca` (sans-IO), its timers kept
//! as data, and three repairs of its behaviour:
//!
//! - **Suspicion expiry.** foca drops its pending suspect-to-down timers whenever it goes
//!   offline and back (its timer token changes), and a suspicion whose gossip was lost in
//!   a partition is then never resolved. A member suspect for twice the suspicion timeout
//!   is declared down here, as the lost timer would have; a member that is in fact alive
//!   rejoins.
//! - **Probe after a renewal.** foca stops probing when it renews its identity (another
//!   member declared it down) until it applies its next update; each tick makes it look
//!   at its state again, so a member that crashes meanwhile is still declared down.
//! - **Announce when idle.** SWIM without any active member (alone, or everyone declared
//!   down across a healed partition) never announces by itself: it announces to every
//!   linked peer once per probe interval.
//!
//! foca is the source of truth for liveness; after every input its notifications and its
//! view are reconciled into the [`MembershipTable`] (it does not notify suspicion, and
//! skips notifications in some transitions).

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::time::Duration;

use foca::{AccumulatingRuntime, Config as SwimConfig, Foca, Identity, NoCustomBroadcast, PostcardCodec, Timer};
use rand_foca::{rngs::SmallRng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::ids::NodeId;
use crate::proto::membership::table::{MemberId, MemberStatus, MembershipTable};

/// A member's identity in SWIM: node id, name (the address foca resolves conflicts on),
/// listen address and generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct SwimId {
    id: NodeId,
    name: String,
    addr: String,
    generation: u64,
}

impl SwimId {
    fn of(m: &MemberId) -> Self {
        Self { id: m.id, name: m.name.clone(), addr: m.addr.clone(), generation: m.generation }
    }

    fn member_id(&self) -> MemberId {
        MemberId { id: self.id, name: self.name.clone(), addr: self.addr.clone(), generation: self.generation }
    }
}

impl Identity for SwimId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        // Declared down while alive: come back as a newer generation of the same node.
        Some(Self { generation: self.generation + 1, ..self.clone() })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self.id) > (adversary.generation, adversary.id)
    }
}

type Swim = Foca<SwimId, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// How many probe intervals a member stays suspect before foca declares it down.
const SUSPECT_PROBES: u32 = 5;

/// foca's settings for a LAN, scaled to the probe interval.
fn swim_config(probe: Duration, expected_size: u32) -> SwimConfig {
    let mut c = SwimConfig::new_lan(NonZeroU32::new(expected_size.max(3)).unwrap_or(NonZeroU32::MIN));
    c.probe_period = probe;
    c.probe_rtt = probe / 2;
    c.suspect_to_down_after = probe * SUSPECT_PROBES;
    c.remove_down_after = Some(probe * 30);
    if let Some(p) = c.periodic_announce.as_mut() {
        p.frequency = probe * 10;
    }
    if let Some(p) = c.periodic_announce_to_down_members.as_mut() {
        p.frequency = probe * 5;
    }
    if let Some(p) = c.periodic_gossip.as_mut() {
        p.frequency = probe / 5;
    }
    c
}

/// A SWIM packet to send to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwimPacket {
    /// The member it is for.
    pub to: MemberId,
    /// The packet.
    pub data: Vec<u8>,
}

/// The SWIM failure detector of one node.
pub struct SwimCore {
    swim: Box<Swim>,
    rt: AccumulatingRuntime<SwimId>,
    timers: BTreeMap<(Duration, u64), Timer<SwimId>>,
    timer_seq: u64,
    packets: VecDeque<SwimPacket>,
    /// SWIM knows at least one other active member.
    active: bool,
    /// Since when each member has been suspect in SWIM's view.
    suspect_since: BTreeMap<SwimId, Duration>,
    probe: Duration,
    last_announce: Duration,
}

impl std::fmt::Debug for SwimCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwimCore").field("active", &self.active).field("timers", &self.timers.len()).finish()
    }
}

impl SwimCore {
    /// The detector of node `me`, probing every `probe`, with randomness from `seed`.
    pub fn new(me: &MemberId, probe: Duration, seed: u64) -> Self {
        let swim = Foca::new(SwimId::of(me), swim_config(probe, 16), SmallRng::seed_from_u64(seed), PostcardCodec);
        Self {
            swim: Box::new(swim),
            rt: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            packets: VecDeque::new(),
            active: false,
            suspect_since: BTreeMap::new(),
            probe,
            last_announce: Duration::ZERO,
        }
    }

    /// A link to `who` came up: announce this node to it.
    pub fn handle_linked(&mut self, now: Duration, who: &MemberId, table: &mut MembershipTable) {
        if let Err(e) = self.swim.announce(SwimId::of(who), &mut self.rt) {
            tracing::debug!(error = %e, "swim announce");
        }
        self.drain(now, table);
    }

    /// A SWIM packet arrived. An invalid packet is an error and changes nothing.
    pub fn handle_data(&mut self, now: Duration, data: &[u8], table: &mut MembershipTable) -> Result<(), String> {
        let result = self.swim.handle_data(data, &mut self.rt).map_err(|e| e.to_string());
        self.drain(now, table);
        result
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Duration, table: &mut MembershipTable) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if let Err(e) = self.swim.handle_timer(timer, &mut self.rt) {
                tracing::debug!(error = %e, "swim timer");
            }
        }
        self.drain(now, table);
    }

    /// Periodic repairs: expires stale suspicions and, when SWIM is idle, announces to
    /// every member in `linked` (once per probe interval).
    pub fn handle_tick(&mut self, now: Duration, table: &mut MembershipTable, linked: &[MemberId]) {
        // foca stops its probe cycle when it renews its identity (told it was declared down)
        // and starts it again only when the next update is applied: with the renewal's
        // gossip lost, nothing may ever come, and a member that crashes meanwhile is never
        // probed, so never declared down. Applying nothing makes it look at its state again
        // (a no-op while it probes).
        if let Err(e) = self.swim.apply_many(std::iter::empty(), true, &mut self.rt) {
            tracing::debug!(error = %e, "swim wake-up");
        }
        self.drain(now, table);
        self.expire_suspicions(now, table);
        if !self.active && now.saturating_sub(self.last_announce) >= self.probe {
            self.last_announce = now;
            for who in linked {
                let _ = self.swim.announce(SwimId::of(who), &mut self.rt);
            }
            self.drain(now, table);
        }
    }

    /// Leaves the cluster on purpose: tells the members this node is going.
    pub fn leave(&mut self, now: Duration, table: &mut MembershipTable) {
        if let Err(e) = self.swim.leave_cluster(&mut self.rt) {
            tracing::debug!(error = %e, "swim leave");
        }
        self.drain(now, table);
    }

    /// The earliest timer deadline.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// The next packet to send.
    pub fn poll_packet(&mut self) -> Option<SwimPacket> {
        self.packets.pop_front()
    }

    /// True while SWIM knows at least one other active member.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// SWIM's own view, for diagnostics: (name, generation, state) per member, and this
    /// node's generation.
    pub fn describe(&self) -> String {
        let view: Vec<_> =
            self.swim.iter_membership_state().map(|m| (m.id().name.clone(), m.id().generation, m.state())).collect();
        format!("swim active={} {:?} self gen {}", self.active, view, self.swim.identity().generation)
    }

    /// Moves foca's outputs into packets, timers and table updates.
    fn drain(&mut self, now: Duration, table: &mut MembershipTable) {
        while let Some((to, data)) = self.rt.to_send() {
            self.packets.push_back(SwimPacket { to: to.member_id(), data: data.to_vec() });
        }
        while let Some((after, timer)) = self.rt.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        while let Some(n) = self.rt.to_notify() {
            match n {
                foca::OwnedNotification::MemberUp(id) => table.handle_alive(now, &id.member_id()),
                foca::OwnedNotification::MemberDown(id) => table.handle_down(now, &id.member_id()),
                foca::OwnedNotification::Rename(_, new) => {
                    if self.swim.iter_members().any(|m| m.id() == &new) {
                        table.handle_alive(now, &new.member_id());
                    }
                }
                foca::OwnedNotification::Active => self.active = true,
                foca::OwnedNotification::Idle | foca::OwnedNotification::Defunct => self.active = false,
                other => tracing::debug!(notification = ?other, "swim"),
            }
        }
        for m in self.swim.iter_membership_state() {
            let who = m.id().member_id();
            let known = table.get(&who.name).filter(|t| t.id == who.id).map(|t| t.status);
            match (m.state(), known) {
                (foca::State::Suspect, Some(MemberStatus::Up | MemberStatus::Joining)) => {
                    table.handle_suspect(now, &who)
                }
                (foca::State::Alive, Some(MemberStatus::Suspect | MemberStatus::Joining)) => {
                    table.handle_alive(now, &who)
                }
                (
                    foca::State::Down,
                    Some(MemberStatus::Up | MemberStatus::Joining | MemberStatus::Suspect | MemberStatus::Leaving),
                ) => table.handle_down(now, &who),
                _ => {}
            }
        }
    }

    fn expire_suspicions(&mut self, now: Duration, table: &mut MembershipTable) {
        let suspects: Vec<(SwimId, foca::Incarnation)> = self
            .swim
            .iter_membership_state()
            .filter(|m| m.state() == foca::State::Suspect)
            .map(|m| (m.id().clone(), m.incarnation()))
            .collect();
        self.suspect_since.retain(|id, _| suspects.iter().any(|(s, _)| s == id));
        let limit = self.probe * SUSPECT_PROBES * 2;
        let mut expired = Vec::new();
        for (id, incarnation) in suspects {
            let since = *self.suspect_since.entry(id.clone()).or_insert(now);
            if now.saturating_sub(since) >= limit {
                expired.push(foca::Member::new(id, incarnation, foca::State::Down));
            }
        }
        if expired.is_empty() {
            return;
        }
        tracing::debug!(count = expired.len(), "suspicions expired without refutation");
        if let Err(e) = self.swim.apply_many(expired.into_iter(), true, &mut self.rt) {
            tracing::debug!(error = %e, "swim apply");
        }
        self.drain(now, table);
    }
}

#[cfg(test)]
mod tests {
    //! Several SWIM cores exchanging packets on virtual time: packets arrive at once,
    //! timers fire in deadline order, a crashed node neither sends nor receives.

    use super::*;
    use crate::proto::membership::table::Profile;

    struct Node {
        me: MemberId,
        core: SwimCore,
        table: MembershipTable,
        alive: bool,
    }

    struct Net {
        nodes: Vec<Node>,
        now: Duration,
        probe: Duration,
        next_tick: Duration,
    }

    fn member(i: usize) -> MemberId {
        MemberId { id: NodeId(i as u128 + 1), name: format!("n{i}"), addr: format!("n{i}:1"), generation: 1 }
    }

    impl Net {
        fn new(n: usize, probe: Duration) -> Self {
            let nodes = (0..n)
                .map(|i| {
                    let me = member(i);
                    Node {
                        core: SwimCore::new(&me, probe, i as u64),
                        table: MembershipTable::new(me.clone(), Profile::default(), Duration::from_secs(60)),
                        me,
                        alive: true,
                    }
                })
                .collect();
            Net { nodes, now: Duration::ZERO, probe, next_tick: probe / 4 }
        }

        /// Links everyone to node 0, as seed links would.
        fn join_all_through(&mut self, seed: usize) {
            for i in 0..self.nodes.len() {
                if i != seed {
                    let (s, o) = (self.nodes[seed].me.clone(), self.nodes[i].me.clone());
                    let now = self.now;
                    let n = &mut self.nodes[i];
                    n.core.handle_linked(now, &s, &mut n.table);
                    let n = &mut self.nodes[seed];
                    n.core.handle_linked(now, &o, &mut n.table);
                }
            }
        }

        fn deliver(&mut self) {
            loop {
                let mut moved = false;
                for i in 0..self.nodes.len() {
                    while let Some(p) = self.nodes[i].core.poll_packet() {
                        moved = true;
                        if !self.nodes[i].alive {
                            continue;
                        }
                        let Some(j) = self.nodes.iter().position(|n| n.me.name == p.to.name) else { continue };
                        if self.nodes[j].alive {
                            let now = self.now;
                            let n = &mut self.nodes[j];
                            n.core.handle_data(now, &p.data, &mut n.table).expect("valid packet");
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
        }

        /// Advances virtual time to the next timer or tick and fires it.
        fn step(&mut self) {
            self.deliver();
            let next_timer = self.nodes.iter().filter(|n| n.alive).filter_map(|n| n.core.poll_timeout()).min();
            let next = next_timer.map_or(self.next_tick, |t| t.min(self.next_tick));
            self.now = next.max(self.now);
            let now = self.now;
            for n in self.nodes.iter_mut().filter(|n| n.alive) {
                n.core.handle_timeout(now, &mut n.table);
            }
            if now >= self.next_tick {
                self.next_tick = now + self.probe / 4;
                let all: Vec<MemberId> = self.nodes.iter().map(|n| n.me.clone()).collect();
                for n in self.nodes.iter_mut().filter(|n| n.alive) {
                    let linked: Vec<MemberId> = all.iter().filter(|m| m.name != n.me.name).cloned().collect();
                    n.core.handle_tick(now, &mut n.table, &linked);
                }
            }
            self.deliver();
        }

        fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> Duration {
            let start = self.now;
            while !done(self) {
                assert!(self.now - start < limit, "not reached within {limit:?} of virtual time");
                self.step();
            }
            self.now - start
        }

        fn status(&self, at: usize, of: usize) -> Option<MemberStatus> {
            self.nodes[at].table.get(&self.nodes[of].me.name).map(|m| m.status)
        }
    }

    const PROBE: Duration = Duration::from_millis(200);

    #[test]
    fn members_joining_through_one_seed_all_see_each_other_up() {
        let mut net = Net::new(5, PROBE);
        net.join_all_through(0);
        let took = net.run_until(Duration::from_secs(10), |net| {
            (0..5).all(|i| (0..5).all(|j| i == j || net.status(i, j) == Some(MemberStatus::Up)))
        });
        assert!(took <= PROBE * 10, "converged in {took:?}");
    }

    #[test]
    fn a_crashed_member_is_suspected_then_declared_down_by_all_within_the_bound() {
        let mut net = Net::new(4, PROBE);
        net.join_all_through(0);
        net.run_until(Duration::from_secs(10), |net| (1..4).all(|j| net.status(0, j) == Some(MemberStatus::Up)));
        net.run_until(Duration::from_secs(10), |net| {
            (0..4).all(|i| (0..4).all(|j| i == j || net.status(i, j) == Some(MemberStatus::Up)))
        });
        net.nodes[3].alive = false;
        let took =
            net.run_until(Duration::from_secs(30), |net| (0..3).all(|i| net.status(i, 3) == Some(MemberStatus::Down)));
        // Probe, indirect probes, then the suspicion timeout of five probe intervals.
        assert!(took >= PROBE * SUSPECT_PROBES, "not before the suspicion timeout: {took:?}");
        assert!(took <= PROBE * 12, "declared down in {took:?}");
        for i in 0..3 {
            for j in 0..3 {
                assert_eq!(net.status(i, j), Some(MemberStatus::Up), "n{i} still sees n{j} up");
            }
        }
    }

    #[test]
    fn a_member_that_crashes_while_this_node_renews_its_identity_is_still_declared_down() {
        // n2 (overloaded, say) tells n0 and n1 they are down; they come back as newer
        // generations (foca's rejoin stops its probe cycle until something wakes it), the
        // gossip of their renewal is lost, and n2 crashes. n0 and n1 must still find out.
        let mut net = Net::new(3, PROBE);
        net.join_all_through(0);
        net.run_until(Duration::from_secs(10), |net| {
            (0..3).all(|i| (0..3).all(|j| i == j || net.status(i, j) == Some(MemberStatus::Up)))
        });
        for i in 0..2 {
            let now = net.now;
            let n = &mut net.nodes[i];
            let renewed = n.core.swim.identity().renew().expect("renewable");
            n.core.swim.change_identity(renewed, &mut n.core.rt).expect("renew");
            n.core.drain(now, &mut n.table);
            n.core.packets.clear();
        }
        net.nodes[2].alive = false;
        let took =
            net.run_until(Duration::from_secs(30), |net| (0..2).all(|i| net.status(i, 2) == Some(MemberStatus::Down)));
        assert!(took <= PROBE * 15, "declared down in {took:?}");
    }

    #[test]
    fn an_idle_node_announces_to_its_linked_peers() {
        // Two nodes that know nothing of each other through SWIM: the ticks announce.
        let mut net = Net::new(2, PROBE);
        assert!(!net.nodes[0].core.is_active());
        let took = net.run_until(Duration::from_secs(5), |net| {
            net.status(0, 1) == Some(MemberStatus::Up) && net.status(1, 0) == Some(MemberStatus::Up)
        });
        assert!(took <= PROBE * 3, "announced and joined in {took:?}");
        assert!(net.nodes[0].core.is_active() && net.nodes[1].core.is_active());
    }

    #[test]
    fn a_graceful_leave_is_seen_as_down_by_the_others() {
        let mut net = Net::new(3, PROBE);
        net.join_all_through(0);
        net.run_until(Duration::from_secs(10), |net| {
            (0..3).all(|i| (0..3).all(|j| i == j || net.status(i, j) == Some(MemberStatus::Up)))
        });
        let now = net.now;
        let n = &mut net.nodes[2];
        n.core.leave(now, &mut n.table);
        net.deliver();
        net.nodes[2].alive = false;
        let took =
            net.run_until(Duration::from_secs(10), |net| (0..2).all(|i| net.status(i, 2) == Some(MemberStatus::Down)));
        assert!(took < PROBE * SUSPECT_PROBES, "a leave is faster than failure detection: {took:?}");
    }

    #[test]
    fn garbage_is_rejected_without_changing_anything() {
        let mut net = Net::new(1, PROBE);
        let now = net.now;
        let n = &mut net.nodes[0];
        assert!(n.core.handle_data(now, &[0xff, 0x00, 0x13], &mut n.table).is_err());
        assert_eq!(n.table.members().len(), 1);
    }
}
