//! The PostgreSQL collector against a real server: the metrics move with what the tests do
//! to it, the server going away and coming back, and the password kept out of everything.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::{Scrape, ScrapeEngine};
use mcpwatch_postgres::{PostgresCollector, PostgresConfig};
use mcpwatch_tests::engine::text;
use mcpwatch_tests::ports::{AfterAnswer, answering_port};
use mcpwatch_tests::postgres::{
    MONITOR_USER, PostgresOptions, PostgresServer, wait_for_client_connections,
};
use mcpwatch_tests::tools::promtool_check_metrics;
use mcpwatch_tests::wait_for_async;
use tokio_postgres::NoTls;

const LIMIT: Duration = Duration::from_secs(60);

fn engine(yaml: &str) -> ScrapeEngine {
    let config: PostgresConfig = parse_yaml(yaml, Path::new("test.yml")).expect("config");
    mcpwatch_tests::engine::engine(vec![Arc::new(
        PostgresCollector::new(config).expect("collector"),
    )])
}

/// Scrapes until `check` holds (statistics reach the views asynchronously).
async fn scrape_until(
    engine: &ScrapeEngine,
    what: &str,
    check: impl Fn(&Scrape) -> bool,
) -> std::sync::Arc<Scrape> {
    wait_for_async(what, LIMIT, || async {
        let scrape = mcpwatch_tests::engine::scrape(engine, None).await;
        check(&scrape).then_some(scrape)
    })
    .await
}

#[tokio::test]
async fn database_activity_moves_the_metrics() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    admin
        .batch_execute("CREATE DATABASE app")
        .await
        .expect("create database");
    let app = server.admin("app").await;
    app.batch_execute(
        "CREATE TABLE jobs (id serial PRIMARY KEY, queue text, state text);\
         INSERT INTO jobs (queue, state) SELECT 'q' || (i % 3), 'new' FROM generate_series(1, 300) i;\
         GRANT SELECT ON jobs TO mcpwatch;",
    )
    .await
    .expect("fixture");

    let engine = engine(&format!(
        "name: main\ndsn: '{}'\ndatabases: [postgres, app]\nqueries:\n  - metric: app_jobs\n    \
         help: Jobs by queue.\n    database: app\n    \
         sql: SELECT queue, count(*) AS waiting FROM jobs GROUP BY queue\n    labels: [queue]\n    \
         values: [waiting]\n",
        server.dsn("postgres")
    ));
    let first = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(
        first.value("pg_up", &[("target", "main")]),
        Some(1.0),
        "{}",
        text(&first).await
    );
    assert_eq!(
        first.value(
            "mcpwatch_scrape_collector_success",
            &[("collector", "postgres")]
        ),
        Some(1.0),
        "{:?}",
        engine.status()
    );
    assert!(first.value("pg_probe_duration_seconds", &[]).is_some());
    let info = first.group("pg_server_info").expect("server info");
    let labels = &info.members()[0].samples()[0].labels;
    assert!(
        labels
            .iter()
            .any(|(k, v)| k == "version_num" && v.len() == 6 && v.as_str() >= "120000"),
        "{labels:?}"
    );
    assert_eq!(first.value("pg_settings_max_connections", &[]), Some(40.0));
    assert_eq!(first.value("pg_in_recovery", &[]), Some(0.0));
    assert_eq!(first.value("pg_stat_statements_available", &[]), Some(1.0));
    assert_eq!(
        first.value("app_jobs_waiting", &[("queue", "q0")]),
        Some(100.0)
    );
    let commits = |s: &Scrape| {
        s.value("pg_stat_database_xact_commit_total", &[("datname", "app")])
            .unwrap_or(0.0)
    };
    let before = commits(&first);

    // 20 transactions, and dead rows in jobs.
    for i in 0..20 {
        app.batch_execute(&format!(
            "UPDATE jobs SET state = 'run{i}' WHERE id = {}",
            i + 1
        ))
        .await
        .expect("update");
    }
    app.batch_execute("DELETE FROM jobs WHERE id > 200")
        .await
        .expect("delete");
    let later = scrape_until(&engine, "commits and dead rows to show", |s| {
        commits(s) >= before + 21.0
            && s.value(
                "pg_stat_user_tables_n_dead_tup",
                &[("datname", "app"), ("relname", "jobs")],
            )
            .is_some_and(|dead| dead >= 100.0)
    })
    .await;
    assert!(
        later
            .value("pg_stat_database_tup_deleted_total", &[("datname", "app")])
            .is_some_and(|d| d >= 100.0)
    );
    assert!(
        later
            .value("pg_database_size_bytes", &[("datname", "app")])
            .is_some_and(|b| b > 1e6)
    );
    // Never vacuumed (autovacuum is off in the test server): an infinite age.
    assert_eq!(
        later.value(
            "pg_stat_user_tables_last_autovacuum_age_seconds",
            &[("relname", "jobs")]
        ),
        Some(f64::INFINITY)
    );
    // Ids 3, 6, ..., 198 are left in queue q0.
    assert_eq!(
        later.value("app_jobs_waiting", &[("queue", "q0")]),
        Some(66.0)
    );
    // The statements the test ran show up among the top statements.
    assert!(
        later
            .group("pg_stat_statements_calls_total")
            .is_some_and(|g| g.series() > 0)
    );
    let exposition = text(&later).await;
    assert_eq!(promtool_check_metrics(exposition.as_bytes()), "");
    assert!(!exposition.contains(server.password()));
}

#[tokio::test]
async fn every_family_of_a_full_scrape_is_one_the_collector_lists() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    admin
        .batch_execute("CREATE DATABASE app")
        .await
        .expect("create database");
    admin
        .batch_execute(
            "CREATE TABLE ledger (id int); \
             SELECT pg_create_physical_replication_slot('standby', true);",
        )
        .await
        .expect("fixture");
    let app = server.admin("app").await;
    app.batch_execute(
        "CREATE TABLE jobs (queue text); INSERT INTO jobs VALUES ('a'), ('b'); \
         GRANT SELECT ON jobs TO mcpwatch;",
    )
    .await
    .expect("fixture");
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .expect("version")
        .get(0);
    let engine = engine(&format!(
        "name: db\ndsn: '{}'\ndatabases: [postgres, app]\nstatement_text_length: 100\n\
         queries:\n  - metric: app_jobs\n    database: app\n    \
         sql: SELECT queue, count(*) AS waiting FROM jobs GROUP BY queue\n    \
         labels: [queue]\n    values: [waiting]\n",
        server.dsn("postgres")
    ));
    let scrape = scrape_until(&engine, "statements to show", |s| {
        s.group("pg_stat_statements_query_info").is_some()
    })
    .await;
    assert_eq!(
        scrape.value(
            "mcpwatch_scrape_collector_success",
            &[("collector", "postgres")]
        ),
        Some(1.0),
        "{:?}",
        engine.status()
    );
    let mut written = Vec::new();
    for group in scrape.groups() {
        let name = group.name();
        if name.starts_with("mcpwatch_") || name.starts_with("app_jobs_") {
            continue;
        }
        assert!(
            mcpwatch_postgres::METRIC_NAMES.contains(&name),
            "{name} is written but not in METRIC_NAMES"
        );
        // Config validation reads the type from the name.
        let kind = group.kind();
        assert_eq!(
            kind == mcpwatch_core::metrics::MetricKind::Counter,
            name.ends_with("_total"),
            "{name}"
        );
        assert_eq!(
            kind == mcpwatch_core::metrics::MetricKind::Info,
            name.ends_with("_info"),
            "{name}"
        );
        written.push(name);
    }
    // And the list names nothing else than what only a standby, a replica, WAL archiving
    // or PostgreSQL 16 and older give.
    let mut unwritten: Vec<&str> = mcpwatch_postgres::METRIC_NAMES
        .iter()
        .copied()
        .filter(|n| !written.contains(n))
        .collect();
    unwritten.sort_unstable();
    let mut conditional = vec![
        "pg_replication_lag_bytes",
        "pg_replication_lag_seconds",
        "pg_replication_replay_delay_seconds",
        "pg_stat_archiver_last_archived_time_seconds",
        "pg_stat_archiver_last_failed_time_seconds",
    ];
    if version >= 170_000 {
        conditional.push("pg_bgwriter_buffers_backend_total");
        conditional.sort_unstable();
    }
    assert_eq!(
        unwritten, conditional,
        "listed but not written (left), and what only those conditions write (right)"
    );
}

#[tokio::test]
async fn long_transactions_lock_waits_and_connections() {
    let server = PostgresServer::start(PostgresOptions {
        max_connections: 20,
        ..PostgresOptions::default()
    })
    .await;
    let admin = server.admin("postgres").await;
    admin
        .batch_execute("CREATE TABLE ledger (id int); INSERT INTO ledger VALUES (1);")
        .await
        .expect("fixture");
    let engine = engine(&format!("name: db\ndsn: '{}'\n", server.dsn("postgres")));

    // A transaction that takes a lock and then sits idle; another session waits on it.
    let holder = server.admin("postgres").await;
    holder
        .batch_execute("BEGIN; LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE;")
        .await
        .expect("lock");
    let waiter = server.admin("postgres").await;
    let blocked = tokio::spawn(async move { waiter.batch_execute("SELECT * FROM ledger").await });
    // And connections filling up the server.
    let mut pool = Vec::new();
    for _ in 0..8 {
        pool.push(server.admin("postgres").await);
    }

    let scrape = scrape_until(&engine, "the blocked session to show", |s| {
        s.value("pg_sessions_waiting_on_locks", &[("datname", "postgres")])
            .unwrap_or(0.0)
            >= 1.0
            && s.value(
                "pg_oldest_idle_in_transaction_seconds",
                &[("datname", "postgres")],
            )
            .unwrap_or(0.0)
                > 1.0
    })
    .await;
    assert!(
        scrape
            .value(
                "pg_locks_waiting",
                &[("datname", "postgres"), ("mode", "AccessShareLock")]
            )
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        scrape
            .value(
                "pg_locks",
                &[("datname", "postgres"), ("mode", "AccessExclusiveLock")]
            )
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        scrape
            .value("pg_oldest_transaction_seconds", &[("datname", "postgres")])
            .unwrap_or(0.0)
            > 1.0
    );
    let group = scrape
        .group("pg_stat_activity_connections")
        .expect("connections");
    let connections: f64 = group
        .members()
        .iter()
        .flat_map(|f| f.samples())
        .map(|s| match s.value {
            mcpwatch_core::metrics::SampleValue::Number(v) => v,
            mcpwatch_core::metrics::SampleValue::Histogram(_) => 0.0,
        })
        .sum();
    // 8 in the pool, the holder, the waiter, the admin, and the exporter's own.
    assert!(connections >= 12.0, "{connections} connections");
    assert_eq!(
        scrape.value(
            "pg_stat_activity_connections",
            &[("state", "idle in transaction"), ("datname", "postgres")]
        ),
        Some(1.0)
    );
    assert_eq!(scrape.value("pg_settings_max_connections", &[]), Some(20.0));

    holder.batch_execute("COMMIT").await.expect("commit");
    blocked.await.expect("task").expect("the waiter proceeds");
    drop(pool);
}

#[tokio::test]
async fn down_and_back_with_the_same_collector() {
    let mut server = PostgresServer::start(PostgresOptions::default()).await;
    let engine = engine(&format!("name: db\ndsn: '{}'\n", server.dsn("postgres")));
    let up = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(up.value("pg_up", &[]), Some(1.0));

    server.stop();
    let down = mcpwatch_tests::engine::scrape(&engine, Some(Duration::from_secs(3))).await;
    assert_eq!(down.value("pg_up", &[]), Some(0.0), "{}", text(&down).await);
    assert_eq!(
        down.value(
            "mcpwatch_scrape_collector_success",
            &[("collector", "postgres")]
        ),
        Some(0.0)
    );
    // Still inside the deadline, and said in the status.
    assert_eq!(
        down.value("mcpwatch_scrape_timeout_seconds", &[]),
        Some(2.5)
    );
    let status = engine.status();
    assert!(status[0].last_outcome.is_some());

    server.restart().await;
    let back = scrape_until(&engine, "pg_up to return", |s| {
        s.value("pg_up", &[]) == Some(1.0)
    })
    .await;
    assert_eq!(
        back.value(
            "mcpwatch_scrape_collector_success",
            &[("collector", "postgres")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_refused_password_is_down_and_never_shown() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let wrong = mcpwatch_tests::random_token("not-the-password-");
    let engine = engine(&format!(
        "name: db\ndsn: 'postgresql://{MONITOR_USER}:{wrong}@127.0.0.1:{}/postgres'\n",
        server.port()
    ));
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(scrape.value("pg_up", &[]), Some(0.0));
    let status = format!("{:?}", engine.status());
    assert!(
        status.contains("password authentication failed"),
        "{status}"
    );
    assert!(!status.contains(&wrong));
    assert!(!text(&scrape).await.contains(&wrong));
}

#[tokio::test]
async fn no_extension_is_no_error_and_a_failing_query_spares_the_rest() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    admin
        .batch_execute("CREATE DATABASE plain")
        .await
        .expect("create database");
    // pg_stat_statements is installed in "postgres" only.
    let engine = engine(&format!(
        "name: plain\ndsn: '{}'\nqueries:\n  - metric: broken\n    sql: SELECT * FROM no_such_table\n    \
         values: [n]\n  - metric: fine\n    sql: SELECT 2 AS n\n    values: [n]\n",
        server.dsn("plain")
    ));
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(scrape.value("pg_up", &[]), Some(1.0));
    assert_eq!(scrape.value("pg_stat_statements_available", &[]), Some(0.0));
    assert_eq!(scrape.value("fine_n", &[]), Some(2.0));
    assert!(scrape.value("pg_settings_max_connections", &[]).is_some());
    assert_eq!(
        scrape.value(
            "mcpwatch_scrape_collector_success",
            &[("collector", "postgres")]
        ),
        Some(0.0)
    );
    assert_eq!(
        engine.status()[0].last_outcome,
        Some(mcpwatch_core::engine::CollectorOutcome::Failed(
            "query broken: ERROR: relation \"no_such_table\" does not exist".to_owned()
        ))
    );
}

#[tokio::test]
async fn a_slow_custom_query_is_cut_and_the_rest_is_served() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let engine = engine(&format!(
        "name: db\ndsn: '{}'\nstatement_timeout: 2s\nqueries:\n  - metric: slow\n    \
         sql: SELECT 1 AS n FROM pg_sleep(30)\n    values: [n]\n",
        server.dsn("postgres")
    ));
    // A first scrape with no deadline opens the connection (on a loaded machine that
    // alone can take longer than the short scrape below allows) and waits for the
    // server to cancel the slow query.
    let first = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(first.value("pg_up", &[]), Some(1.0));
    assert_eq!(first.value("slow_n", &[]), None);
    let scrape = mcpwatch_tests::engine::scrape(&engine, Some(Duration::from_secs(2))).await;
    // Everything but the slow query, within the 1.5 s the scrape had.
    assert_eq!(scrape.value("pg_up", &[]), Some(1.0));
    assert!(scrape.value("pg_settings_max_connections", &[]).is_some());
    assert!(
        scrape
            .value(
                "pg_stat_database_xact_commit_total",
                &[("datname", "postgres")]
            )
            .is_some()
    );
    assert_eq!(scrape.value("slow_n", &[]), None);
    assert_eq!(
        scrape.value(
            "mcpwatch_scrape_collector_success",
            &[("collector", "postgres")]
        ),
        Some(0.0)
    );
    // The server cancels it at statement_timeout; a later scrape says so and the
    // connection keeps serving.
    let later = scrape_until(&engine, "the statement timeout to be reported", |_| {
        matches!(
            &engine.status()[0].last_outcome,
            Some(mcpwatch_core::engine::CollectorOutcome::Failed(e))
                if e.contains("canceling statement due to statement timeout")
        )
    })
    .await;
    assert_eq!(later.value("pg_up", &[]), Some(1.0));
}

/// The lines of `family` (exactly that name) in a text exposition.
fn lines_of<'a>(exposition: &'a str, family: &str) -> Vec<&'a str> {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

#[tokio::test]
async fn one_series_per_statement_database_and_user() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    admin
        .batch_execute("CREATE DATABASE app2")
        .await
        .expect("create database");
    admin
        .batch_execute("CREATE ROLE alice; CREATE ROLE bob; CREATE ROLE carol; CREATE ROLE dave;")
        .await
        .expect("create roles");
    let app2 = server.admin("app2").await;
    app2.batch_execute("CREATE TABLE jobs (id int); INSERT INTO jobs VALUES (1);")
        .await
        .expect("table");
    // One statement (pg_class has the same oid everywhere, so the same queryid) run in two
    // databases, and as two more users; then as two users that are dropped afterwards,
    // whose rows are left without a role name.
    let marker = "SELECT count(*) FROM pg_class WHERE relname = 'mcpwatch_marker'";
    admin.batch_execute(marker).await.expect("as postgres");
    app2.batch_execute(marker).await.expect("in app2");
    for role in ["alice", "bob"] {
        admin
            .batch_execute(&format!("SET ROLE {role}; {marker}; RESET ROLE;"))
            .await
            .expect("as a role");
    }
    for role in ["carol", "dave"] {
        app2.batch_execute(&format!("SET ROLE {role}; {marker}; RESET ROLE;"))
            .await
            .expect("as a role");
    }
    admin
        .batch_execute("DROP ROLE carol; DROP ROLE dave;")
        .await
        .expect("drop roles");

    // app2 listed twice: its tables are still read once.
    let engine = engine(&format!(
        "name: db\ndsn: '{}'\ndatabases: [postgres, app2, app2]\nstatement_text_length: 200\n\
         top_statements: 1000\n",
        server.dsn("postgres")
    ));
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    let exposition = text(&scrape).await;
    assert_eq!(scrape.value("pg_up", &[]), Some(1.0), "{exposition}");
    let texts: Vec<&str> = lines_of(&exposition, "pg_stat_statements_query_info")
        .into_iter()
        .filter(|l| l.contains("FROM pg_class WHERE relname = $1"))
        .collect();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    let queryid = texts[0]
        .split("queryid=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("queryid label");
    let mut calls: Vec<(String, f64)> = lines_of(&exposition, "pg_stat_statements_calls_total")
        .into_iter()
        .filter(|l| l.contains(&format!("queryid=\"{queryid}\"")))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample");
            let labels = |name: &str| {
                series
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                format!("{}/{}", labels("datname"), labels("user")),
                value.parse().expect("a number"),
            )
        })
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        calls,
        [
            ("app2/".to_owned(), 2.0),
            ("app2/postgres".to_owned(), 1.0),
            ("postgres/alice".to_owned(), 1.0),
            ("postgres/bob".to_owned(), 1.0),
            ("postgres/postgres".to_owned(), 1.0),
        ]
    );
    assert_eq!(
        lines_of(&exposition, "pg_stat_user_tables_n_live_tup")
            .iter()
            .filter(|l| l.contains("datname=\"app2\"") && l.contains("relname=\"jobs\""))
            .count(),
        1
    );
    assert_eq!(promtool_check_metrics(exposition.as_bytes()), "");
}

/// The sum of the samples of `name` whose labels include `labels`, and how many there are.
fn sum_where(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> (f64, usize) {
    let mut sum = 0.0;
    let mut series = 0;
    for family in scrape.group(name).map(|g| g.members()).unwrap_or_default() {
        for sample in family.samples() {
            let all = labels.iter().all(|(k, v)| {
                family
                    .const_labels()
                    .iter()
                    .chain(&sample.labels)
                    .any(|(lk, lv)| lk == k && lv == v)
            });
            if let (true, mcpwatch_core::metrics::SampleValue::Number(v)) = (all, &sample.value) {
                sum += v;
                series += 1;
            }
        }
    }
    (sum, series)
}

/// Opens `count` sessions to `postgres` as the role of `dsn`, with `application`.
async fn sessions_of(dsn: &str, application: &str, count: usize) -> Vec<tokio_postgres::Client> {
    let mut sessions = Vec::new();
    for _ in 0..count {
        let (client, connection) =
            tokio_postgres::connect(&format!("{dsn}?application_name={application}"), NoTls)
                .await
                .expect("a session");
        tokio::spawn(connection);
        sessions.push(client);
    }
    sessions
}

/// The connections of (user, application_name) in `state`, over every database and wait.
fn connections_of(scrape: &Scrape, user: &str, application: &str, state: &str) -> f64 {
    sum_where(
        scrape,
        "pg_stat_activity_connections",
        &[
            ("user", user),
            ("application_name", application),
            ("state", state),
        ],
    )
    .0
}

#[tokio::test]
async fn connections_by_user_and_application_are_exact_and_the_rest_is_folded() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let api = server.login_role("api", "", "postgres").await;
    let worker = server.login_role("worker", "", "postgres").await;
    let report = server.login_role("report", "", "postgres").await;
    // One superuser session (user postgres, no application_name), kept to count with.
    let admin = server.admin("postgres").await;
    let api_sessions = sessions_of(&api, "api-server", 3).await;
    let worker_sessions = sessions_of(&worker, "queue-worker", 2).await;
    let report_sessions = sessions_of(&report, "metabase", 1).await;
    worker_sessions[0]
        .batch_execute("BEGIN; SELECT 1;")
        .await
        .expect("a transaction left open");
    // Those six and the admin, and nothing else (the sessions of the setup are gone).
    wait_for_client_connections(&admin, 7).await;

    let every = engine(&format!("name: db\ndsn: '{}'\n", server.dsn("postgres")));
    let scrape = mcpwatch_tests::engine::scrape(&every, None).await;
    let exposition = text(&scrape).await;
    assert_eq!(connections_of(&scrape, "api", "api-server", "idle"), 3.0);
    assert_eq!(
        connections_of(&scrape, "worker", "queue-worker", "idle"),
        1.0
    );
    assert_eq!(
        connections_of(&scrape, "worker", "queue-worker", "idle in transaction"),
        1.0
    );
    assert_eq!(connections_of(&scrape, "report", "metabase", "idle"), 1.0);
    // No application_name is an empty label; the exporter's own session is counted.
    assert_eq!(connections_of(&scrape, "postgres", "", "idle"), 1.0);
    assert_eq!(
        connections_of(&scrape, MONITOR_USER, "mcpwatch", "active"),
        1.0
    );
    assert_eq!(
        sum_where(&scrape, "pg_stat_activity_connections", &[]).0,
        8.0
    );
    assert_eq!(
        sum_where(
            &scrape,
            "pg_stat_activity_connections",
            &[("user", "(other)")]
        ),
        (0.0, 0),
        "{exposition}"
    );
    assert_eq!(promtool_check_metrics(exposition.as_bytes()), "");
    // Its connection closes with it: the next collector's is the exporter's only one.
    drop(every);
    wait_for_client_connections(&admin, 7).await;

    // Two pairs keep their names: api (3) and worker (2). report, the admin and the
    // exporter are one pair each, folded into one series per state.
    let folded = engine(&format!(
        "name: db\ndsn: '{}'\nmax_clients: 2\n",
        server.dsn("postgres")
    ));
    let scrape = mcpwatch_tests::engine::scrape(&folded, None).await;
    let exposition = text(&scrape).await;
    assert_eq!(connections_of(&scrape, "api", "api-server", "idle"), 3.0);
    assert_eq!(
        connections_of(&scrape, "worker", "queue-worker", "idle"),
        1.0
    );
    assert_eq!(
        connections_of(&scrape, "worker", "queue-worker", "idle in transaction"),
        1.0
    );
    let other = |state| {
        sum_where(
            &scrape,
            "pg_stat_activity_connections",
            &[
                ("user", "(other)"),
                ("application_name", "(other)"),
                ("state", state),
            ],
        )
    };
    assert_eq!(other("idle"), (2.0, 1), "{exposition}");
    assert_eq!(other("active"), (1.0, 1), "{exposition}");
    for user in ["report", "postgres", MONITOR_USER] {
        assert_eq!(
            sum_where(&scrape, "pg_stat_activity_connections", &[("user", user)]),
            (0.0, 0),
            "{user} is folded: {exposition}"
        );
    }
    assert_eq!(
        sum_where(&scrape, "pg_stat_activity_connections", &[]).0,
        8.0
    );
    assert_eq!(promtool_check_metrics(exposition.as_bytes()), "");
    drop((api_sessions, worker_sessions, report_sessions));
}

/// The queryid of the one statement in pg_stat_statements whose text is `text`.
async fn queryid_of(admin: &tokio_postgres::Client, text: &str) -> String {
    admin
        .query_one(
            "SELECT queryid::text FROM pg_stat_statements WHERE query = $1",
            &[&text],
        )
        .await
        .expect("the statement's queryid")
        .get(0)
}

#[tokio::test]
async fn a_rare_slow_statement_is_reported_by_its_mean_time() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset");
    // The slow one: 3 calls of at least 0.5 s (1.5 s in all); the frequent one: 60 calls
    // of at least 0.05 s (3 s in all). The slow one has the highest mean and is not the
    // top by total time.
    for _ in 0..3 {
        admin
            .batch_execute("SELECT pg_sleep(0.5)")
            .await
            .expect("slow");
    }
    for _ in 0..60 {
        admin
            .batch_execute("SELECT 1 FROM pg_sleep(0.05)")
            .await
            .expect("frequent");
    }
    let slow = queryid_of(&admin, "SELECT pg_sleep($1)").await;
    let frequent = queryid_of(&admin, "SELECT $1 FROM pg_sleep($2)").await;
    let statement = |scrape: &Scrape, name: &str, queryid: &str| {
        sum_where(
            scrape,
            name,
            &[
                ("queryid", queryid),
                ("datname", "postgres"),
                ("user", "postgres"),
            ],
        )
    };
    let selected_by = |scrape: &Scrape, queryid: &str| -> Vec<String> {
        ["total_time", "mean_time"]
            .into_iter()
            .filter(|by| {
                sum_where(
                    scrape,
                    "pg_stat_statements_selected_info",
                    &[("queryid", queryid), ("by", *by)],
                ) == (1.0, 1)
            })
            .map(str::to_owned)
            .collect()
    };

    // One of each: the two sets hold one statement each.
    let one_each = engine(&format!(
        "name: db\ndsn: '{}'\ntop_statements: 1\ntop_statements_by_mean: 1\n",
        server.dsn("postgres")
    ));
    let scrape = mcpwatch_tests::engine::scrape(&one_each, None).await;
    let exposition = text(&scrape).await;
    assert_eq!(
        statement(&scrape, "pg_stat_statements_calls_total", &slow),
        (3.0, 1),
        "{exposition}"
    );
    assert_eq!(
        statement(&scrape, "pg_stat_statements_calls_total", &frequent),
        (60.0, 1),
        "{exposition}"
    );
    assert_eq!(selected_by(&scrape, &slow), ["mean_time"]);
    assert_eq!(selected_by(&scrape, &frequent), ["total_time"]);
    for family in [
        "pg_stat_statements_calls_total",
        "pg_stat_statements_seconds_total",
        "pg_stat_statements_rows_total",
        "pg_stat_statements_selected_info",
    ] {
        assert_eq!(
            sum_where(&scrape, family, &[]).1,
            2,
            "{family}: {exposition}"
        );
    }
    let (seconds, _) = statement(&scrape, "pg_stat_statements_seconds_total", &slow);
    assert!(seconds >= 1.5, "{seconds}");
    assert_eq!(promtool_check_metrics(exposition.as_bytes()), "");

    // Two of each: both statements are in both sets, and still one set of series each.
    let two_each = engine(&format!(
        "name: db\ndsn: '{}'\ntop_statements: 2\ntop_statements_by_mean: 2\n",
        server.dsn("postgres")
    ));
    let scrape = mcpwatch_tests::engine::scrape(&two_each, None).await;
    let exposition = text(&scrape).await;
    for (queryid, calls) in [(&slow, 3.0), (&frequent, 60.0)] {
        assert_eq!(
            statement(&scrape, "pg_stat_statements_calls_total", queryid),
            (calls, 1),
            "{exposition}"
        );
        assert_eq!(selected_by(&scrape, queryid), ["total_time", "mean_time"]);
    }
    assert_eq!(
        sum_where(&scrape, "pg_stat_statements_calls_total", &[]).1,
        2,
        "{exposition}"
    );
    assert_eq!(
        sum_where(&scrape, "pg_stat_statements_selected_info", &[]).1,
        4,
        "{exposition}"
    );
    assert_eq!(promtool_check_metrics(exposition.as_bytes()), "");
}

/// The log lines the code under test writes on this thread while the guard lives: the
/// collector's connection tasks run on it too, in the tests' single-threaded runtime.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// Captures until the second value (the subscriber's guard) is dropped.
    fn start() -> (Self, Box<dyn std::any::Any>) {
        use tracing_subscriber::util::SubscriberInitExt;
        let log = Self::default();
        let writer = log.clone();
        let guard = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .finish()
            .set_default();
        (log, Box::new(guard))
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

/// The client connections `pg_stat_activity_connections` counts.
fn client_connections(scrape: &Scrape) -> f64 {
    scrape
        .group("pg_stat_activity_connections")
        .map(|group| {
            group
                .members()
                .iter()
                .flat_map(|f| f.samples())
                .map(|s| match s.value {
                    mcpwatch_core::metrics::SampleValue::Number(v) => v,
                    mcpwatch_core::metrics::SampleValue::Histogram(_) => 0.0,
                })
                .sum()
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_role_without_pg_read_all_stats_is_reported_once_and_as_a_metric() {
    let (log, _guard) = CapturedLog::start();
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let password = mcpwatch_tests::random_token("limited-");
    // Six sessions of another role, one of them in an open transaction.
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(server.admin("postgres").await);
    }
    sessions[0]
        .batch_execute(&format!("CREATE ROLE limited LOGIN PASSWORD '{password}'"))
        .await
        .expect("create role");
    sessions[1]
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .expect("open a transaction");
    let engine = engine(&format!(
        "name: db\ndsn: 'postgresql://limited:{password}@127.0.0.1:{}/postgres'\n",
        server.port()
    ));
    let warnings = || {
        log.lines()
            .into_iter()
            .filter(|l| l.contains("WARN") && l.contains("pg_read_all_stats"))
            .collect::<Vec<_>>()
    };

    let mut scrapes = Vec::new();
    for _ in 0..5 {
        scrapes.push(mcpwatch_tests::engine::scrape(&engine, None).await);
    }
    let last = scrapes.last().expect("scrapes");
    let exposition = text(last).await;
    assert_eq!(last.value("pg_up", &[]), Some(1.0), "{exposition}");
    // What the role sees: every session by database, user and application, the others'
    // without their state, and no transaction of another.
    assert_eq!(client_connections(last), 7.0, "{exposition}");
    let unknown: f64 =
        mcpwatch_tests::engine::values_by_label(last, "pg_stat_activity_connections", "state")
            .iter()
            .filter(|(state, _)| state == "unknown")
            .map(|(_, count)| count)
            .sum();
    assert_eq!(unknown, 6.0, "{exposition}");
    assert_eq!(
        last.value("pg_oldest_transaction_seconds", &[("datname", "postgres")]),
        Some(0.0)
    );
    // And that it sees only that: the metric, and one warning for the connection.
    for scrape in &scrapes {
        assert_eq!(scrape.value("pg_monitor_privileges", &[]), Some(0.0));
    }
    assert_eq!(warnings().len(), 1, "{:#?}", log.lines());
    assert!(warnings()[0].contains("pg_monitor"), "{:?}", warnings());

    // Granted: the same connection sees the 7 sessions (the 6 and its own) at once.
    sessions[0]
        .batch_execute("GRANT pg_monitor TO limited")
        .await
        .expect("grant");
    let granted = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(granted.value("pg_monitor_privileges", &[]), Some(1.0));
    assert_eq!(
        client_connections(&granted),
        7.0,
        "{}",
        text(&granted).await
    );
    assert!(
        granted
            .value("pg_oldest_transaction_seconds", &[("datname", "postgres")])
            .is_some_and(|age| age > 0.0)
    );
    assert_eq!(warnings().len(), 1, "{:#?}", log.lines());
    sessions[1].batch_execute("COMMIT").await.expect("commit");
}

/// The log lines at `level` (`WARN`, `INFO`) that mention pg_read_all_stats.
fn privilege_lines(log: &CapturedLog, level: &str) -> Vec<String> {
    log.lines()
        .into_iter()
        .filter(|l| l.contains(level) && l.contains("pg_read_all_stats"))
        .collect()
}

#[tokio::test]
async fn losing_pg_read_all_stats_while_connected_is_logged_once_per_change() {
    let (log, _guard) = CapturedLog::start();
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    let dsn = server
        .login_role("watcher", "IN ROLE pg_monitor", "postgres")
        .await;
    let engine = engine(&format!("name: db\ndsn: '{dsn}'\n"));
    let privileges = |scrape: &Scrape| scrape.value("pg_monitor_privileges", &[]);
    let counts = || {
        (
            privilege_lines(&log, "WARN").len(),
            privilege_lines(&log, "INFO").len(),
        )
    };

    let granted = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(privileges(&granted), Some(1.0), "{}", text(&granted).await);
    assert_eq!(counts(), (0, 0), "{:#?}", log.lines());

    // Revoked on the same connection: one warning, however many scrapes see it.
    admin
        .batch_execute("REVOKE pg_monitor FROM watcher")
        .await
        .expect("revoke");
    for _ in 0..3 {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        assert_eq!(privileges(&scrape), Some(0.0));
    }
    assert_eq!(counts(), (1, 0), "{:#?}", log.lines());
    assert!(
        privilege_lines(&log, "WARN")[0].contains("GRANT pg_monitor TO watcher"),
        "{:#?}",
        log.lines()
    );

    // Granted again: one info line.
    admin
        .batch_execute("GRANT pg_monitor TO watcher")
        .await
        .expect("grant");
    for _ in 0..2 {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        assert_eq!(privileges(&scrape), Some(1.0));
    }
    assert_eq!(counts(), (1, 1), "{:#?}", log.lines());

    // And lost again: a second warning.
    admin
        .batch_execute("REVOKE pg_monitor FROM watcher")
        .await
        .expect("revoke");
    let lost = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(privileges(&lost), Some(0.0));
    assert_eq!(counts(), (2, 1), "{:#?}", log.lines());
}

#[tokio::test]
async fn a_noinherit_member_of_pg_monitor_is_told_how_to_inherit() {
    let (log, _guard) = CapturedLog::start();
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    let dsn = server
        .login_role("lean", "NOINHERIT IN ROLE pg_monitor", "postgres")
        .await;
    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .expect("version")
        .get(0);
    // Before PostgreSQL 16 the role's attribute decides; from 16 each grant's own option,
    // which ALTER ROLE does not change.
    let fix = if version < 160_000 {
        "ALTER ROLE lean INHERIT;"
    } else {
        "GRANT pg_monitor TO lean WITH INHERIT TRUE;"
    };
    let engine = engine(&format!("name: db\ndsn: '{dsn}'\n"));
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(scrape.value("pg_monitor_privileges", &[]), Some(0.0));
    let warnings = privilege_lines(&log, "WARN");
    assert_eq!(warnings.len(), 1, "{:#?}", log.lines());
    assert!(warnings[0].contains(fix), "{warnings:#?}");
    assert!(!warnings[0].contains("Grant it"), "{warnings:#?}");

    // Doing what it says is enough.
    admin.batch_execute(fix).await.expect("the advised fix");
    let fixed = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(fixed.value("pg_monitor_privileges", &[]), Some(1.0));
    assert_eq!(privilege_lines(&log, "INFO").len(), 1, "{:#?}", log.lines());
}

#[tokio::test]
async fn a_dsn_naming_no_user_and_no_database_reads_each_database_once() {
    let server = PostgresServer::start(PostgresOptions::default()).await;
    let admin = server.admin("postgres").await;
    // Without user and dbname, the exporter logs in as the user running it, into the
    // database of that name.
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .expect("look the user up")
        .expect("the user running the tests")
        .name;
    let password = mcpwatch_tests::random_token("os-user-");
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE \"{user}\"; EXCEPTION WHEN duplicate_object THEN NULL; \
             END $$; ALTER ROLE \"{user}\" LOGIN PASSWORD '{password}'; \
             GRANT pg_monitor TO \"{user}\"; CREATE TABLE in_postgres (id int);"
        ))
        .await
        .expect("the OS user's role");
    if user != "postgres" {
        admin
            .batch_execute(&format!("CREATE DATABASE \"{user}\""))
            .await
            .expect("the OS user's database");
    }
    server
        .admin(&user)
        .await
        .batch_execute("CREATE TABLE in_users (id int)")
        .await
        .expect("a table in the user's database");

    let engine = engine(&format!(
        "name: db\ndsn: 'host=127.0.0.1 port={} password={password}'\n\
         databases: [postgres, \"{user}\"]\n",
        server.port()
    ));
    // The scrape fails on any series written twice.
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    let exposition = text(&scrape).await;
    assert_eq!(scrape.value("pg_up", &[]), Some(1.0), "{exposition}");
    let tables = |datname: &str, relname: &str| {
        lines_of(&exposition, "pg_stat_user_tables_n_live_tup")
            .iter()
            .filter(|l| {
                l.contains(&format!("datname=\"{datname}\""))
                    && l.contains(&format!("relname=\"{relname}\""))
            })
            .count()
    };
    assert_eq!(tables("postgres", "in_postgres"), 1, "{exposition}");
    assert_eq!(tables(&user, "in_users"), 1, "{exposition}");
    assert_eq!(
        lines_of(&exposition, "pg_stat_user_tables_n_live_tup").len(),
        2,
        "{exposition}"
    );
}

/// The reason `pg_connect_failure` gives, or `None` when connected.
fn connect_failure(scrape: &Scrape) -> Option<String> {
    mcpwatch_tests::engine::connect_failure(scrape, "pg_connect_failure")
}

/// One scrape of a collector for `dsn`, which cannot connect: its reason.
async fn failure_of(dsn: &str, extra: &str) -> Option<String> {
    let engine = engine(&format!(
        "name: db\ndsn: '{dsn}'\nconnect_timeout: 1s\n{extra}"
    ));
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(scrape.value("pg_up", &[]), Some(0.0));
    connect_failure(&scrape)
}

#[tokio::test]
async fn why_the_server_cannot_be_reached_is_a_metric() {
    // 6 slots, 3 of them reserved for superusers: with 4 taken, the monitoring role (no
    // superuser) is refused while the server is up.
    let server = PostgresServer::start(PostgresOptions {
        max_connections: 6,
        ..PostgresOptions::default()
    })
    .await;
    let engine = engine(&format!(
        "name: db\ndsn: '{}'\nconnect_timeout: 1s\n",
        server.dsn("postgres")
    ));
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(server.admin("postgres").await);
    }
    // The setup's own connections gone, the four taken.
    mcpwatch_tests::postgres::wait_for_client_connections(&sessions[0], 4).await;
    let full = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(full.value("pg_up", &[]), Some(0.0));
    assert_eq!(
        connect_failure(&full).as_deref(),
        Some("too_many_connections"),
        "{:?}",
        engine.status()
    );
    // A slot freed: connected, no reason.
    sessions.truncate(2);
    let back = scrape_until(&engine, "pg_up to return", |s| {
        s.value("pg_up", &[]) == Some(1.0)
    })
    .await;
    assert_eq!(connect_failure(&back), None);

    let port = server.port();
    let wrong = mcpwatch_tests::random_token("wrong-");
    assert_eq!(
        failure_of(
            &format!("postgresql://{MONITOR_USER}:{wrong}@127.0.0.1:{port}/postgres"),
            ""
        )
        .await
        .as_deref(),
        Some("auth")
    );
    // TLS demanded of a server without it.
    assert_eq!(
        failure_of(&format!("{}?sslmode=require", server.dsn("postgres")), "")
            .await
            .as_deref(),
        Some("tls")
    );
    // A closed port, a name that does not resolve, a port that never answers, and
    // something that is not PostgreSQL.
    let unreachable = mcpwatch_tests::ports::unreachable();
    for (reason, host, port) in &unreachable.cases {
        assert_eq!(
            failure_of(&format!("postgresql://m:pw@{host}:{port}/postgres"), "")
                .await
                .as_deref(),
            Some(*reason),
            "{host}:{port}"
        );
    }
    // Peers that are not PostgreSQL and take in what the client sends: an HTTP server that
    // answers 400 and ends the stream (the client is left with bytes that make no
    // message), and one that declines TLS ("N"), answers with a message of no type
    // PostgreSQL has, and keeps the connection open.
    for (what, port) in [
        (
            "an HTTP server",
            answering_port(b"HTTP/1.1 400 Bad Request\r\n\r\n", AfterAnswer::EndStream),
        ),
        (
            "a message of no known type",
            answering_port(b"N\x01\x00\x00\x00\x04", AfterAnswer::KeepOpen),
        ),
    ] {
        assert_eq!(
            failure_of(&format!("postgresql://m:pw@127.0.0.1:{port}/postgres"), "")
                .await
                .as_deref(),
            Some("protocol"),
            "{what}"
        );
    }
    drop(sessions);
}
