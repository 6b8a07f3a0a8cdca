//! A stand-in for an MCP server's daemon, as its operators describe it: a JSON `GET /health`
//! and an MCP endpoint over WebSocket on one port, plain or TLS, with the faults the wsdaemon
//! collector must report on demand (slow, erroring, silent, half-open). The success path of
//! MCP itself is proven against the official SDK's server ([`crate::mcp::McpServer`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// The `/health` answer of the operations guide.
pub const HEALTHY_BODY: &str = r#"{"status":"healthy","uptime":3600,"version":"2.3.0","tools":29,"sessions":5,"requests_per_minute":45,"providers":{"glm":{"status":"up","latency_ms":120},"kimi":{"status":"down","latency_ms":5000}},"database":"connected"}"#;

/// How long a stalled answer stalls: longer than any probe timeout of the tests, bounded
/// so that nothing outlives a test by much.
const STALL: Duration = Duration::from_secs(30);
/// A request head larger than this is not read.
const HEAD_LIMIT: usize = 16 * 1024;

/// What the MCP endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpMode {
    /// Answers initialize, tools/list (this many tools) and ping.
    Serve {
        /// Tools listed.
        tools: usize,
    },
    /// Answers initialize with a JSON-RPC error.
    InitializeError,
    /// Accepts the WebSocket and never answers a message.
    Silent,
    /// Accepts the TCP connection and never answers the upgrade.
    NoUpgrade,
}

/// What the daemon does; change it while it runs with [`Daemon::set`].
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Status of `/health`.
    pub health_status: u16,
    /// Body of `/health`.
    pub health_body: String,
    /// Wait before answering `/health`.
    pub health_delay: Duration,
    /// The MCP endpoint.
    pub mcp: McpMode,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            health_status: 200,
            health_body: HEALTHY_BODY.to_owned(),
            health_delay: Duration::ZERO,
            mcp: McpMode::Serve { tools: 29 },
        }
    }
}

/// What the daemon was sent.
#[derive(Debug, Default)]
struct Seen {
    health_requests: AtomicUsize,
    authorization: Mutex<Option<String>>,
}

/// A running daemon on a free loopback port; it stops accepting when dropped.
#[derive(Debug)]
pub struct Daemon {
    address: SocketAddr,
    tls: bool,
    behaviour: Arc<Mutex<Behaviour>>,
    seen: Arc<Seen>,
    accept: JoinHandle<()>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Daemon {
    /// Starts the daemon, plain HTTP, on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::launch(behaviour, None).await
    }

    /// Starts the daemon serving TLS only, with this certificate and key (PEM).
    ///
    /// # Panics
    /// When the certificate or key does not parse, or no port can be bound.
    pub async fn start_tls(behaviour: Behaviour, cert: &str, key: &str) -> Self {
        Self::launch(behaviour, Some(crate::tls::acceptor(cert, key))).await
    }

    async fn launch(behaviour: Behaviour, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let behaviour = Arc::new(Mutex::new(behaviour));
        let seen = Arc::new(Seen::default());
        let (state, record, secure) = (behaviour.clone(), seen.clone(), tls.is_some());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let current = state.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let record = record.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve(tcp, current, record).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, current, record).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            address,
            tls: secure,
            behaviour,
            seen,
            accept,
        }
    }

    /// Changes what the daemon does from the next connection on.
    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(
            &mut self
                .behaviour
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// `http://127.0.0.1:<port>/health`, or `https://` with TLS.
    pub fn health_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/health", self.address)
    }

    /// `ws://127.0.0.1:<port>/`, or `wss://` with TLS.
    pub fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/", self.address)
    }

    /// `/health` requests served so far.
    pub fn health_requests(&self) -> usize {
        self.seen.health_requests.load(Ordering::Relaxed)
    }

    /// The `Authorization` header of the last request, of any kind.
    pub fn authorization(&self) -> Option<String> {
        self.seen
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A stream whose first bytes were already read: they are read again first, so that the
/// WebSocket handshake sees the whole request.
struct Rewind<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Reads until the end of the request head; returns all bytes read.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        if buffer.len() > HEAD_LIMIT {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(buffer)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    behaviour: Behaviour,
    seen: Arc<Seen>,
) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let authorization = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    *seen
        .authorization
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = authorization;
    if text.to_ascii_lowercase().contains("\r\nupgrade: websocket") {
        if behaviour.mcp == McpMode::NoUpgrade {
            tokio::time::sleep(STALL).await;
            return;
        }
        let replay = Rewind {
            prefix: head,
            at: 0,
            inner: stream,
        };
        if let Ok(ws) = tokio_tungstenite::accept_hdr_async(replay, choose_mcp).await {
            serve_mcp(ws, behaviour.mcp).await;
        }
        return;
    }
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path.starts_with("/health") {
        seen.health_requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(behaviour.health_delay).await;
        (behaviour.health_status, behaviour.health_body)
    } else {
        (404, r#"{"detail":"Not Found"}"#.to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        if status < 400 { "OK" } else { "Error" },
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Chooses the `mcp` subprotocol when the client offers it, as the SDK's server does.
#[allow(clippy::result_large_err)] // the signature tungstenite's callback has
fn choose_mcp(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "mcp"));
    if offered {
        response.headers_mut().insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_static("mcp"),
        );
    }
    Ok(response)
}

async fn serve_mcp<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    mode: McpMode,
) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if mode == McpMode::Silent {
            continue;
        }
        let Ok(request) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let (Some(id), Some(method)) = (request.get("id"), request.get("method")) else {
            continue;
        };
        let answer = match (method.as_str().unwrap_or(""), mode) {
            ("initialize", McpMode::InitializeError) => json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32603, "message": "providers not ready"}}),
            ("initialize", _) => json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": request["params"]["protocolVersion"],
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "fixture-daemon", "version": "2.3.0"}}}),
            ("tools/list", McpMode::Serve { tools }) => {
                let tools: Vec<Value> = (0..tools)
                    .map(
                        |i| json!({"name": format!("tool_{i}"), "inputSchema": {"type": "object"}}),
                    )
                    .collect();
                json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}})
            }
            ("ping", _) => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            _ => json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "Method not found"}}),
        };
        if ws.send(Message::text(answer.to_string())).await.is_err() {
            return;
        }
    }
}
