//! The cost of recording one request: a key lookup (method, tool, revision), the in-flight
//! gauge and one histogram observation, as [`mcpwatch_mcp::Metered`] does per request.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpwatch_mcp::{McpMetrics, Outcome, semconv};

fn record(c: &mut Criterion) {
    let tools: Vec<String> = (0..50).map(|i| format!("tool_{i:03}")).collect();
    let metrics = McpMetrics::new(&tools, [""; 0]);
    let table = metrics.table();
    c.bench_function("record one tools/call (key, in flight, observe)", |b| {
        b.iter(|| {
            let key = table.key_of(
                semconv::TOOLS_CALL,
                Some(black_box("tool_042")),
                Some(black_box("2026-07-28")),
            );
            let _in_flight = table.in_flight(key.method());
            table.observe(
                key,
                black_box(Outcome::Ok),
                black_box(Duration::from_micros(850)),
            );
        });
    });
    c.bench_function("record one tools/list", |b| {
        b.iter(|| {
            let key = table.key("tools/list", None, Some(black_box("2025-11-25")));
            table.observe(key, Outcome::Ok, black_box(Duration::from_micros(120)));
        });
    });
    let mut sink = mcpwatch_core::MetricSink::default();
    c.bench_function("collect the table (50 tools seen)", |b| {
        for t in &tools {
            let key = table.key("tools/call", Some(t), Some("2026-07-28"));
            table.observe(key, Outcome::Ok, Duration::from_millis(2));
        }
        b.iter(|| {
            sink = mcpwatch_core::MetricSink::default();
            table.collect_into(&mut sink);
            black_box(&sink);
        });
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
