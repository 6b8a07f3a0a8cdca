//! What a scrape costs after a burst: 20,000 lines (an application log, an access log,
//! error lines with codes) read and tested against the three patterns of the shipped
//! example.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcpwatch_core::{Collector, MetricSink, ScrapeContext};
use mcpwatch_logs::{LogPatternsCollector, LogPatternsConfig};

const LINES: u32 = 20_000;

fn burst() -> String {
    (0..LINES)
        .map(|i| match i % 4 {
            0 => format!(
                "2026-12-06 00:00:{:02} INFO app request served id={i} path=/api/v1/items took=12ms\n",
                i % 60
            ),
            1 => format!(
                "127.0.0.1 - - [06/Dec/2026:00:00:00 +0000] \"GET /api/v1/items/{i} HTTP/1.1\" {} 512 \"-\" \"curl/8.5\"\n",
                if i % 8 == 1 { 429 } else { 200 }
            ),
            2 => format!("2026-12-06 00:00:00 ERROR auth failed code=AUTH_00{} request={i}\n", i % 5),
            _ => format!("2026-12-06 00:00:00 WARNING slow query took {i}ms, consider an index\n"),
        })
        .collect()
}

fn scrape(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = burst();
    std::fs::write(dir.path().join("app.log"), &text).expect("write");
    let config = format!(
        "name: backend\npath: {}/app.log\nread_existing: true\npatterns:\n\
         - {{ name: auth_error, regex: '(?P<code>AUTH_\\d{{3}})', labels: [code] }}\n\
         - {{ name: http_status, regex: '\" (?P<status>[45]\\d\\d) ', labels: [status] }}\n\
         - {{ name: error, regex: '\\b(ERROR|CRITICAL)\\b' }}\n",
        dir.path().display()
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("log_patterns");
    group.throughput(Throughput::Elements(u64::from(LINES)));
    group.bench_function("20000_lines_3_patterns", |b| {
        b.iter(|| {
            let config: LogPatternsConfig =
                mcpwatch_core::config::parse_yaml(&config, Path::new("b.yml")).expect("config");
            let collector = LogPatternsCollector::new(config).expect("collector");
            let mut sink = MetricSink::default();
            runtime.block_on(async {
                let ctx = ScrapeContext::new(tokio::time::Instant::now() + Duration::from_secs(60));
                collector.collect(&ctx, &mut sink).await.expect("collect");
            });
            black_box(sink)
        })
    });
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
