//! `POST /v1/adapters/{name}/verify` and `tally export verify`: the documents
//! of exported windows re-derived from the stored component, config and
//! usage, and compared byte for byte with what was published. Untouched
//! runs verify; a stored document altered behind the host's back is named
//! with where it first differs; usage altered behind its back changes the
//! usage digest and the documents. On SQLite, and on PostgreSQL with
//! `TALLY_TEST_BACKEND=postgres`.

use crate::support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::process::{Server, create_token, post_usage, tally};
use support::*;
use tally_usage_generator::Options;

fn component(name: &str) -> Vec<u8> {
    std::fs::read(component_path(name)).unwrap()
}

fn today() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// A manifest for `wasm`: daily windows from `start`, no lag, `extra` appended.
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

const CHARGEBACK: &str = "[config]\ncurrency = 'EUR'\ngroup_by_tag = 'cost-center'\n";

/// Installs `manifest` with `wasm` through `POST /v1/adapters`.
async fn install(host: &TestHost, manifest: &str, wasm: &[u8]) {
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
    assert_eq!(status, 201, "{body}");
}

/// A host with three days of usage of three subscriptions before today,
/// and `chargeback` (chargeback-csv) exported over them; returns its first day.
async fn exported_chargeback() -> (TestHost, DateTime<Utc>) {
    let host = TestHost::with_exports().await;
    let end = today() - Days::new(1);
    let options = Options {
        subscriptions: 3,
        days: 2,
        end,
        ..Options::default()
    };
    host.ingest(&reported_by_now(to_wire(&sample(&options))))
        .await;
    let first_day = end - Days::new(2);
    let rates = format!("rates = {{ '{VM_METER}' = 0.025, '{IP_METER}' = 0.005 }}\n");
    let wasm = component("chargeback-csv");
    let text = manifest(
        "chargeback",
        &wasm,
        first_day,
        &format!("{CHARGEBACK}{rates}"),
    );
    install(&host, &text, &wasm).await;
    wait_for_watermark(&host, "chargeback", today()).await;
    (host, first_day)
}

/// Waits until the installation's watermark reaches `until`.
async fn wait_for_watermark(host: &TestHost, name: &str, until: DateTime<Utc>) {
    let started = Instant::now();
    loop {
        let shown = host
            .get(&format!("/v1/adapters/{name}"), &host.operator)
            .await
            .body;
        let watermark: DateTime<Utc> = shown["watermark"].as_str().unwrap().parse().unwrap();
        if watermark >= until {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An operator's verification of `adapter` over `[from, to)`.
async fn verify(host: &TestHost, adapter: &str, from: &str, to: &str) -> Reply {
    let uri = format!("/v1/adapters/{adapter}/verify?from={from}&to={to}");
    host.call(Method::POST, &uri, Some(&host.operator), None)
        .await
}

/// A verification that answered, over the days from `first_day` to today.
async fn verified(host: &TestHost, adapter: &str, first_day: DateTime<Utc>) -> Value {
    let reply = verify(
        host,
        adapter,
        &first_day.date_naive().to_string(),
        &today().date_naive().to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn results(report: &Value) -> Vec<&str> {
    report["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["result"].as_str().unwrap())
        .collect()
}

/// Untouched runs verify: the same usage, the same documents, each window
/// by its published revision; the operator's documents and those that
/// belong to a subscription alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untouched_runs_verify() {
    let (host, first_day) = exported_chargeback().await;
    let report = verified(&host, "chargeback", first_day).await;
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["adapter"], "chargeback");
    assert_eq!(results(&report), ["match"; 3], "{report}");
    let run = host
        .get("/v1/adapters/chargeback/runs", &host.operator)
        .await
        .body;
    for window in report["windows"].as_array().unwrap() {
        assert!(window["reason"].is_null(), "{window}");
        let usage = &window["usage"];
        assert_eq!(usage["matches"], true, "{window}");
        assert_eq!(usage["recorded"], usage["now"]);
        assert_eq!(usage["recorded"].as_str().unwrap().len(), 64);
        assert_eq!(
            window["documents"],
            serde_json::json!([{"name": "chargeback.csv", "subscriptionId": null,
                "result": "match", "firstDifference": null}])
        );
        // The window's run, as the run list shows it.
        let shown = run
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == window["runId"])
            .unwrap();
        assert_eq!(shown["windowStart"], window["window"]["start"]);
    }

    // Documents that belong to subscriptions are verified with their owner.
    let hostile = component("hostile");
    let statements = manifest(
        "statements",
        &hostile,
        first_day,
        "[config]\nattack = 'append-for'\n",
    );
    install(&host, &statements, &hostile).await;
    wait_for_watermark(&host, "statements", today()).await;
    let report = verified(&host, "statements", first_day).await;
    assert_eq!(report["verified"], true, "{report}");
    let documents = &report["windows"][0]["documents"];
    assert_eq!(documents[0]["name"], "operator.txt", "{report}");
    assert!(documents[0]["subscriptionId"].is_null());
    let owner = documents[1]["subscriptionId"].as_str().unwrap();
    assert_eq!(documents[1]["name"], format!("statement-{owner}.txt"));
    assert_eq!(documents[1]["result"], "match");

    // A range with nothing exported verifies nothing.
    let earlier = first_day - Days::new(30);
    let reply = verify(
        &host,
        "chargeback",
        &earlier.date_naive().to_string(),
        &first_day.date_naive().to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["verified"], false);
    assert_eq!(reply.body["windows"], serde_json::json!([]));
}

/// A document altered in the database after it was published fails the
/// verification, naming the document and where it first differs; the
/// other windows still match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_altered_in_the_database_is_named() {
    let (host, first_day) = exported_chargeback().await;
    // The first window's CSV replaced by the second's, behind the host's back.
    let changed = host.data.execute(
        "UPDATE run_documents SET bytes = (SELECT d.bytes FROM run_documents d \
             WHERE d.run_id = (SELECT max(id) FROM export_runs)) \
         WHERE run_id = (SELECT min(id) FROM export_runs)",
    );
    assert_eq!(changed, 1);
    let report = verified(&host, "chargeback", first_day).await;
    assert_eq!(report["verified"], false, "{report}");
    assert_eq!(results(&report), ["mismatch", "match", "match"], "{report}");
    let window = &report["windows"][0];
    assert_eq!(window["usage"]["matches"], true, "{window}");
    assert_eq!(
        window["reason"], r#"documents differ: "chargeback.csv""#,
        "{window}"
    );
    let document = &window["documents"][0];
    assert_eq!(
        (&document["name"], &document["result"]),
        (&Value::from("chargeback.csv"), &Value::from("differs"))
    );
    // The header is the same; the first row's date is not.
    let at = &document["firstDifference"];
    assert_eq!(at["line"], 2, "{document}");
    assert!(at["offset"].as_u64().unwrap() > 0 && at["column"].as_u64().unwrap() >= 1);
}

/// Usage of a closed window altered in the database: the re-run reads other
/// rows, so the usage digest and the document differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_altered_in_the_database_changes_the_digest_and_the_documents() {
    let (host, first_day) = exported_chargeback().await;
    let last = today() - Days::new(1);
    let changed = host.data.execute(&format!(
        "UPDATE usage_daily SET quantity = quantity * 2 WHERE reported_day = {}",
        last.timestamp() / 86_400
    ));
    assert!(changed > 0);
    let report = verified(&host, "chargeback", first_day).await;
    assert_eq!(report["verified"], false, "{report}");
    assert_eq!(results(&report), ["match", "match", "mismatch"], "{report}");
    let window = &report["windows"][2];
    assert_eq!(
        window["window"]["start"],
        last.to_rfc3339().replace("+00:00", "Z")
    );
    let usage = &window["usage"];
    assert_eq!(usage["matches"], false, "{window}");
    assert_ne!(usage["recorded"], usage["now"]);
    assert_eq!(window["documents"][0]["result"], "differs", "{window}");
    assert_eq!(
        window["reason"],
        r#"the usage it read has changed; documents differ: "chargeback.csv""#
    );
}

/// What cannot be re-derived is said so, and a range is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_without_provenance_are_unverifiable_and_ranges_are_bounded() {
    let (host, first_day) = exported_chargeback().await;
    // As a run exported before provenance was kept reads.
    let changed = host.data.execute(
        "UPDATE export_runs SET world_version = NULL, component_sha256 = NULL, \
             config_sha256 = NULL, config_digest = NULL, granularity = NULL, usage_sha256 = NULL \
         WHERE id = (SELECT min(id) FROM export_runs)",
    );
    assert_eq!(changed, 1);
    let report = verified(&host, "chargeback", first_day).await;
    assert_eq!(
        results(&report),
        ["unverifiable", "match", "match"],
        "{report}"
    );
    assert_eq!(report["verified"], false);
    let reason = report["windows"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("before tally kept"), "{reason}");
    assert!(report["windows"][0]["usage"].is_null());

    let day = |d: DateTime<Utc>| d.date_naive().to_string();
    for (from, to, message) in [
        (
            day(today() - Days::new(400)),
            day(today()),
            "covers 400 windows; at most 366 per verification",
        ),
        (day(today()), day(first_day), "it must be after 'from'"),
        (
            day(first_day),
            "tomorrow".into(),
            "not an ISO-8601 time or date",
        ),
    ] {
        let reply = verify(&host, "chargeback", &from, &to).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        let text = reply.body["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{text}");
    }
    let reply = host
        .call(
            Method::POST,
            "/v1/adapters/chargeback/verify?from=2026-11-01",
            Some(&host.operator),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'to'")
    );
    let reply = verify(&host, "nobody", &day(first_day), &day(today())).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Operators only.
    let tenant = host.token(tally::auth::Role::Tenant, &["sub-a"]).await;
    let reply = host
        .call(
            Method::POST,
            &format!(
                "/v1/adapters/chargeback/verify?from={}&to={}",
                day(first_day),
                day(today())
            ),
            Some(&tenant),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // In the API's document, with its answer.
    let document = host.get("/openapi.json", &host.operator).await.body;
    let operation = &document["paths"]["/v1/adapters/{name}/verify"]["post"];
    assert_eq!(
        operation["tags"],
        serde_json::json!(["exports"]),
        "{operation}"
    );
    for status in ["200", "400", "403", "404"] {
        assert!(
            operation["responses"][status].is_object(),
            "{status}: {operation}"
        );
    }
    let schemas = &document["components"]["schemas"];
    for property in ["adapter", "from", "to", "verified", "windows"] {
        assert!(
            schemas["VerifyReport"]["properties"][property].is_object(),
            "{property}"
        );
    }
    for property in [
        "runId",
        "revision",
        "window",
        "result",
        "reason",
        "usage",
        "documents",
    ] {
        assert!(
            schemas["WindowCheck"]["properties"][property].is_object(),
            "{property}"
        );
    }
}

/// `tally export verify` prints a line per window and each differing
/// document with where it first differs, and fails unless verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_each_window_and_fails_unless_verified() {
    let dir = DataDir::new();
    let token = create_token(dir.path().to_str().unwrap(), "operator");
    let server = Server::start(dir.path());
    let host = ["--url", server.base.as_str(), "--token", token.trim()];
    let tally_on_host = |args: &[&str]| tally(&[args, &host[..]].concat());

    // Usage on two closed days, then both exported.
    let days = [today() - Days::new(2), today() - Days::new(1)];
    let records: Vec<Value> = days
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let at = |hour: u32| (*day + chrono::Duration::hours(hour.into())).to_rfc3339();
            reported(
                record(
                    "sub-a",
                    &format!("e{i}"),
                    VM_METER,
                    2.0 + i as f64,
                    &at(3),
                    &at(4),
                ),
                &at(5),
            )
        })
        .collect();
    post_usage(&reqwest::Client::new(), &server.base, &token, &records)
        .await
        .unwrap();
    let wasm = component("chargeback-csv");
    let rates = format!("rates = {{ '{VM_METER}' = 0.025 }}\n");
    let file = dir.path().join("chargeback.toml");
    std::fs::write(
        &file,
        manifest(
            "chargeback",
            &wasm,
            today(),
            &format!("{CHARGEBACK}{rates}"),
        ),
    )
    .unwrap();
    let component = component_path("chargeback-csv");
    let install = [
        "adapters",
        "install",
        file.to_str().unwrap(),
        "--component",
        component.to_str().unwrap(),
    ];
    assert!(tally_on_host(&install).status.success());
    let (from, to) = (
        days[0].date_naive().to_string(),
        today().date_naive().to_string(),
    );
    let exported = tally_on_host(&["export", "run", "chargeback", "--from", &from, "--to", &to]);
    assert!(exported.status.success(), "{exported:?}");

    let verify = [
        "export",
        "verify",
        "chargeback",
        "--from",
        &from,
        "--to",
        &to,
    ];
    let verified = tally_on_host(&verify);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{verified:?}");
    assert_eq!(stdout.matches("): match").count(), 2, "{stdout}");
    assert!(
        stdout.ends_with("verified: 2 of 2 windows match\n"),
        "{stdout}"
    );

    // The first window's CSV replaced by the second's, behind the host's back.
    let changed = dir.execute(
        "UPDATE run_documents SET bytes = (SELECT d.bytes FROM run_documents d \
             WHERE d.run_id = (SELECT max(id) FROM export_runs)) \
         WHERE run_id = (SELECT min(id) FROM export_runs)",
    );
    assert_eq!(changed, 1);
    let refused = tally_on_host(&verify);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stdout.contains(r#"): mismatch: documents differ: "chargeback.csv""#),
        "{stdout}"
    );
    assert!(
        stdout.contains("  chargeback.csv: differs at byte ")
            && stdout.contains("(line 2, column "),
        "{stdout}"
    );
    assert!(
        stderr.contains("not verified: 1 of 2 windows match"),
        "{stderr}"
    );
}
