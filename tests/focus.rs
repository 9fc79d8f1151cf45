//! The `focus` adapter's document, checked by the FinOps Foundation's
//! focus-validator 2.2.1 and against the usage it rated.
//!
//! Needs the components (`adapters/build.sh`) and the validator's virtual
//! environment (`.venv-focus`, or the interpreter named by
//! `TALLY_FOCUS_PYTHON`), both made by `tests/run.sh`; fails, not skips,
//! without them.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;
use support::process::tally;
use support::*;
use tally_usage_generator::{Options, UsageRecord};

/// What the dataset supports, in the validator's applicability criteria, so
/// that it also checks the conditional columns the adapter writes. Left out,
/// though true: `PUBLIC_PRICE_LIST_SUPPORTED` (the validator applies a rule
/// when *any* of its criteria is given, and would then ask for the
/// pricing-currency columns of providers that price in another currency) and
/// `USAGE_MEASUREMENT_SUPPORTED` (its ConsumedQuantity rules read
/// `CommitmentDiscountStatus`, a column of commitment discounts, which tally
/// does not have). The test checks those columns itself.
const CRITERIA: &str = "ACCOUNT_NAMING_SUPPORTED,BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED,\
    NEGOTIATED_PRICING_SUPPORTED,REGION_SUPPORTED,RESOURCE_TYPE_ASSIGNMENT_SUPPORTED,\
    SUB_ACCOUNT_SUPPORTED,TAGGING_SUPPORTED,UNIT_PRICING_SUPPORTED";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let python = std::env::var_os("TALLY_FOCUS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-focus/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run tests/run.sh, which installs focus-validator 2.2.1 into .venv-focus",
        python.display()
    );
    python
}

/// The `site-packages` holding `focus_validator`: the validator must run
/// from there (it opens its currency list by a relative path).
fn site_packages(python: &Path) -> PathBuf {
    let out = Command::new(python)
        .args([
            "-c",
            "import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))",
        ])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "focus_validator is not installed for {}: run tests/run.sh\n{}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A rule's status in the validator's report.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Pass,
    Fail,
    Skipped,
}

/// What focus-validator said about a document.
struct Report {
    /// The `Total: … | Fail: N` line.
    summary: String,
    statuses: HashMap<String, Status>,
    /// Rule id → its line in the failures section.
    failures: BTreeMap<String, String>,
    /// The whole output, for messages.
    text: String,
}

impl Report {
    fn count(&self, name: &str) -> usize {
        self.summary
            .split('|')
            .find_map(|part| part.trim().strip_prefix(&format!("{name}: ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} count in '{}'", self.summary))
    }
}

/// Runs focus-validator on a FOCUS 1.2 CSV. It always exits 0: the verdict
/// is in its report.
fn validate(csv: &Path) -> Report {
    let python = python();
    let site = site_packages(&python);
    let out = Command::new(&python)
        .current_dir(&site)
        .args(["-m", "focus_validator.main", "--data-file"])
        .arg(csv)
        .args([
            "--validate-version",
            "1.2",
            "--block-download",
            "--applicability-criteria",
            CRITERIA,
        ])
        .output()
        .expect("focus-validator runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "focus-validator failed to run:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("Total: "))
        .unwrap_or_else(|| {
            panic!(
                "no summary in the validator's output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    let (results, failed) = text.split_once("--- Failures ---").unwrap_or((&text, ""));
    let mut statuses = HashMap::new();
    // Result lines: `<icon> <rule>: PASS|FAIL|SKIPPED  (…)`.
    for line in results.lines() {
        let Some((rule, rest)) = line.split_once(' ').and_then(|(_, r)| r.split_once(": ")) else {
            continue;
        };
        let status = match rest.split_whitespace().next() {
            Some("PASS") => Status::Pass,
            Some("FAIL") => Status::Fail,
            Some("SKIPPED") => Status::Skipped,
            _ => continue,
        };
        statuses.insert(rule.to_string(), status);
    }
    // Failure lines: `- <rule>: violations=N; <message>`.
    let failures = failed
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(rule, _)| (rule.to_string(), l.to_string()))
        })
        .collect();
    Report {
        summary,
        statuses,
        failures,
        text,
    }
}

/// Rule id → the rules whose requirement is an OR with that rule as a branch,
/// read from the validator's own FOCUS 1.2 model.
fn or_parents(site: &Path) -> HashMap<String, Vec<String>> {
    let rules_dir = site.join("focus_validator/rules");
    let model = std::fs::read_dir(&rules_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("model-1.2") && name.ends_with(".json")
        })
        .unwrap_or_else(|| panic!("no FOCUS 1.2 model in {}", rules_dir.display()));
    let model: Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    for (id, rule) in model["ModelRules"].as_object().unwrap() {
        let requirement = &rule["ValidationCriteria"]["Requirement"];
        if requirement["CheckFunction"] != "OR" {
            continue;
        }
        for item in requirement["Items"].as_array().unwrap() {
            if let Some(child) = item["ModelRuleId"].as_str() {
                parents.entry(child.into()).or_default().push(id.clone());
            }
        }
    }
    parents
}

/// Asserts the validator found nothing wrong. A failed rule is excused only
/// when it is a branch of OR rules that all passed: one branch of an OR
/// always fails (`InvoiceId MUST be null` / `MUST NOT be null`), and the OR
/// is the requirement.
fn assert_valid(report: &Report, what: &str) {
    let site = site_packages(&python());
    let parents = or_parents(&site);
    let failed: BTreeSet<&String> = report
        .statuses
        .iter()
        .filter(|(_, s)| **s == Status::Fail)
        .map(|(rule, _)| rule)
        .collect();
    assert_eq!(
        failed.len(),
        report.count("Fail"),
        "{what}: every failed rule is listed\n{}",
        report.text
    );
    assert_eq!(
        failed,
        report.failures.keys().collect::<BTreeSet<_>>(),
        "{what}: the failures section names the failed rules\n{}",
        report.text
    );
    let unexcused: Vec<&String> = failed
        .iter()
        .copied()
        .filter(|rule| {
            let or_rules = parents.get(*rule).map(Vec::as_slice).unwrap_or_default();
            or_rules.is_empty()
                || or_rules
                    .iter()
                    .any(|parent| report.statuses.get(parent) != Some(&Status::Pass))
        })
        .collect();
    let details: Vec<&String> = unexcused.iter().map(|r| &report.failures[*r]).collect();
    assert!(
        unexcused.is_empty(),
        "{what}: focus-validator failed {unexcused:?}\n{}\n{details:#?}",
        report.summary
    );
    // The checks users rely on ran and passed: decimals, date/times, JSON
    // objects, the currency, the cost = unit price × quantity identity.
    for rule in [
        "BilledCost-C-000-M",
        "BillingCurrency-C-000-M",
        "BillingPeriodStart-C-000-M",
        "ChargePeriodStart-C-000-M",
        "ChargeClass-C-000-M",
        "ContractedUnitPrice-C-011-C",
        "SkuPriceDetails-C-000-C",
        "Tags-C-000-C",
        "ResourceId-C-000-C",
    ] {
        assert_eq!(
            report.statuses.get(rule),
            Some(&Status::Pass),
            "{what}: {rule}\n{}",
            report.text
        );
    }
    println!("{what}: focus-validator {}", report.summary);
}

/// The rate card of a config file: lower-case meter id → price.
fn rates(config: &Path) -> (String, HashMap<String, f64>) {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let config = table["config"].as_table().unwrap();
    let rates = config["rates"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(id, rate)| {
            let rate = rate
                .as_float()
                .or_else(|| rate.as_integer().map(|i| i as f64))
                .unwrap();
            (id.to_ascii_lowercase(), rate)
        })
        .collect();
    (config["currency"].as_str().unwrap().to_string(), rates)
}

/// A CSV as rows of column name → value ("" is null).
fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let record = r.unwrap();
            header
                .iter()
                .zip(record.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// A FOCUS date/time, which must be exactly `YYYY-MM-DDTHH:MM:SSZ`.
fn time(text: &str) -> DateTime<Utc> {
    assert_eq!(text.len(), 20, "'{text}' is not YYYY-MM-DDTHH:MM:SSZ");
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ")
        .unwrap_or_else(|e| panic!("'{text}': {e}"))
        .and_utc()
}

fn number(row: &HashMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|e| panic!("{column} '{}': {e}", row[column]))
}

/// `tally adapter test` of the focus component; returns its report and the CSV.
fn export(
    dir: &Path,
    usage: &Path,
    window: (&str, &str),
    granularity: &str,
    correction: bool,
) -> (String, PathBuf) {
    let component = root().join("target/adapters/focus.wasm");
    assert!(
        component.exists(),
        "{} is missing: run adapters/build.sh (tests/run.sh does)",
        component.display()
    );
    let out = dir.join(format!("{granularity}-{correction}"));
    let config = root().join("examples/adapters/focus.toml");
    let mut args = vec![
        "adapter",
        "test",
        component.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--usage",
        usage.to_str().unwrap(),
        "--from",
        window.0,
        "--to",
        window.1,
        "--granularity",
        granularity,
        "--out",
        out.to_str().unwrap(),
    ];
    if correction {
        args.push("--correction");
    }
    let run = tally(&args);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "tally {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (stdout, out.join("focus.csv"))
}

/// Checks a FOCUS document against the usage it was made from.
fn check_against_usage(
    csv: &Path,
    records: &[UsageRecord],
    bucket: Duration,
    correction: bool,
) -> usize {
    let (currency, rates) = rates(&root().join("examples/adapters/focus.toml"));
    let rows = read_csv(csv);

    // One row per aggregate: (subscription, meter, resource, usage bucket).
    let bucket_of = |t: DateTime<Utc>| t.timestamp().div_euclid(bucket.num_seconds());
    let aggregates: BTreeSet<_> = records
        .iter()
        .map(|r| {
            (
                r.subscription_id.as_str(),
                r.meter_id.to_ascii_lowercase(),
                r.resource_uri.as_str(),
                bucket_of(r.usage_start_time),
            )
        })
        .collect();
    assert_eq!(
        rows.len(),
        aggregates.len(),
        "one FOCUS row per usage aggregate"
    );

    // Totals: Σ quantity × rate over the input, per meter and in all.
    let rate = |meter: &str| {
        rates
            .get(&meter.to_ascii_lowercase())
            .copied()
            .unwrap_or(0.0)
    };
    let mut want_quantity: BTreeMap<String, f64> = BTreeMap::new();
    let mut want_cost = 0.0;
    for r in records {
        *want_quantity
            .entry(r.meter_id.to_ascii_lowercase())
            .or_default() += r.quantity;
        want_cost += r.quantity * rate(&r.meter_id);
    }
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-9 * want.abs().max(1.0);

    let resources: HashMap<&str, &UsageRecord> = records
        .iter()
        .map(|r| (r.resource_uri.as_str(), r))
        .collect();
    let mut got_quantity: BTreeMap<String, f64> = BTreeMap::new();
    let mut got_cost: BTreeMap<&str, f64> = BTreeMap::new();
    for row in &rows {
        let meter = row["SkuId"].to_ascii_lowercase();
        let quantity = number(row, "PricingQuantity");
        assert_eq!(row["ConsumedQuantity"], row["PricingQuantity"]);
        assert_eq!(row["ConsumedUnit"], row["PricingUnit"]);
        assert!(!row["PricingUnit"].is_empty());
        *got_quantity.entry(meter.clone()).or_default() += quantity;

        // Unit price × quantity is every cost column, exactly (not rounded).
        for price in ["ListUnitPrice", "ContractedUnitPrice"] {
            assert_eq!(number(row, price), rate(&meter), "{price} of {meter}");
        }
        for cost in ["BilledCost", "EffectiveCost", "ListCost", "ContractedCost"] {
            assert_eq!(
                number(row, cost),
                number(row, "ListUnitPrice") * quantity,
                "{cost} = unit price × quantity: {row:?}"
            );
            *got_cost.entry(cost).or_default() += number(row, cost);
        }
        assert_eq!(row["BillingCurrency"], currency);
        assert_eq!(row["ChargeCategory"], "Usage");
        assert_eq!(
            row["ChargeClass"],
            if correction { "Correction" } else { "" },
            "ChargeClass"
        );

        // The usage bucket is the charge period, its month the billing period.
        let start = time(&row["ChargePeriodStart"]);
        assert_eq!(time(&row["ChargePeriodEnd"]) - start, bucket);
        let month = Utc
            .with_ymd_and_hms(start.year(), start.month(), 1, 0, 0, 0)
            .unwrap();
        let next = if start.month() == 12 {
            Utc.with_ymd_and_hms(start.year() + 1, 1, 1, 0, 0, 0)
        } else {
            Utc.with_ymd_and_hms(start.year(), start.month() + 1, 1, 0, 0, 0)
        }
        .unwrap();
        assert_eq!(
            (
                time(&row["BillingPeriodStart"]),
                time(&row["BillingPeriodEnd"])
            ),
            (month, next)
        );

        // The resource's subscription, location and tags, as reported.
        let resource = resources
            .get(row["ResourceId"].as_str())
            .unwrap_or_else(|| panic!("ResourceId {} is not in the usage", row["ResourceId"]));
        assert_eq!(row["SubAccountId"], resource.subscription_id);
        assert_eq!(row["RegionId"], resource.location);
        let tags: Value = serde_json::from_str(&row["Tags"]).unwrap();
        assert_eq!(tags, Value::Object(resource.tags.clone()), "Tags");
        assert!(
            serde_json::from_str::<serde_json::Map<String, Value>>(&row["SkuPriceDetails"]).is_ok()
        );
    }
    assert_totals_eq(&got_quantity, &want_quantity);
    for (cost, got) in got_cost {
        assert!(
            close(got, want_cost),
            "Σ {cost} = {got}, want Σ quantity × rate = {want_cost}"
        );
    }
    rows.len()
}

#[test]
fn focus_export_passes_the_finops_validator_and_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    // Three and a half days across a month's end, so rows fall in two billing periods.
    let records = sample(&Options {
        subscriptions: 6,
        days: 3,
        end: Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap(),
        ..Options::default()
    });
    let usage = dir.path().join("usage.ndjson");
    std::fs::write(
        &usage,
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    // A window holding every reported time, on day boundaries.
    let reported = records.iter().map(|r| r.reported_time.unwrap());
    let day = |t: DateTime<Utc>| t.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let from = day(reported.clone().min().unwrap());
    let to = day(reported.max().unwrap()) + Duration::days(1);
    let window = (from.to_rfc3339(), to.to_rfc3339());
    let window = (window.0.as_str(), window.1.as_str());

    for (granularity, bucket, correction) in [
        ("daily", Duration::days(1), false),
        ("hourly", Duration::hours(1), true),
    ] {
        let what = format!(
            "{granularity}{}",
            if correction { ", correction" } else { "" }
        );
        let (report, csv) = export(dir.path(), &usage, window, granularity, correction);
        let rows = check_against_usage(&csv, &records, bucket, correction);
        assert!(
            report.contains(&format!("ok: {rows} rows read, {rows} rows written")),
            "{report}"
        );
        println!(
            "{what}: {rows} rows; {}",
            report
                .lines()
                .find(|l| l.starts_with("figures:"))
                .unwrap_or_default()
        );
        assert_valid(&validate(&csv), &what);
    }
}

#[test]
fn focus_config_is_refused_with_clear_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let usage = dir.path().join("usage.ndjson");
    let records = sample(&Options {
        subscriptions: 1,
        days: 1,
        ..Options::default()
    });
    std::fs::write(&usage, serde_json::to_string(&records[0]).unwrap()).unwrap();
    let component = root().join("target/adapters/focus.wasm");
    for (config, reason) in [
        (r#"{"currency":"EURO","rates":{}}"#, "not an ISO 4217 code"),
        (
            r#"{"currency":"EUR","rates":{"m":-0.5}}"#,
            "must be a non-negative number",
        ),
        (
            r#"{"currency":"EUR","rates":{},"tax":0.2}"#,
            "unknown field `tax`",
        ),
    ] {
        let file = dir.path().join("config.json");
        std::fs::write(&file, config).unwrap();
        let run = tally(&[
            "adapter",
            "test",
            component.to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
            "--usage",
            usage.to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{config} was accepted");
        assert!(stderr.contains(reason), "{config}: {stderr}");
    }
}
