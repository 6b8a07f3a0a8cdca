//! TLS to PostgreSQL with libpq's `sslmode` meanings: `prefer` and `require` encrypt without
//! checking the certificate, `verify-ca` checks it against trusted CAs, `verify-full` also
//! checks the host name.

use std::path::Path;
use std::sync::Arc;

use mcpwatch_core::certs::WatchedTls;
use mcpwatch_core::web::{ServerCheck, watched_client_config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::SettingsError;
use crate::dsn::SslMode;

/// TLS settings that record the certificate chains the server presents.
pub type Watched = Arc<WatchedTls>;

/// The connector for `mode` to a server on `port` (with `Disable` it is never used), and
/// the settings that record the certificate chains its handshakes are presented.
pub(crate) fn connector(
    mode: SslMode,
    root_cert: Option<&Path>,
    port: u16,
) -> Result<(MakeRustlsConnect, Watched), SettingsError> {
    let check = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => ServerCheck::None,
        SslMode::VerifyCa => ServerCheck::Chain,
        SslMode::VerifyFull => ServerCheck::Full,
    };
    let watched = watched_client_config(check, root_cert).map_err(|reason| match root_cert {
        Some(_) => SettingsError::RootCert { reason },
        None => SettingsError::Tls { reason },
    })?;
    let connector = MakeRustlsConnect::new((*watched.config(port)).clone());
    Ok((connector, watched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_connector_for_every_mode() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            assert!(connector(mode, None, 5432).is_ok());
        }
        let e = connector(
            SslMode::VerifyFull,
            Some(Path::new("/nonexistent/ca.pem")),
            5432,
        )
        .err()
        .expect("missing CA file");
        assert!(matches!(e, SettingsError::RootCert { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.starts_with("sslrootcert "), "{e}");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
