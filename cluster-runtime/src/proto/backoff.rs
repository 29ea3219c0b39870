//! Reconnect backoff: exponential growth with jitter, from an injected seeded RNG.

use std::time::Duration;

use rand::{rngs::SmallRng, Rng, SeedableRng};

/// Exponential backoff with "equal jitter": each delay is drawn from `[d/2, d]`, where `d`
/// doubles per attempt from `base` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: SmallRng,
}

impl Backoff {
    /// Creates a backoff starting at `base`, capped at `max`, with jitter from `seed`.
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self { base, max: max.max(base), attempt: 0, rng: SmallRng::seed_from_u64(seed) }
    }

    /// The delay to wait before the next attempt; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_nanos = self.rng.random_range(0..=half.as_nanos().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_nanos(jitter_nanos)
    }

    /// Forgets past failures: the next delay starts again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays have been handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut b = Backoff::new(base, max, 7);
        for attempt in 0..10u32 {
            let d = b.next_delay();
            let ceiling = (base * 2u32.pow(attempt)).min(max);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: {d:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= base);
    }

    #[test]
    fn same_seed_same_delays() {
        let mk = || Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 42);
        let (mut a, mut b) = (mk(), mk());
        for _ in 0..20 {
            assert_eq!(a.next_delay(), b.next_delay());
        }
    }
}
