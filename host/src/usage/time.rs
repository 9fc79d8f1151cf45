//! Hour and day buckets (UTC), stored as whole hours or days since the Unix epoch.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

const SECONDS_PER_HOUR: i64 = 3_600;
const SECONDS_PER_DAY: i64 = 86_400;

/// Aggregation granularity of the usage API.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum Granularity {
    Hourly,
    Daily,
}

impl Granularity {
    /// Parses the API's `aggregationGranularity` (case-insensitive).
    pub fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("hourly") {
            Some(Granularity::Hourly)
        } else if value.eq_ignore_ascii_case("daily") {
            Some(Granularity::Daily)
        } else {
            None
        }
    }

    /// The API's name: `Hourly` or `Daily`.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hourly => "Hourly",
            Granularity::Daily => "Daily",
        }
    }

    /// Length of one bucket in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Hourly => SECONDS_PER_HOUR,
            Granularity::Daily => SECONDS_PER_DAY,
        }
    }

    /// The bucket index that contains `time`.
    pub fn bucket_of(self, time: DateTime<Utc>) -> i64 {
        time.timestamp().div_euclid(self.seconds())
    }

    /// Whether `time` falls exactly on a bucket boundary.
    pub fn is_boundary(self, time: DateTime<Utc>) -> bool {
        time.timestamp_subsec_nanos() == 0 && time.timestamp().rem_euclid(self.seconds()) == 0
    }

    /// Start of the bucket with index `bucket`.
    pub fn start_of(self, bucket: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(bucket * self.seconds(), 0)
            .single()
            .expect("bucket within chrono's range")
    }
}

/// The hour index of a day index.
pub fn first_hour_of_day(day: i64) -> i64 {
    day * 24
}

/// The day index of an hour index.
pub fn day_of_hour(hour: i64) -> i64 {
    hour.div_euclid(24)
}

/// Formats a time as the API does: RFC 3339 with an explicit `+00:00` offset.
/// (Hand-rolled: chrono's strftime re-parses its pattern on every call.)
pub fn format_api_time(time: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// `YYYYMMDDTHH`, for row names.
pub fn format_compact_hour(time: DateTime<Utc>) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}",
        time.year(),
        time.month(),
        time.day(),
        time.hour()
    )
}

/// The first year a time may fall in (usage is not older; see [`parse_time`]).
pub const MIN_YEAR: i32 = 2000;
/// The last year a time may fall in: four digits, as every client can parse.
pub const MAX_YEAR: i32 = 9999;
/// How the accepted range reads in error messages.
pub const YEAR_RANGE: &str = "in the years 2000 to 9999 (UTC)";

/// Parses an ISO-8601 time; a time without an offset is taken as UTC (as the
/// Azure SDK serialises naive datetimes). Times outside [`MIN_YEAR`]..=[`MAX_YEAR`]
/// (in UTC) are refused like malformed ones: chrono's `%Y` accepts signed
/// six-digit years, which no client can read back and whose buckets overflow.
pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let time = match DateTime::parse_from_rfc3339(value) {
        Ok(time) => time.with_timezone(&Utc),
        Err(_) => chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .and_utc(),
    };
    in_year_range(time).then_some(time)
}

/// Parses a time as [`parse_time`] does, or a date (`YYYY-MM-DD`, midnight UTC).
pub fn parse_time_or_date(value: &str) -> Option<DateTime<Utc>> {
    parse_time(value).or_else(|| {
        let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
        let time = date.and_hms_opt(0, 0, 0)?.and_utc();
        in_year_range(time).then_some(time)
    })
}

fn in_year_range(time: DateTime<Utc>) -> bool {
    (MIN_YEAR..=MAX_YEAR).contains(&time.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip() {
        let t = parse_time("2024-05-01T13:00:00Z").unwrap();
        let hour = Granularity::Hourly.bucket_of(t);
        assert_eq!(Granularity::Hourly.start_of(hour), t);
        assert!(Granularity::Hourly.is_boundary(t));
        assert!(!Granularity::Daily.is_boundary(t));
        assert_eq!(day_of_hour(hour), Granularity::Daily.bucket_of(t));
        assert_eq!(first_hour_of_day(day_of_hour(hour)) + 13, hour);
    }

    #[test]
    fn parses_offsets_and_naive_times() {
        let z = parse_time("2024-05-01T00:00:00Z").unwrap();
        assert_eq!(parse_time("2024-05-01T02:00:00+02:00"), Some(z));
        assert_eq!(parse_time("2024-05-01T00:00:00.000"), Some(z));
        assert_eq!(parse_time("2024-05-01"), None);
        assert_eq!(format_api_time(z), "2024-05-01T00:00:00+00:00");
        assert_eq!(
            format_api_time(parse_time("2024-05-01T13:04:05Z").unwrap()),
            "2024-05-01T13:04:05+00:00"
        );
        assert_eq!(
            format_compact_hour(parse_time("2024-05-01T13:00:00Z").unwrap()),
            "20240501T13"
        );
    }

    #[test]
    fn years_outside_2000_to_9999_are_refused() {
        for text in [
            "+262142-01-01T00:00:00Z",
            "-262000-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2000-01-01T00:30:00+01:00",
            "9999-12-31T23:00:00-05:00",
            "+10000-01-01T00:00:00",
        ] {
            assert_eq!(parse_time(text), None, "{text}");
        }
        assert!(parse_time("2000-01-01T00:00:00Z").is_some());
        assert!(parse_time("9999-12-31T23:59:59Z").is_some());
        assert_eq!(parse_time_or_date("+262142-01-01"), None);
        assert_eq!(parse_time_or_date("1999-12-31"), None);
        assert_eq!(
            parse_time_or_date("2026-11-01"),
            parse_time("2026-11-01T00:00:00Z")
        );
    }

    #[test]
    fn granularity_is_case_insensitive() {
        assert_eq!(Granularity::parse("dAiLy"), Some(Granularity::Daily));
        assert_eq!(Granularity::parse("HOURLY"), Some(Granularity::Hourly));
        assert_eq!(Granularity::parse("weekly"), None);
    }
}
