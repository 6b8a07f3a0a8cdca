//! The public status page, end to end: a notifier process (on SQLite, and two replicas on
//! one PostgreSQL) takes Alertmanager webhooks; `/status.json` and `/status` change with
//! the webhook that changes them, show each component's worst state, and say nothing
//! internal (alert names, labels, annotations, receivers, policies).

use std::time::Duration;

use mcpwatch_tests::notifier::{NotifierProcess, TestAlert, payload};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use serde_json::Value;

const TOKEN: &str = "status-api-token";

fn config(storage: &str) -> String {
    format!(
        "{storage}api:\n  auth: {{bearer_token: {TOKEN}}}\n\
         escalation_policies:\n  default:\n    levels:\n      - {{name: on-call engineer, channels: [log]}}\n\
         route:\n  channels: [log]\n  escalation: default\n\
         status_page:\n  title: Example MCP platform\n  component_label: service\n  components:\n\
         \x20   - {{value: gateway, name: MCP gateway}}\n\
         \x20   - {{value: db, name: Database}}\n"
    )
}

/// A webhook of group `name`: its alerts (service, severity) all firing or all resolved.
fn webhook(name: &str, alerts: &[(&str, &str)], status: &str) -> Value {
    let labels: Vec<Vec<(&str, &str)>> = alerts
        .iter()
        .map(|(service, severity)| {
            vec![
                ("alertname", name),
                ("service", service),
                ("severity", severity),
                ("instance", "10.1.2.3:9090"),
            ]
        })
        .collect();
    let test_alerts: Vec<TestAlert<'_>> = labels
        .iter()
        .map(|l| (l.as_slice(), status, "2026-12-06T10:00:00Z"))
        .collect();
    payload(
        "internal-receiver",
        &format!("{{}}:{{alertname=\"{name}\"}}"),
        &test_alerts,
        "http://am:9093",
    )
}

async fn post(notifier: &NotifierProcess, body: &Value) {
    let (status, answer) = notifier.post(body, None).await;
    assert_eq!(status, 200, "{answer}");
}

async fn status(notifier: &NotifierProcess) -> Value {
    let response = mcpwatch_tests::http::client()
        .get(format!("{}/status.json", notifier.url()))
        .send()
        .await
        .expect("status.json");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("text");
    assert_no_internal_detail(&text);
    serde_json::from_str(&text).expect("JSON")
}

async fn html(notifier: &NotifierProcess) -> String {
    let response = mcpwatch_tests::http::client()
        .get(format!("{}/status", notifier.url()))
        .send()
        .await
        .expect("status");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("text/html; charset=utf-8")
    );
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .is_ok_and(|csp| csp.starts_with("default-src 'none'"))
    );
    let text = response.text().await.expect("text");
    assert_no_internal_detail(&text);
    assert!(!text.contains("<script"), "{text}");
    text
}

/// The alerts' names, labels and annotations, the receiver and the policy never show.
fn assert_no_internal_detail(text: &str) {
    for internal in [
        "GatewayDown",
        "DatabaseSlow",
        "BillingBroken",
        "billing",
        "10.1.2.3",
        "instance",
        "severity",
        "internal-receiver",
        "on-call engineer",
        "alertname",
        "http://am:9093",
    ] {
        assert!(!text.contains(internal), "{internal:?} leaked: {text}");
    }
}

/// Each component's (public name, state).
fn states(page: &Value) -> Vec<(String, String)> {
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

fn expect(page: &Value, overall: &str, gateway: &str, db: &str) {
    assert_eq!(page["status"], overall, "{page}");
    assert_eq!(
        states(page),
        [
            ("MCP gateway".to_owned(), gateway.to_owned()),
            ("Database".to_owned(), db.to_owned())
        ],
        "{page}"
    );
}

async fn suite(a: &NotifierProcess, b: &NotifierProcess) {
    let page = status(a).await;
    expect(&page, "operational", "operational", "operational");
    assert_eq!(page["title"], "Example MCP platform");
    let days = page["components"][0]["days"].as_array().expect("days");
    assert_eq!(days.len(), 90);
    assert!(days.iter().all(|d| d["state"].is_null()), "{page}");
    assert!(page["components"][0]["uptime_percent"].is_null());

    // Fires: the page says so as soon as the webhook was answered, on either replica.
    post(
        a,
        &webhook("GatewayDown", &[("gateway", "critical")], "firing"),
    )
    .await;
    expect(&status(b).await, "outage", "outage", "operational");
    // A warning on the database, and a critical alert of a service not on the page.
    post(
        b,
        &webhook(
            "DatabaseSlow",
            &[("db", "warning"), ("billing", "critical")],
            "firing",
        ),
    )
    .await;
    let page = status(a).await;
    expect(&page, "outage", "outage", "degraded");
    let incidents: Vec<(&str, &str)> = page["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| {
            (
                i["component"].as_str().unwrap_or(""),
                i["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        incidents,
        [("MCP gateway", "outage"), ("Database", "degraded")]
    );
    assert!(page["incidents"][0].get("alerts").is_none(), "{page}");
    // A second group on the gateway, less severe: the worst still counts.
    post(
        b,
        &webhook("GatewaySlow", &[("gateway", "warning")], "firing"),
    )
    .await;
    expect(&status(a).await, "outage", "outage", "degraded");
    let page = html(b).await;
    assert!(page.contains("<p class=\"banner outage\" id=\"overall\">Some systems are down</p>"));
    assert!(page.contains("<strong>MCP gateway</strong>"));
    assert_eq!(page.matches("<section class=\"component\">").count(), 2);
    assert_eq!(
        page.matches("title=\"20").count(),
        180,
        "one bar per day per component"
    );

    // Long enough that today has a second of outage on record.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The critical group resolves: the gateway is degraded by the other one.
    post(
        a,
        &webhook("GatewayDown", &[("gateway", "critical")], "resolved"),
    )
    .await;
    expect(&status(b).await, "degraded", "degraded", "degraded");
    post(
        b,
        &webhook("GatewaySlow", &[("gateway", "warning")], "resolved"),
    )
    .await;
    post(
        a,
        &webhook(
            "DatabaseSlow",
            &[("db", "warning"), ("billing", "critical")],
            "resolved",
        ),
    )
    .await;
    let page = status(b).await;
    expect(&page, "operational", "operational", "operational");
    assert!(page["incidents"].as_array().is_some_and(Vec::is_empty));
    let today = &page["components"][0]["days"][89];
    assert_eq!(today["state"], "outage", "{page}");
    assert!(
        today["outage_seconds"].as_u64().is_some_and(|s| s >= 1),
        "{today}"
    );
    let uptime = page["components"][0]["uptime_percent"]
        .as_f64()
        .expect("uptime");
    assert!(uptime < 100.0, "{uptime}");
    assert!(page["components"][0]["days"][88]["state"].is_null());
    // The database was degraded, never down.
    let db_today = &page["components"][1]["days"][89];
    assert_eq!(db_today["state"], "degraded", "{db_today}");
    assert_eq!(db_today["outage_seconds"], 0);
    assert_eq!(page["components"][1]["uptime_percent"], 100.0);

    // The page needs no credentials; the API still does.
    let api = mcpwatch_tests::http::client()
        .get(format!("{}/api/v1/incidents", a.url()))
        .send()
        .await
        .expect("api");
    assert_eq!(api.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_on_sqlite() {
    let notifier = NotifierProcess::start(&config("")).await;
    suite(&notifier, &notifier).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_on_two_replicas_on_postgres() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = pg.owned_database("notifier").await;
    let storage = format!("storage:\n  postgres: {{dsn: '{dsn}'}}\n");
    let a = NotifierProcess::start(&config(&storage)).await;
    let b = NotifierProcess::start(&config(&storage)).await;
    suite(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_status_page_unless_configured() {
    let notifier =
        NotifierProcess::start("api:\n  auth: {bearer_token: x0123456789abcdef}\n").await;
    for path in ["/status", "/status.json"] {
        let response = mcpwatch_tests::http::client()
            .get(format!("{}{path}", notifier.url()))
            .send()
            .await
            .expect("status");
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
}
