//! The migration service: drives the pure handshake ([`Migrations`]) on both sides. As the
//! source it holds the actor, takes its state (in a task of the node, in mailbox order),
//! swaps its directory records through the registry service, and moves it away: its held
//! messages are forwarded to the new node before the commit, on the same link. As the
//! target it builds offered actors held, lets them take messages on commit (and writes
//! their directory records from then on), drops them on abort, and asks the directory when
//! the source went quiet. A node asked to move an actor it runs (a `Request` from another
//! node) does the same and answers where it went.
//!
//! It also passivates idle keyed activations ([`Activations`]): a sweep compares each
//! activation's message count with the last sweep's; one idle for its type's
//! `passivate_after` is held, drained, retired from the directory and stopped, unless a
//! message reached it meanwhile (then it registers again and carries on, or, if another
//! activation took the key, moves what it has there). A message that reaches a passivated
//! activation waits; the key's next activation is found (or made here) and gets it.

pub mod api;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::ids::{ActorId, NodeId};
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Install, Service, ServiceFrameError};
use crate::proto::activation::{self, ActivationKey, Activations, KeyedPolicy, RebalanceConfig};
use crate::proto::membership::MembershipEvent;
use crate::proto::migration::{MigrationError, MigrationFrame, MigrationId, Migrations, Output};
use crate::proto::registry::record::{ActorLocation, Answer, DirKey, Record, Refusal};
use crate::proto::wire::channel::Channel;
use crate::services::registry::RegistryService;
use crate::transport::link::LinkEnd;

/// The version of migration's frames.
const VERSION: u16 = 2;

/// At most this many keyed activations are being passivated at once on a node.
const PASSIVATION_BATCH: usize = 256;

/// Where a migration's outcome goes: where the actor runs now, or why it stayed.
pub(crate) enum Done {
    /// An API call on this node.
    Api(oneshot::Sender<Result<ActorLocation, MigrationError>>),
    /// A `Request` from another node.
    Peer {
        /// The asking node.
        node: NodeId,
        /// Its request number.
        req: u64,
    },
    /// A rebalance of this keyed activation (the key, the activation here).
    Rebalance(ActivationKey, crate::ids::LocalActorId),
}

/// A `Request` this node sent to the node an actor runs on.
struct Asked {
    reply: oneshot::Sender<Result<ActorLocation, MigrationError>>,
    host: String,
    deadline: Duration,
}

/// A call back into the migration service, for work done in a task of the node.
fn back(f: impl FnOnce(&mut MigrationService, &mut Cx<'_>) + Send + 'static) -> Option<crate::node::service::Call> {
    Some(crate::node::service::call_on(f))
}

/// The migration service of one node.
pub(crate) struct MigrationService {
    m: Migrations,
    me: String,
    node_id: NodeId,
    grace: Duration,
    linked: BTreeMap<String, NodeId>,
    next_id: MigrationId,
    timeout: Duration,
    /// Where the outcome of each migration this node is the source of goes.
    calls: BTreeMap<MigrationId, Done>,
    /// The actor each of those migrations moves.
    actors: BTreeMap<MigrationId, crate::ids::LocalActorId>,
    /// The records a swap moved, for the commit.
    swapped: BTreeMap<MigrationId, Vec<(DirKey, Record)>>,
    /// Requests sent to the nodes actors run on.
    asked: BTreeMap<u64, Asked>,
    next_req: u64,
    /// Keyed activations here, for passivation.
    acts: Activations,
    /// Each activation's message count at the last sweep.
    seen: BTreeMap<crate::ids::LocalActorId, u64>,
    /// Each activation's identity in the directory.
    identities: BTreeMap<crate::ids::LocalActorId, ActorId>,
    /// Keyed types placed by consistent hashing (rebalanced after membership changes).
    hashed: std::collections::BTreeSet<crate::ids::ActorTypeId>,
    /// Members up, for rebalancing.
    up: std::collections::BTreeSet<String>,
    /// How often idle activations are looked for (`None`: no keyed type passivates).
    sweep_every: Option<Duration>,
    sweep_at: Option<Duration>,
    /// Activations passivated here so far.
    passivations: u64,
    /// When the keyed activations here are next checked against the directory (once
    /// membership has been still for a while after a change, and periodically).
    verify_at: Option<Duration>,
    /// Activations still to check, a batch per tick.
    verify_queue: Vec<(ActivationKey, crate::ids::LocalActorId)>,
    rebalance_interval: Duration,
    /// The periodic anti-entropy pass.
    verify_every: Duration,
    /// Activations being checked against the directory now.
    reclaiming: std::collections::BTreeSet<crate::ids::LocalActorId>,
    /// Activations yielding to another activation of their key.
    yielding: std::collections::BTreeSet<crate::ids::LocalActorId>,
    /// Keyed-type actors spawned here that were not a key's activation at the last check.
    unclaimed: std::collections::BTreeSet<crate::ids::LocalActorId>,
    /// When that check runs next (`None`: no keyed type).
    unclaimed_at: Option<Duration>,
    /// The period of that check: longer than an activation takes to register.
    unclaimed_every: Duration,
}

/// Keyed activations checked against the directory per tick after membership changed.
const VERIFY_BATCH: usize = 128;
/// The pause between two batches of that check.
const VERIFY_TICK: Duration = Duration::from_millis(50);

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
        timeout: c.timeout,
        calls: BTreeMap::new(),
        actors: BTreeMap::new(),
        swapped: BTreeMap::new(),
        asked: BTreeMap::new(),
        next_req: 1,
        acts: {
            let rebalance =
                RebalanceConfig { enabled: c.rebalance, batch: c.rebalance_batch, interval: c.rebalance_interval };
            let mut acts = Activations::new(i.config.node_name(), rebalance);
            acts.set_passivation_batch(PASSIVATION_BATCH, Duration::from_millis(20));
            acts
        },
        seen: BTreeMap::new(),
        identities: BTreeMap::new(),
        hashed: Default::default(),
        up: Default::default(),
        sweep_every: None,
        sweep_at: None,
        passivations: 0,
        verify_at: None,
        verify_queue: Vec::new(),
        rebalance_interval: c.rebalance_interval,
        verify_every: c.verify_interval,
        reclaiming: std::collections::BTreeSet::new(),
        yielding: std::collections::BTreeSet::new(),
        unclaimed: Default::default(),
        unclaimed_at: None,
        unclaimed_every: i.config.request_timeout() * 2,
    };
    (service, Arc::new(MigrationShared))
}

impl MigrationService {
    /// Starts moving local actor `from.actor` (identity `identity`) to node `to`; the
    /// outcome goes to `done`.
    pub(crate) fn start(&mut self, cx: &mut Cx<'_>, identity: ActorId, from: ActorLocation, to: &str, done: Done) {
        let actor = from.actor;
        let Some(actor_type) = cx.node().actor_type(actor) else {
            return self.answer(cx, done, Err(MigrationError::NotHere));
        };
        if to == self.me {
            return self.answer(cx, done, Ok(from));
        }
        if !self.linked.contains_key(to) {
            return self.answer(cx, done, Err(MigrationError::TargetUnavailable(to.to_owned())));
        }
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self.m.start(cx.now(), id, actor, identity, actor_type, from, to) {
            return self.answer(cx, done, Err(e));
        }
        self.calls.insert(id, done);
        self.actors.insert(id, actor);
        self.flush(cx);
    }

    /// Asks node `host`, where actor `actor` (identity `identity`) runs, to move it to `to`.
    pub(crate) fn request(
        &mut self,
        cx: &mut Cx<'_>,
        host: &str,
        actor: crate::ids::LocalActorId,
        identity: ActorId,
        to: &str,
        reply: oneshot::Sender<Result<ActorLocation, MigrationError>>,
    ) {
        let req = self.next_req;
        self.next_req += 1;
        let frame = MigrationFrame::Request { req, actor, identity, to: to.to_owned() };
        match self.linked.get(host) {
            Some(id) if cx.send(*id, &frame.encode()) => {
                // The host's own migration may take its timeout, and the swap after it.
                let deadline = cx.now() + self.timeout * 3;
                self.asked.insert(req, Asked { reply, host: host.to_owned(), deadline });
            }
            _ => {
                let _ = reply.send(Err(MigrationError::Unanswered(host.to_owned())));
            }
        }
    }

    fn answer(&mut self, cx: &mut Cx<'_>, done: Done, result: Result<ActorLocation, MigrationError>) {
        match done {
            Done::Api(reply) => {
                let _ = reply.send(result);
            }
            Done::Peer { node, req } => {
                cx.send(node, &MigrationFrame::Reply { req, result }.encode());
            }
            Done::Rebalance(key, actor) => match result {
                Ok(_) => self.acts.handle_gone(&key),
                Err(MigrationError::Superseded) => {
                    // The directory names another activation of the key: this one is a
                    // duplicate (two sides of a partition made it) and yields to that one.
                    self.acts.handle_gone(&key);
                    self.reclaim(cx, key, actor);
                }
                Err(e) => {
                    tracing::info!(node = %self.me, key = %key.key, error = %e, "a rebalance move failed; the activation stays");
                    self.acts.handle_move_failed(cx.now(), &key);
                }
            },
        }
    }

    fn finish(&mut self, cx: &mut Cx<'_>, id: MigrationId, result: Result<ActorLocation, MigrationError>) {
        self.actors.remove(&id);
        if let Some(done) = self.calls.remove(&id) {
            self.answer(cx, done, result);
        }
    }

    /// The source's state, taken in mailbox order after the hold (so the actor is drained).
    fn snapshot(
        &mut self,
        cx: &mut Cx<'_>,
        id: MigrationId,
        state: Result<(crate::format::Format, Vec<u8>), String>,
        keys: Vec<DirKey>,
    ) {
        let now = cx.now();
        self.m.handle_drained(now, id);
        self.m.handle_snapshot(now, id, state, keys);
        self.flush(cx);
    }

    /// The directory's answer to the swap: the moved records, or a refusal.
    fn swapped(&mut self, cx: &mut Cx<'_>, id: MigrationId, result: Result<Vec<(DirKey, Record)>, Refusal>) {
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

    /// Takes the actor's state in a task of the node, with the directory keys it is
    /// registered under; they come back as a call.
    fn take_state(&mut self, cx: &mut Cx<'_>, id: MigrationId, actor: crate::ids::LocalActorId) {
        let taking = cx.node().take_state(actor);
        let (tx, rx) = oneshot::channel();
        // Its key too, should the directory have dropped its record of it meanwhile (a
        // conflict it lost): the arrival settles that with the directory.
        let keyed = cx.node().key_of(actor).map(|k| DirKey::Keyed { actor_type: k.actor_type, key: k.key });
        self.registry(cx, move |r, _| {
            let mut keys = r.keys_of(actor);
            if let Some(key) = keyed.filter(|k| !keys.contains(k)) {
                keys.push(key);
            }
            let _ = tx.send(keys);
        });
        cx.node().spawn_call(
            Channel::MIGRATION,
            Box::pin(async move {
                let state = match taking {
                    Some(taking) => taking.await,
                    None => Err("the actor stopped".to_owned()),
                };
                let keys = rx.await.unwrap_or_default();
                back(move |m, cx| m.snapshot(cx, id, state, keys))
            }),
        );
    }

    /// Swaps the actor's directory records to `to` through the registry service; the answer
    /// comes back as a call.
    fn swap(&mut self, cx: &mut Cx<'_>, id: MigrationId, to: ActorLocation) {
        let Some(&actor) = self.actors.get(&id) else { return };
        let (tx, rx) = oneshot::channel();
        self.registry(cx, move |r, cx| r.move_out(cx, actor, to, tx));
        cx.node().spawn_call(
            Channel::MIGRATION,
            Box::pin(async move {
                let swapped = rx.await.unwrap_or(Err(Refusal::Timeout));
                back(move |m, cx| m.swapped(cx, id, swapped))
            }),
        );
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
                Output::Hold { id, actor } => {
                    cx.node().hold(actor);
                    // In mailbox order: everything delivered before the hold is in the state.
                    self.take_state(cx, id, actor);
                }
                Output::Snapshot { .. } => {}
                Output::Swap { id, to, .. } => self.swap(cx, id, to),
                Output::Moved { id, actor, to } => {
                    let records = self.swapped.remove(&id).unwrap_or_default();
                    let commit = MigrationFrame::Commit { id, records }.encode();
                    cx.node().move_away(actor, to.clone(), Some((to.node_id, Channel::MIGRATION, commit)), self.grace);
                    tracing::info!(node = %self.me, %actor, to = %to.node, "actor moved");
                    self.finish(cx, id, Ok(to));
                }
                Output::Release { id, actor, error } => {
                    cx.node().resume(actor);
                    tracing::info!(node = %self.me, %actor, %error, "migration failed; the actor stays");
                    self.finish(cx, id, Err(error));
                    // A keyed activation checks it is still its key's: a conflict it lost
                    // while it was moving was not settled then.
                    if let Some(key) = cx.node().key_of(actor) {
                        self.reclaim(cx, key, actor);
                    }
                }
                Output::Build { from, id, actor_type, format, state, .. } => {
                    let built = cx.node().build_held(actor_type, format, &state);
                    let built = built
                        .map(|actor| ActorLocation { node: self.me.clone(), node_id: self.node_id, actor })
                        .map_err(|e| e.detail);
                    self.m.handle_built(cx.now(), &from, id, built);
                }
                Output::Activate { actor, identity, records, keys } => {
                    cx.node().resume(actor);
                    let unrecorded = keys.into_iter().find_map(|k| match k {
                        DirKey::Keyed { actor_type, key } => {
                            let recorded =
                                records.iter().any(|(r, _)| matches!(r, DirKey::Keyed { key: k, .. } if *k == key));
                            (!recorded).then_some(ActivationKey { actor_type, key })
                        }
                        _ => None,
                    });
                    self.registry(cx, move |r, cx| r.adopt(cx, actor, identity, records));
                    // A keyed arrival whose key's record did not come with it (a conflict lost
                    // before it moved) registers its key, and yields if another activation
                    // holds it. (Not a lookup: the key's record may still be moving to its new
                    // location, and the old one has just gone.)
                    if let Some(key) = unrecorded {
                        self.register_or_yield(cx, key, actor);
                    }
                    tracing::info!(node = %self.me, %actor, "actor arrived");
                }
                Output::Discard { actor } => cx.node().discard(actor),
                Output::Verify { from, id, identity, location, keys } => {
                    self.verify(cx, from, id, identity, location, keys);
                }
            }
        }
    }

    /// Asks the directory whether it names `location` for `identity`, and for the records
    /// of `keys` that name it; the answer decides whether the arrival runs, and with which
    /// records.
    fn verify(
        &mut self,
        cx: &mut Cx<'_>,
        from: String,
        id: MigrationId,
        identity: ActorId,
        location: ActorLocation,
        mut keys: Vec<DirKey>,
    ) {
        let own = DirKey::Actor(identity);
        if !keys.contains(&own) {
            keys.insert(0, own.clone());
        }
        let mut asked = Vec::with_capacity(keys.len());
        for key in keys {
            let (tx, rx) = oneshot::channel();
            let lookup = key.clone();
            self.registry(cx, move |r, cx| r.lookup(cx, lookup, true, tx));
            asked.push((key, rx));
        }
        cx.node().spawn_call(
            Channel::MIGRATION,
            Box::pin(async move {
                let mut records = Vec::new();
                for (key, rx) in asked {
                    if let Ok(Ok(Answer::Found(Some(r)))) = rx.await {
                        if r.location == location {
                            records.push((key, r));
                        }
                    }
                }
                let named = records.iter().any(|(k, _)| *k == own).then_some(records);
                back(move |m, cx| {
                    m.m.handle_verified(cx.now(), &from, id, named);
                    m.flush(cx);
                })
            }),
        );
    }

    /// Looks for idle keyed activations and passivates them.
    fn sweep(&mut self, cx: &mut Cx<'_>, now: Duration) {
        self.sync(cx, now);
        self.acts.handle_timeout(now);
        while let Some(out) = self.acts.poll_output() {
            match out {
                activation::Output::Passivate { key, actor } => {
                    cx.node().hold(actor);
                    self.seen.remove(&actor);
                    self.after_drained(cx, actor, move |m, cx| m.drained(cx, key, actor));
                }
                activation::Output::Rebalance { key, actor, to } => {
                    let Some(&identity) = self.identities.get(&actor) else { continue };
                    let here = ActorLocation { node: self.me.clone(), node_id: self.node_id, actor };
                    tracing::debug!(node = %self.me, key = %key.key, %to, "rebalancing a keyed activation");
                    self.start(cx, identity, here, &to, Done::Rebalance(key, actor));
                }
                activation::Output::Reactivate { .. } => {}
            }
        }
    }

    /// Brings the activation table up to date with the node's keyed activations and how
    /// many messages each received.
    fn sync(&mut self, cx: &mut Cx<'_>, now: Duration) {
        let live = cx.node().keyed_activity();
        let present: std::collections::BTreeSet<crate::ids::LocalActorId> = live.iter().map(|a| a.actor).collect();
        for a in live {
            self.identities.insert(a.actor, a.identity);
            match self.seen.insert(a.actor, a.count) {
                None => {
                    let hashed = self.hashed.contains(&a.key.actor_type);
                    self.acts.handle_activated(now, a.key, a.actor, hashed);
                }
                Some(before) if before != a.count => {
                    self.acts.handle_message(now, &a.key);
                }
                Some(_) => {}
            }
        }
        self.seen.retain(|a, _| present.contains(a));
        self.identities.retain(|a, _| present.contains(a));
        self.acts.retain_running(|a| present.contains(&a));
    }

    /// Runs `then` once everything `actor` received before now has been handled.
    fn after_drained(
        &mut self,
        cx: &mut Cx<'_>,
        actor: crate::ids::LocalActorId,
        then: impl FnOnce(&mut MigrationService, &mut Cx<'_>) + Send + 'static,
    ) {
        let taking = cx.node().take_state(actor);
        cx.node().spawn_call(
            Channel::MIGRATION,
            Box::pin(async move {
                if let Some(taking) = taking {
                    let _ = taking.await;
                }
                back(move |m, cx| then(m, cx))
            }),
        );
    }

    /// An idle activation, held, has handled everything it had: retire it, unless a
    /// message reached it meanwhile.
    fn drained(&mut self, cx: &mut Cx<'_>, key: ActivationKey, actor: crate::ids::LocalActorId) {
        self.registry(cx, move |r, cx| r.retire(cx, actor));
        if cx.node().passivate(actor, key.clone()) {
            self.acts.handle_passivated(cx.now(), &key);
            self.passivations += 1;
            tracing::debug!(node = %self.me, %actor, key = %key.key, "idle activation passivated");
            return;
        }
        // Something came while it was held: it carries on, if the key is still its.
        self.acts.handle_gone(&key);
        let here = ActorLocation { node: self.me.clone(), node_id: self.node_id, actor };
        self.register_key(cx, key, here, move |m, cx, result| match result {
            Ok(()) => cx.node().resume(actor),
            Err(winner) => {
                let to = winner.map(|r| r.location);
                match to {
                    Some(to) => cx.node().move_away(actor, to, None, m.grace),
                    None => cx.node().resume(actor),
                }
            }
        });
    }

    /// Checks activation `actor` of `key` with the key's owner: named, it stays (and hosts
    /// its record here); another named, it yields to that one; none, it registers again.
    fn reclaim(&mut self, cx: &mut Cx<'_>, key: ActivationKey, actor: crate::ids::LocalActorId) {
        // One check at a time per activation (a notice, a failed move and the periodic pass
        // can ask together).
        if self.reclaiming.insert(actor) {
            self.find_key(cx, key.clone(), move |m, cx, found| m.reclaimed(cx, key, actor, found));
        }
    }

    /// Looks the activation of `key` up in the directory (not the cache); `then` gets it.
    fn find_key(
        &mut self,
        cx: &mut Cx<'_>,
        key: ActivationKey,
        then: impl FnOnce(&mut MigrationService, &mut Cx<'_>, Option<Record>) + Send + 'static,
    ) {
        let dir_key = DirKey::Keyed { actor_type: key.actor_type, key: key.key };
        let (tx, rx) = oneshot::channel();
        self.registry(cx, move |r, cx| r.lookup(cx, dir_key, true, tx));
        cx.node().spawn_call(
            Channel::MIGRATION,
            Box::pin(async move {
                let found = match rx.await {
                    Ok(Ok(Answer::Found(found))) => found,
                    _ => None,
                };
                back(move |m, cx| then(m, cx, found))
            }),
        );
    }

    /// Registers local activation `actor` for `key`; it yields if another activation holds
    /// the key.
    fn register_or_yield(&mut self, cx: &mut Cx<'_>, key: ActivationKey, actor: crate::ids::LocalActorId) {
        let here = ActorLocation { node: self.me.clone(), node_id: self.node_id, actor };
        self.register_key(cx, key, here, move |m, cx, result| {
            if let Err(Some(winner)) = result {
                m.yield_to(cx, actor, winner.location);
            }
        });
    }

    /// Activation `actor` yields to the key's activation at `winner`: held, drained, then
    /// moved away (what it held, and what still comes, goes to the winner).
    fn yield_to(&mut self, cx: &mut Cx<'_>, actor: crate::ids::LocalActorId, winner: ActorLocation) {
        if !self.yielding.insert(actor) {
            return;
        }
        cx.node().hold(actor);
        self.after_drained(cx, actor, move |m, cx| {
            m.yielding.remove(&actor);
            cx.node().move_away(actor, winner, None, m.grace);
        });
    }

    fn reclaimed(
        &mut self,
        cx: &mut Cx<'_>,
        key: ActivationKey,
        actor: crate::ids::LocalActorId,
        found: Option<Record>,
    ) {
        self.reclaiming.remove(&actor);
        let here = ActorLocation { node: self.me.clone(), node_id: self.node_id, actor };
        // Gone meanwhile, or held (moving, yielding, being passivated: its fate is being
        // decided already): nothing to settle.
        if cx.node().actor_type(actor).is_none()
            || cx.node().is_held(actor)
            || self.actors.values().any(|a| *a == actor)
        {
            return;
        }
        match found {
            // Named: this node hosts its record (another activation's may have replaced it).
            Some(r) if r.location == here => {
                let dir_key = DirKey::Keyed { actor_type: key.actor_type, key: key.key };
                self.registry(cx, move |reg, _| reg.ensure_hosted(dir_key, r));
            }
            Some(r) => {
                tracing::info!(node = %self.me, key = %key.key, winner = %r.location.node, "a duplicate activation yields to the key's holder");
                self.yield_to(cx, actor, r.location);
            }
            None => self.register_or_yield(cx, key, actor),
        }
    }

    /// A message reached passivated activation `actor`: find the key's next activation,
    /// or make it here, and hand it what waits.
    fn wake(&mut self, cx: &mut Cx<'_>, actor: crate::ids::LocalActorId, key: ActivationKey) {
        self.find_key(cx, key.clone(), move |m, cx, found| m.woke(cx, actor, key, found));
    }

    fn woke(&mut self, cx: &mut Cx<'_>, actor: crate::ids::LocalActorId, key: ActivationKey, found: Option<Record>) {
        if let Some(record) = found {
            cx.node().release_passivated(actor, record.location, self.grace);
            return;
        }
        let Some(next) = cx.node().activate_key(&key) else {
            tracing::error!(node = %self.me, key = %key.key, "a passivated key's type is not keyed here; its messages wait");
            return;
        };
        let here = ActorLocation { node: self.me.clone(), node_id: self.node_id, actor: next };
        let at = here.clone();
        self.register_key(cx, key, here, move |m, cx, result| {
            let to = match result {
                Ok(()) => at,
                Err(Some(winner)) => {
                    cx.node().discard(next);
                    winner.location
                }
                Err(None) => at,
            };
            cx.node().release_passivated(actor, to, m.grace);
        });
    }

    /// Registers local activation `at` for `key` (first writer wins); `then` gets `Ok`, or
    /// the record of the activation that holds the key (`None` if the directory did not answer).
    fn register_key(
        &mut self,
        cx: &mut Cx<'_>,
        key: ActivationKey,
        at: ActorLocation,
        then: impl FnOnce(&mut MigrationService, &mut Cx<'_>, Result<(), Option<Record>>) + Send + 'static,
    ) {
        let dir_key = DirKey::Keyed { actor_type: key.actor_type, key: key.key };
        let (tx, rx) = oneshot::channel();
        self.registry(cx, move |r, cx| r.register(cx, dir_key, at, tx));
        cx.node().spawn_call(
            Channel::MIGRATION,
            Box::pin(async move {
                let result = match rx.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(Refusal::Taken(winner))) => Err(Some(*winner)),
                    _ => Err(None),
                };
                back(move |m, cx| then(m, cx, result))
            }),
        );
    }

    fn registry(&mut self, cx: &mut Cx<'_>, f: impl FnOnce(&mut RegistryService, &mut Cx<'_>) + Send + 'static) {
        cx.node().post(Channel::REGISTRY, crate::node::service::call_on(f));
    }

    /// Anti-entropy, after membership changed and every `verify_interval`: every keyed
    /// activation here that takes messages checks that the directory names it for its key.
    /// One the directory does not name yields to the one it names (a duplicate whose
    /// conflict notice was lost, or that was left outside the directory by a partition), or
    /// registers again if none is named; one it names hosts its record here.
    fn verify_batch(&mut self, cx: &mut Cx<'_>, now: Duration) {
        if self.verify_queue.is_empty() {
            self.verify_queue =
                cx.node().keyed_activity().into_iter().map(|a| (a.key, a.actor)).rev().collect::<Vec<_>>();
        }
        for _ in 0..VERIFY_BATCH {
            let Some((key, actor)) = self.verify_queue.pop() else { break };
            self.reclaim(cx, key, actor);
        }
        // The next batch, or the next periodic pass.
        self.verify_at = Some(if self.verify_queue.is_empty() { now + self.verify_every } else { now + VERIFY_TICK });
    }

    /// Stops the keyed-type actors peers spawned here that stayed outside the directory for
    /// a whole period: an activation whose registration failed and whose spawner's stop did
    /// not arrive (a partition). Nothing reaches them; they would only hold memory.
    fn stop_unclaimed(&mut self, cx: &mut Cx<'_>) {
        let now: std::collections::BTreeSet<_> = cx.node().unclaimed_keyed().into_iter().collect();
        for actor in now.intersection(&self.unclaimed) {
            tracing::info!(node = %self.me, %actor, "a keyed actor spawned here never became its key's activation; stopped");
            cx.node().discard(*actor);
        }
        self.unclaimed = now;
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

    fn start(&mut self, cx: &mut Cx<'_>) {
        let mut shortest: Option<Duration> = None;
        for (actor_type, after, hashed) in cx.node().keyed_policies() {
            self.acts.set_policy(actor_type, KeyedPolicy { passivate_after: after });
            if hashed {
                self.hashed.insert(actor_type);
            }
            if let Some(after) = after {
                shortest = Some(shortest.map_or(after, |s| s.min(after)));
            }
        }
        // Half the shortest idle period: an activation goes at most 1.5 periods after its
        // last message.
        self.sweep_every = shortest.map(|s| (s / 2).max(Duration::from_millis(1)));
        self.sweep_at = self.sweep_every.map(|every| cx.now() + every);
        if !cx.node().keyed_policies().is_empty() {
            self.unclaimed_at = Some(cx.now() + self.unclaimed_every);
            self.verify_at = Some(cx.now() + self.verify_every);
        }
    }

    fn handle_notice(&mut self, cx: &mut Cx<'_>, notice: &crate::node::service::Notice) {
        use crate::node::service::Notice;
        match notice {
            // Each checks with the directory: the one it names stays, the others yield to it.
            Notice::KeyedContested { key, actors } => {
                for actor in actors {
                    self.reclaim(cx, key.clone(), *actor);
                }
            }
            Notice::Registered { .. } | Notice::Unhosted { .. } => {}
        }
    }

    fn handle_wake(&mut self, cx: &mut Cx<'_>, actor: crate::ids::LocalActorId, key: &ActivationKey) {
        self.wake(cx, actor, key.clone());
    }

    fn metrics(&self, out: &mut crate::node::service::Metrics) {
        let (active, _) = self.acts.counts();
        out.gauge("keyed_activations", "Keyed activations on this node", active as f64);
        out.gauge("keyed_passivations_total", "Keyed activations passivated on this node", self.passivations as f64);
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
        match MigrationFrame::decode(body).map_err(ServiceFrameError)? {
            MigrationFrame::Request { req, actor, identity, to } => {
                let here = ActorLocation { node: self.me.clone(), node_id: self.node_id, actor };
                self.start(cx, identity, here, &to, Done::Peer { node: from.id, req });
            }
            MigrationFrame::Reply { req, result } => match self.asked.get(&req) {
                Some(asked) if asked.host == from.name => {
                    if let Some(asked) = self.asked.remove(&req) {
                        let _ = asked.reply.send(result);
                    }
                }
                _ => {
                    return Err(ServiceFrameError(format!(
                        "`{}` answered a migration request it was not asked",
                        from.name
                    )))
                }
            },
            frame => {
                self.m.handle_frame(cx.now(), &from.name, frame);
                self.flush(cx);
            }
        }
        Ok(())
    }

    fn handle_membership(&mut self, cx: &mut Cx<'_>, event: &MembershipEvent) {
        // With rendezvous hashing a member that goes takes only its own keys: the keys here
        // only ever move to a member that (re)joins. Any change postpones the rebalance.
        let changed = match event {
            MembershipEvent::MemberUp(m) => self.up.insert(m.name.clone()),
            MembershipEvent::MemberDown(m) | MembershipEvent::MemberLeft(m) => {
                self.lost(cx, &m.name);
                self.up.remove(&m.name)
            }
            MembershipEvent::MemberRemoved(m) => self.up.remove(&m.name),
            MembershipEvent::MemberSuspect(_) | MembershipEvent::ResourcesChanged(_) => false,
        };
        if changed {
            // Once membership has been still for a while (after any rebalance batch):
            // both sides of a healed partition may have activated keys, or left instances
            // behind.
            self.verify_queue.clear();
            self.verify_at = Some(cx.now() + self.rebalance_interval * 2);
        }
        if changed && !self.hashed.is_empty() {
            // Keys that now hash to another node move there, a batch at a time, once
            // membership has been still for an interval.
            let now = cx.now();
            self.sync(cx, now);
            self.acts.handle_view(now, self.up.clone());
        }
    }

    fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Duration) {
        if self.sweep_at.is_some_and(|at| at <= now) {
            self.sweep(cx, now);
            self.sweep_at = self.sweep_every.map(|every| now + every);
        } else if self.acts.poll_timeout().is_some_and(|at| at <= now) {
            // The rest of a burst of idle keys, or the next rebalance batch.
            self.sweep(cx, now);
        }
        if self.verify_at.is_some_and(|at| at <= now) {
            self.verify_batch(cx, now);
        }
        if self.unclaimed_at.is_some_and(|at| at <= now) {
            self.stop_unclaimed(cx);
            self.unclaimed_at = Some(now + self.unclaimed_every);
        }
        self.m.handle_timeout(now);
        let expired: Vec<u64> = self.asked.iter().filter(|(_, a)| a.deadline <= now).map(|(r, _)| *r).collect();
        for req in expired {
            if let Some(asked) = self.asked.remove(&req) {
                let _ = asked.reply.send(Err(MigrationError::Unanswered(asked.host)));
            }
        }
        self.flush(cx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let asked = self.asked.values().map(|a| a.deadline).min();
        [self.m.poll_timeout(), asked, self.sweep_at, self.acts.poll_timeout(), self.verify_at, self.unclaimed_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
