//! The exporter's HTTP endpoints: `/metrics`, `/health`, `/` and `POST /-/reload`, and the
//! [`Route`]s a binary adds (the exporter's `/probe`).
//!
//! [`metrics_response`] is the `/metrics` handler alone, for services that mount it in
//! their own router; [`exposition_response`] answers with metric families gathered
//! otherwise, in the format and encoding the request asks for.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::encode::{Format, accepts_gzip, gzip};
use crate::engine::{CollectorOutcome, ScrapeEngine, parse_scrape_timeout_header};
use crate::metrics::{MetricFamily, merge_families};

/// The header Prometheus sends with its scrape timeout.
pub const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// Runs a scrape and answers in the format and encoding the request's headers ask for.
pub async fn metrics_response(engine: &ScrapeEngine, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let (format, gzipped) = negotiate(headers);
    let scrape = engine.scrape(scraper_timeout(headers)).await;
    if !scrape.is_complete() {
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The collection failed; the exporter's log says why.\n",
        );
    }
    exposition(scrape.body(format, gzipped).await, format, gzipped)
}

/// Answers with `families`, merged by name, in the format and encoding the request's
/// headers ask for, as `/metrics` does: for endpoints that gather their own families (a
/// probe of one target) rather than run the engine.
pub fn exposition_response(
    families: Vec<MetricFamily>,
    headers: &HeaderMap,
) -> Response<Full<Bytes>> {
    let (format, gzipped) = negotiate(headers);
    let (groups, conflicts) = merge_families(families);
    for family in conflicts {
        tracing::error!(
            metric = family.name(),
            "Metric reported with two different types; the second was dropped."
        );
    }
    let plain = format.encode(&Arc::from(groups));
    let body = if gzipped { gzip(&plain) } else { plain };
    exposition(body, format, gzipped)
}

/// The scraper's timeout, from `X-Prometheus-Scrape-Timeout-Seconds`.
pub fn scraper_timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(SCRAPE_TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_scrape_timeout_header)
}

/// The format and whether to gzip, from `Accept` and `Accept-Encoding`.
fn negotiate(headers: &HeaderMap) -> (Format, bool) {
    let value = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    (
        Format::negotiate(value(header::ACCEPT)),
        accepts_gzip(value(header::ACCEPT_ENCODING)),
    )
}

/// A `200` with an exposition body and its headers.
fn exposition(body: Bytes, format: Format, gzipped: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Re-reads the configuration; the error names what is wrong and where.
pub type ReloadHook = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// An endpoint a binary adds beside the built-in ones, such as the exporter's `/probe`;
/// the index page lists it.
#[async_trait::async_trait]
pub trait Route: Send + Sync + 'static {
    /// How it is called, shown on the index page: `GET /probe?target=URL&module=NAME`.
    fn usage(&self) -> String;

    /// What it does, shown on the index page after its usage; plain text, read on every
    /// request for the page, so that it follows reloads.
    fn describe(&self) -> String;

    /// Answers a request for its path, whatever the method; the body is not read.
    async fn handle(&self, request: Request<()>) -> Response<Full<Bytes>>;
}

#[derive(Clone)]
struct ServiceState {
    engine: ScrapeEngine,
    telemetry_path: String,
    reload: Option<ReloadHook>,
    routes: Vec<(String, Arc<dyn Route>)>,
    started: Instant,
}

/// The exporter's endpoints as a hyper service. Cheap to clone.
#[derive(Clone)]
pub struct ExporterService {
    state: Arc<ServiceState>,
}

impl std::fmt::Debug for ExporterService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterService")
            .field("engine", &self.state.engine)
            .field("telemetry_path", &self.state.telemetry_path)
            .finish()
    }
}

impl ExporterService {
    /// Endpoints for `engine`, metrics at `/metrics`, no reload.
    pub fn new(engine: ScrapeEngine) -> Self {
        Self {
            state: Arc::new(ServiceState {
                engine,
                telemetry_path: "/metrics".to_owned(),
                reload: None,
                routes: Vec::new(),
                started: Instant::now(),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut ServiceState)) -> Self {
        let mut state = Arc::unwrap_or_clone(self.state);
        change(&mut state);
        Self {
            state: Arc::new(state),
        }
    }

    /// Serves metrics at `path` instead of `/metrics`.
    pub fn with_telemetry_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.with(|s| s.telemetry_path = path)
    }

    /// Enables `POST /-/reload`.
    pub fn with_reload(self, reload: ReloadHook) -> Self {
        self.with(|s| s.reload = Some(reload))
    }

    /// Serves `route` at `path`. The built-in endpoints keep their paths.
    pub fn with_route(self, path: impl Into<String>, route: Arc<dyn Route>) -> Self {
        let path = path.into();
        self.with(|s| s.routes.push((path, route)))
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        let state = &self.state;
        let path = request.uri().path();
        let method = request.method();
        let builtin = [&state.telemetry_path[..], "/health", "/", "/-/reload"];
        if !builtin.contains(&path)
            && let Some((_, route)) = state.routes.iter().find(|(p, _)| p == path)
        {
            let (parts, _) = request.into_parts();
            return route.handle(Request::from_parts(parts, ())).await;
        }
        match path {
            p if p == state.telemetry_path => match *method {
                Method::GET => metrics_response(&state.engine, request.headers()).await,
                _ => method_not_allowed("GET"),
            },
            "/health" => match *method {
                Method::GET => self.health(),
                _ => method_not_allowed("GET"),
            },
            "/" => match *method {
                Method::GET => self.index(),
                _ => method_not_allowed("GET"),
            },
            "/-/reload" => match (&state.reload, method) {
                (Some(reload), &Method::POST | &Method::PUT) => match reload().await {
                    Ok(()) => text_response(StatusCode::OK, "Configuration reloaded.\n"),
                    Err(error) => text_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Configuration not reloaded; the previous one stays: {error}\n"),
                    ),
                },
                (Some(_), _) => method_not_allowed("POST, PUT"),
                (None, _) => text_response(StatusCode::NOT_FOUND, "Reload is not enabled.\n"),
            },
            _ => text_response(StatusCode::NOT_FOUND, "Not Found\n"),
        }
    }

    fn health(&self) -> Response<Full<Bytes>> {
        #[derive(Serialize)]
        struct Health<'a> {
            status: &'a str,
            version: &'a str,
            revision: &'a str,
            uptime_seconds: f64,
            collectors: Vec<CollectorHealth>,
        }
        /// `ok` tells whether the last run succeeded (null before the first scrape);
        /// `last_success` is when a run last succeeded.
        #[derive(Serialize)]
        struct CollectorHealth {
            collector: String,
            target: String,
            ok: Option<bool>,
            last_outcome: Option<&'static str>,
            last_error: Option<String>,
            last_duration_seconds: f64,
            last_scrape: Option<String>,
            last_success: Option<String>,
        }
        let rfc3339 =
            |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_millis(t).to_string());
        let collectors: Vec<CollectorHealth> = self
            .state
            .engine
            .status()
            .into_iter()
            .map(|s| CollectorHealth {
                ok: s
                    .last_outcome
                    .as_ref()
                    .map(|o| *o == CollectorOutcome::Success),
                last_outcome: s.last_outcome.as_ref().map(|o| match o {
                    CollectorOutcome::Success => "success",
                    CollectorOutcome::Failed(_) => "failed",
                    CollectorOutcome::TimedOut => "timeout",
                }),
                last_error: match &s.last_outcome {
                    Some(CollectorOutcome::Failed(e)) => Some(e.clone()),
                    Some(CollectorOutcome::TimedOut) => {
                        Some("ran past the scrape deadline".to_owned())
                    }
                    _ => None,
                },
                last_duration_seconds: s.last_duration.as_secs_f64(),
                last_scrape: rfc3339(s.last_scrape),
                last_success: rfc3339(s.last_success),
                collector: s.collector,
                target: s.target,
            })
            .collect();
        let degraded = collectors.iter().any(|c| c.ok == Some(false));
        let (version, revision) = self.state.engine.build_info();
        let health = Health {
            status: if degraded { "degraded" } else { "ok" },
            version,
            revision,
            uptime_seconds: self.state.started.elapsed().as_secs_f64(),
            collectors,
        };
        let body = serde_json::to_vec_pretty(&health).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    fn index(&self) -> Response<Full<Bytes>> {
        let (version, revision) = self.state.engine.build_info();
        let mut rows = String::new();
        for (collector, target) in self.state.engine.collectors() {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                html_escape(&collector),
                html_escape(&target)
            ));
        }
        let metrics = html_escape(&self.state.telemetry_path);
        let mut more = String::new();
        for (_, route) in &self.state.routes {
            more.push_str(&format!(
                "<li><code>{}</code>: {}</li>\n",
                html_escape(&route.usage()),
                html_escape(&route.describe())
            ));
        }
        if self.state.reload.is_some() {
            more.push_str("<li><code>POST /-/reload</code>: re-read the configuration</li>\n");
        }
        let page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
             <title>mcpwatch exporter</title></head>\n<body>\n<h1>mcpwatch exporter</h1>\n\
             <p>Version {version} (revision {revision}).</p>\n<h2>Endpoints</h2>\n<ul>\n\
             <li><a href=\"{metrics}\">{metrics}</a>: metrics (OpenMetrics or text 0.0.4)</li>\n\
             <li><a href=\"/health\">/health</a>: status of each collector (JSON)</li>\n\
             {more}</ul>\n<h2>Collectors</h2>\n<table>\n<tr><th>collector</th><th>target</th></tr>\n\
             {rows}</table>\n</body>\n</html>\n",
            version = html_escape(version),
            revision = html_escape(revision),
        );
        let mut response = Response::new(Full::new(Bytes::from(page)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

impl<B: Send + 'static> hyper::service::Service<Request<B>> for ExporterService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.handle(request).await) })
    }
}

/// A plain text answer with `status`.
pub fn text_response(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A `405` naming the methods `allow`ed.
pub fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{CollectError, Collector, ScrapeContext};
    use crate::metrics::MetricSink;
    use async_trait::async_trait;
    use http_body_util::BodyExt;

    struct Target;

    #[async_trait]
    impl Collector for Target {
        fn name(&self) -> &str {
            "test"
        }
        fn target(&self) -> &str {
            "<b>db</b>"
        }
        async fn collect(
            &self,
            _ctx: &ScrapeContext,
            sink: &mut MetricSink,
        ) -> Result<(), CollectError> {
            sink.gauge("test_up", "Up.").add(&[], 1.0);
            Err(CollectError::msg("half done"))
        }
    }

    fn service() -> ExporterService {
        ExporterService::new(
            ScrapeEngine::builder()
                .collector(Target)
                .build_info("1.2.3", "abc")
                .build(),
        )
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).expect("request")
    }

    #[tokio::test]
    async fn metrics_negotiates_format_and_gzip() {
        let s = service();
        let response = s.handle(get("/metrics")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = body(response).await;
        assert!(text.contains("test_up{target=\"<b>db</b>\"} 1\n"), "{text}");
        assert!(text.contains("mcpwatch_build_info{version=\"1.2.3\",revision=\"abc\"} 1\n"));

        let request = Request::get("/metrics")
            .header(
                header::ACCEPT,
                "application/openmetrics-text; version=1.0.0",
            )
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(())
            .expect("request");
        let response = s.handle(request).await;
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .starts_with("application/openmetrics-text; version=1.0.0")
        );
    }

    struct Broken;

    impl crate::engine::MetricSource for Broken {
        fn collect(&self, _sink: &mut MetricSink) {
            panic!("bug in a metric source")
        }
    }

    #[tokio::test]
    async fn a_collection_that_breaks_down_is_a_server_error() {
        let s = ExporterService::new(ScrapeEngine::builder().source(Broken).build());
        let response = s.handle(get("/metrics")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // The next scrape collects again rather than sharing the broken one.
        let response = s.handle(get("/metrics")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(s.state.engine.collections(), 2);
    }

    #[tokio::test]
    async fn health_reports_collectors() {
        let s = service();
        let before: serde_json::Value =
            serde_json::from_str(&body(s.handle(get("/health")).await).await).expect("json");
        assert_eq!(before["status"], "ok");
        assert_eq!(before["collectors"][0]["ok"], serde_json::Value::Null);
        s.handle(get("/metrics")).await;
        let after: serde_json::Value =
            serde_json::from_str(&body(s.handle(get("/health")).await).await).expect("json");
        assert_eq!(after["status"], "degraded");
        assert_eq!(after["version"], "1.2.3");
        assert_eq!(after["collectors"][0]["collector"], "test");
        assert_eq!(after["collectors"][0]["ok"], false);
        assert_eq!(
            after["collectors"][0]["last_success"],
            serde_json::Value::Null
        );
        assert!(after["collectors"][0]["last_scrape"].as_str().is_some());
        assert_eq!(after["collectors"][0]["last_error"], "half done");
    }

    #[tokio::test]
    async fn index_escapes_and_unknown_paths_are_404() {
        let s = service();
        let page = body(s.handle(get("/")).await).await;
        assert!(page.contains("&lt;b&gt;db&lt;/b&gt;"));
        assert!(!page.contains("/-/reload"));
        assert_eq!(s.handle(get("/nope")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            s.handle(get("/-/reload")).await.status(),
            StatusCode::NOT_FOUND
        );
        let post = Request::post("/metrics").body(()).expect("request");
        assert_eq!(
            s.handle(post).await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    struct Echo;

    #[async_trait]
    impl Route for Echo {
        fn usage(&self) -> String {
            "GET /echo?say=<word>".to_owned()
        }
        fn describe(&self) -> String {
            "says it back".to_owned()
        }
        async fn handle(&self, request: Request<()>) -> Response<Full<Bytes>> {
            text_response(
                StatusCode::OK,
                format!("{} {}", request.method(), request.uri()),
            )
        }
    }

    #[tokio::test]
    async fn routes_are_served_listed_and_never_shadow_the_built_in_endpoints() {
        let s = service()
            .with_route("/echo", Arc::new(Echo))
            .with_route("/health", Arc::new(Echo));
        let response = s.handle(get("/echo?say=hi")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, "GET /echo?say=hi");
        let post = Request::post("/echo").body("ignored").expect("request");
        assert_eq!(body(s.handle(post).await).await, "POST /echo");
        let page = body(s.handle(get("/")).await).await;
        assert!(
            page.contains("<li><code>GET /echo?say=&lt;word&gt;</code>: says it back</li>"),
            "{page}"
        );
        let health = body(s.handle(get("/health")).await).await;
        assert!(health.contains("\"collectors\""), "{health}");
    }

    #[tokio::test]
    async fn families_are_answered_as_the_request_asks() {
        let families = || {
            let mut a = MetricFamily::gauge("probe_success", "Success.");
            a.add(&[], 1.0);
            let mut b = MetricFamily::gauge("probe_success", "Success.");
            b.add(&[("transport", "ws")], 0.0);
            vec![a, b]
        };
        let response = exposition_response(families(), &HeaderMap::new());
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            body(response).await,
            "# HELP probe_success Success.\n# TYPE probe_success gauge\nprobe_success 1\n\
             probe_success{transport=\"ws\"} 0\n"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0"),
        );
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let response = exposition_response(families(), &headers);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(response.headers()[header::VARY], "Accept, Accept-Encoding");
        let compressed = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let mut plain = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&compressed[..]),
            &mut plain,
        )
        .expect("gunzip");
        assert!(plain.ends_with("# EOF\n"), "{plain}");
    }

    #[test]
    fn the_scrapers_timeout_is_read_from_its_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(scraper_timeout(&headers), None);
        headers.insert(SCRAPE_TIMEOUT_HEADER, HeaderValue::from_static("2.5"));
        assert_eq!(scraper_timeout(&headers), Some(Duration::from_millis(2500)));
    }

    #[tokio::test]
    async fn reload_hook_reports_errors() {
        let s = service().with_reload(Arc::new(|| {
            Box::pin(async { Err("config.yml:3:5: scrape.timeout: invalid duration".to_owned()) })
        }));
        let get_reload = s.handle(get("/-/reload")).await;
        assert_eq!(get_reload.status(), StatusCode::METHOD_NOT_ALLOWED);
        let response = s
            .handle(Request::post("/-/reload").body(()).expect("request"))
            .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(response).await.contains("config.yml:3:5"));
    }
}
