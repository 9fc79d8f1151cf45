//! Signing people in to the console through an issuer: OpenID Connect's
//! authorization-code flow with PKCE (S256), a `state` against login CSRF
//! and a `nonce` bound to the ID token. What the browser must remember
//! between leaving for the issuer and coming back is a [`Pending`] sign-in,
//! kept in a short-lived cookie, so that nothing is stored for a person who
//! never comes back.

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::{discovery_url, fetch_json};
use super::{Identity, IssuerConfig, TokenError, Verified};

/// How long an issuer's endpoints are used before its discovery document is read again.
pub const ENDPOINTS_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// How long a person may take at the issuer's login page.
pub const SIGN_IN_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// The endpoints of an issuer the console uses.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    /// RP-initiated logout, where the issuer offers it.
    pub end_session: Option<String>,
}

/// A sign-in on its way through the issuer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    /// Which of the sign-in providers.
    pub provider: usize,
    pub state: String,
    pub verifier: String,
    pub nonce: String,
    /// The console route to go back to (`#/usage`).
    pub return_to: String,
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Pending {
    /// A new sign-in through `provider`, returning to `return_to`.
    pub fn new(provider: usize, return_to: String) -> Self {
        Pending {
            provider,
            state: random(),
            verifier: random(),
            nonce: random(),
            return_to,
        }
    }

    /// The PKCE challenge of the verifier (S256).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }

    /// As a cookie value (base64url JSON).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("serialisable"))
    }

    /// From a cookie value.
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()
    }
}

impl Identity {
    /// The issuers people can sign in to the console with (those with a
    /// `client_id`), by index, with their names.
    pub fn sign_in_providers(&self) -> Vec<(usize, String)> {
        self.issuers
            .iter()
            .enumerate()
            .filter(|(_, issuer)| issuer.config.client_id.is_some())
            .map(|(index, issuer)| (index, display_name(&issuer.config)))
            .collect()
    }

    /// The sign-in provider at `index`, if it is one.
    pub fn sign_in_provider(&self, index: usize) -> Option<&IssuerConfig> {
        self.issuers
            .get(index)
            .map(|issuer| &issuer.config)
            .filter(|config| config.client_id.is_some())
    }

    /// The name of the issuer `issuer`, as the console shows it.
    pub fn name_of(&self, issuer: &str) -> Option<String> {
        self.issuers
            .iter()
            .find(|i| i.config.issuer == issuer)
            .map(|i| display_name(&i.config))
    }

    /// The issuer's endpoints, from its discovery document, read at most
    /// once per [`ENDPOINTS_TTL`]: a sign-in page hit in a loop by anyone
    /// must not make tally hit the issuer in a loop.
    pub async fn endpoints(&self, config: &IssuerConfig) -> anyhow::Result<Endpoints> {
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == config.issuer)
            .ok_or_else(|| anyhow!("'{}' is not a trusted issuer", config.issuer))?;
        let mut cached = issuer.endpoints.lock().await;
        if let Some((read, endpoints)) = cached.as_ref()
            && read.elapsed() < ENDPOINTS_TTL
        {
            return Ok(endpoints.clone());
        }
        let endpoints = self.read_endpoints(config).await?;
        *cached = Some((std::time::Instant::now(), endpoints.clone()));
        Ok(endpoints)
    }

    async fn read_endpoints(&self, config: &IssuerConfig) -> anyhow::Result<Endpoints> {
        let url = discovery_url(&config.issuer, config.discovery_url.as_deref());
        let document: serde_json::Value = fetch_json(&self.client, &url).await?;
        let field = |name: &str| document[name].as_str().map(str::to_owned);
        Ok(Endpoints {
            authorization: field("authorization_endpoint")
                .ok_or_else(|| anyhow!("{url} has no authorization_endpoint"))?,
            token: field("token_endpoint").ok_or_else(|| anyhow!("{url} has no token_endpoint"))?,
            end_session: field("end_session_endpoint"),
        })
    }

    /// Where to send the browser to sign in.
    pub async fn authorization_url(
        &self,
        pending: &Pending,
        redirect_uri: &str,
    ) -> anyhow::Result<String> {
        let config = self
            .sign_in_provider(pending.provider)
            .ok_or_else(|| anyhow!("no sign-in provider {}", pending.provider))?;
        let endpoints = self.endpoints(config).await?;
        let mut url = url::Url::parse(&endpoints.authorization)
            .context("the issuer's authorization_endpoint is not a URL")?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", config.client_id.as_deref().unwrap_or_default())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid profile email")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pending.challenge())
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Redeems an authorization code at the token endpoint and verifies the
    /// ID token it answers (signature, issuer, audience = the console's
    /// client, times, and the pending sign-in's nonce).
    pub async fn redeem(
        &self,
        pending: &Pending,
        code: &str,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Result<Verified<'_>, TokenError>> {
        let config = self
            .sign_in_provider(pending.provider)
            .ok_or_else(|| anyhow!("no sign-in provider {}", pending.provider))?;
        let endpoints = self.endpoints(config).await?;
        let client_id = config.client_id.as_deref().unwrap_or_default();
        let mut request = self.client.post(&endpoints.token).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("code_verifier", &pending.verifier),
        ]);
        if let Some(secret) = &config.client_secret {
            request = request.basic_auth(client_id, Some(secret));
        }
        let response = request
            .timeout(super::keys::FETCH_TIMEOUT)
            .send()
            .await
            .context("the issuer's token endpoint")?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .context("the issuer's token endpoint answered no JSON")?;
        if !status.is_success() {
            bail!(
                "the issuer refused the sign-in: {} {}",
                body["error"].as_str().unwrap_or("error"),
                body["error_description"].as_str().unwrap_or_default()
            );
        }
        let id_token = body["id_token"]
            .as_str()
            .ok_or_else(|| anyhow!("the issuer answered no id_token"))?;
        let verified = match self.check(id_token, now, Some(pending.provider)).await {
            Ok(verified) => verified,
            Err(error) => return Ok(Err(error)),
        };
        if verified.claims.get("nonce").and_then(|n| n.as_str()) != Some(pending.nonce.as_str()) {
            return Ok(Err(TokenError::Malformed(
                "the ID token's nonce is not the sign-in's".into(),
            )));
        }
        Ok(Ok(verified))
    }

    /// Where to send the browser to sign out at `issuer` too, if it offers it.
    pub async fn logout_url(&self, issuer: &str, post_logout_redirect: &str) -> Option<String> {
        let config = &self
            .issuers
            .iter()
            .find(|i| i.config.issuer == issuer)?
            .config;
        let endpoints = self.endpoints(config).await.ok()?;
        let mut url = url::Url::parse(endpoints.end_session.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", config.client_id.as_deref().unwrap_or_default())
            .append_pair("post_logout_redirect_uri", post_logout_redirect);
        Some(url.into())
    }
}

/// An issuer's name on the sign-in button.
fn display_name(config: &IssuerConfig) -> String {
    config.display_name.clone().unwrap_or_else(|| {
        url::Url::parse(&config.issuer)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| config.issuer.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_sign_in_round_trips_and_its_challenge_is_s256() {
        let pending = Pending::new(0, "#/usage".into());
        assert_eq!(Pending::decode(&pending.encode()), Some(pending.clone()));
        assert_eq!(Pending::decode("not-base64!"), None);
        // RFC 7636, appendix B.
        let known = Pending {
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
            ..pending
        };
        assert_eq!(
            known.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
