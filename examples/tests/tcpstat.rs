//! `tcpstat` end to end: exact exposition and JSON on the real snapshot, hostile input, exit
//! codes, and a real HTTP scrape over loopback validated against the text exposition format.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

#[test]
fn real_snapshot_in_node_exporter_format() {
    let root = real_root("prom");
    let out = tcpstat(&["--proc-root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = "\
# HELP node_tcp_connection_states Number of connection states.
# TYPE node_tcp_connection_states gauge
node_tcp_connection_states{state=\"close_wait\"} 4
node_tcp_connection_states{state=\"established\"} 26
node_tcp_connection_states{state=\"fin_wait2\"} 4
node_tcp_connection_states{state=\"listen\"} 9
node_tcp_connection_states{state=\"rx_queued_bytes\"} 67483
node_tcp_connection_states{state=\"syn_sent\"} 1
node_tcp_connection_states{state=\"time_wait\"} 2
node_tcp_connection_states{state=\"tx_queued_bytes\"} 7.725815e+06
";
    assert!(text.starts_with(expected), "{text}");
    validate_exposition(&text);
    // HELP and TYPE are node_exporter 1.5.0's, byte for byte.
    let reference = std::fs::read_to_string(data("real_node_exporter_1.5.0.prom")).unwrap();
    for line in expected.lines().take(2) {
        assert!(reference.lines().any(|l| l == line), "{line}");
    }
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

#[test]
fn prometheus_scrape_over_loopback() {
    let root = real_root("scrape");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpstat"))
        .args([
            "--proc-root",
            root.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("tcpstat: listening on http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let get = |path: &str| {
        let mut s = TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    };
    for _ in 0..2 {
        let response = get("/metrics");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
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
    assert!(get("/").starts_with("HTTP/1.1 404"));
    child.kill().unwrap();
    child.wait().unwrap();
}
