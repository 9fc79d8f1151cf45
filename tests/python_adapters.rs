//! The Python adapters of `adapters/python`, built with componentize-py, run
//! by `tally adapter test` in the host's sandbox: `chargeback-py` writes the
//! very bytes of the Rust `chargeback-csv` (with `per_subscription`, its
//! per-subscription documents too) and refuses the same configs with the
//! same reasons; `showback-py` adds up to usage × rates.
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
use sha2::{Digest, Sha256};
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

/// Usage that stresses what must stay byte-identical: groups and a
/// subscription to quote (a comma, quotes, CR, LF), non-ASCII groups around
/// ASCII ones, a tag value `unallocated` meeting untagged resources, a tag
/// key in another case, a meter id in lower case, quantities that round on
/// a tie or to zero, and a large one. All reported on 2026-10-31.
fn edge_records() -> Vec<Value> {
    let vm = VM_METER.to_ascii_lowercase();
    let edge = "edge-subscription";
    let cases: [(&str, &str, Value, &str, f64); 13] = [
        (
            "r-and-d",
            edge,
            json!({"cost-center": "R&D, \"Labs\""}),
            &vm,
            3.0,
        ),
        (
            "lf",
            edge,
            json!({"cost-center": "two\nlines"}),
            IP_METER,
            0.0000025,
        ),
        (
            "cr",
            edge,
            json!({"cost-center": "a\rb"}),
            VM_METER,
            0.0078125,
        ),
        (
            "snow",
            edge,
            json!({"cost-center": "Ünïcode ☃"}),
            VM_METER,
            123456789.1234565,
        ),
        (
            "eclair",
            edge,
            json!({"cost-center": "éclair"}),
            VM_METER,
            1.0000005,
        ),
        ("zulu", edge, json!({"cost-center": "zulu"}), VM_METER, 1e-7),
        ("upper", edge, json!({"cost-center": "Zulu"}), VM_METER, 2.5),
        (
            "named",
            edge,
            json!({"cost-center": "unallocated"}),
            VM_METER,
            0.5,
        ),
        ("untagged", edge, json!({}), VM_METER, 0.25),
        (
            "key-case",
            edge,
            json!({"Cost-Center": "ignored"}),
            VM_METER,
            0.125,
        ),
        (
            "ip",
            edge,
            json!({"team": "x", "cost-center": "net"}),
            IP_METER,
            7.0,
        ),
        ("ip-too", edge, json!({"cost-center": "net"}), IP_METER, 0.1),
        (
            "quoted",
            "edge, \"quoted\"",
            json!({"cost-center": "net"}),
            VM_METER,
            1.5,
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, subscription, tags, meter, quantity))| {
            let start = Utc.with_ymd_and_hms(2026, 10, 31, i as u32, 0, 0).unwrap();
            let mut r = record(
                subscription,
                &format!("edge-{name}"),
                meter,
                quantity,
                &start.to_rfc3339(),
                &(start + Duration::hours(1)).to_rfc3339(),
            );
            r["resourceUri"] = json!(format!("/edge/{name}"));
            r["tags"] = tags;
            reported(r, "2026-10-31T23:00:00Z")
        })
        .collect()
}

#[test]
fn chargeback_py_writes_the_rust_adapters_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Three and a half days across a month's end, and the edge cases.
    let mut records = to_wire(&sample(&Options {
        subscriptions: 6,
        days: 3,
        end: Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap(),
        ..Options::default()
    }));
    records.extend(edge_records());
    let (usage, window) = write_usage(dir.path(), &records);
    let window = (window.0.as_str(), window.1.as_str());

    // The example rate card, and one with a tie (0.0078125), a negative
    // zero and meters left out (exported at 0 and named in the log).
    let example = root().join("examples/adapters/chargeback.toml");
    let edges = dir.path().join("edges.json");
    std::fs::write(
        &edges,
        json!({
            "currency": "USD",
            "group_by_tag": "cost-center",
            "rates": {
                VM_METER.to_ascii_lowercase(): 0.0078125,
                "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A": -0.0,
                "e5572fce-9f58-49d7-840c-b168c0f01fff": 1,
            },
        })
        .to_string(),
    )
    .unwrap();

    let mut edges_log = String::new();
    for (config, what) in [(&example, "example"), (&edges, "edges")] {
        for granularity in ["daily", "hourly"] {
            let out = |name: &str| dir.path().join(format!("{what}-{granularity}-{name}"));
            let rust = run_ok(
                "chargeback-csv",
                config,
                &usage,
                window,
                granularity,
                &out("rust"),
            );
            let python = run_ok(
                "chargeback-py",
                config,
                &usage,
                window,
                granularity,
                &out("py"),
            );
            let expected = std::fs::read(out("rust").join("chargeback.csv")).unwrap();
            let got = std::fs::read(out("py").join("chargeback.csv")).unwrap();
            if got != expected {
                let (expected, got) = (
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(&got),
                );
                let line = expected.lines().zip(got.lines()).position(|(a, b)| a != b);
                panic!(
                    "{what}, {granularity}: the documents differ (line {line:?}; {} and {} lines)\nrust:   {:?}\npython: {:?}",
                    expected.lines().count(),
                    got.lines().count(),
                    line.and_then(|l| expected.lines().nth(l)),
                    line.and_then(|l| got.lines().nth(l)),
                );
            }
            assert_eq!(lines_of(&python, "  ["), lines_of(&rust, "  ["), "the logs");
            assert_eq!(lines_of(&python, "ok:"), lines_of(&rust, "ok:"));
            let rows = String::from_utf8(got).unwrap().lines().count() - 1;
            assert!(rows > 100, "{what}, {granularity}: {rows} rows");
            println!("{what}, {granularity}: {rows} rows, identical");
            for (name, report) in [("rust", &rust), ("python", &python)] {
                println!("  {name:<6} {}", lines_of(report, "figures:")[0]);
            }
            if what == "edges" {
                edges_log = lines_of(&python, "  [").join("\n");
            }
        }
    }

    // The edge cases were exercised: quoting, the tie rounded to even, the
    // negative zero, a meter without a rate.
    let csv = std::fs::read_to_string(dir.path().join("edges-daily-py/chargeback.csv")).unwrap();
    for expected in [
        "\"R&D, \"\"Labs\"\"\"",
        "\"two\nlines\"",
        "\"a\rb\"",
        ",\"edge, \"\"quoted\"\"\",",
        ",Ünïcode ☃,",
        ",3.000000,0.007812,0.023438,USD\n",
        ",-0.000000,-0.000000,USD\n",
        ",zulu,edge-subscription,FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5,Base VM Size Hours,Virtual core hours,0.000000,0.007812,0.000000,USD\n",
    ] {
        assert!(csv.contains(expected), "{expected:?} in\n{csv}");
    }
    assert!(
        edges_log.contains(&format!(
            "[warn] meter {IP_METER} has no rate in the rate card; exported at 0"
        )),
        "{edges_log}"
    );

    // A window off the day's boundaries fails both alike (transient, retried).
    let off = ("2026-10-31T00:30:00Z", window.1);
    let failures: Vec<String> = ["chargeback-csv", "chargeback-py"]
        .into_iter()
        .map(|name| {
            let run = adapter_test(
                name,
                &example,
                &usage,
                Some(off),
                "daily",
                &dir.path().join("off"),
            );
            assert!(!run.status.success(), "{name} ran an off-boundary window");
            reason(&run)
        })
        .collect();
    assert!(
        failures[0].contains("QueryError::InvalidWindow("),
        "{}",
        failures[0]
    );
    assert_eq!(failures[1], failures[0]);
}

/// The documents a `tally adapter test` wrote to `out`: name → bytes.
fn documents_in(out: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// The name a per-subscription document gets for an id that is not a
/// document name: the first 16 hex digits of its SHA-256.
fn digest_name(prefix: &str, subscription: &str, suffix: &str) -> String {
    let hex: String = Sha256::digest(subscription.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}{hex}{suffix}")
}

#[test]
fn chargeback_py_writes_the_rust_adapters_per_subscription_documents() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = to_wire(&sample(&Options {
        subscriptions: 3,
        days: 2,
        end: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        ..Options::default()
    }));
    records.extend(edge_records());
    let (usage, window) = write_usage(dir.path(), &records);
    let window = (window.0.as_str(), window.1.as_str());
    let config = dir.path().join("per-subscription.json");
    std::fs::write(
        &config,
        json!({
            "currency": "EUR",
            "group_by_tag": "cost-center",
            "per_subscription": true,
            "rates": {VM_METER.to_ascii_lowercase(): 0.0078125, IP_METER: 0.005},
        })
        .to_string(),
    )
    .unwrap();

    for granularity in ["daily", "hourly"] {
        let out = |name: &str| dir.path().join(format!("{granularity}-{name}"));
        let rust = run_ok(
            "chargeback-csv",
            &config,
            &usage,
            window,
            granularity,
            &out("rust"),
        );
        let python = run_ok(
            "chargeback-py",
            &config,
            &usage,
            window,
            granularity,
            &out("py"),
        );
        assert_eq!(lines_of(&python, "  ["), lines_of(&rust, "  ["), "the logs");
        let (expected, got) = (documents_in(&out("rust")), documents_in(&out("py")));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{granularity}: the same documents"
        );
        for (name, bytes) in &expected {
            assert!(
                &got[name] == bytes,
                "{granularity}: {name} differs:\nrust:   {:?}\npython: {:?}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&got[name])
            );
        }

        // One document per subscription, named by its id or, for an id that
        // is no name, its digest; together they hold chargeback.csv's rows.
        let whole = String::from_utf8(expected["chargeback.csv"].clone()).unwrap();
        let mut reader = csv::Reader::from_reader(whole.as_bytes());
        let subscriptions: BTreeSet<String> = reader
            .records()
            .map(|row| row.unwrap()[2].to_string())
            .collect();
        assert_eq!(
            expected.len(),
            subscriptions.len() + 1,
            "{:?}",
            expected.keys()
        );
        assert!(expected.contains_key("chargeback-edge-subscription.csv"));
        assert!(expected.contains_key(&digest_name("chargeback-", "edge, \"quoted\"", ".csv")));
        let header = whole.lines().next().unwrap();
        let mut rows = 0;
        for (name, bytes) in expected.iter().filter(|(n, _)| *n != "chargeback.csv") {
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert_eq!(text.lines().next(), Some(header), "{name}");
            rows += text.lines().count() - 1;
        }
        assert_eq!(
            rows,
            whole.lines().count() - 1,
            "every row in one subscription's document"
        );
        println!(
            "{granularity}: chargeback.csv and {} per-subscription documents, identical",
            subscriptions.len()
        );
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
fn configs_are_refused_with_the_rust_adapters_reasons() {
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

    // chargeback-py: the reasons of chargeback-csv, word for word.
    for (config, reason) in [
        (
            r#"{"currency":"EURO","group_by_tag":"cc","rates":{}}"#,
            "currency 'EURO' is not an ISO 4217 code",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":" \t","rates":{}}"#,
            "group_by_tag must not be empty",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":-0.5}}"#,
            "the rate of meter 'm' must be a non-negative number, not -0.5",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{},"tax":0.2}"#,
            "unknown field `tax`, expected one of `currency`, `group_by_tag`, `rates`",
        ),
        (
            r#"{"currency":"EUR","rates":{}}"#,
            "missing field `group_by_tag`",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":"cheap"}}"#,
            "invalid type: string \"cheap\", expected f64",
        ),
        (
            r#"{"currency":7,"group_by_tag":"cc","rates":{}}"#,
            "invalid type: integer `7`, expected a string",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":[1]}"#,
            "invalid type: sequence, expected a map",
        ),
        (
            r#""EUR""#,
            "invalid type: string \"EUR\", expected struct Config",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"ab":1,"AB":2}}"#,
            "the rate card names meter 'AB' twice ('AB' and 'ab'; ids ignore case)",
        ),
    ] {
        let expected = refuse("chargeback-csv", config);
        assert!(
            expected.contains(reason),
            "chargeback-csv, {config}: {expected}"
        );
        assert_eq!(refuse("chargeback-py", config), expected, "{config}");
    }

    // showback-py: the same checks, and its own field.
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
