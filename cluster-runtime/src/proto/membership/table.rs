//! The membership table: who is in the cluster, in which state, with which profile and
//! resources. A pure state machine: inputs are `handle_*(now, ..)` calls from the failure
//! detector (SWIM in the decentralized architecture, the master's view in the centralized
//! one) and from links; outputs are [`MembershipEvent`]s taken with [`MembershipTable::poll_event`].
//! Time is injected as a `Duration` since an arbitrary origin.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// What a node says about itself: roles, capabilities and free-form metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Roles, e.g. `"frontend"`, `"storage"`.
    pub roles: Vec<String>,
    /// Capabilities, e.g. `"gpu"`.
    pub capabilities: Vec<String>,
    /// Free-form key/value metadata.
    pub metadata: BTreeMap<String, String>,
}

/// A node's resource report, refreshed periodically.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceReport {
    /// CPU used by the node's process since the previous report, in thousandths of a core.
    pub cpu_millicores: u32,
    /// Resident memory of the node's process, in bytes.
    pub memory_bytes: u64,
    /// Actors on the node reachable from the network.
    pub actor_count: u64,
    /// Requests the node has sent and not yet had answered, plus frames queued on its links.
    pub in_flight: u64,
}

/// The state of a member, as in Akka Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Linked, not yet confirmed by the failure detector.
    Joining,
    /// Confirmed alive.
    Up,
    /// Some member failed to reach it; it may refute.
    Suspect,
    /// Declared failed.
    Down,
    /// Leaving on purpose.
    Leaving,
    /// Gone (failed or left) and forgotten after a retention period; last state reported.
    Removed,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node id of this incarnation.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Address it accepts links on.
    pub addr: String,
    /// Incarnation generation: a restarted node has a higher one.
    pub generation: u64,
    /// Roles, capabilities, metadata.
    pub profile: Profile,
    /// Current state.
    pub status: MemberStatus,
    /// Latest resource report, if any arrived.
    pub resources: Option<ResourceReport>,
}

/// A change of membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member became (or became again) `Up`.
    MemberUp(Member),
    /// A member is suspected to have failed.
    MemberSuspect(Member),
    /// A member was declared down.
    MemberDown(Member),
    /// A member left gracefully.
    MemberLeft(Member),
    /// A member was removed (after being down or leaving, or replaced by a newer
    /// incarnation of the same node).
    MemberRemoved(Member),
    /// A member's resource report changed.
    ResourcesChanged(Member),
}

impl MembershipEvent {
    /// A short name of the event's kind: `up`, `suspect`, `down`, `left`, `removed`, `resources`.
    pub fn kind(&self) -> &'static str {
        match self {
            MembershipEvent::MemberUp(_) => "up",
            MembershipEvent::MemberSuspect(_) => "suspect",
            MembershipEvent::MemberDown(_) => "down",
            MembershipEvent::MemberLeft(_) => "left",
            MembershipEvent::MemberRemoved(_) => "removed",
            MembershipEvent::ResourcesChanged(_) => "resources",
        }
    }

    /// The member the event is about.
    pub fn member(&self) -> &Member {
        match self {
            MembershipEvent::MemberUp(m)
            | MembershipEvent::MemberSuspect(m)
            | MembershipEvent::MemberDown(m)
            | MembershipEvent::MemberLeft(m)
            | MembershipEvent::MemberRemoved(m)
            | MembershipEvent::ResourcesChanged(m) => m,
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    member: Member,
    /// When it entered Down/Leaving-completed, for removal after the retention period.
    gone_since: Option<Duration>,
    left: bool,
}

/// The membership table of one node.
#[derive(Debug)]
pub struct MembershipTable {
    local: String,
    members: BTreeMap<String, Record>,
    events: VecDeque<MembershipEvent>,
    retention: Duration,
}

/// Identity facts about a member, as the failure detector or a link reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberId {
    /// Node id.
    pub id: NodeId,
    /// Node name.
    pub name: String,
    /// Listen address.
    pub addr: String,
    /// Generation.
    pub generation: u64,
}

impl MemberId {
    /// The identity facts of `member`.
    pub fn of(member: &Member) -> Self {
        Self { id: member.id, name: member.name.clone(), addr: member.addr.clone(), generation: member.generation }
    }
}

impl MembershipTable {
    /// A table for the node `local` (itself `Up`), forgetting gone members after `retention`.
    pub fn new(local: MemberId, profile: Profile, retention: Duration) -> Self {
        let mut t = Self { local: local.name.clone(), members: BTreeMap::new(), events: VecDeque::new(), retention };
        let member = Member {
            id: local.id,
            name: local.name.clone(),
            addr: local.addr,
            generation: local.generation,
            profile,
            status: MemberStatus::Up,
            resources: None,
        };
        t.members.insert(local.name, Record { member, gone_since: None, left: false });
        t
    }

    /// All known members (including this node), by name.
    pub fn members(&self) -> Vec<Member> {
        self.members.values().map(|r| r.member.clone()).collect()
    }

    /// The member of that name.
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.members.get(name).map(|r| &r.member)
    }

    /// Takes the next event.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, name: &str, make: fn(Member) -> MembershipEvent) {
        if let Some(r) = self.members.get(name) {
            self.events.push_back(make(r.member.clone()));
        }
    }

    /// Looks up the record for `who`, replacing an older incarnation of the same node
    /// (which is reported removed). Returns `None` if `who` is older than what is known.
    fn record_for(&mut self, who: &MemberId, initial: MemberStatus) -> Option<&mut Record> {
        if who.name == self.local {
            return None;
        }
        let newer = match self.members.get_mut(&who.name) {
            None => true,
            Some(r) if r.member.id == who.id => {
                // The same process, renewed after being declared down: a higher generation
                // refreshes the record; news about a lower one is stale.
                if who.generation < r.member.generation {
                    return None;
                }
                r.member.generation = who.generation;
                false
            }
            Some(r) => {
                if (who.generation, who.id) < (r.member.generation, r.member.id) {
                    return None;
                }
                true
            }
        };
        if newer {
            if let Some(old) = self.members.remove(&who.name) {
                let mut m = old.member;
                m.status = MemberStatus::Removed;
                self.events.push_back(MembershipEvent::MemberRemoved(m));
            }
            let member = Member {
                id: who.id,
                name: who.name.clone(),
                addr: who.addr.clone(),
                generation: who.generation,
                profile: Profile::default(),
                status: initial,
                resources: None,
            };
            self.members.insert(who.name.clone(), Record { member, gone_since: None, left: false });
        }
        self.members.get_mut(&who.name)
    }

    /// A link to `who` came up (with its profile): unknown members start as `Joining`.
    pub fn handle_linked(&mut self, _now: Duration, who: &MemberId, profile: Profile) {
        if let Some(r) = self.record_for(who, MemberStatus::Joining) {
            r.member.profile = profile;
        }
    }

    /// The failure detector confirmed `who` alive (joined, or refuted a suspicion).
    pub fn handle_alive(&mut self, _now: Duration, who: &MemberId) {
        let Some(r) = self.record_for(who, MemberStatus::Joining) else { return };
        if matches!(r.member.status, MemberStatus::Joining | MemberStatus::Suspect | MemberStatus::Down) {
            r.member.status = MemberStatus::Up;
            r.gone_since = None;
            r.left = false;
            let name = who.name.clone();
            self.emit(&name, MembershipEvent::MemberUp);
        }
    }

    /// The failure detector suspects `who`.
    pub fn handle_suspect(&mut self, _now: Duration, who: &MemberId) {
        let Some(r) = self.record_for(who, MemberStatus::Joining) else { return };
        if matches!(r.member.status, MemberStatus::Joining | MemberStatus::Up) {
            r.member.status = MemberStatus::Suspect;
            let name = who.name.clone();
            self.emit(&name, MembershipEvent::MemberSuspect);
        }
    }

    /// The record of `who` if it is another member, the same incarnation (not older) and
    /// not already gone.
    fn live_record(&mut self, who: &MemberId) -> Option<&mut Record> {
        if who.name == self.local {
            return None;
        }
        let r = self.members.get_mut(&who.name)?;
        let stale = r.member.id != who.id || who.generation < r.member.generation;
        let gone = matches!(r.member.status, MemberStatus::Down | MemberStatus::Removed);
        if stale || gone {
            None
        } else {
            Some(r)
        }
    }

    /// `who` announced that it is leaving.
    pub fn handle_leaving(&mut self, _now: Duration, who: &MemberId) {
        let Some(r) = self.live_record(who) else { return };
        r.member.status = MemberStatus::Leaving;
        r.left = true;
    }

    /// The failure detector declared `who` down (or it finished leaving).
    pub fn handle_down(&mut self, now: Duration, who: &MemberId) {
        let Some(r) = self.live_record(who) else { return };
        r.member.status = MemberStatus::Down;
        r.gone_since = Some(now);
        let left = r.left;
        let name = who.name.clone();
        if left {
            self.emit(&name, MembershipEvent::MemberLeft);
        } else {
            self.emit(&name, MembershipEvent::MemberDown);
        }
    }

    /// A new resource report from `name` (ignored for unknown or gone members).
    pub fn handle_resources(&mut self, _now: Duration, id: NodeId, name: &str, report: ResourceReport) {
        let Some(r) = self.members.get_mut(name) else { return };
        if r.member.id != id || r.member.resources == Some(report) {
            return;
        }
        r.member.resources = Some(report);
        if !matches!(r.member.status, MemberStatus::Down | MemberStatus::Removed) {
            self.emit(name, MembershipEvent::ResourcesChanged);
        }
    }

    /// Removes members gone for longer than the retention period.
    pub fn handle_tick(&mut self, now: Duration) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, r)| r.gone_since.is_some_and(|t| now.saturating_sub(t) >= self.retention))
            .map(|(n, _)| n.clone())
            .collect();
        for name in expired {
            if let Some(r) = self.members.remove(&name) {
                let mut m = r.member;
                m.status = MemberStatus::Removed;
                self.events.push_back(MembershipEvent::MemberRemoved(m));
            }
        }
    }

    /// Replaces the table with a view received from a master (centralized architecture):
    /// members missing from the view are removed, the others take the view's state.
    pub fn handle_view(&mut self, now: Duration, view: &[Member]) {
        for m in view {
            if m.name == self.local {
                continue;
            }
            let who = MemberId::of(m);
            if let Some(r) = self.record_for(&who, MemberStatus::Joining) {
                r.member.profile = m.profile.clone();
            }
            match m.status {
                MemberStatus::Up | MemberStatus::Joining => self.handle_alive(now, &who),
                MemberStatus::Suspect => self.handle_suspect(now, &who),
                MemberStatus::Leaving => self.handle_leaving(now, &who),
                MemberStatus::Down | MemberStatus::Removed => self.handle_down(now, &who),
            }
            if let Some(res) = m.resources {
                self.handle_resources(now, m.id, &m.name, res);
            }
        }
        let in_view: std::collections::BTreeSet<&str> = view.iter().map(|m| m.name.as_str()).collect();
        let dropped: Vec<String> =
            self.members.keys().filter(|n| **n != self.local && !in_view.contains(n.as_str())).cloned().collect();
        for name in dropped {
            if let Some(r) = self.members.remove(&name) {
                let mut m = r.member;
                m.status = MemberStatus::Removed;
                self.events.push_back(MembershipEvent::MemberRemoved(m));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, id: u128, generation: u64) -> MemberId {
        MemberId { id: NodeId(id), name: name.into(), addr: format!("{name}:1"), generation }
    }

    fn table() -> MembershipTable {
        MembershipTable::new(id("a", 1, 1), Profile::default(), Duration::from_secs(10))
    }

    fn drain(t: &mut MembershipTable) -> Vec<(String, &'static str, u128)> {
        let mut out = Vec::new();
        while let Some(e) = t.poll_event() {
            out.push((e.member().name.clone(), e.kind(), e.member().id.0));
        }
        out
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn a_member_joins_is_suspected_refutes_and_goes_down() {
        let mut t = table();
        let b = id("b", 2, 1);
        t.handle_linked(T0, &b, Profile { roles: vec!["worker".into()], ..Profile::default() });
        assert_eq!(t.get("b").map(|m| m.status), Some(MemberStatus::Joining));
        t.handle_alive(T0, &b);
        t.handle_suspect(T0, &b);
        t.handle_alive(T0, &b);
        t.handle_suspect(T0, &b);
        t.handle_down(T0, &b);
        t.handle_down(T0, &b);
        assert_eq!(
            drain(&mut t),
            vec![
                ("b".into(), "up", 2),
                ("b".into(), "suspect", 2),
                ("b".into(), "up", 2),
                ("b".into(), "suspect", 2),
                ("b".into(), "down", 2)
            ]
        );
        assert_eq!(t.get("b").map(|m| m.profile.roles.clone()), Some(vec!["worker".to_string()]));
    }

    #[test]
    fn a_graceful_leave_is_reported_as_left_and_removed_after_retention() {
        let mut t = table();
        let b = id("b", 2, 1);
        t.handle_alive(T0, &b);
        t.handle_leaving(T0, &b);
        t.handle_down(Duration::from_secs(1), &b);
        t.handle_tick(Duration::from_secs(5));
        assert!(t.get("b").is_some(), "kept during retention");
        t.handle_tick(Duration::from_secs(11));
        assert!(t.get("b").is_none());
        let kinds: Vec<_> = drain(&mut t).into_iter().map(|e| e.1).collect();
        assert_eq!(kinds, ["up", "left", "removed"]);
    }

    #[test]
    fn a_restarted_node_replaces_its_old_incarnation() {
        let mut t = table();
        t.handle_alive(T0, &id("b", 2, 1));
        t.handle_alive(T0, &id("b", 3, 2));
        // A late message about the old incarnation changes nothing.
        t.handle_suspect(T0, &id("b", 2, 1));
        t.handle_alive(T0, &id("b", 2, 1));
        assert_eq!(t.get("b").map(|m| (m.id, m.status)), Some((NodeId(3), MemberStatus::Up)));
        assert_eq!(drain(&mut t), vec![("b".into(), "up", 2), ("b".into(), "removed", 2), ("b".into(), "up", 3)]);
    }

    #[test]
    fn a_renewed_generation_of_the_same_process_ignores_stale_news() {
        let mut t = table();
        t.handle_alive(T0, &id("b", 2, 1));
        t.handle_down(T0, &id("b", 2, 1));
        t.handle_alive(T0, &id("b", 2, 2));
        t.handle_down(T0, &id("b", 2, 1));
        t.handle_suspect(T0, &id("b", 2, 1));
        assert_eq!(t.get("b").map(|m| (m.generation, m.status)), Some((2, MemberStatus::Up)));
        let kinds: Vec<_> = drain(&mut t).into_iter().map(|e| e.1).collect();
        assert_eq!(kinds, ["up", "down", "up"], "no removal: the same process came back");
    }

    #[test]
    fn resources_are_reported_once_per_change_and_the_local_node_is_never_touched() {
        let mut t = table();
        let b = id("b", 2, 1);
        t.handle_alive(T0, &b);
        let r = ResourceReport { actor_count: 3, ..ResourceReport::default() };
        t.handle_resources(T0, NodeId(2), "b", r);
        t.handle_resources(T0, NodeId(2), "b", r);
        t.handle_resources(T0, NodeId(9), "b", ResourceReport::default());
        t.handle_down(T0, &id("a", 1, 1));
        assert_eq!(t.get("a").map(|m| m.status), Some(MemberStatus::Up));
        let kinds: Vec<_> = drain(&mut t).into_iter().map(|e| e.1).collect();
        assert_eq!(kinds, ["up", "resources"]);
    }

    #[test]
    fn a_master_view_is_applied_and_missing_members_are_removed() {
        let mut t = table();
        t.handle_alive(T0, &id("old", 7, 1));
        let view = vec![
            Member {
                id: NodeId(2),
                name: "b".into(),
                addr: "b:1".into(),
                generation: 1,
                profile: Profile::default(),
                status: MemberStatus::Up,
                resources: None,
            },
            Member {
                id: NodeId(3),
                name: "c".into(),
                addr: "c:1".into(),
                generation: 1,
                profile: Profile::default(),
                status: MemberStatus::Down,
                resources: None,
            },
        ];
        t.handle_view(T0, &view);
        assert_eq!(t.get("b").map(|m| m.status), Some(MemberStatus::Up));
        assert_eq!(t.get("c").map(|m| m.status), Some(MemberStatus::Down));
        assert!(t.get("old").is_none());
        let events = drain(&mut t);
        assert!(events.contains(&("old".into(), "removed", 7)), "{events:?}");
    }
}
