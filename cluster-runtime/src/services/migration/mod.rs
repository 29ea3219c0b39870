//! The migration service: drives the pure handshake ([`Migrations`]) on both sides. As the
//! target it builds offered actors held, lets them take messages on commit (and writes
//! their directory records from then on), drops them on abort, and asks the directory when
//! the source went quiet. As the source it holds the actor, and, once the API swapped the
//! directory entry, moves it away: its held messages are forwarded to the new node before
//! the commit, on the same link.

pub mod api;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::ids::{ActorId, NodeId};
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Install, Service, ServiceFrameError};
use crate::proto::membership::MembershipEvent;
use crate::proto::migration::{MigrationError, MigrationFrame, MigrationId, Migrations, Output};
use crate::proto::registry::record::{ActorLocation, Answer, DirKey, Record, Refusal};
use crate::proto::wire::channel::Channel;
use crate::services::registry::RegistryService;
use crate::transport::link::LinkEnd;

/// The version of migration's frames.
const VERSION: u16 = 1;

/// What the source's API call waits for.
#[derive(Debug)]
pub(crate) enum Step {
    /// The target built the actor at `to`: swap the directory entry.
    Swap {
        /// The new location.
        to: ActorLocation,
    },
    /// The migration is over: the actor runs at this location, or stayed (why).
    Done(Result<ActorLocation, MigrationError>),
}

/// The migration service of one node.
pub(crate) struct MigrationService {
    m: Migrations,
    me: String,
    node_id: NodeId,
    grace: Duration,
    linked: BTreeMap<String, NodeId>,
    next_id: MigrationId,
    /// The API calls of migrations this node is the source of.
    calls: BTreeMap<MigrationId, mpsc::UnboundedSender<Step>>,
    /// The records a swap moved, for the commit.
    swapped: BTreeMap<MigrationId, Vec<(DirKey, Record)>>,
}

/// What migration shares with its API: nothing, the API calls the service.
#[derive(Debug, Default)]
pub(crate) struct MigrationShared;

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (MigrationService, Arc<MigrationShared>) {
    let c = i.config.migration();
    let service = MigrationService {
        m: Migrations::new(c.timeout),
        me: i.config.node_name().to_owned(),
        node_id: i.node_id,
        grace: c.grace,
        linked: BTreeMap::new(),
        next_id: 1,
        calls: BTreeMap::new(),
        swapped: BTreeMap::new(),
    };
    (service, Arc::new(MigrationShared))
}

impl MigrationService {
    /// Starts moving local actor `from.actor` (identity `identity`) to node `to`; the API
    /// follows it on `steps`.
    pub(crate) fn start(
        &mut self,
        cx: &mut Cx<'_>,
        identity: ActorId,
        from: ActorLocation,
        to: &str,
        steps: mpsc::UnboundedSender<Step>,
    ) -> Result<MigrationId, MigrationError> {
        let actor_type = cx.node().actor_type(from.actor).ok_or(MigrationError::NotHere)?;
        if !self.linked.contains_key(to) {
            return Err(MigrationError::TargetUnavailable(to.to_owned()));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.m.start(cx.now(), id, from.actor, identity, actor_type, from, to)?;
        self.calls.insert(id, steps);
        self.flush(cx);
        Ok(id)
    }

    /// The source's state, taken in mailbox order after the hold (so the actor is drained).
    pub(crate) fn snapshot(
        &mut self,
        cx: &mut Cx<'_>,
        id: MigrationId,
        state: Result<(crate::format::Format, Vec<u8>), String>,
    ) {
        let now = cx.now();
        self.m.handle_drained(now, id);
        self.m.handle_snapshot(now, id, state);
        self.flush(cx);
    }

    /// The directory's answer to the swap: the moved records, or a refusal.
    pub(crate) fn swapped(&mut self, cx: &mut Cx<'_>, id: MigrationId, result: Result<Vec<(DirKey, Record)>, Refusal>) {
        let ok = match result {
            Ok(records) => {
                self.swapped.insert(id, records);
                true
            }
            Err(refusal) => {
                tracing::info!(node = %self.me, migration = id, ?refusal, "the directory did not swap a migrating actor's entry");
                false
            }
        };
        self.m.handle_swapped(cx.now(), id, ok);
        self.flush(cx);
    }

    fn step(&mut self, id: MigrationId, step: Step) {
        let done = matches!(step, Step::Done(_));
        let sender = if done { self.calls.remove(&id) } else { self.calls.get(&id).cloned() };
        if let Some(sender) = sender {
            let _ = sender.send(step);
        }
    }

    /// Carries out what the handshake asks for.
    fn flush(&mut self, cx: &mut Cx<'_>) {
        while let Some(out) = self.m.poll_output() {
            match out {
                Output::Send { to, frame } => {
                    if let Some(id) = self.linked.get(&to) {
                        cx.send(*id, &frame.encode());
                    }
                }
                Output::Hold { actor, .. } => {
                    cx.node().hold(actor);
                }
                // The API takes the state (it awaits the actor) and reports it.
                Output::Snapshot { .. } => {}
                Output::Swap { id, to, .. } => self.step(id, Step::Swap { to }),
                Output::Moved { id, actor, to } => {
                    let records = self.swapped.remove(&id).unwrap_or_default();
                    let commit = MigrationFrame::Commit { id, records }.encode();
                    cx.node().move_away(actor, to.clone(), (to.node_id, Channel::MIGRATION, commit), self.grace);
                    tracing::info!(node = %self.me, %actor, to = %to.node, "actor moved");
                    self.step(id, Step::Done(Ok(to)));
                }
                Output::Release { id, actor, error } => {
                    cx.node().resume(actor);
                    tracing::info!(node = %self.me, %actor, %error, "migration failed; the actor stays");
                    self.step(id, Step::Done(Err(error)));
                }
                Output::Build { from, id, actor_type, format, state, .. } => {
                    let built = cx.node().build_held(actor_type, format, &state);
                    let built = built
                        .map(|actor| ActorLocation { node: self.me.clone(), node_id: self.node_id, actor })
                        .map_err(|e| e.detail);
                    self.m.handle_built(cx.now(), &from, id, built);
                }
                Output::Activate { actor, identity, records } => {
                    cx.node().resume(actor);
                    cx.node().post(
                        Channel::REGISTRY,
                        Box::new(move |service, cx| {
                            if let Some(r) = service.as_any_mut().downcast_mut::<RegistryService>() {
                                r.adopt(cx, actor, identity, records);
                            }
                        }),
                    );
                    tracing::info!(node = %self.me, %actor, "actor arrived");
                }
                Output::Discard { actor } => cx.node().discard(actor),
                Output::Verify { from, id, identity, location } => self.verify(cx, from, id, identity, location),
            }
        }
    }

    /// Asks the directory whether it names `location` for `identity`; the answer decides
    /// whether the arrival runs.
    fn verify(&mut self, cx: &mut Cx<'_>, from: String, id: MigrationId, identity: ActorId, location: ActorLocation) {
        let (tx, rx) = oneshot::channel();
        cx.node().post(
            Channel::REGISTRY,
            Box::new(move |service, cx| {
                if let Some(r) = service.as_any_mut().downcast_mut::<RegistryService>() {
                    r.lookup(cx, DirKey::Actor(identity), true, tx);
                }
            }),
        );
        cx.node().spawn_call(
            Channel::MIGRATION,
            Box::pin(async move {
                let named = matches!(rx.await, Ok(Ok(Answer::Found(Some(r)))) if r.location == location);
                Some(Box::new(move |service: &mut dyn Service, cx: &mut Cx<'_>| {
                    if let Some(m) = service.as_any_mut().downcast_mut::<MigrationService>() {
                        m.m.handle_verified(cx.now(), &from, id, named);
                        m.flush(cx);
                    }
                }) as crate::node::service::Call)
            }),
        );
    }

    fn lost(&mut self, cx: &mut Cx<'_>, node: &str) {
        self.m.handle_node_lost(cx.now(), node);
        self.flush(cx);
    }
}

impl Service for MigrationService {
    fn channel(&self) -> Channel {
        Channel::MIGRATION
    }

    fn version(&self) -> u16 {
        VERSION
    }

    fn handle_link_up(&mut self, _: &mut Cx<'_>, peer: &PeerInfo) {
        self.linked.insert(peer.name.clone(), peer.id);
    }

    fn handle_link_down(&mut self, cx: &mut Cx<'_>, peer: &PeerInfo, _: &LinkEnd) {
        if self.linked.get(&peer.name) == Some(&peer.id) {
            self.linked.remove(&peer.name);
            self.lost(cx, &peer.name);
        }
    }

    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError> {
        let frame = MigrationFrame::decode(body).map_err(ServiceFrameError)?;
        self.m.handle_frame(cx.now(), &from.name, frame);
        self.flush(cx);
        Ok(())
    }

    fn handle_membership(&mut self, cx: &mut Cx<'_>, event: &MembershipEvent) {
        if let MembershipEvent::MemberDown(m) | MembershipEvent::MemberLeft(m) = event {
            self.lost(cx, &m.name);
        }
    }

    fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Duration) {
        self.m.handle_timeout(now);
        self.flush(cx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.m.poll_timeout()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
