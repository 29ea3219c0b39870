//! The cluster directory of one node, pure: the three roles every node plays.
//!
//! - **Host**: the single writer of the records of the actors it runs ([`Directory::register`],
//!   [`Directory::actor_stopped`]). After every view change it sends each owner the records
//!   that owner now holds (a *sync*), so ownership that moved is rebuilt from the hosts, the
//!   model of Orleans 9's directory; an owner that misses a host's sync asks for it.
//! - **Owner**: holds the records of the keys the ring gives it over the directory members
//!   (every live member, or the masters in the centralized architecture). A request carries
//!   the asker's view version; an owner with another view answers `ViewMismatch` and the
//!   asker retries once the views agree. Until every live host has synced in the current
//!   view (or the rebuild timeout passed) the owner defers requests, so a lookup never misses
//!   an entry that exists. Conflicting records (both sides of a healed partition) are settled
//!   by [`conflict::resolve`]; the loser's host is told.
//! - **Client**: asks owners, keeps a lookup cache that owners keep fresh (they tell the nodes
//!   that looked a key up when it changes), and reports changes of watched keys.
//!
//! Records of members that leave the view are dropped everywhere. Inputs are `handle_*` and
//! the API calls, each with `now`; outputs come from [`Directory::poll_output`]; the next
//! deadline from [`Directory::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use crate::ids::NodeId;
use crate::proto::registry::conflict::{self, Winner};
use crate::proto::registry::record::{ActorLocation, Answer, DirKey, Op, Record, Refusal, RegistryFrame};
use crate::proto::registry::ring;

/// The directory's timings and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// A request not answered within this is sent again (to the owner of the moment).
    pub retry: Duration,
    /// After a `ViewMismatch`, the wait before asking again.
    pub mismatch_backoff: Duration,
    /// How long a request may wait for an answer in all.
    pub request_timeout: Duration,
    /// An owner serves requests at the latest this long after a view change, even if some
    /// host has not synced.
    pub rebuild_timeout: Duration,
    /// Clock-drift tolerance of the conflict rules.
    pub drift: Duration,
    /// Records per sync frame.
    pub sync_batch: usize,
}

/// Identifies an API call; its completion comes back with it.
pub type Token = u64;

/// A change of a watched key, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// The key now names this record (a new registration, or a new location).
    Registered(Record),
    /// The key's record was removed (the actor stopped, unregistered, or its node is down).
    Unregistered,
    /// This node's record for the key lost a conflict to `winner` (a healed partition).
    Lost {
        /// The record that won.
        winner: Record,
        /// This node's record that lost.
        loser: Box<Record>,
    },
}

/// What the directory wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `frame` to node `to`.
    Send {
        /// The node's name.
        to: String,
        /// The frame.
        frame: RegistryFrame,
    },
    /// An API call finished.
    Done {
        /// The call.
        token: Token,
        /// Its outcome.
        result: Result<Answer, Refusal>,
    },
    /// A watched key changed.
    Event {
        /// The key.
        key: DirKey,
        /// What happened.
        event: KeyEvent,
    },
}

struct Pending {
    token: Option<Token>,
    op: Op,
    deadline: Duration,
    resend_at: Duration,
}

#[derive(Default)]
struct Slot {
    record: Option<Record>,
    /// Nodes told when the record changes (they cached it, or watch it).
    interest: BTreeSet<String>,
}

/// The directory of one node.
pub struct Directory {
    me: String,
    config: DirectoryConfig,
    /// The masters (centralized architecture): only they own keys. `None`: every member.
    masters: Option<BTreeSet<String>>,
    /// Live members, this node included.
    live: BTreeMap<String, NodeId>,
    /// The directory members: the nodes keys are spread over.
    owners: Vec<String>,
    digest: u64,
    view_since: Duration,
    // Host.
    hosted: BTreeMap<DirKey, Record>,
    // Owner.
    slots: BTreeMap<DirKey, Slot>,
    /// The view version of each host's latest complete sync.
    synced: BTreeMap<String, u64>,
    /// Keys of a sync in progress, per host: (view, keys so far).
    syncing: BTreeMap<String, (u64, BTreeSet<DirKey>)>,
    deferred: Vec<(String, u64, Op)>,
    pull_at: Option<Duration>,
    // Client.
    next_req: u64,
    pending: BTreeMap<u64, Pending>,
    cache: HashMap<DirKey, Record>,
    watched: BTreeMap<DirKey, Option<Record>>,
    /// Incarnations that left the view (the latest [`GONE_KEPT`]) and have not come back:
    /// records located on them are stale wherever they come from (a reply or a request
    /// from before the change).
    gone: std::collections::HashSet<(String, NodeId)>,
    gone_order: VecDeque<(String, NodeId)>,
    // Frames to this node itself, handled before anything else is polled.
    inbox: VecDeque<RegistryFrame>,
    out: VecDeque<Output>,
}

/// How many departed incarnations a directory remembers.
const GONE_KEPT: usize = 1024;

/// The version of a view: a portable hash of its directory members (name and incarnation).
pub fn view_digest<'a>(owners: impl IntoIterator<Item = (&'a str, NodeId)>) -> u64 {
    let mut text = String::new();
    for (name, id) in owners {
        text.push_str(name);
        text.push(':');
        text.push_str(&id.to_string());
        text.push(';');
    }
    ring::score(&text, "view")
}

impl Directory {
    /// The directory of node `me` (id `id`), alone in its view until told otherwise.
    /// `masters`: the centralized architecture's masters, the only owners.
    pub fn new(me: &str, id: NodeId, config: DirectoryConfig, masters: Option<BTreeSet<String>>) -> Self {
        let mut d = Self {
            me: me.to_owned(),
            config,
            masters,
            live: BTreeMap::new(),
            owners: Vec::new(),
            digest: 0,
            view_since: Duration::ZERO,
            hosted: BTreeMap::new(),
            slots: BTreeMap::new(),
            synced: BTreeMap::new(),
            syncing: BTreeMap::new(),
            deferred: Vec::new(),
            pull_at: None,
            next_req: 1,
            pending: BTreeMap::new(),
            cache: HashMap::new(),
            watched: BTreeMap::new(),
            gone: std::collections::HashSet::new(),
            gone_order: VecDeque::new(),
            inbox: VecDeque::new(),
            out: VecDeque::new(),
        };
        d.handle_view(Duration::ZERO, BTreeMap::from([(me.to_owned(), id)]));
        d
    }

    /// The current view version.
    pub fn view(&self) -> u64 {
        self.digest
    }

    /// The directory members of the current view.
    pub fn owners(&self) -> &[String] {
        &self.owners
    }

    /// The node that owns `key` in the current view.
    pub fn owner_of(&self, key: &DirKey) -> Option<&str> {
        ring::owner(&key.ring_key(), self.owners.iter().map(String::as_str))
    }

    /// The id of live member `name`.
    pub fn member_id(&self, name: &str) -> Option<NodeId> {
        self.live.get(name).copied()
    }

    /// Records this node hosts.
    pub fn hosted(&self) -> impl Iterator<Item = (&DirKey, &Record)> {
        self.hosted.iter()
    }

    /// The record this node hosts under `key`.
    pub fn hosted_record(&self, key: &DirKey) -> Option<&Record> {
        self.hosted.get(key)
    }

    /// Records this node holds as owner.
    pub fn owned(&self) -> impl Iterator<Item = (&DirKey, &Record)> {
        self.slots.iter().filter_map(|(k, s)| s.record.as_ref().map(|r| (k, r)))
    }

    /// The cached record of `key`, if any.
    pub fn cached(&self, key: &DirKey) -> Option<&Record> {
        self.cache.get(key)
    }

    /// Number of cached records.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// True once every live host synced in this view, or the rebuild timeout passed.
    fn complete(&self, now: Duration) -> bool {
        now >= self.view_since + self.config.rebuild_timeout || self.missing_syncs().next().is_none()
    }

    fn missing_syncs(&self) -> impl Iterator<Item = &String> {
        self.live.keys().filter(|n| self.synced.get(*n) != Some(&self.digest))
    }

    fn is_owner(&self) -> bool {
        self.owners.contains(&self.me)
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let requests = self.pending.values().map(|p| p.deadline.min(p.resend_at)).min();
        let rebuild = (!self.deferred.is_empty()).then_some(self.view_since + self.config.rebuild_timeout);
        [requests, rebuild, self.pull_at].into_iter().flatten().min()
    }

    fn send(&mut self, now: Duration, to: &str, frame: RegistryFrame) {
        if to == self.me {
            self.inbox.push_back(frame);
            self.drain_inbox(now);
        } else {
            self.out.push_back(Output::Send { to: to.to_owned(), frame });
        }
    }

    fn drain_inbox(&mut self, now: Duration) {
        // Re-entrant sends to this node queue up here and are handled in order.
        while let Some(frame) = self.inbox.pop_front() {
            let me = self.me.clone();
            self.handle_frame_inner(now, &me, frame);
        }
    }

    // ---------------------------------------------------------------- view

    /// The live members changed (this node included; the others as membership sees them up).
    pub fn handle_view(&mut self, now: Duration, mut live: BTreeMap<String, NodeId>) {
        if let Some(id) = self.live.get(&self.me).copied() {
            live.entry(self.me.clone()).or_insert(id);
        }
        let gone: Vec<(String, NodeId)> =
            self.live.iter().filter(|(name, id)| live.get(*name) != Some(id)).map(|(n, id)| (n.clone(), *id)).collect();
        let owners: Vec<String> =
            live.keys().filter(|n| self.masters.as_ref().is_none_or(|m| m.contains(*n))).cloned().collect();
        let digest = view_digest(owners.iter().map(|n| (n.as_str(), live[n])));
        self.live = live;
        // An incarnation back in the view (a partition healed) is no longer gone.
        if !self.gone.is_empty() {
            let back: Vec<(String, NodeId)> =
                self.live.iter().map(|(n, id)| (n.clone(), *id)).filter(|k| self.gone.contains(k)).collect();
            for k in back {
                self.gone.remove(&k);
                self.gone_order.retain(|g| *g != k);
            }
        }
        for (name, id) in &gone {
            self.purge_node(now, name, *id);
        }
        if digest == self.digest && !self.owners.is_empty() {
            return;
        }
        // Requests waiting from the old view are asked again in the new one.
        for (from, req, _) in std::mem::take(&mut self.deferred) {
            self.send(now, &from, RegistryFrame::Reply { req, result: Err(Refusal::ViewMismatch) });
        }
        self.owners = owners;
        self.digest = digest;
        self.view_since = now;
        // Keys this node no longer owns are rebuilt by their new owners from the hosts.
        let me = self.me.clone();
        let keep: BTreeSet<DirKey> =
            self.slots.keys().filter(|k| self.owner_of(k) == Some(me.as_str())).cloned().collect();
        self.slots.retain(|k, _| keep.contains(k));
        let live = &self.live;
        for slot in self.slots.values_mut() {
            slot.interest.retain(|n| live.contains_key(n));
        }
        self.syncing.clear();
        // A host synced in an earlier view syncs again in this one, even if the view is the
        // same as that one again (a member gone and back): what it sent then was purged
        // when it went.
        self.synced.clear();
        // Owners now are other nodes: cached records would no longer be kept fresh. With no
        // owner at all (no master up) the cache is all there is, and it is kept until one
        // returns.
        if !self.owners.is_empty() {
            self.cache.clear();
        }
        self.push_syncs(now, None);
        if self.is_owner() {
            self.pull_at = Some(now);
            self.pull_syncs(now);
        } else {
            self.pull_at = None;
        }
        // Requests in flight go to the owners of this view; watches are renewed there.
        let reqs: Vec<u64> = self.pending.keys().copied().collect();
        for req in reqs {
            self.resend(now, req);
        }
        let watched: Vec<DirKey> = self.watched.keys().cloned().collect();
        for key in watched {
            self.request(now, None, Op::Lookup { key, watch: true });
        }
        self.serve_deferred(now);
    }

    /// The record is located on an incarnation that left the view.
    fn on_gone(&self, r: &Record) -> bool {
        !self.gone.is_empty() && self.gone.contains(&(r.location.node.clone(), r.location.node_id))
    }

    /// Drops every record located on the old incarnation `id` of `name`.
    fn purge_node(&mut self, now: Duration, name: &str, id: NodeId) {
        if self.gone.insert((name.to_owned(), id)) {
            self.gone_order.push_back((name.to_owned(), id));
            if self.gone_order.len() > GONE_KEPT {
                if let Some(old) = self.gone_order.pop_front() {
                    self.gone.remove(&old);
                }
            }
        }
        let on_it = |r: &Record| r.location.node == name && r.location.node_id == id;
        let keys: Vec<DirKey> =
            self.slots.iter().filter(|(_, s)| s.record.as_ref().is_some_and(on_it)).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.set_record(now, &key, None);
        }
        self.cache.retain(|_, r| !on_it(r));
        self.shrink_cache();
        let lost: Vec<DirKey> =
            self.watched.iter().filter(|(_, r)| r.as_ref().is_some_and(on_it)).map(|(k, _)| k.clone()).collect();
        for key in lost {
            self.observe(&key, None);
        }
        self.synced.remove(name);
        self.syncing.remove(name);
    }

    /// Sends the owners of this view (or only `to`) the records this node hosts for them.
    fn push_syncs(&mut self, now: Duration, to: Option<&str>) {
        let mut by_owner: BTreeMap<String, Vec<(DirKey, Record)>> = BTreeMap::new();
        for owner in &self.owners {
            if to.is_none_or(|t| t == owner) {
                by_owner.insert(owner.clone(), Vec::new());
            }
        }
        for (key, record) in &self.hosted {
            if let Some(owner) = self.owner_of(key) {
                if let Some(list) = by_owner.get_mut(owner) {
                    list.push((key.clone(), record.clone()));
                }
            }
        }
        let view = self.digest;
        let batch = self.config.sync_batch.max(1);
        for (owner, records) in by_owner {
            let mut chunks: Vec<Vec<(DirKey, Record)>> = records.chunks(batch).map(<[_]>::to_vec).collect();
            if chunks.is_empty() {
                chunks.push(Vec::new());
            }
            let n = chunks.len();
            for (i, records) in chunks.into_iter().enumerate() {
                self.send(now, &owner, RegistryFrame::Sync { view, records, last: i + 1 == n });
            }
        }
    }

    /// Asks the hosts that have not synced in this view for their records.
    fn pull_syncs(&mut self, now: Duration) {
        let missing: Vec<String> = self.missing_syncs().filter(|n| **n != self.me).cloned().collect();
        for host in missing {
            self.send(now, &host, RegistryFrame::SyncRequest { view: self.digest });
        }
    }

    // ---------------------------------------------------------------- API

    /// Registers `record` under `key`, hosted here (first writer wins for names).
    pub fn register(&mut self, now: Duration, token: Token, key: DirKey, record: Record) {
        if let Some(held) = self.hosted.get(&key) {
            if held.actor != record.actor {
                let held = held.clone();
                self.out.push_back(Output::Done { token, result: Err(Refusal::Taken(Box::new(held))) });
                return;
            }
        }
        self.hosted.insert(key.clone(), record.clone());
        self.request(now, Some(token), Op::Register { key, record });
    }

    /// A migration: moves this node's records of `actor` (now at `from`) to `record`'s
    /// location. Each key's owner replaces the record only if it still names `from`; `token`
    /// gets the outcome for the identity key (or the first key; an actor without records gets
    /// its identity record written at the new location).
    /// This node no longer hosts them: returns them, for the new host to [`adopt`] (or this
    /// node again, if the migration fails).
    ///
    /// [`adopt`]: Self::adopt
    pub fn move_out(
        &mut self,
        now: Duration,
        token: Token,
        actor: crate::ids::ActorId,
        from: ActorLocation,
        record: Record,
    ) -> Vec<(DirKey, Record)> {
        let keys: Vec<DirKey> = self.hosted.iter().filter(|(_, r)| r.actor == actor).map(|(k, _)| k.clone()).collect();
        let identity = DirKey::Actor(actor);
        if keys.is_empty() {
            // Never registered: its identity record is written at the new location.
            self.request(now, Some(token), Op::Register { key: identity.clone(), record: record.clone() });
            return vec![(identity, record)];
        }
        // The token follows the identity record, or the first key if the actor has none.
        let main = if keys.contains(&identity) { identity } else { keys[0].clone() };
        for key in &keys {
            self.hosted.remove(key);
            let token = (*key == main).then_some(token);
            self.request(now, token, Op::Move { key: key.clone(), from: from.clone(), record: record.clone() });
        }
        keys.into_iter().map(|k| (k, record.clone())).collect()
    }

    /// This node hosts `record` under `key` from now on (after a migration), without asking
    /// the owner: it already holds it. Returns the record of another actor this node
    /// hosted under `key` until now (two activations of a key meet here: the driver asks
    /// the key's owner which one stays).
    pub fn adopt(&mut self, key: DirKey, record: Record) -> Option<Record> {
        let actor = record.actor;
        self.hosted.insert(key, record).filter(|old| old.actor != actor)
    }

    /// Removes this node's record for `key`.
    pub fn unregister(&mut self, now: Duration, token: Token, key: DirKey) {
        match self.hosted.remove(&key) {
            Some(record) => self.request(now, Some(token), Op::Unregister { key, actor: record.actor }),
            None => self.out.push_back(Output::Done { token, result: Err(Refusal::NotHere) }),
        }
    }

    /// An actor hosted here stopped: its records go.
    pub fn actor_stopped(&mut self, now: Duration, actor: crate::ids::ActorId) {
        let keys: Vec<DirKey> = self.hosted.iter().filter(|(_, r)| r.actor == actor).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.hosted.remove(&key);
            self.request(now, None, Op::Unregister { key, actor });
        }
    }

    /// Looks `key` up: this node's own records first, then the cache, then the owner.
    pub fn lookup(&mut self, now: Duration, token: Token, key: DirKey) {
        if let Some(r) = self.hosted.get(&key).or_else(|| self.cache.get(&key)) {
            let r = r.clone();
            self.out.push_back(Output::Done { token, result: Ok(Answer::Found(Some(r))) });
            return;
        }
        self.request(now, Some(token), Op::Lookup { key, watch: false });
    }

    /// Asks the owner about `key`, bypassing this node's cache.
    pub fn lookup_uncached(&mut self, now: Duration, token: Token, key: DirKey) {
        self.request(now, Some(token), Op::Lookup { key, watch: false });
    }

    /// Drops `key` from the cache (its cached location answered that the actor is not there).
    pub fn invalidate(&mut self, key: &DirKey) {
        self.cache.remove(key);
        self.shrink_cache();
    }

    /// Reports every change of `key` from now on (as [`Output::Event`]).
    pub fn watch(&mut self, now: Duration, key: DirKey) {
        if self.watched.contains_key(&key) {
            return;
        }
        // Unknown until the owner answers: the current holder, if any, is the first event.
        self.watched.insert(key.clone(), None);
        self.request(now, None, Op::Lookup { key, watch: true });
    }

    /// Stops reporting changes of `key`.
    pub fn unwatch(&mut self, key: &DirKey) {
        self.watched.remove(key);
    }

    fn request(&mut self, now: Duration, token: Option<Token>, op: Op) {
        let req = self.next_req;
        self.next_req += 1;
        let deadline = now + self.config.request_timeout;
        self.pending.insert(req, Pending { token, op, deadline, resend_at: now });
        self.resend(now, req);
    }

    fn resend(&mut self, now: Duration, req: u64) {
        let Some(p) = self.pending.get_mut(&req) else { return };
        p.resend_at = now + self.config.retry;
        let op = p.op.clone();
        // Without an owner (no master up) the request waits for one, until its deadline.
        if let Some(owner) = self.owner_of(op.key()).map(str::to_owned) {
            let view = self.digest;
            self.send(now, &owner, RegistryFrame::Request { req, view, op });
        }
    }

    /// Deadlines: requests time out or go again, deferred requests are served once the
    /// rebuild timeout passed, and hosts that did not sync are asked again.
    pub fn handle_timeout(&mut self, now: Duration) {
        let due: Vec<u64> = self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(r, _)| *r).collect();
        for req in due {
            if let Some(Pending { token: Some(token), op, .. }) = self.pending.remove(&req) {
                let refusal = if self.owners.is_empty() { Refusal::NoDirectory } else { Refusal::Timeout };
                if let Op::Register { key, record } = &op {
                    self.drop_hosted(key, record.actor);
                }
                self.out.push_back(Output::Done { token, result: Err(refusal) });
            }
        }
        let resend: Vec<u64> = self.pending.iter().filter(|(_, p)| p.resend_at <= now).map(|(r, _)| *r).collect();
        for req in resend {
            self.resend(now, req);
        }
        self.serve_deferred(now);
        if self.pull_at.is_some_and(|t| t <= now) {
            // Hosts are asked until every one has synced in this view, also after the
            // rebuild timeout let requests be served: a host whose sync was lost (or came
            // in another view) would otherwise stay missing until its own view changes.
            if self.is_owner() && self.missing_syncs().any(|n| *n != self.me) {
                self.pull_syncs(now);
                self.pull_at = Some(now + self.config.retry);
            } else {
                self.pull_at = None;
            }
        }
    }

    /// A cache that held many records gives its room back once most are gone.
    fn shrink_cache(&mut self) {
        if self.cache.capacity() > 64 && self.cache.len() < self.cache.capacity() / 4 {
            self.cache.shrink_to(self.cache.len() * 2);
        }
    }

    fn drop_hosted(&mut self, key: &DirKey, actor: crate::ids::ActorId) {
        if self.hosted.get(key).is_some_and(|r| r.actor == actor) {
            self.hosted.remove(key);
        }
    }

    // ---------------------------------------------------------------- frames

    /// A frame from node `from`.
    pub fn handle_frame(&mut self, now: Duration, from: &str, frame: RegistryFrame) {
        self.handle_frame_inner(now, from, frame);
        self.drain_inbox(now);
    }

    fn handle_frame_inner(&mut self, now: Duration, from: &str, frame: RegistryFrame) {
        match frame {
            RegistryFrame::Request { req, view, op } => {
                if view != self.digest {
                    self.send(now, from, RegistryFrame::Reply { req, result: Err(Refusal::ViewMismatch) });
                } else if self.owner_of(op.key()) != Some(self.me.as_str()) {
                    self.send(now, from, RegistryFrame::Reply { req, result: Err(Refusal::NotOwner) });
                } else if !self.complete(now) {
                    if !self.deferred.iter().any(|(f, r, _)| f == from && *r == req) {
                        self.deferred.push((from.to_owned(), req, op));
                    }
                } else {
                    self.serve(now, from, req, op);
                }
            }
            RegistryFrame::Reply { req, result } => self.handle_reply(now, req, result),
            RegistryFrame::SyncRequest { view } => {
                if view == self.digest {
                    self.push_syncs(now, Some(from));
                }
            }
            RegistryFrame::Sync { view, records, last } => self.handle_sync(now, from, view, records, last),
            RegistryFrame::Changed { key, .. } | RegistryFrame::Lost { key, .. }
                if self.owner_of(&key) != Some(from) =>
            {
                // Only the key's owner speaks for it.
                tracing::debug!(%key, %from, "registry update from a node that does not own the key; ignored");
            }
            RegistryFrame::Changed { key, mut record } => {
                if record.as_ref().is_some_and(|r| self.on_gone(r)) {
                    record = None;
                }
                match &record {
                    Some(r) if self.cache.contains_key(&key) || self.watched.contains_key(&key) => {
                        self.cache.insert(key.clone(), r.clone());
                    }
                    Some(_) => {}
                    None => {
                        self.cache.remove(&key);
                        self.shrink_cache();
                    }
                }
                self.observe(&key, record);
            }
            RegistryFrame::Lost { key, loser, winner } => {
                if self.hosted.get(&key).is_some_and(|r| r.actor == loser) {
                    if let Some(lost) = self.hosted.remove(&key) {
                        let event = KeyEvent::Lost { winner: *winner, loser: Box::new(lost) };
                        self.out.push_back(Output::Event { key, event });
                    }
                }
            }
            // Handled by the driver, which knows the node's actors.
            RegistryFrame::HostRegister { .. } | RegistryFrame::HostReply { .. } => {}
        }
    }

    fn handle_reply(&mut self, now: Duration, req: u64, result: Result<Answer, Refusal>) {
        let Some(p) = self.pending.remove(&req) else { return };
        match result {
            Err(Refusal::ViewMismatch | Refusal::NotOwner) => {
                // Asked again once the views agree (a view change resends at once).
                let resend_at = now + self.config.mismatch_backoff;
                self.pending.insert(req, Pending { resend_at, ..p });
            }
            mut result => {
                if let Ok(Answer::Found(found)) = &mut result {
                    // Answered before the owner saw its node leave: it is not there.
                    if found.as_ref().is_some_and(|r| self.on_gone(r)) {
                        *found = None;
                    }
                }
                match (&p.op, &result) {
                    (Op::Lookup { key, .. }, Ok(Answer::Found(found))) => {
                        if let Some(r) = found {
                            self.cache.insert(key.clone(), r.clone());
                        }
                        if self.watched.contains_key(key) {
                            self.observe(key, found.clone());
                        }
                    }
                    (Op::Register { key, record }, Err(Refusal::Taken(_))) => self.drop_hosted(key, record.actor),
                    _ => {}
                }
                if let Some(token) = p.token {
                    self.out.push_back(Output::Done { token, result });
                }
            }
        }
    }

    /// A watched key is now `record`: reports the change, if it is one.
    fn observe(&mut self, key: &DirKey, record: Option<Record>) {
        let Some(known) = self.watched.get_mut(key) else { return };
        if *known == record {
            return;
        }
        *known = record.clone();
        let event = match record {
            Some(r) => KeyEvent::Registered(r),
            None => KeyEvent::Unregistered,
        };
        self.out.push_back(Output::Event { key: key.clone(), event });
    }

    // ---------------------------------------------------------------- owner

    fn serve_deferred(&mut self, now: Duration) {
        if self.deferred.is_empty() || !self.complete(now) {
            return;
        }
        for (from, req, op) in std::mem::take(&mut self.deferred) {
            if self.owner_of(op.key()) == Some(self.me.as_str()) {
                self.serve(now, &from, req, op);
            } else {
                self.send(now, &from, RegistryFrame::Reply { req, result: Err(Refusal::NotOwner) });
            }
        }
    }

    fn serve(&mut self, now: Duration, from: &str, req: u64, op: Op) {
        let result = match op {
            Op::Register { key, record } if self.on_gone(&record) => {
                // Sent before its host left the view.
                let _ = key;
                Err(Refusal::NotHere)
            }
            Op::Register { key, record } => {
                let current = self.slots.get(&key).and_then(|s| s.record.clone());
                match current {
                    Some(held) if held.actor != record.actor => Err(Refusal::Taken(Box::new(held))),
                    Some(held) if held == record => Ok(Answer::Done),
                    _ => {
                        self.set_record(now, &key, Some(record));
                        Ok(Answer::Done)
                    }
                }
            }
            Op::Move { record, .. } if self.on_gone(&record) => Err(Refusal::Superseded),
            Op::Move { key, from, record } => {
                let current = self.slots.get(&key).and_then(|s| s.record.clone());
                match current {
                    Some(held) if held == record => Ok(Answer::Done),
                    Some(held) if held.actor == record.actor && held.location == from => {
                        self.set_record(now, &key, Some(record));
                        Ok(Answer::Done)
                    }
                    _ => Err(Refusal::Superseded),
                }
            }
            Op::Unregister { key, actor } => {
                if self.slots.get(&key).and_then(|s| s.record.as_ref()).is_some_and(|r| r.actor == actor) {
                    self.set_record(now, &key, None);
                }
                Ok(Answer::Done)
            }
            Op::Lookup { key, watch } => {
                let slot = self.slots.entry(key.clone()).or_default();
                let found = slot.record.clone();
                if found.is_some() || watch {
                    slot.interest.insert(from.to_owned());
                }
                if slot.record.is_none() && slot.interest.is_empty() {
                    self.slots.remove(&key);
                }
                Ok(Answer::Found(found))
            }
        };
        self.send(now, from, RegistryFrame::Reply { req, result });
    }

    /// Sets (or removes) the owned record of `key` and tells the interested nodes.
    fn set_record(&mut self, now: Duration, key: &DirKey, record: Option<Record>) {
        let slot = self.slots.entry(key.clone()).or_default();
        if slot.record == record {
            return;
        }
        slot.record = record.clone();
        let interest: Vec<String> = slot.interest.iter().cloned().collect();
        if slot.record.is_none() {
            slot.interest.clear();
            self.slots.remove(key);
        }
        for node in interest {
            self.send(now, &node, RegistryFrame::Changed { key: key.clone(), record: record.clone() });
        }
    }

    fn handle_sync(&mut self, now: Duration, host: &str, view: u64, records: Vec<(DirKey, Record)>, last: bool) {
        if view != self.digest || !self.is_owner() {
            // Out of date; the host syncs again when its view changes, or is asked.
            return;
        }
        let seen = self.syncing.entry(host.to_owned()).or_insert_with(|| (view, BTreeSet::new()));
        if seen.0 != view {
            *seen = (view, BTreeSet::new());
        }
        let me = self.me.clone();
        let mut accepted = Vec::new();
        for (key, record) in records {
            if self.owner_of(&key) != Some(me.as_str()) || record.location.node != host {
                continue;
            }
            accepted.push(key.clone());
            self.merge(now, key, record);
        }
        if let Some((_, keys)) = self.syncing.get_mut(host) {
            keys.extend(accepted);
        }
        if !last {
            return;
        }
        let (_, keys) = self.syncing.remove(host).unwrap_or_default();
        // What the host no longer reports, it no longer holds.
        let stale: Vec<DirKey> = self
            .slots
            .iter()
            .filter(|(k, s)| !keys.contains(*k) && s.record.as_ref().is_some_and(|r| r.location.node == host))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.set_record(now, &key, None);
        }
        self.synced.insert(host.to_owned(), view);
        self.serve_deferred(now);
    }

    /// A host's record for `key` meets what this owner holds.
    fn merge(&mut self, now: Duration, key: DirKey, incoming: Record) {
        if self.on_gone(&incoming) {
            return;
        }
        let current = self.slots.get(&key).and_then(|s| s.record.clone());
        let Some(held) = current else {
            self.set_record(now, &key, Some(incoming));
            return;
        };
        if held == incoming {
            return;
        }
        let held_live = self.live.get(&held.location.node) == Some(&held.location.node_id);
        let winner = if held_live {
            conflict::resolve(&held.registration(), &incoming.registration(), self.config.drift)
        } else {
            Winner::Second
        };
        let (win, lose) = match winner {
            Winner::First => (held, incoming),
            Winner::Second => (incoming, held),
        };
        if win.actor != lose.actor {
            tracing::info!(%key, winner = %win.location.node, loser = %lose.location.node, "registry conflict settled");
            let host = lose.location.node.clone();
            let frame = RegistryFrame::Lost { key: key.clone(), loser: lose.actor, winner: Box::new(win.clone()) };
            self.send(now, &host, frame);
        }
        self.set_record(now, &key, Some(win));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ActorId, ActorTypeId, LocalActorId};
    use crate::proto::registry::conflict::VersionVector;
    use crate::proto::registry::record::ActorLocation;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> DirectoryConfig {
        DirectoryConfig {
            retry: 500 * MS,
            mismatch_backoff: 50 * MS,
            request_timeout: 5_000 * MS,
            rebuild_timeout: 2_000 * MS,
            drift: 500 * MS,
            sync_batch: 3,
        }
    }

    fn id(name: &str) -> NodeId {
        NodeId(u128::from(ring::score(name, "id")))
    }

    fn record(node: &str, actor: u64, at_ms: u64) -> Record {
        let mut version = VersionVector::new();
        version.bump(node);
        Record {
            actor: ActorId::first(id(node), LocalActorId(actor)),
            actor_type: ActorTypeId(1),
            location: ActorLocation { node: node.into(), node_id: id(node), actor: LocalActorId(actor) },
            at_ms,
            version,
        }
    }

    fn name(n: &str) -> DirKey {
        DirKey::Name(n.into())
    }

    /// Nodes wired together in memory, with blocked pairs (partitions).
    struct Net {
        nodes: BTreeMap<String, Directory>,
        now: Duration,
        blocked: BTreeSet<(String, String)>,
        done: BTreeMap<(String, Token), Result<Answer, Refusal>>,
        events: Vec<(String, DirKey, KeyEvent)>,
        frames: usize,
    }

    impl Net {
        fn new(names: &[&str], masters: Option<&[&str]>) -> Self {
            let masters: Option<BTreeSet<String>> = masters.map(|m| m.iter().map(|s| (*s).to_owned()).collect());
            let nodes =
                names.iter().map(|n| ((*n).to_owned(), Directory::new(n, id(n), config(), masters.clone()))).collect();
            let mut net = Self {
                nodes,
                now: Duration::ZERO,
                blocked: BTreeSet::new(),
                done: BTreeMap::new(),
                events: Vec::new(),
                frames: 0,
            };
            net.view_all();
            net
        }

        /// Every node sees the nodes it can reach (both ways) as live.
        fn view_all(&mut self) {
            let names: Vec<String> = self.nodes.keys().cloned().collect();
            for n in &names {
                let live: BTreeMap<String, NodeId> = names
                    .iter()
                    .filter(|m| *m == n || !self.blocked.contains(&((*n).clone(), (*m).clone())))
                    .map(|m| (m.clone(), id(m)))
                    .collect();
                let now = self.now;
                self.nodes.get_mut(n).expect("node").handle_view(now, live);
            }
            self.run();
        }

        fn partition(&mut self, a: &[&str], b: &[&str]) {
            for x in a {
                for y in b {
                    self.blocked.insert(((*x).into(), (*y).into()));
                    self.blocked.insert(((*y).into(), (*x).into()));
                }
            }
            self.view_all();
        }

        fn heal(&mut self) {
            self.blocked.clear();
            self.view_all();
        }

        fn remove(&mut self, gone: &str) {
            self.nodes.remove(gone);
            self.view_all();
        }

        fn join(&mut self, name: &str) {
            let masters = self.nodes.values().next().and_then(|d| d.masters.clone());
            self.nodes.insert(name.into(), Directory::new(name, id(name), config(), masters));
            self.view_all();
        }

        /// Delivers outputs until none is left; advances time through timers while something waits.
        fn run(&mut self) {
            for _ in 0..10_000 {
                let mut moved = false;
                let names: Vec<String> = self.nodes.keys().cloned().collect();
                for n in &names {
                    while let Some(out) = self.nodes.get_mut(n).and_then(Directory::poll_output) {
                        moved = true;
                        match out {
                            Output::Send { to, frame } => {
                                if self.blocked.contains(&(n.clone(), to.clone())) {
                                    continue;
                                }
                                self.frames += 1;
                                let now = self.now;
                                if let Some(d) = self.nodes.get_mut(&to) {
                                    d.handle_frame(now, n, frame);
                                }
                            }
                            Output::Done { token, result } => {
                                self.done.insert((n.clone(), token), result);
                            }
                            Output::Event { key, event } => self.events.push((n.clone(), key, event)),
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("outputs never settled");
        }

        /// Advances virtual time to the next deadline, at most `max`.
        fn tick(&mut self, max: Duration) {
            let next = self.nodes.values().filter_map(Directory::poll_timeout).min();
            self.now = next.map_or(self.now + max, |t| t.max(self.now).min(self.now + max));
            let now = self.now;
            for d in self.nodes.values_mut() {
                d.handle_timeout(now);
            }
            self.run();
        }

        fn node(&mut self, n: &str) -> &mut Directory {
            self.nodes.get_mut(n).expect("node")
        }

        fn register(&mut self, n: &str, token: Token, key: &str, record: Record) -> Result<Answer, Refusal> {
            let now = self.now;
            self.node(n).register(now, token, name(key), record);
            self.run();
            self.done.remove(&(n.to_owned(), token)).expect("answered")
        }

        fn lookup(&mut self, n: &str, token: Token, key: &str) -> Option<Record> {
            let now = self.now;
            self.node(n).lookup(now, token, name(key));
            self.run();
            match self.done.remove(&(n.to_owned(), token)) {
                Some(Ok(Answer::Found(r))) => r,
                other => panic!("lookup of {key} on {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_name_resolves_from_every_node_and_the_first_writer_keeps_it() {
        let mut net = Net::new(&["a", "b", "c"], None);
        assert_eq!(net.register("a", 1, "cart", record("a", 1, 100)), Ok(Answer::Done));
        for n in ["a", "b", "c"] {
            assert_eq!(net.lookup(n, 2, "cart").map(|r| r.location.node), Some("a".into()), "from {n}");
        }
        match net.register("c", 3, "cart", record("c", 9, 50)) {
            Err(Refusal::Taken(held)) => assert_eq!(held.location.node, "a"),
            other => panic!("{other:?}"),
        }
        assert!(net.node("c").hosted().next().is_none(), "the refused record is not kept");
    }

    #[test]
    fn a_request_or_reply_from_before_a_node_left_never_brings_its_record_back() {
        let mut net = Net::new(&["a", "b", "c"], None);
        // A key owned by `a`, registered by `c`, whose request reaches `a` only after `a`
        // saw `c` leave (it was on its way, or deferred in the old view).
        let key = key_owned_by("a", &["a", "b", "c"]);
        let r = record("c", 7, 100);
        let view = net.node("a").view();
        net.nodes.remove("c");
        net.view_all();
        let op = Op::Register { key: name(&key), record: r.clone() };
        let (now, new_view) = (net.now, net.node("a").view());
        net.node("a").handle_frame(now, "c", RegistryFrame::Request { req: 1, view: new_view, op });
        assert_ne!(view, new_view);
        net.run();
        assert_eq!(net.lookup("b", 1, &key), None, "the departed node's record is refused");
        // A lookup answered before the owner purged it is not believed either.
        let now = net.now;
        net.node("b").lookup(now, 2, name(&key));
        let req = net.node("b").pending.keys().copied().max().expect("a request");
        let owner = key_owner(&net, &key);
        net.node("b").handle_frame(now, &owner, RegistryFrame::Reply { req, result: Ok(Answer::Found(Some(r))) });
        assert_eq!(net.done.get(&("b".into(), 2)), None);
        net.run();
        assert_eq!(net.done.get(&("b".into(), 2)), Some(&Ok(Answer::Found(None))));
        assert_eq!(net.node("b").cached(&name(&key)), None);
    }

    #[test]
    fn an_owner_that_saw_a_host_go_and_come_back_asks_it_again_until_it_syncs() {
        let mut net = Net::new(&["a", "b", "c"], None);
        // A key owned by `a`, hosted by `c`.
        let key = key_owned_by("a", &["a", "b", "c"]);
        assert_eq!(net.register("c", 1, &key, record("c", 7, 100)), Ok(Answer::Done));
        let all: BTreeMap<String, NodeId> = ["a", "b", "c"].iter().map(|n| ((*n).to_owned(), id(n))).collect();
        let without_c: BTreeMap<String, NodeId> =
            all.iter().filter(|(n, _)| *n != "c").map(|(n, i)| (n.clone(), *i)).collect();
        // Only `a` sees `c` go (its records are purged there) and come back: the view is the
        // one it had before, and `c`'s own view never changed, so `c` does not push. Its
        // answers to `a`'s requests are lost for a while.
        net.blocked.insert(("c".into(), "a".into()));
        net.blocked.insert(("a".into(), "c".into()));
        let now = net.now;
        net.node("a").handle_view(now, without_c);
        net.run();
        let now = net.now;
        net.node("a").handle_view(now, all);
        net.run();
        assert!(
            net.node("a").slots.get(&name(&key)).is_none_or(|s| s.record.is_none()),
            "the owner purged the record when the host went"
        );
        // `c`'s answers stay lost until past the rebuild timeout (the views do not change).
        for _ in 0..5 {
            net.tick(Duration::from_secs(1));
        }
        net.blocked.clear();
        // `a` still asks `c`, and gets the record back.
        for _ in 0..5 {
            net.tick(Duration::from_secs(1));
        }
        assert_eq!(net.lookup("b", 2, &key).map(|r| r.location.node), Some("c".into()));
    }

    fn key_owner(net: &Net, key: &str) -> String {
        net.nodes.values().next().and_then(|d| d.owner_of(&name(key))).expect("an owner").to_owned()
    }

    #[test]
    fn a_stopped_actor_disappears_from_owners_and_caches() {
        let mut net = Net::new(&["a", "b", "c"], None);
        let r = record("b", 4, 100);
        assert_eq!(net.register("b", 1, "job", r.clone()), Ok(Answer::Done));
        for n in ["a", "c"] {
            assert!(net.lookup(n, 2, "job").is_some());
            assert!(net.node(n).cached(&name("job")).is_some(), "{n} caches it");
        }
        let now = net.now;
        net.node("b").actor_stopped(now, r.actor);
        net.run();
        for n in ["a", "b", "c"] {
            assert_eq!(net.node(n).cached(&name("job")), None, "{n}'s cache was told");
            assert_eq!(net.lookup(n, 3, "job"), None, "{n}");
        }
    }

    #[test]
    fn a_downed_node_takes_its_names_with_it_and_keeps_nothing_else_from_moving() {
        let mut net = Net::new(&["a", "b", "c", "d"], None);
        for i in 0..40u64 {
            let host = ["a", "b", "c", "d"][(i % 4) as usize];
            assert_eq!(net.register(host, i, &format!("k{i}"), record(host, i, 100)), Ok(Answer::Done));
        }
        net.remove("c");
        for i in 0..40u64 {
            let found = net.lookup("a", 1000 + i, &format!("k{i}"));
            if i % 4 == 2 {
                assert_eq!(found, None, "k{i} was on c");
            } else {
                assert!(found.is_some(), "k{i} lost although its host lives (it may have been owned by c)");
            }
        }
    }

    #[test]
    fn a_joining_node_rebuilds_its_share_from_the_hosts() {
        let mut net = Net::new(&["a", "b", "c", "d", "e"], None);
        for i in 0..300u64 {
            let host = ["a", "b", "c", "d", "e"][(i % 5) as usize];
            assert_eq!(net.register(host, i, &format!("k{i}"), record(host, i, 100)), Ok(Answer::Done));
        }
        let before: BTreeMap<String, String> = (0..300)
            .map(|i| {
                let k = name(&format!("k{i}"));
                (format!("k{i}"), net.node("a").owner_of(&k).expect("owner").to_owned())
            })
            .collect();
        net.join("f");
        let owned_by_f = net.node("f").owned().count();
        let moved = before.iter().filter(|(k, o)| net.node("a").owner_of(&name(k)) != Some(o.as_str())).count();
        assert_eq!(owned_by_f, moved, "f holds exactly the keys that moved to it");
        assert!(moved as f64 / 300.0 <= 1.0 / 6.0 + 0.05, "moved {moved}/300");
        for i in 0..300u64 {
            assert!(net.lookup("f", 10_000 + i, &format!("k{i}")).is_some(), "k{i}");
        }
    }

    /// A name that `owner` owns among `members`.
    fn key_owned_by(owner: &str, members: &[&str]) -> String {
        (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| ring::owner(&name(k).ring_key(), members.iter().copied()) == Some(owner))
            .expect("some key")
    }

    #[test]
    fn a_move_swaps_every_record_only_from_the_location_it_names_and_the_new_host_adopts_them() {
        let mut net = Net::new(&["a", "b", "c"], None);
        let at_a = record("a", 1, 100);
        assert_eq!(net.register("a", 1, "cart", at_a.clone()), Ok(Answer::Done));
        let now = net.now;
        net.node("a").register(now, 10, DirKey::Actor(at_a.actor), at_a.clone());
        net.run();
        // The actor moves to b, keeping its identity.
        let mut at_b = at_a.clone();
        at_b.location = ActorLocation { node: "b".into(), node_id: id("b"), actor: LocalActorId(9) };
        at_b.version.bump("a");
        let now = net.now;
        let moved = net.node("a").move_out(now, 2, at_a.actor, at_a.location.clone(), at_b.clone());
        net.run();
        assert_eq!(net.done.remove(&("a".into(), 2)), Some(Ok(Answer::Done)));
        let keys: BTreeSet<DirKey> = moved.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, BTreeSet::from([name("cart"), DirKey::Actor(at_a.actor)]), "the name and the identity record");
        assert_eq!(net.node("a").hosted().count(), 0, "a no longer writes them");
        for (key, record) in moved {
            assert_eq!(net.node("b").adopt(key, record), None, "b held no other actor's records under them");
        }
        for n in ["a", "b", "c"] {
            assert_eq!(net.lookup(n, 3, "cart").map(|r| r.location.node), Some("b".to_owned()), "{n}");
        }
        // A second move from the old location is refused: the record names b now.
        let now = net.now;
        let mut at_c = at_b.clone();
        at_c.location.node = "c".into();
        net.node("c").adopt(name("cart"), at_a.clone());
        net.node("c").move_out(now, 4, at_a.actor, at_a.location.clone(), at_c);
        net.run();
        assert_eq!(net.done.remove(&("c".into(), 4)), Some(Err(Refusal::Superseded)));
        // After a view change the new host's syncs rebuild the records where they belong.
        net.join("d");
        net.tick(600 * MS);
        net.tick(600 * MS);
        assert_eq!(net.lookup("d", 5, "cart").map(|r| r.location.node), Some("b".to_owned()));
    }

    #[test]
    fn requests_during_a_rebuild_wait_for_the_hosts() {
        let mut net = Net::new(&["a", "b", "c"], None);
        let x = key_owned_by("d", &["a", "b", "c", "d"]);
        assert_eq!(net.register("b", 1, &x, record("b", 1, 100)), Ok(Answer::Done));
        // "d" joins, but "b" (the host) cannot reach it yet: d's view has b, b's does not have d.
        net.nodes.insert("d".into(), Directory::new("d", id("d"), config(), None));
        let all: BTreeMap<String, NodeId> = ["a", "b", "c", "d"].iter().map(|m| ((*m).to_owned(), id(m))).collect();
        let now = net.now;
        net.node("d").handle_view(now, all.clone());
        net.blocked.insert(("b".into(), "d".into()));
        for n in ["a", "c"] {
            net.node(n).handle_view(now, all.clone());
        }
        net.run();
        net.node("b").handle_view(now, all);
        net.run();
        assert_eq!(net.node("a").owner_of(&name(&x)), Some("d"));
        // d cannot have b's record yet; it must not answer "not found" before b synced.
        let now = net.now;
        net.node("c").lookup(now, 7, name(&x));
        net.run();
        assert!(!net.done.contains_key(&("c".into(), 7)), "answered before b synced");
        net.blocked.clear();
        net.tick(600 * MS);
        net.tick(600 * MS);
        assert_eq!(
            net.done.remove(&("c".into(), 7)).expect("answered after the sync"),
            Ok(Answer::Found(Some(record("b", 1, 100))))
        );
    }

    #[test]
    fn mismatched_views_are_retried_until_they_agree() {
        let mut net = Net::new(&["a", "b"], None);
        net.nodes.insert("c".into(), Directory::new("c", id("c"), config(), None));
        let all: BTreeMap<String, NodeId> = ["a", "b", "c"].iter().map(|m| ((*m).to_owned(), id(m))).collect();
        let now = net.now;
        net.node("c").handle_view(now, all.clone());
        net.run();
        // c's view has three members, a's and b's two: c's requests are refused until they agree.
        let y = key_owned_by("a", &["a", "b", "c"]);
        net.node("c").lookup(now, 1, name(&y));
        net.run();
        net.tick(100 * MS);
        assert!(!net.done.contains_key(&("c".into(), 1)), "answered across different views");
        for n in ["a", "b"] {
            net.node(n).handle_view(now, all.clone());
        }
        net.run();
        net.tick(100 * MS);
        net.tick(600 * MS);
        assert_eq!(net.done.remove(&("c".into(), 1)), Some(Ok(Answer::Found(None))));
    }

    #[test]
    fn both_sides_of_a_healed_partition_agree_on_one_winner_and_the_loser_is_told() {
        let mut net = Net::new(&["a", "b", "c", "d"], None);
        net.partition(&["a", "b"], &["c", "d"]);
        assert_eq!(net.register("a", 1, "leader", record("a", 1, 10_000)), Ok(Answer::Done));
        assert_eq!(net.register("d", 2, "leader", record("d", 2, 12_000)), Ok(Answer::Done));
        let now = net.now;
        for n in ["a", "b", "c", "d"] {
            net.node(n).watch(now, name("leader"));
        }
        net.run();
        net.heal();
        net.tick(600 * MS);
        let winners: BTreeSet<Option<String>> =
            ["a", "b", "c", "d"].iter().map(|n| net.lookup(n, 9, "leader").map(|r| r.location.node)).collect();
        assert_eq!(winners, BTreeSet::from([Some("a".to_owned())]), "the first writer, everywhere");
        assert!(
            net.events.iter().any(|(n, k, e)| n == "d" && *k == name("leader") && matches!(e, KeyEvent::Lost { .. })),
            "d's holder is told: {:?}",
            net.events
        );
        assert!(net.node("d").hosted().next().is_none(), "d dropped its record");
    }

    #[test]
    fn watches_report_registration_removal_and_node_loss() {
        let mut net = Net::new(&["a", "b", "c"], None);
        let now = net.now;
        net.node("a").watch(now, name("w"));
        net.run();
        let r = record("c", 5, 100);
        assert_eq!(net.register("c", 1, "w", r.clone()), Ok(Answer::Done));
        net.remove("c");
        let seen: Vec<&KeyEvent> = net.events.iter().filter(|(n, _, _)| n == "a").map(|(_, _, e)| e).collect();
        assert_eq!(seen, vec![&KeyEvent::Registered(r), &KeyEvent::Unregistered]);
    }

    #[test]
    fn centralized_workers_use_the_master_and_keep_their_own_entries_without_it() {
        let mut net = Net::new(&["m", "w1", "w2"], Some(&["m"]));
        assert_eq!(net.node("w1").owners(), ["m".to_owned()]);
        assert_eq!(net.register("w1", 1, "svc", record("w1", 1, 100)), Ok(Answer::Done));
        assert!(net.node("m").owned().any(|(k, _)| *k == name("svc")), "the master holds it");
        assert!(net.lookup("w2", 2, "svc").is_some());
        // The master goes; w1 still resolves its own entry, w2 its cached one.
        net.remove("m");
        assert!(net.node("w1").owners().is_empty());
        assert!(net.lookup("w1", 3, "svc").is_some(), "its own entry");
        assert!(net.lookup("w2", 31, "svc").is_some(), "a cached entry");
        // A registration waits for a master until its deadline.
        let now = net.now;
        net.node("w2").register(now, 4, name("late"), record("w2", 2, 200));
        net.run();
        assert!(!net.done.contains_key(&("w2".into(), 4)));
        // The master comes back: hosts sync their entries to it, the waiting one goes through.
        net.join("m");
        assert_eq!(net.done.remove(&("w2".into(), 4)), Some(Ok(Answer::Done)));
        assert!(net.node("m").owned().any(|(k, _)| *k == name("svc")), "w1 re-registered");
        net.node("w2").invalidate(&name("svc"));
        assert!(net.lookup("w2", 5, "svc").is_some());
    }

    #[test]
    fn a_request_without_an_answer_times_out() {
        let mut net = Net::new(&["m", "w"], Some(&["m"]));
        net.remove("m");
        let now = net.now;
        net.node("w").lookup(now, 1, name("nothing"));
        net.run();
        for _ in 0..20 {
            net.tick(1_000 * MS);
        }
        assert_eq!(net.done.remove(&("w".into(), 1)), Some(Err(Refusal::NoDirectory)));
    }
}
