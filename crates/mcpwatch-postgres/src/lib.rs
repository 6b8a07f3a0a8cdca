#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod collect;
pub mod config;
mod connection;
mod custom;
mod privileges;
mod queries;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use mcpwatch_core::certs::{CertificateWatch, Opening};
use mcpwatch_core::connect_failure::write_connect_failure;
use mcpwatch_core::{CollectError, Collector, MetricSink, ScrapeContext, Secret, async_trait};

pub use config::{CustomKind, CustomQuery, PostgresConfig};

use crate::collect::TableFamilies;
use crate::connection::{ConnectError, Connection, Lease, ResetUnlessAnswered, Role, Session};
use crate::privileges::PrivilegeWatch;
use crate::queries::MainQuery;

/// Every metric name the collector writes, for the checks that keep a custom query from
/// writing one of them. A counter's name ends in `_total` and an info's in `_info`, and no
/// other name does: the checks read the type from the name.
pub const METRIC_NAMES: &[&str] = &[
    "pg_up",
    "pg_connect_failure",
    "pg_probe_duration_seconds",
    "pg_monitor_privileges",
    "pg_server_info",
    "pg_postmaster_start_time_seconds",
    "pg_in_recovery",
    "pg_settings_max_connections",
    "pg_settings_superuser_reserved_connections",
    "pg_settings_reserved_connections",
    "pg_replication_replay_delay_seconds",
    "pg_stat_archiver_archived_total",
    "pg_stat_archiver_failed_total",
    "pg_stat_archiver_last_archived_time_seconds",
    "pg_stat_archiver_last_failed_time_seconds",
    "pg_checkpoints_timed_total",
    "pg_checkpoints_requested_total",
    "pg_checkpoint_write_seconds_total",
    "pg_checkpoint_sync_seconds_total",
    "pg_checkpoint_buffers_written_total",
    "pg_bgwriter_buffers_clean_total",
    "pg_bgwriter_maxwritten_clean_total",
    "pg_bgwriter_buffers_backend_total",
    "pg_bgwriter_buffers_alloc_total",
    "pg_stat_activity_connections",
    "pg_oldest_transaction_seconds",
    "pg_oldest_idle_in_transaction_seconds",
    "pg_sessions_waiting_on_locks",
    "pg_locks",
    "pg_locks_waiting",
    "pg_stat_database_numbackends",
    "pg_stat_database_xact_commit_total",
    "pg_stat_database_xact_rollback_total",
    "pg_stat_database_blks_read_total",
    "pg_stat_database_blks_hit_total",
    "pg_stat_database_tup_returned_total",
    "pg_stat_database_tup_fetched_total",
    "pg_stat_database_tup_inserted_total",
    "pg_stat_database_tup_updated_total",
    "pg_stat_database_tup_deleted_total",
    "pg_stat_database_conflicts_total",
    "pg_stat_database_temp_files_total",
    "pg_stat_database_temp_bytes_total",
    "pg_stat_database_deadlocks_total",
    "pg_database_size_bytes",
    "pg_replication_lag_seconds",
    "pg_replication_lag_bytes",
    "pg_replication_slot_active",
    "pg_replication_slot_retained_wal_bytes",
    "pg_stat_statements_available",
    "pg_stat_statements_calls_total",
    "pg_stat_statements_seconds_total",
    "pg_stat_statements_rows_total",
    "pg_stat_statements_selected_info",
    "pg_stat_statements_query_info",
    "pg_stat_user_tables_n_live_tup",
    "pg_stat_user_tables_n_dead_tup",
    "pg_stat_user_tables_seq_scan_total",
    "pg_stat_user_tables_idx_scan_total",
    "pg_stat_user_tables_last_autovacuum_age_seconds",
    "pg_stat_user_tables_last_autoanalyze_age_seconds",
];

/// Database sizes (name, bytes) and when they were read.
type SizesRead = (Instant, Vec<(String, f64)>);

/// Why a collector could not be built: the key at fault and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PostgresError {
    /// The key, relative to the target's entry.
    pub key: String,
    /// What is wrong; never the connection string.
    pub message: String,
}

/// Collects the metrics of one PostgreSQL server (`pg_*`), labelled `target="<name>"`.
///
/// It keeps one connection per database it reads (the connection string's, and those in
/// `databases` and the custom queries), each supervised and reconnected in the background,
/// and held by one collection at a time (a concurrent collection gets a session of its
/// own).
/// A scrape first checks the server with `SELECT 1` (`pg_up`, `pg_probe_duration_seconds`),
/// then sends every prepared statement at once.
pub struct PostgresCollector {
    config: PostgresConfig,
    main: Connection,
    main_database: String,
    /// Other databases, by name.
    others: BTreeMap<String, Connection>,
    /// Database sizes and when they were read.
    sizes: Mutex<Option<SizesRead>>,
    /// Whether the role saw every session at the last scrape.
    privileges: PrivilegeWatch,
    /// The certificate chains the server presented its TLS connections.
    certificates: Option<CertificateWatch>,
}

impl std::fmt::Debug for PostgresCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCollector")
            .field("target", &self.config.name)
            .field("database", &self.main_database)
            .field("others", &self.others.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A watch of the server's certificates when the connection string asks for TLS to a host
/// reached over TCP (the first, as tokio-postgres tries them in order).
fn certificate_watch(
    config: &tokio_postgres::Config,
    watched: mcpwatch_pgconn::Watched,
) -> Option<CertificateWatch> {
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        return None;
    }
    let tokio_postgres::config::Host::Tcp(host) = config.get_hosts().first()? else {
        return None;
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    // libpq's hostaddr: where to connect, the host name still presented and checked.
    let address = config.get_hostaddrs().first().copied();
    Some(CertificateWatch::new(
        watched,
        host.clone(),
        address,
        port,
        Opening::PostgresSslRequest,
    ))
}

impl PostgresCollector {
    /// Checks the configuration and prepares the connections; nothing connects until the
    /// first scrape.
    pub fn new(config: PostgresConfig) -> Result<Self, PostgresError> {
        config
            .validate()
            .map_err(|(key, message)| PostgresError { key, message })?;
        let dsn_key = if config.dsn.is_some() {
            "dsn"
        } else {
            "dsn_file"
        };
        let error = |message: String| PostgresError {
            key: dsn_key.to_owned(),
            message,
        };
        let dsn: Secret = config.dsn().map_err(error)?;
        let mut parsed = mcpwatch_pgconn::parse(&dsn).map_err(|e| error(e.to_string()))?;
        if let Some(ca_file) = &config.ca_file {
            parsed.set_root_cert(ca_file.path().to_owned());
        }
        let (tls, watched) = parsed.connector().map_err(|e| PostgresError {
            key: if config.ca_file.is_some() {
                "ca_file"
            } else {
                dsn_key
            }
            .to_owned(),
            message: e.to_string(),
        })?;
        let main_database = parsed.database().to_owned();

        let mut base = parsed.into_config();
        let certificates = certificate_watch(&base, watched);
        // Server-side limits for everything the session runs, and a read-only session:
        // custom queries cannot change data even by mistake.
        let limits = format!(
            "-c statement_timeout={} -c lock_timeout={} -c default_transaction_read_only=on",
            config.statement_timeout.as_millis(),
            config.lock_timeout.as_millis()
        );
        let options = match base.get_options() {
            Some(existing) if !existing.is_empty() => format!("{existing} {limits}"),
            _ => limits,
        };
        base.options(options)
            .application_name("mcpwatch")
            .connect_timeout(config.connect_timeout)
            .keepalives_idle(std::time::Duration::from_secs(30));
        let main = Connection::new(
            format!("{}/{main_database}", config.name),
            base.clone(),
            config.connect_timeout,
            tls.clone(),
            Role::Main {
                statement_text: config.statement_text_length > 0,
            },
        );
        let mut others = BTreeMap::new();
        let wanted = config
            .databases
            .iter()
            .chain(config.queries.iter().filter_map(|q| q.database.as_ref()));
        for database in wanted {
            if *database == main_database || others.contains_key(database) {
                continue;
            }
            let mut db_config = base.clone();
            db_config.dbname(database);
            others.insert(
                database.clone(),
                Connection::new(
                    format!("{}/{database}", config.name),
                    db_config,
                    config.connect_timeout,
                    tls.clone(),
                    Role::Tables,
                ),
            );
        }
        Ok(Self {
            config,
            main,
            main_database,
            others,
            sizes: Mutex::new(None),
            privileges: PrivilegeWatch::default(),
            certificates,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Databases whose tables are reported, each once (a database listed twice would give
    /// every table's series twice).
    fn table_databases(&self) -> impl Iterator<Item = &str> {
        let listed = !self.config.databases.is_empty();
        std::iter::once(self.main_database.as_str())
            .filter(move |main| !listed || self.config.databases.iter().any(|d| d == main))
            .chain(
                self.config
                    .databases
                    .iter()
                    .enumerate()
                    .filter(|(i, d)| {
                        **d != self.main_database && !self.config.databases[..*i].contains(d)
                    })
                    .map(|(_, d)| d.as_str()),
            )
    }

    fn connection(&self, database: Option<&str>) -> &Connection {
        database
            .and_then(|d| self.others.get(d))
            .unwrap_or(&self.main)
    }
}

/// What one of a scrape's queries gave, written to the sink as soon as it arrives.
enum Part {
    Probe(Result<std::time::Duration, tokio_postgres::Error>),
    Main(
        MainQuery,
        Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
    ),
    /// `None`: pg_stat_statements is not available.
    Statements(
        Option<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>,
        Arc<Session>,
    ),
    Tables(String, Result<Vec<tokio_postgres::Row>, CollectError>),
    Custom(MetricSink, Result<(), CollectError>),
}

type PartFuture<'a> = Pin<Box<dyn Future<Output = Part> + Send + 'a>>;

#[async_trait]
impl Collector for PostgresCollector {
    fn name(&self) -> &str {
        "postgres"
    }

    fn target(&self) -> &str {
        &self.config.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        // Until the server answers, the scrape's answer is "down": written first so that
        // it is served even when the deadline cuts the collection.
        sink.gauge("pg_up", "Whether this scrape reached the server.")
            .add(&[], 0.0);
        // This collection's own hold on each connection, so that another collection's
        // deadline never cuts its queries, nor theirs queue behind its own.
        let lease = self.main.lease(ctx, 0.5).await;
        // The chains the server presented, this connection's included (one kept open was
        // verified when it was made), also when the handshake failed on them.
        if let Some(certificates) = &self.certificates {
            certificates.write(sink, "postgres");
        }
        let mut main_lease = match lease {
            Ok(lease) => {
                write_connect_failure(sink, "pg", None);
                lease
            }
            Err(e) => {
                write_connect_failure(sink, "pg", Some(e.reason));
                return Err(CollectError::from(e).context("connecting"));
            }
        };

        // Everything goes out at once, in this order on the main connection: the probe
        // (its answer decides pg_up and gives the round trip), the built-in statements,
        // then the user's queries, so that a slow custom query delays none of ours. Each
        // result is written as it arrives: when the deadline cuts a slow query, the rest
        // is served.
        let main = main_lease.session().clone();
        let mut others = OtherLeases::new(self, ctx);
        let mut parts: FuturesUnordered<PartFuture<'_>> = FuturesUnordered::new();
        parts.push(Box::pin(self.probe(&main, main_lease.generation())));
        let sizes_due = self.sizes_due();
        for query in MainQuery::ALL {
            if query == MainQuery::Sizes && !sizes_due {
                continue;
            }
            let main = main.clone();
            parts.push(Box::pin(async move {
                match collect::run(&main, query, &self.config).await {
                    Some(rows) => Part::Main(query, rows),
                    // Not prepared (no privilege): nothing to report.
                    None => Part::Main(query, Ok(Vec::new())),
                }
            }));
        }
        parts.push(Box::pin({
            let main = main.clone();
            async move {
                let rows = match main.statements().await {
                    Some(statement) => {
                        Some(collect::run_statements(&main, &statement, &self.config).await)
                    }
                    None => None,
                };
                Part::Statements(rows, main)
            }
        }));
        for database in self.table_databases() {
            parts.push(Box::pin(self.tables(database, &main, &others)));
        }
        for query in &self.config.queries {
            parts.push(Box::pin(self.custom(query, &main, &others)));
        }
        if !sizes_due {
            self.write_cached_sizes(sink);
        }

        let mut result = Ok(());
        while let Some(part) = parts.next().await {
            let outcome = match part {
                Part::Probe(Ok(round_trip)) => {
                    if let Some(up) = sink.find_mut("pg_up") {
                        up.set_all(1.0);
                    }
                    sink.gauge(
                        "pg_probe_duration_seconds",
                        "Round trip of SELECT 1 on the monitoring connection.",
                    )
                    .add(&[], round_trip.as_secs_f64());
                    Ok(())
                }
                // The server did not answer: nothing else is to be trusted.
                Part::Probe(Err(e)) => {
                    return Err(CollectError::msg(connection::describe(&e)).context("probe"));
                }
                Part::Main(MainQuery::Server, rows) => {
                    let written = collect::write_server(&rows, sink);
                    if let Ok(Some(seen)) = &written {
                        self.privileges.observe(&self.config.name, seen);
                    }
                    written.map(drop)
                }
                Part::Main(MainQuery::Sizes, rows) => self.read_sizes(&rows, sink),
                Part::Main(query, rows) => collect::write(query, &rows, sink),
                Part::Statements(None, _) => {
                    collect::write_statements_available(false, sink);
                    Ok(())
                }
                Part::Statements(Some(Ok(rows)), _) => {
                    collect::write_statements_available(true, sink);
                    collect::write_statements(&rows, sink)
                }
                Part::Statements(Some(Err(e)), session) => {
                    collect::write_statements_available(false, sink);
                    // Dropped, or installed without shared_preload_libraries: no error.
                    if session.statements_gone(&e) {
                        Ok(())
                    } else {
                        Err(CollectError::msg(connection::describe(&e))
                            .context("pg_stat_statements"))
                    }
                }
                Part::Tables(database, rows) => {
                    let mut families = TableFamilies::new();
                    let added = rows.and_then(|rows| families.add(&rows));
                    families.finish(sink);
                    added.map_err(|e| e.context(format_args!("tables of {database}")))
                }
                Part::Custom(out, outcome) => {
                    sink.append(out);
                    outcome
                }
            };
            result = result.and(outcome);
        }
        // Every query was answered: nothing of this collection runs on the server.
        drop(parts);
        main_lease.finish();
        others.finish();
        result
    }
}

/// The sessions of the other databases one collection reads, each leased on first use and
/// shared by that collection's queries.
struct OtherLeases<'a> {
    collector: &'a PostgresCollector,
    ctx: &'a ScrapeContext,
    leases: BTreeMap<&'a str, tokio::sync::OnceCell<Result<Lease, ConnectError>>>,
}

impl<'a> OtherLeases<'a> {
    fn new(collector: &'a PostgresCollector, ctx: &'a ScrapeContext) -> Self {
        Self {
            collector,
            ctx,
            leases: collector
                .others
                .keys()
                .map(|database| (database.as_str(), tokio::sync::OnceCell::new()))
                .collect(),
        }
    }

    /// The session of `database` (one of the others) for this collection, and the
    /// generation a reset may name.
    async fn session(&self, database: &str) -> Result<(Arc<Session>, u64), ConnectError> {
        let connection = self.collector.connection(Some(database));
        let Some(cell) = self.leases.get(database) else {
            return Err(ConnectError::new(
                format!("no connection to {database}"),
                mcpwatch_core::connect_failure::ConnectFailure::Other,
            ));
        };
        cell.get_or_init(|| connection.lease(self.ctx, 0.5))
            .await
            .as_ref()
            .map(|lease| (lease.session().clone(), lease.generation()))
            .map_err(Clone::clone)
    }

    /// Every query on them was answered.
    fn finish(&mut self) {
        for lease in self
            .leases
            .values_mut()
            .filter_map(|cell| cell.get_mut())
            .flatten()
        {
            lease.finish();
        }
    }
}

impl PostgresCollector {
    /// `SELECT 1` on the main connection; reset if the deadline comes first.
    async fn probe(&self, main: &Arc<Session>, generation: u64) -> Part {
        let unanswered = ResetUnlessAnswered::new(&self.main, generation);
        let start = Instant::now();
        let result = main.client.simple_query("SELECT 1").await;
        unanswered.answered();
        Part::Probe(result.map(|_| start.elapsed()))
    }

    /// The top tables of `database`, on its own connection when it is not the main one.
    /// Another database's connection is reset when its query is cut by the deadline (its
    /// socket may be dead); the main one answered its probe, so there it is only slow.
    async fn tables(&self, database: &str, main: &Arc<Session>, others: &OtherLeases<'_>) -> Part {
        let other = (database != self.main_database).then(|| self.connection(Some(database)));
        let session = match other {
            Some(_) => others.session(database).await.map_err(CollectError::from),
            None => Ok((main.clone(), 0)),
        };
        let rows = match session {
            Err(e) => Err(e),
            Ok((session, generation)) => match &session.tables {
                None => Ok(Vec::new()),
                Some(statement) => {
                    let unanswered = other.map(|c| ResetUnlessAnswered::new(c, generation));
                    let rows = session
                        .client
                        .query(statement, &[&i64::from(self.config.top_tables)])
                        .await;
                    if let Some(unanswered) = unanswered {
                        unanswered.answered();
                    }
                    rows.map_err(|e| CollectError::msg(connection::describe(&e)))
                }
            },
        };
        Part::Tables(database.to_owned(), rows)
    }

    /// One custom query, in its own sink.
    async fn custom(
        &self,
        query: &CustomQuery,
        main: &Arc<Session>,
        others: &OtherLeases<'_>,
    ) -> Part {
        let mut out = MetricSink::default();
        let database = query
            .database
            .as_deref()
            .filter(|d| *d != self.main_database);
        let connection = self.connection(database);
        let session = match database {
            Some(database) => others.session(database).await.map_err(CollectError::from),
            None => Ok((main.clone(), 0)),
        };
        let result = match session {
            Ok((session, generation)) => {
                // Only another database's connection is reset: the main one answered its
                // probe, so a slow custom query there is only slow.
                let unanswered = database.map(|_| ResetUnlessAnswered::new(connection, generation));
                let result = custom::run(&session, query, &mut out).await;
                if let Some(unanswered) = unanswered {
                    unanswered.answered();
                }
                result
            }
            Err(e) => Err(e.context(format_args!("query {}", query.metric))),
        };
        Part::Custom(out, result)
    }

    fn sizes_due(&self) -> bool {
        self.sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|(read, _)| read.elapsed() >= self.config.size_interval)
    }

    /// Keeps the sizes just read and writes them.
    fn read_sizes(
        &self,
        rows: &Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let read = rows
            .as_ref()
            .map_err(|e| CollectError::msg(connection::describe(e)))
            .and_then(|rows| collect::read_sizes(rows))
            .map_err(|e| e.context("database sizes"));
        match read {
            Ok(sizes) => {
                collect::write_sizes(&sizes, sink);
                *self.sizes.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), sizes));
                Ok(())
            }
            Err(e) => {
                self.write_cached_sizes(sink);
                Err(e)
            }
        }
    }

    /// Writes the sizes read last, unless they are older than two intervals (their
    /// statement keeps failing): stale sizes would hide a dropped database.
    fn write_cached_sizes(&self, sink: &mut MetricSink) {
        let cache = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((read, sizes)) = cache.as_ref()
            && read.elapsed() <= self.config.size_interval * 2
        {
            collect::write_sizes(sizes, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn collector(text: &str) -> Result<PostgresCollector, PostgresError> {
        PostgresCollector::new(parse_yaml(text, Path::new("c.yml")).expect("config"))
    }

    #[test]
    fn one_connection_per_database() {
        let c = collector(
            "name: main\ndsn: postgresql://m:pw@db/app\ndatabases: [app, billing]\nqueries:\n  \
             - metric: jobs\n    sql: SELECT 1 AS n\n    values: [n]\n    database: queue\n",
        )
        .expect("collector");
        assert_eq!(c.main_database, "app");
        assert_eq!(c.others.keys().collect::<Vec<_>>(), ["billing", "queue"]);
        assert_eq!(c.table_databases().collect::<Vec<_>>(), ["app", "billing"]);
        let only_main = collector("name: m\ndsn: postgresql://m:pw@db/app\n").expect("collector");
        assert_eq!(only_main.table_databases().collect::<Vec<_>>(), ["app"]);
        let elsewhere = collector("name: m\ndsn: postgresql://m:pw@db/app\ndatabases: [other]\n")
            .expect("collector");
        assert_eq!(elsewhere.table_databases().collect::<Vec<_>>(), ["other"]);
        let twice = collector(
            "name: m\ndsn: postgresql://m:pw@db/app\ndatabases: [b, app, b, app, c, c]\n",
        )
        .expect("collector");
        assert_eq!(
            twice.table_databases().collect::<Vec<_>>(),
            ["app", "b", "c"]
        );
    }

    #[test]
    fn with_no_user_and_no_database_the_main_database_is_the_os_users() {
        // The server takes the database named as the user, and tokio-postgres logs in as
        // the user running the process.
        let user = whoami::username().expect("the user running the tests");
        let c = collector(&format!(
            "name: m\ndsn: 'host=127.0.0.1 port=5432 password=r'\ndatabases: [postgres, {user}]\n"
        ))
        .expect("collector");
        assert_eq!(c.main_database, user);
        if user != "postgres" {
            assert_eq!(c.others.keys().collect::<Vec<_>>(), ["postgres"]);
            assert_eq!(
                c.table_databases().collect::<Vec<_>>(),
                [user.as_str(), "postgres"]
            );
        }
    }

    #[test]
    fn errors_name_the_key_and_never_the_password() {
        let e = collector("name: m\ndsn: 'postgresql://m:hunter2@db/app?sslmode=maybe'\n")
            .expect_err("bad sslmode")
            .to_string();
        assert!(e.starts_with("dsn: sslmode must be"), "{e}");
        assert!(!e.contains("hunter2"));
    }
}
