//! The Grafana dashboards in `grafana-dashboards/`.
//!
//! Static checks, with no service: every file follows the conventions of the shipped
//! dashboards (Classic model, stable uid, `datasource`/`job`/`instance`/`target`
//! variables, units, titles and descriptions) and dashboard-linter's rules, re-implemented
//! here because the linter cannot be installed: every query parses as PromQL once Grafana's
//! variables are expanded as the linter expands them, every selector is narrowed by the
//! dashboard's variables, every `rate`/`irate` range is `$__rate_interval`, and counters are
//! only read through `rate`, `irate` or `increase`.
//!
//! Live check: real PostgreSQL (with a logical replica and dead rows), Redis (with a
//! replica), an MCP daemon (health endpoint, health file, request log, and the official
//! SDK's server over Streamable HTTP), a directory of backups, a Docker daemon with
//! containers that run healthy, exit, restart and are OOM-killed, the exporter watching all of
//! them, the notifier with an escalation policy, a failing channel and a maintenance window,
//! and a real Prometheus with the shipped rules: every query of every dashboard succeeds
//! and returns data.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::daemon::{Behaviour, Daemon};
use mcpwatch_tests::docker::Dockerd;
use mcpwatch_tests::http::client;
use mcpwatch_tests::mcp::{InstrumentedServer, McpServer, ModernMcpServer};
use mcpwatch_tests::notifier::{NotifierProcess, payload};
use mcpwatch_tests::pages::{Page, PageServer};
use mcpwatch_tests::ports::{free_address, free_port};
use mcpwatch_tests::postgres::{PostgresOptions, PostgresServer};
use mcpwatch_tests::process::ServiceProcess;
use mcpwatch_tests::prometheus::Prometheus;
use mcpwatch_tests::redis::RedisServer;
use mcpwatch_tests::repo::{read, root};
use mcpwatch_tests::tls::ca_and_server_for;
use mcpwatch_tests::wait_for_async;
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::{Value, json};

/// Each shipped dashboard: file, uid, and whether it has a `target` variable.
const DASHBOARDS: [(&str, &str, bool); 12] = [
    ("overview.json", "mcpwatch-overview", false),
    ("host.json", "mcpwatch-host", false),
    ("postgres.json", "mcpwatch-postgres", true),
    ("redis.json", "mcpwatch-redis", true),
    ("wsdaemon.json", "mcpwatch-wsdaemon", true),
    ("endpoints.json", "mcpwatch-endpoints", true),
    ("files.json", "mcpwatch-files", true),
    ("notifier.json", "mcpwatch-notifier", false),
    ("mcp.json", "mcpwatch-mcp", false),
    ("certificates.json", "mcpwatch-certificates", true),
    ("logs.json", "mcpwatch-logs", true),
    ("containers.json", "mcpwatch-containers", true),
];

/// The durations dashboard-linter puts in place of Grafana's interval variables: values no
/// one writes by hand, so that a range can be traced back to the variable.
const RATE_INTERVAL_MS: u64 = 8_869_990_787;
const INTERVAL_MS: u64 = 4_867_856_611;
const RANGE_MS: u64 = 6_069_770_749;

/// Panel types the dashboards use (besides rows).
const PANEL_TYPES: [&str; 5] = ["timeseries", "stat", "gauge", "table", "bargauge"];

/// Units of Grafana's `valueFormats/categories.ts` (the list dashboard-linter checks
/// against), as far as monitoring dashboards use them.
const UNITS: &[&str] = &[
    "none",
    "short",
    "percent",
    "percentunit",
    "sci",
    "locale",
    "bytes",
    "decbytes",
    "bits",
    "decbits",
    "kbytes",
    "deckbytes",
    "mbytes",
    "decmbytes",
    "gbytes",
    "decgbytes",
    "Bps",
    "bps",
    "binBps",
    "binbps",
    "KBs",
    "MBs",
    "pps",
    "ns",
    "µs",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "dtdurationms",
    "dtdurations",
    "dthms",
    "dtdhms",
    "clockms",
    "clocks",
    "dateTimeAsIso",
    "dateTimeAsUS",
    "dateTimeFromNow",
    "ops",
    "reqps",
    "rps",
    "wps",
    "iops",
    "cps",
    "opm",
    "rpm",
    "wpm",
    "bool",
    "bool_yes_no",
    "bool_on_off",
    "celsius",
    "hertz",
];

/// Panels whose queries may return no data in the live test, with why. Empty: the test
/// stack produces every series the dashboards show (a replica for the replication panels,
/// a failing channel for failures and dead letters, an acknowledged incident, a window
/// holding a notification, ...). A panel added here must say what keeps it empty.
const MAY_BE_EMPTY: &[(&str, &str)] = &[];

fn dashboards_dir() -> PathBuf {
    root().join("grafana-dashboards")
}

fn rules_dir() -> PathBuf {
    root().join("alert-rules")
}

fn load(file: &str) -> Value {
    let text = read(&dashboards_dir().join(file));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// Every panel, rows' own panels included (collapsed rows keep theirs inside).
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        for inner in panel["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

fn is_layout(panel: &Value) -> bool {
    matches!(panel["type"].as_str(), Some("row" | "text"))
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or("<untitled>")
}

/// The query variables of a dashboard, in order.
fn query_variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .collect()
}

/// A variable's query text: a string, or the `query` of the object newer Grafana writes.
fn variable_query(variable: &Value) -> &str {
    variable["query"]
        .as_str()
        .or_else(|| variable["query"]["query"].as_str())
        .unwrap_or("")
}

/// The PromQL inside `label_values(<expr>, <label>)` or `query_result(<expr>)`; `None` for
/// the forms that hold none (`label_values(<label>)`, `label_names()`, `metrics(...)`).
fn inner_promql(query: &str) -> Option<String> {
    let query = query.trim();
    if let Some(body) = query
        .strip_prefix("query_result(")
        .and_then(|q| q.strip_suffix(')'))
    {
        return Some(body.to_owned());
    }
    let body = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))?;
    // The label is after the last comma outside braces and parentheses.
    let mut depth = 0i32;
    let mut split = None;
    let mut quoted = false;
    for (i, c) in body.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '{' | '[' if !quoted => depth += 1,
            ')' | '}' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => split = Some(i),
            _ => {}
        }
    }
    split.map(|i| body[..i].trim().to_owned())
}

/// How template variables are expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expand {
    /// As dashboard-linter does: the interval variables become its magic durations; the
    /// dashboard's own variables stay as written (inside a regex matcher, `$job` is a
    /// valid regular expression), so that the matchers can be checked.
    Lint,
    /// For a live Prometheus: intervals that fit a test stack scraped every few seconds,
    /// the dashboard's variables as "All" (`.+`).
    Live,
}

/// A magic duration as PromQL text, in seconds and milliseconds (the parser reads each
/// component of a duration as a 32-bit number).
fn magic(ms: u64) -> String {
    format!("{}s{}ms", ms / 1000, ms % 1000)
}

/// Expands `$name` and `${name}` (and `${name:format}`) in a query.
fn expand(query: &str, how: Expand) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (braced[..end].split(':').next().unwrap_or(""), end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let live = how == Expand::Live;
        let replacement = match name {
            "" => None,
            "__rate_interval" if live => Some("30s".to_owned()),
            "__interval" if live => Some("10s".to_owned()),
            "__range" if live => Some("1h".to_owned()),
            "__rate_interval" => Some(magic(RATE_INTERVAL_MS)),
            "__interval" => Some(magic(INTERVAL_MS)),
            "__range" => Some(magic(RANGE_MS)),
            other if other.starts_with("__") => None,
            _ => live.then(|| ".+".to_owned()),
        };
        match replacement {
            Some(text) => out.push_str(&text),
            None => out.push_str(&rest[at..=at + len]),
        }
        rest = &rest[at + 1 + len..];
    }
    out.push_str(rest);
    out
}

/// The metric name of a selector, from its name or a `__name__="..."` matcher.
fn metric_name(selector: &VectorSelector) -> Option<String> {
    selector.name.clone().or_else(|| {
        selector
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
            .map(|m| m.value.clone())
    })
}

fn is_counter_series(name: &str) -> bool {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// dashboard-linter's target rules, on a parsed query.
struct Lint<'a> {
    /// Labels every selector must match with `=~"$<label>"`.
    required: &'a [&'a str],
    /// Selectors that are the range argument of `rate`, `irate` or `increase`.
    counted: HashSet<*const Expr>,
    problems: Vec<String>,
}

impl Lint<'_> {
    fn selector(&mut self, node: &Expr, selector: &VectorSelector) {
        let name = metric_name(selector).unwrap_or_default();
        if is_counter_series(&name) && !self.counted.contains(&std::ptr::from_ref(node)) {
            self.problems.push(format!(
                "counter {name} is read outside rate(), irate() or increase() over a range"
            ));
        }
        // Alerts carry the labels of their expression: an aggregated or absent() alert has
        // no job or instance, and a filter on them would hide it.
        if name == "ALERTS" {
            return;
        }
        for label in self.required {
            let wanted = format!("${label}");
            let ok =
                selector.matchers.matchers.iter().any(|m| {
                    m.name == *label && matches!(m.op, MatchOp::Re(_)) && m.value == wanted
                });
            if !ok {
                self.problems.push(format!(
                    "selector {name} lacks {label}=~\"{wanted}\" (found {})",
                    selector.matchers
                ));
            }
        }
    }
}

impl ExprVisitor for Lint<'_> {
    type Error = Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Infallible> {
        match expr {
            Expr::Call(call) if matches!(call.func.name, "rate" | "irate" | "increase") => {
                match call.args.args.first().map(AsRef::as_ref) {
                    Some(arg @ Expr::MatrixSelector(matrix)) => {
                        self.counted.insert(std::ptr::from_ref(arg));
                        if call.func.name != "increase"
                            && matrix.range != Duration::from_millis(RATE_INTERVAL_MS)
                        {
                            self.problems.push(format!(
                                "{}() over [{:?}] instead of [$__rate_interval]",
                                call.func.name, matrix.range
                            ));
                        }
                    }
                    _ => self.problems.push(format!(
                        "{}() of something other than a range selector",
                        call.func.name
                    )),
                }
            }
            Expr::VectorSelector(selector) => self.selector(expr, selector),
            Expr::MatrixSelector(matrix) => self.selector(expr, &matrix.vs),
            _ => {}
        }
        Ok(true)
    }
}

/// Parses a query as the linter does and applies its target rules; the problems found.
fn lint_query(query: &str, required: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = parser::parse(&expand(query, Expand::Live)) {
        problems.push(format!("does not parse with the variables as All: {e}"));
    }
    let expr = match parser::parse(&expand(query, Expand::Lint)) {
        Ok(expr) => expr,
        Err(e) => {
            problems.push(format!("does not parse: {e}"));
            return problems;
        }
    };
    let mut lint = Lint {
        required,
        counted: HashSet::new(),
        problems: Vec::new(),
    };
    let _ = walk_expr(&mut lint, &expr);
    problems.extend(lint.problems);
    problems
}

/// Whether a query shows an up/down series: a `up` or `*_up` selector, possibly narrowed
/// with `and`/`unless`.
fn shows_up_series(query: &str) -> bool {
    let Ok(mut expr) = parser::parse(&expand(query, Expand::Lint)) else {
        return false;
    };
    loop {
        match expr {
            Expr::Paren(p) => expr = *p.expr,
            Expr::Binary(b) if b.op.is_set_operator() && b.op.to_string() != "or" => {
                expr = *b.lhs;
            }
            Expr::VectorSelector(vs) => {
                return metric_name(&vs).is_some_and(|n| n == "up" || n.ends_with("_up"));
            }
            _ => return false,
        }
    }
}

/// Whether the panel maps 1 to a green UP and 0 to a red DOWN.
fn has_up_mappings(panel: &Value) -> bool {
    let options: Vec<&Value> = panel["fieldConfig"]["defaults"]["mappings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["type"] == "value")
        .map(|m| &m["options"])
        .collect();
    let maps = |value: &str, text: &str, color: &str| {
        options
            .iter()
            .any(|o| o[value]["text"] == text && o[value]["color"] == color)
    };
    maps("1", "UP", "green") && maps("0", "DOWN", "red")
}

fn datasource_ok(value: &Value) -> bool {
    value["type"] == "prometheus" && value["uid"] == "${datasource}"
}

/// The variables (beyond `datasource`) a dashboard's selectors must carry.
fn required_labels(with_target: bool) -> &'static [&'static str] {
    if with_target {
        &["job", "instance", "target"]
    } else {
        &["job", "instance"]
    }
}

/// Checks one dashboard; every problem names the file, and the panel and refId it is in.
fn check_dashboard(file: &str, uid: &str, with_target: bool, problems: &mut Vec<String>) {
    let dashboard = load(file);
    let mut problem = |text: String| problems.push(format!("{file}: {text}"));
    if dashboard["uid"] != uid {
        problem(format!("uid is {}, not {uid}", dashboard["uid"]));
    }
    if dashboard["title"].as_str().is_none_or(str::is_empty) {
        problem("no title".into());
    }
    let tags = dashboard["tags"].as_array().cloned().unwrap_or_default();
    if !tags.iter().any(|t| t == "mcpwatch") {
        problem(format!("tags {tags:?} lack mcpwatch"));
    }
    if dashboard["schemaVersion"] != 39 {
        problem(format!("schemaVersion {}", dashboard["schemaVersion"]));
    }
    if dashboard["editable"] != false {
        problem("editable is not false".into());
    }
    if !dashboard.get("id").is_some_and(Value::is_null) {
        problem("id is not null".into());
    }
    if dashboard.get("__inputs").is_some() {
        problem("__inputs: file provisioning cannot resolve them".into());
    }

    // Variables: one datasource variable, then the query variables, chained.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let datasources: Vec<&Value> = variables
        .iter()
        .filter(|v| v["type"] == "datasource")
        .collect();
    match datasources.as_slice() {
        [ds] if ds["name"] == "datasource"
            && ds["query"] == "prometheus"
            && ds["label"] == "Data source" => {}
        _ => problem(format!(
            "wants one datasource variable named datasource, query prometheus, label \
             \"Data source\": {datasources:?}"
        )),
    }
    let required = required_labels(with_target);
    let names: Vec<&str> = query_variables(&dashboard)
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    if names != required {
        problem(format!("query variables {names:?}, wanted {required:?}"));
    }
    let mut variable_metric: Option<String> = None;
    for variable in query_variables(&dashboard) {
        let name = variable["name"].as_str().unwrap_or("");
        let mut vproblem = |text: String| problems.push(format!("{file}: variable {name}: {text}"));
        if !datasource_ok(&variable["datasource"]) {
            vproblem(format!("datasource {}", variable["datasource"]));
        }
        for (key, wanted) in [
            ("multi", json!(true)),
            ("includeAll", json!(true)),
            ("allValue", json!(".+")),
            ("refresh", json!(2)),
        ] {
            if variable[key] != wanted {
                vproblem(format!("{key} is {}, wanted {wanted}", variable[key]));
            }
        }
        let query = variable_query(variable);
        let wanted_suffix = format!(", {name})");
        if !query.starts_with("label_values(") || !query.ends_with(&wanted_suffix) {
            vproblem(format!(
                "query {query:?} is not label_values(<metric>, {name})"
            ));
            continue;
        }
        let Some(inner) = inner_promql(query) else {
            vproblem(format!("query {query:?} holds no PromQL"));
            continue;
        };
        // Each variable is narrowed by the ones before it.
        let before: Vec<&str> = required
            .iter()
            .copied()
            .take_while(|l| *l != name)
            .collect();
        for text in lint_query(&inner, &before) {
            vproblem(format!("query {query:?}: {text}"));
        }
        if let Ok(Expr::VectorSelector(vs)) = parser::parse(&expand(&inner, Expand::Lint)) {
            let metric = metric_name(&vs);
            match &variable_metric {
                None => variable_metric = metric,
                Some(first) if metric.as_ref() != Some(first) => {
                    vproblem(format!("reads {metric:?}, the variables before it {first}"));
                }
                Some(_) => {}
            }
        } else {
            vproblem(format!("query {query:?} is not one selector"));
        }
    }

    // Panels.
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for panel in panels(&dashboard) {
        let name = title(panel).to_owned();
        let mut pproblem =
            |text: String| problems.push(format!("{file}: panel \"{name}\": {text}"));
        match panel["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            other => pproblem(format!("id {other:?} missing or not unique")),
        }
        let grid = &panel["gridPos"];
        let coordinates: Vec<Option<u64>> = ["h", "w", "x", "y"]
            .iter()
            .map(|k| grid[k].as_u64())
            .collect();
        match coordinates.as_slice() {
            [Some(h), Some(w), Some(x), Some(_)] if *h > 0 && *w > 0 && x + w <= 24 => {}
            _ => pproblem(format!("gridPos {grid}")),
        }
        if is_layout(panel) {
            continue;
        }
        let kind = panel["type"].as_str().unwrap_or("");
        if !PANEL_TYPES.contains(&kind) {
            pproblem(format!("type {kind:?}"));
        }
        if panel["title"].as_str().is_none_or(|t| t.trim().is_empty()) {
            pproblem("no title".into());
        } else if !titles.insert(name.clone()) {
            pproblem("title used twice".into());
        }
        if panel["description"]
            .as_str()
            .is_none_or(|d| d.trim().is_empty())
        {
            pproblem("no description".into());
        }
        if !datasource_ok(&panel["datasource"]) {
            pproblem(format!("datasource {}", panel["datasource"]));
        }
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or("");
        if !UNITS.contains(&unit) {
            pproblem(format!("unit {unit:?} is not one of Grafana's"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            pproblem("no targets".into());
        }
        let mut refs = BTreeSet::new();
        let mut shows_up = false;
        for target in &targets {
            let ref_id = target["refId"].as_str().unwrap_or("").to_owned();
            let mut tproblem = |text: String| {
                problems.push(format!("{file}: panel \"{name}\" target {ref_id}: {text}"));
            };
            if ref_id.is_empty() || !refs.insert(ref_id.clone()) {
                tproblem("refId missing or not unique".into());
            }
            if !datasource_ok(&target["datasource"]) {
                tproblem(format!("datasource {}", target["datasource"]));
            }
            let Some(expr) = target["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                tproblem("no expr".into());
                continue;
            };
            for text in lint_query(expr, required) {
                tproblem(format!("{text}\n    in {expr}"));
            }
            shows_up |= shows_up_series(expr);
        }
        if kind == "stat" && shows_up && !has_up_mappings(panel) {
            problems.push(format!(
                "{file}: panel \"{name}\": an up/down stat without the mappings 1 → UP \
                 (green), 0 → DOWN (red)"
            ));
        }
    }
}

#[test]
fn the_dashboards_follow_the_conventions_and_the_linter_rules() {
    let present: BTreeSet<String> = std::fs::read_dir(dashboards_dir())
        .expect("grafana-dashboards/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let expected: BTreeSet<String> = DASHBOARDS.iter().map(|d| d.0.to_owned()).collect();
    assert_eq!(present, expected, "the dashboard files");
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for (file, uid, with_target) in DASHBOARDS {
        assert!(uids.insert(uid), "uid {uid} twice");
        check_dashboard(file, uid, with_target, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checks_catch_what_the_linter_catches() {
    let required = required_labels(true);
    let sel = r#"job=~"$job",instance=~"$instance",target=~"$target""#;
    let clean = [
        format!(
            "sum by (job) (rate(pg_stat_database_xact_commit_total{{{sel}}}[$__rate_interval]))"
        ),
        format!("increase(redis_expired_keys_total{{{sel}}}[$__range])"),
        format!(
            "histogram_quantile(0.9, sum by (le) (rate(wsdaemon_request_duration_seconds_bucket{{{sel}}}[${{__rate_interval}}])))"
        ),
        format!("pg_up{{{sel}}} == 0"),
        r#"count by (severity) (ALERTS{alertstate="firing"})"#.to_owned(),
    ];
    for query in &clean {
        assert_eq!(lint_query(query, required), Vec::<String>::new(), "{query}");
    }
    for (query, finding) in [
        (
            format!("rate(redis_commands_total{{{sel}}}[5m])"),
            "instead of [$__rate_interval]",
        ),
        (
            format!("redis_commands_total{{{sel}}}"),
            "counter redis_commands_total",
        ),
        (
            format!("sum(wsdaemon_request_duration_seconds_bucket{{{sel}}})"),
            "counter wsdaemon_request_duration_seconds_bucket",
        ),
        (
            format!("max_over_time(pg_stat_database_deadlocks_total{{{sel}}}[$__rate_interval])"),
            "counter",
        ),
        (
            r#"pg_up{job=~"$job",instance=~"$instance"}"#.to_owned(),
            "lacks target",
        ),
        (
            r#"pg_up{job="$job",instance=~"$instance",target=~"$target"}"#.to_owned(),
            "lacks job",
        ),
        (
            format!("rate(pg_up{{{sel}}}[$__rate_interval]"),
            "does not parse",
        ),
    ] {
        let found = lint_query(&query, required).join("\n");
        assert!(found.contains(finding), "{query}: {found}");
    }
    assert_eq!(
        inner_promql(r#"label_values(pg_up{job=~"$job",instance=~"$instance"}, target)"#)
            .as_deref(),
        Some(r#"pg_up{job=~"$job",instance=~"$instance"}"#)
    );
    assert_eq!(inner_promql("label_values(job)"), None);
    assert_eq!(
        expand(
            "rate(x{a=~\"$job\"}[$__rate_interval]) $__range ${__range}",
            Expand::Live
        ),
        "rate(x{a=~\".+\"}[30s]) 1h 1h"
    );
}

// ---------------------------------------------------------------------------------------
// Live: every query against a real stack.
// ---------------------------------------------------------------------------------------

/// How long the queries may take to return data: most have it within seconds; the firing
/// alerts need McpwatchWatchdog, which fires one minute after the rules are first evaluated.
const DATA_LIMIT: Duration = Duration::from_secs(120);
const LIMIT: Duration = Duration::from_secs(60);
const API_TOKEN: &str = "dashboards-api-token";

/// One query of a dashboard.
#[derive(Debug, Clone)]
struct Query {
    file: &'static str,
    panel: String,
    ref_id: String,
    expr: String,
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: panel \"{}\" target {}: {}",
            self.file, self.panel, self.ref_id, self.expr
        )
    }
}

fn all_queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (file, _, _) in DASHBOARDS {
        let dashboard = load(file);
        for variable in query_variables(&dashboard) {
            if let Some(inner) = inner_promql(variable_query(variable)) {
                out.push(Query {
                    file,
                    panel: format!("variable {}", variable["name"].as_str().unwrap_or("")),
                    ref_id: "query".into(),
                    expr: inner,
                });
            }
        }
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(Query {
                        file,
                        panel: title(panel).to_owned(),
                        ref_id: target["refId"].as_str().unwrap_or("").to_owned(),
                        expr: expr.to_owned(),
                    });
                }
            }
        }
    }
    out
}

/// Runs an instant query: the number of results, or the error Prometheus gave.
async fn run(prometheus: &Prometheus, expr: &str) -> Result<usize, String> {
    let response = client()
        .get(format!("{}/api/v1/query", prometheus.url()))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let text = response.text().await.map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    Ok(match &body["data"]["result"] {
        Value::Array(items) => items.len(),
        Value::Null => 0,
        _ => 1,
    })
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn append(path: &Path, text: &str) {
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("append to the request log");
}

/// A request-log record in the OpenTelemetry MCP attribute names (a tools/call).
fn operation_line(tool: &str, error: Option<&str>, ms: u32) -> String {
    let mut record = json!({
        "mcp.method.name": "tools/call", "gen_ai.tool.name": tool,
        "mcp.protocol.version": "2026-07-28", "duration_ms": ms,
    });
    if let Some(error) = error {
        record["error.type"] = json!(error);
    }
    format!("{record}\n")
}

/// One 2026-07-28 tools/call POST, as a stateless client sends it.
async fn modern_tool_call(
    http: &reqwest::Client,
    url: &str,
    tool: &str,
    arguments: Value,
) -> Result<String, reqwest::Error> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "dashboards", "version": "1"}}}});
    http.post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2026-07-28")
        .header("Mcp-Method", "tools/call")
        .header("Mcp-Name", tool)
        .body(body.to_string())
        .send()
        .await?
        .text()
        .await
}

fn request_line(provider: &str, tool: &str, status: &str, ms: u32) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-22T10:00:00Z\",\"provider\":\"{provider}\",\"tool\":\"{tool}\",\
         \"status\":\"{status}\",\"duration_ms\":{ms}}}\n"
    )
}

fn health_file_body() -> String {
    json!({"status": "healthy", "timestamp": unix_now(), "sessions": 4,
           "providers": {"glm": "up"}})
    .to_string()
}

/// PostgreSQL with what the dashboards show: a table with dead rows, a logical replica in a
/// second database (so that `pg_stat_replication` has a replica reporting its replay
/// position, and a replication slot exists).
async fn postgres_with_replica() -> PostgresServer {
    let mut postgres = PostgresServer::start(PostgresOptions::default()).await;
    postgres
        .admin("postgres")
        .await
        .batch_execute("ALTER SYSTEM SET wal_level = logical")
        .await
        .expect("wal_level");
    postgres.restart().await;
    let admin = postgres.admin("postgres").await;
    admin
        .batch_execute(
            "CREATE TABLE dash_items (id int PRIMARY KEY, body text);\
             INSERT INTO dash_items SELECT g, 'new' FROM generate_series(1, 2000) g;\
             UPDATE dash_items SET body = 'changed' WHERE id <= 800;\
             DELETE FROM dash_items WHERE id > 1800;\
             CREATE PUBLICATION dash_pub FOR TABLE dash_items;",
        )
        .await
        .expect("publisher");
    // Its own transaction: a logical slot cannot be created after writes.
    admin
        .batch_execute("SELECT pg_create_logical_replication_slot('dash_sub', 'pgoutput')")
        .await
        .expect("replication slot");
    admin
        .batch_execute("CREATE DATABASE dash_replica")
        .await
        .expect("replica database");
    let socket: String = admin
        .query_one("SHOW unix_socket_directories", &[])
        .await
        .expect("socket directory")
        .get(0);
    let replica = postgres.admin("dash_replica").await;
    replica
        .batch_execute("CREATE TABLE dash_items (id int PRIMARY KEY, body text)")
        .await
        .expect("replica table");
    replica
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION dash_sub CONNECTION 'host={socket} port={} dbname=postgres \
             user=postgres' PUBLICATION dash_pub WITH (create_slot = false, slot_name = 'dash_sub')",
            postgres.port()
        ))
        .await
        .expect("subscription");
    postgres
}

/// A Docker daemon with one container of each fate the Containers dashboard shows: one
/// running healthy under a memory limit (the only one running, so that its one-shot stats
/// are answered at once, well inside the 2 s scrape), one exited with a code, one restarted
/// under `on-failure:3`, one OOM-killed.
fn docker_with_containers() -> Dockerd {
    let docker = Dockerd::start();
    let image = docker.busybox_image();
    for (service, options, command) in [
        (
            "web",
            &[
                "--memory",
                "64m",
                "--health-cmd",
                "true",
                "--health-interval",
                "1s",
            ][..],
            &["sleep", "1000"][..],
        ),
        ("job", &[][..], &["sh", "-c", "exit 3"][..]),
        (
            "worker",
            &["--restart", "on-failure:3"][..],
            &["sh", "-c", "exit 1"][..],
        ),
        (
            "cache",
            &["--memory", "16m", "--memory-swap", "16m"][..],
            &["tail", "/dev/zero"][..],
        ),
    ] {
        docker.run_compose_service("shop", service, &image, options, command);
    }
    docker
}

/// Notifier configuration: a log channel, a webhook channel to a closed port (failures,
/// retries, dead letters), and an escalation policy whose second level comes after 2 s.
fn notifier_config(closed_port: u16) -> String {
    format!(
        "delivery:\n  timeout: 2s\n  retry: {{initial_backoff: 200ms, max_backoff: 1s, jitter: 0.1}}\n\
         api:\n  auth: {{bearer_token: {API_TOKEN}}}\n\
         channels:\n\
         \x20 audit:\n    log: {{path: '{{dir}}/audit.jsonl', format: json}}\n\
         \x20 broken:\n    webhook: {{url: 'http://127.0.0.1:{closed_port}/hook'}}\n    dead_letter_after: 3s\n\
         escalation_policies:\n  default:\n    levels:\n\
         \x20     - {{name: on-call, channels: [audit]}}\n\
         \x20     - {{name: senior, after: 2s, channels: [audit]}}\n\
         route:\n  channels: [audit]\n  routes:\n\
         \x20   - matchers: ['severity=\"critical\"']\n      escalation: default\n\
         \x20   - matchers: ['severity=\"warning\"']\n      channels: [audit, broken]\n"
    )
}

fn webhook(name: &str, severity: &str) -> Value {
    payload(
        "mcpwatch",
        &format!("{{}}:{{alertname=\"{name}\"}}"),
        &[(
            &[
                ("alertname", name),
                ("severity", severity),
                ("service", "mcp"),
            ],
            "firing",
            "2026-11-22T10:00:00Z",
        )],
        "http://alertmanager.example:9093",
    )
}

async fn api(
    notifier: &NotifierProcess,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", notifier.url());
    let mut request = if method == "POST" {
        client().post(url)
    } else {
        client().get(url)
    }
    .bearer_auth(API_TOKEN);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("notifier API");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The incident of an alert group, once it is open.
async fn incident_of(notifier: &NotifierProcess, name: &str) -> Value {
    let group = format!("{{}}:{{alertname=\"{name}\"}}");
    wait_for_async(&format!("the incident of {name}"), LIMIT, || async {
        let (_, body) = api(notifier, "GET", "/api/v1/incidents", None).await;
        body["incidents"]
            .as_array()
            .and_then(|list| list.iter().find(|i| i["group_key"] == group.as_str()))
            .cloned()
    })
    .await
}

/// Gives the notifier everything its dashboard shows: incidents (one acknowledged, one
/// climbing), duplicates, a rejected webhook, failures and dead letters on the broken
/// channel, and a notification held by a maintenance window.
async fn exercise_notifier(notifier: &NotifierProcess) {
    let post = |body: Value| async move {
        let (status, answer) = notifier.post(&body, None).await;
        assert_eq!(status, 200, "{answer}\n{}", notifier.log());
    };
    post(webhook("DashboardAcknowledged", "critical")).await;
    let acknowledged = incident_of(notifier, "DashboardAcknowledged").await;
    let id = acknowledged["id"].as_i64().expect("incident id");
    let (status, body) = api(
        notifier,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(json!({"by": "dashboards"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    post(webhook("DashboardEscalating", "critical")).await;
    incident_of(notifier, "DashboardEscalating").await;
    let warning = webhook("DashboardWarning", "warning");
    post(warning.clone()).await;
    post(warning).await;
    let (status, body) = api(
        notifier,
        "POST",
        "/api/v1/windows",
        Some(json!({
            "duration": "1h",
            "matchers": ["alertname=\"DashboardHeld\""],
            "author": "ops@example.com",
            "reason": "dashboard test",
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    post(webhook("DashboardHeld", "warning")).await;
    let refused = client()
        .post(notifier.webhook_url())
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST /webhook");
    assert_eq!(refused.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_live_stack() {
    let started = Instant::now();
    let queries = all_queries();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);

    // The Docker daemon and its containers start beside the other services.
    let docker = tokio::task::spawn_blocking(docker_with_containers);
    let postgres = postgres_with_replica().await;
    let redis = RedisServer::start(&["--maxmemory", "64mb"]).await;
    let redis_port = redis.port().to_string();
    let replica = RedisServer::start(&[
        "--replicaof",
        "127.0.0.1",
        &redis_port,
        "--masterauth",
        redis.password(),
    ])
    .await;
    let daemon = Daemon::start(Behaviour {
        health_body: json!({
            "status": "healthy", "uptime": 3600, "version": "2.3.0", "tools": 29,
            "sessions": 5, "requests_per_minute": 45, "timestamp": unix_now(),
            "providers": {"glm": {"status": "up", "latency_ms": 120},
                          "kimi": {"status": "degraded", "latency_ms": 900}},
            "database": "connected",
            "redis": {"status": "ok", "latency_ms": 3},
        })
        .to_string(),
        ..Behaviour::default()
    })
    .await;
    let mcp = tokio::task::spawn_blocking(|| McpServer::start(29, 10, "exai-mcp", "2.3.0"))
        .await
        .expect("MCP server");
    // A modern-era server with a synthetic tool call, for the era and tool-call panels.
    let modern =
        tokio::task::spawn_blocking(|| ModernMcpServer::start(29, 10, "glm-gateway", "2.3.0"))
            .await
            .expect("modern MCP server");

    // An admin UI behind a redirect and a gateway in maintenance, for the endpoint panels,
    // a failing check included.
    let pages = PageServer::start(vec![
        ("/", Page::redirect("/admin/")),
        (
            "/admin/",
            Page::html(
                200,
                "<!doctype html><title>Forge Admin</title><div id=root></div>",
            ),
        ),
        (
            "/health",
            Page::html(503, "<h1>503 Service Unavailable</h1>"),
        ),
    ])
    .await;

    // A Rust MCP server with the instrumentation embedded, scraped by Prometheus itself.
    let instrumented = tokio::task::spawn_blocking(|| InstrumentedServer::start(true))
        .await
        .expect("instrumented MCP server");

    std::fs::create_dir_all(path("logs")).expect("logs");
    let request_log = path("logs/requests.jsonl");
    append(&request_log, &request_line("glm", "chat", "success", 80));
    append(&path("logs/app.log"), "");
    append(&path("logs/access.log"), "");
    std::fs::write(path("health.json"), health_file_body()).expect("health file");
    // Three daily backups, the newest an hour old, for the backup panels (the newest, the
    // median of the previous ones, the age against max_age).
    std::fs::create_dir_all(path("backups")).expect("backups");
    let newest_backup = SystemTime::now() - Duration::from_secs(3600);
    for (day, size) in [(2u64, 4096usize), (1, 5120), (0, 3072)] {
        let file = path(&format!("backups/sql_app_backup_{day}.db"));
        std::fs::write(&file, vec![b'b'; size]).expect("backup");
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_modified(newest_backup - Duration::from_secs(day * 86_400)))
            .expect("backup modification time");
    }
    std::fs::write(path("pg.dsn"), postgres.dsn("postgres")).expect("dsn");
    std::fs::write(path("cache.password"), redis.password()).expect("password");
    std::fs::write(path("replica.password"), replica.password()).expect("password");
    // A daemon over https, for the TLS certificate panels, and a certificate file.
    let (ca, cert, key) = ca_and_server_for(&["127.0.0.1"]);
    let tls_daemon = Daemon::start_tls(Behaviour::default(), &cert, &key).await;
    std::fs::write(path("ca.pem"), &ca).expect("CA");
    std::fs::create_dir_all(path("tls")).expect("tls");
    std::fs::write(path("tls/server.crt"), format!("{cert}{ca}")).expect("certificate file");
    let docker = docker.await.expect("Docker daemon");
    let docker_socket = docker.socket().display().to_string();
    let d = dir.path().display();
    let config = format!(
        "collectors:\n\
         \x20 host:\n\
         \x20   network_devices_exclude: '^veth.*$'\n\
         \x20   processes:\n\
         \x20     - {{name: postgres, comm: postgres}}\n\
         \x20     - {{name: redis, comm: redis-server}}\n\
         \x20 postgres:\n\
         \x20   - {{name: main, dsn_file: '{d}/pg.dsn'}}\n\
         \x20 redis:\n\
         \x20   - {{name: cache, url: 'redis://127.0.0.1:{}/', password_file: '{d}/cache.password'}}\n\
         \x20   - {{name: cache-replica, url: 'redis://127.0.0.1:{}/', password_file: '{d}/replica.password'}}\n\
         \x20 wsdaemon:\n\
         \x20   - name: exai\n\
         \x20     health_url: '{}'\n\
         \x20     websocket_url: '{}'\n\
         \x20     mcp_url: '{}'\n\
         \x20     health_file: '{d}/health.json'\n\
         \x20     request_log: {{path: '{d}/logs/*.jsonl'}}\n\
         \x20   - name: glm-gateway\n\
         \x20     mcp_url: '{}'\n\
         \x20     tool_call: {{name: tool_001, arguments: {{text: ping}}, expect: '^tool_001: ping$'}}\n\
         \x20   - {{name: exai-tls, health_url: '{}', ca_file: '{d}/ca.pem'}}\n\
         \x20 http:\n\
         \x20   - {{name: admin-ui, url: '{}', body_pattern: '<title>Forge Admin</title>'}}\n\
         \x20   - {{name: gateway, url: '{}'}}\n\
         \x20 certificates:\n\
         \x20   - {{name: tls, paths: ['{d}/tls/*.crt']}}\n\
         \x20 files:\n\
         \x20   - {{name: sqlite_backups, path: '{d}/backups/sql_app_backup_*.db', max_age: 1d}}\n\
         \x20 log_patterns:\n\
         \x20   - name: backend\n\
         \x20     path: '{d}/logs/app.log'\n\
         \x20     patterns:\n\
         \x20       - {{name: error_code, regex: '\\b(?P<code>(?:AUTH|VAL|DB|API)_\\d{{3}})\\b', labels: [code]}}\n\
         \x20       - {{name: error, regex: '\\b(ERROR|CRITICAL)\\b'}}\n\
         \x20   - name: access\n\
         \x20     path: '{d}/logs/access.log'\n\
         \x20     patterns:\n\
         \x20       - {{name: http_status, regex: '\" (?P<status>[1-5]\\d\\d) ', labels: [status]}}\n\
         \x20 containers:\n\
         \x20   - {{name: docker, socket: '{}', stats: true}}\n",
        redis.port(),
        replica.port(),
        daemon.health_url(),
        daemon.websocket_url(),
        mcp.streamable_http_url(),
        modern.streamable_http_url(),
        tls_daemon.health_url(),
        pages.url("/"),
        pages.url("/health"),
        docker_socket,
    );
    std::fs::write(path("exporter.yml"), config).expect("exporter config");
    let exporter_address = free_address();
    let mut command = Command::new(workspace_binary("mcpwatch-exporter"));
    command
        .arg(format!("--web.listen-address={exporter_address}"))
        .arg(format!("--config.file={}", path("exporter.yml").display()));
    let exporter = ServiceProcess::spawn("mcpwatch-exporter", command, dir.path());
    let exporter_health = format!("http://{exporter_address}/health");
    wait_for_async("the exporter", LIMIT, || {
        let request = client().get(&exporter_health).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;

    let notifier = NotifierProcess::start(&notifier_config(free_port())).await;
    exercise_notifier(&notifier).await;

    // Traffic while Prometheus watches: requests in the daemon's log, a fresh health file,
    // Redis hits, misses and expiring keys, PostgreSQL writes and rollbacks.
    let traffic = {
        let request_log = request_log.clone();
        let app_log = path("logs/app.log");
        let access_log = path("logs/access.log");
        let health_file = path("health.json");
        let mut cache = redis.connection().await;
        let db = postgres.admin("postgres").await;
        let mcp_url = instrumented.url();
        tokio::spawn(async move {
            let http = client();
            for i in 0u32.. {
                // Tool calls of both outcomes, a refused argument, a name no tool has, and
                // the same in the request log's attribute names (the daemon's side).
                for (tool, arguments) in [
                    ("add", json!({"a": i, "b": 1})),
                    ("slow", json!({"seconds": 0.05})),
                    ("fail", json!({})),
                    ("echo", json!({"text": 1})),
                    ("nope", json!({})),
                ] {
                    let _ = modern_tool_call(&http, &mcp_url, tool, arguments).await;
                }
                append(&request_log, &operation_line("search", None, 40 + i % 400));
                append(
                    &request_log,
                    &operation_line("search", Some("tool_error"), 300),
                );
                append(&request_log, &operation_line("fetch", Some("-32603"), 2500));
                append(
                    &request_log,
                    &request_line("glm", "chat", "success", 40 + i % 400),
                );
                append(&request_log, &request_line("glm", "search", "success", 900));
                append(&request_log, &request_line("kimi", "chat", "error", 2500));
                // Clients refused for their rate and their credentials, with HTTP statuses.
                append(&request_log, &request_line("glm", "chat", "429", 3));
                append(&request_log, &request_line("glm", "chat", "401", 2));
                // The application's log with its error codes, and an access log.
                append(
                    &app_log,
                    &format!(
                        "2026-12-06 10:00:00 ERROR login refused AUTH_001 user={i}\n\
                         2026-12-06 10:00:00 INFO throttled API_001\n\
                         2026-12-06 10:00:00 INFO request served id={i}\n"
                    ),
                );
                for status in [200, 200, 200, 429, 503] {
                    append(
                        &access_log,
                        &format!(
                            "127.0.0.1 - - [06/Dec/2026:10:00:00 +0000] \"GET /api/v1/items/{i} HTTP/1.1\" {status} 512 \"-\" \"curl/8.5\"\n"
                        ),
                    );
                }
                if i % 5 == 0 {
                    append(
                        &request_log,
                        &request_line("kimi", "search", "timeout", 30_000),
                    );
                }
                let _ = std::fs::write(&health_file, health_file_body());
                let key = format!("dash:{}", i % 50);
                let _ = redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .arg("EX")
                    .arg(2 + i % 60)
                    .query_async::<()>(&mut cache)
                    .await;
                let _ = redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut cache)
                    .await;
                let _ = redis::cmd("GET")
                    .arg("dash:missing")
                    .query_async::<Option<String>>(&mut cache)
                    .await;
                let _ = db
                    .batch_execute(&format!(
                        "UPDATE dash_items SET body = 'v{i}' WHERE id = {};\
                         BEGIN; UPDATE dash_items SET body = 'x' WHERE id = 1; ROLLBACK;",
                        1 + i % 1500
                    ))
                    .await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let mut rule_files: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    rule_files.sort();
    let have_rules = !rule_files.is_empty();
    let rule_paths: Vec<&Path> = rule_files.iter().map(PathBuf::as_path).collect();
    // Scraped every 2 s with a 2 s timeout: slack for a busy machine.
    let prometheus = Prometheus::start(
        &format!(
            "  - job_name: mcpwatch\n    scrape_interval: 2s\n    scrape_timeout: 2s\n\
             \x20   static_configs:\n      - targets: ['{exporter_address}']\n\
             \x20 - job_name: mcpwatch-notifier\n    scrape_interval: 2s\n    scrape_timeout: 2s\n\
             \x20   static_configs:\n      - targets: ['127.0.0.1:{}']\n\
             \x20 - job_name: mcp-server\n    scrape_interval: 2s\n    scrape_timeout: 2s\n\
             \x20   static_configs:\n      - targets: ['{}']\n",
            notifier.url().rsplit(':').next().expect("notifier port"),
            instrumented.address(),
        ),
        &rule_paths,
    )
    .await;

    // Every query must succeed at once; each must return data within the limit.
    let mut failures: Vec<String> = Vec::new();
    let mut pending: Vec<Query> = Vec::new();
    for query in &queries {
        let expr = expand(&query.expr, Expand::Live);
        if let Err(e) = run(&prometheus, &expr).await {
            failures.push(format!("{query}\n    Prometheus refused {expr}: {e}"));
        } else {
            pending.push(query.clone());
        }
    }
    let watching = Instant::now();
    let deadline = watching + DATA_LIMIT;
    while !pending.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut still = Vec::new();
        for query in pending {
            let expr = expand(&query.expr, Expand::Live);
            match run(&prometheus, &expr).await {
                Ok(0) => still.push(query),
                Ok(_) => {}
                Err(e) => failures.push(format!("{query}\n    Prometheus refused {expr}: {e}")),
            }
        }
        pending = still;
    }
    traffic.abort();
    // No scrape of the exporter or the notifier held a series twice.
    prometheus.assert_no_duplicate_samples().await;
    let mut allowed: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for query in &pending {
        let uses_rules = query.expr.contains(':') || query.expr.contains("ALERTS");
        if let Some(entry) = MAY_BE_EMPTY
            .iter()
            .find(|(file, panel)| *file == query.file && *panel == query.panel)
        {
            *allowed.entry(*entry).or_default() += 1;
        } else if !have_rules && uses_rules {
            // Without alert-rules/ there are no recording rules and no alerts to show.
        } else {
            failures.push(format!(
                "{query}\n    returned no data within {DATA_LIMIT:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}\n--- exporter log ---\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n"),
        exporter.output()
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{} dashboard queries returned data {:?} after Prometheus started ({:?} in all); \
             allowed to be empty: {allowed:?}",
            queries.len() - pending.len(),
            watching.elapsed(),
            started.elapsed()
        );
    }
}
