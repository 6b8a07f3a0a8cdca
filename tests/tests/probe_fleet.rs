//! A fleet of MCP servers of both protocol eras probed through the exporter's `/probe` by a
//! real Prometheus, blackbox-style: one job from `file_sd_configs`, one from `http_sd_configs`
//! (served by the test), one of targets that never answer with a short scrape timeout. The
//! servers are the Python SDK 1.x (legacy, Streamable HTTP and WebSocket), the Python SDK 2.x
//! and rmcp 3.x (modern; rmcp once more narrowed to 2026-07-28 alone). What Prometheus
//! stored is checked value by value and instance by instance: `up`, `probe_success`, the era
//! and revision of each server, its tools, the synthetic tool call; a target that the module
//! does not allow and one naming an unknown module are down with the exporter's 400, and a
//! hanging target is up with `probe_success 0` inside its scrape timeout, never timed out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::mcp::{McpServer, ModernMcpServer, RmcpServer, TOOL_CALL_OUTCOMES};
use mcpwatch_tests::ports::free_port;
use mcpwatch_tests::prometheus::Prometheus;
use mcpwatch_tests::wait_for_async;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

const LIMIT: Duration = Duration::from_secs(60);
const LEGACY: &str = "2025-11-25";
const MODERN: &str = "2026-07-28";
const FILE_JOB: &str = "mcp-fleet";
const HTTP_JOB: &str = "mcp-fleet-http";
const HANGING_JOB: &str = "mcp-fleet-hanging";
/// The hanging job's scrape timeout, in seconds: the bound its scrapes must stay under.
const HANGING_SCRAPE_TIMEOUT: f64 = 1.0;
/// The budget the exporter gives a probe under that timeout: half of it, as the timeout is
/// not above twice the 500 ms offset (docs/configuration.md, Scrape deadline).
const HANGING_BUDGET: f64 = 0.5;

/// What a target of the fleet must show in Prometheus.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Probed with success: the transport, the server's name and version, its era and the
    /// revision spoken, and whether the module makes the tool call.
    Probed {
        transport: &'static str,
        server: (&'static str, &'static str),
        era: &'static str,
        revision: &'static str,
        tool_call: bool,
    },
    /// Answered 400 by the exporter with this message: Prometheus marks it down.
    Refused(String),
    /// Accepts the connection and never answers: probe_success 0 within the scrape timeout.
    Hanging,
}

/// One target of a scrape job.
#[derive(Debug, Clone)]
struct FleetTarget {
    job: &'static str,
    /// The probed URL: `__address__` in service discovery, `instance` in Prometheus.
    url: String,
    /// The `target` label given by service discovery.
    name: &'static str,
    /// The module; `mcp` is left to the job's relabelling default.
    module: &'static str,
    expect: Expect,
}

impl FleetTarget {
    fn key(&self) -> (String, String) {
        (self.job.to_owned(), self.url.clone())
    }
}

/// A service discovery target group for each target (JSON, as file_sd and http_sd read).
fn target_groups(targets: &[FleetTarget], job: &str) -> String {
    let groups: Vec<Value> = targets
        .iter()
        .filter(|t| t.job == job)
        .map(|t| {
            let mut labels = json!({ "target": t.name });
            if t.module != "mcp" {
                labels["__param_module"] = json!(t.module);
            }
            json!({ "targets": [t.url], "labels": labels })
        })
        .collect();
    serde_json::to_string_pretty(&groups).expect("target groups")
}

/// The blackbox relabelling of docs/configuration.md, pointing at `exporter`.
fn relabel(exporter: SocketAddr) -> String {
    format!(
        "    relabel_configs:\n      \
         - source_labels: [__param_module]\n        regex: ''\n        \
         target_label: __param_module\n        replacement: mcp\n      \
         - source_labels: [__address__]\n        target_label: __param_target\n      \
         - source_labels: [__param_target]\n        target_label: instance\n      \
         - target_label: __address__\n        replacement: '{exporter}'\n"
    )
}

/// A loopback port that accepts connections, reads what it is sent and never answers; each
/// connection is held until the client closes it. It lives with the test's runtime.
async fn silent_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A tiny HTTP service discovery endpoint: `GET /sd` answers `body` as JSON.
async fn http_sd(body: String) -> SocketAddr {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/sd",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address
}

/// `(job, instance)` of a query result or active target's labels.
fn key_of(labels: &Value) -> (String, String) {
    let text = |name: &str| {
        labels[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} label: {labels}"))
            .to_owned()
    };
    (text("job"), text("instance"))
}

/// The sample value of a query result.
fn number(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value: {sample}"))
}

/// An instant query's result by `(job, instance)`, each key once.
async fn by_instance(prometheus: &Prometheus, expr: &str) -> BTreeMap<(String, String), f64> {
    let mut found = BTreeMap::new();
    for sample in prometheus.query(expr).await {
        let key = key_of(&sample["metric"]);
        assert!(
            found.insert(key.clone(), number(&sample)).is_none(),
            "{expr}: {key:?} twice"
        );
    }
    found
}

/// The expected value of each target `value` gives one for.
fn expected(
    targets: &[FleetTarget],
    value: impl Fn(&FleetTarget) -> Option<f64>,
) -> BTreeMap<(String, String), f64> {
    targets
        .iter()
        .filter_map(|t| value(t).map(|v| (t.key(), v)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)]
async fn prometheus_probes_a_fleet_of_both_eras_through_service_discovery() {
    // The servers, started side by side.
    let (legacy, modern, rmcp, modern_only) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let legacy = s.spawn(|| McpServer::start(29, 10, "legacy-py1", "1.26-test"));
            let modern = s.spawn(|| ModernMcpServer::start(29, 10, "modern-py2", "2.3.0-test"));
            let rmcp = s.spawn(|| RmcpServer::start(29, 10, "rmcp-dual", "3.11.0-test", None));
            let modern_only = s
                .spawn(|| RmcpServer::start(29, 10, "rmcp-modern-only", "3.11.0", Some(&[MODERN])));
            (
                legacy.join().expect("legacy server"),
                modern.join().expect("modern server"),
                rmcp.join().expect("rmcp server"),
                modern_only.join().expect("modern-only server"),
            )
        })
    });
    let hanging = silent_port().await;
    let hanging_short = silent_port().await;
    let port = |url: &str| {
        url.rsplit_once(':')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(port, _)| port.to_owned())
            .expect("a port in the URL")
    };
    let legacy_http = legacy.streamable_http_url();
    let legacy_ws = legacy.websocket_url();
    let modern_http = modern.streamable_http_url();
    let rmcp_http = rmcp.streamable_http_url();
    let modern_only_http = modern_only.streamable_http_url();
    let hanging_http = format!("http://127.0.0.1:{hanging}/mcp");
    let hanging_short_http = format!("http://127.0.0.1:{hanging_short}/mcp");
    // Nothing listens there, and nothing may be probed there: the exporter refuses first.
    let disallowed = format!("http://127.0.0.1:{}/mcp", free_port());
    let unknown_module = format!("http://127.0.0.1:{}/mcp", free_port());

    let allowed_ports = [
        &legacy_http,
        &modern_http,
        &rmcp_http,
        &modern_only_http,
        &hanging_http,
        &hanging_short_http,
    ]
    .map(|u| port(u))
    .join("|");
    let allowed = format!("'http://127\\.0\\.0\\.1:({allowed_ports})/mcp'");
    let config = format!(
        "probe:\n  modules:\n    \
         mcp:\n      timeout: 5s\n      allowed_targets: {allowed}\n    \
         mcp_tool:\n      timeout: 5s\n      allowed_targets: {allowed}\n      \
         tool_call: {{name: tool_001, arguments: {{text: ping}}, expect: '^tool_001: .*ping'}}\n    \
         mcp_ws:\n      transport: websocket\n      timeout: 5s\n      \
         allowed_targets: 'ws://127\\.0\\.0\\.1:{}/ws'\n    \
         mcp_short:\n      timeout: 100ms\n      allowed_targets: {allowed}\n",
        port(&legacy_ws)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (exporter, address) = mcpwatch_tests::binaries::start_exporter(
        dir.path(),
        &config,
        &["--no-collector.host", "--log.level=debug"],
    )
    .await;

    let legacy_server = ("legacy-py1", "1.26-test");
    let probed = |transport, server, era, revision, tool_call| Expect::Probed {
        transport,
        server,
        era,
        revision,
        tool_call,
    };
    let http = "streamable_http";
    let not_allowed = format!(
        "The target \"{disallowed}\" is not allowed by module \"mcp\": it does not match its \
         allowed_targets."
    );
    let unknown =
        "Unknown module \"nope\"; the modules are: mcp, mcp_short, mcp_tool, mcp_ws.".to_owned();
    let targets = vec![
        FleetTarget {
            job: FILE_JOB,
            url: legacy_http.clone(),
            name: "legacy-http",
            module: "mcp_tool",
            expect: probed(http, legacy_server, "legacy", LEGACY, true),
        },
        FleetTarget {
            job: FILE_JOB,
            url: legacy_ws.clone(),
            name: "legacy-ws",
            module: "mcp_ws",
            expect: probed("websocket", legacy_server, "legacy", LEGACY, false),
        },
        FleetTarget {
            job: FILE_JOB,
            url: modern_http.clone(),
            name: "modern-py2",
            module: "mcp",
            expect: probed(http, ("modern-py2", "2.3.0-test"), "modern", MODERN, false),
        },
        FleetTarget {
            job: FILE_JOB,
            url: rmcp_http.clone(),
            name: "rmcp-dual",
            module: "mcp_tool",
            expect: probed(http, ("rmcp-dual", "3.11.0-test"), "modern", MODERN, true),
        },
        FleetTarget {
            job: FILE_JOB,
            url: modern_only_http.clone(),
            name: "rmcp-modern-only",
            module: "mcp",
            expect: probed(
                http,
                ("rmcp-modern-only", "3.11.0"),
                "modern",
                MODERN,
                false,
            ),
        },
        FleetTarget {
            job: FILE_JOB,
            url: disallowed.clone(),
            name: "disallowed",
            module: "mcp",
            expect: Expect::Refused(not_allowed.clone()),
        },
        FleetTarget {
            job: FILE_JOB,
            url: unknown_module.clone(),
            name: "unknown-module",
            module: "nope",
            expect: Expect::Refused(unknown.clone()),
        },
        FleetTarget {
            job: HTTP_JOB,
            url: legacy_http.clone(),
            name: "legacy-http",
            module: "mcp",
            expect: probed(http, legacy_server, "legacy", LEGACY, false),
        },
        FleetTarget {
            job: HTTP_JOB,
            url: modern_http.clone(),
            name: "modern-py2",
            module: "mcp_tool",
            expect: probed(http, ("modern-py2", "2.3.0-test"), "modern", MODERN, true),
        },
        FleetTarget {
            job: HTTP_JOB,
            url: modern_only_http.clone(),
            name: "rmcp-modern-only",
            module: "mcp_tool",
            expect: probed(http, ("rmcp-modern-only", "3.11.0"), "modern", MODERN, true),
        },
        FleetTarget {
            job: HANGING_JOB,
            url: hanging_http.clone(),
            name: "hanging",
            module: "mcp",
            expect: Expect::Hanging,
        },
        FleetTarget {
            job: HANGING_JOB,
            url: hanging_short_http.clone(),
            name: "hanging-short",
            module: "mcp_short",
            expect: Expect::Hanging,
        },
    ];
    assert_eq!(targets.len(), 12);

    // The exporter's answer to the two refused targets, asked directly.
    for target in &targets {
        let Expect::Refused(message) = &target.expect else {
            continue;
        };
        let response = client()
            .get(format!("http://{address}/probe"))
            .query(&[("target", target.url.as_str()), ("module", target.module)])
            .send()
            .await
            .expect("GET /probe");
        assert_eq!(response.status(), 400, "{}", target.name);
        assert_eq!(
            response.text().await.expect("body"),
            format!("{message}\n"),
            "{}",
            target.name
        );
    }

    let sd_dir = tempfile::tempdir().expect("tempdir");
    let fleet_file = sd_dir.path().join("fleet.json");
    let hanging_file = sd_dir.path().join("hanging.json");
    std::fs::write(&fleet_file, target_groups(&targets, FILE_JOB)).expect("fleet.json");
    std::fs::write(&hanging_file, target_groups(&targets, HANGING_JOB)).expect("hanging.json");
    let sd = http_sd(target_groups(&targets, HTTP_JOB)).await;
    let relabel = relabel(address);
    let prometheus = Prometheus::start(
        &format!(
            "  - job_name: {FILE_JOB}\n    metrics_path: /probe\n    scrape_interval: 2s\n    \
             scrape_timeout: 2s\n    file_sd_configs:\n      - files: ['{}']\n{relabel}\
             \x20 - job_name: {HTTP_JOB}\n    metrics_path: /probe\n    scrape_interval: 2s\n    \
             scrape_timeout: 2s\n    http_sd_configs:\n      - url: 'http://{sd}/sd'\n{relabel}\
             \x20 - job_name: {HANGING_JOB}\n    metrics_path: /probe\n    scrape_interval: 1s\n    \
             scrape_timeout: {HANGING_SCRAPE_TIMEOUT}s\n    file_sd_configs:\n      \
             - files: ['{}']\n{relabel}",
            fleet_file.display(),
            hanging_file.display()
        ),
        &[],
    )
    .await;

    // Every target scraped at least twice (the second probe of a server uses the era the
    // first found), the hanging ones three times.
    wait_for_async("every target to be scraped a few times", LIMIT, || async {
        let counts = by_instance(&prometheus, "count_over_time(up[5m])").await;
        (counts.len() == targets.len()
            && targets.iter().all(|t| {
                let least = if t.job == HANGING_JOB { 3.0 } else { 2.0 };
                counts.get(&t.key()).is_some_and(|n| *n >= least)
            }))
        .then_some(())
    })
    .await;
    let context = || {
        format!(
            "exporter log:\n{}\nPrometheus log:\n{}",
            exporter.output(),
            prometheus.log()
        )
    };

    // The targets API: exactly the fleet, each scraped at /probe with its module.
    let active = prometheus.active_targets().await;
    assert_eq!(active.len(), 12, "active targets: {active:#?}");
    for target in &targets {
        let found: Vec<&Value> = active
            .iter()
            .filter(|a| key_of(&a["labels"]) == target.key())
            .collect();
        assert_eq!(found.len(), 1, "{target:?} in {active:#?}");
        let found = found[0];
        assert_eq!(found["labels"]["target"], target.name, "{found}");
        let url = reqwest::Url::parse(found["scrapeUrl"].as_str().expect("scrapeUrl"))
            .expect("scrape URL");
        assert_eq!(url.host_str(), Some("127.0.0.1"), "{url}");
        assert_eq!(url.port(), Some(address.port()), "{url}");
        assert_eq!(url.path(), "/probe", "{url}");
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(
            query,
            BTreeMap::from([
                ("module".to_owned(), target.module.to_owned()),
                ("target".to_owned(), target.url.clone()),
            ]),
            "{url}"
        );
        let (health, error) = match target.expect {
            Expect::Refused(_) => ("down", "server returned HTTP status 400 Bad Request"),
            _ => ("up", ""),
        };
        assert_eq!(found["health"], health, "{found}\n{}", context());
        assert_eq!(found["lastError"], error, "{found}\n{}", context());
    }

    // up: 1 for each target the exporter probed (the hanging ones too), 0 for the 400s;
    // and never anything else so far.
    let up = expected(&targets, |t| {
        Some(if matches!(t.expect, Expect::Refused(_)) {
            0.0
        } else {
            1.0
        })
    });
    assert_eq!(up.len(), 12);
    assert_eq!(up.values().filter(|v| **v == 1.0).count(), 10);
    assert_eq!(by_instance(&prometheus, "up").await, up, "{}", context());
    assert_eq!(
        by_instance(&prometheus, "min_over_time(up[5m])").await,
        up,
        "a scrape failed:\n{}",
        context()
    );
    assert_eq!(
        by_instance(&prometheus, "max_over_time(up[5m])").await,
        up,
        "a refused target was up once:\n{}",
        context()
    );

    // probe_success: 1 for the 8 servers at every scrape, 0 for the 2 hanging targets,
    // none for the 400s (the exporter answered no exposition).
    let success = expected(&targets, |t| match t.expect {
        Expect::Probed { .. } => Some(1.0),
        Expect::Hanging => Some(0.0),
        Expect::Refused(_) => None,
    });
    assert_eq!(success.len(), 10);
    assert_eq!(success.values().filter(|v| **v == 1.0).count(), 8);
    assert_eq!(
        by_instance(&prometheus, "probe_success").await,
        success,
        "{}",
        context()
    );
    assert_eq!(
        by_instance(&prometheus, "min_over_time(probe_success[5m])").await,
        success,
        "a probe of a server failed:\n{}",
        context()
    );
    assert_eq!(
        by_instance(
            &prometheus,
            "count(probe_duration_seconds) by (job, instance)"
        )
        .await,
        expected(&targets, |t| success.get(&t.key()).map(|_| 1.0)),
    );

    // Each server's era, revision, name and version, with exactly these labels.
    let info = prometheus.query("wsdaemon_mcp_server_info").await;
    let mut want_info = Vec::new();
    for target in &targets {
        if let Expect::Probed {
            transport,
            server: (name, version),
            era,
            revision,
            ..
        } = target.expect
        {
            want_info.push(json!({
                "__name__": "wsdaemon_mcp_server_info",
                "job": target.job,
                "instance": target.url,
                "target": target.name,
                "transport": transport,
                "name": name,
                "version": version,
                "protocol_version": revision,
                "era": era,
            }));
        }
    }
    assert_eq!(want_info.len(), 8);
    let mut got_info: Vec<Value> = info.iter().map(|s| s["metric"].clone()).collect();
    let sort = |v: &mut Vec<Value>| v.sort_by_key(ToString::to_string);
    sort(&mut got_info);
    sort(&mut want_info);
    assert_eq!(got_info, want_info, "{}", context());
    assert!(info.iter().all(|s| number(s) == 1.0), "{info:?}");
    let eras = by_instance(
        &prometheus,
        "count(wsdaemon_mcp_server_info{era=\"legacy\"}) by (job, instance)",
    )
    .await;
    assert_eq!(eras.len(), 3, "legacy: {eras:?}");

    // 29 tools on each server; the hanging targets listed none.
    assert_eq!(
        by_instance(&prometheus, "wsdaemon_mcp_tools").await,
        expected(&targets, |t| matches!(t.expect, Expect::Probed { .. })
            .then_some(29.0)),
    );
    // The one failure reason of each hanging target is a timeout; the servers have none.
    let failures = prometheus.query("wsdaemon_mcp_failure == 1").await;
    let failed: BTreeMap<(String, String), (String, String)> = failures
        .iter()
        .map(|s| {
            let m = &s["metric"];
            (
                key_of(m),
                (
                    m["transport"].as_str().unwrap_or_default().to_owned(),
                    m["reason"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(
        failed,
        targets
            .iter()
            .filter(|t| t.expect == Expect::Hanging)
            .map(|t| (t.key(), (http.to_owned(), "timeout".to_owned())))
            .collect::<BTreeMap<_, _>>(),
    );

    // The tool call of module mcp_tool on the 4 servers it probes: tool_001 answered "ping",
    // matching expect, in both eras; no tool call series elsewhere.
    let calls = expected(&targets, |t| {
        matches!(
            t.expect,
            Expect::Probed {
                tool_call: true,
                ..
            }
        )
        .then_some(1.0)
    });
    assert_eq!(calls.len(), 4);
    assert_eq!(
        by_instance(
            &prometheus,
            "wsdaemon_mcp_tool_call_success{tool=\"tool_001\",transport=\"streamable_http\"}"
        )
        .await,
        calls,
        "{}",
        context()
    );
    assert_eq!(
        by_instance(
            &prometheus,
            "min_over_time(wsdaemon_mcp_tool_call_success[5m])"
        )
        .await,
        calls,
        "a tool call failed:\n{}",
        context()
    );
    for outcome in TOOL_CALL_OUTCOMES {
        let want = if outcome == "success" { 1.0 } else { 0.0 };
        assert_eq!(
            by_instance(
                &prometheus,
                &format!(
                    "wsdaemon_mcp_tool_call_outcome{{tool=\"tool_001\",outcome=\"{outcome}\"}}"
                )
            )
            .await,
            calls
                .keys()
                .map(|k| (k.clone(), want))
                .collect::<BTreeMap<_, _>>(),
            "outcome {outcome}"
        );
    }
    assert_eq!(
        by_instance(
            &prometheus,
            "count({__name__=~\"wsdaemon_mcp_tool_call_.*\"}) by (job, instance)"
        )
        .await,
        calls
            .keys()
            .map(|k| (k.clone(), 9.0))
            .collect::<BTreeMap<_, _>>(),
        "success, duration and 7 outcomes, for the tool module's targets only"
    );

    // The hanging targets: answered at every scrape inside the 1 s scrape timeout (never a
    // scrape timeout: up was 1 throughout and the last error is empty), the `mcp` module's
    // 5 s lowered to the scraper's budget, the `mcp_short` module's 100 ms kept.
    let hanging_targets: Vec<&FleetTarget> = targets
        .iter()
        .filter(|t| t.expect == Expect::Hanging)
        .collect();
    assert_eq!(hanging_targets.len(), 2);
    let slowest = by_instance(
        &prometheus,
        &format!("max_over_time(scrape_duration_seconds{{job=\"{HANGING_JOB}\"}}[5m])"),
    )
    .await;
    assert_eq!(slowest.len(), 2);
    for (key, seconds) in &slowest {
        assert!(
            *seconds < HANGING_SCRAPE_TIMEOUT,
            "{key:?}: a scrape took {seconds} s, not under its scrape timeout"
        );
    }
    let durations = by_instance(
        &prometheus,
        &format!("probe_duration_seconds{{job=\"{HANGING_JOB}\"}}"),
    )
    .await;
    let lowered = durations[&hanging_targets[0].key()];
    let short = durations[&hanging_targets[1].key()];
    assert!(
        (HANGING_BUDGET - 0.1..HANGING_SCRAPE_TIMEOUT).contains(&lowered),
        "module mcp under a 1 s scrape timeout probed for {lowered} s"
    );
    assert!(
        short < HANGING_BUDGET - 0.1,
        "module mcp_short (timeout 100ms) probed for {short} s"
    );

    // The exporter kept one probe per module and target it was allowed to probe: the 8
    // servers and the 2 hanging targets.
    let metrics_url = format!("http://{address}/metrics");
    let own = checked(
        client()
            .get(&metrics_url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body"),
    );
    assert_eq!(
        value_of(&own, "mcpwatch_probe_cached_targets"),
        Some(10.0),
        "{own}"
    );
    for module in ["mcp_tool", "mcp_ws"] {
        assert_eq!(
            value_of(
                &own,
                &format!("mcpwatch_probe_failures_total{{module=\"{module}\"}}")
            ),
            Some(0.0),
            "{own}"
        );
    }
    let refused = value_of(&own, "mcpwatch_probe_bad_requests_total").expect("bad requests");
    assert!(
        refused >= 6.0,
        "2 asked directly and at least 2 scrapes of each refused target: {refused}"
    );

    prometheus.assert_no_duplicate_samples().await;
    drop(prometheus);
    drop(exporter);
    drop((legacy, modern, rmcp, modern_only));
}
