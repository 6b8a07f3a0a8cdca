//! The CPU side of accepting one webhook: parsing a 10-alert payload, its dedup key, and
//! routing its alerts; and, on the delivery side, parsing it into owned values, the
//! template context and a Slack text.
//!
//! `cargo bench -p mcpwatch-notifier --bench accept`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcpwatch_notifier::config::{ChannelKind, NotifierConfig};
use mcpwatch_notifier::payload::{Incoming, Notification};
use mcpwatch_notifier::setup::Setup;

/// Ten alerts as Alertmanager sends them for a provider outage, about 6.5 KB.
fn payload() -> Vec<u8> {
    let alerts: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"status":"firing","labels":{{"alertname":"McpProviderDown","severity":"warning","provider":"provider-{i}","instance":"mcp-1:3001","job":"wsdaemon"}},"annotations":{{"summary":"Provider provider-{i} is down.","description":"wsdaemon_provider_up{{provider=\"provider-{i}\"}} has been 0 for 2 minutes on mcp-1:3001.","runbook_url":"https://example.com/runbooks#mcpproviderdown"}},"startsAt":"2026-11-22T10:00:00.123456789Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph?g0.expr=wsdaemon_provider_up+%3D%3D+0&g0.tab=1","fingerprint":"{i:016x}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"receiver":"mcpwatch","status":"firing","alerts":[{}],"groupLabels":{{"alertname":"McpProviderDown"}},"commonLabels":{{"alertname":"McpProviderDown","severity":"warning","instance":"mcp-1:3001","job":"wsdaemon"}},"commonAnnotations":{{"runbook_url":"https://example.com/runbooks#mcpproviderdown"}},"externalURL":"http://alertmanager:9093","version":"4","groupKey":"{{}}/{{severity=\"warning\"}}:{{alertname=\"McpProviderDown\"}}","truncatedAlerts":0}}"#,
        alerts.join(",")
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let body = payload();
    let config = NotifierConfig::parse(
        "channels:\n  chat:\n    slack: {url: 'https://hooks.example.com/services/T/B/X'}\n  pager:\n    pagerduty: {routing_key: key}\nroute:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      channels: [pager]\n    - matchers: ['severity=~\"warning|info\"']\n      channels: [chat]\n",
        Path::new("bench.yml"),
    )
    .expect("config");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let setup = runtime
        .block_on(async { Setup::build(config) })
        .expect("setup");
    let notification = std::sync::Arc::new(Notification::parse(&body).expect("payload"));
    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Bytes(body.len() as u64));
    // What the receiver parses (borrowing), and what a delivery parses (owning).
    let text = std::str::from_utf8(&body).expect("UTF-8");
    group.bench_function("parse", |b| {
        b.iter(|| Incoming::parse(black_box(text)).map(|n| n.alerts().len()))
    });
    group.bench_function("parse_owned", |b| {
        b.iter(|| Notification::parse(black_box(&body)))
    });
    let incoming = Incoming::parse(text).expect("payload");
    group.bench_function("dedup_key", |b| b.iter(|| black_box(&incoming).dedup_key()));
    group.bench_function("route", |b| {
        b.iter(|| {
            setup.plan(
                black_box(&incoming)
                    .alerts()
                    .iter()
                    .map(|a| (a.status, &a.labels)),
                &[],
                0,
            )
        })
    });
    let all: Vec<usize> = (0..notification.alerts.len()).collect();
    group.bench_function("context", |b| {
        b.iter(|| setup.templates.context(&notification, &all, "chat", None))
    });
    group.bench_function("slack_text", |b| {
        b.iter(|| {
            let context = setup.templates.context(&notification, &all, "chat", None);
            setup
                .templates
                .render(ChannelKind::Slack, "chat", "text", &context)
        })
    });
    group.finish();
    runtime.block_on(async move { drop(setup) });
}

criterion_group!(benches, bench);
criterion_main!(benches);
