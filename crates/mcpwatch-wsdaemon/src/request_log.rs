//! Following JSON-lines request logs (`.logs/*.jsonl`) into request counters and a duration
//! histogram.
//!
//! Files are known by device and inode, not by name, and each is read from where the last
//! scrape stopped, so nothing is read twice:
//!
//! - files there when the collector starts are read from their end (or from their start
//!   with `read_existing`); files that appear later, such as the new file after a rotation,
//!   are read from their start;
//! - a file renamed away or deleted is read to its end through the handle still open on it,
//!   so records written just before a rotation are counted; it is let go once it stops
//!   growing;
//! - a file truncated in place (copytruncate) is read again from its start;
//! - only complete lines are parsed: a half-written last line waits for its newline;
//! - memory is bounded: one partial line per file (at most `max_line_bytes`), at most
//!   `max_series` provider and tool pairs (the rest count as `other`), a read budget per
//!   scrape, and a bounded number of files and open handles.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mcpwatch_core::config::Pattern;
use mcpwatch_core::{HistogramValue, MetricSink};
use serde_json::Value;

use crate::config::RequestLogConfig;
use crate::mapping::label_value;

/// Bytes read at most per scrape; the rest waits for the next one.
const READ_BUDGET: u64 = 32 << 20;
/// Files followed at most: the most recently written ones.
const MAX_FILES: usize = 256;
/// Handles kept open at most; idle files beyond this are closed and opened again when they
/// grow.
const MAX_OPEN: usize = 32;
/// Scrapes without growth after which a file gone from the directory is let go.
const GONE_IDLE_SCANS: u32 = 2;
const CHUNK: usize = 64 * 1024;

/// A file, or a pattern of names (`*` and `?` as in a shell) in one directory.
#[derive(Debug, Clone)]
pub(crate) struct FilePattern {
    dir: PathBuf,
    name: Pattern,
}

impl FilePattern {
    /// Checks `path`: wildcards only in the file name.
    pub(crate) fn new(path: &Path) -> Result<Self, String> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| "give a file name or a pattern of file names".to_owned())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if dir.to_string_lossy().contains(['*', '?']) {
            return Err("wildcards are allowed in the file name only".to_owned());
        }
        let mut regex = String::from("^");
        for c in name.chars() {
            match c {
                '*' => regex.push_str("[^/]*"),
                '?' => regex.push_str("[^/]"),
                c => regex.push_str(&regex_lite::escape(&c.to_string())),
            }
        }
        regex.push('$');
        Ok(Self {
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_owned()
            },
            name: Pattern::new(&regex).map_err(|e| e.to_string())?,
        })
    }

    /// Regular files that match, the most recently modified last, at most [`MAX_FILES`].
    fn list(&self) -> Vec<(PathBuf, Metadata)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(PathBuf, Metadata)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| self.name.is_match(n))
            })
            .filter_map(|e| {
                let path = e.path();
                // Follows symbolic links, as `tail -F` does.
                let meta = std::fs::metadata(&path).ok()?;
                meta.is_file().then_some((path, meta))
            })
            .collect();
        files.sort_by_key(|(_, m)| m.modified().ok());
        let excess = files.len().saturating_sub(MAX_FILES);
        files.drain(..excess);
        files
    }
}

/// One file followed by identity.
#[derive(Debug)]
struct Followed {
    id: (u64, u64),
    path: PathBuf,
    file: Option<File>,
    /// Bytes consumed (the partial line included).
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// Inside a line being dropped (too long, or cut by starting at the end of the file).
    discarding: bool,
    /// Whether the last listing showed it.
    present: bool,
    /// Scrapes since it last grew.
    idle: u32,
}

/// How a request ended; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Error,
    Timeout,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Error, Outcome::Timeout];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Requests of one provider and tool.
#[derive(Debug)]
struct Series {
    provider: String,
    tool: String,
    outcomes: [u64; 3],
    /// Observations per bucket, the last one above every bound.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Counts from every record read.
#[derive(Debug, Default)]
struct Stats {
    series: Vec<Series>,
    index: HashMap<(String, String), usize>,
    parsed: u64,
    invalid: u64,
    too_long: u64,
    bytes: u64,
    rotations: u64,
}

/// The followed files and what their records added up to.
#[derive(Debug)]
pub(crate) struct RequestLog {
    config: RequestLogConfig,
    pattern: FilePattern,
    files: Vec<Followed>,
    stats: Stats,
}

impl RequestLog {
    /// Starts following: the files already there are read from their end, unless
    /// `read_existing` is set.
    pub(crate) fn new(config: RequestLogConfig) -> Result<Self, String> {
        let pattern = FilePattern::new(config.path.path())?;
        let mut log = Self {
            config,
            pattern,
            files: Vec::new(),
            stats: Stats::default(),
        };
        if !log.config.read_existing {
            for (path, meta) in log.pattern.list() {
                let discarding = !ends_with_newline(&path, meta.len());
                log.files.push(Followed {
                    id: (meta.dev(), meta.ino()),
                    path,
                    file: None,
                    offset: meta.len(),
                    partial: Vec::new(),
                    discarding,
                    present: true,
                    idle: 0,
                });
            }
        }
        Ok(log)
    }

    /// Reads what was appended since the last call.
    pub(crate) fn poll(&mut self) {
        for followed in &mut self.files {
            followed.present = false;
        }
        for (path, meta) in self.pattern.list() {
            let id = (meta.dev(), meta.ino());
            match self.files.iter_mut().find(|f| f.id == id) {
                Some(followed) => {
                    followed.present = true;
                    followed.path = path;
                    if meta.len() < followed.offset {
                        // Truncated in place: what is there now is new.
                        followed.offset = 0;
                        followed.partial.clear();
                        followed.discarding = false;
                        self.stats.rotations += 1;
                    }
                    if meta.len() > followed.offset && followed.file.is_none() {
                        followed.file = open_same(&followed.path, id);
                    }
                }
                None => self.files.push(Followed {
                    id,
                    file: open_same(&path, id),
                    path,
                    offset: 0,
                    partial: Vec::new(),
                    discarding: false,
                    present: true,
                    idle: 0,
                }),
            }
        }
        let mut budget = READ_BUDGET;
        let Self {
            config,
            files,
            stats,
            ..
        } = self;
        for followed in files.iter_mut() {
            let read = read_new(followed, &mut budget, config, stats);
            followed.idle = if read > 0 { 0 } else { followed.idle + 1 };
        }
        files.retain(|followed| {
            let keep =
                followed.present || (followed.file.is_some() && followed.idle < GONE_IDLE_SCANS);
            if !keep {
                // Renamed away or deleted, and read to its end.
                stats.rotations += 1;
                if !followed.partial.is_empty() {
                    stats.invalid += 1;
                }
            }
            keep
        });
        // Bounded handles: the longest idle of the files still there are closed first.
        let open = files.iter().filter(|f| f.file.is_some()).count();
        if open > MAX_OPEN {
            let mut idle: Vec<&mut Followed> = files
                .iter_mut()
                .filter(|f| f.file.is_some() && f.present)
                .collect();
            idle.sort_by_key(|f| std::cmp::Reverse(f.idle));
            for followed in idle.into_iter().take(open - MAX_OPEN) {
                followed.file = None;
            }
        }
    }

    /// Files followed.
    pub(crate) fn files(&self) -> usize {
        self.files.len()
    }

    /// Adds the counters, histogram and follower statistics to `sink`.
    pub(crate) fn metrics(&self, sink: &mut MetricSink) {
        let stats = &self.stats;
        let requests = sink.counter(
            "wsdaemon_requests_total",
            "Requests in the daemon's request log, by provider, tool and outcome.",
        );
        for series in &stats.series {
            for outcome in Outcome::ALL {
                requests.add(
                    &[
                        ("provider", &series.provider),
                        ("tool", &series.tool),
                        ("outcome", outcome.as_str()),
                    ],
                    series.outcomes[outcome as usize] as f64,
                );
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
             too_long.",
        );
        lines.add(&[("result", "parsed")], stats.parsed as f64);
        lines.add(&[("result", "invalid")], stats.invalid as f64);
        lines.add(&[("result", "too_long")], stats.too_long as f64);
        sink.counter(
            "wsdaemon_request_log_read_bytes_total",
            "Bytes read from the request log.",
        )
        .add(&[], stats.bytes as f64);
        sink.counter(
            "wsdaemon_request_log_rotations_total",
            "Request log files seen rotated away, deleted or truncated.",
        )
        .add(&[], stats.rotations as f64);
        sink.gauge("wsdaemon_request_log_files", "Request log files followed.")
            .add(&[], self.files() as f64);
    }
}

/// Opens `path` if it is still the file `id`.
fn open_same(path: &Path, id: (u64, u64)) -> Option<File> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    ((meta.dev(), meta.ino()) == id).then_some(file)
}

fn ends_with_newline(path: &Path, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let mut last = [0u8; 1];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)
        })
        .map_or(true, |()| last[0] == b'\n')
}

/// Reads what `followed` has past its offset, within `budget`; returns the bytes read.
fn read_new(
    followed: &mut Followed,
    budget: &mut u64,
    config: &RequestLogConfig,
    stats: &mut Stats,
) -> u64 {
    let Some(mut file) = followed.file.take() else {
        return 0;
    };
    if file.seek(SeekFrom::Start(followed.offset)).is_err() {
        return 0;
    }
    let mut healthy = true;
    let mut total = 0;
    let mut chunk = vec![0u8; CHUNK];
    while *budget > 0 {
        let want = chunk.len().min(usize::try_from(*budget).unwrap_or(CHUNK));
        let n = match file.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(path = %followed.path.display(), %error, "Request log read failed.");
                healthy = false;
                break;
            }
        };
        consume(followed, &chunk[..n], config, stats);
        followed.offset += n as u64;
        total += n as u64;
        *budget -= n as u64;
    }
    if healthy {
        followed.file = Some(file);
    }
    stats.bytes += total;
    total
}

/// Splits `bytes` into lines, keeping an unfinished one for later.
fn consume(followed: &mut Followed, bytes: &[u8], config: &RequestLogConfig, stats: &mut Stats) {
    let max = config.max_line_bytes as usize;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (piece, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        rest = &rest[(piece.len() + usize::from(complete))..];
        if followed.discarding {
            followed.discarding = !complete;
            continue;
        }
        if followed.partial.len() + piece.len() > max {
            stats.too_long += 1;
            followed.partial.clear();
            followed.discarding = !complete;
            continue;
        }
        if !complete {
            followed.partial.extend_from_slice(piece);
            continue;
        }
        if followed.partial.is_empty() {
            stats.record(piece, config);
        } else {
            followed.partial.extend_from_slice(piece);
            let line = std::mem::take(&mut followed.partial);
            stats.record(&line, config);
        }
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

fn outcome(record: &Value, config: &RequestLogConfig) -> Outcome {
    let by_status = |n: f64| {
        if (100.0..600.0).contains(&n) {
            if n < 400.0 {
                Outcome::Success
            } else {
                Outcome::Error
            }
        } else if n != 0.0 {
            Outcome::Success
        } else {
            Outcome::Error
        }
    };
    match field(record, &config.outcome_field) {
        Some(Value::Bool(ok)) => {
            if *ok {
                Outcome::Success
            } else {
                Outcome::Error
            }
        }
        Some(Value::Number(n)) => n.as_f64().map_or(Outcome::Error, by_status),
        Some(Value::String(s)) => {
            let s = s.trim();
            let word = s.to_ascii_lowercase().replace(['_', '-', ' '], "");
            if config
                .success_values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(s))
            {
                Outcome::Success
            } else if word.contains("timeout") || word.contains("timedout") {
                Outcome::Timeout
            } else if let Ok(n) = s.parse::<f64>() {
                by_status(n)
            } else {
                Outcome::Error
            }
        }
        // No outcome field: a record with an error in it failed.
        _ => match record.get("error") {
            None | Some(Value::Null | Value::Bool(false)) => Outcome::Success,
            Some(Value::String(s)) if s.is_empty() => Outcome::Success,
            Some(_) => Outcome::Error,
        },
    }
}

impl Stats {
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
        let provider = text(field(&record, &config.provider_field));
        let tool = text(field(&record, &config.tool_field));
        let outcome = outcome(&record, config);
        let duration = field(&record, &config.duration_field)
            .and_then(|v| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .map(|d| d * config.duration_unit.seconds())
            .filter(|d| d.is_finite() && *d >= 0.0);
        let at = self.series_index(provider, tool, config);
        let series = &mut self.series[at];
        series.outcomes[outcome as usize] += 1;
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
            outcomes: [0; 3],
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
    use mcpwatch_core::config::parse_yaml;
    use std::io::Write;

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
            .map_or(0, |s| s.outcomes[outcome as usize])
    }

    #[test]
    fn patterns() {
        let p = FilePattern::new(Path::new("/srv/exai/.logs/*.jsonl")).expect("glob");
        assert_eq!(p.dir, Path::new("/srv/exai/.logs"));
        assert!(p.name.is_match("requests-2026-11-22.jsonl"));
        assert!(!p.name.is_match("requests.jsonl.1"));
        assert!(FilePattern::new(Path::new("/srv/*/x.jsonl")).is_err());
        let p = FilePattern::new(Path::new("metrics.jsonl")).expect("plain name");
        assert_eq!(p.dir, Path::new("."));
    }

    #[test]
    fn tails_existing_files_and_counts_what_is_appended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        append(&path, &record("glm", "chat", "success", 100));
        // The collector starts while a line is half-written: that fragment is not a record.
        append(&path, "{\"provider\":\"glm\",\"tool\":\"ch");
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        log.poll();
        assert_eq!(log.stats.parsed, 0, "existing lines are not counted");
        append(&path, "at\"}\n");
        append(&path, &record("glm", "chat", "success", 100));
        append(&path, &record("glm", "chat", "error", 3000));
        append(&path, &record("kimi", "search", "timeout", 30_000));
        log.poll();
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
        log.poll();
        assert_eq!((log.stats.parsed, log.stats.invalid), (0, 0));
        append(&path, &line[20..]);
        log.poll();
        assert_eq!((log.stats.parsed, log.stats.invalid), (1, 0));
        append(&path, "not json\n\n");
        log.poll();
        assert_eq!((log.stats.parsed, log.stats.invalid), (1, 1));
    }

    #[test]
    fn rotation_by_rename_and_by_truncation_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        append(&path, &record("glm", "chat", "success", 1));
        let mut log = RequestLog::new(config(dir.path(), "")).expect("log");
        append(&path, &record("glm", "chat", "success", 1));
        log.poll();
        assert_eq!(log.stats.parsed, 1);

        // Written, then rotated away before the next scrape, then written again by a
        // writer that still holds the old file, and into the new file.
        append(&path, &record("glm", "chat", "success", 1));
        let rotated = dir.path().join("requests.jsonl.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        append(&rotated, &record("glm", "chat", "error", 1));
        append(&path, &record("glm", "chat", "success", 1));
        append(&path, &record("glm", "chat", "success", 1));
        log.poll();
        assert_eq!(count(&log, "glm", "chat", Outcome::Success), 4);
        assert_eq!(count(&log, "glm", "chat", Outcome::Error), 1);
        log.poll();
        log.poll();
        assert_eq!(log.files.len(), 1, "the rotated file is let go");
        assert_eq!(log.stats.rotations, 1);
        assert_eq!(log.stats.parsed, 5);

        // copytruncate
        std::fs::write(&path, "").expect("truncate");
        append(&path, &record("kimi", "chat", "success", 1));
        log.poll();
        assert_eq!(count(&log, "kimi", "chat", Outcome::Success), 1);
        assert_eq!(log.stats.parsed, 6);
        log.poll();
        assert_eq!(log.stats.parsed, 6, "nothing is read twice");
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
        log.poll();
        assert_eq!(log.stats.too_long, 1);
        assert_eq!(log.stats.parsed, 4);
        assert_eq!(log.stats.series.len(), 3);
        assert_eq!(count(&log, "other", "other", Outcome::Success), 2);
    }

    #[test]
    fn outcomes_from_every_kind_of_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path(), "");
        let o = |v: Value| outcome(&v, &c);
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
        assert_eq!(
            outcome(&serde_json::json!({"result": {"ok": false}}), &c),
            Outcome::Error
        );
    }
}
