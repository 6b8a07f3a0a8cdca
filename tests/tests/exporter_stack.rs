//! The exporter binary with the host, PostgreSQL and Redis collectors against real servers
//! and a real Prometheus; the passwords show up nowhere.

use std::process::Command;
use std::time::Duration;

use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::exposition::checked;
use mcpwatch_tests::exposition::value_of;
use mcpwatch_tests::http::client;
use mcpwatch_tests::ports::free_address;
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::process::ServiceProcess;
use mcpwatch_tests::prometheus::Prometheus;
use mcpwatch_tests::redis::RedisServer;
use mcpwatch_tests::tools::{parse_openmetrics, promtool_check_metrics};
use mcpwatch_tests::wait_for_async;

const LIMIT: Duration = Duration::from_secs(60);

async fn get(url: &str, accept: &str) -> String {
    client()
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

#[tokio::test]
async fn prometheus_scrapes_every_collector_and_no_password_leaks() {
    let postgres = PostgresServer::start(PostgresOptions::default()).await;
    let redis = RedisServer::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pg.dsn"), postgres.dsn("postgres")).expect("dsn file");
    std::fs::write(
        dir.path().join("exporter.yml"),
        "collectors:\n  postgres:\n    - name: main\n      dsn_file: pg.dsn\n",
    )
    .expect("config");

    let address = free_address();
    let mut command = Command::new(workspace_binary("mcpwatch-exporter"));
    command
        .arg(format!("--web.listen-address={address}"))
        .arg(format!(
            "--config.file={}",
            dir.path().join("exporter.yml").display()
        ))
        .arg("--log.level=debug")
        .env("MCPWATCH_REDIS_URL", redis.url());
    let exporter = ServiceProcess::spawn("mcpwatch-exporter", command, dir.path());
    let health = format!("http://{address}/health");
    wait_for_async("the exporter", LIMIT, || {
        let request = client().get(&health).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;

    let prometheus = Prometheus::start(
        &format!("  - job_name: mcpwatch\n    static_configs:\n      - targets: ['{address}']\n"),
        &[],
    )
    .await;
    let targets = prometheus.wait_for_healthy_targets(LIMIT).await;
    assert_eq!(targets[0]["lastError"], "", "{}", exporter.output());
    for (expr, what) in [
        ("pg_up{target=\"main\"} == 1", "pg_up"),
        ("redis_up == 1", "redis_up"),
        ("host_load1", "host_load1"),
        (
            "pg_stat_database_xact_commit_total{datname=\"postgres\"}",
            "pg commits",
        ),
        ("redis_commands_total", "redis commands"),
    ] {
        wait_for_async(&format!("{what} in Prometheus"), LIMIT, || async {
            (!prometheus.query(expr).await.is_empty()).then_some(())
        })
        .await;
    }
    let redis_target = format!("127.0.0.1:{}", redis.port());
    assert_eq!(
        prometheus
            .query(&format!("redis_up{{target=\"{redis_target}\"}}"))
            .await
            .len(),
        1,
        "the target is named after the URL, without the password"
    );

    let metrics_url = format!("http://{address}/metrics");
    let text = checked(get(&metrics_url, "text/plain").await);
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
    for collector in ["host", "postgres", "redis"] {
        let success = text
            .lines()
            .find(|l| {
                l.starts_with("mcpwatch_scrape_collector_success{")
                    && l.contains(&format!("collector=\"{collector}\""))
            })
            .unwrap_or_default();
        assert!(success.ends_with(" 1"), "{collector}: {success}");
    }
    assert_eq!(value_of(&text, "pg_up{target=\"main\"}"), Some(1.0));
    let om = checked(get(&metrics_url, "application/openmetrics-text").await);
    parse_openmetrics(om.as_bytes()).expect("OpenMetrics parses");
    let health = get(&health, "application/json").await;
    let index = get(&format!("http://{address}/"), "text/html").await;
    let log = exporter.output();
    for secret in [postgres.password(), redis.password()] {
        for (what, output) in [
            ("/metrics", &text),
            ("OpenMetrics", &om),
            ("/health", &health),
            ("/", &index),
            ("the log", &log),
        ] {
            assert!(!output.contains(secret), "a password appears in {what}");
        }
    }
    prometheus.assert_no_duplicate_samples().await;
}
