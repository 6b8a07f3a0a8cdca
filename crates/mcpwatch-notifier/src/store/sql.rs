//! The store's logic, written once: accepting, claiming in order, completing, retiring,
//! pruning, incidents, maintenance windows and the reads, over a small transaction trait
//! ([`Tx`]) that each database implements in its own dialect. Statements are written with
//! `?N` parameters and end, where a shared database needs it, with a `FOR UPDATE` clause;
//! SQLite (one writer) drops that clause, PostgreSQL numbers parameters `$N`.
//!
//! Order: deliveries of one alert group to one channel (a *stream*) go out in the order
//! they were accepted, and a newer state supersedes older ones not yet sent. A delivery is
//! claimed only when no older one of its stream is being sent; an older one still waiting
//! (a retry, one a crash interrupted, a replayed dead letter) is superseded when a newer
//! one exists, never sent after it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Accepted, AckRefused, AckRequest, Body, ClaimBatch, Claimed, DedupKey, DeliveryView, Event,
    IncidentView, ListFilter, NewNotification, NewWindow, NotificationView, Outcome, Policies,
    QueueStats, StoreError, WindowRow, age_seconds, decode_alerts, encode_alerts, millis, state,
};
use crate::incident::{self, Change, IncidentRow};
use crate::statuspage::{self, GroupStatus, Snapshot};
use super::{RemediationClaim, RemediationClaims};
use crate::time::format_rfc3339;
use crate::timeline::{Entry, Note, kind};

/// A statement's parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<usize> for Value<'_> {
    fn from(v: usize) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A statement's parameters, each converted to a [`Value`].
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::store::sql::Value::from($v)),*] };
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A row read, its cells in the statement's column order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row(pub(crate) Vec<Cell>);

/// A column that does not hold what the statement expects. What it holds is named by its
/// kind only: a cell can be a whole stored body.
fn column(i: usize, expected: &str, found: &Cell) -> StoreError {
    let found = match found {
        Cell::Null => "null".to_owned(),
        Cell::Int(_) => "an integer".to_owned(),
        Cell::Text(text) => format!("text of {} bytes", text.len()),
        Cell::Blob(bytes) => format!("a blob of {} bytes", bytes.len()),
    };
    StoreError::Column(format!(
        "column {i} holds {found} where {expected} was expected"
    ))
}

impl Row {
    fn cell(&self, i: usize) -> &Cell {
        self.0.get(i).unwrap_or(&Cell::Null)
    }

    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(i) {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            other => Err(column(i, "an integer", other)),
        }
    }

    pub(crate) fn i64(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_i64(i)?
            .ok_or_else(|| column(i, "an integer", &Cell::Null))
    }

    pub(crate) fn u32(&self, i: usize) -> Result<u32, StoreError> {
        Ok(u32::try_from(self.i64(i)?.max(0)).unwrap_or(u32::MAX))
    }

    pub(crate) fn u64(&self, i: usize) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.i64(i)?.max(0)).unwrap_or(0))
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.i64(i)? != 0)
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.cell(i) {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            other => Err(column(i, "text", other)),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| column(i, "text", &Cell::Null))
    }

    /// A stored body: its encoding in column `i`, its bytes in `i + 1` (taken).
    pub(crate) fn take_body(&mut self, i: usize) -> Result<Body, StoreError> {
        let encoding = self.text(i)?;
        let bytes = match self
            .0
            .get_mut(i + 1)
            .map(|cell| std::mem::replace(cell, Cell::Null))
        {
            Some(Cell::Blob(bytes)) => bytes,
            Some(Cell::Text(text)) => text.into_bytes(),
            other => {
                return Err(column(i + 1, "a body", &other.unwrap_or(Cell::Null)));
            }
        };
        match encoding.as_str() {
            "lz4" => Ok(Body::Lz4(bytes)),
            "json" => String::from_utf8(bytes)
                .map(Body::Json)
                .map_err(|e| StoreError::Damaged(format!("the stored body is not UTF-8: {e}"))),
            other => Err(StoreError::Damaged(format!(
                "the stored body has an unknown encoding {other:?}"
            ))),
        }
    }
}

/// A body as the stores keep it: its encoding and its bytes.
pub(crate) fn body_parts(body: &Body) -> (&'static str, &[u8]) {
    match body {
        Body::Json(text) => ("json", text.as_bytes()),
        Body::Lz4(bytes) => ("lz4", bytes),
    }
}

/// One transaction on a store's database, in its dialect.
pub(crate) trait Tx {
    /// Runs a statement; the rows it changed.
    fn execute(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> impl Future<Output = Result<u64, StoreError>>;

    /// Runs an `INSERT`; the id of the row it made.
    fn insert(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> impl Future<Output = Result<i64, StoreError>>;

    /// Runs a query; its rows.
    fn query(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>>;

    /// Takes a lock named `name` until the transaction ends: waiting for it when `wait`,
    /// else false when another transaction holds it. A database with one writer has
    /// nothing to lock.
    fn lock(&mut self, name: &str, wait: bool) -> impl Future<Output = Result<bool, StoreError>>;

    /// The notification stored with `key` since `start` of which this is a copy, if any:
    /// one `sender` had not been answered for when this copy arrived (`at`); a copy
    /// arriving after its sender's answer is a new sending. Otherwise the key is the
    /// caller's to store (another replica storing it at once waits, or is refused).
    fn find_copy(
        &mut self,
        key: &DedupKey,
        at: i64,
        start: i64,
        sender: i64,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>>;

    /// Records that `key` is notification `id`'s, once it is stored.
    fn keep_key(
        &mut self,
        key: &DedupKey,
        id: i64,
        at: i64,
        start: i64,
    ) -> impl Future<Output = Result<(), StoreError>>;

    /// Forgets the keys received before `start`.
    fn forget_keys(&mut self, start: i64) -> impl Future<Output = Result<(), StoreError>>;

    /// The deliveries queued (pending or sending) to `channel` in `stream` besides `id`, as
    /// far as the store knows at once: it may name some that left the queue since, or
    /// belong to another group sharing the number; the caller checks each.
    fn queued_in_stream(
        &mut self,
        stream: i64,
        channel: &str,
        id: i64,
    ) -> impl Future<Output = Result<Vec<i64>, StoreError>>;

    /// Delivery `id` of `stream` to `channel` joined the queue (accepted or replayed).
    fn queued(
        &mut self,
        stream: i64,
        channel: &str,
        id: i64,
    ) -> impl Future<Output = Result<(), StoreError>>;

    /// Delivery `id` left the queue for good (sent, dead or superseded).
    fn unqueued(&mut self, id: i64) -> impl Future<Output = Result<(), StoreError>>;

    /// Deliveries left the queue at once (a retired channel): what the store knows of the
    /// queue is read again.
    fn requeued(&mut self) -> impl Future<Output = Result<(), StoreError>>;
}

/// The stream of an alert group's deliveries: a number from its receiver and group key
/// (the statements that order by it compare the receiver and group key too, so that two
/// groups sharing a number are never taken for one).
pub(crate) fn stream(receiver: &str, group_key: &str) -> i64 {
    crate::payload::number(&[receiver, group_key])
}

const INSERT_DELIVERY: &str = "INSERT INTO mcpwatch_deliveries
    (notification_id, channel, alerts, state, queued_at, next_attempt_at, updated_at, event, hold, stream)
    VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, ?6, ?7, ?8)";

pub(crate) async fn accept<T: Tx>(tx: &mut T, n: &NewNotification) -> Result<Accepted, StoreError> {
    let window_start = n.received_at.saturating_sub(millis(n.dedup_window));
    if let Some(id) = tx
        .find_copy(&n.dedup_key, n.received_at, window_start, n.sender)
        .await?
    {
        tx.execute(
            "UPDATE mcpwatch_notifications SET duplicates = duplicates + 1 WHERE id = ?1",
            args![id],
        )
        .await?;
        return Ok(Accepted::Duplicate(id));
    }
    let (encoding, payload) = body_parts(&n.payload);
    let id = tx
        .insert(
            "INSERT INTO mcpwatch_notifications
                 (received_at, receiver, group_key, status, alert_count, payload_encoding, payload,
                  dedup_key, sender)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            args![
                n.received_at,
                &n.receiver,
                &n.group_key,
                &n.status,
                n.alert_count,
                encoding,
                payload,
                &n.dedup_key.0[..],
                n.sender
            ],
        )
        .await?;
    let stream = stream(&n.receiver, &n.group_key);
    for delivery in &n.deliveries {
        let alerts = encode_alerts(&delivery.alerts);
        let state = if delivery.hold.is_some() {
            state::HELD
        } else {
            state::PENDING
        };
        let queued = tx
            .insert(
                INSERT_DELIVERY,
                args![
                    id,
                    &delivery.channel,
                    &alerts,
                    state,
                    n.received_at,
                    None::<&str>,
                    delivery.hold.as_deref(),
                    stream
                ],
            )
            .await?;
        if delivery.hold.is_none() {
            tx.queued(stream, &delivery.channel, queued).await?;
        }
    }
    for touch in &n.incidents {
        // One group's notifications reaching two replicas at once take turns here, so that
        // one incident opens, not two.
        tx.lock(
            &format!(
                "incident\n{}\n{}\n{}",
                n.receiver, n.group_key, touch.policy.name
            ),
            true,
        )
        .await?;
        let open = tx
            .query(
                concat!(
                    "SELECT ",
                    incident_columns!(),
                    " FROM mcpwatch_incidents
                     WHERE group_key = ?1 AND receiver = ?2 AND policy = ?3 AND open FOR UPDATE"
                ),
                args![&n.group_key, &n.receiver, &touch.policy.name],
            )
            .await?
            .first()
            .map(incident_row)
            .transpose()?;
        let change =
            incident::on_notification(open, touch, &n.receiver, &n.group_key, id, n.received_at);
        if change.row.is_none() {
            let hold = change.hold.as_deref();
            tell(tx, id, &touch.alerts, &change.tell, n.received_at, hold).await?;
        }
        apply(tx, change, n.received_at).await?;
    }
    if let Some(components) = &n.components {
        group_status(tx, &n.receiver, &n.group_key, n.received_at, components).await?;
    }
    // Last: a write that fails leaves the keys as they were.
    tx.keep_key(&n.dedup_key, id, n.received_at, window_start)
        .await?;
    Ok(Accepted::Stored(id))
}

/// The deliveries to `channel` (`?1`) in `state` whose `time` has come (`?2`), after the
/// (`time`, id) pair (`?3`, `?4`), in that order, `?5` at most: the columns [`candidate`]
/// reads.
macro_rules! candidates {
    ($state:literal, $time:literal) => {
        concat!(
            "SELECT d.id, d.notification_id, d.channel, d.alerts, d.attempts, n.received_at,
             d.queued_at, d.event, d.stream, n.receiver, n.group_key, d.",
            $time,
            ", n.payload_encoding, n.payload
             FROM mcpwatch_deliveries d JOIN mcpwatch_notifications n ON n.id = d.notification_id
             WHERE d.channel = ?1 AND d.state = '",
            $state,
            "' AND d.",
            $time,
            " <= ?2 AND (d.",
            $time,
            " > ?3 OR (d.",
            $time,
            " = ?3 AND d.id > ?4)) ORDER BY d.",
            $time,
            ", d.id LIMIT ?5 FOR UPDATE OF d SKIP LOCKED"
        )
    };
}

/// Candidates are read a page at a time, in (due time, id) order.
const PAGE: usize = 64;

struct Candidate {
    claimed: Claimed,
    stream: Option<i64>,
    receiver: String,
    group_key: String,
    next_attempt_at: i64,
}

fn candidate(r: &Row) -> Result<Candidate, StoreError> {
    Ok(Candidate {
        claimed: Claimed {
            id: r.i64(0)?,
            notification_id: r.i64(1)?,
            channel: r.text(2)?,
            alerts: decode_alerts(&r.text(3)?),
            attempt: r.u32(4)? + 1,
            received_at: r.i64(5)?,
            queued_at: r.i64(6)?,
            payload: Arc::new(Body::Json(String::new())),
            event: Event::decode(r.opt_text(7)?.as_deref()),
        },
        stream: r.opt_i64(8)?,
        receiver: r.text(9)?,
        group_key: r.text(10)?,
        next_attempt_at: r.i64(11)?,
    })
}

/// What claiming makes of a candidate.
enum Turn {
    /// It is sent now.
    Take,
    /// An older delivery of its stream is being sent: it waits for that one.
    Wait,
    /// A newer delivery of its stream exists: it is never sent.
    Superseded(i64),
}

/// Where a candidate stands in its stream. Older deliveries still waiting are superseded
/// by it on the way.
async fn turn<T: Tx>(tx: &mut T, c: &Candidate, now: i64) -> Result<Turn, StoreError> {
    let Some(stream) = c.stream else {
        return Ok(Turn::Take);
    };
    let id = c.claimed.id;
    let channel = c.claimed.channel.as_str();
    // The others of its stream still queued decide: a newer one supersedes it, an older
    // one goes first or is superseded. (A newer one already sent is no concern here: none
    // is sent while an older one waits, and a replayed dead letter is checked as it is
    // replayed.) Mostly there are none, and it goes at once.
    let mates = tx.queued_in_stream(stream, channel, id).await?;
    if mates.is_empty() {
        return Ok(Turn::Take);
    }
    let mut newest = None;
    let mut older = Vec::new();
    for mate in mates {
        let rows = tx
            .query(
                "SELECT d.state, n.receiver, n.group_key FROM mcpwatch_deliveries d
                 JOIN mcpwatch_notifications n ON n.id = d.notification_id WHERE d.id = ?1",
                args![mate],
            )
            .await?;
        let Some(row) = rows.first() else {
            tx.unqueued(mate).await?;
            continue;
        };
        let state = row.text(0)?;
        if state != state::PENDING && state != state::SENDING {
            tx.unqueued(mate).await?;
            continue;
        }
        // Another group with the same number.
        if row.text(1)? != c.receiver || row.text(2)? != c.group_key {
            continue;
        }
        if mate > id {
            newest = newest.max(Some(mate));
        } else {
            older.push(mate);
        }
    }
    if let Some(newer) = newest {
        return Ok(Turn::Superseded(newer));
    }
    if older.is_empty() {
        return Ok(Turn::Take);
    }
    // Replicas deciding the same stream take turns; one that finds it busy leaves it to
    // the other.
    if !tx
        .lock(&format!("stream\n{stream}\n{channel}"), false)
        .await?
    {
        return Ok(Turn::Wait);
    }
    // Older ones still waiting, or left by a sender that stopped, are superseded; one
    // being sent is waited for, and so is one another replica holds this moment (it is
    // deciding it).
    let mut waits = false;
    for mate in older {
        let rows = tx
            .query(
                "SELECT state, claimed_until FROM mcpwatch_deliveries
                 WHERE id = ?1 AND state IN ('pending', 'sending') FOR UPDATE SKIP LOCKED",
                args![mate],
            )
            .await?;
        let Some(row) = rows.first() else {
            waits = true;
            continue;
        };
        let sending = row.text(0)? == state::SENDING;
        if sending && row.opt_i64(1)?.is_some_and(|until| until > now) {
            waits = true;
            continue;
        }
        supersede(tx, mate, id, now).await?;
    }
    Ok(if waits { Turn::Wait } else { Turn::Take })
}

/// Retires delivery `id` in favour of `by`, a newer one of its stream.
async fn supersede<T: Tx>(tx: &mut T, id: i64, by: i64, now: i64) -> Result<bool, StoreError> {
    close_unfinished(tx, id, now).await?;
    let reason = superseded_by(by);
    let changed = tx
        .execute(
            "UPDATE mcpwatch_deliveries SET state = 'superseded', claimed_until = NULL, last_error = ?2,
             updated_at = ?3 WHERE id = ?1 AND state IN ('pending', 'sending')",
            args![id, &reason, now],
        )
        .await?;
    tx.unqueued(id).await?;
    Ok(changed == 1)
}

pub(crate) async fn claim<T: Tx>(
    tx: &mut T,
    now: i64,
    budgets: &[(String, usize)],
    total: usize,
    lease: Duration,
) -> Result<ClaimBatch, StoreError> {
    let mut batch = ClaimBatch::default();
    let until = now.saturating_add(millis(lease));
    let mut superseded = 0_usize;
    let mut bodies: std::collections::HashMap<i64, Arc<Body>> = std::collections::HashMap::new();
    for (channel, budget) in budgets.iter().filter(|(_, b)| *b > 0) {
        let mut taken = 0;
        // Two statements, each a range of the (channel, state, time) index: an OR of the
        // two states would read every row of the channel.
        for sending in [true, false] {
            let mut after = (i64::MIN, i64::MIN);
            loop {
                let room = total
                    .saturating_sub(batch.claimed.len())
                    .min(budget.saturating_sub(taken));
                if room == 0 {
                    break;
                }
                let sql = if sending {
                    candidates!("sending", "claimed_until")
                } else {
                    candidates!("pending", "next_attempt_at")
                };
                let rows = tx
                    .query(sql, args![channel, now, after.0, after.1, PAGE])
                    .await?;
                let full = rows.len() == PAGE;
                for mut row in rows {
                    let mut c = candidate(&row)?;
                    after = (c.next_attempt_at, c.claimed.id);
                    if taken >= *budget || batch.claimed.len() >= total {
                        break;
                    }
                    match turn(tx, &c, now).await? {
                        Turn::Take => {
                            take(tx, &c.claimed, now, until).await?;
                            // The body, shared by the deliveries of one notification.
                            c.claimed.payload = match bodies.get(&c.claimed.notification_id) {
                                Some(body) => body.clone(),
                                None => {
                                    let body = Arc::new(row.take_body(12)?);
                                    bodies.insert(c.claimed.notification_id, body.clone());
                                    body
                                }
                            };
                            batch.claimed.push(c.claimed);
                            taken += 1;
                        }
                        Turn::Wait => {}
                        Turn::Superseded(by) => {
                            if supersede(tx, c.claimed.id, by, now).await? {
                                superseded += 1;
                            }
                        }
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }
    if superseded > 0 {
        tracing::debug!(
            superseded,
            "Deliveries superseded by newer states of their alert groups."
        );
    }
    // When the next claim is worth making, among the channels that had room: what is
    // due already waits for a slot, a rate-limit token or an older delivery of its
    // stream, and each of those wakes the dispatcher itself (a claim left by a stopped
    // sender is the exception, and counts by its expiry).
    for (channel, _) in budgets.iter().filter(|(_, b)| *b > 0) {
        let pending = tx
            .query(
                "SELECT MIN(next_attempt_at) FROM mcpwatch_deliveries
                 WHERE channel = ?1 AND state = 'pending' AND next_attempt_at > ?2",
                args![channel, now],
            )
            .await?;
        let sending = tx
            .query(
                "SELECT MIN(claimed_until) FROM mcpwatch_deliveries
                 WHERE channel = ?1 AND state = 'sending'",
                args![channel],
            )
            .await?;
        for rows in [pending, sending] {
            if let Some(t) = rows.first().map(|r| r.opt_i64(0)).transpose()?.flatten() {
                batch.next_due = Some(batch.next_due.map_or(t, |n: i64| n.min(t)));
            }
        }
    }
    Ok(batch)
}

/// Closes as unknown the attempt of delivery `id` left unfinished by a claim that expired
/// (its sender stopped).
async fn close_unfinished<T: Tx>(tx: &mut T, id: i64, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE mcpwatch_attempts SET finished_at = ?2, outcome = 'unknown',
         detail = 'the sender stopped before recording an outcome'
         WHERE delivery_id = ?1 AND finished_at IS NULL",
        args![id, now],
    )
    .await?;
    Ok(())
}

/// Why a delivery is superseded: `by` is the newer one of its stream.
fn superseded_by(by: i64) -> String {
    format!("superseded by delivery {by}, a newer state of its alert group")
}

async fn take<T: Tx>(tx: &mut T, c: &Claimed, now: i64, until: i64) -> Result<(), StoreError> {
    close_unfinished(tx, c.id, now).await?;
    tx.execute(
        "UPDATE mcpwatch_deliveries SET state = 'sending', attempts = ?2, claimed_until = ?3, updated_at = ?4
         WHERE id = ?1",
        args![c.id, c.attempt, until, now],
    )
    .await?;
    tx.execute(
        "INSERT INTO mcpwatch_attempts (delivery_id, number, started_at) VALUES (?1, ?2, ?3)",
        args![c.id, c.attempt, now],
    )
    .await?;
    Ok(())
}

pub(crate) async fn complete<T: Tx>(
    tx: &mut T,
    id: i64,
    attempt: u32,
    outcome: &Outcome,
    now: i64,
) -> Result<bool, StoreError> {
    // Only the claim that made this attempt may record its outcome: a claim that expired
    // and was taken again has a higher attempt number.
    let changed = match outcome {
        Outcome::Delivered => {
            tx.execute(
                "UPDATE mcpwatch_deliveries SET state = 'delivered', delivered_at = ?3, claimed_until = NULL,
                 last_error = NULL, updated_at = ?3 WHERE id = ?1 AND attempts = ?2 AND state = 'sending'",
                args![id, attempt, now],
            )
            .await?
        }
        Outcome::Retry { at, error } => {
            tx.execute(
                "UPDATE mcpwatch_deliveries SET state = 'pending', next_attempt_at = ?4, claimed_until = NULL,
                 last_error = ?5, updated_at = ?3 WHERE id = ?1 AND attempts = ?2 AND state = 'sending'",
                args![id, attempt, now, *at, error],
            )
            .await?
        }
        Outcome::Dead { error } => {
            tx.execute(
                "UPDATE mcpwatch_deliveries SET state = 'dead', claimed_until = NULL, last_error = ?4,
                 updated_at = ?3 WHERE id = ?1 AND attempts = ?2 AND state = 'sending'",
                args![id, attempt, now, error],
            )
            .await?
        }
    };
    if changed != 1 {
        return Ok(false);
    }
    if !matches!(outcome, Outcome::Retry { .. }) {
        tx.unqueued(id).await?;
    }
    let (name, detail) = match outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::Retry { error, .. } => ("retry", Some(error.as_str())),
        Outcome::Dead { error } => ("dead", Some(error.as_str())),
    };
    tx.execute(
        "UPDATE mcpwatch_attempts SET finished_at = ?2, outcome = ?3, detail = ?4
         WHERE delivery_id = ?1 AND number = ?5 AND finished_at IS NULL",
        args![id, now, name, detail, attempt],
    )
    .await?;
    note_outcome(tx, id, attempt, outcome, now).await?;
    Ok(true)
}

/// Adds how an attempt of one of an incident's deliveries ended to its timeline.
async fn note_outcome<T: Tx>(
    tx: &mut T,
    id: i64,
    attempt: u32,
    outcome: &Outcome,
    now: i64,
) -> Result<(), StoreError> {
    let rows = tx
        .query(
            "SELECT channel, event FROM mcpwatch_deliveries WHERE id = ?1 AND event IS NOT NULL",
            args![id],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(());
    };
    let event = Event::decode(row.opt_text(1)?.as_deref());
    let Some(incident) = event.as_ref().and_then(Event::incident) else {
        return Ok(());
    };
    let note = match outcome {
        Outcome::Delivered => Note::new(kind::DELIVERED).detail(format!("attempt {attempt}")),
        Outcome::Retry { at, error } => Note::new(kind::DELIVERY_FAILED).detail(format!(
            "attempt {attempt}: {error}; next attempt at {}",
            crate::time::format_rfc3339(*at)
        )),
        Outcome::Dead { error } => {
            Note::new(kind::DEAD_LETTER).detail(format!("attempt {attempt}: {error}"))
        }
    };
    let note = match &event {
        Some(Event::Incident { level, .. }) => note.level(*level),
        _ => note,
    };
    record(tx, incident, now, &note.channel(row.text(0)?)).await
}

/// Queues a notification's dead letters again; how many. One whose alert group has had a
/// newer state for its channel since (sent, queued or dead) is superseded instead: sending
/// it now would take the receiver back to an older state.
pub(crate) async fn replay<T: Tx>(
    tx: &mut T,
    notification: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let dead = tx
        .query(
            "SELECT d.id, d.stream, d.channel, n.receiver, n.group_key FROM mcpwatch_deliveries d
             JOIN mcpwatch_notifications n ON n.id = d.notification_id
             WHERE d.notification_id = ?1 AND d.state = 'dead' FOR UPDATE OF d",
            args![notification],
        )
        .await?;
    let mut queued = 0;
    for row in &dead {
        let (id, stream, channel) = (row.i64(0)?, row.opt_i64(1)?, row.text(2)?);
        if let Some(stream) = stream {
            let (receiver, group_key) = (row.text(3)?, row.text(4)?);
            let newer = tx
                .query(
                    "SELECT MAX(d.id) FROM mcpwatch_deliveries d JOIN mcpwatch_notifications n ON n.id = d.notification_id
                     WHERE d.stream = ?1 AND d.channel = ?2 AND d.id > ?3 AND n.receiver = ?4 AND n.group_key = ?5
                       AND d.state IN ('pending', 'sending', 'delivered', 'dead')",
                    args![stream, &channel, id, &receiver, &group_key],
                )
                .await?;
            if let Some(by) = newer.first().map(|r| r.opt_i64(0)).transpose()?.flatten() {
                let reason = superseded_by(by);
                tx.execute(
                    "UPDATE mcpwatch_deliveries SET state = 'superseded', last_error = ?2, updated_at = ?3
                     WHERE id = ?1",
                    args![id, &reason, now],
                )
                .await?;
                continue;
            }
        }
        queued += tx
            .execute(
                "UPDATE mcpwatch_deliveries SET state = 'pending', attempts = 0, queued_at = ?2,
                 next_attempt_at = ?2, last_error = NULL, updated_at = ?2 WHERE id = ?1",
                args![id, now],
            )
            .await?;
        if let Some(stream) = stream {
            tx.queued(stream, &channel, id).await?;
        }
    }
    Ok(count(queued))
}

/// Returns deliveries left `sending` by a process that stopped to the queue (a store only
/// one process writes).
pub(crate) async fn recover<T: Tx>(tx: &mut T, now: i64) -> Result<usize, StoreError> {
    tx.execute(
        "UPDATE mcpwatch_attempts SET finished_at = ?1, outcome = 'unknown',
         detail = 'the notifier stopped during the attempt' WHERE finished_at IS NULL",
        args![now],
    )
    .await?;
    let n = tx
        .execute(
            "UPDATE mcpwatch_deliveries SET state = 'pending', claimed_until = NULL, next_attempt_at = ?1,
             updated_at = ?1 WHERE state = 'sending'",
            args![now],
        )
        .await?;
    Ok(count(n))
}

/// Dead-letters what waits for a channel not in `known`, queued before `before`; a
/// delivery left `sending` to such a channel by a sender that stopped goes too (its claim
/// expired), its attempt closed.
pub(crate) async fn retire<T: Tx>(
    tx: &mut T,
    known: &[String],
    now: i64,
    before: i64,
) -> Result<usize, StoreError> {
    let channels = tx
        .query(
            "SELECT DISTINCT channel FROM mcpwatch_deliveries WHERE state IN ('pending', 'sending')",
            &[],
        )
        .await?;
    let mut retired = 0;
    for row in &channels {
        let channel = row.text(0)?;
        if known.contains(&channel) {
            continue;
        }
        tx.execute(
            "UPDATE mcpwatch_attempts SET finished_at = ?2, outcome = 'unknown',
             detail = 'the sender stopped before recording an outcome'
             WHERE finished_at IS NULL AND delivery_id IN (
                 SELECT id FROM mcpwatch_deliveries WHERE channel = ?1 AND state = 'sending'
                 AND claimed_until <= ?2 AND queued_at < ?3)",
            args![&channel, now, before],
        )
        .await?;
        let reason = format!("channel {channel:?} is no longer configured");
        retired += tx
            .execute(
                "UPDATE mcpwatch_deliveries SET state = 'dead', claimed_until = NULL, last_error = ?4,
                 updated_at = ?2
                 WHERE channel = ?1 AND queued_at < ?3
                   AND (state = 'pending' OR (state = 'sending' AND claimed_until <= ?2))",
                args![&channel, now, before, &reason],
            )
            .await?;
    }
    if retired > 0 {
        tx.requeued().await?;
    }
    Ok(count(retired))
}

pub(crate) async fn prune<T: Tx>(
    tx: &mut T,
    now: i64,
    retention: Duration,
    window: Duration,
) -> Result<usize, StoreError> {
    tx.forget_keys(now.saturating_sub(millis(window))).await?;
    let before = now.saturating_sub(millis(retention));
    tx.execute(
        "DELETE FROM mcpwatch_incidents WHERE NOT open AND resolved_at < ?1",
        args![before],
    )
    .await?;
    tx.execute(
        "DELETE FROM mcpwatch_windows WHERE ends_at < ?1",
        args![before],
    )
    .await?;
    // The status page's history: its days, and each component's last change before them
    // (the state its first day starts in).
    let history = now.saturating_sub((i64::try_from(statuspage::HISTORY_DAYS).unwrap_or(90) + 1) * 86_400_000);
    tx.execute(
        "DELETE FROM mcpwatch_status_changes WHERE at < ?1 AND id NOT IN
             (SELECT MAX(id) FROM mcpwatch_status_changes WHERE at < ?1 GROUP BY component)",
        args![history],
    )
    .await?;
    let n = tx
        .execute(
            "DELETE FROM mcpwatch_notifications WHERE received_at < ?1 AND NOT EXISTS (
                SELECT 1 FROM mcpwatch_deliveries d WHERE d.notification_id = mcpwatch_notifications.id
                AND d.state IN ('pending', 'sending', 'held'))
              AND NOT EXISTS (SELECT 1 FROM mcpwatch_incidents i WHERE i.notification_id = mcpwatch_notifications.id)
              AND NOT (EXISTS (SELECT 1 FROM mcpwatch_deliveries d WHERE d.notification_id = mcpwatch_notifications.id
                               AND d.state = 'summarized')
                       AND EXISTS (SELECT 1 FROM mcpwatch_deliveries s WHERE s.state IN ('pending', 'sending')
                                   AND s.event LIKE '{\"kind\":\"summary\"%'))",
            args![before],
        )
        .await?;
    Ok(count(n))
}

/// The columns [`incident_row`] reads, in its order.
macro_rules! incident_columns {
    () => {
        "id, policy, receiver, group_key, open, level, told, notification_id, alerts,
         opened_at, next_at, acked_at, acked_by, generation, resolved_at, resolved_by, severity,
         title, next_update_at, remediation"
    };
}
use incident_columns;

fn incident_row(r: &Row) -> Result<IncidentRow, StoreError> {
    Ok(IncidentRow {
        id: r.i64(0)?,
        policy: r.text(1)?,
        receiver: r.text(2)?,
        group_key: r.text(3)?,
        open: r.bool(4)?,
        level: r.u32(5)?,
        told: serde_json::from_str(&r.text(6)?).unwrap_or_default(),
        notification_id: r.i64(7)?,
        alerts: decode_alerts(&r.text(8)?),
        opened_at: r.i64(9)?,
        next_at: r.opt_i64(10)?,
        acked_at: r.opt_i64(11)?,
        acked_by: r.opt_text(12)?,
        generation: r.i64(13)?,
        resolved_at: r.opt_i64(14)?,
        resolved_by: r.opt_text(15)?,
        severity: r.opt_text(16)?,
        title: r.opt_text(17)?.unwrap_or_default(),
        next_update_at: r.opt_i64(18)?,
        waiting_for: r.opt_text(19)?,
    })
}

/// Writes an incident's row (a new one gets its id) and the deliveries it asks for.
async fn apply<T: Tx>(
    tx: &mut T,
    change: Change,
    now: i64,
) -> Result<Option<IncidentRow>, StoreError> {
    // A new incident gets its id (and the columns that never change) first; every column
    // that can change is then written by the one statement that updates a stored one.
    let change = match &change.row {
        Some(row) if row.id == 0 => {
            let id = tx
                .insert(
                    "INSERT INTO mcpwatch_incidents (policy, receiver, group_key, opened_at, open, level,
                         told, notification_id, alerts, generation)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, '[]', ?6, '[]', 0)",
                    args![
                        &row.policy,
                        &row.receiver,
                        &row.group_key,
                        row.opened_at,
                        row.open,
                        row.notification_id
                    ],
                )
                .await?;
            change.with_id(id)
        }
        _ => change,
    };
    if let Some(row) = &change.row {
        let told = serde_json::to_string(&row.told).unwrap_or_default();
        let alerts = encode_alerts(&row.alerts);
        tx.execute(
            "UPDATE mcpwatch_incidents SET open = ?2, level = ?3, told = ?4, notification_id = ?5,
                 alerts = ?6, next_at = ?7, acked_at = ?8, acked_by = ?9, generation = ?10,
                 resolved_at = ?11, resolved_by = ?12, severity = ?13, title = ?14,
                 next_update_at = ?15, remediation = ?16
             WHERE id = ?1",
            args![
                row.id,
                row.open,
                row.level,
                &told,
                row.notification_id,
                &alerts,
                row.next_at,
                row.acked_at,
                row.acked_by.as_deref(),
                row.generation,
                row.resolved_at,
                row.resolved_by.as_deref(),
                row.severity.as_deref(),
                &row.title,
                row.next_update_at,
                row.waiting_for.as_deref()
            ],
        )
        .await?;
    }
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
        for note in &change.notes {
            record(tx, row.id, now, note).await?;
        }
        for action in &change.remediate {
            tx.execute(
                "INSERT INTO mcpwatch_remediations (incident, action, state, started_at) VALUES (?1, ?2, 'pending', ?3)",
                args![row.id, action, now],
            )
            .await?;
        }
    }
    Ok(change.row)
}

/// The worst state any group says of each of `components` now.
async fn component_states<T: Tx>(
    tx: &mut T,
    components: &[String],
) -> Result<BTreeMap<String, i64>, StoreError> {
    let mut states = BTreeMap::new();
    for component in components {
        let rows = tx
            .query(
                "SELECT MAX(state) FROM mcpwatch_status_groups WHERE component = ?1",
                args![component],
            )
            .await?;
        let state = rows.first().map(|r| r.opt_i64(0)).transpose()?.flatten();
        states.insert(component.clone(), state.unwrap_or(0));
    }
    Ok(states)
}

/// Replaces what alert group (`receiver`, `group_key`) says of the status page's
/// components with `status` (unless a later notification of the group said it already),
/// and records each component whose state that changes.
async fn group_status<T: Tx>(
    tx: &mut T,
    receiver: &str,
    group_key: &str,
    at: i64,
    status: &[GroupStatus],
) -> Result<(), StoreError> {
    // Groups of one component reaching two replicas at once take turns: each sees the
    // other's part when it computes the component's state.
    tx.lock("status page", true).await?;
    // The group's newer word, committed first, stands (whatever it said: a resolve leaves
    // no row here to tell).
    let newer = tx
        .query(
            "SELECT 1 FROM mcpwatch_notifications
             WHERE received_at > ?3 AND receiver = ?1 AND group_key = ?2 LIMIT 1",
            args![receiver, group_key, at],
        )
        .await?;
    if !newer.is_empty() {
        return Ok(());
    }
    let old = tx
        .query(
            "SELECT component, state, since FROM mcpwatch_status_groups
             WHERE receiver = ?1 AND group_key = ?2",
            args![receiver, group_key],
        )
        .await?;
    let mut old_rows = Vec::new();
    for row in &old {
        old_rows.push((row.text(0)?, row.i64(1)?, row.i64(2)?));
    }
    let mut affected: Vec<String> = old_rows.iter().map(|(c, _, _)| c.clone()).collect();
    affected.extend(status.iter().map(|s| s.component.clone()));
    affected.sort();
    affected.dedup();
    let before = component_states(tx, &affected).await?;
    tx.execute(
        "DELETE FROM mcpwatch_status_groups WHERE receiver = ?1 AND group_key = ?2",
        args![receiver, group_key],
    )
    .await?;
    for s in status {
        let state = statuspage::rank(s.state);
        let since = old_rows
            .iter()
            .find(|(c, st, _)| *c == s.component && *st == state)
            .map_or(at, |(_, _, since)| *since);
        let names = serde_json::to_string(&s.names).unwrap_or_default();
        tx.execute(
            "INSERT INTO mcpwatch_status_groups (receiver, group_key, component, state, detail, since, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![receiver, group_key, &s.component, state, &names, since, at],
        )
        .await?;
    }
    let after = component_states(tx, &affected).await?;
    for (component, state) in &after {
        if before.get(component) != Some(state) {
            // Replicas commit in turn, not in the order of their times: a change is never
            // before its component's last, so that the history ends in the state now.
            let last = tx
                .query(
                    "SELECT MAX(at) FROM mcpwatch_status_changes WHERE component = ?1",
                    args![component],
                )
                .await?;
            let last = last.first().map(|r| r.opt_i64(0)).transpose()?.flatten();
            tx.execute(
                "INSERT INTO mcpwatch_status_changes (component, state, at) VALUES (?1, ?2, ?3)",
                args![component, *state, last.map_or(at, |last| last.max(at))],
            )
            .await?;
        }
    }
    Ok(())
}

/// The status page's components now, and their changes since `since` with the last one
/// before it.
pub(crate) async fn status<T: Tx>(tx: &mut T, since: i64) -> Result<Snapshot, StoreError> {
    let mut current: BTreeMap<String, statuspage::Current> = BTreeMap::new();
    for row in tx
        .query(
            "SELECT component, state, detail FROM mcpwatch_status_groups ORDER BY component",
            &[],
        )
        .await?
    {
        let state = statuspage::from_rank(row.i64(1)?);
        let names: Vec<String> = row
            .opt_text(2)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let entry = current
            .entry(row.text(0)?)
            .or_insert_with_key(|component| statuspage::Current {
                component: component.clone(),
                state,
                names: Vec::new(),
            });
        entry.state = entry.state.max(state);
        for name in names {
            if !entry.names.contains(&name) {
                entry.names.push(name);
            }
        }
    }
    let mut changes: BTreeMap<String, Vec<statuspage::Change>> = BTreeMap::new();
    for row in tx
        .query(
            "SELECT component, state, at FROM mcpwatch_status_changes c
             WHERE at >= ?1 OR id = (SELECT MAX(id) FROM mcpwatch_status_changes d
                                     WHERE d.component = c.component AND d.at < ?1)
             ORDER BY at, id",
            args![since],
        )
        .await?
    {
        changes
            .entry(row.text(0)?)
            .or_default()
            .push(statuspage::Change {
                state: statuspage::from_rank(row.i64(1)?),
                at: row.i64(2)?,
            });
    }
    Ok(Snapshot {
        current: current
            .into_values()
            .filter(|c| c.state != crate::severity::ComponentState::Operational)
            .map(|mut c| {
                c.names.sort();
                c
            })
            .collect(),
        changes,
    })
}

/// Once an incident whose first level waits for its remediation has none pending or
/// running, the first level is told (when it is still open).
async fn settle<T: Tx>(
    tx: &mut T,
    incident: i64,
    now: i64,
    policies: &Policies,
) -> Result<(), StoreError> {
    let Some(row) = locked_incident(tx, incident).await? else {
        return Ok(());
    };
    if row.waiting_for.is_none() {
        return Ok(());
    }
    let busy = tx
        .query(
            "SELECT COUNT(*) FROM mcpwatch_remediations WHERE incident = ?1 AND state IN ('pending', 'running')",
            args![incident],
        )
        .await?;
    if busy.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0) > 0 {
        return Ok(());
    }
    let policy = policies.get(&row.policy);
    apply(
        tx,
        incident::waited(row, policy, now, "the remediation ended"),
        now,
    )
    .await?;
    Ok(())
}

/// Claims up to `limit` queued remediation runs for `owner`, each until its lease (by
/// action; `default_lease` for others) runs out. A run whose lease ran out (its notifier
/// stopped while it ran) is not run again: it is recorded as abandoned. A run of an
/// incident that closed before it started is recorded refused, not run. The start of a
/// claimed run is the caller's to record, once it knows the run goes ahead.
pub(crate) async fn claim_remediations<T: Tx>(
    tx: &mut T,
    now: i64,
    owner: &str,
    leases: &BTreeMap<String, Duration>,
    default_lease: Duration,
    limit: usize,
    policies: &Policies,
) -> Result<RemediationClaims, StoreError> {
    let mut claims = RemediationClaims::default();
    let lost = tx
        .query(
            "SELECT incident, action, claimed_by FROM mcpwatch_remediations
             WHERE state = 'running' AND claimed_until < ?1 FOR UPDATE SKIP LOCKED",
            args![now],
        )
        .await?;
    for row in &lost {
        let (incident, action) = (row.i64(0)?, row.text(1)?);
        tx.execute(
            "UPDATE mcpwatch_remediations SET state = 'abandoned', finished_at = ?3
             WHERE incident = ?1 AND action = ?2",
            args![incident, &action, now],
        )
        .await?;
        let note = Note::new(kind::REMEDIATION_SKIPPED).detail(format!(
            "{action}: abandoned: the notifier running it ({}) stopped before it ended; it is not run again",
            row.opt_text(2)?.unwrap_or_default()
        ));
        record(tx, incident, now, &note).await?;
        settle(tx, incident, now, policies).await?;
        claims.ended.push((incident, action, "abandoned"));
    }
    let pending = tx
        .query(
            "SELECT r.incident, r.action, i.notification_id, i.alerts, i.open FROM mcpwatch_remediations r
             JOIN mcpwatch_incidents i ON i.id = r.incident
             WHERE r.state = 'pending' ORDER BY r.started_at, r.incident LIMIT ?1 FOR UPDATE OF r SKIP LOCKED",
            args![limit],
        )
        .await?;
    for row in &pending {
        let claim = RemediationClaim {
            incident: row.i64(0)?,
            action: row.text(1)?,
            notification_id: row.i64(2)?,
            alerts: decode_alerts(&row.text(3)?),
        };
        if !row.bool(4)? {
            tx.execute(
                "UPDATE mcpwatch_remediations SET state = 'refused', finished_at = ?3
                 WHERE incident = ?1 AND action = ?2 AND state = 'pending'",
                args![claim.incident, &claim.action, now],
            )
            .await?;
            let note = Note::new(kind::REMEDIATION_SKIPPED).detail(format!(
                "{}: the incident resolved before it ran",
                claim.action
            ));
            record(tx, claim.incident, now, &note).await?;
            claims.ended.push((claim.incident, claim.action, "refused"));
            continue;
        }
        let lease = leases.get(&claim.action).copied().unwrap_or(default_lease);
        let taken = tx
            .execute(
                "UPDATE mcpwatch_remediations SET state = 'running', claimed_by = ?3, claimed_until = ?4
                 WHERE incident = ?1 AND action = ?2 AND state = 'pending'",
                args![
                    claim.incident,
                    &claim.action,
                    owner,
                    now.saturating_add(millis(lease))
                ],
            )
            .await?;
        if taken == 1 {
            claims.claimed.push(claim);
        }
    }
    Ok(claims)
}

/// Records how `owner`'s run of `action` for `incident` ended (`state`, and `note` for
/// the timeline); false when the run is no longer `owner`'s.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_remediation<T: Tx>(
    tx: &mut T,
    incident: i64,
    action: &str,
    owner: &str,
    now: i64,
    state: &str,
    note: &Note,
    policies: &Policies,
) -> Result<bool, StoreError> {
    let changed = tx
        .execute(
            "UPDATE mcpwatch_remediations SET state = ?4, finished_at = ?5, claimed_until = NULL
             WHERE incident = ?1 AND action = ?2 AND claimed_by = ?3 AND state = 'running'",
            args![incident, action, owner, state, now],
        )
        .await?;
    if changed != 1 {
        return Ok(false);
    }
    record(tx, incident, now, note).await?;
    settle(tx, incident, now, policies).await?;
    Ok(true)
}

/// Adds `note` to incident `incident`'s timeline, at `at`.
pub(crate) async fn record<T: Tx>(
    tx: &mut T,
    incident: i64,
    at: i64,
    note: &Note,
) -> Result<(), StoreError> {
    let alerts = note.encode_alerts();
    // A request takes its time when it arrives, then may wait for the incident's lock:
    // what it waited for stays before it, as it happened.
    let last = tx
        .query(
            "SELECT MAX(at) FROM mcpwatch_incident_events WHERE incident = ?1",
            args![incident],
        )
        .await?;
    let last = last.first().map(|r| r.opt_i64(0)).transpose()?.flatten();
    let at = last.map_or(at, |last| last.max(at));
    tx.execute(
        "INSERT INTO mcpwatch_incident_events (incident, at, kind, actor, channel, level, detail, alerts)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM mcpwatch_incidents WHERE id = ?1)",
        args![
            incident,
            at,
            note.kind,
            note.actor.as_deref(),
            note.channel.as_deref(),
            note.level,
            note.detail.as_deref(),
            alerts.as_deref()
        ],
    )
    .await?;
    Ok(())
}

/// Incident `incident`'s timeline in the order things happened (on a shared database two
/// replicas' transactions may commit in the other order than their times); none when there
/// is no such incident.
pub(crate) async fn timeline<T: Tx>(
    tx: &mut T,
    incident: i64,
) -> Result<Vec<Entry>, StoreError> {
    tx.query(
        "SELECT id, at, kind, actor, channel, level, detail, alerts FROM mcpwatch_incident_events
         WHERE incident = ?1 ORDER BY at, id",
        args![incident],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Entry::new(
            r.i64(0)?,
            r.i64(1)?,
            r.text(2)?,
            r.opt_text(3)?,
            r.opt_text(4)?,
            r.opt_i64(5)?.and_then(|l| u32::try_from(l).ok()),
            r.opt_text(6)?,
            r.opt_text(7)?.as_deref(),
        ))
    })
    .collect()
}

/// Queues one delivery per channel told, each with its event (not in any stream: an
/// incident's steps are told as they come).
async fn tell<T: Tx>(
    tx: &mut T,
    notification: i64,
    alerts: &[usize],
    tell: &[(String, Option<Event>)],
    now: i64,
    hold: Option<&str>,
) -> Result<(), StoreError> {
    let alerts = encode_alerts(alerts);
    let state = if hold.is_some() {
        state::HELD
    } else {
        state::PENDING
    };
    for (channel, event) in tell {
        let event = event.as_ref().map(Event::encode);
        tx.execute(
            INSERT_DELIVERY,
            args![
                notification,
                channel,
                &alerts,
                state,
                now,
                event.as_deref(),
                hold,
                None::<i64>
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn escalate<T: Tx>(
    tx: &mut T,
    now: i64,
    policies: &Policies,
    limit: usize,
) -> Result<Vec<(i64, String, u32)>, StoreError> {
    // An incident another replica is escalating (or a webhook is updating) is skipped: its
    // turn comes at the next tick, once that is committed. The longest overdue first, by
    // whichever of its times fell due first: incidents due again at every tick must not
    // keep one whose next level is hours away from its status update.
    let due = tx
        .query(
            concat!(
                "SELECT ",
                incident_columns!(),
                " FROM mcpwatch_incidents WHERE next_at <= ?1 OR next_update_at <= ?1
                  ORDER BY CASE WHEN next_at IS NULL OR next_update_at < next_at
                           THEN next_update_at ELSE next_at END
                  LIMIT ?2 FOR UPDATE SKIP LOCKED"
            ),
            args![now, limit],
        )
        .await?
        .iter()
        .map(incident_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut escalated = Vec::new();
    for row in due {
        let policy = policies.get(&row.policy);
        let (change, climbed) = incident::due(row, policy, now);
        if let Some(row) = apply(tx, change, now).await?
            && climbed
        {
            escalated.push((row.id, row.policy, row.level + 1));
        }
    }
    Ok(escalated)
}

pub(crate) async fn acknowledge<T: Tx>(
    tx: &mut T,
    id: i64,
    request: &AckRequest,
    policies: &Policies,
) -> Result<Result<IncidentView, AckRefused>, StoreError> {
    let Some(row) = locked_incident(tx, id).await? else {
        return Ok(Err(AckRefused::NotFound(id)));
    };
    let policy = policies.get(&row.policy);
    match incident::acknowledge(row, request, policy) {
        Ok(change) => Ok(apply(tx, change, request.now)
            .await?
            .map(|row| row.view())
            .ok_or(AckRefused::NotFound(id))),
        Err(refused) => Ok(Err(refused)),
    }
}

pub(crate) async fn next_escalation<T: Tx>(tx: &mut T) -> Result<Option<i64>, StoreError> {
    let rows = tx
        .query(
            "SELECT MIN(next_at), MIN(next_update_at) FROM mcpwatch_incidents
             WHERE next_at IS NOT NULL OR next_update_at IS NOT NULL",
            &[],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(match (row.opt_i64(0)?, row.opt_i64(1)?) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Resolves incident `id` by hand, telling every channel told who did.
pub(crate) async fn resolve<T: Tx>(
    tx: &mut T,
    id: i64,
    by: &str,
    now: i64,
    policies: &Policies,
    quiet_when_resolved: &[String],
) -> Result<Result<IncidentView, AckRefused>, StoreError> {
    let Some(row) = locked_incident(tx, id).await? else {
        return Ok(Err(AckRefused::NotFound(id)));
    };
    let policy = policies.get(&row.policy);
    match incident::resolve_by_hand(row, by, now, policy, quiet_when_resolved) {
        Ok(change) => Ok(apply(tx, change, now)
            .await?
            .map(|row| row.view())
            .ok_or(AckRefused::NotFound(id))),
        Err(refused) => Ok(Err(refused)),
    }
}

/// Incident `id`, locked for this transaction.
async fn locked_incident<T: Tx>(tx: &mut T, id: i64) -> Result<Option<IncidentRow>, StoreError> {
    tx.query(
        concat!(
            "SELECT ",
            incident_columns!(),
            " FROM mcpwatch_incidents WHERE id = ?1 FOR UPDATE"
        ),
        args![id],
    )
    .await?
    .first()
    .map(incident_row)
    .transpose()
}

pub(crate) async fn incidents<T: Tx>(
    tx: &mut T,
    open_only: bool,
    limit: usize,
) -> Result<Vec<IncidentView>, StoreError> {
    tx.query(
        concat!(
            "SELECT ",
            incident_columns!(),
            " FROM mcpwatch_incidents WHERE open OR NOT ?1 ORDER BY id DESC LIMIT ?2"
        ),
        args![open_only, limit],
    )
    .await?
    .iter()
    .map(|r| incident_row(r).map(|row| row.view()))
    .collect()
}

pub(crate) async fn incident<T: Tx>(
    tx: &mut T,
    id: i64,
) -> Result<Option<IncidentView>, StoreError> {
    let rows = tx
        .query(
            concat!(
                "SELECT ",
                incident_columns!(),
                " FROM mcpwatch_incidents WHERE id = ?1"
            ),
            args![id],
        )
        .await?;
    rows.first()
        .map(|r| incident_row(r).map(|row| row.view()))
        .transpose()
}

macro_rules! window_columns {
    () => {
        "id, starts_at, ends_at, matchers, author, reason, hold_critical, created_at"
    };
}

fn window_row(r: &Row) -> Result<WindowRow, StoreError> {
    Ok(WindowRow {
        id: r.i64(0)?,
        window: NewWindow {
            starts_at: r.i64(1)?,
            ends_at: r.i64(2)?,
            matchers: serde_json::from_str(&r.text(3)?).unwrap_or_default(),
            author: r.text(4)?,
            reason: r.text(5)?,
            hold_critical: r.bool(6)?,
            created_at: r.i64(7)?,
        },
    })
}

pub(crate) async fn add_window<T: Tx>(tx: &mut T, w: &NewWindow) -> Result<WindowRow, StoreError> {
    let matchers = serde_json::to_string(&w.matchers).unwrap_or_default();
    let id = tx
        .insert(
            "INSERT INTO mcpwatch_windows (starts_at, ends_at, matchers, author, reason, hold_critical, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![
                w.starts_at,
                w.ends_at,
                &matchers,
                &w.author,
                &w.reason,
                w.hold_critical,
                w.created_at
            ],
        )
        .await?;
    Ok(WindowRow {
        id,
        window: w.clone(),
    })
}

pub(crate) async fn end_window<T: Tx>(
    tx: &mut T,
    id: i64,
    now: i64,
) -> Result<Option<WindowRow>, StoreError> {
    tx.execute(
        "UPDATE mcpwatch_windows SET ends_at = ?2 WHERE id = ?1 AND ends_at > ?2",
        args![id, now],
    )
    .await?;
    let rows = tx
        .query(
            concat!(
                "SELECT ",
                window_columns!(),
                " FROM mcpwatch_windows WHERE id = ?1"
            ),
            args![id],
        )
        .await?;
    rows.first().map(window_row).transpose()
}

pub(crate) async fn windows<T: Tx>(tx: &mut T, since: i64) -> Result<Vec<WindowRow>, StoreError> {
    tx.query(
        concat!(
            "SELECT ",
            window_columns!(),
            " FROM mcpwatch_windows WHERE ends_at > ?1 ORDER BY id"
        ),
        args![since],
    )
    .await?
    .iter()
    .map(window_row)
    .collect()
}

pub(crate) async fn held<T: Tx>(tx: &mut T) -> Result<Vec<(String, u64)>, StoreError> {
    tx.query(
        "SELECT hold, COUNT(DISTINCT notification_id) FROM mcpwatch_deliveries
         WHERE state = 'held' GROUP BY hold",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((r.text(0)?, r.u64(1)?)))
    .collect()
}

/// Releases what `window` held: one summary delivery per channel; how many.
pub(crate) async fn release<T: Tx>(
    tx: &mut T,
    window: &str,
    now: i64,
) -> Result<usize, StoreError> {
    // Replicas releasing the same window take turns: the second finds nothing held.
    tx.lock(&format!("release\n{window}"), true).await?;
    // A one-off window (`#<id>`) is over when the database says so, whatever a replica's
    // view of the windows (one added elsewhere a moment ago) says; a configured window is
    // the caller's to judge.
    if let Some(id) = window
        .strip_prefix('#')
        .and_then(|id| id.parse::<i64>().ok())
    {
        let rows = tx
            .query(
                "SELECT ends_at FROM mcpwatch_windows WHERE id = ?1",
                args![id],
            )
            .await?;
        if rows
            .first()
            .map(|r| r.i64(0))
            .transpose()?
            .is_some_and(|ends| ends > now)
        {
            return Ok(0);
        }
    }
    let rows = tx
        .query(
            "SELECT id, channel, notification_id, alerts FROM mcpwatch_deliveries
             WHERE state = 'held' AND hold = ?1 ORDER BY id FOR UPDATE",
            args![window],
        )
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut held = Vec::with_capacity(rows.len());
    for r in &rows {
        ids.push(r.i64(0)?);
        held.push((r.text(1)?, r.i64(2)?, decode_alerts(&r.text(3)?)));
    }
    let summaries = super::summaries(window, held);
    for (channel, notification, event) in &summaries {
        tell(
            tx,
            *notification,
            &[],
            &[(channel.clone(), Some(event.clone()))],
            now,
            None,
        )
        .await?;
    }
    for id in ids {
        tx.execute(
            "UPDATE mcpwatch_deliveries SET state = 'summarized', updated_at = ?2 WHERE id = ?1",
            args![id, now],
        )
        .await?;
    }
    Ok(summaries.len())
}

fn view(r: &Row) -> Result<NotificationView, StoreError> {
    Ok(NotificationView {
        id: r.i64(0)?,
        received_at: format_rfc3339(r.i64(1)?),
        receiver: r.text(2)?,
        group_key: r.text(3)?,
        status: r.text(4)?,
        alerts: usize::try_from(r.u64(5)?).unwrap_or(0),
        duplicates: r.u64(6)?,
        deliveries: Vec::new(),
        payload: None,
    })
}

async fn deliveries_of<T: Tx>(
    tx: &mut T,
    notification: i64,
) -> Result<Vec<DeliveryView>, StoreError> {
    tx.query(
        "SELECT id, channel, state, attempts, last_error, next_attempt_at, delivered_at, alerts
         FROM mcpwatch_deliveries WHERE notification_id = ?1 ORDER BY id",
        args![notification],
    )
    .await?
    .iter()
    .map(|r| {
        let state = r.text(2)?;
        Ok(DeliveryView {
            id: r.i64(0)?,
            channel: r.text(1)?,
            next_attempt_at: (state == state::PENDING)
                .then(|| r.i64(5).map(format_rfc3339))
                .transpose()?,
            state,
            attempts: r.u32(3)?,
            last_error: r.opt_text(4)?,
            delivered_at: r.opt_i64(6)?.map(format_rfc3339),
            alerts: decode_alerts(&r.text(7)?).len(),
        })
    })
    .collect()
}

pub(crate) async fn list<T: Tx>(
    tx: &mut T,
    filter: &ListFilter,
) -> Result<Vec<NotificationView>, StoreError> {
    let mut list = tx
        .query(
            "SELECT n.id, n.received_at, n.receiver, n.group_key, n.status, n.alert_count, n.duplicates
             FROM mcpwatch_notifications n
             WHERE (CAST(?1 AS BIGINT) IS NULL OR n.id < ?1)
               AND (CAST(?2 AS TEXT) IS NULL OR n.receiver = ?2)
               AND (CAST(?3 AS TEXT) IS NULL AND CAST(?4 AS TEXT) IS NULL OR EXISTS (
                    SELECT 1 FROM mcpwatch_deliveries d WHERE d.notification_id = n.id
                    AND (CAST(?3 AS TEXT) IS NULL OR d.state = ?3)
                    AND (CAST(?4 AS TEXT) IS NULL OR d.channel = ?4)))
             ORDER BY n.id DESC LIMIT ?5",
            args![
                filter.before,
                filter.receiver.as_deref(),
                filter.state.as_deref(),
                filter.channel.as_deref(),
                filter.limit
            ],
        )
        .await?
        .iter()
        .map(view)
        .collect::<Result<Vec<_>, _>>()?;
    for n in &mut list {
        n.deliveries = deliveries_of(tx, n.id).await?;
    }
    Ok(list)
}

pub(crate) async fn get<T: Tx>(
    tx: &mut T,
    id: i64,
) -> Result<Option<NotificationView>, StoreError> {
    let mut rows = tx
        .query(
            "SELECT id, received_at, receiver, group_key, status, alert_count, duplicates,
                 payload_encoding, payload
             FROM mcpwatch_notifications WHERE id = ?1",
            args![id],
        )
        .await?;
    let Some(row) = rows.first_mut() else {
        return Ok(None);
    };
    let mut found = view(row)?;
    found.payload = row.take_body(7).ok().and_then(|body| {
        body.json()
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
    });
    found.deliveries = deliveries_of(tx, found.id).await?;
    Ok(Some(found))
}

pub(crate) async fn payloads<T: Tx>(
    tx: &mut T,
    ids: &[i64],
) -> Result<Vec<(i64, Body)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut rows = tx
            .query(
                "SELECT payload_encoding, payload FROM mcpwatch_notifications WHERE id = ?1",
                args![*id],
            )
            .await?;
        if let Some(row) = rows.first_mut() {
            out.push((*id, row.take_body(0)?));
        }
    }
    Ok(out)
}

pub(crate) async fn stats<T: Tx>(tx: &mut T, now: i64) -> Result<QueueStats, StoreError> {
    let depth = tx
        .query(
            "SELECT channel, state, COUNT(*) FROM mcpwatch_deliveries
             WHERE state IN ('pending', 'sending', 'dead', 'held') GROUP BY channel, state",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?, r.u64(2)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let oldest_pending = tx
        .query(
            "SELECT channel, MIN(queued_at) FROM mcpwatch_deliveries
             WHERE state IN ('pending', 'sending') GROUP BY channel",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, age_seconds(now, r.i64(1)?))))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let incidents = tx
        .query(
            "SELECT policy, level + 1, CASE WHEN acked_at IS NULL THEN 0 ELSE 1 END, COUNT(*)
             FROM mcpwatch_incidents WHERE open GROUP BY 1, 2, 3",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, r.u32(1)?, r.bool(2)?, r.u64(3)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(QueueStats {
        depth,
        oldest_pending,
        disk: None,
        incidents,
        held: held(tx).await?,
    })
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_tell_groups_and_receivers_apart() {
        let a = stream("mcp", "{}:{alertname=\"A\"}");
        assert_eq!(a, stream("mcp", "{}:{alertname=\"A\"}"));
        assert_ne!(a, stream("mcp", "{}:{alertname=\"B\"}"));
        assert_ne!(a, stream("other", "{}:{alertname=\"A\"}"));
        // The separator keeps "ab" + "c" and "a" + "bc" apart.
        assert_ne!(stream("ab", "c"), stream("a", "bc"));
    }
}
