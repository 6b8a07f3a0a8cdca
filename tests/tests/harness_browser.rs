//! The browser harness against a page served here: it loads, reads the DOM, follows a
//! link, posts a form, sends the Basic credentials it is given with every request, takes a
//! screenshot, reaches no host but loopback, and leaves no process behind once dropped.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, Redirect};
use axum::routing::get;
use mcpwatch_tests::browser::{Browser, processes_naming};

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn record(seen: &Seen, path: &str, headers: &HeaderMap) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((path.to_owned(), auth));
}

async fn serve() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/",
            get(|State(seen): State<Seen>, headers: HeaderMap| async move {
                record(&seen, "/", &headers);
                Html(
                    "<!DOCTYPE html><html><head><title>Start</title></head><body>\
                     <h1 id=\"title\">Hello &lt;world&gt;</h1><a id=\"next\" href=\"/next\">next</a>\
                     <form method=\"post\" action=\"/posted\"><input name=\"who\" id=\"who\"><button id=\"send\">Send</button></form>\
                     </body></html>",
                )
            }),
        )
        .route(
            "/next",
            get(|State(seen): State<Seen>, headers: HeaderMap| async move {
                record(&seen, "/next", &headers);
                Html("<!DOCTYPE html><html><body><p id=\"there\">there</p></body></html>")
            }),
        )
        .route(
            "/posted",
            axum::routing::post(
                |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    record(&seen, &format!("/posted {body}"), &headers);
                    Redirect::to("/next?done=1")
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_a_page_and_leaves_nothing_behind() {
    let (url, seen) = serve().await;
    let browser = Browser::start().await;
    browser.basic_auth("alice", "s3cret").await;
    browser.goto(&format!("{url}/")).await;
    let title = browser.find("#title").await;
    assert_eq!(browser.text(&title).await, "Hello <world>");
    assert_eq!(
        browser.execute("return document.title", vec![]).await,
        "Start"
    );
    browser.click(&browser.find("#next").await).await;
    browser
        .wait_for_url("the link", |u| u.ends_with("/next"))
        .await;
    browser.goto(&format!("{url}/")).await;
    browser
        .type_into(&browser.find("#who").await, "bob & co")
        .await;
    browser.click(&browser.find("#send").await).await;
    browser
        .wait_for_url("the form", |u| u.ends_with("/next?done=1"))
        .await;
    assert_eq!(browser.find_all("#there").await.len(), 1);

    // Every request carried the credentials; the form's body arrived encoded.
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/", "/next", "/", "/posted who=bob+%26+co", "/next"],
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(_, auth)| auth.as_deref() == Some("Basic YWxpY2U6czNjcmV0")),
        "{seen:?}"
    );

    // A host that is not loopback does not resolve.
    let outside = browser
        .execute(
            "return fetch('http://example.com/', {mode: 'no-cors'})\
             .then(() => 'reached', e => 'failed: ' + e.message);",
            vec![],
        )
        .await;
    assert!(
        outside.as_str().is_some_and(|o| o.starts_with("failed")),
        "{outside}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = browser.screenshot(&dir.path().join("page.png")).await;
    assert!(bytes > 100, "{bytes}");

    // Its processes: chromedriver, the browser and its helpers, all naming its directory.
    let started = browser.processes();
    assert!(started.len() >= 3, "{started:?}");
    assert!(browser.profile_dir().join("Default").is_dir());
    let own = browser.dir().to_path_buf();
    drop(browser);
    assert_eq!(processes_naming(&own), Vec::<u32>::new());
    for pid in started {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .map_or("", |(_, rest)| rest.get(..1).unwrap_or(""));
        assert!(
            stat.is_empty() || state == "Z",
            "process {pid} still runs: {stat}"
        );
    }
    assert!(!own.exists(), "the temporary directory is removed");
}
