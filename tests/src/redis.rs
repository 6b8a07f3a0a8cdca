//! A real Redis server with a password, on a free loopback port.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::ports::free_port;
use crate::process::ServiceProcess;
use crate::tools::require;

const LIMIT: Duration = Duration::from_secs(30);

/// A running Redis server. Dropping it stops it.
#[derive(Debug)]
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    extra: Vec<String>,
    tls: bool,
    process: Option<ServiceProcess>,
}

impl RedisServer {
    /// Starts Redis with `requirepass` set to a random password, no persistence, and
    /// `extra` configuration arguments (such as `["--maxmemory", "2mb"]`).
    ///
    /// # Panics
    /// When redis-server is missing or does not start.
    pub async fn start(extra: &[&str]) -> Self {
        // In cluster mode Redis also binds its bus, at the port plus 10000.
        let port = if extra.contains(&"--cluster-enabled") {
            loop {
                let port = free_port();
                let bus = port.checked_add(10_000);
                if bus.is_some_and(|bus| std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok()) {
                    break port;
                }
            }
        } else {
            free_port()
        };
        let mut server = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            port,
            password: crate::random_token("redis-secret-"),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            tls: false,
            process: None,
        };
        server.launch().await;
        server
    }

    /// Starts Redis serving TLS only, with this certificate and key (PEM).
    ///
    /// # Panics
    /// When redis-server is missing or does not start.
    pub async fn start_tls(cert: &str, key: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tls.crt"), cert).expect("write cert");
        std::fs::write(dir.path().join("tls.key"), key).expect("write key");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let extra = vec![
            "--tls-cert-file".to_owned(),
            path("tls.crt"),
            "--tls-key-file".to_owned(),
            path("tls.key"),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let mut server = Self {
            dir,
            port: free_port(),
            password: crate::random_token("redis-secret-"),
            extra,
            tls: true,
            process: None,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let binary = require("redis-server", "apt-get install -y redis-server");
        let mut command = Command::new(binary);
        let port = self.port.to_string();
        if self.tls {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--requirepass", &self.password])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra);
        self.process = Some(ServiceProcess::spawn("redis", command, self.dir.path()));
        if self.tls {
            // Accepting TCP is enough; the tests check the TLS side themselves.
            let address = format!("127.0.0.1:{}", self.port);
            crate::wait_for("Redis to listen", LIMIT, || {
                std::net::TcpStream::connect(&address).ok().map(|_| ())
            });
            return;
        }
        let url = self.url();
        crate::wait_for_async("Redis to answer", LIMIT, || {
            let url = url.clone();
            async move {
                let client = redis::Client::open(url).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            }
        })
        .await;
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `redis://:<password>@127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", self.password, self.port)
    }

    /// A connection for the tests' own commands.
    ///
    /// # Panics
    /// When Redis cannot be reached.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// Creates the ACL user `name` with these rules (`+ping`, `-config`, ...) and a random
    /// password, which it returns.
    ///
    /// # Panics
    /// When Redis refuses the rules.
    pub async fn acl_user(&self, name: &str, rules: &[&str]) -> String {
        let password = crate::random_token(&format!("{name}-"));
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg(rules)
            .query_async(&mut self.connection().await)
            .await
            .expect("ACL SETUSER");
        password
    }

    /// The server's process id (to stall it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").pid()
    }

    /// Redis's log so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(ServiceProcess::output)
            .unwrap_or_default()
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGTERM, LIMIT);
        }
    }

    /// Starts the stopped server again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
