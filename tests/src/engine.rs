//! Scrape engines for the in-process tests of collectors.

use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::encode::Format;
use mcpwatch_core::{Collector, Scrape, ScrapeEngine, ScrapeOptions};

/// An engine over `collectors` with a 5 s timeout and no `process_*` metrics.
pub fn engine(collectors: Vec<Arc<dyn Collector>>) -> ScrapeEngine {
    ScrapeEngine::builder()
        .collectors(collectors)
        .options(ScrapeOptions {
            timeout: Duration::from_secs(5),
            timeout_offset: Duration::from_millis(500),
        })
        .process_metrics(false)
        .build()
}

/// A scrape in the classic text format.
///
/// # Panics
/// When the encoding is not UTF-8.
pub async fn text(scrape: &Scrape) -> String {
    let body = scrape.body(Format::Text, false).await;
    String::from_utf8(body.to_vec()).expect("utf-8")
}
