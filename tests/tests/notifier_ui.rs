//! The notifier's web UI in a real headless Chromium: the incident list and page,
//! acknowledging and resolving through the forms, the timeline and the report, adding and
//! ending a maintenance window, replaying a dead letter, who is on call, a phone's
//! viewport; the effects checked in the store (through the API) and at the receivers. Outside the browser: forged and cross-origin form posts are
//! refused and change nothing, attacker-controlled labels come out escaped, and the
//! pages carry their security headers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mcpwatch_notifier::time::{format_rfc3339, now_ms};
use mcpwatch_tests::browser::Browser;
use mcpwatch_tests::notifier::{NotifierProcess, TestAlert, payload};
use mcpwatch_tests::stand_in::{HttpStandIn, ReceivedRequest, Scripted};
use serde_json::Value;

const TOKEN: &str = "ui-test-api-token-0123";
const USER: &str = "alice";
const PASSWORD: &str = "alice-password-0123";
const CSRF_SECRET: &str = "ui-csrf-secret-for-every-replica";
const LIMIT: Duration = Duration::from_secs(30);
/// An alert label written to break out of the page.
const SCRIPT: &str = "<script>alert(1)</script>";
/// An annotation written to break out of an attribute.
const ATTRIBUTE: &str = "\"><img src=x onerror=alert(2)>";

struct Receivers {
    oncall: HttpStandIn,
    senior: HttpStandIn,
    hooks: HttpStandIn,
}

impl Receivers {
    async fn start() -> Self {
        Self {
            oncall: HttpStandIn::webhook().await,
            senior: HttpStandIn::webhook().await,
            hooks: HttpStandIn::webhook().await,
        }
    }

    fn config(&self) -> String {
        self.config_with("", "", "", "")
    }

    /// The configuration with more `channels`, `escalation_policies` and `route.routes`
    /// (each YAML at its list's indentation), and more top-level keys (`rest`).
    fn config_with(&self, channels: &str, policies: &str, routes: &str, rest: &str) -> String {
        format!(
            "delivery:\n  timeout: 2s\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
             api:\n  auth:\n    bearer_token: {TOKEN}\n    basic_auth: {{username: {USER}, password: {PASSWORD}}}\n\
             ui:\n  csrf_secret: {CSRF_SECRET}\n\
             channels:\n  oncall:\n    webhook: {{url: '{}'}}\n  senior:\n    webhook: {{url: '{}'}}\n  hooks:\n    webhook: {{url: '{}'}}\n{channels}\
             escalation_policies:\n  default:\n    levels:\n\
             \x20     - {{name: on-call engineer, channels: [oncall]}}\n\
             \x20     - {{name: senior engineer, after: 1h, channels: [senior]}}\n{policies}\
             route:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      escalation: default\n\
             \x20   - matchers: ['team=\"hooks\"']\n      channels: [hooks]\n{routes}{rest}",
            self.oncall.endpoint(),
            self.senior.endpoint(),
            self.hooks.endpoint(),
        )
    }
}

fn group(name: &str) -> String {
    format!("{{}}:{{alertname=\"{name}\"}}")
}

/// A firing webhook for group `name`, with `labels` besides its name; the annotations
/// of the first alert get the attribute breaker.
fn webhook(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut all = vec![("alertname", name)];
    all.extend_from_slice(labels);
    let alerts: Vec<TestAlert<'_>> = vec![(all.as_slice(), "firing", "2026-11-22T10:00:00Z")];
    let mut body = payload("mcpwatch", &group(name), &alerts, "http://am:9093");
    body["alerts"][0]["annotations"]["description"] = Value::String(ATTRIBUTE.into());
    body["alerts"][0]["annotations"]["runbook_url"] = Value::String("javascript:alert(3)".into());
    body
}

async fn post(notifier: &NotifierProcess, body: &Value) -> i64 {
    let (status, answer) = notifier.post(body, None).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_i64().expect("notification id")
}

async fn api(notifier: &NotifierProcess, path: &str) -> Value {
    let response = mcpwatch_tests::http::client()
        .get(format!("{}{path}", notifier.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("API request");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

/// The webhook messages a receiver took (200) for one group, each with its event.
fn messages(sink: &HttpStandIn, group: &str) -> Vec<Value> {
    sink.requests()
        .iter()
        .filter(|r| r.status == Some(200))
        .map(ReceivedRequest::json)
        .filter(|body| body["groupKey"] == group)
        .collect()
}

fn of_kind(sink: &HttpStandIn, group: &str, kind: &str) -> usize {
    messages(sink, group)
        .iter()
        .filter(|m| m["mcpwatch"]["event"]["kind"] == kind)
        .count()
}

async fn wait_kind(sink: &HttpStandIn, group: &str, kind: &str) {
    let deadline = Instant::now() + LIMIT;
    while of_kind(sink, group, kind) == 0 {
        assert!(
            Instant::now() < deadline,
            "no {kind} message for {group}: {:?}",
            messages(sink, group)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open_incident(notifier: &NotifierProcess, name: &str) -> i64 {
    let list = api(notifier, "/api/v1/incidents").await;
    list["incidents"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["group_key"] == group(name).as_str()))
        .and_then(|i| i["id"].as_i64())
        .unwrap_or_else(|| panic!("no incident for {name}: {list}"))
}

fn artifacts() -> PathBuf {
    mcpwatch_tests::repo::root().join("target/test-artifacts")
}

async fn shoot(browser: &Browser, name: &str) {
    let path = artifacts().join(name);
    let bytes = browser.screenshot(&path).await;
    #[allow(clippy::print_stderr)]
    {
        eprintln!("screenshot: {} ({bytes} bytes)", path.display());
    }
}

/// The one-off window added by the browser.
async fn window(notifier: &NotifierProcess, reason: &str) -> Value {
    let list = api(notifier, "/api/v1/windows").await;
    let found: Vec<Value> = list["windows"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|w| w["reason"] == reason)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(found.len(), 1, "{list}");
    found[0].clone()
}

/// In Chromium: the list, the incident, Acknowledge; a window added and ended; a dead
/// letter replayed; every page at a phone's width.
async fn in_the_browser(notifier: &NotifierProcess, receivers: &Receivers) {
    let name = "GatewayDown";
    let key = group(name);
    post(
        notifier,
        &webhook(
            name,
            &[
                ("severity", "critical"),
                ("service", "mcp"),
                ("note", SCRIPT),
            ],
        ),
    )
    .await;
    wait_kind(&receivers.oncall, &key, "opened").await;
    let id = open_incident(notifier, name).await;

    let browser = Browser::start().await;
    browser.basic_auth(USER, PASSWORD).await;
    browser.goto(&format!("{}/ui/", notifier.url())).await;
    let row = browser
        .text(&browser.find(&format!("#incident-{id}")).await)
        .await;
    for expected in [name, "critical", "open", "on-call engineer", "oncall"] {
        assert!(row.contains(expected), "{expected:?} not in {row:?}");
    }
    let who = browser.text(&browser.find(".who").await).await;
    assert_eq!(who, format!("Signed in as {USER}"));
    shoot(&browser, "notifier-ui-incidents.png").await;

    browser
        .click(&browser.find(&format!("#incident-{id} a")).await)
        .await;
    browser
        .wait_for_url("the incident page", |u| {
            u.ends_with(&format!("/ui/incidents/{id}"))
        })
        .await;
    let heading = browser.text(&browser.find("h1").await).await;
    assert_eq!(heading, format!("{name} · incident {id}"));
    // The hostile label is text on the page, and no script element came of it.
    let tables = browser.find_all("#alerts .pairs").await;
    let labels = browser.text(&tables[0]).await;
    assert!(labels.contains(SCRIPT), "{labels}");
    assert_eq!(
        browser
            .execute(
                "return document.querySelectorAll('script, img').length",
                vec![]
            )
            .await,
        0
    );
    assert_eq!(browser.find_all("#timeline").await.len(), 1);
    shoot(&browser, "notifier-ui-incident.png").await;

    browser
        .click(
            &browser
                .find(&format!("form[action=\"/ui/incidents/{id}/ack\"] button"))
                .await,
        )
        .await;
    browser
        .wait_for_url("the acknowledgement", |u| u.contains("done=acknowledged"))
        .await;
    let facts = browser.text(&browser.find(".facts").await).await;
    assert!(facts.contains(&format!("by {USER}")), "{facts}");
    assert_eq!(
        browser
            .find_all(&format!("form[action=\"/ui/incidents/{id}/unack\"]"))
            .await
            .len(),
        1
    );
    let stored = api(notifier, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(stored["state"], "acknowledged", "{stored}");
    assert_eq!(stored["acknowledged_by"], USER, "{stored}");
    wait_kind(&receivers.oncall, &key, "acknowledged").await;
    let announced: Vec<Value> = messages(&receivers.oncall, &key)
        .into_iter()
        .filter(|m| m["mcpwatch"]["event"]["kind"] == "acknowledged")
        .collect();
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0]["mcpwatch"]["event"]["by"], USER);

    // A maintenance window through the form, then ended.
    let reason = "gateway upgrade, ticket OPS-1";
    browser
        .goto(&format!("{}/ui/windows", notifier.url()))
        .await;
    let form = "form[action=\"/ui/windows\"]";
    browser
        .type_into(
            &browser.find(&format!("{form} [name=duration]")).await,
            "1h",
        )
        .await;
    browser
        .type_into(
            &browser.find(&format!("{form} [name=matchers]")).await,
            "service=\"mcp\"\nalertname=~\"Gateway.*\"",
        )
        .await;
    browser
        .type_into(
            &browser.find(&format!("{form} [name=reason]")).await,
            reason,
        )
        .await;
    browser
        .click(&browser.find(&format!("{form} button")).await)
        .await;
    browser
        .wait_for_url("the new window", |u| u.contains("done=window-added"))
        .await;
    let added = window(notifier, reason).await;
    assert_eq!(added["active"], true, "{added}");
    assert_eq!(added["author"], USER);
    assert_eq!(
        added["matchers"],
        serde_json::json!(["service=\"mcp\"", "alertname=~\"Gateway.*\""])
    );
    let window_id = added["id"].as_i64().expect("window id");
    browser
        .click(
            &browser
                .find(&format!(
                    "form[action=\"/ui/windows/{window_id}/end\"] button"
                ))
                .await,
        )
        .await;
    browser
        .wait_for_url("the window's end", |u| u.contains("done=window-ended"))
        .await;
    let ended = window(notifier, reason).await;
    assert_eq!(ended["active"], false, "{ended}");
    let time = |field: &str| {
        ended[field]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("{field}: {ended}"))
    };
    assert!(time("ends_at") <= std::time::SystemTime::now(), "{ended}");
    assert!(time("ends_at") > time("starts_at"), "{ended}");
    assert_eq!(
        browser
            .find_all(&format!("form[action=\"/ui/windows/{window_id}/end\"]"))
            .await
            .len(),
        0
    );

    // A dead letter: the receiver refuses for good once, then takes the replay.
    let hooks_group = group("HookRefused");
    receivers.hooks.push_response(Scripted::Status(
        400,
        "{\"error\":\"invalid payload\"}".into(),
    ));
    let notification = post(notifier, &webhook("HookRefused", &[("team", "hooks")])).await;
    let deadline = Instant::now() + LIMIT;
    loop {
        let dead = api(notifier, "/api/v1/notifications?state=dead").await;
        let found = dead["notifications"]
            .as_array()
            .is_some_and(|l| l.iter().any(|n| n["id"] == notification));
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter: {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .goto(&format!("{}/ui/dead-letters", notifier.url()))
        .await;
    let row = browser
        .text(&browser.find(&format!("#notification-{notification}")).await)
        .await;
    assert!(row.contains("hooks") && row.contains("400"), "{row}");
    browser
        .click(
            &browser
                .find(&format!(
                    "form[action=\"/ui/dead-letters/{notification}/replay\"] button"
                ))
                .await,
        )
        .await;
    browser
        .wait_for_url("the replay", |u| u.contains("done=replayed"))
        .await;
    let deadline = Instant::now() + LIMIT;
    while messages(&receivers.hooks, &hooks_group).is_empty() {
        assert!(Instant::now() < deadline, "the replay was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let one = api(notifier, &format!("/api/v1/notifications/{notification}")).await;
    assert_eq!(one["deliveries"][0]["state"], "delivered", "{one}");
    assert_eq!(
        browser
            .find_all(&format!("#notification-{notification}"))
            .await
            .len(),
        0
    );

    // A phone: nothing wider than its screen.
    browser.viewport(390, 844, true).await;
    for path in [
        "/ui/".to_owned(),
        format!("/ui/incidents/{id}"),
        "/ui/windows".to_owned(),
        "/ui/dead-letters".to_owned(),
        "/ui/channels".to_owned(),
    ] {
        browser.goto(&format!("{}{path}", notifier.url())).await;
        let width = browser
            .execute("return document.documentElement.scrollWidth", vec![])
            .await;
        assert!(width.as_u64().is_some_and(|w| w <= 390), "{path}: {width}");
        if path == "/ui/" {
            shoot(&browser, "notifier-ui-phone.png").await;
        }
    }
    let channels = browser.text(&browser.find("#channel-hooks").await).await;
    assert!(channels.contains("webhook"), "{channels}");
    drop(browser);

    // Exactly once, after everything else: the acknowledgement and the replayed delivery.
    assert_eq!(of_kind(&receivers.oncall, &key, "acknowledged"), 1);
    assert_eq!(messages(&receivers.hooks, &hooks_group).len(), 1);
    assert_eq!(receivers.hooks.requests().len(), 2);
}

/// The CSRF token of the form posting to `action` in a page.
fn token_of(html: &str, action: &str) -> String {
    let form = html
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form posting to {action}"));
    let rest = &html[form..];
    let field = "name=\"csrf\" value=\"";
    let start = rest.find(field).expect("a token field") + field.len();
    let end = rest[start..].find('"').expect("the token's end");
    rest[start..start + end].to_owned()
}

fn escape_html(text: &str) -> String {
    text.replace('"', "&quot;")
}

/// A client that shows redirects rather than following them.
fn client() -> reqwest::Client {
    mcpwatch_tests::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(LIMIT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Without the browser: auth, headers, escaping; forged, foreign and cross-origin posts
/// refused with nothing changed; a token still good after a restart (`ui.csrf_secret`).
async fn outside_the_browser(notifier: &mut NotifierProcess, receivers: &Receivers) {
    let name = "DatabaseDown";
    let key = group(name);
    post(
        notifier,
        &webhook(name, &[("severity", "critical"), ("note", SCRIPT)]),
    )
    .await;
    wait_kind(&receivers.oncall, &key, "opened").await;
    let id = open_incident(notifier, name).await;
    let client = client();
    let page = format!("{}/ui/incidents/{id}", notifier.url());

    // A browser is asked for Basic credentials; wrong ones do not pass.
    for request in [
        client.get(&page),
        client.get(&page).basic_auth(USER, Some("wrong")),
    ] {
        let response = request.send().await.expect("GET");
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Basic"), "{challenge}");
    }

    let response = client
        .get(&page)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response.headers()[name]
            .to_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header("content-security-policy"),
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let html = response.text().await.expect("page");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains(SCRIPT));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!html.contains("<img") && !html.contains("<script"));
    assert!(!html.contains("href=\"javascript:"));
    assert!(html.contains("<meta name=\"viewport\""));
    // No status page is configured: the navigation does not link to one.
    assert!(html.contains("<a href=\"/ui/schedules\">On call</a>"));
    assert!(!html.contains("href=\"/status\""));
    let ack = format!("/ui/incidents/{id}/ack");
    let alice = token_of(&html, &ack);

    // The same page for the API token: another principal, another token.
    let html = client
        .get(&page)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("page");
    assert!(html.contains("Signed in as <strong>api token</strong>"));
    let token = token_of(&html, &ack);
    assert_ne!(token, alice);
    let windows = client
        .get(format!("{}/ui/windows", notifier.url()))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("page");
    let other_form = token_of(&windows, "/ui/windows");

    let url = format!("{}{ack}", notifier.url());
    let origin = notifier.url();
    let mut mangled = alice.clone();
    let last = if mangled.ends_with('A') { "B" } else { "A" };
    mangled.replace_range(mangled.len() - 1.., last);
    let same = Some(origin.as_str());
    let foreign = "not valid for this form and this user";
    let forged = [
        (
            "no token",
            String::new(),
            same,
            None,
            "carries no security token",
        ),
        (
            "another principal's token",
            format!("csrf={token}"),
            same,
            None,
            foreign,
        ),
        (
            "another form's token",
            format!("csrf={other_form}"),
            same,
            None,
            foreign,
        ),
        (
            "an altered token",
            format!("csrf={mangled}"),
            same,
            None,
            foreign,
        ),
        (
            "another origin",
            format!("csrf={alice}"),
            Some("http://evil.example"),
            None,
            "posted from \"http://evil.example\"",
        ),
        (
            "a cross-site fetch",
            format!("csrf={alice}"),
            None,
            Some("cross-site"),
            "posted from another site",
        ),
    ];
    for (what, body, origin, site, reason) in forged {
        let mut request = client
            .post(&url)
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(response.status(), 403, "{what}");
        let text = response.text().await.unwrap_or_default();
        assert!(
            text.contains(&escape_html(reason)) && text.contains("nothing was changed"),
            "{what}: {text}"
        );
    }
    let unchanged = api(notifier, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(unchanged["state"], "open", "{unchanged}");
    assert_eq!(unchanged["generation"], 0, "{unchanged}");
    assert_eq!(of_kind(&receivers.oncall, &key, "acknowledged"), 0);

    // A window the check refuses: the form again, with what was wrong and what was typed.
    let add = client
        .post(format!("{}/ui/windows", notifier.url()))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &origin)
        .body(format!(
            "csrf={other_form}&duration=1h&matchers=service%3D%22mcp%22%0D%0Anot+a+matcher&reason=kept+%3Cb%3Etyped%3C%2Fb%3E"
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(add.status(), 400);
    let page = add.text().await.unwrap_or_default();
    assert!(page.contains("invalid window: matchers[1]"), "{page}");
    assert!(
        page.contains("value=\"kept &lt;b&gt;typed&lt;/b&gt;\""),
        "{page}"
    );
    let listed = api(notifier, "/api/v1/windows").await;
    assert_eq!(listed["windows"], serde_json::json!([]), "{listed}");

    // The key is the configured one: a page's token still works after a restart.
    notifier.restart().await;
    let send = || {
        client
            .post(&url)
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &origin)
            .body(format!("csrf={alice}"))
            .send()
    };
    let response = send().await.expect("POST");
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/ui/incidents/{id}?done=acknowledged").as_str()
    );
    let acked = api(notifier, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(acked["state"], "acknowledged", "{acked}");
    assert_eq!(acked["acknowledged_by"], USER);
    // Posted again: refused as the API refuses it, nothing told twice.
    let again = send().await.expect("POST");
    assert_eq!(again.status(), 409);
    wait_kind(&receivers.oncall, &key, "acknowledged").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(of_kind(&receivers.oncall, &key, "acknowledged"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_chromium() {
    let started = Instant::now();
    let receivers = Receivers::start().await;
    let notifier = NotifierProcess::start(&receivers.config()).await;
    in_the_browser(&notifier, &receivers).await;
    for secret in [CSRF_SECRET, PASSWORD, TOKEN] {
        assert!(!notifier.log().contains(secret));
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("the browser test took {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_form_posts_are_refused() {
    let receivers = Receivers::start().await;
    let mut notifier = NotifierProcess::start(&receivers.config()).await;
    outside_the_browser(&mut notifier, &receivers).await;
    for secret in [CSRF_SECRET, PASSWORD, TOKEN] {
        assert!(!notifier.log().contains(secret));
    }
}

/// With no auth configured, every form asks who acts, and refuses to act without a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_forms_ask_for_a_name() {
    let receivers = Receivers::start().await;
    let config = receivers
        .config()
        .replace(
            &format!("api:\n  auth:\n    bearer_token: {TOKEN}\n    basic_auth: {{username: {USER}, password: {PASSWORD}}}\n"),
            "",
        );
    assert!(!config.contains(TOKEN));
    let notifier = NotifierProcess::start(&config).await;
    let name = "QueueStuck";
    post(&notifier, &webhook(name, &[("severity", "critical")])).await;
    wait_kind(&receivers.oncall, &group(name), "opened").await;
    let id = open_incident(&notifier, name).await;
    let client = client();
    let html = client
        .get(format!("{}/ui/incidents/{id}", notifier.url()))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("page");
    assert!(html.contains("forms ask for your name"));
    assert!(html.contains("name=\"by\" required"));
    let ack = format!("/ui/incidents/{id}/ack");
    let token = token_of(&html, &ack);
    let post_ack = |body: String| {
        client
            .post(format!("{}{ack}", notifier.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let nameless = post_ack(format!("csrf={token}&by=+++"))
        .await
        .expect("POST");
    assert_eq!(nameless.status(), 400);
    assert_eq!(
        api(&notifier, &format!("/api/v1/incidents/{id}")).await["state"],
        "open"
    );
    let named = post_ack(format!("csrf={token}&by=Carol+O%27Neil"))
        .await
        .expect("POST");
    assert_eq!(named.status(), 303);
    let acked = api(&notifier, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(acked["acknowledged_by"], "Carol O'Neil", "{acked}");
}

/// A label written to break out of the page, in the timeline's alerts.
const IMAGE: &str = "<img src=x onerror=alert(1)>";
/// What the remediation prints: HTML for the timeline's detail.
const OUTPUT: &str = "restarted <b>web</b> <img src=x onerror=alert(5)>";

/// The test's configuration besides the common one: an email and a Slack channel that only
/// people's contacts name, a policy whose first level waits for the remediation of a
/// route, three people and a schedule in which erin is on call by an override from an
/// hour ago to `now` + 2 h and dave by another until `now` + 5 h, and a status page.
fn incident_page_config(receivers: &Receivers, now: i64) -> String {
    let at = |hours: i64| format_rfc3339(now + hours * 3_600_000);
    let start = &at(-30 * 24)[..10];
    let channels = format!(
        "  mail:\n    email: {{smarthost: '127.0.0.1:1', from: alerts@example.com, to: [team@example.com], security: none, allow_insecure: true}}\n\
         \x20 chat:\n    slack: {{url: '{}'}}\n",
        receivers.hooks.endpoint()
    );
    let policies = "  remediated:\n    wait_for_remediation: true\n    levels:\n\
                    \x20     - {name: on-call engineer, channels: [oncall]}\n\
                    \x20     - {name: senior engineer, after: 1h, channels: [senior]}\n";
    let routes = "    - matchers: ['team=\"web\"']\n      escalation: remediated\n      remediation: echo-html\n";
    let rest = format!(
        "remediation:\n  allowed_commands: [/usr/bin/echo]\n\
         remediations:\n  echo-html:\n    command:\n      argv: [/usr/bin/echo, '{OUTPUT}']\n\
         people:\n\
         \x20 carol:\n    name: Carol Example\n    contacts: [{{channel: mail, address: carol@example.com}}, {{channel: chat, slack_member: U0CAROL}}]\n\
         \x20 dave:\n    name: Dave Example\n    contacts: [{{channel: mail, address: dave@example.com}}]\n\
         \x20 erin:\n    name: 'Erin <b>Walsh</b>'\n    contacts: [{{channel: chat, slack_member: U0ERIN}}]\n\
         schedules:\n  primary:\n    time_zone: Europe/Berlin\n\
         \x20   rotations:\n      - {{name: weekly, members: [carol], every: weekly, handoff: 'Mon 09:00', start: {start}}}\n\
         \x20   overrides:\n\
         \x20     - {{person: erin, from: '{}', until: '{}', reason: 'carol <i>is</i> travelling'}}\n\
         \x20     - {{person: dave, from: '{}', until: '{}', reason: handover}}\n\
         status_page:\n  title: Example status\n  component_label: service\n",
        at(-1),
        at(2),
        at(2),
        at(5),
    );
    receivers.config_with(&channels, policies, routes, &rest)
}

/// The kinds of the timeline entries, as the API lists them.
async fn api_kinds(notifier: &NotifierProcess, id: i64) -> Vec<String> {
    let timeline = api(notifier, &format!("/api/v1/incidents/{id}/timeline")).await;
    timeline["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The kinds of the timeline entries the page shows, in order.
async fn page_kinds(browser: &Browser) -> Vec<String> {
    let kinds = browser
        .execute(
            "return Array.from(document.querySelectorAll('#timeline li[data-kind]'), e => e.dataset.kind)",
            vec![],
        )
        .await;
    kinds
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| k.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The text (shown or folded) of the elements matching `css`.
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let found = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent)",
            vec![Value::String(css.to_owned())],
        )
        .await;
    found
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// GET with the Basic-auth user: status, content type and body.
async fn fetch(client: &reqwest::Client, url: &str) -> (u16, String, Vec<u8>) {
    let response = client
        .get(url)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, response.bytes().await.expect("body").to_vec())
}

/// The incident page in Chromium: an incident whose route runs a remediation before level
/// 1 is told, acknowledged and resolved through the forms; its timeline as the API lists
/// it, with who did what and the remediation's output folded and escaped; the report link
/// serving the API's report; a forged resolve refused; who is on call now and next; all
/// at a phone's width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_report_resolve_and_on_call_in_chromium() {
    let receivers = Receivers::start().await;
    let now = now_ms() / 1000 * 1000;
    let notifier = NotifierProcess::start(&incident_page_config(&receivers, now)).await;
    let name = "WebDown";
    let key = group(name);
    post(
        &notifier,
        &webhook(
            name,
            &[
                ("severity", "warning"),
                ("team", "web"),
                ("service", "web"),
                ("note", IMAGE),
            ],
        ),
    )
    .await;
    wait_kind(&receivers.oncall, &key, "opened").await;
    let id = open_incident(&notifier, name).await;
    let client = client();
    let page = format!("{}/ui/incidents/{id}", notifier.url());

    let browser = Browser::start().await;
    browser.basic_auth(USER, PASSWORD).await;
    browser.goto(&format!("{}/ui/", notifier.url())).await;
    let cells = texts(&browser, &format!("#incident-{id} td")).await;
    assert_eq!(cells[0], format!("#{id}"), "{cells:?}");
    assert_eq!(cells[1], name, "{cells:?}");
    assert_eq!(cells[3], "warning", "{cells:?}");
    assert_eq!(
        texts(&browser, "nav a").await,
        [
            "Incidents",
            "On call",
            "Maintenance",
            "Dead letters",
            "Channels",
            "Status page"
        ]
    );
    assert_eq!(browser.find_all("nav a[href=\"/status\"]").await.len(), 1);

    browser.goto(&page).await;
    let facts = browser.text(&browser.find(".facts").await).await;
    for expected in [
        "warning on the scale critical · warning · info (label severity)",
        "none: its severity has no updates_every",
        "not now: the policy has level 1 wait for a remediation",
    ] {
        assert!(facts.contains(expected), "{expected:?} not in {facts}");
    }

    // A resolve posted without a token, and one with a token but without the box ticked:
    // refused, nothing changed.
    let html = client
        .get(&page)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("page");
    let resolve = format!("/ui/incidents/{id}/resolve");
    let token = token_of(&html, &resolve);
    for (body, status) in [
        ("confirm=yes".to_owned(), 403),
        (format!("csrf={token}"), 400),
    ] {
        let response = client
            .post(format!("{}{resolve}", notifier.url()))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", notifier.url())
            .body(body.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), status, "{body}");
        let text = response.text().await.unwrap_or_default();
        assert!(text.contains("nothing was changed"), "{text}");
    }
    let unchanged = api(&notifier, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(unchanged["state"], "open", "{unchanged}");
    assert_eq!(unchanged["generation"], 0, "{unchanged}");
    assert_eq!(unchanged["resolved_by"], Value::Null, "{unchanged}");

    browser
        .click(
            &browser
                .find(&format!("form[action=\"/ui/incidents/{id}/ack\"] button"))
                .await,
        )
        .await;
    browser
        .wait_for_url("the acknowledgement", |u| u.contains("done=acknowledged"))
        .await;
    wait_kind(&receivers.oncall, &key, "acknowledged").await;
    let form = format!("form[action=\"{resolve}\"]");
    browser
        .click(&browser.find(&format!("{form} [name=confirm]")).await)
        .await;
    browser
        .click(&browser.find(&format!("{form} button")).await)
        .await;
    browser
        .wait_for_url("the resolve", |u| u.contains("done=resolved"))
        .await;
    let stored = api(&notifier, &format!("/api/v1/incidents/{id}")).await;
    assert_eq!(stored["state"], "resolved", "{stored}");
    assert_eq!(stored["resolved_by"], USER, "{stored}");
    wait_kind(&receivers.oncall, &key, "resolved").await;
    assert_eq!(browser.find_all(&form).await.len(), 0);

    // The page lists what the API lists, in its order: read between two equal answers of
    // the API, so that no delivery recorded meanwhile makes them differ.
    let deadline = Instant::now() + LIMIT;
    let kinds = loop {
        let before = api_kinds(&notifier, id).await;
        browser.goto(&page).await;
        let shown = page_kinds(&browser).await;
        let after = api_kinds(&notifier, id).await;
        if before == after && shown == after {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows {shown:?}, the API {after:?}"
        );
    };
    let milestones: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "told" && *k != "delivered")
        .collect();
    assert_eq!(
        milestones,
        [
            "opened",
            "remediation_queued",
            "remediation_started",
            "remediation_finished",
            "escalated",
            "acknowledged",
            "resolved"
        ],
        "{kinds:?}"
    );
    for kind in ["acknowledged", "resolved"] {
        assert_eq!(
            texts(&browser, &format!("#timeline li[data-kind={kind}] .actor")).await,
            [USER],
            "{kind}"
        );
    }
    assert_eq!(
        texts(&browser, "#timeline li[data-kind=resolved] .what strong").await,
        ["Resolved by hand", USER]
    );
    // The output is text in a folded <pre>; the label is text in the alerts named.
    let output = texts(
        &browser,
        "#timeline li[data-kind=remediation_finished] details pre",
    )
    .await;
    assert_eq!(output, [format!("{OUTPUT}\n")]);
    let named = texts(
        &browser,
        "#timeline li[data-kind=opened] .entry-alerts code",
    )
    .await;
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(named[0].contains(&format!("note=\"{IMAGE}\"")), "{named:?}");
    assert_eq!(
        browser
            .execute(
                "return document.querySelectorAll('script, img, b, i').length",
                vec![]
            )
            .await,
        0
    );
    let resolved = browser.text(&browser.find(".facts").await).await;
    assert!(
        resolved.contains(&format!("by hand by {USER}")),
        "{resolved}"
    );
    browser
        .click(
            &browser
                .find("#timeline li[data-kind=remediation_finished] summary")
                .await,
        )
        .await;
    shoot(&browser, "notifier-ui-timeline.png").await;

    // The announcement of the resolve, once, saying who.
    let announced: Vec<Value> = messages(&receivers.oncall, &key)
        .into_iter()
        .filter(|m| m["mcpwatch"]["event"]["kind"] == "resolved")
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["mcpwatch"]["event"]["by"], USER);

    // The report link serves the API's report, byte for byte.
    let href = browser
        .execute(
            "return document.querySelector('#timeline a.report').getAttribute('href')",
            vec![],
        )
        .await;
    assert_eq!(href, format!("/ui/incidents/{id}/report").as_str());
    let (status, kind, from_page) = fetch(
        &client,
        &format!("{}{}", notifier.url(), href.as_str().unwrap_or_default()),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (200, "text/markdown; charset=utf-8")
    );
    let from_api = mcpwatch_tests::http::client()
        .get(format!("{}/api/v1/incidents/{id}/report", notifier.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("report")
        .bytes()
        .await
        .expect("report")
        .to_vec();
    assert_eq!(from_page, from_api);
    let report = String::from_utf8(from_page).expect("UTF-8");
    assert!(
        report.contains(&format!("by hand by {USER} (time to resolve ")),
        "{report}"
    );
    let (missing, _, _) = fetch(
        &client,
        &format!("{}/ui/incidents/999999/report", notifier.url()),
    )
    .await;
    assert_eq!(missing, 404);

    // Who is on call: erin by the override now, dave next when it ends.
    browser
        .goto(&format!("{}/ui/schedules", notifier.url()))
        .await;
    let on_call = browser
        .text(&browser.find("#schedule-primary .on-call").await)
        .await;
    assert!(on_call.starts_with("Erin <b>Walsh</b> since "), "{on_call}");
    assert!(
        on_call.contains("override: carol <i>is</i> travelling"),
        "{on_call}"
    );
    let utc = |hours: i64| format!("{}Z", &format_rfc3339(now + hours * 3_600_000)[..19]);
    assert!(on_call.contains(&format!("until {}", utc(2))), "{on_call}");
    let next = browser
        .text(&browser.find("#schedule-primary .next").await)
        .await;
    assert!(
        next.starts_with(&format!("Dave Example from {}", utc(2))),
        "{next}"
    );
    let who = texts(&browser, "#schedule-primary .shifts td[data-label=Who]").await;
    assert_eq!(
        who[..3],
        ["Erin <b>Walsh</b>", "Dave Example", "Carol Example"],
        "{who:?}"
    );
    let feed = browser
        .execute(
            "return document.querySelector('#schedule-primary a.feed').getAttribute('href')",
            vec![],
        )
        .await;
    assert_eq!(feed, "/api/v1/schedules/primary/calendar.ics");
    let (status, kind, calendar) = fetch(
        &client,
        &format!("{}/api/v1/schedules/primary/calendar.ics", notifier.url()),
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (200, "text/calendar; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&calendar).contains("BEGIN:VCALENDAR"));
    let (_, _, schedules) = fetch(&client, &format!("{}/ui/schedules", notifier.url())).await;
    let schedules = String::from_utf8(schedules).expect("UTF-8");
    for private in [
        "carol@example.com",
        "dave@example.com",
        "U0CAROL",
        "U0ERIN",
        "<b>Walsh",
    ] {
        assert!(!schedules.contains(private), "{private} on the page");
    }
    shoot(&browser, "notifier-ui-on-call.png").await;

    // A phone: nothing wider than its screen.
    browser.viewport(390, 844, true).await;
    for path in [
        "/ui/".to_owned(),
        format!("/ui/incidents/{id}"),
        "/ui/schedules".to_owned(),
    ] {
        browser.goto(&format!("{}{path}", notifier.url())).await;
        let width = browser
            .execute("return document.documentElement.scrollWidth", vec![])
            .await;
        assert!(width.as_u64().is_some_and(|w| w <= 390), "{path}: {width}");
    }
    drop(browser);

    // Nothing announced twice, and no address or secret in the log.
    assert_eq!(of_kind(&receivers.oncall, &key, "acknowledged"), 1);
    assert_eq!(of_kind(&receivers.oncall, &key, "resolved"), 1);
    for secret in [CSRF_SECRET, PASSWORD, TOKEN] {
        assert!(!notifier.log().contains(secret));
    }
}
