//! The public status page, `GET /status` (HTML that needs no script and no asset from
//! elsewhere) and `GET /status.json`: read-only, without the API's credentials, and
//! without internal detail (labels, annotations, receivers, policies) unless the
//! configuration shows alert names or maintenance reasons. Both are read from the store
//! at each request, so a change is on the page as soon as the webhook that made it was
//! answered.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ui::escape;
use super::{App, error};
use crate::severity::ComponentState;
use crate::statuspage::{
    self, Day, HISTORY_DAYS, MAX_UNLISTED_COMPONENTS, MAX_UNLISTED_NAME_BYTES, StatusPageConfig,
};
use crate::store::StoreError;
use crate::time::{format_rfc3339, now_ms};

/// A component as the page shows it.
#[derive(Debug, Serialize)]
struct Component {
    name: String,
    state: &'static str,
    /// Since when it has been in this state, when known.
    since: Option<String>,
    /// The share of the last 90 days not in outage, in percent; none without history.
    uptime_percent: Option<f64>,
    /// One per day, oldest first.
    days: Vec<DayView>,
}

#[derive(Debug, Serialize)]
struct DayView {
    date: String,
    /// The worst state of the day; none when nothing is known of it.
    state: Option<&'static str>,
    uptime_percent: Option<f64>,
    outage_seconds: u64,
    degraded_seconds: u64,
}

#[derive(Debug, Serialize)]
struct CurrentIncident {
    component: String,
    state: &'static str,
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alerts: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct Maintenance {
    starts_at: String,
    ends_at: String,
    in_progress: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct Page {
    title: String,
    /// The worst state of any component.
    status: &'static str,
    updated_at: String,
    components: Vec<Component>,
    /// Components left out (more than the page shows when `components` is not set).
    components_not_shown: usize,
    incidents: Vec<CurrentIncident>,
    maintenance: Vec<Maintenance>,
}

fn percent(share: Option<f64>) -> Option<f64> {
    share.map(|s| (s * 100_000.0).round() / 1000.0)
}

async fn page(app: &App, config: &StatusPageConfig) -> Result<Page, StoreError> {
    let now = now_ms();
    let history = now - i64::try_from(HISTORY_DAYS).unwrap_or(90) * 86_400_000;
    let store = app.notifier.store();
    let snapshot = store.status(history).await?;
    let windows = store.windows(now).await?;
    // The listed components in their order; otherwise every one ever seen, by name.
    let mut names: Vec<String> = if config.components.is_empty() {
        let mut seen: Vec<String> = snapshot.changes.keys().cloned().collect();
        seen.extend(snapshot.current.iter().map(|c| c.component.clone()));
        seen.sort();
        seen.dedup();
        seen
    } else {
        config.components.iter().map(|c| c.value.clone()).collect()
    };
    names.retain(|value| config.public_name(value).is_some());
    let current: BTreeMap<&str, &statuspage::Current> = snapshot
        .current
        .iter()
        .map(|c| (c.component.as_str(), c))
        .collect();
    let state_of = |value: &String| {
        current
            .get(value.as_str())
            .map_or(ComponentState::Operational, |c| c.state)
    };
    let worst = names
        .iter()
        .map(state_of)
        .max()
        .unwrap_or(ComponentState::Operational);
    let unlisted = config.components.is_empty();
    let mut components_not_shown = 0;
    if unlisted && names.len() > MAX_UNLISTED_COMPONENTS {
        // The worst first (the sort keeps the names' order within a state).
        let mut ranked = names.clone();
        ranked.sort_by_key(|value| std::cmp::Reverse(state_of(value)));
        ranked.truncate(MAX_UNLISTED_COMPONENTS);
        components_not_shown = names.len() - ranked.len();
        let shown: BTreeSet<&String> = ranked.iter().collect();
        names.retain(|value| shown.contains(value));
    }
    let mut components = Vec::new();
    let mut incidents = Vec::new();
    for value in &names {
        let mut public = config.public_name(value).unwrap_or(value).to_owned();
        if unlisted && public.len() > MAX_UNLISTED_NAME_BYTES {
            crate::timeline::cut(&mut public, MAX_UNLISTED_NAME_BYTES);
            public.push('…');
        }
        let changes = snapshot.changes.get(value).map_or(&[][..], Vec::as_slice);
        let current = current.get(value.as_str());
        let state = state_of(value);
        let since = changes
            .last()
            .filter(|c| c.state == state)
            .map(|c| format_rfc3339(c.at));
        let days: Vec<Day> = statuspage::days(changes, now);
        if let Some(current) = current {
            incidents.push(CurrentIncident {
                component: public.clone(),
                state: state.as_str(),
                since: since.clone(),
                alerts: config.show_alert_names.then(|| current.names.clone()),
            });
        }
        components.push(Component {
            name: public,
            state: state.as_str(),
            since,
            uptime_percent: percent(statuspage::uptime(&days)),
            days: days
                .iter()
                .map(|d| DayView {
                    date: d.date(),
                    state: d.worst().map(ComponentState::as_str),
                    uptime_percent: percent(d.uptime()),
                    outage_seconds: d.outage_seconds,
                    degraded_seconds: d.degraded_seconds,
                })
                .collect(),
        });
    }
    let maintenance = windows
        .iter()
        .map(|w| Maintenance {
            starts_at: format_rfc3339(w.window.starts_at),
            ends_at: format_rfc3339(w.window.ends_at),
            in_progress: w.window.starts_at <= now,
            reason: config
                .show_maintenance_reasons
                .then(|| w.window.reason.clone()),
        })
        .collect();
    Ok(Page {
        title: config.title.clone(),
        status: worst.as_str(),
        updated_at: format_rfc3339(now),
        components,
        components_not_shown,
        incidents,
        maintenance,
    })
}

/// The page, or the answer saying why there is none: none is configured (404), or the
/// store cannot be read (503; its error is logged, not shown to the public).
async fn configured_page(app: &App) -> Result<Page, Box<Response>> {
    let Some(config) = app.notifier.setup().config.status_page.clone() else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "no status page is configured",
        )));
    };
    page(app, &config).await.map_err(|e| {
        tracing::warn!(error = %e, "The status page could not be read.");
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the status is not available right now",
        ))
    })
}

/// `GET /status.json`.
pub(super) async fn json(State(app): State<App>) -> Response {
    match configured_page(&app).await {
        Ok(page) => ([(header::CACHE_CONTROL, "no-cache")], axum::Json(page)).into_response(),
        Err(answer) => *answer,
    }
}

fn headline(status: &str) -> &'static str {
    match status {
        "outage" => "Some systems are down",
        "degraded" => "Some systems are degraded",
        _ => "All systems operational",
    }
}

/// `GET /status`.
pub(super) async fn html(State(app): State<App>) -> Response {
    let page = match configured_page(&app).await {
        Ok(page) => page,
        Err(answer) => return *answer,
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        render(&page),
    )
        .into_response()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:56rem;padding:1rem;color:#1b1f24}\
h1{font-size:1.5rem}.banner{padding:.75rem 1rem;border-radius:.4rem;color:#fff;font-weight:600}\
.operational{background:#1a7f37}.degraded{background:#bf8700}.outage{background:#cf222e}.none{background:#d0d7de}\
.component{border:1px solid #d0d7de;border-radius:.4rem;padding:.75rem;margin:.75rem 0}\
.head{display:flex;justify-content:space-between;gap:.5rem;flex-wrap:wrap}\
.state-operational{color:#1a7f37}.state-degraded{color:#9a6700}.state-outage{color:#cf222e}\
.bar{display:flex;gap:1px;margin:.5rem 0;height:2rem}.bar span{flex:1;min-width:1px;border-radius:1px}\
.legend{display:flex;justify-content:space-between;font-size:.8rem;color:#57606a}\
ul{padding-left:1.2rem}footer{color:#57606a;font-size:.8rem;margin-top:2rem}";

fn render(page: &Page) -> String {
    let mut out = String::with_capacity(64 << 10);
    let title = escape(&page.title);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"60\"><title>{title}</title><style>{STYLE}</style></head>\
         <body><h1>{title}</h1><p class=\"banner {}\" id=\"overall\">{}</p>",
        page.status,
        headline(page.status)
    );
    if !page.incidents.is_empty() {
        out.push_str("<h2>Current incidents</h2><ul id=\"incidents\">");
        for incident in &page.incidents {
            let since = incident
                .since
                .as_deref()
                .map(|s| format!(" since {}", escape(s)))
                .unwrap_or_default();
            let alerts = incident
                .alerts
                .as_ref()
                .filter(|a| !a.is_empty())
                .map(|a| format!(" ({})", escape(&a.join(", "))))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<li><strong>{}</strong>: <span class=\"state-{}\">{}</span>{since}{alerts}</li>",
                escape(&incident.component),
                incident.state,
                incident.state
            );
        }
        out.push_str("</ul>");
    }
    if !page.maintenance.is_empty() {
        out.push_str("<h2>Maintenance</h2><ul id=\"maintenance\">");
        for window in &page.maintenance {
            let reason = window
                .reason
                .as_deref()
                .map(|r| format!(": {}", escape(r)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<li>{} {} to {}{reason}</li>",
                if window.in_progress {
                    "In progress,"
                } else {
                    "Scheduled,"
                },
                escape(&window.starts_at),
                escape(&window.ends_at)
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>Components</h2>");
    if page.components.is_empty() {
        out.push_str("<p>No component has reported yet.</p>");
    }
    for component in &page.components {
        let uptime = component
            .uptime_percent
            .map_or_else(|| "no data".to_owned(), |u| format!("{u:.3}% uptime"));
        let _ = write!(
            out,
            "<section class=\"component\"><div class=\"head\"><strong>{}</strong>\
             <span class=\"state-{}\">{}</span></div><div class=\"bar\" aria-label=\"last {HISTORY_DAYS} days\">",
            escape(&component.name),
            component.state,
            component.state
        );
        for day in &component.days {
            let class = day.state.unwrap_or("none");
            let detail = day.uptime_percent.map_or_else(
                || "no data".to_owned(),
                |u| format!("{u:.3}% uptime"),
            );
            let _ = write!(
                out,
                "<span class=\"{class}\" title=\"{}: {detail}\"></span>",
                day.date
            );
        }
        let _ = write!(
            out,
            "</div><div class=\"legend\"><span>{HISTORY_DAYS} days ago</span><span>{uptime}</span><span>today</span></div></section>"
        );
    }
    if page.components_not_shown > 0 {
        let _ = write!(
            out,
            "<p id=\"not-shown\">{} more components are not shown.</p>",
            page.components_not_shown
        );
    }
    let _ = write!(
        out,
        "<footer>Updated {}. <a href=\"status.json\">JSON</a></footer></body></html>",
        escape(&page.updated_at)
    );
    out
}
