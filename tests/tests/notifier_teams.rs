//! The Microsoft Teams channel end to end: the notifier binary posting to a stand-in that
//! follows the Workflows webhook contract (the Adaptive Card envelope, 202 Accepted, 400
//! for a bad card, 429 with `Retry-After`). The card's shape for firing and resolved
//! alerts, retries and dead letters, hostile alerts kept within Teams' 28 KB, and the
//! workflow's signed URL kept out of everything the notifier says.

use std::collections::BTreeSet;
use std::time::Duration;

use mcpwatch_tests::notifier::{NotifierProcess, payload};
use mcpwatch_tests::random_token;
use mcpwatch_tests::stand_in::{HttpStandIn, Scripted, TEAMS_MAX_BYTES, teams_card_error};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "admin-token-for-the-api";
/// Fast retries for tests.
const RETRY: &str = "delivery:\n  retry: {initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}\n";

fn alert_payload(name: &str, severity: &str, status: &str) -> Value {
    payload(
        "mcpwatch",
        &format!("{{}}:{{alertname=\"{name}\"}}"),
        &[(
            &[
                ("alertname", name),
                ("severity", severity),
                ("instance", "mcp-1:3001"),
            ],
            status,
            "2026-11-22T10:00:00Z",
        )],
        "http://alertmanager.example:9093",
    )
}

/// A GET of the admin API with its token.
async fn api(notifier: &NotifierProcess, path: &str) -> String {
    mcpwatch_tests::http::client()
        .get(format!("{}{path}", notifier.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// The Adaptive Card of a request.
fn card(body: &Value) -> &Value {
    &body["attachments"][0]["content"]
}

/// The first element of `items` of this type.
fn find<'a>(items: &'a Value, kind: &str) -> &'a Value {
    items
        .as_array()
        .and_then(|items| items.iter().find(|i| i["type"] == kind))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_and_resolved_cards_have_the_documented_shape() {
    let teams = HttpStandIn::teams().await;
    let sig = random_token("sig");
    let url = teams.workflow_url(&sig);
    let notifier = NotifierProcess::start(&format!(
        "{RETRY}api:\n  auth: {{bearer_token: {TOKEN}}}\n\
         acknowledgement:\n  external_url: https://notifier.example.com\n  secret: ack-link-secret-0123456789\n\
         channels:\n  chat:\n    teams: {{url: '{url}'}}\n\
         escalation_policies:\n  default:\n    levels:\n      - {{name: on-call engineer, channels: [chat]}}\n\
         route:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      escalation: default\n"
    ))
    .await;
    let (status, answer) = notifier
        .post(&alert_payload("WsDaemonDown", "critical", "firing"), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    let requests = teams.wait_for_requests(1, LIMIT).await;
    assert_eq!(requests[0].status, Some(202), "{}", requests[0].text());
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    let firing = requests[0].json();
    assert_eq!(firing["type"], "message");
    assert_eq!(
        firing["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let content = card(&firing);
    assert_eq!(content["type"], "AdaptiveCard");
    assert_eq!(content["version"], "1.4");
    let header = &content["body"][0];
    assert_eq!(header["style"], "attention");
    assert!(
        header["items"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[FIRING:1] WsDaemonDown")),
        "{header}"
    );
    assert!(
        content["body"][1]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Incident ") && t.contains("on-call engineer")),
        "{content}"
    );
    let alert = &content["body"][2];
    assert_eq!(alert["style"], "attention");
    assert_eq!(
        alert["items"][0]["text"],
        "FIRING · WsDaemonDown is happening."
    );
    let facts: Vec<(String, String)> = find(&alert["items"], "FactSet")["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap_or("").to_owned(),
                f["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            ("Started", "2026-11-22T10:00:00Z"),
            ("severity", "critical"),
            ("instance", "mcp-1:3001"),
        ]
        .map(|(t, v)| (t.to_owned(), v.to_owned()))
    );
    let links = &find(&alert["items"], "ActionSet")["actions"];
    assert_eq!(links[0]["title"], "Runbook");
    assert_eq!(links[0]["url"], "https://example.com/runbooks#wsdaemondown");
    assert_eq!(links[1]["title"], "Source");
    assert_eq!(
        links[1]["url"],
        "http://prometheus.example:9090/graph?g0.expr=up"
    );
    assert_eq!(content["actions"][0]["title"], "Acknowledge");
    assert!(
        content["actions"][0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://notifier.example.com/")),
        "{content}"
    );
    assert_eq!(content["actions"][1]["title"], "Alertmanager");

    let (status, answer) = notifier
        .post(&alert_payload("WsDaemonDown", "critical", "resolved"), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    let requests = teams.wait_for_requests(2, LIMIT).await;
    assert_eq!(requests[1].status, Some(202), "{}", requests[1].text());
    let resolved = requests[1].json();
    let content = card(&resolved);
    assert_eq!(content["body"][0]["style"], "good");
    assert!(
        content["body"][0]["items"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[RESOLVED] WsDaemonDown")),
        "{content}"
    );
    let containers: Vec<&Value> = content["body"]
        .as_array()
        .expect("body")
        .iter()
        .filter(|b| b["type"] == "Container")
        .collect();
    assert_eq!(containers.len(), 2, "{content}");
    let alert = containers[1];
    assert_eq!(alert["style"], "good");
    assert!(
        content["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .all(|a| a["title"] != "Acknowledge"),
        "{content}"
    );

    // Exactly the two, each once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(teams.requests().len(), 2);
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_delivered_total{channel=\"chat\"}")
            .await,
        2.0
    );
    // The signed URL is nowhere the notifier writes or answers.
    let said = [
        notifier.log(),
        api(&notifier, "/api/v1/notifications").await,
        api(&notifier, "/api/v1/incidents?state=all").await,
        api(&notifier, "/health").await,
        mcpwatch_tests::exposition::checked(api(&notifier, "/metrics").await),
    ];
    for text in &said {
        assert!(!text.contains(&sig), "the signature leaked: {text}");
        assert!(!text.contains(&url), "the URL leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_no_sooner_than_retry_after_then_delivered_once() {
    let teams = HttpStandIn::teams().await;
    teams.push_response(Scripted::RateLimited {
        retry_after_secs: 2,
    });
    let notifier = NotifierProcess::start(&format!(
        "{RETRY}channels:\n  chat:\n    teams: {{url: '{}'}}\nroute:\n  channels: [chat]\n",
        teams.endpoint()
    ))
    .await;
    let (status, answer) = notifier
        .post(&alert_payload("ProviderDown", "warning", "firing"), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    let requests = teams.wait_for_requests(2, LIMIT).await;
    assert_eq!(requests[0].status, Some(429));
    assert_eq!(requests[1].status, Some(202), "{}", requests[1].text());
    assert_eq!(requests[0].body, requests[1].body, "the same card again");
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(teams.requests().len(), 2);
    assert_eq!(
        notifier
            .metric(
                "mcpwatch_notifier_delivery_failures_total{channel=\"chat\",kind=\"rate_limited\"}"
            )
            .await,
        1.0
    );
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_delivered_total{channel=\"chat\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_dead_letters_after_one_attempt_without_the_signature() {
    let teams = HttpStandIn::teams().await;
    let sig = random_token("sig");
    let url = teams.workflow_url(&sig);
    let statuses = [400, 401, 403, 404, 413];
    for status in statuses {
        // An error page that echoes the request, signature and all.
        teams.push_response(Scripted::Status(
            status,
            serde_json::json!({"error": {"code": "InvalidRequestContent",
                "message": format!("refused POST {url}")}})
            .to_string(),
        ));
    }
    let notifier = NotifierProcess::start(&format!(
        "{RETRY}channels:\n  chat:\n    teams: {{url: '{url}'}}\nroute:\n  channels: [chat]\n"
    ))
    .await;
    for i in 0..statuses.len() {
        let (status, answer) = notifier
            .post(
                &alert_payload(&format!("Refused{i}"), "warning", "firing"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let dead = mcpwatch_tests::wait_for_async("five dead letters", LIMIT, || {
        let notifier = &notifier;
        async move {
            let list = notifier.get_json("/api/v1/notifications?state=dead").await;
            let n = list["notifications"].as_array().map_or(0, Vec::len);
            (n == statuses.len()).then_some(list)
        }
    })
    .await;
    let mut seen = BTreeSet::new();
    for notification in dead["notifications"].as_array().expect("list") {
        let delivery = &notification["deliveries"][0];
        assert_eq!(delivery["state"], "dead");
        assert_eq!(delivery["attempts"], 1);
        let error = delivery["last_error"].as_str().expect("error");
        assert!(error.contains("InvalidRequestContent"), "{error}");
        assert!(!error.contains(&sig), "the signature leaked: {error}");
        let status: u16 = error
            .strip_prefix("HTTP ")
            .and_then(|e| e.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {error}"));
        seen.insert(status);
    }
    assert_eq!(seen, BTreeSet::from(statuses));
    // Never retried.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(teams.requests().len(), statuses.len());
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_dead_letters_total{channel=\"chat\"}")
            .await,
        5.0
    );
    assert!(
        !notifier.log().contains(&sig),
        "the signature is in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_alerts_give_a_card_teams_takes() {
    let teams = HttpStandIn::teams().await;
    let notifier = NotifierProcess::start(&format!(
        "channels:\n  chat:\n    teams: {{url: '{}'}}\nroute:\n  channels: [chat]\n",
        teams.endpoint()
    ))
    .await;
    let hostile = "<at>x</at> **bold** _it_ [click](https://evil.example/) </at>";
    let instances: Vec<String> = (0..500).map(|i| format!("mcp-{i}:3001")).collect();
    let labels: Vec<Vec<(&str, &str)>> = instances
        .iter()
        .map(|instance| {
            vec![
                ("alertname", "ProviderDown"),
                ("severity", "critical"),
                ("instance", instance.as_str()),
                ("who", hostile),
            ]
        })
        .collect();
    let alerts: Vec<_> = labels
        .iter()
        .map(|l| (l.as_slice(), "firing", "2026-11-22T10:00:00Z"))
        .collect();
    let mut body = payload(
        "mcpwatch",
        "{}:{alertname=\"ProviderDown\"}",
        &alerts,
        "http://am:9093",
    );
    body["alerts"][0]["annotations"]["description"] =
        format!("{hostile} {}", "\"<\\".repeat(34_000)).into();
    body["alerts"][0]["annotations"]["runbook_url"] = "javascript:alert(1)".into();
    let (status, answer) = notifier.post(&body, None).await;
    assert_eq!(status, 200, "{answer}");
    let requests = teams.wait_for_requests(1, LIMIT).await;
    let request = &requests[0];
    assert_eq!(
        request.status,
        Some(202),
        "{:?}",
        teams_card_error(&request.body)
    );
    assert!(
        request.body.len() <= TEAMS_MAX_BYTES,
        "{} bytes",
        request.body.len()
    );
    let card_body = request.json();
    let content = card(&card_body);
    let blocks = content["body"].as_array().expect("body");
    let listed = blocks.iter().filter(|b| b["type"] == "Container").count() - 1;
    assert!((1..=10).contains(&listed), "{listed} listed");
    let more = blocks
        .iter()
        .filter_map(|b| b["text"].as_str())
        .find(|t| t.starts_with("…and "))
        .expect("the rest counted");
    assert_eq!(
        more,
        format!(
            "…and {} more: ProviderDown ×{} firing",
            500 - listed,
            500 - listed
        )
    );
    let text = request.text();
    assert!(!text.contains("<at>"), "a mention from a label");
    assert!(!text.contains("**bold**"), "Markdown from a label");
    assert!(!text.contains("](https://evil"), "a link from a label");
    assert!(!text.contains("javascript:"), "a script link");
    assert!(content["msteams"].get("entities").is_none());
    let first = &blocks[1];
    let description = first["items"][1]["text"].as_str().expect("description");
    assert!(
        description.starts_with("‹at›x‹/at› ∗∗bold∗∗ ＿it＿ [click］(https://evil.example/) ‹/at›"),
        "{description}"
    );
    assert!(description.ends_with('…'), "cut: {description}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_a_missing_url_and_send_test_reaches_the_workflow() {
    let teams = HttpStandIn::teams().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = mcpwatch_tests::binaries::workspace_binary("mcpwatch-notifier");
    let check = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let output = std::process::Command::new(&binary)
            .arg(format!("--config.file={}", path.display()))
            .arg("--check-config")
            .output()
            .expect("run");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, err) = check(
        "no-url.yml",
        "channels:\n  chat:\n    teams: {max_alerts_listed: 5}\n".to_owned(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no-url.yml:3:"), "{err}");
    assert!(
        err.contains("channels.chat.teams.url: set url or url_file"),
        "{err}"
    );
    let sig = random_token("sig");
    let (code, err) = check(
        "relative.yml",
        format!("channels:\n  chat:\n    teams: {{url: '/workflows/x?sig={sig}'}}\n"),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("channels.chat.teams.url: must be an absolute http:// or https:// URL"),
        "{err}"
    );
    assert!(!err.contains(&sig), "{err}");
    let (code, err) = check(
        "small.yml",
        format!(
            "channels:\n  chat:\n    teams: {{url: '{}', max_card_bytes: 1000}}\n",
            teams.endpoint()
        ),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("channels.chat.teams.max_card_bytes: must be at least"),
        "{err}"
    );

    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        format!(
            "channels:\n  chat:\n    teams: {{url: '{}'}}\n",
            teams.workflow_url(&sig)
        ),
    )
    .expect("write");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .arg(format!("--config.file={}", good.display()))
            .args(["send-test", "--channel=chat"])
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{out}{err}");
    assert!(!out.contains(&sig) && !err.contains(&sig), "{out}{err}");
    let requests = teams.wait_for_requests(1, LIMIT).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, Some(202), "{}", requests[0].text());
}
