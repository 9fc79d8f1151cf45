//! The console's own endpoints, in process: signing in with a token, the
//! session cookie and its CSRF rule, signing out, tokens over REST, the
//! overview, and the usage explorer's summary against the usage API. (The
//! page itself is driven in a real browser in `console_browser`.)

use crate::support;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::*;
use tally::auth::Role;
use tally_usage_generator::Options;
use tower::ServiceExt;

/// A signed-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

/// Signs in with `token`; asserts it worked and returns the session.
async fn sign_in(host: &TestHost, token: &str) -> (Browser, Reply) {
    let reply = host
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some(json!({ "token": token }).to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let set_cookie = reply.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = reply.body["csrfToken"].as_str().unwrap().to_owned();
    (Browser { cookie, csrf }, reply)
}

/// A request with the browser's cookie, and its CSRF token when `csrf`.
async fn as_browser(
    host: &TestHost,
    browser: &Browser,
    method: Method,
    uri: &str,
    csrf: bool,
    body: Option<Value>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "tally.test")
        .header(header::COOKIE, &browser.cookie);
    if csrf {
        request = request.header("x-csrf-token", &browser.csrf);
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = host
        .app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply {
        status,
        headers,
        body,
    }
}

async fn get_as(host: &TestHost, browser: &Browser, uri: &str) -> Reply {
    as_browser(host, browser, Method::GET, uri, false, None).await
}

#[tokio::test]
async fn the_page_is_served_from_the_binary_with_a_strict_csp() {
    let host = TestHost::new().await;
    let page = host.call(Method::GET, "/", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.body.as_str().unwrap();
    assert!(html.contains("/console/app.js"), "{html}");
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{csp} lacks {rule}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

    let script = host.call(Method::GET, "/console/app.js", None, None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    // Revalidation answers 304 while the file is unchanged.
    let etag = script.headers[header::ETAG].to_str().unwrap().to_owned();
    let request = Request::get("/console/app.js")
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    let response = host.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    let missing = host
        .call(Method::GET, "/console/../Cargo.toml", None, None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = host
        .call(Method::GET, "/console/nothing.js", None, None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_session_cookie_is_strict_and_signing_out_ends_it_in_the_store() {
    let host = TestHost::new().await;
    let tenant = host.token(Role::Tenant, &["sub-a"]).await;
    let (browser, reply) = sign_in(&host, &tenant).await;
    assert_eq!(reply.body["role"], "tenant");
    assert_eq!(reply.body["subscriptions"], json!(["sub-a"]));
    let set_cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set_cookie.contains(part), "{set_cookie} lacks {part}");
    }
    // Not Secure on a plain-http host (a browser would drop it).
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    assert!(!set_cookie.contains(&tenant), "the cookie is not the token");

    let who = get_as(&host, &browser, "/v1/session").await;
    assert_eq!(who.status, StatusCode::OK);
    assert_eq!(who.body["csrfToken"], browser.csrf.as_str());
    let usage = usage_uri(
        "sub-a",
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        "Daily",
    );
    assert_eq!(get_as(&host, &browser, &usage).await.status, StatusCode::OK);

    // Signing out needs the CSRF token like every change.
    let refused = as_browser(&host, &browser, Method::DELETE, "/v1/session", false, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "CsrfTokenMissing");
    let out = as_browser(&host, &browser, Method::DELETE, "/v1/session", true, None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The same cookie, replayed, no longer works anywhere.
    assert_eq!(
        get_as(&host, &browser, "/v1/session").await.status,
        StatusCode::UNAUTHORIZED
    );
    let after = get_as(&host, &browser, &usage).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.code(), "SessionEnded");
}

#[tokio::test]
async fn the_cookie_changes_nothing_without_the_csrf_token_and_bearer_tokens_work_unchanged() {
    let host = TestHost::new().await;
    let (browser, _) = sign_in(&host, &host.operator.clone()).await;
    let meter = json!({"name": "GPU Hours", "category": "Compute", "unit": "Hours"});
    let forged = as_browser(
        &host,
        &browser,
        Method::PUT,
        "/v1/meters/gpu",
        false,
        Some(meter.clone()),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let mut wrong = Browser {
        cookie: browser.cookie.clone(),
        csrf: "tly_guess".into(),
    };
    let guessed = as_browser(
        &host,
        &wrong,
        Method::PUT,
        "/v1/meters/gpu",
        true,
        Some(meter.clone()),
    )
    .await;
    assert_eq!(guessed.status, StatusCode::FORBIDDEN);
    wrong.csrf = browser.csrf.clone();
    let made = as_browser(
        &host,
        &wrong,
        Method::PUT,
        "/v1/meters/gpu",
        true,
        Some(meter.clone()),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    // The bearer API needs no CSRF token, as before.
    let bearer = host
        .call(
            Method::PUT,
            "/v1/meters/gpu2",
            Some(&host.operator),
            Some(meter.to_string()),
        )
        .await;
    assert_eq!(bearer.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_and_reporter_tokens_cannot_sign_in_and_revoking_a_token_ends_its_sessions() {
    let host = TestHost::new().await;
    let sign = |token: String| {
        let host = &host;
        async move {
            host.call(
                Method::POST,
                "/v1/session",
                None,
                Some(json!({ "token": token }).to_string()),
            )
            .await
        }
    };
    let unknown = sign("tly_unknown".into()).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not known")
    );
    let reporter = sign(host.reporter.clone()).await;
    assert_eq!(reporter.status, StatusCode::FORBIDDEN);
    let malformed = host
        .call(
            Method::POST,
            "/v1/session",
            None,
            Some("{\"token\":".into()),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);

    let created = host
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&host.operator),
            Some(
                json!({"role": "tenant", "subscriptions": ["sub-b"], "description": "Contoso"})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let (browser, _) = sign_in(&host, created.body["secret"].as_str().unwrap()).await;
    assert_eq!(
        get_as(&host, &browser, "/v1/session").await.status,
        StatusCode::OK
    );
    let id = created.body["id"].as_i64().unwrap();
    let revoked = host
        .call(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Some(&host.operator),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_as(&host, &browser, "/v1/session").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn one_token_holds_a_bounded_number_of_sessions() {
    let host = TestHost::new().await;
    let tenant = host.token(Role::Tenant, &["sub-a"]).await;
    let limit = tally::store::console::MAX_SESSIONS_PER_TOKEN as usize;
    let mut browsers = Vec::new();
    for _ in 0..=limit {
        browsers.push(sign_in(&host, &tenant).await.0);
        // Sessions are ordered by their millisecond of creation.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    // Signing in once past the bound ended the oldest session, and only it.
    let oldest = get_as(&host, &browsers[0], "/v1/session").await;
    assert_eq!(oldest.status, StatusCode::UNAUTHORIZED);
    for browser in &browsers[1..] {
        assert_eq!(
            get_as(&host, browser, "/v1/session").await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn tokens_are_created_listed_without_secrets_and_revoked_over_rest() {
    let host = TestHost::new().await;
    let post = |body: Value| {
        let host = &host;
        async move {
            host.call(
                Method::POST,
                "/v1/tokens",
                Some(&host.operator),
                Some(body.to_string()),
            )
            .await
        }
    };
    let created = post(json!({"role": "tenant", "subscriptions": ["sub-c"]})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["secret"].as_str().unwrap();
    let usage = usage_uri(
        "sub-c",
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        "Daily",
    );
    assert_eq!(
        host.get(&usage, secret).await.status,
        StatusCode::OK,
        "the new token works at once"
    );

    let listed = host.get("/v1/tokens", &host.operator).await;
    assert_eq!(listed.status, StatusCode::OK);
    let text = listed.body.to_string();
    assert!(!text.contains(secret) && !text.contains("secret"), "{text}");
    assert_eq!(
        listed.body.as_array().unwrap().len(),
        3,
        "operator, reporter, the new one"
    );

    for (body, why) in [
        (json!({"role": "tenant"}), "a tenant needs subscriptions"),
        (
            json!({"role": "operator", "subscriptions": ["x"]}),
            "only tenants name subscriptions",
        ),
        (
            json!({"role": "tenant", "subscriptions": [" x"]}),
            "an id with a blank",
        ),
        (json!({"role": "admin"}), "an unknown role"),
        (
            json!({"role": "reporter", "description": "a\u{0}b"}),
            "a control character",
        ),
    ] {
        assert_eq!(post(body).await.status, StatusCode::BAD_REQUEST, "{why}");
    }
    let tenant = host.token(Role::Tenant, &["sub-c"]).await;
    assert_eq!(
        host.get("/v1/tokens", &tenant).await.status,
        StatusCode::FORBIDDEN
    );
    let missing = host
        .call(Method::DELETE, "/v1/tokens/999", Some(&host.operator), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// Per-meter totals of a summary, by lower-case meter id.
fn summary_totals(summary: &Value) -> BTreeMap<String, f64> {
    summary["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["meterId"].as_str().unwrap().to_ascii_lowercase(),
                m["total"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_explorer_totals_equal_the_usage_api_for_the_same_range() {
    let (host, records) = TestHost::with_sample(Options {
        subscriptions: 3,
        days: 4,
        ..Options::default()
    })
    .await;
    let (start, end) = ("2026-10-27T00:00:00Z", "2026-11-03T00:00:00Z");
    for granularity in ["Daily", "Hourly"] {
        let (rows, _) = host
            .list_all(&provider_uri(start, end, granularity), &host.operator)
            .await;
        let summary = host
            .get(
                &format!("/v1/usage/summary?from={start}&to={end}&granularity={granularity}&groupBy=location"),
                &host.operator,
            )
            .await;
        assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
        assert_totals_eq(&summary_totals(&summary.body), &totals_by_meter(&rows));
        // The table's rows add up to the same totals, and each series to its total.
        let mut table = BTreeMap::new();
        for row in summary.body["rows"].as_array().unwrap() {
            *table
                .entry(row["meterId"].as_str().unwrap().to_ascii_lowercase())
                .or_insert(0.0) += row["quantity"].as_f64().unwrap();
        }
        assert_totals_eq(&table, &totals_by_meter(&rows));
        for meter in summary.body["meters"].as_array().unwrap() {
            let series: f64 = meter["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|q| q.as_f64().unwrap())
                .sum();
            assert!((series - meter["total"].as_f64().unwrap()).abs() < 1e-6);
        }
        assert_eq!(
            summary.body["aggregateRows"].as_u64().unwrap() as usize,
            rows.len()
        );
    }

    // A tenant's explorer is their subscription's usage API, and nothing of the others'.
    let mine = &records[0].subscription_id;
    let others: Vec<&str> = records
        .iter()
        .map(|r| r.subscription_id.as_str())
        .filter(|s| s != mine)
        .collect();
    let tenant = host.token(Role::Tenant, &[mine]).await;
    let (browser, _) = sign_in(&host, &tenant).await;
    let (rows, _) = host
        .list_all(&usage_uri(mine, start, end, "Daily"), &tenant)
        .await;
    let summary = get_as(
        &host,
        &browser,
        &format!("/v1/usage/summary?from={start}&to={end}&groupBy=subscription"),
    )
    .await;
    assert_eq!(summary.status, StatusCode::OK);
    assert_totals_eq(&summary_totals(&summary.body), &totals_by_meter(&rows));
    let text = summary.body.to_string();
    assert!(others.iter().all(|other| !text.contains(other)), "{text}");
    let listed = get_as(&host, &browser, "/v1/subscriptions").await;
    assert_eq!(listed.body, json!([{ "subscriptionId": mine }]));
    let other = get_as(
        &host,
        &browser,
        &format!(
            "/v1/usage/summary?from={start}&to={end}&subscription={}",
            others[0]
        ),
    )
    .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    for operator_only in ["/v1/overview", "/v1/tokens", "/v1/adapters", "/metrics"] {
        let refused = get_as(&host, &browser, operator_only).await;
        assert!(
            matches!(
                refused.status,
                StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE
            ),
            "{operator_only}: {}",
            refused.status
        );
        assert!(others.iter().all(|o| !refused.body.to_string().contains(o)));
    }
    // The operator sees every subscription.
    let all = host.get("/v1/subscriptions", &host.operator).await;
    assert_eq!(all.body.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn the_explorer_csv_is_exactly_its_table() {
    let (host, _) = TestHost::with_sample(Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    })
    .await;
    let uri = "/v1/usage/summary?from=2026-10-29&to=2026-11-01&groupBy=tag:cost-center";
    let summary = host.get(uri, &host.operator).await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.body);
    let csv = host.get(&format!("{uri}&format=csv"), &host.operator).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = csv.body.as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "group,meter_id,meter_name,unit,quantity");
    let rows = summary.body["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert_eq!(lines.len() - 1, rows.len());
    for (line, row) in lines[1..].iter().zip(rows) {
        let quantity: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
        // serde_json's default float parsing may be one ulp off: compare closely, not exactly.
        let shown = row["quantity"].as_f64().unwrap();
        assert!(
            (quantity - shown).abs() <= 1e-12 * shown.abs(),
            "{line} vs {shown}"
        );
        assert!(line.contains(row["meterId"].as_str().unwrap()), "{line}");
    }
}

#[tokio::test]
async fn the_explorer_refuses_bad_ranges_and_tables_past_its_limit() {
    let host = TestHost::new().await;
    for (query, code) in [
        ("from=2026-11-01&to=2026-10-01", "InvalidProperty"),
        (
            "from=2026-11-01T00:30:00Z&to=2026-11-02&granularity=Hourly",
            "InvalidProperty",
        ),
        (
            "from=2026-01-01&to=2026-03-01&granularity=Hourly",
            "InvalidProperty",
        ),
        (
            "from=2026-11-01&to=2026-11-02&granularity=Weekly",
            "InvalidAggregationGranularity",
        ),
        (
            "from=2026-11-01&to=2026-11-02&groupBy=resource",
            "InvalidProperty",
        ),
        (
            "from=2026-11-01&to=2026-11-02&format=xml",
            "InvalidProperty",
        ),
        ("from=yesterday&to=2026-11-02", "InvalidProperty"),
        ("to=2026-11-02", "InvalidProperty"),
    ] {
        let reply = host
            .get(&format!("/v1/usage/summary?{query}"), &host.operator)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            reply.body
        );
        assert_eq!(reply.code(), code, "{query}");
    }
    // One more distinct tag value than the table holds.
    let limit = tally::api::usage_summary::MAX_TABLE_ROWS;
    let records: Vec<Value> = (0..=limit)
        .map(|i| {
            let mut r = record(
                "sub-t",
                &format!("e{i}"),
                VM_METER,
                1.0,
                "2026-11-01T01:00:00Z",
                "2026-11-01T02:00:00Z",
            );
            r["tags"] = json!({ "n": i.to_string() });
            reported(r, "2026-11-01T03:00:00Z")
        })
        .collect();
    host.ingest(&records).await;
    let too_many = host
        .get(
            "/v1/usage/summary?from=2026-11-01&to=2026-11-02&groupBy=tag:n",
            &host.operator,
        )
        .await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.code(), "TooManyGroups");
    let by_meter = host
        .get(
            "/v1/usage/summary?from=2026-11-01&to=2026-11-02",
            &host.operator,
        )
        .await;
    assert_eq!(by_meter.status, StatusCode::OK);
    assert_eq!(
        by_meter.body["meters"][0]["total"],
        json!((limit + 1) as f64)
    );
}

#[tokio::test]
async fn the_overview_counts_the_usage_received_today_and_this_month() {
    let host = TestHost::new().await;
    let empty = host.get("/v1/overview", &host.operator).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(
        empty.body["today"],
        json!({"records": 0, "subscriptions": 0, "meters": 0})
    );
    assert_eq!(empty.body["lastReportedTime"], Value::Null);
    assert_eq!(
        empty.body["backend"],
        tally::api::Settings::default().backend
    );

    // Reported now (no reportedTime): today's, this month's and this hour's.
    let hour = this_hour() - chrono::Duration::hours(2);
    let (start, end) = (
        hour.to_rfc3339(),
        (hour + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let now_records: Vec<Value> = (0..5)
        .map(|i| {
            let meter = if i % 2 == 0 { VM_METER } else { IP_METER };
            record(
                &format!("sub-{}", i % 2),
                &format!("now-{i}"),
                meter,
                1.0,
                &start,
                &end,
            )
        })
        .collect();
    let accepted = host.ingest_as(&host.reporter, &now_records).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    let overview = host.get("/v1/overview", &host.operator).await;
    assert_eq!(
        overview.body["today"],
        json!({"records": 5, "subscriptions": 2, "meters": 2})
    );
    assert!(overview.body["month"]["records"].as_i64().unwrap() >= 5);
    // Reported this hour, or the previous one if the hour turned meanwhile.
    let recent = overview.body["thisHourRecords"].as_i64().unwrap()
        + overview.body["previousHourRecords"].as_i64().unwrap();
    assert_eq!(recent, 5);
    assert!(overview.body["lastReportedTime"].is_string());
    let tenant = host.token(Role::Tenant, &["sub-0"]).await;
    assert_eq!(
        host.get("/v1/overview", &tenant).await.status,
        StatusCode::FORBIDDEN
    );
}
