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
//! - A request head is at most [`ServeLimits::max_head_bytes`]; a body at most
//!   [`ServeLimits::max_body_bytes`] (`413` past it), read within [`ServeLimits::body_timeout`]
//!   (`408` past it), and only for methods a handler accepts bodies for.
//! - Graceful shutdown: no new connections, requests in flight finish within
//!   [`ServeLimits::shutdown_grace`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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
    /// Largest request body (default 1 MiB).
    pub max_body_bytes: usize,
    /// Time for a whole request body to arrive (default 10 s).
    pub body_timeout: Duration,
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
            max_body_bytes: 1 << 20,
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// A response, built when its request (head and whole body) has arrived.
pub type Reply = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// Answers requests. `wants_body` says, from the head, whether the body is read (bounded by
/// [`ServeLimits`]) and handed to `respond`; otherwise `respond` gets an empty body.
pub trait Handler: Send + Sync + 'static {
    /// Whether to read this request's body.
    fn wants_body(&self, head: &Parts) -> bool;
    /// The response to a request.
    fn respond(&self, head: Parts, body: Bytes) -> Reply;
}

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

/// `405` with the methods allowed.
pub fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        format!("{allow} only\n"),
    );
    response.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static(allow),
    );
    response
}

/// Serves `GET`/`HEAD` `path` with a synchronous `render` (given the head, returning the content
/// type and body), `405` for other methods there, `404` elsewhere; never reads a body.
#[derive(Debug)]
pub struct GetOnly<F> {
    path: &'static str,
    render: Arc<F>,
}

/// A [`GetOnly`] handler.
pub fn get_only<F>(path: &'static str, render: F) -> Arc<GetOnly<F>>
where
    F: Fn(&Parts) -> (&'static str, String) + Send + Sync + 'static,
{
    Arc::new(GetOnly {
        path,
        render: Arc::new(render),
    })
}

impl<F> Handler for GetOnly<F>
where
    F: Fn(&Parts) -> (&'static str, String) + Send + Sync + 'static,
{
    fn wants_body(&self, _: &Parts) -> bool {
        false
    }

    fn respond(&self, head: Parts, _: Bytes) -> Reply {
        let response = if head.uri.path() != self.path {
            text(StatusCode::NOT_FOUND, "text/plain", "not found\n")
        } else if head.method != Method::GET && head.method != Method::HEAD {
            method_not_allowed("GET, HEAD")
        } else {
            let (content_type, body) = (self.render)(&head);
            text(StatusCode::OK, content_type, body)
        };
        Box::pin(std::future::ready(response))
    }
}

/// Raises this process's soft limit on open descriptors so `limits.max_connections` fit, with
/// room for the rest of the program (1,024), up to the hard limit; returns the new soft limit.
/// Many systems default to a soft limit of 1,024, under which a few hundred idle connections
/// would leave no descriptor to accept a scrape with.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_descriptor_limit(limits: &ServeLimits) -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(limits.max_connections as u64 + 1024)
}

/// Serves `listener` until `shutdown` turns true (or its sender is dropped).
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
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
    handler: Arc<dyn Handler>,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let handler = Arc::clone(&handler);
        async move {
            let (head, body) = request.into_parts();
            let response = if handler.wants_body(&head) {
                match read_body(body, &limits).await {
                    Ok(body) => handler.respond(head, body).await,
                    Err(refused) => refused,
                }
            } else {
                handler.respond(head, Bytes::new()).await
            };
            Ok::<_, Infallible>(response)
        }
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

/// A request body, whole, within the limits; else the response refusing it.
async fn read_body(body: Incoming, limits: &ServeLimits) -> Result<Bytes, Response<Full<Bytes>>> {
    let limited = http_body_util::Limited::new(body, limits.max_body_bytes);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "text/plain",
            "request body too slow\n",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            format!("request body over {} bytes\n", limits.max_body_bytes),
        )),
        Ok(Err(_)) => Err(text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "request body unreadable\n",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
