//! The notifier end to end: a real Alertmanager posting to the `mcpwatch-notifier` binary,
//! a real SMTP server (aiosmtpd), and local stand-ins that follow Slack's and PagerDuty's
//! documented contracts; faults, copies and `kill -9`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mcpwatch_tests::alertmanager::{Alertmanager, alert, resolved_alert};
use mcpwatch_tests::notifier::{NotifierProcess, load_payload, payload};
use mcpwatch_tests::random_token;
use mcpwatch_tests::smtp::{SmtpOptions, SmtpServer, SmtpTls};
use mcpwatch_tests::stand_in::{HttpStandIn, Scripted};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

fn alertmanager_config(notifier: &NotifierProcess, token: &str) -> String {
    format!(
        "route:\n  receiver: mcpwatch\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: mcpwatch\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n\
         \x20       http_config:\n          authorization:\n            credentials: {token}\n",
        notifier.webhook_url()
    )
}

/// Fast retries for tests.
const RETRY: &str = "delivery:\n  retry: {initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_to_every_channel_once_with_the_right_content() {
    let token = random_token("token-");
    let routing_key = random_token("rk");
    let hmac_key = random_token("hmac-");
    let smtp_password = random_token("pw-");
    let slack_secret = random_token("XXXX");
    let tls = SmtpTls::generate();
    let smtp = SmtpServer::start(SmtpOptions {
        tls: Some(tls.clone()),
        auth: Some(("alerts".into(), smtp_password.clone())),
        ..SmtpOptions::default()
    });
    let slack = HttpStandIn::slack().await;
    let pagerduty = HttpStandIn::pagerduty().await;
    let hook = HttpStandIn::webhook().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).expect("write CA");
    let config = format!(
        "receiver:\n  auth: {{bearer_token: {token}}}\n{RETRY}\
         channels:\n\
         \x20 pager:\n    pagerduty: {{routing_key: {routing_key}, url: '{pd}'}}\n\
         \x20 mail:\n    email:\n      smarthost: '127.0.0.1:{port}'\n      from: 'mcpwatch <alerts@example.com>'\n      to: [oncall@example.com]\n\
         \x20     auth: {{username: alerts, password: {smtp_password}}}\n      tls_config: {{ca_file: {ca}}}\n\
         \x20 chat:\n    slack: {{url: '{slack}/{slack_secret}'}}\n\
         \x20 hook:\n    webhook: {{url: '{hook}', hmac_secret: {hmac_key}}}\n\
         \x20 audit:\n    log: {{path: '{{dir}}/audit.jsonl', format: json}}\n\
         route:\n  routes:\n\
         \x20   - channels: [audit, hook]\n      continue: true\n\
         \x20   - matchers: ['severity=\"critical\"']\n      channels: [pager, mail]\n\
         \x20   - matchers: ['severity=~\"warning\"']\n      channels: [chat]\n",
        pd = pagerduty.endpoint(),
        port = smtp.port(),
        ca = ca.display(),
        slack = slack.endpoint(),
        hook = hook.endpoint(),
    );
    let notifier = NotifierProcess::start(&config).await;
    let am = Alertmanager::start(&alertmanager_config(&notifier, &token)).await;

    let down = [
        ("alertname", "WsDaemonDown"),
        ("severity", "critical"),
        ("instance", "mcp-1:3001"),
        ("job", "wsdaemon"),
    ];
    let down_annotations = [
        ("summary", "The MCP WebSocket daemon is down."),
        (
            "description",
            "wsdaemon_up has been 0 for 2 minutes on mcp-1:3001.",
        ),
        ("runbook_url", "https://example.com/runbooks#wsdaemondown"),
    ];
    let slow = [
        ("alertname", "McpResponseTimeHigh"),
        ("severity", "warning"),
        ("instance", "mcp-1:3001"),
    ];
    am.push_alerts(&[
        alert(&down, &down_annotations),
        alert(&slow, &[("summary", "Responses take over 2 s.")]),
    ])
    .await;

    let pd = pagerduty.wait_for_requests(1, LIMIT).await;
    let trigger = pd[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], routing_key.as_str());
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "mcp-1:3001");
    let summary = trigger["payload"]["summary"].as_str().expect("summary");
    assert!(summary.starts_with("[FIRING:1] WsDaemonDown"), "{summary}");
    assert!(
        summary.contains("The MCP WebSocket daemon is down."),
        "{summary}"
    );
    let dedup_key = trigger["dedup_key"].as_str().expect("dedup_key").to_owned();
    assert_eq!(dedup_key.len(), 64);
    assert!(
        trigger["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["href"] == "https://example.com/runbooks#wsdaemondown"),
        "{trigger}"
    );

    let mails = smtp.wait_for_messages(1, LIMIT).await;
    let mail = &mails[0];
    assert!(mail.tls, "STARTTLS was used");
    assert_eq!(mail.login.as_deref(), Some("alerts"));
    assert_eq!(mail.to, ["oncall@example.com"]);
    let subject = mail.subject().expect("subject");
    assert!(subject.starts_with("[FIRING:1] WsDaemonDown"), "{subject}");
    let text = mail.text().expect("text part");
    assert!(
        text.contains("wsdaemon_up has been 0 for 2 minutes"),
        "{text}"
    );
    assert!(
        text.contains("Runbook: https://example.com/runbooks#wsdaemondown"),
        "{text}"
    );
    // HTML escaping writes '/' as "&#x2f;" in attributes; a browser reads it back.
    let html = mail.html().expect("html part").replace("&#x2f;", "/");
    assert!(
        html.contains("href=\"https://example.com/runbooks#wsdaemondown\""),
        "{html}"
    );

    let chat = slack.wait_for_requests(1, LIMIT).await;
    let message = chat[0].json();
    let attachment = &message["attachments"][0];
    assert_eq!(attachment["color"], "warning");
    assert!(
        attachment["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("[FIRING:1] McpResponseTimeHigh")),
        "{message}"
    );
    assert!(
        attachment["text"]
            .as_str()
            .is_some_and(|t| t.contains("Responses take over 2 s.")),
        "{message}"
    );

    let hooks = hook.wait_for_requests(2, LIMIT).await;
    for request in &hooks {
        let timestamp: i64 = request
            .header("x-mcpwatch-timestamp")
            .expect("timestamp")
            .parse()
            .expect("number");
        let expected =
            mcpwatch_notifier::channels::signature(hmac_key.as_bytes(), timestamp, &request.body);
        assert_eq!(
            request.header("x-mcpwatch-signature"),
            Some(expected.as_str())
        );
        let body = request.json();
        assert_eq!(body["version"], "4");
        assert_eq!(body["receiver"], "mcpwatch");
        assert_eq!(body["alerts"].as_array().map(Vec::len), Some(1));
    }

    // Resolving the critical alert resolves the PagerDuty incident under the same key.
    am.push_alerts(&[resolved_alert(&down, &down_annotations)])
        .await;
    let pd = pagerduty.wait_for_requests(2, LIMIT).await;
    let resolve = pd[1].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], dedup_key.as_str());
    let mails = smtp.wait_for_messages(2, LIMIT).await;
    let subject = mails[1].subject().expect("subject");
    assert!(subject.starts_with("[RESOLVED] WsDaemonDown"), "{subject}");

    // Once: nothing more arrives.
    let audit_path = notifier.dir().join("audit.jsonl");
    let audit = mcpwatch_tests::wait_for_async("the audit log", LIMIT, || {
        let path = audit_path.clone();
        async move {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            (text.lines().count() >= 3).then_some(text)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pagerduty.requests().len(), 2, "PagerDuty");
    assert_eq!(smtp.messages().len(), 2, "email");
    assert_eq!(slack.requests().len(), 1, "Slack");
    assert_eq!(hook.requests().len(), 3, "webhook");
    assert_eq!(
        std::fs::read_to_string(&audit_path)
            .expect("audit")
            .lines()
            .count(),
        3,
        "{audit}"
    );
    for line in audit.lines() {
        let entry: Value = serde_json::from_str(line).expect("JSON line");
        assert!(
            entry["alerts"][0]["labels"]["alertname"].is_string(),
            "{line}"
        );
    }
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_delivered_total{channel=\"pager\"}")
            .await,
        2.0
    );

    // No secret anywhere the notifier writes or answers.
    let api = notifier.get_json("/api/v1/notifications").await.to_string();
    let health = notifier.get_json("/health").await.to_string();
    let log = notifier.log();
    for secret in [
        &token,
        &routing_key,
        &hmac_key,
        &smtp_password,
        &slack_secret,
    ] {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
        assert!(!api.contains(secret.as_str()), "a secret in the API");
        assert!(!health.contains(secret.as_str()), "a secret in /health");
    }
    drop(am);
}

fn simple_payload(name: &str, severity: &str) -> Value {
    payload(
        "mcpwatch",
        &format!("{{}}:{{alertname=\"{name}\"}}"),
        &[(
            &[("alertname", name), ("severity", severity)],
            "firing",
            "2026-11-22T10:00:00Z",
        )],
        "http://alertmanager-1:9093",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_429_waits_for_retry_after() {
    let slack = HttpStandIn::slack().await;
    slack.push_response(Scripted::RateLimited {
        retry_after_secs: 2,
    });
    let notifier = NotifierProcess::start(&format!(
        "{RETRY}channels:\n  chat:\n    slack: {{url: '{}'}}\nroute:\n  channels: [chat]\n",
        slack.endpoint()
    ))
    .await;
    let (status, answer) = notifier
        .post(&simple_payload("ProviderDown", "warning"), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    let requests = slack.wait_for_requests(2, LIMIT).await;
    assert_eq!(requests[0].status, Some(429));
    assert_eq!(requests[1].status, Some(200));
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.requests().len(), 2);
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
async fn pagerduty_400_is_a_dead_letter_and_replayable() {
    let pagerduty = HttpStandIn::pagerduty().await;
    pagerduty.push_response(Scripted::Status(
        400,
        r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.source' is missing or blank"]}"#
            .into(),
    ));
    let notifier = NotifierProcess::start(&format!(
        "{RETRY}channels:\n  pager:\n    pagerduty: {{routing_key: R0UT1NGKEY, url: '{}'}}\nroute:\n  channels: [pager]\n",
        pagerduty.endpoint()
    ))
    .await;
    let (status, answer) = notifier
        .post(&simple_payload("DatabaseDown", "critical"), None)
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_i64().expect("id");
    pagerduty.wait_for_requests(1, LIMIT).await;
    let dead = mcpwatch_tests::wait_for_async("a dead letter", LIMIT, || {
        let notifier = &notifier;
        async move {
            let list = notifier.get_json("/api/v1/notifications?state=dead").await;
            let found = list["notifications"]
                .as_array()
                .is_some_and(|l| !l.is_empty());
            found.then_some(list)
        }
    })
    .await;
    let delivery = &dead["notifications"][0]["deliveries"][0];
    assert_eq!(delivery["state"], "dead");
    assert_eq!(delivery["attempts"], 1);
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("400") && e.contains("payload.source")),
        "{dead}"
    );
    // Never retried.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pagerduty.requests().len(), 1);
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_dead_letters_total{channel=\"pager\"}")
            .await,
        1.0
    );
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_queue_depth{channel=\"pager\",state=\"dead\"}")
            .await,
        1.0
    );

    // Replayed, it goes out (the stand-in takes it now).
    let replay = mcpwatch_tests::http::client()
        .post(format!(
            "{}/api/v1/notifications/{id}/replay",
            notifier.url()
        ))
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status().as_u16(), 200);
    let requests = pagerduty.wait_for_requests(2, LIMIT).await;
    assert_eq!(requests[1].status, Some(202));
    mcpwatch_tests::wait_for_async("the replay delivered", LIMIT, || {
        let notifier = &notifier;
        async move {
            let one = notifier
                .get_json(&format!("/api/v1/notifications/{id}"))
                .await;
            (one["deliveries"][0]["state"] == "delivered").then_some(())
        }
    })
    .await;
    let again = mcpwatch_tests::http::client()
        .post(format!(
            "{}/api/v1/notifications/{id}/replay",
            notifier.url()
        ))
        .send()
        .await
        .expect("replay");
    assert_eq!(again.status().as_u16(), 409, "nothing dead is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_for_30_seconds_then_delivered_once() {
    let mut smtp = SmtpServer::start(SmtpOptions::default());
    let notifier = NotifierProcess::start(&format!(
        "delivery:\n  retry: {{initial_backoff: 500ms, max_backoff: 2s}}\n\
         channels:\n  mail:\n    email: {{smarthost: '127.0.0.1:{}', from: alerts@example.com, to: [oncall@example.com], security: none, allow_insecure: true}}\n\
         route:\n  channels: [mail]\n",
        smtp.port()
    ))
    .await;
    smtp.stop();
    let (status, _) = notifier
        .post(&simple_payload("PostgresDown", "critical"), None)
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        notifier
            .metric("mcpwatch_notifier_retries_total{channel=\"mail\"}")
            .await
            >= 5.0,
        "{}",
        notifier.log()
    );
    smtp.restart();
    let mails = smtp.wait_for_messages(1, LIMIT).await;
    assert!(
        mails[0]
            .subject()
            .is_some_and(|s| s.contains("PostgresDown"))
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_5xx_is_permanent() {
    let smtp = SmtpServer::start(SmtpOptions {
        reject_code: Some(550),
        ..SmtpOptions::default()
    });
    let notifier = NotifierProcess::start(&format!(
        "{RETRY}channels:\n  mail:\n    email: {{smarthost: '127.0.0.1:{}', from: alerts@example.com, to: [nobody@example.com], security: none, allow_insecure: true}}\n\
         route:\n  channels: [mail]\n",
        smtp.port()
    ))
    .await;
    notifier
        .post(&simple_payload("RedisDown", "critical"), None)
        .await;
    mcpwatch_tests::wait_for_async("a dead letter", LIMIT, || {
        let notifier = &notifier;
        async move {
            let dead = notifier
                .metric("mcpwatch_notifier_dead_letters_total{channel=\"mail\"}")
                .await;
            (dead == 1.0).then_some(())
        }
    })
    .await;
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_delivery_failures_total{channel=\"mail\",kind=\"smtp_permanent\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_from_retries_and_two_alertmanagers_are_delivered_once() {
    let hook = HttpStandIn::webhook().await;
    let notifier = NotifierProcess::start(&format!(
        "{RETRY}channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        hook.endpoint()
    ))
    .await;
    // The same payload five times, all in flight together (an Alertmanager that gave up
    // waiting sends again while the first is still being stored): each request's headers
    // and most of its body first, then the rest of every body at once. None had its answer
    // when the others arrived, so none is a reminder.
    let body = simple_payload("McpErrorRateHigh", "warning").to_string();
    let address = notifier.url().trim_start_matches("http://").to_owned();
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            &body[..body.len() - 1]
        );
        tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
            .await
            .expect("send");
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers = futures_util::future::join_all(streams.into_iter().map(|mut stream| {
        let last = body[body.len() - 1..].to_owned();
        async move {
            tokio::io::AsyncWriteExt::write_all(&mut stream, last.as_bytes())
                .await
                .expect("send");
            let mut answer = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
                .await
                .expect("answer");
            answer
        }
    }))
    .await;
    let statuses: Vec<String> = answers
        .iter()
        .map(|answer| {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            let json = answer.split("\r\n\r\n").nth(1).unwrap_or("");
            let json: Value = serde_json::from_str(json).unwrap_or(Value::Null);
            json["status"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "stored").count(),
        1,
        "{statuses:?}"
    );
    hook.wait_for_requests(1, LIMIT).await;

    // Two Alertmanager replicas that do not gossip both send the same alert.
    let config = format!(
        "route:\n  receiver: mcpwatch\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: mcpwatch\n    webhook_configs:\n      - url: {}\n",
        notifier.webhook_url()
    );
    let first = Alertmanager::start(&config).await;
    let second = Alertmanager::start(&config).await;
    let down = alert(
        &[
            ("alertname", "ProviderDown"),
            ("provider", "glm"),
            ("severity", "critical"),
        ],
        &[("summary", "Provider glm is down.")],
    );
    first.push_alerts(std::slice::from_ref(&down)).await;
    second.push_alerts(std::slice::from_ref(&down)).await;
    mcpwatch_tests::wait_for_async("both replicas' copies", LIMIT, || {
        let notifier = &notifier;
        async move {
            let received = notifier
                .metric("mcpwatch_notifier_notifications_received_total")
                .await;
            (received >= 7.0).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = hook.requests();
    let names: Vec<String> = requests
        .iter()
        .map(|r| {
            r.json()["alerts"][0]["labels"]["alertname"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["McpErrorRateHigh", "ProviderDown"],
        "one delivery each"
    );
    assert!(
        notifier
            .metric("mcpwatch_notifier_notifications_duplicate_total")
            .await
            >= 5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_nothing_acknowledged_and_repeats_nothing_recorded_delivered() {
    let hook = HttpStandIn::webhook().await;
    let mut notifier = NotifierProcess::start(&format!(
        "{RETRY}channels:\n  hook:\n    webhook: {{url: '{}'}}\nroute:\n  channels: [hook]\n",
        hook.endpoint()
    ))
    .await;
    let url = notifier.webhook_url();
    let client = mcpwatch_tests::http::client();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut senders = Vec::new();
    for worker in 0..8 {
        let client = client.clone();
        let url = url.clone();
        let acked = acked_tx.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..100 {
                let (key, body) = load_payload(worker, i);
                let sent = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        let _ = acked.send(key);
                    }
                    // Refused or cut: not acknowledged, Alertmanager would send it again.
                    _ => break,
                }
            }
        }));
    }
    drop(acked_tx);
    let mut acked = BTreeSet::new();
    while acked.len() < 300 {
        match acked_rx.recv().await {
            Some(key) => {
                acked.insert(key);
            }
            None => break,
        }
    }
    notifier.kill();
    for sender in senders {
        let _ = sender.await;
    }
    while let Ok(key) = acked_rx.try_recv() {
        acked.insert(key);
    }
    assert!(acked.len() >= 300, "{} acknowledged", acked.len());

    // What the store says was delivered before the kill, and what was in flight.
    let db = rusqlite::Connection::open(notifier.dir().join("notifier.db")).expect("open store");
    let mut by_state: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    {
        let mut statement = db
            .prepare(
                "SELECT n.group_key, d.state FROM mcpwatch_deliveries d JOIN mcpwatch_notifications n ON n.id = d.notification_id",
            )
            .expect("prepare");
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .expect("query");
        for row in rows {
            let (key, state) = row.expect("row");
            by_state.entry(state).or_default().insert(key);
        }
    }
    drop(db);
    let stored: BTreeSet<String> = by_state.values().flatten().cloned().collect();
    for key in &acked {
        assert!(stored.contains(key), "acknowledged but not stored: {key}");
    }
    let delivered_before = by_state.get("delivered").cloned().unwrap_or_default();
    let in_flight = by_state.get("sending").cloned().unwrap_or_default();

    notifier.start_again().await;
    let total = stored.len();
    mcpwatch_tests::wait_for_async(
        "every stored notification delivered",
        Duration::from_secs(120),
        || {
            let hook = &hook;
            async move {
                let seen: BTreeSet<String> = hook
                    .requests()
                    .iter()
                    .filter(|r| r.status == Some(200))
                    .map(|r| r.json()["groupKey"].as_str().unwrap_or("").to_owned())
                    .collect();
                (seen.len() >= total).then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Counted at the sink: requests, and distinct idempotency keys (what a receiver that
    // honours `Idempotency-Key` acts on).
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in hook.requests() {
        let key = request.json()["groupKey"].as_str().unwrap_or("").to_owned();
        *counts.entry(key.clone()).or_default() += 1;
        let idempotency = request.header("idempotency-key").unwrap_or("").to_owned();
        keys.entry(key).or_default().insert(idempotency);
    }
    for key in &acked {
        assert_eq!(
            keys.get(key).map(BTreeSet::len),
            Some(1),
            "not delivered exactly once: {key}"
        );
    }
    for key in &delivered_before {
        assert_eq!(
            counts.get(key),
            Some(&1),
            "recorded delivered, sent again: {key}"
        );
    }
    // A request can only be repeated when the kill caught its delivery in flight.
    for (key, n) in &counts {
        if *n > 1 {
            assert!(
                in_flight.contains(key),
                "sent {n} times though not in flight: {key}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_naming_the_problem() {
    let token = random_token("token-");
    let notifier = NotifierProcess::start(&format!(
        "receiver:\n  auth: {{bearer_token: {token}}}\n  max_body_bytes: 4096\n"
    ))
    .await;
    let client = mcpwatch_tests::http::client();
    let post = |body: Vec<u8>, content_type: &'static str, auth: bool| {
        let mut request = client
            .post(notifier.webhook_url())
            .header("Content-Type", content_type)
            .body(body);
        if auth {
            request = request.bearer_auth(&token);
        }
        async move {
            let response = request.send().await.expect("POST");
            let status = response.status().as_u16();
            let header = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = response.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                header,
            )
        }
    };
    let good = simple_payload("HostCpuHigh", "warning").to_string();
    let (status, body, challenge) = post(good.clone().into(), "application/json", false).await;
    assert_eq!(
        (status, challenge.as_deref()),
        (401, Some("Bearer")),
        "{body}"
    );
    let (status, body, _) = post(good.clone().into(), "text/plain", true).await;
    assert_eq!(status, 415, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("application/json"))
    );
    let (status, body, _) = post("x".repeat(5000).into(), "application/json", true).await;
    assert_eq!(status, 413, "{body}");
    let (status, body, _) = post(b"{\"version\": \"4\", ".to_vec(), "application/json", true).await;
    assert_eq!(status, 400, "{body}");
    let mut wrong: Value = serde_json::from_str(&good).expect("json");
    wrong["version"] = "3".into();
    let (status, body, _) = post(wrong.to_string().into(), "application/json", true).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("version:")),
        "{body}"
    );
    let mut wrong: Value = serde_json::from_str(&good).expect("json");
    wrong["alerts"][0]["status"] = "burning".into();
    let (status, body, _) = post(wrong.to_string().into(), "application/json", true).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("alerts[0].status")),
        "{body}"
    );
    // Not UTF-8, in a field the notifier does not know: refused, since it could not be
    // delivered as it came.
    let mut unknown: Value = serde_json::from_str(&good).expect("json");
    unknown["futureField"] = "@@".into();
    let bytes = unknown.to_string().replace("@@", "\u{1}").into_bytes();
    let bytes: Vec<u8> = bytes
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect();
    let (status, body, _) = post(bytes, "application/json", true).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("futureField")
                || e.contains("UTF-8")
                || e.contains("unicode")),
        "{body}"
    );
    // Fields Alertmanager adds later are kept, not refused.
    let mut newer: Value = serde_json::from_str(&good).expect("json");
    newer["routeLabels"] = serde_json::json!({"team": "mcp"});
    newer["notification_reason"] = "first notification".into();
    let (status, body, _) = post(
        newer.to_string().into(),
        "application/json; charset=utf-8",
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_i64().expect("id");
    let stored = notifier
        .get_json(&format!("/api/v1/notifications/{id}"))
        .await;
    assert_eq!(stored["payload"]["routeLabels"]["team"], "mcp");
    let get = client
        .get(notifier.webhook_url())
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_webhook_rejected_total{reason=\"bad_request\"}")
            .await,
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_and_send_test() {
    let hook = HttpStandIn::webhook().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        format!(
            "channels:\n  hook:\n    webhook: {{url: '{}'}}\n  down:\n    webhook: {{url: 'http://127.0.0.1:1/'}}\n    timeout: 2s\n",
            hook.endpoint()
        ),
    )
    .expect("write");
    let binary = mcpwatch_tests::binaries::workspace_binary("mcpwatch-notifier");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(&binary)
            .args(args)
            .output()
            .expect("run");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let config = format!("--config.file={}", good.display());
    let (code, out, err) = run(&[&config, "--check-config"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "channels:\n  hook:\n    webhook: {url: 'http://127.0.0.1:1/'}\n    templates: {}\ntemplates:\n  title: '{{ status | nosuchfilter }}'\n",
    )
    .expect("write");
    let (code, _, err) = run(&[
        &format!("--config.file={}", bad.display()),
        "--check-config",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("bad.yml:6:"), "{err}");
    assert!(err.contains("nosuchfilter"), "{err}");

    let (code, out, err) = tokio::task::spawn_blocking({
        let run_args = vec![
            config.clone(),
            "send-test".to_owned(),
            "--channel=hook".to_owned(),
        ];
        let binary = binary.clone();
        move || {
            let output = std::process::Command::new(&binary)
                .args(&run_args)
                .output()
                .expect("run");
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("delivered through \"hook\""), "{out}");
    let requests = hook.wait_for_requests(1, LIMIT).await;
    assert_eq!(
        requests[0].json()["alerts"][0]["labels"]["alertname"],
        "McpwatchTestNotification"
    );
    let (code, _, err) = run(&[&config, "send-test", "--channel=down"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("channel \"down\" failed"), "{err}");
    let (code, _, err) = run(&[&config, "send-test", "--channel=nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no channel is named \"nope\""), "{err}");
}
