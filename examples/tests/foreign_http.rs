//! HTTP captures recorded for one behaviour each (see `tests/data/foreign/http/README.md`),
//! through the main job's pipeline.
//!
//! `stray_crlf.pcap`: one keep-alive connection on which bytes come between messages in both
//! directions: CRLFs past a body's Content-Length (one in the body's segment, one in a segment
//! of its own, retransmitted), "xx\r\n" after a body, "\r\n\r\n" after an empty one, a bare LF
//! after a HEAD response's head, and from the client a CRLF segment before a request, a bare LF
//! before one, and a CRLF between two pipelined requests. Every exchange must come out whole:
//! status, reason, times (each response after its request), pairing; only the junk is skipped.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use common::{decode, each_data_frame_lost, micros_of, pcap_records};
use examples::meshsniff::{Record, outcome};

const STRAY_CRLF: &str = "tests/data/foreign/http/stray_crlf.pcap";

/// Whole seconds of the capture's first packet, in microseconds: the times below are after it.
const BASE_US: i64 = 1_796_554_750_000_000;

/// One exchange as the capture holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exchange<'a> {
    method: &'a str,
    uri: &'a str,
    request_body: u64,
    status: u16,
    reason: &'a str,
    outcome: &'a str,
    response_body: u64,
    /// First and last byte of the request, then of the response, in microseconds after
    /// `BASE_US` (each message came in one segment).
    times: [i64; 4],
}

const fn exchange(
    (method, uri, request_body): (&'static str, &'static str, u64),
    (status, reason, outcome, response_body): (u16, &'static str, &'static str, u64),
    request_at: i64,
    response_at: i64,
) -> Exchange<'static> {
    Exchange {
        method,
        uri,
        request_body,
        status,
        reason,
        outcome,
        response_body,
        times: [request_at, request_at, response_at, response_at],
    }
}

/// Every exchange, in the order the client sent them (tcpdump -r shows the same times).
const EXCHANGES: [Exchange<'static>; 7] = [
    exchange(("GET", "/one", 0), (200, "OK", "OK", 5), 294_298, 294_348),
    exchange(("GET", "/two", 0), (200, "OK", "OK", 6), 344_875, 344_996),
    exchange(
        ("GET", "/three", 0),
        (404, "Not Found", "CLIENT_ERROR", 13),
        375_304,
        375_470,
    ),
    exchange(
        ("POST", "/four", 9),
        (201, "Created", "OK", 0),
        405_658,
        405_797,
    ),
    exchange(("GET", "/five", 0), (200, "OK", "OK", 1), 436_034, 436_163),
    exchange(
        ("GET", "/six", 0),
        (503, "Service Unavailable", "SERVER_ERROR", 4),
        436_034,
        436_187,
    ),
    exchange(
        ("HEAD", "/seven", 0),
        (200, "OK", "OK", 0),
        466_405,
        466_528,
    ),
];

/// A record as an [`Exchange`] (`None` for a record missing a side).
fn as_exchange(r: &Record) -> Option<Exchange<'_>> {
    let t = r.http().unwrap();
    let (req, resp) = (t.request.as_ref()?, t.response.as_ref()?);
    let at = |m: &l7decode::Message| [micros_of(m.first) - BASE_US, micros_of(m.last) - BASE_US];
    let [req_first, req_last] = at(req);
    let [resp_first, resp_last] = at(resp);
    Some(Exchange {
        method: t.method()?,
        uri: t.uri()?,
        request_body: req.body_bytes,
        status: t.status()?,
        reason: t.reason()?,
        outcome: outcome(t),
        response_body: resp.body_bytes,
        times: [req_first, req_last, resp_first, resp_last],
    })
}

#[test]
fn bytes_between_messages_leave_every_exchange_whole() {
    let (totals, records) = decode(STRAY_CRLF);
    assert_eq!(
        (totals.connections, totals.packets, totals.gap_bytes),
        (1, 27, 0)
    );
    // Only "xx\r\n" is skipped: the empty lines are ignored.
    assert_eq!(totals.skipped_bytes, 4);
    assert_eq!(totals.messages, 14);
    assert_eq!(records.len(), EXCHANGES.len());
    for (r, expected) in records.iter().zip(&EXCHANGES) {
        assert_eq!(r.client.ip().to_string(), "127.0.0.1");
        assert_eq!(r.server.to_string(), "127.0.0.1:18080");
        let t = r.http().unwrap();
        assert_eq!(t.flags, l7decode::Flags::default(), "{}", expected.uri);
        assert_eq!(t.request_version(), Some("HTTP/1.1"));
        assert_eq!(as_exchange(r).as_ref(), Some(expected));
        // A response starts at its status line, after its request: never at the stray bytes
        // sent before that request.
        let (req, resp) = (t.request.as_ref().unwrap(), t.response.as_ref().unwrap());
        assert!(resp.first > req.last, "{}", expected.uri);
        assert!(t.ttfb_ns().unwrap() > 0, "{}", expected.uri);
        assert!(
            !resp.head().starts_with(b"\r") && !resp.head().starts_with(b"\n"),
            "{}",
            expected.uri
        );
    }
}

#[test]
fn a_lost_segment_damages_only_the_exchanges_it_carried() {
    // A lost segment of line ends (the client's CRLF, the server's stray CRLF or its
    // retransmission) damages nothing; a lost message is reported flagged, never paired with
    // another exchange's half, and every other exchange stays whole.
    let (header, records) = pcap_records(STRAY_CRLF);
    each_data_frame_lost(&header, &records, |frame, (from, _), got| {
        let record = &records[frame as usize - 1].0;
        let second = i64::from(u32::from_le_bytes(record[..4].try_into().unwrap()));
        let micro = i64::from(u32::from_le_bytes(record[4..8].try_into().unwrap()));
        let at = second * 1_000_000 + micro - BASE_US;
        let from_client = from != 18080;
        let carried = |e: &Exchange| {
            let [req, _, resp, _] = e.times;
            at == if from_client { req } else { resp }
        };
        let what = format!("frame {frame} (at {at}) lost");
        let flagged = |r: &&Record| {
            let f = r.http().unwrap().flags;
            f.gap || f.truncated || f.missing_response || f.orphan
        };
        let (damaged, whole): (Vec<&Record>, Vec<&Record>) = got.iter().partition(flagged);
        let whole: Vec<_> = whole.iter().map(|r| as_exchange(r)).collect();
        let intact: Vec<_> = EXCHANGES
            .iter()
            .filter(|e| !carried(e))
            .copied()
            .map(Some)
            .collect();
        assert_eq!(whole, intact, "{what}");
        let touched: Vec<_> = EXCHANGES.iter().filter(|e| carried(e)).collect();
        assert!(damaged.len() <= 2 * touched.len(), "{what}: {damaged:#?}");
        for r in damaged {
            let t = r.http().unwrap();
            let real = touched.iter().any(|e| {
                t.uri().is_none_or(|u| u == e.uri) && t.status().is_none_or(|s| s == e.status)
            });
            assert!(real, "{what}: {r:?}");
        }
    });
}
