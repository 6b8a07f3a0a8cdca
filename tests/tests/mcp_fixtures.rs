//! The MCP server fixtures are what they claim to be: raw HTTP exchanges (no MCP client
//! library) with the Python SDK 2.x server and the rmcp 3.x server (modern era, 2026-07-28:
//! `server/discover`, paginated `tools/list`, `tools/call`, no `ping`; legacy `initialize`
//! where they are dual-era, -32022 where rmcp is narrowed to the modern revision alone), and
//! with the Python SDK 1.x server (legacy era only: a modern request is refused with 400,
//! `initialize` is served). Loopback only; every exchange is bounded in time.

use std::time::Duration;

use mcpwatch_tests::http::client;
use mcpwatch_tests::mcp::{McpServer, ModernMcpServer, RmcpServer};
use serde_json::{Value, json};

const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";
/// What one test's exchanges may take in all, once its server is up.
const EXCHANGES: Duration = Duration::from_secs(60);

/// Runs a test's exchanges within [`EXCHANGES`].
async fn bounded<F: std::future::Future<Output = ()>>(what: &str, exchanges: F) {
    tokio::time::timeout(EXCHANGES, exchanges)
        .await
        .unwrap_or_else(|_| panic!("{what}: the exchanges took over {EXCHANGES:?}"));
}

/// An answer: its HTTP status, headers and the JSON-RPC message of its body (a JSON body,
/// or the last JSON `data:` of an event stream; `Null` for an empty body).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    message: Value,
    body: String,
}

impl Answer {
    fn result(&self) -> &Value {
        assert!(
            self.message.get("result").is_some(),
            "no result: {} {}",
            self.status,
            self.body
        );
        &self.message["result"]
    }

    fn error_code(&self) -> Option<i64> {
        self.message["error"]["code"].as_i64()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The JSON-RPC message of a body: a JSON object, or the last `data:` line of an event
/// stream that holds JSON (priming events have an empty `data:`).
fn message_of(body: &str) -> Value {
    if body.trim().is_empty() {
        return Value::Null;
    }
    if let Ok(value) = serde_json::from_str(body) {
        return value;
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .next_back()
        .unwrap_or_else(|| panic!("no JSON-RPC message in {body:?}"))
}

async fn post(url: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
    let mut request = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    Answer {
        status,
        headers,
        message: message_of(&body),
        body,
    }
}

/// The `_meta` every modern request carries.
fn meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcpwatch-tests", "version": "0.1.0"},
    })
}

/// A modern (2026-07-28) request: the version and method headers, `Mcp-Name` for
/// `tools/call`, and the `_meta` keys in the params.
async fn modern(url: &str, id: u64, method: &str, mut params: Value) -> Answer {
    params["_meta"] = meta(MODERN);
    let name = params["name"].as_str().map(str::to_owned);
    let mut headers = vec![("mcp-protocol-version", MODERN), ("mcp-method", method)];
    if let Some(name) = &name {
        headers.push(("mcp-name", name));
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    post(url, &headers, &body).await
}

/// Every tool a modern server lists, page by page; the names and the number of pages.
async fn modern_tool_pages(url: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=10 {
        let params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
        let answer = modern(url, 100 + page, "tools/list", params).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let result = answer.result();
        assert_eq!(result["resultType"], "complete", "{}", answer.body);
        assert!(result["ttlMs"].is_u64(), "{}", answer.body);
        for tool in result["tools"].as_array().expect("tools") {
            names.push(tool["name"].as_str().expect("name").to_owned());
        }
        match result["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (names, usize::try_from(page).expect("page")),
        }
    }
    panic!("more than 10 pages of tools");
}

/// The 29 tools of a fixture started with 29: 27 echo tools, then `fail` and `slow`.
fn expected_tools() -> Vec<String> {
    let mut names: Vec<String> = (0..27).map(|i| format!("tool_{i:03}")).collect();
    names.extend(["fail".to_owned(), "slow".to_owned()]);
    names
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|block| block["text"].as_str())
        .collect()
}

/// What both modern-era fixtures must do at `url`: discover, three pages of tools, tool
/// calls (an echo, a tool error, a short sleep), and no `ping`.
async fn speaks_the_modern_era(url: &str, name: &str, version: &str) {
    let discover = modern(url, 1, "server/discover", json!({})).await;
    assert_eq!(discover.status, 200, "{}", discover.body);
    let result = discover.result();
    let versions = result["supportedVersions"].as_array().expect("versions");
    assert!(versions.contains(&json!(MODERN)), "{}", discover.body);
    assert_eq!(result["resultType"], "complete", "{}", discover.body);
    assert!(
        result["capabilities"]["tools"].is_object(),
        "{}",
        discover.body
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"],
        json!({"name": name, "version": version}),
        "{}",
        discover.body
    );
    assert!(result.get("serverInfo").is_none(), "{}", discover.body);

    let (names, pages) = modern_tool_pages(url).await;
    assert_eq!(names, expected_tools());
    assert_eq!(pages, 3);

    let echo = modern(
        url,
        2,
        "tools/call",
        json!({"name": "tool_007", "arguments": {"text": "hi"}}),
    )
    .await;
    assert_eq!(echo.status, 200, "{}", echo.body);
    assert_eq!(echo.result()["isError"], false, "{}", echo.body);
    assert_eq!(text_of(echo.result()), "tool_007: hi", "{}", echo.body);

    let fail = modern(
        url,
        3,
        "tools/call",
        json!({"name": "fail", "arguments": {"reason": "on purpose"}}),
    )
    .await;
    assert_eq!(fail.status, 200, "{}", fail.body);
    assert_eq!(fail.result()["isError"], true, "{}", fail.body);
    assert!(
        text_of(fail.result()).contains("on purpose"),
        "{}",
        fail.body
    );

    let start = std::time::Instant::now();
    let slow = modern(
        url,
        4,
        "tools/call",
        json!({"name": "slow", "arguments": {"seconds": 0.3}}),
    )
    .await;
    assert_eq!(slow.result()["isError"], false, "{}", slow.body);
    assert!(start.elapsed() >= Duration::from_millis(300));

    // 2026-07-28 removed ping: a modern server says the method is not found.
    let ping = modern(url, 5, "ping", json!({})).await;
    assert_eq!(ping.status, 404, "{}", ping.body);
    assert_eq!(ping.error_code(), Some(-32601), "{}", ping.body);

    // An unsupported revision is named, with the supported ones.
    let body = json!({"jsonrpc": "2.0", "id": 6, "method": "server/discover",
                      "params": {"_meta": meta("2099-01-01")}});
    let unsupported = post(
        url,
        &[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "server/discover"),
        ],
        &body,
    )
    .await;
    assert_eq!(unsupported.status, 400, "{}", unsupported.body);
    assert_eq!(
        unsupported.error_code(),
        Some(-32022),
        "{}",
        unsupported.body
    );
    assert_eq!(
        unsupported.message["error"]["data"]["requested"], "2099-01-01",
        "{}",
        unsupported.body
    );
}

/// A legacy session at `url`: `initialize` (no version header), `notifications/initialized`,
/// `ping`, every page of `tools/list`, then DELETE. Returns the `initialize` result.
async fn legacy_session(url: &str) -> Value {
    let init = post(
        url,
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {},
            "clientInfo": {"name": "mcpwatch-tests", "version": "0.1.0"}}}),
    )
    .await;
    assert_eq!(init.status, 200, "{}", init.body);
    let result = init.result().clone();
    let session = init
        .header("mcp-session-id")
        .unwrap_or_else(|| panic!("no session: {:?}", init.headers))
        .to_owned();
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LEGACY),
    ];
    let initialized = post(
        url,
        &headers,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status, 202, "{}", initialized.body);
    let ping = post(
        url,
        &headers,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
    )
    .await;
    assert_eq!(ping.result(), &json!({}), "{}", ping.body);
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for id in 3..13 {
        let params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
        let list = post(
            url,
            &headers,
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params}),
        )
        .await;
        let page = list.result();
        for tool in page["tools"].as_array().expect("tools") {
            names.push(tool["name"].as_str().expect("name").to_owned());
        }
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(names, expected_tools());
    let delete = client()
        .delete(url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", LEGACY)
        .send()
        .await
        .expect("DELETE");
    assert!(delete.status().is_success(), "{}", delete.status());
    result
}

#[tokio::test]
async fn python_sdk_2_serves_both_eras() {
    let server = ModernMcpServer::start(29, 10, "fixture-py2", "2.3.0-test");
    let url = server.streamable_http_url();
    bounded("Python SDK 2.x", async {
        speaks_the_modern_era(&url, "fixture-py2", "2.3.0-test").await;

        // An unknown tool: the SDK answers with a tool error, not -32602.
        let unknown = modern(
            &url,
            7,
            "tools/call",
            json!({"name": "nope", "arguments": {}}),
        )
        .await;
        assert_eq!(unknown.status, 200, "{}", unknown.body);
        assert_eq!(unknown.result()["isError"], true, "{}", unknown.body);

        let init = legacy_session(&url).await;
        assert_eq!(init["protocolVersion"], LEGACY);
        assert_eq!(init["serverInfo"]["name"], "fixture-py2");

        let health: Value = client()
            .get(server.health_url())
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("health JSON");
        assert_eq!(health["status"], "healthy");
        assert_eq!(health["tools"], 29);
        assert_eq!(health["version"], "2.3.0-test");
    })
    .await;
    let log = server.log();
    assert!(!log.contains("Traceback"), "{log}");
}

#[tokio::test]
async fn rmcp_serves_both_eras() {
    let server = RmcpServer::start(29, 10, "fixture-rmcp", "3.11.0-test", None);
    let url = server.streamable_http_url();
    bounded("rmcp", async {
        speaks_the_modern_era(&url, "fixture-rmcp", "3.11.0-test").await;

        let discover = modern(&url, 1, "server/discover", json!({})).await;
        let versions = &discover.result()["supportedVersions"];
        assert!(
            versions
                .as_array()
                .expect("versions")
                .contains(&json!(LEGACY)),
            "{}",
            discover.body
        );

        // An unknown tool: a protocol error, as rmcp's tool router answers.
        let unknown = modern(
            &url,
            7,
            "tools/call",
            json!({"name": "nope", "arguments": {}}),
        )
        .await;
        assert_eq!(unknown.error_code(), Some(-32602), "{}", unknown.body);

        let init = legacy_session(&url).await;
        assert_eq!(init["protocolVersion"], LEGACY);
        assert_eq!(init["serverInfo"]["name"], "fixture-rmcp");
    })
    .await;
}

#[tokio::test]
async fn rmcp_narrowed_to_the_modern_revision_refuses_initialize() {
    let server = RmcpServer::start(29, 10, "modern-only", "3.11.0", Some(&[MODERN]));
    let url = server.streamable_http_url();
    bounded("rmcp, modern only", async {
        let discover = modern(&url, 1, "server/discover", json!({})).await;
        assert_eq!(
            discover.result()["supportedVersions"],
            json!([MODERN]),
            "{}",
            discover.body
        );
        let (names, pages) = modern_tool_pages(&url).await;
        assert_eq!((names.len(), pages), (29, 3));

        let init = post(
            &url,
            &[],
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": LEGACY, "capabilities": {},
                "clientInfo": {"name": "mcpwatch-tests", "version": "0.1.0"}}}),
        )
        .await;
        assert_eq!(init.error_code(), Some(-32022), "{}", init.body);
        let data = &init.message["error"]["data"];
        assert_eq!(data["supported"], json!([MODERN]), "{}", init.body);
        assert_eq!(data["requested"], LEGACY, "{}", init.body);
    })
    .await;
}

#[tokio::test]
async fn python_sdk_1_is_legacy_only() {
    let server = McpServer::start(29, 10, "fixture-py1", "1.0.0-test");
    let url = server.streamable_http_url();
    bounded("Python SDK 1.x", async {
        // A modern request finds no session: 400, and no modern error code.
        let discover = modern(&url, 1, "server/discover", json!({})).await;
        assert_eq!(discover.status, 400, "{}", discover.body);
        assert!(
            !matches!(discover.error_code(), Some(-32022..=-32020)),
            "{}",
            discover.body
        );

        let init = legacy_session(&url).await;
        assert_eq!(init["serverInfo"]["name"], "fixture-py1");
        assert_eq!(init["serverInfo"]["version"], "1.0.0-test");
        assert!(init.get("resultType").is_none());

        let health: Value = client()
            .get(server.health_url())
            .send()
            .await
            .expect("GET /health")
            .json()
            .await
            .expect("health JSON");
        assert_eq!(health["tools"], 29);
    })
    .await;
    let log = server.log();
    assert!(!log.contains("Traceback"), "{log}");
}

#[tokio::test]
async fn python_sdk_1_tools_answer_as_documented() {
    let server = McpServer::start(29, 10, "fixture-py1", "1.0.0-test");
    let url = server.streamable_http_url();
    bounded("Python SDK 1.x tools", async {
        let init = post(
            &url,
            &[],
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": LEGACY, "capabilities": {},
                "clientInfo": {"name": "mcpwatch-tests", "version": "0.1.0"}}}),
        )
        .await;
        let session = init.header("mcp-session-id").expect("session").to_owned();
        let headers = [
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", LEGACY),
        ];
        post(
            &url,
            &headers,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        let call = |id: u64, name: &str, arguments: Value| {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                              "params": {"name": name, "arguments": arguments}});
            let url = url.clone();
            async move { post(&url, &headers, &body).await }
        };
        let echo = call(2, "tool_007", json!({"text": "hi"})).await;
        assert_eq!(echo.result()["isError"], false, "{}", echo.body);
        assert_eq!(
            text_of(echo.result()),
            "tool_007: {'text': 'hi'}",
            "{}",
            echo.body
        );
        let fail = call(3, "fail", json!({"reason": "on purpose"})).await;
        assert_eq!(fail.result()["isError"], true, "{}", fail.body);
        assert_eq!(text_of(fail.result()), "on purpose", "{}", fail.body);
        let start = std::time::Instant::now();
        let slow = call(4, "slow", json!({"seconds": 0.3})).await;
        assert_eq!(slow.result()["isError"], false, "{}", slow.body);
        assert!(start.elapsed() >= Duration::from_millis(300));
        let unknown = call(5, "nope", json!({})).await;
        assert_eq!(unknown.result()["isError"], true, "{}", unknown.body);
    })
    .await;
}
