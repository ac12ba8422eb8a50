//! The flow tracker's memory, measured (a counting allocator, not an estimate): floods of
//! half-open flows and of connections that each leave bytes buffered stay within the budget.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a panic is how a test reports failure

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use l7decode::Timestamp;
use l7decode::flows::{FlowLimits, FlowTracker, Segment};
use l7decode::reassembly::TcpFlags;
use testkit::alloc_count::{CountingAlloc, peak_bytes_during};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The `i`th client, each on its own address and port.
fn client(i: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000 + (i >> 8));
    SocketAddr::V4(SocketAddrV4::new(ip, 1024 + (i & 0xff) as u16 * 100))
}

const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 255, 0, 1), 8080));

fn segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: TcpFlags,
    payload: &[u8],
) -> Segment<'_> {
    Segment {
        src,
        dst,
        seq,
        ack: 0,
        flags,
        payload,
        missing: 0,
    }
}

/// Runs `flows` connections through a tracker, each sending `per_flow(i)` segments, and returns
/// the peak heap, the flows evicted and the tracker's own peak count.
fn flood(
    limits: FlowLimits,
    flows: u32,
    mut per_flow: impl FnMut(u32, &mut FlowTracker),
) -> (u64, u64, usize) {
    let mut tracker = FlowTracker::new(limits);
    let ((), peak) = peak_bytes_during(|| {
        for i in 0..flows {
            per_flow(i, &mut tracker);
            while tracker.poll_event().is_some() {}
        }
        // The end closes every flow still open: one at a time as the events are drained, so
        // this stays within the bound too.
        tracker.feed_eof(Timestamp(u64::MAX));
        while tracker.poll_event().is_some() {}
    });
    let stats = tracker.stats();
    assert_eq!((stats.flows_open, stats.bytes_held), (0, 0));
    let evicted = stats.evicted_budget + stats.evicted_max_flows + stats.evicted_idle;
    (peak, evicted, stats.bytes_held_peak)
}

const MIB: u64 = 1 << 20;

#[test]
fn one_hundred_thousand_half_open_flows_stay_within_the_configured_budget() {
    let budget = 24 << 20;
    let limits = FlowLimits::default().max_bytes(budget);
    let (peak, evicted, held) = flood(limits, 100_000, |i, t| {
        t.segment(
            Timestamp(u64::from(i)),
            &segment(client(i), SERVER, i, TcpFlags::SYN, b""),
        );
    });
    assert_eq!(evicted, 0, "100,000 half-open flows fit");
    assert!(held <= budget);
    // The measured heap: the budget's accounting plus the table's growth slack.
    assert!(
        peak <= budget as u64 + 4 * MIB,
        "peak {peak} over budget {budget}"
    );
    eprintln!(
        "100,000 half-open flows: peak heap {} bytes ({} per flow)",
        peak,
        peak / 100_000
    );
}

#[test]
fn a_flood_of_syns_stays_under_64_mib_by_default() {
    let (peak, evicted, _) = flood(FlowLimits::default(), 200_000, |i, t| {
        t.segment(
            Timestamp(u64::from(i)),
            &segment(client(i), SERVER, i, TcpFlags::SYN, b""),
        );
    });
    assert!(peak < 64 * MIB, "peak {peak}");
    assert!(evicted >= 100_000, "evicted {evicted}");
}

/// Each connection sends a handshake and `bytes` of a request head that never ends.
fn unfinished_requests(flows: u32, bytes: usize) -> (u64, u64, usize) {
    let mut head = b"GET /".to_vec();
    head.resize(bytes, b'a');
    flood(FlowLimits::default(), flows, |i, t| {
        let now = Timestamp(u64::from(i) * 1000);
        let c = client(i);
        t.segment(now, &segment(c, SERVER, 100, TcpFlags::SYN, b""));
        let mut seq = 101;
        for piece in head.chunks(1448) {
            t.segment(now, &segment(c, SERVER, seq, TcpFlags::ACK, piece));
            seq += piece.len() as u32;
        }
    })
}

#[test]
fn connections_each_buffering_a_kilobyte_stay_under_64_mib_by_default() {
    let (peak, evicted, held) = unfinished_requests(100_000, 1024);
    assert!(peak < 64 * MIB, "peak {peak}");
    assert!(held <= 32 << 20);
    assert!(evicted > 0);
}

#[test]
fn connections_each_buffering_sixty_kilobytes_stay_under_64_mib_by_default() {
    let (peak, evicted, held) = unfinished_requests(30_000, 60_000);
    assert!(peak < 64 * MIB, "peak {peak}");
    assert!(held <= 32 << 20);
    assert!(evicted > 25_000, "evicted {evicted}");
}
