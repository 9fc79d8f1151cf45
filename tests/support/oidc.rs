//! A real OpenID Connect provider for the single sign-on tests:
//! `node tests/oidc/provider.mjs` (oidc-provider, pinned in
//! tests/oidc/package-lock.json; `tests/run.sh` installs it). Without Node
//! or its packages a test fails with a message saying so; it never skips.
//!
//! Its clients, users and test-only endpoints (`/__test/…`) are described
//! at the top of `provider.mjs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The resource indicator of tally's API: the `aud` of the provider's access tokens.
pub const RESOURCE: &str = "api://tally";
/// A client-credentials client whose tokens carry `roles: ["tally.operator"]`.
pub const OPERATOR_BOT: &str = "tally-operator-bot";
pub const OPERATOR_BOT_SECRET: &str = "tally-operator-bot-secret";
/// A client-credentials client whose tokens carry `roles: ["tally.reporter"]`.
pub const REPORTER_BOT: &str = "tally-reporter-bot";
pub const REPORTER_BOT_SECRET: &str = "tally-reporter-bot-secret";
/// A client-credentials client whose tokens carry no roles: valid, granting nothing.
pub const NOBODY: &str = "tally-nobody";
pub const NOBODY_SECRET: &str = "tally-nobody-secret";
/// The console: authorization code with PKCE (S256), scopes `openid profile email`.
pub const CONSOLE: &str = "tally-console";
pub const CONSOLE_SECRET: &str = "console-secret";
/// A user with `roles: ["tally.tenant"]` and `subscriptions: ["sub-a"]`.
pub const ALICE: (&str, &str) = ("alice", "alice-pw");
/// A user with `groups: ["tally-operators"]` and `roles: ["tally.operator"]`.
pub const OLGA: (&str, &str) = ("olga", "olga-pw");

/// The provider's folder, `tests/oidc/`.
pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc")
}

/// A running provider on a free loopback port; stopped when dropped.
pub struct OidcProvider {
    child: Child,
    issuer: String,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts the provider with the console's redirect URIs unset.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// Starts the provider with environment variables (`OIDC_CONSOLE_REDIRECT`,
    /// `OIDC_CONSOLE_POST_LOGOUT`; comma-separated lists).
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        assert!(
            oidc_dir()
                .join("node_modules/oidc-provider/package.json")
                .exists(),
            "tests/oidc/node_modules has no oidc-provider: run tests/run.sh (it runs `npm ci` in tests/oidc)"
        );
        let started = Instant::now();
        // Its log, to say why should it not start.
        let log = tempfile::NamedTempFile::new().expect("a log file for the provider");
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(oidc_dir())
            .env("OIDC_PORT", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("the log file opens"))
            .spawn()
            .unwrap_or_else(|e| panic!("node does not start ({e}): install Node.js 20+"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(issuer) = line.trim().strip_prefix("oidc-provider listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!("the OpenID provider did not start (stdout {line:?}); its log:\n{log}");
        };
        eprintln!(
            "OpenID provider at {issuer}, started in {:?}",
            started.elapsed()
        );
        OidcProvider {
            child,
            issuer: issuer.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The issuer identifier, also the base URL (`http://127.0.0.1:PORT`, no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The discovery document (`/.well-known/openid-configuration`).
    pub async fn discovery(&self) -> Value {
        self.get_json("/.well-known/openid-configuration").await
    }

    /// The JWKS the discovery document names (`jwks_uri`).
    pub async fn jwks(&self) -> Value {
        self.get_json("/jwks").await
    }

    /// An access token for tally's API from the token endpoint, by the
    /// client-credentials grant with `resource=api://tally`.
    pub async fn client_credentials_token(&self, client_id: &str, secret: &str) -> String {
        let response = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)])
            .send()
            .await
            .expect("the token endpoint answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON token response");
        assert!(
            status.is_success(),
            "token for {client_id}: {status} {body}"
        );
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {body}"))
            .to_owned()
    }

    /// `claims`, signed as they are with the provider's current RSA key
    /// (RS256, its `kid`, `typ: at+jwt`): a genuine token whatever the claims say.
    pub async fn mint(&self, claims: Value) -> String {
        self.mint_with_header(claims, json!({})).await
    }

    /// [`OidcProvider::mint`] with header fields added or replaced. `alg` may
    /// be `RS256` (the default) or `ES256`: the token is then signed with the
    /// provider's current EC P-256 key, and its `kid` is that key's unless
    /// the header names another.
    pub async fn mint_with_header(&self, claims: Value, header: Value) -> String {
        let body = self
            .post_json("/__test/mint", json!({"claims": claims, "header": header}))
            .await;
        body["token"].as_str().unwrap().to_owned()
    }

    /// Replaces the signing keys (the RSA and the EC one): later tokens carry
    /// new `kid`s, and the JWKS lists only the new keys. Returns the new RSA
    /// key's `kid` (the one of the provider's own tokens and of [`OidcProvider::mint`]).
    pub async fn rotate(&self) -> String {
        let body = self.post_json("/__test/rotate", json!({})).await;
        body["kid"].as_str().unwrap().to_owned()
    }

    /// Sets the console client's redirect URIs (once tally's address is known).
    pub async fn set_console_redirects(&self, redirect_uris: &[&str], post_logout: &[&str]) {
        self.post_json(
            "/__test/console",
            json!({"redirect_uris": redirect_uris, "post_logout_redirect_uris": post_logout}),
        )
        .await;
    }

    /// How many requests the discovery document and the JWKS had since start:
    /// `(discovery, jwks)`.
    pub async fn requests(&self) -> (u64, u64) {
        let body = self.get_json("/__test/requests").await;
        (
            body["discovery"].as_u64().unwrap(),
            body["jwks"].as_u64().unwrap(),
        )
    }

    /// Signs a user in, as a browser would, from an authorization request
    /// (`authorization_url`, at the provider's `/auth`, e.g. where tally's
    /// console redirects): follows the provider's redirects, fills its login
    /// form with `(username, password)` (consent is granted without asking),
    /// and returns the first redirect that leaves the provider — the client's
    /// `redirect_uri` with `code` and `state`, or with an `error`.
    pub async fn sign_in(
        &self,
        authorization_url: &str,
        (username, password): (&str, &str),
    ) -> String {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // The provider's cookies (its session and interaction), by name.
        let mut cookies = std::collections::BTreeMap::<String, String>::new();
        let mut url = authorization_url.to_owned();
        let mut signed_in = false;
        for _ in 0..10 {
            let cookie = cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            let login = url.contains("/interaction/") && !signed_in;
            let request = if login {
                signed_in = true;
                browser
                    .post(format!("{url}/login"))
                    .form(&[("username", username), ("password", password)])
            } else {
                browser.get(&url)
            };
            let response = request.header("cookie", cookie).send().await.unwrap();
            for set_cookie in response.headers().get_all("set-cookie") {
                let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                cookies.insert(name.to_owned(), value.to_owned());
            }
            let status = response.status();
            let Some(location) = response.headers().get("location") else {
                let body = response.text().await.unwrap_or_default();
                panic!("signing {username} in: {status} at {url}, no redirect:\n{body}");
            };
            let location = reqwest::Url::parse(&url)
                .unwrap()
                .join(location.to_str().unwrap())
                .unwrap()
                .to_string();
            if !location.starts_with(&format!("{}/", self.issuer)) {
                return location;
            }
            url = location;
        }
        panic!("signing {username} in: too many redirects, at {url}");
    }

    /// Sends SIGTERM and waits for the provider to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child, not reaped yet (so the pid is still its).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        self.child.wait().unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.issuer))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON reply");
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    async fn post_json(&self, path: &str, request: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.issuer))
            .json(&request)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON reply");
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JWT's header and payload, decoded (its signature is not checked).
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS in compact form: {token}");
    let decode = |part: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}
