//! Running a scrape's statements and turning their rows into metric families.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use mcpwatch_core::{CollectError, MetricFamily, MetricSink};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::config::PostgresConfig;
use crate::connection::{Session, describe};
use crate::privileges::Visibility;
use crate::queries::MainQuery;

/// Runs one prepared server-wide statement with its limit.
pub(crate) async fn run(
    session: &Session,
    query: MainQuery,
    config: &PostgresConfig,
) -> Option<Result<Vec<Row>, tokio_postgres::Error>> {
    let statement = session.main.get(&query)?;
    let databases = i64::from(config.max_databases);
    let limit = match query {
        MainQuery::Server => return Some(session.client.query(statement, &[]).await),
        MainQuery::Activity => {
            let clients = i64::from(config.max_clients);
            return Some(
                session
                    .client
                    .query(statement, &[&databases, &clients])
                    .await,
            );
        }
        MainQuery::Replication | MainQuery::Slots => i64::from(config.max_replication),
        MainQuery::Locks | MainQuery::Databases | MainQuery::Sizes => databases,
    };
    Some(session.client.query(statement, &[&limit]).await)
}

/// Runs the pg_stat_statements statement.
pub(crate) async fn run_statements(
    session: &Session,
    statement: &tokio_postgres::Statement,
    config: &PostgresConfig,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let by_total = i64::from(config.top_statements);
    let by_mean = i64::from(config.top_statements_by_mean);
    if config.statement_text_length > 0 {
        let length = i32::try_from(config.statement_text_length).unwrap_or(i32::MAX);
        session
            .client
            .query(statement, &[&by_total, &by_mean, &length])
            .await
    } else {
        session
            .client
            .query(statement, &[&by_total, &by_mean])
            .await
    }
}

/// Reads column `i`, naming the statement when the type is not the expected one.
fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize, what: &str) -> Result<T, CollectError> {
    row.try_get(i)
        .map_err(|e| CollectError::msg(format_args!("{what}: column {i}: {}", describe(&e))))
}

fn count(value: i64) -> f64 {
    value as f64
}

/// Writes the families of one server-wide statement (the server's and the sizes are the
/// caller's: see [`write_server`]).
pub(crate) fn write(
    query: MainQuery,
    rows: &Result<Vec<Row>, tokio_postgres::Error>,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    let rows = rows
        .as_ref()
        .map_err(|e| CollectError::msg(format_args!("{}: {}", query.name(), describe(e))))?;
    match query {
        MainQuery::Activity => write_activity(rows, sink),
        MainQuery::Locks => write_locks(rows, sink),
        MainQuery::Databases => write_databases(rows, sink),
        MainQuery::Replication => write_replication(rows, sink),
        MainQuery::Slots => write_slots(rows, sink),
        MainQuery::Server | MainQuery::Sizes => Ok(()),
    }
}

/// `pg_stat_statements_available`: said either way, so that "no statements" is no gap.
pub(crate) fn write_statements_available(available: bool, sink: &mut MetricSink) {
    sink.gauge(
        "pg_stat_statements_available",
        "Whether pg_stat_statements is installed and readable.",
    )
    .add(&[], if available { 1.0 } else { 0.0 });
}

/// Writes the families of the server statement; returns what it says of the monitoring
/// role's privileges.
pub(crate) fn write_server(
    rows: &Result<Vec<Row>, tokio_postgres::Error>,
    sink: &mut MetricSink,
) -> Result<Option<Visibility>, CollectError> {
    let what = MainQuery::Server.name();
    let rows = rows
        .as_ref()
        .map_err(|e| CollectError::msg(format_args!("{what}: {}", describe(e))))?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    write_server_row(row, sink)?;
    write_archiver(row, 8, sink)?;
    write_checkpointer(row, 12, sink)?;
    let seen = Visibility {
        reads_all: get(row, 21, what)?,
        member: get(row, 22, what)?,
        role: get(row, 23, what)?,
        version: u32::try_from(get::<i64>(row, 1, what)?).unwrap_or(0),
    };
    sink.gauge(
        "pg_monitor_privileges",
        "Whether the monitoring role sees every session and statement (1: it has the \
         privileges of pg_read_all_stats, through pg_monitor or as a superuser) or only its \
         own (0).",
    )
    .add(&[], if seen.reads_all { 1.0 } else { 0.0 });
    Ok(Some(seen))
}

fn write_server_row(row: &Row, sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "server";
    let version: String = get(row, 0, what)?;
    let version_num: i64 = get(row, 1, what)?;
    sink.info(
        "pg_server_info",
        "Version of the PostgreSQL server, always 1.",
    )
    .add(
        &[
            ("version", &version),
            ("version_num", &version_num.to_string()),
        ],
        1.0,
    );
    sink.gauge(
        "pg_postmaster_start_time_seconds",
        "When the server started, in seconds since the epoch.",
    )
    .add(&[], get::<f64>(row, 2, what)?);
    let in_recovery: bool = get(row, 3, what)?;
    sink.gauge(
        "pg_in_recovery",
        "Whether the server is a standby in recovery (1) or a primary (0).",
    )
    .add(&[], if in_recovery { 1.0 } else { 0.0 });
    sink.gauge(
        "pg_settings_max_connections",
        "The max_connections setting.",
    )
    .add(&[], count(get(row, 4, what)?));
    sink.gauge(
        "pg_settings_superuser_reserved_connections",
        "Connections reserved for superusers.",
    )
    .add(&[], count(get(row, 5, what)?));
    sink.gauge(
        "pg_settings_reserved_connections",
        "Connections reserved for roles with pg_use_reserved_connections (PostgreSQL 16+; \
         0 before).",
    )
    .add(&[], count(get(row, 6, what)?));
    if let Some(delay) = get::<Option<f64>>(row, 7, what)? {
        sink.gauge(
            "pg_replication_replay_delay_seconds",
            "On a standby: time since the last replayed transaction was committed on the \
             primary.",
        )
        .add(&[], delay);
    }
    Ok(())
}

fn write_activity(rows: &[Row], sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "pg_stat_activity";
    let mut connections = MetricFamily::gauge(
        "pg_stat_activity_connections",
        "Client connections by database, user, application_name, state and wait event.",
    );
    let mut oldest = MetricFamily::gauge(
        "pg_oldest_transaction_seconds",
        "Age of the oldest open transaction, by database.",
    );
    let mut idle = MetricFamily::gauge(
        "pg_oldest_idle_in_transaction_seconds",
        "How long the oldest idle-in-transaction session has been idle, by database.",
    );
    let mut waiting = MetricFamily::gauge(
        "pg_sessions_waiting_on_locks",
        "Sessions waiting for a lock, by database.",
    );
    for row in rows {
        let datname: String = get(row, 0, what)?;
        let per_database = get::<i32>(row, 8, what)? != 0;
        if per_database {
            let labels = [("datname", datname.as_str())];
            oldest.add(&labels, get(row, 5, what)?);
            idle.add(&labels, get(row, 6, what)?);
            waiting.add(&labels, count(get(row, 7, what)?));
        } else {
            let (state, wait_type, wait): (String, String, String) =
                (get(row, 1, what)?, get(row, 2, what)?, get(row, 3, what)?);
            let (user, application): (String, String) = (get(row, 9, what)?, get(row, 10, what)?);
            connections.add(
                &[
                    ("datname", &datname),
                    ("user", &user),
                    ("application_name", &application),
                    ("state", &state),
                    ("wait_event_type", &wait_type),
                    ("wait_event", &wait),
                ],
                count(get(row, 4, what)?),
            );
        }
    }
    for family in [connections, oldest, idle, waiting] {
        sink.family(family);
    }
    Ok(())
}

fn write_locks(rows: &[Row], sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "pg_locks";
    let mut held = MetricFamily::gauge("pg_locks", "Locks held or awaited, by database and mode.");
    let mut waiting = MetricFamily::gauge(
        "pg_locks_waiting",
        "Locks awaited (not granted), by database and mode.",
    );
    for row in rows {
        let (datname, mode): (String, String) = (get(row, 0, what)?, get(row, 1, what)?);
        let labels = [("datname", datname.as_str()), ("mode", mode.as_str())];
        held.add(&labels, count(get(row, 2, what)?));
        waiting.add(&labels, count(get(row, 3, what)?));
    }
    sink.family(held);
    sink.family(waiting);
    Ok(())
}

fn write_databases(rows: &[Row], sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "pg_stat_database";
    let mut backends = MetricFamily::gauge(
        "pg_stat_database_numbackends",
        "Backends connected to the database.",
    );
    const COUNTERS: [(&str, &str); 13] = [
        (
            "pg_stat_database_xact_commit_total",
            "Transactions committed.",
        ),
        (
            "pg_stat_database_xact_rollback_total",
            "Transactions rolled back.",
        ),
        ("pg_stat_database_blks_read_total", "Disk blocks read."),
        (
            "pg_stat_database_blks_hit_total",
            "Disk blocks found in the buffer cache.",
        ),
        (
            "pg_stat_database_tup_returned_total",
            "Rows returned by queries.",
        ),
        (
            "pg_stat_database_tup_fetched_total",
            "Rows fetched by queries.",
        ),
        ("pg_stat_database_tup_inserted_total", "Rows inserted."),
        ("pg_stat_database_tup_updated_total", "Rows updated."),
        ("pg_stat_database_tup_deleted_total", "Rows deleted."),
        (
            "pg_stat_database_conflicts_total",
            "Queries canceled by recovery conflicts.",
        ),
        (
            "pg_stat_database_temp_files_total",
            "Temporary files created by queries.",
        ),
        (
            "pg_stat_database_temp_bytes_total",
            "Bytes written to temporary files.",
        ),
        ("pg_stat_database_deadlocks_total", "Deadlocks detected."),
    ];
    let mut counters: Vec<MetricFamily> = COUNTERS
        .iter()
        .map(|(name, help)| MetricFamily::counter(*name, *help))
        .collect();
    for row in rows {
        let datname: String = get(row, 0, what)?;
        let labels = [("datname", datname.as_str())];
        backends.add(&labels, count(get(row, 1, what)?));
        for (i, family) in counters.iter_mut().enumerate() {
            family.add(&labels, count(get(row, 2 + i, what)?));
        }
    }
    sink.family(backends);
    for family in counters {
        sink.family(family);
    }
    Ok(())
}

/// Database sizes from their statement's rows.
pub(crate) fn read_sizes(rows: &[Row]) -> Result<Vec<(String, f64)>, CollectError> {
    rows.iter()
        .map(|row| {
            Ok((
                get(row, 0, "database sizes")?,
                count(get(row, 1, "database sizes")?),
            ))
        })
        .collect()
}

/// Writes `pg_database_size_bytes`.
pub(crate) fn write_sizes(sizes: &[(String, f64)], sink: &mut MetricSink) {
    let family = sink.gauge(
        "pg_database_size_bytes",
        "Disk space used by the database (read every size_interval).",
    );
    for (datname, bytes) in sizes {
        family.add(&[("datname", datname)], *bytes);
    }
}

fn write_replication(rows: &[Row], sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "pg_stat_replication";
    let mut seconds = MetricFamily::gauge(
        "pg_replication_lag_seconds",
        "Replay lag of each replica, in seconds (as pg_stat_replication.replay_lag).",
    );
    let mut bytes = MetricFamily::gauge(
        "pg_replication_lag_bytes",
        "WAL not yet replayed by each replica, in bytes.",
    );
    for row in rows {
        let (name, addr): (String, String) = (get(row, 0, what)?, get(row, 1, what)?);
        let labels = [
            ("application_name", name.as_str()),
            ("client_addr", addr.as_str()),
        ];
        seconds.add(&labels, get(row, 2, what)?);
        if let Some(lag) = get::<Option<f64>>(row, 3, what)? {
            bytes.add(&labels, lag);
        }
    }
    sink.family(seconds);
    sink.family(bytes);
    Ok(())
}

fn write_slots(rows: &[Row], sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "pg_replication_slots";
    let mut active = MetricFamily::gauge(
        "pg_replication_slot_active",
        "Whether a consumer is connected to the replication slot.",
    );
    let mut retained = MetricFamily::gauge(
        "pg_replication_slot_retained_wal_bytes",
        "WAL kept on disk for the replication slot, in bytes.",
    );
    for row in rows {
        let (slot, kind): (String, String) = (get(row, 0, what)?, get(row, 1, what)?);
        let labels = [("slot_name", slot.as_str()), ("slot_type", kind.as_str())];
        let is_active: bool = get(row, 2, what)?;
        active.add(&labels, if is_active { 1.0 } else { 0.0 });
        if let Some(bytes) = get::<Option<f64>>(row, 3, what)? {
            retained.add(&labels, bytes);
        }
    }
    sink.family(active);
    sink.family(retained);
    Ok(())
}

fn write_archiver(row: &Row, at: usize, sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "pg_stat_archiver";
    sink.counter(
        "pg_stat_archiver_archived_total",
        "WAL files archived successfully.",
    )
    .add(&[], count(get(row, at, what)?));
    sink.counter(
        "pg_stat_archiver_failed_total",
        "Failed attempts to archive WAL files.",
    )
    .add(&[], count(get(row, at + 1, what)?));
    if let Some(t) = get::<Option<f64>>(row, at + 2, what)? {
        sink.gauge(
            "pg_stat_archiver_last_archived_time_seconds",
            "When a WAL file was last archived, in seconds since the epoch.",
        )
        .add(&[], t);
    }
    if let Some(t) = get::<Option<f64>>(row, at + 3, what)? {
        sink.gauge(
            "pg_stat_archiver_last_failed_time_seconds",
            "When archiving last failed, in seconds since the epoch.",
        )
        .add(&[], t);
    }
    Ok(())
}

fn write_checkpointer(row: &Row, at: usize, sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "checkpointer";
    sink.counter(
        "pg_checkpoints_timed_total",
        "Checkpoints started because checkpoint_timeout passed.",
    )
    .add(&[], count(get(row, at, what)?));
    sink.counter(
        "pg_checkpoints_requested_total",
        "Checkpoints requested (by WAL volume, CHECKPOINT, or a backup).",
    )
    .add(&[], count(get(row, at + 1, what)?));
    sink.counter(
        "pg_checkpoint_write_seconds_total",
        "Time checkpoints spent writing files to disk.",
    )
    .add(&[], get::<f64>(row, at + 2, what)? / 1000.0);
    sink.counter(
        "pg_checkpoint_sync_seconds_total",
        "Time checkpoints spent syncing files to disk.",
    )
    .add(&[], get::<f64>(row, at + 3, what)? / 1000.0);
    sink.counter(
        "pg_checkpoint_buffers_written_total",
        "Buffers written by checkpoints.",
    )
    .add(&[], count(get(row, at + 4, what)?));
    sink.counter(
        "pg_bgwriter_buffers_clean_total",
        "Buffers written by the background writer.",
    )
    .add(&[], count(get(row, at + 5, what)?));
    sink.counter(
        "pg_bgwriter_maxwritten_clean_total",
        "Times the background writer stopped because it wrote too many buffers.",
    )
    .add(&[], count(get(row, at + 6, what)?));
    if let Some(backend) = get::<Option<i64>>(row, at + 7, what)? {
        sink.counter(
            "pg_bgwriter_buffers_backend_total",
            "Buffers written directly by backends (PostgreSQL 16 and older).",
        )
        .add(&[], count(backend));
    }
    sink.counter("pg_bgwriter_buffers_alloc_total", "Buffers allocated.")
        .add(&[], count(get(row, at + 8, what)?));
    Ok(())
}

pub(crate) fn write_statements(rows: &[Row], sink: &mut MetricSink) -> Result<(), CollectError> {
    let what = "pg_stat_statements";
    let mut calls = MetricFamily::counter(
        "pg_stat_statements_calls_total",
        "Executions of the statement (top statements by total and by mean time).",
    );
    let mut seconds = MetricFamily::counter(
        "pg_stat_statements_seconds_total",
        "Time spent executing the statement (top statements by total and by mean time).",
    );
    let mut returned = MetricFamily::counter(
        "pg_stat_statements_rows_total",
        "Rows retrieved or affected by the statement (top statements by total and by mean \
         time).",
    );
    let mut selected = MetricFamily::info(
        "pg_stat_statements_selected_info",
        "Which top set a reported statement is in (by total_time, by mean_time), always 1.",
    );
    // One text per queryid, as postgres_exporter does: the rows of a statement run in
    // several databases or by several users share it. The smallest is kept when their
    // first-seen texts differ.
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for row in rows {
        let (queryid, datname, user): (String, String, String) =
            (get(row, 0, what)?, get(row, 1, what)?, get(row, 2, what)?);
        let labels = [
            ("queryid", queryid.as_str()),
            ("datname", datname.as_str()),
            ("user", user.as_str()),
        ];
        calls.add(&labels, count(get(row, 3, what)?));
        seconds.add(&labels, get(row, 4, what)?);
        returned.add(&labels, count(get(row, 5, what)?));
        for (column, by) in [(7, "total_time"), (8, "mean_time")] {
            if get::<bool>(row, column, what)? {
                selected.add(
                    &[
                        ("queryid", queryid.as_str()),
                        ("datname", datname.as_str()),
                        ("user", user.as_str()),
                        ("by", by),
                    ],
                    1.0,
                );
            }
        }
        let text: String = get(row, 6, what)?;
        if !text.is_empty() {
            match texts.entry(queryid) {
                Entry::Vacant(entry) => {
                    entry.insert(text);
                }
                Entry::Occupied(mut entry) => {
                    if text < *entry.get() {
                        entry.insert(text);
                    }
                }
            }
        }
    }
    sink.family(calls);
    sink.family(seconds);
    sink.family(returned);
    sink.family(selected);
    let mut info = MetricFamily::info(
        "pg_stat_statements_query_info",
        "The text of a top statement, cut to statement_text_length, always 1.",
    );
    for (queryid, text) in &texts {
        info.add(&[("queryid", queryid), ("query", text)], 1.0);
    }
    sink.family(info);
    Ok(())
}

/// The per-table families, filled database by database.
pub(crate) struct TableFamilies {
    families: [MetricFamily; 6],
}

impl TableFamilies {
    pub(crate) fn new() -> Self {
        Self {
            families: [
                MetricFamily::gauge(
                    "pg_stat_user_tables_n_live_tup",
                    "Estimated live rows (top tables by dead rows).",
                ),
                MetricFamily::gauge(
                    "pg_stat_user_tables_n_dead_tup",
                    "Estimated dead rows (top tables by dead rows).",
                ),
                MetricFamily::counter(
                    "pg_stat_user_tables_seq_scan_total",
                    "Sequential scans of the table.",
                ),
                MetricFamily::counter(
                    "pg_stat_user_tables_idx_scan_total",
                    "Index scans of the table.",
                ),
                MetricFamily::gauge(
                    "pg_stat_user_tables_last_autovacuum_age_seconds",
                    "Time since autovacuum last processed the table; +Inf when never.",
                ),
                MetricFamily::gauge(
                    "pg_stat_user_tables_last_autoanalyze_age_seconds",
                    "Time since autoanalyze last processed the table; +Inf when never.",
                ),
            ],
        }
    }

    pub(crate) fn add(&mut self, rows: &[Row]) -> Result<(), CollectError> {
        let what = "pg_stat_user_tables";
        for row in rows {
            let (datname, schema, table): (String, String, String) =
                (get(row, 0, what)?, get(row, 1, what)?, get(row, 2, what)?);
            let labels = [
                ("datname", datname.as_str()),
                ("schemaname", schema.as_str()),
                ("relname", table.as_str()),
            ];
            let [live, dead, seq, idx, vacuum, analyze] = &mut self.families;
            live.add(&labels, count(get(row, 3, what)?));
            dead.add(&labels, count(get(row, 4, what)?));
            seq.add(&labels, count(get(row, 5, what)?));
            idx.add(&labels, count(get(row, 6, what)?));
            vacuum.add(
                &labels,
                get::<Option<f64>>(row, 7, what)?.unwrap_or(f64::INFINITY),
            );
            analyze.add(
                &labels,
                get::<Option<f64>>(row, 8, what)?.unwrap_or(f64::INFINITY),
            );
        }
        Ok(())
    }

    pub(crate) fn finish(self, sink: &mut MetricSink) {
        for family in self.families {
            sink.family(family);
        }
    }
}
