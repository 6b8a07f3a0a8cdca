//! rustls client configuration for collectors that reach their targets over TLS, with the
//! three levels of checking that libpq's `sslmode` and `insecure_skip_verify` settings ask
//! for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::tls::crypto_provider;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerCheck {
    /// Encrypt without checking who is at the other end (libpq's `require`,
    /// `insecure_skip_verify`); the handshake signature is still checked.
    None,
    /// A chain to a trusted CA, whatever name the certificate is for (`verify-ca`).
    Chain,
    /// A trusted chain and the host name (`verify-full`, the default of HTTPS clients).
    Full,
}

/// A client configuration that trusts the CA certificates in `ca_file` (PEM), or the
/// system's when it is `None`. Errors name the file.
pub fn client_config(check: ServerCheck, ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let provider = Arc::new(crypto_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        ServerCheck::None => Arc::new(NoVerification {
            algorithms: provider.signature_verification_algorithms,
        }),
        ServerCheck::Chain | ServerCheck::Full => {
            let roots = Arc::new(roots(ca_file)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("TLS verifier: {e}"))?;
            if check == ServerCheck::Full {
                webpki
            } else {
                Arc::new(AnyName { inner: webpki })
            }
        }
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// What identifies a client configuration: the check, and the CA file as it is on disk
/// (its path, modification time and length), so that a changed file is read again.
type SharedKey = (ServerCheck, Option<(PathBuf, Option<SystemTime>, u64)>);

/// Client configurations built so far, at most this many kept.
const SHARED_MAX: usize = 64;

/// The same as [`client_config`], shared: callers asking for the same check and the same
/// CA file (unchanged on disk) get one configuration, so that many targets with the same
/// TLS settings (a fleet probed through service discovery) hold one root store, not one
/// each, and do not parse the system's roots again for each.
pub fn shared_client_config(
    check: ServerCheck,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, String> {
    static SHARED: Mutex<Option<HashMap<SharedKey, Arc<ClientConfig>>>> = Mutex::new(None);
    let file = ca_file.map(|path| {
        let meta = std::fs::metadata(path).ok();
        (
            path.to_path_buf(),
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.map_or(0, |m| m.len()),
        )
    });
    let key = (check, file);
    if let Some(config) = SHARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|shared| shared.get(&key))
    {
        return Ok(config.clone());
    }
    // Built outside the lock: reading the system's roots takes a while.
    let config = Arc::new(client_config(check, ca_file)?);
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    let shared = shared.get_or_insert_with(HashMap::new);
    if shared.len() >= SHARED_MAX {
        shared.clear();
    }
    Ok(shared.entry(key).or_insert(config).clone())
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                store
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!("{}: no PEM certificate", path.display()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err("no trusted CA certificate on this system; set a CA file".to_owned());
            }
        }
    }
    Ok(store)
}

#[derive(Debug)]
struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct AnyName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_level_and_names_a_bad_file() {
        assert!(client_config(ServerCheck::None, None).is_ok());
        let e = client_config(ServerCheck::Full, Some(Path::new("/nonexistent/ca.pem")))
            .expect_err("missing CA file");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = client_config(ServerCheck::Chain, Some(&empty)).expect_err("no certificate");
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn shared_configurations_are_one_per_check_and_file() {
        let a = shared_client_config(ServerCheck::None, None).expect("none");
        let b = shared_client_config(ServerCheck::None, None).expect("none");
        assert!(Arc::ptr_eq(&a, &b));
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("certificate")
            .cert
            .pem();
        std::fs::write(&ca, &cert).expect("ca");
        let c = shared_client_config(ServerCheck::Full, Some(&ca)).expect("ca");
        let d = shared_client_config(ServerCheck::Full, Some(&ca)).expect("ca");
        assert!(Arc::ptr_eq(&c, &d));
        assert!(!Arc::ptr_eq(&a, &c));
        // A file that changed is read again; one that went away is an error again.
        std::fs::write(&ca, format!("{cert}\n")).expect("ca");
        let e = shared_client_config(ServerCheck::Full, Some(&ca)).expect("changed");
        assert!(!Arc::ptr_eq(&c, &e));
        std::fs::remove_file(&ca).expect("remove");
        assert!(shared_client_config(ServerCheck::Full, Some(&ca)).is_err());
    }
}
