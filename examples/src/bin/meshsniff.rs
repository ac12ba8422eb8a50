//! `meshsniff [CAPTURE...] [--json] [--top N]`: HTTP transactions and MySQL commands from packet
//! captures (pcap or pcapng, gzip'd or not), as a per-endpoint table or one JSON object per
//! transaction.
//!
//! With no capture it analyses the one bundled in `examples/data`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use examples::capture::open;
use examples::meshsniff::{
    Exchange, Record, Totals, analyze, outcome, outcome_of, seconds, sql_shape,
};
use l7decode::mongo::Operation;
use l7decode::mysql::{Command, Status};
use serde_json::{Value, json};

const USAGE: &str = "usage: meshsniff [CAPTURE...] [--json] [--top N]";

fn main() -> ExitCode {
    let mut paths = Vec::new();
    let mut json_out = false;
    let mut top = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json_out = true,
            "--top" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => top = n,
                None => {
                    eprintln!("meshsniff: --top needs a number\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            flag if flag.starts_with("--") => {
                eprintln!("meshsniff: unknown flag {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
            path => paths.push(PathBuf::from(path)),
        }
    }
    if paths.is_empty() {
        paths.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/mesh_demo.pcap.gz"));
    }
    let mut summary = Table::default();
    // One record's JSON, reused for every record.
    let mut line = Vec::new();
    let mut totals = Totals::default();
    let mut read_any = false;
    let stdout = std::io::stdout();
    // Whole blocks, not a write per line: a capture's records are written as fast as decoded.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    for path in &paths {
        let capture = match open(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("meshsniff: {}: {e}", path.display());
                continue;
            }
        };
        read_any = true;
        // A progress line on stderr, once a capture takes more than a second.
        let started = std::time::Instant::now();
        let (mut seen, mut shown_at) = (0u64, started);
        let (t, failure) = analyze(capture, |r| {
            seen += 1;
            if seen % 1024 == 0 && shown_at.elapsed() >= std::time::Duration::from_secs(1) {
                shown_at = std::time::Instant::now();
                eprint!(
                    "\rmeshsniff: {}: {seen} transactions, {:.0} s",
                    path.display(),
                    started.elapsed().as_secs_f64()
                );
            }
            if json_out {
                let _ = write_record(&mut out, &mut line, &r);
            } else {
                summary.add(&r);
            }
        });
        if shown_at != started {
            eprintln!();
        }
        add(&mut totals, &t);
        if let Some(e) = failure {
            eprintln!(
                "meshsniff: {}: {e} (kept what was decoded before it)",
                path.display()
            );
        }
    }
    if !read_any {
        return ExitCode::FAILURE;
    }
    if !json_out {
        let _ = write!(out, "{}", table(summary, &totals, top));
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn add(total: &mut Totals, t: &Totals) {
    total.packets += t.packets;
    total.segments += t.segments;
    total.connections += t.connections;
    total.gap_bytes += t.gap_bytes;
    total.skipped_bytes += t.skipped_bytes;
    total.tls_connections += t.tls_connections;
    total.unknown_connections += t.unknown_connections;
    total.messages += t.messages;
    total.evicted_connections += t.evicted_connections;
    total.late_segments += t.late_segments;
}

/// The request's headers as `(name, value)` pairs, for `tracectx`.
fn header_pairs(head: &[u8]) -> Vec<(&str, &str)> {
    head.split(|b| *b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = std::str::from_utf8(line.strip_suffix(b"\r").unwrap_or(line)).ok()?;
            let (n, v) = line.split_once(':')?;
            Some((n.trim(), v.trim()))
        })
        .collect()
}

/// A request's trace context, as `--json` writes it.
struct TraceJson {
    format: &'static str,
    sampled: Option<bool>,
    span_id: Box<dyn std::fmt::Display>,
    trace_id: Box<dyn std::fmt::Display>,
}

fn trace(t: &l7decode::Transaction) -> Option<TraceJson> {
    let req = t.request.as_ref()?;
    let head = req.head();
    // Only the names tracectx reads: `traceparent`, `b3` and `x-b3-*`.
    let traced = head.split(|b| *b == b'\n').skip(1).any(|line| {
        let name = |prefix: &[u8]| {
            line.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        name(b"traceparent:") || name(b"b3:") || name(b"x-b3-")
    });
    if !traced {
        return None;
    }
    let headers = header_pairs(head);
    let config = tracectx::Config::default();
    if let Ok(Some(tp)) = tracectx::extract_traceparent(headers.as_slice(), &config) {
        return Some(TraceJson {
            format: "w3c",
            sampled: Some(tp.flags.is_sampled()),
            span_id: Box::new(tp.parent_id),
            trace_id: Box::new(tp.trace_id),
        });
    }
    if let Ok(Some(tracectx::B3::Context(c))) = tracectx::extract_b3(headers.as_slice(), &config) {
        return Some(TraceJson {
            format: "b3",
            sampled: c.sampling.sampled(),
            span_id: Box::new(c.span_id),
            trace_id: Box::new(c.trace_id),
        });
    }
    None
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
            "cursor_id": o.cursor_id,
            "batch_docs": o.batch_docs,
            "reply_flags": o.reply_flags,
            "number_returned": o.number_returned,
            "checksum_ok": o.checksum_ok,
            "status": o.status.as_str(),
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
    match trace(t) {
        Some(trace) => {
            let mut inner = JsonObject::new(o.key("trace"));
            inner.str("format", Some(trace.format));
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
            "status": c.status.as_str(),
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

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank).copied().unwrap_or(0) as f64 / 1e6
}

/// Requests, errors and latencies (ns) of one (protocol, server, endpoint) row.
type Group = (u64, u64, Vec<u64>);

/// The per-endpoint table, built as records arrive (a capture's records are not kept).
#[derive(Default)]
struct Table {
    groups: HashMap<(&'static str, SocketAddr), HashMap<String, Group>>,
    records: u64,
    /// Reused for each record's endpoint, so a record of a known endpoint allocates nothing.
    endpoint: String,
}

impl Table {
    fn add(&mut self, r: &Record) {
        use std::fmt::Write as _;
        self.records += 1;
        let endpoint = &mut self.endpoint;
        endpoint.clear();
        let (proto, failed, latency) = match &r.exchange {
            Exchange::Http(t) => {
                let path = t
                    .uri()
                    .map(|u| u.split('?').next().unwrap_or(u))
                    .unwrap_or("?");
                let _ = write!(endpoint, "{} {}", t.method().unwrap_or("?"), path);
                ("http", outcome(t) != "OK", t.latency_ns())
            }
            Exchange::Mysql(c) => {
                let name = c.name().unwrap_or("COM_?");
                let _ = match c.query() {
                    Some(q) => write!(
                        endpoint,
                        "{} {}",
                        name.trim_start_matches("COM_"),
                        sql_shape(q)
                    ),
                    None => write!(endpoint, "{name}"),
                };
                let failed = matches!(c.status, Status::Err | Status::Missing);
                ("mysql", failed, c.latency_ns())
            }
            Exchange::Mongo(o) => {
                let _ = write!(endpoint, "{}", o.command().unwrap_or("?"));
                let _ = match (o.db(), o.target_collection()) {
                    (Some(db), Some(coll)) => write!(endpoint, " {db}.{coll}"),
                    (Some(db), None) => write!(endpoint, " {db}"),
                    _ => Ok(()),
                };
                use l7decode::mongo::Status as S;
                let failed = !matches!(o.status, S::Ok | S::NoResponseExpected);
                ("mongo", failed, o.latency_ns())
            }
        };
        let endpoints = self.groups.entry((proto, r.server)).or_default();
        let entry = match endpoints.get_mut(endpoint.as_str()) {
            Some(entry) => entry,
            None => endpoints.entry(endpoint.clone()).or_default(),
        };
        entry.0 += 1;
        entry.1 += u64::from(failed);
        if let Some(l) = latency {
            entry.2.push(l);
        }
    }
}

/// The per-endpoint table: protocol, server, `METHOD /path` or a statement's shape, requests,
/// errors, latency p50/p90/p99.
fn table(table: Table, totals: &Totals, top: usize) -> String {
    let records = table.records;
    let groups: BTreeMap<(&str, String, String), Group> = table
        .groups
        .into_iter()
        .flat_map(|((proto, server), endpoints)| {
            let server = server.to_string();
            endpoints
                .into_iter()
                .map(move |(endpoint, group)| ((proto, server.clone(), endpoint), group))
        })
        .collect();
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let mut out = format!(
        "{:<5} {:<22} {:<50} {:>8} {:>7} {:>9} {:>9} {:>9}\n",
        "proto", "server", "endpoint", "requests", "errors", "p50 ms", "p90 ms", "p99 ms"
    );
    for ((proto, server, endpoint), (n, errors, mut lat)) in rows.into_iter().take(top) {
        lat.sort_unstable();
        let endpoint = match endpoint.char_indices().nth(49) {
            Some((cut, _)) => format!("{}…", &endpoint[..cut]),
            None => endpoint,
        };
        // Commands that get no reply have no latency.
        let quantile = |p: f64| {
            if lat.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.3}", percentile(&lat, p))
            }
        };
        out.push_str(&format!(
            "{:<5} {:<22} {:<50} {:>8} {:>7} {:>9} {:>9} {:>9}\n",
            proto,
            server,
            endpoint,
            n,
            errors,
            quantile(50.0),
            quantile(90.0),
            quantile(99.0)
        ));
    }
    out.push_str(&format!(
        "\n{} packets, {} TCP connections ({} TLS, {} other), {} transactions, {} bytes lost by the capture, {} bytes skipped while resynchronising\n",
        totals.packets, totals.connections, totals.tls_connections, totals.unknown_connections, records, totals.gap_bytes, totals.skipped_bytes
    ));
    // What the flow tracker's bounds did, when they did anything.
    if totals.evicted_connections + totals.late_segments > 0 {
        out.push_str(&format!(
            "{} connections evicted (silent too long, or over the flow tracker's bounds), {} segments of closed connections dropped\n",
            totals.evicted_connections, totals.late_segments
        ));
    }
    out
}
