//! The MCP probe against real servers of both protocol generations: the Python SDK 2.x and
//! rmcp 3.x (modern era, 2026-07-28), the same rmcp server narrowed to 2026-07-28 alone, and
//! the Python SDK 1.x over WebSocket and Streamable HTTP (legacy era); pinned revisions the
//! server does not speak; the era remembered, and found again when the server behind a
//! target changes; a proxy that mangles the MCP headers; and the synthetic tool call with
//! each of its outcomes.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::{Collector, Scrape};
use mcpwatch_tests::engine::{engine, scrape};
use mcpwatch_tests::mcp::{
    FAILURE_REASONS, McpServer, ModernMcpServer, RmcpServer, TOOL_CALL_OUTCOMES,
};
use mcpwatch_wsdaemon::WsDaemonCollector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";

fn collector(yaml: &str) -> Arc<dyn Collector> {
    Arc::new(
        WsDaemonCollector::new(parse_yaml(yaml, Path::new("t.yml")).expect("config"))
            .expect("collector"),
    )
}

/// A target probing `url` over Streamable HTTP (or WebSocket for `ws://`), with `extra`
/// settings (YAML lines, indented by two).
fn target(name: &str, url: &str, extra: &str) -> Arc<dyn Collector> {
    let key = if url.starts_with("ws") {
        "websocket_url"
    } else {
        "mcp_url"
    };
    collector(&format!("name: {name}\n{key}: {url}\ntimeout: 5s\n{extra}"))
}

/// The value of `name` for `target` (and `labels`), or a panic naming what is missing.
fn value(scrape: &Scrape, name: &str, target: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("target", target)];
    all.extend_from_slice(labels);
    scrape
        .value(name, &all)
        .unwrap_or_else(|| panic!("no {name}{all:?}"))
}

/// The one failure reason set for `target` on `transport`, if any; every reason is present.
fn failure(scrape: &Scrape, target: &str, transport: &str) -> Option<&'static str> {
    let mut set = None;
    for reason in FAILURE_REASONS {
        let v = value(
            scrape,
            "wsdaemon_mcp_failure",
            target,
            &[("transport", transport), ("reason", reason)],
        );
        if v == 1.0 {
            assert_eq!(set, None, "{target}: two reasons");
            set = Some(reason);
        }
    }
    set
}

/// The one tool-call outcome set for `target`, checking `success` agrees with it.
fn outcome(scrape: &Scrape, target: &str, transport: &str, tool: &str) -> &'static str {
    let labels = [("transport", transport), ("tool", tool)];
    let set: Vec<&str> = TOOL_CALL_OUTCOMES
        .into_iter()
        .filter(|o| {
            let mut with = labels.to_vec();
            with.push(("outcome", o));
            value(scrape, "wsdaemon_mcp_tool_call_outcome", target, &with) == 1.0
        })
        .collect();
    assert_eq!(set.len(), 1, "{target}: outcomes {set:?}");
    let success = value(scrape, "wsdaemon_mcp_tool_call_success", target, &labels);
    assert_eq!(success == 1.0, set[0] == "success", "{target}");
    set[0]
}

/// Checks a successful probe of `target` in `era` at `revision`: the server's name and
/// version, 29 tools over three pages, the phases of that era and no other.
fn assert_probed(
    scrape: &Scrape,
    target: &str,
    transport: &str,
    (era, revision): (&str, &str),
    (name, version): (&str, &str),
) {
    let t = ("transport", transport);
    assert_eq!(
        value(scrape, "wsdaemon_mcp_up", target, &[t]),
        1.0,
        "{target}"
    );
    assert_eq!(failure(scrape, target, transport), None, "{target}");
    assert_eq!(
        value(scrape, "wsdaemon_mcp_tools", target, &[t]),
        29.0,
        "{target}"
    );
    assert_eq!(
        value(
            scrape,
            "wsdaemon_mcp_server_info",
            target,
            &[
                t,
                ("name", name),
                ("version", version),
                ("protocol_version", revision),
                ("era", era),
            ],
        ),
        1.0
    );
    assert_eq!(
        value(
            scrape,
            "wsdaemon_mcp_supported_version",
            target,
            &[t, ("version", revision)]
        ),
        1.0,
        "{target}"
    );
    assert_eq!(
        value(
            scrape,
            "wsdaemon_mcp_capability",
            target,
            &[t, ("capability", "tools")]
        ),
        1.0
    );
    let phases: &[&str] = if era == "modern" {
        &["connect", "handshake", "discover", "tools_list"]
    } else {
        &["connect", "handshake", "initialize", "tools_list", "ping"]
    };
    for phase in [
        "connect",
        "handshake",
        "discover",
        "initialize",
        "tools_list",
        "ping",
    ] {
        let seen = scrape
            .value(
                "wsdaemon_mcp_phase_duration_seconds",
                &[("target", target), t, ("phase", phase)],
            )
            .is_some();
        assert_eq!(seen, phases.contains(&phase), "{target}: phase {phase}");
    }
    let ttl = scrape.value("wsdaemon_mcp_tools_ttl_seconds", &[("target", target), t]);
    assert_eq!(ttl.is_some(), era == "modern", "{target}: ttl {ttl:?}");
}

#[tokio::test]
async fn modern_servers_are_probed_in_the_modern_era_with_every_tool_call_outcome() {
    let python = ModernMcpServer::start(29, 10, "glm-gateway", "2.3.0-test");
    let rmcp = RmcpServer::start(29, 10, "rmcp-fixture", "3.11.0-test", None);
    let narrowed = RmcpServer::start(29, 10, "modern-only", "3.11.0", Some(&[MODERN]));
    let mut collectors = Vec::new();
    for (prefix, url) in [
        ("py2", python.streamable_http_url()),
        ("rmcp", rmcp.streamable_http_url()),
        ("only", narrowed.streamable_http_url()),
    ] {
        collectors.extend([
            target(
                &format!("{prefix}-ok"),
                &url,
                "tool_call:\n  name: tool_007\n  arguments: {text: hi}\n  expect: '^tool_007: hi$'\n",
            ),
            target(
                &format!("{prefix}-fail"),
                &url,
                "tool_call: {name: fail, arguments: {reason: provider quota}}\n",
            ),
            target(
                &format!("{prefix}-unknown"),
                &url,
                "tool_call: {name: glm_chat}\n",
            ),
            target(
                &format!("{prefix}-content"),
                &url,
                "tool_call:\n  name: tool_001\n  arguments: {text: degraded}\n  expect: '^tool_001: ok$'\n",
            ),
            target(&format!("{prefix}-pinned"), &url, &format!("protocol: '{MODERN}'\n")),
        ]);
    }
    // rmcp refuses arguments that do not fit the tool with a JSON-RPC error.
    collectors.push(target(
        "rmcp-args",
        &rmcp.streamable_http_url(),
        "tool_call: {name: tool_001, arguments: {text: 5}}\n",
    ));
    // The dual-era servers still speak the legacy era when it is pinned.
    collectors.push(target(
        "py2-legacy",
        &python.streamable_http_url(),
        &format!("protocol: '{LEGACY}'\ntool_call: {{name: tool_002, arguments: {{text: hi}}}}\n"),
    ));
    collectors.push(target(
        "rmcp-legacy",
        &rmcp.streamable_http_url(),
        &format!("protocol: '{LEGACY}'\n"),
    ));
    let engine = engine(collectors);
    for round in 0..2 {
        let s = scrape(&engine, None).await;
        let http = "streamable_http";
        for (prefix, server) in [
            ("py2", ("glm-gateway", "2.3.0-test")),
            ("rmcp", ("rmcp-fixture", "3.11.0-test")),
            ("only", ("modern-only", "3.11.0")),
        ] {
            for suffix in ["ok", "fail", "unknown", "content", "pinned"] {
                let name = format!("{prefix}-{suffix}");
                assert_probed(&s, &name, http, ("modern", MODERN), server);
                assert_eq!(
                    value(&s, "mcpwatch_scrape_collector_success", &name, &[]),
                    1.0,
                    "{name} round {round}"
                );
            }
            let tool =
                |suffix: &str, tool: &str| outcome(&s, &format!("{prefix}-{suffix}"), http, tool);
            assert_eq!(tool("ok", "tool_007"), "success", "{prefix}");
            assert_eq!(tool("fail", "fail"), "tool_error", "{prefix}");
            assert_eq!(tool("unknown", "glm_chat"), "unknown_tool", "{prefix}");
            assert_eq!(
                tool("content", "tool_001"),
                "unexpected_content",
                "{prefix}"
            );
            // No call made, none timed.
            assert_eq!(
                value(
                    &s,
                    "wsdaemon_mcp_tool_call_duration_seconds",
                    &format!("{prefix}-unknown"),
                    &[("tool", "glm_chat")]
                ),
                0.0
            );
            assert!(
                s.value(
                    "wsdaemon_mcp_tool_call_success",
                    &[("target", &format!("{prefix}-pinned"))]
                )
                .is_none(),
                "no tool call configured, none reported"
            );
        }
        // rmcp's discover names every revision it knows, the Python SDK's modern path and the
        // narrowed server the modern one alone.
        for (name, versions) in [("py2-ok", 1usize), ("rmcp-ok", 5), ("only-ok", 1)] {
            let count = ["2024-11-05", "2025-03-26", "2025-06-18", LEGACY, MODERN]
                .into_iter()
                .filter(|v| {
                    s.value(
                        "wsdaemon_mcp_supported_version",
                        &[("target", name), ("version", v)],
                    )
                    .is_some()
                })
                .count();
            assert_eq!(count, versions, "{name}");
        }
        assert_eq!(outcome(&s, "rmcp-args", http, "tool_001"), "rpc_error");
        assert_probed(
            &s,
            "py2-legacy",
            http,
            ("legacy", LEGACY),
            ("glm-gateway", "2.3.0-test"),
        );
        assert_eq!(outcome(&s, "py2-legacy", http, "tool_002"), "success");
        assert_probed(
            &s,
            "rmcp-legacy",
            http,
            ("legacy", LEGACY),
            ("rmcp-fixture", "3.11.0-test"),
        );
    }
}

#[tokio::test]
async fn legacy_servers_are_probed_in_the_legacy_era_over_both_transports() {
    let server = McpServer::start(29, 10, "exai-mcp", "1.26-test");
    let mut collectors = Vec::new();
    for (transport, url) in [
        ("ws", server.websocket_url()),
        ("http", server.streamable_http_url()),
    ] {
        collectors.extend([
            target(
                &format!("{transport}-ok"),
                &url,
                "tool_call:\n  name: tool_003\n  arguments: {text: hi}\n  expect: \"^tool_003: \\\\{'text': 'hi'\\\\}$\"\n",
            ),
            target(
                &format!("{transport}-fail"),
                &url,
                "tool_call: {name: fail}\n",
            ),
            target(
                &format!("{transport}-unknown"),
                &url,
                "tool_call: {name: kimi_chat}\n",
            ),
            target(
                &format!("{transport}-2025-06-18"),
                &url,
                "protocol: '2025-06-18'\n",
            ),
        ]);
    }
    let engine = engine(collectors);
    for _ in 0..2 {
        let s = scrape(&engine, None).await;
        for (transport, label) in [("ws", "websocket"), ("http", "streamable_http")] {
            for suffix in ["ok", "fail", "unknown"] {
                assert_probed(
                    &s,
                    &format!("{transport}-{suffix}"),
                    label,
                    ("legacy", LEGACY),
                    ("exai-mcp", "1.26-test"),
                );
            }
            assert_probed(
                &s,
                &format!("{transport}-2025-06-18"),
                label,
                ("legacy", "2025-06-18"),
                ("exai-mcp", "1.26-test"),
            );
            assert_eq!(
                outcome(&s, &format!("{transport}-ok"), label, "tool_003"),
                "success"
            );
            assert_eq!(
                outcome(&s, &format!("{transport}-fail"), label, "fail"),
                "tool_error"
            );
            assert_eq!(
                outcome(&s, &format!("{transport}-unknown"), label, "kimi_chat"),
                "unknown_tool"
            );
        }
    }
    let log = server.log();
    assert!(!log.contains("Traceback") || log.contains("fail"), "{log}");
}

#[tokio::test]
async fn a_revision_the_server_does_not_speak_is_unsupported_version_without_a_hang() {
    let legacy = McpServer::start(29, 10, "exai-mcp", "1.26-test");
    let narrowed = RmcpServer::start(29, 10, "modern-only", "3.11.0", Some(&[MODERN]));
    let engine = engine(vec![
        target(
            "py1-modern",
            &legacy.streamable_http_url(),
            &format!("protocol: '{MODERN}'\ntool_call: {{name: tool_001}}\n"),
        ),
        target(
            "only-legacy",
            &narrowed.streamable_http_url(),
            &format!("protocol: '{LEGACY}'\n"),
        ),
    ]);
    for _ in 0..3 {
        let started = Instant::now();
        let s = scrape(&engine, Some(Duration::from_secs(10))).await;
        // The contract's bound, not a speed measure: an answer, not the timeout.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let http = "streamable_http";
        for name in ["py1-modern", "only-legacy"] {
            assert_eq!(value(&s, "wsdaemon_mcp_up", name, &[]), 0.0, "{name}");
            assert_eq!(
                failure(&s, name, http),
                Some("unsupported_version"),
                "{name}"
            );
            assert_eq!(
                value(&s, "mcpwatch_scrape_collector_success", name, &[]),
                0.0
            );
            assert!(
                s.value("wsdaemon_mcp_server_info", &[("target", name)])
                    .is_none()
            );
        }
        // What the narrowed server supports is reported from its -32022 error.
        assert_eq!(
            value(
                &s,
                "wsdaemon_mcp_supported_version",
                "only-legacy",
                &[("version", MODERN)]
            ),
            1.0
        );
        assert!(
            s.value(
                "wsdaemon_mcp_supported_version",
                &[("target", "only-legacy"), ("version", LEGACY)]
            )
            .is_none()
        );
        // The tool call was never reached.
        assert_eq!(outcome(&s, "py1-modern", http, "tool_001"), "failed");
    }
}

/// Byte strings replaced, each by one of the same length.
type Rewrites = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// A loopback TCP proxy in front of an MCP server: the backend can be switched, requests
/// naming `server/discover` are counted, and byte strings of what the client sends can be
/// replaced by others of the same length (as a proxy that renames headers would).
struct Proxy {
    address: String,
    backend: Arc<Mutex<String>>,
    discovers: Arc<AtomicUsize>,
    /// Requests of the legacy era: `initialize` and the DELETE that ends a session.
    initializes: Arc<AtomicUsize>,
    deletes: Arc<AtomicUsize>,
    rewrites: Rewrites,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(backend: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let backend = Arc::new(Mutex::new(backend.to_owned()));
        let discovers = Arc::new(AtomicUsize::new(0));
        let rewrites: Rewrites = Arc::default();
        let initializes = Arc::new(AtomicUsize::new(0));
        let deletes = Arc::new(AtomicUsize::new(0));
        let (b, d, r) = (backend.clone(), discovers.clone(), rewrites.clone());
        let (i, x) = (initializes.clone(), deletes.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let to = b.lock().expect("backend").clone();
                let (d, r, i, x) = (d.clone(), r.clone(), i.clone(), x.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&to).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async move {
                        let mut buffer = vec![0u8; 64 * 1024];
                        while let Ok(n) = client_read.read(&mut buffer).await {
                            if n == 0 {
                                break;
                            }
                            let mut chunk = buffer[..n].to_vec();
                            // Each request names its method once in the body, and once more
                            // in the Mcp-Method header when modern.
                            let body_mentions = count(&chunk, b"\"method\":\"server/discover\"");
                            d.fetch_add(body_mentions, Ordering::SeqCst);
                            i.fetch_add(
                                count(&chunk, b"\"method\":\"initialize\""),
                                Ordering::SeqCst,
                            );
                            x.fetch_add(count(&chunk, b"DELETE /mcp "), Ordering::SeqCst);
                            for (from, to) in r.lock().expect("rewrites").iter() {
                                replace(&mut chunk, from, to);
                            }
                            if server_write.write_all(&chunk).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let downstream = async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        Self {
            address,
            backend,
            discovers,
            initializes,
            deletes,
            rewrites,
            task,
        }
    }

    /// The URL of the proxied `/mcp`.
    fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    fn switch(&self, backend: &str) {
        *self.backend.lock().expect("backend") = backend.to_owned();
    }

    fn rewrite(&self, from: &str, to: &str) {
        assert_eq!(from.len(), to.len());
        self.rewrites
            .lock()
            .expect("rewrites")
            .push((from.as_bytes().to_vec(), to.as_bytes().to_vec()));
    }

    fn discovers(&self) -> usize {
        self.discovers.load(Ordering::SeqCst)
    }

    fn initializes(&self) -> usize {
        self.initializes.load(Ordering::SeqCst)
    }

    fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn replace(haystack: &mut [u8], from: &[u8], to: &[u8]) {
    let mut at = 0;
    while at + from.len() <= haystack.len() {
        if haystack[at..].starts_with(from) {
            haystack[at..at + from.len()].copy_from_slice(to);
            at += from.len();
        } else {
            at += 1;
        }
    }
}

/// `host:port` of a server URL.
fn address_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
        .to_owned()
}

#[tokio::test]
async fn the_era_is_remembered_and_found_again_when_the_server_behind_changes() {
    let legacy = McpServer::start(29, 10, "exai-mcp", "1.26-test");
    let modern = RmcpServer::start(29, 10, "modern-only", "3.11.0", Some(&[MODERN]));
    let proxy = Proxy::start(&address_of(&legacy.streamable_http_url())).await;
    let engine = engine(vec![target("fleet", &proxy.url(), "")]);
    let era = |s: &Scrape| {
        ["legacy", "modern"]
            .into_iter()
            .find(|era| {
                s.value(
                    "wsdaemon_mcp_server_info",
                    &[("target", "fleet"), ("era", era)],
                )
                .is_some()
            })
            .unwrap_or("none")
    };
    let http = "streamable_http";
    // First found by discover and the legacy answer to it; then remembered: no more discover.
    for _ in 0..3 {
        let s = scrape(&engine, None).await;
        assert_eq!(value(&s, "wsdaemon_mcp_up", "fleet", &[]), 1.0);
        assert_eq!(era(&s), "legacy");
    }
    assert_eq!(proxy.discovers(), 1);
    // The same address now serves a modern-only server: its answer to initialize makes the
    // probe find the era again within the same scrape, which succeeds.
    proxy.switch(&address_of(&modern.streamable_http_url()));
    let s = scrape(&engine, None).await;
    assert_eq!(
        value(&s, "wsdaemon_mcp_up", "fleet", &[]),
        1.0,
        "{}",
        modern.log()
    );
    assert_eq!(era(&s), "modern");
    assert_eq!(proxy.discovers(), 2);
    // A modern server is probed by discover itself, once per scrape.
    for _ in 0..3 {
        let s = scrape(&engine, None).await;
        assert_eq!(era(&s), "modern");
        assert_eq!(failure(&s, "fleet", http), None);
    }
    assert_eq!(proxy.discovers(), 5);
    // And back: discover, answered as a legacy server does, then initialize; remembered.
    proxy.switch(&address_of(&legacy.streamable_http_url()));
    for _ in 0..3 {
        let s = scrape(&engine, None).await;
        assert_eq!(value(&s, "wsdaemon_mcp_up", "fleet", &[]), 1.0);
        assert_eq!(era(&s), "legacy");
    }
    assert_eq!(proxy.discovers(), 6);
    // The server going away fails the probe, and the era is forgotten: the next probe finds
    // it again from discover.
    drop(legacy);
    let s = scrape(&engine, None).await;
    assert_eq!(value(&s, "wsdaemon_mcp_up", "fleet", &[]), 0.0);
    proxy.switch(&address_of(&modern.streamable_http_url()));
    let s = scrape(&engine, None).await;
    assert_eq!(era(&s), "modern");
    assert_eq!(proxy.discovers(), 7);
}

#[tokio::test]
async fn mangled_headers_and_a_missing_discover_are_named() {
    let modern = RmcpServer::start(29, 10, "modern-only", "3.11.0", Some(&[MODERN]));
    // A proxy that drops the Mcp-Method header (renaming it keeps the length).
    let stripping = Proxy::start(&address_of(&modern.streamable_http_url())).await;
    stripping.rewrite("mcp-method:", "x-dropped: ");
    // A proxy in front of a server without server/discover (it renames the method in the
    // header and the body alike, so that they still agree).
    let renaming = Proxy::start(&address_of(&modern.streamable_http_url())).await;
    renaming.rewrite("server/discover", "server/discovex");
    let engine = engine(vec![
        target("stripped", &stripping.url(), ""),
        target(
            "stripped-pinned",
            &stripping.url(),
            &format!("protocol: '{MODERN}'\n"),
        ),
        target("renamed", &renaming.url(), ""),
        target(
            "renamed-pinned",
            &renaming.url(),
            &format!("protocol: '{MODERN}'\n"),
        ),
    ]);
    for _ in 0..2 {
        let s = scrape(&engine, None).await;
        let http = "streamable_http";
        for (name, reason) in [
            ("stripped", "header_mismatch"),
            ("stripped-pinned", "header_mismatch"),
            ("renamed", "method_not_found"),
            ("renamed-pinned", "method_not_found"),
        ] {
            assert_eq!(value(&s, "wsdaemon_mcp_up", name, &[]), 0.0, "{name}");
            assert_eq!(failure(&s, name, http), Some(reason), "{name}");
        }
    }
    // A header mismatch is a modern server's answer: no legacy fallback was tried.
    assert_eq!(stripping.discovers(), 4);
}

#[tokio::test]
async fn a_probe_cut_by_the_deadline_still_ends_its_sessions() {
    let legacy = McpServer::start(29, 10, "exai-mcp", "1.26-test");
    let proxy = Proxy::start(&address_of(&legacy.streamable_http_url())).await;
    // A tool slower than the scrape: every probe is cut in the tool call, its session open.
    let engine = engine(vec![target(
        "slow",
        &proxy.url(),
        "tool_call: {name: slow, arguments: {seconds: 3}}\n",
    )]);
    for _ in 0..5 {
        let s = scrape(&engine, Some(Duration::from_secs(1))).await;
        assert_eq!(value(&s, "wsdaemon_mcp_up", "slow", &[]), 1.0);
        assert_eq!(outcome(&s, "slow", "streamable_http", "slow"), "failed");
    }
    assert_eq!(proxy.initializes(), 5);
    // Every session is ended, after the probe that opened it: the five of initialize and the
    // one the server opened answering the first discover.
    let ended = Instant::now() + Duration::from_secs(10);
    while proxy.deletes() < 6 && Instant::now() < ended {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((proxy.discovers(), proxy.deletes()), (1, 6));
}
