#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod semconv;
mod stripes;
mod table;

#[cfg(feature = "rmcp")]
mod handler;
#[cfg(feature = "rmcp")]
mod http;

use std::sync::Arc;
#[cfg(feature = "rmcp")]
use std::sync::atomic::Ordering;

use mcpwatch_core::{MetricSink, MetricSource};

#[cfg(feature = "rmcp")]
pub use crate::handler::Metered;
#[cfg(feature = "rmcp")]
pub use crate::http::{McpHttpLayer, McpHttpService, ResponseFuture, Tracked};
pub use crate::semconv::Outcome;
pub use crate::table::{DEFAULT_MAX_NAMES, InFlight, Key, OperationTable};

/// The MCP metrics of one server: what [`Metered`] handlers and the [`McpHttpLayer`]
/// record, and what `/metrics` reports (it is a [`MetricSource`] of mcpwatch-core's
/// `ScrapeEngine`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct McpMetrics {
    shared: Arc<Shared>,
}

/// What the handlers and the layer of one server record into.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) table: OperationTable,
    #[cfg(feature = "rmcp")]
    pub(crate) gauges: http::HttpGauges,
    /// Whether [`McpMetrics::layer`] was made: the layer then counts the requests rmcp's
    /// HTTP transport answers with an error status, the handler's included.
    #[cfg(feature = "rmcp")]
    pub(crate) layered: std::sync::atomic::AtomicBool,
}

impl McpMetrics {
    /// Metrics whose `gen_ai_tool_name` and `gen_ai_prompt_name` name these tools and
    /// prompts (the server's own lists); any other name is `_OTHER`, so that a client
    /// cannot make series by calling names that do not exist.
    pub fn new(
        tools: impl IntoIterator<Item = impl AsRef<str>>,
        prompts: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: OperationTable::new(tools, prompts, DEFAULT_MAX_NAMES),
                #[cfg(feature = "rmcp")]
                gauges: http::HttpGauges::default(),
                #[cfg(feature = "rmcp")]
                layered: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The operation table behind them.
    pub fn table(&self) -> &OperationTable {
        &self.shared.table
    }

    /// The server's handler, timed (in rmcp's service factory:
    /// `StreamableHttpService::new(move || Ok(metrics.wrap(Server::new())), ...)`).
    #[cfg(feature = "rmcp")]
    pub fn wrap<H>(&self, handler: H) -> Metered<H> {
        Metered::new(handler, self.shared.clone())
    }

    /// The layer for rmcp's Streamable HTTP service (`ServiceBuilder::new().layer(...)`
    /// or axum's `Router::layer`), in front of the service whose handlers
    /// [`McpMetrics::wrap`] made: once it is made, the requests that service answers with an
    /// error status (404 for -32601; 400 for -32020, -32021, -32022 on a 2026-07-28
    /// request) are the layer's to count, not the handler's. A server that also serves
    /// another transport (stdio) gives it metrics of its own.
    #[cfg(feature = "rmcp")]
    pub fn layer(&self) -> McpHttpLayer {
        self.shared.layered.store(true, Ordering::Relaxed);
        McpHttpLayer {
            shared: self.shared.clone(),
        }
    }
}

impl MetricSource for McpMetrics {
    fn collect(&self, sink: &mut MetricSink) {
        self.shared.table.collect_into(sink);
        #[cfg(feature = "rmcp")]
        {
            let gauges = &self.shared.gauges;
            sink.gauge(
                "mcp_server_http_requests_in_flight",
                "HTTP requests to the MCP endpoint whose response has not ended (open event streams included).",
            )
            .add(&[], gauges.requests.get() as f64);
            sink.gauge(
                "mcp_server_http_open_streams",
                "Event streams (text/event-stream responses) the MCP endpoint holds open once their headers are sent.",
            )
            .add(&[], gauges.streams.get() as f64);
        }
    }
}
