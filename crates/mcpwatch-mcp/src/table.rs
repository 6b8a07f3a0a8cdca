//! The operation table: one lock-free histogram per (method or tool or prompt, error type,
//! protocol revision), each allocated the first time it is observed and never again. A
//! request costs a name lookup in a map built once, a bucket search and two atomic adds.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::stripes::Striped;
use std::time::Duration;

use mcpwatch_core::fnv::BuildFnv;
use mcpwatch_core::{HistogramValue, MetricSink, MetricSource};

use crate::semconv::{
    self, BUCKETS, ERROR_LABEL, ERROR_VALUES, METHOD_LABEL, METHODS, OTHER, Outcome, PROMPT_LABEL,
    PROMPTS_GET, TOOL_LABEL, TOOLS_CALL, VERSION_LABEL, VERSION_VALUES,
};

/// The longest observation counted as itself: a day. Longer ones count as a day.
const MAX_OBSERVATION_NANOS: u64 = 86_400 * 1_000_000_000;

/// The most tool (or prompt) names a table keeps by default; the rest count as `_OTHER`.
pub const DEFAULT_MAX_NAMES: usize = 256;

/// Observations per bucket (not cumulative, the last one `+Inf`) and their sum, in
/// stripes (see [`stripes`]): a slot every request of a method or tool counts into would
/// otherwise be written from every core.
#[derive(Debug, Default)]
struct Histogram(Striped<Counts>);

/// One stripe of a [`Histogram`]: 16 counters, two cache lines, the sum first, so that an
/// observation up to a second writes one line.
#[derive(Debug, Default)]
#[repr(C)]
struct Counts {
    sum_nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

impl Histogram {
    fn observe(&self, nanos: u64) {
        let Some(counts) = self.0.local() else {
            return;
        };
        let bucket = BOUNDS_NANOS.partition_point(|bound| *bound < nanos);
        if let Some(b) = counts.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        counts.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn value(&self) -> HistogramValue {
        let mut per_bucket = [0_u64; BUCKETS.len() + 1];
        let mut sum_nanos = 0_u64;
        for counts in self.0.iter() {
            for (n, b) in per_bucket.iter_mut().zip(&counts.buckets) {
                *n = n.wrapping_add(b.load(Ordering::Relaxed));
            }
            sum_nanos = sum_nanos.wrapping_add(counts.sum_nanos.load(Ordering::Relaxed));
        }
        let buckets: Vec<(f64, u64)> = per_bucket
            .iter()
            .enumerate()
            .map(|(i, n)| (BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), *n))
            .collect();
        HistogramValue {
            count: per_bucket.iter().sum(),
            buckets,
            sum: sum_nanos as f64 / 1e9,
        }
    }
}

/// The bucket bounds in nanoseconds, so that an observation is placed without a float.
const BOUNDS_NANOS: [u64; BUCKETS.len()] = {
    let mut bounds = [0_u64; BUCKETS.len()];
    let mut i = 0;
    while i < BUCKETS.len() {
        // Every bound is a whole number of milliseconds.
        bounds[i] = (BUCKETS[i] * 1000.0) as u64 * 1_000_000;
        i += 1;
    }
    bounds
};

type Slot = OnceLock<Box<Histogram>>;

/// A group of slots, with the label and names of its targets (none for methods).
type Group<'a> = (&'a [Slot], Option<(&'static str, &'a Names)>);

/// Bounded names (tools or prompts): those given or learned, the rest `_OTHER`.
#[derive(Debug, Default)]
struct Names {
    /// FNV: tool names are short and bounded, so a hash fast on a few bytes serves
    /// better than SipHash's defence.
    /// Keyed by bytes, so that a header's value is looked up without reading it as text.
    index: HashMap<Box<[u8]>, usize, BuildFnv>,
    names: Vec<Box<str>>,
    max: usize,
    /// Names come from requests (a request log), not from the server: only those the
    /// specification allows are kept.
    strict: bool,
}

impl Names {
    fn new(names: impl IntoIterator<Item = impl AsRef<str>>, max: usize, strict: bool) -> Self {
        let mut this = Self {
            max,
            strict,
            ..Self::default()
        };
        for name in names {
            this.learn(name.as_ref());
        }
        this
    }

    /// The index of `name`: 0 is `_OTHER`, each name kept is its place + 1, so that one
    /// learned later never takes the slots of another.
    fn find(&self, name: &[u8]) -> usize {
        self.index.get(name).copied().unwrap_or(0)
    }

    /// Adds `name` while there is room; its index, or `_OTHER`'s (0). A name is 1 to 128
    /// bytes without control characters; a learned one, a tool name the MCP specification
    /// allows (`A-Z a-z 0-9 _ - .`).
    fn learn(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name.as_bytes()) {
            return *i;
        }
        let allowed = if self.strict {
            semconv::valid_name(name)
        } else {
            (1..=128).contains(&name.len()) && !name.chars().any(char::is_control)
        };
        if self.names.len() >= self.max || name == OTHER || !allowed {
            return 0;
        }
        self.names.push(name.into());
        let i = self.names.len();
        self.index.insert(name.as_bytes().into(), i);
        i
    }

    fn name(&self, i: usize) -> &str {
        i.checked_sub(1)
            .and_then(|i| self.names.get(i))
            .map_or(OTHER, |n| n)
    }
}

/// Where an operation is counted: a method, and for `tools/call` and `prompts/get` the tool
/// or prompt, with its protocol revision. Found once per request by [`OperationTable::key`].
/// Twelve bytes: it travels in every request's future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    target: Target,
    version: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Method(u32),
    Tool(u32),
    Prompt(u32),
}

// A version index fits in the key's byte.
const _: () = assert!(VERSION_VALUES <= 256);

/// An index as a `u32`; one beyond every table (so counted nowhere) if it does not fit.
fn narrow(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Key {
    /// The method's index in [`semconv::METHODS`] (its length for `_OTHER`).
    pub fn method(&self) -> usize {
        match self.target {
            Target::Method(m) => m as usize,
            Target::Tool(_) => TOOLS_CALL,
            Target::Prompt(_) => PROMPTS_GET,
        }
    }
}

/// The histograms of `mcp_server_operation_duration_seconds` and the requests in flight.
#[derive(Debug)]
pub struct OperationTable {
    tools: Names,
    prompts: Names,
    methods: Box<[Slot]>,
    by_tool: Vec<Slot>,
    by_prompt: Vec<Slot>,
    /// Per stripe, a gauge per method (the last `_OTHER`).
    in_flight: Box<Striped<[AtomicI64; METHODS.len() + 1]>>,
}

const PER_TARGET: usize = ERROR_VALUES * VERSION_VALUES;

fn slots(n: usize) -> Vec<Slot> {
    (0..n).map(|_| OnceLock::new()).collect()
}

impl OperationTable {
    /// A table whose tool and prompt labels name these (the server's own lists); other
    /// names count as `_OTHER`, and no more than `max_names` of each are kept.
    pub fn new(
        tools: impl IntoIterator<Item = impl AsRef<str>>,
        prompts: impl IntoIterator<Item = impl AsRef<str>>,
        max_names: usize,
    ) -> Self {
        Self::with_names(
            Names::new(tools, max_names, false),
            Names::new(prompts, max_names, false),
        )
    }

    fn with_names(tools: Names, prompts: Names) -> Self {
        Self {
            methods: slots((METHODS.len() + 1) * PER_TARGET).into_boxed_slice(),
            by_tool: slots((tools.names.len() + 1) * PER_TARGET),
            by_prompt: slots((prompts.names.len() + 1) * PER_TARGET),
            in_flight: Box::default(),
            tools,
            prompts,
        }
    }

    /// A table that learns tool and prompt names as they come (a request log, where no
    /// list is given), up to `max_names` of each.
    pub fn learning(max_names: usize) -> Self {
        Self::with_names(
            Names::new([""; 0], max_names, true),
            Names::new([""; 0], max_names, true),
        )
    }

    /// Where a request is counted. `name` is the tool of `tools/call` or the prompt of
    /// `prompts/get` (ignored for other methods); `version` its protocol revision.
    pub fn key(&self, method: &str, name: Option<&str>, version: Option<&str>) -> Key {
        let method = semconv::method_index(method);
        self.key_of(method, name, version)
    }

    /// As [`OperationTable::key`], of bytes not known to be UTF-8 (a request's headers):
    /// bytes no label has count as `_OTHER`, as any unknown name does.
    #[cfg_attr(not(feature = "rmcp"), allow(dead_code))]
    pub(crate) fn key_of_bytes(
        &self,
        method: Option<&[u8]>,
        name: Option<&[u8]>,
        version: Option<&[u8]>,
    ) -> Key {
        let method = method.map_or(METHODS.len(), semconv::method_index_of);
        self.key_at(method, name, semconv::version_index_of(version))
    }

    /// As [`OperationTable::key`], with the method's index in [`semconv::METHODS`].
    pub fn key_of(&self, method: usize, name: Option<&str>, version: Option<&str>) -> Key {
        self.key_at(
            method,
            name.map(str::as_bytes),
            semconv::version_index(version),
        )
    }

    fn key_at(&self, method: usize, name: Option<&[u8]>, version: usize) -> Key {
        let target = match method {
            TOOLS_CALL => Target::Tool(narrow(self.tools.find(name.unwrap_or_default()))),
            PROMPTS_GET => Target::Prompt(narrow(self.prompts.find(name.unwrap_or_default()))),
            m => Target::Method(narrow(m.min(METHODS.len()))),
        };
        let version = version.min(VERSION_VALUES - 1);
        Key {
            target,
            version: u8::try_from(version).unwrap_or(u8::MAX),
        }
    }

    /// As [`OperationTable::key`], adding a tool or prompt name not known yet while there
    /// is room (a table made by [`OperationTable::learning`]).
    pub fn learn_key(&mut self, method: &str, name: Option<&str>, version: Option<&str>) -> Key {
        let method = semconv::method_index(method);
        match method {
            TOOLS_CALL => {
                self.tools.learn(name.unwrap_or(""));
                let want = (self.tools.names.len() + 1) * PER_TARGET;
                self.by_tool.resize_with(want, OnceLock::new);
            }
            PROMPTS_GET => {
                self.prompts.learn(name.unwrap_or(""));
                let want = (self.prompts.names.len() + 1) * PER_TARGET;
                self.by_prompt.resize_with(want, OnceLock::new);
            }
            _ => {}
        }
        self.key_of(method, name, version)
    }

    /// Counts one operation that took `elapsed` and ended as `outcome`.
    pub fn observe(&self, key: Key, outcome: Outcome, elapsed: Duration) {
        let version = usize::from(key.version).min(VERSION_VALUES - 1);
        let within = outcome.index() * VERSION_VALUES + version;
        let (slots, target): (&[Slot], u32) = match key.target {
            Target::Method(m) => (&self.methods, m),
            Target::Tool(t) => (&self.by_tool, t),
            Target::Prompt(p) => (&self.by_prompt, p),
        };
        if let Some(slot) = slots.get(target as usize * PER_TARGET + within) {
            // At most a day each, so that the sum (nanoseconds in 64 bits) cannot wrap
            // and go backwards, whatever a log claims.
            let nanos = u64::try_from(elapsed.as_nanos())
                .unwrap_or(u64::MAX)
                .min(MAX_OBSERVATION_NANOS);
            slot.get_or_init(Box::default).observe(nanos);
        }
    }

    /// Counts a request of method index `method` in flight until the guard is dropped.
    pub fn in_flight(&self, method: usize) -> InFlight<'_> {
        let gauge = self
            .in_flight
            .local()
            .and_then(|row| row.get(method.min(METHODS.len())));
        if let Some(g) = gauge {
            g.fetch_add(1, Ordering::Relaxed);
        }
        InFlight(gauge)
    }

    /// Adds the families to `sink`: the durations and the requests in flight.
    pub fn collect_into(&self, sink: &mut MetricSink) {
        self.collect_durations(sink);
        self.collect_in_flight(sink);
    }

    /// Whether nothing has been observed yet.
    pub fn is_empty(&self) -> bool {
        let any = |slots: &[Slot]| slots.iter().any(|s| s.get().is_some());
        !any(&self.methods) && !any(&self.by_tool) && !any(&self.by_prompt)
    }

    /// Adds `mcp_server_operation_duration_seconds` to `sink` (its series observed so far).
    pub fn collect_durations(&self, sink: &mut MetricSink) {
        let histograms = sink.histogram(
            semconv::OPERATION_DURATION,
            "Time from an MCP request received to its result or error sent (OpenTelemetry mcp.server.operation.duration).",
        );
        let groups: [Group<'_>; 3] = [
            (&self.methods, None),
            (&self.by_tool, Some((TOOL_LABEL, &self.tools))),
            (&self.by_prompt, Some((PROMPT_LABEL, &self.prompts))),
        ];
        for (group, (slots, named)) in groups.into_iter().enumerate() {
            for (i, slot) in slots.iter().enumerate() {
                let Some(histogram) = slot.get() else {
                    continue;
                };
                let target = i / PER_TARGET;
                let error = (i % PER_TARGET) / VERSION_VALUES;
                let version = i % VERSION_VALUES;
                let method = match group {
                    1 => METHODS[TOOLS_CALL],
                    2 => METHODS[PROMPTS_GET],
                    _ => METHODS.get(target).copied().unwrap_or(OTHER),
                };
                let mut labels: Vec<(std::borrow::Cow<'static, str>, String)> =
                    vec![(METHOD_LABEL.into(), method.to_owned())];
                if let Some((label, names)) = named {
                    labels.push((label.into(), names.name(target).to_owned()));
                }
                if let Some(error) = semconv::error_value(error) {
                    labels.push((ERROR_LABEL.into(), error));
                }
                if let Some(version) = semconv::version_value(version) {
                    labels.push((VERSION_LABEL.into(), version.to_owned()));
                }
                histograms.add_labels(
                    labels,
                    mcpwatch_core::metrics::SampleValue::Histogram(Box::new(histogram.value())),
                );
            }
        }
    }

    /// Adds `mcp_server_requests_in_flight` to `sink`, for each method seen.
    pub fn collect_in_flight(&self, sink: &mut MetricSink) {
        let gauges = sink.gauge(
            semconv::REQUESTS_IN_FLIGHT,
            "MCP requests the server is handling now.",
        );
        for i in 0..=METHODS.len() {
            let method = METHODS.get(i).copied().unwrap_or(OTHER);
            let n: i64 = self
                .in_flight
                .iter()
                .filter_map(|row| row.get(i))
                .map(|gauge| gauge.load(Ordering::Relaxed))
                .sum();
            // Methods never seen stay out; one seen keeps its series at 0.
            if n != 0 || self.seen(i) {
                gauges.add(&[(METHOD_LABEL, method)], n as f64);
            }
        }
    }

    fn seen(&self, method: usize) -> bool {
        let any = |slots: &[Slot]| slots.iter().any(|s| s.get().is_some());
        match method {
            TOOLS_CALL => any(&self.by_tool),
            PROMPTS_GET => any(&self.by_prompt),
            m => self
                .methods
                .get(m * PER_TARGET..(m + 1) * PER_TARGET)
                .is_some_and(any),
        }
    }
}

impl MetricSource for OperationTable {
    fn collect(&self, sink: &mut MetricSink) {
        self.collect_into(sink);
    }
}

/// A request in flight; counted out when dropped.
#[derive(Debug)]
pub struct InFlight<'a>(Option<&'a AtomicI64>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            g.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count of a tool's `tools/call` series without an error or a revision.
    fn tool_calls(sink: &MetricSink, tool: &str) -> Option<u64> {
        value(
            sink,
            &[
                ("mcp_method_name", "tools/call"),
                ("gen_ai_tool_name", tool),
            ],
        )
    }

    fn value(sink: &MetricSink, labels: &[(&str, &str)]) -> Option<u64> {
        let family = sink.find(semconv::OPERATION_DURATION)?;
        family.samples().iter().find_map(|s| {
            let matches = s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v));
            match (&s.value, matches) {
                (mcpwatch_core::metrics::SampleValue::Histogram(h), true) => Some(h.count),
                _ => None,
            }
        })
    }

    #[test]
    fn each_operation_lands_in_its_own_series_and_bucket() {
        let table = OperationTable::new(["add", "echo"], ["greet"], 16);
        let add = table.key("tools/call", Some("add"), Some("2026-07-28"));
        for _ in 0..3 {
            table.observe(add, Outcome::Ok, Duration::from_millis(3));
        }
        table.observe(add, Outcome::ToolError, Duration::from_millis(30));
        let unknown = table.key("tools/call", Some("nope"), Some("2025-11-25"));
        table.observe(unknown, Outcome::Code(-32602), Duration::from_millis(1));
        let other = table.key("x/custom", None, None);
        table.observe(other, Outcome::Code(-32601), Duration::from_micros(10));
        let prompt = table.key("prompts/get", Some("greet"), Some("2026-07-28"));
        table.observe(prompt, Outcome::Ok, Duration::from_secs(400));
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        let v = "2026-07-28";
        assert_eq!(
            value(
                &sink,
                &[
                    ("mcp_method_name", "tools/call"),
                    ("gen_ai_tool_name", "add"),
                    ("mcp_protocol_version", v)
                ]
            ),
            Some(3)
        );
        assert_eq!(
            value(
                &sink,
                &[
                    ("mcp_method_name", "tools/call"),
                    ("gen_ai_tool_name", "add"),
                    ("error_type", "tool_error"),
                    ("mcp_protocol_version", v)
                ]
            ),
            Some(1)
        );
        assert_eq!(
            value(
                &sink,
                &[
                    ("mcp_method_name", "tools/call"),
                    ("gen_ai_tool_name", "_OTHER"),
                    ("error_type", "-32602"),
                    ("mcp_protocol_version", "2025-11-25")
                ]
            ),
            Some(1)
        );
        assert_eq!(
            value(
                &sink,
                &[("mcp_method_name", "_OTHER"), ("error_type", "-32601")]
            ),
            Some(1)
        );
        assert_eq!(
            value(
                &sink,
                &[
                    ("mcp_method_name", "prompts/get"),
                    ("gen_ai_prompt_name", "greet"),
                    ("mcp_protocol_version", v)
                ]
            ),
            Some(1)
        );
        let family = sink.find(semconv::OPERATION_DURATION).expect("family");
        assert_eq!(family.samples().len(), 5);
        // 3 ms lands at le=0.01; 400 s past the last bound, in +Inf.
        let add_ok = family
            .samples()
            .iter()
            .find_map(|s| match &s.value {
                mcpwatch_core::metrics::SampleValue::Histogram(h) if h.count == 3 => {
                    Some(h.clone())
                }
                _ => None,
            })
            .expect("add");
        assert_eq!(add_ok.buckets[0], (0.01, 3));
        assert!((add_ok.sum - 0.009).abs() < 1e-9);
        let long = family
            .samples()
            .iter()
            .find_map(|s| match &s.value {
                mcpwatch_core::metrics::SampleValue::Histogram(h) if h.sum > 100.0 => {
                    Some(h.clone())
                }
                _ => None,
            })
            .expect("prompt");
        assert_eq!(long.buckets.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn bounds_are_exact_and_edges_inclusive() {
        assert_eq!(BOUNDS_NANOS[0], 10_000_000);
        assert_eq!(BOUNDS_NANOS[13], 300_000_000_000);
        let h = Histogram::default();
        h.observe(10_000_000); // exactly 0.01 s: le="0.01"
        h.observe(10_000_001);
        let v = h.value();
        assert_eq!(v.buckets[0].1, 1);
        assert_eq!(v.buckets[1].1, 1);
    }

    #[test]
    fn learned_names_are_bounded() {
        let mut table = OperationTable::learning(2);
        for name in ["a", "b", "c", "d"] {
            let key = table.learn_key("tools/call", Some(name), None);
            table.observe(key, Outcome::Ok, Duration::from_millis(1));
        }
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        assert_eq!(tool_calls(&sink, "a"), Some(1));
        assert_eq!(tool_calls(&sink, "_OTHER"), Some(2));
    }

    #[test]
    fn other_keeps_its_counts_when_a_name_is_learned_after_it() {
        let mut table = OperationTable::learning(4);
        for name in [
            Some("_OTHER"),
            Some(""),
            None,
            Some(&"x".repeat(129)),
            Some("bad name"),
        ] {
            let key = table.learn_key("tools/call", name, None);
            table.observe(key, Outcome::Ok, Duration::from_millis(1));
        }
        let key = table.learn_key("tools/call", Some("search"), None);
        table.observe(key, Outcome::Ok, Duration::from_millis(1));
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        assert_eq!(tool_calls(&sink, "_OTHER"), Some(5));
        assert_eq!(tool_calls(&sink, "search"), Some(1));
    }

    #[test]
    fn a_huge_duration_cannot_wrap_the_sum() {
        let table = OperationTable::new([""; 0], [""; 0], 4);
        let key = table.key("tools/list", None, None);
        for _ in 0..3 {
            table.observe(key, Outcome::Ok, Duration::MAX);
        }
        table.observe(key, Outcome::Ok, Duration::from_millis(5));
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        let family = sink.find(semconv::OPERATION_DURATION).expect("family");
        let mcpwatch_core::metrics::SampleValue::Histogram(h) = &family.samples()[0].value else {
            panic!("a histogram");
        };
        assert_eq!(h.count, 4);
        assert!((h.sum - (3.0 * 86_400.0 + 0.005)).abs() < 1e-6, "{}", h.sum);
    }

    #[test]
    fn header_bytes_find_the_same_keys_as_text() {
        let table = OperationTable::new(["add", "echo"], ["greet"], 4);
        for (method, name, version) in [
            ("tools/call", Some("echo"), Some("2026-07-28")),
            ("prompts/get", Some("greet"), Some("2025-11-25")),
            ("tools/call", Some("nope"), Some("1999-01-01")),
            ("tools/list", None, None),
            ("x/teleport", None, Some("2026-07-28")),
        ] {
            assert_eq!(
                table.key_of_bytes(
                    Some(method.as_bytes()),
                    name.map(str::as_bytes),
                    version.map(str::as_bytes)
                ),
                table.key(method, name, version),
                "{method} {name:?} {version:?}"
            );
        }
        // Bytes that are no UTF-8 (a header may carry them) name nothing: `_OTHER`.
        assert_eq!(
            table.key_of_bytes(
                Some(b"tools/call"),
                Some(b"add\xff"),
                Some(b"2026-07-2\xff")
            ),
            table.key("tools/call", Some("_unknown_"), Some("2026-07-29")),
        );
        assert_eq!(
            table.key_of_bytes(None, None, None),
            table.key(OTHER, None, None)
        );
    }

    #[test]
    fn threads_in_stripes_lose_no_observation() {
        // More threads than stripes, each taking its requests in and out of flight and
        // observing them in two buckets: every count and the sum are exact.
        let table = OperationTable::new(["add"], [""; 0], 4);
        let threads = 3 * crate::stripes::STRIPES;
        let key = table.key("tools/call", Some("add"), Some("2026-07-28"));
        let held: Vec<InFlight<'_>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let table = &table;
                    scope.spawn(move || {
                        for i in 0..1000_u64 {
                            let _in_flight = table.in_flight(TOOLS_CALL);
                            let elapsed = if i % 2 == 0 { 5 } else { 1500 };
                            table.observe(key, Outcome::Ok, Duration::from_millis(elapsed));
                        }
                        // One request per thread is still in flight when it ends.
                        table.in_flight(TOOLS_CALL)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        let family = sink.find(semconv::OPERATION_DURATION).expect("durations");
        let mcpwatch_core::metrics::SampleValue::Histogram(h) = &family.samples()[0].value else {
            panic!("a histogram");
        };
        let n = threads as u64 * 1000;
        assert_eq!(h.count, n);
        assert_eq!(h.buckets[0], (0.01, n / 2), "5 ms in the first bucket");
        assert_eq!(h.buckets[7], (2.0, n / 2), "1.5 s in the 2 s bucket");
        assert!((h.sum - (n / 2) as f64 * 1.505).abs() < 1e-6, "{}", h.sum);
        let in_flight = |sink: &MetricSink| {
            sink.find(semconv::REQUESTS_IN_FLIGHT)
                .and_then(|f| f.value(&[("mcp_method_name", "tools/call")]))
        };
        assert_eq!(in_flight(&sink), Some(threads as f64));
        // Counted out on this thread, each from the gauge it was counted into.
        drop(held);
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        assert_eq!(in_flight(&sink), Some(0.0));
    }

    #[test]
    fn in_flight_counts_out_on_drop() {
        let table = OperationTable::new([""; 0], [""; 0], 4);
        let guard = table.in_flight(TOOLS_CALL);
        let second = table.in_flight(TOOLS_CALL);
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        assert_eq!(
            sink.find(semconv::REQUESTS_IN_FLIGHT)
                .and_then(|f| f.value(&[("mcp_method_name", "tools/call")])),
            Some(2.0)
        );
        drop((guard, second));
        let mut sink = MetricSink::default();
        table.collect_into(&mut sink);
        assert_eq!(
            sink.find(semconv::REQUESTS_IN_FLIGHT)
                .and_then(|f| f.value(&[("mcp_method_name", "tools/call")])),
            None
        );
    }
}
