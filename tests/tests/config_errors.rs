//! `--check-config` names the file, line and column of what is wrong in the exporter's
//! configuration: a tab used for indentation, a key written twice (at the top level, in a
//! sequence item, in a nested mapping), an unknown key, a value of the wrong type.

use std::process::Command;

use mcpwatch_tests::binaries::workspace_binary;

/// `--check-config` on `text`: the exit success and what it wrote to standard error, with
/// the file's path written as `exporter.yml`.
fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("exporter.yml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(workspace_binary("mcpwatch-exporter"))
        .arg("--check-config")
        .arg(format!("--config.file={}", path.display()))
        .output()
        .expect("run the exporter");
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "exporter.yml");
    (out.status.success(), stderr)
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
    assert!(
        wrong.is_empty(),
        "{} of 8 misplaced:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
