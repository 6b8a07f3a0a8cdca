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

/// A `text/event-stream` body read event by event (the WHATWG event-stream format).
#[derive(Debug)]
pub(crate) struct EventStream {
    body: Incoming,
    buffer: Vec<u8>,
    data: String,
    limit: usize,
    ended: bool,
}

impl EventStream {
    /// Reads `body`, holding at most `limit` bytes of one event.
    pub(crate) fn new(body: Incoming, limit: usize) -> Self {
        Self {
            body,
            buffer: Vec::new(),
            data: String::new(),
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
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    // An event whose data is empty (a priming event: `data:` with an `id`
                    // and a `retry`) is not dispatched, as the format says.
                    let mut data = std::mem::take(&mut self.data);
                    data.pop();
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                    continue;
                }
                let line = String::from_utf8_lossy(line);
                let (field, value) = match line.split_once(':') {
                    Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                    None => (line.as_ref(), ""),
                };
                if field == "data" {
                    self.data.push_str(value);
                    self.data.push('\n');
                    if self.data.len() > self.limit {
                        return Err(self.too_large(what));
                    }
                }
            }
            if self.buffer.len() > self.limit {
                return Err(self.too_large(what));
            }
            if self.ended {
                return Ok(None);
            }
            match timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Err(Failure::timeout(what)),
                Ok(None) => {
                    // An event not ended by a blank line is discarded, as the format says.
                    self.ended = true;
                    self.buffer.clear();
                    self.data.clear();
                }
                Ok(Some(Err(e))) => {
                    return Err(Failure::new(Reason::Protocol, format_args!("{what}: {e}")));
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buffer.extend_from_slice(chunk);
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
