//! A small HTTP/1.1 client on hyper's connection API: one connection opened by the probe
//! (so that its connect and TLS times are its own), requests under the probe's deadline,
//! bodies read with a size limit, and Server-Sent Events read one event at a time.

use bytes::{Buf, Bytes};
use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::Access;
use crate::net::{Endpoint, Failure, Reason, Stream};

/// The `User-Agent` of every probe.
pub(crate) const AGENT: &str = concat!("mcpwatch/", env!("CARGO_PKG_VERSION"));

/// An open HTTP/1.1 connection; its driver task ends when it is dropped.
#[derive(Debug)]
pub(crate) struct HttpConnection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl HttpConnection {
    /// Starts HTTP/1.1 on `stream`.
    pub(crate) async fn open(stream: Stream) -> Result<Self, Failure> {
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::new(Reason::Protocol, format_args!("HTTP: {e}")))?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "Probe connection ended.");
            }
        });
        Ok(Self { sender, driver })
    }

    /// Whether another request can go on this connection.
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends `request` and waits for the response head by `deadline`.
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        deadline: Instant,
        what: &str,
    ) -> Result<Response<Incoming>, Failure> {
        let exchange = async {
            self.sender.ready().await?;
            self.sender.send_request(request).await
        };
        match timeout_at(deadline, exchange).await {
            Err(_) => Err(Failure::timeout(what)),
            Ok(Err(e)) => Err(Failure::new(Reason::Protocol, format_args!("{what}: {e}"))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Headers the probes set themselves, which `headers:` may not give.
const OWN_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "authorization",
    "content-type",
    "content-length",
    "accept",
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
];

/// Checks a name of `headers:`: a valid header name that is neither one the probes set nor
/// an MCP header (`Mcp-*`, `MCP-Protocol-Version`), nor a WebSocket handshake header.
pub(crate) fn check_extra_header(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if OWN_HEADERS.contains(&lower.as_str())
        || lower.starts_with("mcp-")
        || lower.starts_with("sec-websocket-")
    {
        return Err(format!(
            "{name:?} is a header the probe sets itself (use bearer_token for authorization)"
        ));
    }
    Ok(())
}

/// A request to `endpoint` with the headers every probe sends: the bearer token and the
/// configured headers (both marked sensitive), then `headers`.
pub(crate) fn request(
    method: Method,
    endpoint: &Endpoint,
    access: &Access,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Failure> {
    let invalid = |what: &str| Failure::new(Reason::Protocol, format_args!("invalid {what}"));
    let mut request = Request::builder()
        .method(method)
        .uri(endpoint.path.as_str())
        .body(Full::new(body))
        .map_err(|_| invalid("request path"))?;
    let map = request.headers_mut();
    map.insert(
        HOST,
        HeaderValue::from_str(&endpoint.authority).map_err(|_| invalid("host"))?,
    );
    map.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    if let Some(token) = &access.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| invalid("bearer token (it holds characters a header cannot)"))?;
        value.set_sensitive(true);
        map.insert(AUTHORIZATION, value);
    }
    for (name, value) in &access.headers {
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
            Failure::new(
                Reason::Protocol,
                format_args!(
                    "invalid value of header {name} (it holds characters a header cannot)"
                ),
            )
        })?;
        value.set_sensitive(true);
        map.insert(name.clone(), value);
    }
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid(name))?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid(name.as_str()))?;
        map.insert(name, value);
    }
    Ok(request)
}

/// Reads a whole body of at most `limit` bytes by `deadline`.
pub(crate) async fn read_body(
    body: Incoming,
    limit: usize,
    deadline: Instant,
    what: &str,
) -> Result<Bytes, Failure> {
    match timeout_at(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Failure::timeout(what)),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Failure::new(
            Reason::Protocol,
            format_args!("{what}: the body is larger than {limit} bytes"),
        )),
        Ok(Err(e)) => Err(Failure::new(Reason::Protocol, format_args!("{what}: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The event-stream format (WHATWG): lines ended by CRLF, LF or CR; `data` fields
/// gathered until a blank line dispatches them; comments, other fields and events with no
/// data ignored. Fed bytes as they come; each byte is looked at once, however the stream is
/// cut.
#[derive(Debug, Default)]
pub(crate) struct EventParser {
    buffer: Vec<u8>,
    /// Bytes at the start of `buffer` already taken as lines.
    consumed: usize,
    /// Bytes from `consumed` on already searched for a line end without one.
    scanned: usize,
    data: String,
    limit: usize,
}

/// An event (or a line) larger than the limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLarge;

impl EventParser {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The data of the next complete event in what was fed, if any; `ended` when no more
    /// will come (a last CR is then a line end, and an event not ended by a blank line is
    /// discarded, as the format says).
    pub(crate) fn next_event(&mut self, ended: bool) -> Result<Option<String>, TooLarge> {
        loop {
            let from = self.consumed + self.scanned;
            let Some(offset) = self.buffer[from..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
            else {
                self.scanned = self.buffer.len() - self.consumed;
                if self.scanned > self.limit {
                    return Err(TooLarge);
                }
                if ended {
                    self.data.clear();
                }
                return Ok(None);
            };
            let at = from + offset;
            let width = match (self.buffer[at], self.buffer.get(at + 1)) {
                (b'\r', Some(b'\n')) => 2,
                // A CR that may be the first half of a CRLF: wait for the next byte.
                (b'\r', None) if !ended => {
                    self.scanned = at - self.consumed;
                    return Ok(None);
                }
                _ => 1,
            };
            let line = &self.buffer[self.consumed..at];
            self.consumed = at + width;
            self.scanned = 0;
            if line.is_empty() {
                // An event whose data is empty (a priming event: `data:` with an `id` and
                // a `retry`) is not dispatched.
                let mut data = std::mem::take(&mut self.data);
                data.pop();
                if !data.is_empty() {
                    return Ok(Some(data));
                }
                continue;
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &b""[..]),
            };
            if field == b"data" {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
                if self.data.len() > self.limit {
                    return Err(TooLarge);
                }
            }
        }
    }
}

/// A `text/event-stream` body read event by event.
#[derive(Debug)]
pub(crate) struct EventStream {
    body: Incoming,
    parser: EventParser,
    limit: usize,
    ended: bool,
}

impl EventStream {
    /// Reads `body`, holding at most `limit` bytes of one event.
    pub(crate) fn new(body: Incoming, limit: usize) -> Self {
        Self {
            body,
            parser: EventParser::new(limit),
            limit,
            ended: false,
        }
    }

    /// The data of the next event, or `None` when the stream ends.
    pub(crate) async fn next_event(
        &mut self,
        deadline: Instant,
        what: &str,
    ) -> Result<Option<String>, Failure> {
        loop {
            match self.parser.next_event(self.ended) {
                Err(TooLarge) => return Err(self.too_large(what)),
                Ok(Some(data)) => return Ok(Some(data)),
                Ok(None) if self.ended => return Ok(None),
                Ok(None) => {}
            }
            match timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Err(Failure::timeout(what)),
                Ok(None) => self.ended = true,
                Ok(Some(Err(e))) => {
                    return Err(Failure::new(Reason::Protocol, format_args!("{what}: {e}")));
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.parser.feed(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }

    /// Reads the rest of the stream by `deadline`, so that the connection can carry the
    /// next request; returns whether the stream ended.
    pub(crate) async fn finish(&mut self, deadline: Instant) -> bool {
        while !self.ended {
            match timeout_at(deadline, self.body.frame()).await {
                Ok(None) => self.ended = true,
                Ok(Some(Ok(_))) => {}
                Err(_) | Ok(Some(Err(_))) => return false,
            }
        }
        true
    }

    fn too_large(&self, what: &str) -> Failure {
        Failure::new(
            Reason::Protocol,
            format_args!("{what}: an event is larger than {} bytes", self.limit),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `stream` fed in pieces of `step` bytes.
    fn events(stream: &[u8], step: usize) -> Vec<String> {
        let mut parser = EventParser::new(16 << 20);
        let mut out = Vec::new();
        for piece in stream.chunks(step) {
            parser.feed(piece);
            while let Some(event) = parser.next_event(false).expect("event") {
                out.push(event);
            }
        }
        while let Some(event) = parser.next_event(true).expect("event") {
            out.push(event);
        }
        out
    }

    #[test]
    fn every_framing_gives_the_same_events() {
        let expected = vec!["{\"a\":1}".to_owned(), "line one\nline two".to_owned()];
        for stream in [
            // Python: named events.
            &b"event: message\ndata: {\"a\":1}\n\nevent: message\ndata: line one\ndata: line two\n\n"[..],
            // rmcp: a priming event first, bare data.
            b"data: \nid: 0\nretry: 3000\n\ndata: {\"a\":1}\n\ndata: line one\ndata: line two\n\n",
            // CRLF, comments (keep-alives), no space after the colon.
            b": ping\r\n\r\ndata:{\"a\":1}\r\n\r\n: ping\r\ndata: line one\r\ndata: line two\r\n\r\n",
            // CR alone.
            b"data: {\"a\":1}\r\rdata: line one\rdata: line two\r\r",
        ] {
            for step in [1, 2, 3, 7, stream.len()] {
                assert_eq!(
                    events(stream, step),
                    expected,
                    "{:?} in steps of {step}",
                    String::from_utf8_lossy(stream)
                );
            }
        }
        // An event not ended by a blank line is discarded.
        assert_eq!(events(b"data: {}\n\ndata: cut", 4), vec!["{}".to_owned()]);
        // A last CR at the end of the stream ends its line.
        assert_eq!(events(b"data: x\r\r", 100), vec!["x".to_owned()]);
    }

    #[test]
    fn a_large_event_is_read_in_linear_time_and_bounded() {
        // 8 MB of one line in 1 KiB pieces: each byte looked at once (a quadratic scan would
        // look at 32 billion).
        let mut stream = b"data: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 8 << 20));
        stream.extend_from_slice(b"\n\n");
        let got = events(&stream, 1024);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), 8 << 20);
        let mut parser = EventParser::new(1024);
        parser.feed(&[b'x'; 2048]);
        assert_eq!(parser.next_event(false), Err(TooLarge));
        let mut parser = EventParser::new(1024);
        parser.feed(b"data: ");
        parser.feed(&[b'y'; 600]);
        parser.feed(b"\ndata: ");
        parser.feed(&[b'y'; 600]);
        parser.feed(b"\n");
        assert_eq!(parser.next_event(false), Err(TooLarge));
    }
}
