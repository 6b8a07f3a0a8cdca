#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod endpoint;
pub mod endpoint_config;
mod era;
mod health;
mod health_file;
mod http;
mod mapping;
mod mcp;
mod net;
mod request_log;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mcpwatch_core::certs::WatchedTls;
use mcpwatch_core::config::{ConfigPath, Problem};
use mcpwatch_core::web::{ServerCheck, watched_client_config};
use mcpwatch_core::{
    BlockingLane, CollectError, Collector, MetricSink, RedactedUrl, ScrapeContext, Secret,
    async_trait,
};
use tokio::time::Instant;

pub use config::WsDaemonConfig;
pub use endpoint::{HttpCollector, RedirectRule};
pub use endpoint_config::HttpConfig;

use crate::era::{EraMemory, Pin};
use crate::health::HealthReport;
use crate::health_file::FileState;
use crate::mcp::{CAPABILITIES, McpReport, Outcome, Plan, ToolCall, Transport};
use crate::net::{Endpoint, Reason};
use crate::request_log::RequestLog;

/// Names the default mapping and the probes use; a configured mapping may not take them.
pub(crate) const METRIC_NAMES: &[&str] = &[
    "wsdaemon_up",
    "wsdaemon_healthy",
    "wsdaemon_status",
    "wsdaemon_uptime_seconds",
    "wsdaemon_info",
    "wsdaemon_tools",
    "wsdaemon_sessions",
    "wsdaemon_requests_per_minute",
    "wsdaemon_health_timestamp_seconds",
    "wsdaemon_provider_up",
    "wsdaemon_provider_latency_seconds",
    "wsdaemon_dependency_up",
    "wsdaemon_dependency_latency_seconds",
    "wsdaemon_health_http_status",
    "wsdaemon_health_duration_seconds",
    "wsdaemon_health_failure",
    "wsdaemon_health_file_present",
    "wsdaemon_health_file_parse_error",
    "wsdaemon_health_file_stale",
    "wsdaemon_health_file_mtime_seconds",
    "wsdaemon_health_file_age_seconds",
    "wsdaemon_mcp_up",
    "wsdaemon_mcp_duration_seconds",
    "wsdaemon_mcp_phase_duration_seconds",
    "wsdaemon_mcp_tools",
    "wsdaemon_mcp_server_info",
    "wsdaemon_mcp_supported_version",
    "wsdaemon_mcp_capability",
    "wsdaemon_mcp_tools_ttl_seconds",
    "wsdaemon_mcp_failure",
    "wsdaemon_mcp_tool_call_success",
    "wsdaemon_mcp_tool_call_duration_seconds",
    "wsdaemon_mcp_tool_call_outcome",
    "wsdaemon_requests_total",
    "wsdaemon_request_duration_seconds",
    "wsdaemon_request_log_lines_total",
    "wsdaemon_request_log_read_bytes_total",
    "wsdaemon_request_log_rotations_total",
    "wsdaemon_request_log_files",
];

/// Time kept back from the scrape's deadline, so that a probe cut short by it still has its
/// `wsdaemon_up 0` written before the engine stops waiting.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// Why a collector could not be built: the key at fault and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct WsDaemonError {
    /// The key, relative to the target's entry.
    pub key: String,
    /// What is wrong; never the token.
    pub message: String,
}

/// A target name from a URL given on the command line: `host:port`.
pub fn target_name(url: &str) -> Result<String, String> {
    let endpoint = Endpoint::parse(url).map_err(|e| format!("{:?}: {e}", RedactedUrl::new(url)))?;
    Ok(if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    })
}

/// How the probes reach the daemon: TLS settings, the bearer token and further headers.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    /// TLS settings that record the certificate chains servers present.
    pub(crate) tls: Option<Arc<WatchedTls>>,
    pub(crate) token: Option<Secret>,
    pub(crate) headers: Vec<(::http::HeaderName, Secret)>,
}

impl Access {
    /// The TLS settings (when a URL is `https://` or `wss://`, or a CA file is set) with
    /// the recorder of the certificate chains their handshakes are presented, the bearer
    /// token and the further headers of a target; an error names the key at fault.
    pub(crate) fn new(
        token: Result<Option<Secret>, String>,
        headers: &BTreeMap<String, Secret>,
        needs_tls: bool,
        ca_file: Option<&ConfigPath>,
        insecure_skip_verify: bool,
    ) -> Result<Self, Problem> {
        let token = token.map_err(|message| ("bearer_token".to_owned(), message))?;
        let headers = headers
            .iter()
            .map(|(name, value)| {
                ::http::HeaderName::from_bytes(name.as_bytes())
                    .map(|name| (name, value.clone()))
                    .map_err(|_| (format!("headers.{name}"), "not a header name".to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if needs_tls || ca_file.is_some() {
            let check = if insecure_skip_verify {
                ServerCheck::None
            } else {
                ServerCheck::Full
            };
            let ca = ca_file.map(ConfigPath::path);
            Some(
                watched_client_config(check, ca)
                    .map_err(|message| ("ca_file".to_owned(), message))?,
            )
        } else {
            None
        };
        Ok(Self {
            tls,
            token,
            headers,
        })
    }
}

/// Secret values shorter than this are not looked for in text (they would match too much,
/// and hide little).
const REDACT_MIN: usize = 4;

impl Access {
    /// `text` (from a server, which may echo what it was sent) with the bearer token and
    /// the header values shown as `<secret>`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let values = self
            .token
            .iter()
            .chain(self.headers.iter().map(|(_, value)| value))
            .map(Secret::expose)
            .filter(|value| value.len() >= REDACT_MIN);
        for value in values {
            if text.contains(value) {
                text = text.replace(value, "<secret>");
            }
        }
        text
    }
}

/// What reading the daemon's files found.
#[derive(Debug)]
struct Files {
    sink: MetricSink,
    health_file: Option<FileState>,
    /// Request log files followed.
    log_files: Option<usize>,
}

/// Collects the metrics of one MCP server's daemon (`wsdaemon_*`), labelled
/// `target="<name>"`: its health endpoint, an MCP session over WebSocket and over
/// Streamable HTTP, its health file and its JSON-lines request log, whichever are set.
///
/// The probes run concurrently under the smaller of `timeout` and the scrape's deadline;
/// the files are read on the blocking pool meanwhile. A failed health or MCP probe fails
/// the collection (`mcpwatch_scrape_collector_success 0`) with every metric still served;
/// a missing or stale health file, or a request log with bad lines, does not.
pub struct WsDaemonCollector {
    config: Arc<WsDaemonConfig>,
    health: Option<Endpoint>,
    websocket: Option<Endpoint>,
    mcp_http: Option<Endpoint>,
    access: Access,
    pin: Pin,
    /// The era the Streamable HTTP probe last found, for `protocol: auto`.
    era: EraMemory,
    tool_call: Option<ToolCall>,
    request_log: Option<Arc<Mutex<RequestLog>>>,
    /// One read of the health file and the request log at a time.
    files_lane: BlockingLane,
}

impl std::fmt::Debug for WsDaemonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsDaemonCollector")
            .field("target", &self.config.name)
            .finish()
    }
}

impl WsDaemonCollector {
    /// Checks the configuration, reads the CA and token files, and starts following the
    /// request log at the end of its files. Nothing connects until the first scrape.
    pub fn new(config: WsDaemonConfig) -> Result<Self, WsDaemonError> {
        let error = |key: &str, message: String| WsDaemonError {
            key: key.to_owned(),
            message,
        };
        config
            .validate()
            .map_err(|(key, message)| WsDaemonError { key, message })?;
        let endpoint = |key: &str, url: &Option<String>| {
            url.as_deref()
                .map(Endpoint::parse)
                .transpose()
                .map_err(|message| error(key, message))
        };
        let health = endpoint("health_url", &config.health_url)?;
        let websocket = endpoint("websocket_url", &config.websocket_url)?;
        let mcp_http = endpoint("mcp_url", &config.mcp_url)?;
        let pin = config.pin().map_err(|message| error("protocol", message))?;
        let tool_call = config
            .tool_call
            .as_ref()
            .map(|call| {
                let expect = call
                    .expect_pattern()
                    .map_err(|message| error("tool_call.expect", message))?;
                Ok(ToolCall {
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    expect,
                })
            })
            .transpose()?;
        let needs_tls = [&health, &websocket, &mcp_http]
            .iter()
            .any(|e| e.as_ref().is_some_and(|e| e.tls));
        let access = Access::new(
            config.bearer_token(),
            &config.headers,
            needs_tls,
            config.ca_file.as_ref(),
            config.insecure_skip_verify,
        )
        .map_err(|(key, message)| WsDaemonError { key, message })?;
        let request_log = config
            .request_log
            .clone()
            .map(RequestLog::new)
            .transpose()
            .map_err(|message| error("request_log.path", message))?
            .map(|log| Arc::new(Mutex::new(log)));
        Ok(Self {
            config: Arc::new(config),
            health,
            websocket,
            mcp_http,
            access,
            pin,
            era: EraMemory::default(),
            tool_call,
            request_log,
            files_lane: BlockingLane::default(),
        })
    }

    /// Reads the health file and the request log on the blocking pool; `Ok(None)` when
    /// neither is set, an error when the read broke down or missed the deadline.
    async fn read_files(&self, deadline: Instant) -> Result<Option<Files>, String> {
        if self.config.health_file.is_none() && self.request_log.is_none() {
            return Ok(None);
        }
        let config = self.config.clone();
        let log = self.request_log.clone();
        // A large backlog is read over several scrapes: this one stops reading in time to
        // report what it read.
        let ctx = ScrapeContext::new(deadline);
        self.files_lane
            .run(&ctx, "reading the daemon's files", move |stop| {
                let mut sink = MetricSink::default();
                let state = config
                    .health_file
                    .as_ref()
                    .map(|file| health_file::read(file.path(), &config, &mut sink));
                let log_files = log.map(|log| {
                    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                    log.poll(stop);
                    log.metrics(&mut sink);
                    log.files()
                });
                Some(Files {
                    sink,
                    health_file: state,
                    log_files,
                })
            })
            .await
            .map_err(|error| error.to_string())
    }
}

#[async_trait]
impl Collector for WsDaemonCollector {
    fn name(&self) -> &str {
        "wsdaemon"
    }

    fn target(&self) -> &str {
        &self.config.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        // Certificate chains presented from now on are this collection's.
        let started = std::time::Instant::now();
        let budget = ctx
            .remaining()
            .saturating_sub(DEADLINE_MARGIN)
            .min(self.config.timeout);
        let deadline = Instant::now() + budget;
        let access = &self.access;
        let plan = Plan {
            pin: self.pin,
            memory: &self.era,
            tool_call: self.tool_call.as_ref(),
        };
        let health = async {
            match &self.health {
                Some(endpoint) => Some(health::probe(endpoint, access, deadline).await),
                None => None,
            }
        };
        let probe = |transport, endpoint: &Option<Endpoint>| {
            let endpoint = endpoint.clone();
            async move {
                match endpoint {
                    Some(endpoint) => {
                        Some(mcp::probe(transport, &endpoint, access, plan, deadline).await)
                    }
                    None => None,
                }
            }
        };
        let (health, websocket, mcp_http, files) = tokio::join!(
            health,
            probe(Transport::WebSocket, &self.websocket),
            probe(Transport::StreamableHttp, &self.mcp_http),
            self.read_files(deadline),
        );
        let mcp: Vec<McpReport> = [websocket, mcp_http].into_iter().flatten().collect();
        let mut failures = Vec::new();
        let files = files.unwrap_or_else(|error| {
            failures.push(error);
            None
        });

        let file_state = files.as_ref().and_then(|f| f.health_file);
        let log_files = files.as_ref().and_then(|f| f.log_files);
        let up = match (&health, mcp.is_empty(), file_state) {
            (Some(health), _, _) => health.failure.is_none(),
            (None, false, _) => mcp.iter().all(|r| r.failure.is_none()),
            (None, true, Some(state)) => state == FileState::Fresh,
            (None, true, None) => log_files.is_some_and(|n| n > 0),
        };
        sink.gauge(
            "wsdaemon_up",
            "Whether the daemon answered: its health endpoint if set, else its MCP probes, \
             else a fresh health file, else a request log to follow.",
        )
        .add(&[], if up { 1.0 } else { 0.0 });

        if let (Some(report), Some(endpoint)) = (&health, &self.health) {
            health_metrics(report, &self.config, sink);
            if let Some(failure) = &report.failure {
                failures.push(format!("health endpoint {endpoint}: {failure}"));
            }
        }
        for report in &mcp {
            mcp_metrics(report, self.tool_call.as_ref(), sink);
            if let Some(failure) = &report.failure {
                failures.push(format!(
                    "MCP probe over {}: {failure}",
                    report.transport.as_str()
                ));
            }
            if let Some(detail) = report.tool_call.as_ref().and_then(|c| c.detail.as_ref()) {
                tracing::warn!(
                    target_name = %self.config.name,
                    transport = report.transport.as_str(),
                    "MCP tool call: {}",
                    self.access.redact(detail)
                );
            }
        }
        if let Some(tls) = &self.access.tls {
            tls.recorder().write(sink, "wsdaemon", started);
        }
        if let Some(files) = files {
            sink.append(files.sink);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(CollectError::msg(self.access.redact(&failures.join("; "))))
        }
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

fn health_metrics(report: &HealthReport, config: &WsDaemonConfig, sink: &mut MetricSink) {
    sink.gauge(
        "wsdaemon_health_http_status",
        "The HTTP status of the health endpoint's answer; 0 when it gave none.",
    )
    .add(&[], report.status.map_or(0.0, f64::from));
    sink.gauge(
        "wsdaemon_health_duration_seconds",
        "Time the health endpoint took to answer, connection included.",
    )
    .add(&[], report.duration);
    let failed = sink.gauge(
        "wsdaemon_health_failure",
        "Why the health probe failed: 1 for the reason, 0 for the others.",
    );
    let reason = report.failure.as_ref().map(|f| f.reason);
    for each in Reason::HEALTH {
        failed.add(&[("reason", each.as_str())], flag(reason == Some(each)));
    }
    if let Some(body) = &report.body {
        mapping::map_health(body, "http", config, sink);
    }
}

fn mcp_metrics(report: &McpReport, call: Option<&ToolCall>, sink: &mut MetricSink) {
    let transport = report.transport.as_str();
    sink.gauge(
        "wsdaemon_mcp_up",
        "Whether the MCP probe succeeded: server/discover and tools/list (modern era), or \
         initialize, tools/list and ping (legacy era).",
    )
    .add(&[("transport", transport)], flag(report.failure.is_none()));
    sink.gauge(
        "wsdaemon_mcp_duration_seconds",
        "Time of the whole MCP probe, close included.",
    )
    .add(&[("transport", transport)], report.duration);
    let phases = sink.gauge(
        "wsdaemon_mcp_phase_duration_seconds",
        "Time of each completed phase of the MCP probe: connect, handshake (TLS and \
         WebSocket upgrade), discover (modern), initialize and ping (legacy), tools_list.",
    );
    for (phase, seconds) in &report.phases {
        phases.add(
            &[("transport", transport), ("phase", phase.as_str())],
            *seconds,
        );
    }
    if let Some(tools) = report.tools {
        sink.gauge("wsdaemon_mcp_tools", "Tools the MCP server lists.")
            .add(&[("transport", transport)], tools as f64);
    }
    if let Some(ttl) = report.tools_ttl {
        sink.gauge(
            "wsdaemon_mcp_tools_ttl_seconds",
            "How long the tool list may be cached, from its ttlMs (modern era; the \
             smallest of its pages).",
        )
        .add(&[("transport", transport)], ttl);
    }
    if let Some(server) = &report.server {
        sink.info(
            "wsdaemon_mcp_server_info",
            "The MCP server's name and version, the protocol revision spoken and its era \
             (legacy or modern), always 1.",
        )
        .add(
            &[
                ("transport", transport),
                ("name", &server.name),
                ("version", &server.version),
                ("protocol_version", &server.protocol_version),
                ("era", server.era.as_str()),
            ],
            1.0,
        );
    }
    if !report.supported.is_empty() {
        let supported = sink.gauge(
            "wsdaemon_mcp_supported_version",
            "Protocol revisions the MCP server says it speaks (server/discover, an \
             unsupported-version error, or the one initialize agreed), always 1.",
        );
        let mut seen: Vec<&str> = Vec::with_capacity(report.supported.len());
        for version in &report.supported {
            if !seen.contains(&version.as_str()) {
                seen.push(version);
                supported.add(&[("transport", transport), ("version", version)], 1.0);
            }
        }
    }
    if let Some(present) = report.capabilities {
        let capability = sink.gauge(
            "wsdaemon_mcp_capability",
            "Whether the MCP server declares a capability: 1 present, 0 absent.",
        );
        for (name, on) in CAPABILITIES.iter().zip(present) {
            capability.add(&[("transport", transport), ("capability", name)], flag(on));
        }
    }
    let failed = sink.gauge(
        "wsdaemon_mcp_failure",
        "Why the MCP probe failed: 1 for the reason, 0 for the others.",
    );
    let reason = report.failure.as_ref().map(|f| f.reason);
    for each in Reason::MCP {
        failed.add(
            &[("transport", transport), ("reason", each.as_str())],
            flag(reason == Some(each)),
        );
    }
    if let (Some(call), Some(result)) = (call, &report.tool_call) {
        let tool = mapping::label_value(&call.name);
        let labels = [("transport", transport), ("tool", tool.as_str())];
        sink.gauge(
            "wsdaemon_mcp_tool_call_success",
            "Whether the synthetic tool call succeeded: a result that is no error and \
             matches the expected pattern.",
        )
        .add(&labels, flag(result.outcome == Outcome::Success));
        sink.gauge(
            "wsdaemon_mcp_tool_call_duration_seconds",
            "Time of the synthetic tool call; 0 when it was not made.",
        )
        .add(&labels, result.duration);
        let outcome = sink.gauge(
            "wsdaemon_mcp_tool_call_outcome",
            "What the synthetic tool call gave: 1 for the outcome, 0 for the others.",
        );
        for each in Outcome::ALL {
            outcome.add(
                &[
                    ("transport", transport),
                    ("tool", tool.as_str()),
                    ("outcome", each.as_str()),
                ],
                flag(result.outcome == each),
            );
        }
    }
}
