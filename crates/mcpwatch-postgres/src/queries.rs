//! The statements run on every scrape, written for the server's version (PostgreSQL 12 to
//! 17). Counts are cast to `int8`, times and sizes to `float8`, names to `text`, so that the
//! readers need one type per kind of column.

/// Statements prepared on the target's main connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MainQuery {
    Server,
    Activity,
    Locks,
    Databases,
    Replication,
    Slots,
    Sizes,
}

impl MainQuery {
    pub(crate) const ALL: [MainQuery; 7] = [
        MainQuery::Server,
        MainQuery::Activity,
        MainQuery::Locks,
        MainQuery::Databases,
        MainQuery::Replication,
        MainQuery::Slots,
        MainQuery::Sizes,
    ];

    /// What the statement reads, for log lines.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MainQuery::Server => "server, archiver and checkpointer",
            MainQuery::Activity => "pg_stat_activity",
            MainQuery::Locks => "pg_locks",
            MainQuery::Databases => "pg_stat_database",
            MainQuery::Replication => "pg_stat_replication",
            MainQuery::Slots => "pg_replication_slots",
            MainQuery::Sizes => "database sizes",
        }
    }

    /// The SQL for a server of `version` (`server_version_num`). Every statement but
    /// Server takes a limit: `max_databases` or `max_replication`; Activity takes
    /// `max_databases`, then `max_clients`.
    pub(crate) fn sql(self, version: u32) -> String {
        match self {
            // One row: the server, then pg_stat_archiver (from column 8), then the
            // checkpointer and bgwriter (from column 12; PostgreSQL 17 moved the
            // checkpointer's counters out of pg_stat_bgwriter), then whether the role sees
            // every session and statement (column 21), whether it is a member that could
            // (22), and its name (23), read on every scrape so that a GRANT or REVOKE shows
            // at once.
            MainQuery::Server => format!(
                "SELECT current_setting('server_version')::text, \
                 current_setting('server_version_num')::int8, \
                 extract(epoch FROM pg_postmaster_start_time())::float8, \
                 pg_is_in_recovery(), \
                 current_setting('max_connections')::int8, \
                 current_setting('superuser_reserved_connections')::int8, \
                 {reserved}::int8, \
                 CASE WHEN pg_is_in_recovery() \
                   THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) \
                 END::float8, \
                 a.archived_count::int8, a.failed_count::int8, \
                 extract(epoch FROM a.last_archived_time)::float8, \
                 extract(epoch FROM a.last_failed_time)::float8, \
                 {checkpointer}, \
                 {READ_ALL_STATS}, {READ_ALL_STATS_MEMBER}, quote_ident(current_user)::text \
                 FROM pg_stat_archiver a, pg_stat_bgwriter b{checkpointer_view}",
                reserved = if version >= 160_000 {
                    "current_setting('reserved_connections')"
                } else {
                    "0"
                },
                checkpointer = if version >= 170_000 {
                    "c.num_timed::int8, c.num_requested::int8, c.write_time::float8, \
                     c.sync_time::float8, c.buffers_written::int8, b.buffers_clean::int8, \
                     b.maxwritten_clean::int8, NULL::int8, b.buffers_alloc::int8"
                } else {
                    "b.checkpoints_timed::int8, b.checkpoints_req::int8, \
                     b.checkpoint_write_time::float8, b.checkpoint_sync_time::float8, \
                     b.buffers_checkpoint::int8, b.buffers_clean::int8, \
                     b.maxwritten_clean::int8, b.buffers_backend::int8, b.buffers_alloc::int8"
                },
                checkpointer_view = if version >= 170_000 {
                    ", pg_stat_checkpointer c"
                } else {
                    ""
                }
            ),
            // Client backends only: the connections an application's pool competes for. A
            // role without pg_read_all_stats is not shown another role's backend_type or
            // state, only its database and user: those sessions count too, with state
            // "unknown" (background processes have no user or database). One
            // snapshot of pg_stat_activity, grouped two ways: rows with a 0 in column 8
            // count connections by database, client, state and wait event; rows with a 1
            // are per-database totals with the oldest transactions and lock waits (the
            // scrape's own session left out).
            // The databases ($1) and the (user, application_name) pairs ($2) with the most
            // connections keep their names; the rest are counted as "(other)", so that a
            // cluster of many databases or clients stays bounded. Labels are grouped after
            // folding: one series per label set, and the counts add up to every connection.
            MainQuery::Activity => "WITH a AS (SELECT *, coalesce(usename::text, '') AS usr, \
                   coalesce(application_name, '') AS app FROM pg_stat_activity \
                   WHERE backend_type = 'client backend' OR (backend_type IS NULL \
                     AND usesysid IS NOT NULL AND datid IS NOT NULL)), \
                 top AS (SELECT datname FROM a GROUP BY datname \
                   ORDER BY count(*) DESC, datname LIMIT $1), \
                 clients AS (SELECT usr, app FROM a GROUP BY usr, app \
                   ORDER BY count(*) DESC, usr, app LIMIT $2), \
                 named AS (SELECT CASE WHEN a.datname IN (SELECT datname FROM top) \
                   THEN coalesce(a.datname, '') ELSE '(other)' END AS db, \
                   coalesce(c.usr, '(other)') AS client_user, \
                   coalesce(c.app, '(other)') AS client_app, a.* \
                   FROM a LEFT JOIN clients c ON c.usr = a.usr AND c.app = a.app) \
                 SELECT db::text, coalesce(state, 'unknown')::text, \
                 coalesce(wait_event_type, '')::text, coalesce(wait_event, '')::text, \
                 count(*)::int8, \
                 coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)) \
                   FILTER (WHERE pid <> pg_backend_pid()), 0)::float8, \
                 coalesce(max(extract(epoch FROM clock_timestamp() - state_change)) FILTER \
                   (WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')), \
                   0)::float8, \
                 count(*) FILTER (WHERE wait_event_type = 'Lock')::int8, \
                 GROUPING(state, wait_event_type, wait_event)::int4, \
                 client_user::text, client_app::text \
                 FROM named \
                 GROUP BY GROUPING SETS \
                   ((db, client_user, client_app, state, wait_event_type, wait_event), (db))"
                .to_owned(),
            MainQuery::Locks => "WITH l AS (SELECT coalesce(d.datname, '') AS datname, \
                   l.mode, l.granted FROM pg_locks l \
                   LEFT JOIN pg_database d ON d.oid = l.database), \
                 top AS (SELECT datname FROM l GROUP BY datname \
                   ORDER BY count(*) DESC, datname LIMIT $1) \
                 SELECT CASE WHEN datname IN (SELECT datname FROM top) THEN datname \
                   ELSE '(other)' END::text, mode::text, count(*)::int8, \
                 count(*) FILTER (WHERE NOT granted)::int8 \
                 FROM l GROUP BY 1, 2"
                .to_owned(),
            MainQuery::Databases => "SELECT datname::text, numbackends::int8, \
                 xact_commit::int8, xact_rollback::int8, blks_read::int8, blks_hit::int8, \
                 tup_returned::int8, tup_fetched::int8, tup_inserted::int8, tup_updated::int8, \
                 tup_deleted::int8, conflicts::int8, temp_files::int8, temp_bytes::int8, \
                 deadlocks::int8 \
                 FROM pg_stat_database \
                 WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1') \
                 ORDER BY datname LIMIT $1"
                .to_owned(),
            // Sizes are read from the files of each database, which is slow on large ones:
            // this runs every `size_interval`, not every scrape.
            MainQuery::Sizes => "SELECT datname::text, pg_database_size(datid)::int8 \
                 FROM pg_stat_database \
                 WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1') \
                 ORDER BY datname LIMIT $1"
                .to_owned(),
            // Replicas sharing a name and an address (behind one NAT, on one host) are
            // reported once, by the one furthest behind.
            MainQuery::Replication => "SELECT coalesce(application_name, '')::text, \
                 coalesce(client_addr::text, 'local'), \
                 coalesce(max(extract(epoch FROM replay_lag)), 0)::float8, \
                 CASE WHEN pg_is_in_recovery() THEN NULL \
                   ELSE max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)) END::float8 \
                 FROM pg_stat_replication GROUP BY 1, 2 ORDER BY 1, 2 LIMIT $1"
                .to_owned(),
            MainQuery::Slots => "SELECT slot_name::text, slot_type::text, active, \
                 pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
                   ELSE pg_current_wal_lsn() END, restart_lsn)::float8 \
                 FROM pg_replication_slots ORDER BY slot_name LIMIT $1"
                .to_owned(),
        }
    }
}

/// The top statements by total time and by mean time, summed over top-level and nested rows;
/// a statement in both sets is one row, which says which set(s) picked it. `exec_time`:
/// the extension is 1.8 or newer (`total_exec_time`, not `total_time`); the mean is total
/// over calls for both, as `mean_exec_time` is. Without text, `pg_stat_statements(false)`
/// spares the server reading the query text file, large on busy servers. Parameters: the
/// two limits (by total, by mean), then (with text) the text length.
pub(crate) fn statements_sql(exec_time: bool, text: bool) -> String {
    let time = if exec_time {
        "total_exec_time"
    } else {
        "total_time"
    };
    // Utility statements are kept verbatim before PostgreSQL 16: an ALTER ROLE ... PASSWORD
    // must not reach a label.
    let (source, query, text) = if text {
        (
            "pg_stat_statements(true)",
            "min(query)",
            "CASE WHEN min(r.query) ~* 'password' THEN '<redacted: mentions a password>' \
             ELSE left(min(r.query), $3::int4) END",
        )
    } else {
        ("pg_stat_statements(false)", "''", "''")
    };
    // Both top sets are ranked in one pass over one read of the view; only they are
    // joined to their names. Rows are summed again by name: the rows of dropped databases
    // or roles have none, and would otherwise give the same labels twice.
    format!(
        "SELECT r.queryid::text, coalesce(d.datname, '')::text, \
         coalesce(u.rolname, '')::text, sum(r.calls)::int8, sum(r.seconds)::float8, \
         sum(r.rows)::int8, {text}::text, bool_or(r.by_total <= $1), \
         bool_or(r.calls > 0 AND r.by_mean <= $2) \
         FROM (SELECT g.*, row_number() OVER (ORDER BY seconds DESC) AS by_total, \
             row_number() OVER (ORDER BY seconds / nullif(calls, 0) DESC NULLS LAST) \
               AS by_mean \
           FROM (SELECT queryid, dbid, userid, sum(calls)::int8 AS calls, \
               (sum({time}) / 1000)::float8 AS seconds, sum(rows)::int8 AS rows, \
               {query}::text AS query \
             FROM {source} WHERE queryid IS NOT NULL GROUP BY queryid, dbid, userid) g) r \
         LEFT JOIN pg_database d ON d.oid = r.dbid \
         LEFT JOIN pg_roles u ON u.oid = r.userid \
         WHERE r.by_total <= $1 OR (r.calls > 0 AND r.by_mean <= $2) \
         GROUP BY 1, 2, 3 ORDER BY 5 DESC"
    )
}

/// Whether pg_stat_statements 1.8 or newer (with `total_exec_time`) is `version`.
pub(crate) fn has_exec_time(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 8)
}

/// Per database: the tables with the most dead tuples. The statistics functions are called
/// directly, and only for what is reported: pg_stat_user_tables computes some 25 columns
/// for every table before the top N are kept.
pub(crate) const TABLES: &str = "SELECT current_database()::text, t.nspname::text, \
     t.relname::text, pg_stat_get_live_tuples(t.oid)::int8, t.dead::int8, \
     pg_stat_get_numscans(t.oid)::int8, \
     coalesce((SELECT sum(pg_stat_get_numscans(i.indexrelid)) FROM pg_index i \
       WHERE i.indrelid = t.oid), 0)::int8, \
     extract(epoch FROM clock_timestamp() - pg_stat_get_last_autovacuum_time(t.oid))::float8, \
     extract(epoch FROM clock_timestamp() - pg_stat_get_last_autoanalyze_time(t.oid))::float8 \
     FROM (SELECT c.oid, n.nspname, c.relname, pg_stat_get_dead_tuples(c.oid) AS dead \
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
       WHERE c.relkind IN ('r', 'm', 'p') \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname !~ '^pg_toast' \
       ORDER BY 4 DESC, 2, 3 LIMIT $1) t \
     ORDER BY t.dead DESC, t.nspname, t.relname";

/// Whether the session's role has the privileges of `pg_read_all_stats` (a member of
/// `pg_monitor` that inherits, or a superuser). Without them `pg_stat_activity` hides the
/// state, times and type of other roles' sessions, and `pg_stat_statements` their
/// statements.
pub(crate) const READ_ALL_STATS: &str = "pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')";

/// Whether the session's role is a member of `pg_read_all_stats`, whether it inherits its
/// privileges or not: a member without them is one that does not inherit.
pub(crate) const READ_ALL_STATS_MEMBER: &str =
    "pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')";

/// The version of pg_stat_statements installed in the connected database, if any.
pub(crate) const STATEMENTS_VERSION: &str =
    "SELECT extversion::text FROM pg_extension WHERE extname = 'pg_stat_statements'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_their_columns() {
        assert!(
            MainQuery::Server
                .sql(170_000)
                .contains("pg_stat_checkpointer c")
        );
        assert!(MainQuery::Server.sql(150_000).contains(READ_ALL_STATS));
        assert!(
            MainQuery::Server
                .sql(150_000)
                .contains(READ_ALL_STATS_MEMBER)
        );
        assert!(
            !MainQuery::Server
                .sql(160_004)
                .contains("pg_stat_checkpointer")
        );
        assert!(
            MainQuery::Server
                .sql(160_000)
                .contains("reserved_connections')")
        );
        assert!(
            !MainQuery::Server
                .sql(150_000)
                .contains("'reserved_connections'")
        );
        assert!(statements_sql(false, false).contains("sum(total_time)"));
        assert!(statements_sql(true, false).contains("sum(total_exec_time)"));
        assert!(statements_sql(true, false).contains("pg_stat_statements(false)"));
        let with_text = statements_sql(true, true);
        assert!(with_text.contains("$3") && with_text.contains("password"));
        assert!(!statements_sql(true, false).contains("$3"));
        assert!(MainQuery::Activity.sql(150_000).contains("LIMIT $2"));
    }

    #[test]
    fn extension_versions() {
        assert!(!has_exec_time("1.7"));
        assert!(has_exec_time("1.8"));
        assert!(has_exec_time("1.10"));
        assert!(has_exec_time("2.0"));
        assert!(!has_exec_time("garbage"));
    }
}
