//! Flow control from a sender to an actor: credit windows in bytes and messages.
//!
//! The receiver announces a window per (link, target actor). The sender may send tells to
//! an actor while it has credit left in both units ([`SendWindow`]); a message may
//! overdraw the window once, so a message larger than the window still goes out alone.
//! The receiver counts what each link delivered into each actor's mailbox and not yet
//! seen processed ([`InboundAccount`]); when a link's count reaches half its window it
//! sends a probe through the actor's mailbox, and once the actor has handled everything
//! before the probe, the counts the probe covered go back to their senders as credit. So
//! an actor's mailbox holds at most about one window per sending link, and a fast sender
//! slows to the pace of the actor. A link that sends past its window plus one message is
//! breaking the protocol.
//!
//! The same holds for each link as a whole ([`LinkAccount`]): a link's tells to all actors
//! together stay within the link's window, and once they reach half of it every actor
//! holding some of them is probed, so a peer cannot multiply its window by the number of
//! actors it tells.

use serde::{Deserialize, Serialize};

use crate::ids::{IdMap, LinkId, LocalActorId};

/// A window in bytes and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowWindow {
    /// Bytes of message frames.
    pub bytes: u64,
    /// Messages.
    pub msgs: u64,
}

/// The sender's credit toward one actor over one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    window: FlowWindow,
    bytes: i64,
    msgs: i64,
}

impl SendWindow {
    /// A full window.
    pub fn new(window: FlowWindow) -> Self {
        Self { window, bytes: clamp(window.bytes), msgs: clamp(window.msgs) }
    }

    /// True while credit is left in both units.
    #[inline]
    pub fn can_send(&self) -> bool {
        self.bytes > 0 && self.msgs > 0
    }

    /// Takes the credit of one message of `bytes`.
    #[inline]
    pub fn debit(&mut self, bytes: usize) {
        self.bytes -= clamp(bytes as u64);
        self.msgs -= 1;
    }

    /// Gives credit back (never above the window).
    pub fn credit(&mut self, bytes: u64, msgs: u64) {
        self.bytes = (self.bytes + clamp(bytes)).min(clamp(self.window.bytes));
        self.msgs = (self.msgs + clamp(msgs)).min(clamp(self.window.msgs));
    }

    /// Credit left: (bytes, messages), negative when overdrawn.
    pub fn available(&self) -> (i64, i64) {
        (self.bytes, self.msgs)
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Credit to return to a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    /// The link the messages came on.
    pub link: LinkId,
    /// Bytes.
    pub bytes: u64,
    /// Messages.
    pub msgs: u64,
}

/// A link delivered more than its window plus one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sent {bytes} bytes in {msgs} messages to one actor, beyond the window of {window_bytes} bytes and {window_msgs} messages")]
pub struct FlowViolation {
    /// Bytes outstanding.
    pub bytes: u64,
    /// Messages outstanding.
    pub msgs: u64,
    /// The window's bytes.
    pub window_bytes: u64,
    /// The window's messages.
    pub window_msgs: u64,
}

/// The receiver's count of one actor's unprocessed messages, per link.
#[derive(Debug, Clone)]
pub struct InboundAccount {
    window: FlowWindow,
    /// The largest message a link may overdraw its window by.
    max_frame: u64,
    /// Per link: (bytes, messages). A handful of links at most, so a vector.
    outstanding: Vec<(LinkId, (u64, u64))>,
    /// What the probe in flight covers.
    probe: Option<Vec<(LinkId, (u64, u64))>>,
}

impl InboundAccount {
    /// An empty account with `window` per link, allowing one message of up to `max_frame`
    /// bytes over it.
    pub fn new(window: FlowWindow, max_frame: u64) -> Self {
        Self { window, max_frame, outstanding: Vec::new(), probe: None }
    }

    #[inline]
    fn slot(&mut self, link: LinkId) -> &mut (u64, u64) {
        let i = match self.outstanding.iter().position(|(l, _)| *l == link) {
            Some(i) => i,
            None => {
                self.outstanding.push((link, (0, 0)));
                self.outstanding.len() - 1
            }
        };
        &mut self.outstanding[i].1
    }

    /// A message of `bytes` from `link` entered the mailbox. Returns whether a probe should
    /// be sent now (then call [`probe_sent`](Self::probe_sent)), and whether it is the first
    /// message counted for that link.
    #[inline]
    pub fn deliver(&mut self, link: LinkId, bytes: usize) -> Result<(bool, bool), FlowViolation> {
        let (window, max_frame, probing) = (self.window, self.max_frame, self.probe.is_some());
        let entry = self.slot(link);
        let first = *entry == (0, 0);
        entry.0 += bytes as u64;
        entry.1 += 1;
        let (b, m) = *entry;
        if b > window.bytes + max_frame || m > window.msgs + 1 {
            return Err(FlowViolation { bytes: b, msgs: m, window_bytes: window.bytes, window_msgs: window.msgs });
        }
        // Only this link's count changed.
        let due = !probing && (b * 2 >= window.bytes || m * 2 >= window.msgs);
        Ok((due, first))
    }

    fn over_half(&self) -> bool {
        self.outstanding.iter().any(|(_, (b, m))| *b * 2 >= self.window.bytes || *m * 2 >= self.window.msgs)
    }

    /// Takes back a message of `bytes` from `link` that was counted but did not reach the
    /// mailbox.
    pub fn undeliver(&mut self, link: LinkId, bytes: usize) {
        let entry = self.slot(link);
        entry.0 = entry.0.saturating_sub(bytes as u64);
        entry.1 = entry.1.saturating_sub(1);
        self.outstanding.retain(|(_, c)| *c != (0, 0));
    }

    /// A probe went into the mailbox behind everything counted so far.
    pub fn probe_sent(&mut self) {
        self.probe = Some(self.outstanding.clone());
    }

    /// The actor handled the probe: everything it covered is processed. Returns the credit
    /// to send back, and whether another probe should be sent at once.
    pub fn probe_done(&mut self) -> (Vec<Credit>, bool) {
        let covered = self.probe.take().unwrap_or_default();
        let mut credits = Vec::new();
        for (link, (b, m)) in covered {
            if let Some(i) = self.outstanding.iter().position(|(l, _)| *l == link) {
                let entry = &mut self.outstanding[i].1;
                let (b, m) = (b.min(entry.0), m.min(entry.1));
                entry.0 -= b;
                entry.1 -= m;
                if *entry == (0, 0) {
                    self.outstanding.swap_remove(i);
                }
                if b > 0 || m > 0 {
                    credits.push(Credit { link, bytes: b, msgs: m });
                }
            }
        }
        (credits, self.over_half())
    }

    /// The link is gone: its count is dropped (no credit can reach it).
    pub fn forget(&mut self, link: LinkId) {
        self.outstanding.retain(|(l, _)| *l != link);
        if let Some(p) = self.probe.as_mut() {
            p.retain(|(l, _)| *l != link);
        }
    }

    /// The links with messages counted.
    pub fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.outstanding.iter().map(|(l, _)| *l)
    }

    /// Bytes and messages counted for `link`.
    pub fn outstanding(&self, link: LinkId) -> (u64, u64) {
        self.outstanding.iter().find(|(l, _)| *l == link).map_or((0, 0), |(_, c)| *c)
    }

    /// True while a probe is in flight.
    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }
}

/// The receiver's count of one link's unprocessed tells, over all actors.
#[derive(Debug, Clone)]
pub struct LinkAccount {
    window: FlowWindow,
    max_frame: u64,
    bytes: u64,
    msgs: u64,
    /// The actors holding some of this link's tells.
    actors: IdMap<LocalActorId, ()>,
}

impl LinkAccount {
    /// An empty account with `window` for the link, allowing one message of up to
    /// `max_frame` bytes over it.
    pub fn new(window: FlowWindow, max_frame: u64) -> Self {
        Self { window, max_frame, bytes: 0, msgs: 0, actors: IdMap::default() }
    }

    /// A tell of `bytes` for `actor` entered its mailbox (`first`: the first the actor holds
    /// from this link). Returns true once the link holds half its window or more: then every
    /// actor it holds tells in should be probed.
    #[inline]
    pub fn deliver(&mut self, actor: LocalActorId, bytes: usize, first: bool) -> Result<bool, FlowViolation> {
        self.bytes += bytes as u64;
        self.msgs += 1;
        if first {
            self.actors.insert(actor, ());
        }
        if self.bytes > self.window.bytes + self.max_frame || self.msgs > self.window.msgs + 1 {
            return Err(FlowViolation {
                bytes: self.bytes,
                msgs: self.msgs,
                window_bytes: self.window.bytes,
                window_msgs: self.window.msgs,
            });
        }
        Ok(self.over_half())
    }

    /// True while the link holds half its window or more.
    #[inline]
    pub fn over_half(&self) -> bool {
        self.bytes * 2 >= self.window.bytes || self.msgs * 2 >= self.window.msgs
    }

    /// Credit went back for `msgs` tells of `bytes` to `actor`; `drained` if the actor holds
    /// none of this link's tells any more.
    pub fn credited(&mut self, actor: LocalActorId, bytes: u64, msgs: u64, drained: bool) {
        self.bytes = self.bytes.saturating_sub(bytes);
        self.msgs = self.msgs.saturating_sub(msgs);
        if drained {
            self.actors.remove(&actor);
        }
    }

    /// The actors holding tells of this link.
    pub fn actors(&self) -> impl Iterator<Item = LocalActorId> + '_ {
        self.actors.keys().copied()
    }

    /// Bytes and messages counted.
    pub fn outstanding(&self) -> (u64, u64) {
        (self.bytes, self.msgs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: FlowWindow = FlowWindow { bytes: 1000, msgs: 10 };
    const L1: LinkId = LinkId(1);
    const L2: LinkId = LinkId(2);

    #[test]
    fn the_sender_stops_when_either_unit_runs_out_and_credit_never_exceeds_the_window() {
        let mut w = SendWindow::new(W);
        for _ in 0..9 {
            w.debit(10);
        }
        assert!(w.can_send(), "one message left");
        w.debit(10);
        assert!(!w.can_send(), "messages ran out");
        w.credit(5000, 50);
        assert_eq!(w.available(), (1000, 10), "capped at the window");
        w.debit(1500);
        assert_eq!(w.available(), (-500, 9), "one large message overdraws");
        assert!(!w.can_send());
    }

    #[test]
    fn a_probe_starts_at_half_a_window_and_returns_what_it_covered() {
        let mut a = InboundAccount::new(W, 4096);
        assert_eq!(a.deliver(L1, 100), Ok((false, true)));
        assert_eq!(a.deliver(L1, 400), Ok((true, false)), "half the bytes");
        a.probe_sent();
        assert_eq!(a.deliver(L1, 100), Ok((false, false)), "one probe at a time");
        assert_eq!(a.deliver(L2, 10), Ok((false, true)));
        let (credits, again) = a.probe_done();
        assert_eq!(credits, vec![Credit { link: L1, bytes: 500, msgs: 2 }]);
        assert!(!again);
        assert_eq!(a.outstanding(L1), (100, 1), "delivered after the probe: still counted");
        assert_eq!(a.outstanding(L2), (10, 1));
    }

    #[test]
    fn many_small_messages_trigger_a_probe_by_count() {
        let mut a = InboundAccount::new(W, 4096);
        let probes: Vec<bool> = (0..5).map(|_| a.deliver(L1, 1).expect("within").0).collect();
        assert_eq!(probes, [false, false, false, false, true]);
    }

    #[test]
    fn a_link_past_its_window_plus_one_message_breaks_the_protocol() {
        let mut a = InboundAccount::new(W, 500);
        a.deliver(L1, 900).expect("within");
        a.deliver(L1, 500).expect("one message over the window");
        let err = a.deliver(L1, 200).expect_err("beyond");
        assert_eq!(err.bytes, 1600);
        let mut b = InboundAccount::new(W, 500);
        for _ in 0..11 {
            b.deliver(L2, 1).expect("within");
        }
        assert!(b.deliver(L2, 1).is_err(), "twelve messages in a window of ten");
    }

    #[test]
    fn a_forgotten_link_gets_no_credit() {
        let mut a = InboundAccount::new(W, 4096);
        a.deliver(L1, 600).expect("within");
        a.probe_sent();
        a.forget(L1);
        assert_eq!(a.probe_done(), (vec![], false));
    }

    #[test]
    fn a_link_spreading_tells_over_many_actors_is_held_to_its_own_window() {
        let link_window = FlowWindow { bytes: 1000, msgs: 40 };
        let mut total = LinkAccount::new(link_window, 100);
        // Ten actors, four tells each: none is at half its own window of ten...
        let mut probe_all = false;
        for i in 0..40 {
            probe_all |= total.deliver(LocalActorId(i % 10), 10, i < 10).expect("within");
        }
        assert!(probe_all, "...but the link is at its window: every actor must be probed");
        assert_eq!(total.actors().count(), 10);
        assert!(total.deliver(LocalActorId(0), 10, false).is_ok(), "one message over");
        assert!(total.deliver(LocalActorId(0), 10, false).is_err(), "beyond the link's window");
        for i in 0..10 {
            total.credited(LocalActorId(i), 40, 4, i > 0);
        }
        assert_eq!(total.actors().collect::<Vec<_>>(), [LocalActorId(0)]);
        assert_eq!(total.outstanding(), (20, 2));
    }

    #[test]
    fn sender_and_receiver_together_never_hold_more_than_a_window() {
        // A sender at full speed and an actor handling 3 messages per step.
        let mut send = SendWindow::new(W);
        let mut recv = InboundAccount::new(W, 4096);
        let mut mailbox = std::collections::VecDeque::new();
        let mut probe_at: Option<usize> = None;
        let mut handled = 0usize;
        let mut max_mailbox = 0;
        for _ in 0..1000 {
            while send.can_send() {
                send.debit(50);
                mailbox.push_back(50usize);
                if recv.deliver(L1, 50).expect("the sender respects the window").0 {
                    recv.probe_sent();
                    probe_at = Some(handled + mailbox.len());
                }
            }
            max_mailbox = max_mailbox.max(mailbox.len());
            for _ in 0..3 {
                if mailbox.pop_front().is_some() {
                    handled += 1;
                }
                if probe_at.is_some_and(|p| handled >= p) {
                    probe_at = None;
                    let (credits, again) = recv.probe_done();
                    for c in credits {
                        send.credit(c.bytes, c.msgs);
                    }
                    if again {
                        recv.probe_sent();
                        probe_at = Some(handled + mailbox.len());
                    }
                }
            }
        }
        assert!(max_mailbox <= W.msgs as usize, "mailbox peaked at {max_mailbox}");
        assert!(handled >= 2900, "the actor was kept busy: {handled}");
    }
}
