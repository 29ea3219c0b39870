//! Delivery guarantees beyond at-most-once, pure: the pieces the delivery service drives.
//!
//! - [`outbox`]: the sender's side of a reliable stream (sequence numbers, the window the
//!   receiver grants, unconfirmed messages kept until confirmed, resends, deadlines).
//! - [`inbox`]: the receiver's side (in order or on arrival, at most once per stream, gaps
//!   asked for again, confirmations after the handler ran).
//! - [`dedup`]: exactly-once de-duplication by message id within a window, with the replies
//!   of asks kept for retries.
//! - [`transaction`]: all targets or none, by two-phase commit with presumed abort.
//! - [`causal`]: vector clocks and the hold-back queue of causal delivery in a group.
//! - [`wire`]: the frames of the delivery service.

pub mod causal;
pub mod dedup;
pub mod inbox;
pub mod outbox;
pub mod transaction;
pub mod wire;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::inbox::{self, Inbox, InboxConfig};
    use super::outbox::{self, Fate, Grant, Outbox, OutboxConfig, Seq};

    /// A frame between the two sides.
    #[derive(Debug, Clone)]
    enum Wire {
        Message { seq: Seq, confirmed: Seq, payload: Option<u32> },
        Grant(Grant),
        Resend(Seq),
    }

    /// One stream over a link that loses, duplicates, delays and reorders frames (and goes
    /// down and up now and then), with a receiver that handles each delivery a little later:
    /// every message is handled, in order if the stream is ordered, exactly once, and every
    /// one is confirmed to the sender.
    fn lossy_stream(seed: u64, ordered: bool) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let ms = Duration::from_millis(1);
        let mut out = Outbox::new(OutboxConfig { initial_window: 8, capacity: 64, resend_after: 40 * ms });
        let mut inb = Inbox::new(InboxConfig { ordered, window: 16, ..InboxConfig::default() });
        // Frames in flight, by arrival time (ties broken by a counter).
        let mut flight: BTreeMap<(Duration, u64), (bool, Wire)> = BTreeMap::new();
        let mut handling: BTreeMap<(Duration, u64), Seq> = BTreeMap::new();
        let (mut handled, mut delivered_receipts, mut n) = (Vec::new(), Vec::new(), 0u64);
        let total = 300u32;
        let mut pushed = 0u32;
        let mut now = Duration::ZERO;
        while delivered_receipts.len() < total as usize {
            assert!(
                now < Duration::from_secs(600),
                "stuck (seed {seed}): {} of {total} confirmed",
                delivered_receipts.len()
            );
            if pushed < total && out.unconfirmed() < 64 && rng.random_bool(0.5) {
                out.push(now, pushed, None).expect("room");
                pushed += 1;
            }
            if rng.random_bool(0.01) {
                out.handle_link_up(now);
            }
            // Sender outputs onto the wire.
            while let Some(o) = out.poll_output() {
                match o {
                    outbox::Output::Transmit { seq, confirmed, payload } => {
                        send(&mut rng, &mut flight, &mut n, now, true, Wire::Message { seq, confirmed, payload })
                    }
                    outbox::Output::Receipt { seq, fate, .. } => {
                        assert_eq!(fate, Fate::Delivered);
                        delivered_receipts.push(seq);
                    }
                }
            }
            while let Some(o) = inb.poll_output() {
                match o {
                    inbox::Output::Deliver { seq, payload } => {
                        assert_eq!(u64::from(payload) + 1, seq, "the payload of its number");
                        handled.push(seq);
                        n += 1;
                        handling.insert((now + ms * rng.random_range(0..5), n), seq);
                    }
                    inbox::Output::Grant(g) => send(&mut rng, &mut flight, &mut n, now, false, Wire::Grant(g)),
                    inbox::Output::Resend { from } => {
                        send(&mut rng, &mut flight, &mut n, now, false, Wire::Resend(from))
                    }
                }
            }
            now += ms;
            while let Some(entry) = handling.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                inb.handle_handled(now, entry.remove());
            }
            while let Some(entry) = flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                match entry.remove() {
                    (true, Wire::Message { seq, confirmed, payload }) => {
                        inb.handle_message(now, seq, confirmed, payload).expect("within the window");
                    }
                    (_, Wire::Grant(g)) => out.handle_grant(now, g),
                    (_, Wire::Resend(from)) => out.handle_resend(now, from),
                    (false, Wire::Message { .. }) => unreachable!(),
                }
            }
            out.handle_timeout(now);
            inb.handle_timeout(now);
        }
        let expected: Vec<Seq> = (1..=u64::from(total)).collect();
        if ordered {
            assert_eq!(handled, expected, "in order, each once (seed {seed})");
        } else {
            let mut sorted = handled.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, expected, "each once (seed {seed})");
        }
        assert_eq!(delivered_receipts, expected, "every message confirmed, in order (seed {seed})");
    }

    /// Loses 20 %, duplicates 10 %, delays 0–30 ms (which reorders).
    fn send(
        rng: &mut SmallRng,
        flight: &mut BTreeMap<(Duration, u64), (bool, Wire)>,
        n: &mut u64,
        now: Duration,
        to_receiver: bool,
        frame: Wire,
    ) {
        let copies = if rng.random_bool(0.2) {
            0
        } else if rng.random_bool(0.1) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            *n += 1;
            let at = now + Duration::from_millis(rng.random_range(0..30));
            flight.insert((at, *n), (to_receiver, frame.clone()));
        }
    }

    #[test]
    fn a_stream_over_a_lossy_link_handles_everything_once_and_confirms_it() {
        for seed in 0..50 {
            lossy_stream(seed, true);
            lossy_stream(seed, false);
        }
    }
}
