//! The `Collector` trait every collector crate implements.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::metrics::MetricSink;

/// What a collector knows about the scrape it serves.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeContext {
    deadline: Instant,
}

impl ScrapeContext {
    /// A context whose collection must end by `deadline`.
    pub fn new(deadline: Instant) -> Self {
        Self { deadline }
    }

    /// When the engine stops waiting for collectors.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left until the deadline; a collector sizes its own I/O timeouts by it.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Gathers a snapshot of metric families for one target.
///
/// The engine runs every collector of a scrape concurrently under one deadline. A collector
/// pushes families into the sink as it learns them: when it fails or runs past the
/// deadline, what it pushed so far is still served (so `pg_up 0` reaches the scraper) and
/// the collector is marked `mcpwatch_scrape_collector_success 0`.
#[async_trait]
pub trait Collector: Send + Sync + 'static {
    /// The `collector` label: `host`, `postgres`, `redis`, `wsdaemon`, `http`, `files`,
    /// `certificates`, `log_patterns`.
    fn name(&self) -> &str;

    /// The `target` label: the configured target's name, empty for the local host. A
    /// non-empty target is added to every series the collector produces.
    fn target(&self) -> &str {
        ""
    }

    /// Gathers metrics into `sink`. Errors name what failed, never a secret.
    async fn collect(&self, ctx: &ScrapeContext, sink: &mut MetricSink)
    -> Result<(), CollectError>;
}

/// Time kept between a blocking read's stop and the scrape's deadline, for what it read to
/// be reported.
pub const READ_MARGIN: Duration = Duration::from_millis(50);

/// Runs `work` (reading files, listing a directory) on the blocking pool, handing it the
/// instant to stop by: [`READ_MARGIN`] before the scrape's deadline, so that a read cut
/// short still reports what it read. When the work panicked, or did not end by the
/// deadline (it may be waiting for an earlier scrape's, still under way), the error names
/// `what`.
pub async fn on_blocking_pool<T: Send + 'static>(
    ctx: &ScrapeContext,
    what: &str,
    work: impl FnOnce(std::time::Instant) -> T + Send + 'static,
) -> Result<T, CollectError> {
    let deadline = ctx.deadline();
    let stop = deadline
        .checked_sub(READ_MARGIN)
        .unwrap_or(deadline)
        .into_std();
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || work(stop))).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(error)) => Err(CollectError::msg(format!("{what} failed: {error}"))),
        Err(_) => Err(CollectError::msg(format!("{what} did not finish in time"))),
    }
}

/// Why a collection failed. Its text goes to the log and `/health`, never into a label.
pub struct CollectError {
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl CollectError {
    /// An error from a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            source: message.to_string().into(),
        }
    }

    /// Prefixes the error with what was being done.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self::msg(format_args!("{what}: {self}"))
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for CollectError {
    fn from(error: E) -> Self {
        Self {
            source: Box::new(error),
        }
    }
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        let mut cause = self.source.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_includes_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = CollectError::from(io).context("reading /proc/stat");
        assert_eq!(e.to_string(), "reading /proc/stat: no such file");
    }
}
