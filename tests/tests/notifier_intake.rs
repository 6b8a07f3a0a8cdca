//! The notifier's intake against the binary: what `/webhook` accepts can be delivered
//! (nesting depth), what cannot is refused with a 400 naming it, and a webhook stored after
//! its client hung up is still counted.

use std::collections::BTreeMap;
use std::time::Duration;

use mcpwatch_tests::notifier::{NotifierProcess, payload};
use mcpwatch_tests::stand_in::HttpStandIn;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(30);

/// The deepest an unknown field's value may nest: the body is level 1, its fields' values
/// level 2, an alert's fields' values level 4, and nothing may go beyond level 64.
const TOP_DEEPEST: usize = 63;
const ALERT_DEEPEST: usize = 61;

fn body(group: &str) -> Value {
    payload(
        "mcpwatch",
        &format!("{{}}:{{alertname=\"{group}\"}}"),
        &[(
            &[("alertname", group), ("severity", "warning")],
            "firing",
            "2026-11-22T10:00:00Z",
        )],
        "http://am:9093",
    )
}

/// `levels` nested arrays, as a JSON text.
fn nested(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

/// Where a case puts its nesting.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// An unknown field of the body.
    BodyField,
    /// An unknown field of the alert.
    AlertField,
    /// A label's value.
    Label,
    /// An annotation's value.
    Annotation,
}

/// `body(group)` with `levels` of nesting at `place`.
fn deep_body(group: &str, place: Place, levels: usize) -> String {
    const MARK: &str = "\"__deep__\"";
    let mut value = body(group);
    let mark = Value::String("__deep__".to_owned());
    match place {
        Place::BodyField => value["futureField"] = mark,
        Place::AlertField => value["alerts"][0]["futureAlertField"] = mark,
        Place::Label => value["alerts"][0]["labels"]["instance"] = mark,
        Place::Annotation => value["alerts"][0]["annotations"]["summary"] = mark,
    }
    let text = value.to_string();
    assert_eq!(text.matches(MARK).count(), 1);
    text.replace(MARK, &nested(levels))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_accepted_is_delivered_and_what_cannot_be_is_refused() {
    let hook = HttpStandIn::webhook().await;
    let config = format!(
        "delivery:\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
         channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        hook.endpoint()
    );
    let notifier = NotifierProcess::start(&config).await;

    let mut cases: Vec<(Place, usize, u16)> = Vec::new();
    for (place, deepest) in [
        (Place::BodyField, TOP_DEEPEST),
        (Place::AlertField, ALERT_DEEPEST),
    ] {
        for levels in [1, deepest, deepest + 1, 126, 127, 128, 1000] {
            cases.push((place, levels, if levels <= deepest { 200 } else { 400 }));
        }
    }
    for place in [Place::Label, Place::Annotation] {
        for levels in [126, 127, 128, 1000] {
            cases.push((place, levels, 400));
        }
    }

    let mut accepted = BTreeMap::new();
    for (i, &(place, levels, expected)) in cases.iter().enumerate() {
        let group = format!("Deep{i}");
        let (status, answer) = notifier
            .post_text(deep_body(&group, place, levels), None)
            .await;
        assert_eq!(status, expected, "{place:?} {levels}: {answer}");
        let error = answer["error"].as_str().unwrap_or("");
        match (place, expected) {
            (_, 200) => {
                assert_eq!(answer["status"], "stored", "{answer}");
                accepted.insert(format!("{{}}:{{alertname=\"{group}\"}}"), (place, levels));
            }
            (Place::BodyField | Place::AlertField, _) => {
                let field = match place {
                    Place::BodyField => "futureField",
                    _ => "alerts[0].futureAlertField",
                };
                assert!(
                    error.starts_with(&format!("invalid webhook payload: {field}[0]")),
                    "{error}"
                );
                assert!(
                    error.contains(
                        "JSON nested too deep: level 65 is beyond the limit of 64 levels"
                    ),
                    "{error}"
                );
            }
            (Place::Label, _) => assert!(
                error.contains(
                    "alerts[0].labels.instance: invalid type: sequence, expected a string"
                ),
                "{error}"
            ),
            (Place::Annotation, _) => assert!(
                error.contains(
                    "alerts[0].annotations.summary: invalid type: sequence, expected a string"
                ),
                "{error}"
            ),
        }
    }
    assert_eq!(accepted.len(), 4);

    // Every accepted one is delivered, once, with its nesting intact; nothing dead-letters.
    hook.wait_for_requests(accepted.len(), LIMIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = hook.requests();
    assert_eq!(requests.len(), accepted.len());
    let mut delivered = BTreeMap::new();
    for request in &requests {
        let json = request.json();
        let key = json["groupKey"].as_str().unwrap_or("").to_owned();
        let (place, levels) = accepted[&key];
        let mut value = match place {
            Place::BodyField => &json["futureField"],
            _ => &json["alerts"][0]["futureAlertField"],
        };
        let mut depth = 0;
        while let Some(inner) = value.as_array() {
            depth += 1;
            match inner.first() {
                Some(next) => value = next,
                None => break,
            }
        }
        assert_eq!(depth, levels, "{key}");
        *delivered.entry(key).or_insert(0) += 1;
    }
    assert!(delivered.values().all(|&n| n == 1), "{delivered:?}");
    let dead = notifier.get_json("/api/v1/notifications?state=dead").await;
    assert_eq!(
        dead["notifications"].as_array().map(Vec::len),
        Some(0),
        "{dead}"
    );
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_notifications_received_total")
            .await,
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_without_alerts_is_refused() {
    let notifier = NotifierProcess::start("").await;
    let mut empty = body("Empty");
    empty["alerts"] = Value::Array(Vec::new());
    let (status, answer) = notifier.post(&empty, None).await;
    assert_eq!(status, 400, "{answer}");
    let error = answer["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("invalid webhook payload: alerts: empty"),
        "{error}"
    );
    let list = notifier.get_json("/api/v1/notifications").await;
    assert_eq!(
        list["notifications"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_stored_after_its_client_hung_up_is_counted() {
    let notifier = NotifierProcess::start("").await;
    let address = notifier.url().trim_start_matches("http://").to_owned();
    const SENT: usize = 20;
    for i in 0..SENT {
        let text = body(&format!("HungUp{i}")).to_string();
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let request = format!(
            "POST /webhook HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{text}",
            text.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write the request");
        // Closed before the answer is read.
        stream.shutdown().await.expect("shutdown");
        drop(stream);
    }
    // Those read whole before the hang-up was seen are stored; the others, never
    // answered, Alertmanager would send again.
    let mut stored = 0;
    let mut stable = 0;
    let deadline = std::time::Instant::now() + LIMIT;
    while stable < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let list = notifier.get_json("/api/v1/notifications?limit=100").await;
        let n = list["notifications"].as_array().map_or(0, Vec::len);
        stable = if n == stored { stable + 1 } else { 0 };
        stored = n;
    }
    assert!(stored > 0, "no webhook was stored");
    // Every one stored is counted, though nobody read its answer.
    let counted = notifier
        .metric("mcpwatch_notifier_notifications_received_total")
        .await;
    assert_eq!(counted, stored as f64, "{stored} of {SENT} stored");
}
