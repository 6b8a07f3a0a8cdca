//! The MCP probe, in the era the server speaks.
//!
//! - **Modern** (2026-07-28, stateless, Streamable HTTP only): `server/discover`, then every
//!   page of `tools/list`, each request a POST of its own carrying the revision in its
//!   `_meta` and in the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers.
//! - **Legacy** (up to 2025-11-25; WebSocket always): `initialize`, the initialized
//!   notification, every page of `tools/list`, `ping`, and the end of the session.
//!
//! With `protocol: auto` a Streamable HTTP target is asked `server/discover` first and falls
//! back to `initialize` when it answers as a legacy server would, as the specification's
//! backward-compatibility rules say; the era found is remembered and found again when a
//! probe fails. Either era may end with a synthetic `tools/call`. Every phase is timed.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use http::header::CONTENT_TYPE;
use regex_lite::Regex;
use serde_json::{Map, Value, json};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, ClientRequestBuilder, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::Access;
use crate::era::{Era, EraMemory, Pin, latest_legacy, latest_modern};
use crate::http::{AGENT, EventStream, HttpConnection, read_body, request};
use crate::mapping::label_value;
use crate::net::{Endpoint, Failure, Reason, Stream, connect, secure};

/// The largest message the probe reads (a `tools/list` page of a large server fits).
const MESSAGE_LIMIT: usize = 16 << 20;
/// The largest error body read from an HTTP error status.
const ERROR_BODY_LIMIT: usize = 1 << 20;
/// Pages of `tools/list` read at most.
const MAX_PAGES: usize = 100;
/// Messages that are not the awaited answer (notifications, server requests) read at most
/// per request.
const MAX_UNRELATED: usize = 10_000;
/// Characters of a server's text (an error message, a tool's result) kept until the
/// credentials it may echo are hidden.
const SERVER_TEXT_MAX: usize = 64 * 1024;
/// Characters of a failure's message, once those are hidden.
const MESSAGE_TEXT_MAX: usize = 400;
/// Revisions a server names that are reported at most.
const MAX_SUPPORTED: usize = 16;
/// The longest the probe waits for an event stream to end after its answer.
const STREAM_END_GRACE: Duration = Duration::from_millis(100);
/// The longest the probe waits for a clean close.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// The `_meta` key of the server's name and version on modern results.
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

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
    /// `server/discover` (modern).
    Discover,
    /// `initialize` and the initialized notification (legacy).
    Initialize,
    /// Every page of `tools/list`.
    ToolsList,
    /// One `ping` (legacy).
    Ping,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Handshake => "handshake",
            Phase::Discover => "discover",
            Phase::Initialize => "initialize",
            Phase::ToolsList => "tools_list",
            Phase::Ping => "ping",
        }
    }
}

/// Who answered, and in which revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerInfo {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) protocol_version: String,
    pub(crate) era: Era,
}

/// Capabilities reported, in label order.
pub(crate) const CAPABILITIES: [&str; 5] =
    ["tools", "resources", "prompts", "completions", "logging"];

/// The synthetic tool call of a target, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub(crate) name: String,
    pub(crate) arguments: Map<String, Value>,
    pub(crate) expect: Option<Regex>,
}

/// What a tool call gave; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A result, not an error, matching the expected pattern if one is set.
    Success,
    /// A result with `isError: true`.
    ToolError,
    /// A JSON-RPC error.
    RpcError,
    /// A result whose text does not match the expected pattern.
    UnexpectedContent,
    /// The server does not list the tool; it was not called.
    UnknownTool,
    /// The tool asked for input (`resultType: input_required`).
    InputRequired,
    /// No answer: the call broke down, timed out, or was never reached.
    Failed,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::ToolError,
        Outcome::RpcError,
        Outcome::UnexpectedContent,
        Outcome::UnknownTool,
        Outcome::InputRequired,
        Outcome::Failed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ToolError => "tool_error",
            Outcome::RpcError => "rpc_error",
            Outcome::UnexpectedContent => "unexpected_content",
            Outcome::UnknownTool => "unknown_tool",
            Outcome::InputRequired => "input_required",
            Outcome::Failed => "failed",
        }
    }
}

/// What the tool call found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCallReport {
    pub(crate) outcome: Outcome,
    /// Seconds of the call; 0 when it was not made.
    pub(crate) duration: f64,
    /// Why it did not succeed, for the log.
    pub(crate) detail: Option<String>,
}

/// What one MCP probe found.
#[derive(Debug)]
pub(crate) struct McpReport {
    pub(crate) transport: Transport,
    /// Seconds per completed phase, in order.
    pub(crate) phases: Vec<(Phase, f64)>,
    pub(crate) server: Option<ServerInfo>,
    /// Revisions the server says it speaks.
    pub(crate) supported: Vec<String>,
    /// Capabilities present, in the order of [`CAPABILITIES`]; `None` before an answer.
    pub(crate) capabilities: Option<[bool; 5]>,
    pub(crate) tools: Option<u64>,
    /// The `ttlMs` of the tool list, in seconds (modern); the smallest of its pages.
    pub(crate) tools_ttl: Option<f64>,
    pub(crate) tool_call: Option<ToolCallReport>,
    /// Seconds of the whole probe, close included.
    pub(crate) duration: f64,
    pub(crate) failure: Option<Failure>,
}

impl McpReport {
    fn timed(&mut self, phase: Phase, since: Instant) {
        self.phases.push((phase, since.elapsed().as_secs_f64()));
    }

    fn set_supported<'a>(&mut self, versions: impl IntoIterator<Item = &'a str>) {
        self.supported = versions
            .into_iter()
            .take(MAX_SUPPORTED)
            .map(label_value)
            .collect();
    }
}

/// How to probe: the pinned revision or `auto`, the era remembered for `auto`, and the
/// tool call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan<'a> {
    pub(crate) pin: Pin,
    pub(crate) memory: &'a EraMemory,
    pub(crate) tool_call: Option<&'a ToolCall>,
}

/// Probes the MCP server at `endpoint` by `deadline`.
pub(crate) async fn probe(
    transport: Transport,
    endpoint: &Endpoint,
    access: &Access,
    plan: Plan<'_>,
    deadline: Instant,
) -> McpReport {
    let start = Instant::now();
    let mut report = McpReport {
        transport,
        phases: Vec::with_capacity(6),
        server: None,
        supported: Vec::new(),
        capabilities: None,
        tools: None,
        tools_ttl: None,
        tool_call: None,
        duration: 0.0,
        failure: None,
    };
    let result = session(transport, endpoint, access, plan, deadline, &mut report).await;
    if transport == Transport::StreamableHttp && plan.pin == Pin::Auto {
        plan.memory.set(result.as_ref().ok().copied());
    }
    if let Err(failure) = result {
        if report.supported.is_empty() && !failure.supported.is_empty() {
            report.set_supported(failure.supported.iter().map(String::as_str));
        }
        report.failure = Some(failure);
    }
    if let (Some(call), None) = (plan.tool_call, &report.tool_call) {
        // The probe failed before the call.
        report.tool_call = Some(ToolCallReport {
            outcome: Outcome::Failed,
            duration: 0.0,
            detail: Some(format!(
                "tool {:?} not called: the probe failed first",
                call.name
            )),
        });
    }
    report.duration = start.elapsed().as_secs_f64();
    report
}

async fn session(
    transport: Transport,
    endpoint: &Endpoint,
    access: &Access,
    plan: Plan<'_>,
    deadline: Instant,
    report: &mut McpReport,
) -> Result<Era, Failure> {
    let since = Instant::now();
    let tcp = connect(endpoint, deadline).await?;
    report.timed(Phase::Connect, since);
    let since = Instant::now();
    let stream = secure(tcp, endpoint, access.tls.as_ref(), deadline).await?;
    let mut channel = match transport {
        Transport::WebSocket => Channel {
            next_id: 1,
            access,
            link: Link::WebSocket(Box::new(upgrade(stream, endpoint, access, deadline).await?)),
        },
        Transport::StreamableHttp => Channel {
            next_id: 1,
            access,
            link: Link::Http(HttpSession {
                endpoint,
                access,
                connection: Some(HttpConnection::open(stream).await?),
                session_id: None,
                protocol_version: None,
                modern: None,
                stray_sessions: Vec::new(),
            }),
        },
    };
    report.timed(Phase::Handshake, since);
    let result = converse(&mut channel, transport, plan, deadline, report).await;
    // A timed-out probe has no time left to close politely; dropping the connection closes it.
    let close_by = deadline.min(Instant::now() + CLOSE_GRACE);
    channel.close(close_by).await;
    result
}

/// Runs the exchange of the era that the pin, the memory or the server's answers choose.
async fn converse(
    channel: &mut Channel<'_>,
    transport: Transport,
    plan: Plan<'_>,
    deadline: Instant,
    report: &mut McpReport,
) -> Result<Era, Failure> {
    let pinned = match plan.pin {
        Pin::Revision(revision) => Some(revision),
        Pin::Auto => None,
    };
    if transport == Transport::WebSocket {
        let revision = pinned.unwrap_or(latest_legacy());
        return legacy(channel, revision, pinned.is_some(), plan, deadline, report).await;
    }
    if let Some(revision) = pinned {
        if Era::of(revision) == Some(Era::Legacy) {
            return legacy(channel, revision, true, plan, deadline, report).await;
        }
        return match discover(channel, revision, deadline, report).await {
            Discovered::Modern(result) => modern(channel, result, plan, deadline, report).await,
            // A legacy server's answer says it does not speak the pinned revision; a
            // server without server/discover says just that.
            Discovered::Legacy { failure, evidence }
                if evidence && !answered_as_modern(&failure) =>
            {
                Err(Failure {
                    reason: Reason::UnsupportedVersion,
                    message: format!(
                        "the server answered server/discover at {revision} as a legacy server \
                     does: {}",
                        failure.message
                    ),
                    ..failure
                })
            }
            Discovered::Legacy { failure, .. } | Discovered::Fatal(failure) => Err(failure),
        };
    }
    if plan.memory.get() == Some(Era::Legacy) {
        let tried = legacy(channel, latest_legacy(), false, plan, deadline, report).await;
        return match tried {
            Err(failure) if failure.answered() => {
                // Perhaps no longer legacy: find the era again, once.
                report.clear_findings();
                match discover(channel, latest_modern(), deadline, report).await {
                    Discovered::Modern(result) => {
                        modern(channel, result, plan, deadline, report).await
                    }
                    Discovered::Legacy { .. } | Discovered::Fatal(_) => Err(failure),
                }
            }
            other => other,
        };
    }
    match discover(channel, latest_modern(), deadline, report).await {
        Discovered::Modern(result) => modern(channel, result, plan, deadline, report).await,
        Discovered::Fatal(failure) => Err(failure),
        Discovered::Legacy { failure, evidence } => {
            tracing::debug!(
                reason = failure.reason.as_str(),
                status = failure.status,
                code = failure.code,
                "server/discover answered as a legacy server may; trying initialize."
            );
            channel.leave_modern();
            report.clear_findings();
            legacy(channel, latest_legacy(), false, plan, deadline, report)
                .await
                .map_err(|fallback| {
                    // The failure told is discover's when its answer was no sign of a legacy
                    // server (a 5xx, garbage), or when discover or initialize was answered
                    // as only a modern server answers (404 with -32601: a modern server
                    // without server/discover); else the server is legacy, and
                    // initialize's failure is the one that counts.
                    if !evidence || answered_as_modern(&failure) || answered_as_modern(&fallback) {
                        failure
                    } else {
                        fallback
                    }
                })
        }
    }
}

impl McpReport {
    /// Forgets what an attempt in the other era found, before the next one.
    fn clear_findings(&mut self) {
        self.phases
            .retain(|(phase, _)| matches!(phase, Phase::Connect | Phase::Handshake));
        self.server = None;
        self.supported.clear();
        self.capabilities = None;
        self.tools = None;
        self.tools_ttl = None;
        self.tool_call = None;
    }
}

/// What `server/discover` told of the server's era.
#[derive(Debug)]
enum Discovered {
    /// A modern server: its `DiscoverResult`.
    Modern(Value),
    /// The answer of a server that does not speak the modern era; `evidence` when the
    /// answer itself says so (a 4xx, a JSON-RPC error, a result naming no modern
    /// revision), rather than being a fault of any server (a 5xx, garbage).
    Legacy { failure: Failure, evidence: bool },
    /// A failure that no other era mends: the server was not reached, refused the
    /// credentials, or is modern and rejected the request.
    Fatal(Failure),
}

async fn discover(
    channel: &mut Channel<'_>,
    revision: &'static str,
    deadline: Instant,
    report: &mut McpReport,
) -> Discovered {
    let since = Instant::now();
    channel.enter_modern(revision);
    let answer = channel
        .call("server/discover", Map::new(), &[], deadline)
        .await;
    let result = match answer {
        Ok(result) => result,
        Err(failure) => return classify_discover_failure(failure),
    };
    if let Err(failure) = check_result_type(&result, "server/discover") {
        return Discovered::Legacy {
            failure,
            evidence: false,
        };
    }
    let Some(versions) = result.get("supportedVersions").and_then(Value::as_array) else {
        return Discovered::Legacy {
            failure: Failure::new(Reason::Protocol, "server/discover: no supportedVersions"),
            evidence: false,
        };
    };
    let versions: Vec<&str> = versions.iter().filter_map(Value::as_str).collect();
    if versions.contains(&revision) {
        report.timed(Phase::Discover, since);
        return Discovered::Modern(result);
    }
    let supported: Vec<String> = versions
        .iter()
        .take(MAX_SUPPORTED)
        .map(|v| truncate(v, 64))
        .collect();
    let more = if versions.len() > MAX_SUPPORTED {
        format!(" and {} more", versions.len() - MAX_SUPPORTED)
    } else {
        String::new()
    };
    let failure = Failure::new(
        Reason::UnsupportedVersion,
        format_args!(
            "server/discover: the server speaks {}{more} and not {revision}",
            supported.join(", ")
        ),
    );
    let failure = Failure {
        supported,
        ..failure
    };
    if versions.iter().any(|v| Era::of(v) == Some(Era::Modern)) {
        // Modern, in revisions the probe does not speak.
        Discovered::Fatal(failure)
    } else {
        Discovered::Legacy {
            failure,
            evidence: true,
        }
    }
}

fn classify_discover_failure(failure: Failure) -> Discovered {
    if !failure.answered() {
        return Discovered::Fatal(failure);
    }
    let status = failure.status.unwrap_or(200);
    match (failure.code, status) {
        (Some(-32020 | -32021), _) => Discovered::Fatal(failure),
        (Some(-32022), _) => {
            let modern = failure
                .supported
                .iter()
                .any(|v| Era::of(v) == Some(Era::Modern));
            if modern {
                Discovered::Fatal(failure)
            } else {
                Discovered::Legacy {
                    failure,
                    evidence: true,
                }
            }
        }
        (Some(_), _) => Discovered::Legacy {
            failure,
            evidence: true,
        },
        (None, 400..=499) => Discovered::Legacy {
            failure,
            evidence: true,
        },
        (None, _) => Discovered::Legacy {
            failure,
            evidence: false,
        },
    }
}

/// Whether a failed request was answered as only a modern server answers: 404 with -32601
/// (a method it does not know), or -32022 naming a modern revision.
fn answered_as_modern(failure: &Failure) -> bool {
    match failure.code {
        Some(-32601) => failure.status == Some(404),
        Some(-32022) => failure
            .supported
            .iter()
            .any(|v| Era::of(v) == Some(Era::Modern)),
        _ => false,
    }
}

/// `resultType` must be absent (a legacy answer) or `complete`.
fn check_result_type(result: &Value, what: &str) -> Result<(), Failure> {
    match result.get("resultType") {
        None => Ok(()),
        Some(Value::String(kind)) if kind == "complete" => Ok(()),
        Some(other) => Err(Failure::new(
            Reason::Protocol,
            format_args!(
                "{what}: unexpected resultType {}",
                truncate(&other.to_string(), 64)
            ),
        )),
    }
}

/// The modern exchange after a successful `server/discover`.
async fn modern(
    channel: &mut Channel<'_>,
    discovered: Value,
    plan: Plan<'_>,
    deadline: Instant,
    report: &mut McpReport,
) -> Result<Era, Failure> {
    let revision = channel.modern_revision().unwrap_or(latest_modern());
    if let Some(versions) = discovered
        .get("supportedVersions")
        .and_then(Value::as_array)
    {
        report.set_supported(versions.iter().filter_map(Value::as_str));
    }
    report.capabilities = Some(capabilities(&discovered));
    let info = discovered.get("_meta").and_then(|m| m.get(SERVER_INFO_KEY));
    report.server = Some(ServerInfo {
        name: text_of(info, "name"),
        version: text_of(info, "version"),
        protocol_version: revision.to_owned(),
        era: Era::Modern,
    });
    let listed = list_tools(channel, plan, deadline, report).await?;
    if let Some(call) = plan.tool_call {
        report.tool_call = Some(call_tool(channel, call, listed.as_ref(), deadline).await);
    }
    Ok(Era::Modern)
}

/// The legacy exchange: `initialize` asking `revision` (`strict`: nothing else will do),
/// the initialized notification, the tool list, `ping`, and the tool call.
async fn legacy(
    channel: &mut Channel<'_>,
    revision: &'static str,
    strict: bool,
    plan: Plan<'_>,
    deadline: Instant,
    report: &mut McpReport,
) -> Result<Era, Failure> {
    let since = Instant::now();
    let params = json!({
        "protocolVersion": revision,
        "capabilities": {},
        "clientInfo": {"name": "mcpwatch", "version": env!("CARGO_PKG_VERSION")},
    });
    let Value::Object(params) = params else {
        unreachable!("an object literal");
    };
    let init = channel.call("initialize", params, &[], deadline).await?;
    let spoken = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::new(Reason::Protocol, "initialize: no protocolVersion"))?;
    if !strict && !crate::era::LEGACY.contains(&spoken) {
        return Err(Failure {
            supported: vec![truncate(spoken, 64)],
            ..Failure::new(
                Reason::UnsupportedVersion,
                format_args!(
                    "initialize: the server offers {:?}, no revision of the legacy era the \
                     probe speaks",
                    truncate(spoken, 64)
                ),
            )
        });
    }
    if strict && spoken != revision {
        return Err(Failure {
            supported: vec![truncate(spoken, 64)],
            ..Failure::new(
                Reason::UnsupportedVersion,
                format_args!(
                    "initialize: asked {revision}, the server offers {}",
                    truncate(spoken, 64)
                ),
            )
        });
    }
    let info = init.get("serverInfo");
    report.server = Some(ServerInfo {
        name: text_of(info, "name"),
        version: text_of(info, "version"),
        protocol_version: label_value(spoken),
        era: Era::Legacy,
    });
    report.set_supported([spoken]);
    report.capabilities = Some(capabilities(&init));
    channel.set_session_version(spoken);
    channel
        .notify("notifications/initialized", deadline)
        .await?;
    report.timed(Phase::Initialize, since);

    let listed = list_tools(channel, plan, deadline, report).await?;

    let since = Instant::now();
    channel.call("ping", Map::new(), &[], deadline).await?;
    report.timed(Phase::Ping, since);

    if let Some(call) = plan.tool_call {
        report.tool_call = Some(call_tool(channel, call, listed.as_ref(), deadline).await);
    }
    Ok(Era::Legacy)
}

/// Capabilities present in a `DiscoverResult` or an `InitializeResult`.
fn capabilities(result: &Value) -> [bool; 5] {
    let present = result.get("capabilities");
    CAPABILITIES.map(|name| {
        present
            .and_then(|c| c.get(name))
            .is_some_and(|v| !v.is_null())
    })
}

/// A string of `info` (the server's name or version) fit for a label.
fn text_of(info: Option<&Value>, key: &str) -> String {
    info.and_then(|i| i.get(key))
        .and_then(Value::as_str)
        .map(label_value)
        .unwrap_or_default()
}

/// Lists every page of the tools, when the server has the tools capability (one without it
/// has none, and may answer `tools/list` with an error). Returns the listing of the tool
/// to call, if it is among them: `Some(schema)`; `None` when it is not.
async fn list_tools(
    channel: &mut Channel<'_>,
    plan: Plan<'_>,
    deadline: Instant,
    report: &mut McpReport,
) -> Result<Option<Value>, Failure> {
    let since = Instant::now();
    let mut tools = 0u64;
    let mut wanted = None;
    if report.capabilities.is_some_and(|c| c[0]) {
        let mut cursor: Option<String> = None;
        let mut seen: Vec<String> = Vec::new();
        for page in 0.. {
            if page == MAX_PAGES {
                return Err(Failure::new(
                    Reason::Protocol,
                    format_args!("tools/list: more than {MAX_PAGES} pages"),
                ));
            }
            let mut params = Map::new();
            if let Some(cursor) = &cursor {
                params.insert("cursor".into(), Value::String(cursor.clone()));
            }
            let result = channel.call("tools/list", params, &[], deadline).await?;
            check_result_type(&result, "tools/list")?;
            let listed = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| Failure::new(Reason::Protocol, "tools/list: no tools array"))?;
            if let Some(at) = listed
                .iter()
                .position(|t| !t.get("name").is_some_and(Value::is_string))
            {
                return Err(Failure::new(
                    Reason::Protocol,
                    format_args!("tools/list: entry {at} of page {page} is not a tool"),
                ));
            }
            tools += listed.len() as u64;
            if let Some(call) = plan.tool_call
                && wanted.is_none()
            {
                wanted = listed
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(call.name.as_str()))
                    .map(|t| t.get("inputSchema").cloned().unwrap_or(Value::Null));
            }
            if channel.modern_revision().is_some() {
                // A missing or negative TTL counts as 0.
                let ttl = result
                    .get("ttlMs")
                    .and_then(Value::as_f64)
                    .filter(|t| *t >= 0.0)
                    .unwrap_or(0.0)
                    / 1000.0;
                report.tools_ttl = Some(report.tools_ttl.map_or(ttl, |t: f64| t.min(ttl)));
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    // A cursor given twice would list the same pages again, forever.
                    if seen.iter().any(|c| c == next) {
                        return Err(Failure::new(
                            Reason::Protocol,
                            format_args!(
                                "tools/list: page {page} gives cursor {:?} again",
                                truncate(next, 64)
                            ),
                        ));
                    }
                    seen.push(next.to_owned());
                    cursor = Some(next.to_owned());
                }
                _ => break,
            }
        }
    }
    report.tools = Some(tools);
    report.timed(Phase::ToolsList, since);
    Ok(wanted)
}

/// Calls the configured tool, if the server lists it, and judges its answer.
async fn call_tool(
    channel: &mut Channel<'_>,
    call: &ToolCall,
    schema: Option<&Value>,
    deadline: Instant,
) -> ToolCallReport {
    let Some(schema) = schema else {
        return ToolCallReport {
            outcome: Outcome::UnknownTool,
            duration: 0.0,
            detail: Some(format!("the server does not list tool {:?}", call.name)),
        };
    };
    let mut params = Map::new();
    params.insert("name".into(), Value::String(call.name.clone()));
    params.insert("arguments".into(), Value::Object(call.arguments.clone()));
    // Arguments the tool marks for headers travel in `Mcp-Param-<Name>` too (modern).
    let mut headers = vec![("mcp-name".to_owned(), header_text(&call.name))];
    for (argument, value) in &call.arguments {
        let marked = schema
            .get("properties")
            .and_then(|p| p.get(argument))
            .and_then(|p| p.get("x-mcp-header"))
            .and_then(Value::as_str);
        if let Some(name) = marked {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            headers.push((format!("mcp-param-{name}"), header_text(&text)));
        }
    }
    let since = Instant::now();
    let answer = channel.call("tools/call", params, &headers, deadline).await;
    let duration = since.elapsed().as_secs_f64();
    let (outcome, detail) = match answer {
        Err(failure) if failure.code.is_some() => (Outcome::RpcError, Some(failure.message)),
        Err(failure) => (Outcome::Failed, Some(failure.to_string())),
        Ok(result) => judge(&result, call),
    };
    let detail = detail.map(|d| channel.scrub(&d));
    ToolCallReport {
        outcome,
        duration,
        detail,
    }
}

/// The outcome of a `CallToolResult`.
fn judge(result: &Value, call: &ToolCall) -> (Outcome, Option<String>) {
    match result.get("resultType").and_then(Value::as_str) {
        None | Some("complete") => {}
        Some("input_required") => {
            return (
                Outcome::InputRequired,
                Some("the tool asked for input".into()),
            );
        }
        Some(other) => {
            return (
                Outcome::Failed,
                Some(format!("unexpected resultType {:?}", truncate(other, 64))),
            );
        }
    }
    let text = result_text(result);
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return (
            Outcome::ToolError,
            Some(format!("isError: {}", truncate(&text, SERVER_TEXT_MAX))),
        );
    }
    if let Some(expect) = &call.expect
        && !expect.is_match(&text)
    {
        return (
            Outcome::UnexpectedContent,
            Some(format!(
                "the result does not match {:?}: {}",
                expect.as_str(),
                truncate(&text, SERVER_TEXT_MAX)
            )),
        );
    }
    (Outcome::Success, None)
}

/// The text of a tool result: its text blocks, one per line, else its structured content.
fn result_text(result: &Value) -> String {
    let blocks: Vec<&str> = result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    if blocks.is_empty() {
        result
            .get("structuredContent")
            .map(Value::to_string)
            .unwrap_or_default()
    } else {
        blocks.join("\n")
    }
}

/// A header value as the transport writes it: as it is when it is printable ASCII without
/// leading or trailing blanks, else `=?base64?...?=` of its UTF-8.
fn header_text(text: &str) -> String {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.starts_with([' ', '\t'])
        && !text.ends_with([' ', '\t']);
    if plain {
        text.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
        )
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn from_value(error: &Value) -> Self {
        Self {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .map(|m| truncate(m, SERVER_TEXT_MAX))
                .unwrap_or_default(),
            data: error.get("data").cloned(),
        }
    }

    /// The failure this error is, answered to `what` with HTTP `status` if known.
    fn failure(&self, what: &str, status: Option<u16>) -> Failure {
        let reason = match (status, self.code) {
            (Some(401 | 403), _) => Reason::Unauthorized,
            (_, -32022) => Reason::UnsupportedVersion,
            (_, -32020) => Reason::HeaderMismatch,
            (_, -32601) => Reason::MethodNotFound,
            _ => Reason::ErrorResponse,
        };
        let supported: Vec<String> = if self.code == -32022 {
            let all: Vec<&str> = self
                .data
                .as_ref()
                .and_then(|d| d.get("supported"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            // Modern revisions first, so that keeping a few still tells the era.
            let (modern, legacy): (Vec<&str>, Vec<&str>) = all
                .into_iter()
                .partition(|v| Era::of(v) == Some(Era::Modern));
            modern
                .into_iter()
                .chain(legacy)
                .take(MAX_SUPPORTED)
                .map(|v| truncate(v, 64))
                .collect()
        } else {
            Vec::new()
        };
        let mut message = format!("{what}: error {}: {}", self.code, self.message);
        if !supported.is_empty() {
            message.push_str(&format!("; the server supports {}", supported.join(", ")));
        }
        if let Some(status) = status {
            message.push_str(&format!(" (HTTP {status})"));
        }
        Failure {
            status,
            code: Some(self.code),
            supported,
            ..Failure::new(reason, message)
        }
    }
}

/// What a message from the server is to a request awaiting the answer `id`.
#[derive(Debug, PartialEq)]
enum Incoming {
    /// The answer: its result.
    Result(Value),
    /// The answer: an error.
    Error(RpcError),
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
    let answers = message
        .get("id")
        .and_then(Value::as_f64)
        .is_some_and(|got| got == id as f64);
    if answers && !message.contains_key("method") {
        if let Some(error) = message.get("error") {
            return Ok(Incoming::Error(RpcError::from_value(error)));
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

/// Text a server sent, fit for a log line: at most `max` characters, control characters
/// and bidirectional overrides replaced.
fn truncate(text: &str, max: usize) -> String {
    let mut cut: String = text
        .chars()
        .take(max)
        .map(crate::mapping::printable)
        .collect();
    if text.chars().nth(max).is_some() {
        cut.push('…');
    }
    cut
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

/// The result of the answer to `id` in one message or batch sent over HTTP, where the
/// probe answers no server request; `None` when it holds no answer to `id`.
fn answer_to(text: &[u8], id: u64, what: &str) -> Result<Option<Value>, Failure> {
    for incoming in answer_in(text, id, what)? {
        match incoming {
            Incoming::Result(result) => return Ok(Some(result)),
            Incoming::Error(error) => return Err(error.failure(what, None)),
            Incoming::Request { .. } | Incoming::Other => {}
        }
    }
    Ok(None)
}

/// The JSON-RPC error in the body of an HTTP error status, whatever its id (servers
/// answer with `null`, or an id of their own, when they reject a request before reading
/// it), in a JSON body or the first event of an event stream.
fn error_in_body(body: &[u8]) -> Option<RpcError> {
    let text = std::str::from_utf8(body).ok()?;
    let json = if text.trim_start().starts_with(['{', '[']) {
        text.to_owned()
    } else {
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        data.join("\n")
    };
    let value: Value = serde_json::from_str(&json).ok()?;
    let message = match &value {
        Value::Array(batch) => batch.iter().find(|m| m.get("error").is_some())?,
        single => single,
    };
    message
        .get("error")
        .filter(|e| e.is_object())
        .map(RpcError::from_value)
}

/// The `_meta` every modern request carries.
fn request_meta(revision: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": revision,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {
            "name": "mcpwatch",
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

/// The probe's side of the conversation: request ids, and the link it travels on.
struct Channel<'a> {
    next_id: u64,
    /// For what the server's text may echo of the credentials.
    access: &'a Access,
    link: Link<'a>,
}

enum Link<'a> {
    WebSocket(Box<WebSocketStream<Stream>>),
    Http(HttpSession<'a>),
}

impl Channel<'_> {
    /// Sends `method` with `params` (and, in the modern era, the request `_meta` and
    /// headers), and returns the answer's result.
    async fn call(
        &mut self,
        method: &str,
        mut params: Map<String, Value>,
        headers: &[(String, String)],
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(revision) = self.modern_revision() {
            params.insert("_meta".into(), request_meta(revision));
        }
        let message = if params.is_empty() {
            json!({"jsonrpc": "2.0", "id": id, "method": method})
        } else {
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        };
        let answer = match &mut self.link {
            Link::WebSocket(ws) => ws_call(ws, &message, id, method, deadline).await,
            Link::Http(http) => http
                .post(&message, Some(id), method, headers, deadline)
                .await
                .and_then(|answer| {
                    answer.ok_or_else(|| {
                        Failure::new(Reason::Protocol, format_args!("{method}: no answer"))
                    })
                }),
        };
        answer.map_err(|failure| Failure {
            message: self.scrub(&failure.message),
            ..failure
        })
    }

    /// Text of a server's answer fit for the log: the credentials it may echo shown as
    /// `<secret>` (before it is cut, so that no part of one survives), then cut.
    fn scrub(&self, text: &str) -> String {
        truncate(&self.access.redact(text), MESSAGE_TEXT_MAX)
    }

    async fn notify(&mut self, method: &str, deadline: Instant) -> Result<(), Failure> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        match &mut self.link {
            Link::WebSocket(ws) => ws_send(ws, &message, method, deadline).await,
            Link::Http(http) => http
                .post(&message, None, method, &[], deadline)
                .await
                .map(|_| ()),
        }
    }

    /// Speaks the modern era at `revision` from now on (Streamable HTTP only).
    fn enter_modern(&mut self, revision: &'static str) {
        if let Link::Http(http) = &mut self.link {
            http.modern = Some(revision);
        }
    }

    /// Speaks the legacy era from now on.
    fn leave_modern(&mut self) {
        if let Link::Http(http) = &mut self.link {
            http.modern = None;
        }
    }

    fn modern_revision(&self) -> Option<&'static str> {
        match &self.link {
            Link::Http(http) => http.modern,
            Link::WebSocket(_) => None,
        }
    }

    /// The revision `initialize` agreed, sent with every later request of the session.
    fn set_session_version(&mut self, version: &str) {
        if let Link::Http(http) = &mut self.link {
            http.protocol_version = Some(version.to_owned());
        }
    }

    /// Ends the conversation politely: a WebSocket close handshake, or a DELETE of each
    /// HTTP session the server opened. Failing here fails nothing.
    async fn close(self, deadline: Instant) {
        match self.link {
            Link::WebSocket(mut ws) => {
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
            Link::Http(mut http) => http.end(deadline).await,
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
    for (name, value) in &access.headers {
        handshake = handshake.with_header(name.as_str(), value.expose());
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
                Incoming::Error(error) => return Err(error.failure(what, None)),
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

/// Sessions a server opens unasked (legacy servers answering a modern request) that the
/// probe ends, at most.
const MAX_STRAY_SESSIONS: usize = 4;

/// A Streamable HTTP conversation: POSTs of JSON-RPC messages to one endpoint, answered
/// with JSON or an event stream; in the legacy era, carrying the session the server gave.
struct HttpSession<'a> {
    endpoint: &'a Endpoint,
    access: &'a crate::Access,
    connection: Option<HttpConnection>,
    /// The legacy session.
    session_id: Option<String>,
    /// The legacy session's revision, once agreed.
    protocol_version: Option<String>,
    /// The modern revision spoken, if modern.
    modern: Option<&'static str>,
    /// Sessions opened by answers to modern requests, to be ended.
    stray_sessions: Vec<String>,
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

    /// POSTs `message` (a request when `id` is set, else a notification) with `extra`
    /// headers; for a request, returns the answer's result.
    async fn post(
        &mut self,
        message: &Value,
        id: Option<u64>,
        what: &str,
        extra: &[(String, String)],
        deadline: Instant,
    ) -> Result<Option<Value>, Failure> {
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        match self.modern {
            Some(revision) => {
                headers.push(("mcp-protocol-version", revision));
                headers.push(("mcp-method", what));
            }
            None => {
                if let Some(session) = &self.session_id {
                    headers.push(("mcp-session-id", session));
                }
                if let Some(version) = &self.protocol_version {
                    headers.push(("mcp-protocol-version", version));
                }
            }
        }
        if self.modern.is_some() {
            headers.extend(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        }
        let post = request(
            Method::POST,
            self.endpoint,
            self.access,
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
            if self.modern.is_some() {
                if self.stray_sessions.len() < MAX_STRAY_SESSIONS
                    && !self.stray_sessions.iter().any(|s| s == session)
                {
                    self.stray_sessions.push(session.to_owned());
                }
            } else {
                self.session_id = Some(session.to_owned());
            }
        }
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !status.is_success() {
            let code = status.as_u16();
            let body = read_body(response.into_body(), ERROR_BODY_LIMIT, deadline, what)
                .await
                .unwrap_or_default();
            return Err(match error_in_body(&body) {
                Some(error) => error.failure(what, Some(code)),
                None => Failure {
                    status: Some(code),
                    ..Failure::new(
                        if matches!(code, 401 | 403) {
                            Reason::Unauthorized
                        } else {
                            Reason::ErrorResponse
                        },
                        format_args!("{what}: HTTP {code}"),
                    )
                },
            });
        }
        let Some(id) = id else {
            // A notification: 202 Accepted, with no body to speak of.
            let _ = read_body(response.into_body(), ERROR_BODY_LIMIT, deadline, what).await;
            return Ok(None);
        };
        if content_type.starts_with("text/event-stream") {
            let mut events = EventStream::new(response.into_body(), MESSAGE_LIMIT);
            let answer = answer_in_events(&mut events, id, what, deadline).await;
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
                format_args!(
                    "{what}: answered HTTP {} with content type {:?}",
                    status.as_u16(),
                    truncate(&content_type, 64)
                ),
            ));
        }
        let body = read_body(response.into_body(), MESSAGE_LIMIT, deadline, what).await?;
        answer_to(&body, id, what)?.map(Some).ok_or_else(|| {
            Failure::new(
                Reason::Protocol,
                format_args!("{what}: the JSON answer holds no response to request {id}"),
            )
        })
    }

    /// Ends each session the server opened with a DELETE, as the transport asks of a
    /// client that is done. What the deadline leaves no time for is ended after the probe,
    /// on a connection of its own, so that a probe cut short leaves no session behind.
    async fn end(&mut self, deadline: Instant) {
        let mut sessions: Vec<(String, Option<String>)> = self
            .session_id
            .take()
            .map(|s| (s, self.protocol_version.clone()))
            .into_iter()
            .chain(self.stray_sessions.drain(..).map(|s| (s, None)))
            .collect();
        while let Some((session, version)) = sessions.first() {
            if let Err(error) = self.delete(session, version.as_deref(), deadline).await {
                tracing::debug!(%error, "MCP session end was not clean; ending it after the probe.");
                end_detached(self.endpoint.clone(), self.access.clone(), sessions);
                return;
            }
            sessions.remove(0);
        }
    }

    /// DELETEs one session.
    async fn delete(
        &mut self,
        session: &str,
        version: Option<&str>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let mut headers = vec![("mcp-session-id", session)];
        if let Some(version) = version {
            headers.push(("mcp-protocol-version", version));
        }
        let delete = request(
            Method::DELETE,
            self.endpoint,
            self.access,
            &headers,
            Bytes::new(),
        )?;
        let response = self
            .connection(deadline)
            .await?
            .send(delete, deadline, "session end")
            .await?;
        read_body(
            response.into_body(),
            ERROR_BODY_LIMIT,
            deadline,
            "session end",
        )
        .await
        .map(|_| ())
    }
}

/// The longest a session end after the probe may take.
const DETACHED_CLOSE: Duration = Duration::from_secs(2);

/// Ends `sessions` in a task of their own, on a new connection, with [`DETACHED_CLOSE`] to
/// do it. At most 32 such tasks run at once; past that, sessions are left to the server's
/// expiry (and the log says so).
fn end_detached(endpoint: Endpoint, access: Access, sessions: Vec<(String, Option<String>)>) {
    static DETACHED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);
    let Ok(permit) = DETACHED.try_acquire() else {
        tracing::debug!(
            sessions = sessions.len(),
            "Too many MCP session ends under way; leaving these to the server's expiry."
        );
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let deadline = Instant::now() + DETACHED_CLOSE;
        let mut http = HttpSession {
            endpoint: &endpoint,
            access: &access,
            connection: None,
            session_id: None,
            protocol_version: None,
            modern: None,
            stray_sessions: Vec::new(),
        };
        for (session, version) in &sessions {
            if let Err(error) = http.delete(session, version.as_deref(), deadline).await {
                tracing::debug!(%error, "MCP session end after the probe failed.");
                return;
            }
        }
    });
}

/// Reads events until the answer to `id`.
async fn answer_in_events(
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
        if let Some(result) = answer_to(data.as_bytes(), id, what)? {
            return Ok(result);
        }
    }
    Err(Failure::new(
        Reason::Protocol,
        format_args!("{what}: no answer among {MAX_UNRELATED} events"),
    ))
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
        let [Incoming::Error(error)] = &r[..] else {
            panic!("{r:?}");
        };
        let failure = error.failure("initialize", None);
        assert_eq!(failure.message, "initialize: error -32602: bad version");
        assert_eq!(failure.reason, Reason::ErrorResponse);
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
    fn modern_error_codes_have_their_reasons() {
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported protocol version","data":{"supported":["2026-07-28"],"requested":"2099-01-01"}}}"#;
        let failure = error_in_body(body)
            .expect("error")
            .failure("server/discover", Some(400));
        assert_eq!(failure.reason, Reason::UnsupportedVersion);
        assert_eq!(failure.supported, vec!["2026-07-28".to_owned()]);
        assert_eq!(
            failure.message,
            "server/discover: error -32022: Unsupported protocol version; the server \
             supports 2026-07-28 (HTTP 400)"
        );
        for (body, reason) in [
            (
                &br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Header mismatch"}}"#[..],
                Reason::HeaderMismatch,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found","data":"ping"}}"#,
                Reason::MethodNotFound,
            ),
            (
                br#"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#,
                Reason::ErrorResponse,
            ),
            (
                b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32022,\"message\":\"x\"}}\n\n",
                Reason::UnsupportedVersion,
            ),
        ] {
            let failure = error_in_body(body).expect("error").failure("t", Some(400));
            assert_eq!(failure.reason, reason, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(error_in_body(b"<html>Not Found</html>"), None);
        assert_eq!(error_in_body(b""), None);
        let failure = error_in_body(br#"{"error":{"code":-32600,"message":"x"}}"#)
            .expect("error")
            .failure("t", Some(401));
        assert_eq!(failure.reason, Reason::Unauthorized);
    }

    #[test]
    fn discover_failures_tell_the_era() {
        let failure = |body: &[u8], status| {
            error_in_body(body)
                .map(|e| e.failure("server/discover", Some(status)))
                .unwrap_or(Failure {
                    status: Some(status),
                    ..Failure::new(Reason::ErrorResponse, "HTTP")
                })
        };
        // mcp 1.x, stateful and stateless: legacy.
        let d = classify_discover_failure(failure(
            br#"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#,
            400,
        ));
        assert!(
            matches!(d, Discovered::Legacy { evidence: true, .. }),
            "{d:?}"
        );
        // A bare 4xx: legacy; a 5xx: perhaps, without evidence.
        let d = classify_discover_failure(failure(b"", 404));
        assert!(
            matches!(d, Discovered::Legacy { evidence: true, .. }),
            "{d:?}"
        );
        let d = classify_discover_failure(failure(b"", 502));
        assert!(
            matches!(
                d,
                Discovered::Legacy {
                    evidence: false,
                    ..
                }
            ),
            "{d:?}"
        );
        // Modern complaints: no fallback.
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"m"}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32021,"message":"m"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"m","data":{"supported":["2027-01-01"]}}}"#,
        ] {
            let d = classify_discover_failure(failure(body, 400));
            assert!(matches!(d, Discovered::Fatal(_)), "{d:?}");
        }
        // -32022 naming only legacy revisions: a legacy server.
        let d = classify_discover_failure(failure(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"m","data":{"supported":["2025-11-25"]}}}"#,
            400,
        ));
        assert!(
            matches!(d, Discovered::Legacy { evidence: true, .. }),
            "{d:?}"
        );
        let d = classify_discover_failure(Failure::timeout("server/discover"));
        assert!(matches!(d, Discovered::Fatal(_)), "{d:?}");
        let d = classify_discover_failure(Failure {
            status: Some(401),
            ..Failure::new(Reason::Unauthorized, "HTTP 401")
        });
        assert!(matches!(d, Discovered::Fatal(_)), "{d:?}");
    }

    #[test]
    fn tool_results_are_judged() {
        let call = ToolCall {
            name: "tool_001".into(),
            arguments: Map::new(),
            expect: Some(Regex::new("^tool_001: ").expect("regex")),
        };
        let ok = json!({"content":[{"type":"text","text":"tool_001: hi"}],"isError":false,"resultType":"complete"});
        assert_eq!(judge(&ok, &call).0, Outcome::Success);
        let bad = json!({"content":[{"type":"text","text":"boom"}],"isError":true});
        assert_eq!(judge(&bad, &call).0, Outcome::ToolError);
        let other = json!({"content":[{"type":"text","text":"quota exceeded"}]});
        assert_eq!(judge(&other, &call).0, Outcome::UnexpectedContent);
        let structured = json!({"content":[],"structuredContent":{"result":"tool_001: x"}});
        let loose = ToolCall {
            expect: Some(Regex::new("tool_001: x").expect("regex")),
            ..call.clone()
        };
        assert_eq!(judge(&structured, &loose).0, Outcome::Success);
        let input = json!({"resultType":"input_required","inputRequests":{}});
        assert_eq!(judge(&input, &call).0, Outcome::InputRequired);
        let unknown = json!({"resultType":"task"});
        assert_eq!(judge(&unknown, &call).0, Outcome::Failed);
    }

    #[test]
    fn header_values_are_encoded_when_they_must_be() {
        assert_eq!(header_text("tool_001"), "tool_001");
        assert_eq!(header_text("météo"), "=?base64?bcOpdMOpbw==?=");
        assert_eq!(header_text(" padded"), "=?base64?IHBhZGRlZA==?=");
        assert_eq!(header_text("a\nb"), "=?base64?YQpi?=");
    }

    #[test]
    fn capabilities_and_result_types() {
        let caps =
            capabilities(&json!({"capabilities": {"tools": {"listChanged": true}, "prompts": {}}}));
        assert_eq!(caps, [true, false, true, false, false]);
        assert!(check_result_type(&json!({}), "t").is_ok());
        assert!(check_result_type(&json!({"resultType": "complete"}), "t").is_ok());
        assert_eq!(
            check_result_type(&json!({"resultType": "task"}), "t")
                .expect_err("unknown")
                .reason,
            Reason::Protocol
        );
    }
}
