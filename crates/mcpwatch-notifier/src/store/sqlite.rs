//! The embedded store: one SQLite file in WAL mode. Every write goes through one writer
//! thread that commits whatever arrived together in one transaction (group commit), so a
//! burst of webhooks costs one fsync, not one each; readers use their own connection.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::sql::{self, Cell, Row, Tx, Value};
use super::{
    Accepted, AckRefused, AckRequest, Body, ClaimBatch, DedupKey, DiskStats, Entry, IncidentView, Note, RemediationClaims, Snapshot, DEFAULT_REMEDIATION_LEASE,
    ListFilter, NewNotification, NewWindow, NotificationView, Outcome, Policies, QueueStats,
    SCHEMA_VERSION, Store, StoreError, WindowRow,
};
use crate::time::now_ms;

/// Writes committed together at most.
const MAX_BATCH: usize = 512;

/// Versions before 4: 2 moved the dedup keys from their own indexed table into the
/// notifications, indexed in memory by the writer; 3 added incidents, maintenance windows,
/// a delivery's event and hold. 4 is the schema both stores share (see `SCHEMA_VERSION`).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mcpwatch_notifications (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    alert_count INTEGER NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    -- 'lz4' or 'json' (see store::Body)
    payload_encoding TEXT NOT NULL,
    payload NOT NULL,
    -- The 32 bytes of its DedupKey; no index: the writer keeps those of the dedup window
    -- in memory (an index would cost a write to a random page per notification).
    dedup_key BLOB,
    -- Who sent it (payload::sender).
    sender INTEGER
);
CREATE TABLE IF NOT EXISTS mcpwatch_deliveries (
    id INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES mcpwatch_notifications (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    alerts TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    queued_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_until INTEGER,
    last_error TEXT,
    delivered_at INTEGER,
    updated_at INTEGER NOT NULL,
    -- What it says besides the alerts (incident::Event as JSON).
    event TEXT,
    -- The maintenance window holding it (state 'held').
    hold TEXT,
    -- Its alert group (store::sql::stream); none for an incident's steps. No index: the
    -- writer keeps the queued deliveries of each group in memory (an index on a hash would
    -- cost a write to a random page per delivery).
    stream INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_held ON mcpwatch_deliveries (hold) WHERE state = 'held';
-- AUTOINCREMENT: an id is never used again (a signed link names one).
CREATE TABLE IF NOT EXISTS mcpwatch_incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy TEXT NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    open INTEGER NOT NULL,
    level INTEGER NOT NULL,
    told TEXT NOT NULL,
    notification_id INTEGER NOT NULL,
    alerts TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    next_at INTEGER,
    acked_at INTEGER,
    acked_by TEXT,
    generation INTEGER NOT NULL,
    resolved_at INTEGER,
    resolved_by TEXT,
    severity TEXT,
    title TEXT,
    next_update_at INTEGER,
    remediation TEXT
);
CREATE INDEX IF NOT EXISTS incidents_update_due ON mcpwatch_incidents (next_update_at)
    WHERE next_update_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS mcpwatch_incident_events (
    id INTEGER PRIMARY KEY,
    incident INTEGER NOT NULL REFERENCES mcpwatch_incidents (id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    channel TEXT,
    level INTEGER,
    detail TEXT,
    alerts TEXT
);
CREATE INDEX IF NOT EXISTS incident_events_incident ON mcpwatch_incident_events (incident, at, id);
CREATE TABLE IF NOT EXISTS mcpwatch_remediations (
    incident INTEGER NOT NULL REFERENCES mcpwatch_incidents (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    claimed_by TEXT,
    claimed_until INTEGER,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (incident, action)
);
CREATE TABLE IF NOT EXISTS mcpwatch_status_groups (
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    component TEXT NOT NULL,
    state INTEGER NOT NULL,
    detail TEXT,
    since INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (receiver, group_key, component)
);
CREATE INDEX IF NOT EXISTS status_groups_component ON mcpwatch_status_groups (component);
CREATE TABLE IF NOT EXISTS mcpwatch_status_changes (
    id INTEGER PRIMARY KEY,
    component TEXT NOT NULL,
    state INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS status_changes_component ON mcpwatch_status_changes (component, at);
CREATE INDEX IF NOT EXISTS incidents_group ON mcpwatch_incidents (group_key, receiver, policy) WHERE open = 1;
CREATE INDEX IF NOT EXISTS incidents_due ON mcpwatch_incidents (next_at) WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS mcpwatch_windows (
    id INTEGER PRIMARY KEY,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    matchers TEXT NOT NULL,
    author TEXT NOT NULL,
    reason TEXT NOT NULL,
    hold_critical INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON mcpwatch_deliveries (channel, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_state ON mcpwatch_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_received ON mcpwatch_notifications (received_at);
CREATE INDEX IF NOT EXISTS deliveries_notification ON mcpwatch_deliveries (notification_id);
CREATE TABLE IF NOT EXISTS mcpwatch_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES mcpwatch_deliveries (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    outcome TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON mcpwatch_attempts (delivery_id);
";

/// A write, run on the writer thread inside a batch.
enum Work {
    Accept(Box<NewNotification>),
    Claim {
        now: i64,
        budgets: Vec<(String, usize)>,
        total: usize,
        lease: Duration,
    },
    Retire(Vec<String>),
    Complete(i64, u32, Outcome),
    Replay(i64),
    Recover,
    Prune(Duration, Duration),
    Escalate(i64, Arc<Policies>, usize),
    Acknowledge(i64, AckRequest, Arc<Policies>),
    Resolve {
        incident: i64,
        by: String,
        now: i64,
        policies: Arc<Policies>,
        quiet: Vec<String>,
    },
    Record(i64, i64, Note),
    ClaimRemediations {
        now: i64,
        owner: String,
        leases: BTreeMap<String, Duration>,
        limit: usize,
        policies: Arc<Policies>,
    },
    FinishRemediation {
        incident: i64,
        action: String,
        owner: String,
        now: i64,
        state: &'static str,
        note: Note,
        policies: Arc<Policies>,
    },
    AddWindow(NewWindow),
    EndWindow(i64, i64),
    Release(String, i64),
}

/// What a write returns.
enum Done {
    Accepted(Accepted),
    Claimed(ClaimBatch),
    Flag(bool),
    Count(usize),
    Escalated(Vec<(i64, String, u32)>),
    Acknowledged(Box<Result<IncidentView, AckRefused>>),
    Window(Option<WindowRow>),
    Remediations(RemediationClaims),
}

/// The value of one kind of write, out of its [`Done`].
trait FromDone: Sized {
    fn from_done(done: Done) -> Option<Self>;
}

macro_rules! from_done {
    ($($variant:ident($type:ty)),* $(,)?) => {$(
        impl FromDone for $type {
            fn from_done(done: Done) -> Option<Self> {
                if let Done::$variant(v) = done { Some(v) } else { None }
            }
        }
    )*};
}

from_done!(
    Accepted(Accepted),
    Claimed(ClaimBatch),
    Flag(bool),
    Count(usize),
    Escalated(Vec<(i64, String, u32)>),
    Window(Option<WindowRow>),
    Remediations(RemediationClaims),
);

impl FromDone for Result<IncidentView, AckRefused> {
    fn from_done(done: Done) -> Option<Self> {
        if let Done::Acknowledged(v) = done {
            Some(*v)
        } else {
            None
        }
    }
}

/// Where a write's answer goes.
type Reply = oneshot::Sender<Result<Done, StoreError>>;

type Op = (Work, Reply);

/// What the writer thread hears.
enum Msg {
    /// A write to make.
    Write(Op),
    /// A sender had its answer for a notification, at a time (kept in memory only: nothing
    /// to write).
    Answered(DedupKey, i64, i64, i64),
    /// The sync thread has flushed what it was given and is free.
    Flushed,
    /// The store is closing: commit what is open, then stop.
    Close,
    /// The sync thread has stopped: nothing can be acknowledged any more.
    SyncGone,
}

/// Sends [`Msg::SyncGone`] when dropped, as the sync thread ends (or panics).
struct SyncGone(Sender<Msg>);

impl Drop for SyncGone {
    fn drop(&mut self) {
        let _ = self.0.send(Msg::SyncGone);
    }
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    _lock: std::fs::File,
    writer: Mutex<Option<Sender<Msg>>>,
    /// The writer thread, then the checkpoint thread (which stops after it).
    thread: Mutex<Option<(std::thread::JoinHandle<()>, std::thread::JoinHandle<()>)>>,
    reader: Arc<Mutex<Connection>>,
    disk: Arc<DiskCounters>,
}

/// What [`DiskStats`] reports, counted by the writer and sync threads.
#[derive(Debug, Default)]
struct DiskCounters {
    writes: AtomicU64,
    commits: AtomicU64,
    flushes: AtomicU64,
    flush_nanos: AtomicU64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before Alertmanager hears 200; group commit pays for it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating when needed) the database at `path` and its directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unusable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // One notifier per file: a second one would take the first one's deliveries in
        // flight for abandoned and send them again. The lock goes with the process.
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                StoreError::Unusable(format!(
                    "cannot open {}: {e}",
                    PathBuf::from(&lock_path).display()
                ))
            })?;
        lock.try_lock().map_err(|_| {
            StoreError::Unusable(format!(
                "{} is in use by another notifier; give each its own storage.path (or share storage.postgres)",
                path.display()
            ))
        })?;
        let mut conn = open(path)
            .map_err(|e| StoreError::Unusable(format!("cannot open {}: {e}", path.display())))?;
        migrate(&mut conn)?;
        // Checkpoints (copying the WAL into the database) run on their own thread, off the
        // path of the commits that acknowledge webhooks.
        conn.pragma_update(None, "wal_autocheckpoint", 0_i64)?;
        // The writer keeps a queue's hot pages (indexes, recent rows) cached: 8 MiB.
        conn.pragma_update(None, "cache_size", -8192_i64)?;
        // The writer's commits do not wait for the disk: the sync thread flushes the WAL
        // after each commit (many commits per flush when they come quickly), and answers a
        // write only then, while the writer goes on with the next batch. A commit is as
        // durable before its answer as with synchronous=FULL; the flush overlaps the work.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A WAL that a burst grew is cut back to this when it starts over.
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP)?;
        let reader = open(path)?;
        let checkpointer = open(path)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let tx_for_sync = tx.clone();
        let disk = Arc::new(DiskCounters::default());
        let (writer_counts, sync_counts) = (disk.clone(), disk.clone());
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel::<()>();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let checkpoints = std::thread::Builder::new()
            .name("notifier-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointer, &stopped))
            .map_err(|e| {
                StoreError::Unusable(format!("cannot start the checkpoint thread: {e}"))
            })?;
        let (started, start) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        let thread = std::thread::Builder::new()
            .name("notifier-store".into())
            .spawn(move || {
                std::thread::scope(|scope| {
                    let (synced, to_sync) = std::sync::mpsc::channel();
                    let wal = &wal;
                    let flushed = tx_for_sync;
                    let syncer = std::thread::Builder::new()
                        .name("notifier-sync".into())
                        .spawn_scoped(scope, move || {
                            // However the thread ends, the writer hears of it and stops
                            // rather than wait for a flush that will not come.
                            let gone = SyncGone(flushed.clone());
                            sync_loop(&to_sync, wal, &flushed, &sync_counts);
                            drop(gone);
                        });
                    match syncer {
                        Ok(_) => {
                            let _ = started.send(Ok(()));
                            writer_loop(&conn, &rx, wal, &synced, &writer_counts);
                        }
                        Err(e) => {
                            let _ = started.send(Err(format!("cannot start the sync thread: {e}")));
                        }
                    }
                });
                drop(stop_checkpoints);
            })
            .map_err(|e| StoreError::Unusable(format!("cannot start the writer thread: {e}")))?;
        start
            .recv()
            .map_err(|_| StoreError::Unusable("the writer thread stopped at start".into()))?
            .map_err(StoreError::Unusable)?;
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some((thread, checkpoints))),
            reader: Arc::new(Mutex::new(reader)),
            disk,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after what it has queued; later writes fail with `Closed`.
    pub fn close(&self) {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.send(Msg::Close);
        }
        let threads = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((writer, checkpoints)) = threads {
            let _ = writer.join();
            let _ = checkpoints.join();
        }
    }

    async fn write<T: FromDone>(&self, work: Work) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let writer = self.writer.lock().map_err(|_| StoreError::Closed)?;
            writer
                .as_ref()
                .ok_or(StoreError::Closed)?
                .send(Msg::Write((work, tx)))
                .map_err(|_| StoreError::Closed)?;
        }
        let done = rx.await.map_err(|_| StoreError::Closed)??;
        T::from_done(done)
            .ok_or_else(|| StoreError::Unusable("the writer answered another write".into()))
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| StoreError::Closed)?;
            f(&mut SqliteTx {
                conn: &conn,
                index: None,
                queue: None,
            })
        })
        .await
        .map_err(|e| StoreError::Unusable(format!("the store's read task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unusable(format!(
            "the database has schema version {version}, newer than this notifier's {SCHEMA_VERSION}; use a newer notifier"
        )));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let table = |name: &str| -> Result<bool, rusqlite::Error> {
        tx.query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            params![name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    let column = |table: &str, name: &str| -> Result<bool, rusqlite::Error> {
        tx.query_row(
            "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    // Before 4 the tables had no prefix (foreign keys follow a renamed table).
    if table("notifications")? {
        for name in [
            "notifications",
            "deliveries",
            "incidents",
            "windows",
            "attempts",
        ] {
            if table(name)? {
                tx.execute_batch(&format!("ALTER TABLE {name} RENAME TO mcpwatch_{name}"))?;
            }
        }
        let deliveries = table("mcpwatch_deliveries")?;
        // Before 3, deliveries had no event and hold (the schema below indexes hold).
        if deliveries && !column("mcpwatch_deliveries", "hold")? {
            tx.execute_batch(
                "ALTER TABLE mcpwatch_deliveries ADD COLUMN event TEXT;
                 ALTER TABLE mcpwatch_deliveries ADD COLUMN hold TEXT;",
            )?;
        }
        // Before 4 a body's kind was its column type: a BLOB compressed, TEXT not.
        if !column("mcpwatch_notifications", "payload_encoding")? {
            tx.execute_batch(
                "ALTER TABLE mcpwatch_notifications ADD COLUMN payload_encoding TEXT NOT NULL DEFAULT 'lz4';
                 UPDATE mcpwatch_notifications SET payload_encoding = 'json' WHERE typeof(payload) = 'text';",
            )?;
        }
        if !column("mcpwatch_notifications", "sender")? {
            tx.execute_batch("ALTER TABLE mcpwatch_notifications ADD COLUMN sender INTEGER")?;
        }
        if deliveries && !column("mcpwatch_deliveries", "stream")? {
            tx.execute_batch("ALTER TABLE mcpwatch_deliveries ADD COLUMN stream INTEGER")?;
        }
    }
    // Before 5 an incident had no severity, title, status updates or remediation.
    if table("mcpwatch_incidents")? && !column("mcpwatch_incidents", "severity")? {
        tx.execute_batch(
            "ALTER TABLE mcpwatch_incidents ADD COLUMN resolved_by TEXT;
             ALTER TABLE mcpwatch_incidents ADD COLUMN severity TEXT;
             ALTER TABLE mcpwatch_incidents ADD COLUMN title TEXT;
             ALTER TABLE mcpwatch_incidents ADD COLUMN next_update_at INTEGER;
             ALTER TABLE mcpwatch_incidents ADD COLUMN remediation TEXT;",
        )?;
    }
    tx.execute_batch(SCHEMA)?;
    if version == 1 {
        tx.execute_batch(
            "ALTER TABLE mcpwatch_notifications ADD COLUMN dedup_key BLOB;
             UPDATE mcpwatch_notifications SET dedup_key =
                 (SELECT unhex(k.key) FROM dedup_keys k WHERE k.notification_id = mcpwatch_notifications.id);
             DROP TABLE dedup_keys;",
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Copies the WAL into the database every half second, without blocking writers
/// (`PASSIVE`), until `stop` is dropped; then once more, truncating the WAL.
fn checkpoint_loop(conn: &Connection, stop: &Receiver<()>) {
    let checkpoint = |mode: &str| {
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; it is tried again.");
        }
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_millis(500))
    {
        checkpoint("PASSIVE");
    }
    checkpoint("TRUNCATE");
}

/// Past this size the writer checkpoints the WAL itself (a sustained burst outruns the
/// checkpoint thread), so that the WAL's disk use stays bounded.
const WAL_LIMIT: u64 = 256 << 20;

/// What a WAL that grew is cut back to when it starts over (`journal_size_limit`).
const WAL_KEEP: i64 = 64 << 20;

/// The answers to a committed batch, sent once the WAL is on disk.
type Answers = Vec<(Reply, Result<Done, StoreError>)>;

/// The writer: each write applied as it arrives, in a transaction left open while the
/// sync thread flushes the previous commit, and committed (then handed to the sync
/// thread) as soon as the flush is done. Commits thus come as fast as the disk flushes,
/// each as large as what arrived meanwhile: the index pages every write touches are
/// written once per flush rather than once per write.
fn writer_loop(
    conn: &Connection,
    rx: &Receiver<Msg>,
    wal: &Path,
    synced: &Sender<Answers>,
    counts: &DiskCounters,
) {
    let mut batch = Batch::default();
    let mut flushing = false;
    let mut commits: u64 = 0;
    let mut closing = false;
    while !closing {
        let Ok(first) = rx.recv() else { break };
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Write(op) => batch.add(conn, op),
                Msg::Answered(key, id, sender, at) => {
                    batch.index.answered(&key, id, sender, at);
                }
                Msg::Flushed => flushing = false,
                Msg::Close => closing = true,
                Msg::SyncGone => {
                    batch.abort(
                        conn,
                        "the store's sync thread stopped; restart the notifier",
                    );
                    return;
                }
            }
            next = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if batch.len() == 0 || (flushing && batch.len() < MAX_BATCH && !closing) {
            continue;
        }
        let answers = batch.commit(conn);
        counts.commits.fetch_add(1, Ordering::Relaxed);
        counts
            .writes
            .fetch_add(answers.len() as u64, Ordering::Relaxed);
        commits += 1;
        flushing = true;
        if synced.send(answers).is_err() {
            break;
        }
        if commits.is_multiple_of(64) && std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_LIMIT) {
            // (busy, frames in the WAL, frames checkpointed); busy: tried again later.
            match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
                Ok(0) => {}
                Ok(_) => tracing::debug!("The WAL checkpoint was busy; it is tried again."),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed."),
            }
        }
    }
}

/// The writes of the open transaction, each with its result so far.
#[derive(Default)]
struct Batch {
    open: bool,
    index: DedupIndex,
    queue: StreamQueue,
    entries: Vec<(Work, Reply, Result<Done, StoreError>)>,
}

impl Batch {
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Applies a write in the open transaction (beginning one if none is). When it fails,
    /// the transaction is rolled back and every write in it made again, each in a
    /// savepoint of its own, so that the failure undoes only its own write; savepoints on
    /// every write would cost the common case.
    fn add(&mut self, conn: &Connection, (work, reply): Op) {
        if !self.open {
            // A transaction a failed rollback left open is ended first.
            let begun = conn.execute_batch("BEGIN IMMEDIATE").or_else(|e| {
                if conn.is_autocommit() {
                    Err(e)
                } else {
                    conn.execute_batch("ROLLBACK; BEGIN IMMEDIATE")
                }
            });
            if let Err(e) = begun {
                tracing::error!(error = %e, "The store cannot begin a transaction; the write is refused.");
                let _ = reply.send(Err(e.into()));
                return;
            }
            self.open = true;
        }
        match run(conn, &mut self.index, &mut self.queue, &work) {
            Ok(done) => self.entries.push((work, reply, Ok(done))),
            Err(e) => {
                self.entries.push((work, reply, Err(e)));
                self.redo_isolated(conn);
            }
        }
    }

    fn redo_isolated(&mut self, conn: &Connection) {
        // The index may hold keys of the writes rolled back.
        self.index.invalidate();
        self.queue.invalidate();
        if let Err(e) = conn
            .execute_batch("ROLLBACK")
            .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"))
        {
            self.abort(conn, &format!("the store cannot begin a transaction: {e}"));
            return;
        }
        for (work, _, result) in &mut self.entries {
            if let Err(e) = conn.execute_batch("SAVEPOINT write") {
                *result = Err(e.into());
                continue;
            }
            *result = match run(conn, &mut self.index, &mut self.queue, work) {
                Ok(done) => match conn.execute_batch("RELEASE write") {
                    Ok(()) => Ok(done),
                    Err(e) => Err(e.into()),
                },
                Err(e) => {
                    // A write whose changes cannot be undone must not be committed with
                    // the others: none of the batch is.
                    if let Err(undo) = conn.execute_batch("ROLLBACK TO write; RELEASE write") {
                        self.abort(conn, &format!("undoing a failed write failed: {undo}"));
                        return;
                    }
                    Err(e)
                }
            };
        }
    }

    /// Rolls back the open transaction and refuses every write of it.
    fn abort(&mut self, conn: &Connection, message: &str) {
        tracing::error!(error = %message, "The writes of this batch are refused.");
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        self.open = false;
        self.index.invalidate();
        self.queue.invalidate();
        for (_, reply, _) in self.entries.drain(..) {
            let _ = reply.send(Err(StoreError::Unusable(message.to_owned())));
        }
    }

    /// Commits the open transaction: each write's answer, or the commit's failure for all.
    fn commit(&mut self, conn: &Connection) -> Answers {
        let committed = if self.open {
            conn.execute_batch("COMMIT").map_err(|e| {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                e.to_string()
            })
        } else {
            Ok(())
        };
        self.open = false;
        if let Err(e) = &committed {
            self.index.invalidate();
            self.queue.invalidate();
            tracing::error!(error = %e, "The store could not commit; the writes of this batch are refused.");
        }
        self.entries
            .drain(..)
            .map(|(_, reply, result)| match &committed {
                Ok(()) => (reply, result),
                Err(e) => (
                    reply,
                    Err(StoreError::Unusable(format!("commit failed: {e}"))),
                ),
            })
            .collect()
    }
}

/// Flushes the WAL to disk for each commit the writer hands over, answers its writes,
/// and tells the writer it is free. After a failed flush the pages the kernel dropped
/// cannot be told from those it kept: every later write is refused, and a restart
/// recovers what the disk has.
fn sync_loop(
    batches: &Receiver<Answers>,
    wal: &Path,
    flushed: &Sender<Msg>,
    counts: &DiskCounters,
) {
    let mut file: Option<std::fs::File> = None;
    let mut broken: Option<String> = None;
    while let Ok(first) = batches.recv() {
        let mut answers = first;
        while let Ok(more) = batches.try_recv() {
            answers.extend(more);
        }
        let started = std::time::Instant::now();
        let synced = if broken.is_none() {
            sync_wal(&mut file, wal)
        } else {
            Ok(())
        };
        counts.flushes.fetch_add(1, Ordering::Relaxed);
        counts.flush_nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Err(e) = synced {
            tracing::error!(error = %e, wal = %wal.display(), "Flushing the store to disk failed; the notifier refuses every write until it is restarted.");
            broken = Some(e);
        }
        for (reply, result) in answers {
            let result = match &broken {
                None => result,
                Some(e) => Err(StoreError::Unusable(format!(
                    "flushing the store to disk failed ({e}); restart the notifier"
                ))),
            };
            let _ = reply.send(result);
        }
        let _ = flushed.send(Msg::Flushed);
    }
}

/// `fdatasync` of the WAL file, opened again if SQLite replaced it.
fn sync_wal(file: &mut Option<std::fs::File>, wal: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let current = std::fs::metadata(wal).map_err(|e| format!("{}: {e}", wal.display()))?;
    let same = file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .is_some_and(|m| m.ino() == current.ino() && m.dev() == current.dev());
    if !same {
        *file = Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(wal)
                .map_err(|e| format!("{}: {e}", wal.display()))?,
        );
    }
    match file {
        Some(f) => f.sync_data().map_err(|e| format!("{}: {e}", wal.display())),
        None => Ok(()),
    }
}

fn run(
    c: &Connection,
    index: &mut DedupIndex,
    queue: &mut StreamQueue,
    work: &Work,
) -> Result<Done, StoreError> {
    let mut tx = SqliteTx {
        conn: c,
        index: Some(index),
        queue: Some(queue),
    };
    let tx = &mut tx;
    let now = now_ms();
    ready(async move {
        Ok(match work {
            Work::Accept(n) => Done::Accepted(sql::accept(tx, n).await?),
            Work::Claim {
                now,
                budgets,
                total,
                lease,
            } => Done::Claimed(sql::claim(tx, *now, budgets, *total, *lease).await?),
            // One process writes this store: nothing it queued is another's to keep.
            Work::Retire(known) => {
                Done::Count(sql::retire(tx, known, now, now.saturating_add(1)).await?)
            }
            Work::Complete(id, attempt, outcome) => {
                Done::Flag(sql::complete(tx, *id, *attempt, outcome, now).await?)
            }
            Work::Replay(id) => Done::Count(sql::replay(tx, *id, now).await?),
            Work::Recover => Done::Count(sql::recover(tx, now).await?),
            Work::Prune(retention, window) => {
                Done::Count(sql::prune(tx, now, *retention, *window).await?)
            }
            Work::Escalate(at, policies, limit) => {
                Done::Escalated(sql::escalate(tx, *at, policies, *limit).await?)
            }
            Work::Acknowledge(id, request, policies) => {
                Done::Acknowledged(Box::new(sql::acknowledge(tx, *id, request, policies).await?))
            }
            Work::Resolve {
                incident,
                by,
                now,
                policies,
                quiet,
            } => Done::Acknowledged(Box::new(
                sql::resolve(tx, *incident, by, *now, policies, quiet).await?,
            )),
            Work::ClaimRemediations {
                now,
                owner,
                leases,
                limit,
                policies,
            } => Done::Remediations(
                sql::claim_remediations(
                    tx,
                    *now,
                    owner,
                    leases,
                    DEFAULT_REMEDIATION_LEASE,
                    *limit,
                    policies,
                )
                .await?,
            ),
            Work::FinishRemediation {
                incident,
                action,
                owner,
                now,
                state,
                note,
                policies,
            } => Done::Flag(
                sql::finish_remediation(tx, *incident, action, owner, *now, state, note, policies)
                    .await?,
            ),
            Work::Record(incident, at, note) => {
                sql::record(tx, *incident, *at, note).await?;
                Done::Flag(true)
            }
            Work::AddWindow(window) => Done::Window(Some(sql::add_window(tx, window).await?)),
            Work::EndWindow(id, at) => Done::Window(sql::end_window(tx, *id, *at).await?),
            Work::Release(window, at) => Done::Count(sql::release(tx, window, *at).await?),
        })
    })?
}

/// The answer of the store's logic run on SQLite, whose statements never wait: the
/// future is ready when first polled.
fn ready<F: Future>(future: F) -> Result<F::Output, StoreError> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Ok(output),
        std::task::Poll::Pending => Err(StoreError::Unusable(
            "a SQLite statement did not complete at once".into(),
        )),
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

/// A statement in SQLite's words: one writer has nothing to lock, so a closing
/// `FOR UPDATE ...` goes.
fn dialect(sql: &'static str) -> std::borrow::Cow<'static, str> {
    // The clause ends a statement when it is there: only the end is searched.
    let tail = sql.len().saturating_sub(40);
    match sql
        .get(tail..)
        .and_then(|end| end.find("FOR UPDATE"))
        .map(|at| tail + at)
    {
        Some(at) => sql[..at].trim_end().to_owned().into(),
        None => sql.into(),
    }
}

/// The store's logic on one SQLite connection: the writer's (with its dedup index) inside
/// its open transaction, or the reader's.
struct SqliteTx<'c> {
    conn: &'c Connection,
    index: Option<&'c mut DedupIndex>,
    queue: Option<&'c mut StreamQueue>,
}

impl SqliteTx<'_> {
    fn statement(&self, sql: &'static str) -> Result<rusqlite::CachedStatement<'_>, StoreError> {
        Ok(self.conn.prepare_cached(&dialect(sql))?)
    }

    fn queue(&mut self) -> Result<&mut StreamQueue, StoreError> {
        self.queue
            .as_deref_mut()
            .ok_or_else(|| StoreError::Unusable("a read tried to write".into()))
    }

    fn index(&mut self) -> Result<&mut DedupIndex, StoreError> {
        self.index
            .as_deref_mut()
            .ok_or_else(|| StoreError::Unusable("a read tried to write".into()))
    }
}

impl Tx for SqliteTx<'_> {
    async fn execute(&mut self, sql: &'static str, args: &[Value<'_>]) -> Result<u64, StoreError> {
        let n = self
            .statement(sql)?
            .execute(rusqlite::params_from_iter(args.iter()))?;
        Ok(n as u64)
    }

    async fn insert(&mut self, sql: &'static str, args: &[Value<'_>]) -> Result<i64, StoreError> {
        self.statement(sql)?
            .execute(rusqlite::params_from_iter(args.iter()))?;
        Ok(self.conn.last_insert_rowid())
    }

    async fn query(
        &mut self,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.statement(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    // Nothing the store writes is a float; one read is taken as a whole.
                    #[allow(clippy::cast_possible_truncation)]
                    ValueRef::Real(v) => Cell::Int(v as i64),
                    ValueRef::Text(v) => Cell::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(v) => Cell::Blob(v.to_vec()),
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    async fn lock(&mut self, _name: &str, _wait: bool) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn find_copy(
        &mut self,
        key: &DedupKey,
        at: i64,
        start: i64,
        sender: i64,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn;
        Ok(self.index()?.find(conn, key, start, sender, at)?)
    }

    async fn keep_key(
        &mut self,
        key: &DedupKey,
        id: i64,
        at: i64,
        start: i64,
    ) -> Result<(), StoreError> {
        self.index()?.insert(*key, id, at, start);
        Ok(())
    }

    async fn forget_keys(&mut self, start: i64) -> Result<(), StoreError> {
        self.index()?.prune(start);
        Ok(())
    }

    async fn queued_in_stream(
        &mut self,
        stream: i64,
        channel: &str,
        id: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let conn = self.conn;
        Ok(self.queue()?.mates(conn, stream, channel, id)?)
    }

    async fn queued(&mut self, stream: i64, channel: &str, id: i64) -> Result<(), StoreError> {
        self.queue()?.add(stream, channel, id);
        Ok(())
    }

    async fn unqueued(&mut self, id: i64) -> Result<(), StoreError> {
        self.queue()?.remove(id);
        Ok(())
    }

    async fn requeued(&mut self) -> Result<(), StoreError> {
        self.queue()?.invalidate();
        Ok(())
    }
}

/// The dedup keys of the notifications received within the dedup window, kept in memory
/// by the writer; loaded from the notifications table (its `received_at` index) for the
/// part of the window it does not cover, and dropped whenever a rollback may have left
/// keys of writes that did not commit. About 60 bytes per notification in the window.
///
/// Each key also holds the senders answered for its notification, whose next copy is a new
/// sending. What was answered is known to this process only: a notification read back
/// from the file counts as answered to its sender when it arrived a while before (a copy
/// still in flight when the process stopped may not have been), to nobody else.
#[derive(Debug, Default)]
struct DedupIndex {
    keys: HashMap<DedupKey, Kept>,
    /// Every notification received from this time on is in `keys`; `None`: not loaded.
    from: Option<i64>,
    /// Past this many keys, those older than the window are dropped.
    prune_at: usize,
}

/// A key's newest notification.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    id: i64,
    at: i64,
    /// The senders answered for it, each with when.
    answered: Vec<(i64, i64)>,
}

/// A notification read back counts as answered to its sender when it arrived this long
/// before it was read: far longer than storing and answering one takes.
const ANSWERED_AFTER_MS: i64 = 60_000;

impl DedupIndex {
    /// The newest notification with `key` received at `start` or later, when this copy
    /// (arrived at `at`) is a copy of it: `sender` had not been answered for it by then.
    fn find(
        &mut self,
        c: &Connection,
        key: &DedupKey,
        start: i64,
        sender: i64,
        at: i64,
    ) -> Result<Option<i64>, rusqlite::Error> {
        self.cover(c, start)?;
        Ok(self
            .keys
            .get(key)
            .filter(|kept| {
                kept.at >= start
                    && !kept
                        .answered
                        .iter()
                        .any(|(answered, when)| *answered == sender && *when < at)
            })
            .map(|kept| kept.id))
    }

    /// Loads the keys received from `start` on that are not loaded yet.
    fn cover(&mut self, c: &Connection, start: i64) -> Result<(), rusqlite::Error> {
        let end = match self.from {
            Some(from) if from <= start => return Ok(()),
            Some(from) => from,
            None => i64::MAX,
        };
        let settled = now_ms().saturating_sub(ANSWERED_AFTER_MS);
        let mut statement = c.prepare_cached(
            "SELECT dedup_key, id, received_at, sender FROM mcpwatch_notifications
             WHERE received_at >= ?1 AND received_at < ?2 AND dedup_key IS NOT NULL",
        )?;
        let mut rows = statement.query(params![start, end])?;
        while let Some(row) = rows.next()? {
            let Ok(key) = <[u8; 32]>::try_from(row.get_ref(0)?.as_blob()?) else {
                continue;
            };
            let (id, at): (i64, i64) = (row.get(1)?, row.get(2)?);
            let sender: Option<i64> = row.get(3)?;
            let kept = Kept {
                id,
                at,
                answered: sender
                    .filter(|_| at < settled)
                    .map(|sender| (sender, at))
                    .into_iter()
                    .collect(),
            };
            self.keys
                .entry(DedupKey(key))
                .and_modify(|e| {
                    if id > e.id {
                        *e = kept.clone();
                    }
                })
                .or_insert(kept);
        }
        self.from = Some(start);
        Ok(())
    }

    fn insert(&mut self, key: DedupKey, id: i64, at: i64, start: i64) {
        self.keys.insert(
            key,
            Kept {
                id,
                at,
                answered: Vec::new(),
            },
        );
        if self.keys.len() > self.prune_at {
            self.prune(start);
        }
    }

    /// Records that `sender` was answered for notification `id` at `at`.
    fn answered(&mut self, key: &DedupKey, id: i64, sender: i64, at: i64) {
        if let Some(kept) = self.keys.get_mut(key)
            && kept.id == id
            && !kept
                .answered
                .iter()
                .any(|(answered, _)| *answered == sender)
        {
            kept.answered.push((sender, at));
        }
    }

    /// Drops the keys received before `start`.
    fn prune(&mut self, start: i64) {
        self.keys.retain(|_, kept| kept.at >= start);
        self.from = self.from.map(|from| from.max(start));
        self.prune_at = (self.keys.len() * 2).max(4096);
    }

    /// Forgets everything; the next lookup loads again.
    fn invalidate(&mut self) {
        self.keys = HashMap::new();
        self.from = None;
        self.prune_at = 0;
    }
}

/// The queued (pending or sending) deliveries of each stream, kept in memory by the writer
/// in place of an index: read from the table when first needed (and again after a rollback
/// or a bulk change), then kept up to date as deliveries are queued and leave the queue.
/// What it names is checked against the table by its caller, so an entry left behind
/// costs a lookup, never an order.
#[derive(Debug, Default)]
struct StreamQueue {
    loaded: bool,
    /// Stream: its queued (delivery, channel's index in `channels`).
    by_stream: HashMap<i64, Mates, Mixed>,
    /// Delivery: stream.
    by_id: HashMap<i64, i64, Mixed>,
    /// The channels' names, each once.
    channels: Vec<Box<str>>,
}

/// A stream's queued deliveries: mostly one, kept without an allocation of its own.
#[derive(Debug)]
enum Mates {
    One((i64, u32)),
    Many(Vec<(i64, u32)>),
}

impl Mates {
    fn as_slice(&self) -> &[(i64, u32)] {
        match self {
            Mates::One(pair) => std::slice::from_ref(pair),
            Mates::Many(all) => all,
        }
    }

    fn push(&mut self, pair: (i64, u32)) {
        match self {
            Mates::One(first) => *self = Mates::Many(vec![*first, pair]),
            Mates::Many(all) => all.push(pair),
        }
    }

    /// Drops delivery `id`; whether any is left.
    fn remove(&mut self, id: i64) -> bool {
        match self {
            Mates::One((one, _)) => *one != id,
            Mates::Many(all) => {
                all.retain(|(other, _)| *other != id);
                if let [only] = all.as_slice() {
                    *self = Mates::One(*only);
                }
                !self.as_slice().is_empty()
            }
        }
    }
}

/// Hashes the numbers the stream queue is keyed by (a stream is a hash already, a delivery
/// id counts up) with one multiplication.
#[derive(Debug, Default, Clone, Copy)]
struct Mixed;

impl std::hash::BuildHasher for Mixed {
    type Hasher = MixedHasher;
    fn build_hasher(&self) -> MixedHasher {
        MixedHasher(0)
    }
}

#[derive(Debug)]
struct MixedHasher(u64);

impl std::hash::Hasher for MixedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = mcpwatch_core::fnv::extend(self.0, bytes);
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = n.cast_unsigned().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl StreamQueue {
    fn load(&mut self, c: &Connection) -> Result<(), rusqlite::Error> {
        if self.loaded {
            return Ok(());
        }
        let mut statement = c.prepare_cached(
            "SELECT id, stream, channel FROM mcpwatch_deliveries
             WHERE state IN ('pending', 'sending') AND stream IS NOT NULL",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let (id, stream): (i64, i64) = (row.get(0)?, row.get(1)?);
            let channel = row.get_ref(2)?.as_str()?;
            self.insert(stream, channel, id);
        }
        self.loaded = true;
        Ok(())
    }

    fn channel(&mut self, name: &str) -> u32 {
        let index = match self.channels.iter().position(|c| &**c == name) {
            Some(index) => index,
            None => {
                self.channels.push(name.into());
                self.channels.len() - 1
            }
        };
        u32::try_from(index).unwrap_or(u32::MAX)
    }

    fn insert(&mut self, stream: i64, channel: &str, id: i64) {
        if self.by_id.insert(id, stream).is_none() {
            let channel = self.channel(channel);
            match self.by_stream.entry(stream) {
                std::collections::hash_map::Entry::Occupied(mut mates) => {
                    mates.get_mut().push((id, channel));
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Mates::One((id, channel)));
                }
            }
        }
    }

    fn mates(
        &mut self,
        c: &Connection,
        stream: i64,
        channel: &str,
        id: i64,
    ) -> Result<Vec<i64>, rusqlite::Error> {
        self.load(c)?;
        let Some(queued) = self.by_stream.get(&stream) else {
            return Ok(Vec::new());
        };
        let Some(channel) = self.channels.iter().position(|c| &**c == channel) else {
            return Ok(Vec::new());
        };
        Ok(queued
            .as_slice()
            .iter()
            .filter(|(other, ch)| *other != id && usize::try_from(*ch).ok() == Some(channel))
            .map(|(other, _)| *other)
            .collect())
    }

    /// A delivery joined the queue (one not loaded yet is read with the rest).
    fn add(&mut self, stream: i64, channel: &str, id: i64) {
        if self.loaded {
            self.insert(stream, channel, id);
        }
    }

    fn remove(&mut self, id: i64) {
        let Some(stream) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(queued) = self.by_stream.get_mut(&stream)
            && !queued.remove(id)
        {
            self.by_stream.remove(&stream);
        }
    }

    /// Forgets everything; the next lookup reads the table again.
    fn invalidate(&mut self) {
        *self = Self::default();
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn accept(&self, notification: NewNotification) -> Result<Accepted, StoreError> {
        self.write(Work::Accept(Box::new(notification))).await
    }

    async fn claim(
        &self,
        now: i64,
        budgets: Vec<(String, usize)>,
        total: usize,
        lease: Duration,
    ) -> Result<ClaimBatch, StoreError> {
        self.write(Work::Claim {
            now,
            budgets,
            total,
            lease,
        })
        .await
    }

    async fn retire_channels(&self, known: Vec<String>) -> Result<usize, StoreError> {
        self.write(Work::Retire(known)).await
    }

    async fn answered(
        &self,
        key: DedupKey,
        notification: i64,
        sender: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        // Straight to the writer's index: no transaction, no flush to wait for.
        let writer = self.writer.lock().map_err(|_| StoreError::Closed)?;
        writer
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Msg::Answered(key, notification, sender, at))
            .map_err(|_| StoreError::Closed)
    }

    async fn complete(
        &self,
        delivery: i64,
        attempt: u32,
        outcome: Outcome,
    ) -> Result<bool, StoreError> {
        self.write(Work::Complete(delivery, attempt, outcome)).await
    }

    async fn replay(&self, notification: i64) -> Result<usize, StoreError> {
        self.write(Work::Replay(notification)).await
    }

    async fn recover(&self) -> Result<usize, StoreError> {
        self.write(Work::Recover).await
    }

    async fn prune(&self, retention: Duration, window: Duration) -> Result<usize, StoreError> {
        self.write(Work::Prune(retention, window)).await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<NotificationView>, StoreError> {
        self.read(move |tx| ready(sql::list(tx, &filter))?).await
    }

    async fn get(&self, id: i64) -> Result<Option<NotificationView>, StoreError> {
        self.read(move |tx| ready(sql::get(tx, id))?).await
    }

    async fn escalate(
        &self,
        now: i64,
        policies: Arc<Policies>,
        limit: usize,
    ) -> Result<Vec<(i64, String, u32)>, StoreError> {
        self.write(Work::Escalate(now, policies, limit)).await
    }

    async fn next_escalation(&self) -> Result<Option<i64>, StoreError> {
        self.read(|tx| ready(sql::next_escalation(tx))?).await
    }

    async fn acknowledge(
        &self,
        incident: i64,
        request: AckRequest,
        policies: Arc<Policies>,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError> {
        self.write(Work::Acknowledge(incident, request, policies))
            .await
    }

    async fn incidents(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<IncidentView>, StoreError> {
        self.read(move |tx| ready(sql::incidents(tx, open_only, limit))?)
            .await
    }

    async fn incident(&self, id: i64) -> Result<Option<IncidentView>, StoreError> {
        self.read(move |tx| ready(sql::incident(tx, id))?).await
    }

    async fn resolve(
        &self,
        incident: i64,
        by: String,
        now: i64,
        policies: Arc<Policies>,
        quiet: Vec<String>,
    ) -> Result<Result<IncidentView, AckRefused>, StoreError> {
        self.write(Work::Resolve {
            incident,
            by,
            now,
            policies,
            quiet,
        })
        .await
    }

    async fn timeline(&self, incident: i64) -> Result<Vec<Entry>, StoreError> {
        self.read(move |tx| ready(sql::timeline(tx, incident))?).await
    }

    async fn record(&self, incident: i64, at: i64, note: Note) -> Result<(), StoreError> {
        let _: bool = self.write(Work::Record(incident, at, note)).await?;
        Ok(())
    }

    async fn status(&self, since: i64) -> Result<Snapshot, StoreError> {
        self.read(move |tx| ready(sql::status(tx, since))?).await
    }

    async fn claim_remediations(
        &self,
        now: i64,
        owner: String,
        leases: BTreeMap<String, Duration>,
        limit: usize,
        policies: Arc<Policies>,
    ) -> Result<RemediationClaims, StoreError> {
        self.write(Work::ClaimRemediations {
            now,
            owner,
            leases,
            limit,
            policies,
        })
        .await
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
        self.write(Work::FinishRemediation {
            incident,
            action,
            owner,
            now,
            state,
            note,
            policies,
        })
        .await
    }

    async fn add_window(&self, window: NewWindow) -> Result<WindowRow, StoreError> {
        let added: Option<WindowRow> = self.write(Work::AddWindow(window)).await?;
        added.ok_or_else(|| StoreError::Unusable("the window was not stored".into()))
    }

    async fn end_window(&self, id: i64, now: i64) -> Result<Option<WindowRow>, StoreError> {
        self.write(Work::EndWindow(id, now)).await
    }

    async fn windows(&self, since: i64) -> Result<Vec<WindowRow>, StoreError> {
        self.read(move |tx| ready(sql::windows(tx, since))?).await
    }

    async fn held(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|tx| ready(sql::held(tx))?).await
    }

    async fn release(&self, window: String, now: i64) -> Result<usize, StoreError> {
        self.write(Work::Release(window, now)).await
    }

    async fn payloads(&self, ids: Vec<i64>) -> Result<Vec<(i64, Body)>, StoreError> {
        self.read(move |tx| ready(sql::payloads(tx, &ids))?).await
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let stats = self.read(|tx| ready(sql::stats(tx, now_ms()))?).await?;
        Ok(QueueStats {
            disk: Some(DiskStats {
                writes: self.disk.writes.load(Ordering::Relaxed),
                commits: self.disk.commits.load(Ordering::Relaxed),
                flushes: self.disk.flushes.load(Ordering::Relaxed),
                #[allow(clippy::cast_precision_loss)]
                flush_seconds: self.disk.flush_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            }),
            ..stats
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewDelivery;

    fn notification(key: &str, at: i64) -> NewNotification {
        NewNotification {
            dedup_key: {
                let mut bytes = [0_u8; 32];
                bytes[..key.len()].copy_from_slice(key.as_bytes());
                DedupKey(bytes)
            },
            receiver: "mcp".into(),
            group_key: "{}:{}".into(),
            status: "firing".into(),
            alert_count: 1,
            payload: Body::Json("{\"alerts\":[]}".into()),
            deliveries: vec![
                NewDelivery {
                    channel: "chat".into(),
                    alerts: vec![0],
                    hold: None,
                },
                NewDelivery {
                    channel: "log".into(),
                    alerts: vec![0],
                    hold: None,
                },
            ],
            received_at: at,
            dedup_window: Duration::from_secs(60),
            incidents: Vec::new(),
            components: None,
            sender: 1,
        }
    }

    fn budgets() -> Vec<(String, usize)> {
        vec![("chat".into(), 10), ("log".into(), 10)]
    }

    #[test]
    fn a_failing_write_undoes_only_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("notifier.db")).expect("open");
        migrate(&mut conn).expect("migrate");
        let conn = conn;
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON mcpwatch_notifications WHEN NEW.receiver = 'refused'
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .expect("trigger");
        let now = now_ms();
        let mut refused = notification("b", now);
        refused.receiver = "refused".into();
        let count = |conn: &Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM mcpwatch_notifications", [], |r| {
                r.get(0)
            })
            .expect("count")
        };
        let mut batch = Batch::default();
        let mut answers = Vec::new();
        for work in [
            Work::Accept(Box::new(notification("a", now))),
            Work::Accept(Box::new(refused)),
            Work::Accept(Box::new(notification("c", now))),
        ] {
            let (reply, answer) = oneshot::channel();
            batch.add(&conn, (work, reply));
            answers.push(answer);
        }
        let results: Vec<Result<Done, StoreError>> = batch
            .commit(&conn)
            .into_iter()
            .map(|(_, result)| result)
            .collect();
        assert!(matches!(
            results[0],
            Ok(Done::Accepted(Accepted::Stored(_)))
        ));
        assert!(
            matches!(&results[1], Err(e) if e.to_string().contains("refused by the test")),
            "the failure is the write's own"
        );
        assert!(matches!(
            results[2],
            Ok(Done::Accepted(Accepted::Stored(_)))
        ));
        assert_eq!(count(&conn), 2);
        let deliveries: i64 = conn
            .query_row("SELECT count(*) FROM mcpwatch_deliveries", [], |r| r.get(0))
            .expect("deliveries");
        assert_eq!(deliveries, 4, "the refused write's deliveries went with it");
    }

    #[tokio::test]
    async fn answers_are_taken_as_given_for_what_arrived_a_while_before_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notifier.db");
        let now = now_ms();
        let copy = |name: &str, sender: i64, at: i64| NewNotification {
            sender,
            dedup_window: Duration::from_secs(3600),
            ..notification(name, at)
        };
        let (settled, recent) = {
            let store = SqliteStore::open(&path).expect("open");
            let settled = store
                .accept(copy("settled", 1, now - 120_000))
                .await
                .expect("settled");
            let recent = store.accept(copy("recent", 1, now)).await.expect("recent");
            (settled, recent)
        };
        let (Accepted::Stored(settled), Accepted::Stored(recent)) = (settled, recent) else {
            panic!("stored")
        };
        let store = SqliteStore::open(&path).expect("reopen");
        // Long answered: its sender's next copy is a reminder; another sender's a copy.
        assert_eq!(
            store
                .accept(copy("settled", 2, now + 10))
                .await
                .expect("replica"),
            Accepted::Duplicate(settled)
        );
        assert!(matches!(
            store
                .accept(copy("settled", 1, now + 20))
                .await
                .expect("reminder"),
            Accepted::Stored(id) if id > recent
        ));
        // Arrived just before the restart: its answer may not have reached the sender,
        // whose next copy is taken for a retry.
        assert_eq!(
            store
                .accept(copy("recent", 1, now + 30))
                .await
                .expect("retry"),
            Accepted::Duplicate(recent)
        );
    }

    #[test]
    fn the_stream_queue_names_each_streams_queued_deliveries_per_channel() {
        let conn = Connection::open_in_memory().expect("memory");
        let mut queue = StreamQueue {
            loaded: true,
            ..StreamQueue::default()
        };
        queue.add(7, "chat", 1);
        queue.add(7, "log", 2);
        queue.add(7, "chat", 3);
        queue.add(9, "chat", 4);
        assert_eq!(queue.mates(&conn, 7, "chat", 1).expect("mates"), [3]);
        assert_eq!(queue.mates(&conn, 7, "chat", 0).expect("mates"), [1, 3]);
        assert_eq!(
            queue.mates(&conn, 7, "log", 2).expect("mates"),
            Vec::<i64>::new()
        );
        assert_eq!(
            queue.mates(&conn, 7, "pager", 0).expect("mates"),
            Vec::<i64>::new()
        );
        queue.remove(1);
        queue.remove(3);
        assert_eq!(queue.mates(&conn, 7, "log", 0).expect("mates"), [2]);
        queue.remove(2);
        assert!(!queue.by_stream.contains_key(&7));
        assert_eq!(queue.mates(&conn, 9, "chat", 0).expect("mates"), [4]);
        // Twice, or unknown: nothing happens.
        queue.remove(2);
        queue.remove(99);
        queue.add(9, "chat", 4);
        assert_eq!(queue.mates(&conn, 9, "chat", 0).expect("mates"), [4]);
    }

    #[tokio::test]
    async fn a_restart_between_two_states_of_a_group_sends_the_newer_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notifier.db");
        let now = now_ms();
        let state_of = |n: u8, at: i64| {
            let mut key = [n; 32];
            key[0] = 0xee;
            NewNotification {
                dedup_key: DedupKey(key),
                ..notification("group", at)
            }
        };
        let (firing, resolved) = {
            let store = SqliteStore::open(&path).expect("open");
            let Accepted::Stored(firing) = store.accept(state_of(1, now)).await.expect("firing")
            else {
                panic!("stored")
            };
            // The firing notification is being sent when the process stops.
            let batch = store
                .claim(now, budgets(), 16, Duration::from_secs(60))
                .await
                .expect("claim");
            assert_eq!(batch.claimed.len(), 2);
            let Accepted::Stored(resolved) =
                store.accept(state_of(2, now + 10)).await.expect("resolved")
            else {
                panic!("stored")
            };
            let waiting = store
                .claim(now + 20, budgets(), 16, Duration::from_secs(60))
                .await
                .expect("claim");
            assert!(waiting.claimed.is_empty(), "{:?}", waiting.claimed);
            (firing, resolved)
        };
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.recover().await.expect("recover"), 2);
        // (Both due, whatever the clock says.)
        let batch = store
            .claim(
                now_ms().max(now + 1_000),
                budgets(),
                16,
                Duration::from_secs(60),
            )
            .await
            .expect("claim");
        let mut claimed: Vec<(i64, String)> = batch
            .claimed
            .iter()
            .map(|c| (c.notification_id, c.channel.clone()))
            .collect();
        claimed.sort();
        assert_eq!(
            claimed,
            [(resolved, "chat".to_owned()), (resolved, "log".to_owned())]
        );
        let view = store.get(firing).await.expect("get").expect("kept");
        assert!(view.deliveries.iter().all(|d| d.state == "superseded"));
    }

    #[tokio::test]
    async fn a_version_3_store_keeps_its_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notifier.db");
        let now = now_ms();
        let json = r#"{"alerts":[{"labels":{"alertname":"Kept"}}]}"#;
        let Body::Lz4(compressed) = Body::compress(json) else {
            panic!("compressed")
        };
        {
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch(
                "CREATE TABLE notifications (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL,
                     receiver TEXT NOT NULL, group_key TEXT NOT NULL, status TEXT NOT NULL,
                     alert_count INTEGER NOT NULL, duplicates INTEGER NOT NULL DEFAULT 0,
                     payload NOT NULL, dedup_key BLOB);
                 CREATE TABLE deliveries (id INTEGER PRIMARY KEY,
                     notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
                     channel TEXT NOT NULL, alerts TEXT NOT NULL, state TEXT NOT NULL,
                     attempts INTEGER NOT NULL DEFAULT 0, queued_at INTEGER NOT NULL,
                     next_attempt_at INTEGER NOT NULL, claimed_until INTEGER, last_error TEXT,
                     delivered_at INTEGER, updated_at INTEGER NOT NULL, event TEXT, hold TEXT);
                 CREATE TABLE attempts (id INTEGER PRIMARY KEY,
                     delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
                     number INTEGER NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER,
                     outcome TEXT, detail TEXT);
                 PRAGMA user_version = 3;",
            )
            .expect("version 3");
            for (id, payload) in [
                (1, rusqlite::types::Value::Text(json.into())),
                (2, rusqlite::types::Value::Blob(compressed.clone())),
            ] {
                conn.execute(
                    "INSERT INTO notifications (id, received_at, receiver, group_key, status, alert_count, payload)
                     VALUES (?1, ?2, 'mcp', ?3, 'firing', 1, ?4)",
                    params![id, now, format!("{{}}:{{n=\"{id}\"}}"), payload],
                )
                .expect("notification");
                conn.execute(
                    "INSERT INTO deliveries (notification_id, channel, alerts, state, queued_at,
                         next_attempt_at, updated_at) VALUES (?1, 'chat', '[0]', 'pending', ?2, ?2, ?2)",
                    params![id, now],
                )
                .expect("delivery");
            }
        }
        let store = SqliteStore::open(&path).expect("open");
        let batch = store
            .claim(now, budgets(), 16, Duration::from_secs(60))
            .await
            .expect("claim");
        let mut claimed: Vec<(i64, String)> = batch
            .claimed
            .iter()
            .map(|c| {
                (
                    c.notification_id,
                    c.payload.json().expect("body").into_owned(),
                )
            })
            .collect();
        claimed.sort();
        assert_eq!(claimed, [(1, json.to_owned()), (2, json.to_owned())]);
        let view = store.get(2).await.expect("get").expect("kept");
        assert_eq!(view.deliveries[0].state, "sending");
        assert!(view.payload.is_some());
        drop(store);
        let conn = Connection::open(&path).expect("reopen");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_version_1_store_keeps_its_dedup_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notifier.db");
        let now = now_ms();
        let key = notification("old", now).dedup_key;
        {
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch(&format!(
                "CREATE TABLE notifications (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL,
                     receiver TEXT NOT NULL, group_key TEXT NOT NULL, status TEXT NOT NULL,
                     alert_count INTEGER NOT NULL, duplicates INTEGER NOT NULL DEFAULT 0,
                     payload TEXT NOT NULL);
                 CREATE TABLE dedup_keys (key TEXT PRIMARY KEY, notification_id INTEGER NOT NULL,
                     received_at INTEGER NOT NULL);
                 INSERT INTO notifications (id, received_at, receiver, group_key, status, alert_count, payload)
                     VALUES (7, {now}, 'mcp', '{{}}:{{}}', 'firing', 1, '{{}}');
                 INSERT INTO dedup_keys VALUES ('{key}', 7, {now});
                 PRAGMA user_version = 1;"
            ))
            .expect("version 1");
        }
        let store = SqliteStore::open(&path).expect("open");
        assert!(matches!(
            store
                .accept(notification("old", now + 10))
                .await
                .expect("copy"),
            Accepted::Duplicate(7)
        ));
        assert!(matches!(
            store
                .accept(notification("new", now + 10))
                .await
                .expect("new"),
            Accepted::Stored(8)
        ));
        // A wider window than the first lookup's still finds what is older.
        let mut wide = notification("old", now + 61_000);
        wide.dedup_window = Duration::from_secs(120);
        assert!(matches!(
            store
                .accept(notification("old", now + 61_000))
                .await
                .expect("late"),
            Accepted::Stored(9)
        ));
        assert!(matches!(
            store.accept(wide).await.expect("wide"),
            Accepted::Duplicate(9)
        ));
        let mut wider = notification("new", now + 100_000);
        wider.dedup_window = Duration::from_secs(3600);
        assert!(matches!(
            store.accept(wider).await.expect("wider"),
            Accepted::Duplicate(8)
        ));
    }

    #[tokio::test]
    async fn stores_once_claims_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/notifier.db");
        let now = now_ms() - 200_000;
        let store = SqliteStore::open(&path).expect("open");
        let second = SqliteStore::open(&path).expect_err("a second notifier on the same file");
        assert!(
            second.to_string().contains("in use by another notifier"),
            "{second}"
        );
        let first = store.accept(notification("k1", now)).await.expect("accept");
        let Accepted::Stored(id) = first else {
            panic!("not stored: {first:?}")
        };
        assert_eq!(
            store
                .accept(notification("k1", now + 1000))
                .await
                .expect("again"),
            Accepted::Duplicate(id)
        );
        // Outside the window the same key is news again (from another receiver here, so
        // that it is no newer state of the first one's group).
        assert!(matches!(
            store
                .accept(NewNotification {
                    receiver: "other".into(),
                    ..notification("k1", now + 120_000)
                })
                .await
                .expect("later"),
            Accepted::Stored(_)
        ));
        // Claimed before the later copy was due: only the first notification's two.
        let batch = store
            .claim(now + 1, budgets(), 16, Duration::from_secs(60))
            .await
            .expect("claim");
        assert_eq!(batch.claimed.len(), 2);
        assert_eq!(batch.claimed[0].attempt, 1);
        assert_eq!(batch.next_due, Some(now + 60_001));
        assert!(
            store
                .complete(batch.claimed[0].id, 1, Outcome::Delivered)
                .await
                .expect("complete")
        );
        // A second completion of the same claim is refused.
        assert!(
            !store
                .complete(batch.claimed[0].id, 1, Outcome::Delivered)
                .await
                .expect("again")
        );
        drop(store);

        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.recover().await.expect("recover"), 1);
        // The dedup keys are found again after the restart: another Alertmanager's copy of
        // the later notification is its duplicate.
        let Accepted::Duplicate(copy) = store
            .accept(NewNotification {
                sender: 2,
                ..notification("k1", now + 121_000)
            })
            .await
            .expect("copy after restart")
        else {
            panic!("a copy after the restart was stored again")
        };
        assert!(copy > id);
        let batch = store
            .claim(now_ms(), budgets(), 16, Duration::from_secs(60))
            .await
            .expect("claim");
        let channels: Vec<_> = batch.claimed.iter().map(|c| c.channel.as_str()).collect();
        // The delivered one is never claimed again; the one in flight and the later
        // notification's two are.
        assert_eq!(batch.claimed.len(), 3, "{channels:?}");
        let second = batch
            .claimed
            .iter()
            .find(|c| c.notification_id == id)
            .expect("in flight");
        assert_eq!(second.attempt, 2);
        assert!(
            store
                .complete(
                    second.id,
                    2,
                    Outcome::Dead {
                        error: "HTTP 400".into()
                    }
                )
                .await
                .expect("dead")
        );
        let dead = store
            .list(ListFilter {
                state: Some("dead".into()),
                limit: 10,
                ..ListFilter::default()
            })
            .await
            .expect("list");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].duplicates, 1);
        assert_eq!(store.replay(id).await.expect("replay"), 1);
        let detail = store.get(id).await.expect("get").expect("exists");
        assert!(
            detail
                .deliveries
                .iter()
                .any(|d| d.state == "pending" && d.attempts == 0)
        );
        assert!(detail.payload.is_some());
        let stats = store.stats().await.expect("stats");
        assert!(
            stats
                .depth
                .iter()
                .any(|(c, s, n)| c == "log" && s == "pending" && *n == 1)
        );
    }

    #[tokio::test]
    async fn concurrent_accepts_are_committed_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("n.db")).expect("open"));
        let now = now_ms();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .accept(notification(&format!("k{}", i % 100), now))
                        .await
                })
            })
            .collect();
        let mut stored = 0;
        let mut duplicates = 0;
        for task in tasks {
            match task.await.expect("join").expect("accept") {
                Accepted::Stored(_) => stored += 1,
                Accepted::Duplicate(_) => duplicates += 1,
            }
        }
        assert_eq!((stored, duplicates), (100, 100));
        let disk = store.stats().await.expect("stats").disk.expect("disk");
        assert_eq!(disk.writes, 200);
        assert!(disk.commits >= 1 && disk.commits <= 200, "{disk:?}");
        assert!(
            disk.flushes >= 1 && disk.flushes <= disk.commits,
            "{disk:?}"
        );
        assert!(disk.flush_seconds > 0.0, "{disk:?}");
    }
}
