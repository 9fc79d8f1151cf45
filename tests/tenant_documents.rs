//! Documents published to tenants, through the REST API: a tenant lists and
//! reads the documents written for its own subscriptions (per run and joined
//! over windows) and nothing else — another subscription's are 403, anything
//! not published to its own 404, and no answer names another subscription
//! or its documents; an adapter without `publish_to_tenants` publishes
//! nothing to tenants; and every run keeps the provenance it was made with.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Days, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;
use tally::api::{self, AppState};
use tally::auth::Role;
use tally::exports::{ExportSettings, Exports};
use tally::sandbox::AdapterEngine;
use tally::store::exports::{
    AdapterDescription, FinishedAttempt, Installation, NewInstallation, Provenance, Run, RunEnd,
    RunFiguresRecord, RunLogRecord, StoredDocument, sha256_hex,
};
use tally::usage::Granularity;

fn today() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// Day `n` of the test's windows: the tenth day before today is day 0.
fn day(n: u64) -> DateTime<Utc> {
    today() - Days::new(10) + Days::new(n)
}

/// A host that serves adapters' documents with no scheduler running: the
/// tests publish runs through the store, as a run would.
async fn host_serving_documents() -> TestHost {
    let mut host = TestHost::new().await;
    let engine = AdapterEngine::new(host.data.path().join("compiled-adapters")).unwrap();
    let exports = Arc::new(Exports::new(
        host.store.clone(),
        Arc::new(engine),
        ExportSettings::default(),
    ));
    host.app = api::router(
        AppState::new(host.store.clone(), host.settings.clone()).with_exports(exports.clone()),
    );
    host.exports = Some(exports);
    host
}

/// Installs `name` straight into the store, exporting from day 0.
async fn install(host: &TestHost, name: &str, publish_to_tenants: bool) -> Installation {
    host.store
        .put_component("c0ffee", b"opaque".to_vec())
        .await
        .unwrap();
    let new = NewInstallation {
        name: name.into(),
        manifest: String::new(),
        component_sha256: "c0ffee".into(),
        description: AdapterDescription {
            name: name.into(),
            version: "1.0.0".into(),
            produces: vec![],
        },
        first_window: day(0),
        publish_to_tenants,
    };
    host.store.create_installation(new).await.unwrap()
}

/// How the test runs were made.
fn provenance() -> Provenance {
    Provenance {
        world_version: "0.2.0".into(),
        component_sha256: "c0ffee".into(),
        config_sha256: sha256_hex(br#"{"secret":"s3cret"}"#),
        config_digest: sha256_hex(br#"{"secret":"***"}"#),
        granularity: Granularity::Daily,
        usage_sha256: sha256_hex(b"rows"),
    }
}

/// Claims the next run and publishes `documents` from it, as a run would.
async fn publish(host: &TestHost, documents: Vec<(String, StoredDocument)>) -> Run {
    let run = host
        .store
        .claim_run(Utc::now(), "test", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a run to claim");
    let finished = FinishedAttempt {
        end: RunEnd::Succeeded {
            documents,
            provenance: provenance(),
            config_json: r#"{"secret":"s3cret"}"#.into(),
        },
        figures: RunFiguresRecord {
            rows_read: 12,
            ..RunFiguresRecord::default()
        },
        log: RunLogRecord::default(),
    };
    assert!(
        host.store
            .finish_run(run.id, run.claim, finished)
            .await
            .unwrap()
    );
    run
}

fn document(
    name: &str,
    content_type: &str,
    owner: Option<&str>,
    text: &str,
) -> (String, StoredDocument) {
    let document = StoredDocument::new(
        content_type.into(),
        text.as_bytes().to_vec(),
        owner.map(str::to_owned),
    );
    (name.into(), document)
}

/// What a run of day `n` writes: the operator's document, and a CSV and an
/// HTML statement for each of two subscriptions (spelt as the usage was).
fn documents_of_day(n: u64) -> Vec<(String, StoredDocument)> {
    vec![
        document("all.csv", "text/csv", None, &format!("day\n{n}\n")),
        document(
            "statement-sub-a.csv",
            "text/csv",
            Some("Sub-A"),
            &format!("meter,total\nvm,{n}\n"),
        ),
        document(
            "statement-sub-a.html",
            "text/html; charset=utf-8",
            Some("Sub-A"),
            &format!("<p>day {n}</p>"),
        ),
        document(
            "statement-sub-b.csv",
            "text/csv",
            Some("sub-b"),
            &format!("meter,total\nip,{n}\n"),
        ),
    ]
}

/// The runs of two installations over days 0 and 1, each writing
/// [`documents_of_day`]: `statement` publishes to tenants, `ledger` does not.
/// Returns `statement`'s runs by day.
async fn two_days_of_two_adapters(host: &TestHost) -> Vec<Run> {
    let statement = install(host, "statement", true).await;
    let ledger = install(host, "ledger", false).await;
    for installation in [&statement, &ledger] {
        let windows = vec![(day(0), day(1)), (day(1), day(2))];
        host.store
            .schedule_windows(installation.id, windows)
            .await
            .unwrap();
    }
    let mut runs = Vec::new();
    for n in 0..2 {
        // The two installations' windows of a day are claimed side by side.
        for _ in 0..2 {
            let run = publish(host, documents_of_day(n)).await;
            if run.installation_id == statement.id {
                runs.push(run);
            }
        }
    }
    runs
}

/// The listing of `subscription`'s documents over days 0 and 1.
fn listing(subscription: &str) -> String {
    format!(
        "/v1/subscriptions/{subscription}/documents?from={}&to={}",
        day(0).to_rfc3339(),
        day(2).to_rfc3339()
    )
    .replace('+', "%2B")
}

/// Asserts an answer names no other subscription, nor any document not
/// published to `sub-a`.
fn assert_tells_nothing_of_others(reply: &Reply) {
    let text = reply.body.to_string().to_ascii_lowercase();
    for other in ["sub-b", "all.csv", "ledger"] {
        assert!(!text.contains(other), "{other} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_lists_and_reads_only_the_documents_published_to_its_subscription() {
    let host = host_serving_documents().await;
    let runs = two_days_of_two_adapters(&host).await;
    let tenant = host.token(Role::Tenant, &["SUB-A"]).await;

    // The list: sub-a's documents of the publishing adapter, newest window first.
    let reply = host.get(&listing("sub-a"), &tenant).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_tells_nothing_of_others(&reply);
    let listed: Vec<(i64, &str)> = reply.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["runId"].as_i64().unwrap(), d["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (runs[1].id, "statement-sub-a.csv"),
            (runs[1].id, "statement-sub-a.html"),
            (runs[0].id, "statement-sub-a.csv"),
            (runs[0].id, "statement-sub-a.html"),
        ]
    );
    let first = &reply.body["value"][0];
    let bytes = b"meter,total\nvm,1\n";
    assert_eq!(first["adapter"], "statement");
    assert_eq!(first["revision"], 0);
    assert_eq!(first["contentType"], "text/csv");
    assert_eq!(first["bytes"], bytes.len());
    assert_eq!(first["sha256"], sha256_hex(bytes));
    assert_eq!(
        first["window"],
        json!({"start": day(1), "end": day(2)}),
        "{first}"
    );
    assert_eq!(
        first["provenance"],
        json!({
            "contract": "tally:billing@0.2.0",
            "component": "c0ffee",
            "config": sha256_hex(br#"{"secret":"***"}"#),
            "window": {"start": day(1), "end": day(2)},
            "granularity": "daily",
            "usage": sha256_hex(b"rows"),
            "rowsRead": 12,
        })
    );
    assert!(!reply.body.to_string().contains(&provenance().config_sha256));

    // Each download as written, locked down as an operator's.
    for listed in reply.body["value"].as_array().unwrap() {
        let link = listed["links"]["download"].as_str().unwrap();
        let download = host.get(link, &tenant).await;
        assert_eq!(download.status, StatusCode::OK, "{link}");
        assert_eq!(
            download.headers["content-type"],
            listed["contentType"].as_str().unwrap()
        );
        assert_eq!(download.headers["content-security-policy"], "sandbox");
        assert_eq!(download.headers["x-content-type-options"], "nosniff");
        let text = download.body.as_str().unwrap().to_owned();
        assert_eq!(sha256_hex(text.as_bytes()), listed["sha256"], "{link}");
    }
    let html = host
        .get(
            &format!(
                "/v1/subscriptions/sub-a/adapters/statement/runs/{}/documents/statement-sub-a.html",
                runs[0].id
            ),
            &tenant,
        )
        .await;
    assert!(
        html.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
        "HTML is never shown in the host's origin"
    );

    // Joined over the windows: one CSV header, window order.
    let joined = host
        .get(
            "/v1/subscriptions/Sub-A/adapters/STATEMENT/documents/statement-sub-a.csv",
            &tenant,
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    assert_eq!(joined.body, "meter,total\nvm,0\nvm,1\n");
    let range = format!(
        "/v1/subscriptions/sub-a/adapters/statement/documents/statement-sub-a.csv?from={}",
        day(1).format("%Y-%m-%d")
    );
    assert_eq!(host.get(&range, &tenant).await.body, "meter,total\nvm,1\n");
    let html = host
        .get(
            "/v1/subscriptions/sub-a/adapters/statement/documents/statement-sub-a.html",
            &tenant,
        )
        .await;
    assert_eq!(
        (html.status, html.code()),
        (StatusCode::CONFLICT, "NotJoinable")
    );
    assert!(
        html.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/subscriptions/sub-a/adapters/statement/runs/{id}/documents/"),
        "{}",
        html.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_subscriptions_documents_are_refused_without_being_named() {
    let host = host_serving_documents().await;
    let runs = two_days_of_two_adapters(&host).await;
    let tenant = host.token(Role::Tenant, &["sub-a"]).await;
    let run = runs[0].id;

    // Another subscription: 403, whatever is asked of it.
    for uri in [
        listing("sub-b"),
        format!(
            "/v1/subscriptions/sub-b/adapters/statement/runs/{run}/documents/statement-sub-b.csv"
        ),
        "/v1/subscriptions/sub-b/adapters/statement/documents/statement-sub-b.csv".into(),
        "/v1/subscriptions/sub-c/adapters/nothing/documents/nothing.csv".into(),
    ] {
        let reply = host.get(&uri, &tenant).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::FORBIDDEN, "AuthorizationFailed"),
            "{uri}"
        );
    }

    // Its own subscription, but nothing published to it: 404, and the
    // answer is the same whether the document exists for someone else, is
    // the operator's, is of an adapter that does not publish to tenants, or
    // does not exist at all.
    for uri in [
        format!(
            "/v1/subscriptions/sub-a/adapters/statement/runs/{run}/documents/statement-sub-b.csv"
        ),
        format!("/v1/subscriptions/sub-a/adapters/statement/runs/{run}/documents/all.csv"),
        format!("/v1/subscriptions/sub-a/adapters/statement/runs/{run}/documents/none.csv"),
        format!(
            "/v1/subscriptions/sub-a/adapters/statement/runs/{}/documents/statement-sub-a.csv",
            run + 1_000
        ),
        format!("/v1/subscriptions/sub-a/adapters/ledger/runs/{run}/documents/statement-sub-a.csv"),
        format!(
            "/v1/subscriptions/sub-a/adapters/nothing/runs/{run}/documents/statement-sub-a.csv"
        ),
        "/v1/subscriptions/sub-a/adapters/statement/documents/statement-sub-b.csv".into(),
        "/v1/subscriptions/sub-a/adapters/statement/documents/all.csv".into(),
        "/v1/subscriptions/sub-a/adapters/ledger/documents/statement-sub-a.csv".into(),
        "/v1/subscriptions/sub-a/adapters/nothing/documents/statement-sub-a.csv".into(),
    ] {
        let reply = host.get(&uri, &tenant).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::NOT_FOUND, "DocumentNotFound"),
            "{uri}: {}",
            reply.body
        );
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("subscription 'sub-a'"), "{message}");
        assert!(!message.to_ascii_lowercase().contains("sub-b") || uri.contains("sub-b"));
    }

    // A ledger run's document written for sub-a is not published: not listed.
    let reply = host.get(&listing("sub-a"), &tenant).await;
    assert_tells_nothing_of_others(&reply);
    assert_eq!(reply.body["value"].as_array().unwrap().len(), 4);

    // Reporters read no documents; operators read any subscription's.
    let reporter = host.reporter.clone();
    let refused = host.get(&listing("sub-a"), &reporter).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let unsigned = host.call(Method::GET, &listing("sub-a"), None, None).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let operator = host.get(&listing("SUB-B"), &host.operator).await;
    assert_eq!(operator.status, StatusCode::OK);
    let names: Vec<&str> = operator.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["statement-sub-b.csv", "statement-sub-b.csv"]);
    let link = operator.body["value"][0]["links"]["download"]
        .as_str()
        .unwrap();
    assert!(link.starts_with("/v1/subscriptions/SUB-B/"), "{link}");
    assert_eq!(
        host.get(link, &host.operator).await.body,
        "meter,total\nip,1\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_listing_pages_and_a_range_is_at_most_366_days() {
    let host = host_serving_documents().await;
    let statement = install(&host, "statement", true).await;
    host.store
        .schedule_windows(statement.id, vec![(day(0), day(1))])
        .await
        .unwrap();
    let count = tally::api::MAX_TENANT_DOCUMENTS + 1;
    let documents = (0..count)
        .map(|i| document(&format!("d{i:05}.csv"), "text/csv", Some("sub-a"), "x\n"))
        .collect();
    publish(&host, documents).await;
    let tenant = host.token(Role::Tenant, &["sub-a"]).await;

    // Without a range: the last 366 days, which day 0 is in.
    let first = host.get("/v1/subscriptions/sub-a/documents", &tenant).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let page = first.body["value"].as_array().unwrap();
    assert_eq!(page.len(), tally::api::MAX_TENANT_DOCUMENTS);
    let next = first.body["nextLink"].as_str().expect("a next page");
    let second = host.get(next, &tenant).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert!(second.body.get("nextLink").is_none());
    let mut names: Vec<String> = page
        .iter()
        .chain(second.body["value"].as_array().unwrap())
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), count);
    names.dedup();
    assert_eq!(names.len(), count, "no document twice");

    // A continuation token is the host's own, and a range at most 366 days.
    let forged = host
        .get(
            "/v1/subscriptions/sub-a/documents?continuationToken=nonsense",
            &tenant,
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    let long = host
        .get(
            "/v1/subscriptions/sub-a/documents?from=2024-01-01&to=2025-01-02",
            &tenant,
        )
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert!(
        long.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 366")
    );
    let year = host
        .get(
            "/v1/subscriptions/sub-a/documents?from=2024-01-01&to=2025-01-01",
            &tenant,
        )
        .await;
    assert_eq!(year.status, StatusCode::OK);
}

#[tokio::test]
async fn the_tenant_routes_and_provenance_are_documented() {
    let host = host_serving_documents().await;
    let document = host.get("/openapi.json", &host.operator).await.body;
    let paths = &document["paths"];
    for (path, errors) in [
        (
            "/v1/subscriptions/{subscriptionId}/documents",
            &["400", "403"][..],
        ),
        (
            "/v1/subscriptions/{subscriptionId}/adapters/{name}/runs/{id}/documents/{document}",
            &["403", "404"],
        ),
        (
            "/v1/subscriptions/{subscriptionId}/adapters/{name}/documents/{document}",
            &["403", "404", "409"],
        ),
    ] {
        let get = &paths[path]["get"];
        assert_eq!(get["tags"], json!(["documents"]), "{path}");
        for status in errors.iter().chain(&["401", "503"]) {
            assert!(get["responses"][status].is_object(), "{path} {status}");
        }
    }
    let schemas = &document["components"]["schemas"];
    let properties = |name: &str| schemas[name]["properties"].clone();
    for property in [
        "adapter",
        "runId",
        "window",
        "revision",
        "finishedAt",
        "name",
        "contentType",
        "bytes",
        "sha256",
        "provenance",
        "links",
    ] {
        assert!(
            properties("TenantDocumentView")[property].is_object(),
            "{property}"
        );
    }
    for property in [
        "contract",
        "component",
        "config",
        "window",
        "granularity",
        "usage",
        "rowsRead",
    ] {
        assert!(
            properties("ProvenanceView")[property].is_object(),
            "{property}"
        );
    }
    // A run's detail flattens its view into its own properties.
    assert!(
        schemas["RunDetail"]
            .to_string()
            .contains(r#""provenance":{"#)
    );
    assert!(properties("DocumentView")["subscriptionId"].is_object());
    assert!(properties("DocumentView")["sha256"].is_object());
    assert!(properties("InstallationView")["publishToTenants"].is_object());
}

// ---- With real adapters and the scheduler ----

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A chargeback manifest of `wasm` for `world` over daily windows from
/// `start`, with `extra` top-level keys and tables appended.
fn chargeback_manifest(wasm: &[u8], world: &str, start: DateTime<Utc>, extra: &str) -> String {
    format!(
        "name = 'chargeback'\nversion = '0.1.0'\nworld = 'tally:billing@{world}'\nsha256 = '{}'\n\
         {extra}\n[schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n",
        sha256(wasm),
        start.to_rfc3339()
    )
}

/// Sends a manifest with its component to `/v1/adapters` (POST) or
/// `/v1/adapters/chargeback` (PUT) over real HTTP.
async fn send(
    host: &TestHost,
    method: reqwest::Method,
    manifest: &str,
    wasm: &[u8],
) -> (u16, Value) {
    let address = host.serve().await;
    let path = if method == reqwest::Method::POST {
        "/v1/adapters"
    } else {
        "/v1/adapters/chargeback"
    };
    support::send_adapter(method, address, &host.operator, path, manifest, wasm).await
}

/// Runs `day` of the chargeback adapter (a first export or a correction)
/// and returns the run once it succeeded.
async fn run_day(host: &TestHost, day: DateTime<Utc>) -> Value {
    let body = json!({"from": day.to_rfc3339(), "to": (day + Days::new(1)).to_rfc3339()});
    let requested = host
        .call(
            Method::POST,
            "/v1/adapters/chargeback/runs",
            Some(&host.operator),
            Some(body.to_string()),
        )
        .await;
    assert_eq!(requested.status, StatusCode::ACCEPTED, "{}", requested.body);
    let url = requested.body[0]["run"]["url"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let run = host.get(&url, &host.operator).await.body;
        match run["status"].as_str() {
            Some("succeeded") => return run,
            Some("failed") => panic!("{run}"),
            _ => {}
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Hex SHA-256 of nothing: the usage digest of a run that read no row.
fn empty_digest() -> String {
    sha256(b"")
}

/// Two days of sample usage of three subscriptions, reported before today;
/// returns the first day and the subscriptions as the usage spells them.
async fn ingest_usage(host: &TestHost) -> (DateTime<Utc>, Vec<String>) {
    let end = today() - Days::new(1);
    let options = tally_usage_generator::Options {
        subscriptions: 3,
        days: 2,
        end,
        ..tally_usage_generator::Options::default()
    };
    let records = reported_by_now(to_wire(&sample(&options)));
    let mut subscriptions: Vec<String> = records
        .iter()
        .map(|record| record["subscriptionId"].as_str().unwrap().to_owned())
        .collect();
    subscriptions.sort();
    subscriptions.dedup();
    host.ingest(&records).await;
    (end - Days::new(2), subscriptions)
}

/// The chargeback config of these tests, one CSV per subscription or not.
fn chargeback_config(per_subscription: bool) -> String {
    format!(
        "[config]\ncurrency = 'EUR'\ngroup_by_tag = 'cost-center'\n\
         per_subscription = {per_subscription}\nrates = {{ '{VM_METER}' = 0.5 }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_the_provenance_it_was_made_with() {
    let host = TestHost::with_exports().await;
    let (first_day, _) = ingest_usage(&host).await;
    let wasm = std::fs::read(component_path("chargeback-csv")).unwrap();
    let config = chargeback_config(false);
    // Windows from today: none closes while the test runs, so only the
    // runs it asks for run.
    let start = today();

    // A 0.1 adapter writes no documents for a subscription: it cannot publish to tenants.
    let webhook = std::fs::read(component_path("billing-webhook")).unwrap();
    assert_eq!(world_of(&webhook), "0.1.0");
    let publishing = chargeback_manifest(
        &webhook,
        "0.1.0",
        start,
        &format!("publish_to_tenants = true\n{config}"),
    );
    let (status, refused) = send(&host, reqwest::Method::POST, &publishing, &webhook).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("publish_to_tenants needs tally:billing@0.2.0"),
        "{refused}"
    );

    let manifest = chargeback_manifest(&wasm, "0.2.0", start, &config);
    let (status, installed) = send(&host, reqwest::Method::POST, &manifest, &wasm).await;
    assert_eq!(status, 201, "{installed}");
    assert_eq!(installed["publishToTenants"], false);
    let run = run_day(&host, first_day).await;
    let provenance = &run["provenance"];
    assert_eq!(provenance["contract"], "tally:billing@0.2.0");
    assert_eq!(provenance["component"], sha256(&wasm));
    assert_eq!(
        provenance["window"],
        json!({"start": run["windowStart"], "end": run["windowEnd"]})
    );
    assert_eq!(provenance["granularity"], "daily");
    assert_eq!(provenance["rowsRead"], run["figures"]["rowsRead"]);
    assert!(run["figures"]["rowsRead"].as_u64().unwrap() > 0);
    let hex = |value: &Value| {
        value
            .as_str()
            .is_some_and(|text| text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(
        hex(&provenance["config"]) && hex(&provenance["usage"]),
        "{provenance}"
    );
    assert_ne!(provenance["usage"], empty_digest(), "it read rows");
    // Each document's digest is that of its bytes; all are the operator's.
    for document in run["documents"].as_array().unwrap() {
        assert_eq!(document["subscriptionId"], Value::Null);
        let url = document["url"].as_str().unwrap();
        let bytes = host.get(url, &host.operator).await.body;
        let bytes = bytes.as_str().unwrap();
        assert_eq!(document["sha256"], sha256(bytes.as_bytes()), "{url}");
    }

    // The same config written otherwise: the same digest.
    let reworded = manifest.replace(
        &config,
        &format!(
            "[config]\n# the same, reworded\nrates = {{ \"{VM_METER}\" = 0.5 }}\n\
             group_by_tag = \"cost-center\"\nper_subscription = false\ncurrency = \"EUR\"\n"
        ),
    );
    assert_ne!(reworded, manifest);
    let (status, body) = send(&host, reqwest::Method::PUT, &reworded, &wasm).await;
    assert_eq!(status, 200, "{body}");
    let same = run_day(&host, first_day).await;
    assert_eq!(same["revision"], 1);
    assert_eq!(same["provenance"]["config"], provenance["config"]);
    assert_eq!(same["provenance"]["usage"], provenance["usage"]);

    // Another config: another digest, the same component and usage.
    let repriced = manifest.replace("0.5", "0.75");
    let (status, body) = send(&host, reqwest::Method::PUT, &repriced, &wasm).await;
    assert_eq!(status, 200, "{body}");
    let corrected = run_day(&host, first_day).await;
    assert_eq!(corrected["revision"], 2);
    assert_ne!(corrected["provenance"]["config"], provenance["config"]);
    assert_eq!(
        corrected["provenance"]["component"],
        provenance["component"]
    );
    assert_eq!(corrected["provenance"]["usage"], provenance["usage"]);

    // The next day's run reads other usage.
    let next = run_day(&host, first_day + Days::new(1)).await;
    assert_ne!(next["provenance"]["window"], provenance["window"]);
    assert_ne!(next["provenance"]["usage"], provenance["usage"]);

    // The CLI shows a run with its provenance.
    let address = host.serve().await;
    let url = format!("http://{address}");
    let run_id = corrected["id"].to_string();
    let shown = tokio::task::spawn_blocking(move || {
        support::process::tally_ok(&[
            "export",
            "show",
            "chargeback",
            &run_id,
            "--url",
            &url,
            "--token",
            &host.operator,
        ])
    })
    .await
    .unwrap();
    for expected in [
        "  contract     tally:billing@0.2.0\n".to_owned(),
        format!("  component    {}\n", sha256(&wasm)),
        format!(
            "  config       {}\n",
            corrected["provenance"]["config"].as_str().unwrap()
        ),
        "  granularity  daily\n".to_owned(),
        format!(
            "  usage        {} ({} rows)\n",
            corrected["provenance"]["usage"].as_str().unwrap(),
            corrected["provenance"]["rowsRead"]
        ),
        "(operator)".to_owned(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} not in\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapters_documents_for_a_subscription_reach_its_tenants_only() {
    let host = TestHost::with_exports().await;
    let (first_day, subscriptions) = ingest_usage(&host).await;
    assert!(subscriptions.len() >= 2, "{subscriptions:?}");
    let wasm = std::fs::read(component_path("chargeback-csv")).unwrap();
    let config = chargeback_config(true);
    let manifest = chargeback_manifest(
        &wasm,
        "0.2.0",
        today(),
        &format!("publish_to_tenants = true\n{config}"),
    );
    let (status, installed) = send(&host, reqwest::Method::POST, &manifest, &wasm).await;
    assert_eq!(status, 201, "{installed}");
    assert_eq!(installed["publishToTenants"], true);
    let run = run_day(&host, first_day).await;

    // The operator sees every document with its owner.
    let documents = run["documents"].as_array().unwrap();
    let owned: Vec<(&str, &str)> = documents
        .iter()
        .filter_map(|d| Some((d["subscriptionId"].as_str()?, d["name"].as_str().unwrap())))
        .collect();
    let owners: Vec<&str> = owned.iter().map(|(owner, _)| *owner).collect();
    assert_eq!(owners, subscriptions, "one document per subscription read");
    assert!(
        documents
            .iter()
            .any(|d| d["name"] == "chargeback.csv" && d["subscriptionId"].is_null())
    );

    let window = format!(
        "from={}&to={}",
        first_day.format("%Y-%m-%d"),
        (first_day + Days::new(1)).format("%Y-%m-%d")
    );
    for (subscription, name) in &owned {
        let tenant = host.token(Role::Tenant, &[subscription]).await;
        let listing = host
            .get(
                &format!("/v1/subscriptions/{subscription}/documents?{window}"),
                &tenant,
            )
            .await;
        assert_eq!(listing.status, StatusCode::OK, "{}", listing.body);
        let text = listing.body.to_string();
        for other in subscriptions.iter().filter(|other| other != subscription) {
            assert!(!text.contains(other.as_str()), "{other} in {text}");
        }
        let value = listing.body["value"].as_array().unwrap();
        assert_eq!(value.len(), 1, "{text}");
        let listed = &value[0];
        assert_eq!(listed["name"], *name);
        assert_eq!(listed["runId"], run["id"]);
        assert_eq!(listed["provenance"], run["provenance"]);

        // The tenant's bytes are the operator's, and the digest recorded.
        let link = listed["links"]["download"].as_str().unwrap();
        let theirs = host.get(link, &tenant).await;
        assert_eq!(theirs.status, StatusCode::OK, "{link}");
        let operators = host
            .get(
                &format!("{}/documents/{name}", run["url"].as_str().unwrap()),
                &host.operator,
            )
            .await;
        assert_eq!(theirs.body, operators.body);
        let bytes = theirs.body.as_str().unwrap().as_bytes();
        assert_eq!(listed["sha256"], sha256(bytes));

        // Another subscription's document, through this subscription: not found;
        // through the other's: forbidden.
        let (other, other_name) = owned.iter().find(|(o, _)| o != subscription).unwrap();
        let run_id = &run["id"];
        let mine = host
            .get(
                &format!(
                    "/v1/subscriptions/{subscription}/adapters/chargeback/runs/{run_id}/documents/{other_name}"
                ),
                &tenant,
            )
            .await;
        assert_eq!(
            (mine.status, mine.code()),
            (StatusCode::NOT_FOUND, "DocumentNotFound")
        );
        let theirs = host
            .get(
                &format!(
                    "/v1/subscriptions/{other}/adapters/chargeback/runs/{run_id}/documents/{other_name}"
                ),
                &tenant,
            )
            .await;
        assert_eq!(theirs.status, StatusCode::FORBIDDEN);
        let shared = host
            .get(
                &format!(
                    "/v1/subscriptions/{subscription}/adapters/chargeback/runs/{run_id}/documents/chargeback.csv"
                ),
                &tenant,
            )
            .await;
        assert_eq!(
            shared.status,
            StatusCode::NOT_FOUND,
            "the operator's document"
        );
    }

    // Published no more: the listing is empty, the download gone.
    let quiet = manifest.replace("publish_to_tenants = true\n", "");
    let (status, body) = send(&host, reqwest::Method::PUT, &quiet, &wasm).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["publishToTenants"], false);
    let (subscription, name) = owned[0];
    let tenant = host.token(Role::Tenant, &[subscription]).await;
    let listing = host
        .get(
            &format!("/v1/subscriptions/{subscription}/documents?{window}"),
            &tenant,
        )
        .await;
    assert_eq!(listing.body["value"], json!([]));
    let run_id = &run["id"];
    let gone = host
        .get(
            &format!("/v1/subscriptions/{subscription}/adapters/chargeback/runs/{run_id}/documents/{name}"),
            &tenant,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
