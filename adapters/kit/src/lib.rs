//! Helpers the example Rust adapters share (and the host's native benchmark
//! compiles too): UTC calendar dates without a date crate in the component,
//! CSV fields, and the names of per-subscription documents.

use sha2::{Digest, Sha256};

/// Longest document name the host takes (`[A-Za-z0-9._-]{1,128}`).
pub const MAX_DOCUMENT_NAME: usize = 128;

/// The name of `subscription`'s document: `{prefix}{subscription}{suffix}`
/// when the id is 1 or more of `A-Z a-z 0-9 . _ -` and the name fits in
/// [`MAX_DOCUMENT_NAME`] bytes; otherwise the id is replaced by the first 16
/// hex digits of the SHA-256 of its UTF-8 bytes (ids with other characters,
/// or too long). `prefix` must be a valid start of a name (`statement-`).
///
/// Two ids share a name only if one is literally the other's digest: then
/// the second document is refused by the host (a document has one owner)
/// and the run fails, rather than a tenant reading another's document.
/// The Python and JavaScript adapters name documents the same way.
pub fn document_name(prefix: &str, subscription: &str, suffix: &str) -> String {
    let plain = !subscription.is_empty()
        && subscription
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && prefix.len() + subscription.len() + suffix.len() <= MAX_DOCUMENT_NAME;
    if plain {
        return format!("{prefix}{subscription}{suffix}");
    }
    let digest = Sha256::digest(subscription.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}{suffix}")
}

/// (year, month, day) of a day number since the Unix epoch (Howard Hinnant's
/// civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The day number since the Unix epoch of a date (the inverse of [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a day number since the Unix epoch.
pub fn iso_date(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_fields_quote() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(20_454), "2026-01-01");
        assert_eq!(iso_date(-1), "1969-12-31");
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_454, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn documents_are_named_by_the_subscription_or_its_digest() {
        assert_eq!(
            document_name("statement-", "Sub_1.a-B", ".html"),
            "statement-Sub_1.a-B.html"
        );
        // SHA-256 of `edge, "quoted"` begins 9495873879bc527f.
        assert_eq!(
            document_name("statement-", "edge, \"quoted\"", ".csv"),
            "statement-9495873879bc527f.csv"
        );
        assert_eq!(document_name("s-", "", ".csv"), "s-e3b0c44298fc1c14.csv");
        assert_eq!(document_name("s-", "é", ".csv").len(), 2 + 16 + 4);
        // The longest id that fits is kept; one byte more is digested.
        let fits = "a".repeat(MAX_DOCUMENT_NAME - 14);
        assert_eq!(
            document_name("statement-", &fits, ".csv").len(),
            MAX_DOCUMENT_NAME
        );
        let over = format!("{fits}a");
        assert_eq!(document_name("statement-", &over, ".csv").len(), 30);
    }
}
