//! The frame-shaping hook: a [`Shaper`] decides, per direction between two named nodes,
//! what happens to each frame a link writes (dropped, duplicated, held back for a delay,
//! or slowed to a bandwidth). Tests plug in the test kit's fault plan; without a shaper
//! the link writes frames as they come.
//!
//! `ShapedDirection` is the delay queue the link writer keeps for one shaped direction.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::proto::wire::frame::EncodedFrame;

/// What happens to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The frame is dropped.
    Drop,
    /// The frame is written `copies` times after `delay`.
    Deliver {
        /// How many times it is written (2 = duplicated).
        copies: u32,
        /// How long it is held before it is written.
        delay: Duration,
    },
}

/// Decides the fate of the frames between named nodes.
pub trait Shaper: Send + Sync + 'static {
    /// The name of the node listening on `addr`, if known, so that a connection's
    /// direction is known before the peer's hello.
    fn name_of(&self, addr: &str) -> Option<String>;
    /// True if nothing from `from` reaches `to`, handshakes included.
    fn is_blocked(&self, from: &str, to: &str) -> bool;
    /// The fate of the next frame from `from` to `to`.
    fn fate(&self, from: &str, to: &str) -> Fate;
    /// How long writing `bytes` from `from` to `to` takes (a bandwidth cap).
    fn transmit_time(&self, from: &str, to: &str, bytes: usize) -> Duration;
}

/// Shared handle to a [`Shaper`], as held by the configuration's hooks.
#[derive(Clone)]
pub struct ShaperHandle(pub Arc<dyn Shaper>);

impl std::fmt::Debug for ShaperHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shaper")
    }
}

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

/// The frames of one shaped direction, held until they are due.
pub(crate) struct ShapedDirection {
    shaper: Arc<dyn Shaper>,
    from: String,
    to: String,
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
    wire_free_at: Instant,
}

impl ShapedDirection {
    pub(crate) fn new(shaper: Arc<dyn Shaper>, from: String, to: String) -> Self {
        Self { shaper, from, to, held: BinaryHeap::new(), seq: 0, wire_free_at: Instant::now() }
    }

    /// Asks the shaper what happens to `frame` and holds it (or its copies) accordingly.
    pub(crate) fn schedule(&mut self, frame: EncodedFrame) {
        let Fate::Deliver { copies, delay } = self.shaper.fate(&self.from, &self.to) else { return };
        let now = Instant::now();
        // The bandwidth cap serializes frames on the wire; latency comes on top.
        let start = self.wire_free_at.max(now);
        self.wire_free_at = start + self.shaper.transmit_time(&self.from, &self.to, frame.len());
        let due = self.wire_free_at + delay;
        for _ in 1..copies {
            self.seq += 1;
            self.held.push(Reverse(Held { due, seq: self.seq, frame: frame.clone() }));
        }
        self.seq += 1;
        self.held.push(Reverse(Held { due, seq: self.seq, frame }));
    }

    /// When the next held frame is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|Reverse(h)| h.due)
    }

    /// Appends every frame due by now to `buf`.
    pub(crate) fn take_due(&mut self, buf: &mut Vec<u8>) {
        let now = Instant::now();
        while self.next_due().is_some_and(|d| d <= now) {
            if let Some(Reverse(h)) = self.held.pop() {
                buf.extend_from_slice(&h.frame);
            }
        }
    }
}
