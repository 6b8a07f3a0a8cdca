//! A real PostgreSQL server: `initdb` in a temporary directory (as the `postgres` user when
//! the tests run as root), `pg_stat_statements` preloaded, on a free loopback port.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User, chown};

use crate::ports::free_port;
use crate::process::ServiceProcess;

/// The monitoring role the exporter logs in as (member of `pg_monitor`).
pub const MONITOR_USER: &str = "mcpwatch";

const LIMIT: Duration = Duration::from_secs(60);

/// The directory of PostgreSQL's programs: the one `initdb` on PATH is in, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.parent().map(Path::to_path_buf))
    });
    on_path
        .or_else(|| {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| Some(e.ok()?.path().join("bin")))
                .filter(|p| p.join("initdb").is_file())
                .collect();
            versions.sort();
            versions.pop()
        })
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed: run ./tests/run.sh, or as root: \
                 apt-get install -y postgresql"
            )
        })
}

/// Settings of a server to start.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `max_connections`.
    pub max_connections: u32,
    /// A certificate and key (PEM): TCP connections must then use TLS.
    pub tls: Option<(String, String)>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 40,
            tls: None,
        }
    }
}

/// A running PostgreSQL server. Dropping it shuts it down.
#[derive(Debug)]
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<(Uid, Gid)>,
    port: u16,
    options: PostgresOptions,
    password: String,
    process: Option<ServiceProcess>,
}

impl PostgresServer {
    /// Creates a cluster, starts it, and creates the monitoring role (with a random
    /// password) and the `pg_stat_statements` extension.
    ///
    /// # Panics
    /// When PostgreSQL is missing or does not start.
    pub async fn start(options: PostgresOptions) -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        // initdb and postgres refuse to run as root.
        let owner = Uid::effective().is_root().then(|| {
            let user = User::from_name("postgres")
                .ok()
                .flatten()
                .expect("the postgres user (apt-get install -y postgresql creates it)");
            chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown the cluster dir");
            (user.uid, user.gid)
        });
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("-D")
            .arg(&data)
            .stdout(std::process::Stdio::null());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Local superuser by socket for the tests' own setup; everything over TCP needs a
        // password, as in production, and TLS when the server has a certificate.
        let tcp = if options.tls.is_some() {
            "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n"
        } else {
            "host all all 127.0.0.1/32 scram-sha-256\n"
        };
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all all trust\n{tcp}"),
        )
        .expect("write pg_hba.conf");
        if let Some((cert, key)) = &options.tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).expect("write TLS file");
                // PostgreSQL refuses a key others can read.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
                if let Some((uid, gid)) = owner {
                    chown(&path, Some(uid), Some(gid)).expect("chown TLS file");
                }
            }
        }
        let mut server = Self {
            dir,
            bin,
            owner,
            port: free_port(),
            options,
            password: crate::random_token("pg-secret-"),
            process: None,
        };
        server.launch().await;
        let admin = server.admin("postgres").await;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {MONITOR_USER} LOGIN PASSWORD '{}' IN ROLE pg_monitor;\
                 CREATE EXTENSION pg_stat_statements;",
                server.password
            ))
            .await
            .expect("create the monitoring role");
        server
    }

    async fn launch(&mut self) {
        let data = self.dir.path().join("data");
        let mut postgres = Command::new(self.bin.join("postgres"));
        postgres.arg("-D").arg(&data);
        for setting in [
            format!("port={}", self.port),
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories={}", self.dir.path().display()),
            "shared_preload_libraries=pg_stat_statements".to_owned(),
            "pg_stat_statements.track=all".to_owned(),
            format!("max_connections={}", self.options.max_connections),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "autovacuum=off".to_owned(),
            "shared_buffers=32MB".to_owned(),
            format!(
                "ssl={}",
                if self.options.tls.is_some() {
                    "on"
                } else {
                    "off"
                }
            ),
        ] {
            postgres.arg("-c").arg(setting);
        }
        if let Some((uid, gid)) = self.owner {
            postgres.uid(uid.as_raw()).gid(gid.as_raw());
        }
        self.process = Some(ServiceProcess::spawn("postgres", postgres, self.dir.path()));
        let socket = self.dir.path().to_owned();
        let port = self.port;
        crate::wait_for_async("PostgreSQL to accept connections", LIMIT, || {
            let socket = socket.clone();
            async move {
                let mut config = tokio_postgres::Config::new();
                config
                    .host_path(&socket)
                    .port(port)
                    .user("postgres")
                    .dbname("postgres");
                config.connect(tokio_postgres::NoTls).await.ok().map(|_| ())
            }
        })
        .await;
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The monitoring role's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A DSN for the monitoring role over TCP.
    pub fn dsn(&self, database: &str) -> String {
        format!(
            "postgresql://{MONITOR_USER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Creates `database`, owned by the monitoring role (which a notifier's store then
    /// fills); its DSN.
    ///
    /// # Panics
    /// When the database cannot be created.
    pub async fn owned_database(&self, database: &str) -> String {
        self.admin("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {database} OWNER {MONITOR_USER}"))
            .await
            .expect("create database");
        self.dsn(database)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(ServiceProcess::output)
            .unwrap_or_default()
    }

    /// Creates a role that can log in, with these attributes (`NOINHERIT IN ROLE
    /// pg_monitor`, ...) and a random password, which it returns; and the connection
    /// string of `database` as that role.
    ///
    /// # Panics
    /// When the server refuses the role.
    pub async fn login_role(&self, name: &str, attributes: &str, database: &str) -> String {
        let password = crate::random_token(&format!("{name}-"));
        self.admin("postgres")
            .await
            .batch_execute(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{password}' {attributes}"
            ))
            .await
            .expect("CREATE ROLE");
        format!(
            "postgresql://{name}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// A superuser session over the Unix socket, in `database`.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn admin(&self, database: &str) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.dir.path())
            .port(self.port)
            .user("postgres")
            .dbname(database);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("superuser connection");
        tokio::spawn(connection);
        client
    }

    /// The pids of the backends serving `application_name` (to stall one with SIGSTOP).
    pub async fn backends_of(&self, application: &str) -> Vec<i32> {
        self.admin("postgres")
            .await
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&application],
            )
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|row| row.get::<_, i32>(0))
            .collect()
    }

    /// Stops the server (fast shutdown), as an operator's `pg_ctl stop` does.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGINT, LIMIT);
        }
    }

    /// Starts the stopped server again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the server `via` is connected to has `count` client connections, `via`
/// included, as a setup that takes connection slots needs before it goes on. It asks over
/// `via` so as to take no slot of its own.
///
/// # Panics
/// When the count is not reached within a minute.
pub async fn wait_for_client_connections(via: &tokio_postgres::Client, count: i64) {
    crate::wait_for_async(&format!("{count} client connections"), LIMIT, || async {
        let row = via
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
                &[],
            )
            .await
            .expect("count the client connections");
        (row.get::<_, i64>(0) == count).then_some(())
    })
    .await;
}
