//! The OpenID provider of the single sign-on tests (`support::oidc`),
//! checked over HTTP: what tally's JWT validation will rely on holds.

use serde_json::{Value, json};

use crate::support::oidc::{
    ALICE, CONSOLE, CONSOLE_SECRET, NOBODY, NOBODY_SECRET, OLGA, OPERATOR_BOT, OPERATOR_BOT_SECRET,
    OidcProvider, REPORTER_BOT, REPORTER_BOT_SECRET, RESOURCE, decode_jwt,
};

/// The `kid`s the JWKS lists.
async fn jwks_kids(provider: &OidcProvider) -> Vec<String> {
    let jwks = provider.jwks().await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn discovery_names_the_issuer_its_keys_and_token_endpoint() {
    let provider = OidcProvider::start();
    let issuer = provider.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");

    let discovery = provider.discovery().await;
    assert_eq!(discovery["issuer"], issuer);
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/token"));
    let grants = discovery["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!("client_credentials")), "{grants:?}");

    // One RSA and one EC P-256 key, each with its own kid.
    let jwks = provider.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{jwks}");
    let kinds: Vec<_> = keys
        .iter()
        .map(|key| (key["kty"].clone(), key["alg"].clone(), key["crv"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("RSA"), json!("RS256"), Value::Null),
            (json!("EC"), json!("ES256"), json!("P-256")),
        ]
    );
    assert_ne!(keys[0]["kid"], keys[1]["kid"]);
    for key in keys {
        assert!(key["kid"].is_string(), "{key}");
        assert!(key.get("d").is_none(), "the JWKS holds no private key");
    }
    assert_eq!(provider.requests().await, (1, 1));
}

#[tokio::test]
async fn client_credentials_tokens_are_jwts_for_tally_with_the_clients_roles() {
    let provider = OidcProvider::start();
    let kids = jwks_kids(&provider).await;

    let token = provider
        .client_credentials_token(OPERATOR_BOT, OPERATOR_BOT_SECRET)
        .await;
    let (header, payload) = decode_jwt(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    assert!(kids.contains(&header["kid"].as_str().unwrap().to_owned()));
    assert_eq!(payload["iss"], provider.issuer());
    assert_eq!(payload["aud"], RESOURCE);
    assert_eq!(payload["sub"], OPERATOR_BOT);
    assert_eq!(payload["client_id"], OPERATOR_BOT);
    assert_eq!(payload["roles"], json!(["tally.operator"]));
    let expires = payload["exp"].as_i64().unwrap();
    assert!(expires > now() + 60, "exp {expires}");

    let reporter = provider
        .client_credentials_token(REPORTER_BOT, REPORTER_BOT_SECRET)
        .await;
    assert_eq!(decode_jwt(&reporter).1["roles"], json!(["tally.reporter"]));

    // Valid, and granting nothing.
    let nobody = provider
        .client_credentials_token(NOBODY, NOBODY_SECRET)
        .await;
    let (_, payload) = decode_jwt(&nobody);
    assert_eq!(payload["aud"], RESOURCE);
    assert!(payload.get("roles").is_none(), "{payload}");
    assert!(payload.get("subscriptions").is_none(), "{payload}");
}

#[tokio::test]
async fn rotation_replaces_the_keys_and_mint_signs_with_the_current_ones() {
    let provider = OidcProvider::start();
    let first = jwks_kids(&provider).await;

    let kid = provider.rotate().await;
    let kids = jwks_kids(&provider).await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert_eq!(kids[0], kid, "the RSA key comes first");
    assert!(
        kids.iter().all(|k| !first.contains(k)),
        "new kids: {kids:?}, were {first:?}"
    );
    let token = provider
        .client_credentials_token(OPERATOR_BOT, OPERATOR_BOT_SECRET)
        .await;
    assert_eq!(decode_jwt(&token).0["kid"], kid.as_str());

    // Expired, and for another audience: signed as asked all the same.
    let claims = json!({
        "iss": provider.issuer(), "aud": "api://elsewhere", "sub": "minted",
        "exp": now() - 3_600, "roles": ["tally.operator"],
    });
    let minted = provider.mint(claims.clone()).await;
    let (header, payload) = decode_jwt(&minted);
    assert_eq!(header, json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}));
    assert_eq!(payload, claims);

    let minted = provider
        .mint_with_header(json!({"sub": "x"}), json!({"kid": "unknown-kid"}))
        .await;
    assert_eq!(decode_jwt(&minted).0["kid"], "unknown-kid");
    let jwks: Value = provider.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // ES256 on request, with the EC key's kid.
    let minted = provider
        .mint_with_header(claims.clone(), json!({"alg": "ES256"}))
        .await;
    let (header, payload) = decode_jwt(&minted);
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": "at+jwt", "kid": kids[1]})
    );
    assert_eq!(payload, claims);
}

#[tokio::test]
async fn the_provider_stops_cleanly_on_sigterm() {
    let mut provider = OidcProvider::start();
    provider.discovery().await;
    let status = provider.terminate();
    assert!(status.success(), "{status:?}");
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let verifier = tally::auth::new_secret();
    let digest = sha2::Sha256::digest(verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    (verifier, challenge)
}

#[tokio::test]
async fn the_console_signs_users_in_with_pkce_and_gets_their_claims() {
    let provider = OidcProvider::start();
    let callback = "http://127.0.0.1:9/console/callback";
    provider
        .set_console_redirects(&[callback], &["http://127.0.0.1:9/console/"])
        .await;

    for (user, claims) in [
        (
            ALICE,
            json!({"roles": ["tally.tenant"], "subscriptions": ["sub-a"]}),
        ),
        (
            OLGA,
            json!({"roles": ["tally.operator"], "groups": ["tally-operators"]}),
        ),
    ] {
        let (verifier, challenge) = pkce();
        let mut authorize = reqwest::Url::parse(&format!("{}/auth", provider.issuer())).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", CONSOLE)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid profile email")
            .append_pair("redirect_uri", callback)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "the-state")
            .append_pair("nonce", "the-nonce");
        let landed = provider.sign_in(authorize.as_str(), user).await;
        let landed = reqwest::Url::parse(&landed).unwrap();
        assert!(landed.as_str().starts_with(callback), "{landed}");
        let query: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
        assert_eq!(query["state"], "the-state");
        assert_eq!(query["iss"], provider.issuer());

        let response = reqwest::Client::new()
            .post(format!("{}/token", provider.issuer()))
            .basic_auth(CONSOLE, Some(CONSOLE_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", query["code"].as_str()),
                ("redirect_uri", callback),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .unwrap();
        let tokens: Value = response.json().await.unwrap();
        let (header, id) = decode_jwt(tokens["id_token"].as_str().expect("an ID token"));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(id["iss"], provider.issuer());
        assert_eq!(id["aud"], CONSOLE);
        assert_eq!(id["sub"], user.0);
        assert_eq!(id["nonce"], "the-nonce");
        let (_, access) = decode_jwt(tokens["access_token"].as_str().unwrap());
        assert_eq!(access["aud"], RESOURCE);
        assert_eq!(access["sub"], user.0);
        for (claim, value) in claims.as_object().unwrap() {
            assert_eq!(&id[claim], value, "ID token of {}: {id}", user.0);
            assert_eq!(
                &access[claim], value,
                "access token of {}: {access}",
                user.0
            );
        }
    }
}
