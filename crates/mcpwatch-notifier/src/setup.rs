//! Everything built from one configuration (channels, templates, routes, escalation
//! policies, recurring windows), swapped whole on reload, and where a notification's
//! alerts go with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ack::LinkSigner;
use crate::channels::{self, Channel, Message, SendError};
use crate::config::{NotifierConfig, SetupError};
use crate::incident::{Policies, Policy, Touch};
use crate::maintenance::{self, OneOff, Recurring};
use crate::payload::{Labels, Notification, Status};
use crate::route::Router;
use crate::severity::Severities;
use crate::schedule::Schedules;
use crate::store::{NewDelivery, Store, StoreError};
use crate::remediation::Remediations;
use crate::template::Templates;
use crate::timeline::{self, AlertBrief};

impl NotifierConfig {
    /// Reads the file, checks it, and compiles its schedules, its templates against a
    /// sample, and its remediation actions, so that a mistake is found now, not when an
    /// alert fires.
    pub fn load(path: &std::path::Path) -> Result<Self, mcpwatch_core::config::ConfigError> {
        Self::load_with(path, built)
    }

    /// Parses YAML text (relative paths taken from `origin`'s directory) and checks it as
    /// [`NotifierConfig::load`] does.
    pub fn parse(
        text: &str,
        origin: &std::path::Path,
    ) -> Result<Self, mcpwatch_core::config::ConfigError> {
        Self::parse_with(text, origin, built)
    }
}

/// What reading a configuration checks beyond its keys: its schedules compile (time zones,
/// handoffs, the rotations' order), its templates render, and its remediation actions
/// are sound.
fn built(config: &NotifierConfig) -> Result<(), (String, String)> {
    crate::schedule::Schedules::new(config)?;
    Templates::check(config)?;
    crate::remediation::check(config)
}

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
    /// The severity scale.
    pub severities: Arc<Severities>,
    /// On-call schedules and the people they name.
    pub schedules: Arc<Schedules>,
    /// Recurring maintenance windows.
    pub recurring: Vec<Recurring>,
    /// Signs acknowledgement links, when `acknowledgement` is configured.
    pub links: Option<Links>,
    /// Remediation actions, by name.
    pub remediations: Arc<Remediations>,
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

/// Why a test notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendTestError {
    /// The configuration does not build.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// No channel has that name.
    #[error("no channel is named {name:?}; the configuration has {known:?}")]
    NoChannel {
        /// The name asked for.
        name: String,
        /// The channels there are.
        known: Vec<String>,
    },
    /// The channel refused it or could not be reached.
    #[error("channel {channel:?} failed: {source}")]
    Failed {
        /// The channel.
        channel: String,
        /// What it answered.
        source: SendError,
    },
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
    pub fn build(config: NotifierConfig) -> Result<Self, SetupError> {
        let templates =
            Templates::build(&config).map_err(|(key, message)| SetupError { key, message })?;
        let channels = channels::build(&config)?;
        let schedules = Schedules::new(&config).map_err(|(key, message)| SetupError { key, message })?;
        let links = match &config.acknowledgement {
            Some(ack) => Some(Links {
                signer: LinkSigner::new(
                    ack.secret()
                        .map_err(|e| SetupError::new("acknowledgement.secret", e))?,
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
            policies: Arc::new(Policy::all(&config, &schedules)),
            schedules: Arc::new(schedules),
            severities: Arc::new(Severities::new(&config.severities)),
            recurring: Recurring::all(&config),
            links,
            remediations: Arc::new(Remediations::build(&config)?),
            config,
        })
    }

    /// Sends a sample notification (firing, or resolved now) through one channel, as
    /// `mcpwatch-notifier send-test` does: nothing is stored.
    pub async fn send_test(&self, channel: &str, resolved: bool) -> Result<(), SendTestError> {
        let Some(target) = self.channels.get(channel) else {
            return Err(SendTestError::NoChannel {
                name: channel.to_owned(),
                known: self.channels.keys().cloned().collect(),
            });
        };
        let mut notification = Notification::sample();
        if resolved {
            notification.status = Status::Resolved;
            for alert in &mut notification.alerts {
                alert.status = Status::Resolved;
                alert.ends_at = crate::time::now_rfc3339();
            }
        }
        let notification = Arc::new(notification);
        let alerts: Vec<usize> = (0..notification.alerts.len()).collect();
        let context = self
            .templates
            .context(&notification, &alerts, channel, None);
        let message = Message {
            notification: &notification,
            alerts: &alerts,
            context: &context,
            templates: &self.templates,
            delivery_id: 0,
            attempt: 1,
            event: None,
        };
        target
            .send(&message)
            .await
            .map_err(|source| SendTestError::Failed {
                channel: channel.to_owned(),
                source,
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
            let firing = status == Status::Firing;
            let severity = self.severities.of(labels);
            for policy in targets.policies {
                let entry = by_policy.entry(policy).or_default();
                entry.alerts.push(index);
                entry.firing |= firing;
                entry.holds.push(hold.clone());
                entry.briefs.push(AlertBrief::new(firing, labels));
                if firing {
                    entry.remediations.extend(targets.remediations.iter().cloned());
                }
                // Of the firing alerts when any fires; of them all until one does.
                if firing && !entry.severity_of_firing {
                    entry.severity = None;
                    entry.severity_of_firing = true;
                }
                if firing || !entry.severity_of_firing {
                    entry.severity = Severities::worst(entry.severity.as_ref(), severity).cloned();
                }
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
                let briefs = timeline::bounded(routed.briefs);
                let remediation_wait = routed
                    .remediations
                    .iter()
                    .filter_map(|name| self.remediations.get(name))
                    .map(|action| action.lease())
                    .max()
                    .unwrap_or(crate::remediation::LEASE_MARGIN);
                Some(Touch {
                    policy: self.policies.get(&name)?.clone(),
                    alerts: routed.alerts,
                    firing: routed.firing,
                    quiet_when_resolved: quiet.clone(),
                    hold,
                    severity: routed.severity.map(|s| s.name),
                    title: timeline::title(&briefs),
                    briefs,
                    remediations: routed.remediations.into_iter().collect(),
                    remediation_wait,
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
    /// Each alert, as the timeline names it.
    briefs: Vec<AlertBrief>,
    /// The most severe level among them (among those firing, once one fires).
    severity: Option<crate::severity::Severity>,
    /// Whether `severity` is of firing alerts.
    severity_of_firing: bool,
    /// The remediation actions of the routes its firing alerts took.
    remediations: std::collections::BTreeSet<String>,
}

/// The one-off maintenance windows in force, as last read from the store.
pub type OneOffWindows = Arc<std::sync::RwLock<Arc<Vec<OneOff>>>>;

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
