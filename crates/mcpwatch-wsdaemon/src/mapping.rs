//! Health JSON to metrics: the default shape MCP daemons answer with, and the mappings of
//! the configuration. Every series carries `source` (`http` for the endpoint, `file` for the
//! health file), so one target can show both.

use std::borrow::Cow;
use std::collections::BTreeSet;

use mcpwatch_core::metrics::{Label, SampleValue};
use mcpwatch_core::{MetricFamily, MetricKind, MetricSink};
use serde_json::{Map, Value};

use crate::config::{Mapping, MappingKind, WsDaemonConfig};

/// Label values longer than this are cut: they come from the daemon, not from us.
const LABEL_MAX: usize = 128;

/// A label value from text the daemon sent: cut at [`LABEL_MAX`] characters, with control
/// characters and bidirectional overrides (which render as something else than they are)
/// replaced by U+FFFD.
pub(crate) fn label_value(text: &str) -> String {
    text.chars().take(LABEL_MAX).map(printable).collect()
}

/// `c`, or U+FFFD when it is a control character or a bidirectional override or isolate.
pub(crate) fn printable(c: char) -> char {
    if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
        '\u{fffd}'
    } else {
        c
    }
}

/// The overall status, a bounded enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

impl Status {
    const ALL: [Status; 4] = [
        Status::Healthy,
        Status::Degraded,
        Status::Unhealthy,
        Status::Unknown,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
            Status::Unknown => "unknown",
        }
    }

    fn of(value: &Value) -> Status {
        match value {
            Value::Bool(true) => Status::Healthy,
            Value::Bool(false) => Status::Unhealthy,
            Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
                "healthy" | "ok" | "up" | "pass" | "passing" | "green" | "running" | "ready"
                | "operational" | "alive" | "available" | "serving" => Status::Healthy,
                "degraded" | "warn" | "warning" | "partial" | "yellow" | "slow" | "limited" => {
                    Status::Degraded
                }
                "unhealthy" | "down" | "fail" | "failed" | "failing" | "error" | "critical"
                | "red" | "unavailable" | "dead" | "not_serving" | "stopped" => Status::Unhealthy,
                _ => Status::Unknown,
            },
            _ => Status::Unknown,
        }
    }
}

/// 1 or 0 for a provider's or a dependency's state, or `None` when the value says nothing
/// about being up (`"disabled"`, a free-form message).
fn up_value(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(up) => Some(if *up { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64().map(|n| if n > 0.0 { 1.0 } else { 0.0 }),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            // A degraded provider still answers: it is not down.
            "up" | "ok" | "healthy" | "connected" | "ready" | "available" | "pass" | "passed"
            | "passing" | "online" | "running" | "active" | "green" | "true" | "yes"
            | "operational" | "alive" | "serving" | "degraded" | "slow" => Some(1.0),
            "down" | "error" | "failed" | "fail" | "failing" | "unhealthy" | "disconnected"
            | "unavailable" | "offline" | "stopped" | "false" | "no" | "red" | "critical"
            | "timeout" | "unreachable" | "dead" | "closed" | "not_connected" | "not_serving" => {
                Some(0.0)
            }
            _ => None,
        },
        Value::Object(object) => ["status", "state", "healthy", "up", "connected", "available"]
            .iter()
            .find_map(|key| object.get(*key).and_then(up_value)),
        _ => None,
    }
}

/// A number from a JSON number or a string holding one.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

/// A count: a number, or the length of a list or object.
fn count(value: &Value) -> Option<f64> {
    match value {
        Value::Array(items) => Some(items.len() as f64),
        Value::Object(items) => Some(items.len() as f64),
        other => number(other),
    }
}

/// Seconds from a latency field of `object`, whatever its unit suffix.
fn latency(object: &Map<String, Value>) -> Option<f64> {
    const FIELDS: [(&str, f64); 6] = [
        ("latency_ms", 0.001),
        ("response_time_ms", 0.001),
        ("latency_seconds", 1.0),
        ("latency_s", 1.0),
        ("response_time_seconds", 1.0),
        ("latency_us", 0.000_001),
    ];
    FIELDS
        .iter()
        .find_map(|(key, scale)| object.get(*key).and_then(number).map(|n| n * scale))
}

/// Seconds since the epoch from an RFC 3339 string or a number (seconds, or milliseconds
/// when it is too large to be seconds).
fn timestamp(value: &Value) -> Option<f64> {
    match value {
        Value::String(text) => humantime::parse_rfc3339_weak(text.trim())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64()),
        other => number(other).map(|n| if n > 1e11 { n / 1000.0 } else { n }),
    }
}

/// Uptime in seconds: a number, or a duration such as `"2h 5m"`.
fn uptime(object: &Map<String, Value>) -> Option<f64> {
    for key in ["uptime_seconds", "uptime_s", "uptime"] {
        match object.get(key) {
            Some(Value::String(text)) => {
                if let Some(n) = number(&Value::String(text.clone())) {
                    return Some(n);
                }
                if let Ok(d) = humantime::parse_duration(text.trim()) {
                    return Some(d.as_secs_f64());
                }
            }
            Some(value) => {
                if let Some(n) = number(value) {
                    return Some(n);
                }
            }
            None => {}
        }
    }
    object
        .get("uptime_ms")
        .and_then(number)
        .map(|ms| ms / 1000.0)
}

fn first<'a>(object: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|key| object.get(*key))
}

/// Keys of the default shape that are not dependencies even when their value reads like a
/// state.
const NOT_DEPENDENCIES: [&str; 24] = [
    "status",
    "healthy",
    "ok",
    "state",
    "version",
    "uptime",
    "uptime_seconds",
    "uptime_s",
    "uptime_ms",
    "timestamp",
    "time",
    "tools",
    "sessions",
    "requests_per_minute",
    "message",
    "detail",
    "details",
    "error",
    "service",
    "name",
    "environment",
    "env",
    "mode",
    "providers",
];

/// Keys whose object holds dependencies by name.
const DEPENDENCY_GROUPS: [&str; 5] = [
    "dependencies",
    "checks",
    "services",
    "components",
    "backends",
];

/// Families for one health document.
struct Families {
    source: &'static str,
    families: Vec<MetricFamily>,
}

impl Families {
    fn get(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricKind,
    ) -> &mut MetricFamily {
        let at = match self.families.iter().position(|f| f.name() == name) {
            Some(at) => at,
            None => {
                self.families.push(MetricFamily::new(name, help, kind));
                self.families.len() - 1
            }
        };
        &mut self.families[at]
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        let source = self.source;
        self.get(name, help, MetricKind::Gauge)
            .add(&[("source", source)], value);
    }

    fn named(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        key: &str,
        value: f64,
    ) {
        let source = self.source;
        self.get(name, help, MetricKind::Gauge)
            .add(&[("source", source), (label, key)], value);
    }
}

/// Adds the metrics of `json` to `sink`, labelled `source`.
pub(crate) fn map_health(
    json: &Value,
    source: &'static str,
    config: &WsDaemonConfig,
    sink: &mut MetricSink,
) {
    let mut out = Families {
        source,
        families: Vec::new(),
    };
    if let (true, Value::Object(object)) = (config.default_mapping, json) {
        default_shape(object, config.max_entries as usize, &mut out);
    }
    for mapping in &config.mappings {
        mapped(json, mapping, source, &mut out.families);
    }
    for family in out.families {
        sink.family(family);
    }
}

fn default_shape(object: &Map<String, Value>, max_entries: usize, out: &mut Families) {
    if let Some(status) = first(object, &["status", "healthy", "ok", "state"]) {
        let status = Status::of(status);
        out.gauge(
            "wsdaemon_healthy",
            "Whether the daemon reports itself healthy (1) or not (0).",
            if status == Status::Healthy { 1.0 } else { 0.0 },
        );
        for each in Status::ALL {
            out.named(
                "wsdaemon_status",
                "The status the daemon reports, one series per known status (unknown for any \
                 other word).",
                "status",
                each.as_str(),
                if each == status { 1.0 } else { 0.0 },
            );
        }
    }
    if let Some(uptime) = uptime(object) {
        out.gauge(
            "wsdaemon_uptime_seconds",
            "How long the daemon has been running, as it reports.",
            uptime,
        );
    }
    if let Some(version) = object.get("version").and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }) {
        let source = out.source;
        out.get(
            "wsdaemon_info",
            "The version the daemon reports, always 1.",
            MetricKind::Info,
        )
        .add(
            &[("source", source), ("version", &label_value(&version))],
            1.0,
        );
    }
    if let Some(n) = first(
        object,
        &["tools", "tool_count", "tools_count", "tools_available"],
    )
    .and_then(count)
    {
        out.gauge("wsdaemon_tools", "Tools the daemon reports it serves.", n);
    }
    if let Some(n) = first(
        object,
        &[
            "sessions",
            "active_sessions",
            "session_count",
            "connections",
            "active_connections",
        ],
    )
    .and_then(count)
    {
        out.gauge("wsdaemon_sessions", "Sessions the daemon reports open.", n);
    }
    if let Some(n) = first(object, &["requests_per_minute", "rpm"]).and_then(number) {
        out.gauge(
            "wsdaemon_requests_per_minute",
            "Requests per minute, as the daemon computes them.",
            n,
        );
    }
    if let Some(t) = first(object, &["timestamp", "time"]).and_then(timestamp) {
        out.gauge(
            "wsdaemon_health_timestamp_seconds",
            "When the daemon wrote its health answer, in seconds since the epoch.",
            t,
        );
    }
    if let Some(providers) = object.get("providers") {
        let mut seen = BTreeSet::new();
        for (name, value) in entries(providers) {
            if seen.len() == max_entries || !seen.insert(name.clone()) {
                continue;
            }
            if let Some(up) = up_value(value) {
                out.named(
                    "wsdaemon_provider_up",
                    "Whether an upstream provider is available (1) or not (0), as the daemon \
                     reports.",
                    "provider",
                    &name,
                    up,
                );
            }
            if let Some(seconds) = value.as_object().and_then(latency) {
                out.named(
                    "wsdaemon_provider_latency_seconds",
                    "The latency the daemon reports for an upstream provider.",
                    "provider",
                    &name,
                    seconds,
                );
            }
        }
    }
    let mut seen = BTreeSet::new();
    let grouped = DEPENDENCY_GROUPS
        .iter()
        .filter_map(|key| object.get(*key))
        .flat_map(entries);
    let top_level = object
        .iter()
        .filter(|(key, value)| {
            !NOT_DEPENDENCIES.contains(&key.as_str())
                && !DEPENDENCY_GROUPS.contains(&key.as_str())
                && matches!(value, Value::String(_) | Value::Object(_))
        })
        .map(|(key, value)| (label_value(key), value));
    for (name, value) in grouped.chain(top_level) {
        let Some(up) = up_value(value) else { continue };
        if seen.len() == max_entries || !seen.insert(name.clone()) {
            continue;
        }
        out.named(
            "wsdaemon_dependency_up",
            "Whether a dependency (database, cache, service) is reachable (1) or not (0), as \
             the daemon reports.",
            "dependency",
            &name,
            up,
        );
        if let Some(seconds) = value.as_object().and_then(latency) {
            out.named(
                "wsdaemon_dependency_latency_seconds",
                "The latency the daemon reports for a dependency.",
                "dependency",
                &name,
                seconds,
            );
        }
    }
}

/// Named entries of an object (`{"glm": {...}}`) or a list of objects with a name.
fn entries(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Object(object) => object
            .iter()
            .map(|(name, value)| (label_value(name), value))
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| {
                let object = item.as_object()?;
                let name = first(object, &["name", "id", "provider", "service"])?.as_str()?;
                Some((label_value(name), item))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The value at a mapping's pointer: numbers as they are, booleans as 1 and 0, strings by
/// the mapping's table (or as numbers), lists by their length.
fn mapped_value(json: &Value, mapping: &Mapping) -> Option<f64> {
    let value = json.pointer(&mapping.pointer)?;
    let raw = match value {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(text) => mapping
            .values
            .get(text)
            .or_else(|| {
                mapping
                    .values
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(text))
                    .map(|(_, v)| v)
            })
            .copied()
            .or_else(|| number(value)),
        Value::Array(items) => Some(items.len() as f64),
        other => number(other),
    }?;
    Some(raw * mapping.scale).filter(|v| v.is_finite())
}

fn mapped(json: &Value, mapping: &Mapping, source: &'static str, families: &mut Vec<MetricFamily>) {
    let Some(value) = mapped_value(json, mapping) else {
        return;
    };
    let kind = match mapping.kind {
        MappingKind::Gauge => MetricKind::Gauge,
        MappingKind::Counter => MetricKind::Counter,
    };
    let help = mapping
        .help
        .clone()
        .unwrap_or_else(|| format!("The daemon's health value at {}.", mapping.pointer));
    let mut labels: Vec<Label> = vec![(Cow::Borrowed("source"), source.to_owned())];
    labels.extend(
        mapping
            .labels
            .iter()
            .map(|(k, v)| (Cow::Owned(k.clone()), v.clone())),
    );
    let mut family = MetricFamily::new(mapping.metric.clone(), help, kind);
    family.add_labels(labels, SampleValue::Number(value));
    families.push(family);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use serde_json::json;
    use std::path::Path;

    fn config(extra: &str) -> WsDaemonConfig {
        parse_yaml(
            &format!("name: d\nhealth_url: http://x/health\n{extra}"),
            Path::new("c.yml"),
        )
        .expect("config")
    }

    fn map(json: Value, config: &WsDaemonConfig) -> MetricSink {
        let mut sink = MetricSink::default();
        map_health(&json, "http", config, &mut sink);
        sink
    }

    fn value(sink: &MetricSink, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sink.families()
            .iter()
            .filter(|f| f.name() == name)
            .find_map(|f| f.value(labels))
    }

    #[test]
    fn the_documented_daemon_shape() {
        let sink = map(
            json!({"status":"healthy","uptime":3600,"version":"2.3.0","tools":29,"sessions":5,
                   "requests_per_minute":45,
                   "providers":{"glm":{"status":"up","latency_ms":120},"kimi":{"status":"down"}}}),
            &config(""),
        );
        let s = [("source", "http")];
        assert_eq!(value(&sink, "wsdaemon_healthy", &s), Some(1.0));
        assert_eq!(
            value(
                &sink,
                "wsdaemon_status",
                &[("source", "http"), ("status", "healthy")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &sink,
                "wsdaemon_status",
                &[("source", "http"), ("status", "degraded")]
            ),
            Some(0.0)
        );
        assert_eq!(value(&sink, "wsdaemon_uptime_seconds", &s), Some(3600.0));
        assert_eq!(
            value(
                &sink,
                "wsdaemon_info",
                &[("source", "http"), ("version", "2.3.0")]
            ),
            Some(1.0)
        );
        assert_eq!(value(&sink, "wsdaemon_tools", &s), Some(29.0));
        assert_eq!(value(&sink, "wsdaemon_sessions", &s), Some(5.0));
        assert_eq!(value(&sink, "wsdaemon_requests_per_minute", &s), Some(45.0));
        let glm = [("source", "http"), ("provider", "glm")];
        assert_eq!(value(&sink, "wsdaemon_provider_up", &glm), Some(1.0));
        assert_eq!(
            value(&sink, "wsdaemon_provider_latency_seconds", &glm),
            Some(0.12)
        );
        assert_eq!(
            value(
                &sink,
                "wsdaemon_provider_up",
                &[("source", "http"), ("provider", "kimi")]
            ),
            Some(0.0)
        );
        assert!(sink.find("wsdaemon_dependency_up").is_none());
    }

    #[test]
    fn the_fastapi_shape_and_dependency_groups() {
        let sink = map(
            json!({"status":"degraded","timestamp":"2026-11-22T10:00:00Z","version":"1.0.0",
                   "database":"connected","redis":{"status":"error","latency_ms":3},
                   "message":"ok","checks":{"disk":"ok","queue":"disabled"}}),
            &config(""),
        );
        let dep = |name: &str| {
            value(
                &sink,
                "wsdaemon_dependency_up",
                &[("source", "http"), ("dependency", name)],
            )
        };
        assert_eq!(dep("database"), Some(1.0));
        assert_eq!(dep("redis"), Some(0.0));
        assert_eq!(dep("disk"), Some(1.0));
        assert_eq!(dep("queue"), None, "disabled is not down");
        assert_eq!(dep("message"), None, "free text is no dependency");
        assert_eq!(
            value(&sink, "wsdaemon_healthy", &[("source", "http")]),
            Some(0.0)
        );
        assert_eq!(
            value(
                &sink,
                "wsdaemon_status",
                &[("source", "http"), ("status", "degraded")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &sink,
                "wsdaemon_health_timestamp_seconds",
                &[("source", "http")]
            ),
            Some(1_795_341_600.0)
        );
    }

    #[test]
    fn entries_are_bounded_and_names_cut() {
        let providers: Map<String, Value> = (0..50)
            .map(|i| (format!("p{i:02}"), json!("up")))
            .chain([("x".repeat(300), json!("up"))])
            .collect();
        let sink = map(
            json!({"providers": providers}),
            &config("max_entries: 10\n"),
        );
        let family = sink.find("wsdaemon_provider_up").expect("providers");
        assert_eq!(family.samples().len(), 10);
        let sink = map(
            json!({"providers": [{"name": "y".repeat(300), "status": "ok"}]}),
            &config(""),
        );
        let family = sink.find("wsdaemon_provider_up").expect("providers");
        assert_eq!(family.samples()[0].labels[1].1.len(), LABEL_MAX);
    }

    #[test]
    fn configured_mappings() {
        let c = config(
            "default_mapping: false\nmappings:\n\
             - {pointer: /queue/depth, metric: daemon_queue_depth}\n\
             - {pointer: /db, metric: daemon_db_state, values: {connected: 1, degraded: 0.5}}\n\
             - {pointer: /served, metric: daemon_served_total, type: counter}\n\
             - {pointer: /p/glm/ms, metric: daemon_provider_seconds, scale: 0.001, labels: {provider: glm}}\n\
             - {pointer: /missing, metric: daemon_missing}\n",
        );
        let sink = map(
            json!({"status":"healthy","queue":{"depth":7},"db":"Degraded","served":1234,
                   "p":{"glm":{"ms":250}}}),
            &c,
        );
        let s = [("source", "http")];
        assert!(
            sink.find("wsdaemon_healthy").is_none(),
            "default mapping off"
        );
        assert_eq!(value(&sink, "daemon_queue_depth", &s), Some(7.0));
        assert_eq!(value(&sink, "daemon_db_state", &s), Some(0.5));
        assert_eq!(value(&sink, "daemon_served_total", &s), Some(1234.0));
        assert_eq!(
            sink.find("daemon_served_total").map(MetricFamily::kind),
            Some(MetricKind::Counter)
        );
        assert_eq!(
            value(
                &sink,
                "daemon_provider_seconds",
                &[("source", "http"), ("provider", "glm")]
            ),
            Some(0.25)
        );
        assert!(sink.find("daemon_missing").is_none());
    }

    #[test]
    fn uptimes_and_timestamps() {
        let o = |v: Value| v.as_object().cloned().expect("object");
        assert_eq!(uptime(&o(json!({"uptime": "2h 5m"}))), Some(7500.0));
        assert_eq!(uptime(&o(json!({"uptime_ms": 1500}))), Some(1.5));
        assert_eq!(uptime(&o(json!({"uptime": "12.5"}))), Some(12.5));
        assert_eq!(
            timestamp(&json!(1_795_341_600_000u64)),
            Some(1_795_341_600.0)
        );
    }
}
