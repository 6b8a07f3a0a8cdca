//! Two notifier processes sharing one real PostgreSQL behind a real Alertmanager pair:
//! every notification is delivered once whichever replica received it, and `kill -9` of one
//! replica under load loses nothing acknowledged and repeats only what it had in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mcpwatch_tests::alertmanager::{Alertmanager, alert};
use mcpwatch_tests::notifier::{NotifierProcess, load_payload};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::stand_in::HttpStandIn;

const LIMIT: Duration = Duration::from_secs(60);

/// Fast retries, and a short attempt timeout so that a dead replica's claims (the timeout
/// plus 10 s) expire within the test.
const DELIVERY: &str =
    "delivery:\n  timeout: 2s\n  retry: {initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}\n";

/// groupKey -> (requests, distinct Idempotency-Key values) seen at the sink.
fn sink_counts(hook: &HttpStandIn) -> BTreeMap<String, (usize, BTreeSet<String>)> {
    let mut counts: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for request in hook.requests().iter().filter(|r| r.status == Some(200)) {
        let key = request.json()["groupKey"].as_str().unwrap_or("").to_owned();
        let entry = counts.entry(key).or_default();
        entry.0 += 1;
        entry
            .1
            .insert(request.header("idempotency-key").unwrap_or("").to_owned());
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_deliver_once_and_survive_kill_9() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    let hook = HttpStandIn::webhook().await;
    let config = format!(
        "storage:\n  postgres: {{dsn: '{}'}}\n{DELIVERY}channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        dsn,
        hook.endpoint()
    );
    // Started together: the schema is created once, under the advisory lock.
    let (mut a, b) = tokio::join!(
        NotifierProcess::start(&config),
        NotifierProcess::start(&config)
    );
    assert!(
        !a.log().contains(pg.password()) && !b.log().contains(pg.password()),
        "the password reached a log"
    );

    // An Alertmanager pair, each peer sending every notification to both replicas.
    let am_config = format!(
        "route:\n  receiver: mcpwatch\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: mcpwatch\n    webhook_configs:\n      - url: {}\n      - url: {}\n",
        a.webhook_url(),
        b.webhook_url()
    );
    let pair = Alertmanager::start_cluster(&am_config, 2).await;
    let alerts: Vec<_> = (0..10)
        .map(|i| {
            alert(
                &[
                    ("alertname", &format!("ProviderDown{i}")),
                    ("severity", "critical"),
                ],
                &[("summary", "A provider is down.")],
            )
        })
        .collect();
    for peer in &pair {
        peer.push_alerts(&alerts).await;
    }
    mcpwatch_tests::wait_for_async("ten groups delivered", LIMIT, || {
        let hook = &hook;
        async move { (sink_counts(hook).len() >= 10).then_some(()) }
    })
    .await;
    // Copies still arriving (the second peer, retries) must change nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let counts = sink_counts(&hook);
    assert_eq!(counts.len(), 10, "{counts:?}");
    for (key, (requests, _)) in &counts {
        assert_eq!(*requests, 1, "delivered {requests} times: {key}");
    }
    let received = a
        .metric("mcpwatch_notifier_notifications_received_total")
        .await
        + b.metric("mcpwatch_notifier_notifications_received_total")
            .await;
    assert!(received >= 20.0, "{received} copies received");
    drop(pair);

    // Load: every webhook posted to both replicas, as an HA pair does; kill -9 of one.
    let client = mcpwatch_tests::http::client();
    let urls = [a.webhook_url(), b.webhook_url()];
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut senders = Vec::new();
    for worker in 0..6 {
        let client = client.clone();
        let urls = urls.clone();
        let acked = acked_tx.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..60 {
                let (key, body) = load_payload(worker, i);
                let body = body.to_string();
                let mut any = false;
                for url in &urls {
                    let sent = client
                        .post(url)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    any |= matches!(sent, Ok(r) if r.status().is_success());
                }
                if any {
                    let _ = acked.send(key);
                }
            }
        }));
    }
    drop(acked_tx);
    let mut acked = BTreeSet::new();
    while acked.len() < 120 {
        match acked_rx.recv().await {
            Some(key) => {
                acked.insert(key);
            }
            None => break,
        }
    }
    a.kill();
    // What was in flight when it died: the only deliveries that may be sent twice.
    let in_flight: BTreeSet<String> = pg
        .admin("notifier")
        .await
        .query(
            "SELECT n.group_key FROM mcpwatch_deliveries d
             JOIN mcpwatch_notifications n ON n.id = d.notification_id WHERE d.state = 'sending'",
            &[],
        )
        .await
        .expect("in flight")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for sender in senders {
        let _ = sender.await;
    }
    while let Ok(key) = acked_rx.try_recv() {
        acked.insert(key);
    }
    assert!(acked.len() >= 120, "{} acknowledged", acked.len());

    // The survivor delivers everything acknowledged, the dead replica's claims included
    // once they expire.
    mcpwatch_tests::wait_for_async("every acknowledged webhook delivered", LIMIT, || {
        let (hook, acked) = (&hook, &acked);
        async move {
            let counts = sink_counts(hook);
            acked
                .iter()
                .all(|key| counts.contains_key(key))
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = sink_counts(&hook);
    for key in &acked {
        let (requests, keys) = &counts[key];
        assert_eq!(keys.len(), 1, "not delivered exactly once: {key}");
        if *requests > 1 {
            assert!(
                in_flight.contains(key),
                "sent {requests} times though not in flight: {key}"
            );
        }
    }
    let stored: i64 = pg
        .admin("notifier")
        .await
        .query_one(
            "SELECT count(*) FROM mcpwatch_notifications WHERE group_key LIKE '%Load%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        usize::try_from(stored).unwrap_or(0),
        counts.keys().filter(|k| k.contains("Load")).count(),
        "every copy posted to both replicas stored once"
    );
    drop(b);
}
