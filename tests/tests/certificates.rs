//! Certificates, as the exporter binary reports them: behind an https MCP daemon, behind
//! PostgreSQL and Redis with TLS, and in files. A private CA issues a leaf that expires in
//! 5 days through an intermediate that expires in 3, with a stale certificate sent along
//! that expires in 1: the leaf's, the presented chain's and the verified chain's expiries
//! each come out exact to the second. An expired leaf fails the handshake and is still
//! reported. A file of three certificates, a garbage file, a key and a missing file each
//! have their state.

use std::time::Duration;

use mcpwatch_tests::binaries::start_exporter;
use mcpwatch_tests::daemon::{Behaviour, Daemon};
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::postgres::{MONITOR_USER, PostgresOptions, PostgresServer};
use mcpwatch_tests::redis::RedisServer;
use mcpwatch_tests::tls::Authority;
use mcpwatch_tests::tools::promtool_check_metrics;
use mcpwatch_tests::wait_for_async;

const DAY: i64 = 86_400;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// A `tls_expiry_timestamp_seconds` series.
fn expiry(target: &str, collector: &str, server: &str, chain: &str) -> String {
    series(
        "tls_expiry_timestamp_seconds",
        &[
            ("target", target),
            ("collector", collector),
            ("server", server),
            ("chain", chain),
        ],
    )
}

fn verified(target: &str, collector: &str, server: &str) -> String {
    series(
        "tls_chain_verified",
        &[
            ("target", target),
            ("collector", collector),
            ("server", server),
        ],
    )
}

async fn scrape(address: std::net::SocketAddr) -> String {
    let text = client()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    checked(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiries_of_every_tls_target_and_file_exact_to_the_second() {
    let now = unix_now();
    let root = Authority::root("mcpwatch test root", now + 400 * DAY);
    let intermediate = root.intermediate("mcpwatch test intermediate", now + 3 * DAY);
    let leaf_until = now + 5 * DAY;
    let (leaf, key) = intermediate.server(&["127.0.0.1", "localhost"], leaf_until);
    // An old certificate servers still send along: expires first, on no verified path.
    let stale = Authority::root("stale cross-signed root", now + DAY);
    let chain = format!("{leaf}{}", intermediate.pem);
    let presented = format!("{chain}{}", stale.pem);
    let (expired_leaf, expired_key) = root.server(&["127.0.0.1"], now - 3600);

    let dir = tempfile::tempdir().expect("tempdir");
    let root_file = dir.path().join("root.pem");
    std::fs::write(&root_file, &root.pem).expect("root");

    let daemon = Daemon::start_tls(Behaviour::default(), &presented, &key).await;
    // The same daemon's MCP endpoint on another port, with a certificate of its own: two
    // servers of one host, neither hiding the other.
    let (other_leaf, other_key) = root.server(&["127.0.0.1"], now + 22 * DAY);
    let other = Daemon::start_tls(Behaviour::default(), &other_leaf, &other_key).await;
    let expired = Daemon::start_tls(Behaviour::default(), &expired_leaf, &expired_key).await;
    let pg = PostgresServer::start(PostgresOptions {
        tls: Some((chain.clone(), key.clone())),
        ..PostgresOptions::default()
    })
    .await;
    let redis = RedisServer::start_tls(&chain, &key).await;

    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).expect("certs");
    let bundle = [
        Authority::root("bundle one", now + 40 * DAY).pem,
        Authority::root("bundle two", now + 20 * DAY).pem,
        Authority::root("bundle three", now - 60).pem,
    ]
    .concat();
    std::fs::write(certs.join("bundle.pem"), bundle).expect("bundle");
    std::fs::write(certs.join("garbage.pem"), "garbage, not a certificate\n").expect("garbage");
    std::fs::write(certs.join("server.key.pem"), &key).expect("key");

    let config = format!(
        "collectors:\n  host: {{ enabled: false }}\n  wsdaemon:\n    \
         - name: exai\n      health_url: {}\n      websocket_url: {}\n      ca_file: {root}\n    \
         - name: expired\n      health_url: {}\n      ca_file: {root}\n  postgres:\n    \
         - name: db\n      dsn: 'postgresql://{MONITOR_USER}:{}@127.0.0.1:{}/postgres?sslmode=verify-full'\n      \
         ca_file: {root}\n  redis:\n    \
         - name: cache\n      url: '{}'\n      ca_file: {root}\n  certificates:\n    \
         - name: files\n      paths: ['{certs}/*.pem', '{certs}/missing.crt']\n",
        daemon.health_url(),
        other.websocket_url(),
        expired.health_url(),
        pg.password(),
        pg.port(),
        redis.url().replace("redis://", "rediss://"),
        root = root_file.display(),
        certs = certs.display(),
    );
    // Each target's server, as its chain is labelled: the address and port connected to.
    let port_of = |url: String| {
        url.rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next().map(str::to_owned))
            .expect("port")
    };
    let ports = [
        ("exai", port_of(daemon.health_url())),
        ("expired", port_of(expired.health_url())),
        ("exai-mcp", port_of(other.websocket_url())),
        ("db", pg.port().to_string()),
        ("cache", redis.port().to_string()),
    ];
    let server_of = move |target: &str| {
        let port = &ports.iter().find(|(t, _)| *t == target).expect("target").1;
        format!("127.0.0.1:{port}")
    };
    let server = &server_of;
    let (exporter, address) = start_exporter(dir.path(), &config, &[]).await;
    let text = wait_for_async(
        "every TLS target's certificates",
        Duration::from_secs(30),
        || async move {
            let text = scrape(address).await;
            ["exai", "expired"]
                .iter()
                .map(|t| (*t, "wsdaemon"))
                .chain([("db", "postgres"), ("cache", "redis")])
                .all(|(target, collector)| {
                    value_of(&text, &expiry(target, collector, &server(target), "leaf")).is_some()
                })
                .then_some(text)
        },
    )
    .await;
    let value = |series: &str| value_of(&text, series);
    let at = |seconds: i64| Some(seconds as f64);

    // The daemon: leaf, earliest presented (the stale one), verified (the intermediate).
    assert_eq!(
        value(&expiry("exai", "wsdaemon", &server("exai"), "leaf")),
        at(leaf_until),
        "{text}"
    );
    assert_eq!(
        value(&expiry("exai", "wsdaemon", &server("exai"), "presented")),
        at(now + DAY)
    );
    assert_eq!(
        value(&expiry("exai", "wsdaemon", &server("exai"), "verified")),
        at(now + 3 * DAY)
    );
    assert_eq!(
        value(&verified("exai", "wsdaemon", &server("exai"))),
        Some(1.0)
    );
    let health_endpoint = format!("server=\"{}\"", server("exai"));
    let depth = |d: &str, subject: &str| {
        text.lines().find(|l| {
            l.starts_with("tls_certificate_expiry_timestamp_seconds{target=\"exai\"")
                && l.contains(&health_endpoint)
                && l.contains(&format!("depth=\"{d}\""))
                && l.contains(&format!("subject=\"CN={subject}\""))
        })
    };
    assert!(depth("0", "127.0.0.1").is_some(), "{text}");
    assert!(depth("1", "mcpwatch test intermediate").is_some(), "{text}");
    assert!(depth("2", "stale cross-signed root").is_some(), "{text}");
    assert!(
        depth("0", "127.0.0.1")
            .expect("leaf")
            .contains("issuer=\"CN=mcpwatch test intermediate\""),
        "{text}"
    );

    // The expired leaf failed the handshake, and is reported: its verified chain is
    // itself (as of when it was valid), and the chain does not verify now.
    assert_eq!(
        value(&expiry("expired", "wsdaemon", &server("expired"), "leaf")),
        at(now - 3600)
    );
    assert_eq!(
        value(&expiry(
            "expired",
            "wsdaemon",
            &server("expired"),
            "verified"
        )),
        at(now - 3600)
    );
    assert_eq!(
        value(&verified("expired", "wsdaemon", &server("expired"))),
        Some(0.0)
    );
    assert_eq!(value("wsdaemon_up{target=\"expired\"}"), Some(0.0));
    assert_eq!(value("wsdaemon_up{target=\"exai\"}"), Some(1.0));

    // PostgreSQL and Redis: leaf and intermediate.
    for (target, collector) in [("db", "postgres"), ("cache", "redis")] {
        assert_eq!(
            value(&expiry(target, collector, &server(target), "leaf")),
            at(leaf_until),
            "{target}"
        );
        assert_eq!(
            value(&expiry(target, collector, &server(target), "presented")),
            at(now + 3 * DAY)
        );
        assert_eq!(
            value(&expiry(target, collector, &server(target), "verified")),
            at(now + 3 * DAY)
        );
        assert_eq!(
            value(&verified(target, collector, &server(target))),
            Some(1.0),
            "{target}"
        );
    }
    assert_eq!(value("pg_up{target=\"db\"}"), Some(1.0));
    assert_eq!(value("redis_up{target=\"cache\"}"), Some(1.0));

    // Files.
    let state = |file: &str, state: &str| {
        value(&series(
            "certificate_file_state",
            &[
                ("target", "files"),
                ("path", &certs.join(file).display().to_string()),
                ("state", state),
            ],
        ))
    };
    assert_eq!(state("bundle.pem", "ok"), Some(1.0));
    assert_eq!(state("garbage.pem", "unparsable"), Some(1.0));
    assert_eq!(state("garbage.pem", "ok"), Some(0.0));
    assert_eq!(state("server.key.pem", "no_certificate"), Some(1.0));
    assert_eq!(state("missing.crt", "missing"), Some(1.0));
    assert_eq!(value("certificate_files{target=\"files\"}"), Some(4.0));
    let bundle_path = certs.join("bundle.pem").display().to_string();
    let expiries: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.starts_with("certificate_file_expiry_timestamp_seconds{")
                && l.contains(&format!("path=\"{bundle_path}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(
        expiries,
        [now + 40 * DAY, now + 20 * DAY, now - 60].map(|s| s as f64)
    );
    // No key material, whatever the file held.
    let key_body: String = key.lines().nth(1).expect("key line").to_owned();
    assert!(!text.contains(&key_body));
    assert!(!exporter.output().contains(&key_body));

    let findings = promtool_check_metrics(text.as_bytes());
    assert!(findings.is_empty(), "promtool check metrics:\n{findings}");
    drop((daemon, other, expired, pg, redis));
}
