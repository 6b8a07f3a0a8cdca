//! A real MCP server built with the official Python SDK (`tests/fixtures/mcp_server.py`),
//! serving WebSocket at `/ws` and Streamable HTTP at `/mcp` on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::ServiceProcess;
use crate::tools::require;

const LIMIT: Duration = Duration::from_secs(60);
const INSTALL: &str = "pip install 'mcp[ws]>=1.20,<2'";

/// A running SDK server. Dropping it stops it.
#[derive(Debug)]
pub struct McpServer {
    _dir: tempfile::TempDir,
    port: u16,
    process: ServiceProcess,
}

/// The fixture script.
pub fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mcp_server.py")
}

impl McpServer {
    /// Starts the server with `tools` tools, listed `page_size` at a time, and this name
    /// and version.
    ///
    /// # Panics
    /// When Python or the `mcp` package is missing, or the server does not start.
    pub fn start(tools: usize, page_size: usize, name: &str, version: &str) -> Self {
        let python = require("python3", "apt-get install -y python3");
        let check = Command::new(&python)
            .args(["-c", "import mcp.server.websocket, uvicorn"])
            .output()
            .expect("run python3");
        assert!(
            check.status.success(),
            "the Python MCP SDK is not installed: run ./tests/run.sh, or as root: {INSTALL}\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut command = Command::new(python);
        command
            .arg(fixture_script())
            .args(["--port", &port.to_string()])
            .args(["--tools", &tools.to_string()])
            .args(["--page-size", &page_size.to_string()])
            .args(["--name", name, "--version", version]);
        let mut process = ServiceProcess::spawn("mcp-server", command, dir.path());
        let address = format!("127.0.0.1:{port}");
        crate::wait_for("the MCP server to listen", LIMIT, || {
            assert!(
                process.is_running(),
                "the MCP server exited: {}",
                process.output()
            );
            std::net::TcpStream::connect(&address).ok().map(|_| ())
        });
        Self {
            _dir: dir,
            port,
            process,
        }
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
