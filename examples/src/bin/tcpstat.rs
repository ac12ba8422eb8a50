//! `tcpstat`: node_exporter's `node_tcp_connection_states`, from `/proc/net/tcp{,6}` or netlink,
//! printed once or served at `/metrics`.

use examples::signals::on_stop_signals;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use examples::exposition::Format;
use examples::serve::{
    Handler, Reply, ServeLimits, method_not_allowed, raise_descriptor_limit, serve, text,
};
use examples::tcpsource::{self, Collected};
use examples::tcpstat::{render_json, render_metrics};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};

/// Counts TCP sockets by state, as node_exporter's tcpstat collector does
/// (`node_tcp_connection_states`), from the kernel's socket tables or a sock_diag dump.
#[derive(Debug, Parser)]
#[command(name = "tcpstat", version)]
struct Args {
    /// Read DIR/net/tcp and DIR/net/tcp6 (a copy of another host's /proc works too).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    proc_root: PathBuf,
    /// Where the counts come from.
    #[arg(long, value_enum, default_value_t = Source::Proc)]
    source: Source,
    /// What is printed (or served).
    #[arg(long, value_enum, default_value_t = OutputFormat::Prom)]
    format: OutputFormat,
    /// Endianness of the host that wrote the files. State counts and queue sums do not depend
    /// on it (only addresses do, and counting never decodes them); accepted so scripts that
    /// pass it keep working.
    #[arg(long, value_enum, default_value_t = ByteOrder::Native)]
    byte_order: ByteOrder,
    /// Serve GET /metrics on ADDR (e.g. 127.0.0.1:9100) until SIGINT or SIGTERM, a fresh
    /// collection per scrape, instead of printing once.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// The /proc/net/tcp and /proc/net/tcp6 tables (under --proc-root).
    Proc,
    /// A sock_diag dump of this network namespace over netlink.
    Netlink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// node_exporter's Prometheus exposition (OpenMetrics when a scraper asks for it).
    Prom,
    /// One JSON object.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ByteOrder {
    /// This host's.
    Native,
    /// Little-endian.
    Little,
    /// Big-endian.
    Big,
}

/// A remark on stderr; a failing stderr is not worth a panic.
macro_rules! note {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "tcpstat: {}", format_args!($($arg)*));
    }};
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_exit(&e),
    };
    if let Some(addr) = &args.listen {
        return serve_metrics(addr, args.settings());
    }
    let collected = match collect(&args.settings()) {
        Ok(c) => c,
        Err(e) => {
            note!("nothing could be read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (_, text) = render(&collected, args.format, Format::Prometheus);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) ends quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            note!("writing the output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// clap's answer to `--help`, `--version` or a usage error: printed, and the exit code (0, or 2
/// for a usage error). Help that cannot be written is a failure like any other output.
fn usage_exit(e: &clap::Error) -> ExitCode {
    let printed = e.print().and_then(|()| std::io::stdout().flush());
    match printed {
        Err(failed) if !e.use_stderr() && failed.kind() != std::io::ErrorKind::BrokenPipe => {
            note!("writing the output: {failed}");
            ExitCode::FAILURE
        }
        _ => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)),
    }
}

/// What a collection needs, for the server's handler to own.
#[derive(Debug, Clone)]
struct Settings {
    proc_root: PathBuf,
    source: Source,
    format: OutputFormat,
}

impl Args {
    fn settings(&self) -> Settings {
        Settings {
            proc_root: self.proc_root.clone(),
            source: self.source,
            format: self.format,
        }
    }
}

fn collect(settings: &Settings) -> Result<Collected, String> {
    match settings.source {
        Source::Netlink => tcpsource::collect_netlink(),
        Source::Proc => tcpsource::collect_proc(&settings.proc_root),
    }
}

/// Serves `/metrics` on `addr` through the shared server (`examples::serve`) on a
/// single-threaded runtime on this thread, until SIGINT or SIGTERM (a second one exits at
/// once).
fn serve_metrics(addr: &str, settings: Settings) -> ExitCode {
    let fail = |what: &str, e: std::io::Error| {
        note!("{what}: {e}");
        ExitCode::FAILURE
    };
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {addr}"), e),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        return fail(&format!("cannot listen on {addr}"), e);
    }
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_owned(), |a| a.to_string());
    let limits = ServeLimits::default();
    if let Err(e) = raise_descriptor_limit(&limits) {
        note!("cannot raise the open-file limit for /metrics clients: {e}");
    }
    let signals = match on_stop_signals() {
        Ok(s) => s,
        Err(e) => return fail("cannot handle SIGINT and SIGTERM", e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail("cannot start the server", e),
    };
    let handler = Arc::new(Metrics {
        settings,
        collections: Arc::new(tokio::sync::Semaphore::new(COLLECTIONS)),
    });
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        note!("listening on http://{local}/metrics");
        let server = serve(listener, handler, limits, stopped);
        tokio::pin!(server);
        tokio::select! {
            () = &mut server => {}
            _ = signals.wait() => {
                note!("stopping (signal)");
                let _ = stop.send(true);
                server.await;
            }
        }
        Ok::<_, std::io::Error>(())
    });
    match served {
        Ok(()) => {
            note!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail("cannot serve /metrics", e),
    }
}

/// `GET /metrics`: a fresh collection per scrape, as node_exporter does; `503` when nothing
/// could be read. Collections run off the server's thread (a sock_diag dump of a busy host
/// takes a while), at most [`COLLECTIONS`] at once.
#[derive(Debug)]
struct Metrics {
    settings: Settings,
    collections: Arc<tokio::sync::Semaphore>,
}

/// Collections run at once; more scrapes wait for one to finish.
const COLLECTIONS: usize = 2;

impl Handler for Metrics {
    fn wants_body(&self, _: &Parts) -> bool {
        false
    }

    fn respond(&self, head: Parts, _: Bytes) -> Reply {
        if head.uri.path() != "/metrics" {
            let response = text(StatusCode::NOT_FOUND, "text/plain", "try /metrics\n");
            return Box::pin(std::future::ready(response));
        }
        if head.method != Method::GET && head.method != Method::HEAD {
            return Box::pin(std::future::ready(method_not_allowed("GET, HEAD")));
        }
        let accept = head
            .headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let format = Format::from_accept(accept);
        let settings = self.settings.clone();
        let collections = Arc::clone(&self.collections);
        Box::pin(async move {
            let permit = collections.acquire_owned().await;
            let collected = tokio::task::spawn_blocking(move || {
                let collected = collect(&settings).map(|c| render(&c, settings.format, format));
                drop(permit);
                collected
            })
            .await
            .unwrap_or_else(|e| Err(format!("the collection failed: {e}")));
            match collected {
                Ok((content_type, body)) => text(StatusCode::OK, content_type, body),
                Err(e) => {
                    note!("nothing could be read: {e}");
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        format!("nothing could be read: {e}\n"),
                    )
                }
            }
        })
    }
}

/// The notes of a collection on stderr, and its body in `output` (`format` as the scraper
/// asked, for the Prometheus exposition), with its content type.
fn render(c: &Collected, output: OutputFormat, format: Format) -> (&'static str, String) {
    c.notes.iter().for_each(|n| note!("{n}"));
    match output {
        OutputFormat::Json => ("application/json", render_json(c)),
        OutputFormat::Prom => (format.content_type(), render_metrics(c, format)),
    }
}
