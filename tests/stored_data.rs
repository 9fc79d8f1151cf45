//! Stored data that no longer reads back is answered with an error that
//! names it and says a retry will not help (not a 503 "retry"), and the rest
//! of the host keeps working.

use crate::support;

use axum::http::{Method, StatusCode};
use chrono::{Days, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::*;

/// A chargeback manifest named `name`, its windows starting today (nothing
/// is queued by itself).
fn manifest(name: &str, wasm: &[u8]) -> String {
    let sha256: String = Sha256::digest(wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    format!(
        "name = '{name}'\nversion = '0.1.0'\nworld = 'tally:billing@{}'\nsha256 = '{sha256}'\n\
         [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n\
         [config]\ncurrency = 'EUR'\ngroup_by_tag = 'cost-center'\nrates = {{ '{VM_METER}' = 0.5 }}\n",
        world_of(wasm),
        today.to_rfc3339()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_manifest_or_run_that_no_longer_reads_is_named_and_the_rest_works() {
    let host = TestHost::with_exports().await;
    let exports = host.exports.clone().unwrap();
    let wasm = std::fs::read(component_path("chargeback-csv")).unwrap();
    for name in ["good", "broken"] {
        exports
            .install(&manifest(name, &wasm), Some(wasm.clone()))
            .await
            .unwrap();
    }
    // A run of each, finished.
    let yesterday = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        - Days::new(1);
    let window =
        json!({"from": yesterday.to_rfc3339(), "to": (yesterday + Days::new(1)).to_rfc3339()});
    for name in ["good", "broken"] {
        let runs_uri = format!("/v1/adapters/{name}/runs");
        let requested = host
            .call(
                Method::POST,
                &runs_uri,
                Some(&host.operator),
                Some(window.to_string()),
            )
            .await;
        assert_eq!(requested.status, StatusCode::ACCEPTED, "{}", requested.body);
        let started = std::time::Instant::now();
        while host.get(&runs_uri, &host.operator).await.body[0]["status"] != "succeeded" {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the run never finished"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let runs_uri = "/v1/adapters/broken/runs";

    // Behind the host's back: a manifest an older host would have taken
    // (its world is no version), and run figures that are not JSON.
    let changed = host.data.execute(&format!(
        "UPDATE adapter_installations \
         SET manifest = replace(manifest, 'tally:billing@{}', 'tally:billing@1') \
         WHERE name = 'broken'",
        world_of(&wasm)
    ));
    assert_eq!(changed, 1);
    assert_eq!(
        host.data.execute(
            "UPDATE export_runs SET figures = '{\"rowsRead\": ' WHERE installation_id = \
             (SELECT id FROM adapter_installations WHERE name = 'good')"
        ),
        1
    );

    // The installation and a run request: 409, naming it and the way out.
    let shown = host.get("/v1/adapters/broken", &host.operator).await;
    assert_eq!(shown.status, StatusCode::CONFLICT, "{}", shown.body);
    assert_eq!(shown.code(), "InvalidStoredManifest");
    let message = shown.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("adapter 'broken'"), "{message}");
    assert!(message.contains("tally:billing@1"), "{message}");
    assert!(message.contains("Upgrade the adapter"), "{message}");
    let requested = host
        .call(
            Method::POST,
            runs_uri,
            Some(&host.operator),
            Some(window.to_string()),
        )
        .await;
    assert_eq!(requested.status, StatusCode::CONFLICT, "{}", requested.body);
    assert_eq!(requested.code(), "InvalidStoredManifest");

    // Its runs too: the service reads an installation with its manifest.
    let runs = host.get(runs_uri, &host.operator).await;
    assert_eq!(runs.status, StatusCode::CONFLICT, "{}", runs.body);
    assert_eq!(runs.code(), "InvalidStoredManifest");

    // The other installation answers as before, but for its run whose
    // figures no longer read: 500, naming the value, not a 503 to retry.
    let good = host.get("/v1/adapters/good", &host.operator).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    let good_runs = host.get("/v1/adapters/good/runs", &host.operator).await;
    assert_eq!(
        good_runs.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        good_runs.body
    );
    assert_eq!(good_runs.code(), "StoredDataCorrupt");
    assert!(good_runs.headers.get("retry-after").is_none());
    let message = good_runs.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("stored run figures"), "{message}");

    // The usage API answers as before.
    let usage = host
        .get(
            &provider_uri("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "Daily"),
            &host.operator,
        )
        .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);

    // An upgrade with a valid manifest is the way out.
    exports
        .upgrade("broken", &manifest("broken", &wasm), None)
        .await
        .unwrap();
    let shown = host.get("/v1/adapters/broken", &host.operator).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
}
