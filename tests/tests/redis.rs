//! The Redis collector against a real server with a password: the metrics move with what
//! the tests do, an ACL without CONFIG is no failure, the server going away and coming back,
//! and the password kept out of everything.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::config::parse_yaml;
use mcpwatch_core::{Scrape, ScrapeEngine};
use mcpwatch_redis::{RedisCollector, RedisConfig};
use mcpwatch_tests::engine::text;
use mcpwatch_tests::redis::RedisServer;
use mcpwatch_tests::tools::promtool_check_metrics;
use mcpwatch_tests::wait_for_async;
use redis::AsyncCommands;

const LIMIT: Duration = Duration::from_secs(60);

fn engine(yaml: &str) -> ScrapeEngine {
    let config: RedisConfig = parse_yaml(yaml, Path::new("test.yml")).expect("config");
    mcpwatch_tests::engine::engine(vec![Arc::new(
        RedisCollector::new(config).expect("collector"),
    )])
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .value(name, labels)
        .unwrap_or_else(|| panic!("{name} {labels:?} missing"))
}

#[tokio::test]
async fn keys_hits_misses_and_commands_move_the_metrics() {
    let server = RedisServer::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("redis.pw"),
        format!("{}\n", server.password()),
    )
    .expect("password file");
    let engine = engine(&format!(
        "name: cache\nurl: redis://127.0.0.1:{}/\npassword_file: {}\n",
        server.port(),
        dir.path().join("redis.pw").display()
    ));
    let first = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(
        value(&first, "redis_up", &[("target", "cache")]),
        1.0,
        "{}",
        text(&first).await
    );
    assert_eq!(
        value(
            &first,
            "mcpwatch_scrape_collector_success",
            &[("collector", "redis")]
        ),
        1.0
    );
    assert!(value(&first, "redis_maxclients", &[]) > 0.0);
    assert!(value(&first, "redis_memory_used_bytes", &[]) > 0.0);
    assert_eq!(value(&first, "redis_memory_max_bytes", &[]), 0.0);
    assert!(
        first
            .value("redis_instance_info", &[("role", "master")])
            .is_some()
    );
    // The exporter's own commands are no error replies: the server's error statistics stay
    // the application's.
    let again = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(
        value(&again, "redis_error_replies_total", &[]),
        value(&first, "redis_error_replies_total", &[])
    );
    let hits = value(&first, "redis_keyspace_hits_total", &[]);
    let misses = value(&first, "redis_keyspace_misses_total", &[]);

    let mut conn = server.connection().await;
    for i in 0..10 {
        let _: () = conn
            .set_ex(format!("session:{i}"), "x", 300)
            .await
            .expect("set");
    }
    for i in 0..5 {
        let _: () = conn.set(format!("tool:{i}"), "y").await.expect("set");
    }
    for i in 0..7 {
        let _: Option<String> = conn.get(format!("session:{i}")).await.expect("get");
    }
    for i in 0..3 {
        let _: Option<String> = conn.get(format!("absent:{i}")).await.expect("get");
    }
    let after = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(value(&after, "redis_db_keys", &[("db", "db0")]), 15.0);
    assert_eq!(
        value(&after, "redis_db_keys_expiring", &[("db", "db0")]),
        10.0
    );
    assert_eq!(value(&after, "redis_keyspace_hits_total", &[]) - hits, 7.0);
    assert_eq!(
        value(&after, "redis_keyspace_misses_total", &[]) - misses,
        3.0
    );
    assert!(value(&after, "redis_commands_total", &[("cmd", "setex")]) >= 10.0);
    assert!(value(&after, "redis_commands_total", &[("cmd", "get")]) >= 10.0);
    // A GET can take under a microsecond, which Redis counts as none: the time spent is
    // shown with a script that loops long enough to be measured.
    assert!(
        after
            .value("redis_commands_duration_seconds_total", &[("cmd", "get")])
            .is_some()
    );
    let _: i64 = redis::cmd("EVAL")
        .arg("local i = 0 while i < 300000 do i = i + 1 end return i")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("eval");
    let timed = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert!(
        value(
            &timed,
            "redis_commands_duration_seconds_total",
            &[("cmd", "eval")]
        ) > 0.0
    );
    assert!(after.value("redis_slowlog_length", &[]).is_some());
    assert!(value(&after, "redis_ping_duration_seconds", &[]) > 0.0);

    // Redis estimates the average time to live in its expiry cycle, a moment later.
    let ttl = wait_for_async("the average TTL estimate", LIMIT, || async {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        scrape
            .value("redis_db_avg_ttl_seconds", &[("db", "db0")])
            .filter(|ttl| *ttl > 0.0)
    })
    .await;
    assert!(ttl > 100.0 && ttl <= 300.0, "{ttl}");

    let exposition = text(&after).await;
    assert_eq!(promtool_check_metrics(exposition.as_bytes()), "");
    assert!(!exposition.contains(server.password()));
}

#[tokio::test]
async fn evictions_under_a_small_maxmemory_and_rejected_connections() {
    let server = RedisServer::start(&[
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "allkeys-lru",
        "--maxclients",
        "6",
    ])
    .await;
    let engine = engine(&format!("name: cache\nurl: '{}'\n", server.url()));
    // The exporter connects first: at maxclients it could not.
    assert_eq!(
        value(
            &*mcpwatch_tests::engine::scrape(&engine, None).await,
            "redis_up",
            &[]
        ),
        1.0
    );
    let mut conn = server.connection().await;
    let blob = "v".repeat(10_000);
    for i in 0..600 {
        let _: () = conn.set(format!("blob:{i}"), &blob).await.expect("set");
    }
    // Connections past maxclients are refused by the server.
    let mut extra = Vec::new();
    for _ in 0..8 {
        if let Ok(c) = redis::Client::open(server.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
        {
            extra.push(c);
        }
    }
    let scrape = wait_for_async("evictions and rejections to show", LIMIT, || async {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        (scrape.value("redis_evicted_keys_total", &[]).unwrap_or(0.0) > 0.0
            && scrape
                .value("redis_rejected_connections_total", &[])
                .unwrap_or(0.0)
                > 0.0)
            .then_some(scrape)
    })
    .await;
    assert_eq!(
        value(&scrape, "redis_memory_max_bytes", &[]),
        2.0 * 1024.0 * 1024.0
    );
    assert_eq!(value(&scrape, "redis_maxclients", &[]), 6.0);
    assert!(value(&scrape, "redis_db_keys", &[("db", "db0")]) < 600.0);
    assert!(
        scrape
            .value(
                "redis_instance_info",
                &[("maxmemory_policy", "allkeys-lru")]
            )
            .is_some()
    );
    drop(extra);
}

#[tokio::test]
async fn an_acl_without_config_is_no_failure() {
    let server = RedisServer::start(&[]).await;
    let (engine, limited_password) =
        acl_engine(&server, "monitor", &["+@all", "-config", "-slowlog"]).await;
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(value(&scrape, "redis_up", &[]), 1.0);
    assert_eq!(
        value(
            &scrape,
            "mcpwatch_scrape_collector_success",
            &[("collector", "redis")]
        ),
        1.0,
        "{:?}",
        engine.status()
    );
    // INFO still tells the limits, and the refused commands are not asked again: they
    // would count as error replies on every scrape.
    assert!(value(&scrape, "redis_maxclients", &[]) > 0.0);
    assert!(scrape.value("redis_slowlog_length", &[]).is_none());
    let second = mcpwatch_tests::engine::scrape(&engine, None).await;
    let third = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(
        value(&third, "redis_error_replies_total", &[]),
        value(&second, "redis_error_replies_total", &[])
    );
    assert!(!text(&scrape).await.contains(&limited_password));
}

#[tokio::test]
async fn down_and_back_with_the_same_collector() {
    let mut server = RedisServer::start(&[]).await;
    let engine = engine(&format!("name: cache\nurl: '{}'\n", server.url()));
    assert_eq!(
        value(
            &*mcpwatch_tests::engine::scrape(&engine, None).await,
            "redis_up",
            &[]
        ),
        1.0
    );

    server.stop();
    let down = mcpwatch_tests::engine::scrape(&engine, Some(Duration::from_secs(3))).await;
    assert_eq!(value(&down, "redis_up", &[]), 0.0);
    assert_eq!(
        value(
            &down,
            "mcpwatch_scrape_collector_success",
            &[("collector", "redis")]
        ),
        0.0
    );
    assert_eq!(value(&down, "mcpwatch_scrape_timeout_seconds", &[]), 2.5);

    server.restart().await;
    wait_for_async("redis_up to return", LIMIT, || async {
        (mcpwatch_tests::engine::scrape(&engine, None)
            .await
            .value("redis_up", &[])
            == Some(1.0))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_wrong_password_is_down_and_never_shown() {
    let server = RedisServer::start(&[]).await;
    let wrong = mcpwatch_tests::random_token("wrong-");
    let engine = engine(&format!(
        "name: cache\nurl: 'redis://:{wrong}@127.0.0.1:{}/'\n",
        server.port()
    ));
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(value(&scrape, "redis_up", &[]), 0.0);
    let status = format!("{:?}", engine.status());
    assert!(status.contains("authentication failed"), "{status}");
    assert!(!status.contains(&wrong));
    assert!(!text(&scrape).await.contains(&wrong));
}

/// An engine scraping `server` as the ACL user `user`, made with these rules; and the
/// user's password.
async fn acl_engine(server: &RedisServer, user: &str, rules: &[&str]) -> (ScrapeEngine, String) {
    let password = server.acl_user(user, rules).await;
    let engine = engine(&format!(
        "name: cache\nurl: redis://127.0.0.1:{}/\nusername: {user}\npassword: '{password}'\n",
        server.port()
    ));
    (engine, password)
}

/// `errorstat_NOPERM` of `INFO errorstats`: the commands the server refused for want of
/// an ACL permission.
async fn noperm_replies(server: &RedisServer) -> u64 {
    let mut admin = server.connection().await;
    let stats: String = redis::cmd("INFO")
        .arg("errorstats")
        .query_async(&mut admin)
        .await
        .expect("INFO errorstats");
    stats
        .lines()
        .find_map(|l| l.strip_prefix("errorstat_NOPERM:count="))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

#[tokio::test]
async fn a_user_allowed_only_ping_is_refused_each_command_once_per_connection() {
    let server = RedisServer::start(&[]).await;
    let (engine, _) = acl_engine(&server, "pinger", &["+ping"]).await;
    assert_eq!(noperm_replies(&server).await, 0);
    for _ in 0..20 {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        assert_eq!(value(&scrape, "redis_up", &[]), 1.0);
    }
    // One connection: CLIENT SETNAME, INFO ALL, SLOWLOG LEN and the two CONFIG GET are
    // each refused once, then not asked again.
    assert_eq!(noperm_replies(&server).await, 5, "{:?}", engine.status());
    match &engine.status()[0].last_outcome {
        Some(mcpwatch_core::engine::CollectorOutcome::Failed(e)) => {
            assert!(e.contains("INFO ALL") && e.contains("NOPERM"), "{e}");
        }
        other => panic!("the collection fails without INFO: {other:?}"),
    }
}

#[tokio::test]
async fn refusals_are_asked_once_whatever_the_user_lacks() {
    // (rules, extra server arguments, refusals expected over 20 scrapes)
    let cases: [(&[&str], &[&str], u64); 3] = [
        // PING refused: the pipeline's answer tells the server is there.
        (&["+@all", "-ping"], &[], 1),
        (&["+@all", "-slowlog", "-config"], &[], 3),
        // In cluster mode, CLUSTER INFO is asked once when cluster mode is first seen.
        (&["+@all", "-cluster"], &["--cluster-enabled", "yes"], 1),
    ];
    for (rules, extra, expected) in cases {
        let server = RedisServer::start(extra).await;
        let (engine, _) = acl_engine(&server, "limited", rules).await;
        for _ in 0..20 {
            let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
            assert_eq!(value(&scrape, "redis_up", &[]), 1.0, "{rules:?}");
            assert!(value(&scrape, "redis_connected_clients", &[]) > 0.0);
        }
        assert_eq!(noperm_replies(&server).await, expected, "{rules:?}");
        assert_eq!(
            engine.status()[0].last_outcome,
            Some(mcpwatch_core::engine::CollectorOutcome::Success),
            "{rules:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_that_broke_since_the_last_scrape_is_made_again_at_once() {
    let mut server = RedisServer::start(&[]).await;
    let engine = engine(&format!("name: cache\nurl: '{}'\n", server.url()));
    let first = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(value(&first, "redis_up", &[]), 1.0);
    // Killed by the server (CLIENT KILL, a timeout): the next scrape still reaches it.
    let mut admin = server.connection().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("default")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1, "the exporter's connection");
    let after_kill = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(
        value(&after_kill, "redis_up", &[]),
        1.0,
        "{:?}",
        engine.status()
    );
    // A restart between two scrapes: the same.
    server.restart().await;
    let after_restart = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(
        value(&after_restart, "redis_up", &[]),
        1.0,
        "{:?}",
        engine.status()
    );
    assert_eq!(connect_failure(&after_restart), None);

    // With PING refused by the ACL, the pipeline finds the connection broken: the same.
    let (noping, _) = acl_engine(&server, "noping", &["+@all", "-ping"]).await;
    let first = mcpwatch_tests::engine::scrape(&noping, None).await;
    assert_eq!(value(&first, "redis_up", &[]), 1.0, "{:?}", noping.status());
    let mut admin = server.connection().await;
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("noping")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    let after_kill = mcpwatch_tests::engine::scrape(&noping, None).await;
    assert_eq!(
        value(&after_kill, "redis_up", &[]),
        1.0,
        "{:?}",
        noping.status()
    );
}

/// The reason `redis_connect_failure` gives, or `None` when connected.
fn connect_failure(scrape: &Scrape) -> Option<String> {
    mcpwatch_tests::engine::connect_failure(scrape, "redis_connect_failure")
}

/// One scrape of a collector configured with `yaml` (after its name), which cannot
/// connect: its reason.
async fn failure_of(yaml: &str) -> Option<String> {
    let engine = engine(&format!("name: cache\nconnect_timeout: 1s\n{yaml}"));
    let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(value(&scrape, "redis_up", &[]), 0.0);
    let reason = connect_failure(&scrape);
    assert!(
        format!("{:?}", engine.status()).contains("connecting"),
        "{:?}",
        engine.status()
    );
    reason
}

#[tokio::test]
async fn why_the_server_cannot_be_reached_is_a_metric() {
    let server = RedisServer::start(&["--maxclients", "4"]).await;
    let engine = engine(&format!(
        "name: cache\nurl: '{}'\nconnect_timeout: 1s\n",
        server.url()
    ));
    // The clients: one, once the harness's own connection is gone, then three more.
    let mut clients = vec![server.connection().await];
    wait_for_async("the harness's connection to close", LIMIT, || {
        let mut admin = clients[0].clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query_async(&mut admin)
                .await
                .expect("INFO clients");
            info.lines()
                .any(|l| l.trim() == "connected_clients:1")
                .then_some(())
        }
    })
    .await;
    for _ in 0..3 {
        clients.push(server.connection().await);
    }
    let full = mcpwatch_tests::engine::scrape(&engine, None).await;
    assert_eq!(value(&full, "redis_up", &[]), 0.0);
    assert_eq!(
        connect_failure(&full).as_deref(),
        Some("too_many_connections"),
        "{:?}",
        engine.status()
    );
    // The same with a database in the URL: it is not selected, so the refusal is read.
    assert_eq!(
        failure_of(&format!("url: '{}1'\n", server.url()))
            .await
            .as_deref(),
        Some("too_many_connections")
    );
    clients.truncate(1);
    let back = wait_for_async("redis_up to return", LIMIT, || async {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        (scrape.value("redis_up", &[]) == Some(1.0)).then_some(scrape)
    })
    .await;
    assert_eq!(connect_failure(&back), None);

    let port = server.port();
    let wrong = mcpwatch_tests::random_token("wrong-");
    assert_eq!(
        failure_of(&format!("url: 'redis://:{wrong}@127.0.0.1:{port}/'\n"))
            .await
            .as_deref(),
        Some("auth")
    );
    // No password for a server that needs one (NOAUTH).
    assert_eq!(
        failure_of(&format!("url: 'redis://127.0.0.1:{port}/'\n"))
            .await
            .as_deref(),
        Some("auth")
    );
    // A closed port, a name that does not resolve, a port that never answers, and
    // something that is not Redis.
    let unreachable = mcpwatch_tests::ports::unreachable();
    for (reason, host, port) in &unreachable.cases {
        assert_eq!(
            failure_of(&format!(
                "url: 'redis://:pw@{host}:{port}/'\nresponse_timeout: 1s\n"
            ))
            .await
            .as_deref(),
            Some(*reason),
            "{host}:{port}"
        );
    }
    // A certificate from a CA the exporter does not trust.
    let (_ca, cert, key) = mcpwatch_tests::tls::ca_and_server("127.0.0.1");
    let tls = RedisServer::start_tls(&cert, &key).await;
    assert_eq!(
        failure_of(&format!(
            "url: 'rediss://:{}@127.0.0.1:{}/'\n",
            tls.password(),
            tls.port()
        ))
        .await
        .as_deref(),
        Some("tls")
    );
    drop(clients);
}

/// A stand-in for a Redis server older than 6 (no `HELLO`, so no RESP3) on a loopback
/// port: it answers `AUTH`, `CLIENT`, `PING` and a minimal `INFO`, refuses the rest as
/// unknown commands, and records the commands it got.
fn redis5_stand_in() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let commands = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = commands.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let count: usize = line.trim().trim_start_matches('*').parse().unwrap_or(0);
                    let mut args = Vec::new();
                    for _ in 0..count {
                        line.clear();
                        reader.read_line(&mut line).expect("length");
                        let len: usize = line.trim().trim_start_matches('$').parse().expect("len");
                        let mut arg = vec![0; len + 2];
                        reader.read_exact(&mut arg).expect("argument");
                        args.push(String::from_utf8_lossy(&arg[..len]).to_uppercase());
                    }
                    let name = args.first().cloned().unwrap_or_default();
                    seen.lock().expect("lock").push(name.clone());
                    let info = "# Server\r\nredis_version:5.0.14\r\n";
                    let reply = match name.as_str() {
                        "HELLO" => {
                            "-ERR unknown command `HELLO`, with args beginning with: `3`, \r\n"
                                .to_owned()
                        }
                        "AUTH" | "CLIENT" => "+OK\r\n".to_owned(),
                        "PING" => "+PONG\r\n".to_owned(),
                        "INFO" => format!("${}\r\n{info}\r\n", info.len()),
                        _ => "-ERR unknown command\r\n".to_owned(),
                    };
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, commands)
}

#[tokio::test]
async fn a_server_without_hello_is_spoken_to_in_resp2() {
    let (port, commands) = redis5_stand_in();
    let engine = engine(&format!(
        "name: old\nurl: 'redis://:pw@127.0.0.1:{port}/'\n"
    ));
    for _ in 0..2 {
        let scrape = mcpwatch_tests::engine::scrape(&engine, None).await;
        assert_eq!(
            value(&scrape, "redis_up", &[]),
            1.0,
            "{:?}",
            engine.status()
        );
        assert_eq!(connect_failure(&scrape), None);
        assert!(
            scrape
                .value("redis_instance_info", &[("version", "5.0.14")])
                .is_some()
        );
    }
    let commands = commands.lock().expect("lock").clone();
    // HELLO once, then AUTH on a new connection; RESP2 is kept after that.
    assert_eq!(
        commands.iter().filter(|c| *c == "HELLO").count(),
        1,
        "{commands:?}"
    );
    assert_eq!(commands[..2], ["HELLO", "AUTH"], "{commands:?}");
}
