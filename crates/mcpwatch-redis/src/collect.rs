//! The collector: one connection, PING, then one pipeline of INFO ALL and what INFO lacks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mcpwatch_core::certs::{CertificateWatch, Opening};
use mcpwatch_core::connect_failure::{ConnectFailure, unresolvable, write_connect_failure};
use mcpwatch_core::web::{ServerCheck, watched_client_config};
use mcpwatch_core::{CollectError, Collector, MetricSink, ScrapeContext, async_trait};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ErrorKind, ProtocolVersion, Value};

use crate::config::RedisConfig;
use crate::info::Info;
use crate::metrics::Extras;
use crate::{RedisError, connection_info};

/// How long a command an ACL refused is left alone before it is asked again on the same
/// connection: a permission granted later shows without a reconnect, and a user that
/// stays limited is refused once in this time, not on every scrape.
const REFUSED_RETRY: Duration = Duration::from_secs(600);

/// Collects the metrics of one Redis server (`redis_*`), labelled `target="<name>"`.
///
/// It keeps one multiplexed connection; one found broken is made again within the same
/// scrape. A scrape sends `PING` (`redis_up`, `redis_ping_duration_seconds`), then
/// `INFO ALL`, `SLOWLOG LEN`, `CONFIG GET maxmemory` and `CONFIG GET maxclients` and, in
/// cluster mode, `CLUSTER INFO`, in one pipeline; a command an ACL refused is not asked
/// again for [`REFUSED_RETRY`]. Nothing it sends is answered with an error in the normal
/// case, so the server's own error statistics stay the application's.
pub struct RedisCollector {
    config: RedisConfig,
    /// Connects with `HELLO 3`, whose refusal keeps the server's error code (`WRONGPASS`,
    /// `NOAUTH`, `ERR max number of clients reached`); with RESP2 the client library
    /// reports any refused `AUTH` as an authentication failure.
    client: redis::Client,
    /// RESP2, for servers before Redis 6 that have no `HELLO`.
    client_resp2: redis::Client,
    /// The server answered `HELLO` as an unknown command: RESP2 from then on.
    resp2: AtomicBool,
    /// The connection and its number, so that forgetting a broken one never drops a newer
    /// one another scrape made meanwhile.
    connection: tokio::sync::Mutex<Option<(u64, MultiplexedConnection)>>,
    connections_made: AtomicU64,
    /// Learned from INFO: ask CLUSTER INFO only in cluster mode, since elsewhere it is an
    /// error reply that would count in the server's own error statistics.
    cluster_mode: AtomicBool,
    /// Commands an ACL refused on this connection (PING, INFO ALL, CONFIG GET, SLOWLOG
    /// LEN, CLUSTER INFO) and when: not asked again until [`REFUSED_RETRY`] has passed or
    /// the next connection.
    refused: std::sync::Mutex<Vec<(&'static str, Instant)>>,
    /// The certificates of a `rediss://` server, from handshakes of their own (the
    /// client library's TLS settings take no verifier to record them).
    certificates: Option<CertificateWatch>,
}

impl std::fmt::Debug for RedisCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCollector")
            .field("target", &self.config.name)
            .finish()
    }
}

impl RedisCollector {
    /// Checks the configuration; nothing connects until the first scrape.
    pub fn new(config: RedisConfig) -> Result<Self, RedisError> {
        config
            .validate()
            .map_err(|(key, message)| RedisError { key, message })?;
        let error = |message: String| RedisError {
            key: "url".to_owned(),
            message,
        };
        let info = connection_info(&config).map_err(error)?;
        let root_cert = match &config.ca_file {
            Some(ca) => Some(std::fs::read(ca.path()).map_err(|e| RedisError {
                key: "ca_file".to_owned(),
                message: format!("cannot read {}: {e}", ca.path().display()),
            })?),
            None => None,
        };
        let build = |protocol: ProtocolVersion| {
            let redis = info.redis_settings().clone().set_protocol(protocol);
            let info = info.clone().set_redis_settings(redis);
            match &root_cert {
                Some(root_cert) => redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert.clone()),
                    },
                ),
                None => redis::Client::open(info),
            }
            .map_err(|_| match &config.ca_file {
                Some(ca) => RedisError {
                    key: "ca_file".to_owned(),
                    message: format!("no usable PEM certificate in {}", ca.path().display()),
                },
                None => error("cannot use these connection settings".to_owned()),
            })
        };
        let certificates = match info.addr() {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                let check = if *insecure {
                    ServerCheck::None
                } else {
                    ServerCheck::Full
                };
                let watched =
                    watched_client_config(check, config.ca_file.as_ref().map(|c| c.path()))
                        .map_err(|message| RedisError {
                            key: "ca_file".to_owned(),
                            message,
                        })?;
                Some(CertificateWatch::new(
                    watched,
                    host.clone(),
                    None,
                    *port,
                    Opening::Direct,
                ))
            }
            _ => None,
        };
        let client = build(ProtocolVersion::RESP3)?;
        let client_resp2 = build(ProtocolVersion::RESP2)?;
        Ok(Self {
            config,
            client,
            client_resp2,
            resp2: AtomicBool::new(false),
            connection: tokio::sync::Mutex::new(None),
            connections_made: AtomicU64::new(0),
            cluster_mode: AtomicBool::new(false),
            refused: std::sync::Mutex::new(Vec::new()),
            certificates,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The open connection (its number, and whether it was made just now), or a new one
    /// made within the scrape's time; when none can be made, why, with the reason.
    async fn connection(
        &self,
        ctx: &ScrapeContext,
    ) -> Result<(u64, MultiplexedConnection, bool), (CollectError, ConnectFailure)> {
        let mut slot = self.connection.lock().await;
        if let Some((number, connection)) = slot.as_ref() {
            return Ok((*number, connection.clone(), false));
        }
        let connect = self
            .config
            .connect_timeout
            .min(ctx.remaining().mul_f64(0.5));
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(self.config.response_timeout));
        let mut attempt = self.connect(&settings).await;
        if attempt
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::RESP3NotSupported)
        {
            tracing::debug!(target = %self.config.name, "The server has no HELLO (before Redis 6): RESP2 from now on.");
            self.resp2.store(true, Ordering::Relaxed);
            attempt = self.connect(&settings).await;
        }
        let mut connection = match attempt {
            Ok(connection) => connection,
            Err(e) => {
                let reason = self.reason_of(&e).await;
                let what = match reason {
                    ConnectFailure::Auth => "connecting: authentication failed",
                    ConnectFailure::TooManyConnections => "connecting: out of connection slots",
                    _ => "connecting",
                };
                return Err((CollectError::msg(describe(&e)).context(what), reason));
            }
        };
        // Shows who this is in CLIENT LIST; a server that refuses it is no failure.
        let _: Result<Value, _> = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("mcpwatch")
            .query_async(&mut connection)
            .await;
        let number = self.connections_made.fetch_add(1, Ordering::Relaxed);
        *slot = Some((number, connection.clone()));
        self.refused_now().clear();
        Ok((number, connection, true))
    }

    async fn connect(
        &self,
        settings: &AsyncConnectionConfig,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let client = if self.resp2.load(Ordering::Relaxed) {
            &self.client_resp2
        } else {
            &self.client
        };
        client
            .get_multiplexed_async_connection_with_config(settings)
            .await
    }

    /// Why connecting failed: the server's error code, else the TLS or I/O error
    /// underneath, else the error's kind.
    async fn reason_of(&self, error: &redis::RedisError) -> ConnectFailure {
        match error.code() {
            Some("WRONGPASS" | "NOAUTH" | "NOPERM") => return ConnectFailure::Auth,
            // Sent in place of any answer, then the connection is closed. The code is the
            // generic ERR: only the text tells it.
            Some("ERR")
                if error
                    .detail()
                    .is_some_and(|d| d.starts_with("max number of clients")) =>
            {
                return ConnectFailure::TooManyConnections;
            }
            Some(_) => return ConnectFailure::Other,
            None => {}
        }
        if let Some(reason) = ConnectFailure::in_chain(error) {
            return reason;
        }
        match error.kind() {
            // With RESP2 (servers before Redis 6) any refused AUTH, the maxclients error
            // included, comes as this.
            ErrorKind::AuthenticationFailed => ConnectFailure::Auth,
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => ConnectFailure::Protocol,
            // Closed by the server during the handshake.
            ErrorKind::Io if error.is_connection_dropped() => ConnectFailure::Protocol,
            _ => match self.client.get_connection_info().addr() {
                ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. }
                    if unresolvable(host).await =>
                {
                    ConnectFailure::Dns
                }
                _ => ConnectFailure::Other,
            },
        }
    }

    fn refused_now(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Instant)>> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The commands an ACL refused less than [`REFUSED_RETRY`] ago.
    fn refused(&self) -> Vec<&'static str> {
        let mut refused = self.refused_now();
        refused.retain(|(_, when)| when.elapsed() < REFUSED_RETRY);
        refused.iter().map(|(name, _)| *name).collect()
    }

    /// Notes that the server refused `name` (an ACL's NOPERM, or a command renamed away)
    /// and returns true; false for any other error.
    fn note_refusal(&self, name: &'static str, error: &redis::RedisError) -> bool {
        let refused = error.code() == Some("NOPERM")
            || error
                .detail()
                .is_some_and(|d| d.starts_with("unknown command"));
        if refused {
            tracing::debug!(target = %self.config.name, command = name, %error, "Command refused; not asked again for a while on this connection.");
            let mut all = self.refused_now();
            all.retain(|(n, _)| *n != name);
            all.push((name, Instant::now()));
        }
        refused
    }

    /// The pipeline of a scrape: `INFO ALL` and what INFO lacks, less what an ACL refused
    /// lately, and `CLUSTER INFO` in cluster mode only; with the names of what it asks.
    fn pipeline(&self, refused: &[&'static str]) -> (Vec<&'static str>, redis::Pipeline) {
        let mut asked: Vec<&'static str> = Vec::new();
        let mut pipe = redis::pipe();
        for (name, args) in [
            (INFO, &["INFO", "ALL"][..]),
            ("SLOWLOG LEN", &["SLOWLOG", "LEN"][..]),
            ("CONFIG GET maxmemory", &["CONFIG", "GET", "maxmemory"][..]),
            (
                "CONFIG GET maxclients",
                &["CONFIG", "GET", "maxclients"][..],
            ),
            ("CLUSTER INFO", &["CLUSTER", "INFO"][..]),
        ] {
            let cluster_only = name == "CLUSTER INFO";
            if refused.contains(&name)
                || (cluster_only && !self.cluster_mode.load(Ordering::Relaxed))
            {
                continue;
            }
            let mut cmd = redis::cmd(args[0]);
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            pipe.add_command(cmd);
            asked.push(name);
        }
        pipe.ignore_errors();
        (asked, pipe)
    }

    /// PING on `connection`, unless an ACL refused it lately (then the pipeline that
    /// follows shows whether the server answers).
    async fn ping(&self, connection: &mut MultiplexedConnection, number: u64) -> Ping {
        if self.refused().contains(&PING) {
            return Ping::Refused;
        }
        let start = Instant::now();
        let mut unanswered = ForgetUnlessAnswered(Some((self, number)));
        let pong: Result<String, _> = redis::cmd("PING").query_async(connection).await;
        unanswered.0 = None;
        match pong {
            Ok(_) => Ping::Answered(start.elapsed()),
            Err(e) if self.note_refusal(PING, &e) => Ping::Refused,
            // The server answered, with an error (LOADING, BUSY, MASTERDOWN): the
            // connection is fine.
            Err(e) if e.code().is_some() => Ping::Error(e),
            Err(e) => Ping::Broken(e),
        }
    }

    /// Forgets connection `number` after it failed, so that the next scrape connects again.
    fn forget(&self, number: u64) {
        if let Ok(mut slot) = self.connection.try_lock()
            && slot.as_ref().is_some_and(|(n, _)| *n == number)
        {
            slot.take();
        }
    }
}

/// How PING went.
enum Ping {
    /// Answered, in this time.
    Answered(Duration),
    /// Refused by an ACL, now or lately: the server is there.
    Refused,
    /// Answered with an error reply.
    Error(redis::RedisError),
    /// No answer: the connection is broken (closed, reset, timed out).
    Broken(redis::RedisError),
}

/// Forgets the connection when PING was not answered before the scrape ended: cut by the
/// deadline, the server may be stalled or the socket dead without being closed.
struct ForgetUnlessAnswered<'a>(Option<(&'a RedisCollector, u64)>);

impl Drop for ForgetUnlessAnswered<'_> {
    fn drop(&mut self) {
        if let Some((collector, number)) = self.0 {
            collector.forget(number);
        }
    }
}

/// The name `INFO ALL` goes by among the commands a scrape sends.
const INFO: &str = "INFO ALL";
/// The name of `PING` among them.
const PING: &str = "PING";

/// A Redis error's text; the crate's errors carry no credentials.
fn describe(error: &redis::RedisError) -> String {
    error.to_string()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// The value of `CONFIG GET <name>`, as an array (RESP2) or a map (RESP3).
fn config_value(value: &Value) -> Option<f64> {
    let raw = match value {
        Value::Array(items) => items.get(1).and_then(text),
        Value::Map(pairs) => pairs.first().and_then(|(_, v)| text(v)),
        _ => None,
    }?;
    raw.parse().ok()
}

#[async_trait]
impl Collector for RedisCollector {
    fn name(&self) -> &str {
        "redis"
    }

    fn target(&self) -> &str {
        &self.config.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        // Down until PING answers, so that a cut scrape still says so.
        sink.gauge("redis_up", "Whether this scrape reached the server.")
            .add(&[], 0.0);
        if let Some(certificates) = &self.certificates {
            certificates.write(sink, "redis");
        }
        // A connection that broke since the last scrape (a restart, CLIENT KILL, a timeout
        // on the server) is made again at once, so that the scrape still tells how the
        // server is; a new connection that fails is the answer. With PING refused by an
        // ACL, the pipeline is what finds a connection broken.
        let mut retried = false;
        let (mut connection, asked, replies) = loop {
            let (number, mut connection, fresh) = match self.connection(ctx).await {
                Ok(connection) => connection,
                Err((error, reason)) => {
                    write_connect_failure(sink, "redis", Some(reason));
                    return Err(error);
                }
            };
            let ping = match self.ping(&mut connection, number).await {
                Ping::Answered(round_trip) => Some(round_trip),
                Ping::Refused => None,
                Ping::Error(e) => {
                    write_connect_failure(sink, "redis", None);
                    return Err(CollectError::msg(describe(&e)).context("PING"));
                }
                Ping::Broken(e) => {
                    self.forget(number);
                    if fresh || retried {
                        write_connect_failure(sink, "redis", None);
                        return Err(CollectError::msg(describe(&e)).context("PING"));
                    }
                    retried = true;
                    tracing::debug!(target = %self.config.name, error = %e, "The connection broke; connecting again.");
                    continue;
                }
            };
            if let Some(round_trip) = ping {
                if let Some(up) = sink.find_mut("redis_up") {
                    up.set_all(1.0);
                }
                sink.gauge(
                    "redis_ping_duration_seconds",
                    "Round trip of PING on the monitoring connection.",
                )
                .add(&[], round_trip.as_secs_f64());
            }

            // INFO ALL first, then what INFO lacks; what an ACL refused lately is not
            // asked, INFO included: a user allowed PING alone is refused each command once
            // in REFUSED_RETRY, not on every scrape.
            let refused = self.refused();
            if refused.contains(&INFO) {
                write_connect_failure(sink, "redis", None);
                return Err(CollectError::msg(format!(
                    "INFO ALL: refused (NOPERM, or the command is renamed away); allow the \
                     monitoring user INFO: it is asked again within {} minutes",
                    REFUSED_RETRY.as_secs() / 60
                )));
            }
            let (asked, pipe) = self.pipeline(&refused);
            let answer: redis::RedisResult<Vec<redis::RedisResult<Value>>> =
                pipe.query_async(&mut connection).await;
            match answer {
                Ok(replies) => break (connection, asked, replies),
                Err(e) => {
                    self.forget(number);
                    let unchecked = ping.is_none() && e.code().is_none();
                    if unchecked && !fresh && !retried {
                        retried = true;
                        tracing::debug!(target = %self.config.name, error = %e, "The connection broke; connecting again.");
                        continue;
                    }
                    write_connect_failure(sink, "redis", None);
                    return Err(CollectError::msg(describe(&e)).context("INFO"));
                }
            }
        };
        write_connect_failure(sink, "redis", None);
        // With PING refused, the pipeline's answer is what tells the server is there.
        if let Some(up) = sink.find_mut("redis_up") {
            up.set_all(1.0);
        }
        let mut info_reply = None;
        let mut extras = Extras::default();
        for (name, reply) in asked.into_iter().zip(replies) {
            let value = match reply {
                Ok(value) => value,
                Err(error) => {
                    // An ACL (NOPERM) or a managed service that renamed the command away:
                    // not asked again for a while. Anything else may pass.
                    self.note_refusal(name, &error);
                    if name == INFO {
                        info_reply = Some(Err(error));
                    }
                    continue;
                }
            };
            match name {
                INFO => info_reply = Some(Ok(value)),
                "SLOWLOG LEN" => {
                    if let Value::Int(n) = value {
                        extras.slowlog_length = Some(n as f64);
                    }
                }
                "CONFIG GET maxmemory" => extras.maxmemory = config_value(&value),
                "CONFIG GET maxclients" => extras.maxclients = config_value(&value),
                _ => extras.cluster_info = text(&value),
            }
        }
        let info_text = match info_reply {
            Some(Ok(value)) => {
                text(&value).ok_or_else(|| CollectError::msg("INFO ALL: unexpected reply"))?
            }
            Some(Err(e)) => return Err(CollectError::msg(describe(&e)).context("INFO ALL")),
            None => return Err(CollectError::msg("INFO ALL: no reply")),
        };
        let info = Info::parse(&info_text);
        let cluster_enabled = info.number("cluster_enabled") == Some(1.0);
        let newly_clustered =
            cluster_enabled && !self.cluster_mode.swap(cluster_enabled, Ordering::Relaxed);
        if !cluster_enabled {
            self.cluster_mode.store(false, Ordering::Relaxed);
        }
        if newly_clustered {
            // First seen in this INFO: one more round trip, this once.
            extras.cluster_info = match redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async::<Value>(&mut connection)
                .await
            {
                Ok(value) => text(&value),
                Err(error) => {
                    self.note_refusal("CLUSTER INFO", &error);
                    None
                }
            };
        }
        crate::metrics::write(&info, &extras, &self.config, sink);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_replies_in_both_protocols() {
        let resp2 = Value::Array(vec![
            Value::BulkString(b"maxmemory".to_vec()),
            Value::BulkString(b"1048576".to_vec()),
        ]);
        assert_eq!(config_value(&resp2), Some(1_048_576.0));
        let resp3 = Value::Map(vec![(
            Value::BulkString(b"maxclients".to_vec()),
            Value::BulkString(b"10000".to_vec()),
        )]);
        assert_eq!(config_value(&resp3), Some(10_000.0));
        assert_eq!(config_value(&Value::Nil), None);
    }
}
