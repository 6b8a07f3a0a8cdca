//! The notifier's dispatcher against the `mcpwatch-notifier` binary: a burst above the
//! in-flight limit is sent as slots free up, not at the next poll; shutdown waits for the
//! deliveries in flight up to `delivery.shutdown_grace`; `--check-config` locates a bad
//! header value.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::notifier::{NotifierProcess, load_payload};
use mcpwatch_tests::stand_in::{HttpStandIn, Scripted};

/// Far longer than the test waits: a delivery that arrives in time was not sent by a poll.
const POLL: &str = "60s";
/// How long the test waits for deliveries: half the poll interval.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_above_the_in_flight_limit_goes_out_without_waiting_for_a_poll() {
    let hook = HttpStandIn::webhook().await;
    let limit = 2;
    let notifier = NotifierProcess::start(&format!(
        "delivery:\n  poll_interval: {POLL}\n  max_in_flight_per_channel: {limit}\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        hook.endpoint()
    ))
    .await;
    // The first attempts are held until the whole burst is stored: what follows them can
    // only be claimed when their slots free up.
    for _ in 0..limit {
        hook.push_response(Scripted::Hang(Duration::from_secs(2)));
    }
    let burst = 3 * limit;
    let mut keys = Vec::new();
    for i in 0..burst {
        let (key, body) = load_payload(0, i);
        let (status, answer) = notifier.post(&body, None).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "stored", "{answer}");
        keys.push(key);
    }
    // The only poll ran at start, before the burst; the next is 60 s away. Every delivery
    // within 30 s was claimed because a webhook was stored or an attempt freed its slot.
    let requests = hook.wait_for_requests(burst, WAIT).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for request in &requests {
        let key = request.json()["groupKey"]
            .as_str()
            .expect("groupKey")
            .to_owned();
        *seen.entry(key).or_default() += 1;
    }
    keys.sort();
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), keys, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "each once: {seen:?}");
    // Nothing more comes (a second copy would be a claim made twice).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.requests().len(), burst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_deliveries_in_flight_up_to_the_grace() {
    // Within the grace: the attempt ends, is recorded, and is not sent again on restart.
    let hook = HttpStandIn::webhook().await;
    hook.push_response(Scripted::Hang(Duration::from_secs(2)));
    let mut notifier = NotifierProcess::start(&format!(
        "delivery:\n  shutdown_grace: 15s\n  timeout: 30s\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        hook.endpoint()
    ))
    .await;
    let (_, body) = load_payload(1, 0);
    let (status, answer) = notifier.post(&body, None).await;
    assert_eq!(status, 200, "{answer}");
    hook.wait_for_requests(1, WAIT).await;
    notifier.stop();
    assert!(
        notifier
            .log()
            .contains("Waiting for deliveries and remediation runs in flight."),
        "{}",
        notifier.log()
    );
    notifier.start_again().await;
    let list = notifier
        .get_json("/api/v1/notifications?state=delivered")
        .await;
    assert_eq!(
        list["notifications"].as_array().map(Vec::len),
        Some(1),
        "the attempt in flight at shutdown was recorded: {list}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.requests().len(), 1);

    // Past the grace: the notifier stops without the attempt, long before it would end.
    let slow = HttpStandIn::webhook().await;
    slow.push_response(Scripted::Hang(Duration::from_secs(60)));
    let mut notifier = NotifierProcess::start(&format!(
        "delivery:\n  shutdown_grace: 1s\n  timeout: 90s\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        slow.endpoint()
    ))
    .await;
    let (status, answer) = notifier.post(&body, None).await;
    assert_eq!(status, 200, "{answer}");
    slow.wait_for_requests(1, WAIT).await;
    let stopping = Instant::now();
    // The harness sends SIGKILL after 20 s; stopping before that is the notifier's doing.
    notifier.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "{}",
        notifier.log()
    );
    let log = notifier.log();
    assert!(
        log.contains("Stopped with deliveries or remediation runs still in flight"),
        "{log}"
    );
    assert!(log.contains("Stopped."), "{log}");
}

#[test]
fn check_config_locates_a_bad_header_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notifier.yml");
    std::fs::write(
        &path,
        "channels:\n  hook:\n    webhook:\n      url: 'https://example.com/hook'\n      headers:\n        Authorization: \"Bearer hunter6\\r\\nX-Other: 1\"\nroute:\n  channels: [hook]\n",
    )
    .expect("write config");
    let out = Command::new(workspace_binary("mcpwatch-notifier"))
        .arg("--check-config")
        .arg(format!("--config.file={}", path.display()))
        .output()
        .expect("run the notifier");
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "notifier.yml");
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("notifier.yml:6:"), "{stderr}");
    assert!(
        stderr.contains("channels.hook.webhook.headers.Authorization: not a valid header value"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter6"), "{stderr}");
}
