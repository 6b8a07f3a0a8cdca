//! The collector: a follower and its counts, polled on the blocking pool at each scrape.

use std::sync::{Arc, Mutex, PoisonError};

use mcpwatch_core::follow::{FilePattern, Follower};
use mcpwatch_core::{
    BlockingLane, CollectError, Collector, MetricSink, ScrapeContext, async_trait,
};

use crate::LogPatternsError;
use crate::config::LogPatternsConfig;
use crate::patterns::PatternCounts;

/// Lines of a log counted by named patterns.
#[derive(Debug)]
pub struct LogPatternsCollector {
    name: String,
    state: Arc<Mutex<State>>,
    /// One read at a time: a read that hangs holds one thread of the blocking pool.
    lane: BlockingLane,
}

#[derive(Debug)]
struct State {
    follower: Follower,
    counts: PatternCounts,
}

impl LogPatternsCollector {
    /// Checks the configuration and starts following at the end of the files already
    /// there (at their start with `read_existing`). Nothing is read until the first scrape.
    pub fn new(config: LogPatternsConfig) -> Result<Self, LogPatternsError> {
        config
            .validate()
            .map_err(|(key, message)| LogPatternsError { key, message })?;
        let pattern = FilePattern::new(config.path.path()).map_err(|message| LogPatternsError {
            key: "path".to_owned(),
            message,
        })?;
        let follower = Follower::new(
            pattern,
            config.max_line_bytes as usize,
            config.read_existing,
        );
        let counts = PatternCounts::new(&config.patterns, config.max_series as usize);
        Ok(Self {
            name: config.name,
            state: Arc::new(Mutex::new(State { follower, counts })),
            lane: BlockingLane::default(),
        })
    }
}

#[async_trait]
impl Collector for LogPatternsCollector {
    fn name(&self) -> &str {
        "log_patterns"
    }

    fn target(&self) -> &str {
        &self.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let state = self.state.clone();
        let read = self
            .lane
            .run(ctx, "reading the log", move |stop| {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                let State { follower, counts } = &mut *state;
                follower.poll(stop, counts);
                let mut read = MetricSink::default();
                metrics(follower, counts, &mut read);
                read
            })
            .await?;
        sink.append(read);
        Ok(())
    }
}

fn metrics(follower: &Follower, counts: &PatternCounts, sink: &mut MetricSink) {
    let files = follower.files();
    sink.gauge(
        "log_up",
        "Whether a file of the log is followed (0: no file matches the path yet, or none \
         can be opened).",
    )
    .add(&[], f64::from(u8::from(files > 0)));
    counts.metrics(sink);
    sink.counter("log_read_bytes_total", "Bytes read from the log's files.")
        .add(&[], follower.bytes_read() as f64);
    sink.counter(
        "log_rotations_total",
        "Rotations of the log seen: a file truncated in place (copytruncate), or a new file \
         under a name that a followed file left.",
    )
    .add(&[], follower.rotations() as f64);
    sink.gauge(
        "log_files",
        "Files of the log followed: matching files that can be opened.",
    )
    .add(&[], files as f64);
}
