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

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use examples::mxecho::{Transfer, checked_echo, percentile, serve_echo};
use examples::mxproxy::certs::MeshCa;
use examples::mxproxy::listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// The load test of mxproxy: the same load directly to an echo server and through a pair of
/// mxproxy processes (mutual TLS, the exchange on), every byte checked; throughput, round-trip
/// percentiles, memory per connection, and the proxies' /metrics against what was sent.
#[derive(Debug, Clone, Copy, Parser)]
#[command(
    name = "mxload",
    version,
    after_help = "SIZE takes K, M and G suffixes (powers of 1024). Needs the mxproxy binary next \
                  to this one: cargo build --release -p examples --bins."
)]
struct Options {
    /// Concurrent connections.
    #[arg(long, value_name = "N", default_value = "1000", value_parser = count)]
    connections: usize,
    /// Total payload over all connections, each byte echoed back.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = size)]
    bytes: usize,
    /// Bytes per round trip.
    #[arg(long, value_name = "SIZE", default_value = "16K", value_parser = count)]
    chunk: usize,
    /// One JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

/// A number with an optional K, M or G suffix (powers of 1024).
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
        .ok_or_else(|| format!("{text:?} is not a size (like 512, 16K, 1G)"))
}

/// A [`size`] above zero.
fn count(text: &str) -> Result<usize, String> {
    match size(text)? {
        0 => Err("must be above zero".to_owned()),
        n => Ok(n),
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(run(options)));
    // The children are gone by now: the report is written last, and a closed stdout (`| head`)
    // ends the program quietly.
    let (report, verdict) = match outcome {
        Ok(done) => done,
        Err(message) => {
            eprintln!("mxload: {message}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(report.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxload: cannot write stdout: {e}");
            return ExitCode::FAILURE;
        }
        Ok(()) => {}
    }
    match verdict {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mxload: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A child process, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// VmRSS and VmHWM, in KiB.
    fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
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
}

/// A child `mxproxy` and the addresses it printed.
struct ProxyProcess {
    process: Process,
    listen: SocketAddr,
    metrics: SocketAddr,
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
            .args(tls_files(
                dir,
                role,
                ["--tls-cert", "--tls-key", "--tls-ca"],
            ))
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let process = Process(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("mxproxy {role}: {e}"))?;
        // "mxproxy Client listening on ADDR metrics http://ADDR/metrics"
        let parse = |key: &str| {
            line.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .map(|w| w.trim_start_matches("http://").trim_end_matches("/metrics"))
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("mxproxy {role} said {line:?}"))
        };
        Ok(Self {
            listen: parse("on")?,
            metrics: parse("metrics")?,
            process,
        })
    }

    async fn scrape(&self) -> Result<String, String> {
        let mut stream = TcpStream::connect(self.metrics)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: mxload\r\nconnection: close\r\n\r\n")
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

/// `[cert, key, ca]` flags followed by the files of `role`'s identity in `dir`.
fn tls_files(dir: &Path, role: &str, flags: [&str; 3]) -> Vec<std::ffi::OsString> {
    let files = [
        dir.join(format!("{role}.pem")),
        dir.join(format!("{role}.key")),
        dir.join("ca.pem"),
    ];
    flags
        .iter()
        .zip(files)
        .flat_map(|(flag, file)| [flag.into(), file.into_os_string()])
        .collect()
}

/// The anchor: a pair of stunnel processes making the same mutual-TLS hop with the same
/// certificates, without the exchange or metrics. Absent when stunnel is not installed.
struct StunnelPair {
    client: Process,
    server: Process,
    listen: SocketAddr,
}

impl StunnelPair {
    async fn spawn(dir: &Path, upstream: SocketAddr) -> Result<Option<Self>, String> {
        if Command::new("stunnel")
            .arg("-version")
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Ok(None);
        }
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())
        };
        let (server_addr, client_addr) = (free_port()?, free_port()?);
        let start = |role: &str, accept: SocketAddr, connect: SocketAddr| {
            let config = dir.join(format!("stunnel-{role}.conf"));
            let files: Vec<String> = tls_files(dir, role, ["cert", "key", "CAfile"])
                .chunks(2)
                .map(|pair| {
                    format!(
                        "{} = {}",
                        pair[0].to_string_lossy(),
                        pair[1].to_string_lossy()
                    )
                })
                .collect();
            let text = format!(
                "foreground = yes\ndebug = err\n[{role}]\nclient = {}\naccept = {accept}\nconnect = {connect}\n{}\nverifyChain = yes\nrequireCert = yes\n",
                if role == "client" { "yes" } else { "no" },
                files.join("\n")
            );
            std::fs::write(&config, text).map_err(|e| e.to_string())?;
            Command::new("stunnel")
                .arg(&config)
                .stderr(Stdio::null())
                .spawn()
                .map(Process)
                .map_err(|e| format!("cannot start stunnel: {e}"))
        };
        let server = start("server", server_addr, upstream)?;
        let client = start("client", client_addr, server_addr)?;
        for addr in [server_addr, client_addr] {
            let mut tries = 0;
            while TcpStream::connect(addr).await.is_err() {
                tries += 1;
                if tries > 100 {
                    return Err(format!("stunnel did not listen on {addr}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(Some(Self {
            client,
            server,
            listen: client_addr,
        }))
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
    /// Each connection's first round trip: through a proxy pair it carries the mutual-TLS
    /// handshake (and the exchange), so it is reported apart from the rest.
    first_round_trips: Vec<Duration>,
    round_trips: Vec<Duration>,
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

/// One way from the load to the echo server, measured.
struct Route {
    name: &'static str,
    /// One connection, 64-byte round trips: the latency a quiet connection sees.
    quiet: Vec<Duration>,
    /// Growth of each process's RSS per open connection, in bytes (client side, server side).
    per_connection: Option<(f64, f64)>,
    /// Peak RSS of each process after the load, KiB.
    peak_kib: Option<(u64, u64)>,
    load: Phase,
}

const QUIET_ROUND_TRIPS: usize = 2000;

async fn measure(
    name: &'static str,
    to: SocketAddr,
    processes: Option<(&Process, &Process)>,
    o: Options,
) -> Result<Route, String> {
    let quiet = Options {
        connections: 1,
        bytes: 64 * QUIET_ROUND_TRIPS,
        chunk: 64,
        ..o
    };
    let quiet = load(to, quiet, 0).await?.round_trips;
    let rss = |p: (&Process, &Process)| (p.0.memory().0, p.1.memory().0);
    let per_connection = match processes {
        Some(p) => {
            let idle = rss(p);
            let open = held_open(to, o.connections, o.chunk, || rss(p)).await?;
            let growth = |before: u64, after: u64| {
                after.saturating_sub(before) as f64 * 1024.0 / o.connections as f64
            };
            Some((growth(idle.0, open.0), growth(idle.1, open.1)))
        }
        None => None,
    };
    let load = load(to, o, 1).await?;
    Ok(Route {
        name,
        quiet,
        per_connection,
        peak_kib: processes.map(|p| (p.0.memory().1, p.1.memory().1)),
        load,
    })
}

/// Percentiles in milliseconds.
fn ms(samples: &mut [Duration], p: f64) -> f64 {
    percentile(samples, p).as_secs_f64() * 1e3
}

impl Route {
    fn mib_per_second(&self) -> f64 {
        self.load.bytes as f64 / (1 << 20) as f64 / self.load.seconds
    }

    fn json(&mut self) -> serde_json::Value {
        let load = &mut self.load;
        serde_json::json!({
            "route": self.name,
            "seconds": load.seconds,
            "mib_per_s": load.bytes as f64 / (1 << 20) as f64 / load.seconds,
            "p50_ms": ms(&mut load.round_trips, 50.0),
            "p99_ms": ms(&mut load.round_trips, 99.0),
            "first_p50_ms": ms(&mut load.first_round_trips, 50.0),
            "first_p99_ms": ms(&mut load.first_round_trips, 99.0),
            "quiet_p50_us": ms(&mut self.quiet, 50.0) * 1e3,
            "quiet_p99_us": ms(&mut self.quiet, 99.0) * 1e3,
            "bytes_per_connection": self.per_connection.map(|(c, s)| [c, s]),
            "peak_rss_kib": self.peak_kib.map(|(c, s)| [c, s]),
        })
    }
}

/// Runs the load; returns the report and whether the proxies' metrics agree with it.
async fn run(o: Options) -> Result<(String, Result<(), String>), String> {
    let exe = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("mxproxy");
    if !exe.exists() {
        return Err(format!(
            "{} not found: cargo build --release -p examples --bins",
            exe.display()
        ));
    }
    // This process holds both ends of every direct connection and the load's client sockets; the
    // proxies inherit the limit and hold two sockets per connection each.
    let needed = 2 * o.connections as u64 + 256;
    let limit = rlimit::increase_nofile_limit(needed).map_err(|e| e.to_string())?;
    if limit < needed {
        return Err(format!(
            "{needed} file descriptors are needed, the hard limit allows {limit} (ulimit -Hn)"
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
    let stunnel = StunnelPair::spawn(&dir, echo_addr).await?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut routes = vec![measure("direct", echo_addr, None, o).await?];
    let pair = (&client.process, &server.process);
    routes.push(measure("mxproxy pair", client.listen, Some(pair), o).await?);
    if let Some(stunnel) = &stunnel {
        let pair = (&stunnel.client, &stunnel.server);
        routes.push(measure("stunnel pair", stunnel.listen, Some(pair), o).await?);
    }
    let checks = check_metrics(&client, &server, &routes[1], o).await?;

    let direct = routes[0].mib_per_second();
    let mut report = String::new();
    if o.json {
        let routes: Vec<_> = routes.iter_mut().map(Route::json).collect();
        let checks: Vec<_> = checks
            .iter()
            .map(|(name, got, want)| serde_json::json!({"name": name, "got": got, "want": want}))
            .collect();
        let _ = writeln!(
            report,
            "{}",
            serde_json::json!({"connections": o.connections, "bytes": o.bytes, "chunk": o.chunk,
                               "routes": routes, "checks": checks})
        );
    } else {
        print_report(&mut report, &mut routes, direct, o);
        for (name, got, want) in &checks {
            let verdict = if got == want { "ok" } else { "MISMATCH" };
            let _ = writeln!(
                report,
                "mxproxy metrics: {name} = {got} (expected {want}) {verdict}"
            );
        }
    }
    let verdict = if checks.iter().any(|(_, got, want)| got != want) {
        Err("the proxies' metrics disagree with the load".to_owned())
    } else {
        Ok(())
    };
    Ok((report, verdict))
}

fn print_report(report: &mut String, routes: &mut [Route], direct: f64, o: Options) {
    let _ = writeln!(
        report,
        "mxload: {} concurrent connections, {:.0} MiB each way per route, {} B round trips; every byte checked",
        o.connections,
        o.bytes as f64 / (1 << 20) as f64,
        o.chunk
    );
    let _ = writeln!(
        report,
        "{:<14} {:>7} {:>6} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>13} {:>15}",
        "route",
        "MiB/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "1st p50",
        "1st p99",
        "quiet50",
        "quiet99",
        "KiB/conn c/s",
        "peak RSS KiB c/s"
    );
    for route in routes.iter_mut() {
        let mib = route.mib_per_second();
        let load = &mut route.load;
        let memory = route.per_connection.map_or("-".to_owned(), |(c, s)| {
            format!("{:.1}/{:.1}", c / 1024.0, s / 1024.0)
        });
        let peak = route
            .peak_kib
            .map_or("-".to_owned(), |(c, s)| format!("{c}/{s}"));
        let _ = writeln!(
            report,
            "{:<14} {:>7.1} {:>6.2} {:>8.2} {:>8.2} {:>9.1} {:>9.1} {:>6.0}µs {:>6.0}µs {:>13} {:>15}",
            route.name,
            mib,
            mib / direct,
            ms(&mut load.round_trips, 50.0),
            ms(&mut load.round_trips, 99.0),
            ms(&mut load.first_round_trips, 50.0),
            ms(&mut load.first_round_trips, 99.0),
            ms(&mut route.quiet, 50.0) * 1e3,
            ms(&mut route.quiet, 99.0) * 1e3,
            memory,
            peak
        );
    }
    let _ = writeln!(
        report,
        "p50/p99: round trips after each connection's first; 1st: the first, which through a pair \
carries the mutual-TLS handshake (ms); quiet: one connection alone, 64 B round trips"
    );
    if let [direct, mx, stunnel] = routes {
        let p99 = |r: &mut Route| ms(&mut r.load.round_trips, 99.0);
        let quiet = |r: &mut Route| ms(&mut r.quiet, 99.0) * 1e3;
        let _ = writeln!(
            report,
            "added p99 over direct: mxproxy {:.2} ms, stunnel {:.2} ms under load; {:.0} µs and {:.0} µs quiet; throughput mxproxy/stunnel {:.2}",
            p99(mx) - p99(direct),
            p99(stunnel) - p99(direct),
            quiet(mx) - quiet(direct),
            quiet(stunnel) - quiet(direct),
            mx.mib_per_second() / stunnel.mib_per_second()
        );
    }
}

/// What the mxproxy pair counted, once every connection through it has been reported closed,
/// against what went through it: one quiet connection, `connections` held open, `connections`
/// of load.
async fn check_metrics(
    client: &ProxyProcess,
    server: &ProxyProcess,
    route: &Route,
    o: Options,
) -> Result<Vec<(&'static str, f64, f64)>, String> {
    let connections = (2 * o.connections + 1) as f64;
    let bytes =
        (route.load.bytes + (64 * QUIET_ROUND_TRIPS + o.connections * o.chunk) as u64) as f64;
    let mut scraped = (String::new(), String::new());
    for _ in 0..100 {
        scraped = (client.scrape().await?, server.scrape().await?);
        let closed = |text: &str| metric_sum(text, "istio_tcp_connections_closed_total", "");
        if closed(&scraped.0) >= connections && closed(&scraped.1) >= connections {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (c, s) = (&scraped.0, &scraped.1);
    Ok(vec![
        (
            "client opened",
            metric_sum(
                c,
                "istio_tcp_connections_opened_total",
                "destination_workload=\"tcp-echo-v2\"",
            ),
            connections,
        ),
        (
            "server opened",
            metric_sum(
                s,
                "istio_tcp_connections_opened_total",
                "source_workload=\"sleep\"",
            ),
            connections,
        ),
        (
            "client received bytes",
            metric_sum(c, "istio_tcp_received_bytes_total", "tcp-echo-v2"),
            bytes,
        ),
        (
            "server received bytes",
            metric_sum(s, "istio_tcp_received_bytes_total", "sleep"),
            bytes,
        ),
        (
            "server sent bytes",
            metric_sum(s, "istio_tcp_sent_bytes_total", "sleep"),
            bytes,
        ),
    ])
}
