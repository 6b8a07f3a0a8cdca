//! The instrumentation crate (`mcpwatch-mcp`) in a real rmcp 3.x server (its example),
//! driven by real MCP clients of both protocol eras: the official Python SDK 2.x client
//! (`auto`, which speaks 2026-07-28 here, and `legacy`) and rmcp's own client (discover and
//! initialize lifecycles). The counts per method, tool, error type and revision are exact.

use std::time::Duration;

use mcpwatch_tests::exposition::{checked, operation_count_series, value_of};
use mcpwatch_tests::mcp::{InstrumentedServer, python_client};
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, serve_client_with_lifecycle};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};

const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";

async fn metrics(server: &InstrumentedServer) -> String {
    mcpwatch_tests::http::install_crypto_provider();
    let text = reqwest::get(server.metrics_url())
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    checked(text)
}

fn count(text: &str, method: &str, tool: Option<&str>, error: Option<&str>, version: &str) -> f64 {
    value_of(
        text,
        &operation_count_series(None, method, tool, error, version),
    )
    .unwrap_or(0.0)
}

/// The tool calls of one client: `add` n times, `echo` m, `fail` k (tool errors) and
/// `nope` (no such tool: -32602) u times.
fn plan(n: usize, m: usize, k: usize, u: usize) -> Vec<(&'static str, Value)> {
    let mut plan = Vec::new();
    plan.extend((0..n).map(|i| ("add", json!({"a": i, "b": 1}))));
    plan.extend((0..m).map(|_| ("echo", json!({"text": "hello"}))));
    plan.extend((0..k).map(|_| ("fail", json!({}))));
    plan.extend((0..u).map(|_| ("nope", json!({}))));
    plan
}

/// Calls `plan` with rmcp's client in `lifecycle`; the revision it spoke.
async fn rmcp_client(url: &str, lifecycle: ClientLifecycleMode, plan: &[(&str, Value)]) -> String {
    mcpwatch_tests::http::install_crypto_provider();
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let client = serve_client_with_lifecycle((), transport, lifecycle)
        .await
        .expect("rmcp client connects");
    let version = client
        .peer_info()
        .map(|info| info.protocol_version.to_string())
        .unwrap_or_default();
    for (tool, arguments) in plan {
        let arguments = arguments.as_object().cloned().unwrap_or_default();
        let result = client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
            .await;
        match (*tool, result) {
            ("nope", Err(_)) => {}
            ("fail", Ok(r)) => assert_eq!(r.is_error, Some(true), "fail gives a tool error"),
            (_, Ok(r)) => assert_ne!(r.is_error, Some(true), "{tool} succeeds"),
            (tool, outcome) => panic!("{tool}: unexpected {outcome:?}"),
        }
    }
    let _ = client.cancel().await;
    version
}

fn python_plan(plan: &[(&str, Value)]) -> Value {
    Value::Array(plan.iter().map(|(t, a)| json!([t, a])).collect())
}

/// Checks what the Python client printed: the revision, and each call's outcome.
fn check_python(out: &Value, version: &str, plan: &[(&str, Value)]) {
    assert_eq!(out["protocol_version"], version, "{out}");
    let calls = out["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), plan.len());
    for (call, (tool, _)) in calls.iter().zip(plan) {
        match *tool {
            "nope" => assert!(call.get("error").is_some(), "{call}"),
            "fail" => assert_eq!(call["is_error"], true, "{call}"),
            _ => assert_eq!(call["is_error"], false, "{call}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_eras_and_both_clients_give_exact_counts_per_tool_and_error() {
    mcpwatch_tests::http::install_crypto_provider();
    let server = InstrumentedServer::start(true);
    let url = server.url();

    // The Python SDK 2.x client: 2026-07-28 (auto finds it), then the legacy handshake.
    let modern_py = plan(3, 2, 2, 1);
    let legacy_py = plan(2, 1, 1, 1);
    let (u, p) = (url.clone(), python_plan(&modern_py));
    let out = tokio::task::spawn_blocking(move || python_client(&u, "auto", &p))
        .await
        .expect("client");
    check_python(&out, MODERN, &modern_py);
    let (u, p) = (url.clone(), python_plan(&legacy_py));
    let out = tokio::task::spawn_blocking(move || python_client(&u, "legacy", &p))
        .await
        .expect("client");
    check_python(&out, LEGACY, &legacy_py);

    // rmcp's client: discover, then initialize.
    let modern_rs = plan(4, 1, 3, 2);
    let legacy_rs = plan(1, 2, 1, 1);
    let spoke = rmcp_client(
        &url,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        &modern_rs,
    )
    .await;
    assert_eq!(spoke, MODERN);
    let spoke = rmcp_client(&url, ClientLifecycleMode::Initialize, &legacy_rs).await;
    assert_eq!(spoke, LEGACY);

    // A method no server has, twice, as a 2026-07-28 request.
    let http = reqwest::Client::new();
    for id in 0..2 {
        let answer = http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", MODERN)
            .header("Mcp-Method", "tools/teleport")
            .body(
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/teleport", "params": {"_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}}}})
                .to_string(),
            )
            .send()
            .await
            .expect("post");
        let body = answer.text().await.expect("body");
        assert!(body.contains("-32601"), "{body}");
    }

    let text = metrics(&server).await;
    let both = |modern: usize, legacy: usize| (modern as f64, legacy as f64);
    for (tool, error, (modern, legacy)) in [
        ("add", None, both(3 + 4, 2 + 1)),
        ("echo", None, both(2 + 1, 1 + 2)),
        ("fail", Some("tool_error"), both(2 + 3, 1 + 1)),
        ("_OTHER", Some("-32602"), both(1 + 2, 1 + 1)),
    ] {
        assert_eq!(
            count(&text, "tools/call", Some(tool), error, MODERN),
            modern,
            "{tool} at {MODERN}\n{text}"
        );
        assert_eq!(
            count(&text, "tools/call", Some(tool), error, LEGACY),
            legacy,
            "{tool} at {LEGACY}\n{text}"
        );
    }
    // Nothing else under tools/call: a tool that answered was never counted as failed, and
    // a failed one never under its own name.
    let calls: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with(
                "mcp_server_operation_duration_seconds_count{mcp_method_name=\"tools/call\"",
            )
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let planned = modern_py.len() + legacy_py.len() + modern_rs.len() + legacy_rs.len();
    assert_eq!(calls, planned as f64, "{text}");
    assert_eq!(
        value_of(
            &text,
            "mcp_server_operation_duration_seconds_count{mcp_method_name=\"_OTHER\",error_type=\"-32601\",mcp_protocol_version=\"2026-07-28\"}"
        ),
        Some(2.0),
        "{text}"
    );
    // Each client spoke its era once: two discovers, two initializes.
    assert_eq!(
        count(&text, "server/discover", None, None, MODERN),
        2.0,
        "{text}"
    );
    assert_eq!(
        count(&text, "initialize", None, None, LEGACY),
        2.0,
        "{text}"
    );
    // The buckets are the conventions' advice, and no session id is a label.
    assert!(
        text.contains("le=\"0.01\"") && text.contains("le=\"300\""),
        "{text}"
    );
    assert!(!text.to_lowercase().contains("session"), "{text}");
    // The host collector shares the same /metrics.
    assert!(text.contains("\nhost_"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_are_counted_and_unknown_names_stay_one_series() {
    mcpwatch_tests::http::install_crypto_provider();
    let server = InstrumentedServer::start(true);
    let url = server.url();
    // Eight slow calls at once, each on its own 2026-07-28 client.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        calls.push(tokio::spawn(async move {
            rmcp_client(
                &url,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
                &[("slow", json!({"seconds": 1.5}))],
            )
            .await
        }));
    }
    let during = mcpwatch_tests::wait_for_async(
        "eight calls in flight",
        Duration::from_secs(30),
        || async {
            let text = metrics(&server).await;
            (value_of(
                &text,
                "mcp_server_requests_in_flight{mcp_method_name=\"tools/call\"}",
            ) == Some(8.0))
            .then_some(text)
        },
    )
    .await;
    assert!(
        value_of(&during, "mcp_server_http_requests_in_flight").unwrap_or(0.0) >= 8.0,
        "{during}"
    );
    for call in calls {
        if let Err(e) = call.await {
            panic!("a slow call failed: {e}\nserver log:\n{}", server.log());
        }
    }
    let text = metrics(&server).await;
    assert_eq!(
        value_of(
            &text,
            "mcp_server_requests_in_flight{mcp_method_name=\"tools/call\"}"
        ),
        Some(0.0),
        "{text}"
    );
    let slow = |le: &str| {
        value_of(
            &text,
            &format!(
                "mcp_server_operation_duration_seconds_bucket{{mcp_method_name=\"tools/call\",gen_ai_tool_name=\"slow\",mcp_protocol_version=\"2026-07-28\",le=\"{le}\"}}"
            ),
        )
    };
    // 1.5 s each: none by 1 s, all by 2 s.
    assert_eq!(slow("1"), Some(0.0), "{text}");
    assert_eq!(slow("2"), Some(8.0), "{text}");

    // Fifty names no tool has: one `_OTHER` series, fifty in it.
    let names: Vec<(String, Value)> = (0..50)
        .map(|i| (format!("made_up_{i}"), json!({})))
        .collect();
    let plan: Vec<(&str, Value)> = names.iter().map(|(n, a)| (n.as_str(), a.clone())).collect();
    let transport = StreamableHttpClientTransport::from_uri(url.clone());
    let client = serve_client_with_lifecycle(
        (),
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("connect");
    for (tool, _) in &plan {
        assert!(
            client
                .call_tool(CallToolRequestParams::new(tool.to_string()))
                .await
                .is_err()
        );
    }
    let _ = client.cancel().await;
    let text = metrics(&server).await;
    assert_eq!(
        count(&text, "tools/call", Some("_OTHER"), Some("-32602"), MODERN),
        50.0,
        "{text}"
    );
    assert!(!text.contains("made_up"), "{text}");
    let series = text
        .lines()
        .filter(|l| l.starts_with("mcp_server_operation_duration_seconds_count"))
        .count();
    assert_eq!(series, 3, "discover, tools/call slow and _OTHER:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_dispatch_count_under_the_headers_they_came_with() {
    mcpwatch_tests::http::install_crypto_provider();
    let server = InstrumentedServer::start(true);
    let url = server.url();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "add", "arguments": {"a": 2, "b": 3}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}}}})
    .to_string();
    let http = reqwest::Client::new();
    // rmcp refuses each before its handler sees it: a tool name the body contradicts, a
    // revision the body contradicts, no Mcp-Method at all; each kind a different number of
    // times, and one good call after them.
    // The request's headers, how many times it is sent, and the status it gets.
    type Kind<'a> = (&'a [(&'a str, &'a str)], usize, u16);
    let kinds: [Kind<'_>; 4] = [
        (
            &[
                ("MCP-Protocol-Version", MODERN),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "echo"),
            ],
            3,
            400,
        ),
        (
            &[
                ("MCP-Protocol-Version", "2030-01-01"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "add"),
            ],
            2,
            400,
        ),
        (
            &[("MCP-Protocol-Version", MODERN), ("Mcp-Name", "add")],
            1,
            400,
        ),
        (
            &[
                ("MCP-Protocol-Version", MODERN),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "add"),
            ],
            1,
            200,
        ),
    ];
    for (headers, times, status) in kinds {
        for _ in 0..times {
            let mut request = http
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let answer = request.send().await.expect("post");
            let got = answer.status().as_u16();
            let text = answer.text().await.expect("body");
            assert_eq!(got, status, "{headers:?}: {text}");
        }
    }
    let text = metrics(&server).await;
    let mismatch = Some("-32020");
    assert_eq!(
        count(&text, "tools/call", Some("echo"), mismatch, MODERN),
        3.0,
        "{text}"
    );
    assert_eq!(
        count(&text, "tools/call", Some("add"), mismatch, "_OTHER"),
        2.0,
        "{text}"
    );
    assert_eq!(
        count(&text, "_OTHER", None, mismatch, MODERN),
        1.0,
        "{text}"
    );
    assert_eq!(
        count(&text, "tools/call", Some("add"), None, MODERN),
        1.0,
        "{text}"
    );
    // Nothing else was counted: six refusals and one call.
    let all: f64 = text
        .lines()
        .filter(|l| l.starts_with("mcp_server_operation_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(all, 7.0, "{text}");
    assert_eq!(
        value_of(&text, "mcp_server_http_requests_in_flight"),
        Some(0.0),
        "{text}"
    );
}
