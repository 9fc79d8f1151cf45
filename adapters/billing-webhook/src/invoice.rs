//! The invoice itself, free of the component bindings so it can be unit
//! tested natively: the config, usage summed into invoice lines, the JSON
//! requests, and what an answer of the billing API means.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use tally_adapter_kit::iso_date;

/// Lines per request unless the config says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// The most lines one request may carry.
pub const MAX_BATCH_SIZE: usize = 5_000;
/// The largest request body the host sends (`outbound-request.body`).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// How much of an error answer's body is quoted in the failure.
const EXCERPT_CHARS: usize = 200;
/// Headers the config may not set: the host sets the idempotency key, and
/// the adapter owns the framing of its JSON bodies.
const RESERVED_HEADERS: [&str; 6] = [
    "idempotency-key",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

/// The installation's `[config]` table, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    endpoint: String,
    currency: String,
    rates: BTreeMap<String, f64>,
    batch_size: Option<usize>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    source: Option<String>,
}

/// A checked configuration.
pub struct Config {
    /// Where invoice lines are `POST`ed.
    pub endpoint: String,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// Price per unit by lower-case meter id.
    pub rates: HashMap<String, f64>,
    /// Most lines per request.
    pub batch_size: usize,
    /// Static headers of every request (e.g. an API key), in name order.
    pub headers: Vec<(String, String)>,
    /// Names this tally in the requests and prefixes every line id.
    pub source: String,
}

impl Config {
    /// Parses and checks the config JSON; the error says what to fix.
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| format!("config: {e}"))?;
        check_endpoint(&raw.endpoint).map_err(|e| format!("config: endpoint: {e}"))?;
        if raw.currency.len() != 3 || !raw.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "config: currency '{}' is not an ISO 4217 code",
                raw.currency
            ));
        }
        let mut rates = HashMap::new();
        for (meter, &rate) in &raw.rates {
            if !rate.is_finite() || rate < 0.0 {
                return Err(format!(
                    "config: the rate of meter '{meter}' must be a non-negative number, not {rate}"
                ));
            }
            // Meter ids ignore case, so two spellings of one id would be two prices.
            if rates.insert(meter.to_ascii_lowercase(), rate).is_some() {
                return Err(format!(
                    "config: meter '{meter}' has two rates (ids ignore case)"
                ));
            }
        }
        let batch_size = raw.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(format!(
                "config: batch_size must be from 1 to {MAX_BATCH_SIZE}, not {batch_size}"
            ));
        }
        for (name, value) in &raw.headers {
            check_header(name, value).map_err(|e| format!("config: headers: {e}"))?;
        }
        let source = raw.source.unwrap_or_else(|| "tally".into());
        if source.is_empty()
            || source.len() > 64
            || !source
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "config: source '{source}' must be 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(Config {
            endpoint: raw.endpoint,
            currency: raw.currency,
            rates,
            batch_size,
            headers: raw.headers.into_iter().collect(),
            source,
        })
    }

    fn rate(&self, meter_id: &str) -> Option<f64> {
        self.rates.get(&meter_id.to_ascii_lowercase()).copied()
    }
}

/// An absolute `http`/`https` URL with a host and no credentials. (Whether
/// its origin is allowed is the host's call, at send time.)
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let lower = endpoint.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| format!("'{endpoint}' is not an http or https URL"))?;
    if endpoint.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("'{endpoint}' has spaces or control characters"));
    }
    if endpoint.contains('#') {
        return Err(format!("'{endpoint}' has a fragment"));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials go in `headers`, not in the URL".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal has colons of its own: a port follows the `]`.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("'{endpoint}' has no host"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("'{endpoint}' has an invalid port '{port}'"));
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    // RFC 9110 token characters.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("'{name}' is not a header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "'{name}' is set by tally (the host sets Idempotency-Key; the adapter frames its JSON)"
        ));
    }
    // Never echo the value: it is likely a secret.
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "the value of '{name}' must be printable ASCII on one line"
        ));
    }
    Ok(())
}

/// The columns of a usage batch that invoicing reads (see `usage-batch`).
pub struct Columns<'a> {
    /// The batch's string dictionary.
    pub strings: &'a [String],
    /// Indexes into `strings`.
    pub subscription_id: &'a [u32],
    /// Indexes into `strings`.
    pub meter_id: &'a [u32],
    /// Start of each row's usage bucket, Unix seconds.
    pub usage_start: &'a [i64],
    /// Quantity in the meter's unit.
    pub quantity: &'a [f64],
}

/// Usage summed per subscription, meter and usage day.
///
/// Names are interned once per batch, so rows add up without allocating.
#[derive(Default)]
pub struct Usage {
    /// (subscription, meter, usage day) as interned names → quantity.
    quantities: HashMap<(u32, u32, i64), f64>,
    names: Vec<String>,
    ids: HashMap<String, u32>,
    /// Usage rows read so far.
    pub rows_read: u64,
}

impl Usage {
    /// Adds a batch.
    pub fn add(&mut self, batch: &Columns<'_>) {
        let mut global: Vec<Option<u32>> = vec![None; batch.strings.len()];
        let mut id_of = |this: &mut Self, local: u32| -> u32 {
            *global[local as usize]
                .get_or_insert_with(|| this.intern(&batch.strings[local as usize]))
        };
        for row in 0..batch.quantity.len() {
            let key = (
                id_of(self, batch.subscription_id[row]),
                id_of(self, batch.meter_id[row]),
                batch.usage_start[row].div_euclid(DAY),
            );
            *self.quantities.entry(key).or_default() += batch.quantity[row];
        }
        self.rows_read += batch.quantity.len() as u64;
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The invoice lines, ordered by subscription, day and meter (so the same
    /// usage always gives the same requests), and the meters that had no
    /// rate (invoiced at 0). `catalog` maps lower-case meter ids to (name, unit).
    pub fn lines(
        &self,
        config: &Config,
        window: (i64, i64),
        catalog: &HashMap<String, (String, String)>,
    ) -> (Vec<Line>, BTreeSet<String>) {
        let name = |id: u32| self.names[id as usize].as_str();
        let mut keyed: Vec<((&str, i64, &str), f64)> = self
            .quantities
            .iter()
            .map(|(&(s, m, day), &q)| ((name(s), day, name(m)), q))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unrated = BTreeSet::new();
        let lines = keyed
            .into_iter()
            .map(|((subscription, day, meter), quantity)| {
                let rate = config.rate(meter).unwrap_or_else(|| {
                    unrated.insert(meter.to_owned());
                    0.0
                });
                let (meter_name, unit) = catalog
                    .get(&meter.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_default();
                // The amount is the rounded quantity times the rate, so a
                // receiver can recompute every line from what it was sent.
                let quantity_micros = (quantity * 1e6).round() as i64;
                Line {
                    id: format!(
                        "{}/{}..{}/{subscription}/{}/{}",
                        config.source,
                        iso_time(window.0),
                        iso_time(window.1),
                        meter.to_ascii_lowercase(),
                        iso_date(day)
                    ),
                    subscription_id: subscription.to_owned(),
                    meter_id: meter.to_owned(),
                    meter_name,
                    unit,
                    period: (day * DAY, (day + 1) * DAY),
                    quantity_micros,
                    unit_price: rate,
                    amount_micros: (quantity_micros as f64 * rate).round() as i64,
                }
            })
            .collect();
        (lines, unrated)
    }
}

const DAY: i64 = 86_400;

/// One invoice line: a subscription's use of a meter on a usage day, rated.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Stable across runs of the same window (see the crate docs).
    pub id: String,
    pub subscription_id: String,
    /// In the catalog's spelling.
    pub meter_id: String,
    /// From the catalog; empty for a meter it does not know.
    pub meter_name: String,
    /// From the catalog; empty for a meter it does not know.
    pub unit: String,
    /// Usage day `[start, end)`, Unix seconds.
    pub period: (i64, i64),
    /// Quantity in millionths of the meter's unit.
    pub quantity_micros: i64,
    /// Price per unit, from the rate card (0 for an unrated meter).
    pub unit_price: f64,
    /// Amount in millionths of the currency.
    pub amount_micros: i64,
}

/// A line as it goes on the wire.
#[derive(Serialize)]
struct WireLine<'a> {
    id: &'a str,
    subscription_id: &'a str,
    meter_id: &'a str,
    meter_name: &'a str,
    unit: &'a str,
    period_start: String,
    period_end: String,
    quantity: String,
    unit_price: String,
    amount: String,
    currency: &'a str,
}

impl Line {
    /// The line's JSON object.
    pub fn to_json(&self, currency: &str) -> String {
        serde_json::to_string(&WireLine {
            id: &self.id,
            subscription_id: &self.subscription_id,
            meter_id: &self.meter_id,
            meter_name: &self.meter_name,
            unit: &self.unit,
            period_start: iso_time(self.period.0),
            period_end: iso_time(self.period.1),
            quantity: micros(self.quantity_micros),
            // Rust prints floats without an exponent, in the fewest digits that round-trip.
            unit_price: format!("{}", self.unit_price),
            amount: micros(self.amount_micros),
            currency,
        })
        .expect("a line serialises")
    }
}

/// What every request of a run says about itself, before its lines.
#[derive(Serialize)]
pub struct Envelope<'a> {
    /// The config's `source`.
    pub source: &'a str,
    pub run_id: &'a str,
    /// Whether the run replaces an earlier export of the window.
    pub correction: bool,
    /// The reported-time window exported.
    pub window: Period,
    /// This request's place among the run's requests.
    pub batch: Position,
    /// The currency of every amount.
    pub currency: &'a str,
}

/// A `[start, end)` period as ISO-8601 UTC times.
#[derive(Serialize)]
pub struct Period {
    pub start: String,
    pub end: String,
}

impl Period {
    /// The period of Unix seconds `[start, end)`.
    pub fn of(start: i64, end: i64) -> Self {
        Period {
            start: iso_time(start),
            end: iso_time(end),
        }
    }
}

/// A request's place in its run, from 1.
#[derive(Serialize)]
pub struct Position {
    /// From 1.
    pub index: usize,
    /// Requests in the run.
    pub count: usize,
}

impl Envelope<'_> {
    /// The request body: the envelope, then `lines` (JSON objects).
    pub fn body(&self, lines: &[String]) -> Vec<u8> {
        let head = serde_json::to_string(self).expect("an envelope serialises");
        let size = head.len() + 12 + lines.iter().map(|l| l.len() + 1).sum::<usize>();
        let mut body = String::with_capacity(size);
        body.push_str(head.strip_suffix('}').expect("a JSON object"));
        body.push_str(",\"lines\":[");
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(line);
        }
        body.push_str("]}");
        body.into_bytes()
    }
}

/// Splits lines into requests of at most `batch_size` lines whose bodies
/// stay within `budget` bytes (the envelope's share already taken off).
/// Greedy and in order, so the same lines always split the same way.
pub fn batches(lines: &[String], batch_size: usize, budget: usize) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let full = i - start == batch_size || (i > start && bytes + line.len() + 1 > budget);
        if full {
            batches.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += line.len() + 1;
    }
    if start < lines.len() {
        batches.push(start..lines.len());
    }
    batches
}

/// What an answer of the billing API means for the run.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Accepted,
    /// Worth retrying the run (the same requests, the same keys).
    Transient(String),
    /// Retrying will not help: the reason says what the API objected to.
    Permanent(String),
}

/// Judges an answer: 2xx accepted; 408, 429 and 5xx transient; anything
/// else (other 4xx, an unfollowed redirect) permanent.
pub fn judge(status: u16, headers: &[(String, String)], body: &[u8]) -> Verdict {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut reason = format!("the billing API answered {status}: {}", excerpt(body));
    match status {
        200..=299 => Verdict::Accepted,
        408 | 429 | 500..=599 => {
            if let Some(after) = header("retry-after") {
                reason.push_str(&format!(" (Retry-After: {after})"));
            }
            Verdict::Transient(reason)
        }
        300..=399 => {
            reason.push_str(&format!(
                " (redirects are not followed; set the endpoint to {})",
                header("location").unwrap_or("the final URL")
            ));
            Verdict::Permanent(reason)
        }
        _ => Verdict::Permanent(reason),
    }
}

/// The start of a body, on one line, for a failure reason.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "(empty body)".into();
    }
    match flat.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Millionths as a decimal string: `1234567` → `"1.234567"`.
pub fn micros(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds.
pub fn iso_time(seconds: i64) -> String {
    let time = seconds.rem_euclid(DAY);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        iso_date(seconds.div_euclid(DAY)),
        time / 3_600,
        time / 60 % 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"endpoint":"https://billing.example/v1/lines","currency":"EUR","rates":{"M1":0.5}}"#;

    fn with(key: &str, value: serde_json::Value) -> String {
        let mut config: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        config[key] = value;
        config.to_string()
    }

    #[test]
    fn config_is_checked() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(config.rate("m1"), Some(0.5));
        for (key, value, complaint) in [
            (
                "endpoint",
                "ftp://billing.example/",
                "not an http or https URL",
            ),
            ("endpoint", "https:///v1", "no host"),
            (
                "endpoint",
                "https://user:pw@billing.example/",
                "credentials",
            ),
            ("endpoint", "http://billing.example:99999/", "invalid port"),
            ("currency", "euro", "ISO 4217"),
            ("source", "two words", "source"),
        ] {
            let refused = Config::parse(&with(key, value.into())).err().unwrap();
            assert!(refused.contains(complaint), "{key}={value}: {refused}");
        }
        assert!(Config::parse(&with("endpoint", "http://[::1]:8080/x".into())).is_ok());
        assert!(Config::parse(&with("rates", serde_json::json!({"m": -1}))).is_err());
        assert!(Config::parse(&with("rates", serde_json::json!({"m": 1, "M": 2}))).is_err());
        assert!(Config::parse(&with("batch_size", 0.into())).is_err());
        assert!(Config::parse(&with("surprise", 1.into())).is_err());
        assert!(
            Config::parse(&with(
                "headers",
                serde_json::json!({"Idempotency-Key": "x"})
            ))
            .is_err()
        );
        assert!(Config::parse(&with("headers", serde_json::json!({"X-Api-Key": "s\n"}))).is_err());
        assert!(
            Config::parse(&with("headers", serde_json::json!({"X-Api-Key": "s3cr3t"}))).is_ok()
        );
    }

    #[test]
    fn answers_are_judged() {
        assert_eq!(judge(201, &[], b""), Verdict::Accepted);
        let retry = vec![("Retry-After".to_string(), "30".to_string())];
        assert!(
            matches!(judge(429, &retry, b"slow down"), Verdict::Transient(r) if r.contains("429: slow down (Retry-After: 30)"))
        );
        assert!(
            matches!(judge(503, &[], b""), Verdict::Transient(r) if r.contains("(empty body)"))
        );
        assert!(matches!(judge(408, &[], b""), Verdict::Transient(_)));
        assert!(
            matches!(judge(422, &[], b"{\"error\":\n \"bad line\"}"), Verdict::Permanent(r) if r.contains("422: {\"error\": \"bad line\"}"))
        );
        let long = vec![b'x'; 1_000];
        assert!(matches!(judge(400, &[], &long), Verdict::Permanent(r) if r.len() < 300));
        assert!(matches!(judge(301, &[], b""), Verdict::Permanent(r) if r.contains("redirects")));
    }

    #[test]
    fn batches_respect_count_and_size() {
        let lines: Vec<String> = (0..10).map(|i| "x".repeat(10 + i)).collect();
        assert_eq!(batches(&lines, 4, 1 << 20), vec![0..4, 4..8, 8..10]);
        // 12 + 13 + 14 bytes with separators go over 30.
        assert_eq!(batches(&lines[1..4], 10, 30), vec![0..2, 2..3]);
        // A line over the budget still goes, alone.
        assert_eq!(batches(&lines[..2], 10, 5), vec![0..1, 1..2]);
        assert!(batches(&[], 10, 100).is_empty());
    }

    #[test]
    fn numbers_and_times() {
        assert_eq!(micros(1_234_567), "1.234567");
        assert_eq!(micros(5), "0.000005");
        assert_eq!(micros(-5), "-0.000005");
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_764_300_000), "2025-11-28T03:20:00Z");
        let envelope = Envelope {
            source: "tally",
            run_id: "r",
            correction: false,
            window: Period::of(0, DAY),
            batch: Position { index: 1, count: 1 },
            currency: "EUR",
        };
        let body: serde_json::Value =
            serde_json::from_slice(&envelope.body(&["{\"a\":1}".into(), "{\"b\":2}".into()]))
                .unwrap();
        assert_eq!(body["lines"][1]["b"], 2);
        assert_eq!(body["window"]["end"], "1970-01-02T00:00:00Z");
    }
}
