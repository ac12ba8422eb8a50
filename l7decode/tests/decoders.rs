//! The protocol sessions used directly (`http::Decoder`, `mysql::Decoder`, `mongo::Decoder`) by a
//! caller who knows the protocol: the records are those `Connection` gives for the same streams,
//! in any chunking, without the sniffing (no `Event::Protocol` for the protocol itself, and an
//! HTTP stream joined inside a long body is never given up).

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::{doc, one_row_resultset, op_msg, packet};
use l7decode::{Decoder, Direction, Event, Limits, Protocol, ProtocolSession, Timestamp};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// Feeds the turns to a decoder of session `S` in `chunk`-byte pieces (turn `i` at time `10 i`),
/// then both ends at `end`; every event, and the decoder's record count.
fn direct<Sn: ProtocolSession>(
    turns: &[(Direction, Vec<u8>)],
    chunk: usize,
    limits: Limits,
    end: u64,
) -> (Vec<Event>, u64) {
    let mut decoder = Decoder::<Sn>::new(limits);
    let mut out = Vec::new();
    for (i, (dir, bytes)) in turns.iter().enumerate() {
        for piece in bytes.chunks(chunk) {
            decoder.feed(*dir, Timestamp(i as u64 * 10), piece).unwrap();
            out.extend(std::iter::from_fn(|| decoder.poll_event()));
        }
    }
    decoder.feed_eof(C, Timestamp(end));
    decoder.feed_eof(S, Timestamp(end));
    out.extend(std::iter::from_fn(|| decoder.poll_event()));
    assert!(
        decoder.feed(C, Timestamp(end), b"x").is_err(),
        "fed after the end"
    );
    let stats = decoder.stats();
    let fed: usize = turns.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(stats.bytes, fed as u64);
    (out, stats.transactions)
}

/// The records the session gives used directly, after checking they are the same in every
/// chunking, the same as `Connection`'s, and counted.
fn same_as_connection<Sn: ProtocolSession>(
    turns: &[(Direction, Vec<u8>)],
    limits: Limits,
    protocol: Protocol,
) -> Vec<Event> {
    let (whole, records) = direct::<Sn>(turns, usize::MAX, limits, 1_000);
    for chunk in [1, 2, 3, 7, 16] {
        assert_eq!(
            direct::<Sn>(turns, chunk, limits, 1_000).0,
            whole,
            "chunks of {chunk}"
        );
    }
    let through_connection: Vec<Event> = common::invariant(turns, &[1, 5], limits, 1_000)
        .into_iter()
        .filter(|e| *e != Event::Protocol(protocol))
        .collect();
    assert_eq!(whole, through_connection);
    let counted = whole
        .iter()
        .filter(|e| matches!(e, Event::Transaction(_) | Event::Mysql(_) | Event::Mongo(_)))
        .count();
    assert_eq!(records, counted as u64);
    assert!(counted > 0);
    whole
}

#[test]
fn http_records_are_the_connections() {
    let turns = vec![
        (C, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            S,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
                .to_vec(),
        ),
        (
            C,
            b"POST /c HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ),
        (S, b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        (C, b"4;ext=1\r\nwiki\r\n0\r\nX-Sum: 1\r\n\r\n".to_vec()),
        (S, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".to_vec()),
        (C, b"GET /never HTTP/1.1\r\n\r\n".to_vec()),
    ];
    let events =
        same_as_connection::<l7decode::http::Session>(&turns, Limits::default(), Protocol::Http);
    let summary: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transaction(t) => Some((t.method(), t.status(), t.flags.missing_response)),
            _ => None,
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some("GET"), Some(200), false),
            (Some("HEAD"), Some(200), false),
            (Some("POST"), Some(201), false),
            (Some("GET"), None, true),
        ]
    );
}

#[test]
fn http_used_directly_never_gives_a_connection_up() {
    // Joined inside a long body: a connection without a hint gives up after `max_unrecognized`
    // bytes; a caller who says it is HTTP keeps looking for the next message start.
    let mut body = vec![b'x'; 4096];
    body.extend_from_slice(b"\r\nHTTP/1.1 204 No Content\r\n\r\n");
    let turns = vec![(S, body)];
    let limits = Limits::default().max_unrecognized(1024);
    let (events, _) = direct::<l7decode::http::Session>(&turns, 100, limits, 1_000);
    assert!(matches!(&events[..], [
        Event::Resynced { direction: S, skipped: 4098 },
        Event::Transaction(t),
    ] if t.status() == Some(204) && t.flags.orphan));
    let through_connection = common::run(&turns, 100, limits, 1_000);
    assert_eq!(through_connection[0], Event::Protocol(Protocol::Unknown));
}

/// A MySQL login (greeting, handshake response, OK), a query with a one-row resultset, a
/// failing query, and a QUIT.
fn mysql_conversation() -> Vec<(Direction, Vec<u8>)> {
    let server_caps: u32 = 0x0008_8208;
    let mut greeting = b"\x0a8.0.36\x00\x07\x00\x00\x00abcdefgh\x00".to_vec();
    greeting.extend_from_slice(&(server_caps as u16).to_le_bytes());
    greeting.extend_from_slice(&[45, 2, 0]);
    greeting.extend_from_slice(&((server_caps >> 16) as u16).to_le_bytes());
    greeting.extend_from_slice(&[21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    greeting.extend_from_slice(b"ijklmnopqrst\x00mysql_native_password\x00");
    let mut hello = server_caps.to_le_bytes().to_vec();
    hello.extend_from_slice(&[0, 0, 0, 1, 45]);
    hello.extend_from_slice(&[0; 23]);
    hello.extend_from_slice(b"app\x00\x14aaaaaaaaaaaaaaaaaaaashop\x00mysql_native_password\x00");
    let resultset = one_row_resultset();
    vec![
        (S, packet(&greeting, 0)),
        (C, packet(&hello, 1)),
        (S, packet(&[0, 0, 0, 2, 0, 0, 0], 2)),
        (C, packet(b"\x03SELECT 1", 0)),
        (S, resultset),
        (C, packet(b"\x03SELEC 2", 0)),
        (
            S,
            packet(b"\xff\x28\x04#42000You have an error in your SQL syntax", 1),
        ),
        (C, packet(b"\x01", 0)),
    ]
}

#[test]
fn mysql_records_are_the_connections() {
    use l7decode::mysql::Outcome;
    let events = same_as_connection::<l7decode::mysql::Session>(
        &mysql_conversation(),
        Limits::default(),
        Protocol::Mysql,
    );
    let summary: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Mysql(c) => Some((c.name(), c.query(), c.outcome, c.rows)),
            _ => None,
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some("LOGIN"), None, Outcome::Ok, 0),
            (Some("COM_QUERY"), Some("SELECT 1"), Outcome::Ok, 1),
            (Some("COM_QUERY"), Some("SELEC 2"), Outcome::Err, 0),
            (Some("COM_QUIT"), None, Outcome::NoResponseExpected, 0),
        ]
    );
}

/// Two MongoDB finds answered out of order, and an error reply.
fn mongo_conversation() -> Vec<(Direction, Vec<u8>)> {
    let find = |coll| doc(&[("find", Ok(coll)), ("$db", Ok("shop"))]);
    vec![
        (
            C,
            [op_msg(1, 0, &find("items")), op_msg(2, 0, &find("users"))].concat(),
        ),
        (S, op_msg(10, 2, &doc(&[("ok", Err(1.0))]))),
        (
            S,
            op_msg(11, 1, &doc(&[("ok", Err(0.0)), ("errmsg", Ok("no"))])),
        ),
    ]
}

#[test]
fn mongo_records_are_the_connections() {
    use l7decode::mongo::Outcome;
    let events = same_as_connection::<l7decode::mongo::Session>(
        &mongo_conversation(),
        Limits::default(),
        Protocol::Mongo,
    );
    let summary: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Mongo(o) => Some((o.request_id, o.collection(), o.outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some(2), Some("users"), Outcome::Ok),
            (Some(1), Some("items"), Outcome::Error),
        ]
    );
}

#[test]
fn debug_shows_state_not_payloads() {
    let mut http = l7decode::http::Decoder::new(Limits::default());
    http.feed(
        C,
        Timestamp(1),
        b"GET /secret?token=abc HTTP/1.1\r\nCookie: s=1\r\n",
    )
    .unwrap();
    let debug = format!("{http:?}");
    assert!(
        !debug.contains("secret") && !debug.contains("s=1"),
        "{debug}"
    );
    let mut mysql = l7decode::mysql::Decoder::new(Limits::default());
    for (dir, bytes) in mysql_conversation().iter().take(4) {
        mysql.feed(*dir, Timestamp(1), bytes).unwrap();
    }
    let debug = format!("{mysql:?}");
    assert!(!debug.contains("SELECT"), "{debug}");
}
