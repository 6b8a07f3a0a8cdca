//! Channel health (`/ui/channels`): per channel its kind, its queue by state, how long its
//! oldest delivery waits, its dead letters, its last error, and what this process sent.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Nav, Viewer, escape, relative, sign_in, time};
use crate::server::{App, Refused};
use crate::store::{ListFilter, state};

/// Notifications looked through for each channel's last error.
const ERRORS_FROM: usize = 200;

/// The newest error of each channel's waiting or dead deliveries: (notification, error).
async fn last_errors(app: &App) -> Result<BTreeMap<String, (i64, String)>, Refused> {
    let mut errors: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for wanted in [state::PENDING, state::DEAD] {
        let filter = ListFilter {
            state: Some(wanted.to_owned()),
            limit: ERRORS_FROM,
            ..ListFilter::default()
        };
        for n in app.notifier.store().list(filter).await? {
            for d in &n.deliveries {
                let Some(error) = &d.last_error else {
                    continue;
                };
                if d.state != wanted {
                    continue;
                }
                let newer = errors.get(&d.channel).is_none_or(|(id, _)| *id < n.id);
                if newer {
                    errors.insert(d.channel.clone(), (n.id, error.clone()));
                }
            }
        }
    }
    Ok(errors)
}

async fn body(app: &App, viewer: &Viewer) -> Result<String, Refused> {
    let now = viewer.now();
    let setup = app.notifier.setup();
    let stats = app.notifier.store().stats().await?;
    let errors = last_errors(app).await?;
    let totals = app.notifier.metrics().channel_totals();
    let depth = |channel: &str, wanted: &str| -> u64 {
        stats
            .depth
            .iter()
            .filter(|(c, s, _)| c == channel && s == wanted)
            .map(|(_, _, n)| n)
            .sum()
    };
    let mut rows = String::new();
    for name in setup.channels.keys() {
        let kind = setup
            .config
            .channels
            .get(name)
            .and_then(|c| c.kind().ok())
            .map_or("?", |k| k.as_str());
        let pending = depth(name, state::PENDING);
        let sending = depth(name, state::SENDING);
        let held = depth(name, state::HELD);
        let dead = depth(name, state::DEAD);
        let oldest = stats
            .oldest_pending
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, age)| *age)
            .filter(|age| *age > 0.0);
        let error = errors.get(name);
        let health = if dead > 0 {
            "<span class=\"badge delivery-dead\">dead letters</span>"
        } else if error.is_some() {
            "<span class=\"badge delivery-pending\">retrying</span>"
        } else {
            "<span class=\"badge delivery-delivered\">ok</span>"
        };
        #[allow(clippy::cast_possible_truncation)]
        let oldest = oldest.map_or_else(
            || "<span class=\"muted\">none waiting</span>".to_owned(),
            |age| relative(now - (age * 1000.0) as i64, now).replace(" ago", ""),
        );
        let total = totals.get(name).copied().unwrap_or_default();
        let sent = match total.last_delivered {
            Some(at) => format!("{}<br>last {}", total.delivered, time(at, now)),
            None => total.delivered.to_string(),
        };
        let error = error.map_or_else(
            || "<span class=\"muted\">none</span>".to_owned(),
            |(id, e)| {
                format!(
                    "<span class=\"error-text\">{}</span> <span class=\"muted\">(notification #{id})</span>",
                    escape(e)
                )
            },
        );
        rows.push_str(&format!(
            "<tr id=\"channel-{}\"><td><span class=\"channel\">{}</span><br><span class=\"muted\">{kind}</span></td><td>{health}</td>\
             <td>{pending}</td><td>{sending}</td><td>{held}</td><td>{dead}</td><td>{oldest}</td><td>{sent}</td><td>{}</td><td>{error}</td></tr>",
            escape(name),
            escape(name),
            total.failures,
        ));
    }
    Ok(format!(
        "<p>The queue is the store's (every replica's); sent and failed attempts are this process's since it started.</p>\
         <div class=\"table\"><table><thead><tr><th scope=\"col\">Channel</th><th scope=\"col\">Health</th>\
         <th scope=\"col\">Pending</th><th scope=\"col\">Sending</th><th scope=\"col\">Held</th><th scope=\"col\">Dead</th>\
         <th scope=\"col\">Oldest waiting</th><th scope=\"col\">Sent</th><th scope=\"col\">Failed attempts</th>\
         <th scope=\"col\">Last error</th></tr></thead><tbody>{rows}</tbody></table></div>"
    ))
}

/// `GET /ui/channels`.
pub(super) async fn list(State(app): State<App>, headers: HeaderMap) -> Response {
    let viewer = match sign_in(&app, &headers) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    match body(&app, &viewer).await {
        Ok(body) => viewer.page(StatusCode::OK, Some(Nav::Channels), "Channels", None, &body),
        Err(refused) => viewer.unavailable(&refused, Some(Nav::Channels), "Channels"),
    }
}
