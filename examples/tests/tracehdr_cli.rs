//! `tracehdr` end to end: `inspect` on every format (line and JSON input), `child` determinism
//! and propagation (only what tracectx validated is forwarded), the command line, stdout errors
//! and closed pipes, and `serve` driving a callback server over loopback the way the W3C
//! trace-context test suite does, under slowloris clients and callbacks that never answer.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    // Each bad command line exits 2 with an error naming what was wrong.
    for (args, named) in [
        (&[][..], "Usage:"),
        (&["frobnicate"], "frobnicate"),
        (&["inspect", "--seed", "1"], "--seed"),
        (&["inspect", "--bogus"], "--bogus"),
        (&["child", "--seed"], "--seed"),
        (&["child", "--seed", "x"], "'x' for '--seed <N>'"),
        (&["serve"], "--addr"),
        (&["serve", "--addr", "0.0.0.0:0"], "only loopback"),
        (&["serve", "--addr", "192.0.2.1:80"], "192.0.2.1:80"),
        (
            &["serve", "--addr", "not an address"],
            "'not an address' for '--addr <ADDR>'",
        ),
        (
            &["serve", "--addr", "127.0.0.1:0", "--callback-timeout", "0"],
            "--callback-timeout",
        ),
        (
            &["serve", "--addr", "127.0.0.1:0", "--max-callbacks", "0"],
            "--max-callbacks",
        ),
    ] {
        let out = tracehdr(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
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
fn help_describes_every_option_and_version_works() {
    let out = tracehdr(&["--version"], b"");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("tracehdr {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = tracehdr(&["--help"], b"");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["inspect", "child", "serve"] {
        assert!(help.contains(command), "{help}");
    }
    for (command, options) in [
        ("inspect", &["--json"][..]),
        ("child", &["--json", "--seed"]),
        (
            "serve",
            &[
                "--addr",
                "--seed",
                "--connect-timeout",
                "--callback-timeout",
                "--max-callbacks",
            ],
        ),
    ] {
        let out = tracehdr(&[command, "--help"], b"");
        assert_eq!(out.status.code(), Some(0), "{command}");
        let help = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = help.lines().collect();
        for option in options {
            // Each option is listed with a description: after it on its line, or on the next.
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(option))
                .unwrap_or_else(|| panic!("{command} --help lacks {option}: {help}"));
            let own = lines[at].split_whitespace().count() > 2;
            let next = lines
                .get(at + 1)
                .is_some_and(|l| l.starts_with("          ") && l.split_whitespace().count() > 2);
            assert!(own || next, "{command} {option} undescribed: {help}");
        }
    }
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
        ["traceparent", "tracestate", "b3", "x-request-id", "baggage"]
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
    // The two baggage fields' members, re-encoded as one.
    assert_eq!(header(&first, "baggage"), Some("a=1,b=2;p"));
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

/// `tracehdr serve` on a loopback port; killed when the test ends, however it ends.
struct Server {
    process: Child,
    /// Its stderr lines after the `listening` one, as they come.
    log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `tracehdr serve --addr 127.0.0.1:0` with `args`; returns it and its address.
    fn start(args: &[&str]) -> (Self, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tracehdr"));
        command.args(["serve", "--addr", "127.0.0.1:0"]).args(args);
        Self::start_with(command)
    }

    fn start_with(mut command: Command) -> (Self, String) {
        let mut process = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drained as it comes, so the server never blocks on it.
        let log = common::stderr_lines(&mut process, None);
        let first = log.recv_timeout(Duration::from_secs(10)).unwrap();
        let addr = first
            .trim()
            .strip_prefix("tracehdr: listening on http://")
            .unwrap_or_else(|| panic!("first stderr line: {first:?}"))
            .to_owned();
        (Self { process, log }, addr)
    }

    /// Sends SIGTERM and waits (at most `within`) for the exit status.
    fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.process.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < within, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
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
    let (server, addr) = Server::start(&[]);

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
    // The calls run concurrently: they may arrive in either order.
    let mut calls: Vec<(String, String)> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    calls.sort();
    for ((path, arguments), (head, body)) in [("/a", "[]"), ("/b", "[1]")].into_iter().zip(calls) {
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

/// `child`'s headers as `(name, value)` pairs, and its stderr.
fn child_run(args: &[&str], stdin: &[u8]) -> (Vec<(String, String)>, String) {
    let mut all = vec!["child"];
    all.extend_from_slice(args);
    let out = tracehdr(&all, stdin);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Nothing forwarded carries a control character (a header split on the next hop) or a byte
    // outside ASCII: only visible ASCII and the single space after each colon.
    for line in stdout.lines() {
        assert!(
            line.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "{line:?}"
        );
    }
    let headers = stdout
        .lines()
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect();
    (headers, stderr)
}

#[test]
fn child_forwards_what_inspect_keeps_of_a_megabyte_of_baggage() {
    let big: String = (0..100_000)
        .map(|i| format!("member{i}=value{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(big.len() > 1_000_000);
    let input = format!("baggage: {big}\n");
    let inspected = inspect(&[], &input);
    let kept = inspected["baggage"]["baggage"].as_array().unwrap();
    assert_eq!(kept.len(), 64);
    let (headers, stderr) = child_run(&[], input.as_bytes());
    let baggage: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n == "baggage")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(baggage.len(), 1, "one re-encoded baggage header");
    assert!(baggage[0].len() <= 8192, "{}", baggage[0].len());
    let forwarded: Vec<(&str, &str)> = baggage[0]
        .split(',')
        .map(|m| m.split_once('=').unwrap())
        .collect();
    let expected: Vec<(&str, &str)> = kept
        .iter()
        .map(|m| (m[0].as_str().unwrap(), m[1].as_str().unwrap()))
        .collect();
    assert_eq!(forwarded, expected, "exactly the members inspect keeps");
    assert!(
        stderr.contains("64 members forwarded, 99936 left out"),
        "{stderr}"
    );
}

#[test]
fn child_drops_baggage_that_inspect_calls_invalid() {
    let input = "baggage: ok=1,caf\u{e9}=latte,name=Am\u{e9}lie\nbaggage: two=2;prop=\u{e9}\n\
                 baggage: three=3;p\n";
    for line in input.lines() {
        let v = inspect(&[], &format!("{line}\n"));
        let expected = if line.contains('\u{e9}') {
            "invalid"
        } else {
            "valid"
        };
        assert_eq!(v["baggage"]["result"], expected, "{line}");
    }
    let (headers, stderr) = child_run(&[], input.as_bytes());
    assert_eq!(header(&headers, "baggage"), Some("ok=1,three=3;p"));
    assert!(stderr.contains("3 left out (3 malformed"), "{stderr}");
    // Nothing valid: no baggage header at all.
    let (headers, _) = child_run(&[], "baggage: caf\u{e9}=1\n".as_bytes());
    assert_eq!(header(&headers, "baggage"), None);
}

#[test]
fn child_never_forwards_a_request_id_with_a_control_character() {
    for (input, json) in [
        (&b"x-request-id: abc\rx-injected: 1\n"[..], false),
        (br#"[["x-request-id", "abc\r\nx-injected: 1"]]"#, true),
        (br#"[["x-request-id", "nul\u0000"]]"#, true),
        ("x-request-id: caf\u{e9}\n".as_bytes(), false),
    ] {
        let args: &[&str] = if json { &["--json"] } else { &[] };
        let v = inspect(args, std::str::from_utf8(input).unwrap());
        assert_eq!(v["request_id"]["result"], "invalid", "{input:?}");
        let (headers, stderr) = child_run(args, input);
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["traceparent", "x-request-id"], "{input:?}");
        let id = header(&headers, "x-request-id").unwrap();
        assert_eq!(id.len(), 36, "a fresh UUID: {id}");
        assert_eq!(&id[14..15], "4");
        assert!(stderr.contains("x-request-id not forwarded"), "{stderr}");
    }
    // Longer than 64 bytes: replaced too. Surrounding spaces: trimmed, kept.
    let (headers, _) = child_run(
        &[],
        format!("x-request-id: {}\n", "a".repeat(65)).as_bytes(),
    );
    assert_eq!(header(&headers, "x-request-id").unwrap().len(), 36);
    let (headers, stderr) = child_run(&[], b"x-request-id:   my-id-1 \n");
    assert_eq!(header(&headers, "x-request-id"), Some("my-id-1"));
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_write_error_on_stdout_is_a_message_and_a_failure() {
    for args in [&["inspect"][..], &["child"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_tracehdr"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("cannot write to standard output") && stderr.contains("No space left"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    for args in [&["inspect"][..], &["child"]] {
        let mut process = Command::new(env!("CARGO_BIN_EXE_tracehdr"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the program writes (it writes after reading all input).
        drop(process.stdout.take());
        let mut stdin = process.stdin.take().unwrap();
        stdin
            .write_all(format!("traceparent: {TRACEPARENT}\n").as_bytes())
            .unwrap();
        drop(stdin);
        let out = process.wait_with_output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
}

/// A POST of `body` to `/`, answered on its own connection: the status line and the time taken.
fn timed_post(addr: &str, body: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.lines().next().unwrap_or_default().to_owned();
    (status, started.elapsed())
}

#[test]
fn serve_answers_within_a_second_under_2000_slowloris_connections() {
    // Started with the soft descriptor limit many systems default to: tracehdr raises it.
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=1024:", "--"])
        .arg(env!("CARGO_BIN_EXE_tracehdr"))
        .args(["serve", "--addr", "127.0.0.1:0"]);
    let (server, addr) = Server::start_with(command);
    let socket: std::net::SocketAddr = addr.parse().unwrap();
    let mut held = common::slowloris::open(socket, 2000);
    assert_eq!(held.len(), 2000);
    for _ in 0..3 {
        common::slowloris::trickle(&mut held);
        // GET is answered 405 (POST only) at once.
        let (slowest, statuses) = common::slowloris::scrape_times(socket, "/", 5);
        assert!(slowest < Duration::from_secs(1), "{slowest:?}");
        assert!(
            statuses.iter().all(|s| s.starts_with("HTTP/1.1 405")),
            "{statuses:?}"
        );
        for _ in 0..3 {
            let (status, took) = timed_post(&addr, "[]");
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            assert!(took < Duration::from_secs(1), "{took:?}");
        }
    }
    drop(held);
    assert!(server.terminate(Duration::from_secs(5)).success());
}

#[test]
fn callbacks_that_never_answer_hold_only_their_own_request_until_the_deadline() {
    let (server, addr) = Server::start(&["--callback-timeout", "1.5"]);
    // Callbacks that accept connections (the kernel does, from the backlog) and never answer.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let items: Vec<String> = (0..32)
        .map(|i| format!(r#"{{"url": "http://127.0.0.1:{port}/never/{i}", "arguments": []}}"#))
        .collect();
    let body = format!("[{}]", items.join(","));
    let hanging = {
        let addr = addr.clone();
        std::thread::spawn(move || timed_post(&addr, &body))
    };
    // Meanwhile, other requests are answered at once.
    std::thread::sleep(Duration::from_millis(200));
    let socket: std::net::SocketAddr = addr.parse().unwrap();
    let (slowest, statuses) = common::slowloris::scrape_times(socket, "/", 5);
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    assert!(statuses.iter().all(|s| s.starts_with("HTTP/1.1 405")));
    let (status, took) = timed_post(&addr, "[]");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The POST listing them answers once its deadline passes: 1.5 s, not 32 × 5 s.
    let (status, took) = hanging.join().unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Well under 32 × 5 s, with room for a loaded machine.
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The 32 log lines may still be on their way when the answer is read.
    let mut logged: Vec<String> = Vec::new();
    let silent_lines = |logged: &[String]| {
        logged
            .iter()
            .filter(|l| l.contains("no answer within the deadline"))
            .count()
    };
    let waited = std::time::Instant::now();
    while silent_lines(&logged) < 32 && waited.elapsed() < Duration::from_secs(5) {
        if let Ok(line) = server.log.recv_timeout(Duration::from_millis(100)) {
            logged.push(line);
        }
    }
    assert_eq!(silent_lines(&logged), 32, "{logged:?}");
    drop(silent);
    assert!(server.terminate(Duration::from_secs(5)).success());
}

#[test]
fn too_many_callbacks_are_refused_and_wrong_methods_get_405() {
    let (server, addr) = Server::start(&["--max-callbacks", "3"]);
    let item = r#"{"url": "http://127.0.0.1:9/x", "arguments": []}"#;
    let (status, _) = timed_post(&addr, &format!("[{}]", [item; 4].join(",")));
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let response = post(&addr, "", &format!("[{}]", [item; 4].join(",")));
    assert!(
        response.contains("at most 3 calls per request, not 4"),
        "{response}"
    );
    // Port 9 refuses: the three calls fail fast and the request is answered.
    let (status, took) = timed_post(&addr, &format!("[{}]", [item; 3].join(",")));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let socket: std::net::SocketAddr = addr.parse().unwrap();
    let (_, statuses) = common::slowloris::scrape_times(socket, "/", 1);
    assert!(statuses[0].starts_with("HTTP/1.1 405"), "{statuses:?}");
    drop(server);
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let (server, addr) = Server::start(&[]);
    let (status, _) = timed_post(&addr, "[]");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let started = Instant::now();
    let log = server.terminate(Duration::from_secs(5));
    assert!(log.success(), "{log:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(TcpStream::connect(&addr).is_err(), "no longer listening");
}
