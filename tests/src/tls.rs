//! Certificates for TLS tests, made on the fly.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA and a server certificate it signs for `name`: `(ca, certificate, key)`, in PEM.
///
/// # Panics
/// When rcgen fails.
pub fn ca_and_server(name: &str) -> (String, String, String) {
    ca_and_server_for(&[name])
}

/// A CA and a server certificate it signs for all of `names` (DNS names or IP addresses,
/// such as `["127.0.0.1", "localhost"]`): `(ca, certificate, key)`, in PEM.
///
/// # Panics
/// When rcgen fails.
pub fn ca_and_server_for(names: &[&str]) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct subjects: OpenSSL takes a certificate whose subject is its issuer's for
    // self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcpwatch test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("server"),
    );
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A certificate authority whose certificates end at given seconds, for tests of expiries
/// exact to the second.
pub struct Authority {
    issuer: rcgen::Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn params_until(names: Vec<String>, common_name: &str, not_after: i64) -> CertificateParams {
    let mut params = CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(not_after.min(unix_now()) - 30 * 86_400)
            .expect("time");
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("time");
    params
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Authority {
    /// A self-signed root named `name`, valid until `not_after` (seconds since the epoch).
    ///
    /// # Panics
    /// When rcgen fails.
    pub fn root(name: &str, not_after: i64) -> Self {
        let mut params = params_until(Vec::new(), name, not_after);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("root").pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// An intermediate CA this one signs, valid until `not_after`.
    ///
    /// # Panics
    /// When rcgen fails.
    pub fn intermediate(&self, name: &str, not_after: i64) -> Self {
        let mut params = params_until(Vec::new(), name, not_after);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let pem = params
            .signed_by(&key, &self.issuer)
            .expect("intermediate")
            .pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names` this CA signs, valid until `not_after`:
    /// `(certificate, key)`, PEM.
    ///
    /// # Panics
    /// When rcgen fails.
    pub fn server(&self, names: &[&str], not_after: i64) -> (String, String) {
        let params = params_until(
            names.iter().map(|n| (*n).to_owned()).collect(),
            names.first().copied().unwrap_or("server"),
            not_after,
        );
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("server");
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS acceptor serving this certificate (chain) and key, PEM, for the test servers.
///
/// # Panics
/// When the certificate or key does not parse.
pub fn acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        mcpwatch_core::web::crypto_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("TLS server configuration");
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}
