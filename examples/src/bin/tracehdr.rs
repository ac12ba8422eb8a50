//! `tracehdr`: inspect trace-context headers, print the headers a proxy would send for a child
//! span, or serve the W3C trace-context test suite, all with `tracectx`.
//!
//! ```text
//! tracehdr inspect [--json]                 headers on stdin -> one JSON object, a member per format
//! tracehdr child [--seed N] [--json]        headers on stdin -> the child span's headers
//! tracehdr serve --addr ADDR [--seed N]     the W3C trace-context test-suite service (loopback only)
//! ```
//!
//! Headers on stdin are `Name: value` lines (split at the first `:`, one optional space after it
//! stripped, the rest kept byte-exact; repeated names allowed; blank lines ignored; CRLF
//! tolerated), or with `--json` a JSON array of `[name, value]` pairs.
//!
//! Exit status: 0 when a result was printed (invalid headers included), 1 for I/O errors, 2 for
//! usage errors and unparseable input.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tracectx::{
    B3, B3_SINGLE_MAX_LEN, Carrier, Config, Error, REQUEST_ID_LEN, RandomSource, Sampling,
    TRACEPARENT_LEN, TraceParent, TraceState, child_b3, child_traceparent, decode_ot_span_context,
    extract_b3, extract_baggage, extract_traceparent, extract_tracestate, generate_request_id,
    new_traceparent, request_id_integer, sampling_bucket, trace_reason, write_b3_single,
    write_traceparent,
};

const USAGE: &str = "usage: tracehdr inspect [--json]
       tracehdr child [--seed N] [--json]
       tracehdr serve --addr ADDR [--seed N]

  inspect       read one request's headers from stdin and print one JSON object with a member per
                format (traceparent, tracestate, b3, baggage, request_id, ot_span_context), each
                with result absent, valid or invalid (b3 also sampling_only) and the fields
  child         read headers from stdin and print the traceparent, tracestate, b3, x-request-id
                and baggage headers a proxy would send for a child span, one `name: value` a line
  serve         the W3C trace-context test-suite service: POST a JSON array of
                {\"url\": ..., \"arguments\": [...]}; each loopback url is called with a child
                traceparent and the tracestate; answers 200 when done
  --json        stdin is a JSON array of [name, value] pairs instead of `Name: value` lines
  --seed N      seed of the deterministic random source (child: default 1; serve: default from
                the clock)
  --addr ADDR   loopback address to listen on, e.g. 127.0.0.1:8080 (port 0 picks one)";

/// Largest request head `serve` reads.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request (or response) body `serve` reads.
const MAX_BODY: usize = 1024 * 1024;
/// Read, write and connect timeout of `serve`.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Room for a re-written `tracestate`.
const TRACESTATE_BUF: usize = 4096;

/// Owned header fields, in order.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Inspect { json: bool },
    Child { json: bool, seed: u64 },
    Serve { addr: SocketAddr, seed: Option<u64> },
}

fn parse_seed(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("--seed needs an unsigned integer, not {value:?}"))
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
            .map_err(|_| format!("--addr needs IP:PORT, not {value:?}"))?,
    };
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr}: only loopback addresses are allowed"
        ));
    }
    Ok(addr)
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("a command is needed".to_owned());
    };
    let mut json = false;
    let mut seed = None;
    let mut addr = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match (command.as_str(), flag.as_str()) {
            ("inspect" | "child", "--json") => json = true,
            ("child" | "serve", "--seed") => seed = Some(parse_seed(&value()?)?),
            ("serve", "--addr") => addr = Some(parse_loopback(&value()?)?),
            (_, "-h" | "--help") => return Err(String::new()),
            _ => return Err(format!("unknown argument {flag:?} for {command:?}")),
        }
    }
    match command.as_str() {
        "inspect" => Ok(Command::Inspect { json }),
        "child" => Ok(Command::Child {
            json,
            seed: seed.unwrap_or(1),
        }),
        "serve" => {
            let addr = addr.ok_or_else(|| "serve needs --addr ADDR".to_owned())?;
            Ok(Command::Serve { addr, seed })
        }
        "-h" | "--help" => Err(String::new()),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn main() -> ExitCode {
    let command = match examples::cli::args_or_usage("tracehdr", USAGE, parse_args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match command {
        Command::Inspect { json } => with_stdin_headers(json, |h| format!("{}\n", inspect(h))),
        Command::Child { json, seed } => with_stdin_headers(json, |h| {
            let mut rng = splitmix64(seed);
            child(h, &mut rng)
                .iter()
                .map(|(name, value)| format!("{name}: {value}\n"))
                .collect()
        }),
        Command::Serve { addr, seed } => serve(addr, seed.unwrap_or_else(clock_seed)),
    }
}

/// Reads the headers from stdin and prints what `render` makes of them.
fn with_stdin_headers(json: bool, render: impl FnOnce(&[(&[u8], &[u8])]) -> String) -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = io::stdin().lock().read_to_end(&mut input) {
        eprintln!("tracehdr: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let parsed = if json {
        parse_json_headers(&input)
    } else {
        parse_header_lines(&input)
    };
    let headers = match parsed {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tracehdr: unusable input: {e}");
            return ExitCode::from(2);
        }
    };
    let view = borrow(&headers);
    let mut out = io::stdout().lock();
    match out
        .write_all(render(&view).as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracehdr: cannot write: {e}");
            ExitCode::FAILURE
        }
    }
}

fn borrow(headers: &Headers) -> Vec<(&[u8], &[u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect()
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// `Name: value` lines: split at the first `:`, one optional space after it stripped, the value
/// otherwise byte-exact; blank lines ignored; a trailing CR dropped.
fn parse_header_lines(input: &[u8]) -> Result<Headers, String> {
    let mut headers = Vec::new();
    for (n, line) in input.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Err(format!("line {} has no ':'", n + 1));
        };
        let (name, value) = line.split_at(colon);
        let name = trim_ascii(name);
        if name.is_empty() {
            return Err(format!("line {} has an empty name", n + 1));
        }
        let value = value.get(1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        headers.push((name.to_vec(), value.to_vec()));
    }
    Ok(headers)
}

/// A JSON array of `[name, value]` string pairs, kept byte-exact.
fn parse_json_headers(input: &[u8]) -> Result<Headers, String> {
    let doc: Value = serde_json::from_slice(input).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(pairs) = doc else {
        return Err("expected a JSON array of [name, value] pairs".to_owned());
    };
    pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(n), Value::String(v)]) => {
                Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            }
            _ => Err(format!(
                "element {i} is not a [name, value] pair of strings"
            )),
        })
        .collect()
}

/// SplitMix64 as a [`RandomSource`]: deterministic for a seed.
fn splitmix64(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut state = seed;
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let bytes = z.to_le_bytes();
            chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or_default());
        }
    }
}

/// A seed from the clock and the process id, for `serve`.
fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn absent() -> Value {
    json!({"result": "absent"})
}

fn invalid(e: &Error) -> Value {
    json!({"result": "invalid", "reason": e.to_string()})
}

// ---------------------------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------------------------

fn inspect(h: &[(&[u8], &[u8])]) -> Value {
    let config = Config::default();
    let (traceparent, tracestate) = w3c_json(h, &config);
    json!({
        "traceparent": traceparent,
        "tracestate": tracestate,
        "b3": b3_json(h, &config),
        "baggage": baggage_json(h, &config),
        "request_id": request_id_json(h),
        "ot_span_context": ot_json(h),
    })
}

fn tracestate_list(state: &TraceState<'_>) -> Value {
    Value::Array(
        state
            .iter()
            .map(|(k, v)| json!([lossy(k), lossy(v)]))
            .collect(),
    )
}

/// `traceparent` and `tracestate`; the latter is read only after a valid traceparent.
fn w3c_json(h: &[(&[u8], &[u8])], config: &Config) -> (Value, Value) {
    match extract_traceparent(h, config) {
        Ok(None) => (absent(), absent()),
        Err(e) => (invalid(&e), absent()),
        Ok(Some(tp)) => {
            let traceparent = json!({
                "result": "valid",
                "version": format!("{:02x}", tp.version),
                "trace_id": tp.trace_id.to_string(),
                "parent_id": tp.parent_id.to_string(),
                "flags": format!("{:02x}", tp.flags.0),
                "sampled": tp.flags.is_sampled(),
                "random": tp.flags.is_random(),
            });
            let tracestate = match extract_tracestate(h, config) {
                Ok(None) => absent(),
                Ok(Some(state)) => {
                    json!({"result": "valid", "tracestate": tracestate_list(&state)})
                }
                Err(e) => invalid(&e),
            };
            (traceparent, tracestate)
        }
    }
}

fn b3_json(h: &[(&[u8], &[u8])], config: &Config) -> Value {
    match extract_b3(h, config) {
        Ok(None) => absent(),
        Err(e) => invalid(&e),
        Ok(Some(B3::SamplingOnly(s))) => {
            json!({"result": "sampling_only", "sampled": s.sampled(), "debug": s == Sampling::Debug})
        }
        Ok(Some(B3::Context(c))) => {
            let mut v = json!({
                "result": "valid",
                "trace_id": c.trace_id.to_string(),
                "span_id": c.span_id.to_string(),
                "sampled": c.sampling.sampled(),
                "debug": c.sampling == Sampling::Debug,
                "trace_id_bits": c.trace_id.bits(),
            });
            if let Some(p) = c.parent_span_id {
                v["parent_span_id"] = json!(p.to_string());
            }
            v
        }
        // `B3` is non-exhaustive: a form this program does not know yet.
        Ok(Some(other)) => json!({"result": "unknown", "debug_repr": format!("{other:?}")}),
    }
}

/// Members as `[key, percent-decoded value, [properties]]`; a malformed member makes the whole
/// header invalid.
fn baggage_json(h: &[(&[u8], &[u8])], config: &Config) -> Value {
    if h.get_first("baggage").is_none() {
        return absent();
    }
    let mut members = Vec::new();
    let mut it = extract_baggage(h, config);
    for member in it.by_ref() {
        let m = match member {
            Ok(m) => m,
            Err(e) => return invalid(&e),
        };
        let mut buf = vec![0u8; m.raw_value().len() * 3 + 3];
        let value = match m.decode_value(&mut buf) {
            Ok(v) => v.to_owned(),
            Err(e) => return invalid(&e),
        };
        let props: Vec<String> = m
            .properties()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.to_owned(),
            })
            .collect();
        members.push(json!([m.key(), value, props]));
    }
    json!({"result": "valid", "baggage": members, "dropped": it.dropped()})
}

fn request_id_json(h: &[(&[u8], &[u8])]) -> Value {
    let id = h.get_first("x-request-id");
    let bytes = id.unwrap_or_default();
    json!({
        "result": if id.is_some() { "valid" } else { "absent" },
        "value": id.map(lossy),
        "integer": request_id_integer(bytes),
        "sampling_bucket": sampling_bucket(bytes),
        "trace_reason": trace_reason(bytes).as_str(),
    })
}

fn ot_json(h: &[(&[u8], &[u8])]) -> Value {
    let Some(value) = h.get_first("x-ot-span-context") else {
        return absent();
    };
    let mut scratch = vec![0u8; value.len()];
    match decode_ot_span_context(value, &mut scratch) {
        Ok(c) => {
            let baggage: Map<String, Value> =
                c.baggage().map(|(k, v)| (k.to_owned(), json!(v))).collect();
            json!({
                "result": "valid",
                "trace_id": format!("{:016x}", c.trace_id),
                "span_id": format!("{:016x}", c.span_id),
                "sampled": c.sampled,
                "baggage": baggage,
            })
        }
        Err(e) => invalid(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// child
// ---------------------------------------------------------------------------------------------

/// The incoming trace to continue, if the traceparent is valid, and its tracestate re-written
/// when present, valid and non-empty.
fn incoming_w3c(h: &[(&[u8], &[u8])], config: &Config) -> Option<(TraceParent, Option<String>)> {
    let tp = extract_traceparent(h, config).ok()??;
    let state = match extract_tracestate(h, config) {
        Ok(Some(state)) => {
            let mut buf = [0u8; TRACESTATE_BUF];
            let n = state.write(&mut buf, TRACESTATE_BUF);
            (n > 0).then(|| lossy(buf.get(..n).unwrap_or_default()))
        }
        Ok(None) | Err(_) => None,
    };
    Some((tp, state))
}

fn traceparent_string(tp: &TraceParent) -> String {
    let mut out = [0u8; TRACEPARENT_LEN];
    write_traceparent(tp, &mut out).to_owned()
}

/// The headers a proxy sends for a child span, in order: traceparent, tracestate, b3,
/// x-request-id, baggage.
fn child(h: &[(&[u8], &[u8])], rng: &mut impl RandomSource) -> Vec<(&'static str, String)> {
    let config = Config::default();
    let mut out = Vec::new();
    match incoming_w3c(h, &config) {
        Some((tp, state)) => {
            out.push((
                "traceparent",
                traceparent_string(&child_traceparent(&tp, rng)),
            ));
            if let Some(state) = state {
                out.push(("tracestate", state));
            }
        }
        None => out.push((
            "traceparent",
            traceparent_string(&new_traceparent(rng, true)),
        )),
    }
    let b3 = match extract_b3(h, &config) {
        Ok(Some(B3::Context(c))) => Some(B3::Context(child_b3(&c, rng))),
        Ok(Some(B3::SamplingOnly(s))) if s != Sampling::Defer => Some(B3::SamplingOnly(s)),
        _ => None,
    };
    if let Some(b3) = b3 {
        let mut buf = [0u8; B3_SINGLE_MAX_LEN];
        out.push(("b3", write_b3_single(&b3, &mut buf).to_owned()));
    }
    match h.get_first("x-request-id") {
        Some(id) if !trim_ascii(id).is_empty() => out.push(("x-request-id", lossy(id))),
        _ => {
            let mut buf = [0u8; REQUEST_ID_LEN];
            out.push((
                "x-request-id",
                generate_request_id(rng, &mut buf).to_owned(),
            ));
        }
    }
    for value in h.get_all("baggage") {
        out.push(("baggage", lossy(value)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------------

fn serve(addr: SocketAddr, seed: u64) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tracehdr: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!("tracehdr: listening on http://{local}");
    let mut rng = splitmix64(seed);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, &mut rng) {
                    eprintln!("tracehdr: client: {e}");
                }
            }
            Err(e) => eprintln!("tracehdr: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}

/// A parsed request (or response) head.
#[derive(Debug)]
struct Head {
    /// The first line's words (method, target, version; or version, status, reason).
    start: Vec<String>,
    headers: Headers,
}

impl Head {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// The body length: `Content-Length` (repeated ones must agree), 0 when absent.
    fn content_length(&self) -> Result<Option<usize>, String> {
        let mut found: Option<usize> = None;
        for (_, v) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
        {
            let text = std::str::from_utf8(v).unwrap_or_default();
            let len = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                text.parse::<usize>()
                    .map_err(|_| "Content-Length too large".to_owned())?
            } else {
                return Err("bad Content-Length".to_owned());
            };
            if found.is_some_and(|f| f != len) {
                return Err("conflicting Content-Length".to_owned());
            }
            found = Some(len);
        }
        Ok(found)
    }
}

/// What went wrong with a request: the status to answer with, or nothing when the connection is
/// unusable.
#[derive(Debug)]
enum Reject {
    Status(&'static str, String),
    Io(io::Error),
}

impl From<io::Error> for Reject {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads up to and including CRLFCRLF (at most `MAX_HEAD` bytes); returns the head (without the
/// blank line) and any bytes read past it.
fn read_head(stream: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), Reject> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(Reject::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the head",
            )));
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(i) = buf
            .get(from..)
            .unwrap_or_default()
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = from + i;
            if end > MAX_HEAD {
                break;
            }
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            break;
        }
    }
    Err(Reject::Status(
        "431 Request Header Fields Too Large",
        format!("head longer than {MAX_HEAD} bytes\n"),
    ))
}

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = std::str::from_utf8(lines.next().unwrap_or_default())
        .map_err(|_| "start line is not UTF-8".to_owned())?;
    let start: Vec<String> = start.splitn(3, ' ').map(str::to_owned).collect();
    if start.len() < 2 {
        return Err("malformed start line".to_owned());
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err("folded header lines are not supported".to_owned());
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| "header line without ':'".to_owned())?;
        let (name, value) = line.split_at(colon);
        if name.is_empty() || name.iter().any(u8::is_ascii_whitespace) {
            return Err("malformed header name".to_owned());
        }
        let value = value.get(1..).unwrap_or_default();
        headers.push((name.to_vec(), trim_ascii(value).to_vec()));
    }
    Ok(Head { start, headers })
}

/// Reads the rest of a body of `len` bytes, `already` of it read with the head.
fn read_body(stream: &mut TcpStream, mut already: Vec<u8>, len: usize) -> io::Result<Vec<u8>> {
    already.truncate(len);
    let missing = len - already.len();
    let start = already.len();
    already.resize(len, 0);
    stream.read_exact(already.get_mut(start..start + missing).unwrap_or_default())?;
    Ok(already)
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// One request: read it, make the calls it asks for, answer.
fn answer(mut stream: TcpStream, rng: &mut impl RandomSource) -> io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    match handle(&mut stream, rng) {
        Ok(()) => respond(&mut stream, "200 OK", ""),
        Err(Reject::Status(status, message)) => respond(&mut stream, status, &message),
        Err(Reject::Io(e)) => Err(e),
    }
}

fn bad_request(message: impl Into<String>) -> Reject {
    Reject::Status("400 Bad Request", message.into())
}

fn handle(stream: &mut TcpStream, rng: &mut impl RandomSource) -> Result<(), Reject> {
    let (head, rest) = read_head(stream)?;
    let head = parse_head(&head).map_err(|e| bad_request(format!("{e}\n")))?;
    if head.header("transfer-encoding").is_some() {
        return Err(Reject::Status(
            "411 Length Required",
            "send a Content-Length body\n".to_owned(),
        ));
    }
    let len = head
        .content_length()
        .map_err(|e| bad_request(format!("{e}\n")))?
        .unwrap_or(0);
    if len > MAX_BODY {
        return Err(Reject::Status(
            "413 Content Too Large",
            format!("body longer than {MAX_BODY} bytes\n"),
        ));
    }
    let method = head.start.first().map(String::as_str).unwrap_or_default();
    if method != "POST" {
        // The body (if any) is left unread: the connection closes after the answer.
        return Err(Reject::Status(
            "405 Method Not Allowed",
            "POST a JSON array of {\"url\": ..., \"arguments\": [...]}\n".to_owned(),
        ));
    }
    if head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(stream, rest, len)?;
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("body is not JSON: {e}\n")))?;
    let Value::Array(items) = doc else {
        return Err(bad_request("body is not a JSON array\n"));
    };
    let view = borrow(&head.headers);
    let config = Config::default();
    // Continue the incoming trace, or restart one trace for the whole request.
    let (root, tracestate) =
        incoming_w3c(&view, &config).unwrap_or_else(|| (new_traceparent(rng, true), None));
    for item in &items {
        let Some(url) = item.get("url").and_then(Value::as_str) else {
            eprintln!("tracehdr: skipping an item without a string url");
            continue;
        };
        let Some(target) = LoopbackUrl::parse(url) else {
            eprintln!(
                "tracehdr: skipping {url:?}: only http://127.0.0.1:PORT and http://localhost:PORT urls are called"
            );
            continue;
        };
        let arguments = item.get("arguments").cloned().unwrap_or_else(|| json!([]));
        let payload = arguments.to_string();
        let traceparent = traceparent_string(&child_traceparent(&root, rng));
        let mut headers = vec![("traceparent", traceparent)];
        if let Some(state) = &tracestate {
            headers.push(("tracestate", state.clone()));
        }
        if let Err(e) = post(&target, &headers, payload.as_bytes()) {
            eprintln!("tracehdr: POST {url}: {e}");
        }
    }
    Ok(())
}

/// An `http://127.0.0.1:PORT/...` or `http://localhost:PORT/...` url.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoopbackUrl {
    host: String,
    port: u16,
    path: String,
}

impl LoopbackUrl {
    fn parse(url: &str) -> Option<Self> {
        let scheme = url.get(..7)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return None;
        }
        let rest = url.get(7..)?;
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (host, port) = authority.rsplit_once(':')?;
        if !(host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost")) {
            return None;
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return None;
        }
        Some(Self {
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// POSTs `body` with `headers` and reads (and discards) the response; returns its status line.
fn post(target: &LoopbackUrl, headers: &[(&str, String)], body: &[u8]) -> io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, target.port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\n",
        target.path, target.host, target.port
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let (head, rest) = read_head(&mut stream).map_err(|e| match e {
        Reject::Io(e) => e,
        Reject::Status(_, message) => io::Error::new(io::ErrorKind::InvalidData, message),
    })?;
    let head = parse_head(&head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // Discard the body: Content-Length bytes, else up to EOF (we asked for `Connection: close`),
    // at most MAX_BODY either way.
    let limit = match head.content_length() {
        Ok(Some(len)) => len.min(MAX_BODY),
        _ => MAX_BODY,
    };
    let already = rest.len().min(limit);
    io::copy(
        &mut (&mut stream).take((limit - already) as u64),
        &mut io::sink(),
    )?;
    Ok(head.start.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_values_byte_exact() {
        let h = parse_header_lines(b"a:b\r\n\r\nB:  c \n   \nc: d:e\n").unwrap_or_default();
        assert_eq!(
            h,
            vec![
                (b"a".to_vec(), b"b".to_vec()),
                (b"B".to_vec(), b" c ".to_vec()),
                (b"c".to_vec(), b"d:e".to_vec()),
            ]
        );
        assert!(parse_header_lines(b"no colon\n").is_err());
    }

    #[test]
    fn loopback_urls_only() {
        let u = LoopbackUrl::parse("http://127.0.0.1:7777/callback");
        assert_eq!(
            u,
            Some(LoopbackUrl {
                host: "127.0.0.1".to_owned(),
                port: 7777,
                path: "/callback".to_owned()
            })
        );
        assert!(LoopbackUrl::parse("http://localhost:80").is_some());
        assert!(LoopbackUrl::parse("http://example.com:80/").is_none());
        assert!(LoopbackUrl::parse("https://127.0.0.1:443/").is_none());
        assert!(LoopbackUrl::parse("http://127.0.0.1/").is_none());
        assert!(LoopbackUrl::parse("http://user@127.0.0.1:80/").is_none());
        assert!(LoopbackUrl::parse("http://127.0.0.1:80@evil:80/").is_none());
    }

    #[test]
    fn addresses_must_be_loopback() {
        assert!(parse_loopback("127.0.0.1:0").is_ok());
        assert!(parse_loopback("[::1]:0").is_ok());
        assert!(parse_loopback("localhost:0").is_ok());
        assert!(parse_loopback("0.0.0.0:0").is_err());
        assert!(parse_loopback("192.0.2.1:80").is_err());
    }

    #[test]
    fn splitmix_is_deterministic() {
        let (mut a, mut b) = (splitmix64(7), splitmix64(7));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a(&mut x);
        b(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, [0; 13]);
    }
}
