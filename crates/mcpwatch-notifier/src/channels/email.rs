//! Email over SMTP with lettre: STARTTLS (required, never silently skipped), implicit TLS
//! (port 465), or plain only when `allow_insecure` says so; AUTH PLAIN or LOGIN after TLS;
//! a text and an HTML part. SMTP 5xx is permanent, 4xx and connection trouble transient.
//! A message for one person (an on-call schedule's) goes to their address alone.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Message, SendError, Sender};
use crate::config::{ChannelKind, EmailConfig, SmtpSecurity};

pub struct EmailSender {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailSender {
    pub fn new(name: &str, config: &EmailConfig, timeout: Duration) -> Result<Self, String> {
        let (host, port) = config.host_port().map_err(|e| format!("smarthost: {e}"))?;
        let tls = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(host.clone());
            if let Some(ca) = &config.tls_config.ca_file {
                let pem = std::fs::read(ca.path())
                    .map_err(|e| format!("tls_config.ca_file {}: {e}", ca.path().display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("tls_config.ca_file {}: {e}", ca.path().display()))?;
                builder = builder
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(cert);
            }
            if config.tls_config.insecure_skip_verify {
                builder = builder.dangerous_accept_invalid_certs(true);
            }
            builder.build_rustls().map_err(|e| format!("TLS: {e}"))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(port)
            .timeout(Some(timeout))
            // Connections are reused between messages, and dropped after a quiet minute.
            .pool_config(
                PoolConfig::new()
                    .max_size(4)
                    .idle_timeout(Duration::from_secs(60)),
            );
        builder = match config.security() {
            SmtpSecurity::Starttls => builder.tls(Tls::Required(tls()?)),
            SmtpSecurity::Implicit => builder.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => builder.tls(Tls::None),
        };
        if let Some(hello) = &config.hello {
            builder = builder.hello_name(ClientId::Domain(hello.clone()));
        }
        if let Some(auth) = &config.auth {
            let password = config
                .password()
                .map_err(|e| format!("auth.password: {e}"))?
                .ok_or("auth.password: set password or password_file")?;
            builder = builder
                .credentials(Credentials::new(
                    auth.username.clone(),
                    password.expose().to_owned(),
                ))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let from = config.from.parse().map_err(|e| format!("from: {e}"))?;
        let to = config
            .to
            .iter()
            .map(|t| t.parse().map_err(|e| format!("to: {t:?}: {e}")))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            name: name.to_owned(),
            from,
            to,
            transport: builder.build(),
        })
    }
}

#[async_trait::async_trait]
impl Sender for EmailSender {
    async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        let subject = message.render(ChannelKind::Email, &self.name, "subject");
        let text = message.render(ChannelKind::Email, &self.name, "text");
        let html = message.render(ChannelKind::Email, &self.name, "html");
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject.replace(['\r', '\n'], " "))
            // The same for every attempt of a delivery, so that a receiver folds a repeat.
            .message_id(Some(format!(
                "<mcpwatch.{}.{}@{}>",
                message.delivery_id,
                &crate::channels::pagerduty_dedup_key(&message.context.group_key)[..16],
                self.from.email.domain()
            )))
            .user_agent(concat!("mcpwatch-notifier/", env!("CARGO_PKG_VERSION")).to_owned());
        // A message for one person goes to their address instead of the channel's list.
        match message.contact() {
            Some(address) => {
                let to: Mailbox = address.parse().map_err(|e| {
                    SendError::permanent("message", format!("the recipient's address: {e}"))
                })?;
                builder = builder.to(to);
            }
            None => {
                for to in &self.to {
                    builder = builder.to(to.clone());
                }
            }
        }
        let email = builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        lettre::message::SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        lettre::message::SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|e| {
                SendError::permanent("message", format!("cannot build the message: {e}"))
            })?;
        self.transport.send(email).await.map(|_| ()).map_err(|e| {
            let reason = format!("SMTP: {e}");
            if e.is_permanent() {
                SendError::permanent("smtp_permanent", reason)
            } else if e.is_timeout() {
                SendError::transient("timeout", reason)
            } else if e.is_transient() {
                SendError::transient("smtp_transient", reason)
            } else {
                SendError::transient("connection", reason)
            }
        })
    }
}
