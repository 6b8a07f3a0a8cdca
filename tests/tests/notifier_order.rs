//! Order and reminders end to end, with a real Alertmanager posting to the
//! `mcpwatch-notifier` binary: a firing notification every receiver refused once, then its
//! resolve, ends resolved everywhere (PagerDuty included) and the firing one is never sent
//! after it; reminders at a short `repeat_interval` are delivered, not taken for copies.

use std::time::Duration;

use mcpwatch_tests::alertmanager::{Alertmanager, alert, resolved_alert};
use mcpwatch_tests::notifier::NotifierProcess;
use mcpwatch_tests::stand_in::{HttpStandIn, ReceivedRequest, Scripted, Service};

const LIMIT: Duration = Duration::from_secs(30);

fn alertmanager_config(notifier: &NotifierProcess, repeat_interval: &str) -> String {
    format!(
        "route:\n  receiver: mcpwatch\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: {repeat_interval}\n\
         receivers:\n  - name: mcpwatch\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
        notifier.webhook_url()
    )
}

/// Whether a request a stand-in received tells the alert resolved (true) or firing.
fn resolved(service: Service, request: &ReceivedRequest) -> bool {
    let body = request.json();
    match service {
        Service::PagerDuty => match body["event_action"].as_str() {
            Some("resolve") => true,
            Some("trigger") => false,
            other => panic!("PagerDuty event_action {other:?}"),
        },
        Service::Webhook => match body["status"].as_str() {
            Some("resolved") => true,
            Some("firing") => false,
            other => panic!("webhook status {other:?}"),
        },
        Service::Slack => {
            let text = body.to_string();
            text.contains("RESOLVED") || text.contains("Resolved") || text.contains("resolved")
        }
        Service::Teams => match body["attachments"][0]["content"]["body"][0]["style"].as_str() {
            Some("good") => true,
            Some("attention" | "warning") => false,
            other => panic!("Teams card style {other:?}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_refused_once_then_resolved_ends_resolved_at_every_receiver() {
    let stand_ins = [
        HttpStandIn::pagerduty().await,
        HttpStandIn::slack().await,
        HttpStandIn::webhook().await,
        HttpStandIn::teams().await,
    ];
    for stand_in in &stand_ins {
        stand_in.push_response(Scripted::Status(503, "{}".into()));
    }
    // The retry is due well after the resolve arrives.
    let notifier = NotifierProcess::start(&format!(
        "delivery:\n  retry: {{initial_backoff: 6s, max_backoff: 10s, jitter: 0.1}}\n\
         channels:\n\
         \x20 pager:\n    pagerduty: {{routing_key: R0UT1NGKEY, url: '{}'}}\n\
         \x20 chat:\n    slack: {{url: '{}'}}\n\
         \x20 hook:\n    webhook: {{url: '{}'}}\n\
         \x20 teams:\n    teams: {{url: '{}'}}\n\
         route:\n  channels: [pager, chat, hook, teams]\n",
        stand_ins[0].endpoint(),
        stand_ins[1].endpoint(),
        stand_ins[2].endpoint(),
        stand_ins[3].endpoint(),
    ))
    .await;
    let am = Alertmanager::start(&alertmanager_config(&notifier, "1h")).await;
    let labels = [
        ("alertname", "McpGatewayDown"),
        ("severity", "critical"),
        ("service", "mcp"),
    ];
    let annotations = [("summary", "The MCP gateway is down.")];
    am.push_alerts(&[alert(&labels, &annotations)]).await;
    for stand_in in &stand_ins {
        let first = stand_in.wait_for_requests(1, LIMIT).await;
        assert_eq!(first[0].status, Some(503));
        assert!(!resolved(stand_in.service(), &first[0]));
    }
    am.push_alerts(&[resolved_alert(&labels, &annotations)])
        .await;
    for stand_in in &stand_ins {
        stand_in.wait_for_requests(2, LIMIT).await;
    }
    // Past the firing notification's retry: nothing more comes.
    tokio::time::sleep(Duration::from_secs(9)).await;
    for stand_in in &stand_ins {
        let requests = stand_in.requests();
        let told: Vec<(bool, Option<u16>)> = requests
            .iter()
            .map(|r| (resolved(stand_in.service(), r), r.status))
            .collect();
        assert_eq!(
            told,
            [
                (false, Some(503)),
                (true, Some(stand_in_ok(stand_in.service())))
            ],
            "{:?}: the refused firing state, then the resolve alone",
            stand_in.service()
        );
    }
    // The firing delivery is shown superseded.
    let list = notifier
        .get_json("/api/v1/notifications?state=superseded")
        .await;
    let superseded = list["notifications"].as_array().expect("list");
    assert_eq!(superseded.len(), 1, "{list}");
    assert_eq!(superseded[0]["status"], "firing");
    assert_eq!(
        superseded[0]["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .filter(|d| d["state"] == "superseded")
            .count(),
        4
    );
}

fn stand_in_ok(service: Service) -> u16 {
    match service {
        Service::PagerDuty | Service::Teams => 202,
        Service::Slack | Service::Webhook => 200,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_at_a_4s_repeat_interval_are_delivered() {
    let hook = HttpStandIn::webhook().await;
    // The first delivery is refused once and retried; the reminders after it go through.
    hook.push_response(Scripted::Status(503, "{}".into()));
    let notifier = NotifierProcess::start(&format!(
        "delivery:\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        hook.endpoint()
    ))
    .await;
    let am = Alertmanager::start(&alertmanager_config(&notifier, "4s")).await;
    am.push_alerts(&[alert(
        &[("alertname", "ToolErrorRateHigh"), ("severity", "warning")],
        &[("summary", "Tool calls fail.")],
    )])
    .await;
    // The first notification (refused, then retried) and two reminders.
    let requests = hook.wait_for_requests(4, LIMIT).await;
    let statuses: Vec<Option<u16>> = requests.iter().take(4).map(|r| r.status).collect();
    assert_eq!(statuses, [Some(503), Some(200), Some(200), Some(200)]);
    let received = notifier
        .metric("mcpwatch_notifier_notifications_received_total")
        .await;
    let duplicates = notifier
        .metric("mcpwatch_notifier_notifications_duplicate_total")
        .await;
    assert_eq!(duplicates, 0.0, "no reminder was taken for a copy");
    assert!(received >= 3.0, "{received}");
    // Every reminder Alertmanager sent was delivered: one request per stored notification,
    // besides the refused first attempt.
    let list = notifier.get_json("/api/v1/notifications?limit=100").await;
    let notifications = list["notifications"].as_array().expect("list");
    let delivered = notifications
        .iter()
        .filter(|n| n["deliveries"][0]["state"] == "delivered")
        .count();
    let sent = hook
        .requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .count();
    assert!(delivered >= 3, "{list}");
    assert!(
        sent >= delivered && sent <= notifications.len(),
        "{sent} sent for {} notifications",
        notifications.len()
    );
}
