//! Concurrent scrapes with different deadlines, served over HTTP by the scrape engine with
//! the real collectors: a daemon whose `/health` takes 0.7 s and a PostgreSQL server with a
//! 0.3 s custom query. A scrape with a longer budget is never served a collection cut at a
//! shorter one's deadline, and scrapes with one budget still share collections. Each test
//! prints the collections it cost per scrape.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::web::WebServer;
use mcpwatch_core::{Collector, ExporterService, ScrapeEngine};
use mcpwatch_postgres::PostgresCollector;
use mcpwatch_tests::daemon::{Behaviour, Daemon};
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer, wait_for_client_connections};
use mcpwatch_wsdaemon::WsDaemonCollector;

const HEALTH_DELAY: Duration = Duration::from_millis(700);

async fn serve(collector: Arc<dyn Collector>) -> (ScrapeEngine, SocketAddr) {
    let engine = ScrapeEngine::builder()
        .collectors([collector])
        .process_metrics(false)
        .build();
    let server = WebServer::bind(&["127.0.0.1:0".to_owned()], None)
        .await
        .expect("bind");
    let address = server.local_addrs()[0];
    tokio::spawn(server.serve(ExporterService::new(engine.clone()), std::future::pending()));
    (engine, address)
}

/// Serves the PostgreSQL collector of `server` with these custom `queries` (YAML items),
/// after a first scrape that opens its connections and succeeds.
async fn serve_postgres(server: &PostgresServer, queries: &str) -> (ScrapeEngine, SocketAddr) {
    let collector = PostgresCollector::new(
        parse_yaml(
            &format!(
                "name: db\ndsn: '{}'\nqueries:\n{queries}",
                server.dsn("postgres")
            ),
            Path::new("t.yml"),
        )
        .expect("config"),
    )
    .expect("collector");
    let (engine, address) = serve(Arc::new(collector)).await;
    let first = scrape_after(address, Duration::ZERO, None)
        .await
        .expect("scrape");
    assert_eq!(
        value_of(&first, "pg_up{target=\"db\"}"),
        Some(1.0),
        "{first}"
    );
    assert_eq!(success(&first, "postgres", "db"), Some(1.0), "{first}");
    (engine, address)
}

/// Starts a scrape `delay` from now with this `X-Prometheus-Scrape-Timeout-Seconds`.
fn scrape_after(
    address: SocketAddr,
    delay: Duration,
    timeout: Option<&'static str>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut request = client().get(format!("http://{address}/metrics"));
        if let Some(timeout) = timeout {
            request = request.header("x-prometheus-scrape-timeout-seconds", timeout);
        }
        let response = request.send().await.expect("scrape");
        assert_eq!(response.status(), 200);
        checked(response.text().await.expect("body"))
    })
}

/// Runs `rounds` rounds of `scrapes` (start offset, timeout header) and returns every
/// answer, round by round, with the collections they cost.
async fn rounds(
    engine: &ScrapeEngine,
    address: SocketAddr,
    rounds: usize,
    scrapes: &[(u64, Option<&'static str>)],
) -> (Vec<Vec<String>>, u64) {
    let before = engine.collections();
    let mut answers = Vec::new();
    for _ in 0..rounds {
        let tasks: Vec<_> = scrapes
            .iter()
            .map(|&(offset, timeout)| scrape_after(address, Duration::from_millis(offset), timeout))
            .collect();
        let mut round = Vec::new();
        for task in tasks {
            round.push(task.await.expect("scrape task"));
        }
        answers.push(round);
    }
    (answers, engine.collections() - before)
}

/// Prints what a run of scrapes cost, for the closing figures (`--nocapture`).
#[allow(clippy::print_stderr)]
fn report(line: &str) {
    eprintln!("{line}");
}

fn success(text: &str, collector: &str, target: &str) -> Option<f64> {
    value_of(
        text,
        &format!(
            "mcpwatch_scrape_collector_success{{collector=\"{collector}\",target=\"{target}\"}}"
        ),
    )
}

#[tokio::test]
async fn a_daemon_that_answers_in_time_is_up_whatever_shorter_scrape_came_first() {
    let daemon = Daemon::start(Behaviour {
        health_delay: HEALTH_DELAY,
        ..Behaviour::default()
    })
    .await;
    let collector = WsDaemonCollector::new(
        parse_yaml(
            &format!("name: exai\nhealth_url: {}\n", daemon.health_url()),
            Path::new("t.yml"),
        )
        .expect("config"),
    )
    .expect("collector");
    let (engine, address) = serve(Arc::new(collector)).await;
    let up = |text: &str| value_of(text, "wsdaemon_up{target=\"exai\"}");

    // A 1 s scraper (0.5 s to collect: too short for the daemon), then 50 ms later one
    // with no timeout (10 s): the second is always told the daemon is up.
    let (answers, collections) = rounds(&engine, address, 5, &[(0, Some("1")), (50, None)]).await;
    for (round, answers) in answers.iter().enumerate() {
        assert_eq!(
            up(&answers[0]),
            Some(0.0),
            "round {round}: 0.5 s is too short"
        );
        assert_eq!(up(&answers[1]), Some(1.0), "round {round}: no timeout");
        assert_eq!(success(&answers[1], "wsdaemon", "exai"), Some(1.0));
    }
    report(&format!(
        "mixed deadlines (1 s, then none): {collections} collections for 10 scrapes"
    ));

    // Scrapes with one timeout share: eight started 50 ms apart.
    let same: Vec<_> = (0..8).map(|i| (i * 50, Some("2"))).collect();
    let (answers, collections) = rounds(&engine, address, 3, &same).await;
    let up_answers = answers
        .iter()
        .flatten()
        .filter(|a| up(a) == Some(1.0))
        .count();
    assert_eq!(up_answers, 24, "every 2 s scrape sees the daemon up");
    report(&format!(
        "same deadline (2 s): {collections} collections for 24 scrapes"
    ));

    // Both kinds interleaved, eight at a time.
    let mixed: Vec<_> = (0..8)
        .map(|i| (i * 25, if i % 2 == 0 { Some("1") } else { Some("3") }))
        .collect();
    let (answers, collections) = rounds(&engine, address, 3, &mixed).await;
    for answers in &answers {
        for (i, answer) in answers.iter().enumerate() {
            let expected = if i % 2 == 0 { 0.0 } else { 1.0 };
            assert_eq!(up(answer), Some(expected), "scrape {i}");
        }
    }
    report(&format!(
        "mixed deadlines (1 s and 3 s interleaved): {collections} collections for 24 scrapes"
    ));
    assert_eq!(engine.scrapes_in_flight(), 0);
}

#[tokio::test]
async fn postgres_is_up_for_every_scrape_whose_budget_holds_its_queries() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let (engine, address) = serve_postgres(
        &server,
        "  - metric: slow\n    sql: SELECT 1 AS n FROM pg_sleep(0.3)\n    values: [n]\n",
    )
    .await;

    // A 0.5 s scraper (0.25 s to collect: too short for the query), then 50 ms later a 2 s
    // one (1.5 s): the second always has every query.
    let (answers, collections) =
        rounds(&engine, address, 10, &[(0, Some("0.5")), (50, Some("2"))]).await;
    for (round, answers) in answers.iter().enumerate() {
        let long = &answers[1];
        assert_eq!(
            value_of(long, "pg_up{target=\"db\"}"),
            Some(1.0),
            "round {round}"
        );
        assert_eq!(
            value_of(long, "slow_n{target=\"db\"}"),
            Some(1.0),
            "round {round}"
        );
        assert_eq!(success(long, "postgres", "db"), Some(1.0), "round {round}");
        assert_eq!(
            success(&answers[0], "postgres", "db"),
            Some(0.0),
            "round {round}"
        );
    }
    report(&format!(
        "mixed deadlines (0.5 s, then 2 s): {collections} collections for 20 scrapes"
    ));

    let same: Vec<_> = (0..8).map(|i| (i * 20, Some("2"))).collect();
    let (answers, collections) = rounds(&engine, address, 3, &same).await;
    for answer in answers.iter().flatten() {
        assert_eq!(value_of(answer, "slow_n{target=\"db\"}"), Some(1.0));
    }
    report(&format!(
        "same deadline (2 s): {collections} collections for 24 scrapes"
    ));
}

/// The collector's connections are shared by concurrent collections too: a collection cut
/// by a short deadline must neither reset a connection under a longer one's query, nor
/// leave work on it that the next collection queues behind, on the main database or
/// another.
#[tokio::test]
async fn one_collections_deadline_never_fails_another_on_the_same_connection() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    server
        .admin("postgres")
        .await
        .batch_execute("CREATE DATABASE other")
        .await
        .expect("create database");
    let (engine, address) = serve_postgres(
        &server,
        "  - metric: slow\n    sql: SELECT 1 AS n FROM pg_sleep(0.7)\n    values: [n]\n  \
         - metric: elsewhere\n    database: other\n    \
         sql: SELECT 1 AS n FROM pg_sleep(0.7)\n    values: [n]\n",
    )
    .await;
    let complete = |text: &str| {
        success(text, "postgres", "db") == Some(1.0)
            && value_of(text, "slow_n{target=\"db\"}") == Some(1.0)
            && value_of(text, "elsewhere_n{target=\"db\"}") == Some(1.0)
    };

    // A scrape with no timeout, then one whose 0.5 s cannot hold the queries: the first
    // still gets everything.
    let (answers, _) = rounds(&engine, address, 3, &[(0, None), (100, Some("1"))]).await;
    for (round, answers) in answers.iter().enumerate() {
        assert!(complete(&answers[0]), "round {round}:\n{}", answers[0]);
        assert_eq!(success(&answers[1], "postgres", "db"), Some(0.0));
    }
    // Three overlapping scrapes whose budgets each hold the queries: none waits behind
    // another's.
    let (answers, _) = rounds(
        &engine,
        address,
        3,
        &[(0, None), (50, Some("3")), (100, Some("2"))],
    )
    .await;
    for (round, answers) in answers.iter().enumerate() {
        for (i, answer) in answers.iter().enumerate() {
            assert!(complete(answer), "round {round}, scrape {i}:\n{answer}");
        }
    }
}

/// Out of connection slots, a concurrent collection shares the connection: cut by its
/// deadline, it must not cancel what runs there, which is the other collection's.
#[tokio::test]
async fn sharing_a_connection_for_want_of_slots_cancels_nothing_of_another_collection() {
    // 6 slots, 3 reserved for superusers: the collector's connection and two others take
    // what the monitoring role may use, so no session of its own can be opened.
    let server = PostgresServer::start(PostgresOptions {
        max_connections: 6,
        ..PostgresOptions::default()
    })
    .await;
    let (engine, address) = serve_postgres(
        &server,
        "  - metric: slow\n    sql: SELECT 1 AS n FROM pg_sleep(0.7)\n    values: [n]\n",
    )
    .await;
    let others = [
        server.admin("postgres").await,
        server.admin("postgres").await,
    ];
    wait_for_client_connections(&others[0], 3).await;
    let (answers, _) = rounds(&engine, address, 3, &[(0, None), (50, Some("1"))]).await;
    for (round, answers) in answers.iter().enumerate() {
        assert_eq!(
            success(&answers[0], "postgres", "db"),
            Some(1.0),
            "round {round}:\n{}",
            answers[0]
        );
        assert_eq!(value_of(&answers[0], "slow_n{target=\"db\"}"), Some(1.0));
        assert_eq!(success(&answers[1], "postgres", "db"), Some(0.0));
    }
    drop(others);
}
