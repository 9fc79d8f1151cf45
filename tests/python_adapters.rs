//! The Python adapters of `adapters/python`, built with componentize-py, run
//! by `tally adapter test` in the host's sandbox: `showback-py` adds up to
//! usage × rates and refuses configs that cannot work. `chargeback-py`, the
//! twin of the Rust `chargeback-csv`, is tested with the other twins in
//! `twins`.
//!
//! Needs the components (`adapters/build.sh`, which `tests/run.sh` runs);
//! fails, not skips, without them. A Python component compiles in seconds:
//! compiled components are cached (`~/.cache/tally/adapters`) as for any
//! `tally adapter test`.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use support::process::tally;
use support::*;
use tally_usage_generator::Options;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A component of `target/adapters` (the test fails when it is missing:
/// run adapters/build.sh or tests/run.sh).
fn component(name: &str) -> String {
    component_path(name).to_str().unwrap().to_string()
}

/// Writes wire records as NDJSON; returns the file and the window of whole
/// days holding every reported time.
fn write_usage(dir: &Path, records: &[Value]) -> (PathBuf, (String, String)) {
    let path = dir.join("usage.ndjson");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let reported: Vec<DateTime<Utc>> = records
        .iter()
        .map(|r| r["reportedTime"].as_str().unwrap().parse().unwrap())
        .collect();
    let day = |t: &DateTime<Utc>| t.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let from = day(reported.iter().min().unwrap());
    let to = day(reported.iter().max().unwrap()) + Duration::days(1);
    (path, (from.to_rfc3339(), to.to_rfc3339()))
}

/// `tally adapter test` of a component of `target/adapters`.
fn adapter_test(
    name: &str,
    config: &Path,
    usage: &Path,
    window: Option<(&str, &str)>,
    granularity: &str,
    out: &Path,
) -> Output {
    let component = component(name);
    let mut args = vec![
        "adapter",
        "test",
        &component,
        "--config",
        config.to_str().unwrap(),
        "--usage",
        usage.to_str().unwrap(),
        "--granularity",
        granularity,
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some((from, to)) = window {
        args.extend(["--from", from, "--to", to]);
    }
    tally(&args)
}

/// The report of a successful `tally adapter test`.
fn run_ok(
    name: &str,
    config: &Path,
    usage: &Path,
    window: (&str, &str),
    granularity: &str,
    out: &Path,
) -> String {
    let run = adapter_test(name, config, usage, Some(window), granularity, out);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// The report's lines that start with `prefix` (the adapter's log is `  [`).
fn lines_of<'a>(report: &'a str, prefix: &str) -> Vec<&'a str> {
    report.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The last line of a failed run's stderr, without serde's position (`at line 1 column 42`).
fn reason(run: &Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    match last.rfind(" at line ") {
        Some(at) if last[at..].contains(" column ") => last[..at].to_string(),
        _ => last.to_string(),
    }
}

/// The rates of a manifest's `[config.rates]`: lower-case meter id → price.
fn manifest_rates(config: &toml::Table) -> HashMap<String, f64> {
    config["rates"]
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
        .collect()
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

#[test]
fn showback_py_adds_up_to_usage_times_rates() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample(&Options {
        subscriptions: 6,
        days: 3,
        end: Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap(),
        ..Options::default()
    });
    let (usage, window) = write_usage(dir.path(), &to_wire(&records));
    let window = (window.0.as_str(), window.1.as_str());
    let manifest = root().join("examples/adapters/showback.toml");
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let config = table["config"].as_table().unwrap();
    let currency = config["currency"].as_str().unwrap();
    let rates = manifest_rates(config);
    let names: HashMap<&str, &str> = config["subscription_names"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(id, name)| (id.as_str(), name.as_str().unwrap()))
        .collect();

    // Independently: quantity per (usage month, subscription, meter), and
    // cost per month and subscription, summed record by record.
    let rate = |meter: &str| {
        rates
            .get(&meter.to_ascii_lowercase())
            .copied()
            .unwrap_or(0.0)
    };
    let mut want_quantity: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    let mut want_cost: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &records {
        let month = r.usage_start_time.format("%Y-%m").to_string();
        let meter = r.meter_id.to_ascii_lowercase();
        *want_quantity
            .entry((month.clone(), r.subscription_id.clone(), meter))
            .or_default() += r.quantity;
        *want_cost
            .entry((month, r.subscription_id.clone()))
            .or_default() += r.quantity * rate(&r.meter_id);
    }
    let months: BTreeSet<&str> = want_cost.keys().map(|(m, _)| m.as_str()).collect();
    assert_eq!(months.len(), 2, "the usage spans a month's end");

    for granularity in ["daily", "hourly"] {
        let out = dir.path().join(granularity);
        let report = run_ok("showback-py", &manifest, &usage, window, granularity, &out);
        println!("{granularity}: {}", lines_of(&report, "figures:")[0]);

        // showback.csv: one row per month, subscription and meter.
        let mut reader = csv::Reader::from_path(out.join("showback.csv")).unwrap();
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            [
                "month",
                "subscription_id",
                "subscription_name",
                "meter_id",
                "meter_name",
                "category",
                "unit",
                "quantity",
                "rate",
                "cost",
                "currency"
            ]
        );
        let mut got_quantity = BTreeMap::new();
        for row in reader.records() {
            let row = row.unwrap();
            let number = |i: usize| row[i].parse::<f64>().unwrap();
            let (month, subscription, meter) = (&row[0], &row[1], &row[3]);
            let (quantity, price, cost) = (number(7), number(8), number(9));
            assert_eq!(price, rate(meter), "{row:?}");
            assert_eq!(
                cost,
                quantity * price,
                "cost = quantity × rate, unrounded: {row:?}"
            );
            assert_eq!(&row[2], *names.get(subscription).unwrap_or(&subscription));
            assert!(
                !row[4].is_empty() && !row[6].is_empty(),
                "catalog name and unit: {row:?}"
            );
            assert_eq!(&row[10], currency);
            let key = (
                month.to_string(),
                subscription.to_string(),
                meter.to_ascii_lowercase(),
            );
            assert!(
                got_quantity.insert(key, quantity).is_none(),
                "one row per key: {row:?}"
            );
        }
        assert_eq!(
            got_quantity.keys().collect::<Vec<_>>(),
            want_quantity.keys().collect::<Vec<_>>()
        );
        for (key, want) in &want_quantity {
            assert!(
                close(got_quantity[key], *want),
                "{key:?}: {} ≠ {want}",
                got_quantity[key]
            );
        }
        assert!(
            report.contains(&format!("{} rows written", want_quantity.len())),
            "{report}"
        );

        // showback.json: each subscription's monthly cost, and each month's.
        let summary: Value =
            serde_json::from_slice(&std::fs::read(out.join("showback.json")).unwrap()).unwrap();
        assert_eq!(summary["currency"], currency);
        assert_eq!(summary["window"]["start"], window.0.replace("+00:00", "Z"));
        let mut got_cost = BTreeMap::new();
        for month in summary["months"].as_array().unwrap() {
            let name = month["month"].as_str().unwrap();
            let mut month_cost = 0.0;
            for subscription in month["subscriptions"].as_array().unwrap() {
                let id = subscription["subscription_id"].as_str().unwrap();
                let cost = subscription["cost"].as_f64().unwrap();
                let meters: f64 = subscription["meters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["cost"].as_f64().unwrap())
                    .sum();
                assert!(
                    close(cost, meters),
                    "{name} {id}: {cost} ≠ Σ meters {meters}"
                );
                got_cost.insert((name.to_string(), id.to_string()), cost);
                month_cost += cost;
            }
            let cost = month["cost"].as_f64().unwrap();
            assert!(close(cost, month_cost), "{name}: {cost} ≠ {month_cost}");
        }
        assert_eq!(
            got_cost.keys().collect::<Vec<_>>(),
            want_cost.keys().collect::<Vec<_>>()
        );
        for (key, want) in &want_cost {
            assert!(
                close(got_cost[key], *want),
                "{key:?}: {} ≠ Σ quantity × rate {want}",
                got_cost[key]
            );
        }
        assert_eq!(summary["unrated_meters"], json!([]));
    }
}

#[test]
fn showback_py_refuses_configs_with_the_rust_adapters_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let usage = dir.path().join("usage.ndjson");
    let records = sample(&Options {
        subscriptions: 1,
        days: 1,
        ..Options::default()
    });
    std::fs::write(&usage, serde_json::to_string(&records[0]).unwrap()).unwrap();
    let refuse = |name: &str, config: &str| {
        let file = dir.path().join("config.json");
        std::fs::write(&file, config).unwrap();
        let run = adapter_test(name, &file, &usage, None, "daily", &dir.path().join("out"));
        assert!(!run.status.success(), "{name} accepted {config}");
        reason(&run)
    };

    // showback-py: the checks of the Rust adapters, and its own field.
    for (config, reason) in [
        (
            r#"{"currency":"euro","rates":{}}"#,
            "config: currency 'euro' is not an ISO 4217 code",
        ),
        (
            r#"{"currency":"EUR","rates":{"m":-1}}"#,
            "config: the rate of meter 'm' must be a non-negative number, not -1",
        ),
        (
            r#"{"currency":"EUR","rates":{},"group_by_tag":"cc"}"#,
            "config: unknown field `group_by_tag`, expected one of `currency`, `rates`, `subscription_names`",
        ),
        (r#"{"currency":"EUR"}"#, "config: missing field `rates`"),
        (
            r#"{"currency":"EUR","rates":{},"subscription_names":{"s":5}}"#,
            "config: invalid type: integer `5`, expected a string",
        ),
    ] {
        let got = refuse("showback-py", config);
        assert_eq!(
            got,
            format!("error: the adapter refused its configuration: {reason}"),
            "{config}"
        );
    }
}
