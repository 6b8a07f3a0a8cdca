//! Remediation actions, run when an incident opens: an HTTP request (its body a template,
//! optionally signed) or a command from the configuration's allow-list. This module checks
//! and runs one action and reports what happened; it keeps no state (running an action
//! once per incident across replicas, and keeping its report, are the caller's).
//!
//! A command never goes through a shell. Its argv is fixed in the configuration; alert
//! values reach it only through named variables, each read from one label or annotation
//! and matched whole against its pattern before anything runs, as whole arguments or parts
//! of one. It runs with an environment of its own, in a process group of its own, and
//! everything left in that group is killed when it exits or its timeout passes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mcpwatch_core::Secret;
use mcpwatch_core::config::Problem;
use minijinja::Environment;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::channels::{http, signature};
use crate::config::{
    CommandActionConfig, HttpActionConfig, NotifierConfig, RemediationConfig, SetupError,
};
use crate::payload::Notification;
use crate::template::{AlertContext, EventContext, MessageContext};

/// A command's `PATH` unless its `env` sets one: nothing of the notifier's environment is
/// passed on.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long output is still read once a command has ended and its process group is gone:
/// a process that left the group (`setsid`, a daemon) may hold the pipes open for good.
const OUTPUT_GRACE: Duration = Duration::from_millis(250);

/// How much longer than its timeout a run's claim lasts (the time to claim it and to
/// record its end), and a policy that waits for it waits at most.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The shortest timeout an action may have.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

/// The largest `max_output_bytes`: reports are kept in the incident's timeline.
const MAX_OUTPUT: usize = 16 << 20;

/// The body of an HTTP action that sets none: JSON naming the action and the incident,
/// with the alerts.
const DEFAULT_BODY: &str = r#"{"action": {{ action|tojson }}, "incident": {{ incident|tojson }}, "status": {{ status|tojson }}, "receiver": {{ receiver|tojson }}, "group_key": {{ group_key|tojson }}, "group_labels": {{ group_labels|tojson }}, "common_labels": {{ common_labels|tojson }}, "alerts": {{ alerts|tojson }}}"#;

/// Every configured action, checked and ready to run.
#[derive(Debug, Default)]
pub struct Remediations {
    actions: BTreeMap<String, Arc<Action>>,
}

impl Remediations {
    /// Checks and builds every action of `remediations`: a command's program must be in
    /// `remediation.allowed_commands` and executable, its placeholders declared variables,
    /// its patterns valid; an HTTP action's URL, headers, key and body template sound. The
    /// error names the configuration key at fault.
    pub fn build(config: &NotifierConfig) -> Result<Self, SetupError> {
        let allowed = &config.remediation.allowed_commands;
        for (i, path) in allowed.iter().enumerate() {
            if !Path::new(path).is_absolute() {
                return Err(SetupError::new(
                    format!("remediation.allowed_commands[{i}]"),
                    format!("{path:?} is not an absolute path"),
                ));
            }
        }
        let mut actions = BTreeMap::new();
        for (name, action) in &config.remediations {
            let key = format!("remediations.{name}");
            if !is_name(name) {
                return Err(SetupError::new(
                    key,
                    "an action's name is letters, digits, '-' and '_'",
                ));
            }
            let built = Action::build(name, action, allowed).map_err(|(at, message)| {
                let key = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{key}.{at}")
                };
                SetupError::new(key, message)
            })?;
            actions.insert(name.clone(), Arc::new(built));
        }
        Ok(Self { actions })
    }

    /// The action named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Action>> {
        self.actions.get(name)
    }

    /// Every action's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }
}

/// Checks `remediations` as [`Remediations::build`] does (for `--check-config` and a
/// reload): the key at fault and what is wrong.
pub fn check(config: &NotifierConfig) -> Result<(), Problem> {
    Remediations::build(config)
        .map(drop)
        .map_err(|e| (e.key, e.message))
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One configured action.
#[derive(Debug)]
pub struct Action {
    name: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Http(Box<HttpAction>),
    Command(CommandAction),
}

impl Action {
    fn build(name: &str, config: &RemediationConfig, allowed: &[String]) -> Result<Self, Problem> {
        let kind = match (&config.http, &config.command) {
            (Some(http), None) => {
                Kind::Http(Box::new(
                HttpAction::build(http).map_err(|(k, m)| (format!("http.{k}"), m))?,
            ))
            }
            (None, Some(command)) => Kind::Command(
                CommandAction::build(command, allowed)
                    .map_err(|(k, m)| (format!("command.{k}"), m))?,
            ),
            _ => {
                return Err((String::new(), "set exactly one of http and command".into()));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
        })
    }

    /// Its name in `remediations`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http` or `command`.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Http(_) => "http",
            Kind::Command(_) => "command",
        }
    }

    /// The longest a run takes before it is stopped.
    pub fn timeout(&self) -> Duration {
        match &self.kind {
            Kind::Http(http) => http.timeout,
            Kind::Command(command) => command.timeout,
        }
    }

    /// How long a claim of a run lasts: past it, the run counts as abandoned by a notifier
    /// that stopped, and a policy waiting for it tells its first level.
    pub fn lease(&self) -> Duration {
        self.timeout() + LEASE_MARGIN
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Exit code 0, or a 2xx answer.
    Succeeded,
    /// It ran and failed, or could not be started or sent.
    Failed {
        /// The command's exit code.
        exit_code: Option<i32>,
        /// The signal that ended the command.
        signal: Option<i32>,
        /// The HTTP answer's status.
        http_status: Option<u16>,
        /// What happened.
        reason: String,
    },
    /// Its timeout passed: the command's process group was killed, or the request dropped.
    TimedOut,
    /// It was not run: nothing was executed or sent.
    Refused {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("succeeded"),
            Outcome::Failed { reason, .. } => write!(f, "failed: {reason}"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Refused { reason } => write!(f, "refused: {reason}"),
        }
    }
}

/// What one run did: its outcome, times and output. It holds no secret (no URL, key or
/// environment value), though a command's own output holds what the command printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// The action's name.
    pub action: String,
    /// `http` or `command`.
    pub kind: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// When it started, in Unix milliseconds.
    pub started_at: i64,
    /// When it ended, in Unix milliseconds.
    pub finished_at: i64,
    /// How long it took.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// A command's standard output and error as they came, or the HTTP answer's body: at
    /// most the action's `max_output_bytes` (less when the cut fell inside a character).
    pub output: String,
    /// Whether there was more output than was kept.
    pub truncated: bool,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

impl RunReport {
    /// The report of a run of an action no longer configured: nothing ran.
    pub fn unconfigured(name: &str) -> Self {
        let now = crate::time::now_ms();
        Self {
            action: name.to_owned(),
            kind: "unknown",
            outcome: Outcome::Refused {
                reason: "the action is no longer configured".into(),
            },
            started_at: now,
            finished_at: now,
            duration: Duration::ZERO,
            output: String::new(),
            truncated: false,
        }
    }

    /// The report of a run that did not happen (a maintenance window holds the incident,
    /// say), so that it is recorded as the others are.
    pub fn refused(action: &Action, reason: impl Into<String>) -> Self {
        let now = crate::time::now_ms();
        Self {
            action: action.name.clone(),
            kind: action.kind(),
            outcome: Outcome::Refused {
                reason: reason.into(),
            },
            started_at: now,
            finished_at: now,
            duration: Duration::ZERO,
            output: String::new(),
            truncated: false,
        }
    }
}

/// Runs `action` once for the alerts of `context` (its event's incident, when it has one,
/// names the incident to the action). Never fails: whatever happened is in the report.
pub async fn run(action: &Action, context: &MessageContext) -> RunReport {
    let started_at = crate::time::now_ms();
    let clock = Instant::now();
    let (outcome, output) = match &action.kind {
        Kind::Http(http) => http.run(&action.name, context).await,
        Kind::Command(command) => command.run(&action.name, context).await,
    };
    let (output, truncated) = output.into_text();
    RunReport {
        action: action.name.clone(),
        kind: action.kind(),
        outcome,
        started_at,
        finished_at: crate::time::now_ms(),
        duration: clock.elapsed(),
        output,
        truncated,
    }
}

fn refused(reason: impl Into<String>) -> (Outcome, Output) {
    (
        Outcome::Refused {
            reason: reason.into(),
        },
        Output::new(0),
    )
}

fn failed(reason: impl Into<String>) -> Outcome {
    Outcome::Failed {
        exit_code: None,
        signal: None,
        http_status: None,
        reason: reason.into(),
    }
}

/// Output kept up to a limit; what comes after is counted as cut, not kept.
#[derive(Debug)]
struct Output {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Output {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            truncated: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        let kept = chunk.len().min(room);
        self.bytes.extend_from_slice(&chunk[..kept]);
        self.truncated |= kept < chunk.len();
    }

    /// The text, without a character the limit cut in two.
    fn into_text(self) -> (String, bool) {
        let mut bytes = self.bytes;
        if let Err(e) = std::str::from_utf8(&bytes)
            && e.error_len().is_none()
        {
            bytes.truncate(e.valid_up_to());
        }
        (String::from_utf8_lossy(&bytes).into_owned(), self.truncated)
    }
}

/// The context templates and variables see, for checking an action against a sample.
fn sample_context() -> MessageContext {
    let notification = Arc::new(Notification::sample());
    let all: Vec<usize> = (0..notification.alerts.len()).collect();
    MessageContext::all(&notification, &all).with_event(EventContext {
        kind: "opened",
        incident: Some(1),
        ..EventContext::default()
    })
}

fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn check_timeout(timeout: Duration) -> Result<(), Problem> {
    if timeout < MIN_TIMEOUT {
        return Err(("timeout".into(), "must be at least 100ms".into()));
    }
    Ok(())
}

fn check_output(max: usize) -> Result<(), Problem> {
    if !(1..=MAX_OUTPUT).contains(&max) {
        return Err((
            "max_output_bytes".into(),
            format!("must be between 1 and {MAX_OUTPUT}"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- HTTP

#[derive(Debug)]
struct HttpAction {
    url: Secret,
    method: reqwest::Method,
    headers: HeaderMap,
    /// The header values, kept out of the report (an answer may echo the request).
    header_values: Vec<Secret>,
    body: Environment<'static>,
    hmac: Option<Hmac>,
    timeout: Duration,
    max_output: usize,
    client: reqwest::Client,
}

#[derive(Debug)]
struct Hmac {
    key: Secret,
    header: HeaderName,
    timestamp_header: HeaderName,
}

impl HttpAction {
    fn build(config: &HttpActionConfig) -> Result<Self, Problem> {
        let url = crate::config::secret_url(&config.url, &config.url_file)
            .map_err(|m| ("url".to_owned(), m))?;
        crate::config::check_http_url(url.expose()).map_err(|m| ("url".to_owned(), m))?;
        let method = match config.method.to_ascii_uppercase().as_str() {
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "GET" => reqwest::Method::GET,
            "DELETE" => reqwest::Method::DELETE,
            other => {
                return Err((
                    "method".into(),
                    format!("{other:?} is not one of POST, PUT, PATCH, GET, DELETE"),
                ));
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| (format!("headers.{name}"), "not a valid header name".into()))?;
            // The value is a secret: the message says what is wrong, never what it is.
            let value = HeaderValue::from_str(value.expose()).map_err(|_| {
                (
                    format!("headers.{name}"),
                    "not a valid header value (visible ASCII, spaces and tabs only; no line breaks)"
                        .to_owned(),
                )
            })?;
            headers.insert(header, value);
        }
        let json = !headers.contains_key(CONTENT_TYPE);
        let hmac = match &config.hmac {
            None => None,
            Some(hmac) => {
                let header = |name: &str, key: &str| {
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| (format!("hmac.{key}"), "not a valid header name".to_owned()))
                };
                Some(Hmac {
                    key: hmac.secret().map_err(|m| ("hmac.secret".to_owned(), m))?,
                    header: header(&hmac.header, "header")?,
                    timestamp_header: header(&hmac.timestamp_header, "timestamp_header")?,
                })
            }
        };
        check_timeout(config.timeout)?;
        check_output(config.max_output_bytes)?;
        let mut body = crate::template::environment();
        body.add_template_owned(
            "body",
            config.body.clone().unwrap_or_else(|| DEFAULT_BODY.to_owned()),
        )
        .map_err(|e| ("body".to_owned(), describe(&e)))?;
        let client = http::client(&config.tls_config, config.timeout)
            .map_err(|m| ("tls_config".to_owned(), m))?;
        let action = Self {
            url,
            method,
            headers,
            header_values: config.headers.values().cloned().collect(),
            body,
            hmac,
            timeout: config.timeout,
            max_output: config.max_output_bytes,
            client,
        };
        let sample = action
            .render("check", &sample_context())
            .map_err(|e| ("body".to_owned(), e))?;
        if json && let Err(e) = serde_json::from_str::<serde_json::Value>(&sample) {
            return Err((
                "body".into(),
                format!(
                    "is not JSON for a sample alert ({e}); use |tojson for values, or set a Content-Type header for another format"
                ),
            ));
        }
        Ok(action)
    }

    fn render(&self, name: &str, context: &MessageContext) -> Result<String, String> {
        let incident = context.event.as_ref().and_then(|e| e.incident);
        let values = minijinja::context! {
            action => name,
            incident => incident,
            ..minijinja::Value::from_serialize(context)
        };
        self.body
            .get_template("body")
            .and_then(|t| t.render(values))
            .map_err(|e| describe(&e))
    }

    async fn run(&self, name: &str, context: &MessageContext) -> (Outcome, Output) {
        let body = match self.render(name, context) {
            Ok(body) => body.into_bytes(),
            Err(e) => return refused(format!("the body template failed: {e}")),
        };
        let mut request = self
            .client
            .request(self.method.clone(), self.url.expose())
            .headers(self.headers.clone())
            .header("X-Mcpwatch-Action", name);
        if !self.headers.contains_key(CONTENT_TYPE) {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(incident) = context.event.as_ref().and_then(|e| e.incident) {
            request = request.header(
                "Idempotency-Key",
                format!("mcpwatch-remediation-{name}-{incident}"),
            );
        }
        if let Some(hmac) = &self.hmac {
            let timestamp = crate::time::now_ms() / 1000;
            request = request
                .header(hmac.timestamp_header.clone(), timestamp.to_string())
                .header(
                    hmac.header.clone(),
                    signature(hmac.key.expose().as_bytes(), timestamp, &body),
                );
        }
        let mut output = Output::new(self.max_output);
        let exchange = async {
            let mut response = request.body(body).send().await?;
            let status = response.status();
            while let Some(chunk) = response.chunk().await? {
                output.push(&chunk);
                if output.truncated {
                    break;
                }
            }
            Ok::<_, reqwest::Error>(status)
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Outcome::TimedOut,
            Ok(Err(e)) if e.is_timeout() => Outcome::TimedOut,
            Ok(Err(e)) => failed(http::request_error(e).reason().to_owned()),
            Ok(Ok(status)) if status.is_success() => Outcome::Succeeded,
            Ok(Ok(status)) => Outcome::Failed {
                exit_code: None,
                signal: None,
                http_status: Some(status.as_u16()),
                reason: format!("HTTP {status}"),
            },
        };
        // An error page may echo the request: its URL, headers.
        let secrets: Vec<&str> = std::iter::once(self.url.expose())
            .chain(self.header_values.iter().map(Secret::expose))
            .chain(self.hmac.as_ref().map(|h| h.key.expose()))
            .collect();
        let (text, truncated) = output.into_text();
        let redacted = http::redact(&text, &secrets);
        let mut output = Output::new(self.max_output);
        output.push(redacted.as_bytes());
        output.truncated |= truncated;
        (outcome, output)
    }
}

// ---------------------------------------------------------------- command

#[derive(Debug)]
struct CommandAction {
    program: PathBuf,
    /// The arguments after the program, each a sequence of text and variables.
    args: Vec<Vec<Piece>>,
    variables: BTreeMap<String, Variable>,
    timeout: Duration,
    max_output: usize,
    working_dir: PathBuf,
    env: Vec<(String, Secret)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Variable(String),
}

#[derive(Debug)]
struct Variable {
    source: Source,
    name: String,
    pattern: regex_lite::Regex,
    pattern_text: String,
}

/// Where a variable's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Label,
    Annotation,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Label => "label",
            Source::Annotation => "annotation",
        }
    }
}

/// An argument's text and `{variable}` placeholders; `{{` and `}}` are braces.
fn pieces(arg: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!(
                                "{arg:?}: a '{{' without its '}}' (write {{{{ for a brace)"
                            ));
                        }
                    }
                }
                if !is_identifier(&name) {
                    return Err(format!(
                        "{arg:?}: {{{name}}} is not a variable name (letters, digits and '_')"
                    ));
                }
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Variable(name));
            }
            '}' => {
                return Err(format!(
                    "{arg:?}: a '}}' without its '{{' (write }}}} for a brace)"
                ));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || out.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl CommandAction {
    fn build(config: &CommandActionConfig, allowed: &[String]) -> Result<Self, Problem> {
        let Some((program, rest)) = config.argv.split_first() else {
            return Err(("argv".into(), "name the program and its arguments".into()));
        };
        let at0 = || "argv[0]".to_owned();
        if program.contains(['{', '}']) {
            return Err((at0(), "the program is a fixed path, without variables".into()));
        }
        let path = Path::new(program);
        if !path.is_absolute() {
            return Err((at0(), format!("{program:?} is not an absolute path")));
        }
        if !allowed.iter().any(|a| a == program) {
            return Err((
                at0(),
                format!("{program:?} is not in remediation.allowed_commands"),
            ));
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => return Err((at0(), format!("{program:?} is not an executable file"))),
            Err(e) => return Err((at0(), format!("{program:?}: {e}"))),
        }
        let mut variables = BTreeMap::new();
        for (name, variable) in &config.variables {
            let key = format!("variables.{name}");
            if !is_identifier(name) {
                return Err((key, "a variable's name is letters, digits and '_'".into()));
            }
            let (source, from) = match (&variable.label, &variable.annotation) {
                (Some(label), None) => (Source::Label, label),
                (None, Some(annotation)) => (Source::Annotation, annotation),
                _ => {
                    return Err((key, "set exactly one of label and annotation".into()));
                }
            };
            let pattern = regex_lite::Regex::new(&format!("^(?:{})$", variable.pattern))
                .map_err(|e| (format!("{key}.pattern"), format!("not a valid regex: {e}")))?;
            variables.insert(
                name.clone(),
                Variable {
                    source,
                    name: from.clone(),
                    pattern,
                    pattern_text: variable.pattern.clone(),
                },
            );
        }
        let mut args = Vec::new();
        for (i, arg) in rest.iter().enumerate() {
            let key = format!("argv[{}]", i + 1);
            let arg_pieces = pieces(arg).map_err(|m| (key.clone(), m))?;
            for piece in &arg_pieces {
                if let Piece::Variable(name) = piece
                    && !variables.contains_key(name)
                {
                    return Err((
                        key,
                        format!("{{{name}}} names no variable; declare it under variables"),
                    ));
                }
            }
            args.push(arg_pieces);
        }
        let working_dir = PathBuf::from(config.working_dir.as_deref().unwrap_or("/"));
        if !working_dir.is_absolute() || !working_dir.is_dir() {
            return Err((
                "working_dir".into(),
                format!("{:?} is not an absolute path of a directory", working_dir),
            ));
        }
        let mut env = Vec::new();
        for (name, value) in &config.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err((format!("env.{name}"), "not a variable name".into()));
            }
            if value.expose().contains('\0') {
                return Err((format!("env.{name}"), "the value holds a NUL byte".into()));
            }
            env.push((name.clone(), value.clone()));
        }
        check_timeout(config.timeout)?;
        check_output(config.max_output_bytes)?;
        Ok(Self {
            program: path.to_owned(),
            args,
            variables,
            timeout: config.timeout,
            max_output: config.max_output_bytes,
            working_dir,
            env,
        })
    }

    /// The value of each variable: the label (or annotation) every firing alert has, the
    /// same for all (every alert when none fires), matching its pattern.
    fn values(&self, context: &MessageContext) -> Result<BTreeMap<&str, String>, String> {
        let alerts: Vec<AlertContext<'_>> = if context.firing.is_empty() {
            context.alerts.iter().collect()
        } else {
            context.firing.iter().collect()
        };
        let mut values = BTreeMap::new();
        for (name, variable) in &self.variables {
            let mut value: Option<&str> = None;
            for alert in &alerts {
                let map = match variable.source {
                    Source::Label => alert.labels(),
                    Source::Annotation => alert.annotations(),
                };
                let Some(found) = map.get(&variable.name) else {
                    return Err(format!(
                        "variable {name}: an alert has no {} {:?}",
                        variable.source.as_str(), variable.name
                    ));
                };
                match value {
                    Some(v) if v != found => {
                        return Err(format!(
                            "variable {name}: the alerts have different values of {} {:?}",
                            variable.source.as_str(), variable.name
                        ));
                    }
                    _ => value = Some(found),
                }
            }
            let Some(value) = value else {
                return Err(format!("variable {name}: no alert to read it from"));
            };
            if !variable.pattern.is_match(value) {
                let shown: String = value.chars().take(64).collect();
                return Err(format!(
                    "variable {name}: {} {:?} is {shown:?}{}, which does not match {}",
                    variable.source.as_str(),
                    variable.name,
                    if shown.len() < value.len() { "…" } else { "" },
                    variable.pattern_text
                ));
            }
            values.insert(name.as_str(), value.to_owned());
        }
        Ok(values)
    }

    async fn run(&self, name: &str, context: &MessageContext) -> (Outcome, Output) {
        let values = match self.values(context) {
            Ok(values) => values,
            Err(reason) => return refused(reason),
        };
        let args: Vec<String> = self
            .args
            .iter()
            .map(|arg| {
                arg.iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => text.as_str(),
                        Piece::Variable(v) => values.get(v.as_str()).map_or("", String::as_str),
                    })
                    .collect()
            })
            .collect();
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(self.env.iter().map(|(k, v)| (k, v.expose())))
            .env("MCPWATCH_ACTION", name)
            .current_dir(&self.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own: a timeout kills what it started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(incident) = context.event.as_ref().and_then(|e| e.incident) {
            command.env("MCPWATCH_INCIDENT", incident.to_string());
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return (
                    failed(format!("{} could not start: {e}", self.program.display())),
                    Output::new(0),
                );
            }
        };
        let mut group = GroupGuard(child.id());
        let output = Arc::new(Mutex::new(Output::new(self.max_output)));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(drain(stdout, output.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(drain(stderr, output.clone())));
        }
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        // What is left of its group goes: at the timeout the command itself, after it
        // exited whatever it started and left running. (The group's id stays taken while
        // any member lives, so it names no other process.)
        group.kill();
        let outcome = match waited {
            Err(_) => {
                let _ = child.wait().await;
                Outcome::TimedOut
            }
            Ok(Err(e)) => failed(format!("waiting for it failed: {e}")),
            Ok(Ok(status)) => match (status.code(), status.signal()) {
                (Some(0), _) => Outcome::Succeeded,
                (Some(code), _) => Outcome::Failed {
                    exit_code: Some(code),
                    signal: None,
                    http_status: None,
                    reason: format!("exit code {code}"),
                },
                (None, signal) => Outcome::Failed {
                    exit_code: None,
                    signal,
                    http_status: None,
                    reason: format!("killed by signal {}", signal.unwrap_or(0)),
                },
            },
        };
        // The pipes close when the last process holding them ends; one that left the group
        // may hold them for good, so reading stops after a grace.
        let grace = tokio::time::Instant::now() + OUTPUT_GRACE;
        for mut reader in readers {
            if tokio::time::timeout_at(grace, &mut reader).await.is_err() {
                reader.abort();
            }
        }
        let output = std::mem::replace(
            &mut *output.lock().unwrap_or_else(PoisonError::into_inner),
            Output::new(0),
        );
        (outcome, output)
    }
}

/// Reads a pipe to its end into `output`, keeping what fits.
async fn drain(mut pipe: impl AsyncRead + Unpin, output: Arc<Mutex<Output>>) {
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => output
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&buffer[..n]),
        }
    }
}

/// A command's process group, killed when the run is given up half way (the notifier
/// stopping past its grace drops the run): nothing it started is left behind.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// Kills the group now, once.
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            kill_group(group);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to every process of group `group`; one that is already empty is no error.
fn kill_group(group: u32) {
    if let Ok(group) = i32::try_from(group) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_whole_names_and_braces_double() {
        assert_eq!(
            pieces("--service={service}").expect("ok"),
            [
                Piece::Text("--service=".into()),
                Piece::Variable("service".into())
            ]
        );
        assert_eq!(
            pieces("{a}{b}").expect("ok"),
            [Piece::Variable("a".into()), Piece::Variable("b".into())]
        );
        assert_eq!(pieces("{{x}}").expect("ok"), [Piece::Text("{x}".into())]);
        assert_eq!(pieces("").expect("ok"), [Piece::Text(String::new())]);
        assert!(pieces("{open").is_err());
        assert!(pieces("close}").is_err());
        assert!(pieces("{not a name}").is_err());
        assert!(pieces("{1x}").is_err());
    }

    #[test]
    fn output_is_cut_at_its_limit_and_never_inside_a_character() {
        let mut output = Output::new(5);
        output.push(b"abc");
        output.push(b"de");
        assert!(!output.truncated);
        output.push(b"f");
        assert_eq!(output.into_text(), ("abcde".to_owned(), true));
        let mut output = Output::new(4);
        output.push("abé".as_bytes());
        output.push("x".as_bytes());
        assert_eq!(output.into_text(), ("abé".to_owned(), true));
        let mut output = Output::new(3);
        output.push("abé".as_bytes());
        assert_eq!(output.into_text(), ("ab".to_owned(), true));
    }

    #[test]
    fn the_default_body_is_json_naming_the_action_incident_and_alerts() {
        let action = HttpAction::build(&HttpActionConfig {
            url: Some(Secret::new("https://example.com/hook")),
            url_file: None,
            method: "post".into(),
            headers: BTreeMap::new(),
            body: None,
            hmac: None,
            timeout: Duration::from_secs(1),
            max_output_bytes: 100,
            tls_config: Default::default(),
        })
        .expect("build");
        let body = action.render("restart", &sample_context()).expect("render");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["action"], "restart");
        assert_eq!(body["incident"], 1);
        assert_eq!(body["status"], "firing");
        assert_eq!(body["alerts"].as_array().map(Vec::len), Some(2));
        assert_eq!(body["alerts"][0]["labels"]["instance"], "mcp-1:3001");
    }
}
