//! Certificates for TLS tests, made on the fly.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA and a server certificate it signs for `name`: `(ca, certificate, key)`, in PEM.
///
/// # Panics
/// When rcgen fails.
pub fn ca_and_server(name: &str) -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}
