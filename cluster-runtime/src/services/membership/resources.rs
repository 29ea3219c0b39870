//! Sampling this process's resource use for resource reports (Linux `/proc`; zeros elsewhere).

use std::time::Duration;

/// Remembers the previous CPU sample, to report usage over the interval between samples.
#[derive(Debug, Default)]
pub(crate) struct CpuSampler {
    last: Option<(Duration, u64)>,
}

/// `/proc` reports CPU time in units of USER_HZ, which Linux fixes at 100 for user space.
const USER_HZ: u64 = 100;
/// Page size used to convert resident pages to bytes.
const PAGE_SIZE: u64 = 4096;

impl CpuSampler {
    /// CPU use in thousandths of a core since the previous call (`now` is any monotonic time).
    pub(crate) fn millicores(&mut self, now: Duration) -> u32 {
        let Some(ticks) = process_cpu_ticks() else { return 0 };
        let used = match self.last {
            Some((then, prev)) if now > then => {
                let cpu = ticks.saturating_sub(prev) as f64 / USER_HZ as f64;
                (cpu / (now - then).as_secs_f64() * 1000.0) as u32
            }
            _ => 0,
        };
        self.last = Some((now, ticks));
        used
    }
}

fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of this process in bytes (0 if unknown).
pub(crate) fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods, reason = "burns real CPU time to measure it")]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            assert!(resident_memory() > 0);
            let mut s = CpuSampler::default();
            assert_eq!(s.millicores(Duration::from_secs(1)), 0, "first sample has no interval");
            let spin = std::time::Instant::now();
            while spin.elapsed() < Duration::from_millis(100) {}
            assert!(s.millicores(Duration::from_secs(2)) <= 4000, "at most the machine's cores");
        }
    }
}
