//! The receiving side of one reliable stream (see [`outbox`](super::outbox)), pure.
//!
//! - A stream it does not know yet starts right after the sender's confirmed watermark
//!   (the first message, or the first after this receiver restarted).
//! - **Ordered** streams deliver in sequence: a message after a gap is held back until the
//!   gap is filled. **Unordered** streams deliver each message when it arrives. Either
//!   way a number is delivered at most once per stream, and a gap makes the inbox ask the
//!   sender to resend from the first missing number, again every
//!   [`InboxConfig::resend_after`] while it lasts.
//! - The driver reports when the handler has run ([`Inbox::handle_handled`]): the
//!   confirmation the sender gets is application-level. Confirmations go out as grants
//!   (confirmed watermark plus the window the sender may fill): at once when everything
//!   delivered is handled or [`InboxConfig::ack_every`] more are, otherwise after
//!   [`InboxConfig::ack_delay`].
//! - A message beyond the window is refused: the sender broke the protocol.
//!
//! Outputs, in order: deliveries, resend requests and grants as they happen.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::outbox::{Grant, Seq};

/// How a receiver's inbox behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxConfig {
    /// Deliver in sequence, holding back what follows a gap.
    pub ordered: bool,
    /// How far past its confirmed watermark the sender may go.
    pub window: u64,
    /// How long a gap waits before the inbox asks for it again.
    pub resend_after: Duration,
    /// A grant goes out at once when this many more are confirmed.
    pub ack_every: u64,
    /// Otherwise confirmations wait at most this long.
    pub ack_delay: Duration,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            ordered: true,
            window: 256,
            resend_after: Duration::from_millis(200),
            ack_every: 32,
            ack_delay: Duration::from_millis(5),
        }
    }
}

/// What the inbox asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Hand message `seq` to the handler, then report [`Inbox::handle_handled`].
    Deliver {
        /// Its sequence number.
        seq: Seq,
        /// The message.
        payload: P,
    },
    /// Ask the sender to resend everything from `from` on.
    Resend {
        /// The first missing number.
        from: Seq,
    },
    /// Tell the sender what is confirmed and how far it may send.
    Grant(Grant),
}

/// A message the sender should not have sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {
    /// Past the window the receiver granted.
    #[error("message {seq} is past the window (up to {up_to})")]
    BeyondWindow {
        /// Its number.
        seq: Seq,
        /// The last number the window allows.
        up_to: Seq,
    },
}

/// The receiving side of one stream.
#[derive(Debug)]
pub struct Inbox<P> {
    config: InboxConfig,
    /// A message came: the numbering is known.
    started: bool,
    /// Delivered (or skipped) with none missing up to here.
    delivered: Seq,
    /// Ordered: messages past a gap, waiting (`None`: a skip marker).
    waiting: BTreeMap<Seq, Option<P>>,
    /// Unordered: numbers past a gap already delivered.
    ahead: BTreeSet<Seq>,
    /// Handled with none missing up to here.
    confirmed: Seq,
    /// Handled past `confirmed`.
    handled: BTreeSet<Seq>,
    /// The confirmed watermark of the last grant.
    granted: Seq,
    ack_at: Option<Duration>,
    resend_at: Option<Duration>,
    out: VecDeque<Output<P>>,
}

impl<P> Inbox<P> {
    /// An inbox for a stream not seen yet.
    pub fn new(config: InboxConfig) -> Self {
        Self {
            config,
            started: false,
            delivered: 0,
            waiting: BTreeMap::new(),
            ahead: BTreeSet::new(),
            confirmed: 0,
            handled: BTreeSet::new(),
            granted: 0,
            ack_at: None,
            resend_at: None,
            out: VecDeque::new(),
        }
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.out.pop_front()
    }

    /// The next deadline: a delayed grant or a resend request.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match (self.ack_at, self.resend_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handled with none missing up to here.
    pub fn confirmed(&self) -> Seq {
        self.confirmed
    }

    /// Message `seq` (`None`: a skipped one) from a sender whose confirmed watermark is
    /// `sender_confirmed`.
    pub fn handle_message(
        &mut self,
        now: Duration,
        seq: Seq,
        sender_confirmed: Seq,
        payload: Option<P>,
    ) -> Result<(), InboxError> {
        if !self.started || sender_confirmed > self.delivered {
            // A new stream, or one this receiver lost track of: it goes on from there.
            self.started = true;
            self.skip_to(sender_confirmed);
        }
        let up_to = self.confirmed + self.config.window;
        if seq > up_to {
            return Err(InboxError::BeyondWindow { seq, up_to });
        }
        if seq <= self.delivered || self.waiting.contains_key(&seq) || self.ahead.contains(&seq) {
            // Seen already: the sender may have missed the confirmation.
            if seq <= self.confirmed {
                self.grant();
            }
            return Ok(());
        }
        if seq == self.delivered + 1 {
            self.deliver(seq, payload);
            self.advance();
        } else if self.config.ordered {
            self.waiting.insert(seq, payload);
        } else {
            self.deliver(seq, payload);
            self.ahead.insert(seq);
        }
        self.check_gap(now);
        self.maybe_grant(now);
        Ok(())
    }

    /// The handler has run for message `seq`.
    pub fn handle_handled(&mut self, now: Duration, seq: Seq) {
        if seq == self.confirmed + 1 && self.handled.is_empty() {
            // In order, the common case: nothing to look up.
            self.confirmed = seq;
            self.maybe_grant(now);
        } else if seq > self.confirmed {
            self.handled.insert(seq);
            self.confirm();
            self.maybe_grant(now);
        }
    }

    /// Time passed: a delayed grant goes out, a gap still open is asked for again.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.ack_at.is_some_and(|at| at <= now) {
            self.ack_at = None;
            if self.confirmed > self.granted {
                self.grant();
            }
        }
        if self.resend_at.is_some_and(|at| at <= now) {
            self.resend_at = None;
            self.check_gap(now);
        }
    }

    fn deliver(&mut self, seq: Seq, payload: Option<P>) {
        match payload {
            Some(payload) => self.out.push_back(Output::Deliver { seq, payload }),
            // A skipped message counts as handled.
            None => {
                self.handled.insert(seq);
            }
        }
    }

    /// Moves the delivered watermark over everything contiguous past it.
    fn advance(&mut self) {
        self.delivered += 1;
        if self.waiting.is_empty() && self.ahead.is_empty() && self.handled.is_empty() {
            // Nothing past a gap, nothing handled ahead: the common case.
            return;
        }
        loop {
            let next = self.delivered + 1;
            if let Some(payload) = self.waiting.remove(&next) {
                self.deliver(next, payload);
            } else if !self.ahead.remove(&next) {
                break;
            }
            self.delivered = next;
        }
        self.confirm();
    }

    fn confirm(&mut self) {
        while self.handled.remove(&(self.confirmed + 1)) {
            self.confirmed += 1;
        }
    }

    /// The sender says everything up to `to` is confirmed: nothing before it is expected.
    fn skip_to(&mut self, to: Seq) {
        self.delivered = self.delivered.max(to);
        self.confirmed = self.confirmed.max(to);
        self.granted = self.granted.max(to);
        self.waiting = self.waiting.split_off(&(to + 1));
        self.ahead = self.ahead.split_off(&(to + 1));
        self.handled = self.handled.split_off(&(to + 1));
        // What waited just past the new start goes now (with what follows it).
        let next = self.delivered + 1;
        if let Some(payload) = self.waiting.remove(&next) {
            self.deliver(next, payload);
            self.advance();
        } else if self.ahead.remove(&next) {
            self.advance();
        }
        self.confirm();
    }

    /// Asks for the first missing number if something past a gap arrived.
    fn check_gap(&mut self, now: Duration) {
        let gap = !self.waiting.is_empty() || !self.ahead.is_empty();
        if !gap {
            self.resend_at = None;
        } else if self.resend_at.is_none() {
            self.out.push_back(Output::Resend { from: self.delivered + 1 });
            self.resend_at = Some(now + self.config.resend_after);
        }
    }

    fn maybe_grant(&mut self, now: Duration) {
        if self.confirmed <= self.granted {
            return;
        }
        let all_handled = self.confirmed == self.delivered && self.waiting.is_empty() && self.ahead.is_empty();
        if all_handled || self.confirmed - self.granted >= self.config.ack_every {
            self.grant();
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + self.config.ack_delay);
        }
    }

    fn grant(&mut self) {
        self.granted = self.confirmed;
        self.ack_at = None;
        self.out
            .push_back(Output::Grant(Grant { confirmed: self.confirmed, up_to: self.confirmed + self.config.window }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config(ordered: bool) -> InboxConfig {
        InboxConfig { ordered, window: 8, resend_after: 50 * MS, ack_every: 3, ack_delay: 5 * MS }
    }

    fn drain(i: &mut Inbox<&'static str>) -> Vec<Output<&'static str>> {
        std::iter::from_fn(|| i.poll_output()).collect()
    }

    fn deliveries(out: &[Output<&'static str>]) -> Vec<Seq> {
        out.iter().filter_map(|o| if let Output::Deliver { seq, .. } = o { Some(*seq) } else { None }).collect()
    }

    fn grant(confirmed: Seq) -> Output<&'static str> {
        Output::Grant(Grant { confirmed, up_to: confirmed + 8 })
    }

    #[test]
    fn ordered_holds_back_past_a_gap_and_asks_for_it() {
        let mut i = Inbox::new(config(true));
        i.handle_message(Duration::ZERO, 1, 0, Some("a")).expect("in window");
        i.handle_message(Duration::ZERO, 3, 0, Some("c")).expect("in window");
        i.handle_message(Duration::ZERO, 4, 0, Some("d")).expect("in window");
        assert_eq!(drain(&mut i), vec![Output::Deliver { seq: 1, payload: "a" }, Output::Resend { from: 2 }]);
        // Still missing after the resend period: asked again.
        i.handle_timeout(50 * MS);
        assert_eq!(drain(&mut i), vec![Output::Resend { from: 2 }]);
        i.handle_message(60 * MS, 2, 0, Some("b")).expect("in window");
        assert_eq!(deliveries(&drain(&mut i)), vec![2, 3, 4], "in order once the gap is filled");
        assert_eq!(i.poll_timeout(), None, "no gap left to ask for");
    }

    #[test]
    fn a_message_waiting_past_a_gap_goes_when_the_sender_says_the_gap_is_confirmed() {
        // A receiver that lost track of the stream (its peer was marked down and back up)
        // gets 51 while the sender still waits for 50's confirmation, then 52 with 50
        // confirmed: 51 and 52 are delivered, in order.
        let mut i = Inbox::new(InboxConfig { window: 1024, ..config(true) });
        i.handle_message(Duration::ZERO, 51, 49, Some("51")).expect("in window");
        assert_eq!(deliveries(&drain(&mut i)), Vec::<Seq>::new(), "50 may still come");
        i.handle_message(MS, 52, 50, Some("52")).expect("in window");
        assert_eq!(deliveries(&drain(&mut i)), vec![51, 52]);
        // The same for an unordered stream's numbers delivered ahead of the start.
        let mut u = Inbox::new(InboxConfig { window: 1024, ..config(false) });
        u.handle_message(Duration::ZERO, 51, 49, Some("51")).expect("in window");
        u.handle_message(MS, 53, 50, Some("53")).expect("in window");
        u.handle_message(MS, 52, 50, Some("52")).expect("in window");
        assert_eq!(deliveries(&drain(&mut u)), vec![51, 53, 52]);
        u.handle_handled(2 * MS, 51);
        u.handle_handled(2 * MS, 52);
        u.handle_handled(2 * MS, 53);
        u.handle_timeout(10 * MS);
        assert!(drain(&mut u).contains(&Output::Grant(Grant { confirmed: 53, up_to: 53 + 1024 })), "all confirmed");
    }

    #[test]
    fn unordered_delivers_on_arrival_and_never_twice() {
        let mut i = Inbox::new(config(false));
        i.handle_message(Duration::ZERO, 2, 0, Some("b")).expect("in window");
        assert_eq!(drain(&mut i), vec![Output::Deliver { seq: 2, payload: "b" }, Output::Resend { from: 1 }]);
        // The resend brings 1 and 2 again: only 1 is new.
        i.handle_message(MS, 1, 0, Some("a")).expect("in window");
        i.handle_message(MS, 2, 0, Some("b")).expect("in window");
        assert_eq!(deliveries(&drain(&mut i)), vec![1]);
    }

    #[test]
    fn confirms_only_what_was_handled_without_gaps() {
        let mut i = Inbox::new(config(false));
        for (seq, m) in [(1, "a"), (2, "b"), (3, "c")] {
            i.handle_message(Duration::ZERO, seq, 0, Some(m)).expect("in window");
        }
        drain(&mut i);
        // 2 and 3 ran, 1 has not: nothing is confirmed.
        i.handle_handled(MS, 3);
        i.handle_handled(MS, 2);
        assert!(drain(&mut i).is_empty());
        assert_eq!(i.confirmed(), 0);
        // 1 ran: all three confirmed at once (everything delivered is handled).
        i.handle_handled(2 * MS, 1);
        assert_eq!(drain(&mut i), vec![grant(3)]);
    }

    #[test]
    fn grants_are_batched_under_load_and_delayed_when_few() {
        let mut i = Inbox::new(config(true));
        for seq in 1..=5 {
            i.handle_message(Duration::ZERO, seq, 0, Some("m")).expect("in window");
        }
        drain(&mut i);
        i.handle_handled(MS, 1);
        assert!(drain(&mut i).is_empty(), "1 of 5 handled: the grant waits");
        assert_eq!(i.poll_timeout(), Some(6 * MS));
        i.handle_handled(2 * MS, 2);
        i.handle_handled(2 * MS, 3);
        assert_eq!(drain(&mut i), vec![grant(3)], "ack_every = 3");
        i.handle_handled(3 * MS, 4);
        assert!(drain(&mut i).is_empty());
        i.handle_timeout(8 * MS);
        assert_eq!(drain(&mut i), vec![grant(4)], "after the delay");
    }

    #[test]
    fn a_duplicate_of_a_confirmed_message_is_answered_with_the_grant() {
        let mut i = Inbox::new(config(true));
        i.handle_message(Duration::ZERO, 1, 0, Some("a")).expect("in window");
        i.handle_handled(MS, 1);
        assert_eq!(drain(&mut i), vec![Output::Deliver { seq: 1, payload: "a" }, grant(1)]);
        i.handle_message(2 * MS, 1, 0, Some("a")).expect("in window");
        assert_eq!(drain(&mut i), vec![grant(1)], "the sender missed it: told again, not delivered");
    }

    #[test]
    fn a_new_receiver_starts_after_the_senders_watermark_and_skips_count_as_handled() {
        let mut i = Inbox::new(config(true));
        // The sender had 10 confirmed by an earlier incarnation of this receiver.
        i.handle_message(Duration::ZERO, 12, 10, Some("l")).expect("in window");
        assert_eq!(drain(&mut i), vec![Output::Resend { from: 11 }]);
        // 11 expired at the sender: it comes as a skip marker.
        i.handle_message(MS, 11, 10, None).expect("in window");
        assert_eq!(deliveries(&drain(&mut i)), vec![12]);
        i.handle_handled(2 * MS, 12);
        assert_eq!(drain(&mut i), vec![grant(12)]);
    }

    #[test]
    fn a_message_past_the_window_is_refused() {
        let mut i = Inbox::new(config(true));
        assert_eq!(
            i.handle_message(Duration::ZERO, 9, 0, Some("x")),
            Err(InboxError::BeyondWindow { seq: 9, up_to: 8 })
        );
        assert!(drain(&mut i).is_empty());
    }
}
