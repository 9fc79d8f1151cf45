//! A statement per subscription a person can read: what each subscription
//! used of each meter in the window (a calendar month, with
//! `[schedule] window = "monthly"`), at the rate card's prices, with the
//! total. Each statement belongs to its subscription (`output.append-for`),
//! so an installation with `publish_to_tenants = true` publishes it to that
//! subscription's tenants, and to no one else.
//!
//! Config (the installation's `[config]` table):
//!
//! ```toml
//! currency = "EUR"                 # ISO 4217: of the rates and every amount
//! issuer = "Contoso Cloud"         # optional: who issues the statement, shown at its top
//! [rates]                          # unit price of each meter, per catalog unit (ids ignore case)
//! "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//! ```
//!
//! For each subscription with usage reported in the window, two documents:
//!
//! - `statement-<subscription>.html` (`text/html; charset=utf-8`): a page
//!   that needs nothing else (inline CSS, no script, nothing fetched) and
//!   prints cleanly (no screen frame, header rows repeated): the issuer, the period, the
//!   subscription, one line per meter (its name, id and unit from the host's
//!   catalog, the quantity, the unit price and the amount), the total and
//!   the currency.
//! - `statement-<subscription>.csv` (`text/csv`): the same lines as rows,
//!   then a `total` row.
//!
//! `<subscription>` is the id when it is made of `A-Z a-z 0-9 . _ -` and the
//! name fits in 128 bytes, else the first 16 hex digits of its SHA-256.
//!
//! Quantities are summed per subscription and meter over the window (ids
//! compared ignoring ASCII case) and rounded to millionths; each amount is
//! that quantity times the unit price, rounded half away from zero to the
//! currency's minor unit (cents; none for JPY, thousandths for KWD…); the
//! total is the sum of the amounts, so every figure can be checked by hand.
//! Meters without a rate are listed at 0, marked unrated, and named in the
//! log. A run writes two documents per subscription and the host takes at
//! most 10,000 documents a run: at most 5,000 subscriptions with usage per
//! window.

mod config;
mod render;
mod statement;

use std::collections::{BTreeSet, HashMap};

use config::Config;
use render::Period;
use statement::{Columns, Usage};
use tally_adapter_kit::document_name;

wit_bindgen::generate!({ path: "../../wit", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};
use tally::billing::log::{Level, write as log};
use tally::billing::output::{OutputError, append_for};
use tally::billing::usage::{QueryError, meters, query};

/// The start of every document's name.
const PREFIX: &str = "statement-";

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Description {
        Description {
            name: "statement".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            produces: vec![
                format!("{PREFIX}{{subscription}}.html"),
                format!("{PREFIX}{{subscription}}.csv"),
            ],
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn export(request: ExportRequest, config: String) -> Result<Summary, ExportError> {
        let config = Config::parse(&config).map_err(ExportError::InvalidConfig)?;
        let cursor = query(request.window, request.granularity, None).map_err(|e| match e {
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
                quantity: &batch.quantity,
            });
        }
        drop(cursor);
        let catalog: HashMap<String, (String, String)> = meters()
            .into_iter()
            .map(|m| (m.id.to_ascii_lowercase(), (m.name, m.unit)))
            .collect();
        let period = Period {
            start: request.window.start,
            end: request.window.end,
        };
        let mut documents = Vec::with_capacity(usage.subscriptions() * 2);
        let mut lines = 0u64;
        let mut unrated = BTreeSet::new();
        for statement in usage.statements(&config, &catalog) {
            lines += statement.lines.len() as u64;
            unrated.extend(statement.unrated().map(|line| line.meter_id.clone()));
            for (suffix, content_type, text) in [
                (
                    ".html",
                    "text/html; charset=utf-8",
                    render::html(&statement, &config, &period),
                ),
                (
                    ".csv",
                    "text/csv",
                    render::csv(&statement, &config, &period),
                ),
            ] {
                let name = document_name(PREFIX, &statement.subscription, suffix);
                append_for(
                    &statement.subscription,
                    &name,
                    content_type,
                    text.as_bytes(),
                )
                .map_err(|e| write_error(&name, e))?;
                documents.push(name);
            }
        }
        for meter in unrated {
            log(
                Level::Warn,
                &format!("meter {meter} has no rate in the rate card; listed at 0"),
            );
        }
        log(
            Level::Info,
            &format!(
                "{} usage rows summed into {} statements of {lines} lines",
                usage.rows_read,
                usage.subscriptions()
            ),
        );
        Ok(Summary {
            rows_read: usage.rows_read,
            rows_written: lines,
            documents,
        })
    }
}

/// Why a document could not be written, as the run's failure: none of these
/// gets better by retrying.
fn write_error(document: &str, error: OutputError) -> ExportError {
    let reason = match error {
        OutputError::LimitReached(cap) => format!("the run's output cap ({cap}) is reached"),
        OutputError::InvalidName(reason) | OutputError::OutOfScope(reason) => reason,
    };
    ExportError::Permanent(format!("writing {document}: {reason}"))
}

export!(Adapter);
