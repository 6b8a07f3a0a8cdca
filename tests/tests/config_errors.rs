//! `--check-config` names the file, line and column of what is wrong in the exporter's
//! configuration: a tab used for indentation, a key written twice (at the top level, in a
//! sequence item, in a nested mapping), an unknown key, a value of the wrong type; after a
//! byte order mark, after non-ASCII text on the line (columns count characters), for a key
//! that is missing (at its item) and in the web configuration (at the key of a file whose
//! content is wrong).

use std::process::Command;

use mcpwatch_tests::binaries::workspace_binary;

/// `--check-config` on `text`: the exit success and what it wrote to standard error, with
/// the file's path written as `exporter.yml`.
fn check(text: &str) -> (bool, String) {
    check_file("--config.file", "exporter.yml", text)
}

/// `--check-config` with `text` as the file of `flag`, named `name` in what it wrote.
fn check_file(flag: &str, name: &str, text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    // A file that holds no PEM block, for the web configuration's certificate settings.
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").expect("write pem");
    let out = Command::new(workspace_binary("mcpwatch-exporter"))
        .arg("--check-config")
        .arg(format!("{flag}={}", path.display()))
        .output()
        .expect("run the exporter");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), name);
    (out.status.success(), stderr)
}

/// Runs each case (what, file text, expected message) through `check`; the misplaced ones.
fn misplaced(cases: &[(&str, &str, &str)], check: impl Fn(&str) -> (bool, String)) -> Vec<String> {
    let mut wrong = Vec::new();
    for (what, text, expected) in cases {
        let (ok, stderr) = check(text);
        let expected = format!("mcpwatch-exporter: {expected}\n");
        if ok || stderr != expected {
            wrong.push(format!(
                "{what}:\n  got:      {stderr}  expected: {expected}"
            ));
        }
    }
    wrong
}

#[test]
fn errors_point_at_the_offending_line_and_column() {
    let cases = [
        (
            "a tab indents line 4",
            "collectors:\n  wsdaemon:\n    - name: a\n\t  health_url: http://127.0.0.1:1/health\n",
            "exporter.yml:4:1: found a tab character that violates indentation, while \
             scanning a plain scalar at line 3 column 13",
        ),
        (
            "a tab after spaces on line 4",
            "collectors:\n  host:\n    enabled: true\n  \tprocesses: []\n",
            "exporter.yml:4:3: found a tab character that violates indentation, while \
             scanning a plain scalar at line 3 column 14",
        ),
        (
            "a top-level key twice",
            "scrape:\n  timeout: 5s\ncollectors:\n  host: {enabled: true}\nscrape:\n  \
             timeout: 6s\n",
            "exporter.yml:5:1: scrape: duplicate field `scrape`",
        ),
        (
            "a key twice in a sequence item",
            "collectors:\n  postgres:\n    - name: a\n      dsn: postgresql://127.0.0.1:1/x\n      \
             name: b\n",
            "exporter.yml:5:7: collectors.postgres[0].name: duplicate field `name`",
        ),
        (
            "a key twice in a nested mapping",
            "collectors:\n  host:\n    enabled: true\n    processes: []\n    enabled: false\n",
            "exporter.yml:5:5: collectors.host.enabled: duplicate field `enabled`",
        ),
        (
            "a key twice in a mapping of a second item",
            "collectors:\n  wsdaemon:\n    - name: a\n      health_url: http://127.0.0.1:1/\n    \
             - name: b\n      health_url: http://127.0.0.1:2/\n      mappings:\n        \
             - pointer: /a\n          metric: b\n          metric: c\n",
            "exporter.yml:10:11: collectors.wsdaemon[1].mappings[0].metric: duplicate field \
             `metric`",
        ),
        (
            "an unknown key",
            "collectors:\n  redis:\n    - name: a\n      url: redis://127.0.0.1:1\n      \
             passwd: x\n",
            "exporter.yml:5:7: collectors.redis[0].passwd: unknown field `passwd`, expected \
             one of `name`, `url`, `username`, `password`, `password_file`, `ca_file`, \
             `connect_timeout`, `response_timeout`, `max_commands`, `max_databases`, \
             `max_replicas`",
        ),
        (
            "a value of the wrong type",
            "collectors:\n  wsdaemon:\n    - name: a\n      health_url: http://127.0.0.1:1/\n      \
             max_entries: many\n",
            "exporter.yml:5:20: collectors.wsdaemon[0].max_entries: invalid type: string \
             \"many\", expected u32",
        ),
    ];
    let wrong = misplaced(&cases, check);
    assert!(
        wrong.is_empty(),
        "{} of {} misplaced:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// A byte order mark is no column of line 1 and does not hide the keys after it; columns
/// count characters, not bytes; a key that is missing is reported at its item.
#[test]
fn positions_survive_a_byte_order_mark_non_ascii_text_and_missing_keys() {
    let cases = [
        (
            "a tab on line 1, after a byte order mark",
            "\u{feff}\tcollectors:\n  host: {}\n",
            "exporter.yml:1:1: found character that cannot start any token, while scanning \
             for the next token",
        ),
        (
            "an unknown key on line 1, after a byte order mark",
            "\u{feff}bogus: 1\n",
            "exporter.yml:1:1: bogus: unknown field `bogus`, expected one of `collectors`, \
             `scrape`, `probe`",
        ),
        (
            "a top-level key twice, after a byte order mark",
            "\u{feff}scrape:\n  timeout: 1s\nscrape:\n  timeout: 2s\n",
            "exporter.yml:3:1: scrape: duplicate field `scrape`",
        ),
        (
            "a nested key twice, after a byte order mark",
            "\u{feff}collectors:\n  host:\n    enabled: true\n    enabled: false\n",
            "exporter.yml:4:5: collectors.host.enabled: duplicate field `enabled`",
        ),
        (
            "a bad value in a flow mapping, after a byte order mark",
            "\u{feff}scrape: {timeout: 5y}\n",
            "exporter.yml:1:10: scrape.timeout: invalid duration \"5y\": unknown unit \"y\" \
             (use ms, s, m, h, d or w)",
        ),
        (
            "a check after parsing, after a byte order mark",
            "\u{feff}collectors:\n  redis:\n    - name: a\n      url: ftp://127.0.0.1\n",
            "exporter.yml:4:7: collectors.redis[0].url: expected redis://, rediss:// or \
             unix://",
        ),
        (
            "a key twice after non-ASCII text on its line",
            "collectors:\n  host: {fstypes_exclude: \"\u{e9}\u{e9}\u{e9}\", enabled: true, \
             enabled: false}\n",
            "exporter.yml:2:49: collectors.host.enabled: duplicate field `enabled`",
        ),
        (
            "a name used twice after non-ASCII text on its line",
            "collectors:\n  host:\n    processes: [{name: \"\u{e9}\", comm: a}, \
             {name: \"\u{e9}\", comm: b}]\n",
            "exporter.yml:3:40: collectors.host.processes[1].name: \"\u{e9}\" is used twice",
        ),
        (
            "an item without dsn",
            "collectors:\n  postgres:\n    - name: a\n      connect_timeout: 1s\n",
            "exporter.yml:3:7: collectors.postgres[0].dsn: set dsn or dsn_file",
        ),
        (
            "an item without dsn, with CRLF line ends",
            "collectors:\r\n  postgres:\r\n    - name: a\r\n      connect_timeout: 1s\r\n",
            "exporter.yml:3:7: collectors.postgres[0].dsn: set dsn or dsn_file",
        ),
    ];
    let wrong = misplaced(&cases, check);
    assert!(
        wrong.is_empty(),
        "{} of {} misplaced:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// The web configuration's errors found after parsing name the line of their key: a
/// certificate file with no certificate, a client CA that is required and missing.
#[test]
fn web_config_errors_point_at_their_key() {
    let cases = [
        (
            "a certificate file with no certificate",
            "# web\ntls_server_config:\n  cert_file: empty.pem\n  key_file: empty.pem\n",
            "web.yml:3:3: tls_server_config.cert_file: no certificate found",
        ),
        (
            "client certificates verified without a CA",
            "tls_server_config:\n  cert_file: empty.pem\n  key_file: empty.pem\n  \
             client_auth_type: RequireAndVerifyClientCert\n",
            "web.yml:1:1: tls_server_config.client_ca_file: required when client_auth_type \
             verifies client certificates",
        ),
    ];
    let wrong = misplaced(&cases, |text| {
        check_file("--web.config.file", "web.yml", text)
    });
    assert!(
        wrong.is_empty(),
        "{} of {} misplaced:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}
