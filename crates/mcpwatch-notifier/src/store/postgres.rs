//! The shared store: PostgreSQL (`storage.postgres.dsn`), for several notifier replicas
//! behind Alertmanager's HA pair. Every replica accepts into the same tables: a copy that
//! reaches two replicas at once is stored once (the dedup key's row is taken first, so the
//! second waits for the first to commit and then finds it), deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED` and a lease, and a claim whose replica died expires and is taken
//! by another. Schema changes run under an advisory lock, so replicas may start together.
//!
//! A commit is durable when PostgreSQL says so (`synchronous_commit`, on by default).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use mcpwatch_core::Secret;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::sql::{self, Cell, Row, Tx, Value};
use super::{
    Accepted, AckRefused, AckRequest, Body, ClaimBatch, DedupKey, Entry, IncidentView, ListFilter, Note, RemediationClaims, Snapshot, DEFAULT_REMEDIATION_LEASE,
    NewNotification, NewWindow, NotificationView, Outcome, Policies, QueueStats, SCHEMA_VERSION,
    Store, StoreError, WindowRow,
};
use crate::time::now_ms;

// Versions before 4: 2 added incidents, maintenance windows, a delivery's event and hold.

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
ALTER TABLE mcpwatch_notifications ADD COLUMN IF NOT EXISTS dedup_key BYTEA;
ALTER TABLE mcpwatch_notifications ADD COLUMN IF NOT EXISTS sender BIGINT;
-- The senders answered for the key's notification: a sender's hex number, when (Unix ms).
ALTER TABLE mcpwatch_dedup_keys ADD COLUMN IF NOT EXISTS answers JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE mcpwatch_deliveries ADD COLUMN IF NOT EXISTS stream BIGINT;
CREATE INDEX IF NOT EXISTS mcpwatch_deliveries_queued_stream ON mcpwatch_deliveries (stream, channel)
    WHERE stream IS NOT NULL AND state IN ('pending', 'sending');
ALTER TABLE mcpwatch_incidents ADD COLUMN IF NOT EXISTS resolved_by TEXT;
ALTER TABLE mcpwatch_incidents ADD COLUMN IF NOT EXISTS severity TEXT;
ALTER TABLE mcpwatch_incidents ADD COLUMN IF NOT EXISTS title TEXT;
ALTER TABLE mcpwatch_incidents ADD COLUMN IF NOT EXISTS next_update_at BIGINT;
ALTER TABLE mcpwatch_incidents ADD COLUMN IF NOT EXISTS remediation TEXT;
CREATE INDEX IF NOT EXISTS mcpwatch_incidents_update_due ON mcpwatch_incidents (next_update_at)
    WHERE next_update_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS mcpwatch_incident_events (
    id BIGSERIAL PRIMARY KEY,
    incident BIGINT NOT NULL REFERENCES mcpwatch_incidents (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    channel TEXT,
    level INTEGER,
    detail TEXT,
    alerts TEXT
);
CREATE INDEX IF NOT EXISTS mcpwatch_incident_events_incident ON mcpwatch_incident_events (incident, at, id);
CREATE TABLE IF NOT EXISTS mcpwatch_remediations (
    incident BIGINT NOT NULL REFERENCES mcpwatch_incidents (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (incident, action)
);
CREATE TABLE IF NOT EXISTS mcpwatch_status_groups (
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    component TEXT NOT NULL,
    state INTEGER NOT NULL,
    detail TEXT,
    since BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (receiver, group_key, component)
);
CREATE INDEX IF NOT EXISTS mcpwatch_status_groups_component ON mcpwatch_status_groups (component);
CREATE TABLE IF NOT EXISTS mcpwatch_status_changes (
    id BIGSERIAL PRIMARY KEY,
    component TEXT NOT NULL,
    state INTEGER NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS mcpwatch_status_changes_component ON mcpwatch_status_changes (component, at);
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
        match e.as_db_error() {
            Some(db) => StoreError::Postgres {
                code: Some(db.code().code().to_owned()),
                message: format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
            },
            None => StoreError::Postgres {
                code: e.code().map(|c| c.code().to_owned()),
                message: e.to_string(),
            },
        }
    }
}

/// Runs the store's logic in one transaction, committed when it succeeds (rolled back,
/// by dropping it, when not).
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let transaction = PostgresStore::transaction(&mut client).await?;
        let result = {
            let mut pg = PgTx { tx: &transaction };
            let $tx = &mut pg;
            $body.await
        };
        match result {
            Ok(value) => {
                transaction.commit().await?;
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }};
}

impl PostgresStore {
    /// Connects (at most `connections` at a time) and brings the schema up to date.
    pub async fn open(dsn: &Secret, connections: usize) -> Result<Self, StoreError> {
        let target = mcpwatch_pgconn::target_name(dsn)?;
        let (mut config, tls) = mcpwatch_pgconn::client_config(dsn)?;
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
            .map_err(|e| StoreError::Unusable(format!("PostgreSQL pool: {e}")))?;
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
            other => StoreError::Postgres {
                code: None,
                message: format!("{}: {other}", self.target),
            },
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        // A schema already current is left alone: its ALTER TABLEs would take each table's
        // exclusive lock in turn, and deadlock with a replica already claiming (which
        // holds one table and asks for the next).
        let exists: bool = tx
            .query_one(
                "SELECT to_regclass('mcpwatch_notifier_schema') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        let found: Option<i32> = if exists {
            tx.query_one("SELECT max(version) FROM mcpwatch_notifier_schema", &[])
                .await?
                .get(0)
        } else {
            None
        };
        if found == i32::try_from(SCHEMA_VERSION).ok() {
            tx.commit().await?;
            return Ok(());
        }
        tx.batch_execute(SCHEMA).await?;
        let version: Option<i32> = tx
            .query_opt("SELECT max(version) FROM mcpwatch_notifier_schema", &[])
            .await?
            .and_then(|r| r.get(0));
        let current = i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX);
        match version {
            Some(v) if v > current => {
                return Err(StoreError::Unusable(format!(
                    "the database has notifier schema version {v}, newer than this notifier's {SCHEMA_VERSION}; use a newer notifier"
                )));
            }
            Some(v) if v == current => {}
            _ => {
                tx.execute("DELETE FROM mcpwatch_notifier_schema", &[])
                    .await?;
                tx.execute(
                    "INSERT INTO mcpwatch_notifier_schema (version) VALUES ($1)",
                    &[&current],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A statement in PostgreSQL's words: parameters `?N` numbered `$N`.
fn dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A parameter is written as the type the statement expects.
impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let int = |v: i64, out: &mut BytesMut| match *ty {
            Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Type::BOOL => (v != 0).to_sql(ty, out),
            _ => v.to_sql(ty, out),
        };
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => int(v, out),
            Value::Bool(v) if *ty == Type::BOOL => v.to_sql(ty, out),
            Value::Bool(v) => int(i64::from(v), out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Parameters as tokio-postgres takes them.
fn params<'a>(args: &'a [Value<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn cells(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?
                .map(|v| Cell::Int(v.into()))
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Cell::Int(v.into()))
        } else if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map(|v| Cell::Int(i64::from(v)))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob)
        } else if *ty == Type::VOID {
            None
        } else {
            row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

/// A sender as `mcpwatch_dedup_keys.answers` names it.
fn answer_token(sender: i64) -> String {
    format!("{:016x}", sender.cast_unsigned())
}

/// The store's logic on one PostgreSQL transaction.
struct PgTx<'t, 'c> {
    tx: &'t deadpool_postgres::Transaction<'c>,
}

impl PgTx<'_, '_> {
    /// Records that `sender` was answered at `at` for notification `id` (stored with `key`).
    async fn answered(
        &self,
        key: &DedupKey,
        id: i64,
        sender: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        let token = answer_token(sender);
        self.run(
            "UPDATE mcpwatch_dedup_keys SET answers = answers || jsonb_build_object($3::text, $4::bigint)
             WHERE key = $1 AND notification_id = $2 AND (answers ->> $3::text) IS NULL",
            &[
                Value::Blob(&key.0[..]),
                Value::Int(id),
                Value::Text(&token),
                Value::Int(at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn run(
        &self,
        sql: &str,
        args: &[Value<'_>],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = self.tx.prepare_cached(sql).await?;
        Ok(self.tx.query(&statement, &params(args)).await?)
    }
}

impl Tx for PgTx<'_, '_> {
    async fn execute(&mut self, sql: &'static str, args: &[Value<'_>]) -> Result<u64, StoreError> {
        let statement = self.tx.prepare_cached(&dialect(sql)).await?;
        Ok(self.tx.execute(&statement, &params(args)).await?)
    }

    async fn insert(&mut self, sql: &'static str, args: &[Value<'_>]) -> Result<i64, StoreError> {
        let rows = self
            .run(&format!("{} RETURNING id", dialect(sql)), args)
            .await?;
        let row = rows.first().map(cells).transpose()?.unwrap_or_default();
        row.i64(0)
    }

    async fn query(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        self.run(&dialect(sql), args)
            .await?
            .iter()
            .map(cells)
            .collect()
    }

    async fn lock(&mut self, name: &str, wait: bool) -> Result<bool, StoreError> {
        if wait {
            self.run(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[Value::Text(name)],
            )
            .await?;
            return Ok(true);
        }
        let rows = self
            .run(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                &[Value::Text(name)],
            )
            .await?;
        rows.first()
            .map(cells)
            .transpose()?
            .unwrap_or_default()
            .bool(0)
    }

    /// The key's row first: a replica accepting the same copy at the same moment waits
    /// here for this transaction, then finds the key taken.
    async fn find_copy(
        &mut self,
        key: &DedupKey,
        at: i64,
        start: i64,
        sender: i64,
    ) -> Result<Option<i64>, StoreError> {
        let key = &key.0[..];
        let token = answer_token(sender);
        // Taken over when older than the window, or when its sender was answered before
        // this copy arrived (a new sending).
        let owned = self
            .run(
                "INSERT INTO mcpwatch_dedup_keys (key, notification_id, received_at, answers)
                 VALUES ($1, NULL, $2, '{}'::jsonb)
                 ON CONFLICT (key) DO UPDATE
                 SET notification_id = NULL, received_at = excluded.received_at, answers = '{}'::jsonb
                 WHERE mcpwatch_dedup_keys.received_at < $3
                    OR (mcpwatch_dedup_keys.answers ->> $4::text)::bigint < $2
                 RETURNING 1",
                &[
                    Value::Blob(key),
                    Value::Int(at),
                    Value::Int(start),
                    Value::Text(&token),
                ],
            )
            .await?;
        if !owned.is_empty() {
            return Ok(None);
        }
        let rows = self
            .run(
                "SELECT notification_id FROM mcpwatch_dedup_keys WHERE key = $1",
                &[Value::Blob(key)],
            )
            .await?;
        match rows
            .first()
            .map(cells)
            .transpose()?
            .unwrap_or_default()
            .opt_i64(0)?
        {
            Some(id) => Ok(Some(id)),
            None => Err(StoreError::Contended),
        }
    }

    async fn keep_key(
        &mut self,
        key: &DedupKey,
        id: i64,
        _at: i64,
        _start: i64,
    ) -> Result<(), StoreError> {
        self.run(
            "UPDATE mcpwatch_dedup_keys SET notification_id = $2 WHERE key = $1",
            &[Value::Blob(&key.0[..]), Value::Int(id)],
        )
        .await?;
        Ok(())
    }

    async fn queued_in_stream(
        &mut self,
        stream: i64,
        channel: &str,
        id: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.run(
            "SELECT id FROM mcpwatch_deliveries
             WHERE stream = $1 AND channel = $2 AND state IN ('pending', 'sending') AND id <> $3",
            &[Value::Int(stream), Value::Text(channel), Value::Int(id)],
        )
        .await?
        .iter()
        .map(|r| cells(r)?.i64(0))
        .collect()
    }

    /// Nothing: the queue's index answers [`Tx::queued_in_stream`].
    async fn queued(&mut self, _stream: i64, _channel: &str, _id: i64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn unqueued(&mut self, _id: i64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn requeued(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn forget_keys(&mut self, start: i64) -> Result<(), StoreError> {
        self.run(
            "DELETE FROM mcpwatch_dedup_keys WHERE received_at < $1",
            &[Value::Int(start)],
        )
        .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn accept(&self, n: NewNotification) -> Result<Accepted, StoreError> {
        in_transaction!(self, |tx| sql::accept(tx, &n))
    }

    async fn claim(
        &self,
        now: i64,
        budgets: Vec<(String, usize)>,
        total: usize,
        lease: Duration,
    ) -> Result<ClaimBatch, StoreError> {
        // Leases are read on the replicas' clocks, which must agree within the margin a
        // claim has over the longest attempt (NTP does far better).
        in_transaction!(self, |tx| sql::claim(tx, now, &budgets, total, lease))
    }

    /// Dead-letters what waits for a channel no replica has configured for an hour: during
    /// a rolling change of configuration, a replica that does not know a new channel yet
    /// must not dead-letter what the others queue for it.
    async fn retire_channels(&self, known: Vec<String>) -> Result<usize, StoreError> {
        let now = now_ms();
        let before = now.saturating_sub(RETIRE_AFTER_MS);
        in_transaction!(self, |tx| sql::retire(tx, &known, now, before))
    }

    async fn answered(
        &self,
        key: DedupKey,
        notification: i64,
        sender: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        in_transaction!(self, |tx| tx.answered(&key, notification, sender, at))
    }

    async fn complete(
        &self,
        delivery: i64,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        in_transaction!(self, |tx| sql::complete(
            tx, delivery, attempt, &outcome, now
        ))
    }

    async fn replay(&self, notification: i64) -> Result<usize, StoreError> {
        let now = now_ms();
        in_transaction!(self, |tx| sql::replay(tx, notification, now))
    }

    /// Nothing: a delivery another replica is sending must not be taken from it. One left
    /// `sending` by a replica that stopped is claimed again when its lease runs out.
    async fn recover(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn prune(&self, retention: Duration, window: Duration) -> Result<usize, StoreError> {
        let now = now_ms();
        in_transaction!(self, |tx| sql::prune(tx, now, retention, window))
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<NotificationView>, StoreError> {
        in_transaction!(self, |tx| sql::list(tx, &filter))
    }

    async fn get(&self, id: i64) -> Result<Option<NotificationView>, StoreError> {
        in_transaction!(self, |tx| sql::get(tx, id))
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let now = now_ms();
        in_transaction!(self, |tx| sql::stats(tx, now))
    }

    async fn escalate(
        &self,
        now: i64,
        policies: Arc<Policies>,
        limit: usize,
    ) -> Result<Vec<(i64, String, u32)>, StoreError> {
        in_transaction!(self, |tx| sql::escalate(tx, now, &policies, limit))
    }

    async fn next_escalation(&self) -> Result<Option<i64>, StoreError> {
        in_transaction!(self, |tx| sql::next_escalation(tx))
    }

    async fn acknowledge(
        &self,
        incident: i64,
        request: AckRequest,
        policies: Arc<Policies>,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError> {
        in_transaction!(self, |tx| sql::acknowledge(
            tx, incident, &request, &policies
        ))
    }

    async fn incidents(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<IncidentView>, StoreError> {
        in_transaction!(self, |tx| sql::incidents(tx, open_only, limit))
    }

    async fn incident(&self, id: i64) -> Result<Option<IncidentView>, StoreError> {
        in_transaction!(self, |tx| sql::incident(tx, id))
    }

    async fn resolve(
        &self,
        incident: i64,
        by: String,
        now: i64,
        policies: Arc<Policies>,
        quiet: Vec<String>,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError> {
        in_transaction!(self, |tx| sql::resolve(
            tx, incident, &by, now, &policies, &quiet
        ))
    }

    async fn timeline(&self, incident: i64) -> Result<Vec<Entry>, StoreError> {
        in_transaction!(self, |tx| sql::timeline(tx, incident))
    }

    async fn record(&self, incident: i64, at: i64, note: Note) -> Result<(), StoreError> {
        in_transaction!(self, |tx| sql::record(tx, incident, at, &note))
    }

    async fn status(&self, since: i64) -> Result<Snapshot, StoreError> {
        in_transaction!(self, |tx| sql::status(tx, since))
    }

    async fn claim_remediations(
        &self,
        now: i64,
        owner: String,
        leases: BTreeMap<String, Duration>,
        limit: usize,
        policies: Arc<Policies>,
    ) -> Result<RemediationClaims, StoreError> {
        in_transaction!(self, |tx| sql::claim_remediations(
            tx,
            now,
            &owner,
            &leases,
            DEFAULT_REMEDIATION_LEASE,
            limit,
            &policies
        ))
    }

    async fn finish_remediation(
        &self,
        incident: i64,
        action: String,
        owner: String,
        now: i64,
        state: &'static str,
        note: Note,
        policies: Arc<Policies>,
    ) -> Result<bool, StoreError> {
        in_transaction!(self, |tx| sql::finish_remediation(
            tx, incident, &action, &owner, now, state, &note, &policies
        ))
    }

    async fn add_window(&self, window: NewWindow) -> Result<WindowRow, StoreError> {
        in_transaction!(self, |tx| sql::add_window(tx, &window))
    }

    async fn end_window(&self, id: i64, now: i64) -> Result<Option<WindowRow>, StoreError> {
        in_transaction!(self, |tx| sql::end_window(tx, id, now))
    }

    async fn windows(&self, since: i64) -> Result<Vec<WindowRow>, StoreError> {
        in_transaction!(self, |tx| sql::windows(tx, since))
    }

    async fn held(&self) -> Result<Vec<(String, u64)>, StoreError> {
        in_transaction!(self, |tx| sql::held(tx))
    }

    async fn release(&self, window: String, now: i64) -> Result<usize, StoreError> {
        in_transaction!(self, |tx| sql::release(tx, &window, now))
    }

    async fn payloads(&self, ids: Vec<i64>) -> Result<Vec<(i64, Body)>, StoreError> {
        in_transaction!(self, |tx| sql::payloads(tx, &ids))
    }
}
