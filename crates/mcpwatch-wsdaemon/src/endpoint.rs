//! The plain HTTP endpoint check (`http_*`): a page requested as `curl -f` would request
//! it, through the same connections the daemon probes make (host lookup, TCP, TLS), each
//! phase timed, redirects followed within a bound, the status and the body checked.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::StatusCode;
use http::header::LOCATION;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mcpwatch_core::{CollectError, Collector, MetricSink, RedactedUrl, ScrapeContext, async_trait};
use tokio::time::{Instant, timeout_at};

use crate::endpoint_config::{HttpConfig, HttpMethod};
use crate::http::{HttpConnection, request};
use crate::net::{Endpoint, Failure, Reason, Stream, addresses, connect_to, secure};
use crate::{Access, DEADLINE_MARGIN, WsDaemonError};

/// Why a check failed; the `reason` label of `http_failure`, a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckReason {
    /// The host name did not resolve.
    Dns,
    /// Nothing accepted the connection.
    Refused,
    /// The deadline passed.
    Timeout,
    /// The TLS handshake failed (an untrusted or expired certificate, a wrong name).
    Tls,
    /// The server broke HTTP: a malformed answer, a connection closed mid-answer.
    Protocol,
    /// A redirect could not be followed: too many, a loop, a `Location` that is no
    /// `http(s)://` URL (or not valid UTF-8), or a URL the redirect rule refuses (a
    /// probe's module does not allow it).
    Redirect,
    /// The final status is not one of the valid ones.
    Status,
    /// The body does not match `body_pattern`, or matches `body_pattern_absent`.
    Body,
    /// The body is longer than `max_body_bytes` and the patterns cannot be decided on
    /// the part read.
    BodyTooLarge,
}

impl CheckReason {
    /// Every reason, in label order.
    pub(crate) const ALL: [CheckReason; 9] = [
        CheckReason::Dns,
        CheckReason::Refused,
        CheckReason::Timeout,
        CheckReason::Tls,
        CheckReason::Protocol,
        CheckReason::Redirect,
        CheckReason::Status,
        CheckReason::Body,
        CheckReason::BodyTooLarge,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CheckReason::Dns => "dns",
            CheckReason::Refused => "refused",
            CheckReason::Timeout => "timeout",
            CheckReason::Tls => "tls",
            CheckReason::Protocol => "protocol",
            CheckReason::Redirect => "redirect",
            CheckReason::Status => "status",
            CheckReason::Body => "body",
            CheckReason::BodyTooLarge => "body_too_large",
        }
    }

    /// The reason of a failed connection step.
    fn of(failure: &Failure) -> Self {
        match failure.reason {
            Reason::Refused => CheckReason::Refused,
            Reason::Timeout => CheckReason::Timeout,
            Reason::Tls => CheckReason::Tls,
            _ => CheckReason::Protocol,
        }
    }
}

/// The phases of a check, in label order; each is summed over the redirects followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The host name lookup.
    Resolve,
    /// The TCP connection.
    Connect,
    /// The TLS handshake.
    Tls,
    /// From the request to the response head: the server's own time.
    Processing,
    /// Reading the body, until its end, `max_body_bytes`, the deadline, or the patterns
    /// are decided.
    Transfer,
}

impl Phase {
    pub(crate) const ALL: [Phase; 5] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
        }
    }
}

/// A failed check: the reason and a message for the log, which never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckFailure {
    pub(crate) reason: CheckReason,
    pub(crate) message: String,
}

impl CheckFailure {
    fn new(reason: CheckReason, message: impl std::fmt::Display) -> Self {
        Self {
            reason,
            message: message.to_string(),
        }
    }

    fn from(failure: Failure) -> Self {
        Self::new(CheckReason::of(&failure), failure.message)
    }
}

/// What one check found.
#[derive(Debug, Default)]
pub(crate) struct CheckReport {
    /// Seconds spent in each phase, in [`Phase::ALL`]'s order.
    pub(crate) phases: [f64; 5],
    /// The status of the last response, when one came.
    pub(crate) status: Option<u16>,
    /// The HTTP version of the last response.
    pub(crate) version: Option<f64>,
    /// Redirects followed.
    pub(crate) redirects: u32,
    /// Whether the last connection spoke TLS.
    pub(crate) tls: bool,
    /// Whether the last status is a valid one.
    pub(crate) status_valid: bool,
    /// Bytes of the body read (at most `max_body_bytes`).
    pub(crate) body_bytes: u64,
    /// Whether the body was not read to its end: longer than `max_body_bytes`, still
    /// arriving at the deadline, or no longer needed once the patterns were decided.
    pub(crate) body_truncated: bool,
    /// Why reading the body stopped, when it was read.
    pub(crate) body_end: Option<BodyEnd>,
    /// Whether `body_pattern` matched the body read.
    pub(crate) pattern_matched: bool,
    /// Whether `body_pattern_absent` matched the body read.
    pub(crate) absent_pattern_matched: bool,
    pub(crate) failure: Option<CheckFailure>,
    /// The URL of the last request, as logs show it (without its query string).
    pub(crate) url: String,
}

impl CheckReport {
    fn add(&mut self, phase: Phase, since: Instant) {
        self.phases[phase as usize] += since.elapsed().as_secs_f64();
    }

    /// Records whether an established connection of the check speaks TLS (the final
    /// page's is recorded last). The certificate chains of its handshakes are recorded by
    /// the TLS configuration itself ([`Access::tls`]).
    fn record_tls(&mut self, stream: &Stream) {
        self.tls = matches!(stream, Stream::Tls(_));
    }
}

/// Decides whether a redirect may lead to a URL (absolute, as it would be requested):
/// `Err` says why not, without a secret. A probe's module gives one, so that a redirect
/// goes nowhere its `allowed_targets` does not allow.
pub type RedirectRule = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// A check ready to run: the configuration and what was parsed out of it.
struct Check {
    config: HttpConfig,
    endpoint: Endpoint,
    access: Access,
    /// The same TLS settings without the credentials, for another origin.
    anonymous: Access,
    /// Every redirect's URL must pass it before it is requested.
    redirect_rule: Option<RedirectRule>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("config", &self.config)
            .field("endpoint", &self.endpoint)
            .field("redirect_rule", &self.redirect_rule.is_some())
            .finish_non_exhaustive()
    }
}

/// Scheme, host and port: where the credentials may go.
fn origin(endpoint: &Endpoint) -> (bool, String, u16) {
    (
        endpoint.tls,
        endpoint.host.to_ascii_lowercase(),
        endpoint.port,
    )
}

/// The statuses that redirect.
fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The absolute URL a `Location` names, relative to `base`.
fn resolve_location(base: &Endpoint, location: &str) -> String {
    let location = location.split('#').next().unwrap_or_default();
    let scheme = base.uri.scheme_str().unwrap_or("http");
    let has_scheme = location.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && !s.contains('/')
    });
    if has_scheme {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{}{location}", base.authority)
    } else {
        let path = base.path.split('?').next().unwrap_or("/");
        let directory = if location.starts_with('?') || location.is_empty() {
            path
        } else {
            &path[..path.rfind('/').map_or(0, |i| i + 1)]
        };
        format!("{scheme}://{}{directory}{location}", base.authority)
    }
}

/// The next hop of a redirect to `location`, when `rule` (if any) allows its URL.
fn redirect_target(
    base: &Endpoint,
    location: &str,
    rule: Option<&RedirectRule>,
) -> Result<Endpoint, CheckFailure> {
    let url = resolve_location(base, location);
    let shown = RedactedUrl::new(&url);
    let invalid = |why: &str| {
        CheckFailure::new(
            CheckReason::Redirect,
            format_args!("redirect to {shown}: {why}"),
        )
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid("not an http:// or https:// URL"));
    }
    let next = Endpoint::parse(&url).map_err(|e| invalid(&e))?;
    if let Some(rule) = rule {
        rule(&url).map_err(|why| invalid(&format!("not followed: {why}")))?;
    }
    Ok(next)
}

/// What the body patterns say of the part of the body read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    pattern_matched: bool,
    absent_pattern_matched: bool,
}

impl Verdict {
    fn of(config: &HttpConfig, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        Self {
            pattern_matched: config
                .body_pattern
                .as_ref()
                .is_some_and(|p| p.is_match(&text)),
            absent_pattern_matched: config
                .body_pattern_absent
                .as_ref()
                .is_some_and(|p| p.is_match(&text)),
        }
    }

    /// Whether the rest of the body cannot change the answer: `body_pattern_absent`
    /// matched (a failure), or `body_pattern` matched with no `body_pattern_absent` set
    /// (a pass: a "must not match" pattern is decided only by the whole body).
    fn decided(self, config: &HttpConfig) -> bool {
        self.absent_pattern_matched
            || (self.pattern_matched && config.body_pattern_absent.is_none())
    }
}

/// Why reading a body stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// It ended.
    Complete,
    /// It is longer than `max_body_bytes`.
    Limit,
    /// It was still arriving at the deadline.
    Deadline,
    /// The patterns were decided before it ended.
    Decided,
}

/// Reads `body` until it ends, `limit` bytes, or `deadline`; with patterns in `config`, it
/// also stops once they are decided on the part read (checked whenever the reading would
/// wait for more). Only with patterns are the bytes kept. Returns the bytes kept, the
/// count read and why it stopped.
async fn read_bounded(
    mut body: Incoming,
    config: &HttpConfig,
    deadline: Instant,
) -> Result<(Vec<u8>, u64, BodyEnd), CheckFailure> {
    let limit = config.max_body_bytes;
    let keep = config.body_pattern.is_some() || config.body_pattern_absent.is_some();
    let mut kept = Vec::new();
    let mut read = 0u64;
    // Whether bytes came since the patterns were last tried.
    let mut fresh = false;
    loop {
        let next = match body.frame().now_or_never() {
            Some(next) => next,
            None => {
                // Nothing more at hand: decide on what was read before waiting.
                if keep && fresh {
                    fresh = false;
                    if Verdict::of(config, &kept).decided(config) {
                        return Ok((kept, read, BodyEnd::Decided));
                    }
                }
                match timeout_at(deadline, body.frame()).await {
                    Err(_) => return Ok((kept, read, BodyEnd::Deadline)),
                    Ok(next) => next,
                }
            }
        };
        match next {
            None => return Ok((kept, read, BodyEnd::Complete)),
            Some(Err(e)) => {
                return Err(CheckFailure::new(
                    CheckReason::Protocol,
                    format_args!("body: {e}"),
                ));
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let room = limit - read;
                let take = room.min(data.len() as u64);
                if keep {
                    // `take` is at most the frame's length.
                    kept.extend_from_slice(&data[..usize::try_from(take).unwrap_or(data.len())]);
                }
                read += take;
                fresh = true;
                if take < data.len() as u64 {
                    return Ok((kept, read, BodyEnd::Limit));
                }
            }
        }
    }
}

impl Check {
    /// Runs the check by `deadline`.
    async fn run(&self, deadline: Instant) -> CheckReport {
        let mut report = CheckReport::default();
        if let Err(failure) = self.exchange(deadline, &mut report).await {
            report.failure = Some(failure);
        }
        report
    }

    async fn exchange(
        &self,
        deadline: Instant,
        report: &mut CheckReport,
    ) -> Result<(), CheckFailure> {
        let config = &self.config;
        let home = origin(&self.endpoint);
        let mut hop = self.endpoint.clone();
        let mut visited = vec![hop.uri.to_string()];
        let response = loop {
            let access = if origin(&hop) == home {
                &self.access
            } else {
                &self.anonymous
            };
            report.tls = false;
            report.url = hop.to_string();
            // An IP address is not looked up: its resolve phase stays 0.
            let lookup = hop.host.parse::<std::net::IpAddr>().is_err();
            let at = Instant::now();
            let address = addresses(&hop, deadline).await;
            if lookup {
                report.add(Phase::Resolve, at);
            }
            let address = address.map_err(|failure| match failure.reason {
                Reason::Timeout => CheckFailure::from(failure),
                _ => CheckFailure::new(CheckReason::Dns, failure.message),
            })?;
            let at = Instant::now();
            let connected = connect_to(&address, deadline).await;
            report.add(Phase::Connect, at);
            let at = Instant::now();
            let stream = secure(
                connected.map_err(CheckFailure::from)?,
                &hop,
                access.tls.as_ref(),
                deadline,
            )
            .await;
            if hop.tls {
                report.add(Phase::Tls, at);
            }
            let stream = stream.map_err(CheckFailure::from)?;
            report.record_tls(&stream);
            let at = Instant::now();
            let sent = async {
                let mut connection = HttpConnection::open(stream).await?;
                let get = request(
                    config.method.as_method(),
                    &hop,
                    access,
                    &[("accept", "*/*")],
                    Bytes::new(),
                )?;
                let response = connection.send(get, deadline, "request").await?;
                Ok::<_, Failure>((connection, response))
            }
            .await;
            report.add(Phase::Processing, at);
            let (connection, response) = sent.map_err(CheckFailure::from)?;
            let status = response.status();
            report.status = Some(status.as_u16());
            report.version = Some(match response.version() {
                http::Version::HTTP_10 => 1.0,
                http::Version::HTTP_2 => 2.0,
                _ => 1.1,
            });
            let location = response
                .headers()
                .get(LOCATION)
                .filter(|_| config.follow_redirects && is_redirect(status));
            let Some(location) = location else {
                break (connection, response);
            };
            let location = std::str::from_utf8(location.as_bytes()).map_err(|_| {
                CheckFailure::new(
                    CheckReason::Redirect,
                    format_args!("HTTP {status}: its Location header is not valid UTF-8"),
                )
            })?;
            if report.redirects >= config.max_redirects {
                return Err(CheckFailure::new(
                    CheckReason::Redirect,
                    format_args!("more than {} redirects", config.max_redirects),
                ));
            }
            let next = redirect_target(&hop, location, self.redirect_rule.as_ref())?;
            let url = next.uri.to_string();
            if visited.contains(&url) {
                return Err(CheckFailure::new(
                    CheckReason::Redirect,
                    format_args!("redirect loop back to {next}"),
                ));
            }
            visited.push(url);
            report.redirects += 1;
            hop = next;
        };
        let (_connection, response) = response;
        let status = response.status().as_u16();
        report.status_valid = config.is_valid_status(status);
        if !report.status_valid {
            return Err(CheckFailure::new(
                CheckReason::Status,
                format_args!("answered HTTP {status}"),
            ));
        }
        if config.method == HttpMethod::Head {
            return Ok(());
        }
        let patterns = config.body_pattern.is_some() || config.body_pattern_absent.is_some();
        let at = Instant::now();
        let read = read_bounded(response.into_body(), config, deadline).await;
        report.add(Phase::Transfer, at);
        let (body, bytes, end) = read?;
        report.body_bytes = bytes;
        report.body_truncated = end != BodyEnd::Complete;
        report.body_end = Some(end);
        // Without a pattern the status is the answer: the body is read (for its size and
        // the transfer phase) only as far as max_body_bytes and the deadline allow.
        if !patterns {
            return Ok(());
        }
        let verdict = Verdict::of(config, &body);
        report.pattern_matched = verdict.pattern_matched;
        report.absent_pattern_matched = verdict.absent_pattern_matched;
        if report.absent_pattern_matched {
            return Err(CheckFailure::new(
                CheckReason::Body,
                "the body matches body_pattern_absent",
            ));
        }
        let required_missing = config.body_pattern.is_some() && !report.pattern_matched;
        // What was not read may hold what is looked for, or what must be absent.
        if end != BodyEnd::Complete && !verdict.decided(config) {
            return Err(if end == BodyEnd::Deadline {
                CheckFailure::new(
                    CheckReason::Timeout,
                    "body: still arriving at the deadline, and the patterns cannot be \
                     decided on the part read",
                )
            } else {
                CheckFailure::new(
                    CheckReason::BodyTooLarge,
                    format_args!(
                        "the body is longer than max_body_bytes ({}): the patterns cannot be \
                         decided on the part read",
                        config.max_body_bytes
                    ),
                )
            });
        }
        if required_missing {
            return Err(CheckFailure::new(
                CheckReason::Body,
                "the body does not match body_pattern",
            ));
        }
        Ok(())
    }
}

/// Checks one plain HTTP endpoint (`http_*`), labelled `target="<name>"`: an admin UI, a
/// gateway's page, anything whose health is not JSON. One request per scrape on fresh
/// connections, under the smaller of `timeout` and the scrape's deadline; a failed check
/// fails the collection (`mcpwatch_scrape_collector_success 0`) with every metric served.
pub struct HttpCollector {
    check: Arc<Check>,
}

impl std::fmt::Debug for HttpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCollector")
            .field("target", &self.check.config.name)
            .finish()
    }
}

impl HttpCollector {
    /// Checks the configuration and reads the CA and token files. Nothing connects until
    /// the first scrape.
    pub fn new(config: HttpConfig) -> Result<Self, WsDaemonError> {
        Self::build(config, None)
    }

    /// As [`HttpCollector::new`], with every redirect's URL checked by `rule` before it is
    /// requested; one it refuses fails the check (`reason="redirect"`).
    pub fn with_redirect_rule(
        config: HttpConfig,
        rule: RedirectRule,
    ) -> Result<Self, WsDaemonError> {
        Self::build(config, Some(rule))
    }

    fn build(
        config: HttpConfig,
        redirect_rule: Option<RedirectRule>,
    ) -> Result<Self, WsDaemonError> {
        let error = |(key, message): (String, String)| WsDaemonError { key, message };
        config.validate().map_err(error)?;
        let endpoint =
            Endpoint::parse(&config.url).map_err(|message| error(("url".into(), message)))?;
        // TLS settings even for an http:// URL: a redirect may lead to https://.
        let access = Access::new(
            config.bearer_token(),
            &config.headers,
            true,
            config.ca_file.as_ref(),
            config.insecure_skip_verify,
        )
        .map_err(error)?;
        let anonymous = Access {
            tls: access.tls.clone(),
            token: None,
            headers: Vec::new(),
        };
        Ok(Self {
            check: Arc::new(Check {
                config,
                endpoint,
                access,
                anonymous,
                redirect_rule,
            }),
        })
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// Writes the series of `report`.
fn write(report: &CheckReport, config: &HttpConfig, sink: &mut MetricSink) {
    sink.gauge(
        "http_up",
        "Whether the check passed: the endpoint answered a valid status, and its body \
         matched the patterns set.",
    )
    .add(&[], flag(report.failure.is_none()));
    sink.gauge(
        "http_status_code",
        "The HTTP status of the last response (after the redirects followed); 0 when none \
         came.",
    )
    .add(&[], report.status.map_or(0.0, f64::from));
    sink.gauge(
        "http_status_code_valid",
        "Whether the last status is one of valid_status_codes (any 2xx by default).",
    )
    .add(&[], flag(report.status_valid));
    let phases = sink.gauge(
        "http_duration_seconds",
        "Time of each phase of the check, summed over the redirects followed: resolve, \
         connect, tls, processing (request to response head), transfer (the body, read \
         until its end, max_body_bytes, the deadline or the patterns decided); 0 for a \
         phase not reached.",
    );
    for phase in Phase::ALL {
        phases.add(&[("phase", phase.as_str())], report.phases[phase as usize]);
    }
    sink.gauge("http_redirects", "Redirects followed.")
        .add(&[], f64::from(report.redirects));
    sink.gauge(
        "http_tls",
        "Whether the last connection spoke TLS (https://).",
    )
    .add(&[], flag(report.tls));
    sink.gauge(
        "http_version",
        "The HTTP version of the last response, such as 1.1; 0 when none came.",
    )
    .add(&[], report.version.unwrap_or(0.0));
    sink.gauge(
        "http_body_bytes",
        "Bytes of the body read, at most max_body_bytes.",
    )
    .add(&[], report.body_bytes as f64);
    sink.gauge(
        "http_body_truncated",
        "Whether the body was not read to its end: longer than max_body_bytes, still \
         arriving at the deadline, or no longer needed once the patterns were decided.",
    )
    .add(&[], flag(report.body_truncated));
    if config.body_pattern.is_some() || config.body_pattern_absent.is_some() {
        let matched = sink.gauge(
            "http_body_pattern_matched",
            "Whether the pattern (body_pattern, which must match, or body_pattern_absent, \
             which must not) matched the body read; 0 when no body was read.",
        );
        if config.body_pattern.is_some() {
            matched.add(&[("pattern", "body_pattern")], flag(report.pattern_matched));
        }
        if config.body_pattern_absent.is_some() {
            matched.add(
                &[("pattern", "body_pattern_absent")],
                flag(report.absent_pattern_matched),
            );
        }
    }
    let failed = sink.gauge(
        "http_failure",
        "Why the check failed: 1 for the reason, 0 for the others.",
    );
    let reason = report.failure.as_ref().map(|f| f.reason);
    for each in CheckReason::ALL {
        failed.add(&[("reason", each.as_str())], flag(reason == Some(each)));
    }
}

#[async_trait]
impl Collector for HttpCollector {
    fn name(&self) -> &str {
        "http"
    }

    fn target(&self) -> &str {
        &self.check.config.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let budget = ctx
            .remaining()
            .saturating_sub(DEADLINE_MARGIN)
            .min(self.check.config.timeout);
        let started = std::time::Instant::now();
        let report = self.check.run(Instant::now() + budget).await;
        write(&report, &self.check.config, sink);
        if let Some(tls) = &self.check.access.tls {
            // The chains of the pages this check reached (redirects included).
            tls.recorder().write(sink, "http", started);
        }
        match &report.failure {
            None => Ok(()),
            Some(failure) => {
                let after = match report.redirects {
                    0 => String::new(),
                    1 => " after 1 redirect".to_owned(),
                    n => format!(" after {n} redirects"),
                };
                Err(CollectError::msg(self.check.access.redact(&format!(
                    "{}{after}: {} ({})",
                    report.url,
                    failure.message,
                    failure.reason.as_str()
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering each path with its raw response; it records the request heads.
    async fn serve(routes: Vec<(String, String)>) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let routes = routes.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut tcp, true).await else {
                        return;
                    };
                    // A TLS client hello: answered as a plain HTTP server does.
                    if head.first() == Some(&0x16) {
                        let _ = tcp.write_all(page(400, "", "").as_bytes()).await;
                        return;
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    seen.lock().expect("lock").push(head);
                    let answer = routes
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map_or_else(|| page(404, "", "gone"), |(_, a)| a.clone());
                    let _ = tcp.write_all(answer.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        (port, heads)
    }

    /// Reads a request up to the end of its head; `None` when the client went away first.
    /// With `tls_hello_ends`, a TLS client hello (first byte 0x16) ends the read at once.
    async fn read_head(tcp: &mut tokio::net::TcpStream, tls_hello_ends: bool) -> Option<Vec<u8>> {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
            if tls_hello_ends && head.first() == Some(&0x16) {
                break;
            }
        }
        Some(head)
    }

    fn page(status: u16, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
             connection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    }

    fn redirect(to: &str) -> String {
        page(302, &format!("location: {to}\r\n"), "")
    }

    async fn check(yaml: &str) -> CheckReport {
        let config: HttpConfig =
            mcpwatch_core::config::parse_yaml(yaml, std::path::Path::new("t.yml")).expect("config");
        let collector = HttpCollector::new(config).expect("collector");
        collector
            .check
            .run(Instant::now() + Duration::from_secs(5))
            .await
    }

    /// A server answering every request with `answer` and holding the connection open
    /// until the client closes it: with a chunked head and no last chunk, a body that
    /// never ends. It counts the requests.
    async fn serve_raw(answer: Vec<u8>) -> (u16, Arc<Mutex<u32>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(Mutex::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let answer = answer.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    if read_head(&mut tcp, false).await.is_none() {
                        return;
                    }
                    let mut chunk = [0u8; 1024];
                    *counted.lock().expect("lock") += 1;
                    if tcp.write_all(&answer).await.is_err() {
                        return;
                    }
                    while !matches!(tcp.read(&mut chunk).await, Ok(0) | Err(_)) {}
                });
            }
        });
        (port, requests)
    }

    /// A 200 whose chunked body sends `first` and never ends.
    fn endless(first: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        )
        .into_bytes()
    }

    fn reason(report: &CheckReport) -> Option<&'static str> {
        report.failure.as_ref().map(|f| f.reason.as_str())
    }

    #[test]
    fn locations_resolve_against_the_page() {
        let base = Endpoint::parse("https://gw.example:8443/admin/login?next=x").expect("url");
        for (location, expected) in [
            ("http://other/x", "http://other/x"),
            ("//cdn.example/y", "https://cdn.example/y"),
            ("/home", "https://gw.example:8443/home"),
            ("dashboard", "https://gw.example:8443/admin/dashboard"),
            ("?page=2", "https://gw.example:8443/admin/login?page=2"),
            ("/a#top", "https://gw.example:8443/a"),
            ("ftp://x/", "ftp://x/"),
        ] {
            assert_eq!(resolve_location(&base, location), expected, "{location}");
        }
        let e = redirect_target(&base, "ftp://x/", None).expect_err("scheme");
        assert_eq!(e.reason, CheckReason::Redirect);
        let e =
            redirect_target(&base, "http://ops:hunter2@other/?k=hunter2", None).expect_err("user");
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_page_its_redirects_and_its_body() {
        let html = "<html><title>Admin</title><body>ok</body></html>";
        let (port, heads) = serve(vec![
            ("/".into(), page(200, "", html)),
            ("/old".into(), redirect("/")),
            ("/a".into(), redirect("/b")),
            ("/b".into(), redirect("/a")),
            ("/down".into(), page(503, "", "maintenance")),
        ])
        .await;
        let url = |path: &str| format!("name: t\nurl: http://127.0.0.1:{port}{path}\n");

        let r = check(&format!("{}body_pattern: '<title>Admin'\n", url("/"))).await;
        assert_eq!(reason(&r), None);
        assert_eq!(
            (r.status, r.status_valid, r.redirects),
            (Some(200), true, 0)
        );
        assert_eq!((r.body_bytes, r.body_truncated), (html.len() as u64, false));
        assert!(r.pattern_matched);
        assert_eq!(r.version, Some(1.1));
        assert!(!r.tls);

        let r = check(&url("/old")).await;
        assert_eq!((reason(&r), r.status, r.redirects), (None, Some(200), 1));
        let r = check(&format!("{}follow_redirects: false\n", url("/old"))).await;
        assert_eq!(
            (reason(&r), r.status, r.redirects),
            (Some("status"), Some(302), 0)
        );
        let r = check(&format!(
            "{}follow_redirects: false\nvalid_status_codes: [302]\n",
            url("/old")
        ))
        .await;
        assert_eq!((reason(&r), r.status), (None, Some(302)));

        let r = check(&url("/a")).await;
        assert_eq!(
            (reason(&r), r.status, r.redirects),
            (Some("redirect"), Some(302), 1)
        );
        let r = check(&format!("{}max_redirects: 0\n", url("/old"))).await;
        assert_eq!((reason(&r), r.redirects), (Some("redirect"), 0));

        let r = check(&url("/down")).await;
        assert_eq!(
            (reason(&r), r.status, r.status_valid),
            (Some("status"), Some(503), false)
        );
        assert_eq!(r.body_bytes, 0, "the body of an invalid status is not read");

        let r = check(&format!("{}body_pattern: 'Welcome'\n", url("/"))).await;
        assert_eq!((reason(&r), r.pattern_matched), (Some("body"), false));
        let r = check(&format!("{}body_pattern_absent: '<body>ok'\n", url("/"))).await;
        assert_eq!((reason(&r), r.absent_pattern_matched), (Some("body"), true));

        // Bounded: without a pattern the rest is not needed; with one it decides nothing.
        let r = check(&format!("{}max_body_bytes: 10\n", url("/"))).await;
        assert_eq!(
            (reason(&r), r.body_bytes, r.body_truncated),
            (None, 10, true)
        );
        let r = check(&format!(
            "{}max_body_bytes: 10\nbody_pattern: '<html>'\n",
            url("/")
        ))
        .await;
        assert_eq!(reason(&r), None, "found in the part read");
        for pattern in ["body_pattern: 'Admin'", "body_pattern_absent: 'error'"] {
            let r = check(&format!("{}max_body_bytes: 10\n{pattern}\n", url("/"))).await;
            assert_eq!(reason(&r), Some("body_too_large"), "{pattern}");
        }
        assert_eq!(heads.lock().expect("lock").len(), 15);
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_read_only_as_far_as_the_answer_needs() {
        let event = "event: ping\ndata: {\"ok\":true}\n\n";
        let (port, requests) = serve_raw(endless(event)).await;
        let url = format!("name: t\nurl: http://127.0.0.1:{port}/events\ntimeout: 1s\n");
        let run = |yaml: String| async move {
            let config: HttpConfig =
                mcpwatch_core::config::parse_yaml(&yaml, std::path::Path::new("t.yml"))
                    .expect("config");
            let collector = HttpCollector::new(config).expect("collector");
            // The check's own deadline, as a scrape gives it.
            collector
                .check
                .run(Instant::now() + Duration::from_secs(1))
                .await
        };
        let read = |r: &CheckReport| {
            (
                reason(r),
                r.status,
                r.body_bytes,
                r.body_truncated,
                r.body_end,
            )
        };
        let bytes = event.len() as u64;

        // Without a pattern the status is the answer: the body is read until the deadline.
        let r = run(url.clone()).await;
        assert_eq!(
            read(&r),
            (None, Some(200), bytes, true, Some(BodyEnd::Deadline))
        );
        // Or until max_body_bytes.
        let r = run(format!("{url}max_body_bytes: 5\n")).await;
        assert_eq!(read(&r), (None, Some(200), 5, true, Some(BodyEnd::Limit)));

        // A body_pattern found in what came decides: the rest is not waited for.
        let r = run(format!("{url}body_pattern: '\"ok\":true'\n")).await;
        assert_eq!(
            read(&r),
            (None, Some(200), bytes, true, Some(BodyEnd::Decided))
        );
        assert!(r.pattern_matched);
        // So does a body_pattern_absent found: a failure.
        let r = run(format!("{url}body_pattern_absent: 'ping'\n")).await;
        assert_eq!(
            read(&r),
            (Some("body"), Some(200), bytes, true, Some(BodyEnd::Decided))
        );
        // A body_pattern_absent not found yet is decided only by the whole body: the
        // deadline comes first.
        for patterns in [
            "body_pattern_absent: 'error'",
            "body_pattern: 'ok'\nbody_pattern_absent: 'error'",
            "body_pattern: 'pong'",
        ] {
            let r = run(format!("{url}{patterns}\n")).await;
            assert_eq!(
                read(&r),
                (
                    Some("timeout"),
                    Some(200),
                    bytes,
                    true,
                    Some(BodyEnd::Deadline)
                ),
                "{patterns}"
            );
        }
        assert_eq!(*requests.lock().expect("lock"), 7);
    }

    #[tokio::test]
    async fn a_redirect_goes_only_where_the_rule_allows() {
        let (elsewhere, elsewhere_requests) = serve_raw(page(200, "", "secret").into_bytes()).await;
        let (port, heads) = serve(vec![
            (
                "/tometa".into(),
                redirect(&format!("http://127.0.0.1:{elsewhere}/secret-admin")),
            ),
            ("/old".into(), redirect("/")),
            ("/".into(), page(200, "", "home")),
        ])
        .await;
        let allowed = format!("http://127.0.0.1:{port}/");
        let rule: RedirectRule = Arc::new(move |url: &str| {
            if url.starts_with(&allowed) {
                Ok(())
            } else {
                Err("elsewhere".to_owned())
            }
        });
        let run = |path: &str| {
            let config: HttpConfig = mcpwatch_core::config::parse_yaml(
                &format!("name: t\nurl: http://127.0.0.1:{port}{path}\n"),
                std::path::Path::new("t.yml"),
            )
            .expect("config");
            let collector =
                HttpCollector::with_redirect_rule(config, rule.clone()).expect("collector");
            async move {
                collector
                    .check
                    .run(Instant::now() + Duration::from_secs(5))
                    .await
            }
        };
        let r = run("/tometa").await;
        assert_eq!(
            (reason(&r), r.status, r.redirects),
            (Some("redirect"), Some(302), 0)
        );
        assert_eq!(
            r.failure.map(|f| f.message),
            Some(format!(
                "redirect to http://127.0.0.1:{elsewhere}/secret-admin: not followed: elsewhere"
            ))
        );
        assert_eq!(*elsewhere_requests.lock().expect("lock"), 0);
        // Within the rule, redirects are followed.
        let r = run("/old").await;
        assert_eq!((reason(&r), r.status, r.redirects), (None, Some(200), 1));
        assert_eq!(heads.lock().expect("lock").len(), 3);
    }

    #[tokio::test]
    async fn a_location_that_is_not_utf8_fails_as_a_redirect() {
        let mut answer = b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\nlocation: /caf".to_vec();
        answer.extend_from_slice(b"\xe9\r\n\r\n");
        let (port, requests) = serve_raw(answer).await;
        let r = check(&format!("name: t\nurl: http://127.0.0.1:{port}/\n")).await;
        assert_eq!(
            (reason(&r), r.status, r.redirects),
            (Some("redirect"), Some(302), 0)
        );
        assert_eq!(
            r.failure.map(|f| f.message).as_deref(),
            Some("HTTP 302 Found: its Location header is not valid UTF-8")
        );
        // Not followed, it is the answer: an invalid status.
        let r = check(&format!(
            "name: t\nurl: http://127.0.0.1:{port}/\nfollow_redirects: false\n"
        ))
        .await;
        assert_eq!((reason(&r), r.status), (Some("status"), Some(302)));
        assert_eq!(*requests.lock().expect("lock"), 2);
    }

    #[tokio::test]
    async fn a_failed_check_names_the_page_that_failed_it() {
        let (port, _) = serve(vec![
            ("/a".into(), redirect("/b?key=s3cret")),
            ("/b?key=s3cret".into(), redirect("/a")),
            ("/down".into(), page(503, "", "")),
        ])
        .await;
        let collect = |path: &str| {
            let config: HttpConfig = mcpwatch_core::config::parse_yaml(
                &format!("name: t\nurl: http://127.0.0.1:{port}{path}\n"),
                std::path::Path::new("t.yml"),
            )
            .expect("config");
            async move {
                let collector = HttpCollector::new(config).expect("collector");
                let mut sink = MetricSink::default();
                let deadline = Instant::now() + Duration::from_secs(5);
                let result = collector
                    .collect(&ScrapeContext::new(deadline), &mut sink)
                    .await;
                let up = sink.find("http_up").and_then(|f| f.value(&[]));
                (result.map_err(|e| e.to_string()), up)
            }
        };
        assert_eq!(
            collect("/a").await,
            (
                Err(format!(
                    "http://127.0.0.1:{port}/b after 1 redirect: redirect loop back to \
                     http://127.0.0.1:{port}/a (redirect)"
                )),
                Some(0.0)
            )
        );
        assert_eq!(
            collect("/down").await,
            (
                Err(format!(
                    "http://127.0.0.1:{port}/down: answered HTTP 503 (status)"
                )),
                Some(0.0)
            )
        );
    }

    #[tokio::test]
    async fn credentials_stay_with_their_origin() {
        let (other, other_heads) = serve(vec![("/landing".into(), page(200, "", "hi"))]).await;
        let (port, heads) = serve(vec![
            ("/".into(), redirect("/next")),
            (
                "/next".into(),
                redirect(&format!("http://127.0.0.1:{other}/landing")),
            ),
        ])
        .await;
        let r = check(&format!(
            "name: t\nurl: http://127.0.0.1:{port}/\nbearer_token: s3cret-token\n\
             headers:\n  X-Api-Key: s3cret-key\n"
        ))
        .await;
        assert_eq!((reason(&r), r.redirects, r.status), (None, 2, Some(200)));
        let heads = heads.lock().expect("lock").join("\n").to_ascii_lowercase();
        assert_eq!(
            heads.matches("authorization: bearer s3cret-token").count(),
            2
        );
        assert_eq!(heads.matches("x-api-key: s3cret-key").count(), 2);
        let other = other_heads
            .lock()
            .expect("lock")
            .join("\n")
            .to_ascii_lowercase();
        assert!(other.starts_with("get /landing http/1.1"), "{other}");
        assert!(!other.contains("s3cret"), "{other}");
        assert!(!other.contains("authorization"), "{other}");
    }

    #[tokio::test]
    async fn connection_failures_have_their_reason() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let r = check(&format!("name: t\nurl: http://127.0.0.1:{closed}/\n")).await;
        assert_eq!((reason(&r), r.status), (Some("refused"), None));
        let r = check("name: t\nurl: http://nothing.invalid/\n").await;
        assert_eq!(reason(&r), Some("dns"));
        // A TLS handshake with a server that speaks plain HTTP.
        let (port, _) = serve(vec![]).await;
        let r = check(&format!("name: t\nurl: https://127.0.0.1:{port}/\n")).await;
        assert_eq!((reason(&r), r.tls), (Some("tls"), false));
    }
}
