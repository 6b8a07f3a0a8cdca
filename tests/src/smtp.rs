//! A real SMTP server built with Python's `aiosmtpd` (`tests/fixtures/smtp_server.py`) on a
//! free loopback port: plain, STARTTLS or implicit TLS, with or without AUTH, or refusing
//! every recipient. Every message it accepts is kept, and parsed here for the tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailparse::{DispositionType, MailHeaderMap, ParsedMail};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::ports::free_port;
use crate::process::ServiceProcess;
use crate::tools::require;

const LIMIT: Duration = Duration::from_secs(60);
const INSTALL: &str = "pip install aiosmtpd";

/// The fixture script.
pub fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/smtp_server.py")
}

/// The server's certificate: a CA, and a certificate it signs for `127.0.0.1` and
/// `localhost` with its key, all PEM.
#[derive(Debug, Clone)]
pub struct SmtpTls {
    /// The CA a client trusts.
    pub ca_pem: String,
    /// The server's certificate.
    pub cert_pem: String,
    /// The server's key.
    pub key_pem: String,
}

impl SmtpTls {
    /// A fresh CA and server certificate for `127.0.0.1` and `localhost`.
    ///
    /// # Panics
    /// When rcgen fails.
    pub fn generate() -> Self {
        let (ca_pem, cert_pem, key_pem) =
            crate::tls::ca_and_server_for(&["127.0.0.1", "localhost"]);
        Self {
            ca_pem,
            cert_pem,
            key_pem,
        }
    }
}

/// How the server behaves. The default is plain SMTP without AUTH, accepting everything.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// With a certificate the server offers STARTTLS and requires it before `MAIL`, unless
    /// `implicit_tls`.
    pub tls: Option<SmtpTls>,
    /// TLS from the first byte, as on port 465 (needs `tls`).
    pub implicit_tls: bool,
    /// `(user, password)`: AUTH PLAIN or LOGIN with these is required before `MAIL` (offered
    /// only once the session is encrypted when STARTTLS is offered).
    pub auth: Option<(String, String)>,
    /// Every `RCPT TO` is answered with this error (such as 550, or 451 for a temporary one).
    pub reject_code: Option<u16>,
}

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body, CRLF line ends).
    pub raw: String,
    /// When the server received it.
    pub received_at: SystemTime,
    /// Whether the session was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// The user that authenticated, when one did.
    pub login: Option<String>,
}

impl ReceivedMail {
    fn parsed(&self) -> ParsedMail<'_> {
        mailparse::parse_mail(self.raw.as_bytes())
            .unwrap_or_else(|e| panic!("the message does not parse ({e}):\n{}", self.raw))
    }

    /// The first header of this name, its RFC 2047 encoded words decoded.
    ///
    /// # Panics
    /// When the message does not parse.
    pub fn header(&self, name: &str) -> Option<String> {
        self.parsed().headers.get_first_value(name)
    }

    /// The `Subject`, decoded.
    ///
    /// # Panics
    /// When the message does not parse.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject")
    }

    /// The first `text/plain` part that is not an attachment (the message itself when it is
    /// not multipart), its transfer encoding and charset decoded, its line ends `\n`.
    ///
    /// # Panics
    /// When the message does not parse.
    pub fn text(&self) -> Option<String> {
        find_part(&self.parsed(), "text/plain")
    }

    /// The first `text/html` part that is not an attachment, decoded, its line ends `\n`.
    ///
    /// # Panics
    /// When the message does not parse.
    pub fn html(&self) -> Option<String> {
        find_part(&self.parsed(), "text/html")
    }

    /// The MIME types of the message's leaf parts, in order (`["text/plain"]` for a plain
    /// message; `["text/plain", "text/html"]` for the usual multipart/alternative).
    ///
    /// # Panics
    /// When the message does not parse.
    pub fn part_types(&self) -> Vec<String> {
        fn walk(part: &ParsedMail<'_>, types: &mut Vec<String>) {
            if part.subparts.is_empty() {
                types.push(part.ctype.mimetype.clone());
            }
            for sub in &part.subparts {
                walk(sub, types);
            }
        }
        let mut types = Vec::new();
        walk(&self.parsed(), &mut types);
        types
    }

    fn from_record(record: &Value) -> Self {
        let text = |key: &str| record[key].as_str().map(ToOwned::to_owned);
        Self {
            from: text("mail_from").unwrap_or_default(),
            to: record["rcpt_tos"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|r| r.as_str().map(ToOwned::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            raw: text("data").unwrap_or_default(),
            received_at: UNIX_EPOCH
                + Duration::from_secs_f64(record["received_at"].as_f64().unwrap_or(0.0)),
            tls: record["tls"].as_bool().unwrap_or(false),
            login: text("login"),
        }
    }
}

fn find_part(part: &ParsedMail<'_>, mimetype: &str) -> Option<String> {
    if part.subparts.is_empty() {
        let attachment = part.get_content_disposition().disposition == DispositionType::Attachment;
        return (part.ctype.mimetype.eq_ignore_ascii_case(mimetype) && !attachment).then(|| {
            part.get_body()
                .expect("decode a message part")
                .replace("\r\n", "\n")
        });
    }
    part.subparts
        .iter()
        .find_map(|sub| find_part(sub, mimetype))
}

/// A running SMTP server. Dropping it stops it.
#[derive(Debug)]
pub struct SmtpServer {
    dir: tempfile::TempDir,
    port: u16,
    options: SmtpOptions,
    process: ServiceProcess,
    starts: usize,
    earlier_log: String,
}

impl SmtpServer {
    /// Starts the server and waits until it answers `220` on its port.
    ///
    /// # Panics
    /// When Python or `aiosmtpd` is missing, `implicit_tls` comes without `tls`, or the
    /// server does not start.
    pub fn start(options: SmtpOptions) -> Self {
        assert!(
            !options.implicit_tls || options.tls.is_some(),
            "implicit TLS needs a certificate"
        );
        let python = require("python3", "apt-get install -y python3");
        let check = Command::new(&python)
            .args(["-c", "import aiosmtpd.smtp"])
            .output()
            .expect("run python3");
        assert!(
            check.status.success(),
            "aiosmtpd is not installed: run ./tests/run.sh, or as root: {INSTALL}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(tls) = &options.tls {
            std::fs::write(dir.path().join("cert.pem"), &tls.cert_pem).expect("write cert.pem");
            std::fs::write(dir.path().join("key.pem"), &tls.key_pem).expect("write key.pem");
        }
        let port = free_port();
        let process = Self::spawn(&dir, port, &options, 0);
        let mut server = Self {
            dir,
            port,
            options,
            process,
            starts: 1,
            earlier_log: String::new(),
        };
        server.wait_ready();
        server
    }

    fn spawn(
        dir: &tempfile::TempDir,
        port: u16,
        options: &SmtpOptions,
        start: usize,
    ) -> ServiceProcess {
        let python = require("python3", "apt-get install -y python3");
        let mut command = Command::new(python);
        command
            .arg(fixture_script())
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(dir.path().join("messages"));
        if options.tls.is_some() {
            command
                .arg("--tls-cert")
                .arg(dir.path().join("cert.pem"))
                .arg("--tls-key")
                .arg(dir.path().join("key.pem"));
        }
        if options.implicit_tls {
            command.arg("--implicit-tls");
        }
        if let Some((user, password)) = &options.auth {
            command.args(["--auth", &format!("{user}:{password}")]);
        }
        if let Some(code) = options.reject_code {
            command.args(["--reject-code", &code.to_string()]);
        }
        ServiceProcess::spawn(&format!("smtp-server-{start}"), command, dir.path())
    }

    fn wait_ready(&mut self) {
        let (port, tls) = (
            self.port,
            self.options
                .tls
                .as_ref()
                .filter(|_| self.options.implicit_tls),
        );
        let process = &mut self.process;
        crate::wait_for("the SMTP server to answer 220", LIMIT, || {
            assert!(
                process.is_running(),
                "the SMTP server exited: {}",
                process.output()
            );
            greeting(port, tls).filter(|line| line.starts_with("220"))
        });
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options it runs with.
    pub fn options(&self) -> &SmtpOptions {
        &self.options
    }

    /// Every message accepted so far, in order of arrival (across restarts).
    ///
    /// # Panics
    /// When a stored message cannot be read.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("messages")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|file| {
                let text = std::fs::read_to_string(file).expect("read a received message");
                ReceivedMail::from_record(&serde_json::from_str(&text).expect("message JSON"))
            })
            .collect()
    }

    /// Waits until at least `n` messages were accepted; returns them all.
    ///
    /// # Panics
    /// When fewer arrived within `limit`.
    pub async fn wait_for_messages(&self, n: usize, limit: Duration) -> Vec<ReceivedMail> {
        crate::wait_for_async(&format!("{n} messages at the SMTP server"), limit, || {
            let messages = self.messages();
            async move { (messages.len() >= n).then_some(messages) }
        })
        .await
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s): its port refuses connections
    /// until [`SmtpServer::restart`]. The messages received are kept.
    pub fn stop(&mut self) {
        self.process.stop(Signal::SIGTERM, Duration::from_secs(5));
    }

    /// Whether the server runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Starts the server again on the same port with the same options (stopping it first
    /// if it still runs), and waits until it answers `220`.
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart(&mut self) {
        self.stop();
        self.earlier_log.push_str(&self.process.output());
        self.process = Self::spawn(&self.dir, self.port, &self.options, self.starts);
        self.starts += 1;
        self.wait_ready();
    }

    /// What the server logged, every run of it.
    pub fn log(&self) -> String {
        format!("{}{}", self.earlier_log, self.process.output())
    }
}

/// The server's first line on a new connection, or `None` when it does not answer.
fn greeting(port: u16, implicit_tls: Option<&SmtpTls>) -> Option<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    tcp.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    match implicit_tls {
        None => first_line(tcp),
        Some(tls) => {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::{CertificateDer, ServerName};
            crate::http::install_crypto_provider();
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
                roots.add(cert.expect("CA PEM")).expect("add CA");
            }
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from("127.0.0.1").expect("server name");
            let connection =
                rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
            first_line(rustls::StreamOwned::new(connection, tcp))
        }
    }
}

fn first_line<S: Read + Write>(stream: S) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let _ = reader.get_mut().write_all(b"QUIT\r\n");
    Some(line)
}
