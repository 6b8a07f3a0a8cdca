//! An MCP server built with rmcp 3.x, the official Rust SDK, for the tests of mcpwatch: it
//! serves Streamable HTTP at `/mcp` on `127.0.0.1:<--port>` with rmcp's default
//! configuration (dual-era unless `--versions` narrows it; only loopback `Host`s allowed).
//!
//! It lists `--tools N` tools, `--page-size P` at a time with `nextCursor` (the cursor is
//! the index of the page's first tool): N-2 echo tools named `tool_000`, `tool_001`, ...
//! whose text result is `"tool_007: <text>"`, then `fail`, whose result has `isError`
//! true, and `slow`, which sleeps `seconds` (below 2 tools, echo tools only). An unknown
//! tool is the protocol error -32602 "tool not found", as rmcp's tool router answers.
//!
//! ```text
//! mcpwatch-rmcp-fixture --port 18770 [--tools 29] [--page-size 10] [--name fixture-rmcp]
//!     [--version 3.11.0] [--versions 2026-07-28,2025-11-25]
//! ```

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

/// What the command line asks for.
#[derive(Debug)]
struct Args {
    port: u16,
    tools: usize,
    page_size: usize,
    name: String,
    version: String,
    versions: Option<Vec<ProtocolVersion>>,
}

const USAGE: &str = "usage: mcpwatch-rmcp-fixture --port PORT [--tools N] [--page-size P] \
                     [--name NAME] [--version VERSION] [--versions V1,V2,...]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        port: 0,
        tools: 29,
        page_size: 10,
        name: "fixture-rmcp".to_owned(),
        version: "3.11.0".to_owned(),
        versions: None,
    };
    let mut port = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--tools" => parsed.tools = value()?.parse().map_err(|e| format!("--tools: {e}"))?,
            "--page-size" => {
                parsed.page_size = value()?.parse().map_err(|e| format!("--page-size: {e}"))?;
                if parsed.page_size == 0 {
                    return Err("--page-size: must be at least 1".into());
                }
            }
            "--name" => parsed.name = value()?,
            "--version" => parsed.version = value()?,
            "--versions" => {
                let mut versions = Vec::new();
                for text in value()?.split(',').map(str::trim) {
                    let known = ProtocolVersion::KNOWN_VERSIONS
                        .iter()
                        .find(|v| v.as_str() == text)
                        .ok_or_else(|| format!("--versions: {text:?} is no revision rmcp knows"))?;
                    versions.push(known.clone());
                }
                parsed.versions = Some(versions);
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    parsed.port = port.ok_or("--port is required")?;
    Ok(parsed)
}

/// The server: its tools and identity.
#[derive(Debug, Clone)]
struct Fixture {
    tools: Arc<Vec<Tool>>,
    page_size: usize,
    name: String,
    version: String,
    versions: Option<Arc<Vec<ProtocolVersion>>>,
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

impl Fixture {
    fn new(args: &Args) -> Self {
        let extras = if args.tools >= 2 { 2 } else { 0 };
        let mut tools: Vec<Tool> = (0..args.tools - extras)
            .map(|i| {
                Tool::new(
                    format!("tool_{i:03}"),
                    format!("Fixture tool number {i}: echoes its text."),
                    schema(json!({
                        "type": "object",
                        "properties": {"text": {"type": "string"}},
                        "required": ["text"],
                    })),
                )
            })
            .collect();
        if extras > 0 {
            tools.push(Tool::new(
                "fail",
                "Always fails: its result has isError true.",
                schema(json!({"type": "object", "properties": {"reason": {"type": "string"}}})),
            ));
            tools.push(Tool::new(
                "slow",
                "Sleeps `seconds`, then answers.",
                schema(json!({"type": "object", "properties": {"seconds": {"type": "number"}}})),
            ));
        }
        Self {
            tools: Arc::new(tools),
            page_size: args.page_size,
            name: args.name.clone(),
            version: args.version.clone(),
            versions: args.versions.clone().map(Arc::new),
        }
    }
}

fn text_result(text: String) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(&self.name, &self.version))
            .with_instructions("Test server for mcpwatch.")
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        match &self.versions {
            Some(versions) => Cow::Owned(versions.to_vec()),
            None => Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS),
        }
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let cursor = request.and_then(|r| r.cursor);
        let start = match &cursor {
            None => 0,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|start| *start <= self.tools.len())
                .ok_or_else(|| {
                    McpError::invalid_params(format!("invalid cursor {text:?}"), None)
                })?,
        };
        let end = (start + self.page_size).min(self.tools.len());
        let mut result = ListToolsResult::with_all_items(self.tools[start..end].to_vec());
        if end < self.tools.len() {
            result.next_cursor = Some(end.to_string());
        }
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.as_ref();
        if !self.tools.iter().any(|t| t.name == name) {
            return Err(McpError::invalid_params("tool not found", None));
        }
        let arguments = request.arguments.unwrap_or_default();
        match name {
            "fail" => {
                let reason = arguments
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("boom");
                Ok(CallToolResult::error(vec![ContentBlock::text(reason)]).into())
            }
            "slow" => {
                let seconds = arguments
                    .get("seconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0)
                    .clamp(0.0, 3600.0);
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                Ok(text_result(format!("slow: slept {seconds}")))
            }
            _ => match arguments.get("text").and_then(Value::as_str) {
                Some(text) => Ok(text_result(format!("{name}: {text}"))),
                None => Err(McpError::invalid_params(
                    "the argument text must be a string",
                    None,
                )),
            },
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let fixture = Fixture::new(&args);
    let service = StreamableHttpService::new(
        move || Ok(fixture.clone()),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    axum::serve(listener, app).await
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cannot serve: {e}");
            ExitCode::FAILURE
        }
    }
}
