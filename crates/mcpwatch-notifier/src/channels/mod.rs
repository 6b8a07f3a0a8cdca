//! The channels a notification is delivered through, and how their failures are told
//! apart: transient (retried, honouring `Retry-After`) or permanent (a dead letter at once).

mod email;
pub(crate) mod http;
mod log;
mod pagerduty;
mod slack;
mod teams;
mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{
    ChannelKind, DeliveryConfig, NotifierConfig, RateLimitConfig, RetryConfig, SetupError,
};
use serde::Serialize;

use crate::payload::{Alert, Notification, Status};
use crate::template::{AlertContext, EventContext, MessageContext, Templates};

pub use pagerduty::{pagerduty_dedup_key, pagerduty_severity};
pub use webhook::signature;

/// One message to send: a notification, restricted to the alerts routed to the channel.
#[derive(Debug)]
pub struct Message<'a> {
    /// The whole notification as received.
    pub notification: &'a Notification,
    /// Indices of the alerts this channel gets.
    pub alerts: &'a [usize],
    /// What templates see.
    pub context: &'a MessageContext,
    /// The compiled templates.
    pub templates: &'a Templates,
    /// The store's id of this delivery (for idempotency headers).
    pub delivery_id: i64,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// What it says besides the alerts (an incident's step, an acknowledgement, a
    /// maintenance summary).
    pub event: Option<&'a crate::incident::Event>,
}

impl Message<'_> {
    /// Renders one template part of `channel`.
    pub fn render(&self, kind: ChannelKind, channel: &str, part: &str) -> String {
        self.templates.render(kind, channel, part, self.context)
    }

    /// The address of the person this message is for on this channel (an email address,
    /// a Slack member id), when it is for one and the configuration gives it.
    pub fn contact(&self) -> Option<&str> {
        self.context
            .event
            .as_ref()?
            .recipient
            .as_ref()?
            .contact
            .as_deref()
    }

    /// The notification with only this message's alerts and its status, as Alertmanager
    /// would have sent it to this channel: a view borrowing from the stored one, written
    /// straight into the body, so that a large notification is not copied per channel.
    pub fn restricted(&self) -> Restricted<'_> {
        Restricted {
            message: self,
            event: None,
        }
    }
}

/// See [`Message::restricted`].
#[derive(Debug, Clone, Copy)]
pub struct Restricted<'a> {
    message: &'a Message<'a>,
    event: Option<&'a EventContext>,
}

impl<'a> Restricted<'a> {
    /// With what mcpwatch adds (an incident's step, an acknowledgement, a maintenance
    /// summary) under a key of its own, `mcpwatch`.
    pub fn with_event(mut self, event: Option<&'a EventContext>) -> Self {
        self.event = event;
        self
    }

    /// The status of this message's alerts.
    pub fn status(&self) -> Status {
        self.message.context.status
    }

    /// The alerts, in the notification's order.
    pub fn alerts(&self) -> impl Iterator<Item = &'a Alert> + 'a {
        let notification = self.message.notification;
        self.message
            .alerts
            .iter()
            .filter_map(move |&i| notification.alerts.get(i))
    }
}

impl Serialize for Restricted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let n = self.message.notification;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("version", &n.version)?;
        map.serialize_entry("groupKey", &n.group_key)?;
        map.serialize_entry("truncatedAlerts", &n.truncated_alerts)?;
        map.serialize_entry("status", &self.status())?;
        map.serialize_entry("receiver", &n.receiver)?;
        map.serialize_entry("groupLabels", &n.group_labels)?;
        map.serialize_entry("commonLabels", &n.common_labels)?;
        map.serialize_entry("commonAnnotations", &n.common_annotations)?;
        map.serialize_entry("externalURL", &n.external_url)?;
        if let Some(reason) = &n.notification_reason {
            map.serialize_entry("notification_reason", reason)?;
        }
        map.serialize_entry("alerts", &Alerts(*self))?;
        for (key, value) in &n.extra {
            // What mcpwatch adds takes the place of a field of that name.
            if self.event.is_none() || key != "mcpwatch" {
                map.serialize_entry(key, value)?;
            }
        }
        if let Some(event) = self.event {
            map.serialize_entry("mcpwatch", &serde_json::json!({ "event": event }))?;
        }
        map.end()
    }
}

/// The alerts of a [`Restricted`], written as a list.
struct Alerts<'a>(Restricted<'a>);

impl Serialize for Alerts<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.alerts())
    }
}

/// How alarming a message or an alert is, for the colours of the chat channels: a critical
/// alert fires, another fires, or all have resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// An alert with `severity="critical"` fires.
    Critical,
    /// Alerts fire, none of them critical.
    Firing,
    /// Everything resolved.
    Resolved,
}

impl Tone {
    /// The tone of a message's alerts.
    pub fn of(context: &MessageContext) -> Self {
        match context.status {
            Status::Resolved => Tone::Resolved,
            Status::Firing if context.firing.iter().any(is_critical) => Tone::Critical,
            Status::Firing => Tone::Firing,
        }
    }

    /// The tone of one alert.
    pub fn of_alert(alert: AlertContext<'_>) -> Self {
        match alert.status() {
            Status::Resolved => Tone::Resolved,
            Status::Firing if is_critical(alert) => Tone::Critical,
            Status::Firing => Tone::Firing,
        }
    }
}

fn is_critical(alert: AlertContext<'_>) -> bool {
    alert
        .labels()
        .get("severity")
        .is_some_and(|s| s == "critical")
}

/// Why a send failed. The text never holds a secret (no URL, no key).
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Worth another try: a timeout, a refused connection, 429, 5xx, SMTP 4xx.
    Transient {
        /// A bounded label for metrics: timeout, connection, rate_limited, server_error, ...
        kind: &'static str,
        /// What happened.
        reason: String,
        /// The wait the receiver asked for.
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is: 4xx, SMTP 5xx, a rejected payload.
    Permanent {
        /// A bounded label for metrics.
        kind: &'static str,
        /// What happened.
        reason: String,
    },
}

impl SendError {
    /// A transient failure.
    pub fn transient(kind: &'static str, reason: impl Into<String>) -> Self {
        SendError::Transient {
            kind,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(kind: &'static str, reason: impl Into<String>) -> Self {
        SendError::Permanent {
            kind,
            reason: reason.into(),
        }
    }

    /// The metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Transient { kind, .. } | SendError::Permanent { kind, .. } => kind,
        }
    }

    /// The text stored and shown.
    pub fn reason(&self) -> &str {
        match self {
            SendError::Transient { reason, .. } | SendError::Permanent { reason, .. } => reason,
        }
    }
}

impl std::error::Error for SendError {}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Sends messages of one kind.
#[async_trait::async_trait]
pub trait Sender: Send + Sync + 'static {
    /// Sends one message.
    async fn send(&self, message: &Message<'_>) -> Result<(), SendError>;
}

/// A configured channel: its sender and delivery settings.
pub struct Channel {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ChannelKind,
    /// Sends resolved notifications too.
    pub send_resolved: bool,
    /// Backoff.
    pub retry: RetryConfig,
    /// Dead-letter time.
    pub dead_letter_after: Duration,
    /// Attempt timeout.
    pub timeout: Duration,
    /// Rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    sender: Box<dyn Sender>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Sends one message within the channel's timeout.
    pub async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.sender.send(message)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::transient(
                "timeout",
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ),
            )),
        }
    }
}

fn present<'a, T>(setting: &'a Option<T>, name: &str, kind: &str) -> Result<&'a T, SetupError> {
    setting
        .as_ref()
        .ok_or_else(|| SetupError::new(format!("channels.{name}"), format!("{kind} settings are missing")))
}

/// Builds every configured channel. Errors name the channel.
pub fn build(config: &NotifierConfig) -> Result<BTreeMap<String, Arc<Channel>>, SetupError> {
    let mut channels = BTreeMap::new();
    for (name, c) in &config.channels {
        let kind = c
            .kind()
            .map_err(|e| SetupError::new(format!("channels.{name}"), e))?;
        let defaults: &DeliveryConfig = &config.delivery;
        let timeout = c.timeout(defaults);
        let within = |e: String| SetupError::new(format!("channels.{name}.{}", kind.as_str()), e);
        let sender: Box<dyn Sender> = match kind {
            ChannelKind::Email => Box::new(
                email::EmailSender::new(name, present(&c.email, name, "email")?, timeout)
                    .map_err(within)?,
            ),
            ChannelKind::Slack => Box::new(
                slack::SlackSender::new(name, present(&c.slack, name, "slack")?, timeout)
                    .map_err(within)?,
            ),
            ChannelKind::Teams => Box::new(
                teams::TeamsSender::new(name, present(&c.teams, name, "teams")?, timeout)
                    .map_err(within)?,
            ),
            ChannelKind::PagerDuty => Box::new(
                pagerduty::PagerDutySender::new(name, present(&c.pagerduty, name, "pagerduty")?, timeout)
                    .map_err(within)?,
            ),
            ChannelKind::Webhook => Box::new(
                webhook::WebhookSender::new(name, present(&c.webhook, name, "webhook")?, timeout)
                    .map_err(within)?,
            ),
            ChannelKind::Log => {
                Box::new(log::LogSender::new(name, present(&c.log, name, "log")?).map_err(within)?)
            }
        };
        channels.insert(
            name.clone(),
            Arc::new(Channel {
                name: name.clone(),
                kind,
                send_resolved: c.send_resolved,
                retry: c.retry(defaults),
                dead_letter_after: c.dead_letter_after(defaults),
                timeout,
                rate_limit: c.rate_limit(),
                sender,
            }),
        );
    }
    Ok(channels)
}
