//! The scrape engine: runs every collector concurrently under one deadline, shares a
//! collection with the scrapes that arrive while it runs when that cannot cost them
//! anything, and adds its own metrics.
//!
//! Sharing rule: a scrape with budget `b` and deadline `d` joins a collection under way
//! only if that collection was given at least `b` and ends by `d`. It then gave every
//! collector at least the time the scrape itself would have, so a collector it cut short
//! would have been cut short by the scrape's own collection too; and its result arrives
//! before the scrape must answer. Scrapes with the same budget (one Prometheus, or an HA
//! pair with one `scrape_timeout`) share; a scrape with a longer budget never receives a
//! result cut at a shorter one's deadline, and one with a shorter budget never waits past
//! its own.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, join_all};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::collector::{CollectError, Collector, ScrapeContext};
use crate::encode::{Format, gzip};
use crate::metrics::{ConstLabels, FamilyGroup, MetricFamily, MetricSink, merge_families};
use crate::process::ProcessMetrics;

/// Metrics produced synchronously on every scrape, outside the collector timing: the
/// process's own metrics, build info, a binary's reload status.
pub trait MetricSource: Send + Sync + 'static {
    /// Adds this source's families.
    fn collect(&self, sink: &mut MetricSink);
}

impl<T: MetricSource + ?Sized> MetricSource for Arc<T> {
    fn collect(&self, sink: &mut MetricSink) {
        (**self).collect(sink);
    }
}

/// Timing settings of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeOptions {
    /// The longest a collection may take (`scrape.timeout`).
    pub timeout: Duration,
    /// Kept free of the scraper's `X-Prometheus-Scrape-Timeout-Seconds` for encoding and
    /// the network.
    pub timeout_offset: Duration,
}

impl Default for ScrapeOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            timeout_offset: Duration::from_millis(500),
        }
    }
}

impl ScrapeOptions {
    /// The time a collection may take: the smaller of the configured timeout and the
    /// scraper's own timeout minus the offset (half of it when it is shorter than twice
    /// the offset).
    pub fn budget(&self, scraper_timeout: Option<Duration>) -> Duration {
        match scraper_timeout {
            Some(t) if !t.is_zero() => {
                let usable = if t > self.timeout_offset * 2 {
                    t - self.timeout_offset
                } else {
                    t / 2
                };
                self.timeout.min(usable)
            }
            _ => self.timeout,
        }
    }
}

/// Parses the `X-Prometheus-Scrape-Timeout-Seconds` header value.
pub fn parse_scrape_timeout_header(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// How a collector's last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectorOutcome {
    /// It returned its data.
    Success,
    /// It returned an error.
    Failed(String),
    /// It was still running at the deadline.
    TimedOut,
}

/// What `/health` reports of a collector.
#[derive(Debug, Clone)]
pub struct CollectorStatus {
    /// The `collector` label.
    pub collector: String,
    /// The `target` label.
    pub target: String,
    /// How the last run ended; `None` before the first scrape.
    pub last_outcome: Option<CollectorOutcome>,
    /// Duration of the last run.
    pub last_duration: Duration,
    /// When the last run ended.
    pub last_scrape: Option<SystemTime>,
    /// When a run last succeeded.
    pub last_success: Option<SystemTime>,
}

struct Entry {
    collector: Arc<dyn Collector>,
    const_labels: ConstLabels,
}

struct EngineState {
    entries: Vec<Entry>,
    options: ScrapeOptions,
}

type SharedScrape = Shared<BoxFuture<'static, Arc<Scrape>>>;

/// A collection under way, which later scrapes may share (see the module's sharing rule).
struct InFlight {
    /// Tells this collection from the others under way.
    generation: u64,
    /// The collectors and options it runs with; a scrape after a reload does not join it.
    state: Arc<EngineState>,
    /// The time its collectors were given.
    budget: Duration,
    /// When it ends at the latest.
    deadline: Instant,
    scrape: SharedScrape,
    joined: Arc<AtomicUsize>,
}

impl InFlight {
    /// Whether a scrape with this configuration, budget and deadline may take this
    /// collection's result.
    fn serves(&self, state: &Arc<EngineState>, budget: Duration, deadline: Instant) -> bool {
        Arc::ptr_eq(&self.state, state) && self.budget >= budget && self.deadline <= deadline
    }
}

struct Inner {
    state: RwLock<Arc<EngineState>>,
    /// Collections under way; more than one only while scrapes with different budgets
    /// overlap.
    in_flight: Mutex<Vec<InFlight>>,
    status: Mutex<HashMap<(String, String), CollectorStatus>>,
    sources: Vec<Arc<dyn MetricSource>>,
    build_info: (String, String),
    requests: AtomicU64,
    collections: AtomicU64,
    generations: AtomicU64,
}

/// Runs collectors for scrapes. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ScrapeEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScrapeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("ScrapeEngine")
            .field(
                "collectors",
                &state
                    .entries
                    .iter()
                    .map(|e| (e.collector.name(), e.collector.target()))
                    .collect::<Vec<_>>(),
            )
            .field("options", &state.options)
            .finish()
    }
}

/// Builds a [`ScrapeEngine`].
#[must_use]
pub struct ScrapeEngineBuilder {
    collectors: Vec<Arc<dyn Collector>>,
    options: ScrapeOptions,
    sources: Vec<Arc<dyn MetricSource>>,
    process_metrics: bool,
    build_info: (String, String),
}

impl std::fmt::Debug for ScrapeEngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeEngineBuilder")
            .field("collectors", &self.collectors.len())
            .field("options", &self.options)
            .finish()
    }
}

impl Default for ScrapeEngineBuilder {
    fn default() -> Self {
        Self {
            collectors: Vec::new(),
            options: ScrapeOptions::default(),
            sources: Vec::new(),
            process_metrics: true,
            build_info: (env!("CARGO_PKG_VERSION").to_owned(), "unknown".to_owned()),
        }
    }
}

impl ScrapeEngineBuilder {
    /// Adds a collector.
    pub fn collector(mut self, collector: impl Collector) -> Self {
        self.collectors.push(Arc::new(collector));
        self
    }

    /// Adds collectors that are already shared.
    pub fn collectors(mut self, collectors: impl IntoIterator<Item = Arc<dyn Collector>>) -> Self {
        self.collectors.extend(collectors);
        self
    }

    /// Sets the timeouts.
    pub fn options(mut self, options: ScrapeOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a synchronous metric source.
    pub fn source(mut self, source: impl MetricSource) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// Whether to report `process_*` metrics (on by default). A service that embeds the
    /// engine and already reports them turns this off.
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.process_metrics = enabled;
        self
    }

    /// The version and revision reported by `mcpwatch_build_info`.
    pub fn build_info(mut self, version: impl Into<String>, revision: impl Into<String>) -> Self {
        self.build_info = (version.into(), revision.into());
        self
    }

    /// Builds the engine.
    pub fn build(mut self) -> ScrapeEngine {
        if self.process_metrics {
            self.sources.insert(0, Arc::new(ProcessMetrics));
        }
        let inner = Inner {
            state: RwLock::new(Arc::new(EngineState {
                entries: Vec::new(),
                options: self.options,
            })),
            in_flight: Mutex::new(Vec::new()),
            status: Mutex::new(HashMap::new()),
            sources: self.sources,
            build_info: self.build_info,
            requests: AtomicU64::new(0),
            collections: AtomicU64::new(0),
            generations: AtomicU64::new(0),
        };
        let engine = ScrapeEngine {
            inner: Arc::new(inner),
        };
        engine.replace(self.collectors, self.options);
        engine
    }
}

impl ScrapeEngine {
    /// Starts building an engine.
    pub fn builder() -> ScrapeEngineBuilder {
        ScrapeEngineBuilder::default()
    }

    fn state(&self) -> Arc<EngineState> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the collectors and options, as a configuration reload does. A collection
    /// under way finishes with the old set.
    pub fn replace(&self, collectors: Vec<Arc<dyn Collector>>, options: ScrapeOptions) {
        let entries: Vec<Entry> = collectors
            .into_iter()
            .map(|collector| {
                let const_labels: ConstLabels = if collector.target().is_empty() {
                    Arc::from([])
                } else {
                    Arc::from([("target".into(), collector.target().to_owned())])
                };
                Entry {
                    collector,
                    const_labels,
                }
            })
            .collect();
        {
            let mut status = self
                .inner
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<(String, String)> = entries
                .iter()
                .map(|e| {
                    (
                        e.collector.name().to_owned(),
                        e.collector.target().to_owned(),
                    )
                })
                .collect();
            status.retain(|k, _| keys.contains(k));
            for (collector, target) in keys {
                status
                    .entry((collector.clone(), target.clone()))
                    .or_insert_with(|| CollectorStatus {
                        collector,
                        target,
                        last_outcome: None,
                        last_duration: Duration::ZERO,
                        last_scrape: None,
                        last_success: None,
                    });
            }
        }
        *self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(EngineState { entries, options });
    }

    /// The current timeouts.
    pub fn options(&self) -> ScrapeOptions {
        self.state().options
    }

    /// `(collector, target)` of every collector, in order.
    pub fn collectors(&self) -> Vec<(String, String)> {
        self.state()
            .entries
            .iter()
            .map(|e| {
                (
                    e.collector.name().to_owned(),
                    e.collector.target().to_owned(),
                )
            })
            .collect()
    }

    /// Status of every collector, in configuration order.
    pub fn status(&self) -> Vec<CollectorStatus> {
        let status = self
            .inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.collectors()
            .into_iter()
            .filter_map(|key| status.get(&key).cloned())
            .collect()
    }

    /// The version and revision this engine reports.
    pub fn build_info(&self) -> (&str, &str) {
        (&self.inner.build_info.0, &self.inner.build_info.1)
    }

    /// Number of scrapes waiting on collections under way (0 when none runs).
    pub fn scrapes_in_flight(&self) -> usize {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|f| f.joined.load(Ordering::SeqCst))
            .sum()
    }

    /// Number of collections run so far.
    pub fn collections(&self) -> u64 {
        self.inner.collections.load(Ordering::SeqCst)
    }

    /// Serves one scrape, limited by the configured timeout and `scraper_timeout` (the
    /// scraper's `X-Prometheus-Scrape-Timeout-Seconds`). If a collection is under way that
    /// was given at least this scrape's budget and ends by its deadline, waits for it and
    /// shares its result; otherwise starts one, which later scrapes may share in turn.
    ///
    /// The collection runs in its own task, so a scraper that disconnects does not cancel
    /// it for the others.
    pub async fn scrape(&self, scraper_timeout: Option<Duration>) -> Arc<Scrape> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let state = self.state();
        let budget = state.options.budget(scraper_timeout);
        let deadline = Instant::now() + budget;
        let (scrape, joined) = {
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // The latest one that qualifies has the freshest data.
            match in_flight
                .iter()
                .rev()
                .find(|f| f.serves(&state, budget, deadline))
            {
                Some(shared) => (shared.scrape.clone(), shared.joined.clone()),
                // None, or only ones that were given less time than this scrape has, that
                // could end after this scraper gave up, or that run a configuration since
                // replaced: start another.
                None => {
                    let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
                    let inner = self.inner.clone();
                    let collected = state.clone();
                    let task = tokio::spawn(async move {
                        let clear = ClearInFlight {
                            inner: &inner,
                            generation,
                        };
                        let scrape = inner.collect(&collected, deadline, budget).await;
                        drop(clear);
                        scrape
                    });
                    let scrape: SharedScrape = async move {
                        task.await.unwrap_or_else(|error| {
                            tracing::error!(%error, "Collection task failed.");
                            Arc::new(Scrape::failed())
                        })
                    }
                    .boxed()
                    .shared();
                    let joined = Arc::new(AtomicUsize::new(0));
                    in_flight.push(InFlight {
                        generation,
                        state,
                        budget,
                        deadline,
                        scrape: scrape.clone(),
                        joined: joined.clone(),
                    });
                    (scrape, joined)
                }
            }
        };
        let _waiting = Waiting::new(joined);
        scrape.await
    }
}

/// Counts a scrape as waiting on a collection until it has the result or is dropped (its
/// client went away).
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes a collection off the list of those under way when it ends, even by a panic, so
/// that the next scrape starts a new one.
struct ClearInFlight<'a> {
    inner: &'a Inner,
    generation: u64,
}

impl Drop for ClearInFlight<'_> {
    fn drop(&mut self) {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|f| f.generation != self.generation);
    }
}

impl Inner {
    async fn collect(
        &self,
        state: &EngineState,
        deadline: Instant,
        budget: Duration,
    ) -> Arc<Scrape> {
        self.collections.fetch_add(1, Ordering::Relaxed);
        let ctx = ScrapeContext::new(deadline);
        let mut sinks: Vec<MetricSink> = state
            .entries
            .iter()
            .map(|e| MetricSink::new(e.const_labels.clone()))
            .collect();
        let runs = state
            .entries
            .iter()
            .zip(sinks.iter_mut())
            .map(|(entry, sink)| {
                let ctx = &ctx;
                async move {
                    let start = Instant::now();
                    let run = AssertUnwindSafe(entry.collector.collect(ctx, sink)).catch_unwind();
                    let outcome = match tokio::time::timeout_at(deadline, run).await {
                        Ok(Ok(Ok(()))) => CollectorOutcome::Success,
                        Ok(Ok(Err(error))) => CollectorOutcome::Failed(error.to_string()),
                        Ok(Err(_panic)) => CollectorOutcome::Failed(
                            CollectError::msg("collector panicked").to_string(),
                        ),
                        Err(_elapsed) => CollectorOutcome::TimedOut,
                    };
                    (outcome, start.elapsed())
                }
            });
        let outcomes = join_all(runs).await;

        let mut own = MetricSink::default();
        self.record(state, &outcomes, budget, &mut own);
        for source in &self.sources {
            source.collect(&mut own);
        }
        let mut families: Vec<MetricFamily> = sinks
            .into_iter()
            .flat_map(MetricSink::into_families)
            .collect();
        families.extend(own.into_families());
        let (groups, conflicts) = merge_families(families);
        for family in conflicts {
            tracing::error!(
                metric = family.name(),
                "Metric reported with two different types; the second was dropped."
            );
        }
        Arc::new(Scrape::new(groups))
    }

    /// Updates the collectors' status, logs what changed, and adds the per-collector and
    /// engine metrics.
    fn record(
        &self,
        state: &EngineState,
        outcomes: &[(CollectorOutcome, Duration)],
        budget: Duration,
        sink: &mut MetricSink,
    ) {
        let now = SystemTime::now();
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut durations = MetricFamily::gauge(
            "mcpwatch_scrape_collector_duration_seconds",
            "Duration of a collector's last run, in seconds.",
        );
        let mut successes = MetricFamily::gauge(
            "mcpwatch_scrape_collector_success",
            "Whether a collector's last run succeeded (1) or failed or timed out (0).",
        );
        for (entry, (outcome, duration)) in state.entries.iter().zip(outcomes) {
            let (name, target) = (entry.collector.name(), entry.collector.target());
            let labels = [("collector", name), ("target", target)];
            durations.add(&labels, duration.as_secs_f64());
            let success = *outcome == CollectorOutcome::Success;
            successes.add(&labels, if success { 1.0 } else { 0.0 });
            if let Some(s) = status.get_mut(&(name.to_owned(), target.to_owned())) {
                log_transition(name, target, s.last_outcome.as_ref(), outcome, *duration);
                s.last_outcome = Some(outcome.clone());
                s.last_duration = *duration;
                s.last_scrape = Some(now);
                if success {
                    s.last_success = Some(now);
                }
            }
        }
        drop(status);
        sink.family(durations);
        sink.family(successes);
        sink.info(
            "mcpwatch_build_info",
            "Version and revision of mcpwatch, always 1.",
        )
        .add(
            &[
                ("version", &self.build_info.0),
                ("revision", &self.build_info.1),
            ],
            1.0,
        );
        sink.counter(
            "mcpwatch_scrape_requests_total",
            "Scrape requests served, including those that shared a collection.",
        )
        .add(&[], self.requests.load(Ordering::Relaxed) as f64);
        sink.counter(
            "mcpwatch_scrape_collections_total",
            "Collections run; concurrent scrapes share one.",
        )
        .add(&[], self.collections.load(Ordering::Relaxed) as f64);
        sink.gauge(
            "mcpwatch_scrape_timeout_seconds",
            "Time the last collection was allowed, in seconds.",
        )
        .add(&[], budget.as_secs_f64());
    }
}

/// Logs a collector's failure when it starts or changes, and its recovery, so that a
/// target that stays down does not flood the log on every scrape.
fn log_transition(
    collector: &str,
    target: &str,
    previous: Option<&CollectorOutcome>,
    outcome: &CollectorOutcome,
    duration: Duration,
) {
    let changed = previous != Some(outcome);
    match outcome {
        CollectorOutcome::Success if previous.is_some_and(|p| *p != CollectorOutcome::Success) => {
            tracing::info!(collector, target, "Collector recovered.");
        }
        CollectorOutcome::Success => {}
        CollectorOutcome::Failed(error) if changed => {
            tracing::warn!(collector, target, %error, "Collector failed.");
        }
        CollectorOutcome::TimedOut if changed => {
            tracing::warn!(
                collector,
                target,
                seconds = duration.as_secs_f64(),
                "Collector ran past the scrape deadline."
            );
        }
        CollectorOutcome::Failed(error) => {
            tracing::debug!(collector, target, %error, "Collector still failing.");
        }
        CollectorOutcome::TimedOut => {
            tracing::debug!(collector, target, "Collector still timing out.");
        }
    }
}

/// The result of one collection: merged metric families, and their encodings made on first
/// use and shared by every scrape that waited for this collection.
#[derive(Debug)]
pub struct Scrape {
    groups: Arc<[FamilyGroup]>,
    encoded: [OnceCell<Bytes>; 4],
    complete: bool,
}

impl Scrape {
    fn new(groups: Vec<FamilyGroup>) -> Self {
        Self {
            groups: Arc::from(groups),
            encoded: Default::default(),
            complete: true,
        }
    }

    /// The result of a collection that broke down (a bug, logged): no metrics, and not to
    /// be served as if the scrape had worked.
    fn failed() -> Self {
        Self {
            complete: false,
            ..Self::new(Vec::new())
        }
    }

    /// False when the collection itself broke down; its scrape must fail (HTTP 500) rather
    /// than look like a target with no series.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The merged families, sorted by name.
    pub fn groups(&self) -> &[FamilyGroup] {
        &self.groups
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&FamilyGroup> {
        self.groups
            .binary_search_by(|g| g.name().cmp(name))
            .ok()
            .map(|i| &self.groups[i])
    }

    /// The value of the first series of `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.group(name)?
            .members()
            .iter()
            .find_map(|f| f.value(labels))
    }

    /// The body in `format`, gzip-compressed when `gzipped`.
    pub async fn body(&self, format: Format, gzipped: bool) -> Bytes {
        let index = match format {
            Format::Text => 0,
            Format::OpenMetrics => 1,
        };
        let plain = self.encoded[index]
            .get_or_init(|| async { format.encode(&self.groups) })
            .await;
        if !gzipped {
            return plain.clone();
        }
        self.encoded[index + 2]
            .get_or_init(|| async { gzip(plain) })
            .await
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicUsize;

    struct Fixed {
        target: &'static str,
        value: f64,
    }

    #[async_trait]
    impl Collector for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn target(&self) -> &str {
            self.target
        }
        async fn collect(
            &self,
            _ctx: &ScrapeContext,
            sink: &mut MetricSink,
        ) -> Result<(), CollectError> {
            sink.gauge("fixed_value", "A fixed value.")
                .add(&[], self.value);
            Ok(())
        }
    }

    /// Pushes a family, then hangs until cancelled.
    struct Hanging;

    #[async_trait]
    impl Collector for Hanging {
        fn name(&self) -> &str {
            "hanging"
        }
        async fn collect(
            &self,
            _ctx: &ScrapeContext,
            sink: &mut MetricSink,
        ) -> Result<(), CollectError> {
            sink.gauge("hanging_up", "Reached before hanging.")
                .add(&[], 0.0);
            std::future::pending::<()>().await;
            Ok(())
        }
    }

    struct Failing;

    #[async_trait]
    impl Collector for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn target(&self) -> &str {
            "db"
        }
        async fn collect(
            &self,
            _ctx: &ScrapeContext,
            _sink: &mut MetricSink,
        ) -> Result<(), CollectError> {
            Err(CollectError::msg("connection refused"))
        }
    }

    struct Panicking;

    #[async_trait]
    impl Collector for Panicking {
        fn name(&self) -> &str {
            "panicking"
        }
        async fn collect(
            &self,
            _ctx: &ScrapeContext,
            _sink: &mut MetricSink,
        ) -> Result<(), CollectError> {
            panic!("bug in a collector")
        }
    }

    #[test]
    fn budget_is_the_smaller_of_config_and_header() {
        let o = ScrapeOptions {
            timeout: Duration::from_secs(10),
            timeout_offset: Duration::from_millis(500),
        };
        assert_eq!(o.budget(None), Duration::from_secs(10));
        assert_eq!(
            o.budget(Some(Duration::from_secs(2))),
            Duration::from_millis(1500)
        );
        assert_eq!(
            o.budget(Some(Duration::from_secs(30))),
            Duration::from_secs(10)
        );
        assert_eq!(
            o.budget(Some(Duration::from_millis(800))),
            Duration::from_millis(400)
        );
        assert_eq!(
            parse_scrape_timeout_header("2"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_scrape_timeout_header(" 9.5 "),
            Some(Duration::from_millis(9500))
        );
        assert_eq!(parse_scrape_timeout_header("-1"), None);
        assert_eq!(parse_scrape_timeout_header("soon"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_collector_does_not_hold_back_the_others() {
        let engine = ScrapeEngine::builder()
            .collector(Fixed {
                target: "a",
                value: 7.0,
            })
            .collector(Hanging)
            .collector(Failing)
            .collector(Panicking)
            .build();
        let start = Instant::now();
        let scrape = engine.scrape(Some(Duration::from_secs(2))).await;
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert_eq!(scrape.value("fixed_value", &[("target", "a")]), Some(7.0));
        assert_eq!(scrape.value("hanging_up", &[]), Some(0.0));
        let success =
            |c: &str| scrape.value("mcpwatch_scrape_collector_success", &[("collector", c)]);
        assert_eq!(success("fixed"), Some(1.0));
        assert_eq!(success("hanging"), Some(0.0));
        assert_eq!(success("failing"), Some(0.0));
        assert_eq!(success("panicking"), Some(0.0));
        assert_eq!(
            scrape.value(
                "mcpwatch_scrape_collector_duration_seconds",
                &[("collector", "hanging")]
            ),
            Some(1.5)
        );
        let status = engine.status();
        assert_eq!(status[1].last_outcome, Some(CollectorOutcome::TimedOut));
        assert_eq!(
            status[2].last_outcome,
            Some(CollectorOutcome::Failed("connection refused".into()))
        );
        assert!(status[0].last_success.is_some());
        assert!(status[1].last_success.is_none());
    }

    struct Gate {
        runs: Arc<AtomicUsize>,
        open: Arc<tokio::sync::Notify>,
    }

    #[async_trait]
    impl Collector for Gate {
        fn name(&self) -> &str {
            "gate"
        }
        async fn collect(
            &self,
            _ctx: &ScrapeContext,
            sink: &mut MetricSink,
        ) -> Result<(), CollectError> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            self.open.notified().await;
            sink.gauge("gate_run", "Which run this is.")
                .add(&[], run as f64);
            Ok(())
        }
    }

    /// An engine with one [`Gate`]: its runs, and what opens the gate.
    fn gate_engine() -> (ScrapeEngine, Arc<AtomicUsize>, Arc<tokio::sync::Notify>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(tokio::sync::Notify::new());
        let engine = ScrapeEngine::builder()
            .collector(Gate {
                runs: runs.clone(),
                open: open.clone(),
            })
            .process_metrics(false)
            .build();
        (engine, runs, open)
    }

    /// Starts a scrape in a task and returns once `waiting` scrapes wait on a collection.
    async fn spawn_waiting_scrape(
        engine: &ScrapeEngine,
        waiting: usize,
    ) -> tokio::task::JoinHandle<Arc<Scrape>> {
        let task = tokio::spawn({
            let engine = engine.clone();
            async move { engine.scrape(None).await }
        });
        while engine.scrapes_in_flight() < waiting {
            tokio::task::yield_now().await;
        }
        task
    }

    #[tokio::test]
    async fn concurrent_scrapes_share_one_collection() {
        let (engine, runs, open) = gate_engine();
        let scrapes: Vec<_> = (0..32)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.scrape(None).await })
            })
            .collect();
        while engine.scrapes_in_flight() < 32 {
            tokio::task::yield_now().await;
        }
        open.notify_one();
        for scrape in scrapes {
            let scrape = scrape.await.expect("scrape task");
            assert_eq!(scrape.value("gate_run", &[]), Some(1.0));
            assert_eq!(
                scrape.value("mcpwatch_scrape_requests_total", &[]),
                Some(32.0)
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(engine.collections(), 1);
        assert_eq!(engine.scrapes_in_flight(), 0);

        // The next scrape runs a new collection.
        let next = spawn_waiting_scrape(&engine, 1).await;
        open.notify_one();
        assert_eq!(
            next.await.expect("scrape").value("gate_run", &[]),
            Some(2.0)
        );
        assert_eq!(engine.collections(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scrape_that_must_answer_sooner_does_not_wait_for_a_longer_collection() {
        let runs = Arc::new(AtomicUsize::new(0));
        let engine = ScrapeEngine::builder()
            .collector(Gate {
                runs: runs.clone(),
                open: Arc::new(tokio::sync::Notify::new()),
            })
            .build();
        let long = spawn_waiting_scrape(&engine, 1).await;
        let start = Instant::now();
        let short = engine.scrape(Some(Duration::from_secs(2))).await;
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the short scrape collected on its own"
        );
        assert_eq!(
            short.value(
                "mcpwatch_scrape_collector_success",
                &[("collector", "gate")]
            ),
            Some(0.0)
        );
        let long = long.await.expect("long scrape");
        assert_eq!(
            long.value("mcpwatch_scrape_timeout_seconds", &[]),
            Some(10.0)
        );
        assert_eq!(engine.scrapes_in_flight(), 0);
    }

    /// Takes `duration` per run, as a daemon that answers in 0.7 s does.
    struct Slow {
        duration: Duration,
        runs: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl Collector for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        async fn collect(
            &self,
            _ctx: &ScrapeContext,
            sink: &mut MetricSink,
        ) -> Result<(), CollectError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            sink.gauge("slow_up", "Written before the wait.")
                .add(&[], 0.0);
            tokio::time::sleep(self.duration).await;
            if let Some(up) = sink.find_mut("slow_up") {
                up.set_all(1.0);
            }
            Ok(())
        }
    }

    fn slow_engine(duration: Duration) -> (ScrapeEngine, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let engine = ScrapeEngine::builder()
            .collector(Slow {
                duration,
                runs: runs.clone(),
            })
            .process_metrics(false)
            .build();
        (engine, runs)
    }

    /// Starts scrapes at the given offsets (in ms) with the given scraper timeouts, and
    /// returns each one's `slow_up` and collector success, in order.
    async fn staggered(
        engine: &ScrapeEngine,
        scrapes: &[(u64, Option<Duration>)],
    ) -> Vec<(Option<f64>, Option<f64>)> {
        let start = Instant::now();
        let tasks: Vec<_> = scrapes
            .iter()
            .map(|&(offset, timeout)| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(start + Duration::from_millis(offset)).await;
                    let scrape = engine.scrape(timeout).await;
                    (
                        scrape.value("slow_up", &[]),
                        scrape.value(
                            "mcpwatch_scrape_collector_success",
                            &[("collector", "slow")],
                        ),
                    )
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("scrape task"));
        }
        results
    }

    #[tokio::test(start_paused = true)]
    async fn a_longer_scrape_never_takes_a_result_cut_at_a_shorter_deadline() {
        let (engine, runs) = slow_engine(Duration::from_millis(700));
        // A 1 s scraper (0.5 s budget), and 50 ms later one with no timeout (10 s).
        let results = staggered(&engine, &[(0, Some(Duration::from_secs(1))), (50, None)]).await;
        assert_eq!(results[0], (Some(0.0), Some(0.0)), "0.5 s is too short");
        assert_eq!(results[1], (Some(1.0), Some(1.0)), "10 s is long enough");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(engine.collections(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_with_one_budget_share_one_collection_whenever_they_arrive() {
        let (engine, runs) = slow_engine(Duration::from_millis(700));
        let timeout = Some(Duration::from_secs(2));
        let scrapes: Vec<_> = (0..8).map(|i| (i * 60, timeout)).collect();
        let results = staggered(&engine, &scrapes).await;
        assert!(results.iter().all(|r| *r == (Some(1.0), Some(1.0))));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "eight scrapes, one collection"
        );
        assert_eq!(engine.collections(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn interleaved_budgets_share_per_budget() {
        let (engine, runs) = slow_engine(Duration::from_millis(700));
        let short = Some(Duration::from_secs(1));
        let scrapes: Vec<_> = (0..8)
            .map(|i| (i * 10, if i % 2 == 0 { short } else { None }))
            .collect();
        let results = staggered(&engine, &scrapes).await;
        for (i, result) in results.iter().enumerate() {
            let expected = if i % 2 == 0 { 0.0 } else { 1.0 };
            assert_eq!(*result, (Some(expected), Some(expected)), "scrape {i}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one collection per budget");
    }

    /// Whatever the mix of budgets and arrival times, a scrape whose own budget lets the
    /// collector finish gets the finished result.
    #[tokio::test(start_paused = true)]
    async fn no_scrape_is_served_a_cut_result_its_own_budget_would_have_avoided() {
        let duration = Duration::from_millis(700);
        let timeouts = [
            None,
            Some(Duration::from_millis(600)),
            Some(Duration::from_secs(1)),
            Some(Duration::from_millis(1250)),
            Some(Duration::from_millis(1300)),
            Some(Duration::from_secs(2)),
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let (engine, runs) = slow_engine(duration);
        let options = engine.options();
        let mut scrapes = Vec::new();
        let mut offset = 0;
        for _ in 0..200 {
            offset += next(120);
            scrapes.push((offset, timeouts[next(timeouts.len() as u64) as usize]));
        }
        let results = staggered(&engine, &scrapes).await;
        let mut long_enough = 0;
        for ((offset, timeout), result) in scrapes.iter().zip(&results) {
            if options.budget(*timeout) >= duration {
                long_enough += 1;
                assert_eq!(
                    *result,
                    (Some(1.0), Some(1.0)),
                    "scrape at {offset} ms with timeout {timeout:?}"
                );
            }
        }
        assert!(long_enough > 0);
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs < scrapes.len(), "{runs} collections for 200 scrapes");
    }

    #[tokio::test]
    async fn a_scrape_after_a_reload_does_not_take_the_old_configurations_collection() {
        let (engine, _runs, open) = gate_engine();
        let old = spawn_waiting_scrape(&engine, 1).await;
        engine.replace(
            vec![Arc::new(Fixed {
                target: "new",
                value: 3.0,
            })],
            engine.options(),
        );
        // Joining the old collection would wait on its gate for ever.
        let new = tokio::time::timeout(Duration::from_secs(30), engine.scrape(None))
            .await
            .expect("the scrape after the reload waited on the old collection");
        assert_eq!(new.value("fixed_value", &[("target", "new")]), Some(3.0));
        assert_eq!(new.value("gate_run", &[]), None, "nothing of the old set");
        open.notify_one();
        let old = old.await.expect("old scrape");
        assert_eq!(old.value("gate_run", &[]), Some(1.0));
        assert_eq!(engine.collections(), 2);
    }

    #[tokio::test]
    async fn a_scrape_whose_client_left_stops_counting_as_waiting() {
        let (engine, runs, open) = gate_engine();
        let waiting = spawn_waiting_scrape(&engine, 1).await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(engine.scrapes_in_flight(), 0);
        // The collection itself goes on, and the next scrape shares it.
        let next = spawn_waiting_scrape(&engine, 1).await;
        open.notify_one();
        assert_eq!(
            next.await.expect("scrape").value("gate_run", &[]),
            Some(1.0)
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn same_metric_from_two_targets_is_merged() {
        let engine = ScrapeEngine::builder()
            .collector(Fixed {
                target: "a",
                value: 1.0,
            })
            .collector(Fixed {
                target: "b",
                value: 2.0,
            })
            .process_metrics(false)
            .build();
        let scrape = engine.scrape(None).await;
        let group = scrape.group("fixed_value").expect("group");
        assert_eq!(group.series(), 2);
        let text = scrape.body(Format::Text, false).await;
        let text = std::str::from_utf8(&text).expect("utf-8");
        assert_eq!(text.matches("# TYPE fixed_value gauge").count(), 1);
        assert!(text.contains("fixed_value{target=\"b\"} 2\n"));
        assert!(!text.contains("process_"));
    }

    #[tokio::test]
    async fn replace_swaps_collectors_and_keeps_status_of_the_kept_ones() {
        let engine = ScrapeEngine::builder()
            .collector(Fixed {
                target: "a",
                value: 1.0,
            })
            .build();
        engine.scrape(None).await;
        assert!(engine.status()[0].last_success.is_some());
        engine.replace(
            vec![
                Arc::new(Fixed {
                    target: "a",
                    value: 1.0,
                }),
                Arc::new(Failing),
            ],
            ScrapeOptions::default(),
        );
        let status = engine.status();
        assert_eq!(status.len(), 2);
        assert!(status[0].last_success.is_some());
        assert!(status[1].last_outcome.is_none());
    }
}
