//! `mxproxy`: one workload's sidecar for TCP, with Istio's peer-metadata exchange over mutual TLS
//! and Istio's `istio_tcp_*` metrics.
//!
//! ```text
//! mxproxy --listen ADDR --upstream HOST:PORT --role client|server --metadata FILE.json
//!         [--tls-cert PEM --tls-key PEM --tls-ca PEM] [--metrics ADDR]
//!         [--reporting-interval 5s] [--exchange-timeout 5s] [--peer-identity SPIFFE_ID...]
//!         [--max-label-sets 10000]
//! mxproxy gen-certs DIR NAME=SPIFFE_ID...
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use examples::cli::{args_or_usage, run_async};
use examples::metadata_json::metadata_from_json;
use examples::mxproxy::certs::MeshCa;
use examples::mxproxy::tls::TlsMaterial;
use examples::mxproxy::{ProxyConfig, Role, start};

const USAGE: &str =
    "usage: mxproxy --listen ADDR --upstream HOST:PORT --role client|server --metadata FILE.json
               [--tls-cert PEM --tls-key PEM --tls-ca PEM] [--metrics ADDR]
               [--reporting-interval 5s] [--exchange-timeout 5s] [--peer-identity SPIFFE_ID...]
               [--max-label-sets 10000]
       mxproxy gen-certs DIR NAME=SPIFFE_ID...

  --role client       outbound: plain from the local application, mutual TLS to --upstream
  --role server       inbound: mutual TLS from a client proxy, plain to the local application
  --metadata FILE     {\"metadata\": {NAME, NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, LABELS, ...},
                      \"id\": \"node id\"}: what our frame tells the peer
  --tls-*             our certificate chain, its key and the mesh CA (PEM); without them the
                      mesh side is plain TCP and no exchange runs (Istio without mTLS)
  --metrics ADDR      serve Prometheus's /metrics (istio_tcp_*, metadata_exchange_*) on ADDR
  --reporting-interval  bytes of open connections are reported this often (default 5s)
  --exchange-timeout  carry on without peer metadata after this long (default 5s)
  --max-label-sets N  most label sets peers' metadata may create (default 10000); past it a
                      connection is reported as from an unknown peer
  --peer-identity ID  accept only peers whose certificate carries this SPIFFE ID (repeatable):
                      the destination's identity on a client, the allowed clients on a server;
                      without it any certificate of the mesh CA is accepted
  gen-certs           write DIR/ca.pem and DIR/NAME.pem, DIR/NAME.key for each workload";

enum Command {
    Proxy(Box<ProxyConfig>),
    GenCerts(PathBuf, Vec<(String, String)>),
}

fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("bad duration unit in {text:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("bad duration {text:?}"))
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    if args.first().map(String::as_str) == Some("gen-certs") {
        let dir = args.get(1).ok_or("gen-certs needs a directory")?;
        let workloads = args
            .get(2..)
            .unwrap_or_default()
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(name, id)| (name.to_owned(), id.to_owned()))
                    .ok_or_else(|| format!("expected NAME=SPIFFE_ID, got {pair:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Command::GenCerts(PathBuf::from(dir), workloads));
    }
    let (mut listen, mut upstream, mut role, mut metadata) = (None, None, None, None);
    let (mut cert, mut key, mut ca, mut metrics) = (None, None, None, None);
    let (mut interval, mut exchange_timeout) = (Duration::from_secs(5), Duration::from_secs(5));
    let (mut peer_identities, mut max_label_sets) = (Vec::new(), None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--upstream" => upstream = Some(value()?),
            "--role" => {
                role = Some(match value()?.as_str() {
                    "client" => Role::Client,
                    "server" => Role::Server,
                    other => return Err(format!("unknown role {other:?}")),
                });
            }
            "--metadata" => metadata = Some(PathBuf::from(value()?)),
            "--tls-cert" => cert = Some(PathBuf::from(value()?)),
            "--tls-key" => key = Some(PathBuf::from(value()?)),
            "--tls-ca" => ca = Some(PathBuf::from(value()?)),
            "--metrics" => metrics = Some(value()?.parse().map_err(|e| format!("--metrics: {e}"))?),
            "--reporting-interval" => interval = duration(&value()?)?,
            "--exchange-timeout" => exchange_timeout = duration(&value()?)?,
            "--peer-identity" => peer_identities.push(value()?),
            "--max-label-sets" => {
                max_label_sets = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--max-label-sets: {e}"))?,
                );
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if interval.is_zero() {
        return Err("--reporting-interval must be above zero".to_owned());
    }
    let metadata_path = metadata.ok_or("--metadata is required")?;
    let bytes =
        std::fs::read(&metadata_path).map_err(|e| format!("{}: {e}", metadata_path.display()))?;
    let metadata =
        metadata_from_json(&bytes).map_err(|e| format!("{}: {e}", metadata_path.display()))?;
    let mut config = ProxyConfig::new(
        listen.ok_or("--listen is required")?,
        upstream.ok_or("--upstream is required")?,
        role.ok_or("--role is required")?,
        metadata,
    );
    config.tls = match (cert, key, ca) {
        (None, None, None) => None,
        (Some(cert), Some(key), Some(ca)) => Some(TlsMaterial::from_pem_files(&cert, &key, &ca)?),
        _ => return Err("--tls-cert, --tls-key and --tls-ca go together".to_owned()),
    };
    config.metrics = metrics;
    config.reporting_interval = interval;
    config.exchange_timeout = exchange_timeout;
    config.peer_identities = peer_identities;
    if let Some(max) = max_label_sets {
        config.max_label_sets = max;
    }
    Ok(Command::Proxy(Box::new(config)))
}

fn main() -> ExitCode {
    let command = match args_or_usage("mxproxy", USAGE, parse_args) {
        Ok(command) => command,
        Err(code) => return code,
    };
    match command {
        Command::GenCerts(dir, workloads) => {
            run_async("mxproxy", async move { gen_certs(&dir, &workloads) })
        }
        Command::Proxy(config) => run_async("mxproxy", serve(*config)),
    }
}

fn gen_certs(dir: &std::path::Path, workloads: &[(String, String)]) -> Result<(), String> {
    let pairs: Vec<(&str, &str)> = workloads
        .iter()
        .map(|(name, id)| (name.as_str(), id.as_str()))
        .collect();
    MeshCa::new()?.write(dir, &pairs)?;
    println!(
        "wrote {}/ca.pem and {} workload certificate(s)",
        dir.display(),
        pairs.len()
    );
    Ok(())
}

async fn serve(config: ProxyConfig) -> Result<(), String> {
    let role = config.role;
    let running = start(config).await?;
    // One line on stdout (line-buffered, so flushed), from which scripts and the load driver
    // read the bound ports.
    let metrics = running
        .metrics_addr
        .map_or_else(|| "off".to_owned(), |addr| format!("http://{addr}/metrics"));
    println!(
        "mxproxy {role:?} listening on {} metrics {metrics}",
        running.listen
    );
    std::future::pending::<()>().await;
    Ok(())
}
