//! A client of a running host's REST API, for the commands that manage it
//! (`tally adapters …`, `tally export …`): `--url` and `--token`, and errors
//! turned into the host's own message.

use anyhow::{Context, anyhow};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::api::ErrorResponse;

/// Where the host is and who is asking.
#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// The host's URL.
    #[arg(long, env = "TALLY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: url::Url,
    /// An operator token.
    #[arg(long, env = "TALLY_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// A client bound to one host and token.
pub struct HostClient {
    http: reqwest::Client,
    args: HostArgs,
}

impl HostClient {
    /// A client for `args`.
    pub fn new(args: HostArgs) -> Self {
        HostClient {
            http: reqwest::Client::new(),
            args,
        }
    }

    /// A request to `path` (from the root of the API, e.g. `/v1/adapters`).
    pub fn request(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        // Appended to the base, so that a host behind a path prefix works.
        let base = self.args.url.as_str().trim_end_matches('/');
        let url = url::Url::parse(&format!("{base}{path}"))
            .with_context(|| format!("{path} on {}", self.args.url))?;
        Ok(self.http.request(method, url).bearer_auth(&self.args.token))
    }

    /// Sends and decodes a JSON answer; a refusal becomes the host's message.
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> anyhow::Result<T> {
        let response = self.send(request).await?;
        response
            .json()
            .await
            .context("the host's answer is not the JSON expected")
    }

    /// Sends; a refusal becomes the host's message.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the host at {}", self.args.url))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorResponse>(&text) {
            Ok(error) => Err(anyhow!(
                "{} ({status}, {})",
                error.error.message,
                error.error.code
            )),
            Err(_) => Err(anyhow!("the host answered {status}: {text}")),
        }
    }
}
