//! Another service's axum router serving mcpwatch's metrics next to its own routes, as
//! `crates/mcpwatch-host/examples/axum_embed.rs` does.

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use mcpwatch_core::{ScrapeEngine, metrics_response};
use mcpwatch_host::{HostCollector, HostConfig};
use mcpwatch_tests::exposition::checked;
use mcpwatch_tests::http::client;
use mcpwatch_tests::tools::{parse_openmetrics, promtool_check_metrics};

#[tokio::test]
async fn axum_router_serves_the_engine() {
    let engine = ScrapeEngine::builder()
        .collector(HostCollector::new(HostConfig::default()).expect("host"))
        .process_metrics(false)
        .build();
    let app = Router::new()
        .route("/", get(|| async { "the application" }))
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let engine = engine.clone();
                async move { metrics_response(&engine, &headers).await }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = client();
    let page = http
        .get(format!("http://{address}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert_eq!(page, "the application");

    let text = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let text = checked(text);
    assert!(text.contains("\nhost_load1 "), "{text}");
    assert!(
        !text.contains("process_cpu_seconds_total"),
        "turned off by the embedder"
    );
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");

    let om = http
        .get(format!("http://{address}/metrics"))
        .header("accept", "application/openmetrics-text")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    parse_openmetrics(checked(om).as_bytes()).expect("OpenMetrics parses");
}
