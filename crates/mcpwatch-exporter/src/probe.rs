//! `GET /probe?target=URL&module=NAME`: an MCP server named by the scraper, probed as the
//! module says, blackbox-style: `probe_success`, `probe_duration_seconds` and the
//! `wsdaemon_mcp_*` series, without a `target` label (Prometheus' `instance` names it).
//!
//! A target must parse, hold no credentials, have one of the module's schemes and match
//! its `allowed_targets` whole; anything else is a 400 that names the problem and shows the
//! target redacted. With `prober: http`, each redirect's URL passes the same checks before
//! it is requested; one that does not fails the probe (`reason="redirect"`). The collector probing a target is kept between requests (it remembers
//! the MCP era the server speaks), in a cache of `probe.cache_size` targets that forgets
//! the least recently probed first and is emptied by a reload. At most
//! `probe.max_concurrent` probes run at once; a request beyond them is answered 503 at once,
//! as Prometheus' client libraries answer past their limit of requests in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use mcpwatch_core::config::Pattern;
use mcpwatch_core::exporter_service::{
    Route, exposition_response, method_not_allowed, scraper_timeout, text_response,
};
use mcpwatch_core::secret::redact_message;
use mcpwatch_core::{
    Collector, MetricFamily, MetricSink, MetricSource, RedactedUrl, ScrapeContext, ScrapeOptions,
    async_trait,
};
use mcpwatch_wsdaemon::{HttpCollector, RedirectRule, WsDaemonCollector};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

/// The longest target accepted: each target's collector is kept (up to `cache_size` of
/// them), and a URL of an MCP endpoint is short.
const MAX_TARGET_BYTES: usize = 2048;

/// Time past a module's timeout that a probe's collection is given to write its result.
const RESULT_ROOM: Duration = Duration::from_millis(100);

use crate::config::{ExporterConfig, ProbeKind, ProbeModule, ProbeTargetConfig};

/// How a request is written, for the messages that tell how to write it.
const USAGE: &str = "/probe?target=URL&module=NAME";

/// Counts of one module, kept across reloads while the module is configured.
#[derive(Debug, Default)]
struct ModuleCounts {
    probes: AtomicU64,
    failures: AtomicU64,
}

/// A configured module, ready to check targets.
#[derive(Debug)]
struct Module {
    config: ProbeModule,
    rules: Arc<TargetRules>,
    counts: Arc<ModuleCounts>,
}

/// What a module requires of a URL it probes: of the target and, with `prober: http`, of
/// every redirect's URL.
#[derive(Debug)]
struct TargetRules {
    module_name: String,
    schemes: Vec<String>,
    /// `allowed_targets`, anchored at both ends.
    allowed: Pattern,
}

impl TargetRules {
    /// Checks that `target` is short enough, a URL with a scheme and a host, holds no
    /// credentials and has one of the module's schemes.
    fn check_url(&self, target: &str) -> Result<(), String> {
        let module_name = &self.module_name;
        if target.len() > MAX_TARGET_BYTES {
            return Err(format!(
                "The target is {} bytes long; a target is at most {MAX_TARGET_BYTES}.",
                target.len()
            ));
        }
        let shown = RedactedUrl::new(target);
        let uri: http::Uri = target
            .parse()
            .ok()
            .filter(|u: &http::Uri| u.scheme().is_some() && u.authority().is_some())
            .ok_or_else(|| {
                format!(
                    "The target {shown:?} is not a URL with a scheme and a host, such as \
                     http://127.0.0.1:8000/mcp."
                )
            })?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "The target {shown:?} holds credentials, which are refused in a URL: give \
                 them in module {module_name:?}'s bearer_token, bearer_token_file or headers."
            ));
        }
        let scheme = uri.scheme_str().unwrap_or_default();
        if !self.schemes.iter().any(|s| s == scheme) {
            return Err(format!(
                "The target {shown:?} has scheme {scheme}; module {module_name:?} allows {}.",
                self.schemes.join(", ")
            ));
        }
        Ok(())
    }

    /// Checks that the whole of `target` matches `allowed_targets`.
    fn check_allowed(&self, target: &str) -> Result<(), String> {
        if self.allowed.is_match(target) {
            return Ok(());
        }
        Err(format!(
            "The target {:?} is not allowed by module {:?}: it does not match its \
             allowed_targets.",
            RedactedUrl::new(target),
            self.module_name
        ))
    }

    /// The rule a redirect's URL must pass: every check a target passes.
    fn redirect_rule(self: &Arc<Self>) -> RedirectRule {
        let rules = self.clone();
        Arc::new(move |url: &str| rules.check_url(url).and_then(|()| rules.check_allowed(url)))
    }
}

/// The key of a cached collector: the module and the target as requested.
type CacheKey = (String, String);

/// Collectors by module and target; the least recently used is dropped first.
struct CollectorCache {
    capacity: usize,
    clock: u64,
    entries: HashMap<CacheKey, (Arc<dyn Collector>, u64)>,
    /// Keys by when they were last used.
    by_use: BTreeMap<u64, CacheKey>,
}

impl std::fmt::Debug for CollectorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorCache")
            .field("capacity", &self.capacity)
            .field("targets", &self.entries.len())
            .finish()
    }
}

impl CollectorCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            clock: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The collector of `key`, marked as just used.
    fn get(&mut self, key: &CacheKey) -> Option<Arc<dyn Collector>> {
        let now = self.tick();
        let (collector, used) = self.entries.get_mut(key)?;
        let before = std::mem::replace(used, now);
        let collector = collector.clone();
        if let Some(key) = self.by_use.remove(&before) {
            self.by_use.insert(now, key);
        }
        Some(collector)
    }

    /// Keeps `collector` for `key`, unless another request kept one first: that one is
    /// returned, so that a target has one collector (and one memory of its era).
    fn insert(&mut self, key: CacheKey, collector: Arc<dyn Collector>) -> Arc<dyn Collector> {
        if let Some(kept) = self.get(&key) {
            return kept;
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let now = self.tick();
        self.by_use.insert(now, key.clone());
        self.entries.insert(key, (collector.clone(), now));
        collector
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The modules and the cache of one configuration.
#[derive(Debug)]
pub struct ProbeState {
    modules: BTreeMap<String, Module>,
    cache: Mutex<CollectorCache>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    timeout_offset: Duration,
}

impl ProbeState {
    /// The modules of `config`, each checked by building a collector for a target that
    /// stands for its own (a CA file that does not parse is found here, not at the first
    /// request). Nothing connects.
    pub fn build(config: &ExporterConfig) -> Result<Self, String> {
        let mut modules = BTreeMap::new();
        for (name, module) in &config.probe.modules {
            let fail = |e: String| redact_message(&format!("probe module {name:?}: {e}"));
            let sample = module.sample_target();
            let target = module
                .target_config("probe".to_owned(), &sample)
                .map_err(fail)?;
            let anchored = format!(r"\A(?:{})\z", module.allowed_targets.as_str());
            let allowed =
                Pattern::new(&anchored).map_err(|e| fail(format!("allowed_targets: {e}")))?;
            let rules = Arc::new(TargetRules {
                module_name: name.clone(),
                schemes: module.schemes().into_iter().map(str::to_owned).collect(),
                allowed,
            });
            build_collector(target, &rules).map_err(fail)?;
            modules.insert(
                name.clone(),
                Module {
                    config: module.clone(),
                    rules,
                    counts: Arc::default(),
                },
            );
        }
        let max_concurrent = config.probe.max_concurrent;
        Ok(Self {
            modules,
            cache: Mutex::new(CollectorCache::new(config.probe.cache_size)),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            timeout_offset: config.scrape.timeout_offset,
        })
    }

    fn module_names(&self) -> String {
        self.modules.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The module and target of a request, or why the request is refused.
    fn check<'a>(&'a self, query: &'a [(String, String)]) -> Result<Checked<'a>, String> {
        let target = single(query, "target")?;
        let module_name = single(query, "module")?;
        let Some(target) = target.filter(|t| !t.is_empty()) else {
            return Err(format!("Missing the target parameter: ask {USAGE}."));
        };
        let known = if self.modules.is_empty() {
            "no module is configured (probe.modules in the configuration file)".to_owned()
        } else {
            format!("the modules are: {}", self.module_names())
        };
        let Some(module_name) = module_name.filter(|m| !m.is_empty()) else {
            return Err(format!(
                "Missing the module parameter: ask {USAGE}; {known}."
            ));
        };
        let Some(module) = self.modules.get(module_name) else {
            return Err(format!(
                "Unknown module {:?}; {known}.",
                redact_message(module_name)
            ));
        };
        module.rules.check_url(target)?;
        let name = mcpwatch_wsdaemon::target_name(target)
            .map_err(|e| format!("The target is not valid: {}.", redact_message(&e)))?;
        let config = module
            .config
            .target_config(name, target)
            .and_then(|c| c.validate().map(|()| c).map_err(|(_, message)| message))
            .map_err(|e| format!("The target is not valid: {}.", redact_message(&e)))?;
        module.rules.check_allowed(target)?;
        Ok(Checked {
            module_name,
            module,
            target,
            config,
        })
    }

    /// The collector of a checked target, built on the blocking pool (it may read a CA
    /// file) when the cache does not hold it.
    async fn collector(&self, checked: &Checked<'_>) -> Result<Arc<dyn Collector>, String> {
        let key = (checked.module_name.to_owned(), checked.target.to_owned());
        if let Some(kept) = self.lock_cache().get(&key) {
            return Ok(kept);
        }
        let config = checked.config.clone();
        let rules = checked.module.rules.clone();
        let built = tokio::task::spawn_blocking(move || build_collector(config, &rules))
            .await
            .map_err(|e| format!("building the probe failed: {e}"))??;
        Ok(self.lock_cache().insert(key, built))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, CollectorCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request found valid.
struct Checked<'a> {
    module_name: &'a str,
    module: &'a Module,
    target: &'a str,
    config: ProbeTargetConfig,
}

/// The collector probing one target under its module's `rules`; its error is redacted.
fn build_collector(
    config: ProbeTargetConfig,
    rules: &Arc<TargetRules>,
) -> Result<Arc<dyn Collector>, String> {
    let built: Result<Arc<dyn Collector>, _> = match config {
        ProbeTargetConfig::Mcp(config) => {
            WsDaemonCollector::new(*config).map(|c| Arc::new(c) as Arc<dyn Collector>)
        }
        ProbeTargetConfig::Http(config) => {
            HttpCollector::with_redirect_rule(*config, rules.redirect_rule())
                .map(|c| Arc::new(c) as Arc<dyn Collector>)
        }
    };
    built.map_err(|e| redact_message(&e.to_string()))
}

/// The value of a parameter given at most once.
fn single<'a>(query: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, String> {
    let mut values = query.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("Give the {name} parameter once: ask {USAGE}."));
    }
    Ok(first.map(String::as_str))
}

/// The parameters of a query string, `+` and percent-escapes decoded.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or("a % is not followed by two hexadecimal digits")?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a parameter is not UTF-8 once decoded".to_owned())
}

/// Serves `/probe`; the modules are replaced on reload.
#[derive(Debug)]
pub struct Prober {
    state: RwLock<Arc<ProbeState>>,
    bad_requests: AtomicU64,
    saturated: AtomicU64,
}

impl Prober {
    /// Serves the modules of `state`.
    pub fn new(state: ProbeState) -> Self {
        Self {
            state: RwLock::new(Arc::new(state)),
            bad_requests: AtomicU64::new(0),
            saturated: AtomicU64::new(0),
        }
    }

    fn state(&self) -> Arc<ProbeState> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `next`'s modules from now on, with an empty cache; probes under way finish
    /// with the old ones. A module kept by name keeps its counts.
    pub fn replace(&self, mut next: ProbeState) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for (name, module) in &mut next.modules {
            if let Some(old) = state.modules.get(name) {
                module.counts = old.counts.clone();
            }
        }
        if next.max_concurrent == state.max_concurrent {
            // Probes under way still count against the limit.
            next.permits = state.permits.clone();
        }
        *state = Arc::new(next);
    }

    fn bad_request(&self, message: String) -> Response<Full<Bytes>> {
        self.bad_requests.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%message, "Probe request refused.");
        text_response(StatusCode::BAD_REQUEST, format!("{message}\n"))
    }

    async fn probe(&self, request: &Request<()>) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let state = self.state();
        let query = match parse_query(request.uri().query().unwrap_or_default()) {
            Ok(query) => query,
            Err(e) => return self.bad_request(format!("The query string is not valid: {e}.")),
        };
        let checked = match state.check(&query) {
            Ok(checked) => checked,
            Err(message) => return self.bad_request(message),
        };
        let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
            self.saturated.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limit = state.max_concurrent,
                "Probe refused: probe.max_concurrent probes are under way."
            );
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} probes are under way, as many as probe.max_concurrent allows; try \
                     again later.\n",
                    state.max_concurrent
                ),
            );
        };
        // The module's timeout bounds the probe itself (the collector holds to it from its
        // own start); the deadline given to the collection is the scraper's, or the
        // module's with room to spare, so that the collector's own margin for writing its
        // result does not come out of the module's timeout.
        let options = ScrapeOptions {
            timeout: checked.module.config.timeout + RESULT_ROOM,
            timeout_offset: state.timeout_offset,
        };
        let budget = options.budget(scraper_timeout(request.headers()));
        let deadline = start + budget;
        // Building a collector (a new target) waits for the blocking pool: that counts
        // against the deadline too.
        let collector = match timeout_at(deadline, state.collector(&checked)).await {
            Ok(Ok(collector)) => Some(collector),
            Ok(Err(error)) => {
                tracing::error!(module = checked.module_name, %error, "Probe not built.");
                return text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "The probe of module {:?} could not be built; the exporter's log says \
                         why.\n",
                        checked.module_name
                    ),
                );
            }
            Err(_) => None,
        };
        let mut sink = MetricSink::default();
        let outcome = match collector {
            Some(collector) => timeout_at(
                deadline,
                collector.collect(&ScrapeContext::new(deadline), &mut sink),
            )
            .await
            .ok(),
            None => None,
        };
        let duration = start.elapsed();
        // As wsdaemon_mcp_up (a failed tool call is told by its own series, not here), or
        // http_up.
        let (up, prefix, help) = match checked.module.config.prober {
            ProbeKind::Mcp => (
                "wsdaemon_mcp_up",
                "wsdaemon_mcp_",
                "Whether the MCP probe succeeded, as wsdaemon_mcp_up; a failed tool call is \
                 told by wsdaemon_mcp_tool_call_success.",
            ),
            ProbeKind::Http => (
                "http_up",
                "http_",
                "Whether the HTTP check passed, as http_up: a valid status, and a body \
                 matching the patterns set.",
            ),
        };
        let success = matches!(outcome, Some(Ok(())))
            && sink.find(up).is_some_and(|up| up.value(&[]) == Some(1.0));
        let counts = &checked.module.counts;
        counts.probes.fetch_add(1, Ordering::Relaxed);
        if !success {
            counts.failures.fetch_add(1, Ordering::Relaxed);
            let error = match &outcome {
                Some(Err(error)) => redact_message(&error.to_string()),
                None => format!("no answer within {budget:?}"),
                Some(Ok(())) => "the probe reported no success".to_owned(),
            };
            tracing::debug!(
                module = checked.module_name,
                target = %RedactedUrl::new(checked.target),
                %error,
                "Probe failed."
            );
        }

        let mut families = vec![
            {
                let mut f = MetricFamily::gauge("probe_success", help);
                f.add(&[], if success { 1.0 } else { 0.0 });
                f
            },
            {
                let mut f = MetricFamily::gauge(
                    "probe_duration_seconds",
                    "How long the probe took, in seconds.",
                );
                f.add(&[], duration.as_secs_f64());
                f
            },
        ];
        // The target's own series, and the certificate chains of its TLS handshakes.
        families.extend(
            sink.into_families()
                .into_iter()
                .filter(|f| f.name().starts_with(prefix) || f.name().starts_with("tls_")),
        );
        exposition_response(families, request.headers())
    }
}

#[async_trait]
impl Route for Prober {
    fn usage(&self) -> String {
        format!("GET {USAGE}")
    }

    fn describe(&self) -> String {
        let state = self.state();
        if state.modules.is_empty() {
            "probe an MCP server; no module is configured (probe.modules)".to_owned()
        } else {
            format!(
                "probe an MCP server with one of the modules: {}",
                state.module_names()
            )
        }
    }

    async fn handle(&self, request: Request<()>) -> Response<Full<Bytes>> {
        match *request.method() {
            Method::GET => self.probe(&request).await,
            _ => method_not_allowed("GET"),
        }
    }
}

impl MetricSource for Prober {
    fn collect(&self, sink: &mut MetricSink) {
        let state = self.state();
        let probes = sink.counter(
            "mcpwatch_probe_requests_total",
            "Probes run by GET /probe, by module.",
        );
        for (name, module) in &state.modules {
            probes.add(
                &[("module", name)],
                module.counts.probes.load(Ordering::Relaxed) as f64,
            );
        }
        let failures = sink.counter(
            "mcpwatch_probe_failures_total",
            "Probes run by GET /probe that answered probe_success 0, by module.",
        );
        for (name, module) in &state.modules {
            failures.add(
                &[("module", name)],
                module.counts.failures.load(Ordering::Relaxed) as f64,
            );
        }
        sink.counter(
            "mcpwatch_probe_bad_requests_total",
            "Requests to /probe refused with 400: no or an unknown module, a target that is \
             malformed, holds credentials or is not allowed.",
        )
        .add(&[], self.bad_requests.load(Ordering::Relaxed) as f64);
        sink.counter(
            "mcpwatch_probe_saturated_total",
            "Requests to /probe answered 503 because probe.max_concurrent probes were under \
             way.",
        )
        .add(&[], self.saturated.load(Ordering::Relaxed) as f64);
        sink.gauge(
            "mcpwatch_probe_cached_targets",
            "Targets whose probe is kept between requests (at most probe.cache_size).",
        )
        .add(&[], state.lock_cache().len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::path::Path;

    fn state(text: &str) -> ProbeState {
        let config: ExporterConfig =
            mcpwatch_core::config::parse_yaml(text, Path::new("exporter.yml")).expect("config");
        ProbeState::build(&config).expect("modules")
    }

    const MODULES: &str = "probe:\n  modules:\n    mcp:\n      \
                           allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n    ws:\n      \
                           transport: websocket\n      allowed_targets: 'wss?://127\\.0\\.0\\.1:\\d+/.*'\n";

    fn get(uri: &str) -> Request<()> {
        Request::get(uri).body(()).expect("request")
    }

    async fn answer(prober: &Prober, request: Request<()>) -> (StatusCode, String, String) {
        let response = prober.handle(request).await;
        let status = response.status();
        let content_type = response.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port()
    }

    /// A loopback port that accepts connections and never answers; it lives with the task.
    async fn silent_port() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        (port, task)
    }

    #[tokio::test]
    async fn refusals_name_the_problem_without_echoing_credentials() {
        let prober = Prober::new(state(MODULES));
        let usage = "ask /probe?target=URL&module=NAME";
        for (query, expected) in [
            ("", format!("Missing the target parameter: {usage}.")),
            (
                "module=mcp&target=",
                format!("Missing the target parameter: {usage}."),
            ),
            (
                "target=http://127.0.0.1:1/mcp",
                format!("Missing the module parameter: {usage}; the modules are: mcp, ws."),
            ),
            (
                "target=http://127.0.0.1:1/mcp&module=nope",
                "Unknown module \"nope\"; the modules are: mcp, ws.".to_owned(),
            ),
            (
                &format!("module=mcp&target=http://127.0.0.1:1/{}", "a".repeat(3000)),
                "The target is 3019 bytes long; a target is at most 2048.".to_owned(),
            ),
            (
                "target=a&target=b&module=mcp",
                format!("Give the target parameter once: {usage}."),
            ),
            (
                "target=%zz&module=mcp",
                "The query string is not valid: a % is not followed by two hexadecimal digits."
                    .to_owned(),
            ),
            (
                "target=127.0.0.1:1/mcp&module=mcp",
                "The target \"<secret>\" is not a URL with a scheme and a host, such as \
                 http://127.0.0.1:8000/mcp."
                    .to_owned(),
            ),
            (
                "target=http://ops:hunter2@127.0.0.1:1/mcp?key=hunter2&module=mcp",
                "The target \"http://<secret>@127.0.0.1:1/mcp\" holds credentials, which are \
                 refused in a URL: give them in module \"mcp\"'s bearer_token, \
                 bearer_token_file or headers."
                    .to_owned(),
            ),
            (
                // A password holding `/`: the parser sees no user info, the redaction does.
                "target=http://ops:pa/ss@127.0.0.1:1/mcp&module=mcp",
                "The target is not valid: \"http://<secret>@127.0.0.1:1/<…>\": invalid port."
                    .to_owned(),
            ),
            (
                "target=http://ops:1/ss@127.0.0.1:1/mcp&module=mcp",
                "The target \"http://<secret>@127.0.0.1:1/mcp\" is not allowed by module \
                 \"mcp\": it does not match its allowed_targets."
                    .to_owned(),
            ),
            (
                "target=ws://127.0.0.1:1/mcp&module=mcp",
                "The target \"ws://127.0.0.1:1/mcp\" has scheme ws; module \"mcp\" allows \
                 http, https."
                    .to_owned(),
            ),
            (
                "target=http://127.0.0.1:1/mcp&module=ws",
                "The target \"http://127.0.0.1:1/mcp\" has scheme http; module \"ws\" allows \
                 ws, wss."
                    .to_owned(),
            ),
            (
                "target=http://127.0.0.1:70000/mcp&module=mcp",
                "The target is not valid: \"http://127.0.0.1:70000/<…>\": invalid port.".to_owned(),
            ),
            (
                "target=http://10.0.0.1:80/mcp&module=mcp",
                "The target \"http://10.0.0.1:80/mcp\" is not allowed by module \"mcp\": it \
                 does not match its allowed_targets."
                    .to_owned(),
            ),
            (
                // Anchored: a match inside the URL is not enough.
                "target=http://127.0.0.1:1/mcp/../admin&module=mcp",
                "The target \"http://127.0.0.1:1/mcp/../admin\" is not allowed by module \
                 \"mcp\": it does not match its allowed_targets."
                    .to_owned(),
            ),
        ] {
            let (status, content_type, body) =
                answer(&prober, get(&format!("/probe?{query}"))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(content_type, "text/plain; charset=utf-8");
            assert_eq!(body, format!("{expected}\n"), "{query}");
        }
        let mut sink = MetricSink::default();
        prober.collect(&mut sink);
        let refused = sink
            .find("mcpwatch_probe_bad_requests_total")
            .expect("counter");
        assert_eq!(refused.value(&[]), Some(16.0));

        let post = Request::post("/probe?target=http://127.0.0.1:1/mcp&module=mcp")
            .body(())
            .expect("request");
        let response = prober.handle(post).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[http::header::ALLOW], "GET");
    }

    #[tokio::test]
    async fn no_module_configured_is_said_so() {
        let prober = Prober::new(state(""));
        let (status, _, body) = answer(&prober, get("/probe?target=http://x/&module=m")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            "Unknown module \"m\"; no module is configured (probe.modules in the configuration \
             file).\n"
        );
        assert_eq!(
            prober.describe(),
            "probe an MCP server; no module is configured (probe.modules)"
        );
        let prober = Prober::new(state(MODULES));
        assert_eq!(prober.usage(), "GET /probe?target=URL&module=NAME");
        assert_eq!(
            prober.describe(),
            "probe an MCP server with one of the modules: mcp, ws"
        );
    }

    #[tokio::test]
    async fn a_target_down_is_a_200_with_probe_success_0_and_no_target_label() {
        let prober = Prober::new(state(MODULES));
        let target = format!("http://127.0.0.1:{}/mcp", closed_port());
        let (status, content_type, body) =
            answer(&prober, get(&format!("/probe?module=mcp&target={target}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(body.contains("\nprobe_success 0\n"), "{body}");
        assert!(body.contains("\nprobe_duration_seconds "), "{body}");
        assert!(
            body.contains(
                "wsdaemon_mcp_failure{transport=\"streamable_http\",reason=\"refused\"} 1\n"
            ),
            "{body}"
        );
        assert!(body.contains("wsdaemon_mcp_up{transport=\"streamable_http\"} 0\n"));
        assert!(!body.contains("target="), "{body}");
        assert!(!body.contains("wsdaemon_up"), "{body}");

        // Asked for OpenMetrics, and with the target percent-encoded: the same target.
        let encoded = target.replace(':', "%3A").replace('/', "%2F");
        let request = Request::get(format!("/probe?target={encoded}&module=mcp"))
            .header(
                http::header::ACCEPT,
                "application/openmetrics-text; version=1.0.0",
            )
            .body(())
            .expect("request");
        let (status, content_type, body) = answer(&prober, request).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"));
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(
            prober.state().lock_cache().len(),
            1,
            "one collector per target"
        );

        let mut sink = MetricSink::default();
        prober.collect(&mut sink);
        let value =
            |name: &str, labels: &[(&str, &str)]| sink.find(name).and_then(|f| f.value(labels));
        assert_eq!(
            value("mcpwatch_probe_requests_total", &[("module", "mcp")]),
            Some(2.0)
        );
        assert_eq!(
            value("mcpwatch_probe_requests_total", &[("module", "ws")]),
            Some(0.0)
        );
        assert_eq!(
            value("mcpwatch_probe_failures_total", &[("module", "mcp")]),
            Some(2.0)
        );
        assert_eq!(value("mcpwatch_probe_cached_targets", &[]), Some(1.0));
    }

    #[tokio::test]
    async fn an_http_module_serves_the_http_series() {
        let prober = Prober::new(state(
            "probe:\n  modules:\n    web:\n      prober: http\n      \
             allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/.*'\n",
        ));
        let (status, _, body) = answer(
            &prober,
            get(&format!(
                "/probe?module=web&target=http://127.0.0.1:{}/",
                closed_port()
            )),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\nprobe_success 0\n"), "{body}");
        assert!(body.contains("\nhttp_up 0\n"), "{body}");
        assert!(
            body.contains("\nhttp_failure{reason=\"refused\"} 1\n"),
            "{body}"
        );
        assert!(body.contains("\nhttp_status_code 0\n"), "{body}");
        assert!(!body.contains("target="), "{body}");
        assert!(!body.contains("wsdaemon_"), "{body}");
        assert!(
            body.contains("# HELP probe_success Whether the HTTP check passed"),
            "{body}"
        );
    }

    #[test]
    fn a_redirect_passes_every_check_a_target_passes() {
        let state = state(
            "probe:\n  modules:\n    web:\n      prober: http\n      schemes: [http]\n      \
             allowed_targets: 'http://127\\.0\\.0\\.1:19081/.*'\n",
        );
        let rule = state.modules["web"].rules.redirect_rule();
        assert_eq!(rule("http://127.0.0.1:19081/login"), Ok(()));
        for (url, refusal) in [
            (
                "http://127.0.0.1:19082/secret-admin".to_owned(),
                "The target \"http://127.0.0.1:19082/secret-admin\" is not allowed by module \
                 \"web\": it does not match its allowed_targets.",
            ),
            (
                "https://127.0.0.1:19081/login".to_owned(),
                "The target \"https://127.0.0.1:19081/login\" has scheme https; module \"web\" \
                 allows http.",
            ),
            (
                "http://ops:hunter2@127.0.0.1:19081/".to_owned(),
                "The target \"http://<secret>@127.0.0.1:19081/\" holds credentials, which are \
                 refused in a URL: give them in module \"web\"'s bearer_token, \
                 bearer_token_file or headers.",
            ),
            (
                format!("http://127.0.0.1:19081/{}", "a".repeat(3000)),
                "The target is 3023 bytes long; a target is at most 2048.",
            ),
        ] {
            assert_eq!(rule(&url), Err(refusal.to_owned()), "{url}");
        }
    }

    #[tokio::test]
    async fn a_hanging_target_is_answered_within_the_scrapers_timeout() {
        let prober = Prober::new(state(
            "probe:\n  modules:\n    slow:\n      timeout: 30s\n      \
             allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n",
        ));
        let (port, _silent) = silent_port().await;
        let request = Request::get(format!(
            "/probe?module=slow&target=http://127.0.0.1:{port}/mcp"
        ))
        .header("x-prometheus-scrape-timeout-seconds", "1.5")
        .body(())
        .expect("request");
        let start = std::time::Instant::now();
        let (status, _, body) = answer(&prober, request).await;
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\nprobe_success 0\n"), "{body}");
        assert!(
            body.contains(
                "wsdaemon_mcp_failure{transport=\"streamable_http\",reason=\"timeout\"} 1\n"
            ),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_module_timeout_is_the_probes_whole() {
        // Without a scraper's header, a short module timeout is not cut by the collector's
        // margin: a hanging target is waited for the whole of it.
        let prober = Prober::new(state(
            "probe:\n  modules:\n    short:\n      timeout: 300ms\n      \
             allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n",
        ));
        let (port, _silent) = silent_port().await;
        let start = std::time::Instant::now();
        let (status, _, body) = answer(
            &prober,
            get(&format!(
                "/probe?module=short&target=http://127.0.0.1:{port}/mcp"
            )),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\nprobe_success 0\n"), "{body}");
        let probed = body
            .lines()
            .find_map(|l| {
                l.strip_prefix("wsdaemon_mcp_duration_seconds{transport=\"streamable_http\"} ")
            })
            .and_then(|v| v.parse::<f64>().ok())
            .expect("probe duration");
        assert!(probed >= 0.3, "{probed}");
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn beyond_max_concurrent_a_request_is_answered_503() {
        let prober = Arc::new(Prober::new(state(
            "probe:\n  max_concurrent: 1\n  modules:\n    mcp:\n      timeout: 2s\n      \
             allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n",
        )));
        let (port, _silent) = silent_port().await;
        let hanging = format!("/probe?module=mcp&target=http://127.0.0.1:{port}/mcp");
        let first = tokio::spawn({
            let prober = prober.clone();
            let hanging = hanging.clone();
            async move { answer(&prober, get(&hanging)).await }
        });
        while prober.state().permits.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (status, _, body) = answer(&prober, get(&hanging)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "1 probes are under way, as many as probe.max_concurrent allows; try again later.\n"
        );
        let (status, _, body) = first.await.expect("first probe");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\nprobe_success 0\n"), "{body}");
        // The permit came back.
        let (status, _, _) = answer(
            &prober,
            get(&hanging.replace(&port.to_string(), &closed_port().to_string())),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let mut sink = MetricSink::default();
        prober.collect(&mut sink);
        let saturated = sink
            .find("mcpwatch_probe_saturated_total")
            .expect("counter");
        assert_eq!(saturated.value(&[]), Some(1.0));
    }

    #[tokio::test]
    async fn a_reload_replaces_the_modules_and_empties_the_cache() {
        let prober = Prober::new(state(MODULES));
        let target = format!("http://127.0.0.1:{}/mcp", closed_port());
        let query = |module: &str| format!("/probe?module={module}&target={target}");
        assert_eq!(answer(&prober, get(&query("mcp"))).await.0, StatusCode::OK);
        assert_eq!(prober.state().lock_cache().len(), 1);

        prober.replace(state(
            "probe:\n  modules:\n    mcp:\n      allowed_targets: 'http://localhost/mcp'\n    \
             other:\n      allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n",
        ));
        assert_eq!(prober.state().lock_cache().len(), 0);
        let (status, _, body) = answer(&prober, get(&query("mcp"))).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "the new allowed_targets apply"
        );
        assert!(body.contains("is not allowed by module \"mcp\""), "{body}");
        assert_eq!(
            answer(&prober, get(&query("ws"))).await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            answer(&prober, get(&query("other"))).await.0,
            StatusCode::OK
        );

        let mut sink = MetricSink::default();
        prober.collect(&mut sink);
        let probes = sink.find("mcpwatch_probe_requests_total").expect("counter");
        assert_eq!(
            probes.value(&[("module", "mcp")]),
            Some(1.0),
            "kept across the reload"
        );
        assert_eq!(probes.value(&[("module", "other")]), Some(1.0));
        assert_eq!(
            probes.value(&[("module", "ws")]),
            None,
            "no longer configured"
        );
    }

    #[test]
    fn the_cache_forgets_the_least_recently_used_target() {
        let collector = |port: u16| -> Arc<dyn Collector> {
            Arc::new(
                WsDaemonCollector::new(
                    state(MODULES).modules["mcp"]
                        .config
                        .daemon_config(
                            format!("127.0.0.1:{port}"),
                            &format!("http://127.0.0.1:{port}/mcp"),
                        )
                        .expect("config"),
                )
                .expect("collector"),
            )
        };
        let key = |port: u16| ("mcp".to_owned(), format!("http://127.0.0.1:{port}/mcp"));
        let mut cache = CollectorCache::new(2);
        let first = cache.insert(key(1), collector(1));
        cache.insert(key(2), collector(2));
        assert!(cache.get(&key(1)).is_some());
        cache.insert(key(3), collector(3));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&key(2)).is_none(),
            "the least recently used is dropped"
        );
        let again = cache.insert(key(1), collector(1));
        assert!(
            Arc::ptr_eq(&first, &again),
            "a target keeps its first collector"
        );
        assert!(cache.get(&key(3)).is_some());
        assert_eq!(cache.by_use.len(), cache.entries.len());
    }

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            parse_query("target=http%3A%2F%2Fh%3A1%2Fmcp%3Fa%3Db&module=a+b&flag").expect("query"),
            [
                ("target".to_owned(), "http://h:1/mcp?a=b".to_owned()),
                ("module".to_owned(), "a b".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert!(parse_query("target=%").is_err());
        assert!(parse_query("target=%ff").is_err(), "not UTF-8");
        assert_eq!(parse_query("").expect("empty"), []);
    }
}
