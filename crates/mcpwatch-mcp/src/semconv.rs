//! The OpenTelemetry semantic conventions for MCP, as Prometheus names them: the metric,
//! its labels and bucket advice, and the bounded values each label may take. The
//! instrumentation of a Rust server ([`crate::Metered`]) and the request-log collector of a
//! server in another language record through the same table, so one dashboard and one
//! rule set serve both.

/// `mcp.server.operation.duration`: from a request received to its result (or error) sent.
pub const OPERATION_DURATION: &str = "mcp_server_operation_duration_seconds";
/// Requests a server is handling now, per method (no OpenTelemetry name exists).
pub const REQUESTS_IN_FLIGHT: &str = "mcp_server_requests_in_flight";

/// `mcp.method.name`.
pub const METHOD_LABEL: &str = "mcp_method_name";
/// `gen_ai.tool.name`, on `tools/call`.
pub const TOOL_LABEL: &str = "gen_ai_tool_name";
/// `gen_ai.prompt.name`, on `prompts/get`.
pub const PROMPT_LABEL: &str = "gen_ai_prompt_name";
/// `error.type`: the JSON-RPC error code, or `tool_error` for a tool result with `isError`.
pub const ERROR_LABEL: &str = "error_type";
/// `mcp.protocol.version`.
pub const VERSION_LABEL: &str = "mcp_protocol_version";

/// The conventions' bucket advice, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A value outside a label's bounded set (the conventions' own word for it).
pub const OTHER: &str = "_OTHER";

/// `error.type` of a tool call whose result has `isError: true`.
pub const TOOL_ERROR: &str = "tool_error";

/// The request methods of MCP, both eras (`initialize` and `ping` are legacy; 2026-07-28
/// has `server/discover` and `subscriptions/listen`). Anything else is [`OTHER`].
pub const METHODS: &[&str] = &[
    "server/discover",
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/directory/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "skills/list",
    "skills/get",
];

/// The index of `tools/call` in [`METHODS`].
pub const TOOLS_CALL: usize = index_of("tools/call");
/// The index of `prompts/get` in [`METHODS`].
pub const PROMPTS_GET: usize = index_of("prompts/get");

/// The index of `method` in [`METHODS`], found when compiling: a name not in the list is a
/// compile error, so that an index can never name another method.
pub(crate) const fn index_of(method: &str) -> usize {
    let wanted = method.as_bytes();
    let mut i = 0;
    while i < METHODS.len() {
        let name = METHODS[i].as_bytes();
        if name.len() == wanted.len() {
            let mut j = 0;
            while j < name.len() && name[j] == wanted[j] {
                j += 1;
            }
            if j == name.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a method of semconv::METHODS");
}

/// The first stateless revision: requests of it and later carry their own revision.
pub const MODERN: &str = "2026-07-28";

/// The protocol revisions a label may name; anything else is [`OTHER`].
pub const VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// The JSON-RPC and MCP error codes an `error_type` may name; any other code is [`OTHER`].
pub const ERROR_CODES: &[i64] = &[
    -32700, // parse error
    -32600, // invalid request
    -32601, // method not found
    -32602, // invalid params
    -32603, // internal error
    -32002, // resource not found
    -32020, // header mismatch (2026-07-28)
    -32021, // missing required client capability
    -32022, // unsupported protocol version
    -32042, // URL elicitation required
];

/// What became of a request, as `error_type` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result (`error_type` absent).
    Ok,
    /// A tool result with `isError: true`.
    ToolError,
    /// A JSON-RPC error with this code.
    Code(i64),
    /// Another failure the conventions name with a low-cardinality word (a timeout, an
    /// exception class): counted as [`OTHER`].
    Other,
}

impl Outcome {
    /// Reads an `error.type` value as a log record carries it: absent or empty is
    /// success, `tool_error`, a JSON-RPC code as a string, anything else [`Outcome::Other`].
    pub fn parse(error_type: Option<&str>) -> Self {
        match error_type.map(str::trim) {
            None | Some("") => Outcome::Ok,
            Some(TOOL_ERROR) => Outcome::ToolError,
            Some(text) => text.parse().map_or(Outcome::Other, Outcome::Code),
        }
    }

    /// The index of its `error_type` value in [`error_values`] (0 is success).
    pub(crate) fn index(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::ToolError => 1,
            Outcome::Code(code) => ERROR_CODES
                .iter()
                .position(|c| *c == code)
                .map_or(ERROR_VALUES - 1, |i| i + 2),
            Outcome::Other => ERROR_VALUES - 1,
        }
    }
}

/// Success, `tool_error`, each of [`ERROR_CODES`], and [`OTHER`].
pub(crate) const ERROR_VALUES: usize = ERROR_CODES.len() + 3;

/// The `error_type` value of index `i` (`None` for success, where the label is absent).
pub(crate) fn error_value(i: usize) -> Option<String> {
    match i {
        0 => None,
        1 => Some(TOOL_ERROR.to_owned()),
        i if i < ERROR_VALUES - 1 => ERROR_CODES.get(i - 2).map(i64::to_string),
        _ => Some(OTHER.to_owned()),
    }
}

/// Whether `name` is a tool (or prompt) name as the MCP specification has them: 1 to 128
/// characters of ASCII letters, digits, `_`, `-` and `.`. Others count as [`OTHER`].
pub fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The index of a method in [`METHODS`], or `METHODS.len()` for [`OTHER`].
pub fn method_index(method: &str) -> usize {
    method_index_of(method.as_bytes())
}

/// As [`method_index`], of bytes not known to be UTF-8 (a header's value).
pub(crate) fn method_index_of(method: &[u8]) -> usize {
    // The lengths first, from one cache line: only a method of the same length is read.
    METHOD_LENGTHS
        .iter()
        .zip(METHODS)
        .position(|(len, m)| usize::from(*len) == method.len() && m.as_bytes() == method)
        .unwrap_or(METHODS.len())
}

/// The length of each of [`METHODS`].
const METHOD_LENGTHS: [u8; METHODS.len()] = {
    let mut lengths = [0_u8; METHODS.len()];
    let mut i = 0;
    while i < METHODS.len() {
        assert!(METHODS[i].len() < 256, "a method name is short");
        lengths[i] = METHODS[i].len() as u8;
        i += 1;
    }
    lengths
};

/// The index of a revision in [`VERSIONS`]; `VERSIONS.len()` for one unknown, and
/// `VERSIONS.len() + 1` for none (the label is then absent).
pub fn version_index(version: Option<&str>) -> usize {
    version_index_of(version.map(str::as_bytes))
}

/// As [`version_index`], of bytes not known to be UTF-8 (a header's value).
pub(crate) fn version_index_of(version: Option<&[u8]>) -> usize {
    match version {
        None | Some(b"") => VERSIONS.len() + 1,
        Some(v) => match <&[u8; 10]>::try_from(v) {
            Ok(v) => VERSION_BYTES
                .iter()
                .position(|known| known == v)
                .unwrap_or(VERSIONS.len()),
            Err(_) => VERSIONS.len(),
        },
    }
}

/// [`VERSIONS`] as arrays: every revision is ten bytes (`YYYY-MM-DD`), compared in two
/// machine words rather than by a call per revision.
const VERSION_BYTES: [[u8; 10]; VERSIONS.len()] = {
    let mut all = [[0_u8; 10]; VERSIONS.len()];
    let mut i = 0;
    while i < VERSIONS.len() {
        let bytes = VERSIONS[i].as_bytes();
        assert!(bytes.len() == 10, "a revision is YYYY-MM-DD");
        let mut j = 0;
        while j < 10 {
            all[i][j] = bytes[j];
            j += 1;
        }
        i += 1;
    }
    all
};

/// The number of version indices: each of [`VERSIONS`], [`OTHER`], none.
pub(crate) const VERSION_VALUES: usize = VERSIONS.len() + 2;

/// The `mcp_protocol_version` value of index `i` (`None` where the label is absent).
pub(crate) fn version_value(i: usize) -> Option<&'static str> {
    match i {
        i if i < VERSIONS.len() => VERSIONS.get(i).copied(),
        i if i == VERSIONS.len() => Some(OTHER),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_log_records_carry_them() {
        assert_eq!(Outcome::parse(None), Outcome::Ok);
        assert_eq!(Outcome::parse(Some("")), Outcome::Ok);
        assert_eq!(Outcome::parse(Some("tool_error")), Outcome::ToolError);
        assert_eq!(Outcome::parse(Some("-32602")), Outcome::Code(-32602));
        assert_eq!(Outcome::parse(Some("timeout")), Outcome::Other);
        assert_eq!(error_value(Outcome::Ok.index()), None);
        assert_eq!(
            error_value(Outcome::ToolError.index()).as_deref(),
            Some("tool_error")
        );
        assert_eq!(
            error_value(Outcome::Code(-32602).index()).as_deref(),
            Some("-32602")
        );
        assert_eq!(
            error_value(Outcome::Code(-1).index()).as_deref(),
            Some("_OTHER")
        );
        assert_eq!(
            error_value(Outcome::Other.index()).as_deref(),
            Some("_OTHER")
        );
    }

    #[test]
    fn methods_and_versions_are_bounded() {
        assert_eq!(METHODS[TOOLS_CALL], "tools/call");
        assert_eq!(METHODS[PROMPTS_GET], "prompts/get");
        assert_eq!(method_index("tools/call"), TOOLS_CALL);
        assert_eq!(method_index("x/anything"), METHODS.len());
        assert_eq!(
            version_value(version_index(Some("2026-07-28"))),
            Some("2026-07-28")
        );
        assert_eq!(
            version_value(version_index(Some("1999-01-01"))),
            Some(OTHER)
        );
        assert_eq!(version_value(version_index(None)), None);
    }
}
