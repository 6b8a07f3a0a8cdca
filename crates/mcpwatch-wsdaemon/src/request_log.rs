//! Following JSON-lines request logs (`.logs/*.jsonl`) into request counters and a duration
//! histogram.
//!
//! The files are followed by [`mcpwatch_core::follow::Follower`], rotation-safe (renames,
//! copytruncate), each record read once. Only complete lines are parsed; memory is bounded:
//! one partial line per file (at most `max_line_bytes`), at most `max_series` provider and
//! tool pairs (the rest count as `other`), a read budget per scrape, and a bounded number of
//! files and open handles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mcpwatch_core::follow::{FilePattern, Follower, Lines};
use mcpwatch_core::{HistogramValue, MetricSink};
use mcpwatch_mcp::{OperationTable, Outcome as McpOutcome};
use serde_json::Value;

use crate::config::RequestLogConfig;
use crate::mapping::label_value;

/// How a request ended; the `outcome` label. A client refused for its rate or its
/// credentials is told apart from a failure of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Error,
    Timeout,
    RateLimited,
    Unauthorized,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::Error,
        Outcome::Timeout,
        Outcome::RateLimited,
        Outcome::Unauthorized,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unauthorized => "unauthorized",
        }
    }
}

/// The `status_class` label: the class of a record's HTTP status, `none` without one.
const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index in [`STATUS_CLASSES`] of `status`.
fn status_class(status: Option<u16>) -> usize {
    status.map_or(0, |s| usize::from(s / 100))
}

/// Requests of one provider and tool.
#[derive(Debug)]
struct Series {
    provider: String,
    tool: String,
    /// Requests per status class and outcome.
    outcomes: [[u64; Outcome::ALL.len()]; STATUS_CLASSES.len()],
    /// The status classes seen: each has a series for every outcome, so that the first
    /// request of an outcome is seen by `rate()`.
    classes: [bool; STATUS_CLASSES.len()],
    /// Observations per bucket, the last one above every bound.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Counts from every record read.
#[derive(Debug)]
struct Stats {
    /// Records that carry the OpenTelemetry MCP attributes (`mcp.method.name`, ...), as
    /// the instrumentation of a Rust server counts them.
    operations: OperationTable,
    /// Such records without a duration.
    no_duration: u64,
    series: Vec<Series>,
    index: HashMap<(String, String), usize>,
    parsed: u64,
    invalid: u64,
    too_long: u64,
}

/// The followed files and what their records added up to.
#[derive(Debug)]
pub(crate) struct RequestLog {
    config: RequestLogConfig,
    follower: Follower,
    stats: Stats,
}

/// The records of one poll, counted into the statistics.
struct Records<'a> {
    stats: &'a mut Stats,
    config: &'a RequestLogConfig,
}

impl Lines for Records<'_> {
    fn line(&mut self, line: &[u8]) {
        self.stats.record(line, self.config);
    }

    fn too_long(&mut self) {
        self.stats.too_long += 1;
    }

    fn unfinished(&mut self) {
        self.stats.invalid += 1;
    }
}

impl RequestLog {
    /// Starts following: the files already there are read from their end, unless
    /// `read_existing` is set.
    pub(crate) fn new(config: RequestLogConfig) -> Result<Self, String> {
        let pattern = FilePattern::new(config.path.path())?;
        let follower = Follower::new(
            pattern,
            config.max_line_bytes as usize,
            config.read_existing,
        );
        let stats = Stats::new(config.max_series as usize);
        Ok(Self {
            config,
            follower,
            stats,
        })
    }

    /// Reads what was appended since the last call, stopping at `stop` (the rest is read
    /// by the next call).
    pub(crate) fn poll(&mut self, stop: Instant) {
        let mut records = Records {
            stats: &mut self.stats,
            config: &self.config,
        };
        self.follower.poll(stop, &mut records);
    }

    /// Files followed.
    pub(crate) fn files(&self) -> usize {
        self.follower.files()
    }

    /// Adds the counters, histogram and follower statistics to `sink`.
    pub(crate) fn metrics(&self, sink: &mut MetricSink) {
        let stats = &self.stats;
        if !stats.operations.is_empty() {
            stats.operations.collect_durations(sink);
        }
        let requests = sink.counter(
            "wsdaemon_requests_total",
            "Requests in the daemon's request log, by provider, tool, outcome (success, error, \
             timeout, rate_limited, unauthorized) and HTTP status class (none without a status).",
        );
        for series in &stats.series {
            for (class, name) in STATUS_CLASSES.iter().enumerate() {
                if !series.classes[class] {
                    continue;
                }
                for outcome in Outcome::ALL {
                    requests.add(
                        &[
                            ("provider", &series.provider),
                            ("tool", &series.tool),
                            ("outcome", outcome.as_str()),
                            ("status_class", name),
                        ],
                        series.outcomes[class][outcome as usize] as f64,
                    );
                }
            }
        }
        let durations = sink.histogram(
            "wsdaemon_request_duration_seconds",
            "Durations of the requests in the daemon's request log.",
        );
        let bounds = &self.config.buckets;
        for series in &stats.series {
            let buckets = bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(series.buckets.iter().copied())
                .collect();
            durations.add_histogram(
                &[("provider", &series.provider), ("tool", &series.tool)],
                HistogramValue {
                    buckets,
                    sum: series.sum,
                    count: series.count,
                },
            );
        }
        let lines = sink.counter(
            "wsdaemon_request_log_lines_total",
            "Lines read from the request log, by result: parsed, invalid (not a JSON object), \
             too_long, no_duration (an MCP operation record without its duration).",
        );
        lines.add(&[("result", "parsed")], stats.parsed as f64);
        lines.add(&[("result", "invalid")], stats.invalid as f64);
        lines.add(&[("result", "too_long")], stats.too_long as f64);
        lines.add(&[("result", "no_duration")], stats.no_duration as f64);
        sink.counter(
            "wsdaemon_request_log_read_bytes_total",
            "Bytes read from the request log.",
        )
        .add(&[], self.follower.bytes_read() as f64);
        sink.counter(
            "wsdaemon_request_log_rotations_total",
            "Request log rotations seen: a file truncated in place, or a new file under a name \
             that a followed file left.",
        )
        .add(&[], self.follower.rotations() as f64);
        sink.gauge(
            "wsdaemon_request_log_files",
            "Request log files followed: matching files that can be opened.",
        )
        .add(&[], self.files() as f64);
    }
}

/// A field by name, or by JSON pointer when the name starts with `/`.
fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    if name.starts_with('/') {
        record.pointer(name)
    } else {
        record.get(name)
    }
    .filter(|v| !v.is_null())
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) if !s.is_empty() => label_value(s),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "unknown".to_owned(),
    }
}

/// An HTTP status: a whole number from 100 to 599, or text that is such a number or starts
/// with one followed by a space (a status line's `"429 Too Many Requests"`, Go's
/// `resp.Status`).
fn as_status(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_f64().and_then(http_status),
        Value::String(s) => status_in_text(s),
        _ => None,
    }
}

/// `n` when it is a whole number from 100 to 599.
fn http_status(n: f64) -> Option<u16> {
    ((100.0..600.0).contains(&n) && n.fract() == 0.0).then_some(n as u16)
}

/// The HTTP status `text` is (`"429"`, `"429.0"`) or starts with (`"429 Too Many
/// Requests"`).
fn status_in_text(text: &str) -> Option<u16> {
    let text = text.trim();
    if let Ok(n) = text.parse::<f64>() {
        return http_status(n);
    }
    let (digits, rest) = text.split_at_checked(3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !rest.starts_with(char::is_whitespace) {
        return None;
    }
    digits
        .parse()
        .ok()
        .and_then(|n: u16| http_status(f64::from(n)))
}

/// The record's HTTP status: from `status_field`, else from the outcome field when it holds
/// one, else from `status_code` or `status`.
fn status(record: &Value, config: &RequestLogConfig) -> Option<u16> {
    match &config.status_field {
        Some(name) => field(record, name).and_then(as_status),
        None => [config.outcome_field.as_str(), "status_code", "status"]
            .into_iter()
            .find_map(|name| field(record, name).and_then(as_status)),
    }
}

/// The outcome by HTTP status: 429 is the client's rate limit, 401 and 403 its credentials,
/// not failures of the server.
fn by_status(status: u16) -> Outcome {
    match status {
        429 => Outcome::RateLimited,
        401 | 403 => Outcome::Unauthorized,
        400.. => Outcome::Error,
        _ => Outcome::Success,
    }
}

/// The outcome of a record whose HTTP status is `status`: a refusal of the client that the
/// status tells of (429, 401, 403) wins over the outcome field, unless that says timeout.
fn outcome(record: &Value, config: &RequestLogConfig, status: Option<u16>) -> Outcome {
    let said = outcome_field(record, config);
    match (said, status.map(by_status)) {
        (Some(Outcome::Timeout), _) => Outcome::Timeout,
        (_, Some(refused @ (Outcome::RateLimited | Outcome::Unauthorized))) => refused,
        (Some(said), _) => said,
        // No outcome field: the status tells, else a record with an error in it failed.
        (None, Some(by_status)) => by_status,
        (None, None) => match record.get("error") {
            None | Some(Value::Null | Value::Bool(false)) => Outcome::Success,
            Some(Value::String(s)) if s.is_empty() => Outcome::Success,
            Some(_) => Outcome::Error,
        },
    }
}

/// What the outcome field says, `None` without one (or with an object or a list): a success
/// value, `true`, an HTTP status (alone or at the start of a status line), a word of a
/// timeout, a rate limit or refused credentials; anything else (`false`, a number that is
/// no HTTP status and no success value) is an error.
fn outcome_field(record: &Value, config: &RequestLogConfig) -> Option<Outcome> {
    let success = |text: &str| {
        config
            .success_values
            .iter()
            .any(|v| v.eq_ignore_ascii_case(text))
    };
    let outcome = match field(record, &config.outcome_field)? {
        Value::Bool(true) => Outcome::Success,
        Value::Bool(false) => Outcome::Error,
        Value::Number(n) if success(&n.to_string()) => Outcome::Success,
        Value::Number(n) => n
            .as_f64()
            .and_then(http_status)
            .map_or(Outcome::Error, by_status),
        Value::String(s) => {
            let s = s.trim();
            let word = s.to_ascii_lowercase().replace(['_', '-', ' '], "");
            if success(s) {
                Outcome::Success
            } else if word.contains("timeout") || word.contains("timedout") {
                Outcome::Timeout
            } else if let Some(status) = status_in_text(s) {
                by_status(status)
            } else if ["ratelimit", "toomanyrequests", "throttled"]
                .iter()
                .any(|w| word.contains(w))
            {
                Outcome::RateLimited
            } else if [
                "unauthori",
                "unauthenticated",
                "forbidden",
                "permissiondenied",
            ]
            .iter()
            .any(|w| word.contains(w))
            {
                Outcome::Unauthorized
            } else {
                Outcome::Error
            }
        }
        // An object or a list is no outcome.
        Value::Array(_) | Value::Object(_) | Value::Null => return None,
    };
    Some(outcome)
}

/// A record's `error.type`, as text: a JSON-RPC code whether written as a number (`-32602`,
/// `-32602.0`), a string or an object with a `code` (a logged error object); `false` or
/// `null` is no error; anything else is a failure of no known kind.
fn error_type(value: Option<&Value>) -> Option<String> {
    let code = |n: &serde_json::Number| {
        n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        })
    };
    match value? {
        Value::Bool(false) | Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(code(n).map_or_else(|| "_OTHER".to_owned(), |c| c.to_string())),
        Value::Object(o) => Some(
            o.get("code")
                .and_then(Value::as_number)
                .and_then(code)
                .map_or_else(|| "_OTHER".to_owned(), |c| c.to_string()),
        ),
        Value::Bool(true) | Value::Array(_) => Some("_OTHER".to_owned()),
    }
}

/// The attributes of a record in the OpenTelemetry MCP conventions, at its top level or
/// under `attributes` (as OpenTelemetry log records carry them).
fn attribute<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    record
        .get(name)
        .or_else(|| record.get("attributes").and_then(|a| a.get(name)))
        .filter(|v| !v.is_null())
}

impl Stats {
    fn new(max_names: usize) -> Self {
        Self {
            operations: OperationTable::learning(max_names),
            no_duration: 0,
            series: Vec::new(),
            index: HashMap::new(),
            parsed: 0,
            invalid: 0,
            too_long: 0,
        }
    }

    /// Counts a record that names its MCP method: into the same series a Rust server's
    /// instrumentation makes, with its error type and revision.
    fn operation(&mut self, record: &Value, method: &str, seconds: f64) {
        let text = |name: &str| attribute(record, name).and_then(Value::as_str);
        let name = if method == "prompts/get" {
            text("gen_ai.prompt.name")
        } else {
            text("gen_ai.tool.name")
        };
        let error = error_type(attribute(record, "error.type"));
        let key = self
            .operations
            .learn_key(method, name, text("mcp.protocol.version"));
        let elapsed = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
        self.operations
            .observe(key, McpOutcome::parse(error.as_deref()), elapsed);
    }

    fn record(&mut self, line: &[u8], config: &RequestLogConfig) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        let record = match serde_json::from_slice::<Value>(line) {
            Ok(record @ Value::Object(_)) => record,
            _ => {
                self.invalid += 1;
                return;
            }
        };
        self.parsed += 1;
        let duration = field(&record, &config.duration_field)
            .and_then(|v| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .map(|d| d * config.duration_unit.seconds())
            .filter(|d| d.is_finite() && *d >= 0.0);
        let method = attribute(&record, "mcp.method.name");
        if method.is_some_and(|m| !m.is_string()) {
            // Named, but not as text: not a record this follower can read.
            self.parsed -= 1;
            self.invalid += 1;
            return;
        }
        if let Some(method) = method.and_then(Value::as_str) {
            // Without its duration an operation cannot be placed in the histogram (its
            // count is the request rate): it is counted apart, not as 0 s.
            match duration {
                Some(seconds) => {
                    let method = method.to_owned();
                    self.operation(&record, &method, seconds);
                }
                None => {
                    self.parsed -= 1;
                    self.no_duration += 1;
                }
            }
            return;
        }
        let provider = text(field(&record, &config.provider_field));
        let tool = text(field(&record, &config.tool_field));
        let status = status(&record, config);
        let outcome = outcome(&record, config, status);
        let class = status_class(status);
        let at = self.series_index(provider, tool, config);
        let series = &mut self.series[at];
        series.classes[class] = true;
        series.outcomes[class][outcome as usize] += 1;
        if let Some(seconds) = duration {
            let bucket = config
                .buckets
                .iter()
                .position(|bound| seconds <= *bound)
                .unwrap_or(config.buckets.len());
            series.buckets[bucket] += 1;
            series.sum += seconds;
            series.count += 1;
        }
    }

    /// The series of a provider and tool; past `max_series`, the shared `other` one.
    fn series_index(&mut self, provider: String, tool: String, config: &RequestLogConfig) -> usize {
        let key = (provider, tool);
        if let Some(&at) = self.index.get(&key) {
            return at;
        }
        let key = if self.series.len() < config.max_series as usize {
            key
        } else {
            let other = ("other".to_owned(), "other".to_owned());
            if let Some(&at) = self.index.get(&other) {
                return at;
            }
            other
        };
        self.series.push(Series {
            provider: key.0.clone(),
            tool: key.1.clone(),
            outcomes: [[0; Outcome::ALL.len()]; STATUS_CLASSES.len()],
            classes: [false; STATUS_CLASSES.len()],
            buckets: vec![0; config.buckets.len() + 1],
            sum: 0.0,
            count: 0,
        });
        self.index.insert(key, self.series.len() - 1);
        self.series.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop no test reaches.
    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(3600)
    }
    use mcpwatch_core::config::parse_yaml;
    use std::fs::File;
    use std::io::Write;
    use std::path::Path;

    fn config(dir: &Path, extra: &str) -> RequestLogConfig {
        parse_yaml(
            &format!("path: {}/*.jsonl\n{extra}", dir.display()),
            Path::new("c.yml"),
        )
        .expect("config")
    }

    fn append(path: &Path, text: &str) {
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn record(provider: &str, tool: &str, status: &str, ms: u32) -> String {
        format!(
            "{{\"ts\":\"2026-11-22T10:00:00Z\",\"provider\":\"{provider}\",\"tool\":\"{tool}\",\
             \"status\":\"{status}\",\"duration_ms\":{ms}}}\n"
        )
    }

    fn count(log: &RequestLog, provider: &str, tool: &str, outcome: Outcome) -> u64 {
        log.stats
            .series
            .iter()
            .find(|s| s.provider == provider && s.tool == tool)
            .map_or(0, |s| s.outcomes.iter().map(|c| c[outcome as usize]).sum())
    }

    #[test]
    fn tails_existing_files_and_counts_what_is_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        append(&path, &record("glm", "chat", "success", 100));
        // The collector starts while a line is half-written: that fragment is not a record.
        append(&path, "{\"provider\":\"glm\",\"tool\":\"ch");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        log.poll(later());
        assert_eq!(log.stats.parsed, 0, "existing lines are not counted");
        append(&path, "at\"}\n");
        append(&path, &record("glm", "chat", "success", 100));
        append(&path, &record("glm", "chat", "error", 3000));
        append(&path, &record("kimi", "search", "timeout", 30_000));
        log.poll(later());
        assert_eq!(log.stats.parsed, 3);
        assert_eq!(log.stats.invalid, 0);
        assert_eq!(count(&log, "glm", "chat", Outcome::Success), 1);
        assert_eq!(count(&log, "glm", "chat", Outcome::Error), 1);
        assert_eq!(count(&log, "kimi", "search", Outcome::Timeout), 1);
        let glm = &log.stats.series[0];
        assert_eq!(glm.count, 2);
        assert!((glm.sum - 3.1).abs() < 1e-9);
        // 0.1 s is in the 0.1 bucket (index 1), 3 s in the 5 s bucket (index 6).
        assert_eq!((glm.buckets[1], glm.buckets[6]), (1, 1));
    }

    #[test]
    fn half_written_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        let line = record("glm", "chat", "success", 5);
        append(&path, &line[..20]);
        log.poll(later());
        assert_eq!((log.stats.parsed, log.stats.invalid), (0, 0));
        append(&path, &line[20..]);
        log.poll(later());
        assert_eq!((log.stats.parsed, log.stats.invalid), (1, 0));
        append(&path, "not json\n\n");
        log.poll(later());
        assert_eq!((log.stats.parsed, log.stats.invalid), (1, 1));
    }

    #[test]
    fn rotation_by_rename_and_by_truncation_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        append(&path, &record("glm", "chat", "success", 1));
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &record("glm", "chat", "success", 1));
        log.poll(later());
        assert_eq!(log.stats.parsed, 1);

        // Written, then rotated away before the next scrape, then written again by a
        // writer that still holds the old file, and into the new file.
        append(&path, &record("glm", "chat", "success", 1));
        let rotated = dir.path().join("requests.jsonl.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        append(&rotated, &record("glm", "chat", "error", 1));
        append(&path, &record("glm", "chat", "success", 1));
        append(&path, &record("glm", "chat", "success", 1));
        log.poll(later());
        assert_eq!(count(&log, "glm", "chat", Outcome::Success), 4);
        assert_eq!(count(&log, "glm", "chat", Outcome::Error), 1);
        log.poll(later());
        log.poll(later());
        assert_eq!(log.follower.files(), 1, "the rotated file is let go");
        assert_eq!(log.follower.rotations(), 1);
        assert_eq!(log.stats.parsed, 5);

        // copytruncate
        std::fs::write(&path, "").expect("truncate");
        append(&path, &record("kimi", "chat", "success", 1));
        log.poll(later());
        assert_eq!(count(&log, "kimi", "chat", Outcome::Success), 1);
        assert_eq!(log.stats.parsed, 6);
        log.poll(later());
        assert_eq!(log.stats.parsed, 6, "nothing is read twice");
    }

    /// Records `from..to`, each with its number: lines of different lengths.
    fn numbered(from: u32, to: u32) -> String {
        (from..to)
            .map(|n| record("glm", "chat", "success", n))
            .collect()
    }

    /// logrotate's copytruncate: a copy, then the file truncated in place.
    fn copytruncate(path: &Path, copy: &Path) {
        std::fs::copy(path, copy).expect("copy");
        File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
    }

    fn counts(log: &RequestLog) -> (u64, u64, u64) {
        (
            log.stats.parsed,
            log.stats.invalid,
            log.follower.rotations(),
        )
    }

    #[test]
    fn copytruncate_then_more_bytes_than_before_is_read_from_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let copy = dir.path().join("requests.jsonl.1");
        // Followed from its end: the first 50 records are not counted.
        append(&path, &numbered(0, 50));
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &numbered(50, 190));
        log.poll(later());
        assert_eq!(counts(&log), (140, 0, 0));

        // Truncated, then more bytes written than the file had before the next scrape.
        copytruncate(&path, &copy);
        append(&path, &numbered(190, 400));
        log.poll(later());
        assert_eq!(counts(&log), (350, 0, 1));

        // Again, with fewer bytes.
        copytruncate(&path, &copy);
        append(&path, &numbered(400, 410));
        log.poll(later());
        assert_eq!(counts(&log), (360, 0, 2));
        log.poll(later());
        assert_eq!(counts(&log), (360, 0, 2), "nothing is read twice");
        assert_eq!(count(&log, "glm", "chat", Outcome::Success), 360);
    }

    #[test]
    fn copytruncate_of_lines_sharing_a_long_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        // Every line starts with the same 6000 bytes and has the same length: the first
        // bytes of the file are the same after the truncation.
        let line = |n: u32| {
            format!(
                "{{\"service\":\"{}\",\"provider\":\"glm\",\"tool\":\"chat\",\"status\":\"ok\",\"seq\":\"{n:06}\"}}\n",
                "x".repeat(6000)
            )
        };
        let lines = |from: u32, to: u32| (from..to).map(line).collect::<String>();
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &lines(0, 100));
        log.poll(later());
        assert_eq!(counts(&log), (100, 0, 0));
        copytruncate(&path, &dir.path().join("requests.jsonl.1"));
        append(&path, &lines(100, 250));
        log.poll(later());
        assert_eq!(counts(&log), (250, 0, 1));
        log.poll(later());
        assert_eq!(counts(&log), (250, 0, 1));
    }

    #[test]
    fn a_copy_the_pattern_matches_is_read_on_from_where_the_original_was_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        // logrotate's `extension .jsonl`: the copy matches the pattern too.
        let copy = dir.path().join("requests.1.jsonl");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &numbered(0, 20));
        let half = record("glm", "chat", "success", 20);
        append(&path, &half[..30]);
        log.poll(later());
        assert_eq!(counts(&log), (20, 0, 0), "the half line waits");

        // The line is finished and five more written, then the file is copied and
        // truncated before the next scrape: those six are only in the copy.
        append(&path, &half[30..]);
        append(&path, &numbered(21, 26));
        copytruncate(&path, &copy);
        append(&path, &numbered(26, 36));
        log.poll(later());
        assert_eq!(counts(&log), (36, 0, 1));
        log.poll(later());
        assert_eq!(counts(&log), (36, 0, 1), "the copy is not read again");

        // The next rotation renames the old copy away (same file) and makes a new one.
        append(&path, &numbered(36, 40));
        std::fs::rename(&copy, dir.path().join("requests.2.jsonl")).expect("rename");
        copytruncate(&path, &copy);
        append(&path, &numbered(40, 41));
        log.poll(later());
        assert_eq!(counts(&log), (41, 0, 2));
        assert_eq!(count(&log, "glm", "chat", Outcome::Success), 41);
    }

    #[test]
    fn a_copy_seen_before_the_truncation_waits_for_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let copy = dir.path().join("requests.1.jsonl");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &numbered(0, 20));
        log.poll(later());
        append(&path, &numbered(20, 25));
        // The scrape comes while logrotate copies: 22 records copied so far.
        let copied: String = numbered(0, 22);
        std::fs::write(&copy, &copied).expect("copy, first part");
        log.poll(later());
        assert_eq!(
            counts(&log),
            (25, 0, 0),
            "the copy's records are not counted twice"
        );
        // One more record reaches the original before the copy ends, then the truncation.
        append(&path, &numbered(25, 26));
        append(&copy, &numbered(22, 26));
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .expect("truncate");
        append(&path, &numbered(26, 29));
        log.poll(later());
        assert_eq!(counts(&log), (29, 0, 1));
        log.poll(later());
        assert_eq!(counts(&log), (29, 0, 1));
    }

    #[test]
    fn a_plain_copy_of_a_followed_file_is_not_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &numbered(0, 30));
        log.poll(later());
        // A backup the pattern matches, taken while the log goes on.
        std::fs::copy(&path, dir.path().join("backup.jsonl")).expect("cp");
        append(&path, &numbered(30, 35));
        log.poll(later());
        log.poll(later());
        assert_eq!(counts(&log), (35, 0, 0));
        // A later copytruncate still finds its own copy.
        append(&path, &numbered(35, 40));
        copytruncate(&path, &dir.path().join("requests.1.jsonl"));
        append(&path, &numbered(40, 42));
        log.poll(later());
        assert_eq!(counts(&log), (42, 0, 1));
        // The original is deleted: the backup is taken as read, not read now.
        std::fs::remove_file(&path).expect("rm");
        for _ in 0..4 {
            log.poll(later());
        }
        assert_eq!(counts(&log), (42, 0, 1));
    }

    #[test]
    fn renames_count_once_per_rotation_even_several_between_scrapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let name = |n: u32| dir.path().join(format!("requests.{n}.jsonl"));
        // As logrotate's `create` with `extension .jsonl`: every file matches.
        let rotate = |kept: u32| {
            for n in (1..kept).rev() {
                if name(n).exists() {
                    std::fs::rename(name(n), name(n + 1)).expect("shift");
                }
            }
            std::fs::rename(&path, name(1)).expect("rotate");
            File::create(&path).expect("create");
        };
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &numbered(0, 10));
        log.poll(later());
        rotate(5);
        append(&path, &numbered(10, 20));
        log.poll(later());
        assert_eq!(counts(&log), (20, 0, 1));
        // Two rotations between scrapes, records in each file.
        append(&path, &numbered(20, 25));
        rotate(5);
        append(&path, &numbered(25, 30));
        rotate(5);
        append(&path, &numbered(30, 35));
        log.poll(later());
        assert_eq!(counts(&log), (35, 0, 3));
        log.poll(later());
        log.poll(later());
        assert_eq!(counts(&log), (35, 0, 3));
    }

    #[test]
    fn a_new_file_appearing_late_after_a_rename_counts_one_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &numbered(0, 10));
        log.poll(later());
        let rotated = dir.path().join("requests.jsonl.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        append(&rotated, &numbered(10, 12));
        for _ in 0..4 {
            log.poll(later());
        }
        assert_eq!(log.follower.files(), 0, "the renamed file is let go");
        assert_eq!(counts(&log).0, 12);
        append(&path, &numbered(12, 15));
        log.poll(later());
        assert_eq!(counts(&log), (15, 0, 1));
    }

    #[test]
    fn a_file_under_two_names_is_read_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        // Appear after the start: a file and a link to it, both matched.
        let file = dir.path().join("requests-2.jsonl");
        append(&file, &numbered(0, 5));
        std::os::unix::fs::symlink(&file, dir.path().join("current.jsonl")).expect("symlink");
        std::fs::hard_link(&file, dir.path().join("hard.jsonl")).expect("hard link");
        for round in 1..=4 {
            append(&file, &numbered(round * 10, round * 10 + 10));
            log.poll(later());
            assert_eq!(log.follower.files(), 1);
            assert_eq!(log.stats.parsed, u64::from(5 + round * 10), "round {round}");
        }
        assert_eq!(log.follower.rotations(), 0);
    }

    #[test]
    fn a_file_empty_at_the_start_and_renamed_away_is_read_to_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        append(&path, "");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        log.poll(later());
        log.poll(later());
        // Written, rotated by renaming out of the pattern, written again by the writer that
        // holds the old file, then into the new one; all before the next scrape.
        append(&path, &numbered(0, 30));
        let rotated = dir.path().join("requests.jsonl.1");
        std::fs::rename(&path, &rotated).expect("rename");
        append(&rotated, &numbered(30, 32));
        append(&path, &numbered(32, 42));
        log.poll(later());
        assert_eq!(counts(&log), (42, 0, 1));
    }

    #[test]
    fn a_backlog_is_read_until_the_stop_and_the_rest_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &numbered(0, 100));
        log.poll(Instant::now());
        assert_eq!(counts(&log), (0, 0, 0), "the stop has passed: nothing read");
        log.poll(later());
        assert_eq!(counts(&log), (100, 0, 0));
    }

    #[test]
    fn bounded_lines_and_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        let mut log = RequestLog::new(config(
            dir.path(),
            "max_line_bytes: 200\nmax_series: 2\nread_existing: true\n",
        ))
        .expect("log");
        append(
            &path,
            &format!("{{\"provider\":\"{}\"}}\n", "x".repeat(500)),
        );
        for p in ["a", "b", "c", "d"] {
            append(&path, &record(p, "t", "ok", 1));
        }
        log.poll(later());
        assert_eq!(log.stats.too_long, 1);
        assert_eq!(log.stats.parsed, 4);
        assert_eq!(log.stats.series.len(), 3);
        assert_eq!(count(&log, "other", "other", Outcome::Success), 2);
    }

    #[test]
    fn error_types_from_every_way_a_log_writes_them() {
        let e = |v: Value| error_type(Some(&v));
        assert_eq!(e(serde_json::json!(-32602)), Some("-32602".into()));
        assert_eq!(e(serde_json::json!(-32602.0)), Some("-32602".into()));
        assert_eq!(
            e(serde_json::json!("tool_error")),
            Some("tool_error".into())
        );
        assert_eq!(
            e(serde_json::json!({"code": -32603, "message": "x"})),
            Some("-32603".into())
        );
        assert_eq!(
            e(serde_json::json!({"message": "x"})),
            Some("_OTHER".into())
        );
        assert_eq!(e(serde_json::json!(true)), Some("_OTHER".into()));
        assert_eq!(e(serde_json::json!(false)), None);
        assert_eq!(e(Value::Null), None);
        assert_eq!(error_type(None), None);
    }

    #[test]
    fn outcomes_from_every_kind_of_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path(), "");
        let o = |v: Value| outcome(&v, &c, status(&v, &c));
        assert_eq!(
            o(serde_json::json!({"status": "SUCCESS"})),
            Outcome::Success
        );
        assert_eq!(o(serde_json::json!({"status": "failed"})), Outcome::Error);
        assert_eq!(
            o(serde_json::json!({"status": "timed_out"})),
            Outcome::Timeout
        );
        assert_eq!(o(serde_json::json!({"status": 200})), Outcome::Success);
        assert_eq!(o(serde_json::json!({"status": 502})), Outcome::Error);
        assert_eq!(o(serde_json::json!({"status": true})), Outcome::Success);
        assert_eq!(o(serde_json::json!({"error": "boom"})), Outcome::Error);
        assert_eq!(o(serde_json::json!({"error": null})), Outcome::Success);
        let c = config(dir.path(), "outcome_field: /result/ok\n");
        let v = serde_json::json!({"result": {"ok": false}});
        assert_eq!(outcome(&v, &c, status(&v, &c)), Outcome::Error);
    }

    #[test]
    fn statuses_and_refusals_of_the_client() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path(), "");
        let o = |v: Value| (outcome(&v, &c, status(&v, &c)), status(&v, &c));
        use serde_json::json;
        assert_eq!(o(json!({"status": 429})), (Outcome::RateLimited, Some(429)));
        assert_eq!(
            o(json!({"status": "401"})),
            (Outcome::Unauthorized, Some(401))
        );
        assert_eq!(
            o(json!({"status": 403.0})),
            (Outcome::Unauthorized, Some(403))
        );
        assert_eq!(o(json!({"status": 503})), (Outcome::Error, Some(503)));
        assert_eq!(o(json!({"status": 404})), (Outcome::Error, Some(404)));
        assert_eq!(o(json!({"status": 302})), (Outcome::Success, Some(302)));
        // The status in a field of its own refines the outcome field's word.
        assert_eq!(
            o(json!({"status": "error", "status_code": 429})),
            (Outcome::RateLimited, Some(429))
        );
        assert_eq!(
            o(json!({"status": "error", "status_code": 500})),
            (Outcome::Error, Some(500))
        );
        assert_eq!(
            o(json!({"status": "timeout", "status_code": 504})),
            (Outcome::Timeout, Some(504))
        );
        // Without an outcome field the status tells.
        assert_eq!(o(json!({"status_code": 503})), (Outcome::Error, Some(503)));
        assert_eq!(
            o(json!({"status_code": 200})),
            (Outcome::Success, Some(200))
        );
        // Words.
        assert_eq!(
            o(json!({"status": "rate_limited"})),
            (Outcome::RateLimited, None)
        );
        assert_eq!(
            o(json!({"status": "Too Many Requests"})),
            (Outcome::RateLimited, None)
        );
        assert_eq!(
            o(json!({"status": "forbidden"})),
            (Outcome::Unauthorized, None)
        );
        assert_eq!(
            o(json!({"status": "unauthorized"})),
            (Outcome::Unauthorized, None)
        );
        // Not statuses.
        assert_eq!(o(json!({"status": 1})).1, None);
        assert_eq!(o(json!({"status": 200.5})).1, None);
        assert_eq!(o(json!({"status": "success"})).1, None);
        let c = config(dir.path(), "status_field: /http/code\n");
        let v = json!({"status": "failed", "status_code": 429, "http": {"code": 401}});
        assert_eq!(
            (outcome(&v, &c, status(&v, &c)), status(&v, &c)),
            (Outcome::Unauthorized, Some(401))
        );
    }

    #[test]
    fn status_lines_timeouts_and_numbers_that_are_no_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path(), "");
        let o = |v: Value| {
            let status = status(&v, &c);
            (
                outcome(&v, &c, status),
                STATUS_CLASSES[status_class(status)],
            )
        };
        use serde_json::json;
        // A status with its reason phrase (Go's `resp.Status`), in the outcome field or in
        // a status field of its own.
        assert_eq!(o(json!({"status": "200 OK"})), (Outcome::Success, "2xx"));
        assert_eq!(
            o(json!({"status": "503 Service Unavailable"})),
            (Outcome::Error, "5xx")
        );
        assert_eq!(
            o(json!({"status": "429 Too Many Requests"})),
            (Outcome::RateLimited, "4xx")
        );
        assert_eq!(
            o(json!({"status": "401 Unauthorized"})),
            (Outcome::Unauthorized, "4xx")
        );
        assert_eq!(
            o(json!({"status": "error", "status_code": "429 Too Many Requests"})),
            (Outcome::RateLimited, "4xx")
        );
        assert_eq!(
            o(json!({"status_code": "503 Service Unavailable"})),
            (Outcome::Error, "5xx")
        );
        assert_eq!(
            o(json!({"status_code": " 204 "})),
            (Outcome::Success, "2xx")
        );
        assert_eq!(
            o(json!({"status": "504 Gateway Timeout"})),
            (Outcome::Timeout, "5xx")
        );
        // Not a status line: no status, the words tell.
        assert_eq!(o(json!({"status": "2000 OK"})), (Outcome::Error, "none"));
        assert_eq!(o(json!({"status": "200OK"})), (Outcome::Error, "none"));
        assert_eq!(o(json!({"status": "600 Odd"})), (Outcome::Error, "none"));
        // The outcome field saying timeout wins over a refusal the status tells of.
        assert_eq!(
            o(json!({"status": "timeout", "status_code": 429})),
            (Outcome::Timeout, "4xx")
        );
        assert_eq!(
            o(json!({"status": "timed out", "status_code": 401})),
            (Outcome::Timeout, "4xx")
        );
        assert_eq!(
            o(json!({"status": "success", "status_code": 403})),
            (Outcome::Unauthorized, "4xx")
        );
        // A number that is no HTTP status and no success value is an error.
        for status in [
            json!(1),
            json!(-1),
            json!(0),
            json!(600),
            json!(999),
            json!(99),
        ] {
            assert_eq!(
                o(json!({ "status": status })),
                (Outcome::Error, "none"),
                "{status}"
            );
        }
        for status in ["1", "-1", "600", "999", "NaN", "inf", "-inf", "1e3"] {
            assert_eq!(
                o(json!({ "status": status })),
                (Outcome::Error, "none"),
                "{status}"
            );
        }
        assert_eq!(o(json!({"status": 200.0})), (Outcome::Success, "2xx"));
        assert_eq!(o(json!({"status": "200.0"})), (Outcome::Success, "2xx"));
        // A number among the success values is one.
        let c = config(dir.path(), "success_values: [\"1\", ok]\n");
        let o = |v: Value| {
            let status = status(&v, &c);
            (
                outcome(&v, &c, status),
                STATUS_CLASSES[status_class(status)],
            )
        };
        assert_eq!(o(json!({"status": 1})), (Outcome::Success, "none"));
        assert_eq!(o(json!({"status": "1"})), (Outcome::Success, "none"));
        assert_eq!(o(json!({"status": 2})), (Outcome::Error, "none"));
        // An object in the outcome field is no outcome: the status tells.
        assert_eq!(
            o(json!({"status": {"x": 1}, "status_code": 502})),
            (Outcome::Error, "5xx")
        );
        assert_eq!(o(json!({"status": [1]})), (Outcome::Success, "none"));
    }

    #[test]
    fn every_status_class_of_a_series_has_every_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        let line = |status: &str| {
            format!(
                "{{\"provider\":\"glm\",\"tool\":\"chat\",\"status\":{status},\"duration_ms\":5}}\n"
            )
        };
        for (status, n) in [
            ("200", 7),
            ("429", 3),
            ("401", 2),
            ("403", 1),
            ("503", 4),
            ("\"ok\"", 5),
        ] {
            for _ in 0..n {
                append(&path, &line(status));
            }
        }
        log.poll(later());
        let mut sink = MetricSink::default();
        log.metrics(&mut sink);
        let requests = sink.find("wsdaemon_requests_total").expect("requests");
        let v = |outcome: &str, class: &str| {
            requests.value(&[
                ("provider", "glm"),
                ("tool", "chat"),
                ("outcome", outcome),
                ("status_class", class),
            ])
        };
        assert_eq!(v("success", "2xx"), Some(7.0));
        assert_eq!(v("rate_limited", "4xx"), Some(3.0));
        assert_eq!(v("unauthorized", "4xx"), Some(3.0));
        assert_eq!(v("error", "5xx"), Some(4.0));
        assert_eq!(v("success", "none"), Some(5.0));
        assert_eq!(v("error", "4xx"), Some(0.0), "declared for rate()");
        assert_eq!(v("timeout", "5xx"), Some(0.0));
        assert_eq!(v("success", "3xx"), None, "no 3xx seen");
        // Four classes seen, five outcomes each.
        assert_eq!(requests.samples().len(), 20);
        assert_eq!(log.stats.parsed, 22);
    }
}
