//! The one HTTP server module: bodies within bounds, refused past them, and a slow client never
//! delaying another.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use examples::serve::{Handler, Reply, ServeLimits, serve, text};
use hyper::StatusCode;
use hyper::http::request::Parts;

/// Answers a POST with the length of its body.
#[derive(Debug)]
struct Length;

impl Handler for Length {
    fn wants_body(&self, head: &Parts) -> bool {
        head.method == hyper::Method::POST
    }

    fn respond(&self, _: Parts, body: Bytes) -> Reply {
        Box::pin(std::future::ready(text(
            StatusCode::OK,
            "text/plain",
            format!("{} bytes\n", body.len()),
        )))
    }
}

/// Runs the server on a thread; the address and the sender that stops it.
fn start(limits: ServeLimits) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener, Arc::new(Length), limits, stopped).await;
        });
    });
    (addr, stop)
}

fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn bodies_are_read_within_their_bounds() {
    let limits = ServeLimits {
        max_body_bytes: 1000,
        body_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let (addr, stop) = start(limits);
    let ok = exchange(
        addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("5 bytes\n"),
        "{ok}"
    );
    let mut big =
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n"
            .to_vec();
    big.extend_from_slice(&[b'x'; 5000]);
    let refused = exchange(addr, &big);
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    // A body that never arrives whole.
    let started = Instant::now();
    let slow = exchange(
        addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\nConnection: close\r\n\r\nonly this",
    );
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(5));
    stop.send(true).unwrap();
}

#[test]
fn a_client_sending_its_head_slowly_delays_no_one() {
    let (addr, stop) = start(ServeLimits::default());
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /x HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let ok = exchange(
        addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert!(ok.ends_with("2 bytes\n"), "{ok}");
    assert!(started.elapsed() < Duration::from_secs(1));
    for s in &mut slow {
        let _ = s.write_all(b"s");
    }
    stop.send(true).unwrap();
}
