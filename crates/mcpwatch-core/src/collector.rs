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
    /// `certificates`, `log_patterns`, `containers`.
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

/// One collector's way onto the blocking pool (reading files, listing a directory): one
/// piece of work at a time. A later scrape waits for the lane without holding a thread, so
/// a read that hangs (a dead network mount, a FIFO) holds one thread of the pool, not one
/// per scrape, and the other collectors' reads go on.
#[derive(Debug, Default)]
pub struct BlockingLane(std::sync::Arc<tokio::sync::Mutex<()>>);

impl BlockingLane {
    /// Whether a work holds the lane now, such as an earlier scrape's read that hangs: a
    /// caller that would rather fail at once than wait for the lane asks first.
    pub fn is_busy(&self) -> bool {
        self.0.try_lock().is_err()
    }

    /// Runs `work` on the blocking pool once the lane is free, handing it the instant to
    /// stop by: [`READ_MARGIN`] before the scrape's deadline, so that a read cut short
    /// still reports what it read. When the lane stays taken until the deadline, or the
    /// work panicked or did not end by the deadline, the error names `what`.
    pub async fn run<T: Send + 'static>(
        &self,
        ctx: &ScrapeContext,
        what: &str,
        work: impl FnOnce(std::time::Instant) -> T + Send + 'static,
    ) -> Result<T, CollectError> {
        let deadline = ctx.deadline();
        let stop = deadline
            .checked_sub(READ_MARGIN)
            .unwrap_or(deadline)
            .into_std();
        let Ok(turn) = tokio::time::timeout_at(deadline, self.0.clone().lock_owned()).await else {
            return Err(CollectError::msg(format!(
                "{what} is still under way from an earlier scrape"
            )));
        };
        let task = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(stop)
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => Err(CollectError::msg(format!("{what} failed: {error}"))),
            Err(_) => Err(CollectError::msg(format!("{what} did not finish in time"))),
        }
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

    #[tokio::test]
    async fn a_lane_runs_one_work_at_a_time_and_a_hung_one_holds_one_thread() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let lane = BlockingLane::default();
        let soon = || ScrapeContext::new(Instant::now() + Duration::from_millis(200));
        // A read that hangs past its scrape's deadline, as on a dead mount.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = lane
            .run(&soon(), "the first read", move |_| {
                let _ = released.recv();
                1
            })
            .await;
        let error = first.expect_err("cut at the deadline").to_string();
        assert_eq!(error, "the first read did not finish in time");
        assert!(lane.is_busy(), "the hung read holds the lane");
        // The next scrape waits for the lane: its work never starts, no thread is taken.
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let second = lane
            .run(&soon(), "the second read", move |_| {
                flag.store(true, Ordering::SeqCst)
            })
            .await;
        let error = second.expect_err("lane taken").to_string();
        assert_eq!(
            error,
            "the second read is still under way from an earlier scrape"
        );
        assert!(!started.load(Ordering::SeqCst));
        // Once the hung read returns, the lane is free again.
        release.send(()).expect("release");
        let later = ScrapeContext::new(Instant::now() + Duration::from_secs(30));
        assert_eq!(
            lane.run(&later, "the third read", |_| 3)
                .await
                .expect("free"),
            3
        );
        assert!(!lane.is_busy());
    }

    #[test]
    fn error_text_includes_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = CollectError::from(io).context("reading /proc/stat");
        assert_eq!(e.to_string(), "reading /proc/stat: no such file");
    }
}
