//! Stand-ins for the HTTP services a notifier posts to: Slack incoming webhooks, Microsoft
//! Teams Workflows webhooks, the PagerDuty Events API v2, and a generic webhook. Each is a local HTTP server on a free
//! loopback port, in the test's tokio runtime, answering as the service's documentation says
//! it does (PagerDuty's event validation included), with scripted faults on demand, and
//! recording every request it was sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The Slack webhook path [`HttpStandIn::endpoint`] gives; the Slack stand-in accepts any.
pub const SLACK_PATH: &str = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
/// The path of PagerDuty's Events API v2.
pub const PAGERDUTY_PATH: &str = "/v2/enqueue";
/// The path [`HttpStandIn::endpoint`] gives for the generic webhook; it accepts any.
pub const WEBHOOK_PATH: &str = "/hook";
/// The path of a Teams workflow's webhook trigger (the query carries its signature).
pub const TEAMS_PATH: &str =
    "/workflows/0c5a3b0e9d8f4e21a6b7c8d9e0f1a2b3/triggers/manual/paths/invoke";
/// The largest message Teams posts: 28 KB.
pub const TEAMS_MAX_BYTES: usize = 28_000;

/// Which service a stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// A Slack incoming webhook: `200 ok`.
    Slack,
    /// PagerDuty's Events API v2 at `POST /v2/enqueue`: `202` with the event's `dedup_key`.
    PagerDuty,
    /// A generic webhook: `200 {}`.
    Webhook,
    /// A Teams Workflows webhook at [`TEAMS_PATH`] with a `sig` query parameter: `202` with
    /// no body for the documented envelope around an Adaptive Card, `400` naming what is
    /// wrong with any other body, `413` past [`TEAMS_MAX_BYTES`]. (The real workflow may
    /// take a bad card with 202 and fail in its run history; the stand-in refuses it, so
    /// that a test sees it.)
    Teams,
}

/// A scripted answer: the next request gets it instead of the normal one. Scripted answers
/// are used in the order pushed, one per request; then normal answers resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// `429 Too Many Requests` with `Retry-After: <retry_after_secs>`. Slack's body is
    /// `{"ok":false,"error":"rate_limited"}`; PagerDuty's is its "throttle event" object;
    /// Teams' is Power Automate's error object.
    RateLimited {
        /// The `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// `429 Too Many Requests` with this `Retry-After` value as it is (an HTTP date).
    RateLimitedUntil(String),
    /// This status and body; the body is sent as JSON when it parses as JSON, else as text.
    /// Slack's documented errors: `400 invalid_payload`, `400 no_text`,
    /// `404 channel_not_found`, `410 channel_is_archived`, `500 rollup_error`.
    Status(u16, String),
    /// Holds the request this long before answering it normally: a client's timeout
    /// should fire first.
    Hang(Duration),
}

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// When it arrived (its body read).
    pub at: Instant,
    /// The method.
    pub method: Method,
    /// The path, with the query if there was one.
    pub path: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// The status answered; `None` while a [`Scripted::Hang`] holds the request (and for
    /// good when the client gave up first).
    pub status: Option<u16>,
}

impl ReceivedRequest {
    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.text()))
    }
}

#[derive(Debug)]
struct Shared {
    service: Service,
    script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<ReceivedRequest>>,
}

impl Shared {
    fn record(&self, request: ReceivedRequest) -> usize {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests.push(request);
        requests.len() - 1
    }
}

/// A running stand-in on a free loopback port; it stops serving when dropped.
#[derive(Debug)]
pub struct HttpStandIn {
    address: SocketAddr,
    shared: Arc<Shared>,
    serve: JoinHandle<()>,
}

impl Drop for HttpStandIn {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

impl HttpStandIn {
    /// A Slack incoming webhook, on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn slack() -> Self {
        Self::start(Service::Slack).await
    }

    /// PagerDuty's Events API v2, on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn pagerduty() -> Self {
        Self::start(Service::PagerDuty).await
    }

    /// A Teams Workflows webhook, on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn teams() -> Self {
        Self::start(Service::Teams).await
    }

    /// A generic webhook answering `200 {}`, on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn webhook() -> Self {
        Self::start(Service::Webhook).await
    }

    /// A stand-in for `service`, on the current tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(service: Service) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            service,
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
        });
        // Bodies as large as the notifier sends (a webhook channel forwards a whole
        // Alertmanager payload), not axum's default of 2 MB.
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            shared,
            serve,
        }
    }

    /// The service it plays.
    pub fn service(&self) -> Service {
        self.shared.service
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The URL a notifier is configured with: the base URL and [`SLACK_PATH`],
    /// [`PAGERDUTY_PATH`], [`WEBHOOK_PATH`], or a Teams workflow's URL (see
    /// [`HttpStandIn::workflow_url`]) signed `sig0`.
    pub fn endpoint(&self) -> String {
        let path = match self.shared.service {
            Service::Slack => SLACK_PATH,
            Service::PagerDuty => PAGERDUTY_PATH,
            Service::Webhook => WEBHOOK_PATH,
            Service::Teams => return self.workflow_url("sig0"),
        };
        format!("{}{path}", self.url())
    }

    /// A Teams workflow's URL as Power Automate gives it, with `signature` as its `sig`.
    pub fn workflow_url(&self, signature: &str) -> String {
        format!(
            "{}{TEAMS_PATH}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={signature}",
            self.url()
        )
    }

    /// Queues a scripted answer for a coming request (see [`Scripted`]).
    pub fn push_response(&self, answer: Scripted) {
        self.shared
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(answer);
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `n` requests arrived; returns all received.
    ///
    /// # Panics
    /// When fewer arrived within `limit`.
    pub async fn wait_for_requests(&self, n: usize, limit: Duration) -> Vec<ReceivedRequest> {
        let what = format!("{n} requests to the {:?} stand-in", self.shared.service);
        crate::wait_for_async(&what, limit, || {
            let requests = self.requests();
            async move { (requests.len() >= n).then_some(requests) }
        })
        .await
    }
}

/// An answer about to be sent.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    fn into_response(self) -> Response {
        let content_type = if serde_json::from_str::<Value>(&self.body).is_ok() {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        let mut builder = Response::builder()
            .status(self.status)
            .header("content-type", content_type);
        if let Some(value) = self.retry_after {
            builder = builder.header("retry-after", value);
        }
        builder
            .body(Body::from(self.body))
            .expect("stand-in response")
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    let scripted = shared
        .script
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front();
    let mut request = ReceivedRequest {
        at,
        method,
        path,
        headers,
        body: body.to_vec(),
        status: None,
    };
    let answer = match scripted {
        Some(Scripted::Hang(duration)) => {
            let index = shared.record(request.clone());
            tokio::time::sleep(duration).await;
            let answer = normal(shared.service, &request);
            shared
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)[index]
                .status = Some(answer.status);
            return answer.into_response();
        }
        Some(Scripted::RateLimited { retry_after_secs }) => Answer {
            retry_after: Some(retry_after_secs.to_string()),
            ..rate_limited(shared.service)
        },
        Some(Scripted::RateLimitedUntil(date)) => Answer {
            retry_after: Some(date),
            ..rate_limited(shared.service)
        },
        Some(Scripted::Status(status, body)) => Answer::new(status, body),
        None => normal(shared.service, &request),
    };
    request.status = Some(answer.status);
    shared.record(request);
    answer.into_response()
}

fn rate_limited(service: Service) -> Answer {
    match service {
        Service::Slack => Answer::new(429, r#"{"ok":false,"error":"rate_limited"}"#),
        Service::PagerDuty => Answer::new(
            429,
            json!({"status": "throttle event",
                "message": "Requests for this service are arriving too quickly. Please retry later."})
            .to_string(),
        ),
        Service::Webhook => Answer::new(429, r#"{"error":"rate_limited"}"#),
        Service::Teams => teams_error(429, "TooManyRequests", "Rate limit is exceeded. Try again later."),
    }
}

/// Power Automate's error object.
fn teams_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::new(
        status,
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

fn normal(service: Service, request: &ReceivedRequest) -> Answer {
    if request.method != Method::POST {
        return Answer::new(405, "method_not_allowed");
    }
    match service {
        Service::Slack => slack(&request.body),
        Service::PagerDuty if request.path.split('?').next() == Some(PAGERDUTY_PATH) => {
            pagerduty(&request.body)
        }
        Service::PagerDuty => Answer::new(
            404,
            json!({"status": "not found", "message": "Not found"}).to_string(),
        ),
        Service::Webhook => Answer::new(200, "{}"),
        Service::Teams => teams(request),
    }
}

/// A Teams workflow's webhook trigger: signed URL, size, then the card's shape.
fn teams(request: &ReceivedRequest) -> Answer {
    let (path, query) = request
        .path
        .split_once('?')
        .unwrap_or((request.path.as_str(), ""));
    if path != TEAMS_PATH {
        return teams_error(404, "WorkflowNotFound", "The workflow could not be found.");
    }
    let signed = query
        .split('&')
        .any(|pair| pair.strip_prefix("sig=").is_some_and(|s| !s.is_empty()));
    if !signed {
        return teams_error(
            401,
            "DirectApiAuthorizationRequired",
            "The request must be authenticated: the sig query parameter is missing.",
        );
    }
    if request.body.len() > TEAMS_MAX_BYTES {
        return teams_error(
            413,
            "MessageSizeExceeded",
            &format!(
                "The message is {} bytes; Teams takes at most {TEAMS_MAX_BYTES}.",
                request.body.len()
            ),
        );
    }
    match teams_card_error(&request.body) {
        None => Answer::new(202, ""),
        Some(reason) => teams_error(400, "InvalidRequestContent", &reason),
    }
}

/// What is wrong with a Workflows webhook body, if anything: the envelope
/// `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive",
/// "content":{"type":"AdaptiveCard","version":..,"body":[..]}}]}`, elements with a `type`,
/// `Action.OpenUrl` to http(s) only, and mentions: each `msteams.entities` mention has an
/// `id` and a `name` and its `<at>…</at>` text is in the card, and each `<at>…</at>` in the
/// card has its entity.
pub fn teams_card_error(body: &[u8]) -> Option<String> {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return Some("The request body is not a JSON object.".into());
    };
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Some("Property 'type' must be 'message'.".into());
    }
    let attachments = message.get("attachments").and_then(Value::as_array);
    let [attachment] = attachments.map(Vec::as_slice).unwrap_or_default() else {
        return Some("Property 'attachments' must hold exactly one attachment.".into());
    };
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive" {
        return Some(
            "Property 'contentType' must be 'application/vnd.microsoft.card.adaptive'.".into(),
        );
    }
    let card = &attachment["content"];
    if card["type"] != "AdaptiveCard" {
        return Some("Property 'type' must be 'AdaptiveCard'.".into());
    }
    if card["version"].as_str().is_none_or(str::is_empty) {
        return Some("Property 'version' is required.".into());
    }
    let Some(elements) = card["body"].as_array() else {
        return Some("Property 'body' must be an array.".into());
    };
    let mut texts = Vec::new();
    for element in elements {
        if let Some(error) = card_element_error(element, &mut texts) {
            return Some(error);
        }
    }
    if let Some(actions) = card.get("actions") {
        let Some(actions) = actions.as_array() else {
            return Some("Property 'actions' must be an array.".into());
        };
        if let Some(error) = actions.iter().find_map(action_error) {
            return Some(error);
        }
    }
    let mut mentioned = Vec::new();
    for text in &texts {
        let mut rest = text.as_str();
        while let Some(start) = rest.find("<at>") {
            let Some(end) = rest[start..].find("</at>") else {
                return Some(format!("'<at>' without '</at>' in {text:?}."));
            };
            mentioned.push(rest[start..start + end + 5].to_owned());
            rest = &rest[start + end + 5..];
        }
    }
    let entities = card["msteams"]["entities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entity in &entities {
        let text = entity["text"].as_str().unwrap_or("");
        if entity["type"] != "mention"
            || !(text.starts_with("<at>") && text.ends_with("</at>"))
            || entity["mentioned"]["id"].as_str().is_none_or(str::is_empty)
            || entity["mentioned"]["name"].as_str().is_none()
        {
            return Some(format!("Mention entity {entity} is invalid."));
        }
        if !mentioned.iter().any(|m| m == text) {
            return Some(format!("Mention {text:?} is not in the card's text."));
        }
    }
    if let Some(orphan) = mentioned
        .iter()
        .find(|m| !entities.iter().any(|e| e["text"] == m.as_str()))
    {
        return Some(format!("{orphan:?} has no mention entity."));
    }
    None
}

/// What is wrong with one card element (and those inside it); its texts go to `texts`.
fn card_element_error(element: &Value, texts: &mut Vec<String>) -> Option<String> {
    let Some(kind) = element["type"].as_str() else {
        return Some(format!("Element {element} has no 'type'."));
    };
    match kind {
        "TextBlock" => match element["text"].as_str() {
            Some(text) => texts.push(text.to_owned()),
            None => return Some("A TextBlock needs a 'text'.".into()),
        },
        "FactSet" => {
            let Some(facts) = element["facts"].as_array() else {
                return Some("A FactSet needs 'facts'.".into());
            };
            for fact in facts {
                match (fact["title"].as_str(), fact["value"].as_str()) {
                    (Some(title), Some(value)) => {
                        texts.push(title.to_owned());
                        texts.push(value.to_owned());
                    }
                    _ => return Some("A fact needs a 'title' and a 'value'.".into()),
                }
            }
        }
        "Container" => {
            let Some(items) = element["items"].as_array() else {
                return Some("A Container needs 'items'.".into());
            };
            for item in items {
                if let Some(error) = card_element_error(item, texts) {
                    return Some(error);
                }
            }
        }
        "ActionSet" => {
            let Some(actions) = element["actions"].as_array() else {
                return Some("An ActionSet needs 'actions'.".into());
            };
            if let Some(error) = actions.iter().find_map(action_error) {
                return Some(error);
            }
        }
        "Image" | "ColumnSet" | "RichTextBlock" | "Table" => {}
        other => return Some(format!("Unknown element type '{other}'.")),
    }
    None
}

fn action_error(action: &Value) -> Option<String> {
    match action["type"].as_str() {
        Some("Action.OpenUrl") => {
            let url = action["url"].as_str().unwrap_or("");
            (!(url.starts_with("https://") || url.starts_with("http://")))
                .then(|| format!("Action.OpenUrl needs an http(s) 'url', not {url:?}."))
        }
        Some(
            "Action.ShowCard" | "Action.ToggleVisibility" | "Action.Execute" | "Action.Submit",
        ) => None,
        _ => Some(format!("Action {action} has no known 'type'.")),
    }
}

/// Slack's incoming webhook: a JSON object with a non-empty `text`, or `blocks` or
/// `attachments`; Block Kit's limits (50 blocks, 3000 characters of section text, 150 of
/// a header) are checked as Slack does.
fn slack(body: &[u8]) -> Answer {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return Answer::new(400, "invalid_payload");
    };
    let has_text = message
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty());
    let blocks = message.get("blocks");
    let has_attachments = message
        .get("attachments")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_text && blocks.is_none() && !has_attachments {
        return Answer::new(400, "no_text");
    }
    if let Some(blocks) = blocks {
        let valid = blocks.as_array().is_some_and(|blocks| {
            blocks.len() <= 50
                && blocks.iter().all(|block| {
                    let text_len = block["text"]["text"]
                        .as_str()
                        .map_or(0, |t| t.chars().count());
                    match block["type"].as_str() {
                        Some("section") => text_len <= 3000,
                        Some("header") => text_len <= 150,
                        Some(_) => true,
                        None => false,
                    }
                })
        });
        if !valid {
            return Answer::new(400, "invalid_blocks");
        }
    }
    Answer::new(200, "ok")
}

/// PagerDuty's Events API v2: validates the event as PagerDuty does.
fn pagerduty(body: &[u8]) -> Answer {
    let errors = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(event)) => pagerduty_errors(&event),
        _ => vec!["Event object is not valid JSON".to_owned()],
    };
    if !errors.is_empty() {
        return Answer::new(
            400,
            json!({"status": "invalid event", "message": "Event object is invalid",
                "errors": errors})
            .to_string(),
        );
    }
    let event: Value = serde_json::from_slice(body).unwrap_or_default();
    let dedup_key = event["dedup_key"]
        .as_str()
        .map_or_else(|| crate::random_token(""), ToOwned::to_owned);
    Answer::new(
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key})
            .to_string(),
    )
}

/// What is wrong with a PagerDuty event, in PagerDuty's words; empty when it is valid.
fn pagerduty_errors(event: &serde_json::Map<String, Value>) -> Vec<String> {
    fn text(value: Option<&Value>) -> Option<&str> {
        value.and_then(Value::as_str).map(str::trim)
    }
    let mut errors = Vec::new();
    if text(event.get("routing_key")).is_none_or(str::is_empty) {
        errors.push("'routing_key' is missing or blank".to_owned());
    }
    let action = text(event.get("event_action"));
    match action {
        Some("trigger" | "acknowledge" | "resolve") => {}
        Some(_) => errors.push(
            "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)".to_owned(),
        ),
        None => errors.push("'event_action' is missing or blank".to_owned()),
    }
    match event.get("dedup_key") {
        None | Some(Value::Null) if action.is_some_and(|a| a != "trigger") => {
            errors.push("'dedup_key' is missing or blank".to_owned());
        }
        None | Some(Value::Null) => {}
        Some(Value::String(key)) if key.trim().is_empty() => {
            errors.push("'dedup_key' is missing or blank".to_owned());
        }
        Some(Value::String(key)) if key.chars().count() > 255 => {
            errors.push("'dedup_key' is too long (maximum is 255 characters)".to_owned());
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("'dedup_key' must be a string".to_owned()),
    }
    if action == Some("trigger") {
        match event.get("payload") {
            Some(Value::Object(payload)) => {
                match text(payload.get("summary")) {
                    None | Some("") => errors.push("'payload.summary' is missing or blank".into()),
                    Some(summary) if summary.chars().count() > 1024 => errors
                        .push("'payload.summary' is too long (maximum is 1024 characters)".into()),
                    Some(_) => {}
                }
                if text(payload.get("source")).is_none_or(str::is_empty) {
                    errors.push("'payload.source' is missing or blank".to_owned());
                }
                match text(payload.get("severity")) {
                    Some("critical" | "error" | "warning" | "info") => {}
                    Some(_) => errors.push(
                        "'payload.severity' is invalid (must be one of: critical, error, \
                         warning, info)"
                            .to_owned(),
                    ),
                    None => errors.push("'payload.severity' is missing or blank".to_owned()),
                }
                if payload
                    .get("custom_details")
                    .is_some_and(|d| !d.is_object() && !d.is_null())
                {
                    errors.push("'payload.custom_details' must be an object".to_owned());
                }
            }
            _ => errors.push("'payload' is missing or not an object".to_owned()),
        }
    }
    for list in ["links", "images"] {
        if event
            .get(list)
            .is_some_and(|l| !l.is_array() && !l.is_null())
        {
            errors.push(format!("'{list}' must be an array"));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    async fn post(url: &str, body: &str) -> (u16, Option<String>, String) {
        let response = crate::http::client()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request to the stand-in");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(ToOwned::to_owned);
        (status, retry_after, response.text().await.expect("body"))
    }

    #[tokio::test]
    async fn slack_answers_ok_and_scripted_faults_in_order() {
        let slack = HttpStandIn::slack().await;
        assert!(slack.endpoint().ends_with(SLACK_PATH));
        let message = r#"{"text":"DiskFull on db1"}"#;
        assert_eq!(
            post(&slack.endpoint(), message).await,
            (200, None, "ok".to_owned())
        );
        slack.push_response(Scripted::RateLimited {
            retry_after_secs: 2,
        });
        slack.push_response(Scripted::Status(404, "channel_not_found".to_owned()));
        assert_eq!(
            post(&slack.endpoint(), message).await,
            (
                429,
                Some("2".to_owned()),
                r#"{"ok":false,"error":"rate_limited"}"#.to_owned()
            )
        );
        assert_eq!(
            post(&slack.endpoint(), message).await,
            (404, None, "channel_not_found".to_owned())
        );
        assert_eq!(post(&slack.endpoint(), message).await.0, 200);
        assert_eq!(post(&slack.url(), "not json").await.2, "invalid_payload");
        assert_eq!(post(&slack.url(), r#"{"text":" "}"#).await.2, "no_text");
        let long = json!({"blocks": [{"type": "section",
            "text": {"type": "mrkdwn", "text": "x".repeat(3001)}}]});
        assert_eq!(
            post(&slack.url(), &long.to_string()).await.2,
            "invalid_blocks"
        );

        let requests = slack.wait_for_requests(7, LIMIT).await;
        let statuses: Vec<_> = requests.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [200, 429, 404, 200, 400, 400, 400].map(Some).to_vec()
        );
        assert_eq!(requests[0].path, SLACK_PATH);
        assert_eq!(requests[0].json()["text"], "DiskFull on db1");
        assert_eq!(requests[0].header("content-type"), Some("application/json"));
        assert!(requests.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[tokio::test]
    async fn teams_takes_the_documented_card_and_explains_anything_else() {
        let teams = HttpStandIn::teams().await;
        let url = teams.workflow_url("s1gnature");
        let card = |body: Value, entities: Value| {
            json!({"type": "message", "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
                "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard", "version": "1.4", "body": body,
                    "msteams": {"entities": entities},
                    "actions": [{"type": "Action.OpenUrl", "title": "Ack", "url": "https://a.example/ack"}]}}]})
            .to_string()
        };
        let hello = json!([{"type": "TextBlock", "text": "Hi <at>Adele</at>"}]);
        let adele = json!([{"type": "mention", "text": "<at>Adele</at>",
            "mentioned": {"id": "adele@contoso.example", "name": "Adele Vance"}}]);
        assert_eq!(
            post(&url, &card(hello.clone(), adele.clone())).await,
            (202, None, String::new())
        );
        let reason = |answer: (u16, Option<String>, String)| {
            let body: Value = serde_json::from_str(&answer.2).expect("JSON error");
            (
                answer.0,
                body["error"]["message"].as_str().unwrap_or("").to_owned(),
            )
        };
        let (status, message) = reason(post(&url, &card(hello, json!([]))).await);
        assert_eq!(status, 400);
        assert!(message.contains("no mention entity"), "{message}");
        let plain = json!([{"type": "TextBlock", "text": "Hi"}]);
        let (status, message) = reason(post(&url, &card(plain.clone(), adele)).await);
        assert_eq!(status, 400);
        assert!(message.contains("is not in the card's text"), "{message}");
        let mut legacy =
            serde_json::from_str::<Value>(&card(plain.clone(), json!([]))).expect("card");
        legacy["attachments"][0]["content"]["type"] = "MessageCard".into();
        let (status, message) = reason(post(&url, &legacy.to_string()).await);
        assert_eq!(
            (status, message.as_str()),
            (400, "Property 'type' must be 'AdaptiveCard'.")
        );
        let (status, message) = reason(post(&url, r#"{"text":"hello"}"#).await);
        assert_eq!(
            (status, message.as_str()),
            (400, "Property 'type' must be 'message'.")
        );
        let huge = card(
            json!([{"type": "TextBlock", "text": "x".repeat(TEAMS_MAX_BYTES)}]),
            json!([]),
        );
        assert_eq!(post(&url, &huge).await.0, 413);
        let unsigned = url.replace("&sig=s1gnature", "");
        assert_eq!(
            post(&unsigned, &card(plain.clone(), json!([]))).await.0,
            401
        );
        teams.push_response(Scripted::RateLimited {
            retry_after_secs: 3,
        });
        let (status, retry_after, _) = post(&url, &card(plain, json!([]))).await;
        assert_eq!((status, retry_after.as_deref()), (429, Some("3")));
        let requests = teams.requests();
        assert_eq!(requests.len(), 8);
        assert!(requests[0].path.ends_with("&sig=s1gnature"));
    }

    #[tokio::test]
    async fn a_hang_outlasts_the_client_then_success_resumes() {
        let hook = HttpStandIn::webhook().await;
        hook.push_response(Scripted::Hang(Duration::from_secs(3)));
        crate::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .no_proxy()
            .build()
            .expect("client");
        let started = Instant::now();
        let hung = client.post(hook.endpoint()).body("{}").send().await;
        assert!(hung.is_err_and(|e| e.is_timeout()));
        assert!(started.elapsed() < Duration::from_secs(3));
        let requests = hook.wait_for_requests(1, LIMIT).await;
        assert_eq!(requests[0].status, None);
        assert_eq!(
            post(&hook.endpoint(), "{}").await,
            (200, None, "{}".to_owned())
        );
    }

    #[tokio::test]
    async fn pagerduty_accepts_valid_events_and_explains_invalid_ones() {
        let pagerduty = HttpStandIn::pagerduty().await;
        let url = pagerduty.endpoint();
        let trigger = json!({"routing_key": "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12",
            "event_action": "trigger", "dedup_key": "abc",
            "payload": {"summary": "DiskFull on db1", "source": "db1", "severity": "critical"}});
        let (status, _, body) = post(&url, &trigger.to_string()).await;
        assert_eq!(status, 202);
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            body,
            json!({"status": "success", "message": "Event processed", "dedup_key": "abc"})
        );

        let mut generated = trigger.clone();
        generated
            .as_object_mut()
            .expect("object")
            .remove("dedup_key");
        let (status, _, body) = post(&url, &generated.to_string()).await;
        assert_eq!(status, 202);
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert!(body["dedup_key"].as_str().is_some_and(|k| !k.is_empty()));

        let resolve = json!({"routing_key": "k", "event_action": "resolve"});
        let (status, _, body) = post(&url, &resolve.to_string()).await;
        assert_eq!(status, 400);
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["status"], "invalid event");
        assert_eq!(body["message"], "Event object is invalid");
        assert!(
            body["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains("dedup_key"))
        );

        let bad = json!({"routing_key": "", "event_action": "trigger",
            "payload": {"summary": "s", "source": "db1", "severity": "fatal"}});
        let (status, _, body) = post(&url, &bad.to_string()).await;
        assert_eq!(status, 400);
        let errors = serde_json::from_str::<Value>(&body).expect("JSON")["errors"].clone();
        assert_eq!(errors.as_array().map(Vec::len), Some(2), "{errors}");

        let ack = json!({"routing_key": "k", "event_action": "acknowledge", "dedup_key": "abc"});
        assert_eq!(post(&url, &ack.to_string()).await.0, 202);
        let elsewhere = format!("{}/v2/other", pagerduty.url());
        assert_eq!(post(&elsewhere, &ack.to_string()).await.0, 404);

        pagerduty.push_response(Scripted::RateLimited {
            retry_after_secs: 1,
        });
        let (status, retry_after, _) = post(&url, &ack.to_string()).await;
        assert_eq!((status, retry_after.as_deref()), (429, Some("1")));
        assert_eq!(pagerduty.requests().len(), 7);
    }
}
