//! Chargeback CSV for Power BI: usage rated by a rate card, grouped by a tag.
//!
//! Config (the installation's `[config]` table):
//!
//! ```toml
//! currency = "EUR"                 # ISO 4217
//! group_by_tag = "cost-center"     # rows without the tag go to "unallocated"
//! per_subscription = true          # optional (default false): also one CSV per subscription
//! [rates]                          # price per unit of each meter (ids ignore case)
//! "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//! ```
//!
//! Writes `chargeback.csv`: one row per usage day, group, subscription and
//! meter, with quantity, rate and cost. Meters without a rate are exported at
//! a rate of 0 and named once in the log, so nothing disappears silently.
//!
//! With `per_subscription = true`, also `chargeback-<subscription>.csv` for
//! each subscription read: the header and that subscription's rows of
//! `chargeback.csv`, in the same order, written with `append-for` so that it
//! belongs to the subscription (and is published to its tenants when the
//! installation publishes). `<subscription>` is the id when it is made of
//! `A-Z a-z 0-9 . _ -` and the name fits in 128 bytes, else the first 16 hex
//! digits of its SHA-256. The Python and JavaScript twins write the same.

mod rating;

use std::collections::HashMap;

use rating::{Chargeback, Config};
use tally_adapter_kit::document_name;

wit_bindgen::generate!({ path: "../../wit", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};
use tally::billing::log::{Level, write as log};
use tally::billing::output::{OutputError, append, append_for};
use tally::billing::usage::{meters, query};

const DOCUMENT: &str = "chargeback.csv";
/// The start of each subscription's document name.
const PER_SUBSCRIPTION: &str = "chargeback-";

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Description {
        Description {
            name: "chargeback-csv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            produces: vec![
                DOCUMENT.into(),
                format!("{PER_SUBSCRIPTION}{{subscription}}.csv"),
            ],
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn export(request: ExportRequest, config: String) -> Result<Summary, ExportError> {
        let config = Config::parse(&config).map_err(ExportError::InvalidConfig)?;
        let cursor = query(request.window, request.granularity, None)
            .map_err(|e| ExportError::Transient(format!("{e:?}")))?;
        let mut chargeback = Chargeback::default();
        while let Some(batch) = cursor.next() {
            chargeback.add(&rating::columns_of!(batch), &config.group_by_tag);
        }
        let catalog: HashMap<String, (String, String)> = meters()
            .into_iter()
            .map(|m| (m.id.to_ascii_lowercase(), (m.name, m.unit)))
            .collect();
        let unrated = chargeback
            .render(&config, &catalog, |piece| {
                append(DOCUMENT, "text/csv", piece.as_bytes())
            })
            .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
        let mut documents = vec![DOCUMENT.to_string()];
        if config.per_subscription {
            chargeback
                .render_per_subscription(&config, &catalog, |subscription, piece| {
                    let name = document_name(PER_SUBSCRIPTION, subscription, ".csv");
                    append_for(subscription, &name, "text/csv", piece.as_bytes())?;
                    if documents.last() != Some(&name) {
                        documents.push(name);
                    }
                    Ok(())
                })
                .map_err(|e: OutputError| ExportError::Permanent(format!("{e:?}")))?;
        }
        for meter in unrated {
            log(
                Level::Warn,
                &format!("meter {meter} has no rate in the rate card; exported at 0"),
            );
        }
        log(
            Level::Info,
            &format!(
                "{} usage rows rated into {} chargeback rows",
                chargeback.rows_read,
                chargeback.rows()
            ),
        );
        Ok(Summary {
            rows_read: chargeback.rows_read,
            rows_written: chargeback.rows() as u64,
            documents,
        })
    }
}

export!(Adapter);
