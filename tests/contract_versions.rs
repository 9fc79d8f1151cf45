//! The contract's versions on one host: adapters built for
//! `tally:billing@0.1.0` and for `0.2.0` installed side by side, each run
//! under its version's rules; documents that belong to subscriptions, and a
//! write for a subscription the run may not write for failing the run with
//! a reason naming both; a version the host does not serve refused naming
//! those it does.
//!
//! The components are built from source by `adapters/build.sh`
//! (`hostile-0.1` is the hostile adapter built for 0.1.0).

use crate::support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;
use tally_usage_generator::Options;

/// A manifest for `component` (its world read from it): daily windows from
/// `start`, no lag, and `extra` TOML (scope, config…) appended.
fn manifest(name: &str, wasm: &[u8], start: DateTime<Utc>, extra: &str) -> String {
    let sha256: String = Sha256::digest(wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "name = '{name}'\nversion = '0.1.0'\nworld = 'tally:billing@{}'\nsha256 = '{sha256}'\n\
         [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n{extra}",
        world_of(wasm),
        start.to_rfc3339()
    )
}

/// Installs `manifest` with `wasm` through `POST /v1/adapters`.
async fn install(host: &TestHost, manifest: &str, wasm: &[u8]) -> (StatusCode, Value) {
    let address = host.serve().await;
    let (status, body) = support::send_adapter(
        reqwest::Method::POST,
        address,
        &host.operator,
        "/v1/adapters",
        manifest,
        wasm,
    )
    .await;
    (StatusCode::from_u16(status).unwrap(), body)
}

/// Installs, and asserts it was.
async fn installed(host: &TestHost, manifest: &str, wasm: &[u8]) {
    let (status, body) = install(host, manifest, wasm).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The first run of `adapter` once it has ended (succeeded or failed), with
/// its log and documents.
async fn first_run_ended(host: &TestHost, adapter: &str) -> Value {
    let started = Instant::now();
    loop {
        let runs = host
            .get(&format!("/v1/adapters/{adapter}/runs"), &host.operator)
            .await
            .body;
        let first = runs.as_array().and_then(|runs| runs.last());
        if let Some(run) = first.filter(|r| r["status"] == "succeeded" || r["status"] == "failed") {
            return host
                .get(run["url"].as_str().unwrap(), &host.operator)
                .await
                .body;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{runs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A host with one day of usage of `subscriptions` (closed yesterday);
/// returns the day and the subscription ids, sorted.
async fn host_with_a_day_of_usage(subscriptions: usize) -> (TestHost, DateTime<Utc>, Vec<String>) {
    let host = TestHost::with_exports().await;
    let day = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        - Days::new(1);
    let options = Options {
        subscriptions,
        days: 1,
        end: day + Days::new(1),
        ..Options::default()
    };
    let records = reported_by_now(to_wire(&sample(&options)));
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| r["subscriptionId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    host.ingest(&records).await;
    (host, day, ids)
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).unwrap()
}

fn document_names(run: &Value) -> Vec<&str> {
    run["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect()
}

/// A 0.1 adapter and a 0.2 adapter on one host: each installs (`describe`
/// and `validate-config` of its version), exports, and runs under its
/// version's document cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_of_0_1_and_0_2_export_side_by_side() {
    let (host, day, subscriptions) = host_with_a_day_of_usage(2).await;
    let (old, new) = (component("hostile-0.1"), component("hostile"));
    assert_eq!(
        (world_of(&old), world_of(&new)),
        ("0.1.0".into(), "0.2.0".into())
    );

    let html = "[config]\nattack = 'html-document'\n";
    installed(&host, &manifest("legacy", &old, day, html), &old).await;
    let statements = "[config]\nattack = 'append-for'\n";
    installed(&host, &manifest("current", &new, day, statements), &new).await;
    for (name, world) in [("legacy", "0.1.0"), ("current", "0.2.0")] {
        let shown = host
            .get(&format!("/v1/adapters/{name}"), &host.operator)
            .await;
        assert_eq!(
            shown.body["world"],
            format!("tally:billing@{world}"),
            "{}",
            shown.body
        );
    }

    let legacy = first_run_ended(&host, "legacy").await;
    assert_eq!(legacy["status"], "succeeded", "{legacy}");
    assert_eq!(document_names(&legacy), ["page.html", "table.csv"]);

    // The 0.2 adapter wrote a document for the first subscription it read,
    // and one of the operator's.
    let current = first_run_ended(&host, "current").await;
    assert_eq!(current["status"], "succeeded", "{current}");
    let statement = format!("statement-{}.txt", subscriptions[0]);
    assert_eq!(document_names(&current), ["operator.txt", &statement]);
    let url = current["documents"][1]["url"].as_str().unwrap();
    let reply = host.get(url, &host.operator).await;
    let rows = current["figures"]["rowsRead"].as_u64().unwrap();
    assert!(rows > 0);
    assert_eq!(
        reply.body.as_str(),
        Some(format!("{rows} rows for {}\n", subscriptions[0]).as_str())
    );

    // 100 documents a run on 0.1, 10,000 on 0.2.
    let many = "[config]\nattack = 'documents'\ncount = 150\nbytes = 8\n";
    installed(&host, &manifest("legacy-many", &old, day, many), &old).await;
    installed(&host, &manifest("current-many", &new, day, many), &new).await;
    let legacy = first_run_ended(&host, "legacy-many").await;
    let reason = legacy["reason"].as_str().unwrap();
    assert!(reason.contains("LimitReached(100)"), "{reason}");
    let current = first_run_ended(&host, "current-many").await;
    let reason = current["reason"].as_str().unwrap();
    assert!(reason.contains("wrote every document"), "{reason}");
}

/// A 0.2 adapter writing a document for a subscription outside the
/// installation's scope, or in it but not read by the run, fails its run
/// with a reason naming the subscription and the document, whatever the
/// adapter returned; nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_written_for_a_subscription_out_of_scope_fails_the_run() {
    let (host, day, subscriptions) = host_with_a_day_of_usage(2).await;
    let [first, second] = [&subscriptions[0], &subscriptions[1]];
    let hostile = component("hostile");

    let outside = format!(
        "[scope]\nsubscriptions = ['{first}']\n[config]\nattack = 'append-for'\nfor = 'sub-outside'\n"
    );
    installed(
        &host,
        &manifest("outside", &hostile, day, &outside),
        &hostile,
    )
    .await;
    let not_read = format!(
        "[scope]\nsubscriptions = ['{first}', '{second}']\n\
         [config]\nattack = 'append-for'\nread = '{first}'\nfor = '{}'\n",
        second.to_ascii_uppercase()
    );
    installed(
        &host,
        &manifest("not-read", &hostile, day, &not_read),
        &hostile,
    )
    .await;

    let expected = [
        (
            "outside",
            r#"the adapter wrote "statement-sub-outside.txt" for subscription "sub-outside", which is outside the installation's scope"#.to_owned(),
        ),
        (
            "not-read",
            format!(
                r#"the adapter wrote "statement-{}.txt" for subscription "{}", of which the run read no usage"#,
                second.to_ascii_uppercase(),
                second.to_ascii_uppercase()
            ),
        ),
    ];
    for (adapter, reason) in expected {
        let run = first_run_ended(&host, adapter).await;
        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(run["reason"], reason.as_str(), "{run}");
        assert!(document_names(&run).is_empty(), "{run}");
        let logged = run["log"].as_array().unwrap();
        assert!(
            logged
                .iter()
                .any(|l| l["level"] == "error" && l["message"] == reason.as_str()),
            "{run}"
        );
    }
}

/// A component for a version the host does not serve is refused at
/// install, naming the versions it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_host_does_not_serve_is_refused_naming_those_it_does() {
    let host = TestHost::with_exports().await;
    let next_major = component("next-major");
    assert_eq!(world_of(&next_major), "1.0.0");
    let start = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let (status, body) = install(
        &host,
        &manifest("next", &next_major, start, ""),
        &next_major,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "InvalidComponent", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "the adapter targets tally:billing@1.0.0; this host supports \
             tally:billing@0.1.0 and tally:billing@0.2.0"
        ),
        "{message}"
    );
}
