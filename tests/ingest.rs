//! `POST /v1/usage`: idempotency, conflicts, validation, splitting, limits, auth.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;
use tally::api::Settings;
use tally::auth::Role;

const SUB: &str = "sub-ingest";

fn three_records() -> Vec<Value> {
    (0..3)
        .map(|i| {
            let start = format!("2026-10-01T0{i}:00:00Z");
            let end = format!("2026-10-01T0{}:00:00Z", i + 1);
            reported(
                record(SUB, &format!("e{i}"), VM_METER, 2.0, &start, &end),
                "2026-10-01T05:00:00Z",
            )
        })
        .collect()
}

async fn hourly_total(host: &TestHost) -> f64 {
    let uri = usage_uri(
        SUB,
        "2026-10-01T00:00:00Z",
        "2026-10-02T00:00:00Z",
        "Hourly",
    );
    let (rows, _) = host.list_all(&uri, &host.operator).await;
    rows.iter()
        .map(|r| r["properties"]["quantity"].as_f64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_retried_request_is_counted_once() {
    let host = TestHost::new().await;
    let first = host.ingest_as(&host.operator, &three_records()).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.counts(), (3, 0));

    let retry = host.ingest_as(&host.operator, &three_records()).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.counts(), (0, 3));
    assert_eq!(retry.body["duplicateIndexes"], json!([0, 1, 2]));
    assert_eq!(hourly_total(&host).await, 6.0);
}

#[tokio::test]
async fn a_duplicate_inside_one_request_is_counted_once() {
    let host = TestHost::new().await;
    let mut records = three_records();
    records.push(records[0].clone());
    let reply = host.ingest_as(&host.operator, &records).await;
    assert_eq!(
        (
            reply.body["accepted"].as_u64(),
            reply.body["duplicateIndexes"].clone()
        ),
        (Some(3), json!([3]))
    );
    assert_eq!(hourly_total(&host).await, 6.0);
}

#[tokio::test]
async fn the_same_event_with_other_content_is_a_conflict_and_nothing_of_the_request_is_stored() {
    let host = TestHost::new().await;
    host.ingest(&three_records()).await;
    let fresh = reported(
        record(
            SUB,
            "e9",
            VM_METER,
            1.0,
            "2026-10-01T03:00:00Z",
            "2026-10-01T04:00:00Z",
        ),
        "2026-10-01T05:00:00Z",
    );
    let mut changed = three_records()[1].clone();
    changed["quantity"] = json!(5.0);
    let reply = host
        .ingest_as(&host.operator, &[fresh.clone(), changed])
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code(), "UsageRecordConflict");
    assert_eq!(reply.body["error"]["details"][0]["index"], 1);
    assert_eq!(reply.body["error"]["details"][0]["field"], "eventId");
    assert_eq!(
        hourly_total(&host).await,
        6.0,
        "the fresh record of the refused request was not stored"
    );
    let again = host.ingest_as(&host.operator, &[fresh]).await;
    assert_eq!(again.body["accepted"], 1);
}

#[tokio::test]
async fn invalid_records_refuse_the_request_and_every_problem_is_listed() {
    let host = TestHost::new().await;
    let good = three_records()[0].clone();
    let mut negative = three_records()[1].clone();
    negative["quantity"] = json!(-1.5);
    let mut backwards = three_records()[2].clone();
    backwards["usageEndTime"] = json!("2026-09-30T00:00:00Z");
    let mut unknown_meter = good.clone();
    unknown_meter["meterId"] = json!("no-such-meter");
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("subscriptionId");
    let mut bad_time = good.clone();
    bad_time["usageStartTime"] = json!("yesterday");
    let mut wrong_type = good.clone();
    wrong_type["quantity"] = json!("two");
    let mut future = good.clone();
    future["usageStartTime"] = json!("2999-01-01T00:00:00Z");
    future["usageEndTime"] = json!("2999-01-01T01:00:00Z");
    future.as_object_mut().unwrap().remove("reportedTime");

    let records = [
        good,
        negative,
        backwards,
        unknown_meter,
        missing,
        bad_time,
        wrong_type,
        future,
    ];
    let reply = host.ingest_as(&host.operator, &records).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "InvalidUsageRecords");
    let problems: Vec<(u64, String)> = reply.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["index"].as_u64().unwrap(),
                d["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (1, "quantity"),
        (2, "usageEndTime"),
        (3, "meterId"),
        (4, "subscriptionId"),
        (5, "usageStartTime"),
        (6, "quantity"),
        (7, "usageEndTime"),
    ];
    assert_eq!(problems, expected.map(|(i, f)| (i, f.to_string())));
    assert_eq!(
        hourly_total(&host).await,
        0.0,
        "the valid record of the refused request was not stored"
    );
}

#[tokio::test]
async fn malformed_json_and_empty_requests_are_refused() {
    let host = TestHost::new().await;
    for body in ["[{\"eventId\": ", "{not json", "[]"] {
        let reply = host
            .call(
                Method::POST,
                "/v1/usage",
                Some(&host.reporter),
                Some(body.into()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            ["InvalidJson", "InvalidUsageRecords"].contains(&reply.code()),
            "{body}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn ndjson_is_accepted_line_by_line() {
    let host = TestHost::new().await;
    let body = three_records()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n\n");
    let reply = host
        .call(Method::POST, "/v1/usage", Some(&host.operator), Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["accepted"], 3);
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let host = TestHost::with_settings(Settings {
        max_body_bytes: 1_000,
        ..Settings::default()
    })
    .await;
    let records: Vec<Value> = (0..20).map(|_| three_records()[0].clone()).collect();
    let reply = host.ingest_as(&host.operator, &records).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "RequestBodyTooLarge");
}

#[tokio::test]
async fn a_record_spanning_hours_is_split_in_proportion_to_time() {
    let host = TestHost::new().await;
    // 10:30–12:15 is 105 minutes: 30 in hour 10, 60 in hour 11, 15 in hour 12.
    let spanning = reported(
        record(
            SUB,
            "span",
            VM_METER,
            105.0,
            "2026-10-01T10:30:00Z",
            "2026-10-01T12:15:00Z",
        ),
        "2026-10-01T13:00:00Z",
    );
    host.ingest(&[spanning]).await;
    let uri = usage_uri(
        SUB,
        "2026-10-01T00:00:00Z",
        "2026-10-02T00:00:00Z",
        "Hourly",
    );
    let (rows, _) = host.list_all(&uri, &host.operator).await;
    let parts: Vec<(String, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["properties"]["usageStartTime"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                r["properties"]["quantity"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            ("2026-10-01T10:00:00+00:00".to_string(), 30.0),
            ("2026-10-01T11:00:00+00:00".to_string(), 60.0),
            ("2026-10-01T12:00:00+00:00".to_string(), 15.0)
        ]
    );
}

#[tokio::test]
async fn meter_ids_match_ignoring_case_and_operators_extend_the_catalog() {
    let host = TestHost::new().await;
    let mut lower = three_records()[0].clone();
    lower["meterId"] = json!(VM_METER.to_lowercase());
    host.ingest(&[lower]).await;
    let uri = usage_uri(
        SUB,
        "2026-10-01T00:00:00Z",
        "2026-10-02T00:00:00Z",
        "Hourly",
    );
    let (rows, _) = host.list_all(&uri, &host.operator).await;
    assert_eq!(
        rows[0]["properties"]["meterId"], VM_METER,
        "served in the catalog's spelling"
    );
    assert_eq!(rows[0]["properties"]["meterName"], "Base VM Size Hours");

    let mut gpu = three_records()[1].clone();
    gpu["meterId"] = json!("gpu-hours");
    assert_eq!(
        host.ingest_as(&host.operator, &[gpu.clone()]).await.status,
        StatusCode::BAD_REQUEST
    );
    let meter =
        json!({"name": "GPU hours", "category": "Compute", "unit": "GPU hours"}).to_string();
    let put = host
        .call(
            Method::PUT,
            "/v1/meters/GPU-Hours",
            Some(&host.reporter),
            Some(meter.clone()),
        )
        .await;
    assert_eq!(
        put.status,
        StatusCode::FORBIDDEN,
        "only operators extend the catalog"
    );
    let put = host
        .call(
            Method::PUT,
            "/v1/meters/GPU-Hours",
            Some(&host.operator),
            Some(meter),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(
        host.ingest_as(&host.operator, &[gpu]).await.status,
        StatusCode::OK
    );
    let meters = host.get("/v1/meters", &host.reporter).await;
    assert_eq!(meters.body.as_array().unwrap().len(), 70);
}

#[tokio::test]
async fn ingest_needs_a_reporter_or_operator_token() {
    let host = TestHost::new().await;
    let body = Some(Value::from(three_records()).to_string());
    let anonymous = host
        .call(Method::POST, "/v1/usage", None, body.clone())
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(
        anonymous.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let forged = host
        .call(Method::POST, "/v1/usage", Some("tly_forged"), body.clone())
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.code(), "InvalidAuthenticationToken");
    let tenant = host.token(Role::Tenant, &[SUB]).await;
    let by_tenant = host
        .call(Method::POST, "/v1/usage", Some(&tenant), body)
        .await;
    assert_eq!(by_tenant.status, StatusCode::FORBIDDEN);

    // A reporter may not backfill reported times; without them the host stamps now.
    let backfill = host.ingest_as(&host.reporter, &three_records()).await;
    assert_eq!(backfill.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        backfill.body["error"]["details"][0]["field"],
        "reportedTime"
    );
    let live: Vec<Value> = three_records()
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("reportedTime");
            r
        })
        .collect();
    let reply = host.ingest_as(&host.reporter, &live).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stamped =
        chrono::DateTime::parse_from_rfc3339(reply.body["reportedTime"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - stamped.to_utc()).num_seconds().abs() < 60);
}

#[tokio::test]
async fn health_is_open_metrics_count_ingest_for_operators() {
    let host = TestHost::new().await;
    host.ingest(&three_records()).await;
    let health = host.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    assert_eq!(
        host.call(Method::GET, "/metrics", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        host.get("/metrics", &host.reporter).await.status,
        StatusCode::FORBIDDEN
    );
    let metrics = host.get("/metrics", &host.operator).await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("tally_usage_records_accepted_total 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "tally_http_requests_total{method=\"POST\",route=\"/v1/usage\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("tally_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert_eq!(
        host.call(Method::GET, "/openapi.json", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let openapi = host.get("/openapi.json", &host.reporter).await;
    let paths = openapi.body["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/usage"));
    assert!(paths.contains_key(
        "/subscriptions/{subscriptionId}/providers/Microsoft.Commerce/UsageAggregates"
    ));
}
