//! Message templates (minijinja): good defaults per channel kind, overridable for all
//! channels (`templates:`) or one (`channels.<name>.templates:`). Every template is compiled
//! and rendered against sample notifications when the configuration is read, so that a
//! mistake shows at `--check-config`, not when an alert fires.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::Environment;
use serde::Serialize;

use crate::config::{ChannelKind, NotifierConfig};
use crate::payload::{Alert, LabelSet, Notification, Status};

/// Every template part any channel kind renders.
pub use crate::config::TEMPLATE_PARTS as PARTS;

const TITLE: &str = "{% if event and event.label %}[{{ event.label }}] {% endif %}[{{ status|upper }}{% if status == 'firing' %}:{{ counts.firing }}{% endif %}] \
{{ group_label_values or receiver }}{% if common_labels.instance is defined and 'instance' not in group_labels %} ({{ common_labels.instance }}){% endif %}";

const SLACK_TEXT: &str = r#"{% if event %}*{{ event.headline|slack }}*
{% endif %}{% for a in listed %}{% if a.status == 'firing' %}:red_circle:{% else %}:large_green_circle:{% endif %} *{{ a.summary|slack }}*{% if a.labels.instance %} · `{{ a.labels.instance|slack }}`{% endif %}{% if a.labels.severity %} · {{ a.labels.severity|slack }}{% endif %}
{% if a.description %}{{ a.description|slack }}
{% endif %}{% if a.runbook_url %}<{{ a.runbook_url }}|Runbook>{% endif %}{% if a.runbook_url and a.generator_url %} · {% endif %}{% if a.generator_url %}<{{ a.generator_url }}|Source>{% endif %}{% if a.runbook_url or a.generator_url %}
{% endif %}{% endfor %}{% if unlisted %}…and {{ unlisted_count }} more: {% for u in unlisted %}{{ u.name|slack }} ×{{ u.count }} {{ u.status }}{% if not loop.last %}, {% endif %}{% endfor %}
{% endif %}{% if truncated_alerts %}({{ truncated_alerts }} alerts left out by Alertmanager's max_alerts)
{% endif %}{% if ack_url %}<{{ ack_url }}|Acknowledge>
{% endif %}"#;

const PLAIN_TEXT: &str = r#"{% if event %}{{ event.headline }}

{% endif %}{{ counts.firing }} firing, {{ counts.resolved }} resolved{% if group_label_values %} for {{ group_label_values }}{% endif %} (receiver {{ receiver }}).
{% for a in listed %}
[{{ a.status|upper }}] {{ a.summary }}
{% if a.description %}  {{ a.description }}
{% endif %}  Labels: {% for k, v in a.labels|items %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% endfor %}
  Started: {{ a.starts_at }}{% if a.status == 'resolved' %}, resolved: {{ a.ends_at }}{% endif %}
{% if a.runbook_url %}  Runbook: {{ a.runbook_url }}
{% endif %}{% if a.generator_url %}  Source: {{ a.generator_url }}
{% endif %}{% endfor %}{% if unlisted %}
...and {{ unlisted_count }} more: {% for u in unlisted %}{{ u.name }} x{{ u.count }} {{ u.status }}{% if not loop.last %}, {% endif %}{% endfor %}
{% endif %}{% if truncated_alerts %}
{{ truncated_alerts }} alerts were left out by Alertmanager's max_alerts.
{% endif %}{% if ack_url %}
Acknowledge: {{ ack_url }}
{% endif %}{% if external_url %}
Alertmanager: {{ external_url }}
{% endif %}"#;

const LOG_TEXT: &str = r#"{{ title }}{% for a in listed %} | {{ a.status }} {{ a.name }}{% if a.labels.instance %} {{ a.labels.instance }}{% endif %}: {{ a.summary }}{% endfor %}{% if unlisted %} | and {{ unlisted_count }} more{% endif %}"#;

const EMAIL_HTML: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body style="font-family: -apple-system, Helvetica, Arial, sans-serif; font-size: 14px; color: #222;">
<h2 style="color: {% if status == 'firing' %}#c0392b{% else %}#27ae60{% endif %};">{{ title }}</h2>
{% if event %}<p><strong>{{ event.headline }}</strong></p>{% endif %}
<p>{{ counts.firing }} firing, {{ counts.resolved }} resolved (receiver {{ receiver }}).</p>
{% for a in listed %}<table style="border-left: 4px solid {% if a.status == 'firing' %}#c0392b{% else %}#27ae60{% endif %}; margin: 12px 0; padding-left: 8px;">
<tr><td><strong>[{{ a.status|upper }}] {{ a.summary }}</strong></td></tr>
{% if a.description %}<tr><td>{{ a.description }}</td></tr>{% endif %}
<tr><td style="color: #666;">{% for k, v in a.labels|items %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
<tr><td style="color: #666;">Started {{ a.starts_at }}{% if a.status == 'resolved' %}, resolved {{ a.ends_at }}{% endif %}</td></tr>
<tr><td>{% if a.runbook_url %}<a href="{{ a.runbook_url }}">Runbook</a>{% endif %}{% if a.runbook_url and a.generator_url %} · {% endif %}{% if a.generator_url %}<a href="{{ a.generator_url }}">Source</a>{% endif %}</td></tr>
</table>
{% endfor %}{% if unlisted %}<p>…and {{ unlisted_count }} more: {% for u in unlisted %}{{ u.name }} ×{{ u.count }} {{ u.status }}{% if not loop.last %}, {% endif %}{% endfor %}</p>{% endif %}
{% if truncated_alerts %}<p>{{ truncated_alerts }} alerts were left out by Alertmanager's max_alerts.</p>{% endif %}
{% if ack_url %}<p><a href="{{ ack_url }}">Acknowledge</a></p>{% endif %}
{% if external_url %}<p style="color: #666;">Sent by <a href="{{ external_url }}">Alertmanager</a> through mcpwatch-notifier.</p>{% endif %}
</body></html>
"#;

const PAGERDUTY_SUMMARY: &str = "{{ title }}{% if common_annotations.summary %}: {{ common_annotations.summary }}{% elif alerts|length == 1 and alerts[0].summary %}: {{ alerts[0].summary }}{% endif %}";

const PAGERDUTY_SOURCE: &str = "{{ common_labels.instance or common_labels.job or receiver }}";

/// The built-in template of a part for a kind.
fn builtin(kind: ChannelKind, part: &str) -> &'static str {
    match (kind, part) {
        (ChannelKind::Slack, "text") => SLACK_TEXT,
        (ChannelKind::Email, "text") => PLAIN_TEXT,
        (ChannelKind::Email, "html") => EMAIL_HTML,
        (ChannelKind::Log, "text") => LOG_TEXT,
        (ChannelKind::PagerDuty, "summary") => PAGERDUTY_SUMMARY,
        (ChannelKind::PagerDuty, "source") => PAGERDUTY_SOURCE,
        // subject and title
        _ => TITLE,
    }
}

/// How many alerts each kind lists one by one before counting the rest by name.
fn default_listed(kind: ChannelKind) -> usize {
    match kind {
        ChannelKind::Slack | ChannelKind::Teams => 10,
        ChannelKind::Email => 50,
        ChannelKind::Log | ChannelKind::PagerDuty | ChannelKind::Webhook => 20,
    }
}

/// Compiled templates of every channel.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    listed: BTreeMap<String, usize>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("channels", &self.listed.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn template_name(channel: &str, part: &str) -> String {
    // The `.html` suffix turns on HTML escaping for that template.
    if part == "html" {
        format!("{channel}/{part}.html")
    } else {
        format!("{channel}/{part}")
    }
}

/// The environment every template is compiled in: minijinja's sandbox (no file, network or
/// process access), with the `slack` filter.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_filter("slack", |value: String| slack_escape(&value));
    env
}

/// Escapes the three characters Slack's mrkdwn gives meaning to.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Templates {
    /// Compiles every channel's templates. The error names the configuration key.
    pub fn build(config: &NotifierConfig) -> Result<Self, (String, String)> {
        let mut env = environment();
        let mut listed = BTreeMap::new();
        for (name, channel) in &config.channels {
            let Ok(kind) = channel.kind() else { continue };
            for part in kind.template_parts() {
                let (source, key) = if let Some(own) = channel.templates.get(*part) {
                    (own.clone(), format!("channels.{name}.templates.{part}"))
                } else if let Some(shared) = config.templates.get(*part) {
                    (shared.clone(), format!("templates.{part}"))
                } else {
                    (builtin(kind, part).to_owned(), format!("templates.{part}"))
                };
                env.add_template_owned(template_name(name, part), source)
                    .map_err(|e| (key, describe(&e)))?;
                env.add_template_owned(
                    template_name(&format!("builtin-{}", kind.as_str()), part),
                    builtin(kind, part),
                )
                .map_err(|e| (format!("templates.{part}"), describe(&e)))?;
            }
            let max = channel
                .max_alerts_listed()
                .unwrap_or_else(|| default_listed(kind));
            listed.insert(name.clone(), max.max(1));
        }
        Ok(Self {
            env: Arc::new(env),
            listed,
        })
    }

    /// Builds the templates and renders each against sample notifications, the shared
    /// overrides too (whether a channel uses them yet or not).
    pub fn check(config: &NotifierConfig) -> Result<(), (String, String)> {
        let mut templates = Self::build(config)?;
        let mut env = (*templates.env).clone();
        for (part, source) in &config.templates {
            env.add_template_owned(template_name("shared", part), source.clone())
                .map_err(|e| (format!("templates.{part}"), describe(&e)))?;
        }
        templates.env = Arc::new(env);
        let mut bare = Notification::sample();
        for alert in &mut bare.alerts {
            alert.annotations.clear();
            alert.generator_url.clear();
        }
        bare.common_annotations.clear();
        bare.external_url.clear();
        for sample in [Arc::new(Notification::sample()), Arc::new(bare.clone())] {
            let all: Vec<usize> = (0..sample.alerts.len()).collect();
            let context =
                templates.context(&sample, &all, "shared", Some("https://example.com/ack"));
            for part in config.templates.keys() {
                templates
                    .env
                    .get_template(&template_name("shared", part))
                    .and_then(|t| t.render(&context))
                    .map_err(|e| (format!("templates.{part}"), describe(&e)))?;
            }
        }
        for (name, channel) in &config.channels {
            let Ok(kind) = channel.kind() else { continue };
            for sample in [Arc::new(Notification::sample()), Arc::new(bare.clone())] {
                let all: Vec<usize> = (0..sample.alerts.len()).collect();
                let context =
                    templates.context(&sample, &all, name, Some("https://example.com/ack"));
                for part in kind.template_parts() {
                    let key = if channel.templates.contains_key(*part) {
                        format!("channels.{name}.templates.{part}")
                    } else {
                        format!("templates.{part}")
                    };
                    templates
                        .env
                        .get_template(&template_name(name, part))
                        .and_then(|t| t.render(&context))
                        .map_err(|e| (key, describe(&e)))?;
                }
            }
        }
        Ok(())
    }

    /// The values a template sees for `alerts` (indices into the notification's alerts).
    pub fn context(
        &self,
        notification: &Arc<Notification>,
        alerts: &[usize],
        channel: &str,
        ack_url: Option<&str>,
    ) -> MessageContext {
        let max = self.listed.get(channel).copied().unwrap_or(20);
        MessageContext::new(notification, alerts, channel, max, ack_url)
    }

    /// Renders one part. A template that fails at run time (it passed the check, so the
    /// data is unusual) falls back to the built-in one, so that the message still goes out.
    pub fn render(
        &self,
        kind: ChannelKind,
        channel: &str,
        part: &str,
        context: &MessageContext,
    ) -> String {
        let render = |name: &str| self.env.get_template(name).and_then(|t| t.render(context));
        match render(&template_name(channel, part)) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(channel, part, error = %describe(&error), "Template failed; the built-in one is used.");
                render(&template_name(&format!("builtin-{}", kind.as_str()), part))
                    .unwrap_or_else(|_| context.title.clone())
            }
        }
    }
}

fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// One alert as templates and channels see it: a view of the notification's own alert,
/// with the annotations a message shows picked out.
#[derive(Debug, Clone, Copy)]
pub struct AlertContext<'a> {
    alert: &'a Alert,
}

impl<'a> AlertContext<'a> {
    fn annotation(&self, names: &[&str]) -> &'a str {
        names
            .iter()
            .find_map(|n| self.alert.annotations.get(*n).filter(|v| !v.is_empty()))
            .map_or("", String::as_str)
    }

    /// `firing` or `resolved`.
    pub fn status(&self) -> Status {
        self.alert.status
    }

    /// `alertname`.
    pub fn name(&self) -> &'a str {
        self.alert.name()
    }

    /// Labels.
    pub fn labels(&self) -> &'a LabelSet {
        &self.alert.labels
    }

    /// Annotations.
    pub fn annotations(&self) -> &'a LabelSet {
        &self.alert.annotations
    }

    /// The `summary` annotation (or `title`), else the alert name.
    pub fn summary(&self) -> &'a str {
        let summary = self.annotation(&["summary", "title"]);
        if summary.is_empty() {
            self.name()
        } else {
            summary
        }
    }

    /// The `description` annotation (or `message`).
    pub fn description(&self) -> &'a str {
        self.annotation(&["description", "message"])
    }

    /// The `runbook_url` annotation (or `runbook`).
    pub fn runbook_url(&self) -> &'a str {
        self.annotation(&["runbook_url", "runbook"])
    }

    /// Link to the rule in Prometheus.
    pub fn generator_url(&self) -> &'a str {
        &self.alert.generator_url
    }

    /// Start time.
    pub fn starts_at(&self) -> &'a str {
        &self.alert.starts_at
    }

    /// End time (resolved alerts).
    pub fn ends_at(&self) -> &'a str {
        &self.alert.ends_at
    }

    /// Alertmanager's fingerprint.
    pub fn fingerprint(&self) -> &'a str {
        &self.alert.fingerprint
    }
}

impl Serialize for AlertContext<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("AlertContext", 11)?;
        s.serialize_field("status", &self.status())?;
        s.serialize_field("name", self.name())?;
        s.serialize_field("labels", self.labels())?;
        s.serialize_field("annotations", self.annotations())?;
        s.serialize_field("summary", self.summary())?;
        s.serialize_field("description", self.description())?;
        s.serialize_field("runbook_url", self.runbook_url())?;
        s.serialize_field("generator_url", self.generator_url())?;
        s.serialize_field("starts_at", self.starts_at())?;
        s.serialize_field("ends_at", self.ends_at())?;
        s.serialize_field("fingerprint", self.fingerprint())?;
        s.end()
    }
}

/// Some of a message's alerts (all, the firing ones, the ones listed): a range of one
/// shared order over the notification's alerts, never copies of them. Templates read it
/// as a list whose alerts are made as they are looked at, so that a message of thousands
/// of alerts costs its indices, not a second copy of every alert per channel and part.
#[derive(Debug, Clone)]
pub struct AlertList {
    notification: Arc<Notification>,
    order: Arc<[usize]>,
    range: std::ops::Range<usize>,
}

impl AlertList {
    /// How many.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// None.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The alert at `position`.
    pub fn get(&self, position: usize) -> Option<AlertContext<'_>> {
        let index = self.order.get(self.range.clone())?.get(position)?;
        self.notification
            .alerts
            .get(*index)
            .map(|alert| AlertContext { alert })
    }

    /// The first.
    pub fn first(&self) -> Option<AlertContext<'_>> {
        self.get(0)
    }

    /// Each in order.
    pub fn iter(&self) -> impl Iterator<Item = AlertContext<'_>> {
        self.order[self.range.clone()]
            .iter()
            .filter_map(|&i| self.notification.alerts.get(i))
            .map(|alert| AlertContext { alert })
    }
}

impl Serialize for AlertList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if minijinja::value::serializing_for_value() {
            return minijinja::Value::from_object(self.clone()).serialize(serializer);
        }
        serializer.collect_seq(self.iter())
    }
}

impl minijinja::value::Object for AlertList {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.get(key.as_usize()?)
            .map(minijinja::Value::from_serialize)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Seq(self.len())
    }
}

/// Alerts not listed one by one, counted by name and status.
#[derive(Debug, Clone, Serialize)]
pub struct Unlisted {
    /// `alertname`.
    pub name: String,
    /// `firing` or `resolved`.
    pub status: Status,
    /// How many.
    pub count: usize,
}

/// Counts of a message's alerts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    /// Firing.
    pub firing: usize,
    /// Resolved.
    pub resolved: usize,
    /// Both.
    pub total: usize,
}

/// Everything a template can use.
#[derive(Debug, Clone, Serialize)]
pub struct MessageContext {
    /// `firing` when any of this message's alerts fires.
    pub status: Status,
    /// Alertmanager's receiver.
    pub receiver: String,
    /// The group key.
    pub group_key: String,
    /// Grouping labels.
    pub group_labels: LabelSet,
    /// Labels the alerts share.
    pub common_labels: LabelSet,
    /// Annotations the alerts share.
    pub common_annotations: LabelSet,
    /// The values of the grouping labels, space-separated.
    pub group_label_values: String,
    /// The sending Alertmanager.
    pub external_url: String,
    /// Why Alertmanager sent it, when it says.
    pub notification_reason: Option<String>,
    /// Alerts Alertmanager left out.
    pub truncated_alerts: u64,
    /// This message's alerts, firing first.
    pub alerts: AlertList,
    /// The firing ones.
    pub firing: AlertList,
    /// The resolved ones.
    pub resolved: AlertList,
    /// The ones listed one by one (firing first).
    pub listed: AlertList,
    /// The rest, counted by name.
    pub unlisted: Vec<Unlisted>,
    /// How many alerts `unlisted` covers.
    pub unlisted_count: usize,
    /// Counts.
    pub counts: Counts,
    /// The channel rendering it.
    pub channel: String,
    /// The default title (`[FIRING:2] ...`).
    pub title: String,
    /// A signed acknowledgement link, when escalation is on.
    pub ack_url: Option<String>,
    /// A signed link taking an acknowledgement back (in the announcement of one).
    pub unack_url: Option<String>,
    /// What the message is about besides the alerts: an incident's step, an
    /// acknowledgement, a maintenance window's summary.
    pub event: Option<EventContext>,
}

/// What templates see of a delivery's event.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EventContext {
    /// opened, escalated, repeated, update, status, resolved, acknowledged, unacknowledged or
    /// summary.
    pub kind: &'static str,
    /// The incident.
    pub incident: Option<i64>,
    /// Its escalation policy.
    pub policy: Option<String>,
    /// The level told, from 1.
    pub level: Option<u32>,
    /// The level's name.
    pub level_name: Option<String>,
    /// Who acknowledged (or took it back).
    pub by: Option<String>,
    /// The maintenance window summarized.
    pub window: Option<String>,
    /// Notifications the window held.
    pub held: usize,
    /// One line saying what happened.
    pub headline: String,
    /// A short tag for titles (`ESCALATED L2`, `ACKNOWLEDGED`, `MAINTENANCE ENDED`).
    pub label: String,
    /// The acknowledgement link.
    pub ack_url: Option<String>,
    /// The link taking an acknowledgement back.
    pub unack_url: Option<String>,
    /// The person this message is for, when an escalation level's target is an on-call
    /// schedule: whoever was on call when the level fired.
    pub recipient: Option<Recipient>,
    /// The level's on-call schedule, when the message concerns it: the recipient is on call
    /// in it, or nobody was.
    pub schedule: Option<String>,
    /// Nobody was on call in `schedule`: the level's own channels are told instead.
    pub nobody_on_call: bool,
}

/// A person told through one of their own contacts: each channel renders it its own way
/// (an email's `To`, a Slack member mention, a Teams mention, a webhook's JSON field).
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The person's key in the configuration.
    pub person: String,
    /// Their name as messages show it.
    pub name: String,
    /// Their address on the channel rendering the message (an email address, a Slack
    /// member id, a Teams user's principal name), when the channel needs one.
    pub contact: Option<String>,
}

impl EventContext {
    /// The context of `event`; `held`: notifications a summary covers.
    pub fn new(event: &crate::incident::Event, held: usize) -> Self {
        use crate::incident::{Event, Step};
        match event {
            Event::Incident {
                incident,
                policy,
                level,
                level_name,
                step,
                by,
                person,
                schedule,
                ..
            } => {
                let who = level_name.as_ref().map_or_else(
                    || format!("level {level}"),
                    |n| format!("level {level} ({n})"),
                );
                let (kind, label, headline) = match step {
                    Step::Opened => (
                        "opened",
                        String::new(),
                        format!("Incident {incident} opened; {who} of policy {policy} is told."),
                    ),
                    Step::Escalated => (
                        "escalated",
                        format!("ESCALATED L{level}"),
                        format!(
                            "Incident {incident} escalated to {who} of policy {policy}: nobody acknowledged it in time."
                        ),
                    ),
                    Step::Repeated => (
                        "repeated",
                        format!("STILL UNACKNOWLEDGED L{level}"),
                        format!(
                            "Incident {incident} is still unacknowledged; {who} is told again."
                        ),
                    ),
                    Step::Update => (
                        "update",
                        String::new(),
                        format!("Incident {incident} changed ({who} of policy {policy})."),
                    ),
                    Step::Resolved => (
                        "resolved",
                        String::new(),
                        match by {
                            Some(by) => format!("Incident {incident} was resolved by hand by {by}."),
                            None => format!("Incident {incident} resolved."),
                        },
                    ),
                    Step::Status => (
                        "status",
                        "STILL OPEN".into(),
                        format!(
                            "Status update: incident {incident} is still open and unacknowledged; {who} of policy {policy} has been told."
                        ),
                    ),
                };
                let nobody_on_call = schedule.is_some() && person.is_none();
                let headline = match schedule {
                    Some(schedule) if nobody_on_call => format!(
                        "{headline} Nobody was on call in schedule {schedule}: this level's channels are told instead."
                    ),
                    _ => headline,
                };
                Self {
                    kind,
                    incident: Some(*incident),
                    policy: Some(policy.clone()),
                    level: Some(*level),
                    level_name: level_name.clone(),
                    by: by.clone(),
                    headline,
                    label,
                    schedule: schedule.clone(),
                    nobody_on_call,
                    ..Self::default()
                }
            }
            Event::Acknowledged {
                incident,
                policy,
                by,
                ..
            } => Self {
                kind: "acknowledged",
                incident: Some(*incident),
                policy: Some(policy.clone()),
                by: Some(by.clone()),
                headline: format!(
                    "Incident {incident} was acknowledged by {by}; escalation stopped."
                ),
                label: "ACKNOWLEDGED".into(),
                ..Self::default()
            },
            Event::Unacknowledged {
                incident,
                policy,
                by,
                ..
            } => Self {
                kind: "unacknowledged",
                incident: Some(*incident),
                policy: Some(policy.clone()),
                by: Some(by.clone()),
                headline: format!(
                    "{by} took back the acknowledgement of incident {incident}; escalation goes on."
                ),
                label: "UNACKNOWLEDGED".into(),
                ..Self::default()
            },
            Event::Summary { window, .. } => Self {
                kind: "summary",
                window: Some(window.clone()),
                held,
                headline: format!(
                    "Maintenance window {window} ended. It held {held} notification{}; below, what still fires and what resolved during it.",
                    if held == 1 { "" } else { "s" }
                ),
                label: "MAINTENANCE ENDED".into(),
                ..Self::default()
            },
        }
    }
}

impl EventContext {
    /// The context of a message for one person: `contact` is their address on the
    /// channel, when the current configuration still gives one; without it the message
    /// goes to the channel's own recipients, and says for whom it was meant.
    pub fn for_recipient(mut self, recipient: Recipient, known: bool) -> Self {
        let name = &recipient.name;
        let addition = match (&self.schedule, known) {
            (_, false) => format!(
                " It was meant for {name}, who has no contact on this channel in the configuration now; it goes to the channel's own recipients."
            ),
            (Some(schedule), true) => format!(" To {name}, on call in schedule {schedule}."),
            (None, true) => format!(" To {name}, told of this incident as the person on call."),
        };
        self.headline.push_str(&addition);
        self.recipient = Some(recipient);
        self
    }
}

impl MessageContext {
    /// The context with an event: its tag in front of the title, its links.
    pub fn with_event(mut self, event: EventContext) -> Self {
        if !event.label.is_empty() {
            self.title = format!("[{}] {}", event.label, self.title);
        }
        if event.ack_url.is_some() {
            self.ack_url.clone_from(&event.ack_url);
        }
        self.unack_url.clone_from(&event.unack_url);
        self.event = Some(event);
        self
    }
}

/// Alerts counted by name and status, in the order each pair first appears.
fn count_by_name<'a>(alerts: impl Iterator<Item = &'a Alert>) -> Vec<Unlisted> {
    let mut counted: Vec<Unlisted> = Vec::new();
    for alert in alerts {
        match counted
            .iter_mut()
            .find(|u| u.name == alert.name() && u.status == alert.status)
        {
            Some(u) => u.count += 1,
            None => counted.push(Unlisted {
                name: alert.name().to_owned(),
                status: alert.status,
                count: 1,
            }),
        }
    }
    counted
}

impl MessageContext {
    /// The context of `alerts` (indices into the notification's) listing every one: for
    /// what is not a channel's message, such as a remediation action's request.
    pub fn all(notification: &Arc<Notification>, alerts: &[usize]) -> Self {
        Self::new(notification, alerts, "", usize::MAX, None)
    }

    /// The alerts after the first `listed` (firing first), counted by name and status as
    /// `unlisted` counts those after `listed`: for a channel that must list fewer to fit.
    pub fn unlisted_after(&self, listed: usize) -> Vec<Unlisted> {
        count_by_name(self.alerts.iter().skip(listed).map(|a| a.alert))
    }

    fn new(
        notification: &Arc<Notification>,
        alerts: &[usize],
        channel: &str,
        max_listed: usize,
        ack_url: Option<&str>,
    ) -> Self {
        let mut order: Vec<usize> = alerts
            .iter()
            .copied()
            .filter(|&i| i < notification.alerts.len())
            .collect();
        // Firing first; Alertmanager's own order (job, instance, labels) within each.
        order.sort_by_key(|&i| notification.alerts[i].status != Status::Firing);
        let firing_count = order
            .iter()
            .take_while(|&&i| notification.alerts[i].status == Status::Firing)
            .count();
        let total = order.len();
        let listed_count = total.min(max_listed);
        let unlisted = count_by_name(
            order[listed_count..]
                .iter()
                .map(|&i| &notification.alerts[i]),
        );
        let order: Arc<[usize]> = order.into();
        let list = |range: std::ops::Range<usize>| AlertList {
            notification: notification.clone(),
            order: order.clone(),
            range,
        };
        let counts = Counts {
            firing: firing_count,
            resolved: total - firing_count,
            total,
        };
        let status = if counts.firing > 0 {
            Status::Firing
        } else {
            Status::Resolved
        };
        let group_label_values = notification
            .group_labels
            .values()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        let mut title = format!("[{}", status.as_str().to_uppercase());
        if status == Status::Firing {
            title.push_str(&format!(":{}", counts.firing));
        }
        title.push_str("] ");
        title.push_str(if group_label_values.is_empty() {
            &notification.receiver
        } else {
            &group_label_values
        });
        Self {
            status,
            receiver: notification.receiver.clone(),
            group_key: notification.group_key.clone(),
            group_labels: notification.group_labels.clone(),
            common_labels: notification.common_labels.clone(),
            common_annotations: notification.common_annotations.clone(),
            group_label_values,
            external_url: notification.external_url.clone(),
            notification_reason: notification.notification_reason.clone(),
            truncated_alerts: notification.truncated_alerts,
            unlisted_count: total - listed_count,
            alerts: list(0..total),
            firing: list(0..firing_count),
            resolved: list(firing_count..total),
            listed: list(0..listed_count),
            unlisted,
            counts,
            channel: channel.to_owned(),
            title,
            ack_url: ack_url.map(str::to_owned),
            unack_url: None,
            event: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Result<NotifierConfig, String> {
        NotifierConfig::parse(text, Path::new("/etc/notifier.yml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_template_error_is_a_config_error_at_its_line() {
        let error = config(
            "channels:\n  chat:\n    slack:\n      url: https://hooks.example.com/x\n    templates:\n      title: '{{ status '\n",
        )
        .expect_err("syntax");
        assert!(error.contains("/etc/notifier.yml:6:"), "{error}");
        assert!(error.contains("channels.chat.templates.title"), "{error}");
        let error =
            config("templates:\n  text: '{{ alerts|nosuchfilter }}'\n").expect_err("filter");
        assert!(error.contains("templates.text"), "{error}");
        assert!(error.contains("nosuchfilter"), "{error}");
        let error = config("templates:\n  text: '{{ \"x\" + 1 }}'\n").expect_err("runtime");
        assert!(error.contains("templates.text"), "{error}");
    }

    #[test]
    fn fifty_alerts_stay_readable_in_slack() {
        let config =
            config("channels:\n  chat:\n    slack:\n      url: https://hooks.example.com/x\n")
                .expect("config");
        let templates = Templates::build(&config).expect("build");
        let mut notification = Notification::sample();
        let template = notification.alerts[0].clone();
        notification.alerts = (0..50)
            .map(|i| {
                let mut a = template.clone();
                a.labels.insert("instance".into(), format!("mcp-{i}:3001"));
                if i % 10 == 0 {
                    a.labels.insert("alertname".into(), "ProviderDown".into());
                }
                a
            })
            .collect();
        let all: Vec<usize> = (0..50).collect();
        let context = templates.context(&Arc::new(notification), &all, "chat", None);
        assert_eq!(context.title, "[FIRING:50] McpwatchTestNotification");
        let text = templates.render(ChannelKind::Slack, "chat", "text", &context);
        assert_eq!(text.matches(":red_circle:").count(), 10, "{text}");
        assert!(text.contains("…and 40 more: "), "{text}");
        assert!(text.contains("ProviderDown ×"), "{text}");
        assert!(text.len() < 4000, "{} bytes", text.len());
    }

    #[test]
    fn html_is_escaped_and_slack_text_too() {
        let config = config(
            "channels:\n  mail:\n    email: {smarthost: 'mx:587', from: a@example.com, to: [b@example.com]}\n  chat:\n    slack: {url: 'https://hooks.example.com/x'}\n",
        )
        .expect("config");
        let templates = Templates::build(&config).expect("build");
        let mut notification = Notification::sample();
        notification.alerts[0]
            .annotations
            .insert("summary".into(), "<script>x</script> & more".into());
        let context = templates.context(&Arc::new(notification), &[0], "mail", None);
        let html = templates.render(ChannelKind::Email, "mail", "html", &context);
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let text = templates.render(ChannelKind::Slack, "chat", "text", &context);
        assert!(
            text.contains("&lt;script&gt;x&lt;/script&gt; &amp; more"),
            "{text}"
        );
    }
}
