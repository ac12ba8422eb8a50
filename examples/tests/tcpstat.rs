//! `tcpstat` end to end: exact exposition and JSON on the real snapshot, hostile input, exit
//! codes, and a real HTTP scrape over loopback validated against the text exposition format.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tcpwire/tests/data")
        .join(name)
}

/// A fresh fake procfs root holding the given files as `net/tcp` and `net/tcp6`.
fn proc_root(test: &str, tcp: Option<&[u8]>, tcp6: Option<&[u8]>) -> PathBuf {
    let root = std::env::temp_dir().join(format!("tcpstat-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("net")).unwrap();
    if let Some(t) = tcp {
        std::fs::write(root.join("net/tcp"), t).unwrap();
    }
    if let Some(t) = tcp6 {
        std::fs::write(root.join("net/tcp6"), t).unwrap();
    }
    root
}

fn tcpstat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpstat"))
        .args(args)
        .output()
        .unwrap()
}

fn real_root(test: &str) -> PathBuf {
    let tcp = std::fs::read(data("real_tcp")).unwrap();
    let tcp6 = std::fs::read(data("real_tcp6")).unwrap();
    proc_root(test, Some(&tcp), Some(&tcp6))
}

/// Checks the text exposition format 0.0.4: HELP/TYPE once per family and before its samples,
/// metric and label names well formed, label values quoted, sample values parseable.
fn validate_exposition(text: &str) -> Vec<(String, String, f64)> {
    let mut samples = Vec::new();
    let mut typed: Vec<String> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
    };
    assert!(text.ends_with('\n'), "exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                name_ok(name) && !helped.contains(&name.to_owned()),
                "{line}"
            );
            helped.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_ok(name) && !typed.contains(&name.to_owned()), "{line}");
            assert!(
                ["gauge", "counter", "untyped", "summary", "histogram"].contains(&kind),
                "{line}"
            );
            typed.push(name.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
                None => (series, ""),
            };
            assert!(name_ok(name), "{line}");
            assert_eq!(
                typed.last().map(String::as_str),
                Some(name),
                "TYPE precedes samples: {line}"
            );
            let mut label = String::new();
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(name_ok(k), "{line}");
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{line}"
                );
                label = v.trim_matches('"').to_owned();
            }
            samples.push((name.to_owned(), label, value));
        }
    }
    samples
}

/// The samples of `family` in an exposition, as (label value, value).
fn family(samples: &[(String, String, f64)], family: &str) -> Vec<(String, f64)> {
    samples
        .iter()
        .filter(|(name, _, _)| name == family)
        .map(|(_, label, value)| (label.clone(), *value))
        .collect()
}

#[test]
fn real_snapshot_in_node_exporter_format() {
    let root = real_root("prom");
    let out = tcpstat(&["--proc-root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // node_exporter's family: its HELP and TYPE byte for byte, the same samples in the same
    // order (values compared as numbers: node_exporter writes 7.725815e+06, prometheus-client
    // 7725815).
    let expected_head = "\
# HELP node_tcp_connection_states Number of connection states.
# TYPE node_tcp_connection_states gauge
";
    assert!(text.starts_with(expected_head), "{text}");
    let samples = validate_exposition(&text);
    let expected: Vec<(String, f64)> = [
        ("close_wait", 4.0),
        ("established", 26.0),
        ("fin_wait2", 4.0),
        ("listen", 9.0),
        ("rx_queued_bytes", 67_483.0),
        ("syn_sent", 1.0),
        ("time_wait", 2.0),
        ("tx_queued_bytes", 7_725_815.0),
    ]
    .iter()
    .map(|(l, v)| ((*l).to_owned(), *v))
    .collect();
    assert_eq!(family(&samples, "node_tcp_connection_states"), expected);
    assert_eq!(
        family(&samples, "tcpwire_malformed_rows"),
        [(String::new(), 0.0)]
    );
    assert!(
        text.contains("# TYPE tcpwire_malformed_rows gauge\n"),
        "{text}"
    );
    // node_exporter 1.5.0 on the same host a moment later: the same HELP and TYPE, the same
    // label values, and the same sample syntax (values differ: the host moved on).
    let reference = std::fs::read_to_string(data("real_node_exporter_1.5.0.prom")).unwrap();
    for line in expected_head.lines() {
        assert!(reference.lines().any(|l| l == line), "{line}");
    }
    let theirs: Vec<&str> = reference
        .lines()
        .filter(|l| l.starts_with("node_tcp_connection_states{"))
        .map(|l| l.rsplit_once(' ').unwrap().0)
        .collect();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("node_tcp_connection_states{"))
        .map(|l| l.rsplit_once(' ').unwrap().0)
        .collect();
    assert_eq!(ours, theirs);
}

#[test]
fn real_snapshot_as_json() {
    let root = real_root("json");
    let out = tcpstat(&[
        "--proc-root",
        root.to_str().unwrap(),
        "--format",
        "json",
        "--byte-order",
        "little",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"rows\": 46, \"states\": {\"established\": 26, \"syn_sent\": 1, \"fin_wait2\": 4, \"time_wait\": 2, \"close_wait\": 4, \"listen\": 9}, \"rx_queued_bytes\": 67483, \"tx_queued_bytes\": 7725815, \"unknown_states\": {}, \"malformed_rows\": 0}\n"
    );
}

#[test]
fn unknown_states_stay_out_of_known_ones() {
    let edge = std::fs::read(data("tcp_edge_cases")).unwrap();
    let root = proc_root("edge", Some(&edge), None);
    let out = tcpstat(&["--proc-root", root.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success());
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.contains("\"unknown_states\": {\"0D\": 1}"), "{json}");
    assert!(json.contains("\"tx_queued_bytes\": 16"), "{json}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no IPv6 table"));
    let out = tcpstat(&["--proc-root", root.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let samples = validate_exposition(&text);
    assert!(samples.contains(&("tcpwire_unknown_state_connections".into(), "0D".into(), 1.0)));
    assert!(
        !samples
            .iter()
            .any(|(n, l, _)| n == "node_tcp_connection_states" && l == "0D")
    );
}

#[test]
fn junk_is_counted_not_fatal_and_nothing_readable_is_an_error() {
    let mut junk = b"  sl  local_address\nnot a row\n\x00\xff\xfe binary\n".to_vec();
    junk.extend(std::iter::repeat_n(b'x', 100_000));
    junk.extend_from_slice(b"\n   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n");
    let root = proc_root("junk", Some(&junk), Some(b"\x00\x01\x02"));
    let out = tcpstat(&["--proc-root", root.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(
        json.contains("\"listen\": 1") && json.contains("\"malformed_rows\": 4"),
        "{json}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed"));

    let empty = proc_root("none", None, None);
    let out = tcpstat(&["--proc-root", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing could be read"));

    // A directory where the file should be is unreadable, not a crash.
    let dir_root = proc_root("dir", None, None);
    std::fs::create_dir_all(dir_root.join("net/tcp")).unwrap();
    assert_eq!(
        tcpstat(&["--proc-root", dir_root.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );

    assert_eq!(tcpstat(&["--format", "xml"]).status.code(), Some(2));
    assert_eq!(tcpstat(&["--bogus"]).status.code(), Some(2));
    assert_eq!(tcpstat(&["--byte-order", "middle"]).status.code(), Some(2));
}

#[test]
fn netlink_source_counts_this_host() {
    let out = tcpstat(&["--source", "netlink", "--format", "json"]);
    if !out.status.success() {
        // Some sandboxes forbid NETLINK_SOCK_DIAG; the failure must then be explained.
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("sock_diag"),
            "{out:?}"
        );
        return;
    }
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(
        json.starts_with("{\"rows\": ") && json.contains("\"malformed_rows\": 0"),
        "{json}"
    );
}

/// A running `tcpstat --listen`, its stderr lines arriving on a channel.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = common::stderr_lines(&mut child, None);
        let line = stderr.recv_timeout(Duration::from_secs(10)).unwrap();
        let addr = line
            .trim()
            .strip_prefix("tcpstat: listening on http://")
            .and_then(|s| s.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            stderr,
        }
    }

    fn listen(root: &Path, extra: &[&str]) -> Self {
        Self::start(
            Command::new(env!("CARGO_BIN_EXE_tcpstat"))
                .args([
                    "--proc-root",
                    root.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                ])
                .args(extra),
        )
    }

    /// One request on a fresh connection (`Connection: close`): the whole response.
    fn request(&self, head: &str) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "{head}Host: {}\r\nConnection: close\r\n\r\n", self.addr).unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    }

    /// SIGTERM; the exit status, within `limit`.
    fn terminate(mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tcpstat still running {limit:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Header `name`'s value in a response head (names compared case-insensitively).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn prometheus_scrape_over_loopback() {
    let root = real_root("scrape");
    let server = Server::listen(&root, &[]);
    for _ in 0..2 {
        let response = server.request("GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert_eq!(
            header(head, "content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        assert_eq!(
            header(head, "content-length"),
            Some(body.len().to_string().as_str()),
            "{head}"
        );
        let samples = validate_exposition(body);
        assert!(samples.contains(&(
            "node_tcp_connection_states".into(),
            "established".into(),
            26.0
        )));
        assert!(samples.contains(&(
            "node_tcp_connection_states".into(),
            "tx_queued_bytes".into(),
            7_725_815.0
        )));
    }
    // The same samples as the one-shot exposition.
    let once = tcpstat(&["--proc-root", root.to_str().unwrap()]);
    let response = server.request("GET /metrics HTTP/1.1\r\n");
    assert_eq!(
        validate_exposition(response.split_once("\r\n\r\n").unwrap().1),
        validate_exposition(&String::from_utf8(once.stdout).unwrap())
    );
    // OpenMetrics when asked for.
    let response = server
        .request("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        header(head, "content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        server
            .request("GET / HTTP/1.1\r\n")
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        server
            .request("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n")
            .starts_with("HTTP/1.1 405")
    );
    assert!(
        server
            .request("HEAD /metrics HTTP/1.1\r\n")
            .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn json_over_http_and_a_fresh_collection_per_scrape() {
    let root = real_root("scrape-json");
    let server = Server::listen(&root, &["--format", "json"]);
    let response = server.request("GET /metrics HTTP/1.1\r\n");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert_eq!(header(head, "content-type"), Some("application/json"));
    assert!(body.starts_with("{\"rows\": 46, "), "{body}");
    // The table changes: the next scrape sees it.
    std::fs::remove_file(root.join("net/tcp6")).unwrap();
    let response = server.request("GET /metrics HTTP/1.1\r\n");
    assert!(!response.contains("\"rows\": 46, "), "{response}");
    // Nothing readable: 503, and the server keeps serving.
    std::fs::remove_file(root.join("net/tcp")).unwrap();
    let response = server.request("GET /metrics HTTP/1.1\r\n");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("nothing could be read"), "{response}");
}

#[test]
fn metrics_answer_within_a_second_under_2000_slowloris_connections() {
    let root = real_root("slowloris");
    // Started with the soft descriptor limit many systems default to: tcpstat raises it.
    let server = Server::start(
        Command::new("prlimit")
            .arg("--nofile=1024:")
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_tcpstat"))
            .args([
                "--proc-root",
                root.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ]),
    );
    // One slow client first (a server that answers one connection at a time fails here fast).
    let mut held = common::slowloris::open(server.addr, 1);
    let (slowest, _) = common::slowloris::scrape_times(server.addr, "/metrics", 1);
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    held.extend(common::slowloris::open(server.addr, 1999));
    assert_eq!(held.len(), 2000);
    for _ in 0..3 {
        common::slowloris::trickle(&mut held);
        let (slowest, statuses) = common::slowloris::scrape_times(server.addr, "/metrics", 5);
        assert!(slowest < Duration::from_secs(1), "{slowest:?}");
        assert!(
            statuses.iter().all(|s| s.starts_with("HTTP/1.1 200")),
            "{statuses:?}"
        );
    }
    // SIGTERM with the 2,000 connections still held: a prompt, clean exit.
    let status = server.terminate(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    drop(held);
}

#[test]
fn sigint_and_sigterm_end_the_server_cleanly() {
    let root = real_root("signals");
    for signal in ["-INT", "-TERM"] {
        let server = Server::listen(&root, &[]);
        // A request in progress (head not finished) does not hold the exit up past the grace.
        let mut slow = TcpStream::connect(server.addr).unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        assert!(
            server
                .request("GET /metrics HTTP/1.1\r\n")
                .starts_with("HTTP/1.1 200")
        );
        let pid = server.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        let started = Instant::now();
        let mut server = server;
        let status = loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{signal}: still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{signal}: {status}");
        let said: Vec<String> = server.stderr.try_iter().collect();
        assert!(
            said.iter().any(|l| l.contains("stopped")),
            "{signal}: {said:?}"
        );
        drop(slow);
    }
}

#[test]
fn the_malformed_row_note_names_its_file() {
    let tcp = std::fs::read(data("real_tcp")).unwrap();
    let mut tcp6 = std::fs::read(data("real_tcp6")).unwrap();
    let good_len = tcp6.len();
    tcp6.extend_from_slice(b"   9: not a row at all\n");
    let root = proc_root("malformed-note", Some(&tcp), Some(&tcp6));
    let out = tcpstat(&["--proc-root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let note = stderr
        .lines()
        .find(|l| l.contains("malformed"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let tcp6_path = root.join("net/tcp6");
    assert!(
        note.starts_with(&format!(
            "tcpstat: {}: 1 malformed row",
            tcp6_path.display()
        )),
        "{note}"
    );
    // The offset is in that file's row (not counted from the start of net/tcp).
    let at: usize = note.rsplit_once(" at byte ").unwrap().1.parse().unwrap();
    assert!((good_len..tcp6.len()).contains(&at), "{note}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("malformed")).count(),
        1
    );

    // Both tables damaged: one note for each, naming it.
    let mut bad_tcp = tcp.clone();
    bad_tcp.extend_from_slice(b"junk\njunk\n");
    let root = proc_root("malformed-notes", Some(&bad_tcp), Some(&tcp6));
    let out = tcpstat(&["--proc-root", root.to_str().unwrap(), "--format", "json"]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("\"malformed_rows\": 3")
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("malformed")).collect();
    assert_eq!(notes.len(), 2, "{stderr}");
    assert!(
        notes[0].starts_with(&format!(
            "tcpstat: {}: 2 malformed row(s), first: ",
            root.join("net/tcp").display()
        )),
        "{stderr}"
    );
    assert!(
        notes[1].starts_with(&format!(
            "tcpstat: {}: 1 malformed row(s), first: ",
            root.join("net/tcp6").display()
        )),
        "{stderr}"
    );
}
