//! The `output.send` import: requests to external billing systems, made by
//! the host on the adapter's behalf, only to the origins its installation
//! allows.
//!
//! Limits (per request unless said): body 1 MiB each way, 100 headers and
//! 16 KiB of header names and values, 10 s to answer and never past the run's
//! deadline, 10,000 requests per run. Redirects are not followed (a redirect
//! could lead to an origin that is not allowed), and no proxy from the
//! environment is used, so the allowed origin is the one reached. URLs with
//! credentials (`https://user:pass@…`) are refused: an adapter sets an
//! `Authorization` header itself, so nothing is sent that it did not write.
//!
//! An allowed host *name* must not lead inside: its DNS answers are filtered
//! ([`is_internal`]: loopback, link-local, cloud metadata, unspecified,
//! multicast), so a name that resolves (or is re-pointed) to 127.0.0.1 or
//! 169.254.169.254 reaches nothing. An operator who means an internal address
//! allows it as an IP literal (`http://127.0.0.1:9000`), which is then also
//! reachable under that installation's names that resolve to it.
//!
//! Runs share their HTTP clients ([`OutboundClients`], one per host): connections
//! are pooled and the root certificates loaded once. What a run may reach is
//! checked per request (origin, headers, caps) except DNS, which a client's
//! resolver answers; so runs share the client of their resolver policy —
//! every run that allows no internal IP literal beside host names (nearly
//! all) the one default client — and a pooled connection is never reused by
//! a run whose policy would not have opened it.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::contract::tally::billing::output::{OutboundRequest, OutboundResponse, SendError};
use super::limits::{RunClock, RunState};

/// Largest request or response body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest wait for one answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests in one run.
pub const MAX_REQUESTS: u64 = 10_000;
/// Most headers an adapter may set on one request (more: `not-allowed`).
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values an adapter may set on one request
/// (more: `too-large`); servers commonly refuse a request whose headers pass
/// 8–16 KiB anyway.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Cloud metadata services outside the link-local range (Alibaba Cloud,
/// Azure's WireServer, AWS's IPv6 endpoint), refused like internal addresses.
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)];
/// Most clients an [`OutboundClients`] keeps, one per resolver policy (a set of
/// internal IP literals allowed beside host names); a run of a further
/// policy gets a client of its own.
const MAX_POLICY_CLIENTS: usize = 64;
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
    /// The origin's IP address, when its host is an IP literal.
    fn ip_literal(&self) -> Option<IpAddr> {
        match &self.0 {
            url::Origin::Tuple(_, url::Host::Ipv4(ip), _) => Some(IpAddr::V4(*ip)),
            url::Origin::Tuple(_, url::Host::Ipv6(ip), _) => Some(IpAddr::V6(*ip)),
            _ => None,
        }
    }

    /// Parses `scheme://host[:port]` (http or https; nothing after the port).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(text)
            .with_context(|| format!("'{text}' is not an origin (scheme://host[:port])"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("'{text}': only http and https origins can be allowed");
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Named without its credentials: the error reaches logs and the operator's terminal.
            bail!(
                "'{}' with credentials: an allowed host is scheme://host[:port], without credentials",
                url.origin().ascii_serialization()
            );
        }
        if url.path() != "/" || url.query().is_some() {
            bail!("'{text}': an allowed host is scheme://host[:port], without path or query");
        }
        Ok(AllowedOrigin(url.origin()))
    }
}

impl fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.ascii_serialization())
    }
}

/// Where a run may send requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// To these origins (the installation's `allowed_outbound_hosts`).
    Allowed(Vec<AllowedOrigin>),
    /// Nowhere: a verification re-runs an export to compare what it writes,
    /// and must not repeat its requests. `send` answers
    /// `not-allowed` ([`VERIFICATION_SENDS_NOTHING`]).
    Verification,
}

/// What `send` answers in a verification run.
pub const VERIFICATION_SENDS_NOTHING: &str = "a verification run sends no requests";
/// What `send` answers outside `export`.
pub const SENDING_ONLY_DURING_EXPORT: &str = "sending is possible only during export";

/// What a run may send, and to whom.
pub struct Egress {
    /// The run's id, the stem of every idempotency key.
    pub run_id: String,
    pub allowed: Vec<AllowedOrigin>,
    /// The host's client for the run's resolver policy ([`OutboundClients::client_for`]).
    pub client: reqwest::Client,
    /// The runtime the client's futures run on (runs execute on blocking threads).
    pub runtime: tokio::runtime::Handle,
    /// When the run's deadline falls: no request waits past it.
    pub deadline: Instant,
    /// Requests made so far; the next one's key ends in `sent + 1`.
    pub sent: u64,
}

impl Egress {
    /// Egress for a run to the `allowed` origins, through the host's clients.
    pub fn new(
        run_id: String,
        allowed: Vec<AllowedOrigin>,
        outbound: &OutboundClients,
        runtime: tokio::runtime::Handle,
        deadline: Instant,
    ) -> Self {
        Egress {
            run_id,
            client: outbound.client_for(&allowed),
            allowed,
            runtime,
            deadline,
            sent: 0,
        }
    }
}

/// The HTTP clients of `send`, shared by the runs of a host: each built once,
/// at the first run that needs it. Runs share the client of their resolver
/// policy (see the module's notes).
#[derive(Default)]
pub struct OutboundClients {
    /// By the internal IP literals a policy lets host names resolve to.
    clients: Mutex<HashMap<Vec<IpAddr>, reqwest::Client>>,
}

impl OutboundClients {
    /// The client of a run allowed to send to `allowed`: the default one
    /// (host names never resolve inside), unless `allowed` names both host
    /// names and internal IP literals, which those names may then resolve to.
    /// (IP-literal URLs are never resolved: the origin check covers them.)
    pub fn client_for(&self, allowed: &[AllowedOrigin]) -> reqwest::Client {
        let names_a_host = allowed.iter().any(|o| o.ip_literal().is_none());
        let mut internal: Vec<IpAddr> = allowed
            .iter()
            .filter_map(AllowedOrigin::ip_literal)
            .filter(|ip| names_a_host && is_internal(*ip))
            .collect();
        internal.sort();
        internal.dedup();
        let mut clients = self.clients.lock().expect("outbound clients lock");
        if let Some(client) = clients.get(&internal) {
            return client.clone();
        }
        let client = client(internal.clone());
        if clients.len() < MAX_POLICY_CLIENTS {
            clients.insert(internal, client.clone());
        }
        client
    }

    /// How many clients are kept.
    pub fn clients(&self) -> usize {
        self.clients.lock().expect("outbound clients lock").len()
    }
}

/// An HTTP client of `send`: no redirects, no proxy from the environment,
/// and host names resolved only to addresses that are not internal, or that
/// `ip_literals` (the allowed origins' IP literals) name.
fn client(ip_literals: Vec<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(REQUEST_TIMEOUT)
        .dns_resolver(Arc::new(OutsideOnly { ip_literals }))
        .build()
        .expect("an HTTP client with static settings")
}

/// Whether `ip` is inside the host or its cloud: loopback, link-local
/// (169.254.0.0/16, fe80::/10, where metadata services live), a known
/// metadata address, unspecified (0.0.0.0/8, ::), broadcast or multicast —
/// also when written as an IPv4-mapped or NAT64 IPv6 address. Private
/// networks (10/8, 192.168/16, fc00::/7…) are not: a private cloud's billing
/// system usually lives on one.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                || METADATA_V4.contains(&v4)
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            if let Some(v4) = v6.to_ipv4_mapped() {
                is_internal(IpAddr::V4(v4))
            } else if nat64 {
                let [.., a, b, c, d] = v6.octets();
                is_internal(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            } else {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || segments[0] & 0xffc0 == 0xfe80
                    || METADATA_V6.contains(&v6)
            }
        }
    }
}

/// The resolver of `send`: the system's answers without the internal ones
/// the operator did not allow as IP literals. (IP-literal URLs are not
/// resolved: their origin check is the operator's choice.)
struct OutsideOnly {
    ip_literals: Vec<IpAddr>,
}

/// A host name that resolves only to internal addresses.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} resolves only to internal addresses ({addresses}): allow the IP literal to reach them"
)]
struct InternalAddress {
    name: String,
    addresses: String,
}

impl reqwest::dns::Resolve for OutsideOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let ip_literals = self.ip_literals.clone();
        Box::pin(async move {
            let name = name.as_str().to_owned();
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let kept = reachable(name, found, &ip_literals)?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses `name` resolved to (`found`) that `send` may reach: those
/// outside the host and its cloud, and the internal ones `ip_literals`
/// allow. A name whose every answer is refused is an error that says so
/// (rather than an empty answer, which reads as "not found").
fn reachable(
    name: String,
    found: Vec<SocketAddr>,
    ip_literals: &[IpAddr],
) -> Result<Vec<SocketAddr>, InternalAddress> {
    let (kept, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = found
        .into_iter()
        .partition(|a| !is_internal(a.ip()) || ip_literals.contains(&a.ip()));
    if kept.is_empty() && !refused.is_empty() {
        let addresses = refused.iter().map(|a| a.ip().to_string());
        return Err(InternalAddress {
            name,
            addresses: addresses.collect::<Vec<_>>().join(", "),
        });
    }
    Ok(kept)
}

impl RunState {
    /// `output.send`, after the checks; refusals are logged as errors.
    pub(super) fn send_request(
        &mut self,
        request: OutboundRequest,
    ) -> wasmtime::Result<Result<OutboundResponse, SendError>> {
        let result = match &mut self.egress {
            None => Err(Refusal::NotAllowed(self.no_egress.into())),
            Some(egress) => send(egress, &self.clock, request),
        };
        // The run must stop: the trap ends the call at once.
        let result = match result {
            Err(Refusal::Stopped(stop)) => return Err(stop),
            other => other,
        };
        if let Err(Refusal::NotAllowed(reason) | Refusal::LimitReached(_, reason)) = &result {
            self.log
                .lock()
                .expect("run log lock")
                .push("error", format!("send refused: {reason}"));
        }
        Ok(result.map_err(SendError::from))
    }
}

/// Sends `request`, waiting for the answer no longer than `clock` allows
/// (its deadline, or the host's cancel switch: [`Refusal::Stopped`]).
fn send(
    egress: &mut Egress,
    clock: &RunClock,
    request: OutboundRequest,
) -> Result<OutboundResponse, Refusal> {
    let Checked {
        method,
        url,
        mut headers,
    } = check_request(&egress.allowed, egress.sent, &request)?;
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
    let answered = clock.block_on(&egress.runtime, async {
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
                append_capped(&mut body, &chunk)?;
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
    });
    answered.unwrap_or_else(|stop| Err(Refusal::Stopped(stop)))
}

/// A request that passed [`check_request`], ready to go out.
#[derive(Debug)]
struct Checked {
    method: reqwest::Method,
    url: url::Url,
    /// The adapter's headers, without the idempotency key.
    headers: HeaderMap,
}

/// The policy of `send`, before anything leaves the host: an allowed
/// origin, no credentials in the URL, the run's request cap (`sent` made
/// so far), the body cap, an allowed method, the header caps, and no header
/// that belongs to the host or the connection.
fn check_request(
    allowed: &[AllowedOrigin],
    sent: u64,
    request: &OutboundRequest,
) -> Result<Checked, Refusal> {
    let url = url::Url::parse(&request.url)
        .map_err(|e| Refusal::NotAllowed(format!("'{}' is not a URL: {e}", request.url)))?;
    let origin = url.origin();
    if !allowed.iter().any(|allowed| allowed.0 == origin) {
        return Err(Refusal::NotAllowed(format!(
            "{} is not in this installation's allowed_outbound_hosts",
            origin.ascii_serialization()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // reqwest would turn them into `Authorization: Basic`, a header the
        // adapter never set, sent to wherever the URL points.
        return Err(Refusal::NotAllowed(
            "credentials in the URL are not sent: set an Authorization header instead".into(),
        ));
    }
    if sent >= MAX_REQUESTS {
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
    if request.headers.len() > MAX_HEADERS {
        return Err(Refusal::NotAllowed(format!(
            "{} headers: at most {MAX_HEADERS} may be sent",
            request.headers.len()
        )));
    }
    let header_bytes: usize = (request.headers.iter())
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Refusal::TooLarge(MAX_HEADER_BYTES as u64));
    }
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
    Ok(Checked {
        method,
        url,
        headers,
    })
}

/// Adds a chunk of an answer to `body`, refusing an answer over
/// [`MAX_BODY_BYTES`] as soon as it passes them.
fn append_capped(body: &mut Vec<u8>, chunk: &[u8]) -> Result<(), Refusal> {
    if body.len() + chunk.len() > MAX_BODY_BYTES {
        return Err(Refusal::TooLarge(MAX_BODY_BYTES as u64));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// A `send-error`, with the reason logged for refusals.
#[derive(Debug)]
enum Refusal {
    NotAllowed(String),
    TooLarge(u64),
    Timeout(String),
    Failed(String),
    LimitReached(u64, String),
    /// The run must stop (deadline, cancel switch): a trap, not an answer.
    Stopped(wasmtime::Error),
}

impl From<Refusal> for SendError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotAllowed(reason) => SendError::NotAllowed(reason),
            Refusal::TooLarge(limit) => SendError::TooLarge(limit),
            Refusal::Timeout(reason) => SendError::Timeout(reason),
            Refusal::Failed(reason) => SendError::Failed(reason),
            Refusal::LimitReached(limit, _) => SendError::LimitReached(limit),
            Refusal::Stopped(stop) => SendError::Failed(stop.to_string()),
        }
    }
}

/// A transport error with its causes ("connection refused"…), which
/// reqwest's own message leaves out.
fn transport(error: reqwest::Error) -> Refusal {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(internal) = cause.downcast_ref::<InternalAddress>() {
            return Refusal::NotAllowed(internal.to_string());
        }
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An empty 200 answer.
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    /// A loopback HTTP server that answers 200 to every request and counts
    /// the connections it accepted.
    fn server() -> (u16, Arc<AtomicUsize>) {
        let (port, accepted, _heads) = server_answering(OK.to_vec());
        (port, accepted)
    }

    /// A loopback HTTP server that gives `answer` to every request, counts
    /// the connections it accepted and passes on each request's head.
    fn server_answering(
        answer: Vec<u8>,
    ) -> (u16, Arc<AtomicUsize>, std::sync::mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let (heads, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&request).into_owned());
                let _ = stream.write_all(&answer);
            }
        });
        (port, accepted, received)
    }

    fn egress_to(runtime: &tokio::runtime::Runtime, allowed: &[String]) -> Egress {
        egress_through(&OutboundClients::default(), runtime, origins(allowed))
    }

    fn origins(allowed: &[impl AsRef<str>]) -> Vec<AllowedOrigin> {
        allowed
            .iter()
            .map(|o| AllowedOrigin::parse(o.as_ref()).unwrap())
            .collect()
    }

    /// Egress to `allowed` through the clients of `outbound`.
    fn egress_through(
        outbound: &OutboundClients,
        runtime: &tokio::runtime::Runtime,
        allowed: Vec<AllowedOrigin>,
    ) -> Egress {
        let deadline = Instant::now() + Duration::from_secs(30);
        Egress::new(
            "run".into(),
            allowed,
            outbound,
            runtime.handle().clone(),
            deadline,
        )
    }

    /// A clock that never stops a test's request.
    fn unbounded() -> RunClock {
        RunClock {
            deadline: Instant::now() + Duration::from_secs(3_600),
            cancelled: None,
        }
    }

    fn get(url: String, headers: Vec<(String, String)>) -> OutboundRequest {
        OutboundRequest {
            method: "GET".into(),
            url,
            headers,
            body: vec![],
        }
    }

    #[test]
    fn internal_addresses_are_told_apart_from_private_and_public_ones() {
        let internal = [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "169.254.170.2",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "100.100.100.200",
            "168.63.129.16",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().unwrap()), "{ip} is internal");
        }
        let outside = [
            "10.0.0.5",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "8.8.8.8",
            "fd12::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ];
        for ip in outside {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is not internal");
        }
    }

    #[test]
    fn too_many_or_too_large_headers_are_refused_before_connecting() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (port, accepted) = server();
        let mut egress = egress_to(&runtime, &[format!("http://127.0.0.1:{port}")]);
        let url = format!("http://127.0.0.1:{port}/lines");

        let many = (0..10_000)
            .map(|i| (format!("x-h{i}"), "v".to_string()))
            .collect();
        let refusal = send(&mut egress, &unbounded(), get(url.clone(), many)).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::NotAllowed(r) if r.contains("at most 100")),
            "{refusal:?}"
        );

        let huge = vec![("x-big".to_string(), "a".repeat(4 << 20))];
        let refusal = send(&mut egress, &unbounded(), get(url.clone(), huge)).unwrap_err();
        assert!(matches!(refusal, Refusal::TooLarge(16_384)), "{refusal:?}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "nothing reached the server"
        );

        // Up to the limits, the request goes out.
        let value = "v".repeat(MAX_HEADER_BYTES / MAX_HEADERS - 8);
        let most = (0..MAX_HEADERS)
            .map(|i| (format!("x-h{i:03}"), value.clone()))
            .collect();
        let response = send(&mut egress, &unbounded(), get(url, most)).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    /// A run the host stops (its lease lost) stops waiting for an answer at
    /// once: a trap, not the request timeout's refusal.
    #[test]
    fn a_stopped_run_stops_waiting_for_an_answer() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        // Accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let _held: Vec<_> = listener.incoming().flatten().collect();
        });
        let mut egress = egress_to(&runtime, &[format!("http://127.0.0.1:{port}")]);
        let stopped = RunClock {
            deadline: Instant::now() + Duration::from_secs(3_600),
            cancelled: Some(Arc::new(std::sync::atomic::AtomicBool::new(true))),
        };
        let refusal = send(
            &mut egress,
            &stopped,
            get(format!("http://127.0.0.1:{port}/lines"), vec![]),
        )
        .unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Stopped(trap) if trap.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)),
            "{refusal:?}"
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (port, accepted) = server();
        let mut egress = egress_to(&runtime, &[format!("http://127.0.0.1:{port}")]);
        let url = format!("http://user:secret@127.0.0.1:{port}/lines");
        let refusal = send(&mut egress, &unbounded(), get(url, vec![])).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::NotAllowed(r) if r.contains("credentials")),
            "{refusal:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_allowed_name_that_resolves_inside_reaches_nothing_unless_the_ip_is_allowed() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (port, accepted) = server();
        let by_name = format!("http://localhost:{port}");
        let mut egress = egress_to(&runtime, std::slice::from_ref(&by_name));
        let refusal = send(
            &mut egress,
            &unbounded(),
            get(format!("{by_name}/lines"), vec![]),
        )
        .unwrap_err();
        assert!(
            matches!(&refusal, Refusal::NotAllowed(r) if r.contains("internal addresses")),
            "{refusal:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 0);

        // The operator allows the loopback literal: the name may reach it too.
        let mut egress = egress_to(
            &runtime,
            &[by_name.clone(), format!("http://127.0.0.1:{port}")],
        );
        let response = send(
            &mut egress,
            &unbounded(),
            get(format!("{by_name}/lines"), vec![]),
        )
        .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    fn request(method: &str, url: &str, headers: &[(&str, &str)], body: usize) -> OutboundRequest {
        OutboundRequest {
            method: method.into(),
            url: url.into(),
            headers: (headers.iter())
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body: vec![b'x'; body],
        }
    }

    /// `check_request` on a GET of `url` with `headers`, allowed the
    /// billing API's origin and a loopback literal.
    fn check(url: &str, headers: &[(&str, &str)]) -> Result<Checked, Refusal> {
        let allowed = origins(&["https://billing.example.com", "http://127.0.0.1:9000"]);
        check_request(&allowed, 0, &request("GET", url, headers, 0))
    }

    #[test]
    fn an_allowed_origin_is_a_scheme_host_and_port_and_nothing_else() {
        let written = [
            (
                "HTTPS://Billing.Example.COM:443/",
                "https://billing.example.com",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ];
        for (text, shown) in written {
            assert_eq!(AllowedOrigin::parse(text).unwrap().to_string(), shown);
        }
        let refused = [
            ("billing.example.com", "not an origin"),
            ("file:///etc/passwd", "only http and https"),
            ("https://billing.example.com/?all=1", "without path"),
            ("https://user@billing.example.com", "without credentials"),
            (
                "https://:hunter2@billing.example.com",
                "without credentials",
            ),
            (
                "https://user:hunter2@billing.example.com",
                "without credentials",
            ),
        ];
        for (text, expected) in refused {
            let error = AllowedOrigin::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains("hunter2"), "{text}: {error}");
        }
    }

    #[test]
    fn only_urls_of_an_allowed_origin_are_sent() {
        for url in [
            "https://billing.example.com/v1/lines?page=2",
            "https://BILLING.example.com:443/v1",
            "http://127.0.0.1:9000/",
        ] {
            let checked = check(url, &[]).unwrap_or_else(|r| panic!("{url}: {r:?}"));
            assert_eq!(checked.url.as_str(), url::Url::parse(url).unwrap().as_str());
        }
        for url in [
            "http://billing.example.com/v1",
            "https://billing.example.com:8443/v1",
            "https://api.billing.example.com/v1",
            "https://billing.example.com.example.net/v1",
            "http://127.0.0.1:9001/",
            "http://localhost:9000/",
            "http://[::ffff:127.0.0.1]:9000/",
        ] {
            let refusal = check(url, &[]).unwrap_err();
            assert!(
                matches!(&refusal, Refusal::NotAllowed(r) if r.contains("allowed_outbound_hosts")),
                "{url}: {refusal:?}"
            );
        }
        let refusal = check("/v1/lines", &[]).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::NotAllowed(r) if r.contains("is not a URL")),
            "{refusal:?}"
        );
    }

    #[test]
    fn a_user_name_or_a_password_alone_in_the_url_is_refused_too() {
        for url in [
            "https://user@billing.example.com/v1",
            "https://:secret@billing.example.com/v1",
        ] {
            let refusal = check(url, &[]).unwrap_err();
            assert!(
                matches!(&refusal, Refusal::NotAllowed(r) if r.contains("credentials")),
                "{url}: {refusal:?}"
            );
        }
    }

    #[test]
    fn the_usual_methods_are_sent_in_any_case_and_no_others() {
        let allowed = origins(&["https://billing.example.com"]);
        let url = "https://billing.example.com/v1";
        for (method, sent) in [
            ("get", reqwest::Method::GET),
            ("Post", reqwest::Method::POST),
            ("PUT", reqwest::Method::PUT),
            ("patch", reqwest::Method::PATCH),
            ("DELETE", reqwest::Method::DELETE),
        ] {
            let checked = check_request(&allowed, 0, &request(method, url, &[], 0)).unwrap();
            assert_eq!(checked.method, sent);
        }
        for method in ["HEAD", "OPTIONS", "CONNECT", "TRACE", ""] {
            let refusal = check_request(&allowed, 0, &request(method, url, &[], 0)).unwrap_err();
            assert!(
                matches!(&refusal, Refusal::NotAllowed(r) if r.contains("method")),
                "{method}: {refusal:?}"
            );
        }
    }

    #[test]
    fn a_run_sends_at_most_its_cap_of_requests() {
        let allowed = origins(&["https://billing.example.com"]);
        let post = request("POST", "https://billing.example.com/v1", &[], 10);
        check_request(&allowed, MAX_REQUESTS - 1, &post).unwrap();
        let refusal = check_request(&allowed, MAX_REQUESTS, &post).unwrap_err();
        assert!(
            matches!(refusal, Refusal::LimitReached(10_000, _)),
            "{refusal:?}"
        );
        // The adapter learns the cap itself.
        assert!(matches!(
            SendError::from(refusal),
            SendError::LimitReached(10_000)
        ));
    }

    #[test]
    fn request_and_answer_bodies_are_capped_at_one_mib() {
        let allowed = origins(&["https://billing.example.com"]);
        let url = "https://billing.example.com/v1";
        check_request(&allowed, 0, &request("POST", url, &[], MAX_BODY_BYTES)).unwrap();
        let refusal =
            check_request(&allowed, 0, &request("POST", url, &[], MAX_BODY_BYTES + 1)).unwrap_err();
        assert!(
            matches!(refusal, Refusal::TooLarge(1_048_576)),
            "{refusal:?}"
        );

        let mut body = Vec::new();
        append_capped(&mut body, &vec![0; MAX_BODY_BYTES - 1]).unwrap();
        append_capped(&mut body, &[1]).unwrap();
        let refusal = append_capped(&mut body, &[2]).unwrap_err();
        assert!(
            matches!(refusal, Refusal::TooLarge(1_048_576)),
            "{refusal:?}"
        );
        assert_eq!(body.len(), MAX_BODY_BYTES);
    }

    #[test]
    fn the_header_caps_hold_to_the_byte() {
        let allowed = origins(&["https://billing.example.com"]);
        let url = "https://billing.example.com/v1";
        let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("x-h{i:03}")).collect();
        let headers = |count: usize, value: &str| -> OutboundRequest {
            let headers: Vec<(&str, &str)> =
                names[..count].iter().map(|n| (n.as_str(), value)).collect();
            request("GET", url, &headers, 0)
        };
        check_request(&allowed, 0, &headers(MAX_HEADERS, "v")).unwrap();
        let refusal = check_request(&allowed, 0, &headers(MAX_HEADERS + 1, "v")).unwrap_err();
        assert!(matches!(refusal, Refusal::NotAllowed(_)), "{refusal:?}");

        // Names of 6 bytes: a value of the rest of the allowance, then one byte more.
        let value = "v".repeat(MAX_HEADER_BYTES - 6);
        check_request(&allowed, 0, &headers(1, &value)).unwrap();
        let refusal = check_request(&allowed, 0, &headers(1, &format!("{value}v"))).unwrap_err();
        assert!(matches!(refusal, Refusal::TooLarge(16_384)), "{refusal:?}");
    }

    #[test]
    fn headers_of_the_host_or_the_connection_are_refused_in_any_case() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "Upgrade",
            "TE",
            "Keep-Alive",
            "Proxy-Authorization",
            "proxy-connection",
        ] {
            let refusal = check("https://billing.example.com/v1", &[(name, "x")]).unwrap_err();
            assert!(
                matches!(&refusal, Refusal::NotAllowed(r) if r.contains("set by the host")),
                "{name}: {refusal:?}"
            );
        }
        let checked = check(
            "https://billing.example.com/v1",
            &[
                ("Authorization", "Bearer t"),
                ("Content-Type", "application/json"),
                ("X-Api-Key", "k"),
                ("x-api-key", "k2"),
            ],
        )
        .unwrap();
        let keys: Vec<_> = checked.headers.get_all("x-api-key").iter().collect();
        assert_eq!(keys, ["k", "k2"], "repeated headers are all sent");
    }

    #[test]
    fn a_header_that_would_inject_another_is_refused() {
        for (name, value) in [
            ("x-line", "a\r\nX-Injected: 1"),
            ("x-nul", "a\0b"),
            ("x-bad name", "v"),
            ("x:colon", "v"),
            ("", "v"),
        ] {
            let refusal = check("https://billing.example.com/v1", &[(name, value)]).unwrap_err();
            assert!(
                matches!(refusal, Refusal::Failed(_)),
                "{name:?}: {refusal:?}"
            );
        }
    }

    #[test]
    fn a_name_reaches_its_outside_addresses_and_the_internal_ones_allowed_as_literals() {
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 0);
        let kept = reachable(
            "billing.example.com".into(),
            vec![at("127.0.0.1"), at("10.0.0.5"), at("169.254.169.254")],
            &[],
        )
        .unwrap();
        assert_eq!(kept, [at("10.0.0.5")]);

        let refused = reachable(
            "billing.example.com".into(),
            vec![at("127.0.0.1"), at("169.254.169.254")],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            refused.contains("billing.example.com")
                && refused.contains("127.0.0.1, 169.254.169.254"),
            "{refused}"
        );

        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let kept = reachable(
            "billing.example.com".into(),
            vec![at("127.0.0.1"), at("169.254.169.254")],
            &[loopback],
        )
        .unwrap();
        assert_eq!(kept, [at("127.0.0.1")]);
    }

    /// Requests carry the run's idempotency keys, numbered by the requests
    /// that went out (a refused one takes no number), in place of any key
    /// the adapter set.
    #[test]
    fn each_request_carries_the_next_key_of_the_run() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (port, _accepted, heads) = server_answering(OK.to_vec());
        let mut egress = egress_to(&runtime, &[format!("http://127.0.0.1:{port}")]);
        let url = format!("http://127.0.0.1:{port}/lines");
        let own_key = vec![("Idempotency-Key".to_string(), "mine".to_string())];
        send(&mut egress, &unbounded(), get(url.clone(), own_key)).unwrap();
        send(
            &mut egress,
            &unbounded(),
            get("http://elsewhere.example/".into(), vec![]),
        )
        .unwrap_err();
        send(&mut egress, &unbounded(), get(url, vec![])).unwrap();
        let keys: Vec<String> = heads
            .try_iter()
            .map(|head| {
                let lines = head.lines().filter(|l| l.starts_with("idempotency-key:"));
                lines.collect::<Vec<_>>().join("|")
            })
            .collect();
        assert_eq!(keys, ["idempotency-key: run.1", "idempotency-key: run.2"]);
        assert_eq!(egress.sent, 2);
    }

    /// A redirect is handed to the adapter as it came, never followed: its
    /// target may be an origin the installation does not allow.
    #[test]
    fn redirects_are_answers_not_followed() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (elsewhere, reached) = server();
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (port, _accepted, _heads) = server_answering(answer.into_bytes());
        let mut egress = egress_to(
            &runtime,
            &[
                format!("http://127.0.0.1:{port}"),
                format!("http://127.0.0.1:{elsewhere}"),
            ],
        );
        let response = send(
            &mut egress,
            &unbounded(),
            get(format!("http://127.0.0.1:{port}/lines"), vec![]),
        )
        .unwrap();
        assert_eq!(response.status, 307);
        let location = response.headers.iter().find(|(k, _)| k == "location");
        assert_eq!(
            location.map(|(_, v)| v.clone()),
            Some(format!("http://127.0.0.1:{elsewhere}/"))
        );
        assert_eq!(reached.load(Ordering::SeqCst), 0);
    }

    /// Outside `export` (describe, validate-config) nothing is sent, and the
    /// refusal is in the run's log.
    #[test]
    fn only_an_export_may_send() {
        let mut state = RunState::new(&Default::default(), unbounded(), None, None);
        let answer = state
            .send_request(request("GET", "https://billing.example.com/", &[], 0))
            .unwrap();
        assert!(
            matches!(&answer, Err(SendError::NotAllowed(r)) if r.contains("only during export")),
            "{answer:?}"
        );
        let log = state.log.lock().unwrap();
        assert_eq!(log.lines.len(), 1);
        assert_eq!(log.lines[0].level, "error");
        assert!(log.lines[0].message.starts_with("send refused: "));
    }

    /// Runs share a host's clients, yet each keeps its own resolver policy:
    /// a name reaches the loopback address only in the run whose installation
    /// allows the loopback literal, before and after that run.
    #[test]
    fn runs_share_clients_and_keep_their_own_resolver_policy() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (port, accepted) = server();
        let by_name = format!("http://localhost:{port}");
        let by_literal = format!("http://127.0.0.1:{port}");
        let outbound = OutboundClients::default();
        let request = || get(format!("{by_name}/lines"), vec![]);

        let names_only = origins(std::slice::from_ref(&by_name));
        let mut first = egress_through(&outbound, &runtime, names_only.clone());
        let literal_only = origins(std::slice::from_ref(&by_literal));
        let mut literal = egress_through(&outbound, &runtime, literal_only);
        assert_eq!(outbound.clients(), 1, "one client for both policies");
        assert!(send(&mut first, &unbounded(), request()).is_err());
        let response = send(
            &mut literal,
            &unbounded(),
            get(format!("{by_literal}/lines"), vec![]),
        )
        .unwrap();
        assert_eq!(response.status, 200);

        let both = origins(&[by_name.clone(), by_literal.clone()]);
        let mut allowed = egress_through(&outbound, &runtime, both);
        assert_eq!(
            send(&mut allowed, &unbounded(), request()).unwrap().status,
            200
        );
        assert_eq!(outbound.clients(), 2);

        let mut again = egress_through(&outbound, &runtime, names_only);
        let refusal = send(&mut again, &unbounded(), request()).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::NotAllowed(r) if r.contains("internal addresses")),
            "{refusal:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(outbound.clients(), 2, "the policies' clients are reused");
    }
}
