//! Settings of one MCP daemon target (`collectors.wsdaemon[]`).

use std::collections::BTreeMap;
use std::time::Duration;

use mcpwatch_core::config::{
    ConfigPath, Problem, SecretFile, check_target_name, duration, secret_setting,
};
use mcpwatch_core::metrics::{is_valid_label_name, is_valid_metric_name};
use mcpwatch_core::{RedactedUrl, Secret};
use serde::Deserialize;

use crate::net::Endpoint;

/// One MCP server's daemon to watch. Every part is optional; at least one is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsDaemonConfig {
    /// The `target` label.
    pub name: String,
    /// The JSON health endpoint, `http://127.0.0.1:3001/health`.
    pub health_url: Option<String>,
    /// The MCP probe over WebSocket (`ws://` or `wss://`), with the `mcp` subprotocol.
    pub websocket_url: Option<String>,
    /// The MCP probe over Streamable HTTP (`http://host:8000/mcp`).
    pub mcp_url: Option<String>,
    /// A file the daemon rewrites with its health, as JSON.
    pub health_file: Option<ConfigPath>,
    /// A health file older than this is stale.
    #[serde(default = "defaults::health_file_max_age", with = "duration")]
    pub health_file_max_age: Duration,
    /// JSON-lines request logs to follow.
    pub request_log: Option<RequestLogConfig>,
    /// Limit of each probe; the scrape's deadline may cut it shorter.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <token>` to the health endpoint and the MCP probes.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token.
    pub bearer_token_file: Option<SecretFile>,
    /// Further headers of every request to the daemon (an API key, a tenant); their values
    /// are kept as secrets and never shown.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The MCP revision the Streamable HTTP probe speaks: `auto` (the default) finds the
    /// server's era as the specification's backward-compatibility rules say, remembers it,
    /// and finds it again when a probe fails; a revision (`2026-07-28`, `2025-11-25`, ...)
    /// pins it. The WebSocket probe always speaks the legacy era.
    #[serde(default = "defaults::protocol")]
    pub protocol: String,
    /// A synthetic `tools/call` after the tool list: off unless set. It calls a real tool,
    /// with whatever side effects and costs that tool has.
    pub tool_call: Option<ToolCallConfig>,
    /// CA certificates for `https://` and `wss://`; the system's roots otherwise.
    pub ca_file: Option<ConfigPath>,
    /// Accept any server certificate (for self-signed test daemons only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Read the default health shape (`status`, `uptime`, `version`, `tools`, `sessions`,
    /// `requests_per_minute`, providers, dependencies); true by default.
    #[serde(default = "defaults::yes")]
    pub default_mapping: bool,
    /// Further values of the health JSON, by JSON pointer.
    #[serde(default)]
    pub mappings: Vec<Mapping>,
    /// At most this many providers and dependencies are reported.
    #[serde(default = "defaults::max_entries")]
    pub max_entries: u32,
}

mod defaults {
    use std::time::Duration;

    pub fn timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn protocol() -> String {
        "auto".to_owned()
    }
    pub fn health_file_max_age() -> Duration {
        Duration::from_secs(120)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn max_entries() -> u32 {
        32
    }
    pub fn max_series() -> u32 {
        200
    }
    pub fn max_line_bytes() -> u32 {
        65_536
    }
    pub fn provider_field() -> String {
        "provider".to_owned()
    }
    pub fn tool_field() -> String {
        "tool".to_owned()
    }
    pub fn outcome_field() -> String {
        "status".to_owned()
    }
    pub fn duration_field() -> String {
        "duration_ms".to_owned()
    }
    pub fn success_values() -> Vec<String> {
        ["success", "ok", "true", "succeeded", "completed"]
            .map(String::from)
            .to_vec()
    }
    pub fn buckets() -> Vec<f64> {
        vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]
    }
}

/// A value of the health JSON turned into a metric.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// RFC 6901 JSON pointer, such as `/queue/depth` or `/providers/glm/status`.
    pub pointer: String,
    /// The metric name; a counter's ends in `_total`.
    pub metric: String,
    /// `gauge` (default) or `counter`.
    #[serde(default, rename = "type")]
    pub kind: MappingKind,
    /// Help text.
    pub help: Option<String>,
    /// Values for strings (`{"connected": 1, "degraded": 0.5}`); a string not listed gives
    /// no sample. Numbers are taken as they are, booleans as 1 and 0.
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
    /// Multiplies the value (0.001 turns milliseconds into seconds).
    #[serde(default = "one")]
    pub scale: f64,
    /// Labels of the series besides `target` and `source`, such as `{provider: glm}`, so
    /// that several pointers can fill one metric.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn one() -> f64 {
    1.0
}

/// The type of a mapped metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MappingKind {
    /// A value that goes up and down.
    #[default]
    Gauge,
    /// A value that only grows.
    Counter,
}

/// Whether `text` can be an HTTP header value as it is: visible ASCII, spaces and tabs.
fn is_header_text(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// The synthetic tool call of the MCP probes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallConfig {
    /// The tool to call; one the server does not list is not called.
    pub name: String,
    /// Its arguments.
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
    /// A regular expression the text of the result must match (its text content blocks,
    /// else its structured content as JSON).
    pub expect: Option<String>,
}

impl ToolCallConfig {
    /// `expect`, compiled.
    pub(crate) fn expect_pattern(&self) -> Result<Option<regex_lite::Regex>, String> {
        self.expect
            .as_deref()
            .map(regex_lite::Regex::new)
            .transpose()
            .map_err(|e| format!("not a regular expression: {e}"))
    }
}

/// JSON-lines request logs: one record per request the daemon served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLogConfig {
    /// A file, or a pattern of file names in one directory (`.logs/*.jsonl`); relative to
    /// the configuration file.
    pub path: ConfigPath,
    /// Field of the provider (a JSON pointer when it starts with `/`).
    #[serde(default = "defaults::provider_field")]
    pub provider_field: String,
    /// Field of the tool.
    #[serde(default = "defaults::tool_field")]
    pub tool_field: String,
    /// Field of the outcome.
    #[serde(default = "defaults::outcome_field")]
    pub outcome_field: String,
    /// Outcome values counted as success (case-insensitive); booleans true and HTTP
    /// statuses below 400 are success too.
    #[serde(default = "defaults::success_values")]
    pub success_values: Vec<String>,
    /// Field of the HTTP status (a number or numeric text, 100 to 599), for the
    /// `status_class` label and the `rate_limited` and `unauthorized` outcomes. Unset: the
    /// outcome field when it holds a status, else `status_code`, else `status`.
    #[serde(default)]
    pub status_field: Option<String>,
    /// Field of the duration.
    #[serde(default = "defaults::duration_field")]
    pub duration_field: String,
    /// Unit of the duration field.
    #[serde(default)]
    pub duration_unit: DurationUnit,
    /// Histogram bucket bounds, in seconds.
    #[serde(default = "defaults::buckets")]
    pub buckets: Vec<f64>,
    /// At most this many provider and tool pairs; the rest count as `other`.
    #[serde(default = "defaults::max_series")]
    pub max_series: u32,
    /// Longer lines are skipped (and counted as invalid).
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: u32,
    /// Read the files already there from their start at the first scrape, instead of
    /// from their end.
    #[serde(default)]
    pub read_existing: bool,
}

/// Unit of a duration field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationUnit {
    /// Milliseconds.
    #[default]
    Ms,
    /// Seconds.
    S,
    /// Microseconds.
    Us,
}

impl DurationUnit {
    /// Seconds per unit.
    pub fn seconds(self) -> f64 {
        match self {
            DurationUnit::Ms => 0.001,
            DurationUnit::S => 1.0,
            DurationUnit::Us => 0.000_001,
        }
    }
}

impl WsDaemonConfig {
    /// A target from one URL, as `--wsdaemon.url` gives: an `http(s)://` URL is the health
    /// endpoint (`/health` is added to a bare host); a `ws(s)://` URL is the MCP probe, with
    /// `/health` on the same host and port.
    pub fn from_url(name: String, url: &str) -> Result<Self, String> {
        let shown = RedactedUrl::new(url);
        let uri: http::Uri = url.parse().map_err(|_| format!("{shown:?} is not a URL"))?;
        // Kept whole, user info included, so that checking the target refuses it.
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{shown:?} has no host"))?
            .as_str()
            .to_owned();
        let (health, websocket) = match uri.scheme_str() {
            Some("http" | "https") => {
                let health = if uri.path().is_empty() || uri.path() == "/" {
                    format!(
                        "{}://{authority}/health",
                        uri.scheme_str().unwrap_or("http")
                    )
                } else {
                    url.to_owned()
                };
                (health, None)
            }
            Some(scheme @ ("ws" | "wss")) => {
                let http = if scheme == "wss" { "https" } else { "http" };
                (format!("{http}://{authority}/health"), Some(url.to_owned()))
            }
            _ => {
                return Err(format!(
                    "{shown:?}: expected http://, https://, ws:// or wss://"
                ));
            }
        };
        Ok(Self {
            name,
            health_url: Some(health),
            websocket_url: websocket,
            mcp_url: None,
            health_file: None,
            health_file_max_age: defaults::health_file_max_age(),
            request_log: None,
            timeout: defaults::timeout(),
            bearer_token: None,
            bearer_token_file: None,
            headers: BTreeMap::new(),
            protocol: defaults::protocol(),
            tool_call: None,
            ca_file: None,
            insecure_skip_verify: false,
            default_mapping: true,
            mappings: Vec::new(),
            max_entries: defaults::max_entries(),
        })
    }

    /// The `protocol` setting, read.
    pub(crate) fn pin(&self) -> Result<crate::era::Pin, String> {
        crate::era::Pin::parse(&self.protocol)
    }

    /// The bearer token from `bearer_token` or `bearer_token_file`, if either is set.
    pub fn bearer_token(&self) -> Result<Option<Secret>, String> {
        secret_setting(
            "bearer_token",
            self.bearer_token.clone(),
            self.bearer_token_file.clone(),
        )
    }

    /// Checks what the types cannot; the key is relative to this target's entry.
    pub fn validate(&self) -> Result<(), Problem> {
        let problem = |key: &str, message: String| Err((key.to_owned(), message));
        if let Err(message) = check_target_name(&self.name) {
            return problem("name", message);
        }
        if self.health_url.is_none()
            && self.websocket_url.is_none()
            && self.mcp_url.is_none()
            && self.health_file.is_none()
            && self.request_log.is_none()
        {
            return problem(
                "name",
                "set at least one of health_url, websocket_url, mcp_url, health_file or \
                 request_log"
                    .into(),
            );
        }
        for (key, url, schemes) in [
            ("health_url", &self.health_url, &["http", "https"][..]),
            ("websocket_url", &self.websocket_url, &["ws", "wss"][..]),
            ("mcp_url", &self.mcp_url, &["http", "https"][..]),
        ] {
            if let Some(url) = url {
                let shown = RedactedUrl::new(url);
                let scheme = url.split_once("://").map(|(scheme, _)| scheme);
                if !scheme.is_some_and(|s| schemes.contains(&s)) {
                    return problem(
                        key,
                        format!("{shown:?}: expected {}://", schemes.join(":// or ")),
                    );
                }
                if let Err(e) = Endpoint::parse(url) {
                    return problem(key, format!("{shown:?}: {e}"));
                }
            }
        }
        check_access(
            self.bearer_token(),
            self.bearer_token_file.is_some(),
            &self.headers,
        )?;
        let pin = match self.pin() {
            Ok(pin) => pin,
            Err(message) => return problem("protocol", message),
        };
        if self.websocket_url.is_some() && pin.era() == Some(crate::era::Era::Modern) {
            return problem(
                "protocol",
                format!(
                    "{:?} is a modern revision, and websocket_url speaks the legacy era only \
                     (WebSocket was never a standard MCP transport); pin it on a target \
                     with mcp_url alone",
                    self.protocol
                ),
            );
        }
        if let Some(call) = &self.tool_call {
            if self.websocket_url.is_none() && self.mcp_url.is_none() {
                return problem(
                    "tool_call",
                    "a tool call needs an MCP probe: set mcp_url or websocket_url".into(),
                );
            }
            if call.name.is_empty() {
                return problem("tool_call.name", "name the tool to call".into());
            }
            if let Err(message) = call.expect_pattern() {
                return problem("tool_call.expect", message);
            }
        }
        for (i, mapping) in self.mappings.iter().enumerate() {
            if crate::METRIC_NAMES.contains(&mapping.metric.as_str()) {
                return problem(
                    &format!("mappings[{i}].metric"),
                    format!("{:?} is one of the collector's own metrics", mapping.metric),
                );
            }
            if let Some(label) = mapping
                .labels
                .keys()
                .find(|l| !is_valid_label_name(l) || ["source", "target"].contains(&l.as_str()))
            {
                return problem(
                    &format!("mappings[{i}].labels"),
                    format!("{label:?} is not a valid label name, or is one mcpwatch sets"),
                );
            }
            let earlier = self.mappings[..i]
                .iter()
                .find(|m| m.metric == mapping.metric);
            if let Some(other) = earlier
                && (other.kind != mapping.kind || other.labels == mapping.labels)
            {
                let why = if other.kind != mapping.kind {
                    "with another type"
                } else {
                    "with the same labels"
                };
                return problem(
                    &format!("mappings[{i}].metric"),
                    format!("{:?} is already mapped {why}", mapping.metric),
                );
            }
            if !(mapping.pointer.is_empty() || mapping.pointer.starts_with('/')) {
                return problem(
                    &format!("mappings[{i}].pointer"),
                    "a JSON pointer starts with / (RFC 6901)".into(),
                );
            }
            let counter = mapping.kind == MappingKind::Counter;
            if !is_valid_metric_name(&mapping.metric)
                || counter != mapping.metric.ends_with("_total")
            {
                return problem(
                    &format!("mappings[{i}].metric"),
                    format!(
                        "{:?} is not a valid metric name{}",
                        mapping.metric,
                        if counter {
                            " ending in _total"
                        } else {
                            " (only counters end in _total)"
                        }
                    ),
                );
            }
        }
        if let Some(log) = &self.request_log {
            if log.buckets.is_empty()
                || log.buckets.windows(2).any(|w| w[0] >= w[1])
                || log.buckets.iter().any(|b| !b.is_finite() || *b <= 0.0)
            {
                return problem(
                    "request_log.buckets",
                    "give positive bounds in increasing order".into(),
                );
            }
            if let Err(e) = mcpwatch_core::follow::FilePattern::new(log.path.path()) {
                return problem("request_log.path", e);
            }
        }
        Ok(())
    }
}

/// Checks the credentials of a target's requests: the bearer token (from `bearer_token` or,
/// when `from_file`, `bearer_token_file`) and the further `headers`; the key is relative to
/// the target's entry.
pub(crate) fn check_access(
    token: Result<Option<Secret>, String>,
    from_file: bool,
    headers: &BTreeMap<String, Secret>,
) -> Result<(), Problem> {
    let problem = |key: &str, message: String| Err((key.to_owned(), message));
    match token {
        Err(message) => return problem("bearer_token", message),
        Ok(Some(token)) => {
            let key = if from_file {
                "bearer_token_file"
            } else {
                "bearer_token"
            };
            if token.is_empty() {
                return problem(key, "the token is empty".into());
            }
            if !is_header_text(token.expose()) {
                return problem(
                    key,
                    "the token holds characters an HTTP header cannot (control \
                     characters, line breaks, or bytes beyond ASCII)"
                        .into(),
                );
            }
        }
        Ok(None) => {}
    }
    for (i, (name, value)) in headers.iter().enumerate() {
        if let Err(message) = crate::http::check_extra_header(name) {
            return problem(&format!("headers.{name}"), message);
        }
        if !is_header_text(value.expose()) {
            return problem(
                &format!("headers.{name}"),
                "the value holds characters an HTTP header cannot (control characters, \
                 line breaks, or bytes beyond ASCII)"
                    .into(),
            );
        }
        if let Some(other) = headers
            .keys()
            .take(i)
            .find(|other| other.eq_ignore_ascii_case(name))
        {
            return problem(
                &format!("headers.{name}"),
                format!("the same header as {other:?} (header names ignore case)"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn parse(text: &str) -> WsDaemonConfig {
        parse_yaml(text, Path::new("c.yml")).expect("config")
    }

    #[test]
    fn reads_the_documented_example() {
        let c = parse(
            "name: exai\nhealth_url: http://127.0.0.1:3001/health\nwebsocket_url: ws://127.0.0.1:3001/\n\
             health_file: /srv/exai/logs/ws_daemon.health.json\nrequest_log:\n  path: /srv/exai/.logs/*.jsonl\n",
        );
        assert!(c.validate().is_ok());
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(
            c.request_log.as_ref().map(|l| l.duration_unit),
            Some(DurationUnit::Ms)
        );
    }

    #[test]
    fn urls_from_the_command_line() {
        let c = WsDaemonConfig::from_url("d".into(), "ws://127.0.0.1:3001/").expect("ws");
        assert_eq!(
            c.health_url.as_deref(),
            Some("http://127.0.0.1:3001/health")
        );
        assert_eq!(c.websocket_url.as_deref(), Some("ws://127.0.0.1:3001/"));
        let c = WsDaemonConfig::from_url("d".into(), "https://gw.example:8000").expect("https");
        assert_eq!(
            c.health_url.as_deref(),
            Some("https://gw.example:8000/health")
        );
        let c = WsDaemonConfig::from_url("d".into(), "http://gw:9000/api/health").expect("path");
        assert_eq!(c.health_url.as_deref(), Some("http://gw:9000/api/health"));
        assert!(WsDaemonConfig::from_url("d".into(), "ftp://x").is_err());
        let e = WsDaemonConfig::from_url("d".into(), "ftp://u:hunter2@x/?k=hunter2")
            .expect_err("scheme");
        assert_eq!(
            e,
            "\"ftp://<secret>@x/\": expected http://, https://, ws:// or wss://"
        );
        // User info is kept for the check to refuse, never dropped without a word.
        let c = WsDaemonConfig::from_url("d".into(), "http://u:hunter2@gw:8000").expect("bare");
        assert_eq!(
            c.validate(),
            Err((
                "health_url".to_owned(),
                "\"http://<secret>@gw:8000/health\": credentials in the URL are not \
                 supported; use bearer_token"
                    .to_owned()
            ))
        );
    }

    #[test]
    fn problems_name_their_key() {
        let c = parse("name: d\nhealth_url: 'ws://x/health'\n");
        assert_eq!(c.validate().expect_err("scheme").0, "health_url");
        for (key, url, expected) in [
            (
                "mcp_url",
                "ftp://u:hunter2@x/mcp?k=hunter2",
                "\"ftp://<secret>@x/mcp\": expected http:// or https://",
            ),
            (
                "websocket_url",
                "http://x/mcp?k=hunter2",
                "\"http://x/mcp\": expected ws:// or wss://",
            ),
            (
                "health_url",
                "http://u:hunter2@x/he alth",
                "\"http://<secret>@x/he alth\": not a URL",
            ),
            (
                "health_url",
                "http://u:hunter/2@x/health",
                "\"http://<secret>@x/health\": invalid port",
            ),
        ] {
            let c = parse(&format!("name: d\n{key}: '{url}'\n"));
            assert_eq!(
                c.validate(),
                Err((key.to_owned(), expected.to_owned())),
                "{url}"
            );
        }
        let c = parse("name: d\n");
        assert_eq!(c.validate().expect_err("nothing").0, "name");
        let c = parse(
            "name: d\nhealth_url: http://x/\nmappings:\n  - pointer: queue/depth\n    metric: q\n",
        );
        assert_eq!(c.validate().expect_err("pointer").0, "mappings[0].pointer");
        let c = parse(
            "name: d\nhealth_url: http://x/\nmappings:\n  - pointer: /q\n    metric: q_total\n",
        );
        assert_eq!(
            c.validate().expect_err("gauge _total").0,
            "mappings[0].metric"
        );
        let c = parse("name: d\nrequest_log:\n  path: x.jsonl\n  buckets: [1, 0.5]\n");
        assert_eq!(c.validate().expect_err("buckets").0, "request_log.buckets");
    }

    #[test]
    fn a_name_is_no_url_and_holds_no_credentials() {
        for name in [
            "http://ops:hunter2@127.0.0.1:3001",
            "ops:hunter2@127.0.0.1:3001",
            "ws://127.0.0.1:3001/",
        ] {
            let c = parse(&format!(
                "name: '{name}'\nhealth_url: http://127.0.0.1:3001/\n"
            ));
            let (key, message) = c.validate().expect_err(name);
            assert_eq!(key, "name", "{name}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let c = parse("name: '127.0.0.1:3001'\nhealth_url: http://127.0.0.1:3001/\n");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn protocol_headers_and_tool_call_are_checked() {
        let c = parse(
            "name: d\nmcp_url: http://x/mcp\nprotocol: '2026-07-28'\nheaders:\n  X-Tenant: t1\n\
             tool_call:\n  name: glm_chat\n  arguments: {prompt: ping, max_tokens: 1}\n  \
             expect: '(?i)pong'\n",
        );
        assert_eq!(c.validate(), Ok(()));
        let call = c.tool_call.as_ref().expect("tool call");
        assert_eq!(
            call.arguments.get("max_tokens"),
            Some(&serde_json::json!(1))
        );
        for (text, key, needle) in [
            (
                "mcp_url: http://x/mcp\nprotocol: latest\n",
                "protocol",
                "neither auto",
            ),
            (
                "websocket_url: ws://x/\nprotocol: '2026-07-28'\n",
                "protocol",
                "legacy era only",
            ),
            (
                "mcp_url: http://x/mcp\nheaders:\n  Mcp-Method: x\n",
                "headers.Mcp-Method",
                "sets itself",
            ),
            (
                "mcp_url: http://x/mcp\nheaders:\n  'bad name': x\n",
                "headers.bad name",
                "not a valid header name",
            ),
            (
                "health_url: http://x/\ntool_call: {name: t}\n",
                "tool_call",
                "set mcp_url or websocket_url",
            ),
            (
                "mcp_url: http://x/mcp\ntool_call: {name: t, expect: '('}\n",
                "tool_call.expect",
                "not a regular expression",
            ),
            (
                "mcp_url: http://x/mcp\ntool_call: {name: ''}\n",
                "tool_call.name",
                "name the tool",
            ),
            (
                "mcp_url: http://x/mcp\nheaders:\n  X-Key: \"a\\nb\"\n",
                "headers.X-Key",
                "line breaks",
            ),
            (
                "mcp_url: http://x/mcp\nheaders:\n  X-Key: a\n  x-key: b\n",
                "headers.x-key",
                "ignore case",
            ),
            (
                "mcp_url: http://x/mcp\nbearer_token: ''\n",
                "bearer_token",
                "empty",
            ),
            (
                "mcp_url: http://x/mcp\nbearer_token: \"t\\x01k\"\n",
                "bearer_token",
                "control characters",
            ),
        ] {
            let c = parse(&format!("name: d\n{text}"));
            let (at, message) = c.validate().expect_err(text);
            assert_eq!(at, key, "{text}");
            assert!(message.contains(needle), "{text}: {message}");
        }
        // A legacy pin suits WebSocket too.
        let c = parse("name: d\nwebsocket_url: ws://x/\nprotocol: '2025-06-18'\n");
        assert_eq!(c.validate(), Ok(()));
    }
}
