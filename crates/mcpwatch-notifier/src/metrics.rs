//! The notifier's own metrics (`mcpwatch_notifier_*`): what came in, what went out per
//! channel, what failed and why, the queue, and how long delivery took.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mcpwatch_core::engine::MetricSource;
use mcpwatch_core::{
    CollectError, Collector, HistogramValue, MetricSink, ScrapeContext, async_trait,
};

use crate::schedule::Schedules;
use crate::store::Store;

/// Upper bounds of the delivery latency buckets, in seconds: from an instant webhook to an
/// hour of retries.
const LATENCY_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn value(&self) -> HistogramValue {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .zip(self.buckets.iter())
            .map(|(b, n)| (*b, *n))
            .collect();
        buckets.push((f64::INFINITY, self.buckets[LATENCY_BUCKETS.len()]));
        HistogramValue {
            buckets,
            sum: self.sum,
            count: self.count,
        }
    }
}

#[derive(Debug, Default)]
struct ChannelCounters {
    delivered: u64,
    retries: u64,
    dead_letters: u64,
    failures: BTreeMap<&'static str, u64>,
    latency: Histogram,
    last_delivered: Option<i64>,
}

/// What this process counted of one channel since it started, for the web UI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelTotals {
    /// Deliveries sent.
    pub delivered: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Deliveries given up.
    pub dead_letters: u64,
    /// When the last delivery was sent, Unix ms.
    pub last_delivered: Option<i64>,
}

/// Counters the receiver and the dispatcher move.
#[derive(Debug, Default)]
pub struct NotifierMetrics {
    received: AtomicU64,
    duplicates: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    channels: Mutex<BTreeMap<String, ChannelCounters>>,
    incidents: Mutex<IncidentCounters>,
    in_flight_bytes: Arc<AtomicUsize>,
}

/// Counters of escalation, acknowledgement and maintenance windows.
#[derive(Debug, Default)]
struct IncidentCounters {
    /// (policy, level) → times told.
    escalations: BTreeMap<(String, u32), u64>,
    /// policy → time to acknowledge.
    time_to_ack: BTreeMap<String, Histogram>,
    /// window → summaries sent.
    summaries: BTreeMap<String, u64>,
    /// (action, result) → runs ended.
    remediations: BTreeMap<(String, &'static str), u64>,
}

/// Why a webhook was refused, as a label.
pub const REJECT_REASONS: [&str; 7] = [
    "bad_request",
    "body_read",
    "unauthorized",
    "too_large",
    "unsupported_media_type",
    "storage",
    "method",
];

impl NotifierMetrics {
    /// Counters for these channels start at zero, so that rates exist before anything fails.
    pub fn new<'a>(channels: impl IntoIterator<Item = &'a String>) -> Arc<Self> {
        let metrics = Self::default();
        metrics.register(channels);
        Arc::new(metrics)
    }

    /// Adds channels (after a reload).
    pub fn register<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        if let Ok(mut map) = self.channels.lock() {
            for name in channels {
                map.entry(name.clone()).or_default();
            }
        }
    }

    /// The payload JSON of the notifications being delivered, in bytes, each counted
    /// once: the dispatcher moves it, `/metrics` reads it.
    pub fn in_flight_bytes(&self) -> &Arc<AtomicUsize> {
        &self.in_flight_bytes
    }

    /// A notification accepted (new or duplicate).
    pub fn received(&self, duplicate: bool) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if duplicate {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A webhook refused.
    pub fn rejected(&self, reason: &'static str) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry(reason).or_default() += 1;
        }
    }

    fn channel(&self, name: &str, f: impl FnOnce(&mut ChannelCounters)) {
        if let Ok(mut map) = self.channels.lock() {
            f(map.entry(name.to_owned()).or_default());
        }
    }

    /// A delivery sent, `latency` seconds after it was received.
    pub fn delivered(&self, channel: &str, latency: f64) {
        self.channel(channel, |c| {
            c.delivered += 1;
            c.latency.observe(latency);
            c.last_delivered = Some(crate::time::now_ms());
        });
    }

    /// Each channel's totals since this process started.
    pub fn channel_totals(&self) -> BTreeMap<String, ChannelTotals> {
        let Ok(map) = self.channels.lock() else {
            return BTreeMap::new();
        };
        map.iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    ChannelTotals {
                        delivered: c.delivered,
                        failures: c.failures.values().sum(),
                        dead_letters: c.dead_letters,
                        last_delivered: c.last_delivered,
                    },
                )
            })
            .collect()
    }

    /// An attempt failed; `retry` when another is scheduled.
    pub fn failed(&self, channel: &str, kind: &'static str, retry: bool) {
        self.channel(channel, |c| {
            *c.failures.entry(kind).or_default() += 1;
            if retry {
                c.retries += 1;
            }
        });
    }

    /// A delivery given up.
    pub fn dead_lettered(&self, channel: &str) {
        self.channel(channel, |c| c.dead_letters += 1);
    }

    /// An incident's level `level` (from 1) was told, its first included.
    pub fn escalated(&self, policy: &str, level: u32) {
        if let Ok(mut c) = self.incidents.lock() {
            *c.escalations.entry((policy.to_owned(), level)).or_default() += 1;
        }
    }

    /// A remediation run of `action` ended with `result`.
    pub fn remediated(&self, action: &str, result: &'static str) {
        if let Ok(mut c) = self.incidents.lock() {
            *c.remediations.entry((action.to_owned(), result)).or_default() += 1;
        }
    }

    /// An incident of `policy` was acknowledged `seconds` after it opened.
    pub fn acknowledged(&self, policy: &str, seconds: f64) {
        if let Ok(mut c) = self.incidents.lock() {
            c.time_to_ack
                .entry(policy.to_owned())
                .or_default()
                .observe(seconds);
        }
    }

    /// A maintenance window ended and its summaries were queued.
    pub fn summarized(&self, window: &str, summaries: usize) {
        if let Ok(mut c) = self.incidents.lock() {
            *c.summaries.entry(window.to_owned()).or_default() += summaries as u64;
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn f(value: u64) -> f64 {
    value as f64
}

impl MetricSource for NotifierMetrics {
    fn collect(&self, sink: &mut MetricSink) {
        sink.counter(
            "mcpwatch_notifier_notifications_received_total",
            "Webhook notifications accepted from Alertmanager, duplicates included.",
        )
        .add(&[], f(self.received.load(Ordering::Relaxed)));
        sink.counter(
            "mcpwatch_notifier_notifications_duplicate_total",
            "Accepted notifications that were copies of one already stored (retries, replicas).",
        )
        .add(&[], f(self.duplicates.load(Ordering::Relaxed)));
        #[allow(clippy::cast_precision_loss)]
        let in_flight = self.in_flight_bytes.load(Ordering::Relaxed) as f64;
        sink.gauge(
            "mcpwatch_notifier_delivery_in_flight_bytes",
            "Payload JSON of the notifications being delivered, each counted once; no more is claimed at delivery.max_in_flight_bytes.",
        )
        .add(&[], in_flight);
        let rejected = self.rejected.lock().map(|m| m.clone()).unwrap_or_default();
        let family = sink.counter(
            "mcpwatch_notifier_webhook_rejected_total",
            "Webhook requests refused, by reason.",
        );
        for reason in REJECT_REASONS {
            family.add(
                &[("reason", reason)],
                f(rejected.get(reason).copied().unwrap_or(0)),
            );
        }
        if let Ok(incidents) = self.incidents.lock() {
            let family = sink.counter(
                "mcpwatch_notifier_escalations_total",
                "Escalation levels told because nobody acknowledged in time (repeats of the last level included), by policy and level.",
            );
            for ((policy, level), n) in &incidents.escalations {
                family.add(&[("policy", policy), ("level", &level.to_string())], f(*n));
            }
            let family = sink.counter(
                "mcpwatch_notifier_remediations_total",
                "Remediation runs ended, by action and result (succeeded, failed, timed_out, refused, abandoned).",
            );
            for ((action, result), n) in &incidents.remediations {
                family.add(&[("action", action), ("result", result)], f(*n));
            }
            let family = sink.histogram(
                "mcpwatch_notifier_time_to_acknowledge_seconds",
                "Time from an incident opening to someone acknowledging it, by policy.",
            );
            for (policy, h) in &incidents.time_to_ack {
                family.add_histogram(&[("policy", policy)], h.value());
            }
            let family = sink.counter(
                "mcpwatch_notifier_maintenance_summaries_total",
                "Summaries sent when a maintenance window ended (one per channel), by window.",
            );
            for (window, n) in &incidents.summaries {
                family.add(&[("window", window)], f(*n));
            }
        }
        let Ok(channels) = self.channels.lock() else {
            return;
        };
        let family = sink.counter(
            "mcpwatch_notifier_delivered_total",
            "Deliveries sent, by channel.",
        );
        for (name, c) in channels.iter() {
            family.add(&[("channel", name)], f(c.delivered));
        }
        let family = sink.counter(
            "mcpwatch_notifier_delivery_failures_total",
            "Failed delivery attempts, by channel and kind of failure.",
        );
        for (name, c) in channels.iter() {
            for (kind, n) in &c.failures {
                family.add(&[("channel", name), ("kind", kind)], f(*n));
            }
        }
        let family = sink.counter(
            "mcpwatch_notifier_retries_total",
            "Failed attempts followed by a scheduled retry, by channel.",
        );
        for (name, c) in channels.iter() {
            family.add(&[("channel", name)], f(c.retries));
        }
        let family = sink.counter(
            "mcpwatch_notifier_dead_letters_total",
            "Deliveries given up (a permanent failure or too long undelivered), by channel.",
        );
        for (name, c) in channels.iter() {
            family.add(&[("channel", name)], f(c.dead_letters));
        }
        let family = sink.histogram(
            "mcpwatch_notifier_delivery_latency_seconds",
            "Time from receiving a notification to delivering it, by channel.",
        );
        for (name, c) in channels.iter() {
            family.add_histogram(&[("channel", name)], c.latency.value());
        }
    }
}

/// Whether anyone is on call now in each schedule of the setup in force, read at each
/// scrape: one series per schedule, whose names the configuration bounds (the person is
/// not a label: who is on call is in the API, and a label per person would start a new
/// series at every handoff).
pub struct ScheduleGaps {
    schedules: Box<dyn Fn() -> Arc<Schedules> + Send + Sync>,
}

impl std::fmt::Debug for ScheduleGaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleGaps").finish_non_exhaustive()
    }
}

impl ScheduleGaps {
    /// A source reading the schedules in force (swapped on reload) from `schedules`.
    pub fn new(schedules: impl Fn() -> Arc<Schedules> + Send + Sync + 'static) -> Self {
        Self {
            schedules: Box::new(schedules),
        }
    }
}

impl MetricSource for ScheduleGaps {
    fn collect(&self, sink: &mut MetricSink) {
        let schedules = (self.schedules)();
        let now = crate::schedule::instant(crate::time::now_ms());
        let family = sink.gauge(
            "mcpwatch_notifier_schedule_gap",
            "1 when nobody is on call now in the schedule (an escalation level naming it tells only its own channels), else 0.",
        );
        for (name, schedule) in &schedules.schedules {
            let gap = if schedule.on_call(now).is_some() {
                0.0
            } else {
                1.0
            };
            family.add(&[("schedule", name)], gap);
        }
    }
}

/// Reads the queue's size from the store at each scrape.
#[derive(Debug)]
pub struct QueueCollector {
    store: Arc<dyn Store>,
    channels: Arc<Mutex<Vec<String>>>,
}

impl QueueCollector {
    /// A collector over `store`; `channels` are reported even when empty.
    pub fn new(store: Arc<dyn Store>, channels: Arc<Mutex<Vec<String>>>) -> Self {
        Self { store, channels }
    }
}

#[async_trait]
impl Collector for QueueCollector {
    fn name(&self) -> &str {
        "notifier_queue"
    }

    async fn collect(
        &self,
        _ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let stats = self.store.stats().await.map_err(CollectError::from)?;
        let channels = self.channels.lock().map(|c| c.clone()).unwrap_or_default();
        let mut depth: BTreeMap<(String, String), u64> = BTreeMap::new();
        for channel in &channels {
            for state in ["pending", "sending", "dead", "held"] {
                depth.insert((channel.clone(), state.to_owned()), 0);
            }
        }
        for (channel, state, n) in stats.depth {
            depth.insert((channel, state), n);
        }
        let family = sink.gauge(
            "mcpwatch_notifier_queue_depth",
            "Deliveries waiting (pending), being sent (sending), given up (dead) or held by a maintenance window (held), by channel.",
        );
        for ((channel, state), n) in &depth {
            family.add(&[("channel", channel), ("state", state)], f(*n));
        }
        let mut ages: BTreeMap<String, f64> = channels.iter().map(|c| (c.clone(), 0.0)).collect();
        ages.extend(stats.oldest_pending);
        let family = sink.gauge(
            "mcpwatch_notifier_oldest_pending_age_seconds",
            "Age of the oldest delivery not yet sent, by channel (0 when none waits).",
        );
        for (channel, age) in &ages {
            family.add(&[("channel", channel)], *age);
        }
        let family = sink.gauge(
            "mcpwatch_notifier_incidents_open",
            "Incidents firing, by escalation policy, the level told last, and whether someone acknowledged them.",
        );
        for (policy, level, acked, n) in &stats.incidents {
            let level = level.to_string();
            let acked = if *acked { "true" } else { "false" };
            family.add(
                &[
                    ("policy", policy),
                    ("level", &level),
                    ("acknowledged", acked),
                ],
                f(*n),
            );
        }
        let family = sink.gauge(
            "mcpwatch_notifier_held_notifications",
            "Notifications held by a maintenance window until it ends, by window.",
        );
        for (window, n) in &stats.held {
            family.add(&[("window", window)], f(*n));
        }
        if let Some(disk) = stats.disk {
            sink.counter(
                "mcpwatch_notifier_store_writes_total",
                "Writes to the store: notifications accepted, deliveries claimed and completed.",
            )
            .add(&[], f(disk.writes));
            sink.counter(
                "mcpwatch_notifier_store_commits_total",
                "Store transactions committed, each with the writes that arrived while the previous one was flushed.",
            )
            .add(&[], f(disk.commits));
            sink.counter(
                "mcpwatch_notifier_store_flushes_total",
                "Flushes of the store to disk (fdatasync); the writes they cover are answered after them.",
            )
            .add(&[], f(disk.flushes));
            sink.counter(
                "mcpwatch_notifier_store_flush_seconds_total",
                "Time spent flushing the store to disk; divided by the flushes, the disk's flush latency.",
            )
            .add(&[], disk.flush_seconds);
        }
        Ok(())
    }
}
