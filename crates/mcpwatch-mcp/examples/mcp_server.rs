//! An MCP server built on rmcp 3.x that embeds mcpwatch: its tools are timed per method and
//! per tool under the OpenTelemetry MCP names, and one `/metrics` serves them next to the
//! host collector (any other embedded collector, a PostgreSQL pool or Redis, is added the
//! same way).
//!
//! ```text
//! cargo run -p mcpwatch-mcp --example mcp-server -- --port 18780 [--no-instrumentation]
//! ```
//!
//! Tools: `add` (sums `a` and `b`), `echo` (returns `text`), `fail` (a result with
//! `isError`), `slow` (sleeps `seconds`). `--no-instrumentation` serves the same tools and
//! `/metrics` without the handler wrapper and the HTTP layer, for the overhead benchmark.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use mcpwatch_core::ScrapeEngine;
use mcpwatch_mcp::McpMetrics;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

/// The server's own handler: nothing in it knows about metrics.
#[derive(Clone)]
struct Tools {
    tools: Arc<Vec<Tool>>,
}

fn tool(name: &str, description: &str, schema: Value) -> Tool {
    let schema = match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    Tool::new(name.to_owned(), description.to_owned(), Arc::new(schema))
}

impl Tools {
    fn new() -> Self {
        let number = json!({"type": "number"});
        Self {
            tools: Arc::new(vec![
                tool(
                    "add",
                    "Adds a and b.",
                    json!({"type": "object", "properties": {"a": number, "b": number}, "required": ["a", "b"]}),
                ),
                tool(
                    "echo",
                    "Returns its text.",
                    json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
                ),
                tool(
                    "fail",
                    "Always fails: its result has isError true.",
                    json!({"type": "object"}),
                ),
                tool(
                    "slow",
                    "Sleeps `seconds`, then answers.",
                    json!({"type": "object", "properties": {"seconds": number}}),
                ),
            ]),
        }
    }

    fn names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name.to_string()).collect()
    }
}

fn text(text: String) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("mcpwatch-example", env!("CARGO_PKG_VERSION")),
        )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.unwrap_or_default();
        let number = |key: &str| {
            arguments
                .get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| McpError::invalid_params(format!("{key} must be a number"), None))
        };
        match request.name.as_ref() {
            "add" => Ok(text((number("a")? + number("b")?).to_string())),
            "echo" => match arguments.get("text").and_then(Value::as_str) {
                Some(t) => Ok(text(t.to_owned())),
                None => Err(McpError::invalid_params("text must be a string", None)),
            },
            "fail" => {
                Ok(CallToolResult::error(vec![ContentBlock::text("it failed, as asked")]).into())
            }
            "slow" => {
                let seconds = number("seconds").unwrap_or(1.0).clamp(0.0, 600.0);
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                Ok(text(format!("slept {seconds} s")))
            }
            _ => Err(McpError::invalid_params("tool not found", None)),
        }
    }
}

async fn metrics(State(engine): State<ScrapeEngine>, headers: HeaderMap) -> impl IntoResponse {
    mcpwatch_core::metrics_response(&engine, &headers).await
}

async fn serve(port: u16, instrumented: bool) -> std::io::Result<()> {
    let tools = Tools::new();
    let config = StreamableHttpServerConfig::default();
    let sessions = Arc::new(LocalSessionManager::default());
    // 1. The metrics, bounded by the server's own tool list.
    let mcp = McpMetrics::new(tools.names(), [""; 0]);
    // 2. One engine for /metrics: the MCP metrics next to the host collector.
    let host = mcpwatch_host::HostCollector::new(mcpwatch_host::HostConfig::default())
        .map_err(std::io::Error::other)?;
    let engine = ScrapeEngine::builder()
        .source(mcp.clone())
        .collector(host)
        .build_info(env!("CARGO_PKG_VERSION"), "example")
        .build();
    let router = axum::Router::new();
    let router = if instrumented {
        // 3. The handler, wrapped; 4. the HTTP layer around rmcp's service.
        let wrapped = mcp.clone();
        let service =
            StreamableHttpService::new(move || Ok(wrapped.wrap(tools.clone())), sessions, config);
        router.route_service("/mcp", tower_layer::Layer::layer(&mcp.layer(), service))
    } else {
        let service = StreamableHttpService::new(move || Ok(tools.clone()), sessions, config);
        router.route_service("/mcp", service)
    };
    let app = router
        .route("/metrics", axum::routing::get(metrics))
        .with_state(engine);
    // Each answer is written at once: without TCP_NODELAY a small event-stream answer can
    // wait for the client's delayed acknowledgement (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(
        tokio::net::TcpListener::bind(("127.0.0.1", port)).await?,
        |tcp| {
            let _ = tcp.set_nodelay(true);
        },
    );
    axum::serve(listener, app).await
}

fn main() -> ExitCode {
    let mut port = None;
    let mut instrumented = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse::<u16>().ok()),
            "--no-instrumentation" => instrumented = false,
            other => {
                let _ = writeln!(
                    std::io::stderr(),
                    "unknown argument {other:?}\nusage: mcp-server --port PORT [--no-instrumentation]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let Some(port) = port else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: mcp-server --port PORT [--no-instrumentation]"
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port, instrumented)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cannot serve: {e}");
            ExitCode::FAILURE
        }
    }
}
