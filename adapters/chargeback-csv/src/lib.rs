//! Chargeback CSV for Power BI: usage rated by a rate card, grouped by a tag.
//!
//! Config (the installation's `[config]` table):
//!
//! ```toml
//! currency = "EUR"                 # ISO 4217
//! group_by_tag = "cost-center"     # rows without the tag go to "unallocated"
//! [rates]                          # price per unit of each meter (ids ignore case)
//! "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//! ```
//!
//! Writes `chargeback.csv`: one row per usage day, group, subscription and
//! meter, with quantity, rate and cost. Meters without a rate are exported at
//! a rate of 0 and named once in the log, so nothing disappears silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

wit_bindgen::generate!({ path: "../../wit", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};
use tally::billing::log::{Level, write as log};
use tally::billing::output::append;
use tally::billing::usage::{UsageBatch, meters, query};

const DOCUMENT: &str = "chargeback.csv";
const HEADER: &str =
    "date,group,subscription_id,meter_id,meter_name,unit,quantity,rate,cost,currency\n";
const UNALLOCATED: &str = "unallocated";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    currency: String,
    group_by_tag: String,
    rates: HashMap<String, f64>,
}

impl Config {
    fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("config: {e}"))?;
        if config.currency.len() != 3 || !config.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "config: currency '{}' is not an ISO 4217 code",
                config.currency
            ));
        }
        if config.group_by_tag.trim().is_empty() {
            return Err("config: group_by_tag must not be empty".into());
        }
        if let Some((meter, rate)) = config
            .rates
            .iter()
            .find(|(_, r)| !r.is_finite() || **r < 0.0)
        {
            return Err(format!(
                "config: the rate of meter '{meter}' must be a non-negative number, not {rate}"
            ));
        }
        Ok(config)
    }

    fn rate(&self, meter_id: &str) -> Option<f64> {
        self.rates
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(meter_id))
            .map(|(_, rate)| *rate)
    }
}

/// One output row's key: usage day, group, subscription, meter.
type RowKey = (i64, String, String, String);

struct Chargeback;

impl Guest for Chargeback {
    fn describe() -> Description {
        Description {
            name: "chargeback-csv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            produces: vec![DOCUMENT.into()],
        }
    }

    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn export(request: ExportRequest, config: String) -> Result<Summary, ExportError> {
        let config = Config::parse(&config).map_err(ExportError::InvalidConfig)?;
        let cursor = query(request.window, request.granularity, None)
            .map_err(|e| ExportError::Transient(format!("{e:?}")))?;
        let mut quantities: BTreeMap<RowKey, f64> = BTreeMap::new();
        let mut rows_read = 0u64;
        while let Some(batch) = cursor.next() {
            rows_read += batch.quantity.len() as u64;
            add_batch(&batch, &config.group_by_tag, &mut quantities);
        }

        let catalog: HashMap<String, (String, String)> = meters()
            .into_iter()
            .map(|m| (m.id.to_ascii_lowercase(), (m.name, m.unit)))
            .collect();
        let mut unrated = BTreeSet::new();
        let mut csv = String::from(HEADER);
        for ((day, group, subscription, meter), quantity) in &quantities {
            let rate = config.rate(meter).unwrap_or_else(|| {
                unrated.insert(meter.clone());
                0.0
            });
            let (name, unit) = catalog
                .get(&meter.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default();
            csv.push_str(&format!(
                "{},{},{},{},{},{},{:.6},{:.6},{:.6},{}\n",
                iso_date(*day),
                field(group),
                field(subscription),
                field(meter),
                field(&name),
                field(&unit),
                quantity,
                rate,
                quantity * rate,
                config.currency
            ));
        }
        for meter in unrated {
            log(
                Level::Warn,
                &format!("meter {meter} has no rate in the rate card; exported at 0"),
            );
        }
        append(DOCUMENT, "text/csv", csv.as_bytes())
            .map_err(|e| ExportError::Permanent(format!("{e:?}")))?;
        log(
            Level::Info,
            &format!(
                "{rows_read} usage rows rated into {} chargeback rows",
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

/// Sums a batch into the output rows.
fn add_batch(batch: &UsageBatch, tag: &str, quantities: &mut BTreeMap<RowKey, f64>) {
    let s = |i: u32| batch.strings[i as usize].as_str();
    // The group of each tag set, resolved once per batch.
    let groups: Vec<&str> = batch
        .tag_sets
        .iter()
        .map(|set| {
            set.iter()
                .find(|(k, _)| s(*k) == tag)
                .map_or(UNALLOCATED, |(_, v)| s(*v))
        })
        .collect();
    for row in 0..batch.quantity.len() {
        let key = (
            batch.usage_start[row].div_euclid(86_400),
            groups[batch.tags[row] as usize].to_string(),
            s(batch.subscription_id[row]).to_string(),
            s(batch.meter_id[row]).to_string(),
        );
        *quantities.entry(key).or_default() += batch.quantity[row];
    }
}

/// `YYYY-MM-DD` of a day number since the Unix epoch (civil-from-days, Howard Hinnant).
fn iso_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A CSV field, quoted when it must be.
fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

export!(Chargeback);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_fields() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(20_454), "2026-01-01");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("plain"), "plain");
    }
}
