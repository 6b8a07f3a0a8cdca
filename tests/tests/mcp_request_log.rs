//! The request-log path of the MCP metrics: a Python SDK 2.x server (a real one, with the
//! request log mcpwatch ships for Python servers in `deploy/python`) driven by the SDK's
//! client in both eras, its log followed by a real exporter, gives the series, labels and
//! counts the instrumentation of a Rust server gives for the same calls.

use mcpwatch_tests::exposition::{checked, operation_count_series, value_of};
use mcpwatch_tests::mcp::{ModernMcpServer, python_client};
use serde_json::{Value, json};

fn plan(n: usize, m: usize, k: usize) -> Value {
    let mut calls = Vec::new();
    calls.extend((0..n).map(|i| json!(["tool_000", {"text": format!("call {i}")}])));
    calls.extend((0..m).map(|_| json!(["tool_001", {"text": "hello"}])));
    calls.extend((0..k).map(|_| json!(["fail", {}])));
    Value::Array(calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_servers_request_log_gives_the_same_series_as_the_rust_instrumentation() {
    mcpwatch_tests::http::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("mcp-requests.jsonl");
    let server = ModernMcpServer::start_with_log(5, 10, "py-logged", "2.3.0", Some(&log));
    let url = server.streamable_http_url();

    let (u, p) = (url.clone(), plan(4, 2, 3));
    let modern = tokio::task::spawn_blocking(move || python_client(&u, "auto", &p))
        .await
        .expect("client");
    assert_eq!(modern["protocol_version"], "2026-07-28", "{modern}");
    let (u, p) = (url.clone(), plan(1, 3, 2));
    let legacy = tokio::task::spawn_blocking(move || python_client(&u, "legacy", &p))
        .await
        .expect("client");
    assert_eq!(legacy["protocol_version"], "2025-11-25", "{legacy}");
    // A record a hand-written hook got wrong, and one without its duration: counted apart.
    let mut text = std::fs::read_to_string(&log).expect("the request log");
    let records = text.lines().count();
    text.push_str(
        "{\"mcp.method.name\": \"tools/call\", \"gen_ai.tool.name\": \"tool_000\"}\nnot json\n",
    );
    std::fs::write(&log, text).expect("append");

    let config = format!(
        "collectors:\n  host: {{enabled: false}}\n  wsdaemon:\n    - name: py\n      health_url: '{}'\n      request_log: {{path: '{}', read_existing: true}}\n",
        server.health_url(),
        log.display()
    );
    let (_exporter, address) =
        mcpwatch_tests::binaries::start_exporter(dir.path(), &config, &[]).await;
    let text = checked(
        reqwest::get(format!("http://{address}/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body"),
    );
    let count = |method, tool, error, version| {
        value_of(
            &text,
            &operation_count_series(Some("py"), method, tool, error, version),
        )
        .unwrap_or(0.0)
    };
    for (version, (n, m, k)) in [
        ("2026-07-28", (4.0, 2.0, 3.0)),
        ("2025-11-25", (1.0, 3.0, 2.0)),
    ] {
        assert_eq!(
            count("tools/call", Some("tool_000"), None, version),
            n,
            "{version}\n{text}"
        );
        assert_eq!(
            count("tools/call", Some("tool_001"), None, version),
            m,
            "{version}\n{text}"
        );
        assert_eq!(
            count("tools/call", Some("fail"), Some("tool_error"), version),
            k,
            "{version}\n{text}"
        );
    }
    assert_eq!(
        count("server/discover", None, None, "2026-07-28"),
        1.0,
        "{text}"
    );
    assert_eq!(count("initialize", None, None, "2025-11-25"), 1.0, "{text}");
    // Every record of the hook was read; the one without a duration and the broken line
    // are counted apart, not as requests.
    let parsed = value_of(
        &text,
        "wsdaemon_request_log_lines_total{target=\"py\",result=\"parsed\"}",
    );
    assert_eq!(parsed, Some(records as f64), "{text}");
    assert_eq!(
        value_of(
            &text,
            "wsdaemon_request_log_lines_total{target=\"py\",result=\"no_duration\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value_of(
            &text,
            "wsdaemon_request_log_lines_total{target=\"py\",result=\"invalid\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // The label names are those of the Rust instrumentation (plus the target), and the
    // buckets the conventions' advice.
    for line in text
        .lines()
        .filter(|l| l.starts_with("mcp_server_operation_duration_seconds"))
    {
        let labels = &line[line.find('{').expect("labels") + 1..line.rfind('}').expect("labels")];
        for pair in labels.split("\",") {
            let name = pair.split('=').next().unwrap_or_default();
            assert!(
                [
                    "target",
                    "mcp_method_name",
                    "gen_ai_tool_name",
                    "gen_ai_prompt_name",
                    "error_type",
                    "mcp_protocol_version",
                    "le"
                ]
                .contains(&name),
                "{name} in {line}"
            );
        }
    }
    assert!(
        text.contains("le=\"0.01\"") && text.contains("le=\"300\""),
        "{text}"
    );
    // Neither the request log's own series: these records name no provider.
    assert!(
        !text.contains("wsdaemon_requests_total{target=\"py\",provider=\"unknown\""),
        "{text}"
    );
}
