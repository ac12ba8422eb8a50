//! The hostile client of issue 17: thousands of connections that each send a few bytes of a
//! request head and then nothing, held open while a well-behaved client scrapes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Opens `n` connections to `addr`, each having sent `GET /metrics HTTP/1.1\r\nHo` and no more.
/// Raises this process's descriptor limit as needed. Connections the server refused or closed
/// at once are not returned, so the count says how many are held.
pub fn open(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let limit = rlimit::increase_nofile_limit(n as u64 + 1024).unwrap_or(1024);
    assert!(
        limit >= n as u64 + 64,
        "cannot hold {n} descriptors (limit {limit})"
    );
    (0..n)
        .filter_map(|_| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHo").ok()?;
            Some(stream)
        })
        .collect()
}

/// One more byte on every connection, as a slowloris keeps them alive.
pub fn trickle(streams: &mut [TcpStream]) {
    for stream in streams {
        let _ = stream.write_all(b"s");
    }
}

/// Scrapes `http://addr{path}` `times` times (a new connection each, `Connection: close`);
/// returns the slowest answer's time and the responses' status lines. A scrape that gets no
/// answer within 5 s counts as 5 s.
pub fn scrape_times(addr: SocketAddr, path: &str, times: usize) -> (Duration, Vec<String>) {
    let mut slowest = Duration::ZERO;
    let mut statuses = Vec::new();
    for _ in 0..times {
        let started = Instant::now();
        let status = scrape(addr, path).unwrap_or_else(|e| format!("no answer: {e}"));
        slowest = slowest.max(started.elapsed());
        statuses.push(status);
    }
    (slowest, statuses)
}

fn scrape(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}
