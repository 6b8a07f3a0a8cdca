#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ack;
pub mod channels;
pub mod config;
pub mod dispatch;
pub mod incident;
pub mod maintenance;
pub mod metrics;
pub mod payload;
pub mod route;
pub mod server;
pub mod store;
pub mod template;
pub mod time;
pub mod timeinterval;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mcpwatch_core::ScrapeEngine;
use tokio::sync::{Notify, watch};

use crate::ack::LinkSigner;
use crate::channels::Channel;
use crate::config::NotifierConfig;
use crate::dispatch::Dispatcher;
use crate::incident::{AckAction, AckRefused, AckRequest, IncidentView, Policies, Policy, Touch};
use crate::maintenance::{OneOff, Recurring};
use crate::metrics::{NotifierMetrics, QueueCollector};
use crate::payload::{Incoming, Labels, Status};
use crate::route::Router;
use crate::store::{
    Accepted, Body, NewDelivery, NewNotification, PostgresStore, SqliteStore, Store, StoreError,
    age_seconds,
};
use crate::template::Templates;

/// Everything built from one configuration: swapped whole on reload.
#[derive(Debug)]
pub struct Setup {
    /// The configuration.
    pub config: NotifierConfig,
    /// The routing tree.
    pub router: Router,
    /// The channels.
    pub channels: BTreeMap<String, Arc<Channel>>,
    /// The compiled templates.
    pub templates: Templates,
    /// Escalation policies.
    pub policies: Arc<Policies>,
    /// Recurring maintenance windows.
    pub recurring: Vec<Recurring>,
    /// Signs acknowledgement links, when `acknowledgement` is configured.
    pub links: Option<Links>,
}

/// Acknowledgement links: signer, base URL, lifetime.
#[derive(Debug, Clone)]
pub struct Links {
    /// The signer.
    pub signer: LinkSigner,
    /// The notifier's external URL.
    pub base: String,
    /// How long a link works.
    pub ttl: std::time::Duration,
}

/// Where a notification's alerts go.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Deliveries, held ones included.
    pub deliveries: Vec<NewDelivery>,
    /// What it brings to each escalation policy.
    pub incidents: Vec<Touch>,
}

impl Setup {
    /// Builds channels, templates and routes. The error names the key at fault.
    pub fn build(config: NotifierConfig) -> Result<Self, String> {
        let templates = Templates::build(&config).map_err(|(k, m)| format!("{k}: {m}"))?;
        let channels = channels::build(&config)?;
        let links = match &config.acknowledgement {
            Some(ack) => Some(Links {
                signer: LinkSigner::new(
                    ack.secret()
                        .map_err(|e| format!("acknowledgement.secret: {e}"))?,
                ),
                base: ack.external_url.trim().trim_end_matches('/').to_owned(),
                ttl: ack.link_ttl,
            }),
            None => None,
        };
        Ok(Self {
            router: Router::new(config.route.clone()),
            channels,
            templates,
            policies: Arc::new(Policy::all(&config)),
            recurring: Recurring::all(&config),
            links,
            config,
        })
    }

    /// Where the alerts go at `now`: one delivery per channel they route to, each with
    /// its alerts (a channel that does not send resolved notifications gets none when all
    /// its alerts have resolved); what they bring to each escalation policy; and, for the
    /// alerts a maintenance window holds, held deliveries to the channels they would reach
    /// (a policy's first level).
    pub fn plan<'l, L: Labels + 'l>(
        &self,
        alerts: impl IntoIterator<Item = (Status, &'l L)>,
        one_off: &[OneOff],
        now: i64,
    ) -> Plan {
        let mut by_channel: BTreeMap<String, (Vec<usize>, bool)> = BTreeMap::new();
        let mut held: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        let mut by_policy: BTreeMap<String, PolicyAlerts> = BTreeMap::new();
        for (index, (status, labels)) in alerts.into_iter().enumerate() {
            let targets = self.router.targets(labels);
            let hold = maintenance::holding(&self.recurring, one_off, labels, now);
            for channel in targets.channels {
                if let Some(window) = &hold {
                    held.entry((window.clone(), channel))
                        .or_default()
                        .push(index);
                } else {
                    let (alerts, firing) = by_channel.entry(channel).or_default();
                    alerts.push(index);
                    *firing |= status == Status::Firing;
                }
            }
            for policy in targets.policies {
                let entry = by_policy.entry(policy).or_default();
                entry.alerts.push(index);
                entry.firing |= status == Status::Firing;
                entry.holds.push(hold.clone());
            }
        }
        let mut deliveries: Vec<NewDelivery> = by_channel
            .into_iter()
            .filter(|(channel, (_, firing))| {
                *firing || self.channels.get(channel).is_none_or(|c| c.send_resolved)
            })
            .map(|(channel, (alerts, _))| NewDelivery {
                channel,
                alerts,
                hold: None,
            })
            .collect();
        deliveries.extend(
            held.into_iter()
                .map(|((window, channel), alerts)| NewDelivery {
                    channel,
                    alerts,
                    hold: Some(window),
                }),
        );
        let quiet: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.send_resolved)
            .map(|(name, _)| name.clone())
            .collect();
        let incidents = by_policy
            .into_iter()
            .filter_map(|(name, routed)| {
                // Held only when every alert is: an alert that passes takes the rest of its
                // group along.
                let hold = if routed.holds.iter().all(Option::is_some) {
                    routed.holds.into_iter().flatten().next()
                } else {
                    None
                };
                Some(Touch {
                    policy: self.policies.get(&name)?.clone(),
                    alerts: routed.alerts,
                    firing: routed.firing,
                    quiet_when_resolved: quiet.clone(),
                    hold,
                })
            })
            .collect();
        Plan {
            deliveries,
            incidents,
        }
    }
}

/// The alerts of one notification routed to one escalation policy.
#[derive(Default)]
struct PolicyAlerts {
    alerts: Vec<usize>,
    firing: bool,
    /// The window holding each alert, if one does.
    holds: Vec<Option<String>>,
}

/// The one-off maintenance windows in force, as last read from the store.
pub type OneOffWindows = Arc<std::sync::RwLock<Arc<Vec<OneOff>>>>;

/// What became of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
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
    pub async fn start(config: NotifierConfig) -> Result<(Arc<Self>, Dispatcher), String> {
        let store: Arc<dyn Store> = match &config.storage.postgres {
            Some(postgres) => {
                let dsn = postgres
                    .dsn()
                    .map_err(|e| format!("storage.postgres: {e}"))?;
                let store = PostgresStore::open(&dsn, postgres.max_connections)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(target = store.target(), "State kept in PostgreSQL.");
                Arc::new(store)
            }
            None => {
                let path = config.storage.path.path().to_owned();
                Arc::new(
                    tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                        .await
                        .map_err(|e| format!("opening the store: {e}"))?
                        .map_err(|e| e.to_string())?,
                )
            }
        };
        Self::with_store(config, store).await
    }

    /// As [`Notifier::start`], over a store opened elsewhere.
    pub async fn with_store(
        config: NotifierConfig,
        store: Arc<dyn Store>,
    ) -> Result<(Arc<Self>, Dispatcher), String> {
        let setup = Setup::build(config)?;
        let recovered = store.recover().await.map_err(|e| e.to_string())?;
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
        let engine = ScrapeEngine::builder()
            .collector(QueueCollector::new(store.clone(), channel_names.clone()))
            .source(metrics.clone())
            .build_info(env!("CARGO_PKG_VERSION"), revision())
            .build();
        let (setup_tx, setup_rx) = watch::channel(Arc::new(setup));
        let wake = Arc::new(Notify::new());
        let one_off: OneOffWindows = Arc::default();
        let dispatcher = Dispatcher::new(store.clone(), setup_rx, metrics.clone(), wake.clone())
            .with_windows(one_off.clone());
        refresh_windows(store.as_ref(), &one_off, time::now_ms())
            .await
            .map_err(|e| e.to_string())?;
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
    /// parsed from, stored as it came (unknown fields and all).
    pub async fn receive(
        &self,
        incoming: &Incoming<'_>,
        body: &str,
    ) -> Result<Received, StoreError> {
        let (notification, channels) = self.prepare(incoming, body);
        self.store_prepared(notification, channels).await
    }

    /// What [`Notifier::receive`] stores, and the channels told now: routed, its body
    /// compressed. Made before the store is waited for, so that the body and its parse
    /// can be let go meanwhile.
    pub fn prepare(&self, incoming: &Incoming<'_>, body: &str) -> (NewNotification, Vec<String>) {
        let setup = self.setup.borrow().clone();
        let now = time::now_ms();
        let plan = setup.plan(
            incoming.alerts().iter().map(|a| (a.status, &a.labels)),
            &self.windows(),
            now,
        );
        // The channels told now: those of the deliveries, and the first level of each
        // escalation policy an incident opens or moves on (later levels are told later).
        let mut channels: Vec<String> = Vec::new();
        let now_told = plan
            .deliveries
            .iter()
            .filter(|d| d.hold.is_none())
            .map(|d| &d.channel)
            .chain(
                plan.incidents
                    .iter()
                    .filter(|touch| touch.hold.is_none())
                    .filter_map(|touch| touch.policy.levels.first())
                    .flat_map(|level| level.channels.iter()),
            );
        for channel in now_told {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
        let notification = NewNotification {
            dedup_key: incoming.dedup_key(),
            receiver: incoming.receiver().to_owned(),
            group_key: incoming.group_key().to_owned(),
            status: incoming.status().as_str().to_owned(),
            alert_count: incoming.alerts().len(),
            payload: Body::compress(body),
            deliveries: plan.deliveries,
            received_at: now,
            dedup_window: setup.config.storage.dedup_window,
            incidents: plan.incidents,
        };
        (notification, channels)
    }

    /// Stores what [`Notifier::prepare`] made (once) and wakes the dispatcher.
    pub async fn store_prepared(
        &self,
        notification: NewNotification,
        channels: Vec<String>,
    ) -> Result<Received, StoreError> {
        let accepted = self.store.accept(notification).await?;
        Ok(match accepted {
            Accepted::Stored(id) => {
                self.metrics.received(false);
                self.wake.notify_one();
                Received::Stored { id, channels }
            }
            Accepted::Duplicate(id) => {
                self.metrics.received(true);
                Received::Duplicate { id }
            }
        })
    }

    /// Replaces the configuration; the old one stays when the new one does not build.
    pub async fn reload(&self, config: NotifierConfig) -> Result<(), String> {
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

    /// The setup in force.
    pub fn setup(&self) -> Arc<Setup> {
        self.setup.borrow().clone()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<NotifierMetrics> {
        &self.metrics
    }

    /// The engine behind `/metrics`.
    pub fn engine(&self) -> &ScrapeEngine {
        &self.engine
    }

    /// Since when it runs.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Wakes the dispatcher (after a replay).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The one-off maintenance windows in force.
    pub fn windows(&self) -> Arc<Vec<OneOff>> {
        self.one_off.read().map(|w| w.clone()).unwrap_or_default()
    }

    /// Reads the one-off windows from the store again (after one was added or ended).
    pub async fn refresh_windows(&self) -> Result<(), StoreError> {
        refresh_windows(self.store.as_ref(), &self.one_off, time::now_ms()).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Acknowledges an incident (or takes it back); the incident after, or why not.
    pub async fn acknowledge(
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

/// Reads the one-off windows that have not ended into `into`.
pub(crate) async fn refresh_windows(
    store: &dyn Store,
    into: &OneOffWindows,
    now: i64,
) -> Result<(), StoreError> {
    let rows = store.windows(now).await?;
    let windows = Arc::new(rows.into_iter().map(OneOff::new).collect::<Vec<_>>());
    if let Ok(mut current) = into.write() {
        *current = windows;
    }
    Ok(())
}

pub(crate) async fn retire(store: &dyn Store, names: &[String]) {
    match store.retire_channels(names.to_vec()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            deliveries = n,
            "Queued deliveries to channels no longer configured are dead letters now."
        ),
        Err(e) => tracing::error!(error = %e, "Checking the queue for removed channels failed."),
    }
}

/// The source revision this binary was built from.
pub fn revision() -> &'static str {
    option_env!("MCPWATCH_REVISION").unwrap_or("unknown")
}
