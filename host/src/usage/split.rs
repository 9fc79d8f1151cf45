//! Splitting a usage interval across the hour buckets it covers.

use chrono::{DateTime, Utc};

use super::time::Granularity;

/// One hour's share of a record: `(hour index, quantity)`.
pub type HourPart = (i64, f64);

/// Splits `quantity`, used evenly over `[start, end)`, across hour buckets in
/// proportion to the time spent in each. `end` must be after `start`.
pub fn split_hourly(quantity: f64, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<HourPart> {
    let first = Granularity::Hourly.bucket_of(start);
    let last = Granularity::Hourly.bucket_of(end - chrono::Duration::nanoseconds(1));
    if first == last {
        // The common case: an hourly record stays exactly as reported.
        return vec![(first, quantity)];
    }
    let total_ms = (end - start).num_milliseconds() as f64;
    (first..=last)
        .map(|hour| {
            let hour_start = Granularity::Hourly.start_of(hour).max(start);
            let hour_end = Granularity::Hourly.start_of(hour + 1).min(end);
            let share = (hour_end - hour_start).num_milliseconds() as f64 / total_ms;
            (hour, quantity * share)
        })
        .collect()
}

/// How many hour buckets `[start, end)` touches: the length of what
/// [`split_hourly`] returns, without building it. `end` must be after `start`.
pub fn hour_count(start: DateTime<Utc>, end: DateTime<Utc>) -> usize {
    let first = Granularity::Hourly.bucket_of(start);
    let last = Granularity::Hourly.bucket_of(end - chrono::Duration::nanoseconds(1));
    usize::try_from(last - first + 1).unwrap_or(usize::MAX)
}

/// Sums hour parts into day parts, so that daily rows are the sum of hourly rows.
pub fn days_of(parts: &[HourPart]) -> Vec<(i64, f64)> {
    let mut days: Vec<(i64, f64)> = Vec::with_capacity(1);
    for &(hour, quantity) in parts {
        let day = super::time::day_of_hour(hour);
        match days.last_mut() {
            Some((last, sum)) if *last == day => *sum += quantity,
            _ => days.push((day, quantity)),
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::time::parse_time;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn an_hourly_record_is_one_part() {
        let parts = split_hourly(3.5, t("2024-05-01T10:00:00Z"), t("2024-05-01T11:00:00Z"));
        assert_eq!(
            parts,
            vec![(
                Granularity::Hourly.bucket_of(t("2024-05-01T10:00:00Z")),
                3.5
            )]
        );
    }

    #[test]
    fn a_spanning_record_is_split_by_time() {
        // 10:30–12:15 is 105 minutes: 30 in hour 10, 60 in hour 11, 15 in hour 12.
        let parts = split_hourly(105.0, t("2024-05-01T10:30:00Z"), t("2024-05-01T12:15:00Z"));
        let h10 = Granularity::Hourly.bucket_of(t("2024-05-01T10:00:00Z"));
        assert_eq!(parts.len(), 3);
        assert_eq!(
            hour_count(t("2024-05-01T10:30:00Z"), t("2024-05-01T12:15:00Z")),
            3
        );
        assert_eq!(parts[0], (h10, 30.0));
        assert_eq!(parts[1], (h10 + 1, 60.0));
        assert_eq!(parts[2], (h10 + 2, 15.0));
    }

    #[test]
    fn day_parts_sum_the_hours_of_each_day() {
        let parts = split_hourly(48.0, t("2024-05-01T12:00:00Z"), t("2024-05-03T12:00:00Z"));
        assert_eq!(parts.len(), 48);
        let days = days_of(&parts);
        assert_eq!(days.len(), 3);
        assert_eq!(
            days.iter().map(|d| d.1).collect::<Vec<_>>(),
            vec![12.0, 24.0, 12.0]
        );
    }
}
