//! One node's membership: the [`MembershipTable`] fed by the failure detector of its role
//! (SWIM, a master or a worker), links and frames, as one pure state machine.
//!
//! Inputs are `handle_*(now, ..)`; after each, take outputs in this order:
//! [`poll_transmit`](MembershipCore::poll_transmit) (frames to send),
//! [`poll_connect`](MembershipCore::poll_connect) (members to link to),
//! [`poll_event`](MembershipCore::poll_event) (table changes), then
//! [`poll_timeout`](MembershipCore::poll_timeout) for when to call
//! [`handle_timeout`](MembershipCore::handle_timeout) next. Resource reports are measured
//! by the caller when [`report_due`](MembershipCore::report_due) says so.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::ids::NodeId;
use crate::proto::membership::centralized::{MasterCore, View, WorkerCore};
use crate::proto::membership::frames::MembershipFrame;
use crate::proto::membership::swim::SwimCore;
use crate::proto::membership::table::{
    Member, MemberId, MemberStatus, MembershipEvent, MembershipTable, Profile, ResourceReport,
};

/// Which failure detector a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decentralized: SWIM.
    Swim,
    /// Centralized, as a master.
    Master,
    /// Centralized, as a worker.
    Worker,
}

/// The settings of a [`MembershipCore`].
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// The centralized architecture (masters and workers) rather than SWIM.
    pub centralized: bool,
    /// The masters' names (centralized architecture); a node listed here is a master.
    pub masters: Vec<String>,
    /// SWIM's probe interval; the interval workers report at.
    pub probe_interval: Duration,
    /// How often other nodes report resources (`None`: never).
    pub resource_interval: Option<Duration>,
    /// How long a member that is gone stays listed.
    pub down_retention: Duration,
    /// Seed of SWIM's randomness.
    pub seed: u64,
    /// Whether DNS discovery runs (looked up every [`DNS_EVERY_PROBES`] probe intervals).
    pub dns_discovery: bool,
}

/// DNS discovery looks the name up again every this many probe intervals.
pub const DNS_EVERY_PROBES: u32 = 5;

impl CoreSettings {
    /// The role of the node named `node`.
    pub fn role(&self, node: &str) -> Role {
        match (self.centralized, self.masters.iter().any(|m| m == node)) {
            (false, _) => Role::Swim,
            (true, true) => Role::Master,
            (true, false) => Role::Worker,
        }
    }
}

/// Frames to send, encoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The linked nodes to send to.
    pub to: Vec<NodeId>,
    /// The encoded membership frame.
    pub body: Vec<u8>,
}

enum Detector {
    Swim(Box<SwimCore>),
    Master(MasterCore),
    Worker(WorkerCore),
}

/// The membership of one node.
pub struct MembershipCore {
    me: MemberId,
    settings: CoreSettings,
    table: MembershipTable,
    detector: Detector,
    linked: BTreeMap<NodeId, MemberId>,
    transmits: VecDeque<Transmit>,
    connects: VecDeque<(String, String)>,
    next_tick: Duration,
    last_report: Duration,
    last_discovery: Option<Duration>,
    stopped: bool,
}

impl std::fmt::Debug for MembershipCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipCore")
            .field("me", &self.me.name)
            .field("role", &self.settings.role(&self.me.name))
            .finish()
    }
}

/// Why a frame was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreFrameError {
    /// A SWIM packet foca refused.
    #[error("swim packet rejected: {0}")]
    Swim(String),
    /// A view from a node that is not a master.
    #[error(transparent)]
    View(#[from] crate::proto::membership::centralized::ViewError),
}

impl MembershipCore {
    /// The membership of node `me` with `profile`, starting at `now`.
    pub fn new(now: Duration, me: MemberId, profile: Profile, settings: CoreSettings) -> Self {
        let table = MembershipTable::new(me.clone(), profile, settings.down_retention);
        let detector = match settings.role(&me.name) {
            Role::Swim => Detector::Swim(Box::new(SwimCore::new(&me, settings.probe_interval, settings.seed))),
            Role::Master => Detector::Master(MasterCore::new(settings.probe_interval)),
            Role::Worker => Detector::Worker(WorkerCore::new()),
        };
        Self {
            next_tick: now + Self::tick(&settings),
            last_report: now,
            last_discovery: None,
            me,
            settings,
            table,
            detector,
            linked: BTreeMap::new(),
            transmits: VecDeque::new(),
            connects: VecDeque::new(),
            stopped: false,
        }
    }

    /// Periodic work runs four times per probe interval.
    fn tick(settings: &CoreSettings) -> Duration {
        settings.probe_interval / 4
    }

    fn is_master(&self, name: &str) -> bool {
        self.settings.masters.iter().any(|m| m == name)
    }

    /// The table.
    pub fn table(&self) -> &MembershipTable {
        &self.table
    }

    /// Every member, this node included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.table.members()
    }

    /// A link to `who` (with its profile) completed its handshake.
    pub fn handle_linked(&mut self, now: Duration, who: MemberId, profile: Profile) {
        if self.stopped {
            return;
        }
        self.table.handle_linked(now, &who, profile);
        self.linked.insert(who.id, who.clone());
        match &mut self.detector {
            Detector::Swim(swim) => swim.handle_linked(now, &who, &mut self.table),
            Detector::Master(master) => {
                let view = master.handle_linked(now, &who, &mut self.table);
                self.send_view(view);
            }
            Detector::Worker(_) => {
                if self.is_master(&who.name) {
                    // Registration: the master learns this node from the link; report at once.
                    self.last_report = Duration::ZERO;
                    self.next_tick = now;
                } else {
                    self.table.handle_alive(now, &who);
                }
            }
        }
        self.flush_swim();
    }

    /// The link to node `id` ended; `leaving` if the peer said it is shutting down.
    pub fn handle_unlinked(&mut self, now: Duration, id: NodeId, leaving: bool) {
        let Some(who) = self.linked.remove(&id) else { return };
        if self.stopped {
            return;
        }
        let Some(member) = self.table.get(&who.name).filter(|m| m.id == id) else { return };
        let who = MemberId::of(member);
        if leaving {
            self.table.handle_leaving(now, &who);
        }
        let is_master = self.is_master(&who.name);
        match &mut self.detector {
            Detector::Swim(_) => {}
            Detector::Master(master) => {
                if let Some(view) = master.handle_unlinked(now, &who, leaving, &mut self.table) {
                    self.send_view(view);
                }
            }
            Detector::Worker(_) => {
                // Workers follow the masters' view; a worker that left is reported by it.
                if leaving && !is_master {
                    self.table.handle_down(now, &who);
                }
            }
        }
    }

    /// A membership frame from linked node `from`.
    pub fn handle_frame(
        &mut self,
        now: Duration,
        from: NodeId,
        frame: MembershipFrame<'_>,
    ) -> Result<(), CoreFrameError> {
        if self.stopped {
            return Ok(());
        }
        let Some(name) = self.linked.get(&from).map(|w| w.name.clone()) else { return Ok(()) };
        let result = match frame {
            MembershipFrame::Swim(data) => match &mut self.detector {
                Detector::Swim(swim) => swim.handle_data(now, data, &mut self.table).map_err(CoreFrameError::Swim),
                _ => Ok(()),
            },
            MembershipFrame::Resources(report) => {
                self.table.handle_resources(now, from, &name, report);
                if let Detector::Master(master) = &mut self.detector {
                    if let Some(view) = master.handle_report(now, from, &name, &mut self.table) {
                        self.send_view(view);
                    }
                }
                Ok(())
            }
            MembershipFrame::Leaving => {
                if let Some(member) = self.table.get(&name).filter(|m| m.id == from) {
                    let who = MemberId::of(member);
                    self.table.handle_leaving(now, &who);
                }
                Ok(())
            }
            MembershipFrame::View { version, members } => {
                let is_master = self.is_master(&name);
                match &mut self.detector {
                    Detector::Worker(worker) => {
                        let view = View { version, members };
                        match worker.handle_view(now, &name, is_master, view, &mut self.table) {
                            Ok(up) => {
                                for m in up {
                                    if m.name != self.me.name {
                                        self.connects.push_back((m.name, m.addr));
                                    }
                                }
                                Ok(())
                            }
                            Err(e) => Err(e.into()),
                        }
                    }
                    _ => Ok(()),
                }
            }
        };
        self.flush_swim();
        result
    }

    /// Runs the timers and the periodic work due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.stopped {
            return;
        }
        if let Detector::Swim(swim) = &mut self.detector {
            swim.handle_timeout(now, &mut self.table);
        }
        if now >= self.next_tick {
            self.next_tick = now + Self::tick(&self.settings);
            self.table.handle_tick(now);
            let linked: Vec<MemberId> = self.linked.values().cloned().collect();
            match &mut self.detector {
                Detector::Swim(swim) => swim.handle_tick(now, &mut self.table, &linked),
                Detector::Master(master) => {
                    if let Some(view) = master.handle_tick(now, &mut self.table) {
                        self.send_view(view);
                    }
                }
                Detector::Worker(_) => {}
            }
        }
        self.flush_swim();
    }

    /// How often this node reports its resources: every probe interval for a worker (the
    /// report is its heartbeat), the configured interval otherwise.
    fn report_every(&self) -> Option<Duration> {
        match self.detector {
            Detector::Worker(_) => Some(self.settings.probe_interval),
            _ => self.settings.resource_interval,
        }
    }

    /// True when a resource report is due: measure one and pass it to
    /// [`handle_local_report`](Self::handle_local_report).
    pub fn report_due(&self, now: Duration) -> bool {
        !self.stopped
            && self.report_every().is_some_and(|every| {
                self.last_report == Duration::ZERO || now.saturating_sub(self.last_report) >= every
            })
    }

    /// This node's own resource report: recorded and sent (to the masters from a worker,
    /// to every linked node otherwise).
    pub fn handle_local_report(&mut self, now: Duration, report: ResourceReport) {
        self.last_report = now.max(Duration::from_nanos(1));
        self.table.handle_resources(now, self.me.id, &self.me.name.clone(), report);
        let to: Vec<NodeId> = match self.detector {
            Detector::Worker(_) => self.linked.values().filter(|w| self.is_master(&w.name)).map(|w| w.id).collect(),
            _ => self.linked.keys().copied().collect(),
        };
        if !to.is_empty() {
            self.transmits.push_back(Transmit { to, body: MembershipFrame::Resources(report).encode() });
        }
    }

    /// True when DNS discovery should look its name up (at start, then every
    /// [`DNS_EVERY_PROBES`] probe intervals); the caller then resolves and links to what it finds.
    pub fn discovery_due(&mut self, now: Duration) -> bool {
        let every = self.settings.probe_interval * DNS_EVERY_PROBES;
        let due = !self.stopped
            && self.settings.dns_discovery
            && self.last_discovery.is_none_or(|last| now.saturating_sub(last) >= every);
        if due {
            self.last_discovery = Some(now);
        }
        due
    }

    /// Leaves on purpose: every linked node is told first, then SWIM says goodbye.
    pub fn leave(&mut self, now: Duration) {
        if self.stopped {
            return;
        }
        let to: Vec<NodeId> = self.linked.keys().copied().collect();
        if !to.is_empty() {
            self.transmits.push_back(Transmit { to, body: MembershipFrame::Leaving.encode() });
        }
        if let Detector::Swim(swim) = &mut self.detector {
            swim.leave(now, &mut self.table);
        }
        self.flush_swim();
        self.stopped = true;
    }

    /// Stops without telling anyone (a crash).
    pub fn stop(&mut self) {
        self.stopped = true;
        self.transmits.clear();
        self.connects.clear();
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next member to link to, as (name, address).
    pub fn poll_connect(&mut self) -> Option<(String, String)> {
        self.connects.pop_front()
    }

    /// The next change of the table.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.table.poll_event()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.stopped {
            return None;
        }
        let swim = match &self.detector {
            Detector::Swim(swim) => swim.poll_timeout(),
            _ => None,
        };
        Some(swim.map_or(self.next_tick, |t| t.min(self.next_tick)))
    }

    /// The failure detector's own view, for diagnostics.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} table {:?}",
            self.me.name,
            self.table.members().iter().map(|t| (&t.name, t.generation, t.status)).collect::<Vec<_>>()
        );
        if let Detector::Swim(swim) = &self.detector {
            out.push(' ');
            out.push_str(&swim.describe());
        }
        out
    }

    fn send_view(&mut self, view: View) {
        let to: Vec<NodeId> = self.linked.keys().copied().collect();
        if !to.is_empty() {
            let body = MembershipFrame::View { version: view.version, members: view.members }.encode();
            self.transmits.push_back(Transmit { to, body });
        }
    }

    /// SWIM packets go to linked members; one for a member without a link asks for a link
    /// (and is dropped, as a datagram would be).
    fn flush_swim(&mut self) {
        let Detector::Swim(swim) = &mut self.detector else { return };
        while let Some(p) = swim.poll_packet() {
            if self.linked.contains_key(&p.to.id) {
                self.transmits.push_back(Transmit { to: vec![p.to.id], body: MembershipFrame::Swim(&p.data).encode() });
            } else if p.to.name != self.me.name {
                self.connects.push_back((p.to.name, p.to.addr));
            }
        }
    }

    /// Number of members per status, for metrics.
    pub fn counts(&self) -> BTreeMap<MemberStatus, usize> {
        let mut counts = BTreeMap::new();
        for m in self.table.members() {
            *counts.entry(m.status).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    //! Two cores wired back to back on virtual time: what one transmits, the other handles.

    use super::*;
    use crate::proto::membership::frames;

    const PROBE: Duration = Duration::from_millis(100);

    fn who(name: &str, id: u128) -> MemberId {
        MemberId { id: NodeId(id), name: name.into(), addr: format!("{name}:1"), generation: 1 }
    }

    fn core(name: &str, id: u128, role: Role) -> MembershipCore {
        let settings = CoreSettings {
            centralized: role != Role::Swim,
            masters: vec!["m".into()],
            probe_interval: PROBE,
            resource_interval: None,
            down_retention: Duration::from_secs(60),
            seed: id as u64,
            dns_discovery: false,
        };
        MembershipCore::new(Duration::ZERO, who(name, id), Profile::default(), settings)
    }

    /// Delivers every transmit between the cores (by node id) until none is left.
    fn pump(now: Duration, cores: &mut [&mut MembershipCore]) {
        loop {
            let mut moved = false;
            for i in 0..cores.len() {
                while let Some(t) = cores[i].poll_transmit() {
                    moved = true;
                    let from = cores[i].me.id;
                    for to in t.to {
                        if let Some(j) = cores.iter().position(|c| c.me.id == to) {
                            let frame = frames::decode(&t.body).expect("valid frame");
                            let _ = cores[j].handle_frame(now, from, frame);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    #[test]
    fn a_worker_registers_with_its_master_and_receives_the_view() {
        let (mut m, mut w) = (core("m", 1, Role::Master), core("w", 2, Role::Worker));
        m.handle_linked(Duration::ZERO, who("w", 2), Profile::default());
        w.handle_linked(Duration::ZERO, who("m", 1), Profile::default());
        assert!(w.report_due(Duration::ZERO), "a worker reports at once on registering");
        w.handle_local_report(Duration::ZERO, ResourceReport { actor_count: 4, ..Default::default() });
        pump(Duration::ZERO, &mut [&mut m, &mut w]);
        let up = |c: &MembershipCore| {
            c.members().iter().filter(|x| x.status == MemberStatus::Up).map(|x| x.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(up(&m), ["m", "w"]);
        let mut now = Duration::ZERO;
        while up(&w) != ["m", "w"] {
            now += PROBE / 4;
            m.handle_timeout(now);
            w.handle_timeout(now);
            pump(now, &mut [&mut m, &mut w]);
            assert!(now < PROBE * 10, "the worker never saw the view");
        }
        let report = m.table().get("w").and_then(|x| x.resources).expect("the master has the report");
        assert_eq!(report.actor_count, 4);
    }

    #[test]
    fn swim_packets_for_an_unlinked_member_ask_for_a_link() {
        let (mut a, mut b) = (core("a", 1, Role::Swim), core("b", 2, Role::Swim));
        a.handle_linked(Duration::ZERO, who("b", 2), Profile::default());
        b.handle_linked(Duration::ZERO, who("a", 1), Profile::default());
        let mut now = Duration::ZERO;
        let up = |c: &MembershipCore, name: &str| c.table().get(name).map(|m| m.status) == Some(MemberStatus::Up);
        while !(up(&a, "b") && up(&b, "a")) {
            now += PROBE / 4;
            a.handle_timeout(now);
            b.handle_timeout(now);
            pump(now, &mut [&mut a, &mut b]);
            assert!(now < PROBE * 20, "never joined");
        }
        // The link drops; SWIM still probes b, and its packets become connection requests.
        a.handle_unlinked(now, NodeId(2), false);
        let start = now;
        let mut asked = false;
        while !asked {
            now += PROBE / 4;
            a.handle_timeout(now);
            asked = std::iter::from_fn(|| a.poll_connect()).any(|(name, addr)| name == "b" && addr == "b:1");
            while let Some(t) = a.poll_transmit() {
                assert!(!t.to.contains(&NodeId(2)), "nothing is sent to an unlinked member");
            }
            assert!(now - start < PROBE * 10, "no connection request for the unlinked member");
        }
    }

    #[test]
    fn a_leave_tells_every_linked_node_and_stops_the_core() {
        let mut a = core("a", 1, Role::Swim);
        a.handle_linked(Duration::ZERO, who("b", 2), Profile::default());
        a.handle_linked(Duration::ZERO, who("c", 3), Profile::default());
        while a.poll_transmit().is_some() {}
        a.leave(PROBE);
        let first = a.poll_transmit().expect("leaving");
        assert_eq!(first.to.len(), 2);
        assert_eq!(frames::decode(&first.body), Ok(MembershipFrame::Leaving));
        assert_eq!(a.poll_timeout(), None, "a stopped core has no timers");
    }

    #[test]
    fn frames_from_unlinked_nodes_are_ignored() {
        let mut w = core("w", 2, Role::Worker);
        let view = MembershipFrame::View { version: 5, members: vec![] };
        assert_eq!(w.handle_frame(Duration::ZERO, NodeId(1), view), Ok(()));
        assert_eq!(w.members().len(), 1);
    }
}
