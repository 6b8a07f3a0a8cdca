//! One long-lived connection per database, kept by a supervising task: it connects,
//! prepares the scrape's statements once, drives the connection, notices the moment it
//! drops, and reconnects with backoff (at once when a scrape asks).
//!
//! A collection holds the connection alone for as long as it runs ([`Lease`]), so that one
//! collection's deadline never cuts, resets or queues behind another's work: concurrent
//! collections (scrapes with different budgets) get a session of their own, closed when
//! they end. What a collection cut by its deadline left running on the server is cancelled
//! before the connection serves the next one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mcpwatch_core::ScrapeContext;
use mcpwatch_core::connect_failure::{ConnectFailure, unresolvable};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::queries::{MainQuery, STATEMENTS_VERSION, TABLES, has_exec_time, statements_sql};

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The generation of a session a collection made for itself: no reset means it.
const PRIVATE: u64 = 0;

/// The longest a cut collection's work is waited for (cancelled, then drained) before its
/// connection serves again; a server that answers nothing by then is the supervisor's.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// How often a connection without pg_stat_statements looks for it again.
const STATEMENTS_RECHECK: Duration = Duration::from_secs(300);

/// Which statements a connection prepares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The target's own database: server-wide views, and its tables.
    Main { statement_text: bool },
    /// Another database: its tables.
    Tables,
}

/// The pg_stat_statements statement, which can come and go with the extension.
#[derive(Debug)]
struct StatementsSlot {
    statement: Option<Statement>,
    checked: Instant,
}

/// A connected session with its prepared statements.
pub(crate) struct Session {
    pub client: Client,
    /// Which connection of its supervisor this is; a reset names the one it means.
    pub generation: u64,
    /// `server_version_num`.
    pub version: u32,
    /// Server-wide statements that prepared; a view the role may not read is left out.
    pub main: HashMap<MainQuery, Statement>,
    pub tables: Option<Statement>,
    statement_text: Option<bool>,
    statements: Mutex<StatementsSlot>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("generation", &self.generation)
            .field("version", &self.version)
            .field("main", &self.main.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Session {
    /// The pg_stat_statements statement, looked for again every few minutes while the
    /// extension is missing: it may be created after the exporter connected.
    pub(crate) async fn statements(&self) -> Option<Statement> {
        let text = self.statement_text?;
        let recheck = {
            let slot = self
                .statements
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if slot.statement.is_some() {
                return slot.statement.clone();
            }
            slot.checked.elapsed() >= STATEMENTS_RECHECK
        };
        if !recheck {
            return None;
        }
        let statement = prepare_statements(&self.client, text).await;
        let mut slot = self
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = StatementsSlot {
            statement: statement.clone(),
            checked: Instant::now(),
        };
        statement
    }

    /// Forgets the pg_stat_statements statement after an error that says the extension is
    /// gone or not loaded; returns whether the error was of that kind.
    pub(crate) fn statements_gone(&self, error: &tokio_postgres::Error) -> bool {
        let gone = error.code().is_some_and(|code| {
            [
                SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
                SqlState::UNDEFINED_TABLE,
                SqlState::UNDEFINED_FUNCTION,
                SqlState::UNDEFINED_COLUMN,
            ]
            .contains(code)
        });
        if gone {
            *self
                .statements
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = StatementsSlot {
                statement: None,
                checked: Instant::now(),
            };
        }
        gone
    }
}

/// Why there is no session: a message safe to show, and the bounded reason.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ConnectError {
    pub message: Arc<str>,
    pub reason: ConnectFailure,
}

impl ConnectError {
    pub(crate) fn new(message: impl Into<Arc<str>>, reason: ConnectFailure) -> Self {
        Self {
            message: message.into(),
            reason,
        }
    }

    /// A failed connection attempt, with the reason its error gives.
    async fn of(error: &tokio_postgres::Error, config: &tokio_postgres::Config) -> Self {
        let mut reason = reason_of(error);
        // A failed name lookup is an I/O error of no telling kind: look the names up again.
        if reason == ConnectFailure::Other && error.code().is_none() {
            for host in config.get_hosts() {
                if let tokio_postgres::config::Host::Tcp(name) = host
                    && unresolvable(name).await
                {
                    reason = ConnectFailure::Dns;
                }
            }
        }
        Self::new(describe(error), reason)
    }
}

/// The reason a driver error gives: the SQLSTATE of the server's refusal, else the TLS or
/// I/O error underneath, else the error's kind.
fn reason_of(error: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(code) = error.code() {
        return match code.code() {
            // too_many_connections: max_connections reached, or only the slots reserved
            // for superusers (or pg_use_reserved_connections) are left.
            "53300" => ConnectFailure::TooManyConnections,
            // invalid_authorization_specification, invalid_password, and no CONNECT
            // privilege on the database.
            "28000" | "28P01" | "42501" => ConnectFailure::Auth,
            _ => ConnectFailure::Other,
        };
    }
    if let Some(reason) = ConnectFailure::in_chain(error) {
        return reason;
    }
    if peer_bytes_make_no_message(error) {
        return ConnectFailure::Protocol;
    }
    // tokio-postgres has no accessor for its error kind; its Display is the kind's fixed
    // description, never the server's or the system's text.
    match error.to_string().as_str() {
        "error performing TLS handshake" => ConnectFailure::Tls,
        // At connect time the only configuration error a checked DSN meets is a password
        // the server asks for and the DSN lacks.
        "authentication error" | "invalid configuration" => ConnectFailure::Auth,
        "connection closed"
        | "unexpected message from server"
        | "error parsing response from server" => ConnectFailure::Protocol,
        "timeout waiting for server" => ConnectFailure::Timeout,
        _ => ConnectFailure::Other,
    }
}

/// Whether reading the server's messages failed on bytes that make none: a peer that is
/// not PostgreSQL. postgres-protocol's parser says so with an I/O error of kind
/// `InvalidInput` (a message of no known type; `InvalidData`, a bad length, is mapped by
/// kind already); tokio-util's framing, when the stream ends inside a message, with one
/// of kind `Other` whose text is its own fixed "bytes remaining on stream", the one way to
/// tell it (never the server's or the system's text).
fn peer_bytes_make_no_message(error: &tokio_postgres::Error) -> bool {
    // Errors on the stream, not while opening the socket ("error connecting to server").
    if error.to_string() != "error communicating with the server" {
        return false;
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::InvalidInput
                || (io.kind() == std::io::ErrorKind::Other
                    && io
                        .get_ref()
                        .is_some_and(|inner| inner.to_string() == "bytes remaining on stream"));
        }
        source = e.source();
    }
    false
}

#[derive(Clone, Debug)]
enum State {
    /// Not started, or an attempt under way.
    Connecting,
    Ready(Arc<Session>),
    /// The last attempt failed, or the connection dropped.
    Down(ConnectError),
}

struct Shared {
    /// `target/database`, for log lines.
    label: String,
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    tls: MakeRustlsConnect,
    role: Role,
    state: watch::Sender<State>,
    nudge: Notify,
    reset: Notify,
    /// The generation a reset was asked for.
    reset_generation: AtomicU64,
}

/// A supervised connection to one database.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Held by the collection using the supervised session.
    busy: Arc<tokio::sync::Mutex<()>>,
}

/// A collection's hold on a session, for as long as the collection runs.
pub(crate) struct Lease {
    session: Arc<Session>,
    hold: Hold,
    tls: MakeRustlsConnect,
    finished: bool,
}

enum Hold {
    /// The supervised session, which no other collection uses meanwhile.
    Supervised(tokio::sync::OwnedMutexGuard<()>),
    /// A session made for this collection, closed when it ends.
    Private(Driver),
    /// The supervised session, shared: another collection holds it and no session of this
    /// collection's own could be made (out of connection slots).
    Shared,
}

impl Lease {
    /// The session.
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The session a reset of this collection's may name: the supervised one only while
    /// this collection holds it alone; a session of its own is closed anyway, and a shared
    /// one is another collection's to reset.
    pub(crate) fn generation(&self) -> u64 {
        match self.hold {
            Hold::Supervised(_) => self.session.generation,
            Hold::Private(_) | Hold::Shared => PRIVATE,
        }
    }

    /// The collection ended with every query answered: nothing is left to cancel.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let hold = std::mem::replace(&mut self.hold, Hold::Shared);
        match hold {
            // What runs on a shared connection may be the other collection's: a cancel
            // would hit it.
            Hold::Shared => return,
            Hold::Private(driver) if self.finished => {
                driver.abort();
                return;
            }
            Hold::Supervised(_) if self.finished => return,
            Hold::Private(_) | Hold::Supervised(_) => {}
        }
        // Cut by the deadline (or given up on an error): what it sent may still run on the
        // server, and would hold up the next collection. Cancelled, then waited for, off
        // the scrape's path.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let session = self.session.clone();
        let tls = self.tls.clone();
        runtime.spawn(async move {
            let cancel = session.client.cancel_token();
            let _ = tokio::time::timeout(DRAIN_LIMIT, cancel.cancel_query(tls)).await;
            match hold {
                Hold::Private(driver) => driver.abort(),
                Hold::Supervised(guard) => {
                    // An empty query is answered once everything sent before it is done.
                    let _ =
                        tokio::time::timeout(DRAIN_LIMIT, session.client.simple_query("")).await;
                    drop(guard);
                }
                Hold::Shared => {}
            }
        });
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("label", &self.shared.label)
            .finish()
    }
}

impl Connection {
    /// A connection that starts on first use.
    pub(crate) fn new(
        label: String,
        config: tokio_postgres::Config,
        connect_timeout: Duration,
        tls: MakeRustlsConnect,
        role: Role,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                label,
                config,
                connect_timeout,
                tls,
                role,
                state: watch::Sender::new(State::Connecting),
                nudge: Notify::new(),
                reset: Notify::new(),
                reset_generation: AtomicU64::new(u64::MAX),
            }),
            task: Mutex::new(None),
            busy: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The session for one collection: the supervised one when no other collection holds
    /// it, else one made for this collection (within `wait_share` of the time left), else,
    /// when none can be made, the supervised one shared.
    pub(crate) async fn lease(
        &self,
        ctx: &ScrapeContext,
        wait_share: f64,
    ) -> Result<Lease, ConnectError> {
        let session = self.session(ctx, wait_share).await?;
        let lease = |session, hold| Lease {
            session,
            hold,
            tls: self.shared.tls.clone(),
            finished: false,
        };
        if let Ok(guard) = self.busy.clone().try_lock_owned() {
            return Ok(lease(session, Hold::Supervised(guard)));
        }
        let limit = ctx.remaining().mul_f64(wait_share);
        match tokio::time::timeout(limit, connect(&self.shared, PRIVATE)).await {
            Ok(Ok((private, driver))) => Ok(lease(Arc::new(private), Hold::Private(driver))),
            Ok(Err(error)) => {
                tracing::debug!(target = %self.shared.label, %error, "No session of its own for a concurrent collection; sharing the connection.");
                Ok(lease(session, Hold::Shared))
            }
            Err(_) => Ok(lease(session, Hold::Shared)),
        }
    }

    fn ensure_started(&self) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.is_none() {
            *task = Some(tokio::spawn(supervise(self.shared.clone())));
        }
    }

    /// The session, waiting for a connection attempt when there is none, for at most
    /// `wait_share` of the scrape's remaining time (the rest is for the queries).
    pub(crate) async fn session(
        &self,
        ctx: &ScrapeContext,
        wait_share: f64,
    ) -> Result<Arc<Session>, ConnectError> {
        self.ensure_started();
        let mut state = self.shared.state.subscribe();
        if let State::Ready(session) = &*state.borrow_and_update()
            && !session.client.is_closed()
        {
            return Ok(session.clone());
        }
        // Ask for an attempt now rather than after the backoff.
        self.shared.nudge.notify_one();
        let limit = tokio::time::Instant::now() + ctx.remaining().mul_f64(wait_share);
        let mut attempted = matches!(&*state.borrow(), State::Connecting);
        loop {
            match tokio::time::timeout_at(limit, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(ConnectError::new(
                        "connection supervisor stopped",
                        ConnectFailure::Other,
                    ));
                }
                Err(_) => {
                    return Err(match &*state.borrow() {
                        State::Down(error) if !attempted => error.clone(),
                        _ => ConnectError::new(
                            "connecting took longer than the scrape allows",
                            ConnectFailure::Timeout,
                        ),
                    });
                }
            }
            match &*state.borrow_and_update() {
                State::Ready(session) => return Ok(session.clone()),
                State::Connecting => attempted = true,
                State::Down(error) if attempted => return Err(error.clone()),
                State::Down(_) => {}
            }
        }
    }

    /// Drops the session `generation` and connects again: for a server that did not answer
    /// before the deadline, whose socket may be dead without being closed. A reset meant for
    /// an earlier session is ignored.
    pub(crate) fn reset(&self, generation: u64) {
        if generation == PRIVATE {
            // A collection's own session closes when the collection ends.
            return;
        }
        self.shared
            .reset_generation
            .store(generation, Ordering::SeqCst);
        self.shared.reset.notify_one();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            // Dropping the task drops the connection: the server sees it close.
            task.abort();
        }
    }
}

/// Resets a connection when dropped before [`ResetUnlessAnswered::answered`]: a query cut by
/// the scrape's deadline leaves it armed.
pub(crate) struct ResetUnlessAnswered<'a> {
    connection: Option<&'a Connection>,
    generation: u64,
}

impl<'a> ResetUnlessAnswered<'a> {
    /// Armed for the session `generation` of `connection` (see [`Lease::generation`]).
    pub(crate) fn new(connection: &'a Connection, generation: u64) -> Self {
        Self {
            connection: Some(connection),
            generation,
        }
    }

    /// The query was answered (with rows or an error): the connection is alive.
    pub(crate) fn answered(mut self) {
        self.connection = None;
    }
}

impl Drop for ResetUnlessAnswered<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection {
            connection.reset(self.generation);
        }
    }
}

async fn supervise(shared: Arc<Shared>) {
    let mut backoff = Duration::from_secs(1);
    let mut last_error: Option<String> = None;
    let mut generation = 0_u64;
    loop {
        shared.state.send_replace(State::Connecting);
        generation += 1;
        let attempt = tokio::time::timeout(shared.connect_timeout, connect(&shared, generation));
        let outcome = match attempt.await {
            Ok(outcome) => outcome,
            Err(_) => Err(ConnectError::new(
                format!(
                    "connecting took longer than connect_timeout ({:?})",
                    shared.connect_timeout
                ),
                ConnectFailure::Timeout,
            )),
        };
        match outcome {
            Ok((session, mut driver)) => {
                if last_error.take().is_some() {
                    tracing::info!(target = %shared.label, "PostgreSQL connection restored.");
                } else {
                    tracing::debug!(target = %shared.label, version = session.version, "Connected to PostgreSQL.");
                }
                backoff = Duration::from_secs(1);
                shared.state.send_replace(State::Ready(Arc::new(session)));
                // Runs until the connection ends; a lost server is seen here at once.
                let lost = loop {
                    tokio::select! {
                        ended = &mut driver => break match ended {
                            Ok(Ok(())) => ConnectError::new(
                                "the server closed the connection",
                                ConnectFailure::Protocol,
                            ),
                            Ok(Err(e)) => ConnectError::new(
                                format!("connection lost: {e}"),
                                reason_of(&e),
                            ),
                            Err(e) => ConnectError::new(
                                format!("connection task ended: {e}"),
                                ConnectFailure::Other,
                            ),
                        },
                        () = shared.reset.notified() => {
                            if shared.reset_generation.load(Ordering::SeqCst) == generation {
                                driver.abort();
                                break ConnectError::new(
                                    "the server did not answer before the scrape deadline",
                                    ConnectFailure::Timeout,
                                );
                            }
                        }
                    }
                };
                tracing::warn!(target = %shared.label, error = %lost, reason = lost.reason.as_str(), "PostgreSQL connection lost.");
                last_error = Some(lost.message.to_string());
                shared.state.send_replace(State::Down(lost));
            }
            Err(error) => {
                if last_error.as_deref() != Some(&*error.message) {
                    tracing::warn!(target = %shared.label, %error, reason = error.reason.as_str(), "Cannot connect to PostgreSQL.");
                }
                last_error = Some(error.message.to_string());
                shared.state.send_replace(State::Down(error));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shared.nudge.notified() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

type Driver = JoinHandle<Result<(), tokio_postgres::Error>>;

/// Connects and prepares; the driver task is aborted if preparing fails or this future is
/// dropped by the connect timeout.
async fn connect(shared: &Shared, generation: u64) -> Result<(Session, Driver), ConnectError> {
    let (client, connection) = match shared.config.connect(shared.tls.clone()).await {
        Ok(connected) => connected,
        Err(e) => return Err(ConnectError::of(&e, &shared.config).await),
    };
    struct AbortOnDrop(Option<Driver>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Some(driver) = &self.0 {
                driver.abort();
            }
        }
    }
    let mut driver = AbortOnDrop(Some(tokio::spawn(connection)));
    let session = match prepare(client, shared.role, &shared.label, generation).await {
        Ok(session) => session,
        Err(e) => return Err(ConnectError::of(&e, &shared.config).await),
    };
    let driver = driver
        .0
        .take()
        .ok_or_else(|| ConnectError::new("no driver", ConnectFailure::Other))?;
    Ok((session, driver))
}

async fn prepare(
    client: Client,
    role: Role,
    label: &str,
    generation: u64,
) -> Result<Session, tokio_postgres::Error> {
    // Whether the role sees every session is read by every scrape (pg_monitor_privileges),
    // which logs when it changes.
    let version: u32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?
        .try_get::<_, i32>(0)?
        .try_into()
        .unwrap_or(0);
    let tables = client
        .prepare(TABLES)
        .await
        .map_err(|e| {
            if generation != PRIVATE {
                tracing::warn!(target = %label, error = %describe(&e), "Table statistics unavailable.");
            }
        })
        .ok();
    let mut main = HashMap::new();
    let mut statement_text = None;
    let mut statements = None;
    if let Role::Main {
        statement_text: text,
    } = role
    {
        statement_text = Some(text);
        let sql: Vec<String> = MainQuery::ALL.iter().map(|q| q.sql(version)).collect();
        // Prepared together: the Parse messages go out pipelined.
        let (prepared, statements_prepared) = tokio::join!(
            futures_util::future::join_all(sql.iter().map(|text| client.prepare(text))),
            prepare_statements(&client, text)
        );
        statements = statements_prepared;
        for (query, statement) in MainQuery::ALL.into_iter().zip(prepared) {
            match statement {
                Ok(statement) => {
                    main.insert(query, statement);
                }
                // Said once, by the supervised session.
                Err(e) if generation != PRIVATE => tracing::warn!(
                    target = %label,
                    view = query.name(),
                    error = %describe(&e),
                    "Statistics unavailable; check the role's privileges (pg_monitor)."
                ),
                Err(_) => {}
            }
        }
    }
    Ok(Session {
        client,
        generation,
        version,
        main,
        tables,
        statement_text,
        statements: Mutex::new(StatementsSlot {
            statement: statements,
            checked: Instant::now(),
        }),
    })
}

/// The pg_stat_statements statement for the installed extension's version, or none when
/// it is not installed in the connected database.
async fn prepare_statements(client: &Client, text: bool) -> Option<Statement> {
    let version: String = client
        .query_opt(STATEMENTS_VERSION, &[])
        .await
        .ok()
        .flatten()?
        .try_get(0)
        .ok()?;
    client
        .prepare(&statements_sql(has_exec_time(&version), text))
        .await
        .ok()
}

/// A driver error's text with the server's own message, which tokio-postgres keeps in the
/// source: "db error: FATAL: password authentication failed for user ...".
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}
