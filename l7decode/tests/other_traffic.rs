//! Bytes of protocols the decoder does not read (TLS, PostgreSQL, anything unknown) are other
//! traffic, counted apart from bytes skipped while resynchronising inside HTTP, MySQL or MongoDB.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use l7decode::{Connection, Direction, Event, Limits, Protocol, Stats, Timestamp};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// Feeds `steps` in order, then both ends; the events and the final counters.
fn run(steps: &[(Direction, &[u8])], hint: Option<Protocol>) -> (Vec<Event>, Stats) {
    let mut conn = Connection::new(Limits::default().max_unrecognized(256)).with_hint(hint);
    let mut events = Vec::new();
    for (i, (dir, bytes)) in steps.iter().enumerate() {
        conn.feed(*dir, Timestamp(i as u64 + 1), bytes).unwrap();
        events.extend(std::iter::from_fn(|| conn.poll_event()));
    }
    conn.feed_eof(C, Timestamp(1_000));
    conn.feed_eof(S, Timestamp(1_000));
    events.extend(std::iter::from_fn(|| conn.poll_event()));
    (events, conn.stats())
}

fn total(steps: &[(Direction, &[u8])]) -> u64 {
    steps.iter().map(|(_, b)| b.len() as u64).sum()
}

#[test]
fn tls_is_other_traffic_not_skipped_bytes() {
    // A TLS 1.2 ClientHello record header and some of its body, then a server record.
    let hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03, 7, 7,
    ];
    let server: &[u8] = &[
        0x16, 0x03, 0x03, 0x00, 0x31, 0x02, 0x00, 0x00, 0x2d, 0x03, 0x03, 9,
    ];
    let steps = [
        (C, hello),
        (S, server),
        (C, &[0x17, 0x03, 0x03, 0, 3, 1, 2, 3][..]),
    ];
    let (events, stats) = run(&steps, None);
    assert!(
        events.contains(&Event::Protocol(Protocol::Tls)),
        "{events:?}"
    );
    assert_eq!(stats.other_bytes, total(&steps));
    assert_eq!(stats.skipped_bytes, 0);
}

#[test]
fn an_unknown_protocol_is_other_traffic_once_given_up() {
    // A PostgreSQL startup message and a server's authentication request, repeated past the
    // recognition budget.
    let startup: &[u8] =
        b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00app\x00database\x00shop\x00\x00\x00\x00\x00\x00\x00\x00";
    let auth: &[u8] = b"R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x16server_version\x0016\x00";
    let steps: Vec<(Direction, &[u8])> = (0..8).flat_map(|_| [(C, startup), (S, auth)]).collect();
    let (events, stats) = run(&steps, None);
    assert!(
        events.contains(&Event::Protocol(Protocol::Unknown)),
        "{events:?}"
    );
    assert_eq!(stats.given_up, 1);
    assert_eq!(stats.other_bytes, total(&steps));
    assert_eq!(stats.skipped_bytes, 0);
}

#[test]
fn bytes_skipped_inside_http_stay_skipped_bytes() {
    let steps: [(Direction, &[u8]); 4] = [
        (C, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        // Junk where the next request should start, then the request.
        (C, b"\x01\x02\x03junk GET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
        (S, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ];
    let (events, stats) = run(&steps, None);
    let uris: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transaction(t) => t.uri().map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["/a", "/b"]);
    assert!(stats.skipped_bytes > 0);
    assert_eq!(stats.other_bytes, 0);
}
