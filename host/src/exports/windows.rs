//! Reported-time windows: which ones a range covers, and when one is closed
//! enough to export.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::usage::Granularity;

/// Added to every lag: a record stamped in a window's last instant is
/// committed a few milliseconds later.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How many windows of `window` size `[from, to)` touches (a cut window counts whole).
pub fn window_count(window: Granularity, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let (first, last) = bounds(window, from, to);
    (last - first).max(0)
}

/// The first `max` windows `[start, end)` of `window` size that `[from, to)`
/// touches, in order (built lazily: a long range costs `max` windows, not all).
pub fn windows_between(
    window: Granularity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: usize,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let (first, last) = bounds(window, from, to);
    (first..last)
        .take(max)
        .map(|bucket| (window.start_of(bucket), window.start_of(bucket + 1)))
        .collect()
}

/// Whether a window ending at `end` may be exported at `now`: closed, its
/// lag passed, and its last records committed.
pub fn is_closed(end: DateTime<Utc>, lag: Duration, now: DateTime<Utc>) -> bool {
    match chrono::Duration::from_std(lag + SETTLE) {
        Ok(wait) => end + wait <= now,
        Err(_) => false,
    }
}

fn bounds(window: Granularity, from: DateTime<Utc>, to: DateTime<Utc>) -> (i64, i64) {
    let (first, last) = (window.bucket_of(from), window.bucket_of(to));
    (
        first,
        if window.is_boundary(to) {
            last
        } else {
            last + 1
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn windows_cover_a_range_by_whole_windows() {
        let days = windows_between(
            Granularity::Daily,
            t("2026-11-01T00:00:00Z"),
            t("2026-11-03T00:00:00Z"),
            100,
        );
        assert_eq!(
            days,
            [
                (t("2026-11-01T00:00:00Z"), t("2026-11-02T00:00:00Z")),
                (t("2026-11-02T00:00:00Z"), t("2026-11-03T00:00:00Z"))
            ]
        );
        // A range that cuts a window takes the whole window.
        let (from, to) = (t("2026-11-01T00:30:00Z"), t("2026-11-01T02:10:00Z"));
        let hours = windows_between(Granularity::Hourly, from, to, 100);
        assert_eq!(hours.len(), 3);
        assert_eq!(window_count(Granularity::Hourly, from, to), 3);
        assert_eq!(hours[0].0, t("2026-11-01T00:00:00Z"));
        let empty = t("2026-11-02T00:00:00Z");
        assert!(windows_between(Granularity::Daily, empty, empty, 100).is_empty());
    }

    #[test]
    fn a_huge_range_is_counted_not_built() {
        let (from, to) = (t("0001-01-01T00:00:00Z"), t("2026-11-01T00:00:00Z"));
        assert!(window_count(Granularity::Hourly, from, to) > 17_000_000);
        assert_eq!(windows_between(Granularity::Hourly, from, to, 10).len(), 10);
    }

    #[test]
    fn a_window_closes_after_its_lag_and_the_settle_time() {
        let end = t("2026-11-01T10:00:00Z");
        let lag = Duration::from_secs(3_600);
        assert!(!is_closed(end, lag, t("2026-11-01T11:00:01Z")));
        assert!(is_closed(end, lag, t("2026-11-01T11:00:02Z")));
    }
}
