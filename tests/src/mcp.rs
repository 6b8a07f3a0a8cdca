//! Real MCP servers of both protocol generations, each on a free loopback port:
//!
//! - [`McpServer`]: the official Python SDK 1.x (`tests/fixtures/mcp_server.py`), the
//!   legacy era (`initialize` handshake, sessions), over WebSocket at `/ws` and Streamable
//!   HTTP at `/mcp`;
//! - [`ModernMcpServer`]: the official Python SDK 2.x (`tests/fixtures/mcp_server_modern.py`),
//!   Streamable HTTP at `/mcp`, dual-era: 2026-07-28 requests on the stateless path, a
//!   legacy `initialize` on the stateful one;
//! - [`RmcpServer`]: rmcp 3.x, the official Rust SDK (the workspace's
//!   `mcpwatch-rmcp-fixture`), Streamable HTTP at `/mcp`, dual-era unless its versions are
//!   narrowed (to `2026-07-28` alone: a modern-only server).
//!
//! Each lists `tools` tools, `page_size` at a time with `nextCursor`: `tools - 2` echo
//! tools named `tool_000`, `tool_001`, ..., then `fail` (a result with `isError` true) and
//! `slow` (sleeps its `seconds` argument); below 2 tools, echo tools only. An echo tool's
//! text result is `"tool_007: hi"` for `{"text": "hi"}` on 2.x and rmcp, and
//! `"tool_007: {'text': 'hi'}"` (the arguments as Python shows them) on 1.x.
//!
//! The Python SDKs live in one virtual environment per generation, under
//! `$MCPWATCH_VENVS` or else `/var/cache/mcpwatch/venvs` (`mcp1`, `mcp2`), which
//! `./tests/run.sh` creates when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::ServiceProcess;

const LIMIT: Duration = Duration::from_secs(60);

/// The directory of the virtual environments: `$MCPWATCH_VENVS`, else
/// `/var/cache/mcpwatch/venvs`.
pub fn venvs_dir() -> PathBuf {
    std::env::var_os("MCPWATCH_VENVS")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/mcpwatch/venvs"), PathBuf::from)
}

/// One generation of the Python SDK: its virtual environment, what is installed there, and
/// the import that proves it works.
struct Generation {
    venv: &'static str,
    requirement: &'static str,
    probe: &'static str,
    python: OnceLock<Result<PathBuf, String>>,
}

static SDK1: Generation = Generation {
    venv: "mcp1",
    requirement: "mcp[ws]>=1.20,<2",
    probe: "import mcp.server.websocket, uvicorn, websockets, importlib.metadata as m; \
            assert m.version('mcp').startswith('1.')",
    python: OnceLock::new(),
};

static SDK2: Generation = Generation {
    venv: "mcp2",
    requirement: "mcp>=2.3,<3",
    probe: "import mcp.server.mcpserver, uvicorn, importlib.metadata as m; \
            assert m.version('mcp').startswith('2.')",
    python: OnceLock::new(),
};

impl Generation {
    /// The Python of this generation's virtual environment, checked once per test process.
    ///
    /// # Panics
    /// When the virtual environment is missing or broken, saying how to make it.
    fn python(&self) -> PathBuf {
        let checked = self.python.get_or_init(|| {
            let dir = venvs_dir().join(self.venv);
            let python = dir.join("bin/python");
            let output = Command::new(&python).args(["-c", self.probe]).output();
            match output {
                Ok(output) if output.status.success() => Ok(python),
                outcome => {
                    let why = match outcome {
                        Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                        Err(e) => format!("cannot run {}: {e}", python.display()),
                    };
                    Err(format!(
                        "the virtual environment of the Python MCP SDK ({}) is missing or \
                         broken at {}: run ./tests/run.sh, or as root: python3 -m venv {} && \
                         {} -m pip install '{}'\n{why}",
                        self.requirement,
                        dir.display(),
                        dir.display(),
                        python.display(),
                        self.requirement,
                    ))
                }
            }
        });
        match checked {
            Ok(python) => python.clone(),
            Err(message) => panic!("{message}"),
        }
    }
}

/// The 1.x fixture script.
pub fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mcp_server.py")
}

/// The 2.x fixture script.
pub fn modern_fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mcp_server_modern.py")
}

/// A started fixture process: its log directory, port and process.
#[derive(Debug)]
struct Started {
    dir: tempfile::TempDir,
    port: u16,
    process: ServiceProcess,
}

/// Starts `program` with `args` plus `--port <free port>`, and waits until it listens.
fn start_fixture(what: &str, log_name: &str, mut command: Command) -> Started {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    command.args(["--port", &port.to_string()]);
    let mut process = ServiceProcess::spawn(log_name, command, dir.path());
    let address = format!("127.0.0.1:{port}");
    crate::wait_for(&format!("the {what} to listen"), LIMIT, || {
        assert!(
            process.is_running(),
            "the {what} exited: {}",
            process.output()
        );
        std::net::TcpStream::connect(&address).ok().map(|_| ())
    });
    Started { dir, port, process }
}

/// The command line of a Python fixture.
fn python_fixture(
    python: PathBuf,
    script: PathBuf,
    tools: usize,
    page_size: usize,
    name: &str,
    version: &str,
) -> Command {
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--tools", &tools.to_string()])
        .args(["--page-size", &page_size.to_string()])
        .args(["--name", name, "--version", version])
        // No bytecode written next to the fixtures, no stale one read.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// A running server of the Python SDK 1.x (legacy era; WebSocket and Streamable HTTP).
/// Dropping it stops it.
#[derive(Debug)]
pub struct McpServer {
    _dir: tempfile::TempDir,
    port: u16,
    process: ServiceProcess,
}

impl McpServer {
    /// Starts the 1.x server with `tools` tools, listed `page_size` at a time, and this
    /// name and version.
    ///
    /// # Panics
    /// When the 1.x virtual environment is missing, or the server does not start.
    pub fn start(tools: usize, page_size: usize, name: &str, version: &str) -> Self {
        let command = python_fixture(
            SDK1.python(),
            fixture_script(),
            tools,
            page_size,
            name,
            version,
        );
        let started = start_fixture("MCP server (Python SDK 1.x)", "mcp-server", command);
        Self {
            _dir: started.dir,
            port: started.port,
            process: started.process,
        }
    }

    /// Starts the 2.x server: the same as [`ModernMcpServer::start`].
    ///
    /// # Panics
    /// When the 2.x virtual environment is missing, or the server does not start.
    pub fn start_modern(
        tools: usize,
        page_size: usize,
        name: &str,
        version: &str,
    ) -> ModernMcpServer {
        ModernMcpServer::start(tools, page_size, name, version)
    }

    /// `http://127.0.0.1:<port>/health`.
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }

    /// `ws://127.0.0.1:<port>/ws`.
    pub fn websocket_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// `http://127.0.0.1:<port>/mcp`.
    pub fn streamable_http_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        self.process.output()
    }
}

/// A running server of the Python SDK 2.x (`MCPServer`; Streamable HTTP, dual-era).
/// Dropping it stops it.
#[derive(Debug)]
pub struct ModernMcpServer {
    _dir: tempfile::TempDir,
    port: u16,
    process: ServiceProcess,
}

impl ModernMcpServer {
    /// Starts the 2.x server with `tools` tools, listed `page_size` at a time, and this
    /// name and version (its `serverInfo`).
    ///
    /// # Panics
    /// When the 2.x virtual environment is missing, or the server does not start.
    pub fn start(tools: usize, page_size: usize, name: &str, version: &str) -> Self {
        Self::start_with_log(tools, page_size, name, version, None)
    }

    /// As [`ModernMcpServer::start`], writing mcpwatch's request log for Python servers
    /// (`deploy/python/mcpwatch_request_log.py`) to `request_log` when given.
    ///
    /// # Panics
    /// When the 2.x virtual environment is missing, or the server does not start.
    pub fn start_with_log(
        tools: usize,
        page_size: usize,
        name: &str,
        version: &str,
        request_log: Option<&Path>,
    ) -> Self {
        let mut command = python_fixture(
            SDK2.python(),
            modern_fixture_script(),
            tools,
            page_size,
            name,
            version,
        );
        if let Some(path) = request_log {
            command.arg("--request-log").arg(path);
        }
        let started = start_fixture("MCP server (Python SDK 2.x)", "mcp-server-modern", command);
        Self {
            _dir: started.dir,
            port: started.port,
            process: started.process,
        }
    }

    /// `http://127.0.0.1:<port>/health`.
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }

    /// `http://127.0.0.1:<port>/mcp`.
    pub fn streamable_http_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        self.process.output()
    }
}

/// A running server built with rmcp 3.x (Streamable HTTP; dual-era unless narrowed).
/// Dropping it stops it.
#[derive(Debug)]
pub struct RmcpServer {
    _dir: tempfile::TempDir,
    port: u16,
    process: ServiceProcess,
}

impl RmcpServer {
    /// Starts the rmcp server with `tools` tools, listed `page_size` at a time, this name
    /// and version (its `serverInfo`), and the protocol revisions `versions` (rmcp's
    /// `supported_protocol_versions()`; `None` is every revision rmcp knows, dual-era;
    /// `Some(&["2026-07-28"])` a modern-only server). The binary is built first if needed.
    ///
    /// # Panics
    /// When the binary cannot be built, a version is unknown to rmcp, or the server does
    /// not start.
    pub fn start(
        tools: usize,
        page_size: usize,
        name: &str,
        version: &str,
        versions: Option<&[&str]>,
    ) -> Self {
        let mut command = Command::new(crate::binaries::workspace_binary("mcpwatch-rmcp-fixture"));
        command
            .args(["--tools", &tools.to_string()])
            .args(["--page-size", &page_size.to_string()])
            .args(["--name", name, "--version", version]);
        if let Some(versions) = versions {
            command.args(["--versions", &versions.join(",")]);
        }
        let started = start_fixture("MCP server (rmcp)", "rmcp-server", command);
        Self {
            _dir: started.dir,
            port: started.port,
            process: started.process,
        }
    }

    /// `http://127.0.0.1:<port>/mcp`.
    pub fn streamable_http_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        self.process.output()
    }
}

/// The reasons of `wsdaemon_mcp_failure`, in the order the collector writes them.
pub const FAILURE_REASONS: [&str; 10] = [
    "refused",
    "timeout",
    "tls",
    "handshake",
    "unauthorized",
    "unsupported_version",
    "header_mismatch",
    "method_not_found",
    "error_response",
    "protocol",
];

/// The outcomes of `wsdaemon_mcp_tool_call_outcome`, in the order the collector writes them.
pub const TOOL_CALL_OUTCOMES: [&str; 7] = [
    "success",
    "tool_error",
    "rpc_error",
    "unexpected_content",
    "unknown_tool",
    "input_required",
    "failed",
];

/// The example server of `mcpwatch-mcp` (rmcp 3.x with the instrumentation embedded):
/// Streamable HTTP at `/mcp`, its metrics at `/metrics`. Tools `add`, `echo`, `fail`
/// (`isError`) and `slow`.
#[derive(Debug)]
pub struct InstrumentedServer {
    started: Started,
}

impl InstrumentedServer {
    /// Starts it, instrumented or not (`--no-instrumentation`).
    ///
    /// # Panics
    /// When it cannot be built or does not listen within a minute.
    pub fn start(instrumented: bool) -> Self {
        let mut command = Command::new(crate::binaries::workspace_example(
            "mcpwatch-mcp",
            "mcp-server",
        ));
        if !instrumented {
            command.arg("--no-instrumentation");
        }
        Self {
            started: start_fixture("instrumented MCP server", "mcp-server", command),
        }
    }

    /// Its Streamable HTTP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.started.port)
    }

    /// Its `/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.started.port)
    }

    /// Its address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.started.port)
    }

    /// What it printed.
    pub fn log(&self) -> String {
        self.started.process.output()
    }
}

/// The client script of the Python SDK 2.x.
pub fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mcp_client.py")
}

/// Runs the Python SDK 2.x client against `url` in `mode` (`auto`, `legacy` or a pinned
/// revision), calling each `(tool, arguments)` of `plan` in order; what it printed: the
/// revision it spoke and each call's outcome.
///
/// # Panics
/// When the client cannot run or does not end within a minute.
pub fn python_client(url: &str, mode: &str, plan: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new(SDK2.python())
        .arg(client_script())
        .args([url, mode, &plan.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the Python MCP client");
    let deadline = std::time::Instant::now() + LIMIT;
    while child.try_wait().expect("wait for the client").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the Python MCP client did not end within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("client output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python MCP client failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("client output {line:?}: {e}"))
}
