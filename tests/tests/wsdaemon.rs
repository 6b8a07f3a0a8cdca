//! The wsdaemon collector against a real MCP server built with the official Python SDK (both
//! transports), a daemon with the operations guide's `/health`, health file and JSON-lines
//! request log, and every fault it must name; then the exporter binary with a fault per
//! target, scraped by a real Prometheus.

use std::borrow::Borrow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::{Collector, Scrape};
use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::daemon::{Behaviour, Daemon, McpMode};
use mcpwatch_tests::engine::{engine, text};
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::logrotate::Logrotate;
use mcpwatch_tests::mcp::McpServer;
use mcpwatch_tests::ports::{free_address, free_port};
use mcpwatch_tests::process::ServiceProcess;
use mcpwatch_tests::prometheus::Prometheus;
use mcpwatch_tests::tls::ca_and_server;
use mcpwatch_tests::tools::{parse_openmetrics, promtool_check_metrics};
use mcpwatch_tests::wait_for_async;
use mcpwatch_wsdaemon::WsDaemonCollector;

const LIMIT: Duration = Duration::from_secs(60);

fn collector(yaml: &str) -> Arc<dyn Collector> {
    Arc::new(
        WsDaemonCollector::new(parse_yaml(yaml, Path::new("t.yml")).expect("config"))
            .expect("collector"),
    )
}

fn success(scrape: &Scrape) -> Option<f64> {
    scrape.value(
        "mcpwatch_scrape_collector_success",
        &[("collector", "wsdaemon")],
    )
}

#[tokio::test]
async fn the_sdk_server_is_probed_over_both_transports() {
    let server = McpServer::start(29, 10, "exai-mcp", "2.3.0");
    let engine = engine(vec![collector(&format!(
        "name: exai\nhealth_url: {}\nwebsocket_url: {}\nmcp_url: {}\n",
        server.health_url(),
        server.websocket_url(),
        server.streamable_http_url()
    ))]);
    for _ in 0..2 {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        assert_eq!(success(&scrape), Some(1.0), "{}", server.log());
        assert_eq!(
            scrape.value("wsdaemon_up", &[("target", "exai")]),
            Some(1.0)
        );
        assert_eq!(
            scrape.value("wsdaemon_tools", &[("source", "http")]),
            Some(29.0)
        );
        assert_eq!(
            scrape.value("wsdaemon_healthy", &[("source", "http")]),
            Some(1.0)
        );
        for transport in ["websocket", "streamable_http"] {
            let t = ("transport", transport);
            assert_eq!(
                scrape.value("wsdaemon_mcp_up", &[t]),
                Some(1.0),
                "{transport}"
            );
            // 29 tools over three pages of tools/list.
            assert_eq!(scrape.value("wsdaemon_mcp_tools", &[t]), Some(29.0));
            assert_eq!(
                scrape.value(
                    "wsdaemon_mcp_server_info",
                    &[
                        t,
                        ("name", "exai-mcp"),
                        ("version", "2.3.0"),
                        ("protocol_version", "2025-11-25"),
                        ("era", "legacy")
                    ]
                ),
                Some(1.0),
                "{transport}"
            );
            for phase in ["connect", "handshake", "initialize", "tools_list", "ping"] {
                let seconds = scrape
                    .value(
                        "wsdaemon_mcp_phase_duration_seconds",
                        &[t, ("phase", phase)],
                    )
                    .unwrap_or_else(|| panic!("{transport} {phase}"));
                assert!(seconds >= 0.0);
            }
            for reason in mcpwatch_tests::mcp::FAILURE_REASONS {
                assert_eq!(
                    scrape.value("wsdaemon_mcp_failure", &[t, ("reason", reason)]),
                    Some(0.0)
                );
            }
        }
    }
    // Sessions were closed cleanly: the server logged no error.
    let log = server.log();
    assert!(
        !log.contains("Traceback") && !log.contains("ERROR"),
        "{log}"
    );
}

fn append(path: &Path, text: &str) {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("append");
}

fn record(provider: &str, tool: &str, status: &str, ms: u32) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-22T10:00:00Z\",\"provider\":\"{provider}\",\"tool\":\"{tool}\",\
         \"status\":\"{status}\",\"duration_ms\":{ms},\"session\":\"s-1\"}}\n"
    )
}

/// The request counters and histogram of one provider and tool, from the text exposition.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Requests {
    success: f64,
    error: f64,
    timeout: f64,
    count: f64,
    sum: f64,
    le_0_25: f64,
    le_5: f64,
}

fn requests(text: &str, provider: &str, tool: &str) -> Requests {
    let counter = |outcome: &str| {
        value_of(
            text,
            &format!(
                "wsdaemon_requests_total{{target=\"exai\",provider=\"{provider}\",tool=\"{tool}\",outcome=\"{outcome}\",status_class=\"none\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    let histogram = |suffix: &str, le: &str| {
        value_of(
            text,
            &format!(
                "wsdaemon_request_duration_seconds_{suffix}{{target=\"exai\",provider=\"{provider}\",tool=\"{tool}\"{le}}}"
            ),
        )
        .unwrap_or(0.0)
    };
    Requests {
        success: counter("success"),
        error: counter("error"),
        timeout: counter("timeout"),
        count: histogram("count", ""),
        sum: histogram("sum", ""),
        le_0_25: histogram("bucket", ",le=\"0.25\""),
        le_5: histogram("bucket", ",le=\"5\""),
    }
}

#[tokio::test]
async fn the_daemon_health_file_and_request_log_across_a_rotation() {
    let daemon = Daemon::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs");
    std::fs::create_dir_all(dir.path().join(".logs")).expect(".logs");
    let health_file = dir.path().join("logs/ws_daemon.health.json");
    std::fs::write(
        &health_file,
        r#"{"status":"degraded","timestamp":"2026-11-22T10:00:00Z","sessions":4,"providers":{"glm":"up"}}"#,
    )
    .expect("health file");
    let log = dir.path().join(".logs/requests.jsonl");
    // Records written before the exporter started are not counted again.
    append(&log, &record("glm", "chat", "success", 50).repeat(10));

    let engine = engine(vec![collector(&format!(
        "name: exai\nhealth_url: {}\nwebsocket_url: {}\nhealth_file: {}\n\
         request_log:\n  path: {}/.logs/*.jsonl\n",
        daemon.health_url(),
        daemon.websocket_url(),
        health_file.display(),
        dir.path().display()
    ))]);

    let first = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(success(&first), Some(1.0));
    let http = ("source", "http");
    let file = ("source", "file");
    for (name, labels, value) in [
        ("wsdaemon_up", vec![], 1.0),
        ("wsdaemon_health_http_status", vec![], 200.0),
        ("wsdaemon_healthy", vec![http], 1.0),
        ("wsdaemon_status", vec![http, ("status", "healthy")], 1.0),
        ("wsdaemon_status", vec![http, ("status", "unhealthy")], 0.0),
        ("wsdaemon_uptime_seconds", vec![http], 3600.0),
        ("wsdaemon_info", vec![http, ("version", "2.3.0")], 1.0),
        ("wsdaemon_tools", vec![http], 29.0),
        ("wsdaemon_sessions", vec![http], 5.0),
        ("wsdaemon_requests_per_minute", vec![http], 45.0),
        ("wsdaemon_provider_up", vec![http, ("provider", "glm")], 1.0),
        (
            "wsdaemon_provider_up",
            vec![http, ("provider", "kimi")],
            0.0,
        ),
        (
            "wsdaemon_provider_latency_seconds",
            vec![http, ("provider", "glm")],
            0.12,
        ),
        (
            "wsdaemon_dependency_up",
            vec![http, ("dependency", "database")],
            1.0,
        ),
        ("wsdaemon_healthy", vec![file], 0.0),
        ("wsdaemon_status", vec![file, ("status", "degraded")], 1.0),
        ("wsdaemon_sessions", vec![file], 4.0),
        ("wsdaemon_provider_up", vec![file, ("provider", "glm")], 1.0),
        (
            "wsdaemon_health_timestamp_seconds",
            vec![file],
            1_795_341_600.0,
        ),
        ("wsdaemon_health_file_present", vec![], 1.0),
        ("wsdaemon_health_file_stale", vec![], 0.0),
        ("wsdaemon_health_file_parse_error", vec![], 0.0),
        ("wsdaemon_mcp_up", vec![("transport", "websocket")], 1.0),
        ("wsdaemon_mcp_tools", vec![("transport", "websocket")], 29.0),
        ("wsdaemon_request_log_files", vec![], 1.0),
    ] {
        assert_eq!(first.value(name, &labels), Some(value), "{name} {labels:?}");
    }
    assert!(
        first
            .value("wsdaemon_health_file_age_seconds", &[])
            .is_some()
    );
    let before = requests(&text(&first).await, "glm", "chat");
    assert_eq!(before, requests("", "glm", "chat"), "nothing counted yet");

    // Five requests, and a sixth whose line is still being written.
    append(&log, &record("glm", "chat", "success", 100));
    append(&log, &record("glm", "chat", "success", 200));
    append(&log, &record("glm", "chat", "success", 300));
    append(&log, &record("glm", "chat", "error", 2500));
    append(&log, &record("kimi", "search", "timeout", 30_000));
    let half = record("glm", "chat", "success", 4000);
    let (head, tail) = half.split_at(37);
    append(&log, head);
    let second = mcpwatch_tests::engine::scrape(&engine, None).await;
    let text2 = text(&second).await;
    let glm = requests(&text2, "glm", "chat");
    assert_eq!(
        glm,
        Requests {
            success: 3.0,
            error: 1.0,
            timeout: 0.0,
            count: 4.0,
            sum: 3.1,
            le_0_25: 2.0,
            le_5: 4.0
        }
    );
    assert_eq!(requests(&text2, "kimi", "search").timeout, 1.0);
    let lines = |text: &str, result: &str| {
        value_of(
            text,
            &format!("wsdaemon_request_log_lines_total{{target=\"exai\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(lines(&text2, "parsed"), Some(5.0));
    assert_eq!(
        lines(&text2, "invalid"),
        Some(0.0),
        "a half-written line waits"
    );

    // Rotation: the daemon finishes the half line and writes one more to the old file, which
    // is then renamed away; the new file gets two records before the next scrape.
    append(&log, tail);
    append(&log, &record("glm", "chat", "error", 10));
    let rotated = dir.path().join(".logs/requests.jsonl.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    append(&rotated, &record("glm", "chat", "success", 10));
    append(&log, &record("glm", "chat", "success", 1000));
    append(&log, &record("kimi", "search", "success", 150));
    let third = mcpwatch_tests::engine::scrape(&engine, None).await;
    let text3 = text(&third).await;
    let after = requests(&text3, "glm", "chat");
    assert_eq!(after.success - glm.success, 3.0);
    assert_eq!(after.error - glm.error, 1.0);
    assert_eq!(after.count - glm.count, 4.0);
    assert!((after.sum - glm.sum - 5.02).abs() < 1e-9, "{after:?}");
    assert_eq!(after.le_0_25 - glm.le_0_25, 2.0);
    assert_eq!(after.le_5 - glm.le_5, 4.0);
    assert_eq!(requests(&text3, "kimi", "search").success, 1.0);
    assert_eq!(lines(&text3, "parsed"), Some(10.0));
    assert_eq!(lines(&text3, "invalid"), Some(0.0));

    // Nothing is read twice.
    let fourth = mcpwatch_tests::engine::scrape(&engine, None).await;
    let text4 = text(&fourth).await;
    assert_eq!(requests(&text4, "glm", "chat"), after);
    assert_eq!(lines(&text4, "parsed"), Some(10.0));
    assert_eq!(promtool_check_metrics(text4.as_bytes()), "");
    assert_eq!(daemon.health_requests(), 4, "one GET of /health per scrape");
}

fn set_age(path: &Path, age: Duration) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - age))
        .expect("set the file's modification time");
}

#[tokio::test]
async fn a_health_file_past_its_age_limit_is_not_healthy() {
    let daemon = Daemon::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let health_file = dir.path().join("ws_daemon.health.json");
    let body = r#"{"status":"healthy","sessions":2}"#;
    std::fs::write(&health_file, body).expect("health file");
    let engine = engine(vec![collector(&format!(
        "name: exai\nhealth_url: {}\nhealth_file: {}\nhealth_file_max_age: 2m\n",
        daemon.health_url(),
        health_file.display()
    ))]);
    let (http, file) = (("source", "http"), ("source", "file"));
    let states = |scrape: &Scrape| {
        [
            scrape.value("wsdaemon_up", &[]),
            scrape.value("wsdaemon_healthy", &[http]),
            scrape.value("wsdaemon_healthy", &[file]),
            scrape.value("wsdaemon_health_file_stale", &[]),
            scrape.value("wsdaemon_sessions", &[file]),
        ]
    };

    set_age(&health_file, Duration::from_secs(100));
    let fresh = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(success(&fresh), Some(1.0));
    assert_eq!(
        states(&fresh),
        [Some(1.0), Some(1.0), Some(1.0), Some(0.0), Some(2.0)]
    );

    // The writer stopped 10 minutes ago: the file still says healthy, which is no longer
    // known. The endpoint still answers, so the daemon is up and the scrape succeeds.
    set_age(&health_file, Duration::from_secs(600));
    let stale = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(success(&stale), Some(1.0));
    assert_eq!(
        states(&stale),
        [Some(1.0), Some(1.0), Some(0.0), Some(1.0), Some(2.0)]
    );
    assert_eq!(promtool_check_metrics(text(&stale).await.as_bytes()), "");

    std::fs::write(&health_file, body).expect("rewrite");
    let again = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(
        states(&again),
        [Some(1.0), Some(1.0), Some(1.0), Some(0.0), Some(2.0)]
    );
}

/// logrotate: on the PATH, or where Debian puts it (a user's PATH often lacks /usr/sbin).
/// A daemon writing its request log: the file kept open for appending, one write per
/// record, each record numbered (so lines differ in length), every line starting with a
/// `service` field `pad` bytes long.
struct LogWriter {
    path: PathBuf,
    file: File,
    next: u32,
    pad: usize,
}

impl LogWriter {
    fn open(path: &Path, pad: usize) -> Self {
        Self {
            path: path.to_owned(),
            file: Self::append_to(path),
            next: 0,
            pad,
        }
    }

    fn append_to(path: &Path) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the request log")
    }

    fn line(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        format!(
            "{{\"service\":\"{}\",\"provider\":\"glm\",\"tool\":\"chat\",\"status\":\"success\",\
             \"duration_ms\":{n}}}\n",
            "x".repeat(self.pad)
        )
    }

    fn write(&mut self, records: u32) {
        for _ in 0..records {
            let line = self.line();
            self.file
                .write_all(line.as_bytes())
                .expect("write a record");
        }
    }

    /// Writes the first half of a record; returns the rest.
    fn write_half(&mut self) -> String {
        let line = self.line();
        let (head, tail) = line.split_at(line.len() / 2);
        self.file
            .write_all(head.as_bytes())
            .expect("write half a record");
        tail.to_owned()
    }

    fn finish(&mut self, rest: &str) {
        self.file
            .write_all(rest.as_bytes())
            .expect("finish a record");
    }

    /// Opens the log again by name, as a daemon does when told that its log was rotated.
    fn reopen(&mut self) {
        self.file = Self::append_to(&self.path);
    }
}

/// Records counted, lines parsed, invalid lines and rotations seen, from a scrape.
fn follower(scrape: impl Borrow<Scrape>) -> (f64, f64, f64, f64) {
    let scrape = scrape.borrow();
    let lines = |result| {
        scrape
            .value("wsdaemon_request_log_lines_total", &[("result", result)])
            .unwrap_or(-1.0)
    };
    (
        scrape
            .value(
                "wsdaemon_requests_total",
                &[
                    ("provider", "glm"),
                    ("tool", "chat"),
                    ("outcome", "success"),
                ],
            )
            .unwrap_or(0.0),
        lines("parsed"),
        lines("invalid"),
        scrape
            .value("wsdaemon_request_log_rotations_total", &[])
            .unwrap_or(-1.0),
    )
}

/// A target with only a request log, `pattern` in `dir/logs`, and its engine.
fn log_engine(dir: &Path, pattern: &str) -> mcpwatch_core::ScrapeEngine {
    engine(vec![collector(&format!(
        "name: exai\nrequest_log:\n  path: {}/logs/{pattern}\n",
        dir.display()
    ))])
}

fn log_dirs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("logs")).expect("logs");
    let log = dir.path().join("logs/requests.jsonl");
    (dir, log)
}

#[tokio::test]
async fn logrotate_copytruncate_loses_and_repeats_no_record() {
    let (dir, log) = log_dirs();
    let mut writer = LogWriter::open(&log, 0);
    let rotate = Logrotate::new(dir.path(), &log, "copytruncate\nrotate 3");
    let engine = log_engine(dir.path(), "*.jsonl");
    writer.write(200);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (200.0, 200.0, 0.0, 0.0)
    );

    // More bytes than the file had before are written by the next scrape.
    rotate.rotate();
    assert_eq!(std::fs::metadata(&log).expect("log").len(), 0, "truncated");
    writer.write(210);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (410.0, 410.0, 0.0, 1.0)
    );

    // Fewer.
    rotate.rotate();
    writer.write(20);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (430.0, 430.0, 0.0, 2.0)
    );
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (430.0, 430.0, 0.0, 2.0)
    );
}

#[tokio::test]
async fn logrotate_copytruncate_of_lines_sharing_a_long_prefix() {
    let (dir, log) = log_dirs();
    // Each line starts with the same 5000 bytes: so does the file after each truncation.
    let mut writer = LogWriter::open(&log, 5000);
    let rotate = Logrotate::new(dir.path(), &log, "copytruncate\nrotate 3");
    let engine = log_engine(dir.path(), "*.jsonl");
    writer.write(100);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (100.0, 100.0, 0.0, 0.0)
    );
    rotate.rotate();
    writer.write(150);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (250.0, 250.0, 0.0, 1.0)
    );
    rotate.rotate();
    writer.write(100);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (350.0, 350.0, 0.0, 2.0)
    );
}

#[tokio::test]
async fn logrotate_copytruncate_copies_the_pattern_matches_complete_the_count() {
    let (dir, log) = log_dirs();
    let mut writer = LogWriter::open(&log, 0);
    // The copies are requests.1.jsonl, requests.2.jsonl...: `*.jsonl` matches them.
    let rotate = Logrotate::new(dir.path(), &log, "copytruncate\nrotate 3\nextension .jsonl");
    let engine = log_engine(dir.path(), "*.jsonl");
    writer.write(50);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (50.0, 50.0, 0.0, 0.0)
    );
    writer.write(5);
    let rest = writer.write_half();
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (55.0, 55.0, 0.0, 0.0)
    );

    // The half line is finished and four more written before the rotation: they are in the
    // copy only.
    writer.finish(&rest);
    writer.write(4);
    rotate.rotate();
    writer.write(30);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (90.0, 90.0, 0.0, 1.0)
    );

    // The next copy pushes the first to requests.2.jsonl.
    writer.write(10);
    rotate.rotate();
    writer.write(5);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (105.0, 105.0, 0.0, 2.0)
    );

    // Two rotations between scrapes; the oldest copy is deleted.
    writer.write(3);
    rotate.rotate();
    writer.write(4);
    rotate.rotate();
    writer.write(2);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (114.0, 114.0, 0.0, 4.0)
    );
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (114.0, 114.0, 0.0, 4.0)
    );
}

#[tokio::test]
async fn logrotate_create_and_a_new_file_appearing_late() {
    let (dir, log) = log_dirs();
    let mut writer = LogWriter::open(&log, 0);
    let rotate = Logrotate::new(dir.path(), &log, "create\nrotate 3");
    let engine = log_engine(dir.path(), "*.jsonl");
    writer.write(40);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (40.0, 40.0, 0.0, 0.0)
    );

    // Renamed to requests.jsonl.1 and a new file created; the daemon writes to the old one
    // until it reopens its log.
    writer.write(5);
    rotate.rotate();
    writer.write(3);
    writer.reopen();
    writer.write(6);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (54.0, 54.0, 0.0, 1.0)
    );

    // Without `create`, the new file appears when the daemon next opens its log, scrapes
    // later.
    rotate.configure("nocreate\nrotate 3");
    writer.write(2);
    rotate.rotate();
    assert!(!log.exists());
    writer.write(1);
    for _ in 0..3 {
        assert_eq!(
            follower(mcpwatch_tests::engine::scrape(&engine, None).await),
            (57.0, 57.0, 0.0, 1.0)
        );
    }
    writer.reopen();
    writer.write(4);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (61.0, 61.0, 0.0, 2.0)
    );
}

#[tokio::test]
async fn several_logrotate_create_rotations_between_two_scrapes() {
    let (dir, log) = log_dirs();
    let mut writer = LogWriter::open(&log, 0);
    // The rotated files keep the extension: `requests*.jsonl` follows every one.
    let rotate = Logrotate::new(dir.path(), &log, "create\nrotate 5\nextension .jsonl");
    let engine = log_engine(dir.path(), "requests*.jsonl");
    writer.write(10);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (10.0, 10.0, 0.0, 0.0)
    );
    rotate.rotate();
    writer.reopen();
    writer.write(10);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (20.0, 20.0, 0.0, 1.0)
    );
    writer.write(5);
    rotate.rotate();
    writer.reopen();
    writer.write(5);
    rotate.rotate();
    writer.reopen();
    writer.write(5);
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (35.0, 35.0, 0.0, 3.0)
    );
    assert_eq!(
        follower(mcpwatch_tests::engine::scrape(&engine, None).await),
        (35.0, 35.0, 0.0, 3.0)
    );
}

/// One target per fault, in one exporter.
struct Faults {
    down_port: u16,
    slow: Daemon,
    error_500: Daemon,
    invalid_json: Daemon,
    silent: Daemon,
    no_upgrade: Daemon,
    init_error: Daemon,
    dir: tempfile::TempDir,
}

impl Faults {
    async fn start() -> Self {
        let with = |change: fn(&mut Behaviour)| {
            let mut behaviour = Behaviour::default();
            change(&mut behaviour);
            Daemon::start(behaviour)
        };
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("truncated.json"),
            r#"{"status":"healthy","upt"#,
        )
        .expect("truncated");
        let stale = dir.path().join("stale.json");
        std::fs::write(&stale, r#"{"status":"healthy"}"#).expect("stale");
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(600)))
            .expect("age the file");
        Self {
            down_port: free_port(),
            slow: with(|b| b.health_delay = Duration::from_secs(20)).await,
            error_500: with(|b| {
                b.health_status = 500;
                b.health_body = r#"{"status":"unhealthy","database":"disconnected"}"#.into();
            })
            .await,
            invalid_json: with(|b| b.health_body = "<html>Bad Gateway</html>".into()).await,
            silent: with(|b| b.mcp = McpMode::Silent).await,
            no_upgrade: with(|b| b.mcp = McpMode::NoUpgrade).await,
            init_error: with(|b| b.mcp = McpMode::InitializeError).await,
            dir,
        }
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        let targets = [
            format!(
                "{{name: down, health_url: 'http://127.0.0.1:{}/health', timeout: 1s}}",
                self.down_port
            ),
            format!(
                "{{name: slow, health_url: '{}', timeout: 1s}}",
                self.slow.health_url()
            ),
            format!(
                "{{name: error_500, health_url: '{}', timeout: 1s, bearer_token_file: token}}",
                self.error_500.health_url()
            ),
            format!(
                "{{name: invalid_json, health_url: '{}', timeout: 1s}}",
                self.invalid_json.health_url()
            ),
            format!(
                "{{name: silent, websocket_url: '{}', timeout: 1s}}",
                self.silent.websocket_url()
            ),
            format!(
                "{{name: no_upgrade, websocket_url: '{}', timeout: 1s}}",
                self.no_upgrade.websocket_url()
            ),
            format!(
                "{{name: init_error, websocket_url: '{}', timeout: 1s, bearer_token_file: token}}",
                self.init_error.websocket_url()
            ),
            format!("{{name: truncated, health_file: '{d}/truncated.json'}}"),
            format!("{{name: stale, health_file: '{d}/stale.json', health_file_max_age: 1m}}"),
            format!("{{name: missing, health_file: '{d}/missing.json'}}"),
            format!(
                "{{name: half_line, request_log: {{path: '{d}/half.jsonl', read_existing: true}}}}"
            ),
        ];
        let mut yaml = "collectors:\n  host: {enabled: false}\n  wsdaemon:\n".to_owned();
        for target in targets {
            yaml.push_str(&format!("    - {target}\n"));
        }
        yaml
    }
}

#[tokio::test]
async fn every_fault_is_named_and_the_scrape_still_answers_in_time() {
    let faults = Faults::start().await;
    append(
        &faults.dir.path().join("half.jsonl"),
        "{\"provider\":\"glm\",\"tool\":\"chat\",\"sta",
    );
    let token = mcpwatch_tests::random_token("daemon-token-");
    std::fs::write(faults.dir.path().join("token"), format!("{token}\n")).expect("token");
    let config = faults.dir.path().join("exporter.yml");
    std::fs::write(&config, faults.config()).expect("config");
    let address = free_address();
    let mut command = Command::new(workspace_binary("mcpwatch-exporter"));
    command
        .arg(format!("--web.listen-address={address}"))
        .arg(format!("--config.file={}", config.display()));
    let exporter = ServiceProcess::spawn("mcpwatch-exporter", command, faults.dir.path());
    let health = format!("http://{address}/health");
    wait_for_async("the exporter", LIMIT, || {
        let request = client().get(&health).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;

    // Prometheus would give up after 5 s; the answer comes before that.
    let response = client()
        .get(format!("http://{address}/metrics"))
        .header("x-prometheus-scrape-timeout-seconds", "5")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("scrape within the deadline: {e}\n{}", exporter.output()));
    assert_eq!(response.status(), 200);
    let text = checked(response.text().await.expect("body"));
    let value = |series: &str| value_of(&text, series);
    let target = |name: &str, metric: &str, extra: &str| {
        value(&format!("{metric}{{target=\"{name}\"{extra}}}"))
    };
    let collector_success = |name: &str| {
        value(&format!(
            "mcpwatch_scrape_collector_success{{collector=\"wsdaemon\",target=\"{name}\"}}"
        ))
    };
    for (name, reason) in [
        ("down", "refused"),
        ("slow", "timeout"),
        ("error_500", "http_status"),
        ("invalid_json", "invalid_json"),
    ] {
        assert_eq!(target(name, "wsdaemon_up", ""), Some(0.0), "{name}");
        assert_eq!(collector_success(name), Some(0.0), "{name}");
        for each in [
            "refused",
            "timeout",
            "tls",
            "protocol",
            "http_status",
            "invalid_json",
        ] {
            assert_eq!(
                target(
                    name,
                    "wsdaemon_health_failure",
                    &format!(",reason=\"{each}\"")
                ),
                Some(if each == reason { 1.0 } else { 0.0 }),
                "{name} {each}"
            );
        }
    }
    assert_eq!(
        target("error_500", "wsdaemon_health_http_status", ""),
        Some(500.0)
    );
    assert_eq!(target("down", "wsdaemon_health_http_status", ""), Some(0.0));
    // The body of an error answer still says why.
    assert_eq!(
        target(
            "error_500",
            "wsdaemon_dependency_up",
            ",source=\"http\",dependency=\"database\""
        ),
        Some(0.0)
    );
    assert_eq!(
        target("error_500", "wsdaemon_healthy", ",source=\"http\""),
        Some(0.0)
    );
    for (name, reason, phases) in [
        ("silent", "timeout", &["connect", "handshake"][..]),
        ("no_upgrade", "timeout", &["connect"][..]),
        (
            "init_error",
            "error_response",
            &["connect", "handshake"][..],
        ),
    ] {
        let ws = ",transport=\"websocket\"";
        assert_eq!(target(name, "wsdaemon_up", ""), Some(0.0), "{name}");
        assert_eq!(target(name, "wsdaemon_mcp_up", ws), Some(0.0), "{name}");
        assert_eq!(collector_success(name), Some(0.0), "{name}");
        assert_eq!(
            target(
                name,
                "wsdaemon_mcp_failure",
                &format!("{ws},reason=\"{reason}\"")
            ),
            Some(1.0),
            "{name}"
        );
        for phase in ["connect", "handshake", "initialize", "tools_list", "ping"] {
            assert_eq!(
                target(
                    name,
                    "wsdaemon_mcp_phase_duration_seconds",
                    &format!("{ws},phase=\"{phase}\"")
                )
                .is_some(),
                phases.contains(&phase),
                "{name} {phase}"
            );
        }
    }
    // Files: visible as such, never a failed scrape.
    for (name, present, parse_error, stale) in [
        ("truncated", 1.0, 1.0, 0.0),
        ("stale", 1.0, 0.0, 1.0),
        ("missing", 0.0, 0.0, 1.0),
    ] {
        assert_eq!(collector_success(name), Some(1.0), "{name}");
        assert_eq!(target(name, "wsdaemon_up", ""), Some(0.0), "{name}");
        assert_eq!(
            target(name, "wsdaemon_health_file_present", ""),
            Some(present),
            "{name}"
        );
        assert_eq!(
            target(name, "wsdaemon_health_file_parse_error", ""),
            Some(parse_error),
            "{name}"
        );
        assert_eq!(
            target(name, "wsdaemon_health_file_stale", ""),
            Some(stale),
            "{name}"
        );
    }
    assert!(target("stale", "wsdaemon_health_file_age_seconds", "").is_some_and(|a| a >= 600.0));
    // It says healthy, but 10 minutes ago.
    assert_eq!(
        target("stale", "wsdaemon_healthy", ",source=\"file\""),
        Some(0.0)
    );
    assert_eq!(collector_success("half_line"), Some(1.0));
    assert_eq!(
        target(
            "half_line",
            "wsdaemon_request_log_lines_total",
            ",result=\"invalid\""
        ),
        Some(0.0)
    );
    assert_eq!(
        target(
            "half_line",
            "wsdaemon_request_log_lines_total",
            ",result=\"parsed\""
        ),
        Some(0.0)
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("mcpwatch_scrape_collector_duration_seconds"))
    {
        let seconds: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value");
        assert!(seconds < 5.0, "{line}");
    }
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
    // The token is sent, over HTTP and in the WebSocket upgrade, and shown nowhere.
    let bearer = format!("Bearer {token}");
    assert_eq!(
        faults.error_500.authorization().as_deref(),
        Some(bearer.as_str())
    );
    assert_eq!(
        faults.init_error.authorization().as_deref(),
        Some(bearer.as_str())
    );
    assert_eq!(faults.slow.authorization(), None);
    let exporter_health = client()
        .get(&health)
        .send()
        .await
        .expect("/health")
        .text()
        .await
        .expect("body");
    assert!(
        exporter_health.contains("error_response"),
        "{exporter_health}"
    );
    for (what, output) in [
        ("/metrics", &text),
        ("/health", &exporter_health),
        ("the log", &exporter.output()),
    ] {
        assert!(!output.contains(&token), "the token appears in {what}");
    }
    let om = client()
        .get(format!("http://{address}/metrics"))
        .header("accept", "application/openmetrics-text")
        .send()
        .await
        .expect("OpenMetrics scrape")
        .text()
        .await
        .expect("body");
    parse_openmetrics(checked(om).as_bytes()).expect("OpenMetrics parses");

    // Prometheus scrapes every second with a 1 s timeout: the probes are cut at half a
    // second and still report.
    let prometheus = Prometheus::start(
        &format!("  - job_name: mcpwatch\n    static_configs:\n      - targets: ['{address}']\n"),
        &[],
    )
    .await;
    let targets = prometheus.wait_for_healthy_targets(LIMIT).await;
    assert_eq!(targets[0]["lastError"], "", "{}", exporter.output());
    wait_for_async("wsdaemon_up in Prometheus", LIMIT, || async {
        (prometheus.query("wsdaemon_up == 0").await.len() == 10).then_some(())
    })
    .await;
    assert_eq!(
        prometheus
            .query("wsdaemon_mcp_failure{reason=\"error_response\"} == 1")
            .await
            .len(),
        1
    );
    prometheus.assert_no_duplicate_samples().await;
}

#[tokio::test]
async fn https_and_wss_are_checked_against_the_configured_ca() {
    let (ca, cert, key) = ca_and_server("127.0.0.1");
    let daemon = Daemon::start_tls(Behaviour::default(), &cert, &key).await;
    let (_, other_cert, other_key) = ca_and_server("daemon.example");
    let misnamed = Daemon::start_tls(Behaviour::default(), &other_cert, &other_key).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).expect("write");
    let target = |daemon: &Daemon, extra: &str| {
        collector(&format!(
            "name: d\nhealth_url: {}\nwebsocket_url: {}\n{extra}",
            daemon.health_url(),
            daemon.websocket_url()
        ))
    };
    let tls_failures = |scrape: &Scrape| {
        (
            scrape.value("wsdaemon_health_failure", &[("reason", "tls")]),
            scrape.value("wsdaemon_mcp_failure", &[("reason", "tls")]),
        )
    };

    let trusted = mcpwatch_tests::engine::scrape(
        &engine(vec![target(
            &daemon,
            &format!("ca_file: {}\n", ca_file.display()),
        )]),
        None,
    )
    .await;
    assert_eq!(success(&trusted), Some(1.0));
    assert_eq!(trusted.value("wsdaemon_up", &[]), Some(1.0));
    assert_eq!(trusted.value("wsdaemon_mcp_tools", &[]), Some(29.0));
    assert_eq!(tls_failures(&trusted), (Some(0.0), Some(0.0)));

    // The system's roots do not know the private CA.
    let untrusted = mcpwatch_tests::engine::scrape(&engine(vec![target(&daemon, "")]), None).await;
    assert_eq!(untrusted.value("wsdaemon_up", &[]), Some(0.0));
    assert_eq!(tls_failures(&untrusted), (Some(1.0), Some(1.0)));

    // A certificate of the right CA for another name.
    let wrong_name = mcpwatch_tests::engine::scrape(
        &engine(vec![target(
            &misnamed,
            &format!("ca_file: {}\n", ca_file.display()),
        )]),
        None,
    )
    .await;
    assert_eq!(tls_failures(&wrong_name), (Some(1.0), Some(1.0)));

    let insecure = mcpwatch_tests::engine::scrape(
        &engine(vec![target(&misnamed, "insecure_skip_verify: true\n")]),
        None,
    )
    .await;
    assert_eq!(insecure.value("wsdaemon_up", &[]), Some(1.0));
    assert_eq!(
        insecure.value("wsdaemon_mcp_up", &[("transport", "websocket")]),
        Some(1.0)
    );
}
