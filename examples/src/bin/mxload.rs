//! `mxload`: the load test of mxproxy. Starts an echo server, then a pair of `mxproxy` processes
//! (client and server, mutual TLS, the exchange on), and moves the same load directly to the echo
//! server and through the pair: many concurrent connections, each checking every echoed byte.
//! Reports throughput, round-trip percentiles and the latency the proxies add, the proxies' memory
//! per open connection, and checks their `/metrics` against what was sent.
//!
//! ```text
//! mxload [--connections 1000] [--bytes 1G] [--chunk 16K] [--json]
//! ```
//!
//! Needs the `mxproxy` binary next to this one: `cargo build --release -p examples --bins`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::cli::args_or_usage;
use examples::mxecho::{Transfer, checked_echo, percentile, serve_echo};
use examples::mxproxy::certs::MeshCa;
use examples::mxproxy::listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const USAGE: &str = "usage: mxload [--connections N] [--bytes SIZE] [--chunk SIZE] [--json]

  --connections N   concurrent connections (default 1000)
  --bytes SIZE      total payload over all connections, each byte echoed back (default 1G)
  --chunk SIZE      bytes per round trip (default 16K)
  --json            one JSON object instead of the report
SIZE takes K, M and G suffixes (powers of 1024).";

#[derive(Debug, Clone, Copy)]
struct Options {
    connections: usize,
    bytes: usize,
    chunk: usize,
    json: bool,
}

fn size(text: &str) -> Result<usize, String> {
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("bad size {text:?}"))
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        connections: 1000,
        bytes: 1 << 30,
        chunk: 16 << 10,
        json: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--connections" => o.connections = size(&value()?)?.max(1),
            "--bytes" => o.bytes = size(&value()?)?,
            "--chunk" => o.chunk = size(&value()?)?.max(1),
            "--json" => o.json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let options = match args_or_usage("mxload", USAGE, parse_args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mxload: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mxload: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A child `mxproxy` and the addresses it printed; killed on drop.
struct ProxyProcess {
    child: Child,
    listen: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProcess {
    fn spawn(
        exe: &Path,
        role: &str,
        upstream: SocketAddr,
        workload: &str,
        dir: &Path,
    ) -> Result<Self, String> {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mxproxy");
        let name = if role == "client" { "client" } else { "server" };
        let mut child = Command::new(exe)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                "--role",
                role,
            ])
            .arg("--upstream")
            .arg(upstream.to_string())
            .arg("--metadata")
            .arg(data.join(format!("{workload}.json")))
            .arg("--tls-cert")
            .arg(dir.join(format!("{name}.pem")))
            .arg("--tls-key")
            .arg(dir.join(format!("{name}.key")))
            .arg("--tls-ca")
            .arg(dir.join("ca.pem"))
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("mxproxy {role}: {e}"))?;
        // "mxproxy Client listening on ADDR metrics http://ADDR/metrics"
        let word_after = |key: &str| {
            line.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .map(|w| {
                    w.trim_start_matches("http://")
                        .trim_end_matches("/metrics")
                        .to_owned()
                })
        };
        let parse = |key: &str| {
            word_after(key)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("mxproxy {role} said {line:?}"))
        };
        Ok(Self {
            listen: parse("on")?,
            metrics: parse("metrics")?,
            child,
        })
    }

    /// VmRSS and VmHWM, in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    async fn scrape(&self) -> Result<String, String> {
        let mut stream = TcpStream::connect(self.metrics)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: mxload\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok(response)
    }
}

/// The sum of a metric's samples whose label text contains `filter`.
fn metric_sum(exposition: &str, name: &str, filter: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Results of one load phase.
struct Phase {
    seconds: f64,
    bytes: u64,
    /// Each connection's first round trip: through the proxies it carries the mutual-TLS
    /// handshake and the exchange, so it is reported apart from the rest.
    first_round_trips: Vec<Duration>,
    round_trips: Vec<Duration>,
}

impl Phase {
    fn mib_per_second(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.seconds
    }
}

async fn load(to: SocketAddr, o: Options, seed_base: u64) -> Result<Phase, String> {
    let per_connection = o.bytes / o.connections;
    let started = Instant::now();
    let tasks: Vec<_> = (0..o.connections as u64)
        .map(|n| {
            tokio::spawn(checked_echo(
                to,
                per_connection,
                o.chunk,
                seed_base + n,
                None,
            ))
        })
        .collect();
    let mut phase = Phase {
        seconds: 0.0,
        bytes: 0,
        first_round_trips: Vec::new(),
        round_trips: Vec::new(),
    };
    for (n, task) in tasks.into_iter().enumerate() {
        let transfer: Transfer = task
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("connection {n} to {to}: {e}"))?;
        if transfer.sent_checksum != transfer.received_checksum {
            return Err(format!("connection {n}: checksums differ"));
        }
        phase.bytes += transfer.bytes;
        let mut round_trips = transfer.round_trips.into_iter();
        phase.first_round_trips.extend(round_trips.next());
        phase.round_trips.extend(round_trips);
    }
    phase.seconds = started.elapsed().as_secs_f64();
    Ok(phase)
}

/// Opens `n` connections through `to`, each doing one `chunk` round trip, and holds them open
/// while `measure` runs.
async fn held_open<T>(
    to: SocketAddr,
    n: usize,
    chunk: usize,
    measure: impl FnOnce() -> T,
) -> Result<T, String> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let release = Arc::new(Barrier::new(n + 1));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, release) = (barrier.clone(), release.clone());
            tokio::spawn(async move {
                let result = async {
                    let mut stream = TcpStream::connect(to).await?;
                    let out = vec![0x5au8; chunk];
                    let mut back = vec![0u8; chunk];
                    stream.write_all(&out).await?;
                    stream.read_exact(&mut back).await?;
                    Ok::<_, std::io::Error>(stream)
                }
                .await;
                barrier.wait().await;
                release.wait().await;
                result.map(drop)
            })
        })
        .collect();
    barrier.wait().await;
    // Let the proxies settle their bookkeeping before reading their memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let measured = measure();
    release.wait().await;
    for task in tasks {
        task.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(measured)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run(o: Options) -> Result<(), String> {
    let exe = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("mxproxy");
    if !exe.exists() {
        return Err(format!(
            "{} not found: cargo build --release -p examples --bins",
            exe.display()
        ));
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("mxload-{}", std::process::id()));
    MeshCa::new()?.write(
        &dir,
        &[
            ("client", "spiffe://cluster.local/ns/default/sa/sleep"),
            ("server", "spiffe://cluster.local/ns/echo/sa/tcp-echo"),
        ],
    )?;
    let echo = listener(([127, 0, 0, 1], 0).into()).map_err(|e| e.to_string())?;
    let echo_addr = echo.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve_echo(echo, None));
    let server = ProxyProcess::spawn(&exe, "server", echo_addr, "tcp-echo", &dir)?;
    let client = ProxyProcess::spawn(&exe, "client", server.listen, "sleep", &dir)?;
    let _ = std::fs::remove_dir_all(&dir);

    // Quiet latency: one connection, small round trips, direct then through the pair.
    let quiet = Options {
        connections: 1,
        bytes: 64 * 2000,
        chunk: 64,
        ..o
    };
    let mut quiet_direct = load(echo_addr, quiet, 0).await?.round_trips;
    let mut quiet_proxied = load(client.listen, quiet, 0).await?.round_trips;
    let quiet_bytes = quiet.bytes as u64;

    // Memory per open connection: idle proxies, then every connection open at once.
    let idle = (client.memory().0, server.memory().0);
    let open = held_open(client.listen, o.connections, o.chunk, || {
        (client.memory().0, server.memory().0)
    })
    .await?;
    let per_connection = |before: u64, after: u64| {
        after.saturating_sub(before) as f64 * 1024.0 / o.connections as f64
    };

    // The load itself.
    let mut direct = load(echo_addr, o, 1).await?;
    let mut proxied = load(client.listen, o, 1).await?;
    let peak = (client.memory().1, server.memory().1);

    // What the proxies counted, once every connection has been reported closed.
    let total_connections = (2 * o.connections + 1) as f64;
    let mut scraped = (String::new(), String::new());
    for _ in 0..100 {
        scraped = (client.scrape().await?, server.scrape().await?);
        let closed = |text: &str| metric_sum(text, "istio_tcp_connections_closed_total", "");
        if closed(&scraped.0) >= total_connections && closed(&scraped.1) >= total_connections {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected_bytes = (proxied.bytes + quiet_bytes + (o.connections * o.chunk) as u64) as f64;
    let checks = [
        (
            "client opened",
            metric_sum(
                &scraped.0,
                "istio_tcp_connections_opened_total",
                "destination_workload=\"tcp-echo-v2\"",
            ),
            total_connections,
        ),
        (
            "server opened",
            metric_sum(
                &scraped.1,
                "istio_tcp_connections_opened_total",
                "source_workload=\"sleep\"",
            ),
            total_connections,
        ),
        (
            "client received bytes",
            metric_sum(&scraped.0, "istio_tcp_received_bytes_total", "tcp-echo-v2"),
            expected_bytes,
        ),
        (
            "server received bytes",
            metric_sum(&scraped.1, "istio_tcp_received_bytes_total", "sleep"),
            expected_bytes,
        ),
        (
            "server sent bytes",
            metric_sum(&scraped.1, "istio_tcp_sent_bytes_total", "sleep"),
            expected_bytes,
        ),
    ];

    let (qd50, qd99) = (
        percentile(&mut quiet_direct, 50.0),
        percentile(&mut quiet_direct, 99.0),
    );
    let (qp50, qp99) = (
        percentile(&mut quiet_proxied, 50.0),
        percentile(&mut quiet_proxied, 99.0),
    );
    let (d50, d99) = (
        percentile(&mut direct.round_trips, 50.0),
        percentile(&mut direct.round_trips, 99.0),
    );
    let (p50, p99) = (
        percentile(&mut proxied.round_trips, 50.0),
        percentile(&mut proxied.round_trips, 99.0),
    );
    let (df50, df99) = (
        percentile(&mut direct.first_round_trips, 50.0),
        percentile(&mut direct.first_round_trips, 99.0),
    );
    let (pf50, pf99) = (
        percentile(&mut proxied.first_round_trips, 50.0),
        percentile(&mut proxied.first_round_trips, 99.0),
    );
    let memory = (
        per_connection(idle.0, open.0),
        per_connection(idle.1, open.1),
    );

    if o.json {
        println!(
            "{}",
            serde_json::json!({
                "connections": o.connections, "bytes": proxied.bytes, "chunk": o.chunk,
                "direct": {"seconds": direct.seconds, "mib_per_s": direct.mib_per_second(), "p50_ms": millis(d50), "p99_ms": millis(d99)},
                "proxied": {"seconds": proxied.seconds, "mib_per_s": proxied.mib_per_second(), "p50_ms": millis(p50), "p99_ms": millis(p99)},
                "added_p99_ms": millis(p99.saturating_sub(d99)),
                "first_round_trip": {"direct_p50_ms": millis(df50), "direct_p99_ms": millis(df99),
                                     "proxied_p50_ms": millis(pf50), "proxied_p99_ms": millis(pf99)},
                "quiet": {"direct_p50_us": qd50.as_secs_f64() * 1e6, "direct_p99_us": qd99.as_secs_f64() * 1e6,
                          "proxied_p50_us": qp50.as_secs_f64() * 1e6, "proxied_p99_us": qp99.as_secs_f64() * 1e6},
                "memory_per_connection_bytes": {"client": memory.0, "server": memory.1},
                "peak_rss_kib": {"client": peak.0, "server": peak.1},
                "checks": checks.iter().map(|(name, got, want)| serde_json::json!({"name": name, "got": got, "want": want})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "mxload: {} concurrent connections, {:.0} MiB each way, {} B round trips; every byte checked",
            o.connections,
            proxied.bytes as f64 / (1 << 20) as f64,
            o.chunk
        );
        println!(
            "                 seconds    MiB/s   p50 ms   p99 ms   (round trips after each connection's first)"
        );
        for (name, phase, p50, p99) in [
            ("direct", &direct, d50, d99),
            ("through proxies", &proxied, p50, p99),
        ] {
            println!(
                "{name:<16} {:>7.2} {:>8.1} {:>8.2} {:>8.2}",
                phase.seconds,
                phase.mib_per_second(),
                millis(p50),
                millis(p99)
            );
        }
        println!(
            "throughput ratio (proxied / direct): {:.2}; added p99 under load: {:.2} ms",
            proxied.mib_per_second() / direct.mib_per_second(),
            millis(p99.saturating_sub(d99))
        );
        println!(
            "first round trip of each connection (connect, mTLS handshake, exchange): direct p50 {:.2} ms p99 {:.2} ms; proxied p50 {:.2} ms p99 {:.2} ms",
            millis(df50),
            millis(df99),
            millis(pf50),
            millis(pf99)
        );
        println!(
            "quiet single connection, 64 B round trips: direct p50 {:.0} µs p99 {:.0} µs; proxied p50 {:.0} µs p99 {:.0} µs (added p99 {:.0} µs)",
            qd50.as_secs_f64() * 1e6,
            qd99.as_secs_f64() * 1e6,
            qp50.as_secs_f64() * 1e6,
            qp99.as_secs_f64() * 1e6,
            qp99.saturating_sub(qd99).as_secs_f64() * 1e6
        );
        println!(
            "memory per open connection: client proxy {:.1} KiB, server proxy {:.1} KiB; peak RSS {} / {} KiB",
            memory.0 / 1024.0,
            memory.1 / 1024.0,
            peak.0,
            peak.1
        );
        for (name, got, want) in &checks {
            let verdict = if got == want { "ok" } else { "MISMATCH" };
            println!("metrics: {name} = {got} (expected {want}) {verdict}");
        }
    }
    if checks.iter().any(|(_, got, want)| got != want) {
        return Err("the proxies' metrics disagree with the load".to_owned());
    }
    Ok(())
}
