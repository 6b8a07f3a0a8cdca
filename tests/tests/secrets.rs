//! No credential is ever printed: a distinctive password in every URL-bearing flag,
//! environment variable and configuration key of the exporter (in user info and in query
//! strings), over every output path — standard output and error, text and JSON logs at
//! debug level, `/health`, `/`, `/metrics`, `/probe`, `--check-config` on valid and invalid
//! configurations, start-up failures, and `--help`. The targets are real servers and closed
//! loopback ports, so that failures are logged too.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::daemon::{Behaviour, Daemon};
use mcpwatch_tests::exposition::checked;
use mcpwatch_tests::http::client;
use mcpwatch_tests::ports::{free_address, free_port};
use mcpwatch_tests::postgres::{MONITOR_USER, PostgresOptions, PostgresServer};
use mcpwatch_tests::process::ServiceProcess;
use mcpwatch_tests::redis::RedisServer;
use mcpwatch_tests::{random_token, wait_for_async};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

/// The environment variables of the exporter that take a URL.
const URL_VARIABLES: [&str; 3] = [
    "MCPWATCH_WSDAEMON_URL",
    "MCPWATCH_POSTGRES_DSN",
    "MCPWATCH_REDIS_URL",
];

/// Where a secret was seen: each output checked, and those that showed one.
#[derive(Debug, Default)]
struct Leaks {
    checked: usize,
    found: Vec<String>,
}

impl Leaks {
    /// Records each of `secrets` that occurs in `text`.
    fn check(&mut self, secrets: &[&str], what: &str, text: &str) {
        self.checked += 1;
        for secret in secrets {
            let count = text.matches(secret).count();
            if count > 0 {
                self.found.push(format!("{what}: {count} times:\n{text}"));
            }
        }
    }
}

/// A setting the exporter must refuse: a flag, a variable or a configuration file.
#[derive(Debug)]
struct Refusal {
    what: String,
    config: Option<String>,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Refusal {
    /// `--flag=value`, then the same value in the flag's variable.
    fn flag_and_variable(flag: &str, value: &str) -> [Refusal; 2] {
        let variable = variable(flag);
        [
            Refusal {
                what: format!("--{flag}={value}"),
                config: None,
                args: vec![format!("--{flag}={value}")],
                env: vec![],
            },
            Refusal {
                what: format!("{variable}={value}"),
                config: None,
                args: vec![],
                env: vec![(variable, value.to_owned())],
            },
        ]
    }

    fn file(what: &str, text: String) -> Refusal {
        Refusal {
            what: what.to_owned(),
            config: Some(text),
            args: vec![],
            env: vec![],
        }
    }
}

/// An exporter command with no URL variable inherited from the test's environment.
fn exporter() -> Command {
    let mut command = Command::new(workspace_binary("mcpwatch-exporter"));
    for variable in URL_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// Runs the exporter to its end: exit success and everything it wrote.
fn run(
    dir: &Path,
    config: Option<&str>,
    args: &[String],
    env: &[(&str, String)],
) -> (bool, String) {
    let mut command = exporter();
    if let Some(text) = config {
        let path = dir.join("exporter.yml");
        std::fs::write(&path, text).expect("write config");
        command.arg(format!("--config.file={}", path.display()));
    }
    command
        .arg(format!("--web.listen-address={}", free_address()))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let out = command.output().expect("run the exporter");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every configuration key that holds a URL, with `password` in user info and in query
/// strings; targets on the real servers and on `closed`, a port nothing listens on.
fn valid_config(
    password: &str,
    daemon: &Daemon,
    closed: u16,
    postgres: &PostgresServer,
    redis: &RedisServer,
) -> String {
    let p = password;
    format!(
        "collectors:
  host:
    enabled: false
  postgres:
    - name: pg-wrong-password
      dsn: postgresql://{MONITOR_USER}:{p}@127.0.0.1:{pg}/postgres?sslmode=disable
    - name: pg-closed
      dsn: postgresql://{MONITOR_USER}@127.0.0.1:{closed}/postgres?password={p}&sslmode=disable
    - name: pg-real
      dsn: {real_pg}?sslmode=disable
  redis:
    - name: redis-wrong-password
      url: redis://monitor:{p}@127.0.0.1:{rd}/0
    - name: redis-closed
      url: redis://:{p}@127.0.0.1:{closed}/0
    - name: redis-real
      url: {real_redis}
  wsdaemon:
    - name: daemon
      health_url: {health}?token={p}
      websocket_url: {websocket}?token={p}
      timeout: 2s
    - name: daemon-closed
      health_url: http://127.0.0.1:{closed}/health?token={p}
      websocket_url: ws://127.0.0.1:{closed}/?token={p}
      mcp_url: http://127.0.0.1:{closed}/mcp?token={p}
      timeout: 2s
  http:
    - name: page
      url: {health}?token={p}
      bearer_token: {p}
      headers: {{X-Api-Key: {p}}}
      body_pattern_absent: unhealthy
      timeout: 2s
    - name: page-closed
      url: http://127.0.0.1:{closed}/?token={p}
      bearer_token: {p}
      timeout: 2s
scrape:
  timeout: 5s
",
        pg = postgres.port(),
        real_pg = postgres.dsn("postgres"),
        rd = redis.port(),
        real_redis = redis.url(),
        health = daemon.health_url(),
        websocket = daemon.websocket_url(),
    )
}

/// The URL-bearing flags, or the same values as environment variables.
fn url_values(password: &str, daemon: &Daemon, closed: u16) -> [(&'static str, String); 3] {
    let p = password;
    [
        (
            "wsdaemon.url",
            format!("{}?token={p}", daemon.websocket_url()),
        ),
        (
            "postgres.dsn",
            format!("postgresql://monitor:{p}@127.0.0.1:{closed}/app?sslmode=disable"),
        ),
        ("redis.url", format!("redis://:{p}@127.0.0.1:{closed}/0")),
    ]
}

fn variable(flag: &str) -> &'static str {
    match flag {
        "wsdaemon.url" => "MCPWATCH_WSDAEMON_URL",
        "postgres.dsn" => "MCPWATCH_POSTGRES_DSN",
        _ => "MCPWATCH_REDIS_URL",
    }
}

async fn get(address: SocketAddr, path: &str) -> String {
    let response = client()
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .expect("request");
    let body = response.text().await.expect("body");
    if path == "/metrics" {
        checked(body)
    } else {
        body
    }
}

/// Runs the exporter with `args` and `env`, asks every endpoint, reloads into an invalid
/// configuration, stops it; everything it served and wrote.
async fn serve_and_collect(
    dir: &Path,
    config: &str,
    invalid: &str,
    args: &[String],
    env: &[(&str, String)],
    password: &str,
) -> String {
    let path = dir.join("exporter.yml");
    std::fs::write(&path, config).expect("write config");
    let address = free_address();
    let mut command = exporter();
    command
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--web.listen-address={address}"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let mut process = ServiceProcess::spawn("mcpwatch-exporter", command, dir);
    let http = client();
    let health_url = format!("http://{address}/health");
    wait_for_async("the exporter to answer /health", LIMIT, || {
        let request = http.get(&health_url).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;

    let mut served = String::new();
    // Twice: the second scrape logs "still failing" at debug level.
    for _ in 0..2 {
        let metrics = get(address, "/metrics").await;
        assert!(
            metrics.contains("wsdaemon_up{target=\"daemon\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("redis_up{target=\"redis-real\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("pg_up{target=\"pg-real\"} 1"), "{metrics}");
        served.push_str(&metrics);
    }
    let health = get(address, "/health").await;
    assert!(
        health.contains("\"last_error\": \"health endpoint http://127.0.0.1:"),
        "{health}"
    );
    served.push_str(&health);
    served.push_str(&get(address, "/").await);
    for target in [
        format!("http://ops:{password}@127.0.0.1:1/health?token={password}"),
        format!("ws://127.0.0.1:1/?token={password}"),
    ] {
        let query = format!("/probe?target={target}&module=wsdaemon");
        served.push_str(&get(address, &query).await);
    }

    std::fs::write(&path, invalid).expect("write invalid config");
    let reload = http
        .post(format!("http://{address}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert!(!reload.status().is_success());
    served.push_str(&reload.text().await.expect("body"));
    served.push_str(&get(address, "/metrics").await);

    process.signal(Signal::SIGTERM);
    process.wait(LIMIT);
    let output = process.output();
    assert!(output.contains("Collector failed."), "{output}");
    assert!(output.contains("Configuration not reloaded"), "{output}");
    format!("{served}{output}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_any_output() {
    let password = random_token("Pw0rd");
    let p = password.as_str();
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(Behaviour::default()).await;
    let postgres = PostgresServer::start(PostgresOptions::default()).await;
    let redis = RedisServer::start(&[]).await;
    let closed = free_port();
    let secrets = [p, postgres.password(), redis.password()];
    let config = valid_config(p, &daemon, closed, &postgres, &redis);
    let mut leaks = Leaks::default();
    // A bad key next to a URL.
    let invalid = format!(
        "collectors:\n  wsdaemon:\n    - name: d\n      \
         health_url: http://127.0.0.1:{closed}/?token={p}\n      \
         bogus: http://ops:{p}@127.0.0.1:{closed}/\n"
    );

    // Flags, text logs; then the same values as environment variables, JSON logs.
    let flags: Vec<String> = url_values(p, &daemon, closed)
        .iter()
        .map(|(flag, value)| format!("--{flag}={value}"))
        .chain([
            "--log.level=debug".to_owned(),
            "--log.format=text".to_owned(),
        ])
        .collect();
    let everything = serve_and_collect(dir.path(), &config, &invalid, &flags, &[], p).await;
    leaks.check(
        &secrets,
        "the exporter run with flags and text logs",
        &everything,
    );
    let env: Vec<(&str, String)> = url_values(p, &daemon, closed)
        .into_iter()
        .map(|(flag, value)| (variable(flag), value))
        .collect();
    let json = [
        "--log.level=debug".to_owned(),
        "--log.format=json".to_owned(),
    ];
    let everything = serve_and_collect(dir.path(), &config, &invalid, &json, &env, p).await;
    assert!(everything.contains("\"level\":\"WARN\""), "{everything}");
    leaks.check(
        &secrets,
        "the exporter run with variables and JSON logs",
        &everything,
    );

    // --check-config on the valid configuration, with the flags and with the variables.
    let check = |extra: &[String]| {
        let mut args = vec!["--check-config".to_owned()];
        args.extend_from_slice(extra);
        args
    };
    let (ok, out) = run(dir.path(), Some(&config), &check(&flags), &[]);
    assert!(ok, "{out}");
    leaks.check(&secrets, "--check-config with flags", &out);
    let (ok, out) = run(dir.path(), Some(&config), &check(&json), &env);
    assert!(ok, "{out}");
    leaks.check(&secrets, "--check-config with variables", &out);

    // --help, with every variable set.
    let (ok, out) = run(dir.path(), None, &["--help".to_owned()], &env);
    assert!(ok && out.contains("MCPWATCH_WSDAEMON_URL"), "{out}");
    leaks.check(&secrets, "--help", &out);

    // Invalid settings: each is refused, and the refusal does not quote the password.
    let c = closed;
    let wsdaemon = |entry: &str| format!("collectors:\n  wsdaemon:\n    - name: d\n{entry}");
    let postgres = |entry: &str| format!("collectors:\n  postgres:\n    - name: a\n{entry}");
    let redis = |entry: &str| format!("collectors:\n  redis:\n    - name: a\n{entry}");
    let mut refused = Vec::new();
    for url in [
        format!("http://ops:{p}@127.0.0.1:{c}/health"),
        format!("http://ops:{p}@127.0.0.1:{c}"),
        format!("ws://ops:{p}@127.0.0.1:{c}/?token={p}"),
        format!("ftp://ops:{p}@127.0.0.1:{c}/?token={p}"),
        format!("http://ops:{p}@127.0.0.1:{c}/he alth?token={p}"),
        format!("http://ops:{p}/x@127.0.0.1:{c}/health"),
        format!("ops:{p}@127.0.0.1:{c}/health"),
    ] {
        refused.extend(Refusal::flag_and_variable("wsdaemon.url", &url));
    }
    for dsn in [
        format!("postgresql://ops:{p}@127.0.0.1:{c}/app?sslmode=sideways"),
        format!("postgresql://ops:{p}@127.0.0.1:{c}/app?token={p}"),
        format!("postgresql://ops:{p}@127.0.0.1:port/app"),
        format!("host=127.0.0.1 password={p} sslmode=sideways"),
    ] {
        refused.extend(Refusal::flag_and_variable("postgres.dsn", &dsn));
    }
    for url in [
        format!("http://ops:{p}@127.0.0.1:{c}/0"),
        format!("redis://ops:{p}@[127.0.0.1:{c}/0?token={p}"),
    ] {
        refused.extend(Refusal::flag_and_variable("redis.url", &url));
    }
    let user_info = format!("http://ops:{p}@127.0.0.1:{c}");
    let query = format!("http://127.0.0.1:{c}/health?token={p}");
    for (what, text) in [
        (
            "health_url with user info",
            wsdaemon(&format!("      health_url: {user_info}/health\n")),
        ),
        (
            "websocket_url with user info",
            wsdaemon(&format!(
                "      websocket_url: ws://ops:{p}@127.0.0.1:{c}/?token={p}\n"
            )),
        ),
        (
            "mcp_url with user info",
            wsdaemon(&format!("      mcp_url: {user_info}/mcp?token={p}\n")),
        ),
        (
            "mcp_url of another scheme",
            wsdaemon(&format!("      mcp_url: ftp://ops:{p}@127.0.0.1:{c}/mcp\n")),
        ),
        (
            "health_url that is no URL",
            wsdaemon(&format!(
                "      health_url: \"{user_info}/he alth?token={p}\"\n"
            )),
        ),
        (
            "a bad key next to a URL",
            wsdaemon(&format!("      health_url: {query}\n      bogus: 1\n")),
        ),
        (
            "the same key twice",
            wsdaemon(&format!(
                "      health_url: {query}\n      health_url: {user_info}\n"
            )),
        ),
        (
            "a URL as a duration",
            wsdaemon(&format!(
                "      health_url: {query}\n      timeout: {user_info}/?token={p}\n"
            )),
        ),
        (
            "a URL as a boolean",
            wsdaemon(&format!(
                "      health_url: {query}\n      \
                 insecure_skip_verify: '{user_info}/?token={p}'\n"
            )),
        ),
        (
            "a URL as a mapping type",
            wsdaemon(&format!(
                "      health_url: {query}\n      mappings:\n        - pointer: /a\n          \
                 metric: a\n          type: {user_info}/?token={p}\n"
            )),
        ),
        (
            "a URL as the target list",
            format!("collectors:\n  wsdaemon: \"{user_info}/?token={p}\"\n"),
        ),
        (
            "a URL as a target",
            format!("collectors:\n  wsdaemon:\n    - \"{user_info}/?token={p}\"\n"),
        ),
        (
            "a PostgreSQL DSN with a bad sslmode",
            postgres(&format!(
                "      dsn: postgresql://ops:{p}@127.0.0.1:{c}/app?sslmode=sideways\n"
            )),
        ),
        (
            "a PostgreSQL DSN with an unknown option",
            postgres(&format!(
                "      dsn: postgresql://ops:{p}@127.0.0.1:{c}/app?token={p}\n"
            )),
        ),
        (
            "a bad key next to a PostgreSQL DSN",
            postgres(&format!(
                "      dsn: postgresql://ops:{p}@127.0.0.1:{c}/app\n      bogus: 1\n"
            )),
        ),
        (
            "a Redis URL of another scheme",
            redis(&format!("      url: http://ops:{p}@127.0.0.1:{c}/0\n")),
        ),
        (
            "a Redis URL that does not parse",
            redis(&format!(
                "      url: redis://ops:{p}@[127.0.0.1:{c}/0?token={p}\n"
            )),
        ),
        (
            "a bad key next to a Redis URL",
            redis(&format!(
                "      url: redis://ops:{p}@127.0.0.1:{c}/0?token={p}\n      bogus: 1\n"
            )),
        ),
    ] {
        refused.push(Refusal::file(what, text));
    }
    assert_eq!(refused.len(), 44);
    // Each is refused by --check-config, and at start-up with text and with JSON logs.
    let mut accepted = Vec::new();
    for Refusal {
        what,
        config,
        args,
        env,
    } in &refused
    {
        for mode in [
            vec!["--check-config".to_owned(), "--log.level=debug".to_owned()],
            vec![
                "--log.level=debug".to_owned(),
                "--log.format=text".to_owned(),
            ],
            vec![
                "--log.level=debug".to_owned(),
                "--log.format=json".to_owned(),
            ],
        ] {
            let mut all = mode.clone();
            all.extend_from_slice(args);
            let (ok, out) = run(dir.path(), config.as_deref(), &all, env);
            leaks.check(&secrets, &format!("{what} ({mode:?})"), &out);
            if ok {
                // Accepted by --check-config: a start-up would serve and not end.
                accepted.push(format!("{what}: {out}"));
                break;
            }
            assert!(!out.trim().is_empty(), "{what} ({mode:?}): no message");
        }
    }
    assert_eq!(leaks.checked, 5 + 3 * 44 - 2 * accepted.len());
    assert!(
        leaks.found.is_empty(),
        "{} of {} outputs show a secret:\n\n{}",
        leaks.found.len(),
        leaks.checked,
        leaks.found.join("\n\n")
    );
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
}

/// The notifier's `ack` command names the notifier it could not reach without the
/// credentials or the query string of its URL.
#[test]
fn the_ack_command_never_prints_its_urls_credentials() {
    let password = random_token("AckPw");
    let closed = free_port();
    let url = format!("http://ops:{password}@127.0.0.1:{closed}/?token={password}");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(workspace_binary("mcpwatch-notifier"))
        .current_dir(dir.path())
        .args(["ack", "7", "--url", &url])
        .output()
        .expect("run mcpwatch-notifier ack");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "contacting the notifier at http://<secret>@127.0.0.1:{closed}/"
        )),
        "{text}"
    );
    assert_eq!(text.matches(&password).count(), 0, "{text}");
}

/// A webhook receiver whose error page echoes the request: the notifier's error text (log,
/// API, `send-test`) shows neither the header values it sent nor the URL's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_echo_of_the_request_is_not_repeated() {
    let token = random_token("HdrTok");
    let hook = mcpwatch_tests::stand_in::HttpStandIn::webhook().await;
    hook.push_response(mcpwatch_tests::stand_in::Scripted::Status(
        500,
        format!("upstream failed for POST /hook with X-Api-Key: {token}"),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("notifier.yml");
    std::fs::write(
        &config,
        format!(
            "channels:\n  hook:\n    webhook: {{url: '{}', headers: {{X-Api-Key: '{token}'}}}}\n",
            hook.endpoint()
        ),
    )
    .expect("write");
    let binary = workspace_binary("mcpwatch-notifier");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .args(["send-test", "--channel=hook"])
            .output()
            .expect("run send-test")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("HTTP 500"), "{text}");
    assert_eq!(text.matches(&token).count(), 0, "{text}");
    assert_eq!(
        hook.requests()[0].header("x-api-key"),
        Some(token.as_str()),
        "the header was sent"
    );
}

/// A connection URL given without its flag is refused by the command-line parser, whose
/// message names the argument: redacted, in both binaries.
#[test]
fn a_url_given_without_its_flag_is_not_printed() {
    let password = random_token("ArgPw");
    for binary in ["mcpwatch-exporter", "mcpwatch-notifier"] {
        for argument in [
            format!("postgresql://ops:{password}@127.0.0.1/app"),
            format!("--log.level=redis://:{password}@127.0.0.1:6379/"),
        ] {
            let output = Command::new(workspace_binary(binary))
                .arg(&argument)
                .output()
                .expect("run");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(output.status.code(), Some(2), "{binary}: {text}");
            assert!(text.contains("<secret>@127.0.0.1"), "{binary}: {text}");
            assert_eq!(text.matches(&password).count(), 0, "{binary}: {text}");
        }
    }
}

/// A file the exporter or the notifier is given, or a flag, that must be refused.
struct Refused {
    what: &'static str,
    binary: &'static str,
    /// `--config.file` or `--web.config.file`, and the file's text.
    file: Option<(&'static str, String)>,
    args: Vec<String>,
}

impl Refused {
    fn exporter(what: &'static str, text: String) -> Self {
        Self::file(what, "mcpwatch-exporter", "--config.file", text)
    }

    fn file(what: &'static str, binary: &'static str, flag: &'static str, text: String) -> Self {
        Self {
            what,
            binary,
            file: Some((flag, text)),
            args: Vec::new(),
        }
    }
}

/// Secrets that are not in a URL's user info or query string are not quoted back either:
/// a password written as a key (no space after its colon), a libpq connection string or a
/// URL whose password holds a backtick under a key of another type, a URL whose path is
/// the secret (a Slack webhook), a URL used as a name, a metric, a label or a CA file (whose
/// reading fails when the collector is built), a target named by a URL with credentials
/// (refused: it would become the `target` label), a password in a URL's port, brackets
/// around something that is not an IPv6 address; in the exporter's and the notifier's
/// configuration, the web configuration, and the body and log line of a reload that fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_quoted_back_from_values_keys_and_names() {
    let p = random_token("Pw0rd");
    let tail = random_token("Bt1ck");
    let secrets = [p.as_str(), tail.as_str()];
    let c = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = |entry: &str| format!("collectors:\n  redis:\n    - name: a\n{entry}");
    let postgres = |entry: &str| format!("collectors:\n  postgres:\n    - name: a\n{entry}");
    let wsdaemon = |entry: &str| {
        format!(
            "collectors:\n  wsdaemon:\n    - name: a\n      \
             health_url: http://127.0.0.1:{c}/health\n      mappings:\n        \
             - pointer: /a\n{entry}"
        )
    };
    let slack = format!("https://127.0.0.1:{c}/services/T0/B0/{p}");
    let notifier = |what, text| Refused::file(what, "mcpwatch-notifier", "--config.file", text);
    let mut cases = vec![
        Refused::exporter(
            "a password written as a key",
            format!(
                "collectors:\n  redis: [{{name: a, url: \"redis://127.0.0.1:{c}\", \
                 password:{p}}}]\n"
            ),
        ),
        Refused::exporter(
            "a DSN written as a key",
            format!(
                "collectors:\n  postgres: [{{name: a, dsn:postgresql://m:{p}@127.0.0.1:{c}/app}}]\n"
            ),
        ),
        Refused::exporter(
            "a connection string written as a key",
            postgres(&format!("      host=127.0.0.1 password={p}: x\n")),
        ),
        Refused::exporter(
            "a URL written as a key",
            redis(&format!("      redis://:{p}@127.0.0.1: 1\n")),
        ),
        Refused::exporter(
            "a connection string as a duration",
            format!("scrape:\n  timeout: \"host=db password={p}\"\n"),
        ),
        Refused::exporter(
            "a connection string as a number",
            redis(&format!(
                "      url: redis://127.0.0.1:{c}\n      \
                 max_commands: \"host=x password='{p} {tail}'\"\n"
            )),
        ),
        Refused::exporter(
            "a token in a pattern",
            format!("collectors:\n  host:\n    mountpoints_exclude: \"(token={p}\"\n"),
        ),
        Refused::exporter(
            "a URL whose password holds a backtick, as a mapping type",
            wsdaemon(&format!(
                "          metric: a\n          type: \"http://u:{p}`{tail}@127.0.0.1/\"\n"
            )),
        ),
        Refused::exporter(
            "a Slack webhook URL as a duration",
            format!("scrape:\n  timeout: \"{slack}\"\n"),
        ),
        Refused::exporter(
            "a URL as a name used twice",
            format!(
                "collectors:\n  host:\n    processes:\n      - name: \"{slack}\"\n        \
                 comm: a\n      - name: \"{slack}\"\n        comm: b\n"
            ),
        ),
        Refused::exporter(
            "a URL as a query's metric",
            postgres(&format!(
                "      dsn: postgresql://127.0.0.1:{c}/app\n      queries:\n        \
                 - metric: \"{slack}\"\n          sql: select 1\n          values: [a]\n"
            )),
        ),
        Refused::exporter(
            "a URL as a mapping's metric",
            wsdaemon(&format!("          metric: \"http://u:{p}@127.0.0.1/\"\n")),
        ),
        Refused::exporter(
            "a URL as a label",
            wsdaemon(&format!(
                "          metric: a\n          labels: {{\"{slack}\": /x}}\n"
            )),
        ),
        Refused::exporter(
            "a Redis target named by a URL with credentials",
            format!(
                "collectors:\n  redis:\n    - name: \"redis://:{p}@127.0.0.1:{c}\"\n      \
                 url: redis://127.0.0.1:{c}\n"
            ),
        ),
        Refused::exporter(
            "a PostgreSQL target named by a URL with credentials",
            format!(
                "collectors:\n  postgres:\n    \
                 - name: \"postgresql://m:{p}@127.0.0.1:{c}/app\"\n      \
                 dsn: postgresql://127.0.0.1:{c}/app\n"
            ),
        ),
        Refused::exporter(
            "a daemon target named with credentials",
            format!(
                "collectors:\n  wsdaemon:\n    - name: \"ops:{p}@127.0.0.1:{c}\"\n      \
                 health_url: http://127.0.0.1:{c}/health\n"
            ),
        ),
        Refused::exporter(
            "a URL as a CA file",
            format!(
                "collectors:\n  redis:\n    - name: a\n      url: rediss://127.0.0.1:{c}\n      \
                 ca_file: \"rediss://:{p}@127.0.0.1:{c}\"\n"
            ),
        ),
        Refused::file(
            "a web password written as a key",
            "mcpwatch-exporter",
            "--web.config.file",
            format!("basic_auth_users: {{alice:{p}}}\n"),
        ),
        Refused::file(
            "a TLS key written as a key",
            "mcpwatch-exporter",
            "--web.config.file",
            format!("tls_server_config: {{key:{p}}}\n"),
        ),
        notifier(
            "a Slack URL written as a key",
            format!("channels:\n  chat:\n    slack: {{url:{slack}}}\nroute:\n  channels: [chat]\n"),
        ),
        notifier(
            "a Slack URL as a route's channel",
            format!("channels:\n  chat:\n    log: {{}}\nroute:\n  channels: [\"{slack}\"]\n"),
        ),
        notifier(
            "a Slack URL as a channel's name",
            format!("channels:\n  \"{slack}\":\n    log: {{}}\nroute:\n  channels: [chat]\n"),
        ),
    ];
    for url in [
        format!("http://127.0.0.1:{p}/health"),
        format!("http://[{p}]/health"),
    ] {
        cases.push(Refused {
            what: "a --wsdaemon.url that is refused",
            binary: "mcpwatch-exporter",
            file: None,
            args: vec![format!("--wsdaemon.url={url}")],
        });
    }
    assert_eq!(cases.len(), 24);

    let mut leaks = Leaks::default();
    let mut accepted = Vec::new();
    for case in &cases {
        let mut command = Command::new(workspace_binary(case.binary));
        for variable in URL_VARIABLES {
            command.env_remove(variable);
        }
        command.arg("--check-config").args(&case.args);
        if let Some((flag, text)) = &case.file {
            let path = dir.path().join("config.yml");
            std::fs::write(&path, text).expect("write config");
            command.arg(format!("{flag}={}", path.display()));
        }
        let out = command.output().expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        leaks.check(&secrets, case.what, &text);
        if out.status.success() {
            accepted.push(format!("{}: {text}", case.what));
        }
    }

    // A reload into a configuration that quotes a connection string: the answer and the
    // log line.
    let path = dir.path().join("exporter.yml");
    std::fs::write(&path, "collectors:\n  host:\n    enabled: false\n").expect("write config");
    let address = free_address();
    let mut command = exporter();
    command
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--web.listen-address={address}"));
    let mut process = ServiceProcess::spawn("mcpwatch-exporter", command, dir.path());
    let http = client();
    let health_url = format!("http://{address}/health");
    wait_for_async("the exporter to answer /health", LIMIT, || {
        let request = http.get(&health_url).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    std::fs::write(
        &path,
        format!("scrape:\n  timeout: \"host=db password={p} user=m\"\n"),
    )
    .expect("write invalid config");
    let reload = http
        .post(format!("http://{address}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(reload.status().as_u16(), 500);
    let body = reload.text().await.expect("body");
    leaks.check(&secrets, "the reload's answer", &body);
    process.signal(Signal::SIGTERM);
    process.wait(LIMIT);
    let output = process.output();
    assert!(output.contains("Configuration not reloaded"), "{output}");
    leaks.check(&secrets, "the reload's log", &output);

    assert_eq!(leaks.checked, 24 + 2);
    assert!(
        leaks.found.is_empty() && accepted.is_empty(),
        "{} of {} outputs show a secret:\n\n{}\n\n{} of {} refusals accepted:\n{}",
        leaks.found.len(),
        leaks.checked,
        leaks.found.join("\n\n"),
        accepted.len(),
        cases.len(),
        accepted.join("\n")
    );
    assert!(
        body.contains("scrape.timeout: invalid duration \"host=db password=<secret> user=m\""),
        "{body}"
    );
}
