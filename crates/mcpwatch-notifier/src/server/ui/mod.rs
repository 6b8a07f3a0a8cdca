//! The web UI under `/ui/`: server-rendered pages over what the API serves (incidents with
//! their timelines and reports, maintenance windows, dead letters, channel health, who is
//! on call) and forms for what the API does, through the same functions. No JavaScript, no
//! third-party assets.
//!
//! It sits behind the API's auth (`api.auth`, and the web configuration's basic auth in
//! front of everything). Each form carries a CSRF token: HMAC-SHA256, under `ui.csrf_secret`
//! or a random key of this process, of the form's action, the signed-in principal and when
//! it was issued. A POST without a valid token, or posted from another origin, gets 403
//! and changes nothing; a POST that worked redirects (303) to its page, so that reloading
//! the page does not post again.
//!
//! One module per family of pages; this one holds what they share: the layout, HTML
//! escaping, times, the signed-in viewer, forms and their checks.

mod channels;
mod dead_letters;
mod incidents;
mod on_call;
mod windows;

use std::fmt;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{App, Refused, api_guard, basic_user};
use crate::config::UiConfig;
use crate::time::{format_rfc3339, now_ms};

/// How long a form's token works: a page left open over a shift still posts.
const TOKEN_TTL_SECS: i64 = 12 * 3600;
/// How far in the future a token's issue time may be: another replica's clock may be
/// ahead of this one's.
const TOKEN_SKEW_SECS: i64 = 300;
/// The longest name a person may give for the record.
const MAX_NAME: usize = 100;

const STYLESHEET: &str = include_str!("ui.css");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes, each answer with the UI's security headers.
pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(incidents::list))
        .route("/ui/incidents/{id}", get(incidents::show))
        .route("/ui/incidents/{id}/ack", post(incidents::ack))
        .route("/ui/incidents/{id}/unack", post(incidents::unack))
        .route("/ui/incidents/{id}/resolve", post(incidents::resolve))
        .route("/ui/incidents/{id}/report", get(incidents::report))
        .route("/ui/windows", get(windows::list).post(windows::create))
        .route("/ui/windows/{id}/end", post(windows::end))
        .route("/ui/dead-letters", get(dead_letters::list))
        .route("/ui/dead-letters/{id}/replay", post(dead_letters::replay))
        .route("/ui/channels", get(channels::list))
        .route("/ui/schedules", get(on_call::list))
        .route("/ui/static/ui.css", get(stylesheet))
        .layer(axum::middleware::map_response(secured))
}

async fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Text made safe for HTML, in element content and in quoted attribute values alike.
#[derive(Debug, Clone, Copy)]
pub(super) struct Escaped<'a>(&'a str);

/// `text` escaped for HTML (see [`Escaped`]).
pub(super) fn escape(text: &str) -> Escaped<'_> {
    Escaped(text)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// A time as people read it on a page: UTC in ISO form, and how long ago (or how soon).
pub(super) fn time(ms: i64, now: i64) -> String {
    format!(
        "{} <span class=\"age\">({})</span>",
        utc(ms),
        relative(ms, now)
    )
}

/// A time in UTC in ISO form, to the second (the milliseconds are noise on a page).
pub(super) fn utc(ms: i64) -> String {
    let iso = format_rfc3339(ms);
    let shown = format!("{}Z", iso.get(..19).unwrap_or(&iso));
    format!("<time datetime=\"{iso}\">{shown}</time>")
}

/// An RFC 3339 time from the store or the API as [`time`] shows it; text that is not one
/// is shown as it is.
pub(super) fn time_text(text: &str, now: i64) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => time(t.as_millisecond(), now),
        Err(_) => escape(text).to_string(),
    }
}

/// Unix ms of an RFC 3339 time.
pub(super) fn millis_of(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_millisecond)
}

/// `3 min ago`, `in 2 h 5 min`, `just now`.
pub(super) fn relative(ms: i64, now: i64) -> String {
    let delta = now - ms;
    let seconds = delta.abs() / 1000;
    if seconds < 5 {
        return "just now".into();
    }
    let span = match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    };
    if delta >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// Who is signed in, as far as the UI's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Principal {
    /// A Basic-auth user (`api.auth.basic_auth`, or the web configuration's users).
    User(String),
    /// The API's bearer token.
    Token,
    /// No auth is configured: people name themselves in each form.
    Anonymous,
}

impl Principal {
    /// What its tokens are signed for.
    fn key(&self) -> String {
        match self {
            Principal::User(user) => format!("user:{user}"),
            Principal::Token => "token".into(),
            Principal::Anonymous => "anonymous".into(),
        }
    }

    /// Who its actions are recorded as; `None`: the form asks.
    fn name(&self) -> Option<&str> {
        match self {
            Principal::User(user) => Some(user),
            Principal::Token => Some("api token"),
            Principal::Anonymous => None,
        }
    }
}

/// Why a form's token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum TokenError {
    /// The form has none.
    #[error(
        "the form carries no security token (was it posted from another site?); nothing was changed"
    )]
    Missing,
    /// It was not signed here for this form and this user.
    #[error(
        "the form's security token is not valid for this form and this user (it comes from another page, another user or another notifier); nothing was changed"
    )]
    Forged,
    /// Its time has passed.
    #[error(
        "the form's security token has expired (a page's forms work for 12 hours); nothing was changed"
    )]
    Expired,
}

/// Signs and checks the tokens of the UI's forms under one key.
#[derive(Clone)]
pub(super) struct FormSigner {
    key: Vec<u8>,
}

impl fmt::Debug for FormSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormSigner").finish_non_exhaustive()
    }
}

impl FormSigner {
    /// A signer under `ui.csrf_secret`, else under this process's random key; `None` when
    /// neither is there (the system gave no random bytes).
    fn new(ui: &UiConfig) -> Option<Self> {
        let key = match ui.csrf_secret() {
            Ok(Some(secret)) => secret.expose().as_bytes().to_vec(),
            _ => process_key()?.to_vec(),
        };
        Some(Self { key })
    }

    fn mac(&self, purpose: &str, principal: &str, issued: i64) -> Vec<u8> {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return Vec::new();
        };
        // Each part's length first: no two (purpose, principal) pairs read as one text.
        mac.update(
            format!(
                "mcpwatch-ui-csrf-v1\n{}:{purpose}\n{}:{principal}\n{issued}",
                purpose.len(),
                principal.len()
            )
            .as_bytes(),
        );
        mac.finalize().into_bytes().to_vec()
    }

    /// The token of a form posting to `purpose` (its action), for `principal`, issued at
    /// `issued` (Unix s).
    pub(super) fn token(&self, purpose: &str, principal: &str, issued: i64) -> String {
        format!(
            "{issued}.{}",
            URL_SAFE_NO_PAD.encode(self.mac(purpose, principal, issued))
        )
    }

    /// Checks a posted token against the form's action and the principal posting it at
    /// `now` (Unix s): the signature first (compared in constant time), then its age.
    pub(super) fn verify(
        &self,
        token: Option<&str>,
        purpose: &str,
        principal: &str,
        now: i64,
    ) -> Result<(), TokenError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(TokenError::Missing);
        };
        let (issued, signature) = token.split_once('.').ok_or(TokenError::Forged)?;
        let issued: i64 = issued.parse().map_err(|_| TokenError::Forged)?;
        let given = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Forged)?;
        let expected = self.mac(purpose, principal, issued);
        if expected.is_empty() || !bool::from(given.ct_eq(&expected)) {
            return Err(TokenError::Forged);
        }
        if now.saturating_sub(issued) >= TOKEN_TTL_SECS || issued > now + TOKEN_SKEW_SECS {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// This process's random key, made once.
fn process_key() -> Option<&'static [u8; 32]> {
    static KEY: OnceLock<Option<[u8; 32]>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0_u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut key)
            .ok()
            .map(|()| key)
    })
    .as_ref()
}

/// Whether a POST comes from this notifier's own pages: its `Origin` names the host it was
/// sent to (or the one a proxy says it was, or the configured external URL); without an
/// `Origin`, `Sec-Fetch-Site` must not say another site. Clients that send neither (curl)
/// pass: the token still holds.
fn same_origin(headers: &HeaderMap, external_url: Option<&str>) -> Result<(), String> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map(|(_, a)| a);
        let external = external_url
            .and_then(|u| u.split_once("://"))
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest));
        let ours = [
            value("host"),
            value("x-forwarded-host").map(|h| h.split(',').next().unwrap_or(h).trim()),
            external,
        ];
        if let Some(authority) = authority
            && ours
                .iter()
                .flatten()
                .any(|host| host.eq_ignore_ascii_case(authority))
        {
            return Ok(());
        }
        return Err(format!(
            "the form was posted from {origin:?}, not from this notifier's own pages; nothing was changed"
        ));
    }
    match value("sec-fetch-site") {
        Some(site @ ("cross-site" | "same-site")) => Err(format!(
            "the form was posted from another site (Sec-Fetch-Site: {site}); nothing was changed"
        )),
        _ => Ok(()),
    }
}

/// A form body (`application/x-www-form-urlencoded`): its fields in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    /// Every `name=value` pair, decoded; a malformed escape is kept as it is.
    pub(super) fn parse(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        Form(
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(name), percent_decode(value))
                })
                .collect(),
        )
    }

    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed; `None` when empty.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pages of the main navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Incidents,
    Windows,
    DeadLetters,
    Channels,
    OnCall,
}

impl Nav {
    const ALL: [(Nav, &'static str, &'static str); 5] = [
        (Nav::Incidents, "/ui/", "Incidents"),
        (Nav::OnCall, "/ui/schedules", "On call"),
        (Nav::Windows, "/ui/windows", "Maintenance"),
        (Nav::DeadLetters, "/ui/dead-letters", "Dead letters"),
        (Nav::Channels, "/ui/channels", "Channels"),
    ];
}

/// `?done=`: what the action a page was redirected from did, from a fixed list (nothing
/// of the query is shown as it came).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

impl Done {
    fn notice(&self) -> Option<&'static str> {
        Some(match self.done.as_deref()? {
            "acknowledged" => "Acknowledged: the channels told were told who is on it.",
            "unacknowledged" => "Acknowledgement taken back: the escalation goes on.",
            "resolved" => "Resolved by hand: the channels told were told who resolved it.",
            "replayed" => "Replayed: the dead deliveries are back in the queue.",
            "window-added" => "Maintenance window added.",
            "window-ended" => "Maintenance window ended: what it held is summarized now.",
            _ => return None,
        })
    }
}

/// The query of a page, tolerating what it does not know.
pub(super) type DoneQuery =
    Result<axum::extract::Query<Done>, axum::extract::rejection::QueryRejection>;

fn done(query: DoneQuery) -> Done {
    query.map(|q| q.0).unwrap_or_default()
}

/// Who is looking, at what time, and the signer of their forms.
#[derive(Debug, Clone)]
pub(super) struct Viewer {
    principal: Principal,
    signer: FormSigner,
    now: i64,
    /// Whether `/status` is served (`status_page`): the navigation links to it.
    status_page: bool,
}

impl Viewer {
    /// Now, Unix ms.
    pub(super) fn now(&self) -> i64 {
        self.now
    }

    /// A page in the layout: `body` is HTML made by the caller (everything in it escaped).
    pub(super) fn page(
        &self,
        status: StatusCode,
        nav: Option<Nav>,
        title: &str,
        notice: Option<&str>,
        body: &str,
    ) -> Response {
        let mut links = String::new();
        for (item, href, label) in Nav::ALL {
            let current = if nav == Some(item) {
                " aria-current=\"page\""
            } else {
                ""
            };
            links.push_str(&format!(
                "<li><a href=\"{href}\"{current}>{label}</a></li>"
            ));
        }
        if self.status_page {
            links.push_str("<li><a href=\"/status\">Status page</a></li>");
        }
        let who = match self.principal.name() {
            Some(name) => format!("Signed in as <strong>{}</strong>", escape(name)),
            None => "No sign-in configured: forms ask for your name".to_owned(),
        };
        let notice = notice
            .map(|n| format!("<p class=\"notice\" role=\"status\">{}</p>", escape(n)))
            .unwrap_or_default();
        html(
            status,
            &format!(
                "<header class=\"top\"><a class=\"brand\" href=\"/ui/\">mcpwatch-notifier</a>\
                 <nav aria-label=\"Main\"><ul>{links}</ul></nav><p class=\"who\">{who}</p></header>\
                 <main>{notice}<h1>{}</h1>{body}</main>\
                 <footer><p>mcpwatch-notifier {} · times in UTC</p></footer>",
                escape(title),
                env!("CARGO_PKG_VERSION")
            ),
            title,
        )
    }

    /// A page that could not be made (the store failed, nothing has that id).
    pub(super) fn unavailable(&self, refused: &Refused, nav: Option<Nav>, title: &str) -> Response {
        self.page(
            refused.status,
            nav,
            title,
            None,
            &format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                escape(&refused.message)
            ),
        )
    }

    /// The page of an action that changed nothing, with a way back.
    pub(super) fn refused(&self, refused: &Refused, back: &str) -> Response {
        self.page(
            refused.status,
            None,
            "Nothing was changed",
            None,
            &format!(
                "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"{}\">Back</a></p>",
                escape(&refused.message),
                escape(back)
            ),
        )
    }

    /// A form posting to `action`: `fields` (HTML), the CSRF token, a name field when no
    /// sign-in tells who acts, and a button labelled `button`.
    pub(super) fn form(&self, action: &str, class: &str, fields: &str, button: &str) -> String {
        let token = self
            .signer
            .token(action, &self.principal.key(), self.now / 1000);
        let name = if self.principal.name().is_some() {
            String::new()
        } else {
            format!(
                "<label class=\"by\">Your name <input name=\"by\" required maxlength=\"{MAX_NAME}\" autocomplete=\"name\"></label>"
            )
        };
        format!(
            "<form method=\"post\" action=\"{}\" class=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{fields}{name}<button type=\"submit\">{}</button></form>",
            escape(action),
            escape(class),
            escape(&token),
            escape(button)
        )
    }
}

/// A whole HTML document.
fn html(status: StatusCode, body: &str, title: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · mcpwatch-notifier</title><link rel=\"stylesheet\" href=\"/ui/static/ui.css\">\
             </head><body>{body}</body></html>",
            escape(title)
        ),
    )
        .into_response()
}

/// A plain page outside the layout (no one is signed in to show it to).
fn bare(status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        &format!(
            "<main><h1>{}</h1><p class=\"error\" role=\"alert\">{}</p></main>",
            escape(title),
            escape(message)
        ),
        title,
    )
}

/// The viewer of a request after the API's auth; else the answer: 401 with the API's
/// challenge (Basic makes a browser ask), or 503 when no form key can be had.
pub(super) fn sign_in(app: &App, headers: &HeaderMap) -> Result<Viewer, Box<Response>> {
    if let Some(denied) = api_guard(app, headers) {
        let mut page = bare(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "This page needs the notifier's API credentials (api.auth).",
        );
        if let Some(challenge) = denied.headers().get(header::WWW_AUTHENTICATE) {
            page.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge.clone());
        }
        return Err(Box::new(page));
    }
    let setup = app.notifier.setup();
    let principal = match basic_user(headers) {
        Some(user) => Principal::User(user),
        // The API's auth let it in without a user: its token.
        None if setup.config.api.auth.is_some() => Principal::Token,
        None => Principal::Anonymous,
    };
    let Some(signer) = FormSigner::new(&setup.config.ui) else {
        return Err(Box::new(bare(
            StatusCode::SERVICE_UNAVAILABLE,
            "No form key",
            "The system gave no random bytes for the forms' key: set ui.csrf_secret.",
        )));
    };
    Ok(Viewer {
        principal,
        signer,
        now: now_ms(),
        status_page: setup.config.status_page.is_some(),
    })
}

/// A form posted to `action`, checked: the API's auth, then its origin, then its token.
#[derive(Debug)]
pub(super) struct Submission {
    /// Who posted it.
    pub(super) viewer: Viewer,
    /// Who the action is recorded as: the Basic-auth user, `api token`, or the name given.
    pub(super) by: String,
    /// Its fields.
    pub(super) form: Form,
}

/// Checks a POST to `action` (the path its form was signed for); the answer when it is
/// refused: 401, 403 (another origin, a missing, forged or expired token), 400 (no name).
pub(super) fn submission(
    app: &App,
    headers: &HeaderMap,
    action: &str,
    body: &Bytes,
) -> Result<Submission, Box<Response>> {
    let viewer = sign_in(app, headers)?;
    let setup = app.notifier.setup();
    let external = setup.links.as_ref().map(|l| l.base.as_str());
    let form = Form::parse(body);
    let checked = same_origin(headers, external).and_then(|()| {
        viewer
            .signer
            .verify(
                form.get("csrf"),
                action,
                &viewer.principal.key(),
                viewer.now / 1000,
            )
            .map_err(|e| e.to_string())
    });
    if let Err(message) = checked {
        tracing::warn!(action, error = %message, "A form post was refused.");
        return Err(Box::new(viewer.refused(
            &Refused::new(StatusCode::FORBIDDEN, message),
            "/ui/",
        )));
    }
    let by = match viewer.principal.name() {
        Some(name) => name.to_owned(),
        None => match form.text("by") {
            Some(name) => name.chars().take(MAX_NAME).collect(),
            None => {
                return Err(Box::new(viewer.refused(
                    &Refused::new(
                        StatusCode::BAD_REQUEST,
                        "Your name is required: it is recorded with what you do.",
                    ),
                    "/ui/",
                )));
            }
        },
    };
    Ok(Submission { viewer, by, form })
}

/// After a POST that worked: to the page, with what was done.
pub(super) fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> FormSigner {
        FormSigner {
            key: key.as_bytes().to_vec(),
        }
    }

    #[test]
    fn escaping_covers_content_and_attributes() {
        assert_eq!(
            escape("<script>alert(\"1\")</script> & 'x'").to_string(),
            "&lt;script&gt;alert(&quot;1&quot;)&lt;/script&gt; &amp; &#39;x&#39;"
        );
        assert_eq!(escape("plain ünïcode").to_string(), "plain ünïcode");
        assert_eq!(escape("").to_string(), "");
    }

    #[test]
    fn a_token_holds_for_its_form_and_principal_until_it_expires() {
        let s = signer("0123456789abcdef-key");
        let token = s.token("/ui/incidents/4/ack", "user:alice", 1_000);
        assert_eq!(
            s.verify(Some(&token), "/ui/incidents/4/ack", "user:alice", 1_000),
            Ok(())
        );
        assert_eq!(
            s.verify(
                Some(&token),
                "/ui/incidents/4/ack",
                "user:alice",
                1_000 + TOKEN_TTL_SECS - 1
            ),
            Ok(())
        );
        let refused = |token: Option<&str>, purpose: &str, principal: &str, now: i64| {
            s.verify(token, purpose, principal, now)
                .expect_err("refused")
        };
        assert_eq!(
            refused(
                Some(&token),
                "/ui/incidents/4/ack",
                "user:alice",
                1_000 + TOKEN_TTL_SECS
            ),
            TokenError::Expired
        );
        assert_eq!(
            refused(Some(&token), "/ui/incidents/4/ack", "user:bob", 1_000),
            TokenError::Forged
        );
        assert_eq!(
            refused(Some(&token), "/ui/incidents/5/ack", "user:alice", 1_000),
            TokenError::Forged
        );
        assert_eq!(
            refused(None, "/ui/incidents/4/ack", "user:alice", 1_000),
            TokenError::Missing
        );
        assert_eq!(
            refused(Some(" "), "/ui/incidents/4/ack", "user:alice", 1_000),
            TokenError::Missing
        );
        // Its issue time moved: the signature no longer holds.
        let moved = token.replacen("1000.", "99999.", 1);
        assert_eq!(
            refused(Some(&moved), "/ui/incidents/4/ack", "user:alice", 1_000),
            TokenError::Forged
        );
        // Signed under another key, or too far in the future.
        let other = signer("another-key-0123456").token("/ui/incidents/4/ack", "user:alice", 1_000);
        assert_eq!(
            refused(Some(&other), "/ui/incidents/4/ack", "user:alice", 1_000),
            TokenError::Forged
        );
        let ahead = s.token("/ui/", "token", 1_000 + TOKEN_SKEW_SECS + 1);
        assert_eq!(refused(Some(&ahead), "/ui/", "token", 1_000), TokenError::Expired);
        for junk in ["abc", "1.!!", ".", "x.y"] {
            assert_eq!(
                refused(Some(junk), "/ui/", "token", 1_000),
                TokenError::Forged
            );
        }
        // Parts cannot be shifted from the purpose into the principal.
        let a = s.token("/a", "b:c", 1);
        assert_eq!(refused(Some(&a), "/a\n3:b", "c", 1), TokenError::Forged);
        assert!(!format!("{s:?}").contains("0123456789"));
    }

    #[test]
    fn only_this_sites_posts_pass() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(v).expect("value"),
                );
            }
            h
        };
        let host = ("host", "127.0.0.1:9811");
        assert!(same_origin(&headers(&[host, ("origin", "http://127.0.0.1:9811")]), None).is_ok());
        assert!(same_origin(&headers(&[host]), None).is_ok());
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "same-origin")]), None).is_ok());
        for bad in [
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://127.0.0.1:9812")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
        ] {
            assert!(same_origin(&headers(&bad), None).is_err(), "{bad:?}");
        }
        // Behind a proxy: the host it was sent to, or the external URL.
        assert!(
            same_origin(
                &headers(&[
                    host,
                    ("origin", "https://oncall.example.com"),
                    ("x-forwarded-host", "oncall.example.com")
                ]),
                None
            )
            .is_ok()
        );
        assert!(
            same_origin(
                &headers(&[host, ("origin", "https://oncall.example.com")]),
                Some("https://oncall.example.com/notifier")
            )
            .is_ok()
        );
    }

    #[test]
    fn forms_are_decoded() {
        let form = Form::parse(b"csrf=1.ab-_&by=Bob+Smith%21&matchers=a%3D%22b%22%0D%0Ac%3D~%22d%22&x=%4&empty=");
        assert_eq!(form.get("by"), Some("Bob Smith!"));
        assert_eq!(form.get("matchers"), Some("a=\"b\"\r\nc=~\"d\""));
        assert_eq!(form.get("x"), Some("%4"));
        assert_eq!(form.text("empty"), None);
        assert_eq!(form.get("missing"), None);
        assert_eq!(Form::parse(b"a=%").get("a"), Some("%"));
        assert_eq!(Form::parse(b"a=%e2%9c%93").get("a"), Some("✓"));
    }

    #[test]
    fn times_read_in_utc_with_their_age() {
        let shown = time(1_795_316_400_000, 1_795_316_580_000);
        assert!(shown.contains(">2026-11-22T03:00:00Z</time>"), "{shown}");
        assert!(shown.contains("(3 min ago)"), "{shown}");
        assert_eq!(relative(0, 2_000), "just now");
        assert_eq!(relative(0, 45_000), "45 s ago");
        assert_eq!(relative(0, 3_900_000), "1 h 5 min ago");
        assert_eq!(relative(0, 2 * 86_400_000 + 3_600_000), "2 d 1 h ago");
        assert_eq!(relative(600_000, 0), "in 10 min");
        assert_eq!(time_text("<b>", 0), "&lt;b&gt;");
    }
}
