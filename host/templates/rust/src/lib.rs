//! {{name}}: a tally billing adapter. It sums the usage of each meter over
//! the export window, prices it with an optional rate card and writes
//! `summary.csv`.
//!
//! Config (the installation's `[config]` table, handed over as JSON):
//!
//! ```toml
//! currency = "EUR"
//! [rates]                      # price per unit; meters without one cost 0
//! "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//! ```
//!
//! The contract is `wit/billing-adapter.wit`: start there.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

wit_bindgen::generate!({ path: "wit", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};
use tally::billing::log::{Level, write as log};
use tally::billing::output::append;
use tally::billing::usage::{meters, query};

const DOCUMENT: &str = "summary.csv";

/// The adapter's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    currency: String,
    #[serde(default)]
    rates: HashMap<String, f64>,
}

impl Config {
    /// Parses and checks a configuration; the error says what to fix.
    fn parse(json: &str) -> Result<Config, String> {
        let mut config: Config = serde_json::from_str(json).map_err(|e| format!("config: {e}"))?;
        if config.currency.len() != 3 || !config.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "config: currency '{}' is not an ISO 4217 code",
                config.currency
            ));
        }
        if let Some((meter, rate)) = config
            .rates
            .iter()
            .find(|(_, r)| !r.is_finite() || **r < 0.0)
        {
            return Err(format!(
                "config: the rate of '{meter}' must be a non-negative number, not {rate}"
            ));
        }
        // Meter ids compare ignoring case.
        config.rates = config
            .rates
            .into_iter()
            .map(|(m, r)| (m.to_ascii_lowercase(), r))
            .collect();
        Ok(config)
    }
}

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Description {
        Description {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            produces: vec![DOCUMENT.into()],
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn export(request: ExportRequest, config: String) -> Result<Summary, ExportError> {
        let config = Config::parse(&config).map_err(ExportError::InvalidConfig)?;
        // Usage arrives in column batches; strings are indexes into `batch.strings`.
        let cursor = query(request.window, request.granularity, None)
            .map_err(|e| ExportError::Transient(format!("{e:?}")))?;
        let mut quantities: BTreeMap<String, f64> = BTreeMap::new();
        let mut rows_read = 0u64;
        while let Some(batch) = cursor.next() {
            for (meter, quantity) in batch.meter_id.iter().zip(&batch.quantity) {
                // Meter ids come in the catalog's spelling.
                let meter = &batch.strings[*meter as usize];
                *quantities.entry(meter.clone()).or_default() += quantity;
            }
            rows_read += batch.quantity.len() as u64;
        }
        let catalog: HashMap<String, (String, String)> = meters()
            .into_iter()
            .map(|m| (m.id, (m.name, m.unit)))
            .collect();
        let mut csv = String::from("meter_id,meter_name,unit,quantity,rate,cost,currency\n");
        for (meter, quantity) in &quantities {
            let (name, unit) = catalog.get(meter).cloned().unwrap_or_default();
            let rate = config
                .rates
                .get(&meter.to_ascii_lowercase())
                .copied()
                .unwrap_or(0.0);
            csv.push_str(&format!(
                "{meter},{},{},{quantity:.6},{rate},{:.6},{}\n",
                csv_field(&name),
                csv_field(&unit),
                quantity * rate,
                config.currency
            ));
        }
        append(DOCUMENT, "text/csv", csv.as_bytes())
            .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
        log(
            Level::Info,
            &format!(
                "{rows_read} usage rows summed into {} meters",
                quantities.len()
            ),
        );
        Ok(Summary {
            rows_read,
            rows_written: quantities.len() as u64,
            documents: vec![DOCUMENT.into()],
        })
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

export!(Adapter);
