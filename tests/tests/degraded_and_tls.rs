//! Targets that stall or demand TLS: a stalled PostgreSQL backend or Redis server is cut at
//! the deadline while the host collector's data stays, and both come back with the same
//! collectors; PostgreSQL's `sslmode` values and Redis over TLS with a private CA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::{Collector, Scrape};
use mcpwatch_host::{HostCollector, HostConfig};
use mcpwatch_postgres::PostgresCollector;
use mcpwatch_redis::RedisCollector;
use mcpwatch_tests::engine::{engine, scrape};
use mcpwatch_tests::postgres::{MONITOR_USER, PostgresOptions, PostgresServer};
use mcpwatch_tests::redis::RedisServer;
use mcpwatch_tests::tls::ca_and_server;
use mcpwatch_tests::wait_for_async;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const LIMIT: Duration = Duration::from_secs(60);

fn postgres(yaml: &str) -> Arc<dyn Collector> {
    Arc::new(
        PostgresCollector::new(parse_yaml(yaml, Path::new("t.yml")).expect("config"))
            .expect("collector"),
    )
}

fn redis(yaml: &str) -> Arc<dyn Collector> {
    Arc::new(
        RedisCollector::new(parse_yaml(yaml, Path::new("t.yml")).expect("config"))
            .expect("collector"),
    )
}

fn success(scrape: &Scrape, collector: &str) -> Option<f64> {
    scrape.value(
        "mcpwatch_scrape_collector_success",
        &[("collector", collector)],
    )
}

fn signal(pid: i32, signal: Signal) {
    kill(Pid::from_raw(pid), signal).expect("signal");
}

#[tokio::test]
async fn stalled_servers_are_cut_at_the_deadline_and_come_back() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let cache = RedisServer::start(&[]).await;
    let engine = engine(vec![
        Arc::new(HostCollector::new(HostConfig::default()).expect("host")),
        postgres(&format!("name: db\ndsn: '{}'\n", pg.dsn("postgres"))),
        redis(&format!("name: cache\nurl: '{}'\n", cache.url())),
    ]);
    let healthy = scrape(&engine, None).await;
    assert_eq!(healthy.value("pg_up", &[]), Some(1.0));
    assert_eq!(healthy.value("redis_up", &[]), Some(1.0));

    // The exporter's own PostgreSQL backend and the whole Redis server stop answering.
    let backends = pg.backends_of("mcpwatch").await;
    assert_eq!(backends.len(), 1, "one connection, kept across scrapes");
    signal(backends[0], Signal::SIGSTOP);
    let redis_pid = i32::try_from(cache.pid()).expect("pid");
    signal(redis_pid, Signal::SIGSTOP);

    let stalled = scrape(&engine, Some(Duration::from_secs(3))).await;
    signal(redis_pid, Signal::SIGCONT);
    signal(backends[0], Signal::SIGCONT);
    assert_eq!(
        stalled.value("mcpwatch_scrape_timeout_seconds", &[]),
        Some(2.5)
    );
    assert_eq!(stalled.value("pg_up", &[]), Some(0.0));
    assert_eq!(stalled.value("redis_up", &[]), Some(0.0));
    assert_eq!(success(&stalled, "postgres"), Some(0.0));
    assert_eq!(success(&stalled, "redis"), Some(0.0));
    assert_eq!(success(&stalled, "host"), Some(1.0));
    assert!(stalled.value("host_memory_total_bytes", &[]).is_some());

    // Back, with the same collectors: the stalled connections were dropped and made again.
    wait_for_async("both targets to answer again", LIMIT, || async {
        let scraped = scrape(&engine, None).await;
        (scraped.value("pg_up", &[]) == Some(1.0) && scraped.value("redis_up", &[]) == Some(1.0))
            .then_some(())
    })
    .await;
    let now = pg.backends_of("mcpwatch").await;
    assert_eq!(now.len(), 1);
    assert_ne!(
        now[0], backends[0],
        "a new connection replaced the stalled one"
    );
}

#[tokio::test]
async fn postgres_sslmodes_mean_what_libpq_says() {
    // The certificate names db.example while the exporter connects to 127.0.0.1.
    let (ca, cert, key) = ca_and_server("db.example");
    let (other_ca, _, _) = ca_and_server("db.example");
    let pg = PostgresServer::start(PostgresOptions {
        tls: Some((cert, key)),
        ..PostgresOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ca).expect("write");
    std::fs::write(dir.path().join("other.pem"), other_ca).expect("write");
    let dsn = |query: &str| {
        format!(
            "postgresql://{MONITOR_USER}:{}@127.0.0.1:{}/postgres?{query}",
            pg.password(),
            pg.port()
        )
    };
    let ca_path = dir.path().join("ca.pem");
    let other_path = dir.path().join("other.pem");
    let cases = [
        (
            dsn(&format!(
                "sslmode=verify-ca&sslrootcert={}",
                ca_path.display()
            )),
            1.0,
            "",
        ),
        (
            dsn(&format!(
                "sslmode=verify-full&sslrootcert={}",
                ca_path.display()
            )),
            0.0,
            "certificate",
        ),
        (
            dsn(&format!(
                "sslmode=verify-ca&sslrootcert={}",
                other_path.display()
            )),
            0.0,
            "certificate",
        ),
        (dsn("sslmode=require"), 1.0, ""),
        (dsn("sslmode=prefer"), 1.0, ""),
        (dsn("sslmode=disable"), 0.0, "no encryption"),
    ];
    for (dsn, up, error) in cases {
        let engine = engine(vec![postgres(&format!("name: db\ndsn: '{dsn}'\n"))]);
        let scraped = scrape(&engine, None).await;
        let status = format!("{:?}", engine.status());
        assert_eq!(scraped.value("pg_up", &[]), Some(up), "{dsn}: {status}");
        assert!(status.contains(error), "{dsn}: {status}");
        assert!(!status.contains(pg.password()));
    }
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    let (ca, cert, key) = ca_and_server("127.0.0.1");
    let cache = RedisServer::start_tls(&cert, &key).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ca).expect("write");
    let url = format!("rediss://:{}@127.0.0.1:{}/", cache.password(), cache.port());

    let trusted = engine(vec![redis(&format!(
        "name: cache\nurl: '{url}'\nca_file: {}\n",
        dir.path().join("ca.pem").display()
    ))]);
    let scraped = scrape(&trusted, None).await;
    assert_eq!(
        scraped.value("redis_up", &[]),
        Some(1.0),
        "{:?}",
        trusted.status()
    );
    assert!(scraped.value("redis_connected_clients", &[]).is_some());

    // The system's roots do not know the private CA.
    let untrusted = engine(vec![redis(&format!("name: cache\nurl: '{url}'\n"))]);
    let scraped = scrape(&untrusted, None).await;
    assert_eq!(scraped.value("redis_up", &[]), Some(0.0));
    assert!(!format!("{:?}", untrusted.status()).contains(cache.password()));
}
