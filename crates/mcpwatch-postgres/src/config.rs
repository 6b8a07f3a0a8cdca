//! Settings of one PostgreSQL target (`collectors.postgres[]`).

use std::time::Duration;

use mcpwatch_core::Secret;
use mcpwatch_core::config::{ConfigPath, Problem, SecretFile, duration, secret_setting};
use mcpwatch_core::metrics::{MetricKind, is_valid_label_name, is_valid_metric_name};
use serde::Deserialize;

/// One PostgreSQL server to watch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The `target` label.
    pub name: String,
    /// Connection string, as a URL (`postgresql://user:password@host:5432/db?sslmode=require`)
    /// or `key=value` pairs.
    pub dsn: Option<Secret>,
    /// A file holding the connection string.
    pub dsn_file: Option<SecretFile>,
    /// Databases whose per-database views (tables) are read, each over its own connection;
    /// empty means the connection string's database.
    #[serde(default)]
    pub databases: Vec<String>,
    /// CA certificates for `sslmode=verify-ca` and `verify-full` (`sslrootcert` in the
    /// connection string does the same); the system's roots otherwise.
    pub ca_file: Option<ConfigPath>,
    /// How long connecting may take.
    #[serde(default = "defaults::connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Server-side limit of every statement of the session.
    #[serde(default = "defaults::statement_timeout", with = "duration")]
    pub statement_timeout: Duration,
    /// Server-side limit on waiting for a lock.
    #[serde(default = "defaults::lock_timeout", with = "duration")]
    pub lock_timeout: Duration,
    /// How often database sizes are read (from the files of each database, which is slow
    /// on large ones); `0s` reads them on every scrape.
    #[serde(default = "defaults::size_interval", with = "duration")]
    pub size_interval: Duration,
    /// At most this many databases in the per-database statistics; connections and locks
    /// of databases past this (the least busy) are counted under `datname="(other)"`.
    #[serde(default = "defaults::max_databases")]
    pub max_databases: u32,
    /// At most this many (user, application_name) pairs in `pg_stat_activity_connections`,
    /// those with the most connections; the connections of the others are counted under
    /// `user="(other)"`, `application_name="(other)"`.
    #[serde(default = "defaults::max_clients")]
    pub max_clients: u32,
    /// Tables reported per database: the top N by dead tuples.
    #[serde(default = "defaults::top_tables")]
    pub top_tables: u32,
    /// Statements reported from `pg_stat_statements`: the top N by total execution time.
    #[serde(default = "defaults::top_statements")]
    pub top_statements: u32,
    /// And the top N by mean execution time; a statement in both sets is reported once.
    #[serde(default = "defaults::top_statements_by_mean")]
    pub top_statements_by_mean: u32,
    /// When above 0, `pg_stat_statements_query_info` carries the statement's text cut to
    /// this many characters; 0 leaves the text out (and spares the server reading it).
    #[serde(default)]
    pub statement_text_length: u32,
    /// At most this many replicas and replication slots.
    #[serde(default = "defaults::max_replication")]
    pub max_replication: u32,
    /// Queries of your own, turned into metrics.
    #[serde(default)]
    pub queries: Vec<CustomQuery>,
}

mod defaults {
    use std::time::Duration;

    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn statement_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn lock_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn max_databases() -> u32 {
        64
    }
    pub fn max_clients() -> u32 {
        20
    }
    pub fn size_interval() -> Duration {
        Duration::from_secs(60)
    }
    pub fn top_tables() -> u32 {
        20
    }
    pub fn top_statements() -> u32 {
        20
    }
    pub fn top_statements_by_mean() -> u32 {
        10
    }
    pub fn max_replication() -> u32 {
        32
    }
    pub fn max_rows() -> u32 {
        100
    }
}

/// A query of the user's: each row gives one series per value column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomQuery {
    /// The metric name prefix: a value column `waiting` gives `<metric>_waiting`.
    pub metric: String,
    /// Help text of the metrics.
    #[serde(default)]
    pub help: Option<String>,
    /// The SQL, run read-only under the session's statement timeout.
    pub sql: String,
    /// The database to run it in; the connection string's by default.
    #[serde(default)]
    pub database: Option<String>,
    /// `gauge` or `counter` (a counter's names end in `_total`).
    #[serde(default, rename = "type")]
    pub kind: CustomKind,
    /// Columns that become labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Columns that become values (numbers, or t/f; a NULL value gives no sample).
    pub values: Vec<String>,
    /// At most this many rows become series (the server still sends all the query returns:
    /// put a LIMIT in the SQL for large results).
    #[serde(default = "defaults::max_rows")]
    pub max_rows: u32,
}

/// The type of a custom query's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomKind {
    /// A value that goes up and down.
    #[default]
    Gauge,
    /// A value that only grows.
    Counter,
}

impl CustomQuery {
    /// The full metric name for a value column.
    pub fn metric_name(&self, value: &str) -> String {
        let name = format!("{}_{value}", self.metric);
        match self.kind {
            CustomKind::Counter if !name.ends_with("_total") => format!("{name}_total"),
            _ => name,
        }
    }

    fn metric_kind(&self) -> MetricKind {
        match self.kind {
            CustomKind::Gauge => MetricKind::Gauge,
            CustomKind::Counter => MetricKind::Counter,
        }
    }
}

/// The type of one of the collector's own metrics, read from its name (see
/// [`crate::METRIC_NAMES`]).
fn own_kind(name: &str) -> MetricKind {
    if name.ends_with("_total") {
        MetricKind::Counter
    } else if name.ends_with("_info") {
        MetricKind::Info
    } else {
        MetricKind::Gauge
    }
}

/// The names a family takes in one exposition format or the other: its own; for a counter
/// also its OpenMetrics family name (without `_total`) and that family's `_created` sample;
/// for an info its family name (without `_info`).
fn names_taken(name: &str, kind: MetricKind) -> Vec<String> {
    let mut names = vec![name.to_owned()];
    match kind {
        MetricKind::Counter => {
            if let Some(family) = name.strip_suffix("_total") {
                names.push(family.to_owned());
                names.push(format!("{family}_created"));
            }
        }
        MetricKind::Info => {
            if let Some(family) = name.strip_suffix("_info") {
                names.push(family.to_owned());
            }
        }
        MetricKind::Gauge | MetricKind::Histogram | MetricKind::Unknown => {}
    }
    names
}

/// Whether two families would be written as one, or give an exposition with one name twice.
fn clash(a: (&str, MetricKind), b: (&str, MetricKind)) -> bool {
    let taken = names_taken(b.0, b.1);
    names_taken(a.0, a.1).iter().any(|n| taken.contains(n))
}

impl PostgresConfig {
    /// A target from a connection string alone, as `--postgres.dsn` gives.
    pub fn from_dsn(name: String, dsn: Secret) -> Self {
        Self {
            name,
            dsn: Some(dsn),
            dsn_file: None,
            databases: Vec::new(),
            ca_file: None,
            connect_timeout: defaults::connect_timeout(),
            statement_timeout: defaults::statement_timeout(),
            lock_timeout: defaults::lock_timeout(),
            size_interval: defaults::size_interval(),
            max_databases: defaults::max_databases(),
            max_clients: defaults::max_clients(),
            top_tables: defaults::top_tables(),
            top_statements: defaults::top_statements(),
            top_statements_by_mean: defaults::top_statements_by_mean(),
            statement_text_length: 0,
            max_replication: defaults::max_replication(),
            queries: Vec::new(),
        }
    }

    /// The connection string, from `dsn` or `dsn_file`.
    pub fn dsn(&self) -> Result<Secret, String> {
        secret_setting("dsn", self.dsn.clone(), self.dsn_file.clone())?
            .ok_or_else(|| "set dsn or dsn_file".to_owned())
    }

    /// Checks what the types cannot; the key is relative to this target's entry.
    pub fn validate(&self) -> Result<(), Problem> {
        let problem = |key: &str, message: String| Err((key.to_owned(), message));
        mcpwatch_core::config::check_target_name(&self.name).map_err(|m| ("name".to_owned(), m))?;
        if let Err(message) = self.dsn() {
            return problem("dsn", message);
        }
        if let Err(e) = mcpwatch_pgconn::parse(&self.dsn().unwrap_or_else(|_| Secret::new(""))) {
            return problem(
                if self.dsn.is_some() {
                    "dsn"
                } else {
                    "dsn_file"
                },
                e.to_string(),
            );
        }
        // Which query and value made each metric name: two must not make the same one, nor
        // one of the collector's own, or their series could be written twice in a scrape.
        let mut made: Vec<(String, MetricKind, usize)> = Vec::new();
        for (i, query) in self.queries.iter().enumerate() {
            let key = |k: &str| format!("queries[{i}].{k}");
            if !is_valid_metric_name(&query.metric) {
                return problem(
                    &key("metric"),
                    format!("{:?} is not a valid metric name", query.metric),
                );
            }
            if query.values.is_empty() {
                return problem(&key("values"), "name at least one value column".into());
            }
            for (j, value) in query.values.iter().enumerate() {
                let at = format!("queries[{i}].values[{j}]");
                let name = query.metric_name(value);
                let kind = query.metric_kind();
                if !is_valid_metric_name(&name) {
                    return problem(&at, format!("{value:?} does not make a valid metric name"));
                }
                let own = crate::METRIC_NAMES
                    .iter()
                    .find(|own| clash((&name, kind), (own, own_kind(own))));
                if let Some(own) = own {
                    let why = if **own == name {
                        format!("makes {name}, which is one of the collector's own metrics")
                    } else {
                        format!(
                            "makes {name}, which clashes with {own}, one of the collector's \
                             own metrics (OpenMetrics names a counter's family without \
                             _total and its creation time with _created, an info's family \
                             without _info)"
                        )
                    };
                    return problem(
                        &at,
                        format!("{why}: give the query's metric a prefix of your own"),
                    );
                }
                let earlier = made
                    .iter()
                    .find(|(other, other_kind, _)| clash((&name, kind), (other, *other_kind)));
                if let Some((other_name, _, other)) = earlier {
                    let why = if *other_name == name {
                        format!("makes {name}, which queries[{other}] makes too")
                    } else {
                        format!("makes {name}, which clashes with {other_name} of queries[{other}]")
                    };
                    return problem(
                        &at,
                        format!(
                            "{why}: name the metrics apart, or return both from one query \
                             with a label that tells them apart"
                        ),
                    );
                }
                made.push((name, kind, i));
            }
            for (j, label) in query.labels.iter().enumerate() {
                if !is_valid_label_name(label) || label == "target" {
                    return problem(
                        &format!("queries[{i}].labels[{j}]"),
                        format!("{label:?} is not a usable label name"),
                    );
                }
                if query.labels[..j].contains(label) {
                    return problem(
                        &format!("queries[{i}].labels[{j}]"),
                        format!("{label:?} is listed twice"),
                    );
                }
            }
            if query.sql.trim().is_empty() {
                return problem(&key("sql"), "must not be empty".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn parse(text: &str) -> PostgresConfig {
        parse_yaml(text, Path::new("c.yml")).expect("valid")
    }

    #[test]
    fn defaults_and_custom_queries() {
        let c = parse(
            "name: main\ndsn: postgresql://monitor:pw@db:5432/app\nqueries:\n  - metric: app_jobs\n    \
             sql: SELECT queue, count(*) AS waiting FROM jobs GROUP BY queue\n    labels: [queue]\n    \
             values: [waiting]\n  - metric: app_events\n    type: counter\n    sql: SELECT 1 AS n\n    \
             values: [n]\n",
        );
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.top_tables, 20);
        assert_eq!(c.max_clients, 20);
        assert_eq!((c.top_statements, c.top_statements_by_mean), (20, 10));
        assert!(c.validate().is_ok());
        assert_eq!(c.queries[0].metric_name("waiting"), "app_jobs_waiting");
        assert_eq!(c.queries[1].metric_name("n"), "app_events_n_total");
        assert!(!format!("{c:?}").contains("pw@"), "the DSN never prints");
    }

    #[test]
    fn problems_name_their_key() {
        let c = parse("name: main\n");
        assert_eq!(c.validate().expect_err("no dsn").0, "dsn");
        let c = parse(
            "name: m\ndsn: postgresql://db/app\nqueries:\n  - metric: ok\n    sql: SELECT 1\n    \
             labels: [target]\n    values: [x]\n",
        );
        assert_eq!(
            c.validate().expect_err("target label").0,
            "queries[0].labels[0]"
        );
        let c = parse("name: m\ndsn: 'host=db sslmode=sideways'\n");
        assert_eq!(c.validate().expect_err("bad sslmode").0, "dsn");
    }

    /// The error of a target whose only query is `query` (YAML, indented as an item).
    fn query_problem(query: &str) -> (String, String) {
        parse(&format!(
            "name: m\ndsn: postgresql://db/app\nqueries:\n  - {query}\n"
        ))
        .validate()
        .expect_err(query)
    }

    #[test]
    fn a_custom_metric_may_not_take_a_name_of_the_collectors() {
        // As postgres_exporter's stock queries.yaml has it, and a port of pg_stat_database.
        let (key, message) = query_problem(
            "{metric: pg_postmaster, sql: \"SELECT extract(epoch FROM \
             pg_postmaster_start_time()) AS start_time_seconds\", values: [start_time_seconds]}",
        );
        assert_eq!(key, "queries[0].values[0]");
        assert_eq!(
            message,
            "makes pg_postmaster_start_time_seconds, which is one of the collector's own \
             metrics: give the query's metric a prefix of your own"
        );
        let (key, message) = query_problem(
            "{metric: pg_stat_database, sql: SELECT 1, labels: [datname], \
             values: [numbackends, xact_commit]}",
        );
        assert_eq!(key, "queries[0].values[0]");
        assert!(
            message.starts_with(
                "makes pg_stat_database_numbackends, which is one of the collector's own metrics"
            ),
            "{message}"
        );
        // A counter gets _total: the collector's counter exactly.
        let (key, message) = query_problem(
            "{metric: pg_stat_database, type: counter, sql: SELECT 1, labels: [datname], \
             values: [deadlocks]}",
        );
        assert_eq!(key, "queries[0].values[0]");
        assert!(
            message.starts_with(
                "makes pg_stat_database_deadlocks_total, which is one of the collector's own \
                 metrics"
            ),
            "{message}"
        );
        // Names that differ from one of the collector's only by a suffix an exposition
        // format adds or takes away: a counter's family without _total (and its _created
        // sample), an info's without _info.
        for (query, name, own) in [
            (
                "{metric: pg_stat_database, sql: SELECT 1, values: [deadlocks]}",
                "pg_stat_database_deadlocks",
                "pg_stat_database_deadlocks_total",
            ),
            (
                "{metric: pg_stat_database, sql: SELECT 1, values: [deadlocks_created]}",
                "pg_stat_database_deadlocks_created",
                "pg_stat_database_deadlocks_total",
            ),
            (
                "{metric: pg, type: counter, sql: SELECT 1, values: [up]}",
                "pg_up_total",
                "pg_up",
            ),
            (
                "{metric: pg, sql: SELECT 1, values: [server]}",
                "pg_server",
                "pg_server_info",
            ),
        ] {
            let (key, message) = query_problem(query);
            assert_eq!(key, "queries[0].values[0]", "{query}");
            assert!(
                message.starts_with(&format!(
                    "makes {name}, which clashes with {own}, one of the collector's own metrics"
                )),
                "{query}: {message}"
            );
        }
        // Near names that clash with nothing are fine.
        for query in [
            "{metric: pg_stat_database, sql: SELECT 1, values: [numbackends_max]}",
            "{metric: pg, sql: SELECT 1, values: [up_total]}",
            "{metric: app, type: counter, sql: SELECT 1, values: [up]}",
        ] {
            let c = parse(&format!(
                "name: m\ndsn: postgresql://db/app\nqueries:\n  - {query}\n"
            ));
            assert_eq!(c.validate(), Ok(()), "{query}");
        }
    }

    #[test]
    fn no_two_queries_make_one_series() {
        let c = parse(
            "name: m\ndsn: postgresql://db/app\nqueries:\n  - metric: jobs\n    sql: SELECT 1 AS n\n    \
             values: [n]\n  - metric: jobs\n    database: other\n    sql: SELECT 2 AS n\n    \
             values: [n]\n",
        );
        let (key, message) = c.validate().expect_err("same metric twice");
        assert_eq!(key, "queries[1].values[0]");
        assert!(
            message.contains("jobs_n, which queries[0] makes too"),
            "{message}"
        );
        let c = parse(
            "name: m\ndsn: postgresql://db/app\nqueries:\n  - metric: jobs\n    sql: SELECT 1 AS n\n    \
             labels: [q, q]\n    values: [n]\n",
        );
        assert_eq!(
            c.validate().expect_err("label twice").0,
            "queries[0].labels[1]"
        );
        // A gauge jobs_n and a counter jobs_n_total are one family in OpenMetrics.
        let c = parse(
            "name: m\ndsn: postgresql://db/app\nqueries:\n  - metric: jobs\n    sql: SELECT 1 AS n\n    \
             values: [n]\n  - metric: jobs\n    type: counter\n    sql: SELECT 2 AS n\n    \
             values: [n]\n",
        );
        let (key, message) = c.validate().expect_err("one family twice");
        assert_eq!(key, "queries[1].values[0]");
        assert!(
            message.starts_with("makes jobs_n_total, which clashes with jobs_n of queries[0]"),
            "{message}"
        );
    }
}
