//! Scrape engines for the in-process tests of collectors, and the one way those tests
//! scrape: through [`scrape`], which checks every exposition for duplicate series.

use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::encode::Format;
use mcpwatch_core::{Collector, Scrape, ScrapeEngine, ScrapeOptions};

use crate::exposition::checked;

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

/// Serves one scrape, as `engine.scrape(scraper_timeout)` does, and fails the test when its
/// exposition holds a series twice.
///
/// # Panics
/// On a duplicate series.
pub async fn scrape(engine: &ScrapeEngine, scraper_timeout: Option<Duration>) -> Arc<Scrape> {
    let scrape = engine.scrape(scraper_timeout).await;
    text(&scrape).await;
    scrape
}

/// A scrape in the classic text format, checked for duplicate series.
///
/// # Panics
/// When the encoding is not UTF-8, or on a duplicate series.
pub async fn text(scrape: &Scrape) -> String {
    let body = scrape.body(Format::Text, false).await;
    checked(String::from_utf8(body.to_vec()).expect("utf-8"))
}

/// The samples of family `name` in a scrape, as (value of `label`, sample value), in the
/// order written.
pub fn values_by_label(scrape: &Scrape, name: &str, label: &str) -> Vec<(String, f64)> {
    scrape
        .group(name)
        .map(|group| {
            group
                .members()
                .iter()
                .flat_map(|f| f.samples())
                .map(|s| {
                    let key = s
                        .labels
                        .iter()
                        .find(|(k, _)| k == label)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    let value = match s.value {
                        mcpwatch_core::metrics::SampleValue::Number(v) => v,
                        mcpwatch_core::metrics::SampleValue::Histogram(_) => f64::NAN,
                    };
                    (key, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every reason a `<prefix>_connect_failure` family has, in the order written.
const CONNECT_FAILURE_REASONS: [&str; 8] = [
    "refused",
    "timeout",
    "dns",
    "tls",
    "auth",
    "too_many_connections",
    "protocol",
    "other",
];

/// The reason `family` (`pg_connect_failure`, `redis_connect_failure`) gives, or `None`
/// when connected; every reason must be there, one at most at 1.
///
/// # Panics
/// When a reason is missing or more than one is set.
pub fn connect_failure(scrape: &Scrape, family: &str) -> Option<String> {
    let values = values_by_label(scrape, family, "reason");
    let names: Vec<&str> = values.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(names, CONNECT_FAILURE_REASONS, "{family}: {values:?}");
    let set: Vec<&(String, f64)> = values.iter().filter(|(_, v)| *v != 0.0).collect();
    assert!(
        set.len() <= 1 && set.iter().all(|(_, v)| *v == 1.0),
        "{family}: {values:?}"
    );
    set.first().map(|(r, _)| r.clone())
}
