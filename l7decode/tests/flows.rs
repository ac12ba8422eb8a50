//! The flow tracker on synthetic IP packets: lifecycle, direction, late segments, eviction,
//! bounds, packet-order invariance.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a panic is how a test reports failure

use std::net::SocketAddr;
use std::time::Duration;

use l7decode::flows::{
    CloseCause, Evidence, FlowEvent, FlowEventKind, FlowLimits, FlowTracker, parse_ip_packet,
};
use l7decode::reassembly::ReassemblyConfig;
use l7decode::{Event, Timestamp};

#[test]
fn the_tracker_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<FlowTracker>();
}
use proptest::prelude::*;

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// An IPv4 packet carrying one TCP segment.
fn packet(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let total = 40 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    p.extend_from_slice(&s.ip().octets());
    p.extend_from_slice(&d.ip().octets());
    p.extend_from_slice(&s.port().to_be_bytes());
    p.extend_from_slice(&d.port().to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// One TCP connection's packets, written as its two ends would send them.
struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number of the client and of the server.
    seq: [u32; 2],
    packets: Vec<(u64, Vec<u8>)>,
    now: u64,
}

impl Conn {
    fn new(client: &str, server: &str, isn: [u32; 2]) -> Self {
        Self {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            seq: isn,
            packets: Vec::new(),
            now: 1_000_000_000,
        }
    }

    /// A segment from the client (`side` 0) or the server (1), acknowledging the other side.
    fn send(&mut self, side: usize, flags: u8, payload: &[u8]) -> &mut Self {
        self.now += 1_000_000;
        let (src, dst) = if side == 0 {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let ack = if flags & ACK != 0 {
            self.seq[1 - side]
        } else {
            0
        };
        let seq = self.seq[side];
        self.packets
            .push((self.now, packet(src, dst, seq, ack, flags, payload)));
        let consumed = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        self.seq[side] = seq.wrapping_add(consumed);
        self
    }

    fn handshake(&mut self) -> &mut Self {
        self.send(0, SYN, b"")
            .send(1, SYN | ACK, b"")
            .send(0, ACK, b"")
    }

    fn exchange(&mut self, request: &[u8], response: &[u8]) -> &mut Self {
        self.send(0, PSH | ACK, request)
            .send(1, ACK, b"")
            .send(1, PSH | ACK, response)
            .send(0, ACK, b"")
    }

    fn close(&mut self) -> &mut Self {
        self.send(0, FIN | ACK, b"")
            .send(1, FIN | ACK, b"")
            .send(0, ACK, b"")
    }
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: shop\r\n\r\n").into_bytes()
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Runs packets through a tracker the way an agent does (timeouts in capture time, the end of
/// input at the last timestamp) and returns every event.
fn run(limits: FlowLimits, packets: &[(u64, Vec<u8>)]) -> (Vec<FlowEvent>, FlowTracker) {
    let mut tracker = FlowTracker::new(limits);
    let mut events = Vec::new();
    let mut last = Timestamp(0);
    for (ts, p) in packets {
        let now = Timestamp(*ts);
        last = last.max(now);
        if tracker.poll_timeout().is_some_and(|t| t <= now) {
            tracker.handle_timeout(now);
            events.extend(std::iter::from_fn(|| tracker.poll_event()));
        }
        tracker.segment(now, &parse_ip_packet(p).unwrap());
        assert!(tracker.stats().bytes_held <= limits.max_bytes);
        events.extend(std::iter::from_fn(|| tracker.poll_event()));
    }
    tracker.feed_eof(last);
    events.extend(std::iter::from_fn(|| tracker.poll_event()));
    (events, tracker)
}

/// (uri, status) of every HTTP record, with whether its response was missing.
fn records(events: &[FlowEvent]) -> Vec<(String, Option<u16>, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            FlowEventKind::Decoded(Event::Transaction(t)) => Some((
                t.uri().unwrap_or("-").to_owned(),
                t.status(),
                t.flags.missing_response,
            )),
            _ => None,
        })
        .collect()
}

fn closes(events: &[FlowEvent]) -> Vec<CloseCause> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            FlowEventKind::Closed { cause, .. } => Some(cause),
            _ => None,
        })
        .collect()
}

#[test]
fn a_whole_connection_opens_decodes_and_closes_by_fin() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:8080", [1000, 9000]);
    c.handshake()
        .exchange(&request("/a"), RESPONSE)
        .exchange(&request("/b"), RESPONSE)
        .close();
    let (events, tracker) = run(FlowLimits::default(), &c.packets);
    let first = &events[0];
    assert_eq!(
        first.kind,
        FlowEventKind::Opened {
            evidence: Evidence::Handshake
        }
    );
    assert_eq!((first.client, first.server), (c.client, c.server));
    assert!(
        events
            .iter()
            .all(|e| e.flow == first.flow && e.client == c.client && e.server == c.server)
    );
    assert_eq!(
        records(&events),
        [
            ("/a".into(), Some(200), false),
            ("/b".into(), Some(200), false)
        ]
    );
    assert_eq!(closes(&events), [CloseCause::Fin]);
    let FlowEventKind::Closed { stats, .. } = &events.last().unwrap().kind else {
        panic!("the close is the last event")
    };
    assert_eq!(stats.transactions, 2);
    let stats = tracker.stats();
    assert_eq!(
        (stats.flows_opened, stats.closed_fin, stats.flows_open),
        (1, 1, 0)
    );
    // The last ACK arrived after both FINs: dropped as a late ACK of a closed flow.
    assert_eq!((stats.late_acks, stats.dropped_after_close), (1, 0));
    assert_eq!((stats.gap_bytes, stats.bytes_held), (0, 0));
}

#[test]
fn mid_stream_direction_comes_from_the_payload_then_the_ports() {
    // The response comes first in the capture, on a port that says nothing: the bytes tell.
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:5555", [1000, 9000]);
    c.send(1, PSH | ACK, RESPONSE)
        .exchange(&request("/x"), RESPONSE);
    let (events, _) = run(FlowLimits::default(), &c.packets);
    assert_eq!(
        events[0].kind,
        FlowEventKind::Opened {
            evidence: Evidence::Payload
        }
    );
    assert_eq!((events[0].client, events[0].server), (c.client, c.server));
    // Opaque bytes toward a well-known port: the ports decide, and the event says it is a guess.
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:3306", [1000, 9000]);
    c.send(1, PSH | ACK, b"\x00\x01\x02");
    let (events, _) = run(FlowLimits::default(), &c.packets);
    let FlowEventKind::Opened { evidence } = events[0].kind else {
        panic!()
    };
    assert!(evidence.is_guess());
    assert_eq!((events[0].client, events[0].server), (c.client, c.server));
}

#[test]
fn a_bare_ack_of_an_unknown_flow_opens_nothing() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.send(0, ACK, b"")
        .send(1, FIN | ACK, b"")
        .send(0, RST, b"");
    let (events, tracker) = run(FlowLimits::default(), &c.packets);
    assert!(events.is_empty());
    assert_eq!(tracker.stats().dropped_no_flow, 3);
}

#[test]
fn rst_ends_both_directions_and_reports_the_unanswered_request() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.handshake()
        .exchange(&request("/a"), RESPONSE)
        .send(0, PSH | ACK, &request("/b"))
        .send(1, RST | ACK, b"");
    let (events, tracker) = run(FlowLimits::default(), &c.packets);
    assert_eq!(
        records(&events),
        [("/a".into(), Some(200), false), ("/b".into(), None, true)]
    );
    assert_eq!(closes(&events), [CloseCause::Rst]);
    assert_eq!(tracker.stats().closed_rst, 1);
}

#[test]
fn replays_after_close_open_no_flow_and_lose_no_byte() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.handshake().exchange(&request("/a"), RESPONSE);
    let last_response = c.packets[c.packets.len() - 2].clone();
    let syn = c.packets[0].clone();
    c.close();
    let end = c.packets.last().unwrap().0;
    // A retransmission of the last response after the close, then the old SYN replayed.
    let mut packets = c.packets.clone();
    packets.push((end + 1_000_000, last_response.1));
    packets.push((end + 2_000_000, syn.1.clone()));
    let (events, tracker) = run(FlowLimits::default(), &packets);
    assert_eq!(records(&events), [("/a".into(), Some(200), false)]);
    let stats = tracker.stats();
    assert_eq!((stats.flows_opened, stats.gap_bytes), (1, 0));
    assert_eq!((stats.late_acks, stats.dropped_after_close), (1, 2)); // the response, the SYN
    assert_eq!(stats.dropped_replayed_syn, 1);

    // A new SYN (another ISN) on the same addresses is a new connection.
    let mut again = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [777_777, 5]);
    again.now = end + 3_000_000;
    again.handshake().exchange(&request("/c"), RESPONSE);
    packets.extend(again.packets);
    let (events, tracker) = run(FlowLimits::default(), &packets);
    assert_eq!(tracker.stats().flows_opened, 2);
    assert_eq!(records(&events).len(), 2);

    // Past the linger, a replayed SYN opens a flow again (the memory is bounded in time).
    let limits = FlowLimits::default().closed_linger(Duration::from_millis(1));
    let mut late = c.packets.clone();
    late.push((end + 500_000_000, syn.1));
    let (_, tracker) = run(limits, &late);
    assert_eq!(tracker.stats().flows_opened, 2);
}

#[test]
fn what_the_rst_sender_held_is_delivered_or_reported_missing() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.handshake();
    // The client's first 17 bytes are lost by the capture; what follows them is held.
    c.seq[0] += 17;
    c.send(0, PSH | ACK, b"Host: x\r\n\r\n").send(0, RST, b"");
    let (events, tracker) = run(FlowLimits::default(), &c.packets);
    assert_eq!(closes(&events), [CloseCause::Rst]);
    let stats = tracker.stats();
    assert_eq!((stats.gap_bytes, stats.bytes_after_end), (17, 0));
    let FlowEventKind::Closed { stats: conn, .. } = &events.last().unwrap().kind else {
        panic!("the close is the last event")
    };
    // Every byte the client sent reached the decoder: 17 reported missing, 11 fed.
    assert_eq!((conn.gap_bytes, conn.bytes), (17, 11));
}

#[test]
fn bytes_after_a_fin_and_acks_from_another_stream_are_not_losses() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.handshake().exchange(&request("/a"), RESPONSE);
    // An acknowledgement a billion and a half bytes ahead: not this stream's.
    let far = c.seq[1].wrapping_add(1_500_000_000);
    let (client, server) = (c.client, c.server);
    c.packets
        .push((c.now + 1, packet(client, server, c.seq[0], far, ACK, b"")));
    // The client ends, then sends more.
    c.send(0, FIN | ACK, b"").send(0, PSH | ACK, b"junk");
    let (events, tracker) = run(FlowLimits::default(), &c.packets);
    assert_eq!(records(&events), [("/a".into(), Some(200), false)]);
    let stats = tracker.stats();
    // The 4 bytes, and the sequence number the FIN took (the reassembler counts no byte for
    // it, so the bytes after it start one later).
    assert_eq!((stats.gap_bytes, stats.bytes_after_end), (0, 5));
}

#[test]
fn a_syn_after_a_mid_stream_flow_closed_opens_the_next_connection() {
    // Joined mid-stream (no SYN seen), closed by FIN; then a new connection on the addresses.
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.exchange(&request("/old"), RESPONSE).close();
    let mut again = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [3_000_000_000, 7]);
    again.now = c.now;
    again
        .handshake()
        .exchange(&request("/new"), RESPONSE)
        .close();
    let mut packets = c.packets.clone();
    packets.extend(again.packets);
    let (events, tracker) = run(FlowLimits::default(), &packets);
    assert_eq!(
        records(&events),
        [
            ("/old".into(), Some(200), false),
            ("/new".into(), Some(200), false)
        ]
    );
    assert_eq!(tracker.stats().flows_opened, 2);
    assert_eq!(tracker.stats().dropped_replayed_syn, 0);
}

#[test]
fn many_flows_timing_out_at_once_are_closed_as_events_are_drained() {
    let mut packets = Vec::new();
    for port in 40000..40100u16 {
        let mut c = Conn::new(&format!("10.0.0.1:{port}"), "10.0.0.2:80", [1000, 9000]);
        c.handshake().send(0, PSH | ACK, &request("/x"));
        packets.extend(c.packets);
    }
    let limits = FlowLimits::default().idle_timeout(Duration::from_secs(1));
    let mut tracker = FlowTracker::new(limits);
    for (ts, p) in &packets {
        tracker.segment(Timestamp(*ts), &parse_ip_packet(p).unwrap());
        while tracker.poll_event().is_some() {}
    }
    tracker.handle_timeout(Timestamp(100_000_000_000));
    // Still open until drained; then one flow's events at a time.
    assert_eq!(tracker.stats().flows_open, 100);
    let mut closed = 0;
    while let Some(event) = tracker.poll_event() {
        if let FlowEventKind::Closed { cause, .. } = event.kind {
            assert_eq!(cause, CloseCause::EvictedIdle);
            closed += 1;
            assert_eq!(tracker.stats().flows_open, 100 - closed);
        }
    }
    assert_eq!((closed, tracker.stats().evicted_idle), (100, 100));
    assert_eq!(tracker.stats().bytes_held, 0);
}

#[test]
fn a_new_syn_on_an_open_flow_closes_it_as_reused() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.handshake().send(0, PSH | ACK, &request("/a"));
    let mut again = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [50_000, 60_000]);
    again.now = c.now;
    again.handshake().exchange(&request("/b"), RESPONSE).close();
    let mut packets = c.packets.clone();
    packets.extend(again.packets);
    let (events, _) = run(FlowLimits::default(), &packets);
    assert_eq!(closes(&events), [CloseCause::Reused, CloseCause::Fin]);
    assert_eq!(
        records(&events),
        [("/a".into(), None, true), ("/b".into(), Some(200), false)]
    );
}

#[test]
fn idle_flows_are_evicted_at_their_timeout_with_their_pending_requests() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.handshake().send(0, PSH | ACK, &request("/slow"));
    let limits = FlowLimits::default().idle_timeout(Duration::from_secs(10));
    let mut tracker = FlowTracker::new(limits);
    let mut last = 0;
    for (ts, p) in &c.packets {
        tracker.segment(Timestamp(*ts), &parse_ip_packet(p).unwrap());
        last = *ts;
    }
    let events: Vec<_> = std::iter::from_fn(|| tracker.poll_event()).collect();
    assert!(records(&events).is_empty());
    let due = tracker.poll_timeout().unwrap();
    assert_eq!(due, Timestamp(last + 10_000_000_000));
    tracker.handle_timeout(Timestamp(due.0 - 1));
    assert!(tracker.poll_event().is_none());
    tracker.handle_timeout(due);
    let events: Vec<_> = std::iter::from_fn(|| tracker.poll_event()).collect();
    assert_eq!(records(&events), [("/slow".into(), None, true)]);
    assert_eq!(closes(&events), [CloseCause::EvictedIdle]);
    assert_eq!(tracker.stats().evicted_idle, 1);
    assert_eq!(tracker.stats().flows_open, 0);
    assert_eq!(tracker.poll_timeout(), None);

    // A half-open flow goes at the shorter transient timeout.
    let mut tracker = FlowTracker::new(limits.transient_timeout(Duration::from_secs(2)));
    tracker.segment(Timestamp(5), &parse_ip_packet(&c.packets[0].1).unwrap());
    assert_eq!(tracker.poll_timeout(), Some(Timestamp(2_000_000_005)));
}

#[test]
fn past_max_flows_the_quietest_flow_is_evicted() {
    let mut packets = Vec::new();
    for (i, port) in [40001, 40002, 40003].into_iter().enumerate() {
        let mut c = Conn::new(&format!("10.0.0.1:{port}"), "10.0.0.2:80", [1000, 9000]);
        c.now += i as u64 * 1_000_000_000;
        c.handshake()
            .send(0, PSH | ACK, &request(&format!("/{port}")));
        packets.extend(c.packets);
    }
    let (events, tracker) = run(FlowLimits::default().max_flows(2), &packets);
    let stats = tracker.stats();
    assert_eq!((stats.flows_opened, stats.evicted_max_flows), (3, 1));
    assert_eq!(
        closes(&events),
        [
            CloseCause::EvictedMaxFlows,
            CloseCause::EndOfInput,
            CloseCause::EndOfInput
        ]
    );
    // The evicted flow's request is reported, not lost.
    assert_eq!(records(&events)[0], ("/40001".into(), None, true));
}

#[test]
fn the_byte_budget_evicts_flows_holding_out_of_order_data() {
    let mut packets = Vec::new();
    for port in 40001..40011u16 {
        let mut c = Conn::new(&format!("10.0.0.1:{port}"), "10.0.0.2:80", [1000, 9000]);
        c.handshake();
        // 16 KiB after a hole of one byte: held out of order.
        c.seq[0] += 1;
        c.send(0, ACK, &[b'x'; 16 << 10]);
        packets.extend(c.packets);
    }
    let limits = FlowLimits::default().max_bytes(64 << 10);
    let (events, tracker) = run(limits, &packets);
    let stats = tracker.stats();
    assert!(stats.evicted_budget >= 6, "{stats:?}");
    assert!(stats.bytes_held_peak <= 64 << 10, "{stats:?}");
    assert_eq!(
        closes(&events)
            .iter()
            .filter(|c| **c == CloseCause::EvictedBudget)
            .count() as u64,
        stats.evicted_budget
    );
    // An evicted flow's hole and held bytes were handed on: one byte lost each.
    assert_eq!(stats.gap_bytes, 10);
}

#[test]
fn the_reassembly_bound_applies_per_direction() {
    let mut c = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    c.handshake();
    c.seq[0] += 100;
    for _ in 0..8 {
        c.send(0, ACK, &[b'x'; 1000]);
    }
    let limits = FlowLimits::default().reassembly(ReassemblyConfig::default().max_buffered(4000));
    let (_, tracker) = run(limits, &c.packets);
    // The hole was given up on when the store passed 4000 bytes.
    assert_eq!(tracker.stats().gap_bytes, 100);
}

impl Conn {
    /// An exchange whose request and response each go in three segments.
    fn exchange_in_pieces(&mut self, request: &[u8], response: &[u8]) -> &mut Self {
        for (side, message) in [(0, request), (1, response)] {
            let third = message.len() / 3;
            for piece in [
                &message[..third],
                &message[third..2 * third],
                &message[2 * third..],
            ] {
                self.send(side, PSH | ACK, piece);
            }
            self.send(1 - side, ACK, b"");
        }
        self
    }
}

/// A capture of three keep-alive exchanges on each of two connections, interleaved (the second
/// one's sequence numbers wrap around).
fn capture() -> Vec<(u64, Vec<u8>)> {
    let mut a = Conn::new("10.0.0.1:40000", "10.0.0.2:80", [1000, 9000]);
    let mut b = Conn::new("10.0.0.3:41000", "10.0.0.2:80", [u32::MAX - 40, 77]);
    b.now += 500_000;
    a.handshake();
    b.handshake();
    for i in 0..3 {
        a.exchange_in_pieces(&request(&format!("/a{i}")), RESPONSE);
        b.exchange_in_pieces(&request(&format!("/b{i}")), RESPONSE);
    }
    a.close();
    b.close();
    let mut all: Vec<_> = a.packets.into_iter().chain(b.packets).collect();
    all.sort_by_key(|(ts, _)| *ts);
    all
}

fn sorted_records(packets: &[(u64, Vec<u8>)]) -> Vec<(String, Option<u16>, bool)> {
    let (events, _) = run(FlowLimits::default(), packets);
    let mut got = records(&events);
    got.sort();
    got
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Data segments swapped with the next one of the same direction (reordered within the
    /// window, as a network does), segments duplicated anywhere later (retransmissions, even
    /// after the close), or the trailing pure ACKs removed: the same records.
    #[test]
    fn packet_order_does_not_change_the_records(
        swaps in proptest::collection::vec(0usize..128, 0..16),
        dups in proptest::collection::vec((0usize..128, 0usize..128), 0..12),
        drop_trailing_acks in any::<bool>(),
    ) {
        let reference = sorted_records(&capture());
        let mut packets = capture();
        if drop_trailing_acks {
            while packets.last().is_some_and(|(_, p)| {
                let s = parse_ip_packet(p).unwrap();
                s.payload.is_empty() && !s.flags.fin() && !s.flags.syn()
            }) {
                packets.pop();
            }
        }
        let data_from = |p: &[u8]| {
            let s = parse_ip_packet(p).unwrap();
            (!s.payload.is_empty()).then_some(s.src)
        };
        for i in swaps {
            let i = i % (packets.len() - 1);
            let (a, b) = (data_from(&packets[i].1), data_from(&packets[i + 1].1));
            if a.is_some() && a == b {
                packets.swap(i, i + 1);
            }
        }
        for (i, later) in dups {
            let i = i % packets.len();
            let at = i + 1 + later % (packets.len() - i);
            let copy = packets[i].clone();
            packets.insert(at, copy);
        }
        prop_assert_eq!(sorted_records(&packets), reference);
    }
}
