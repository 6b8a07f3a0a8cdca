//! The shared store: PostgreSQL (`storage.postgres.dsn`), for several notifier replicas
//! behind Alertmanager's HA pair. Every replica accepts into the same tables: a copy that
//! reaches two replicas at once is stored once (the dedup key's row is taken first, so the
//! second waits for the first to commit and then finds it), deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED` and a lease, and a claim whose replica died expires and is taken
//! by another. Schema changes run under an advisory lock, so replicas may start together.
//!
//! A commit is durable when PostgreSQL says so (`synchronous_commit`, on by default).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use mcpwatch_core::Secret;
use tokio_postgres::types::ToSql;

use super::{
    Accepted, AckRefused, AckRequest, Body, ClaimBatch, Claimed, DeliveryView, Event, IncidentView,
    ListFilter, NewNotification, NewWindow, NotificationView, Outcome, Policies, QueueStats, Store,
    StoreError, WindowRow, age_seconds, decode_alerts, encode_alerts, millis, state,
};
use crate::incident::{self, Change, IncidentRow};
use crate::time::{format_rfc3339, now_ms};

/// The schema this notifier writes; a database at a later one is refused.
/// 2: incidents, maintenance windows, a delivery's event and hold.
const SCHEMA_VERSION: i32 = 2;

/// A channel unknown to this replica is retired only from deliveries queued this long ago.
const RETIRE_AFTER_MS: i64 = 3_600_000;

/// Held while the schema is checked and changed: any 64-bit number the notifier alone uses.
const MIGRATION_LOCK: i64 = 0x6d63_7077_6e74_6672;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mcpwatch_notifier_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mcpwatch_notifications (
    id BIGSERIAL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    alert_count INTEGER NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    -- 'lz4' or 'json' (see store::Body)
    payload_encoding TEXT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS mcpwatch_notifications_received ON mcpwatch_notifications (received_at);
CREATE TABLE IF NOT EXISTS mcpwatch_dedup_keys (
    key BYTEA PRIMARY KEY,
    notification_id BIGINT,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS mcpwatch_dedup_keys_received ON mcpwatch_dedup_keys (received_at);
CREATE TABLE IF NOT EXISTS mcpwatch_deliveries (
    id BIGSERIAL PRIMARY KEY,
    notification_id BIGINT NOT NULL REFERENCES mcpwatch_notifications (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    alerts TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    queued_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    updated_at BIGINT NOT NULL
);
ALTER TABLE mcpwatch_deliveries ADD COLUMN IF NOT EXISTS event TEXT;
ALTER TABLE mcpwatch_deliveries ADD COLUMN IF NOT EXISTS hold TEXT;
CREATE INDEX IF NOT EXISTS mcpwatch_deliveries_held ON mcpwatch_deliveries (hold) WHERE state = 'held';
CREATE TABLE IF NOT EXISTS mcpwatch_incidents (
    id BIGSERIAL PRIMARY KEY,
    policy TEXT NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    open BOOLEAN NOT NULL,
    level INTEGER NOT NULL,
    told TEXT NOT NULL,
    notification_id BIGINT NOT NULL,
    alerts TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    next_at BIGINT,
    acked_at BIGINT,
    acked_by TEXT,
    generation BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS mcpwatch_incidents_group ON mcpwatch_incidents (group_key, receiver, policy) WHERE open;
CREATE INDEX IF NOT EXISTS mcpwatch_incidents_due ON mcpwatch_incidents (next_at) WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS mcpwatch_windows (
    id BIGSERIAL PRIMARY KEY,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    matchers TEXT NOT NULL,
    author TEXT NOT NULL,
    reason TEXT NOT NULL,
    hold_critical BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS mcpwatch_deliveries_due ON mcpwatch_deliveries (channel, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS mcpwatch_deliveries_claimed ON mcpwatch_deliveries (channel, state, claimed_until);
CREATE INDEX IF NOT EXISTS mcpwatch_deliveries_notification ON mcpwatch_deliveries (notification_id);
CREATE TABLE IF NOT EXISTS mcpwatch_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES mcpwatch_deliveries (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS mcpwatch_attempts_delivery ON mcpwatch_attempts (delivery_id);
";

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message when there is one (never the connection string).
        let message = e.as_db_error().map_or_else(
            || e.to_string(),
            |db| format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        );
        StoreError::Other(format!("PostgreSQL: {message}"))
    }
}

impl PostgresStore {
    /// Connects (at most `connections` at a time) and brings the schema up to date.
    pub async fn open(dsn: &Secret, connections: usize) -> Result<Self, StoreError> {
        let target = mcpwatch_pgconn::target_name(dsn)
            .map_err(|e| StoreError::Other(format!("storage.postgres.dsn: {e}")))?;
        let (mut config, tls) = mcpwatch_pgconn::client_config(dsn)
            .map_err(|e| StoreError::Other(format!("storage.postgres.dsn: {e}")))?;
        config.application_name("mcpwatch-notifier");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections.max(1))
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Other(format!("PostgreSQL pool: {e}")))?;
        let store = Self { pool, target };
        store.migrate().await?;
        Ok(store)
    }

    /// Host, port and database, without credentials.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A transaction at READ COMMITTED whatever the database's default: the dedup row
    /// and the claims rely on seeing what other replicas committed meanwhile.
    async fn transaction(
        client: &mut Object,
    ) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
        Ok(client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await?)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from(e),
            other => StoreError::Other(format!("PostgreSQL {}: {other}", self.target)),
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        let version: Option<i32> = tx
            .query_opt("SELECT max(version) FROM mcpwatch_notifier_schema", &[])
            .await?
            .and_then(|r| r.get(0));
        match version {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Other(format!(
                    "the database has notifier schema version {v}, newer than this notifier's {SCHEMA_VERSION}; use a newer notifier"
                )));
            }
            Some(v) if v == SCHEMA_VERSION => {}
            _ => {
                tx.execute("DELETE FROM mcpwatch_notifier_schema", &[])
                    .await?;
                tx.execute(
                    "INSERT INTO mcpwatch_notifier_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

fn encode(body: &Body) -> (&'static str, &[u8]) {
    match body {
        Body::Json(text) => ("json", text.as_bytes()),
        Body::Lz4(bytes) => ("lz4", bytes),
    }
}

fn decode(encoding: &str, bytes: Vec<u8>) -> Result<Body, StoreError> {
    match encoding {
        "lz4" => Ok(Body::Lz4(bytes)),
        "json" => String::from_utf8(bytes)
            .map(Body::Json)
            .map_err(|e| StoreError::Other(format!("the stored body is damaged: {e}"))),
        other => Err(StoreError::Other(format!(
            "the stored body has an unknown encoding {other:?}"
        ))),
    }
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn accept(&self, n: NewNotification) -> Result<Accepted, StoreError> {
        let mut client = self.client().await?;
        let tx = Self::transaction(&mut client).await?;
        let window_start = n.received_at.saturating_sub(millis(n.dedup_window));
        let key = &n.dedup_key.0[..];
        // The key's row first: a replica accepting the same copy at the same moment waits
        // here for this transaction, then finds the key taken.
        let owned = tx
            .query_opt(
                "INSERT INTO mcpwatch_dedup_keys (key, notification_id, received_at) VALUES ($1, NULL, $2)
                 ON CONFLICT (key) DO UPDATE SET notification_id = NULL, received_at = excluded.received_at
                 WHERE mcpwatch_dedup_keys.received_at < $3
                 RETURNING 1",
                &[&key, &n.received_at, &window_start],
            )
            .await?
            .is_some();
        if !owned {
            let id: Option<i64> = tx
                .query_one(
                    "SELECT notification_id FROM mcpwatch_dedup_keys WHERE key = $1",
                    &[&key],
                )
                .await?
                .get(0);
            let id = id.ok_or_else(|| {
                StoreError::Other("a copy is being stored by another replica".into())
            })?;
            tx.execute(
                "UPDATE mcpwatch_notifications SET duplicates = duplicates + 1 WHERE id = $1",
                &[&id],
            )
            .await?;
            tx.commit().await?;
            return Ok(Accepted::Duplicate(id));
        }
        let (encoding, payload) = encode(&n.payload);
        let alert_count = i32::try_from(n.alert_count).unwrap_or(i32::MAX);
        let id: i64 = tx
            .query_one(
                "INSERT INTO mcpwatch_notifications
                     (received_at, receiver, group_key, status, alert_count, payload_encoding, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &n.received_at,
                    &n.receiver,
                    &n.group_key,
                    &n.status,
                    &alert_count,
                    &encoding,
                    &payload,
                ],
            )
            .await?
            .get(0);
        tx.execute(
            "UPDATE mcpwatch_dedup_keys SET notification_id = $2 WHERE key = $1",
            &[&key, &id],
        )
        .await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO mcpwatch_deliveries
                     (notification_id, channel, alerts, state, queued_at, next_attempt_at, updated_at, hold)
                 VALUES ($1, $2, $3, $5, $4, $4, $4, $6)",
            )
            .await?;
        for delivery in &n.deliveries {
            let alerts = encode_alerts(&delivery.alerts);
            let state = if delivery.hold.is_some() {
                state::HELD
            } else {
                state::PENDING
            };
            tx.execute(
                &insert,
                &[
                    &id,
                    &delivery.channel,
                    &alerts,
                    &n.received_at,
                    &state,
                    &delivery.hold,
                ],
            )
            .await?;
        }
        for touch in &n.incidents {
            // One group's notifications reaching two replicas at once take turns here, so
            // that one incident opens, not two.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&format!(
                    "{}\n{}\n{}",
                    n.receiver, n.group_key, touch.policy.name
                )],
            )
            .await?;
            let open = tx
                .query_opt(
                    &format!(
                        "SELECT {INCIDENT} FROM mcpwatch_incidents
                         WHERE group_key = $1 AND receiver = $2 AND policy = $3 AND open FOR UPDATE"
                    ),
                    &[&n.group_key, &n.receiver, &touch.policy.name],
                )
                .await?
                .map(|r| incident_row(&r));
            let change = incident::on_notification(
                open,
                touch,
                &n.receiver,
                &n.group_key,
                id,
                n.received_at,
            );
            if change.row.is_none() {
                let hold = change.hold.as_deref();
                tell(&tx, id, &touch.alerts, &change.tell, n.received_at, hold).await?;
            }
            apply(&tx, change, n.received_at).await?;
        }
        tx.commit().await?;
        Ok(Accepted::Stored(id))
    }

    async fn claim(
        &self,
        now: i64,
        budgets: Vec<(String, usize)>,
        total: usize,
        lease: Duration,
    ) -> Result<ClaimBatch, StoreError> {
        let mut client = self.client().await?;
        let tx = Self::transaction(&mut client).await?;
        // Leases are read on the replicas' clocks, which must agree within the margin a
        // claim has over the longest attempt (NTP does far better).
        let until = now.saturating_add(millis(lease));
        // Rows another replica holds locked are skipped, not waited for: it is claiming them.
        let take = tx
            .prepare_cached(
                "WITH taken AS (
                     SELECT id FROM mcpwatch_deliveries
                     WHERE channel = $1 AND ((state = 'pending' AND next_attempt_at <= $2)
                                          OR (state = 'sending' AND claimed_until <= $2))
                     ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 UPDATE mcpwatch_deliveries d
                 SET state = 'sending', attempts = d.attempts + 1, claimed_until = $4, updated_at = $2
                 FROM taken WHERE d.id = taken.id
                 RETURNING d.id, d.notification_id, d.channel, d.alerts, d.attempts, d.queued_at, d.event",
            )
            .await?;
        let mut batch = ClaimBatch::default();
        let mut rows = Vec::new();
        for (channel, budget) in budgets.iter().filter(|(_, b)| *b > 0) {
            let room = total.saturating_sub(rows.len()).min(*budget);
            if room == 0 {
                continue;
            }
            let limit = i64::try_from(room).unwrap_or(i64::MAX);
            rows.extend(tx.query(&take, &[channel, &now, &limit, &until]).await?);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if !ids.is_empty() {
            // An attempt left unfinished by a claim that expired is closed as unknown.
            tx.execute(
                "UPDATE mcpwatch_attempts SET finished_at = $2, outcome = 'unknown',
                 detail = 'the sender stopped before recording an outcome'
                 WHERE delivery_id = ANY($1) AND finished_at IS NULL",
                &[&ids, &now],
            )
            .await?;
            tx.execute(
                "INSERT INTO mcpwatch_attempts (delivery_id, number, started_at)
                 SELECT id, attempts, $2 FROM mcpwatch_deliveries WHERE id = ANY($1)",
                &[&ids, &now],
            )
            .await?;
            let notifications: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
            let bodies = tx
                .query(
                    "SELECT id, received_at, payload_encoding, payload FROM mcpwatch_notifications
                     WHERE id = ANY($1)",
                    &[&notifications],
                )
                .await?;
            let mut by_id = std::collections::HashMap::new();
            for row in bodies {
                let id: i64 = row.get(0);
                let encoding: String = row.get(2);
                by_id.insert(id, (row.get::<_, i64>(1), decode(&encoding, row.get(3))?));
            }
            for row in &rows {
                let notification_id: i64 = row.get(1);
                let Some((received_at, payload)) = by_id.get(&notification_id).cloned() else {
                    continue;
                };
                let alerts: String = row.get(3);
                let attempts: i32 = row.get(4);
                batch.claimed.push(Claimed {
                    id: row.get(0),
                    notification_id,
                    channel: row.get(2),
                    alerts: decode_alerts(&alerts),
                    attempt: u32::try_from(attempts).unwrap_or(0),
                    received_at,
                    queued_at: row.get(5),
                    payload,
                    event: Event::decode(row.get::<_, Option<&str>>(6)),
                });
            }
        }
        let next = tx
            .prepare_cached(
                "SELECT LEAST(
                     (SELECT MIN(next_attempt_at) FROM mcpwatch_deliveries WHERE channel = $1 AND state = 'pending'),
                     (SELECT MIN(claimed_until) FROM mcpwatch_deliveries WHERE channel = $1 AND state = 'sending'))",
            )
            .await?;
        for (channel, _) in budgets.iter().filter(|(_, b)| *b > 0) {
            let t: Option<i64> = tx.query_one(&next, &[channel]).await?.get(0);
            if let Some(t) = t {
                batch.next_due = Some(batch.next_due.map_or(t, |n: i64| n.min(t)));
            }
        }
        tx.commit().await?;
        Ok(batch)
    }

    /// Dead-letters what waits for a channel no replica has configured for an hour: during
    /// a rolling change of configuration, a replica that does not know a new channel yet
    /// must not dead-letter what the others queue for it. A delivery left `sending` to such
    /// a channel by a replica that stopped goes too (its claim expired), its attempt closed.
    async fn retire_channels(&self, known: Vec<String>) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = Self::transaction(&mut client).await?;
        let now = now_ms();
        let before = now.saturating_sub(RETIRE_AFTER_MS);
        tx.execute(
            "UPDATE mcpwatch_attempts a SET finished_at = $2, outcome = 'unknown',
             detail = 'the sender stopped before recording an outcome'
             FROM mcpwatch_deliveries d
             WHERE a.delivery_id = d.id AND a.finished_at IS NULL AND d.state = 'sending'
               AND d.claimed_until <= $2 AND d.queued_at < $3 AND NOT (d.channel = ANY($1))",
            &[&known, &now, &before],
        )
        .await?;
        let retired = tx
            .execute(
                "UPDATE mcpwatch_deliveries
                 SET state = 'dead', claimed_until = NULL, updated_at = $2,
                     last_error = format('channel %s is no longer configured', to_json(channel))
                 WHERE queued_at < $3 AND NOT (channel = ANY($1))
                   AND (state = 'pending' OR (state = 'sending' AND claimed_until <= $2))",
                &[&known, &now, &before],
            )
            .await?;
        tx.commit().await?;
        Ok(count(retired))
    }

    async fn complete(
        &self,
        delivery: i64,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = Self::transaction(&mut client).await?;
        let now = now_ms();
        let number = i32::try_from(attempt).unwrap_or(i32::MAX);
        // Only the claim that made this attempt may record its outcome: a claim that
        // expired and was taken again has a higher attempt number.
        let (name, detail, changed) = match &outcome {
            Outcome::Delivered => (
                "delivered",
                None,
                tx.execute(
                    "UPDATE mcpwatch_deliveries SET state = 'delivered', delivered_at = $3,
                     claimed_until = NULL, last_error = NULL, updated_at = $3
                     WHERE id = $1 AND attempts = $2 AND state = 'sending'",
                    &[&delivery, &number, &now],
                )
                .await?,
            ),
            Outcome::Retry { at, error } => (
                "retry",
                Some(error.as_str()),
                tx.execute(
                    "UPDATE mcpwatch_deliveries SET state = 'pending', next_attempt_at = $4,
                     claimed_until = NULL, last_error = $5, updated_at = $3
                     WHERE id = $1 AND attempts = $2 AND state = 'sending'",
                    &[&delivery, &number, &now, at, error],
                )
                .await?,
            ),
            Outcome::Dead { error } => (
                "dead",
                Some(error.as_str()),
                tx.execute(
                    "UPDATE mcpwatch_deliveries SET state = 'dead', claimed_until = NULL,
                     last_error = $4, updated_at = $3
                     WHERE id = $1 AND attempts = $2 AND state = 'sending'",
                    &[&delivery, &number, &now, error],
                )
                .await?,
            ),
        };
        if changed == 1 {
            tx.execute(
                "UPDATE mcpwatch_attempts SET finished_at = $2, outcome = $3, detail = $4
                 WHERE delivery_id = $1 AND number = $5 AND finished_at IS NULL",
                &[&delivery, &now, &name, &detail, &number],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }

    async fn replay(&self, notification: i64) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let now = now_ms();
        let n = client
            .execute(
                "UPDATE mcpwatch_deliveries SET state = 'pending', attempts = 0, queued_at = $2,
                 next_attempt_at = $2, last_error = NULL, updated_at = $2
                 WHERE notification_id = $1 AND state = 'dead'",
                &[&notification, &now],
            )
            .await?;
        Ok(count(n))
    }

    /// Nothing: a delivery another replica is sending must not be taken from it. One left
    /// `sending` by a replica that stopped is claimed again when its lease runs out.
    async fn recover(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn prune(&self, retention: Duration, window: Duration) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let now = now_ms();
        client
            .execute(
                "DELETE FROM mcpwatch_dedup_keys WHERE received_at < $1",
                &[&now.saturating_sub(millis(window))],
            )
            .await?;
        let before = now.saturating_sub(millis(retention));
        client
            .execute(
                "DELETE FROM mcpwatch_incidents WHERE NOT open AND resolved_at < $1",
                &[&before],
            )
            .await?;
        client
            .execute(
                "DELETE FROM mcpwatch_windows WHERE ends_at < $1",
                &[&before],
            )
            .await?;
        let n = client
            .execute(
                "DELETE FROM mcpwatch_notifications n WHERE received_at < $1 AND NOT EXISTS (
                     SELECT 1 FROM mcpwatch_deliveries d WHERE d.notification_id = n.id
                     AND d.state IN ('pending', 'sending', 'held'))
                   AND NOT EXISTS (SELECT 1 FROM mcpwatch_incidents i WHERE i.notification_id = n.id)
                   AND NOT (EXISTS (SELECT 1 FROM mcpwatch_deliveries d WHERE d.notification_id = n.id
                                    AND d.state = 'summarized')
                            AND EXISTS (SELECT 1 FROM mcpwatch_deliveries s WHERE s.state IN ('pending', 'sending')
                                        AND s.event LIKE '{\"kind\":\"summary\"%'))",
                &[&before],
            )
            .await?;
        Ok(count(n))
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<NotificationView>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(filter.limit).unwrap_or(100);
        let rows = client
            .query(
                "SELECT n.id, n.received_at, n.receiver, n.group_key, n.status, n.alert_count, n.duplicates
                 FROM mcpwatch_notifications n
                 WHERE ($1::BIGINT IS NULL OR n.id < $1)
                   AND ($2::TEXT IS NULL OR n.receiver = $2)
                   AND ($3::TEXT IS NULL AND $4::TEXT IS NULL OR EXISTS (
                        SELECT 1 FROM mcpwatch_deliveries d WHERE d.notification_id = n.id
                        AND ($3::TEXT IS NULL OR d.state = $3) AND ($4::TEXT IS NULL OR d.channel = $4)))
                 ORDER BY n.id DESC LIMIT $5",
                &[
                    &filter.before,
                    &filter.receiver,
                    &filter.state,
                    &filter.channel,
                    &limit,
                ],
            )
            .await?;
        let mut list: Vec<NotificationView> = rows.iter().map(view).collect();
        for n in &mut list {
            n.deliveries = deliveries_of(&client, n.id).await?;
        }
        Ok(list)
    }

    async fn get(&self, id: i64) -> Result<Option<NotificationView>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT id, received_at, receiver, group_key, status, alert_count, duplicates,
                        payload_encoding, payload
                 FROM mcpwatch_notifications WHERE id = $1",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut n = view(&row);
        let encoding: String = row.get(7);
        n.payload = decode(&encoding, row.get(8))
            .ok()
            .and_then(|body| body.json().ok().map(|json| json.into_owned()))
            .and_then(|json| serde_json::from_str(&json).ok());
        n.deliveries = deliveries_of(&client, id).await?;
        Ok(Some(n))
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let client = self.client().await?;
        let now = now_ms();
        let depth = client
            .query(
                "SELECT channel, state, COUNT(*) FROM mcpwatch_deliveries
                 WHERE state IN ('pending', 'sending', 'dead', 'held') GROUP BY channel, state",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let n: i64 = r.get(2);
                (r.get(0), r.get(1), u64::try_from(n).unwrap_or(0))
            })
            .collect();
        let oldest_pending = client
            .query(
                "SELECT channel, MIN(queued_at) FROM mcpwatch_deliveries
                 WHERE state IN ('pending', 'sending') GROUP BY channel",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let queued: i64 = r.get(1);
                (r.get(0), age_seconds(now, queued))
            })
            .collect();
        let incidents = client
            .query(
                "SELECT policy, level + 1, acked_at IS NOT NULL, COUNT(*) FROM mcpwatch_incidents
                 WHERE open GROUP BY 1, 2, 3",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let level: i32 = r.get(1);
                let n: i64 = r.get(3);
                (
                    r.get(0),
                    u32::try_from(level).unwrap_or(0),
                    r.get(2),
                    u64::try_from(n).unwrap_or(0),
                )
            })
            .collect();
        Ok(QueueStats {
            depth,
            oldest_pending,
            disk: None,
            incidents,
            held: self.held().await?,
        })
    }

    async fn escalate(
        &self,
        now: i64,
        policies: Arc<Policies>,
        limit: usize,
    ) -> Result<Vec<(i64, String, u32)>, StoreError> {
        let mut client = self.client().await?;
        let tx = Self::transaction(&mut client).await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // An incident another replica is escalating (or a webhook is updating) is skipped:
        // its turn comes at the next tick, once that is committed.
        let due: Vec<IncidentRow> = tx
            .query(
                &format!(
                    "SELECT {INCIDENT} FROM mcpwatch_incidents WHERE next_at <= $1
                     ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[&now, &limit],
            )
            .await?
            .iter()
            .map(incident_row)
            .collect();
        let mut escalated = Vec::new();
        for row in due {
            let policy = policies.get(&row.policy);
            let change = incident::escalate(row, policy, now);
            let told = !change.tell.is_empty();
            if let Some(row) = apply(&tx, change, now).await?
                && told
            {
                escalated.push((row.id, row.policy, row.level + 1));
            }
        }
        tx.commit().await?;
        Ok(escalated)
    }

    async fn next_escalation(&self) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT MIN(next_at) FROM mcpwatch_incidents WHERE next_at IS NOT NULL",
                &[],
            )
            .await?
            .get(0))
    }

    async fn acknowledge(
        &self,
        incident: i64,
        request: AckRequest,
        policies: Arc<Policies>,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError> {
        let mut client = self.client().await?;
        let tx = Self::transaction(&mut client).await?;
        let Some(row) = tx
            .query_opt(
                &format!("SELECT {INCIDENT} FROM mcpwatch_incidents WHERE id = $1 FOR UPDATE"),
                &[&incident],
            )
            .await?
            .map(|r| incident_row(&r))
        else {
            return Ok(Err(AckRefused::NotFound(incident)));
        };
        let policy = policies.get(&row.policy);
        let change = match incident::acknowledge(row, &request, policy) {
            Ok(change) => change,
            Err(refused) => return Ok(Err(refused)),
        };
        let row = apply(&tx, change, request.now).await?;
        tx.commit().await?;
        Ok(row
            .map(|row| row.view())
            .ok_or(AckRefused::NotFound(incident)))
    }

    async fn incidents(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<IncidentView>, StoreError> {
        let client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(client
            .query(
                &format!(
                    "SELECT {INCIDENT} FROM mcpwatch_incidents WHERE open OR NOT $1
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&open_only, &limit],
            )
            .await?
            .iter()
            .map(|r| incident_row(r).view())
            .collect())
    }

    async fn incident(&self, id: i64) -> Result<Option<IncidentView>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!("SELECT {INCIDENT} FROM mcpwatch_incidents WHERE id = $1"),
                &[&id],
            )
            .await?
            .map(|r| incident_row(&r).view()))
    }

    async fn add_window(&self, w: NewWindow) -> Result<WindowRow, StoreError> {
        let client = self.client().await?;
        let matchers = serde_json::to_string(&w.matchers).unwrap_or_default();
        let id: i64 = client
            .query_one(
                "INSERT INTO mcpwatch_windows
                     (starts_at, ends_at, matchers, author, reason, hold_critical, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &w.starts_at,
                    &w.ends_at,
                    &matchers,
                    &w.author,
                    &w.reason,
                    &w.hold_critical,
                    &w.created_at,
                ],
            )
            .await?
            .get(0);
        Ok(WindowRow { id, window: w })
    }

    async fn end_window(&self, id: i64, now: i64) -> Result<Option<WindowRow>, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE mcpwatch_windows SET ends_at = $2 WHERE id = $1 AND ends_at > $2",
                &[&id, &now],
            )
            .await?;
        Ok(client
            .query_opt(
                &format!("SELECT {WINDOW} FROM mcpwatch_windows WHERE id = $1"),
                &[&id],
            )
            .await?
            .map(|r| window_row(&r)))
    }

    async fn windows(&self, since: i64) -> Result<Vec<WindowRow>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                &format!("SELECT {WINDOW} FROM mcpwatch_windows WHERE ends_at > $1 ORDER BY id"),
                &[&since],
            )
            .await?
            .iter()
            .map(window_row)
            .collect())
    }

    async fn held(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT hold, COUNT(DISTINCT notification_id) FROM mcpwatch_deliveries
                 WHERE state = 'held' GROUP BY hold",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let n: i64 = r.get(1);
                (r.get(0), u64::try_from(n).unwrap_or(0))
            })
            .collect())
    }

    async fn release(&self, window: String, now: i64) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = Self::transaction(&mut client).await?;
        // Replicas releasing the same window take turns: the second finds nothing held.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
            &[&format!("release\n{window}")],
        )
        .await?;
        // A one-off window is over when the database says so, whatever this replica's
        // view of the windows (one added elsewhere a moment ago) says.
        if let Some(id) = window
            .strip_prefix('#')
            .and_then(|id| id.parse::<i64>().ok())
        {
            let ends: Option<i64> = tx
                .query_opt("SELECT ends_at FROM mcpwatch_windows WHERE id = $1", &[&id])
                .await?
                .map(|r| r.get(0));
            if ends.is_some_and(|ends| ends > now) {
                return Ok(0);
            }
        }
        let rows = tx
            .query(
                "SELECT id, channel, notification_id, alerts FROM mcpwatch_deliveries
                 WHERE state = 'held' AND hold = $1 ORDER BY id FOR UPDATE",
                &[&window],
            )
            .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let held = rows
            .iter()
            .map(|r| {
                let alerts: &str = r.get(3);
                (r.get(1), r.get(2), decode_alerts(alerts))
            })
            .collect();
        let summaries = super::summaries(&window, held);
        for (channel, notification, event) in &summaries {
            tell(
                &tx,
                *notification,
                &[],
                &[(channel.clone(), Some(event.clone()))],
                now,
                None,
            )
            .await?;
        }
        tx.execute(
            "UPDATE mcpwatch_deliveries SET state = 'summarized', updated_at = $2 WHERE id = ANY($1)",
            &[&ids, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(summaries.len())
    }

    async fn payloads(&self, ids: Vec<i64>) -> Result<Vec<(i64, Body)>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT id, payload_encoding, payload FROM mcpwatch_notifications WHERE id = ANY($1)",
                &[&ids],
            )
            .await?
            .into_iter()
            .map(|r| {
                let encoding: String = r.get(1);
                Ok((r.get(0), decode(&encoding, r.get(2))?))
            })
            .collect()
    }
}

/// The columns [`incident_row`] reads, in its order.
const INCIDENT: &str =
    "id, policy, receiver, group_key, open, level, told, notification_id, alerts,
    opened_at, next_at, acked_at, acked_by, generation, resolved_at";

fn incident_row(r: &tokio_postgres::Row) -> IncidentRow {
    let level: i32 = r.get(5);
    let told: &str = r.get(6);
    let alerts: &str = r.get(8);
    IncidentRow {
        id: r.get(0),
        policy: r.get(1),
        receiver: r.get(2),
        group_key: r.get(3),
        open: r.get(4),
        level: u32::try_from(level).unwrap_or(0),
        told: serde_json::from_str(told).unwrap_or_default(),
        notification_id: r.get(7),
        alerts: decode_alerts(alerts),
        opened_at: r.get(9),
        next_at: r.get(10),
        acked_at: r.get(11),
        acked_by: r.get(12),
        generation: r.get(13),
        resolved_at: r.get(14),
    }
}

/// Writes an incident's row (a new one gets its id) and the deliveries it asks for.
async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    change: Change,
    now: i64,
) -> Result<Option<IncidentRow>, StoreError> {
    let change = match &change.row {
        Some(row) => {
            let level = i32::try_from(row.level).unwrap_or(i32::MAX);
            let told = serde_json::to_string(&row.told).unwrap_or_default();
            let alerts = encode_alerts(&row.alerts);
            if row.id == 0 {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO mcpwatch_incidents (policy, receiver, group_key, open, level, told,
                             notification_id, alerts, opened_at, next_at, acked_at, acked_by, generation,
                             resolved_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                         RETURNING id",
                        &[
                            &row.policy,
                            &row.receiver,
                            &row.group_key,
                            &row.open,
                            &level,
                            &told,
                            &row.notification_id,
                            &alerts,
                            &row.opened_at,
                            &row.next_at,
                            &row.acked_at,
                            &row.acked_by,
                            &row.generation,
                            &row.resolved_at,
                        ],
                    )
                    .await?
                    .get(0);
                change.with_id(id)
            } else {
                tx.execute(
                    "UPDATE mcpwatch_incidents SET open = $2, level = $3, told = $4,
                         notification_id = $5, alerts = $6, next_at = $7, acked_at = $8,
                         acked_by = $9, generation = $10, resolved_at = $11
                     WHERE id = $1",
                    &[
                        &row.id,
                        &row.open,
                        &level,
                        &told,
                        &row.notification_id,
                        &alerts,
                        &row.next_at,
                        &row.acked_at,
                        &row.acked_by,
                        &row.generation,
                        &row.resolved_at,
                    ],
                )
                .await?;
                change
            }
        }
        None => change,
    };
    if let Some(row) = &change.row {
        tell(
            tx,
            row.notification_id,
            &row.alerts,
            &change.tell,
            now,
            None,
        )
        .await?;
    }
    Ok(change.row)
}

async fn tell(
    tx: &deadpool_postgres::Transaction<'_>,
    notification: i64,
    alerts: &[usize],
    tell: &[(String, Option<Event>)],
    now: i64,
    hold: Option<&str>,
) -> Result<(), StoreError> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO mcpwatch_deliveries
                 (notification_id, channel, alerts, state, queued_at, next_attempt_at, updated_at, event, hold)
             VALUES ($1, $2, $3, $6, $4, $4, $4, $5, $7)",
        )
        .await?;
    let alerts = encode_alerts(alerts);
    let state = if hold.is_some() {
        state::HELD
    } else {
        state::PENDING
    };
    for (channel, event) in tell {
        let event = event.as_ref().map(Event::encode);
        tx.execute(
            &insert,
            &[&notification, channel, &alerts, &now, &event, &state, &hold],
        )
        .await?;
    }
    Ok(())
}

const WINDOW: &str = "id, starts_at, ends_at, matchers, author, reason, hold_critical, created_at";

fn window_row(r: &tokio_postgres::Row) -> WindowRow {
    let matchers: &str = r.get(3);
    WindowRow {
        id: r.get(0),
        window: NewWindow {
            starts_at: r.get(1),
            ends_at: r.get(2),
            matchers: serde_json::from_str(matchers).unwrap_or_default(),
            author: r.get(4),
            reason: r.get(5),
            hold_critical: r.get(6),
            created_at: r.get(7),
        },
    }
}

fn view(r: &tokio_postgres::Row) -> NotificationView {
    let alerts: i32 = r.get(5);
    let duplicates: i32 = r.get(6);
    NotificationView {
        id: r.get(0),
        received_at: format_rfc3339(r.get(1)),
        receiver: r.get(2),
        group_key: r.get(3),
        status: r.get(4),
        alerts: usize::try_from(alerts).unwrap_or(0),
        duplicates: u64::try_from(duplicates).unwrap_or(0),
        deliveries: Vec::new(),
        payload: None,
    }
}

async fn deliveries_of(
    client: &Object,
    notification: i64,
) -> Result<Vec<DeliveryView>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id, channel, state, attempts, last_error, next_attempt_at, delivered_at, alerts
             FROM mcpwatch_deliveries WHERE notification_id = $1 ORDER BY id",
        )
        .await?;
    let params: [&(dyn ToSql + Sync); 1] = [&notification];
    Ok(client
        .query(&statement, &params)
        .await?
        .iter()
        .map(|r| {
            let state: String = r.get(2);
            let next: i64 = r.get(5);
            let alerts: String = r.get(7);
            let attempts: i32 = r.get(3);
            DeliveryView {
                id: r.get(0),
                channel: r.get(1),
                next_attempt_at: (state == state::PENDING).then(|| format_rfc3339(next)),
                state,
                attempts: u32::try_from(attempts).unwrap_or(0),
                last_error: r.get(4),
                delivered_at: r.get::<_, Option<i64>>(6).map(format_rfc3339),
                alerts: decode_alerts(&alerts).len(),
            }
        })
        .collect())
}
