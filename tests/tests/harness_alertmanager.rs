//! The Alertmanager harness against the real Alertmanager: alone and as a cluster of two,
//! notifying a webhook receiver of the alerts a test pushes; and `amtool check-config`.

use std::time::Duration;

use mcpwatch_tests::alertmanager::{Alertmanager, alert, check_config, resolved_alert};
use mcpwatch_tests::stand_in::HttpStandIn;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

fn config(webhook: &str) -> String {
    format!(
        "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{webhook}'\n"
    )
}

fn notifications(receiver: &HttpStandIn) -> Vec<Value> {
    receiver
        .requests()
        .iter()
        .map(mcpwatch_tests::stand_in::ReceivedRequest::json)
        .collect()
}

#[tokio::test]
async fn a_single_alertmanager_notifies_firing_then_resolved() {
    let receiver = HttpStandIn::webhook().await;
    let alertmanager = Alertmanager::start(&config(&receiver.endpoint())).await;
    let status = alertmanager.status().await;
    assert_eq!(status["cluster"]["status"], "disabled", "{status}");

    let labels = [
        ("alertname", "DiskFull"),
        ("instance", "db1"),
        ("severity", "critical"),
    ];
    let annotations = [("summary", "Disk of db1 is full")];
    alertmanager
        .push_alerts(&[alert(&labels, &annotations)])
        .await;
    receiver.wait_for_requests(1, LIMIT).await;
    let firing = &notifications(&receiver)[0];
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["receiver"], "hook");
    assert_eq!(firing["externalURL"], alertmanager.url());
    assert_eq!(firing["alerts"][0]["labels"]["instance"], "db1");
    assert_eq!(
        firing["alerts"][0]["annotations"]["summary"],
        "Disk of db1 is full"
    );
    assert_eq!(alertmanager.alerts().await.len(), 1);

    alertmanager
        .push_alerts(&[resolved_alert(&labels, &annotations)])
        .await;
    let requests = receiver.wait_for_requests(2, LIMIT).await;
    let resolved = requests[1].json();
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert!(
        alertmanager.log().contains("Notify success"),
        "{}",
        alertmanager.log()
    );
}

#[tokio::test]
async fn a_cluster_of_two_forms_and_notifies_once() {
    let receiver = HttpStandIn::webhook().await;
    let peers = Alertmanager::start_cluster(&config(&receiver.endpoint()), 2).await;
    assert_eq!(peers.len(), 2);
    for peer in &peers {
        let status = peer.status().await;
        assert_eq!(status["cluster"]["status"], "ready", "{status}");
        assert_eq!(
            status["cluster"]["peers"].as_array().map(Vec::len),
            Some(2),
            "{status}"
        );
    }

    let mut positions = Vec::new();
    for peer in &peers {
        positions.push(peer.cluster_position().await);
    }
    positions.sort_unstable();
    assert_eq!(positions, [Some(0), Some(1)]);

    // As Prometheus does, the alert goes to every peer; the first peer notifies, the second
    // sees that in the gossiped notification log and does not.
    let firing = alert(&[("alertname", "ServerDown"), ("instance", "mcp1")], &[]);
    for peer in &peers {
        peer.push_alerts(std::slice::from_ref(&firing)).await;
    }
    receiver.wait_for_requests(1, LIMIT).await;
    tokio::time::sleep(mcpwatch_tests::alertmanager::PEER_TIMEOUT * 2).await;
    let received = notifications(&receiver);
    assert_eq!(
        received.len(),
        1,
        "{received:?}\n{}\n{}",
        peers[0].log(),
        peers[1].log()
    );
    assert_eq!(received[0]["alerts"][0]["labels"]["instance"], "mcp1");

    // An alert pushed to one peer only is notified by that one.
    let only = alert(&[("alertname", "OnlyOne")], &[]);
    peers[1].push_alerts(&[only]).await;
    let requests = receiver.wait_for_requests(2, LIMIT).await;
    assert_eq!(requests[1].json()["groupLabels"]["alertname"], "OnlyOne");

    // A stopped peer leaves: the other one sees a cluster of one.
    let mut peers = peers;
    peers[0].stop();
    let remaining = &peers[1];
    mcpwatch_tests::wait_for_async("the cluster to shrink to one", LIMIT, || async {
        let status = remaining.status().await;
        (status["cluster"]["peers"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
}

#[test]
fn amtool_checks_configurations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, config("http://127.0.0.1:9/hook")).expect("write");
    let (valid, output) = check_config(&good);
    assert!(valid, "{output}");

    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "route:\n  receiver: missing\nreceivers: []\n").expect("write");
    let (valid, output) = check_config(&bad);
    assert!(!valid, "{output}");
    assert!(output.contains("missing"), "{output}");
}
