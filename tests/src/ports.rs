//! Free loopback ports.

use std::net::{SocketAddr, TcpListener};

/// A port free on 127.0.0.1 right now. The service that gets it binds it a moment later;
/// the kernel does not hand a just-released ephemeral port out again that quickly.
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// `127.0.0.1:<free port>`.
pub fn free_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}
