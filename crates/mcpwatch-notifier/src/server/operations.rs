//! The admin API of escalation and maintenance: `/api/v1/incidents` (list, one, ack and
//! unack, by the API's credentials or by a signed link; resolve, timeline, report) and
//! `/api/v1/windows` (list, add a one-off window, end one).
//!
//! A signed link is checked before anything else: a forged, altered or expired one is
//! refused with 403, and one made before the incident was last acknowledged or taken back
//! (a replay) too; none of them changes anything. Following a link (GET) only shows a page
//! with a button: the acknowledgement itself is a POST, so that mail scanners and chat
//! previews that fetch links acknowledge nothing.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ui::{Form, escape};
use super::{App, IdPath, Refused, api_guard, basic_user, error};
use crate::ack::{Action, LinkError};
use crate::incident::{AckAction, AckRefused, AckRequest, IncidentView};
use crate::maintenance::{NewWindow, WindowRow, WindowView};
use crate::matcher::Matcher;
use crate::notifier::Notifier;
use crate::time::now_ms;
use crate::timeline::Entry;

/// The longest one-off window the API takes.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);

#[derive(Debug, Deserialize)]
pub(super) struct IncidentsQuery {
    state: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn incidents(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<IncidentsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let open_only = match query.state.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state: {other:?} is not one of open, all"),
            );
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    match app.notifier.store().incidents(open_only, limit).await {
        Ok(list) => axum::Json(json!({ "incidents": list })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub(super) async fn incident(State(app): State<App>, headers: HeaderMap, id: IdPath) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "the incident id is a number");
    };
    match app.notifier.store().incident(id).await {
        Ok(Some(incident)) => axum::Json(incident).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The query of a signed link.
#[derive(Debug, Default, Deserialize)]
pub(super) struct LinkQuery {
    generation: Option<String>,
    expires: Option<String>,
    sig: Option<String>,
}

impl LinkQuery {
    fn present(&self) -> bool {
        self.sig.is_some() || self.expires.is_some() || self.generation.is_some()
    }
}

fn forbidden(message: impl Into<String>) -> Response {
    error(StatusCode::FORBIDDEN, message)
}

/// Checks a signed link; its generation when it holds, else why it is refused (a 403).
fn check_link(app: &App, action: Action, id: i64, link: &LinkQuery) -> Result<i64, String> {
    let setup = app.notifier.setup();
    let Some(links) = &setup.links else {
        return Err(
            "acknowledgement links are not enabled (set acknowledgement in the configuration)"
                .into(),
        );
    };
    let number = |v: &Option<String>| v.as_deref().and_then(|v| v.trim().parse::<i64>().ok());
    let (Some(generation), Some(expires), Some(sig)) =
        (number(&link.generation), number(&link.expires), &link.sig)
    else {
        return Err("the link is incomplete: generation, expires and sig are required".into());
    };
    match links
        .signer
        .verify(action, id, generation, expires, sig, now_ms() / 1000)
    {
        Ok(()) => Ok(generation),
        Err(e @ (LinkError::Forged | LinkError::Expired)) => {
            tracing::warn!(incident = id, action = action.as_str(), error = %e, "An acknowledgement link was refused.");
            Err(e.to_string())
        }
    }
}

/// `by` from a JSON or form body, if any.
fn by_from_body(body: &Bytes) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        return value.get("by")?.as_str().map(str::to_owned);
    }
    Form::parse(body).get("by").map(str::to_owned)
}

/// Who acts: the `by` given (trimmed, at most 100 characters), else the Basic-auth user,
/// else how it came. A `by` other than the Basic-auth user that let the request in names
/// that user too (`alice (as oncall)`): a name typed into a request is a claim, the user
/// is checked.
fn who(app: &App, body: &Bytes, headers: &HeaderMap, link: bool) -> String {
    let given = by_from_body(body)
        .map(|b| b.trim().chars().take(100).collect::<String>())
        .filter(|b| !b.is_empty());
    // Only a user the API's auth checked (a link is let in without looking at it).
    let checked = app
        .notifier
        .setup()
        .config
        .api
        .auth
        .as_ref()
        .is_some_and(|auth| auth.basic_auth.is_some());
    let user = basic_user(headers);
    match (given, user) {
        (Some(by), Some(user)) if checked && !link && by != user => format!("{by} (as {user})"),
        (Some(by), _) => by,
        (None, Some(user)) => user,
        (None, None) => if link {
            "an acknowledgement link"
        } else {
            "the API"
        }
        .to_owned(),
    }
}

async fn act(
    app: App,
    headers: HeaderMap,
    id: IdPath,
    link: LinkQuery,
    body: Bytes,
    action: Action,
) -> Response {
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "the incident id is a number");
    };
    // A link is its own credential; without one, the API's.
    let generation = if link.present() {
        match check_link(&app, action, id, &link) {
            Ok(g) => Some(g),
            Err(refused) => return forbidden(refused),
        }
    } else {
        if let Some(denied) = api_guard(&app, &headers) {
            return denied;
        }
        None
    };
    let request = AckRequest {
        action: match action {
            Action::Ack => AckAction::Ack,
            Action::Unack => AckAction::Unack,
        },
        by: who(&app, &body, &headers, generation.is_some()),
        generation,
        now: now_ms(),
    };
    match acknowledge(&app.notifier, id, request).await {
        Ok(incident) => axum::Json(json!({ "incident": incident })).into_response(),
        Err(refused) => refused.json(),
    }
}

/// Acknowledges an incident or takes the acknowledgement back, for the API and the UI
/// alike: the incident after, or why nothing changed (404, 403 a replayed link, 409).
pub(super) async fn acknowledge(
    notifier: &Notifier,
    id: i64,
    request: AckRequest,
) -> Result<IncidentView, Refused> {
    match notifier.acknowledge(id, request).await? {
        Ok(incident) => Ok(incident),
        Err(refused @ AckRefused::NotFound(_)) => {
            Err(Refused::new(StatusCode::NOT_FOUND, refused.to_string()))
        }
        Err(refused @ AckRefused::Replayed) => {
            Err(Refused::new(StatusCode::FORBIDDEN, refused.to_string()))
        }
        Err(refused) => Err(Refused::new(StatusCode::CONFLICT, refused.to_string())),
    }
}

/// Resolves an incident by hand, by the API's credentials (no link resolves).
pub(super) async fn resolve_by_hand(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    body: Bytes,
) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "the incident id is a number");
    };
    match resolve(&app.notifier, id, who(&app, &body, &headers, false)).await {
        Ok(incident) => axum::Json(json!({ "incident": incident })).into_response(),
        Err(refused) => refused.json(),
    }
}

/// Resolves an incident by hand, for the API and the UI alike: the incident after, or why
/// nothing changed (404, 409 resolved already).
pub(super) async fn resolve(notifier: &Notifier, id: i64, by: String) -> Result<IncidentView, Refused> {
    match notifier.resolve(id, by).await? {
        Ok(incident) => Ok(incident),
        Err(refused @ AckRefused::NotFound(_)) => {
            Err(Refused::new(StatusCode::NOT_FOUND, refused.to_string()))
        }
        Err(refused) => Err(Refused::new(StatusCode::CONFLICT, refused.to_string())),
    }
}

/// An incident and its timeline, for the API and the UI alike (404 when there is none).
pub(super) async fn incident_with_timeline(
    notifier: &Notifier,
    id: i64,
) -> Result<(IncidentView, Vec<Entry>), Refused> {
    let store = notifier.store();
    let incident = store
        .incident(id)
        .await?
        .ok_or_else(|| Refused::new(StatusCode::NOT_FOUND, format!("no incident {id}")))?;
    let timeline = store.timeline(id).await?;
    Ok((incident, timeline))
}

pub(super) async fn timeline(State(app): State<App>, headers: HeaderMap, id: IdPath) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "the incident id is a number");
    };
    match incident_with_timeline(&app.notifier, id).await {
        Ok((incident, timeline)) => {
            axum::Json(json!({ "incident": incident, "timeline": timeline })).into_response()
        }
        Err(refused) => refused.json(),
    }
}

/// The post-incident report, in Markdown, as a download.
pub(super) async fn report(State(app): State<App>, headers: HeaderMap, id: IdPath) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "the incident id is a number");
    };
    match report_download(&app.notifier, id).await {
        Ok(download) => download,
        Err(refused) => refused.json(),
    }
}

/// The post-incident report of incident `id` as a Markdown download, for the API and the
/// UI alike; 404 when there is none.
pub(super) async fn report_download(notifier: &Notifier, id: i64) -> Result<Response, Refused> {
    let (incident, timeline) = incident_with_timeline(notifier, id).await?;
    let text = crate::report::markdown(&incident, &timeline, now_ms());
    Ok((
        [
            (header::CONTENT_TYPE, "text/markdown; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"incident-{id}.md\""),
            ),
        ],
        text,
    )
        .into_response())
}

pub(super) async fn ack(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    Query(link): Query<LinkQuery>,
    body: Bytes,
) -> Response {
    act(app, headers, id, link, body, Action::Ack).await
}

pub(super) async fn unack(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    Query(link): Query<LinkQuery>,
    body: Bytes,
) -> Response {
    act(app, headers, id, link, body, Action::Unack).await
}

/// A followed link: a page with a button that POSTs it (nothing changes on GET).
pub(super) async fn link_page(
    State(app): State<App>,
    id: IdPath,
    uri: axum::http::Uri,
    Query(link): Query<LinkQuery>,
) -> Response {
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "the incident id is a number");
    };
    let action = if uri.path().ends_with("/unack") {
        Action::Unack
    } else {
        Action::Ack
    };
    if let Err(refused) = check_link(&app, action, id, &link) {
        return forbidden(refused);
    }
    let (verb, button) = match action {
        Action::Ack => ("Acknowledge", "Acknowledge: I am on it"),
        Action::Unack => ("Take back the acknowledgement of", "Take back"),
    };
    let target = uri.to_string();
    let target = escape(&target);
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{verb} incident {id}</title></head>\
         <body style=\"font-family: sans-serif\"><h1>{verb} incident {id}</h1>\
         <form method=\"post\" action=\"{target}\"><p><label>Your name: <input name=\"by\" maxlength=\"100\"></label></p>\
         <p><button type=\"submit\">{button}</button></p></form></body></html>"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

pub(super) async fn windows(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    match window_views(&app.notifier, now_ms()).await {
        Ok(list) => axum::Json(json!({ "windows": list })).into_response(),
        Err(refused) => refused.json(),
    }
}

/// The configured windows (on now or not) and the one-off ones that end after a day ago,
/// each with the notifications it holds: what the API lists and the UI shows.
pub(super) async fn window_views(notifier: &Notifier, now: i64) -> Result<Vec<WindowView>, Refused> {
    let store = notifier.store();
    let held = store.held().await?;
    let held_by = |key: &str| held.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
    let one_off = store.windows(now.saturating_sub(86_400_000)).await?;
    let setup = notifier.setup();
    let mut list: Vec<WindowView> = setup
        .recurring
        .iter()
        .map(|w| WindowView::recurring(w, now, held_by(&w.name)))
        .collect();
    list.extend(
        one_off
            .iter()
            .map(|row| WindowView::one_off(row, now, held_by(&row.key()))),
    );
    Ok(list)
}

/// `POST /api/v1/windows`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WindowRequest {
    /// RFC 3339; now when absent.
    pub(super) starts_at: Option<String>,
    /// RFC 3339.
    pub(super) ends_at: Option<String>,
    /// Or how long (`2h`).
    pub(super) duration: Option<String>,
    /// Alertmanager matchers; every alert when empty.
    #[serde(default)]
    pub(super) matchers: Vec<String>,
    /// Who adds it.
    pub(super) author: Option<String>,
    /// Why.
    pub(super) reason: Option<String>,
    /// Hold critical alerts too.
    #[serde(default)]
    pub(super) hold_critical: bool,
}

fn timestamp(field: &str, text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{field}: {text:?} is not an RFC 3339 time: {e}"))
}

impl WindowRequest {
    pub(super) fn check(self, now: i64) -> Result<NewWindow, String> {
        let text = |field: &str, value: Option<String>| {
            value
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{field}: required (who adds the window, and why)"))
        };
        let author = text("author", self.author)?;
        let reason = text("reason", self.reason)?;
        for (i, m) in self.matchers.iter().enumerate() {
            Matcher::parse(m).map_err(|e| format!("matchers[{i}]: {e}"))?;
        }
        let starts_at = match &self.starts_at {
            Some(t) => timestamp("starts_at", t)?,
            None => now,
        };
        let ends_at = match (&self.ends_at, &self.duration) {
            (Some(_), Some(_)) => return Err("give ends_at or duration, not both".into()),
            (None, None) => return Err("ends_at or duration: required".into()),
            (Some(t), None) => timestamp("ends_at", t)?,
            (None, Some(d)) => {
                let d = mcpwatch_core::config::parse_duration(d)
                    .map_err(|e| format!("duration: {e}"))?;
                starts_at.saturating_add(crate::time::millis(d))
            }
        };
        if ends_at <= starts_at {
            return Err("ends_at: must be after starts_at".into());
        }
        if ends_at <= now {
            return Err("ends_at: the window would be over already".into());
        }
        if ends_at - starts_at > crate::time::millis(MAX_WINDOW) {
            return Err("the window is longer than 31 days; use maintenance_windows in the configuration for a recurring one".into());
        }
        Ok(NewWindow {
            starts_at,
            ends_at,
            matchers: self.matchers,
            author: author.chars().take(200).collect(),
            reason: reason.chars().take(1000).collect(),
            hold_critical: self.hold_critical,
            created_at: now,
        })
    }
}

pub(super) async fn add_window(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let request: WindowRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid window: {e}")),
    };
    let now = now_ms();
    match create_window(&app.notifier, request, now).await {
        Ok(row) => (
            StatusCode::CREATED,
            axum::Json(json!({ "window": WindowView::one_off(&row, now, 0) })),
        )
            .into_response(),
        Err(refused) => refused.json(),
    }
}

/// Checks and stores a one-off window and puts it in force, for the API and the UI alike;
/// 400 naming the field at fault.
pub(super) async fn create_window(
    notifier: &Notifier,
    request: WindowRequest,
    now: i64,
) -> Result<WindowRow, Refused> {
    let window = request
        .check(now)
        .map_err(|e| Refused::new(StatusCode::BAD_REQUEST, format!("invalid window: {e}")))?;
    let row = notifier.store().add_window(window).await?;
    tracing::info!(
        window = %row.key(),
        author = %row.window.author,
        reason = %row.window.reason,
        "A maintenance window was added."
    );
    refresh_windows(notifier).await;
    Ok(row)
}

async fn refresh_windows(notifier: &Notifier) {
    if let Err(e) = notifier.refresh_windows().await {
        tracing::warn!(error = %e, "Reading the maintenance windows failed.");
    }
}

pub(super) async fn end_window(State(app): State<App>, headers: HeaderMap, id: IdPath) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "the window id is a number");
    };
    let by = basic_user(&headers).unwrap_or_else(|| "the API".to_owned());
    let now = now_ms();
    match finish_window(&app.notifier, id, &by, now).await {
        Ok(row) => axum::Json(json!({ "window": WindowView::one_off(&row, now, 0) })).into_response(),
        Err(refused) => refused.json(),
    }
}

/// Ends a one-off window at `now` (one ended already stays as it is), for the API and the
/// UI alike; 404 when there is none.
pub(super) async fn finish_window(
    notifier: &Notifier,
    id: i64,
    by: &str,
    now: i64,
) -> Result<WindowRow, Refused> {
    let row = notifier
        .store()
        .end_window(id, now)
        .await?
        .ok_or_else(|| Refused::new(StatusCode::NOT_FOUND, format!("no window {id}")))?;
    tracing::info!(window = %row.key(), by = %by, "A maintenance window was ended.");
    refresh_windows(notifier).await;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_who_acknowledges() {
        assert_eq!(
            by_from_body(&Bytes::from_static(b"{\"by\":\"alice\"}")),
            Some("alice".into())
        );
        assert_eq!(
            by_from_body(&Bytes::from_static(b"by=Bob+Smith%21")),
            Some("Bob Smith!".into())
        );
        assert_eq!(
            by_from_body(&Bytes::from_static(b"by=%4")),
            Some("%4".into())
        );
        assert_eq!(by_from_body(&Bytes::new()), None);
    }

    #[test]
    fn a_window_request_is_checked() {
        let request = |json: &str| {
            serde_json::from_str::<WindowRequest>(json)
                .map_err(|e| e.to_string())
                .and_then(|r| r.check(1_000_000))
        };
        let ok = request(
            r#"{"duration":"1h","author":"ops","reason":"upgrade","matchers":["service=\"mcp\""]}"#,
        )
        .expect("window");
        assert_eq!((ok.starts_at, ok.ends_at), (1_000_000, 4_600_000));
        assert!(
            request(r#"{"duration":"1h","reason":"x"}"#)
                .expect_err("refused")
                .contains("author")
        );
        assert!(
            request(r#"{"duration":"1h","author":"a","reason":"x","matchers":["bad"]}"#)
                .expect_err("refused")
                .contains("matchers[0]")
        );
        assert!(
            request(r#"{"author":"a","reason":"x"}"#)
                .expect_err("refused")
                .contains("duration")
        );
        assert!(
            request(r#"{"ends_at":"1970-01-01T00:00:01Z","author":"a","reason":"x"}"#)
                .expect_err("refused")
                .contains("ends_at")
        );
        assert!(request(r#"{"duration":"1h","author":"a","reason":"x","colour":1}"#).is_err());
    }
}
