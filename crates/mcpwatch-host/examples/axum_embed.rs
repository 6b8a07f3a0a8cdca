//! An axum service that serves its own routes and, at `/metrics`, the host metrics of
//! mcpwatch, next to a collector of its own.
//!
//! ```text
//! cargo run -p mcpwatch-host --example axum_embed -- 127.0.0.1:8080
//! curl -s 127.0.0.1:8080/metrics | grep -E '^(host_load1|app_requests_total)'
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use mcpwatch_core::{
    CollectError, Collector, MetricSink, ScrapeContext, ScrapeEngine, async_trait, metrics_response,
};
use mcpwatch_host::{HostCollector, HostConfig};

/// The application's own counter, reported through the same engine.
#[derive(Clone, Default)]
struct AppRequests(Arc<AtomicU64>);

#[async_trait]
impl Collector for AppRequests {
    fn name(&self) -> &str {
        "app"
    }

    async fn collect(
        &self,
        _ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        sink.counter("app_requests_total", "Requests to the application's pages.")
            .add(&[], self.0.load(Ordering::Relaxed) as f64);
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    engine: ScrapeEngine,
    requests: AppRequests,
}

async fn hello(State(state): State<AppState>) -> &'static str {
    state.requests.0.fetch_add(1, Ordering::Relaxed);
    "hello\n"
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    metrics_response(&state.engine, &headers).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());

    let requests = AppRequests::default();
    let engine = ScrapeEngine::builder()
        .collector(HostCollector::new(HostConfig::default())?)
        .collector(requests.clone())
        .build_info(env!("CARGO_PKG_VERSION"), "example")
        .build();

    let app = Router::new()
        .route("/", get(hello))
        .route("/metrics", get(metrics))
        .with_state(AppState { engine, requests });

    let listener = tokio::net::TcpListener::bind(&address).await?;
    tracing::info!(address = %listener.local_addr()?, "Serving.");
    axum::serve(listener, app)
        .with_graceful_shutdown(mcpwatch_core::web::shutdown_signal())
        .await?;
    Ok(())
}
