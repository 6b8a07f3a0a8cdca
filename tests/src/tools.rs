//! Outside programs the tests check output with.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The path of `program`, or a failure that says how to install it.
///
/// # Panics
/// When the program is not installed.
pub fn require(program: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{program} is not installed: run ./tests/run.sh, or as root: {install}")
    })
}

/// Runs `program args` with `input` on stdin; returns the exit code, stdout and stderr.
///
/// # Panics
/// When the program cannot be run.
pub fn pipe(program: &PathBuf, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `promtool check metrics` on a classic text exposition: its findings (empty when clean).
///
/// # Panics
/// When promtool is missing.
pub fn promtool_check_metrics(exposition: &[u8]) -> String {
    let promtool = require("promtool", "apt-get install -y prometheus");
    let (code, stdout, stderr) = pipe(&promtool, &["check", "metrics"], exposition);
    let mut findings = format!("{stdout}{stderr}");
    if code != Some(0) && findings.is_empty() {
        findings = format!("promtool exited with {code:?}");
    }
    findings
}

/// Parses an OpenMetrics exposition with the strict parser of Python's `prometheus_client`;
/// returns the number of metric families or the parser's error.
///
/// # Panics
/// When python3 or `prometheus_client` is missing.
pub fn parse_openmetrics(exposition: &[u8]) -> Result<usize, String> {
    let python = require("python3", "apt-get install -y python3");
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(sys.stdin.read()))\n\
        print(len(families))\n";
    let (code, stdout, stderr) = pipe(&python, &["-c", script], exposition);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "prometheus_client is not installed: run ./tests/run.sh, or pip install prometheus_client"
    );
    match code {
        Some(0) => Ok(stdout.trim().parse().unwrap_or(0)),
        _ => Err(stderr),
    }
}
