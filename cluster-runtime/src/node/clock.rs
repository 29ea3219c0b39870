//! The node's clock: time since the node started, from tokio's clock (so paused and
//! simulated time work), as the `Duration` the pure cores take.

use std::time::Duration;

use tokio::time::Instant;

/// Time since the node started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn start() -> Self {
        Self { start: Instant::now() }
    }

    /// Time since the start.
    pub(crate) fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The instant `at` after the start.
    pub(crate) fn instant(&self, at: Duration) -> Instant {
        self.start + at
    }
}
