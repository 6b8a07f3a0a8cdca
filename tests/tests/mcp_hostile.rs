//! The MCP probe against servers that misbehave as real ones do: a modern-only server with
//! a passing fault, a -32022 error too large for a small buffer, cursors that go round,
//! tool lists holding no tools, names with control characters, a legacy server offering a
//! revision nobody knows, and a server that echoes the credentials it was sent into its
//! errors. Each server is a small scripted HTTP server on loopback that counts what it is
//! asked.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::{Collector, MetricSink, ScrapeContext};
use mcpwatch_tests::mcp::FAILURE_REASONS;
use mcpwatch_wsdaemon::WsDaemonCollector;
use serde_json::{Value, json};
use tokio::time::Instant;

/// What the scripted server answers: status, content type and body, from the request's
/// headers and JSON body.
type Script = dyn Fn(&HeaderMap, &Value) -> (u16, &'static str, String) + Send + Sync;

/// A scripted MCP endpoint at `/mcp`; it records the method of every request.
struct Scripted {
    url: String,
    methods: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    async fn start(
        script: impl Fn(&HeaderMap, &Value) -> (u16, &'static str, String) + Send + Sync + 'static,
    ) -> Self {
        let script: Arc<Script> = Arc::new(script);
        let methods: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = methods.clone();
        let app = axum::Router::new().route(
            "/mcp",
            axum::routing::any(move |headers: HeaderMap, body: Bytes| {
                let script = script.clone();
                let seen = seen.clone();
                async move {
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let method = request["method"].as_str().unwrap_or("(none)").to_owned();
                    seen.lock().expect("methods").push(method);
                    let (status, content_type, body) = script(&headers, &request);
                    (
                        StatusCode::from_u16(status).expect("status"),
                        [(axum::http::header::CONTENT_TYPE, content_type)],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, methods, task }
    }

    fn methods(&self) -> Vec<String> {
        self.methods.lock().expect("methods").clone()
    }
}

fn result(request: &Value, result: Value) -> (u16, &'static str, String) {
    (
        200,
        "application/json",
        json!({"jsonrpc": "2.0", "id": request["id"], "result": result}).to_string(),
    )
}

fn rpc_error(
    request: &Value,
    status: u16,
    code: i64,
    message: &str,
    data: Value,
) -> (u16, &'static str, String) {
    (
        status,
        "application/json",
        json!({"jsonrpc": "2.0", "id": request["id"],
               "error": {"code": code, "message": message, "data": data}})
        .to_string(),
    )
}

fn discover_result(name: &str) -> Value {
    json!({
        "supportedVersions": ["2026-07-28"],
        "capabilities": {"tools": {}},
        "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
        "_meta": {"io.modelcontextprotocol/serverInfo": {"name": name, "version": "1.0"}},
    })
}

fn is_modern(headers: &HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .is_some_and(|v| v == "2026-07-28")
}

/// One collection of a target probing `url` with `extra` settings: the sink and the
/// collection's error text.
async fn probe(url: &str, extra: &str) -> (MetricSink, Option<String>) {
    let config = parse_yaml(
        &format!("name: hostile\nmcp_url: {url}\ntimeout: 5s\n{extra}"),
        Path::new("t.yml"),
    )
    .expect("config");
    let collector = WsDaemonCollector::new(config).expect("collector");
    let mut sink = MetricSink::default();
    let outcome = collector
        .collect(
            &ScrapeContext::new(Instant::now() + Duration::from_secs(10)),
            &mut sink,
        )
        .await;
    (sink, outcome.err().map(|e| e.to_string()))
}

fn value(sink: &MetricSink, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sink.find(name).and_then(|family| family.value(labels))
}

/// The one failure reason set.
fn reason(sink: &MetricSink) -> Option<String> {
    let family = sink.find("wsdaemon_mcp_failure").expect("failure family");
    FAILURE_REASONS
        .into_iter()
        .find(|r| family.value(&[("transport", "streamable_http"), ("reason", r)]) == Some(1.0))
        .map(str::to_owned)
}

#[tokio::test]
async fn a_passing_fault_of_a_modern_only_server_is_told_as_itself() {
    // Modern-only: initialize is answered as a modern server answers what it does not know.
    let server = Scripted::start(|headers, request| {
        if !is_modern(headers) {
            return rpc_error(
                request,
                404,
                -32601,
                "Method not found",
                json!("initialize"),
            );
        }
        match request["method"].as_str() {
            Some("server/discover") => (500, "text/plain", "upstream database unavailable".into()),
            _ => rpc_error(request, 404, -32601, "Method not found", Value::Null),
        }
    })
    .await;
    let (sink, error) = probe(&server.url, "").await;
    assert_eq!(value(&sink, "wsdaemon_mcp_up", &[]), Some(0.0));
    assert_eq!(reason(&sink).as_deref(), Some("error_response"));
    let error = error.expect("a failed collection");
    assert!(error.contains("server/discover: HTTP 500"), "{error}");
    assert_eq!(server.methods(), ["server/discover", "initialize"]);

    // A legacy server that knows no server/discover (400 with -32601), then fails initialize:
    // the failure is initialize's.
    let legacy = Scripted::start(|_, request| match request["method"].as_str() {
        Some("server/discover") => rpc_error(request, 400, -32601, "Method not found", Value::Null),
        _ => rpc_error(
            request,
            500,
            -32000,
            "session store unavailable",
            Value::Null,
        ),
    })
    .await;
    let (sink, error) = probe(&legacy.url, "").await;
    assert_eq!(reason(&sink).as_deref(), Some("error_response"));
    assert!(error.expect("failed").contains("initialize: error -32000"));
}

#[tokio::test]
async fn a_large_unsupported_version_error_is_read_whole_and_bounded() {
    // 3,000 revisions of 50 characters, then a modern one: about 160 KB.
    let mut supported: Vec<String> = (0..3000).map(|i| format!("{i:050}")).collect();
    supported.push("2027-05-01".into());
    let supported = Arc::new(supported);
    let server = Scripted::start(move |_, request| {
        rpc_error(
            request,
            400,
            -32022,
            "Unsupported protocol version",
            json!({"supported": *supported, "requested": "2026-07-28"}),
        )
    })
    .await;
    let (sink, _) = probe(&server.url, "").await;
    assert_eq!(reason(&sink).as_deref(), Some("unsupported_version"));
    let family = sink
        .find("wsdaemon_mcp_supported_version")
        .expect("supported");
    assert_eq!(family.samples().len(), 16);
    // A modern server that speaks no revision the probe does: no fallback to initialize.
    assert_eq!(server.methods(), ["server/discover"]);
}

#[tokio::test]
async fn cursors_that_go_round_end_the_list_as_a_protocol_failure() {
    for (cursors, requests) in [(vec!["A", "B", "A"], 3usize), (vec!["A", "A"], 2)] {
        let shown = format!("{cursors:?}");
        let cursors = Arc::new(cursors);
        let server = Scripted::start(move |headers, request| match request["method"].as_str() {
            Some("server/discover") if is_modern(headers) => {
                result(request, discover_result("loop"))
            }
            Some("tools/list") => {
                let page = match request["params"]["cursor"].as_str() {
                    None => 0,
                    Some(c) => cursors.iter().position(|x| *x == c).expect("cursor") + 1,
                };
                let next = cursors.get(page.min(cursors.len() - 1)).copied();
                result(
                    request,
                    json!({"tools": [{"name": format!("t{page}"), "inputSchema": {}}],
                               "nextCursor": next, "resultType": "complete", "ttlMs": 0}),
                )
            }
            _ => rpc_error(request, 404, -32601, "Method not found", Value::Null),
        })
        .await;
        let (sink, error) = probe(&server.url, "").await;
        assert_eq!(reason(&sink).as_deref(), Some("protocol"), "{shown}");
        assert!(error.expect("failed").contains("again"));
        let lists = server
            .methods()
            .iter()
            .filter(|m| *m == "tools/list")
            .count();
        assert_eq!(lists, requests, "{shown}");
    }
}

#[tokio::test]
async fn entries_that_are_no_tools_are_a_protocol_failure() {
    let server = Scripted::start(|headers, request| match request["method"].as_str() {
        Some("server/discover") if is_modern(headers) => result(request, discover_result("x")),
        Some("tools/list") => result(
            request,
            json!({"tools": [1, "two", null, [], {"name": "real"}], "resultType": "complete"}),
        ),
        _ => rpc_error(request, 404, -32601, "Method not found", Value::Null),
    })
    .await;
    let (sink, error) = probe(&server.url, "").await;
    assert_eq!(reason(&sink).as_deref(), Some("protocol"));
    assert!(
        error
            .expect("failed")
            .contains("entry 0 of page 0 is not a tool")
    );
    assert_eq!(value(&sink, "wsdaemon_mcp_tools", &[]), None);
}

#[tokio::test]
async fn control_characters_never_reach_a_label_and_unknown_revisions_are_refused() {
    let modern = Scripted::start(|headers, request| match request["method"].as_str() {
        Some("server/discover") if is_modern(headers) => {
            result(request, discover_result("gate\u{1b}[31mway\u{202e}\0"))
        }
        Some("tools/list") => result(request, json!({"tools": [], "resultType": "complete"})),
        _ => rpc_error(request, 404, -32601, "Method not found", Value::Null),
    })
    .await;
    let (sink, error) = probe(&modern.url, "").await;
    assert_eq!(error, None);
    let info = sink.find("wsdaemon_mcp_server_info").expect("info");
    let name = info
        .samples()
        .iter()
        .flat_map(|s| s.labels.iter())
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .expect("name");
    assert_eq!(name, "gate\u{fffd}[31mway\u{fffd}\u{fffd}");
    // A legacy server offering a revision the probe does not speak, with a line break in it.
    let legacy = Scripted::start(|headers, request| match request["method"].as_str() {
        Some("server/discover") if is_modern(headers) => rpc_error(
            request,
            400,
            -32600,
            "Bad Request: Missing session ID",
            Value::Null,
        ),
        Some("initialize") => result(
            request,
            json!({"protocolVersion": "2099-99-99\n\"", "capabilities": {},
                   "serverInfo": {"name": "odd", "version": "1"}}),
        ),
        _ => rpc_error(request, 400, -32600, "Bad Request", Value::Null),
    })
    .await;
    let (sink, error) = probe(&legacy.url, "").await;
    assert_eq!(reason(&sink).as_deref(), Some("unsupported_version"));
    let error = error.expect("failed");
    assert!(!error.contains('\n'), "{error}");
    assert!(sink.find("wsdaemon_mcp_server_info").is_none());
    assert_eq!(legacy.methods(), ["server/discover", "initialize"]);
}

#[tokio::test]
async fn credentials_a_server_echoes_never_reach_the_log() {
    let server = Scripted::start(|headers, request| {
        let echoed = format!(
            "auth={} key={}",
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        );
        match request["method"].as_str() {
            Some("server/discover") if is_modern(headers) => {
                result(request, discover_result("echo"))
            }
            Some("tools/list") => rpc_error(request, 500, -32603, &echoed, Value::Null),
            _ => rpc_error(request, 404, -32601, &echoed, Value::Null),
        }
    })
    .await;
    let (sink, error) = probe(
        &server.url,
        "bearer_token: BEARER-S3CR3T-aa\nheaders: {X-Api-Key: HDR-S3CR3T-bb}\n",
    )
    .await;
    assert_eq!(value(&sink, "wsdaemon_mcp_up", &[]), Some(0.0));
    let error = error.expect("failed");
    assert!(
        error.contains("auth=Bearer <secret> key=<secret>"),
        "{error}"
    );
    assert!(!error.contains("S3CR3T"), "{error}");

    // Echoed where a message is cut: no part of a secret is left, wherever the cut falls.
    for pad in [190usize, 385] {
        let padded = Scripted::start(move |headers, request| {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match request["method"].as_str() {
                Some("server/discover") if is_modern(headers) => {
                    result(request, discover_result("echo"))
                }
                _ => rpc_error(
                    request,
                    500,
                    -32603,
                    &format!("{}{token}", "A".repeat(pad)),
                    Value::Null,
                ),
            }
        })
        .await;
        let (_, error) = probe(&padded.url, "bearer_token: BEARER-S3CR3T-aa\n").await;
        let error = error.expect("failed");
        assert!(!error.contains("BEA"), "{pad}: {error}");
    }
}
