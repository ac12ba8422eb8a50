//! Every bound is a `Limits` field, and reaching it is counted in `Stats`: heads and MongoDB
//! messages over `max_buffered` (a large MongoDB message is read in part, never buffered whole),
//! `max_pending`, `max_unrecognized`, `max_statements` and `max_mysql_prefix`; in any chunking.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::{doc, message, op_msg, packet};
use l7decode::{Connection, Direction, Event, Limits, Protocol, Stats, Timestamp};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// The events (the same in every chunking) and the counters of the turns fed whole.
fn run(turns: &[(Direction, Vec<u8>)], limits: Limits) -> (Vec<Event>, Stats) {
    let events = common::invariant(turns, &[1, 7, 1000], limits, 1_000);
    let mut conn = Connection::new(limits);
    for (dir, bytes) in turns {
        conn.feed(*dir, Timestamp(0), bytes).unwrap();
    }
    conn.feed_eof(C, Timestamp(1_000));
    conn.feed_eof(S, Timestamp(1_000));
    (events, conn.stats())
}

/// An OP_MSG insert: its command body, then `docs` documents of about `size` bytes in a kind-1
/// `documents` sequence.
fn insert(id: u32, docs: usize, size: usize) -> Vec<u8> {
    let value = "x".repeat(size);
    let mut sections = vec![0, 0, 0, 0, 0];
    sections.extend(doc(&[("insert", Ok("items")), ("$db", Ok("shop"))]));
    let mut sequence = b"documents\0".to_vec();
    for _ in 0..docs {
        sequence.extend(doc(&[("v", Ok(&value))]));
    }
    sections.push(1);
    sections.extend(((sequence.len() + 4) as i32).to_le_bytes());
    sections.extend(sequence);
    message(id, 0, 2013, &sections)
}

#[test]
fn a_mongodb_message_over_the_bound_is_read_in_part_never_buffered_whole() {
    let limits = Limits::default().max_buffered(4096);
    let big = insert(7, 200, 5000); // about 1 MB
    assert!(big.len() > 1_000_000);
    let turns = vec![
        (C, big.clone()),
        (S, op_msg(8, 7, &doc(&[("ok", Err(1.0))]))),
    ];
    let (events, stats) = run(&turns, limits);
    let [Event::Protocol(Protocol::Mongo), Event::Mongo(op)] = &events[..] else {
        panic!("{events:?}")
    };
    // What the first bytes hold is read; the record says the rest was not.
    assert_eq!((op.command(), op.db()), (Some("insert"), Some("shop")));
    assert!(op.flags.truncated);
    assert_eq!(op.request.unwrap().bytes, big.len() as u64);
    assert_eq!(op.outcome, l7decode::mongo::Outcome::Ok);
    assert_eq!(stats.over_buffered, 1);
    // Fed as segments, the decoder never holds more than the bound (and its fixed state).
    let mut conn = Connection::new(limits);
    let mut peak = 0;
    for segment in big.chunks(1448) {
        conn.feed(C, Timestamp(0), segment).unwrap();
        peak = peak.max(conn.buffered_bytes());
    }
    assert!(peak < 4096 + 8192, "{peak}");
    // Within the bound, the same message is read whole.
    let (events, stats) = run(&turns, Limits::default().max_buffered(2 << 20));
    assert!(matches!(&events[1], Event::Mongo(op) if !op.flags.truncated));
    assert_eq!(stats.over_buffered, 0);
}

#[cfg(feature = "compression")]
#[test]
fn a_compressed_mongodb_message_is_inflated_up_to_the_bound() {
    let inner = insert(9, 100, 1000); // inflates to about 100 KB
    let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&inner[16..], 6);
    let mut body = 2013i32.to_le_bytes().to_vec();
    body.extend(((inner.len() - 16) as u32).to_le_bytes());
    body.push(2);
    body.extend(zlib);
    let wire = message(9, 0, 2012, &body);
    assert!(wire.len() < 4096);
    let turns = vec![(C, wire), (S, op_msg(10, 9, &doc(&[("ok", Err(1.0))])))];
    let (events, stats) = run(&turns, Limits::default().max_buffered(4096));
    let Event::Mongo(op) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!((op.compressor, op.command()), (Some(2), Some("insert")));
    assert!(op.flags.truncated);
    assert_eq!(stats.over_buffered, 1);
    let (events, stats) = run(&turns, Limits::default().max_buffered(1 << 20));
    assert!(matches!(&events[1], Event::Mongo(op) if !op.flags.truncated));
    assert_eq!(stats.over_buffered, 0);
}

#[test]
fn an_http_head_over_the_bound_is_skipped_and_counted() {
    let mut request = b"GET /a HTTP/1.1\r\nX-Big: ".to_vec();
    request.extend(vec![b'y'; 1000]);
    request.extend(b"\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    let turns = vec![
        (C, request),
        (S, b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
    ];
    let (events, stats) = run(&turns, Limits::default().max_buffered(256));
    let uris: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transaction(t) => Some(t.uri()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, [Some("/b")]);
    assert!(stats.over_buffered >= 1, "{stats:?}");
    assert_eq!(run(&turns, Limits::default()).1.over_buffered, 0);
}

#[test]
fn pending_requests_unrecognised_bytes_and_statements_are_counted() {
    // max_pending: the oldest request is dropped.
    let turns = vec![(C, b"GET /1 HTTP/1.1\r\n\r\n".repeat(3))];
    let (_, stats) = run(&turns, Limits::default().max_pending(2));
    assert_eq!(stats.dropped_requests, 1);
    // max_unrecognized: given up once, unless the connection ends first.
    let turns = vec![(C, vec![0x01; 5000])];
    let (events, stats) = run(&turns, Limits::default().max_unrecognized(1024));
    assert_eq!(events[0], Event::Protocol(Protocol::Unknown));
    assert_eq!(stats.given_up, 1);
    let (_, stats) = run(&turns, Limits::default());
    assert_eq!(stats.given_up, 0);
    // max_statements: the older statement is forgotten, so its EXECUTE has no SQL.
    let prepare_ok = |id: u32| {
        let mut ok = vec![0];
        ok.extend(id.to_le_bytes());
        ok.extend([0, 0, 0, 0, 0, 0, 0]);
        packet(&ok, 1)
    };
    let mut execute = vec![0x17];
    execute.extend(1u32.to_le_bytes());
    execute.extend([0, 1, 0, 0, 0]);
    let turns = vec![
        (C, packet(b"\x16SELECT 1", 0)),
        (S, prepare_ok(1)),
        (C, packet(b"\x16SELECT 2", 0)),
        (S, prepare_ok(2)),
        (C, packet(&execute, 0)),
        (S, packet(&[0, 0, 0, 2, 0, 0, 0], 1)),
    ];
    let (events, stats) = run(&turns, Limits::default().max_statements(1));
    assert_eq!(stats.forgotten_statements, 1);
    let Some(Event::Mysql(exec)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!((exec.stmt_id, exec.query()), (Some(1), None));
    let (events, _) = run(&turns, Limits::default());
    assert!(matches!(events.last(), Some(Event::Mysql(c)) if c.query() == Some("SELECT 1")));
}

#[test]
fn mysql_texts_are_kept_up_to_the_prefix_and_cuts_counted() {
    let turns = vec![
        (C, packet(b"\x03SELECT 'a long literal'", 0)),
        (
            S,
            packet(b"\xff\x28\x04#42000You have an error in your SQL syntax", 1),
        ),
    ];
    let (events, stats) = run(&turns, Limits::default().max_mysql_prefix(16));
    let Some(Event::Mysql(c)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (c.query(), c.query_truncated()),
        (Some("SELECT 'a long "), true)
    );
    assert_eq!(c.text_len, 23);
    assert_eq!(c.error_code, Some(1064));
    assert_eq!(stats.texts_cut, 2);
    let (events, stats) = run(&turns, Limits::default());
    assert!(matches!(events.last(), Some(Event::Mysql(c)) if !c.query_truncated()));
    assert_eq!(stats.texts_cut, 0);
}
