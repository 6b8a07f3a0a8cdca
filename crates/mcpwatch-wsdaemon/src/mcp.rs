//! The MCP probe: a client session as short as the protocol allows, over WebSocket (the
//! `mcp` subprotocol) or Streamable HTTP. It connects, initializes, sends the initialized
//! notification, lists the tools (every page), pings, and closes cleanly, timing each phase.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, ClientRequestBuilder, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::Access;
use crate::http::{AGENT, EventStream, HttpConnection, read_body, request};
use crate::net::{Endpoint, Failure, Reason, Stream, connect, secure};

/// The protocol version the probe asks for; a server that speaks another one answers with
/// it, and the probe goes on with the server's.
pub(crate) const PROTOCOL_VERSION: &str = "2025-06-18";

/// The largest message the probe reads (a `tools/list` page of a large server fits).
const MESSAGE_LIMIT: usize = 16 << 20;
/// Pages of `tools/list` read at most.
const MAX_PAGES: usize = 100;
/// Messages that are not the awaited answer (notifications, server requests) read at most
/// per request.
const MAX_UNRELATED: usize = 256;
/// The longest the probe waits for an event stream to end after its answer.
const STREAM_END_GRACE: Duration = Duration::from_millis(100);
/// The longest the probe waits for a clean close.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// An MCP transport; the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    WebSocket,
    StreamableHttp,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::StreamableHttp => "streamable_http",
        }
    }
}

/// A timed step of the probe; the `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// TCP connection.
    Connect,
    /// TLS and, over WebSocket, the upgrade.
    Handshake,
    /// `initialize` and the initialized notification.
    Initialize,
    /// Every page of `tools/list`.
    ToolsList,
    /// One `ping`.
    Ping,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Handshake => "handshake",
            Phase::Initialize => "initialize",
            Phase::ToolsList => "tools_list",
            Phase::Ping => "ping",
        }
    }
}

/// Who answered `initialize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) protocol_version: String,
}

/// What one MCP probe found.
#[derive(Debug)]
pub(crate) struct McpReport {
    pub(crate) transport: Transport,
    /// Seconds per completed phase, in order.
    pub(crate) phases: Vec<(Phase, f64)>,
    pub(crate) server: Option<ServerInfo>,
    pub(crate) tools: Option<u64>,
    /// Seconds of the whole probe, close included.
    pub(crate) duration: f64,
    pub(crate) failure: Option<Failure>,
}

impl McpReport {
    fn timed(&mut self, phase: Phase, since: Instant) {
        self.phases.push((phase, since.elapsed().as_secs_f64()));
    }
}

/// Probes the MCP server at `endpoint` by `deadline`.
pub(crate) async fn probe(
    transport: Transport,
    endpoint: &Endpoint,
    access: &Access,
    deadline: Instant,
) -> McpReport {
    let start = Instant::now();
    let mut report = McpReport {
        transport,
        phases: Vec::with_capacity(5),
        server: None,
        tools: None,
        duration: 0.0,
        failure: None,
    };
    if let Err(failure) = session(transport, endpoint, access, deadline, &mut report).await {
        report.failure = Some(failure);
    }
    report.duration = start.elapsed().as_secs_f64();
    report
}

async fn session(
    transport: Transport,
    endpoint: &Endpoint,
    access: &Access,
    deadline: Instant,
    report: &mut McpReport,
) -> Result<(), Failure> {
    let since = Instant::now();
    let tcp = connect(endpoint, deadline).await?;
    report.timed(Phase::Connect, since);
    let since = Instant::now();
    let stream = secure(tcp, endpoint, access.tls.as_ref(), deadline).await?;
    let mut channel = match transport {
        Transport::WebSocket => {
            Channel::WebSocket(Box::new(upgrade(stream, endpoint, access, deadline).await?))
        }
        Transport::StreamableHttp => Channel::Http(HttpSession {
            endpoint,
            access,
            connection: Some(HttpConnection::open(stream).await?),
            session_id: None,
            protocol_version: None,
        }),
    };
    report.timed(Phase::Handshake, since);
    let result = exchange(&mut channel, deadline, report).await;
    // A timed-out probe has no time left to close politely; dropping the connection closes it.
    let close_by = deadline.min(Instant::now() + CLOSE_GRACE);
    channel.close(close_by).await;
    result
}

async fn exchange(
    channel: &mut Channel<'_>,
    deadline: Instant,
    report: &mut McpReport,
) -> Result<(), Failure> {
    let since = Instant::now();
    let params = json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcpwatch", "version": env!("CARGO_PKG_VERSION")},
    });
    let init = channel
        .call(1, "initialize", Some(params), deadline)
        .await?;
    let server = server_info(&init)?;
    channel.set_protocol_version(&server.protocol_version);
    report.server = Some(server);
    channel
        .notify("notifications/initialized", deadline)
        .await?;
    report.timed(Phase::Initialize, since);

    let since = Instant::now();
    let mut tools = 0u64;
    // A server without the tools capability has none, and may answer tools/list with an error.
    if init
        .get("capabilities")
        .and_then(|c| c.get("tools"))
        .is_some()
    {
        let mut cursor: Option<String> = None;
        for page in 0.. {
            if page == MAX_PAGES {
                return Err(Failure::new(
                    Reason::Protocol,
                    format_args!("tools/list: more than {MAX_PAGES} pages"),
                ));
            }
            let params = cursor.as_ref().map(|c| json!({"cursor": c}));
            let result = channel
                .call(2 + page as u64, "tools/list", params, deadline)
                .await?;
            let listed = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| Failure::new(Reason::Protocol, "tools/list: no tools array"))?;
            tools += listed.len() as u64;
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next) => {
                    cursor = Some(next.to_owned());
                }
                _ => break,
            }
        }
    }
    report.tools = Some(tools);
    report.timed(Phase::ToolsList, since);

    let since = Instant::now();
    channel.call(1000, "ping", None, deadline).await?;
    report.timed(Phase::Ping, since);
    Ok(())
}

/// The server's name, version and protocol version from the `initialize` result.
fn server_info(result: &Value) -> Result<ServerInfo, Failure> {
    let protocol_version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::new(Reason::Protocol, "initialize: no protocolVersion"))?;
    let info = result.get("serverInfo");
    let text = |key: &str| {
        info.and_then(|i| i.get(key))
            .and_then(Value::as_str)
            .map(crate::mapping::label_value)
            .unwrap_or_default()
    };
    Ok(ServerInfo {
        name: text("name"),
        version: text("version"),
        protocol_version: crate::mapping::label_value(protocol_version),
    })
}

/// A JSON-RPC request.
fn rpc_request(id: u64, method: &str, params: Option<Value>) -> Value {
    match params {
        Some(params) => json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        None => json!({"jsonrpc": "2.0", "id": id, "method": method}),
    }
}

/// What a message from the server is to a request awaiting the answer `id`.
#[derive(Debug, PartialEq)]
enum Incoming {
    /// The answer: its result.
    Result(Value),
    /// The answer: an error.
    Error(String),
    /// A request from the server, to be answered.
    Request { id: Value, method: String },
    /// Anything else: a notification, another answer.
    Other,
}

fn classify(message: Value, id: u64, what: &str) -> Result<Incoming, Failure> {
    let Value::Object(mut message) = message else {
        return Err(Failure::new(
            Reason::Protocol,
            format_args!("{what}: a message that is not a JSON-RPC object"),
        ));
    };
    if message.get("id") == Some(&json!(id)) && !message.contains_key("method") {
        if let Some(error) = message.get("error") {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let text = error.get("message").and_then(Value::as_str).unwrap_or("");
            return Ok(Incoming::Error(format!(
                "{what}: error {code}: {}",
                truncate(text, 200)
            )));
        }
        return match message.remove("result") {
            Some(result) => Ok(Incoming::Result(result)),
            None => Err(Failure::new(
                Reason::Protocol,
                format_args!("{what}: an answer with neither result nor error"),
            )),
        };
    }
    if let (Some(id), Some(Value::String(method))) =
        (message.remove("id"), message.remove("method"))
    {
        return Ok(Incoming::Request { id, method });
    }
    Ok(Incoming::Other)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Parses one JSON-RPC message or batch and finds the answer to `id` in it.
fn answer_in(text: &[u8], id: u64, what: &str) -> Result<Vec<Incoming>, Failure> {
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| Failure::new(Reason::Protocol, format_args!("{what}: not JSON: {e}")))?;
    match value {
        Value::Array(batch) => batch.into_iter().map(|m| classify(m, id, what)).collect(),
        single => Ok(vec![classify(single, id, what)?]),
    }
}

enum Channel<'a> {
    WebSocket(Box<WebSocketStream<Stream>>),
    Http(HttpSession<'a>),
}

impl Channel<'_> {
    async fn call(
        &mut self,
        id: u64,
        method: &str,
        params: Option<Value>,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let message = rpc_request(id, method, params);
        match self {
            Channel::WebSocket(ws) => ws_call(ws, &message, id, method, deadline).await,
            Channel::Http(http) => http
                .post(&message, Some(id), method, deadline)
                .await?
                .ok_or_else(|| Failure::new(Reason::Protocol, format_args!("{method}: no answer"))),
        }
    }

    async fn notify(&mut self, method: &str, deadline: Instant) -> Result<(), Failure> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        match self {
            Channel::WebSocket(ws) => ws_send(ws, &message, method, deadline).await,
            Channel::Http(http) => http
                .post(&message, None, method, deadline)
                .await
                .map(|_| ()),
        }
    }

    fn set_protocol_version(&mut self, version: &str) {
        if let Channel::Http(http) = self {
            http.protocol_version = Some(version.to_owned());
        }
    }

    /// Ends the session politely: a WebSocket close handshake, or a DELETE of the HTTP
    /// session. Failing here fails nothing.
    async fn close(self, deadline: Instant) {
        match self {
            Channel::WebSocket(mut ws) => {
                let closing = async {
                    ws.send(Message::Close(None)).await?;
                    while let Some(message) = ws.next().await {
                        message?;
                    }
                    Ok::<(), tungstenite::Error>(())
                };
                if let Ok(Err(error)) = timeout_at(deadline, closing).await {
                    tracing::debug!(%error, "MCP WebSocket close was not clean.");
                }
            }
            Channel::Http(mut http) => http.end(deadline).await,
        }
    }
}

async fn upgrade(
    stream: Stream,
    endpoint: &Endpoint,
    access: &Access,
    deadline: Instant,
) -> Result<WebSocketStream<Stream>, Failure> {
    let mut handshake = ClientRequestBuilder::new(endpoint.uri.clone())
        .with_sub_protocol("mcp")
        .with_header("User-Agent", AGENT);
    if let Some(token) = &access.token {
        handshake = handshake.with_header("Authorization", format!("Bearer {}", token.expose()));
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MESSAGE_LIMIT))
        .max_frame_size(Some(MESSAGE_LIMIT));
    match timeout_at(
        deadline,
        client_async_with_config(handshake, stream, Some(config)),
    )
    .await
    {
        Err(_) => Err(Failure::timeout("WebSocket handshake")),
        Ok(Err(tungstenite::Error::Http(response))) => Err(Failure::new(
            Reason::Handshake,
            format_args!(
                "WebSocket handshake: the server answered HTTP {}",
                response.status().as_u16()
            ),
        )),
        Ok(Err(e)) => Err(Failure::new(
            Reason::Handshake,
            format_args!("WebSocket handshake: {}", ws_error(&e)),
        )),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

/// A WebSocket error's text, without the request (which may hold the bearer token).
fn ws_error(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::HttpFormat(_) => "invalid handshake request".to_owned(),
        other => other.to_string(),
    }
}

async fn ws_send(
    ws: &mut WebSocketStream<Stream>,
    message: &Value,
    what: &str,
    deadline: Instant,
) -> Result<(), Failure> {
    let text = message.to_string();
    match timeout_at(deadline, ws.send(Message::text(text))).await {
        Err(_) => Err(Failure::timeout(what)),
        Ok(Err(e)) => Err(Failure::new(
            Reason::Protocol,
            format_args!("{what}: sending: {}", ws_error(&e)),
        )),
        Ok(Ok(())) => Ok(()),
    }
}

async fn ws_call(
    ws: &mut WebSocketStream<Stream>,
    message: &Value,
    id: u64,
    what: &str,
    deadline: Instant,
) -> Result<Value, Failure> {
    ws_send(ws, message, what, deadline).await?;
    for _ in 0..MAX_UNRELATED {
        let frame = match timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(Failure::timeout(what)),
            Ok(None) => {
                return Err(Failure::new(
                    Reason::Protocol,
                    format_args!("{what}: the server closed the connection"),
                ));
            }
            Ok(Some(Err(e))) => {
                return Err(Failure::new(
                    Reason::Protocol,
                    format_args!("{what}: {}", ws_error(&e)),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let text = match &frame {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes.as_ref(),
            Message::Close(close) => {
                return Err(Failure::new(
                    Reason::Protocol,
                    format_args!(
                        "{what}: the server closed the WebSocket{}",
                        close
                            .as_ref()
                            .map(|c| format!(" (code {})", u16::from(c.code)))
                            .unwrap_or_default()
                    ),
                ));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        for incoming in answer_in(text, id, what)? {
            match incoming {
                Incoming::Result(result) => return Ok(result),
                Incoming::Error(error) => return Err(Failure::new(Reason::ErrorResponse, error)),
                Incoming::Request { id, method } => {
                    // The probe declares no capabilities: it answers a ping, and refuses
                    // anything else as JSON-RPC asks, so the server is not left waiting.
                    let reply = if method == "ping" {
                        json!({"jsonrpc": "2.0", "id": id, "result": {}})
                    } else {
                        json!({"jsonrpc": "2.0", "id": id,
                               "error": {"code": -32601, "message": "Method not found"}})
                    };
                    ws_send(ws, &reply, what, deadline).await?;
                }
                Incoming::Other => {}
            }
        }
    }
    Err(Failure::new(
        Reason::Protocol,
        format_args!("{what}: no answer among {MAX_UNRELATED} messages"),
    ))
}

/// A Streamable HTTP session: POSTs of JSON-RPC messages to one endpoint, answered with JSON
/// or an event stream, carrying the session id the server gave.
struct HttpSession<'a> {
    endpoint: &'a Endpoint,
    access: &'a crate::Access,
    connection: Option<HttpConnection>,
    session_id: Option<String>,
    protocol_version: Option<String>,
}

impl HttpSession<'_> {
    /// A connection for the next request: the open one, or a new one when the server
    /// closed it (or an event stream was left unfinished).
    async fn connection(&mut self, deadline: Instant) -> Result<&mut HttpConnection, Failure> {
        if self
            .connection
            .as_ref()
            .is_none_or(HttpConnection::is_closed)
        {
            let tcp = connect(self.endpoint, deadline).await?;
            let stream = secure(tcp, self.endpoint, self.access.tls.as_ref(), deadline).await?;
            self.connection = Some(HttpConnection::open(stream).await?);
        }
        self.connection
            .as_mut()
            .ok_or_else(|| Failure::new(Reason::Protocol, "no connection"))
    }

    fn headers(&self) -> Vec<(&'static str, &str)> {
        let mut headers = Vec::with_capacity(2);
        if let Some(id) = &self.session_id {
            headers.push(("mcp-session-id", id.as_str()));
        }
        if let Some(version) = &self.protocol_version {
            headers.push(("mcp-protocol-version", version.as_str()));
        }
        headers
    }

    /// POSTs `message`; for a request (`id`), returns the answer's result.
    async fn post(
        &mut self,
        message: &Value,
        id: Option<u64>,
        what: &str,
        deadline: Instant,
    ) -> Result<Option<Value>, Failure> {
        let mut headers = self.headers();
        headers.push(("content-type", "application/json"));
        headers.push(("accept", "application/json, text/event-stream"));
        let post = request(
            Method::POST,
            self.endpoint,
            self.access.token.as_ref(),
            &headers,
            Bytes::from(message.to_string()),
        )?;
        let response = self
            .connection(deadline)
            .await?
            .send(post, deadline, what)
            .await?;
        if let Some(session) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 1024)
        {
            self.session_id = Some(session.to_owned());
        }
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !status.is_success() {
            let body = read_body(response.into_body(), 64 * 1024, deadline, what)
                .await
                .unwrap_or_default();
            let detail = id
                .and_then(|id| answer_in(&body, id, what).ok())
                .into_iter()
                .flatten()
                .find_map(|incoming| match incoming {
                    Incoming::Error(error) => Some(error),
                    _ => None,
                })
                .unwrap_or_else(|| what.to_owned());
            return Err(Failure::new(
                Reason::ErrorResponse,
                format_args!("{detail} (HTTP {})", status.as_u16()),
            ));
        }
        let Some(id) = id else {
            // A notification: 202 Accepted, with no body to speak of.
            let _ = read_body(response.into_body(), 64 * 1024, deadline, what).await;
            return Ok(None);
        };
        if content_type.starts_with("text/event-stream") {
            let mut events = EventStream::new(response.into_body(), MESSAGE_LIMIT);
            let answer = self.answer_in_events(&mut events, id, what, deadline).await;
            // A server ends the stream once it has answered; one that keeps it open would
            // block the connection, which is then given up for a new one.
            let grace = deadline.min(Instant::now() + STREAM_END_GRACE);
            if answer.is_err() || !events.finish(grace).await {
                self.connection = None;
            }
            return answer.map(Some);
        }
        if !content_type.starts_with("application/json") {
            return Err(Failure::new(
                Reason::Protocol,
                format_args!("{what}: answered with content type {content_type:?}"),
            ));
        }
        let body = read_body(response.into_body(), MESSAGE_LIMIT, deadline, what).await?;
        for incoming in answer_in(&body, id, what)? {
            match incoming {
                Incoming::Result(result) => return Ok(Some(result)),
                Incoming::Error(error) => return Err(Failure::new(Reason::ErrorResponse, error)),
                Incoming::Request { .. } | Incoming::Other => {}
            }
        }
        Err(Failure::new(
            Reason::Protocol,
            format_args!("{what}: the JSON answer holds no response to request {id}"),
        ))
    }

    async fn answer_in_events(
        &mut self,
        events: &mut EventStream,
        id: u64,
        what: &str,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        for _ in 0..MAX_UNRELATED {
            let Some(data) = events.next_event(deadline, what).await? else {
                return Err(Failure::new(
                    Reason::Protocol,
                    format_args!("{what}: the event stream ended without an answer"),
                ));
            };
            for incoming in answer_in(data.as_bytes(), id, what)? {
                match incoming {
                    Incoming::Result(result) => return Ok(result),
                    Incoming::Error(error) => {
                        return Err(Failure::new(Reason::ErrorResponse, error));
                    }
                    Incoming::Request { .. } | Incoming::Other => {}
                }
            }
        }
        Err(Failure::new(
            Reason::Protocol,
            format_args!("{what}: no answer among {MAX_UNRELATED} events"),
        ))
    }

    /// Ends the session with a DELETE, as the transport asks of a client that is done.
    async fn end(&mut self, deadline: Instant) {
        if self.session_id.is_none() {
            return;
        }
        let headers = self.headers();
        let delete = match request(
            Method::DELETE,
            self.endpoint,
            self.access.token.as_ref(),
            &headers,
            Bytes::new(),
        ) {
            Ok(delete) => delete,
            Err(_) => return,
        };
        let ended = async {
            let response = self
                .connection(deadline)
                .await?
                .send(delete, deadline, "session end")
                .await?;
            read_body(response.into_body(), 64 * 1024, deadline, "session end").await
        };
        if let Err(error) = ended.await {
            tracing::debug!(%error, "MCP session end was not clean.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_errors_and_server_requests() {
        let r = answer_in(br#"{"jsonrpc":"2.0","id":1,"result":{"x":1}}"#, 1, "t").expect("ok");
        assert_eq!(r, vec![Incoming::Result(json!({"x": 1}))]);
        let r = answer_in(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad version"}}"#,
            1,
            "initialize",
        )
        .expect("error");
        assert_eq!(
            r,
            vec![Incoming::Error(
                "initialize: error -32602: bad version".into()
            )]
        );
        let r = answer_in(
            br#"[{"jsonrpc":"2.0","method":"notifications/message","params":{}},
                 {"jsonrpc":"2.0","id":"s1","method":"ping"},
                 {"jsonrpc":"2.0","id":7,"result":{}}]"#,
            2,
            "t",
        )
        .expect("batch");
        assert_eq!(
            r,
            vec![
                Incoming::Other,
                Incoming::Request {
                    id: json!("s1"),
                    method: "ping".into()
                },
                Incoming::Other
            ]
        );
        let e = answer_in(b"not json", 1, "t").expect_err("not JSON");
        assert_eq!(e.reason, Reason::Protocol);
        let e = answer_in(b"[1]", 1, "t").expect_err("not an object");
        assert_eq!(e.reason, Reason::Protocol);
    }

    #[test]
    fn server_info_from_initialize() {
        let info = server_info(&json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "exai-mcp", "version": "2.3.0"}
        }))
        .expect("info");
        assert_eq!(
            info,
            ServerInfo {
                name: "exai-mcp".into(),
                version: "2.3.0".into(),
                protocol_version: "2025-06-18".into()
            }
        );
        let e = server_info(&json!({"serverInfo": {}})).expect_err("no version");
        assert_eq!(e.reason, Reason::Protocol);
    }
}
