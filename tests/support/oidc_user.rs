//! A user's access token from the test OpenID provider, obtained as a
//! native client does: the authorization code flow with PKCE (S256), the
//! browser's part played by [`OidcProvider::sign_in`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::Digest;

use super::oidc::{CONSOLE, CONSOLE_SECRET, OidcProvider};

/// Where the provider sends the code: a loopback port nothing listens on
/// (the sign-in stops at the redirect, as a native client's listener would).
const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// Signs `user` (username, password) in through the console client and
/// returns the access token for tally's API (`aud` `api://tally`) that the
/// token endpoint issues for the code. Sets the console client's redirect URI.
pub async fn user_access_token(provider: &OidcProvider, user: (&str, &str)) -> String {
    provider.set_console_redirects(&[CALLBACK], &[]).await;
    let verifier = tally::auth::new_secret();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut authorize = reqwest::Url::parse(&format!("{}/auth", provider.issuer())).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", CONSOLE)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "sdk-state");
    let landed = reqwest::Url::parse(&provider.sign_in(authorize.as_str(), user).await).unwrap();
    let code = landed
        .query_pairs()
        .find(|(name, _)| name == "code")
        .unwrap_or_else(|| {
            panic!(
                "no code in the redirect after {}'s sign-in: {landed}",
                user.0
            )
        })
        .1
        .into_owned();

    let response = reqwest::Client::new()
        .post(format!("{}/token", provider.issuer()))
        .basic_auth(CONSOLE, Some(CONSOLE_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .expect("the token endpoint answers");
    let status = response.status();
    let tokens: Value = response.json().await.expect("a JSON token response");
    assert!(
        status.is_success(),
        "token for {}: {status} {tokens}",
        user.0
    );
    tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {tokens}"))
        .to_owned()
}
