//! `tracehdr`: inspect trace-context headers, print the headers a proxy would send for a child
//! span, or serve the W3C trace-context test suite, all with `tracectx`.
//!
//! Exit status: 0 when a result was printed (invalid headers included, and when a closed pipe
//! ended the output), 1 for I/O errors, 2 for usage errors and unusable input.

use examples::signals::on_stop_signals;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use examples::serve::{ServeLimits, raise_descriptor_limit, serve};
use examples::tracehdr::input::{InputError, borrow, read_headers};
use examples::tracehdr::service::{CallLimits, TraceSuite};
use examples::tracehdr::{SplitMix64, child::child, emit, inspect::inspect};

/// Trace-context headers with tracectx: inspect them, print a child span's, or serve the W3C
/// trace-context test suite.
///
/// Headers on stdin are `Name: value` lines (split at the first `:`, one optional space after it
/// stripped, the rest kept byte-exact; repeated names allowed; blank lines ignored; CRLF
/// tolerated), or with --json a JSON array of [name, value] pairs.
#[derive(Debug, Parser)]
#[command(name = "tracehdr", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print one JSON object saying what each trace header on stdin holds.
    ///
    /// Reads one request's headers and prints one JSON object with a member per format
    /// (traceparent, tracestate, b3, baggage, request_id, ot_span_context), each with its result
    /// (absent, valid or invalid; b3 also sampling_only) and the fields read.
    Inspect(Input),
    /// Print the headers a proxy sends for a child span of the request on stdin.
    ///
    /// Prints the traceparent, tracestate, b3, x-request-id and baggage, one `name: value` a
    /// line. Only what tracectx validated is forwarded: an x-request-id that is not 1 to 64
    /// visible ASCII characters is replaced by a fresh one, and baggage is the well-formed members
    /// re-encoded as one header within the W3C limits (8,192 bytes, 180 members); what was left
    /// out is noted on stderr.
    Child {
        #[command(flatten)]
        input: Input,
        /// Seed of the deterministic random source.
        #[arg(long, value_name = "N", default_value_t = 1)]
        seed: u64,
    },
    /// Serve the W3C trace-context test suite on a loopback address.
    ///
    /// POST a JSON array of {"url": ..., "arguments": [...]}: each loopback url is called with a
    /// child traceparent and the tracestate, the arguments as its JSON body, concurrently (at
    /// most 32 calls in flight across the server), and the answer is 200 when the calls are done
    /// or their deadline (--callback-timeout) has passed. Other methods get 405. Connections are
    /// served concurrently with bounded heads, bodies (1 MiB) and times. SIGINT or SIGTERM stops
    /// it gracefully.
    Serve(Serve),
}

#[derive(Debug, Args)]
struct Input {
    /// Stdin is a JSON array of [name, value] pairs instead of `Name: value` lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct Serve {
    /// Loopback address to listen on, e.g. 127.0.0.1:8080 or localhost:8080 (port 0 picks one).
    #[arg(long, value_name = "ADDR", value_parser = parse_loopback)]
    addr: SocketAddr,
    /// Seed of the random source for span and trace ids (default: from the clock).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Time to connect to a callback, in seconds (at most 60).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    connect_timeout: Duration,
    /// Time from a request's arrival by which all its callbacks have answered, in seconds (at
    /// most 60); calls still unanswered then are abandoned (and logged), and the request is
    /// answered.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    callback_timeout: Duration,
    /// Most callbacks one request may list; a longer list is answered 413.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    max_callbacks: u16,
}

/// A loopback socket address; `localhost:PORT` reads as `127.0.0.1:PORT`.
fn parse_loopback(value: &str) -> Result<SocketAddr, String> {
    let addr = match value.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            .map_err(|_| format!("bad port in {value:?}"))?,
        None => value
            .parse::<SocketAddr>()
            .map_err(|_| format!("expected IP:PORT, not {value:?}"))?,
    };
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr}: only loopback addresses are allowed"
        ));
    }
    Ok(addr)
}

/// Seconds, fractions allowed, more than zero and at most 60 (the longest a served connection
/// lives, `ServeLimits::connection_lifetime`).
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| format!("expected a number of seconds, not {value:?}"))?;
    let most = ServeLimits::default().connection_lifetime.as_secs_f64();
    if !(seconds > 0.0 && seconds <= most) {
        return Err(format!(
            "{value} is not more than 0 and at most {most} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Inspect(input) => with_stdin_headers(input.json, |h| format!("{}\n", inspect(h))),
        Command::Child { input, seed } => with_stdin_headers(input.json, |h| {
            let child = child(h, &mut SplitMix64::new(seed));
            for note in &child.notes {
                eprintln!("tracehdr: {note}");
            }
            child
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}\n"))
                .collect()
        }),
        Command::Serve(args) => run_service(&args),
    }
}

/// Reads the headers from stdin and prints what `render` makes of them.
fn with_stdin_headers(json: bool, render: impl FnOnce(&[(&[u8], &[u8])]) -> String) -> ExitCode {
    let headers = match read_headers(std::io::stdin().lock(), json) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tracehdr: {e}");
            return match e {
                InputError::Read(_) => ExitCode::FAILURE,
                InputError::TooLarge | InputError::Unusable(_) => ExitCode::from(2),
            };
        }
    };
    let output = render(&borrow(&headers));
    emit(&mut std::io::stdout().lock(), output.as_bytes())
}

fn run_service(args: &Serve) -> ExitCode {
    let limits = ServeLimits::default();
    if let Err(e) = raise_descriptor_limit(&limits) {
        eprintln!("tracehdr: cannot raise the open-file limit for clients: {e}");
    }
    let signals = match on_stop_signals() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("tracehdr: cannot handle SIGINT and SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match std::net::TcpListener::bind(args.addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tracehdr: cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tracehdr: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(args.addr);
    let suite = TraceSuite::new(
        SplitMix64::new(args.seed.unwrap_or_else(SplitMix64::clock_seed)),
        CallLimits {
            max_calls: usize::from(args.max_callbacks),
            connect_timeout: args.connect_timeout,
            deadline: args.callback_timeout,
            ..CallLimits::default()
        },
    );
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if signals.wait().await.is_ok() {
                let _ = stop.send(true);
            }
        });
        eprintln!("tracehdr: listening on http://{local}");
        serve(listener, Arc::new(suite), limits, stopped).await;
        Ok::<_, std::io::Error>(())
    });
    // Calls still running past the grace period are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match served {
        Ok(()) => {
            eprintln!("tracehdr: stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tracehdr: cannot serve on {local}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_loopback() {
        assert!(parse_loopback("127.0.0.1:0").is_ok());
        assert!(parse_loopback("[::1]:0").is_ok());
        assert!(parse_loopback("localhost:0").is_ok());
        assert!(parse_loopback("0.0.0.0:0").is_err());
        assert!(parse_loopback("192.0.2.1:80").is_err());
    }

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1e9").is_err());
        assert!(parse_seconds("60").is_ok());
        assert!(parse_seconds("60.5").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
