//! `tracehdr` end to end: `inspect` on every format (line and JSON input), `child` determinism
//! and propagation, usage errors, and `serve` driving a callback server over loopback the way the
//! W3C trace-context test suite does.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

fn tracehdr(args: &[&str], stdin: &[u8]) -> Output {
    testkit::run_with_stdin(env!("CARGO_BIN_EXE_tracehdr"), args, stdin)
}

fn inspect(args: &[&str], stdin: &str) -> Value {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    let out = tracehdr(&all, stdin.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

fn child_headers(args: &[&str], stdin: &str) -> Vec<(String, String)> {
    let mut all = vec!["child"];
    all.extend_from_slice(args);
    let out = tracehdr(&all, stdin.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `00-TRACE-PARENT-FLAGS` split into its parts.
fn traceparent_parts(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

#[test]
fn inspect_w3c_with_tracestate() {
    let v = inspect(
        &[],
        &format!("traceparent: {TRACEPARENT}\ntracestate: {TRACESTATE}\n"),
    );
    let tp = &v["traceparent"];
    assert_eq!(tp["result"], "valid");
    assert_eq!(tp["version"], "00");
    assert_eq!(tp["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tp["parent_id"], "00f067aa0ba902b7");
    assert_eq!(tp["flags"], "01");
    assert_eq!(tp["sampled"], true);
    assert_eq!(tp["random"], false);
    assert_eq!(
        v["tracestate"],
        json!({"result": "valid", "tracestate": [["congo", "t61rcWkgMzE"], ["rojo", "00f067aa0ba902b7"]]})
    );
    for other in ["b3", "baggage", "ot_span_context"] {
        assert_eq!(v[other], json!({"result": "absent"}), "{other}");
    }
    assert_eq!(v["request_id"]["result"], "absent");
    assert_eq!(v["request_id"]["value"], Value::Null);
}

#[test]
fn inspect_invalid_traceparent_and_tracestate() {
    let v = inspect(
        &[],
        &format!(
            "traceparent: {TRACEPARENT}\ntraceparent: {TRACEPARENT}\ntracestate: {TRACESTATE}\n"
        ),
    );
    assert_eq!(v["traceparent"]["result"], "invalid");
    let reason = v["traceparent"]["reason"].as_str().unwrap();
    assert!(reason.contains("more than one"), "{reason}");
    // Never read without a valid traceparent.
    assert_eq!(v["tracestate"], json!({"result": "absent"}));

    // An invalid tracestate leaves the traceparent valid.
    let v = inspect(
        &[],
        &format!("traceparent: {TRACEPARENT}\ntracestate: Bad=1\n"),
    );
    assert_eq!(v["traceparent"]["result"], "valid");
    assert_eq!(v["tracestate"]["result"], "invalid");
    assert!(
        v["tracestate"]["reason"]
            .as_str()
            .unwrap()
            .contains("TraceStateKey")
    );
}

#[test]
fn inspect_b3_multi_debug() {
    let v = inspect(
        &[],
        "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\n\
         X-B3-SpanId: e457b5a2e4d86bd1\n\
         X-B3-ParentSpanId: 05e3ac9a4f6e3b90\n\
         X-B3-Sampled: 1\n\
         X-B3-Flags: 1\n",
    );
    assert_eq!(
        v["b3"],
        json!({
            "result": "valid", "trace_id": "80f198ee56343ba864fe8b2a57d3eff7",
            "span_id": "e457b5a2e4d86bd1", "parent_span_id": "05e3ac9a4f6e3b90",
            "sampled": true, "debug": true, "trace_id_bits": 128,
        })
    );
    assert_eq!(v["traceparent"], json!({"result": "absent"}));
}

#[test]
fn inspect_b3_sampling_only_and_invalid() {
    let v = inspect(&[], "b3: 0\n");
    assert_eq!(
        v["b3"],
        json!({"result": "sampling_only", "sampled": false, "debug": false})
    );
    let v = inspect(&[], "b3: 80f198ee56343ba8-e457b5a2e4d86bd1-1-\n");
    assert_eq!(v["b3"]["result"], "invalid");
    assert!(v["b3"]["reason"].as_str().unwrap().contains("at byte"));
}

#[test]
fn inspect_baggage() {
    let v = inspect(
        &[],
        "baggage: userId=alice%20smith;ttl=3600;secure, serverNode=DF%2028\n\
         Baggage: isProduction=false\n",
    );
    assert_eq!(
        v["baggage"],
        json!({"result": "valid", "dropped": 0, "baggage": [
            ["userId", "alice smith", ["ttl=3600", "secure"]],
            ["serverNode", "DF 28", []],
            ["isProduction", "false", []],
        ]})
    );
    let v = inspect(&[], "baggage: ok=1,no-equals-sign\n");
    assert_eq!(v["baggage"]["result"], "invalid");
    assert!(
        v["baggage"]["reason"]
            .as_str()
            .unwrap()
            .contains("BaggageValue")
    );
}

#[test]
fn inspect_request_id() {
    let v = inspect(&[], "x-request-id: 8cda17a5-eb41-9ced-9843-acc826f95c8c\n");
    assert_eq!(
        v["request_id"],
        json!({
            "result": "valid", "value": "8cda17a5-eb41-9ced-9843-acc826f95c8c",
            "integer": 2363103141u64, "sampling_bucket": 3141, "trace_reason": "Sampling",
        })
    );
    let v = inspect(&[], "x-request-id: not-hex\n");
    assert_eq!(
        v["request_id"],
        json!({"result": "valid", "value": "not-hex", "integer": null, "sampling_bucket": null, "trace_reason": "NotTraceable"})
    );
}

#[test]
fn inspect_ot_span_context() {
    let v = inspect(&[], "x-ot-span-context: EhQJAQAAAAAAAAARAgAAAAAAAAAYAQ==\n");
    assert_eq!(
        v["ot_span_context"],
        json!({"result": "valid", "trace_id": "0000000000000001", "span_id": "0000000000000002", "sampled": true, "baggage": {}})
    );
    let v = inspect(&[], "x-ot-span-context: !!!!\n");
    assert_eq!(v["ot_span_context"]["result"], "invalid");
    assert!(v["ot_span_context"]["reason"].is_string());
}

#[test]
fn json_input_matches_line_input() {
    let lines = format!(
        "traceparent: {TRACEPARENT}\r\ntracestate: {TRACESTATE}\r\n\r\nb3: 1\r\n\
         baggage: k=v%21;p\r\nx-request-id:  8cda17a5-eb41-9ced-9843-acc826f95c8c \r\n\
         x-ot-span-context:EhQJAQAAAAAAAAARAgAAAAAAAAAYAQ==\r\n"
    );
    let pairs = json!([
        ["traceparent", TRACEPARENT],
        ["tracestate", TRACESTATE],
        ["b3", "1"],
        ["baggage", "k=v%21;p"],
        ["x-request-id", " 8cda17a5-eb41-9ced-9843-acc826f95c8c "],
        ["x-ot-span-context", "EhQJAQAAAAAAAAARAgAAAAAAAAAYAQ=="],
    ]);
    let from_lines = inspect(&[], &lines);
    let from_json = inspect(&["--json"], &pairs.to_string());
    assert_eq!(from_lines, from_json);
    // Values are kept byte-exact: only one space after the colon goes.
    assert_eq!(
        from_lines["request_id"]["value"],
        " 8cda17a5-eb41-9ced-9843-acc826f95c8c "
    );
    assert_eq!(from_lines["traceparent"]["result"], "valid");
    assert_eq!(from_lines["b3"]["result"], "sampling_only");
    assert_eq!(
        from_lines["baggage"]["baggage"],
        json!([["k", "v!", ["p"]]])
    );
    assert_eq!(from_lines["ot_span_context"]["result"], "valid");
}

#[test]
fn usage_and_input_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["inspect", "--seed", "1"],
        &["inspect", "--bogus"],
        &["child", "--seed"],
        &["child", "--seed", "x"],
        &["serve"],
        &["serve", "--addr", "0.0.0.0:0"],
        &["serve", "--addr", "192.0.2.1:80"],
        &["serve", "--addr", "not an address"],
    ] {
        let out = tracehdr(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("usage:"),
            "{args:?}"
        );
    }
    for input in ["not json", "{}", "[[\"a\"]]", "[[\"a\", 1]]"] {
        let out = tracehdr(&["inspect", "--json"], input.as_bytes());
        assert_eq!(out.status.code(), Some(2), "{input}");
        assert!(out.stdout.is_empty());
    }
    let out = tracehdr(&["inspect"], b"no colon here\n");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn child_keeps_the_trace_and_is_deterministic() {
    let input = format!(
        "traceparent: {TRACEPARENT}\ntracestate: {TRACESTATE}\n\
         x-request-id: 8cda17a5-eb41-9ced-9843-acc826f95c8c\nbaggage: a=1\nbaggage: b=2;p\n\
         b3: 80f198ee56343ba8-e457b5a2e4d86bd1-1\n"
    );
    let first = child_headers(&["--seed", "7"], &input);
    let again = child_headers(&["--seed", "7"], &input);
    assert_eq!(first, again, "same seed, same output");
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "traceparent",
            "tracestate",
            "b3",
            "x-request-id",
            "baggage",
            "baggage"
        ]
    );

    let (trace, parent, flags) = traceparent_parts(header(&first, "traceparent").unwrap());
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(parent, "00f067aa0ba902b7");
    assert_eq!(flags, "01");
    assert_eq!(header(&first, "tracestate"), Some(TRACESTATE));
    assert_eq!(
        header(&first, "x-request-id"),
        Some("8cda17a5-eb41-9ced-9843-acc826f95c8c")
    );
    let baggage: Vec<&str> = first
        .iter()
        .filter(|(n, _)| n == "baggage")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(baggage, ["a=1", "b=2;p"]);
    let b3: Vec<&str> = header(&first, "b3").unwrap().split('-').collect();
    assert_eq!(b3.len(), 4);
    assert_eq!(b3[0], "80f198ee56343ba8");
    assert_ne!(b3[1], "e457b5a2e4d86bd1");
    assert_eq!(b3[2], "1");
    assert_eq!(b3[3], "e457b5a2e4d86bd1", "the incoming span is the parent");

    let other = child_headers(&["--seed", "8"], &input);
    assert_ne!(
        traceparent_parts(header(&other, "traceparent").unwrap()).1,
        parent
    );

    // The --json form gives the same headers.
    let pairs = json!([
        ["traceparent", TRACEPARENT],
        ["tracestate", TRACESTATE],
        ["x-request-id", "8cda17a5-eb41-9ced-9843-acc826f95c8c"],
        ["baggage", "a=1"],
        ["baggage", "b=2;p"],
        ["b3", "80f198ee56343ba8-e457b5a2e4d86bd1-1"],
    ]);
    assert_eq!(
        child_headers(&["--seed", "7", "--json"], &pairs.to_string()),
        first
    );
}

#[test]
fn child_restarts_an_invalid_trace() {
    let input = format!("traceparent: {TRACEPARENT}-\ntracestate: {TRACESTATE}\nb3: 0\n");
    let out = child_headers(&[], &input);
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["traceparent", "b3", "x-request-id"]);
    let (trace, _, flags) = traceparent_parts(header(&out, "traceparent").unwrap());
    assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(flags, "03", "sampled, random trace id");
    assert_eq!(header(&out, "b3"), Some("0"));
    let id = header(&out, "x-request-id").unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a fresh UUIDv4");
    // Default seed 1: deterministic too.
    assert_eq!(child_headers(&["--seed", "1"], &input), out);
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads one request (head and Content-Length body) from `stream`.
fn read_request(stream: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        assert!(buf.len() < 65536, "head too long");
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed inside the head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, String::from_utf8(body).unwrap())
}

fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// POSTs `body` to tracehdr with the extra `headers` (CRLF-terminated lines); returns the whole
/// response.
fn post(addr: &str, headers: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /test HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_calls_back_with_child_traceparents() {
    let mut process = Command::new(env!("CARGO_BIN_EXE_tracehdr"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = process.stderr.take().unwrap();
    let server = Server(process);
    let mut stderr = BufReader::new(stderr);
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("tracehdr: listening on http://")
        .unwrap_or_else(|| panic!("first stderr line: {first:?}"))
        .to_owned();
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stderr.read_to_string(&mut sink);
    });

    // The callback server: records three requests, answers 200 to each.
    let callback = TcpListener::bind("127.0.0.1:0").unwrap();
    let cb_port = callback.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..3 {
            let Ok((mut stream, _)) = callback.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let request = read_request(&mut stream);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            if tx.send(request).is_err() {
                return;
            }
        }
    });

    let body = format!(
        r#"[{{"url": "http://127.0.0.1:{cb_port}/a", "arguments": []}}, {{"url": "http://127.0.0.1:{cb_port}/b", "arguments": [1]}}, {{"url": "http://example.com:{cb_port}/skipped", "arguments": []}}]"#
    );
    let response = post(
        &addr,
        &format!("traceparent: {TRACEPARENT}\r\ntracestate: {TRACESTATE}\r\n"),
        &body,
    );
    assert!(
        response.starts_with("HTTP/1.1 200 "),
        "tracehdr answered {response:?}"
    );
    assert!(response.ends_with("\r\n\r\n"), "empty body: {response:?}");

    let mut parents = Vec::new();
    for (path, arguments) in [("/a", "[]"), ("/b", "[1]")] {
        let (head, body) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(
            head.starts_with(&format!("POST {path} HTTP/1.1\r\n")),
            "{head}"
        );
        assert_eq!(body, arguments);
        assert_eq!(head_header(&head, "content-type"), Some("application/json"));
        assert_eq!(head_header(&head, "tracestate"), Some(TRACESTATE));
        let (trace, parent, flags) = traceparent_parts(head_header(&head, "traceparent").unwrap());
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(flags, "01");
        assert_ne!(parent, "00f067aa0ba902b7");
        parents.push(parent);
    }
    assert_ne!(parents[0], parents[1], "a new parent id per call");
    // The non-loopback url was skipped: nothing else arrives.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());

    // A second request with an invalid traceparent restarts the trace, without tracestate.
    let body = format!(r#"[{{"url": "http://localhost:{cb_port}/c", "arguments": [{{"x": 1}}]}}]"#);
    let response = post(
        &addr,
        &format!("traceparent: {TRACEPARENT}-01\r\ntracestate: {TRACESTATE}\r\n"),
        &body,
    );
    assert!(response.starts_with("HTTP/1.1 200 "), "{response:?}");
    let (head, body) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(head.starts_with("POST /c HTTP/1.1\r\n"), "{head}");
    assert_eq!(body, r#"[{"x":1}]"#);
    assert_eq!(head_header(&head, "tracestate"), None);
    let (trace, parent, _) = traceparent_parts(head_header(&head, "traceparent").unwrap());
    assert_ne!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(!parents.contains(&parent));

    // Not JSON: 400, and the server keeps serving.
    let response = post(&addr, "", "[");
    assert!(response.starts_with("HTTP/1.1 400 "), "{response:?}");
    let response = post(&addr, "", "[]");
    assert!(response.starts_with("HTTP/1.1 200 "), "{response:?}");
    drop(server);
}
