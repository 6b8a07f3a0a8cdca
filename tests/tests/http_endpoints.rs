//! Plain HTTP endpoints through the exporter binary, as the operations guides check them by
//! hand (`curl -f http://localhost:3000`): an admin UI's HTML page, a redirect followed and
//! not, a 503, a redirect loop, a huge body, a body pattern found and not, a redirect to
//! another host that must not carry the credentials, a host that does not resolve, a page
//! that hangs past the deadline (alone, and under two scrapes of different deadlines), TLS
//! with a private CA and with the wrong one (and the certificates' expiries, exact to the
//! second), and the `/probe` module of the same checks.

use std::net::SocketAddr;
use std::time::Duration;

use mcpwatch_tests::binaries::start_exporter;
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::pages::{Page, PageServer};
use mcpwatch_tests::tls::{Authority, ca_and_server_for};
use mcpwatch_tests::tools::promtool_check_metrics;

const ADMIN_HTML: &str = "<!doctype html><html><head><title>Forge Admin</title></head>\
                          <body><div id=\"root\">Dashboard</div></body></html>";

/// `/metrics` as the classic text, checked for duplicate series, with the scraper's
/// timeout header when given.
async fn scrape(address: SocketAddr, timeout: Option<&str>) -> String {
    let mut request = client().get(format!("http://{address}/metrics"));
    if let Some(seconds) = timeout {
        request = request.header("x-prometheus-scrape-timeout-seconds", seconds);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    checked(response.text().await.expect("body"))
}

/// The value of `name{target="<target>"<more>}`.
fn value(text: &str, name: &str, target: &str, more: &str) -> Option<f64> {
    value_of(text, &format!("{name}{{target=\"{target}\"{more}}}"))
}

/// The series of one target that tell what its check found: up, status, validity,
/// redirects, TLS, body bytes, truncation, and the failure reason (or `None`).
fn found(text: &str, target: &str) -> (f64, f64, f64, f64, f64, f64, f64, Option<String>) {
    let get = |name: &str| value(text, name, target, "").unwrap_or(f64::NAN);
    let reason = [
        "dns",
        "refused",
        "timeout",
        "tls",
        "protocol",
        "redirect",
        "status",
        "body",
        "body_too_large",
    ]
    .iter()
    .filter(|r| value(text, "http_failure", target, &format!(",reason=\"{r}\"")) == Some(1.0))
    .map(|r| (*r).to_owned())
    .collect::<Vec<_>>();
    assert!(reason.len() <= 1, "{target}: reasons {reason:?}");
    (
        get("http_up"),
        get("http_status_code"),
        get("http_status_code_valid"),
        get("http_redirects"),
        get("http_tls"),
        get("http_body_bytes"),
        get("http_body_truncated"),
        reason.into_iter().next(),
    )
}

fn reason(r: &str) -> Option<String> {
    Some(r.to_owned())
}

#[tokio::test]
async fn an_admin_ui_its_redirects_and_its_failures() {
    let elsewhere = PageServer::start(vec![("/landing", Page::html(200, "<p>hello</p>"))]).await;
    let away = format!("http://localhost:{}/landing", elsewhere.address().port());
    let admin = PageServer::start(vec![
        ("/", Page::html(200, ADMIN_HTML)),
        ("/login", Page::redirect("/")),
        (
            "/maintenance",
            Page::html(503, "<h1>Down for maintenance</h1>"),
        ),
        ("/loop-a", Page::redirect("/loop-b")),
        ("/loop-b", Page::redirect("/loop-a")),
        ("/export", Page::large(8 << 20)),
        (
            "/broken",
            Page::html(200, "<h1>Internal Server Error</h1><pre>Traceback</pre>"),
        ),
        ("/away", Page::redirect(&away)),
    ])
    .await;
    let url = |path: &str| admin.url(path);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "tok-3c9f1e\n").expect("token");
    let config = format!(
        "collectors:\n  http:\n\
         \x20   - {{name: admin-ui, url: '{}', body_pattern: '<title>Forge Admin</title>'}}\n\
         \x20   - {{name: followed, url: '{}'}}\n\
         \x20   - {{name: not-followed, url: '{}', follow_redirects: false, valid_status_codes: [200, 302]}}\n\
         \x20   - {{name: redirect-invalid, url: '{}', follow_redirects: false}}\n\
         \x20   - {{name: maintenance, url: '{}'}}\n\
         \x20   - {{name: loop, url: '{}'}}\n\
         \x20   - {{name: export, url: '{}', max_body_bytes: 65536}}\n\
         \x20   - {{name: export-pattern, url: '{}', max_body_bytes: 65536, body_pattern_absent: Traceback}}\n\
         \x20   - {{name: broken, url: '{}', body_pattern_absent: 'Internal Server Error'}}\n\
         \x20   - {{name: missing, url: '{}', body_pattern: 'Welcome back'}}\n\
         \x20   - name: away\n\
         \x20     url: '{}'\n\
         \x20     bearer_token_file: token\n\
         \x20     headers: {{X-Api-Key: key-8d2a71}}\n\
         \x20   - {{name: head, url: '{}', method: HEAD}}\n\
         \x20   - {{name: unknown-host, url: 'http://nothing.invalid:3000/'}}\n\
         probe:\n  modules:\n    admin:\n      prober: http\n\
         \x20     allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/.*'\n\
         \x20     http: {{body_pattern: '<title>Forge Admin</title>'}}\n",
        url("/"),
        url("/login"),
        url("/login"),
        url("/login"),
        url("/maintenance"),
        url("/loop-a"),
        url("/export"),
        url("/export"),
        url("/broken"),
        url("/"),
        url("/away"),
        url("/"),
    );
    let (exporter, address) = start_exporter(dir.path(), &config, &[]).await;
    let text = scrape(address, None).await;
    assert_eq!(
        promtool_check_metrics(text.as_bytes()),
        "",
        "promtool findings"
    );
    let html = ADMIN_HTML.len() as f64;
    for (target, expected) in [
        ("admin-ui", (1.0, 200.0, 1.0, 0.0, 0.0, html, 0.0, None)),
        ("followed", (1.0, 200.0, 1.0, 1.0, 0.0, html, 0.0, None)),
        ("not-followed", (1.0, 302.0, 1.0, 0.0, 0.0, 0.0, 0.0, None)),
        (
            "redirect-invalid",
            (0.0, 302.0, 0.0, 0.0, 0.0, 0.0, 0.0, reason("status")),
        ),
        (
            "maintenance",
            (0.0, 503.0, 0.0, 0.0, 0.0, 0.0, 0.0, reason("status")),
        ),
        (
            "loop",
            (0.0, 302.0, 0.0, 1.0, 0.0, 0.0, 0.0, reason("redirect")),
        ),
        ("export", (1.0, 200.0, 1.0, 0.0, 0.0, 65536.0, 1.0, None)),
        (
            "export-pattern",
            (
                0.0,
                200.0,
                1.0,
                0.0,
                0.0,
                65536.0,
                1.0,
                reason("body_too_large"),
            ),
        ),
        (
            "broken",
            (0.0, 200.0, 1.0, 0.0, 0.0, 50.0, 0.0, reason("body")),
        ),
        (
            "missing",
            (0.0, 200.0, 1.0, 0.0, 0.0, html, 0.0, reason("body")),
        ),
        ("away", (1.0, 200.0, 1.0, 1.0, 0.0, 12.0, 0.0, None)),
        ("head", (1.0, 200.0, 1.0, 0.0, 0.0, 0.0, 0.0, None)),
        (
            "unknown-host",
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, reason("dns")),
        ),
    ] {
        assert_eq!(found(&text, target), expected, "{target}\n{text}");
        // The collector fails exactly when the check does; the scrape never does.
        assert_eq!(
            value_of(
                &text,
                &format!(
                    "mcpwatch_scrape_collector_success{{collector=\"http\",target=\"{target}\"}}"
                )
            ),
            Some(expected.0),
            "{target}"
        );
    }
    let matched = |target: &str, pattern: &str| {
        value(
            &text,
            "http_body_pattern_matched",
            target,
            &format!(",pattern=\"{pattern}\""),
        )
    };
    assert_eq!(matched("admin-ui", "body_pattern"), Some(1.0));
    assert_eq!(matched("missing", "body_pattern"), Some(0.0));
    assert_eq!(matched("broken", "body_pattern_absent"), Some(1.0));
    assert_eq!(matched("export-pattern", "body_pattern_absent"), Some(0.0));
    assert_eq!(matched("followed", "body_pattern"), None, "no pattern set");
    assert_eq!(value(&text, "http_version", "admin-ui", ""), Some(1.1));
    assert_eq!(value(&text, "http_version", "unknown-host", ""), Some(0.0));
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        let seconds = value(
            &text,
            "http_duration_seconds",
            "admin-ui",
            &format!(",phase=\"{phase}\""),
        )
        .expect(phase);
        // An IP address is not looked up and plain HTTP has no handshake.
        if ["resolve", "tls"].contains(&phase) {
            assert_eq!(seconds, 0.0, "{phase}");
        } else {
            assert!(seconds > 0.0, "{phase}: {seconds}");
        }
    }

    // The credentials went to the page's own origin, and not to the other host.
    let sent = admin.heads_for("/away");
    assert_eq!(sent.len(), 1);
    let sent = sent[0].to_ascii_lowercase();
    assert!(
        sent.contains("\r\nauthorization: bearer tok-3c9f1e\r\n"),
        "{sent}"
    );
    assert!(sent.contains("\r\nx-api-key: key-8d2a71\r\n"), "{sent}");
    let landed = elsewhere.heads_for("/landing");
    assert_eq!(landed.len(), 1);
    assert!(
        !landed[0].to_ascii_lowercase().contains("authorization"),
        "{}",
        landed[0]
    );
    assert!(!landed[0].contains("key-8d2a71"), "{}", landed[0]);
    assert!(landed[0].contains(&format!(
        "\r\nhost: localhost:{}\r\n",
        elsewhere.address().port()
    )));
    // The loop was left after one lap; the export's 8 MiB were not read to the end.
    assert_eq!(admin.heads_for("/loop-a").len(), 1);
    assert_eq!(admin.heads_for("/loop-b").len(), 1);
    for secret in ["tok-3c9f1e", "key-8d2a71"] {
        assert!(!text.contains(secret));
        assert!(!exporter.output().contains(secret), "{}", exporter.output());
    }

    // The same check through /probe: no target label, probe_success as http_up.
    let probe = client()
        .get(format!("http://{address}/probe"))
        .query(&[("module", "admin"), ("target", &url("/login"))])
        .send()
        .await
        .expect("probe");
    assert_eq!(probe.status(), 200);
    let probe = checked(probe.text().await.expect("body"));
    assert_eq!(promtool_check_metrics(probe.as_bytes()), "");
    assert_eq!(value_of(&probe, "probe_success"), Some(1.0), "{probe}");
    assert_eq!(value_of(&probe, "http_up"), Some(1.0));
    assert_eq!(value_of(&probe, "http_status_code"), Some(200.0));
    assert_eq!(value_of(&probe, "http_redirects"), Some(1.0));
    assert_eq!(
        value_of(
            &probe,
            "http_body_pattern_matched{pattern=\"body_pattern\"}"
        ),
        Some(1.0)
    );
    assert!(!probe.contains("target="), "{probe}");
    let probe = client()
        .get(format!("http://{address}/probe"))
        .query(&[("module", "admin"), ("target", &url("/maintenance"))])
        .send()
        .await
        .expect("probe");
    let probe = checked(probe.text().await.expect("body"));
    assert_eq!(value_of(&probe, "probe_success"), Some(0.0), "{probe}");
    assert_eq!(value_of(&probe, "http_status_code"), Some(503.0));
    assert_eq!(
        value_of(&probe, "http_failure{reason=\"status\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_probe_follows_no_redirect_its_module_does_not_allow() {
    let secret = PageServer::start(vec![("/secret-admin", Page::html(200, "admin"))]).await;
    let gateway = PageServer::start(vec![
        ("/tometa", Page::redirect(&secret.url("/secret-admin"))),
        ("/old", Page::redirect("/")),
        ("/", Page::html(200, ADMIN_HTML)),
    ])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed = gateway.url("/").replace('.', "\\.");
    let config = format!(
        "probe:\n  modules:\n    web:\n      prober: http\n\
         \x20     allowed_targets: '{allowed}.*'\n"
    );
    let (_exporter, address) = start_exporter(dir.path(), &config, &[]).await;
    let probe = |path: &str| {
        let target = gateway.url(path);
        async move {
            let answer = client()
                .get(format!("http://{address}/probe"))
                .query(&[("module", "web"), ("target", &target)])
                .send()
                .await
                .expect("probe");
            assert_eq!(answer.status(), 200);
            checked(answer.text().await.expect("body"))
        }
    };
    let text = probe("/tometa").await;
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
    let get = |name: &str| value_of(&text, name);
    assert_eq!(
        (
            get("probe_success"),
            get("http_status_code"),
            get("http_redirects"),
            get("http_failure{reason=\"redirect\"}"),
        ),
        (Some(0.0), Some(302.0), Some(0.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(secret.heads().len(), 0, "the refused hop is not requested");
    // A redirect the module allows is followed.
    let text = probe("/old").await;
    assert_eq!(
        (
            value_of(&text, "probe_success"),
            value_of(&text, "http_status_code"),
            value_of(&text, "http_redirects"),
        ),
        (Some(1.0), Some(200.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(gateway.heads().len(), 3);
}

#[tokio::test]
async fn an_event_stream_is_read_only_as_far_as_the_answer_needs() {
    let event = "event: status\ndata: {\"healthy\":true}\n\n";
    let events = PageServer::start(vec![("/events", Page::endless(event))]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = events.url("/events");
    let config = format!(
        "collectors:\n  http:\n\
         \x20   - {{name: plain, url: '{url}', timeout: 1s}}\n\
         \x20   - {{name: healthy, url: '{url}', timeout: 1s, body_pattern: '\"healthy\":true'}}\n\
         \x20   - {{name: failing, url: '{url}', timeout: 1s, body_pattern_absent: '\"healthy\":true'}}\n\
         \x20   - {{name: undecided, url: '{url}', timeout: 1s, body_pattern_absent: 'error'}}\n\
         \x20   - {{name: limited, url: '{url}', timeout: 1s, max_body_bytes: 8}}\n"
    );
    let (_exporter, address) = start_exporter(dir.path(), &config, &["--no-collector.host"]).await;
    let text = scrape(address, None).await;
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
    let bytes = event.len() as f64;
    // up, status, valid, redirects, tls, body bytes, not read to its end, reason.
    for (target, expected) in [
        ("plain", (1.0, 200.0, 1.0, 0.0, 0.0, bytes, 1.0, None)),
        ("healthy", (1.0, 200.0, 1.0, 0.0, 0.0, bytes, 1.0, None)),
        (
            "failing",
            (0.0, 200.0, 1.0, 0.0, 0.0, bytes, 1.0, reason("body")),
        ),
        (
            "undecided",
            (0.0, 200.0, 1.0, 0.0, 0.0, bytes, 1.0, reason("timeout")),
        ),
        ("limited", (1.0, 200.0, 1.0, 0.0, 0.0, 8.0, 1.0, None)),
    ] {
        assert_eq!(found(&text, target), expected, "{target}");
    }
    assert_eq!(
        value(
            &text,
            "http_body_pattern_matched",
            "healthy",
            ",pattern=\"body_pattern\""
        ),
        Some(1.0)
    );
    assert_eq!(events.heads().len(), 5);
}

#[tokio::test]
async fn a_page_that_hangs_is_cut_at_the_deadline_and_the_rest_stays() {
    let admin = PageServer::start(vec![
        ("/", Page::html(200, ADMIN_HTML)),
        ("/hang", Page::hanging()),
        (
            "/slow",
            Page::html(200, ADMIN_HTML).after(Duration::from_millis(1500)),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "collectors:\n  http:\n\
         \x20   - {{name: admin-ui, url: '{}'}}\n\
         \x20   - {{name: hang, url: '{}', timeout: 30s}}\n\
         \x20   - {{name: slow, url: '{}', timeout: 30s}}\n",
        admin.url("/"),
        admin.url("/hang"),
        admin.url("/slow"),
    );
    let (_exporter, address) = start_exporter(dir.path(), &config, &[]).await;

    // Prometheus gives 1 s: the collection has 0.5 s, and answers with what it found.
    let text = scrape(address, Some("1")).await;
    assert_eq!(
        value_of(&text, "mcpwatch_scrape_timeout_seconds"),
        Some(0.5)
    );
    assert_eq!(
        found(&text, "hang"),
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, reason("timeout"))
    );
    assert_eq!(found(&text, "slow").7, reason("timeout"));
    assert_eq!(found(&text, "admin-ui").0, 1.0);
    assert!(
        value(
            &text,
            "http_duration_seconds",
            "hang",
            ",phase=\"processing\""
        )
        .is_some_and(|s| s > 0.0)
    );
    assert!(value_of(&text, "host_memory_total_bytes").is_some_and(|b| b > 0.0));
    assert_eq!(
        value_of(
            &text,
            "mcpwatch_scrape_collector_success{collector=\"host\",target=\"\"}"
        ),
        Some(1.0)
    );

    // Two scrapes at once with different deadlines: the longer one is not served the
    // shorter one's cut collection, and finds the slow page up.
    let long = tokio::spawn(async move { scrape(address, Some("10")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let short = scrape(address, Some("1")).await;
    let long = long.await.expect("long scrape");
    assert_eq!(found(&short, "slow").7, reason("timeout"));
    assert_eq!(
        found(&long, "slow"),
        (
            1.0,
            200.0,
            1.0,
            0.0,
            0.0,
            ADMIN_HTML.len() as f64,
            0.0,
            None
        )
    );
    assert_eq!(found(&long, "hang").7, reason("timeout"));
}

#[tokio::test]
async fn https_with_a_private_ca_and_with_the_wrong_one() {
    // A leaf that expires in 5 days, from a root that expires in 400, exact to the second.
    let now = unix_now();
    let (leaf_until, root_until) = (now + 5 * 86_400, now + 400 * 86_400);
    let root = Authority::root("mcpwatch test root", root_until);
    let (cert, key) = root.server(&["127.0.0.1", "localhost"], leaf_until);
    let ca = root.pem.clone();
    let (other_ca, _, _) = ca_and_server_for(&["127.0.0.1"]);
    let gateway = PageServer::start_tls(
        vec![
            ("/", Page::html(200, ADMIN_HTML)),
            ("/health", Page::redirect("/")),
        ],
        &cert,
        &key,
    )
    .await;
    let plain = PageServer::start(vec![(
        "/",
        Page::redirect(&format!("https://localhost:{}/", gateway.address().port())),
    )])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ca).expect("write");
    std::fs::write(dir.path().join("other.pem"), other_ca).expect("write");
    let config = format!(
        "collectors:\n  http:\n\
         \x20   - {{name: gateway, url: '{0}', ca_file: ca.pem}}\n\
         \x20   - {{name: wrong-ca, url: '{0}', ca_file: other.pem}}\n\
         \x20   - {{name: system-roots, url: '{0}'}}\n\
         \x20   - {{name: insecure, url: '{0}', insecure_skip_verify: true}}\n\
         \x20   - {{name: upgraded, url: '{1}', ca_file: ca.pem}}\n\
         probe:\n  modules:\n    gateways:\n      prober: http\n      ca_file: ca.pem\n\
         \x20     allowed_targets: 'https://127\\.0\\.0\\.1:\\d+/'\n",
        gateway.url("/health"),
        plain.url("/"),
    );
    let (_exporter, address) = start_exporter(dir.path(), &config, &[]).await;
    let text = scrape(address, None).await;
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
    let html = ADMIN_HTML.len() as f64;
    assert_eq!(
        found(&text, "gateway"),
        (1.0, 200.0, 1.0, 1.0, 1.0, html, 0.0, None)
    );
    assert!(
        value(&text, "http_duration_seconds", "gateway", ",phase=\"tls\"").is_some_and(|s| s > 0.0)
    );
    for target in ["wrong-ca", "system-roots"] {
        assert_eq!(
            found(&text, target),
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, reason("tls")),
            "{target}"
        );
    }
    assert_eq!(
        found(&text, "insecure"),
        (1.0, 200.0, 1.0, 1.0, 1.0, html, 0.0, None)
    );
    // From http:// to https:// on another host, checked with the target's CA.
    assert_eq!(
        found(&text, "upgraded"),
        (1.0, 200.0, 1.0, 1.0, 1.0, html, 0.0, None)
    );

    // The certificates, as every TLS target reports them: recorded before they are checked,
    // so the wrong CA's target shows the chain it refused, unverified.
    // Every page is served by `gateway`: its port names the server, with the host asked for.
    let port = gateway.address().port();
    let tls = |name: &str, target: &str, server: &str, more: &str| {
        value_of(
            &text,
            &format!(
                "{name}{{target=\"{target}\",collector=\"http\",server=\"{server}:{port}\"{more}}}"
            ),
        )
    };
    let (leaf, verified) = (leaf_until as f64, leaf_until.min(root_until) as f64);
    for target in ["gateway", "wrong-ca", "system-roots", "insecure"] {
        assert_eq!(
            tls(
                "tls_expiry_timestamp_seconds",
                target,
                "127.0.0.1",
                ",chain=\"leaf\""
            ),
            Some(leaf),
            "{target}"
        );
    }
    assert_eq!(
        tls(
            "tls_expiry_timestamp_seconds",
            "gateway",
            "127.0.0.1",
            ",chain=\"verified\""
        ),
        Some(verified)
    );
    assert_eq!(
        tls("tls_chain_verified", "gateway", "127.0.0.1", ""),
        Some(1.0)
    );
    assert_eq!(
        tls("tls_chain_verified", "wrong-ca", "127.0.0.1", ""),
        Some(0.0)
    );
    assert_eq!(
        tls("tls_chain_verified", "insecure", "127.0.0.1", ""),
        None,
        "not checked"
    );
    assert_eq!(
        tls(
            "tls_expiry_timestamp_seconds",
            "upgraded",
            "localhost",
            ",chain=\"leaf\""
        ),
        Some(leaf)
    );
    assert_eq!(
        tls("tls_chain_verified", "upgraded", "localhost", ""),
        Some(1.0)
    );
    assert!(!text.contains("tls_expiry_timestamp_seconds{target=\"admin"));

    // Through /probe, as blackbox_exporter users read a site's certificate: no target label.
    let probe = client()
        .get(format!("http://{address}/probe"))
        .query(&[("module", "gateways"), ("target", &gateway.url("/"))])
        .send()
        .await
        .expect("probe");
    assert_eq!(probe.status(), 200);
    let probe = checked(probe.text().await.expect("body"));
    assert_eq!(promtool_check_metrics(probe.as_bytes()), "");
    assert_eq!(value_of(&probe, "probe_success"), Some(1.0), "{probe}");
    assert_eq!(value_of(&probe, "http_tls"), Some(1.0));
    assert_eq!(
        value_of(
            &probe,
            &format!(
                "tls_expiry_timestamp_seconds{{collector=\"http\",server=\"127.0.0.1:{port}\",chain=\"leaf\"}}"
            )
        ),
        Some(leaf),
        "{probe}"
    );
    assert_eq!(
        value_of(
            &probe,
            &format!("tls_chain_verified{{collector=\"http\",server=\"127.0.0.1:{port}\"}}")
        ),
        Some(1.0)
    );
    assert!(!probe.contains("target="), "{probe}");
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
