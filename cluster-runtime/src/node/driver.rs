//! The control task: one per node. It owns the services, their timers (one
//! [`TimerTable`]), and feeds them one input at a time: link up and
//! down, service frames, API calls, timer fires, stop. After each input, the membership
//! events services emitted are handed to every service. It ends when the node stops, so
//! nothing it started outlives the node.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::ids::NodeId;
use crate::node::kernel::Node;
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Input, Kernel, Metrics, NodeStats, Service};
use crate::proto::membership::MembershipEvent;
use crate::proto::timer::TimerTable;

impl Kernel for Node {
    fn node_name(&self) -> &str {
        self.name()
    }

    fn send(&self, peer: NodeId, frame: Vec<u8>) -> bool {
        self.peers.try_send(peer, frame)
    }

    fn connect(&self, name: Option<&str>, addr: &str) {
        self.connect_to(name, addr);
    }

    fn discover(&self, name: &str, port: u16) {
        Node::discover(self, name, port);
    }

    fn actor_type(&self, actor: crate::ids::LocalActorId) -> Option<crate::ids::ActorTypeId> {
        self.actors.type_of(actor)
    }

    fn announce_stop(&self, actor: crate::ids::LocalActorId) -> bool {
        self.actors.announce_stop(actor)
    }

    fn stats(&self) -> NodeStats {
        NodeStats {
            actor_count: self.actors.len() as u64,
            in_flight: (self.requests.len() + self.peers.queued()) as u64,
        }
    }
}

struct Driver {
    node: Arc<Node>,
    services: Vec<Box<dyn Service>>,
    timers: TimerTable<usize>,
    peers: BTreeMap<NodeId, PeerInfo>,
    events: Vec<MembershipEvent>,
}

impl Driver {
    /// Calls service `i` with a context, then refreshes its timer.
    fn with(&mut self, i: usize, f: impl FnOnce(&mut dyn Service, &mut Cx<'_>)) {
        let now = self.node.clock.now();
        let service = &mut self.services[i];
        let mut cx = Cx { now, channel: service.channel(), kernel: &*self.node, events: &mut self.events };
        f(&mut **service, &mut cx);
        self.timers.set(i, service.poll_timeout());
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn Service, &mut Cx<'_>)) {
        for i in 0..self.services.len() {
            self.with(i, &mut f);
        }
    }

    /// Hands the emitted membership events to every service, until none is left.
    fn deliver_events(&mut self) {
        while !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            for event in &events {
                self.stop_orphans(event);
                self.each(|s, cx| s.handle_membership(cx, event));
            }
        }
    }

    /// Actors spawned here by a member that is now down (or left) are stopped with it.
    fn stop_orphans(&self, event: &MembershipEvent) {
        if let MembershipEvent::MemberDown(m) | MembershipEvent::MemberLeft(m) = event {
            let stopped = self.node.actors.stop_spawned_by(m.id);
            if stopped > 0 {
                tracing::info!(node = %self.node.name(), spawner = %m.name, count = stopped, "stopped the actors a departed node spawned");
            }
        }
    }

    fn index_of(&self, channel: crate::proto::wire::channel::Channel) -> Option<usize> {
        self.services.iter().position(|s| s.channel() == channel)
    }

    /// Handles one input; false when the node stopped.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::LinkUp(peer) => {
                self.peers.insert(peer.id, peer.clone());
                self.each(|s, cx| s.handle_link_up(cx, &peer));
            }
            Input::LinkDown(peer, end) => {
                self.peers.remove(&peer.id);
                self.each(|s, cx| s.handle_link_down(cx, &peer, &end));
            }
            Input::Frame { from, channel, body } => {
                self.node.service_backlog.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                let (Some(i), Some(peer)) = (self.index_of(channel), self.peers.get(&from).cloned()) else {
                    tracing::debug!(%channel, "service frame from a peer whose link is gone; dropped");
                    return true;
                };
                let node = self.node.name().to_owned();
                self.with(i, |s, cx| {
                    if let Err(e) = s.handle_frame(cx, &peer, &body) {
                        tracing::warn!(%node, peer = %peer.name, %channel, error = %e, "service frame dropped");
                    }
                });
            }
            Input::Call(channel, call) => {
                if let Some(i) = self.index_of(channel) {
                    self.with(i, call);
                }
            }
            Input::ActorStopped(actor) => self.each(|s, cx| s.handle_actor_stopped(cx, actor)),
            Input::Metrics(reply) => {
                let mut out = Metrics::default();
                for s in &self.services {
                    s.metrics(&mut out);
                }
                let _ = reply.send(out);
            }
            Input::Stop(how, ack) => {
                self.each(|s, cx| s.stop(cx, how));
                self.deliver_events();
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                return false;
            }
        }
        self.deliver_events();
        true
    }

    fn fire_timers(&mut self) {
        let now = self.node.clock.now();
        for i in self.timers.take_expired(now) {
            self.with(i, |s, cx| s.handle_timeout(cx, now));
        }
        self.deliver_events();
    }
}

/// Runs the control task until the node stops.
pub(crate) async fn run(node: Arc<Node>, services: Vec<Box<dyn Service>>, mut inputs: mpsc::UnboundedReceiver<Input>) {
    let mut d = Driver { node, services, timers: TimerTable::new(), peers: BTreeMap::new(), events: Vec::new() };
    d.each(|s, cx| s.start(cx));
    d.deliver_events();
    let stopping = d.node.life.stopping.clone();
    loop {
        let deadline = d.timers.next_deadline().map(|at| d.node.clock.instant(at));
        tokio::select! {
            biased;
            // Timers first, so a flood of inputs cannot starve them.
            () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                d.fire_timers();
            }
            input = inputs.recv() => match input {
                Some(input) => {
                    if !d.handle(input) {
                        return;
                    }
                }
                None => return,
            },
            () = stopping.cancelled() => {
                // Killed: take the stop (and anything before it) without waiting for more.
                while let Ok(input) = inputs.try_recv() {
                    if !d.handle(input) {
                        return;
                    }
                }
                return;
            }
        }
    }
}
