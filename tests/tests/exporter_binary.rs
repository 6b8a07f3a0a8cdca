//! The exporter binary against a real Prometheus, promtool and the strict OpenMetrics
//! parser; reload by SIGHUP and HTTP; graceful shutdown.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::ports::free_address;
use mcpwatch_tests::process::ServiceProcess;
use mcpwatch_tests::prometheus::Prometheus;
use mcpwatch_tests::tools::{parse_openmetrics, promtool_check_metrics};
use mcpwatch_tests::wait_for_async;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

async fn start_exporter(dir: &Path, args: &[String]) -> (ServiceProcess, SocketAddr) {
    let address = free_address();
    let mut command = Command::new(workspace_binary("mcpwatch-exporter"));
    command
        .arg(format!("--web.listen-address={address}"))
        .args(args);
    let process = ServiceProcess::spawn("mcpwatch-exporter", command, dir);
    let http = client();
    let health = format!("http://{address}/health");
    wait_for_async("the exporter to answer /health", LIMIT, || {
        let request = http.get(&health).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    (process, address)
}

async fn metrics(address: SocketAddr, accept: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = client()
        .get(format!("http://{address}/metrics"))
        .header("accept", accept)
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    (headers, checked(body).into_bytes())
}

#[tokio::test]
async fn prometheus_scrapes_the_exporter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (exporter, address) = start_exporter(dir.path(), &[]).await;
    let prometheus = Prometheus::start(
        &format!("  - job_name: mcpwatch\n    static_configs:\n      - targets: ['{address}']\n"),
        &[],
    )
    .await;
    let targets = prometheus.wait_for_healthy_targets(LIMIT).await;
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["health"], "up", "{}", prometheus.log());
    assert_eq!(targets[0]["lastError"], "", "{}", exporter.output());

    for prefix in ["host_", "mcpwatch_", "process_"] {
        let expr = format!("count({{__name__=~\"{prefix}.+\",job=\"mcpwatch\"}})");
        let count = wait_for_async(&format!("{prefix}* series in Prometheus"), LIMIT, || {
            let expr = expr.clone();
            let prometheus = &prometheus;
            async move {
                let result = prometheus.query(&expr).await;
                let count: f64 = result.first()?["value"][1].as_str()?.parse().ok()?;
                (count > 0.0).then_some(count)
            }
        })
        .await;
        assert!(count >= 3.0, "{prefix}: only {count} series");
    }
    // Prometheus gives the exporter 1 s (so 0.5 s of collection); on a busy machine one
    // scrape may run out of it, so this waits for a successful one rather than the latest.
    wait_for_async(
        "a successful host collection in Prometheus",
        LIMIT,
        || async {
            let success = prometheus
                .query("mcpwatch_scrape_collector_success{collector=\"host\"} == 1")
                .await;
            (!success.is_empty()).then_some(())
        },
    )
    .await;
    let root = prometheus
        .query("host_filesystem_size_bytes{mountpoint=\"/\"} > 0")
        .await;
    assert_eq!(root.len(), 1, "root filesystem reported");
    prometheus.assert_no_duplicate_samples().await;
}

#[tokio::test]
async fn outputs_pass_promtool_and_the_strict_openmetrics_parser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_exporter, address) = start_exporter(dir.path(), &[]).await;

    let (headers, text) = metrics(address, "text/plain").await;
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(promtool_check_metrics(&text), "", "promtool findings");

    let (headers, om) = metrics(address, "application/openmetrics-text; version=1.0.0").await;
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let families = parse_openmetrics(&om).expect("strict OpenMetrics parse");
    assert!(families > 20, "{families} families");

    // Prometheus asks for gzip; the body decompresses to a valid exposition.
    let response = client()
        .get(format!("http://{address}/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.expect("body");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut plain)
        .expect("gunzip");
    let plain = checked(String::from_utf8(plain).expect("utf-8")).into_bytes();
    assert_eq!(promtool_check_metrics(&plain), "");
}

#[tokio::test]
async fn reloads_on_http_and_sighup_and_keeps_the_old_config_on_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("exporter.yml");
    std::fs::write(&config, "scrape:\n  timeout: 7s\n").expect("write");
    let (exporter, address) =
        start_exporter(dir.path(), &[format!("--config.file={}", config.display())]).await;
    let timeout = |text: &[u8]| {
        value_of(
            &String::from_utf8_lossy(text),
            "mcpwatch_scrape_timeout_seconds",
        )
    };
    assert_eq!(timeout(&metrics(address, "text/plain").await.1), Some(7.0));

    std::fs::write(&config, "scrape:\n  timeout: 4s\n").expect("write");
    let response = client()
        .post(format!("http://{address}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(response.status(), 200);
    assert_eq!(timeout(&metrics(address, "text/plain").await.1), Some(4.0));

    // A broken file: SIGHUP keeps the running configuration and says so in a metric.
    std::fs::write(&config, "scrape:\n  timeout: 4s\n  bogus: 1\n").expect("write");
    exporter.signal(Signal::SIGHUP);
    let text = wait_for_async("the failed reload to show", LIMIT, || async {
        let text = String::from_utf8(metrics(address, "text/plain").await.1).ok()?;
        (value_of(&text, "mcpwatch_config_last_reload_successful") == Some(0.0)).then_some(text)
    })
    .await;
    assert_eq!(
        value_of(&text, "mcpwatch_scrape_timeout_seconds"),
        Some(4.0)
    );
    assert!(
        exporter.output().contains("scrape.bogus"),
        "{}",
        exporter.output()
    );

    let response = client()
        .post(format!("http://{address}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(response.status(), 500);
    let body = response.text().await.expect("body");
    assert!(
        body.contains(&format!("{}:3:3: scrape.bogus", config.display())),
        "{body}"
    );

    std::fs::write(&config, "scrape:\n  timeout: 3s\n").expect("write");
    exporter.signal(Signal::SIGHUP);
    wait_for_async("the SIGHUP reload", LIMIT, || async {
        let text = String::from_utf8(metrics(address, "text/plain").await.1).ok()?;
        (value_of(&text, "mcpwatch_scrape_timeout_seconds") == Some(3.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn health_index_and_graceful_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut exporter, address) = start_exporter(dir.path(), &[]).await;
    metrics(address, "text/plain").await;
    let health: serde_json::Value = client()
        .get(format!("http://{address}/health"))
        .send()
        .await
        .expect("health")
        .json_text()
        .await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["collectors"][0]["collector"], "host");
    assert_eq!(health["collectors"][0]["ok"], true);
    assert!(health["collectors"][0]["last_success"].as_str().is_some());
    assert!(health["uptime_seconds"].as_f64().is_some());

    let index = client()
        .get(format!("http://{address}/"))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("body");
    assert!(
        index.contains("/metrics") && index.contains("host"),
        "{index}"
    );

    exporter.signal(Signal::SIGTERM);
    let status = exporter.wait(LIMIT);
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        exporter.output()
    );
    assert!(exporter.output().contains("SIGTERM received"));
}

/// Reads a JSON body.
trait JsonText {
    async fn json_text(self) -> serde_json::Value;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> serde_json::Value {
        serde_json::from_str(&self.text().await.expect("body")).expect("JSON body")
    }
}
