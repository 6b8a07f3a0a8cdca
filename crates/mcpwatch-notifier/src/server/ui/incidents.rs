//! The incident list (`/ui/`) and an incident's page (`/ui/incidents/{id}`), with its
//! acknowledge and take-back forms.

use std::cmp::Reverse;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{
    DoneQuery, Nav, Viewer, done, escape, see_other, sign_in, submission, time_text,
};
use crate::incident::{AckAction, AckRequest, IncidentView, Policies};
use crate::server::{App, IdPath, Refused, operations};
use crate::store::NotificationView;
use crate::time::now_ms;

/// Open incidents listed at most.
const OPEN_SHOWN: usize = 200;
/// Resolved incidents listed at most, the newest.
const RESOLVED_SHOWN: usize = 20;

/// An incident with its latest notification (payload and deliveries).
struct Incident {
    view: IncidentView,
    notification: Option<NotificationView>,
}

impl Incident {
    async fn load(app: &App, view: IncidentView) -> Result<Self, Refused> {
        let notification = app.notifier.store().get(view.notification_id).await?;
        Ok(Self { view, notification })
    }

    fn payload(&self) -> Option<&Value> {
        self.notification.as_ref()?.payload.as_ref()
    }

    /// Its alerts (those that climb its policy) in the latest notification.
    fn alerts(&self) -> Vec<&Value> {
        let Some(all) = self.payload().and_then(|p| p["alerts"].as_array()) else {
            return Vec::new();
        };
        self.view
            .alert_indices
            .iter()
            .filter_map(|i| all.get(*i))
            .collect()
    }

    /// The gravest `severity` label of its alerts.
    fn severity(&self) -> Option<&str> {
        self.alerts()
            .into_iter()
            .filter_map(|a| a["labels"]["severity"].as_str())
            .max_by_key(|s| (severity_rank(s), *s))
    }

    /// What people call it: the group's alert name, else its key.
    fn title(&self) -> String {
        let payload = self.payload();
        let name = payload
            .and_then(|p| {
                p["groupLabels"]["alertname"]
                    .as_str()
                    .or_else(|| p["commonLabels"]["alertname"].as_str())
            })
            .or_else(|| {
                self.alerts()
                    .first()
                    .and_then(|a| a["labels"]["alertname"].as_str())
            });
        name.map_or_else(|| self.view.group_key.clone(), str::to_owned)
    }

    /// The channels told, each with when it was last delivered to (or the state of its
    /// delivery) in the latest notification.
    fn told(&self, now: i64) -> String {
        if self.view.told.is_empty() {
            return "<span class=\"muted\">nobody yet</span>".into();
        }
        let deliveries = self
            .notification
            .as_ref()
            .map(|n| n.deliveries.as_slice())
            .unwrap_or_default();
        let mut items = String::new();
        for channel in &self.view.told {
            let mut mine = deliveries.iter().filter(|d| &d.channel == channel);
            let delivered = mine
                .clone()
                .filter_map(|d| d.delivered_at.as_deref())
                .max();
            let when = match (delivered, mine.next_back()) {
                (Some(at), _) => time_text(at, now),
                (None, Some(d)) => format!("<span class=\"muted\">{}</span>", escape(&d.state)),
                (None, None) => String::new(),
            };
            items.push_str(&format!(
                "<li><span class=\"channel\">{}</span> {when}</li>",
                escape(channel)
            ));
        }
        format!("<ul class=\"told\">{items}</ul>")
    }
}

/// How grave a severity is, for sorting and colour; unknown ones least.
fn severity_rank(severity: &str) -> u8 {
    match severity.to_ascii_lowercase().as_str() {
        "critical" | "page" | "p0" | "p1" => 4,
        "error" | "high" | "p2" => 3,
        "warning" | "warn" | "medium" | "p3" => 2,
        "info" | "low" | "none" => 1,
        _ => 0,
    }
}

fn severity_badge(severity: Option<&str>) -> String {
    match severity {
        Some(s) => {
            let class = ["other", "info", "warning", "error", "critical"]
                [usize::from(severity_rank(s))];
            format!("<span class=\"badge sev-{class}\">{}</span>", escape(s))
        }
        None => "<span class=\"muted\">none</span>".into(),
    }
}

fn state_badge(state: &str) -> String {
    let class = match state {
        "open" => "open",
        "acknowledged" => "acknowledged",
        _ => "resolved",
    };
    format!("<span class=\"badge state-{class}\">{}</span>", escape(state))
}

/// `level 2 · senior engineer`.
fn level(policies: &Policies, view: &IncidentView) -> String {
    let name = policies
        .get(&view.policy)
        .and_then(|p| {
            p.levels
                .get(usize::try_from(view.level).unwrap_or(1).saturating_sub(1))
        })
        .and_then(|l| l.name.as_deref());
    match name {
        Some(name) => format!("level {} · {}", view.level, escape(name)),
        None => format!("level {}", view.level),
    }
}

fn row(incident: &Incident, policies: &Policies, now: i64, last_label: &str) -> String {
    let view = &incident.view;
    let id = view.id;
    let last = match (&view.resolved_at, &view.acknowledged_by, &view.acknowledged_at) {
        (Some(at), _, _) => format!("resolved {}", time_text(at, now)),
        (None, Some(by), Some(at)) => format!("by {} {}", escape(by), time_text(at, now)),
        _ => "<span class=\"muted\">no</span>".into(),
    };
    // The labels head each cell when a phone shows the rows as cards.
    format!(
        "<tr id=\"incident-{id}\"><td data-label=\"Incident\"><a href=\"/ui/incidents/{id}\">{}</a> <span class=\"muted\">#{id}</span></td>\
         <td data-label=\"State\">{}</td><td data-label=\"Severity\">{}</td><td data-label=\"Policy and level\">{}<br><span class=\"muted\">{}</span></td>\
         <td data-label=\"Told\">{}</td><td data-label=\"Opened\">{}</td><td data-label=\"{last_label}\">{last}</td></tr>",
        escape(&incident.title()),
        state_badge(view.state),
        severity_badge(incident.severity()),
        escape(&view.policy),
        level(policies, view),
        incident.told(now),
        time_text(&view.opened_at, now),
    )
}

fn table(incidents: &[Incident], policies: &Policies, now: i64, last: &str) -> String {
    let rows: String = incidents
        .iter()
        .map(|i| row(i, policies, now, last))
        .collect();
    format!(
        "<div class=\"table\"><table class=\"cards\"><thead><tr><th scope=\"col\">Incident</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Severity</th><th scope=\"col\">Policy and level</th><th scope=\"col\">Told</th>\
         <th scope=\"col\">Opened</th><th scope=\"col\">{last}</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

async fn list_body(app: &App, now: i64) -> Result<String, Refused> {
    let store = app.notifier.store();
    let setup = app.notifier.setup();
    let mut open = Vec::new();
    for view in store.incidents(true, OPEN_SHOWN).await? {
        open.push(Incident::load(app, view).await?);
    }
    // Not acknowledged first, then the gravest, then the newest.
    open.sort_by_key(|i| {
        (
            i.view.state == "acknowledged",
            Reverse(i.severity().map_or(0, severity_rank)),
            Reverse(i.view.id),
        )
    });
    let mut resolved = Vec::new();
    for view in store
        .incidents(false, OPEN_SHOWN + RESOLVED_SHOWN)
        .await?
        .into_iter()
        .filter(|i| i.state == "resolved")
        .take(RESOLVED_SHOWN)
    {
        resolved.push(Incident::load(app, view).await?);
    }
    let open_html = if open.is_empty() {
        "<p class=\"empty\">No open incidents.</p>".to_owned()
    } else {
        table(&open, &setup.policies, now, "Acknowledged")
    };
    let resolved_html = if resolved.is_empty() {
        "<p class=\"empty\">None resolved lately.</p>".to_owned()
    } else {
        table(&resolved, &setup.policies, now, "Resolved")
    };
    Ok(format!(
        "<section aria-labelledby=\"open-heading\"><h2 id=\"open-heading\">Open and acknowledged ({})</h2>{open_html}</section>\
         <section aria-labelledby=\"resolved-heading\"><h2 id=\"resolved-heading\">Recently resolved</h2>{resolved_html}</section>",
        open.len()
    ))
}

/// `GET /ui/`.
pub(super) async fn list(State(app): State<App>, headers: HeaderMap, query: DoneQuery) -> Response {
    let viewer = match sign_in(&app, &headers) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    match list_body(&app, viewer.now()).await {
        Ok(body) => viewer.page(
            StatusCode::OK,
            Some(Nav::Incidents),
            "Incidents",
            done(query).notice(),
            &body,
        ),
        Err(refused) => viewer.unavailable(&refused, Some(Nav::Incidents), "Incidents"),
    }
}

/// A label or annotation value: a link when it is an http(s) URL, else text.
fn value_html(value: &Value) -> String {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    if text.starts_with("https://") || text.starts_with("http://") {
        format!(
            "<a href=\"{}\" rel=\"noreferrer noopener\">{}</a>",
            escape(&text),
            escape(&text)
        )
    } else {
        escape(&text).to_string()
    }
}

fn pairs(caption: &str, map: &Value) -> String {
    let Some(map) = map.as_object().filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let rows: String = map
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                escape(k),
                value_html(v)
            )
        })
        .collect();
    format!("<table class=\"pairs\"><caption>{caption}</caption><tbody>{rows}</tbody></table>")
}

fn alert_html(alert: &Value, now: i64) -> String {
    let name = alert["labels"]["alertname"].as_str().unwrap_or("alert");
    let status = match alert["status"].as_str() {
        Some("resolved") => "resolved",
        _ => "firing",
    };
    let since = alert["startsAt"]
        .as_str()
        .map(|t| format!("<p class=\"muted\">since {}</p>", time_text(t, now)))
        .unwrap_or_default();
    let source = alert["generatorURL"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(|u| {
            format!(
                "<p><a href=\"{}\" rel=\"noreferrer noopener\">Source</a></p>",
                escape(u)
            )
        })
        .unwrap_or_default();
    format!(
        "<article class=\"alert\"><h3>{} <span class=\"badge status-{status}\">{status}</span></h3>{since}{}{}{source}</article>",
        escape(name),
        pairs("Labels", &alert["labels"]),
        pairs("Annotations", &alert["annotations"]),
    )
}

fn deliveries_html(notification: &NotificationView, now: i64) -> String {
    let rows: String = notification
        .deliveries
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td><span class=\"badge delivery-{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&d.channel),
                delivery_class(&d.state),
                escape(&d.state),
                d.attempts,
                d.delivered_at
                    .as_deref()
                    .map(|t| time_text(t, now))
                    .unwrap_or_default(),
                d.last_error.as_deref().map(|e| escape(e).to_string()).unwrap_or_default(),
            )
        })
        .collect();
    format!(
        "<section id=\"deliveries\" aria-labelledby=\"deliveries-heading\"><h2 id=\"deliveries-heading\">Deliveries of the latest notification</h2>\
         <p class=\"muted\">Notification #{}, received {}.</p>\
         <div class=\"table\"><table><thead><tr><th scope=\"col\">Channel</th><th scope=\"col\">State</th><th scope=\"col\">Attempts</th>\
         <th scope=\"col\">Delivered</th><th scope=\"col\">Last error</th></tr></thead><tbody>{rows}</tbody></table></div></section>",
        notification.id,
        time_text(&notification.received_at, now),
    )
}

/// The CSS class of a delivery state (a fixed set).
pub(super) fn delivery_class(state: &str) -> &'static str {
    match state {
        "delivered" => "delivered",
        "dead" => "dead",
        "pending" | "sending" => "pending",
        _ => "other",
    }
}

/// When and to whom the next level is told.
fn next_escalation(policies: &Policies, view: &IncidentView, now: i64) -> String {
    let Some(at) = &view.next_escalation_at else {
        return match view.state {
            "resolved" => "none: resolved".into(),
            "acknowledged" => "none: acknowledged".into(),
            _ => "none: the last level was told".into(),
        };
    };
    let policy = policies.get(&view.policy);
    let next = policy.and_then(|p| p.levels.get(usize::try_from(view.level).unwrap_or(0)));
    let whom = match next {
        Some(level) => format!(
            "level {}{}: {}",
            view.level + 1,
            level
                .name
                .as_deref()
                .map(|n| format!(" ({})", escape(n)))
                .unwrap_or_default(),
            escape(&level.channels.join(", "))
        ),
        None => format!("level {} again", view.level),
    };
    format!("{} → {whom}", time_text(at, now))
}

/// The actions an incident in its state takes. Resolving by hand comes with the store's
/// `resolve`: its form goes beside these.
fn actions(viewer: &Viewer, view: &IncidentView) -> String {
    let id = view.id;
    let form = match view.state {
        "open" => viewer.form(
            &format!("/ui/incidents/{id}/ack"),
            "action",
            "",
            "Acknowledge",
        ),
        "acknowledged" => viewer.form(
            &format!("/ui/incidents/{id}/unack"),
            "action",
            "",
            "Take back the acknowledgement",
        ),
        _ => return String::new(),
    };
    format!("<section class=\"actions\" aria-label=\"Actions\">{form}</section>")
}

/// The incident's timeline.
///
/// THE PLACE FOR THE TIMELINE AND THE REPORT: once the store keeps an incident's events,
/// render them here in order (`<ol>` of when, what, who, channel and the receiver's
/// answer) and put the "Download report" link to the Markdown report beside the heading.
fn timeline() -> String {
    "<section id=\"timeline\" aria-labelledby=\"timeline-heading\"><h2 id=\"timeline-heading\">Timeline</h2>\
     <p class=\"empty\">This notifier does not record incident timelines yet.</p></section>"
        .into()
}

fn incident_body(viewer: &Viewer, incident: &Incident, policies: &Policies) -> String {
    let view = &incident.view;
    let now = viewer.now();
    let levels = policies.get(&view.policy).map_or(0, |p| p.levels.len());
    let acknowledged = match (&view.acknowledged_by, &view.acknowledged_at) {
        (Some(by), Some(at)) => format!("by <strong>{}</strong> {}", escape(by), time_text(at, now)),
        _ => "no".into(),
    };
    let resolved = view
        .resolved_at
        .as_deref()
        .map_or_else(|| "no".into(), |t| time_text(t, now));
    let alerts = incident.alerts();
    let alerts_html: String = alerts.iter().map(|a| alert_html(a, now)).collect();
    let deliveries = incident
        .notification
        .as_ref()
        .map(|n| deliveries_html(n, now))
        .unwrap_or_default();
    format!(
        "<p class=\"badges\">{} {}</p>{}\
         <dl class=\"facts\">\
         <dt>Policy</dt><dd>{}</dd>\
         <dt>Level</dt><dd>{} <span class=\"muted\">of {levels}</span></dd>\
         <dt>Opened</dt><dd>{}</dd>\
         <dt>Next escalation</dt><dd>{}</dd>\
         <dt>Acknowledged</dt><dd>{acknowledged}</dd>\
         <dt>Resolved</dt><dd>{resolved}</dd>\
         <dt>Told</dt><dd>{}</dd>\
         <dt>Receiver</dt><dd>{}</dd>\
         <dt>Alert group</dt><dd><code>{}</code></dd>\
         </dl>\
         <section id=\"alerts\" aria-labelledby=\"alerts-heading\"><h2 id=\"alerts-heading\">Alerts ({})</h2>{alerts_html}</section>\
         {deliveries}{}",
        state_badge(view.state),
        severity_badge(incident.severity()),
        actions(viewer, view),
        escape(&view.policy),
        level(policies, view),
        time_text(&view.opened_at, now),
        next_escalation(policies, view, now),
        incident.told(now),
        escape(&view.receiver),
        escape(&view.group_key),
        alerts.len(),
        timeline(),
    )
}

/// `GET /ui/incidents/{id}`.
pub(super) async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    query: DoneQuery,
) -> Response {
    let viewer = match sign_in(&app, &headers) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    let found = match id {
        Ok(Path(id)) => app
            .notifier
            .store()
            .incident(id)
            .await
            .map_err(Refused::from)
            .and_then(|found| {
                found.ok_or_else(|| Refused::new(StatusCode::NOT_FOUND, format!("no incident {id}")))
            }),
        Err(_) => Err(Refused::new(
            StatusCode::NOT_FOUND,
            "an incident's id is a number",
        )),
    };
    let incident = match found {
        Ok(view) => Incident::load(&app, view).await,
        Err(refused) => Err(refused),
    };
    match incident {
        Ok(incident) => {
            let title = format!("{} · incident {}", incident.title(), incident.view.id);
            let body = incident_body(&viewer, &incident, &app.notifier.setup().policies);
            viewer.page(
                StatusCode::OK,
                Some(Nav::Incidents),
                &title,
                done(query).notice(),
                &body,
            )
        }
        Err(refused) => viewer.unavailable(&refused, Some(Nav::Incidents), "Incident"),
    }
}

async fn act(app: App, headers: HeaderMap, id: IdPath, body: Bytes, action: AckAction) -> Response {
    let Ok(Path(id)) = id else {
        return super::bare(
            StatusCode::NOT_FOUND,
            "No such incident",
            "an incident's id is a number",
        );
    };
    let (verb, done) = match action {
        AckAction::Ack => ("ack", "acknowledged"),
        AckAction::Unack => ("unack", "unacknowledged"),
    };
    let submitted = match submission(&app, &headers, &format!("/ui/incidents/{id}/{verb}"), &body) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    let request = AckRequest {
        action,
        by: submitted.by.clone(),
        generation: None,
        now: now_ms(),
    };
    let page = format!("/ui/incidents/{id}");
    match operations::acknowledge(&app.notifier, id, request).await {
        Ok(_) => see_other(&format!("{page}?done={done}")),
        Err(refused) => submitted.viewer.refused(&refused, &page),
    }
}

/// `POST /ui/incidents/{id}/ack`.
pub(super) async fn ack(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    body: Bytes,
) -> Response {
    act(app, headers, id, body, AckAction::Ack).await
}

/// `POST /ui/incidents/{id}/unack`.
pub(super) async fn unack(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    body: Bytes,
) -> Response {
    act(app, headers, id, body, AckAction::Unack).await
}
