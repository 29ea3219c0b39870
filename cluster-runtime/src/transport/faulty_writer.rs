//! The link writer used when a test imposes network conditions: every frame gets a
//! [`Fate`] from the [`NetworkFaults`] plan and is dropped, duplicated or held back in a
//! delay queue before it reaches the real socket. Compiled only with the `testkit` feature.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::proto::frame::EncodedFrame;
use crate::testkit::faults::{Fate, NetworkFaults};

struct Held {
    due: Instant,
    seq: u64,
    frame: EncodedFrame,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

struct Scheduler {
    faults: NetworkFaults,
    from: String,
    to: String,
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
    wire_free_at: Instant,
}

impl Scheduler {
    fn schedule(&mut self, frame: EncodedFrame) {
        let Fate::Deliver { copies, delay } = self.faults.fate(&self.from, &self.to) else { return };
        let now = Instant::now();
        // The bandwidth cap serializes frames on the wire; latency comes on top.
        let start = self.wire_free_at.max(now);
        self.wire_free_at = start + self.faults.transmit_time(&self.from, &self.to, frame.len());
        let due = self.wire_free_at + delay;
        for _ in 1..copies {
            self.seq += 1;
            self.held.push(Reverse(Held { due, seq: self.seq, frame: frame.clone() }));
        }
        self.seq += 1;
        self.held.push(Reverse(Held { due, seq: self.seq, frame }));
    }

    fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    fn take_due(&mut self, buf: &mut Vec<u8>) {
        let now = Instant::now();
        while self.next_due().is_some_and(|d| d <= now) {
            if let Some(Reverse(h)) = self.held.pop() {
                buf.extend_from_slice(&h.frame);
            }
        }
    }
}

/// One direction of traffic and the plan that governs it.
pub(crate) struct Direction {
    pub(crate) faults: NetworkFaults,
    pub(crate) from: String,
    pub(crate) to: String,
}

/// Writes queued frames under the conditions the plan imposes on `direction`.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::Receiver<EncodedFrame>,
    heartbeat: EncodedFrame,
    heartbeat_interval: Duration,
    close: CancellationToken,
    direction: Direction,
) {
    let Direction { faults, from, to } = direction;
    let mut sched = Scheduler { faults, from, to, held: BinaryHeap::new(), seq: 0, wire_free_at: Instant::now() };
    let mut batch = Vec::new();
    let mut buf = Vec::new();
    let mut ticks = tokio::time::interval(heartbeat_interval);
    ticks.reset();
    let mut wrote = false;
    let mut open = true;
    while open || sched.next_due().is_some() {
        let next_due = sched.next_due();
        tokio::select! {
            biased;
            () = close.cancelled() => return,
            n = queue.recv_many(&mut batch, 1024), if open => {
                if n == 0 {
                    open = false;
                }
                for f in batch.drain(..) {
                    sched.schedule(f);
                }
                wrote = true;
            }
            () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
            _ = ticks.tick(), if open => {
                if !std::mem::take(&mut wrote) {
                    sched.schedule(heartbeat.clone());
                }
            }
        }
        sched.take_due(&mut buf);
        if buf.is_empty() {
            continue;
        }
        let written = tokio::select! {
            biased;
            () = close.cancelled() => return,
            r = async { writer.write_all(&buf).await?; writer.flush().await } => r,
        };
        if written.is_err() {
            close.cancel();
            return;
        }
        buf.clear();
    }
    let _ = writer.shutdown().await;
}
