//! Plain-text logs and request-log outcomes through the exporter binary: a log written by
//! an application that keeps it open, rotated by the real logrotate (renaming, then
//! copytruncate), a burst of 20,000 lines between two scrapes, lines too long and lines
//! that are not UTF-8; a file the exporter's user cannot open, not followed and warned of
//! once; every count exact, every output clean for `promtool check metrics` and free of
//! duplicate series.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mcpwatch_tests::binaries::{start_exporter, start_exporter_unprivileged};
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::logrotate::Logrotate;
use mcpwatch_tests::tools::promtool_check_metrics;

/// The seed's error codes, the access log's statuses and error lines: the patterns of the
/// shipped example configuration.
const CONFIG: &str = r#"
collectors:
  host: { enabled: false }
  log_patterns:
    - name: backend
      path: logs/app*.log
      max_line_bytes: 300
      max_series: 4
      patterns:
        - { name: error_code, regex: '\b(?P<code>(?:AUTH|VAL|DB|API)_\d{3})\b', labels: [code] }
        - { name: error, regex: '\b(ERROR|CRITICAL)\b' }
    - name: access
      path: logs/access.log
      patterns:
        - { name: http_status, regex: '" (?P<status>[1-5]\d\d) ', labels: [status] }
    - name: missing
      path: not-yet/error.log
      patterns:
        - { name: error, regex: ERROR }
  wsdaemon:
    - name: exai
      request_log:
        path: logs/requests.jsonl
"#;

/// An application writing its log: the file kept open for appending, one write per line.
struct Writer {
    path: PathBuf,
    file: File,
}

impl Writer {
    fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            file: Self::append_to(path),
        }
    }

    fn append_to(path: &Path) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the log")
    }

    fn write(&mut self, line: &[u8]) {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        self.file.write_all(&bytes).expect("write a line");
    }

    /// `n` lines of each kind: an `ERROR` with the code `AUTH_001`, a `CRITICAL` without a
    /// code, an `INFO` with the code `API_001`, a plain `INFO`.
    fn lines(&mut self, n: u32) {
        for i in 0..n {
            self.write(
                format!("2026-12-06 10:00:00 ERROR login refused AUTH_001 user={i}").as_bytes(),
            );
            self.write(b"2026-12-06 10:00:00 CRITICAL database pool exhausted");
            self.write(format!("2026-12-06 10:00:00 INFO throttled API_001 token={i}").as_bytes());
            self.write(format!("2026-12-06 10:00:00 INFO request served id={i}").as_bytes());
        }
    }

    /// Opens the log again by name, as an application does when told of the rotation.
    fn reopen(&mut self) {
        self.file = Self::append_to(&self.path);
    }
}

async fn scrape(address: SocketAddr) -> String {
    let body = client()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let body = checked(body);
    assert_eq!(promtool_check_metrics(body.as_bytes()), "", "{body}");
    body
}

/// The value of a series written as the exporter writes it, -1 when absent.
fn value(text: &str, series: &str) -> f64 {
    value_of(text, series).unwrap_or(-1.0)
}

/// Error lines, AUTH_001 lines, API_001 lines, lines read and rotations of the backend.
fn backend(text: &str) -> [f64; 5] {
    [
        value(
            text,
            r#"log_pattern_lines_total{target="backend",pattern="error"}"#,
        ),
        value(
            text,
            r#"log_pattern_lines_total{target="backend",pattern="error_code",code="AUTH_001"}"#,
        ),
        value(
            text,
            r#"log_pattern_lines_total{target="backend",pattern="error_code",code="API_001"}"#,
        ),
        value(text, r#"log_lines_total{target="backend",result="read"}"#),
        value(text, r#"log_rotations_total{target="backend"}"#),
    ]
}

#[tokio::test]
async fn log_lines_are_counted_exactly_across_rotations_and_a_burst() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("logs")).expect("logs");
    let log = dir.path().join("logs/app.log");
    let mut writer = Writer::open(&log);
    // Lines there before the exporter starts are not counted.
    writer.lines(5);
    let (_exporter, address) = start_exporter(dir.path(), CONFIG, &[]).await;

    let text = scrape(address).await;
    assert_eq!(
        backend(&text),
        [0.0, -1.0, -1.0, 0.0, 0.0],
        "error declared at 0"
    );
    assert_eq!(value(&text, r#"log_up{target="backend"}"#), 1.0);
    assert_eq!(value(&text, r#"log_files{target="backend"}"#), 1.0);
    assert_eq!(
        value(&text, r#"log_up{target="missing"}"#),
        0.0,
        "no file yet"
    );
    assert_eq!(
        value(
            &text,
            r#"mcpwatch_scrape_collector_success{collector="log_patterns",target="missing"}"#
        ),
        1.0,
        "a missing log is no failure"
    );

    writer.lines(10);
    let text = scrape(address).await;
    assert_eq!(backend(&text), [20.0, 10.0, 10.0, 40.0, 0.0]);

    // Rotation by renaming (logrotate's create, `extension .log`: app.1.log): the
    // application writes on into the renamed file until it is told, then into the new one.
    let rotate = Logrotate::new(dir.path(), &log, "create\nrotate 3\nextension .log");
    writer.lines(3);
    rotate.rotate();
    assert!(dir.path().join("logs/app.1.log").is_file());
    writer.lines(2);
    writer.reopen();
    writer.lines(4);
    let text = scrape(address).await;
    assert_eq!(backend(&text), [38.0, 19.0, 19.0, 76.0, 1.0]);

    // copytruncate: the lines written since the last scrape are in the copy only (app.1.log
    // again, the renamed file pushed to app.2.log); the application writes on at the start
    // of the truncated file.
    rotate.configure("copytruncate\nrotate 3\nextension .log");
    writer.lines(6);
    rotate.rotate();
    assert_eq!(std::fs::metadata(&log).expect("log").len(), 0, "truncated");
    writer.lines(1);
    let text = scrape(address).await;
    assert_eq!(backend(&text), [52.0, 26.0, 26.0, 104.0, 2.0]);
    let text = scrape(address).await;
    assert_eq!(
        backend(&text),
        [52.0, 26.0, 26.0, 104.0, 2.0],
        "nothing read twice"
    );

    // 20,000 lines between two scrapes.
    writer.lines(5_000);
    let mut text = scrape(address).await;
    while backend(&text)[3] < 20_104.0 {
        text = scrape(address).await;
    }
    assert_eq!(backend(&text), [10_052.0, 5_026.0, 5_026.0, 20_104.0, 2.0]);
    let bytes_read = value(&text, r#"log_read_bytes_total{target="backend"}"#);

    // Too long (the limit is 300 bytes), not UTF-8, and other codes: past max_series (4)
    // they count as `other`.
    writer.write(format!("ERROR AUTH_002 {}", "x".repeat(400)).as_bytes());
    writer.write(b"ERROR \xff\xfe AUTH_002 not UTF-8");
    writer.write(b"\xc3\x28 INFO VAL_001");
    for code in ["AUTH_003", "DB_001", "DB_001", "AUTH_002"] {
        writer.write(format!("INFO {code}").as_bytes());
    }
    let text = scrape(address).await;
    let code = |code: &str| {
        value(
            &text,
            &format!(
                r#"log_pattern_lines_total{{target="backend",pattern="error_code",code="{code}"}}"#
            ),
        )
    };
    // Seen in this order: AUTH_001, API_001, AUTH_002, VAL_001; then AUTH_003 and DB_001.
    assert_eq!(
        [
            code("AUTH_002"),
            code("VAL_001"),
            code("AUTH_003"),
            code("DB_001"),
            code("other")
        ],
        [2.0, 1.0, -1.0, -1.0, 3.0]
    );
    assert_eq!(
        backend(&text)[0],
        10_053.0,
        "the invalid line with ERROR counts"
    );
    for (result, n) in [
        ("read", 20_108.0),
        ("invalid_utf8", 2.0),
        ("too_long", 1.0),
        ("unfinished", 0.0),
    ] {
        assert_eq!(
            value(
                &text,
                &format!(r#"log_lines_total{{target="backend",result="{result}"}}"#)
            ),
            n,
            "{result}"
        );
    }
    assert!(value(&text, r#"log_read_bytes_total{target="backend"}"#) > bytes_read + 400.0);

    // The missing log appears: followed from its start.
    std::fs::create_dir(dir.path().join("not-yet")).expect("dir");
    std::fs::write(
        dir.path().join("not-yet/error.log"),
        "ERROR one\nINFO two\nERROR three\n",
    )
    .expect("error.log");
    let text = scrape(address).await;
    assert_eq!(value(&text, r#"log_up{target="missing"}"#), 1.0);
    assert_eq!(
        value(
            &text,
            r#"log_pattern_lines_total{target="missing",pattern="error"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn access_log_statuses_and_request_log_outcomes_are_counted_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("logs")).expect("logs");
    let mut access = Writer::open(&dir.path().join("logs/access.log"));
    let mut requests = Writer::open(&dir.path().join("logs/requests.jsonl"));
    let (_exporter, address) = start_exporter(dir.path(), CONFIG, &[]).await;
    scrape(address).await;

    for (status, n) in [(200, 50), (429, 7), (401, 3), (403, 2), (503, 4)] {
        for i in 0..n {
            access.write(
                format!(
                    "127.0.0.1 - - [06/Dec/2026:10:00:00 +0000] \"GET /api/v1/items/{i} HTTP/1.1\" {status} 512 \"-\" \"curl/8.5\""
                )
                .as_bytes(),
            );
            requests.write(
                format!(
                    "{{\"provider\":\"glm\",\"tool\":\"chat\",\"status\":{status},\"duration_ms\":{i}}}"
                )
                .as_bytes(),
            );
        }
    }
    // An outcome word with a status of its own, and a record with neither.
    requests.write(br#"{"provider":"glm","tool":"chat","status":"error","status_code":429}"#);
    requests.write(br#"{"provider":"glm","tool":"chat","status":"timeout"}"#);
    let text = scrape(address).await;
    for (status, n) in [
        ("200", 50.0),
        ("429", 7.0),
        ("401", 3.0),
        ("403", 2.0),
        ("503", 4.0),
    ] {
        assert_eq!(
            value(
                &text,
                &format!(
                    r#"log_pattern_lines_total{{target="access",pattern="http_status",status="{status}"}}"#
                )
            ),
            n,
            "{status}"
        );
    }
    let outcome = |outcome: &str, class: &str| {
        value(
            &text,
            &format!(
                r#"wsdaemon_requests_total{{target="exai",provider="glm",tool="chat",outcome="{outcome}",status_class="{class}"}}"#
            ),
        )
    };
    assert_eq!(
        [
            outcome("success", "2xx"),
            outcome("rate_limited", "4xx"),
            outcome("unauthorized", "4xx"),
            outcome("error", "5xx"),
            outcome("error", "4xx"),
            outcome("timeout", "none"),
            outcome("success", "3xx"),
        ],
        [50.0, 8.0, 5.0, 4.0, 0.0, 1.0, -1.0]
    );
}

/// A log file the exporter's user cannot open: mode 000, and as root the exporter runs as
/// `nobody` (root opens it anyway), from a copy of its binary that user can reach.
#[tokio::test]
async fn a_file_the_exporter_cannot_open_is_not_followed_and_said_once() {
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    chmod(dir, 0o755);
    std::fs::create_dir(dir.join("logs")).expect("logs");
    chmod(&dir.join("logs"), 0o755);
    let app = dir.join("logs/app.log");
    let requests = dir.join("logs/requests.jsonl");
    let mut writer = Writer::open(&app);
    writer.lines(5);
    std::fs::write(
        &requests,
        "{\"provider\":\"glm\",\"tool\":\"chat\",\"status\":\"200 OK\"}\n".repeat(3),
    )
    .expect("requests");
    for each in [&app, &requests] {
        chmod(each, 0o000);
    }
    std::fs::write(
        dir.join("exporter.yml"),
        "collectors:\n  host: { enabled: false }\n  log_patterns:\n    - name: locked\n      \
         path: logs/app*.log\n      read_existing: true\n      patterns:\n        - { name: error, \
         regex: '\\b(ERROR|CRITICAL)\\b' }\n  wsdaemon:\n    - name: exai\n      request_log:\n        \
         path: logs/requests.jsonl\n        read_existing: true\n",
    )
    .expect("exporter.yml");
    chmod(&dir.join("exporter.yml"), 0o644);

    let (exporter, address) = start_exporter_unprivileged(dir, &[]).await;

    let follows = |text: &str| {
        [
            value(text, r#"log_up{target="locked"}"#),
            value(text, r#"log_files{target="locked"}"#),
            value(text, r#"log_lines_total{target="locked",result="read"}"#),
            value(
                text,
                r#"log_pattern_lines_total{target="locked",pattern="error"}"#,
            ),
            value(text, r#"wsdaemon_request_log_files{target="exai"}"#),
            value(
                text,
                r#"wsdaemon_requests_total{target="exai",provider="glm",tool="chat",outcome="success",status_class="2xx"}"#,
            ),
        ]
    };
    for _ in 0..3 {
        let text = scrape(address).await;
        assert_eq!(follows(&text), [0.0, 0.0, 0.0, 0.0, 0.0, -1.0], "{text}");
    }
    let warnings = |path: &Path| {
        exporter
            .output()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("cannot be opened"))
            .filter(|l| l.contains(&path.display().to_string()))
            .count()
    };
    assert_eq!(
        (warnings(&app), warnings(&requests)),
        (1, 1),
        "one warning per file, not one per scrape:\n{}",
        exporter.output()
    );

    // Readable again: read from the start, as configured.
    for each in [&app, &requests] {
        chmod(each, 0o644);
    }
    let text = scrape(address).await;
    assert_eq!(follows(&text), [1.0, 1.0, 20.0, 10.0, 1.0, 3.0], "{text}");
    assert_eq!((warnings(&app), warnings(&requests)), (1, 1));
}
