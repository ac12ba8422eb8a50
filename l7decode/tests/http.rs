//! HTTP/1.x through the connection decoder: RFC 9112 framing, pipelining, interim responses,
//! tunnels, mid-stream starts, gaps, and chunking invariance.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use l7decode::{Connection, Direction, Event, Limits, Protocol, Timestamp, Transaction};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

/// Feeds `steps` (direction, time, bytes) and the EOFs, returning every event.
fn run(steps: &[(Direction, u64, &[u8])], eof: bool) -> Vec<Event> {
    let mut conn = Connection::new(Limits::default());
    let mut out = Vec::new();
    for (dir, t, bytes) in steps {
        conn.feed(*dir, Timestamp(*t), bytes).unwrap();
        while let Some(e) = conn.poll_event() {
            out.push(e);
        }
    }
    if eof {
        conn.feed_eof(C, Timestamp(1_000));
        conn.feed_eof(S, Timestamp(1_000));
        while let Some(e) = conn.poll_event() {
            out.push(e);
        }
    }
    out
}

fn transactions(events: &[Event]) -> Vec<&Transaction> {
    events
        .iter()
        .filter_map(|e| {
            if let Event::Transaction(t) = e {
                Some(t)
            } else {
                None
            }
        })
        .collect()
}

fn summary(t: &Transaction) -> (Option<&str>, Option<&str>, Option<u16>, u64, u64) {
    (
        t.method(),
        t.uri(),
        t.status(),
        t.request.as_ref().map_or(0, |m| m.body_bytes),
        t.response.as_ref().map_or(0, |m| m.body_bytes),
    )
}

#[test]
fn a_simple_exchange_with_timestamps() {
    let events = run(
        &[
            (
                C,
                10,
                b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel",
            ),
            (C, 12, b"lo"),
            (S, 20, b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\n"),
            (S, 25, b"abc"),
        ],
        false,
    );
    assert_eq!(events[0], Event::Protocol(Protocol::Http));
    let t = transactions(&events);
    assert_eq!(t.len(), 1);
    assert_eq!(
        summary(t[0]),
        (Some("POST"), Some("/api/items"), Some(201), 5, 3)
    );
    assert_eq!(t[0].reason(), Some("Created"));
    assert_eq!(t[0].request_version(), Some("HTTP/1.1"));
    let (req, resp) = (
        t[0].request.as_ref().unwrap(),
        t[0].response.as_ref().unwrap(),
    );
    assert_eq!(
        (req.first.0, req.last.0, resp.first.0, resp.last.0),
        (10, 12, 20, 25)
    );
    assert_eq!((t[0].latency_ns(), t[0].ttfb_ns()), (Some(13), Some(8)));
    assert_eq!(req.header("host"), Some(&b"x"[..]));
}

#[test]
fn pipelined_requests_with_head_in_the_middle() {
    let client: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    let server: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2594\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx";
    let events = run(&[(C, 1, client), (S, 2, server)], false);
    let t = transactions(&events);
    let got: Vec<_> = t.iter().map(|t| summary(t)).collect();
    assert_eq!(
        got,
        vec![
            (Some("GET"), Some("/a"), Some(200), 0, 2),
            (Some("HEAD"), Some("/b"), Some(200), 0, 0),
            (Some("GET"), Some("/c"), Some(404), 0, 1)
        ]
    );
}

#[test]
fn chunked_with_extensions_and_trailers_interim_and_no_body_statuses() {
    let client: &[u8] = b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndataGET /n HTTP/1.1\r\n\r\nGET /m HTTP/1.1\r\n\r\nGET /ch HTTP/1.1\r\n\r\n";
    let server: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n";
    let events = run(&[(C, 1, client), (S, 2, server)], false);
    let t = transactions(&events);
    assert_eq!(t.len(), 4);
    assert_eq!(t[0].interim_statuses(), &[100]);
    assert_eq!(summary(t[0]), (Some("POST"), Some("/up"), Some(201), 4, 0));
    assert_eq!(t[1].status(), Some(204));
    assert_eq!(t[2].status(), Some(304));
    assert_eq!(summary(t[3]), (Some("GET"), Some("/ch"), Some(200), 0, 11));
    assert!(t[3].flags.te_and_cl, "TE and CL together are flagged");
}

#[test]
fn close_delimited_missing_and_upgrade() {
    let events = run(
        &[
            (C, 1, b"GET /close HTTP/1.0\r\n\r\n"),
            (S, 2, b"HTTP/1.0 200 OK\r\n\r\nuntil the end"),
        ],
        true,
    );
    let t = transactions(&events);
    assert_eq!(
        summary(t[0]),
        (Some("GET"), Some("/close"), Some(200), 0, 13)
    );
    assert_eq!(
        t[0].response.as_ref().unwrap().last.0,
        2,
        "the last byte is the last data, not the close"
    );

    let events = run(
        &[
            (C, 1, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
            (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        true,
    );
    let t = transactions(&events);
    assert_eq!(t.len(), 2);
    assert!(t[1].response.is_none() && t[1].flags.missing_response);

    let events = run(
        &[
            (C, 1, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            (S, 2, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05GET / HTTP/1.1"),
            (C, 3, b"GET / HTTP/1.1\r\n\r\n"),
        ],
        false,
    );
    let t = transactions(&events);
    assert_eq!(t.len(), 1, "tunnel bytes are not decoded: {events:?}");
    assert!(t[0].flags.upgraded);
    assert!(events.contains(&Event::Tunnel));
}

#[test]
fn mid_stream_starts_never_pair_an_orphan_with_the_next_request() {
    let events = run(
        &[
            (S, 1, b"ody of a response we never saw the start of\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (C, 2, b"tail of an earlier request\r\nGET /next HTTP/1.1\r\n\r\n"),
            (S, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"),
        ],
        false,
    );
    let t = transactions(&events);
    assert_eq!(t.len(), 2, "{events:?}");
    assert!(t[0].flags.orphan && t[0].request.is_none());
    assert_eq!(summary(t[1]), (Some("GET"), Some("/next"), Some(200), 0, 1));
    assert!(events.iter().any(|e| matches!(e, Event::Resynced { .. })));
}

#[test]
fn a_gap_inside_a_known_length_body_keeps_sync() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        C,
        Timestamp(1),
        b"GET /big HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n",
    )
    .unwrap();
    conn.feed(
        S,
        Timestamp(2),
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    conn.feed_gap(S, Timestamp(3), 980);
    conn.feed(
        S,
        Timestamp(4),
        b"abcdefghijHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    )
    .unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
    let t = transactions(&events);
    assert_eq!(t.len(), 2);
    assert_eq!(
        summary(t[0]),
        (Some("GET"), Some("/big"), Some(200), 0, 1000)
    );
    assert!(t[0].flags.gap);
    assert_eq!(
        summary(t[1]),
        (Some("GET"), Some("/small"), Some(200), 0, 2)
    );
    assert!(!t[1].flags.gap);
    assert_eq!(conn.stats().gap_bytes, 980);
}

#[test]
fn tls_is_reported_not_parsed() {
    let events = run(
        &[
            (
                C,
                1,
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfcGET / HTTP/1.1\r\n\r\n",
            ),
            (S, 2, b"\x16\x03\x03\x00\x7a\x02"),
        ],
        true,
    );
    assert_eq!(events, vec![Event::Protocol(Protocol::Tls)]);
}

#[test]
fn every_chunking_gives_the_same_records() {
    let client: &[u8] = b"GET /a HTTP/1.1\r\nHost: example\r\nUser-Agent: curl\r\n\r\nPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHEAD /c HTTP/1.1\r\n\r\n";
    let server: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na;x=y\r\n0123456789\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n";
    let records = chunking_invariant_records(client, server);
    let t = transactions(&records);
    let got: Vec<_> = t.iter().map(|t| summary(t)).collect();
    assert_eq!(
        got,
        vec![
            (Some("GET"), Some("/a"), Some(200), 0, 4),
            (Some("POST"), Some("/b"), Some(200), 3, 10),
            (Some("HEAD"), Some("/c"), Some(200), 0, 0)
        ]
    );
    assert_eq!(t[1].interim_statuses(), &[100]);
}

/// Every `Resynced` event, as (direction, bytes skipped).
fn resyncs(events: &[Event]) -> Vec<(Direction, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Resynced { direction, skipped } => Some((*direction, *skipped)),
            _ => None,
        })
        .collect()
}

/// Feeds `client` then `server` (joined by a 0xFF marker) in every chunking the testkit tries,
/// asserting identical events each time; returns them.
fn chunking_invariant_records(client: &[u8], server: &[u8]) -> Vec<Event> {
    let mut stream = client.to_vec();
    stream.push(0xFF);
    stream.extend_from_slice(server);
    testkit::assert_chunking_invariant(&stream, 40, |chunks| {
        let mut conn = Connection::new(Limits::default());
        let mut dir = C;
        let mut out = Vec::new();
        for chunk in chunks {
            for (i, part) in chunk.split(|b| *b == 0xFF).enumerate() {
                if i > 0 {
                    dir = S;
                }
                conn.feed(dir, Timestamp(0), part).unwrap();
            }
        }
        conn.feed_eof(C, Timestamp(0));
        conn.feed_eof(S, Timestamp(0));
        while let Some(e) = conn.poll_event() {
            out.push(e);
        }
        out
    })
}

#[test]
fn a_bad_head_cut_by_chunks_is_judged_as_if_whole() {
    // The first response head fails only once whole (a bad Content-Length); the status line after
    // it must be found whether or not a chunk boundary fell inside the bad head. The trailing partial
    // head at EOF is counted as skipped, not silently dropped.
    let client: &[u8] = b"junk\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
    let server: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200";
    let records = chunking_invariant_records(client, server);
    let got: Vec<_> = transactions(&records).iter().map(|t| summary(t)).collect();
    assert_eq!(got, vec![(Some("GET"), Some("/ok"), Some(204), 0, 0)]);
    let skipped = resyncs(&records);
    assert_eq!(skipped, vec![(C, 6), (S, 38), (S, 12)]);
}

#[test]
fn a_request_found_in_bytes_read_again_starts_when_its_first_byte_arrived() {
    // A head gathered over three feeds turns out bad once its blank line comes (a bad
    // Content-Length). Its bytes are read again, and the request found among them began with the
    // second feed, whether each feed came whole or byte by byte.
    let feeds: [(u64, &[u8]); 4] = [
        (1, b"GET /a HTTP/1.1\r\nContent-Length: x\r\n"),
        (2, b"GET /b HTTP/1.1\r\n"),
        (3, b"\r\n"),
        (4, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ];
    for split in [usize::MAX, 1, 5] {
        let steps: Vec<(Direction, u64, &[u8])> = feeds
            .iter()
            .flat_map(|(t, bytes)| {
                let dir = if *t == 4 { S } else { C };
                bytes
                    .chunks(split.min(bytes.len()))
                    .map(move |c| (dir, *t, c))
            })
            .collect();
        let events = run(&steps, true);
        let t = transactions(&events);
        assert_eq!(t.len(), 1, "split {split}: {events:?}");
        assert_eq!(summary(t[0]), (Some("GET"), Some("/b"), Some(204), 0, 0));
        let request = t[0].request.as_ref().unwrap();
        assert_eq!(
            (request.first, request.last),
            (Timestamp(2), Timestamp(3)),
            "split {split}"
        );
        assert_eq!(resyncs(&events), vec![(C, 36)], "split {split}");
    }
}

#[test]
fn heads_cut_short_keep_their_complete_lines() {
    // The capture lost the end of the request head (the server answered anyway), and keeps only
    // the status line and half a header of the response. Both heads keep their complete lines;
    // the partial lines are counted as skipped; the record is flagged truncated.
    let client: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nX-Lo";
    let server: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\nContent-Ty";
    let records = chunking_invariant_records(client, server);
    let t = transactions(&records);
    let got: Vec<_> = t.iter().map(|t| summary(t)).collect();
    assert_eq!(
        got,
        vec![
            (Some("POST"), Some("/a"), Some(204), 0, 0),
            (None, None, Some(200), 0, 0)
        ]
    );
    assert!(t[0].flags.truncated && !t[0].flags.orphan);
    assert!(t[1].flags.truncated && t[1].flags.orphan);
    let skipped = resyncs(&records);
    assert_eq!(skipped, vec![(C, 4), (S, 10)]);
}

#[test]
fn a_response_head_cut_by_the_end_flags_only_its_own_record() {
    // Two pipelined requests; the first response's head is cut after its Content-Length line.
    let events = run(
        &[
            (C, 1, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
            (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nServ"),
        ],
        true,
    );
    let t = transactions(&events);
    assert_eq!(t.len(), 2);
    assert_eq!(summary(t[0]), (Some("GET"), Some("/a"), Some(200), 0, 0));
    assert!(t[0].flags.truncated && !t[0].flags.missing_response);
    assert_eq!(t[1].uri(), Some("/b"));
    assert!(t[1].flags.missing_response && !t[1].flags.truncated);
}

/// Feeds `steps` then both EOFs to a connection built with `limits` and `hint`.
fn run_hinted(
    steps: &[(Direction, u64, &[u8])],
    limits: Limits,
    hint: Option<Protocol>,
) -> Vec<Event> {
    let mut conn = Connection::new(limits).with_hint(hint);
    let mut out = Vec::new();
    for (dir, t, bytes) in steps {
        conn.feed(*dir, Timestamp(*t), bytes).unwrap();
        out.extend(std::iter::from_fn(|| conn.poll_event()));
    }
    conn.feed_eof(C, Timestamp(1_000));
    conn.feed_eof(S, Timestamp(1_000));
    out.extend(std::iter::from_fn(|| conn.poll_event()));
    out
}

#[test]
fn port_hints_break_ties_and_only_ties() {
    assert_eq!(Protocol::for_port(8080), Some(Protocol::Http));
    assert_eq!(Protocol::for_port(443), Some(Protocol::Tls));
    assert_eq!(Protocol::for_port(5432), None);
    let limits = Limits::default().max_unrecognized(64);
    // Joined inside a long body: 100 bytes of it, then the next exchange.
    let body = [b'x'; 100];
    let mid_body: Vec<(Direction, u64, &[u8])> = vec![
        (C, 1, &body),
        (C, 2, b"GET /next HTTP/1.1\r\n\r\n"),
        (S, 3, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ];
    // Without a hint, or with a TLS one, past the bound the connection is given up: counted, not
    // decoded.
    for (hint, given_up_as) in [
        (None, Protocol::Unknown),
        (Some(Protocol::Tls), Protocol::Tls),
    ] {
        let events = run_hinted(&mid_body, limits, hint);
        assert_eq!(
            events.first(),
            Some(&Event::Protocol(given_up_as)),
            "{hint:?}"
        );
        assert!(transactions(&events).is_empty(), "{hint:?}");
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Resynced {
                    direction: C,
                    skipped: 64
                }
            )),
            "{hint:?}: {events:?}"
        );
    }
    // A port that says HTTP keeps looking however long the body.
    let events = run_hinted(&mid_body, limits, Some(Protocol::Http));
    assert_eq!(events.first(), Some(&Event::Protocol(Protocol::Http)));
    let t = transactions(&events);
    assert_eq!(t.len(), 1);
    assert_eq!(summary(t[0]), (Some("GET"), Some("/next"), Some(204), 0, 0));
    // Within the bound no hint is needed; and the bytes beat the port both ways.
    let short: Vec<(Direction, u64, &[u8])> = vec![
        (C, 1, &body[..60]),
        (C, 2, b"GET /next HTTP/1.1\r\n\r\n"),
        (S, 3, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ];
    for hint in [None, Some(Protocol::Tls)] {
        let events = run_hinted(&short, limits, hint);
        assert_eq!(
            events.first(),
            Some(&Event::Protocol(Protocol::Http)),
            "{hint:?}"
        );
        assert_eq!(transactions(&events).len(), 1, "{hint:?}");
    }
    let tls: Vec<(Direction, u64, &[u8])> = vec![(C, 1, b"\x16\x03\x01\x00\x05hello")];
    let events = run_hinted(&tls, limits, Some(Protocol::Http));
    assert_eq!(events.first(), Some(&Event::Protocol(Protocol::Tls)));
    // A connection that ends with nothing recognised says so, as its hint would have it.
    let noise: Vec<(Direction, u64, &[u8])> = vec![(C, 1, b"\x00\x01binary"), (S, 2, b"\x02")];
    let events = run_hinted(&noise, Limits::default(), None);
    assert!(
        events.contains(&Event::Protocol(Protocol::Unknown)),
        "{events:?}"
    );
    let events = run_hinted(&noise, Limits::default(), Some(Protocol::Tls));
    assert!(
        events.contains(&Event::Protocol(Protocol::Tls)),
        "{events:?}"
    );
}

#[test]
fn where_an_unrecognised_connection_is_given_up_does_not_depend_on_chunking() {
    // Candidates ("GET", "HTTP/1") straddle the bound at every offset.
    let mut stream = Vec::new();
    for i in 0..40 {
        stream.extend_from_slice(b"xx GET zz HTTP/1 ");
        stream.extend(std::iter::repeat_n(b'y', i % 7));
    }
    stream.extend_from_slice(b"\r\nGET /late HTTP/1.1\r\n\r\n");
    for bound in [1u64, 5, 17, 64, 200, 700, 10_000] {
        let limits = Limits::default().max_unrecognized(bound);
        let (events, skipped) = testkit::assert_chunking_invariant(&stream, 16, |chunks| {
            let mut conn = Connection::new(limits);
            let mut out = Vec::new();
            for chunk in chunks {
                conn.feed(C, Timestamp(1), chunk).unwrap();
                out.extend(std::iter::from_fn(|| conn.poll_event()));
            }
            conn.feed_eof(C, Timestamp(2));
            conn.feed_eof(S, Timestamp(2));
            out.extend(std::iter::from_fn(|| conn.poll_event()));
            let stats = conn.stats();
            (format!("{out:?}"), (stats.skipped_bytes, stats.other_bytes))
        });
        // Given up at the bound, or (past the whole stream) the late request found.
        let found = bound as usize > stream.len();
        assert_eq!(events.contains("GET"), found, "{bound}: {events}");
        // Found: the bytes before the request were skipped inside HTTP. Given up: every byte is
        // other traffic, none skipped.
        assert_eq!(
            skipped,
            if found {
                (stream.len() as u64 - 22, 0)
            } else {
                (0, stream.len() as u64)
            }
        );
    }
}

#[test]
fn debug_output_shows_lengths_not_heads() {
    let events = run(
        &[
            (
                C,
                1,
                b"GET /login?password=hunter2 HTTP/1.1\r\nAuthorization: Bearer s3cr3t\r\nCookie: session=abc123\r\n\r\n",
            ),
            (
                S,
                2,
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=def456\r\nContent-Length: 0\r\n\r\n",
            ),
        ],
        true,
    );
    let t = transactions(&events)[0];
    let debug = format!("{t:?} {events:?}");
    for secret in [
        "hunter2", "s3cr3t", "abc123", "def456", "password", "/login",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    // What it does show: method, the target's length, statuses, flags, lengths and times.
    for shown in [
        "\"GET\"",
        "uri_len: Some(23)",
        "status: Some(200)",
        "head_len: 94",
        "last: Timestamp(2)",
    ] {
        assert!(debug.contains(shown), "{shown} not in {debug}");
    }
    // The heads are there for who asks.
    assert!(t.request.as_ref().unwrap().header("cookie") == Some(&b"session=abc123"[..]));
}

#[test]
fn http_on_a_database_port_is_http() {
    for port in [27017, 3306] {
        let events = run_hinted(
            &[
                (C, 1, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
                (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            ],
            Limits::default(),
            Protocol::for_port(port),
        );
        let statuses: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Transaction(t) => t.status(),
                _ => None,
            })
            .collect();
        assert_eq!(statuses, [200], "{port}: {events:?}");
    }
}
