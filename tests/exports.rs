//! Installs and exports through the REST API, with the scheduler running:
//! installs refused before anything is stored, each closed window exported
//! once, documents that total the usage API times the rates, corrections
//! that replace what they correct, and failures that hold the watermark.
//!
//! The components are built from source by `adapters/build.sh` (run by
//! `tests/run.sh`); the tests fail, not skip, without them.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Days, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::billing_api::{API_KEY, BillingApi};
use support::*;
use tally::auth::Role;
use tally::sandbox::{AdapterEngine, CompileSettings};
use tally_usage_generator::Options;

/// The chargeback adapter's rates in the tests: two meters priced, the rest free.
const RATES: [(&str, f64); 2] = [(VM_METER, 0.025), (IP_METER, 0.005)];

fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A manifest for `wasm`: daily windows from `start`, no lag, and `extra`
/// TOML (scope, config…) appended.
fn manifest(name: &str, wasm: &[u8], start: DateTime<Utc>, extra: &str) -> String {
    format!(
        "name = '{name}'\nversion = '0.1.0'\nworld = 'tally:billing@{}'\nsha256 = '{}'\n\
         [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n{extra}",
        world_of(wasm),
        sha256(wasm),
        start.to_rfc3339()
    )
}

fn chargeback_config(rates: &[(&str, f64)]) -> String {
    let rates: Vec<String> = rates.iter().map(|(m, r)| format!("'{m}' = {r}")).collect();
    format!(
        "[config]\ncurrency = 'EUR'\ngroup_by_tag = 'cost-center'\nrates = {{ {} }}\n",
        rates.join(", ")
    )
}

fn today() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// An operator's request for runs of `adapter` over the one day from `day`.
async fn request_day(host: &TestHost, adapter: &str, day: DateTime<Utc>) -> Reply {
    let body = json!({"from": day.to_rfc3339(), "to": (day + Days::new(1)).to_rfc3339()});
    host.call(
        Method::POST,
        &format!("/v1/adapters/{adapter}/runs"),
        Some(&host.operator),
        Some(body.to_string()),
    )
    .await
}

/// Installs over real HTTP with a multipart body, as the CLI does.
async fn install(
    host: &TestHost,
    token: &str,
    manifest: &str,
    wasm: Option<&[u8]>,
) -> (StatusCode, Value) {
    let address = host.serve().await;
    send_manifest(Method::POST, address, "", token, manifest, wasm).await
}

/// Sends a manifest (and a component) to `/v1/adapters` (POST, an install)
/// or `/v1/adapters/{name}` (PUT, an upgrade) of the host at `address`.
async fn send_manifest(
    method: Method,
    address: std::net::SocketAddr,
    name: &str,
    token: &str,
    manifest: &str,
    wasm: Option<&[u8]>,
) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new().text("manifest", manifest.to_owned());
    if let Some(wasm) = wasm {
        form = form.part(
            "component",
            reqwest::multipart::Part::bytes(wasm.to_vec()).file_name("adapter.wasm"),
        );
    }
    let path = if name.is_empty() {
        "/v1/adapters".to_owned()
    } else {
        format!("/v1/adapters/{name}")
    };
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
    let response = reqwest::Client::new()
        .request(method, format!("http://{address}{path}"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap())
}

/// Waits until the installation's watermark reaches `until`.
async fn wait_for_watermark(host: &TestHost, name: &str, until: DateTime<Utc>) -> Value {
    let started = Instant::now();
    loop {
        let reply = host
            .get(&format!("/v1/adapters/{name}"), &host.operator)
            .await;
        let watermark: DateTime<Utc> = reply.body["watermark"].as_str().unwrap().parse().unwrap();
        if watermark >= until {
            return reply.body;
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

/// Waits until the run is done (succeeded or failed) and returns it.
async fn wait_for_run(host: &TestHost, url: &str) -> Value {
    let started = Instant::now();
    loop {
        let run = host.get(url, &host.operator).await.body;
        if run["status"] == "succeeded" || run["status"] == "failed" {
            return run;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cost per lower-case meter id in a chargeback CSV; asserts one header.
fn costs_by_meter(csv: &str) -> BTreeMap<String, f64> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("date,group,subscription_id,meter_id"));
    let mut costs = BTreeMap::new();
    for line in lines {
        assert_ne!(line, header, "the joined CSV repeats its header");
        let fields: Vec<&str> = line.split(',').collect();
        *costs.entry(fields[3].to_ascii_lowercase()).or_insert(0.0) +=
            fields[8].parse::<f64>().unwrap();
    }
    costs
}

/// The provider usage API's totals over the reported range, times `rates`.
async fn expected_costs(
    host: &TestHost,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rates: &[(&str, f64)],
) -> BTreeMap<String, f64> {
    let format = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let uri = provider_uri(&format(from), &format(to), "Daily");
    let (rows, _) = host.list_all(&uri, &host.operator).await;
    let totals = totals_by_meter(&rows);
    rates
        .iter()
        .map(|(meter, rate)| {
            let meter = meter.to_ascii_lowercase();
            let quantity = totals.get(&meter).copied().unwrap_or(0.0);
            (meter, quantity * rate)
        })
        .collect()
}

/// Asserts costs agree to the CSV's six decimals per row.
fn assert_costs_close(
    actual: &BTreeMap<String, f64>,
    expected: &BTreeMap<String, f64>,
    rows: usize,
) {
    for (meter, want) in expected {
        let got = actual.get(meter).copied().unwrap_or(0.0);
        assert!(
            (got - want).abs() <= 1e-6 * rows as f64 + 1e-9 * want.abs(),
            "meter {meter}: documents say {got}, usage × rate is {want}"
        );
    }
}

/// Three days of usage from four subscriptions, reported before today.
async fn host_with_usage() -> (TestHost, DateTime<Utc>) {
    let host = TestHost::with_exports().await;
    let first_day = ingest_past_usage(&host, 4, 3).await;
    (host, first_day)
}

/// Ingests `days` of sample usage of `subscriptions` up to yesterday, less
/// the late reports past now (they would be refused; they are not the point
/// here); returns the first day.
async fn ingest_past_usage(host: &TestHost, subscriptions: usize, days: u32) -> DateTime<Utc> {
    let end = today() - Days::new(1);
    let options = Options {
        subscriptions,
        days,
        end,
        ..Options::default()
    };
    let records: Vec<Value> = reported_by_now(to_wire(&sample(&options)));
    host.ingest(&records).await;
    end - Days::new(u64::from(days))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_are_checked_before_anything_is_stored() {
    let host = TestHost::with_exports().await;
    let chargeback = component("chargeback-csv");
    let start = today() - Days::new(2);
    let good = manifest("chargeback", &chargeback, start, &chargeback_config(&RATES));

    let mut other_sha = manifest("chargeback", &chargeback, start, &chargeback_config(&RATES));
    other_sha = other_sha.replace(&sha256(&chargeback), &"0".repeat(64));
    let not_a_component = b"\0asm\x01\0\0\0 a core module, not a component".to_vec();
    let next_major = component("next-major");
    // (manifest, component, status, code, part of the message)
    type Refusal<'a> = (String, Option<Vec<u8>>, StatusCode, &'a str, &'a str);
    let refusals: Vec<Refusal> = vec![
        (
            good.replace("window = 'daily'", "window = 'weekly'"),
            Some(chargeback.clone()),
            StatusCode::BAD_REQUEST,
            "InvalidManifest",
            "weekly",
        ),
        (
            other_sha,
            Some(chargeback.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sha256Mismatch",
            "the manifest pins 0000",
        ),
        (
            good.clone(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ComponentMissing",
            "send the component",
        ),
        (
            manifest("broken", &not_a_component, start, ""),
            Some(not_a_component.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidComponent",
            "a core WebAssembly module, not a component",
        ),
        (
            manifest("next", &next_major, start, ""),
            Some(next_major.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidComponent",
            "targets tally:billing@1.0.0; this host supports tally:billing@0.1.0",
        ),
        (
            good.replace("@0.2.0", "@0.1.0"),
            Some(chargeback.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "WorldMismatch",
            "the component targets tally:billing@0.2.0",
        ),
        (
            good.replace("currency = 'EUR'", "currency = 'euro'"),
            Some(chargeback.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidConfig",
            "currency 'euro' is not an ISO 4217 code",
        ),
    ];
    for (manifest, wasm, status, code, message) in refusals {
        let (got, body) = install(&host, &host.operator, &manifest, wasm.as_deref()).await;
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
        let text = body["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{message:?} not in {text:?}");
    }
    let tenant = host.token(Role::Tenant, &["sub"]).await;
    let (status, _) = install(&host, &tenant, &good, Some(&chargeback)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let listed = host.get("/v1/adapters", &host.operator).await;
    assert_eq!(listed.body, json!([]), "a refused install stores nothing");
    assert!(
        host.store
            .component(&sha256(&chargeback))
            .await
            .unwrap()
            .is_none()
    );

    let (status, body) = install(&host, &host.operator, &good, Some(&chargeback)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["adapter"]["name"], "chargeback-csv");
    assert_eq!(
        body["watermark"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        start
    );
    let (status, body) = install(&host, &host.operator, &good, Some(&chargeback)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("Conflict"))
    );
    // The same component under a second name: the stored component is reused.
    let second = good.replace("name = 'chargeback'", "name = 'chargeback-eng'");
    let (status, body) = install(&host, &host.operator, &second, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let names: Vec<Value> = host
        .get("/v1/adapters", &host.operator)
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, [json!("chargeback"), json!("chargeback-eng")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_closed_window_is_exported_once_and_the_documents_total_usage_times_rates() {
    let (host, first_day) = host_with_usage().await;
    let chargeback = component("chargeback-csv");
    let config = chargeback_config(&RATES);
    let (status, body) = install(
        &host,
        &host.operator,
        &manifest("chargeback", &chargeback, first_day, &config),
        Some(&chargeback),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The same component again, reading one subscription only.
    let one = "7a110001-5e1f-4a7b-9c3d-0badcafe0001";
    let scoped = format!("[scope]\nsubscriptions = ['{one}']\n{config}");
    let (status, body) = install(
        &host,
        &host.operator,
        &manifest("chargeback-one", &chargeback, first_day, &scoped),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // And a FinOps FOCUS export of the same usage.
    let focus = component("focus");
    let focus_config = chargeback_config(&RATES).replace("group_by_tag = 'cost-center'\n", "");
    let (status, body) = install(
        &host,
        &host.operator,
        &manifest("focus", &focus, first_day, &focus_config),
        Some(&focus),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let closed = today();
    wait_for_watermark(&host, "chargeback", closed).await;
    wait_for_watermark(&host, "chargeback-one", closed).await;
    wait_for_watermark(&host, "focus", closed).await;

    // One run per window, all succeeded, with their figures.
    let runs = host
        .get("/v1/adapters/chargeback/runs", &host.operator)
        .await
        .body;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    for run in runs {
        assert_eq!(
            (run["status"].as_str(), run["revision"].as_u64()),
            (Some("succeeded"), Some(0))
        );
        assert!(run["figures"]["rowsRead"].as_u64().unwrap() > 0, "{run}");
        assert!(run["figures"]["bytesWritten"].as_u64().unwrap() > 0);
        assert!(run["figures"]["peakMemoryBytes"].as_u64().unwrap() > 0);
    }
    let metrics = host.get("/metrics", &host.operator).await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(r#"tally_export_runs_total{adapter="chargeback",outcome="succeeded"} 4"#),
        "{metrics}"
    );
    // The scheduler looking again queues nothing, and the database refuses a
    // second first export of a window.
    let exports = host.exports.as_ref().unwrap();
    assert_eq!(exports.queue_closed_windows(Utc::now()).await.unwrap(), 0);
    let installation = host
        .store
        .installation("chargeback")
        .await
        .unwrap()
        .unwrap();
    let again = host
        .store
        .schedule_windows(installation.id, vec![(first_day, first_day + Days::new(1))])
        .await
        .unwrap();
    assert_eq!(again, 0);

    // The joined document: one header, every window, totals = usage × rates.
    let joined = host
        .get(
            "/v1/adapters/chargeback/documents/chargeback.csv",
            &host.operator,
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK);
    assert_eq!(joined.headers["content-type"], "text/csv");
    let csv = joined.body.as_str().unwrap();
    let expected = expected_costs(&host, first_day, closed, &RATES).await;
    assert_costs_close(&costs_by_meter(csv), &expected, csv.lines().count());

    // The FOCUS document: BilledCost per SkuId (the meter) = usage × rates.
    let focus_csv = host
        .get("/v1/adapters/focus/documents/focus.csv", &host.operator)
        .await
        .body;
    let mut reader = csv::Reader::from_reader(focus_csv.as_str().unwrap().as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (sku, billed) = (column("SkuId"), column("BilledCost"));
    let mut focus_costs = BTreeMap::new();
    let mut focus_rows = 0;
    for row in reader.records() {
        let row = row.unwrap();
        *focus_costs
            .entry(row[sku].to_ascii_lowercase())
            .or_insert(0.0) += row[billed].parse::<f64>().unwrap();
        focus_rows += 1;
    }
    focus_costs.retain(|meter, _| expected.contains_key(meter));
    assert_costs_close(&focus_costs, &expected, focus_rows);

    // A date range selects the windows that start in it.
    let day = first_day + Days::new(1);
    let uri = format!(
        "/v1/adapters/chargeback/documents/chargeback.csv?from={}&to={}",
        day.format("%Y-%m-%d"),
        (day + Days::new(1)).format("%Y-%m-%d")
    );
    let one_day = host.get(&uri, &host.operator).await.body;
    let expected = expected_costs(&host, day, day + Days::new(1), &RATES).await;
    let one_day = one_day.as_str().unwrap();
    assert_costs_close(&costs_by_meter(one_day), &expected, one_day.lines().count());

    // The scoped installation saw its subscription only.
    let scoped = host
        .get(
            "/v1/adapters/chargeback-one/documents/chargeback.csv",
            &host.operator,
        )
        .await
        .body;
    let subscriptions: std::collections::BTreeSet<&str> = scoped
        .as_str()
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(subscriptions.into_iter().collect::<Vec<_>>(), [one]);

    // A run's own page: log, documents and their URLs.
    let run = host
        .get(runs[0]["url"].as_str().unwrap(), &host.operator)
        .await
        .body;
    let document = &run["documents"][0];
    assert_eq!(
        (document["name"].as_str(), document["contentType"].as_str()),
        (Some("chargeback.csv"), Some("text/csv"))
    );
    let fetched = host
        .get(document["url"].as_str().unwrap(), &host.operator)
        .await;
    assert_eq!(
        fetched.body.as_str().unwrap().len() as u64,
        document["bytes"].as_u64().unwrap()
    );
    // Operators only.
    let tenant = host.token(Role::Tenant, &[one]).await;
    let refused = host
        .get("/v1/adapters/chargeback/documents/chargeback.csv", &tenant)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_replaces_its_window_in_the_joined_document() {
    let (host, first_day) = host_with_usage().await;
    let chargeback = component("chargeback-csv");
    let first = manifest(
        "chargeback",
        &chargeback,
        first_day,
        &chargeback_config(&RATES),
    );
    let (status, body) = install(&host, &host.operator, &first, Some(&chargeback)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let closed = today();
    wait_for_watermark(&host, "chargeback", closed).await;

    // The rate card was wrong for VMs: upgrade the config, re-run one day.
    let corrected_rates = [(VM_METER, 0.03), (IP_METER, 0.005)];
    let address = host.serve().await;
    let form = reqwest::multipart::Form::new().text(
        "manifest",
        manifest(
            "chargeback",
            &chargeback,
            first_day,
            &chargeback_config(&corrected_rates),
        ),
    );
    let upgraded = reqwest::Client::new()
        .put(format!("http://{address}/v1/adapters/chargeback"))
        .bearer_auth(&host.operator)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(upgraded.status(), 200, "{}", upgraded.text().await.unwrap());

    let day = first_day + Days::new(1);
    let reply = request_day(&host, "chargeback", day).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body[0]["outcome"], "correction");
    assert_eq!(reply.body[0]["run"]["revision"], 1);
    assert_eq!(reply.body[0]["run"]["correction"], true);
    let run = wait_for_run(&host, reply.body[0]["run"]["url"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_ne!(
        run["runId"],
        reply.body[0]["run"]["runId"]
            .as_str()
            .map(|s| s.replace("-r1", "-r0"))
            .unwrap(),
        "a correction has its own run id"
    );

    // The joined document counts that day once, at the corrected rates.
    let csv = host
        .get(
            "/v1/adapters/chargeback/documents/chargeback.csv",
            &host.operator,
        )
        .await
        .body;
    let mut expected = expected_costs(&host, first_day, day, &RATES).await;
    for (range, rates) in [
        ((day, day + Days::new(1)), &corrected_rates[..]),
        ((day + Days::new(1), closed), &RATES[..]),
    ] {
        for (meter, cost) in expected_costs(&host, range.0, range.1, rates).await {
            *expected.entry(meter).or_insert(0.0) += cost;
        }
    }
    let csv = csv.as_str().unwrap();
    assert_costs_close(&costs_by_meter(csv), &expected, csv.lines().count());
    // A run still in the future is refused.
    let reply = request_day(&host, "chargeback", today()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    // So is a range ending now: its last window is still open.
    let open = json!({"from": today().to_rfc3339(), "to": Utc::now().to_rfc3339()});
    let reply = host
        .call(
            Method::POST,
            "/v1/adapters/chargeback/runs",
            Some(&host.operator),
            Some(open.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has not closed yet")
    );
    // Issue 10, finding 7: years chrono's `%Y` reads but no window holds (a
    // range ending in year +262142 panicked the handler) are refused.
    for (from, to) in [
        ("2026-11-01", "+262142-01-01"),
        ("2026-11-01T00:00:00Z", "+262142-01-01T00:00:00Z"),
        ("-262000-01-01", "2026-11-01"),
    ] {
        let range = json!({"from": from, "to": to});
        let reply = host
            .call(
                Method::POST,
                "/v1/adapters/chargeback/runs",
                Some(&host.operator),
                Some(range.to_string()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("2000 to 9999"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_window_holds_the_watermark_until_it_is_run_again() {
    let (host, first_day) = host_with_usage().await;
    let hostile = component("hostile");
    let trap = manifest(
        "fragile",
        &hostile,
        first_day,
        "[config]\nattack = 'trap'\n",
    );
    let (status, body) = install(&host, &host.operator, &trap, Some(&hostile)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The first window fails; the ones after it wait.
    let started = Instant::now();
    let held = loop {
        let shown = host.get("/v1/adapters/fragile", &host.operator).await.body;
        if !shown["heldBy"].is_null() {
            break shown;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = held["heldBy"]["reason"].as_str().unwrap();
    assert!(reason.contains("panics on purpose"), "{reason}");
    assert_eq!(
        held["watermark"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        first_day
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = host
        .get("/v1/adapters/fragile/runs", &host.operator)
        .await
        .body;
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["pending", "pending", "pending", "failed"],
        "newest window first"
    );
    let failed = host
        .get(runs[3]["url"].as_str().unwrap(), &host.operator)
        .await
        .body;
    assert!(
        failed["documents"].as_array().unwrap().is_empty(),
        "a failed run publishes nothing"
    );
    assert!(
        failed["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["level"] == "stderr"),
        "{failed}"
    );

    // Fix the config, run the failed window again: everything follows.
    let address = host.serve().await;
    let fixed = manifest(
        "fragile",
        &hostile,
        first_day,
        "[config]\nattack = 'none'\n",
    );
    let upgraded = reqwest::Client::new()
        .put(format!("http://{address}/v1/adapters/fragile"))
        .bearer_auth(&host.operator)
        .multipart(reqwest::multipart::Form::new().text("manifest", fixed))
        .send()
        .await
        .unwrap();
    assert_eq!(upgraded.status(), 200);
    let reply = request_day(&host, "fragile", first_day).await;
    assert_eq!(reply.body[0]["outcome"], "requeued", "{}", reply.body);
    assert_eq!(
        reply.body[0]["run"]["id"], runs[3]["id"],
        "the same run, so the same run id"
    );
    let shown = wait_for_watermark(&host, "fragile", today()).await;
    assert!(shown["heldBy"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_under_the_same_keys_and_bills_every_line_once() {
    let (host, first_day) = host_with_usage().await;
    let api = BillingApi::start().await;
    // The second request of the first window meets a 503.
    api.fail_once_at(2);
    let webhook = component("billing-webhook");
    let rates: Vec<String> = RATES.iter().map(|(m, r)| format!("'{m}' = {r}")).collect();
    let extra = format!(
        "allowed_outbound_hosts = ['{}']\n[config]\nendpoint = '{}'\ncurrency = 'EUR'\nbatch_size = 20\n\
         headers = {{ 'X-Api-Key' = '{API_KEY}' }}\nrates = {{ {} }}\n",
        api.origin,
        api.endpoint(),
        rates.join(", ")
    );
    // allowed_outbound_hosts is a top-level key: it goes before [schedule].
    let manifest = manifest("billing", &webhook, first_day, "").replace(
        "[schedule]",
        &format!("{}\n[schedule]", extra.lines().next().unwrap()),
    ) + &extra.lines().skip(1).collect::<Vec<_>>().join("\n");
    let (status, body) = install(&host, &host.operator, &manifest, Some(&webhook)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_for_watermark(&host, "billing", today()).await;

    let runs = host
        .get("/v1/adapters/billing/runs", &host.operator)
        .await
        .body;
    let attempts: Vec<u64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        attempts,
        [1, 1, 1, 2],
        "the first window was tried twice: {runs}"
    );
    assert!(
        runs[3]["reason"].is_null(),
        "a retried run that succeeded shows no failure"
    );

    // The retry re-sent the first request under its key: the API dropped it.
    let requests = api.requests();
    let first_key = &requests[0].key;
    assert_eq!(requests.iter().filter(|r| &r.key == first_key).count(), 2);
    assert_eq!(requests[1].status, StatusCode::SERVICE_UNAVAILABLE);

    // Every line billed once; amounts = the usage API's totals × rates.
    let lines = api.billed_lines();
    let ids: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), lines.len(), "a line billed twice");
    let mut billed: BTreeMap<String, f64> = BTreeMap::new();
    for line in &lines {
        *billed
            .entry(line["meter_id"].as_str().unwrap().to_ascii_lowercase())
            .or_insert(0.0) += line["amount"].as_str().unwrap().parse::<f64>().unwrap();
    }
    let expected = expected_costs(&host, first_day, today(), &RATES).await;
    assert_costs_close(&billed, &expected, lines.len());

    // Its JSON summaries do not join across runs: the API says where they are.
    let joined = host
        .get(
            "/v1/adapters/billing/documents/invoice-summary.json",
            &host.operator,
        )
        .await;
    assert_eq!(
        (joined.status, joined.code()),
        (StatusCode::CONFLICT, "NotJoinable")
    );
    let unknown = host
        .get("/v1/adapters/billing/documents/nothing.csv", &host.operator)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_adapter_runs_nothing_and_refuses_run_requests() {
    let (host, first_day) = host_with_usage().await;
    let chargeback = component("chargeback-csv");
    let manifest = manifest(
        "chargeback",
        &chargeback,
        today(),
        &chargeback_config(&RATES),
    );
    let (status, body) = install(&host, &host.operator, &manifest, Some(&chargeback)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let post = |path: &'static str| host.call(Method::POST, path, Some(&host.operator), None);
    assert_eq!(
        post("/v1/adapters/chargeback/disable").await.body["enabled"],
        false
    );

    let request_runs = |from: String| {
        let body = json!({"from": from, "to": today().to_rfc3339()});
        host.call(
            Method::POST,
            "/v1/adapters/chargeback/runs",
            Some(&host.operator),
            Some(body.to_string()),
        )
    };
    // Disabled: nothing would run, so nothing is queued.
    let refused = request_runs(first_day.to_rfc3339()).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "AdapterDisabled")
    );
    // A range from year 1 is refused before any window is built.
    let ancient = request_runs("0001-01-01".into()).await;
    assert_eq!(ancient.status, StatusCode::BAD_REQUEST, "{}", ancient.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = host
        .get("/v1/adapters/chargeback/runs", &host.operator)
        .await
        .body;
    assert_eq!(runs, json!([]), "a disabled adapter runs nothing");

    assert_eq!(
        post("/v1/adapters/chargeback/enable").await.body["enabled"],
        true
    );
    let reply = request_runs(first_day.to_rfc3339()).await;
    let days = (today() - first_day).num_days() as usize;
    assert_eq!(reply.body.as_array().unwrap().len(), days, "{}", reply.body);
    for run in reply.body.as_array().unwrap() {
        let run = wait_for_run(&host, run["run"]["url"].as_str().unwrap()).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    // Removing it takes its runs and documents along.
    let removed = host
        .call(
            Method::DELETE,
            "/v1/adapters/chargeback",
            Some(&host.operator),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let gone = host
        .get("/v1/adapters/chargeback/runs", &host.operator)
        .await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "AdapterNotFound")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_manifests_install_once_pinned() {
    let host = TestHost::with_exports().await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/adapters");
    for (file, component_name) in [
        ("chargeback.toml", "chargeback-csv"),
        ("focus.toml", "focus"),
        ("billing-webhook.toml", "billing-webhook"),
    ] {
        let text = std::fs::read_to_string(examples.join(file)).unwrap();
        let wasm = component(component_name);
        let pinned: String = text
            .lines()
            .map(|line| {
                if line.starts_with("sha256 = ") {
                    format!("sha256 = \"{}\"", sha256(&wasm))
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let (status, body) = install(&host, &host.operator, &pinned, Some(&wasm)).await;
        assert_eq!(status, StatusCode::CREATED, "{file}: {body}");
        // As shipped, unpinned, it is refused with a message saying so.
        let (status, body) = install(&host, &host.operator, &text, Some(&wasm)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{file}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("sha256")
        );
    }
}

/// A reason an older version stored whole is cut by the database: no
/// listing reads more than the bound of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_reason_stored_by_an_older_version_is_served_cut() {
    use tally::store::exports::{
        AdapterDescription, FinishedAttempt, NewInstallation, RunEnd, RunFiguresRecord,
        RunLogRecord,
    };
    let host = TestHost::new().await;
    let store = &host.store;
    store.put_component("c0ffee", vec![0]).await.unwrap();
    let first_window = today() - Days::new(3);
    let installation = store
        .create_installation(NewInstallation {
            name: "old".into(),
            manifest: String::new(),
            component_sha256: "c0ffee".into(),
            description: AdapterDescription {
                name: "old".into(),
                version: "0".into(),
                produces: vec![],
            },
            first_window,
            publish_to_tenants: false,
        })
        .await
        .unwrap();
    store
        .schedule_windows(
            installation.id,
            vec![(first_window, first_window + Days::new(1))],
        )
        .await
        .unwrap();
    let run = store
        .claim_run(Utc::now(), "test", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    // The store keeps what it is given; the runner cuts reasons before.
    let whole = "é".repeat(4 << 20);
    let attempt = FinishedAttempt {
        end: RunEnd::Failed {
            reason: whole.clone(),
        },
        figures: RunFiguresRecord::default(),
        log: RunLogRecord::default(),
    };
    assert!(
        store
            .finish_run(run.id, run.attempts, attempt)
            .await
            .unwrap()
    );
    let marker = format!("… [truncated: {} bytes]", whole.len());
    let held = store.holding_run(installation.id).await.unwrap().unwrap();
    let listed = store.runs(installation.id, 10).await.unwrap().remove(0);
    for reason in [held.reason, listed.reason] {
        let reason = reason.unwrap();
        assert!(reason.len() <= (4 << 10) + 64, "{} bytes", reason.len());
        assert!(
            reason.starts_with("éé") && reason.ends_with(&marker),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_correction_holds_nothing_but_a_failed_first_export_does() {
    use tally::store::exports::{
        AdapterDescription, FinishedAttempt, NewInstallation, Run, RunEnd, RunFiguresRecord,
        RunLogRecord,
    };
    let host = TestHost::new().await;
    let store = &host.store;
    let day = |n: u64| today() - Days::new(10 - n);
    let lease = || Duration::from_secs(60);
    store.put_component("c0ffee", vec![0]).await.unwrap();
    let installation = store
        .create_installation(NewInstallation {
            name: "held".into(),
            manifest: String::new(),
            component_sha256: "c0ffee".into(),
            description: AdapterDescription {
                name: "held".into(),
                version: "0".into(),
                produces: vec![],
            },
            first_window: day(0),
            publish_to_tenants: false,
        })
        .await
        .unwrap();
    let end = |run: Run, end: RunEnd| async move {
        let attempt = FinishedAttempt {
            end,
            figures: RunFiguresRecord::default(),
            log: RunLogRecord::default(),
        };
        assert!(
            store
                .finish_run(run.id, run.attempts, attempt)
                .await
                .unwrap()
        );
    };
    let failed = || RunEnd::Failed {
        reason: "no".into(),
    };
    let succeeded = || succeeded_with(vec![]);

    // Day 0 exported, then its correction fails: day 1 still runs.
    store
        .schedule_windows(installation.id, vec![(day(0), day(1))])
        .await
        .unwrap();
    let run = store
        .claim_run(Utc::now(), "test", lease())
        .await
        .unwrap()
        .unwrap();
    end(run, succeeded()).await;
    let (correction, _) = store
        .request_runs(installation.id, vec![(day(0), day(1))])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(correction.revision, 1);
    let run = store
        .claim_run(Utc::now(), "test", lease())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.id, correction.id);
    end(run, failed()).await;
    store
        .schedule_windows(installation.id, vec![(day(1), day(2)), (day(2), day(3))])
        .await
        .unwrap();
    let run = store
        .claim_run(Utc::now(), "test", lease())
        .await
        .unwrap()
        .expect("a failed correction holds nothing");
    assert_eq!(run.window_start, day(1));
    // Day 1's first export fails: day 2 waits, the watermark stays at day 1.
    end(run.clone(), failed()).await;
    assert!(
        store
            .claim_run(Utc::now(), "test", lease())
            .await
            .unwrap()
            .is_none()
    );
    let held = store.installation("held").await.unwrap().unwrap();
    assert_eq!(held.watermark, day(1));
    assert_eq!(
        store
            .holding_run(installation.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        run.id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_ended_is_taken_over_and_the_old_attempt_cannot_finish_it() {
    use tally::store::exports::{
        AdapterDescription, FinishedAttempt, Interrupted, NewInstallation, RunFiguresRecord,
        RunLogRecord,
    };
    let host = TestHost::new().await;
    let store = &host.store;
    let day = |n: u64| today() - Days::new(10 - n);
    store.put_component("c0ffee", vec![0]).await.unwrap();
    let installation = store
        .create_installation(NewInstallation {
            name: "leased".into(),
            manifest: String::new(),
            component_sha256: "c0ffee".into(),
            description: AdapterDescription {
                name: "leased".into(),
                version: "0".into(),
                produces: vec![],
            },
            first_window: day(0),
            publish_to_tenants: false,
        })
        .await
        .unwrap();
    store
        .schedule_windows(installation.id, vec![(day(0), day(1)), (day(1), day(2))])
        .await
        .unwrap();
    let succeeded = || FinishedAttempt {
        end: succeeded_with(vec![]),
        figures: RunFiguresRecord::default(),
        log: RunLogRecord::default(),
    };
    let (short, long) = (Duration::from_millis(300), Duration::from_secs(60));

    // Host A takes day 0; while its lease lasts, nobody else may.
    let first = store
        .claim_run(Utc::now(), "a", short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.window_start, first.attempts), (day(0), 1));
    assert!(
        store
            .claim_run(Utc::now(), "b", long)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .requeue_interrupted_runs(8, Interrupted::LeaseEnded)
            .await
            .unwrap(),
        0,
        "a live lease is not taken over"
    );

    // A goes silent; once its lease has ended the run is queued again and B takes it.
    tokio::time::sleep(short + Duration::from_millis(50)).await;
    assert_eq!(
        store
            .requeue_interrupted_runs(8, Interrupted::LeaseEnded)
            .await
            .unwrap(),
        1
    );
    let second = store
        .claim_run(Utc::now(), "b", long)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id, second.attempts), (first.id, 2));

    // A's late renewal and finish are refused: nothing of A's attempt is recorded.
    assert!(!store.renew_lease(first.id, 1, long).await.unwrap());
    assert!(!store.finish_run(first.id, 1, succeeded()).await.unwrap());
    let leased = store.installation("leased").await.unwrap().unwrap();
    assert_eq!(leased.watermark, day(0));

    // B's attempt finishes it; the next window follows.
    assert!(store.renew_lease(second.id, 2, long).await.unwrap());
    assert!(store.finish_run(second.id, 2, succeeded()).await.unwrap());
    let next = store
        .claim_run(Utc::now(), "b", long)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.window_start, day(1));
    let leased = store.installation("leased").await.unwrap().unwrap();
    assert_eq!(leased.watermark, day(1));
}

/// Where the two databases once differed: a name compares ignoring case,
/// and removing an installation takes its runs and documents with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_ignore_case_and_a_removed_installation_leaves_no_runs_or_documents() {
    use tally::store::StoreError;
    use tally::store::exports::{
        AdapterDescription, FinishedAttempt, NewInstallation, RunFiguresRecord, RunLogRecord,
        StoredDocument,
    };
    let host = TestHost::new().await;
    let store = &host.store;
    let day = |n: u64| today() - Days::new(10 - n);
    store.put_component("c0ffee", vec![0]).await.unwrap();
    let new = |name: &str| NewInstallation {
        name: name.into(),
        manifest: String::new(),
        component_sha256: "c0ffee".into(),
        description: AdapterDescription {
            name: "cased".into(),
            version: "0".into(),
            produces: vec!["invoice.csv".into()],
        },
        first_window: day(0),
        publish_to_tenants: false,
    };

    let installed = store.create_installation(new("Billing")).await.unwrap();
    assert!(matches!(
        store.create_installation(new("BILLING")).await,
        Err(StoreError::Exists(_))
    ));
    let found = store.installation("billing").await.unwrap().unwrap();
    assert_eq!((found.id, found.name.as_str()), (installed.id, "Billing"));
    assert!(
        !store
            .set_enabled("bILLING", false)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert!(
        store
            .set_enabled("billinG", true)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert!(
        store
            .upgrade_installation(new("BILLING"))
            .await
            .unwrap()
            .is_some()
    );

    store
        .schedule_windows(installed.id, vec![(day(0), day(1))])
        .await
        .unwrap();
    let run = store
        .claim_run(Utc::now(), "test", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let document = StoredDocument::new("text/csv".into(), b"total\n1\n".to_vec(), None);
    let finished = FinishedAttempt {
        end: succeeded_with(vec![("invoice.csv".into(), document.clone())]),
        figures: RunFiguresRecord::default(),
        log: RunLogRecord::default(),
    };
    assert!(store.finish_run(run.id, run.claim, finished).await.unwrap());
    assert_eq!(
        store.run_document(run.id, "invoice.csv").await.unwrap(),
        Some(document)
    );

    assert!(store.remove_installation("BILLING").await.unwrap());
    assert!(!store.remove_installation("billing").await.unwrap());
    assert_eq!(store.installation_by_id(installed.id).await.unwrap(), None);
    assert_eq!(store.runs(installed.id, 10).await.unwrap(), vec![]);
    assert_eq!(store.run(installed.id, run.id).await.unwrap(), None);
    assert_eq!(
        store.run_document(run.id, "invoice.csv").await.unwrap(),
        None
    );
    assert_eq!(
        store.document_names(installed.id).await.unwrap(),
        Vec::<String>::new()
    );
}

/// `component` with one more section: `id` 0 a custom section, 1 a core module.
fn with_section(component: &[u8], id: u8, contents: &[u8]) -> Vec<u8> {
    use wasm_encoder::Encode;
    let mut bytes = component.to_vec();
    bytes.push(id);
    contents.len().encode(&mut bytes);
    bytes.extend_from_slice(contents);
    bytes
}

/// The same adapter under a sha256 no host has seen: a custom section named `tag`.
fn variant(component: &[u8], tag: &str) -> Vec<u8> {
    use wasm_encoder::Encode;
    let mut contents = Vec::new();
    tag.encode(&mut contents);
    with_section(component, 0, &contents)
}

/// A compile bomb: the adapter carrying a core module it never instantiates,
/// `functions` functions of `steps` arithmetic steps each, which the engine
/// compiles all the same.
fn with_compile_bomb(component: &[u8], functions: u32, steps: u32) -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Module, TypeSection, ValType};
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut body = Function::new([]);
    for step in 0..steps {
        body.instructions()
            .local_get(0)
            .local_get(0)
            .i32_mul()
            .i32_const(step as i32)
            .i32_xor()
            .local_set(0);
    }
    body.instructions().local_get(0).end();
    let (mut declared, mut code) = (FunctionSection::new(), CodeSection::new());
    for _ in 0..functions {
        declared.function(0);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&declared).section(&code);
    with_section(component, 1, &module.finish())
}

/// The files in the host's compiled-adapters directory, sorted.
fn compiled_files(host: &TestHost) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(host.data.path().join("compiled-adapters"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Finding 10: installs at once of a component the host has not seen compile
/// it once (the others wait and map that artifact), all succeed, and leave
/// one artifact that loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_installs_of_a_new_component_compile_it_once_and_all_succeed() {
    const ROUNDS: usize = 3;
    const AT_ONCE: usize = 8;
    let host = TestHost::with_exports().await;
    let exports = host.exports.clone().unwrap();
    let address = host.serve().await;
    let chargeback = component("chargeback-csv");
    let mut components = Vec::new();
    for round in 0..ROUNDS {
        let wasm = variant(&chargeback, &format!("round {round}"));
        let mut installs = tokio::task::JoinSet::new();
        for i in 0..AT_ONCE {
            // Today's window has not closed: no run loads the component meanwhile.
            let manifest = manifest(
                &format!("round{round}-{i}"),
                &wasm,
                today(),
                &chargeback_config(&RATES),
            );
            let (wasm, operator) = (wasm.clone(), host.operator.clone());
            installs.spawn(async move {
                send_manifest(Method::POST, address, "", &operator, &manifest, Some(&wasm)).await
            });
        }
        for (status, body) in installs.join_all().await {
            assert_eq!(status, StatusCode::CREATED, "round {round}: {body}");
        }
        components.push(wasm);
    }
    assert_eq!(
        exports.engine().compiles(),
        ROUNDS as u64,
        "one compile per component"
    );
    let listed = host.get("/v1/adapters", &host.operator).await;
    assert_eq!(listed.body.as_array().unwrap().len(), ROUNDS * AT_ONCE);
    let health = host.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);

    // One artifact per component, no temporary file left, and each loads
    // into a fresh engine without compiling.
    let files = compiled_files(&host);
    assert_eq!(files.len(), ROUNDS, "{files:?}");
    let fresh = AdapterEngine::new(host.data.path().join("compiled-adapters")).unwrap();
    for wasm in &components {
        assert!(
            files.iter().any(|f| f.starts_with(&sha256(wasm))),
            "{files:?}"
        );
        let loaded = fresh.load(wasm).unwrap();
        assert!(loaded.cached, "the artifact loads as it is");
    }
    assert_eq!(fresh.compiles(), 0);
}

/// Review of finding 10: compiles of different components take turns that
/// are waited for before a blocking thread is taken, bounded by
/// `install_wait`: with one turn and a wait shorter than any compile, some
/// installs at once are refused with 503 (nothing stored), the others
/// succeed, and a refused one succeeds when sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiles_of_different_components_take_turns_bounded_by_install_wait() {
    const AT_ONCE: usize = 4;
    let host = TestHost::with_export_and_compile_settings(
        tally::exports::ExportSettings {
            install_wait: Duration::from_millis(1),
            ..tally::exports::ExportSettings::default()
        },
        CompileSettings {
            concurrency: 1,
            ..CompileSettings::default()
        },
    )
    .await;
    let exports = host.exports.clone().unwrap();
    let address = host.serve().await;
    let chargeback = component("chargeback-csv");
    let mut installs = tokio::task::JoinSet::new();
    for i in 0..AT_ONCE {
        let wasm = variant(&chargeback, &format!("turn {i}"));
        let manifest = manifest(
            &format!("turn{i}"),
            &wasm,
            today(),
            &chargeback_config(&RATES),
        );
        let operator = host.operator.clone();
        installs.spawn(async move {
            let (status, body) =
                send_manifest(Method::POST, address, "", &operator, &manifest, Some(&wasm)).await;
            (status, body, manifest, wasm)
        });
    }
    let mut refused = Vec::new();
    for (status, body, manifest, wasm) in installs.join_all().await {
        match status {
            StatusCode::CREATED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["error"]["code"], "InstallsBusy", "{body}");
                assert!(
                    host.store
                        .component(&sha256(&wasm))
                        .await
                        .unwrap()
                        .is_none(),
                    "a refused install stores nothing"
                );
                refused.push((manifest, wasm));
            }
            _ => panic!("{status}: {body}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "one compile turn: the others were refused"
    );
    assert!(refused.len() < AT_ONCE, "one install had the turn");
    assert_eq!(
        exports.engine().compiles(),
        (AT_ONCE - refused.len()) as u64,
        "a refused install compiled nothing"
    );
    for (manifest, wasm) in refused {
        let (status, body) = install(&host, &host.operator, &manifest, Some(&wasm)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// Review of finding 15: eviction removes what compiles of an older host
/// left behind (`{sha}-{hash}.partial`, without today's prefix) once it is
/// stale, and a fresh one (a compile of a replica may be writing it) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_removes_stale_partial_artifacts_of_older_hosts() {
    let host = TestHost::with_exports().await;
    let exports = host.exports.clone().unwrap();
    let cache = host.data.path().join("compiled-adapters");
    let stale = cache.join(format!("{}-0123456789abcdef.partial", "a".repeat(64)));
    let fresh = cache.join(format!("{}-0123456789abcdef.partial", "b".repeat(64)));
    for path in [&stale, &fresh] {
        std::fs::write(path, b"half an artifact").unwrap();
    }
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3_600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    exports.evict_unused().await.unwrap();
    assert!(!stale.exists(), "{:?}", compiled_files(&host));
    assert!(fresh.exists(), "{:?}", compiled_files(&host));
}

/// Finding 15: a component whose compile needs more memory than the
/// configured bound is refused, naming the bound; nothing is stored or
/// cached, and the host carries on installing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_bomb_is_refused_at_the_memory_bound_and_the_host_carries_on() {
    let host = TestHost::with_compile_settings(CompileSettings {
        memory_mib: 256,
        ..CompileSettings::default()
    })
    .await;
    let chargeback = component("chargeback-csv");
    let bomb = with_compile_bomb(&chargeback, BOMB_FUNCTIONS, BOMB_STEPS);
    let config = chargeback_config(&RATES);
    let (status, body) = install(
        &host,
        &host.operator,
        &manifest("bomb", &bomb, today(), &config),
        Some(&bomb),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("InvalidComponent")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("needed more than 256 MiB") && message.contains("memory_mib"),
        "{message}"
    );
    assert!(
        host.store
            .component(&sha256(&bomb))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(compiled_files(&host), Vec::<String>::new());

    let health = host.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let (status, body) = install(
        &host,
        &host.operator,
        &manifest("chargeback", &chargeback, today(), &config),
        Some(&chargeback),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let listed = host.get("/v1/adapters", &host.operator).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
}

/// The bomb of the test above: 3.7 MB of wasm in two functions whose compile
/// peaks at about 630 MiB without a bound.
const BOMB_FUNCTIONS: u32 = 2;
const BOMB_STEPS: u32 = 150_000;

/// Finding 15: the loaded component and its artifact go when no installation
/// uses them any more (remove, upgrade), and stay while one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_no_installation_uses_are_evicted_from_memory_and_disk() {
    let host = TestHost::with_exports().await;
    let exports = host.exports.clone().unwrap();
    let address = host.serve().await;
    let chargeback = component("chargeback-csv");
    let (first, second) = (
        variant(&chargeback, "first"),
        variant(&chargeback, "second"),
    );
    let config = chargeback_config(&RATES);
    let installed = |name: &str, wasm: &[u8]| manifest(name, wasm, today(), &config);
    let artifact_of = |files: &[String], wasm: &[u8]| {
        files
            .iter()
            .filter(|f| f.starts_with(&sha256(wasm)))
            .count()
    };

    for name in ["upgraded", "kept"] {
        let (status, body) = install(
            &host,
            &host.operator,
            &installed(name, &first),
            Some(&first),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(exports.loaded_components(), [sha256(&first)]);
    assert_eq!(artifact_of(&compiled_files(&host), &first), 1);

    // Upgraded away from, but still used by "kept": stays.
    let (status, body) = send_manifest(
        Method::PUT,
        address,
        "upgraded",
        &host.operator,
        &installed("upgraded", &second),
        Some(&second),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut both = vec![sha256(&first), sha256(&second)];
    both.sort();
    assert_eq!(exports.loaded_components(), both);
    assert_eq!(compiled_files(&host).len(), 2);

    // Its last installation removed: gone from memory and disk.
    let removed = host
        .call(
            Method::DELETE,
            "/v1/adapters/kept",
            Some(&host.operator),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(exports.loaded_components(), [sha256(&second)]);
    let files = compiled_files(&host);
    assert_eq!(
        (artifact_of(&files, &first), artifact_of(&files, &second)),
        (0, 1),
        "{files:?}"
    );
    let removed = host
        .call(
            Method::DELETE,
            "/v1/adapters/upgraded",
            Some(&host.operator),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(exports.loaded_components(), Vec::<String>::new());
    assert_eq!(compiled_files(&host), Vec::<String>::new());
}

/// The compiler child builds its engine from the host's settings and refuses
/// to compile for an engine whose settings hash differs (its artifact would
/// not load there), writing nothing.
#[test]
fn the_compiler_child_refuses_to_compile_for_other_engine_settings() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["compile-component", "--settings-hash", "0000000000000000"])
        .stdin(std::fs::File::open(component_path("chargeback-csv")).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("differ from the host's (0000000000000000)"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

/// Finding 10 as it was reported: eight `tally adapters install` processes
/// at once against a `tally serve` of a component it has not seen. Each
/// install succeeds and the host process is still alive and serving.
#[test]
fn concurrent_install_processes_leave_the_host_serving() {
    use support::process::{Server, tally_ok};
    const AT_ONCE: usize = 8;
    let dir = DataDir::new();
    let data = dir.path().to_str().unwrap();
    let operator = tally_ok(&["token", "create", "--data-dir", data, "--role", "operator"]);
    let mut server = Server::start(dir.path());
    let wasm = variant(&component("chargeback-csv"), "install processes");
    let component = dir.path().join("adapter.wasm");
    std::fs::write(&component, &wasm).unwrap();
    let installs: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let path = dir.path().join(format!("adapter-{i}.toml"));
            // Today's window has not closed: no run starts meanwhile.
            let text = manifest(
                &format!("process-{i}"),
                &wasm,
                today(),
                &chargeback_config(&RATES),
            );
            std::fs::write(&path, text).unwrap();
            std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
                .args(["adapters", "install"])
                .arg(&path)
                .arg("--component")
                .arg(&component)
                .args(["--url", &server.base, "--token", operator.trim()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for install in installs {
        let output = install.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the host is alive"
    );
    let listed = tally_ok(&[
        "adapters",
        "list",
        "--url",
        &server.base,
        "--token",
        operator.trim(),
    ]);
    for i in 0..AT_ONCE {
        assert!(listed.contains(&format!("process-{i}")), "{listed}");
    }
    let artifacts = std::fs::read_dir(dir.path().join("compiled-adapters"))
        .unwrap()
        .count();
    assert_eq!(artifacts, 1, "one artifact, no temporary file left");
}

/// Finding 13: install-time calls take turns (a bounded number at once; an
/// install that waits too long is refused with 503), so that a well-behaved
/// run finds an instance while 34 installs whose `validate-config` spins
/// arrive together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_installs_take_turns_and_a_run_keeps_its_slot() {
    let host = TestHost::with_export_settings(tally::exports::ExportSettings {
        tick: Duration::from_millis(100),
        retry_base: Duration::from_millis(200),
        retry_max: Duration::from_secs(1),
        max_attempts: 3,
        install_wait: Duration::from_secs(1),
        ..tally::exports::ExportSettings::default()
    })
    .await;
    let first_day = ingest_past_usage(&host, 2, 2).await;
    let chargeback = component("chargeback-csv");
    let control = manifest(
        "control",
        &chargeback,
        first_day,
        &chargeback_config(&RATES),
    );
    let (status, body) = install(&host, &host.operator, &control, Some(&chargeback)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_for_watermark(&host, "control", today()).await;
    // The hostile component once, so that the storm below only loads its artifact.
    let hostile = component("hostile");
    let calm = manifest("calm", &hostile, today(), "[config]\nattack = 'none'\n");
    let (status, body) = install(&host, &host.operator, &calm, Some(&hostile)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let storm: Vec<_> = (0..34)
        .map(|i| {
            let manifest = manifest(
                &format!("spin-{i}"),
                &hostile,
                today(),
                "[limits]\ndeadline_seconds = 2\n[config]\nattack = 'spin-config'\n",
            );
            let (host, hostile) = (&host, &hostile);
            async move { install(host, &host.operator, &manifest, Some(hostile.as_slice())).await }
        })
        .collect();
    let correction = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reply = request_day(&host, "control", first_day).await;
        assert_eq!(reply.body[0]["outcome"], "correction", "{}", reply.body);
        wait_for_run(&host, reply.body[0]["run"]["url"].as_str().unwrap()).await
    };
    let (installs, run) = tokio::join!(futures_util::future::join_all(storm), correction);

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["attempts"], 1,
        "the control run never lacked an instance: {run}"
    );
    let mut busy = 0;
    for (status, body) in &installs {
        match status.as_u16() {
            503 => {
                assert_eq!(body["error"]["code"], "InstallsBusy", "{body}");
                busy += 1;
            }
            422 => assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("ran past its deadline"),
                "{body}"
            ),
            _ => panic!("{status}: {body}"),
        }
    }
    assert!(busy > 0, "some installs waited past install_wait");
}

/// Findings 3 and 14: a failure reason is stored and served cut to 4 KiB
/// (the adapter returned 8 MiB), and a describe() over the bounds is refused
/// at install with a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_strings_are_stored_and_served_bounded() {
    let (host, first_day) = host_with_usage().await;
    let hostile = component("hostile");
    let loud = manifest(
        "loud",
        &hostile,
        first_day,
        &format!("[config]\nattack = 'huge-error'\nbytes = {}\n", 8 << 20),
    );
    let (status, body) = install(&host, &host.operator, &loud, Some(&hostile)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let started = Instant::now();
    let held = loop {
        let shown = host.get("/v1/adapters/loud", &host.operator).await.body;
        if !shown["heldBy"].is_null() {
            break shown;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let listed = host.get("/v1/adapters", &host.operator).await.body;
    let runs = host
        .get("/v1/adapters/loud/runs", &host.operator)
        .await
        .body;
    let failed = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "failed")
        .unwrap()
        .clone();
    for reason in [
        &held["heldBy"]["reason"],
        &listed.as_array().unwrap()[0]["heldBy"]["reason"],
        &failed["reason"],
    ] {
        let reason = reason.as_str().unwrap();
        assert!(
            reason.len() <= 4 << 10,
            "a reason of {} bytes",
            reason.len()
        );
        assert!(
            reason.contains("permanent failure: eee")
                && reason.ends_with(&format!("[truncated: {} bytes]", 8 << 20)),
            "{reason:.200}"
        );
    }

    let bomb = component("hostile-describe");
    let described = manifest("described", &bomb, today(), "");
    let (status, body) = install(&host, &host.operator, &described, Some(&bomb)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:.300}");
    assert_eq!(body["error"]["code"], "InvalidDescription", "{body:.300}");
    assert!(
        host.get("/v1/adapters/described", &host.operator)
            .await
            .status
            == StatusCode::NOT_FOUND
    );
}

/// A success publishing `documents`, with a provenance the store keeps as given.
fn succeeded_with(
    documents: Vec<(String, tally::store::exports::StoredDocument)>,
) -> tally::store::exports::RunEnd {
    tally::store::exports::RunEnd::Succeeded {
        documents,
        provenance: tally::store::exports::Provenance {
            world_version: "0.2.0".into(),
            component_sha256: "c0ffee".into(),
            config_sha256: tally::store::exports::sha256_hex(b"{}"),
            config_digest: tally::store::exports::sha256_hex(b"{}"),
            granularity: tally::usage::Granularity::Daily,
            usage_sha256: tally::store::exports::sha256_hex(b""),
        },
        config_json: "{}".into(),
    }
}
