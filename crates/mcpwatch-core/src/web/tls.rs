//! rustls server configuration from `tls_server_config`.
//!
//! The whole workspace uses the *ring* crypto provider; [`install_crypto_provider`] makes
//! it the process default for libraries that look it up.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::config::{ClientAuthType, TlsServerConfig, TlsVersion};
use crate::config::ConfigError;

/// The crypto provider of the workspace.
pub fn crypto_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Makes the workspace's provider the process default; harmless when one is installed.
pub fn install_crypto_provider() {
    let _ = crypto_provider().install_default();
}

/// Builds the rustls configuration; errors name the key at fault in `path`, and its line.
pub fn server_config(tls: &TlsServerConfig, path: &Path) -> Result<ServerConfig, ConfigError> {
    let invalid = |key: &str, message: String| {
        ConfigError::in_file(path, format!("tls_server_config.{key}"), message)
    };
    let (cert_pem, cert_key) = match (&tls.cert, &tls.cert_file) {
        (Some(inline), _) => (inline.as_str(), "cert"),
        (None, Some(file)) => (file.content(), "cert_file"),
        (None, None) => return Err(invalid("cert_file", "required".into())),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cert_key, format!("invalid PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(cert_key, "no certificate found".into()));
    }
    let (key_pem, key_key) = match (&tls.key, &tls.key_file) {
        (Some(inline), _) => (inline.expose(), "key"),
        (None, Some(file)) => (file.content(), "key_file"),
        (None, None) => return Err(invalid("key_file", "required".into())),
    };
    // The key's own parse error could quote key material, so it is not passed on.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        invalid(
            key_key,
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) found".into(),
        )
    })?;

    let mut provider = crypto_provider();
    if !tls.cipher_suites.is_empty() {
        let mut chosen: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .collect();
        for name in &tls.cipher_suites {
            let suite = provider
                .cipher_suites
                .iter()
                .find(|s| suite_named(s, name))
                .ok_or_else(|| {
                    invalid(
                        "cipher_suites",
                        format!(
                            "unsupported cipher suite {name:?}; supported: {}",
                            supported_suite_names(&provider).join(", ")
                        ),
                    )
                })?;
            chosen.push(*suite);
        }
        provider.cipher_suites = chosen;
    }
    if !tls.curve_preferences.is_empty() {
        let groups = tls
            .curve_preferences
            .iter()
            .map(|name| {
                let wanted = match name.as_str() {
                    "X25519" => "X25519",
                    "CurveP256" => "secp256r1",
                    "CurveP384" => "secp384r1",
                    _ => "",
                };
                provider
                    .kx_groups
                    .iter()
                    .copied()
                    .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| {
                        invalid(
                            "curve_preferences",
                            format!(
                                "unsupported curve {name:?}; supported: X25519, CurveP256, \
                                 CurveP384"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    let min = tls.min_version.unwrap_or(TlsVersion::Tls12);
    let max = tls.max_version.unwrap_or(TlsVersion::Tls13);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, p)| p)
    .collect();

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("min_version", e.to_string()))?;

    let verifier =
        client_verifier(tls, &provider).map_err(|(key, message)| invalid(key, message))?;
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| invalid(key_key, format!("does not match the certificate: {e}")))?;
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn client_verifier(
    tls: &TlsServerConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, (&'static str, String)> {
    let roots = || -> Result<Arc<RootCertStore>, (&'static str, String)> {
        let (pem, key) = match (&tls.client_ca, &tls.client_ca_file) {
            (Some(inline), _) => (inline.as_str(), "client_ca"),
            (None, Some(file)) => (file.content(), "client_ca_file"),
            (None, None) => return Err(("client_ca_file", "required".into())),
        };
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| (key, format!("invalid PEM certificate: {e}")))?;
            store
                .add(cert)
                .map_err(|e| (key, format!("unusable CA certificate: {e}")))?;
        }
        if store.is_empty() {
            return Err((key, "no certificate found".into()));
        }
        Ok(Arc::new(store))
    };
    let webpki = |optional: bool| -> Result<Arc<dyn ClientCertVerifier>, (&'static str, String)> {
        let builder = WebPkiClientVerifier::builder_with_provider(roots()?, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| ("client_ca_file", e.to_string()))
    };
    let unverified = |mandatory: bool| -> Arc<dyn ClientCertVerifier> {
        Arc::new(UnverifiedClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        })
    };
    let verifier = match tls.client_auth_type {
        ClientAuthType::NoClientCert => Arc::new(NoClientAuth) as Arc<dyn ClientCertVerifier>,
        ClientAuthType::RequestClientCert => unverified(false),
        ClientAuthType::RequireAnyClientCert => unverified(true),
        ClientAuthType::VerifyClientCertIfGiven => webpki(true)?,
        ClientAuthType::RequireAndVerifyClientCert => webpki(false)?,
    };
    if tls.client_allowed_sans.is_empty() {
        return Ok(verifier);
    }
    let allowed = tls
        .client_allowed_sans
        .iter()
        .map(|san| {
            ServerName::try_from(san.clone()).map_err(|_| {
                (
                    "client_allowed_sans",
                    format!("{san:?} is neither a DNS name nor an IP address"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(AllowedSans {
        inner: verifier,
        allowed,
    }))
}

/// `RequestClientCert` and `RequireAnyClientCert`: the certificate is not checked against
/// a CA, but the handshake signature is, so the client holds the key it presents.
#[derive(Debug)]
struct UnverifiedClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for UnverifiedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: after the chain is verified, the certificate must name one of
/// the allowed DNS names or IP addresses.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("client certificate: {e}")))?;
        if self
            .allowed
            .iter()
            .any(|name| cert.verify_is_valid_for_subject_name(name).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "client certificate names none of client_allowed_sans".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The Go name of a TLS 1.2 suite (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`); Go names the
/// ChaCha20 suites without the `_SHA256` suffix, and both spellings are accepted there.
fn go_suite_name(suite: &SupportedCipherSuite) -> Option<String> {
    if suite.version() != &rustls::version::TLS12 {
        return None;
    }
    let name = suite.suite().as_str()?.to_owned();
    Some(
        name.strip_suffix("_POLY1305_SHA256")
            .map_or(name.clone(), |base| format!("{base}_POLY1305")),
    )
}

/// Whether `suite` is the TLS 1.2 suite `name`, in Go's spelling or the IANA one.
fn suite_named(suite: &SupportedCipherSuite, name: &str) -> bool {
    go_suite_name(suite).as_deref() == Some(name)
        || (suite.version() == &rustls::version::TLS12 && suite.suite().as_str() == Some(name))
}

fn supported_suite_names(provider: &CryptoProvider) -> Vec<String> {
    provider
        .cipher_suites
        .iter()
        .filter_map(go_suite_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_names_for_tls12_suites() {
        let names = supported_suite_names(&crypto_provider());
        assert!(names.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()));
        assert!(names.contains(&"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".to_owned()));
        assert!(!names.iter().any(|n| n.starts_with("TLS13")));
        let provider = crypto_provider();
        let chacha = provider
            .cipher_suites
            .iter()
            .filter(|s| suite_named(s, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"))
            .count();
        assert_eq!(chacha, 1);
    }
}
