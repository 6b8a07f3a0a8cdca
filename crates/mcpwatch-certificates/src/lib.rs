//! Certificate files as metrics (`certificate_file_*`): for every file a target's paths
//! name (a file, or a pattern of file names in one directory), the expiry, start, subject,
//! issuer and serial number of each certificate in it, PEM (several per file, keys and
//! other sections skipped) or DER; and the file's state: `ok`, `missing`, `unreadable`,
//! `unparsable` (neither PEM nor DER, or a broken section) or `no_certificate` (PEM with no
//! certificate, such as a key). A file in a bad state is a state, never a failed scrape.
//!
//! The operators' monthly `openssl x509 -noout -dates -in cert.pem`, as a metric.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mcpwatch_core::certs::{CertFile, CertInfo};
use mcpwatch_core::config::{ConfigPath, check_target_name};
use mcpwatch_core::follow::FilePattern;
use mcpwatch_core::{
    BlockingLane, CollectError, Collector, MetricSink, ScrapeContext, async_trait,
};
use serde::Deserialize;

/// Files read per pattern at most: the most recently modified.
pub const MAX_FILES: usize = 64;
/// Certificates described per file at most (a CA bundle holds more: its earliest expiries
/// are what matters, and those are kept).
pub const MAX_PER_FILE: usize = 32;
/// Bytes read of a file at most; a larger file is `unparsable`.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One target: certificate files to watch (`collectors.certificates[]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesConfig {
    /// The `target` label.
    pub name: String,
    /// Files, or patterns of file names (`/etc/nginx/tls/*.pem`), relative to the
    /// configuration file.
    pub paths: Vec<ConfigPath>,
}

/// A configuration error: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatesError {
    /// The key, relative to the target's entry.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CertificatesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for CertificatesError {}

/// The state of one file, the `state` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Read, with at least one certificate.
    Ok,
    /// Not there.
    Missing,
    /// There, but could not be read (permissions, a directory, a FIFO or device, an I/O
    /// error).
    Unreadable,
    /// Neither PEM nor DER, too large, or a broken PEM section.
    Unparsable,
    /// PEM with no certificate in it.
    NoCertificate,
}

impl FileState {
    /// Every state, in the order they are written.
    pub const ALL: [FileState; 5] = [
        FileState::Ok,
        FileState::Missing,
        FileState::Unreadable,
        FileState::Unparsable,
        FileState::NoCertificate,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Ok => "ok",
            FileState::Missing => "missing",
            FileState::Unreadable => "unreadable",
            FileState::Unparsable => "unparsable",
            FileState::NoCertificate => "no_certificate",
        }
    }
}

/// What one file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The path, as listed.
    pub path: PathBuf,
    /// Its state.
    pub state: FileState,
    /// Its certificates with their place in the file (when it holds more than
    /// [`MAX_PER_FILE`], those that expire first).
    pub certificates: Vec<(usize, CertInfo)>,
}

/// What to read: a single file, or a pattern.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Pattern(FilePattern),
}

/// Reads the certificate files of one target at every scrape.
#[derive(Debug)]
pub struct CertificatesCollector {
    config: CertificatesConfig,
    sources: Arc<[Source]>,
    /// One read at a time: a file that blocks (a FIFO, a dead mount) holds one thread.
    lane: BlockingLane,
}

impl CertificatesCollector {
    /// Checks the configuration.
    pub fn new(config: CertificatesConfig) -> Result<Self, CertificatesError> {
        check_target_name(&config.name).map_err(|message| CertificatesError {
            key: "name".to_owned(),
            message,
        })?;
        if config.paths.is_empty() {
            return Err(CertificatesError {
                key: "paths".to_owned(),
                message: "give at least one file or pattern".to_owned(),
            });
        }
        let sources = config
            .paths
            .iter()
            .enumerate()
            .map(|(at, path)| {
                let path = path.path();
                let wild = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(['*', '?']));
                if wild {
                    FilePattern::new(path).map(Source::Pattern)
                } else if path.to_string_lossy().contains(['*', '?']) {
                    Err("wildcards are allowed in the file name only".to_owned())
                } else {
                    Ok(Source::File(path.to_owned()))
                }
                .map_err(|message| CertificatesError {
                    key: format!("paths[{at}]"),
                    message: format!("{}: {message}", path.display()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config,
            sources: sources.into(),
            lane: BlockingLane::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &CertificatesConfig {
        &self.config
    }

    /// Reads every file now.
    pub fn read(&self) -> Vec<FileReport> {
        read_sources(&self.sources).0
    }
}

/// What the sources held: the files read, and how many files patterns matched beyond
/// [`MAX_FILES`] (left unread).
fn read_sources(sources: &[Source]) -> (Vec<FileReport>, usize) {
    let mut reports: Vec<FileReport> = Vec::new();
    let mut unread = 0;
    for source in sources {
        match source {
            Source::File(path) => reports.push(read_file(path)),
            Source::Pattern(pattern) => match pattern.list() {
                Ok(mut files) => {
                    let excess = files.len().saturating_sub(MAX_FILES);
                    if excess > 0 {
                        tracing::warn!(
                            directory = %pattern.dir().display(),
                            matched = files.len(),
                            read = MAX_FILES,
                            "More certificate files match than are read: the least recently \
                             modified are left out; narrow the pattern."
                        );
                    }
                    unread += excess;
                    files.drain(..excess);
                    reports.extend(files.into_iter().map(|(path, _)| read_file(&path)));
                }
                Err(error) => {
                    // The directory itself is reported, so that its files going unwatched
                    // is a state that alerts.
                    tracing::debug!(
                        directory = %pattern.dir().display(),
                        %error,
                        "Certificate directory cannot be listed."
                    );
                    let state = if error.kind() == std::io::ErrorKind::NotFound {
                        FileState::Missing
                    } else {
                        FileState::Unreadable
                    };
                    reports.push(FileReport {
                        path: pattern.dir().to_owned(),
                        state,
                        certificates: Vec::new(),
                    });
                }
            },
        }
    }
    // A file named twice (a path and a pattern that matches it) is reported once.
    let mut seen = std::collections::HashSet::new();
    reports.retain(|r| seen.insert(r.path.clone()));
    (reports, unread)
}

/// Reads one file; its state says what went wrong, never its text.
pub fn read_file(path: &Path) -> FileReport {
    let report = |state, file: CertFile| {
        let mut certificates: Vec<(usize, CertInfo)> =
            file.certificates.into_iter().enumerate().collect();
        if certificates.len() > MAX_PER_FILE {
            // Those that expire first are kept, each with its place in the file.
            certificates.sort_by_key(|(_, c)| c.not_after);
            certificates.truncate(MAX_PER_FILE);
            certificates.sort_by_key(|(index, _)| *index);
        }
        FileReport {
            path: path.to_owned(),
            state,
            certificates,
        }
    };
    let mut bytes = Vec::new();
    // Only a regular file is opened: opening a FIFO waits for a writer.
    let read = std::fs::metadata(path).and_then(|meta| {
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        std::fs::File::open(path)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
    });
    match read {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return report(FileState::Missing, CertFile::default());
        }
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "Certificate file unreadable.");
            return report(FileState::Unreadable, CertFile::default());
        }
        Ok(_) => {}
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        tracing::debug!(path = %path.display(), "Certificate file larger than 1 MiB.");
        return report(FileState::Unparsable, CertFile::default());
    }
    let file = CertFile::parse(&bytes);
    let state = if let Some(problem) = &file.problem {
        tracing::debug!(path = %path.display(), problem, "Certificate file not fully read.");
        if file.no_certificate {
            FileState::NoCertificate
        } else {
            FileState::Unparsable
        }
    } else {
        FileState::Ok
    };
    report(state, file)
}

/// Writes the `certificate_file_*` families of `reports`.
pub fn write_reports(reports: &[FileReport], unread: usize, sink: &mut MetricSink) {
    let paths: Vec<String> = reports
        .iter()
        .map(|r| r.path.display().to_string())
        .collect();
    let states = sink.gauge(
        "certificate_file_state",
        "The state of each certificate file: ok, missing, unreadable, unparsable (neither \
         PEM nor DER, or a broken section) or no_certificate (PEM without a certificate); 1 \
         for its state, 0 for the others.",
    );
    for (report, path) in reports.iter().zip(&paths) {
        for state in FileState::ALL {
            states.add(
                &[("path", path), ("state", state.as_str())],
                f64::from(u8::from(report.state == state)),
            );
        }
    }
    for (name, help, start) in [
        (
            "certificate_file_expiry_timestamp_seconds",
            "When each certificate of a file expires (notAfter), in seconds since the \
             epoch, by its index in the file, with its subject, issuer and serial number.",
            false,
        ),
        (
            "certificate_file_not_before_timestamp_seconds",
            "When each certificate of a file starts being valid (notBefore), in seconds \
             since the epoch.",
            true,
        ),
    ] {
        let family = sink.gauge(name, help);
        for (report, path) in reports.iter().zip(&paths) {
            for (index, cert) in &report.certificates {
                let index = index.to_string();
                family.add(
                    &[
                        ("path", path),
                        ("index", &index),
                        ("subject", &cert.subject),
                        ("issuer", &cert.issuer),
                        ("serial", &cert.serial),
                    ],
                    (if start {
                        cert.not_before
                    } else {
                        cert.not_after
                    }) as f64,
                );
            }
        }
    }
    sink.gauge(
        "certificate_files",
        "Certificate files found: those named, whatever their state, and those a pattern \
         matched.",
    )
    .add(&[], reports.len() as f64);
    sink.gauge(
        "certificate_files_unread",
        "Files the patterns matched beyond the 64 read per pattern (the least recently \
         modified): their certificates are not watched.",
    )
    .add(&[], unread as f64);
}

#[async_trait]
impl Collector for CertificatesCollector {
    fn name(&self) -> &str {
        "certificates"
    }

    fn target(&self) -> &str {
        &self.config.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let sources = self.sources.clone();
        let reports = self
            .lane
            .run(ctx, "reading the certificate files", move |_| {
                read_sources(&sources)
            })
            .await?;
        let (reports, unread) = reports;
        write_reports(&reports, unread, sink);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    fn pem(name: &str, not_after: i64) -> String {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before =
            time::OffsetDateTime::from_unix_timestamp(not_after - 86_400 * 90).expect("time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("time");
        params
            .self_signed(&KeyPair::generate().expect("key"))
            .expect("certificate")
            .pem()
    }

    fn collector(yaml: &str) -> Result<CertificatesCollector, CertificatesError> {
        CertificatesCollector::new(serde_norway::from_str(yaml).expect("yaml"))
    }

    #[test]
    fn every_state_of_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let at = 2_000_000_000;
        std::fs::write(
            d.join("bundle.pem"),
            format!("{}{}{}", pem("a", at), pem("b", at + 1), pem("c", at - 1)),
        )
        .expect("bundle");
        std::fs::write(d.join("garbage.pem"), "garbage\n").expect("garbage");
        std::fs::write(
            d.join("key.pem"),
            KeyPair::generate().expect("key").serialize_pem(),
        )
        .expect("key");
        std::fs::create_dir(d.join("dir.pem")).expect("dir");
        // A FIFO named, and one a pattern matches: opening one would wait for a writer.
        for fifo in ["named.fifo", "matched.pem"] {
            let made = std::process::Command::new("mkfifo")
                .arg(d.join(fifo))
                .status()
                .expect("mkfifo");
            assert!(made.success());
        }
        let yaml = format!(
            "name: web\npaths: [\"{0}/*.pem\", \"{0}/gone.crt\", \"{0}/bundle.pem\", \
             \"{0}/named.fifo\"]\n",
            d.display()
        );
        let reports = collector(&yaml).expect("collector").read();
        let states: Vec<(String, &str, usize)> = reports
            .iter()
            .map(|r| {
                (
                    r.path
                        .file_name()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned(),
                    r.state.as_str(),
                    r.certificates.len(),
                )
            })
            .collect();
        let mut sorted = states.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                ("bundle.pem".to_owned(), "ok", 3),
                ("garbage.pem".to_owned(), "unparsable", 0),
                ("gone.crt".to_owned(), "missing", 0),
                ("key.pem".to_owned(), "no_certificate", 0),
                ("named.fifo".to_owned(), "unreadable", 0),
            ]
        );
        let bundle = reports
            .iter()
            .find(|r| r.path.ends_with("bundle.pem"))
            .expect("bundle");
        let expiries: Vec<(usize, i64)> = bundle
            .certificates
            .iter()
            .map(|(index, c)| (*index, c.not_after))
            .collect();
        assert_eq!(expiries, [(0, at), (1, at + 1), (2, at - 1)]);

        // A pattern whose directory is gone is a state of the directory.
        let gone = collector(&format!(
            "name: web\npaths: [\"{}/nowhere/*.pem\"]\n",
            d.display()
        ))
        .expect("collector")
        .read();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].path, d.join("nowhere"));
        assert_eq!(gone[0].state, FileState::Missing);
    }

    #[test]
    fn a_bundle_past_the_bound_keeps_the_earliest_expiries_at_their_places() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = 2_000_000_000;
        // 40 certificates; the 5th and the 40th expire first.
        let bundle: String = (0..40)
            .map(|i| {
                let until = match i {
                    4 => at - 100,
                    39 => at - 50,
                    _ => at + i,
                };
                pem(&format!("m{i}"), until)
            })
            .collect();
        let path = dir.path().join("bundle.pem");
        std::fs::write(&path, bundle).expect("bundle");
        let report = read_file(&path);
        assert_eq!(report.certificates.len(), MAX_PER_FILE);
        let places: Vec<usize> = report.certificates.iter().map(|(i, _)| *i).collect();
        assert_eq!(places[..3], [0, 1, 2]);
        assert!(places.contains(&4) && places.contains(&39), "{places:?}");
        let (_, fifth) = report
            .certificates
            .iter()
            .find(|(i, _)| *i == 4)
            .expect("5th");
        assert_eq!(
            (fifth.subject.as_str(), fifth.not_after),
            ("CN=m4", at - 100)
        );
    }

    #[test]
    fn bad_configurations_name_the_key() {
        let e = collector("name: web\npaths: []\n").expect_err("no paths");
        assert_eq!(e.key, "paths");
        let e = collector("name: web\npaths: [/etc/*/x.pem]\n").expect_err("wildcard");
        assert_eq!(e.key, "paths[0]");
        assert!(e.message.contains("file name only"), "{e}");
        let e = collector("name: \"\"\npaths: [/x.pem]\n").expect_err("name");
        assert_eq!(e.key, "name");
    }

    #[test]
    fn a_large_file_is_unparsable_without_being_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge.pem");
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(MAX_FILE_BYTES * 8).expect("sparse");
        assert_eq!(read_file(&path).state, FileState::Unparsable);
    }
}
