//! A headless Chromium driven through WebDriver: Debian's `chromedriver` on a free
//! loopback port starts `chromium` with a new profile in a temporary directory; the tests
//! speak W3C WebDriver to it over HTTP, and reach the DevTools protocol through
//! chromedriver's `goog/cdp/execute` for what WebDriver lacks (request headers, full-page
//! screenshots, a phone's viewport).
//!
//! Chromium resolves no host name but 127.0.0.1 (`--host-resolver-rules`) and starts none
//! of its background services, so a test's traffic stays on loopback. Everything it
//! starts is stopped when the [`Browser`] is dropped: chromedriver's process group, then
//! every process whose command line names the temporary directory (Chromium's helpers,
//! and its crash handler, which leaves the group but keeps its database there).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::ports::free_port;
use crate::tools::require;

/// How the tests install what this needs.
const INSTALL: &str = "apt-get install -y chromium chromium-driver";
/// The key of an element reference in W3C WebDriver.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The longest a command may take: a page load included.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// An element of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// A running headless Chromium with its chromedriver.
#[derive(Debug)]
pub struct Browser {
    driver: Option<Child>,
    dir: tempfile::TempDir,
    base: String,
    session: String,
    client: reqwest::Client,
}

/// The Chromium binary itself (Debian's `/usr/bin/chromium` is a shell script that execs
/// it), so that the processes started are Chromium's own.
fn chromium_binary() -> PathBuf {
    let direct = Path::new("/usr/lib/chromium/chromium");
    if direct.is_file() {
        return direct.to_path_buf();
    }
    require("chromium", INSTALL)
}

/// Processes (not zombies) whose command line contains `needle`.
///
/// # Panics
/// When `/proc` cannot be read.
pub fn processes_naming(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .map(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(true);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !zombie
            && cmdline
                .windows(needle.len().max(1))
                .any(|window| window == needle)
        {
            found.push(pid);
        }
    }
    found
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a new profile.
    ///
    /// # Panics
    /// When `chromium` or `chromedriver` is missing (saying how to install them), or they
    /// do not start.
    pub async fn start() -> Self {
        let chromedriver = require("chromedriver", INSTALL);
        let chromium = chromium_binary();
        crate::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(COMMAND_LIMIT)
            .no_proxy()
            .build()
            .expect("http client");
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("create home");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.out")).expect("log file");
        let mut command = Command::new(chromedriver);
        command
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            // Chromium's crash handler keeps its database under the home directory: here,
            // so that it is not written outside and its command line names this directory.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver: {e}"));
        // From here on a panic drops the browser, which stops what was started.
        let mut browser = Self {
            driver: Some(driver),
            dir,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client,
        };
        browser.wait_ready().await;
        let profile = browser.profile_dir();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-dev-shm-usage",
            "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let created = browser
            .command(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {"pageLoad": 30_000, "script": 30_000, "implicit": 0},
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                }}})),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {created}"))
            .to_owned();
        browser
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self
                .client
                .get(format!("{}/status", self.base))
                .send()
                .await
                .ok();
            let ready = match ready {
                Some(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                None => false,
            };
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not get ready: {}",
                std::fs::read_to_string(self.dir.path().join("chromedriver.out"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The profile Chromium was started with (`--user-data-dir`), inside the temporary
    /// directory.
    pub fn profile_dir(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// The temporary directory every process started names.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The running processes it started (chromedriver, Chromium and its helpers).
    pub fn processes(&self) -> Vec<u32> {
        processes_naming(self.dir.path())
    }

    /// One WebDriver command: its `value`.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {answer}"
        );
        answer["value"].clone()
    }

    async fn session_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// A DevTools protocol command on the current page, through chromedriver.
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        self.session_command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": command, "params": params})),
        )
        .await
    }

    /// Sends `Authorization: Basic` with every request of the page from now on (as a
    /// browser does once someone typed the password into its dialog).
    pub async fn basic_auth(&self, user: &str, password: &str) {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.cdp("Network.enable", json!({})).await;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            json!({"headers": {"Authorization": format!("Basic {credentials}")}}),
        )
        .await;
    }

    /// Loads `url` and waits for it.
    pub async fn goto(&self, url: &str) {
        self.session_command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.session_command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the current URL satisfies `check` (a form posted and its redirect
    /// followed), at most 30 s.
    ///
    /// # Panics
    /// When it does not.
    pub async fn wait_for_url(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = self.url().await;
            let loaded = self.execute("return document.readyState", vec![]).await == "complete";
            if loaded && check(&url) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the page stayed at {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The elements matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.session_command(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
                .collect()
        })
        .unwrap_or_default()
    }

    /// The one element matching a CSS selector.
    ///
    /// # Panics
    /// When none or several match.
    pub async fn find(&self, css: &str) -> Element {
        let mut found = self.find_all(css).await;
        assert_eq!(
            found.len(),
            1,
            "{css}: {} elements on {}",
            found.len(),
            self.url().await
        );
        found.remove(0)
    }

    /// An element's rendered text.
    pub async fn text(&self, element: &Element) -> String {
        self.session_command(
            reqwest::Method::GET,
            &format!("/element/{}/text", element.0),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Clicks an element.
    pub async fn click(&self, element: &Element) {
        self.session_command(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            None,
        )
        .await;
    }

    /// Types `text` into a form field.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.session_command(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page: its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.session_command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Emulates a screen `width` × `height` CSS pixels (a phone's when `mobile`: its
    /// `<meta name="viewport">` is honoured).
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Saves a PNG of the whole page (beyond the viewport) to `path`; its size in bytes.
    ///
    /// # Panics
    /// When it cannot be taken or written.
    pub async fn screenshot(&self, path: &Path) -> usize {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let (width, height) = (
            size["width"].as_f64().unwrap_or(1280.0).ceil(),
            size["height"].as_f64().unwrap_or(900.0).ceil(),
        );
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the artifacts directory");
        }
        std::fs::write(path, &png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        png.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        // chromedriver and the Chromium processes in its group, then any that left it;
        // each by the id found, until none is left.
        if let Ok(pid) = i32::try_from(driver.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            for pid in &left {
                if let Ok(pid) = i32::try_from(*pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = driver.kill();
        let _ = driver.wait();
    }
}
