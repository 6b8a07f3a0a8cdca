//! Connections to the daemon: TCP with a deadline, then TLS for `https://` and `wss://`, and
//! the bounded reasons a probe gives when something fails.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mcpwatch_core::RedactedUrl;
use mcpwatch_core::certs::WatchedTls;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a probe failed; the `reason` label, a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Nothing accepted the connection (refused, unreachable, no such host).
    Refused,
    /// The deadline passed.
    Timeout,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The WebSocket upgrade was refused or malformed.
    Handshake,
    /// The peer broke the protocol: not JSON-RPC, wrong answers, closed mid-exchange.
    Protocol,
    /// The server answered with an error (a JSON-RPC error, an HTTP error status) that no
    /// other reason names.
    ErrorResponse,
    /// The server refused the probe's credentials (HTTP 401 or 403).
    Unauthorized,
    /// The server does not speak the revision asked (-32022, a counter-offer to a pinned
    /// revision, or a legacy answer to a pinned modern revision).
    UnsupportedVersion,
    /// The server found the MCP headers missing or at odds with the body (-32020).
    HeaderMismatch,
    /// The server does not know a method the probe needs (-32601).
    MethodNotFound,
    /// The health endpoint answered with a status other than 2xx.
    HttpStatus,
    /// The health endpoint's body is not a JSON object.
    InvalidJson,
}

impl Reason {
    /// Reasons of the health endpoint probe, in label order.
    pub(crate) const HEALTH: [Reason; 6] = [
        Reason::Refused,
        Reason::Timeout,
        Reason::Tls,
        Reason::Protocol,
        Reason::HttpStatus,
        Reason::InvalidJson,
    ];
    /// Reasons of the MCP probe, in label order.
    pub(crate) const MCP: [Reason; 10] = [
        Reason::Refused,
        Reason::Timeout,
        Reason::Tls,
        Reason::Handshake,
        Reason::Unauthorized,
        Reason::UnsupportedVersion,
        Reason::HeaderMismatch,
        Reason::MethodNotFound,
        Reason::ErrorResponse,
        Reason::Protocol,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Refused => "refused",
            Reason::Timeout => "timeout",
            Reason::Tls => "tls",
            Reason::Handshake => "handshake",
            Reason::Protocol => "protocol",
            Reason::ErrorResponse => "error_response",
            Reason::Unauthorized => "unauthorized",
            Reason::UnsupportedVersion => "unsupported_version",
            Reason::HeaderMismatch => "header_mismatch",
            Reason::MethodNotFound => "method_not_found",
            Reason::HttpStatus => "http_status",
            Reason::InvalidJson => "invalid_json",
        }
    }
}

/// A failed probe step: the bounded reason, and a message for the log that never holds a
/// secret.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    pub(crate) message: String,
    /// The HTTP status of the answer that failed, if one came.
    pub(crate) status: Option<u16>,
    /// The JSON-RPC error code of the answer that failed, if it held one.
    pub(crate) code: Option<i64>,
    /// The revisions the server named in an unsupported-version error (-32022).
    pub(crate) supported: Vec<String>,
}

impl Failure {
    pub(crate) fn new(reason: Reason, message: impl fmt::Display) -> Self {
        Self {
            reason,
            message: message.to_string(),
            status: None,
            code: None,
            supported: Vec::new(),
        }
    }

    /// Whether the server answered (with an error or something that is no MCP), as
    /// opposed to not being reached or not answering in time.
    pub(crate) fn answered(&self) -> bool {
        matches!(
            self.reason,
            Reason::ErrorResponse
                | Reason::UnsupportedVersion
                | Reason::HeaderMismatch
                | Reason::MethodNotFound
                | Reason::Protocol
        )
    }

    pub(crate) fn timeout(what: &str) -> Self {
        Self::new(Reason::Timeout, format_args!("{what}: timed out"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason.as_str())
    }
}

/// Where a URL points: enough to connect and to write the request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Host name or address, without IPv6 brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Whether TLS is spoken (`https://`, `wss://`).
    pub(crate) tls: bool,
    /// The `Host` header: host and port as the URL gives them, without credentials.
    pub(crate) authority: String,
    /// Path and query.
    pub(crate) path: String,
    /// The URL, for the WebSocket request.
    pub(crate) uri: http::Uri,
}

impl Endpoint {
    /// Parses an `http`, `https`, `ws` or `wss` URL.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
        let tls = match uri.scheme_str() {
            Some("http" | "ws") => false,
            Some("https" | "wss") => true,
            _ => return Err("expected http://, https://, ws:// or wss://".to_owned()),
        };
        let authority = uri.authority().ok_or_else(|| "no host".to_owned())?;
        // Credentials in the URL would reach the Host header and the logs.
        if authority.as_str().contains('@') {
            return Err("credentials in the URL are not supported; use bearer_token".to_owned());
        }
        let host = match authority.host().strip_prefix('[') {
            // Brackets hold an IPv6 address, nothing else: a name in them would be looked up.
            Some(bracketed) => bracketed
                .strip_suffix(']')
                .filter(|address| address.parse::<std::net::Ipv6Addr>().is_ok())
                .ok_or_else(|| "brackets in a URL hold an IPv6 address only".to_owned())?
                .to_owned(),
            None => authority.host().to_owned(),
        };
        if host.is_empty() {
            return Err("no host".to_owned());
        }
        // The parser takes `ops:pa/ss@db` as host `ops` with port `pa`, and gives no port.
        let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
            Some(port) if !port.is_empty() => {
                port.parse::<u16>().map_err(|_| "invalid port".to_owned())?
            }
            _ => {
                if tls {
                    443
                } else {
                    80
                }
            }
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path
        };
        Ok(Self {
            host,
            port,
            tls,
            authority: authority.as_str().to_owned(),
            path,
            uri,
        })
    }
}

/// The URL as logs and errors show it: without its query string, which may hold a key.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&RedactedUrl::new(&self.uri.to_string()), f)
    }
}

/// A connection, plain or TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = self.get_mut();
        let polled = match this {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.ack_promptly();
        }
        polled
    }
}

impl Stream {
    /// Acknowledges what comes next at once rather than after the delayed-ACK timer (Linux;
    /// the setting lasts until the kernel's next switch, so it is set after every read). A
    /// server that leaves Nagle's algorithm on (axum's default) sends the rest of an
    /// answer written in pieces only once the first piece is acknowledged: with delayed
    /// ACKs every request after the first on a connection would wait some 40 ms for the
    /// timer, which is no time of the server's.
    fn ack_promptly(&self) {
        #[cfg(target_os = "linux")]
        {
            let tcp = match self {
                Stream::Plain(s) => s,
                Stream::Tls(s) => s.get_ref().0,
            };
            let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Host name lookups under way at most, across every probe of the process. A lookup runs
/// on the blocking pool and outlives the deadline of the probe that asked when the resolver
/// does not answer: without a bound, a few targets with names nobody resolves would take
/// every blocking thread, and with them every other probe's.
const MAX_LOOKUPS: usize = 2;

/// The addresses of `endpoint`: its IP address as it is, or its name looked up by
/// `deadline`.
pub(crate) async fn addresses(
    endpoint: &Endpoint,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, endpoint.port)]);
    }
    static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LOOKUPS);
    let host = (endpoint.host.clone(), endpoint.port);
    let lookup = async move {
        // The permit goes with the lookup, and is given back when the lookup ends, not when
        // the probe stops waiting for it.
        let permit = LOOKUPS.acquire().await;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            std::net::ToSocketAddrs::to_socket_addrs(&host).map(Iterator::collect::<Vec<_>>)
        })
        .await
    };
    match timeout_at(deadline, lookup).await {
        Err(_) => Err(Failure::timeout("host name lookup")),
        Ok(Err(e)) => Err(Failure::new(
            Reason::Refused,
            format_args!("host name lookup: {e}"),
        )),
        Ok(Ok(Err(e))) => Err(Failure::new(
            Reason::Refused,
            format_args!("host name lookup: {e}"),
        )),
        Ok(Ok(Ok(found))) => Ok(found),
    }
}

/// Opens a TCP connection by `deadline`.
pub(crate) async fn connect(endpoint: &Endpoint, deadline: Instant) -> Result<TcpStream, Failure> {
    let address = addresses(endpoint, deadline).await?;
    connect_to(&address, deadline).await
}

/// Opens a TCP connection to the first of `address` that accepts, by `deadline`.
pub(crate) async fn connect_to(
    address: &[SocketAddr],
    deadline: Instant,
) -> Result<TcpStream, Failure> {
    match timeout_at(deadline, TcpStream::connect(address)).await {
        Err(_) => Err(Failure::timeout("connect")),
        Ok(Err(e)) => Err(Failure::new(Reason::Refused, format_args!("connect: {e}"))),
        Ok(Ok(tcp)) => {
            // Small request and answer exchanges: no waiting for more to send.
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
    }
}

/// Speaks TLS over `tcp` when the endpoint asks for it; the chain the server presents is
/// recorded under the endpoint's host and port.
pub(crate) async fn secure(
    tcp: TcpStream,
    endpoint: &Endpoint,
    tls: Option<&Arc<WatchedTls>>,
    deadline: Instant,
) -> Result<Stream, Failure> {
    if !endpoint.tls {
        return Ok(Stream::Plain(tcp));
    }
    let config = tls
        .map(|tls| tls.config(endpoint.port))
        .ok_or_else(|| Failure::new(Reason::Tls, "TLS is not configured"))?;
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|_| Failure::new(Reason::Tls, "the host is no valid TLS server name"))?;
    match timeout_at(deadline, TlsConnector::from(config).connect(name, tcp)).await {
        Err(_) => Err(Failure::timeout("TLS handshake")),
        Ok(Err(e)) => Err(Failure::new(
            Reason::Tls,
            format_args!("TLS handshake: {e}"),
        )),
        Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:3001/health").expect("http");
        assert_eq!((e.host.as_str(), e.port, e.tls), ("127.0.0.1", 3001, false));
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1:3001", "/health")
        );
        let e = Endpoint::parse("wss://[::1]/mcp?x=1").expect("wss");
        assert_eq!((e.host.as_str(), e.port, e.tls), ("::1", 443, true));
        assert_eq!(e.path, "/mcp?x=1");
        let e = Endpoint::parse("ws://daemon:3001").expect("no path");
        assert_eq!(e.path, "/");
        let e = Endpoint::parse("https://gw:8000/health?key=s3cret").expect("query");
        assert_eq!(e.to_string(), "https://gw:8000/health");
        assert!(Endpoint::parse("http://user:pw@x/").is_err());
        // A password holding `/` makes the parser see host `user` and port `pw`.
        assert_eq!(
            Endpoint::parse("http://user:pw/x@db:3001/health"),
            Err("invalid port".to_owned())
        );
        assert_eq!(Endpoint::parse("http://:3001/"), Err("no host".to_owned()));
        assert_eq!(Endpoint::parse("http://db:/").expect("empty port").port, 80);
        let e = Endpoint::parse("http://[::1]:3001/").expect("IPv6");
        assert_eq!((e.host.as_str(), e.port), ("::1", 3001));
        assert!(Endpoint::parse("ftp://x/").is_err());
    }

    #[test]
    fn brackets_hold_an_ipv6_address_only() {
        for url in [
            "http://[hunter2]/health",
            "http://[db.example]:3001/",
            "ws://[127.0.0.1]/",
        ] {
            assert_eq!(
                Endpoint::parse(url),
                Err("brackets in a URL hold an IPv6 address only".to_owned()),
                "{url}"
            );
        }
        let e = Endpoint::parse("http://[fe80::1]:8080/").expect("IPv6");
        assert_eq!((e.host.as_str(), e.port), ("fe80::1", 8080));
        // Refusing a password taken for a port or a host does not quote it.
        for url in ["http://127.0.0.1:hunter2/health", "http://[hunter2]/health"] {
            let e = crate::target_name(url).expect_err(url);
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[tokio::test]
    async fn refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
        let far = Instant::now() + std::time::Duration::from_secs(5);
        assert_eq!(
            connect(&e, far).await.expect_err("closed port").reason,
            Reason::Refused
        );
    }
}
