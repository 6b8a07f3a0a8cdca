//! TLS to PostgreSQL with libpq's `sslmode` meanings: `prefer` and `require` encrypt without
//! checking the certificate, `verify-ca` checks it against trusted CAs, `verify-full` also
//! checks the host name.

use std::path::Path;

use mcpwatch_core::web::{ServerCheck, client_config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::SettingsError;
use crate::dsn::SslMode;

/// The connector for `mode`; with `Disable` it is never used.
pub(crate) fn connector(
    mode: SslMode,
    root_cert: Option<&Path>,
) -> Result<MakeRustlsConnect, SettingsError> {
    let check = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => ServerCheck::None,
        SslMode::VerifyCa => ServerCheck::Chain,
        SslMode::VerifyFull => ServerCheck::Full,
    };
    let config = client_config(check, root_cert).map_err(|reason| match root_cert {
        Some(_) => SettingsError::RootCert { reason },
        None => SettingsError::Tls { reason },
    })?;
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_connector_for_every_mode() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            assert!(connector(mode, None).is_ok());
        }
        let e = connector(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .expect("missing CA file");
        assert!(matches!(e, SettingsError::RootCert { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.starts_with("sslrootcert "), "{e}");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
