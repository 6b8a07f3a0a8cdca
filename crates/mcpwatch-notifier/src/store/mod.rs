//! The durable queue: accepted notifications, their deliveries (one per channel) and each
//! attempt. A notification is acknowledged to Alertmanager only once it is committed here;
//! a delivery is claimed before it is sent and recorded delivered after, so a restart at
//! any moment resends at most what was in flight and never what was recorded delivered.

#[macro_use]
mod sql;
mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use crate::incident::{AckRefused, AckRequest, Event, IncidentView, Policies, Touch};
pub use crate::maintenance::{NewWindow, WindowRow};
pub use crate::payload::DedupKey;
pub use crate::statuspage::{GroupStatus, Snapshot};
pub use crate::timeline::{Entry, Note};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Delivery states.
pub mod state {
    /// Waiting for its next attempt.
    pub const PENDING: &str = "pending";
    /// Claimed by a sender; its attempt is under way.
    pub const SENDING: &str = "sending";
    /// Sent.
    pub const DELIVERED: &str = "delivered";
    /// Given up: a permanent failure, or too long undelivered. Replayable.
    pub const DEAD: &str = "dead";
    /// Held by a maintenance window until it ends.
    pub const HELD: &str = "held";
    /// Held, then told in the window's summary.
    pub const SUMMARIZED: &str = "summarized";
    /// Never sent: a newer state of its alert group went (or goes) to its channel.
    pub const SUPERSEDED: &str = "superseded";
    /// Every state, in the order listings use.
    pub const ALL: [&str; 7] = [
        PENDING, SENDING, DELIVERED, DEAD, HELD, SUMMARIZED, SUPERSEDED,
    ];
}

/// The schema both stores write; a database at a later one is refused. 4: one schema for
/// both stores (tables named `mcpwatch_*`, a body's encoding in its own column) and a
/// delivery's stream (its alert group), which orders deliveries. 5: incidents' timelines,
/// severity, title, status updates and who resolved them by hand.
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// Why the store failed. Transient as far as Alertmanager is concerned: it answers 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no, or could not be reached.
    #[error("PostgreSQL: {message}")]
    Postgres {
        /// The SQLSTATE code, when the server answered with one.
        code: Option<String>,
        /// The server's message, or why it was not reached (never the connection string).
        message: String,
    },
    /// The connection string cannot be used (never shown: only what is wrong with it).
    #[error("storage.postgres.dsn: {0}")]
    Dsn(#[from] mcpwatch_pgconn::SettingsError),
    /// A stored notification cannot be read back; sending it again cannot help.
    #[error("the stored notification is damaged: {0}")]
    Damaged(String),
    /// A row does not hold what the schema says it does.
    #[error("the store's row is not as expected: {0}")]
    Column(String),
    /// Another replica is storing the same copy this moment; Alertmanager's retry finds it.
    #[error("a copy of this notification is being stored by another replica")]
    Contended,
    /// The writer thread is gone (shutting down).
    #[error("storage is shutting down")]
    Closed,
    /// The store cannot be opened or used as it is (a path, a lock, a schema).
    #[error("{0}")]
    Unusable(String),
}

impl StoreError {
    /// The SQLSTATE code of a PostgreSQL error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StoreError::Postgres { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether trying again cannot help: what is stored is damaged.
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::Damaged(_) | StoreError::Column(_))
    }
}

pub(crate) use crate::time::millis;

/// A delivery's alert indices as the stores keep them: a JSON array.
pub(crate) fn encode_alerts(alerts: &[usize]) -> String {
    serde_json::to_string(alerts).unwrap_or_else(|_| "[]".into())
}

/// The alert indices [`encode_alerts`] wrote; none when unreadable.
pub(crate) fn decode_alerts(text: &str) -> Vec<usize> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Seconds from `since` to `now` (both Unix ms), never negative.
pub(crate) fn age_seconds(now: i64, since: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let age = (now - since).max(0) as f64 / 1000.0;
    age
}

/// A notification's body as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// JSON text.
    Json(String),
    /// JSON compressed with LZ4 (block format, its length first as 4 bytes, little-endian).
    Lz4(Vec<u8>),
}

/// Larger than any body the receiver takes (a guard against a damaged length).
const MAX_BODY: usize = 1 << 30;

impl Body {
    /// `json` compressed. A webhook body repeats its label names and values alert after
    /// alert and shrinks to a fifth or less: that much less for the store to write.
    pub fn compress(json: &str) -> Self {
        Body::Lz4(lz4_flex::compress_prepend_size(json.as_bytes()))
    }

    /// The length an LZ4 body declares for its JSON (its first 4 bytes, little-endian).
    fn declared_length(bytes: &[u8]) -> Option<u32> {
        bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }

    /// How long the JSON is, without decompressing it: what an LZ4 body declares (its
    /// stored length when it declares nothing).
    pub fn json_len(&self) -> usize {
        match self {
            Body::Json(text) => text.len(),
            Body::Lz4(bytes) => Self::declared_length(bytes)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(bytes.len()),
        }
    }

    /// The JSON.
    pub fn json(&self) -> Result<std::borrow::Cow<'_, str>, StoreError> {
        match self {
            Body::Json(text) => Ok(text.as_str().into()),
            Body::Lz4(bytes) => {
                let damaged = |e: &dyn std::fmt::Display| StoreError::Damaged(e.to_string());
                let length = Self::declared_length(bytes)
                    .ok_or_else(|| damaged(&"shorter than its length"))?;
                if usize::try_from(length).map_or(true, |n| n > MAX_BODY) {
                    return Err(damaged(&format!("a length of {length} bytes")));
                }
                let raw = lz4_flex::decompress_size_prepended(bytes).map_err(|e| damaged(&e))?;
                String::from_utf8(raw)
                    .map(Into::into)
                    .map_err(|e| damaged(&e))
            }
        }
    }
}

/// A notification to store, with the deliveries routing gave it.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// The deduplication key.
    pub dedup_key: DedupKey,
    /// Alertmanager's receiver.
    pub receiver: String,
    /// The group key.
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Number of alerts.
    pub alert_count: usize,
    /// The payload (unknown fields included).
    pub payload: Body,
    /// One delivery per channel, with the indices of the alerts routed to it.
    pub deliveries: Vec<NewDelivery>,
    /// When it arrived, Unix ms.
    pub received_at: i64,
    /// Copies arriving within this window of the first are duplicates, unless their sender
    /// was answered for it before this one arrived (then it is a new sending: a reminder).
    pub dedup_window: Duration,
    /// Who sent it (see [`crate::payload::sender`]).
    pub sender: i64,
    /// What it brings to each escalation policy its alerts climb.
    pub incidents: Vec<Touch>,
    /// What its alert group says of each status page component; none without a page.
    pub components: Option<Vec<GroupStatus>>,
}

/// A delivery to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// Channel name.
    pub channel: String,
    /// Indices into the notification's alerts.
    pub alerts: Vec<usize>,
    /// The maintenance window holding it, if one does.
    pub hold: Option<String>,
}

/// What became of a notification handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored under this id.
    Stored(i64),
    /// A copy of the notification with this id; nothing new was queued.
    Duplicate(i64),
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Delivery id.
    pub id: i64,
    /// Notification id.
    pub notification_id: i64,
    /// Channel name.
    pub channel: String,
    /// Indices of its alerts.
    pub alerts: Vec<usize>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// When the notification arrived, Unix ms.
    pub received_at: i64,
    /// When the delivery was (re)queued: the dead-letter clock starts here.
    pub queued_at: i64,
    /// The payload, shared by the deliveries of one notification claimed together.
    pub payload: Arc<Body>,
    /// What it says besides the alerts (an incident's step, an acknowledgement, a
    /// maintenance summary).
    pub event: Option<Event>,
}

/// Claimed deliveries, and when the next one falls due.
#[derive(Debug, Clone, Default)]
pub struct ClaimBatch {
    /// Ready to send.
    pub claimed: Vec<Claimed>,
    /// The earliest pending delivery not yet due, Unix ms.
    pub next_due: Option<i64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent.
    Delivered,
    /// Failed; try again at this time (Unix ms).
    Retry {
        /// When.
        at: i64,
        /// Why it failed (no secrets).
        error: String,
    },
    /// Failed for good.
    Dead {
        /// Why (no secrets).
        error: String,
    },
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// Delivery id.
    pub id: i64,
    /// Channel.
    pub channel: String,
    /// pending, sending, delivered or dead.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending), RFC 3339.
    pub next_attempt_at: Option<String>,
    /// When it was delivered, RFC 3339.
    pub delivered_at: Option<String>,
    /// How many alerts it carries.
    pub alerts: usize,
}

/// A notification as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationView {
    /// Id.
    pub id: i64,
    /// When it arrived, RFC 3339.
    pub received_at: String,
    /// Alertmanager's receiver.
    pub receiver: String,
    /// Group key.
    pub group_key: String,
    /// firing or resolved.
    pub status: String,
    /// Number of alerts.
    pub alerts: usize,
    /// Copies received after the first.
    pub duplicates: u64,
    /// Its deliveries.
    pub deliveries: Vec<DeliveryView>,
    /// The payload (only when one notification is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// What `/api/v1/notifications` filters on.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Notifications with a delivery in this state.
    pub state: Option<String>,
    /// Notifications with a delivery to this channel.
    pub channel: Option<String>,
    /// Alertmanager receiver.
    pub receiver: Option<String>,
    /// Ids below this (paging backwards).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// Queue sizes for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// (channel, state, deliveries) for pending, sending and dead.
    pub depth: Vec<(String, String, u64)>,
    /// (channel, age of the oldest pending delivery in seconds).
    pub oldest_pending: Vec<(String, f64)>,
    /// How the store's writes reached the disk, when the store counts it.
    pub disk: Option<DiskStats>,
    /// (policy, level from 1, acknowledged, incidents) of open incidents.
    pub incidents: Vec<(String, u32, bool, u64)>,
    /// (window, notifications held) of each window holding some.
    pub held: Vec<(String, u64)>,
}

/// Counts of the store's transactions and of its flushes to disk, since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DiskStats {
    /// Writes made.
    pub writes: u64,
    /// Transactions committed (each with every write that arrived meanwhile).
    pub commits: u64,
    /// Flushes to disk (each acknowledging every commit since the last).
    pub flushes: u64,
    /// Time spent flushing, seconds.
    pub flush_seconds: f64,
}

/// A remediation run claimed by one notifier: run it once, then record how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationClaim {
    /// The incident.
    pub incident: i64,
    /// The action.
    pub action: String,
    /// The incident's latest notification.
    pub notification_id: i64,
    /// Its alerts in it.
    pub alerts: Vec<usize>,
}

/// What a claim of remediation runs did: the runs claimed for this notifier, and those it
/// ended without running them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemediationClaims {
    /// Runs to start now.
    pub claimed: Vec<RemediationClaim>,
    /// (incident, action, result) of each run ended here: `abandoned` (its notifier
    /// stopped while it ran) or `refused` (its incident closed before it started).
    pub ended: Vec<(i64, String, &'static str)>,
}

/// Where the notifier keeps its state.
#[async_trait::async_trait]
pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// Stores a notification and its deliveries durably, or finds it is a duplicate.
    async fn accept(&self, notification: NewNotification) -> Result<Accepted, StoreError>;
    /// Claims due deliveries for `lease`: up to the budget of each channel named, taken in
    /// the order given, and `total` in all.
    async fn claim(
        &self,
        now: i64,
        budgets: Vec<(String, usize)>,
        total: usize,
        lease: Duration,
    ) -> Result<ClaimBatch, StoreError>;
    /// Records that `sender` was answered at `at` (Unix ms) for notification `notification`
    /// (its copy with `key` was stored, or found a duplicate): its next copy arriving after
    /// that is a new sending.
    async fn answered(
        &self,
        key: DedupKey,
        notification: i64,
        sender: i64,
        at: i64,
    ) -> Result<(), StoreError>;
    /// Dead-letters queued deliveries to channels no longer configured; how many.
    async fn retire_channels(&self, known: Vec<String>) -> Result<usize, StoreError>;
    /// Records how attempt `attempt` of a claimed delivery ended; false when that claim
    /// was lost (it expired and the delivery was claimed again).
    async fn complete(
        &self,
        delivery: i64,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<bool, StoreError>;
    /// Puts a notification's dead deliveries back in the queue; how many.
    async fn replay(&self, notification: i64) -> Result<usize, StoreError>;
    /// Returns deliveries left `sending` by a process that stopped to the queue.
    async fn recover(&self) -> Result<usize, StoreError>;
    /// Deletes finished notifications older than `retention` and dedup keys older than
    /// `dedup_window`.
    async fn prune(&self, retention: Duration, dedup_window: Duration)
    -> Result<usize, StoreError>;
    /// Lists notifications, newest first.
    async fn list(&self, filter: ListFilter) -> Result<Vec<NotificationView>, StoreError>;
    /// One notification with its payload.
    async fn get(&self, id: i64) -> Result<Option<NotificationView>, StoreError>;
    /// Queue sizes.
    async fn stats(&self) -> Result<QueueStats, StoreError>;

    /// Tells the next level of every incident whose escalation is due (at most `limit`);
    /// the incidents escalated, each with its policy and new level.
    async fn escalate(
        &self,
        now: i64,
        policies: Arc<Policies>,
        limit: usize,
    ) -> Result<Vec<(i64, String, u32)>, StoreError>;
    /// When the next escalation falls due.
    async fn next_escalation(&self) -> Result<Option<i64>, StoreError>;
    /// Acknowledges an incident or takes it back; the incident after, or why not.
    async fn acknowledge(
        &self,
        incident: i64,
        request: AckRequest,
        policies: Arc<Policies>,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError>;
    /// Incidents, newest first: open and acknowledged ones only, or all.
    async fn incidents(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<IncidentView>, StoreError>;
    /// One incident.
    async fn incident(&self, id: i64) -> Result<Option<IncidentView>, StoreError>;
    /// Resolves an incident by hand (every channel told hears who did, but those in
    /// `quiet`); the incident after, or why not.
    async fn resolve(
        &self,
        incident: i64,
        by: String,
        now: i64,
        policies: Arc<Policies>,
        quiet: Vec<String>,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError>;
    /// An incident's timeline, in order (empty when there is no such incident).
    async fn timeline(&self, incident: i64) -> Result<Vec<Entry>, StoreError>;
    /// Adds an entry to an incident's timeline at `at` (nothing when there is no such
    /// incident).
    async fn record(&self, incident: i64, at: i64, note: Note) -> Result<(), StoreError>;
    /// The status page's components now and their changes since `since` (with the last
    /// one before it).
    async fn status(&self, since: i64) -> Result<Snapshot, StoreError>;
    /// Claims up to `limit` queued remediation runs for `owner` (see
    /// `sql::claim_remediations`).
    async fn claim_remediations(
        &self,
        now: i64,
        owner: String,
        leases: BTreeMap<String, Duration>,
        limit: usize,
        policies: Arc<Policies>,
    ) -> Result<RemediationClaims, StoreError>;
    /// Records how a claimed run ended; false when it is no longer `owner`'s.
    #[allow(clippy::too_many_arguments)]
    async fn finish_remediation(
        &self,
        incident: i64,
        action: String,
        owner: String,
        now: i64,
        state: &'static str,
        note: Note,
        policies: Arc<Policies>,
    ) -> Result<bool, StoreError>;
    /// Stores a one-off maintenance window.
    async fn add_window(&self, window: NewWindow) -> Result<WindowRow, StoreError>;
    /// Ends a one-off window at `now` (if it ends later); the window after.
    async fn end_window(&self, id: i64, now: i64) -> Result<Option<WindowRow>, StoreError>;
    /// One-off windows that end after `since`.
    async fn windows(&self, since: i64) -> Result<Vec<WindowRow>, StoreError>;
    /// The windows holding deliveries, each with how many notifications it holds.
    async fn held(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Releases what `window` held: one summary delivery per channel; how many.
    async fn release(&self, window: String, now: i64) -> Result<usize, StoreError>;
    /// The payloads of these notifications (those still stored).
    async fn payloads(&self, ids: Vec<i64>) -> Result<Vec<(i64, Body)>, StoreError>;
}

/// The lease of a remediation run of an action no longer configured.
pub(crate) const DEFAULT_REMEDIATION_LEASE: Duration = Duration::from_secs(60);

/// A summary of the deliveries `window` held for one channel: (channel, newest
/// notification, delivery event).
pub(crate) fn summaries(
    window: &str,
    held: Vec<(String, i64, Vec<usize>)>,
) -> Vec<(String, i64, Event)> {
    let mut by_channel: std::collections::BTreeMap<String, Vec<(i64, Vec<usize>)>> =
        std::collections::BTreeMap::new();
    for (channel, notification, alerts) in held {
        by_channel
            .entry(channel)
            .or_default()
            .push((notification, alerts));
    }
    by_channel
        .into_iter()
        .map(|(channel, mut held)| {
            held.sort_by_key(|(id, _)| *id);
            let newest = held.last().map_or(0, |(id, _)| *id);
            (
                channel,
                newest,
                Event::Summary {
                    window: window.to_owned(),
                    held,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_body_weighs_its_json() {
        let text = format!("{{\"a\":\"{}\"}}", "x".repeat(10_000));
        assert_eq!(Body::compress(&text).json_len(), text.len());
        assert_eq!(Body::Json(text.clone()).json_len(), text.len());
        assert_eq!(Body::Lz4(vec![1, 2]).json_len(), 2);
    }

    #[test]
    fn bodies_are_compressed_and_read_back() {
        let json = format!(
            "{{\"alerts\":[{}]}}",
            vec!["{\"labels\":{\"severity\":\"warning\"}}"; 50].join(",")
        );
        let body = Body::compress(&json);
        let Body::Lz4(bytes) = &body else {
            panic!("compressed")
        };
        assert!(
            bytes.len() * 5 < json.len(),
            "{} of {}",
            bytes.len(),
            json.len()
        );
        assert_eq!(body.json().expect("json"), json);
        assert_eq!(Body::Json(json.clone()).json().expect("json"), json);
        let damaged = Body::Lz4(vec![0xff, 0xff, 0xff, 0x7f, 1, 2]);
        assert!(
            damaged
                .json()
                .expect_err("damaged")
                .to_string()
                .contains("damaged")
        );
        let truncated = Body::Lz4(bytes[..bytes.len() / 2].to_vec());
        assert!(truncated.json().is_err());
        assert!(Body::Lz4(vec![1]).json().is_err());
    }
}
