//! The `output.send` import: requests to external billing systems, made by
//! the host on the adapter's behalf, only to the origins its installation
//! allows.
//!
//! Limits (per request unless said): body 1 MiB each way, 10 s to answer and
//! never past the run's deadline, 10,000 requests per run. Redirects are not
//! followed (a redirect could lead to an origin that is not allowed), and no
//! proxy from the environment is used, so the allowed origin is the one
//! reached.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::contract::tally::billing::output::{OutboundRequest, OutboundResponse, SendError};
use super::sandbox::RunState;

/// Largest request or response body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest wait for one answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests in one run.
pub const MAX_REQUESTS: u64 = 10_000;
/// The header that lets a receiver drop a request it already has.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Headers an adapter may not set (lower case), besides `proxy-*`.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
];

/// An origin an installation may send to: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin(url::Origin);

impl AllowedOrigin {
    /// Parses `scheme://host[:port]` (http or https; nothing after the port).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(text)
            .with_context(|| format!("'{text}' is not an origin (scheme://host[:port])"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("'{text}': only http and https origins can be allowed");
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            bail!("'{text}': an allowed host is scheme://host[:port], without path or credentials");
        }
        Ok(AllowedOrigin(url.origin()))
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.ascii_serialization())
    }
}

/// What a run may send, and to whom.
pub struct Egress {
    /// The run's id, the stem of every idempotency key.
    pub run_id: String,
    pub allowed: Vec<AllowedOrigin>,
    pub client: reqwest::Client,
    /// The runtime the client's futures run on (runs execute on blocking threads).
    pub runtime: tokio::runtime::Handle,
    /// When the run's deadline falls: no request waits past it.
    pub deadline: Instant,
    /// Requests made so far; the next one's key ends in `sent + 1`.
    pub sent: u64,
}

impl Egress {
    /// Egress for a run, with the host's HTTP client settings.
    pub fn new(
        run_id: String,
        allowed: Vec<AllowedOrigin>,
        runtime: tokio::runtime::Handle,
        deadline: Instant,
    ) -> Self {
        Egress {
            run_id,
            allowed,
            client: client(),
            runtime,
            deadline,
            sent: 0,
        }
    }
}

/// The HTTP client of `send`: no redirects, no proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client with static settings")
}

impl RunState {
    /// `output.send`, after the checks; refusals are logged as errors.
    pub(super) fn send_request(
        &mut self,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, SendError> {
        let result = match &mut self.egress {
            None => Err(Refusal::NotAllowed(
                "sending is possible only during export".into(),
            )),
            Some(egress) => send(egress, request),
        };
        if let Err(Refusal::NotAllowed(reason) | Refusal::LimitReached(_, reason)) = &result {
            self.log
                .lock()
                .expect("run log lock")
                .push("error", format!("send refused: {reason}"));
        }
        result.map_err(SendError::from)
    }
}

fn send(egress: &mut Egress, request: OutboundRequest) -> Result<OutboundResponse, Refusal> {
    let url = url::Url::parse(&request.url)
        .map_err(|e| Refusal::NotAllowed(format!("'{}' is not a URL: {e}", request.url)))?;
    let origin = url.origin();
    if !egress.allowed.iter().any(|allowed| allowed.0 == origin) {
        return Err(Refusal::NotAllowed(format!(
            "{} is not in this installation's allowed_outbound_hosts",
            origin.ascii_serialization()
        )));
    }
    if egress.sent >= MAX_REQUESTS {
        return Err(Refusal::LimitReached(
            MAX_REQUESTS,
            format!("the run's cap of {MAX_REQUESTS} requests is reached"),
        ));
    }
    if request.body.len() > MAX_BODY_BYTES {
        return Err(Refusal::TooLarge(MAX_BODY_BYTES as u64));
    }
    let method = match request.method.to_ascii_uppercase().as_str() {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        "PATCH" => reqwest::Method::PATCH,
        "DELETE" => reqwest::Method::DELETE,
        other => {
            return Err(Refusal::NotAllowed(format!(
                "method '{other}' is not allowed"
            )));
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| Refusal::Failed(format!("'{name}' is not a header name")))?;
        if RESERVED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("proxy-") {
            // Host would reach another virtual host behind an allowed address;
            // the others belong to the connection, which the host manages.
            return Err(Refusal::NotAllowed(format!(
                "the header '{name}' is set by the host"
            )));
        }
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| Refusal::Failed(format!("the value of '{name}' is not a header value")))?;
        headers.append(name, value);
    }
    egress.sent += 1;
    let key = format!("{}.{}", egress.run_id, egress.sent);
    headers.insert(
        IDEMPOTENCY_KEY,
        HeaderValue::try_from(key)
            .map_err(|_| Refusal::Failed("the run id is not ASCII".into()))?,
    );
    let timeout = REQUEST_TIMEOUT.min(egress.deadline.saturating_duration_since(Instant::now()));
    let call = egress
        .client
        .request(method, url)
        .headers(headers)
        .body(request.body)
        .send();
    egress.runtime.block_on(async {
        let exchange = async {
            let mut response = call.await.map_err(transport)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(Refusal::TooLarge(MAX_BODY_BYTES as u64));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(OutboundResponse {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Refusal::Timeout(format!(
                    "no complete answer within {timeout:?}"
                )))
            })
    })
}

/// A `send-error`, with the reason logged for refusals.
enum Refusal {
    NotAllowed(String),
    TooLarge(u64),
    Timeout(String),
    Failed(String),
    LimitReached(u64, String),
}

impl From<Refusal> for SendError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotAllowed(reason) => SendError::NotAllowed(reason),
            Refusal::TooLarge(limit) => SendError::TooLarge(limit),
            Refusal::Timeout(reason) => SendError::Timeout(reason),
            Refusal::Failed(reason) => SendError::Failed(reason),
            Refusal::LimitReached(limit, _) => SendError::LimitReached(limit),
        }
    }
}

/// A transport error with its causes ("connection refused"…), which
/// reqwest's own message leaves out.
fn transport(error: reqwest::Error) -> Refusal {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_timeout() {
        Refusal::Timeout(reason)
    } else {
        Refusal::Failed(reason)
    }
}
