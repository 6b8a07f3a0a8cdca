//! The on-call API: `/api/v1/schedules` (who is on call now and next in each schedule),
//! `/api/v1/schedules/{name}` (that and the shifts ahead) and
//! `/api/v1/schedules/{name}/calendar.ics` (an iCalendar feed), behind the API's
//! credentials. People are shown by key and name only: no address or member id leaves here.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{App, api_guard, error};
use crate::ical::{CalendarEvent, calendar};
use crate::schedule::{People, Schedule, Shift, Source, display_name, instant};
use crate::time::now_ms;

/// The shifts `/api/v1/schedules/{name}` (and the UI's on-call page) list by default, in
/// days.
pub(super) const DEFAULT_DAYS: i64 = 14;
/// The most it lists.
const MAX_DAYS: i64 = 90;
/// The feed covers this much before now and after it.
const FEED_BEFORE: Duration = Duration::from_secs(7 * 86_400);
const FEED_AFTER: Duration = Duration::from_secs(90 * 86_400);

#[derive(Debug, Default, Deserialize)]
pub(super) struct ScheduleQuery {
    /// The instant to answer for (RFC 3339), instead of now.
    at: Option<String>,
    /// Days of shifts to list.
    days: Option<String>,
}

type QueryResult = Result<Query<ScheduleQuery>, axum::extract::rejection::QueryRejection>;

/// A refused request: its status and what was wrong.
type Refused = (StatusCode, String);

/// The instant a request asks about: `at`, or now.
fn at(query: &ScheduleQuery) -> Result<Timestamp, Refused> {
    match &query.at {
        None => Ok(instant(now_ms())),
        Some(text) => text.trim().parse::<Timestamp>().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("at: {text:?} is not an RFC 3339 time with an offset"),
            )
        }),
    }
}

fn local(schedule: &Schedule, at: Timestamp) -> String {
    at.to_zoned(schedule.time_zone.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn shift_json(schedule: &Schedule, people: &People, shift: &Shift) -> Value {
    let mut value = json!({
        "person": shift.person,
        "name": display_name(&shift.person, people.get(&shift.person)),
        "start": shift.start.to_string(),
        "end": shift.end.to_string(),
        "start_local": local(schedule, shift.start),
        "end_local": local(schedule, shift.end),
    });
    match &shift.source {
        Source::Rotation { index, name } => {
            value["source"] = json!("rotation");
            value["rotation"] = json!(index);
            value["rotation_name"] = json!(name);
        }
        Source::Override { index, reason } => {
            value["source"] = json!("override");
            value["override"] = json!(index);
            value["reason"] = json!(reason);
        }
    }
    value
}

/// A schedule's name, zone, who is on call at `at` and who is next.
fn summary(schedule: &Schedule, people: &People, at: Timestamp) -> Value {
    let next = schedule.next_handoff(at).map(|shift| {
        json!({
            "person": shift.person,
            "name": display_name(&shift.person, people.get(&shift.person)),
            "start": shift.start.to_string(),
            "start_local": local(schedule, shift.start),
        })
    });
    json!({
        "name": schedule.name,
        "time_zone": schedule.time_zone_name,
        "at": at.to_string(),
        "on_call": schedule.on_call(at).map(|shift| shift_json(schedule, people, &shift)),
        "next": next,
    })
}

/// The query of a schedule request and the instant it asks about.
fn asked(query: QueryResult) -> Result<(ScheduleQuery, Timestamp), Refused> {
    let Query(query) = query.map_err(|e| (StatusCode::BAD_REQUEST, e.body_text()))?;
    let at = at(&query)?;
    Ok((query, at))
}

pub(super) async fn list(State(app): State<App>, headers: HeaderMap, query: QueryResult) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let (_, at) = match asked(query) {
        Ok(asked) => asked,
        Err((status, message)) => return error(status, message),
    };
    let setup = app.notifier.setup();
    let people = &setup.schedules.people;
    let list: Vec<Value> = setup
        .schedules
        .schedules
        .values()
        .map(|schedule| summary(schedule, people, at))
        .collect();
    axum::Json(json!({ "schedules": list })).into_response()
}

pub(super) async fn one(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: QueryResult,
) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let (query, at) = match asked(query) {
        Ok(asked) => asked,
        Err((status, message)) => return error(status, message),
    };
    let days = match query.days.as_deref().map(str::trim) {
        None => DEFAULT_DAYS,
        Some(text) => match text.parse::<i64>() {
            Ok(days) if (1..=MAX_DAYS).contains(&days) => days,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("days: {text:?} is not a number of days from 1 to {MAX_DAYS}"),
                );
            }
        },
    };
    let setup = app.notifier.setup();
    let Some(schedule) = setup.schedules.schedules.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no schedule is named {name:?}"));
    };
    axum::Json(with_shifts(schedule, &setup.schedules.people, at, days)).into_response()
}

/// [`summary`] with `shifts`: every shift from `at` for `days` days. What
/// `/api/v1/schedules/{name}` answers and the UI's on-call page shows.
pub(super) fn with_shifts(schedule: &Schedule, people: &People, at: Timestamp, days: i64) -> Value {
    let until = at.saturating_add(SignedDuration::from_hours(24 * days)).unwrap_or(Timestamp::MAX);
    let mut value = summary(schedule, people, at);
    value["shifts"] = schedule
        .shifts(at, until)
        .iter()
        .map(|shift| shift_json(schedule, people, shift))
        .collect();
    value
}

pub(super) async fn feed(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: QueryResult,
) -> Response {
    if let Some(denied) = api_guard(&app, &headers) {
        return denied;
    }
    let (_, at) = match asked(query) {
        Ok(asked) => asked,
        Err((status, message)) => return error(status, message),
    };
    let setup = app.notifier.setup();
    let Some(schedule) = setup.schedules.schedules.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no schedule is named {name:?}"));
    };
    let people = &setup.schedules.people;
    let span = |d: Duration| SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO);
    let from = at.saturating_sub(span(FEED_BEFORE)).unwrap_or(Timestamp::MIN);
    let until = at.saturating_add(span(FEED_AFTER)).unwrap_or(Timestamp::MAX);
    let events: Vec<CalendarEvent> = schedule
        .shifts(from, until)
        .iter()
        .map(|shift| {
            let who = display_name(&shift.person, people.get(&shift.person));
            let why = match &shift.source {
                Source::Rotation { index, name } => match name {
                    Some(name) => format!("rotation {name}"),
                    None => format!("rotation {}", index + 1),
                },
                Source::Override { reason, .. } => match reason {
                    Some(reason) => format!("override: {reason}"),
                    None => "override".to_owned(),
                },
            };
            CalendarEvent {
                uid: format!(
                    "{}-{}-{}@mcpwatch-notifier",
                    schedule.name,
                    shift.start.as_second(),
                    shift.person
                ),
                summary: format!("On call: {who} ({})", schedule.name),
                description: format!(
                    "{who} is on call in schedule {} ({why}).",
                    schedule.name
                ),
                start: shift.start,
                end: shift.end,
            }
        })
        .collect();
    let text = calendar(
        &format!("On call: {}", schedule.name),
        &schedule.time_zone_name,
        &events,
        instant(now_ms()),
    );
    (
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        text,
    )
        .into_response()
}
