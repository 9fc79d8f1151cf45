//! The `statement` adapter in a real host: usage of three subscriptions
//! ingested over HTTP and reported in a closed calendar month (and around
//! it), the adapter installed with monthly windows for two of them. Each of
//! the two gets a statement, as HTML and as CSV, whose lines and total are
//! its usage, read back through the Azure-compatible usage API, times the
//! rates; each document belongs to its subscription and is read by its
//! tenant; the third gets none; a verification re-derives them byte for byte.
//!
//! The component is built from source by `adapters/build.sh` (run by
//! `tests/run.sh`); the test fails, not skips, without it.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Datelike, Months, NaiveTime, TimeDelta, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;
use tally::auth::Role;
use tally_usage_generator::meters;

/// Two meters priced; the S10 disk has no rate (listed at 0, unrated).
const RATES: [(&str, f64); 2] = [(meters::BASE_VM, 0.025), (meters::STATIC_IP, 0.005)];
/// A subscription whose id makes a document name as it is.
const PLAIN: &str = "sub-statement-a";
/// One whose id is not a document name (spaces, quotes, a comma) and must be
/// escaped in HTML: its documents are named by its digest.
const ODD: &str = "Tenant B, \"EU\" <b>";
/// Usage outside the installation's scope: no statement.
const OUTSIDE: &str = "sub-statement-outside";

/// The calendar month before last (UTC): closed whatever the time.
fn month_before_last() -> (DateTime<Utc>, DateTime<Utc>) {
    let first = Utc::now().date_naive().with_day(1).unwrap();
    let midnight = |date: chrono::NaiveDate| date.and_time(NaiveTime::MIN).and_utc();
    (
        midnight(first - Months::new(2)),
        midnight(first - Months::new(1)),
    )
}

fn iso(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Usage records, reported 10 minutes after their hour: each subscription
/// uses each meter on the month's first, tenth and last day, in quantities
/// that add up exactly (multiples of 1/64); one hour of the previous month
/// is reported on the 1st (in the window), the month's last hour on the
/// next month's 1st (not in it).
fn records(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Value> {
    let hour = |at: DateTime<Utc>| (at, at + TimeDelta::hours(1));
    let days = (end - start).num_days();
    let mut usage = Vec::new();
    for (s, subscription) in [PLAIN, ODD, OUTSIDE].into_iter().enumerate() {
        for day in [0, 9, days - 1] {
            let at = start + TimeDelta::days(day) + TimeDelta::hours(10);
            for (m, meter) in [meters::BASE_VM, meters::STATIC_IP, meters::DISK_S10]
                .into_iter()
                .enumerate()
            {
                let quantity = (1 + s * 7 + m * 3) as f64 * 1.015625 + day as f64 * 0.25;
                usage.push((
                    subscription,
                    meter,
                    quantity,
                    hour(at),
                    at + TimeDelta::minutes(70),
                ));
            }
        }
    }
    // Thousands, to read grouped.
    let at = start + TimeDelta::days(3);
    usage.push((
        PLAIN,
        meters::BASE_VM,
        12_345.5,
        hour(at),
        at + TimeDelta::minutes(70),
    ));
    // A meter id in another case than the catalog's: the same meter.
    let lower = meters::STATIC_IP.to_ascii_lowercase();
    let at = start + TimeDelta::days(4);
    usage.push((ODD, &lower, 2.5, hour(at), at + TimeDelta::minutes(70)));
    let before = start - TimeDelta::hours(1);
    usage.push((
        PLAIN,
        meters::BASE_VM,
        2.0,
        hour(before),
        start + TimeDelta::minutes(30),
    ));
    let last = end - TimeDelta::hours(1);
    usage.push((
        PLAIN,
        meters::BASE_VM,
        64.0,
        hour(last),
        end + TimeDelta::minutes(30),
    ));
    usage
        .into_iter()
        .enumerate()
        .map(
            |(i, (subscription, meter, quantity, (from, to), reported_at))| {
                let r = record(
                    subscription,
                    &format!("statement-{i}"),
                    meter,
                    quantity,
                    &iso(from),
                    &iso(to),
                );
                reported(r, &iso(reported_at))
            },
        )
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Installs over real HTTP with a multipart body, as the CLI does.
async fn install(address: std::net::SocketAddr, token: &str, manifest: &str, wasm: &[u8]) -> Value {
    let (status, body) = support::send_adapter(
        reqwest::Method::POST,
        address,
        token,
        "/v1/adapters",
        manifest,
        wasm,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
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
            started.elapsed() < Duration::from_secs(60),
            "{name} stuck at {watermark}: {}",
            host.get(&format!("/v1/adapters/{name}/runs"), &host.operator)
                .await
                .body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the usage API says a subscription used of a meter in the month.
#[derive(Debug, Default)]
struct Used {
    name: String,
    unit: String,
    quantity: f64,
}

/// Usage reported in `[start, end)` by subscription and lower-case meter id,
/// read through the provider usage API.
async fn usage_api(
    host: &TestHost,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> BTreeMap<String, BTreeMap<String, Used>> {
    let uri = provider_uri(&iso(start), &iso(end), "Daily");
    let (rows, _) = host.list_all(&uri, &host.operator).await;
    let mut used: BTreeMap<String, BTreeMap<String, Used>> = BTreeMap::new();
    for row in &rows {
        let p = &row["properties"];
        let line = used
            .entry(p["subscriptionId"].as_str().unwrap().to_owned())
            .or_default()
            .entry(p["meterId"].as_str().unwrap().to_ascii_lowercase())
            .or_default();
        line.name = p["meterName"].as_str().unwrap().to_owned();
        line.unit = p["unit"].as_str().unwrap().to_owned();
        line.quantity += p["quantity"].as_f64().unwrap();
    }
    used
}

/// `units` in hundredths (or millionths) as the statement writes them.
fn fixed(units: i128, scale: u32) -> String {
    let divisor = 10i128.pow(scale);
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / divisor,
        abs % divisor,
        width = scale as usize
    )
}

/// A path segment: every byte but ASCII letters, digits, `-`, `.` and `_`
/// percent-encoded.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `1234567.5` → `1,234,567.50`.
fn grouped(text: &str) -> String {
    let (whole, fraction) = text.split_once('.').unwrap();
    let mut out = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    format!("{out}.{fraction}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_statements_total_usage_times_rates_for_their_own_subscription() {
    let (start, end) = month_before_last();
    let host = TestHost::with_exports().await;
    let address = host.serve().await;

    // Usage arrives over HTTP, as resource providers send it.
    let records = records(start, end);
    let response = reqwest::Client::new()
        .post(format!("http://{address}/v1/usage"))
        .bearer_auth(&host.operator)
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["accepted"], records.len(), "{accepted}");

    let wasm = std::fs::read(component_path("statement")).unwrap();
    let rates: Vec<String> = RATES.iter().map(|(m, r)| format!("'{m}' = {r}")).collect();
    let manifest = format!(
        "name = 'statement'\nversion = '0.1.0'\nworld = 'tally:billing@0.2.0'\nsha256 = '{}'\n\
         publish_to_tenants = true\n\
         [schedule]\nwindow = 'monthly'\nlag = '0s'\nstart = '{}'\n\
         [scope]\nsubscriptions = ['{PLAIN}', '{ODD}']\n\
         [config]\ncurrency = 'EUR'\nissuer = 'Contoso <Cloud>'\nrates = {{ {} }}\n",
        sha256_hex(&wasm),
        iso(start),
        rates.join(", ")
    );
    let installed = install(address, &host.operator, &manifest, &wasm).await;
    assert_eq!(
        (
            installed["window"].as_str(),
            installed["granularity"].as_str()
        ),
        (Some("monthly"), Some("daily")),
        "{installed}"
    );
    wait_for_watermark(&host, "statement", end).await;

    // One run for the month, a calendar month long.
    let runs = host
        .get("/v1/adapters/statement/runs", &host.operator)
        .await
        .body;
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|run| run["windowStart"].as_str().map(str::parse) == Some(Ok(start)))
        .unwrap_or_else(|| panic!("no run of {start}: {runs}"))
        .clone();
    assert_eq!(run["status"], "succeeded", "{run}");
    let window_end: DateTime<Utc> = run["windowEnd"].as_str().unwrap().parse().unwrap();
    assert_eq!(window_end, end);
    let run = host
        .get(run["url"].as_str().unwrap(), &host.operator)
        .await
        .body;

    // Two documents per subscription in scope, named by its id or its digest.
    let odd_name = &sha256_hex(ODD.as_bytes())[..16];
    let expected_names: BTreeSet<String> = [PLAIN, odd_name]
        .iter()
        .flat_map(|id| {
            [
                format!("statement-{id}.html"),
                format!("statement-{id}.csv"),
            ]
        })
        .collect();
    let documents = run["documents"].as_array().unwrap();
    let names: BTreeSet<String> = documents
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, expected_names, "{run}");

    let used = usage_api(&host, start, end).await;
    assert!(
        used.contains_key(OUTSIDE),
        "the usage API has the third subscription"
    );
    let rates: BTreeMap<String, f64> = RATES
        .iter()
        .map(|(m, r)| (m.to_ascii_lowercase(), *r))
        .collect();
    let month = start.format("%B %Y").to_string();
    for (subscription, id) in [(PLAIN, PLAIN), (ODD, odd_name)] {
        let document = |suffix: &str| {
            documents
                .iter()
                .find(|d| d["name"] == format!("statement-{id}{suffix}"))
                .unwrap()
        };
        // Each document belongs to its subscription.
        for suffix in [".html", ".csv"] {
            assert_eq!(document(suffix)["subscriptionId"], subscription, "{run}");
        }
        assert_eq!(document(".html")["contentType"], "text/html; charset=utf-8");
        assert_eq!(document(".csv")["contentType"], "text/csv");
        let fetch = |suffix: &str| {
            let url = document(suffix)["url"].as_str().unwrap().to_owned();
            let host = &host;
            async move {
                let reply = host.get(&url, &host.operator).await;
                assert_eq!(reply.status, StatusCode::OK, "{url}");
                reply.body.as_str().unwrap().to_owned()
            }
        };
        let csv = fetch(".csv").await;
        let html = fetch(".html").await;

        // Every line: the usage API's quantity, the rate, their product in
        // cents; the meter's name and unit from the catalog.
        let mut expected_total = 0i128;
        let mut lines = 0;
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let mut total_row = None;
        for row in reader.deserialize::<BTreeMap<String, String>>() {
            let row = row.unwrap();
            assert_eq!(row["subscription_id"], subscription, "{csv}");
            assert_eq!(row["period_start"], iso(start));
            assert_eq!(row["period_end"], iso(end));
            assert_eq!(row["currency"], "EUR");
            if row["line"] == "total" {
                total_row = Some(row);
                continue;
            }
            lines += 1;
            let meter = row["meter_id"].to_ascii_lowercase();
            let want = &used[subscription][&meter];
            let rate = rates.get(&meter).copied();
            assert_eq!(
                row["line"],
                if rate.is_some() { "usage" } else { "unrated" }
            );
            assert_eq!((&row["meter_name"], &row["unit"]), (&want.name, &want.unit));
            let micros = (want.quantity * 1e6).round() as i128;
            let amount = (micros as f64 * rate.unwrap_or(0.0) * 100.0 / 1e6).round() as i128;
            assert_eq!(row["quantity"], fixed(micros, 6), "{meter}");
            assert_eq!(row["unit_price"], rate.unwrap_or(0.0).to_string());
            assert_eq!(row["amount"], fixed(amount, 2), "{meter}: {csv}");
            expected_total += amount;
            assert!(html.contains(&format!("<span class=\"id\">{}</span>", row["meter_id"])));
            assert!(html.contains(&format!(
                "<td class=\"num\">{}</td></tr>",
                grouped(&fixed(amount, 2))
            )));
        }
        assert_eq!(
            lines,
            used[subscription].len(),
            "one line per meter used: {csv}"
        );
        assert!(expected_total > 0);
        let total = fixed(expected_total, 2);
        assert_eq!(total_row.expect("a total row")["amount"], total);

        // The page a person reads: who issues it, for whom, which month,
        // the total in the currency; escaped, self-contained.
        let escaped = subscription
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        for expected in [
            "<!DOCTYPE html>".to_string(),
            "<p class=\"issuer\">Contoso &lt;Cloud&gt;</p>".into(),
            format!("<code>{escaped}</code>"),
            format!("<p class=\"period\">{month}</p>"),
            format!("<div class=\"amount\">{} EUR</div>", grouped(&total)),
            format!("Total (EUR)</th><td class=\"num\">{}</td>", grouped(&total)),
            "<span class=\"flag\">unrated</span>".into(),
        ] {
            assert!(html.contains(&expected), "{expected:?} not in\n{html}");
        }
        for absent in ["<script", "<b>", "src=", "href=", "@import"] {
            assert!(!html.contains(absent), "{absent:?} in\n{html}");
        }
        println!("{month}, {subscription}: {lines} lines, total {total} EUR");

        // Its tenant lists these two documents and no other, and reads the
        // very bytes the run wrote.
        let tenant = host.token(Role::Tenant, &[subscription]).await;
        let listing = host
            .get(
                &format!(
                    "/v1/subscriptions/{}/documents?from={}&to={}",
                    percent_encoded(subscription),
                    iso(start),
                    iso(end)
                ),
                &tenant,
            )
            .await;
        assert_eq!(listing.status, StatusCode::OK, "{}", listing.body);
        let listed = listing.body["value"].as_array().unwrap();
        let listed_names: BTreeSet<&str> =
            listed.iter().map(|d| d["name"].as_str().unwrap()).collect();
        let own: BTreeSet<String> = [".html", ".csv"]
            .map(|suffix| format!("statement-{id}{suffix}"))
            .into();
        assert_eq!(
            listed_names,
            own.iter().map(String::as_str).collect(),
            "{}",
            listing.body
        );
        for document in listed {
            let name = document["name"].as_str().unwrap();
            let link = document["links"]["download"].as_str().unwrap();
            let download = host.get(link, &tenant).await;
            assert_eq!(download.status, StatusCode::OK, "{link}");
            let written = if name.ends_with(".csv") { &csv } else { &html };
            assert_eq!(download.body.as_str(), Some(written.as_str()), "{name}");
        }
    }

    // Re-derived from the stored component, config and usage, the month's
    // statements come out byte for byte (nothing in them depends on when or
    // where they were made).
    let uri = format!(
        "/v1/adapters/statement/verify?from={}&to={}",
        iso(start),
        iso(end)
    );
    let verified = host
        .call(Method::POST, &uri, Some(&host.operator), None)
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert_eq!(verified.body["verified"], true, "{}", verified.body);
    let window = &verified.body["windows"][0];
    let matched: BTreeSet<&str> = window["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["result"] == "match")
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        matched,
        expected_names.iter().map(String::as_str).collect(),
        "{window}"
    );

    // The month is of reported time: the previous month's last hour reported
    // on the 1st is in it, its own last hour reported after it is not.
    let vm = meters::BASE_VM;
    let reported_in_month: f64 = records
        .iter()
        .filter(|r| r["subscriptionId"] == PLAIN && r["meterId"] == vm)
        .filter(|r| (start..end).contains(&reported_at(r)))
        .map(|r| r["quantity"].as_f64().unwrap())
        .sum();
    let all: f64 = records
        .iter()
        .filter(|r| r["subscriptionId"] == PLAIN && r["meterId"] == vm)
        .map(|r| r["quantity"].as_f64().unwrap())
        .sum();
    assert_eq!(
        used[PLAIN][&vm.to_ascii_lowercase()].quantity,
        reported_in_month
    );
    assert_eq!(all - reported_in_month, 64.0);
}
