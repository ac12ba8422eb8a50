//! `mxproxy`: Istio's TCP peer-metadata exchange inside a real mutual-TLS proxy.
//!
//! One process is the sidecar of one workload, on one side of a connection:
//! * [`Role::Client`] (outbound): accepts the application's plain TCP, dials the upstream with
//!   mutual TLS offering `istio-peer-exchange`, reports as `reporter="source"`.
//! * [`Role::Server`] (inbound): accepts mutual TLS from a client proxy, dials the application in
//!   plain TCP, reports as `reporter="destination"`.
//!
//! On the TLS side a [`peerx::Exchange`] decides what is written first (our frame) and which of
//! the peer's bytes the application sees (everything after its frame, handed back as ranges of
//! the read buffer). The peer's metadata and certificate identity label the `istio_tcp_*`
//! counters ([`telemetry`]), served on `/metrics` by the programs' one HTTP server
//! ([`crate::serve`]).

pub mod certs;
mod conn;
pub mod telemetry;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peerx::{ErrorKind, Limits, Metadata, Status, encode_frame_with_limits, parse_frame};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::exposition::Format;
use crate::serve::{ServeLimits, get_only, serve};
use telemetry::{MAX_LABEL_VALUE_BYTES, Metrics, WorkloadLabels};
use tls::TlsMaterial;

/// Which side of the connection this proxy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Outbound: plain from the application, TLS to the upstream proxy.
    Client,
    /// Inbound: TLS from the downstream proxy, plain to the application.
    Server,
}

/// Everything one proxy needs.
#[derive(Debug)]
pub struct ProxyConfig {
    /// Where to accept connections (port 0 picks one; see [`Running::listen`]).
    pub listen: SocketAddr,
    /// `host:port` to dial for each accepted connection; the host is also the TLS server name.
    pub upstream: String,
    /// Client (outbound) or server (inbound).
    pub role: Role,
    /// Our workload metadata, sent in our frame.
    pub metadata: Metadata,
    /// Mutual TLS material; without it the TLS side is plain TCP, no ALPN is negotiated and the
    /// exchange never runs (as Istio without mTLS).
    pub tls: Option<TlsMaterial>,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How often long-lived connections report their bytes (Istio's `tcp_reporting_duration`).
    pub reporting_interval: Duration,
    /// How long to wait for the peer's frame before carrying on without its metadata.
    pub exchange_timeout: Duration,
    /// How long a TLS handshake or an upstream dial may take.
    pub connect_timeout: Duration,
    /// SPIFFE identities the peer's certificate must carry (any one of them); empty accepts any
    /// certificate of the mesh CA. On the client role this is the destination's identity, which
    /// Istio checks instead of a host name; on the server role, the clients allowed in.
    pub peer_identities: Vec<String>,
    /// Most distinct label sets a peer's metadata may create (default 10,000). Label values come
    /// from the peer, so without a cap a peer naming a new workload on every connection would grow
    /// the metrics without bound; past it, its connections are reported as from an unknown peer.
    pub max_label_sets: usize,
    /// Longest label value taken from metadata or a certificate (default 253 bytes, the longest
    /// Kubernetes name); longer ones are cut, and counted in `mxproxy_label_values_cut_total`.
    pub max_label_value_bytes: usize,
    /// A connection that moves no byte either way for this long is closed and counted in
    /// `mxproxy_idle_timeouts_total` (default 1 hour, Envoy's TCP proxy default; `None` never).
    pub idle_timeout: Option<Duration>,
    /// Most proxied connections open at once (default 10,000); past it a new connection is
    /// closed at once and counted in `mxproxy_connections_refused_total`. Each takes two
    /// descriptors.
    pub max_connections: usize,
    /// Bounds of the `/metrics` server.
    pub serve_limits: ServeLimits,
}

impl ProxyConfig {
    /// Defaults: Istio's 5 s reporting interval, a 5 s exchange timeout, 10 s to connect, a 1 hour
    /// idle timeout.
    pub fn new(listen: SocketAddr, upstream: String, role: Role, metadata: Metadata) -> Self {
        Self {
            listen,
            upstream,
            role,
            metadata,
            tls: None,
            metrics: None,
            reporting_interval: Duration::from_secs(5),
            exchange_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            peer_identities: Vec::new(),
            max_label_sets: 10_000,
            max_label_value_bytes: MAX_LABEL_VALUE_BYTES,
            idle_timeout: Some(Duration::from_secs(3600)),
            max_connections: 10_000,
            serve_limits: ServeLimits::default(),
        }
    }
}

/// A proxy accepting connections on the current tokio runtime, until it is stopped or dropped.
#[derive(Debug)]
pub struct Running {
    /// The bound listening address.
    pub listen: SocketAddr,
    /// The bound `/metrics` address.
    pub metrics_addr: Option<SocketAddr>,
    /// The counters, also readable in-process.
    pub metrics: Arc<Metrics>,
    accepting: JoinHandle<()>,
    metrics_server: Option<JoinHandle<()>>,
    stop_serving: watch::Sender<bool>,
}

impl Running {
    /// Stops accepting proxied connections (those in flight go on until they end) and tells the
    /// `/metrics` server to stop.
    pub fn stop(&self) {
        self.accepting.abort();
        let _ = self.stop_serving.send(true);
    }

    /// [`Running::stop`], then waits for the `/metrics` server to finish the scrapes in flight
    /// (within its shutdown grace).
    pub async fn shut_down(mut self) {
        self.stop();
        if let Some(server) = self.metrics_server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What every connection of one proxy shares.
#[derive(Debug)]
struct Shared {
    role: Role,
    upstream: String,
    tls: Option<TlsSide>,
    /// Our frame, encoded once.
    frame: Bytes,
    own: WorkloadLabels,
    metrics: Arc<Metrics>,
    reporting_interval: Duration,
    exchange_timeout: Duration,
    connect_timeout: Duration,
    idle_timeout: Option<Duration>,
    peer_identities: Vec<String>,
    /// The origin of the exchange's timestamps.
    epoch: Instant,
}

enum TlsSide {
    Acceptor(TlsAcceptor),
    Connector(TlsConnector, ServerName<'static>),
}

impl std::fmt::Debug for TlsSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Acceptor(_) => "TlsSide::Acceptor",
            Self::Connector(..) => "TlsSide::Connector",
        })
    }
}

/// Our frame, refused when our peers could not read it: they decode with the default
/// [`Limits`], as we do, and a frame past them would make every connection fail.
///
/// # Errors
/// A message naming the limit the metadata passes.
pub fn our_frame(metadata: &Metadata) -> Result<Vec<u8>, String> {
    let limits = Limits::default();
    let mut frame = Vec::new();
    encode_frame_with_limits(metadata, &limits, &mut frame).map_err(|e| match e.kind() {
        ErrorKind::PayloadTooLarge { limit, declared } => format!(
            "the metadata encodes to a {declared}-byte frame payload; peers accept at most {limit}"
        ),
        ErrorKind::TooDeep => format!(
            "the metadata nests structs and lists deeper than peers accept ({} levels, the \
             workload struct included)",
            limits.max_depth
        ),
        _ => format!("cannot encode the metadata: {e}"),
    })?;
    Ok(frame)
}

/// Binds the listener (and the metrics endpoint) and starts accepting on the current runtime.
///
/// # Errors
/// A message when the metadata cannot be encoded within what peers accept ([`our_frame`]), the
/// TLS material is refused or an address cannot be bound.
pub async fn start(config: ProxyConfig) -> Result<Running, String> {
    let frame = our_frame(&config.metadata)?;
    let metrics = Metrics::new(config.max_label_sets, config.max_label_value_bytes);
    let principal = config.tls.as_ref().and_then(TlsMaterial::own_principal);
    let own = own_labels(&frame, principal.as_deref(), &metrics)?;
    let tls = match (&config.tls, config.role) {
        (None, _) => None,
        (Some(material), Role::Server) => Some(TlsSide::Acceptor(TlsAcceptor::from(
            material.server_config()?,
        ))),
        (Some(material), Role::Client) => Some(TlsSide::Connector(
            TlsConnector::from(material.client_config(&tls::CLIENT_ALPN)?),
            server_name(&config.upstream)?,
        )),
    };
    let accepting =
        listener(config.listen).map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let listen = accepting.local_addr().map_err(|e| e.to_string())?;
    let (stop_serving, stopped) = watch::channel(false);
    let mut metrics_addr = None;
    let mut metrics_server = None;
    if let Some(addr) = config.metrics {
        let endpoint =
            listener(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        metrics_addr = Some(endpoint.local_addr().map_err(|e| e.to_string())?);
        let exposition = Arc::clone(&metrics);
        let handler = get_only("/metrics", move |_| {
            // `prometheus-client`'s text encoding is OpenMetrics.
            (Format::OpenMetrics.content_type(), exposition.encode())
        });
        metrics_server = Some(tokio::spawn(serve(
            endpoint,
            handler,
            config.serve_limits,
            stopped,
        )));
    }
    let shared = Arc::new(Shared {
        role: config.role,
        upstream: config.upstream,
        tls,
        frame: Bytes::from(frame),
        own,
        metrics: metrics.clone(),
        reporting_interval: config.reporting_interval,
        exchange_timeout: config.exchange_timeout,
        connect_timeout: config.connect_timeout,
        idle_timeout: config.idle_timeout,
        peer_identities: config.peer_identities,
        epoch: Instant::now(),
    });
    Ok(Running {
        listen,
        metrics_addr,
        metrics,
        accepting: tokio::spawn(accept_loop(accepting, shared, config.max_connections)),
        metrics_server,
        stop_serving,
    })
}

/// A listening socket with a backlog deep enough for a thousand clients connecting at once (the
/// default 1024 overflows into SYN cookies and retransmitted SYNs on a loaded machine).
///
/// # Errors
/// The socket's, when it cannot be bound.
pub fn listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, max_connections: usize) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Over the bound: closed at once, so descriptors stay for the rest.
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    shared.metrics.connection_refused();
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    conn::handle(stream, shared).await;
                    drop(slot);
                });
            }
            // Out of descriptors or a connection reset before accept: back off briefly and go on.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Our own labels, derived from our frame exactly as a peer derives them.
fn own_labels(
    frame: &[u8],
    principal: Option<&str>,
    metrics: &Metrics,
) -> Result<WorkloadLabels, String> {
    match parse_frame(frame, &Limits::default()) {
        Ok(Status::Complete { value, .. }) => {
            Ok(metrics.peer_labels(Some(&value.metadata()), principal))
        }
        other => Err(format!("our own frame does not parse: {other:?}")),
    }
}

/// The TLS server name for `host:port` (an IP address or a DNS name).
fn server_name(upstream: &str) -> Result<ServerName<'static>, String> {
    let host = upstream
        .rsplit_once(':')
        .map_or(upstream, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("upstream host {host:?} is not a TLS server name: {e}"))
}
