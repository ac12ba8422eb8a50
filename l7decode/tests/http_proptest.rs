//! Generated HTTP/1.1 conversations (methods, Content-Length and chunked bodies, interim 100,
//! bodiless statuses, HEAD, empty lines before start lines) fed in generated chunkings: the
//! decoder must give back exactly the exchanges that were generated.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use l7decode::{Connection, Direction, Event, Limits, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Exchange {
    method: &'static str,
    path: String,
    request_body: Body,
    interim: bool,
    status: u16,
    response_body: Body,
    /// Empty lines (CRLF or bare LF) before the request, the interim response and the final
    /// response: RFC 9112 §2.2 has them ignored.
    blank: [Vec<&'static str>; 3],
}

#[derive(Debug, Clone)]
enum Body {
    Length(usize),
    /// Chunk sizes (each non-zero); the last-chunk and an optional trailer follow.
    Chunked(Vec<usize>, bool),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Self::Length(n) => *n,
            Self::Chunked(sizes, _) => sizes.iter().sum(),
        }
    }

    fn render(&self, out: &mut Vec<u8>, send: bool) {
        match self {
            Self::Length(n) => {
                out.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
                if send {
                    out.extend(std::iter::repeat_n(b'x', *n));
                }
            }
            Self::Chunked(sizes, trailer) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                if !send {
                    return;
                }
                for (i, size) in sizes.iter().enumerate() {
                    let ext = if i % 2 == 1 { ";ext=1" } else { "" };
                    out.extend_from_slice(format!("{size:x}{ext}\r\n").as_bytes());
                    out.extend(std::iter::repeat_n(b'y', *size));
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                if *trailer {
                    out.extend_from_slice(b"X-Trailer: 1\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

impl Exchange {
    /// Whether the response carries the body its framing headers announce.
    fn response_has_body(&self) -> bool {
        self.method != "HEAD" && self.status != 204 && self.status != 304
    }

    fn expected_response_body(&self) -> u64 {
        if self.response_has_body() {
            self.response_body.len() as u64
        } else {
            0
        }
    }
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (0usize..300).prop_map(Body::Length),
        (prop::collection::vec(1usize..200, 0..4), any::<bool>())
            .prop_map(|(sizes, trailer)| Body::Chunked(sizes, trailer)),
    ]
}

fn blank_lines() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(vec!["\r\n", "\n"]), 0..3)
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD"]),
        "[a-z0-9]{1,12}",
        body(),
        any::<bool>(),
        prop::sample::select(vec![200u16, 201, 204, 301, 304, 404, 500, 503]),
        body(),
        [blank_lines(), blank_lines(), blank_lines()],
    )
        .prop_map(
            |(method, path, request_body, interim, status, response_body, blank)| Exchange {
                method,
                path: format!("/{path}"),
                request_body,
                interim,
                status,
                response_body,
                blank,
            },
        )
}

/// Each exchange's request bytes and response bytes.
fn render(exchanges: &[Exchange]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for e in exchanges {
        let (mut client, mut server) = (Vec::new(), Vec::new());
        let [before_request, before_interim, before_response] = &e.blank;
        client.extend(before_request.iter().flat_map(|l| l.bytes()));
        client.extend_from_slice(
            format!("{} {} HTTP/1.1\r\nHost: svc\r\n", e.method, e.path).as_bytes(),
        );
        e.request_body.render(&mut client, true);
        if e.interim {
            server.extend(before_interim.iter().flat_map(|l| l.bytes()));
            server.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        server.extend(before_response.iter().flat_map(|l| l.bytes()));
        server.extend_from_slice(format!("HTTP/1.1 {} Reason\r\n", e.status).as_bytes());
        if e.response_has_body() {
            e.response_body.render(&mut server, true);
        } else if e.status == 204 {
            server.extend_from_slice(b"\r\n");
        } else {
            // HEAD and 304 announce the length the body would have had.
            e.response_body.render(&mut server, false);
        }
        out.push((client, server));
    }
    out
}

/// Splits `stream` at `cuts` (offsets taken modulo its length).
fn split<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([stream.len()]) {
        out.push(&stream[start..p]);
        start = p;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_conversations_decode_exactly(
        exchanges in prop::collection::vec(exchange(), 1..8),
        client_cuts in prop::collection::vec(any::<usize>(), 0..12),
        server_cuts in prop::collection::vec(any::<usize>(), 0..12),
        pipelined in any::<bool>(),
    ) {
        let rendered = render(&exchanges);
        let mut conn = Connection::new(Limits::default());
        let mut events = Vec::new();
        if pipelined {
            // Every request, then every response.
            let client: Vec<u8> = rendered.iter().flat_map(|(c, _)| c.clone()).collect();
            let server: Vec<u8> = rendered.iter().flat_map(|(_, s)| s.clone()).collect();
            for c in split(&client, &client_cuts) {
                conn.feed(Direction::ClientToServer, Timestamp(0), c).unwrap();
            }
            for c in split(&server, &server_cuts) {
                conn.feed(Direction::ServerToClient, Timestamp(1), c).unwrap();
            }
        } else {
            // One exchange at a time, each side in pieces; the response follows its request
            // (a response before its request's head has ended means the capture lost bytes).
            for (i, (client, server)) in rendered.iter().enumerate() {
                let t = Timestamp(i as u64);
                for c in split(client, &client_cuts) {
                    conn.feed(Direction::ClientToServer, t, c).unwrap();
                }
                for c in split(server, &server_cuts) {
                    conn.feed(Direction::ServerToClient, t, c).unwrap();
                }
            }
        }
        conn.feed_eof(Direction::ClientToServer, Timestamp(99));
        conn.feed_eof(Direction::ServerToClient, Timestamp(99));
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        let got: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Transaction(t) => Some((
                    t.method().map(str::to_owned),
                    t.uri().map(str::to_owned),
                    t.status(),
                    t.request.as_ref().map(|m| m.body_bytes),
                    t.response.as_ref().map(|m| m.body_bytes),
                    t.interim_statuses().to_vec(),
                    t.flags,
                )),
                _ => None,
            })
            .collect();
        let expected: Vec<_> = exchanges
            .iter()
            .map(|e| (
                Some(e.method.to_owned()),
                Some(e.path.clone()),
                Some(e.status),
                Some(e.request_body.len() as u64),
                Some(e.expected_response_body()),
                if e.interim { vec![100] } else { vec![] },
                l7decode::Flags::default(),
            ))
            .collect();
        prop_assert_eq!(got, expected);
        prop_assert!(
            !events.iter().any(|e| matches!(e, Event::Resynced { .. })),
            "nothing is skipped in a well-formed conversation"
        );
    }
}
