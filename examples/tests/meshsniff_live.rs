//! `meshsniff --interface lo` end to end, inside a fresh network namespace (so `lo` carries only
//! this test's traffic): in-process HTTP and MySQL-speaking servers, clients sending a known set
//! of requests (keep-alive, pipelined, chunked, failing, IPv6, unanswered), and every record and
//! every counter checked exactly, through `--json`, `/metrics` and the exit after SIGTERM.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::netns::in_netns;

/// An HTTP/1.1 server answering by path: `/chunked` chunked, `/fail` 500, `/missing` 404,
/// `/slow` never, anything else 200 with a length. Requests are served in order, so pipelined
/// ones work; `Connection: close` ends the connection after its response.
fn http_server(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut request = httparse::Request::new(&mut headers);
                let Ok(httparse::Status::Complete(len)) = request.parse(&buf) else {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let path = request.path.unwrap_or("/").to_owned();
                let close = request
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("connection") && h.value == b"close");
                buf.drain(..len);
                let response: Vec<u8> = match path.as_str() {
                    "/slow" => {
                        // Held open, never answered: the capture's end reports it missing.
                        let _ = stream.read(&mut chunk);
                        return;
                    }
                    "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
                    "/fail" => b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops".to_vec(),
                    "/missing" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    _ => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".to_vec(),
                };
                if stream.write_all(&response).is_err() || close {
                    return;
                }
            }
        });
    }
}

/// Sends `requests` on one connection, all at once (pipelined) or each after the previous
/// response; returns the bytes received until the server closed.
fn http_client(addr: SocketAddr, requests: &[&str], pipelined: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let head = |i: usize, path: &str| {
        let close = if i + 1 == requests.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n{close}\r\n")
    };
    let mut received = Vec::new();
    if pipelined {
        let all: String = requests
            .iter()
            .enumerate()
            .map(|(i, p)| head(i, p))
            .collect();
        stream.write_all(all.as_bytes()).unwrap();
    } else {
        for (i, path) in requests.iter().enumerate() {
            stream.write_all(head(i, path).as_bytes()).unwrap();
            // Each response is small and ends with "ok\n" or is the last one.
            if i + 1 < requests.len() {
                let mut response = [0u8; 256];
                let n = stream.read(&mut response).unwrap();
                received.extend_from_slice(&response[..n]);
            }
        }
    }
    let _ = stream.read_to_end(&mut received);
    received
}

fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

fn read_mysql_packet(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    Some(payload)
}

/// A server speaking enough of MySQL's protocol: a greeting, OK to any login, then OK to every
/// query, or ERR 1146 to those naming `nosuch`; COM_QUIT closes.
fn mysql_server(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        thread::spawn(move || {
            let caps: u32 = 0x000f_a685;
            let mut greeting = b"\x0a8.0.36-fake\x00\x07\x00\x00\x00abcdefgh\x00".to_vec();
            greeting.extend_from_slice(&(caps as u16).to_le_bytes());
            greeting.extend_from_slice(&[45, 2, 0]);
            greeting.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
            greeting.extend_from_slice(&[21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            greeting.extend_from_slice(b"ijklmnopqrst\x00mysql_native_password\x00");
            stream.write_all(&mysql_packet(0, &greeting)).unwrap();
            if read_mysql_packet(&mut stream).is_none() {
                return;
            }
            stream
                .write_all(&mysql_packet(2, &[0, 0, 0, 2, 0, 0, 0]))
                .unwrap();
            while let Some(command) = read_mysql_packet(&mut stream) {
                match command.first() {
                    Some(1) => return,
                    Some(3) if command.windows(6).any(|w| w == b"nosuch") => {
                        let mut err = vec![0xff];
                        err.extend_from_slice(&1146u16.to_le_bytes());
                        err.extend_from_slice(b"#42S02Table 'shop.nosuch' doesn't exist");
                        stream.write_all(&mysql_packet(1, &err)).unwrap();
                    }
                    _ => stream
                        .write_all(&mysql_packet(1, &[0, 1, 0, 2, 0, 0, 0]))
                        .unwrap(),
                }
            }
        });
    }
}

fn mysql_client(addr: SocketAddr, queries: &[&str]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    read_mysql_packet(&mut stream).unwrap();
    let mut hello = 0x0008_8208u32.to_le_bytes().to_vec();
    hello.extend_from_slice(&[0, 0, 0, 1, 45]);
    hello.extend_from_slice(&[0; 23]);
    hello.extend_from_slice(b"app\x00\x14aaaaaaaaaaaaaaaaaaaashop\x00mysql_native_password\x00");
    stream.write_all(&mysql_packet(1, &hello)).unwrap();
    read_mysql_packet(&mut stream).unwrap();
    for query in queries {
        let mut command = vec![3];
        command.extend_from_slice(query.as_bytes());
        stream.write_all(&mysql_packet(0, &command)).unwrap();
        read_mysql_packet(&mut stream).unwrap();
    }
    stream.write_all(&mysql_packet(0, &[1])).unwrap();
    let _ = stream.read_to_end(&mut Vec::new());
}

/// A running `meshsniff`, its stderr lines arriving on a channel.
struct Sniffer {
    child: Child,
    stderr: mpsc::Receiver<String>,
    metrics: Option<SocketAddr>,
}

impl Sniffer {
    fn start(args: &[&str]) -> Self {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_meshsniff")).args(args))
    }

    fn start_with(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = common::stderr_lines(&mut child, Some("[meshsniff]"));
        let mut sniffer = Self {
            child,
            stderr,
            metrics: None,
        };
        let started = sniffer.wait_for_line("capturing on");
        sniffer.metrics = started
            .split("metrics at http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(|addr| addr.parse().unwrap());
        sniffer
    }

    fn wait_for_line(&mut self, needle: &str) -> String {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("meshsniff never said {needle:?}: {e}");
                }
            }
        }
    }

    fn scrape(&self) -> String {
        let addr = self.metrics.unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// Scrapes until `metric` reads `value` (records complete as their packets are delivered).
    fn wait_for_metric(&self, metric: &str, value: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.scrape();
            if metric_value(&text, metric) == Some(value) || Instant::now() > deadline {
                return text;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status and stdout.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        (self.child.wait().unwrap(), stdout)
    }
}

fn metric_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `meshsniff_requests_total` of one series and outcome.
fn requests(
    text: &str,
    protocol: &str,
    server: &str,
    endpoint: &str,
    outcome: &str,
) -> Option<u64> {
    metric_value(
        text,
        &format!(
            r#"meshsniff_requests_total{{protocol="{protocol}",server="{server}",endpoint="{endpoint}",outcome="{outcome}"}}"#
        ),
    )
}

fn listener(addr: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind(addr).unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[test]
fn live_records_and_metrics_are_exact() {
    in_netns("live_records_and_metrics_are_exact", || {
        let (web, web_addr) = listener("127.0.0.1:0");
        let (web6, web6_addr) = listener("[::1]:0");
        let (db, db_addr) = listener("127.0.0.1:0");
        // Traffic on a port the filter leaves out.
        let (other, other_addr) = listener("127.0.0.1:0");
        thread::spawn(move || http_server(web));
        thread::spawn(move || http_server(web6));
        thread::spawn(move || http_server(other));
        thread::spawn(move || mysql_server(db));

        let ports = [web_addr.port(), web6_addr.port(), db_addr.port()].map(|p| p.to_string());
        let sniffer = Sniffer::start(&[
            "--interface",
            "lo",
            "--port",
            &ports[0],
            "--port",
            &ports[1],
            "--port",
            &ports[2],
            "--json",
            "--listen",
            "127.0.0.1:0",
        ]);

        let keep_alive = [
            "/api/items/1",
            "/api/items/2",
            "/api/items/3",
            "/",
            "/api/items/44",
        ];
        let received = http_client(web_addr, &keep_alive, false);
        assert_eq!(received.windows(6).filter(|w| w == b" 200 O").count(), 5);
        let received = http_client(web_addr, &["/a", "/chunked", "/fail"], true);
        assert!(received.ends_with(b"oops"));
        http_client(web_addr, &["/missing"], false);
        http_client(web6_addr, &["/v6"], false);
        http_client(other_addr, &["/not-captured"], false);
        // Unanswered when the capture ends.
        let mut slow = TcpStream::connect(web_addr).unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        mysql_client(
            db_addr,
            &["SELECT 1", "SELECT * FROM nosuch", "UPDATE t SET a = 5"],
        );

        // 5 + 3 + 1 + 1 HTTP, login + 3 queries + quit MySQL; /slow is still open.
        let text = sniffer.wait_for_metric("meshsniff_records_total", 15);
        let web = web_addr.to_string();
        let db = db_addr.to_string();
        let count =
            |endpoint: &str, outcome: &str| requests(&text, "http", &web, endpoint, outcome);
        assert_eq!(count("GET /api/items/{id}", "2xx"), Some(4), "{text}");
        assert_eq!(count("GET /", "2xx"), Some(1));
        assert_eq!(count("GET /chunked", "2xx"), Some(1));
        assert_eq!(count("GET /fail", "5xx"), Some(1));
        assert_eq!(count("GET /missing", "4xx"), Some(1));
        let mysql =
            |endpoint: &str, outcome: &str| requests(&text, "mysql", &db, endpoint, outcome);
        assert_eq!(mysql("QUERY SELECT ?", "ok"), Some(1), "{text}");
        assert_eq!(mysql("QUERY SELECT * FROM nosuch", "error"), Some(1));
        assert_eq!(mysql("QUERY UPDATE t SET a = ?", "ok"), Some(1));
        assert_eq!(
            metric_value(&text, "meshsniff_capture_drops_total"),
            Some(0)
        );
        assert_eq!(
            metric_value(
                &text,
                &format!(
                    r#"meshsniff_request_duration_seconds_count{{protocol="http",server="{web}",endpoint="GET /api/items/{{id}}"}}"#
                )
            ),
            Some(4)
        );

        let (status, stdout) = sniffer.terminate();
        assert!(status.success(), "{status}");
        drop(slow);
        let records: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // Every request once: no duplicates from lo's two copies, nothing from the other port.
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &records {
            let what = match r["proto"].as_str().unwrap() {
                "http" => format!("{} {}", r["uri"].as_str().unwrap(), r["outcome"]),
                _ => format!("{} {}", r["command"], r["status"]),
            };
            seen.entry(r["server"].as_str().unwrap().to_owned())
                .or_default()
                .push(what);
        }
        let http: Vec<&str> = seen[&web].iter().map(String::as_str).collect();
        assert_eq!(
            http,
            [
                r#"/api/items/1 "OK""#,
                r#"/api/items/2 "OK""#,
                r#"/api/items/3 "OK""#,
                r#"/ "OK""#,
                r#"/api/items/44 "OK""#,
                r#"/a "OK""#,
                r#"/chunked "OK""#,
                r#"/fail "SERVER_ERROR""#,
                r#"/missing "CLIENT_ERROR""#,
                // Flushed at SIGTERM.
                r#"/slow "MISSING""#,
            ]
        );
        assert_eq!(seen[&web6_addr.to_string()], [r#"/v6 "OK""#]);
        assert_eq!(
            seen[&db],
            [
                r#""LOGIN" "OK""#,
                r#""COM_QUERY" "OK""#,
                r#""COM_QUERY" "ERR""#,
                r#""COM_QUERY" "OK""#,
                r#""COM_QUIT" "NO_RESPONSE_EXPECTED""#,
            ]
        );
        assert_eq!(seen.len(), 3, "{seen:?}");
    });
}

#[test]
fn duration_ends_the_capture_and_prints_the_table() {
    in_netns("duration_ends_the_capture_and_prints_the_table", || {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
            .args(["--interface", "lo", "--duration", "300ms"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(table.contains("0 transactions"), "{table}");
    });
}

#[test]
fn a_missing_interface_is_one_clear_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
        .args(["--interface", "nosuch0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("nosuch0"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn metrics_answer_within_a_second_under_2000_slowloris_connections() {
    in_netns(
        "metrics_answer_within_a_second_under_2000_slowloris_connections",
        || {
            // Started with the soft descriptor limit many systems default to: meshsniff raises it.
            let sniffer = Sniffer::start_with(
                Command::new("prlimit")
                    .arg("--nofile=1024:")
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_meshsniff"))
                    .args([
                        "--interface",
                        "lo",
                        "--port",
                        "9",
                        "--listen",
                        "127.0.0.1:0",
                    ]),
            );
            let addr = sniffer.metrics.unwrap();
            let mut held = common::slowloris::open(addr, 2000);
            assert_eq!(held.len(), 2000);
            for _ in 0..3 {
                common::slowloris::trickle(&mut held);
                let (slowest, statuses) = common::slowloris::scrape_times(addr, "/metrics", 5);
                assert!(slowest < Duration::from_secs(1), "{slowest:?}");
                assert!(
                    statuses.iter().all(|s| s.starts_with("HTTP/1.1 200")),
                    "{statuses:?}"
                );
            }
            let (status, _) = sniffer.terminate();
            assert!(status.success());
        },
    );
}
