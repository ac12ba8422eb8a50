//! One proxied connection: dial or accept the TLS side, run the exchange on it, and move the
//! application's bytes in both directions until both have ended.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use peerx::{Config, Event, Exchange, MalformedPolicy, Timestamp};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use super::telemetry::{
    ConnMeter, Downstream, ResponseFlags, TcpLabels, WorkloadLabels, tcp_labels,
};
use super::tls::spiffe_id;
use super::{Role, Shared, TlsSide};

/// Per direction: the plaintext of the largest TLS record, so one read can take a whole record.
const BUFFER: usize = 16 * 1024;

/// What the TLS handshake told us about the peer.
#[derive(Debug, Default)]
struct Negotiated {
    alpn: Option<Vec<u8>>,
    principal: Option<String>,
}

impl Negotiated {
    fn from_tls(conn: &rustls::CommonState) -> Self {
        Self {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            principal: conn
                .peer_certificates()
                .and_then(<[CertificateDer<'_>]>::first)
                .and_then(spiffe_id),
        }
    }
}

pub(super) async fn handle(accepted: TcpStream, shared: std::sync::Arc<Shared>) {
    match shared.role {
        Role::Client => outbound(accepted, &shared).await,
        Role::Server => inbound(accepted, &shared).await,
    }
}

/// Client role: the accepted socket is the application; the upstream is the TLS side.
async fn outbound(app: TcpStream, shared: &Shared) {
    const POLICY: &str = "unknown";
    let meter = ConnMeter::new(shared.metrics.clone());
    let Some(upstream) = dial(shared).await else {
        return shared.upstream_failed(&meter, None, POLICY);
    };
    match &shared.tls {
        Some(TlsSide::Connector(connector, name)) => {
            let handshake = connector.connect(name.clone(), upstream);
            let Ok(Ok(tls)) = timeout(shared.connect_timeout, handshake).await else {
                shared.metrics.handshake_failed();
                return shared.upstream_failed(&meter, None, POLICY);
            };
            let negotiated = Negotiated::from_tls(tls.get_ref().1);
            if !shared.accepts(&negotiated) {
                // Istio's client refuses a destination without the expected SAN as a TLS error.
                return shared.upstream_failed(&meter, negotiated.principal.as_deref(), POLICY);
            }
            pump(app, tls, negotiated, POLICY, &meter, shared).await;
        }
        _ => pump(app, upstream, Negotiated::default(), POLICY, &meter, shared).await,
    }
}

/// Server role: the accepted socket is the TLS side; the upstream is the application.
async fn inbound(mesh: TcpStream, shared: &Shared) {
    let meter = ConnMeter::new(shared.metrics.clone());
    match &shared.tls {
        Some(TlsSide::Acceptor(acceptor)) => {
            const POLICY: &str = "mutual_tls";
            let Ok(Ok(tls)) = timeout(shared.connect_timeout, acceptor.accept(mesh)).await else {
                // No workload identity, no connection: Istio's filters never see it either.
                shared.metrics.handshake_failed();
                return;
            };
            let negotiated = Negotiated::from_tls(tls.get_ref().1);
            if !shared.accepts(&negotiated) {
                // Not a client we serve: closed before anything is dialed or reported.
                return;
            }
            let Some(app) = dial(shared).await else {
                let principal = negotiated.principal.as_deref();
                return shared.upstream_failed(&meter, principal, POLICY);
            };
            pump(app, tls, negotiated, POLICY, &meter, shared).await;
        }
        _ => {
            const POLICY: &str = "none";
            let Some(app) = dial(shared).await else {
                return shared.upstream_failed(&meter, None, POLICY);
            };
            pump(app, mesh, Negotiated::default(), POLICY, &meter, shared).await;
        }
    }
}

async fn dial(shared: &Shared) -> Option<TcpStream> {
    let stream = timeout(shared.connect_timeout, TcpStream::connect(&shared.upstream))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

impl Shared {
    /// Whether the peer's certificate carries an identity we accept; counts a refusal.
    fn accepts(&self, peer: &Negotiated) -> bool {
        let accepted = self.peer_identities.is_empty()
            || peer
                .principal
                .as_ref()
                .is_some_and(|id| self.peer_identities.contains(id));
        if !accepted {
            self.metrics.identity_rejected();
        }
        accepted
    }

    /// The upstream (or the TLS handshake with it) failed: the connection is reported with
    /// Envoy's `UF` flag and whatever the certificate told of the peer.
    fn upstream_failed(&self, meter: &ConnMeter, principal: Option<&str>, policy: &str) {
        self.metrics.upstream_connect_failed();
        meter.close(|| self.unknown_peer(principal, policy, ResponseFlags::UpstreamConnectFailure));
    }

    /// The labels of a connection of ours with `peer`.
    fn labels(&self, peer: &WorkloadLabels, policy: &str, flags: ResponseFlags) -> TcpLabels {
        tcp_labels(self.role, &self.own, peer, policy, flags)
    }

    fn unknown_peer(
        &self,
        principal: Option<&str>,
        policy: &str,
        flags: ResponseFlags,
    ) -> TcpLabels {
        self.labels(&self.metrics.peer_labels(None, principal), policy, flags)
    }

    fn now(&self) -> Timestamp {
        Timestamp(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The instant `nanos` after the epoch; `None` (never) past what the clock can represent.
    fn instant(&self, nanos: u64) -> Option<Instant> {
        Instant::from_std(self.epoch).checked_add(Duration::from_nanos(nanos))
    }
}

/// The exchange of one connection and what it has reported so far. Locked only between awaits,
/// by the direction reading the TLS side and, at the end, by the connection.
struct PeerSide<'a> {
    shared: &'a Shared,
    meter: &'a ConnMeter,
    negotiated: Negotiated,
    policy: &'static str,
    exchange: Mutex<(Exchange, peerx::Stats)>,
}

impl PeerSide<'_> {
    fn lock(&self) -> MutexGuard<'_, (Exchange, peerx::Stats)> {
        self.exchange.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn feed(&self, bytes: &[u8]) -> io::Result<Range<usize>> {
        let now = self.shared.now();
        self.lock()
            .0
            .feed(now, bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()))
    }

    fn deadline(&self) -> Option<Instant> {
        let at = self.lock().0.poll_timeout()?;
        self.shared.instant(at.0)
    }

    /// Drains the exchange's events: labels the connection once the peer is known (or known to be
    /// unknown) and returns the held bytes the application must see before anything else.
    fn settle(&self) -> io::Result<Vec<Bytes>> {
        let mut guard = self.lock();
        let (exchange, published) = &mut *guard;
        let mut forward = Vec::new();
        let mut result = Ok(());
        while let Some(event) = exchange.poll_event() {
            match event {
                Event::Peer(frame) => self.meter.resolve(|| {
                    let principal = self.negotiated.principal.as_deref();
                    let metadata = frame.metadata();
                    let peer = self.shared.metrics.peer_labels(Some(&metadata), principal);
                    let labels = self.shared.labels(&peer, self.policy, ResponseFlags::None);
                    // The peer chose these values: past the cap they read as an unknown peer.
                    self.shared.metrics.admit(labels, || self.unknown_peer())
                }),
                Event::Forward(held) => forward.push(held),
                Event::Close(reason) => {
                    result = Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("peer exchange failed: {reason:?}"),
                    ));
                }
                // Disabled, NoPeer, and whatever later versions add: no metadata from this peer.
                _ => self.meter.resolve(|| self.unknown_peer()),
            }
        }
        let now = exchange.stats();
        self.shared.metrics.add_exchange(*published, now);
        *published = now;
        result.map(|()| forward)
    }

    fn unknown_peer(&self) -> TcpLabels {
        let principal = self.negotiated.principal.as_deref();
        self.shared
            .unknown_peer(principal, self.policy, ResponseFlags::None)
    }
}

/// Moves bytes both ways: application → TLS side after our frame, TLS side → exchange →
/// application. Either direction failing ends the connection; a clean end of one direction is
/// passed on as a half-close and the other goes on.
async fn pump<M>(
    app: TcpStream,
    mesh: M,
    negotiated: Negotiated,
    policy: &'static str,
    meter: &ConnMeter,
    shared: &Shared,
) where
    M: AsyncRead + AsyncWrite + Unpin,
{
    let timeout_ns = u64::try_from(shared.exchange_timeout.as_nanos()).unwrap_or(u64::MAX);
    // A frame that starts but cannot be used closes the connection: forwarding it (the
    // reference's behaviour) would hand exchange bytes to the application.
    let config = Config::new(shared.frame.clone())
        .timeout_ns(Some(timeout_ns))
        .on_malformed(MalformedPolicy::Close);
    let mut exchange = Exchange::new(config);
    exchange.set_alpn(shared.now(), negotiated.alpn.as_deref());
    let ours = exchange.poll_transmit();
    let side = PeerSide {
        shared,
        meter,
        negotiated,
        policy,
        exchange: Mutex::new((exchange, peerx::Stats::default())),
    };
    let (to_mesh, to_app) = match shared.role {
        Role::Client => (Downstream::Received, Downstream::Sent),
        Role::Server => (Downstream::Sent, Downstream::Received),
    };
    let (mut app_read, mut app_write) = app.into_split();
    let (mut mesh_read, mut mesh_write) = tokio::io::split(mesh);
    // When a byte last arrived from either side, in nanoseconds from the shared epoch.
    let last_read = AtomicU64::new(shared.now().0);
    let moved = || last_read.store(shared.now().0, Ordering::Relaxed);

    let app_to_mesh = async {
        if let Some(frame) = ours {
            mesh_write.write_all(&frame).await?;
            mesh_write.flush().await?;
        }
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = app_read.read(&mut buf).await?;
            let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
                break;
            };
            moved();
            mesh_write.write_all(bytes).await?;
            mesh_write.flush().await?;
            meter.count(to_mesh, n);
        }
        mesh_write.shutdown().await
    };

    let mesh_to_app = async {
        // Disabled (no ALPN, or another one) is known before any byte.
        side.settle()?;
        let mut buf = vec![0u8; BUFFER];
        loop {
            let deadline = side.deadline();
            let read = tokio::select! {
                read = mesh_read.read(&mut buf) => Some(read),
                () = sleep_until(deadline) => None,
            };
            let (app_bytes, end) = match read {
                None => {
                    side.lock().0.handle_timeout(shared.now());
                    (0..0, None)
                }
                Some(Ok(0)) => {
                    side.lock().0.feed_eof(shared.now());
                    (0..0, Some(Ok(())))
                }
                // TCP closed without TLS's close_notify: the stream ended, but uncleanly, so the
                // whole connection ends once what was held is delivered.
                Some(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    side.lock().0.feed_eof(shared.now());
                    (0..0, Some(Err(e)))
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(n)) => {
                    moved();
                    (side.feed(buf.get(..n).unwrap_or_default())?, None)
                }
            };
            for held in side.settle()? {
                app_write.write_all(&held).await?;
                meter.count(to_app, held.len());
            }
            let app_bytes = buf.get(app_bytes).unwrap_or_default();
            if !app_bytes.is_empty() {
                app_write.write_all(app_bytes).await?;
                meter.count(to_app, app_bytes.len());
            }
            match end {
                None => {}
                Some(Ok(())) => break,
                Some(Err(e)) => return Err(e),
            }
        }
        app_write.shutdown().await
    };

    let reporting = async {
        let period = shared.reporting_interval;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            tick.tick().await;
            meter.flush();
        }
    };

    // No byte either way for the idle timeout: the connection is closed (both sockets dropped).
    let idle = async {
        let Some(limit) = shared.idle_timeout else {
            return std::future::pending().await;
        };
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let idle_until = last_read.load(Ordering::Relaxed).saturating_add(limit_ns);
            if shared.now().0 >= idle_until {
                return;
            }
            sleep_until(shared.instant(idle_until)).await;
        }
    };

    tokio::select! {
        _ = async { tokio::try_join!(app_to_mesh, mesh_to_app) } => {}
        () = reporting => {}
        () = idle => shared.metrics.idle_timed_out(),
    }
    // Whatever the exchange still holds or counted, then the connection's last report.
    let _ = side.settle();
    meter.close(|| side.unknown_peer());
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
