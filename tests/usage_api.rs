//! The Azure-compatible usage API: error codes, reported-time windows, paging,
//! tenant isolation.

use crate::support;

use std::collections::{BTreeMap, HashSet};

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::*;
use tally::auth::Role;
use tally_usage_generator::Options;

const A: &str = "sub-a";
const B: &str = "sub-b";
const PROVIDER: &str =
    "/subscriptions/default-provider/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates";

fn hour(h: u32) -> String {
    format!("2026-10-01T{h:02}:00:00Z")
}

/// Two subscriptions with a little usage each, reported on time.
async fn two_tenants() -> TestHost {
    let host = TestHost::new().await;
    let mut records = Vec::new();
    for (sub, quantity) in [(A, 1.0), (B, 10.0)] {
        for h in 0..4 {
            let r = record(
                sub,
                &format!("vm-{h}"),
                VM_METER,
                quantity,
                &hour(h),
                &hour(h + 1),
            );
            records.push(reported(r, &hour(h + 1)));
        }
    }
    host.ingest(&records).await;
    host
}

#[tokio::test]
async fn every_documented_error_code() {
    let host = two_tenants().await;
    let op = host.operator.clone();
    let tenant = format!("/subscriptions/{A}/providers/Microsoft.Commerce/UsageAggregates");
    let window = "reportedStartTime=2026-10-01T00:00:00Z&reportedEndTime=2026-10-02T00:00:00Z";
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("{tenant}?{window}"), "NoApiVersion", ""),
        (
            format!("{tenant}?{window}&api-version=2099-01-01"),
            "InvalidProperty",
            "api-version",
        ),
        (
            format!("{tenant}?reportedEndTime=2026-10-02T00:00:00Z&{API}"),
            "InvalidProperty",
            "reportedStartTime",
        ),
        (
            format!("{tenant}?reportedStartTime=2026-10-01T00:00:00Z&{API}"),
            "InvalidProperty",
            "reportedEndTime",
        ),
        (
            format!("{tenant}?reportedStartTime=noon&reportedEndTime=2026-10-02T00:00:00Z&{API}"),
            "InvalidProperty",
            "reportedStartTime",
        ),
        (
            format!(
                "{tenant}?reportedStartTime=2026-10-01T00:30:00Z&reportedEndTime=2026-10-02T00:00:00Z&aggregationGranularity=Hourly&{API}"
            ),
            "InvalidProperty",
            "reportedStartTime",
        ),
        (
            format!(
                "{tenant}?reportedStartTime=2026-10-01T00:00:00Z&reportedEndTime=2026-10-01T05:00:00Z&aggregationGranularity=Daily&{API}"
            ),
            "InvalidProperty",
            "reportedEndTime",
        ),
        (
            format!(
                "{tenant}?reportedStartTime=2026-10-02T00:00:00Z&reportedEndTime=2026-10-01T00:00:00Z&{API}"
            ),
            "InvalidProperty",
            "reportedEndTime",
        ),
        (
            format!("{tenant}?{window}&showDetails=maybe&{API}"),
            "InvalidProperty",
            "showDetails",
        ),
        (
            format!("{tenant}?{window}&continuationToken=bogus&{API}"),
            "InvalidProperty",
            "continuationToken",
        ),
        (
            format!(
                "{tenant}?reportedStartTime=2026-10-01T00:00:00Z&reportedEndTime=2999-01-01T00:00:00Z&{API}"
            ),
            "RequestEndTimeIsInFuture",
            "",
        ),
        (
            format!("{tenant}?{window}&aggregationGranularity=Weekly&{API}"),
            "InvalidAggregationGranularity",
            "",
        ),
        (
            format!("{PROVIDER}?{window}&subscriberId=sub-nobody&{API}"),
            "SubscriberIdIsNotDirectTenant",
            "",
        ),
        (
            format!(
                "/subscriptions/%20/providers/Microsoft.Commerce/UsageAggregates?{window}&{API}"
            ),
            "SubscriptionIdMissingInRequest",
            "",
        ),
        (
            format!("/subscriptions//providers/Microsoft.Commerce/UsageAggregates?{window}&{API}"),
            "SubscriptionIdMissingInRequest",
            "",
        ),
    ];
    for (uri, code, property) in cases {
        let reply = host.get(&uri, &op).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            reply.body
        );
        assert_eq!(reply.code(), code, "{uri}: {}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(property),
            "{uri}: the message names '{property}': {message}"
        );
    }
}

#[tokio::test]
async fn granularity_and_paths_are_case_insensitive_and_daily_is_the_default() {
    let host = two_tenants().await;
    let window = "reportedStartTime=2026-10-01T00:00:00Z&reportedEndTime=2026-10-02T00:00:00Z";
    let lower = format!(
        "/subscriptions/{A}/providers/microsoft.commerce/usageaggregates?{window}&aggregationgranularity=hOuRlY&{API}"
    );
    let reply = host.get(&lower, &host.operator).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["value"].as_array().unwrap().len(), 4);
    let daily = host
        .get(
            &format!(
                "/subscriptions/{A}/providers/Microsoft.Commerce/UsageAggregates?{window}&{API}"
            ),
            &host.operator,
        )
        .await;
    let rows = daily.body["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["properties"]["usageEndTime"],
        "2026-10-02T00:00:00+00:00"
    );
    assert_eq!(rows[0]["type"], "Microsoft.Commerce/UsageAggregate");
    assert!(daily.body.get("nextLink").is_none_or(Value::is_null));
}

#[tokio::test]
async fn late_data_lands_in_the_later_reported_window_only() {
    let host = TestHost::new().await;
    // Used 02:00–03:00, reported at 07:20: five hours late.
    let late = reported(
        record(A, "late", VM_METER, 4.0, &hour(2), &hour(3)),
        "2026-10-01T07:20:00Z",
    );
    host.ingest(&[late]).await;
    let quantity_in = |start: u32, end: u32| {
        let uri = usage_uri(A, &hour(start), &hour(end), "Hourly");
        let host = &host;
        async move { host.list_all(&uri, &host.operator).await.0 }
    };
    assert!(
        quantity_in(2, 3).await.is_empty(),
        "not in the window of its usage hour"
    );
    assert!(
        quantity_in(0, 7).await.is_empty(),
        "not in any window before it was reported"
    );
    let rows = quantity_in(7, 8).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["properties"]["usageStartTime"],
        "2026-10-01T02:00:00+00:00"
    );
    assert_eq!(rows[0]["properties"]["quantity"], 4.0);
}

#[tokio::test]
async fn daily_rows_are_the_sum_of_hourly_rows() {
    let (host, records) = TestHost::with_sample(Options {
        subscriptions: 2,
        days: 3,
        ..Options::default()
    })
    .await;
    let sub = &records[0].subscription_id;
    let (start, end) = ("2026-10-28T00:00:00Z", "2026-11-03T00:00:00Z");
    let (hourly, _) = host
        .list_all(&usage_uri(sub, start, end, "Hourly"), &host.operator)
        .await;
    let (daily, _) = host
        .list_all(&usage_uri(sub, start, end, "Daily"), &host.operator)
        .await;
    let per_day_and_instance = |rows: &[Value]| {
        let mut sums: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        for row in rows {
            let p = &row["properties"];
            let key = (
                p["usageStartTime"].as_str().unwrap()[..10].to_string(),
                p["meterId"].to_string(),
                p["instanceData"].to_string(),
            );
            *sums.entry(key).or_default() += p["quantity"].as_f64().unwrap();
        }
        sums
    };
    let (from_hours, days) = (per_day_and_instance(&hourly), per_day_and_instance(&daily));
    assert_eq!(from_hours.len(), days.len());
    for (key, sum) in &from_hours {
        assert!(
            (days[key] - sum).abs() < 1e-9,
            "{key:?}: daily {} vs hourly sum {sum}",
            days[key]
        );
    }
}

#[tokio::test]
async fn paging_returns_every_row_exactly_once_with_absolute_url_safe_links() {
    let (host, records) = TestHost::with_sample(Options {
        subscriptions: 3,
        days: 4,
        ..Options::default()
    })
    .await;
    let (start, end) = ("2026-10-27T00:00:00Z", "2026-11-03T00:00:00Z");
    let first = host
        .get(&provider_uri(start, end, "Hourly"), &host.operator)
        .await;
    let link = first.body["nextLink"].as_str().expect("more than one page");
    assert!(
        link.starts_with("http://tally.test/subscriptions/default-provider/"),
        "{link}"
    );
    let token = url::Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "continuationToken")
        .unwrap()
        .1
        .into_owned();
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    assert_eq!(first.body["value"].as_array().unwrap().len(), 1_000);

    let uri = provider_uri(start, end, "Hourly");
    let (rows, pages) = host.list_all(&uri, &host.operator).await;
    assert!(pages > 3);
    let names: HashSet<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), rows.len(), "no row twice");
    assert_eq!(rows[0]["type"], "Microsoft.Commerce.Admin/UsageAggregate");
    assert_totals_eq(&totals_by_meter(&rows), &ingested_totals(&records));
}

#[tokio::test]
async fn paging_stays_exact_while_usage_keeps_arriving() {
    let (host, records) = TestHost::with_sample(Options {
        subscriptions: 2,
        days: 3,
        ..Options::default()
    })
    .await;
    let (start, end) = ("2026-10-29T00:00:00Z", "2026-11-02T00:00:00Z");
    let uri = provider_uri(start, end, "Hourly");
    let (before, _) = host.list_all(&uri, &host.operator).await;

    // Page through again, ingesting live usage (reported now, into the same
    // subscriptions and usage hours) between every two pages.
    let mut rows = Vec::new();
    let mut next = Some(uri.clone());
    let mut round = 0;
    while let Some(page) = next {
        let reply = host.get(&page, &host.operator).await;
        rows.extend(reply.body["value"].as_array().unwrap().iter().cloned());
        next = reply.body["nextLink"]
            .as_str()
            .map(|l| l.trim_start_matches("http://tally.test").to_string());
        let live: Vec<Value> = records
            .iter()
            .take(50)
            .map(|r| {
                let mut w = serde_json::to_value(r).unwrap();
                w["eventId"] = json!(format!("live-{round}-{}", r.event_id));
                w.as_object_mut().unwrap().remove("reportedTime");
                w
            })
            .collect();
        assert_eq!(
            host.ingest_as(&host.reporter, &live).await.status,
            StatusCode::OK
        );
        round += 1;
    }
    assert!(round > 2);
    assert_eq!(rows, before, "the same rows, none lost or repeated");
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_subscriptions() {
    let host = two_tenants().await;
    let tenant = host.token(Role::Tenant, &[A]).await;
    let (start, end) = ("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z");

    let own = host
        .list_all(&usage_uri(A, start, end, "Hourly"), &tenant)
        .await
        .0;
    assert_eq!(own.len(), 4);
    assert!(own.iter().all(|r| r["properties"]["subscriptionId"] == A));
    // The id is matched ignoring case, and still only A's rows come back.
    let upper = host
        .list_all(&usage_uri(&A.to_uppercase(), start, end, "Hourly"), &tenant)
        .await
        .0;
    assert_eq!(upper.len(), 4);

    let other = host.get(&usage_uri(B, start, end, "Hourly"), &tenant).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(other.code(), "AuthorizationFailed");
    let provider = host
        .get(
            &format!("{PROVIDER}?reportedStartTime={start}&reportedEndTime={end}&{API}"),
            &tenant,
        )
        .await;
    assert_eq!(provider.status, StatusCode::FORBIDDEN);
    // subscriberId means nothing on the tenant API.
    let sneaky = host
        .list_all(
            &format!("{}&subscriberId={B}", usage_uri(A, start, end, "Hourly")),
            &tenant,
        )
        .await
        .0;
    assert!(
        sneaky
            .iter()
            .all(|r| r["properties"]["subscriptionId"] == A)
    );

    // A continuation token issued for another query (here: B's rows, to the
    // operator) is refused rather than followed.
    let small = TestHost::with_settings(tally::api::Settings {
        page_size: 2,
        ..support::settings()
    })
    .await;
    let t = small.token(Role::Tenant, &[A]).await;
    let mut records = Vec::new();
    for (sub, q) in [(A, 1.0), (B, 10.0)] {
        for h in 0..4 {
            records.push(reported(
                record(sub, &format!("e{h}"), VM_METER, q, &hour(h), &hour(h + 1)),
                &hour(h + 1),
            ));
        }
    }
    small.ingest(&records).await;
    let operator_page = small
        .get(&usage_uri(B, start, end, "Hourly"), &small.operator)
        .await;
    let link = operator_page.body["nextLink"].as_str().unwrap();
    let token = url::Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "continuationToken")
        .unwrap()
        .1
        .into_owned();
    let replay = small
        .get(
            &format!(
                "{}&continuationToken={token}",
                usage_uri(A, start, end, "Hourly")
            ),
            &t,
        )
        .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.code(), "InvalidProperty");
    // And paging A with two rows a page still yields A's four rows only.
    let paged = small
        .list_all(&usage_uri(A, start, end, "Hourly"), &t)
        .await;
    assert_eq!((paged.0.len(), paged.1), (4, 2));
    assert!(
        paged
            .0
            .iter()
            .all(|r| r["properties"]["subscriptionId"] == A)
    );

    let reporter = host
        .get(&usage_uri(A, start, end, "Hourly"), &host.reporter)
        .await;
    assert_eq!(reporter.status, StatusCode::FORBIDDEN);
    let anonymous = host
        .call(
            axum::http::Method::GET,
            &usage_uri(A, start, end, "Hourly"),
            None,
            None,
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_provider_api_lists_all_subscribers_or_one() {
    let host = two_tenants().await;
    let window = "reportedStartTime=2026-10-01T00:00:00Z&reportedEndTime=2026-10-02T00:00:00Z&aggregationGranularity=Hourly";
    let (all, _) = host
        .list_all(&format!("{PROVIDER}?{window}&{API}"), &host.operator)
        .await;
    let subs: HashSet<&str> = all
        .iter()
        .map(|r| r["properties"]["subscriptionId"].as_str().unwrap())
        .collect();
    assert_eq!(subs, HashSet::from([A, B]));
    let (only_b, _) = host
        .list_all(
            &format!("{PROVIDER}?{window}&subscriberId={B}&{API}"),
            &host.operator,
        )
        .await;
    assert_eq!(only_b.len(), 4);
    assert!(only_b.iter().all(|r| r["properties"]["quantity"] == 10.0));
    assert!(
        only_b[0]["id"]
            .as_str()
            .unwrap()
            .starts_with("/subscriptions/default-provider/providers/Microsoft.Commerce.Admin/")
    );
}

#[tokio::test]
async fn without_details_instances_are_summed_per_meter() {
    let host = TestHost::new().await;
    let mut records = Vec::new();
    for vm in 0..3 {
        let mut r = record(A, &format!("vm{vm}"), VM_METER, 2.0, &hour(1), &hour(2));
        r["resourceUri"] = json!(format!("/subscriptions/{A}/vm{vm}"));
        records.push(reported(r, &hour(2)));
    }
    host.ingest(&records).await;
    let uri = usage_uri(A, &hour(0), &hour(5), "Hourly");
    let (detailed, _) = host.list_all(&uri, &host.operator).await;
    assert_eq!(detailed.len(), 3);
    let (summed, _) = host
        .list_all(&format!("{uri}&showDetails=false"), &host.operator)
        .await;
    assert_eq!(summed.len(), 1);
    assert_eq!(summed[0]["properties"]["quantity"], 6.0);
    assert!(summed[0]["properties"].get("instanceData").is_none());
}

/// A page as an Azure client reads it, every field, to be written again with `serde_json`.
#[derive(serde::Deserialize, serde::Serialize)]
struct ClientPage {
    value: Vec<ClientRow>,
    #[serde(rename = "nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct ClientRow {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    properties: ClientSample,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientSample {
    subscription_id: String,
    meter_id: String,
    usage_start_time: String,
    usage_end_time: String,
    quantity: f64,
    unit: String,
    meter_name: String,
    meter_category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    meter_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_data: Option<String>,
}

#[tokio::test]
async fn pages_are_the_bytes_serde_json_writes_for_their_values() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let host = TestHost::new().await;
    let texts = [
        "quote\" back\\slash",
        "</script><script>alert(1)</script>",
        "control\t\n\r\u{1}\u{1f}\u{7f} end",
        "café \u{2028} Straße 東京 😀",
    ];
    // Sums kept where serde_json (the client here) parses digits exactly.
    let quantities = [0.0, -0.0, 1e-9, 0.1, 9.5e14, 123_456_789.125];
    let sub = "sub-\"quoted\"-<b>-é😀";
    let mut records = Vec::new();
    for (n, quantity) in quantities.into_iter().enumerate() {
        let text = texts[n % texts.len()];
        let meter = [VM_METER, IP_METER][n % 2];
        let mut r = record(sub, &format!("e{n}"), meter, quantity, &hour(1), &hour(2));
        r["resourceUri"] = json!(format!(
            "/subscriptions/{sub}/vm-{n}-{}",
            text.replace(char::is_control, "")
        ));
        r["tags"] = json!({ "cost-center": text, text: text });
        r["additionalInfo"] = json!({ "note": text });
        records.push(reported(r, &hour(2)));
    }
    host.ingest(&records).await;
    let mut settings = host.settings.clone();
    settings.page_size = 4;
    let app = tally::api::router(tally::api::AppState::new(host.store.clone(), settings));
    let escaped_sub = url::form_urlencoded::byte_serialize(sub.as_bytes()).collect::<String>();
    for details in ["true", "false"] {
        let mut next = Some(format!(
            "{}&showDetails={details}",
            usage_uri(&escaped_sub, &hour(0), &hour(5), "Hourly")
        ));
        let mut rows = 0;
        while let Some(uri) = next {
            let request = axum::http::Request::builder()
                .uri(&uri)
                .header("host", "tally.test")
                .header("authorization", format!("Bearer {}", host.operator))
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "application/json");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let page: ClientPage = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                String::from_utf8(serde_json::to_vec(&page).unwrap()).unwrap(),
                String::from_utf8(body.to_vec()).unwrap()
            );
            rows += page.value.len();
            next = (page.next_link.as_deref())
                .map(|link| link.strip_prefix("http://tally.test").unwrap().to_owned());
        }
        assert_eq!(rows, if details == "true" { 6 } else { 2 });
    }
}

/// One request through the router with the given `Host` header (and an optional body).
async fn call_as_host(
    app: &axum::Router,
    method: axum::http::Method,
    uri: &str,
    host: &str,
    token: &str,
    body: Option<(&str, &str)>,
) -> Reply {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .header("authorization", format!("Bearer {token}"));
    if let Some((content_type, _)) = body {
        request = request.header("content-type", content_type);
    }
    let body = body.map_or_else(axum::body::Body::empty, |(_, text)| {
        axum::body::Body::from(text.to_owned())
    });
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn next_links_are_built_on_the_host_s_own_names_only() {
    let (start, end) = ("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z");
    let records: Vec<Value> = (0..3)
        .map(|h| {
            reported(
                record(A, &format!("e{h}"), VM_METER, 1.0, &hour(h), &hour(h + 1)),
                &hour(h + 1),
            )
        })
        .collect();
    let uri = usage_uri(A, start, end, "Hourly");

    // Without public_url: a Host the host answers to, else a refusal.
    let host = TestHost::with_settings(tally::api::Settings {
        page_size: 1,
        ..support::settings()
    })
    .await;
    host.ingest(&records).await;
    let page = host.get(&uri, &host.operator).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let link = page.body["nextLink"].as_str().unwrap();
    assert!(
        link.starts_with("http://tally.test/subscriptions/"),
        "{link}"
    );
    for forged in [
        "attacker.example",
        "tally.test.attacker.example",
        "tally.test:8080",
        "",
    ] {
        let reply = call_as_host(
            &host.app,
            axum::http::Method::GET,
            &uri,
            forged,
            &host.operator,
            None,
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{forged}: {}",
            reply.body
        );
        assert_eq!(reply.code(), "InvalidHost");
        assert!(!reply.body.to_string().contains("nextLink"));
    }

    // With public_url: every link on it, whatever the Host says.
    let public = TestHost::with_settings(tally::api::Settings {
        page_size: 1,
        public_url: Some("https://usage.example/".parse().unwrap()),
        allowed_hosts: Vec::new(),
        ..Default::default()
    })
    .await;
    public.ingest(&records).await;
    let reply = call_as_host(
        &public.app,
        axum::http::Method::GET,
        &uri,
        "attacker.example",
        &public.operator,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let link = reply.body["nextLink"].as_str().unwrap();
    assert!(
        link.starts_with("https://usage.example/subscriptions/"),
        "{link}"
    );
}

/// A host listening on `0.0.0.0` with neither `public_url` nor
/// `allowed_hosts` knows none of its names: a one-page answer needs no link
/// and is served; a longer one is refused with what the operator must set.
#[tokio::test]
async fn without_known_names_one_page_answers_are_served_and_longer_ones_say_what_to_set() {
    let records: Vec<Value> = (0..3)
        .map(|h| {
            reported(
                record(A, &format!("e{h}"), VM_METER, 1.0, &hour(h), &hour(h + 1)),
                &hour(h + 1),
            )
        })
        .collect();
    let uri = usage_uri(A, "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "Hourly");
    for page_size in [tally::api::PAGE_SIZE, 1] {
        let host = TestHost::with_settings(tally::api::Settings {
            page_size,
            allowed_hosts: Vec::new(),
            ..Default::default()
        })
        .await;
        host.ingest(&records).await;
        let reply = call_as_host(
            &host.app,
            axum::http::Method::GET,
            &uri,
            "10.0.0.5:8080",
            &host.operator,
            None,
        )
        .await;
        if page_size == 1 {
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
            assert_eq!(reply.code(), "InvalidHost");
            let message = reply.body["error"]["message"].as_str().unwrap();
            for hint in ["public_url", "[http] allowed_hosts", "'10.0.0.5:8080'"] {
                assert!(message.contains(hint), "{hint}: {message}");
            }
        } else {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            assert_eq!(reply.body["value"].as_array().unwrap().len(), 3);
            assert!(reply.body.get("nextLink").is_none_or(Value::is_null));
        }
    }
}

#[tokio::test]
async fn made_up_methods_add_no_metrics_series() {
    let host = TestHost::new().await;
    for i in 0..300 {
        let method = axum::http::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let reply = host.call(method, "/v1/meters", None, None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    let metrics = host.get("/metrics", &host.operator).await;
    let text = metrics.body.as_str().unwrap();
    let series = text
        .lines()
        .filter(|line| line.starts_with("tally_http_requests_total{"))
        .count();
    // The 300 requests in one series (this GET /metrics is counted once answered).
    assert_eq!(series, 1, "{text}");
    assert!(
        text.contains(
            r#"tally_http_requests_total{method="other",route="/v1/meters",status="405"} 300"#
        ),
        "{text}"
    );
    assert!(text.len() < 16 * 1024, "{} bytes", text.len());
}

#[tokio::test]
async fn malformed_requests_get_arm_errors_and_every_status_is_documented() {
    use axum::http::Method;
    let host = TestHost::new().await;
    /// A content type and a body.
    type Body<'a> = Option<(&'a str, &'a str)>;
    let provider_bell = format!("{PROVIDER}?{API}&subscriberId=%07");
    let cases: [(Method, &str, Body, StatusCode); 9] = [
        (
            Method::GET,
            "/v1/adapters/x/runs?limit=-8116",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/adapters/x/runs/1.02e-127",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/adapters/x/documents/d?from=a&from=b&to=%ZZ",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/adapters",
            Some(("multipart/form-data", "x")),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/adapters",
            Some(("application/json", "{}")),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            "/v1/meters",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/nowhere", None, StatusCode::NOT_FOUND),
        // A NUL or a bell in an id: a 400 on both backends (PostgreSQL answered 503).
        (
            Method::GET,
            "/v1/adapters/a%00b",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, &provider_bell, None, StatusCode::BAD_REQUEST),
    ];
    for (method, uri, body, status) in cases {
        let reply = call_as_host(
            &host.app,
            method.clone(),
            uri,
            "tally.test",
            &host.operator,
            body,
        )
        .await;
        assert_eq!(reply.status, status, "{method} {uri}: {}", reply.body);
        let content_type = reply.headers["content-type"].to_str().unwrap();
        assert_eq!(content_type, "application/json", "{method} {uri}");
        assert!(!reply.code().is_empty(), "{method} {uri}: {}", reply.body);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {uri}: {}",
            reply.body
        );
    }
    let not_allowed = host.call(Method::DELETE, "/v1/meters", None, None).await;
    assert_eq!(not_allowed.code(), "MethodNotAllowed");
    assert!(not_allowed.headers.contains_key("allow"));

    // The document names these answers: 401 wherever a token is needed,
    // 400 wherever a path, query or body can be malformed, 503 everywhere.
    let document = host.get("/openapi.json", &host.operator).await.body;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let id = format!("{method} {path}");
            assert!(responses.contains_key("503"), "{id}");
            if operation.get("security").is_some() {
                assert!(responses.contains_key("401"), "{id}");
            }
            if operation.get("parameters").is_some() || operation.get("requestBody").is_some() {
                assert!(responses.contains_key("400"), "{id}");
            }
        }
    }
}

/// Issue 10, finding 6: ids in the URL with blanks or control characters are
/// refused (never trimmed into another subscription; NUL never a 503 on
/// PostgreSQL), and so are times outside the years 2000 to 9999.
#[tokio::test]
async fn poison_ids_and_years_in_the_url_are_refused_with_a_400() {
    let host = two_tenants().await;
    let op = host.operator.clone();
    let window = "reportedStartTime=2026-10-01T00:00:00Z&reportedEndTime=2026-10-02T00:00:00Z";
    let tenant_api = |sub: &str| {
        format!("/subscriptions/{sub}/providers/Microsoft.Commerce/UsageAggregates?{window}&{API}")
    };
    // Blanks reach the handler, which names the property; a control character
    // anywhere in a URL is refused at the edge, before any route.
    let cases: Vec<(String, &str)> = vec![
        (tenant_api("%20sub-a"), "subscriptionId"),
        (tenant_api("sub-a%09"), "control character"),
        (tenant_api("sub%00-a"), "control character"),
        (
            format!("{PROVIDER}?{window}&subscriberId=%20sub-a&{API}"),
            "subscriberId",
        ),
        (
            format!("{PROVIDER}?{window}&subscriberId=sub-a%00&{API}"),
            "control character",
        ),
        (
            format!(
                "/subscriptions/{A}/providers/Microsoft.Commerce/UsageAggregates?reportedStartTime=%2B262142-01-01T00:00:00Z&reportedEndTime=2026-10-02T00:00:00Z&{API}"
            ),
            "reportedStartTime",
        ),
        (
            format!(
                "/subscriptions/{A}/providers/Microsoft.Commerce/UsageAggregates?reportedStartTime=-262000-01-01T00:00:00Z&reportedEndTime=2026-10-02T00:00:00Z&{API}"
            ),
            "reportedStartTime",
        ),
    ];
    for (uri, property) in cases {
        let reply = host.get(&uri, &op).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            reply.body
        );
        let code = if property == "control character" {
            "InvalidRequest"
        } else {
            "InvalidProperty"
        };
        assert_eq!(reply.code(), code, "{uri}: {}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(property), "{uri}: {message}");
    }
    // The same subscription without the blank still answers.
    assert_eq!(host.get(&tenant_api(A), &op).await.status, StatusCode::OK);
}
