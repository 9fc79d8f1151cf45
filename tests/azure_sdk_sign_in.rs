//! Single sign-on for the unmodified Azure SDK for Python: a `tally serve`
//! that trusts the test OpenID provider (`[[identity.issuers]]` in its
//! tally.toml) reads a tenant's usage to the SDK with the access token the
//! user got by signing in there — no tally token anywhere — and refuses, as
//! the SDK's errors, a subscription the token does not give and a token
//! past its expiry.

use crate::azure_sdk::sdk_list;
use crate::support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::oidc::{ALICE, OidcProvider, RESOURCE, decode_jwt};
use support::oidc_user::user_access_token;
use support::process::{Server, create_token, post_usage};
use support::*;
use tally_usage_generator::{Options, UsageRecord};

/// Alice's subscription in the provider's tokens, and another tenant's.
const ALICES: &str = "sub-a";
const OTHERS: &str = "sub-b";
const START: &str = "2026-10-28T00:00:00+00:00";
const END: &str = "2026-11-02T00:00:00+00:00";

/// A tally.toml trusting `issuer` for tally's API, roles from `roles` and a
/// tenant's subscriptions from `subscriptions`.
fn identity_config(dir: &DataDir, issuer: &str) -> String {
    let config = dir.path().join("tally.toml");
    let text = format!(
        r#"[[identity.issuers]]
issuer = "{issuer}"
audiences = ["{RESOURCE}"]
roles_claim = "roles"
operator = ["tally.operator"]
tenant = ["tally.tenant"]
subscriptions_claim = "subscriptions"
"#
    );
    std::fs::write(&config, text).unwrap();
    config.to_str().unwrap().to_owned()
}

/// Three days of two subscriptions' usage, renamed to the subscriptions the
/// provider's tokens name (the generator's ids are GUIDs).
fn usage_of_alice_and_another() -> Vec<UsageRecord> {
    let options = Options {
        subscriptions: 2,
        days: 3,
        ..Options::default()
    };
    let names = [
        (tally_usage_generator::subscription_id(0), ALICES),
        (tally_usage_generator::subscription_id(1), OTHERS),
    ];
    let mut records = sample(&options);
    for record in &mut records {
        for (generated, name) in &names {
            record.subscription_id = record.subscription_id.replace(generated, name);
            record.resource_uri = record.resource_uri.replace(generated, name);
        }
    }
    records
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Runs the SDK off the async runtime.
async fn list(base: &str, token: &str, sub: &str, granularity: &str) -> Result<Value, Value> {
    let (base, token, sub, granularity) = (
        base.to_owned(),
        token.to_owned(),
        sub.to_owned(),
        granularity.to_owned(),
    );
    tokio::task::spawn_blocking(move || sdk_list(&base, &token, &sub, START, END, &granularity))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_sdk_reads_a_tenants_usage_with_the_token_of_their_sign_in() {
    let provider = OidcProvider::start();
    let dir = DataDir::new();
    let operator = create_token(dir.path().to_str().unwrap(), "operator");
    let config = identity_config(&dir, provider.issuer());
    let server = Server::start_with(dir.path(), &["--config", config.as_str()]);

    let records = usage_of_alice_and_another();
    let client = reqwest::Client::new();
    for batch in to_wire(&records).chunks(5_000) {
        post_usage(&client, &server.base, &operator, batch)
            .await
            .unwrap();
    }
    let alices = ingested_totals(records.iter().filter(|r| r.subscription_id == ALICES));

    // What alice's sign-in gives her: a JWT for tally naming her subscription.
    let token = user_access_token(&provider, ALICE).await;
    let (_, claims) = decode_jwt(&token);
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["sub"], ALICE.0);
    assert_eq!(claims["subscriptions"], json!([ALICES]));

    for granularity in ["Hourly", "Daily"] {
        let listed = list(&server.base, &token, ALICES, granularity)
            .await
            .unwrap_or_else(|error| panic!("{granularity}: alice's token refused: {error}"));
        let rows = listed["rows"].as_u64().unwrap();
        assert!(rows > 0, "{granularity}: no rows");
        assert_eq!(listed["distinct_names"].as_u64(), Some(rows));
        let totals: BTreeMap<String, f64> =
            serde_json::from_value(listed["totals"].clone()).unwrap();
        assert_totals_eq(&totals, &alices);
    }

    // The access log names who read: alice, at the provider.
    let log = server.log();
    let who = format!("subject={}@{}", ALICE.0, provider.issuer());
    assert!(log.contains(&who), "no {who} in the log:\n{log}");

    // Another tenant's subscription: the SDK raises the service's 403.
    let refused = list(&server.base, &token, OTHERS, "Daily")
        .await
        .expect_err("alice's token must not read another subscription");
    assert_eq!(refused["type"], "HttpResponseError", "{refused}");
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["code"], "AuthorizationFailed", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains(OTHERS),
        "{refused}"
    );

    // A genuine token of the provider's for the other subscription only.
    let others = provider
        .mint(json!({
            "iss": provider.issuer(), "aud": RESOURCE, "sub": "bob",
            "iat": now(), "exp": now() + 3_600,
            "roles": ["tally.tenant"], "subscriptions": [OTHERS],
        }))
        .await;
    let refused = list(&server.base, &others, ALICES, "Daily")
        .await
        .expect_err("a token for another subscription must not read alice's");
    assert_eq!(
        (&refused["status"], &refused["code"]),
        (&json!(403), &json!("AuthorizationFailed")),
        "{refused}"
    );
    let listed = list(&server.base, &others, OTHERS, "Daily")
        .await
        .unwrap_or_else(|error| panic!("bob's token refused for his subscription: {error}"));
    assert!(listed["rows"].as_u64().unwrap() > 0, "{listed}");

    // Alice's token an hour later: the SDK's authentication error, naming the expiry.
    let expired = provider
        .mint(json!({
            "iss": provider.issuer(), "aud": RESOURCE, "sub": ALICE.0,
            "iat": now() - 7_200, "exp": now() - 3_600,
            "roles": ["tally.tenant"], "subscriptions": [ALICES],
        }))
        .await;
    let refused = list(&server.base, &expired, ALICES, "Daily")
        .await
        .expect_err("an expired token must be refused");
    assert_eq!(refused["type"], "ClientAuthenticationError", "{refused}");
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(refused["code"], "InvalidAuthenticationToken", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("expired"),
        "{refused}"
    );
}
