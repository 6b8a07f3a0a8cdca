//! rustls client configuration for collectors that reach their targets over TLS, with the
//! three levels of checking that libpq's `sslmode` and `insecure_skip_verify` settings ask
//! for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::client::Resumption;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

use super::tls::crypto_provider;
use crate::certs::{CertInfo, WatchedTls};

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
    let trust = match check {
        ServerCheck::None => None,
        ServerCheck::Chain | ServerCheck::Full => Some(Arc::new(Trust::load(ca_file)?)),
    };
    build(verifier(check, trust.as_ref())?)
}

/// TLS client settings whose handshakes are watched: every certificate chain a server
/// presents is recorded, by `host:port`, before it is checked (so a chain that fails the
/// check is seen too), for [`ChainRecorder::write`](crate::certs::ChainRecorder::write) to report. Sessions are not resumed:
/// a resumed session skips the certificate, and a renewed certificate would go unseen.
/// The trusted CAs are shared as [`shared_client_config`] shares them.
pub fn watched_client_config(
    check: ServerCheck,
    ca_file: Option<&Path>,
) -> Result<Arc<WatchedTls>, String> {
    let trust = match check {
        ServerCheck::None => None,
        ServerCheck::Chain | ServerCheck::Full => Some(shared_trust(ca_file)?),
    };
    let verifier = verifier(check, trust.as_ref())?;
    let mut template = build(verifier.clone())?;
    template.resumption = Resumption::disabled();
    Ok(Arc::new(WatchedTls::new(
        template,
        verifier,
        trust,
        check == ServerCheck::Full,
    )))
}

fn build(verifier: Arc<dyn ServerCertVerifier>) -> Result<ClientConfig, String> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(crypto_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

fn verifier(
    check: ServerCheck,
    trust: Option<&Arc<Trust>>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let provider = Arc::new(crypto_provider());
    let Some(trust) = trust.filter(|_| check != ServerCheck::None) else {
        return Ok(Arc::new(NoVerification {
            algorithms: provider.signature_verification_algorithms,
        }));
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider)
        .build()
        .map_err(|e| format!("TLS verifier: {e}"))?;
    Ok(if check == ServerCheck::Full {
        webpki
    } else {
        Arc::new(Wrapped {
            inner: webpki,
            step: AnyName,
        })
    })
}

/// A file as it is on disk: its path, modification time and length, so that a changed
/// file is read again.
type FileKey = Option<(PathBuf, Option<SystemTime>, u64)>;

fn file_key(ca_file: Option<&Path>) -> FileKey {
    ca_file.map(|path| {
        let meta = std::fs::metadata(path).ok();
        (
            path.to_path_buf(),
            meta.as_ref().and_then(|m| m.modified().ok()),
            meta.map_or(0, |m| m.len()),
        )
    })
}

/// Entries kept at most in each of the shared caches.
const SHARED_MAX: usize = 64;

/// The value of `key` in `cache`, made by `make` (outside the lock: reading the system's
/// roots takes a while) when it is not there.
fn shared<K: Eq + std::hash::Hash, V: Clone>(
    cache: &Mutex<Option<HashMap<K, V>>>,
    key: K,
    make: impl FnOnce() -> Result<V, String>,
) -> Result<V, String> {
    if let Some(value) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|cache| cache.get(&key))
    {
        return Ok(value.clone());
    }
    let value = make()?;
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= SHARED_MAX {
        cache.clear();
    }
    Ok(cache.entry(key).or_insert(value).clone())
}

/// The same as [`client_config`], shared: callers asking for the same check and the same
/// CA file (unchanged on disk) get one configuration, so that many targets with the same
/// TLS settings (a fleet probed through service discovery) hold one root store, not one
/// each, and do not parse the system's roots again for each.
pub fn shared_client_config(
    check: ServerCheck,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, String> {
    type Configs = HashMap<(ServerCheck, FileKey), Arc<ClientConfig>>;
    static SHARED: Mutex<Option<Configs>> = Mutex::new(None);
    shared(&SHARED, (check, file_key(ca_file)), || {
        let trust = match check {
            ServerCheck::None => None,
            ServerCheck::Chain | ServerCheck::Full => Some(shared_trust(ca_file)?),
        };
        Ok(Arc::new(build(verifier(check, trust.as_ref())?)?))
    })
}

/// The CAs of `ca_file`, or the system's, read once for every caller while the file is
/// unchanged.
pub fn shared_trust(ca_file: Option<&Path>) -> Result<Arc<Trust>, String> {
    static SHARED: Mutex<Option<HashMap<FileKey, Arc<Trust>>>> = Mutex::new(None);
    shared(&SHARED, file_key(ca_file), || {
        Trust::load(ca_file).map(Arc::new)
    })
}

/// Trusted CA certificates: the root store a verifier checks chains against, and when each
/// root expires (a trust anchor does not say), for the expiry of a verified chain.
#[derive(Debug)]
pub struct Trust {
    roots: Arc<RootCertStore>,
    /// Subject, public key and expiry of each root.
    expiries: Vec<(Vec<u8>, Vec<u8>, i64)>,
}

impl Trust {
    /// The CA certificates of `ca_file` (PEM), or the system's when it is `None`.
    pub fn load(ca_file: Option<&Path>) -> Result<Self, String> {
        let mut store = RootCertStore::empty();
        let mut expiries = Vec::new();
        let mut add = |cert: CertificateDer<'static>| -> Result<(), String> {
            let not_after = CertInfo::from_der(&cert).map(|info| info.not_after);
            store.add(cert.clone()).map_err(|e| e.to_string())?;
            if let (Ok(not_after), Ok(anchor)) =
                (not_after, webpki::anchor_from_trusted_cert(&cert))
            {
                expiries.push((
                    anchor.subject.as_ref().to_vec(),
                    anchor.subject_public_key_info.as_ref().to_vec(),
                    not_after,
                ));
            }
            Ok(())
        };
        match ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if store.is_empty() {
                    return Err(format!("{}: no PEM certificate", path.display()));
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = add(cert);
                }
                if store.is_empty() {
                    return Err(
                        "no trusted CA certificate on this system; set a CA file".to_owned()
                    );
                }
            }
        }
        expiries.shrink_to_fit();
        Ok(Self {
            roots: Arc::new(store),
            expiries,
        })
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.roots.roots
    }

    /// When the root behind `anchor` expires.
    pub fn anchor_expiry(&self, anchor: &TrustAnchor<'_>) -> Option<i64> {
        self.expiries
            .iter()
            .find(|(subject, key, _)| {
                subject[..] == *anchor.subject.as_ref()
                    && key[..] == *anchor.subject_public_key_info.as_ref()
            })
            .map(|(_, _, not_after)| *not_after)
    }
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

/// What a [`Wrapped`] verifier does with a server's certificate, around the verifier it
/// wraps; the handshake signatures go to that verifier unchanged.
pub(crate) trait Step: std::fmt::Debug + Send + Sync {
    /// Checks the server's certificate, with `inner` to hand it to.
    fn verify_server_cert(
        &self,
        inner: &dyn ServerCertVerifier,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// A verifier that takes a [`Step`] around another.
#[derive(Debug)]
pub(crate) struct Wrapped<S> {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) step: S,
}

impl<S: Step> ServerCertVerifier for Wrapped<S> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.step.verify_server_cert(
            &*self.inner,
            end_entity,
            intermediates,
            server_name,
            ocsp,
            now,
        )
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

/// A chain to a trusted CA, whatever name the certificate is for (`verify-ca`).
#[derive(Debug)]
struct AnyName;

impl Step for AnyName {
    fn verify_server_cert(
        &self,
        inner: &dyn ServerCertVerifier,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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
