//! An issuer's signing keys: fetched through OIDC discovery (or read from a
//! JWKS file), cached, and fetched again when a token names a key id the
//! cache does not hold — at most once per `key_refresh_floor`, so that a
//! flood of made-up key ids costs the issuer one request per floor. When the
//! issuer cannot be reached, the keys already cached keep working.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use tokio::sync::Mutex;

/// Largest discovery document or JWKS read.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Most keys kept of one issuer.
pub const MAX_KEYS: usize = 64;
/// How long one fetch from the issuer may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again at the next token, so that a key
/// the issuer withdrew stops verifying (kept if the issuer cannot be reached).
pub const KEY_MAX_AGE: Duration = Duration::from_secs(3600);

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A discovery document (by default
    /// `{issuer}/.well-known/openid-configuration`), then its `jwks_uri`.
    /// The document must name the issuer as its `issuer` or, as AD FS does
    /// for access tokens, its `access_token_issuer`.
    Discovery { issuer: String, url: Option<String> },
    /// A JWKS file (air-gapped).
    File(PathBuf),
}

/// A verification key (RSA or EC; never a shared secret).
#[derive(Clone)]
pub struct Key {
    pub id: Option<String>,
    pub key: DecodingKey,
}

/// The cache of one issuer's keys.
pub struct KeySet {
    source: KeySource,
    floor: Duration,
    client: reqwest::Client,
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    keys: Vec<Key>,
    /// When the last fetch was tried (successful or not).
    fetched: Option<Instant>,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
}

/// What a lookup found.
pub enum Lookup {
    /// The keys to try: the one with the token's key id, or, for a token
    /// without one, every key.
    Found(Vec<Key>),
    /// No key with this id, even after a refresh (or a refresh was not
    /// allowed yet); the last fetch error, if any.
    Unknown { refresh_error: Option<String> },
}

impl KeySet {
    pub fn new(source: KeySource, floor: Duration, client: reqwest::Client) -> Self {
        KeySet {
            source,
            floor,
            client,
            state: Mutex::new(Cached::default()),
        }
    }

    /// The keys for a token's key id (`None`: the token names none).
    pub async fn lookup(&self, kid: Option<&str>) -> Lookup {
        let mut cached = self.state.lock().await;
        let stale = cached.fetched.is_none_or(|at| at.elapsed() >= KEY_MAX_AGE);
        if !stale && let Some(found) = matching(&cached.keys, kid) {
            return Lookup::Found(found);
        }
        let may_refresh = cached.fetched.is_none_or(|at| at.elapsed() >= self.floor);
        if may_refresh {
            cached.fetched = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(source = ?self.source, keys = keys.len(), "identity provider keys fetched");
                    cached.keys = keys;
                    cached.last_error = None;
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    tracing::warn!(source = ?self.source, error, "could not fetch the identity provider's keys; keeping the cached ones");
                    cached.last_error = Some(error);
                }
            }
            if let Some(found) = matching(&cached.keys, kid) {
                return Lookup::Found(found);
            }
        }
        Lookup::Unknown {
            refresh_error: cached.last_error.clone(),
        }
    }

    async fn fetch(&self) -> anyhow::Result<Vec<Key>> {
        let jwks: JwkSet = match &self.source {
            KeySource::File(path) => {
                let path = path.clone();
                let text = tokio::task::spawn_blocking(move || std::fs::read(&path))
                    .await?
                    .with_context(|| "reading the JWKS file")?;
                serde_json::from_slice(&text).context("the JWKS file is not a JWKS")?
            }
            KeySource::Discovery { issuer, url } => {
                let url = discovery_url(issuer, url.as_deref());
                let discovery: serde_json::Value = fetch_json(&self.client, &url).await?;
                let names = |field: &str| discovery[field].as_str() == Some(issuer.as_str());
                if !names("issuer") && !names("access_token_issuer") {
                    bail!(
                        "{url} names the issuer {}, not '{issuer}'",
                        discovery["issuer"]
                    );
                }
                let jwks_uri = discovery["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| anyhow!("{url} has no jwks_uri"))?;
                fetch_json(&self.client, jwks_uri).await?
            }
        };
        let keys: Vec<Key> = jwks
            .keys
            .iter()
            .filter(|jwk| {
                // Signing keys only, and never a shared secret: a token whose
                // header says HS256 must not verify against a public key.
                matches!(
                    jwk.algorithm,
                    AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
                ) && jwk
                    .common
                    .public_key_use
                    .as_ref()
                    .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature)
            })
            .take(MAX_KEYS)
            .filter_map(|jwk| {
                Some(Key {
                    id: jwk.common.key_id.clone(),
                    key: DecodingKey::from_jwk(jwk).ok()?,
                })
            })
            .collect();
        if keys.is_empty() {
            bail!("the issuer's key set has no RSA or EC signing key");
        }
        Ok(keys)
    }
}

/// The keys a token may be verified with.
fn matching(keys: &[Key], kid: Option<&str>) -> Option<Vec<Key>> {
    let found: Vec<Key> = match kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.id.as_deref() == Some(kid))
            .cloned()
            .collect(),
        None => keys.to_vec(),
    };
    (!found.is_empty()).then_some(found)
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("source", &self.source)
            .finish()
    }
}

/// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`] from an issuer.
pub(crate) async fn fetch_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let mut response = client
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("GET {url}: {status}");
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("GET {url}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            bail!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {url}: not the JSON expected"))
}

/// The discovery document's URL of an issuer.
pub(crate) fn discovery_url(issuer: &str, configured: Option<&str>) -> String {
    configured.map(str::to_owned).unwrap_or_else(|| {
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        )
    })
}
