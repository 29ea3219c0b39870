//! The recovery service: drives the snapshot bookkeeping ([`Snapshots`]) for the actors
//! of types with a recovery policy (`#[distributed_actor(recovery = "restart")]`).
//!
//! As a host it follows the directory: an actor of such a type that gets a record here
//! (registered, activated for a key, arrived by a migration, re-created) is hosted; it stops
//! being hosted when its records go (stopped, passivated, moved). Its state is taken in
//! mailbox order after messages reach it (or every interval) and sent to its holders, which
//! acknowledge each replica. Hosted actors no longer stop with the node that spawned them.
//!
//! As a holder it keeps replicas; when a host is marked down it re-creates the host's
//! non-keyed actors it is first in line for, where their placement says, with their
//! identity and names; keyed replicas wait for their key's next activation to claim them
//! ([`RecoveryFrame::Claim`]), which then runs from the replica on this node.

pub mod api;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::actor::Placement;
use crate::format::Format;
use crate::ids::{ActorId, LocalActorId, NodeId};
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Install, Notice, Service, ServiceFrameError};
use crate::proto::activation::keyed_identity;
use crate::proto::membership::MembershipEvent;
use crate::proto::registry::record::{ActorLocation, DirKey, Refusal};
use crate::proto::snapshot::{Claim, ClaimAnswer, Output, RecoveryFrame, Replica, Snapshots};
use crate::proto::wire::channel::Channel;
use crate::services::placement::PlacementService;
use crate::services::registry::RegistryService;
use crate::transport::link::LinkEnd;

/// The version of recovery's frames.
const VERSION: u16 = 1;

/// A claim this node sent to a holder.
struct Asked {
    reply: oneshot::Sender<ClaimAnswer>,
    holder: String,
    deadline: Duration,
}

/// What recovery shares with its API: figures.
#[derive(Debug, Default)]
pub(crate) struct RecoveryShared;

/// Figures about recovery on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Actors hosted here that keep replicas elsewhere.
    pub hosted: usize,
    /// Of those, how many have state not yet confirmed kept by every holder.
    pub unconfirmed: usize,
    /// Replicas this node holds for actors hosted elsewhere.
    pub held: usize,
    /// Actors re-created here from a replica (or their `Default`) so far.
    pub recovered: u64,
}

/// A call back into the recovery service, for work done in a task of the node.
fn back(f: impl FnOnce(&mut RecoveryService, &mut Cx<'_>) + Send + 'static) -> Option<crate::node::service::Call> {
    Some(crate::node::service::call_on(f))
}

/// The recovery service of one node.
pub(crate) struct RecoveryService {
    s: Snapshots,
    me: String,
    node_id: NodeId,
    linked: BTreeMap<String, NodeId>,
    /// Members not marked down (this node included).
    live: BTreeSet<String>,
    /// Each hosted actor's replica identity (a keyed activation's is its key's).
    by_actor: BTreeMap<LocalActorId, ActorId>,
    actors: BTreeMap<ActorId, LocalActorId>,
    /// Re-created actors, until their records come back: the epoch they run in.
    restoring: BTreeMap<LocalActorId, u64>,
    /// Claims sent to holders.
    asked: BTreeMap<u64, Asked>,
    next_req: u64,
    timeout: Duration,
    recovered: u64,
}

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (RecoveryService, Arc<RecoveryShared>) {
    let me = i.config.node_name().to_owned();
    let service = RecoveryService {
        s: Snapshots::new(&me),
        live: BTreeSet::from([me.clone()]),
        me,
        node_id: i.node_id,
        linked: BTreeMap::new(),
        by_actor: BTreeMap::new(),
        actors: BTreeMap::new(),
        restoring: BTreeMap::new(),
        asked: BTreeMap::new(),
        next_req: 1,
        timeout: i.config.request_timeout(),
        recovered: 0,
    };
    (service, Arc::new(RecoveryShared))
}

impl RecoveryService {
    fn here(&self, actor: LocalActorId) -> ActorLocation {
        ActorLocation { node: self.me.clone(), node_id: self.node_id, actor }
    }

    /// Figures for the API.
    pub(crate) fn stats(&self) -> RecoveryStats {
        RecoveryStats {
            hosted: self.s.hosted(),
            unconfirmed: self.s.unconfirmed(),
            held: self.s.held(),
            recovered: self.recovered,
        }
    }

    /// Local actor `actor` got a directory record under `key`.
    fn registered(&mut self, cx: &mut Cx<'_>, actor: LocalActorId, identity: ActorId, key: &DirKey) {
        let Some(actor_type) = cx.node().actor_type(actor) else { return };
        let Some(reg) = cx.node().recovery_policy(actor_type) else { return };
        let policy = reg.policy();
        let now = cx.now();
        if let Some(&rid) = self.by_actor.get(&actor) {
            if let DirKey::Name(name) = key {
                self.s.handle_named(now, rid, name);
            }
            self.flush(cx);
            return;
        }
        let (rid, keyed) = match key {
            DirKey::Keyed { actor_type, key } => (keyed_identity(*actor_type, key), Some(key.clone())),
            // A keyed activation is hosted under its key, whatever record is reported first.
            _ if reg.keyed => return,
            _ => (identity, None),
        };
        // A keyed activation without replicas simply activates again from its key.
        if policy.holders() == 0 || (keyed.is_some() && policy.replicas == 0) {
            return;
        }
        cx.node().detach(actor);
        if policy.replicas > 0 {
            cx.node().watch_handled(actor);
        }
        self.by_actor.insert(actor, rid);
        self.actors.insert(rid, actor);
        let epoch = self.restoring.remove(&actor).unwrap_or(0);
        self.s.host(now, rid, actor_type, keyed, policy, epoch);
        if let DirKey::Name(name) = key {
            self.s.handle_named(now, rid, name);
        }
        self.flush(cx);
    }

    fn unhosted(&mut self, cx: &mut Cx<'_>, actor: LocalActorId, moved_to: Option<&str>) {
        let Some(rid) = self.by_actor.remove(&actor) else { return };
        self.actors.remove(&rid);
        match moved_to {
            Some(to) => self.s.handle_moved(rid, to),
            None => self.s.handle_left(rid),
        }
        self.flush(cx);
    }

    /// Carries out what the bookkeeping asks for.
    fn flush(&mut self, cx: &mut Cx<'_>) {
        while let Some(out) = self.s.poll_output() {
            match out {
                Output::Send { to, frame } => {
                    if let Some(id) = self.linked.get(&to) {
                        cx.send(*id, &RecoveryFrame::Snapshot(frame).encode());
                    }
                }
                Output::TakeSnapshot { identity } => self.take(cx, identity),
                Output::Recreate { replica } => self.recreate(cx, replica),
            }
        }
    }

    /// Takes hosted `identity`'s state in a task of the node; it comes back as a call.
    fn take(&mut self, cx: &mut Cx<'_>, identity: ActorId) {
        let taking = self.actors.get(&identity).and_then(|a| cx.node().snapshot(*a));
        let Some(taking) = taking else {
            self.s.handle_snapshot(cx.now(), identity, None);
            return;
        };
        cx.node().spawn_call(
            Channel::RECOVERY,
            Box::pin(async move {
                let state = taking.await;
                back(move |r, cx| {
                    if let Err(e) = &state {
                        tracing::warn!(node = %r.me, error = %e, "an actor's snapshot could not be taken");
                    }
                    r.s.handle_snapshot(cx.now(), identity, state.ok());
                    r.flush(cx);
                })
            }),
        );
    }

    /// The state a replica's actor starts from: its snapshot, or its type's `Default`.
    fn state_of(cx: &mut Cx<'_>, replica: &Replica) -> Result<(Format, Vec<u8>), String> {
        if let Some(state) = &replica.state {
            return Ok(state.clone());
        }
        let reg = cx.node().recovery_policy(replica.actor_type).ok_or("the type has no recovery policy here")?;
        let default = reg.restart_state.ok_or("the type has neither replicas nor a restart state")?;
        Ok(((reg.format)(), default()?))
    }

    /// Builds `replica`'s actor here, held; its messages flow once its records are back.
    fn build(&mut self, cx: &mut Cx<'_>, replica: &Replica) -> Result<LocalActorId, String> {
        let (format, state) = Self::state_of(cx, replica)?;
        let actor = cx.node().build_held(replica.actor_type, format, &state).map_err(|e| e.detail)?;
        self.restoring.insert(actor, replica.version.epoch + 1);
        Ok(actor)
    }

    /// A lost host's non-keyed actor this node is first in line for: re-created where its
    /// placement says.
    fn recreate(&mut self, cx: &mut Cx<'_>, replica: Replica) {
        let Some(reg) = cx.node().recovery_policy(replica.actor_type) else {
            tracing::error!(node = %self.me, actor = %replica.identity, "a replica's type is not registered here; it is not re-created");
            return;
        };
        let placement = match (reg.placement)() {
            Placement::Local => Placement::ConsistentHash,
            other => other,
        };
        let key = Some(format!("{}", replica.identity.0));
        let (tx, rx) = oneshot::channel();
        let decide = move |p: &mut PlacementService, cx: &mut Cx<'_>| p.decide(cx, placement, key, tx);
        cx.node().post(Channel::PLACEMENT, crate::node::service::call_on(decide));
        cx.node().spawn_call(
            Channel::RECOVERY,
            Box::pin(async move {
                let chosen = rx.await.ok().and_then(Result::ok);
                back(move |r, cx| r.recreate_on(cx, replica, chosen))
            }),
        );
    }

    fn recreate_on(&mut self, cx: &mut Cx<'_>, replica: Replica, chosen: Option<String>) {
        let identity = replica.identity;
        let to = chosen.filter(|n| *n != self.me).and_then(|n| self.linked.get(&n).copied());
        match to {
            Some(node) if cx.send(node, &RecoveryFrame::Restore(replica.clone()).encode()) => {
                tracing::info!(node = %self.me, actor = %identity, "a lost node's actor is re-created where its placement says");
            }
            _ => self.restore(cx, &replica),
        }
        self.s.handle_recreated(identity);
        self.flush(cx);
    }

    /// Re-creates non-keyed `replica`'s actor here, with its identity and names.
    fn restore(&mut self, cx: &mut Cx<'_>, replica: &Replica) {
        let actor = match self.build(cx, replica) {
            Ok(actor) => actor,
            Err(e) => {
                tracing::error!(node = %self.me, actor = %replica.identity, error = %e, "a lost node's actor could not be re-created");
                return;
            }
        };
        let (identity, names) = (replica.identity, replica.names.clone());
        self.registry(cx, move |r, cx| r.restore(cx, actor, identity, names));
        cx.node().resume(actor);
        self.recovered += 1;
        tracing::info!(node = %self.me, actor = %identity, "a lost node's actor was re-created here");
    }

    /// A claim of keyed replica `identity` (from this node, or node `from`).
    fn claim(
        &mut self,
        cx: &mut Cx<'_>,
        identity: ActorId,
        reply: impl FnOnce(&mut Cx<'_>, ClaimAnswer) + Send + 'static,
    ) {
        let replica = match self.s.claim(identity) {
            Claim::Replica(replica) => replica,
            Claim::HostLive | Claim::Claimed => return reply(cx, ClaimAnswer::Retry),
            Claim::None => return reply(cx, ClaimAnswer::None),
        };
        let Some(key) = replica.key.clone() else {
            self.s.claim_failed(identity);
            return reply(cx, ClaimAnswer::None);
        };
        let actor = match self.build(cx, &replica) {
            Ok(actor) => actor,
            Err(e) => {
                tracing::error!(node = %self.me, key = %key, error = %e, "a keyed replica could not be built; the key activates afresh");
                self.s.handle_recreated(identity);
                self.flush(cx);
                return reply(cx, ClaimAnswer::None);
            }
        };
        let here = self.here(actor);
        let dir_key = DirKey::Keyed { actor_type: replica.actor_type, key };
        let (tx, rx) = oneshot::channel();
        self.registry(cx, move |r, cx| r.register(cx, dir_key, here, tx));
        cx.node().spawn_call(
            Channel::RECOVERY,
            Box::pin(async move {
                let registered = rx.await.unwrap_or(Err(Refusal::Timeout));
                back(move |r, cx| {
                    if registered.is_ok() {
                        cx.node().resume(actor);
                        r.recovered += 1;
                        r.s.handle_recreated(identity);
                        r.flush(cx);
                        return reply(cx, ClaimAnswer::Running(r.here(actor)));
                    }
                    // The built copy is not the key's.
                    cx.node().discard(actor);
                    r.restoring.remove(&actor);
                    let answer = match registered {
                        // Another activation took the key first: it stays the key's.
                        Err(Refusal::Taken(winner)) if r.live.contains(&winner.location.node) => {
                            r.s.handle_recreated(identity);
                            ClaimAnswer::Running(winner.location)
                        }
                        // The directory still names the lost activation, or did not answer:
                        // the replica stays, to be claimed again.
                        refused => {
                            tracing::debug!(node = %r.me, ?refused, "a claimed replica could not take its key yet");
                            r.s.claim_failed(identity);
                            ClaimAnswer::Retry
                        }
                    };
                    r.flush(cx);
                    reply(cx, answer);
                })
            }),
        );
    }

    /// Asks node `holder` for keyed replica `identity` (this node: at once).
    pub(crate) fn ask_claim(
        &mut self,
        cx: &mut Cx<'_>,
        holder: &str,
        identity: ActorId,
        reply: oneshot::Sender<ClaimAnswer>,
    ) {
        if holder == self.me {
            return self.claim(cx, identity, move |_, answer| {
                let _ = reply.send(answer);
            });
        }
        let req = self.next_req;
        self.next_req += 1;
        match self.linked.get(holder) {
            Some(id) if cx.send(*id, &RecoveryFrame::Claim { req, identity }.encode()) => {
                let deadline = cx.now() + self.timeout;
                self.asked.insert(req, Asked { reply, holder: holder.to_owned(), deadline });
            }
            _ => {
                let _ = reply.send(ClaimAnswer::Retry);
            }
        }
    }

    fn registry(&mut self, cx: &mut Cx<'_>, f: impl FnOnce(&mut RegistryService, &mut Cx<'_>) + Send + 'static) {
        cx.node().post(Channel::REGISTRY, crate::node::service::call_on(f));
    }
}

impl Service for RecoveryService {
    fn channel(&self) -> Channel {
        Channel::RECOVERY
    }

    fn version(&self) -> u16 {
        VERSION
    }

    fn handle_link_up(&mut self, _: &mut Cx<'_>, peer: &PeerInfo) {
        self.linked.insert(peer.name.clone(), peer.id);
    }

    fn handle_link_down(&mut self, _: &mut Cx<'_>, peer: &PeerInfo, _: &LinkEnd) {
        if self.linked.get(&peer.name) == Some(&peer.id) {
            self.linked.remove(&peer.name);
            // Its answers to claims will not come: look again.
            let lost: Vec<u64> = self.asked.iter().filter(|(_, a)| a.holder == peer.name).map(|(r, _)| *r).collect();
            for req in lost {
                if let Some(a) = self.asked.remove(&req) {
                    let _ = a.reply.send(ClaimAnswer::Retry);
                }
            }
        }
    }

    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError> {
        match RecoveryFrame::decode(body).map_err(ServiceFrameError)? {
            RecoveryFrame::Snapshot(frame) => {
                let result = self.s.handle_frame(cx.now(), &from.name, frame).map_err(ServiceFrameError);
                self.flush(cx);
                result?;
            }
            RecoveryFrame::Claim { req, identity } => {
                let peer = from.id;
                self.claim(cx, identity, move |cx, answer| {
                    cx.send(peer, &RecoveryFrame::ClaimReply { req, answer }.encode());
                });
            }
            RecoveryFrame::ClaimReply { req, answer } => match self.asked.get(&req) {
                Some(a) if a.holder == from.name => {
                    if let Some(a) = self.asked.remove(&req) {
                        let _ = a.reply.send(answer);
                    }
                }
                _ => return Err(ServiceFrameError(format!("`{}` answered a claim it was not asked", from.name))),
            },
            RecoveryFrame::Restore(replica) => {
                if replica.key.is_some() || !replica.holders.contains(&from.name) {
                    return Err(ServiceFrameError(format!(
                        "`{}` asked for the re-creation of an actor it holds no replica of",
                        from.name
                    )));
                }
                self.restore(cx, &replica);
            }
        }
        Ok(())
    }

    fn handle_membership(&mut self, cx: &mut Cx<'_>, event: &MembershipEvent) {
        let changed = match event {
            MembershipEvent::MemberUp(m) => self.live.insert(m.name.clone()),
            MembershipEvent::MemberDown(m) | MembershipEvent::MemberLeft(m) | MembershipEvent::MemberRemoved(m) => {
                self.live.remove(&m.name)
            }
            MembershipEvent::MemberSuspect(_) | MembershipEvent::ResourcesChanged(_) => false,
        };
        if changed {
            self.s.handle_view(cx.now(), self.live.clone());
            self.flush(cx);
        }
    }

    fn handle_notice(&mut self, cx: &mut Cx<'_>, notice: &Notice) {
        match notice {
            Notice::Registered { actor, identity, key } => self.registered(cx, *actor, *identity, key),
            Notice::Unhosted { actor, moved_to } => self.unhosted(cx, *actor, moved_to.as_deref()),
            Notice::KeyedContested { .. } => {}
        }
    }

    fn handle_touched(&mut self, cx: &mut Cx<'_>, actor: LocalActorId) {
        if let Some(&rid) = self.by_actor.get(&actor) {
            self.s.handle_handled(cx.now(), rid);
            self.flush(cx);
        }
    }

    fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Duration) {
        self.s.handle_timeout(now);
        let expired: Vec<u64> = self.asked.iter().filter(|(_, a)| a.deadline <= now).map(|(r, _)| *r).collect();
        for req in expired {
            if let Some(a) = self.asked.remove(&req) {
                let _ = a.reply.send(ClaimAnswer::Retry);
            }
        }
        self.flush(cx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let asked = self.asked.values().map(|a| a.deadline).min();
        [self.s.poll_timeout(), asked].into_iter().flatten().min()
    }

    fn metrics(&self, out: &mut crate::node::service::Metrics) {
        let st = self.stats();
        out.gauge("recovery_hosted", "Actors hosted here that keep replicas on other nodes", st.hosted as f64);
        out.gauge(
            "recovery_unconfirmed",
            "Hosted actors whose latest state no holder confirmed yet",
            st.unconfirmed as f64,
        );
        out.gauge("recovery_replicas_held", "Replicas held here for actors on other nodes", st.held as f64);
        out.gauge("recovery_recovered_total", "Actors re-created here after their node was lost", st.recovered as f64);
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
