//! Response timeouts, for HTTP, MySQL and MongoDB: a request no response answers is reported at
//! its deadline (its last byte + `Limits::response_timeout`), exactly then and not a nanosecond
//! before, flagged `timed_out` and `missing_response`; a response that still comes is paired
//! with the request reported and consumed, with no orphan and no second record; while a
//! response is being read, nothing times out.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use std::time::Duration;

use common::{doc, one_row_resultset, op_msg, packet};
use l7decode::{Connection, Direction, Event, Flags, Limits, Stats, Timestamp};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;
const SECOND: u64 = 1_000_000_000;

fn limits() -> Limits {
    Limits::default().response_timeout(Duration::from_secs(1))
}

fn drain(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// The records among `events`, each as its flags.
fn records(events: &[Event]) -> Vec<Flags> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transaction(t) => Some(t.flags),
            Event::Mysql(c) => Some(c.flags),
            Event::Mongo(o) => Some(o.flags),
            _ => None,
        })
        .collect()
}

/// Feeds `request` at `sent`, checks the request is reported at `sent` + 1 s exactly, then feeds
/// `late` (its response, after the deadline) and `next`/`answer` (an exchange that pairs as
/// usual). Returns the records of the late response and of the next exchange, and the counters.
fn timed_out_then_late(
    mut conn: Connection,
    request: &[u8],
    late: &[u8],
    next: &[u8],
    answer: &[u8],
) -> (Vec<Event>, Stats) {
    let sent = Timestamp(5 * SECOND);
    conn.feed(C, sent, request).unwrap();
    let _ = drain(&mut conn);
    let deadline = Timestamp(sent.0 + SECOND);
    assert_eq!(conn.poll_timeout(), Some(deadline));
    conn.handle_timeout(Timestamp(deadline.0 - 1));
    assert_eq!(drain(&mut conn), [], "a nanosecond before the deadline");
    assert_eq!(conn.poll_timeout(), Some(deadline));
    conn.handle_timeout(deadline);
    let reported = drain(&mut conn);
    let [flags] = records(&reported)[..] else {
        panic!("{reported:?}")
    };
    assert!(flags.timed_out && flags.missing_response && !flags.orphan);
    assert_eq!(conn.stats().timed_out, 1);
    assert_eq!(conn.poll_timeout(), None);
    // The response comes after all: consumed with the place the request kept.
    conn.feed(S, Timestamp(deadline.0 + 5), late).unwrap();
    let mut after = drain(&mut conn);
    assert_eq!(records(&after), [], "{after:?}");
    assert_eq!(conn.stats().late_responses, 1);
    // The connection goes on, paired as usual.
    conn.feed(C, Timestamp(deadline.0 + 10), next).unwrap();
    conn.feed(S, Timestamp(deadline.0 + 20), answer).unwrap();
    after.extend(drain(&mut conn));
    (after, conn.stats())
}

#[test]
fn http_request_reported_at_its_deadline_and_its_late_response_consumed() {
    let conn = Connection::new(limits());
    let (after, stats) = timed_out_then_late(
        conn,
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow",
        b"HEAD /next HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
    );
    let records: Vec<_> = after
        .iter()
        .filter_map(|e| match e {
            Event::Transaction(t) => Some((t.uri(), t.status(), t.flags)),
            _ => None,
        })
        .collect();
    // The late response was framed by its own request (a GET with a body), so the HEAD's
    // response pairs with the HEAD.
    assert_eq!(records, [(Some("/next"), Some(200), Flags::default())]);
    assert_eq!(
        (stats.transactions, stats.timed_out, stats.late_responses),
        (2, 1, 1)
    );
}

#[test]
fn http_deadlines_wait_for_responses_being_read_and_queued_requests() {
    let mut conn = Connection::new(limits());
    conn.feed(
        C,
        Timestamp(0),
        b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    assert_eq!(conn.poll_timeout(), Some(Timestamp(SECOND)));
    // /a's response is being read: nothing times out, however long it takes.
    conn.feed(
        S,
        Timestamp(10),
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
    )
    .unwrap();
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(Timestamp(100 * SECOND));
    conn.feed(S, Timestamp(100 * SECOND), b"67890").unwrap();
    // /b waited behind it: its deadline runs from the end of /a's response.
    assert_eq!(conn.poll_timeout(), Some(Timestamp(101 * SECOND)));
    let events = drain(&mut conn);
    assert!(
        matches!(&events[..], [Event::Protocol(_), Event::Transaction(t)] if t.uri() == Some("/a"))
    );
    conn.handle_timeout(Timestamp(101 * SECOND));
    let events = drain(&mut conn);
    assert!(
        matches!(&events[..], [Event::Transaction(t)] if t.uri() == Some("/b") && t.flags.timed_out)
    );
    // A request whose body is still coming has no deadline yet.
    conn.feed(
        C,
        Timestamp(102 * SECOND),
        b"POST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nx",
    )
    .unwrap();
    assert_eq!(conn.poll_timeout(), None);
    conn.feed(C, Timestamp(103 * SECOND), b"yz").unwrap();
    assert_eq!(conn.poll_timeout(), Some(Timestamp(104 * SECOND)));
    // The end of the server's side reports what still waits, once.
    conn.feed_eof(S, Timestamp(103 * SECOND));
    let events = drain(&mut conn);
    let [flags] = records(&events)[..] else {
        panic!("{events:?}")
    };
    assert!(flags.missing_response && !flags.timed_out);
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn mysql_command_reported_at_its_deadline_and_its_late_reply_consumed() {
    use l7decode::mysql::Outcome;
    // Joined after the login: a command, then (late) its one-row resultset.
    let resultset = one_row_resultset();
    let conn = Connection::new(limits());
    let (after, stats) = timed_out_then_late(
        conn,
        &packet(b"\x03SELECT SLEEP(100)", 0),
        &resultset,
        &packet(b"\x0e", 0),
        &packet(&[0, 0, 0, 2, 0, 0, 0], 1),
    );
    let records: Vec<_> = after
        .iter()
        .filter_map(|e| match e {
            Event::Mysql(c) => Some((c.name(), c.outcome, c.flags)),
            _ => None,
        })
        .collect();
    assert_eq!(records, [(Some("COM_PING"), Outcome::Ok, Flags::default())]);
    assert_eq!(
        (stats.transactions, stats.timed_out, stats.late_responses),
        (2, 1, 1)
    );
}

#[test]
fn mongo_request_reported_at_its_deadline_and_its_late_reply_consumed() {
    use l7decode::mongo::Outcome;
    let find = |id, coll| op_msg(id, 0, &doc(&[("find", Ok(coll)), ("$db", Ok("shop"))]));
    let ok = |id, to| op_msg(id, to, &doc(&[("ok", Err(1.0))]));
    let conn = Connection::new(limits());
    let (after, stats) = timed_out_then_late(
        conn,
        &find(1, "slow"),
        &ok(100, 1),
        &find(2, "next"),
        &ok(101, 2),
    );
    let records: Vec<_> = after
        .iter()
        .filter_map(|e| match e {
            Event::Mongo(o) => Some((o.collection(), o.outcome, o.flags)),
            _ => None,
        })
        .collect();
    assert_eq!(records, [(Some("next"), Outcome::Ok, Flags::default())]);
    assert_eq!(
        (stats.transactions, stats.timed_out, stats.late_responses),
        (2, 1, 1)
    );
}

#[test]
fn mongo_deadlines_follow_the_oldest_request_still_waiting() {
    let find = |id| op_msg(id, 0, &doc(&[("find", Ok("items")), ("$db", Ok("shop"))]));
    let ok = |id, to| op_msg(id, to, &doc(&[("ok", Err(1.0))]));
    let mut decoder = l7decode::mongo::Decoder::new(limits());
    decoder.feed(C, Timestamp(0), &find(1)).unwrap();
    decoder.feed(C, Timestamp(SECOND / 2), &find(2)).unwrap();
    assert_eq!(decoder.poll_timeout(), Some(Timestamp(SECOND)));
    // Answered out of order: the first is answered, the second's deadline is next.
    decoder.feed(S, Timestamp(SECOND / 4), &ok(100, 1)).unwrap();
    assert_eq!(decoder.poll_timeout(), Some(Timestamp(3 * SECOND / 2)));
    // While a reply message is being read, nothing times out.
    let reply = ok(101, 2);
    decoder.feed(S, Timestamp(SECOND), &reply[..10]).unwrap();
    assert_eq!(decoder.poll_timeout(), None);
    decoder.feed(S, Timestamp(SECOND), &reply[10..]).unwrap();
    assert_eq!(decoder.poll_timeout(), None);
    let records = std::iter::from_fn(|| decoder.poll_event()).count();
    assert_eq!(records, 2);
    assert_eq!(decoder.stats().timed_out, 0);
}

#[test]
fn the_default_deadline_is_a_minute_and_unbounded_limits_never_time_out() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(C, Timestamp(0), b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(conn.poll_timeout(), Some(Timestamp(60 * SECOND)));
    let mut conn = Connection::new(Limits::unbounded_dangerous());
    conn.feed(C, Timestamp(0), b"GET / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(conn.poll_timeout(), None, "never");
}

#[test]
fn requests_sent_after_the_servers_end_are_reported_as_the_client_ends() {
    let mut conn = Connection::new(limits());
    conn.feed(C, Timestamp(0), b"GET /a HTTP/1.1\r\n\r\n")
        .unwrap();
    conn.feed_eof(S, Timestamp(1));
    conn.feed(C, Timestamp(2), b"GET /b HTTP/1.1\r\n\r\n")
        .unwrap();
    conn.feed_eof(C, Timestamp(3));
    let uris: Vec<_> = drain(&mut conn)
        .iter()
        .filter_map(|e| match e {
            Event::Transaction(t) if t.flags.missing_response => Some(t.uri().map(str::to_owned)),
            _ => None,
        })
        .collect();
    assert_eq!(uris, [Some("/a".to_owned()), Some("/b".to_owned())]);
    assert_eq!(conn.poll_timeout(), None);
}
