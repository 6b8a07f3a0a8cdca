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
