//! Snapshots of actors with a recovery policy and their re-creation after their node is
//! lost, pure. Every node plays both roles.
//!
//! - **Host** (where the actor runs): an actor with `recovery = "restart"` keeps a replica
//!   on `max(replicas, 1)` other live members, the first ones by rendezvous score for its
//!   identity. With `replicas = 0` the replica is a descriptor (identity, type, no state):
//!   the actor restarts from `Default`. Otherwise the state is snapshotted after each
//!   handled message or every interval ([`SnapshotSchedule`]) and sent to every holder.
//!   Holders change with the view; a normal stop or a move drops the replicas.
//! - **Holder**: keeps the newest replica of each actor (by [`SnapshotVersion`]: epoch,
//!   then sequence) from its host only. A replica lists all its holders in rank order; when
//!   its host is no longer in the view (marked down — never merely suspected), the first
//!   listed holder still in the view re-creates the actor ([`Output::Recreate`]) with the
//!   next epoch, and tells the other holders to drop the older epoch. If that holder is lost
//!   too before it re-created the actor, the next one does.
//! - **Keyed activations** keep their replicas under the key's identity, on the members that
//!   rank highest for the key on the ring (the host excluded): when the host is lost, the
//!   first live holder is the member consistent hashing places the key on next. They are not
//!   re-created eagerly: the key's next activation [claims](Snapshots::claim) the replica
//!   from that member and starts from it.
//! - **Moves**: a host that moves an actor away hands the next epoch to the new host
//!   ([`SnapshotFrame::Handover`]) and tells the holders to drop older replicas, so
//!   replicas from the two hosts can never be confused whatever order their frames arrive in.
//!
//! A crash loses what the actor did since its last snapshot reached the first live holder.
//! Two sides of a partition that each see the host down can both re-create it: the same
//! limit as single activation until split-brain resolution.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::format::{postcard_exact, Format, Inexact};
use crate::ids::{ActorId, ActorTypeId};
use crate::proto::registry::ring;

/// When a host snapshots an actor that keeps replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSchedule {
    /// After each handled message (at most one snapshot in flight; messages handled
    /// meanwhile are in the next one).
    EveryMessage,
    /// At most once per interval, if a message was handled since the last one.
    Every(Duration),
}

/// What happens to an actor when its node is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPolicy {
    /// Re-create it on a surviving node (`recovery = "restart"`); false: `"none"`.
    pub restart: bool,
    /// How many other nodes keep its latest state (0: it restarts from `Default`).
    pub replicas: usize,
    /// When the state is snapshotted.
    pub schedule: SnapshotSchedule,
}

impl RecoveryPolicy {
    /// How many nodes keep a replica (a descriptor at least, when it restarts).
    pub fn holders(&self) -> usize {
        if self.restart {
            self.replicas.max(1)
        } else {
            0
        }
    }
}

/// Orders the replicas of one actor: the epoch grows with each re-creation, the sequence
/// with each snapshot within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct SnapshotVersion {
    /// Re-creations so far.
    pub epoch: u64,
    /// Snapshots in this epoch.
    pub seq: u64,
}

/// An actor's replica, as its host sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The actor's identity (kept when it is re-created; a keyed activation's is its key's).
    pub identity: ActorId,
    /// Its type.
    pub actor_type: ActorTypeId,
    /// A keyed activation's key.
    pub key: Option<String>,
    /// The names it is registered under (taken back when it is re-created).
    pub names: Vec<String>,
    /// The node it runs on.
    pub host: String,
    /// This replica's version.
    pub version: SnapshotVersion,
    /// Every holder, first in rank (the first live one re-creates the actor).
    pub holders: Vec<String>,
    /// The state and its format; `None`: restart from `Default`.
    pub state: Option<(Format, Vec<u8>)>,
}

/// The frames between hosts and holders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotFrame {
    /// Keep this replica (it replaces an older one).
    Store(Replica),
    /// Drop the replicas of `identity` older than `below` (from their host, or of an older
    /// epoch).
    Drop {
        /// The actor.
        identity: ActorId,
        /// Replicas older than this go.
        below: SnapshotVersion,
    },
    /// Holder to host: it keeps the replica of `identity` at `version` (or newer).
    Stored {
        /// The actor.
        identity: ActorId,
        /// The version kept.
        version: SnapshotVersion,
    },
    /// The actor moved to the receiving node: its replicas from there are in `epoch`.
    Handover {
        /// The actor.
        identity: ActorId,
        /// The epoch the new host starts in.
        epoch: u64,
    },
}

/// The recovery service's frames: the snapshot bookkeeping's, and claims of keyed replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecoveryFrame {
    /// Between hosts and holders.
    Snapshot(SnapshotFrame),
    /// The key's next activation asks the holder for the replica of `identity`.
    Claim {
        /// The request number, for the reply.
        req: u64,
        /// The key's identity.
        identity: ActorId,
    },
    /// The answer to a claim.
    ClaimReply {
        /// The request answered.
        req: u64,
        /// What the holder did.
        answer: ClaimAnswer,
    },
    /// Re-create the actor of `replica` on the receiving node (its placement chose it).
    Restore(Replica),
}

/// What a holder did with a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimAnswer {
    /// The key runs again from the replica (or another activation won the key) here.
    Running(crate::proto::registry::record::ActorLocation),
    /// The replica's host is still in the holder's view, or another claim is under way:
    /// look again shortly.
    Retry,
    /// No replica: activate the key afresh.
    None,
}

impl RecoveryFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec fails only if serde reports an error, which these types never do.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a frame (exactly: no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard_exact(bytes).map_err(|e| match e {
            Inexact::Malformed(e) => format!("malformed recovery frame: {e}"),
            Inexact::Trailing(n) => format!("{n} trailing bytes after a recovery frame"),
        })
    }
}

/// What a holder answers the key's next activation ([`Snapshots::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Start from this replica, in epoch `replica.version.epoch + 1`; report
    /// [`Snapshots::handle_recreated`] once it runs, or [`Snapshots::claim_failed`].
    Replica(Replica),
    /// The replica's host is still in this node's view: it may still run the activation.
    HostLive,
    /// Another claim of it is under way.
    Claimed,
    /// No replica here.
    None,
}

impl SnapshotFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec fails only if serde reports an error, which these types never do.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a frame (exactly: no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard_exact(bytes).map_err(|e| match e {
            Inexact::Malformed(e) => format!("malformed snapshot frame: {e}"),
            Inexact::Trailing(n) => format!("{n} trailing bytes after a snapshot frame"),
        })
    }
}

/// What the state machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `frame` to node `to`.
    Send {
        /// The node.
        to: String,
        /// The frame.
        frame: SnapshotFrame,
    },
    /// Host: serialize the actor's state and report [`Snapshots::handle_snapshot`].
    TakeSnapshot {
        /// The actor.
        identity: ActorId,
    },
    /// Holder: re-create this actor where its placement says, from the replica's state (or
    /// `Default`), keeping its identity, in epoch `replica.version.epoch + 1`; then report
    /// [`Snapshots::host`] on the node it runs on.
    Recreate {
        /// The replica it starts from.
        replica: Replica,
    },
}

#[derive(Debug)]
struct Hosted {
    actor_type: ActorTypeId,
    key: Option<String>,
    names: Vec<String>,
    policy: RecoveryPolicy,
    version: SnapshotVersion,
    holders: Vec<String>,
    /// A message was handled since the last snapshot was taken.
    dirty: bool,
    /// A snapshot was asked for and not reported yet.
    in_flight: bool,
    /// Interval schedule: when the next snapshot may be taken.
    next_at: Option<Duration>,
    /// The newest version each holder confirmed keeping.
    confirmed: BTreeMap<String, SnapshotVersion>,
    /// A snapshot was stored at least once in this epoch.
    stored: bool,
}

#[derive(Debug)]
struct Held {
    replica: Replica,
    /// This node asked for the re-creation.
    recreating: bool,
}

/// Snapshots and replicas of one node.
#[derive(Debug)]
pub struct Snapshots {
    me: String,
    /// Members in the view (not marked down), this node included.
    live: BTreeSet<String>,
    hosted: BTreeMap<ActorId, Hosted>,
    held: BTreeMap<ActorId, Held>,
    /// Epochs handed over by the previous hosts of actors moving here.
    handed: BTreeMap<ActorId, u64>,
    out: std::collections::VecDeque<Output>,
}

/// What replicas are ranked by: a keyed activation's key (so its first holder is where
/// consistent hashing places the key once the host is gone), else the identity.
pub fn rank_key(identity: ActorId, key: Option<&str>) -> String {
    key.map_or_else(|| format!("r/{}", identity.0), str::to_owned)
}

/// The `n` holders of the replicas ranked by `rank` among `live` (the host excluded), by
/// rank: the same order [`ring::owner`] picks owners in.
pub fn holders_of(rank: &str, host: &str, live: &BTreeSet<String>, n: usize) -> Vec<String> {
    let mut ranked: Vec<&String> = live.iter().filter(|m| *m != host).collect();
    ranked.sort_by(|a, b| ring::score(rank, b).cmp(&ring::score(rank, a)).then_with(|| a.cmp(b)));
    ranked.into_iter().take(n).cloned().collect()
}

impl Snapshots {
    /// The snapshots of node `me`.
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            live: BTreeSet::from([me.to_owned()]),
            hosted: BTreeMap::new(),
            held: BTreeMap::new(),
            handed: BTreeMap::new(),
            out: std::collections::VecDeque::new(),
        }
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next deadline (interval snapshots).
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.hosted.values().filter(|h| h.dirty && !h.in_flight).filter_map(|h| h.next_at).min()
    }

    /// Replicas held here.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The version of the replica of `identity` held here.
    pub fn held_version(&self, identity: ActorId) -> Option<SnapshotVersion> {
        self.held.get(&identity).map(|h| h.replica.version)
    }

    /// The holders of a hosted actor's replicas.
    pub fn holders(&self, identity: ActorId) -> Option<&[String]> {
        self.hosted.get(&identity).map(|h| h.holders.as_slice())
    }

    /// Actors hosted here that keep replicas.
    pub fn hosted(&self) -> usize {
        self.hosted.len()
    }

    /// Host: actors whose latest state is not yet confirmed kept by every holder (a
    /// snapshot due, in flight, or not acknowledged).
    pub fn unconfirmed(&self) -> usize {
        self.hosted
            .values()
            .filter(|h| {
                h.policy.replicas > 0
                    && (h.dirty
                        || h.in_flight
                        || !h.stored
                        || h.holders.iter().any(|o| h.confirmed.get(o).is_none_or(|v| *v < h.version)))
            })
            .count()
    }

    /// Host: actor `identity` (a keyed activation of `key`) runs here now (started, moved
    /// in, or re-created) in `epoch` (or the one its previous host handed over, if later).
    pub fn host(
        &mut self,
        now: Duration,
        identity: ActorId,
        actor_type: ActorTypeId,
        key: Option<String>,
        policy: RecoveryPolicy,
        epoch: u64,
    ) {
        let epoch = epoch.max(self.handed.remove(&identity).unwrap_or(0));
        if policy.holders() == 0 {
            return;
        }
        let holders = holders_of(&rank_key(identity, key.as_deref()), &self.me, &self.live, policy.holders());
        let h = Hosted {
            actor_type,
            key,
            names: Vec::new(),
            policy,
            version: SnapshotVersion { epoch, seq: 0 },
            holders,
            dirty: false,
            in_flight: false,
            next_at: None,
            confirmed: BTreeMap::new(),
            stored: false,
        };
        self.hosted.insert(identity, h);
        self.replicate(now, identity);
    }

    /// Host: the actor handled a message.
    pub fn handle_handled(&mut self, now: Duration, identity: ActorId) {
        let Some(h) = self.hosted.get_mut(&identity) else { return };
        if h.policy.replicas == 0 {
            return;
        }
        h.dirty = true;
        match h.policy.schedule {
            SnapshotSchedule::EveryMessage => {
                if !h.in_flight {
                    self.take(identity);
                }
            }
            SnapshotSchedule::Every(interval) => {
                if h.next_at.is_none() {
                    h.next_at = Some(now + interval);
                }
            }
        }
    }

    /// Host: the state asked for with [`Output::TakeSnapshot`] (`None`: it could not be
    /// taken; the previous replica stays).
    pub fn handle_snapshot(&mut self, now: Duration, identity: ActorId, state: Option<(Format, Vec<u8>)>) {
        let Some(h) = self.hosted.get_mut(&identity) else { return };
        h.in_flight = false;
        if let Some(state) = state {
            h.version.seq += 1;
            self.store(identity, Some(state));
        }
        let Some(h) = self.hosted.get_mut(&identity) else { return };
        if h.dirty && h.policy.schedule == SnapshotSchedule::EveryMessage {
            self.take(identity);
        } else if let (true, SnapshotSchedule::Every(interval)) = (h.dirty, h.policy.schedule) {
            h.next_at = Some(now + interval);
        }
    }

    /// Host: the actor stopped normally or moved away: its replicas go.
    pub fn handle_left(&mut self, identity: ActorId) {
        let Some(h) = self.hosted.remove(&identity) else { return };
        let below = SnapshotVersion { epoch: h.version.epoch, seq: h.version.seq + 1 };
        for to in h.holders {
            self.out.push_back(Output::Send { to, frame: SnapshotFrame::Drop { identity, below } });
        }
    }

    /// Host: hosted actor `identity` is registered under `name` too: its replicas say so.
    pub fn handle_named(&mut self, now: Duration, identity: ActorId, name: &str) {
        let Some(h) = self.hosted.get_mut(&identity) else { return };
        if h.names.iter().any(|n| n == name) {
            return;
        }
        h.names.push(name.to_owned());
        if h.policy.replicas > 0 {
            h.dirty = true;
            if !h.in_flight {
                self.take(identity);
            }
        } else {
            self.replicate(now, identity);
        }
    }

    /// Host: the actor moved to node `to`: the holders drop its replicas, and `to` hosts it
    /// in the next epoch.
    pub fn handle_moved(&mut self, identity: ActorId, to: &str) {
        let Some(h) = self.hosted.remove(&identity) else { return };
        let below = SnapshotVersion { epoch: h.version.epoch + 1, seq: 0 };
        for holder in h.holders {
            self.out.push_back(Output::Send { to: holder, frame: SnapshotFrame::Drop { identity, below } });
        }
        let frame = SnapshotFrame::Handover { identity, epoch: below.epoch };
        self.out.push_back(Output::Send { to: to.to_owned(), frame });
    }

    /// Holder: the key's next activation asks for the replica of `identity` (see [`Claim`]).
    pub fn claim(&mut self, identity: ActorId) -> Claim {
        let Some(held) = self.held.get_mut(&identity) else { return Claim::None };
        if held.recreating {
            Claim::Claimed
        } else if self.live.contains(&held.replica.host) {
            Claim::HostLive
        } else {
            held.recreating = true;
            Claim::Replica(held.replica.clone())
        }
    }

    /// Holder: a claimed replica could not be used; it can be claimed again.
    pub fn claim_failed(&mut self, identity: ActorId) {
        if let Some(held) = self.held.get_mut(&identity) {
            held.recreating = false;
        }
    }

    /// Holder: the actor asked for with [`Output::Recreate`] (or claimed) runs again: the
    /// other holders drop the older epoch.
    pub fn handle_recreated(&mut self, identity: ActorId) {
        let Some(held) = self.held.remove(&identity) else { return };
        let below = SnapshotVersion { epoch: held.replica.version.epoch + 1, seq: 0 };
        for to in held.replica.holders.iter().filter(|h| **h != self.me) {
            self.out.push_back(Output::Send { to: to.clone(), frame: SnapshotFrame::Drop { identity, below } });
        }
    }

    /// Both roles: the members in the view (not marked down). Hosts move replicas to the
    /// new holders; holders re-create the actors of lost hosts they are first in line for.
    pub fn handle_view(&mut self, now: Duration, mut live: BTreeSet<String>) {
        live.insert(self.me.clone());
        self.live = live;
        let ids: Vec<ActorId> = self.hosted.keys().copied().collect();
        for identity in ids {
            let Some(h) = self.hosted.get_mut(&identity) else { continue };
            let rank = rank_key(identity, h.key.as_deref());
            let holders = holders_of(&rank, &self.me, &self.live, h.policy.holders());
            if holders == h.holders {
                continue;
            }
            let below = SnapshotVersion { epoch: h.version.epoch, seq: h.version.seq + 1 };
            // Former holders still in the view drop theirs; lost ones are gone anyway.
            for gone in h.holders.iter().filter(|o| !holders.contains(o) && self.live.contains(*o)) {
                self.out.push_back(Output::Send { to: gone.clone(), frame: SnapshotFrame::Drop { identity, below } });
            }
            h.holders = holders;
            self.replicate(now, identity);
        }
        for held in self.held.values_mut() {
            let r = &held.replica;
            // Keyed activations wait for their key's next activation to claim them.
            if held.recreating || r.key.is_some() || self.live.contains(&r.host) {
                continue;
            }
            if r.holders.iter().find(|h| self.live.contains(*h)) == Some(&self.me) {
                held.recreating = true;
                self.out.push_back(Output::Recreate { replica: r.clone() });
            }
        }
    }

    /// Holder: a frame from node `from`. A replica must come from its own host.
    pub fn handle_frame(&mut self, now: Duration, from: &str, frame: SnapshotFrame) -> Result<(), String> {
        match frame {
            SnapshotFrame::Store(replica) => {
                if replica.host != from {
                    return Err(format!("`{from}` sent a replica of an actor hosted by `{}`", replica.host));
                }
                if !replica.holders.contains(&self.me) {
                    return Err(format!("`{from}` sent a replica that does not list this node as a holder"));
                }
                let (identity, version) = (replica.identity, replica.version);
                match self.held.get(&identity) {
                    Some(held) if held.replica.version >= version => {}
                    _ => {
                        self.held.insert(identity, Held { replica, recreating: false });
                    }
                }
                let frame = SnapshotFrame::Stored { identity, version };
                self.out.push_back(Output::Send { to: from.to_owned(), frame });
            }
            SnapshotFrame::Drop { identity, below } => {
                // Its host drops older replicas; anyone may retire an older epoch (a holder
                // that re-created the actor). A duplicate's host cannot drop the replica of
                // the key's other activation in the same epoch.
                let applies = |h: &Held| {
                    (h.replica.host == from || below.epoch > h.replica.version.epoch) && h.replica.version < below
                };
                if self.held.get(&identity).is_some_and(|h| applies(h) && !h.recreating) {
                    self.held.remove(&identity);
                }
            }
            SnapshotFrame::Stored { identity, version } => {
                if let Some(h) = self.hosted.get_mut(&identity) {
                    let v = h.confirmed.entry(from.to_owned()).or_default();
                    *v = (*v).max(version);
                }
            }
            SnapshotFrame::Handover { identity, epoch } => match self.hosted.get_mut(&identity) {
                Some(h) if h.version.epoch < epoch => {
                    h.version = SnapshotVersion { epoch, seq: 0 };
                    self.replicate(now, identity);
                }
                Some(_) => {}
                None => {
                    let e = self.handed.entry(identity).or_default();
                    *e = (*e).max(epoch);
                }
            },
        }
        Ok(())
    }

    fn take(&mut self, identity: ActorId) {
        if let Some(h) = self.hosted.get_mut(&identity) {
            h.dirty = false;
            h.in_flight = true;
            h.next_at = None;
            self.out.push_back(Output::TakeSnapshot { identity });
        }
    }

    /// Sends the holders what they need: a fresh snapshot, or the descriptor.
    fn replicate(&mut self, _now: Duration, identity: ActorId) {
        let Some(h) = self.hosted.get(&identity) else { return };
        if h.policy.replicas > 0 {
            if !h.in_flight {
                self.take(identity);
            } else if let Some(h) = self.hosted.get_mut(&identity) {
                // The snapshot in flight goes to the old holders: take another after it.
                h.dirty = true;
            }
            return;
        }
        // A descriptor: each one sent supersedes the last (its names may have changed).
        if let Some(h) = self.hosted.get_mut(&identity) {
            h.version.seq += 1;
        }
        self.store(identity, None);
    }

    /// Sends every holder of hosted `identity` its current replica, with `state`.
    fn store(&mut self, identity: ActorId, state: Option<(Format, Vec<u8>)>) {
        let Some(h) = self.hosted.get_mut(&identity) else { return };
        h.stored = true;
        let h = &*h;
        let replica = Replica {
            identity,
            actor_type: h.actor_type,
            key: h.key.clone(),
            names: h.names.clone(),
            host: self.me.clone(),
            version: h.version,
            holders: h.holders.clone(),
            state,
        };
        for to in &h.holders {
            self.out.push_back(Output::Send { to: to.clone(), frame: SnapshotFrame::Store(replica.clone()) });
        }
    }

    /// Host: takes the interval snapshots that are due.
    pub fn handle_timeout(&mut self, now: Duration) {
        let due: Vec<ActorId> = self
            .hosted
            .iter()
            .filter(|(_, h)| h.dirty && !h.in_flight && h.next_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for identity in due {
            self.take(identity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ActorId = ActorId(77);
    const TYPE: ActorTypeId = ActorTypeId(3);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn drain(s: &mut Snapshots) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    /// A cluster of snapshot tables; frames are delivered until none is left.
    struct Net {
        nodes: BTreeMap<String, Snapshots>,
        /// Non-frame outputs, by node.
        seen: Vec<(String, Output)>,
    }

    impl Net {
        fn new(names: &[&str]) -> Self {
            let mut nodes = BTreeMap::new();
            for n in names {
                let mut s = Snapshots::new(n);
                s.handle_view(ms(0), members(names));
                nodes.insert(n.to_string(), s);
            }
            Self { nodes, seen: Vec::new() }
        }

        fn node(&mut self, name: &str) -> &mut Snapshots {
            self.nodes.get_mut(name).expect("node")
        }

        fn run(&mut self, now: Duration) {
            loop {
                let mut frames = Vec::new();
                for (name, s) in &mut self.nodes {
                    for o in drain(s) {
                        match o {
                            Output::Send { to, frame } => frames.push((name.clone(), to, frame)),
                            other => self.seen.push((name.clone(), other)),
                        }
                    }
                }
                if frames.is_empty() {
                    return;
                }
                for (from, to, frame) in frames {
                    if let Some(s) = self.nodes.get_mut(&to) {
                        s.handle_frame(now, &from, frame).expect("valid frame");
                    }
                }
            }
        }

        fn take(&mut self) -> Vec<(String, Output)> {
            std::mem::take(&mut self.seen)
        }

        fn kill(&mut self, now: Duration, name: &str) {
            self.nodes.remove(name);
            let live: BTreeSet<String> = self.nodes.keys().cloned().collect();
            for s in self.nodes.values_mut() {
                s.handle_view(now, live.clone());
            }
        }
    }

    fn policy(replicas: usize, schedule: SnapshotSchedule) -> RecoveryPolicy {
        RecoveryPolicy { restart: true, replicas, schedule }
    }

    #[test]
    fn holders_are_ranked_the_same_everywhere_and_exclude_the_host() {
        let live = members(&["n1", "n2", "n3", "n4", "n5"]);
        let h = holders_of(&rank_key(A, None), "n1", &live, 2);
        assert_eq!(h.len(), 2);
        assert!(!h.contains(&"n1".to_string()));
        assert_eq!(h, holders_of(&rank_key(A, None), "n1", &live, 2));
        // Adding a member changes at most the holders it outranks.
        let more = members(&["n1", "n2", "n3", "n4", "n5", "n6"]);
        let h2 = holders_of(&rank_key(A, None), "n1", &more, 2);
        assert!(h2.iter().filter(|m| !h.contains(m)).count() <= 1, "{h:?} -> {h2:?}");
    }

    #[test]
    fn every_message_is_snapshotted_to_every_holder_and_the_first_live_holder_recreates() {
        let mut net = Net::new(&["n1", "n2", "n3", "n4"]);
        net.node("n1").host(ms(0), A, TYPE, None, policy(2, SnapshotSchedule::EveryMessage), 0);
        let holders = net.node("n1").holders(A).expect("hosted").to_vec();
        assert_eq!(drain(net.node("n1")), vec![Output::TakeSnapshot { identity: A }]);
        net.node("n1").handle_snapshot(ms(1), A, Some((Format::Postcard, vec![0])));
        // Three messages while a snapshot is in flight make one more snapshot, not three.
        net.node("n1").handle_handled(ms(2), A);
        assert_eq!(drain(net.node("n1")).iter().filter(|o| matches!(o, Output::TakeSnapshot { .. })).count(), 1);
        net.node("n1").handle_handled(ms(3), A);
        net.node("n1").handle_handled(ms(4), A);
        assert!(drain(net.node("n1")).iter().all(|o| !matches!(o, Output::TakeSnapshot { .. })));
        net.node("n1").handle_snapshot(ms(5), A, Some((Format::Postcard, vec![1])));
        assert_eq!(drain(net.node("n1")).iter().filter(|o| matches!(o, Output::TakeSnapshot { .. })).count(), 1);
        net.node("n1").handle_snapshot(ms(6), A, Some((Format::Postcard, vec![3])));
        assert_eq!(net.node("n1").unconfirmed(), 1, "stores sent, not yet acknowledged");
        net.run(ms(6));
        assert_eq!(net.node("n1").unconfirmed(), 0, "every holder acknowledged the latest snapshot");
        for h in &holders {
            assert_eq!(net.node(h).held_version(A), Some(SnapshotVersion { epoch: 0, seq: 3 }), "{h}");
        }
        net.kill(ms(10), "n1");
        net.run(ms(10));
        let recreated = net.take();
        assert_eq!(recreated.len(), 1, "exactly one holder re-creates: {recreated:?}");
        let (who, Output::Recreate { replica }) = &recreated[0] else { panic!("{recreated:?}") };
        assert_eq!(who, &holders[0]);
        assert_eq!(replica.state, Some((Format::Postcard, vec![3])), "the latest snapshot");
        // It runs again (on n4, say) in epoch 1; the other holder drops the old epoch.
        let who = who.clone();
        net.node(&who).handle_recreated(A);
        net.node("n4").host(ms(11), A, TYPE, None, policy(2, SnapshotSchedule::EveryMessage), 1);
        net.node("n4").handle_snapshot(ms(12), A, Some((Format::Postcard, vec![3])));
        net.run(ms(12));
        let now_holders = net.node("n4").holders(A).expect("hosted").to_vec();
        for name in ["n2", "n3", "n4"] {
            let v = net.node(name).held_version(A);
            if now_holders.contains(&name.to_string()) {
                assert_eq!(v, Some(SnapshotVersion { epoch: 1, seq: 1 }), "{name}");
            } else {
                assert_eq!(v, None, "{name} dropped the old epoch");
            }
        }
    }

    #[test]
    fn if_the_first_holder_is_lost_too_the_next_one_recreates() {
        let mut net = Net::new(&["n1", "n2", "n3", "n4"]);
        net.node("n1").host(ms(0), A, TYPE, None, policy(2, SnapshotSchedule::EveryMessage), 0);
        drain(net.node("n1"));
        net.node("n1").handle_snapshot(ms(1), A, Some((Format::Postcard, vec![9])));
        net.run(ms(1));
        let holders = net.node("n1").holders(A).expect("hosted").to_vec();
        // Host and first holder go at once.
        net.nodes.remove("n1");
        net.kill(ms(5), &holders[0]);
        net.run(ms(5));
        let recreated = net.take();
        assert!(matches!(&recreated[..], [(who, Output::Recreate { .. })] if *who == holders[1]), "{recreated:?}");
    }

    #[test]
    fn a_descriptor_restarts_from_default_and_recovery_none_keeps_nothing() {
        let mut net = Net::new(&["n1", "n2", "n3"]);
        net.node("n1").host(ms(0), A, TYPE, None, policy(0, SnapshotSchedule::EveryMessage), 0);
        net.node("n1").handle_handled(ms(1), A);
        net.run(ms(1));
        assert!(net.take().is_empty(), "no snapshots without replicas");
        let holder = net.node("n1").holders(A).expect("hosted")[0].clone();
        assert_eq!(net.node(&holder).held(), 1);
        net.kill(ms(2), "n1");
        net.run(ms(2));
        let recreated = net.take();
        assert!(matches!(&recreated[..], [(_, Output::Recreate { replica })] if replica.state.is_none()));

        let mut net = Net::new(&["n1", "n2"]);
        let none = RecoveryPolicy { restart: false, replicas: 3, schedule: SnapshotSchedule::EveryMessage };
        net.node("n1").host(ms(0), ActorId(1), TYPE, None, none, 0);
        net.run(ms(0));
        assert_eq!(net.node("n2").held(), 0);
        assert!(net.take().is_empty());
    }

    #[test]
    fn interval_snapshots_only_when_something_was_handled() {
        let mut s = Snapshots::new("n1");
        s.handle_view(ms(0), members(&["n1", "n2"]));
        s.host(ms(0), A, TYPE, None, policy(1, SnapshotSchedule::Every(ms(100))), 0);
        drain(&mut s);
        s.handle_snapshot(ms(1), A, Some((Format::Postcard, vec![])));
        drain(&mut s);
        assert_eq!(s.poll_timeout(), None, "nothing handled: nothing to take");
        s.handle_handled(ms(10), A);
        s.handle_handled(ms(20), A);
        assert_eq!(s.poll_timeout(), Some(ms(110)));
        s.handle_timeout(ms(110));
        assert_eq!(drain(&mut s), vec![Output::TakeSnapshot { identity: A }]);
        s.handle_snapshot(ms(111), A, Some((Format::Postcard, vec![])));
        assert!(matches!(&drain(&mut s)[..], [Output::Send { .. }]));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_normal_stop_drops_the_replicas_and_suspicion_alone_recreates_nothing() {
        let mut net = Net::new(&["n1", "n2", "n3"]);
        net.node("n1").host(ms(0), A, TYPE, None, policy(1, SnapshotSchedule::EveryMessage), 0);
        drain(net.node("n1"));
        net.node("n1").handle_snapshot(ms(1), A, Some((Format::Postcard, vec![1])));
        net.run(ms(1));
        let holder = net.node("n1").holders(A).expect("hosted")[0].clone();
        assert_eq!(net.node(&holder).held(), 1);
        // A view that still has n1 (suspected, not down): nothing happens.
        net.node(&holder).handle_view(ms(2), members(&["n1", "n2", "n3"]));
        net.run(ms(2));
        assert!(net.take().is_empty());
        net.node("n1").handle_left(A);
        net.run(ms(3));
        assert_eq!(net.node(&holder).held(), 0);
        net.kill(ms(4), "n1");
        net.run(ms(4));
        assert!(net.take().is_empty(), "a stopped actor is not re-created");
    }

    #[test]
    fn holders_follow_the_view_and_replicas_only_come_from_their_host() {
        let mut net = Net::new(&["n1", "n2", "n3", "n4", "n5"]);
        net.node("n1").host(ms(0), A, TYPE, None, policy(1, SnapshotSchedule::EveryMessage), 0);
        drain(net.node("n1"));
        net.node("n1").handle_snapshot(ms(1), A, Some((Format::Postcard, vec![1])));
        net.run(ms(1));
        let first = net.node("n1").holders(A).expect("hosted")[0].clone();
        // The holder leaves the view: the host picks the next one and sends it a snapshot.
        net.kill(ms(2), &first);
        let out = drain(net.node("n1"));
        assert_eq!(out, vec![Output::TakeSnapshot { identity: A }]);
        net.node("n1").handle_snapshot(ms(3), A, Some((Format::Postcard, vec![2])));
        net.run(ms(3));
        let second = net.node("n1").holders(A).expect("hosted")[0].clone();
        assert_ne!(first, second);
        assert_eq!(net.node(&second).held_version(A), Some(SnapshotVersion { epoch: 0, seq: 2 }));
        // A replica sent by another node than its host is refused.
        let forged = Replica {
            identity: ActorId(5),
            actor_type: TYPE,
            key: None,
            names: Vec::new(),
            host: "n1".into(),
            version: SnapshotVersion::default(),
            holders: vec![second.clone()],
            state: None,
        };
        let third = ["n2", "n3", "n4", "n5"].into_iter().find(|n| *n != second && *n != first).expect("another");
        assert!(net.node(&second).handle_frame(ms(4), third, SnapshotFrame::Store(forged)).is_err());
    }

    #[test]
    fn a_keyed_replica_waits_on_the_keys_next_owner_for_its_next_activation() {
        let names = ["n1", "n2", "n3", "n4"];
        let mut net = Net::new(&names);
        let key = "cart-7".to_owned();
        // Hosted on the key's owner, as consistent hashing places it.
        let owner = ring::owner(&key, names).expect("owner").to_owned();
        net.node(&owner).host(ms(0), A, TYPE, Some(key.clone()), policy(1, SnapshotSchedule::EveryMessage), 0);
        drain(net.node(&owner));
        net.node(&owner).handle_snapshot(ms(1), A, Some((Format::Postcard, vec![4])));
        net.run(ms(1));
        let holder = net.node(&owner).holders(A).expect("hosted")[0].clone();
        let rest: Vec<&str> = names.iter().copied().filter(|n| *n != owner).collect();
        assert_eq!(ring::owner(&key, rest.iter().copied()), Some(holder.as_str()), "the holder is the next owner");
        assert_eq!(net.node(&holder).claim(A), Claim::HostLive, "its host still runs it");
        net.kill(ms(2), &owner);
        net.run(ms(2));
        assert!(net.take().is_empty(), "keyed activations are not re-created eagerly");
        let Claim::Replica(replica) = net.node(&holder).claim(A) else { panic!("a replica") };
        assert_eq!(replica.state, Some((Format::Postcard, vec![4])));
        assert_eq!(net.node(&holder).claim(A), Claim::Claimed, "one claim at a time");
        net.node(&holder).claim_failed(A);
        assert!(matches!(net.node(&holder).claim(A), Claim::Replica(_)), "a failed claim can be retried");
        net.node(&holder).handle_recreated(A);
        assert_eq!(net.node(&holder).claim(A), Claim::None);
    }

    #[test]
    fn a_move_hands_the_next_epoch_over_whatever_order_the_frames_arrive_in() {
        let mut net = Net::new(&["n1", "n2", "n3", "n4"]);
        let p = policy(3, SnapshotSchedule::EveryMessage);
        net.node("n1").host(ms(0), A, TYPE, None, p, 0);
        drain(net.node("n1"));
        net.node("n1").handle_snapshot(ms(1), A, Some((Format::Postcard, vec![1])));
        net.run(ms(1));
        // n1 moves it to n2; n2 starts hosting before the handover reaches it.
        net.node("n1").handle_moved(A, "n2");
        let from_n1 = drain(net.node("n1"));
        net.node("n2").host(ms(2), A, TYPE, None, p, 0);
        drain(net.node("n2"));
        net.node("n2").handle_snapshot(ms(3), A, Some((Format::Postcard, vec![2])));
        net.run(ms(3));
        for o in from_n1 {
            let Output::Send { to, frame } = o else { panic!("{o:?}") };
            net.node(&to).handle_frame(ms(4), "n1", frame).expect("valid");
        }
        net.run(ms(4));
        drain(net.node("n2"));
        net.node("n2").handle_snapshot(ms(5), A, Some((Format::Postcard, vec![3])));
        net.run(ms(5));
        for h in net.node("n2").holders(A).expect("hosted").to_vec() {
            assert_eq!(net.node(&h).held_version(A), Some(SnapshotVersion { epoch: 1, seq: 1 }), "{h}");
        }
        // A handover that arrives before the actor does applies when it is hosted.
        let mut s = Snapshots::new("n3");
        s.handle_frame(ms(0), "n1", SnapshotFrame::Handover { identity: A, epoch: 4 }).expect("valid");
        s.handle_view(ms(0), members(&["n1", "n3"]));
        s.host(ms(1), A, TYPE, None, p, 0);
        s.handle_snapshot(ms(2), A, Some((Format::Postcard, vec![])));
        let stored: Vec<SnapshotVersion> = drain(&mut s)
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { frame: SnapshotFrame::Store(r), .. } => Some(r.version),
                _ => None,
            })
            .collect();
        assert_eq!(stored, vec![SnapshotVersion { epoch: 4, seq: 1 }]);
    }

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let frame = SnapshotFrame::Drop { identity: A, below: SnapshotVersion { epoch: 2, seq: 9 } };
        assert_eq!(SnapshotFrame::decode(&frame.encode()), Ok(frame));
        assert!(SnapshotFrame::decode(&[0xff; 4]).is_err());
    }
}
