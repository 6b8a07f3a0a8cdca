//! X.509 certificates as metrics: those a server presents in a TLS handshake and those in
//! files on disk.
//!
//! For a TLS connection three expiries are told apart, because one is not enough to know
//! when a connection will start failing:
//!
//! - the leaf's, the certificate of the server itself;
//! - the earliest of the chain the server presented, which may hold certificates no client
//!   uses (an old cross-signed root, a stale intermediate);
//! - the earliest of the chain that was verified: the leaf, the intermediates the path from
//!   it to a trusted root went through, and that root. That is the date after which the
//!   verification fails. When the chain fails on time alone (a certificate on the path has
//!   expired, or is not valid yet), the path is built as of the latest moment before now
//!   at which it held, so an expired intermediate still shows as the chain's expiry, in
//!   the past, instead of showing nothing.
//!
//! Label values are bounded: at most [`MAX_CHAIN`] certificates of a chain are described,
//! subjects and issuers are cut at [`MAX_TEXT`] characters, and a recorder remembers the
//! chains of at most [`MAX_SERVERS`] servers (`host:port`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::MetricSink;
use crate::web::{Step, Trust, Wrapped};

/// Certificates of one chain described at most (the leaf is depth 0).
pub const MAX_CHAIN: usize = 8;
/// Characters of a subject, issuer or serial label at most.
pub const MAX_TEXT: usize = 128;
/// Server names whose chains a recorder remembers at most.
pub const MAX_SERVERS: usize = 8;

/// What a certificate says of itself that operators look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// The subject as RFC 4514 text (`CN=mcp.example.com, O=Example`), bounded.
    pub subject: String,
    /// The issuer, likewise.
    pub issuer: String,
    /// The serial number in lowercase hexadecimal, without leading zeros.
    pub serial: String,
}

impl CertInfo {
    /// Reads a DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let validity = cert.validity();
        Ok(Self {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            subject: name_text(cert.subject()),
            issuer: name_text(cert.issuer()),
            serial: serial_text(cert.raw_serial()),
        })
    }
}

fn name_text(name: &X509Name<'_>) -> String {
    let text = name.to_string();
    // x509-parser writes an error in place of a name it cannot read as text.
    if text.starts_with("<X509Error") {
        return "(unreadable name)".to_owned();
    }
    bounded(&text)
}

fn serial_text(raw: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(2 * raw.len());
    for byte in raw {
        let _ = write!(text, "{byte:02x}");
    }
    match text.trim_start_matches('0') {
        "" => "0".to_owned(),
        digits => bounded(digits),
    }
}

/// `text` as a label value: control characters replaced, at most [`MAX_TEXT`] characters.
fn bounded(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_TEXT)
        .collect()
}

/// The certificates of a file: PEM (any number of `CERTIFICATE` sections, other sections
/// such as keys skipped) or a single DER certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertFile {
    /// The certificates read, in file order.
    pub certificates: Vec<CertInfo>,
    /// What could not be read: a broken PEM section or a section that is no certificate.
    /// The certificates before it are still read.
    pub problem: Option<String>,
    /// Whether the file is PEM with no certificate in it (a key, a request), as opposed to
    /// something that is neither PEM nor DER.
    pub no_certificate: bool,
}

impl CertFile {
    /// Reads the bytes of a certificate file. No text of the file reaches the problem, so
    /// that a key in it cannot leak.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut file = Self::default();
        let mut sections = 0usize;
        for (index, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes).enumerate() {
            match section {
                Ok((SectionKind::Certificate, der)) => {
                    sections += 1;
                    match CertInfo::from_der(&der) {
                        Ok(info) => file.certificates.push(info),
                        Err(e) => {
                            file.problem = Some(format!("PEM section {}: {e}", index + 1));
                            break;
                        }
                    }
                }
                Ok(_) => sections += 1,
                Err(e) => {
                    file.problem = Some(format!("PEM section {}: {}", index + 1, pem_error(&e)));
                    break;
                }
            }
        }
        if sections == 0 && file.problem.is_none() {
            // No PEM at all: a DER certificate (`.der`, `.cer`) or something else.
            match bytes.first() {
                Some(0x30) => match CertInfo::from_der(bytes) {
                    Ok(info) => file.certificates.push(info),
                    Err(e) => file.problem = Some(e),
                },
                _ => file.problem = Some("no PEM or DER certificate".to_owned()),
            }
        }
        if file.certificates.is_empty() && file.problem.is_none() {
            file.problem = Some("no certificate among its PEM sections".to_owned());
            file.no_certificate = true;
        }
        file
    }
}

/// A PEM error without the bytes it may quote.
fn pem_error(error: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { .. } => "no END line",
        Error::IllegalSectionStart { .. } => "broken BEGIN line",
        Error::Base64Decode(_) => "not base64",
        _ => "not PEM",
    }
}

/// What is known of one presented chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The presented certificates, leaf first, at most [`MAX_CHAIN`]; one that could not
    /// be read is left out.
    pub certificates: Vec<(usize, CertInfo)>,
    /// The leaf's expiry.
    pub leaf_expiry: Option<i64>,
    /// The earliest expiry of the presented chain.
    pub presented_expiry: Option<i64>,
    /// The earliest expiry of the verified path (leaf, intermediates used, root).
    pub verified_expiry: Option<i64>,
    /// Whether the chain verifies now.
    pub verified: bool,
}

impl ChainReport {
    /// Describes `chain` (leaf first) and, with `trust`, verifies it as of `now`; with
    /// `name`, the leaf must also be valid for that name for the chain to count as
    /// verified (as a client that checks host names sees it).
    pub fn new(
        chain: &[CertificateDer<'_>],
        trust: Option<&Trust>,
        name: Option<&ServerName<'_>>,
        now: i64,
    ) -> Self {
        let infos: Vec<Option<CertInfo>> = chain
            .iter()
            .map(|der| CertInfo::from_der(der).ok())
            .collect();
        let leaf_expiry = infos.first().and_then(|i| i.as_ref()).map(|i| i.not_after);
        let presented_expiry = infos.iter().flatten().map(|i| i.not_after).min();
        let (verified_expiry, verified) = match trust {
            Some(trust) => verify(chain, &infos, trust, name, now),
            None => (None, false),
        };
        Self {
            certificates: infos
                .into_iter()
                .take(MAX_CHAIN)
                .enumerate()
                .filter_map(|(depth, info)| Some((depth, info?)))
                .collect(),
            leaf_expiry,
            presented_expiry,
            verified_expiry,
            verified,
        }
    }

    /// When the report may change without a new chain: when a certificate expires or
    /// starts being valid.
    fn changes_at(&self, now: i64) -> i64 {
        self.certificates
            .iter()
            .flat_map(|(_, c)| [c.not_before, c.not_after.saturating_add(1)])
            .chain(self.verified_expiry.map(|e| e.saturating_add(1)))
            .filter(|at| *at > now)
            .min()
            .unwrap_or(i64::MAX)
    }
}

/// Times at most tried to find the path of a chain that fails on time alone.
const MAX_TRIES: usize = 32;

/// The earliest expiry on the path `chain` verifies through (the root's included), and
/// whether it verifies now: the path holds now, every certificate on it (the root too,
/// which webpki itself does not check) is valid now, and the leaf is valid for `name`.
fn verify(
    chain: &[CertificateDer<'_>],
    infos: &[Option<CertInfo>],
    trust: &Trust,
    name: Option<&ServerName<'_>>,
    now: i64,
) -> (Option<i64>, bool) {
    let Some(leaf) = chain.first() else {
        return (None, false);
    };
    let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else {
        return (None, false);
    };
    let algorithms = crate::web::crypto_provider()
        .signature_verification_algorithms
        .all;
    let intermediates = &chain[1..];
    let at = |seconds: i64| {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(seconds).unwrap_or(0),
        ))
    };
    let path_expiry = |time: i64| -> Result<Option<i64>, webpki::Error> {
        let path = end_entity.verify_for_usage(
            algorithms,
            trust.anchors(),
            intermediates,
            at(time),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )?;
        let mut earliest = infos.first().and_then(|i| i.as_ref()).map(|i| i.not_after);
        for cert in path.intermediate_certificates() {
            let der = cert.der();
            let known = chain
                .iter()
                .zip(infos)
                .find(|(presented, _)| presented.as_ref() == der.as_ref())
                .and_then(|(_, info)| info.clone());
            let not_after = known
                .or_else(|| CertInfo::from_der(&der).ok())
                .map(|i| i.not_after);
            earliest = min_some(earliest, not_after);
        }
        Ok(min_some(earliest, trust.anchor_expiry(path.anchor())))
    };
    let named = name.is_none_or(|name| end_entity.verify_is_valid_for_subject_name(name).is_ok());
    match path_expiry(now) {
        Ok(expiry) => (expiry, named && expiry.is_none_or(|e| e >= now)),
        Err(webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }) => {
            // Fails on time alone: the path as of the latest second before now at which it
            // holds. Each certificate's last and first second are where a path's window
            // can end or start; certificates the path does not use (an old extra one sent
            // along) do not narrow it.
            let mut times: Vec<i64> = infos
                .iter()
                .flatten()
                .flat_map(|i| [i.not_after, i.not_before])
                .filter(|t| *t <= now)
                .collect();
            times.sort_unstable_by(|a, b| b.cmp(a));
            times.dedup();
            let expiry = times
                .into_iter()
                .take(MAX_TRIES)
                .find_map(|time| path_expiry(time).ok());
            (expiry.flatten(), false)
        }
        Err(_) => (None, false),
    }
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The chain last presented at one server (`host:port`).
#[derive(Debug)]
struct Seen {
    server: String,
    /// The name the leaf must be valid for, when host names are checked.
    name: Option<ServerName<'static>>,
    chain: Arc<[CertificateDer<'static>]>,
    /// When it was last presented.
    at: Instant,
    /// The report, and until when it holds.
    report: Option<(Arc<ChainReport>, i64)>,
}

/// The chains servers presented, by `host:port`, at most [`MAX_SERVERS`], each with when
/// it was last presented. Filled by the verifiers of a [`WatchedTls`].
#[derive(Debug)]
pub struct ChainRecorder {
    trust: Option<Arc<Trust>>,
    /// Whether the leaf must be valid for the server's name to count as verified.
    check_names: bool,
    seen: Mutex<Vec<Seen>>,
}

impl ChainRecorder {
    fn new(trust: Option<Arc<Trust>>, check_names: bool) -> Self {
        Self {
            trust,
            check_names,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn record(
        &self,
        name: &ServerName<'_>,
        port: u16,
        end_entity: &CertificateDer<'_>,
        rest: &[CertificateDer<'_>],
    ) {
        let server = bounded(&format!("{}:{port}", name.to_str()));
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let same = |chain: &[CertificateDer<'static>]| {
            chain.len() == 1 + rest.len()
                && chain[0] == *end_entity
                && chain[1..].iter().zip(rest).all(|(a, b)| a == b)
        };
        if let Some(at) = seen.iter().position(|s| s.server == server) {
            if same(&seen[at].chain) {
                seen[at].at = now;
                return;
            }
            seen.remove(at);
        }
        if seen.len() >= MAX_SERVERS {
            // The one presented longest ago makes room.
            if let Some(oldest) = (0..seen.len()).min_by_key(|i| seen[*i].at) {
                seen.remove(oldest);
            }
        }
        // Every certificate presented is kept for the verification: rustls bounds the
        // size of the handshake message that carries them.
        let chain: Arc<[CertificateDer<'static>]> = std::iter::once(end_entity)
            .chain(rest)
            .map(|c| c.clone().into_owned())
            .collect();
        seen.push(Seen {
            server,
            name: self.check_names.then(|| name.to_owned()),
            chain,
            at: now,
            report: None,
        });
    }

    /// Whether a chain was presented since `since`.
    pub fn seen_since(&self, since: Instant) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|s| s.at >= since)
    }

    /// The report of every chain presented since `since`, by server, as of `now`
    /// (seconds since the epoch). Chains presented before are forgotten: a server no
    /// longer reached (a redirect removed, a target down) is not reported on.
    pub fn reports(&self, since: Instant, now: i64) -> Vec<(String, Arc<ChainReport>)> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|s| s.at >= since);
        seen.iter_mut()
            .map(|seen| {
                let report = match &seen.report {
                    Some((report, until)) if now < *until => report.clone(),
                    _ => {
                        let report = Arc::new(ChainReport::new(
                            &seen.chain,
                            self.trust.as_deref(),
                            seen.name.as_ref(),
                            now,
                        ));
                        seen.report = Some((report.clone(), report.changes_at(now)));
                        report
                    }
                };
                (seen.server.clone(), report)
            })
            .collect()
    }

    /// Writes the `tls_*` families of the chains presented since `since`, labelled with
    /// `collector` and the server.
    pub fn write(&self, sink: &mut MetricSink, collector: &str, since: Instant) {
        write_reports(
            sink,
            collector,
            &self.reports(since, unix_now()),
            self.trust.is_some(),
        );
    }
}

/// The TLS client settings of one target whose handshakes are watched: every chain a
/// server presents is recorded, by `host:port`, before it is checked (so a chain that
/// fails the check is seen too). Sessions are not resumed: a resumed session skips the
/// certificate, and a renewed certificate would go unseen. Made by
/// [`watched_client_config`](crate::web::watched_client_config).
#[derive(Debug)]
pub struct WatchedTls {
    template: rustls::ClientConfig,
    verifier: Arc<dyn ServerCertVerifier>,
    recorder: Arc<ChainRecorder>,
    /// The configuration of each port, made on first use.
    by_port: Mutex<Vec<(u16, Arc<rustls::ClientConfig>)>>,
}

impl WatchedTls {
    pub(crate) fn new(
        template: rustls::ClientConfig,
        verifier: Arc<dyn ServerCertVerifier>,
        trust: Option<Arc<Trust>>,
        check_names: bool,
    ) -> Self {
        Self {
            template,
            verifier,
            recorder: Arc::new(ChainRecorder::new(trust, check_names)),
            by_port: Mutex::new(Vec::new()),
        }
    }

    /// The configuration to reach a server on `port` with (the port names the recorded
    /// chain: a verifier sees the host name only).
    pub fn config(&self, port: u16) -> Arc<rustls::ClientConfig> {
        let mut by_port = self.by_port.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, config)) = by_port.iter().find(|(p, _)| *p == port) {
            return config.clone();
        }
        let mut config = self.template.clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(Wrapped {
                inner: self.verifier.clone(),
                step: Record {
                    recorder: self.recorder.clone(),
                    port,
                },
            }));
        let config = Arc::new(config);
        if by_port.len() < 2 * MAX_SERVERS {
            by_port.push((port, config.clone()));
        }
        config
    }

    /// The chains recorded.
    pub fn recorder(&self) -> &Arc<ChainRecorder> {
        &self.recorder
    }
}

/// Records the chain a server presents on `port`, then hands it to the verifier it wraps.
#[derive(Debug)]
struct Record {
    recorder: Arc<ChainRecorder>,
    port: u16,
}

/// Writes the `tls_*` families of `reports` (server and report); `checked` says
/// whether the chains were verified against trusted CAs (not with `insecure_skip_verify`
/// or `sslmode=require`), and so whether `tls_chain_verified` is written.
pub fn write_reports(
    sink: &mut MetricSink,
    collector: &str,
    reports: &[(String, Arc<ChainReport>)],
    checked: bool,
) {
    if reports.is_empty() {
        return;
    }
    let expiry = sink.gauge(
        "tls_expiry_timestamp_seconds",
        "When the TLS certificates a server presented expire, in seconds since the epoch: \
         chain=\"leaf\" the server's own, \"presented\" the earliest of the chain it sent, \
         \"verified\" the earliest of the path verified to a trusted root (root included).",
    );
    for (server, report) in reports {
        for (chain, value) in [
            ("leaf", report.leaf_expiry),
            ("presented", report.presented_expiry),
            ("verified", report.verified_expiry),
        ] {
            if let Some(value) = value {
                expiry.add(
                    &[
                        ("collector", collector),
                        ("server", server),
                        ("chain", chain),
                    ],
                    value as f64,
                );
            }
        }
    }
    let certificates = sink.gauge(
        "tls_certificate_expiry_timestamp_seconds",
        "When each certificate a server presented expires, in seconds since the epoch, by \
         depth in the chain (0 is the leaf), with its subject, issuer and serial number.",
    );
    for (server, report) in reports {
        for (depth, info) in &report.certificates {
            let depth = depth.to_string();
            certificates.add(
                &[
                    ("collector", collector),
                    ("server", server),
                    ("depth", &depth),
                    ("subject", &info.subject),
                    ("issuer", &info.issuer),
                    ("serial", &info.serial),
                ],
                info.not_after as f64,
            );
        }
    }
    if checked {
        let verified = sink.gauge(
            "tls_chain_verified",
            "Whether the chain a server presented verifies now against the trusted CAs \
             (1) or not (0).",
        );
        for (server, report) in reports {
            verified.add(
                &[("collector", collector), ("server", server)],
                f64::from(u8::from(report.verified)),
            );
        }
    }
}

/// How a TLS connection to a server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// TLS at once (`rediss://`, `https://`).
    Direct,
    /// PostgreSQL's `SSLRequest`, answered `S`, then TLS.
    PostgresSslRequest,
}

/// How often a [`CertificateWatch`] makes a handshake of its own.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// How long a watch's handshake may take; it runs beside the scrapes, never in them.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// A chain not presented again for this long (three refreshes) is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(900);

/// The certificates of a server reached over a connection kept open for long (PostgreSQL,
/// Redis): that connection's handshake says what the server presented when it was made,
/// not what it presents now, after a renewal. A watch makes a handshake of its own at the
/// first scrape and every [`REFRESH_EVERY`], on a task beside the scrapes (a scrape never
/// waits for it), closed at once; until one succeeds it tries again at each scrape. It
/// reports what the server presented to it and to the target's other connections made
/// with the same settings, within the last [`FORGET_AFTER`].
#[derive(Debug)]
pub struct CertificateWatch {
    inner: Arc<WatchInner>,
}

#[derive(Debug)]
struct WatchInner {
    tls: Arc<WatchedTls>,
    /// The name the handshake presents (SNI) and checks.
    host: String,
    /// Where to connect, when not the name (libpq's `hostaddr`).
    address: Option<std::net::IpAddr>,
    port: u16,
    opening: Opening,
    /// When the last handshake started, and whether one is under way.
    state: Mutex<(Option<Instant>, bool)>,
}

impl CertificateWatch {
    /// Watches `host:port` (reached at `address` when given) with the target's watched
    /// TLS settings.
    pub fn new(
        tls: Arc<WatchedTls>,
        host: String,
        address: Option<std::net::IpAddr>,
        port: u16,
        opening: Opening,
    ) -> Self {
        Self {
            inner: Arc::new(WatchInner {
                tls,
                host,
                address,
                port,
                opening,
                state: Mutex::new((None, false)),
            }),
        }
    }

    /// Starts a handshake when one is due and none is under way, without waiting for it,
    /// then writes the `tls_*` families of what was presented.
    pub fn write(&self, sink: &mut MetricSink, collector: &str) {
        let inner = &self.inner;
        let due = {
            let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            let (last, running) = &mut *state;
            let due = !*running && last.is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
            if due {
                *last = Some(Instant::now());
                *running = true;
            }
            due
        };
        if due {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let config = inner.tls.config(inner.port);
                let target = (inner.host.as_str(), inner.address, inner.port);
                let outcome =
                    tokio::time::timeout(HANDSHAKE_LIMIT, handshake(target, inner.opening, config))
                        .await
                        .unwrap_or_else(|_| Err("timed out".to_owned()));
                let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.1 = false;
                if let Err(error) = outcome {
                    tracing::debug!(host = %inner.host, port = inner.port, %error, "Certificate handshake failed.");
                    if !inner.tls.recorder().seen_since(started) {
                        // Nothing presented (the server down, or slow): tried again at the
                        // next scrape rather than in 5 minutes.
                        state.0 = None;
                    }
                }
            });
        }
        let since = Instant::now()
            .checked_sub(FORGET_AFTER)
            .unwrap_or_else(Instant::now);
        inner.tls.recorder().write(sink, collector, since);
    }
}

/// Connects to `host:port` (at `address` when given) and makes a TLS handshake for
/// `host`, which the configuration's recorder sees; the connection is closed at once. A
/// PostgreSQL server that answers it has no TLS is no error.
pub async fn handshake(
    (host, address, port): (&str, Option<std::net::IpAddr>, u16),
    opening: Opening,
    config: Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connected = match address {
        Some(address) => tokio::net::TcpStream::connect((address, port)).await,
        None => tokio::net::TcpStream::connect((host, port)).await,
    };
    let mut tcp = connected.map_err(|e| format!("connect: {e}"))?;
    if opening == Opening::PostgresSslRequest {
        // Length 8, then the SSLRequest code 1234.5679.
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .map_err(|e| format!("SSLRequest: {e}"))?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| format!("SSLRequest: {e}"))?;
        if answer[0] != b'S' {
            // No TLS on this server (`sslmode=prefer` to a server without it): nothing to
            // record, and nothing to try again before the next refresh.
            return Ok(());
        }
    }
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| "no valid TLS server name".to_owned())?;
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let _ = stream.shutdown().await;
    Ok(())
}

impl Step for Record {
    fn verify_server_cert(
        &self,
        inner: &dyn ServerCertVerifier,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.recorder
            .record(server_name, self.port, end_entity, intermediates);
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    use super::*;

    const DAY: i64 = 86_400;

    /// A certificate valid from `from` to `until` (seconds), a CA or a server for
    /// `localhost`, signed by `issuer` or by itself: `(der, pem, issuer for what it signs)`.
    fn certificate(
        name: &str,
        ca: bool,
        from: i64,
        until: i64,
        issuer: Option<&Issuer<'static, KeyPair>>,
    ) -> (CertificateDer<'static>, String, Issuer<'static, KeyPair>) {
        let mut params = if ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
        } else {
            CertificateParams::new(vec!["localhost".to_owned()]).expect("params")
        };
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).expect("time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(until).expect("time");
        let key = KeyPair::generate().expect("key");
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, issuer),
            None => params.self_signed(&key),
        }
        .expect("certificate");
        let (der, pem) = (cert.der().clone(), cert.pem());
        (der, pem, Issuer::new(params, key))
    }

    fn trust(dir: &std::path::Path, pems: &[&str]) -> Trust {
        let path = dir.join("ca.pem");
        std::fs::write(&path, pems.concat()).expect("ca");
        Trust::load(Some(&path)).expect("trust")
    }

    #[test]
    fn leaf_presented_and_verified_expiries_are_told_apart() {
        let now = unix_now();
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, root_pem, root) = certificate("root", true, now - DAY, now + 400 * DAY, None);
        let (inter, _, intermediate) =
            certificate("intermediate", true, now - DAY, now + 3 * DAY, Some(&root));
        let (leaf, _, _) = certificate(
            "server",
            false,
            now - DAY,
            now + 5 * DAY,
            Some(&intermediate),
        );
        // Sent along, used by no path: an old certificate expiring first.
        let (stale, _, _) = certificate("stale", true, now - 9 * DAY, now + 60, None);
        let trust = trust(dir.path(), &[&root_pem]);

        let report = ChainReport::new(
            &[leaf.clone(), stale.clone(), inter.clone()],
            Some(&trust),
            None,
            now,
        );
        assert_eq!(report.leaf_expiry, Some(now + 5 * DAY));
        assert_eq!(report.presented_expiry, Some(now + 60));
        assert_eq!(report.verified_expiry, Some(now + 3 * DAY));
        assert!(report.verified);
        let described: Vec<(usize, &str, &str)> = report
            .certificates
            .iter()
            .map(|(depth, c)| (*depth, c.subject.as_str(), c.issuer.as_str()))
            .collect();
        assert_eq!(
            described,
            [
                (0, "CN=server", "CN=intermediate"),
                (1, "CN=stale", "CN=stale"),
                (2, "CN=intermediate", "CN=root")
            ]
        );

        // A root expiring first is the verified chain's expiry.
        let (_, short_root_pem, short_root) =
            certificate("short root", true, now - DAY, now + 2 * DAY, None);
        let (leaf, _, _) =
            certificate("server", false, now - DAY, now + 5 * DAY, Some(&short_root));
        let report = ChainReport::new(
            &[leaf],
            Some(&self::trust(dir.path(), &[&short_root_pem])),
            None,
            now,
        );
        assert_eq!(report.verified_expiry, Some(now + 2 * DAY));
        assert_eq!(report.presented_expiry, Some(now + 5 * DAY));
    }

    #[test]
    fn an_expired_intermediate_is_the_chains_expiry_in_the_past() {
        let now = unix_now();
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, root_pem, root) = certificate("root", true, now - 30 * DAY, now + 400 * DAY, None);
        let (inter, _, intermediate) = certificate(
            "intermediate",
            true,
            now - 30 * DAY,
            now - 2 * DAY,
            Some(&root),
        );
        let (leaf, _, _) = certificate(
            "server",
            false,
            now - 30 * DAY,
            now + 5 * DAY,
            Some(&intermediate),
        );
        let report = ChainReport::new(
            &[leaf, inter.clone()],
            Some(&trust(dir.path(), &[&root_pem])),
            None,
            now,
        );
        assert!(!report.verified);
        assert_eq!(report.verified_expiry, Some(now - 2 * DAY));
        assert_eq!(report.leaf_expiry, Some(now + 5 * DAY));

        // An old certificate sent along that expired before the leaf was issued does not
        // hide the expired intermediate.
        let (old, _, _) = certificate("old", true, now - 90 * DAY, now - 40 * DAY, None);
        let (leaf, _, _) = certificate(
            "server",
            false,
            now - 10 * DAY,
            now + 60 * DAY,
            Some(&intermediate),
        );
        let report = ChainReport::new(
            &[leaf.clone(), inter.clone(), old],
            Some(&trust(dir.path(), &[&root_pem])),
            None,
            now,
        );
        assert!(!report.verified);
        assert_eq!(report.verified_expiry, Some(now - 2 * DAY));

        // Signed by no trusted root: no verified chain at all.
        let (_, other_pem, _) = certificate("other", true, now - DAY, now + DAY, None);
        let (leaf, _, _) = certificate("server", false, now - DAY, now + 5 * DAY, Some(&root));
        let report = ChainReport::new(&[leaf], Some(&trust(dir.path(), &[&other_pem])), None, now);
        assert_eq!((report.verified, report.verified_expiry), (false, None));
        assert_eq!(report.leaf_expiry, Some(now + 5 * DAY));
    }

    #[test]
    fn a_chain_for_another_name_or_through_an_expired_root_does_not_verify() {
        let now = unix_now();
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, root_pem, root) = certificate("root", true, now - DAY, now + 400 * DAY, None);
        let (leaf, _, _) = certificate("server", false, now - DAY, now + 5 * DAY, Some(&root));
        let trust = trust(dir.path(), &[&root_pem]);
        let right = ServerName::try_from("localhost").expect("name");
        let wrong = ServerName::try_from("db.example").expect("name");
        let named = ChainReport::new(std::slice::from_ref(&leaf), Some(&trust), Some(&right), now);
        assert!(named.verified);
        let misnamed = ChainReport::new(&[leaf], Some(&trust), Some(&wrong), now);
        assert!(!misnamed.verified);
        assert_eq!(misnamed.verified_expiry, Some(now + 5 * DAY));

        // webpki does not look at the root's dates; clients such as OpenSSL do.
        let (_, old_root_pem, old_root) =
            certificate("expired root", true, now - 90 * DAY, now - DAY, None);
        let (leaf, _, _) = certificate(
            "server",
            false,
            now - 10 * DAY,
            now + 5 * DAY,
            Some(&old_root),
        );
        let report = ChainReport::new(
            &[leaf],
            Some(&self::trust(dir.path(), &[&old_root_pem])),
            None,
            now,
        );
        assert!(!report.verified);
        assert_eq!(report.verified_expiry, Some(now - DAY));
    }

    #[test]
    fn files_with_several_certificates_keys_and_garbage() {
        let now = unix_now();
        let (_, a, _) = certificate("a", true, now - DAY, now + DAY, None);
        let (_, b, _) = certificate("b", true, now - DAY, now + 2 * DAY, None);
        let (der, c, _) = certificate("c", true, now - DAY, now - 5, None);
        let key = KeyPair::generate().expect("key").serialize_pem();
        let file = CertFile::parse(format!("{a}\n{key}junk between\n{b}{c}").as_bytes());
        assert_eq!(file.problem, None);
        let expiries: Vec<(&str, i64)> = file
            .certificates
            .iter()
            .map(|c| (c.subject.as_str(), c.not_after))
            .collect();
        assert_eq!(
            expiries,
            [
                ("CN=a", now + DAY),
                ("CN=b", now + 2 * DAY),
                ("CN=c", now - 5)
            ]
        );
        assert_eq!(file.certificates[0].not_before, now - DAY);

        let der_file = CertFile::parse(&der);
        assert_eq!(der_file.certificates.len(), 1);
        assert_eq!(der_file.certificates[0].not_after, now - 5);

        let garbage = CertFile::parse(b"this is not a certificate\n");
        assert!(garbage.certificates.is_empty());
        assert_eq!(
            garbage.problem.as_deref(),
            Some("no PEM or DER certificate")
        );

        let only_key = CertFile::parse(key.as_bytes());
        assert!(only_key.certificates.is_empty());
        assert!(only_key.problem.is_some());
        assert!(only_key.no_certificate);
        assert!(!garbage.no_certificate);

        // A broken section after a good one: the good one is read, the problem told, and
        // nothing of the file's text is quoted.
        let broken = format!(
            "{a}-----BEGIN CERTIFICATE-----\nnot*base64*secret\n-----END CERTIFICATE-----\n"
        );
        let file = CertFile::parse(broken.as_bytes());
        assert_eq!(file.certificates.len(), 1);
        let problem = file.problem.expect("problem");
        assert!(problem.starts_with("PEM section 2"), "{problem}");
        assert!(!problem.contains("secret"), "{problem}");
    }

    #[test]
    fn long_names_and_serials_are_bounded() {
        let now = unix_now();
        let (der, _, _) = certificate(&"x".repeat(300), true, now - DAY, now + DAY, None);
        let info = CertInfo::from_der(&der).expect("info");
        assert_eq!(info.subject.chars().count(), MAX_TEXT);
        assert!(
            info.serial.len() <= 40 && !info.serial.is_empty(),
            "{}",
            info.serial
        );
        assert_eq!(serial_text(&[0, 0, 0x0a, 0xff]), "aff");
        assert_eq!(serial_text(&[0]), "0");
    }

    #[test]
    fn a_recorder_keeps_the_last_chain_of_each_server_for_a_bounded_number_of_servers() {
        let now = unix_now();
        let recorder = ChainRecorder::new(None, false);
        let (one, _, _) = certificate("one", true, now - DAY, now + DAY, None);
        let (two, _, _) = certificate("two", true, now - DAY, now + 2 * DAY, None);
        let start = Instant::now();
        let name = ServerName::try_from("host.example").expect("name");
        for port in 0..u16::try_from(MAX_SERVERS).expect("small") + 3 {
            recorder.record(&name, 8000 + port, &one, &[]);
        }
        // Two ports of one host are two servers: one does not hide the other.
        recorder.record(&name, 8010, &two, &[]);
        let reports = recorder.reports(start, now);
        assert_eq!(reports.len(), MAX_SERVERS);
        let last = reports
            .iter()
            .find(|(s, _)| s == "host.example:8010")
            .expect("8010");
        assert_eq!(last.1.leaf_expiry, Some(now + 2 * DAY));
        let other = reports
            .iter()
            .find(|(s, _)| s == "host.example:8009")
            .expect("8009");
        assert_eq!(other.1.leaf_expiry, Some(now + DAY));
        assert!(!reports.iter().any(|(s, _)| s == "host.example:8000"));

        let mut sink = MetricSink::default();
        recorder.write(&mut sink, "wsdaemon", start);
        let (groups, conflicts) = crate::metrics::merge_families(sink.into_families());
        assert!(conflicts.is_empty());
        let mut out = Vec::new();
        crate::encode::encode_text(&groups, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains(&format!(
                "tls_expiry_timestamp_seconds{{collector=\"wsdaemon\",server=\"host.example:8010\",chain=\"leaf\"}} {}",
                now + 2 * DAY
            )),
            "{text}"
        );
        // Not checked against trusted CAs: no verified series.
        assert!(!text.contains("tls_chain_verified"), "{text}");
        assert!(!text.contains("chain=\"verified\""), "{text}");

        // Chains not presented since a later instant are forgotten.
        let later = Instant::now();
        recorder.record(&name, 8010, &two, &[]);
        let reports = recorder.reports(later, now);
        let servers: Vec<&str> = reports.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(servers, ["host.example:8010"]);
    }
}
