//! Free loopback ports.

use std::net::{SocketAddr, TcpListener};

/// A port free on 127.0.0.1 right now, below the kernel's ephemeral range: the service
/// that gets it binds it a moment later (a Python server a second or two later), and in
/// that moment no outgoing connection of the tests can take it, as one can take a port of
/// the ephemeral range that `bind(0)` hands out. Each test process walks the range from
/// its own starting point, and never hands out a port twice.
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let end = ephemeral_start().max(FIRST + 1_000);
    let span = end - FIRST;
    let start = std::process::id() % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start + step) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// The first port of the kernel's ephemeral range (Linux), 32768 when it cannot be read.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `127.0.0.1:<free port>`.
pub fn free_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A loopback port whose listener answers every connection with a line no database
/// protocol expects, then closes it: a peer that is not the server configured. The
/// listener lives as long as the test process.
///
/// # Panics
/// When no loopback port can be bound.
pub fn babbling_port() -> u16 {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    port
}

/// What an [`answering_port`] does once it has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAnswer {
    /// Ends its side of the stream, as an HTTP server does after a `400`: the client reads
    /// the answer, then the end.
    EndStream,
    /// Sends nothing more and keeps the connection open.
    KeepOpen,
}

/// A loopback port whose listener reads what a client sends first, answers `answer`, then
/// does as `after` says, and keeps the connection until the client closes it: a peer that
/// is not the server configured and, unlike [`babbling_port`], takes in what it is sent,
/// so that the client meets the answer rather than a reset. The listener lives as long as
/// the test process.
///
/// # Panics
/// When no loopback port can be bound.
pub fn answering_port(answer: &'static [u8], after: AfterAnswer) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 4096];
                if stream.read(&mut buffer).is_err() || stream.write_all(answer).is_err() {
                    return;
                }
                if after == AfterAnswer::EndStream {
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                }
                while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A host name that no resolver can resolve and that the system's resolver refuses before
/// asking any name server (its first label is longer than DNS allows): a name lookup that
/// fails with no traffic off the machine, where `no-such-host.invalid` would be sent to the
/// configured name server.
pub fn unresolvable_host() -> String {
    format!("{}.invalid", "x".repeat(64))
}

/// Places a client cannot connect to, each for its own reason, as `(reason, host, port)`
/// with the reason `<prefix>_connect_failure` gives: `refused` (a closed port), `dns` (an
/// [`unresolvable_host`]), `timeout` (a port that accepts and never answers) and `protocol`
/// (a [`babbling_port`]). The silent listener lives as long as the value.
#[derive(Debug)]
pub struct Unreachable {
    /// `(reason, host, port)`.
    pub cases: Vec<(&'static str, String, u16)>,
    _silent: TcpListener,
}

/// The [`Unreachable`] places, made afresh.
///
/// # Panics
/// When no loopback port can be bound.
pub fn unreachable() -> Unreachable {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let silent_port = silent.local_addr().expect("local address").port();
    let loopback = || "127.0.0.1".to_owned();
    Unreachable {
        cases: vec![
            ("refused", loopback(), free_port()),
            ("dns", unresolvable_host(), 5432),
            ("timeout", loopback(), silent_port),
            ("protocol", loopback(), babbling_port()),
        ],
        _silent: silent,
    }
}
