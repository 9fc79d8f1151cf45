//! Single sign-on against a real OpenID provider (`oidc-provider`, started
//! by `support::oidc`): its tokens read the API by the roles and
//! subscriptions their claims and the stored grants give, and every kind of
//! bad token is refused with a reason a person can act on.

use crate::support;

use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::oidc::*;
use support::*;
use tally::api::{self, AppState};
use tally::identity::{Identity, IdentityConfig};

/// A host trusting `provider` (keys refreshed at most once a second).
async fn host_trusting(provider: &OidcProvider) -> TestHost {
    let mut host = TestHost::new().await;
    let config: IdentityConfig = toml::from_str(&format!(
        r#"[[issuers]]
issuer = "{}"
audiences = ["{RESOURCE}"]
key_refresh_floor = "1s"
roles_claim = "roles"
operator = ["tally.operator"]
reporter = ["tally.reporter"]
tenant = ["tally.tenant"]
subscriptions_claim = "subscriptions"
"#,
        provider.issuer()
    ))
    .unwrap();
    let identity = Identity::new(&config).unwrap();
    host.app = api::router(
        AppState::new(host.store.clone(), host.settings.clone()).with_identity(identity),
    );
    host
}

/// Claims of a user token for tally, valid for an hour from now.
fn user_claims(provider: &OidcProvider, subject: &str, extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": provider.issuer(), "sub": subject, "aud": RESOURCE,
        "iat": now, "exp": now + 3600,
    });
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    claims
}

fn usage(subscription: &str) -> String {
    usage_uri(
        subscription,
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        "Daily",
    )
}

/// The `error_description` of a 401's challenge.
fn description(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let challenge = reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    challenge
        .split("error_description=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_owned()
}

#[tokio::test]
async fn client_credentials_with_the_operator_role_read_the_provider_api_beside_static_tokens() {
    let provider = OidcProvider::start();
    let host = host_trusting(&provider).await;
    let token = provider
        .client_credentials_token(OPERATOR_BOT, OPERATOR_BOT_SECRET)
        .await;
    let all = provider_uri("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "Daily");
    assert_eq!(host.get(&all, &token).await.status, StatusCode::OK);
    assert_eq!(
        host.get("/v1/adapters", &token).await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "an operator reaches operator routes"
    );
    // Static tokens keep working beside JWTs.
    assert_eq!(host.get(&all, &host.operator).await.status, StatusCode::OK);
    // A reporter client reports, and reads nothing.
    let reporter = provider
        .client_credentials_token(REPORTER_BOT, REPORTER_BOT_SECRET)
        .await;
    let hour = this_hour() - chrono::Duration::hours(1);
    let records = [record(
        "sub-r",
        "e1",
        VM_METER,
        1.0,
        &hour.to_rfc3339(),
        &this_hour().to_rfc3339(),
    )];
    assert_eq!(
        host.ingest_as(&reporter, &records).await.status,
        StatusCode::OK
    );
    assert_eq!(
        host.get(&usage("sub-r"), &reporter).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_user_reads_the_subscriptions_of_their_claims_and_grants_and_nothing_else() {
    let provider = OidcProvider::start();
    let host = host_trusting(&provider).await;
    let alice = provider
        .mint(user_claims(
            &provider,
            "alice",
            json!({"roles": ["tally.tenant"], "subscriptions": ["sub-a"]}),
        ))
        .await;
    assert_eq!(
        host.get(&usage("sub-a"), &alice).await.status,
        StatusCode::OK
    );
    let other = host.get(&usage("sub-b"), &alice).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(
        host.get("/v1/tokens", &alice).await.status,
        StatusCode::FORBIDDEN
    );

    // A tenant without subscriptions in the token is given one by the operator.
    let bob = provider
        .mint(user_claims(
            &provider,
            "bob",
            json!({"roles": ["tally.tenant"]}),
        ))
        .await;
    let denied = host.get(&usage("sub-b"), &bob).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.code(), "NoAccess");
    let message = denied.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'bob'") && message.contains("tally access grant"),
        "{message}"
    );
    let grant = json!({"issuer": provider.issuer(), "subject": "bob", "subscriptionId": "sub-b"});
    let granted = host
        .call(
            Method::PUT,
            "/v1/access/grants",
            Some(&host.operator),
            Some(grant.to_string()),
        )
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    assert_eq!(host.get(&usage("sub-b"), &bob).await.status, StatusCode::OK);
    assert_eq!(
        host.get(&usage("sub-a"), &bob).await.status,
        StatusCode::FORBIDDEN
    );
    // The same subject at another issuer is someone else: grants are per issuer.
    let nobody = provider
        .client_credentials_token(NOBODY, NOBODY_SECRET)
        .await;
    let nothing = host.get(&usage("sub-b"), &nobody).await;
    assert_eq!(
        (nothing.status, nothing.code()),
        (StatusCode::FORBIDDEN, "NoAccess")
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let provider = OidcProvider::start();
    let host = host_trusting(&provider).await;
    let operator = json!({"roles": ["tally.operator"]});
    let now = chrono::Utc::now().timestamp();
    let refused = async |token: String| description(&host.get(&usage("sub-a"), &token).await);

    let expired = provider
        .mint(user_claims(
            &provider,
            "x",
            json!({"roles": ["tally.operator"], "iat": now - 7200, "exp": now - 3600}),
        ))
        .await;
    assert!(refused(expired).await.contains("expired"));
    let early = provider
        .mint(user_claims(
            &provider,
            "x",
            json!({"roles": ["tally.operator"], "nbf": now + 3600}),
        ))
        .await;
    assert!(refused(early).await.contains("not valid before"));
    let future = provider
        .mint(user_claims(
            &provider,
            "x",
            json!({"roles": ["tally.operator"], "iat": now + 3600}),
        ))
        .await;
    assert!(refused(future).await.contains("in the future"));
    let elsewhere = provider
        .mint(user_claims(
            &provider,
            "x",
            json!({"roles": ["tally.operator"], "aud": "api://other"}),
        ))
        .await;
    assert!(refused(elsewhere).await.contains("audience"));
    let stranger = provider
        .mint(user_claims(
            &provider,
            "x",
            json!({"roles": ["tally.operator"], "iss": "https://idp.evil"}),
        ))
        .await;
    let why = refused(stranger).await;
    assert!(
        why.contains("not trusted") && why.contains(provider.issuer()),
        "{why}"
    );
    let string_exp = provider
        .mint(user_claims(
            &provider,
            "x",
            json!({"roles": ["tally.operator"], "exp": "9999999999"}),
        ))
        .await;
    assert!(refused(string_exp).await.contains("'exp'"));

    // A genuine token with its payload changed (a tenant made operator).
    let genuine = provider
        .mint(user_claims(
            &provider,
            "x",
            json!({"roles": ["tally.tenant"]}),
        ))
        .await;
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_payload = base64_url(&user_claims(&provider, "x", operator.clone()).to_string());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert!(refused(tampered).await.contains("signature"));
    // alg none, and HMAC keyed with the provider's public key.
    let none = format!(
        "{}.{forged_payload}.",
        base64_url(r#"{"alg":"none","typ":"JWT"}"#)
    );
    assert!(refused(none).await.contains("'none'"));
    let hmac = format!(
        "{}.{forged_payload}.{}",
        base64_url(r#"{"alg":"HS256","typ":"JWT"}"#),
        parts[2]
    );
    assert!(refused(hmac).await.contains("'HS256'"));
    let garbage = refused("aGVsbG8.d29ybGQ.c2ln".into()).await;
    assert!(garbage.contains("not a JSON object"), "{garbage}");
}

#[tokio::test]
async fn an_es256_token_is_accepted_and_its_signature_checked() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let provider = OidcProvider::start();
    let host = host_trusting(&provider).await;
    let claims = user_claims(&provider, "x", json!({"roles": ["tally.operator"]}));
    let token = provider
        .mint_with_header(claims.clone(), json!({"alg": "ES256"}))
        .await;
    let (header, _) = decode_jwt(&token);
    assert_eq!(header["alg"], "ES256");
    let read = host.get(&usage("sub-a"), &token).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);

    // The same token with one byte of its signature changed.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[10] ^= 0x01;
    let altered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&bytes));
    let why = description(&host.get(&usage("sub-a"), &altered).await);
    assert!(why.contains("signature"), "{why}");

    // An ES256 token naming the RSA key: no key verifies it.
    let rsa_kid = decode_jwt(&provider.mint(claims).await).0["kid"].clone();
    assert_ne!(header["kid"], rsa_kid);
    let mut swapped = header.clone();
    swapped["kid"] = rsa_kid;
    let (_, rest) = token.split_once('.').unwrap();
    let confused = format!("{}.{rest}", base64_url(&swapped.to_string()));
    let why = description(&host.get(&usage("sub-a"), &confused).await);
    assert!(why.contains("signature"), "{why}");
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_unknown_kids_do_not_hammer_the_issuer() {
    let provider = OidcProvider::start();
    let host = host_trusting(&provider).await;
    let claims = user_claims(&provider, "x", json!({"roles": ["tally.operator"]}));
    let before = provider.mint(claims.clone()).await;
    assert_eq!(
        host.get(&usage("sub-a"), &before).await.status,
        StatusCode::OK
    );
    let (_, fetched_once) = provider.requests().await;
    assert_eq!(fetched_once, 1);

    // A flood of made-up key ids: at most one fetch per floor (1 s here).
    let started = std::time::Instant::now();
    for i in 0..40 {
        let forged = provider
            .mint_with_header(claims.clone(), json!({"kid": format!("made-up-{i}")}))
            .await;
        let why = description(&host.get(&usage("sub-a"), &forged).await);
        assert!(why.contains(&format!("'made-up-{i}'")), "{why}");
    }
    let (_, after_flood) = provider.requests().await;
    let floors = started.elapsed().as_secs() + 1;
    assert!(
        after_flood - fetched_once <= floors,
        "{after_flood} fetches after {floors} floors"
    );

    // The provider rotates its key: the new kid is fetched once the floor has passed.
    let kid = provider.rotate().await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = provider.mint(claims.clone()).await;
    assert!(decode_jwt(&after).0["kid"] == kid.as_str());
    assert_eq!(
        host.get(&usage("sub-a"), &after).await.status,
        StatusCode::OK
    );
    // The old key is gone from the issuer: its tokens no longer verify.
    assert!(description(&host.get(&usage("sub-a"), &before).await).contains("not among the keys"));
}

#[tokio::test]
async fn an_unreachable_issuer_stops_neither_static_tokens_nor_cached_keys() {
    let mut provider = OidcProvider::start();
    let host = host_trusting(&provider).await;
    let claims = user_claims(&provider, "x", json!({"roles": ["tally.operator"]}));
    let token = provider.mint(claims.clone()).await;
    let unknown_kid = provider
        .mint_with_header(claims, json!({"kid": "not-cached"}))
        .await;
    assert_eq!(
        host.get(&usage("sub-a"), &token).await.status,
        StatusCode::OK
    );
    provider.terminate();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        host.get(&usage("sub-a"), &token).await.status,
        StatusCode::OK,
        "cached keys"
    );
    assert_eq!(
        host.get(&usage("sub-a"), &host.operator).await.status,
        StatusCode::OK,
        "static tokens"
    );
    let why = description(&host.get(&usage("sub-a"), &unknown_kid).await);
    assert!(why.contains("could not be fetched again"), "{why}");
}

#[tokio::test]
async fn a_host_without_issuers_refuses_jwts_as_unknown_issuers() {
    let provider = OidcProvider::start();
    let host = TestHost::new().await;
    let token = provider
        .client_credentials_token(OPERATOR_BOT, OPERATOR_BOT_SECRET)
        .await;
    let why = description(&host.get(&usage("sub-a"), &token).await);
    assert!(
        why.contains("not trusted") && why.contains("no [[identity.issuers]]"),
        "{why}"
    );
}

/// The host of [`host_trusting`], with the provider's console client, served
/// over HTTP; its base URL.
async fn console_trusting(provider: &OidcProvider) -> (TestHost, String) {
    let host = TestHost::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config: IdentityConfig = toml::from_str(&format!(
        r#"[[issuers]]
issuer = "{}"
display_name = "Test IdP"
audiences = ["{RESOURCE}"]
operator = ["tally.operator"]
tenant = ["tally.tenant"]
subscriptions_claim = "subscriptions"
client_id = "{CONSOLE}"
client_secret = "{CONSOLE_SECRET}"
"#,
        provider.issuer()
    ))
    .unwrap();
    let mut settings = host.settings.clone();
    settings
        .allowed_hosts
        .push(base.trim_start_matches("http://").to_owned());
    let app = api::router(
        AppState::new(host.store.clone(), settings).with_identity(Identity::new(&config).unwrap()),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    provider
        .set_console_redirects(
            &[&format!("{base}/v1/session/callback")],
            &[&format!("{base}/")],
        )
        .await;
    (host, base)
}

/// `name=value` of a response's `Set-Cookie` for `name`.
fn cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

#[tokio::test]
async fn a_person_signs_in_to_the_console_through_the_provider_and_out_again() {
    let provider = OidcProvider::start();
    let (_host, base) = console_trusting(&provider).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let providers: Value = browser
        .get(format!("{base}/v1/session/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(providers[0]["name"], "Test IdP");
    let start = format!(
        "{base}{}&return=%23%2Fusage",
        providers[0]["signInUrl"].as_str().unwrap()
    );
    let leaving = browser.get(&start).send().await.unwrap();
    assert!(leaving.status().is_redirection());
    let pending = cookie(&leaving, "tally_sso");
    let authorize = leaving.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.starts_with(provider.issuer())
            && authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );

    let back = provider.sign_in(&authorize, ALICE).await;
    assert!(
        back.starts_with(&format!("{base}/v1/session/callback?code=")),
        "{back}"
    );
    // Without the pending sign-in's cookie (another browser), nobody is signed in.
    let stranger = browser.get(&back).send().await.unwrap();
    let to = stranger.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/#/sign-in?error="), "{to}");
    assert!(
        stranger
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("tally_session="))
    );

    let back = provider.sign_in(&authorize, ALICE).await;
    let arrived = browser
        .get(&back)
        .header("cookie", &pending)
        .send()
        .await
        .unwrap();
    assert_eq!(arrived.headers()["location"], "/#/usage");
    let session = cookie(&arrived, "tally_session");
    let who: Value = browser
        .get(format!("{base}/v1/session"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["role"], "tenant");
    assert_eq!(who["subscriptions"], json!(["sub-a"]));
    assert_eq!(who["provider"], "Test IdP");
    assert!(who["subject"].as_str().unwrap().starts_with("alice@"));
    let read = |subscription: &str| {
        browser
            .get(format!("{base}{}", usage(subscription)))
            .header("cookie", &session)
            .send()
    };
    assert_eq!(read("sub-a").await.unwrap().status(), StatusCode::OK);
    assert_eq!(read("sub-b").await.unwrap().status(), StatusCode::FORBIDDEN);

    // Signing out ends the session here and names the provider's logout.
    let out = browser
        .delete(format!("{base}/v1/session"))
        .header("cookie", &session)
        .header("x-csrf-token", who["csrfToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let logout: Value = out.json().await.unwrap();
    let logout = logout["logoutUrl"].as_str().unwrap();
    assert!(
        logout.starts_with(provider.issuer()) && logout.contains("post_logout_redirect_uri"),
        "{logout}"
    );
    assert_eq!(
        read("sub-a").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_forged_callback_signs_nobody_in() {
    let provider = OidcProvider::start();
    let (_host, base) = console_trusting(&provider).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let leaving = browser
        .get(format!("{base}/v1/session/sso?provider=0"))
        .send()
        .await
        .unwrap();
    let pending = cookie(&leaving, "tally_sso");
    for query in [
        "code=made-up&state=wrong",
        "error=access_denied&error_description=no",
        "state=x",
    ] {
        let answer = browser
            .get(format!("{base}/v1/session/callback?{query}"))
            .header("cookie", &pending)
            .send()
            .await
            .unwrap();
        let to = answer.headers()["location"].to_str().unwrap();
        assert!(to.starts_with("/#/sign-in?error="), "{query}: {to}");
    }
    // A made-up code with the right state is refused by the provider.
    let state = url::Url::parse(leaving.headers()["location"].to_str().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let answer = browser
        .get(format!(
            "{base}/v1/session/callback?code=made-up&state={state}"
        ))
        .header("cookie", &pending)
        .send()
        .await
        .unwrap();
    let to = answer.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/#/sign-in?error="), "{to}");
    assert_eq!(
        browser
            .get(format!("{base}/v1/session/sso?provider=7"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn starting_sign_ins_in_a_loop_reads_the_issuers_discovery_once() {
    let provider = OidcProvider::start();
    let (_host, base) = console_trusting(&provider).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (before, _) = provider.requests().await;
    for _ in 0..25 {
        let leaving = browser
            .get(format!("{base}/v1/session/sso?provider=0"))
            .send()
            .await
            .unwrap();
        assert!(leaving.status().is_redirection());
    }
    let (after, _) = provider.requests().await;
    assert_eq!(
        after - before,
        1,
        "the discovery document is read once, then cached"
    );
}
