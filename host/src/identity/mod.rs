//! Single sign-on: JWTs from the operator's OpenID Connect provider (Entra
//! ID, AD FS, Keycloak…), accepted beside tally's own `tly_…` tokens.
//!
//! A bearer value is told apart by its shape, never by trying both: `tly_…`
//! is a tally token, three base64url parts a JWT. A JWT is verified against
//! the keys of the issuer its `iss` names ([`keys`]; only the issuers of
//! `[[identity.issuers]]` in `tally.toml`, [`config`]): an asymmetric
//! signature (`none` and HMAC refused), `exp` (required), `nbf`, `iat` with
//! the issuer's clock skew, and an audience of tally's. Its claims then map
//! to a role and subscriptions by the issuer's configuration ([`claims`]).
//! Every refusal says why in words ([`error`]).

pub mod claims;
pub mod config;
pub mod error;
pub mod keys;
pub mod sign_in;

use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use config::{IdentityConfig, IssuerConfig};
pub use error::TokenError;
use keys::{KeySet, KeySource, Lookup};

/// Longest JWT looked at, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest subject kept (grants, sessions, the access log).
pub const MAX_SUBJECT_BYTES: usize = 256;
/// The signature algorithms accepted: asymmetric only.
pub const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// The trusted issuers, with their cached keys.
#[derive(Debug, Default)]
pub struct Identity {
    issuers: Vec<Issuer>,
    client: reqwest::Client,
}

#[derive(Debug)]
struct Issuer {
    config: IssuerConfig,
    keys: KeySet,
    /// The console's endpoints at this issuer, with when they were read.
    endpoints: tokio::sync::Mutex<Option<(std::time::Instant, sign_in::Endpoints)>>,
}

/// A token whose signature and claims hold.
#[derive(Debug)]
pub struct Verified<'a> {
    pub issuer: &'a IssuerConfig,
    /// The value of the issuer's `subject_claim`.
    pub subject: String,
    pub claims: Map<String, Value>,
}

impl Verified<'_> {
    /// Who the token is, as sessions and the access log name it: `subject@issuer`.
    pub fn who(&self) -> String {
        format!("{}@{}", self.subject, self.issuer.issuer)
    }
}

impl Identity {
    /// The issuers of `config` (checked); keys are fetched at first use.
    pub fn new(config: &IdentityConfig) -> anyhow::Result<Arc<Self>> {
        config.check()?;
        let client = reqwest::Client::builder()
            .timeout(keys::FETCH_TIMEOUT)
            .build()?;
        let issuers = config
            .issuers
            .iter()
            .map(|issuer| {
                let source = match &issuer.jwks_file {
                    Some(path) => KeySource::File(path.clone()),
                    None => KeySource::Discovery {
                        issuer: issuer.issuer.clone(),
                        url: issuer.discovery_url.clone(),
                    },
                };
                Issuer {
                    config: issuer.clone(),
                    keys: KeySet::new(source, issuer.key_refresh_floor, client.clone()),
                    endpoints: Default::default(),
                }
            })
            .collect();
        Ok(Arc::new(Identity { issuers, client }))
    }

    /// Whether any issuer is trusted.
    pub fn is_enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Verifies a JWT for tally's API at `now`.
    pub async fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified<'_>, TokenError> {
        self.check(token, now, None).await
    }

    /// Verifies a JWT at `now`: an access token for tally's audiences, or
    /// with `id_token_of`, an ID token of that provider for its console client.
    async fn check(
        &self,
        token: &str,
        now: DateTime<Utc>,
        id_token_of: Option<usize>,
    ) -> Result<Verified<'_>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, _signature] = parts[..] else {
            return Err(TokenError::Malformed(
                "a JWT has three parts separated by '.'".into(),
            ));
        };
        let header = json_part(header, "header")?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        let algorithm = Algorithm::from_str(alg)
            .ok()
            .filter(|a| ALGORITHMS.contains(a))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed(printable(alg)))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let unverified = json_part(payload, "payload")?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::MissingClaim("iss".into()))?;
        let issuer = self
            .issuers
            .iter()
            .enumerate()
            .find(|(index, i)| i.config.issuer == iss && id_token_of.is_none_or(|of| of == *index))
            .map(|(_, issuer)| issuer)
            .ok_or_else(|| TokenError::UnknownIssuer {
                issuer: printable(iss),
                trusted: if self.issuers.is_empty() {
                    "none: tally.toml lists no [[identity.issuers]]".to_owned()
                } else {
                    self.issuers
                        .iter()
                        .map(|i| i.config.issuer.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?;
        let candidates = match issuer.keys.lookup(kid).await {
            Lookup::Found(keys) => keys,
            Lookup::Unknown { refresh_error } => {
                return Err(TokenError::UnknownKey {
                    kid: kid.map(printable),
                    issuer: issuer.config.issuer.clone(),
                    refresh_error,
                });
            }
        };
        let mut validation = Validation::new(algorithm);
        // The claims are checked below, with messages of our own and the
        // store's clock; the library checks the signature and algorithm.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut verified = None;
        for candidate in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &candidate.key, &validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(error) => tracing::debug!(%error, "a candidate key did not verify the token"),
            }
        }
        let claims = verified.ok_or(TokenError::BadSignature)?;
        claims::check_times(&claims, now, issuer.config.clock_skew)?;
        match (id_token_of, &issuer.config.client_id) {
            (Some(_), Some(client_id)) => {
                claims::check_audience(&claims, std::slice::from_ref(client_id))?
            }
            _ => claims::check_audience(&claims, &issuer.config.audiences)?,
        }
        let subject = claims
            .get(&issuer.config.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| {
                !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES && !crate::text::has_control(s)
            })
            .ok_or_else(|| TokenError::MissingClaim(issuer.config.subject_claim.clone()))?
            .to_owned();
        Ok(Verified {
            issuer: &issuer.config,
            subject,
            claims,
        })
    }
}

/// Whether a bearer value has a JWT's shape (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty() && parts < 3
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}

/// A base64url JSON object part of a JWT.
fn json_part(part: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("its {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed(format!("its {what} is not a JSON object")))
}

/// Text from a token, cut and made printable for a message.
fn printable(text: &str) -> String {
    crate::text::escape_controls(&crate::text::truncate(text, 200), |_| true).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_jwts_from_tally_tokens_by_shape() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(!looks_like_jwt("tly_abc"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a b.c.d"));
    }

    #[tokio::test]
    async fn refuses_none_hmac_and_unknown_issuers_before_any_key_is_fetched() {
        let config: IdentityConfig = toml::from_str(
            "[[issuers]]\nissuer = 'https://idp.invalid'\naudiences = ['api://tally']\n",
        )
        .unwrap();
        let identity = Identity::new(&config).unwrap();
        let token = |header: &str, payload: &str| {
            format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload)
            )
        };
        let now = Utc::now();
        let none = identity
            .verify(
                &token(r#"{"alg":"none"}"#, r#"{"iss":"https://idp.invalid"}"#),
                now,
            )
            .await;
        assert_eq!(
            none.unwrap_err(),
            TokenError::AlgorithmNotAllowed("none".into())
        );
        let hmac = identity
            .verify(
                &token(r#"{"alg":"HS256"}"#, r#"{"iss":"https://idp.invalid"}"#),
                now,
            )
            .await;
        assert_eq!(
            hmac.unwrap_err(),
            TokenError::AlgorithmNotAllowed("HS256".into())
        );
        let stranger = identity
            .verify(
                &token(r#"{"alg":"RS256"}"#, r#"{"iss":"https://evil"}"#),
                now,
            )
            .await;
        assert!(matches!(
            stranger.unwrap_err(),
            TokenError::UnknownIssuer { .. }
        ));
        assert!(matches!(
            identity.verify("a.b", now).await.unwrap_err(),
            TokenError::Malformed(_)
        ));
    }
}
