//! The embedded store: one SQLite file in WAL mode. Every write goes through one writer
//! thread that commits whatever arrived together in one transaction (group commit), so a
//! burst of webhooks costs one fsync, not one each; readers use their own connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::{
    Accepted, AckRefused, AckRequest, Body, ClaimBatch, Claimed, DedupKey, DeliveryView, DiskStats,
    Event, IncidentView, ListFilter, NewNotification, NewWindow, NotificationView, Outcome,
    Policies, QueueStats, Store, StoreError, WindowRow, age_seconds, decode_alerts, encode_alerts,
    millis, state,
};
use crate::incident::{self, Change, IncidentRow};
use crate::time::{format_rfc3339, now_ms};

/// Writes committed together at most.
const MAX_BATCH: usize = 512;

/// 2: dedup keys moved from their own indexed table into the notifications, indexed in
/// memory by the writer. 3: incidents, maintenance windows, a delivery's event and hold.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    alert_count INTEGER NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    -- A BLOB of LZ4-compressed JSON, or JSON TEXT (see store::Body).
    payload NOT NULL,
    -- The 32 bytes of its DedupKey; no index: the writer keeps those of the dedup window
    -- in memory (an index would cost a write to a random page per notification).
    dedup_key BLOB
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
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
    hold TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_held ON deliveries (hold) WHERE state = 'held';
-- AUTOINCREMENT: an id is never used again (a signed link names one).
CREATE TABLE IF NOT EXISTS incidents (
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
    resolved_at INTEGER
);
CREATE INDEX IF NOT EXISTS incidents_group ON incidents (group_key, receiver, policy) WHERE open = 1;
CREATE INDEX IF NOT EXISTS incidents_due ON incidents (next_at) WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    matchers TEXT NOT NULL,
    author TEXT NOT NULL,
    reason TEXT NOT NULL,
    hold_critical INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_received ON notifications (received_at);
CREATE INDEX IF NOT EXISTS deliveries_notification ON deliveries (notification_id);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    outcome TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
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
    Acknowledged(Result<IncidentView, AckRefused>),
    Window(Option<WindowRow>),
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
    Acknowledged(Result<IncidentView, AckRefused>),
    Window(Option<WindowRow>),
);

/// Where a write's answer goes.
type Reply = oneshot::Sender<Result<Done, StoreError>>;

type Op = (Work, Reply);

/// What the writer thread hears.
enum Msg {
    /// A write to make.
    Write(Op),
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
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", dir.display())))?;
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
                StoreError::Other(format!(
                    "cannot open {}: {e}",
                    PathBuf::from(&lock_path).display()
                ))
            })?;
        lock.try_lock().map_err(|_| {
            StoreError::Other(format!(
                "{} is in use by another notifier; give each its own storage.path (or share storage.postgres)",
                path.display()
            ))
        })?;
        let mut conn = open(path)
            .map_err(|e| StoreError::Other(format!("cannot open {}: {e}", path.display())))?;
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
            .map_err(|e| StoreError::Other(format!("cannot start the checkpoint thread: {e}")))?;
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
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;
        start
            .recv()
            .map_err(|_| StoreError::Other("the writer thread stopped at start".into()))?
            .map_err(StoreError::Other)?;
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
            .ok_or_else(|| StoreError::Other("the writer answered another write".into()))
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| StoreError::Closed)?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Other(format!("read task: {e}")))?
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
        return Err(StoreError::Other(format!(
            "the database has schema version {version}, newer than this notifier's {SCHEMA_VERSION}; use a newer notifier"
        )));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Before 3, deliveries had no event and hold (the schema below indexes hold).
    let columns: i64 = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('deliveries')",
        [],
        |r| r.get(0),
    )?;
    let has_hold: i64 = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('deliveries') WHERE name = 'hold'",
        [],
        |r| r.get(0),
    )?;
    if columns > 0 && has_hold == 0 {
        tx.execute_batch(
            "ALTER TABLE deliveries ADD COLUMN event TEXT;
             ALTER TABLE deliveries ADD COLUMN hold TEXT;",
        )?;
    }
    tx.execute_batch(SCHEMA)?;
    if version == 1 {
        tx.execute_batch(
            "ALTER TABLE notifications ADD COLUMN dedup_key BLOB;
             UPDATE notifications SET dedup_key =
                 (SELECT unhex(k.key) FROM dedup_keys k WHERE k.notification_id = notifications.id);
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
        match run(conn, &mut self.index, &work) {
            Ok(done) => self.entries.push((work, reply, Ok(done))),
            Err(e) => {
                self.entries.push((work, reply, Err(e.into())));
                self.redo_isolated(conn);
            }
        }
    }

    fn redo_isolated(&mut self, conn: &Connection) {
        // The index may hold keys of the writes rolled back.
        self.index.invalidate();
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
            *result = match run(conn, &mut self.index, work) {
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
                    Err(e.into())
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
        for (_, reply, _) in self.entries.drain(..) {
            let _ = reply.send(Err(StoreError::Other(message.to_owned())));
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
            tracing::error!(error = %e, "The store could not commit; the writes of this batch are refused.");
        }
        self.entries
            .drain(..)
            .map(|(_, reply, result)| match &committed {
                Ok(()) => (reply, result),
                Err(e) => (reply, Err(StoreError::Other(format!("commit failed: {e}")))),
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
                Some(e) => Err(StoreError::Other(format!(
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

fn run(c: &Connection, index: &mut DedupIndex, work: &Work) -> Result<Done, rusqlite::Error> {
    Ok(match work {
        Work::Accept(n) => Done::Accepted(accept(c, index, n)?),
        Work::Claim {
            now,
            budgets,
            total,
            lease,
        } => Done::Claimed(claim(c, *now, budgets, *total, *lease)?),
        Work::Retire(known) => Done::Count(retire(c, known, now_ms())?),
        Work::Complete(id, attempt, outcome) => {
            Done::Flag(complete(c, *id, *attempt, outcome, now_ms())?)
        }
        Work::Replay(id) => Done::Count(replay(c, *id, now_ms())?),
        Work::Recover => Done::Count(recover(c, now_ms())?),
        Work::Prune(retention, window) => {
            Done::Count(prune(c, index, now_ms(), *retention, *window)?)
        }
        Work::Escalate(now, policies, limit) => {
            Done::Escalated(escalate(c, *now, policies, *limit)?)
        }
        Work::Acknowledge(id, request, policies) => {
            Done::Acknowledged(acknowledge(c, *id, request, policies)?)
        }
        Work::AddWindow(window) => Done::Window(Some(add_window(c, window)?)),
        Work::EndWindow(id, now) => Done::Window(end_window(c, *id, *now)?),
        Work::Release(window, now) => Done::Count(release(c, window, *now)?),
    })
}

impl rusqlite::ToSql for Body {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Body::Json(text) => ValueRef::Text(text.as_bytes()),
            Body::Lz4(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

impl FromSql for Body {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(text) => std::str::from_utf8(text)
                .map(|t| Body::Json(t.to_owned()))
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            ValueRef::Blob(bytes) => Ok(Body::Lz4(bytes.to_vec())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// The dedup keys of the notifications received within the dedup window, kept in memory
/// by the writer; loaded from the notifications table (its `received_at` index) for the
/// part of the window it does not cover, and dropped whenever a rollback may have left
/// keys of writes that did not commit. About 60 bytes per notification in the window.
#[derive(Debug, Default)]
struct DedupIndex {
    /// Key: (notification id, received at).
    keys: HashMap<DedupKey, (i64, i64)>,
    /// Every notification received from this time on is in `keys`; `None`: not loaded.
    from: Option<i64>,
    /// Past this many keys, those older than the window are dropped.
    prune_at: usize,
}

impl DedupIndex {
    /// The newest notification with `key` received at `start` or later.
    fn find(
        &mut self,
        c: &Connection,
        key: &DedupKey,
        start: i64,
    ) -> Result<Option<i64>, rusqlite::Error> {
        self.cover(c, start)?;
        Ok(self
            .keys
            .get(key)
            .filter(|(_, at)| *at >= start)
            .map(|(id, _)| *id))
    }

    /// Loads the keys received from `start` on that are not loaded yet.
    fn cover(&mut self, c: &Connection, start: i64) -> Result<(), rusqlite::Error> {
        let end = match self.from {
            Some(from) if from <= start => return Ok(()),
            Some(from) => from,
            None => i64::MAX,
        };
        let mut statement = c.prepare_cached(
            "SELECT dedup_key, id, received_at FROM notifications
             WHERE received_at >= ?1 AND received_at < ?2 AND dedup_key IS NOT NULL",
        )?;
        let mut rows = statement.query(params![start, end])?;
        while let Some(row) = rows.next()? {
            let Ok(key) = <[u8; 32]>::try_from(row.get_ref(0)?.as_blob()?) else {
                continue;
            };
            let (id, at): (i64, i64) = (row.get(1)?, row.get(2)?);
            self.keys
                .entry(DedupKey(key))
                .and_modify(|e| {
                    if id > e.0 {
                        *e = (id, at);
                    }
                })
                .or_insert((id, at));
        }
        self.from = Some(start);
        Ok(())
    }

    fn insert(&mut self, key: DedupKey, id: i64, at: i64, start: i64) {
        self.keys.insert(key, (id, at));
        if self.keys.len() > self.prune_at {
            self.prune(start);
        }
    }

    /// Drops the keys received before `start`.
    fn prune(&mut self, start: i64) {
        self.keys.retain(|_, (_, at)| *at >= start);
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

fn accept(
    c: &Connection,
    index: &mut DedupIndex,
    n: &NewNotification,
) -> Result<Accepted, rusqlite::Error> {
    let window_start = n.received_at.saturating_sub(millis(n.dedup_window));
    if let Some(id) = index.find(c, &n.dedup_key, window_start)? {
        c.prepare_cached("UPDATE notifications SET duplicates = duplicates + 1 WHERE id = ?1")?
            .execute(params![id])?;
        return Ok(Accepted::Duplicate(id));
    }
    c.prepare_cached(
        "INSERT INTO notifications (received_at, receiver, group_key, status, alert_count, payload, dedup_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        n.received_at,
        n.receiver,
        n.group_key,
        n.status,
        i64::try_from(n.alert_count).unwrap_or(i64::MAX),
        n.payload,
        &n.dedup_key.0[..]
    ])?;
    let id = c.last_insert_rowid();
    let mut insert = c.prepare_cached(
        "INSERT INTO deliveries (notification_id, channel, alerts, state, queued_at, next_attempt_at, updated_at, hold)
         VALUES (?1, ?2, ?3, ?5, ?4, ?4, ?4, ?6)",
    )?;
    for delivery in &n.deliveries {
        let alerts = encode_alerts(&delivery.alerts);
        let state = if delivery.hold.is_some() {
            state::HELD
        } else {
            state::PENDING
        };
        insert.execute(params![
            id,
            delivery.channel,
            alerts,
            n.received_at,
            state,
            delivery.hold
        ])?;
    }
    for touch in &n.incidents {
        let open = c
            .prepare_cached(&format!(
                "SELECT {INCIDENT} FROM incidents
                 WHERE group_key = ?1 AND receiver = ?2 AND policy = ?3 AND open = 1"
            ))?
            .query_row(
                params![n.group_key, n.receiver, touch.policy.name],
                incident_row,
            )
            .optional()?;
        let change =
            incident::on_notification(open, touch, &n.receiver, &n.group_key, id, n.received_at);
        if change.row.is_none() {
            let hold = change.hold.as_deref();
            tell(c, id, &touch.alerts, &change.tell, n.received_at, hold)?;
        }
        apply(c, change, n.received_at)?;
    }
    // Last: a write that fails leaves the index as it was.
    index.insert(n.dedup_key, id, n.received_at, window_start);
    Ok(Accepted::Stored(id))
}

fn claim(
    c: &Connection,
    now: i64,
    budgets: &[(String, usize)],
    total: usize,
    lease: Duration,
) -> Result<ClaimBatch, rusqlite::Error> {
    let mut batch = ClaimBatch::default();
    // Two statements, each a range of the (channel, state, next_attempt_at) index: an OR
    // of the two states would scan the channel's every row.
    let columns = "SELECT d.id, d.notification_id, d.channel, d.alerts, d.attempts, n.received_at, d.queued_at, n.payload, d.event
         FROM deliveries d JOIN notifications n ON n.id = d.notification_id";
    let mut due = c.prepare_cached(&format!(
        "{columns} WHERE d.channel = ?3 AND d.state = 'pending' AND d.next_attempt_at <= ?1
         ORDER BY d.next_attempt_at LIMIT ?2"
    ))?;
    let mut expired = c.prepare_cached(&format!(
        "{columns} WHERE d.channel = ?3 AND d.state = 'sending' AND d.claimed_until <= ?1
         ORDER BY d.claimed_until LIMIT ?2"
    ))?;
    let row = |r: &rusqlite::Row<'_>| {
        let alerts: String = r.get(3)?;
        let attempts: u32 = r.get(4)?;
        Ok(Claimed {
            id: r.get(0)?,
            notification_id: r.get(1)?,
            channel: r.get(2)?,
            alerts: decode_alerts(&alerts),
            attempt: attempts + 1,
            received_at: r.get(5)?,
            queued_at: r.get(6)?,
            payload: r.get(7)?,
            event: Event::decode(r.get::<_, Option<String>>(8)?.as_deref()),
        })
    };
    for (channel, budget) in budgets.iter().filter(|(_, b)| *b > 0) {
        for statement in [&mut expired, &mut due] {
            let room = total.saturating_sub(batch.claimed.len()).min(*budget);
            let taken = batch
                .claimed
                .iter()
                .filter(|c| &c.channel == channel)
                .count();
            let room = room.min(budget.saturating_sub(taken));
            if room == 0 {
                continue;
            }
            let rows = statement.query_map(
                params![now, i64::try_from(room).unwrap_or(i64::MAX), channel],
                row,
            )?;
            for claimed in rows {
                batch.claimed.push(claimed?);
            }
        }
    }
    let mut update = c.prepare_cached(
        "UPDATE deliveries SET state = 'sending', attempts = ?2, claimed_until = ?3, updated_at = ?4
         WHERE id = ?1",
    )?;
    let mut attempt = c.prepare_cached(
        "INSERT INTO attempts (delivery_id, number, started_at) VALUES (?1, ?2, ?3)",
    )?;
    // An attempt left unfinished by a claim that expired is closed as unknown.
    let mut orphan = c.prepare_cached(
        "UPDATE attempts SET finished_at = ?2, outcome = 'unknown',
         detail = 'the sender stopped before recording an outcome'
         WHERE delivery_id = ?1 AND finished_at IS NULL",
    )?;
    let until = now.saturating_add(millis(lease));
    for claimed in &batch.claimed {
        orphan.execute(params![claimed.id, now])?;
        update.execute(params![claimed.id, claimed.attempt, until, now])?;
        attempt.execute(params![claimed.id, claimed.attempt, now])?;
    }
    // When the next claim is worth making, among the channels that had room: the others
    // wake the dispatcher themselves (an attempt ending, a rate-limit token).
    let mut next_due = c.prepare_cached(
        "SELECT MIN(t) FROM (
            SELECT MIN(next_attempt_at) AS t FROM deliveries WHERE channel = ?1 AND state = 'pending'
            UNION ALL SELECT MIN(claimed_until) FROM deliveries WHERE channel = ?1 AND state = 'sending')",
    )?;
    for (channel, _) in budgets.iter().filter(|(_, b)| *b > 0) {
        if let Some(t) = next_due.query_row(params![channel], |r| r.get::<_, Option<i64>>(0))? {
            batch.next_due = Some(batch.next_due.map_or(t, |n: i64| n.min(t)));
        }
    }
    Ok(batch)
}

fn complete(
    c: &Connection,
    id: i64,
    attempt: u32,
    outcome: &Outcome,
    now: i64,
) -> Result<bool, rusqlite::Error> {
    // Only the claim that made this attempt may record its outcome: a claim that expired
    // and was taken again has a higher attempt number.
    let current: Option<(String, u32)> = c
        .prepare_cached("SELECT state, attempts FROM deliveries WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if current
        .as_ref()
        .is_none_or(|(state, n)| state != "sending" || *n != attempt)
    {
        return Ok(false);
    }
    let changed = match outcome {
        Outcome::Delivered => c
            .prepare_cached(
                "UPDATE deliveries SET state = 'delivered', delivered_at = ?2, claimed_until = NULL,
                 last_error = NULL, updated_at = ?2 WHERE id = ?1 AND state = 'sending'",
            )?
            .execute(params![id, now])?,
        Outcome::Retry { at, error } => c
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, claimed_until = NULL,
                 last_error = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'sending'",
            )?
            .execute(params![id, at, error, now])?,
        Outcome::Dead { error } => c
            .prepare_cached(
                "UPDATE deliveries SET state = 'dead', claimed_until = NULL, last_error = ?2,
                 updated_at = ?3 WHERE id = ?1 AND state = 'sending'",
            )?
            .execute(params![id, error, now])?,
    };
    let (name, detail) = match outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::Retry { error, .. } => ("retry", Some(error.as_str())),
        Outcome::Dead { error } => ("dead", Some(error.as_str())),
    };
    c.prepare_cached(
        "UPDATE attempts SET finished_at = ?2, outcome = ?3, detail = ?4
         WHERE delivery_id = ?1 AND number = ?5 AND finished_at IS NULL",
    )?
    .execute(params![id, now, name, detail, attempt])?;
    Ok(changed == 1)
}

fn replay(c: &Connection, notification: i64, now: i64) -> Result<usize, rusqlite::Error> {
    c.prepare_cached(
        "UPDATE deliveries SET state = 'pending', attempts = 0, queued_at = ?2, next_attempt_at = ?2,
         last_error = NULL, updated_at = ?2 WHERE notification_id = ?1 AND state = 'dead'",
    )?
    .execute(params![notification, now])
}

fn recover(c: &Connection, now: i64) -> Result<usize, rusqlite::Error> {
    c.prepare_cached(
        "UPDATE attempts SET finished_at = ?1, outcome = 'unknown', detail = 'the notifier stopped during the attempt'
         WHERE finished_at IS NULL",
    )?
    .execute(params![now])?;
    c.prepare_cached(
        "UPDATE deliveries SET state = 'pending', claimed_until = NULL, next_attempt_at = ?1, updated_at = ?1
         WHERE state = 'sending'",
    )?
    .execute(params![now])
}

fn retire(c: &Connection, known: &[String], now: i64) -> Result<usize, rusqlite::Error> {
    let mut channels =
        c.prepare_cached("SELECT DISTINCT channel FROM deliveries WHERE state = 'pending'")?;
    let queued: Vec<String> = channels
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut retired = 0;
    for channel in queued.iter().filter(|c| !known.contains(c)) {
        retired += c
            .prepare_cached(
                "UPDATE deliveries SET state = 'dead', last_error = ?2,
                 updated_at = ?3 WHERE channel = ?1 AND state = 'pending'",
            )?
            .execute(params![
                channel,
                format!("channel {channel:?} is no longer configured"),
                now
            ])?;
    }
    Ok(retired)
}

fn prune(
    c: &Connection,
    index: &mut DedupIndex,
    now: i64,
    retention: Duration,
    window: Duration,
) -> Result<usize, rusqlite::Error> {
    index.prune(now.saturating_sub(millis(window)));
    let before = now.saturating_sub(millis(retention));
    c.prepare_cached("DELETE FROM incidents WHERE open = 0 AND resolved_at < ?1")?
        .execute(params![before])?;
    c.prepare_cached("DELETE FROM windows WHERE ends_at < ?1")?
        .execute(params![before])?;
    c.prepare_cached(
        "DELETE FROM notifications WHERE received_at < ?1 AND NOT EXISTS (
            SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id
            AND d.state IN ('pending', 'sending', 'held'))
          AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.notification_id = notifications.id)
          AND NOT (EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id
                           AND d.state = 'summarized')
                   AND EXISTS (SELECT 1 FROM deliveries s WHERE s.state IN ('pending', 'sending')
                               AND s.event LIKE '{\"kind\":\"summary\"%'))",
    )?
    .execute(params![before])
}

/// The columns [`incident_row`] reads, in its order.
const INCIDENT: &str =
    "id, policy, receiver, group_key, open, level, told, notification_id, alerts,
    opened_at, next_at, acked_at, acked_by, generation, resolved_at";

fn incident_row(r: &rusqlite::Row<'_>) -> Result<IncidentRow, rusqlite::Error> {
    let told: String = r.get(6)?;
    let alerts: String = r.get(8)?;
    Ok(IncidentRow {
        id: r.get(0)?,
        policy: r.get(1)?,
        receiver: r.get(2)?,
        group_key: r.get(3)?,
        open: r.get(4)?,
        level: r.get(5)?,
        told: serde_json::from_str(&told).unwrap_or_default(),
        notification_id: r.get(7)?,
        alerts: decode_alerts(&alerts),
        opened_at: r.get(9)?,
        next_at: r.get(10)?,
        acked_at: r.get(11)?,
        acked_by: r.get(12)?,
        generation: r.get(13)?,
        resolved_at: r.get(14)?,
    })
}

/// Writes an incident's row (a new one gets its id) and the deliveries it asks for.
fn apply(c: &Connection, change: Change, now: i64) -> Result<Option<IncidentRow>, rusqlite::Error> {
    let change = match &change.row {
        Some(row) if row.id == 0 => {
            c.prepare_cached(
                "INSERT INTO incidents (policy, receiver, group_key, open, level, told, notification_id,
                     alerts, opened_at, next_at, acked_at, acked_by, generation, resolved_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                row.policy,
                row.receiver,
                row.group_key,
                row.open,
                row.level,
                serde_json::to_string(&row.told).unwrap_or_default(),
                row.notification_id,
                encode_alerts(&row.alerts),
                row.opened_at,
                row.next_at,
                row.acked_at,
                row.acked_by,
                row.generation,
                row.resolved_at
            ])?;
            change.with_id(c.last_insert_rowid())
        }
        Some(row) => {
            c.prepare_cached(
                "UPDATE incidents SET open = ?2, level = ?3, told = ?4, notification_id = ?5, alerts = ?6,
                     next_at = ?7, acked_at = ?8, acked_by = ?9, generation = ?10, resolved_at = ?11
                 WHERE id = ?1",
            )?
            .execute(params![
                row.id,
                row.open,
                row.level,
                serde_json::to_string(&row.told).unwrap_or_default(),
                row.notification_id,
                encode_alerts(&row.alerts),
                row.next_at,
                row.acked_at,
                row.acked_by,
                row.generation,
                row.resolved_at
            ])?;
            change
        }
        None => change,
    };
    if let Some(row) = &change.row {
        tell(c, row.notification_id, &row.alerts, &change.tell, now, None)?;
    }
    Ok(change.row)
}

fn tell(
    c: &Connection,
    notification: i64,
    alerts: &[usize],
    tell: &[(String, Option<Event>)],
    now: i64,
    hold: Option<&str>,
) -> Result<(), rusqlite::Error> {
    let mut insert = c.prepare_cached(
        "INSERT INTO deliveries (notification_id, channel, alerts, state, queued_at, next_attempt_at, updated_at, event, hold)
         VALUES (?1, ?2, ?3, ?6, ?4, ?4, ?4, ?5, ?7)",
    )?;
    let alerts = encode_alerts(alerts);
    let state = if hold.is_some() {
        state::HELD
    } else {
        state::PENDING
    };
    for (channel, event) in tell {
        insert.execute(params![
            notification,
            channel,
            alerts,
            now,
            event.as_ref().map(Event::encode),
            state,
            hold
        ])?;
    }
    Ok(())
}

fn escalate(
    c: &Connection,
    now: i64,
    policies: &Policies,
    limit: usize,
) -> Result<Vec<(i64, String, u32)>, rusqlite::Error> {
    let due = c
        .prepare_cached(&format!(
            "SELECT {INCIDENT} FROM incidents WHERE next_at <= ?1 ORDER BY next_at LIMIT ?2"
        ))?
        .query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            incident_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut escalated = Vec::new();
    for row in due {
        let policy = policies.get(&row.policy);
        let change = incident::escalate(row, policy, now);
        let told = !change.tell.is_empty();
        if let Some(row) = apply(c, change, now)?
            && told
        {
            escalated.push((row.id, row.policy, row.level + 1));
        }
    }
    Ok(escalated)
}

fn acknowledge(
    c: &Connection,
    id: i64,
    request: &AckRequest,
    policies: &Policies,
) -> Result<Result<IncidentView, AckRefused>, rusqlite::Error> {
    let Some(row) = c
        .prepare_cached(&format!("SELECT {INCIDENT} FROM incidents WHERE id = ?1"))?
        .query_row(params![id], incident_row)
        .optional()?
    else {
        return Ok(Err(AckRefused::NotFound(id)));
    };
    let policy = policies.get(&row.policy);
    match incident::acknowledge(row, request, policy) {
        Ok(change) => Ok(apply(c, change, request.now)?
            .map(|row| row.view())
            .ok_or(AckRefused::NotFound(id))),
        Err(refused) => Ok(Err(refused)),
    }
}

const WINDOW: &str = "id, starts_at, ends_at, matchers, author, reason, hold_critical, created_at";

fn window_row(r: &rusqlite::Row<'_>) -> Result<WindowRow, rusqlite::Error> {
    let matchers: String = r.get(3)?;
    Ok(WindowRow {
        id: r.get(0)?,
        window: NewWindow {
            starts_at: r.get(1)?,
            ends_at: r.get(2)?,
            matchers: serde_json::from_str(&matchers).unwrap_or_default(),
            author: r.get(4)?,
            reason: r.get(5)?,
            hold_critical: r.get(6)?,
            created_at: r.get(7)?,
        },
    })
}

fn add_window(c: &Connection, w: &NewWindow) -> Result<WindowRow, rusqlite::Error> {
    c.prepare_cached(
        "INSERT INTO windows (starts_at, ends_at, matchers, author, reason, hold_critical, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        w.starts_at,
        w.ends_at,
        serde_json::to_string(&w.matchers).unwrap_or_default(),
        w.author,
        w.reason,
        w.hold_critical,
        w.created_at
    ])?;
    Ok(WindowRow {
        id: c.last_insert_rowid(),
        window: w.clone(),
    })
}

fn end_window(c: &Connection, id: i64, now: i64) -> Result<Option<WindowRow>, rusqlite::Error> {
    c.prepare_cached("UPDATE windows SET ends_at = ?2 WHERE id = ?1 AND ends_at > ?2")?
        .execute(params![id, now])?;
    c.prepare_cached(&format!("SELECT {WINDOW} FROM windows WHERE id = ?1"))?
        .query_row(params![id], window_row)
        .optional()
}

fn held(c: &Connection) -> Result<Vec<(String, u64)>, rusqlite::Error> {
    c.prepare_cached(
        "SELECT hold, COUNT(DISTINCT notification_id) FROM deliveries
         WHERE state = 'held' GROUP BY hold",
    )?
    .query_map([], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)?.try_into().unwrap_or(0)))
    })?
    .collect()
}

fn release(c: &Connection, window: &str, now: i64) -> Result<usize, rusqlite::Error> {
    if !one_off_over(c, window, now)? {
        return Ok(0);
    }
    let held = c
        .prepare_cached(
            "SELECT channel, notification_id, alerts FROM deliveries
             WHERE state = 'held' AND hold = ?1 ORDER BY id",
        )?
        .query_map(params![window], |r| {
            let alerts: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, decode_alerts(&alerts)))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let summaries = super::summaries(window, held);
    for (channel, notification, event) in &summaries {
        tell(
            c,
            *notification,
            &[],
            &[(channel.clone(), Some(event.clone()))],
            now,
            None,
        )?;
    }
    c.prepare_cached(
        "UPDATE deliveries SET state = 'summarized', updated_at = ?2 WHERE state = 'held' AND hold = ?1",
    )?
    .execute(params![window, now])?;
    Ok(summaries.len())
}

/// Whether `window`, when it is a one-off one (`#<id>`), has ended by the store's record,
/// whatever a replica's view of the windows says; a configured window is the caller's to
/// judge.
fn one_off_over(c: &Connection, window: &str, now: i64) -> Result<bool, rusqlite::Error> {
    let Some(id) = window
        .strip_prefix('#')
        .and_then(|id| id.parse::<i64>().ok())
    else {
        return Ok(true);
    };
    let ends: Option<i64> = c
        .prepare_cached("SELECT ends_at FROM windows WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    Ok(ends.is_none_or(|ends| ends <= now))
}

fn deliveries_of(c: &Connection, notification: i64) -> Result<Vec<DeliveryView>, StoreError> {
    let mut statement = c.prepare_cached(
        "SELECT id, channel, state, attempts, last_error, next_attempt_at, delivered_at, alerts
         FROM deliveries WHERE notification_id = ?1 ORDER BY id",
    )?;
    let rows = statement.query_map(params![notification], |r| {
        let state: String = r.get(2)?;
        let next: i64 = r.get(5)?;
        let alerts: String = r.get(7)?;
        Ok(DeliveryView {
            id: r.get(0)?,
            channel: r.get(1)?,
            next_attempt_at: (state == state::PENDING).then(|| format_rfc3339(next)),
            state,
            attempts: r.get(3)?,
            last_error: r.get(4)?,
            delivered_at: r.get::<_, Option<i64>>(6)?.map(format_rfc3339),
            alerts: decode_alerts(&alerts).len(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn view(r: &rusqlite::Row<'_>) -> Result<NotificationView, rusqlite::Error> {
    Ok(NotificationView {
        id: r.get(0)?,
        received_at: format_rfc3339(r.get(1)?),
        receiver: r.get(2)?,
        group_key: r.get(3)?,
        status: r.get(4)?,
        alerts: r.get::<_, i64>(5)?.try_into().unwrap_or(0),
        duplicates: r.get::<_, i64>(6)?.try_into().unwrap_or(0),
        deliveries: Vec::new(),
        payload: None,
    })
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
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT n.id, n.received_at, n.receiver, n.group_key, n.status, n.alert_count, n.duplicates
                 FROM notifications n
                 WHERE (?1 IS NULL OR n.id < ?1)
                   AND (?2 IS NULL OR n.receiver = ?2)
                   AND (?3 IS NULL AND ?4 IS NULL OR EXISTS (
                        SELECT 1 FROM deliveries d WHERE d.notification_id = n.id
                        AND (?3 IS NULL OR d.state = ?3) AND (?4 IS NULL OR d.channel = ?4)))
                 ORDER BY n.id DESC LIMIT ?5",
            )?;
            let mut list = statement
                .query_map(
                    params![
                        filter.before,
                        filter.receiver,
                        filter.state,
                        filter.channel,
                        i64::try_from(filter.limit).unwrap_or(100)
                    ],
                    view,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            for n in &mut list {
                n.deliveries = deliveries_of(c, n.id)?;
            }
            Ok(list)
        })
        .await
    }

    async fn get(&self, id: i64) -> Result<Option<NotificationView>, StoreError> {
        self.read(move |c| {
            let found = c
                .prepare_cached(
                    "SELECT id, received_at, receiver, group_key, status, alert_count, duplicates, payload
                     FROM notifications WHERE id = ?1",
                )?
                .query_row(params![id], |r| {
                    let mut v = view(r)?;
                    let payload: Body = r.get(7)?;
                    v.payload = payload
                        .json()
                        .ok()
                        .and_then(|json| serde_json::from_str(&json).ok());
                    Ok(v)
                })
                .optional()?;
            match found {
                Some(mut n) => {
                    n.deliveries = deliveries_of(c, n.id)?;
                    Ok(Some(n))
                }
                None => Ok(None),
            }
        })
        .await
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
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT MIN(next_at) FROM incidents WHERE next_at IS NOT NULL")?
                    .query_row([], |r| r.get(0))?,
            )
        })
        .await
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
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {INCIDENT} FROM incidents WHERE open = 1 OR NOT ?1 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(
                params![open_only, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| incident_row(r).map(|row| row.view()),
            )?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn incident(&self, id: i64) -> Result<Option<IncidentView>, StoreError> {
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("SELECT {INCIDENT} FROM incidents WHERE id = ?1"))?
                    .query_row(params![id], |r| incident_row(r).map(|row| row.view()))
                    .optional()?,
            )
        })
        .await
    }

    async fn add_window(&self, window: NewWindow) -> Result<WindowRow, StoreError> {
        let added: Option<WindowRow> = self.write(Work::AddWindow(window)).await?;
        added.ok_or_else(|| StoreError::Other("the window was not stored".into()))
    }

    async fn end_window(&self, id: i64, now: i64) -> Result<Option<WindowRow>, StoreError> {
        self.write(Work::EndWindow(id, now)).await
    }

    async fn windows(&self, since: i64) -> Result<Vec<WindowRow>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {WINDOW} FROM windows WHERE ends_at > ?1 ORDER BY id"
            ))?
            .query_map(params![since], window_row)?
            .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn held(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| Ok(held(c)?)).await
    }

    async fn release(&self, window: String, now: i64) -> Result<usize, StoreError> {
        self.write(Work::Release(window, now)).await
    }

    async fn payloads(&self, ids: Vec<i64>) -> Result<Vec<(i64, Body)>, StoreError> {
        self.read(move |c| {
            let mut statement =
                c.prepare_cached("SELECT id, payload FROM notifications WHERE id = ?1")?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(found) = statement
                    .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                {
                    out.push(found);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        self.read(|c| {
            let now = now_ms();
            let depth = c
                .prepare_cached(
                    "SELECT channel, state, COUNT(*) FROM deliveries
                     WHERE state IN ('pending', 'sending', 'dead', 'held') GROUP BY channel, state",
                )?
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get::<_, i64>(2)?.try_into().unwrap_or(0),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let oldest_pending = c
                .prepare_cached(
                    "SELECT channel, MIN(queued_at) FROM deliveries
                     WHERE state IN ('pending', 'sending') GROUP BY channel",
                )?
                .query_map([], |r| {
                    let queued: i64 = r.get(1)?;
                    Ok((r.get(0)?, age_seconds(now, queued)))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let incidents = c
                .prepare_cached(
                    "SELECT policy, level + 1, acked_at IS NOT NULL, COUNT(*) FROM incidents
                     WHERE open = 1 GROUP BY 1, 2, 3",
                )?
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get::<_, i64>(3)?.try_into().unwrap_or(0),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(QueueStats {
                depth,
                oldest_pending,
                disk: None,
                incidents,
                held: held(c)?,
            })
        })
        .await
        .map(|stats| QueueStats {
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
            "CREATE TRIGGER refuse BEFORE INSERT ON notifications WHEN NEW.receiver = 'refused'
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .expect("trigger");
        let now = now_ms();
        let mut refused = notification("b", now);
        refused.receiver = "refused".into();
        let count = |conn: &Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM notifications", [], |r| r.get(0))
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
            .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
            .expect("deliveries");
        assert_eq!(deliveries, 4, "the refused write's deliveries went with it");
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
        // Outside the window the same key is news again.
        assert!(matches!(
            store
                .accept(notification("k1", now + 120_000))
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
        // The dedup keys are found again after the restart: a copy of the later
        // notification is its duplicate.
        let Accepted::Duplicate(copy) = store
            .accept(notification("k1", now + 121_000))
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
