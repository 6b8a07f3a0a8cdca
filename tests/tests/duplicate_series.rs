//! No series twice: a custom query whose rows repeat their label values is served once per
//! label set and says so; and every scrape the end-to-end tests make goes through the
//! harness's duplicate check.

use std::path::Path;
use std::sync::Arc;

use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::engine::CollectorOutcome;
use mcpwatch_postgres::PostgresCollector;
use mcpwatch_tests::engine::{engine, scrape};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::repo;

#[tokio::test]
async fn a_custom_query_whose_rows_repeat_their_labels_is_served_once_per_label_set() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    // Three queues, one of them twice (a join gone wrong, a missing GROUP BY column).
    let collector = PostgresCollector::new(
        parse_yaml(
            &format!(
                "name: db\ndsn: '{}'\nqueries:\n  - metric: app_jobs\n    \
                 sql: \"SELECT * FROM (VALUES ('a', 1), ('b', 2), ('a', 3), ('c', 4), ('a', 5)) \
                 AS t(queue, waiting)\"\n    labels: [queue]\n    values: [waiting]\n",
                server.dsn("postgres")
            ),
            Path::new("t.yml"),
        )
        .expect("config"),
    )
    .expect("collector");
    let engine = engine(vec![Arc::new(collector)]);
    // The harness's scrape fails on a duplicate series; it passes.
    let scraped = scrape(&engine, None).await;
    assert_eq!(scraped.value("pg_up", &[]), Some(1.0));
    let jobs = scraped.group("app_jobs_waiting").expect("app_jobs_waiting");
    assert_eq!(jobs.series(), 3, "a, b and c once each");
    assert_eq!(
        scraped.value("app_jobs_waiting", &[("queue", "a")]),
        Some(1.0),
        "the first row of a label set is served"
    );
    assert_eq!(
        scraped.value(
            "mcpwatch_scrape_collector_success",
            &[("collector", "postgres")]
        ),
        Some(0.0),
        "the query is at fault, and the collector says so"
    );
    assert_eq!(
        engine.status()[0].last_outcome,
        Some(CollectorOutcome::Failed(
            "query app_jobs: 2 of 5 rows repeat the label values (queue) of an earlier row \
             and were left out: add the columns that tell them apart to labels"
                .to_owned()
        ))
    );
}

/// Every end-to-end scrape goes through the check: in-process scrapes through
/// `mcpwatch_tests::engine::scrape` (or `text`), HTTP ones through
/// `mcpwatch_tests::exposition::checked`, Prometheus's through
/// `Prometheus::assert_no_duplicate_samples`.
#[test]
fn every_scrape_of_the_suite_is_checked_for_duplicate_series() {
    let dir = repo::root().join("tests/tests");
    let mut unchecked = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/tests")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name == "duplicate_series.rs" {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("read");
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains(".scrape(") {
                unchecked.push(format!(
                    "{name}:{}: calls ScrapeEngine::scrape directly",
                    n + 1
                ));
            }
        }
        let fetches_metrics = source.contains("/metrics\"") || source.contains("metrics_url");
        if fetches_metrics && !source.contains("checked(") {
            unchecked.push(format!(
                "{name}: fetches /metrics without exposition::checked"
            ));
        }
        if source.contains("Prometheus::start") && !source.contains("assert_no_duplicate_samples") {
            unchecked.push(format!(
                "{name}: starts Prometheus without asserting it dropped no duplicate sample"
            ));
        }
    }
    assert!(
        unchecked.is_empty(),
        "scrapes that escape the duplicate series check:\n{}",
        unchecked.join("\n")
    );
}
