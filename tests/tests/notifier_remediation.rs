//! Remediation actions, one run each, against real programs and a real HTTP server: shell
//! scripts written to a temporary directory (run without a shell in between), and an axum
//! server in the test that checks the HMAC signature on its own. Variables reach a command
//! only when their pattern takes the value; a timeout kills the whole process group; the
//! output is bounded; `--check-config` of the binary refuses what is not allowed.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use mcpwatch_notifier::NotifierConfig;
use mcpwatch_notifier::payload::Notification;
use mcpwatch_notifier::remediation::{DEFAULT_PATH, Outcome, Remediations, RunReport, run};
use mcpwatch_notifier::template::{EventContext, MessageContext};
use mcpwatch_tests::notifier::payload;
use mcpwatch_tests::random_token;
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
    let good = format!(
        "{head}remediations:\n  restart:\n    command:\n      argv: ['{allowed}', '{{service}}']\n\
         \x20     variables: {{service: {{label: service}}}}\n\
         route:\n  routes:\n    - matchers: ['service=\"gateway\"']\n      remediation: restart\n"
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
