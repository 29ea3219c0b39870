//! The node side of every link: accepts or refuses handshakes, registers links, and routes
//! each received frame: data-plane frames to the local actors and pending requests, service
//! frames to the control task. A frame for a channel no service listens on is logged and
//! dropped; only a frame that breaks the protocol closes the link.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::error::{ClusterError, RemoteError, RemoteErrorKind};
use crate::format::Format;
use crate::ids::{ActorTypeId, LinkId, LocalActorId, NodeId, RequestId, WireId};
use crate::node::actors::{Asked, Parked, ProbeJob, Undelivered};
use crate::node::context;
use crate::node::kernel::Node;
use crate::node::requests::Reply;
use crate::node::service::Input;
use crate::proto::wire::frame::{Frame, GoodbyeReason, Hello, Outcome, RejectReason};
use crate::proto::wire::handshake;
use crate::transport::link::{LinkEnd, LinkHandler, LinkUp};
use crate::transport::protocol_error::ProtocolError;

/// At most this many service frames wait for the control task; more are dropped (service
/// frames are datagrams to their services, which tolerate loss).
const SERVICE_BACKLOG: usize = 16_384;

impl LinkHandler for Node {
    fn local_hello(&self) -> &Hello {
        &self.hello
    }

    fn check_hello(&self, hello: &Hello) -> Result<(), RejectReason> {
        if self.life.is_shut_down() {
            return Err(RejectReason::ShuttingDown);
        }
        handshake::check_hello(&self.cluster, self.id, hello)
    }

    fn link_up(&self, up: LinkUp) -> Result<LinkId, RejectReason> {
        if self.life.is_shut_down() {
            return Err(RejectReason::ShuttingDown);
        }
        let link = self.next_link();
        let registered = self.peers.register(self.id, link, up)?;
        if self.life.is_shut_down() {
            // Shutdown began while registering: do not keep a link it will not close.
            self.peers.remove(link, registered.info.id);
            return Err(RejectReason::ShuttingDown);
        }
        if let Some(stale) = registered.stale {
            self.requests.fail_peer(stale.id, &stale.name);
            self.to_control(Input::LinkDown(stale, LinkEnd::Cancelled));
        }
        let info = registered.info;
        tracing::info!(node = %self.name(), peer = %info.name, addr = %info.addr, "linked to peer");
        self.to_control(Input::LinkUp(info));
        Ok(link)
    }

    fn on_frame(&self, link: LinkId, peer: NodeId, frame: Frame<'_>, body: &Bytes) -> Result<(), ProtocolError> {
        match frame {
            Frame::Tell { target, message, format, payload } => {
                let delivered = context::decoding(&self.slot, || {
                    self.actors.deliver_tell(&self.types, link, target, message, format, payload, body)
                });
                match delivered {
                    Ok(probes) => probes.into_iter().for_each(|probe| self.spawn_probe(probe)),
                    Err(Undelivered::Flow(violation)) => return Err(violation.into()),
                    // Waits for the key's next activation; its credit goes back here at once.
                    Err(Undelivered::Passivated) => self.send_credit(link, target, body.len() as u64, 1),
                    Err(Undelivered::Moved(to)) => {
                        // Forwarded to where the actor went; its credit goes back here at once.
                        self.send_credit(link, target, body.len() as u64, 1);
                        let payload = body.slice_ref(payload);
                        self.forward(to, Parked::Tell { link, message, format, payload, size: body.len() });
                    }
                    Err(Undelivered::Refused(e)) => {
                        self.rejected(peer, target, message, &e, "tell rejected");
                        // It never reached a mailbox: its credit goes back at once.
                        self.send_credit(link, target, body.len() as u64, 1);
                    }
                }
            }
            Frame::Credit { target, bytes, msgs } => self.peers.credit(peer, target, bytes, msgs),
            Frame::Ask { request, target, message, format, payload } => {
                let size = body.len();
                if !self.limits.ask_begin(peer, size) {
                    let c = self.limits.config();
                    let e = RemoteError::new(
                        RemoteErrorKind::Overloaded,
                        format!(
                            "the asks from this node being handled reached {} asks or {} bytes, the most allowed \
                             (inbound_asks_per_peer, inbound_ask_bytes_per_peer)",
                            c.inbound_asks_per_peer, c.inbound_ask_bytes_per_peer
                        ),
                    );
                    self.rejected(peer, target, message, &e, "ask refused: too many in flight from this peer");
                    self.send_reply(peer, request, Outcome::Error(e));
                    return Ok(());
                }
                let delivered = context::decoding(&self.slot, || {
                    self.actors.deliver_ask(&self.types, peer, request, target, message, format, payload, body)
                });
                match delivered {
                    Ok(Asked::Reply(reply)) => self.spawn_reply(peer, request, size, reply),
                    // Answered once the actor takes messages again (its slot stays taken).
                    Ok(Asked::Parked) => {}
                    Ok(Asked::Moved(to)) => {
                        let payload = body.slice_ref(payload);
                        self.forward(to, Parked::Ask { peer, request, message, format, payload, size });
                    }
                    Err(e) => {
                        self.limits.ask_end(peer, size);
                        self.rejected(peer, target, message, &e, "ask rejected");
                        self.send_reply(peer, request, Outcome::Error(e));
                    }
                }
            }
            Frame::Spawn { request, actor_type, format, state } => {
                context::decoding(&self.slot, || self.spawn_for(peer, request, actor_type, format, state))
            }
            Frame::Reply { request, outcome } => {
                let result = match outcome {
                    Outcome::Value(bytes) => Ok(Reply::Value(body.slice_ref(bytes))),
                    Outcome::Spawned { actor } => Ok(Reply::Spawned(actor)),
                    Outcome::Error(error) => Err(ClusterError::Remote { node: self.peers.name_of(peer), error }),
                };
                self.requests.complete(request, peer, result)?;
            }
            Frame::Service { channel, body: service_body } => {
                if !self.channels.contains(&channel) {
                    tracing::warn!(
                        node = %self.name(), peer = %self.peers.name_of(peer), %channel,
                        "frame for a channel no service listens on; dropped"
                    );
                } else if self.service_backlog.fetch_add(1, Ordering::Relaxed) >= SERVICE_BACKLOG {
                    // Peers cannot grow the control task's queue without bound.
                    self.service_backlog.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(
                        node = %self.name(), peer = %self.peers.name_of(peer), %channel,
                        "services are {SERVICE_BACKLOG} frames behind; frame dropped"
                    );
                } else {
                    self.to_control(Input::Frame { from: peer, channel, body: body.slice_ref(service_body) });
                }
            }
            Frame::Stop { request, target } => {
                if let Some(handle) = self.actors.stop_handle(target) {
                    tracing::debug!(node = %self.name(), peer = %self.peers.name_of(peer), %target, "stopping an actor for a peer");
                    let me = self.me.clone();
                    let stopping = self.life.stopping.clone();
                    self.life.tasks.spawn_local(async move {
                        tokio::select! {
                            biased;
                            () = stopping.cancelled() => {}
                            () = handle.stop_and_wait() => {
                                if let Some(node) = me.upgrade() {
                                    node.send_reply(peer, request, Outcome::Value(&[]));
                                }
                            }
                        }
                    });
                } else {
                    let e = RemoteError::new(
                        RemoteErrorKind::UnknownActor,
                        format!("no actor with id {target} on this node"),
                    );
                    self.send_reply(peer, request, Outcome::Error(e));
                }
            }
            other => return Err(ProtocolError::Unexpected(other.kind())),
        }
        Ok(())
    }

    fn throttled(&self, peer: NodeId) {
        self.limits.throttled();
        tracing::debug!(node = %self.name(), peer = %self.peers.name_of(peer), "peer over its inbound rate; reading paused");
    }

    fn link_down(&self, link: LinkId, peer: NodeId, end: &LinkEnd) {
        if *end == LinkEnd::Goodbye(GoodbyeReason::Replaced) {
            // The peer moved to another connection, which may still be completing its
            // handshake on this side. Keep sending here (the peer still reads) until that
            // link replaces this one; give up after a handshake timeout.
            let me = self.me.clone();
            let grace = self.link_settings.handshake_timeout;
            let stopping = self.life.stopping.clone();
            self.life.tasks.spawn_local(async move {
                tokio::select! {
                    biased;
                    () = stopping.cancelled() => {}
                    () = tokio::time::sleep(grace) => {}
                }
                if let Some(node) = me.upgrade() {
                    node.remove_link(link, peer, &LinkEnd::Goodbye(GoodbyeReason::Replaced));
                }
            });
            return;
        }
        self.remove_link(link, peer, end);
    }
}

impl Node {
    /// Forgets `link` if it is still the current link to `peer`, closes it and fails the
    /// requests pending on that peer.
    fn remove_link(&self, link: LinkId, peer: NodeId, end: &LinkEnd) {
        self.actors.forget_link(link);
        let Some(removed) = self.peers.remove(link, peer) else { return };
        tracing::info!(node = %self.name(), peer = %removed.info.name, end = ?end, "link to peer down");
        self.requests.fail_peer(peer, &removed.info.name);
        self.to_control(Input::LinkDown(removed.info, end.clone()));
    }

    fn rejected(&self, peer: NodeId, target: LocalActorId, message: WireId, e: &RemoteError, what: &'static str) {
        tracing::warn!(
            node = %self.name(), peer = %self.peers.name_of(peer), %target, %message,
            kind = ?e.kind, detail = %e.detail, "{what}"
        );
    }

    /// Awaits a flow-control probe (and the ones that follow it) in a task of the node,
    /// returning credit to the links as the actor gets through its mailbox.
    pub(crate) fn spawn_probe(&self, first: ProbeJob) {
        let me = self.me.clone();
        let stopping = self.life.stopping.clone();
        self.life.tasks.spawn_local(async move {
            let mut job = first;
            loop {
                let handled = tokio::select! {
                    biased;
                    () = stopping.cancelled() => return,
                    handled = &mut job.future => handled,
                };
                let Some(node) = me.upgrade() else { return };
                let (credits, next) = node.actors.probe_done(job.actor, handled);
                for c in credits {
                    node.send_credit(c.link, job.actor, c.bytes, c.msgs);
                }
                match next {
                    Some(next) => job = next,
                    None => return,
                }
            }
        });
    }

    /// Runs an ask's reply future in a task of the node and sends its outcome back.
    pub(crate) fn spawn_reply(
        &self,
        peer: NodeId,
        request: RequestId,
        size: usize,
        reply: crate::dispatch::ReplyFuture,
    ) {
        let me = self.me.clone();
        let stopping = self.life.stopping.clone();
        self.life.tasks.spawn_local(async move {
            let outcome = tokio::select! {
                biased;
                () = stopping.cancelled() => return,
                outcome = reply => outcome,
            };
            let Some(node) = me.upgrade() else { return };
            node.limits.ask_end(peer, size);
            match &outcome {
                Ok(bytes) => node.send_reply(peer, request, Outcome::Value(bytes)),
                Err(e) => node.send_reply(peer, request, Outcome::Error(e.clone())),
            }
        });
    }

    /// A peer asks this node to build an actor from its state.
    fn spawn_for(&self, peer: NodeId, request: RequestId, actor_type: ActorTypeId, format: Format, state: &[u8]) {
        let outcome = match self.types.actor(actor_type) {
            None => Err(RemoteError::new(
                RemoteErrorKind::UnknownActorType,
                format!("no actor type with id {actor_type} is registered"),
            )),
            Some(reg) => {
                self.actors.spawn(reg, format, state, peer, self.limits.config().spawned_per_peer).inspect(|actor| {
                    tracing::debug!(node = %self.name(), actor = reg.name, id = %actor, "spawned for a peer");
                })
            }
        };
        match outcome {
            Ok(actor) => self.send_reply(peer, request, Outcome::Spawned { actor }),
            Err(e) => {
                if e.kind == RemoteErrorKind::Overloaded {
                    self.limits.spawn_refused();
                }
                tracing::warn!(node = %self.name(), peer = %self.peers.name_of(peer), kind = ?e.kind, detail = %e.detail, "spawn rejected");
                self.send_reply(peer, request, Outcome::Error(e));
            }
        }
    }
}
