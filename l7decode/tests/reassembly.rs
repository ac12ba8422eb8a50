//! Public-API tests of `l7decode::reassembly`: in-order zero-copy delivery, reordering,
//! retransmission trimming, wrap-around, bounded holes, flush, FIN/RST, and property tests.

use l7decode::Timestamp;
use l7decode::reassembly::{Event, Reassembler, ReassemblyConfig, ReassemblyStats, TcpFlags};
use proptest::prelude::*;
use testkit::SplitMix;
use testkit::alloc_count::{CountingAlloc, allocations};

// A counting global allocator (thread-local counts, so parallel tests do not interfere) proves the
// in-order path allocates nothing.
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// An owned copy of an [`Event`], without its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Data(Vec<u8>),
    Gap(u64),
    Fin,
    Rst,
}

fn own<'a>(delivered: impl IntoIterator<Item = Event<'a>>) -> Vec<Ev> {
    delivered
        .into_iter()
        .map(|event| match event {
            Event::Data { bytes, .. } => Ev::Data(bytes.to_vec()),
            Event::Gap { missing, .. } => Ev::Gap(missing),
            Event::Fin { .. } => Ev::Fin,
            Event::Rst { .. } => Ev::Rst,
            other => panic!("unknown event {other:?}"),
        })
        .collect()
}

fn data(bytes: &[u8]) -> Ev {
    Ev::Data(bytes.to_vec())
}

/// A recognisable stream: byte `i` is `i % 251`.
fn stream(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

const T: Timestamp = Timestamp(42);
const NONE: TcpFlags = TcpFlags::NONE;

/// Sequence number of stream offset `off` after a SYN with `isn`.
fn sq(isn: u32, off: usize) -> u32 {
    isn.wrapping_add(1).wrapping_add(off as u32)
}

#[test]
fn in_order_is_delivered_without_copies_or_allocations() {
    let input = stream(64 * 1460);
    let isn = 0x1234_5678;
    let mut r = Reassembler::new(ReassemblyConfig::default());
    assert!(own(r.segment(Timestamp(1), isn, TcpFlags::SYN, b"")).is_empty());
    assert_eq!(r.next_seq(), Some(isn + 1));

    let mut off = 0;
    let mut before = None;
    for (i, payload) in input.chunks(1460).enumerate() {
        if i == 1 {
            // The first data segment may size internal queues; nothing allocates after it.
            before = Some(allocations());
        }
        let now = Timestamp(10 + i as u64);
        let mut events = r.segment(now, sq(isn, off), TcpFlags(0x18), payload);
        assert_eq!(events.len(), 1);
        match events.next() {
            Some(Event::Data { now: at, bytes }) => {
                assert!(std::ptr::eq(bytes.as_ptr(), payload.as_ptr()), "copied");
                assert_eq!(bytes.len(), payload.len());
                assert_eq!(at, now);
            }
            other => panic!("expected data, got {other:?}"),
        }
        assert!(events.next().is_none());
        off += payload.len();
    }
    assert_eq!(before.map(|b| allocations() - b), Some(0));
    let stats = r.stats();
    assert_eq!(stats.bytes_delivered, input.len() as u64);
    assert_eq!(stats.bytes_held_peak, 0);
    assert_eq!(stats.segments_out_of_order, 0);
    assert_eq!(stats.bytes_retransmitted, 0);
    assert_eq!(stats.gaps, 0);
    assert_eq!(r.stream_offset(), input.len() as u64);
}

#[test]
fn segmentation_does_not_change_the_stream() {
    let input = stream(5000);
    let out = testkit::assert_chunking_invariant(&input, 32, |chunks| {
        let mut r = Reassembler::default();
        let mut seq = 7u32;
        let mut out = Vec::new();
        for chunk in chunks {
            for ev in own(r.segment(T, seq, NONE, chunk)) {
                out.push(ev);
            }
            seq = seq.wrapping_add(chunk.len() as u32);
        }
        // Merge data events: their boundaries follow the chunking, the bytes must not.
        let bytes: Vec<u8> = out
            .iter()
            .flat_map(|ev| match ev {
                Ev::Data(d) => d.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        (bytes, r.stats().bytes_delivered, r.stats().gaps)
    });
    assert_eq!(out.0, input);
}

#[test]
fn mid_stream_capture_starts_at_the_first_segment() {
    let mut r = Reassembler::default();
    assert_eq!(r.next_seq(), None);
    assert_eq!(
        own(r.segment(T, 9000, NONE, b"tail of")),
        [data(b"tail of")]
    );
    assert_eq!(
        own(r.segment(T, 9007, NONE, b" a stream")),
        [data(b" a stream")]
    );
    // Bytes before the first segment seen are old news.
    assert!(own(r.segment(T, 8990, NONE, b"0123456789")).is_empty());
    assert_eq!(r.stats().bytes_retransmitted, 10);
    assert_eq!(r.next_seq(), Some(9016));
}

#[test]
fn out_of_order_segments_are_held_until_the_hole_fills() {
    let input = stream(300);
    let (a, rest) = input.split_at(100);
    let (b, c) = rest.split_at(100);
    let isn = 500;
    let mut r = Reassembler::default();
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    assert!(own(r.segment(T, sq(isn, 200), NONE, c)).is_empty());
    assert!(own(r.segment(T, sq(isn, 100), NONE, b)).is_empty());
    assert_eq!(r.bytes_held(), 200);
    assert_eq!(r.segments_held(), 2);

    let now = Timestamp(77);
    let events: Vec<Event<'_>> = r.segment(now, sq(isn, 0), NONE, a).collect();
    assert_eq!(events.len(), 3);
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let Event::Data { now: at, bytes } = *ev else {
            panic!("expected data, got {ev:?}");
        };
        assert_eq!(at, now);
        if i == 0 {
            assert!(
                std::ptr::eq(bytes.as_ptr(), a.as_ptr()),
                "in-order part copied"
            );
        }
        out.extend_from_slice(bytes);
    }
    assert_eq!(out, input);
    assert_eq!(r.bytes_held(), 0);
    let stats = r.stats();
    assert_eq!(stats.segments_out_of_order, 2);
    assert_eq!(stats.bytes_held_peak, 200);
    assert_eq!(stats.bytes_delivered, 300);
    assert_eq!(stats.gaps, 0);
}

#[test]
fn retransmissions_and_overlaps_are_trimmed() {
    let input = stream(40);
    let isn = 1;
    let mut r = Reassembler::default();
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    let mut out = Vec::new();
    let mut feed = |r: &mut Reassembler, from: usize, to: usize| {
        let payload = input.get(from..to).expect("in range");
        for ev in own(r.segment(T, sq(isn, from), NONE, payload)) {
            match ev {
                Ev::Data(d) => out.extend(d),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    feed(&mut r, 0, 10); // in order
    feed(&mut r, 0, 10); // exact duplicate: 10 trimmed
    feed(&mut r, 5, 15); // partial: 5 trimmed, 5 delivered
    feed(&mut r, 20, 30); // held
    feed(&mut r, 25, 35); // overlaps held [25, 30): 5 trimmed, [30, 35) held
    feed(&mut r, 18, 32); // [18, 20) held, 12 trimmed
    feed(&mut r, 12, 19); // 3 trimmed, [15, 19) in place, held [18, 19) trimmed, rest follows
    feed(&mut r, 35, 40); // in order
    feed(&mut r, 0, 40); // everything again
    assert_eq!(out, input);
    let stats = r.stats();
    assert_eq!(stats.bytes_delivered, 40);
    assert_eq!(stats.bytes_retransmitted, 10 + 5 + 5 + 12 + 3 + 1 + 40);
    assert_eq!(stats.gaps, 0);
    assert_eq!(r.bytes_held(), 0);
}

#[test]
fn the_first_held_copy_wins_over_later_overlapping_copies() {
    let mut r = Reassembler::default();
    let _ = r.segment(T, 100, NONE, b"ab").count();
    assert!(own(r.segment(T, 104, NONE, b"EFGH")).is_empty());
    // A later, different copy of 104..108 plus new bytes 108..110.
    assert!(own(r.segment(T, 104, NONE, b"xxxxIJ")).is_empty());
    assert_eq!(
        own(r.segment(T, 102, NONE, b"cd")),
        [data(b"cd"), data(b"EFGH"), data(b"IJ")]
    );
    assert_eq!(r.stats().bytes_retransmitted, 4);
}

#[test]
fn sequence_numbers_wrap_around() {
    let input = stream(3000);
    // ISN 100 bytes before the wrap: the stream crosses 2^32 at offset 99.
    let isn = u32::MAX - 100;
    let mut r = Reassembler::default();
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    let segs: Vec<(usize, &[u8])> = input
        .chunks(64)
        .enumerate()
        .map(|(i, c)| (i * 64, c))
        .collect();
    // Feed in reverse pairs: every second segment arrives before its predecessor.
    let mut out = Vec::new();
    for pair in segs.chunks(2) {
        for &(off, payload) in pair.iter().rev() {
            for ev in own(r.segment(T, sq(isn, off), NONE, payload)) {
                match ev {
                    Ev::Data(d) => out.extend(d),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    assert_eq!(out, input);
    assert_eq!(r.next_seq(), Some(sq(isn, 3000)));
    assert!(r.next_seq() < Some(isn), "wrapped");
    assert_eq!(r.stats().gaps, 0);

    // A segment straddling the wrap, arriving ahead of its hole, mid-stream start.
    let mut r = Reassembler::default();
    assert_eq!(
        own(r.segment(T, u32::MAX - 9, NONE, b"01234")),
        [data(b"01234")]
    );
    assert!(own(r.segment(T, u32::MAX - 2, NONE, b"789abc")).is_empty());
    assert_eq!(
        own(r.segment(T, u32::MAX - 4, NONE, b"56")),
        [data(b"56"), data(b"789abc")]
    );
    assert_eq!(r.next_seq(), Some(3));
    // Retransmission from before the wrap is trimmed.
    assert!(own(r.segment(T, u32::MAX - 9, NONE, b"0123456789")).is_empty());
}

#[test]
fn a_hole_over_max_buffered_becomes_an_exact_gap() {
    let input = stream(1000);
    let cfg = ReassemblyConfig::default().max_buffered(100);
    let mut r = Reassembler::new(cfg);
    let isn = 0xFFFF_FF00; // also wraps
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    let part = |a: usize, b: usize| input.get(a..b).expect("in range");
    assert_eq!(
        own(r.segment(T, sq(isn, 0), NONE, part(0, 100))),
        [data(part(0, 100))]
    );
    // [100, 150) is lost. 100 bytes held is at the bound, not over it.
    assert!(own(r.segment(T, sq(isn, 150), NONE, part(150, 250))).is_empty());
    assert_eq!(r.bytes_held(), 100);
    // One more byte held is over: give up on the hole, deliver what was held.
    assert_eq!(
        own(r.segment(T, sq(isn, 250), NONE, part(250, 260))),
        [Ev::Gap(50), data(part(150, 250)), data(part(250, 260))]
    );
    // The stream continues in place.
    let tail = part(260, 1000);
    let mut events = r.segment(T, sq(isn, 260), NONE, tail);
    match events.next() {
        Some(Event::Data { bytes, .. }) => assert!(std::ptr::eq(bytes, tail)),
        other => panic!("expected data, got {other:?}"),
    }
    assert!(events.next().is_none());
    // The lost segment, retransmitted late, is old news.
    assert!(own(r.segment(T, sq(isn, 100), NONE, part(100, 150))).is_empty());
    let stats = r.stats();
    assert_eq!(stats.gaps, 1);
    assert_eq!(stats.bytes_missing, 50);
    assert_eq!(stats.bytes_delivered, 950);
    assert_eq!(stats.bytes_held_peak, 100);
    assert_eq!(stats.bytes_retransmitted, 50);
}

#[test]
fn several_holes_are_given_up_one_at_a_time() {
    let input = stream(100);
    let part = |a: usize, b: usize| input.get(a..b).expect("in range");
    let mut r = Reassembler::new(ReassemblyConfig::default().max_segments(2));
    let _ = r.segment(T, 0, NONE, part(0, 10)).count();
    assert!(own(r.segment(T, 20, NONE, part(20, 30))).is_empty());
    assert!(own(r.segment(T, 40, NONE, part(40, 50))).is_empty());
    // A third segment: over max_segments, so the first hole goes, the rest stays held.
    assert_eq!(
        own(r.segment(T, 60, NONE, part(60, 70))),
        [Ev::Gap(10), data(part(20, 30))]
    );
    assert_eq!(r.segments_held(), 2);
    // A single segment bigger than max_buffered, ahead of everything.
    let mut r = Reassembler::new(ReassemblyConfig::default().max_buffered(15));
    let _ = r.segment(T, 0, NONE, part(0, 10)).count();
    assert!(own(r.segment(T, 20, NONE, part(20, 30))).is_empty());
    assert_eq!(
        own(r.segment(T, 40, NONE, part(40, 60))),
        [
            Ev::Gap(10),
            data(part(20, 30)),
            Ev::Gap(10),
            data(part(40, 60))
        ]
    );
    assert_eq!(r.bytes_held(), 0);
    assert!(r.stats().bytes_held_peak <= 15);
}

#[test]
fn zero_buffer_reports_every_hole_at_once() {
    let mut r = Reassembler::new(ReassemblyConfig::default().max_buffered(0));
    let _ = r.segment(T, 0, NONE, b"abc").count();
    assert_eq!(
        own(r.segment(T, 13, NONE, b"xyz")),
        [Ev::Gap(10), data(b"xyz")]
    );
    assert_eq!(r.stats().bytes_held_peak, 0);
}

#[test]
fn a_segment_cut_by_the_capture_reports_its_missing_bytes_at_once() {
    let input = stream(60);
    let part = |a: usize, b: usize| input.get(a..b).expect("in range");
    let isn = 7000;
    let mut r = Reassembler::default();
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    // 20 bytes sent, 8 captured: the 12 others are a gap now, not when the window gives up.
    assert_eq!(
        own(r.truncated_segment(T, sq(isn, 0), NONE, part(0, 8), 12)),
        [data(part(0, 8)), Ev::Gap(12)]
    );
    assert_eq!(
        own(r.segment(T, sq(isn, 20), NONE, part(20, 30))),
        [data(part(20, 30))]
    );
    // Bytes already held inside the cut part fill it as usual: no early gap.
    assert!(own(r.segment(T, sq(isn, 35), NONE, part(35, 40))).is_empty());
    assert_eq!(
        own(r.truncated_segment(T, sq(isn, 30), NONE, part(30, 32), 8)),
        [data(part(30, 32))]
    );
    assert_eq!(r.bytes_held(), 5);
    // A FIN on a cut segment sits after its missing bytes.
    let mut r = Reassembler::default();
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    assert_eq!(
        own(r.truncated_segment(T, sq(isn, 0), TcpFlags::FIN, part(0, 4), 6)),
        [data(part(0, 4)), Ev::Gap(6), Ev::Fin]
    );
}

#[test]
fn an_acknowledged_hole_is_given_up_at_once() {
    let input = stream(300);
    let isn = 0xffff_ff80; // the acknowledgements wrap around
    let mut r = Reassembler::default();
    assert!(own(r.segment(T, isn, TcpFlags::SYN, b"")).is_empty());
    // Acknowledging the SYN, or bytes already delivered, reports nothing.
    assert!(own(r.acknowledged(T, sq(isn, 0))).is_empty());
    assert_eq!(
        own(r.segment(T, sq(isn, 0), NONE, &input[..100])),
        [data(&input[..100])]
    );
    assert!(own(r.acknowledged(T, sq(isn, 50))).is_empty());
    // 100..150 is lost; 150..200 is held behind the hole.
    assert!(own(r.segment(T, sq(isn, 150), NONE, &input[150..200])).is_empty());
    // An acknowledgement inside the hole gives up on its acknowledged part only.
    assert_eq!(own(r.acknowledged(T, sq(isn, 120))), [Ev::Gap(20)]);
    // One past the held bytes: the rest of the hole, the held bytes, then 10 more missing.
    let later = Timestamp(99);
    let events: Vec<Event<'_>> = r.acknowledged(later, sq(isn, 210)).collect();
    assert_eq!(
        own(events.iter().copied()),
        [Ev::Gap(30), data(&input[150..200]), Ev::Gap(10)]
    );
    // The held bytes keep their arrival time; the gaps carry the acknowledgement's.
    assert_eq!(
        events.iter().map(Event::now).collect::<Vec<_>>(),
        [later, T, later]
    );
    assert_eq!(r.stream_offset(), 210);
    assert_eq!(r.stats().bytes_missing, 60);
    // The lost bytes' retransmission (a capture that reordered directions) is trimmed.
    assert!(own(r.segment(T, sq(isn, 100), NONE, &input[100..210])).is_empty());
    // A FIN's sequence number is not a byte: acknowledging it reports nothing more.
    assert_eq!(
        own(r.segment(T, sq(isn, 210), TcpFlags::FIN, &input[210..])),
        [data(&input[210..]), Ev::Fin]
    );
    assert!(own(r.acknowledged(T, sq(isn, 301))).is_empty());
}

#[test]
fn acknowledging_a_lost_fin_reports_the_bytes_before_it_only() {
    let input = stream(100);
    let mut r = Reassembler::default();
    let _ = own(r.segment(T, 0, TcpFlags::SYN, b""));
    // The last 40 bytes and the FIN with them are lost; the FIN's own ack is one past them.
    let _ = own(r.segment(T, sq(0, 0), NONE, &input[..60]));
    let _ = own(r.segment(T, sq(0, 100), TcpFlags::FIN, b""));
    assert_eq!(own(r.acknowledged(T, sq(0, 101))), [Ev::Gap(40), Ev::Fin]);
    // Nothing fixed the start yet: there is nothing to give up on.
    let mut fresh = Reassembler::default();
    assert!(own(fresh.acknowledged(T, 5000)).is_empty());
    assert_eq!(fresh.next_seq(), None);
}

#[test]
fn flush_reports_every_hole_and_delivers_everything_held() {
    let input = stream(60);
    let part = |a: usize, b: usize| input.get(a..b).expect("in range");
    let isn = 3000;
    let mut r = Reassembler::default();
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    let _ = r.segment(T, sq(isn, 0), NONE, part(0, 10)).count();
    assert!(own(r.segment(T, sq(isn, 40), NONE, part(40, 50))).is_empty());
    assert!(own(r.segment(T, sq(isn, 20), NONE, part(20, 30))).is_empty());
    // A bare FIN three bytes after the last held byte: those three are missing too.
    let _ = r.segment(T, sq(isn, 53), TcpFlags::FIN, b"").count();
    let now = Timestamp(999);
    assert!(!r.is_finished());
    let events: Vec<Event<'_>> = r.flush(now).collect();
    // Gaps and the FIN are the flush's; held bytes no later byte made contiguous keep the time
    // they arrived.
    assert!(events.iter().all(|ev| match ev {
        Event::Data { now: at, .. } => *at == T,
        _ => ev.now() == now,
    }));
    assert_eq!(
        own(events),
        [
            Ev::Gap(10),
            data(part(20, 30)),
            Ev::Gap(10),
            data(part(40, 50)),
            Ev::Gap(3),
            Ev::Fin
        ]
    );
    assert!(r.is_finished());
    assert_eq!(r.bytes_held(), 0);
    assert!(own(r.flush(now)).is_empty());
    let stats = r.stats();
    assert_eq!(stats.bytes_delivered + stats.bytes_missing, 53);
    assert_eq!(stats.gaps, 3);
}

#[test]
fn flush_without_fin_or_input_is_quiet() {
    let mut r = Reassembler::default();
    assert!(own(r.flush(T)).is_empty());
    let _ = r.segment(T, 10, NONE, b"abc").count();
    assert!(own(r.flush(T)).is_empty());
    // Still usable afterwards.
    assert_eq!(own(r.segment(T, 13, NONE, b"d")), [data(b"d")]);
}

#[test]
fn fin_waits_for_the_bytes_before_it() {
    let mut r = Reassembler::default();
    let isn = u32::MAX; // data starts at 0
    let _ = r.segment(T, isn, TcpFlags::SYN, b"").count();
    // The FIN-carrying segment arrives first.
    assert!(own(r.segment(T, 5, TcpFlags::FIN | TcpFlags(0x10), b"world")).is_empty());
    assert!(!r.is_finished());
    assert_eq!(
        own(r.segment(T, 0, NONE, b"hello")),
        [data(b"hello"), data(b"world"), Ev::Fin]
    );
    assert!(r.is_finished());
    // Retransmitted FIN: nothing more.
    assert!(own(r.segment(T, 5, TcpFlags::FIN, b"world")).is_empty());

    // A bare FIN ahead of a hole, and an in-order FIN.
    let mut r = Reassembler::default();
    let _ = r.segment(T, 0, NONE, b"ab").count();
    assert!(own(r.segment(T, 4, TcpFlags::FIN, b"")).is_empty());
    assert_eq!(own(r.segment(T, 2, NONE, b"cd")), [data(b"cd"), Ev::Fin]);
    let mut r = Reassembler::default();
    assert_eq!(
        own(r.segment(T, 0, TcpFlags::FIN, b"bye")),
        [data(b"bye"), Ev::Fin]
    );
    // SYN+FIN: the FIN follows the SYN's sequence number and the data.
    let mut r = Reassembler::default();
    assert_eq!(
        own(r.segment(T, 7, TcpFlags::SYN | TcpFlags::FIN, b"x")),
        [data(b"x"), Ev::Fin]
    );
}

#[test]
fn rst_is_reported_after_in_order_data_and_once() {
    let mut r = Reassembler::default();
    let _ = r.segment(T, 0, NONE, b"abc").count();
    assert!(own(r.segment(T, 10, NONE, b"held")).is_empty());
    assert_eq!(
        own(r.segment(T, 3, TcpFlags::RST, b"de")),
        [data(b"de"), Ev::Rst]
    );
    assert!(own(r.segment(T, 5, TcpFlags::RST, b"")).is_empty());
    assert_eq!(own(r.flush(T)), [Ev::Gap(5), data(b"held")]);
}

#[test]
fn syn_with_data_and_repeated_syns() {
    let mut r = Reassembler::default();
    assert_eq!(
        own(r.segment(T, 100, TcpFlags::SYN, b"fastopen")),
        [data(b"fastopen")]
    );
    assert_eq!(r.next_seq(), Some(109));
    // The SYN again (retransmitted), and a SYN with another ISN: old or misplaced, never a reset.
    assert!(own(r.segment(T, 100, TcpFlags::SYN, b"fastopen")).is_empty());
    assert!(own(r.segment(T, 100, TcpFlags::SYN, b"")).is_empty());
    assert_eq!(own(r.segment(T, 109, NONE, b"!")), [data(b"!")]);
    assert_eq!(r.stats().bytes_retransmitted, 8);
}

#[test]
fn dropping_the_events_early_keeps_the_state() {
    let mut r = Reassembler::default();
    let _ = r.segment(T, 0, NONE, b"a").count();
    let _ = r.segment(T, 2, NONE, b"c").count();
    drop(r.segment(T, 1, NONE, b"b")); // not drained
    assert_eq!(r.stream_offset(), 3);
    assert_eq!(own(r.segment(T, 3, NONE, b"d")), [data(b"d")]);
    assert_eq!(r.stats().bytes_delivered, 4);
}

#[test]
fn debug_output_redacts_payloads() {
    let mut r = Reassembler::default();
    let _ = r.segment(T, 0, NONE, b"secret").count();
    let _ = r.segment(T, 10, NONE, b"password").count();
    let events: Vec<_> = r.segment(T, 6, NONE, b"!!!!").collect();
    assert_eq!(
        format!("{:?}", events.first()),
        "Some(Data { now: Timestamp(42), len: 4 })"
    );
    let shown = format!("{r:?}");
    assert!(shown.contains("bytes_delivered: 18"), "{shown}");
    assert!(!shown.contains("115, 101"), "{shown}"); // b"se"
    assert_eq!(ReassemblyStats::default().gaps, 0);
}

/// A segment to feed: stream offset, length and flags.
#[derive(Debug, Clone, Copy)]
struct Seg {
    off: usize,
    len: usize,
    flags: TcpFlags,
}

/// Cuts `len` bytes into segments of 1..=max_seg bytes, marks the last one FIN, adds duplicates
/// and re-segmented retransmissions, then shuffles within a bounded window.
fn segments(len: usize, max_seg: usize, window: usize, rng: &mut SplitMix) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut off = 0;
    while off < len {
        let n = (1 + rng.below(max_seg)).min(len - off);
        segs.push(Seg {
            off,
            len: n,
            flags: NONE,
        });
        off += n;
    }
    match segs.last_mut() {
        Some(last) => last.flags = TcpFlags::FIN,
        None => segs.push(Seg {
            off: 0,
            len: 0,
            flags: TcpFlags::FIN,
        }),
    }
    let originals = segs.len();
    for i in 0..originals {
        if rng.below(8) == 0 {
            segs.push(segs[i]);
        }
        if len > 0 && rng.below(10) == 0 {
            let a = rng.below(len);
            let n = (1 + rng.below(max_seg * 2)).min(len - a);
            segs.push(Seg {
                off: a,
                len: n,
                flags: NONE,
            });
        }
    }
    // Duplicates are appended: spread them out, then reorder locally.
    for i in originals..segs.len() {
        let j = rng.below(i + 1);
        segs.swap(i, j);
    }
    for i in 0..segs.len() {
        let j = i + rng.below(window.min(segs.len() - i));
        segs.swap(i, j);
    }
    segs
}

/// What feeding `segs` (after a SYN) and flushing produced, checked byte by byte against `input`.
struct Outcome {
    delivered: u64,
    missing: u64,
    gaps_before_flush: u64,
    fins: usize,
    fin_last: bool,
    stats: ReassemblyStats,
}

fn run(input: &[u8], isn: u32, segs: &[Seg], cfg: ReassemblyConfig) -> Outcome {
    let mut r = Reassembler::new(cfg);
    assert!(own(r.segment(T, isn, TcpFlags::SYN, b"")).is_empty());
    let mut pos = 0u64; // stream offset of the next event
    let mut delivered = 0u64;
    let mut missing = 0u64;
    let mut fins = 0;
    let mut fin_last = true;
    let mut check = |events: Vec<Ev>| {
        for ev in events {
            fin_last = false;
            match ev {
                Ev::Data(d) => {
                    let at = pos as usize;
                    assert_eq!(input.get(at..at + d.len()), Some(&d[..]), "bytes at {at}");
                    pos += d.len() as u64;
                    delivered += d.len() as u64;
                }
                Ev::Gap(n) => {
                    assert!(n > 0);
                    pos += n;
                    missing += n;
                }
                Ev::Fin => {
                    assert_eq!(pos, input.len() as u64, "FIN before the end");
                    fins += 1;
                    fin_last = true;
                }
                Ev::Rst => panic!("no RST was sent"),
            }
        }
    };
    for seg in segs {
        let payload = input.get(seg.off..seg.off + seg.len).expect("in range");
        check(own(r.segment(T, sq(isn, seg.off), seg.flags, payload)));
        assert!(r.bytes_held() <= cfg.max_buffered);
        assert!(r.segments_held() <= cfg.max_segments);
    }
    let gaps_before_flush = r.stats().gaps;
    // A bare FIN at the end (a retransmission if the FIN segment got through), then the end of
    // the capture.
    check(own(r.segment(T, sq(isn, input.len()), TcpFlags::FIN, b"")));
    check(own(r.flush(T)));
    assert_eq!(r.bytes_held(), 0);
    let stats = r.stats();
    assert_eq!(stats.bytes_delivered, delivered);
    assert_eq!(stats.bytes_missing, missing);
    Outcome {
        delivered,
        missing,
        gaps_before_flush,
        fins,
        fin_last,
        stats,
    }
}

fn isns() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (u32::MAX - 5000)..=u32::MAX]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reordered_and_duplicated_segments_rebuild_the_stream(
        input in proptest::collection::vec(any::<u8>(), 0..4000),
        isn in isns(),
        seed in any::<u64>(),
        max_seg in 1usize..300,
        window in 1usize..12,
    ) {
        let mut rng = SplitMix::new(seed);
        let segs = segments(input.len(), max_seg, window, &mut rng);
        let cfg = ReassemblyConfig::default().max_segments(1 << 16);
        let out = run(&input, isn, &segs, cfg);
        prop_assert_eq!(out.delivered, input.len() as u64);
        prop_assert_eq!(out.missing, 0);
        prop_assert_eq!(out.gaps_before_flush, 0);
        prop_assert_eq!(out.stats.gaps, 0);
        prop_assert_eq!(out.fins, 1);
        prop_assert!(out.fin_last);
    }

    #[test]
    fn dropped_segments_are_accounted_exactly(
        input in proptest::collection::vec(any::<u8>(), 0..4000),
        isn in isns(),
        seed in any::<u64>(),
        max_seg in 1usize..300,
        window in 1usize..12,
        drop_one_in in 2usize..10,
        max_buffered in prop_oneof![0usize..600, Just(1usize << 20)],
        max_segments in prop_oneof![0usize..20, Just(1usize << 16)],
    ) {
        let mut rng = SplitMix::new(seed);
        let segs: Vec<Seg> = segments(input.len(), max_seg, window, &mut rng)
            .into_iter()
            .filter(|_| rng.below(drop_one_in) != 0)
            .collect();
        let cfg = ReassemblyConfig::default()
            .max_buffered(max_buffered)
            .max_segments(max_segments);
        let out = run(&input, isn, &segs, cfg);
        prop_assert_eq!(out.delivered + out.missing, input.len() as u64);
        prop_assert_eq!(out.fins, 1);
        prop_assert!(out.fin_last);
        prop_assert!(out.stats.bytes_held_peak <= max_buffered);
        if max_buffered >= input.len() && max_segments >= input.len() {
            // Nothing given up before the end: every byte some segment carried is delivered.
            let mut covered = vec![false; input.len()];
            for seg in &segs {
                covered[seg.off..seg.off + seg.len].fill(true);
            }
            let carried = covered.iter().filter(|&&c| c).count() as u64;
            prop_assert_eq!(out.delivered, carried);
            prop_assert_eq!(out.gaps_before_flush, 0);
        }
    }

    #[test]
    fn arbitrary_segments_never_panic_and_stay_bounded(
        ops in proptest::collection::vec(
            (any::<u32>(), 0u8..8, 0usize..200, 0u8..4), 1..200),
        first in any::<u32>(),
        max_buffered in 0usize..1000,
        max_segments in 0usize..16,
    ) {
        let cfg = ReassemblyConfig::default()
            .max_buffered(max_buffered)
            .max_segments(max_segments);
        let mut r = Reassembler::new(cfg);
        let payload = [0xAAu8; 200];
        let mut delivered = 0u64;
        let mut missing = 0u64;
        let mut fins = 0;
        let mut rsts = 0;
        let mut base = first;
        for (i, &(seq, flags, len, mode)) in ops.iter().enumerate() {
            // Mostly near the stream (to exercise reordering), sometimes anywhere.
            let seq = match mode {
                0 => seq,
                _ => base.wrapping_add(seq % 4096).wrapping_sub(1024),
            };
            let now = Timestamp(i as u64);
            for ev in r.segment(now, seq, TcpFlags(flags), &payload[..len]) {
                // Held bytes delivered after a hole was given up on keep their (earlier)
                // arrival time; everything else carries the call's.
                if matches!(ev, Event::Data { .. }) {
                    prop_assert!(ev.now() <= now);
                } else {
                    prop_assert_eq!(ev.now(), now);
                }
                match ev {
                    Event::Data { bytes, .. } => delivered += bytes.len() as u64,
                    Event::Gap { missing: n, .. } => missing += n,
                    Event::Fin { .. } => fins += 1,
                    Event::Rst { .. } => rsts += 1,
                    _ => {}
                }
            }
            prop_assert!(r.bytes_held() <= max_buffered);
            prop_assert!(r.segments_held() <= max_segments);
            base = r.next_seq().unwrap_or(base);
        }
        for ev in r.flush(Timestamp(u64::MAX)) {
            match ev {
                Event::Data { bytes, .. } => delivered += bytes.len() as u64,
                Event::Gap { missing: n, .. } => missing += n,
                Event::Fin { .. } => fins += 1,
                _ => {}
            }
        }
        prop_assert_eq!(r.bytes_held(), 0);
        prop_assert_eq!(delivered + missing, r.stream_offset());
        prop_assert_eq!(r.stats().bytes_delivered, delivered);
        prop_assert!(fins <= 1 && rsts <= 1);
    }
}
