//! The usage API's pages, written straight into the response's buffer.
//!
//! Why it exists: a page is 1,000 rows of about 865 bytes, and building
//! `serde` values for them (two formatted strings a row, a parse of each
//! stored `instanceData` literal, a buffer grown from 128 bytes) cost more
//! than reading the rows from the store. This writes the same bytes with no
//! allocation per row, into one buffer sized after the first row, and
//! escapes what repeats across rows (a subscription's and a meter's fields,
//! a bucket's times) once.
//!
//! What keeps it byte-identical to `serde_json` serialising
//! [`UsageAggregationListResult`](super::usage_aggregates::UsageAggregationListResult),
//! which the Azure SDK reads: the fields are written in the structs' order,
//! with their names and their omissions (`meterRegion` and `instanceData`
//! without an instance, `nextLink` on the last page); strings are escaped by
//! serde_json's rule (`"`, `\` and the control characters, with `\b \t \n \f
//! \r` or a lowercase `\u00XX`; nothing else); numbers are written by
//! `serde_json` itself; the stored `instanceData` literal, checked when the
//! store loads it ([`Instance::data_json`]), is copied as `RawValue` copied it.
//! The tests compare both on varied rows.

use std::io::Write as _;
use std::sync::Arc;

use crate::store::{AggregateRow, Instance};
use crate::usage::Meter;
use crate::usage::time::{format_api_time, format_compact_hour};

/// How the rows of a page are named: by the API that serves them.
pub struct RowNames<'a> {
    /// `Microsoft.Commerce` or `Microsoft.Commerce.Admin`.
    pub namespace: &'static str,
    /// The `type` of every row.
    pub row_type: &'static str,
    /// The subscription in every row's `id`; each row's own when `None`.
    pub id_owner: Option<&'a str>,
}

/// The JSON of one page: `{"value":[rows…],"nextLink":…}`.
pub fn page(names: &RowNames, rows: &[AggregateRow], next_link: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"value\":[");
    let mut times = BucketTimes::default();
    let mut repeated = Repeated::default();
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let before = out.len();
        write_row(&mut out, names, row, &mut times, &mut repeated);
        if index == 0 {
            // Rows differ little in size: one allocation for the page.
            let rest = rows.len() - 1;
            out.reserve((out.len() - before) * rest + rest + 64 + next_link.map_or(0, str::len));
        }
    }
    out.push(b']');
    if let Some(link) = next_link {
        out.extend_from_slice(b",\"nextLink\":");
        string(&mut out, &[link]);
    }
    out.push(b'}');
    out
}

fn write_row(
    out: &mut Vec<u8>,
    names: &RowNames,
    row: &AggregateRow,
    times: &mut BucketTimes,
    repeated: &mut Repeated,
) {
    let repeated = repeated.of(names, row);
    let (compact, times) = times.of(row);
    out.extend_from_slice(&repeated.id_and_name_head);
    let name = out.len() - repeated.name_head_len;
    out.extend_from_slice(compact);
    if let Some(instance) = &row.instance {
        write!(out, "-{}", instance.key).expect("a Vec takes every write");
    }
    let name = name..out.len();
    out.extend_from_slice(b"\",\"name\":\"");
    out.extend_from_within(name);
    out.extend_from_slice(&repeated.type_to_meter_id);
    out.extend_from_slice(times);
    serde_json::to_writer(&mut *out, &row.quantity).expect("a Vec takes every write");
    out.extend_from_slice(&repeated.meter_tail);
    if let Some(instance) = &row.instance {
        out.extend_from_slice(b",\"meterRegion\":");
        string(out, &[&instance.location]);
        write_instance_data(out, instance);
    }
    out.extend_from_slice(b"}}");
}

/// A row's JSON that is the same for every row of one subscription and
/// meter, escaped once: rows come ordered by bucket, meter and instance, so
/// it changes once per meter's run of instances, and escaping it again for
/// each row was the costliest part of writing a page (6.9% of a profile of
/// the usage API, 0.9% after).
#[derive(Default)]
struct Repeated {
    subscription: String,
    meter: Option<Arc<Meter>>,
    /// `{"id":"/subscriptions/…/providers/…/UsageAggregate/` and the row
    /// name's head, `{subscription}-{meter}-`.
    id_and_name_head: Vec<u8>,
    /// The length of the name's head, at the end of `id_and_name_head`.
    name_head_len: usize,
    /// `","type":…,"properties":{"subscriptionId":…,"meterId":…`.
    type_to_meter_id: Vec<u8>,
    /// `,"unit":…,"meterName":…,"meterCategory":…`.
    meter_tail: Vec<u8>,
}

impl Repeated {
    fn of(&mut self, names: &RowNames, row: &AggregateRow) -> &Self {
        let same_meter = self
            .meter
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m, &row.meter));
        if same_meter && *self.subscription == *row.subscription_id {
            return self;
        }
        let (subscription, meter) = (&*row.subscription_id, &*row.meter);
        let owner = names.id_owner.unwrap_or(subscription);
        let head = &mut self.id_and_name_head;
        head.clear();
        head.extend_from_slice(b"{\"id\":\"");
        for part in ["/subscriptions/", owner, "/providers/", names.namespace] {
            escaped(head, part);
        }
        head.extend_from_slice(b"/UsageAggregate/");
        let name_head = head.len();
        for part in [subscription, "-", &meter.id, "-"] {
            escaped(head, part);
        }
        self.name_head_len = head.len() - name_head;

        let middle = &mut self.type_to_meter_id;
        middle.clear();
        middle.extend_from_slice(b"\",\"type\":");
        string(middle, &[names.row_type]);
        middle.extend_from_slice(b",\"properties\":{\"subscriptionId\":");
        string(middle, &[subscription]);
        middle.extend_from_slice(b",\"meterId\":");
        string(middle, &[&meter.id]);

        let tail = &mut self.meter_tail;
        tail.clear();
        tail.extend_from_slice(b",\"unit\":");
        string(tail, &[&meter.unit]);
        tail.extend_from_slice(b",\"meterName\":");
        string(tail, &[&meter.name]);
        tail.extend_from_slice(b",\"meterCategory\":");
        string(tail, &[&meter.category]);

        self.subscription.clear();
        self.subscription.push_str(subscription);
        self.meter = Some(row.meter.clone());
        self
    }
}

/// `"instanceData"`: the stored literal as it is, absent when it was unusable.
fn write_instance_data(out: &mut Vec<u8>, instance: &Instance) {
    if !instance.data_json.is_empty() {
        out.extend_from_slice(b",\"instanceData\":");
        out.extend_from_slice(instance.data_json.as_bytes());
    }
}

/// A JSON string of `parts` joined.
fn string(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for part in parts {
        escaped(out, part);
    }
    out.push(b'"');
}

/// `text` escaped as serde_json escapes it, without the quotes.
fn escaped(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut run = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[run..at]);
        run = at + 1;
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

/// The JSON of the current usage bucket's times: rows come grouped by
/// bucket, so each is formatted about once a page.
#[derive(Default)]
struct BucketTimes {
    start: Option<chrono::DateTime<chrono::Utc>>,
    /// The compact start in row names, escaped.
    compact: Vec<u8>,
    /// `,"usageStartTime":…,"usageEndTime":…,"quantity":`.
    times: Vec<u8>,
}

impl BucketTimes {
    fn of(&mut self, row: &AggregateRow) -> (&[u8], &[u8]) {
        if self.start != Some(row.usage_start) {
            self.start = Some(row.usage_start);
            self.compact.clear();
            escaped(&mut self.compact, &format_compact_hour(row.usage_start));
            self.times.clear();
            self.times.extend_from_slice(b",\"usageStartTime\":");
            string(&mut self.times, &[&format_api_time(row.usage_start)]);
            self.times.extend_from_slice(b",\"usageEndTime\":");
            string(&mut self.times, &[&format_api_time(row.usage_end)]);
            self.times.extend_from_slice(b",\"quantity\":");
        }
        (&self.compact, &self.times)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::api::{UsageAggregation, UsageAggregationListResult, UsageSample};

    /// Text that JSON escaping can get wrong.
    const AWKWARD: [&str; 9] = [
        "plain-id",
        "quote\" and back\\slash",
        "</script><script>alert(1)</script>",
        "control \u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f} end",
        "non-ASCII: café, Straße, 東京",
        "emoji 😀 and U+2028\u{2028}U+2029\u{2029}",
        "/ slash and % percent and & amp",
        "",
        "\\u0041 looks escaped",
    ];

    /// The serialiser this module replaced: `serde` over the API's structs.
    fn with_serde(names: &RowNames, rows: &[AggregateRow], next_link: Option<&str>) -> Vec<u8> {
        let times: Vec<_> = (rows.iter())
            .map(|row| {
                (
                    format_api_time(row.usage_start),
                    format_api_time(row.usage_end),
                    format_compact_hour(row.usage_start),
                )
            })
            .collect();
        let value = (rows.iter().zip(&times))
            .map(|(row, (start, end, compact))| {
                let name = match &row.instance {
                    Some(instance) => format!(
                        "{}-{}-{compact}-{}",
                        row.subscription_id, row.meter.id, instance.key
                    ),
                    None => format!("{}-{}-{compact}", row.subscription_id, row.meter.id),
                };
                let owner = names.id_owner.unwrap_or(&row.subscription_id);
                UsageAggregation {
                    id: format!(
                        "/subscriptions/{owner}/providers/{}/UsageAggregate/{name}",
                        names.namespace
                    ),
                    name,
                    kind: names.row_type,
                    properties: UsageSample {
                        subscription_id: &row.subscription_id,
                        meter_id: &row.meter.id,
                        usage_start_time: start,
                        usage_end_time: end,
                        quantity: row.quantity,
                        unit: &row.meter.unit,
                        meter_name: &row.meter.name,
                        meter_category: &row.meter.category,
                        meter_region: row.instance.as_ref().map(|i| i.location.as_str()),
                        instance_data: (row.instance.as_ref())
                            .and_then(|i| serde_json::from_str(&i.data_json).ok()),
                    },
                }
            })
            .collect();
        serde_json::to_vec(&UsageAggregationListResult {
            value,
            next_link: next_link.map(str::to_owned),
        })
        .unwrap()
    }

    fn meter(n: usize) -> Arc<Meter> {
        let text = |offset: usize| AWKWARD[(n + offset) % AWKWARD.len()].to_owned();
        Arc::new(Meter {
            key: n as i64,
            id: text(0),
            name: text(1),
            category: text(2),
            unit: text(3),
            notes: String::new(),
        })
    }

    /// instanceData as ingest stores it: the JSON of the resource, as a JSON string literal.
    fn instance(n: usize) -> Instance {
        let text = AWKWARD[n % AWKWARD.len()];
        let data = serde_json::json!({"Microsoft.Resources": {
            "resourceUri": format!("/subscriptions/s/resourceGroups/{text}/vm-{n}"),
            "location": text,
            "tags": {"cost-center": text, text: "é😀</script>"},
            "additionalInfo": {"ServiceType": text},
        }});
        Instance {
            key: n as i64 * 7919 - 3,
            location: AWKWARD[(n + 4) % AWKWARD.len()].to_owned(),
            data_json: serde_json::to_string(&data.to_string()).unwrap(),
        }
    }

    const QUANTITIES: [f64; 14] = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        1e-7,
        123_456_789.123_456_79,
        1e21,
        1e300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
    ];

    fn rows(count: usize) -> Vec<AggregateRow> {
        let day = |d: i64| -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 11, 30, 23, 0, 0).unwrap() + chrono::Duration::hours(d)
        };
        (0..count)
            .map(|n| AggregateRow {
                subscription_id: AWKWARD[(n + 5) % AWKWARD.len()].into(),
                meter: meter(n),
                usage_start: day(n as i64 / 3),
                usage_end: day(n as i64 / 3 + 1),
                quantity: QUANTITIES[n % QUANTITIES.len()],
                instance: match n % 4 {
                    0 => None,
                    // A literal the store found unusable (see `Instance::data_json`).
                    1 if n % 8 == 1 => Some(Arc::new(Instance {
                        data_json: String::new(),
                        ..instance(n)
                    })),
                    _ => Some(Arc::new(instance(n))),
                },
            })
            .collect()
    }

    /// Rows as the store returns them: runs of one subscription and one
    /// meter (the same `Arc`), over buckets and instances.
    fn grouped_rows(count: usize) -> Vec<AggregateRow> {
        let meters: Vec<Arc<Meter>> = (0..3).map(meter).collect();
        (rows(count).into_iter().enumerate())
            .map(|(n, row)| AggregateRow {
                subscription_id: AWKWARD[(n / 11) % AWKWARD.len()].into(),
                meter: meters[(n / 5) % meters.len()].clone(),
                ..row
            })
            .collect()
    }

    #[test]
    fn pages_are_byte_identical_to_serde_json() {
        let tenant = RowNames {
            namespace: "Microsoft.Commerce",
            row_type: "Microsoft.Commerce/UsageAggregate",
            id_owner: None,
        };
        let provider = RowNames {
            namespace: "Microsoft.Commerce.Admin",
            row_type: "Microsoft.Commerce.Admin/UsageAggregate",
            id_owner: Some("provider \"sub\" é"),
        };
        let link = "https://tally.example:8443/subscriptions/s/providers/Microsoft.Commerce/UsageAggregates?api-version=2015-06-01-preview&continuationToken=AQ_-x";
        for names in [&tenant, &provider] {
            for (count, rows) in [0, 1, 2, 7, 100]
                .into_iter()
                .flat_map(|count| [(count, rows(count)), (count, grouped_rows(count))])
            {
                for next_link in [None, Some(link), Some("\"\\\u{1}é")] {
                    let ours = page(names, &rows, next_link);
                    let theirs = with_serde(names, &rows, next_link);
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        String::from_utf8(theirs).unwrap(),
                        "{count} rows, next link {next_link:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_character_is_escaped_as_serde_json_escapes_it() {
        let mut text: String = (0..=0x7f_u8).map(char::from).collect();
        text.push_str("\u{80}\u{a0}é\u{7ff}\u{800}\u{2028}\u{fffd}\u{ffff}😀\u{10ffff}");
        for char in text.chars() {
            let alone = char.to_string();
            let mut ours = Vec::new();
            string(&mut ours, &[&alone]);
            assert_eq!(ours, serde_json::to_vec(&alone).unwrap(), "{char:?}");
        }
        let mut ours = Vec::new();
        string(&mut ours, &[&text, &text]);
        assert_eq!(ours, serde_json::to_vec(&text.repeat(2)).unwrap());
    }
}
