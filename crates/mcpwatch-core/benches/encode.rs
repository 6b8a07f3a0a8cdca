//! Encoding 10,000 series in each exposition format.
//!
//! `cargo bench -p mcpwatch-core --bench encode`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcpwatch_core::encode::{Format, gzip};
use mcpwatch_core::metrics::{FamilyGroup, MetricFamily, merge_families};

/// 100 families of 100 series, with labels shaped like a database exporter's: two targets,
/// a database name and a state, values of mixed magnitude.
fn snapshot() -> Arc<[FamilyGroup]> {
    let mut families = Vec::new();
    for f in 0..100 {
        let counter = f % 2 == 0;
        let name = if counter {
            format!("pg_bench_family_{f}_total")
        } else {
            format!("pg_bench_family_{f}_bytes")
        };
        let mut family = if counter {
            MetricFamily::counter(name, "A benchmark family with a help text of usual length.")
        } else {
            MetricFamily::gauge(name, "A benchmark family with a help text of usual length.")
        };
        for s in 0..100 {
            let database = format!("app_{}", s % 25);
            let state = ["active", "idle", "idle in transaction", "disabled"][s % 4];
            let target = if s < 50 { "primary" } else { "replica" };
            family.add(
                &[("target", target), ("datname", &database), ("state", state)],
                (s * 7919 + f) as f64 * if s % 3 == 0 { 0.001 } else { 1.0 },
            );
        }
        families.push(family);
    }
    let (groups, _) = merge_families(families);
    Arc::from(groups)
}

fn encode(c: &mut Criterion) {
    let groups = snapshot();
    let series: usize = groups.iter().map(FamilyGroup::series).sum();
    assert_eq!(series, 10_000);
    let mut group = c.benchmark_group("encode_10k_series");
    group.throughput(Throughput::Elements(series as u64));
    group.bench_function("text_0.0.4", |b| {
        b.iter(|| black_box(Format::Text.encode(black_box(&groups))))
    });
    group.bench_function("openmetrics_1.0.0", |b| {
        b.iter(|| black_box(Format::OpenMetrics.encode(black_box(&groups))))
    });
    let text = Format::Text.encode(&groups);
    group.bench_function("text_0.0.4_gzip", |b| {
        b.iter(|| black_box(gzip(black_box(&text))))
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
