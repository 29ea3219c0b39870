//! The membership service: drives the pure [`MembershipCore`] from links, frames and
//! timers; sends what it asks to send, links to the members it names, measures resource
//! reports when they are due, and delivers membership events to subscribers, to the other
//! services and to the snapshot the API reads.

pub mod api;
pub(crate) mod resources;

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use tokio::sync::watch;

use crate::config::membership::{Architecture, MembershipConfig};
use crate::config::DiscoveryMethod;
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Install, Metrics, Service, ServiceFrameError, Stop};
use crate::proto::membership::core::{CoreFrameError, CoreSettings, MembershipCore};
use crate::proto::membership::frames::{self, VERSION};
use crate::proto::membership::{Member, MemberId, MemberStatus, MembershipEvent, ResourceReport};
use crate::proto::wire::channel::Channel;
use crate::proto::wire::frame::GoodbyeReason;
use crate::transport::link::LinkEnd;
use resources::CpuSampler;

pub use api::{MembersSnapshot, Membership};

impl actix::Message for MembershipEvent {
    type Result = ();
}

/// What the service shares with its API: the latest snapshot of the table.
#[derive(Debug)]
pub(crate) struct MembershipShared {
    snapshot: watch::Sender<MembersSnapshot>,
}

impl Default for MembershipShared {
    fn default() -> Self {
        Self { snapshot: watch::channel(MembersSnapshot::default()).0 }
    }
}

/// The membership service of one node.
pub(crate) struct MembershipService {
    core: MembershipCore,
    shared: Arc<MembershipShared>,
    subscribers: Vec<Recipient<MembershipEvent>>,
    cpu: CpuSampler,
    dns: Option<(String, u16)>,
}

/// Builds the service and the state its API reads.
pub(crate) fn install(i: &Install<'_>) -> (MembershipService, Arc<MembershipShared>) {
    let me = MemberId {
        id: i.node_id,
        name: i.config.node_name().to_owned(),
        addr: i.addr.to_owned(),
        generation: i.generation,
    };
    let dns = match i.config.discovery() {
        DiscoveryMethod::Dns { name, port } => Some((name.clone(), *port)),
        _ => None,
    };
    let settings = core_settings(i.config.membership(), i.seed, dns.is_some());
    let core = MembershipCore::new(Duration::ZERO, me, i.config.profile().clone(), settings);
    let shared = Arc::new(MembershipShared::default());
    let service =
        MembershipService { core, shared: shared.clone(), subscribers: Vec::new(), cpu: CpuSampler::default(), dns };
    service.publish();
    (service, shared)
}

/// The pure core's settings.
fn core_settings(c: &MembershipConfig, seed: u64, dns_discovery: bool) -> CoreSettings {
    CoreSettings {
        centralized: c.architecture == Architecture::Centralized,
        masters: c.masters.clone(),
        probe_interval: c.probe_interval,
        resource_interval: c.resource_interval,
        down_retention: c.down_retention,
        seed,
        dns_discovery,
    }
}

impl MembershipService {
    /// Subscribes an actor: it first receives a `MemberUp` for every member currently up,
    /// then every change.
    pub(crate) fn subscribe(&mut self, subscriber: Recipient<MembershipEvent>) {
        for member in self.core.members() {
            if member.status == MemberStatus::Up {
                subscriber.do_send(MembershipEvent::MemberUp(member));
            }
        }
        self.subscribers.push(subscriber);
    }

    fn publish(&self) {
        let members: Vec<Member> = self.core.members();
        let describe = self.core.describe();
        self.shared.snapshot.send_modify(|s| {
            s.version += 1;
            s.members = Arc::new(members);
            s.describe = Arc::new(describe);
        });
    }

    /// Carries out what the core asked for after an input.
    fn flush(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now();
        if self.core.report_due(now) {
            let stats = cx.node().stats();
            let report = ResourceReport {
                cpu_millicores: self.cpu.millicores(now),
                memory_bytes: resources::resident_memory(),
                actor_count: stats.actor_count,
                in_flight: stats.in_flight,
            };
            self.core.handle_local_report(now, report);
        }
        if self.core.discovery_due(now) {
            if let Some((name, port)) = &self.dns {
                cx.node().discover(name, *port);
            }
        }
        while let Some(t) = self.core.poll_transmit() {
            match t.to.as_slice() {
                [one] => {
                    cx.send(*one, &t.body);
                }
                many => cx.broadcast(many, &t.body),
            }
        }
        while let Some((name, addr)) = self.core.poll_connect() {
            cx.node().connect(Some(&name), &addr);
        }
        let mut changed = false;
        while let Some(event) = self.core.poll_event() {
            changed = true;
            tracing::debug!(node = %cx.node().node_name(), event = event.kind(), member = %event.member().name, "membership event");
            self.subscribers.retain(|s| s.connected());
            for s in &self.subscribers {
                s.do_send(event.clone());
            }
            cx.emit(event);
        }
        if changed {
            self.publish();
        }
    }
}

impl Service for MembershipService {
    fn channel(&self) -> Channel {
        Channel::MEMBERSHIP
    }

    fn version(&self) -> u16 {
        VERSION
    }

    fn start(&mut self, cx: &mut Cx<'_>) {
        self.flush(cx);
    }

    fn handle_link_up(&mut self, cx: &mut Cx<'_>, peer: &PeerInfo) {
        let who =
            MemberId { id: peer.id, name: peer.name.clone(), addr: peer.addr.clone(), generation: peer.generation };
        self.core.handle_linked(cx.now(), who, peer.profile.clone());
        self.flush(cx);
    }

    fn handle_link_down(&mut self, cx: &mut Cx<'_>, peer: &PeerInfo, end: &LinkEnd) {
        self.core.handle_unlinked(cx.now(), peer.id, *end == LinkEnd::Goodbye(GoodbyeReason::Shutdown));
        self.flush(cx);
    }

    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError> {
        let frame = frames::decode(body).map_err(|e| ServiceFrameError(e.to_string()))?;
        let result = match self.core.handle_frame(cx.now(), from.id, frame) {
            // foca refuses packets in ordinary situations (a stale incarnation, a packet
            // for an identity it renewed): worth a debug line, not a warning.
            Err(CoreFrameError::Swim(e)) => {
                tracing::debug!(node = %cx.node().node_name(), from = %from.name, error = %e, "swim packet rejected");
                Ok(())
            }
            Err(e) => Err(ServiceFrameError(e.to_string())),
            Ok(()) => Ok(()),
        };
        self.flush(cx);
        result
    }

    fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Duration) {
        self.core.handle_timeout(now);
        self.flush(cx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.core.poll_timeout()
    }

    fn metrics(&self, out: &mut Metrics) {
        for (status, count) in self.core.counts() {
            out.gauge(format!("membership_members{{status=\"{status:?}\"}}"), "members by status", count as f64);
        }
    }

    fn stop(&mut self, cx: &mut Cx<'_>, how: Stop) {
        match how {
            Stop::Leave => {
                self.core.leave(cx.now());
                self.flush(cx);
            }
            Stop::Crash => self.core.stop(),
        }
        self.subscribers.clear();
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
