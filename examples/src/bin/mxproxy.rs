//! `mxproxy`: one workload's sidecar for TCP, with Istio's peer-metadata exchange over mutual TLS
//! and Istio's `istio_tcp_*` metrics.
//!
//! ```text
//! mxproxy --listen ADDR --upstream HOST:PORT --role client|server --metadata FILE.json
//!         [--tls-cert PEM --tls-key PEM --tls-ca PEM] [--metrics ADDR]
//!         [--reporting-interval 5s] [--exchange-timeout 5s] [--idle-timeout 1h]
//!         [--peer-identity SPIFFE_ID...] [--max-label-sets 10000] [--max-label-value-bytes 253]
//! mxproxy gen-certs DIR NAME=SPIFFE_ID...
//! ```
//!
//! Exit status: 0 after SIGINT or SIGTERM (or when stdout is closed before the start-up line is
//! read), 1 when it cannot run (an address cannot be bound, stdout cannot be written), 2 for
//! usage errors and a configuration that cannot be used (unreadable or invalid metadata, metadata
//! peers would refuse, unusable TLS material).

use examples::signals::on_stop_signals;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use examples::metadata_json::metadata_from_json;
use examples::mxproxy::certs::MeshCa;
use examples::mxproxy::tls::TlsMaterial;
use examples::mxproxy::{ProxyConfig, Role, our_frame, start};

/// One workload's TCP sidecar: Istio's peer-metadata exchange over mutual TLS, and Istio's
/// istio_tcp_* metrics on /metrics.
#[derive(Debug, Parser)]
#[command(
    name = "mxproxy",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "On start-up one line on stdout gives the bound addresses: \
                  \"mxproxy Client listening on ADDR metrics http://ADDR/metrics\". \
                  SIGINT or SIGTERM stops it (a second one at once)."
)]
struct Cli {
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(subcommand)]
    command: Option<Tool>,
}

#[derive(Debug, Args)]
struct ProxyArgs {
    /// Where to accept connections (port 0 picks one; the start-up line tells which).
    #[arg(long, value_name = "ADDR", required = true)]
    listen: Option<SocketAddr>,
    /// Where to connect each accepted connection to; the host is also the TLS server name.
    #[arg(long, value_name = "HOST:PORT", required = true)]
    upstream: Option<String>,
    /// client: outbound, plain TCP from the local application, mutual TLS to --upstream
    /// (reporter="source"); server: inbound, mutual TLS from a client proxy, plain TCP to the
    /// local application (reporter="destination").
    #[arg(long, value_enum, required = true)]
    role: Option<RoleArg>,
    /// {"metadata": {NAME, NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, LABELS, ...}, "id": "node id"}:
    /// what our frame tells the peer. Refused when peers could not read the frame (over 64 KiB,
    /// nested over 32 deep).
    #[arg(long, value_name = "FILE.json", required = true)]
    metadata: Option<PathBuf>,
    /// Our certificate chain (PEM). With --tls-key and --tls-ca; without the three, the mesh side
    /// is plain TCP and no exchange runs (Istio without mTLS).
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// Our private key (PEM).
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// The mesh CA (PEM).
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// Serve Prometheus's /metrics (istio_tcp_*, metadata_exchange_*, mxproxy_*) on ADDR.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Bytes of open connections are reported this often (250ms, 5s, 1m, 1h; above zero).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    reporting_interval: Duration,
    /// Carry on without peer metadata after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    exchange_timeout: Duration,
    /// Close a connection that moves no byte either way for this long (0 never).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = duration)]
    idle_timeout: Duration,
    /// Accept only peers whose certificate carries this SPIFFE ID (repeatable): the destination's
    /// identity on a client, the allowed clients on a server; without it any certificate of the
    /// mesh CA is accepted.
    #[arg(long = "peer-identity", value_name = "SPIFFE_ID")]
    peer_identities: Vec<String>,
    /// Most proxied connections open at once; past it a new one is closed at once and counted
    /// (mxproxy_connections_refused_total). Default: 10,000, or what the open-file limit leaves
    /// room for (two descriptors each, beside the /metrics server's).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most label sets peers' metadata may create; past it a connection is reported as from an
    /// unknown peer.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_label_sets: usize,
    /// Longest label value taken from a peer's metadata or certificate; longer ones are cut and
    /// counted (mxproxy_label_values_cut_total).
    #[arg(long, value_name = "BYTES", default_value_t = 253)]
    max_label_value_bytes: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Client,
    Server,
}

#[derive(Debug, Subcommand)]
enum Tool {
    /// Write DIR/ca.pem, and DIR/NAME.pem and DIR/NAME.key for each workload.
    GenCerts {
        /// Where to write the files.
        dir: PathBuf,
        /// A workload's file name and its SPIFFE ID (spiffe://cluster.local/ns/NS/sa/SA).
        #[arg(value_name = "NAME=SPIFFE_ID", value_parser = workload)]
        workloads: Vec<(String, String)>,
    },
}

/// `250ms`, `30s`, `5m`, `1h`, or a number of seconds.
fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 250ms, 5s, 1m, 1h)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    duration(text).and_then(|d| {
        if d.is_zero() {
            Err("must be above zero".to_owned())
        } else {
            Ok(d)
        }
    })
}

fn workload(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(name, id)| (name.to_owned(), id.to_owned()))
        .ok_or_else(|| format!("expected NAME=SPIFFE_ID, got {pair:?}"))
}

/// How a run ends.
enum Failure {
    /// Exit 2: the configuration cannot be used.
    Config(String),
    /// Exit 1.
    Runtime(String),
    /// Exit 0, quietly: stdout was closed (`| head`).
    ClosedPipe,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Tool::GenCerts { dir, workloads }) => gen_certs(&dir, &workloads),
        None => config(cli.proxy).and_then(run),
    };
    match outcome {
        Ok(()) | Err(Failure::ClosedPipe) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            eprintln!("mxproxy: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("mxproxy: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line on stdout and flushes it (scripts and the load driver read it).
fn say(line: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::ClosedPipe,
            _ => Failure::Runtime(format!("cannot write stdout: {e}")),
        })
}

fn gen_certs(dir: &Path, workloads: &[(String, String)]) -> Result<(), Failure> {
    let pairs: Vec<(&str, &str)> = workloads
        .iter()
        .map(|(name, id)| (name.as_str(), id.as_str()))
        .collect();
    MeshCa::new()
        .and_then(|ca| ca.write(dir, &pairs))
        .map_err(Failure::Runtime)?;
    say(&format!(
        "wrote {}/ca.pem and {} workload certificate(s)",
        dir.display(),
        pairs.len()
    ))
}

/// The proxy's configuration from its flags and files.
/// The proxy's configuration, and whether --max-connections was given.
fn config(args: ProxyArgs) -> Result<(ProxyConfig, bool), Failure> {
    let missing = |flag: &str| Failure::Config(format!("{flag} is required"));
    let path = args.metadata.ok_or_else(|| missing("--metadata"))?;
    let bytes = std::fs::read(&path)
        .map_err(|e| Failure::Config(format!("--metadata {}: {e}", path.display())))?;
    let metadata = metadata_from_json(&bytes)
        .map_err(|e| Failure::Config(format!("--metadata {}: {e}", path.display())))?;
    // Checked here too (start does it again) so the message names the file.
    our_frame(&metadata)
        .map_err(|e| Failure::Config(format!("--metadata {}: {e}", path.display())))?;
    let role = match args.role.ok_or_else(|| missing("--role"))? {
        RoleArg::Client => Role::Client,
        RoleArg::Server => Role::Server,
    };
    let mut config = ProxyConfig::new(
        args.listen.ok_or_else(|| missing("--listen"))?,
        args.upstream.ok_or_else(|| missing("--upstream"))?,
        role,
        metadata,
    );
    config.tls = match (args.tls_cert, args.tls_key, args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            Some(TlsMaterial::from_pem_files(&cert, &key, &ca).map_err(Failure::Config)?)
        }
        _ => None,
    };
    config.metrics = args.metrics;
    config.reporting_interval = args.reporting_interval;
    config.exchange_timeout = args.exchange_timeout;
    config.idle_timeout = Some(args.idle_timeout).filter(|d| !d.is_zero());
    config.peer_identities = args.peer_identities;
    config.max_label_sets = args.max_label_sets;
    config.max_label_value_bytes = args.max_label_value_bytes;
    if let Some(max) = args.max_connections {
        config.max_connections = max;
    }
    Ok((config, args.max_connections.is_some()))
}

fn run((mut config, max_given): (ProxyConfig, bool)) -> Result<(), Failure> {
    // Every proxied connection holds two descriptors and every /metrics client one: a soft limit
    // of 1,024 (many systems' default) would leave a few hundred idle clients able to lock out
    // the rest. Raised to the hard limit, as servers do, and the connection bounds kept within.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|e| {
        eprintln!("mxproxy: cannot raise the open-file limit: {e}");
        rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
    });
    let metrics_clients = if config.metrics.is_some() {
        config.serve_limits.max_connections as u64
    } else {
        0
    };
    let room =
        usize::try_from(limit.saturating_sub(metrics_clients + 256) / 2).unwrap_or(usize::MAX);
    if max_given && config.max_connections > room {
        eprintln!(
            "mxproxy: {limit} open files allowed (ulimit -Hn) hold about {room} connections, \
             not --max-connections {}",
            config.max_connections
        );
    } else if !max_given {
        config.max_connections = config.max_connections.min(room.max(1));
    }
    let stop =
        on_stop_signals().map_err(|e| Failure::Runtime(format!("cannot handle signals: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let role = config.role;
        let running = start(config).await.map_err(Failure::Runtime)?;
        let metrics = running
            .metrics_addr
            .map_or_else(|| "off".to_owned(), |addr| format!("http://{addr}/metrics"));
        say(&format!(
            "mxproxy {role:?} listening on {} metrics {metrics}",
            running.listen
        ))?;
        stop.wait()
            .await
            .map_err(|e| Failure::Runtime(format!("cannot wait for signals: {e}")))?;
        // Stop accepting, let scrapes in flight finish, then exit.
        running.shut_down().await;
        Ok(())
    })
}
