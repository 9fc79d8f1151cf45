//! FinOps FOCUS 1.2 cost and usage data: each aggregated usage row of the
//! window, rated by a rate card, as one row of `focus.csv` (`text/csv`).
//!
//! Config (the installation's `[config]` table):
//!
//! ```toml
//! currency = "EUR"                   # ISO 4217: BillingCurrency, and the rates' currency
//! provider_name = "Contoso Cloud"    # ProviderName (default "Private Cloud")
//! publisher_name = "Contoso Cloud"   # PublisherName (default: provider_name)
//! invoice_issuer_name = "Contoso"    # InvoiceIssuerName (default: provider_name)
//! billing_account_id = "contoso-it"  # one billing account for all subscriptions
//! billing_account_name = "Contoso IT" #   (default: each subscription is its own account)
//! per_subscription = true            # optional (default false): also one CSV per subscription
//! [rates]                            # unit price of each meter, per catalog unit (ids ignore case)
//! "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5" = 0.025
//! [units]                            # catalog unit → FOCUS unit, where the built-in spelling misses
//! "Per active site per hour" = "Site-Hours"
//! [service_categories]               # meter category → FOCUS ServiceCategory, for new categories
//! "Kubernetes" = "Compute"
//! ```
//!
//! How a usage row becomes a FOCUS row:
//! - `ChargePeriodStart`/`End` are its usage bucket (an hour or a day, as the
//!   installation asks); `BillingPeriodStart`/`End` the calendar month (UTC)
//!   holding it. All date/times are `YYYY-MM-DDTHH:MM:SSZ`.
//! - The meter is the SKU: `SkuId` = `SkuPriceId` = the meter id, `SkuMeter`
//!   and `ChargeDescription` its name; `ConsumedUnit` = `PricingUnit` = its
//!   catalog unit in FOCUS Unit Format (`GB*hours` → `GB-Hours`);
//!   `SkuPriceDetails` keeps the catalog's category and unit as `x_` properties.
//!   `ServiceName` is the meter category, mapped to a FOCUS `ServiceCategory`.
//! - `ConsumedQuantity` = `PricingQuantity` = the quantity; `ListUnitPrice` =
//!   `ContractedUnitPrice` = the rate; `BilledCost` = `EffectiveCost` =
//!   `ListCost` = `ContractedCost` = quantity × rate, not rounded (FOCUS
//!   requires the product to match). Meters without a rate are exported at 0
//!   and named once in the log, so nothing disappears silently.
//! - `ResourceId` is the resource URI, `ResourceName` its last segment,
//!   `ResourceType` its ARM type; `RegionId` = `RegionName` = the location;
//!   `SubAccountId` = `SubAccountName` = the subscription; `Tags` the user
//!   tags as a JSON object.
//! - `ChargeCategory` "Usage", `ChargeFrequency` "Usage-Based",
//!   `PricingCategory` "Standard", `InvoiceId` null (no invoice yet);
//!   `ChargeClass` "Correction" when the run replaces an exported window, else null.
//!
//! The document is streamed: each batch's rows are appended as they are
//! written, so memory stays flat whatever the window's size.
//!
//! With `per_subscription = true`, also `focus-<subscription>.csv` for each
//! subscription read: the header and that subscription's rows of
//! `focus.csv`, in the same order, written with `append-for` so that it
//! belongs to the subscription (and is published to its tenants when the
//! installation publishes). `<subscription>` is the id when it is made of
//! `A-Z a-z 0-9 . _ -` and the name fits in 128 bytes, else the first 16 hex
//! digits of its SHA-256.

mod focus;

use std::collections::HashSet;

use focus::{CatalogMeter, Columns, Config, Focus, PerSubscription};
use tally_adapter_kit::document_name;

wit_bindgen::generate!({ path: "../../wit", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};
use tally::billing::log::{Level, write as log};
use tally::billing::output::{append, append_for};
use tally::billing::usage::{QueryError, UsageBatch, meters, query};

const DOCUMENT: &str = "focus.csv";
/// The start of each subscription's document name.
const PER_SUBSCRIPTION: &str = "focus-";

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Description {
        Description {
            name: "focus".into(),
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
        let catalog = meters();
        let mut focus = Focus::new(
            &config,
            catalog.iter().map(|m| CatalogMeter {
                id: &m.id,
                name: &m.name,
                category: &m.category,
                unit: &m.unit,
            }),
            request.correction,
        );
        let cursor = query(request.window, request.granularity, None).map_err(|e| match e {
            QueryError::Unavailable(reason) => ExportError::Transient(reason),
            QueryError::InvalidWindow(reason) | QueryError::OutOfScope(reason) => {
                ExportError::Permanent(reason)
            }
        })?;
        write(&focus::header())?;
        let mut documents = vec![DOCUMENT.to_string()];
        let mut named = HashSet::new();
        let mut per_subscription = PerSubscription::default();
        let (mut rows, mut row_ends) = (String::new(), Vec::new());
        while let Some(batch) = cursor.next() {
            rows.clear();
            row_ends.clear();
            let columns = columns(&batch);
            focus.write_batch(&columns, &mut rows, &mut row_ends);
            write(&rows)?;
            if config.per_subscription {
                for (subscription, piece) in per_subscription.split(&columns, &rows, &row_ends) {
                    let name = document_name(PER_SUBSCRIPTION, subscription, ".csv");
                    append_for(subscription, &name, "text/csv", piece.as_bytes())
                        .map_err(|e| ExportError::Permanent(format!("writing {name}: {e:?}")))?;
                    if named.insert(name.clone()) {
                        documents.push(name);
                    }
                }
            }
        }
        for meter in focus.unrated() {
            log(
                Level::Warn,
                &format!("meter {meter} has no rate in the rate card; exported at 0"),
            );
        }
        log(
            Level::Info,
            &format!("{} usage rows written as FOCUS rows", focus.rows),
        );
        Ok(Summary {
            rows_read: focus.rows,
            rows_written: focus.rows,
            documents,
        })
    }
}

/// Appends to the document; a refusal (the output cap) fails the run.
fn write(text: &str) -> Result<(), ExportError> {
    append(DOCUMENT, "text/csv", text.as_bytes())
        .map_err(|e| ExportError::Permanent(format!("writing {DOCUMENT}: {e:?}")))
}

fn columns(batch: &UsageBatch) -> Columns<'_> {
    Columns {
        strings: &batch.strings,
        tag_sets: &batch.tag_sets,
        subscription_id: &batch.subscription_id,
        meter_id: &batch.meter_id,
        resource_uri: &batch.resource_uri,
        location: &batch.location,
        tags: &batch.tags,
        usage_start: &batch.usage_start,
        usage_end: &batch.usage_end,
        quantity: &batch.quantity,
    }
}

export!(Adapter);
