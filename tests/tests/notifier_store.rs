//! The notifier's stores, SQLite and PostgreSQL, held to the same contract; and two
//! replicas sharing one PostgreSQL: a copy accepted by both is stored once, a delivery is
//! claimed by one of them only, a claim whose replica died is taken over when it expires,
//! one alert group opens one incident, a due level is told once, and a window's summary
//! is made once.

use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::Secret;
use mcpwatch_notifier::incident::{
    AckAction, AckRefused, AckRequest, Event, Level, Policies, Policy, Touch,
};
use mcpwatch_notifier::maintenance::NewWindow;
use mcpwatch_notifier::store::{
    Accepted, Body, DedupKey, ListFilter, NewDelivery, NewNotification, Outcome, PostgresStore,
    SqliteStore, Store,
};
use mcpwatch_notifier::time::now_ms;
use mcpwatch_notifier::timeline::Note;
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};

fn key(name: &str) -> DedupKey {
    let mut bytes = [0_u8; 32];
    bytes[..name.len()].copy_from_slice(name.as_bytes());
    DedupKey(bytes)
}

fn notification(name: &str, at: i64) -> NewNotification {
    NewNotification {
        dedup_key: key(name),
        receiver: "mcp".into(),
        group_key: format!("{{}}:{{alertname=\"{name}\"}}"),
        status: "firing".into(),
        alert_count: 1,
        payload: Body::compress(r#"{"version":"4","alerts":[{"labels":{"alertname":"X"}}]}"#),
        deliveries: ["chat", "log"]
            .into_iter()
            .map(|channel| NewDelivery {
                channel: channel.into(),
                alerts: vec![0],
                hold: None,
            })
            .collect(),
        received_at: at,
        dedup_window: Duration::from_secs(60),
        incidents: Vec::new(),
        components: None,
        sender: 1,
    }
}

fn budgets() -> Vec<(String, usize)> {
    vec![("chat".into(), 10), ("log".into(), 10)]
}

const LEASE: Duration = Duration::from_secs(60);

/// The contract every store keeps, from accepting to pruning.
async fn contract(store: Arc<dyn Store>) {
    // Two hours back: a shared store retires a removed channel's deliveries only after an
    // hour.
    let now = now_ms() - 7_200_000;
    let Accepted::Stored(first) = store.accept(notification("k1", now)).await.expect("accept")
    else {
        panic!("the first copy is stored")
    };
    assert_eq!(
        store
            .accept(notification("k1", now + 1_000))
            .await
            .expect("copy"),
        Accepted::Duplicate(first)
    );
    // (From another receiver: no newer state of the first one's alert group.)
    let Accepted::Stored(later) = store
        .accept(NewNotification {
            receiver: "other".into(),
            ..notification("k1", now + 120_000)
        })
        .await
        .expect("after the window")
    else {
        panic!("a copy after the dedup window is stored again")
    };
    assert!(later > first);

    // Claimed before the later notification is due: the first one's two deliveries.
    let batch = store
        .claim(now + 1, budgets(), 16, LEASE)
        .await
        .expect("claim");
    assert_eq!(batch.claimed.len(), 2, "{:?}", batch.claimed);
    assert!(
        batch
            .claimed
            .iter()
            .all(|c| c.notification_id == first && c.attempt == 1)
    );
    assert_eq!(batch.next_due, Some(now + 1 + 60_000));
    let json = batch.claimed[0].payload.json().expect("body");
    assert!(json.contains("alertname"), "{json}");
    let (chat, log) = {
        let chat = batch
            .claimed
            .iter()
            .find(|c| c.channel == "chat")
            .expect("chat");
        let log = batch
            .claimed
            .iter()
            .find(|c| c.channel == "log")
            .expect("log");
        (chat.id, log.id)
    };
    // Nothing more is due at the same moment: claimed deliveries are not claimed twice.
    let again = store
        .claim(now + 2, budgets(), 16, LEASE)
        .await
        .expect("claim");
    assert!(again.claimed.is_empty(), "{:?}", again.claimed);

    assert!(
        store
            .complete(chat, 1, Outcome::Delivered)
            .await
            .expect("done")
    );
    assert!(
        !store
            .complete(chat, 1, Outcome::Delivered)
            .await
            .expect("twice"),
        "a second completion of one claim is refused"
    );
    assert!(
        !store
            .complete(log, 2, Outcome::Delivered)
            .await
            .expect("wrong attempt"),
        "only the claim that made the attempt records it"
    );

    // The log delivery's claim expires: it is claimed again, as attempt 2, and the first
    // claim can no longer record anything.
    let batch = store
        .claim(now + 61_000, budgets(), 16, LEASE)
        .await
        .expect("expired");
    assert_eq!(batch.claimed.len(), 1, "{:?}", batch.claimed);
    assert_eq!((batch.claimed[0].id, batch.claimed[0].attempt), (log, 2));
    assert!(
        !store
            .complete(log, 1, Outcome::Delivered)
            .await
            .expect("late")
    );
    assert!(
        store
            .complete(
                log,
                2,
                Outcome::Dead {
                    error: "HTTP 400".into()
                }
            )
            .await
            .expect("dead")
    );
    let dead = store
        .list(ListFilter {
            state: Some("dead".into()),
            limit: 10,
            ..ListFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(dead.iter().map(|n| n.id).collect::<Vec<_>>(), vec![first]);
    let view = store.get(first).await.expect("get").expect("found");
    assert_eq!(view.duplicates, 1);
    assert!(view.payload.is_some());
    let states: Vec<(&str, &str, u32)> = view
        .deliveries
        .iter()
        .map(|d| (d.channel.as_str(), d.state.as_str(), d.attempts))
        .collect();
    assert_eq!(states, vec![("chat", "delivered", 1), ("log", "dead", 2)]);
    assert_eq!(view.deliveries[1].last_error.as_deref(), Some("HTTP 400"));

    // A replayed dead letter is queued afresh.
    assert_eq!(store.replay(first).await.expect("replay"), 1);
    let batch = store
        .claim(now_ms(), budgets(), 16, LEASE)
        .await
        .expect("replayed");
    let mut claimed: Vec<(i64, &str, u32)> = batch
        .claimed
        .iter()
        .map(|c| (c.notification_id, c.channel.as_str(), c.attempt))
        .collect();
    claimed.sort_unstable();
    assert_eq!(
        claimed,
        vec![(first, "log", 1), (later, "chat", 1), (later, "log", 1)]
    );
    for c in &batch.claimed {
        let outcome = if c.channel == "chat" {
            Outcome::Retry {
                at: now_ms() + 3_600_000,
                error: "HTTP 503".into(),
            }
        } else {
            Outcome::Delivered
        };
        assert!(
            store
                .complete(c.id, c.attempt, outcome)
                .await
                .expect("complete")
        );
    }
    let stats = store.stats().await.expect("stats");
    assert!(
        stats.depth.contains(&("chat".into(), "pending".into(), 1)),
        "{:?}",
        stats.depth
    );

    // A channel removed from the configuration: what waits for it is dead-lettered.
    assert_eq!(
        store
            .retire_channels(vec!["log".into()])
            .await
            .expect("retire"),
        1
    );
    // Finished notifications past retention go; the first one (all finished) does, the
    // later one (dead and delivered now) too.
    let pruned = store
        .prune(Duration::from_secs(1), Duration::from_secs(1))
        .await
        .expect("prune");
    assert_eq!(pruned, 2);
    assert!(store.get(first).await.expect("get").is_none());
}

/// One state of alert group `group`: `n` tells it apart from the group's other states.
fn state_of(group: &str, n: usize, at: i64) -> NewNotification {
    NewNotification {
        dedup_key: key(&format!("{group}/{n}")),
        group_key: format!("{{}}:{{alertname=\"{group}\"}}"),
        status: if n.is_multiple_of(2) {
            "firing"
        } else {
            "resolved"
        }
        .into(),
        deliveries: vec![NewDelivery {
            channel: "chat".into(),
            alerts: vec![0],
            hold: None,
        }],
        ..notification(group, at)
    }
}

fn stored(accepted: Accepted) -> i64 {
    match accepted {
        Accepted::Stored(id) => id,
        Accepted::Duplicate(id) => panic!("a new state was taken for a copy of {id}"),
    }
}

/// The claimable deliveries to `chat`, as (notification, attempt), claimed at `at` with
/// `lease`, by each store in turn.
async fn claim_chat(stores: &[&Arc<dyn Store>], at: i64, lease: Duration) -> Vec<(i64, i64, u32)> {
    let mut claimed = Vec::new();
    for store in stores {
        let batch = store
            .claim(at, vec![("chat".into(), 10)], 10, lease)
            .await
            .expect("claim");
        claimed.extend(
            batch
                .claimed
                .iter()
                .map(|c| (c.id, c.notification_id, c.attempt)),
        );
    }
    claimed
}

async fn state_of_delivery(store: &Arc<dyn Store>, notification: i64) -> (String, Option<String>) {
    let view = store.get(notification).await.expect("get").expect("found");
    let delivery = &view.deliveries[0];
    (delivery.state.clone(), delivery.last_error.clone())
}

/// One alert group's deliveries to one channel: in the order they were accepted, the
/// latest state winning, across a retry, a crash and (`a`, `b`) two replicas.
async fn ordering(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let now = now_ms();
    let lease = Duration::from_secs(30);

    // A firing notification fails once; its resolve arrives before the retry is due: the
    // resolve goes, the firing one never does.
    let firing = stored(a.accept(state_of("retry", 0, now)).await.expect("firing"));
    let claimed = claim_chat(&[&a], now, lease).await;
    assert_eq!(claimed.iter().map(|c| c.1).collect::<Vec<_>>(), [firing]);
    let (delivery, _, attempt) = claimed[0];
    assert!(
        a.complete(
            delivery,
            attempt,
            Outcome::Retry {
                at: now + 500,
                error: "HTTP 503".into()
            }
        )
        .await
        .expect("retry")
    );
    let resolved = stored(
        b.accept(state_of("retry", 1, now + 100))
            .await
            .expect("resolved"),
    );
    let claimed = claim_chat(&[&b, &a], now + 1_000, lease).await;
    assert_eq!(
        claimed.iter().map(|c| c.1).collect::<Vec<_>>(),
        [resolved],
        "only the resolve goes"
    );
    let (state, error) = state_of_delivery(&a, firing).await;
    assert_eq!(state, "superseded");
    assert!(error.expect("why").contains("newer state"));
    let (delivery, _, attempt) = claimed[0];
    assert!(
        b.complete(delivery, attempt, Outcome::Delivered)
            .await
            .expect("done")
    );
    // Later claims find nothing of the group.
    assert!(claim_chat(&[&a, &b], now + 60_000, lease).await.is_empty());

    // A newer state waits while an older one is being sent; the older one's retry then
    // gives way to it.
    let first = stored(a.accept(state_of("inflight", 0, now)).await.expect("first"));
    let claimed = claim_chat(&[&a], now, lease).await;
    assert_eq!(claimed.iter().map(|c| c.1).collect::<Vec<_>>(), [first]);
    let (delivery, _, attempt) = claimed[0];
    let second = stored(
        b.accept(state_of("inflight", 1, now + 10))
            .await
            .expect("second"),
    );
    assert!(
        claim_chat(&[&a, &b], now + 20, lease).await.is_empty(),
        "the newer state waits for the one being sent"
    );
    assert!(
        a.complete(
            delivery,
            attempt,
            Outcome::Retry {
                at: now + 20,
                error: "HTTP 503".into()
            }
        )
        .await
        .expect("retry")
    );
    let claimed = claim_chat(&[&b, &a], now + 30, lease).await;
    assert_eq!(claimed.iter().map(|c| c.1).collect::<Vec<_>>(), [second]);
    assert_eq!(state_of_delivery(&a, first).await.0, "superseded");

    // Delivered in order: the next state goes once the one before it is delivered.
    let (delivery, _, attempt) = claimed[0];
    let third = stored(
        a.accept(state_of("inflight", 2, now + 40))
            .await
            .expect("third"),
    );
    assert!(claim_chat(&[&a, &b], now + 50, lease).await.is_empty());
    assert!(
        a.complete(delivery, attempt, Outcome::Delivered)
            .await
            .expect("done")
    );
    let claimed = claim_chat(&[&a, &b], now + 60, lease).await;
    assert_eq!(claimed.iter().map(|c| c.1).collect::<Vec<_>>(), [third]);
    let (delivery, _, attempt) = claimed[0];
    assert!(
        b.complete(delivery, attempt, Outcome::Delivered)
            .await
            .expect("done")
    );

    // The sender stops in the middle of an attempt (a crash: its claim is never
    // completed); a newer state arrives meanwhile. When the claim expires the newer state
    // goes, and the interrupted one is not sent after it.
    let interrupted = stored(a.accept(state_of("crash", 0, now)).await.expect("firing"));
    let short = Duration::from_secs(1);
    let claimed = claim_chat(&[&a], now, short).await;
    assert_eq!(
        claimed.iter().map(|c| c.1).collect::<Vec<_>>(),
        [interrupted]
    );
    let (lost, _, lost_attempt) = claimed[0];
    let newer = stored(
        b.accept(state_of("crash", 1, now + 100))
            .await
            .expect("resolved"),
    );
    assert!(claim_chat(&[&b, &a], now + 200, lease).await.is_empty());
    let claimed = claim_chat(&[&b, &a], now + 1_500, lease).await;
    assert_eq!(claimed.iter().map(|c| c.1).collect::<Vec<_>>(), [newer]);
    let (state, _) = state_of_delivery(&a, interrupted).await;
    assert_eq!(state, "superseded");
    let (delivery, _, attempt) = claimed[0];
    // The stopped sender's late word is not recorded.
    assert!(
        !a.complete(lost, lost_attempt, Outcome::Delivered)
            .await
            .expect("late")
    );
    assert!(
        a.complete(delivery, attempt, Outcome::Delivered)
            .await
            .expect("done")
    );

    // A dead letter replayed after a newer state went is superseded, not sent.
    let dead = stored(a.accept(state_of("replay", 0, now)).await.expect("firing"));
    let (delivery, _, attempt) = claim_chat(&[&a], now, lease).await[0];
    assert!(
        a.complete(
            delivery,
            attempt,
            Outcome::Dead {
                error: "HTTP 400".into()
            }
        )
        .await
        .expect("dead")
    );
    let after = stored(
        b.accept(state_of("replay", 1, now + 10))
            .await
            .expect("resolved"),
    );
    let claimed = claim_chat(&[&b], now + 20, lease).await;
    assert_eq!(claimed.iter().map(|c| c.1).collect::<Vec<_>>(), [after]);
    let (delivery, _, attempt) = claimed[0];
    assert!(
        b.complete(delivery, attempt, Outcome::Delivered)
            .await
            .expect("done")
    );
    assert_eq!(
        a.replay(dead).await.expect("replay"),
        0,
        "nothing queued again"
    );
    assert!(claim_chat(&[&a, &b], now_ms(), lease).await.is_empty());
    assert_eq!(state_of_delivery(&a, dead).await.0, "superseded");

    // Twenty states of one group queued while the channel was away, claimed by both
    // replicas at once: the newest alone goes, once.
    let mut states = Vec::new();
    for n in 0_usize..20 {
        let store = if n.is_multiple_of(2) { &a } else { &b };
        states.push(stored(
            store
                .accept(state_of("backlog", n, now + i64::try_from(n).unwrap_or(0)))
                .await
                .expect("state"),
        ));
    }
    let at = now + 100;
    let (only_a, only_b) = ([&a], [&b]);
    let (x, y) = tokio::join!(
        claim_chat(&only_a, at, lease),
        claim_chat(&only_b, at, lease)
    );
    let claimed: Vec<i64> = x.iter().chain(&y).map(|c| c.1).collect();
    assert_eq!(claimed, [states[19]], "the newest state, once");
    for id in &states[..19] {
        assert_eq!(state_of_delivery(&a, *id).await.0, "superseded");
    }

    // Other groups are not held up by this one.
    let other = stored(a.accept(state_of("other", 0, now)).await.expect("other"));
    let claimed = claim_chat(&[&a, &b], now + 200, lease).await;
    assert_eq!(claimed.iter().map(|c| c.1).collect::<Vec<_>>(), [other]);
}

/// Copies and reminders: a copy is a duplicate unless its sender had its answer before the
/// copy arrived; then it is a new sending (Alertmanager sends a reminder only after it had
/// its answer, and retries only when it had none). `a` and `b` are two replicas (or the
/// same store twice); senders 1 and 2 two Alertmanagers.
async fn reminders(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let now = now_ms();
    let copy = |sender: i64, at: i64| NewNotification {
        sender,
        ..notification("reminded", at)
    };
    let first = stored(a.accept(copy(1, now)).await.expect("first"));
    // Sender 1's retry (it had no answer) and sender 2's copy: duplicates.
    assert_eq!(
        b.accept(copy(1, now + 10)).await.expect("retry"),
        Accepted::Duplicate(first)
    );
    assert_eq!(
        a.accept(copy(2, now + 20)).await.expect("replica"),
        Accepted::Duplicate(first)
    );
    a.answered(key("reminded"), first, 1, now + 30)
        .await
        .expect("answered");
    b.answered(key("reminded"), first, 2, now + 30)
        .await
        .expect("answered");
    // A copy that arrived before its sender's answer was given is one of the same sending,
    // however late it is stored.
    assert_eq!(
        a.accept(copy(1, now + 25)).await.expect("in flight"),
        Accepted::Duplicate(first)
    );
    // Both answered: the next copy of either is a reminder, stored and sent again; the
    // other's copy of that reminder is a duplicate of it.
    let reminder = stored(b.accept(copy(2, now + 4_000)).await.expect("reminder"));
    assert!(reminder > first);
    assert_eq!(
        a.accept(copy(1, now + 4_010))
            .await
            .expect("replica's reminder"),
        Accepted::Duplicate(reminder)
    );
    b.answered(key("reminded"), reminder, 2, now + 4_015)
        .await
        .expect("answered");
    // An answer recorded for an older notification of the key changes nothing.
    a.answered(key("reminded"), first, 1, now + 4_016)
        .await
        .expect("stale");
    assert_eq!(
        a.accept(copy(1, now + 4_020)).await.expect("retry"),
        Accepted::Duplicate(reminder)
    );
    a.answered(key("reminded"), reminder, 1, now + 4_030)
        .await
        .expect("answered");
    let third = stored(a.accept(copy(1, now + 8_000)).await.expect("third"));
    assert!(third > reminder);
}

fn policy() -> Policy {
    let level = |after: u64, channel: &str| Level {
        name: None,
        after: Duration::from_secs(after),
        channels: vec![channel.to_owned()],
        schedule: None,
    };
    Policy {
        name: "default".into(),
        levels: vec![level(0, "l1"), level(60, "l2"), level(60, "l3")],
        repeat_last_level: None,
        severities: Arc::default(),
        wait_for_remediation: false,
    }
}

/// Notification `i` of one alert group, firing or resolved, climbing the policy.
fn of_group(i: usize, at: i64, firing: bool) -> NewNotification {
    let mut n = notification(&format!("incident-{i}"), at);
    n.group_key = "{}:{alertname=\"GatewayDown\"}".into();
    n.deliveries.clear();
    n.incidents = vec![Touch {
        policy: policy(),
        alerts: vec![0],
        firing,
        quiet_when_resolved: Vec::new(),
        hold: None,
        severity: Some("critical".into()),
        title: "GatewayDown".into(),
        briefs: Vec::new(),
        remediations: Vec::new(),
        remediation_wait: Duration::ZERO,
    }];
    n
}

/// Incidents, their escalation and acknowledgement, and maintenance windows: the same on
/// every store; `a` and `b` are two replicas (or the same store twice).
async fn incidents_and_windows(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let policies: Arc<Policies> = Arc::new([("default".to_owned(), policy())].into());
    let start = now_ms() - 3_600_000;
    // Ten notifications of one group reach the replicas at once: one incident opens.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.accept(of_group(i, start, true)).await
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("accept");
    }
    let open = a.incidents(true, 10).await.expect("incidents");
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0].id;
    assert_eq!((open[0].level, open[0].state), (1, "open"));
    assert_eq!(
        a.next_escalation().await.expect("next"),
        Some(start + 60_000)
    );

    // Both replicas escalate at once when level 2 is due: it is told once.
    let due = start + 61_000;
    let (x, y) = tokio::join!(
        a.escalate(due, policies.clone(), 10),
        b.escalate(due, policies.clone(), 10)
    );
    let mut told: Vec<_> = x
        .expect("escalate")
        .into_iter()
        .chain(y.expect("escalate"))
        .collect();
    assert_eq!(told, [(id, "default".to_owned(), 2)]);
    assert!(
        a.escalate(due, policies.clone(), 10)
            .await
            .expect("again")
            .is_empty()
    );
    told.clear();

    // A link of an older generation is a replay; the API's ack works once.
    let ack = |generation| AckRequest {
        action: AckAction::Ack,
        by: "alice".into(),
        generation,
        now: due + 1000,
    };
    assert_eq!(
        b.acknowledge(id, ack(Some(7)), policies.clone())
            .await
            .expect("ack"),
        Err(AckRefused::Replayed)
    );
    let acked = b
        .acknowledge(id, ack(Some(0)), policies.clone())
        .await
        .expect("ack")
        .expect("acknowledged");
    assert_eq!((acked.state, acked.generation), ("acknowledged", 1));
    assert!(matches!(
        a.acknowledge(id, ack(None), policies.clone())
            .await
            .expect("ack"),
        Err(AckRefused::AlreadyAcknowledged { .. })
    ));
    assert_eq!(
        a.acknowledge(id + 1000, ack(None), policies.clone())
            .await
            .expect("ack"),
        Err(AckRefused::NotFound(id + 1000))
    );
    assert!(
        a.escalate(due + 999_999, policies.clone(), 10)
            .await
            .expect("none")
            .is_empty()
    );

    // Resolved: the incident closes; those told hear it.
    a.accept(of_group(99, due + 2000, false))
        .await
        .expect("resolve");
    assert!(a.incidents(true, 10).await.expect("open").is_empty());
    let closed = a.incident(id).await.expect("incident").expect("found");
    assert_eq!(closed.state, "resolved");
    // The timeline: one opening however many copies raced, each step once, in order, the
    // same from both replicas.
    let timeline = a.timeline(id).await.expect("timeline");
    assert_eq!(timeline, b.timeline(id).await.expect("timeline"));
    let count = |kind: &str| timeline.iter().filter(|e| e.kind == kind).count();
    assert_eq!(
        [
            count("opened"),
            count("alerts_changed"),
            count("escalated"),
            count("acknowledged"),
            count("resolved"),
            count("told"),
        ],
        [1, 9, 1, 1, 1, 15],
        "{timeline:?}"
    );
    let steps: Vec<&str> = timeline
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| !matches!(*k, "told" | "alerts_changed"))
        .collect();
    assert_eq!(steps, ["opened", "escalated", "acknowledged", "resolved"]);
    let acknowledged = timeline
        .iter()
        .find(|e| e.kind == "acknowledged")
        .expect("ack");
    assert_eq!(acknowledged.actor.as_deref(), Some("alice"));
    assert!(timeline.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(a.timeline(id + 1000).await.expect("none").is_empty());
    let mut events = Vec::new();
    for _ in 0..5 {
        let batch = a
            .claim(
                now_ms(),
                vec![("l1".into(), 100), ("l2".into(), 100), ("l3".into(), 100)],
                300,
                LEASE,
            )
            .await
            .expect("claim");
        events.extend(batch.claimed.into_iter().map(|c| (c.channel, c.event)));
    }
    let kinds = |channel: &str| {
        events
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, e)| match e {
                Some(Event::Incident { step, .. }) => format!("{step:?}"),
                Some(Event::Acknowledged { .. }) => "Acknowledged".into(),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let l1 = kinds("l1");
    assert_eq!(l1.iter().filter(|k| *k == "Opened").count(), 1, "{l1:?}");
    assert_eq!(l1.iter().filter(|k| *k == "Update").count(), 9, "{l1:?}");
    assert_eq!(kinds("l2"), ["Escalated", "Acknowledged", "Resolved"]);
    assert!(kinds("l3").is_empty());

    // A one-off window holds a delivery; released once it ends: one summary.
    let window = a
        .add_window(NewWindow {
            starts_at: start,
            ends_at: now_ms() + 60_000,
            matchers: vec!["service=\"mcp\"".into()],
            author: "ops".into(),
            reason: "upgrade".into(),
            hold_critical: false,
            created_at: start,
        })
        .await
        .expect("window");
    assert_eq!(b.windows(now_ms()).await.expect("windows").len(), 1);
    let key = format!("#{}", window.id);
    let mut held = notification("held-1", now_ms());
    for delivery in &mut held.deliveries {
        delivery.hold = Some(key.clone());
    }
    a.accept(held).await.expect("held");
    assert_eq!(b.held().await.expect("held"), [(key.clone(), 1)]);
    // Not released while the store says the window goes on, whatever a replica thinks.
    assert_eq!(a.release(key.clone(), now_ms()).await.expect("release"), 0);
    assert_eq!(b.held().await.expect("held"), [(key.clone(), 1)]);
    let ended = b
        .end_window(window.id, now_ms())
        .await
        .expect("end")
        .expect("window");
    assert!(ended.window.ends_at <= now_ms());
    let (x, y) = tokio::join!(
        a.release(key.clone(), now_ms()),
        b.release(key.clone(), now_ms())
    );
    assert_eq!(x.expect("release") + y.expect("release"), 2, "chat and log");
    assert!(a.held().await.expect("held").is_empty());
    let batch = a
        .claim(now_ms(), budgets(), 10, LEASE)
        .await
        .expect("claim");
    let summaries: Vec<_> = batch
        .claimed
        .iter()
        .filter(|c| matches!(&c.event, Some(Event::Summary { window, held }) if *window == key && held.len() == 1))
        .collect();
    assert_eq!(summaries.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_incidents_and_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("notifier.db")).expect("open"));
    incidents_and_windows(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_incidents_and_windows_shared_by_replicas() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = Secret::new(pg.owned_database("incidents").await);
    let (a, b) = tokio::join!(PostgresStore::open(&dsn, 4), PostgresStore::open(&dsn, 4));
    incidents_and_windows(
        Arc::new(a.expect("replica a")),
        Arc::new(b.expect("replica b")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tells_reminders_from_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("notifier.db")).expect("open"));
    reminders(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tells_reminders_from_copies_across_replicas() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = Secret::new(pg.owned_database("reminders").await);
    let (a, b) = tokio::join!(PostgresStore::open(&dsn, 4), PostgresStore::open(&dsn, 4));
    reminders(
        Arc::new(a.expect("replica a")),
        Arc::new(b.expect("replica b")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_each_group_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("notifier.db")).expect("open"));
    ordering(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_each_group_in_order_across_replicas() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = Secret::new(pg.owned_database("ordering").await);
    let (a, b) = tokio::join!(PostgresStore::open(&dsn, 4), PostgresStore::open(&dsn, 4));
    ordering(
        Arc::new(a.expect("replica a")),
        Arc::new(b.expect("replica b")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("notifier.db")).expect("open");
    contract(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_contract_and_replicas_share_it() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = Secret::new(pg.owned_database("notifier").await);
    // Two replicas starting together: the schema is created once.
    let (a, b) = tokio::join!(PostgresStore::open(&dsn, 4), PostgresStore::open(&dsn, 4));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (
        Arc::new(a.expect("replica a")),
        Arc::new(b.expect("replica b")),
    );
    contract(a.clone()).await;

    // Each copy reaches both replicas at once (Alertmanager's HA pair): stored once.
    let now = now_ms();
    let mut tasks = Vec::new();
    for i in 0..25 {
        for store in [&a, &b] {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.accept(notification(&format!("r{i}"), now)).await
            }));
        }
    }
    let (mut stored, mut duplicates) = (Vec::new(), 0);
    for task in tasks {
        match task.await.expect("join").expect("accept") {
            Accepted::Stored(id) => stored.push(id),
            Accepted::Duplicate(_) => duplicates += 1,
        }
    }
    assert_eq!((stored.len(), duplicates), (25, 25));

    // Both replicas claim at once: each delivery goes to one of them.
    let claim = |store: Arc<dyn Store>| async move {
        let mut ids = Vec::new();
        for _ in 0..10 {
            let batch = store
                .claim(now_ms(), budgets(), 8, Duration::from_secs(2))
                .await
                .expect("claim");
            ids.extend(batch.claimed.iter().map(|c| (c.id, c.attempt)));
        }
        ids
    };
    let (from_a, from_b) = tokio::join!(claim(a.clone()), claim(b.clone()));
    // The same attempt of a delivery is never claimed twice. (On a slow machine a claim may
    // expire during the loop and be taken again: that is the next attempt.)
    let mut attempts: Vec<(i64, u32)> = from_a.iter().chain(&from_b).copied().collect();
    attempts.sort_unstable();
    let total = attempts.len();
    attempts.dedup();
    assert_eq!(
        attempts.len(),
        total,
        "an attempt was claimed by both replicas"
    );
    let mut latest: std::collections::BTreeMap<i64, u32> = std::collections::BTreeMap::new();
    for (id, attempt) in &attempts {
        let entry = latest.entry(*id).or_default();
        *entry = (*entry).max(*attempt);
    }
    assert_eq!(latest.len(), 50, "a: {}, b: {}", from_a.len(), from_b.len());
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both replicas took a share"
    );

    // Replica a dies holding its claims: b takes them over once they expire.
    drop(a);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let mut taken = Vec::new();
    for _ in 0..10 {
        let batch = b
            .claim(now_ms(), budgets(), 16, LEASE)
            .await
            .expect("take over");
        taken.extend(batch.claimed.iter().map(|c| (c.id, c.attempt)));
    }
    let mut expected: Vec<(i64, u32)> = latest
        .iter()
        .map(|(id, attempt)| (*id, attempt + 1))
        .collect();
    expected.sort_unstable();
    taken.sort_unstable();
    assert_eq!(taken, expected, "every expired claim is taken again, once");
}

/// Notification `i` of alert group `group`, firing or resolved, climbing a policy that
/// waits for remediation action `fix`.
fn remediated(group: &str, i: usize, at: i64, firing: bool) -> NewNotification {
    let mut n = of_group(i, at, firing);
    n.dedup_key = key(&format!("{group}-{i}"));
    n.group_key = format!("{{}}:{{alertname=\"{group}\"}}");
    let touch = &mut n.incidents[0];
    touch.policy.wait_for_remediation = true;
    touch.remediations = vec!["fix".into()];
    touch.remediation_wait = Duration::from_secs(90);
    n
}

/// The timeline's kinds and details.
async fn steps_of(store: &Arc<dyn Store>, incident: i64) -> Vec<(String, String)> {
    store
        .timeline(incident)
        .await
        .expect("timeline")
        .into_iter()
        .map(|e| (e.kind, e.detail.unwrap_or_default()))
        .collect()
}

fn step(kind: &str, detail: &str) -> (String, String) {
    (kind.to_owned(), detail.to_owned())
}

/// Remediation runs: queued when an incident opens, each claimed by one replica however
/// they race, ended only by their owner, recorded abandoned (not run again) once a claim's
/// lease passes, not run for an incident that resolved first; a policy waiting for them
/// tells its first level when the last one ends.
async fn remediations(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let policies: Arc<Policies> = Arc::new([("default".to_owned(), policy())].into());
    let leases: std::collections::BTreeMap<String, Duration> =
        [("fix".to_owned(), Duration::from_secs(60))].into();
    let start = now_ms() - 3_600_000;
    let mut ids = Vec::new();
    for i in 0..8 {
        let group = format!("Remedy{i}");
        stored(
            a.accept(remediated(&group, i, start, true))
                .await
                .expect("accept"),
        );
        let open = b.incidents(true, 100).await.expect("incidents");
        let id = open
            .iter()
            .find(|v| v.group_key.contains(&group))
            .expect("opened")
            .id;
        assert_eq!(
            steps_of(&b, id).await,
            [
                step("opened", ""),
                step("remediation_queued", "fix; level 1 is told when it ends")
            ]
        );
        ids.push(id);
    }

    // Both replicas claim at once: each run is claimed once.
    let now = start + 1_000;
    let (x, y) = tokio::join!(
        a.claim_remediations(now, "a".into(), leases.clone(), 16, policies.clone()),
        b.claim_remediations(now, "b".into(), leases.clone(), 16, policies.clone())
    );
    let (x, y) = (x.expect("claim a"), y.expect("claim b"));
    assert!(x.ended.is_empty() && y.ended.is_empty());
    let mut claimed: Vec<(i64, &str)> = x
        .claimed
        .iter()
        .map(|c| (c.incident, "a"))
        .chain(y.claimed.iter().map(|c| (c.incident, "b")))
        .collect();
    claimed.sort_unstable();
    assert_eq!(
        claimed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids,
        "{claimed:?}"
    );
    assert!(
        x.claimed
            .iter()
            .chain(&y.claimed)
            .all(|c| c.action == "fix" && c.alerts == [0])
    );
    let again = a
        .claim_remediations(now + 1, "a".into(), leases.clone(), 16, policies.clone())
        .await
        .expect("claim");
    assert_eq!(again, Default::default());

    // Only its owner ends a run, once; the waiting first level is told then.
    let (first, owner) = claimed[0];
    let other = if owner == "a" { "b" } else { "a" };
    let finish = async |store: &Arc<dyn Store>, incident: i64, owner: &str, at: i64| {
        store
            .finish_remediation(
                incident,
                "fix".into(),
                owner.into(),
                at,
                "succeeded",
                Note::new("remediation_finished").detail("fix: succeeded"),
                policies.clone(),
            )
            .await
    };
    assert!(!finish(&a, first, other, now + 2_000).await.expect("finish"));
    assert!(finish(&b, first, owner, now + 2_000).await.expect("finish"));
    assert!(!finish(&a, first, owner, now + 2_001).await.expect("finish"));
    let steps = steps_of(&a, first).await;
    assert_eq!(
        steps[2..4],
        [
            step("remediation_finished", "fix: succeeded"),
            step("escalated", "the remediation ended")
        ],
        "{steps:?}"
    );
    assert_eq!(steps[4].0, "told");
    assert_eq!(steps.len(), 5, "{steps:?}");

    // The other runs' owners stopped: once their lease passed, each is recorded
    // abandoned, the first level told, and nothing is claimed again.
    let late = now + 61_000;
    let (x, y) = tokio::join!(
        a.claim_remediations(late, "c".into(), leases.clone(), 16, policies.clone()),
        b.claim_remediations(late, "d".into(), leases.clone(), 16, policies.clone())
    );
    let (x, y) = (x.expect("claim"), y.expect("claim"));
    assert!(x.claimed.is_empty() && y.claimed.is_empty());
    let mut ended: Vec<(i64, String, &str)> = x.ended.into_iter().chain(y.ended).collect();
    ended.sort_unstable();
    let expected: Vec<(i64, String, &str)> = claimed[1..]
        .iter()
        .map(|(id, _)| (*id, "fix".to_owned(), "abandoned"))
        .collect();
    assert_eq!(ended, expected);
    for (id, owner) in &claimed[1..] {
        let steps = steps_of(&b, *id).await;
        assert_eq!(
            steps[2],
            step(
                "remediation_skipped",
                &format!(
                    "fix: abandoned: the notifier running it ({owner}) stopped before it ended; it is not run again"
                )
            ),
            "{steps:?}"
        );
        assert_eq!(steps[3], step("escalated", "the remediation ended"));
        assert!(!finish(&a, *id, owner, late + 1).await.expect("finish"));
    }
    let later = a
        .claim_remediations(
            late + 120_000,
            "a".into(),
            leases.clone(),
            16,
            policies.clone(),
        )
        .await
        .expect("claim");
    assert_eq!(later, Default::default());

    // An incident that resolved before its run was claimed: the run is not started.
    stored(
        a.accept(remediated("Flap", 0, late, true))
            .await
            .expect("fires"),
    );
    let flap = a
        .incidents(true, 100)
        .await
        .expect("incidents")
        .iter()
        .find(|v| v.group_key.contains("Flap"))
        .expect("opened")
        .id;
    stored(
        a.accept(remediated("Flap", 1, late + 10, false))
            .await
            .expect("resolves"),
    );
    let claims = b
        .claim_remediations(late + 20, "b".into(), leases.clone(), 16, policies.clone())
        .await
        .expect("claim");
    assert!(claims.claimed.is_empty());
    assert_eq!(claims.ended, [(flap, "fix".to_owned(), "refused")]);
    assert_eq!(
        steps_of(&a, flap).await,
        [
            step("opened", ""),
            step("remediation_queued", "fix; level 1 is told when it ends"),
            step("resolved", ""),
            step(
                "remediation_skipped",
                "fix: the incident resolved before it ran"
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runs_each_remediation_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("notifier.db")).expect("open"));
    remediations(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_each_remediation_once_across_replicas() {
    let pg = PostgresServer::start(PostgresOptions::default()).await;
    let dsn = Secret::new(pg.owned_database("remediations").await);
    let (a, b) = tokio::join!(PostgresStore::open(&dsn, 4), PostgresStore::open(&dsn, 4));
    remediations(
        Arc::new(a.expect("replica a")),
        Arc::new(b.expect("replica b")),
    )
    .await;
}
