//! Pushes rated usage to an external billing system's HTTP API as invoice
//! lines, through the host's `output.send`.
//!
//! Config (the installation's `[config]` table):
//!
//! ```toml
//! endpoint = "https://billing.example/v1/invoice-lines"  # POSTed to; its origin must be in allowed_outbound_hosts
//! currency = "EUR"                                        # ISO 4217
//! batch_size = 500                                        # lines per request (1–5,000; default 500)
//! source = "tally"                                        # names this tally; prefixes line ids (default "tally")
//! [headers]                                               # static headers of every request, e.g. an API key
//! "X-Api-Key" = "…"
//! [rates]                                                 # price per unit of each meter (ids ignore case)
//! "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//! ```
//!
//! One invoice line per subscription, meter and usage day (UTC) of the usage
//! reported in the run's window, whatever the installation's granularity.
//! Meters without a rate are invoiced at 0 and named once in the log, so
//! nothing disappears silently.
//!
//! # Requests
//!
//! `POST endpoint` with `Content-Type: application/json`, the configured
//! headers, and the host's `Idempotency-Key: <run-id>.<n>`. Lines are ordered
//! by subscription, day and meter and cut into requests of at most
//! `batch_size` lines (and 1 MiB), so a run sends the same requests in the
//! same order every time it is tried: a receiver that drops keys it already
//! has bills nothing twice.
//!
//! ```json
//! {
//!   "source": "tally",
//!   "run_id": "…",
//!   "correction": false,
//!   "window": {"start": "2026-11-27T00:00:00Z", "end": "2026-11-28T00:00:00Z"},
//!   "batch": {"index": 1, "count": 3},
//!   "currency": "EUR",
//!   "lines": [{
//!     "id": "tally/2026-11-27T00:00:00Z..2026-11-28T00:00:00Z/<subscription>/<meter id, lower case>/2026-11-26",
//!     "subscription_id": "…",
//!     "meter_id": "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5",
//!     "meter_name": "Base VM Size Hours",
//!     "unit": "Hours",
//!     "period_start": "2026-11-26T00:00:00Z",
//!     "period_end": "2026-11-27T00:00:00Z",
//!     "quantity": "96.000000",
//!     "unit_price": "0.025",
//!     "amount": "2.400000",
//!     "currency": "EUR"
//!   }]
//! }
//! ```
//!
//! - Numbers are decimal strings, so no precision is lost to a JSON parser's
//!   floating point. `quantity` and `amount` have 6 decimals; `amount` is
//!   `quantity × unit_price` rounded to 6 decimals (the receiver rounds to
//!   its currency's minor unit when it invoices).
//! - `batch.index` counts from 1 to `batch.count`, the requests of the run.
//! - `id` is stable: the same window, subscription, meter and day give the
//!   same id in every run. Usage of one day reported in two windows is two
//!   lines. A correction (a new run of a window exported before, e.g. after
//!   a rate change) comes with `"correction": true`, a new run id and
//!   therefore new idempotency keys, and the same line ids: the receiver
//!   replaces those lines.
//!
//! # Answers
//!
//! 2xx: accepted. 408, 429, 5xx, a timeout or a failed connection: the run
//! fails as transient and the host retries it later under the same run id
//! (requests already accepted come again with the same keys). Any other
//! answer (4xx, a redirect, which is not followed) or an endpoint whose
//! origin is not allowed: the run fails as permanent, with the status and the
//! start of the body.
//!
//! After the last request the run writes `invoice-summary.json`: lines and
//! requests sent, rows read, the total per currency and the unrated meters.

mod invoice;

use std::collections::{BTreeMap, HashMap};

use invoice::{Columns, Config, Envelope, Period, Position, Usage, Verdict};
use serde::Serialize;

// Built on the frozen 0.1 contract, on purpose: a 0.1 adapter keeps
// installing and running beside 0.2 ones.
wit_bindgen::generate!({ path: "../../wit/v0.1", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};
use tally::billing::log::{Level, write as log};
use tally::billing::output::{OutboundRequest, SendError, append, send};
use tally::billing::types::Granularity;
use tally::billing::usage::{QueryError, meters, query};

const DOCUMENT: &str = "invoice-summary.json";

/// What `invoice-summary.json` holds.
#[derive(Serialize)]
struct InvoiceSummary<'a> {
    run_id: &'a str,
    correction: bool,
    window: Period,
    /// The endpoint without its query, which may carry a secret.
    endpoint: &'a str,
    requests: usize,
    lines: usize,
    rows_read: u64,
    /// Sum of the line amounts per currency, as decimal strings.
    totals: BTreeMap<&'a str, String>,
    unrated_meters: Vec<String>,
}

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Description {
        Description {
            name: "billing-webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            produces: vec![DOCUMENT.into()],
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn export(request: ExportRequest, config: String) -> Result<Summary, ExportError> {
        let config = Config::parse(&config).map_err(ExportError::InvalidConfig)?;
        // Lines are per day: daily rows are the hourly ones summed, and fewer.
        let cursor = query(request.window, Granularity::Daily, None).map_err(|e| match e {
            QueryError::Unavailable(reason) => ExportError::Transient(reason),
            QueryError::InvalidWindow(reason) | QueryError::OutOfScope(reason) => {
                ExportError::Permanent(reason)
            }
        })?;
        let mut usage = Usage::default();
        while let Some(batch) = cursor.next() {
            usage.add(&Columns {
                strings: &batch.strings,
                subscription_id: &batch.subscription_id,
                meter_id: &batch.meter_id,
                usage_start: &batch.usage_start,
                quantity: &batch.quantity,
            });
        }
        let catalog: HashMap<String, (String, String)> = meters()
            .into_iter()
            .map(|m| (m.id.to_ascii_lowercase(), (m.name, m.unit)))
            .collect();
        let window = (request.window.start, request.window.end);
        let (lines, unrated) = usage.lines(&config, window, &catalog);
        for meter in &unrated {
            log(
                Level::Warn,
                &format!("meter {meter} has no rate in the rate card; invoiced at 0"),
            );
        }

        let envelope = |index, count| Envelope {
            source: &config.source,
            run_id: &request.run_id,
            correction: request.correction,
            window: Period::of(window.0, window.1),
            batch: Position { index, count },
            currency: &config.currency,
        };
        let wire: Vec<String> = lines.iter().map(|l| l.to_json(&config.currency)).collect();
        // The envelope's share of a body, with the widest batch numbers a run can have.
        let overhead = envelope(999_999, 999_999).body(&[]).len();
        let batches =
            invoice::batches(&wire, config.batch_size, invoice::MAX_BODY_BYTES - overhead);
        let endpoint = config.endpoint.split(['?', '#']).next().unwrap_or_default();
        log(
            Level::Info,
            &format!(
                "{} usage rows rated into {} invoice lines; sending them in {} requests to {endpoint}",
                usage.rows_read,
                lines.len(),
                batches.len()
            ),
        );
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Accept".to_string(), "application/json".to_string()),
            (
                "User-Agent".to_string(),
                concat!("tally-billing-webhook/", env!("CARGO_PKG_VERSION")).to_string(),
            ),
        ];
        headers.extend(config.headers.iter().cloned());
        for (i, batch) in batches.iter().enumerate() {
            let (index, count) = (i + 1, batches.len());
            let outbound = OutboundRequest {
                method: "POST".into(),
                url: config.endpoint.clone(),
                headers: headers.clone(),
                body: envelope(index, count).body(&wire[batch.clone()]),
            };
            let verdict = match send(&outbound) {
                Ok(answer) => invoice::judge(answer.status, &answer.headers, &answer.body),
                Err(error) => judge_error(error),
            };
            let (transient, reason) = match verdict {
                Verdict::Accepted => continue,
                Verdict::Transient(reason) => (true, reason),
                Verdict::Permanent(reason) => (false, reason),
            };
            let reason = format!("request {index} of {count}: {reason}");
            log(Level::Error, &reason);
            if index > 1 {
                log(
                    Level::Info,
                    &format!(
                        "requests 1 to {} were accepted; a retry of this run sends them again under the same idempotency keys",
                        index - 1
                    ),
                );
            }
            return Err(if transient {
                ExportError::Transient(reason)
            } else {
                ExportError::Permanent(reason)
            });
        }

        let total: i64 = lines.iter().map(|l| l.amount_micros).sum();
        let summary = InvoiceSummary {
            run_id: &request.run_id,
            correction: request.correction,
            window: Period::of(window.0, window.1),
            endpoint,
            requests: batches.len(),
            lines: lines.len(),
            rows_read: usage.rows_read,
            totals: BTreeMap::from([(config.currency.as_str(), invoice::micros(total))]),
            unrated_meters: unrated.into_iter().collect(),
        };
        let mut document = serde_json::to_vec_pretty(&summary).expect("a summary serialises");
        document.push(b'\n');
        append(DOCUMENT, "application/json", &document)
            .map_err(|e| ExportError::Permanent(format!("writing {DOCUMENT}: {e:?}")))?;
        log(
            Level::Info,
            &format!(
                "{} invoice lines accepted in {} requests; total {} {}",
                lines.len(),
                batches.len(),
                invoice::micros(total),
                config.currency
            ),
        );
        Ok(Summary {
            rows_read: usage.rows_read,
            rows_written: lines.len() as u64,
            documents: vec![DOCUMENT.into()],
        })
    }
}

/// What a request that was not made or not answered means for the run.
fn judge_error(error: SendError) -> Verdict {
    match error {
        SendError::Timeout(reason) => Verdict::Transient(format!("no answer in time: {reason}")),
        SendError::Failed(reason) => Verdict::Transient(format!("the request failed: {reason}")),
        SendError::NotAllowed(reason) => Verdict::Permanent(format!(
            "not sent: {reason} (add the endpoint's origin to the installation's allowed_outbound_hosts)"
        )),
        SendError::TooLarge(limit) => Verdict::Permanent(format!(
            "a request or its answer is over the host's limit of {limit} bytes"
        )),
        SendError::LimitReached(limit) => Verdict::Permanent(format!(
            "the host's cap of {limit} requests per run is reached; raise batch_size"
        )),
    }
}

export!(Adapter);
