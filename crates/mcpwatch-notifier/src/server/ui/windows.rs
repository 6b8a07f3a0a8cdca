//! Maintenance windows (`/ui/windows`): the one-off windows on now or to come, with an
//! "End now" button each, those ended within a day, the configured recurring ones, and a
//! form to add a one-off window.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{
    DoneQuery, Form, Nav, Viewer, done, escape, millis_of, see_other, sign_in, submission,
    time_text,
};
use crate::maintenance::WindowView;
use crate::server::operations::{self, WindowRequest};
use crate::server::{App, IdPath};

fn matchers(window: &WindowView) -> String {
    if window.matchers.is_empty() {
        return "<span class=\"muted\">every alert</span>".into();
    }
    let items: String = window
        .matchers
        .iter()
        .map(|m| format!("<li><code>{}</code></li>", escape(m)))
        .collect();
    format!("<ul class=\"matchers\">{items}</ul>")
}

fn one_off_row(viewer: &Viewer, window: &WindowView, with_end: bool) -> String {
    let now = viewer.now();
    let time = |t: &Option<String>| t.as_deref().map(|t| time_text(t, now)).unwrap_or_default();
    let state = if window.active {
        "<span class=\"badge state-open\">on now</span>"
    } else if with_end {
        "<span class=\"badge state-acknowledged\">to come</span>"
    } else {
        "<span class=\"badge state-resolved\">ended</span>"
    };
    let end = match window.id {
        Some(id) if with_end => viewer.form(&format!("/ui/windows/{id}/end"), "action", "", "End now"),
        _ => String::new(),
    };
    format!(
        "<tr id=\"window-{}\"><td>{}<br>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}<br><span class=\"muted\">by {}</span></td><td>{}{}</td><td>{end}</td></tr>",
        window.id.unwrap_or_default(),
        escape(&window.key),
        time(&window.starts_at),
        time(&window.ends_at),
        matchers(window),
        escape(window.reason.as_deref().unwrap_or("")),
        escape(window.author.as_deref().unwrap_or("")),
        window.held_notifications,
        if window.hold_critical { "<br><span class=\"muted\">critical held too</span>" } else { "" },
    )
}

fn one_off_table(viewer: &Viewer, windows: &[&WindowView], with_end: bool) -> String {
    let rows: String = windows
        .iter()
        .map(|w| one_off_row(viewer, w, with_end))
        .collect();
    format!(
        "<div class=\"table\"><table><thead><tr><th scope=\"col\">Window</th><th scope=\"col\">Starts</th><th scope=\"col\">Ends</th>\
         <th scope=\"col\">Holds</th><th scope=\"col\">Reason</th><th scope=\"col\">Held notifications</th><th scope=\"col\"></th></tr></thead>\
         <tbody>{rows}</tbody></table></div>"
    )
}

fn recurring_table(windows: &[&WindowView]) -> String {
    let rows: String = windows
        .iter()
        .map(|w| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                escape(&w.key),
                if w.active {
                    "<span class=\"badge state-open\">on now</span>"
                } else {
                    "<span class=\"muted\">off</span>"
                },
                matchers(w),
                w.held_notifications,
                if w.hold_critical {
                    "<br><span class=\"muted\">critical held too</span>"
                } else {
                    ""
                },
            )
        })
        .collect();
    format!(
        "<div class=\"table\"><table><thead><tr><th scope=\"col\">Window</th><th scope=\"col\">Now</th>\
         <th scope=\"col\">Holds</th><th scope=\"col\">Held notifications</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

/// The form to add a window, with what was posted when it was refused.
fn add_form(viewer: &Viewer, posted: &Form) -> String {
    let value = |name: &str| escape(posted.get(name).unwrap_or("")).to_string();
    let checked = if posted.get("hold_critical").is_some() {
        " checked"
    } else {
        ""
    };
    let fields = format!(
        "<label>Start (UTC) <input name=\"starts_at\" value=\"{}\" placeholder=\"now\" inputmode=\"numeric\">\
         <small>Empty: now. <code>2026-11-22 02:00</code> or RFC 3339.</small></label>\
         <label>Duration <input name=\"duration\" value=\"{}\" placeholder=\"2h\"><small>Or an end below.</small></label>\
         <label>End (UTC) <input name=\"ends_at\" value=\"{}\"></label>\
         <label>Matchers <textarea name=\"matchers\" rows=\"3\" placeholder=\"service=&quot;mcp&quot;\">{}</textarea>\
         <small>One per line, as in Alertmanager: <code>name=\"value\"</code>, <code>!=</code>, <code>=~</code>, <code>!~</code>. None: every alert.</small></label>\
         <label>Reason <input name=\"reason\" value=\"{}\" required maxlength=\"1000\"></label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"hold_critical\" value=\"on\"{checked}> Hold critical alerts too</label>",
        value("starts_at"),
        value("duration"),
        value("ends_at"),
        value("matchers"),
        value("reason"),
    );
    viewer.form("/ui/windows", "stack", &fields, "Add window")
}

async fn page(
    app: &App,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<&str>,
    problem: Option<&str>,
    posted: &Form,
) -> Response {
    let now = viewer.now();
    let views = match operations::window_views(&app.notifier, now).await {
        Ok(v) => v,
        Err(refused) => return viewer.unavailable(&refused, Some(Nav::Windows), "Maintenance windows"),
    };
    let ended = |w: &WindowView| w.ends_at.as_deref().and_then(millis_of).is_some_and(|e| e <= now);
    let current: Vec<&WindowView> = views
        .iter()
        .filter(|w| w.kind == "one-off" && !ended(w))
        .collect();
    let past: Vec<&WindowView> = views
        .iter()
        .filter(|w| w.kind == "one-off" && ended(w))
        .collect();
    let recurring: Vec<&WindowView> = views.iter().filter(|w| w.kind == "recurring").collect();
    let current_html = if current.is_empty() {
        "<p class=\"empty\">No one-off window is on or to come.</p>".to_owned()
    } else {
        one_off_table(viewer, &current, true)
    };
    let past_html = if past.is_empty() {
        String::new()
    } else {
        format!(
            "<section aria-labelledby=\"ended-heading\"><h2 id=\"ended-heading\">Ended in the last day</h2>{}</section>",
            one_off_table(viewer, &past, false)
        )
    };
    let recurring_html = if recurring.is_empty() {
        "<p class=\"empty\">None configured (<code>maintenance_windows</code>).</p>".to_owned()
    } else {
        recurring_table(&recurring)
    };
    let problem = problem
        .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(p)))
        .unwrap_or_default();
    let body = format!(
        "<p>An alert a window matches is held, not dropped: when the window ends, each channel gets one summary. \
         Critical alerts pass unless the window holds them too.</p>\
         <section aria-labelledby=\"current-heading\"><h2 id=\"current-heading\">On now and to come</h2>{current_html}</section>\
         <section aria-labelledby=\"add-heading\"><h2 id=\"add-heading\">Add a window</h2>{problem}{}</section>\
         <section aria-labelledby=\"recurring-heading\"><h2 id=\"recurring-heading\">Recurring</h2>{recurring_html}</section>{past_html}",
        add_form(viewer, posted)
    );
    viewer.page(status, Some(Nav::Windows), "Maintenance windows", notice, &body)
}

/// `GET /ui/windows`.
pub(super) async fn list(State(app): State<App>, headers: HeaderMap, query: DoneQuery) -> Response {
    match sign_in(&app, &headers) {
        Ok(viewer) => {
            page(
                &app,
                &viewer,
                StatusCode::OK,
                done(query).notice(),
                None,
                &Form::default(),
            )
            .await
        }
        Err(answer) => *answer,
    }
}

/// A time typed in the form: RFC 3339 as it is; `2026-11-22 02:00` (or with a `T`, or
/// seconds) taken as UTC. Anything else is passed on for the check to name.
fn utc_time(text: &str) -> String {
    let text = text.trim();
    if text.parse::<jiff::Timestamp>().is_ok() {
        return text.to_owned();
    }
    text.replacen(' ', "T", 1)
        .parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map_or_else(|| text.to_owned(), |t| t.timestamp().to_string())
}

/// What the form asks for, as the API's request.
fn request(form: &Form, author: &str) -> WindowRequest {
    WindowRequest {
        starts_at: form.text("starts_at").map(|t| utc_time(&t)),
        ends_at: form.text("ends_at").map(|t| utc_time(&t)),
        duration: form.text("duration"),
        matchers: form
            .get("matchers")
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        author: Some(author.to_owned()),
        reason: form.text("reason"),
        hold_critical: form.get("hold_critical").is_some(),
    }
}

/// `POST /ui/windows`: adds a one-off window; a refused one shows the form again with
/// what was wrong and what was typed.
pub(super) async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let submitted = match submission(&app, &headers, "/ui/windows", &body) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    let now = submitted.viewer.now();
    let request = request(&submitted.form, &submitted.by);
    match operations::create_window(&app.notifier, request, now).await {
        Ok(_) => see_other("/ui/windows?done=window-added"),
        Err(refused) if refused.status == StatusCode::BAD_REQUEST => {
            page(
                &app,
                &submitted.viewer,
                refused.status,
                None,
                Some(&refused.message),
                &submitted.form,
            )
            .await
        }
        Err(refused) => submitted.viewer.refused(&refused, "/ui/windows"),
    }
}

/// `POST /ui/windows/{id}/end`.
pub(super) async fn end(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    body: Bytes,
) -> Response {
    let Ok(Path(id)) = id else {
        return super::bare(StatusCode::NOT_FOUND, "No such window", "a window's id is a number");
    };
    let submitted = match submission(&app, &headers, &format!("/ui/windows/{id}/end"), &body) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    match operations::finish_window(&app.notifier, id, &submitted.by, submitted.viewer.now()).await {
        Ok(_) => see_other("/ui/windows?done=window-ended"),
        Err(refused) => submitted.viewer.refused(&refused, "/ui/windows"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_times_are_utc() {
        assert_eq!(utc_time("2026-11-22 02:00"), "2026-11-22T02:00:00Z");
        assert_eq!(utc_time(" 2026-11-22T02:00:30 "), "2026-11-22T02:00:30Z");
        assert_eq!(utc_time("2026-11-22T02:00:00+01:00"), "2026-11-22T02:00:00+01:00");
        assert_eq!(utc_time("tomorrow"), "tomorrow");
    }

    #[test]
    fn the_form_becomes_the_apis_request() {
        let form = Form::parse(
            b"duration=2h&matchers=service%3D%22mcp%22%0D%0A%0D%0A+alertname%3D~%22Disk.*%22+&reason=upgrade&hold_critical=on&starts_at=",
        );
        let r = request(&form, "alice");
        assert_eq!(r.matchers, ["service=\"mcp\"", "alertname=~\"Disk.*\""]);
        assert_eq!(r.duration.as_deref(), Some("2h"));
        assert_eq!(r.starts_at, None);
        assert_eq!(r.author.as_deref(), Some("alice"));
        assert!(r.hold_critical);
        let window = r.check(1_000_000).expect("valid");
        assert_eq!(window.ends_at - window.starts_at, 7_200_000);
    }
}
