//! One long-lived connection per database, kept by a supervising task: it connects,
//! prepares the scrape's statements once, drives the connection, notices the moment it
//! drops, and reconnects with backoff (at once when a scrape asks). A scrape never opens a
//! connection of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::{CollectError, ScrapeContext};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::queries::{HAS_STATEMENTS, MainQuery, TABLES};

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Which statements a connection prepares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The target's own database: server-wide views, and its tables.
    Main { statement_text: bool },
    /// Another database: its tables.
    Tables,
}

/// A connected session with its prepared statements.
pub(crate) struct Session {
    pub client: Client,
    /// `server_version_num`.
    pub version: u32,
    /// Server-wide statements that prepared; a view the role may not read is left out.
    pub main: HashMap<MainQuery, Statement>,
    pub tables: Option<Statement>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("version", &self.version)
            .field("main", &self.main.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Clone, Debug)]
enum State {
    /// Not started, or an attempt under way.
    Connecting,
    Ready(Arc<Session>),
    /// The last attempt failed, or the connection dropped; the text is safe to show.
    Down(Arc<str>),
}

struct Shared {
    /// `target/database`, for log lines.
    label: String,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    role: Role,
    state: watch::Sender<State>,
    nudge: Notify,
    reset: Notify,
}

/// A supervised connection to one database.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
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
        tls: MakeRustlsConnect,
        role: Role,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                label,
                config,
                tls,
                role,
                state: watch::Sender::new(State::Connecting),
                nudge: Notify::new(),
                reset: Notify::new(),
            }),
            task: std::sync::Mutex::new(None),
        }
    }

    fn ensure_started(&self) {
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
    ) -> Result<Arc<Session>, CollectError> {
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
                Ok(Err(_)) => return Err(CollectError::msg("connection supervisor stopped")),
                Err(_) => {
                    return Err(match &*state.borrow() {
                        State::Down(error) if !attempted => CollectError::msg(error),
                        _ => CollectError::msg("connecting took longer than the scrape allows"),
                    });
                }
            }
            match &*state.borrow_and_update() {
                State::Ready(session) => return Ok(session.clone()),
                State::Connecting => attempted = true,
                State::Down(error) if attempted => return Err(CollectError::msg(error)),
                State::Down(_) => {}
            }
        }
    }
}

impl Connection {
    /// Drops the connection and connects again: for a server that did not answer a probe
    /// before the deadline, whose socket may be dead without being closed.
    pub(crate) fn reset(&self) {
        self.shared.reset.notify_one();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            // Dropping the task drops the connection: the server sees it close.
            task.abort();
        }
    }
}

async fn supervise(shared: Arc<Shared>) {
    let mut backoff = Duration::from_secs(1);
    let mut last_error: Option<String> = None;
    loop {
        shared.state.send_replace(State::Connecting);
        match connect(&shared).await {
            Ok((session, driver)) => {
                if last_error.take().is_some() {
                    tracing::info!(target = %shared.label, "PostgreSQL connection restored.");
                } else {
                    tracing::debug!(target = %shared.label, version = session.version, "Connected to PostgreSQL.");
                }
                backoff = Duration::from_secs(1);
                shared.state.send_replace(State::Ready(Arc::new(session)));
                // Runs until the connection ends; a lost server is seen here at once.
                let mut driver = driver;
                let reason = tokio::select! {
                    ended = &mut driver => match ended {
                        Ok(Ok(())) => "the server closed the connection".to_owned(),
                        Ok(Err(e)) => format!("connection lost: {e}"),
                        Err(e) => format!("connection task ended: {e}"),
                    },
                    () = shared.reset.notified() => {
                        driver.abort();
                        "the server did not answer before the scrape deadline".to_owned()
                    }
                };
                tracing::warn!(target = %shared.label, error = %reason, "PostgreSQL connection lost.");
                shared
                    .state
                    .send_replace(State::Down(Arc::from(reason.as_str())));
                last_error = Some(reason);
            }
            Err(error) => {
                if last_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(target = %shared.label, %error, "Cannot connect to PostgreSQL.");
                }
                shared
                    .state
                    .send_replace(State::Down(Arc::from(error.as_str())));
                last_error = Some(error);
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

async fn connect(shared: &Shared) -> Result<(Session, Driver), String> {
    let (client, connection) = shared
        .config
        .connect(shared.tls.clone())
        .await
        .map_err(|e| describe(&e))?;
    let driver = tokio::spawn(connection);
    match prepare(client, shared.role, &shared.label).await {
        Ok(session) => Ok((session, driver)),
        Err(e) => {
            driver.abort();
            Err(e)
        }
    }
}

async fn prepare(client: Client, role: Role, label: &str) -> Result<Session, String> {
    let version: u32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| describe(&e))?
        .try_get::<_, i32>(0)
        .map_err(|e| describe(&e))?
        .try_into()
        .unwrap_or(0);
    let tables = client
        .prepare(TABLES)
        .await
        .map_err(|e| tracing::warn!(target = %label, error = %describe(&e), "Table statistics unavailable."))
        .ok();
    let mut main = HashMap::new();
    if let Role::Main { statement_text } = role {
        let has_statements: bool = client
            .query_one(HAS_STATEMENTS, &[])
            .await
            .and_then(|row| row.try_get(0))
            .unwrap_or(false);
        let wanted: Vec<MainQuery> = MainQuery::ALL
            .into_iter()
            .filter(|q| *q != MainQuery::Statements || has_statements)
            .collect();
        let sql: Vec<String> = wanted
            .iter()
            .map(|q| q.sql(version, statement_text))
            .collect();
        // Prepared together: the Parse messages go out pipelined.
        let prepared =
            futures_util::future::join_all(sql.iter().map(|text| client.prepare(text))).await;
        for (query, statement) in wanted.into_iter().zip(prepared) {
            match statement {
                Ok(statement) => {
                    main.insert(query, statement);
                }
                Err(e) => tracing::warn!(
                    target = %label,
                    view = query.name(),
                    error = %describe(&e),
                    "Statistics unavailable; check the role's privileges (pg_monitor)."
                ),
            }
        }
    }
    Ok(Session {
        client,
        version,
        main,
        tables,
    })
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
