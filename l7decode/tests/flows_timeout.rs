//! The flow tracker drives its connections' response deadlines: an unanswered HTTP request is
//! reported by `FlowTracker::handle_timeout` at its deadline (its last byte +
//! `Limits::response_timeout`, set through `FlowLimits::connection`), not a nanosecond before,
//! and the response that comes after is consumed without a second record.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::net::SocketAddr;
use std::time::Duration;

use l7decode::flows::{FlowEvent, FlowEventKind, FlowLimits, FlowTracker, Segment};
use l7decode::reassembly::TcpFlags;
use l7decode::{Event, Limits, Timestamp};

const MS: u64 = 1_000_000;

fn drain(tracker: &mut FlowTracker) -> Vec<FlowEvent> {
    std::iter::from_fn(|| tracker.poll_event()).collect()
}

/// The HTTP records among `events`.
fn transactions(events: &[FlowEvent]) -> Vec<&l7decode::Transaction> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            FlowEventKind::Decoded(Event::Transaction(t)) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn an_unanswered_request_is_reported_at_its_deadline() {
    let limits = FlowLimits::default()
        .idle_timeout(Duration::from_secs(300))
        .connection(Limits::default().response_timeout(Duration::from_secs(2)));
    let mut tracker = FlowTracker::new(limits);
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:8080".parse().unwrap();
    let request = b"GET /slow HTTP/1.1\r\nHost: shop\r\n\r\n";
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (c, s) = (1000u32, 5000u32);
    let segment = |to_server: bool, seq, ack, flags: u8, payload: &'static [u8]| {
        let (src, dst) = if to_server {
            (client, server)
        } else {
            (server, client)
        };
        Segment {
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags(flags),
            payload,
            missing: 0,
        }
    };
    tracker.segment(Timestamp(0), &segment(true, c, 0, 0x02, b""));
    tracker.segment(Timestamp(MS), &segment(false, s, c + 1, 0x12, b""));
    tracker.segment(Timestamp(2 * MS), &segment(true, c + 1, s + 1, 0x10, b""));
    let sent = Timestamp(3 * MS);
    tracker.segment(sent, &segment(true, c + 1, s + 1, 0x18, request));
    assert!(transactions(&drain(&mut tracker)).is_empty());

    let deadline = Timestamp(sent.0 + 2_000 * MS);
    assert_eq!(tracker.poll_timeout(), Some(deadline));
    tracker.handle_timeout(Timestamp(deadline.0 - 1));
    assert!(transactions(&drain(&mut tracker)).is_empty(), "too early");
    tracker.handle_timeout(deadline);
    let events = drain(&mut tracker);
    let [t] = transactions(&events)[..] else {
        panic!("{events:?}")
    };
    assert_eq!((t.method(), t.uri()), (Some("GET"), Some("/slow")));
    assert!(t.flags.timed_out && t.flags.missing_response && t.response.is_none());
    assert_eq!(events[0].server, server);
    // Only the idle deadline is left.
    assert!(tracker.poll_timeout().unwrap() > deadline);

    // The response comes late: paired with the request reported, consumed.
    let late = Timestamp(deadline.0 + 5 * MS);
    let acked = c + 1 + request.len() as u32;
    tracker.segment(late, &segment(false, s + 1, acked, 0x18, response));
    assert!(transactions(&drain(&mut tracker)).is_empty());
    tracker.feed_eof(Timestamp(late.0 + MS));
    let events = drain(&mut tracker);
    assert!(transactions(&events).is_empty(), "{events:?}");
    let closed = events.iter().find_map(|e| match e.kind {
        FlowEventKind::Closed { stats, .. } => Some(stats),
        _ => None,
    });
    let stats = closed.unwrap();
    assert_eq!(
        (stats.transactions, stats.timed_out, stats.late_responses),
        (1, 1, 1)
    );
}
