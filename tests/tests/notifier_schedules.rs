//! On-call schedules end to end: the `mcpwatch-notifier` binary, a real SMTP server
//! (aiosmtpd) and the Slack and webhook stand-ins. An escalation level targeting a schedule
//! tells whoever is on call at that instant through their own contacts (their email
//! address, a Slack mention); the acknowledgement and the resolve reach the same people the
//! same way, and a person removed from the configuration since is reached through the
//! channel's own recipients. A weekly rotation across a daylight-saving change with an
//! override, through the API at chosen instants and as an iCalendar feed read by an
//! independent parser (Python's `icalendar`).

use std::process::Command;
use std::time::Duration;

use mcpwatch_notifier::time::format_rfc3339;
use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::notifier::{NotifierProcess, payload};
use mcpwatch_tests::smtp::{ReceivedMail, SmtpOptions, SmtpServer};
use mcpwatch_tests::stand_in::HttpStandIn;
use mcpwatch_tests::tools::{pipe, require};
use serde_json::Value;

const TOKEN: &str = "schedule-api-token";
const LIMIT: Duration = Duration::from_secs(30);
/// How long after the test starts the override puts bob on call, and how long after level
/// 1 level 2 is told: level 1 (told as soon as the notifier runs) hears alice, level 2
/// (told at least this long after the start) hears bob.
const HANDOFF_AFTER: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    mcpwatch_notifier::time::now_ms()
}

struct Receivers {
    smtp: SmtpServer,
    slack: HttpStandIn,
    hook: HttpStandIn,
}

/// The configuration of the escalation test: alice is on call by the rotation, bob by an
/// override from `handoff` (Unix ms) on; `with_alice: false` is the same after alice left.
fn escalation_config(receivers: &Receivers, handoff: i64, with_alice: bool) -> String {
    let alice = if with_alice {
        "  alice:\n    name: Alice Example\n    contacts:\n\
         \x20     - {channel: mail, address: alice@example.com}\n\
         \x20     - {channel: chat, slack_member: U0ALICE}\n\
         \x20     - {channel: hook}\n"
    } else {
        ""
    };
    format!(
        "delivery:\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
         api:\n  auth: {{bearer_token: {TOKEN}}}\n\
         channels:\n\
         \x20 mail:\n    email: {{smarthost: '127.0.0.1:{port}', from: alerts@example.com, to: [team@example.com], security: none, allow_insecure: true}}\n\
         \x20 chat:\n    slack: {{url: '{slack}'}}\n\
         \x20 hook:\n    webhook: {{url: '{hook}'}}\n\
         people:\n{alice}\
         \x20 bob:\n    name: Bob Example\n    contacts:\n\
         \x20     - {{channel: mail, address: bob@example.com}}\n\
         \x20     - {{channel: chat, slack_member: U0BOB}}\n\
         \x20 carol:\n    contacts: [{{channel: mail, address: carol@example.com}}]\n\
         schedules:\n  primary:\n    time_zone: Europe/Berlin\n    rotations:\n\
         \x20     - {{members: [{first}], every: weekly, handoff: 'Mon 09:00', start: 2026-01-05}}\n\
         \x20   overrides:\n\
         \x20     - {{person: bob, from: '{from}', until: '{until}', reason: test handoff}}\n\
         escalation_policies:\n  on-call:\n    levels:\n\
         \x20     - {{name: on-call engineer, schedule: primary}}\n\
         \x20     - {{name: on-call engineer again, after: {after}s, schedule: primary}}\n\
         route:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      escalation: on-call\n",
        port = receivers.smtp.port(),
        slack = receivers.slack.endpoint(),
        hook = receivers.hook.endpoint(),
        first = if with_alice { "alice" } else { "carol" },
        from = format_rfc3339(handoff),
        until = format_rfc3339(handoff + 3_600_000),
        after = HANDOFF_AFTER.as_secs(),
    )
}

fn webhook(status: &str) -> Value {
    let labels = [("alertname", "GatewayDown"), ("severity", "critical")];
    payload(
        "mcpwatch",
        "{}:{alertname=\"GatewayDown\"}",
        &[(&labels, status, "2026-11-22T10:00:00Z")],
        "http://am:9093",
    )
}

/// The envelope recipients of each mail, in order.
fn recipients(mails: &[ReceivedMail]) -> Vec<String> {
    mails.iter().map(|m| m.to.join(",")).collect()
}

/// The Slack messages' own text (where the mention is), in order.
fn slack_texts(slack: &HttpStandIn) -> Vec<String> {
    slack
        .requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .map(|r| r.json()["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn hook_events(hook: &HttpStandIn) -> Vec<Value> {
    hook.requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .map(|r| r.json()["mcpwatch"]["event"].clone())
        .collect()
}

async fn api(notifier: &NotifierProcess, method: &str, path: &str) -> (u16, Value) {
    let client = mcpwatch_tests::http::client();
    let url = format!("{}{path}", notifier.url());
    let request = if method == "POST" {
        client.post(url)
    } else {
        client.get(url)
    };
    let response = request
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("API request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_level_tells_whoever_is_on_call_then_and_they_hear_the_rest() {
    let started = now_ms();
    let handoff = started + i64::try_from(HANDOFF_AFTER.as_millis()).expect("ms");
    let receivers = Receivers {
        smtp: SmtpServer::start(SmtpOptions::default()),
        slack: HttpStandIn::slack().await,
        hook: HttpStandIn::webhook().await,
    };
    let notifier = NotifierProcess::start(&escalation_config(&receivers, handoff, true)).await;
    let (status, answer) = notifier.post(&webhook("firing"), None).await;
    assert_eq!(status, 200, "{answer}");
    let posted = now_ms();
    assert!(
        posted < handoff,
        "the notifier took {} ms to start: level 1 was told after the handoff this test's timeline sets",
        posted - started
    );
    // The answer names the channels told now: alice's contacts.
    assert_eq!(
        answer["channels"],
        serde_json::json!(["mail", "chat", "hook"]),
        "{answer}"
    );

    // Level 1: alice, through each of her contacts, and nobody else.
    let (smtp, slack, hook) = (&receivers.smtp, &receivers.slack, &receivers.hook);
    let mails = smtp.wait_for_messages(1, LIMIT).await;
    assert_eq!(recipients(&mails), ["alice@example.com"]);
    assert_eq!(mails[0].header("To").as_deref(), Some("alice@example.com"));
    let text = mails[0].text().unwrap_or_default();
    assert!(
        text.contains("To Alice Example, on call in schedule primary."),
        "{text}"
    );
    slack.wait_for_requests(1, LIMIT).await;
    assert_eq!(slack_texts(slack), ["<@U0ALICE>"]);
    let events = {
        hook.wait_for_requests(1, LIMIT).await;
        hook_events(hook)
    };
    assert_eq!(events[0]["kind"], "opened");
    assert_eq!(
        events[0]["recipient"],
        serde_json::json!({"person": "alice", "name": "Alice Example", "contact": null})
    );
    let incident = events[0]["incident"].as_i64().expect("incident id");

    // Level 2, after the override's start: bob, through his two contacts.
    let mails = smtp.wait_for_messages(2, LIMIT).await;
    assert_eq!(recipients(&mails), ["alice@example.com", "bob@example.com"]);
    slack.wait_for_requests(2, LIMIT).await;
    assert_eq!(slack_texts(slack), ["<@U0ALICE>", "<@U0BOB>"]);
    let title = slack.requests()[1].json()["attachments"][0]["title"].clone();
    assert!(
        title
            .as_str()
            .is_some_and(|t| t.starts_with("[ESCALATED L2]")),
        "{title}"
    );
    let (status, body) = api(&notifier, "GET", &format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["told"],
        serde_json::json!([
            "mail/alice",
            "chat/alice",
            "hook/alice",
            "mail/bob",
            "chat/bob"
        ])
    );
    assert_eq!(body["level"], 2);

    // Acknowledged: everyone told hears it the way they were told.
    let (status, body) = api(
        &notifier,
        "POST",
        &format!("/api/v1/incidents/{incident}/ack"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mails = smtp.wait_for_messages(4, LIMIT).await;
    let mut acked = recipients(&mails[2..]);
    acked.sort();
    assert_eq!(acked, ["alice@example.com", "bob@example.com"]);
    for mail in &mails[2..] {
        let subject = mail.subject().unwrap_or_default();
        assert!(subject.starts_with("[ACKNOWLEDGED]"), "{subject}");
    }
    slack.wait_for_requests(4, LIMIT).await;
    let mut texts = slack_texts(slack)[2..].to_vec();
    texts.sort();
    assert_eq!(texts, ["<@U0ALICE>", "<@U0BOB>"]);
    hook.wait_for_requests(2, LIMIT).await;
    let events = hook_events(hook);
    assert_eq!(events[1]["kind"], "acknowledged");
    assert_eq!(events[1]["recipient"]["person"], "alice");

    // Alice leaves (the configuration is reloaded without her); the resolve still reaches
    // her contacts' channels, through their own recipients, and says for whom it was.
    std::fs::write(
        notifier.config_path(),
        format!(
            "storage:\n  path: {}/notifier.db\n{}",
            notifier.dir().display(),
            escalation_config(&receivers, handoff, false)
        ),
    )
    .expect("write the configuration");
    let response = mcpwatch_tests::http::client()
        .post(format!("{}/-/reload", notifier.url()))
        .send()
        .await
        .expect("reload");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.text().await
    );
    let (status, answer) = notifier.post(&webhook("resolved"), None).await;
    assert_eq!(status, 200, "{answer}");
    let mails = smtp.wait_for_messages(6, LIMIT).await;
    let mut resolved = recipients(&mails[4..]);
    resolved.sort();
    assert_eq!(resolved, ["bob@example.com", "team@example.com"]);
    let for_alice = mails[4..]
        .iter()
        .find(|m| m.to == ["team@example.com"])
        .expect("alice's resolve");
    let text = for_alice.text().unwrap_or_default();
    assert!(
        text.contains("It was meant for alice, who has no contact on this channel"),
        "{text}"
    );
    slack.wait_for_requests(6, LIMIT).await;
    let mut texts = slack_texts(slack)[4..].to_vec();
    texts.sort();
    assert_eq!(texts, ["", "<@U0BOB>"]);
    hook.wait_for_requests(3, LIMIT).await;
    let events = hook_events(hook);
    assert_eq!(events[2]["kind"], "resolved");
    assert_eq!(
        events[2]["recipient"],
        serde_json::json!({"person": "alice", "name": "alice", "contact": null})
    );

    // Nothing more, and nothing ever to the email channel's own list but alice's resolve.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 6);
    assert_eq!(slack.requests().len(), 6);
    assert_eq!(hook.requests().len(), 3);
}

/// A name of exactly 200 bytes with the characters iCalendar escapes and some that take
/// several bytes.
fn hard_name() -> String {
    let mut name = "Zoë \"Z\" Ødegård-Łukasiewicz, Jr.; on-call\\backup — 東京 ☎".to_owned();
    while name.len() < 199 {
        name.push('é');
    }
    while name.len() < 200 {
        name.push('x');
    }
    assert_eq!(name.len(), 200);
    name
}

fn weekly_config() -> String {
    let name = serde_json::to_string(&hard_name()).expect("name");
    format!(
        "api:\n  auth:\n    bearer_token: {TOKEN}\n    basic_auth: {{username: calendar, password: cal-password}}\n\
         channels:\n\
         \x20 mail:\n    email: {{smarthost: '127.0.0.1:9', from: alerts@example.com, to: [team@example.com]}}\n\
         \x20 chat:\n    slack: {{url: 'https://hooks.example.com/services/T0/B0/x'}}\n\
         people:\n\
         \x20 alice:\n    name: Alice\n    contacts: [{{channel: mail, address: alice@example.com}}, {{channel: chat, slack_member: U0ALICE}}]\n\
         \x20 bob:\n    name: Bob\n    contacts: [{{channel: log}}]\n\
         \x20 carol:\n    name: Carol\n    contacts: [{{channel: log}}]\n\
         \x20 zed:\n    name: {name}\n    contacts: [{{channel: log}}]\n\
         schedules:\n\
         \x20 weekly:\n    time_zone: Europe/Berlin\n    rotations:\n\
         \x20     - {{name: primary, members: [alice, bob, zed], every: weekly, handoff: 'Mon 09:00', start: 2026-03-16}}\n\
         \x20   overrides:\n\
         \x20     - person: carol\n        from: '2026-03-29T01:30:00+01:00'\n        until: '2026-03-29T04:00:00+02:00'\n\
         \x20       reason: \"swap\\nasked by bob; see #ops, thanks\"\n\
         \x20 gappy:\n    time_zone: UTC\n    overrides:\n\
         \x20     - {{person: carol, from: '2026-01-01T00:00:00Z', until: '2026-01-02T00:00:00Z'}}\n"
    )
}

/// Who is on call in `weekly` at `at`: person, start, end, and the end on the wall clock.
async fn on_call_at(notifier: &NotifierProcess, at: &str) -> (String, String, String, String) {
    let (status, body) = api(
        notifier,
        "GET",
        &format!("/api/v1/schedules/weekly?at={at}&days=1"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let on_call = &body["on_call"];
    let text = |k: &str| on_call[k].as_str().unwrap_or("").to_owned();
    (
        text("person"),
        text("start"),
        text("end"),
        text("end_local"),
    )
}

/// The feed parsed by Python's `icalendar`: calendar properties and each event.
fn parse_feed(feed: &str) -> Value {
    const SCRIPT: &str = r#"
import json, sys, icalendar
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
events = [
    {"uid": str(e["UID"]), "start": e.decoded("DTSTART").isoformat(), "end": e.decoded("DTEND").isoformat(),
     "summary": str(e["SUMMARY"]), "description": str(e["DESCRIPTION"]), "stamp": e.decoded("DTSTAMP").isoformat()}
    for e in cal.walk("VEVENT")
]
print(json.dumps({k: str(cal[k]) for k in ("VERSION", "PRODID", "CALSCALE", "METHOD", "X-WR-CALNAME")} | {"events": events}))
"#;
    let python = require(
        "python3",
        "apt-get install python3 && python3 -m pip install icalendar",
    );
    let (code, out, err) = pipe(&python, &["-c", SCRIPT], feed.as_bytes());
    assert_eq!(code, Some(0), "icalendar refused the feed: {err}\n{feed}");
    serde_json::from_str(&out).expect("the parser's JSON")
}

async fn fetch_feed(notifier: &NotifierProcess, at: &str) -> String {
    let response = mcpwatch_tests::http::client()
        .get(format!(
            "{}/api/v1/schedules/weekly/calendar.ics?at={at}",
            notifier.url()
        ))
        .basic_auth("calendar", Some("cal-password"))
        .send()
        .await
        .expect("GET calendar.ics");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/calendar; charset=utf-8")
    );
    response.text().await.expect("feed text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_rotation_across_a_change_with_an_override_through_the_api_and_the_feed() {
    let notifier = NotifierProcess::start(&weekly_config()).await;
    // alice from Monday 2026-03-16 09:00 CET; bob from the 23rd 09:00 CET (08:00 UTC) for
    // the week that loses an hour on the 29th (167 h, to 09:00 CEST, 07:00 UTC), except
    // carol's override across the change; then zed.
    let cases = [
        (
            "2026-03-23T07:59:59Z",
            "alice",
            "2026-03-16T08:00:00Z",
            "2026-03-23T08:00:00Z",
            "2026-03-23T09:00:00+01:00",
        ),
        (
            "2026-03-23T08:00:00Z",
            "bob",
            "2026-03-23T08:00:00Z",
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:30:00+01:00",
        ),
        (
            "2026-03-29T00:30:00Z",
            "carol",
            "2026-03-29T00:30:00Z",
            "2026-03-29T02:00:00Z",
            "2026-03-29T04:00:00+02:00",
        ),
        (
            "2026-03-29T01:59:59Z",
            "carol",
            "2026-03-29T00:30:00Z",
            "2026-03-29T02:00:00Z",
            "2026-03-29T04:00:00+02:00",
        ),
        (
            "2026-03-29T02:00:00Z",
            "bob",
            "2026-03-29T02:00:00Z",
            "2026-03-30T07:00:00Z",
            "2026-03-30T09:00:00+02:00",
        ),
        (
            "2026-03-30T06:59:59Z",
            "bob",
            "2026-03-29T02:00:00Z",
            "2026-03-30T07:00:00Z",
            "2026-03-30T09:00:00+02:00",
        ),
        (
            "2026-03-30T07:00:00Z",
            "zed",
            "2026-03-30T07:00:00Z",
            "2026-04-06T07:00:00Z",
            "2026-04-06T09:00:00+02:00",
        ),
        // October: the week that gains an hour (169 h) is bob's (turn 31).
        (
            "2026-10-25T12:00:00Z",
            "bob",
            "2026-10-19T07:00:00Z",
            "2026-10-26T08:00:00Z",
            "2026-10-26T09:00:00+01:00",
        ),
    ];
    for (at, person, start, end, end_local) in cases {
        assert_eq!(
            on_call_at(&notifier, at).await,
            (
                person.to_owned(),
                start.to_owned(),
                end.to_owned(),
                end_local.to_owned()
            ),
            "at {at}"
        );
    }
    let (_, body) = api(
        &notifier,
        "GET",
        "/api/v1/schedules/weekly?at=2026-03-29T00:45:00Z&days=3",
    )
    .await;
    assert_eq!(body["on_call"]["source"], "override");
    assert_eq!(
        body["on_call"]["reason"],
        "swap\nasked by bob; see #ops, thanks"
    );
    assert_eq!(body["next"]["person"], "bob");
    assert_eq!(body["next"]["start"], "2026-03-29T02:00:00Z");
    let shifts: Vec<(&str, &str)> = body["shifts"]
        .as_array()
        .expect("shifts")
        .iter()
        .map(|s| {
            (
                s["person"].as_str().unwrap_or(""),
                s["start"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        shifts,
        [
            ("carol", "2026-03-29T00:30:00Z"),
            ("bob", "2026-03-29T02:00:00Z"),
            ("zed", "2026-03-30T07:00:00Z"),
        ]
    );
    let (status, list) = api(
        &notifier,
        "GET",
        "/api/v1/schedules?at=2026-03-29T00:45:00Z",
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let summary: Vec<(&str, &str, Value)> = list["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["time_zone"].as_str().unwrap_or(""),
                s["on_call"]["person"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("gappy", "UTC", Value::Null),
            ("weekly", "Europe/Berlin", Value::String("carol".into())),
        ]
    );
    // The person's name as given, and no contact detail anywhere.
    let (_, body) = api(
        &notifier,
        "GET",
        "/api/v1/schedules/weekly?at=2026-03-16T12:00:00Z&days=90",
    )
    .await;
    assert_eq!(body["on_call"]["name"], "Alice");
    assert_eq!(body["shifts"].as_array().map(Vec::len), Some(15));
    for text in [body.to_string(), list.to_string()] {
        assert!(
            !text.contains("alice@example.com") && !text.contains("U0ALICE"),
            "{text}"
        );
    }

    // Bad requests: a clear 400, an unknown schedule 404, no credentials 401.
    for (path, status) in [
        ("/api/v1/schedules/weekly?days=91", 400),
        ("/api/v1/schedules/weekly?days=0", 400),
        ("/api/v1/schedules/weekly?days=two", 400),
        ("/api/v1/schedules/weekly?at=yesterday", 400),
        ("/api/v1/schedules/weekly/calendar.ics?at=2026-03-29", 400),
        ("/api/v1/schedules/nightly", 404),
        ("/api/v1/schedules/nightly/calendar.ics", 404),
    ] {
        let (got, body) = api(&notifier, "GET", path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    for path in [
        "/api/v1/schedules",
        "/api/v1/schedules/weekly",
        "/api/v1/schedules/weekly/calendar.ics",
    ] {
        let response = mcpwatch_tests::http::client()
            .get(format!("{}{path}", notifier.url()))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_schedule_gap{schedule=\"gappy\"}")
            .await,
        1.0
    );
    assert_eq!(
        notifier
            .metric("mcpwatch_notifier_schedule_gap{schedule=\"weekly\"}")
            .await,
        0.0
    );

    // The feed around the spring change: 7 days back, 90 ahead of 2026-03-20.
    let feed = fetch_feed(&notifier, "2026-03-20T00:00:00Z").await;
    let parsed = parse_feed(&feed);
    assert_eq!(parsed["VERSION"], "2.0");
    assert_eq!(parsed["METHOD"], "PUBLISH");
    assert_eq!(parsed["CALSCALE"], "GREGORIAN");
    assert_eq!(parsed["X-WR-CALNAME"], "On call: weekly");
    let events = parsed["events"].as_array().expect("events");
    // alice's first week, bob's cut in two by carol, and the 12 weeks from 2026-03-30
    // up to the one that holds 2026-06-18.
    assert_eq!(events.len(), 16, "{parsed}");
    let span = |e: &Value| {
        (
            e["start"].as_str().unwrap_or("").to_owned(),
            e["end"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert_eq!(
        span(&events[0]),
        (
            "2026-03-16T08:00:00+00:00".into(),
            "2026-03-23T08:00:00+00:00".into()
        )
    );
    assert_eq!(
        span(&events[2]),
        (
            "2026-03-29T00:30:00+00:00".into(),
            "2026-03-29T02:00:00+00:00".into()
        )
    );
    assert_eq!(events[2]["summary"], "On call: Carol (weekly)");
    assert_eq!(
        events[2]["description"],
        "Carol is on call in schedule weekly (override: swap\nasked by bob; see #ops, thanks)."
    );
    assert_eq!(
        span(&events[3]),
        (
            "2026-03-29T02:00:00+00:00".into(),
            "2026-03-30T07:00:00+00:00".into()
        )
    );
    check_feed_text(&feed, events);

    // The feed around the autumn change: bob's whole week of 169 hours, and zed's hard
    // name through folding and escaping, unchanged.
    let feed = fetch_feed(&notifier, "2026-10-20T00:00:00Z").await;
    let parsed = parse_feed(&feed);
    let events = parsed["events"].as_array().expect("events");
    assert_eq!(events.len(), 14, "{parsed}");
    let autumn = events
        .iter()
        .find(|e| e["start"] == "2026-10-19T07:00:00+00:00")
        .expect("the week of 2026-10-19");
    assert_eq!(autumn["end"], "2026-10-26T08:00:00+00:00");
    assert_eq!(autumn["summary"], "On call: Bob (weekly)");
    let zed = format!("On call: {} (weekly)", hard_name());
    assert_eq!(
        events
            .iter()
            .filter(|e| e["summary"] == zed.as_str())
            .count(),
        4
    );
    check_feed_text(&feed, events);
    // The same instant's feed again: the same UIDs.
    let again = parse_feed(&fetch_feed(&notifier, "2026-10-20T00:00:00Z").await);
    let uids = |p: &Value| -> Vec<String> {
        p["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["uid"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(uids(&again), uids(&parsed));
}

/// The feed's text as RFC 5545 writes it: CRLF line ends only, lines of at most 75 octets,
/// the hard name's characters escaped, no contact detail; UIDs unique.
fn check_feed_text(feed: &str, events: &[Value]) {
    assert!(feed.ends_with("END:VCALENDAR\r\n"));
    assert!(!feed.replace("\r\n", "").contains('\n'), "a bare line feed");
    for line in feed.split("\r\n") {
        assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
    }
    let unfolded = feed.replace("\r\n ", "");
    if unfolded.contains("Zoë") {
        assert!(
            unfolded.contains(
                r#"SUMMARY:On call: Zoë "Z" Ødegård-Łukasiewicz\, Jr.\; on-call\\backup"#
            ),
            "{unfolded}"
        );
    }
    assert!(!feed.contains("alice@example.com") && !feed.contains("U0ALICE"));
    let mut uids: Vec<&str> = events
        .iter()
        .map(|e| e["uid"].as_str().unwrap_or(""))
        .collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), events.len());
}

#[test]
fn check_config_names_the_key_of_a_bad_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            weekly_config().replace("members: [alice, bob, zed]", "members: [alice, bob, dave]"),
            "schedules.weekly.rotations[0].members[2]: no person is named \"dave\"",
        ),
        (
            weekly_config().replace("time_zone: Europe/Berlin", "time_zone: Europe/Berlín"),
            "schedules.weekly.time_zone: \"Europe/Berlín\" is not a known IANA time zone",
        ),
        (
            weekly_config().replace(
                "until: '2026-03-29T04:00:00+02:00'",
                "until: '2026-03-29T00:30:00Z'",
            ),
            "schedules.weekly.overrides[0].until: must be later than from",
        ),
        (
            format!(
                "{}escalation_policies:\n  p:\n    levels:\n      - {{schedule: weekly}}\n      - {{after: 5m, schedule: daily}}\n",
                weekly_config()
            ),
            "escalation_policies.p.levels[1].schedule: no schedule is named \"daily\"",
        ),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("notifier.yml");
        std::fs::write(&path, &text).expect("write config");
        let out = Command::new(workspace_binary("mcpwatch-notifier"))
            .arg("--check-config")
            .arg(format!("--config.file={}", path.display()))
            .output()
            .expect("run the notifier");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expected}: accepted");
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
        assert!(stderr.contains(&format!("{}:", path.display())), "{stderr}");
    }
}
