//! Why connection settings cannot be used.

/// Why a connection string, or the TLS it asks for, cannot be used. No variant holds the
/// connection string or any part of it, so that neither `Display` nor `Debug` can show
/// the password.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `sslmode` has a value libpq does not know.
    #[error("sslmode must be disable, allow, prefer, require, verify-ca or verify-full")]
    SslMode,
    /// tokio-postgres cannot read the connection string.
    #[error("invalid connection string: {reason}")]
    Invalid {
        /// What tokio-postgres found wrong (it names keys and positions, not values).
        reason: String,
    },
    /// No user is named, and the one running the process has no name to log in as.
    #[error(
        "names no user, and the system user this process runs as has no name to log in as \
         ({reason}): add user=..."
    )]
    NoUser {
        /// Why the system user has no name.
        reason: String,
    },
    /// The root certificates given (`sslrootcert`, or a CA file in its place) cannot be
    /// used.
    #[error("sslrootcert {reason}")]
    RootCert {
        /// Why, naming the file.
        reason: String,
    },
    /// The TLS client cannot be set up (for `verify-ca` and `verify-full`: the system's
    /// roots cannot be loaded).
    #[error("sslmode verify-ca/verify-full: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
}
