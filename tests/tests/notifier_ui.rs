//! The notifier's web UI in a real headless Chromium: the incident list and page,
//! acknowledging through the form, adding and ending a maintenance window, replaying a
//! dead letter, a phone's viewport; the effects checked in the store (through the API)
//! and at the receivers. Outside the browser: forged and cross-origin form posts are
//! refused and change nothing, attacker-controlled labels come out escaped, and the
//! pages carry their security headers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

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
        format!(
            "delivery:\n  timeout: 2s\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
             api:\n  auth:\n    bearer_token: {TOKEN}\n    basic_auth: {{username: {USER}, password: {PASSWORD}}}\n\
             ui:\n  csrf_secret: {CSRF_SECRET}\n\
             channels:\n  oncall:\n    webhook: {{url: '{}'}}\n  senior:\n    webhook: {{url: '{}'}}\n  hooks:\n    webhook: {{url: '{}'}}\n\
             escalation_policies:\n  default:\n    levels:\n\
             \x20     - {{name: on-call engineer, channels: [oncall]}}\n\
             \x20     - {{name: senior engineer, after: 1h, channels: [senior]}}\n\
             route:\n  routes:\n    - matchers: ['severity=\"critical\"']\n      escalation: default\n\
             \x20   - matchers: ['team=\"hooks\"']\n      channels: [hooks]\n",
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
