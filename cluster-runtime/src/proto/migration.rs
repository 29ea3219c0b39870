//! The live-migration handshake, pure: one state machine per node that plays both sides.
//!
//! **Source** (the node the actor runs on), for `migrate(actor, to)`:
//!
//! 1. [`Output::Hold`]: the driver stops delivering new messages to the actor and buffers
//!    them, and reports [`Migrations::handle_drained`] once the handler in progress is done.
//! 2. [`Output::Snapshot`]: the driver serializes the actor's state (the actor may prepare or
//!    refuse) and reports [`Migrations::handle_snapshot`].
//! 3. An `Offer` with the state goes to the target, which builds the actor *held* (not yet
//!    taking messages) and answers `Built` with its new location, or `Refused`.
//! 4. [`Output::Swap`]: the driver swaps the directory entry from the old location to the
//!    new one only if it still names the old one, and reports [`Migrations::handle_swapped`].
//! 5. Swapped: [`Output::Moved`] tells the driver to forward the buffered messages to the
//!    new location in order, then send the target `Commit` on the same link (so everything
//!    forwarded is there before its actor takes messages), forward stragglers for the grace
//!    period, and stop the old actor.
//!
//! Any failure before the swap (the target refuses, is down, or does not answer by the
//! deadline; the actor refuses; the directory names another location) ends in
//! [`Output::Release`]: the actor keeps running at the source and gets the buffered messages,
//! and an `Abort` tells the target to drop what it built. Once the swap is asked for, the
//! outcome is the directory's: the deadline no longer applies.
//!
//! **Target**: builds what is offered ([`Output::Build`], reported with
//! [`Migrations::handle_built`]), keeps it held until `Commit` ([`Output::Activate`]) or
//! `Abort` ([`Output::Discard`]). If neither comes by its deadline (the source died, the link
//! dropped) it does not guess: [`Output::Verify`] asks the driver to look the actor up, and
//! [`Migrations::handle_verified`] activates it if the directory names it, discards it
//! otherwise. So an actor is never lost between the two nodes, and never runs on both.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::error::MigrationError;
use crate::format::{postcard_exact, Format, Inexact};
use crate::ids::{ActorId, ActorTypeId, LocalActorId};
use crate::proto::registry::record::{ActorLocation, DirKey, Record};
use crate::proto::timer::TimerTable;

/// Identifies one migration (chosen by its source, unique there).
pub type MigrationId = u64;

/// The frames of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationFrame {
    /// Source → target: build this actor from its state, held.
    Offer {
        /// The migration.
        id: MigrationId,
        /// The actor's identity (kept across the move).
        actor: ActorId,
        /// Its type.
        actor_type: ActorTypeId,
        /// The state's format.
        format: Format,
        /// The serialized state.
        state: Vec<u8>,
        /// The directory keys the actor is registered under (its identity, names, key): the
        /// records a target that lost its source takes over once the directory names it.
        keys: Vec<DirKey>,
    },
    /// Target → source: built, held, at this location.
    Built {
        /// The migration.
        id: MigrationId,
        /// Where the actor now is (held until `Commit`).
        location: ActorLocation,
    },
    /// Target → source: not built.
    Refused {
        /// The migration.
        id: MigrationId,
        /// Why.
        reason: String,
    },
    /// Source → target: the directory names the new location (these records, which the
    /// target writes from now on); take messages.
    Commit {
        /// The migration.
        id: MigrationId,
        /// The actor's directory records, now naming the target.
        records: Vec<(DirKey, Record)>,
    },
    /// Source → target: the migration failed; drop what was built.
    Abort {
        /// The migration.
        id: MigrationId,
    },
    /// Any node → the node an actor runs on: move it to `to`.
    Request {
        /// The asker's request number.
        req: u64,
        /// The actor, on the asked node.
        actor: LocalActorId,
        /// Its identity, as the asker knows it.
        identity: ActorId,
        /// The node to move it to.
        to: String,
    },
    /// The answer to a `Request`: where the actor runs now, or why it did not move.
    Reply {
        /// The request answered.
        req: u64,
        /// The outcome.
        result: Result<ActorLocation, MigrationError>,
    },
}

impl MigrationFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding into a Vec fails only if serde reports an error, which these types never do.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a frame (exactly: no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard_exact(bytes).map_err(|e| match e {
            Inexact::Malformed(e) => format!("malformed migration frame: {e}"),
            Inexact::Trailing(n) => format!("{n} trailing bytes after a migration frame"),
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
        frame: MigrationFrame,
    },
    /// Source: buffer new messages for `actor`; report when its handler in progress is done.
    Hold {
        /// The migration.
        id: MigrationId,
        /// The actor (local id at the source).
        actor: LocalActorId,
    },
    /// Source: serialize `actor`'s state (it may refuse).
    Snapshot {
        /// The migration.
        id: MigrationId,
        /// The actor.
        actor: LocalActorId,
    },
    /// Source: swap the directory entry of `identity` from `from` to `to`, only if it still
    /// names `from`.
    Swap {
        /// The migration.
        id: MigrationId,
        /// The actor's identity.
        identity: ActorId,
        /// The old location.
        from: ActorLocation,
        /// The new one.
        to: ActorLocation,
    },
    /// Source: the move is done. Forward the buffered messages to `to` in order, then send
    /// `MigrationFrame::Commit { id }` to `to.node`; forward stragglers for the grace period;
    /// stop the old actor.
    Moved {
        /// The migration.
        id: MigrationId,
        /// The actor at the source.
        actor: LocalActorId,
        /// Its new location.
        to: ActorLocation,
    },
    /// Source: the move failed; deliver the buffered messages to `actor` and let it run.
    Release {
        /// The migration.
        id: MigrationId,
        /// The actor.
        actor: LocalActorId,
        /// Why.
        error: MigrationError,
    },
    /// Target: build this actor from `state`, held, and report its local id.
    Build {
        /// The source.
        from: String,
        /// The migration (at the source).
        id: MigrationId,
        /// The identity it keeps.
        identity: ActorId,
        /// Its type.
        actor_type: ActorTypeId,
        /// The state's format.
        format: Format,
        /// The state.
        state: Vec<u8>,
    },
    /// Target: the built actor takes messages now, and this node writes its records.
    Activate {
        /// The actor.
        actor: LocalActorId,
        /// The identity it keeps.
        identity: ActorId,
        /// Its directory records (from the source's commit, or those the directory named
        /// when it was asked instead: see [`Output::Verify`]).
        records: Vec<(DirKey, Record)>,
        /// The keys it was registered under at the source (a keyed activation's key whose
        /// record is not among `records` is for the target to register again).
        keys: Vec<DirKey>,
    },
    /// Target: stop the built actor without it ever taking a message.
    Discard {
        /// The actor.
        actor: LocalActorId,
    },
    /// Target: the source went quiet; look `identity` up and report whether the directory
    /// names `location`, with the records of `keys` that name it.
    Verify {
        /// The source.
        from: String,
        /// The migration.
        id: MigrationId,
        /// The identity.
        identity: ActorId,
        /// The built actor's location.
        location: ActorLocation,
        /// The keys the actor was registered under at the source.
        keys: Vec<DirKey>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Draining,
    Snapshotting,
    Offered,
    Swapping,
}

#[derive(Debug)]
struct Outgoing {
    actor: LocalActorId,
    identity: ActorId,
    actor_type: ActorTypeId,
    from: ActorLocation,
    to: String,
    phase: Phase,
    /// The target's location for the actor, once built.
    built: Option<ActorLocation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    Building,
    Held(LocalActorId),
    Verifying(LocalActorId),
}

#[derive(Debug)]
struct Incoming {
    identity: ActorId,
    /// The keys it was registered under at the source.
    keys: Vec<DirKey>,
    state: Arrival,
    location: Option<ActorLocation>,
    /// An `Abort` came while building.
    aborted: bool,
    /// Until when a directory that does not name the arrival yet may still do so (the
    /// source's swap can be on its way): it is asked again until then.
    verify_until: Duration,
}

/// How long a target that lost its source waits between asking the directory.
const REVERIFY: Duration = Duration::from_millis(250);

/// Timer keys: a source's migration, or a target's arrival (by source and id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Out(MigrationId),
    In(String, MigrationId),
}

/// The migrations of one node, both as source and as target.
#[derive(Debug)]
pub struct Migrations {
    /// How long a source waits for the target before giving up (before the swap).
    timeout: Duration,
    outgoing: BTreeMap<MigrationId, Outgoing>,
    incoming: BTreeMap<(String, MigrationId), Incoming>,
    timers: TimerTable<Due>,
    out: std::collections::VecDeque<Output>,
}

impl Migrations {
    /// A node's migrations, with a source waiting at most `timeout` for its target (the
    /// target waits twice as long for the source's verdict before verifying).
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
            timers: TimerTable::new(),
            out: std::collections::VecDeque::new(),
        }
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.next_deadline()
    }

    /// True if `actor` is being migrated away from this node.
    pub fn is_moving(&self, actor: LocalActorId) -> bool {
        self.outgoing.values().any(|o| o.actor == actor)
    }

    /// Migrations in progress here, as source and as target.
    pub fn in_progress(&self) -> (usize, usize) {
        (self.outgoing.len(), self.incoming.len())
    }

    /// Source: starts moving `actor` (identity `identity`, at `from`) to node `to`.
    /// `Err(InProgress)` if it is already moving.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        now: Duration,
        id: MigrationId,
        actor: LocalActorId,
        identity: ActorId,
        actor_type: ActorTypeId,
        from: ActorLocation,
        to: &str,
    ) -> Result<(), MigrationError> {
        if self.is_moving(actor) {
            return Err(MigrationError::InProgress);
        }
        self.outgoing.insert(
            id,
            Outgoing { actor, identity, actor_type, from, to: to.to_owned(), phase: Phase::Draining, built: None },
        );
        self.timers.set(Due::Out(id), Some(now + self.timeout));
        self.out.push_back(Output::Hold { id, actor });
        Ok(())
    }

    /// Source: the actor's handler in progress is done; nothing new reaches it.
    pub fn handle_drained(&mut self, _now: Duration, id: MigrationId) {
        let Some(o) = self.outgoing.get_mut(&id) else { return };
        if o.phase == Phase::Draining {
            o.phase = Phase::Snapshotting;
            self.out.push_back(Output::Snapshot { id, actor: o.actor });
        }
    }

    /// Source: the actor's serialized state, or why it could not be taken, and the
    /// directory keys it is registered under.
    pub fn handle_snapshot(
        &mut self,
        _now: Duration,
        id: MigrationId,
        state: Result<(Format, Vec<u8>), String>,
        keys: Vec<DirKey>,
    ) {
        let Some(o) = self.outgoing.get_mut(&id) else { return };
        if o.phase != Phase::Snapshotting {
            return;
        }
        match state {
            Ok((format, state)) => {
                o.phase = Phase::Offered;
                let frame =
                    MigrationFrame::Offer { id, actor: o.identity, actor_type: o.actor_type, format, state, keys };
                self.out.push_back(Output::Send { to: o.to.clone(), frame });
            }
            Err(reason) => self.fail(id, MigrationError::ActorRefused(reason)),
        }
    }

    /// Source: the directory's answer to [`Output::Swap`]: true if it now names the new
    /// location, false if it named something else than the old one.
    pub fn handle_swapped(&mut self, _now: Duration, id: MigrationId, swapped: bool) {
        let Some(o) = self.outgoing.get(&id) else { return };
        if o.phase != Phase::Swapping {
            return;
        }
        if !swapped {
            self.fail(id, MigrationError::Superseded);
            return;
        }
        let Some(o) = self.outgoing.remove(&id) else { return };
        self.timers.set(Due::Out(id), None);
        let to = o.built.unwrap_or_else(|| o.from.clone());
        self.out.push_back(Output::Moved { id, actor: o.actor, to });
    }

    /// Either side: node `node` is down or its link dropped. Migrations to it that have not
    /// reached the swap fail; arrivals from it are verified.
    pub fn handle_node_lost(&mut self, now: Duration, node: &str) {
        let lost: Vec<MigrationId> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.to == node && o.phase != Phase::Swapping)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.fail(id, MigrationError::TargetUnavailable(node.to_owned()));
        }
        let arrivals: Vec<(String, MigrationId)> = self.incoming.keys().filter(|(n, _)| n == node).cloned().collect();
        for key in arrivals {
            self.expire_arrival(now, key);
        }
    }

    /// Both sides: deadlines.
    pub fn handle_timeout(&mut self, now: Duration) {
        for due in self.timers.take_expired(now) {
            match due {
                Due::Out(id) => {
                    let to = match self.outgoing.get(&id) {
                        Some(o) if o.phase != Phase::Swapping => o.to.clone(),
                        _ => continue,
                    };
                    self.fail(id, MigrationError::TargetUnavailable(to));
                }
                Due::In(node, id) => self.expire_arrival(now, (node, id)),
            }
        }
    }

    /// Both sides: a frame from node `from`.
    pub fn handle_frame(&mut self, now: Duration, from: &str, frame: MigrationFrame) {
        match frame {
            MigrationFrame::Offer { id, actor, actor_type, format, state, keys } => {
                let key = (from.to_owned(), id);
                if self.incoming.contains_key(&key) {
                    return;
                }
                self.incoming.insert(
                    key.clone(),
                    Incoming {
                        identity: actor,
                        keys,
                        state: Arrival::Building,
                        location: None,
                        aborted: false,
                        // The source swaps within its timeout, and the directory answers it
                        // within about as long again.
                        verify_until: now + self.timeout * 3,
                    },
                );
                self.timers.set(Due::In(key.0, id), Some(now + self.timeout * 2));
                self.out.push_back(Output::Build {
                    from: from.to_owned(),
                    id,
                    identity: actor,
                    actor_type,
                    format,
                    state,
                });
            }
            MigrationFrame::Built { id, location } => {
                let Some(o) = self.outgoing.get_mut(&id) else {
                    // A migration that already failed here: the target must drop its copy.
                    self.out.push_back(Output::Send { to: from.to_owned(), frame: MigrationFrame::Abort { id } });
                    return;
                };
                if o.to != from || o.phase != Phase::Offered {
                    return;
                }
                o.phase = Phase::Swapping;
                o.built = Some(location.clone());
                self.out.push_back(Output::Swap { id, identity: o.identity, from: o.from.clone(), to: location });
            }
            MigrationFrame::Refused { id, reason } => {
                if self.outgoing.get(&id).is_some_and(|o| o.to == from && o.phase == Phase::Offered) {
                    self.fail(id, MigrationError::TargetRefused { node: from.to_owned(), reason });
                }
            }
            MigrationFrame::Commit { id, records } => {
                let key = (from.to_owned(), id);
                match self.incoming.get(&key).map(|i| (i.state, i.identity)) {
                    Some((Arrival::Held(actor) | Arrival::Verifying(actor), identity)) => {
                        let keys = self.incoming.remove(&key).map(|i| i.keys).unwrap_or_default();
                        self.timers.set(Due::In(key.0, id), None);
                        self.out.push_back(Output::Activate { actor, identity, records, keys });
                    }
                    Some((Arrival::Building, _)) | None => {}
                }
            }
            // Handled by the driver, which starts migrations and answers API calls.
            MigrationFrame::Request { .. } | MigrationFrame::Reply { .. } => {}
            MigrationFrame::Abort { id } => {
                let key = (from.to_owned(), id);
                match self.incoming.get(&key).map(|i| i.state) {
                    Some(Arrival::Held(actor) | Arrival::Verifying(actor)) => {
                        self.incoming.remove(&key);
                        self.timers.set(Due::In(key.0, id), None);
                        self.out.push_back(Output::Discard { actor });
                    }
                    Some(Arrival::Building) => {
                        if let Some(i) = self.incoming.get_mut(&key) {
                            i.aborted = true;
                        }
                    }
                    None => {}
                }
            }
        }
    }

    /// Target: the offered actor was built (held) at `location`, or could not be.
    pub fn handle_built(&mut self, _now: Duration, from: &str, id: MigrationId, built: Result<ActorLocation, String>) {
        let key = (from.to_owned(), id);
        let Some(i) = self.incoming.get_mut(&key) else {
            // Expired while building: nobody will commit it.
            if let Ok(location) = built {
                self.out.push_back(Output::Discard { actor: location.actor });
            }
            return;
        };
        match built {
            Ok(location) if i.aborted => {
                self.incoming.remove(&key);
                self.timers.set(Due::In(key.0, id), None);
                self.out.push_back(Output::Discard { actor: location.actor });
            }
            Ok(location) => {
                i.state = Arrival::Held(location.actor);
                i.location = Some(location.clone());
                self.out.push_back(Output::Send { to: from.to_owned(), frame: MigrationFrame::Built { id, location } });
            }
            Err(reason) => {
                self.incoming.remove(&key);
                self.timers.set(Due::In(key.0, id), None);
                self.out.push_back(Output::Send { to: from.to_owned(), frame: MigrationFrame::Refused { id, reason } });
            }
        }
    }

    /// Target: whether the directory names the built actor's location (after
    /// [`Output::Verify`]): `Some` with the records that name it, `None` if it does not.
    pub fn handle_verified(
        &mut self,
        now: Duration,
        from: &str,
        id: MigrationId,
        named: Option<Vec<(DirKey, Record)>>,
    ) {
        let key = (from.to_owned(), id);
        let Some((Arrival::Verifying(actor), identity, until)) =
            self.incoming.get(&key).map(|i| (i.state, i.identity, i.verify_until))
        else {
            return;
        };
        if named.is_none() && now < until {
            // The source's swap may still land (or its commit still come): ask again later.
            self.timers.set(Due::In(key.0, id), Some(now + REVERIFY));
            return;
        }
        let keys = self.incoming.remove(&key).map(|i| i.keys).unwrap_or_default();
        self.timers.set(Due::In(key.0, id), None);
        self.out.push_back(match named {
            Some(records) => Output::Activate { actor, identity, records, keys },
            None => Output::Discard { actor },
        });
    }

    fn fail(&mut self, id: MigrationId, error: MigrationError) {
        let Some(o) = self.outgoing.remove(&id) else { return };
        self.timers.set(Due::Out(id), None);
        if matches!(o.phase, Phase::Offered | Phase::Swapping) {
            self.out.push_back(Output::Send { to: o.to.clone(), frame: MigrationFrame::Abort { id } });
        }
        self.out.push_back(Output::Release { id, actor: o.actor, error });
    }

    fn expire_arrival(&mut self, _now: Duration, key: (String, MigrationId)) {
        let Some(i) = self.incoming.get_mut(&key) else { return };
        match i.state {
            Arrival::Held(actor) => {
                i.state = Arrival::Verifying(actor);
                let Some(location) = i.location.clone() else { return };
                self.timers.set(Due::In(key.0.clone(), key.1), None);
                let keys = i.keys.clone();
                self.out.push_back(Output::Verify { from: key.0, id: key.1, identity: i.identity, location, keys });
            }
            // Still building: the build's report decides (an expired build is discarded).
            Arrival::Building => {
                self.incoming.remove(&key);
            }
            // Asked again (see `handle_verified`).
            Arrival::Verifying(_) => {
                let Some(location) = i.location.clone() else { return };
                let keys = i.keys.clone();
                self.out.push_back(Output::Verify { from: key.0, id: key.1, identity: i.identity, location, keys });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    const T: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn loc(node: &str, actor: u64) -> ActorLocation {
        ActorLocation { node: node.into(), node_id: NodeId(node.len() as u128), actor: LocalActorId(actor) }
    }

    fn drain(m: &mut Migrations) -> Vec<Output> {
        std::iter::from_fn(|| m.poll_output()).collect()
    }

    /// Delivers every `Send` between the two sides until neither has one; returns what else
    /// each side output.
    fn exchange(now: Duration, a: (&str, &mut Migrations), b: (&str, &mut Migrations)) -> (Vec<Output>, Vec<Output>) {
        let (mut rest_a, mut rest_b) = (Vec::new(), Vec::new());
        loop {
            let mut moved = false;
            for out in drain(a.1) {
                match out {
                    Output::Send { to, frame } if to == b.0 => {
                        b.1.handle_frame(now, a.0, frame);
                        moved = true;
                    }
                    other => rest_a.push(other),
                }
            }
            for out in drain(b.1) {
                match out {
                    Output::Send { to, frame } if to == a.0 => {
                        a.1.handle_frame(now, b.0, frame);
                        moved = true;
                    }
                    other => rest_b.push(other),
                }
            }
            if !moved {
                return (rest_a, rest_b);
            }
        }
    }

    fn start(src: &mut Migrations) {
        src.start(ms(0), 1, LocalActorId(7), ActorId(99), ActorTypeId(5), loc("n1", 7), "n2").expect("start");
        assert_eq!(drain(src), vec![Output::Hold { id: 1, actor: LocalActorId(7) }]);
        src.handle_drained(ms(1), 1);
        assert_eq!(drain(src), vec![Output::Snapshot { id: 1, actor: LocalActorId(7) }]);
        src.handle_snapshot(ms(2), 1, Ok((Format::Postcard, vec![1, 2, 3])), keys());
    }

    /// What the migrating actor is registered under.
    fn keys() -> Vec<DirKey> {
        vec![DirKey::Actor(ActorId(99)), DirKey::Keyed { actor_type: ActorTypeId(5), key: "cart-1".into() }]
    }

    /// The directory's records for `keys()` once it names the target's copy.
    fn named_records() -> Vec<(DirKey, Record)> {
        keys()
            .into_iter()
            .map(|k| {
                let record = Record {
                    actor: ActorId(99),
                    actor_type: ActorTypeId(5),
                    location: loc("n2", 40),
                    at_ms: 6,
                    version: crate::proto::registry::conflict::VersionVector::new(),
                };
                (k, record)
            })
            .collect()
    }

    #[test]
    fn a_successful_move_builds_swaps_commits_and_forwards() {
        let (mut src, mut dst) = (Migrations::new(T), Migrations::new(T));
        start(&mut src);
        let (_, built) = exchange(ms(3), ("n1", &mut src), ("n2", &mut dst));
        assert_eq!(
            built,
            vec![Output::Build {
                from: "n1".into(),
                id: 1,
                identity: ActorId(99),
                actor_type: ActorTypeId(5),
                format: Format::Postcard,
                state: vec![1, 2, 3]
            }]
        );
        dst.handle_built(ms(4), "n1", 1, Ok(loc("n2", 40)));
        let (swap, _) = exchange(ms(5), ("n1", &mut src), ("n2", &mut dst));
        assert_eq!(swap, vec![Output::Swap { id: 1, identity: ActorId(99), from: loc("n1", 7), to: loc("n2", 40) }]);
        // The deadline no longer applies once the directory is asked.
        src.handle_timeout(ms(60_000));
        assert!(drain(&mut src).is_empty());
        src.handle_swapped(ms(60_001), 1, true);
        let (moved, _) = exchange(ms(60_002), ("n1", &mut src), ("n2", &mut dst));
        assert_eq!(moved, vec![Output::Moved { id: 1, actor: LocalActorId(7), to: loc("n2", 40) }]);
        // The driver forwards what it held, then commits on the same link.
        dst.handle_frame(ms(60_003), "n1", MigrationFrame::Commit { id: 1, records: named_records() });
        assert_eq!(
            drain(&mut dst),
            vec![Output::Activate {
                actor: LocalActorId(40),
                identity: ActorId(99),
                records: named_records(),
                keys: keys()
            }]
        );
        assert_eq!(src.in_progress(), (0, 0));
        assert_eq!(dst.in_progress(), (0, 0));
        assert_eq!(dst.poll_timeout(), None, "nothing left to wait for");
    }

    #[test]
    fn a_refusing_target_leaves_the_actor_running_at_the_source() {
        let (mut src, mut dst) = (Migrations::new(T), Migrations::new(T));
        start(&mut src);
        exchange(ms(3), ("n1", &mut src), ("n2", &mut dst));
        dst.handle_built(ms(4), "n1", 1, Err("type not registered".into()));
        let (released, _) = exchange(ms(5), ("n1", &mut src), ("n2", &mut dst));
        assert_eq!(
            released,
            vec![Output::Release {
                id: 1,
                actor: LocalActorId(7),
                error: MigrationError::TargetRefused { node: "n2".into(), reason: "type not registered".into() }
            }]
        );
        assert!(!src.is_moving(LocalActorId(7)));
    }

    #[test]
    fn an_actor_that_refuses_is_released_before_anything_is_sent() {
        let mut src = Migrations::new(T);
        src.start(ms(0), 1, LocalActorId(7), ActorId(99), ActorTypeId(5), loc("n1", 7), "n2").expect("start");
        src.handle_drained(ms(1), 1);
        drain(&mut src);
        src.handle_snapshot(ms(2), 1, Err("busy".into()), keys());
        assert_eq!(
            drain(&mut src),
            vec![Output::Release { id: 1, actor: LocalActorId(7), error: MigrationError::ActorRefused("busy".into()) }]
        );
    }

    #[test]
    fn a_silent_target_times_out_and_what_it_built_later_is_aborted() {
        let (mut src, mut dst) = (Migrations::new(T), Migrations::new(T));
        start(&mut src);
        // The offer reaches the target, which is slow to build.
        exchange(ms(3), ("n1", &mut src), ("n2", &mut dst));
        assert_eq!(src.poll_timeout(), Some(T));
        src.handle_timeout(T);
        let out = drain(&mut src);
        assert_eq!(out[0], Output::Send { to: "n2".into(), frame: MigrationFrame::Abort { id: 1 } });
        assert!(matches!(&out[1], Output::Release { error: MigrationError::TargetUnavailable(n), .. } if n == "n2"));
        dst.handle_frame(T, "n1", MigrationFrame::Abort { id: 1 });
        // The build finishes after the abort: it is discarded, never announced.
        dst.handle_built(T + ms(1), "n1", 1, Ok(loc("n2", 40)));
        assert_eq!(drain(&mut dst), vec![Output::Discard { actor: LocalActorId(40) }]);
        // A late `Built` for a migration the source gave up is answered with an abort.
        src.handle_frame(T + ms(2), "n2", MigrationFrame::Built { id: 1, location: loc("n2", 41) });
        assert_eq!(drain(&mut src), vec![Output::Send { to: "n2".into(), frame: MigrationFrame::Abort { id: 1 } }]);
    }

    #[test]
    fn a_superseded_entry_aborts_and_releases() {
        let (mut src, mut dst) = built_on_the_target();
        src.handle_swapped(ms(6), 1, false);
        let (released, discarded) = exchange(ms(7), ("n1", &mut src), ("n2", &mut dst));
        assert!(matches!(&released[..], [Output::Release { error: MigrationError::Superseded, .. }]));
        assert_eq!(discarded, vec![Output::Discard { actor: LocalActorId(40) }]);
    }

    /// Migration 1 of actor 99 from n1, built on n2 as actor 40 and swapped there,
    /// waiting for its commit.
    fn built_on_the_target() -> (Migrations, Migrations) {
        let (mut src, mut dst) = (Migrations::new(T), Migrations::new(T));
        start(&mut src);
        exchange(ms(3), ("n1", &mut src), ("n2", &mut dst));
        dst.handle_built(ms(4), "n1", 1, Ok(loc("n2", 40)));
        exchange(ms(5), ("n1", &mut src), ("n2", &mut dst));
        (src, dst)
    }

    #[test]
    fn a_target_left_without_a_verdict_asks_the_directory() {
        let (mut src, mut dst) = built_on_the_target();
        // The source swapped and died before its commit reached the target.
        src.handle_swapped(ms(6), 1, true);
        drop(src);
        assert_eq!(dst.poll_timeout(), Some(ms(3) + T * 2));
        dst.handle_timeout(ms(3) + T * 2);
        assert_eq!(
            drain(&mut dst),
            vec![Output::Verify {
                from: "n1".into(),
                id: 1,
                identity: ActorId(99),
                location: loc("n2", 40),
                keys: keys()
            }]
        );
        // The arrival takes over the records that name it (its key's among them), so the
        // node hosts them from now on as if the commit had come.
        dst.handle_verified(ms(3) + T * 2 + ms(1), "n1", 1, Some(named_records()));
        assert_eq!(
            drain(&mut dst),
            vec![Output::Activate {
                actor: LocalActorId(40),
                identity: ActorId(99),
                records: named_records(),
                keys: keys()
            }]
        );

        // The same, when the directory does not name it: the source's swap may still land,
        // so the directory is asked again until the window closes; then the copy is dropped.
        let (_src, mut dst) = built_on_the_target();
        dst.handle_node_lost(ms(6), "n1");
        assert!(matches!(&drain(&mut dst)[..], [Output::Verify { .. }]));
        dst.handle_verified(ms(7), "n1", 1, None);
        assert!(drain(&mut dst).is_empty(), "not dropped while the swap may still land");
        let again = dst.poll_timeout().expect("asks again");
        dst.handle_timeout(again);
        assert!(matches!(&drain(&mut dst)[..], [Output::Verify { .. }]));
        let closed = ms(3) + T * 3;
        dst.handle_verified(closed, "n1", 1, None);
        assert_eq!(drain(&mut dst), vec![Output::Discard { actor: LocalActorId(40) }]);

        // A link replaced mid-migration: the target lost the source, the swap landed, and
        // the commit comes on the new link: the arrival runs.
        let (_src, mut dst) = built_on_the_target();
        dst.handle_node_lost(ms(6), "n1");
        drain(&mut dst);
        dst.handle_verified(ms(7), "n1", 1, None);
        // (Its key's record lost meanwhile: the arrival learns the key, to register it.)
        dst.handle_frame(ms(8), "n1", MigrationFrame::Commit { id: 1, records: named_records()[..1].to_vec() });
        assert_eq!(
            drain(&mut dst),
            vec![Output::Activate {
                actor: LocalActorId(40),
                identity: ActorId(99),
                records: named_records()[..1].to_vec(),
                keys: keys()
            }]
        );
    }

    #[test]
    fn losing_the_target_before_the_swap_releases_but_not_during_it() {
        let (mut src, mut dst) = (Migrations::new(T), Migrations::new(T));
        start(&mut src);
        exchange(ms(3), ("n1", &mut src), ("n2", &mut dst));
        src.handle_node_lost(ms(4), "n2");
        assert!(matches!(&drain(&mut src)[..], [Output::Send { .. }, Output::Release { .. }]));

        let (mut src, _dst) = built_on_the_target();
        src.handle_node_lost(ms(6), "n2");
        assert!(drain(&mut src).is_empty(), "the directory's answer decides once the swap is asked");
        src.handle_swapped(ms(7), 1, true);
        assert!(matches!(&drain(&mut src)[..], [Output::Moved { .. }]));
    }

    #[test]
    fn one_migration_per_actor_and_frames_from_strangers_are_ignored() {
        let mut src = Migrations::new(T);
        start(&mut src);
        let again = src.start(ms(3), 2, LocalActorId(7), ActorId(99), ActorTypeId(5), loc("n1", 7), "n3");
        assert_eq!(again, Err(MigrationError::InProgress));
        drain(&mut src);
        // `Built` from a node that is not the target, `Refused` for another id: nothing.
        src.handle_frame(ms(4), "n3", MigrationFrame::Built { id: 1, location: loc("n3", 1) });
        src.handle_frame(ms(4), "n2", MigrationFrame::Refused { id: 9, reason: "?".into() });
        let out = drain(&mut src);
        assert!(out.iter().all(|o| !matches!(o, Output::Swap { .. } | Output::Release { .. })), "{out:?}");
        assert!(src.is_moving(LocalActorId(7)));
    }

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let frame = MigrationFrame::Offer {
            id: 3,
            actor: ActorId(1 << 100),
            actor_type: ActorTypeId(9),
            format: Format::Json,
            state: b"{}".to_vec(),
            keys: vec![DirKey::Name("ledger".into()), DirKey::Actor(ActorId(1 << 100))],
        };
        assert_eq!(MigrationFrame::decode(&frame.encode()), Ok(frame));
        assert!(MigrationFrame::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut trailing = MigrationFrame::Commit { id: 1, records: Vec::new() }.encode();
        trailing.push(0);
        assert!(MigrationFrame::decode(&trailing).is_err());
    }
}
