//! What hostile or unlucky alerts and callers do to the on-call features, end to end with
//! the notifier process: label values that are markup, empty, a megabyte long or a
//! thousand different components on the public status page; a store that goes away under
//! it; a Basic-auth caller naming someone else in `by`; text that tries to break out of the
//! post-incident report's Markdown; status updates for 200 incidents on two replicas.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcpwatch_tests::notifier::{NotifierProcess, TestAlert, payload};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::stand_in::{HttpStandIn, Scripted};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

/// A webhook of group `group`: each alert's labels, all firing or all resolved.
fn webhook(group: &str, alerts: &[Vec<(&str, &str)>], status: &str) -> Value {
    let test_alerts: Vec<TestAlert<'_>> = alerts
        .iter()
        .map(|l| (l.as_slice(), status, "2026-12-06T10:00:00Z"))
        .collect();
    payload("mcpwatch", group, &test_alerts, "http://am:9093")
}

fn service(name: &str, service: &str, severity: &str) -> Vec<(&'static str, String)> {
    vec![
        ("alertname", name.to_owned()),
        ("service", service.to_owned()),
        ("severity", severity.to_owned()),
    ]
}

fn borrowed<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn post(notifier: &NotifierProcess, body: &Value) {
    let (status, answer) = notifier.post(body, None).await;
    assert_eq!(status, 200, "{answer}");
}

async fn get(notifier: &NotifierProcess, path: &str) -> (u16, String) {
    let response = mcpwatch_tests::http::client()
        .get(format!("{}{path}", notifier.url()))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

async fn page(notifier: &NotifierProcess) -> Value {
    let (status, text) = get(notifier, "/status.json").await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("JSON")
}

/// Each shown component's name and state.
fn states(page: &Value) -> BTreeMap<String, String> {
    page["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                c["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Without `components`, every value of the label is a component: an empty one is none, a
/// script is text, a megabyte is cut, a group that moves leaves the old component, a
/// resolve of a group never seen changes nothing, and a thousand components give a page of
/// 100 (those in trouble first) and a count of the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_bounds_what_alerts_put_on_it() {
    let notifier = NotifierProcess::start(
        "route:\n  channels: [log]\nstatus_page:\n  title: Hostile\n  component_label: service\n",
    )
    .await;
    let script = "<script>alert(1)</script>";
    let unicode = "sérvice-ünï-😀";
    let huge = "x".repeat(1 << 20);
    for (group, value, severity) in [
        ("empty", "", "critical"),
        ("script", script, "critical"),
        ("unicode", unicode, "warning"),
        ("huge", huge.as_str(), "critical"),
    ] {
        let labels = service("Down", value, severity);
        post(&notifier, &webhook(group, &[borrowed(&labels)], "firing")).await;
    }
    let shown = page(&notifier).await;
    let cut = format!("{}…", "x".repeat(200));
    assert_eq!(
        states(&shown),
        [
            (script.to_owned(), "outage".to_owned()),
            (unicode.to_owned(), "degraded".to_owned()),
            (cut.clone(), "outage".to_owned()),
        ]
        .into(),
    );
    let (status, html) = get(&notifier, "/status").await;
    assert_eq!(status, 200);
    assert!(!html.contains("<script"), "{html}");
    assert_eq!(
        html.matches("&lt;script&gt;alert(1)&lt;/script&gt;")
            .count(),
        2
    );
    assert!(!html.contains(&"x".repeat(201)));

    // A group whose alerts move to another component leaves the first one.
    let a = service("Moving", "alpha", "critical");
    post(&notifier, &webhook("moving", &[borrowed(&a)], "firing")).await;
    let b = service("Moving", "beta", "warning");
    post(&notifier, &webhook("moving", &[borrowed(&b)], "firing")).await;
    // A resolve of a group never seen.
    let ghost = service("Ghost", "alpha", "critical");
    post(
        &notifier,
        &webhook("ghost", &[borrowed(&ghost)], "resolved"),
    )
    .await;
    let shown = states(&page(&notifier).await);
    assert_eq!(
        (shown.get("alpha"), shown.get("beta")),
        (
            Some(&"operational".to_owned()),
            Some(&"degraded".to_owned())
        )
    );

    // A thousand components, all operational again but the last ten.
    for i in 0..1000 {
        let labels = service("Many", &format!("pod-{i:04}"), "warning");
        let group = format!("many-{i}");
        post(&notifier, &webhook(&group, &[borrowed(&labels)], "firing")).await;
        if i < 990 {
            post(
                &notifier,
                &webhook(&group, &[borrowed(&labels)], "resolved"),
            )
            .await;
        }
    }
    let shown = page(&notifier).await;
    let components = states(&shown);
    // 1005 components: alpha, beta, the script, the unicode one, the huge one and 1000 pods.
    assert_eq!(components.len(), 100, "{components:?}");
    assert_eq!(shown["components_not_shown"], 905);
    assert_eq!(shown["status"], "outage");
    // Every one in trouble is shown, and listed as a current incident.
    let troubled: Vec<&String> = components
        .iter()
        .filter(|(_, state)| *state != "operational")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(troubled.len(), 14, "{troubled:?}");
    assert_eq!(shown["incidents"].as_array().map(Vec::len), Some(14));
    for i in 990..1000 {
        assert_eq!(components[&format!("pod-{i:04}")], "degraded");
    }
    let (_, html) = get(&notifier, "/status").await;
    assert!(html.contains("905 more components are not shown."));
    assert_eq!(html.matches("<section class=\"component\">").count(), 100);
}

/// PostgreSQL stops under a replica: the public page answers 503 and says nothing of the
/// store, its address or its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_away_is_not_named_on_the_public_page() {
    let mut pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    let notifier = NotifierProcess::start(&format!(
        "storage:\n  postgres: {{dsn: '{dsn}'}}\nroute:\n  channels: [log]\n\
         status_page:\n  component_label: service\n"
    ))
    .await;
    let labels = service("Down", "gateway", "critical");
    post(&notifier, &webhook("down", &[borrowed(&labels)], "firing")).await;
    assert_eq!(page(&notifier).await["status"], "outage");
    pg.stop();
    for path in ["/status", "/status.json"] {
        let response = mcpwatch_tests::http::client()
            .get(format!("{}{path}", notifier.url()))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status().as_u16(), 503, "{path}");
        let headers = format!("{:?}", response.headers());
        let body = response.text().await.expect("text");
        assert_eq!(body, r#"{"error":"the status is not available right now"}"#);
        for secret in [
            pg.password(),
            &pg.port().to_string(),
            "postgres",
            "notifier",
        ] {
            assert!(!headers.contains(secret), "{secret:?} in {headers}");
        }
    }
}

const USER: &str = "oncall";
const PASSWORD: &str = "correct-horse-battery";

async fn as_user(
    notifier: &NotifierProcess,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = mcpwatch_tests::http::client();
    let url = format!("{}{path}", notifier.url());
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    }
    .basic_auth(USER, Some(PASSWORD));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The incident of alert group `group`.
async fn wait_incident(notifier: &NotifierProcess, group: &str) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, list) = as_user(
            notifier,
            "GET",
            "/api/v1/incidents?state=all&limit=1000",
            None,
        )
        .await;
        if let Some(found) = list["incidents"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["group_key"] == group))
        {
            return found.clone();
        }
        assert!(Instant::now() < deadline, "no incident of {group}: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Basic-auth caller is who the timeline names: a `by` naming someone else is kept as
/// their claim beside the user who made it, never in the user's place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_auth_caller_cannot_write_another_name() {
    let notifier = NotifierProcess::start(&format!(
        "api:\n  auth: {{basic_auth: {{username: {USER}, password: {PASSWORD}}}}}\n\
         escalation_policies:\n  default:\n    levels:\n      - {{channels: [log]}}\n\
         route:\n  channels: [log]\n  escalation: default\n"
    ))
    .await;
    let labels = service("Spoofed", "gateway", "critical");
    post(
        &notifier,
        &webhook("spoofed", &[borrowed(&labels)], "firing"),
    )
    .await;
    let id = wait_incident(&notifier, "spoofed").await["id"]
        .as_i64()
        .expect("id");
    let (status, body) = as_user(
        &notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(json!({"by": "the CEO"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incident"]["acknowledged_by"], "the CEO (as oncall)");
    let (status, body) = as_user(
        &notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/unack"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_user(
        &notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/resolve"),
        Some(json!({"by": USER})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["incident"]["resolved_by"], USER);
    let (_, timeline) = as_user(
        &notifier,
        "GET",
        &format!("/api/v1/incidents/{id}/timeline"),
        None,
    )
    .await;
    let actors: Vec<(&str, &str)> = timeline["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| Some((e["kind"].as_str()?, e["actor"].as_str()?)))
        .collect();
    assert_eq!(
        actors,
        [
            ("acknowledged", "the CEO (as oncall)"),
            ("unacknowledged", USER),
            ("resolved", USER)
        ]
    );
}

/// The cells of a Markdown table row: split on the pipes no backslash escapes.
fn cells(row: &str) -> usize {
    let mut count: usize = 0;
    let mut escaped = false;
    for c in row.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => count += 1,
            _ => escaped = false,
        }
    }
    count.saturating_sub(1)
}

/// Alert labels, a receiver's error page and a caller's name full of Markdown and HTML
/// reach the report; it stays one table row per event, five cells each, and adds no
/// heading, link, image or tag. An alert name of 2 KB is cut in the timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_keeps_hostile_text_in_its_cells() {
    let hostile = "| pwned | x |\n# Heading\r\n<img src=x onerror=alert(1)> [link](https://evil.example) ![i](https://evil.example/i.png) `code` **bold** _em_ \\";
    let sink = HttpStandIn::webhook().await;
    sink.push_response(Scripted::Status(500, hostile.to_owned()));
    let notifier = NotifierProcess::start(&format!(
        "delivery:\n  retry: {{initial_backoff: 100ms, max_backoff: 200ms, jitter: 0.1}}\n\
         api:\n  auth: {{basic_auth: {{username: {USER}, password: {PASSWORD}}}}}\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\n\
         escalation_policies:\n  default:\n    levels:\n      - {{channels: [hook]}}\n\
         route:\n  channels: [log]\n  escalation: default\n",
        sink.endpoint()
    ))
    .await;
    let long_name = format!("Hostile{}", "n".repeat(2_000));
    let labels = vec![
        ("alertname", "Hostile"),
        ("severity", "critical"),
        ("detail", hostile),
        ("tick", "a ``` b ` c"),
    ];
    let long = vec![("alertname", long_name.as_str()), ("severity", "critical")];
    post(&notifier, &webhook("hostile", &[labels, long], "firing")).await;
    let id = wait_incident(&notifier, "hostile").await["id"]
        .as_i64()
        .expect("id");
    sink.wait_for_requests(2, LIMIT).await;
    let deadline = Instant::now() + LIMIT;
    let timeline = loop {
        let (_, timeline) = as_user(
            &notifier,
            "GET",
            &format!("/api/v1/incidents/{id}/timeline"),
            None,
        )
        .await;
        let delivered = timeline["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["kind"] == "delivered"));
        if delivered || Instant::now() > deadline {
            break timeline;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<usize> = timeline["timeline"][0]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["name"].as_str().map_or(0, str::len))
        .collect();
    assert_eq!(names, [256 + '…'.len_utf8(), 7]);
    let (status, _) = as_user(
        &notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(json!({"by": hostile})),
    )
    .await;
    assert_eq!(status, 200);
    let response = mcpwatch_tests::http::client()
        .get(format!("{}/api/v1/incidents/{id}/report", notifier.url()))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("report");
    assert_eq!(response.status().as_u16(), 200);
    let report = response.text().await.expect("text");
    let entries = as_user(
        &notifier,
        "GET",
        &format!("/api/v1/incidents/{id}/timeline"),
        None,
    )
    .await
    .1["timeline"]
        .as_array()
        .map_or(0, Vec::len);
    let (_, after_heading) = report.split_once("## Timeline\n\n").expect("timeline");
    let (table, _) = after_heading.split_once("\n\n").expect("table end");
    let rows: Vec<&str> = table.lines().collect();
    // The header, its rule and one row per entry, five cells each.
    assert_eq!(rows.len(), 2 + entries, "{table}");
    for row in &rows {
        assert_eq!(cells(row), 5, "{row}");
    }
    assert!(report.contains("attempt 1: HTTP 500"), "{report}");
    let headings: Vec<&str> = report.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headings[1..],
        [
            "## Alerts involved",
            "## Timeline",
            "## Root cause",
            "## Impact",
            "## Action items"
        ]
    );
    // In the table every character of markup is escaped: no tag, link, image, code or
    // emphasis starts.
    for row in &rows {
        let mut bare = String::new();
        let mut chars = row.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                chars.next();
            } else {
                bare.push(c);
            }
        }
        for markup in ['<', '>', '[', ']', '`', '*'] {
            assert!(!bare.contains(markup), "{markup:?} in {row}");
        }
    }
    // Each alert is one item, its identity in one code span.
    let (_, alerts) = report.split_once("## Alerts involved\n\n").expect("alerts");
    let (alerts, _) = alerts.split_once("\n\n").expect("alerts end");
    assert_eq!(alerts.lines().count(), 2, "{alerts}");
    assert!(alerts.lines().all(|l| l.starts_with("- `")), "{alerts}");
}

/// Each group's count of messages the sink took, by the event's kind.
fn received(sink: &HttpStandIn) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for request in sink.requests().iter().filter(|r| r.status == Some(200)) {
        let body = request.json();
        let group = body["groupKey"].as_str().unwrap_or("").to_owned();
        let kind = body["mcpwatch"]["event"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        *counts.entry((group, kind)).or_insert(0) += 1;
    }
    counts
}

async fn drained(notifier: &NotifierProcess) -> bool {
    let health = notifier.get_json("/health").await;
    health["queue"]["pending"] == 0 && health["queue"]["sending"] == 0
}

/// 200 incidents updated every second on two replicas sharing PostgreSQL: each gets its
/// updates (one tick takes 100), each update the timeline records reaches the receiver
/// exactly once, and none is sent after the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_updates_for_200_incidents_on_two_replicas() {
    const INCIDENTS: usize = 200;
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    let sink = HttpStandIn::webhook().await;
    let config = format!(
        "storage:\n  postgres: {{dsn: '{dsn}'}}\n\
         api:\n  auth: {{basic_auth: {{username: {USER}, password: {PASSWORD}}}}}\n\
         severities:\n  levels:\n\
         \x20   - {{name: P0, values: [critical], status: outage, updates_every: 1s}}\n\
         \x20 unknown: P0\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\n\
         escalation_policies:\n  default:\n    levels:\n      - {{channels: [hook]}}\n\
         route:\n  channels: [log]\n  escalation: default\n",
        sink.endpoint()
    );
    let replicas = [
        NotifierProcess::start(&config).await,
        NotifierProcess::start(&config).await,
    ];
    let groups: Vec<String> = (0..INCIDENTS).map(|i| format!("burning-{i:03}")).collect();
    for (i, group) in groups.iter().enumerate() {
        let labels = service("Burning", &format!("svc-{i}"), "critical");
        post(
            &replicas[i % 2],
            &webhook(group, &[borrowed(&labels)], "firing"),
        )
        .await;
    }
    // Every incident has had two updates.
    let deadline = Instant::now() + LIMIT;
    loop {
        let counts = received(&sink);
        let updated = groups
            .iter()
            .filter(|g| {
                counts
                    .get(&((*g).clone(), "status".into()))
                    .is_some_and(|n| *n >= 2)
            })
            .count();
        if updated == INCIDENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{updated} of {INCIDENTS} updated twice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ids = BTreeMap::new();
    for (i, group) in groups.iter().enumerate() {
        let id = wait_incident(&replicas[0], group).await["id"]
            .as_i64()
            .expect("id");
        let (status, body) = as_user(
            &replicas[i % 2],
            "POST",
            &format!("/api/v1/incidents/{id}/ack"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.insert(group.clone(), id);
    }
    let deadline = Instant::now() + LIMIT;
    while !(drained(&replicas[0]).await && drained(&replicas[1]).await) {
        assert!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more intervals: nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = received(&sink);
    for (group, id) in &ids {
        let (_, timeline) = as_user(
            &replicas[1],
            "GET",
            &format!("/api/v1/incidents/{id}/timeline"),
            None,
        )
        .await;
        let kinds: Vec<&str> = timeline["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        let updates = kinds.iter().filter(|k| **k == "status_update").count();
        let acked = kinds
            .iter()
            .position(|k| *k == "acknowledged")
            .expect("acked");
        let last_update = kinds
            .iter()
            .rposition(|k| *k == "status_update")
            .expect("updated");
        assert!(last_update < acked, "{group}: {kinds:?}");
        let got = |kind: &str| counts.get(&(group.clone(), kind.to_owned())).copied();
        assert_eq!(
            (got("opened"), got("status"), got("acknowledged")),
            (Some(1), Some(updates), Some(1)),
            "{group}: {kinds:?}"
        );
    }
}

/// Each event of a feed as Python's `icalendar` reads it, and the handoffs Python's
/// `zoneinfo` gives for hourly handoffs on the wall clock of `zone` (a time that does not
/// exist is taken on the offset before the change, one that happens twice at its first
/// occurrence: RFC 5545's rule): the (start, end) of each shift overlapping the window, in
/// UTC.
fn python_feed_and_expected(feed: &str, zone: &str, at: &str) -> Value {
    const SCRIPT: &str = r#"
import json, sys, icalendar
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
zone, at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
events = [
    {"uid": str(e["UID"]), "summary": str(e["SUMMARY"]), "description": str(e["DESCRIPTION"]),
     "start": e.decoded("DTSTART").astimezone(timezone.utc).isoformat(),
     "end": e.decoded("DTEND").astimezone(timezone.utc).isoformat()}
    for e in cal.walk("VEVENT")
]
tz = ZoneInfo(zone)
wall = datetime(2026, 1, 1, 0, 0)
handoffs = []
while wall < datetime(2027, 3, 1):
    handoffs.append(wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc))
    wall += timedelta(hours=1)
low, high = at - timedelta(days=7), at + timedelta(days=90)
expected = []
for start, end in zip(handoffs, handoffs[1:]):
    if start < end and end > low and start < high:
        expected.append([start.isoformat(), end.isoformat()])
print(json.dumps({"events": events, "expected": expected}))
"#;
    let python = mcpwatch_tests::tools::require(
        "python3",
        "apt-get install python3 && python3 -m pip install icalendar",
    );
    let (code, out, err) =
        mcpwatch_tests::tools::pipe(&python, &["-c", SCRIPT, zone, at], feed.as_bytes());
    assert_eq!(code, Some(0), "icalendar refused the feed: {err}");
    serde_json::from_str(&out).expect("the parser's JSON")
}

/// Hourly handoffs for 97 days across a daylight-saving change in four zones (Lord Howe's
/// is half an hour, Santiago's at midnight), to people whose names carry `;`, `,`, `\` and
/// characters of several bytes, and override reasons CR and LF: each feed parses, has exactly
/// the shifts the tz database gives, nothing injected; unknown or crafted schedule names
/// are a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_feeds_across_daylight_saving_with_hostile_names() {
    // Control characters in a name are refused when the configuration is read.
    let mallory = "Mallory;DTSTART:19700101T000000Z,X-INJECT:1;a,b é😀\\";
    let reason = "swap\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:forged";
    let zones = [
        ("berlin", "Europe/Berlin", "2026-10-20T00:00:00+00:00"),
        ("newyork", "America/New_York", "2026-03-01T00:00:00+00:00"),
        (
            "lordhowe",
            "Australia/Lord_Howe",
            "2026-03-30T00:00:00+00:00",
        ),
        ("santiago", "America/Santiago", "2026-03-30T00:00:00+00:00"),
    ];
    let mut config = format!(
        "api:\n  auth: {{basic_auth: {{username: {USER}, password: {PASSWORD}}}}}\n\
         people:\n  mallory:\n    name: {}\n    contacts: [{{channel: log}}]\n\
         \x20 plain:\n    contacts: [{{channel: log}}]\n\
         schedules:\n",
        serde_json::to_string(mallory).expect("name")
    );
    for (name, zone, _) in zones {
        config.push_str(&format!(
            "  {name}:\n    time_zone: {zone}\n    rotations:\n\
             \x20     - {{members: [mallory, plain], every: 1h, handoff: '00:00', start: 2026-01-01}}\n\
             \x20   overrides:\n\
             \x20     - {{person: plain, from: '2026-12-31T00:00:00Z', until: '2026-12-31T01:00:00Z', reason: {}}}\n",
            serde_json::to_string(reason).expect("reason")
        ));
    }
    let notifier = NotifierProcess::start(&config).await;
    for (name, zone, at) in zones {
        let response = mcpwatch_tests::http::client()
            .get(format!(
                "{}/api/v1/schedules/{name}/calendar.ics",
                notifier.url()
            ))
            .query(&[("at", at)])
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("feed");
        assert_eq!(response.status().as_u16(), 200, "{name}");
        let feed = response.text().await.expect("text");
        assert!(
            !feed.replace("\r\n", "").contains(['\r', '\n']),
            "{name}: a bare CR or LF"
        );
        assert!(
            feed.split("\r\n").all(|l| l.len() <= 75),
            "{name}: a line over 75 octets"
        );
        let unfolded = feed.replace("\r\n ", "");
        for forged in ["\r\nX-INJECT", "\r\nBEGIN:VEVENT\r\nSUMMARY:forged"] {
            assert!(!unfolded.contains(forged), "{name}: {forged:?} injected");
        }
        let parsed = python_feed_and_expected(&feed, zone, at);
        let events = parsed["events"].as_array().expect("events");
        let shifts: Vec<Value> = events
            .iter()
            .map(|e| json!([e["start"], e["end"]]))
            .collect();
        assert_eq!(Value::Array(shifts), parsed["expected"], "{name}");
        let mut uids: Vec<&str> = events.iter().filter_map(|e| e["uid"].as_str()).collect();
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), events.len(), "{name}");
        let summary = format!("On call: {mallory} ({name})");
        assert!(
            events.iter().any(|e| e["summary"] == summary.as_str()),
            "{name}"
        );
        assert!(events.iter().all(|e| e["summary"] != "forged"));
        let description = format!(
            "plain is on call in schedule {name} (override: {}).",
            reason.replace("\r\n", "\n")
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| e["description"] == description.as_str())
                .count(),
            usize::from(name == "berlin"),
            "{name}"
        );
    }
    // Names no schedule has, however they are spelled, are a 404.
    for path in [
        "..%2Fberlin",
        "%2e%2e",
        "berlin%00",
        "berlin%2Fcalendar.ics",
        "BERLIN",
        "%F0%9F%98%80",
    ] {
        let response = mcpwatch_tests::http::client()
            .get(format!(
                "{}/api/v1/schedules/{path}/calendar.ics",
                notifier.url()
            ))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("feed");
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let body: Value = response.json().await.expect("JSON");
        // (`%2e%2e` is `..` to the client, which takes it out of the path.)
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no schedule is named") || e == "no such endpoint"),
            "{path}: {body}"
        );
    }
}

/// `at` (whole seconds) as an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let text = mcpwatch_notifier::time::format_rfc3339(i64::try_from(secs * 1000).expect("ms"));
    let (year, month, day, time) = (&text[0..4], &text[5..7], &text[8..10], &text[11..19]);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(secs / 86_400 % 7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months[month.parse::<usize>().expect("month") - 1];
    format!("{weekday}, {day} {month} {year} {time} GMT")
}

/// A Teams workflow answering 429 with `Retry-After` as an HTTP date: the card (of a group
/// of hostile alerts) is sent again no sooner than that date, within 28 KB both times,
/// and the workflow's signature is in no log line and no API answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_retry_after_as_a_date_with_hostile_alerts() {
    let teams = HttpStandIn::teams().await;
    let sig = mcpwatch_tests::random_token("sig");
    let url = teams.workflow_url(&sig);
    let (started, wall) = (Instant::now(), SystemTime::now());
    // Three to four seconds from now, on a whole second.
    let until = UNIX_EPOCH
        + Duration::from_secs(wall.duration_since(UNIX_EPOCH).expect("now").as_secs() + 4);
    let until_instant = started + until.duration_since(wall).expect("later");
    teams.push_response(Scripted::RateLimitedUntil(http_date(until)));
    let notifier = NotifierProcess::start(&format!(
        "delivery:\n  retry: {{initial_backoff: 100ms, max_backoff: 200ms, jitter: 0.1}}\n\
         api:\n  auth: {{basic_auth: {{username: {USER}, password: {PASSWORD}}}}}\n\
         channels:\n  chat:\n    teams: {{url: '{url}', max_alerts_listed: 50}}\n\
         route:\n  channels: [chat]\n"
    ))
    .await;
    let hostile = format!(
        "<at>everyone</at> **x** [l](https://e) \"\\{}",
        "é\u{0}\u{202e}".repeat(700)
    );
    let names: Vec<String> = (0..20)
        .map(|i| format!("Teams{i}<at>{}", "ß".repeat(900)))
        .collect();
    let keys: Vec<String> = (0..20).map(|i| format!("label_{i:02}")).collect();
    let alerts: Vec<Vec<(&str, &str)>> = names
        .iter()
        .map(|name| {
            let mut labels = vec![("alertname", name.as_str()), ("severity", "critical")];
            labels.extend(keys.iter().map(|k| (k.as_str(), hostile.as_str())));
            labels
        })
        .collect();
    post(&notifier, &webhook("teams", &alerts, "firing")).await;
    let requests = teams.wait_for_requests(2, LIMIT).await;
    assert_eq!(
        (requests[0].status, requests[1].status),
        (Some(429), Some(202)),
        "{}",
        requests[1].text()
    );
    assert!(
        requests[1].at >= until_instant,
        "retried before the Retry-After date"
    );
    for request in &requests {
        assert!(request.body.len() <= 28_000, "{} bytes", request.body.len());
        assert_eq!(
            mcpwatch_tests::stand_in::teams_card_error(&request.body),
            None
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(teams.requests().len(), 2);
    for path in [
        "/api/v1/notifications",
        "/api/v1/notifications/1",
        "/health",
    ] {
        let (_, body) = as_user(&notifier, "GET", path, None).await;
        assert!(!body.to_string().contains(&sig), "{path}");
    }
    let metrics = mcpwatch_tests::exposition::checked(
        mcpwatch_tests::http::client()
            .get(format!("{}/metrics", notifier.url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics"),
    );
    assert!(!metrics.contains(&sig), "/metrics");
    assert!(!notifier.log().contains(&sig));
}

/// Posts every body at once, each to the replica its index picks.
async fn post_all(replicas: &[NotifierProcess; 2], bodies: &[Value]) {
    let posts = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| replicas[i % 2].post(body, None));
    for (status, answer) in futures_util::future::join_all(posts).await {
        assert_eq!(status, 200, "{answer}");
    }
}

/// The state of `component` on a replica's page, since when, and the state its history
/// ends in.
async fn component(notifier: &NotifierProcess, name: &str) -> (String, Value, Option<String>) {
    let page = page(notifier).await;
    let found = page["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    let last_day = found["days"]
        .as_array()
        .and_then(|d| d.last())
        .and_then(|d| d["state"].as_str())
        .map(str::to_owned);
    (
        found["state"].as_str().unwrap_or("").to_owned(),
        found["since"].clone(),
        last_day,
    )
}

/// 60 alert groups of one component reach two replicas on PostgreSQL at once, then
/// resolve at once, in three waves; copies from a second Alertmanager of an HA pair come
/// too, one after the group's resolve. After each wave both pages say exactly the worst
/// state still firing, since a time, and today's bar agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_one_component_on_two_replicas_at_once() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    let config = format!(
        "storage:\n  postgres: {{dsn: '{dsn}'}}\nroute:\n  channels: [log]\n\
         status_page:\n  component_label: service\n  components: [{{value: api, name: API}}]\n"
    );
    let replicas = [
        NotifierProcess::start(&config).await,
        NotifierProcess::start(&config).await,
    ];
    let wave = |range: std::ops::Range<usize>, severity: &'static str, status: &'static str| {
        range
            .map(|i| {
                let labels = service(&format!("Api{i}"), "api", severity);
                webhook(&format!("api-{i}"), &[borrowed(&labels)], status)
            })
            .collect::<Vec<Value>>()
    };
    let mut firing = wave(0..30, "critical", "firing");
    firing.extend(wave(30..60, "warning", "firing"));
    post_all(&replicas, &firing).await;
    for replica in &replicas {
        let (state, since, today) = component(replica, "API").await;
        assert_eq!(
            (state.as_str(), today.as_deref()),
            ("outage", Some("outage"))
        );
        assert!(since.is_string(), "{since}");
    }
    // The HA pair's other Alertmanager sends the same firing groups (another
    // externalURL): copies, stored once, changing nothing. Those of the critical groups
    // come late, after every critical group resolved.
    let copies: Vec<Value> = firing
        .iter()
        .map(|b| {
            let mut copy = b.clone();
            copy["externalURL"] = json!("http://am-2:9093");
            copy
        })
        .collect();
    post_all(&replicas, &copies[30..]).await;
    post_all(&replicas, &wave(0..30, "critical", "resolved")).await;
    post_all(&replicas, &copies[..30]).await;
    for replica in &replicas {
        let (state, _, today) = component(replica, "API").await;
        assert_eq!(
            (state.as_str(), today.as_deref()),
            ("degraded", Some("outage"))
        );
    }
    // All but one warning resolve, then the last.
    post_all(&replicas, &wave(30..59, "warning", "resolved")).await;
    for replica in &replicas {
        assert_eq!(component(replica, "API").await.0, "degraded");
    }
    post_all(&replicas, &wave(59..60, "warning", "resolved")).await;
    for replica in &replicas {
        let (state, since, _) = component(replica, "API").await;
        assert_eq!(state, "operational");
        assert!(since.is_string(), "the history ends operational: {since}");
        assert_eq!(page(replica).await["incidents"], json!([]));
    }
}
