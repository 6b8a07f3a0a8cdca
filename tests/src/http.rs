//! HTTP clients for the tests.

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
