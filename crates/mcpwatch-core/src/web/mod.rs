//! Serving HTTP the way exporter-toolkit does: `--web.listen-address` (repeatable) and
//! `--web.config.file` with TLS, basic auth, security headers and a rate limit.

mod auth;
mod client_tls;
mod config;
mod server;
mod tls;

pub use auth::{BasicAuth, RateLimiter};
pub use client_tls::{
    ServerCheck, Trust, client_config, shared_client_config, shared_trust, watched_client_config,
};
pub(crate) use client_tls::{Step, Wrapped};
pub use config::{
    BcryptHash, ClientAuthType, HttpServerConfig, RateLimit, ResponseHeaders, TlsServerConfig,
    TlsVersion, WebConfig,
};
pub use server::{
    HttpService, PeerAddr, ResponseBody, ServeError, WebServer, check_web_config, shutdown_signal,
};
pub use tls::{crypto_provider, install_crypto_provider, server_config};
