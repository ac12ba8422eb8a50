//! `meshsniff`: HTTP transactions, MySQL commands and MongoDB operations from packet captures
//! (pcap or pcapng, gzip'd or not) or from a live interface, as a per-endpoint table, one JSON
//! object per record, and (live) Prometheus metrics.
//!
//! With no capture and no `--interface` it analyses the one bundled in `examples/data`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use examples::capture::live::{LiveCapture, LiveConfig, RingConfig};
use examples::capture::open;
use examples::exposition::Format;
use examples::meshsniff::metrics::{AgentCounters, Exposition, MetricsState, SharedState};
use examples::meshsniff::series::SeriesTable;
use examples::meshsniff::sketch::RELATIVE_ERROR;
use examples::meshsniff::trace::trace_context;
use examples::meshsniff::watch::{self, Next, StopWhen};
use examples::meshsniff::{Exchange, Record, Totals, analyze_until, outcome_of, seconds};
use examples::serve::{ServeLimits, get_only, raise_descriptor_limit, serve};
use examples::signals::on_stop_signals;
use l7decode::flows::FlowLimits;
use l7decode::mongo::Operation;
use l7decode::mysql::Command;
use serde_json::{Value, json};

/// HTTP, MySQL and MongoDB records from packet captures or a live interface.
#[derive(Debug, Parser)]
#[command(name = "meshsniff", version)]
struct Args {
    /// Capture files (pcap or pcapng, optionally gzip'd); the bundled demo capture when none is
    /// given and no --interface.
    #[arg(conflicts_with = "interface")]
    captures: Vec<PathBuf>,
    /// One JSON object per record on stdout (line-buffered when live), instead of the table.
    #[arg(long)]
    json: bool,
    /// Rows of the table.
    #[arg(long, default_value_t = 20, value_name = "N")]
    top: usize,
    /// Most (protocol, server, endpoint) series kept; past it records count in `other` series.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_series: usize,
    /// Capture live on this interface (Linux; needs CAP_NET_RAW).
    #[arg(long, short = 'i', value_name = "IFACE")]
    interface: Option<String>,
    /// Live: keep only TCP to or from this port (repeatable).
    #[arg(long = "port", value_name = "P", requires = "interface")]
    ports: Vec<u16>,
    /// Live: keep only TCP to or from this address (repeatable).
    #[arg(long = "host", value_name = "ADDR", requires = "interface")]
    hosts: Vec<IpAddr>,
    /// Live: serve Prometheus metrics at http://ADDR/metrics while capturing.
    #[arg(long, value_name = "ADDR", requires = "interface")]
    listen: Option<SocketAddr>,
    /// Live: stop after this long (`30s`, `5m`, `1h`, `250ms`; default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "D", value_parser = parse_duration, requires = "interface")]
    duration: Option<Duration>,
    /// Live: the capture ring's size in MiB (1 MiB blocks).
    #[arg(long, default_value_t = 8, value_name = "MIB", requires = "interface")]
    ring_mb: usize,
}

/// `250ms`, `30s`, `5m`, `1h`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 30s, 5m, 1h)"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return usage_exit(&e),
    };
    let state: SharedState = Arc::new(Mutex::new(MetricsState {
        series: SeriesTable::new(args.max_series),
        agent: AgentCounters::default(),
    }));
    let stdout = std::io::stdout();
    let mut output = Output {
        out: std::io::BufWriter::with_capacity(64 << 10, stdout.lock()),
        line: Vec::new(),
        json: args.json,
        live: args.interface.is_some(),
        failed: None,
    };
    let (totals, mut status, unread) = match &args.interface {
        Some(interface) => match live(&args, interface, &state, &mut output) {
            Ok((totals, status)) => (totals, status, None),
            Err(code) => return code,
        },
        None => {
            let run = files(&args, &state, &mut output);
            let status = if run.unread().is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
            (run.totals, status, run.unread())
        }
    };
    if !args.json && output.failed.is_none() {
        let state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = table(&state.series, &totals, args.top);
        if let Some(unread) = &unread {
            text.push_str(&format!("{unread}: the figures above are of the rest\n"));
        }
        if let Err(e) = output.out.write_all(text.as_bytes()) {
            output.failed.get_or_insert(e);
        }
    }
    if output.failed.is_none()
        && let Err(e) = output.out.flush()
    {
        output.failed = Some(e);
    }
    match output.failed {
        // A closed pipe (`| head`) ends quietly.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        // Any other write error is the run's failure.
        Some(e) => {
            eprintln!("meshsniff: writing the output: {e}");
            status = ExitCode::FAILURE;
        }
        None => {
            if let Some(unread) = unread {
                eprintln!("meshsniff: {unread}");
            }
        }
    }
    status
}

/// clap's answer to `--help`, `--version` or a usage error: printed, and the exit code (0, or 2
/// for a usage error). Help that cannot be written is a failure like any other output.
fn usage_exit(e: &clap::Error) -> ExitCode {
    let printed = e.print().and_then(|()| std::io::stdout().flush());
    match printed {
        Err(failed) if !e.use_stderr() && failed.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("meshsniff: writing the output: {failed}");
            ExitCode::FAILURE
        }
        _ => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2)),
    }
}

/// Where records go: JSON lines (line by line when live), and the write error that ended them.
struct Output<W: Write> {
    out: W,
    /// One record's JSON, reused for every record.
    line: Vec<u8>,
    json: bool,
    live: bool,
    failed: Option<std::io::Error>,
}

impl<W: Write> Output<W> {
    /// Writes a record (when `--json`); `Stop` once the output has failed, so the caller
    /// stops at once rather than decode what nobody can read.
    fn record(&mut self, r: &Record) -> Next {
        if self.failed.is_some() {
            return Next::Stop;
        }
        if !self.json {
            return Next::Continue;
        }
        let mut written = write_record(&mut self.out, &mut self.line, r);
        if self.live && written.is_ok() {
            // `| jq` sees each record as it completes.
            written = self.out.flush();
        }
        match written {
            Ok(()) => Next::Continue,
            Err(e) => {
                self.failed = Some(e);
                Next::Stop
            }
        }
    }
}

/// What file mode did.
#[derive(Debug, Default)]
struct FilesRun {
    totals: Totals,
    /// Captures given (or the bundled one).
    captures: usize,
    /// Captures that could not be opened or are not captures.
    unreadable: usize,
    /// Captures read up to an error (cut short, malformed).
    cut_short: usize,
}

impl FilesRun {
    /// The summary of what could not be read, if anything could not.
    fn unread(&self) -> Option<String> {
        let n = self.captures;
        match (self.unreadable, self.cut_short) {
            (0, 0) => None,
            (a, 0) => Some(format!("{a} of {n} captures could not be read")),
            (0, b) => Some(format!("{b} of {n} captures could not be read to the end")),
            (a, b) => Some(format!(
                "{a} of {n} captures could not be read, {b} not to the end"
            )),
        }
    }
}

/// File mode: every capture in turn. Captures that cannot be read are reported and counted,
/// and the rest processed; once the output fails, nothing more is read.
fn files<W: Write>(args: &Args, state: &SharedState, output: &mut Output<W>) -> FilesRun {
    let mut paths = args.captures.clone();
    if paths.is_empty() {
        paths.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mesh_demo.pcap.gz"));
    }
    let mut run = FilesRun {
        captures: paths.len(),
        ..FilesRun::default()
    };
    for path in &paths {
        let mut capture = match open(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("meshsniff: {}: {e}", path.display());
                run.unreadable += 1;
                continue;
            }
        };
        // A progress line on stderr, once a capture takes more than a second.
        let started = Instant::now();
        let (mut seen, mut shown_at) = (0u64, started);
        let (t, failure) = analyze_until(&mut capture, FlowLimits::default(), |r| {
            seen += 1;
            if seen % 1024 == 0 && shown_at.elapsed() >= Duration::from_secs(1) {
                shown_at = Instant::now();
                eprint!(
                    "\rmeshsniff: {}: {seen} transactions, {:.0} s",
                    path.display(),
                    started.elapsed().as_secs_f64()
                );
            }
            if !args.json {
                state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .series
                    .add(&r);
            }
            match output.record(&r) {
                Next::Continue => ControlFlow::Continue(()),
                Next::Stop => ControlFlow::Break(()),
            }
        });
        if shown_at != started {
            eprintln!();
        }
        add(&mut run.totals, &t);
        if output.failed.is_some() {
            // Nobody reads the output any more: stop here, without further remarks.
            break;
        }
        for &(link, n) in capture.skipped_link_types() {
            eprintln!(
                "meshsniff: {}: {n} packet{} of link type {link} skipped: no decoder for it",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
        }
        if let Some(e) = failure {
            eprintln!(
                "meshsniff: {}: {e} (kept what was decoded before it)",
                path.display()
            );
            run.cut_short += 1;
        }
    }
    run
}

/// Live mode: capture until a signal or `--duration`, serving `/metrics` when asked.
fn live<W: Write>(
    args: &Args,
    interface: &str,
    state: &SharedState,
    output: &mut Output<W>,
) -> Result<(Totals, ExitCode), ExitCode> {
    let config = LiveConfig {
        ports: args.ports.clone(),
        hosts: args.hosts.clone(),
        ring: RingConfig {
            block_count: args.ring_mb.max(2),
            ..RingConfig::default()
        },
        ..LiveConfig::new(interface)
    };
    let mut capture = LiveCapture::open(&config).map_err(|e| {
        eprintln!("meshsniff: {e}");
        ExitCode::FAILURE
    })?;
    let signals = on_stop_signals().map_err(|e| {
        eprintln!("meshsniff: cannot handle SIGINT and SIGTERM: {e}");
        ExitCode::FAILURE
    })?;
    let server = match args.listen {
        Some(addr) => Some(MetricsServer::start(addr, state)?),
        None => None,
    };
    eprintln!(
        "meshsniff: capturing on {interface}: {}{}; SIGINT or SIGTERM ends it",
        capture.filter_description(),
        server
            .as_ref()
            .map(|s| format!(", metrics at http://{}/metrics", s.addr))
            .unwrap_or_default()
    );
    let stop = StopWhen {
        signalled: signals.flag(),
        deadline: args.duration.map(|d| Instant::now() + d),
    };
    let (summary, failure) = watch::run(&mut capture, FlowLimits::default(), state, stop, |r| {
        output.record(r)
    });
    if let Some(server) = server {
        server.stop();
    }
    let (k, f) = (summary.kernel, &summary.flows);
    eprintln!(
        "meshsniff: {} packets captured, {} dropped by the kernel ({} ring freezes); {} flows: {} closed (FIN, RST or reused), {} evicted, {} open at the end",
        summary.capture.packets,
        k.drops,
        k.freezes,
        f.flows_opened,
        f.closed_fin + f.closed_rst + f.closed_reused,
        f.evicted_idle + f.evicted_max_flows + f.evicted_budget,
        f.closed_end_of_input
    );
    match failure {
        Some(e) => {
            eprintln!("meshsniff: {e}");
            Ok((summary.totals, ExitCode::FAILURE))
        }
        None => Ok((summary.totals, ExitCode::SUCCESS)),
    }
}

/// `/metrics` served on a thread of its own (a single-threaded tokio runtime: scrapes are small
/// next to the capture, which keeps its own thread).
struct MetricsServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl MetricsServer {
    fn start(addr: SocketAddr, state: &SharedState) -> Result<Self, ExitCode> {
        let fail = |what: &str, e: std::io::Error| {
            eprintln!("meshsniff: {what} {addr}: {e}");
            ExitCode::FAILURE
        };
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| fail("cannot listen on", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| fail("cannot listen on", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| fail("cannot listen on", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("cannot start the server for", e))?;
        let limits = ServeLimits::default();
        if let Err(e) = raise_descriptor_limit(&limits) {
            eprintln!("meshsniff: cannot raise the open-file limit for /metrics clients: {e}");
        }
        let exposition = Exposition::new(Arc::clone(state));
        let handler = get_only("/metrics", move |request| {
            let accept = request
                .headers
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            (format.content_type(), exposition.encode(format))
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, handler, limits, stopped).await,
                    Err(e) => eprintln!("meshsniff: cannot serve /metrics: {e}"),
                }
            });
        });
        Ok(Self { addr, stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

fn add(total: &mut Totals, t: &Totals) {
    total.packets += t.packets;
    total.segments += t.segments;
    total.connections += t.connections;
    total.gap_bytes += t.gap_bytes;
    total.skipped_bytes += t.skipped_bytes;
    total.other_bytes += t.other_bytes;
    total.tls_connections += t.tls_connections;
    total.unknown_connections += t.unknown_connections;
    total.messages += t.messages;
    total.evicted_connections += t.evicted_connections;
    total.late_segments += t.late_segments;
}

/// Writes one record as a line of JSON.
fn write_record(out: &mut impl Write, line: &mut Vec<u8>, r: &Record) -> std::io::Result<()> {
    line.clear();
    match &r.exchange {
        Exchange::Http(t) => http_line(line, r, t),
        Exchange::Mysql(c) => serde_json::to_writer(&mut *line, &mysql_json(r, c))?,
        Exchange::Mongo(o) => serde_json::to_writer(&mut *line, &mongo_json(r, o))?,
    }
    line.push(b'\n');
    out.write_all(line)
}

/// One JSON object written field by field: the HTTP record is the one a busy capture has by the
/// hundred thousand, and building a `serde_json::Value` (or running the derived serializer,
/// which escapes every key byte by byte) cost several times the decoding. Keys are trusted
/// literals written in the order `Value` sorts them; values are written as serde_json writes
/// them (its own float formatting and string escaping), so the output is the same bytes.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    fields: usize,
}

impl<'a> JsonObject<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, fields: 0 }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if self.fields > 0 {
            self.out.push(b',');
        }
        self.fields += 1;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn null(&mut self, key: &str) {
        self.key(key).extend_from_slice(b"null");
    }

    fn str(&mut self, key: &str, value: Option<&str>) {
        let Some(value) = value else {
            return self.null(key);
        };
        let out = self.key(key);
        // Most values need no escape: copied as they are.
        if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(value.as_bytes());
            out.push(b'"');
        } else {
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }

    fn display(&mut self, key: &str, value: &dyn std::fmt::Display) {
        let out = self.key(key);
        out.push(b'"');
        let _ = write!(out, "{value}");
        out.push(b'"');
    }

    fn addr(&mut self, key: &str, addr: &SocketAddr) {
        let out = self.key(key);
        out.push(b'"');
        push_addr(out, addr);
        out.push(b'"');
    }

    fn uint(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(n) => {
                let mut digits = itoa::Buffer::new();
                self.key(key).extend_from_slice(digits.format(n).as_bytes());
            }
            None => self.null(key),
        }
    }

    fn float(&mut self, key: &str, value: Option<f64>) {
        match value {
            Some(x) => {
                let _ = serde_json::to_writer(&mut *self.key(key), &x);
            }
            None => self.null(key),
        }
    }

    fn bool(&mut self, key: &str, value: Option<bool>) {
        match value {
            Some(b) => self
                .key(key)
                .extend_from_slice(if b { b"true" } else { b"false" }),
            None => self.null(key),
        }
    }

    fn strs<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) {
        self.key(key).push(b'[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let _ = serde_json::to_writer(&mut *self.out, value);
        }
        self.out.push(b']');
    }

    fn uints(&mut self, key: &str, values: impl IntoIterator<Item = u64>) {
        self.key(key).push(b'[');
        let mut digits = itoa::Buffer::new();
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(digits.format(value).as_bytes());
        }
        self.out.push(b']');
    }

    fn finish(self) {
        self.out.push(b'}');
    }
}

/// A socket address as `Display` writes it, with IPv4 formatted by hand (the standard
/// `Display` costs more than the rest of a record).
fn push_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    let SocketAddr::V4(v4) = addr else {
        let _ = write!(out, "{addr}");
        return;
    };
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        out.extend_from_slice(digits.format(octet).as_bytes());
        out.push(if i < 3 { b'.' } else { b':' });
    }
    out.extend_from_slice(digits.format(v4.port()).as_bytes());
}

/// The fields every MySQL and MongoDB record shares: protocol, endpoints, the four times and the
/// two latencies.
fn exchange_json(
    proto: &str,
    r: &Record,
    req: Option<l7decode::Span>,
    resp: Option<l7decode::Span>,
) -> Value {
    let micros = |a: Option<l7decode::Span>, b: Option<l7decode::Span>, first: bool| {
        a.zip(b).map(|(a, b)| {
            let to = if first { b.first } else { b.last };
            a.last.nanos_until(to) as f64 / 1e3
        })
    };
    json!({
        "proto": proto,
        "client": r.client.to_string(),
        "server": r.server.to_string(),
        "req_first_time": req.map(|s| seconds(s.first)),
        "req_time": req.map(|s| seconds(s.last)),
        "resp_first_time": resp.map(|s| seconds(s.first)),
        "resp_last_time": resp.map(|s| seconds(s.last)),
        "latency_us": micros(req, resp, false),
        "ttfb_us": micros(req, resp, true),
    })
}

/// Adds `more`'s fields to the object `v`.
fn extend(v: &mut Value, more: Value) {
    if let (Some(v), Value::Object(more)) = (v.as_object_mut(), more) {
        v.extend(more);
    }
}

fn opcode_name(opcode: i32) -> Value {
    l7decode::mongo::wire::opcode_name(opcode).map_or_else(|| json!(opcode), |n| json!(n))
}

fn mongo_json(r: &Record, o: &Operation) -> Value {
    let (req, resp) = (o.request, o.response);
    let sequences: serde_json::Map<String, Value> = o
        .sequences()
        .map(|(id, n)| (id.to_owned(), json!(n)))
        .collect();
    let mut v = exchange_json("mongo", r, req, resp);
    extend(
        &mut v,
        json!({
            "request_id": o.request_id,
            "opcode": opcode_name(o.opcode),
            "compressed": o.compressor.is_some(),
            "compressor": o.compressor.map(|c| match c { 0 => "noop", 1 => "snappy", 2 => "zlib", 3 => "zstd", _ => "unknown" }),
            "command": o.command(),
            "db": o.db(),
            "collection": o.collection(),
            "kind1_sections": sequences,
            "more_to_come": o.more_to_come,
            "exhaust_allowed": o.exhaust_allowed,
            "req_bytes": req.map(|s| s.bytes),
            "resp_opcode": o.response_opcode.map(opcode_name),
            "resp_compressed": o.response_compressed,
            "resp_messages": o.response_messages,
            "resp_more_to_come_chain": o.reply_chain(),
            "ok": o.ok,
            "errmsg": o.errmsg(),
            "code": o.code,
            "code_name": o.code_name(),
            "n": o.n,
            "write_error_codes": o.write_error_codes(),
            "write_errors": o
                .write_errors()
                .map(|(code, errmsg)| json!({"code": code, "errmsg": errmsg}))
                .collect::<Vec<_>>(),
            "cursor_id": o.cursor_id,
            "batch_docs": o.batch_docs,
            "reply_flags": o.reply_flags,
            "number_returned": o.number_returned,
            "checksum_ok": o.checksum_ok,
            "status": o.outcome.as_str(),
            "flags": flag_names(o.flags),
        }),
    );
    v
}

fn flag_names(f: l7decode::Flags) -> Vec<&'static str> {
    [
        (f.gap, "gap"),
        (f.orphan, "orphan"),
        (f.missing_response, "missing_response"),
        (f.upgraded, "upgraded"),
        (f.te_and_cl, "te_and_cl"),
        (f.truncated, "truncated"),
    ]
    .iter()
    .filter_map(|(on, name)| on.then_some(*name))
    .collect()
}

/// An HTTP record as one JSON object (the same fields and bytes as `serde_json::Value` gave).
fn http_line(line: &mut Vec<u8>, r: &Record, t: &l7decode::Transaction) {
    let time = |m: Option<&l7decode::Message>, first: bool| {
        m.map(|m| seconds(if first { m.first } else { m.last }))
    };
    let (req, resp) = (t.request.as_ref(), t.response.as_ref());
    // Each accessor reads the start line again: once each.
    let status = t.status();
    let mut o = JsonObject::new(line);
    o.addr("client", &r.client);
    o.strs("flags", flag_names(t.flags));
    o.uints(
        "interim_statuses",
        t.interim_statuses().iter().map(|s| u64::from(*s)),
    );
    o.float("latency_us", t.latency_ns().map(|n| n as f64 / 1e3));
    o.str("method", t.method());
    o.str("outcome", Some(outcome_of(status)));
    o.str("proto", Some("http"));
    o.str("reason", t.reason());
    o.uint("req_body_bytes", req.map(|m| m.body_bytes));
    o.float("req_first_time", time(req, true));
    o.float("req_time", time(req, false));
    o.str(
        "req_version",
        t.request_version().and_then(|v| v.strip_prefix("HTTP/")),
    );
    o.uint("resp_body_bytes", resp.map(|m| m.body_bytes));
    o.float("resp_first_time", time(resp, true));
    o.float("resp_last_time", time(resp, false));
    o.addr("server", &r.server);
    o.uint("status", status.map(u64::from));
    match req.and_then(|m| trace_context(m.head())) {
        Some(trace) => {
            let mut inner = JsonObject::new(o.key("trace"));
            inner.str("format", Some(trace.format.label()));
            inner.bool("sampled", trace.sampled);
            inner.display("span_id", &trace.span_id);
            inner.display("trace_id", &trace.trace_id);
            inner.finish();
        }
        None => o.null("trace"),
    }
    o.float("ttfb_us", t.ttfb_ns().map(|n| n as f64 / 1e3));
    o.str("uri", t.uri());
    o.finish();
}

/// The query's first 512 characters, and whether that is less than all of it.
fn query_512(c: &Command) -> (Option<String>, bool) {
    let Some(q) = c.query() else {
        return (None, false);
    };
    let cut: String = q.chars().take(512).collect();
    let truncated = c.query_truncated() || cut.len() < q.len();
    (Some(cut), truncated)
}

fn mysql_json(r: &Record, c: &Command) -> Value {
    let (req, resp) = (c.request, c.response);
    let (query, query_truncated) = query_512(c);
    let mut v = exchange_json("mysql", r, req, resp);
    extend(
        &mut v,
        json!({
            "command": c.name(),
            "command_code": c.code,
            "query": query,
            "query_truncated": query_truncated,
            "stmt_id": c.stmt_id,
            "prepared_stmt_id": c.prepared_stmt_id,
            "status": c.outcome.as_str(),
            "error_code": c.error_code,
            "error_message": c.error_message(),
            "affected_rows": c.affected_rows,
            "num_fields": c.num_fields,
            "rows": c.rows,
            "flags": flag_names(c.flags),
        }),
    );
    if c.code.is_none() {
        v["user"] = json!(c.user());
        v["schema"] = json!(c.schema());
        v["server_version"] = json!(c.server_version());
    }
    v
}

/// The per-endpoint table: protocol, server, `METHOD /path` or a statement's shape, requests,
/// errors, latency p50/p90/p99 (from the series' sketches: within the documented relative
/// error of the exact values).
fn table(series: &SeriesTable, totals: &Totals, top: usize) -> String {
    let mut rows: Vec<_> = series
        .iter()
        .map(|(protocol, server, endpoint, s)| {
            ((protocol.label(), server.to_string(), endpoint), s)
        })
        .collect();
    rows.sort_by(|a, b| b.1.requests().cmp(&a.1.requests()).then(a.0.cmp(&b.0)));
    let mut out = format!(
        "{:<7} {:<22} {:<50} {:>8} {:>7} {:>9} {:>9} {:>9}\n",
        "proto", "server", "endpoint", "requests", "errors", "p50 ms", "p90 ms", "p99 ms"
    );
    for ((proto, server, endpoint), s) in rows.into_iter().take(top) {
        let endpoint = match endpoint.char_indices().nth(49) {
            Some((cut, _)) => format!("{}…", &endpoint[..cut]),
            None => endpoint.to_owned(),
        };
        // Commands that get no reply have no latency.
        let quantile = |q: f64| {
            s.sketch
                .quantile(q)
                .map_or_else(|| "-".to_owned(), |us| format!("{:.3}", us / 1e3))
        };
        out.push_str(&format!(
            "{:<7} {:<22} {:<50} {:>8} {:>7} {:>9} {:>9} {:>9}\n",
            proto,
            server,
            endpoint,
            s.requests(),
            s.errors(),
            quantile(0.5),
            quantile(0.9),
            quantile(0.99)
        ));
    }
    out.push_str(&format!(
        "\n{} packets, {} TCP connections ({} TLS, {} other), {} transactions, {} bytes lost by the capture, {} bytes skipped while resynchronising\n",
        totals.packets, totals.connections, totals.tls_connections, totals.unknown_connections, series.records(), totals.gap_bytes, totals.skipped_bytes
    ));
    if totals.other_bytes > 0 {
        out.push_str(&format!(
            "{} bytes of other traffic (TLS and protocols not decoded)\n",
            totals.other_bytes
        ));
    }
    out.push_str(&format!(
        "latency quantiles within {:.2} % of the exact values\n",
        RELATIVE_ERROR * 100.0
    ));
    if series.refused() > 0 {
        out.push_str(&format!(
            "{} records counted in `other` series: more than --max-series {} endpoints\n",
            series.refused(),
            series.len()
        ));
    }
    // What the flow tracker's bounds did, when they did anything.
    if totals.evicted_connections + totals.late_segments > 0 {
        out.push_str(&format!(
            "{} connections evicted (silent too long, or over the flow tracker's bounds), {} segments of closed connections dropped\n",
            totals.evicted_connections, totals.late_segments
        ));
    }
    out
}
