//! What certificate reporting costs: verifying a presented chain of three (done once per
//! new chain, then cached until a certificate's validity starts or ends), writing the
//! `tls_*` families of a cached report (every scrape), and reading the system's trusted
//! roots with their expiries (once per process, shared by every target).
//!
//! `cargo bench -p mcpwatch-core --bench certs`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use mcpwatch_core::MetricSink;
use mcpwatch_core::certs::{ChainReport, unix_now, write_reports};
use mcpwatch_core::web::Trust;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::CertificateDer;

fn ca(
    name: &str,
    issuer: Option<&Issuer<'static, KeyPair>>,
) -> (CertificateDer<'static>, String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer),
        None => params.self_signed(&key),
    }
    .expect("certificate");
    (cert.der().clone(), cert.pem(), Issuer::new(params, key))
}

fn bench(c: &mut Criterion) {
    let (_, root_pem, root) = ca("root", None);
    let (intermediate, _, issuer) = ca("intermediate", Some(&root));
    let params = CertificateParams::new(vec!["mcp.example.com".to_owned()]).expect("params");
    let leaf = params
        .signed_by(&KeyPair::generate().expect("key"), &issuer)
        .expect("leaf")
        .der()
        .clone();
    let (stale, _, _) = ca("stale", None);
    let chain = [leaf, intermediate, stale];
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("root.pem");
    std::fs::write(&path, root_pem).expect("root");
    let trust = Trust::load(Some(&path)).expect("trust");
    let now = unix_now();

    c.bench_function("certs/verify a presented chain of 3", |b| {
        b.iter(|| black_box(ChainReport::new(black_box(&chain), Some(&trust), None, now)))
    });
    let report = Arc::new(ChainReport::new(&chain, Some(&trust), None, now));
    let reports = vec![("mcp.example.com:443".to_owned(), report)];
    c.bench_function("certs/write the tls families of a cached report", |b| {
        b.iter(|| {
            let mut sink = MetricSink::default();
            write_reports(&mut sink, "wsdaemon", black_box(&reports), true);
            black_box(sink)
        })
    });
    let mut group = c.benchmark_group("certs");
    group.sample_size(10);
    group.bench_function("read the system's roots with their expiries", |b| {
        b.iter(|| black_box(Trust::load(None).ok()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
