//! Serving a hyper service on one or more addresses, with the web configuration applied:
//! TLS, basic auth, security headers, a rate limit, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::auth::{BasicAuth, RateLimiter};
use super::config::WebConfig;
use super::tls::server_config;
use crate::config::ConfigError;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the web configuration's files are checked for changes.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listen address is malformed or cannot be bound.
    #[error("--web.listen-address {address}: {message}")]
    Listen {
        /// The address as given.
        address: String,
        /// Why.
        message: String,
    },
    /// The web configuration file is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The web configuration turned into what serving needs.
struct ActiveWebConfig {
    tls: Option<TlsAcceptor>,
    auth: Option<BasicAuth>,
    rate_limit: Option<RateLimiter>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ActiveWebConfig {
    fn plain() -> Self {
        Self {
            tls: None,
            auth: None,
            rate_limit: None,
            headers: Vec::new(),
        }
    }

    fn load(path: &Path) -> Result<(Self, Vec<PathBuf>), ConfigError> {
        let config = WebConfig::load(path)?;
        if config.http_server_config.http2 == Some(true) {
            tracing::info!("http_server_config.http2: mcpwatch serves HTTP/1.1 only.");
        }
        let mut files = vec![path.to_owned()];
        let tls = match &config.tls_server_config {
            Some(tls) => {
                files.extend(
                    [&tls.cert_file, &tls.key_file, &tls.client_ca_file]
                        .into_iter()
                        .flatten()
                        .map(|f| f.path().to_owned()),
                );
                Some(TlsAcceptor::from(Arc::new(server_config(tls, path)?)))
            }
            None => None,
        };
        let headers = config
            .http_server_config
            .headers
            .pairs()
            .into_iter()
            .map(|(name, value)| {
                HeaderValue::try_from(value)
                    .map(|v| (HeaderName::from_static(name), v))
                    .map_err(|_| {
                        ConfigError::in_file(
                            path,
                            format!("http_server_config.headers.{name}"),
                            "not a valid header value",
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok((
            Self {
                tls,
                auth: BasicAuth::new(&config.basic_auth_users),
                rate_limit: config.rate_limit.and_then(RateLimiter::new),
                headers,
            },
            files,
        ))
    }
}

type FileStamp = Option<(SystemTime, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<FileStamp> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The web configuration in force. Like exporter-toolkit, it follows the file: a change to
/// it or to the certificate files it names takes effect on the next request (TLS on the next
/// connection); a change that does not load is logged and the previous one stays.
struct WebConfigWatcher {
    path: Option<PathBuf>,
    current: RwLock<Arc<ActiveWebConfig>>,
    check: Mutex<(Instant, Vec<PathBuf>, Vec<FileStamp>)>,
}

impl WebConfigWatcher {
    fn new(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (active, files) = match path {
            Some(p) => ActiveWebConfig::load(p)?,
            None => (ActiveWebConfig::plain(), Vec::new()),
        };
        let stamp = stamps(&files);
        Ok(Self {
            path: path.map(Path::to_owned),
            current: RwLock::new(Arc::new(active)),
            check: Mutex::new((Instant::now(), files, stamp)),
        })
    }

    fn current(&self) -> Arc<ActiveWebConfig> {
        if let Some(path) = &self.path {
            self.reload_if_changed(path);
        }
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reload_if_changed(&self, path: &Path) {
        // One request checks at a time; the others go on with the configuration in force.
        let Ok(mut check) = self.check.try_lock() else {
            return;
        };
        if check.0.elapsed() < RECHECK_INTERVAL {
            return;
        }
        check.0 = Instant::now();
        let before = stamps(&check.1);
        if before == check.2 {
            return;
        }
        match ActiveWebConfig::load(path) {
            Ok((active, files)) => {
                if files != check.1 || stamps(&files) != before {
                    // Written while being read, or naming other files now: read it again
                    // at the next check rather than apply what may be half a file.
                    check.1 = files;
                    check.2 = Vec::new();
                    return;
                }
                check.2 = before;
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(active);
                tracing::info!(file = %path.display(), "Web configuration reloaded.");
            }
            Err(error) => {
                // Remember the broken state so that the error is logged once per change.
                check.2 = before;
                tracing::error!(%error, "Web configuration not reloaded; keeping the previous one.");
            }
        }
    }
}

/// Reads a web configuration file and builds everything it describes (TLS included), as
/// serving would, without listening: for `--check-config`.
pub fn check_web_config(path: &Path) -> Result<(), ConfigError> {
    ActiveWebConfig::load(path).map(|_| ())
}

/// Resolves a listen address: `:9810` means every interface, as in Go.
async fn resolve_listen_address(address: &str) -> Result<Vec<SocketAddr>, String> {
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
        return Ok(vec![
            SocketAddr::from(([0u16; 8], port)),
            SocketAddr::from(([0u8; 4], port)),
        ]);
    }
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if !address.contains(':') {
        return Err("expected host:port, such as :9810 or 127.0.0.1:9810".to_owned());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("resolves to no address".to_owned());
    }
    Ok(addrs)
}

/// A hyper service [`WebServer::serve`] can serve: cloned per connection, never failing.
pub trait HttpService<B>:
    Service<Request<Incoming>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body [`WebServer::serve`] can send.
pub trait ResponseBody:
    Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// Listening sockets with their web configuration, ready to serve.
pub struct WebServer {
    listeners: Vec<TcpListener>,
    web: Arc<WebConfigWatcher>,
}

impl std::fmt::Debug for WebServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebServer")
            .field("addresses", &self.local_addrs())
            .field("web_config", &self.web.path)
            .finish()
    }
}

impl WebServer {
    /// Loads the web configuration (when given) and binds every address. `:port` binds all
    /// interfaces (IPv6 and IPv4 where the host has both).
    pub async fn bind(addresses: &[String], web_config: Option<&Path>) -> Result<Self, ServeError> {
        let web = Arc::new(WebConfigWatcher::new(web_config)?);
        let mut listeners = Vec::new();
        for address in addresses {
            let candidates =
                resolve_listen_address(address)
                    .await
                    .map_err(|message| ServeError::Listen {
                        address: address.clone(),
                        message,
                    })?;
            let mut last_error = None;
            let mut bound = false;
            for candidate in &candidates {
                match TcpListener::bind(candidate).await {
                    Ok(listener) => {
                        listeners.push(listener);
                        bound = true;
                        // `:port` on a dual-stack host: the IPv6 socket also takes IPv4.
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if !bound {
                return Err(ServeError::Listen {
                    address: address.clone(),
                    message: last_error.map_or_else(|| "cannot bind".to_owned(), |e| e.to_string()),
                });
            }
        }
        Ok(Self { listeners, web })
    }

    /// The bound addresses (with the ports chosen for `:0`).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Whether connections are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.web.current().tls.is_some()
    }

    /// Serves `service` until `shutdown` completes, then stops accepting and gives open
    /// connections a grace period to finish.
    pub async fn serve<S, B>(self, service: S, shutdown: impl Future<Output = ()>)
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let graceful = Arc::new(GracefulShutdown::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = Vec::new();
        for listener in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(address = %addr, tls = self.web.current().tls.is_some(), "Listening.");
            }
            loops.push(tokio::spawn(accept_loop(
                listener,
                self.web.clone(),
                service.clone(),
                graceful.clone(),
                stop_rx.clone(),
            )));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        for accept in loops {
            let _ = accept.await;
        }
        // The accept loops have ended, so this is the only handle left.
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            return;
        };
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!("Connections still open after the shutdown grace period; closing.");
            }
        }
    }
}

async fn accept_loop<S, B>(
    listener: TcpListener,
    web: Arc<WebConfigWatcher>,
    service: S,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) where
    S: HttpService<B>,
    B: ResponseBody,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::error!(%error, "Accepting a connection failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = GuardedService {
            inner: service.clone(),
            web: web.clone(),
            peer: PeerAddr(peer),
        };
        let tls = web.current().tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, service, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, service, watcher).await,
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed."),
                        Err(_) => tracing::debug!("TLS handshake timed out."),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I, S, B>(io: I, service: GuardedService<S>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: ResponseBody,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(conn).await {
        tracing::debug!(%error, "Connection ended with an error.");
    }
}

/// Applies the rate limit, basic auth and response headers around the inner service.
#[derive(Clone)]
struct GuardedService<S> {
    inner: S,
    web: Arc<WebConfigWatcher>,
    peer: PeerAddr,
}

/// The address a request came from, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

type GuardedResponse<B> = Response<Either<B, Full<Bytes>>>;

// The response type is spelled out here (not through `HttpService`) because it is what ties
// `B` to `S`.
impl<S, B> Service<Request<Incoming>> for GuardedService<S>
where
    S: HttpService<B> + Service<Request<Incoming>, Response = Response<B>>,
    B: ResponseBody,
{
    type Response = GuardedResponse<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let web = self.web.current();
        let inner = self.inner.clone();
        request.extensions_mut().insert(self.peer);
        Box::pin(async move {
            let mut response = if web.rate_limit.as_ref().is_some_and(|r| !r.allow()) {
                plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")
            } else if let Some(auth) = &web.auth
                && !auth
                    .check(
                        request
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .map(HeaderValue::as_bytes),
                    )
                    .await
            {
                let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"mcpwatch\", charset=\"UTF-8\""),
                );
                r
            } else {
                let Ok(response) = inner.call(request).await;
                response.map(Either::Left)
            };
            for (name, value) in &web.headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            Ok(response)
        })
    }
}

fn plain<B>(status: StatusCode, text: &'static str) -> GuardedResponse<B> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Resolves when SIGTERM or SIGINT (Ctrl-C) arrives.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => tracing::info!("SIGINT received; shutting down."),
                    _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down."),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot watch SIGTERM; only SIGINT stops the server.");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_listen_addresses() {
        let any = resolve_listen_address(":9810").await.expect(":9810");
        assert_eq!(any[0].port(), 9810);
        assert!(any[0].ip().is_unspecified());
        let local = resolve_listen_address("127.0.0.1:0")
            .await
            .expect("loopback");
        assert_eq!(local, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
        assert!(resolve_listen_address("9810").await.is_err());
        assert!(resolve_listen_address(":http").await.is_err());
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = taken.local_addr().expect("addr").to_string();
        let e = WebServer::bind(std::slice::from_ref(&address), None)
            .await
            .expect_err("in use")
            .to_string();
        assert!(
            e.starts_with(&format!("--web.listen-address {address}: ")),
            "{e}"
        );
    }

    #[test]
    fn stamps_change_with_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("web.yml");
        std::fs::write(&file, "").expect("write");
        let before = stamps(std::slice::from_ref(&file));
        std::fs::write(&file, "basic_auth_users: {}\n").expect("write");
        assert_ne!(before, stamps(std::slice::from_ref(&file)));
        assert_eq!(stamps(&[dir.path().join("missing")]), vec![None]);
    }
}
