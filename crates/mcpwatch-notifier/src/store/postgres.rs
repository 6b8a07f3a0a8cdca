//! The shared store: PostgreSQL (`storage.postgres.dsn`), for several notifier replicas
//! behind Alertmanager's HA pair. Every replica accepts into the same tables: a copy that
//! reaches two replicas at once is stored once (the dedup key's row is taken first, so the
//! second waits for the first to commit and then finds it), deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED` and a lease, and a claim whose replica died expires and is taken
//! by another. Schema changes run under an advisory lock, so replicas may start together.
//!
//! A commit is durable when PostgreSQL says so (`synchronous_commit`, on by default).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use mcpwatch_core::Secret;
use tokio_postgres::types::ToSql;

use super::{
    Accepted, Body, ClaimBatch, Claimed, DeliveryView, ListFilter, NewNotification,
    NotificationView, Outcome, QueueStats, Store, StoreError, age_seconds, decode_alerts,
    encode_alerts, millis, state,
};
use crate::time::{format_rfc3339, now_ms};

/// The schema this notifier writes; a database at a later one is refused.
const SCHEMA_VERSION: i32 = 1;

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
        let target = mcpwatch_postgres::target_name(dsn)
            .map_err(|e| StoreError::Other(format!("storage.postgres.dsn: {e}")))?;
        let (mut config, tls) = mcpwatch_postgres::client_config(dsn)
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
                     (notification_id, channel, alerts, state, queued_at, next_attempt_at, updated_at)
                 VALUES ($1, $2, $3, 'pending', $4, $4, $4)",
            )
            .await?;
        for delivery in &n.deliveries {
            let alerts = encode_alerts(&delivery.alerts);
            tx.execute(&insert, &[&id, &delivery.channel, &alerts, &n.received_at])
                .await?;
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
                 RETURNING d.id, d.notification_id, d.channel, d.alerts, d.attempts, d.queued_at",
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
        let n = client
            .execute(
                "DELETE FROM mcpwatch_notifications n WHERE received_at < $1 AND NOT EXISTS (
                     SELECT 1 FROM mcpwatch_deliveries d WHERE d.notification_id = n.id
                     AND d.state IN ('pending', 'sending'))",
                &[&now.saturating_sub(millis(retention))],
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
                 WHERE state IN ('pending', 'sending', 'dead') GROUP BY channel, state",
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
        Ok(QueueStats {
            depth,
            oldest_pending,
            disk: None,
        })
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
