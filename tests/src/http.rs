//! HTTP clients for the tests.

use std::net::SocketAddr;
use std::time::Duration;

/// Makes ring the process's rustls provider, as the binaries do.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A plain HTTP client with a 30 s limit per request.
///
/// # Panics
/// When the client cannot be built.
pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("http client")
}

/// One scrape of the exporter at `address`: `GET /metrics` (with `accept` when given) must
/// answer 200; its text is checked for duplicate series.
///
/// # Panics
/// When the request fails, the status is not 200, or a series is there twice.
pub async fn scrape_text(address: SocketAddr, accept: Option<&str>) -> String {
    let mut request = client().get(format!("http://{address}/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    crate::exposition::checked(response.text().await.expect("body"))
}

/// An HTTPS client trusting only `ca_pem`, optionally presenting a client certificate.
///
/// # Panics
/// When the certificates cannot be used.
pub fn tls_client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client cert"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key"),
            )
            .expect("client auth"),
    };
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .tls_backend_preconfigured(config)
        .tls_info(true)
        .build()
        .expect("https client")
}
