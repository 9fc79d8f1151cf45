//! The FOCUS transform itself, free of the component bindings: the config,
//! one CSV row per usage row, and the value formats FOCUS 1.2 asks for.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use serde::Deserialize;
use tally_adapter_kit::{civil_from_days, csv_field as csv, days_from_civil};

/// The FOCUS 1.2 columns written, in this order (the specification's).
pub const COLUMNS: [&str; 41] = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
];

/// ISO 4217 codes of national currencies (funds, metals and test codes are
/// not billing currencies).
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND \
    BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP \
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK \
    JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK \
    MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG \
    QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS \
    TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER \
    ZAR ZMW ZWG ZWL";

/// FOCUS 1.2's `ServiceCategory` values.
const SERVICE_CATEGORIES: [&str; 19] = [
    "AI and Machine Learning",
    "Analytics",
    "Business Applications",
    "Compute",
    "Databases",
    "Developer Tools",
    "Multicloud",
    "Identity",
    "Integration",
    "Internet of Things",
    "Management and Governance",
    "Media",
    "Migration",
    "Mobile",
    "Networking",
    "Security",
    "Storage",
    "Web",
    "Other",
];

/// The installation's `[config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// ISO 4217: `BillingCurrency`, and the currency of the rates.
    pub currency: String,
    /// Meter id → unit price (ids ignore case).
    pub rates: HashMap<String, f64>,
    /// `ProviderName`: who runs the cloud (default "Private Cloud").
    #[serde(default = "default_provider")]
    pub provider_name: String,
    /// `PublisherName` (default: the provider).
    pub publisher_name: Option<String>,
    /// `InvoiceIssuerName` (default: the provider).
    pub invoice_issuer_name: Option<String>,
    /// One billing account for every subscription (default: each
    /// subscription is its own billing account).
    pub billing_account_id: Option<String>,
    /// `BillingAccountName` (default: the id).
    pub billing_account_name: Option<String>,
    /// Also write each subscription's rows as a document of its own,
    /// belonging to that subscription (`append-for`).
    #[serde(default)]
    pub per_subscription: bool,
    /// Catalog unit → FOCUS unit, for units the built-in spelling misses.
    #[serde(default)]
    pub units: HashMap<String, String>,
    /// Meter category → FOCUS `ServiceCategory`, for categories the built-in
    /// mapping misses (compared ignoring case).
    #[serde(default)]
    pub service_categories: HashMap<String, String>,
}

fn default_provider() -> String {
    "Private Cloud".into()
}

impl Config {
    /// Parses and checks a config; the error says what to fix.
    pub fn parse(json: &str) -> Result<Config, String> {
        let mut config: Config = serde_json::from_str(json).map_err(|e| format!("config: {e}"))?;
        if config.currency.len() != 3 || !ISO_4217.split(' ').any(|code| code == config.currency) {
            return Err(format!(
                "config: currency '{}' is not an ISO 4217 code of a national currency (e.g. EUR, USD)",
                config.currency
            ));
        }
        let mut rates = HashMap::new();
        for (meter, &rate) in &config.rates {
            if !rate.is_finite() || rate < 0.0 {
                return Err(format!(
                    "config: the rate of meter '{meter}' must be a non-negative number, not {rate}"
                ));
            }
            // Ids ignore case, so two spellings of one meter must agree.
            if rates
                .insert(meter.to_ascii_lowercase(), rate)
                .is_some_and(|r| r != rate)
            {
                return Err(format!("config: meter '{meter}' has two different rates"));
            }
        }
        config.rates = rates;
        let names = [
            ("provider_name", Some(&config.provider_name)),
            ("publisher_name", config.publisher_name.as_ref()),
            ("invoice_issuer_name", config.invoice_issuer_name.as_ref()),
            ("billing_account_id", config.billing_account_id.as_ref()),
            ("billing_account_name", config.billing_account_name.as_ref()),
        ];
        if let Some((key, _)) = names
            .iter()
            .find(|(_, v)| v.is_some_and(|v| v.trim().is_empty()))
        {
            return Err(format!("config: {key} must not be empty"));
        }
        if config.billing_account_name.is_some() && config.billing_account_id.is_none() {
            return Err("config: billing_account_name needs billing_account_id".into());
        }
        if let Some((unit, _)) = config.units.iter().find(|(_, u)| u.trim().is_empty()) {
            return Err(format!(
                "config: the FOCUS unit of '{unit}' must not be empty"
            ));
        }
        if let Some((category, value)) = config
            .service_categories
            .iter()
            .find(|(_, v)| !SERVICE_CATEGORIES.contains(&v.as_str()))
        {
            return Err(format!(
                "config: service category '{value}' (for '{category}') is not a FOCUS ServiceCategory: one of {}",
                SERVICE_CATEGORIES.join(", ")
            ));
        }
        config.service_categories = config
            .service_categories
            .drain()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Ok(config)
    }
}

/// The columns of a usage batch that FOCUS reads (row `i` is element `i`).
pub struct Columns<'a> {
    pub strings: &'a [String],
    pub tag_sets: &'a [Vec<(u32, u32)>],
    pub subscription_id: &'a [u32],
    pub meter_id: &'a [u32],
    pub resource_uri: &'a [u32],
    pub location: &'a [u32],
    pub tags: &'a [u32],
    pub usage_start: &'a [i64],
    pub usage_end: &'a [i64],
    pub quantity: &'a [f64],
}

/// A meter as the catalog describes it.
pub struct CatalogMeter<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub category: &'a str,
    pub unit: &'a str,
}

/// What a row says about its meter, CSV-escaped once per export.
struct MeterColumns {
    /// The catalog's spelling, for the log.
    id: String,
    rate: Option<f64>,
    /// Whether a row of this export used it.
    used: bool,
    /// `ChargeDescription` (the meter's name).
    description: String,
    /// `ConsumedUnit` and `PricingUnit`.
    unit: String,
    /// `ServiceCategory` through `SkuPriceId`, which are adjacent columns.
    service_and_sku: String,
}

/// Writes FOCUS rows, batch by batch.
pub struct Focus<'c> {
    config: &'c Config,
    meters: Vec<MeterColumns>,
    /// Lower-case meter id → `meters`.
    index: HashMap<String, usize>,
    /// `ProviderName,PublisherName` and friends, CSV-escaped once.
    currency: String,
    charge_class: &'static str,
    invoice_issuer: String,
    provider_and_publisher: String,
    /// `BillingAccountId,BillingAccountName` when one account is configured.
    billing_account: Option<String>,
    /// Rows written so far.
    pub rows: u64,
}

impl<'c> Focus<'c> {
    /// A writer for one export; `correction` marks every row as a correction.
    pub fn new<'m>(
        config: &'c Config,
        catalog: impl IntoIterator<Item = CatalogMeter<'m>>,
        correction: bool,
    ) -> Self {
        let name = |value: &Option<String>| csv(value.as_ref().unwrap_or(&config.provider_name));
        let mut focus = Focus {
            config,
            meters: Vec::new(),
            index: HashMap::new(),
            currency: csv(&config.currency),
            // FOCUS: null unless the row corrects a previously invoiced period.
            charge_class: if correction { "Correction" } else { "" },
            invoice_issuer: name(&config.invoice_issuer_name),
            provider_and_publisher: format!(
                "{},{}",
                csv(&config.provider_name),
                name(&config.publisher_name)
            ),
            billing_account: config.billing_account_id.as_ref().map(|id| {
                let name = config.billing_account_name.as_ref().unwrap_or(id);
                format!("{},{}", csv(id), csv(name))
            }),
            rows: 0,
        };
        for meter in catalog {
            focus.add_meter(&meter);
        }
        focus
    }

    fn add_meter(&mut self, meter: &CatalogMeter<'_>) -> usize {
        let key = meter.id.to_ascii_lowercase();
        let (category, subcategory) = match self
            .config
            .service_categories
            .get(&meter.category.to_ascii_lowercase())
        {
            Some(category) => (category.as_str(), format!("Other ({category})")),
            None => {
                let (category, subcategory) = service_category(meter.category);
                (category, subcategory.to_string())
            }
        };
        let service_name = if meter.category.is_empty() {
            "Other"
        } else {
            meter.category
        };
        let details = format!(
            "{{\"x_MeterCategory\":{},\"x_MeterUnit\":{}}}",
            json_string(meter.category),
            json_string(meter.unit)
        );
        let unit = match self.config.units.get(meter.unit) {
            Some(unit) => unit.clone(),
            None => focus_unit(meter.unit),
        };
        let id = csv(meter.id);
        let columns = MeterColumns {
            id: meter.id.to_string(),
            rate: self.config.rates.get(&key).copied(),
            used: false,
            description: csv(meter.name),
            unit: csv(&unit),
            service_and_sku: format!(
                "{},{},{},{id},{},{},{id}",
                csv(category),
                csv(service_name),
                csv(&subcategory),
                csv(meter.name),
                csv(&details)
            ),
        };
        self.meters.push(columns);
        self.index.insert(key, self.meters.len() - 1);
        self.meters.len() - 1
    }

    /// Appends one CSV row per usage row of `batch` to `out`, and where each
    /// row ends in `out` to `row_ends`.
    pub fn write_batch(
        &mut self,
        batch: &Columns<'_>,
        out: &mut String,
        row_ends: &mut Vec<usize>,
    ) {
        let text = |i: u32| batch.strings[i as usize].as_str();
        // Per batch: each tag set's JSON, and each meter-id string's meter.
        let tags: Vec<String> = batch
            .tag_sets
            .iter()
            .map(|set| {
                let pairs: Vec<String> = set
                    .iter()
                    .map(|&(k, v)| format!("{}:{}", json_string(text(k)), json_string(text(v))))
                    .collect();
                csv(&format!("{{{}}}", pairs.join(",")))
            })
            .collect();
        let mut meter_of: Vec<Option<usize>> = vec![None; batch.strings.len()];
        for row in 0..batch.quantity.len() {
            let id = batch.meter_id[row];
            let meter = match meter_of[id as usize] {
                Some(meter) => meter,
                None => {
                    let meter = match self.index.get(&text(id).to_ascii_lowercase()) {
                        Some(&meter) => meter,
                        // Not in the catalog: named by its id, so it still shows.
                        None => self.add_meter(&CatalogMeter {
                            id: text(id),
                            name: text(id),
                            category: "",
                            unit: "",
                        }),
                    };
                    self.meters[meter].used = true;
                    meter_of[id as usize] = Some(meter);
                    meter
                }
            };
            self.write_row(out, batch, row, &self.meters[meter], &tags);
            row_ends.push(out.len());
        }
        self.rows += batch.quantity.len() as u64;
    }

    fn write_row(
        &self,
        out: &mut String,
        batch: &Columns<'_>,
        row: usize,
        meter: &MeterColumns,
        tags: &[String],
    ) {
        let text = |i: &[u32]| batch.strings[i[row] as usize].as_str();
        let quantity = batch.quantity[row];
        let rate = meter.rate.unwrap_or(0.0);
        // Not rounded: FOCUS requires unit price × quantity = cost.
        let cost = quantity * rate;
        let subscription = csv(text(batch.subscription_id));
        let (start, end) = (batch.usage_start[row], batch.usage_end[row]);
        let (period_start, period_end) = month_of(start);
        // `write!` to a String cannot fail.
        let _ = write!(out, "{cost},");
        match &self.billing_account {
            Some(account) => out.push_str(account),
            None => {
                let _ = write!(out, "{subscription},{subscription}");
            }
        }
        let _ = write!(
            out,
            ",{},{},{},Usage,{},{},Usage-Based,{},{},{quantity},{},{cost},{rate},{cost},,{},{cost},{rate},Standard,{quantity},{},{},",
            self.currency,
            Time(period_end),
            Time(period_start),
            self.charge_class,
            meter.description,
            Time(end),
            Time(start),
            meter.unit,
            self.invoice_issuer,
            meter.unit,
            self.provider_and_publisher,
        );
        let location = csv(text(batch.location));
        let _ = write!(out, "{location},{location},");
        write_resource(out, text(batch.resource_uri));
        let _ = writeln!(
            out,
            ",{},{subscription},{subscription},{}",
            meter.service_and_sku, tags[batch.tags[row] as usize]
        );
    }

    /// Meters read that the rate card has no rate for (exported at 0).
    pub fn unrated(&self) -> BTreeSet<&str> {
        self.meters
            .iter()
            .filter(|m| m.used && m.rate.is_none())
            .map(|m| m.id.as_str())
            .collect()
    }
}

/// The CSV header line.
pub fn header() -> String {
    COLUMNS.join(",") + "\n"
}

/// Splits the rows of each batch by subscription, for one document per
/// subscription: its header on the first piece, then its rows in the order
/// of the whole document.
#[derive(Default)]
pub struct PerSubscription {
    /// Subscriptions whose document was started (its header handed out).
    started: HashSet<String>,
}

impl PerSubscription {
    /// The pieces of each subscription's document in one batch, by
    /// subscription id: `rows` is what [`Focus::write_batch`] wrote for
    /// `batch`, ending at `row_ends`.
    pub fn split<'b>(
        &mut self,
        batch: &Columns<'b>,
        rows: &str,
        row_ends: &[usize],
    ) -> BTreeMap<&'b str, String> {
        let mut pieces: BTreeMap<&'b str, String> = BTreeMap::new();
        let mut start = 0;
        for (row, &end) in row_ends.iter().enumerate() {
            let subscription = batch.strings[batch.subscription_id[row] as usize].as_str();
            let piece = pieces.entry(subscription).or_insert_with(|| {
                if self.started.insert(subscription.to_owned()) {
                    header()
                } else {
                    String::new()
                }
            });
            piece.push_str(&rows[start..end]);
            start = end;
        }
        pieces
    }
}

/// `ResourceId,ResourceName,ResourceType` of a resource URI; all null
/// without one. The type is the ARM type (`Microsoft.Compute/virtualMachines`).
fn write_resource(out: &mut String, uri: &str) {
    if uri.is_empty() {
        out.push_str(",,");
        return;
    }
    let name = uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri);
    let kind = match uri.rsplit_once("/providers/") {
        // namespace/type/name[/type/name…]: keep the namespace and the types.
        Some((_, path)) => path
            .split('/')
            .enumerate()
            .filter(|(i, _)| *i == 0 || i % 2 == 1)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join("/"),
        None => "Resource".into(),
    };
    let _ = write!(out, "{},{},{}", csv(uri), csv(name), csv(&kind));
}

/// FOCUS `ServiceCategory` and `ServiceSubcategory` of a meter category of
/// the Azure Stack Hub catalog; anything else is "Other".
fn service_category(category: &str) -> (&'static str, &'static str) {
    match category.to_ascii_lowercase().as_str() {
        "compute" => ("Compute", "Virtual Machines"),
        "managed disks" => ("Storage", "Block Storage"),
        "storage" => ("Storage", "Object Storage"),
        "network" | "networking" => ("Networking", "Network Infrastructure"),
        "sql" | "mysql" => ("Databases", "Relational Databases"),
        "event hubs" => ("Integration", "Messaging"),
        "key vault" => ("Security", "Secret Management"),
        "app service" => ("Web", "Application Platforms"),
        _ => ("Other", "Other (Other)"),
    }
}

/// A catalog unit in FOCUS Unit Format ("GB*hours" → "GB-Hours"), or as
/// it is when it already reads as a unit.
pub fn focus_unit(unit: &str) -> String {
    let unit = unit.trim();
    if let Some((what, per)) = unit.split_once('*') {
        let what = what.trim();
        let what = what.strip_prefix("Count of ").unwrap_or(what);
        let time = match per.trim().to_ascii_lowercase().trim_end_matches('s') {
            "second" => Some("Seconds"),
            "minute" => Some("Minutes"),
            "hour" => Some("Hours"),
            "day" => Some("Days"),
            "month" => Some("Months"),
            "year" => Some("Years"),
            _ => None,
        };
        if let Some(time) = time {
            return format!("{what}-{time}");
        }
    }
    match unit {
        "" => "Units",
        "Request count in 10000s" => "10000 Requests",
        "10K transactions" => "10000 Transactions",
        "GB-s" => "GB-Seconds",
        "1 hour" => "Hours",
        other => other,
    }
    .to_string()
}

/// A timestamp as FOCUS writes date/times: `YYYY-MM-DDTHH:MM:SSZ`.
pub struct Time(pub i64);

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (year, month, day) = civil_from_days(self.0.div_euclid(86_400));
        let second = self.0.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            second / 3_600,
            second / 60 % 60,
            second % 60
        )
    }
}

/// The calendar month (UTC) holding `time`: `[start, end)` in seconds.
pub fn month_of(time: i64) -> (i64, i64) {
    let (year, month, _) = civil_from_days(time.div_euclid(86_400));
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    (
        days_from_civil(year, month, 1) * 86_400,
        days_from_civil(next_year, next_month, 1) * 86_400,
    )
}

/// A JSON string literal.
fn json_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_months() {
        assert_eq!(Time(0).to_string(), "1970-01-01T00:00:00Z");
        // 2024-02-29T13:05:09Z, a leap day.
        assert_eq!(Time(1_709_211_909).to_string(), "2024-02-29T13:05:09Z");
        let (start, end) = month_of(1_709_211_909);
        assert_eq!(Time(start).to_string(), "2024-02-01T00:00:00Z");
        assert_eq!(Time(end).to_string(), "2024-03-01T00:00:00Z");
        let (start, end) = month_of(1_798_700_000); // December 2026
        assert_eq!(
            (Time(start).to_string(), Time(end).to_string()),
            ("2026-12-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into())
        );
    }

    #[test]
    fn units_and_resources() {
        assert_eq!(focus_unit("GB*hours"), "GB-Hours");
        assert_eq!(focus_unit("Count of Disks*month"), "Disks-Months");
        assert_eq!(focus_unit("Virtual core hours"), "Virtual core hours");
        assert_eq!(focus_unit(""), "Units");
        let mut out = String::new();
        write_resource(
            &mut out,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/s1/databases/db1",
        );
        assert!(
            out.ends_with(",db1,Microsoft.Sql/servers/databases"),
            "{out}"
        );
    }

    #[test]
    fn each_subscription_gets_its_rows_after_one_header() {
        let config =
            Config::parse(r#"{"currency":"EUR","rates":{"m":1},"per_subscription":true}"#).unwrap();
        assert!(config.per_subscription);
        let catalog = [CatalogMeter {
            id: "M",
            name: "Meter",
            category: "Compute",
            unit: "Hours",
        }];
        let mut focus = Focus::new(&config, catalog, false);
        let strings: Vec<String> = ["s-b", "s-a", "M", "", "{}"].map(String::from).into();
        let batch = Columns {
            strings: &strings,
            tag_sets: &[vec![]],
            subscription_id: &[0, 1, 0],
            meter_id: &[2, 2, 2],
            resource_uri: &[3, 3, 3],
            location: &[3, 3, 3],
            tags: &[0, 0, 0],
            usage_start: &[0, 0, 3_600],
            usage_end: &[3_600, 3_600, 7_200],
            quantity: &[1.0, 2.0, 3.0],
        };
        let mut split = PerSubscription::default();
        let mut whole = String::new();
        for round in 0..2 {
            let (mut rows, mut ends) = (String::new(), Vec::new());
            focus.write_batch(&batch, &mut rows, &mut ends);
            whole.push_str(&rows);
            let pieces = split.split(&batch, &rows, &ends);
            assert_eq!(pieces.keys().copied().collect::<Vec<_>>(), ["s-a", "s-b"]);
            let lines: Vec<&str> = rows.lines().collect();
            let header = if round == 0 { header() } else { String::new() };
            assert_eq!(pieces["s-a"], format!("{header}{}\n", lines[1]));
            assert_eq!(
                pieces["s-b"],
                format!("{header}{}\n{}\n", lines[0], lines[2])
            );
        }
        assert_eq!(whole.lines().count(), 6);
    }

    #[test]
    fn config_is_checked() {
        let ok = |json: &str| Config::parse(json).map(|_| ());
        assert!(ok(r#"{"currency":"EUR","rates":{"M":1}}"#).is_ok());
        assert!(
            ok(r#"{"currency":"EURO","rates":{}}"#)
                .unwrap_err()
                .contains("ISO 4217")
        );
        assert!(ok(r#"{"currency":"XAU","rates":{}}"#).is_err());
        assert!(
            ok(r#"{"currency":"EUR","rates":{"m":-1}}"#)
                .unwrap_err()
                .contains("non-negative")
        );
        assert!(ok(r#"{"currency":"EUR","rates":{"m":1,"M":2}}"#).is_err());
        assert!(
            ok(r#"{"currency":"EUR","rates":{},"colour":1}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(ok(r#"{"currency":"EUR","rates":{},"billing_account_name":"x"}"#).is_err());
        assert!(
            ok(r#"{"currency":"EUR","rates":{},"service_categories":{"K8s":"Kubernetes"}}"#)
                .is_err()
        );
    }
}
