//! The registry service: drives the pure [`Directory`] from membership events, frames and
//! timers; sends what it asks to send, answers API calls, tells watchers, and follows the
//! local actors that hold records so their records go when they stop.
//!
//! Registering an actor that runs on another node asks that node (its host is the single
//! writer of its records) with a `HostRegister` frame.

pub mod api;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::membership::Architecture;
use crate::ids::{ActorId, ActorTypeId, LocalActorId, NodeId};
use crate::node::peers::PeerInfo;
use crate::node::service::{Cx, Install, Metrics, Notice, Service, ServiceFrameError};
use crate::proto::membership::MembershipEvent;
use crate::proto::registry::conflict::VersionVector;
use crate::proto::registry::directory::{Directory, DirectoryConfig, KeyEvent, Output, Token};
use crate::proto::registry::record::{ActorLocation, Answer, DirKey, Record, Refusal, RegistryFrame, VERSION};
use crate::proto::wire::channel::Channel;
use crate::transport::link::LinkEnd;

pub use api::{NameEvent, NameWatch, Registry, RegistryStats};

/// Where an API call's answer goes.
pub(crate) type Answered = oneshot::Sender<Result<Answer, Refusal>>;

/// Where a migration's directory swap is answered: the moved records, or why not.
pub(crate) type MoveAnswered = oneshot::Sender<Result<Vec<(DirKey, Record)>, Refusal>>;

/// A migration's swap in progress: whom to answer, and what to take back if it fails.
struct MoveOut {
    reply: MoveAnswered,
    actor: LocalActorId,
    identity: ActorId,
    records: Vec<(DirKey, Record)>,
}

/// A `HostRegister` this node sent, waiting for the host's answer.
struct HostCall {
    reply: Answered,
    deadline: Duration,
}

/// The registry service of one node.
pub(crate) struct RegistryService {
    dir: Directory,
    me: String,
    node_id: NodeId,
    wall_origin_ms: u64,
    request_timeout: Duration,
    /// Writes this node made (its entry in the records' version vectors).
    writes: u64,
    /// Members up (or suspected), as membership reports them.
    live: BTreeMap<String, NodeId>,
    /// Peers linked now, by name.
    linked: BTreeMap<String, NodeId>,
    next_token: Token,
    waiting: BTreeMap<Token, Answered>,
    /// Registrations made for another node: answer it there.
    relays: BTreeMap<Token, (NodeId, u64)>,
    host_calls: BTreeMap<u64, HostCall>,
    /// Identities of local actors with records.
    named: BTreeMap<LocalActorId, ActorId>,
    /// Migrations' directory swaps waiting for the owners.
    moves: BTreeMap<Token, MoveOut>,
    watchers: BTreeMap<DirKey, Vec<mpsc::UnboundedSender<NameEvent>>>,
}

/// What the registry shares with its API: nothing, the API calls the service.
#[derive(Debug, Default)]
pub(crate) struct RegistryShared;

/// Builds the service.
pub(crate) fn install(i: &Install<'_>) -> (RegistryService, Arc<RegistryShared>) {
    let c = i.config.registry();
    let config = DirectoryConfig {
        retry: c.retry,
        mismatch_backoff: c.view_mismatch_backoff,
        request_timeout: i.config.request_timeout(),
        rebuild_timeout: c.rebuild_timeout,
        drift: c.clock_drift,
        sync_batch: c.sync_batch,
    };
    let m = i.config.membership();
    let masters = (m.architecture == Architecture::Centralized).then(|| m.masters.iter().cloned().collect());
    let me = i.config.node_name().to_owned();
    let service = RegistryService {
        dir: Directory::new(&me, i.node_id, config, masters),
        me,
        node_id: i.node_id,
        wall_origin_ms: i.wall_origin_ms,
        request_timeout: i.config.request_timeout(),
        writes: 0,
        live: BTreeMap::new(),
        linked: BTreeMap::new(),
        next_token: 1,
        waiting: BTreeMap::new(),
        relays: BTreeMap::new(),
        host_calls: BTreeMap::new(),
        named: BTreeMap::new(),
        moves: BTreeMap::new(),
        watchers: BTreeMap::new(),
    };
    (service, Arc::new(RegistryShared))
}

impl RegistryService {
    fn token(&mut self) -> Token {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// The record of local actor `actor` (of type `actor_type`), written now.
    fn record(&mut self, now: Duration, actor: LocalActorId, actor_type: ActorTypeId) -> Record {
        self.writes += 1;
        let mut version = VersionVector::new();
        version.set(&self.me, self.writes);
        let identity = *self.named.entry(actor).or_insert_with(|| ActorId::first(self.node_id, actor));
        Record {
            actor: identity,
            actor_type,
            location: ActorLocation { node: self.me.clone(), node_id: self.node_id, actor },
            at_ms: self.wall_origin_ms.saturating_add(u64::try_from(now.as_millis()).unwrap_or(u64::MAX)),
            version,
        }
    }

    /// Registers local actor `actor` under `key`; the answer goes to `token`.
    fn register_here(&mut self, cx: &mut Cx<'_>, token: Token, key: DirKey, actor: LocalActorId) {
        let Some(actor_type) = cx.node().actor_type(actor) else {
            self.finish(cx, token, Err(Refusal::NotHere));
            return;
        };
        let now = cx.now();
        let record = self.record(now, actor, actor_type);
        let identity = record.actor;
        if let DirKey::Keyed { actor_type, key } = &key {
            // A keyed activation: the node follows its idleness.
            let key = crate::proto::activation::ActivationKey { actor_type: *actor_type, key: key.clone() };
            cx.node().mark_keyed(actor, key, identity);
        }
        self.dir.register(now, token, key.clone(), record.clone());
        // The identity record lets handles whose location went stale find the actor again.
        let quiet = self.token();
        self.dir.register(now, quiet, DirKey::Actor(identity), record);
        if cx.node().announce_stop(actor) {
            cx.node().notify(Notice::Registered { actor, identity, key });
        } else {
            // It stopped meanwhile: its records go at once.
            self.named.remove(&actor);
            self.dir.actor_stopped(now, identity);
        }
        self.flush(cx);
    }

    /// Local actor `actor`, re-created after its node was lost, takes its identity and its
    /// names back (first writer wins for each name; a name taken meanwhile stays taken).
    pub(crate) fn restore(&mut self, cx: &mut Cx<'_>, actor: LocalActorId, identity: ActorId, names: Vec<String>) {
        self.named.insert(actor, identity);
        let (tx, _) = oneshot::channel();
        self.register(
            cx,
            DirKey::Actor(identity),
            ActorLocation { node: self.me.clone(), node_id: self.node_id, actor },
            tx,
        );
        for name in names {
            let (tx, rx) = oneshot::channel();
            let here = ActorLocation { node: self.me.clone(), node_id: self.node_id, actor };
            self.register(cx, DirKey::Name(name.clone()), here, tx);
            let node = self.me.clone();
            cx.node().spawn_call(
                Channel::REGISTRY,
                Box::pin(async move {
                    if let Ok(Err(refusal)) = rx.await {
                        tracing::warn!(%node, %name, ?refusal, "a re-created actor could not take its name back");
                    }
                    None
                }),
            );
        }
    }

    /// Registers the actor at `location` under `key`: here, or by asking its host.
    pub(crate) fn register(&mut self, cx: &mut Cx<'_>, key: DirKey, location: ActorLocation, reply: Answered) {
        let token = self.token();
        if location.node == self.me && location.node_id == self.node_id {
            self.waiting.insert(token, reply);
            self.register_here(cx, token, key, location.actor);
            return;
        }
        // Elsewhere: only a linked current incarnation of the host can write the record.
        let host = self.linked.get(&location.node).copied().filter(|id| *id == location.node_id);
        let frame = RegistryFrame::HostRegister { req: token, key, actor: location.actor };
        match host {
            Some(id) if cx.send(id, &frame.encode()) => {
                self.host_calls.insert(token, HostCall { reply, deadline: cx.now() + self.request_timeout });
            }
            _ => {
                let _ = reply.send(Err(Refusal::NotHere));
            }
        }
    }

    /// A migration: local actor `actor` moved to `to`. Its records (its identity record at
    /// least) are swapped to the new location where they still name this one; the answer
    /// carries them for the new host to adopt. If the swap fails they stay this node's.
    pub(crate) fn move_out(&mut self, cx: &mut Cx<'_>, actor: LocalActorId, to: ActorLocation, reply: MoveAnswered) {
        let Some(actor_type) = cx.node().actor_type(actor) else {
            let _ = reply.send(Err(Refusal::NotHere));
            return;
        };
        let now = cx.now();
        let mut record = self.record(now, actor, actor_type);
        let from = record.location.clone();
        record.location = to;
        let identity = record.actor;
        let token = self.token();
        let records = self.dir.move_out(now, token, identity, from, record);
        // No longer this node's to remove when the old actor stops.
        self.named.remove(&actor);
        self.moves.insert(token, MoveOut { reply, actor, identity, records });
        self.flush(cx);
    }

    /// Makes sure this node hosts `record`, the directory's record for `key` naming a local
    /// activation (whose hosted record another activation's may have replaced here): the
    /// key's owner holds it already, so this node takes it over as it is.
    pub(crate) fn ensure_hosted(&mut self, key: DirKey, record: Record) {
        if self.dir.hosted_record(&key).is_some_and(|r| r.actor == record.actor && r.location == record.location) {
            return;
        }
        tracing::debug!(node = %self.me, %key, "hosting a key's record again");
        self.dir.adopt(key, record);
    }

    /// The directory keys local actor `actor` is registered under here (its identity, its
    /// names, its key).
    pub(crate) fn keys_of(&self, actor: LocalActorId) -> Vec<DirKey> {
        let Some(identity) = self.named.get(&actor) else { return Vec::new() };
        self.dir.hosted().filter(|(_, r)| r.actor == *identity).map(|(k, _)| k.clone()).collect()
    }

    /// Local actor `actor` is being passivated: its records go now (it may register again).
    pub(crate) fn retire(&mut self, cx: &mut Cx<'_>, actor: LocalActorId) {
        if let Some(identity) = self.named.remove(&actor) {
            cx.node().notify(Notice::Unhosted { actor, moved_to: None });
            self.dir.actor_stopped(cx.now(), identity);
            self.flush(cx);
        }
    }

    /// This node writes `records` from now on: local actor `actor` (identity `identity`)
    /// arrived by a migration, or stayed because one failed.
    pub(crate) fn adopt(
        &mut self,
        cx: &mut Cx<'_>,
        actor: LocalActorId,
        identity: ActorId,
        records: Vec<(DirKey, Record)>,
    ) {
        self.named.insert(actor, identity);
        for (key, record) in records {
            if let DirKey::Keyed { actor_type, key } = &key {
                let key = crate::proto::activation::ActivationKey { actor_type: *actor_type, key: key.clone() };
                cx.node().mark_keyed(actor, key, identity);
            }
            cx.node().notify(Notice::Registered { actor, identity, key: key.clone() });
            let replaced = self.dir.adopt(key.clone(), record);
            if let (Some(old), DirKey::Keyed { actor_type, key: k }) = (replaced, &key) {
                if old.location.node_id == self.node_id && old.location.actor != actor {
                    // Another activation of the key here held its record: the directory
                    // decides which of the two stays.
                    tracing::info!(node = %self.me, %key, "an arriving activation meets another one of its key here");
                    let key = crate::proto::activation::ActivationKey { actor_type: *actor_type, key: k.clone() };
                    cx.node().notify(Notice::KeyedContested { key, actors: vec![old.location.actor, actor] });
                }
            }
        }
        if !cx.node().announce_stop(actor) {
            self.named.remove(&actor);
            self.dir.actor_stopped(cx.now(), identity);
            self.flush(cx);
        }
    }

    /// Looks `key` up (through the cache unless `uncached`).
    pub(crate) fn lookup(&mut self, cx: &mut Cx<'_>, key: DirKey, uncached: bool, reply: Answered) {
        let token = self.token();
        self.waiting.insert(token, reply);
        if uncached {
            self.dir.lookup_uncached(cx.now(), token, key);
        } else {
            self.dir.lookup(cx.now(), token, key);
        }
        self.flush(cx);
    }

    /// Forgets the cached record of `key` (it named a place the actor is not).
    pub(crate) fn invalidate(&mut self, key: &DirKey) {
        self.dir.invalidate(key);
    }

    /// Removes this node's record for `name`.
    pub(crate) fn unregister(&mut self, cx: &mut Cx<'_>, name: String, reply: Answered) {
        let token = self.token();
        self.waiting.insert(token, reply);
        self.dir.unregister(cx.now(), token, DirKey::Name(name));
        self.flush(cx);
    }

    /// Reports the changes of `key` on `events`.
    pub(crate) fn watch(&mut self, cx: &mut Cx<'_>, key: DirKey, events: mpsc::UnboundedSender<NameEvent>) {
        self.watchers.entry(key.clone()).or_default().push(events);
        self.dir.watch(cx.now(), key);
        self.flush(cx);
    }

    /// Figures about this node's part of the directory.
    pub(crate) fn stats(&self) -> RegistryStats {
        RegistryStats {
            view: self.dir.view(),
            owners: self.dir.owners().to_vec(),
            hosted: self.dir.hosted().filter(|(k, _)| matches!(k, DirKey::Name(_))).count(),
            owned: self.dir.owned().filter(|(k, _)| matches!(k, DirKey::Name(_))).count(),
            cached: self.dir.cache_len(),
        }
    }

    /// The node that owns `key` in this node's view.
    pub(crate) fn owner_of(&self, key: &DirKey) -> Option<String> {
        self.dir.owner_of(key).map(str::to_owned)
    }

    fn finish(&mut self, cx: &mut Cx<'_>, token: Token, result: Result<Answer, Refusal>) {
        if let Some(m) = self.moves.remove(&token) {
            match result {
                Ok(_) => {
                    let moved_to = m.records.first().map(|(_, r)| r.location.node.clone());
                    cx.node().notify(Notice::Unhosted { actor: m.actor, moved_to });
                    let _ = m.reply.send(Ok(m.records));
                }
                Err(refusal) => {
                    // The actor stays: its records are this node's again, at its old location.
                    let back = m
                        .records
                        .into_iter()
                        .map(|(key, mut record)| {
                            record.location =
                                ActorLocation { node: self.me.clone(), node_id: self.node_id, actor: m.actor };
                            (key, record)
                        })
                        .collect();
                    self.adopt(cx, m.actor, m.identity, back);
                    let _ = m.reply.send(Err(refusal));
                }
            }
        } else if let Some((peer, req)) = self.relays.remove(&token) {
            let result = result.map(|_| ());
            cx.send(peer, &RegistryFrame::HostReply { req, result }.encode());
        } else if let Some(reply) = self.waiting.remove(&token) {
            let _ = reply.send(result);
        }
    }

    /// Carries out what the directory asked for.
    fn flush(&mut self, cx: &mut Cx<'_>) {
        while let Some(out) = self.dir.poll_output() {
            match out {
                Output::Send { to, frame } => {
                    let id = self.linked.get(&to).or_else(|| self.live.get(&to)).copied();
                    // Unsent requests go again on their retry timer; syncs are asked for again.
                    if let Some(id) = id {
                        cx.send(id, &frame.encode());
                    }
                }
                Output::Done { token, result } => self.finish(cx, token, result),
                Output::Event { key, event } => {
                    if let KeyEvent::Lost { winner, loser } = &event {
                        tracing::info!(
                            node = %self.me, %key, winner = %winner.location.node,
                            "this node's registration lost a conflict after a partition healed"
                        );
                        if let (DirKey::Keyed { actor_type, key: k }, true) =
                            (&key, loser.location.node_id == self.node_id)
                        {
                            // Two activations of one key. The notice may be late (the winner
                            // moved or lost in turn since): the key's owner says which stays.
                            let key =
                                crate::proto::activation::ActivationKey { actor_type: *actor_type, key: k.clone() };
                            cx.node().notify(Notice::KeyedContested { key, actors: vec![loser.location.actor] });
                        }
                    }
                    let event = NameEvent::from(event);
                    if let Some(list) = self.watchers.get_mut(&key) {
                        list.retain(|w| w.send(event.clone()).is_ok());
                        if list.is_empty() {
                            self.watchers.remove(&key);
                            self.dir.unwatch(&key);
                        }
                    }
                }
            }
        }
    }
}

impl Service for RegistryService {
    fn channel(&self) -> Channel {
        Channel::REGISTRY
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
        }
    }

    fn handle_frame(&mut self, cx: &mut Cx<'_>, from: &PeerInfo, body: &[u8]) -> Result<(), ServiceFrameError> {
        let frame = RegistryFrame::decode(body).map_err(|e| ServiceFrameError(e.to_string()))?;
        match frame {
            RegistryFrame::HostRegister { req, key, actor } => {
                let token = self.token();
                self.relays.insert(token, (from.id, req));
                if cx.node().actor_type(actor).is_none() {
                    tracing::warn!(node = %self.me, peer = %from.name, %actor, "asked to register an actor that does not run here");
                }
                if matches!(key, DirKey::Actor(_)) {
                    // Identity records are written by the host itself, with every registration.
                    return Err(ServiceFrameError(format!("`{}` asked to register an identity record", from.name)));
                }
                self.register_here(cx, token, key, actor);
            }
            RegistryFrame::HostReply { req, result } => match self.host_calls.remove(&req) {
                Some(call) => {
                    let _ = call.reply.send(result.map(|()| Answer::Done));
                }
                None => tracing::debug!(peer = %from.name, req, "registry answer to no request; ignored"),
            },
            frame => {
                self.dir.handle_frame(cx.now(), &from.name, frame);
                self.flush(cx);
            }
        }
        Ok(())
    }

    fn handle_membership(&mut self, cx: &mut Cx<'_>, event: &MembershipEvent) {
        match event {
            MembershipEvent::MemberUp(m) => {
                self.live.insert(m.name.clone(), m.id);
            }
            MembershipEvent::MemberDown(m) | MembershipEvent::MemberLeft(m) | MembershipEvent::MemberRemoved(m) => {
                if self.live.get(&m.name) == Some(&m.id) {
                    self.live.remove(&m.name);
                }
            }
            MembershipEvent::MemberSuspect(_) | MembershipEvent::ResourcesChanged(_) => return,
        }
        let mut live = self.live.clone();
        live.insert(self.me.clone(), self.node_id);
        self.dir.handle_view(cx.now(), live);
        self.flush(cx);
    }

    fn handle_actor_stopped(&mut self, cx: &mut Cx<'_>, actor: LocalActorId) {
        if let Some(identity) = self.named.remove(&actor) {
            cx.node().notify(Notice::Unhosted { actor, moved_to: None });
            self.dir.actor_stopped(cx.now(), identity);
            self.flush(cx);
        }
    }

    fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Duration) {
        self.dir.handle_timeout(now);
        let expired: Vec<u64> = self.host_calls.iter().filter(|(_, c)| c.deadline <= now).map(|(r, _)| *r).collect();
        for req in expired {
            if let Some(call) = self.host_calls.remove(&req) {
                let _ = call.reply.send(Err(Refusal::Timeout));
            }
        }
        self.flush(cx);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let calls = self.host_calls.values().map(|c| c.deadline).min();
        [self.dir.poll_timeout(), calls].into_iter().flatten().min()
    }

    fn metrics(&self, out: &mut Metrics) {
        let s = self.stats();
        out.gauge("registry_hosted_names", "Names registered to actors on this node", s.hosted as f64);
        out.gauge("registry_owned_names", "Names this node holds as directory owner", s.owned as f64);
        out.gauge("registry_cached_records", "Directory records in this node's lookup cache", s.cached as f64);
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
