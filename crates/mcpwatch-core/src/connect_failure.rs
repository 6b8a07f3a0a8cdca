//! Why a collector could not connect to its server, as a bounded label: the one reason set
//! the PostgreSQL and Redis collectors share, and the `<prefix>_connect_failure{reason}`
//! family that reports it.

use std::error::Error;
use std::io;
use std::sync::Arc;

use crate::metrics::MetricSink;

/// Why connecting to a server failed. Each collector maps its driver's codes and error
/// kinds onto these, never the error's text where a code exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectFailure {
    /// Nothing accepted the connection: refused, or no route to the host.
    Refused,
    /// Connecting, or the server's first answer, took longer than allowed.
    Timeout,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed (certificate, protocol), or TLS was required and the
    /// server offers none.
    Tls,
    /// The server refused the credentials or the role (wrong password, no such user, no
    /// right to connect).
    Auth,
    /// The server is up but out of connection slots (PostgreSQL `53300`, Redis
    /// `maxclients`).
    TooManyConnections,
    /// The peer broke the protocol or closed the connection during the handshake: not the
    /// server expected, or one that gave up on the exchange.
    Protocol,
    /// Anything else (a missing database, a server starting up or shutting down, ...).
    Other,
}

impl ConnectFailure {
    /// Every reason, in label order.
    pub const ALL: [ConnectFailure; 8] = [
        ConnectFailure::Refused,
        ConnectFailure::Timeout,
        ConnectFailure::Dns,
        ConnectFailure::Tls,
        ConnectFailure::Auth,
        ConnectFailure::TooManyConnections,
        ConnectFailure::Protocol,
        ConnectFailure::Other,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Dns => "dns",
            ConnectFailure::Tls => "tls",
            ConnectFailure::Auth => "auth",
            ConnectFailure::TooManyConnections => "too_many_connections",
            ConnectFailure::Protocol => "protocol",
            ConnectFailure::Other => "other",
        }
    }

    /// The reason an I/O error of this kind gives, when its kind says one. A failed name
    /// lookup has no kind of its own: see [`unresolvable`].
    pub fn of_io(kind: io::ErrorKind) -> Option<Self> {
        use io::ErrorKind as K;
        match kind {
            // A Unix socket path that does not exist is a server that is not there.
            K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::NotFound => {
                Some(ConnectFailure::Refused)
            }
            K::TimedOut | K::WouldBlock => Some(ConnectFailure::Timeout),
            K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::InvalidData => Some(ConnectFailure::Protocol),
            _ => None,
        }
    }

    /// The reason found in an error's chain of sources: a rustls error (itself or inside
    /// an I/O error) is `Tls`; else the first I/O error's kind, as [`of_io`](Self::of_io)
    /// maps it. `None` when the chain holds neither, or an I/O error of no telling kind.
    pub fn in_chain(error: &(dyn Error + 'static)) -> Option<Self> {
        let mut io_kind = None;
        let mut current = Some(error);
        while let Some(mut e) = current {
            // A cause kept in an `Arc` (as the redis crate does) is that `Arc` in the chain;
            // its own source skips the cause itself.
            if let Some(inner) = e.downcast_ref::<Arc<dyn Error + Send + Sync>>() {
                e = &**inner;
            }
            if e.is::<rustls::Error>() {
                return Some(ConnectFailure::Tls);
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>())
                {
                    return Some(ConnectFailure::Tls);
                }
                io_kind = io_kind.or(Some(io.kind()));
            }
            current = e.source();
        }
        io_kind.and_then(Self::of_io)
    }
}

/// Whether `host` is a name (not an address) that does not resolve: the one way to tell a
/// failed lookup, whose I/O error has no kind of its own, from other failures.
pub async fn unresolvable(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>().is_err()
        && !host.starts_with('/')
        && tokio::net::lookup_host((host, 0)).await.is_err()
}

/// Writes `<prefix>_connect_failure{reason}`: 1 for `failure`'s reason, 0 for the others,
/// all 0 when connected (`None`), so that every reason is a series an alert can select.
pub fn write_connect_failure(sink: &mut MetricSink, prefix: &str, failure: Option<ConnectFailure>) {
    let family = sink.gauge(
        format!("{prefix}_connect_failure"),
        "Why the collector could not connect to the server: 1 for the reason, 0 for the \
         others; all 0 while connected.",
    );
    for reason in ConnectFailure::ALL {
        family.add(
            &[("reason", reason.as_str())],
            if failure == Some(reason) { 1.0 } else { 0.0 },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_from_error_chains() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ConnectFailure::in_chain(&refused),
            Some(ConnectFailure::Refused)
        );
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(ConnectFailure::in_chain(&tls), Some(ConnectFailure::Tls));
        let other = io::Error::other("whatever");
        assert_eq!(ConnectFailure::in_chain(&other), None);
        // A cause kept in an Arc, whose Error impl would skip it.
        #[derive(Debug)]
        struct Wrapper(Arc<dyn Error + Send + Sync>);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapper")
            }
        }
        impl Error for Wrapper {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped = Wrapper(Arc::new(tls));
        assert_eq!(
            ConnectFailure::in_chain(&wrapped),
            Some(ConnectFailure::Tls)
        );
        let wrapped = Wrapper(Arc::new(refused));
        assert_eq!(
            ConnectFailure::in_chain(&wrapped),
            Some(ConnectFailure::Refused)
        );
    }

    #[test]
    fn every_reason_is_written() {
        let mut sink = MetricSink::default();
        write_connect_failure(&mut sink, "pg", Some(ConnectFailure::TooManyConnections));
        let family = &sink.families()[0];
        assert_eq!(family.name(), "pg_connect_failure");
        let set: Vec<String> = family
            .samples()
            .iter()
            .filter(|s| matches!(s.value, crate::metrics::SampleValue::Number(v) if v == 1.0))
            .flat_map(|s| s.labels.iter().map(|(_, v)| v.clone()))
            .collect();
        assert_eq!(set, ["too_many_connections"]);
        assert_eq!(family.samples().len(), ConnectFailure::ALL.len());
        let labels: std::collections::HashSet<&str> =
            ConnectFailure::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), ConnectFailure::ALL.len());
    }

    #[tokio::test]
    async fn names_that_do_not_resolve() {
        assert!(unresolvable("no-such-host.invalid").await);
        assert!(!unresolvable("127.0.0.1").await);
        assert!(!unresolvable("[::1]").await);
        assert!(!unresolvable("/run/postgresql").await);
    }
}
