//! This host's own clock, which a test can move.
//!
//! What replicas must agree on (the reported time stamped on usage, which
//! hours are closed, when a run may start or retry) is read from the store's
//! clock, [`Store::clock`](crate::store::Store::clock): the database's on
//! PostgreSQL, this one on the embedded SQLite store. This clock stamps only
//! what one host sees alone (the SQLite store, the CLI's offline tools).
//!
//! `TALLY_CLOCK_SKEW` (a duration such as `2h`, `-90s`), read once, moves
//! this clock: tests use it to run a replica whose clock disagrees with its
//! database's. It is not a setting for production.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};

/// The environment variable that moves this host's clock (tests only).
pub const SKEW_VARIABLE: &str = "TALLY_CLOCK_SKEW";

/// This host's time now: the system clock, moved by [`SKEW_VARIABLE`].
pub fn now() -> DateTime<Utc> {
    Utc::now() + skew()
}

/// The skew, read from the environment on first use. A value that is not a
/// duration is logged and ignored.
fn skew() -> Duration {
    static SKEW: OnceLock<Duration> = OnceLock::new();
    *SKEW.get_or_init(|| {
        let Ok(text) = std::env::var(SKEW_VARIABLE) else {
            return Duration::zero();
        };
        parse_skew(&text).unwrap_or_else(|| {
            tracing::error!(value = %text, "{SKEW_VARIABLE} is not a duration; the clock is not moved");
            Duration::zero()
        })
    })
}

/// `2h`, `+2h`, `-90s`, `1h 30m`…: a duration with an optional sign.
fn parse_skew(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = Duration::from_std(humantime::parse_duration(magnitude.trim()).ok()?).ok()?;
    Some(magnitude * sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skew_is_a_signed_duration() {
        assert_eq!(parse_skew("2h"), Some(Duration::hours(2)));
        assert_eq!(parse_skew(" +2h "), Some(Duration::hours(2)));
        assert_eq!(parse_skew("-90s"), Some(Duration::seconds(-90)));
        assert_eq!(parse_skew("1h 30m"), Some(Duration::minutes(90)));
        assert_eq!(parse_skew("soon"), None);
        assert_eq!(parse_skew(""), None);
    }
}
