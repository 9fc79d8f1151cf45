//! One batch of records (an ingest request, an import batch), parsed and
//! validated record by record under limits.
//!
//! What a batch holds is bounded as it is read: each record is validated as
//! soon as it is parsed (its input form dropped), at most
//! [`BatchLimits::max_records`] records and [`BatchLimits::max_hour_parts`]
//! hour parts are taken before the batch is refused, and at most
//! [`MAX_RECORD_ERRORS`] problems are kept (the rest are only counted). So a
//! batch's memory is a small multiple of its text, whatever the text holds, and
//! its cost on the store's writer is at most that of a normal batch.

use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::files::parse_json_record;
use super::split::hour_count;
use super::{RecordError, UsageRecord, UsageRecordInput, ValidationContext};

/// Default most records in one ingest request: the batch of `tally import`
/// and of the demo (5,000 hourly records cost the writer 5,000 events,
/// 5,000 hourly and 5,000 daily upserts).
pub const DEFAULT_MAX_RECORDS: usize = 5_000;
/// Default most hour parts in one ingest request (a record of N hours is N
/// hourly upserts): as many as a normal batch of 5,000 hourly records has
/// when they do not start on the hour (each then touches two hours), so no
/// request costs the writer more than such a batch: 13 records of 31 days
/// (9,672 hourly upserts) fit, 1,000 of them (744,000) do not.
pub const DEFAULT_MAX_HOUR_PARTS: usize = 10_000;
/// Most problems kept for one batch; further ones are only counted.
pub const MAX_RECORD_ERRORS: usize = 1_000;

/// How much one batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most records.
    pub max_records: usize,
    /// Most hour parts, summed over the records.
    pub max_hour_parts: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_records: DEFAULT_MAX_RECORDS,
            max_hour_parts: DEFAULT_MAX_HOUR_PARTS,
        }
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchError {
    /// The text is not UTF-8, or not a JSON array.
    Malformed(String),
    /// No records at all.
    Empty,
    /// More records than [`BatchLimits::max_records`].
    TooManyRecords { limit: usize },
    /// More hour parts than [`BatchLimits::max_hour_parts`]; `index` is the
    /// record that went over.
    TooManyHourParts { limit: usize, index: usize },
    /// Some records are invalid.
    Invalid {
        /// The first [`MAX_RECORD_ERRORS`] problems.
        errors: Vec<RecordError>,
        /// All problems, listed or not.
        total: usize,
        /// Whether a meter id was not in the catalog (a newer catalog may know it).
        unknown_meter: bool,
    },
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Malformed(message) => f.write_str(message),
            BatchError::Empty => f.write_str("The request carries no usage records."),
            BatchError::TooManyRecords { limit } => write!(
                f,
                "The request carries more than {limit} records (max_records_per_request); \
                 send them in smaller batches."
            ),
            BatchError::TooManyHourParts { limit, index } => write!(
                f,
                "The first {} records cover more than {limit} hours in all \
                 (max_hour_parts_per_request; a record of N hours counts N); \
                 send them in smaller batches.",
                index + 1
            ),
            BatchError::Invalid { total, .. } => {
                write!(f, "{total} problem(s) in the usage records")
            }
        }
    }
}

/// Records validated one at a time as they are read.
pub struct Batch<'a> {
    ctx: &'a ValidationContext<'a>,
    limits: BatchLimits,
    records: Vec<UsageRecord>,
    read: usize,
    hour_parts: usize,
    errors: Vec<RecordError>,
    error_count: usize,
    unknown_meter: bool,
}

impl<'a> Batch<'a> {
    /// An empty batch.
    pub fn new(ctx: &'a ValidationContext<'a>, limits: BatchLimits) -> Self {
        Batch {
            ctx,
            limits,
            records: Vec::new(),
            read: 0,
            hour_parts: 0,
            errors: Vec::new(),
            error_count: 0,
            unknown_meter: false,
        }
    }

    /// Records read so far: the index the next one gets.
    pub fn len(&self) -> usize {
        self.read
    }

    /// Whether no record was read yet.
    pub fn is_empty(&self) -> bool {
        self.read == 0
    }

    /// Validates the next record (or keeps its parse error). Fails only when
    /// a limit is passed: then the batch is refused and reading may stop.
    pub fn push(&mut self, input: Result<UsageRecordInput, RecordError>) -> Result<(), BatchError> {
        let index = self.read;
        if index >= self.limits.max_records {
            return Err(BatchError::TooManyRecords {
                limit: self.limits.max_records,
            });
        }
        self.read += 1;
        match input
            .map_err(|e| vec![e])
            .and_then(|input| input.validate(index, self.ctx))
        {
            Ok(record) => {
                self.hour_parts += hour_count(record.usage_start, record.usage_end);
                if self.hour_parts > self.limits.max_hour_parts {
                    return Err(BatchError::TooManyHourParts {
                        limit: self.limits.max_hour_parts,
                        index,
                    });
                }
                // Nothing is stored once a record is invalid: keep no more.
                if self.error_count == 0 {
                    self.records.push(record);
                }
            }
            Err(problems) => {
                if self.error_count == 0 {
                    self.records = Vec::new();
                }
                self.error_count += problems.len();
                self.unknown_meter |= problems
                    .iter()
                    .any(|p| p.field == "meterId" && p.reason.starts_with("unknown meter"));
                let room = MAX_RECORD_ERRORS.saturating_sub(self.errors.len());
                self.errors.extend(problems.into_iter().take(room));
            }
        }
        Ok(())
    }

    /// The valid records, or every reason the batch is refused.
    pub fn finish(self) -> Result<Vec<UsageRecord>, BatchError> {
        if self.read == 0 {
            Err(BatchError::Empty)
        } else if self.error_count > 0 {
            Err(BatchError::Invalid {
                errors: self.errors,
                total: self.error_count,
                unknown_meter: self.unknown_meter,
            })
        } else {
            Ok(self.records)
        }
    }
}

/// Parses and validates a request body: a JSON array of records or NDJSON
/// (one record a line, blank lines skipped), streaming either way.
pub fn validate_body(
    body: &[u8],
    ndjson: bool,
    ctx: &ValidationContext<'_>,
    limits: BatchLimits,
) -> Result<Vec<UsageRecord>, BatchError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| BatchError::Malformed(format!("The body is not UTF-8: {e}.")))?;
    let mut batch = Batch::new(ctx, limits);
    if ndjson {
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let index = batch.len();
            batch.push(parse_json_record(index, line))?;
        }
    } else {
        for_each_element(text, |element| {
            let index = batch.len();
            batch.push(parse_json_record(index, element))
        })?;
    }
    batch.finish()
}

/// Calls `each` with the text of every element of a JSON array, without
/// collecting them; stops at the first error `each` returns.
fn for_each_element<'t>(
    text: &'t str,
    mut each: impl FnMut(&'t str) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    struct Elements<'f, F> {
        each: &'f mut F,
        stopped: &'f mut Option<BatchError>,
    }
    impl<'de, F: FnMut(&'de str) -> Result<(), BatchError>> Visitor<'de> for Elements<'_, F> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array of records")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(element) = seq.next_element::<&'de RawValue>()? {
                if let Err(error) = (self.each)(element.get()) {
                    *self.stopped = Some(error);
                    return Err(de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }
    let mut stopped = None;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = (&mut deserializer)
        .deserialize_seq(Elements {
            each: &mut each,
            stopped: &mut stopped,
        })
        .and_then(|()| deserializer.end());
    if let Some(error) = stopped {
        return Err(error);
    }
    parsed.map_err(|e| {
        BatchError::Malformed(format!("The body is not a JSON array of records: {e}."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::MeterCatalog;
    use crate::usage::time::parse_time;

    fn record(event: usize, start: &str, end: &str) -> String {
        format!(
            r#"{{"eventId":"e{event}","subscriptionId":"s","meterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5","resourceUri":"/vm","quantity":1,"usageStartTime":"{start}","usageEndTime":"{end}"}}"#
        )
    }

    fn validate(body: &str, ndjson: bool, limits: BatchLimits) -> Result<usize, BatchError> {
        let meters = MeterCatalog::builtin_for_tests();
        let ctx = ValidationContext {
            meters: &meters,
            now: parse_time("2024-06-01T00:00:00Z").unwrap(),
            may_set_reported_time: false,
            retention_cutoff: None,
        };
        validate_body(body.as_bytes(), ndjson, &ctx, limits).map(|records| records.len())
    }

    const LIMITS: BatchLimits = BatchLimits {
        max_records: 10,
        max_hour_parts: 48,
    };

    #[test]
    fn arrays_and_ndjson_stream_into_records() {
        let hour = record(0, "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z");
        assert_eq!(validate(&format!("[{hour}, {hour}]"), false, LIMITS), Ok(2));
        assert_eq!(
            validate(&format!("{hour}\n\n{hour}\n"), true, LIMITS),
            Ok(2)
        );
        assert_eq!(validate("[]", false, LIMITS), Err(BatchError::Empty));
        assert!(matches!(
            validate("[{}, ", false, LIMITS),
            Err(BatchError::Malformed(_))
        ));
        assert!(matches!(
            validate("[] []", false, LIMITS),
            Err(BatchError::Malformed(_))
        ));
    }

    #[test]
    fn records_past_the_limit_refuse_the_batch() {
        let body = "{}\n".repeat(11);
        assert_eq!(
            validate(&body, true, LIMITS),
            Err(BatchError::TooManyRecords { limit: 10 })
        );
        let day = record(0, "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z");
        let body = format!("[{day}, {day}, {day}]");
        assert_eq!(
            validate(&body, false, LIMITS),
            Err(BatchError::TooManyHourParts {
                limit: 48,
                index: 2
            })
        );
    }

    #[test]
    fn problems_past_the_cap_are_counted_not_kept() {
        let limits = BatchLimits {
            max_records: 1_000,
            max_hour_parts: 1_000,
        };
        // Each `{}` has seven problems: 7,000 in all, 1,000 kept.
        let Err(BatchError::Invalid { errors, total, .. }) =
            validate(&"{}\n".repeat(1_000), true, limits)
        else {
            panic!("refused as invalid");
        };
        assert_eq!((errors.len(), total), (MAX_RECORD_ERRORS, 7_000));
    }
}
