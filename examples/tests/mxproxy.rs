//! mxproxy end to end on loopback: an application → mxproxy(client) → mutual TLS with the
//! exchange → mxproxy(server) → echo server, with certificates made at test time. Byte exactness
//! both ways, Istio's labels and counters on both sides, then peers that do not run the exchange
//! and early closes at every byte of a frame, from either side. Then the hostile and careless
//! cases of issue 17: slowloris clients of `/metrics`, idle connections, metadata peers would
//! refuse, peers sending huge label values, and the command lines and output of `mxproxy`,
//! `mxecho` and `mxload`.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

#[path = "common/slowloris.rs"]
mod slowloris;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use examples::metadata_json::metadata_from_json;
use examples::mxecho::{checked_echo, serve_echo};
use examples::mxproxy::certs::MeshCa;
use examples::mxproxy::tls::{CLIENT_ALPN, SERVER_ALPN, TlsMaterial};
use examples::mxproxy::{ProxyConfig, Role, Running, start};
use peerx::{Metadata, encode_frame};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const SLEEP_ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";
const ECHO_ID: &str = "spiffe://cluster.local/ns/echo/sa/tcp-echo";
/// A workload outside the mesh's metadata exchange, but holding a mesh certificate.
const LEGACY_ID: &str = "spiffe://cluster.local/ns/legacy/sa/curl";
const OPENED: &str = "istio_tcp_connections_opened_total";
const CLOSED: &str = "istio_tcp_connections_closed_total";
const SENT: &str = "istio_tcp_sent_bytes_total";
const RECEIVED: &str = "istio_tcp_received_bytes_total";
/// Long enough for a loaded CI machine, short enough that a hang fails fast.
const PATIENCE: Duration = Duration::from_secs(20);

fn metadata(name: &str) -> Metadata {
    let path = format!("{}/data/mxproxy/{name}.json", env!("CARGO_MANIFEST_DIR"));
    metadata_from_json(&std::fs::read(path).unwrap()).unwrap()
}

fn frame_of(name: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_frame(&metadata(name), &mut frame).unwrap();
    frame
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn echo(banner: Option<&[u8]>) -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(serve_echo(listener, banner.map(<[u8]>::to_vec)));
    addr
}

/// An upstream that records what each connection delivered before it ended.
async fn recorder() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (listener, addr) = listener().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got).await;
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

struct Mesh {
    ca: MeshCa,
    client: Running,
    server: Running,
}

async fn proxy(
    ca: &MeshCa,
    role: Role,
    upstream: SocketAddr,
    workload: &str,
    id: &str,
    tune: impl FnOnce(&mut ProxyConfig),
) -> Running {
    let mut config = ProxyConfig::new(loopback(), upstream.to_string(), role, metadata(workload));
    config.tls = Some(ca.material(&ca.issue(id).unwrap()));
    config.metrics = Some(loopback());
    tune(&mut config);
    start(config).await.unwrap()
}

/// sleep's client proxy → tcp-echo's server proxy → `upstream`.
async fn mesh(upstream: SocketAddr, tune: impl Fn(&mut ProxyConfig)) -> Mesh {
    pair(upstream, &tune, &tune).await
}

/// [`mesh`] with each proxy tuned apart.
async fn pair(
    upstream: SocketAddr,
    tune_server: impl FnOnce(&mut ProxyConfig),
    tune_client: impl FnOnce(&mut ProxyConfig),
) -> Mesh {
    let ca = MeshCa::new().unwrap();
    let server = proxy(
        &ca,
        Role::Server,
        upstream,
        "tcp-echo",
        ECHO_ID,
        tune_server,
    )
    .await;
    let client = proxy(
        &ca,
        Role::Client,
        server.listen,
        "sleep",
        SLEEP_ID,
        tune_client,
    )
    .await;
    Mesh { ca, client, server }
}

/// Samples of one metric as (labels, value), from the OpenMetrics text.
fn series(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(inner) => inner.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let mut map = BTreeMap::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                let (value, after) = after.split_once('"').unwrap();
                map.insert(key.trim_start_matches(',').to_owned(), value.to_owned());
                rest = after;
            }
            Some((map, value.parse().unwrap()))
        })
        .collect()
}

/// The sum of `name` over the series whose labels include all of `want`.
fn value(proxy: &Running, name: &str, want: &[(&str, &str)]) -> f64 {
    series(&proxy.metrics.encode(), name)
        .iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET /metrics over HTTP, as Prometheus does.
async fn scrape(proxy: &Running) -> String {
    let mut stream = TcpStream::connect(proxy.metrics_addr.unwrap())
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /metrics HTTP/1.1\r\nhost: proxy\r\naccept: application/openmetrics-text\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    body.to_owned()
}

fn labels_seen_by(reporter: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("reporter", reporter),
        ("source_workload", "sleep"),
        ("source_canonical_service", "sleep"),
        ("source_canonical_revision", "v1"),
        ("source_workload_namespace", "default"),
        ("source_principal", SLEEP_ID),
        ("source_app", "sleep"),
        ("source_version", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "tcp-echo-v2"),
        ("destination_workload_namespace", "echo"),
        ("destination_principal", ECHO_ID),
        ("destination_app", "tcp-echo"),
        ("destination_version", "v2"),
        ("destination_service", "tcp-echo.echo.svc.cluster.local"),
        ("destination_canonical_service", "tcp-echo"),
        ("destination_canonical_revision", "latest"),
        ("destination_service_name", "tcp-echo"),
        ("destination_service_namespace", "echo"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "tcp"),
        ("response_flags", "-"),
        (
            "connection_security_policy",
            if reporter == "source" {
                "unknown"
            } else {
                "mutual_tls"
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pass_exactly_and_both_sides_label_their_peer() {
    let mesh = mesh(echo(None).await, |_| {}).await;
    const CONNECTIONS: usize = 10;
    const BYTES: usize = 100_000;
    let mut clients = Vec::new();
    for seed in 0..CONNECTIONS as u64 {
        clients.push(tokio::spawn(checked_echo(
            mesh.client.listen,
            BYTES,
            4096,
            seed,
            None,
        )));
    }
    for client in clients {
        let transfer = timeout(PATIENCE, client).await.unwrap().unwrap().unwrap();
        assert_eq!(transfer.bytes, BYTES as u64);
        assert_eq!(transfer.sent_checksum, transfer.received_checksum);
    }
    let closed = |p: &Running| value(p, CLOSED, &[]) == CONNECTIONS as f64;
    eventually("both proxies to close", || {
        closed(&mesh.client) && closed(&mesh.server)
    })
    .await;

    let total = (CONNECTIONS * BYTES) as f64;
    for (proxy, reporter) in [(&mesh.client, "source"), (&mesh.server, "destination")] {
        let labels = labels_seen_by(reporter);
        let all = series(&proxy.metrics.encode(), OPENED);
        assert_eq!(all.len(), 1, "{reporter}: one label set: {all:?}");
        let (seen, _) = &all[0];
        assert_eq!(seen.len(), labels.len(), "{reporter}: {seen:?}");
        for name in [OPENED, CLOSED] {
            assert_eq!(
                value(proxy, name, &labels),
                CONNECTIONS as f64,
                "{reporter} {name}"
            );
        }
        // Downstream bytes both ways, the frames not counted (Istio's E2E expectation).
        for name in [SENT, RECEIVED] {
            assert_eq!(value(proxy, name, &labels), total, "{reporter} {name}");
        }
        for counter in ["alpn_protocol_found", "metadata_added", "peer_frames"] {
            let name = format!("metadata_exchange_{counter}_total");
            assert_eq!(
                value(proxy, &name, &[]),
                CONNECTIONS as f64,
                "{reporter} {name}"
            );
        }
        for counter in [
            "alpn_protocol_not_found",
            "initial_header_not_found",
            "header_not_found",
        ] {
            let name = format!("metadata_exchange_{counter}_total");
            assert_eq!(value(proxy, &name, &[]), 0.0, "{reporter} {name}");
        }
        // The same numbers over HTTP, in the exposition Prometheus reads.
        let scraped = scrape(proxy).await;
        assert!(scraped.ends_with("# EOF\n"));
        assert!(scraped.contains("# HELP istio_tcp_connections_opened Connections opened.\n"));
        assert!(scraped.contains("# TYPE istio_tcp_connections_opened counter\n"));
        assert_eq!(series(&scraped, OPENED), all);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_first_application_speaks_through_both_proxies() {
    // Like MySQL: the server greets before the client says anything, so the server proxy's frame
    // and the greeting travel before any client byte.
    let greeting = b"\x4a\x00\x00\x00\x0a11.4.2-MariaDB\x00greeting";
    let mesh = mesh(echo(Some(greeting)).await, |_| {}).await;
    for seed in 0..5 {
        let transfer = timeout(
            PATIENCE,
            checked_echo(mesh.client.listen, 20_000, 1000, seed, Some(greeting)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(transfer.sent_checksum, transfer.received_checksum);
    }
    // A client that only reads the greeting and leaves.
    let mut stream = TcpStream::connect(mesh.client.listen).await.unwrap();
    let mut got = vec![0u8; greeting.len()];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, greeting);
    drop(stream);

    let closed = |p: &Running| value(p, CLOSED, &[]) == 6.0;
    eventually("both proxies to close", || {
        closed(&mesh.client) && closed(&mesh.server)
    })
    .await;
    let greeted = 6 * greeting.len() + 5 * 20_000;
    assert_eq!(
        value(&mesh.client, SENT, &labels_seen_by("source")),
        greeted as f64
    );
    assert_eq!(
        value(&mesh.server, SENT, &labels_seen_by("destination")),
        greeted as f64
    );
    assert_eq!(
        value(&mesh.server, RECEIVED, &labels_seen_by("destination")),
        100_000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_connections_report_bytes_every_interval() {
    let mesh = mesh(echo(None).await, |c| {
        c.reporting_interval = Duration::from_millis(100)
    })
    .await;
    let mut stream = TcpStream::connect(mesh.client.listen).await.unwrap();
    stream.write_all(&[7u8; 1000]).await.unwrap();
    let mut back = [0u8; 1000];
    stream.read_exact(&mut back).await.unwrap();
    // Still open: the bytes show up by the next tick, not at close (istio/istio#59183).
    for (proxy, reporter) in [(&mesh.client, "source"), (&mesh.server, "destination")] {
        let labels = labels_seen_by(reporter);
        eventually("a periodic report", || {
            value(proxy, RECEIVED, &labels) == 1000.0
        })
        .await;
        assert_eq!(value(proxy, OPENED, &labels), 1.0);
        assert_eq!(value(proxy, CLOSED, &[]), 0.0);
    }
    stream.write_all(&[8u8; 500]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, vec![8u8; 500]);
    for proxy in [&mesh.client, &mesh.server] {
        eventually("the close", || value(proxy, CLOSED, &[]) == 1.0).await;
        assert_eq!(value(proxy, RECEIVED, &[]), 1500.0);
        assert_eq!(value(proxy, SENT, &[]), 1500.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_reported_and_closes() {
    let (gone, addr) = listener().await;
    drop(gone);
    let mesh = mesh(addr, |_| {}).await;
    let mut stream = TcpStream::connect(mesh.client.listen).await.unwrap();
    let _ = stream.write_all(b"anyone?").await; // the proxy may already have closed
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "no byte from nowhere: {rest:?}");
    let server = &mesh.server;
    eventually("the server's report", || value(server, CLOSED, &[]) == 1.0).await;
    let failed = [
        ("response_flags", "UF"),
        ("source_principal", SLEEP_ID),
        ("source_workload", "unknown"),
    ];
    assert_eq!(value(server, OPENED, &failed), 1.0);
    assert_eq!(
        value(server, "mxproxy_upstream_connect_failures_total", &[]),
        1.0
    );
    // The client proxy reached the server proxy and saw its connection end.
    eventually("the client's report", || {
        value(&mesh.client, CLOSED, &[]) == 1.0
    })
    .await;
}

/// A TLS client that is not a mesh proxy: it holds a mesh certificate but offers `alpn`.
async fn tls_client(
    ca: &MeshCa,
    to: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let material: TlsMaterial = ca.material(&ca.issue(LEGACY_ID).unwrap());
    let connector = TlsConnector::from(material.client_config(alpn).unwrap());
    let tcp = TcpStream::connect(to).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Sends `bytes`, half-closes, and returns everything read until the proxy closes. A proxy that
/// refuses the connection may have closed it already: the write then fails, and what was read
/// (nothing) is the answer.
async fn talk<S>(stream: &mut S, bytes: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut got = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut got))
        .await
        .unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_do_not_run_the_exchange_get_through_unlabelled() {
    let mesh = mesh(echo(None).await, |c| {
        c.exchange_timeout = Duration::from_millis(300)
    })
    .await;
    let server = &mesh.server;
    let server_frame = frame_of("tcp-echo");
    let request = b"GET / HTTP/1.1\r\nhost: tcp-echo\r\n\r\n";

    // The exchange's ALPN but no frame: its first byte is application data, and all of it
    // reaches the application. It negotiated the exchange, so it gets the server's frame first.
    let mut stream = tls_client(&mesh.ca, server.listen, &[peerx::ISTIO_PEER_EXCHANGE_ALPN]).await;
    let got = talk(&mut stream, request).await;
    assert_eq!(got, [&server_frame[..], request].concat());

    // Another ALPN, or none: no exchange at all, not even the server's frame.
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let mut stream = tls_client(&mesh.ca, server.listen, alpn).await;
        assert_eq!(talk(&mut stream, request).await, request, "{alpn:?}");
    }

    // Silence past the timeout: the connection is labelled (peer unknown) and goes on.
    let mut stream = tls_client(&mesh.ca, server.listen, &[peerx::ISTIO_PEER_EXCHANGE_ALPN]).await;
    let unknown = [
        ("source_workload", "unknown"),
        ("source_principal", LEGACY_ID),
    ];
    eventually("the timeout", || value(server, OPENED, &unknown) == 4.0).await;
    assert_eq!(
        talk(&mut stream, request).await,
        [&server_frame[..], request].concat()
    );

    // Not even TLS: the handshake fails and the connection is closed, nothing forwarded.
    let mut plain = TcpStream::connect(server.listen).await.unwrap();
    let _ = plain.write_all(request).await;
    let mut got = Vec::new();
    let _ = timeout(PATIENCE, plain.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(!got.windows(request.len()).any(|w| w == request));

    eventually("all closes", || value(server, CLOSED, &[]) == 4.0).await;
    let unlabelled = [
        ("source_workload", "unknown"),
        ("source_canonical_revision", "latest"),
        ("source_workload_namespace", "legacy"), // from the certificate
        ("source_principal", LEGACY_ID),
        ("destination_workload", "tcp-echo-v2"),
        ("connection_security_policy", "mutual_tls"),
    ];
    assert_eq!(value(server, OPENED, &unlabelled), 4.0);
    assert_eq!(
        value(server, RECEIVED, &unlabelled),
        4.0 * request.len() as f64
    );
    let counter = |name: &str| value(server, &format!("metadata_exchange_{name}_total"), &[]);
    assert_eq!(counter("alpn_protocol_found"), 2.0);
    assert_eq!(counter("alpn_protocol_not_found"), 2.0);
    assert_eq!(
        counter("initial_header_not_found"),
        2.0,
        "wrong magic, silence"
    );
    assert_eq!(
        value(server, "mxproxy_tls_handshake_failures_total", &[]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_at_any_byte_of_its_frame_leaks_nothing_to_the_application() {
    let (upstream, mut delivered) = recorder().await;
    let mesh = mesh(upstream, |_| {}).await;
    let server = &mesh.server;
    let frame = frame_of("sleep");
    let server_frame = frame_of("tcp-echo");
    for cut in 0..=frame.len() {
        let mut stream =
            tls_client(&mesh.ca, server.listen, &[peerx::ISTIO_PEER_EXCHANGE_ALPN]).await;
        let got = talk(&mut stream, &frame[..cut]).await;
        assert!(
            server_frame.starts_with(&got),
            "cut {cut}: only the server's frame comes back"
        );
        let app = timeout(PATIENCE, delivered.recv()).await.unwrap().unwrap();
        assert!(
            app.is_empty(),
            "cut {cut}: {} exchange bytes reached the application",
            app.len()
        );
    }
    eventually("all closes", || {
        value(server, CLOSED, &[]) == (frame.len() + 1) as f64
    })
    .await;
    let counter = |name: &str| value(server, &format!("metadata_exchange_{name}_total"), &[]);
    // Closed before 8 bytes (0–7), inside the payload, or after the whole frame.
    assert_eq!(counter("initial_header_not_found"), 8.0);
    assert_eq!(counter("header_not_found"), (frame.len() - 8) as f64);
    assert_eq!(counter("peer_frames"), 1.0);
    let named = [("source_workload", "sleep"), ("source_app", "sleep")];
    assert_eq!(
        value(server, OPENED, &named),
        1.0,
        "only the whole frame names the peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_at_any_byte_of_its_frame_leaks_nothing_to_the_application() {
    let ca = MeshCa::new().unwrap();
    let frame = frame_of("tcp-echo");
    // A TLS server that negotiates the exchange, writes the first `cut` bytes of a frame (one
    // more per connection) and closes, recording what the client proxy sent it.
    let (listener, addr) = listener().await;
    let material = ca.material(&ca.issue(ECHO_ID).unwrap());
    let acceptor = TlsAcceptor::from(material.server_config().unwrap());
    let (tx, mut client_sent) = mpsc::unbounded_channel();
    let cuts = Arc::new(AtomicUsize::new(0));
    let server_frame = frame.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let cut = cuts.fetch_add(1, Ordering::SeqCst);
            let mut tls = acceptor.accept(tcp).await.unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(SERVER_ALPN[0]));
            let got = talk(&mut tls, &server_frame[..cut]).await;
            tx.send(got).unwrap();
        }
    });
    let client = proxy(&ca, Role::Client, addr, "sleep", SLEEP_ID, |_| {}).await;
    let client_frame = frame_of("sleep");
    for cut in 0..=frame.len() {
        let mut app = TcpStream::connect(client.listen).await.unwrap();
        let mut got = Vec::new();
        let _ = timeout(PATIENCE, app.read_to_end(&mut got)).await.unwrap();
        drop(app);
        assert!(
            got.is_empty(),
            "cut {cut}: {} exchange bytes reached the application",
            got.len()
        );
        let sent = timeout(PATIENCE, client_sent.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            sent, client_frame,
            "cut {cut}: the client proxy sends its frame and nothing else"
        );
    }
    let counter = |name: &str| value(&client, &format!("metadata_exchange_{name}_total"), &[]);
    eventually("all closes", || {
        value(&client, CLOSED, &[]) == (frame.len() + 1) as f64
    })
    .await;
    assert_eq!(counter("alpn_protocol_found"), (frame.len() + 1) as f64);
    assert_eq!(counter("peer_frames"), 1.0);
    assert_eq!(CLIENT_ALPN[0], peerx::ISTIO_PEER_EXCHANGE_ALPN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_lose_and_reorder_nothing() {
    // The CI-sized load: every connection open at once, each checked byte for byte. The 1 GB run
    // is `mxload` (README), in release.
    const CONNECTIONS: usize = 1000;
    const BYTES: usize = 16 * 1024;
    // Clients, echo server and both proxies share this process: about 6,000 sockets.
    let limit = rlimit::increase_nofile_limit(16_384).unwrap();
    assert!(
        limit >= 7_000,
        "about 6,000 descriptors are needed; the hard limit allows {limit}"
    );
    // A thousand handshakes queue on two cores (longer still on a loaded machine): the exchange
    // may take longer than its production timeout, and a connection labelled unknown would
    // miscount the labelled bytes this test checks.
    let mesh = mesh(echo(None).await, |c| c.exchange_timeout = PATIENCE).await;
    let clients: Vec<_> = (0..CONNECTIONS as u64)
        .map(|seed| tokio::spawn(checked_echo(mesh.client.listen, BYTES, 4096, seed, None)))
        .collect();
    for client in clients {
        let transfer = timeout(PATIENCE * 6, client)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(transfer.sent_checksum, transfer.received_checksum);
    }
    for proxy in [&mesh.client, &mesh.server] {
        eventually("every close", || {
            value(proxy, CLOSED, &[]) == CONNECTIONS as f64
        })
        .await;
        assert_eq!(
            value(proxy, RECEIVED, &[("source_workload", "sleep")]),
            (CONNECTIONS * BYTES) as f64
        );
        assert_eq!(
            value(proxy, SENT, &[("destination_workload", "tcp-echo-v2")]),
            (CONNECTIONS * BYTES) as f64
        );
    }
}

const BYE: &[u8] = b"bye\r\n";

/// A TLS server outside the exchange, holding a mesh certificate and offering `alpn`: it writes
/// `greeting` first, reads until the client half-closes, answers `bye` and reports what it
/// received. (It does not echo: a peer's application echoing our frame back is not ours to hide.)
async fn tls_upstream(
    ca: &MeshCa,
    alpn: &[&[u8]],
    greeting: &'static [u8],
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let material = ca.material(&ca.issue(LEGACY_ID).unwrap());
    let mut config = Arc::unwrap_or_clone(material.server_config().unwrap());
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (listener, addr) = listener().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut tls = tls;
                tls.write_all(greeting).await.unwrap();
                tls.flush().await.unwrap();
                let mut all = Vec::new();
                let _ = tls.read_to_end(&mut all).await;
                let _ = tls.write_all(BYE).await;
                let _ = tls.shutdown().await;
                tx.send(all).unwrap();
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_that_do_not_run_the_exchange_get_through_unlabelled() {
    let ca = MeshCa::new().unwrap();
    let client_frame = frame_of("sleep");
    let request = b"ping\n";
    // No ALPN on the server: the exchange is off, not a byte of it is written.
    let (plain, mut plain_got) = tls_upstream(&ca, &[], b"").await;
    // The exchange's ALPN, but the server speaks first in its own protocol (wrong magic).
    let greeting = b"+OK legacy server ready\r\n";
    let (legacy, mut legacy_got) =
        tls_upstream(&ca, &[peerx::ISTIO_PEER_EXCHANGE_ALPN], greeting).await;
    for (upstream, got, greeted) in [
        (plain, &mut plain_got, &b""[..]),
        (legacy, &mut legacy_got, &greeting[..]),
    ] {
        let client = proxy(&ca, Role::Client, upstream, "sleep", SLEEP_ID, |_| {}).await;
        let mut app = TcpStream::connect(client.listen).await.unwrap();
        let answer = talk(&mut app, request).await;
        assert_eq!(
            answer,
            [greeted, BYE].concat(),
            "the application sees the server's bytes only"
        );
        let received = timeout(PATIENCE, got.recv()).await.unwrap().unwrap();
        let frame: &[u8] = if greeted.is_empty() {
            b""
        } else {
            &client_frame
        };
        assert_eq!(
            received,
            [frame, request].concat(),
            "our frame only where the exchange was negotiated"
        );
        eventually("the close", || value(&client, CLOSED, &[]) == 1.0).await;
        let unknown = [
            ("destination_workload", "unknown"),
            ("destination_principal", LEGACY_ID),
            ("destination_workload_namespace", "legacy"),
            ("source_workload", "sleep"),
        ];
        assert_eq!(value(&client, OPENED, &unknown), 1.0);
        assert_eq!(value(&client, SENT, &unknown), answer.len() as f64);
        let counter = |name: &str| value(&client, &format!("metadata_exchange_{name}_total"), &[]);
        let found = if greeted.is_empty() { 0.0 } else { 1.0 };
        assert_eq!(counter("alpn_protocol_found"), found);
        assert_eq!(counter("alpn_protocol_not_found"), 1.0 - found);
        assert_eq!(
            counter("initial_header_not_found"),
            found,
            "the greeting is not a frame"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_before_the_exchange_starts_end_cleanly() {
    let (upstream, mut delivered) = recorder().await;
    let mesh = mesh(upstream, |_| {}).await;
    // Inside the TLS handshake: a ClientHello cut short, then the close. Nothing is dialed.
    let mut tcp = TcpStream::connect(mesh.server.listen).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, tcp.read_to_end(&mut rest)).await.unwrap();
    let server = &mesh.server;
    eventually("the failed handshake", || {
        value(server, "mxproxy_tls_handshake_failures_total", &[]) == 1.0
    })
    .await;
    // An application that connects and leaves at once, before the mesh side is even up.
    for _ in 0..3 {
        drop(TcpStream::connect(mesh.client.listen).await.unwrap());
    }
    for _ in 0..3 {
        let app = timeout(PATIENCE, delivered.recv()).await.unwrap().unwrap();
        assert!(app.is_empty());
    }
    for proxy in [&mesh.client, &mesh.server] {
        eventually("every close", || value(proxy, CLOSED, &[]) == 3.0).await;
        assert_eq!(
            value(
                proxy,
                OPENED,
                &[
                    ("source_workload", "sleep"),
                    ("destination_workload", "tcp-echo-v2")
                ]
            ),
            3.0
        );
    }
    assert!(
        delivered.try_recv().is_err(),
        "the broken handshake dialed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_expected_spiffe_identities_get_through() {
    let (upstream, mut delivered) = recorder().await;
    // The server admits sleep only; the client expects a destination that is not tcp-echo.
    let admit_sleep = |c: &mut ProxyConfig| c.peer_identities = vec![SLEEP_ID.to_owned()];
    let other = "spiffe://cluster.local/ns/echo/sa/tcp-echo-canary";
    let expect_other = |c: &mut ProxyConfig| c.peer_identities = vec![other.to_owned()];
    let Mesh { ca, client, server } = pair(upstream, admit_sleep, expect_other).await;

    let mut app = TcpStream::connect(client.listen).await.unwrap();
    assert!(talk(&mut app, b"secret").await.is_empty());
    eventually("the client's refusal", || {
        value(&client, CLOSED, &[("response_flags", "UF")]) == 1.0
    })
    .await;
    assert_eq!(
        value(&client, "mxproxy_peer_identity_rejections_total", &[]),
        1.0
    );
    assert_eq!(
        value(&client, OPENED, &[("destination_principal", ECHO_ID)]),
        1.0
    );

    // A mesh certificate of another workload is refused by the server before anything is dialed.
    let mut stranger = tls_client(&ca, server.listen, &[peerx::ISTIO_PEER_EXCHANGE_ALPN]).await;
    let _ = talk(&mut stranger, b"secret").await;
    let rejections = "mxproxy_peer_identity_rejections_total";
    eventually("the server's refusal", || {
        value(&server, rejections, &[]) == 1.0
    })
    .await;

    // sleep itself still gets through.
    let (upstream_ok, mut ok_delivered) = recorder().await;
    let expect_echo = |c: &mut ProxyConfig| c.peer_identities = vec![ECHO_ID.to_owned()];
    let ok = pair(upstream_ok, admit_sleep, expect_echo).await;
    let mut app = TcpStream::connect(ok.client.listen).await.unwrap();
    app.write_all(b"hello").await.unwrap();
    app.shutdown().await.unwrap();
    let got = timeout(PATIENCE, ok_delivered.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"hello");
    // The refused destination was a real mesh peer: its application may have been dialed, but
    // not one byte reached it.
    while let Ok(bytes) = delivered.try_recv() {
        assert!(
            bytes.is_empty(),
            "{} bytes reached the guarded application",
            bytes.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_cannot_grow_the_metrics_without_bound() {
    // Label values come from the peer's frame: a peer naming a new workload on every connection
    // gets its own series only up to the cap, then is reported as unknown.
    let ca = MeshCa::new().unwrap();
    let cap = |c: &mut ProxyConfig| c.max_label_sets = 2;
    let server = proxy(
        &ca,
        Role::Server,
        echo(None).await,
        "tcp-echo",
        ECHO_ID,
        cap,
    )
    .await;
    for (round, name) in ["w0", "w1", "w2", "w3", "w0"].into_iter().enumerate() {
        let mut metadata = metadata("sleep");
        metadata
            .peer
            .insert("WORKLOAD_NAME".to_owned(), peerx::Value::from(name));
        let rename = move |c: &mut ProxyConfig| c.metadata = metadata;
        let client = proxy(&ca, Role::Client, server.listen, "sleep", SLEEP_ID, rename).await;
        let mut app = TcpStream::connect(client.listen).await.unwrap();
        assert_eq!(talk(&mut app, b"hi").await, b"hi");
        let closed = (round + 1) as f64;
        eventually("the close", || value(&server, CLOSED, &[]) == closed).await;
    }
    let opened = |workload: &str| value(&server, OPENED, &[("source_workload", workload)]);
    assert_eq!(
        (opened("w0"), opened("w1")),
        (2.0, 1.0),
        "the first two sets, and w0 again"
    );
    assert_eq!((opened("w2"), opened("w3")), (0.0, 0.0));
    let unknown = [
        ("source_workload", "unknown"),
        ("source_principal", SLEEP_ID),
    ];
    assert_eq!(
        value(&server, OPENED, &unknown),
        2.0,
        "past the cap: an unknown peer"
    );
    assert_eq!(value(&server, "mxproxy_label_sets_refused_total", &[]), 2.0);
}

// ---------------------------------------------------------------------------------------------
// Issue 17: hostile clients and peers, careless configurations.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_move_nothing_are_closed_after_the_idle_timeout() {
    // Only the client proxy has the timeout, so the one that closes is known.
    let idle = Duration::from_millis(600);
    let mesh = pair(
        echo(None).await,
        |c| c.idle_timeout = None,
        |c| c.idle_timeout = Some(idle),
    )
    .await;
    let timeouts = "mxproxy_idle_timeouts_total";

    // A connection that keeps talking, a byte every 150 ms for 3 timeouts, is left alone.
    let mut busy = TcpStream::connect(mesh.client.listen).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut silent_from = started;
    while started.elapsed() < idle * 3 {
        busy.write_all(b"x").await.unwrap();
        let mut back = [0u8; 1];
        timeout(PATIENCE, busy.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        silent_from = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(value(&mesh.client, timeouts, &[]), 0.0);

    // Then silence: the proxy closes it once the timeout has passed since the last byte.
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, busy.read_to_end(&mut rest))
        .await
        .unwrap();
    let waited = silent_from.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(waited >= idle - Duration::from_millis(50), "{waited:?}");
    eventually("the idle close", || {
        value(&mesh.client, timeouts, &[]) == 1.0 && value(&mesh.client, CLOSED, &[]) == 1.0
    })
    .await;
    // Counted with its peer, and the server proxy saw the connection end.
    assert_eq!(
        value(
            &mesh.client,
            CLOSED,
            &[("destination_workload", "tcp-echo-v2")]
        ),
        1.0
    );
    eventually("the server's close", || {
        value(&mesh.server, CLOSED, &[]) == 1.0
    })
    .await;
    assert_eq!(value(&mesh.server, timeouts, &[]), 0.0);

    // A connection that never sends a byte at all is closed too.
    let mut mute = TcpStream::connect(mesh.client.listen).await.unwrap();
    let mut rest = Vec::new();
    let _ = timeout(PATIENCE, mute.read_to_end(&mut rest))
        .await
        .unwrap();
    eventually("the second idle close", || {
        value(&mesh.client, timeouts, &[]) == 2.0
    })
    .await;
}

/// A JSON metadata file for the binary, written under the temporary directory.
fn metadata_file(name: &str, json: &serde_json::Value) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("mxproxy-{}-{name}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(json).unwrap()).unwrap();
    path
}

/// `{"metadata": ...}` that peers would refuse: a 125 KB frame, and lists nested 100 deep.
fn refused_metadata() -> [(&'static str, serde_json::Value, &'static str); 2] {
    let labels: serde_json::Map<String, serde_json::Value> = (0..5)
        .map(|i| (format!("label-{i}"), "x".repeat(25_000).into()))
        .collect();
    let mut deep = serde_json::json!("leaf");
    for _ in 0..100 {
        deep = serde_json::json!([deep]);
    }
    [
        (
            "large",
            serde_json::json!({"metadata": {"NAME": "big", "LABELS": labels}}),
            "peers accept at most 65536",
        ),
        (
            "deep",
            serde_json::json!({"metadata": {"NAME": "deep", "LIST": deep}}),
            "deeper than peers accept",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_peers_would_refuse_is_refused_at_start_up() {
    for (name, json, why) in refused_metadata() {
        let metadata = metadata_from_json(&serde_json::to_vec(&json).unwrap()).unwrap();
        let config = ProxyConfig::new(loopback(), "127.0.0.1:9".into(), Role::Client, metadata);
        let err = start(config).await.unwrap_err();
        assert!(err.contains(why), "{name}: {err}");
    }
}

/// Where a test binary is: next to the test's own executable's directory.
fn exe(name: &str) -> &'static str {
    match name {
        "mxproxy" => env!("CARGO_BIN_EXE_mxproxy"),
        "mxecho" => env!("CARGO_BIN_EXE_mxecho"),
        "mxload" => env!("CARGO_BIN_EXE_mxload"),
        _ => unreachable!(),
    }
}

fn data_file(name: &str) -> String {
    format!("{}/data/mxproxy/{name}.json", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_binary_refuses_metadata_peers_would_refuse_and_names_the_file() {
    for (name, json, why) in refused_metadata() {
        let path = metadata_file(name, &json);
        let out = std::process::Command::new(exe("mxproxy"))
            .args(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"])
            .args(["--role", "client", "--metadata"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{name}");
    }
}

/// The 23 label values of each sample line of `name` in an exposition, unescaped, parsed with
/// the format's escapes (values may hold `"`, `\` and newlines).
fn label_values(text: &str, name: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .map(|mut rest| {
            let mut values = Vec::new();
            while let Some((_, after)) = rest.split_once("=\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().unwrap() {
                        (_, '\\') => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (at, '"') => break at,
                        (_, c) => value.push(c),
                    }
                };
                values.push(value);
                rest = &after[end + 1..];
                if rest.starts_with('}') {
                    break;
                }
            }
            values
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_sending_huge_label_values_get_them_cut_and_counted() {
    // Peers' label values end up in every series: 3 x 20 KB each from 40 peers made the
    // exposition ~10 MB. Each value is now cut at 253 bytes, the cut ones counted, and a value
    // that tries to end its sample line and forge another is escaped.
    const PEERS: usize = 40;
    const HUGE: usize = 20_000;
    let ca = MeshCa::new().unwrap();
    let server = proxy(
        &ca,
        Role::Server,
        echo(None).await,
        "tcp-echo",
        ECHO_ID,
        |_| {},
    )
    .await;
    let server_frame = frame_of("tcp-echo");
    let forged = "x\"} 1\nistio_tcp_connections_opened_total{reporter=\"forged\"} 1e9\n# \\";
    for peer in 0..PEERS {
        let mut attacker = metadata("sleep");
        let long = |c: char| format!("{peer}-{}", c.to_string().repeat(HUGE));
        attacker
            .peer
            .insert("WORKLOAD_NAME".into(), peerx::Value::String(long('w')));
        attacker
            .peer
            .insert("CLUSTER_ID".into(), peerx::Value::from(forged));
        let labels = [("app", long('a')), ("version", long('v'))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), peerx::Value::String(v)))
            .collect();
        attacker
            .peer
            .insert("LABELS".into(), peerx::Value::Struct(labels));
        let mut frame = Vec::new();
        encode_frame(&attacker, &mut frame).unwrap();
        assert!(frame.len() > 3 * HUGE);
        let mut stream = tls_client(&ca, server.listen, &[peerx::ISTIO_PEER_EXCHANGE_ALPN]).await;
        let got = talk(&mut stream, &[&frame[..], b"hi"].concat()).await;
        assert_eq!(got, [&server_frame[..], b"hi"].concat(), "peer {peer}");
    }
    eventually("every close", || {
        value(&server, CLOSED, &[]) == PEERS as f64
    })
    .await;
    assert_eq!(
        value(&server, "mxproxy_label_values_cut_total", &[]),
        (3 * PEERS) as f64
    );
    let text = scrape(&server).await;
    assert!(
        text.len() < 400_000,
        "{} bytes per scrape for {PEERS} peers",
        text.len()
    );
    let opened = label_values(&text, OPENED);
    assert_eq!(opened.len(), PEERS, "one set per peer, nothing forged");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total{reporter=\"forged\"")),
        "a peer's value wrote a sample line"
    );
    for values in &opened {
        assert_eq!(values.len(), 23);
        assert!(values.iter().all(|v| v.len() <= 253), "{values:?}");
        // source_workload, source_app, source_version: cut to the bound.
        for at in [1, 6, 7] {
            assert_eq!(values[at].len(), 253, "{}", values[at]);
        }
        assert_eq!(values[8], forged, "source_cluster comes back whole");
    }
}

/// A std echo server on a thread of its own (for the tests that run the binary).
fn std_echo() -> SocketAddr {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut read = &stream;
                let mut write = &stream;
                let _ = std::io::copy(&mut read, &mut write);
                let _ = stream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// An `mxproxy` process (killed on drop) and the addresses its start-up line gave.
struct ProxyProcess {
    child: std::process::Child,
    listen: SocketAddr,
    metrics: SocketAddr,
}

impl ProxyProcess {
    /// `mxproxy --role server` in plain TCP in front of `upstream`, `/metrics` on, started by
    /// `command` (the binary, or a wrapper such as prlimit), with `extra` flags.
    fn start(mut command: std::process::Command, upstream: SocketAddr, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args(["--role", "server", "--metadata", &data_file("tcp-echo")])
            .args(["--upstream", &upstream.to_string()])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "mxproxy Server listening on ADDR metrics http://ADDR/metrics"
        let word = |key: &str| -> SocketAddr {
            let w = line.split_whitespace().skip_while(|w| *w != key).nth(1);
            w.unwrap()
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        };
        let (listen, metrics) = (word("on"), word("metrics"));
        Self {
            child,
            listen,
            metrics,
        }
    }

    /// SIGTERM, then the exit status (within 10 s).
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request/answer through the proxy, with a blocking client.
fn echoes_through(proxy: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&proxy, Duration::from_secs(2))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut back = [0u8; 5];
    stream.write_all(b"hello").is_ok() && stream.read_exact(&mut back).is_ok() && &back == b"hello"
}

#[test]
fn metrics_and_proxied_clients_get_through_2000_slowloris_and_2000_idle_connections() {
    // This process holds both ends of the idle connections' upstream side too.
    let limit = rlimit::increase_nofile_limit(16_384).unwrap();
    assert!(
        limit >= 8_000,
        "about 6,000 descriptors are needed; {limit} allowed"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = runtime.block_on(echo(None));
    // Started with the soft descriptor limit many systems default to: mxproxy raises its own,
    // so 2,000 idle clients of /metrics and 2,000 idle proxied connections (two descriptors
    // each) lock out neither scrapes nor new proxied connections.
    let mut command = std::process::Command::new("prlimit");
    command.args(["--nofile=1024:", "--", exe("mxproxy")]);
    let proxy = ProxyProcess::start(command, upstream, &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft: u64 = open_files
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(soft >= 7_000, "{open_files}");

    let mut held = slowloris::open(proxy.metrics, 2000);
    assert_eq!(held.len(), 2000);
    let idle: Vec<std::net::TcpStream> = (0..2000)
        .map(|_| std::net::TcpStream::connect(proxy.listen).unwrap())
        .collect();
    // Every idle connection was taken in (and its upstream dialed): the descriptors are held.
    let started = std::time::Instant::now();
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{}/fd", proxy.child.id()))
            .unwrap()
            .count()
    };
    while descriptors() < 6_000 {
        assert!(
            started.elapsed() < PATIENCE,
            "{} descriptors",
            descriptors()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3 {
        slowloris::trickle(&mut held);
        let (slowest, statuses) = slowloris::scrape_times(proxy.metrics, "/metrics", 5);
        assert!(slowest < Duration::from_secs(1), "{slowest:?}");
        assert!(
            statuses.iter().all(|s| s.starts_with("HTTP/1.1 200")),
            "{statuses:?}"
        );
        assert!(echoes_through(proxy.listen), "a proxied connection fails");
    }
    // The server's other answers: another path.
    let (_, other) = slowloris::scrape_times(proxy.metrics, "/other", 1);
    assert!(other[0].starts_with("HTTP/1.1 404"), "{other:?}");
    drop((held, idle));
    assert!(proxy.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_bound_are_closed_at_once_and_counted() {
    let mesh = pair(echo(None).await, |_| {}, |c| c.max_connections = 2).await;
    let client = &mesh.client;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(client.listen).await.unwrap();
        stream.write_all(b"hi").await.unwrap();
        let mut back = [0u8; 2];
        timeout(PATIENCE, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        open.push(stream);
    }
    // The third is closed without a byte.
    let mut third = TcpStream::connect(client.listen).await.unwrap();
    let mut got = Vec::new();
    let _ = timeout(PATIENCE, third.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(got.is_empty());
    let refused = "mxproxy_connections_refused_total";
    assert_eq!(value(client, refused, &[]), 1.0);
    // One ends: there is room again.
    let mut first = open.remove(0);
    first.shutdown().await.unwrap();
    let _ = timeout(PATIENCE, first.read_to_end(&mut Vec::new()))
        .await
        .unwrap();
    eventually("the close", || value(client, CLOSED, &[]) == 1.0).await;
    let mut again = TcpStream::connect(client.listen).await.unwrap();
    assert_eq!(talk(&mut again, b"again").await, b"again");
    assert_eq!(value(client, refused, &[]), 1.0);
}

#[test]
fn sigterm_stops_the_proxy_cleanly() {
    let proxy = ProxyProcess::start(std::process::Command::new(exe("mxproxy")), std_echo(), &[]);
    assert!(echoes_through(proxy.listen));
    let status = proxy.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

fn run(name: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe(name))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn command_lines_describe_every_option_and_name_bad_ones() {
    let help = |name: &str, flags: &[&str]| {
        let out = run(name, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{name}");
        let text = String::from_utf8(out.stdout).unwrap();
        for flag in flags {
            assert!(text.contains(flag), "{name} --help lacks {flag}: {text}");
        }
        let version = run(name, &["--version"]);
        assert_eq!(version.status.code(), Some(0), "{name}");
        assert!(String::from_utf8(version.stdout).unwrap().starts_with(name));
    };
    help(
        "mxproxy",
        &[
            "--listen",
            "--upstream",
            "--role",
            "--metadata",
            "--tls-cert",
            "--tls-key",
            "--tls-ca",
            "--metrics",
            "--reporting-interval",
            "--exchange-timeout",
            "--idle-timeout",
            "--peer-identity",
            "--max-label-sets",
            "--max-label-value-bytes",
            "--max-connections",
            "gen-certs",
        ],
    );
    help("mxecho", &["serve", "send"]);
    let send = run("mxecho", &["send", "--help"]);
    let text = String::from_utf8(send.stdout).unwrap();
    for flag in ["--to", "--connections", "--bytes", "--chunk", "--banner"] {
        assert!(text.contains(flag), "mxecho send --help lacks {flag}");
    }
    help("mxload", &["--connections", "--bytes", "--chunk", "--json"]);

    let base = [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--metadata",
    ];
    let sleep = data_file("sleep");
    for (name, args, named) in [
        ("mxproxy", vec!["--frob"], "--frob"),
        ("mxproxy", vec!["--listen", "nowhere"], "--listen"),
        (
            "mxproxy",
            [&base[..], &[&sleep, "--role", "middle"]].concat(),
            "--role",
        ),
        (
            "mxproxy",
            [
                &base[..],
                &[&sleep, "--role", "client", "--reporting-interval", "0"],
            ]
            .concat(),
            "--reporting-interval",
        ),
        (
            "mxproxy",
            [
                &base[..],
                &[&sleep, "--role", "client", "--idle-timeout", "5 fortnights"],
            ]
            .concat(),
            "--idle-timeout",
        ),
        (
            "mxproxy",
            [
                &base[..],
                &[&sleep, "--role", "client", "--tls-cert", "c.pem"],
            ]
            .concat(),
            "--tls-key",
        ),
        ("mxproxy", vec!["--listen", "127.0.0.1:0"], "--upstream"),
        (
            "mxecho",
            vec!["send", "--to", "127.0.0.1:9", "--chunk", "0"],
            "--chunk",
        ),
        ("mxecho", vec!["serve"], "--listen"),
        ("mxecho", vec!["frob"], "frob"),
        ("mxload", vec!["--bytes", "lots"], "--bytes"),
        ("mxload", vec!["--connections", "0"], "--connections"),
    ] {
        let out = run(name, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert!(stderr.contains(named), "{name} {args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{name} {args:?}");
    }
}

fn dev_full() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

/// A pipe whose reading end is already closed.
fn closed_pipe() -> std::process::Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

#[test]
fn a_full_stdout_is_an_error_and_a_closed_one_ends_quietly() {
    let dir = std::env::temp_dir().join(format!("mxproxy-certs-{}", std::process::id()));
    let echo = std_echo().to_string();
    let programs: [(&str, Vec<String>); 4] = [
        (
            "mxproxy",
            [
                "--listen",
                "127.0.0.1:0",
                "--role",
                "server",
                "--upstream",
                &echo,
                "--metadata",
                &data_file("tcp-echo"),
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        (
            "mxproxy",
            vec![
                "gen-certs".to_owned(),
                dir.display().to_string(),
                "a=spiffe://cluster.local/ns/a/sa/a".to_owned(),
            ],
        ),
        (
            "mxecho",
            ["send", "--to", &echo, "--connections", "2"]
                .map(str::to_owned)
                .to_vec(),
        ),
        // Its report is written once the load is done and its mxproxy children are gone.
        (
            "mxload",
            ["--connections", "2", "--bytes", "2K", "--chunk", "1K"]
                .map(str::to_owned)
                .to_vec(),
        ),
    ];
    for (name, args) in &programs {
        // /dev/full: a message and exit 1, at once (a server does not go on serving).
        let mut child = std::process::Command::new(exe(name))
            .args(args)
            .stdout(dev_full())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait(&mut child);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "{name} {args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write stdout") && stderr.contains("No space left"),
            "{name} {args:?}: {stderr}"
        );

        // A closed pipe: quietly, exit 0, at once.
        let mut child = std::process::Command::new(exe(name))
            .args(args)
            .stdout(closed_pipe())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait(&mut child);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(0), "{name} {args:?}: {stderr}");
        assert!(stderr.is_empty(), "{name} {args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exit status of `child`, which must come within 10 s.
fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
