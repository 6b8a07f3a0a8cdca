//! A stand-in for an MCP server's daemon, as its operators describe it: a JSON `GET /health`
//! and an MCP endpoint over WebSocket on one port, with the faults the wsdaemon collector must
//! report on demand (slow, erroring, silent, half-open). The success path of MCP itself is
//! proven against the official SDK's server ([`crate::mcp::McpServer`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// The `/health` answer of the operations guide.
pub const HEALTHY_BODY: &str = r#"{"status":"healthy","uptime":3600,"version":"2.3.0","tools":29,"sessions":5,"requests_per_minute":45,"providers":{"glm":{"status":"up","latency_ms":120},"kimi":{"status":"down","latency_ms":5000}},"database":"connected"}"#;

/// How long a stalled answer stalls: longer than any probe timeout of the tests, bounded
/// so that nothing outlives a test by much.
const STALL: Duration = Duration::from_secs(30);

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

/// A running daemon on a free loopback port; it stops accepting when dropped.
#[derive(Debug)]
pub struct Daemon {
    address: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    health_requests: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Daemon {
    /// Starts the daemon on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let behaviour = Arc::new(Mutex::new(behaviour));
        let health_requests = Arc::new(AtomicUsize::new(0));
        let (state, count) = (behaviour.clone(), health_requests.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let current = state.lock().unwrap_or_else(PoisonError::into_inner).clone();
                tokio::spawn(serve(stream, current, count.clone()));
            }
        });
        Self {
            address,
            behaviour,
            health_requests,
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

    /// `http://127.0.0.1:<port>/health`.
    pub fn health_url(&self) -> String {
        format!("http://{}/health", self.address)
    }

    /// `ws://127.0.0.1:<port>/`.
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/", self.address)
    }

    /// `/health` requests served so far.
    pub fn health_requests(&self) -> usize {
        self.health_requests.load(Ordering::Relaxed)
    }
}

/// The request head, peeked so that a WebSocket handshake can still read it.
async fn peek_head(stream: &TcpStream) -> Option<String> {
    let mut buffer = vec![0u8; 8192];
    for _ in 0..200 {
        let n = stream.peek(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buffer[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buffer[..end + 4]).into_owned());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn serve(mut stream: TcpStream, behaviour: Behaviour, health_requests: Arc<AtomicUsize>) {
    let Some(head) = peek_head(&stream).await else {
        return;
    };
    let lower = head.to_ascii_lowercase();
    if lower.contains("\r\nupgrade: websocket") {
        if behaviour.mcp == McpMode::NoUpgrade {
            tokio::time::sleep(STALL).await;
            return;
        }
        if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, choose_mcp).await {
            serve_mcp(ws, behaviour.mcp).await;
        }
        return;
    }
    let mut consumed = vec![0u8; head.len()];
    if stream.read_exact(&mut consumed).await.is_err() {
        return;
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path.starts_with("/health") {
        health_requests.fetch_add(1, Ordering::Relaxed);
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

async fn serve_mcp(mut ws: tokio_tungstenite::WebSocketStream<TcpStream>, mode: McpMode) {
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
