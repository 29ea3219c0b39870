//! The phi accrual failure detector (Hayashibara et al.), as used by Akka and Cassandra:
//! instead of a fixed timeout, it learns the distribution of heartbeat intervals and
//! reports how unlikely the current silence is, as `phi = -log10(P(silence this long))`.
//! Pure: heartbeats and queries take the current time as a `Duration`.

use std::collections::VecDeque;
use std::time::Duration;

/// Settings of a [`PhiAccrual`] detector (Akka's defaults, scaled by the caller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiSettings {
    /// phi above which the member is considered unavailable (Akka: 8).
    pub threshold: f64,
    /// Number of intervals remembered.
    pub max_samples: usize,
    /// Floor of the standard deviation, so a very regular heartbeat is not brittle.
    pub min_std_deviation: Duration,
    /// Silence tolerated on top of the mean interval (pauses, GC, scheduling).
    pub acceptable_pause: Duration,
    /// Interval assumed before enough samples arrived.
    pub first_interval: Duration,
}

impl PhiSettings {
    /// Akka's defaults for a given heartbeat interval: threshold 8, 1000 samples,
    /// min std-dev 100 ms, acceptable pause 3 intervals.
    pub fn for_interval(interval: Duration) -> Self {
        Self {
            threshold: 8.0,
            max_samples: 1000,
            min_std_deviation: Duration::from_millis(100).min(interval),
            acceptable_pause: interval * 3,
            first_interval: interval,
        }
    }
}

/// A phi accrual detector for one monitored member.
#[derive(Debug, Clone)]
pub struct PhiAccrual {
    settings: PhiSettings,
    intervals: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    last: Option<Duration>,
}

impl PhiAccrual {
    /// A detector that has seen no heartbeat yet.
    pub fn new(settings: PhiSettings) -> Self {
        Self { settings, intervals: VecDeque::new(), sum: 0.0, sum_sq: 0.0, last: None }
    }

    /// Records a heartbeat at `now`.
    pub fn heartbeat(&mut self, now: Duration) {
        match self.last {
            None => {
                // Seed with the expected interval, so early silence is judged sensibly.
                let first = self.settings.first_interval.as_secs_f64() * 1000.0;
                self.push(first);
                self.push(first);
            }
            Some(last) => {
                let interval = now.saturating_sub(last).as_secs_f64() * 1000.0;
                self.push(interval);
            }
        }
        self.last = Some(now);
    }

    fn push(&mut self, ms: f64) {
        if self.intervals.len() >= self.settings.max_samples.max(1) {
            if let Some(old) = self.intervals.pop_front() {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
        self.intervals.push_back(ms);
        self.sum += ms;
        self.sum_sq += ms * ms;
    }

    /// The suspicion level at `now` (0 before the first heartbeat).
    pub fn phi(&self, now: Duration) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let n = self.intervals.len().max(1) as f64;
        let mean = self.sum / n + self.settings.acceptable_pause.as_secs_f64() * 1000.0;
        let variance = (self.sum_sq / n - (self.sum / n).powi(2)).max(0.0);
        let std = variance.sqrt().max(self.settings.min_std_deviation.as_secs_f64() * 1000.0);
        let elapsed = now.saturating_sub(last).as_secs_f64() * 1000.0;
        // Logistic approximation of the normal CDF, as in Akka.
        let y = (elapsed - mean) / std;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        if elapsed > mean {
            -(e / (1.0 + e)).log10()
        } else {
            -(1.0 - 1.0 / (1.0 + e)).log10()
        }
    }

    /// True if phi at `now` is below the threshold.
    pub fn is_available(&self, now: Duration) -> bool {
        self.phi(now) < self.settings.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn phi_grows_with_silence_and_crosses_the_threshold_after_the_acceptable_pause() {
        let mut d = PhiAccrual::new(PhiSettings::for_interval(ms(100)));
        let mut t = 0;
        for _ in 0..50 {
            d.heartbeat(ms(t));
            t += 100;
        }
        let last = t - 100;
        assert!(d.is_available(ms(last + 100)));
        assert!(d.phi(ms(last + 200)) < d.phi(ms(last + 400)));
        assert!(d.is_available(ms(last + 300)), "within the acceptable pause");
        assert!(!d.is_available(ms(last + 1000)), "phi {} after 1 s", d.phi(ms(last + 1000)));
    }

    #[test]
    fn it_adapts_to_jittery_heartbeats() {
        let settings = PhiSettings::for_interval(ms(200));
        let mut steady = PhiAccrual::new(settings);
        let mut jittery = PhiAccrual::new(settings);
        let (mut a, mut b) = (0u64, 0u64);
        for i in 0..200u64 {
            steady.heartbeat(ms(a));
            jittery.heartbeat(ms(b));
            a += 200;
            b += if i % 2 == 0 { 50 } else { 350 };
        }
        let (la, lb) = (a - 200, b - 350);
        let silence = 1000;
        let (p_steady, p_jittery) = (steady.phi(ms(la + silence)), jittery.phi(ms(lb + silence)));
        assert!(p_jittery < p_steady, "jitter widens tolerance: {p_jittery} vs {p_steady}");
    }

    #[test]
    fn no_heartbeat_means_no_suspicion_yet() {
        let d = PhiAccrual::new(PhiSettings::for_interval(ms(100)));
        assert_eq!(d.phi(ms(10_000)), 0.0);
    }
}
