//! Property tests: the formatter and the parser are inverses, the readers are chunking-invariant,
//! and a cut row is never half-reported.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use tcpwire::{
    ByteOrder, Config, Event, FullTail, Limits, ROW_MAX_LEN, RowFields, RowOptions, StateCounter,
    TCP4_HEADER, TCP4_LINE_WIDTH, TCP6_HEADER, TableReader, TcpCounts, TcpState, TimerKind,
    encode_row, parse_row,
};

fn endpoint(v6: bool) -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 16]>(), any::<u16>()).prop_map(move |(bytes, port)| {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(bytes))
        } else {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        };
        SocketAddr::new(ip, port)
    })
}

fn tail() -> impl Strategy<Value = FullTail> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<i32>(),
    )
        .prop_map(|(rto, ato, quick_ack, cwnd, ssthresh)| {
            let mut t = FullTail::default();
            t.rto = u64::from(rto);
            t.ato = u64::from(ato);
            t.quick_ack = quick_ack;
            t.cwnd = cwnd;
            t.ssthresh = ssthresh;
            t
        })
}

/// A row as one of the kernel's printers could print it (12 or 17 columns).
fn row(v6: bool) -> impl Strategy<Value = RowFields> {
    (
        (
            0u64..2_000_000,
            endpoint(v6),
            endpoint(v6),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            0u8..5,
            0u64..=u64::from(u32::MAX),
            any::<u32>(),
            any::<u32>(),
            any::<i32>(),
        ),
        (
            any::<u64>(),
            any::<i32>(),
            any::<u64>(),
            proptest::option::of(tail()),
        ),
    )
        .prop_map(
            |(
                (slot, local, remote, st, tx, rx),
                (tr, when, retr, uid, probes),
                (inode, refs, ptr, tail),
            )| {
                let mut f = RowFields::default();
                f.slot = slot;
                f.local = local;
                f.remote = remote;
                f.state = TcpState(st);
                f.tx_queue = tx;
                f.rx_queue = rx;
                f.timer = TimerKind(tr);
                f.timer_expiry = when;
                f.retransmits = retr;
                f.uid = uid;
                f.probes = probes;
                f.inode = (inode != 0).then_some(inode);
                f.ref_count = Some(refs);
                f.pointer = Some(ptr);
                f.tail = tail;
                f
            },
        )
}

fn order() -> impl Strategy<Value = ByteOrder> {
    prop_oneof![Just(ByteOrder::Little), Just(ByteOrder::Big)]
}

fn encode(fields: &RowFields, order: ByteOrder) -> String {
    let mut line = [0u8; ROW_MAX_LEN];
    let n = encode_row(fields, order, &mut line).unwrap();
    String::from_utf8(line[..n].to_vec()).unwrap()
}

/// A whole table as the kernel writes it: header, rows, IPv4 lines padded to 149 bytes.
fn table(rows: &[RowFields], v6: bool, order: ByteOrder) -> Vec<u8> {
    let mut out = String::new();
    let mut push = |line: &str| {
        out.push_str(line);
        if !v6 {
            out.extend(std::iter::repeat_n(
                ' ',
                TCP4_LINE_WIDTH.saturating_sub(line.len()),
            ));
        }
        out.push('\n');
    };
    push(if v6 { TCP6_HEADER } else { TCP4_HEADER });
    for r in rows {
        push(&encode(r, order));
    }
    out.into_bytes()
}

fn read(chunks: &[&[u8]], order: ByteOrder) -> (Vec<RowFields>, TcpCounts, u64) {
    let config = Config::default().row(RowOptions::default().byte_order(order).strict(true));
    let mut reader = TableReader::new(config);
    let mut rows = Vec::new();
    let mut counts = TcpCounts::default();
    for chunk in chunks {
        for event in reader.feed(chunk) {
            match event {
                Event::Row(r) => {
                    counts.add_row(&r);
                    rows.push(*r.fields());
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(reader.feed_eof().is_none());
    (rows, counts, reader.stats().malformed)
}

proptest! {
    #[test]
    fn encode_then_parse_is_identity(fields in prop_oneof![row(false), row(true)], order in order()) {
        let line = encode(&fields, order);
        let parsed = parse_row(line.as_bytes(), RowOptions::default().byte_order(order).strict(true))
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        prop_assert_eq!(parsed.fields(), &fields);
        prop_assert_eq!(parsed.columns(), if fields.tail.is_some() { 17 } else { 12 });
        prop_assert!(parsed.extra().is_empty());
    }

    #[test]
    fn tables_read_the_same_in_any_chunking(
        v6 in any::<bool>(),
        order in order(),
        rows in proptest::collection::vec(row(false), 0..12),
        rows6 in proptest::collection::vec(row(true), 0..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let rows = if v6 { rows6 } else { rows };
        let bytes = table(&rows, v6, order);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let chunks = testkit::split_at_points(&bytes, &points);
        let (got, counts, malformed) = read(&chunks, order);
        prop_assert_eq!(malformed, 0);
        prop_assert_eq!(&got, &rows);
        let mut expected = TcpCounts::default();
        for r in &rows {
            expected.add(r.state, r.tx_queue, r.rx_queue, r.kind());
        }
        prop_assert_eq!(counts, expected);
        let mut counter = StateCounter::new(Limits::default());
        chunks.iter().for_each(|c| counter.feed(c));
        counter.feed_eof();
        prop_assert_eq!(counter.counts(), &expected);
    }

    #[test]
    fn a_cut_row_is_held_back_until_completed(fields in row(true), order in order(), cut in any::<prop::sample::Index>()) {
        let mut line = encode(&fields, order).into_bytes();
        line.push(b'\n');
        let cut = cut.index(line.len());
        let mut reader = TableReader::new(Config::default().row(RowOptions::default().byte_order(order)));
        prop_assert_eq!(reader.feed(&line[..cut]).count(), 0);
        prop_assert_eq!(reader.buffered(), cut);
        let rows: Vec<RowFields> = reader
            .feed(&line[cut..])
            .map(|e| match e { Event::Row(r) => *r.fields(), other => panic!("{other:?}") })
            .collect();
        prop_assert_eq!(rows, vec![fields]);
        prop_assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(data in proptest::collection::vec(any::<u8>(), 0..2048), step in 1usize..300) {
        let limits = Limits::default().max_line(128);
        let mut reader = TableReader::new(Config::default().limits(limits));
        for chunk in data.chunks(step) {
            for event in reader.feed(chunk) {
                if let Event::Malformed { error, line_offset, .. } = event {
                    prop_assert!(error.offset() >= line_offset);
                    prop_assert!(error.offset() <= data.len() as u64);
                }
            }
            prop_assert!(reader.buffered() <= 128);
        }
        let _ = reader.feed_eof();
        prop_assert_eq!(reader.stats().bytes, data.len() as u64);
    }
}

#[test]
fn the_widest_row_fits_row_max_len_and_a_short_buffer_says_what_it_needs() {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(u128::MAX)), u16::MAX);
    let mut tail = FullTail::default();
    (tail.rto, tail.ato, tail.quick_ack, tail.cwnd, tail.ssthresh) =
        (u64::MAX, u64::MAX, u32::MAX, u32::MAX, i32::MIN);
    let mut f = RowFields::default();
    (f.slot, f.local, f.remote, f.state) = (u64::MAX, v6, v6, TcpState(0xFF));
    (f.tx_queue, f.rx_queue, f.timer) = (u32::MAX, u32::MAX, TimerKind(0xFF));
    (f.timer_expiry, f.retransmits, f.uid, f.probes) = (u64::MAX, u32::MAX, u32::MAX, i32::MIN);
    (f.inode, f.ref_count, f.pointer, f.tail) =
        (Some(u64::MAX), Some(i32::MIN), Some(u64::MAX), Some(tail));
    let mut out = [0u8; ROW_MAX_LEN];
    let n = encode_row(&f, ByteOrder::Little, &mut out).unwrap();
    assert!(n <= ROW_MAX_LEN, "{n}");
    let short = encode_row(&f, ByteOrder::Little, &mut out[..n - 1]).unwrap_err();
    assert_eq!(
        short.kind(),
        tcpwire::ErrorKind::BufferTooSmall { needed: n }
    );
}
