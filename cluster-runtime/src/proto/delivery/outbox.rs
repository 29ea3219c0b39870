//! The sending side of one reliable stream (one sender to one receiver), pure: gapless
//! sequence numbers, a flow-control window granted by the receiver, and the messages not
//! yet confirmed, kept across link drops, reconnects and receiver restarts until the
//! receiver confirms them.
//!
//! The protocol follows Akka's reliable delivery (`ProducerController` /
//! `ConsumerController`):
//!
//! - Every message carries its sequence number and the sender's *confirmed* watermark (all
//!   messages up to it are confirmed): a receiver that does not know the stream (it
//!   restarted, or this is the first message) starts right after the watermark.
//! - The receiver grants a window: the sender may transmit up to [`Grant::up_to`]. Until
//!   the first grant arrives it may send [`OutboxConfig::initial_window`] messages.
//! - The receiver confirms after the handler has run (an application-level
//!   acknowledgement), and on a gap asks to resend from the first missing number.
//! - If nothing is confirmed for [`OutboxConfig::resend_after`] while messages are
//!   outstanding (a lost frame, a lost acknowledgement, a receiver that restarted), the
//!   sender transmits the unconfirmed messages again. A link that comes back does the same
//!   at once.
//! - A message with a deadline that is not confirmed by then is *expired*: reported, and
//!   replaced by a skip marker so the stream stays gapless. One never transmitted is never
//!   delivered; one already transmitted may have been handled.
//!
//! Outputs, in order: transmissions ([`Output::Transmit`]) and receipts
//! ([`Output::Receipt`]) in the order they happened; [`Outbox::poll_timeout`] gives the next
//! deadline.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A message's position in its stream, from 1.
pub type Seq = u64;

/// How a sender's outbox behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Messages that may be sent before the receiver's first grant.
    pub initial_window: u64,
    /// Unconfirmed messages kept at most; more are refused until some are confirmed.
    pub capacity: usize,
    /// How long outstanding messages wait for a confirmation before they are sent again.
    pub resend_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self { initial_window: 64, capacity: 100_000, resend_after: Duration::from_secs(1) }
    }
}

/// The receiver's word on the stream: everything up to `confirmed` was handled, and the
/// sender may transmit up to `up_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The highest sequence number handled with none missing before it.
    pub confirmed: Seq,
    /// The highest sequence number the receiver takes now.
    pub up_to: Seq,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The receiver handled it and said so.
    Delivered,
    /// Not confirmed by its deadline (see the module docs for what that means).
    Expired,
}

/// What the outbox asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Send message `seq` (`None`: the skip marker of an expired message) with the sender's
    /// confirmed watermark.
    Transmit {
        /// Its sequence number.
        seq: Seq,
        /// Everything up to here is confirmed.
        confirmed: Seq,
        /// The message, or `None` for a skipped one.
        payload: Option<P>,
    },
    /// Message `seq` reached its fate.
    Receipt {
        /// Its sequence number.
        seq: Seq,
        /// What became of it.
        fate: Fate,
        /// The message.
        payload: P,
    },
}

/// The outbox is at its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} messages wait for confirmation, the most the outbox keeps")]
pub struct OutboxFull(pub usize);

#[derive(Debug)]
struct Entry<P> {
    seq: Seq,
    /// `None` once expired (sent as a skip marker).
    payload: Option<P>,
    deadline: Option<Duration>,
}

/// The sending side of one stream. `P` is the encoded message (cheap to clone, like `Bytes`).
#[derive(Debug)]
pub struct Outbox<P> {
    config: OutboxConfig,
    /// The next number to give out.
    next: Seq,
    /// Everything up to here is confirmed.
    confirmed: Seq,
    /// The receiver takes up to here.
    granted: Seq,
    /// Transmitted up to here (since the last resend).
    sent: Seq,
    /// Unconfirmed messages, `confirmed + 1` first.
    unconfirmed: VecDeque<Entry<P>>,
    /// The deadlines of unconfirmed messages not yet expired, earliest first (so that
    /// neither the next timeout nor an expiry looks at every outstanding message).
    expiries: BTreeSet<(Duration, Seq)>,
    /// When outstanding messages are sent again if nothing is confirmed meanwhile.
    resend_at: Option<Duration>,
    out: VecDeque<Output<P>>,
}

impl<P: Clone> Outbox<P> {
    /// A new stream, nothing sent.
    pub fn new(config: OutboxConfig) -> Self {
        Self::resume(config, 0, Vec::new())
    }

    /// A stream picked up again from a durable outbox: everything up to `confirmed` was
    /// confirmed, and `unconfirmed` (numbered from `confirmed + 1`, with deadlines) waits.
    /// Nothing is sent until [`handle_link_up`](Self::handle_link_up) or a grant.
    pub fn resume(config: OutboxConfig, confirmed: Seq, unconfirmed: Vec<(P, Option<Duration>)>) -> Self {
        let unconfirmed: VecDeque<Entry<P>> = unconfirmed
            .into_iter()
            .zip(confirmed + 1..)
            .map(|((payload, deadline), seq)| Entry { seq, payload: Some(payload), deadline })
            .collect();
        let expiries = unconfirmed.iter().filter_map(|e| e.deadline.map(|d| (d, e.seq))).collect();
        Self {
            expiries,
            config,
            next: confirmed + 1 + unconfirmed.len() as u64,
            confirmed,
            granted: confirmed + config.initial_window,
            sent: confirmed,
            unconfirmed,
            resend_at: None,
            out: VecDeque::new(),
        }
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.out.pop_front()
    }

    /// The next deadline: a resend, or a message's expiry.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let expiry = self.expiries.first().map(|&(at, _)| at);
        match (self.resend_at, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Everything up to here is confirmed.
    pub fn confirmed(&self) -> Seq {
        self.confirmed
    }

    /// Message `seq`, if it waits for confirmation.
    pub fn get(&self, seq: Seq) -> Option<&P> {
        let index = seq.checked_sub(self.confirmed + 1)?;
        self.unconfirmed.get(usize::try_from(index).ok()?)?.payload.as_ref()
    }

    /// Messages waiting for confirmation.
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed.len()
    }

    /// Queues `payload`, to be confirmed by `deadline` if given; returns its number. It is
    /// transmitted at once if the window allows.
    pub fn push(&mut self, now: Duration, payload: P, deadline: Option<Duration>) -> Result<Seq, OutboxFull> {
        if self.unconfirmed.len() >= self.config.capacity {
            return Err(OutboxFull(self.unconfirmed.len()));
        }
        let seq = self.next;
        self.next += 1;
        if let Some(at) = deadline {
            self.expiries.insert((at, seq));
        }
        self.unconfirmed.push_back(Entry { seq, payload: Some(payload), deadline });
        self.transmit(now);
        Ok(seq)
    }

    /// The receiver's grant (also its acknowledgement).
    pub fn handle_grant(&mut self, now: Duration, grant: Grant) {
        self.confirm(now, grant.confirmed);
        self.granted = self.granted.max(grant.up_to);
        self.transmit(now);
    }

    /// The receiver misses everything from `from` on: sends it again.
    pub fn handle_resend(&mut self, now: Duration, from: Seq) {
        let from = from.max(self.confirmed + 1);
        if from <= self.sent {
            self.sent = from - 1;
        }
        self.transmit(now);
    }

    /// The link to the receiver is back (or new): what it may not have got goes again.
    pub fn handle_link_up(&mut self, now: Duration) {
        self.sent = self.confirmed;
        self.transmit(now);
    }

    /// Gives up the stream (its receiver is gone for good): every unconfirmed message not
    /// expired, in order, to be sent elsewhere. The outbox is empty afterwards.
    pub fn drain(&mut self) -> Vec<(Seq, P)> {
        self.expiries.clear();
        self.resend_at = None;
        self.sent = self.confirmed;
        let drained: Vec<(Seq, P)> = self.unconfirmed.drain(..).filter_map(|e| e.payload.map(|p| (e.seq, p))).collect();
        // The numbers stay given out; nothing before `next` is expected any more.
        self.confirmed = self.next - 1;
        self.sent = self.confirmed;
        drained
    }

    /// Time passed: expires messages past their deadline, resends if nothing was confirmed.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(&(at, seq)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let index = seq.checked_sub(self.confirmed + 1).map(|i| i as usize);
            if let Some(e) = index.and_then(|i| self.unconfirmed.get_mut(i)) {
                if let Some(payload) = e.payload.take() {
                    self.out.push_back(Output::Receipt { seq, fate: Fate::Expired, payload });
                }
            }
        }
        if self.resend_at.is_some_and(|at| at <= now) {
            self.resend_at = None;
            self.sent = self.confirmed;
        }
        self.transmit(now);
    }

    fn confirm(&mut self, now: Duration, confirmed: Seq) {
        // A confirmation of what was never sent is not believed past what was.
        let confirmed = confirmed.min(self.next - 1);
        if confirmed <= self.confirmed {
            return;
        }
        while self.unconfirmed.front().is_some_and(|e| e.seq <= confirmed) {
            if let Some(e) = self.unconfirmed.pop_front() {
                if let Some(at) = e.deadline {
                    self.expiries.remove(&(at, e.seq));
                }
                if let Some(payload) = e.payload {
                    self.out.push_back(Output::Receipt { seq: e.seq, fate: Fate::Delivered, payload });
                }
            }
        }
        self.confirmed = confirmed;
        self.sent = self.sent.max(confirmed);
        // Progress: the resend waits a full period again.
        self.resend_at = (!self.unconfirmed.is_empty()).then_some(now + self.config.resend_after);
    }

    /// Transmits what the window allows and was not sent yet.
    fn transmit(&mut self, now: Duration) {
        let last = (self.next - 1).min(self.granted);
        while self.sent < last {
            let seq = self.sent + 1;
            let Some(e) = self.unconfirmed.get((seq - self.confirmed - 1) as usize) else { break };
            self.out.push_back(Output::Transmit { seq, confirmed: self.confirmed, payload: e.payload.clone() });
            self.sent = seq;
        }
        if self.sent > self.confirmed && self.resend_at.is_none() {
            self.resend_at = Some(now + self.config.resend_after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> OutboxConfig {
        OutboxConfig { initial_window: 3, capacity: 5, resend_after: 100 * MS }
    }

    fn drain(o: &mut Outbox<&'static str>) -> Vec<Output<&'static str>> {
        std::iter::from_fn(|| o.poll_output()).collect()
    }

    fn sent(outputs: &[Output<&'static str>]) -> Vec<Seq> {
        outputs.iter().filter_map(|o| if let Output::Transmit { seq, .. } = o { Some(*seq) } else { None }).collect()
    }

    fn delivered(outputs: &[Output<&'static str>]) -> Vec<Seq> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Receipt { seq, fate: Fate::Delivered, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sends_within_the_window_and_more_as_the_receiver_grants() {
        let mut o = Outbox::new(config());
        for (i, m) in ["a", "b", "c", "d"].into_iter().enumerate() {
            assert_eq!(o.push(MS, m, None), Ok(i as u64 + 1));
        }
        let out = drain(&mut o);
        assert_eq!(sent(&out), vec![1, 2, 3], "the initial window is 3");
        assert_eq!(out[0], Output::Transmit { seq: 1, confirmed: 0, payload: Some("a") });
        o.handle_grant(2 * MS, Grant { confirmed: 2, up_to: 6 });
        let out = drain(&mut o);
        assert_eq!(delivered(&out), vec![1, 2]);
        assert_eq!(out.last(), Some(&Output::Transmit { seq: 4, confirmed: 2, payload: Some("d") }));
        assert_eq!(o.unconfirmed(), 2);
    }

    #[test]
    fn refuses_past_its_capacity_until_confirmations_make_room() {
        let mut o = Outbox::new(config());
        for _ in 0..5 {
            o.push(MS, "m", None).expect("room");
        }
        assert_eq!(o.push(MS, "m", None), Err(OutboxFull(5)));
        o.handle_grant(2 * MS, Grant { confirmed: 1, up_to: 3 });
        assert_eq!(o.push(2 * MS, "m", None), Ok(6));
    }

    #[test]
    fn resends_from_where_the_receiver_asks_and_after_silence() {
        let mut o = Outbox::new(config());
        for m in ["a", "b", "c"] {
            o.push(Duration::ZERO, m, None).expect("room");
        }
        drain(&mut o);
        // A gap at 2: 2 and 3 again.
        o.handle_resend(10 * MS, 2);
        assert_eq!(sent(&drain(&mut o)), vec![2, 3]);
        // A resend request for what is confirmed already changes nothing.
        o.handle_grant(20 * MS, Grant { confirmed: 1, up_to: 3 });
        drain(&mut o);
        o.handle_resend(21 * MS, 1);
        assert_eq!(sent(&drain(&mut o)), vec![2, 3]);
        // No confirmation for a resend period after the last progress (20 ms): all again.
        assert_eq!(o.poll_timeout(), Some(120 * MS));
        o.handle_timeout(119 * MS);
        assert!(drain(&mut o).is_empty());
        o.handle_timeout(120 * MS);
        assert_eq!(sent(&drain(&mut o)), vec![2, 3]);
        // Confirmed at last: nothing left to resend.
        o.handle_grant(130 * MS, Grant { confirmed: 3, up_to: 6 });
        assert_eq!(delivered(&drain(&mut o)), vec![2, 3]);
        assert_eq!(o.poll_timeout(), None);
    }

    #[test]
    fn a_link_that_comes_back_gets_everything_unconfirmed_again() {
        let mut o = Outbox::new(config());
        for m in ["a", "b"] {
            o.push(Duration::ZERO, m, None).expect("room");
        }
        o.handle_grant(MS, Grant { confirmed: 1, up_to: 4 });
        drain(&mut o);
        o.handle_link_up(2 * MS);
        let out = drain(&mut o);
        assert_eq!(out, vec![Output::Transmit { seq: 2, confirmed: 1, payload: Some("b") }]);
    }

    #[test]
    fn a_message_past_its_deadline_expires_and_is_skipped_not_lost_in_the_numbering() {
        let mut o = Outbox::new(OutboxConfig { initial_window: 1, ..config() });
        o.push(Duration::ZERO, "a", Some(50 * MS)).expect("room");
        o.push(Duration::ZERO, "b", Some(50 * MS)).expect("room");
        o.push(Duration::ZERO, "c", None).expect("room");
        assert_eq!(sent(&drain(&mut o)), vec![1], "the window holds 2 and 3 back");
        assert_eq!(o.poll_timeout(), Some(50 * MS));
        o.handle_timeout(50 * MS);
        let out = drain(&mut o);
        assert_eq!(
            out[..2],
            [
                Output::Receipt { seq: 1, fate: Fate::Expired, payload: "a" },
                Output::Receipt { seq: 2, fate: Fate::Expired, payload: "b" }
            ]
        );
        // Granted: 2 goes out as a skip marker, 3 as itself.
        o.handle_grant(60 * MS, Grant { confirmed: 0, up_to: 3 });
        let out = drain(&mut o);
        assert_eq!(
            out,
            vec![
                Output::Transmit { seq: 2, confirmed: 0, payload: None },
                Output::Transmit { seq: 3, confirmed: 0, payload: Some("c") },
            ]
        );
        // Confirming the expired ones reports nothing more for them.
        o.handle_grant(70 * MS, Grant { confirmed: 3, up_to: 4 });
        assert_eq!(delivered(&drain(&mut o)), vec![3]);
    }

    #[test]
    fn a_resumed_stream_numbers_on_from_its_confirmed_watermark() {
        let mut o = Outbox::resume(config(), 10, vec![("k", None), ("l", None)]);
        assert!(drain(&mut o).is_empty(), "nothing sent before the link is up");
        o.handle_link_up(MS);
        assert_eq!(sent(&drain(&mut o)), vec![11, 12]);
        assert_eq!(o.push(MS, "m", None), Ok(13));
        // A confirmation beyond what was ever sent is not believed past what was.
        o.handle_grant(2 * MS, Grant { confirmed: 99, up_to: 99 });
        assert_eq!(delivered(&drain(&mut o)), vec![11, 12, 13]);
        assert_eq!(o.confirmed(), 13);
    }

    #[test]
    fn a_drained_stream_gives_back_what_is_unconfirmed_in_order() {
        let mut o = Outbox::new(config());
        for m in ["a", "b", "c", "d"] {
            o.push(MS, m, Some(50 * MS)).expect("room");
        }
        o.handle_grant(2 * MS, Grant { confirmed: 1, up_to: 10 });
        drain(&mut o);
        assert_eq!(o.drain(), vec![(2, "b"), (3, "c"), (4, "d")]);
        assert_eq!(o.unconfirmed(), 0);
        assert_eq!(o.poll_timeout(), None, "no deadline or resend is left");
        // Numbering goes on after the drained numbers.
        assert_eq!(o.push(3 * MS, "e", None), Ok(5));
    }

    #[test]
    fn deadlines_cost_nothing_per_outstanding_message() {
        // 100,000 outstanding messages, one with a deadline: the next timeout is found
        // without looking at the others, and expiring it touches only it.
        let mut o = Outbox::new(OutboxConfig { initial_window: 10, capacity: 200_000, resend_after: 100 * MS });
        for i in 0..100_000u32 {
            let deadline = (i == 99_999).then_some(20 * MS);
            o.push(MS, "m", deadline).expect("room");
        }
        drain(&mut o);
        assert_eq!(o.poll_timeout(), Some(20 * MS));
        o.handle_timeout(20 * MS);
        let out = drain(&mut o);
        assert_eq!(out, vec![Output::Receipt { seq: 100_000, fate: Fate::Expired, payload: "m" }]);
    }
}
