//! The notifier: what it stores, when it wakes its dispatcher, what it reloads.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mcpwatch_core::ScrapeEngine;
use tokio::sync::{Notify, watch};

use crate::config::{NotifierConfig, SetupError};
use crate::dispatch::Dispatcher;
use crate::incident::{AckAction, AckRefused, AckRequest, IncidentView};
use crate::maintenance::OneOff;
use crate::metrics::{NotifierMetrics, QueueCollector, ScheduleGaps};
use crate::payload::{Incoming, Status};
use crate::setup::{OneOffWindows, Setup, refresh_windows, retire};
use crate::store::{
    Accepted, Body, NewNotification, PostgresStore, SqliteStore, Store, StoreError, age_seconds,
};

/// Why the notifier did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot be built (a channel, a template, a secret).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The store cannot be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who was answered for which notification: once the answer is given,
/// [`Notifier::answered`] makes the sender's next copy a new sending (a reminder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    key: crate::payload::DedupKey,
    notification: i64,
    sender: i64,
}

/// What became of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// Stored under this id, with deliveries to these channels.
    Stored {
        /// Notification id.
        id: i64,
        /// Channels it will be delivered to.
        channels: Vec<String>,
    },
    /// A copy of notification `id`; nothing new is sent.
    Duplicate {
        /// The first copy's id.
        id: i64,
    },
}

/// The notifier: store, setup, metrics and the dispatcher's wake-up.
pub struct Notifier {
    store: Arc<dyn Store>,
    setup: watch::Sender<Arc<Setup>>,
    metrics: Arc<NotifierMetrics>,
    wake: Arc<Notify>,
    engine: ScrapeEngine,
    channel_names: Arc<Mutex<Vec<String>>>,
    started: Instant,
    one_off: OneOffWindows,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// Opens the store, returns deliveries a stopped process left in flight to the queue,
    /// and builds the channels. Run the returned dispatcher to send.
    pub async fn start(config: NotifierConfig) -> Result<(Arc<Self>, Dispatcher), StartError> {
        let store: Arc<dyn Store> = match &config.storage.postgres {
            Some(postgres) => {
                let store = PostgresStore::open(&postgres.dsn()?, postgres.max_connections).await?;
                tracing::info!(target = store.target(), "State kept in PostgreSQL.");
                Arc::new(store)
            }
            None => {
                let path = config.storage.path.path().to_owned();
                Arc::new(
                    tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                        .await
                        .map_err(|e| StoreError::Unusable(format!("opening the store: {e}")))??,
                )
            }
        };
        Self::with_store(config, store).await
    }

    /// As [`Notifier::start`], over a store opened elsewhere.
    pub(crate) async fn with_store(
        config: NotifierConfig,
        store: Arc<dyn Store>,
    ) -> Result<(Arc<Self>, Dispatcher), StartError> {
        let setup = Setup::build(config)?;
        let recovered = store.recover().await?;
        if recovered > 0 {
            tracing::warn!(
                deliveries = recovered,
                "Deliveries were in flight when the notifier last stopped; they are sent again."
            );
        }
        let names: Vec<String> = setup.channels.keys().cloned().collect();
        retire(store.as_ref(), &names).await;
        let metrics = NotifierMetrics::new(&names);
        let channel_names = Arc::new(Mutex::new(names));
        let (setup_tx, setup_rx) = watch::channel(Arc::new(setup));
        let engine = ScrapeEngine::builder()
            .collector(QueueCollector::new(store.clone(), channel_names.clone()))
            .source(metrics.clone())
            .source(ScheduleGaps::new({
                let setup = setup_rx.clone();
                move || setup.borrow().schedules.clone()
            }))
            .build_info(env!("CARGO_PKG_VERSION"), revision())
            .build();
        let wake = Arc::new(Notify::new());
        let one_off: OneOffWindows = Arc::default();
        let dispatcher = Dispatcher::new(store.clone(), setup_rx, metrics.clone(), wake.clone())
            .with_windows(one_off.clone());
        refresh_windows(store.as_ref(), &one_off, crate::time::now_ms()).await?;
        Ok((
            Arc::new(Self {
                store,
                setup: setup_tx,
                metrics,
                wake,
                engine,
                channel_names,
                started: Instant::now(),
                one_off,
            }),
            dispatcher,
        ))
    }

    /// Stores a notification (once) and wakes the dispatcher. `body` is the JSON it was
    /// parsed from, stored as it came (unknown fields and all); `peer` the address it came
    /// from, `target` the URL it was posted to (host and path) and `arrived` when (Unix
    /// ms). What to record once the sender has its answer comes with it.
    pub(crate) async fn receive(
        &self,
        incoming: &Incoming<'_>,
        body: &str,
        peer: Option<std::net::IpAddr>,
        target: &str,
        arrived: i64,
    ) -> Result<(Received, Answer), StoreError> {
        let sender = crate::payload::sender(incoming.external_url(), peer, target);
        let key = incoming.dedup_key();
        let setup = self.setup.borrow().clone();
        let now = crate::time::now_ms();
        let plan = setup.plan(
            incoming.alerts().iter().map(|a| (a.status, &a.labels)),
            &self.windows(),
            now,
        );
        // The channels told now: those of the deliveries, and the first level of each
        // escalation policy an incident opens or moves on (later levels are told later),
        // with the contacts of whoever is on call in its schedule.
        let mut channels: Vec<String> = Vec::new();
        let now_told = plan
            .deliveries
            .iter()
            .filter(|d| d.hold.is_none())
            .map(|d| d.channel.clone())
            .chain(
                plan.incidents
                    .iter()
                    .filter(|touch| touch.hold.is_none())
                    .filter_map(|touch| touch.policy.levels.first())
                    .flat_map(|level| level.targets(arrived).to.into_iter().map(|(c, _)| c)),
            );
        for channel in now_told {
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        let accepted = self
            .store
            .accept(NewNotification {
                dedup_key: key,
                receiver: incoming.receiver().to_owned(),
                group_key: incoming.group_key().to_owned(),
                status: incoming.status().as_str().to_owned(),
                alert_count: incoming.alerts().len(),
                payload: Body::compress(body),
                deliveries: plan.deliveries,
                received_at: arrived,
                dedup_window: setup.config.storage.dedup_window,
                incidents: plan.incidents,
                components: setup.config.status_page.as_ref().map(|page| {
                    crate::statuspage::of_alerts(
                        page,
                        &setup.severities,
                        incoming
                            .alerts()
                            .iter()
                            .map(|a| (a.status == Status::Firing, &a.labels)),
                    )
                }),
                sender,
            })
            .await?;
        let (received, notification) = match accepted {
            Accepted::Stored(id) => {
                self.metrics.received(false);
                self.wake.notify_one();
                (Received::Stored { id, channels }, id)
            }
            Accepted::Duplicate(id) => {
                self.metrics.received(true);
                (Received::Duplicate { id }, id)
            }
        };
        let answer = Answer {
            key,
            notification,
            sender,
        };
        Ok((received, answer))
    }

    /// Records that a sender has its answer (see [`Answer`]); a failure only means that
    /// its next copy is taken for a retry.
    pub(crate) async fn answered(&self, answer: Answer) {
        if let Err(e) = self
            .store
            .answered(
                answer.key,
                answer.notification,
                answer.sender,
                crate::time::now_ms(),
            )
            .await
        {
            tracing::debug!(error = %e, notification = answer.notification, "Recording an answer failed.");
        }
    }

    /// Replaces the configuration; the old one stays when the new one does not build.
    pub async fn reload(&self, config: NotifierConfig) -> Result<(), SetupError> {
        let setup = Setup::build(config)?;
        let names: Vec<String> = setup.channels.keys().cloned().collect();
        self.metrics.register(&names);
        if let Ok(mut current) = self.channel_names.lock() {
            current.clone_from(&names);
        }
        self.setup.send_replace(Arc::new(setup));
        retire(self.store.as_ref(), &names).await;
        self.wake.notify_one();
        Ok(())
    }

    /// The configuration in force (with its defaults filled in).
    pub fn config(&self) -> NotifierConfig {
        self.setup.borrow().config.clone()
    }

    /// The setup in force.
    pub(crate) fn setup(&self) -> Arc<Setup> {
        self.setup.borrow().clone()
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The counters.
    pub(crate) fn metrics(&self) -> &Arc<NotifierMetrics> {
        &self.metrics
    }

    /// The engine behind `/metrics`.
    pub(crate) fn engine(&self) -> &ScrapeEngine {
        &self.engine
    }

    /// Since when it runs.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Wakes the dispatcher (after a replay).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The one-off maintenance windows in force.
    pub(crate) fn windows(&self) -> Arc<Vec<OneOff>> {
        self.one_off.read().map(|w| w.clone()).unwrap_or_default()
    }

    /// Reads the one-off windows from the store again (after one was added or ended).
    pub(crate) async fn refresh_windows(&self) -> Result<(), StoreError> {
        refresh_windows(self.store.as_ref(), &self.one_off, crate::time::now_ms()).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Resolves an incident by hand; the incident after, or why not.
    pub(crate) async fn resolve(
        &self,
        incident: i64,
        by: String,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError> {
        let setup = self.setup();
        let quiet = setup
            .config
            .channels
            .iter()
            .filter(|(_, c)| !c.send_resolved)
            .map(|(name, _)| name.clone())
            .collect();
        let result = self
            .store
            .resolve(
                incident,
                by.clone(),
                crate::time::now_ms(),
                setup.policies.clone(),
                quiet,
            )
            .await?;
        if let Ok(view) = &result {
            tracing::info!(incident, policy = %view.policy, by = %by, "Incident resolved by hand.");
            self.wake.notify_one();
        }
        Ok(result)
    }

    /// Acknowledges an incident (or takes it back); the incident after, or why not.
    pub(crate) async fn acknowledge(
        &self,
        incident: i64,
        request: AckRequest,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError> {
        let setup = self.setup();
        let action = request.action;
        let now = request.now;
        let by = request.by.clone();
        let result = self
            .store
            .acknowledge(incident, request, setup.policies.clone())
            .await?;
        if let Ok(view) = &result {
            if action == AckAction::Ack {
                self.metrics
                    .acknowledged(&view.policy, age_seconds(now, view.opened_ms));
            }
            tracing::info!(
                incident,
                policy = %view.policy,
                level = view.level,
                by = %by,
                action = if action == AckAction::Ack { "acknowledged" } else { "unacknowledged" },
                "Incident {}.",
                if action == AckAction::Ack { "acknowledged" } else { "no longer acknowledged" }
            );
            self.wake.notify_one();
        }
        Ok(result)
    }
}

/// The source revision this binary was built from.
pub fn revision() -> &'static str {
    option_env!("MCPWATCH_REVISION").unwrap_or("unknown")
}
