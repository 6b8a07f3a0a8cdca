//! `GET /probe?target=URL&module=NAME` of the exporter binary, blackbox-style, against a real
//! MCP server (the Python SDK 1.x, over Streamable HTTP and WebSocket) and the stand-in
//! daemon for a target that never answers: the exposition and its values, the 400s and
//! what they say (no password echoed), the scraper's deadline kept, concurrent probes of one
//! target with different deadlines, and a reload that replaces the modules.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mcpwatch_tests::daemon::{Behaviour, Daemon, McpMode};
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::{client, scrape_text};
use mcpwatch_tests::mcp::McpServer;
use mcpwatch_tests::process::ServiceProcess;
use mcpwatch_tests::random_token;
use mcpwatch_tests::tools::{parse_openmetrics, promtool_check_metrics};

/// Modules for loopback targets: Streamable HTTP at `/mcp` or `/health` (the stand-in's
/// path that can be made to stall), WebSocket anywhere; no scrape budget of the tests is
/// cut by their timeout.
const MODULES: &str = "probe:\n  modules:\n    mcp:\n      timeout: 30s\n      \
                       allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/(mcp|health)'\n    \
                       ws:\n      transport: websocket\n      timeout: 30s\n      \
                       allowed_targets: 'ws://127\\.0\\.0\\.1:\\d+/.*'\n";

struct Exporter {
    process: ServiceProcess,
    address: SocketAddr,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn start_exporter(config: &str) -> Exporter {
    let dir = tempfile::tempdir().expect("tempdir");
    let (process, address) = mcpwatch_tests::binaries::start_exporter(
        dir.path(),
        config,
        &["--no-collector.host", "--log.level=debug"],
    )
    .await;
    Exporter {
        process,
        address,
        config: dir.path().join("exporter.yml"),
        _dir: dir,
    }
}

/// What `/probe` answered: status, content type and body (checked for duplicate series
/// when it is an exposition), and how long it took.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
    elapsed: Duration,
}

async fn probe(address: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = client().get(format!("http://{address}/probe?{query}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let start = Instant::now();
    let response = request.send().await.expect("probe request");
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body = response.text().await.expect("body");
    let elapsed = start.elapsed();
    let body = if status == 200 { checked(body) } else { body };
    Answer {
        status,
        content_type,
        body,
        elapsed,
    }
}

async fn metrics(address: SocketAddr) -> String {
    scrape_text(address, None).await
}

fn query(target: &str, module: &str) -> String {
    format!("target={target}&module={module}")
}

/// The one line of `body` that starts with `prefix`.
#[track_caller]
fn line<'a>(body: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = body.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "{prefix} in:\n{body}");
    found[0]
}

/// Modules with a synthetic tool call: of a tool the server lists, and of one it does not.
const TOOL_CALL_MODULES: &str = "    call:\n      allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n      \
                                 tool_call: {name: tool_000, arguments: {text: hi}, \
                                 expect: '^tool_000: '}\n    call_missing:\n      \
                                 allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n      \
                                 tool_call: {name: no_such_tool}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_a_real_mcp_server_over_both_transports() {
    let server = McpServer::start(29, 10, "exai-mcp", "2.3.0");
    let exporter = start_exporter(&format!("{MODULES}{TOOL_CALL_MODULES}")).await;
    let address = exporter.address;

    let http = probe(address, &query(&server.streamable_http_url(), "mcp"), &[]).await;
    assert_eq!(http.status, 200, "{}", http.body);
    assert_eq!(
        http.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = &http.body;
    assert_eq!(value_of(body, "probe_success"), Some(1.0), "{body}");
    assert!(value_of(body, "probe_duration_seconds").is_some_and(|s| s > 0.0));
    assert_eq!(
        value_of(body, "wsdaemon_mcp_tools{transport=\"streamable_http\"}"),
        Some(29.0)
    );
    assert_eq!(
        value_of(body, "wsdaemon_mcp_up{transport=\"streamable_http\"}"),
        Some(1.0)
    );
    let info = line(
        body,
        "wsdaemon_mcp_server_info{transport=\"streamable_http\",name=\"exai-mcp\",\
         version=\"2.3.0\",",
    );
    assert!(info.ends_with(",era=\"legacy\"} 1"), "{info}");
    // Blackbox-style: Prometheus' instance label names the target.
    assert!(!body.contains("target="), "{body}");
    assert!(!body.contains("wsdaemon_up"), "{body}");
    assert!(
        !body.contains("mcpwatch_"),
        "self-metrics stay on /metrics: {body}"
    );
    assert_eq!(
        promtool_check_metrics(body.as_bytes()),
        "",
        "promtool findings"
    );

    let om = probe(
        address,
        &query(&server.streamable_http_url(), "mcp"),
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert!(
        om.content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        om.content_type
    );
    parse_openmetrics(om.body.as_bytes()).expect("strict OpenMetrics parse");
    assert_eq!(
        value_of(&om.body, "probe_success"),
        Some(1.0),
        "{}",
        om.body
    );

    let ws = probe(address, &query(&server.websocket_url(), "ws"), &[]).await;
    assert_eq!(ws.status, 200, "{}", ws.body);
    assert_eq!(
        value_of(&ws.body, "probe_success"),
        Some(1.0),
        "{}",
        ws.body
    );
    assert_eq!(
        value_of(&ws.body, "wsdaemon_mcp_tools{transport=\"websocket\"}"),
        Some(29.0)
    );

    // The module's tool call is made; one that fails is told by its own series, and the
    // probe still succeeds, as wsdaemon_mcp_up does.
    let call = probe(address, &query(&server.streamable_http_url(), "call"), &[]).await;
    let tool = "transport=\"streamable_http\",tool=\"tool_000\"";
    assert_eq!(
        value_of(&call.body, "probe_success"),
        Some(1.0),
        "{}",
        call.body
    );
    assert_eq!(
        value_of(
            &call.body,
            &format!("wsdaemon_mcp_tool_call_success{{{tool}}}")
        ),
        Some(1.0),
        "{}",
        call.body
    );
    let missing = probe(
        address,
        &query(&server.streamable_http_url(), "call_missing"),
        &[],
    )
    .await;
    let tool = "transport=\"streamable_http\",tool=\"no_such_tool\"";
    assert_eq!(value_of(&missing.body, "probe_success"), Some(1.0));
    assert_eq!(
        value_of(
            &missing.body,
            &format!("wsdaemon_mcp_tool_call_outcome{{{tool},outcome=\"unknown_tool\"}}")
        ),
        Some(1.0),
        "{}",
        missing.body
    );

    // One collector per module and target, kept between probes.
    let own = metrics(address).await;
    assert_eq!(value_of(&own, "mcpwatch_probe_cached_targets"), Some(4.0));
    assert_eq!(
        value_of(&own, "mcpwatch_probe_requests_total{module=\"mcp\"}"),
        Some(2.0)
    );
    assert_eq!(
        value_of(&own, "mcpwatch_probe_requests_total{module=\"ws\"}"),
        Some(1.0)
    );
    assert_eq!(
        value_of(&own, "mcpwatch_probe_failures_total{module=\"mcp\"}"),
        Some(0.0)
    );

    let index = client()
        .get(format!("http://{address}/"))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("body");
    assert!(
        index.contains(
            "<li><code>GET /probe?target=URL&amp;module=NAME</code>: probe an MCP server \
             with one of the modules: call, call_missing, mcp, ws</li>"
        ),
        "{index}"
    );
    drop(exporter);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_400s_that_name_the_problem() {
    let exporter = start_exporter(MODULES).await;
    let address = exporter.address;
    let password = random_token("Pw0rd");
    for (query, expected) in [
        (
            "target=http://127.0.0.1:1/mcp&module=nope".to_owned(),
            "Unknown module \"nope\"; the modules are: mcp, ws.",
        ),
        (
            "target=http://127.0.0.1:1/mcp".to_owned(),
            "Missing the module parameter: ask /probe?target=URL&module=NAME; the modules \
             are: mcp, ws.",
        ),
        (
            "module=mcp".to_owned(),
            "Missing the target parameter: ask /probe?target=URL&module=NAME.",
        ),
        (
            "target=http://192.0.2.1:8000/mcp&module=mcp".to_owned(),
            "The target \"http://192.0.2.1:8000/mcp\" is not allowed by module \"mcp\": it \
             does not match its allowed_targets.",
        ),
        (
            "target=ws://127.0.0.1:1/mcp&module=mcp".to_owned(),
            "The target \"ws://127.0.0.1:1/mcp\" has scheme ws; module \"mcp\" allows http, \
             https.",
        ),
        (
            format!("target=http://ops:{password}@127.0.0.1:1/mcp?token={password}&module=mcp"),
            "The target \"http://<secret>@127.0.0.1:1/mcp\" holds credentials, which are \
             refused in a URL: give them in module \"mcp\"'s bearer_token, bearer_token_file \
             or headers.",
        ),
        (
            "target=127.0.0.1:1/mcp&module=mcp".to_owned(),
            "The target \"<secret>\" is not a URL with a scheme and a host, such as \
             http://127.0.0.1:8000/mcp.",
        ),
        (
            "target=http://127.0.0.1:70000/mcp&module=mcp".to_owned(),
            "The target is not valid: \"http://127.0.0.1:70000/<…>\": invalid port.",
        ),
    ] {
        let answer = probe(address, &query, &[]).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert_eq!(answer.content_type, "text/plain; charset=utf-8");
        assert_eq!(answer.body, format!("{expected}\n"), "{query}");
    }
    let post = client()
        .post(format!(
            "http://{address}/probe?target=http://127.0.0.1:1/mcp&module=mcp"
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET");

    let own = metrics(address).await;
    assert_eq!(
        value_of(&own, "mcpwatch_probe_bad_requests_total"),
        Some(8.0)
    );
    let log = exporter.process.output();
    assert!(log.contains("Probe request refused."), "{log}");
    assert!(!log.contains(&password), "{log}");
}

/// A target that accepts connections and never answers: the stand-in daemon stalls a
/// WebSocket upgrade (`NoUpgrade`) and its `/health` path (a Streamable HTTP POST there).
async fn hanging_daemon() -> (Daemon, [(String, &'static str); 2]) {
    let daemon = Daemon::start(Behaviour {
        health_delay: Duration::from_secs(30),
        mcp: McpMode::NoUpgrade,
        ..Behaviour::default()
    })
    .await;
    let targets = [(daemon.websocket_url(), "ws"), (daemon.health_url(), "mcp")];
    (daemon, targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_is_answered_with_probe_success_0_within_the_scrapers_deadline() {
    let (_daemon, targets) = hanging_daemon().await;
    let exporter = start_exporter(MODULES).await;
    for (target, module) in &targets {
        let answer = probe(
            exporter.address,
            &query(target, module),
            &[("X-Prometheus-Scrape-Timeout-Seconds", "2")],
        )
        .await;
        assert!(
            answer.elapsed < Duration::from_secs(2),
            "{module}: answered after {:?}, past the scraper's 2 s",
            answer.elapsed
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            value_of(&answer.body, "probe_success"),
            Some(0.0),
            "{}",
            answer.body
        );
        let transport = if *module == "ws" {
            "websocket"
        } else {
            "streamable_http"
        };
        assert_eq!(
            value_of(
                &answer.body,
                &format!("wsdaemon_mcp_failure{{transport=\"{transport}\",reason=\"timeout\"}}")
            ),
            Some(1.0),
            "{}",
            answer.body
        );
    }
    let own = metrics(exporter.address).await;
    assert_eq!(
        value_of(&own, "mcpwatch_probe_failures_total{module=\"ws\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_probes_of_one_target_with_different_deadlines_each_get_their_answer() {
    let server = McpServer::start(29, 10, "exai-mcp", "2.3.0");
    let (_daemon, hanging) = hanging_daemon().await;
    let exporter = start_exporter(MODULES).await;
    let address = exporter.address;

    // The real server: every probe succeeds, whatever its deadline.
    let target = query(&server.streamable_http_url(), "mcp");
    let deadlines = ["1", "2", "3", "5", "10", ""];
    let answers = futures_util::future::join_all(deadlines.iter().map(|seconds| {
        let target = target.clone();
        async move {
            let header = [("X-Prometheus-Scrape-Timeout-Seconds", *seconds)];
            let headers: &[(&str, &str)] = if seconds.is_empty() { &[] } else { &header };
            probe(address, &target, headers).await
        }
    }))
    .await;
    for (seconds, answer) in deadlines.iter().zip(&answers) {
        assert_eq!(answer.status, 200, "{seconds}: {}", answer.body);
        assert_eq!(
            value_of(&answer.body, "probe_success"),
            Some(1.0),
            "deadline {seconds}: {}",
            answer.body
        );
        assert_eq!(
            value_of(
                &answer.body,
                "wsdaemon_mcp_tools{transport=\"streamable_http\"}"
            ),
            Some(29.0),
            "deadline {seconds}"
        );
    }

    // The hanging target: each probe ends by its own deadline, neither cut at a shorter
    // one's nor kept to a longer one's.
    let (ws_target, module) = &hanging[0];
    let target = query(ws_target, module);
    let deadlines = [1_u64, 2, 3];
    let answers = futures_util::future::join_all(deadlines.iter().map(|seconds| {
        let target = target.clone();
        async move {
            let seconds = seconds.to_string();
            probe(
                address,
                &target,
                &[("X-Prometheus-Scrape-Timeout-Seconds", &seconds)],
            )
            .await
        }
    }))
    .await;
    for (seconds, answer) in deadlines.iter().zip(&answers) {
        assert_eq!(answer.status, 200, "{seconds}: {}", answer.body);
        assert_eq!(value_of(&answer.body, "probe_success"), Some(0.0));
        assert!(
            answer.elapsed < Duration::from_secs(*seconds),
            "the {seconds} s probe answered after {:?}",
            answer.elapsed
        );
    }
    // The 3 s probe had 2.5 s (its deadline less the 0.5 s offset), not the 1 s probe's.
    assert!(
        answers[2].elapsed > Duration::from_secs(2),
        "the 3 s probe ended after {:?}",
        answers[2].elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_replaces_the_modules_and_empties_the_cache() {
    let server = McpServer::start(29, 10, "exai-mcp", "2.3.0");
    let exporter = start_exporter(MODULES).await;
    let address = exporter.address;
    let target = server.streamable_http_url();
    let answer = probe(address, &query(&target, "mcp"), &[]).await;
    assert_eq!(value_of(&answer.body, "probe_success"), Some(1.0));

    write(
        &exporter.config,
        "probe:\n  modules:\n    fleet:\n      allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n",
    );
    let reload = client()
        .post(format!("http://{address}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(reload.status(), 200);
    let own = metrics(address).await;
    assert_eq!(value_of(&own, "mcpwatch_probe_cached_targets"), Some(0.0));
    let gone = probe(address, &query(&target, "mcp"), &[]).await;
    assert_eq!(gone.status, 400);
    assert_eq!(
        gone.body,
        "Unknown module \"mcp\"; the modules are: fleet.\n"
    );
    let answer = probe(address, &query(&target, "fleet"), &[]).await;
    assert_eq!(
        value_of(&answer.body, "probe_success"),
        Some(1.0),
        "{}",
        answer.body
    );

    // A module the new file gets wrong: the reload is refused and the modules stay.
    write(
        &exporter.config,
        "probe:\n  modules:\n    fleet:\n      allowed_targets: '(unclosed'\n",
    );
    let reload = client()
        .post(format!("http://{address}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(reload.status(), 500);
    let error = reload.text().await.expect("body");
    assert!(
        error.contains(&format!(
            "{}:4:7: probe.modules.fleet.allowed_targets: invalid regular expression",
            exporter.config.display()
        )),
        "{error}"
    );
    let answer = probe(address, &query(&target, "fleet"), &[]).await;
    assert_eq!(value_of(&answer.body, "probe_success"), Some(1.0));
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}
