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

impl Node {
    /// Forgets where actor `actor` moved once `grace` has passed.
    fn forget_after(&self, actor: crate::ids::LocalActorId, grace: std::time::Duration) {
        let me = self.me.clone();
        self.spawn_task(async move {
            tokio::time::sleep(grace).await;
            if let Some(node) = me.upgrade() {
                node.actors.forget_moved(actor);
            }
        });
    }
}

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

    fn hold(&self, actor: crate::ids::LocalActorId) -> bool {
        self.actors.hold(actor)
    }

    fn build_held(
        &self,
        actor_type: crate::ids::ActorTypeId,
        format: crate::format::Format,
        state: &[u8],
    ) -> Result<crate::ids::LocalActorId, crate::error::RemoteError> {
        let Some(reg) = self.types.actor(actor_type) else {
            return Err(crate::error::RemoteError::new(
                crate::error::RemoteErrorKind::UnknownActorType,
                format!("no actor type with id {actor_type} is registered"),
            ));
        };
        crate::node::context::decoding(&self.slot, || {
            self.actors.spawn_gated(reg, format, state, None, usize::MAX, true)
        })
    }

    fn resume(&self, actor: crate::ids::LocalActorId) {
        let resumed = self.actors.resume_here(&self.types, actor);
        for (peer, request, size, reply) in resumed.replies {
            self.spawn_reply(peer, request, size, reply);
        }
        for (peer, request, size, e) in resumed.refused {
            self.limits.ask_end(peer, size);
            self.send_reply(peer, request, crate::proto::wire::frame::Outcome::Error(e));
        }
        if let Some(probe) = resumed.probe {
            self.spawn_probe(probe);
        }
    }

    fn discard(&self, actor: crate::ids::LocalActorId) {
        if let Some(stop) = self.actors.stop_handle(actor) {
            stop.stop.cancel();
        }
    }

    fn move_away(
        &self,
        actor: crate::ids::LocalActorId,
        to: crate::proto::registry::record::ActorLocation,
        then: Option<(NodeId, crate::proto::wire::channel::Channel, Vec<u8>)>,
        grace: std::time::Duration,
    ) {
        let stop = self.actors.stop_handle(actor);
        for parked in self.actors.move_away(actor, to.clone()) {
            self.forward(to.clone(), parked);
        }
        let me = self.me.clone();
        self.after_forwarded(move || {
            let (Some(node), Some((peer, channel, body))) = (me.upgrade(), then) else { return };
            let frame = crate::proto::wire::frame::Frame::Service { channel, body: &body };
            let sent = crate::proto::wire::frame::encode(&frame).is_ok_and(|bytes| node.peers.try_send(peer, bytes));
            if !sent {
                tracing::warn!(node = %node.name(), "could not send a migration's commit; the target asks the directory");
            }
        });
        if let Some(stop) = stop {
            stop.stop.cancel();
        }
        self.forget_after(actor, grace);
    }

    fn spawn_call(
        &self,
        channel: crate::proto::wire::channel::Channel,
        work: std::pin::Pin<Box<dyn std::future::Future<Output = Option<crate::node::service::Call>>>>,
    ) {
        let me = self.me.clone();
        self.spawn_task(async move {
            if let (Some(call), Some(node)) = (work.await, me.upgrade()) {
                node.to_control(Input::Call(channel, call));
            }
        });
    }

    fn mark_keyed(
        &self,
        actor: crate::ids::LocalActorId,
        key: crate::proto::activation::ActivationKey,
        identity: crate::ids::ActorId,
    ) -> bool {
        self.actors.mark_keyed(actor, key, identity)
    }

    fn keyed_activity(&self) -> Vec<crate::node::actors::KeyedActivity> {
        self.actors.keyed_activity()
    }

    fn is_held(&self, actor: crate::ids::LocalActorId) -> bool {
        self.actors.is_held(actor)
    }

    fn key_of(&self, actor: crate::ids::LocalActorId) -> Option<crate::proto::activation::ActivationKey> {
        self.actors.key_of(actor)
    }

    fn unclaimed_keyed(&self) -> Vec<crate::ids::LocalActorId> {
        self.actors.unclaimed(&|t| self.types.keyed(t).is_some())
    }

    fn keyed_policies(&self) -> Vec<(crate::ids::ActorTypeId, Option<std::time::Duration>, bool)> {
        use crate::actor::Placement;
        self.types
            .keyed_types()
            .map(|k| {
                let hashed = matches!((k.placement)(), Placement::Local | Placement::ConsistentHash);
                (crate::ids::ActorTypeId(k.type_id), (k.passivate_after)(), hashed)
            })
            .collect()
    }

    fn passivate(&self, actor: crate::ids::LocalActorId, key: crate::proto::activation::ActivationKey) -> bool {
        let stop = self.actors.stop_handle(actor);
        if !self.actors.passivate(actor, key) {
            return false;
        }
        if let Some(stop) = stop {
            stop.stop.cancel();
        }
        true
    }

    fn release_passivated(
        &self,
        actor: crate::ids::LocalActorId,
        to: crate::proto::registry::record::ActorLocation,
        grace: std::time::Duration,
    ) {
        for parked in self.actors.release_passivated(actor, to.clone()) {
            self.forward(to.clone(), parked);
        }
        self.forget_after(actor, grace);
    }

    fn activate_key(&self, key: &crate::proto::activation::ActivationKey) -> Option<crate::ids::LocalActorId> {
        self.actors.activate_key(&self.types, key)
    }

    fn take_state(&self, actor: crate::ids::LocalActorId) -> Option<crate::dispatch::StateFuture> {
        self.actors.take_state(&self.types, actor)
    }

    fn notify(&self, notice: crate::node::service::Notice) {
        self.to_control(Input::Notice(notice));
    }

    fn watch_handled(&self, actor: crate::ids::LocalActorId) -> bool {
        let me = self.me.clone();
        self.actors.watch(
            actor,
            Box::new(move || {
                if let Some(node) = me.upgrade() {
                    node.to_control(Input::Touched(actor));
                }
            }),
        )
    }

    fn snapshot(&self, actor: crate::ids::LocalActorId) -> Option<crate::dispatch::StateFuture> {
        self.actors.clean(actor);
        self.actors.take_state(&self.types, actor)
    }

    fn recovery_policy(
        &self,
        actor_type: crate::ids::ActorTypeId,
    ) -> Option<&'static crate::types::RecoveryRegistration> {
        self.types.recovery(actor_type)
    }

    fn detach(&self, actor: crate::ids::LocalActorId) -> bool {
        self.actors.detach(actor)
    }

    fn post(&self, channel: crate::proto::wire::channel::Channel, call: crate::node::service::Call) {
        self.to_control(Input::Call(channel, call));
    }

    fn accepts(
        &self,
        target: crate::ids::LocalActorId,
        message: crate::ids::WireId,
    ) -> Result<(), crate::error::RemoteError> {
        self.actors.accepts(&self.types, target, message)
    }

    fn deliver(
        &self,
        channel: crate::proto::wire::channel::Channel,
        target: crate::ids::LocalActorId,
        message: crate::ids::WireId,
        format: crate::format::Format,
        payload: bytes::Bytes,
        done: crate::node::service::HandledFn,
    ) {
        let back = self.me.clone();
        let done: Done = Box::new(move |handled| {
            if let Some(node) = back.upgrade() {
                node.to_control(Input::Call(channel, done(handled)));
            }
        });
        if let Some((addr, h, _, done)) = self.reach_guaranteed(target, message, format, payload.clone(), done) {
            self.dispatch_guaranteed(&addr, h, format, &payload, done);
        }
    }

    fn deliver_batch(
        &self,
        channel: crate::proto::wire::channel::Channel,
        target: crate::ids::LocalActorId,
        items: Vec<crate::node::service::BatchItem>,
        done: crate::node::service::BatchDoneFn,
    ) {
        use crate::error::{RemoteError, RemoteErrorKind};
        use crate::node::service::Handled;
        enum Waiting {
            Reply(crate::dispatch::ReplyFuture),
            Told,
        }
        let back = self.me.clone();
        let gather = Arc::new(std::sync::Mutex::new(Gather {
            results: items.iter().map(|_| None).collect(),
            left: items.len(),
            done: Some(Box::new(move |results| {
                if let Some(node) = back.upgrade() {
                    node.to_control(Input::Call(channel, done(results)));
                }
            })),
        }));
        let mut waiting = Vec::new();
        let mut probe = None;
        for (i, item) in items.into_iter().enumerate() {
            let slot = gather.clone();
            let fill_i: Done = Box::new(move |h| fill(&slot, i, h));
            let Some((addr, h, probe_fn, fill_i)) =
                self.reach_guaranteed(target, item.message, item.format, item.payload.clone(), fill_i)
            else {
                continue;
            };
            let tell = !item.reply && (h.handled_in_order)();
            let dispatched =
                crate::node::context::decoding(&self.slot, || (h.dispatch)(&*addr, item.format, &item.payload, !tell));
            match dispatched {
                Ok(Some(reply)) => waiting.push((i, Waiting::Reply(reply))),
                Ok(None) if tell => {
                    waiting.push((i, Waiting::Told));
                    probe = Some((addr, probe_fn));
                }
                Ok(None) => fill_i(Handled::Refused(RemoteError::new(
                    RemoteErrorKind::Encode,
                    "the message produced no result",
                ))),
                Err(e) => fill_i(Handled::Refused(e)),
            }
        }
        if waiting.is_empty() {
            return;
        }
        // One probe after the batch's tells: answered, every one of them was handled.
        let probe = probe.and_then(|(addr, probe_fn)| probe_fn(&*addr));
        self.spawn_task(async move {
            let told = match probe {
                Some(probe) => probe.await,
                None => true,
            };
            for (i, w) in waiting {
                let handled = match w {
                    Waiting::Reply(reply) => match reply.await {
                        Ok(bytes) => Handled::Done(bytes),
                        Err(e) => Handled::Refused(e),
                    },
                    Waiting::Told if told => Handled::Done(Vec::new()),
                    Waiting::Told => {
                        Handled::Refused(RemoteError::new(RemoteErrorKind::ActorStopped, "the actor stopped"))
                    }
                };
                fill(&gather, i, handled);
            }
        });
    }

    fn stats(&self) -> NodeStats {
        NodeStats {
            actor_count: self.actors.len() as u64,
            in_flight: (self.requests.len() + self.peers.queued()) as u64,
        }
    }
}

/// Where the outcome of one guaranteed message goes.
type Done = Box<dyn FnOnce(crate::node::service::Handled) + Send>;

/// The outcomes of a batch as they come in.
struct Gather {
    results: Vec<Option<crate::node::service::Handled>>,
    left: usize,
    done: Option<Box<dyn FnOnce(Vec<crate::node::service::Handled>) + Send>>,
}

/// Item `i` of a batch has its outcome; the last one hands them all over.
fn fill(gather: &std::sync::Mutex<Gather>, i: usize, handled: crate::node::service::Handled) {
    let finished = {
        let mut g = gather.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.results[i].is_none() {
            g.results[i] = Some(handled);
            g.left -= 1;
        }
        if g.left == 0 {
            let results: Vec<_> = std::mem::take(&mut g.results).into_iter().flatten().collect();
            g.done.take().map(|done| (done, results))
        } else {
            None
        }
    };
    if let Some((done, results)) = finished {
        done(results);
    }
}

impl Node {
    /// Finds local actor `target` for a guaranteed message: its address, the message's
    /// handler and its probe when the message can go into its mailbox now (with `done`
    /// back); otherwise the message is held with the actor's other messages, or `done`
    /// hears it moved or was refused, and `None`.
    #[allow(clippy::type_complexity)]
    fn reach_guaranteed(
        &self,
        target: crate::ids::LocalActorId,
        message: crate::ids::WireId,
        format: crate::format::Format,
        payload: bytes::Bytes,
        done: Done,
    ) -> Option<(crate::dispatch::ErasedAddr, &'static crate::types::HandlerRegistration, crate::types::ProbeFn, Done)>
    {
        use crate::node::actors::{Guaranteed, Resume};
        use crate::node::service::Handled;
        let mut slot = Some((done, payload));
        let me = self.me.clone();
        let park = |h: &'static crate::types::HandlerRegistration| -> crate::node::actors::LocalSend {
            let (done, payload) = slot.take().expect("parked once");
            Box::new(move |resume| match resume {
                Resume::Here(addr) => {
                    if let Some(node) = me.upgrade() {
                        node.dispatch_guaranteed(addr, h, format, &payload, done);
                    }
                }
                Resume::There(to) => done(Handled::Moved(to.clone())),
            })
        };
        match self.actors.deliver_guaranteed(&self.types, target, message, park) {
            Ok(Guaranteed::Held) => None,
            Ok(Guaranteed::Now(addr, h, probe)) => slot.take().map(|(done, _)| (addr, h, probe, done)),
            Ok(Guaranteed::Moved(to)) => {
                if let Some((done, _)) = slot.take() {
                    done(Handled::Moved(to));
                }
                None
            }
            Err(e) => {
                if let Some((done, _)) = slot.take() {
                    done(Handled::Refused(e));
                }
                None
            }
        }
    }

    /// Puts a guaranteed message into actor `addr`'s mailbox as an ask; `done` hears the
    /// handler's result once it has run.
    fn dispatch_guaranteed(
        &self,
        addr: &crate::dispatch::ErasedAddr,
        h: &'static crate::types::HandlerRegistration,
        format: crate::format::Format,
        payload: &[u8],
        done: Done,
    ) {
        use crate::error::{RemoteError, RemoteErrorKind};
        use crate::node::service::Handled;
        let dispatched = crate::node::context::decoding(&self.slot, || (h.dispatch)(&**addr, format, payload, true));
        match dispatched {
            Ok(Some(reply)) => self.spawn_task(async move {
                done(match reply.await {
                    Ok(bytes) => Handled::Done(bytes),
                    Err(e) => Handled::Refused(e),
                });
            }),
            Ok(None) => {
                done(Handled::Refused(RemoteError::new(RemoteErrorKind::Encode, "the message produced no result")))
            }
            Err(e) => done(Handled::Refused(e)),
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
        service.flush(&mut cx);
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
                    if let Err(e) = s.handle_frame_bytes(cx, &peer, &body) {
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
            Input::Touched(actor) => self.each(|s, cx| s.handle_touched(cx, actor)),
            Input::Wake(actor, key) => self.each(|s, cx| s.handle_wake(cx, actor, &key)),
            Input::Notice(notice) => self.each(|s, cx| s.handle_notice(cx, &notice)),
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
