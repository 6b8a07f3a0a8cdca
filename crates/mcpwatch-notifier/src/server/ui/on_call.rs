//! Who is on call (`/ui/schedules`): each schedule with the person on call now and until
//! when, who is next, the shifts of the next days and its iCalendar feed. It shows what
//! `/api/v1/schedules/{name}` answers, made by the same function: people by name only, no
//! address or member id.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{Nav, escape, sign_in, time_text};
use crate::schedule::instant;
use crate::server::App;
use crate::server::schedules::{DEFAULT_DAYS, with_shifts};

/// A shift's wall time on the schedule's clock: `2026-03-30 09:00 +02:00`.
fn local(text: &str) -> String {
    match (text.get(..16), text.get(19..)) {
        (Some(wall), Some(offset)) => format!("{} {offset}", wall.replace('T', " ")),
        _ => text.to_owned(),
    }
}

/// Why a shift is someone's: `rotation weekly`, `override: alice is travelling`.
fn source(shift: &Value) -> String {
    if shift["source"] == "override" {
        match shift["reason"].as_str() {
            Some(reason) => format!("override: {reason}"),
            None => "override".to_owned(),
        }
    } else {
        match (shift["rotation_name"].as_str(), shift["rotation"].as_u64()) {
            (Some(name), _) => format!("rotation {name}"),
            (None, Some(index)) => format!("rotation {}", index + 1),
            (None, None) => "rotation".to_owned(),
        }
    }
}

fn name(shift: &Value) -> String {
    escape(shift["name"].as_str().unwrap_or_default()).to_string()
}

fn at(shift: &Value, field: &str, now: i64) -> String {
    time_text(shift[field].as_str().unwrap_or_default(), now)
}

fn on_call_now(on_call: &Value, now: i64) -> String {
    if on_call.is_null() {
        return "<span class=\"error-text\">Nobody</span>: a level with this schedule tells its own channels only"
            .to_owned();
    }
    format!(
        "<strong>{}</strong> since {} until {} <span class=\"muted\">({} to {} on the schedule's clock)</span><br>\
         <span class=\"source\">{}</span>",
        name(on_call),
        at(on_call, "start", now),
        at(on_call, "end", now),
        escape(&local(on_call["start_local"].as_str().unwrap_or_default())),
        escape(&local(on_call["end_local"].as_str().unwrap_or_default())),
        escape(&source(on_call)),
    )
}

fn next(next: &Value, now: i64) -> String {
    if next.is_null() {
        return "<span class=\"muted\">nobody else within 400 days</span>".to_owned();
    }
    format!(
        "<strong>{}</strong> from {} <span class=\"muted\">({})</span>",
        name(next),
        at(next, "start", now),
        escape(&local(next["start_local"].as_str().unwrap_or_default())),
    )
}

fn shifts(list: &[Value], now: i64) -> String {
    if list.is_empty() {
        return "<p class=\"empty\">No shifts: nobody is on call in these days.</p>".to_owned();
    }
    let rows: String = list
        .iter()
        .map(|shift| {
            format!(
                "<tr><td data-label=\"Who\">{}</td><td data-label=\"From\">{}<br><span class=\"muted\">{}</span></td>\
                 <td data-label=\"Until\">{}<br><span class=\"muted\">{}</span></td><td data-label=\"Why\">{}</td></tr>",
                name(shift),
                at(shift, "start", now),
                escape(&local(shift["start_local"].as_str().unwrap_or_default())),
                at(shift, "end", now),
                escape(&local(shift["end_local"].as_str().unwrap_or_default())),
                escape(&source(shift)),
            )
        })
        .collect();
    format!(
        "<div class=\"table\"><table class=\"cards shifts\"><thead><tr><th scope=\"col\">Who</th><th scope=\"col\">From</th>\
         <th scope=\"col\">Until</th><th scope=\"col\">Why</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

/// One schedule as [`with_shifts`] describes it.
fn schedule_html(schedule: &Value, now: i64) -> String {
    // Schedule names are letters, digits, '-' and '_': fit for an id and a path as they are.
    let key = escape(schedule["name"].as_str().unwrap_or_default()).to_string();
    let list = schedule["shifts"].as_array().map_or(&[][..], Vec::as_slice);
    format!(
        "<section id=\"schedule-{key}\" class=\"schedule\" aria-labelledby=\"schedule-{key}-heading\">\
         <h2 id=\"schedule-{key}-heading\">{key} <span class=\"muted\">{}</span></h2>\
         <dl class=\"facts\"><dt>On call now</dt><dd class=\"on-call\">{}</dd>\
         <dt>Next</dt><dd class=\"next\">{}</dd>\
         <dt>Calendar</dt><dd><a class=\"feed\" href=\"/api/v1/schedules/{key}/calendar.ics\">iCalendar feed</a> \
         <span class=\"muted\">(subscribe with a Basic-auth user of the API)</span></dd></dl>\
         <h3>Shifts of the next {DEFAULT_DAYS} days</h3>{}</section>",
        escape(schedule["time_zone"].as_str().unwrap_or_default()),
        on_call_now(&schedule["on_call"], now),
        next(&schedule["next"], now),
        shifts(list, now),
    )
}

/// `GET /ui/schedules`.
pub(super) async fn list(State(app): State<App>, headers: HeaderMap) -> Response {
    let viewer = match sign_in(&app, &headers) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    let now = viewer.now();
    let setup = app.notifier.setup();
    let schedules = &setup.schedules;
    let body = if schedules.schedules.is_empty() {
        "<p class=\"empty\">No on-call schedules are configured (<code>schedules</code> in the configuration).</p>"
            .to_owned()
    } else {
        schedules
            .schedules
            .values()
            .map(|schedule| {
                let value = with_shifts(schedule, &schedules.people, instant(now), DEFAULT_DAYS);
                schedule_html(&value, now)
            })
            .collect()
    };
    viewer.page(StatusCode::OK, Some(Nav::OnCall), "On call", None, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shifts_say_why_and_when_on_the_schedules_clock() {
        assert_eq!(local("2026-03-30T09:00:00+02:00"), "2026-03-30 09:00 +02:00");
        assert_eq!(local("junk"), "junk");
        assert_eq!(
            source(&json!({"source": "override", "override": 0, "reason": "travel"})),
            "override: travel"
        );
        assert_eq!(source(&json!({"source": "override", "override": 0, "reason": null})), "override");
        assert_eq!(
            source(&json!({"source": "rotation", "rotation": 1, "rotation_name": null})),
            "rotation 2"
        );
        assert_eq!(
            source(&json!({"source": "rotation", "rotation": 0, "rotation_name": "weekly"})),
            "rotation weekly"
        );
        let shift = json!({"person": "erin", "name": "<b>Erin</b>", "start": "2026-11-22T03:00:00Z",
            "end": "2026-11-22T05:00:00Z", "start_local": "2026-11-22T04:00:00+01:00",
            "end_local": "2026-11-22T06:00:00+01:00", "source": "override", "override": 0, "reason": "<i>r</i>"});
        let html = on_call_now(&shift, 1_795_316_400_000);
        assert!(html.starts_with("<strong>&lt;b&gt;Erin&lt;/b&gt;</strong> since <time"), "{html}");
        assert!(
            html.contains("(2026-11-22 04:00 +01:00 to 2026-11-22 06:00 +01:00 on the schedule's clock)"),
            "{html}"
        );
        assert!(html.contains("override: &lt;i&gt;r&lt;/i&gt;"), "{html}");
        assert!(!html.contains("erin"), "the person's key is not shown: {html}");
    }
}
