//! [`McpHttpLayer`]: a tower layer around rmcp's Streamable HTTP service. It counts what
//! only the transport sees: HTTP requests in flight and event streams open, and the MCP
//! requests refused before they reach the handler (a missing or mismatched `Mcp-Method`,
//! an unsupported `MCP-Protocol-Version`, a method the transport does not dispatch), from
//! the refusal's status and JSON-RPC error code. Requests the handler answered are counted
//! by [`crate::Metered`] and never twice: the handler marks the request it answered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::semconv::{self, Outcome};
use crate::table::{Key, OperationTable};

/// The bytes of a refusal's body read for its error code, at most.
const REFUSAL_BYTES: usize = 16 * 1024;

/// HTTP-side gauges.
#[derive(Debug, Default)]
pub(crate) struct HttpGauges {
    pub(crate) requests: AtomicI64,
    pub(crate) streams: AtomicI64,
}

/// Set by the handler on the HTTP request it answered (through the request parts rmcp
/// hands it), so that the layer does not count it as a refusal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answered(Arc<AtomicBool>);

impl Answered {
    /// Marks the HTTP request behind a handler's context, when there is one.
    pub(crate) fn mark(extensions: &rmcp::model::Extensions) {
        if let Some(answered) = extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Answered>())
        {
            answered.0.store(true, Ordering::Relaxed);
        }
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The layer; see the module. Made by [`crate::McpMetrics::layer`].
#[derive(Debug, Clone)]
pub struct McpHttpLayer {
    pub(crate) table: Arc<OperationTable>,
    pub(crate) gauges: Arc<HttpGauges>,
}

impl<S> tower_layer::Layer<S> for McpHttpLayer {
    type Service = McpHttpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpHttpService {
            inner,
            table: self.table.clone(),
            gauges: self.gauges.clone(),
        }
    }
}

/// The service [`McpHttpLayer`] makes.
#[derive(Debug, Clone)]
pub struct McpHttpService<S> {
    inner: S,
    table: Arc<OperationTable>,
    gauges: Arc<HttpGauges>,
}

/// What a refusal is counted under, from the request's own headers (a 2026-07-28
/// request names its method, tool and revision there; a legacy one's method is `_OTHER`).
#[derive(Debug)]
struct Pending {
    key: Key,
    started: Instant,
    answered: Answered,
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

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        self.gauges.requests.fetch_add(1, Ordering::Relaxed);
        let guard = Guard {
            gauges: self.gauges.clone(),
            stream: false,
        };
        let pending = (request.method() == Method::POST).then(|| {
            let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
            let method = header("mcp-method").unwrap_or(semconv::OTHER);
            let key = self
                .table
                .key(method, header("mcp-name"), header("mcp-protocol-version"));
            Pending {
                key,
                started: Instant::now(),
                answered: Answered::default(),
            }
        });
        if let Some(p) = &pending {
            request.extensions_mut().insert(p.answered.clone());
        }
        ResponseFuture {
            inner: self.inner.call(request),
            state: Some((guard, pending, self.table.clone())),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`McpHttpService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<(Guard, Option<Pending>, Arc<OperationTable>)>,
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
        let Some((mut guard, pending, table)) = this.state.take() else {
            // Polled again after its answer: nothing left to count.
            return Poll::Pending;
        };
        Poll::Ready(response.map(|response| {
            let (parts, body) = response.into_parts();
            let events = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if events {
                guard.gauges.streams.fetch_add(1, Ordering::Relaxed);
                guard.stream = true;
            }
            let refusal = pending
                .filter(|_| parts.status.is_client_error() || parts.status.is_server_error())
                .map(|pending| Refusal {
                    pending,
                    status: parts.status,
                    body: BytesMut::new(),
                    table,
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
    gauges: Arc<HttpGauges>,
    stream: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.gauges.requests.fetch_sub(1, Ordering::Relaxed);
        if self.stream {
            self.gauges.streams.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A refused request, counted once its body (holding the JSON-RPC error) has been read.
#[derive(Debug)]
struct Refusal {
    pending: Pending,
    status: StatusCode,
    body: BytesMut,
    table: Arc<OperationTable>,
}

impl Refusal {
    fn record(self) {
        if self.pending.answered.is_set() {
            return;
        }
        let code = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(serde_json::Value::as_i64));
        let outcome = code.map_or(Outcome::Other, Outcome::Code);
        tracing::debug!(status = %self.status, ?code, "MCP request refused before dispatch.");
        self.table
            .observe(self.pending.key, outcome, self.pending.started.elapsed());
    }
}

/// The response body, passed through unchanged.
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    guard: Option<Guard>,
    refusal: Option<Refusal>,
}

impl<B> Tracked<B> {
    fn end(&mut self) {
        self.guard = None;
        if let Some(refusal) = self.refusal.take() {
            refusal.record();
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
