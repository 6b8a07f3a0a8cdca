//! The notifier's memory against the `mcpwatch-notifier` binary: a legal 3.9 MB webhook of
//! 8,500 alerts routed to five channels, then ten of them at once, stay far below the
//! 512 MiB the shipped Kubernetes manifest allows; every delivery arrives exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use mcpwatch_tests::notifier::NotifierProcess;
use mcpwatch_tests::stand_in::{HttpStandIn, ReceivedRequest, Service};
use serde_json::{Value, json};

/// Alerts in one webhook: what a large outage sends when Alertmanager's `max_alerts` is 0.
const ALERTS: usize = 8_500;
/// The peak resident memory allowed, well below the manifest's 512 MiB limit.
const BOUND_KIB: u64 = 256 * 1024;
/// Webhooks posted at once in the second round.
const AT_ONCE: usize = 10;
/// How long the test waits for deliveries (a debug build parses slowly).
const WAIT: Duration = Duration::from_secs(300);

/// Webhook `batch`: `ALERTS` firing alerts, each with labels and annotations of its own.
fn large_payload(batch: usize) -> Value {
    let alerts: Vec<Value> = (0..ALERTS)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {
                    "alertname": "McpToolLatencyHigh",
                    "batch": format!("b{batch}"),
                    "instance": format!("mcp-{i}:3001"),
                    "job": "mcp-servers",
                    "severity": "warning",
                    "tool": format!("tool-{}", i % 37),
                },
                "annotations": {
                    "summary": format!("Tool calls on mcp-{i} are slow."),
                    "description": "p99 above 2s for 10m.",
                    "runbook_url": "https://example.com/rb#latency",
                },
                "startsAt": "2026-11-22T10:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": format!("{:016x}", (batch * ALERTS + i) as u64 * 0x9e37_79b9),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{batch=\"b{batch}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "mcpwatch",
        "groupLabels": {"batch": format!("b{batch}")},
        "commonLabels": {"alertname": "McpToolLatencyHigh", "batch": format!("b{batch}"), "job": "mcp-servers", "namespace": "mcp-production", "severity": "warning"},
        "commonAnnotations": {"runbook_url": "https://example.com/runbooks#mcptoollatencyhigh"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    })
}

/// A `VmHWM` or `VmRSS` line of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The batch a request to a stand-in delivered, read where each channel kind puts the
/// group labels.
fn batch_of(request: &ReceivedRequest, service: Service) -> String {
    let body = request.json();
    let found = match service {
        Service::Webhook => body["groupLabels"]["batch"].as_str().map(str::to_owned),
        Service::Slack => body["attachments"][0]["title"]
            .as_str()
            .and_then(|t| t.rsplit(' ').next())
            .map(str::to_owned),
        Service::PagerDuty => body["payload"]["summary"]
            .as_str()
            .and_then(|s| s.split(' ').nth(1))
            .map(str::to_owned),
        Service::Teams => body["attachments"][0]["content"]["body"][0]["items"][0]["text"]
            .as_str()
            .and_then(|t| t.rsplit(' ').next())
            .map(str::to_owned),
    };
    found.unwrap_or_else(|| panic!("no batch in a request to the {service:?} stand-in"))
}

/// Waits until every stand-in has `n` requests; each batch of `batches` delivered exactly
/// once to each.
async fn delivered_once(stand_ins: &[(&str, HttpStandIn)], batches: &[String]) {
    for (name, stand_in) in stand_ins {
        let requests = stand_in.wait_for_requests(batches.len(), WAIT).await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for request in &requests {
            *seen
                .entry(batch_of(request, stand_in.service()))
                .or_default() += 1;
        }
        let expected: BTreeMap<String, usize> = batches.iter().map(|b| (b.clone(), 1)).collect();
        assert_eq!(seen, expected, "channel {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_webhooks_to_five_channels_stay_within_a_memory_bound() {
    let stand_ins = vec![
        ("hook-a", HttpStandIn::webhook().await),
        ("hook-b", HttpStandIn::webhook().await),
        ("chat-a", HttpStandIn::slack().await),
        ("chat-b", HttpStandIn::slack().await),
        ("pager", HttpStandIn::pagerduty().await),
    ];
    let mut config = String::from("channels:\n");
    for (name, stand_in) in &stand_ins {
        let kind = match stand_in.service() {
            Service::Webhook => format!("webhook: {{url: '{}'}}", stand_in.endpoint()),
            // A rate limit that does not hold the test up: it counts deliveries, not
            // Slack's pace.
            Service::Slack => format!(
                "slack: {{url: '{}'}}\n    rate_limit: {{per_second: 100, burst: 100}}",
                stand_in.endpoint()
            ),
            Service::PagerDuty => format!(
                "pagerduty: {{routing_key: 'R0UT1NGKEY0123456789012345678901', url: '{}'}}",
                stand_in.endpoint()
            ),
            Service::Teams => format!(
                "teams: {{url: '{}'}}\n    rate_limit: {{per_second: 100, burst: 100}}",
                stand_in.endpoint()
            ),
        };
        config.push_str(&format!("  {name}:\n    {kind}\n"));
    }
    let names: Vec<&str> = stand_ins.iter().map(|(n, _)| *n).collect();
    config.push_str(&format!("route:\n  channels: [{}]\n", names.join(", ")));
    let notifier = NotifierProcess::start(&config).await;
    let pid = notifier.pid();
    let idle = status_kib(pid, "VmHWM");

    let body = large_payload(0).to_string();
    assert!(
        (3_800_000..4_000_000).contains(&body.len()),
        "the payload is {} bytes",
        body.len()
    );
    let (status, answer) = notifier.post_text(body, None).await;
    assert_eq!(status, 200, "{answer}");
    delivered_once(&stand_ins, &["b0".to_owned()]).await;
    let one = status_kib(pid, "VmHWM");

    let bodies: Vec<String> = (1..=AT_ONCE)
        .map(|batch| large_payload(batch).to_string())
        .collect();
    let posts = bodies
        .into_iter()
        .map(|body| notifier.post_text(body, None));
    for (status, answer) in futures_util::future::join_all(posts).await {
        assert_eq!(status, 200, "{answer}");
    }
    let batches: Vec<String> = (0..=AT_ONCE).map(|b| format!("b{b}")).collect();
    delivered_once(&stand_ins, &batches).await;
    let peak = status_kib(pid, "VmHWM");
    let after = status_kib(pid, "VmRSS");

    let report = format!(
        "peak RSS: {idle} KiB idle, {one} KiB after one webhook, {peak} KiB after {AT_ONCE} at once; {after} KiB resident after"
    );
    // Every notification's weight was given back once its deliveries ended.
    mcpwatch_tests::wait_for_async("no delivery bytes in flight", WAIT, || async {
        (notifier
            .metric("mcpwatch_notifier_delivery_in_flight_bytes")
            .await
            == 0.0)
            .then_some(())
    })
    .await;
    // Nothing came twice meanwhile.
    for (name, stand_in) in &stand_ins {
        assert_eq!(stand_in.requests().len(), batches.len(), "channel {name}");
    }
    assert!(peak < BOUND_KIB, "{report}");
    assert!(after < BOUND_KIB, "{report}");
}
