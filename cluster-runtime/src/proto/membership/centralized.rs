//! The centralized architecture's two roles.
//!
//! - A **master** accepts workers as their links come up, watches the resource reports they
//!   send every probe interval with a phi accrual detector (suspect at half the threshold,
//!   down at the threshold), and publishes its view, with a version that grows with every
//!   change, on each change and every two probe intervals.
//! - A **worker** applies the newest view of each master and links to the members it lists.
//!
//! Both update the [`MembershipTable`] and return what to send; the caller addresses it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::NodeId;
use crate::proto::membership::phi_accrual::{PhiAccrual, PhiSettings};
use crate::proto::membership::table::{Member, MemberId, MemberStatus, MembershipTable};

/// A master republishes its view at least this many probe intervals apart.
const VIEW_EVERY_PROBES: u32 = 2;

/// A view to publish to every linked node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The view's version.
    pub version: u64,
    /// Every member, the master included.
    pub members: Vec<Member>,
}

/// The master's state.
#[derive(Debug)]
pub struct MasterCore {
    version: u64,
    detectors: BTreeMap<String, (NodeId, PhiAccrual)>,
    settings: PhiSettings,
    probe: Duration,
    last_view: Duration,
}

impl MasterCore {
    /// A master whose workers report every `probe`.
    pub fn new(probe: Duration) -> Self {
        Self {
            version: 1,
            detectors: BTreeMap::new(),
            settings: PhiSettings::for_interval(probe),
            probe,
            last_view: Duration::ZERO,
        }
    }

    /// A node linked to the master: it is up, and watched from now on.
    pub fn handle_linked(&mut self, now: Duration, who: &MemberId, table: &mut MembershipTable) -> View {
        let mut phi = PhiAccrual::new(self.settings);
        phi.heartbeat(now);
        self.detectors.insert(who.name.clone(), (who.id, phi));
        table.handle_alive(now, who);
        self.publish(now, table)
    }

    /// A node's link ended; a node that said it is shutting down has left.
    pub fn handle_unlinked(
        &mut self,
        now: Duration,
        who: &MemberId,
        leaving: bool,
        table: &mut MembershipTable,
    ) -> Option<View> {
        if !leaving {
            return None; // the detector decides
        }
        self.detectors.remove(&who.name);
        table.handle_down(now, who);
        Some(self.publish(now, table))
    }

    /// A resource report from `from` is its heartbeat; a member not up is up again.
    pub fn handle_report(
        &mut self,
        now: Duration,
        from: NodeId,
        name: &str,
        table: &mut MembershipTable,
    ) -> Option<View> {
        if let Some((id, phi)) = self.detectors.get_mut(name) {
            if *id == from {
                phi.heartbeat(now);
            }
        }
        let member = table.get(name).filter(|m| m.id == from)?;
        if member.status == MemberStatus::Up {
            return None;
        }
        let who = MemberId::of(member);
        table.handle_alive(now, &who);
        Some(self.publish(now, table))
    }

    /// Judges every worker and republishes when something changed or the view is due.
    pub fn handle_tick(&mut self, now: Duration, table: &mut MembershipTable) -> Option<View> {
        let threshold = self.settings.threshold;
        let mut changed = false;
        for (name, (id, phi)) in &self.detectors {
            let Some(member) = table.get(name).filter(|m| m.id == *id) else { continue };
            let (status, who) = (member.status, MemberId::of(member));
            let phi_now = phi.phi(now);
            if phi_now >= threshold && status != MemberStatus::Down {
                table.handle_down(now, &who);
                changed = true;
            } else if phi_now >= threshold / 2.0 && status == MemberStatus::Up {
                table.handle_suspect(now, &who);
                changed = true;
            }
        }
        if changed || now.saturating_sub(self.last_view) >= self.probe * VIEW_EVERY_PROBES {
            Some(self.publish(now, table))
        } else {
            None
        }
    }

    fn publish(&mut self, now: Duration, table: &MembershipTable) -> View {
        self.version += 1;
        self.last_view = now;
        View { version: self.version, members: table.members() }
    }
}

/// A worker's state.
#[derive(Debug, Default)]
pub struct WorkerCore {
    versions: BTreeMap<String, u64>,
}

/// Why a worker ignored a view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The sender is not one of the configured masters.
    #[error("membership view from `{0}`, which is not a master; ignored")]
    NotAMaster(String),
}

impl WorkerCore {
    /// A worker that has seen no view.
    pub fn new() -> Self {
        Self::default()
    }

    /// A view from `from`: applied if `from` is a master and the view is newer than the
    /// last one it sent. Returns the members to link to.
    pub fn handle_view(
        &mut self,
        now: Duration,
        from: &str,
        is_master: bool,
        view: View,
        table: &mut MembershipTable,
    ) -> Result<Vec<Member>, ViewError> {
        if !is_master {
            return Err(ViewError::NotAMaster(from.to_owned()));
        }
        if self.versions.get(from).is_some_and(|v| *v >= view.version) {
            return Ok(Vec::new());
        }
        self.versions.insert(from.to_owned(), view.version);
        table.handle_view(now, &view.members);
        Ok(view.members.into_iter().filter(|m| m.status == MemberStatus::Up).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::membership::table::Profile;

    const PROBE: Duration = Duration::from_millis(100);

    fn who(name: &str, id: u128) -> MemberId {
        MemberId { id: NodeId(id), name: name.into(), addr: format!("{name}:1"), generation: 1 }
    }

    fn table(name: &str, id: u128) -> MembershipTable {
        MembershipTable::new(who(name, id), Profile::default(), Duration::from_secs(60))
    }

    fn status(t: &MembershipTable, name: &str) -> Option<MemberStatus> {
        t.get(name).map(|m| m.status)
    }

    #[test]
    fn a_silent_worker_is_suspected_then_down_and_a_report_brings_it_back() {
        let mut t = table("m", 1);
        let mut master = MasterCore::new(PROBE);
        let v1 = master.handle_linked(Duration::ZERO, &who("w", 2), &mut t);
        assert_eq!(status(&t, "w"), Some(MemberStatus::Up));
        let mut now = Duration::ZERO;
        // Regular reports keep it up; views go out every two probe intervals.
        let mut views = vec![v1.version];
        for _ in 0..20 {
            now += PROBE;
            assert_eq!(master.handle_report(now, NodeId(2), "w", &mut t), None);
            if let Some(v) = master.handle_tick(now, &mut t) {
                views.push(v.version);
            }
        }
        assert_eq!(status(&t, "w"), Some(MemberStatus::Up));
        assert!(views.windows(2).all(|w| w[1] > w[0]), "versions grow: {views:?}");
        assert!((9..=11).contains(&views.len()), "a view every two probes: {}", views.len());
        // Silence: suspect, then down, each announced in a view.
        let silent_from = now;
        let mut suspect_at = None;
        while status(&t, "w") != Some(MemberStatus::Down) {
            now += PROBE / 4;
            master.handle_tick(now, &mut t);
            if suspect_at.is_none() && status(&t, "w") == Some(MemberStatus::Suspect) {
                suspect_at = Some(now - silent_from);
            }
            assert!(now - silent_from < PROBE * 20, "never declared down");
        }
        let down_after = now - silent_from;
        let suspect_after = suspect_at.expect("suspected before down");
        assert!(suspect_after < down_after, "{suspect_after:?} then {down_after:?}");
        assert!(down_after >= PROBE * 3, "not before the acceptable pause: {down_after:?}");
        let back = master.handle_report(now, NodeId(2), "w", &mut t).expect("republished");
        assert_eq!(status(&t, "w"), Some(MemberStatus::Up));
        assert!(back.members.iter().any(|m| m.name == "w" && m.status == MemberStatus::Up));
    }

    #[test]
    fn a_report_from_an_old_incarnation_is_not_a_heartbeat() {
        let mut t = table("m", 1);
        let mut master = MasterCore::new(PROBE);
        master.handle_linked(Duration::ZERO, &who("w", 2), &mut t);
        assert_eq!(master.handle_report(PROBE, NodeId(99), "w", &mut t), None);
    }

    #[test]
    fn a_leaving_worker_is_down_at_once_and_a_dropped_link_waits_for_the_detector() {
        let mut t = table("m", 1);
        let mut master = MasterCore::new(PROBE);
        master.handle_linked(Duration::ZERO, &who("a", 2), &mut t);
        master.handle_linked(Duration::ZERO, &who("b", 3), &mut t);
        assert_eq!(master.handle_unlinked(PROBE, &who("a", 2), false, &mut t), None);
        assert_eq!(status(&t, "a"), Some(MemberStatus::Up));
        let view = master.handle_unlinked(PROBE, &who("b", 3), true, &mut t).expect("published");
        assert_eq!(status(&t, "b"), Some(MemberStatus::Down));
        assert!(view.members.iter().any(|m| m.name == "b" && m.status == MemberStatus::Down));
    }

    #[test]
    fn a_worker_applies_only_newer_views_from_masters() {
        let mut t = table("w", 5);
        let mut worker = WorkerCore::new();
        let member = |name: &str, id: u128, status| Member {
            id: NodeId(id),
            name: name.into(),
            addr: format!("{name}:1"),
            generation: 1,
            profile: Profile::default(),
            status,
            resources: None,
        };
        let v2 = View { version: 2, members: vec![member("m", 1, MemberStatus::Up), member("x", 7, MemberStatus::Up)] };
        let links = worker.handle_view(PROBE, "m", true, v2.clone(), &mut t).expect("applied");
        assert_eq!(links.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["m", "x"]);
        assert_eq!(status(&t, "x"), Some(MemberStatus::Up));
        let stale = View { version: 1, members: vec![member("m", 1, MemberStatus::Up)] };
        assert_eq!(worker.handle_view(PROBE, "m", true, stale, &mut t), Ok(vec![]));
        assert_eq!(status(&t, "x"), Some(MemberStatus::Up), "a stale view changes nothing");
        assert_eq!(worker.handle_view(PROBE, "x", false, v2, &mut t), Err(ViewError::NotAMaster("x".into())));
        let v3 = View { version: 3, members: vec![member("m", 1, MemberStatus::Up)] };
        worker.handle_view(PROBE, "m", true, v3, &mut t).expect("applied");
        assert!(t.get("x").is_none(), "a member missing from the view is removed");
    }
}
