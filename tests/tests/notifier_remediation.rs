//! Remediation actions, one run each, against real programs and a real HTTP server: shell
//! scripts written to a temporary directory (run without a shell in between), and an axum
//! server in the test that checks the HMAC signature on its own. Variables reach a command
//! only when their pattern takes the value; a timeout kills the whole process group; the
//! output is bounded; `--check-config` of the binary refuses what is not allowed.
//!
//! Then end to end, through incidents of the notifier binary: once with two replicas on
//! one PostgreSQL, the timeout enforced before level 1 is told, a fix that resolves the
//! alerts before anyone is told, no run while a window holds an alert, a run whose
//! replica dies recorded abandoned and not run again, a signed HTTP action, and a run
//! that a graceful stop waits for.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use mcpwatch_notifier::NotifierConfig;
use mcpwatch_notifier::payload::Notification;
use mcpwatch_notifier::remediation::{DEFAULT_PATH, Outcome, Remediations, RunReport, run};
use mcpwatch_notifier::template::{EventContext, MessageContext};
use mcpwatch_tests::notifier::{NotifierProcess, TestAlert, payload};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::random_token;
use mcpwatch_tests::stand_in::{HttpStandIn, ReceivedRequest};
use serde_json::Value;
use sha2::Sha256;

/// How long a run may take before the test gives up on it (a run that hangs fails the
/// test instead of hanging it).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A directory of scripts, and the notifier configuration that allows them.
struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an executable `/bin/sh` script; its path.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    /// `{dir}` in `text` is the directory.
    fn text(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir.path().display().to_string())
    }
}

/// The actions of a configuration (its text after `{dir}` is replaced).
fn actions(scripts: &Scripts, text: &str) -> Remediations {
    let config = NotifierConfig::parse(&scripts.text(text), &scripts.path("notifier.yml"))
        .unwrap_or_else(|e| panic!("configuration: {e}"));
    Remediations::build(&config).expect("actions")
}

/// The context of incident 7 with one firing alert per label set.
fn incident(alerts: &[&[(&str, &str)]]) -> MessageContext {
    let test_alerts: Vec<_> = alerts
        .iter()
        .map(|labels| (*labels, "firing", "2026-11-22T10:00:00Z"))
        .collect();
    let body = payload(
        "mcpwatch",
        "{}:{alertname=\"GatewayDown\"}",
        &test_alerts,
        "http://am:9093",
    );
    let notification = Arc::new(Notification::parse(body.to_string().as_bytes()).expect("parse"));
    let all: Vec<usize> = (0..notification.alerts.len()).collect();
    MessageContext::all(&notification, &all).with_event(EventContext {
        kind: "opened",
        incident: Some(7),
        ..EventContext::default()
    })
}

async fn run_named(actions: &Remediations, name: &str, context: &MessageContext) -> RunReport {
    let action = actions.get(name).expect("the action");
    tokio::time::timeout(RUN_LIMIT, run(action, context))
        .await
        .unwrap_or_else(|_| panic!("{name} did not return within {RUN_LIMIT:?}"))
}

/// Whether process `pid` still runs (a zombie is not running).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn pid_in(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

async fn gone(pid: u32) {
    mcpwatch_tests::wait_for_async(
        &format!("process {pid} to be gone"),
        Duration::from_secs(10),
        || async move { (!running(pid)).then_some(()) },
    )
    .await;
}

const GATEWAY: &[(&str, &str)] = &[
    ("alertname", "GatewayDown"),
    ("service", "gateway"),
    ("instance", "mcp-1:3001"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_gets_its_variables_as_arguments_and_an_environment_of_its_own() {
    let scripts = Scripts::new();
    let script = scripts.script(
        "restart.sh",
        &scripts.text(
            "printf '%s\\n' \"$@\" > {dir}/args\n/usr/bin/env > {dir}/env\npwd > {dir}/pwd\n\
             echo restarted\necho 'a warning' >&2",
        ),
    );
    let token = random_token("tok");
    let actions = actions(
        &scripts,
        &format!(
            "remediation:\n  allowed_commands: ['{script}']\n\
             remediations:\n  restart:\n    command:\n\
             \x20     argv: ['{script}', '--service', '{{service}}', '--target={{instance}}/{{service}}', '{{{{literal}}}}']\n\
             \x20     variables:\n        service: {{label: service}}\n        instance: {{label: instance, pattern: '[a-z0-9-]+:[0-9]+'}}\n\
             \x20     env: {{TOKEN: {token}}}\n      working_dir: '{{dir}}'\n"
        ),
    );
    let report = run_named(&actions, "restart", &incident(&[GATEWAY, GATEWAY])).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.action, "restart");
    assert_eq!(report.kind, "command");
    assert!(report.finished_at >= report.started_at);
    assert!(!report.truncated);
    let mut lines: Vec<&str> = report.output.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["a warning", "restarted"]);
    assert_eq!(
        std::fs::read_to_string(scripts.path("args")).expect("args"),
        "--service\ngateway\n--target=mcp-1:3001/gateway\n{literal}\n"
    );
    let env: BTreeMap<String, String> = std::fs::read_to_string(scripts.path("env"))
        .expect("env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // What the shell itself sets aside, nothing of the test's environment.
    let passed: BTreeMap<&str, &str> = env
        .iter()
        .filter(|(k, _)| !["PWD", "SHLVL", "_", "OLDPWD"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        passed,
        BTreeMap::from([
            ("MCPWATCH_ACTION", "restart"),
            ("MCPWATCH_INCIDENT", "7"),
            ("PATH", DEFAULT_PATH),
            ("TOKEN", token.as_str()),
        ])
    );
    assert_eq!(
        std::fs::read_to_string(scripts.path("pwd"))
            .expect("pwd")
            .trim(),
        scripts.dir.path().display().to_string()
    );
    // The environment's values are not in the report.
    let json = serde_json::to_string(&report).expect("JSON");
    assert!(!json.contains(&token), "{json}");
    assert!(json.contains("\"result\":\"succeeded\""), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_reports_its_exit_code_and_output() {
    let scripts = Scripts::new();
    let script = scripts.script("fail.sh", "echo 'no such service' >&2\nexit 3");
    let actions = actions(
        &scripts,
        &format!(
            "remediation: {{allowed_commands: ['{script}']}}\n\
             remediations:\n  fail:\n    command: {{argv: ['{script}']}}\n"
        ),
    );
    let report = run_named(&actions, "fail", &incident(&[GATEWAY])).await;
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            exit_code: Some(3),
            signal: None,
            http_status: None,
            reason: "exit code 3".into()
        }
    );
    assert_eq!(report.output, "no such service\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_command_and_what_it_started() {
    let scripts = Scripts::new();
    let script = scripts.script(
        "hang.sh",
        &scripts.text(
            "sleep 1000 &\necho $! > {dir}/child.pid\necho $$ > {dir}/self.pid\necho started\nwait",
        ),
    );
    let actions = actions(
        &scripts,
        &format!(
            "remediation: {{allowed_commands: ['{script}']}}\n\
             remediations:\n  hang:\n    command: {{argv: ['{script}'], timeout: 1s}}\n"
        ),
    );
    let report = run_named(&actions, "hang", &incident(&[GATEWAY])).await;
    assert_eq!(report.outcome, Outcome::TimedOut, "{report:?}");
    assert_eq!(report.output, "started\n");
    assert!(report.duration >= Duration::from_secs(1), "{report:?}");
    let child = pid_in(&scripts.path("child.pid"));
    let script_pid = pid_in(&scripts.path("self.pid"));
    gone(script_pid).await;
    gone(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_command_leaves_behind_is_killed_and_does_not_hold_the_run() {
    let scripts = Scripts::new();
    let script = scripts.script(
        "leave.sh",
        &scripts.text(
            "sleep 1000 &\necho $! > {dir}/left.pid\n\
             setsid sh -c 'echo $$ > {dir}/escaped.tmp && mv {dir}/escaped.tmp {dir}/escaped.pid && exec sleep 1000' &\n\
             while [ ! -s {dir}/escaped.pid ]; do sleep 0.05; done\necho done",
        ),
    );
    let actions = actions(
        &scripts,
        &format!(
            "remediation: {{allowed_commands: ['{script}']}}\n\
             remediations:\n  leave:\n    command: {{argv: ['{script}'], timeout: 10m}}\n"
        ),
    );
    // Both sleepers hold the output pipes; the run still ends with the script. The script
    // ends only once the escaped one is in its own session (it wrote its pid from there).
    let report = run_named(&actions, "leave", &incident(&[GATEWAY])).await;
    let escaped = pid_in(&scripts.path("escaped.pid"));
    let left = pid_in(&scripts.path("left.pid"));
    assert!(running(escaped), "the escaped process is outside the group");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(escaped).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.output, "done\n");
    gone(left).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_cut_at_exactly_max_output_bytes() {
    let scripts = Scripts::new();
    let script = scripts.script(
        "loud.sh",
        "head -c \"$1\" /dev/zero | tr '\\0' x\nhead -c \"$1\" /dev/zero | tr '\\0' y >&2",
    );
    let actions = actions(
        &scripts,
        &format!(
            "remediation: {{allowed_commands: ['{script}']}}\n\
             remediations:\n\
             \x20 loud:\n    command: {{argv: ['{script}', '300000'], max_output_bytes: 1000}}\n\
             \x20 exact:\n    command: {{argv: ['{script}', '500'], max_output_bytes: 1000}}\n"
        ),
    );
    let report = run_named(&actions, "loud", &incident(&[GATEWAY])).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.output.len(), 1000);
    assert!(report.output.chars().all(|c| c == 'x' || c == 'y'));
    assert!(report.truncated);
    let report = run_named(&actions, "exact", &incident(&[GATEWAY])).await;
    assert_eq!(report.output.len(), 1000);
    assert_eq!(report.output.matches('x').count(), 500);
    assert!(!report.truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_its_pattern_refuses_is_never_executed() {
    let scripts = Scripts::new();
    let script = scripts.script("touch.sh", "echo \"$1\" >> \"$0.ran\"");
    let marker = PathBuf::from(format!("{script}.ran"));
    let actions = actions(
        &scripts,
        &format!(
            "remediation: {{allowed_commands: ['{script}']}}\n\
             remediations:\n  restart:\n    command:\n      argv: ['{script}', '{{service}}']\n\
             \x20     variables: {{service: {{label: service}}}}\n"
        ),
    );
    let long = "a".repeat(129);
    for hostile in [
        "; rm -rf /",
        "$(id)",
        "`id`",
        "gateway\nid",
        "gateway\n",
        "",
        "a b",
        "../../etc/passwd",
        long.as_str(),
    ] {
        let labels: &[(&str, &str)] = &[("alertname", "GatewayDown"), ("service", hostile)];
        let report = run_named(&actions, "restart", &incident(&[labels])).await;
        match &report.outcome {
            Outcome::Refused { reason } => {
                assert!(
                    reason.starts_with("variable service: label \"service\" is ")
                        && reason.ends_with("which does not match ^[A-Za-z0-9_.:-]{1,128}$"),
                    "{reason}"
                );
            }
            other => panic!("{hostile:?} was not refused: {other:?}"),
        }
        assert!(!marker.exists(), "{hostile:?} was executed");
    }
    // Alerts that disagree, or lack the label: refused too.
    let other: &[(&str, &str)] = &[("alertname", "GatewayDown"), ("service", "db")];
    let report = run_named(&actions, "restart", &incident(&[GATEWAY, other])).await;
    assert!(
        matches!(&report.outcome, Outcome::Refused { reason } if reason.contains("different values")),
        "{report:?}"
    );
    let none: &[(&str, &str)] = &[("alertname", "GatewayDown")];
    let report = run_named(&actions, "restart", &incident(&[GATEWAY, none])).await;
    assert!(
        matches!(&report.outcome, Outcome::Refused { reason } if reason.contains("an alert has no label \"service\"")),
        "{report:?}"
    );
    assert!(!marker.exists());
    // A value the pattern takes runs, once.
    let report = run_named(&actions, "restart", &incident(&[GATEWAY, GATEWAY])).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker"),
        "gateway\n"
    );
}

/// What the test's HTTP server saw: each request's headers, path and body, and whether
/// its signature held.
#[derive(Default)]
struct Seen {
    requests: Vec<(HeaderMap, String, Vec<u8>, bool)>,
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, computed here, not by the notifier.
fn expected_signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Seen>>,
    serve: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

/// An HTTP server: `/ok` answers 200 `restarted` to a correctly signed request (401
/// otherwise), `/broken` answers 500 echoing the request's path and query, `/slow` waits
/// 10 s, `/big` answers 100 KB.
async fn receiver(key: &'static [u8]) -> Receiver {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handler = move |State(seen): State<Arc<Mutex<Seen>>>,
                        uri: Uri,
                        headers: HeaderMap,
                        body: Bytes| async move {
        let signed = match (
            headers
                .get("x-mcpwatch-timestamp")
                .and_then(|v| v.to_str().ok()),
            headers
                .get("x-mcpwatch-signature")
                .and_then(|v| v.to_str().ok()),
        ) {
            (Some(ts), Some(sig)) => sig == expected_signature(key, ts, &body),
            _ => false,
        };
        let path = uri.path().to_owned();
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requests
            .push((headers, path.clone(), body.to_vec(), signed));
        match path.as_str() {
            "/ok" if signed => (StatusCode::OK, "restarted".to_owned()),
            "/ok" => (StatusCode::UNAUTHORIZED, "bad signature".to_owned()),
            "/broken" => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot handle POST {uri}"),
            ),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                (StatusCode::OK, "late".to_owned())
            }
            _ => (StatusCode::OK, "z".repeat(100_000)),
        }
    };
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let serve = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { url, seen, serve }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_action_is_signed_as_documented_and_keeps_its_secrets() {
    const KEY: &[u8] = b"remediation-hmac-key-0123456789";
    let server = receiver(KEY).await;
    let scripts = Scripts::new();
    let token = random_token("tok");
    let header = random_token("hdr");
    let key = std::str::from_utf8(KEY).expect("key");
    let action = |name: &str, path: &str, extra: &str| {
        format!(
            "\x20 {name}:\n    http:\n      url: '{}{path}?token={token}'\n\
             \x20     headers: {{Authorization: 'Bearer {header}'}}\n\
             \x20     hmac: {{secret: '{key}'}}\n{extra}",
            server.url
        )
    };
    let actions = actions(
        &scripts,
        &format!(
            "remediations:\n{}{}{}{}{}",
            action(
                "restart",
                "/ok",
                "      body: '{\"service\": {{ alerts[0].labels.service|tojson }}, \"incident\": {{ incident }}, \"action\": {{ action|tojson }}}'\n"
            ),
            action("default", "/ok", ""),
            action("broken", "/broken", ""),
            action("slow", "/slow", "      timeout: 1s\n"),
            action("big", "/big", "      max_output_bytes: 2048\n"),
        ),
    );
    let context = incident(&[GATEWAY]);
    let report = run_named(&actions, "restart", &context).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    assert_eq!(report.kind, "http");
    assert_eq!(report.output, "restarted");
    {
        let seen = server.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (headers, _, body, signed) = &seen.requests[0];
        assert!(*signed, "the signature did not verify");
        let body: Value = serde_json::from_slice(body).expect("JSON body");
        assert_eq!(
            body,
            serde_json::json!({"service": "gateway", "incident": 7, "action": "restart"})
        );
        let header_of = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(header_of("content-type"), Some("application/json"));
        assert_eq!(header_of("x-mcpwatch-action"), Some("restart"));
        assert_eq!(
            header_of("idempotency-key"),
            Some("mcpwatch-remediation-restart-7")
        );
        assert_eq!(
            header_of("authorization"),
            Some(format!("Bearer {header}").as_str())
        );
    }
    let report = run_named(&actions, "default", &context).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{report:?}");
    {
        let seen = server.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, _, body, signed) = &seen.requests[1];
        assert!(*signed, "the signature did not verify");
        let body: Value = serde_json::from_slice(body).expect("JSON body");
        assert_eq!(body["action"], "default");
        assert_eq!(body["incident"], 7);
        assert_eq!(body["alerts"][0]["labels"]["service"], "gateway");
    }
    let broken = run_named(&actions, "broken", &context).await;
    assert_eq!(
        broken.outcome,
        Outcome::Failed {
            exit_code: None,
            signal: None,
            http_status: Some(500),
            reason: "HTTP 500 Internal Server Error".into()
        }
    );
    assert!(
        broken.output.starts_with("cannot handle POST"),
        "{broken:?}"
    );
    let slow = run_named(&actions, "slow", &context).await;
    assert_eq!(slow.outcome, Outcome::TimedOut, "{slow:?}");
    let big = run_named(&actions, "big", &context).await;
    assert_eq!(big.outcome, Outcome::Succeeded);
    assert_eq!(big.output.len(), 2048);
    assert!(big.truncated);
    // No key, URL token or header value in any report.
    for report in [&report, &broken, &slow, &big] {
        let json = serde_json::to_string(report).expect("JSON");
        for secret in [key, token.as_str(), header.as_str()] {
            assert!(!json.contains(secret), "a secret in {json}");
        }
    }
}

#[test]
fn check_config_refuses_what_is_not_allowed() {
    let scripts = Scripts::new();
    let allowed = scripts.script("restart.sh", "exit 0");
    let plain_file = scripts.path("not-executable.sh");
    std::fs::write(&plain_file, "#!/bin/sh\n").expect("write");
    let plain_file = plain_file.display().to_string();
    let binary = mcpwatch_tests::binaries::workspace_binary("mcpwatch-notifier");
    let check = |text: String| {
        let path = scripts.path("notifier.yml");
        std::fs::write(&path, text).expect("write");
        let output = std::process::Command::new(&binary)
            .arg(format!("--config.file={}", path.display()))
            .arg("--check-config")
            .output()
            .expect("run");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let head = format!("remediation:\n  allowed_commands: ['{allowed}', '{plain_file}']\n");
    let policy = "escalation_policies:\n  p:\n    levels: [{channels: [log]}]\n";
    let good = format!(
        "{head}{policy}remediations:\n  restart:\n    command:\n      argv: ['{allowed}', '{{service}}']\n\
         \x20     variables: {{service: {{label: service}}}}\n\
         route:\n  routes:\n    - matchers: ['service=\"gateway\"']\n      escalation: p\n      remediation: restart\n"
    );
    let (ok, err) = check(good.clone());
    assert!(ok, "{err}");
    let cases = [
        (
            "a command not in the allow-list",
            format!("{head}remediations:\n  r:\n    command: {{argv: ['/bin/true']}}\n"),
            ":5:",
            "remediations.r.command.argv[0]: \"/bin/true\" is not in remediation.allowed_commands",
        ),
        (
            "a relative program",
            format!("{head}remediations:\n  r:\n    command: {{argv: ['restart.sh']}}\n"),
            ":5:",
            "remediations.r.command.argv[0]: \"restart.sh\" is not an absolute path",
        ),
        (
            "a program that cannot be executed",
            format!("{head}remediations:\n  r:\n    command: {{argv: ['{plain_file}']}}\n"),
            ":5:",
            "is not an executable file",
        ),
        (
            "a placeholder naming no variable",
            format!(
                "{head}remediations:\n  r:\n    command:\n      argv: ['{allowed}', '--host={{host}}']\n"
            ),
            ":6:",
            "remediations.r.command.argv[1]: {host} names no variable; declare it under variables",
        ),
        (
            "an invalid pattern",
            format!(
                "{head}remediations:\n  r:\n    command:\n      argv: ['{allowed}', '{{s}}']\n\
                 \x20     variables:\n        s: {{label: service, pattern: '(unclosed'}}\n"
            ),
            ":8:",
            "remediations.r.command.variables.s.pattern: not a valid regex",
        ),
        (
            "an allow-list entry that is not absolute",
            "remediation:\n  allowed_commands: [restart.sh]\n".to_owned(),
            ":2:",
            "remediation.allowed_commands[0]: \"restart.sh\" is not an absolute path",
        ),
        (
            "a route naming no action",
            format!("{head}route:\n  routes:\n    - remediation: nope\n"),
            ":5:",
            "route.routes[0].remediation: no remediation action is named \"nope\"",
        ),
        (
            "an action on a route whose alerts climb no escalation policy",
            format!(
                "{head}{policy}remediations:\n  restart:\n    command: {{argv: ['{allowed}']}}\n\
                 route:\n  routes:\n    - {{matchers: ['severity=\"critical\"'], escalation: p}}\n\
                 \x20   - {{matchers: ['service=\"gateway\"'], remediation: restart}}\n"
            ),
            ":12:",
            "route.routes[1].remediation: an action runs when an incident opens, and no alert that takes this route climbs an escalation policy",
        ),
        (
            "an HMAC without a key",
            format!(
                "{head}remediations:\n  h:\n    http: {{url: 'https://example.com/x', hmac: {{header: X-Sig}}}}\n"
            ),
            ":5:",
            "remediations.h.http.hmac.secret: set secret or secret_file",
        ),
        (
            "a body that is not JSON",
            format!(
                "{head}remediations:\n  h:\n    http: {{url: 'https://example.com/x', body: 'service={{{{ common_labels.job }}}}'}}\n"
            ),
            ":5:",
            "remediations.h.http.body: is not JSON for a sample alert",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, text, line, expected) in cases {
        let (ok, err) = check(text);
        if ok || !err.contains(expected) || !err.contains(&format!("notifier.yml{line}")) {
            wrong.push(format!(
                "{what}: expected {line} {expected:?}, got {ok}: {err}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------- end to end
//
// The notifier binary, a webhook stand-in as level 1's channel, scripts in a temporary
// directory: on SQLite, and on a real PostgreSQL shared by two replicas.

const TOKEN: &str = "remediation-api-token";
/// How long an end-to-end test waits for what should happen (a dead replica's lease, the
/// action's timeout and 30 s, among it).
const LIMIT: Duration = Duration::from_secs(90);
/// Ticks (of 200 ms) after the fact in which nothing more may happen: a second run, a
/// message to level 1.
const QUIET: Duration = Duration::from_secs(3);

/// A notifier configuration on `storage`: alerts of `service="gateway"` climb policy
/// `first` (level 1 told through `hook`, after the remediation when `wait`) and run
/// `action`, one of `actions` (YAML under `remediations:`); `allowed` is the allow-list.
fn notifier_config(
    storage: &str,
    hook: &HttpStandIn,
    allowed: &[&str],
    actions: &str,
    action: &str,
    wait: bool,
) -> String {
    format!(
        "{storage}delivery:\n  poll_interval: 200ms\n  timeout: 2s\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
         api:\n  auth: {{bearer_token: {TOKEN}}}\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\n\
         escalation_policies:\n  first:\n    wait_for_remediation: {wait}\n    levels: [{{channels: [hook]}}]\n\
         remediation:\n  allowed_commands: {allowed:?}\n\
         remediations:\n{actions}\
         route:\n  routes:\n    - matchers: ['service=\"gateway\"']\n      escalation: first\n      remediation: {action}\n",
        hook.endpoint()
    )
}

fn postgres_storage(dsn: &str) -> String {
    format!("storage:\n  postgres: {{dsn: '{dsn}'}}\n")
}

fn group_key(name: &str) -> String {
    format!("{{}}:{{alertname=\"{name}\"}}")
}

/// A notification of group `name` as Alertmanager `am` sends it: an alert of
/// `service="gateway"` for each (instance, severity), every one `status`.
fn gateway(name: &str, alerts: &[(&str, &str)], status: &str, am: &str) -> Value {
    let labels: Vec<Vec<(&str, &str)>> = alerts
        .iter()
        .map(|(instance, severity)| {
            vec![
                ("alertname", name),
                ("service", "gateway"),
                ("instance", instance),
                ("severity", severity),
            ]
        })
        .collect();
    let alerts: Vec<TestAlert<'_>> = labels
        .iter()
        .map(|l| (l.as_slice(), status, "2026-12-06T10:00:00Z"))
        .collect();
    payload("mcpwatch", &group_key(name), &alerts, am)
}

async fn post(notifier: &NotifierProcess, body: &Value) {
    let (status, answer) = notifier.post(body, None).await;
    assert_eq!(status, 200, "{answer}");
}

async fn api(
    notifier: &NotifierProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = mcpwatch_tests::http::client()
        .request(method, format!("{}{path}", notifier.url()))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Every incident, resolved ones too.
async fn incidents(notifier: &NotifierProcess) -> Vec<Value> {
    let (status, body) = api(
        notifier,
        reqwest::Method::GET,
        "/api/v1/incidents?state=all",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["incidents"].as_array().cloned().unwrap_or_default()
}

/// The id of group `name`'s incident, once it opened.
async fn incident_id(notifier: &NotifierProcess, name: &str) -> i64 {
    let key = group_key(name);
    mcpwatch_tests::wait_for_async(&format!("an incident of {name}"), LIMIT, || {
        let key = key.clone();
        async move {
            incidents(notifier)
                .await
                .iter()
                .find(|i| i["group_key"] == key.as_str())
                .and_then(|i| i["id"].as_i64())
        }
    })
    .await
}

async fn timeline(notifier: &NotifierProcess, id: i64) -> Vec<Value> {
    let path = format!("/api/v1/incidents/{id}/timeline");
    let (status, body) = api(notifier, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{body}");
    body["timeline"].as_array().cloned().unwrap_or_default()
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect()
}

/// Incident `id`'s timeline once it has an entry of `kind`.
async fn wait_for_entry(notifier: &NotifierProcess, id: i64, kind: &str) -> Vec<Value> {
    mcpwatch_tests::wait_for_async(
        &format!("{kind} in incident {id}'s timeline"),
        LIMIT,
        || async move {
            let entries = timeline(notifier, id).await;
            kinds(&entries).contains(&kind).then_some(entries)
        },
    )
    .await
}

/// The one entry of `kind`.
fn only<'a>(entries: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = entries.iter().filter(|e| e["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected: {entries:#?}");
    found[0]
}

fn detail(entry: &Value) -> &str {
    entry["detail"].as_str().unwrap_or("")
}

/// An entry's time, Unix ms.
fn at_ms(entry: &Value) -> i64 {
    let at = humantime::parse_rfc3339(entry["at"].as_str().expect("at")).expect("RFC 3339");
    millis_since_epoch(at)
}

fn millis_since_epoch(at: SystemTime) -> i64 {
    i64::try_from(
        at.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms fit")
}

/// When a request the stand-in received arrived, Unix ms.
fn arrived_ms(request: &ReceivedRequest) -> i64 {
    let (wall, now) = (SystemTime::now(), Instant::now());
    millis_since_epoch(wall - now.duration_since(request.at))
}

/// What level 1's channel took for group `name`.
fn messages(hook: &HttpStandIn, name: &str) -> Vec<ReceivedRequest> {
    let key = group_key(name);
    hook.requests()
        .into_iter()
        .filter(|r| r.status == Some(200) && r.json()["groupKey"] == key.as_str())
        .collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    mcpwatch_tests::wait_for_async(
        &format!("{n} lines in {}", path.display()),
        LIMIT,
        || async move {
            let found = lines(path);
            (found.len() >= n).then_some(found)
        },
    )
    .await
}

/// `mcpwatch_notifier_remediations_total`: each series' labels and value.
async fn remediation_counts(notifier: &NotifierProcess) -> BTreeMap<String, f64> {
    let text = mcpwatch_tests::exposition::checked(
        mcpwatch_tests::http::client()
            .get(format!("{}/metrics", notifier.url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics"),
    );
    text.lines()
        .filter_map(|line| line.strip_prefix("mcpwatch_notifier_remediations_total"))
        .filter_map(|rest| rest.rsplit_once(' '))
        .map(|(labels, value)| (labels.to_owned(), value.parse().expect("a value")))
        .collect()
}

fn series(action: &str, result: &str) -> String {
    format!("{{action=\"{action}\",result=\"{result}\"}}")
}

/// A script that appends the incident it runs for to `ran` (in the scripts' directory),
/// then `rest`.
fn marking_script(scripts: &Scripts, name: &str, rest: &str) -> (String, PathBuf) {
    let ran = scripts.path("ran");
    let script = scripts.script(
        name,
        &format!("echo \"$MCPWATCH_INCIDENT\" >> '{}'\n{rest}", ran.display()),
    );
    (script, ran)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediation_runs_once_with_two_replicas_on_postgres() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    let hook = HttpStandIn::webhook().await;
    let scripts = Scripts::new();
    let (script, ran) = marking_script(&scripts, "note.sh", "echo noted");
    let config = notifier_config(
        &postgres_storage(&dsn),
        &hook,
        &[&script],
        &format!("  note:\n    command: {{argv: ['{script}']}}\n"),
        "note",
        false,
    );
    let (a, b) = tokio::join!(
        NotifierProcess::start(&config),
        NotifierProcess::start(&config)
    );
    // An Alertmanager pair's copies of one notification, to both replicas at once.
    let copy_a = gateway(
        "Remedy0",
        &[("gw-0", "critical")],
        "firing",
        "http://am-0:9093",
    );
    let copy_b = gateway(
        "Remedy0",
        &[("gw-0", "critical")],
        "firing",
        "http://am-1:9093",
    );
    let ((status_a, _), (status_b, _)) = tokio::join!(a.post(&copy_a, None), b.post(&copy_b, None));
    assert_eq!((status_a, status_b), (200, 200));
    // Five more groups, each to one replica in turn.
    for i in 1..=5 {
        let to = if i % 2 == 0 { &a } else { &b };
        let name = format!("Remedy{i}");
        post(
            to,
            &gateway(
                &name,
                &[(&format!("gw-{i}"), "critical")],
                "firing",
                "http://am-0:9093",
            ),
        )
        .await;
    }
    let mut ids = BTreeMap::new();
    for i in 0..=5 {
        let name = format!("Remedy{i}");
        let id = incident_id(&a, &name).await;
        wait_for_entry(&a, id, "remediation_finished").await;
        ids.insert(name, id);
    }
    tokio::time::sleep(QUIET).await;

    let ran = lines(&ran);
    assert_eq!(ran.len(), 6, "{ran:?}");
    assert_eq!(incidents(&b).await.len(), 6);
    for (name, id) in &ids {
        assert_eq!(
            ran.iter().filter(|l| **l == id.to_string()).count(),
            1,
            "{name} (incident {id}) ran: {ran:?}"
        );
        // Read through the other replica: one timeline.
        let entries = timeline(&b, *id).await;
        assert!(detail(only(&entries, "remediation_queued")).starts_with("note"));
        assert!(detail(only(&entries, "remediation_started")).starts_with("note (command) on "));
        let finished = detail(only(&entries, "remediation_finished"));
        assert!(
            finished.starts_with("note (command): succeeded after ")
                && finished.ends_with("\noutput:\nnoted\n"),
            "{finished}"
        );
        assert!(!kinds(&entries).contains(&"remediation_skipped"));
        // Level 1 was told at once, and once.
        assert_eq!(messages(&hook, name).len(), 1, "{name}");
    }
    let mut counts = remediation_counts(&a).await;
    for (labels, n) in remediation_counts(&b).await {
        *counts.entry(labels).or_default() += n;
    }
    assert_eq!(
        counts,
        BTreeMap::from([(series("note", "succeeded"), 6.0)]),
        "summed over both replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_run_and_its_children_and_level_one_hears_after_it() {
    let hook = HttpStandIn::webhook().await;
    let scripts = Scripts::new();
    let script = scripts.script(
        "stuck.sh",
        &scripts.text(
            "echo $$ > {dir}/script.pid\nsleep 30 &\necho $! > {dir}/child.pid\necho started\nsleep 30",
        ),
    );
    let config = notifier_config(
        "",
        &hook,
        &[&script],
        &format!("  stuck:\n    command: {{argv: ['{script}'], timeout: 1s}}\n"),
        "stuck",
        true,
    );
    let notifier = NotifierProcess::start(&config).await;
    post(
        &notifier,
        &gateway("Stuck", &[("gw-1", "critical")], "firing", "http://am:9093"),
    )
    .await;
    let id = incident_id(&notifier, "Stuck").await;
    let entries = wait_for_entry(&notifier, id, "delivered").await;
    tokio::time::sleep(QUIET).await;
    let entries = {
        let later = timeline(&notifier, id).await;
        assert_eq!(
            later, entries,
            "the timeline changed after level 1 was told"
        );
        later
    };
    assert_eq!(
        kinds(&entries),
        [
            "opened",
            "remediation_queued",
            "remediation_started",
            "remediation_finished",
            "escalated",
            "told",
            "delivered"
        ]
    );
    assert_eq!(
        detail(only(&entries, "remediation_queued")),
        "stuck; level 1 is told when it ends"
    );
    let started = only(&entries, "remediation_started");
    let finished = only(&entries, "remediation_finished");
    assert!(
        detail(finished).starts_with("stuck (command): timed out after ")
            && detail(finished).ends_with("\noutput:\nstarted\n"),
        "{finished}"
    );
    // Not before its timeout.
    assert!(at_ms(finished) - at_ms(started) >= 1000, "{entries:#?}");
    let escalated = only(&entries, "escalated");
    assert_eq!(detail(escalated), "the remediation ended");
    assert_eq!(escalated["level"], 1);
    // The script and what it started in the background are gone.
    gone(pid_in(&scripts.path("script.pid"))).await;
    gone(pid_in(&scripts.path("child.pid"))).await;
    // Level 1 heard of it once, after the run ended.
    let told = messages(&hook, "Stuck");
    assert_eq!(told.len(), 1);
    assert!(
        arrived_ms(&told[0]) >= at_ms(finished),
        "level 1 was told before the remediation ended"
    );
    assert_eq!(
        remediation_counts(&notifier).await,
        BTreeMap::from([(series("stuck", "timed_out"), 1.0)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_that_resolves_the_alerts_keeps_people_out_of_it() {
    let hook = HttpStandIn::webhook().await;
    let scripts = Scripts::new();
    // The automated fix worked: the script tells the notifier the alert resolved, as
    // Alertmanager would, and says what the notifier answered.
    let script = scripts.script(
        "fix.sh",
        &scripts.text(
            "curl -sS --fail -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
             --data-binary @{dir}/resolved.json \"$(cat {dir}/url)\"",
        ),
    );
    let config = notifier_config(
        "",
        &hook,
        &[&script],
        &format!("  fix:\n    command: {{argv: ['{script}'], timeout: 20s}}\n"),
        "fix",
        true,
    );
    let notifier = NotifierProcess::start(&config).await;
    std::fs::write(scripts.path("url"), notifier.webhook_url()).expect("url");
    std::fs::write(
        scripts.path("resolved.json"),
        gateway(
            "Fixed",
            &[("gw-1", "critical")],
            "resolved",
            "http://am:9093",
        )
        .to_string(),
    )
    .expect("resolved.json");
    post(
        &notifier,
        &gateway("Fixed", &[("gw-1", "critical")], "firing", "http://am:9093"),
    )
    .await;
    let id = incident_id(&notifier, "Fixed").await;
    wait_for_entry(&notifier, id, "remediation_finished").await;
    tokio::time::sleep(QUIET).await;
    let entries = timeline(&notifier, id).await;
    // The resolve arrived while the run went on; the run's end is recorded after it.
    assert_eq!(
        kinds(&entries),
        [
            "opened",
            "remediation_queued",
            "remediation_started",
            "resolved",
            "remediation_finished"
        ],
        "{entries:#?}"
    );
    let finished = detail(only(&entries, "remediation_finished"));
    assert!(
        finished.starts_with("fix (command): succeeded after ")
            && finished.ends_with("\noutput:\n200"),
        "{finished}"
    );
    let (status, incident) = api(
        &notifier,
        reqwest::Method::GET,
        &format!("/api/v1/incidents/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{incident}");
    assert_eq!(incident["state"], "resolved", "{incident}");
    assert!(
        hook.requests().is_empty(),
        "level 1 was told: {:?}",
        hook.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_run_while_a_window_holds_one_of_the_incidents_alerts() {
    let hook = HttpStandIn::webhook().await;
    let scripts = Scripts::new();
    let (script, ran) = marking_script(&scripts, "note.sh", "");
    let config = notifier_config(
        "",
        &hook,
        &[&script],
        &format!("  note:\n    command: {{argv: ['{script}']}}\n"),
        "note",
        true,
    );
    let notifier = NotifierProcess::start(&config).await;
    // It matches every gateway alert; critical ones pass it (hold_critical is false).
    let (status, window) = api(
        &notifier,
        reqwest::Method::POST,
        "/api/v1/windows",
        Some(serde_json::json!({
            "duration": "1h",
            "matchers": ["service=\"gateway\""],
            "author": "ops@example.com",
            "reason": "gateway upgrade",
        })),
    )
    .await;
    assert_eq!(status, 201, "{window}");
    let key = window["window"]["key"].as_str().expect("key").to_owned();
    // A critical alert opens the incident; the warning beside it is held.
    post(
        &notifier,
        &gateway(
            "Mixed",
            &[("gw-1", "critical"), ("gw-2", "warning")],
            "firing",
            "http://am:9093",
        ),
    )
    .await;
    // The window matches this one, and holds none of its alerts.
    post(
        &notifier,
        &gateway(
            "Critical",
            &[("gw-3", "critical")],
            "firing",
            "http://am:9093",
        ),
    )
    .await;
    // Every alert held: no incident opens.
    post(
        &notifier,
        &gateway("Held", &[("gw-4", "warning")], "firing", "http://am:9093"),
    )
    .await;
    let mixed = incident_id(&notifier, "Mixed").await;
    let critical = incident_id(&notifier, "Critical").await;
    let mixed_entries = wait_for_entry(&notifier, mixed, "delivered").await;
    let critical_entries = wait_for_entry(&notifier, critical, "delivered").await;
    tokio::time::sleep(QUIET).await;

    assert_eq!(
        kinds(&mixed_entries),
        [
            "opened",
            "remediation_queued",
            "remediation_skipped",
            "escalated",
            "told",
            "delivered"
        ]
    );
    let skipped = detail(only(&mixed_entries, "remediation_skipped"));
    assert_eq!(
        skipped,
        format!(
            "note (command): refused: maintenance window {key} holds the incident's alerts after 0 ms"
        )
    );
    assert_eq!(
        kinds(&critical_entries),
        [
            "opened",
            "remediation_queued",
            "remediation_started",
            "remediation_finished",
            "escalated",
            "told",
            "delivered"
        ]
    );
    assert_eq!(lines(&ran), [critical.to_string()]);
    let groups: Vec<String> = incidents(&notifier)
        .await
        .iter()
        .map(|i| i["group_key"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(!groups.contains(&group_key("Held")), "{groups:?}");
    assert_eq!(messages(&hook, "Mixed").len(), 1);
    assert_eq!(messages(&hook, "Critical").len(), 1);
    assert!(messages(&hook, "Held").is_empty());
    assert_eq!(
        remediation_counts(&notifier).await,
        BTreeMap::from([
            (series("note", "refused"), 1.0),
            (series("note", "succeeded"), 1.0)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_replica_dies_is_abandoned_and_never_run_again() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    let hook = HttpStandIn::webhook().await;
    let scripts = Scripts::new();
    let ran = scripts.path("ran");
    // Longer than its timeout: only a live notifier stops it.
    let script = scripts.script(
        "slow.sh",
        &format!(
            "echo \"$MCPWATCH_INCIDENT $PPID $$\" >> '{}'\nsleep 20",
            ran.display()
        ),
    );
    let config = notifier_config(
        &postgres_storage(&dsn),
        &hook,
        &[&script],
        &format!("  slow:\n    command: {{argv: ['{script}'], timeout: 3s}}\n"),
        "slow",
        true,
    );
    let (mut a, mut b) = tokio::join!(
        NotifierProcess::start(&config),
        NotifierProcess::start(&config)
    );
    let body = gateway("Crash", &[("gw-1", "critical")], "firing", "http://am:9093");
    post(&a, &body).await;
    post(&b, &body).await;
    let line = wait_for_lines(&ran, 1).await.remove(0);
    let fields: Vec<u32> = line
        .split(' ')
        .map(|f| f.parse().expect("a number"))
        .collect();
    let (id, runner, script_pid) = (i64::from(fields[0]), fields[1], fields[2]);
    // kill -9 of the replica running it, mid-run.
    let (dead, survivor) = if runner == a.pid() {
        (&mut a, &b)
    } else {
        assert_eq!(runner, b.pid(), "run by neither replica");
        (&mut b, &a)
    };
    dead.kill();
    // Its orphan goes on: nobody is left to stop it.
    assert!(running(script_pid));
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(script_pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    );
    gone(script_pid).await;

    // The survivor finds the run's lease passed: recorded abandoned, not run again; level
    // 1 is told when the wait (the action's timeout and 30 s from the opening) is over or
    // the run is found abandoned, whichever it sees first (the lease counts from the
    // claim, a moment after the opening), and once.
    wait_for_entry(survivor, id, "remediation_skipped").await;
    wait_for_entry(survivor, id, "delivered").await;
    dead.start_again().await;
    tokio::time::sleep(QUIET).await;
    let entries = timeline(survivor, id).await;
    let steps: Vec<&str> = kinds(&entries)
        .into_iter()
        .filter(|k| *k != "delivered")
        .collect();
    let escalated = detail(only(&entries, "escalated"));
    let expected: &[&str] = if escalated == "the remediation gave no result in time" {
        &["escalated", "told", "remediation_skipped"]
    } else {
        assert_eq!(escalated, "the remediation ended");
        &["remediation_skipped", "escalated", "told"]
    };
    assert_eq!(
        steps,
        [
            &["opened", "remediation_queued", "remediation_started"][..],
            expected
        ]
        .concat(),
        "{entries:#?}"
    );
    assert!(detail(only(&entries, "remediation_started")).contains(&format!("/{runner}/")));
    let skipped = detail(only(&entries, "remediation_skipped"));
    assert!(
        skipped.starts_with("slow: abandoned: the notifier running it (")
            && skipped.contains(&format!("/{runner}/"))
            && skipped.ends_with(") stopped before it ended; it is not run again"),
        "{skipped}"
    );
    assert_eq!(lines(&ran).len(), 1, "run again");
    assert_eq!(messages(&hook, "Crash").len(), 1);
    assert_eq!(
        remediation_counts(survivor).await,
        BTreeMap::from([(series("slow", "abandoned"), 1.0)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_action_reaches_its_receiver_once_signed_for_the_incident() {
    const KEY: &[u8] = b"incident-hmac-key-0123456789abcdef";
    let server = receiver(KEY).await;
    let hook = HttpStandIn::webhook().await;
    let key = std::str::from_utf8(KEY).expect("key");
    let config = notifier_config(
        "",
        &hook,
        &[],
        &format!(
            "  scale:\n    http: {{url: '{}/ok', hmac: {{secret: '{key}'}}}}\n",
            server.url
        ),
        "scale",
        false,
    );
    let notifier = NotifierProcess::start(&config).await;
    post(
        &notifier,
        &gateway(
            "Overload",
            &[("gw-1", "critical")],
            "firing",
            "http://am:9093",
        ),
    )
    .await;
    let id = incident_id(&notifier, "Overload").await;
    let entries = wait_for_entry(&notifier, id, "remediation_finished").await;
    tokio::time::sleep(QUIET).await;
    let requests = std::mem::take(
        &mut server
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .requests,
    );
    assert_eq!(requests.len(), 1);
    let (headers, path, body, signed) = &requests[0];
    assert_eq!(path, "/ok");
    assert!(*signed, "the signature did not verify");
    assert_eq!(
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        Some(format!("mcpwatch-remediation-scale-{id}").as_str())
    );
    let body: Value = serde_json::from_slice(body).expect("JSON body");
    assert_eq!(body["incident"], id);
    assert_eq!(body["action"], "scale");
    assert_eq!(body["group_key"], group_key("Overload"));
    assert_eq!(body["alerts"][0]["labels"]["instance"], "gw-1");
    let finished = detail(only(&entries, "remediation_finished"));
    assert!(
        finished.starts_with("scale (http): succeeded after ")
            && finished.ends_with("\noutput:\nrestarted"),
        "{finished}"
    );
    let shown = serde_json::to_string(&timeline(&notifier, id).await).expect("JSON");
    assert!(!shown.contains(key) && !notifier.log().contains(key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_a_run_end_and_records_it() {
    let hook = HttpStandIn::webhook().await;
    let scripts = Scripts::new();
    let (script, ran) = marking_script(&scripts, "restart.sh", "sleep 2\necho restarted");
    let config = notifier_config(
        "",
        &hook,
        &[&script],
        &format!("  restart:\n    command: {{argv: ['{script}'], timeout: 8s}}\n"),
        "restart",
        false,
    );
    let mut notifier = NotifierProcess::start(&config).await;
    post(
        &notifier,
        &gateway(
            "Deploy",
            &[("gw-1", "critical")],
            "firing",
            "http://am:9093",
        ),
    )
    .await;
    wait_for_lines(&ran, 1).await;
    // A deploy stops it mid-run: SIGTERM waits for the run (within shutdown_grace).
    notifier.stop();
    notifier.start_again().await;
    let id = incident_id(&notifier, "Deploy").await;
    let entries = timeline(&notifier, id).await;
    let finished = detail(only(&entries, "remediation_finished"));
    assert!(
        finished.starts_with("restart (command): succeeded after ")
            && finished.ends_with("\noutput:\nrestarted\n"),
        "{finished}"
    );
    assert!(!kinds(&entries).contains(&"remediation_skipped"));
    tokio::time::sleep(QUIET).await;
    assert_eq!(lines(&ran), [id.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_past_its_grace_leaves_nothing_of_the_run_behind() {
    let hook = HttpStandIn::webhook().await;
    let scripts = Scripts::new();
    let (script, ran) = marking_script(
        &scripts,
        "long.sh",
        &scripts
            .text("echo $$ > {dir}/script.pid\nsleep 30 &\necho $! > {dir}/child.pid\nsleep 30"),
    );
    let config = notifier_config(
        "",
        &hook,
        &[&script],
        &format!("  long:\n    command: {{argv: ['{script}'], timeout: 60s}}\n"),
        "long",
        false,
    )
    .replace("delivery:\n", "delivery:\n  shutdown_grace: 1s\n");
    let mut notifier = NotifierProcess::start(&config).await;
    post(
        &notifier,
        &gateway("Long", &[("gw-1", "critical")], "firing", "http://am:9093"),
    )
    .await;
    wait_for_lines(&ran, 1).await;
    let child = scripts.path("child.pid");
    mcpwatch_tests::wait_for("the child's pid", LIMIT, || {
        std::fs::read_to_string(&child)
            .is_ok_and(|pid| pid.ends_with('\n'))
            .then_some(())
    });
    // Past shutdown_grace the notifier exits, and the run's process group goes with it.
    notifier.stop();
    gone(pid_in(&scripts.path("script.pid"))).await;
    gone(pid_in(&child)).await;
    // Its end was not recorded: the claim stands until its lease, and the run is not
    // started again.
    notifier.start_again().await;
    tokio::time::sleep(QUIET).await;
    let id = incident_id(&notifier, "Long").await;
    let entries = timeline(&notifier, id).await;
    only(&entries, "remediation_started");
    assert!(
        !kinds(&entries).contains(&"remediation_finished"),
        "{entries:#?}"
    );
    assert_eq!(lines(&ran), [id.to_string()]);
}
