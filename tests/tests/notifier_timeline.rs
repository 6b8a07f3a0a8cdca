//! An incident's timeline, its post-incident report, status updates and resolving by hand,
//! end to end: a notifier process with delays shortened to seconds, webhook stand-ins as
//! the levels' receivers (one scripted to fail once), on the embedded SQLite store and on
//! a real PostgreSQL.

use std::time::{Duration, Instant};

use mcpwatch_tests::notifier::{NotifierProcess, TestAlert, payload};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::stand_in::{HttpStandIn, Scripted};
use serde_json::{Value, json};

const TOKEN: &str = "timeline-api-token";
const LIMIT: Duration = Duration::from_secs(30);

struct Sinks {
    l1: HttpStandIn,
    l2: HttpStandIn,
}

fn config(storage: &str, sinks: &Sinks) -> String {
    format!(
        "{storage}delivery:\n  timeout: 2s\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
         api:\n  auth: {{bearer_token: {TOKEN}}}\n\
         severities:\n  levels:\n\
         \x20   - {{name: P0, values: [page], status: outage, updates_every: 1s}}\n\
         \x20   - {{name: P1, values: [critical], status: outage}}\n\
         \x20   - {{name: P2, values: [warning], status: degraded}}\n\
         \x20   - {{name: P3, values: [info], status: operational}}\n\
         \x20 unknown: P2\n\
         channels:\n  l1:\n    webhook: {{url: '{}'}}\n  l2:\n    webhook: {{url: '{}'}}\n\
         escalation_policies:\n  default:\n    levels:\n\
         \x20     - {{name: on-call engineer, channels: [l1]}}\n\
         \x20     - {{name: senior engineer, after: 2s, channels: [l2]}}\n\
         \x20 updates:\n    levels:\n\
         \x20     - {{name: on-call engineer, channels: [l1]}}\n\
         \x20     - {{name: senior engineer, after: 1h, channels: [l2]}}\n\
         route:\n  channels: [l1]\n  routes:\n\
         \x20   - matchers: ['severity=\"critical\"']\n      escalation: default\n\
         \x20   - matchers: ['severity=\"page\"']\n      escalation: updates\n",
        sinks.l1.endpoint(),
        sinks.l2.endpoint(),
    )
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
                ("service", "gateway"),
                ("instance", instance),
            ]
        })
        .collect();
    let test_alerts: Vec<TestAlert<'_>> = labels
        .iter()
        .zip(alerts)
        .map(|(l, (_, status))| (l.as_slice(), *status, "2026-12-06T10:00:00Z"))
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
) -> (u16, String) {
    let client = mcpwatch_tests::http::client();
    let url = format!("{}{path}", notifier.url());
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    }
    .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn api_json(
    notifier: &NotifierProcess,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, text) = api(notifier, method, path, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The messages a sink took (status 200) for one group, in order: each one's event kind.
fn kinds(sink: &HttpStandIn, group: &str) -> Vec<String> {
    sink.requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .map(|r| r.json())
        .filter(|body| body["groupKey"] == group)
        .map(|body| {
            body["mcpwatch"]["event"]["kind"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

async fn wait_kinds(sink: &HttpStandIn, group: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let found = kinds(sink, group);
        if found.len() >= n || Instant::now() > deadline {
            assert!(
                found.len() >= n,
                "{n} messages for {group} expected, got {found:?}"
            );
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn incident_of(notifier: &NotifierProcess, name: &str) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (status, body) = api_json(notifier, "GET", "/api/v1/incidents?state=all", None).await;
        assert_eq!(status, 200, "{body}");
        if let Some(found) = body["incidents"]
            .as_array()
            .and_then(|list| list.iter().find(|i| i["group_key"] == group(name)))
        {
            return found.clone();
        }
        assert!(Instant::now() < deadline, "no incident for {name}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The timeline's entries as (kind, channel, level, actor).
fn steps(timeline: &Value) -> Vec<(String, String, i64, String)> {
    timeline["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["channel"].as_str().unwrap_or("").to_owned(),
                e["level"].as_i64().unwrap_or(0),
                e["actor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The incident's timeline once it has `n` entries of `kind`.
async fn wait_entries(notifier: &NotifierProcess, id: i64, kind: &str, n: usize) -> Value {
    let path = format!("/api/v1/incidents/{id}/timeline");
    let deadline = Instant::now() + LIMIT;
    loop {
        let (status, body) = api_json(notifier, "GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        let found = steps(&body).iter().filter(|s| s.0 == kind).count();
        if found >= n || Instant::now() > deadline {
            assert_eq!(found, n, "{body}");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn step(kind: &str, channel: &str, level: i64, actor: &str) -> (String, String, i64, String) {
    (kind.into(), channel.into(), level, actor.into())
}

/// Fires (two alerts), fails once at level 1, escalates to level 2, is acknowledged and
/// resolves: every event in order, with times, and the report says the same.
async fn fires_escalates_acknowledged_resolves(notifier: &NotifierProcess, sinks: &Sinks) {
    let name = "GatewayErrors";
    let key = group(name);
    // The first attempt at level 1 is refused: the retry is in the timeline.
    sinks
        .l1
        .push_response(Scripted::Status(503, "{\"error\":\"busy\"}".into()));
    post(
        notifier,
        &webhook(name, "critical", &[("a:1", "firing"), ("b:1", "firing")]),
    )
    .await;
    assert_eq!(wait_kinds(&sinks.l1, &key, 1).await, ["opened"]);
    assert_eq!(wait_kinds(&sinks.l2, &key, 1).await, ["escalated"]);
    let id = incident_of(notifier, name).await["id"]
        .as_i64()
        .expect("id");
    let (status, acked) = api_json(
        notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(json!({"by": "alice"})),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    wait_kinds(&sinks.l1, &key, 2).await;
    wait_kinds(&sinks.l2, &key, 2).await;
    // Each outcome is recorded once its receiver has answered: wait for the four so far.
    wait_entries(notifier, id, "delivered", 4).await;
    post(
        notifier,
        &webhook(
            name,
            "critical",
            &[("a:1", "resolved"), ("b:1", "resolved")],
        ),
    )
    .await;
    assert_eq!(
        wait_kinds(&sinks.l1, &key, 3).await,
        ["opened", "acknowledged", "resolved"]
    );
    assert_eq!(
        wait_kinds(&sinks.l2, &key, 3).await,
        ["escalated", "acknowledged", "resolved"]
    );

    let timeline = wait_entries(notifier, id, "delivered", 6).await;
    let all = steps(&timeline);
    // The order of the two channels' answers to one announcement is theirs: compare each
    // stage with its own order, and the stages in order.
    let stage = |from: &str, to: Option<&str>| -> Vec<(String, String, i64, String)> {
        let start = all.iter().position(|s| s.0 == from).expect(from);
        let end = to.map_or(all.len(), |t| all.iter().position(|s| s.0 == t).expect(t));
        let mut part = all[start..end].to_vec();
        part[1..].sort();
        part
    };
    assert_eq!(
        stage("opened", Some("escalated")),
        [
            step("opened", "", 0, ""),
            step("delivered", "l1", 1, ""),
            step("delivery_failed", "l1", 1, ""),
            step("told", "l1", 1, ""),
        ],
        "{all:?}"
    );
    assert_eq!(
        stage("escalated", Some("acknowledged")),
        [
            step("escalated", "", 2, ""),
            step("delivered", "l2", 2, ""),
            step("told", "l2", 2, ""),
        ],
        "{all:?}"
    );
    assert_eq!(
        stage("acknowledged", Some("resolved")),
        [
            step("acknowledged", "", 0, "alice"),
            step("delivered", "l1", 0, ""),
            step("delivered", "l2", 0, ""),
            step("told", "l1", 0, ""),
            step("told", "l2", 0, ""),
        ],
        "{all:?}"
    );
    assert_eq!(
        stage("resolved", None),
        [
            step("resolved", "", 0, ""),
            step("delivered", "l1", 2, ""),
            step("delivered", "l2", 2, ""),
            step("told", "l1", 0, ""),
            step("told", "l2", 0, ""),
        ],
        "{all:?}"
    );
    // Each told before it was delivered, each failure before the delivery that followed.
    let position =
        |kind: &str, channel: &str| all.iter().position(|s| s.0 == kind && s.1 == channel);
    assert!(position("told", "l1") < position("delivery_failed", "l1"));
    assert!(position("delivery_failed", "l1") < position("delivered", "l1"));
    let entries = timeline["timeline"].as_array().expect("entries");
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["at"].as_str().expect("at"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let opened = &entries[0];
    assert_eq!(
        opened["alerts"].as_array().map(Vec::len),
        Some(2),
        "{opened}"
    );
    let failed = entries
        .iter()
        .find(|e| e["kind"] == "delivery_failed")
        .expect("failure");
    assert!(
        failed["detail"].as_str().is_some_and(|d| d.contains("503")),
        "{failed}"
    );
    assert_eq!(timeline["incident"]["severity"], "P1");
    assert_eq!(timeline["incident"]["title"], name);

    // The report: its facts, its alerts, and one table row per timeline entry, in order.
    let response = mcpwatch_tests::http::client()
        .get(format!("{}/api/v1/incidents/{id}/report", notifier.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("report");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("text/markdown; charset=utf-8")
    );
    assert_eq!(
        response.headers()["content-disposition"].to_str().ok(),
        Some(format!("attachment; filename=\"incident-{id}.md\"").as_str())
    );
    let report = response.text().await.expect("text");
    assert!(
        report.starts_with(&format!("# Incident {id}: {name}\n")),
        "{report}"
    );
    let acked_at = timeline["incident"]["acknowledged_at"]
        .as_str()
        .expect("acked");
    assert!(
        report.contains(&format!(
            "| Acknowledged | {acked_at} by alice (time to acknowledge "
        )),
        "{report}"
    );
    let resolved_at = timeline["incident"]["resolved_at"]
        .as_str()
        .expect("resolved");
    assert!(
        report.contains(&format!("| Resolved | {resolved_at} (time to resolve ")),
        "{report}"
    );
    assert!(report.contains("| Severity | P1 |"), "{report}");
    for instance in ["a:1", "b:1"] {
        assert!(
            report.contains(&format!("` {name}{{instance=\"{instance}\", service=\"gateway\", severity=\"critical\"}} ` first seen")),
            "{report}"
        );
    }
    let rows: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("## Timeline"))
        .filter(|l| l.starts_with("| 20"))
        .collect();
    assert_eq!(rows.len(), entries.len(), "{report}");
    for (row, entry) in rows.iter().zip(entries) {
        assert!(
            row.starts_with(&format!("| {} | +", entry["at"].as_str().expect("at"))),
            "{row}"
        );
    }
    assert!(
        rows[0].contains("Incident opened: 2 alert(s) firing"),
        "{}",
        rows[0]
    );
    for section in ["## Root cause", "## Impact", "## Action items"] {
        assert_eq!(report.matches(section).count(), 1, "{section}");
    }
}

/// A P0 incident is told a status update every second until acknowledged; not one after.
async fn updates_stop_at_acknowledgement(notifier: &NotifierProcess, sinks: &Sinks) {
    let name = "GatewayDown";
    let key = group(name);
    post(notifier, &webhook(name, "page", &[("a:1", "firing")])).await;
    let told = wait_kinds(&sinks.l1, &key, 4).await;
    assert_eq!(told[..4], ["opened", "status", "status", "status"]);
    let incident = incident_of(notifier, name).await;
    assert_eq!(incident["severity"], "P0");
    let id = incident["id"].as_i64().expect("id");
    let (status, body) = api_json(
        notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(json!({"by": "bob"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incident"]["next_update_at"], Value::Null);
    // Three intervals later: no update was queued after the acknowledgement, and the
    // receiver got exactly the opening, each update queued before it, and it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, timeline) = api_json(
        notifier,
        "GET",
        &format!("/api/v1/incidents/{id}/timeline"),
        None,
    )
    .await;
    let all = steps(&timeline);
    let acked = all
        .iter()
        .position(|s| s.0 == "acknowledged")
        .expect("acknowledged");
    let updates: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].0 == "status_update")
        .collect();
    assert!(updates.len() >= 3, "{all:?}");
    assert!(updates.iter().all(|&i| i < acked), "{all:?}");
    let received = kinds(&sinks.l1, &key);
    assert_eq!(received.len(), 1 + updates.len() + 1, "{received:?}");
    assert_eq!(
        received.iter().filter(|k| *k == "status").count(),
        updates.len()
    );
    assert_eq!(received.iter().filter(|k| *k == "acknowledged").count(), 1);
    // Level 2 is an hour away: nobody but level 1 was told.
    assert!(kinds(&sinks.l2, &key).is_empty());
}

/// Resolving by hand tells every channel told who did it, and only once.
async fn resolved_by_hand(notifier: &NotifierProcess, sinks: &Sinks) {
    let name = "GatewaySlow";
    let key = group(name);
    post(notifier, &webhook(name, "critical", &[("a:1", "firing")])).await;
    wait_kinds(&sinks.l1, &key, 1).await;
    let id = incident_of(notifier, name).await["id"]
        .as_i64()
        .expect("id");
    let path = format!("/api/v1/incidents/{id}/resolve");
    let (status, body) = api_json(notifier, "POST", &path, Some(json!({"by": "carol"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incident"]["state"], "resolved");
    assert_eq!(body["incident"]["resolved_by"], "carol");
    let (again, body) = api_json(notifier, "POST", &path, Some(json!({"by": "carol"}))).await;
    assert_eq!(again, 409, "{body}");
    let told = wait_kinds(&sinks.l1, &key, 2).await;
    assert_eq!(told, ["opened", "resolved"]);
    let message = sinks
        .l1
        .requests()
        .iter()
        .rev()
        .map(|r| r.json())
        .find(|b| b["groupKey"] == key.as_str())
        .expect("resolve");
    assert_eq!(message["mcpwatch"]["event"]["by"], "carol");
    // The escalation it would have made (2 s) never comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(kinds(&sinks.l2, &key).is_empty());
    assert_eq!(kinds(&sinks.l1, &key).len(), 2);
    let (_, timeline) = api_json(
        notifier,
        "GET",
        &format!("/api/v1/incidents/{id}/timeline"),
        None,
    )
    .await;
    let resolved: Vec<_> = steps(&timeline)
        .into_iter()
        .filter(|s| s.0 == "resolved")
        .collect();
    assert_eq!(resolved, [step("resolved", "", 0, "carol")]);
    let (status, report) = api(
        notifier,
        "GET",
        &format!("/api/v1/incidents/{id}/report"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        report.contains("by hand by carol (time to resolve "),
        "{report}"
    );
    let (status, _) = api(notifier, "GET", "/api/v1/incidents/999999/report", None).await;
    assert_eq!(status, 404);
    let anonymous = mcpwatch_tests::http::client()
        .get(format!("{}/api/v1/incidents/{id}/report", notifier.url()))
        .send()
        .await
        .expect("report");
    assert_eq!(anonymous.status().as_u16(), 401);
}

async fn suite(storage: &str) {
    let sinks = Sinks {
        l1: HttpStandIn::webhook().await,
        l2: HttpStandIn::webhook().await,
    };
    let notifier = NotifierProcess::start(&config(storage, &sinks)).await;
    fires_escalates_acknowledged_resolves(&notifier, &sinks).await;
    tokio::join!(
        updates_stop_at_acknowledgement(&notifier, &sinks),
        resolved_by_hand(&notifier, &sinks),
    );
    assert!(!notifier.log().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_report_updates_on_sqlite() {
    suite("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_report_updates_on_postgres() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    suite(&format!("storage:\n  postgres: {{dsn: '{dsn}'}}\n")).await;
}
