//! Small measuring helpers: percentiles and the process's resident memory.

use std::time::Duration;

/// The `p`-th percentile (0–100) of `samples`.
pub fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Microseconds, for printing.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Milliseconds, for printing.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Mebibytes, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The process's resident set: now, and its peak since the last
/// [`reset_peak_rss`], in bytes (Linux; zeros elsewhere).
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts a new peak of the resident set (Linux's `clear_refs` 5).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// How far the resident set rose above its level at the start, while `run` ran.
pub async fn rss_growth<T, F: std::future::Future<Output = T>>(run: F) -> (T, u64) {
    reset_peak_rss();
    let (before, _) = rss();
    let value = run.await;
    let (_, peak) = rss();
    (value, peak.saturating_sub(before))
}
