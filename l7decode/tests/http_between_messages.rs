//! HTTP/1.x: bytes between messages. Empty lines before a start line (CRLF or bare LF, in either
//! direction, at a direction's start or after a message) are ignored as RFC 9112 §2.2 asks:
//! nothing is skipped and the next message is intact. Other stray bytes are skipped until the
//! next start line and counted, and the message after them keeps its status, its times and its
//! request. Every case is fed in several chunkings, which must all give the same events.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::invariant;
use l7decode::{Connection, Direction, Event, Limits, Protocol, Timestamp, Transaction};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// The chunk sizes every case is fed in, besides whole turns.
const CHUNKS: &[usize] = &[1, 2, 3, 5, 7, 16];

fn turns(steps: &[(Direction, &[u8])]) -> Vec<(Direction, Vec<u8>)> {
    steps.iter().map(|(d, b)| (*d, b.to_vec())).collect()
}

/// The events of `steps` (turn `i` at time `10 i`, both ends at 1000), the same in every chunking.
fn events(steps: &[(Direction, &[u8])]) -> Vec<Event> {
    invariant(&turns(steps), CHUNKS, Limits::default(), 1_000)
}

fn transactions(events: &[Event]) -> Vec<&Transaction> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transaction(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn resyncs(events: &[Event]) -> Vec<(Direction, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Resynced { direction, skipped } => Some((*direction, *skipped)),
            _ => None,
        })
        .collect()
}

/// What a record says: method, target, status, reason, and the four times (request first and
/// last, response first and last).
type Summary<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<u16>,
    Option<&'a str>,
    [u64; 4],
);

fn summary(t: &Transaction) -> Summary<'_> {
    let time = |m: Option<&l7decode::Message>, first: bool| {
        m.map_or(u64::MAX, |m| if first { m.first.0 } else { m.last.0 })
    };
    let (req, resp) = (t.request.as_ref(), t.response.as_ref());
    (
        t.method(),
        t.uri(),
        t.status(),
        t.reason(),
        [
            time(req, true),
            time(req, false),
            time(resp, true),
            time(resp, false),
        ],
    )
}

/// Every record has both sides, its response starting after its request ended.
fn assert_well_timed(records: &[&Transaction]) {
    for t in records {
        let (req, resp) = (t.request.as_ref().unwrap(), t.response.as_ref().unwrap());
        assert!(resp.first > req.last, "{t:?}");
        assert!(t.ttfb_ns().unwrap() > 0, "{t:?}");
        assert!(!t.flags.orphan && !t.flags.missing_response, "{t:?}");
    }
}

const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const GET_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
const OK_2: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

#[test]
fn empty_lines_before_the_first_request_are_ignored() {
    for blank in [&b"\r\n"[..], b"\n", b"\r\n\r\n", b"\n\r\n\n"] {
        let events = events(&[(C, blank), (C, GET_A), (S, OK_2)]);
        assert_eq!(events.first(), Some(&Event::Protocol(Protocol::Http)));
        let t = transactions(&events);
        assert_eq!(
            t.iter().map(|t| summary(t)).collect::<Vec<_>>(),
            [(
                Some("GET"),
                Some("/a"),
                Some(200),
                Some("OK"),
                [10, 10, 20, 20]
            )],
            "{blank:?}"
        );
        assert_eq!(resyncs(&events), [], "{blank:?}: nothing skipped");
        // The head is the request as sent, without the line ends before it.
        assert_eq!(t[0].request.as_ref().unwrap().head(), GET_A);
    }
    // The server's side too (a response before any request is an orphan, still read whole).
    let events = events(&[(S, b"\r\n"), (S, OK_2)]);
    let t = transactions(&events);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].status(), t[0].reason()), (Some(200), Some("OK")));
    assert_eq!(t[0].response.as_ref().unwrap().first, Timestamp(10));
    assert!(t[0].flags.orphan);
    assert_eq!(resyncs(&events), []);
}

#[test]
fn a_decoder_used_on_its_own_ignores_them_too() {
    let mut http = l7decode::http::Decoder::new(Limits::default());
    http.feed(C, Timestamp(1), b"\r\n\n").unwrap();
    http.feed(C, Timestamp(2), GET_A).unwrap();
    http.feed(S, Timestamp(3), b"\r\n").unwrap();
    http.feed(S, Timestamp(4), OK_2).unwrap();
    let Some(Event::Transaction(t)) = http.poll_event() else {
        panic!("a transaction")
    };
    assert_eq!(
        summary(&t),
        (Some("GET"), Some("/a"), Some(200), Some("OK"), [2, 2, 4, 4])
    );
    assert_eq!(http.poll_event(), None);
    assert_eq!(http.stats().skipped_bytes, 0);
}

#[test]
fn empty_lines_between_pipelined_requests_are_ignored() {
    let mut client = GET_A.to_vec();
    client.extend_from_slice(b"\r\n");
    client.extend_from_slice(GET_B);
    client.extend_from_slice(b"\n\r\n");
    client.extend_from_slice(b"POST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\r\n");
    client.extend_from_slice(b"HEAD /d HTTP/1.1\r\n\r\n");
    let mut server = OK_2.to_vec();
    server.extend_from_slice(NOT_FOUND);
    server.extend_from_slice(b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!");
    server.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
    let events = events(&[(C, &client), (S, &server)]);
    let t = transactions(&events);
    let got: Vec<_> = t
        .iter()
        .map(|t| (t.method(), t.uri(), t.status(), t.reason()))
        .collect();
    assert_eq!(
        got,
        [
            (Some("GET"), Some("/a"), Some(200), Some("OK")),
            (Some("GET"), Some("/b"), Some(404), Some("Not Found")),
            (Some("POST"), Some("/c"), Some(201), Some("Created")),
            (Some("HEAD"), Some("/d"), Some(200), Some("OK")),
        ]
    );
    assert_eq!(t[2].request.as_ref().unwrap().body_bytes, 3);
    assert_well_timed(&t);
    assert_eq!(resyncs(&events), []);
}

#[test]
fn a_line_end_past_a_response_body_does_not_damage_the_next_response() {
    // The reported case: a CRLF beyond a Content-Length, sent with the body, long before the
    // next request. The next response keeps its status and starts at its status line.
    for stray in [&b"\r\n"[..], b"\n", b"\r\n\r\n", b"\r\n\n\r\n"] {
        let mut first = OK_2.to_vec();
        first.extend_from_slice(stray);
        let events = events(&[(C, GET_A), (S, &first), (C, GET_B), (S, OK_2)]);
        let t = transactions(&events);
        assert_eq!(
            t.iter().map(|t| summary(t)).collect::<Vec<_>>(),
            [
                (
                    Some("GET"),
                    Some("/a"),
                    Some(200),
                    Some("OK"),
                    [0, 0, 10, 10]
                ),
                (
                    Some("GET"),
                    Some("/b"),
                    Some(200),
                    Some("OK"),
                    [20, 20, 30, 30]
                ),
            ],
            "{stray:?}"
        );
        assert_well_timed(&t);
        assert_eq!(resyncs(&events), [], "{stray:?}");
        assert_eq!(t[1].response.as_ref().unwrap().head(), &OK_2[..38]);
    }
    // After a chunked body, after a response without a body, and after an interim response.
    let events = events(&[
        (C, GET_A),
        (
            S,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\r\n",
        ),
        (C, GET_B),
        (S, b"HTTP/1.1 204 No Content\r\n\r\n\r\n"),
        (
            C,
            b"POST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        ),
        (S, b"HTTP/1.1 100 Continue\r\n\r\n\r\n"),
        (C, b"z"),
        (S, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let t = transactions(&events);
    assert_eq!(
        t.iter().map(|t| summary(t)).collect::<Vec<_>>(),
        [
            (
                Some("GET"),
                Some("/a"),
                Some(200),
                Some("OK"),
                [0, 0, 10, 10]
            ),
            (
                Some("GET"),
                Some("/b"),
                Some(204),
                Some("No Content"),
                [20, 20, 30, 30]
            ),
            // The response is the final one: it starts at its own status line.
            (
                Some("POST"),
                Some("/c"),
                Some(201),
                Some("Created"),
                [40, 60, 70, 70]
            ),
        ]
    );
    assert_eq!(t[2].interim_statuses(), [100]);
    assert_eq!(t[0].response.as_ref().unwrap().body_bytes, 2);
    assert_eq!(resyncs(&events), []);
}

#[test]
fn stray_bytes_before_a_start_line_are_skipped_and_counted() {
    // Junk that ends a line, junk that does not (the status line follows mid-line), a lone CR
    // (not an empty line), in the server's direction, sent long before the next response.
    for (junk, skipped) in [
        (&b"xx\r\n"[..], 4),
        // Empty lines before the junk are ignored; once out of sync, the line ends after it
        // are skipped with it, up to the start line.
        (b"\r\nxx\r\n\r\n", 6),
        (b"xx", 2),
        (b"\r", 1),
        (b"\r\r\n", 3),
        (b"<html>oops</html>\n", 18),
        (b"HTTP/1.1 200", 12),
        (b"H", 1),
    ] {
        let mut first = OK_2.to_vec();
        first.extend_from_slice(junk);
        let steps = [(C, GET_A), (S, &first[..]), (C, GET_B), (S, NOT_FOUND)];
        let events = events(&steps);
        let t = transactions(&events);
        assert_eq!(
            t.iter().map(|t| summary(t)).collect::<Vec<_>>(),
            [
                (
                    Some("GET"),
                    Some("/a"),
                    Some(200),
                    Some("OK"),
                    [0, 0, 10, 10]
                ),
                (
                    Some("GET"),
                    Some("/b"),
                    Some(404),
                    Some("Not Found"),
                    [20, 20, 30, 30]
                ),
            ],
            "{junk:?}"
        );
        assert_well_timed(&t);
        assert_eq!(resyncs(&events), [(S, skipped)], "{junk:?}");
        // The skip is reported just before the record that follows it.
        let at = events
            .iter()
            .position(|e| matches!(e, Event::Resynced { .. }))
            .unwrap();
        assert!(
            matches!(&events[at + 1], Event::Transaction(t) if t.uri() == Some("/b")),
            "{junk:?}: {events:?}"
        );
        let mut conn = Connection::new(Limits::default());
        for (i, (dir, bytes)) in steps.iter().enumerate() {
            conn.feed(*dir, Timestamp(i as u64 * 10), bytes).unwrap();
        }
        assert_eq!(conn.stats().skipped_bytes, skipped, "{junk:?}");
    }
    // The junk and the status line in one piece: the response starts at its status line's time
    // all the same (the time of the piece that brought it).
    let events = events(&[
        (C, GET_A),
        (S, OK_2),
        (S, b"xx\r"),
        (C, GET_B),
        (S, b"\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ]);
    let t = transactions(&events);
    assert_eq!(
        summary(t[1]),
        (
            Some("GET"),
            Some("/b"),
            Some(404),
            Some("Not Found"),
            [30, 30, 40, 40]
        )
    );
    assert_eq!(resyncs(&events), [(S, 4)]);
}

#[test]
fn stray_bytes_before_a_request_line_are_skipped_and_counted() {
    let events = events(&[
        (C, b"GET /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhixx"),
        (S, OK_2),
        (C, b"\r\nGET /b HTTP/1.1\r\n\r\n"),
        (S, NOT_FOUND),
        (C, b"\rGET /c HTTP/1.1\r\n\r\n"),
        (S, OK_2),
    ]);
    let t = transactions(&events);
    assert_eq!(
        t.iter().map(|t| summary(t)).collect::<Vec<_>>(),
        [
            (
                Some("GET"),
                Some("/a"),
                Some(200),
                Some("OK"),
                [0, 0, 10, 10]
            ),
            (
                Some("GET"),
                Some("/b"),
                Some(404),
                Some("Not Found"),
                [20, 20, 30, 30]
            ),
            (
                Some("GET"),
                Some("/c"),
                Some(200),
                Some("OK"),
                [40, 40, 50, 50]
            ),
        ]
    );
    assert_well_timed(&t);
    // "xx" then its line end; the lone CR.
    assert_eq!(resyncs(&events), [(C, 4), (C, 1)]);
    // A lone CR before the first request: not an empty line, skipped.
    let events = crate::events(&[(C, &b"\rGET /a HTTP/1.1\r\n\r\n"[..]), (S, OK_2)]);
    assert_eq!(
        transactions(&events)
            .iter()
            .map(|t| summary(t))
            .collect::<Vec<_>>(),
        [(
            Some("GET"),
            Some("/a"),
            Some(200),
            Some("OK"),
            [0, 0, 10, 10]
        )]
    );
    assert_eq!(resyncs(&events), [(C, 1)]);
}

#[test]
fn a_long_run_of_stray_bytes_is_never_held() {
    // Line ends, bytes that match nothing, and a head that never ends: none is held beyond
    // `max_buffered`, whatever the size of the feeds; the response after them is read whole.
    let limits = Limits::default().max_buffered(1024);
    let newlines = b"\r\n".repeat(50_000);
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| b"abcdefgh\x00\xff"[(i % 10) as usize])
        .collect();
    let mut endless = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    endless.extend(std::iter::repeat_n(b'p', 100_000));
    endless.extend_from_slice(b"\r\n");
    for (junk, skipped) in [
        (&newlines, 0),
        (&noise, noise.len() as u64),
        (&endless, endless.len() as u64),
    ] {
        for chunk in [1, 1000, usize::MAX] {
            let mut conn = Connection::new(limits);
            conn.feed(C, Timestamp(1), GET_A).unwrap();
            conn.feed(S, Timestamp(2), OK_2).unwrap();
            conn.feed(C, Timestamp(3), GET_B).unwrap();
            let base = conn.buffered_bytes();
            let mut most = 0;
            for piece in junk.chunks(chunk) {
                conn.feed(S, Timestamp(4), piece).unwrap();
                most = most.max(conn.buffered_bytes());
            }
            conn.feed(S, Timestamp(5), NOT_FOUND).unwrap();
            let events: Vec<_> = std::iter::from_fn(|| conn.poll_event()).collect();
            let t = transactions(&events);
            assert_eq!(
                t.iter().map(|t| summary(t)).collect::<Vec<_>>(),
                [
                    (Some("GET"), Some("/a"), Some(200), Some("OK"), [1, 1, 2, 2]),
                    (
                        Some("GET"),
                        Some("/b"),
                        Some(404),
                        Some("Not Found"),
                        [3, 3, 5, 5]
                    ),
                ],
                "chunks of {chunk}"
            );
            assert_eq!(conn.stats().skipped_bytes, skipped, "chunks of {chunk}");
            // At most a head gathered up to the bound and its bytes read again: a few times
            // `max_buffered`, not the junk's 100 KB.
            assert!(
                most <= base + 3 * 1024,
                "chunks of {chunk}: {most} bytes held, {base} before"
            );
        }
    }
}

#[test]
fn line_ends_are_no_evidence_of_http() {
    // A connection of nothing but line ends is given up at the recognition bound like any other
    // bytes that are not a message (they are ignored, not skipped, so nothing is reported as
    // skipped); a port that says HTTP keeps waiting for a start line.
    let limits = Limits::default().max_unrecognized(64);
    let newlines = b"\r\n".repeat(100);
    let steps = [(C, &newlines[..]), (C, GET_A), (S, OK_2)];
    let events = invariant(&turns(&steps), CHUNKS, limits, 1_000);
    assert_eq!(events, [Event::Protocol(Protocol::Unknown)]);
    let mut conn = Connection::new(limits).with_hint(Some(Protocol::Http));
    for (i, (dir, bytes)) in steps.iter().enumerate() {
        conn.feed(*dir, Timestamp(i as u64), bytes).unwrap();
    }
    let events: Vec<_> = std::iter::from_fn(|| conn.poll_event()).collect();
    let t = transactions(&events);
    assert_eq!(
        t.iter().map(|t| summary(t)).collect::<Vec<_>>(),
        [(Some("GET"), Some("/a"), Some(200), Some("OK"), [1, 1, 2, 2])]
    );
    assert_eq!(conn.stats().skipped_bytes, 0);
    // Within the bound they are ignored without a hint.
    let events = invariant(
        &turns(&[(C, &newlines[..60]), (C, GET_A), (S, OK_2)]),
        CHUNKS,
        limits,
        1_000,
    );
    assert_eq!(transactions(&events).len(), 1);
    assert_eq!(resyncs(&events), []);
}

#[test]
fn a_cr_left_waiting_at_the_end_or_before_a_gap_is_skipped() {
    let events = events(&[(C, GET_A), (S, OK_2), (S, b"\r")]);
    assert_eq!(transactions(&events).len(), 1);
    assert_eq!(resyncs(&events), [(S, 1)]);
    let mut conn = Connection::new(Limits::default());
    conn.feed(C, Timestamp(1), GET_A).unwrap();
    conn.feed(C, Timestamp(1), GET_B).unwrap();
    conn.feed(S, Timestamp(2), OK_2).unwrap();
    conn.feed(S, Timestamp(2), b"\r").unwrap();
    conn.feed_gap(S, Timestamp(3), 10);
    conn.feed(S, Timestamp(4), NOT_FOUND).unwrap();
    assert_eq!(conn.stats().skipped_bytes, 1);
    let events: Vec<_> = std::iter::from_fn(|| conn.poll_event()).collect();
    let t = transactions(&events);
    // The gap took the start of /b's response: /b is reported without one, and the 404 after
    // the gap is not paired with it.
    assert_eq!(t.len(), 3, "{events:?}");
    assert_eq!((t[0].uri(), t[0].status()), (Some("/a"), Some(200)));
    assert!(t[1].uri() == Some("/b") && t[1].flags.missing_response);
    assert!(t[2].flags.orphan && t[2].status() == Some(404));
}

/// Feeds `steps`, where `Err(n)` is a gap of `n` bytes in that direction (at the step's
/// time, turn `i` at time `10 i`), then both ends; returns every event.
fn run_with_gaps(steps: &[(Direction, Result<&[u8], u64>)]) -> Vec<Event> {
    let mut conn = Connection::new(Limits::default());
    for (i, (dir, step)) in steps.iter().enumerate() {
        let now = Timestamp(i as u64 * 10);
        match step {
            Ok(bytes) => {
                conn.feed(*dir, now, bytes).unwrap();
            }
            Err(missing) => conn.feed_gap(*dir, now, *missing),
        }
    }
    conn.feed_eof(C, Timestamp(1_000));
    conn.feed_eof(S, Timestamp(1_000));
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// (method, target, status, gap, missing response, orphan) of each record.
type Pairing<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<u16>,
    bool,
    bool,
    bool,
);

fn pairing(events: &[Event]) -> Vec<Pairing<'_>> {
    transactions(events)
        .into_iter()
        .map(|t| {
            let f = t.flags;
            (
                t.method(),
                t.uri(),
                t.status(),
                f.gap,
                f.missing_response,
                f.orphan,
            )
        })
        .collect()
}

#[test]
fn a_lost_segment_of_line_ends_between_requests_keeps_no_place() {
    // The capture lost the client's lone CRLF: a gap too short for a request, right before a
    // request line, began none; GET /b pairs with its own response.
    let events = run_with_gaps(&[
        (C, Ok(GET_A)),
        (S, Ok(OK_2)),
        (C, Err(2)),
        (C, Ok(GET_B)),
        (S, Ok(NOT_FOUND)),
    ]);
    assert_eq!(
        pairing(&events),
        [
            (Some("GET"), Some("/a"), Some(200), false, false, false),
            (Some("GET"), Some("/b"), Some(404), false, false, false),
        ]
    );
    // A gap that could hold a request keeps its place (its response is reported without it);
    // so does a short one followed by anything but a request line (it may have begun one).
    for (missing, next) in [
        (14, GET_B),
        (2, &b"b HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"[..]),
    ] {
        let events = run_with_gaps(&[
            (C, Ok(GET_A)),
            (S, Ok(OK_2)),
            (C, Err(missing)),
            (C, Ok(next)),
            (S, Ok(OK_2)),
            (S, Ok(NOT_FOUND)),
        ]);
        assert_eq!(
            pairing(&events),
            [
                (Some("GET"), Some("/a"), Some(200), false, false, false),
                (None, None, Some(200), true, false, false),
                (Some("GET"), Some("/b"), Some(404), false, false, false),
            ],
            "{missing}"
        );
    }
}

#[test]
fn a_response_lost_after_stray_bytes_is_missing_not_shifted() {
    // Junk after /a's body puts the server's side out of sync between messages; the capture
    // then loses /b's whole response. /b is reported without one (flagged), and /c's response
    // pairs with /c, not with /b.
    let mut first = OK_2.to_vec();
    first.extend_from_slice(b"xx\r\n");
    let events = run_with_gaps(&[
        (C, Ok(GET_A)),
        (S, Ok(&first)),
        (C, Ok(GET_B)),
        (S, Err(40)),
        (C, Ok(b"GET /c HTTP/1.1\r\n\r\n")),
        (S, Ok(NOT_FOUND)),
    ]);
    assert_eq!(
        pairing(&events),
        [
            (Some("GET"), Some("/a"), Some(200), false, false, false),
            (Some("GET"), Some("/b"), None, true, true, false),
            (Some("GET"), Some("/c"), Some(404), false, false, false),
        ]
    );
    assert_eq!(resyncs(&events), [(S, 4)]);
}
