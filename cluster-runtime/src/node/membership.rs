//! The membership driver: feeds the pure [`MembershipTable`] from the failure detector of
//! the configured architecture and from links, and delivers its events.
//!
//! - Decentralized: SWIM via `foca` (sans-IO). Its packets travel as [`Frame::Swim`] over
//!   the node's links; a packet for a member without a link makes the node connect to it
//!   (and is dropped, as a datagram would be). Timers are tokio sleeps.
//! - Centralized: masters accept workers as their links come up, watch the resource
//!   reports workers send every probe interval with a phi accrual detector, and send their
//!   view ([`Frame::View`]) to every worker on each change and periodically. Workers apply
//!   the view and link to each other directly.
//!
//! Lock order: the membership lock may be held while the node's state lock is taken,
//! never the reverse.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::Recipient;
use foca::{AccumulatingRuntime, Config as SwimConfig, Foca, Identity, NoCustomBroadcast, PostcardCodec, Timer};
use rand_foca::{rngs::SmallRng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::node::config::{Architecture, DiscoveryMethod};
use crate::node::resources::{self, CpuSampler};
use crate::node::system::ClusterSystem;
use crate::proto::frame::{self, Frame, GoodbyeReason, Hello};
use crate::proto::membership::{Member, MemberId, MemberStatus, MembershipEvent, MembershipTable, ResourceReport};
use crate::proto::phi_accrual::{PhiAccrual, PhiSettings};
use crate::transport::link::LinkEnd;

impl actix::Message for MembershipEvent {
    type Result = ();
}

/// A member's identity in SWIM: node id, name (the address foca resolves conflicts on),
/// listen address and generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct SwimId {
    id: u128,
    name: String,
    addr: String,
    generation: u64,
}

impl SwimId {
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

struct MasterState {
    version: u64,
    detectors: BTreeMap<String, (u128, PhiAccrual)>,
}

enum Mode {
    Swim(Box<Swim>, AccumulatingRuntime<SwimId>),
    Master(MasterState),
    Worker { versions: BTreeMap<String, u64> },
}

pub(crate) struct Membership {
    table: MembershipTable,
    mode: Mode,
    subscribers: Vec<Recipient<MembershipEvent>>,
    connecting: BTreeSet<String>,
    cpu: CpuSampler,
    changed: watch::Sender<u64>,
    stopped: bool,
    /// SWIM knows at least one other active member.
    swim_active: bool,
    /// Since when each member has been suspect in SWIM's view (see `expire_suspicions`).
    suspect_since: BTreeMap<SwimId, Duration>,
}

/// Shared handle to the membership state of a node.
#[derive(Clone)]
pub(crate) struct MembershipHandle(Arc<Mutex<Membership>>);

impl MembershipHandle {
    fn lock(&self) -> MutexGuard<'_, Membership> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn swim_config(probe: Duration, expected_size: u32) -> SwimConfig {
    let mut c = SwimConfig::new_lan(NonZeroU32::new(expected_size.max(3)).unwrap_or(NonZeroU32::MIN));
    c.probe_period = probe;
    c.probe_rtt = probe / 2;
    c.suspect_to_down_after = probe * 5;
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

impl ClusterSystem {
    /// Milliseconds-precision time since the node started, the clock of the pure modules.
    pub(crate) fn now(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub(crate) fn membership(&self) -> &MembershipHandle {
        &self.inner.membership
    }

    /// Creates the membership state; called once while the node is built.
    pub(crate) fn new_membership(
        local: &Hello,
        config: &crate::node::config::ClusterConfig,
        seed: u64,
    ) -> MembershipHandle {
        let me = MemberId {
            id: local.node_id,
            name: local.node_name.clone(),
            addr: local.listen_addr.clone(),
            generation: local.generation,
        };
        let table = MembershipTable::new(me.clone(), config.profile.clone(), config.down_retention);
        let mode = match config.architecture {
            Architecture::Decentralized => {
                let id = SwimId { id: me.id, name: me.name, addr: me.addr, generation: me.generation };
                let swim = Foca::new(
                    id,
                    swim_config(config.probe_interval, 16),
                    SmallRng::seed_from_u64(seed ^ 0x5717),
                    PostcardCodec,
                );
                Mode::Swim(Box::new(swim), AccumulatingRuntime::new())
            }
            Architecture::Centralized if config.masters.contains(&config.node_name) => {
                Mode::Master(MasterState { version: 1, detectors: BTreeMap::new() })
            }
            Architecture::Centralized => Mode::Worker { versions: BTreeMap::new() },
        };
        let (changed, _) = watch::channel(0);
        MembershipHandle(Arc::new(Mutex::new(Membership {
            table,
            mode,
            subscribers: Vec::new(),
            connecting: BTreeSet::new(),
            cpu: CpuSampler::default(),
            changed,
            stopped: false,
            swim_active: false,
            suspect_since: BTreeMap::new(),
        })))
    }

    /// Starts the periodic membership tasks.
    pub(crate) fn start_membership(&self) {
        let system = self.clone();
        self.inner.tasks.spawn_local(async move { system.membership_ticker().await });
        if let DiscoveryMethod::Dns { name, port } = self.config().discovery().clone() {
            let system = self.clone();
            self.inner.tasks.spawn_local(async move { system.dns_discovery(name, port).await });
        }
    }

    /// Every member this node knows, itself included, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        self.membership().lock().table.members()
    }

    /// The member of that name, if known.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.membership().lock().table.get(name).cloned()
    }

    /// Names of the members currently `Up` (this node included).
    pub fn up_members(&self) -> BTreeSet<String> {
        self.members().into_iter().filter(|m| m.status == MemberStatus::Up).map(|m| m.name).collect()
    }

    /// Subscribes an actor to membership events. It first receives a `MemberUp` for every
    /// member currently up (the current state), then every change.
    pub fn subscribe_membership(&self, subscriber: Recipient<MembershipEvent>) {
        let mut m = self.membership().lock();
        for member in m.table.members() {
            if member.status == MemberStatus::Up {
                subscriber.do_send(MembershipEvent::MemberUp(member));
            }
        }
        m.subscribers.push(subscriber);
    }

    /// A description of the failure detector's own view, for diagnosing tests.
    #[doc(hidden)]
    pub fn membership_debug(&self) -> String {
        let m = self.membership().lock();
        let mut out = format!(
            "{} table {:?}",
            self.node_name(),
            m.table.members().iter().map(|t| (&t.name, t.generation, t.status)).collect::<Vec<_>>()
        );
        if let Mode::Swim(swim, _) = &m.mode {
            let view: Vec<_> =
                swim.iter_membership_state().map(|mm| (mm.id().name.clone(), mm.id().generation, mm.state())).collect();
            out.push_str(&format!(" swim active={} {:?} self gen {}", m.swim_active, view, swim.identity().generation));
        }
        out
    }

    /// A receiver that changes whenever the membership table changes.
    pub fn watch_membership(&self) -> watch::Receiver<u64> {
        self.membership().lock().changed.subscribe()
    }

    /// Delivers the table's pending events to subscribers and watchers.
    fn flush_events(m: &mut Membership) {
        let mut any = false;
        while let Some(event) = m.table.poll_event() {
            any = true;
            tracing::debug!(event = event.kind(), member = %event.member().name, "membership event");
            m.subscribers.retain(|s| s.connected());
            for s in &m.subscribers {
                s.do_send(event.clone());
            }
        }
        if any {
            m.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Runs the outputs foca accumulated: packets, timers, notifications.
    fn drain_swim(&self, m: &mut Membership) {
        let now = self.now();
        let Membership { table, mode, connecting, swim_active, .. } = m;
        let Mode::Swim(swim, rt) = mode else { return };
        let mut unlinked = Vec::new();
        while let Some((to, data)) = rt.to_send() {
            if !self.send_frame(to.id, &Frame::Swim(&data)) && !connecting.contains(&to.addr) {
                unlinked.push(to);
            }
        }
        while let Some((after, timer)) = rt.to_schedule() {
            let system = self.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(after).await;
                system.swim_timer(timer);
            });
        }
        while let Some(n) = rt.to_notify() {
            match n {
                foca::OwnedNotification::MemberUp(id) => table.handle_alive(now, &id.member_id()),
                foca::OwnedNotification::MemberDown(id) => table.handle_down(now, &id.member_id()),
                foca::OwnedNotification::Rename(_, new) => {
                    if swim.iter_members().any(|mm| mm.id() == &new) {
                        table.handle_alive(now, &new.member_id());
                    }
                }
                foca::OwnedNotification::Active => *swim_active = true,
                foca::OwnedNotification::Idle | foca::OwnedNotification::Defunct => *swim_active = false,
                other => tracing::debug!(node = %self.node_name(), notification = ?other, "swim"),
            }
        }
        // foca does not notify suspicion, and skips notifications in some transitions
        // (a member it never reported up is not reported down): reconcile the table with
        // its view, which is the source of truth for the failure detector.
        for mm in swim.iter_membership_state() {
            let who = mm.id().member_id();
            let known = table.get(&who.name).filter(|t| t.id == who.id).map(|t| t.status);
            match (mm.state(), known) {
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
        for to in unlinked {
            self.ensure_link(m, &to.name, &to.addr);
        }
        Self::flush_events(m);
    }

    fn swim_timer(&self, timer: Timer<SwimId>) {
        let handle = self.membership().clone();
        let mut m = handle.lock();
        if m.stopped {
            return;
        }
        if let Mode::Swim(swim, rt) = &mut m.mode {
            if let Err(e) = swim.handle_timer(timer, &mut *rt) {
                tracing::debug!(error = %e, "swim timer");
            }
        }
        self.drain_swim(&mut m);
    }

    /// Declares down the members that stayed suspect for twice the suspicion timeout.
    ///
    /// foca drops its pending suspect-to-down timers whenever it goes offline and back
    /// (its timer token changes), and a suspicion whose gossip was lost in a partition is
    /// then never resolved: the member stays suspect forever. Resolving it here is what
    /// the lost timer would have done; a member that is in fact alive rejoins.
    fn expire_suspicions(&self, m: &mut Membership, now: Duration, suspicion: Duration) {
        let Mode::Swim(swim, rt) = &mut m.mode else { return };
        let suspects: Vec<(SwimId, foca::Incarnation)> = swim
            .iter_membership_state()
            .filter(|mm| mm.state() == foca::State::Suspect)
            .map(|mm| (mm.id().clone(), mm.incarnation()))
            .collect();
        m.suspect_since.retain(|id, _| suspects.iter().any(|(s, _)| s == id));
        let mut expired = Vec::new();
        for (id, incarnation) in suspects {
            let since = *m.suspect_since.entry(id.clone()).or_insert(now);
            if now.saturating_sub(since) >= suspicion * 2 {
                expired.push(foca::Member::new(id, incarnation, foca::State::Down));
            }
        }
        if expired.is_empty() {
            return;
        }
        tracing::debug!(node = %self.node_name(), count = expired.len(), "suspicions expired without refutation");
        if let Err(e) = swim.apply_many(expired.into_iter(), true, &mut *rt) {
            tracing::debug!(error = %e, "swim apply");
        }
        self.drain_swim(m);
    }

    /// Sends `frame` on the link to `node`; false if there is no link.
    pub(crate) fn send_frame(&self, node: u128, frame: &Frame<'_>) -> bool {
        let Ok(bytes) = frame::encode(frame) else { return false };
        self.inner.try_send_to(node, bytes)
    }

    /// Connects to a member we have no link to, unless a connection is already under way.
    /// Called with the membership lock held (`m`).
    fn ensure_link(&self, m: &mut Membership, name: &str, addr: &str) {
        if name == self.node_name() || self.peer(name).is_some() || self.inner.is_shut_down() {
            return;
        }
        self.spawn_connect(m, addr);
    }

    /// Starts a connection to `addr` unless one is already under way (tracked in
    /// `m.connecting` for as long as the connection and its link last).
    fn spawn_connect(&self, m: &mut Membership, addr: &str) {
        if !m.connecting.insert(addr.to_owned()) {
            return;
        }
        let system = self.clone();
        let handle = self.membership().clone();
        let addr = addr.to_owned();
        self.inner.tasks.spawn_local(async move {
            system.connect_once(&addr).await;
            handle.lock().connecting.remove(&addr);
        });
    }

    /// Encodes `frame` once and queues it on the links to every node in `targets`.
    fn send_to_all(&self, targets: impl IntoIterator<Item = u128>, frame: &Frame<'_>) {
        let Ok(bytes) = frame::encode(frame) else { return };
        for t in targets {
            self.inner.try_send_to(t, bytes.clone());
        }
    }

    /// A link to `peer` completed its handshake.
    pub(crate) fn membership_link_up(&self, peer: &Hello) {
        let now = self.now();
        let who = MemberId {
            id: peer.node_id,
            name: peer.node_name.clone(),
            addr: peer.listen_addr.clone(),
            generation: peer.generation,
        };
        let handle = self.membership().clone();
        let mut m = handle.lock();
        m.table.handle_linked(now, &who, peer.profile.clone());
        let is_master_peer = self.config().master_nodes().contains(&peer.node_name);
        match &mut m.mode {
            Mode::Swim(swim, rt) => {
                let id = SwimId { id: who.id, name: who.name, addr: who.addr, generation: who.generation };
                if let Err(e) = swim.announce(id, &mut *rt) {
                    tracing::debug!(error = %e, "swim announce");
                }
                self.drain_swim(&mut m);
            }
            Mode::Master(master) => {
                let mut phi = PhiAccrual::new(PhiSettings::for_interval(self.config().probe_interval));
                phi.heartbeat(now);
                master.detectors.insert(who.name.clone(), (who.id, phi));
                m.table.handle_alive(now, &who);
                self.master_publish(&mut m);
            }
            Mode::Worker { .. } => {
                if is_master_peer {
                    // Registration: the master learns us from the link; report at once.
                    let report = self.resource_report(&mut m);
                    self.send_frame(who.id, &Frame::Resources(report));
                } else {
                    m.table.handle_alive(now, &who);
                }
                Self::flush_events(&mut m);
            }
        }
    }

    /// A link ended.
    pub(crate) fn membership_link_down(&self, peer: u128, name: &str, end: &LinkEnd) {
        let now = self.now();
        let handle = self.membership().clone();
        let mut m = handle.lock();
        let Some(member) = m.table.get(name).filter(|mm| mm.id == peer).cloned() else { return };
        let who = MemberId { id: member.id, name: member.name, addr: member.addr, generation: member.generation };
        let leaving = *end == LinkEnd::Goodbye(GoodbyeReason::Shutdown);
        if leaving {
            m.table.handle_leaving(now, &who);
        }
        match &mut m.mode {
            Mode::Swim(..) => {}
            Mode::Master(master) => {
                if leaving {
                    master.detectors.remove(name);
                    m.table.handle_down(now, &who);
                    self.master_publish(&mut m);
                }
            }
            Mode::Worker { .. } => {
                // Workers follow the masters' view; a worker that left is reported by it.
                if leaving && !self.config().master_nodes().contains(&who.name) {
                    m.table.handle_down(now, &who);
                }
            }
        }
        Self::flush_events(&mut m);
    }

    /// A membership frame arrived from `peer`.
    pub(crate) fn membership_frame(&self, peer: u128, peer_name: &str, frame: Frame<'_>) {
        let now = self.now();
        let handle = self.membership().clone();
        let mut m = handle.lock();
        match frame {
            Frame::Swim(data) => {
                if let Mode::Swim(swim, rt) = &mut m.mode {
                    if let Err(e) = swim.handle_data(data, &mut *rt) {
                        tracing::debug!(node = %self.node_name(), from = %peer_name, error = %e, "swim packet rejected");
                    }
                }
                self.drain_swim(&mut m);
            }
            Frame::Resources(report) => {
                m.table.handle_resources(now, peer, peer_name, report);
                let mut republish = false;
                if let Mode::Master(master) = &mut m.mode {
                    if let Some((id, phi)) = master.detectors.get_mut(peer_name) {
                        if *id == peer {
                            phi.heartbeat(now);
                        }
                    }
                    republish = true;
                }
                if republish {
                    if let Some(member) = m.table.get(peer_name).filter(|mm| mm.id == peer).cloned() {
                        if member.status != MemberStatus::Up {
                            let who = MemberId {
                                id: member.id,
                                name: member.name,
                                addr: member.addr,
                                generation: member.generation,
                            };
                            m.table.handle_alive(now, &who);
                            self.master_publish(&mut m);
                        }
                    }
                }
                Self::flush_events(&mut m);
            }
            Frame::Leaving => {
                if let Some(member) = m.table.get(peer_name).filter(|mm| mm.id == peer).cloned() {
                    let who =
                        MemberId { id: member.id, name: member.name, addr: member.addr, generation: member.generation };
                    m.table.handle_leaving(now, &who);
                }
            }
            Frame::View { version, members } => {
                let Mode::Worker { versions } = &mut m.mode else { return };
                if !self.config().master_nodes().iter().any(|n| n == peer_name) {
                    tracing::warn!(from = %peer_name, "membership view from a node that is not a master; ignored");
                    return;
                }
                if versions.get(peer_name).is_some_and(|v| *v >= version) {
                    return;
                }
                versions.insert(peer_name.to_owned(), version);
                m.table.handle_view(now, &members);
                for member in &members {
                    if member.status == MemberStatus::Up && member.name != self.node_name() {
                        self.ensure_link(&mut m, &member.name, &member.addr);
                    }
                }
                Self::flush_events(&mut m);
            }
            _ => {}
        }
    }

    /// The master bumps its view version and sends the view to every linked node.
    fn master_publish(&self, m: &mut Membership) {
        let Mode::Master(master) = &mut m.mode else { return };
        master.version += 1;
        let version = master.version;
        let members = m.table.members();
        self.send_to_all(self.peers().into_iter().map(|p| p.id.0), &Frame::View { version, members });
        Self::flush_events(m);
    }

    fn resource_report(&self, m: &mut Membership) -> ResourceReport {
        ResourceReport {
            cpu_millicores: m.cpu.millicores(self.now()),
            memory_bytes: resources::resident_memory(),
            actor_count: self.local_actor_count() as u64,
            in_flight: self.inner.in_flight() as u64,
        }
    }

    /// Periodic work: resource reports, the master's detector and view, retention.
    async fn membership_ticker(&self) {
        let probe = self.config().probe_interval;
        let tick = probe / 4;
        let mut last_report = self.now();
        let mut last_view = self.now();
        let mut last_rejoin = self.now();
        let stop = self.inner.stop_signal();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
            let now = self.now();
            let handle = self.membership().clone();
            let mut m = handle.lock();
            if m.stopped {
                return;
            }
            m.table.handle_tick(now);
            self.expire_suspicions(&mut m, now, probe * 5);
            // SWIM without any active member (alone, or everyone declared down across a
            // healed partition) never announces by itself: announce to every linked peer.
            if matches!(m.mode, Mode::Swim(..)) && !m.swim_active && now.saturating_sub(last_rejoin) >= probe {
                last_rejoin = now;
                let peers = self.peers();
                let targets: Vec<SwimId> = peers
                    .into_iter()
                    .map(|p| SwimId {
                        id: p.id.0,
                        generation: m.table.get(&p.name).filter(|t| t.id == p.id.0).map_or(0, |t| t.generation),
                        name: p.name,
                        addr: p.addr,
                    })
                    .collect();
                if let Mode::Swim(swim, rt) = &mut m.mode {
                    for t in targets {
                        let _ = swim.announce(t, &mut *rt);
                    }
                }
                self.drain_swim(&mut m);
            }
            let report_every = match m.mode {
                Mode::Worker { .. } => Some(probe),
                _ => self.config().resource_interval,
            };
            if let Some(every) = report_every {
                if now.saturating_sub(last_report) >= every {
                    last_report = now;
                    let report = self.resource_report(&mut m);
                    let local = self.node_name().to_owned();
                    let id = self.node_id().0;
                    m.table.handle_resources(now, id, &local, report);
                    let targets: Vec<u128> = match m.mode {
                        Mode::Worker { .. } => self
                            .peers()
                            .into_iter()
                            .filter(|p| self.config().master_nodes().contains(&p.name))
                            .map(|p| p.id.0)
                            .collect(),
                        _ => self.peers().into_iter().map(|p| p.id.0).collect(),
                    };
                    self.send_to_all(targets, &Frame::Resources(report));
                }
            }
            if let Mode::Master(master) = &mut m.mode {
                let mut changes = Vec::new();
                for (name, (id, phi)) in &master.detectors {
                    let phi_now = phi.phi(now);
                    changes.push((name.clone(), *id, phi_now));
                }
                let threshold = PhiSettings::for_interval(probe).threshold;
                let mut changed = false;
                for (name, id, phi_now) in changes {
                    let Some(member) = m.table.get(&name).filter(|mm| mm.id == id).cloned() else { continue };
                    let who =
                        MemberId { id: member.id, name: member.name, addr: member.addr, generation: member.generation };
                    if phi_now >= threshold && member.status != MemberStatus::Down {
                        m.table.handle_down(now, &who);
                        changed = true;
                    } else if phi_now >= threshold / 2.0 && member.status == MemberStatus::Up {
                        m.table.handle_suspect(now, &who);
                        changed = true;
                    }
                }
                if changed || now.saturating_sub(last_view) >= probe * 2 {
                    last_view = now;
                    self.master_publish(&mut m);
                }
            }
            Self::flush_events(&mut m);
        }
    }

    /// Resolves the discovery name periodically and connects to every address found.
    async fn dns_discovery(&self, name: String, port: u16) {
        let resolver = self.config().resolver.0.clone();
        let stop = self.inner.stop_signal();
        loop {
            match resolver.resolve(&name, port).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if addr != self.local_addr() {
                            self.ensure_link_addr(&addr.to_string());
                        }
                    }
                }
                Err(e) => tracing::warn!(%name, error = %e, "DNS discovery lookup failed"),
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config().probe_interval * 5) => {}
            }
        }
    }

    /// Connects to an address unless a link to the node listening there exists.
    fn ensure_link_addr(&self, addr: &str) {
        if self.peers().iter().any(|p| p.addr == addr) {
            return;
        }
        let handle = self.membership().clone();
        self.spawn_connect(&mut handle.lock(), addr);
    }

    /// Leaves the cluster on purpose: SWIM tells the members before the links close.
    pub(crate) fn membership_leave(&self) {
        // Said on every link before anything else, so peers know the failure detector's
        // coming "down" is a departure.
        self.send_to_all(self.peers().into_iter().map(|p| p.id.0), &Frame::Leaving);
        let handle = self.membership().clone();
        let mut m = handle.lock();
        if let Mode::Swim(swim, rt) = &mut m.mode {
            if let Err(e) = swim.leave_cluster(&mut *rt) {
                tracing::debug!(error = %e, "swim leave");
            }
        }
        self.drain_swim(&mut m);
        m.stopped = true;
    }

    /// Stops membership work without telling anyone (a crash).
    #[cfg(feature = "testkit")]
    pub(crate) fn membership_stop(&self) {
        self.membership().lock().stopped = true;
    }
}
