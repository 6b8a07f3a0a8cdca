#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dsn;
mod error;
mod tls;

use mcpwatch_core::Secret;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use dsn::{ParsedDsn, parse, target_name};
pub use error::SettingsError;
pub use tls::Watched;

/// How to connect to PostgreSQL the way the collector does: the connection string as
/// tokio-postgres reads it, plus libpq's `sslmode` (`verify-ca`, `verify-full`) and
/// `sslrootcert`, which it does not.
pub fn client_config(
    dsn: &Secret,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), SettingsError> {
    let parsed = parse(dsn)?;
    let (tls, _) = parsed.connector()?;
    Ok((parsed.into_config(), tls))
}
