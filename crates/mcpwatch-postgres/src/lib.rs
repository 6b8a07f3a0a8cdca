#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod collect;
pub mod config;
mod connection;
mod custom;
mod dsn;
mod queries;
mod tls;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use mcpwatch_core::{CollectError, Collector, MetricSink, ScrapeContext, Secret, async_trait};

pub use config::{CustomKind, CustomQuery, PostgresConfig};
pub use dsn::target_name;

use crate::collect::TableFamilies;
use crate::connection::{Connection, Role, Session};

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
/// `databases` and the custom queries), each supervised and reconnected in the background.
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
        let parsed = dsn::parse(&dsn).map_err(error)?;
        let root_cert = config
            .ca_file
            .as_ref()
            .map(|p| p.path().to_owned())
            .or(parsed.root_cert.clone());
        let tls = tls::connector(parsed.ssl_mode, root_cert.as_deref()).map_err(error)?;

        let mut base = parsed.config;
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
        let main_database = base
            .get_dbname()
            .or(base.get_user())
            .unwrap_or("postgres")
            .to_owned();
        let main = Connection::new(
            format!("{}/{main_database}", config.name),
            base.clone(),
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
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// Databases whose tables are reported.
    fn table_databases(&self) -> impl Iterator<Item = &str> {
        let listed = !self.config.databases.is_empty();
        std::iter::once(self.main_database.as_str())
            .filter(move |main| !listed || self.config.databases.iter().any(|d| d == main))
            .chain(
                self.config
                    .databases
                    .iter()
                    .map(String::as_str)
                    .filter(|d| *d != self.main_database),
            )
    }

    /// Writes the database sizes, read now or earlier.
    fn write_sizes(
        &self,
        results: &collect::Results,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let mut cache = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outcome = Ok(());
        if let Some((_, rows)) = results
            .iter()
            .find(|(q, _)| *q == queries::MainQuery::Sizes)
        {
            match rows
                .as_ref()
                .map_err(|e| CollectError::msg(connection::describe(e)))
                .and_then(|rows| collect::read_sizes(rows))
            {
                Ok(sizes) => *cache = Some((Instant::now(), sizes)),
                Err(e) => outcome = Err(e.context("database sizes")),
            }
        }
        if let Some((_, sizes)) = cache.as_ref() {
            collect::write_sizes(sizes, sink);
        }
        outcome
    }

    fn connection(&self, database: Option<&str>) -> &Connection {
        database
            .and_then(|d| self.others.get(d))
            .unwrap_or(&self.main)
    }
}

/// Drops the connection when the probe was not answered before the scrape ended: cut by
/// the deadline, its socket may be dead without being closed.
struct ResetUnlessAnswered<'a> {
    connection: &'a Connection,
    answered: &'a AtomicBool,
}

impl Drop for ResetUnlessAnswered<'_> {
    fn drop(&mut self) {
        if !self.answered.load(Ordering::SeqCst) {
            self.connection.reset();
        }
    }
}

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
        let main = self
            .main
            .session(ctx, 0.5)
            .await
            .map_err(|e| e.context("connecting"))?;
        // The probe goes out first, in the same pipeline as everything else: its answer
        // decides pg_up and gives the round trip, with no round trip of its own.
        let answered = AtomicBool::new(false);
        let _reset = ResetUnlessAnswered {
            connection: &self.main,
            answered: &answered,
        };
        let probe = async {
            let start = Instant::now();
            let result = main.client.simple_query("SELECT 1").await;
            answered.store(true, Ordering::SeqCst);
            if result.is_ok() {
                if let Some(up) = sink.find_mut("pg_up") {
                    up.set_all(1.0);
                }
                sink.gauge(
                    "pg_probe_duration_seconds",
                    "Round trip of SELECT 1 on the monitoring connection.",
                )
                .add(&[], start.elapsed().as_secs_f64());
            }
            result.map_err(|e| CollectError::msg(connection::describe(&e)).context("probe"))
        };
        let sizes_due = self
            .sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|(read, _)| read.elapsed() >= self.config.size_interval);
        let main = &main;
        let tables = async {
            let mut families = TableFamilies::new();
            let mut first_error = None;
            let sessions =
                futures_util::future::join_all(self.table_databases().map(|db| async move {
                    if db == self.main_database {
                        Ok(main.clone())
                    } else {
                        self.connection(Some(db)).session(ctx, 0.5).await
                    }
                }))
                .await;
            let queries = sessions.iter().map(|session| async move {
                let session: &Session = match session {
                    Ok(s) => s,
                    Err(e) => return Err(CollectError::msg(e)),
                };
                match &session.tables {
                    Some(statement) => session
                        .client
                        .query(statement, &[&i64::from(self.config.top_tables)])
                        .await
                        .map_err(|e| CollectError::msg(connection::describe(&e))),
                    None => Ok(Vec::new()),
                }
            });
            for (db, rows) in self
                .table_databases()
                .zip(futures_util::future::join_all(queries).await)
            {
                match rows.and_then(|rows| families.add(&rows)) {
                    Ok(()) => {}
                    Err(e) => {
                        first_error.get_or_insert(e.context(format_args!("tables of {db}")));
                    }
                }
            }
            (families, first_error)
        };
        let custom =
            futures_util::future::join_all(self.config.queries.iter().map(|query| async {
                let mut out = MetricSink::default();
                let session = match query.database.as_deref() {
                    Some(db) if db != self.main_database => {
                        self.connection(Some(db)).session(ctx, 0.5).await
                    }
                    _ => Ok(main.clone()),
                };
                let result = match session {
                    Ok(session) => custom::run(&session, query, &mut out).await,
                    Err(e) => Err(e.context(format_args!("query {}", query.metric))),
                };
                (out, result)
            }));
        let (probe, results, (tables, table_error), custom) = tokio::join!(
            probe,
            collect::run_main(main, &self.config, sizes_due),
            tables,
            custom
        );
        probe?;

        let mut result = collect::write_main(&results, sink);
        result = result.and(self.write_sizes(&results, sink));
        tables.finish(sink);
        if let Some(e) = table_error {
            result = result.and(Err(e));
        }
        for (out, query_result) in custom {
            sink.append(out);
            result = result.and(query_result);
        }
        result
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
