//! The incident list (`/ui/`) and an incident's page (`/ui/incidents/{id}`): its facts,
//! alerts, deliveries and timeline, its acknowledge, take-back and resolve forms, and its
//! post-incident report (`/ui/incidents/{id}/report`, the API's own download).

use std::cmp::Reverse;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{
    DoneQuery, Nav, Viewer, done, escape, see_other, sign_in, submission, time_text, utc,
};
use crate::incident::{AckAction, AckRequest, IncidentView, Policies};
use crate::report::duration_text;
use crate::server::{App, IdPath, Refused, operations};
use crate::severity::{ComponentState, Severities};
use crate::store::NotificationView;
use crate::time::now_ms;
use crate::timeline::Entry;

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

    /// What it is about: its alerts' names as the store keeps them; for an incident
    /// stored before titles were, the group's alert name, else its key.
    fn title(&self) -> String {
        if !self.view.title.is_empty() {
            return self.view.title.clone();
        }
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

/// Where a severity stands on the configured scale: 0 the gravest; none and names the
/// scale no longer has, last.
fn severity_rank(scale: &Severities, severity: Option<&str>) -> usize {
    severity
        .and_then(|name| scale.named(name))
        .map_or(usize::MAX, |level| level.rank)
}

/// An incident's severity, coloured by what its level makes of a status page component.
fn severity_badge(scale: &Severities, severity: Option<&str>) -> String {
    let Some(name) = severity else {
        return "<span class=\"muted\">none</span>".into();
    };
    let class = match scale.named(name).map(|level| level.status) {
        Some(ComponentState::Outage) => "critical",
        Some(ComponentState::Degraded) => "warning",
        Some(ComponentState::Operational) => "info",
        None => "other",
    };
    format!("<span class=\"badge sev-{class}\">{}</span>", escape(name))
}

/// The severity with the scale it is on: `P1 on the scale P0 · P1 · P2 · P3 (label
/// severity)`.
fn severity_fact(scale: &Severities, severity: Option<&str>) -> String {
    let names: Vec<String> = scale
        .levels()
        .iter()
        .map(|level| escape(&level.name).to_string())
        .collect();
    format!(
        "{} <span class=\"muted\">on the scale {} (label <code>{}</code>)</span>",
        severity_badge(scale, severity),
        names.join(" · "),
        escape(scale.label())
    )
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

/// What the list and the page read from the configuration.
struct Context<'a> {
    policies: &'a Policies,
    severities: &'a Severities,
}

fn row(incident: &Incident, context: &Context<'_>, now: i64, last_label: &str) -> String {
    let view = &incident.view;
    let id = view.id;
    let last = match (&view.resolved_at, &view.acknowledged_by, &view.acknowledged_at) {
        (Some(at), _, _) => format!("resolved {}", time_text(at, now)),
        (None, Some(by), Some(at)) => format!("by {} {}", escape(by), time_text(at, now)),
        _ => "<span class=\"muted\">no</span>".into(),
    };
    // The labels head each cell when a phone shows the rows as cards.
    format!(
        "<tr id=\"incident-{id}\"><td data-label=\"Incident\" class=\"number\">#{id}</td><td data-label=\"Title\"><a href=\"/ui/incidents/{id}\">{}</a></td>\
         <td data-label=\"State\">{}</td><td data-label=\"Severity\">{}</td><td data-label=\"Policy and level\">{}<br><span class=\"muted\">{}</span></td>\
         <td data-label=\"Told\">{}</td><td data-label=\"Opened\">{}</td><td data-label=\"{last_label}\">{last}</td></tr>",
        escape(&incident.title()),
        state_badge(view.state),
        severity_badge(context.severities, view.severity.as_deref()),
        escape(&view.policy),
        level(context.policies, view),
        incident.told(now),
        time_text(&view.opened_at, now),
    )
}

fn table(incidents: &[Incident], context: &Context<'_>, now: i64, last: &str) -> String {
    let rows: String = incidents
        .iter()
        .map(|i| row(i, context, now, last))
        .collect();
    format!(
        "<div class=\"table\"><table class=\"cards\"><thead><tr><th scope=\"col\">Incident</th><th scope=\"col\">Title</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Severity</th><th scope=\"col\">Policy and level</th><th scope=\"col\">Told</th>\
         <th scope=\"col\">Opened</th><th scope=\"col\">{last}</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

async fn list_body(app: &App, now: i64) -> Result<String, Refused> {
    let store = app.notifier.store();
    let setup = app.notifier.setup();
    let context = Context {
        policies: &setup.policies,
        severities: &setup.severities,
    };
    let mut open = Vec::new();
    for view in store.incidents(true, OPEN_SHOWN).await? {
        open.push(Incident::load(app, view).await?);
    }
    // Not acknowledged first, then the gravest, then the newest.
    open.sort_by_key(|i| {
        (
            i.view.state == "acknowledged",
            severity_rank(context.severities, i.view.severity.as_deref()),
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
        table(&open, &context, now, "Acknowledged")
    };
    let resolved_html = if resolved.is_empty() {
        "<p class=\"empty\">None resolved lately.</p>".to_owned()
    } else {
        table(&resolved, &context, now, "Resolved")
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
    // While the first level waits for a remediation, it is the next told.
    let index = if view.waiting_for.is_some() {
        0
    } else {
        usize::try_from(view.level).unwrap_or(0)
    };
    let policy = policies.get(&view.policy);
    let next = policy.and_then(|p| p.levels.get(index));
    let whom = match next {
        Some(level) => format!(
            "level {}{}: {}",
            index + 1,
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

/// When the next status update goes to the channels told, or why none does.
fn next_update(view: &IncidentView, now: i64) -> String {
    match (&view.next_update_at, view.state) {
        (Some(at), _) => time_text(at, now),
        (None, "resolved") => "none: resolved".into(),
        (None, "acknowledged") => "none: acknowledged".into(),
        (None, _) => "none: its severity has no <code>updates_every</code>".into(),
    }
}

/// Whether the first level waits for the incident's remediation to end.
fn remediation_wait(policies: &Policies, view: &IncidentView, now: i64) -> String {
    if let Some(actions) = &view.waiting_for {
        let latest = view
            .next_escalation_at
            .as_deref()
            .map(|at| format!(", at the latest {}", time_text(at, now)))
            .unwrap_or_default();
        return format!(
            "<strong>yes, now</strong>: level 1 is told when <code>{}</code> ends{latest}",
            escape(actions)
        );
    }
    let waits = policies
        .get(&view.policy)
        .is_some_and(|policy| policy.wait_for_remediation);
    if waits {
        "not now: the policy has level 1 wait for a remediation that runs as an incident opens"
            .into()
    } else {
        "no: level 1 is told as the incident opens".into()
    }
}

/// The actions an incident in its state takes: acknowledging or taking it back, and
/// resolving by hand in a small form of its own with a box to tick, so that no one
/// resolves by a slip beside Acknowledge.
fn actions(viewer: &Viewer, view: &IncidentView) -> String {
    let id = view.id;
    let ack = match view.state {
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
    let resolve = viewer.form(
        &format!("/ui/incidents/{id}/resolve"),
        "action resolve",
        "<label class=\"check\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> \
         Resolve by hand: the escalation and updates stop, and the channels told hear who resolved it</label>",
        "Resolve",
    );
    format!("<section class=\"actions\" aria-label=\"Actions\">{ack}{resolve}</section>")
}

/// A timeline entry's detail: its first line, and the rest (a remediation's output)
/// folded under its own heading line (`output:`).
fn detail_html(detail: &str) -> String {
    let Some((first, rest)) = detail.split_once('\n') else {
        return format!("<p class=\"detail\">{}</p>", escape(detail));
    };
    let (label, body) = match rest.split_once('\n') {
        Some((head, body)) if head.ends_with(':') => (head.trim_end_matches(':'), body),
        _ => ("more", rest),
    };
    format!(
        "<p class=\"detail\">{}</p><details><summary>{}</summary><pre>{}</pre></details>",
        escape(first),
        escape(label),
        escape(body)
    )
}

fn entry_html(entry: &Entry, opened: i64) -> String {
    let mut about = Vec::new();
    if let Some(actor) = &entry.actor {
        about.push(format!("by <strong class=\"actor\">{}</strong>", escape(actor)));
    }
    // The channel and level, unless the line already says them (`Told level 1 on oncall`).
    let said = entry.describe();
    if let Some(channel) = entry.channel.as_deref().filter(|c| !said.contains(&format!("on {c}"))) {
        about.push(format!("channel <span class=\"channel\">{}</span>", escape(channel)));
    }
    if let Some(level) = entry.level.filter(|l| !said.contains(&format!("level {l}"))) {
        about.push(format!("level {level}"));
    }
    let about = if about.is_empty() {
        String::new()
    } else {
        format!(" <span class=\"about\">{}</span>", about.join(" · "))
    };
    let detail = entry.detail.as_deref().map(detail_html).unwrap_or_default();
    let alerts = if entry.alerts.is_empty() {
        String::new()
    } else {
        let items: String = entry
            .alerts
            .iter()
            .map(|alert| {
                let status = if alert.status == "resolved" {
                    "resolved"
                } else {
                    "firing"
                };
                format!(
                    "<li><span class=\"badge status-{status}\">{status}</span> <code>{}</code></li>",
                    escape(&alert.identity())
                )
            })
            .collect();
        format!("<ul class=\"entry-alerts\">{items}</ul>")
    };
    format!(
        "<li id=\"entry-{}\" data-kind=\"{}\"><p class=\"when\">{} <span class=\"since\">+{}</span></p>\
         <p class=\"what\"><strong>{}</strong>{about}</p>{detail}{alerts}</li>",
        entry.id,
        escape(&entry.kind),
        utc(entry.at_ms),
        duration_text(entry.at_ms - opened),
        escape(&said),
    )
}

/// The incident's timeline, every entry in order, with the link to its report.
fn timeline(view: &IncidentView, entries: &[Entry]) -> String {
    let list = if entries.is_empty() {
        "<p class=\"empty\">Nothing recorded.</p>".to_owned()
    } else {
        let items: String = entries
            .iter()
            .map(|entry| entry_html(entry, view.opened_ms))
            .collect();
        format!("<ol class=\"timeline\">{items}</ol>")
    };
    format!(
        "<section id=\"timeline\" aria-labelledby=\"timeline-heading\"><h2 id=\"timeline-heading\">Timeline ({})</h2>\
         <p class=\"muted\">Times in UTC, each with how long after the incident opened.</p>\
         <p><a class=\"report\" href=\"/ui/incidents/{id}/report\" download=\"incident-{id}.md\">Download report (Markdown)</a></p>{list}</section>",
        entries.len(),
        id = view.id,
    )
}

fn incident_body(viewer: &Viewer, incident: &Incident, entries: &[Entry], context: &Context<'_>) -> String {
    let view = &incident.view;
    let policies = context.policies;
    let now = viewer.now();
    let levels = policies.get(&view.policy).map_or(0, |p| p.levels.len());
    let acknowledged = match (&view.acknowledged_by, &view.acknowledged_at) {
        (Some(by), Some(at)) => format!("by <strong>{}</strong> {}", escape(by), time_text(at, now)),
        _ => "no".into(),
    };
    let resolved = match (&view.resolved_at, &view.resolved_by) {
        (Some(at), Some(by)) => format!("by hand by <strong>{}</strong> {}", escape(by), time_text(at, now)),
        (Some(at), None) => format!("{}: every alert resolved", time_text(at, now)),
        (None, _) => "no".into(),
    };
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
         <dt>Title</dt><dd>{}</dd>\
         <dt>Severity</dt><dd>{}</dd>\
         <dt>Policy</dt><dd>{}</dd>\
         <dt>Level</dt><dd>{} <span class=\"muted\">of {levels}</span></dd>\
         <dt>Opened</dt><dd>{}</dd>\
         <dt>Next escalation</dt><dd>{}</dd>\
         <dt>Next status update</dt><dd>{}</dd>\
         <dt>Level 1 waits for a remediation</dt><dd>{}</dd>\
         <dt>Acknowledged</dt><dd>{acknowledged}</dd>\
         <dt>Resolved</dt><dd>{resolved}</dd>\
         <dt>Told</dt><dd>{}</dd>\
         <dt>Receiver</dt><dd>{}</dd>\
         <dt>Alert group</dt><dd><code>{}</code></dd>\
         </dl>\
         {}\
         <section id=\"alerts\" aria-labelledby=\"alerts-heading\"><h2 id=\"alerts-heading\">Alerts ({})</h2>{alerts_html}</section>\
         {deliveries}",
        state_badge(view.state),
        severity_badge(context.severities, view.severity.as_deref()),
        actions(viewer, view),
        escape(&incident.title()),
        severity_fact(context.severities, view.severity.as_deref()),
        escape(&view.policy),
        level(policies, view),
        time_text(&view.opened_at, now),
        next_escalation(policies, view, now),
        next_update(view, now),
        remediation_wait(policies, view, now),
        incident.told(now),
        escape(&view.receiver),
        escape(&view.group_key),
        timeline(view, entries),
        alerts.len(),
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
        Ok(Path(id)) => operations::incident_with_timeline(&app.notifier, id).await,
        Err(_) => Err(Refused::new(
            StatusCode::NOT_FOUND,
            "an incident's id is a number",
        )),
    };
    let incident = match found {
        Ok((view, entries)) => Incident::load(&app, view).await.map(|i| (i, entries)),
        Err(refused) => Err(refused),
    };
    match incident {
        Ok((incident, entries)) => {
            let title = format!("{} · incident {}", incident.title(), incident.view.id);
            let setup = app.notifier.setup();
            let context = Context {
                policies: &setup.policies,
                severities: &setup.severities,
            };
            let body = incident_body(&viewer, &incident, &entries, &context);
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

/// `GET /ui/incidents/{id}/report`: the post-incident report, as the API serves it.
pub(super) async fn report(State(app): State<App>, headers: HeaderMap, id: IdPath) -> Response {
    let viewer = match sign_in(&app, &headers) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    let download = match id {
        Ok(Path(id)) => operations::report_download(&app.notifier, id).await,
        Err(_) => Err(Refused::new(
            StatusCode::NOT_FOUND,
            "an incident's id is a number",
        )),
    };
    download.unwrap_or_else(|refused| viewer.unavailable(&refused, Some(Nav::Incidents), "Report"))
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

/// `POST /ui/incidents/{id}/resolve`: resolves by hand, once its box is ticked.
pub(super) async fn resolve(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    body: Bytes,
) -> Response {
    let Ok(Path(id)) = id else {
        return super::bare(
            StatusCode::NOT_FOUND,
            "No such incident",
            "an incident's id is a number",
        );
    };
    let submitted = match submission(&app, &headers, &format!("/ui/incidents/{id}/resolve"), &body) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    let page = format!("/ui/incidents/{id}");
    if submitted.form.get("confirm") != Some("yes") {
        return submitted.viewer.refused(
            &Refused::new(
                StatusCode::BAD_REQUEST,
                "Tick the box to confirm that you resolve the incident by hand; nothing was changed.",
            ),
            &page,
        );
    }
    match operations::resolve(&app.notifier, id, submitted.by).await {
        Ok(_) => see_other(&format!("{page}?done=resolved")),
        Err(refused) => submitted.viewer.refused(&refused, &page),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::AlertBrief;

    fn entry(kind: &str, detail: Option<&str>) -> Entry {
        Entry {
            id: 9,
            at: String::new(),
            at_ms: 1_795_316_652_000,
            kind: kind.into(),
            actor: Some("<b>bob</b>".into()),
            channel: Some("oncall".into()),
            level: Some(1),
            detail: detail.map(str::to_owned),
            alerts: vec![AlertBrief {
                status: "firing".into(),
                name: "WebDown".into(),
                labels: "{note=\"<img src=x onerror=alert(1)>\"}".into(),
            }],
        }
    }

    #[test]
    fn an_entry_says_when_what_who_and_escapes_everything() {
        let html = entry_html(&entry("acknowledged", Some("a <i>plain</i> line")), 1_795_316_400_000);
        assert!(html.starts_with("<li id=\"entry-9\" data-kind=\"acknowledged\">"), "{html}");
        assert!(html.contains(">2026-11-22T03:04:12Z</time> <span class=\"since\">+4m 12s</span>"), "{html}");
        assert!(html.contains("<strong>Acknowledged</strong>"), "{html}");
        assert!(html.contains("by <strong class=\"actor\">&lt;b&gt;bob&lt;/b&gt;</strong> · channel <span class=\"channel\">oncall</span> · level 1"), "{html}");
        assert!(html.contains("<p class=\"detail\">a &lt;i&gt;plain&lt;/i&gt; line</p>"), "{html}");
        assert!(html.contains("<code>WebDown{note=&quot;&lt;img src=x onerror=alert(1)&gt;&quot;}</code>"), "{html}");
        assert!(!html.contains("<details>"), "{html}");
        assert!(!html.contains("<img") && !html.contains("<b>") && !html.contains("<i>"));
        // What the line says already is not said again.
        let told = entry_html(&entry("told", None), 1_795_316_400_000);
        assert!(
            told.contains("<strong>Told level 1 on oncall</strong> <span class=\"about\">by <strong class=\"actor\">&lt;b&gt;bob&lt;/b&gt;</strong></span>"),
            "{told}"
        );
    }

    #[test]
    fn a_remediations_output_is_folded_and_escaped() {
        let detail = "echo-html (command): succeeded after 3 ms\noutput:\n<img src=x>\nline two";
        assert_eq!(
            detail_html(detail),
            "<p class=\"detail\">echo-html (command): succeeded after 3 ms</p><details><summary>output</summary>\
             <pre>&lt;img src=x&gt;\nline two</pre></details>"
        );
        assert_eq!(
            detail_html("first\nsecond"),
            "<p class=\"detail\">first</p><details><summary>more</summary><pre>second</pre></details>"
        );
        assert_eq!(
            detail_html("x\noutput (cut):\n…"),
            "<p class=\"detail\">x</p><details><summary>output (cut)</summary><pre>…</pre></details>"
        );
    }

    #[test]
    fn severities_read_on_the_configured_scale() {
        let scale = Severities::default();
        assert_eq!(severity_rank(&scale, Some("critical")), 0);
        assert_eq!(severity_rank(&scale, Some("info")), 2);
        assert_eq!(severity_rank(&scale, Some("P0")), usize::MAX);
        assert_eq!(severity_rank(&scale, None), usize::MAX);
        assert_eq!(
            severity_badge(&scale, Some("warning")),
            "<span class=\"badge sev-warning\">warning</span>"
        );
        assert_eq!(
            severity_badge(&scale, Some("<p>")),
            "<span class=\"badge sev-other\">&lt;p&gt;</span>"
        );
        assert!(
            severity_fact(&scale, Some("critical"))
                .ends_with("on the scale critical · warning · info (label <code>severity</code>)</span>")
        );
    }
}
