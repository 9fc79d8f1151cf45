//! The C adapters of `adapters/c`, built from source with Debian's clang 16
//! and wasi-libc by `adapters/c/build.sh`:
//! - `location-costs` on a real host: installed over HTTP, its export of a
//!   closed day read back through the API, every figure the provider usage
//!   API's quantity times the rate; a bad config refused with its reason;
//! - `chargeback-c`, the twin of the Rust `chargeback-csv`, is tested with the
//!   other twins in `twins` (serde_json's positions included in its refusals);
//! - the C kit prints floats as Rust's `{}`, `{:.6}` and serde_json do, on
//!   200,000 values (compiled natively with the same clang);
//! - the guide's C++ recipe builds an adapter that runs.
//!
//! Needs the components (`adapters/build.sh`, which `tests/run.sh` runs) and
//! clang-16 (which it installs); fails, not skips, without them.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use support::*;
use tally_usage_generator::meters;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

// --- The kit's numbers ---------------------------------------------------

/// Values whose printing is easy to get wrong, then pseudo-random ones: any
/// bit pattern, fractions, quantities of 6 decimals, and every power of two
/// (the rounding interval is lopsided there).
fn awkward_floats() -> Vec<f64> {
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        0.1,
        0.3,
        0.0078125,
        0.0234375,
        123456789.1234565,
        1.0000005,
        1e-7,
        2.5e-6,
        1e-5,
        1e-6,
        1e15,
        1e16,
        1e21,
        1e22,
        1e23,
        9007199254740993.0,
        1716017514632087.2,
        5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        -f64::MAX,
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..200_000u64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let x = match i % 4 {
            0 => f64::from_bits(state),
            1 => (state >> 11) as f64 / (1u64 << 53) as f64 * 1000.0,
            2 => (state % 100_000_000) as f64 / 1e6,
            _ => f64::from_bits(
                (state & 0x800F_FFFF_FFFF_FFFF) | (((state >> 52) % 200 + 923) << 52),
            ),
        };
        if x.is_finite() {
            values.push(x);
        }
    }
    for exponent in -1074..1024 {
        values.push(2f64.powi(exponent));
    }
    values
}

/// serde_json's wording of a float in "invalid type" errors.
fn serde_float(x: f64) -> String {
    use serde::de::Error as _;
    let error = serde_json::Error::invalid_type(serde::de::Unexpected::Float(x), &"a string");
    let text = error.to_string();
    let start = text.find('`').unwrap() + 1;
    let end = text.rfind('`').unwrap();
    text[start..end].to_string()
}

#[test]
fn the_c_kit_prints_floats_as_rust_and_serde_json_do() {
    let dir = tempfile::tempdir().unwrap();
    let check = dir.path().join("kit_check");
    let c = root().join("adapters/c");
    let built = Command::new("clang-16")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&check)
        .arg(c.join("check/kit_check.c"))
        .arg(c.join("common/tally_kit.c"))
        .arg("-I")
        .arg(c.join("common"))
        .arg("-lm")
        .output()
        .expect("clang-16 (adapters/c/build.sh installs it)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let values = awkward_floats();
    let mut child = Command::new(&check)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: String = values
        .iter()
        .map(|x| format!("{:016x}\n", x.to_bits()))
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), values.len());
    for (x, line) in values.iter().zip(lines) {
        let expected = format!("{x} {} {x:.6}", serde_float(*x));
        assert_eq!(line, expected, "{x:e} ({:016x})", x.to_bits());
    }
    println!(
        "{} floats printed as Rust and serde_json print them",
        values.len()
    );
}

// --- location-costs on a host ---------------------------------------------------

/// The rates of the installation; the S10 disk has none (priced at 0, logged).
const RATES: [(&str, f64); 2] = [(meters::BASE_VM, 0.025), (meters::STATIC_IP, 0.005)];

fn iso(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A location as the report writes it: lower case, no spaces, `unknown` for none.
fn normalized(location: &str) -> String {
    let text: String = location
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if text.is_empty() {
        "unknown".into()
    } else {
        text
    }
}

/// Usage of `day` in four spellings of three locations (and none), of three
/// meters, across two subscriptions; reported within the day.
fn location_records(day: DateTime<Utc>) -> Vec<Value> {
    let locations = ["westeurope", "West Europe", "eastus", ""];
    let meters = [meters::BASE_VM, meters::STATIC_IP, meters::DISK_S10];
    let mut records = Vec::new();
    for (l, location) in locations.into_iter().enumerate() {
        for (m, meter) in meters.into_iter().enumerate() {
            for hour in [1, 7, 13] {
                let start = day + TimeDelta::hours(hour + l as i64);
                let quantity = (1 + l * 3 + m) as f64 * 0.7 + hour as f64 / 3.0;
                let subscription = if hour == 7 {
                    "sub-costs-b"
                } else {
                    "sub-costs-a"
                };
                let mut r = record(
                    subscription,
                    &format!("costs-{l}-{m}-{hour}"),
                    meter,
                    quantity,
                    &iso(start),
                    &iso(start + TimeDelta::hours(1)),
                );
                r["location"] = json!(location);
                records.push(reported(r, &iso(start + TimeDelta::minutes(70))));
            }
        }
    }
    records
}

async fn install(
    address: std::net::SocketAddr,
    token: &str,
    manifest: &str,
    wasm: &[u8],
) -> (u16, Value) {
    support::send_adapter(
        reqwest::Method::POST,
        address,
        token,
        "/v1/adapters",
        manifest,
        wasm,
    )
    .await
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

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_costs_prices_each_locations_usage_read_back_through_the_api() {
    let day = (Utc::now() - TimeDelta::days(2))
        .date_naive()
        .and_time(NaiveTime::MIN)
        .and_utc();
    let end = day + TimeDelta::days(1);
    let host = TestHost::with_exports().await;
    let address = host.serve().await;
    let records = location_records(day);
    let accepted = host.ingest(&records).await;
    assert_eq!(accepted["accepted"], records.len(), "{accepted}");

    let wasm = std::fs::read(component_path("location-costs-c")).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let rates: Vec<String> = RATES.iter().map(|(m, r)| format!("'{m}' = {r}")).collect();
    let manifest = |config: &str| {
        format!(
            "name = 'location-costs'\nversion = '0.1.0'\nworld = 'tally:billing@0.2.0'\nsha256 = '{sha256}'\n\
             [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n\
             [scope]\nsubscriptions = ['*']\n[config]\n{config}",
            iso(day)
        )
    };

    // A config that cannot work is refused at install, saying why.
    let (status, body) = install(
        address,
        &host.operator,
        &manifest("currency = 'EUR'\nunrated = 'skip'\nrates = {}\n"),
        &wasm,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "InvalidConfig", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("config: unrated must be \"zero\"") && message.contains("not \"skip\""),
        "{message}"
    );
    let (status, body) = install(
        address,
        &host.operator,
        &manifest("currency = 'EUR'\nrates = { 'm' = -2.5 }\n"),
        &wasm,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the rate of meter 'm' must be a non-negative number, not -2.5"),
        "{body}"
    );

    let config = format!("currency = 'EUR'\nrates = {{ {} }}\n", rates.join(", "));
    let (status, body) = install(address, &host.operator, &manifest(&config), &wasm).await;
    assert_eq!(status, 201, "{body}");
    wait_for_watermark(&host, "location-costs", end).await;

    let runs = host
        .get("/v1/adapters/location-costs/runs", &host.operator)
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
    let fetch = |name: &str| {
        let url = documents
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {run}"))["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let host = &host;
        async move {
            let reply = host.get(&url, &host.operator).await;
            assert_eq!(reply.status, 200, "{url}");
            reply.body.as_str().unwrap().to_owned()
        }
    };
    let costs = fetch("location-costs.csv").await;
    let totals = fetch("location-totals.csv").await;

    // Independently: the provider usage API's quantity per location and
    // meter (its instanceData names the location), times the rate.
    let uri = provider_uri(&iso(day), &iso(end), "Daily");
    let (rows, _) = host.list_all(&uri, &host.operator).await;
    let mut want: BTreeMap<(String, String), (f64, String, String)> = BTreeMap::new();
    for row in &rows {
        let p = &row["properties"];
        let instance: Value = serde_json::from_str(p["instanceData"].as_str().unwrap()).unwrap();
        let location = instance["Microsoft.Resources"]["location"]
            .as_str()
            .unwrap_or("");
        let line = want
            .entry((
                normalized(location),
                p["meterId"].as_str().unwrap().to_ascii_lowercase(),
            ))
            .or_insert((0.0, String::new(), String::new()));
        line.0 += p["quantity"].as_f64().unwrap();
        line.1 = p["meterName"].as_str().unwrap().to_owned();
        line.2 = p["unit"].as_str().unwrap().to_owned();
    }
    let rate = |meter: &str| {
        RATES
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(meter))
            .map_or(0.0, |(_, r)| *r)
    };
    let locations: BTreeSet<&str> = want.keys().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        locations,
        BTreeSet::from(["eastus", "unknown", "westeurope"])
    );

    let mut reader = csv::Reader::from_reader(costs.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "location",
            "meter_id",
            "meter_name",
            "unit",
            "quantity",
            "rate",
            "cost",
            "currency"
        ]
    );
    let mut got = BTreeMap::new();
    let mut want_totals: BTreeMap<String, f64> = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        let number = |i: usize| row[i].parse::<f64>().unwrap();
        let key = (row[0].to_string(), row[1].to_ascii_lowercase());
        let (quantity, name, unit) = want
            .get(&key)
            .unwrap_or_else(|| panic!("{row:?} not in {want:?}"));
        assert!(
            close(number(4), *quantity),
            "{row:?}: quantity ≠ {quantity}"
        );
        assert_eq!(number(5), rate(&row[1]), "{row:?}");
        assert!(
            close(number(6), quantity * rate(&row[1])),
            "{row:?}: cost ≠ {quantity} × rate"
        );
        assert_eq!(
            (&row[2], &row[3], &row[7]),
            (name.as_str(), unit.as_str(), "EUR")
        );
        *want_totals.entry(row[0].to_string()).or_default() += number(6);
        got.insert(key, ());
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{costs}"
    );

    // Totals: each location's cost, the most expensive first, shares of 100 %.
    let grand: f64 = want_totals.values().sum();
    let mut reader = csv::Reader::from_reader(totals.as_bytes());
    let mut previous = f64::INFINITY;
    let mut shares = 0.0;
    let mut seen = BTreeSet::new();
    for row in reader.records() {
        let row = row.unwrap();
        let cost: f64 = row[1].parse().unwrap();
        assert!(close(cost, want_totals[&row[0]]), "{row:?}");
        assert!(cost <= previous, "ordered by cost: {totals}");
        previous = cost;
        let share: f64 = row[3].parse().unwrap();
        assert!((share - cost * 100.0 / grand).abs() <= 0.005, "{row:?}");
        shares += share;
        assert_eq!(&row[2], "EUR");
        seen.insert(row[0].to_string());
    }
    assert_eq!(seen.len(), 3, "{totals}");
    assert!((shares - 100.0).abs() < 0.02, "{totals}");
    println!("{costs}{totals}");

    // The unrated meter is priced at 0 and named in the run's log.
    let log = &run["log"];
    assert!(
        log.to_string().contains(&format!(
            "meter {} has no rate in the rate card; priced at 0",
            meters::DISK_S10
        )),
        "{log}"
    );
}

// --- The guide's C++ recipe ---------------------------------------------------

/// Runs a command of the recipe; panics with its output when it fails.
fn step(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (adapters/c/build.sh installs the toolchain)"));
    assert!(
        output.status.success(),
        "{program} {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_guides_cpp_recipe_builds_an_adapter_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(
        root().join("adapters/c/check/summary.cpp"),
        d.join("adapter.cpp"),
    )
    .unwrap();
    // The commands of docs/writing-adapters.md, "C++ and Zig".
    let tally = env!("CARGO_BIN_EXE_tally");
    step(
        d,
        tally,
        &["adapter", "bindings", "--lang", "c", "--out", "gen"],
    );
    step(
        d,
        "clang-16",
        &[
            "--target=wasm32-wasi",
            "-O2",
            "-c",
            "gen/billing_adapter.c",
            "-o",
            "gen/billing_adapter.o",
        ],
    );
    step(
        d,
        "clang++-16",
        &[
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-fno-exceptions",
            "-isystem",
            "/usr/include/wasm32-wasi/c++/v1",
            "-I",
            "gen",
            "-o",
            "core.wasm",
            "adapter.cpp",
            "gen/billing_adapter.o",
            "gen/billing_adapter_component_type.o",
        ],
    );
    step(
        d,
        tally,
        &[
            "adapter",
            "componentize",
            "core.wasm",
            "-o",
            "cpp-summary.wasm",
        ],
    );
    let templates = root().join("host/templates");
    step(
        d,
        tally,
        &[
            "adapter",
            "test",
            "cpp-summary.wasm",
            "--config",
            templates.join("manifest.toml").to_str().unwrap(),
            "--usage",
            templates.join("sample-usage.ndjson").to_str().unwrap(),
            "--out",
            "out",
        ],
    );
    // The template's sample: 2 VMs of 2 and 4 vCPUs and one IP, 48 hours.
    assert_eq!(
        std::fs::read_to_string(d.join("out/summary.csv")).unwrap(),
        format!("meter_id,quantity\n{IP_METER},48.000000\n{VM_METER},288.000000\n")
    );
}
