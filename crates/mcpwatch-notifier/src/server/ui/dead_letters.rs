//! Dead letters (`/ui/dead-letters`): notifications with deliveries given up, each
//! delivery's channel, attempts and last error, and a Replay button per notification.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{DoneQuery, Nav, Viewer, done, escape, see_other, sign_in, submission, time_text};
use crate::server::{App, IdPath, Refused, replay_dead_letters};
use crate::store::{ListFilter, NotificationView, state};

/// Notifications listed at most, the newest.
const SHOWN: usize = 100;

fn row(viewer: &Viewer, n: &NotificationView) -> String {
    let now = viewer.now();
    let dead: Vec<_> = n.deliveries.iter().filter(|d| d.state == state::DEAD).collect();
    let deliveries: String = dead
        .iter()
        .map(|d| {
            format!(
                "<li><span class=\"channel\">{}</span> <span class=\"muted\">after {} attempt{}</span><br><span class=\"error-text\">{}</span></li>",
                escape(&d.channel),
                d.attempts,
                if d.attempts == 1 { "" } else { "s" },
                escape(d.last_error.as_deref().unwrap_or("no error recorded")),
            )
        })
        .collect();
    format!(
        "<tr id=\"notification-{id}\"><td>#{id}<br><span class=\"muted\">{}</span></td><td><code>{}</code><br><span class=\"muted\">{} · {} alert{}</span></td>\
         <td><ul class=\"dead\">{deliveries}</ul></td><td>{}</td></tr>",
        time_text(&n.received_at, now),
        escape(&n.group_key),
        escape(&n.status),
        n.alerts,
        if n.alerts == 1 { "" } else { "s" },
        viewer.form(&format!("/ui/dead-letters/{}/replay", n.id), "action", "", "Replay"),
        id = n.id,
    )
}

/// `GET /ui/dead-letters`.
pub(super) async fn list(State(app): State<App>, headers: HeaderMap, query: DoneQuery) -> Response {
    let viewer = match sign_in(&app, &headers) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    let filter = ListFilter {
        state: Some(state::DEAD.to_owned()),
        limit: SHOWN,
        ..ListFilter::default()
    };
    let notifications = match app.notifier.store().list(filter).await {
        Ok(list) => list,
        Err(e) => {
            return viewer.unavailable(&Refused::from(e), Some(Nav::DeadLetters), "Dead letters");
        }
    };
    let body = if notifications.is_empty() {
        "<p class=\"empty\">No dead letters: every delivery was sent or is still being tried.</p>".to_owned()
    } else {
        let rows: String = notifications.iter().map(|n| row(&viewer, n)).collect();
        format!(
            "<p>Deliveries given up after a permanent failure or after <code>delivery.dead_letter_after</code>. \
             Replaying puts a notification's dead deliveries back in the queue with their attempts reset.</p>\
             <div class=\"table\"><table><thead><tr><th scope=\"col\">Notification</th><th scope=\"col\">Alert group</th>\
             <th scope=\"col\">Dead deliveries</th><th scope=\"col\"></th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
    };
    viewer.page(
        StatusCode::OK,
        Some(Nav::DeadLetters),
        "Dead letters",
        done(query).notice(),
        &body,
    )
}

/// `POST /ui/dead-letters/{id}/replay`.
pub(super) async fn replay(
    State(app): State<App>,
    headers: HeaderMap,
    id: IdPath,
    body: Bytes,
) -> Response {
    let Ok(Path(id)) = id else {
        return super::bare(
            StatusCode::NOT_FOUND,
            "No such notification",
            "a notification's id is a number",
        );
    };
    let submitted = match submission(
        &app,
        &headers,
        &format!("/ui/dead-letters/{id}/replay"),
        &body,
    ) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    match replay_dead_letters(&app.notifier, id, &submitted.by).await {
        Ok(_) => see_other("/ui/dead-letters?done=replayed"),
        Err(refused) => submitted.viewer.refused(&refused, "/ui/dead-letters"),
    }
}
