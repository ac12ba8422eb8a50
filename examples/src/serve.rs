//! The programs' one HTTP server: hyper's HTTP/1 server on tokio, with the bounds a scrape
//! endpoint exposed to a network needs. Chosen over a hand-written loop because it already
//! serves connections concurrently, parses requests strictly, and has per-request header read
//! timeouts; this module adds only the policy around it.
//!
//! - Connections are served concurrently, at most [`ServeLimits::max_connections`] at once; past
//!   that a new connection is closed at once (never queued behind slow ones).
//! - A request head must arrive within [`ServeLimits::header_timeout`], and a connection lives
//!   at most [`ServeLimits::connection_lifetime`] (a client that never reads its response
//!   cannot hold it).
//! - A request head is at most [`ServeLimits::max_head_bytes`]; bodies are never read.
//! - Graceful shutdown: no new connections, requests in flight finish within
//!   [`ServeLimits::shutdown_grace`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once (default 4,096).
    pub max_connections: usize,
    /// Time for a request head to arrive, including a keep-alive connection's wait for its next
    /// request (default 5 s).
    pub header_timeout: Duration,
    /// Longest life of a connection (default 60 s).
    pub connection_lifetime: Duration,
    /// Largest request head (default 16 KiB; hyper's minimum buffer is 8 KiB).
    pub max_head_bytes: usize,
    /// Time requests in flight get to finish at shutdown (default 2 s).
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
            max_head_bytes: 16 << 10,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Answers a request from its head (bodies are not read).
pub type Handler = Arc<dyn Fn(&Parts) -> Response<Full<Bytes>> + Send + Sync>;

/// A plain-text response.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// A handler serving `GET`/`HEAD` `path` with `render` (given the request, returning the
/// content type and body), `405` for other methods there, `404` elsewhere.
pub fn get_only(
    path: &'static str,
    render: impl Fn(&Parts) -> (&'static str, String) + Send + Sync + 'static,
) -> Handler {
    Arc::new(move |request: &Parts| {
        if request.uri.path() != path {
            return text(StatusCode::NOT_FOUND, "text/plain", "not found\n");
        }
        if request.method != Method::GET && request.method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
            response.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            return response;
        }
        let (content_type, body) = render(request);
        text(StatusCode::OK, content_type, body)
    })
}

/// Serves `listener` until `shutdown` turns true (or its sender is dropped).
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        // Finished connections' results, so the set does not grow.
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = accepted else {
            // Out of descriptors or a connection reset before accept: keep serving.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Over the bound: closed now, so slow clients cannot queue others out.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_connection(stream, handler, limits, shutdown).await;
            drop(slot);
        });
    }
    // Requests in flight get the grace period; the rest are dropped with the set.
    let _ = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    handler: Handler,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (parts, _body) = request.into_parts();
        let response = handler(&parts);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let lifetime = tokio::time::sleep(limits.connection_lifetime);
    tokio::pin!(lifetime);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = &mut lifetime => {}
        () = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, connection).await;
        }
    }
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across the caller's awaits.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
