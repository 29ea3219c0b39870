//! Transactional delivery (a send to several targets, or a publish, reaches all of them or
//! none), pure: two-phase commit with presumed abort. Every node plays both roles.
//!
//! - **Coordinator** (the sender's node): [`Coordinator::begin`] sends `Prepare` with each
//!   participant's message. A participant stages the message (checks it can deliver it,
//!   without delivering) and votes. All yes: the decision is *commit*, and `Commit` goes out
//!   until every participant acknowledges; then the outcome is [`Outcome::Committed`]. A no,
//!   a participant lost, or the deadline before every vote: the decision is *abort*,
//!   `Abort` goes out, and the outcome is [`Outcome::Aborted`] at once (nothing was
//!   delivered anywhere; safe to retry). Commit decided but not acknowledged by every
//!   participant by the deadline: [`Outcome::InDoubt`] — delivered where acknowledged,
//!   still pending elsewhere (`Commit` keeps going out to the others until
//!   [`TxnConfig::give_up`]).
//! - **Participant**: delivers a staged message only on `Commit`, drops it on `Abort`, and
//!   while it hears nothing asks the coordinator (`Query`). A coordinator that knows nothing
//!   of a transaction answers `Abort` (presumed abort: it only forgets a commit once every
//!   participant acknowledged it). A participant that hears nothing by `give_up` drops the
//!   message: the case the coordinator reported as in doubt.
//!
//! So a transaction never ends in a silent partial delivery: the caller learns
//! `Committed`, `Aborted`, or `InDoubt`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Identifies a transaction (unique at its coordinator's node).
pub type TxnId = u64;

/// The frames of the protocol. `message` is the encoded target and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnFrame {
    /// Coordinator → participant: stage this and vote.
    Prepare {
        /// The transaction.
        txn: TxnId,
        /// What to deliver on commit.
        message: Vec<u8>,
    },
    /// Participant → coordinator: staged (`yes`), or why not.
    Vote {
        /// The transaction.
        txn: TxnId,
        /// `None`: yes; `Some(reason)`: no.
        refused: Option<String>,
    },
    /// Coordinator → participant: deliver what you staged.
    Commit {
        /// The transaction.
        txn: TxnId,
    },
    /// Coordinator → participant: drop what you staged.
    Abort {
        /// The transaction.
        txn: TxnId,
    },
    /// Participant → coordinator: delivered.
    Ack {
        /// The transaction.
        txn: TxnId,
    },
    /// Participant → coordinator: what did you decide?
    Query {
        /// The transaction.
        txn: TxnId,
    },
}

/// Timings of both roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnConfig {
    /// Frames not answered are sent again after this long.
    pub resend_after: Duration,
    /// How long after its deadline a commit keeps being sent to participants that have not
    /// acknowledged it, and a participant waits for a decision.
    pub give_up: Duration,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self { resend_after: Duration::from_millis(200), give_up: Duration::from_secs(60) }
    }
}

/// How a transaction ended, for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<N> {
    /// Every participant delivered it.
    Committed,
    /// No participant delivered it; safe to retry.
    Aborted(AbortReason<N>),
    /// Committed, but these participants had not acknowledged by the deadline: delivered
    /// elsewhere, maybe not there.
    InDoubt(Vec<N>),
}

/// Why a transaction was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortReason<N> {
    /// A participant refused.
    Refused {
        /// The participant.
        node: N,
        /// What it said.
        reason: String,
    },
    /// A participant's node was lost before it voted.
    Lost(N),
    /// Not every participant voted by the deadline.
    Timeout,
}

/// What the coordinator asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorOutput<N> {
    /// Send `frame` to `to`.
    Send {
        /// The participant.
        to: N,
        /// The frame.
        frame: TxnFrame,
    },
    /// Transaction `txn` ended for its caller.
    Done {
        /// The transaction.
        txn: TxnId,
        /// How.
        outcome: Outcome<N>,
    },
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Decision {
    Undecided,
    Commit,
}

#[derive(Debug)]
struct Txn<N> {
    /// Participants and their messages.
    messages: BTreeMap<N, Vec<u8>>,
    voted: BTreeSet<N>,
    acked: BTreeSet<N>,
    decision: Decision,
    deadline: Duration,
    /// The caller was told.
    reported: bool,
    resend_at: Duration,
}

/// The coordinator role of one node.
#[derive(Debug)]
pub struct Coordinator<N: Ord + Clone> {
    config: TxnConfig,
    txns: BTreeMap<TxnId, Txn<N>>,
    out: VecDeque<CoordinatorOutput<N>>,
}

impl<N: Ord + Clone> Coordinator<N> {
    /// No transactions yet.
    pub fn new(config: TxnConfig) -> Self {
        Self { config, txns: BTreeMap::new(), out: VecDeque::new() }
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<CoordinatorOutput<N>> {
        self.out.pop_front()
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.txns.values().map(|t| if t.reported { t.resend_at } else { t.resend_at.min(t.deadline) }).min()
    }

    /// Transactions not finished (committed ones waiting for acknowledgements included).
    pub fn in_progress(&self) -> usize {
        self.txns.len()
    }

    /// Starts transaction `txn`: `messages` to their participants, all or none, decided by
    /// `deadline`.
    pub fn begin(&mut self, now: Duration, txn: TxnId, messages: BTreeMap<N, Vec<u8>>, deadline: Duration) {
        if messages.is_empty() {
            self.out.push_back(CoordinatorOutput::Done { txn, outcome: Outcome::Committed });
            return;
        }
        for (to, message) in &messages {
            let frame = TxnFrame::Prepare { txn, message: message.clone() };
            self.out.push_back(CoordinatorOutput::Send { to: to.clone(), frame });
        }
        let t = Txn {
            messages,
            voted: BTreeSet::new(),
            acked: BTreeSet::new(),
            decision: Decision::Undecided,
            deadline,
            reported: false,
            resend_at: now + self.config.resend_after,
        };
        self.txns.insert(txn, t);
    }

    /// A frame from participant `from`.
    pub fn handle_frame(&mut self, now: Duration, from: &N, frame: TxnFrame) {
        match frame {
            TxnFrame::Vote { txn, refused } => self.vote(now, from, txn, refused),
            TxnFrame::Ack { txn } => self.ack(txn, from),
            TxnFrame::Query { txn } => {
                let decided = self.txns.get(&txn).filter(|t| t.messages.contains_key(from)).map(|t| t.decision);
                let frame = match decided {
                    Some(Decision::Commit) => TxnFrame::Commit { txn },
                    // Still voting: the answer comes when it is decided.
                    Some(Decision::Undecided) => return,
                    // Never heard of, or aborted and forgotten: presumed abort.
                    None => TxnFrame::Abort { txn },
                };
                self.out.push_back(CoordinatorOutput::Send { to: from.clone(), frame });
            }
            // Coordinator-to-participant frames.
            TxnFrame::Prepare { .. } | TxnFrame::Commit { .. } | TxnFrame::Abort { .. } => {}
        }
    }

    /// Participant `node` is lost: transactions still voting abort.
    pub fn handle_node_lost(&mut self, node: &N) {
        let voting: Vec<TxnId> = self
            .txns
            .iter()
            .filter(|(_, t)| t.decision == Decision::Undecided && t.messages.contains_key(node))
            .map(|(id, _)| *id)
            .collect();
        for txn in voting {
            self.abort(txn, AbortReason::Lost(node.clone()));
        }
    }

    /// Time passed: resends, deadlines, giving up.
    pub fn handle_timeout(&mut self, now: Duration) {
        let ids: Vec<TxnId> = self.txns.keys().copied().collect();
        for txn in ids {
            let Some(t) = self.txns.get_mut(&txn) else { continue };
            if t.decision == Decision::Undecided && t.deadline <= now {
                self.abort(txn, AbortReason::Timeout);
                continue;
            }
            if t.decision == Decision::Commit && !t.reported && t.deadline <= now {
                t.reported = true;
                let pending: Vec<N> = t.messages.keys().filter(|n| !t.acked.contains(*n)).cloned().collect();
                self.out.push_back(CoordinatorOutput::Done { txn, outcome: Outcome::InDoubt(pending) });
            }
            if t.decision == Decision::Commit && now >= t.deadline + self.config.give_up {
                self.txns.remove(&txn);
                continue;
            }
            if t.resend_at <= now {
                t.resend_at = now + self.config.resend_after;
                for (to, message) in &t.messages {
                    let frame = match t.decision {
                        Decision::Undecided if !t.voted.contains(to) => {
                            TxnFrame::Prepare { txn, message: message.clone() }
                        }
                        Decision::Commit if !t.acked.contains(to) => TxnFrame::Commit { txn },
                        _ => continue,
                    };
                    self.out.push_back(CoordinatorOutput::Send { to: to.clone(), frame });
                }
            }
        }
    }

    fn vote(&mut self, now: Duration, from: &N, txn: TxnId, refused: Option<String>) {
        let Some(t) = self.txns.get_mut(&txn) else {
            // Aborted and forgotten: tell it again.
            self.out.push_back(CoordinatorOutput::Send { to: from.clone(), frame: TxnFrame::Abort { txn } });
            return;
        };
        if !t.messages.contains_key(from) || t.decision != Decision::Undecided {
            if t.decision == Decision::Commit && !t.acked.contains(from) {
                self.out.push_back(CoordinatorOutput::Send { to: from.clone(), frame: TxnFrame::Commit { txn } });
            }
            return;
        }
        if let Some(reason) = refused {
            self.abort(txn, AbortReason::Refused { node: from.clone(), reason });
            return;
        }
        t.voted.insert(from.clone());
        if t.voted.len() == t.messages.len() {
            t.decision = Decision::Commit;
            t.resend_at = now + self.config.resend_after;
            for to in t.messages.keys() {
                self.out.push_back(CoordinatorOutput::Send { to: to.clone(), frame: TxnFrame::Commit { txn } });
            }
        }
    }

    fn ack(&mut self, txn: TxnId, from: &N) {
        let Some(t) = self.txns.get_mut(&txn) else { return };
        if t.decision != Decision::Commit || !t.messages.contains_key(from) {
            return;
        }
        t.acked.insert(from.clone());
        if t.acked.len() == t.messages.len() {
            if !t.reported {
                self.out.push_back(CoordinatorOutput::Done { txn, outcome: Outcome::Committed });
            }
            self.txns.remove(&txn);
        }
    }

    fn abort(&mut self, txn: TxnId, reason: AbortReason<N>) {
        let Some(t) = self.txns.remove(&txn) else { return };
        for to in t.messages.keys() {
            self.out.push_back(CoordinatorOutput::Send { to: to.clone(), frame: TxnFrame::Abort { txn } });
        }
        self.out.push_back(CoordinatorOutput::Done { txn, outcome: Outcome::Aborted(reason) });
    }
}

/// What the participant asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantOutput<N> {
    /// Send `frame` to coordinator `to`.
    Send {
        /// The coordinator.
        to: N,
        /// The frame.
        frame: TxnFrame,
    },
    /// Deliver `message` now: the transaction committed.
    Deliver {
        /// The encoded target and message.
        message: Vec<u8>,
    },
    /// A staged message was dropped because no decision came by `give_up`.
    GaveUp {
        /// The coordinator.
        coordinator: N,
        /// The transaction.
        txn: TxnId,
    },
}

#[derive(Debug)]
struct Staged {
    message: Vec<u8>,
    query_at: Duration,
    give_up_at: Duration,
}

/// The participant role of one node.
#[derive(Debug)]
pub struct Participant<N: Ord + Clone> {
    config: TxnConfig,
    staged: BTreeMap<(N, TxnId), Staged>,
    /// Committed here lately (a repeated commit is acknowledged, not delivered again), with
    /// when they may be forgotten.
    done: BTreeMap<(N, TxnId), Duration>,
    /// `done` in the order its entries may be forgotten (they are added with the same
    /// delay as time goes on): the next deadline without a look at every one.
    done_order: VecDeque<(Duration, (N, TxnId))>,
    out: VecDeque<ParticipantOutput<N>>,
}

impl<N: Ord + Clone> Participant<N> {
    /// Nothing staged.
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            staged: BTreeMap::new(),
            done: BTreeMap::new(),
            done_order: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<ParticipantOutput<N>> {
        self.out.pop_front()
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let staged = self.staged.values().map(|s| s.query_at.min(s.give_up_at)).min();
        let done = self.done_order.front().map(|(at, _)| *at);
        match (staged, done) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Messages staged, waiting for a decision.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// `Prepare` from coordinator `from`; `check` says whether the message can be delivered
    /// here (the target exists, the message decodes), without delivering it.
    pub fn handle_prepare(&mut self, now: Duration, from: &N, txn: TxnId, message: Vec<u8>, check: Result<(), String>) {
        let key = (from.clone(), txn);
        if self.done.contains_key(&key) {
            // Committed already: the coordinator missed the acknowledgement.
            self.out.push_back(ParticipantOutput::Send { to: from.clone(), frame: TxnFrame::Ack { txn } });
            return;
        }
        let refused = check.err();
        if refused.is_none() {
            let staged =
                Staged { message, query_at: now + self.config.resend_after, give_up_at: now + self.config.give_up };
            self.staged.entry(key).or_insert(staged);
        }
        self.out.push_back(ParticipantOutput::Send { to: from.clone(), frame: TxnFrame::Vote { txn, refused } });
    }

    /// A decision (or another frame) from coordinator `from`.
    pub fn handle_frame(&mut self, now: Duration, from: &N, frame: TxnFrame) {
        match frame {
            TxnFrame::Commit { txn } => {
                let key = (from.clone(), txn);
                if let Some(staged) = self.staged.remove(&key) {
                    self.out.push_back(ParticipantOutput::Deliver { message: staged.message });
                    let until = now + self.config.give_up;
                    self.done.insert(key.clone(), until);
                    self.done_order.push_back((until, key.clone()));
                }
                if self.done.contains_key(&(from.clone(), txn)) {
                    self.out.push_back(ParticipantOutput::Send { to: from.clone(), frame: TxnFrame::Ack { txn } });
                }
            }
            TxnFrame::Abort { txn } => {
                self.staged.remove(&(from.clone(), txn));
            }
            // Participant-to-coordinator frames, and `Prepare` (see `handle_prepare`).
            TxnFrame::Prepare { .. } | TxnFrame::Vote { .. } | TxnFrame::Ack { .. } | TxnFrame::Query { .. } => {}
        }
    }

    /// Time passed: asks about staged messages, gives up on old ones.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some((until, key)) = self.done_order.front().filter(|(until, _)| *until <= now).cloned() {
            self.done_order.pop_front();
            if self.done.get(&key) == Some(&until) {
                self.done.remove(&key);
            }
        }
        let keys: Vec<(N, TxnId)> = self.staged.keys().cloned().collect();
        for key in keys {
            let Some(s) = self.staged.get_mut(&key) else { continue };
            if s.give_up_at <= now {
                self.staged.remove(&key);
                self.out.push_back(ParticipantOutput::GaveUp { coordinator: key.0, txn: key.1 });
            } else if s.query_at <= now {
                s.query_at = now + self.config.resend_after;
                self.out.push_back(ParticipantOutput::Send { to: key.0, frame: TxnFrame::Query { txn: key.1 } });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> TxnConfig {
        TxnConfig { resend_after: 10 * MS, give_up: 1000 * MS }
    }

    fn messages(to: &[&'static str]) -> BTreeMap<&'static str, Vec<u8>> {
        to.iter().map(|n| (*n, n.as_bytes().to_vec())).collect()
    }

    /// Runs frames between a coordinator ("c") and participants until quiet; `drop` decides
    /// which frames are lost; `check` what each participant says to a prepare. Returns what
    /// each participant delivered and the coordinator's outcomes.
    struct Net {
        c: Coordinator<&'static str>,
        ps: BTreeMap<&'static str, Participant<&'static str>>,
        delivered: BTreeMap<&'static str, Vec<Vec<u8>>>,
        outcomes: Vec<(TxnId, Outcome<&'static str>)>,
        refuse: BTreeSet<&'static str>,
    }

    impl Net {
        fn new(names: &[&'static str]) -> Self {
            Self {
                c: Coordinator::new(config()),
                ps: names.iter().map(|n| (*n, Participant::new(config()))).collect(),
                delivered: BTreeMap::new(),
                outcomes: Vec::new(),
                refuse: BTreeSet::new(),
            }
        }

        fn run(&mut self, now: Duration, lose: &mut dyn FnMut(&TxnFrame, &'static str) -> bool) {
            loop {
                let mut moved = false;
                while let Some(o) = self.c.poll_output() {
                    moved = true;
                    match o {
                        CoordinatorOutput::Done { txn, outcome } => self.outcomes.push((txn, outcome)),
                        CoordinatorOutput::Send { to, frame } => {
                            if lose(&frame, to) {
                                continue;
                            }
                            let p = self.ps.get_mut(to).expect("participant");
                            match frame {
                                TxnFrame::Prepare { txn, message } => {
                                    let check = if self.refuse.contains(to) { Err("full".into()) } else { Ok(()) };
                                    p.handle_prepare(now, &"c", txn, message, check);
                                }
                                frame => p.handle_frame(now, &"c", frame),
                            }
                        }
                    }
                }
                for (name, p) in &mut self.ps {
                    while let Some(o) = p.poll_output() {
                        moved = true;
                        match o {
                            ParticipantOutput::Send { frame, .. } => {
                                if !lose(&frame, name) {
                                    self.c.handle_frame(now, name, frame);
                                }
                            }
                            ParticipantOutput::Deliver { message } => {
                                self.delivered.entry(name).or_default().push(message)
                            }
                            ParticipantOutput::GaveUp { .. } => {}
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
        }

        fn tick(&mut self, now: Duration, lose: &mut dyn FnMut(&TxnFrame, &'static str) -> bool) {
            self.c.handle_timeout(now);
            for p in self.ps.values_mut() {
                p.handle_timeout(now);
            }
            self.run(now, lose);
        }
    }

    #[test]
    fn a_participant_forgets_committed_transactions_in_order_and_says_when_next() {
        let mut p: Participant<&str> = Participant::new(config());
        for txn in 1..=3u64 {
            let now = (txn as u32 - 1) * 10 * MS;
            p.handle_prepare(now, &"c", txn, vec![1], Ok(()));
            p.handle_frame(now, &"c", TxnFrame::Commit { txn });
        }
        while p.poll_output().is_some() {}
        // Nothing staged: the next deadline is when the first commit may be forgotten.
        assert_eq!(p.poll_timeout(), Some(1000 * MS));
        p.handle_timeout(1000 * MS);
        assert_eq!(p.poll_timeout(), Some(1010 * MS));
        // Transaction 2 is still remembered: a repeated commit is acknowledged, not
        // delivered again; transaction 1 is forgotten: nothing is said about it.
        p.handle_frame(1000 * MS, &"c", TxnFrame::Commit { txn: 2 });
        p.handle_frame(1000 * MS, &"c", TxnFrame::Commit { txn: 1 });
        let out: Vec<_> = std::iter::from_fn(|| p.poll_output()).collect();
        assert!(matches!(&out[..], [ParticipantOutput::Send { frame: TxnFrame::Ack { txn: 2 }, .. }]), "{out:?}");
        p.handle_timeout(2000 * MS);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn all_yes_commits_everywhere_once() {
        let mut net = Net::new(&["a", "b", "d"]);
        net.c.begin(Duration::ZERO, 1, messages(&["a", "b", "d"]), 100 * MS);
        net.run(Duration::ZERO, &mut |_, _| false);
        assert_eq!(net.outcomes, vec![(1, Outcome::Committed)]);
        assert_eq!(net.delivered.len(), 3);
        assert!(net.delivered.values().all(|d| d.len() == 1));
        assert_eq!(net.c.in_progress(), 0);
    }

    #[test]
    fn one_refusal_aborts_and_nothing_is_delivered() {
        let mut net = Net::new(&["a", "b"]);
        net.refuse.insert("b");
        net.c.begin(Duration::ZERO, 1, messages(&["a", "b"]), 100 * MS);
        net.run(Duration::ZERO, &mut |_, _| false);
        assert_eq!(
            net.outcomes,
            vec![(1, Outcome::Aborted(AbortReason::Refused { node: "b", reason: "full".into() }))]
        );
        assert!(net.delivered.is_empty());
        assert_eq!(net.ps["a"].staged(), 0, "a dropped what it staged");
    }

    #[test]
    fn lost_frames_are_sent_again_and_a_lost_commit_is_learned_by_asking() {
        let mut net = Net::new(&["a", "b"]);
        // The first prepare to b and the first commit to a are lost.
        let (mut prepares_b, mut commits_a) = (0, 0);
        let mut lose = |f: &TxnFrame, to: &'static str| match (f, to) {
            (TxnFrame::Prepare { .. }, "b") => {
                prepares_b += 1;
                prepares_b == 1
            }
            (TxnFrame::Commit { .. }, "a") => {
                commits_a += 1;
                commits_a == 1
            }
            _ => false,
        };
        net.c.begin(Duration::ZERO, 7, messages(&["a", "b"]), 500 * MS);
        net.run(Duration::ZERO, &mut lose);
        assert!(net.outcomes.is_empty());
        for t in 1..=5 {
            net.tick(t * 10 * MS, &mut lose);
        }
        assert_eq!(net.outcomes, vec![(7, Outcome::Committed)]);
        assert_eq!(net.delivered["a"].len(), 1, "delivered once though the commit came twice");
        assert_eq!(net.delivered["b"].len(), 1);
    }

    #[test]
    fn no_vote_by_the_deadline_aborts() {
        let mut net = Net::new(&["a", "b"]);
        let mut lose = |f: &TxnFrame, to: &'static str| matches!(f, TxnFrame::Prepare { .. }) && to == "b";
        net.c.begin(Duration::ZERO, 1, messages(&["a", "b"]), 50 * MS);
        for t in 0..=5 {
            net.tick(t * 10 * MS, &mut lose);
        }
        assert_eq!(net.outcomes, vec![(1, Outcome::Aborted(AbortReason::Timeout))]);
        assert!(net.delivered.is_empty());
        // a asks later: presumed abort.
        net.tick(60 * MS, &mut lose);
        assert_eq!(net.ps["a"].staged(), 0);
    }

    #[test]
    fn a_participant_lost_before_voting_aborts() {
        let mut net = Net::new(&["a", "b"]);
        let mut lose = |f: &TxnFrame, to: &'static str| matches!(f, TxnFrame::Vote { .. }) && to == "b";
        net.c.begin(Duration::ZERO, 1, messages(&["a", "b"]), 500 * MS);
        net.run(Duration::ZERO, &mut lose);
        net.c.handle_node_lost(&"b");
        net.run(MS, &mut lose);
        assert_eq!(net.outcomes, vec![(1, Outcome::Aborted(AbortReason::Lost("b")))]);
        assert!(net.delivered.is_empty());
    }

    #[test]
    fn a_commit_not_acknowledged_by_the_deadline_is_in_doubt_and_keeps_going_out() {
        let mut net = Net::new(&["a", "b"]);
        let mut cut = true;
        net.c.begin(Duration::ZERO, 1, messages(&["a", "b"]), 50 * MS);
        // b votes, then is cut off: it never gets the commit until the link heals.
        net.run(Duration::ZERO, &mut |f, to| to == "b" && matches!(f, TxnFrame::Commit { .. }));
        for t in 1..=5 {
            net.tick(t * 10 * MS, &mut |f, to| cut && to == "b" && matches!(f, TxnFrame::Commit { .. }));
        }
        assert_eq!(net.outcomes, vec![(1, Outcome::InDoubt(vec!["b"]))]);
        assert!(!net.delivered.contains_key("b"));
        cut = false;
        net.tick(60 * MS, &mut |f, to| cut && to == "b" && matches!(f, TxnFrame::Commit { .. }));
        assert_eq!(net.delivered["b"].len(), 1, "delivered once the link healed");
        assert_eq!(net.c.in_progress(), 0, "forgotten once everyone acknowledged");
        assert_eq!(net.outcomes.len(), 1, "the caller was told once");
    }

    #[test]
    fn frames_round_trip() {
        let frame = TxnFrame::Vote { txn: 3, refused: Some("no room".into()) };
        let bytes = postcard::to_allocvec(&frame).expect("encode");
        assert_eq!(postcard::from_bytes::<TxnFrame>(&bytes).expect("decode"), frame);
    }
}
