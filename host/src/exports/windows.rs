//! Reported-time windows: their sizes (an hour, a day, a calendar month), which
//! ones a range covers, and when one is closed enough to export.
//!
//! A window's size is how often an installation exports; it is not how the
//! usage it reads is aggregated (the manifest's `granularity`, hourly or
//! daily): a monthly window hands its adapter a month of daily (or hourly)
//! rows.

use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::Deserialize;

use crate::usage::Granularity;

/// Added to every lag: a record stamped in a window's last instant is
/// committed a few milliseconds later.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The size of an installation's export windows (`[schedule] window`): UTC
/// hours, days, or calendar months. Windows are numbered from the Unix epoch
/// (hour, day or month 0 starts 1970-01-01T00:00:00Z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowSize {
    Hourly,
    Daily,
    /// Calendar months (UTC): 28 to 31 days.
    Monthly,
}

impl WindowSize {
    /// The manifest's spelling: `hourly`, `daily` or `monthly`.
    pub fn name(self) -> &'static str {
        match self {
            WindowSize::Hourly => "hourly",
            WindowSize::Daily => "daily",
            WindowSize::Monthly => "monthly",
        }
    }

    /// The granularity an installation reads with when its manifest names
    /// none: the window's own for hours and days, daily for months.
    pub fn default_granularity(self) -> Granularity {
        match self {
            WindowSize::Hourly => Granularity::Hourly,
            WindowSize::Daily | WindowSize::Monthly => Granularity::Daily,
        }
    }

    /// Whether windows of this size can be read at `granularity`: each
    /// window must be whole buckets of it (an hour holds no daily bucket).
    pub fn allows(self, granularity: Granularity) -> bool {
        !(self == WindowSize::Hourly && granularity == Granularity::Daily)
    }

    /// The number of the window holding `time`.
    pub fn bucket_of(self, time: DateTime<Utc>) -> i64 {
        match self {
            WindowSize::Hourly => Granularity::Hourly.bucket_of(time),
            WindowSize::Daily => Granularity::Daily.bucket_of(time),
            WindowSize::Monthly => (i64::from(time.year()) - 1970) * 12 + i64::from(time.month0()),
        }
    }

    /// Whether `time` is exactly where a window starts.
    pub fn is_boundary(self, time: DateTime<Utc>) -> bool {
        match self {
            WindowSize::Hourly => Granularity::Hourly.is_boundary(time),
            WindowSize::Daily => Granularity::Daily.is_boundary(time),
            WindowSize::Monthly => {
                time.day() == 1
                    && time.num_seconds_from_midnight() == 0
                    && time.timestamp_subsec_nanos() == 0
            }
        }
    }

    /// Start of window number `bucket`.
    pub fn start_of(self, bucket: i64) -> DateTime<Utc> {
        match self {
            WindowSize::Hourly => Granularity::Hourly.start_of(bucket),
            WindowSize::Daily => Granularity::Daily.start_of(bucket),
            WindowSize::Monthly => {
                let year = 1970 + bucket.div_euclid(12);
                let month = bucket.rem_euclid(12) as u32 + 1;
                i32::try_from(year)
                    .ok()
                    .and_then(|year| Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single())
                    .expect("month within chrono's range")
            }
        }
    }
}

impl std::fmt::Display for WindowSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How many windows of `window` size `[from, to)` touches (a cut window counts whole).
pub fn window_count(window: WindowSize, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let (first, last) = bounds(window, from, to);
    (last - first).max(0)
}

/// The first `max` windows `[start, end)` of `window` size that `[from, to)`
/// touches, in order (built lazily: a long range costs `max` windows, not all).
pub fn windows_between(
    window: WindowSize,
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

fn bounds(window: WindowSize, from: DateTime<Utc>, to: DateTime<Utc>) -> (i64, i64) {
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
            WindowSize::Daily,
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
        let hours = windows_between(WindowSize::Hourly, from, to, 100);
        assert_eq!(hours.len(), 3);
        assert_eq!(window_count(WindowSize::Hourly, from, to), 3);
        assert_eq!(hours[0].0, t("2026-11-01T00:00:00Z"));
        let empty = t("2026-11-02T00:00:00Z");
        assert!(windows_between(WindowSize::Daily, empty, empty, 100).is_empty());
    }

    #[test]
    fn a_huge_range_is_counted_not_built() {
        let (from, to) = (t("0001-01-01T00:00:00Z"), t("2026-11-01T00:00:00Z"));
        assert!(window_count(WindowSize::Hourly, from, to) > 17_000_000);
        assert_eq!(windows_between(WindowSize::Hourly, from, to, 10).len(), 10);
    }

    #[test]
    fn a_window_closes_after_its_lag_and_the_settle_time() {
        let end = t("2026-11-01T10:00:00Z");
        let lag = Duration::from_secs(3_600);
        assert!(!is_closed(end, lag, t("2026-11-01T11:00:01Z")));
        assert!(is_closed(end, lag, t("2026-11-01T11:00:02Z")));
    }

    #[test]
    fn months_are_calendar_months_of_every_length() {
        let months = windows_between(
            WindowSize::Monthly,
            t("2023-12-01T00:00:00Z"),
            t("2025-01-01T00:00:00Z"),
            100,
        );
        assert_eq!(months.len(), 13);
        let days: Vec<i64> = months
            .iter()
            .map(|(start, end)| (*end - *start).num_days())
            .collect();
        // December 2023, then 2024 (a leap year: February has 29 days).
        assert_eq!(days, [31, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]);
        for pair in months.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "months follow each other");
        }
        assert_eq!(months[12].1, t("2025-01-01T00:00:00Z"));
        // Not a leap year: 1900 and 2100 (centuries), and 2026; 2000 is.
        for (year, february) in [(2026, 28), (2100, 28), (2000, 29), (2400, 29)] {
            let start = t(&format!("{year}-02-01T00:00:00Z"));
            let bucket = WindowSize::Monthly.bucket_of(start);
            let end = WindowSize::Monthly.start_of(bucket + 1);
            assert_eq!((end - start).num_days(), february, "{year}");
        }
    }

    #[test]
    fn a_month_is_numbered_from_the_epoch_and_starts_at_midnight_on_the_first() {
        let monthly = WindowSize::Monthly;
        assert_eq!(monthly.bucket_of(t("1970-01-31T23:59:59Z")), 0);
        assert_eq!(monthly.bucket_of(t("1969-12-31T23:59:59Z")), -1);
        assert_eq!(monthly.start_of(-1), t("1969-12-01T00:00:00Z"));
        let november = monthly.bucket_of(t("2026-11-15T10:00:00Z"));
        assert_eq!(november, 56 * 12 + 10);
        assert_eq!(monthly.start_of(november), t("2026-11-01T00:00:00Z"));
        assert_eq!(monthly.start_of(november + 2), t("2027-01-01T00:00:00Z"));
        assert!(monthly.is_boundary(t("2026-11-01T00:00:00Z")));
        for not_a_start in [
            "2026-11-02T00:00:00Z",
            "2026-11-01T01:00:00Z",
            "2026-11-01T00:00:01Z",
            "2026-11-01T00:00:00.5Z",
        ] {
            assert!(!monthly.is_boundary(t(not_a_start)), "{not_a_start}");
        }
        // Every day boundary is an hour boundary, every month boundary a day's.
        assert!(WindowSize::Daily.is_boundary(t("2026-11-01T00:00:00Z")));
        assert_eq!(monthly.to_string(), "monthly");
    }

    #[test]
    fn a_range_that_cuts_months_takes_them_whole() {
        let (from, to) = (t("2026-01-31T12:00:00Z"), t("2026-03-01T00:00:01Z"));
        let months = windows_between(WindowSize::Monthly, from, to, 100);
        assert_eq!(
            months,
            [
                (t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z")),
                (t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z")),
                (t("2026-03-01T00:00:00Z"), t("2026-04-01T00:00:00Z")),
            ]
        );
        assert_eq!(window_count(WindowSize::Monthly, from, to), 3);
        // A range on the months' boundaries takes exactly those months.
        let (from, to) = (t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z"));
        assert_eq!(window_count(WindowSize::Monthly, from, to), 1);
        assert_eq!(windows_between(WindowSize::Monthly, from, to, 100).len(), 1);
        // Inside one month: that month.
        let inside = (t("2026-02-10T00:00:00Z"), t("2026-02-11T00:00:00Z"));
        assert_eq!(
            windows_between(WindowSize::Monthly, inside.0, inside.1, 100),
            [(t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z"))]
        );
        // Eight thousand years of months are counted, not built.
        let (from, to) = (t("2000-01-01T00:00:00Z"), t("9999-12-31T23:59:59Z"));
        assert_eq!(window_count(WindowSize::Monthly, from, to), 8_000 * 12);
        assert_eq!(windows_between(WindowSize::Monthly, from, to, 2).len(), 2);
    }

    #[test]
    fn months_read_daily_unless_told_hourly_and_hours_never_daily() {
        assert_eq!(
            WindowSize::Monthly.default_granularity(),
            Granularity::Daily
        );
        assert_eq!(WindowSize::Daily.default_granularity(), Granularity::Daily);
        assert_eq!(
            WindowSize::Hourly.default_granularity(),
            Granularity::Hourly
        );
        assert!(WindowSize::Monthly.allows(Granularity::Hourly));
        assert!(WindowSize::Monthly.allows(Granularity::Daily));
        assert!(!WindowSize::Hourly.allows(Granularity::Daily));
    }
}
