//! The scrape engine served over HTTP with the host collector and test-only collectors: a
//! hanging collector does not hold the scrape back, and concurrent scrapes share one
//! collection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mcpwatch_core::web::WebServer;
use mcpwatch_core::{
    CollectError, Collector, ExporterService, MetricSink, ScrapeContext, ScrapeEngine,
};
use mcpwatch_host::{HostCollector, HostConfig};
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::tools::promtool_check_metrics;
use mcpwatch_tests::wait_for_async;

/// Hangs until cancelled, as a collector stuck on a dead network peer does.
struct Hanging;

#[async_trait::async_trait]
impl Collector for Hanging {
    fn name(&self) -> &str {
        "hanging"
    }
    fn target(&self) -> &str {
        "stuck"
    }
    async fn collect(
        &self,
        _ctx: &ScrapeContext,
        _sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Counts its runs and holds each until the test opens the gate.
struct Counting {
    runs: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl Collector for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    async fn collect(
        &self,
        _ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        self.gate
            .acquire()
            .await
            .map_err(CollectError::msg)?
            .forget();
        sink.gauge("counting_run", "Which collection this is.")
            .add(&[], run as f64);
        Ok(())
    }
}

async fn serve(engine: ScrapeEngine) -> SocketAddr {
    let server = WebServer::bind(&["127.0.0.1:0".to_owned()], None)
        .await
        .expect("bind");
    let address = server.local_addrs()[0];
    tokio::spawn(server.serve(ExporterService::new(engine), std::future::pending()));
    address
}

#[tokio::test]
async fn a_hanging_collector_is_cut_at_the_scrapers_deadline() {
    let engine = ScrapeEngine::builder()
        .collector(HostCollector::new(HostConfig::default()).expect("host"))
        .collector(Hanging)
        .build();
    let address = serve(engine).await;
    let response = client()
        .get(format!("http://{address}/metrics"))
        .header("x-prometheus-scrape-timeout-seconds", "2")
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let text = checked(response.text().await.expect("body"));

    // The deadline came from the header (2 s minus the 0.5 s margin), not the 10 s default.
    assert_eq!(
        value_of(&text, "mcpwatch_scrape_timeout_seconds"),
        Some(1.5)
    );
    assert_eq!(
        value_of(
            &text,
            "mcpwatch_scrape_collector_success{collector=\"hanging\",target=\"stuck\"}"
        ),
        Some(0.0)
    );
    assert!(
        value_of(
            &text,
            "mcpwatch_scrape_collector_duration_seconds{collector=\"hanging\",target=\"stuck\"}",
        )
        .is_some()
    );
    // It was cut by the deadline, not failed by an error.
    let health: serde_json::Value = serde_json::from_str(
        &client()
            .get(format!("http://{address}/health"))
            .send()
            .await
            .expect("health")
            .text()
            .await
            .expect("body"),
    )
    .expect("JSON");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["collectors"][1]["collector"], "hanging");
    assert_eq!(health["collectors"][1]["last_outcome"], "timeout");
    assert_eq!(health["collectors"][0]["last_outcome"], "success");
    assert_eq!(
        value_of(
            &text,
            "mcpwatch_scrape_collector_success{collector=\"host\",target=\"\"}"
        ),
        Some(1.0)
    );
    assert!(
        text.contains("\nhost_memory_total_bytes "),
        "host metrics intact"
    );
    assert!(
        text.contains("\nhost_cpu_seconds_total{"),
        "host metrics intact"
    );
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
}

#[tokio::test]
async fn thirty_two_concurrent_scrapes_cause_one_collection() {
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let engine = ScrapeEngine::builder()
        .collector(Counting {
            runs: runs.clone(),
            gate: gate.clone(),
        })
        .build();
    let address = serve(engine.clone()).await;
    let http = client();
    let scrapes: Vec<_> = (0..32)
        .map(|_| {
            let request = http.get(format!("http://{address}/metrics")).send();
            tokio::spawn(async move {
                checked(request.await.expect("scrape").text().await.expect("body"))
            })
        })
        .collect();
    // Every scrape has reached the engine and waits on the one collection under way.
    wait_for_async(
        "32 scrapes waiting on the collection",
        Duration::from_secs(30),
        || {
            let waiting = engine.scrapes_in_flight();
            async move { (waiting == 32).then_some(()) }
        },
    )
    .await;
    gate.add_permits(1);
    for scrape in scrapes {
        let text = scrape.await.expect("scrape task");
        assert_eq!(value_of(&text, "counting_run"), Some(1.0));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "one collection for 32 scrapes"
    );

    // A later scrape collects afresh.
    gate.add_permits(1);
    let text = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert_eq!(value_of(&text, "counting_run"), Some(2.0));
    assert_eq!(
        value_of(&text, "mcpwatch_scrape_collections_total"),
        Some(2.0)
    );
    assert_eq!(
        value_of(&text, "mcpwatch_scrape_requests_total"),
        Some(33.0)
    );
}
