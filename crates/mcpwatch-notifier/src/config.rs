//! The notifier's YAML configuration. Unknown keys are errors; every error names the file,
//! the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcpwatch_core::Secret;
use mcpwatch_core::config::{
    ConfigError, ConfigPath, Problem, SecretFile, duration, load_yaml_checked, secret_setting,
};
use serde::{Deserialize, Deserializer};

use crate::matcher::Matcher;

/// The configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// `POST /webhook`.
    #[serde(default)]
    pub receiver: ReceiverConfig,
    /// The admin API under `/api/v1/`.
    #[serde(default)]
    pub api: ApiConfig,
    /// Where notifications and delivery state live.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Retries, dead letters, timeouts.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Template overrides shared by every channel (a channel's own win).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Named channels. A `log` channel to standard output exists unless one is defined.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    /// The routing tree.
    #[serde(default)]
    pub route: RouteConfig,
    /// Escalation policies, chosen by a route's `escalation`.
    #[serde(default)]
    pub escalation_policies: BTreeMap<String, EscalationPolicyConfig>,
    /// Acknowledgement links in messages.
    #[serde(default)]
    pub acknowledgement: Option<AcknowledgementConfig>,
    /// Named time intervals, in Alertmanager's `time_intervals` format.
    #[serde(default)]
    pub time_intervals: Vec<NamedTimeInterval>,
    /// Recurring maintenance windows (one-off windows are added through the API).
    #[serde(default)]
    pub maintenance_windows: Vec<MaintenanceWindowConfig>,
    /// The severity scale: what an alert's `severity` label means.
    #[serde(default)]
    pub severities: crate::severity::SeverityConfig,
    /// The public status page (`/status`, `/status.json`); off when unset.
    #[serde(default)]
    pub status_page: Option<crate::statuspage::StatusPageConfig>,
    /// The web UI under `/ui/`.
    #[serde(default)]
    pub ui: UiConfig,
    /// Remediation actions, named by a route's `remediation`.
    #[serde(default)]
    pub remediations: BTreeMap<String, RemediationConfig>,
    /// What every remediation action shares: the commands they may run.
    #[serde(default)]
    pub remediation: RemediationSettings,
    /// The people on-call schedules name, by key, with their own contacts.
    #[serde(default)]
    pub people: BTreeMap<String, PersonConfig>,
    /// On-call schedules, by name: an escalation level's `schedule` tells whoever is on
    /// call in it.
    #[serde(default)]
    pub schedules: BTreeMap<String, ScheduleConfig>,
}

/// `ui`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// The key the UI's forms are signed with (CSRF tokens, HMAC-SHA256); without one each
    /// process picks a random key, so replicas behind one address need the same key.
    pub csrf_secret: Option<Secret>,
    /// A file holding the key.
    pub csrf_secret_file: Option<SecretFile>,
}

impl UiConfig {
    /// The configured key, if one is.
    pub fn csrf_secret(&self) -> Result<Option<Secret>, String> {
        let secret = secret_setting(
            "csrf_secret",
            self.csrf_secret.clone(),
            self.csrf_secret_file.clone(),
        )?;
        if secret
            .as_ref()
            .is_some_and(|s| s.expose().trim().len() < 16)
        {
            return Err("must be at least 16 characters".into());
        }
        Ok(secret)
    }
}

/// `remediation`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationSettings {
    /// The only programs a `command` action may run, as absolute paths: an action whose
    /// `argv[0]` is not one of them is refused.
    pub allowed_commands: Vec<String>,
}

/// One of `remediations`: exactly one of `http` and `command`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    /// An HTTP request, its body a template, optionally signed.
    #[serde(default)]
    pub http: Option<HttpActionConfig>,
    /// A program of `remediation.allowed_commands` with a fixed argv.
    #[serde(default)]
    pub command: Option<CommandActionConfig>,
}

/// `remediations.<name>.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionConfig {
    /// Where the request goes (a secret: URLs often carry tokens).
    #[serde(default)]
    pub url: Option<Secret>,
    /// The URL, read from a file.
    #[serde(default)]
    pub url_file: Option<SecretFile>,
    /// `POST` (default), `PUT`, `PATCH`, `GET` or `DELETE`.
    #[serde(default = "post")]
    pub method: String,
    /// Request headers (values are kept as secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The body: a template of what channel templates see, with `action` and `incident`.
    #[serde(default)]
    pub body: Option<String>,
    /// Signs each request with HMAC-SHA256.
    #[serde(default)]
    pub hmac: Option<HmacConfig>,
    /// The longest the request may take.
    #[serde(default = "remediation_timeout", with = "duration")]
    pub timeout: Duration,
    /// The answer's body kept in the report, in bytes.
    #[serde(default = "remediation_output")]
    pub max_output_bytes: usize,
    /// Certificate checks.
    #[serde(default)]
    pub tls_config: ClientTlsConfig,
}

/// `remediations.<name>.http.hmac`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// The key.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// The key, read from a file.
    #[serde(default)]
    pub secret_file: Option<SecretFile>,
    /// The header carrying `sha256=<hex>`.
    #[serde(default = "signature_header")]
    pub header: String,
    /// The header carrying the Unix time (seconds) that was signed with the body.
    #[serde(default = "timestamp_header")]
    pub timestamp_header: String,
}

impl HmacConfig {
    /// The key.
    pub fn secret(&self) -> Result<Secret, String> {
        let key = secret_setting("secret", self.secret.clone(), self.secret_file.clone())?
            .ok_or_else(|| "set secret or secret_file".to_owned())?;
        if key.expose().is_empty() {
            return Err("must not be empty".into());
        }
        Ok(key)
    }
}

/// `remediations.<name>.command`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandActionConfig {
    /// The program (an absolute path in `remediation.allowed_commands`) and its arguments;
    /// `{name}` in an argument is the value of variable `name` (`{{` and `}}` are braces).
    pub argv: Vec<String>,
    /// The values alerts may put in the arguments, each validated by its pattern.
    #[serde(default)]
    pub variables: BTreeMap<String, VariableConfig>,
    /// The longest it may run; then its whole process group is killed.
    #[serde(default = "remediation_timeout", with = "duration")]
    pub timeout: Duration,
    /// Standard output and error kept in the report, together, in bytes.
    #[serde(default = "remediation_output")]
    pub max_output_bytes: usize,
    /// Where it runs (an absolute path; default `/`).
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Its environment (values kept as secrets); nothing is inherited, `PATH` is
    /// `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` unless set here.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
}

/// `remediations.<name>.command.variables.<variable>`: exactly one of `label` and
/// `annotation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableConfig {
    /// The label whose value it is.
    #[serde(default)]
    pub label: Option<String>,
    /// The annotation whose value it is.
    #[serde(default)]
    pub annotation: Option<String>,
    /// A regular expression the whole value must match.
    #[serde(default = "variable_pattern")]
    pub pattern: String,
}

/// The pattern of a variable that sets none: letters, digits and `_.:-`, 1 to 128 of them.
pub const DEFAULT_VARIABLE_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,128}$";

fn post() -> String {
    "POST".to_owned()
}

fn remediation_timeout() -> Duration {
    Duration::from_secs(30)
}

fn remediation_output() -> usize {
    64 << 10
}

fn signature_header() -> String {
    "X-Mcpwatch-Signature".to_owned()
}

fn timestamp_header() -> String {
    "X-Mcpwatch-Timestamp".to_owned()
}

fn variable_pattern() -> String {
    DEFAULT_VARIABLE_PATTERN.to_owned()
}

/// One of `people`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonConfig {
    /// The name messages and the API show (the key when absent).
    #[serde(default)]
    pub name: Option<String>,
    /// How to reach them: one contact per channel.
    pub contacts: Vec<ContactConfig>,
}

/// One of a person's `contacts`: a configured channel, and their address on it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactConfig {
    /// The channel (as under `channels`).
    pub channel: String,
    /// Their email address, for an email channel: mail goes to it instead of the channel's
    /// `to`.
    #[serde(default)]
    pub address: Option<String>,
    /// Their Slack member id (`U012AB3CD`), for a Slack channel: the message mentions them.
    #[serde(default)]
    pub slack_member: Option<String>,
    /// Their Teams user principal name or id, for a Teams channel.
    #[serde(default)]
    pub teams_user: Option<String>,
}

/// One of `schedules`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The IANA time zone handoffs are read in, such as `Europe/Berlin`.
    pub time_zone: String,
    /// Rotations, each taking over from the one before it at its start.
    #[serde(default)]
    pub rotations: Vec<RotationConfig>,
    /// Someone else on call for a while; a later one wins where two overlap.
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
}

/// One of a schedule's `rotations`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Shown in the API and the calendar.
    #[serde(default)]
    pub name: Option<String>,
    /// The people taking turns, in order (keys of `people`).
    pub members: Vec<String>,
    /// `daily`, `weekly`, or a shift length of at least an hour such as `12h`.
    pub every: String,
    /// When shifts hand over, on the schedule's wall clock: `09:00`, or for a weekly
    /// rotation a weekday and a time, `Mon 09:00`.
    pub handoff: String,
    /// A date (`2026-03-02`): the first member's first shift starts at the first handoff on
    /// or after it.
    pub start: String,
}

/// One of a schedule's `overrides`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// Who is on call instead (a key of `people`).
    pub person: String,
    /// From when, RFC 3339 with an offset (`2026-03-28T18:00:00+01:00`).
    pub from: String,
    /// Until when, excluded.
    pub until: String,
    /// Why, shown in the API and the calendar.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One of `escalation_policies`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicyConfig {
    /// Levels, told in order while the incident fires unacknowledged.
    pub levels: Vec<EscalationLevelConfig>,
    /// Tell the last level again this often until someone acknowledges.
    #[serde(default, deserialize_with = "optional_duration")]
    pub repeat_last_level: Option<Duration>,
    /// When an incident opens with a remediation action, tell the first level only once
    /// the action has ended (and not at all if the alerts resolved meanwhile).
    #[serde(default)]
    pub wait_for_remediation: bool,
}

/// One level of a policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevelConfig {
    /// Who this level is (shown in messages and the API), e.g. `senior engineer`.
    #[serde(default)]
    pub name: Option<String>,
    /// How long after the previous level was told this one is (not for the first level).
    #[serde(default, deserialize_with = "optional_duration")]
    pub after: Option<Duration>,
    /// The channels this level is told through.
    #[serde(default)]
    pub channels: Vec<String>,
    /// An on-call schedule: whoever is on call in it when the level is told hears it
    /// through their own contacts.
    #[serde(default)]
    pub schedule: Option<String>,
}

/// `acknowledgement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgementConfig {
    /// The notifier's address as people reach it (links start with it).
    pub external_url: String,
    /// The key links are signed with (HMAC-SHA256).
    pub secret: Option<Secret>,
    /// A file holding the key.
    pub secret_file: Option<SecretFile>,
    /// How long a link works.
    #[serde(default = "default_link_ttl", with = "duration")]
    pub link_ttl: Duration,
}

fn default_link_ttl() -> Duration {
    Duration::from_secs(86_400)
}

impl AcknowledgementConfig {
    /// The signing key.
    pub fn secret(&self) -> Result<Secret, String> {
        let secret = secret_setting("secret", self.secret.clone(), self.secret_file.clone())?
            .ok_or_else(|| "set secret or secret_file".to_owned())?;
        if secret.expose().trim().len() < 16 {
            return Err("must be at least 16 characters".into());
        }
        Ok(secret)
    }
}

/// One of `time_intervals`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedTimeInterval {
    /// Its name.
    pub name: String,
    /// Its specs; a time within any of them is within the interval.
    pub time_intervals: Vec<crate::timeinterval::SpecConfig>,
}

/// One of `maintenance_windows`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindowConfig {
    /// Its name (how held notifications and the summary refer to it).
    pub name: String,
    /// The `time_intervals` it is active in.
    pub time_intervals: Vec<String>,
    /// The alerts it holds (all when empty).
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Hold critical alerts too (by default they pass).
    #[serde(default)]
    pub hold_critical: bool,
}

/// `receiver`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverConfig {
    /// What Alertmanager's `http_config` must send.
    pub auth: Option<AuthConfig>,
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            auth: None,
            max_body_bytes: 4 << 20,
        }
    }
}

/// `api`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// What callers of `/api/v1/` must send (besides the web configuration's basic auth).
    pub auth: Option<AuthConfig>,
}

/// Bearer token or basic auth, as Alertmanager's `http_config` sends either.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// The token, read from a file.
    pub bearer_token_file: Option<SecretFile>,
    /// `Authorization: Basic ...`.
    pub basic_auth: Option<BasicAuthConfig>,
}

/// `basic_auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Password, read from a file.
    #[serde(default)]
    pub password_file: Option<SecretFile>,
}

/// `storage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The SQLite database file (created with its directory).
    pub path: ConfigPath,
    /// A copy arriving within this time of the first is a duplicate.
    #[serde(with = "duration")]
    pub dedup_window: Duration,
    /// Delivered and dead notifications are deleted after this long.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// PostgreSQL instead of the SQLite file: one state shared by several replicas.
    pub postgres: Option<PostgresStorage>,
}

/// `storage.postgres`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStorage {
    /// The connection string (libpq's keywords or a URL, `sslmode` and `sslrootcert`
    /// included).
    pub dsn: Option<Secret>,
    /// A file holding the connection string (a mounted secret).
    pub dsn_file: Option<SecretFile>,
    /// Connections each replica opens at most.
    #[serde(default = "default_pg_connections")]
    pub max_connections: usize,
}

fn default_pg_connections() -> usize {
    8
}

impl PostgresStorage {
    /// The connection string, from `dsn` or `dsn_file`.
    pub fn dsn(&self) -> Result<Secret, SetupError> {
        secret_setting("dsn", self.dsn.clone(), self.dsn_file.clone())
            .and_then(|dsn| dsn.ok_or_else(|| "set dsn or dsn_file".to_owned()))
            .map_err(|message| SetupError::new("storage.postgres", message))
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: ConfigPath::from(PathBuf::from("./data/notifier.db")),
            dedup_window: Duration::from_secs(3600),
            retention: Duration::from_secs(7 * 86_400),
            postgres: None,
        }
    }
}

/// The default of `delivery.max_in_flight_bytes`: two bodies of the largest size
/// `receiver.max_body_bytes` takes by default. In flight (parsed, and the bodies its
/// channels send) a notification takes well over ten times its JSON: a 3.9 MB one to five
/// channels, some 65 MB. Two of them stay far within the 512 MiB the shipped Kubernetes
/// manifest allows, while a thousand ordinary notifications of a few kilobytes fit.
pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 8 << 20;

/// `delivery` (and each channel's own overrides).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// The backoff between attempts.
    pub retry: RetryConfig,
    /// A notification still undelivered this long after it arrived becomes a dead letter.
    #[serde(with = "duration")]
    pub dead_letter_after: Duration,
    /// The longest one attempt may take.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Deliveries in flight at once, over all channels.
    pub concurrency: usize,
    /// Deliveries in flight at once to one channel (a `log` channel takes at least 16).
    pub max_in_flight_per_channel: usize,
    /// The payload JSON of the notifications being delivered, in bytes, counted once per
    /// notification however many channels it goes to. While it is reached no more
    /// deliveries are claimed; a notification larger than this still goes, alone.
    pub max_in_flight_bytes: usize,
    /// How long a stopping notifier waits for the deliveries in flight.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// How often the store is looked at without being woken: retries come due, escalations,
    /// maintenance windows ending, and work another replica stored.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry: RetryConfig::default(),
            dead_letter_after: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(30),
            concurrency: 16,
            max_in_flight_per_channel: 4,
            max_in_flight_bytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
            shutdown_grace: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// `retry`: exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Wait before the second attempt.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Each wait is this many times the one before.
    pub multiplier: f64,
    /// Each wait varies randomly by up to this fraction either way.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryConfig {
    fn validate(&self) -> Result<(), Problem> {
        if self.initial_backoff.is_zero() {
            return Err(("initial_backoff".into(), "must be more than 0s".into()));
        }
        if self.max_backoff < self.initial_backoff {
            return Err((
                "max_backoff".into(),
                "must not be less than initial_backoff".into(),
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier <= 10.0) {
            return Err(("multiplier".into(), "must be between 1 and 10".into()));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(("jitter".into(), "must be between 0 and 1".into()));
        }
        Ok(())
    }
}

/// A per-channel rate limit: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Messages per second, sustained.
    pub per_second: f64,
    /// Messages sent at once after a quiet spell.
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// One named channel: exactly one of `email`, `slack`, `teams`, `pagerduty`, `webhook`,
/// `log`, and the settings every kind shares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Email over SMTP.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// A Slack incoming webhook.
    #[serde(default)]
    pub slack: Option<SlackConfig>,
    /// A Microsoft Teams Workflows webhook.
    #[serde(default)]
    pub teams: Option<TeamsConfig>,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty: Option<PagerDutyConfig>,
    /// A JSON POST to any URL.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Standard output or a file.
    #[serde(default)]
    pub log: Option<LogConfig>,
    /// Whether resolved notifications are sent too.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Overrides of `delivery.retry`.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Override of `delivery.dead_letter_after`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub dead_letter_after: Option<Duration>,
    /// Override of `delivery.timeout`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// At most this many messages per second (Slack's default: 1 per second, bursts of 3;
    /// Teams': 1 per second, bursts of 4).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Template overrides for this channel.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

/// What kind a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// `email`.
    Email,
    /// `slack`.
    Slack,
    /// `teams`.
    Teams,
    /// `pagerduty`.
    PagerDuty,
    /// `webhook`.
    Webhook,
    /// `log`.
    Log,
}

impl ChannelKind {
    /// The key naming it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::PagerDuty => "pagerduty",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Log => "log",
        }
    }

    /// The template parts this kind renders.
    pub fn template_parts(self) -> &'static [&'static str] {
        match self {
            ChannelKind::Email => &["subject", "text", "html"],
            ChannelKind::Slack => &["title", "text"],
            ChannelKind::Teams => &["title"],
            ChannelKind::PagerDuty => &["summary", "source"],
            ChannelKind::Webhook => &[],
            ChannelKind::Log => &["text"],
        }
    }
}

impl ChannelConfig {
    /// A `log` channel writing to standard output.
    pub fn stdout_log() -> Self {
        Self {
            log: Some(LogConfig::default()),
            send_resolved: true,
            ..Self::default()
        }
    }

    /// The kind, when exactly one is set.
    pub fn kind(&self) -> Result<ChannelKind, String> {
        let kinds: Vec<ChannelKind> = [
            (self.email.is_some(), ChannelKind::Email),
            (self.slack.is_some(), ChannelKind::Slack),
            (self.teams.is_some(), ChannelKind::Teams),
            (self.pagerduty.is_some(), ChannelKind::PagerDuty),
            (self.webhook.is_some(), ChannelKind::Webhook),
            (self.log.is_some(), ChannelKind::Log),
        ]
        .into_iter()
        .filter_map(|(set, kind)| set.then_some(kind))
        .collect();
        match kinds.as_slice() {
            [kind] => Ok(*kind),
            [] => Err("set one of email, slack, teams, pagerduty, webhook or log".into()),
            many => Err(format!(
                "set only one of {}",
                many.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Retry settings in force.
    pub fn retry(&self, defaults: &DeliveryConfig) -> RetryConfig {
        self.retry.unwrap_or(defaults.retry)
    }

    /// Dead-letter time in force.
    pub fn dead_letter_after(&self, defaults: &DeliveryConfig) -> Duration {
        self.dead_letter_after.unwrap_or(defaults.dead_letter_after)
    }

    /// Attempt timeout in force.
    pub fn timeout(&self, defaults: &DeliveryConfig) -> Duration {
        self.timeout.unwrap_or(defaults.timeout)
    }

    /// Rate limit in force: Slack asks for about one message a second; Teams takes at most
    /// 4 a second and 60 in 30 seconds, which one a second with bursts of 4 stays within.
    pub fn rate_limit(&self) -> Option<RateLimitConfig> {
        self.rate_limit.or_else(|| {
            let burst = match (&self.slack, &self.teams) {
                (Some(_), _) => 3,
                (_, Some(_)) => 4,
                _ => return None,
            };
            Some(RateLimitConfig {
                per_second: 1.0,
                burst,
            })
        })
    }

    /// Alerts listed one by one, when the channel's settings say.
    pub fn max_alerts_listed(&self) -> Option<usize> {
        self.slack
            .as_ref()
            .and_then(|s| s.max_alerts_listed)
            .or_else(|| self.teams.as_ref().and_then(|t| t.max_alerts_listed))
    }

    fn validate(&self) -> Result<(), Problem> {
        let kind = self.kind().map_err(|m| (String::new(), m))?;
        let within = |(k, m): Problem| (format!("{}.{k}", kind.as_str()), m);
        match kind {
            ChannelKind::Email => self
                .email
                .as_ref()
                .map_or(Ok(()), |c| c.validate().map_err(within)),
            ChannelKind::Slack => self
                .slack
                .as_ref()
                .map_or(Ok(()), |c| c.validate().map_err(within)),
            ChannelKind::Teams => self
                .teams
                .as_ref()
                .map_or(Ok(()), |c| c.validate().map_err(within)),
            ChannelKind::PagerDuty => self
                .pagerduty
                .as_ref()
                .map_or(Ok(()), |c| c.validate().map_err(within)),
            ChannelKind::Webhook => self
                .webhook
                .as_ref()
                .map_or(Ok(()), |c| c.validate().map_err(within)),
            ChannelKind::Log => Ok(()),
        }?;
        if let Some(retry) = &self.retry {
            retry
                .validate()
                .map_err(|(k, m)| (format!("retry.{k}"), m))?;
        }
        if let Some(limit) = &self.rate_limit
            && !(limit.per_second > 0.0 && limit.per_second.is_finite() && limit.burst >= 1)
        {
            return Err((
                "rate_limit".into(),
                "per_second must be more than 0 and burst at least 1".into(),
            ));
        }
        for part in self.templates.keys() {
            if !kind.template_parts().contains(&part.as_str()) {
                return Err((
                    format!("templates.{part}"),
                    format!(
                        "a {} channel has no template {part:?} (it has: {})",
                        kind.as_str(),
                        list_or_none(kind.template_parts())
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// TLS settings of an outgoing connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// CA certificates (PEM) to trust instead of the system's.
    pub ca_file: Option<ConfigPath>,
    /// Skip checking the server's certificate (test setups only).
    pub insecure_skip_verify: bool,
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all: only with `allow_insecure: true`.
    None,
}

/// `email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    /// The sender address (`Name <addr>` allowed).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// `starttls` (default), `implicit` (the default on port 465) or `none`.
    #[serde(default)]
    pub security: Option<SmtpSecurity>,
    /// Required to send without TLS.
    #[serde(default)]
    pub allow_insecure: bool,
    /// The name sent in EHLO (default: this host's name).
    #[serde(default)]
    pub hello: Option<String>,
    /// SMTP AUTH (PLAIN or LOGIN, after TLS).
    #[serde(default)]
    pub auth: Option<SmtpAuthConfig>,
    /// Certificate checks.
    #[serde(default)]
    pub tls_config: ClientTlsConfig,
}

/// `email.auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpAuthConfig {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Password, read from a file.
    #[serde(default)]
    pub password_file: Option<SecretFile>,
}

impl EmailConfig {
    /// Host and port of the smarthost.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let (host, port) = self
            .smarthost
            .rsplit_once(':')
            .ok_or_else(|| format!("{:?} is not host:port", self.smarthost))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{:?}: the port is not a number", self.smarthost))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{:?} has no host", self.smarthost));
        }
        Ok((host.to_owned(), port))
    }

    /// The security in force: implicit TLS on 465, STARTTLS elsewhere, unless set.
    pub fn security(&self) -> SmtpSecurity {
        self.security.unwrap_or_else(|| match self.host_port() {
            Ok((_, 465)) => SmtpSecurity::Implicit,
            _ => SmtpSecurity::Starttls,
        })
    }

    /// The AUTH password.
    pub fn password(&self) -> Result<Option<Secret>, String> {
        match &self.auth {
            None => Ok(None),
            Some(auth) => secret_setting(
                "password",
                auth.password.clone(),
                auth.password_file.clone(),
            ),
        }
    }

    fn validate(&self) -> Result<(), Problem> {
        self.host_port().map_err(|m| ("smarthost".into(), m))?;
        check_address(&self.from).map_err(|m| ("from".into(), m))?;
        if self.to.is_empty() {
            return Err(("to".into(), "name at least one recipient".into()));
        }
        for (i, to) in self.to.iter().enumerate() {
            check_address(to).map_err(|m| (format!("to[{i}]"), m))?;
        }
        if self.security() == SmtpSecurity::None && !self.allow_insecure {
            return Err((
                "security".into(),
                "mail without TLS sends passwords and alerts in clear text; set allow_insecure: true to allow it".into(),
            ));
        }
        if let Some(auth) = &self.auth {
            if self.security() == SmtpSecurity::None {
                return Err((
                    "auth".into(),
                    "SMTP AUTH would send the password in clear text; use security: starttls or implicit".into(),
                ));
            }
            match self.password() {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err((
                        "auth.password".into(),
                        "set password or password_file".into(),
                    ));
                }
                Err(m) => return Err(("auth.password".into(), m)),
            }
            if auth.username.is_empty() {
                return Err(("auth.username".into(), "must not be empty".into()));
            }
        }
        Ok(())
    }
}

impl ContactConfig {
    /// Their address on a channel of `kind`, when that kind needs one.
    pub fn address_for(&self, kind: ChannelKind) -> Option<&str> {
        match kind {
            ChannelKind::Email => self.address.as_deref(),
            ChannelKind::Slack => self.slack_member.as_deref(),
            ChannelKind::Teams => self.teams_user.as_deref(),
            ChannelKind::PagerDuty | ChannelKind::Webhook | ChannelKind::Log => None,
        }
    }

    /// Checks that the contact gives what a channel of `kind` needs, and nothing it cannot
    /// use.
    fn validate(&self, kind: ChannelKind) -> Result<(), Problem> {
        let (needed, field) = match kind {
            ChannelKind::Email => (true, "address"),
            ChannelKind::Slack => (true, "slack_member"),
            // A Teams mention names the user by their principal name (or Entra object id).
            ChannelKind::Teams => (true, "teams_user"),
            // PagerDuty routes by its own schedules; a webhook and a log carry the person's
            // key and name.
            ChannelKind::PagerDuty | ChannelKind::Webhook | ChannelKind::Log => (false, ""),
        };
        let given = [
            ("address", self.address.is_some()),
            ("slack_member", self.slack_member.is_some()),
            ("teams_user", self.teams_user.is_some()),
        ];
        if let Some((other, _)) = given.iter().find(|(name, set)| *set && *name != field) {
            let uses = if needed {
                format!("it uses {field}")
            } else {
                "it needs no address".to_owned()
            };
            return Err((
                (*other).to_owned(),
                format!(
                    "channel {:?} is a {} channel: {uses}",
                    self.channel,
                    kind.as_str()
                ),
            ));
        }
        if needed && self.address_for(kind).is_none() {
            return Err((
                field.to_owned(),
                format!("a contact on a {} channel needs its {field}", kind.as_str()),
            ));
        }
        if let Some(address) = &self.address {
            check_address(address).map_err(|m| ("address".to_owned(), m))?;
        }
        if let Some(member) = &self.slack_member
            && !is_slack_member(member)
        {
            return Err((
                "slack_member".into(),
                format!(
                    "{member:?} is not a Slack member id (U or W and capital letters and digits, as in a profile's \"Copy member ID\")"
                ),
            ));
        }
        Ok(())
    }
}

/// A Slack member id: `U` (or `W` on Enterprise Grid) and capital letters and digits.
fn is_slack_member(text: &str) -> bool {
    (3..=24).contains(&text.len())
        && text.starts_with(['U', 'W'])
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn check_address(text: &str) -> Result<(), String> {
    text.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not an email address: {e}"))
}

/// `slack`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// The incoming-webhook URL (a secret: it is the credential).
    pub url: Option<Secret>,
    /// The URL, read from a file.
    pub url_file: Option<SecretFile>,
    /// Overrides the webhook's channel (legacy webhooks only).
    pub channel: Option<String>,
    /// The name shown as sender.
    pub username: Option<String>,
    /// An emoji shown as the sender's icon, such as `:rotating_light:`.
    pub icon_emoji: Option<String>,
    /// Alerts listed one by one; the rest are counted by name.
    pub max_alerts_listed: Option<usize>,
    /// Certificate checks.
    pub tls_config: ClientTlsConfig,
}

/// A URL that is a credential, from `url` or `url_file`: required.
pub(crate) fn secret_url(
    url: &Option<Secret>,
    url_file: &Option<SecretFile>,
) -> Result<Secret, String> {
    secret_setting("url", url.clone(), url_file.clone())?
        .ok_or_else(|| "set url or url_file".to_owned())
}

impl SlackConfig {
    /// The webhook URL.
    pub fn url(&self) -> Result<Secret, String> {
        secret_url(&self.url, &self.url_file)
    }

    fn validate(&self) -> Result<(), Problem> {
        let url = self.url().map_err(|m| ("url".into(), m))?;
        check_http_url(url.expose()).map_err(|m| ("url".into(), m))
    }
}

/// `teams`: a Microsoft Teams Workflows webhook ("When a Teams webhook request is received"),
/// posting one Adaptive Card per message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamsConfig {
    /// The workflow's URL (a secret: its `sig` query parameter is the credential).
    pub url: Option<Secret>,
    /// The URL, read from a file.
    pub url_file: Option<SecretFile>,
    /// Alerts listed one by one; the rest are counted by name.
    pub max_alerts_listed: Option<usize>,
    /// The largest request body sent, in bytes: fewer alerts are listed until the card fits.
    pub max_card_bytes: usize,
    /// Certificate checks.
    pub tls_config: ClientTlsConfig,
}

/// Teams' documented limit on a message: 28 KB.
pub const TEAMS_MAX_CARD_BYTES: usize = 28_000;

/// The smallest `teams.max_card_bytes`: a card listing no alert, every part at its bound.
pub const TEAMS_MIN_CARD_BYTES: usize = 12_288;

impl Default for TeamsConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_file: None,
            max_alerts_listed: None,
            max_card_bytes: TEAMS_MAX_CARD_BYTES,
            tls_config: ClientTlsConfig::default(),
        }
    }
}

impl TeamsConfig {
    /// The workflow's URL.
    pub fn url(&self) -> Result<Secret, String> {
        secret_url(&self.url, &self.url_file)
    }

    fn validate(&self) -> Result<(), Problem> {
        let url = self.url().map_err(|m| ("url".into(), m))?;
        check_http_url(url.expose()).map_err(|m| ("url".into(), m))?;
        if self.max_card_bytes < TEAMS_MIN_CARD_BYTES {
            return Err((
                "max_card_bytes".into(),
                format!("must be at least {TEAMS_MIN_CARD_BYTES}"),
            ));
        }
        Ok(())
    }
}

/// `pagerduty`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The integration's routing key.
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// The routing key, read from a file.
    #[serde(default)]
    pub routing_key_file: Option<SecretFile>,
    /// The Events API v2 endpoint.
    #[serde(default = "pagerduty_url")]
    pub url: String,
    /// The `client` shown in PagerDuty.
    #[serde(default = "pagerduty_client")]
    pub client: String,
    /// The label whose value becomes the event's severity.
    #[serde(default = "severity_label")]
    pub severity_label: String,
    /// Label values mapped to PagerDuty's critical, error, warning or info (added to the
    /// built-in table: critical/page/high → critical, error/major → error,
    /// warning/warn/minor → warning, info/low/none → info; anything else is error).
    #[serde(default)]
    pub severity_map: BTreeMap<String, String>,
    /// Certificate checks.
    #[serde(default)]
    pub tls_config: ClientTlsConfig,
}

fn pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_owned()
}

fn pagerduty_client() -> String {
    "mcpwatch".to_owned()
}

fn severity_label() -> String {
    "severity".to_owned()
}

/// PagerDuty's four severities.
pub const PAGERDUTY_SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

impl PagerDutyConfig {
    /// The routing key.
    pub fn routing_key(&self) -> Result<Secret, String> {
        secret_setting(
            "routing_key",
            self.routing_key.clone(),
            self.routing_key_file.clone(),
        )?
        .ok_or_else(|| "set routing_key or routing_key_file".to_owned())
    }

    fn validate(&self) -> Result<(), Problem> {
        let key = self.routing_key().map_err(|m| ("routing_key".into(), m))?;
        if key.expose().trim().is_empty() {
            return Err(("routing_key".into(), "must not be empty".into()));
        }
        check_http_url(&self.url).map_err(|m| ("url".into(), m))?;
        for (from, to) in &self.severity_map {
            if !PAGERDUTY_SEVERITIES.contains(&to.as_str()) {
                return Err((
                    format!("severity_map.{from}"),
                    format!("{to:?} is not one of PagerDuty's critical, error, warning, info"),
                ));
            }
        }
        Ok(())
    }
}

/// `webhook`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST (a secret: URLs often carry tokens).
    pub url: Option<Secret>,
    /// The URL, read from a file.
    pub url_file: Option<SecretFile>,
    /// HMAC-SHA256 key: each request is signed in `X-Mcpwatch-Signature`.
    pub hmac_secret: Option<Secret>,
    /// The key, read from a file.
    pub hmac_secret_file: Option<SecretFile>,
    /// Extra request headers (values are treated as secrets: they often carry tokens).
    pub headers: BTreeMap<String, Secret>,
    /// Certificate checks.
    pub tls_config: ClientTlsConfig,
}

impl WebhookConfig {
    /// The URL.
    pub fn url(&self) -> Result<Secret, String> {
        secret_url(&self.url, &self.url_file)
    }

    /// The signing key, if any.
    pub fn hmac_secret(&self) -> Result<Option<Secret>, String> {
        secret_setting(
            "hmac_secret",
            self.hmac_secret.clone(),
            self.hmac_secret_file.clone(),
        )
    }

    fn validate(&self) -> Result<(), Problem> {
        let url = self.url().map_err(|m| ("url".into(), m))?;
        check_http_url(url.expose()).map_err(|m| ("url".into(), m))?;
        self.hmac_secret().map_err(|m| ("hmac_secret".into(), m))?;
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err((format!("headers.{name}"), "not a valid header name".into()));
            }
            // The value is a secret: the message says what is wrong, never what it is.
            if http::HeaderValue::from_str(value.expose()).is_err() {
                return Err((
                    format!("headers.{name}"),
                    "not a valid header value (visible ASCII, spaces and tabs only; no line breaks)"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// `log`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Append to this file instead of writing to standard output.
    pub path: Option<ConfigPath>,
    /// `text` (default) or `json` (one object per notification).
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// The rendered `text` template.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    // Only the scheme and host are named: the rest of a webhook URL is its credential.
    match url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(())
        }
        Ok(_) => Err("must be an absolute http:// or https:// URL".into()),
        Err(_) => Err("is not a valid URL".into()),
    }
}

/// `route` and each of its `routes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Alertmanager-style matchers, all of which an alert's labels must satisfy.
    pub matchers: Vec<Matcher>,
    /// Channels an alert that stops here goes to (the root's default: `log`).
    pub channels: Vec<String>,
    /// Keep looking at the next sibling after this route matched.
    #[serde(rename = "continue")]
    pub continue_matching: bool,
    /// The escalation policy the alerts that stop here climb.
    pub escalation: Option<String>,
    /// The remediation action run when an incident of the alerts that stop here opens
    /// (inherited by child routes that name none).
    pub remediation: Option<String>,
    /// Child routes, tried in order.
    pub routes: Vec<RouteConfig>,
}

impl RouteConfig {
    /// Whether the alerts that stop here go where its parent's go: it has neither channels
    /// nor an escalation policy of its own (as an Alertmanager route without a receiver).
    pub fn has_parents_targets(&self) -> bool {
        self.channels.is_empty() && self.escalation.is_none()
    }

    /// The escalation policy the alerts that stop here climb, under a parent whose alerts
    /// climb `parent`.
    pub fn escalation_under<'a>(&'a self, parent: Option<&'a str>) -> Option<&'a str> {
        if self.has_parents_targets() {
            parent
        } else {
            self.escalation.as_deref()
        }
    }

    /// Whether an alert that stops here, or at a child route that inherits this route's
    /// remediation, climbs an escalation policy (under a parent whose alerts climb
    /// `parent`): a remediation runs only when an incident opens.
    fn remediation_can_run(&self, parent: Option<&str>) -> bool {
        let escalation = self.escalation_under(parent);
        escalation.is_some()
            || self
                .routes
                .iter()
                .filter(|child| child.remediation.is_none())
                .any(|child| child.remediation_can_run(escalation))
    }
}

/// A configuration that parsed but cannot be built (a channel's address, a CA file, a
/// template, a secret): the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SetupError {
    /// The configuration key at fault, e.g. `channels.ops.email`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl SetupError {
    /// The error of `key`.
    pub fn new(key: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// The templates a configuration may set under `templates` (and each channel under its
/// own `templates`).
pub const TEMPLATE_PARTS: &[&str] = &["subject", "title", "text", "html", "summary", "source"];

/// A check that what a configuration names (templates) adds to [`NotifierConfig::validate`],
/// given the configuration with its defaults filled in: the key at fault and what is wrong.
pub type Check = fn(&NotifierConfig) -> Result<(), Problem>;

impl NotifierConfig {
    /// Reads the file and checks it, with `more` besides (see [`Check`]); an error names
    /// the file, line and column at fault.
    pub fn load_with(path: &Path, more: Check) -> Result<Self, ConfigError> {
        let mut config: Self = load_yaml_checked(path, |c: &Self| c.check_all(more))?;
        config.fill_defaults();
        Ok(config)
    }

    /// Parses YAML text (relative paths taken from `origin`'s directory) and checks it,
    /// with `more` besides.
    pub fn parse_with(text: &str, origin: &Path, more: Check) -> Result<Self, ConfigError> {
        let mut config: Self = mcpwatch_core::config::parse_yaml(text, origin)?;
        config
            .check_all(more)
            .map_err(|(key, message)| ConfigError::located(origin, text, key, message))?;
        config.fill_defaults();
        Ok(config)
    }

    fn check_all(&self, more: Check) -> Result<(), Problem> {
        self.validate()?;
        // Checked as it will run: with the built-in log channel added.
        let mut complete = self.clone();
        complete.fill_defaults();
        more(&complete)
    }

    /// The defaults a user sees with no file: every alert to a log on standard output.
    pub fn builtin() -> Self {
        let mut config = Self::default();
        config.fill_defaults();
        config
    }

    fn fill_defaults(&mut self) {
        self.channels
            .entry("log".to_owned())
            .or_insert_with(ChannelConfig::stdout_log);
        if self.route.channels.is_empty() {
            self.route.channels.push("log".to_owned());
        }
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), Problem> {
        if let Some(auth) = &self.receiver.auth {
            auth.validate()
                .map_err(|(k, m)| (format!("receiver.auth.{k}"), m))?;
        }
        if let Some(auth) = &self.api.auth {
            auth.validate()
                .map_err(|(k, m)| (format!("api.auth.{k}"), m))?;
        }
        if self.receiver.max_body_bytes < 1024 {
            return Err((
                "receiver.max_body_bytes".into(),
                "must be at least 1024".into(),
            ));
        }
        self.delivery
            .retry
            .validate()
            .map_err(|(k, m)| (format!("delivery.retry.{k}"), m))?;
        if self.delivery.concurrency == 0 {
            return Err(("delivery.concurrency".into(), "must be at least 1".into()));
        }
        if self.delivery.timeout.is_zero() {
            return Err(("delivery.timeout".into(), "must be more than 0s".into()));
        }
        if self.delivery.max_in_flight_per_channel == 0 {
            return Err((
                "delivery.max_in_flight_per_channel".into(),
                "must be at least 1".into(),
            ));
        }
        if self.delivery.max_in_flight_bytes == 0 {
            return Err((
                "delivery.max_in_flight_bytes".into(),
                "must be at least 1".into(),
            ));
        }
        if self.delivery.poll_interval < Duration::from_millis(10) {
            return Err((
                "delivery.poll_interval".into(),
                "must be at least 10ms".into(),
            ));
        }
        if let Some(postgres) = &self.storage.postgres {
            let dsn = postgres.dsn().map_err(|e| (e.key, e.message))?;
            mcpwatch_pgconn::client_config(&dsn)
                .map_err(|e| ("storage.postgres.dsn".to_owned(), e.to_string()))?;
            if postgres.max_connections == 0 {
                return Err((
                    "storage.postgres.max_connections".into(),
                    "must be at least 1".into(),
                ));
            }
        }
        if self.storage.dedup_window > self.storage.retention {
            return Err((
                "storage.dedup_window".into(),
                "must not be longer than storage.retention".into(),
            ));
        }
        for part in self.templates.keys() {
            if !TEMPLATE_PARTS.contains(&part.as_str()) {
                return Err((
                    format!("templates.{part}"),
                    format!(
                        "no template is named {part:?} (there are: {})",
                        TEMPLATE_PARTS.join(", ")
                    ),
                ));
            }
        }
        for (name, channel) in &self.channels {
            if !is_channel_name(name) {
                return Err((
                    format!("channels.{name}"),
                    "a channel name is letters, digits, '-' and '_'".into(),
                ));
            }
            channel
                .validate()
                .map_err(|(k, m)| (join_key(&format!("channels.{name}"), &k), m))?;
        }
        self.ui
            .csrf_secret()
            .map_err(|m| ("ui.csrf_secret".to_owned(), m))?;
        self.check_route(&self.route, "route", None)?;
        self.check_people()?;
        self.check_escalation()?;
        self.check_windows()?;
        self.severities.validate()?;
        if let Some(page) = &self.status_page {
            page.validate()?;
        }
        Ok(())
    }

    fn check_people(&self) -> Result<(), Problem> {
        for (key, person) in &self.people {
            let at = format!("people.{key}");
            if !is_key(key) {
                return Err((
                    at,
                    "a person's key is letters, digits, '-', '_' and '.'".into(),
                ));
            }
            if let Some(name) = &person.name
                && (name.trim().is_empty() || name.chars().any(char::is_control))
            {
                return Err((
                    format!("{at}.name"),
                    "a name, not empty and without control characters".into(),
                ));
            }
            if person.contacts.is_empty() {
                return Err((format!("{at}.contacts"), "give at least one contact".into()));
            }
            for (i, contact) in person.contacts.iter().enumerate() {
                let at = format!("{at}.contacts[{i}]");
                if person.contacts[..i]
                    .iter()
                    .any(|c| c.channel == contact.channel)
                {
                    return Err((
                        format!("{at}.channel"),
                        format!(
                            "{key} has a contact on channel {:?} already; one contact per channel",
                            contact.channel
                        ),
                    ));
                }
                let builtin_log = contact.channel == "log" && !self.channels.contains_key("log");
                let kind = match self.channels.get(&contact.channel) {
                    Some(channel) => channel.kind().map_err(|m| (format!("{at}.channel"), m))?,
                    None if builtin_log => ChannelKind::Log,
                    None => {
                        return Err((
                            format!("{at}.channel"),
                            format!("no channel is named {:?}", contact.channel),
                        ));
                    }
                };
                contact
                    .validate(kind)
                    .map_err(|(k, m)| (join_key(&at, &k), m))?;
            }
        }
        Ok(())
    }

    /// Checks `route` (at `key`) and its children; `parent` is the escalation policy its
    /// parent's alerts climb.
    fn check_route(
        &self,
        route: &RouteConfig,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(), Problem> {
        for (i, channel) in route.channels.iter().enumerate() {
            let builtin_log = channel == "log" && !self.channels.contains_key("log");
            if !self.channels.contains_key(channel) && !builtin_log {
                return Err((
                    format!("{key}.channels[{i}]"),
                    format!("no channel is named {channel:?}"),
                ));
            }
        }
        if let Some(policy) = &route.escalation
            && !self.escalation_policies.contains_key(policy)
        {
            return Err((
                format!("{key}.escalation"),
                format!("no escalation policy is named {policy:?}"),
            ));
        }
        if let Some(action) = &route.remediation {
            if !self.remediations.contains_key(action) {
                return Err((
                    format!("{key}.remediation"),
                    format!("no remediation action is named {action:?}"),
                ));
            }
            if !route.remediation_can_run(parent) {
                return Err((
                    format!("{key}.remediation"),
                    "an action runs when an incident opens, and no alert that takes this route climbs an escalation policy; set escalation on this route (or a parent it inherits from)".into(),
                ));
            }
        }
        let escalation = route.escalation_under(parent);
        for (i, child) in route.routes.iter().enumerate() {
            self.check_route(child, &format!("{key}.routes[{i}]"), escalation)?;
        }
        Ok(())
    }

    fn check_escalation(&self) -> Result<(), Problem> {
        for (name, policy) in &self.escalation_policies {
            let key = format!("escalation_policies.{name}");
            if policy.levels.is_empty() {
                return Err((format!("{key}.levels"), "give at least one level".into()));
            }
            for (i, level) in policy.levels.iter().enumerate() {
                let key = format!("{key}.levels[{i}]");
                match (i, level.after) {
                    (0, Some(_)) => {
                        return Err((
                            format!("{key}.after"),
                            "the first level is told at once; no delay".into(),
                        ));
                    }
                    (0, None) => {}
                    (_, None) => {
                        return Err((
                            format!("{key}.after"),
                            "set how long after the previous level this one is told".into(),
                        ));
                    }
                    (_, Some(d)) if d < Duration::from_secs(1) => {
                        return Err((format!("{key}.after"), "must be at least 1s".into()));
                    }
                    _ => {}
                }
                if level.channels.is_empty() && level.schedule.is_none() {
                    return Err((
                        format!("{key}.channels"),
                        "give at least one channel, or a schedule".into(),
                    ));
                }
                if let Some(schedule) = &level.schedule
                    && !self.schedules.contains_key(schedule)
                {
                    return Err((
                        format!("{key}.schedule"),
                        format!("no schedule is named {schedule:?}"),
                    ));
                }
                for (j, channel) in level.channels.iter().enumerate() {
                    let builtin_log = channel == "log" && !self.channels.contains_key("log");
                    if !self.channels.contains_key(channel) && !builtin_log {
                        return Err((
                            format!("{key}.channels[{j}]"),
                            format!("no channel is named {channel:?}"),
                        ));
                    }
                }
            }
            if policy
                .repeat_last_level
                .is_some_and(|d| d < Duration::from_secs(1))
            {
                return Err((
                    format!("{key}.repeat_last_level"),
                    "must be at least 1s".into(),
                ));
            }
        }
        if let Some(ack) = &self.acknowledgement {
            // A signed link is one credential; the API without a link must ask for another.
            if self.api.auth.is_none() {
                return Err((
                    "acknowledgement".into(),
                    "set api.auth too: without it anyone reaching the API could acknowledge without a link".into(),
                ));
            }
            ack.secret()
                .map_err(|m| ("acknowledgement.secret".to_owned(), m))?;
            let url = ack.external_url.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "acknowledgement.external_url".into(),
                    "must start with http:// or https://".into(),
                ));
            }
            if ack.link_ttl < Duration::from_secs(60) {
                return Err((
                    "acknowledgement.link_ttl".into(),
                    "must be at least 1m".into(),
                ));
            }
        }
        Ok(())
    }

    fn check_windows(&self) -> Result<(), Problem> {
        let mut names = std::collections::BTreeSet::new();
        for (i, interval) in self.time_intervals.iter().enumerate() {
            if !names.insert(interval.name.as_str()) {
                return Err((
                    format!("time_intervals[{i}].name"),
                    format!("{:?} is defined twice", interval.name),
                ));
            }
            if let Err(e) = crate::timeinterval::TimeInterval::new(&interval.time_intervals) {
                let (at, message) = e.split_once(": ").unwrap_or(("", &e));
                return Err((
                    format!("time_intervals[{i}].time_intervals{at}"),
                    message.to_owned(),
                ));
            }
        }
        let mut windows = std::collections::BTreeSet::new();
        for (i, window) in self.maintenance_windows.iter().enumerate() {
            let key = format!("maintenance_windows[{i}]");
            if window.name.is_empty() || window.name.starts_with('#') {
                return Err((
                    format!("{key}.name"),
                    "a name, not empty and not starting with '#'".into(),
                ));
            }
            if !windows.insert(window.name.as_str()) {
                return Err((
                    format!("{key}.name"),
                    format!("{:?} is defined twice", window.name),
                ));
            }
            if window.time_intervals.is_empty() {
                return Err((
                    format!("{key}.time_intervals"),
                    "name at least one of time_intervals".into(),
                ));
            }
            for (j, name) in window.time_intervals.iter().enumerate() {
                if !names.contains(name.as_str()) {
                    return Err((
                        format!("{key}.time_intervals[{j}]"),
                        format!("no time interval is named {name:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn join_key(prefix: &str, key: &str) -> String {
    if key.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Whether `key` is a usable person's key or schedule name: letters, digits, `-`, `_` and
/// `.` (it shows in URLs, the API and an incident's list of who was told).
pub fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl AuthConfig {
    fn validate(&self) -> Result<(), Problem> {
        let token = secret_setting(
            "bearer_token",
            self.bearer_token.clone(),
            self.bearer_token_file.clone(),
        )
        .map_err(|m| ("bearer_token".into(), m))?;
        match (&token, &self.basic_auth) {
            (None, None) => Err((
                String::new(),
                "set bearer_token, bearer_token_file or basic_auth".into(),
            )),
            (Some(t), _) if t.expose().trim().is_empty() => {
                Err(("bearer_token".into(), "must not be empty".into()))
            }
            (_, Some(basic)) => {
                let password = secret_setting(
                    "password",
                    basic.password.clone(),
                    basic.password_file.clone(),
                )
                .map_err(|m| ("basic_auth.password".into(), m))?;
                if password.is_none() {
                    return Err((
                        "basic_auth.password".into(),
                        "set password or password_file".into(),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The accepted token.
    pub fn token(&self) -> Option<Secret> {
        secret_setting(
            "bearer_token",
            self.bearer_token.clone(),
            self.bearer_token_file.clone(),
        )
        .ok()
        .flatten()
    }

    /// The accepted user and password.
    pub fn basic(&self) -> Option<(String, Secret)> {
        let basic = self.basic_auth.as_ref()?;
        let password = secret_setting(
            "password",
            basic.password.clone(),
            basic.password_file.clone(),
        )
        .ok()
        .flatten()?;
        Some((basic.username.clone(), password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifierConfig, String> {
        NotifierConfig::parse(text, Path::new("/etc/mcpwatch/notifier.yml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_logs_everything() {
        let config = parse("").expect("parse");
        assert_eq!(config.route.channels, ["log"]);
        assert_eq!(config.channels["log"].kind(), Ok(ChannelKind::Log));
        assert_eq!(config.storage.dedup_window, Duration::from_secs(3600));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let error = parse("channels:\n  chat:\n    slack:\n      url: https://hooks.example.com/x\n      colour: red\n")
            .expect_err("unknown key");
        assert!(
            error.starts_with("/etc/mcpwatch/notifier.yml:5:"),
            "{error}"
        );
        assert!(error.contains("colour"), "{error}");

        let error = parse("channels:\n  chat:\n    slack: {}\n").expect_err("no url");
        assert!(
            error.contains("channels.chat.slack.url: set url or url_file"),
            "{error}"
        );

        let error =
            parse("channels:\n  both:\n    log: {}\n    webhook: {url: http://127.0.0.1/}\n")
                .expect_err("two kinds");
        assert!(
            error.contains("channels.both: set only one of webhook, log"),
            "{error}"
        );

        let error = parse("route:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      channels: [pager]\n")
            .expect_err("unknown channel");
        assert!(error.contains(":4:"), "{error}");
        assert!(
            error.contains("route.routes[0].channels[0]: no channel is named \"pager\""),
            "{error}"
        );

        let error = parse("route:\n  matchers: ['severity=~\"(\"']\n").expect_err("bad regex");
        assert!(error.contains("route.matchers[0]"), "{error}");

        let error = parse(
            "channels:\n  mail:\n    email: {smarthost: 'mx:25', from: a@example.com, to: [b@example.com], security: none}\n",
        )
        .expect_err("insecure");
        assert!(error.contains("allow_insecure"), "{error}");
    }

    #[test]
    fn delivery_limits_and_grace() {
        let config = parse("").expect("parse");
        assert_eq!(config.delivery.max_in_flight_per_channel, 4);
        assert_eq!(config.delivery.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.delivery.poll_interval, Duration::from_secs(1));
        assert_eq!(config.delivery.max_in_flight_bytes, 8 << 20);
        let config = parse(
            "delivery:\n  max_in_flight_per_channel: 12\n  shutdown_grace: 45s\n  poll_interval: 5s\n  max_in_flight_bytes: 1048576\n",
        )
        .expect("parse");
        assert_eq!(config.delivery.max_in_flight_bytes, 1 << 20);
        assert_eq!(config.delivery.max_in_flight_per_channel, 12);
        assert_eq!(config.delivery.shutdown_grace, Duration::from_secs(45));
        assert_eq!(config.delivery.poll_interval, Duration::from_secs(5));

        let error = parse("delivery:\n  timeout: 5s\n  max_in_flight_per_channel: 0\n")
            .expect_err("zero in flight");
        assert!(
            error.starts_with("/etc/mcpwatch/notifier.yml:3:"),
            "{error}"
        );
        assert!(
            error.contains("delivery.max_in_flight_per_channel: must be at least 1"),
            "{error}"
        );
        let error =
            parse("delivery:\n  max_in_flight_bytes: 0\n").expect_err("zero bytes in flight");
        assert!(
            error.contains("delivery.max_in_flight_bytes: must be at least 1"),
            "{error}"
        );
        let error = parse("delivery:\n  shutdown_grace: soon\n").expect_err("not a duration");
        assert!(
            error.starts_with("/etc/mcpwatch/notifier.yml:2:"),
            "{error}"
        );
        let error = parse("delivery:\n  poll_interval: 1ms\n").expect_err("too often");
        assert!(
            error.starts_with("/etc/mcpwatch/notifier.yml:2:"),
            "{error}"
        );
        assert!(error.contains("delivery.poll_interval"), "{error}");
    }

    #[test]
    fn a_bad_header_value_is_located_and_not_shown() {
        let error = parse(
            "channels:\n  hook:\n    webhook:\n      url: 'https://example.com/'\n      headers:\n        X-Token: \"hunter5\\nInjected: yes\"\n",
        )
        .expect_err("line break in a header value");
        assert!(
            error.starts_with("/etc/mcpwatch/notifier.yml:6:"),
            "{error}"
        );
        assert!(
            error.contains("channels.hook.webhook.headers.X-Token: not a valid header value"),
            "{error}"
        );
        assert!(!error.contains("hunter5"), "{error}");
    }

    #[test]
    fn secrets_do_not_show_in_errors_or_debug() {
        let error = parse(
            "channels:\n  chat:\n    slack:\n      url: 'hooks.example.com/services/T0/B0/hunter2'\n",
        )
        .expect_err("not absolute");
        assert!(!error.contains("hunter2"), "{error}");
        let config = parse(
            "channels:\n  pager:\n    pagerduty: {routing_key: hunter2hunter2}\n  hook:\n    webhook: {url: 'https://example.com/', headers: {Authorization: 'Bearer hunter4'}}\nreceiver:\n  auth: {bearer_token: hunter3}\n",
        )
        .expect("parse");
        let debug = format!("{config:?}");
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn smtp_security_follows_the_port() {
        let config = parse(
            "channels:\n  a:\n    email: {smarthost: 'smtp.example.com:465', from: a@example.com, to: [b@example.com]}\n  b:\n    email: {smarthost: 'smtp.example.com:587', from: 'Alerts <a@example.com>', to: [b@example.com]}\n",
        )
        .expect("parse");
        let security = |n: &str| config.channels[n].email.as_ref().map(EmailConfig::security);
        assert_eq!(security("a"), Some(SmtpSecurity::Implicit));
        assert_eq!(security("b"), Some(SmtpSecurity::Starttls));
    }

    #[test]
    fn people_and_schedules_are_checked_at_their_keys() {
        let base = "channels:\n  mail:\n    email: {smarthost: 'mx:587', from: a@example.com, to: [team@example.com]}\n\
                    \x20 chat:\n    slack: {url: 'https://hooks.example.com/x'}\n  hook:\n    webhook: {url: 'https://example.com/'}\n";
        let person = "people:\n  alice:\n    name: Alice\n    contacts: [{channel: mail, address: alice@example.com}, {channel: chat, slack_member: U0ALICE}, {channel: hook}]\n";
        let schedule = "schedules:\n  primary:\n    time_zone: Europe/Berlin\n    rotations:\n      - members: [alice]\n        every: weekly\n        handoff: Mon 09:00\n        start: 2026-03-02\n";
        let ok = parse(&format!(
            "{base}{person}{schedule}escalation_policies:\n  p:\n    levels:\n      - schedule: primary\n"
        ))
        .expect("valid");
        assert_eq!(
            ok.escalation_policies["p"].levels[0].schedule.as_deref(),
            Some("primary")
        );
        let cases = [
            (
                "people:\n  alice:\n    contacts: [{channel: pager}]\n".to_owned(),
                ":3:",
                "people.alice.contacts[0].channel: no channel is named \"pager\"",
            ),
            (
                "people:\n  alice:\n    contacts: [{channel: mail}]\n".to_owned(),
                ":3:",
                "people.alice.contacts[0].address: a contact on a email channel needs its address",
            ),
            (
                "people:\n  alice:\n    contacts: [{channel: mail, address: 'not an address'}]\n".to_owned(),
                ":3:",
                "people.alice.contacts[0].address: \"not an address\" is not an email address",
            ),
            (
                "people:\n  alice:\n    contacts:\n      - channel: chat\n        slack_member: '@alice'\n".to_owned(),
                ":5:",
                "people.alice.contacts[0].slack_member: \"@alice\" is not a Slack member id",
            ),
            (
                "people:\n  alice:\n    contacts: [{channel: chat, address: alice@example.com}]\n".to_owned(),
                ":3:",
                "people.alice.contacts[0].address: channel \"chat\" is a slack channel: it uses slack_member",
            ),
            (
                "people:\n  alice:\n    contacts: [{channel: hook, teams_user: alice@example.com}]\n".to_owned(),
                ":3:",
                "people.alice.contacts[0].teams_user: channel \"hook\" is a webhook channel: it needs no address",
            ),
            (
                "people:\n  alice:\n    contacts: []\n".to_owned(),
                ":3:",
                "people.alice.contacts: give at least one contact",
            ),
            (
                "people:\n  alice:\n    contacts: [{channel: hook}, {channel: hook}]\n".to_owned(),
                ":3:",
                "people.alice.contacts[1].channel: alice has a contact on channel \"hook\" already",
            ),
            (
                format!("{person}{}", schedule.replace("[alice]", "[alice, bob]")),
                ":9:",
                "schedules.primary.rotations[0].members[1]: no person is named \"bob\"",
            ),
            (
                format!("{person}{}", schedule.replace("Europe/Berlin", "Europe/Atlantis")),
                ":7:",
                "schedules.primary.time_zone: \"Europe/Atlantis\" is not a known IANA time zone",
            ),
            (
                format!("{person}{}", schedule.replace("Mon 09:00", "Monday morning")),
                ":11:",
                "schedules.primary.rotations[0].handoff: \"Monday morning\" is not a weekday and a time",
            ),
            (
                format!("{person}{}", schedule.replace("[alice]", "[]")),
                ":9:",
                "schedules.primary.rotations[0].members: give at least one member",
            ),
            (
                format!(
                    "{person}{schedule}    overrides:\n      - {{person: alice, from: '2026-03-05T10:00:00+01:00', until: '2026-03-05T09:00:00Z'}}\n"
                ),
                ":14:",
                "schedules.primary.overrides[0].until: must be later than from",
            ),
            (
                format!(
                    "{person}{schedule}    overrides:\n      - {{person: mallory, from: '2026-03-05T10:00:00+01:00', until: '2026-03-06T09:00:00Z'}}\n"
                ),
                ":14:",
                "schedules.primary.overrides[0].person: no person is named \"mallory\"",
            ),
            (
                format!(
                    "{person}{schedule}escalation_policies:\n  p:\n    levels:\n      - {{schedule: secondary}}\n"
                ),
                ":16:",
                "escalation_policies.p.levels[0].schedule: no schedule is named \"secondary\"",
            ),
            (
                "escalation_policies:\n  p:\n    levels:\n      - {name: nobody}\n".to_owned(),
                ":4:",
                "escalation_policies.p.levels[0].channels: give at least one channel, or a schedule",
            ),
        ];
        // `base` is 7 lines: each case's line is counted in its own text.
        for (text, line, expected) in cases {
            let error = parse(&format!("{base}{text}")).expect_err(&text);
            assert!(error.contains(expected), "{expected}\n{error}");
            let line: usize = line.trim_matches(':').parse().expect("line");
            assert!(
                error.starts_with(&format!("/etc/mcpwatch/notifier.yml:{}:", line + 7)),
                "{line}: {error}"
            );
        }
    }

    #[test]
    fn escalation_and_windows_are_checked() {
        let base = "api: {auth: {bearer_token: admin-token}}\nchannels:\n  pager:\n    log: {}\n";
        let open_api = parse(
            "acknowledgement: {external_url: 'https://n.example.com', secret: 0123456789abcdef}\n",
        )
        .expect_err("no api.auth");
        assert!(
            open_api.contains("acknowledgement: set api.auth too"),
            "{open_api}"
        );
        let ok = parse(&format!(
            "{base}escalation_policies:\n  default:\n    levels:\n      - channels: [pager]\n      - {{after: 15m, channels: [log]}}\n\
             acknowledgement: {{external_url: 'https://n.example.com', secret: 0123456789abcdef}}\n\
             route:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      escalation: default\n"
        ))
        .expect("valid");
        assert_eq!(ok.escalation_policies["default"].levels.len(), 2);
        let cases = [
            (
                "escalation_policies:\n  p:\n    levels:\n      - {after: 1m, channels: [pager]}\n",
                "escalation_policies.p.levels[0].after: the first level is told at once",
            ),
            (
                "escalation_policies:\n  p:\n    levels:\n      - channels: [pager]\n      - channels: [pager]\n",
                "escalation_policies.p.levels[1].after: set how long",
            ),
            (
                "escalation_policies:\n  p:\n    levels:\n      - channels: [nobody]\n",
                "escalation_policies.p.levels[0].channels[0]: no channel is named \"nobody\"",
            ),
            (
                "route:\n  escalation: missing\n",
                "route.escalation: no escalation policy is named \"missing\"",
            ),
            (
                "acknowledgement: {external_url: 'https://n.example.com', secret: short}\n",
                "acknowledgement.secret: must be at least 16 characters",
            ),
            (
                "acknowledgement: {external_url: 'n.example.com', secret: 0123456789abcdef}\n",
                "acknowledgement.external_url: must start with http",
            ),
            (
                "time_intervals:\n  - name: t\n    time_intervals: [{weekdays: [funday]}]\n",
                "time_intervals[0].time_intervals[0].weekdays[0]: \"funday\" is not a day of the week",
            ),
            (
                "maintenance_windows:\n  - {name: w, time_intervals: [none]}\n",
                "maintenance_windows[0].time_intervals[0]: no time interval is named \"none\"",
            ),
            (
                "ui: {csrf_secret: short}\n",
                "ui.csrf_secret: must be at least 16 characters",
            ),
            (
                "ui: {csrf_key: 0123456789abcdef}\n",
                "ui.csrf_key: unknown field `csrf_key`",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&format!("{base}{text}")).expect_err(text);
            assert!(error.contains(expected), "{error}");
        }
        let error = parse(&format!(
            "{base}acknowledgement: {{external_url: 'https://n.example.com', secret: hunter2-is-my-secret!}}\nescalation_policies: {{}}\nroute: {{escalation: x}}\n"
        ))
        .expect_err("unknown policy");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_remediation_needs_an_escalation_policy_where_it_applies() {
        let base = "channels:\n  chat: {log: {}}\nescalation_policies:\n  p:\n    levels: [{channels: [chat]}]\n\
                    remediations:\n  fix:\n    http: {url: 'https://example.com/fix'}\n";
        let route = |routes: &str| parse(&format!("{base}route:\n  routes:\n{routes}"));
        let refused = |routes: &str, key: &str| {
            let error = route(routes).expect_err(routes);
            assert!(
                error.contains(&format!(
                    "{key}: an action runs when an incident opens, and no alert that takes this route climbs an escalation policy"
                )),
                "{error}"
            );
        };
        // Its own policy, or its parent's when it has neither channels nor a policy.
        route("    - {escalation: p, remediation: fix}\n").expect("own");
        route("    - escalation: p\n      routes:\n        - {matchers: ['a=\"b\"'], remediation: fix}\n")
            .expect("inherited");
        // A child that inherits the action and climbs a policy.
        route("    - remediation: fix\n      routes:\n        - {matchers: ['a=\"b\"'], escalation: p}\n")
            .expect("a child uses it");
        refused(
            "    - {escalation: p}\n    - {remediation: fix}\n",
            "route.routes[1].remediation",
        );
        // Channels of its own end the inherited policy.
        refused(
            "    - escalation: p\n      routes:\n        - {channels: [chat], remediation: fix}\n",
            "route.routes[0].routes[0].remediation",
        );
        // A child that names its own action does not use this one.
        refused(
            "    - remediation: fix\n      routes:\n        - {escalation: p, remediation: fix}\n",
            "route.routes[0].remediation",
        );
    }
}
