//! Edges of the status page's history and of status updates, driven through the stores
//! (SQLite, and two replicas on one PostgreSQL) with times chosen by the test: an alert
//! group's older notification stored after its newer one, two groups of one component
//! committed in the other order than their times, 90 days of history pruned, and status
//! updates due for more incidents than one tick takes.

use std::sync::Arc;
use std::time::Duration;

use mcpwatch_notifier::incident::{AckAction, AckRequest, Level, Policies, Policy, Touch};
use mcpwatch_notifier::severity::{
    ComponentState, Severities, SeverityConfig, SeverityLevelConfig,
};
use mcpwatch_notifier::statuspage::{self, GroupStatus, HISTORY_DAYS};
use mcpwatch_notifier::store::{
    Accepted, Body, DedupKey, NewNotification, PostgresStore, SqliteStore, Store,
};
use mcpwatch_notifier::time::now_ms;
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};

const DAY: i64 = 86_400_000;

fn key(name: &str) -> DedupKey {
    let digest = mcpwatch_core::fnv::hash(name.as_bytes()).to_le_bytes();
    let mut bytes = [0_u8; 32];
    bytes[..8].copy_from_slice(&digest);
    bytes[8..8 + name.len().min(24)].copy_from_slice(&name.as_bytes()[..name.len().min(24)]);
    DedupKey(bytes)
}

/// Notification `name` of alert group `group`, received at `at`, saying `components` of
/// the status page (none: every alert of it resolved).
fn said(
    name: &str,
    group: &str,
    at: i64,
    components: &[(&str, ComponentState)],
) -> NewNotification {
    NewNotification {
        dedup_key: key(name),
        receiver: "mcp".into(),
        group_key: group.into(),
        status: if components.is_empty() {
            "resolved"
        } else {
            "firing"
        }
        .into(),
        alert_count: 1,
        payload: Body::compress(r#"{"version":"4","alerts":[{"labels":{"alertname":"X"}}]}"#),
        deliveries: Vec::new(),
        received_at: at,
        dedup_window: Duration::from_secs(60),
        incidents: Vec::new(),
        components: Some(
            components
                .iter()
                .map(|(component, state)| GroupStatus {
                    component: (*component).into(),
                    state: *state,
                    names: vec!["X".into()],
                })
                .collect(),
        ),
        sender: 1,
    }
}

async fn store(a: &Arc<dyn Store>, n: NewNotification) {
    assert!(matches!(
        a.accept(n).await.expect("accept"),
        Accepted::Stored(_)
    ));
}

/// The components not operational now, with their states.
async fn current(a: &Arc<dyn Store>) -> Vec<(String, ComponentState)> {
    a.status(now_ms() - 90 * DAY)
        .await
        .expect("status")
        .current
        .into_iter()
        .map(|c| (c.component, c.state))
        .collect()
}

/// A group's resolve stored before the firing notification it followed (two replicas took
/// them at once, or Alertmanager's retry of the firing one came last): the component is
/// operational, as the group's newest word says.
async fn an_older_notification_of_a_group_changes_nothing(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let t = now_ms() - 60_000;
    // A group the page has never heard of.
    store(&a, said("new-resolved", "{}:new", t + 2_000, &[])).await;
    store(
        &b,
        said(
            "new-firing",
            "{}:new",
            t + 1_000,
            &[("gateway", ComponentState::Outage)],
        ),
    )
    .await;
    assert_eq!(current(&a).await, []);
    // A group the page knows: firing, then resolved, then the firing copy of a moment
    // before the resolve.
    store(
        &a,
        said(
            "known-1",
            "{}:known",
            t,
            &[("db", ComponentState::Degraded)],
        ),
    )
    .await;
    store(&a, said("known-3", "{}:known", t + 3_000, &[])).await;
    store(
        &b,
        said(
            "known-2",
            "{}:known",
            t + 2_000,
            &[("db", ComponentState::Outage)],
        ),
    )
    .await;
    assert_eq!(current(&b).await, []);
    // Its next word counts.
    store(
        &b,
        said(
            "known-4",
            "{}:known",
            t + 4_000,
            &[("db", ComponentState::Outage)],
        ),
    )
    .await;
    assert_eq!(
        current(&a).await,
        [("db".to_owned(), ComponentState::Outage)]
    );
}

/// Two groups of one component whose notifications commit in the other order than they
/// were received: the history ends in the state the page shows now, since when it says.
async fn the_history_ends_where_the_page_is(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let t = now_ms() - 60_000;
    store(
        &a,
        said("b-firing", "{}:b", t, &[("api", ComponentState::Outage)]),
    )
    .await;
    // Group b resolves, received after group a fired, but committed first.
    store(&b, said("b-resolved", "{}:b", t + 2_000, &[])).await;
    store(
        &a,
        said(
            "a-firing",
            "{}:a",
            t + 1_000,
            &[("api", ComponentState::Outage)],
        ),
    )
    .await;
    assert!(
        current(&a)
            .await
            .contains(&("api".to_owned(), ComponentState::Outage))
    );
    let now = now_ms();
    let snapshot = b.status(now - 90 * DAY).await.expect("status");
    let changes = &snapshot.changes["api"];
    assert_eq!(
        changes.last().map(|c| c.state),
        Some(ComponentState::Outage),
        "{changes:?}"
    );
    // Every moment since the first change is known once, and in outage (each day's
    // seconds are whole: a minute across midnight may count one less).
    let days = statuspage::days(changes, now);
    let known: u64 = days.iter().map(|d| d.known_seconds).sum();
    let outage: u64 = days.iter().map(|d| d.outage_seconds).sum();
    let elapsed = u64::try_from((now - t) / 1000).expect("positive");
    assert!(known == elapsed || known + 1 == elapsed, "{days:?}");
    assert_eq!(outage, known);
}

/// A component in outage from 100 days ago until 50 days ago: after pruning, the first 40
/// of the 90 days are still outage, not "no data".
async fn pruning_keeps_the_state_the_history_starts_in(a: Arc<dyn Store>) {
    let now = now_ms();
    store(
        &a,
        said(
            "old-firing",
            "{}:old",
            now - 100 * DAY,
            &[("search", ComponentState::Outage)],
        ),
    )
    .await;
    store(&a, said("old-resolved", "{}:old", now - 50 * DAY, &[])).await;
    let outage_days = |snapshot: &statuspage::Snapshot| {
        let days = statuspage::days(&snapshot.changes["search"], now);
        assert_eq!(days.len(), HISTORY_DAYS);
        (
            days.iter()
                .filter(|d| d.known_seconds == 86_400 && d.outage_seconds == 86_400)
                .count(),
            days.iter().filter(|d| d.known_seconds == 0).count(),
        )
    };
    let before = outage_days(&a.status(now - 90 * DAY).await.expect("status"));
    // Days -89 to -51 whole, day -50 in part; nothing unknown.
    assert_eq!(before, (39, 0));
    a.prune(Duration::from_secs(7 * 86_400), Duration::from_secs(60))
        .await
        .expect("prune");
    let after = outage_days(&a.status(now - 90 * DAY).await.expect("status"));
    assert_eq!(after, before);
}

fn sqlite() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("notifier.db")).expect("open");
    (dir, Arc::new(store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_notification_of_a_group_changes_nothing_on_sqlite() {
    let (_dir, a) = sqlite();
    an_older_notification_of_a_group_changes_nothing(a.clone(), a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_ends_where_the_page_is_on_sqlite() {
    let (_dir, a) = sqlite();
    the_history_ends_where_the_page_is(a.clone(), a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_the_state_the_history_starts_in_on_sqlite() {
    let (_dir, a) = sqlite();
    pruning_keeps_the_state_the_history_starts_in(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_history_on_two_replicas_on_postgres() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = mcpwatch_core::Secret::new(pg.owned_database("notifier").await);
    let (a, b) = tokio::join!(PostgresStore::open(&dsn, 4), PostgresStore::open(&dsn, 4));
    let a: Arc<dyn Store> = Arc::new(a.expect("a"));
    let b: Arc<dyn Store> = Arc::new(b.expect("b"));
    an_older_notification_of_a_group_changes_nothing(a.clone(), b.clone()).await;
    the_history_ends_where_the_page_is(a.clone(), b.clone()).await;
    pruning_keeps_the_state_the_history_starts_in(a.clone()).await;
    what_waited_for_the_incident_comes_after_it(a, b).await;
}

/// A policy of `levels` levels an hour apart, with a status update every second for
/// critical incidents.
fn updating(name: &str, levels: usize) -> Policy {
    let severities = SeverityConfig {
        levels: vec![SeverityLevelConfig {
            name: "critical".into(),
            values: Vec::new(),
            status: ComponentState::Outage,
            updates_every: Some(Duration::from_secs(1)),
        }],
        ..SeverityConfig::default()
    };
    Policy {
        name: name.into(),
        levels: (0..levels)
            .map(|i| Level {
                name: None,
                after: Duration::from_secs(if i == 0 { 0 } else { 3600 }),
                channels: vec!["log".into()],
                schedule: None,
            })
            .collect(),
        repeat_last_level: None,
        severities: Arc::new(Severities::new(&severities)),
        wait_for_remediation: false,
    }
}

fn opening(name: &str, policy: &Policy, at: i64) -> NewNotification {
    let mut n = said(name, &format!("{{}}:{name}"), at, &[]);
    n.components = None;
    n.status = "firing".into();
    n.incidents = vec![Touch {
        policy: policy.clone(),
        alerts: vec![0],
        firing: true,
        quiet_when_resolved: Vec::new(),
        hold: None,
        severity: Some("critical".into()),
        title: name.into(),
        briefs: Vec::new(),
        remediations: Vec::new(),
        remediation_wait: Duration::ZERO,
    }];
    n
}

/// The status updates in an incident's timeline.
async fn updates(a: &Arc<dyn Store>, id: i64) -> usize {
    a.timeline(id)
        .await
        .expect("timeline")
        .iter()
        .filter(|e| e.kind == "status_update")
        .count()
}

/// More incidents due than one tick takes: the longest overdue goes first, whether or not
/// a later level of it is due some day. An incident whose policy has a level to come was
/// starved while incidents on their last level were due again at every tick.
async fn the_longest_overdue_update_goes_first(a: Arc<dyn Store>) {
    let climbing = updating("climbing", 2);
    let last = updating("last", 1);
    let policies: Arc<Policies> = Arc::new(
        [
            ("climbing".to_owned(), climbing.clone()),
            ("last".to_owned(), last.clone()),
        ]
        .into(),
    );
    let t = now_ms() - 100_000;
    let Accepted::Stored(_) = a.accept(opening("waiting", &climbing, t)).await.expect("a") else {
        panic!("copy")
    };
    let Accepted::Stored(_) = a
        .accept(opening("busy", &last, t + 50_000))
        .await
        .expect("b")
    else {
        panic!("copy")
    };
    let ids: Vec<(String, i64)> = a
        .incidents(true, 10)
        .await
        .expect("incidents")
        .iter()
        .map(|i| (i.title.clone(), i.id))
        .collect();
    let id = |title: &str| {
        ids.iter()
            .find(|(t, _)| t == title)
            .map(|(_, id)| *id)
            .expect("id")
    };
    // Each tick takes one incident; "waiting" has been due for 99 s, "busy" for 49 s.
    for tick in 0..2 {
        a.escalate(t + 100_000 + tick * 1_100, policies.clone(), 1)
            .await
            .expect("escalate");
    }
    assert_eq!(
        (
            updates(&a, id("waiting")).await,
            updates(&a, id("busy")).await
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_overdue_update_goes_first_on_sqlite() {
    let (_dir, a) = sqlite();
    the_longest_overdue_update_goes_first(a).await;
}

/// An incident's kinds of events, in the timeline's order.
async fn kinds(a: &Arc<dyn Store>, id: i64) -> Vec<String> {
    a.timeline(id)
        .await
        .expect("timeline")
        .into_iter()
        .filter(|e| e.kind != "told")
        .map(|e| e.kind)
        .collect()
}

/// Requests take their time when they arrive and then wait for the incident's lock: an
/// acknowledgement that waited for an escalation, and a resolve that waited for the
/// acknowledgement, are in the timeline after what they waited for, as they happened.
async fn what_waited_for_the_incident_comes_after_it(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let policy = updating("ordered", 2);
    let policies: Arc<Policies> = Arc::new([("ordered".to_owned(), policy.clone())].into());
    let t = now_ms() - 7_200_000;
    let Accepted::Stored(_) = a
        .accept(opening("ordered", &policy, t))
        .await
        .expect("open")
    else {
        panic!("copy")
    };
    let id = a
        .incidents(true, 100)
        .await
        .expect("incidents")
        .iter()
        .find(|i| i.title == "ordered")
        .map(|i| i.id)
        .expect("id");
    // Level 2 is due an hour in; the escalation takes the lock first.
    let climbed = b
        .escalate(t + 3_600_000, policies.clone(), 100)
        .await
        .expect("escalate");
    assert!(
        climbed.iter().any(|(i, _, level)| *i == id && *level == 2),
        "{climbed:?}"
    );
    let ack = AckRequest {
        action: AckAction::Ack,
        by: "alice".into(),
        generation: None,
        now: t + 3_600_000 - 20,
    };
    a.acknowledge(id, ack, policies.clone())
        .await
        .expect("ack")
        .expect("acknowledged");
    b.resolve(id, "bob".into(), t + 3_600_000 - 40, policies, Vec::new())
        .await
        .expect("resolve")
        .expect("resolved");
    let kinds = kinds(&a, id).await;
    let position = |kind: &str| kinds.iter().position(|k| k == kind);
    assert!(
        position("escalated") < position("acknowledged")
            && position("acknowledged") < position("resolved")
            && position("escalated").is_some(),
        "{kinds:?}"
    );
    let entries = a.timeline(id).await.expect("timeline");
    assert!(
        entries.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waited_for_the_incident_comes_after_it_on_sqlite() {
    let (_dir, a) = sqlite();
    what_waited_for_the_incident_comes_after_it(a.clone(), a).await;
}
