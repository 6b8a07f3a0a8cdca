//! [`McpHttpLayer`]: a tower layer around rmcp's Streamable HTTP service. It counts what
//! only the transport sees: HTTP requests in flight and event streams open, and the MCP
//! requests refused before they reach the handler (a missing or mismatched `Mcp-Method`,
//! an unsupported `MCP-Protocol-Version`, a method the transport does not dispatch), from
//! the refusal's status and JSON-RPC error code. On 2026-07-28 requests rmcp gives some
//! errors a status of their own (404 for -32601, 400 for -32020, -32021, -32022), the
//! handler's too: once the layer is made, [`crate::Metered`] leaves those to it, so that
//! each request is counted once, and no request carries anything extra for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::Shared;
use crate::semconv::Outcome;
use crate::stripes;
use crate::table::{Key, OperationTable};

/// The bytes of a refusal's body read for its error code, at most.
const REFUSAL_BYTES: usize = 16 * 1024;

/// HTTP-side gauges.
#[derive(Debug, Default)]
pub(crate) struct HttpGauges {
    pub(crate) requests: stripes::Gauge,
    pub(crate) streams: stripes::Gauge,
}

/// The layer; see the module. Made by [`crate::McpMetrics::layer`].
#[derive(Debug, Clone)]
pub struct McpHttpLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> tower_layer::Layer<S> for McpHttpLayer {
    type Service = McpHttpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpHttpService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`McpHttpLayer`] makes.
#[derive(Debug, Clone)]
pub struct McpHttpService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What a refusal is counted under: the request's own headers (a 2026-07-28 request names
/// its method, tool and revision there; a legacy one's method is `_OTHER`), read into a
/// key when the request comes (twelve bytes, where the three header values would be 120
/// moved with every response future), and when it came.
#[derive(Debug)]
struct Pending {
    key: Key,
    started: Instant,
}

impl Pending {
    /// One pass over the request's headers, the first value of each kept: three lookups
    /// by name would hash each name against the map.
    fn of<B>(request: &Request<B>, table: &OperationTable) -> Self {
        let (mut method, mut name, mut version) = (None, None, None);
        for (header, value) in request.headers() {
            // Most headers are told apart by their first four bytes.
            let Some(rest) = header.as_str().strip_prefix("mcp-") else {
                continue;
            };
            let slot = match rest {
                "method" => &mut method,
                "name" => &mut name,
                "protocol-version" => &mut version,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        fn bytes(value: Option<&HeaderValue>) -> Option<&[u8]> {
            value.map(HeaderValue::as_bytes)
        }
        Self {
            key: table.key_of_bytes(bytes(method), bytes(name), bytes(version)),
            started: Instant::now(),
        }
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for McpHttpService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes> + Unpin,
{
    type Response = Response<Tracked<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let stripe = self.shared.gauges.requests.add(1);
        let guard = Guard {
            shared: self.shared.clone(),
            stripe,
            stream: false,
        };
        let pending =
            (request.method() == Method::POST).then(|| Pending::of(&request, &self.shared.table));
        ResponseFuture {
            inner: self.inner.call(request),
            state: Some((guard, pending)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`McpHttpService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<(Guard, Option<Pending>)>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes> + Unpin,
{
    type Output = Result<Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let Some((mut guard, pending)) = this.state.take() else {
            // Polled again after its answer: nothing left to count.
            return Poll::Pending;
        };
        Poll::Ready(response.map(|response| {
            let (parts, body) = response.into_parts();
            // A response has few headers: going through them costs less than hashing a
            // name to look one up.
            let events = parts.headers.iter().any(|(name, value)| {
                name == http::header::CONTENT_TYPE
                    && value.as_bytes().starts_with(b"text/event-stream")
            });
            if events {
                guard.shared.gauges.streams.add_at(guard.stripe, 1);
                guard.stream = true;
            }
            let refusal = pending
                .filter(|_| parts.status.is_client_error() || parts.status.is_server_error())
                .map(|pending| {
                    Box::new(Refusal {
                        pending,
                        status: parts.status,
                        body: BytesMut::new(),
                    })
                });
            Response::from_parts(
                parts,
                Tracked {
                    inner: body,
                    guard: Some(guard),
                    refusal,
                },
            )
        }))
    }
}

/// Counts the request (and its event stream) out when the response body ends or is
/// dropped.
#[derive(Debug)]
struct Guard {
    shared: Arc<Shared>,
    /// The stripe the request was counted in, and is counted out of.
    stripe: usize,
    stream: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let gauges = &self.shared.gauges;
        gauges.requests.add_at(self.stripe, -1);
        if self.stream {
            gauges.streams.add_at(self.stripe, -1);
        }
    }
}

/// A refused request, counted once its body (holding the JSON-RPC error) has been read.
#[derive(Debug)]
struct Refusal {
    pending: Pending,
    status: StatusCode,
    body: BytesMut,
}

impl Refusal {
    fn record(self, table: &OperationTable) {
        let code = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(serde_json::Value::as_i64));
        let outcome = code.map_or(Outcome::Other, Outcome::Code);
        tracing::debug!(status = %self.status, ?code, "MCP request refused before dispatch.");
        table.observe(self.pending.key, outcome, self.pending.started.elapsed());
    }
}

/// The response body, passed through unchanged.
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    guard: Option<Guard>,
    /// Only with a guard: the refusal is counted in the metrics the guard holds. Boxed:
    /// rare, and every response's body is moved a few times on its way out.
    refusal: Option<Box<Refusal>>,
}

impl<B> Tracked<B> {
    fn end(&mut self) {
        if let Some(guard) = self.guard.take()
            && let Some(refusal) = self.refusal.take()
        {
            refusal.record(&guard.shared.table);
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.end();
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(refusal), Some(data)) = (self.refusal.as_mut(), frame.data_ref()) {
                    let room = REFUSAL_BYTES.saturating_sub(refusal.body.len());
                    refusal
                        .body
                        .extend_from_slice(&data[..data.len().min(room)]);
                }
                if self.inner.is_end_stream() {
                    self.end();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.end(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
