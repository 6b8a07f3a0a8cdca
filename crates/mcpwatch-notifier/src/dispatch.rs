//! The dispatcher: claims due deliveries from the store within each channel's concurrency
//! and rate limit, sends them, and records the outcome: delivered, retry later (exponential
//! backoff with jitter, never sooner than the receiver's `Retry-After`), or a dead letter.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OnceCell, watch};

use crate::ack::Action;
use crate::channels::{Channel, Message, SendError};
use crate::config::{RateLimitConfig, RetryConfig};
use crate::incident::{Event, Step};
use crate::maintenance;
use crate::metrics::NotifierMetrics;
use crate::payload::{LabelSet, Notification, Status};
use crate::setup::{self, OneOffWindows, Setup};
use crate::store::{Body, Claimed, Outcome, Store, StoreError};
use crate::remediation::{self, RunReport};
use crate::template::{EventContext, MessageContext, Recipient};
use crate::time::now_ms;
use crate::timeline::{Note, kind};

/// Attempts in flight to a log channel at least: it writes locally and takes more.
const PER_LOG_CHANNEL: usize = 16;

/// The longest `Retry-After` honoured; a longer one is taken as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How often finished notifications past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Incidents escalated in one transaction at most.
const ESCALATE_BATCH: usize = 100;

/// The wait before attempt `attempt + 1` after `attempt` failed.
pub fn backoff(retry: &RetryConfig, attempt: u32, random: f64) -> Duration {
    let exponent = i32::try_from(attempt.saturating_sub(1))
        .unwrap_or(i32::MAX)
        .min(64);
    let base = retry.initial_backoff.as_secs_f64() * retry.multiplier.powi(exponent);
    let base = base.min(retry.max_backoff.as_secs_f64());
    // random in [0, 1): spread evenly over ±jitter.
    let jittered = base * (1.0 + retry.jitter * (2.0 * random - 1.0));
    Duration::from_secs_f64(jittered.clamp(0.0, retry.max_backoff.as_secs_f64() * 2.0))
}

/// What to record after an attempt that failed with `error`.
pub fn after_failure(
    error: &SendError,
    claimed: &Claimed,
    retry: &RetryConfig,
    dead_letter_after: Duration,
    now: i64,
) -> Outcome {
    match error {
        SendError::Permanent { reason, .. } => Outcome::Dead {
            error: reason.clone(),
        },
        SendError::Transient {
            reason,
            retry_after,
            ..
        } => {
            let mut wait = backoff(retry, claimed.attempt, fastrand::f64());
            if let Some(asked) = retry_after {
                wait = wait.max((*asked).min(MAX_RETRY_AFTER));
            }
            let at = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            let deadline = claimed
                .queued_at
                .saturating_add(i64::try_from(dead_letter_after.as_millis()).unwrap_or(i64::MAX));
            if at > deadline {
                Outcome::Dead {
                    error: format!(
                        "gave up after {} attempts over {}: {reason}",
                        claimed.attempt,
                        humantime::format_duration(Duration::from_secs(
                            u64::try_from((now - claimed.queued_at) / 1000).unwrap_or(0)
                        ))
                    ),
                }
            } else {
                Outcome::Retry {
                    at,
                    error: reason.clone(),
                }
            }
        }
    }
}

/// A token bucket.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(limit: RateLimitConfig) -> Self {
        Self {
            rate: limit.per_second,
            burst: f64::from(limit.burst),
            tokens: f64::from(limit.burst),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn available(&self) -> usize {
        self.tokens.floor().max(0.0) as usize
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }

    fn next_token_in(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.001))
    }
}

/// A stored notification as the deliveries of it in flight share it: its body read and
/// parsed once, by whichever of them needs it first, and its JSON counted against
/// `delivery.max_in_flight_bytes` until the last of them ends.
struct SharedNotification {
    /// The body until it is parsed.
    body: Mutex<Option<Arc<Body>>>,
    parsed: OnceCell<Result<Arc<Notification>, String>>,
    bytes: usize,
    in_flight_bytes: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

/// Bodies up to this much JSON are parsed on the async worker that needs them.
const PARSE_INLINE_BYTES: usize = 64 << 10;

impl SharedNotification {
    /// The notification, parsed by the first delivery that asks.
    async fn notification(&self) -> Result<Arc<Notification>, String> {
        self.parsed
            .get_or_init(|| async {
                let body = self.body.lock().ok().and_then(|b| b.clone());
                let Some(body) = body else {
                    return Err("the stored body was let go before it was read".to_owned());
                };
                // A large body takes a while to decompress and parse: off the async workers.
                // A small one is read at once (handing it to a thread costs more).
                let parsed = if body.json_len() > PARSE_INLINE_BYTES {
                    tokio::task::spawn_blocking(move || parse(&body))
                        .await
                        .map_err(|e| format!("reading it stopped: {e}"))?
                } else {
                    parse(&body)
                }
                .map_err(|e| e.to_string())?;
                if let Ok(mut body) = self.body.lock() {
                    *body = None;
                }
                Ok(Arc::new(parsed))
            })
            .await
            .clone()
    }
}

impl Drop for SharedNotification {
    fn drop(&mut self) {
        self.in_flight_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.wake.notify_one();
    }
}

/// Sends what the store holds.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    setup: watch::Receiver<Arc<Setup>>,
    metrics: Arc<NotifierMetrics>,
    wake: Arc<Notify>,
    in_flight: Arc<Mutex<BTreeMap<String, usize>>>,
    /// The payload JSON of the notifications in flight, each counted once.
    in_flight_bytes: Arc<AtomicUsize>,
    /// The notifications in flight, by id: a delivery claimed while another of the same
    /// notification is under way shares its parse.
    shared: BTreeMap<i64, Weak<SharedNotification>>,
    /// Deliveries claimed whose notification would pass the bound: started, in the order
    /// claimed, as the notifications in flight end.
    waiting: VecDeque<(Instant, Claimed)>,
    limiters: BTreeMap<String, (RateLimitConfig, TokenBucket)>,
    rotation: usize,
    windows: OneOffWindows,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over `store`, following the setup in `setup` (swapped on reload) and
    /// woken through `wake` when a notification arrives.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        setup: watch::Receiver<Arc<Setup>>,
        metrics: Arc<NotifierMetrics>,
        wake: Arc<Notify>,
    ) -> Self {
        let in_flight_bytes = metrics.in_flight_bytes().clone();
        Self {
            store,
            setup,
            metrics,
            wake,
            in_flight: Arc::new(Mutex::new(BTreeMap::new())),
            in_flight_bytes,
            shared: BTreeMap::new(),
            waiting: VecDeque::new(),
            limiters: BTreeMap::new(),
            rotation: 0,
            windows: OneOffWindows::default(),
        }
    }

    /// Shares the notifier's one-off maintenance windows (refreshed at each tick).
    pub(crate) fn with_windows(mut self, windows: OneOffWindows) -> Self {
        self.windows = windows;
        self
    }

    /// The timed work, once per `delivery.poll_interval`: one-off windows read again (another replica may
    /// have added one), escalations due told, remediation runs started (in `tasks`, which a
    /// shutdown waits for), and the summaries of windows that ended queued.
    async fn tick(&self, setup: &Setup, tasks: &mut tokio::task::JoinSet<()>) {
        let now = now_ms();
        if let Err(e) = setup::refresh_windows(self.store.as_ref(), &self.windows, now).await {
            tracing::warn!(error = %e, "Reading the maintenance windows failed; trying again shortly.");
        }
        match self.store.next_escalation().await {
            Ok(Some(due)) if due <= now => {
                match self
                    .store
                    .escalate(now, setup.policies.clone(), ESCALATE_BATCH)
                    .await
                {
                    Ok(escalated) => {
                        for (incident, policy, level) in &escalated {
                            self.metrics.escalated(policy, *level);
                            tracing::warn!(
                                incident,
                                policy = %policy,
                                level,
                                "Nobody acknowledged the incident in time; its next level is told."
                            );
                        }
                        if !escalated.is_empty() {
                            self.wake.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Escalating incidents failed; trying again shortly.")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "Reading escalations due failed; trying again shortly.")
            }
        }
        self.remediate(setup, now, tasks).await;
        let held = match self.store.held().await {
            Ok(held) => held,
            Err(e) => {
                tracing::error!(error = %e, "Reading held notifications failed; trying again shortly.");
                return;
            }
        };
        let one_off = self.windows.read().map(|w| w.clone()).unwrap_or_default();
        for (window, notifications) in held {
            if maintenance::still_active(&setup.recurring, &one_off, &window, now) {
                continue;
            }
            match self.store.release(window.clone(), now).await {
                Ok(0) => {}
                Ok(summaries) => {
                    self.metrics.summarized(&window, summaries);
                    tracing::info!(
                        window = %window,
                        notifications,
                        summaries,
                        "A maintenance window ended; what it held is sent as one summary per channel."
                    );
                    self.wake.notify_one();
                }
                Err(e) => {
                    tracing::error!(window = %window, error = %e, "Releasing a maintenance window's notifications failed; trying again shortly.")
                }
            }
        }
    }

    /// Claims the remediation runs queued (by any replica) and starts each in a task of
    /// its own: it runs once, and its start and end are recorded in the incident's
    /// timeline.
    async fn remediate(&self, setup: &Setup, now: i64, tasks: &mut tokio::task::JoinSet<()>) {
        let leases = setup
            .remediations
            .names()
            .filter_map(|name| Some((name.to_owned(), setup.remediations.get(name)?.lease())))
            .collect();
        let claims = match self
            .store
            .claim_remediations(
                now,
                remediation_owner().to_owned(),
                leases,
                REMEDIATION_BATCH,
                setup.policies.clone(),
            )
            .await
        {
            Ok(claims) => claims,
            Err(e) => {
                tracing::error!(error = %e, "Claiming remediation runs failed; trying again shortly.");
                return;
            }
        };
        for (incident, action, result) in &claims.ended {
            self.metrics.remediated(action, result);
            if *result == "abandoned" {
                tracing::warn!(
                    incident,
                    action = %action,
                    "A remediation run's notifier stopped before it ended; it is recorded as abandoned and not run again."
                );
            } else {
                tracing::info!(
                    incident,
                    action = %action,
                    "The incident resolved before its remediation ran; it is not run."
                );
            }
        }
        if !claims.ended.is_empty() {
            self.wake.notify_one();
        }
        let one_off = self.windows.read().map(|w| w.clone()).unwrap_or_default();
        for claim in claims.claimed {
            let store = self.store.clone();
            let setup = self.setup.borrow().clone();
            let one_off = one_off.clone();
            let wake = self.wake.clone();
            let metrics = self.metrics.clone();
            tasks.spawn(async move {
                let report = run_remediation(store.as_ref(), &setup, &one_off, &claim).await;
                let (state, note) = remediation_note(&report);
                metrics.remediated(&claim.action, state);
                tracing::info!(
                    incident = claim.incident,
                    action = %claim.action,
                    outcome = %report.outcome,
                    "A remediation action ended."
                );
                let recorded = store
                    .finish_remediation(
                        claim.incident,
                        claim.action.clone(),
                        remediation_owner().to_owned(),
                        now_ms(),
                        state,
                        note,
                        setup.policies.clone(),
                    )
                    .await;
                match recorded {
                    Ok(true) => wake.notify_one(),
                    Ok(false) => tracing::warn!(
                        incident = claim.incident,
                        action = %claim.action,
                        "A remediation run ended after its lease; it was recorded as abandoned."
                    ),
                    Err(e) => tracing::error!(
                        incident = claim.incident,
                        action = %claim.action,
                        error = %e,
                        "Recording a remediation's end failed."
                    ),
                }
            });
        }
    }

    fn in_flight(&self) -> BTreeMap<String, usize> {
        self.in_flight.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// How many deliveries each channel may start now (in a rotating order, so that no
    /// channel waits behind the others for free slots), how many in all; and, when some
    /// channel waits only for its rate limit, how soon it gets a token.
    fn budgets(&mut self, setup: &Setup) -> (Vec<(String, usize)>, usize, Option<Duration>) {
        let in_flight = self.in_flight();
        let busy_total: usize = in_flight.values().sum();
        let free = setup.config.delivery.concurrency.saturating_sub(busy_total);
        let now = Instant::now();
        let mut budgets = Vec::new();
        let mut soonest: Option<Duration> = None;
        for (name, channel) in &setup.channels {
            let busy = in_flight.get(name).copied().unwrap_or(0);
            let per_channel = setup.config.delivery.max_in_flight_per_channel;
            let most = if channel.kind == crate::config::ChannelKind::Log {
                per_channel.max(PER_LOG_CHANNEL)
            } else {
                per_channel
            };
            let mut budget = most.saturating_sub(busy).min(free);
            if let Some(limit) = channel.rate_limit {
                let entry = self
                    .limiters
                    .entry(name.clone())
                    .or_insert_with(|| (limit, TokenBucket::new(limit)));
                if entry.0 != limit {
                    *entry = (limit, TokenBucket::new(limit));
                }
                entry.1.refill(now);
                let tokens = entry.1.available();
                if tokens == 0 {
                    let wait = entry.1.next_token_in();
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                }
                budget = budget.min(tokens);
            }
            budgets.push((name.clone(), budget));
        }
        if !budgets.is_empty() {
            self.rotation = (self.rotation + 1) % budgets.len();
            budgets.rotate_left(self.rotation);
        }
        (budgets, free, soonest)
    }

    /// Runs until `shutdown` turns true, then waits (up to `grace`, the binary's
    /// `delivery.shutdown_grace`) for attempts in flight.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut last_prune = Instant::now()
            .checked_sub(PRUNE_EVERY)
            .unwrap_or_else(Instant::now);
        let mut tasks = tokio::task::JoinSet::new();
        let mut last_tick: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let setup = self.setup.borrow().clone();
            // Between ticks the dispatcher is woken by new work and by freed slots; the
            // tick is the fallback for what nothing here announces.
            let poll = setup.config.delivery.poll_interval;
            if last_tick.is_none_or(|t| t.elapsed() >= poll) {
                last_tick = Some(Instant::now());
                self.tick(&setup, &mut tasks).await;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                // A webhook stored while a reload removed its channel is caught here.
                setup::retire(
                    self.store.as_ref(),
                    &setup.channels.keys().cloned().collect::<Vec<_>>(),
                )
                .await;
                let storage = &setup.config.storage;
                match self
                    .store
                    .prune(storage.retention, storage.dedup_window)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        notifications = n,
                        "Deleted notifications past their retention."
                    ),
                    Err(e) => tracing::warn!(error = %e, "Pruning the store failed."),
                }
            }
            let lease = setup
                .channels
                .values()
                .map(|c| c.timeout)
                .max()
                .unwrap_or(Duration::from_secs(30))
                + CLAIM_MARGIN;
            let max_bytes = setup.config.delivery.max_in_flight_bytes;
            self.shared.retain(|_, shared| shared.strong_count() > 0);
            self.start_waiting(&setup, max_bytes, lease, &mut tasks);
            let (budgets, free, throttled) = self.budgets(&setup);
            let mut sleep = poll;
            // At the bound, or with claimed deliveries waiting for room, nothing more is
            // claimed: the end of a notification's last delivery wakes the loop.
            let room =
                self.waiting.is_empty() && self.in_flight_bytes.load(Ordering::Acquire) < max_bytes;
            if room && budgets.iter().any(|(_, b)| *b > 0) {
                match self.store.claim(now_ms(), budgets, free, lease).await {
                    Ok(batch) => {
                        for claimed in batch.claimed {
                            if self.fits(&claimed, max_bytes) {
                                self.start(&setup, claimed, &mut tasks);
                            } else {
                                tracing::debug!(
                                    delivery = claimed.id,
                                    notification = claimed.notification_id,
                                    bytes = claimed.payload.json_len(),
                                    in_flight_bytes = self.in_flight_bytes.load(Ordering::Acquire),
                                    "The delivery waits for room under delivery.max_in_flight_bytes."
                                );
                                self.waiting.push_back((Instant::now(), claimed));
                            }
                        }
                        if let Some(next) = batch.next_due {
                            let until = u64::try_from(next - now_ms()).unwrap_or(0);
                            sleep = sleep.min(Duration::from_millis(until.max(5)));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Claiming deliveries failed; trying again shortly.");
                        sleep = Duration::from_secs(1);
                    }
                }
            }
            if let Some((since, _)) = self.waiting.front() {
                sleep = sleep.min((lease / 2).saturating_sub(since.elapsed()));
            }
            if let Some(wait) = throttled {
                sleep = sleep.min(wait);
            }
            sleep = sleep.min(
                poll.saturating_sub(last_tick.map_or(poll, |t| t.elapsed()))
                    .max(Duration::from_millis(5)),
            );
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            while tasks.try_join_next().is_some() {}
        }
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                grace = %humantime::format_duration(grace),
                "Waiting for deliveries and remediation runs in flight."
            );
            let waited =
                tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
                    .await;
            if waited.is_err() {
                // Their claims expire: another start (or replica) sends the deliveries
                // again, and records the runs abandoned.
                tracing::warn!(
                    in_flight = tasks.len(),
                    "Stopped with deliveries or remediation runs still in flight; the deliveries will be attempted again, the runs are not."
                );
            }
        }
    }

    /// Whether `claimed` may start within `max_bytes` in flight: a maintenance summary and
    /// a notification already in flight add nothing; another one fits below the bound,
    /// or alone when nothing else is in flight.
    fn fits(&self, claimed: &Claimed, max_bytes: usize) -> bool {
        if matches!(claimed.event, Some(Event::Summary { .. }))
            || self
                .shared
                .get(&claimed.notification_id)
                .is_some_and(|shared| shared.strong_count() > 0)
        {
            return true;
        }
        let in_flight = self.in_flight_bytes.load(Ordering::Acquire);
        in_flight == 0 || in_flight.saturating_add(claimed.payload.json_len()) <= max_bytes
    }

    /// Starts the claimed deliveries that now fit within `max_bytes`, and those held for
    /// half their `lease`: a claim that ran out would let the delivery be claimed again
    /// and sent twice, which is worse than a moment over the bound.
    fn start_waiting(
        &mut self,
        setup: &Arc<Setup>,
        max_bytes: usize,
        lease: Duration,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let mut still = VecDeque::new();
        while let Some((since, claimed)) = self.waiting.pop_front() {
            if self.fits(&claimed, max_bytes) || since.elapsed() >= lease / 2 {
                self.start(setup, claimed, tasks);
            } else {
                still.push_back((since, claimed));
            }
        }
        self.waiting = still;
    }

    /// The shared notification of `claimed`: the one of a delivery of it still in flight,
    /// else a new one holding its body. The delivery's own copy of the body is let go.
    fn share(&mut self, claimed: &mut Claimed) -> Arc<SharedNotification> {
        let body = std::mem::replace(&mut claimed.payload, Arc::new(Body::Json(String::new())));
        if let Some(live) = self
            .shared
            .get(&claimed.notification_id)
            .and_then(Weak::upgrade)
        {
            return live;
        }
        let bytes = body.json_len();
        self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        let shared = Arc::new(SharedNotification {
            body: Mutex::new(Some(body)),
            parsed: OnceCell::new(),
            bytes,
            in_flight_bytes: self.in_flight_bytes.clone(),
            wake: self.wake.clone(),
        });
        self.shared
            .insert(claimed.notification_id, Arc::downgrade(&shared));
        shared
    }

    fn start(
        &mut self,
        setup: &Arc<Setup>,
        mut claimed: Claimed,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        // A maintenance summary reads the notifications it covers itself.
        let shared = match claimed.event {
            Some(Event::Summary { .. }) => None,
            _ => Some(self.share(&mut claimed)),
        };
        if let Some((_, bucket)) = self.limiters.get_mut(&claimed.channel) {
            bucket.take();
        }
        if let Ok(mut map) = self.in_flight.lock() {
            *map.entry(claimed.channel.clone()).or_default() += 1;
        }
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let in_flight = self.in_flight.clone();
        let wake = self.wake.clone();
        let setup = setup.clone();
        tasks.spawn(async move {
            // The slot is given back however the attempt ends, a panic included.
            let slot = Slot {
                channel: claimed.channel.clone(),
                in_flight,
                wake: wake.clone(),
            };
            deliver(&setup, store.as_ref(), &metrics, claimed, shared, slot).await;
            // Recorded: a newer delivery of its stream waiting for this one may go.
            wake.notify_one();
        });
    }
}

/// A channel's in-flight slot, returned on drop.
struct Slot {
    channel: String,
    in_flight: Arc<Mutex<BTreeMap<String, usize>>>,
    wake: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.in_flight.lock()
            && let Some(n) = map.get_mut(&self.channel)
        {
            *n = n.saturating_sub(1);
        }
        self.wake.notify_one();
    }
}

/// One attempt of one delivery, recorded.
async fn deliver(
    setup: &Setup,
    store: &dyn Store,
    metrics: &NotifierMetrics,
    claimed: Claimed,
    shared: Option<Arc<SharedNotification>>,
    slot: Slot,
) {
    let outcome = attempt(setup, store, metrics, &claimed, shared.as_deref()).await;
    // The receiver is done with it: the slot is free for the next delivery while the
    // outcome is written (the delivery stays claimed until then, so nothing sends it
    // twice), and the notification is let go, so that a slow store keeps neither counted
    // in flight.
    drop(slot);
    drop(shared);
    if let Outcome::Dead { error } = &outcome {
        metrics.dead_lettered(&claimed.channel);
        tracing::error!(
            channel = %claimed.channel,
            notification = claimed.notification_id,
            delivery = claimed.id,
            attempt = claimed.attempt,
            error = %error,
            "Delivery given up; it is a dead letter (replay it with POST /api/v1/notifications/{}/replay).",
            claimed.notification_id
        );
    }
    match store.complete(claimed.id, claimed.attempt, outcome).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            delivery = claimed.id,
            "The delivery's claim had expired; its outcome was not recorded."
        ),
        Err(e) => tracing::error!(
            delivery = claimed.id,
            error = %e,
            "Recording a delivery's outcome failed; it will be attempted again."
        ),
    }
}

/// How long a claim outlasts the longest attempt a channel allows: long enough that an
/// attempt still running is not claimed again, short enough that another replica takes over
/// soon the claims of one that died.
const CLAIM_MARGIN: Duration = Duration::from_secs(10);

/// A stored body, read by the parser intake checked it with ([`Notification::parse`]
/// shares its field lists, its reader of unknown fields and its checks with
/// [`crate::payload::Incoming::parse`]): what intake accepted, delivery reads.
fn parse(body: &Body) -> Result<Notification, StoreError> {
    body.json().and_then(|json| {
        Notification::parse(json.as_bytes()).map_err(|e| StoreError::Damaged(e.to_string()))
    })
}

/// Remediation runs one notifier claims at a time.
const REMEDIATION_BATCH: usize = 16;

/// This process, as the claims of its remediation runs name it.
fn remediation_owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        format!(
            "{host}/{}/{:08x}",
            std::process::id(),
            fastrand::u32(..)
        )
    })
}

/// Runs a claimed remediation, unless its action is gone or a maintenance window holds
/// one of the incident's alerts; a run that goes ahead is first recorded as started.
async fn run_remediation(
    store: &dyn Store,
    setup: &Setup,
    one_off: &[maintenance::OneOff],
    claim: &crate::store::RemediationClaim,
) -> RunReport {
    let Some(action) = setup.remediations.get(&claim.action).cloned() else {
        return RunReport::unconfigured(&claim.action);
    };
    let notification = match store.payloads(vec![claim.notification_id]).await {
        Ok(bodies) => match bodies.first().map(|(_, body)| parse(body)) {
            Some(Ok(notification)) => Arc::new(notification),
            Some(Err(e)) => return RunReport::refused(&action, e.to_string()),
            None => return RunReport::refused(&action, "the incident's notification is gone"),
        },
        Err(e) => return RunReport::refused(&action, format!("the store failed: {e}")),
    };
    let now = now_ms();
    for &i in &claim.alerts {
        let Some(alert) = notification.alerts.get(i) else {
            continue;
        };
        if let Some(window) = maintenance::holding(&setup.recurring, one_off, &alert.labels, now) {
            return RunReport::refused(
                &action,
                format!("maintenance window {window} holds the incident's alerts"),
            );
        }
    }
    let context = MessageContext::all(&notification, &claim.alerts).with_event(EventContext {
        incident: Some(claim.incident),
        ..EventContext::default()
    });
    let started = Note::new(kind::REMEDIATION_STARTED).detail(format!(
        "{} ({}) on {}",
        action.name(),
        action.kind(),
        remediation_owner()
    ));
    if let Err(e) = store.record(claim.incident, now, started).await {
        // The claim is this notifier's: the run goes ahead, its end is recorded.
        tracing::error!(incident = claim.incident, action = %claim.action, error = %e, "Recording a remediation's start failed.");
    }
    remediation::run(&action, &context).await
}

/// The state a run's end is stored with, and its timeline entry.
fn remediation_note(report: &RunReport) -> (&'static str, Note) {
    use crate::remediation::Outcome as Ran;
    let (state, kind) = match &report.outcome {
        Ran::Succeeded => ("succeeded", kind::REMEDIATION_FINISHED),
        Ran::Failed { .. } => ("failed", kind::REMEDIATION_FINISHED),
        Ran::TimedOut => ("timed_out", kind::REMEDIATION_FINISHED),
        Ran::Refused { .. } => ("refused", kind::REMEDIATION_SKIPPED),
    };
    let mut detail = format!(
        "{} ({}): {} after {} ms",
        report.action,
        report.kind,
        report.outcome,
        report.duration.as_millis()
    );
    if !report.output.is_empty() {
        detail.push_str(if report.truncated {
            "\noutput (cut):\n"
        } else {
            "\noutput:\n"
        });
        detail.push_str(&report.output);
    }
    (state, Note::new(kind).detail(detail))
}

/// What a maintenance window held for one channel, as one notification, and how many
/// groups it held. `None` when nothing held is left.
async fn summary(
    store: &dyn Store,
    held: &[(i64, Vec<usize>)],
) -> Result<Option<(Notification, usize)>, StoreError> {
    let ids: Vec<i64> = held.iter().map(|(id, _)| *id).collect();
    let bodies: BTreeMap<i64, Body> = store.payloads(ids).await?.into_iter().collect();
    let mut parsed = Vec::new();
    for (id, indices) in held {
        let Some(body) = bodies.get(id) else { continue };
        parsed.push((parse(body)?, indices.as_slice()));
    }
    Ok(combine_held(parsed))
}

/// The held notifications (oldest first, each with the indices of its alerts held) as one:
/// every alert held, each in its latest state (an alert that resolved inside the window is
/// reported resolved); the group and common labels only those all of them share, so that
/// nothing in it speaks for one group alone. With the number of groups held.
fn combine_held(held: Vec<(Notification, &[usize])>) -> Option<(Notification, usize)> {
    let mut latest: Option<Notification> = None;
    let mut alerts: Vec<crate::payload::Alert> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    let mut group_labels: Option<LabelSet> = None;
    for (notification, indices) in held {
        for &i in indices {
            let Some(alert) = notification.alerts.get(i) else {
                continue;
            };
            let key = alert.stable_fingerprint();
            match alerts.iter_mut().find(|a| a.stable_fingerprint() == key) {
                Some(known) => *known = alert.clone(),
                None => alerts.push(alert.clone()),
            }
        }
        if !groups.contains(&notification.group_key) {
            groups.push(notification.group_key.clone());
        }
        group_labels = Some(match group_labels {
            None => notification.group_labels.clone(),
            Some(shared) => shared_labels(&shared, &notification.group_labels),
        });
        latest = Some(notification);
    }
    let mut n = latest?;
    n.status = if alerts.iter().any(|a| a.status == Status::Firing) {
        Status::Firing
    } else {
        Status::Resolved
    };
    n.group_labels = group_labels.unwrap_or_default();
    let mut all = alerts.iter();
    let first = all.next();
    n.common_labels = first.map(|a| a.labels.clone()).unwrap_or_default();
    n.common_annotations = first.map(|a| a.annotations.clone()).unwrap_or_default();
    for alert in all {
        n.common_labels = shared_labels(&n.common_labels, &alert.labels);
        n.common_annotations = shared_labels(&n.common_annotations, &alert.annotations);
    }
    n.alerts = alerts;
    Some((n, groups.len()))
}

/// The pairs `a` and `b` both have.
fn shared_labels(a: &LabelSet, b: &LabelSet) -> LabelSet {
    a.iter()
        .filter(|(k, v)| b.get(*k) == Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What a summary's title names instead of one group: the window and how many groups it
/// held.
fn held_groups(window: &str, groups: usize) -> String {
    format!(
        "maintenance window {window}, {groups} group{} held",
        if groups == 1 { "" } else { "s" }
    )
}

/// Makes a summary's titles (the default one and the templates') name its window, not a
/// group.
fn describe_window(context: &mut MessageContext, description: String) {
    context.title = match context.status {
        Status::Firing => format!("[FIRING:{}] {description}", context.counts.firing),
        Status::Resolved => format!("[RESOLVED] {description}"),
    };
    context.group_label_values = description;
}

/// What templates and channels hear about a delivery's event; links signed when
/// acknowledgement is configured; the person it is for, and their address on `channel`,
/// from the configuration in force now.
fn event_context(setup: &Setup, event: &Event, held: usize, channel: &Channel) -> EventContext {
    let link = |action: Action, incident: i64, generation: i64| {
        setup.links.as_ref().map(|links| {
            let expires = now_ms() / 1000 + i64::try_from(links.ttl.as_secs()).unwrap_or(0);
            links
                .signer
                .link(&links.base, action, incident, generation, expires)
        })
    };
    let mut context = EventContext::new(event, held);
    match event {
        Event::Incident {
            incident,
            step,
            generation,
            ..
        } if *step != Step::Resolved => {
            context.ack_url = link(Action::Ack, *incident, *generation);
        }
        Event::Acknowledged {
            incident,
            generation,
            ..
        } => {
            context.unack_url = link(Action::Unack, *incident, *generation);
        }
        Event::Unacknowledged {
            incident,
            generation,
            ..
        } => {
            context.ack_url = link(Action::Ack, *incident, *generation);
        }
        _ => {}
    }
    if let Some(key) = event.person() {
        let person = setup.schedules.people.get(key);
        let contact = person.and_then(|p| p.contacts.iter().find(|c| c.channel == channel.name));
        if contact.is_none() {
            tracing::warn!(
                channel = %channel.name,
                person = key,
                incident = event.incident(),
                "A message for a person who has no contact on this channel in the configuration now goes to the channel's own recipients."
            );
        }
        let recipient = Recipient {
            person: key.to_owned(),
            name: crate::schedule::display_name(key, person).to_owned(),
            contact: contact
                .and_then(|c| c.address_for(channel.kind))
                .map(str::to_owned),
        };
        context = context.for_recipient(recipient, contact.is_some());
    }
    context
}

async fn attempt(
    setup: &Setup,
    store: &dyn Store,
    metrics: &NotifierMetrics,
    claimed: &Claimed,
    shared: Option<&SharedNotification>,
) -> Outcome {
    let Some(channel) = setup.channels.get(&claimed.channel) else {
        return Outcome::Dead {
            error: format!("channel {:?} is no longer configured", claimed.channel),
        };
    };
    let mut describe = None;
    let (notification, alerts) = match &claimed.event {
        Some(Event::Summary { held, window }) => match summary(store, held).await {
            Ok(Some((n, groups))) => {
                describe = Some(held_groups(window, groups));
                let all: Vec<usize> = (0..n.alerts.len()).collect();
                (Arc::new(n), all)
            }
            Ok(None) => {
                return Outcome::Dead {
                    error: "the held notifications were deleted before the summary was sent".into(),
                };
            }
            Err(e) if e.is_permanent() => {
                return Outcome::Dead {
                    error: format!("a held notification cannot be read: {e}"),
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    at: now_ms() + 5000,
                    error: format!("reading the held notifications: {e}"),
                };
            }
        },
        _ => match shared.map(SharedNotification::notification) {
            Some(reading) => match reading.await {
                Ok(n) => (n, claimed.alerts.clone()),
                Err(e) => {
                    return Outcome::Dead {
                        error: format!("the stored notification cannot be read: {e}"),
                    };
                }
            },
            None => {
                return Outcome::Retry {
                    at: now_ms() + 5000,
                    error: "the stored notification was not read".into(),
                };
            }
        },
    };
    let event = claimed.event.as_ref().map(|event| {
        let held = match event {
            Event::Summary { held, .. } => held.len(),
            _ => 0,
        };
        event_context(setup, event, held, channel)
    });
    let ack_url = event.as_ref().and_then(|e| e.ack_url.clone());
    let mut context =
        setup
            .templates
            .context(&notification, &alerts, &channel.name, ack_url.as_deref());
    if let Some(description) = describe {
        describe_window(&mut context, description);
    }
    if let Some(event) = event {
        context = context.with_event(event);
    }
    let message = Message {
        notification: &notification,
        alerts: &alerts,
        context: &context,
        templates: &setup.templates,
        delivery_id: claimed.id,
        attempt: claimed.attempt,
        event: claimed.event.as_ref(),
    };
    let started = Instant::now();
    let result = channel.send(&message).await;
    let now = now_ms();
    match result {
        Ok(()) => {
            #[allow(clippy::cast_precision_loss)]
            let latency = (now - claimed.received_at).max(0) as f64 / 1000.0;
            metrics.delivered(&channel.name, latency);
            tracing::info!(
                channel = %channel.name,
                notification = claimed.notification_id,
                delivery = claimed.id,
                attempt = claimed.attempt,
                status = %context.status,
                alerts = alerts.len(),
                took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "Delivered."
            );
            Outcome::Delivered
        }
        Err(error) => {
            let outcome = after_failure(
                &error,
                claimed,
                &channel.retry,
                channel.dead_letter_after,
                now,
            );
            let retry = matches!(outcome, Outcome::Retry { .. });
            metrics.failed(&channel.name, error.kind(), retry);
            if let Outcome::Retry { at, .. } = &outcome {
                tracing::warn!(
                    channel = %channel.name,
                    notification = claimed.notification_id,
                    delivery = claimed.id,
                    attempt = claimed.attempt,
                    error = %error,
                    retry_in_ms = at - now,
                    "Delivery failed; it will be retried."
                );
            }
            outcome
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(attempt: u32, queued_at: i64) -> Claimed {
        Claimed {
            id: 1,
            notification_id: 1,
            channel: "chat".into(),
            alerts: vec![0],
            attempt,
            received_at: queued_at,
            queued_at,
            payload: Arc::new(Body::Json(String::new())),
            event: None,
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let retry = RetryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
        };
        assert_eq!(backoff(&retry, 1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(&retry, 3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(&retry, 30, 0.5), Duration::from_secs(60));
        assert_eq!(backoff(&retry, 1, 0.0), Duration::from_millis(800));
        assert!(backoff(&retry, 1, 0.999_999) < Duration::from_millis(1201));
    }

    #[test]
    fn retry_after_is_a_floor_and_permanent_is_dead() {
        let retry = RetryConfig::default();
        let now = 1_000_000;
        let error = SendError::Transient {
            kind: "rate_limited",
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        match after_failure(
            &error,
            &claimed(1, now),
            &retry,
            Duration::from_secs(3600),
            now,
        ) {
            Outcome::Retry { at, .. } => assert!(at >= now + 2000),
            other => panic!("{other:?}"),
        }
        let permanent = SendError::permanent("rejected", "HTTP 400");
        assert_eq!(
            after_failure(
                &permanent,
                &claimed(1, now),
                &retry,
                Duration::from_secs(3600),
                now
            ),
            Outcome::Dead {
                error: "HTTP 400".into()
            }
        );
        // Past the dead-letter time a transient failure gives up too.
        let late = after_failure(
            &SendError::transient("connection", "refused"),
            &claimed(9, now - 7_200_000),
            &retry,
            Duration::from_secs(3600),
            now,
        );
        assert!(
            matches!(late, Outcome::Dead { ref error } if error.starts_with("gave up after 9 attempts over 2h")),
            "{late:?}"
        );
    }

    #[test]
    fn a_maintenance_summary_is_titled_by_its_window() {
        use crate::config::{ChannelKind, NotifierConfig};
        use crate::template::Templates;

        let group = |name: &str, status: Status| {
            let mut n = Notification::sample();
            n.group_key = format!("{{}}:{{alertname=\"{name}\"}}");
            n.group_labels = [("alertname".to_owned(), name.to_owned())].into();
            for alert in &mut n.alerts {
                alert.labels.insert("alertname".into(), name.into());
                alert.status = status;
            }
            n.status = status;
            n
        };
        let disk = group("DiskFull", Status::Firing);
        let provider = group("ProviderDown", Status::Firing);
        let provider_resolved = group("ProviderDown", Status::Resolved);
        let all = |n: &Notification| (0..n.alerts.len()).collect::<Vec<_>>();
        let (disk_alerts, provider_alerts) = (all(&disk), all(&provider));
        let (combined, groups) = combine_held(vec![
            (disk.clone(), disk_alerts.as_slice()),
            (provider.clone(), provider_alerts.as_slice()),
            (provider_resolved, provider_alerts.as_slice()),
        ])
        .expect("something held");
        assert_eq!(groups, 2);
        // Nothing of the last group held speaks for the whole window.
        assert!(
            combined.group_labels.is_empty(),
            "{:?}",
            combined.group_labels
        );
        assert!(!combined.common_labels.contains_key("alertname"));
        assert_eq!(combined.alerts.len(), disk.alerts.len() * 2);

        let config = NotifierConfig::parse(
            "channels:\n  chat:\n    slack: {url: 'https://hooks.example.com/x'}\n",
            std::path::Path::new("notifier.yml"),
        )
        .expect("config");
        let templates = Templates::build(&config).expect("templates");
        let alerts = all(&combined);
        let mut context = templates.context(&Arc::new(combined), &alerts, "chat", None);
        describe_window(&mut context, held_groups("nightly", groups));
        let event = Event::Summary {
            window: "nightly".into(),
            held: vec![(1, vec![0]), (2, vec![0]), (3, vec![0])],
        };
        let context = context.with_event(EventContext::new(&event, 3));
        let firing = disk.alerts.len();
        let expected = format!(
            "[MAINTENANCE ENDED] [FIRING:{firing}] maintenance window nightly, 2 groups held"
        );
        assert_eq!(context.title, expected);
        let rendered = templates.render(ChannelKind::Slack, "chat", "title", &context);
        assert_eq!(rendered, expected);
        assert!(!rendered.contains("ProviderDown"), "{rendered}");
    }

    /// Bodies intake accepts that stretch the format: each must be read at delivery and
    /// rendered by every kind of channel.
    fn tricky_bodies() -> Vec<(&'static str, String)> {
        let alert = |labels: &str, extra: &str| {
            format!(
                r#"{{"status":"firing","labels":{{{labels}}},"annotations":{{"summary":"s"}},"startsAt":"2026-11-22T10:00:00Z"{extra}}}"#
            )
        };
        let body = |alerts: &[String], extra: &str| {
            format!(
                r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"X\"}}","status":"firing","receiver":"r","groupLabels":{{"alertname":"X"}},"alerts":[{}]{extra}}}"#,
                alerts.join(",")
            )
        };
        let huge = "v".repeat(1 << 20);
        let mut nested = String::from("0");
        // The deepest an unknown field of an alert may go: the alert is level 3.
        for _ in 0..(crate::payload::MAX_DEPTH - 3) {
            nested = format!("[{nested}]");
        }
        vec![
            (
                "a label value of 1 MiB",
                body(
                    &[alert(&format!(r#""alertname":"X","big":"{huge}""#), "")],
                    "",
                ),
            ),
            (
                "unicode, escaped and not",
                body(
                    &[alert(
                        r#""alertname":"Ünïcode ✓","who":"\u00e9\ud83d\ude00 \u202eltr","emoji":"🔥""#,
                        r#","extraText":"\u0000\n\t\"""#,
                    )],
                    r#","externalURL":"http://am/\u00e9""#,
                ),
            ),
            (
                "unknown fields, nested to the limit",
                body(
                    &[alert(
                        r#""alertname":"X""#,
                        &format!(r#","newField":{{"a":[1,2.5,true,null,{{"b":"c"}}]}},"deep":{nested}"#),
                    )],
                    r#","routeLabels":{"team":"db"},"future":[{"x":null}],"numbers":18446744073709551615"#,
                ),
            ),
            (
                "nulls where allowed, optional fields left out",
                body(
                    &[r#"{"status":"resolved","labels":{"alertname":"X"},"startsAt":"2026-11-22T10:00:00.123456789+02:00","unknown":null}"#.to_owned()],
                    r#","notification_reason":null,"truncatedAlerts":18446744073709551615,"other":null"#,
                ),
            ),
            (
                "an empty label set and a repeated label",
                body(
                    &[alert("", ""), alert(r#""alertname":"X","alertname":"Y""#, "")],
                    "",
                ),
            ),
        ]
    }

    #[test]
    fn what_intake_accepts_delivery_reads_and_every_channel_renders() {
        use crate::channels::Message;
        use crate::config::{ChannelKind, NotifierConfig};
        use crate::payload::Incoming;
        use crate::template::Templates;

        let config = NotifierConfig::parse(
            "channels:\n\
             \x20 chat:\n    slack: {url: 'https://hooks.example.com/x'}\n\
             \x20 mail:\n    email: {smarthost: 'mx:587', from: a@example.com, to: [b@example.com]}\n\
             \x20 pager:\n    pagerduty: {routing_key: 'R0UT1NGKEY0123456789012345678901'}\n\
             \x20 hook:\n    webhook: {url: 'https://example.com/hook'}\n\
             \x20 file:\n    log: {format: text}\n",
            std::path::Path::new("notifier.yml"),
        )
        .expect("config");
        let templates = Templates::build(&config).expect("templates");
        let kinds = [
            ("chat", ChannelKind::Slack),
            ("mail", ChannelKind::Email),
            ("pager", ChannelKind::PagerDuty),
            ("hook", ChannelKind::Webhook),
            ("file", ChannelKind::Log),
        ];
        for (what, text) in tricky_bodies() {
            let incoming = Incoming::parse(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
            let notification = Arc::new(
                parse(&Body::compress(&text)).unwrap_or_else(|e| panic!("{what}: delivery: {e}")),
            );
            assert_eq!(notification.alerts.len(), incoming.alerts().len(), "{what}");
            assert_eq!(notification.dedup_key(), incoming.dedup_key(), "{what}");
            let alerts: Vec<usize> = (0..notification.alerts.len()).collect();
            for (channel, kind) in kinds {
                let context = templates.context(&notification, &alerts, channel, None);
                for part in kind.template_parts() {
                    let rendered = templates.render(kind, channel, part, &context);
                    assert!(!rendered.is_empty(), "{what}: {channel} {part}");
                }
                // What a webhook channel sends is a body intake takes again.
                let message = Message {
                    notification: &notification,
                    alerts: &alerts,
                    context: &context,
                    templates: &templates,
                    delivery_id: 1,
                    attempt: 1,
                    event: None,
                };
                let sent = serde_json::to_vec(&message.restricted()).expect("encode");
                let again = Notification::parse(&sent)
                    .unwrap_or_else(|e| panic!("{what}: {channel}: what is sent: {e}"));
                assert_eq!(again.alerts, notification.alerts, "{what}");
                assert_eq!(again.extra, notification.extra, "{what}");
            }
        }
        // The unicode comes through as it was sent.
        let (_, text) = &tricky_bodies()[1];
        let notification = Arc::new(parse(&Body::compress(text)).expect("parse"));
        assert_eq!(notification.alerts[0].labels["who"], "é😀 \u{202e}ltr");
        let context = templates.context(&notification, &[0], "mail", None);
        let rendered = templates.render(ChannelKind::Email, "mail", "text", &context);
        assert!(rendered.contains("alertname=Ünïcode ✓"), "{rendered}");
        assert!(rendered.contains("emoji=🔥"), "{rendered}");
    }

    #[test]
    fn token_bucket() {
        let mut bucket = TokenBucket::new(RateLimitConfig {
            per_second: 1.0,
            burst: 3,
        });
        assert_eq!(bucket.available(), 3);
        bucket.take();
        bucket.take();
        bucket.take();
        assert_eq!(bucket.available(), 0);
        assert!(bucket.next_token_in() <= Duration::from_secs(1));
        let later = bucket.last + Duration::from_millis(1500);
        bucket.refill(later);
        assert_eq!(bucket.available(), 1);
    }
}
