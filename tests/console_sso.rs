//! Console single sign-on end to end, in headless Chromium: a real OpenID
//! provider (`tests/oidc`, see `support::oidc`) whose console client is
//! tally's, a real `tally serve` trusting it, and the scenario
//! `tests/browser/sso.mjs`: a person signs in at the provider (a wrong
//! password first), lands on their usage as the tenant the token's
//! `subscriptions` claim makes them, signs out at tally and the provider,
//! and their session is over.

use crate::support;

use chrono::{Days, Utc};
use support::DataDir;
use support::browser::{Browser, run_scenario};
use support::oidc::{ALICE, CONSOLE, CONSOLE_SECRET, OidcProvider, RESOURCE};
use support::process::{Server, create_token, free_port, post_usage};
use support::{VM_METER, record, reported};

/// The provider's name as the console shows it (`display_name`).
const PROVIDER_NAME: &str = "Test IdP";
/// Alice's subscription, from her token's `subscriptions` claim.
const ALICE_SUBSCRIPTION: &str = "sub-a";
/// Someone else's subscription, with usage: never shown to Alice.
const OTHER_SUBSCRIPTION: &str = "sub-b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_their_organisation_sees_their_usage_and_signs_out() {
    let provider = OidcProvider::start();
    // The host's URL goes into its configuration and the provider's client
    // before it starts, so its port is chosen first.
    let base = format!("http://127.0.0.1:{}", free_port());
    provider
        .set_console_redirects(
            &[&format!("{base}/v1/session/callback")],
            &[&format!("{base}/")],
        )
        .await;
    let data = DataDir::new();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("tally.toml");
    std::fs::write(&config, tally_toml(&base, provider.issuer())).unwrap();
    let server = Server::start_on(
        base.trim_start_matches("http://"),
        data.path(),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        server.base, base,
        "tally listens where its configuration says"
    );

    // A day of usage for Alice's subscription and another one, reported
    // yesterday (the usage explorer's range ends before today).
    let yesterday = Utc::now().date_naive() - Days::new(1);
    let operator = create_token(data.path().to_str().unwrap(), "operator");
    let records: Vec<_> = [(ALICE_SUBSCRIPTION, 3.5), (OTHER_SUBSCRIPTION, 7.25)]
        .into_iter()
        .map(|(subscription, quantity)| {
            reported(
                record(
                    subscription,
                    &format!("sso-{subscription}"),
                    VM_METER,
                    quantity,
                    &format!("{yesterday}T10:00:00Z"),
                    &format!("{yesterday}T11:00:00Z"),
                ),
                &format!("{yesterday}T12:00:00Z"),
            )
        })
        .collect();
    post_usage(&reqwest::Client::new(), &base, &operator, &records)
        .await
        .unwrap();

    let env = [
        ("TALLY_URL", base.clone()),
        ("TALLY_OIDC_ISSUER", provider.issuer().to_owned()),
        ("TALLY_OIDC_CLIENT", CONSOLE.to_owned()),
        ("TALLY_SSO_PROVIDER", PROVIDER_NAME.to_owned()),
        ("TALLY_SSO_USER", ALICE.0.to_owned()),
        ("TALLY_SSO_PASSWORD", ALICE.1.to_owned()),
        ("TALLY_TENANT_SUBSCRIPTION", ALICE_SUBSCRIPTION.to_owned()),
        ("TALLY_OTHER_SUBSCRIPTIONS", OTHER_SUBSCRIPTION.to_owned()),
        ("TALLY_USAGE_FROM", yesterday.to_string()),
        ("TALLY_USAGE_TO", yesterday.to_string()),
    ];
    run_scenario(Browser::Chromium, "sso", &env).await;
}

/// tally's configuration: its public URL and the provider as a trusted
/// issuer with a console client, Alice's tenancy from her token's claims.
fn tally_toml(base: &str, issuer: &str) -> String {
    format!(
        r#"public_url = "{base}"

[[identity.issuers]]
issuer = "{issuer}"
display_name = "{PROVIDER_NAME}"
audiences = ["{RESOURCE}"]
roles_claim = "roles"
operator = ["tally.operator"]
tenant = ["tally.tenant"]
subscriptions_claim = "subscriptions"
client_id = "{CONSOLE}"
client_secret = "{CONSOLE_SECRET}"
"#
    )
}
