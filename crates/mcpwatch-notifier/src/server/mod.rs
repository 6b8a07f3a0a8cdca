//! The HTTP surface: `POST /webhook`, `GET /health`, `GET /metrics`, the admin API under
//! `/api/v1/`, the web UI under `/ui/`, `POST /-/reload` and `GET /`.
//!
//! The escalation and maintenance endpoints are in [`operations`], the on-call schedules in
//! [`schedules`], the public status page in [`status`], the web UI in [`ui`]; what the API
//! and the UI both do (acknowledge, resolve, the report, who is on call, replay, add and end
//! windows) is one function each, which the API answers in JSON and the UI in HTML.
//!
//! `/webhook` answers 200 only once the notification is committed to the store; 503 when
//! the store fails (Alertmanager retries); and 4xx with a JSON error for what can never
//! succeed: 400 (not JSON, a missing or wrong field, a version other than 4, no alerts,
//! JSON nested deeper than delivery reads), 401, 413, 415.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::future::BoxFuture;
use mcpwatch_core::Secret;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, SetupError};
use crate::payload::{Incoming, Notification, PayloadError};
use crate::store::{ListFilter, NotificationView, StoreError, state};
use crate::notifier::{Answer, Notifier, Received};

mod operations;
mod status;
mod ui;
mod schedules;

/// Re-reads the configuration; the error names what is wrong and where.
pub type ReloadHook = Arc<dyn Fn() -> BoxFuture<'static, Result<(), ReloadError>> + Send + Sync>;

/// Why a reload left the configuration as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not read or check (it names the file, line and column).
    #[error(transparent)]
    Load(#[from] mcpwatch_core::config::ConfigError),
    /// The configuration reads but does not build (it names the key).
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The reload stopped before it ended (the process is stopping).
    #[error("the reload was interrupted")]
    Interrupted,
}

#[derive(Clone)]
struct App {
    notifier: Arc<Notifier>,
    reload: Option<ReloadHook>,
}

/// The router of every endpoint.
pub fn router(notifier: Arc<Notifier>, reload: Option<ReloadHook>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/webhook", post(webhook).fallback(method_not_allowed))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/notifications", get(list))
        .route("/api/v1/notifications/{id}", get(one))
        .route("/api/v1/notifications/{id}/replay", post(replay))
        .route("/api/v1/incidents", get(operations::incidents))
        .route("/api/v1/incidents/{id}", get(operations::incident))
        .route(
            "/api/v1/incidents/{id}/ack",
            get(operations::link_page).post(operations::ack),
        )
        .route(
            "/api/v1/incidents/{id}/unack",
            get(operations::link_page).post(operations::unack),
        )
        .route(
            "/api/v1/incidents/{id}/resolve",
            post(operations::resolve_by_hand),
        )
        .route(
            "/api/v1/incidents/{id}/timeline",
            get(operations::timeline),
        )
        .route("/api/v1/incidents/{id}/report", get(operations::report))
        .route(
            "/api/v1/windows",
            get(operations::windows).post(operations::add_window),
        )
        .route("/api/v1/windows/{id}", delete(operations::end_window))
        .route("/status", get(status::html))
        .route("/status.json", get(status::json))
        .route("/api/v1/schedules", get(schedules::list))
        .route("/api/v1/schedules/{name}", get(schedules::one))
        .route("/api/v1/schedules/{name}/calendar.ics", get(schedules::feed))
        .route("/-/reload", post(reload_config))
        .merge(ui::routes())
        .fallback(not_found)
        .with_state(App { notifier, reload })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Why an action changed nothing: the status and message the API (as JSON) and the UI
/// (as a page) both give.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refused {
    status: StatusCode,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The API's answer.
    fn json(&self) -> Response {
        error(self.status, self.message.clone())
    }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed(app: State<App>) -> Response {
    app.notifier.metrics().rejected("method");
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "POST an Alertmanager webhook payload here",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        concat!(
            "<!DOCTYPE html><html><head><title>mcpwatch-notifier</title></head><body>",
            "<h1>mcpwatch-notifier ",
            env!("CARGO_PKG_VERSION"),
            "</h1><ul>",
            "<li><a href=\"/ui/\">/ui/</a>: incidents, who is on call, maintenance windows, dead letters and channels (the web UI)</li>",
            "<li>POST <code>/webhook</code>: Alertmanager webhook receiver</li>",
            "<li><a href=\"/health\">/health</a></li>",
            "<li><a href=\"/metrics\">/metrics</a></li>",
            "<li><a href=\"/api/v1/notifications\">/api/v1/notifications</a> (<code>?state=dead</code>)</li>",
            "<li>POST <code>/api/v1/notifications/{id}/replay</code></li>",
            "<li><a href=\"/api/v1/incidents\">/api/v1/incidents</a> (<code>?state=all</code>); POST <code>/api/v1/incidents/{id}/ack</code> and <code>/unack</code></li>",
            "<li><a href=\"/api/v1/windows\">/api/v1/windows</a>; POST to add a one-off maintenance window, DELETE <code>/api/v1/windows/{id}</code> to end one</li>",
            "<li><a href=\"/api/v1/schedules\">/api/v1/schedules</a>: who is on call now and next; <code>/api/v1/schedules/{name}</code> with its shifts, <code>/calendar.ics</code> as an iCalendar feed</li>",
            "</ul></body></html>"
        ),
    )
        .into_response()
}

/// Whether the request carries the credentials `auth` asks for, compared in constant
/// time.
fn authorized(auth: &AuthConfig, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return auth.token().is_some_and(|t: Secret| {
            bool::from(t.expose().as_bytes().ct_eq(credentials.as_bytes()))
        });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let (Some((user, password)), Some(decoded)) = (auth.basic(), basic_credentials(headers))
        else {
            return false;
        };
        let expected = format!("{user}:{}", password.expose());
        return bool::from(decoded.ct_eq(expected.as_bytes()));
    }
    false
}

/// The user name of a Basic Authorization header.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let text = String::from_utf8(basic_credentials(headers)?).ok()?;
    Some(text.split_once(':')?.0.to_owned())
}

/// The decoded `user:password` of a Basic Authorization header.
fn basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()
}

fn unauthorized(auth: &AuthConfig) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong credentials in the Authorization header",
    );
    let challenge = if auth.basic_auth.is_some() {
        "Basic realm=\"mcpwatch-notifier\""
    } else {
        "Bearer"
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

async fn webhook(State(app): State<App>, request: Request) -> Response {
    // When it arrived: a copy that arrived before its sender had an answer is no reminder.
    let arrived = crate::time::now_ms();
    let peer = request
        .extensions()
        .get::<mcpwatch_core::web::PeerAddr>()
        .map(|peer| peer.0.ip());
    let target = format!(
        "{}{}",
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        request.uri().path_and_query().map_or("", |p| p.as_str())
    );
    let notifier = &app.notifier;
    let setup = notifier.setup();
    let receiver = &setup.config.receiver;
    let metrics = notifier.metrics();
    if let Some(auth) = &receiver.auth
        && !authorized(auth, request.headers())
    {
        metrics.rejected("unauthorized");
        return unauthorized(auth);
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        metrics.rejected("unsupported_media_type");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type must be application/json, not {:?}",
                if content_type.is_empty() {
                    "(none)"
                } else {
                    content_type
                }
            ),
        );
    }
    let limit = receiver.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        metrics.rejected("too_large");
        return too_large(limit);
    }
    let body: Bytes = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(body) => body,
        Err(e) => {
            // The limit is the only error a complete request can meet here.
            let length_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if length_limit {
                metrics.rejected("too_large");
                return too_large(limit);
            }
            // The connection broke mid-body: worth Alertmanager's retry.
            metrics.rejected("body_read");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading the body failed: {e}"),
            );
        }
    };
    // Run to the end in a task of its own: a client that hangs up drops this handler, and
    // a notification the store commits is then still counted and its dispatcher woken.
    let notifier = Arc::clone(&app.notifier);
    match tokio::spawn(accept(notifier, body, peer, target, arrived)).await {
        // The sender gets its answer (it is still there: this handler was not dropped), so
        // its next copy is a new sending, not a retry.
        Ok((response, answer)) => {
            if let Some(answer) = answer {
                // At once when the store records it in memory; in a task of its own when
                // it has to wait (a shared database), so that the answer does not.
                let notifier = Arc::clone(&app.notifier);
                let mut record = Box::pin(async move { notifier.answered(answer).await });
                if futures_util::FutureExt::now_or_never(record.as_mut()).is_none() {
                    tokio::spawn(record);
                }
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "Accepting a webhook failed; Alertmanager will retry.");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "accepting the notification failed; retry",
            )
        }
    }
}

/// Parses and stores a webhook body; the answer to give, and what to record once it is
/// given.
async fn accept(
    notifier: Arc<Notifier>,
    body: Bytes,
    peer: Option<std::net::IpAddr>,
    target: String,
    arrived: i64,
) -> (Response, Option<Answer>) {
    let metrics = notifier.metrics();
    // Checked as UTF-8 once here, so that the parser need not check each string again.
    let parsed = std::str::from_utf8(&body)
        .map_err(|_| Notification::parse(&body).err())
        .and_then(|text| Incoming::parse(text).map(|n| (text, n)).map_err(Some));
    let (text, notification) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            metrics.rejected("bad_request");
            let message = match &e {
                Some(PayloadError::Invalid(m)) => format!("invalid webhook payload: {m}"),
                Some(e @ PayloadError::Version(_)) => e.to_string(),
                None => "invalid webhook payload: body: not UTF-8".to_owned(),
            };
            tracing::warn!(error = %message, "Webhook refused.");
            return (error(StatusCode::BAD_REQUEST, message), None);
        }
    };
    let (received, answer) = match notifier
        .receive(&notification, text, peer, &target, arrived)
        .await
    {
        Ok((received, answer)) => (Ok(received), Some(answer)),
        Err(e) => (Err(e), None),
    };
    let response = match received {
        Ok(Received::Stored { id, channels }) => {
            tracing::debug!(notification = id, group_key = %notification.group_key(), ?channels, "Notification stored.");
            (
                StatusCode::OK,
                axum::Json(json!({"status": "stored", "id": id, "channels": channels})),
            )
                .into_response()
        }
        Ok(Received::Duplicate { id }) => {
            tracing::info!(notification = id, group_key = %notification.group_key(), "Duplicate notification; stored once already.");
            (
                StatusCode::OK,
                axum::Json(json!({"status": "duplicate", "id": id})),
            )
                .into_response()
        }
        Err(e) => {
            metrics.rejected("storage");
            tracing::error!(error = %e, "Storing a notification failed; Alertmanager will retry.");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the notification could not be stored: {e}"),
            )
        }
    };
    (response, answer)
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is larger than receiver.max_body_bytes ({limit} bytes); lower max_alerts in Alertmanager's webhook_config or raise the limit"
        ),
    )
}

async fn health(State(app): State<App>) -> Response {
    let notifier = &app.notifier;
    let setup = notifier.setup();
    let stats = notifier.store().stats().await;
    let uptime = notifier.started().elapsed().as_secs_f64();
    let channels: Vec<&String> = setup.channels.keys().collect();
    match stats {
        Ok(stats) => {
            let count = |state: &str| -> u64 {
                stats
                    .depth
                    .iter()
                    .filter(|(_, s, _)| s == state)
                    .map(|(_, _, n)| n)
                    .sum()
            };
            axum::Json(json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": uptime,
                "storage": "ok",
                "channels": channels,
                "queue": {"pending": count(state::PENDING), "sending": count(state::SENDING), "dead": count(state::DEAD)},
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "status": "unavailable",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": uptime,
                "storage": e.to_string(),
                "channels": channels,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    let response = mcpwatch_core::metrics_response(app.notifier.engine(), &headers).await;
    response.map(Body::new)
}

fn api_guard(app: &App, headers: &HeaderMap) -> Option<Response> {
    let setup = app.notifier.setup();
    let auth = setup.config.api.auth.as_ref()?;
    (!authorized(auth, headers)).then(|| unauthorized(auth))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    channel: Option<String>,
    receiver: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Some(s) = &query.state
        && !state::ALL.contains(&s.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("state: {s:?} is not one of {}", state::ALL.join(", ")),
        );
    }
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let filter = ListFilter {
        state: query.state,
        channel: query.channel,
        receiver: query.receiver,
        before: query.before,
        limit,
    };
    match app.notifier.store().list(filter).await {
        Ok(notifications) => {
            let next = (notifications.len() == limit)
                .then(|| notifications.last().map(|n| n.id))
                .flatten();
            axum::Json(json!({"notifications": notifications, "next_before": next})).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

type IdPath = Result<Path<i64>, axum::extract::rejection::PathRejection>;

/// The notification an `/api/v1/notifications/{id}` request names, after the API's auth;
/// else the answer: 401, 400 (not a number), 404, 503.
async fn requested(
    app: &App,
    headers: &HeaderMap,
    id: IdPath,
) -> Result<NotificationView, Response> {
    if let Some(denied) = api_guard(app, headers) {
        return Err(denied);
    }
    let Ok(Path(id)) = id else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the notification id is a number",
        ));
    };
    match app.notifier.store().get(id).await {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no notification {id}"),
        )),
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

async fn one(State(app): State<App>, headers: HeaderMap, id: IdPath) -> Response {
    match requested(&app, &headers, id).await {
        Ok(n) => axum::Json(n).into_response(),
        Err(answer) => answer,
    }
}

async fn replay(State(app): State<App>, headers: HeaderMap, id: IdPath) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Ok(Path(id)) = id else {
        return error(
            StatusCode::BAD_REQUEST,
            "the notification id is a number",
        );
    };
    let by = basic_user(&headers).unwrap_or_else(|| "the API".to_owned());
    match replay_dead_letters(&app.notifier, id, &by).await {
        Ok(n) => axum::Json(json!({"replayed": n, "id": id})).into_response(),
        Err(refused) => refused.json(),
    }
}

/// Puts a notification's dead deliveries back in the queue and wakes the dispatcher, for
/// the API and the UI alike: how many, or why none (404 unknown, 409 nothing dead).
async fn replay_dead_letters(notifier: &Notifier, id: i64, by: &str) -> Result<usize, Refused> {
    let store = notifier.store();
    if store.get(id).await?.is_none() {
        return Err(Refused::new(
            StatusCode::NOT_FOUND,
            format!("no notification {id}"),
        ));
    }
    match store.replay(id).await? {
        0 => Err(Refused::new(
            StatusCode::CONFLICT,
            format!("notification {id} has no dead delivery to replay"),
        )),
        n => {
            tracing::info!(notification = id, deliveries = n, by = %by, "Dead letters replayed.");
            notifier.wake();
            Ok(n)
        }
    }
}

async fn reload_config(State(app): State<App>) -> Response {
    let Some(hook) = &app.reload else {
        return error(StatusCode::NOT_FOUND, "reloading is not enabled");
    };
    match hook().await {
        Ok(()) => axum::Json(json!({"status": "reloaded"})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_auth() {
        use base64::Engine as _;
        let auth: AuthConfig =
            serde_json::from_value(json!({"bearer_token": "s3cret"})).expect("auth");
        let mut headers = HeaderMap::new();
        assert!(!authorized(&auth, &headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(&auth, &headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!authorized(&auth, &headers));
        let basic: AuthConfig =
            serde_json::from_value(json!({"basic_auth": {"username": "am", "password": "pw"}}))
                .expect("auth");
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("am:pw")
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&good).expect("header"),
        );
        assert!(authorized(&basic, &headers));
        assert!(!authorized(&auth, &headers));
    }
}
