//! Escalation, acknowledgement and maintenance windows, end to end: a notifier process
//! with delays shortened to seconds, webhook and PagerDuty stand-ins as the levels' sinks,
//! and the same suite on the embedded SQLite store and on a real PostgreSQL.

use std::time::{Duration, Instant};

use mcpwatch_notifier::ack::{Action, LinkSigner};
use mcpwatch_notifier::channels::pagerduty_dedup_key;
use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::notifier::{NotifierProcess, TestAlert, payload};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::stand_in::{HttpStandIn, ReceivedRequest};
use serde_json::Value;

const TOKEN: &str = "admin-token-for-the-api";
const ACK_SECRET: &str = "ack-link-secret-0123456789";
const BASE: &str = "https://notifier.example.com";
/// The delay of levels 2 and 3.
const STEP: Duration = Duration::from_secs(3);
/// Slack for the order of delivery after a due time (the tick is 1 s).
const TOLERANCE: Duration = Duration::from_millis(250);
const LIMIT: Duration = Duration::from_secs(30);

struct Sinks {
    l1: HttpStandIn,
    l2: HttpStandIn,
    l3: HttpStandIn,
    pager: HttpStandIn,
}

impl Sinks {
    async fn start() -> Self {
        Self {
            l1: HttpStandIn::webhook().await,
            l2: HttpStandIn::webhook().await,
            l3: HttpStandIn::webhook().await,
            pager: HttpStandIn::pagerduty().await,
        }
    }

    fn config(&self, storage: &str) -> String {
        format!(
            "{storage}delivery:\n  timeout: 2s\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
             api:\n  auth: {{bearer_token: {TOKEN}}}\n\
             acknowledgement:\n  external_url: {BASE}\n  secret: {ACK_SECRET}\n  link_ttl: 1h\n\
             channels:\n  l1:\n    webhook: {{url: '{}'}}\n  l2:\n    webhook: {{url: '{}'}}\n  l3:\n    webhook: {{url: '{}'}}\n\
             \x20 pager:\n    pagerduty: {{routing_key: R0UT1NGKEY0123, url: '{}'}}\n\
             escalation_policies:\n  default:\n    levels:\n\
             \x20     - {{name: on-call engineer, channels: [l1, pager]}}\n\
             \x20     - {{name: senior engineer, after: 3s, channels: [l2]}}\n\
             \x20     - {{name: engineering manager, after: 3s, channels: [l3]}}\n\
             route:\n  channels: [l1]\n  routes:\n    - matchers: ['severity=\"critical\"']\n      escalation: default\n",
            self.l1.endpoint(),
            self.l2.endpoint(),
            self.l3.endpoint(),
            self.pager.endpoint(),
        )
    }
}

/// The messages a webhook sink received for one group, in order.
fn messages(sink: &HttpStandIn, group: &str) -> Vec<(Instant, Value)> {
    sink.requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .map(|r: &ReceivedRequest| (r.at, r.json()))
        .filter(|(_, body)| body["groupKey"] == group)
        .collect()
}

async fn wait_messages(sink: &HttpStandIn, group: &str, n: usize) -> Vec<(Instant, Value)> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let found = messages(sink, group);
        if found.len() >= n || Instant::now() > deadline {
            assert!(
                found.len() >= n,
                "{n} messages for {group} expected, {} arrived",
                found.len()
            );
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(message: &Value) -> &Value {
    &message["mcpwatch"]["event"]
}

fn group(name: &str) -> String {
    format!("{{}}:{{alertname=\"{name}\"}}")
}

/// A webhook for group `name`: each alert (its instance label, status).
fn webhook(name: &str, severity: &str, alerts: &[(&str, &str)]) -> Value {
    let labels: Vec<Vec<(&str, &str)>> = alerts
        .iter()
        .map(|(instance, _)| {
            vec![
                ("alertname", name),
                ("severity", severity),
                ("service", "mcp"),
                ("instance", instance),
            ]
        })
        .collect();
    let test_alerts: Vec<TestAlert<'_>> = labels
        .iter()
        .zip(alerts)
        .map(|(l, (_, status))| (l.as_slice(), *status, "2026-11-22T10:00:00Z"))
        .collect();
    payload("mcpwatch", &group(name), &test_alerts, "http://am:9093")
}

async fn post(notifier: &NotifierProcess, body: &Value) {
    let (status, answer) = notifier.post(body, None).await;
    assert_eq!(status, 200, "{answer}");
}

async fn api(
    notifier: &NotifierProcess,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = mcpwatch_tests::http::client();
    let url = format!("{}{path}", notifier.url());
    let mut request = match method {
        "POST" => client.post(url),
        "DELETE" => client.delete(url),
        _ => client.get(url),
    }
    .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Follows a signed link the way a person's browser posts its form: to the notifier, with
/// the link's path and query, without the API's credentials.
async fn follow(notifier: &NotifierProcess, link: &str, by: &str) -> (u16, Value) {
    let path = link
        .strip_prefix(BASE)
        .expect("a link under the external URL");
    let response = mcpwatch_tests::http::client()
        .post(format!("{}{path}", notifier.url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("by={by}"))
        .send()
        .await
        .expect("POST link");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn incident(notifier: &NotifierProcess, id: i64) -> Value {
    let (status, body) = api(notifier, "GET", &format!("/api/v1/incidents/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn pager_events(sink: &HttpStandIn, name: &str) -> Vec<String> {
    let key = pagerduty_dedup_key(&group(name));
    sink.requests()
        .iter()
        .filter(|r| r.status.is_some_and(|s| s < 300))
        .map(ReceivedRequest::json)
        .filter(|b| b["dedup_key"] == key.as_str())
        .map(|b| b["event_action"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Climbs level 2 and 3 at their times; the resolve reaches every level told, and the
/// climb stops.
async fn climbs_and_resolves(notifier: &NotifierProcess, sinks: &Sinks) {
    let name = "GatewayDown";
    let key = group(name);
    let (status, answer) = notifier
        .post(&webhook(name, "critical", &[("gw-1", "firing")]), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    // The answer names the first level's channels, which an incident tells at once.
    assert_eq!(
        answer["channels"],
        serde_json::json!(["l1", "pager"]),
        "{answer}"
    );
    let first = wait_messages(&sinks.l1, &key, 1).await;
    assert_eq!(event(&first[0].1)["kind"], "opened");
    assert_eq!(event(&first[0].1)["level"], 1);
    assert!(
        event(&first[0].1)["ack_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(BASE))
    );
    let second = wait_messages(&sinks.l2, &key, 1).await;
    let third = wait_messages(&sinks.l3, &key, 1).await;
    assert_eq!(event(&second[0].1)["kind"], "escalated");
    assert_eq!(event(&second[0].1)["level_name"], "senior engineer");
    assert_eq!(event(&third[0].1)["level"], 3);
    let to_second = second[0].0 - first[0].0;
    let to_third = third[0].0 - second[0].0;
    assert!(to_second + TOLERANCE >= STEP, "level 2 after {to_second:?}");
    assert!(to_third + TOLERANCE >= STEP, "level 3 after {to_third:?}");
    assert!(pager_events(&sinks.pager, name).contains(&"trigger".to_owned()));

    post(
        notifier,
        &webhook(name, "critical", &[("gw-1", "resolved")]),
    )
    .await;
    for sink in [&sinks.l1, &sinks.l2, &sinks.l3] {
        let all = wait_messages(sink, &key, 2).await;
        let last = &all.last().expect("resolve").1;
        assert_eq!(last["status"], "resolved");
        assert_eq!(event(last)["kind"], "resolved");
    }
    let deadline = Instant::now() + LIMIT;
    while !pager_events(&sinks.pager, name).contains(&"resolve".to_owned()) {
        assert!(Instant::now() < deadline, "PagerDuty got no resolve");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more: the climb stopped (a level would be due within STEP).
    tokio::time::sleep(STEP + Duration::from_secs(1)).await;
    assert_eq!(messages(&sinks.l3, &key).len(), 2);
    assert_eq!(messages(&sinks.l1, &key).len(), 2);
}

/// Bad links change nothing; a good one acknowledges, is announced, stops the climb, and
/// cannot be used again; unack resumes; the `ack` subcommand acknowledges; a new alert in
/// an acknowledged incident reaches the current level only.
async fn acknowledgement(notifier: &NotifierProcess, sinks: &Sinks) {
    let name = "DatabaseUnreachable";
    let key = group(name);
    post(notifier, &webhook(name, "critical", &[("db-1", "firing")])).await;
    let first = wait_messages(&sinks.l1, &key, 1).await;
    let id = event(&first[0].1)["incident"]
        .as_i64()
        .expect("incident id");
    let link = event(&first[0].1)["ack_url"]
        .as_str()
        .expect("ack link")
        .to_owned();

    // Forged (another signature), altered (another incident, generation or expiry),
    // expired, or signed with another key: 403, and nothing changes.
    let signer = LinkSigner::new(mcpwatch_core::Secret::new(ACK_SECRET));
    let expired = signer.link(BASE, Action::Ack, id, 0, 1_000);
    let other_key = LinkSigner::new(mcpwatch_core::Secret::new("another-secret-0123456789")).link(
        BASE,
        Action::Ack,
        id,
        0,
        4_000_000_000,
    );
    let sig_at = link.rfind("sig=").expect("sig") + 4;
    let mut forged = link.clone();
    forged.replace_range(sig_at..sig_at + 4, "AAAA");
    let bad = [
        forged,
        link.replace(
            &format!("/incidents/{id}/"),
            &format!("/incidents/{}/", id + 1),
        ),
        link.replace("generation=0", "generation=1"),
        link.replace("expires=", "expires=9"),
        link.replace("/ack?", "/unack?"),
        expired,
        other_key,
    ];
    for bad_link in &bad {
        let (status, body) = follow(notifier, bad_link, "mallory").await;
        assert_eq!(status, 403, "{bad_link}: {body}");
    }
    let unchanged = incident(notifier, id).await;
    assert_eq!(unchanged["state"], "open", "{unchanged}");
    assert_eq!(unchanged["generation"], 0);
    // A followed link shows a page and changes nothing.
    let page = mcpwatch_tests::http::client()
        .get(format!(
            "{}{}",
            notifier.url(),
            link.strip_prefix(BASE).expect("path")
        ))
        .send()
        .await
        .expect("GET link");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.text()
            .await
            .unwrap_or_default()
            .contains("<form method=\"post\"")
    );
    assert_eq!(incident(notifier, id).await["state"], "open");

    let (status, body) = follow(notifier, &link, "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incident"]["state"], "acknowledged");
    assert_eq!(body["incident"]["acknowledged_by"], "alice");
    // Announced to those told, and PagerDuty acknowledges its incident.
    let announced = wait_messages(&sinks.l1, &key, 2).await;
    assert_eq!(event(&announced[1].1)["kind"], "acknowledged");
    assert_eq!(event(&announced[1].1)["by"], "alice");
    let deadline = Instant::now() + LIMIT;
    while !pager_events(&sinks.pager, name).contains(&"acknowledge".to_owned()) {
        assert!(Instant::now() < deadline, "PagerDuty got no acknowledge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The climb stopped: level 2 would have been due by now.
    tokio::time::sleep(STEP + Duration::from_secs(1)).await;
    assert!(messages(&sinks.l2, &key).is_empty());

    // Taken back through the API: the same link again is a replay, refused.
    let (status, body) = api(
        notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/unack"),
        Some(serde_json::json!({"by": "bob"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incident"]["state"], "open");
    let (status, body) = follow(notifier, &link, "alice").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("used already"),
        "{body}"
    );
    // The climb resumes from level 1: level 2 is told a step later.
    let second = wait_messages(&sinks.l2, &key, 1).await;
    assert_eq!(event(&second[0].1)["kind"], "escalated");

    // The ack subcommand, with the API credentials of the configuration.
    let output = tokio::process::Command::new(workspace_binary("mcpwatch-notifier"))
        .arg(format!(
            "--config.file={}",
            notifier.config_path().display()
        ))
        .args([
            "ack",
            &id.to_string(),
            "--by",
            "carol",
            "--url",
            &notifier.url(),
        ])
        .output()
        .await
        .expect("run ack");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acked = incident(notifier, id).await;
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "carol");
    assert_eq!(acked["level"], 2);
    // Twice: a conflict, said plainly.
    let (status, body) = api(
        notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // A new alert joins: the current level (2) hears it; the climb stays stopped.
    let before = messages(&sinks.l1, &key).len();
    post(
        notifier,
        &webhook(name, "critical", &[("db-1", "firing"), ("db-2", "firing")]),
    )
    .await;
    let update = wait_messages(&sinks.l2, &key, 3).await;
    let last = &update.last().expect("update").1;
    assert_eq!(event(last)["kind"], "update");
    assert_eq!(last["alerts"].as_array().map(Vec::len), Some(2));
    tokio::time::sleep(STEP + Duration::from_secs(1)).await;
    assert!(messages(&sinks.l3, &key).is_empty());
    assert_eq!(messages(&sinks.l1, &key).len(), before);
    let metrics = notifier
        .metric("mcpwatch_notifier_incidents_open{policy=\"default\",level=\"2\",acknowledged=\"true\"}")
        .await;
    assert!(metrics >= 1.0, "{metrics}");
    assert!(
        notifier
            .metric("mcpwatch_notifier_time_to_acknowledge_seconds_count{policy=\"default\"}")
            .await
            >= 2.0
    );
}

/// A window active now holds a warning and lets a critical through; when it ends, the
/// held warning arrives as one summary with what resolved inside it.
async fn maintenance_window(notifier: &NotifierProcess, sinks: &Sinks) {
    let (status, body) = api(
        notifier,
        "POST",
        "/api/v1/windows",
        Some(serde_json::json!({
            "duration": "5s",
            "matchers": ["service=\"mcp\"", "alertname=~\"Maint.*\""],
            "author": "ops@example.com",
            "reason": "MCP gateway upgrade",
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let window = body["window"]["key"].as_str().expect("key").to_owned();
    let (status, bad) = api(
        notifier,
        "POST",
        "/api/v1/windows",
        Some(serde_json::json!({"duration": "1h", "reason": "no author"})),
    )
    .await;
    assert_eq!(status, 400, "{bad}");

    let (warning, flapping, critical) = ("MaintSlowTools", "MaintProviderFlap", "MaintGatewayDown");
    post(
        notifier,
        &webhook(warning, "warning", &[("gw-1", "firing")]),
    )
    .await;
    post(
        notifier,
        &webhook(flapping, "warning", &[("gw-2", "firing")]),
    )
    .await;
    post(
        notifier,
        &webhook(critical, "critical", &[("gw-3", "firing")]),
    )
    .await;
    post(
        notifier,
        &webhook(flapping, "warning", &[("gw-2", "resolved")]),
    )
    .await;
    // The critical passes at once, held ones wait.
    wait_messages(&sinks.l1, &group(critical), 1).await;
    let (_, listed) = api(notifier, "GET", "/api/v1/windows", None).await;
    let shown = listed["windows"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["key"] == window.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(shown["author"], "ops@example.com", "{listed}");
    assert_eq!(shown["reason"], "MCP gateway upgrade");
    assert_eq!(shown["held_notifications"], 3, "{listed}");
    assert_eq!(shown["active"], true);
    assert_eq!(
        notifier
            .metric(&format!(
                "mcpwatch_notifier_held_notifications{{window=\"{window}\"}}"
            ))
            .await,
        3.0
    );
    assert!(messages(&sinks.l1, &group(warning)).is_empty());

    // When it ends: one summary to l1, with the warning still firing and the flapping
    // alert resolved.
    let deadline = Instant::now() + LIMIT;
    let summary = loop {
        let found: Vec<Value> = sinks
            .l1
            .requests()
            .iter()
            .filter(|r| r.status == Some(200))
            .map(ReceivedRequest::json)
            .filter(|b| event(b)["kind"] == "summary" && event(b)["window"] == window.as_str())
            .collect();
        if let Some(first) = found.first() {
            assert_eq!(found.len(), 1, "one summary per channel");
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no summary arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let alerts = summary["alerts"].as_array().cloned().unwrap_or_default();
    let state = |name: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .map(|a| a["status"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(alerts.len(), 2, "{summary}");
    assert_eq!(state(warning).as_deref(), Some("firing"));
    assert_eq!(state(flapping).as_deref(), Some("resolved"));
    assert_eq!(event(&summary)["held"], 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(messages(&sinks.l1, &group(warning)).len() <= 1);
}

/// `kill -9` between level 2 and 3: after the restart level 3 is told once, at its time,
/// and level 2 is not told again.
async fn restart_mid_climb(notifier: &mut NotifierProcess, sinks: &Sinks) {
    let name = "ProviderDown";
    let key = group(name);
    post(
        notifier,
        &webhook(name, "critical", &[("provider-openai", "firing")]),
    )
    .await;
    wait_messages(&sinks.l1, &key, 1).await;
    let second = wait_messages(&sinks.l2, &key, 1).await;
    // Killed once level 2's delivery is recorded: a delivery in flight at a kill is sent
    // again (with the same Idempotency-Key), which is not the level being told twice.
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, sending) = api(
            notifier,
            "GET",
            "/api/v1/notifications?state=sending&channel=l2",
            None,
        )
        .await;
        let (_, pending) = api(
            notifier,
            "GET",
            "/api/v1/notifications?state=pending&channel=l2",
            None,
        )
        .await;
        if sending["notifications"]
            .as_array()
            .is_some_and(Vec::is_empty)
            && pending["notifications"]
                .as_array()
                .is_some_and(Vec::is_empty)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "level 2's delivery was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    notifier.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    notifier.start_again().await;
    let third = wait_messages(&sinks.l3, &key, 1).await;
    assert!(third[0].0 - second[0].0 + TOLERANCE >= STEP);
    tokio::time::sleep(STEP + Duration::from_secs(1)).await;
    assert_eq!(messages(&sinks.l1, &key).len(), 1);
    assert_eq!(messages(&sinks.l2, &key).len(), 1);
    assert_eq!(messages(&sinks.l3, &key).len(), 1);
}

async fn suite(storage: &str) {
    let sinks = Sinks::start().await;
    let mut notifier = NotifierProcess::start(&sinks.config(storage)).await;
    tokio::join!(
        climbs_and_resolves(&notifier, &sinks),
        acknowledgement(&notifier, &sinks),
        maintenance_window(&notifier, &sinks),
    );
    restart_mid_climb(&mut notifier, &sinks).await;
    assert!(!notifier.log().contains(ACK_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_acknowledgement_and_windows_on_sqlite() {
    suite("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_acknowledgement_and_windows_on_postgres() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    suite(&format!("storage:\n  postgres: {{dsn: '{}'}}\n", dsn)).await;
}
