//! A web server of plain pages, as the admin UIs and gateways of the operations guides
//! serve them (`curl -f http://localhost:3000`): HTML, redirects, error statuses, large
//! bodies and pages that never answer, plain or TLS. It records the head of every request,
//! so that a test can tell which headers reached it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How long a hanging page hangs: longer than any check of the tests, bounded so that
/// nothing outlives a test by much.
const HANG: Duration = Duration::from_secs(30);

/// What one path answers.
#[derive(Debug, Clone)]
pub struct Page {
    /// The status.
    pub status: u16,
    /// Further response headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Wait before answering.
    pub delay: Duration,
    /// Never answer (the connection is held open).
    pub hang: bool,
    /// Send the body as one chunk of a chunked body that never ends (an event stream):
    /// the connection is then held open.
    pub endless: bool,
}

impl Page {
    /// A page answering `status` with an HTML `body`.
    pub fn html(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            hang: false,
            endless: false,
        }
    }

    /// A 302 to `location`.
    pub fn redirect(location: &str) -> Self {
        Self {
            headers: vec![("location".into(), location.into())],
            ..Self::html(302, "")
        }
    }

    /// A page of `bytes` bytes of `x`.
    pub fn large(bytes: usize) -> Self {
        Self {
            body: vec![b'x'; bytes],
            ..Self::html(200, "")
        }
    }

    /// A page that accepts the request and never answers.
    pub fn hanging() -> Self {
        Self {
            hang: true,
            ..Self::html(200, "")
        }
    }

    /// A 200 event stream that sends `first` and never ends.
    pub fn endless(first: &str) -> Self {
        Self {
            headers: vec![("content-type".into(), "text/event-stream".into())],
            endless: true,
            ..Self::html(200, first)
        }
    }

    /// This page, answered after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }
}

type Routes = Arc<Vec<(String, Page)>>;

/// A running server on a free loopback port; it stops accepting when dropped.
#[derive(Debug)]
pub struct PageServer {
    address: SocketAddr,
    tls: bool,
    heads: Arc<Mutex<Vec<String>>>,
    accept: JoinHandle<()>,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl PageServer {
    /// Serves `routes` (path with query, page) over plain HTTP; other paths answer 404.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(routes: Vec<(&str, Page)>) -> Self {
        Self::launch(routes, None).await
    }

    /// Serves `routes` over TLS only, with this certificate and key (PEM).
    ///
    /// # Panics
    /// When the certificate or key does not parse, or no port can be bound.
    pub async fn start_tls(routes: Vec<(&str, Page)>, cert: &str, key: &str) -> Self {
        Self::launch(routes, Some(crate::tls::acceptor(cert, key))).await
    }

    async fn launch(routes: Vec<(&str, Page)>, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let routes: Routes = Arc::new(
            routes
                .into_iter()
                .map(|(path, page)| (path.to_owned(), page))
                .collect(),
        );
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (record, secure) = (heads.clone(), tls.is_some());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (routes, record, tls) = (routes.clone(), record.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(tcp, &routes, &record).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, &routes, &record).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            address,
            tls: secure,
            heads,
            accept,
        }
    }

    /// The server's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:<port><path>`, or `https://` with TLS.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.address)
    }

    /// The heads of the requests received so far (request line and headers).
    pub fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The heads of the requests for `path`.
    pub fn heads_for(&self, path: &str) -> Vec<String> {
        let line = format!(" {path} HTTP/");
        self.heads()
            .into_iter()
            .filter(|h| h.lines().next().is_some_and(|l| l.contains(&line)))
            .collect()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    routes: &Routes,
    heads: &Mutex<Vec<String>>,
) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let head_only = head.starts_with("HEAD ");
    heads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(head);
    let page = routes.iter().find(|(p, _)| *p == path).map_or_else(
        || Page::html(404, "<h1>Not Found</h1>"),
        |(_, page)| page.clone(),
    );
    if page.hang {
        tokio::time::sleep(HANG).await;
        return;
    }
    tokio::time::sleep(page.delay).await;
    let length = if page.endless {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {}", page.body.len())
    };
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\n{length}\r\nconnection: close\r\n",
        page.status,
        if page.status < 400 { "OK" } else { "Error" },
    );
    for (name, value) in &page.headers {
        answer.push_str(&format!("{name}: {value}\r\n"));
    }
    answer.push_str("\r\n");
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    if page.endless {
        let chunk = [
            format!("{:x}\r\n", page.body.len()).as_bytes(),
            &page.body,
            b"\r\n",
        ]
        .concat();
        if !head_only && stream.write_all(&chunk).await.is_ok() {
            // Held open until the client closes it, or for as long as a hanging page.
            let mut rest = [0u8; 256];
            let _ = tokio::time::timeout(HANG, async {
                while !matches!(stream.read(&mut rest).await, Ok(0) | Err(_)) {}
            })
            .await;
        }
        return;
    }
    if !head_only {
        // A client that stops reading closes the connection: the rest is not sent.
        for piece in page.body.chunks(64 * 1024) {
            if stream.write_all(piece).await.is_err() {
                return;
            }
        }
    }
    let _ = stream.shutdown().await;
}
