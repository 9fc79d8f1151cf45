//! Usage records: the ingest wire format, its validation, and the validated form
//! the store keeps.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::meters::{MeterCatalog, MeterKey};
use super::split::hour_count;
use super::time::{YEAR_RANGE, parse_time};
use crate::text::{escape_controls, has_control, truncate};

/// Longest accepted `eventId`, `subscriptionId` or `location`, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted `resourceUri`, in bytes.
pub const MAX_RESOURCE_URI_LEN: usize = 1_024;
/// Largest accepted `instanceData` (resource URI, location, tags and additional info as JSON), in bytes.
pub const MAX_INSTANCE_DATA_LEN: usize = 8 * 1_024;
/// Longest accepted usage interval: a record is split into at most this many hour buckets.
pub const MAX_INTERVAL: Duration = Duration::days(31);
/// How far a resource provider's clock may run ahead of the host's.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);
/// Largest accepted `quantity` of one record. Every stored quantity is a sum
/// of records' shares, and a sum of values this size stays finite (far below
/// `f64::MAX`) for any number of records a store can hold.
pub const MAX_QUANTITY: f64 = 1e15;
/// Longest part of a refused value quoted back in an error, in bytes: an
/// error never costs more than a fixed amount, whatever the value's size.
pub const MAX_QUOTED_LEN: usize = 64;

/// A usage record as a resource provider sends it (`POST /v1/usage`).
///
/// Every field is optional here so that a missing one is reported by name
/// instead of failing the whole request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageRecordInput {
    /// Unique per subscription; a retry of the same record reuses it. Like
    /// every id here: at most 128 bytes (resourceUri 1,024), no whitespace
    /// around it, no control characters.
    pub event_id: Option<String>,
    pub subscription_id: Option<String>,
    /// A meter of the catalog, compared case-insensitively.
    pub meter_id: Option<String>,
    /// The resource (instance) that consumed.
    pub resource_uri: Option<String>,
    pub location: Option<String>,
    /// User tags, string values (e.g. `cost-center`).
    pub tags: Option<Map<String, Value>>,
    /// A small property bag (OS type, VM size…).
    pub additional_info: Option<Map<String, Value>>,
    /// Non-negative and finite, at most 10^15.
    pub quantity: Option<f64>,
    /// ISO-8601, in the years 2000 to 9999 (as every time input); the usage
    /// interval is `[usageStartTime, usageEndTime)`.
    pub usage_start_time: Option<String>,
    pub usage_end_time: Option<String>,
    /// Only for operators backfilling history: when the record was originally
    /// reported. Everyone else gets the host's time.
    pub reported_time: Option<String>,
}

/// A validated usage record.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub subscription_id: String,
    pub event_id: String,
    /// The catalog's spelling of the meter id.
    pub meter_id: String,
    pub meter_key: MeterKey,
    pub resource_uri: String,
    pub location: String,
    /// The `instanceData` string served by the usage API.
    pub instance_data: String,
    pub quantity: f64,
    pub usage_start: DateTime<Utc>,
    pub usage_end: DateTime<Utc>,
    /// Set only by an operator's backfill; otherwise the store stamps the time.
    pub reported_time: Option<DateTime<Utc>>,
    /// Identifies the content: a retry with the same digest is a duplicate,
    /// one with another digest is a conflict.
    pub digest: [u8; 16],
    /// Identifies the instance (subscription + instance data).
    pub instance_digest: [u8; 16],
}

/// Why one record of a request was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordError {
    /// Position of the record in the request (0-based; blank NDJSON lines do not count).
    pub index: usize,
    /// The offending field, in the wire format's spelling.
    pub field: String,
    pub reason: String,
}

impl RecordError {
    /// A problem of record `index` in `field`.
    pub fn new(index: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        RecordError {
            index,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Record `index` would make a stored sum of quantities overflow. Records
    /// are bounded ([`MAX_QUANTITY`]) so that no real sum gets there; the
    /// Record `index` repeats the id of an event already accepted, with
    /// other content.
    pub fn event_conflict(index: usize, record: &UsageRecord) -> Self {
        RecordError::new(
            index,
            "eventId",
            format!(
                "event '{}' of subscription '{}' was already accepted with different content",
                record.event_id, record.subscription_id
            ),
        )
    }

    /// stores check every sum they write all the same.
    pub fn sum_overflow(index: usize) -> Self {
        RecordError::new(
            index,
            "quantity",
            "adding it would make a stored sum of quantities overflow",
        )
    }
}

/// What a validation may rely on besides the record itself.
pub struct ValidationContext<'a> {
    pub meters: &'a MeterCatalog,
    pub now: DateTime<Utc>,
    /// Whether the caller may set `reportedTime` (operators backfilling).
    pub may_set_reported_time: bool,
    /// The host's retention cutoff ([`crate::retention`]): usage that ended
    /// before it is refused, since its event id can no longer be checked
    /// for duplicates. `None` when events are kept forever.
    pub retention_cutoff: Option<DateTime<Utc>>,
}

impl UsageRecordInput {
    /// Checks every field; returns all problems of the record at once.
    pub fn validate(
        self,
        index: usize,
        ctx: &ValidationContext<'_>,
    ) -> Result<UsageRecord, Vec<RecordError>> {
        let mut errors = Vec::new();
        let mut fail =
            |field: &str, reason: String| errors.push(RecordError::new(index, field, reason));

        let event_id = required_id(self.event_id, "eventId", MAX_ID_LEN, &mut fail);
        let subscription_id = required_id(
            self.subscription_id,
            "subscriptionId",
            MAX_ID_LEN,
            &mut fail,
        );
        let resource_uri = required_id(
            self.resource_uri,
            "resourceUri",
            MAX_RESOURCE_URI_LEN,
            &mut fail,
        );
        let location = self.location.unwrap_or_default();
        if !location.is_empty()
            && let Err(problem) = check_id(&location, MAX_ID_LEN)
        {
            fail("location", problem);
        }
        let meter = match self.meter_id.as_deref() {
            None => {
                fail("meterId", "missing".into());
                None
            }
            Some(id) => match check_id(id, MAX_ID_LEN) {
                Err(problem) => {
                    fail("meterId", problem);
                    None
                }
                Ok(()) => match ctx.meters.resolve(id) {
                    Some(meter) => Some(meter),
                    None => {
                        fail(
                            "meterId",
                            format!("unknown meter {} (not in the meter catalog)", quote(id)),
                        );
                        None
                    }
                },
            },
        };
        let quantity = match self.quantity {
            None => {
                fail("quantity", "missing".into());
                None
            }
            Some(q) if !q.is_finite() => {
                fail("quantity", "must be a finite number".into());
                None
            }
            Some(q) if q < 0.0 => {
                fail("quantity", format!("must not be negative (got {q})"));
                None
            }
            Some(q) if q > MAX_QUANTITY => {
                fail(
                    "quantity",
                    format!("must be at most {MAX_QUANTITY:e} (got {q:e})"),
                );
                None
            }
            Some(q) => Some(q),
        };
        let tags = self.tags.unwrap_or_default();
        if let Some((key, _)) = tags.iter().find(|(_, v)| !v.is_string()) {
            fail("tags", format!("tag '{key}' must have a string value"));
        }
        let start = required_time(self.usage_start_time, "usageStartTime", &mut fail);
        let end = required_time(self.usage_end_time, "usageEndTime", &mut fail);
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                fail("usageEndTime", "must be after usageStartTime".into());
            } else if end - start > MAX_INTERVAL {
                fail(
                    "usageEndTime",
                    format!(
                        "the usage interval may span at most {} days",
                        MAX_INTERVAL.num_days()
                    ),
                );
            } else if end > ctx.now + CLOCK_SKEW {
                fail("usageEndTime", "is in the future".into());
            } else if let Some(cutoff) = ctx.retention_cutoff.filter(|&cutoff| end < cutoff) {
                fail("usageEndTime", crate::retention::expired_reason(cutoff));
            }
        }
        let reported_time = match self.reported_time {
            None => None,
            Some(_) if !ctx.may_set_reported_time => {
                fail(
                    "reportedTime",
                    "only an operator may set the reported time (backfill)".into(),
                );
                None
            }
            Some(text) => match parse_time(&text) {
                None => {
                    fail("reportedTime", not_a_time(&text));
                    None
                }
                Some(t) if t > ctx.now => {
                    fail("reportedTime", "is in the future".into());
                    None
                }
                // With the same allowance for clocks as usage ending in the
                // future: the host itself stamps such records with its time.
                Some(t) if end.is_some_and(|end| t + CLOCK_SKEW < end) => {
                    fail(
                        "reportedTime",
                        format!(
                            "is before usageEndTime by more than {} minutes",
                            CLOCK_SKEW.num_minutes()
                        ),
                    );
                    None
                }
                Some(t) => Some(t),
            },
        };

        let instance_data = instance_data(
            &resource_uri,
            &location,
            &tags,
            &self.additional_info.unwrap_or_default(),
        );
        if instance_data.len() > MAX_INSTANCE_DATA_LEN {
            fail(
                "tags",
                format!("resource, tags and additional info exceed {MAX_INSTANCE_DATA_LEN} bytes"),
            );
        }
        let (Some(meter), Some(quantity), Some(start), Some(end)) = (meter, quantity, start, end)
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let instance_digest = digest(&[
            subscription_id.to_ascii_lowercase().as_bytes(),
            instance_data.as_bytes(),
        ]);
        let digest = digest(&[
            meter.id.to_ascii_lowercase().as_bytes(),
            instance_data.as_bytes(),
            &quantity.to_bits().to_le_bytes(),
            &start.timestamp_millis().to_le_bytes(),
            &end.timestamp_millis().to_le_bytes(),
        ]);
        Ok(UsageRecord {
            subscription_id,
            event_id,
            meter_id: meter.id.clone(),
            meter_key: meter.key,
            resource_uri,
            location,
            instance_data,
            quantity,
            usage_start: start,
            usage_end: end,
            reported_time,
            digest,
            instance_digest,
        })
    }
}

impl UsageRecordInput {
    /// How many hour buckets the record's interval covers, as far as its times
    /// parse (1 when they do not: such a record is refused anyway). Lets a
    /// client cut batches under the host's hour-parts limit before sending.
    pub fn hour_parts(&self) -> usize {
        let time = |t: &Option<String>| t.as_deref().and_then(parse_time);
        match (time(&self.usage_start_time), time(&self.usage_end_time)) {
            (Some(start), Some(end)) if end > start && end - start <= MAX_INTERVAL => {
                hour_count(start, end)
            }
            _ => 1,
        }
    }
}

/// Checks an identifier (`subscriptionId`, `eventId`, a meter id…): 1 to `max`
/// bytes, no whitespace around it and no control characters in it. Ids are
/// refused rather than trimmed: a trimmed id would name another subscription
/// than the client meant, and control characters (NUL above all) are not
/// storable everywhere. The problem is returned as an error reason.
pub fn check_id(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else if value.len() > max {
        Err(format!("longer than {max} bytes"))
    } else if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        Err(format!(
            "{} must not begin or end with whitespace",
            quote(value)
        ))
    } else if has_control(value) {
        Err("must not contain control characters".into())
    } else {
        Ok(())
    }
}

/// A value quoted for an error message, cut to [`MAX_QUOTED_LEN`] bytes and
/// with control characters escaped.
pub fn quote(value: &str) -> String {
    format!(
        "'{}'",
        escape_controls(&truncate(value, MAX_QUOTED_LEN), |_| true)
    )
}

fn not_a_time(text: &str) -> String {
    format!("{} is not an ISO-8601 time {YEAR_RANGE}", quote(text))
}

fn required_id(
    value: Option<String>,
    field: &str,
    max: usize,
    fail: &mut impl FnMut(&str, String),
) -> String {
    match value {
        Some(v) => match check_id(&v, max) {
            Ok(()) => return v,
            Err(problem) => fail(field, problem),
        },
        None => fail(field, "missing".into()),
    }
    String::new()
}

fn required_time(
    value: Option<String>,
    field: &str,
    fail: &mut impl FnMut(&str, String),
) -> Option<DateTime<Utc>> {
    match value {
        None => {
            fail(field, "missing".into());
            None
        }
        Some(text) => {
            let parsed = parse_time(&text);
            if parsed.is_none() {
                fail(field, not_a_time(&text));
            }
            parsed
        }
    }
}

/// The `instanceData` string of the usage API: JSON inside a JSON string.
fn instance_data(
    resource_uri: &str,
    location: &str,
    tags: &Map<String, Value>,
    info: &Map<String, Value>,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Resources<'a> {
        resource_uri: &'a str,
        location: &'a str,
        tags: &'a Map<String, Value>,
        additional_info: &'a Map<String, Value>,
    }
    #[derive(Serialize)]
    struct InstanceData<'a> {
        #[serde(rename = "Microsoft.Resources")]
        resources: Resources<'a>,
    }
    let data = InstanceData {
        resources: Resources {
            resource_uri,
            location,
            tags,
            additional_info: info,
        },
    };
    serde_json::to_string(&data).expect("maps of JSON values always serialise")
}

fn digest(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let full = hasher.finalize();
    full[..16].try_into().expect("sha256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(meters: &MeterCatalog) -> ValidationContext<'_> {
        ValidationContext {
            meters,
            now: parse_time("2024-06-01T00:00:00Z").unwrap(),
            may_set_reported_time: false,
            retention_cutoff: None,
        }
    }

    fn input(value: Value) -> UsageRecordInput {
        serde_json::from_value(value).unwrap()
    }

    fn good() -> Value {
        json!({
            "eventId": "e1", "subscriptionId": "sub-1", "meterId": "fab6eb84-500b-4a09-a8ca-7358f8bbaea5",
            "resourceUri": "/subscriptions/sub-1/vm1", "location": "local",
            "tags": {"cost-center": "finance"}, "additionalInfo": {"ImageType": "Linux"},
            "quantity": 2.0, "usageStartTime": "2024-05-01T10:00:00Z", "usageEndTime": "2024-05-01T11:00:00Z"
        })
    }

    #[test]
    fn a_good_record_is_accepted_with_the_catalog_spelling() {
        let meters = MeterCatalog::builtin_for_tests();
        let record = input(good()).validate(0, &ctx(&meters)).unwrap();
        assert_eq!(record.meter_id, "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5");
        let data: Value = serde_json::from_str(&record.instance_data).unwrap();
        assert_eq!(
            data["Microsoft.Resources"]["tags"]["cost-center"],
            "finance"
        );
    }

    #[test]
    fn every_problem_is_reported_by_field() {
        let meters = MeterCatalog::builtin_for_tests();
        let mut bad = good();
        bad["meterId"] = json!("not-a-meter");
        bad["quantity"] = json!(-1.0);
        bad["usageEndTime"] = json!("2024-05-01T09:00:00Z");
        bad.as_object_mut().unwrap().remove("eventId");
        let errors = input(bad).validate(7, &ctx(&meters)).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["eventId", "meterId", "quantity", "usageEndTime"]);
        assert!(errors.iter().all(|e| e.index == 7));
    }

    #[test]
    fn ids_with_blanks_or_control_characters_are_refused_not_trimmed() {
        let meters = MeterCatalog::builtin_for_tests();
        for (field, value) in [
            ("subscriptionId", " sub-1"),
            ("subscriptionId", "sub-1\t"),
            ("eventId", "e\u{0}1"),
            ("resourceUri", "/vm\n"),
            ("location", " local"),
            ("meterId", " fab6eb84-500b-4a09-a8ca-7358f8bbaea5"),
        ] {
            let mut bad = good();
            bad[field] = json!(value);
            let errors = input(bad).validate(0, &ctx(&meters)).unwrap_err();
            assert_eq!(errors.len(), 1, "{field}: {errors:?}");
            assert_eq!(errors[0].field, field);
        }
    }

    #[test]
    fn quantities_and_years_are_bounded() {
        let meters = MeterCatalog::builtin_for_tests();
        let mut huge = good();
        huge["quantity"] = json!(1.7e308);
        let errors = input(huge).validate(0, &ctx(&meters)).unwrap_err();
        assert_eq!(errors[0].field, "quantity");
        let mut ancient = good();
        ancient["usageStartTime"] = json!("-262000-01-01T00:00:00Z");
        let errors = input(ancient).validate(0, &ctx(&meters)).unwrap_err();
        assert_eq!(errors[0].field, "usageStartTime");
        assert!(errors[0].reason.contains("2000 to 9999"), "{errors:?}");
    }

    #[test]
    fn quoted_values_are_cut() {
        let long = "x".repeat(10_000);
        assert!(quote(&long).len() < MAX_QUOTED_LEN + 40);
        assert_eq!(quote("a\u{0}b"), "'a\\u{0}b'");
    }

    #[test]
    fn reported_time_is_for_operators_only() {
        let meters = MeterCatalog::builtin_for_tests();
        let mut backfill = good();
        backfill["reportedTime"] = json!("2024-05-01T12:00:00Z");
        let refused = input(backfill.clone())
            .validate(0, &ctx(&meters))
            .unwrap_err();
        assert_eq!(refused[0].field, "reportedTime");
        let operator = ValidationContext {
            may_set_reported_time: true,
            retention_cutoff: None,
            ..ctx(&meters)
        };
        assert!(
            input(backfill)
                .validate(0, &operator)
                .unwrap()
                .reported_time
                .is_some()
        );
    }

    /// The host stamps a record whose usage ends up to five minutes ahead
    /// of its clock with its own time; such a record, backfilled with that
    /// reported time (from an archive of pruned events), is accepted too.
    #[test]
    fn a_reported_time_may_precede_the_usage_end_by_the_clock_skew() {
        let meters = MeterCatalog::builtin_for_tests();
        let operator = ValidationContext {
            may_set_reported_time: true,
            ..ctx(&meters)
        };
        let reported = |time: &str| {
            let mut record = good();
            record["reportedTime"] = json!(time);
            input(record).validate(0, &operator)
        };
        assert!(reported("2024-05-01T10:55:00Z").is_ok());
        let refused = reported("2024-05-01T10:54:59Z").unwrap_err();
        assert_eq!(refused[0].field, "reportedTime");
        assert_eq!(
            refused[0].reason,
            "is before usageEndTime by more than 5 minutes"
        );
    }

    #[test]
    fn the_digest_ignores_meter_case_but_not_quantity() {
        let meters = MeterCatalog::builtin_for_tests();
        let a = input(good()).validate(0, &ctx(&meters)).unwrap();
        let mut upper = good();
        upper["meterId"] = json!("FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5");
        assert_eq!(
            input(upper).validate(0, &ctx(&meters)).unwrap().digest,
            a.digest
        );
        let mut more = good();
        more["quantity"] = json!(3.0);
        assert_ne!(
            input(more).validate(0, &ctx(&meters)).unwrap().digest,
            a.digest
        );
    }
}
