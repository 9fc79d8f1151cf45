//! Connections to PostgreSQL: TLS with rustls as the URL's `sslmode` says,
//! and never a password in clear on a connection without TLS.
//!
//! tokio-postgres parses the URL and speaks the protocol; the transport is
//! ours. Options read here (and taken out of the URL before tokio-postgres
//! sees it), as libpq reads them:
//!
//! - `sslmode`: `disable` (no TLS), `prefer` (the default: TLS if the server
//!   offers it, certificate not checked), `require` (TLS or no connection;
//!   certificate not checked unless `sslrootcert` is given, then as
//!   `verify-ca`), `verify-ca` (the chain must lead to a trusted root),
//!   `verify-full` (also the host name). `allow` is taken as `prefer`.
//! - `sslrootcert`: a PEM file of trusted roots, or `system` (the system's
//!   roots, also the default for `verify-ca` and `verify-full`).
//! - `allow_cleartext_password=true` (tally's own): let a server whose
//!   certificate is not verified (no TLS, or TLS under `prefer`/`require`)
//!   have the password in clear when it asks. Without it such a request ends
//!   the connection before the password is sent — what an impostor answering
//!   in place of the database would ask for, with or without TLS of its own.
//!   (SCRAM and MD5 answers do not reveal the password and stay allowed;
//!   under `verify-ca`/`verify-full` the server is who it says.)
//!
//! Unix-socket hosts are local: no TLS (PostgreSQL has none there), and the
//! password may be asked for in clear. Several hosts are tried in order, with
//! `target_session_attrs` honoured; `load_balance_hosts=random` is refused.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use anyhow::{Context, anyhow, bail};
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::config::{Host, LoadBalanceHosts, SslNegotiation, TargetSessionAttrs};
use tokio_postgres::tls::NoTls;
use tokio_postgres::{Client, Config};

use super::redact;

/// The SSLRequest message: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// `AuthenticationCleartextPassword`: an `R` message of length 8, code 3.
const CLEARTEXT_PASSWORD_REQUEST: u32 = 3;
/// The option that lets a password go in clear without TLS.
const ALLOW_CLEARTEXT: &str = "allow_cleartext_password";

/// How much TLS a connection must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, else cleartext (the default).
    Prefer,
    /// TLS always, without checking the server's certificate (as
    /// `verify-ca` when a root certificate is given, as libpq does).
    Require,
    /// TLS always, with a certificate signed by a trusted authority, for any
    /// host name.
    VerifyCa,
    /// TLS always, with a trusted certificate for the host name connected to.
    VerifyFull,
}

/// A parsed PostgreSQL URL and what it takes to reach the server.
#[derive(Clone)]
pub struct Target {
    /// The URL without the options read here; its `sslmode` is `disable`,
    /// as TLS is negotiated before tokio-postgres sees the stream.
    pub config: Config,
    /// How much TLS the connection must have (the URL's `sslmode`).
    pub ssl_mode: SslMode,
    tls: Option<Arc<ClientConfig>>,
    allow_cleartext_password: bool,
}

impl Target {
    /// Reads a `postgres://` URL; errors show it with its password hidden.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let fail =
            |e: &dyn std::fmt::Display| anyhow!("'{}' is not a PostgreSQL URL: {e}", redact(url));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let (mut mode, mut root_cert, mut allow_cleartext_password) = (None, None, false);
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|e| fail(&e))?;
            match key {
                "sslmode" => mode = Some(ssl_mode(&value).ok_or_else(|| fail(&"sslmode must be disable, allow, prefer, require, verify-ca or verify-full"))?),
                "sslrootcert" => root_cert = Some(value.into_owned()),
                ALLOW_CLEARTEXT => {
                    allow_cleartext_password = match &*value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(fail(&format!("{ALLOW_CLEARTEXT} must be true or false"))),
                    }
                }
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: Config = rest.parse().map_err(|e| fail(&e))?;
        if config.get_load_balance_hosts() != LoadBalanceHosts::Disable {
            return Err(fail(
                &"load_balance_hosts=random is not supported: hosts are tried in order",
            ));
        }
        let ssl_mode = match (mode.unwrap_or(SslMode::Prefer), &root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        if config.get_ssl_negotiation() == SslNegotiation::Direct
            && matches!(ssl_mode, SslMode::Disable | SslMode::Prefer)
        {
            return Err(fail(
                &"sslnegotiation=direct needs sslmode=require or stronger",
            ));
        }
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let tls = match ssl_mode {
            SslMode::Disable => None,
            mode => Some(Arc::new(
                tls_config(mode, root_cert.as_deref()).context("setting up TLS")?,
            )),
        };
        Ok(Target {
            config,
            ssl_mode,
            tls,
            allow_cleartext_password,
        })
    }

    /// Connects to the first host that answers (and suits
    /// `target_session_attrs`); the connection runs on its own task.
    pub async fn connect(
        &self,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let hosts = self.config.get_hosts();
        let ports = self.config.get_ports();
        let addrs = self.config.get_hostaddrs();
        let mut last = None;
        for index in 0..hosts.len().max(addrs.len()) {
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            let transport = self
                .open(hosts.get(index), addrs.get(index).copied(), port)
                .await;
            match self.start(transport).await {
                Ok(connected) => return Ok(connected),
                Err(error) => last = Some(error),
            }
        }
        match last {
            Some(error) => Err(error),
            None => {
                self.start(Err(io::Error::other("the URL names no host")))
                    .await
            }
        }
    }

    /// Starts a session over `transport`, or turns its failure into the
    /// error tokio-postgres would give (it has no public constructor for one).
    async fn start(
        &self,
        transport: io::Result<Transport>,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let stream = transport.unwrap_or_else(|error| Box::new(Failed(Some(error))));
        let (client, connection) = self.config.connect_raw(stream, NoTls).await?;
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "database connection closed");
            }
        });
        let wanted = self.config.get_target_session_attrs();
        if wanted != TargetSessionAttrs::Any {
            let read_only = client.query_one("SHOW transaction_read_only", &[]).await?;
            let read_only = read_only.get::<_, String>(0) == "on";
            if read_only != (wanted == TargetSessionAttrs::ReadOnly) {
                task.abort();
                let refused = format!("the server does not suit target_session_attrs={wanted:?}");
                return Err(self
                    .config
                    .connect_raw(Failed(Some(io::Error::other(refused))), NoTls)
                    .await
                    .err()
                    .expect("a failed stream fails"));
            }
        }
        Ok((client, task))
    }

    /// A stream to one host, with TLS as the mode says.
    async fn open(
        &self,
        host: Option<&Host>,
        addr: Option<IpAddr>,
        port: u16,
    ) -> io::Result<Transport> {
        let name = match host {
            #[cfg(unix)]
            Some(Host::Unix(dir)) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let socket = self.timed(tokio::net::UnixStream::connect(path)).await?;
                return Ok(Box::new(socket));
            }
            Some(Host::Tcp(name)) => name.clone(),
            None => addr.map(|a| a.to_string()).unwrap_or_default(),
        };
        let tcp = match addr {
            Some(ip) => self.timed(TcpStream::connect((ip, port))).await?,
            None => {
                self.timed(TcpStream::connect((name.as_str(), port)))
                    .await?
            }
        };
        tcp.set_nodelay(true)?;
        if self.config.get_keepalives() {
            let keepalive =
                socket2::TcpKeepalive::new().with_time(self.config.get_keepalives_idle());
            socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive)?;
        }
        self.secure(tcp, &name).await
    }

    async fn timed<T>(&self, connect: impl Future<Output = io::Result<T>>) -> io::Result<T> {
        match self.config.get_connect_timeout() {
            Some(limit) => tokio::time::timeout(*limit, connect)
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection timed out",
                    ))
                }),
            None => connect.await,
        }
    }

    /// TLS over `tcp` when the server offers it (or an error when the mode
    /// requires it and it does not); else the plain stream. Unless the
    /// server's certificate is verified, the stream is guarded against a
    /// request for the password in clear.
    async fn secure(&self, mut tcp: TcpStream, name: &str) -> io::Result<Transport> {
        let plain = |tcp| -> Transport {
            Box::new(NoClearPassword::new(tcp, self.allow_cleartext_password))
        };
        let Some(tls) = &self.tls else {
            return Ok(plain(tcp));
        };
        if self.config.get_ssl_negotiation() == SslNegotiation::Postgres {
            tcp.write_all(&SSL_REQUEST).await?;
            if tcp.read_u8().await? != b'S' {
                if self.ssl_mode == SslMode::Prefer {
                    return Ok(plain(tcp));
                }
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the server at {name} does not offer TLS, which sslmode={} requires",
                        mode_name(self.ssl_mode)
                    ),
                ));
            }
        }
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{name}' as a TLS server name: {e}"),
            )
        })?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS with {name}: {e}")))?;
        if matches!(self.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull) {
            Ok(Box::new(stream))
        } else {
            // Encrypted, but to whoever answered: an impostor speaks TLS too.
            Ok(Box::new(NoClearPassword::new(
                stream,
                self.allow_cleartext_password,
            )))
        }
    }
}

impl deadpool_postgres::Connect for Target {
    fn connect(
        &self,
        _: &Config,
    ) -> Pin<
        Box<
            dyn Future<
                    Output = Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
                > + Send
                + '_,
        >,
    > {
        Box::pin(Target::connect(self))
    }
}

fn ssl_mode(text: &str) -> Option<SslMode> {
    Some(match text {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        _ => return None,
    })
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// The rustls settings of a mode: which certificates it accepts.
fn tls_config(mode: SslMode, root_cert: Option<&str>) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(AnyHostName(webpki))
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    // What PostgreSQL 17 asks of direct TLS; others ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// The trusted roots: a PEM file, or the system's.
fn roots(root_cert: Option<&str>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        None | Some("system") => {
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                bail!("no system root certificates were found: give sslrootcert=PATH");
            }
        }
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(Path::new(path))
                .with_context(|| format!("reading sslrootcert {path}"))?;
            for cert in certs {
                roots
                    .add(cert.with_context(|| format!("reading sslrootcert {path}"))?)
                    .with_context(|| format!("sslrootcert {path}"))?;
            }
            if roots.is_empty() {
                bail!("sslrootcert {path} holds no certificate");
            }
        }
    }
    Ok(roots)
}

/// `prefer` and `require`: encryption without checking who answers (as
/// libpq does), but the handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name may differ.
#[derive(Debug)]
struct AnyHostName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        // webpki checks the chain before the name: a name error means the
        // chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The byte stream under a session: TLS, TCP or a Unix socket.
type Transport = Box<dyn Stream>;

/// What a transport must be.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// A stream to a server whose identity is not verified (no TLS, or TLS
/// under `prefer`/`require`) that fails, before the password can be
/// written, when the server's first message asks for it in clear.
struct NoClearPassword<S> {
    inner: S,
    /// The first message's type, length and authentication code.
    header: [u8; 9],
    seen: usize,
    checked: bool,
}

impl<S> NoClearPassword<S> {
    fn new(inner: S, allow_cleartext_password: bool) -> Self {
        NoClearPassword {
            inner,
            header: [0; 9],
            seen: 0,
            checked: allow_cleartext_password,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoClearPassword<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        for &byte in &buf.filled()[before..] {
            if this.checked {
                break;
            }
            this.header[this.seen] = byte;
            this.seen += 1;
            if this.seen == 1 && byte != b'R' {
                this.checked = true;
            } else if this.seen == this.header.len() {
                this.checked = true;
                let code = u32::from_be_bytes(this.header[5..9].try_into().expect("4 bytes"));
                if code == CLEARTEXT_PASSWORD_REQUEST {
                    // The request is a whole message only with this byte:
                    // the client never sees it, and sends nothing.
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "the server asked for the password in clear, but it is not verified \
                             (no TLS, or sslmode below verify-ca); refused (use \
                             sslmode=verify-full, or add {ALLOW_CLEARTEXT}=true to the URL)"
                        ),
                    )));
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoClearPassword<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream that fails at once with the error it holds.
struct Failed(Option<io::Error>);

impl Failed {
    fn error(&mut self) -> io::Error {
        self.0
            .take()
            .unwrap_or_else(|| io::Error::other("connection failed"))
    }
}

impl AsyncRead for Failed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }
}

impl AsyncWrite for Failed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        _: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.error()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.error()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// What a fake server on the loopback received from one connection: it
    /// answers an SSLRequest with `N`, or with `S` and a TLS handshake when
    /// given a certificate; then the startup message with a request for the
    /// password in clear, and reads the answer if one comes (decrypted).
    async fn fake_server(
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let first = read_message(&mut socket, &mut received).await.unwrap();
            if first != SSL_REQUEST[4..] {
                ask_for_the_password(&mut socket, &mut received).await;
                return received;
            }
            let Some(tls) = tls else {
                socket.write_all(b"N").await.unwrap();
                if read_message(&mut socket, &mut received).await.is_some() {
                    ask_for_the_password(&mut socket, &mut received).await;
                }
                return received;
            };
            socket.write_all(b"S").await.unwrap();
            let Ok(mut socket) = tokio_rustls::TlsAcceptor::from(tls).accept(socket).await else {
                return received; // the client refused the certificate
            };
            if read_message(&mut socket, &mut received).await.is_some() {
                ask_for_the_password(&mut socket, &mut received).await;
            }
            received
        });
        (port, received)
    }

    /// Reads a length-prefixed message (no type byte) into `received`.
    async fn read_message(
        socket: &mut (impl AsyncRead + Unpin),
        received: &mut Vec<u8>,
    ) -> Option<Vec<u8>> {
        let mut length = [0u8; 4];
        socket.read_exact(&mut length).await.ok()?;
        let mut message = vec![0u8; u32::from_be_bytes(length) as usize - 4];
        socket.read_exact(&mut message).await.ok()?;
        received.extend_from_slice(&length);
        received.extend_from_slice(&message);
        Some(message)
    }

    /// Sends AuthenticationCleartextPassword and reads the password message,
    /// if the client sends one.
    async fn ask_for_the_password(
        socket: &mut (impl AsyncRead + AsyncWrite + Unpin),
        received: &mut Vec<u8>,
    ) {
        let _ = socket.write_all(b"R\0\0\0\x08\0\0\0\x03").await;
        let _ = socket.flush().await;
        let mut header = [0u8; 5];
        if socket.read_exact(&mut header).await.is_ok() {
            received.extend_from_slice(&header);
            let length = u32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
            let mut body = vec![0u8; length.saturating_sub(4)];
            if socket.read_exact(&mut body).await.is_ok() {
                received.extend_from_slice(&body);
            }
        }
    }

    /// A self-signed certificate for `localhost` (made by the openssl
    /// command) as a rustls server config, and its PEM file.
    fn self_signed(dir: &Path) -> (Arc<rustls::ServerConfig>, String) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost"])
            // A server's certificate, not a CA's (which webpki refuses to
            // meet as the server's).
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl command");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let certs = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        (Arc::new(config), cert.to_str().unwrap().to_owned())
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[tokio::test]
    async fn a_server_asking_for_the_password_in_clear_without_tls_never_gets_it() {
        for options in ["", "?sslmode=prefer", "?sslmode=disable"] {
            let (port, received) = fake_server(None).await;
            let url = format!("postgres://tally:hunter2@127.0.0.1:{port}/tally{options}");
            let error = Target::parse(&url).unwrap().connect().await.err().unwrap();
            let message = format!("{:#}", anyhow::Error::from(error));
            assert!(
                message.contains("asked for the password in clear"),
                "{options}: {message}"
            );
            let received = received.await.unwrap();
            assert!(contains(&received, "tally"), "the startup message came");
            assert!(
                !contains(&received, "hunter2"),
                "{options}: the password was sent"
            );
        }

        // Through the store's pool too.
        let (port, received) = fake_server(None).await;
        let url = format!("postgres://tally:hunter2@127.0.0.1:{port}/tally");
        let error = super::super::PostgresStore::open(&url).await.err().unwrap();
        let message = format!("{error:#}");
        assert!(
            message.contains("asked for the password in clear"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!contains(&received.await.unwrap(), "hunter2"));
    }

    #[tokio::test]
    async fn an_impostor_with_tls_of_its_own_gets_the_password_only_once_verified() {
        let dir = tempfile::tempdir().unwrap();
        let (tls, cert) = self_signed(dir.path());
        for mode in ["prefer", "require"] {
            let (port, received) = fake_server(Some(tls.clone())).await;
            let url = format!("postgres://tally:hunter2@localhost:{port}/tally?sslmode={mode}");
            let error = Target::parse(&url).unwrap().connect().await.err().unwrap();
            let message = format!("{:#}", anyhow::Error::from(error));
            assert!(
                message.contains("asked for the password in clear"),
                "{mode}: {message}"
            );
            let received = received.await.unwrap();
            assert!(
                contains(&received, "tally"),
                "{mode}: the session started, over TLS"
            );
            assert!(
                !contains(&received, "hunter2"),
                "{mode}: the password was sent"
            );
        }
        // Not the certificate the system trusts: verify-full never starts.
        let (port, received) = fake_server(Some(tls.clone())).await;
        let url = format!("postgres://tally:hunter2@localhost:{port}/tally?sslmode=verify-full");
        let error = Target::parse(&url).unwrap().connect().await.err().unwrap();
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(message.contains("certificate"), "{message}");
        assert!(!contains(&received.await.unwrap(), "hunter2"));
        // A server proven by its certificate may ask for the password in clear.
        let (port, received) = fake_server(Some(tls)).await;
        let url = format!(
            "postgres://tally:hunter2@localhost:{port}/tally?sslmode=verify-full&sslrootcert={cert}"
        );
        let _ = Target::parse(&url).unwrap().connect().await;
        assert!(contains(&received.await.unwrap(), "hunter2"));
    }

    #[tokio::test]
    async fn the_password_goes_in_clear_only_when_the_url_allows_it() {
        let (port, received) = fake_server(None).await;
        let url = format!("postgres://tally:hunter2@127.0.0.1:{port}/tally?{ALLOW_CLEARTEXT}=true");
        let _ = Target::parse(&url).unwrap().connect().await;
        assert!(contains(&received.await.unwrap(), "hunter2"));
    }

    #[tokio::test]
    async fn sslmode_require_refuses_a_server_without_tls() {
        let (port, received) = fake_server(None).await;
        let url = format!("postgres://tally:hunter2@127.0.0.1:{port}/tally?sslmode=require");
        let error = Target::parse(&url).unwrap().connect().await.err().unwrap();
        let message = format!("{:#}", anyhow::Error::from(error));
        assert!(
            message.contains("does not offer TLS, which sslmode=require requires"),
            "{message}"
        );
        assert_eq!(
            received.await.unwrap(),
            SSL_REQUEST,
            "only the SSLRequest was sent"
        );
    }

    #[test]
    fn options_are_read_and_checked() {
        let target = Target::parse(
            "postgres://u@db.example/tally?sslmode=verify-full&application_name=tally",
        )
        .unwrap();
        assert_eq!(target.ssl_mode, SslMode::VerifyFull);
        assert_eq!(target.config.get_application_name(), Some("tally"));
        assert_eq!(
            Target::parse("postgres://u@h/d").unwrap().ssl_mode,
            SslMode::Prefer
        );
        let bad = [
            (
                "postgres://u:hunter2@h/d?sslmode=sometimes",
                "sslmode must be",
            ),
            (
                "postgres://u:hunter2@h/d?sslmode=verify-full&sslrootcert=/nonexistent.pem",
                "sslrootcert",
            ),
            (
                "postgres://u:hunter2@h/d?allow_cleartext_password=maybe",
                ALLOW_CLEARTEXT,
            ),
            (
                "postgres://u:hunter2@h/d?sslnegotiation=direct",
                "sslnegotiation=direct",
            ),
            (
                "postgres://u:hunter2@h/d?load_balance_hosts=random",
                "load_balance_hosts",
            ),
        ];
        for (url, expected) in bad {
            let message = format!("{:#}", Target::parse(url).err().unwrap());
            assert!(message.contains(expected), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
