//! Access grants over REST, in process: operators give an identity
//! provider's subject subscriptions (`/v1/access/grants`), list and revoke
//! them; the values are bounded, and nobody else may.

use crate::support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;
use tally::auth::Role;
use tally::store::access::MAX_GRANTS_PER_SUBJECT;

const GRANTS: &str = "/v1/access/grants";
const ISSUER: &str = "https://login.microsoftonline.com/6f1c2a9e-0d4b-4c1e-9d0e-3a1b2c3d4e5f/v2.0";
const SUBJECT: &str = "9b2f0c4e-5a6d-4e7f-8a9b-0c1d2e3f4a5b";

/// The body of a grant.
fn grant(issuer: &str, subject: &str, subscription: &str) -> String {
    json!({"issuer": issuer, "subject": subject, "subscriptionId": subscription}).to_string()
}

/// The revocation URI of a grant.
fn revocation(issuer: &str, subject: &str, subscription: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("issuer", issuer)
        .append_pair("subject", subject)
        .append_pair("subscriptionId", subscription)
        .finish();
    format!("{GRANTS}?{query}")
}

async fn put(host: &TestHost, token: &str, body: String) -> Reply {
    host.call(Method::PUT, GRANTS, Some(token), Some(body))
        .await
}

async fn delete(host: &TestHost, token: &str, uri: &str) -> Reply {
    host.call(Method::DELETE, uri, Some(token), None).await
}

/// `(issuer, subject, subscriptionId)` of each listed grant.
fn keys(listed: &Value) -> Vec<(String, String, String)> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|grant| {
            let field = |name: &str| grant[name].as_str().unwrap().to_owned();
            (field("issuer"), field("subject"), field("subscriptionId"))
        })
        .collect()
}

fn key(issuer: &str, subject: &str, subscription: &str) -> (String, String, String) {
    (issuer.into(), subject.into(), subscription.into())
}

#[tokio::test]
async fn an_operator_grants_lists_and_revokes() {
    let host = TestHost::new().await;
    let listed = host.get(GRANTS, &host.operator).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body, json!([]));

    let made = put(&host, &host.operator, grant(ISSUER, SUBJECT, "Sub-1")).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert_eq!(made.body["issuer"], ISSUER);
    assert_eq!(made.body["subject"], SUBJECT);
    assert_eq!(made.body["subscriptionId"], "Sub-1");
    let created = made.body["createdAt"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(created).expect("createdAt is RFC 3339");
    assert_eq!(made.body.as_object().unwrap().len(), 4, "{}", made.body);

    // Idempotent: the same grant (in another case too) answers the first one.
    for spelling in ["Sub-1", "SUB-1"] {
        let again = put(&host, &host.operator, grant(ISSUER, SUBJECT, spelling)).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.body, made.body);
    }
    put(&host, &host.operator, grant(ISSUER, SUBJECT, "sub-2")).await;
    put(
        &host,
        &host.operator,
        grant(ISSUER, "someone-else", "sub-2"),
    )
    .await;

    let listed = host.get(GRANTS, &host.operator).await;
    assert_eq!(
        keys(&listed.body),
        [
            key(ISSUER, SUBJECT, "Sub-1"),
            key(ISSUER, SUBJECT, "sub-2"),
            key(ISSUER, "someone-else", "sub-2"),
        ]
    );
    // What the sign-in resolves a subject's subscriptions by.
    assert_eq!(
        host.store
            .subscriptions_granted(ISSUER, SUBJECT)
            .await
            .unwrap(),
        ["Sub-1", "sub-2"]
    );

    let revoked = delete(&host, &host.operator, &revocation(ISSUER, SUBJECT, "sub-1")).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let gone = delete(&host, &host.operator, &revocation(ISSUER, SUBJECT, "sub-1")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
    assert_eq!(gone.code(), "NotFound");
    assert!(
        gone.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(SUBJECT),
        "{}",
        gone.body
    );
    // Subject and issuer compare exactly.
    for (issuer, subject) in [
        (ISSUER, &*SUBJECT.to_uppercase()),
        (&*ISSUER.to_uppercase(), SUBJECT),
    ] {
        let other = delete(&host, &host.operator, &revocation(issuer, subject, "sub-2")).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{issuer} {subject}");
    }
    let listed = host.get(GRANTS, &host.operator).await;
    assert_eq!(
        keys(&listed.body),
        [
            key(ISSUER, SUBJECT, "sub-2"),
            key(ISSUER, "someone-else", "sub-2"),
        ]
    );
}

#[tokio::test]
async fn values_out_of_bounds_are_refused_naming_the_property() {
    let host = TestHost::new().await;
    let long_issuer = format!("https://idp.example/{}", "a".repeat(1_024));
    let long_subject = "s".repeat(257);
    let long_subscription = "x".repeat(129);
    for (issuer, subject, subscription, property) in [
        ("", SUBJECT, "sub-1", "issuer"),
        ("login.example", SUBJECT, "sub-1", "issuer"),
        (&long_issuer, SUBJECT, "sub-1", "issuer"),
        (ISSUER, "", "sub-1", "subject"),
        (ISSUER, &long_subject, "sub-1", "subject"),
        (ISSUER, "al\u{1b}[31mice", "sub-1", "subject"),
        (ISSUER, " padded", "sub-1", "subject"),
        (ISSUER, SUBJECT, "", "subscriptionId"),
        (ISSUER, SUBJECT, &long_subscription, "subscriptionId"),
    ] {
        let refused = put(&host, &host.operator, grant(issuer, subject, subscription)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert_eq!(refused.code(), "InvalidProperty");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("'{property}'")), "{message}");
    }
    // At the bounds exactly: accepted.
    let prefix = "https://idp.example/";
    let at_bounds = put(
        &host,
        &host.operator,
        grant(
            &format!("{prefix}{}", "a".repeat(1_024 - prefix.len())),
            &"s".repeat(256),
            &"x".repeat(128),
        ),
    )
    .await;
    assert_eq!(at_bounds.status, StatusCode::OK, "{}", at_bounds.body);

    // Malformed bodies and revocations.
    for body in [
        "{".to_owned(),
        json!({"issuer": ISSUER, "subject": SUBJECT}).to_string(),
        json!({"issuer": ISSUER, "subject": SUBJECT, "subscriptionId": "s", "role": "x"})
            .to_string(),
    ] {
        let refused = put(&host, &host.operator, body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert_eq!(refused.code(), "InvalidJson");
    }
    let missing = delete(&host, &host.operator, &format!("{GRANTS}?issuer=x")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
    let long = delete(
        &host,
        &host.operator,
        &revocation(ISSUER, &long_subject, "s"),
    )
    .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST, "{}", long.body);
    assert_eq!(long.code(), "InvalidProperty");
}

#[tokio::test]
async fn a_subject_holds_at_most_a_thousand_subscriptions() {
    let host = TestHost::new().await;
    for n in 0..MAX_GRANTS_PER_SUBJECT {
        host.store
            .grant(ISSUER, SUBJECT, &format!("sub-{n}"))
            .await
            .unwrap();
    }
    let refused = put(&host, &host.operator, grant(ISSUER, SUBJECT, "one-more")).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.code(), "TooManyGrants");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("1000") && message.contains(SUBJECT) && message.contains("revoke"),
        "{message}"
    );
    // One it holds is granted again; revoking one makes room.
    let held = put(&host, &host.operator, grant(ISSUER, SUBJECT, "sub-7")).await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.body);
    let revoked = delete(&host, &host.operator, &revocation(ISSUER, SUBJECT, "sub-7")).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let made = put(&host, &host.operator, grant(ISSUER, SUBJECT, "one-more")).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
}

#[tokio::test]
async fn only_operators_may_see_or_change_grants() {
    let host = TestHost::new().await;
    put(&host, &host.operator, grant(ISSUER, SUBJECT, "sub-1")).await;
    let tenant = host.token(Role::Tenant, &["sub-1"]).await;
    for token in [&tenant, &host.reporter] {
        let listed = host.get(GRANTS, token).await;
        assert_eq!(listed.status, StatusCode::FORBIDDEN, "{}", listed.body);
        assert_eq!(listed.code(), "AuthorizationFailed");
        let made = put(&host, token, grant(ISSUER, "intruder", "sub-1")).await;
        assert_eq!(made.status, StatusCode::FORBIDDEN, "{}", made.body);
        let revoked = delete(&host, token, &revocation(ISSUER, SUBJECT, "sub-1")).await;
        assert_eq!(revoked.status, StatusCode::FORBIDDEN, "{}", revoked.body);
    }
    let anonymous = host.call(Method::GET, GRANTS, None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // Nothing changed.
    let listed = host.get(GRANTS, &host.operator).await;
    assert_eq!(keys(&listed.body), [key(ISSUER, SUBJECT, "sub-1")]);
}

#[tokio::test]
async fn the_grants_routes_are_documented() {
    let host = TestHost::new().await;
    let document = host.get("/openapi.json", &host.operator).await.body;
    let path = &document["paths"][GRANTS];
    for method in ["get", "put", "delete"] {
        assert_eq!(path[method]["tags"], json!(["access"]), "{method}: {path}");
        assert!(path[method]["responses"]["403"].is_object(), "{method}");
    }
    assert!(path["put"]["responses"]["409"].is_object());
    assert!(path["delete"]["responses"]["404"].is_object());
    let grant = &document["components"]["schemas"]["Grant"]["properties"];
    for property in ["issuer", "subject", "subscriptionId", "createdAt"] {
        assert!(grant[property].is_object(), "{property}: {grant}");
    }
}
