//! Golden tests on real and kernel-exact synthetic tables: counts must equal the truth exactly.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::path::Path;

use tcpwire::{
    ByteOrder, Config, Event, Limits, QueueSemantics, RowKind, RowOptions, StateCounter,
    TableReader, TcpCounts, TcpState, TimerKind,
};

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Everything a reader emits for `chunks`, as comparable values, plus the counts of its rows.
fn read_all(chunks: &[&[u8]], config: Config) -> (Vec<String>, TcpCounts, tcpwire::Stats) {
    let mut reader = TableReader::new(config);
    let mut events = Vec::new();
    let mut counts = TcpCounts::default();
    let mut take = |event: Event<'_>, counts: &mut TcpCounts| {
        if let Event::Row(row) = &event {
            counts.add_row(row);
        }
        events.push(format!("{event:?}"));
    };
    for chunk in chunks {
        for event in reader.feed(chunk) {
            take(event, &mut counts);
        }
    }
    if let Some(event) = reader.feed_eof() {
        take(event, &mut counts);
    }
    (events, counts, reader.stats())
}

fn count_all(chunks: &[&[u8]]) -> (TcpCounts, tcpwire::Stats) {
    let mut counter = StateCounter::new(Limits::default());
    for chunk in chunks {
        counter.feed(chunk);
    }
    counter.feed_eof();
    (*counter.counts(), counter.stats())
}

fn order_of(truth: &str) -> ByteOrder {
    match testkit::truth::string(truth, "endian").as_deref() {
        Some("big") => ByteOrder::Big,
        _ => ByteOrder::Little,
    }
}

fn check_against_truth(name: &str, random_rounds: u64) {
    let table = data(name);
    let truth = String::from_utf8(data(&format!("{name}.truth.json"))).unwrap();
    let config = Config::default().row(
        RowOptions::default()
            .byte_order(order_of(&truth))
            .strict(true),
    );

    let (events, counts, stats) =
        testkit::assert_chunking_invariant(&table, random_rounds, |chunks| {
            read_all(chunks, config)
        });
    assert_eq!(stats.malformed, 0, "{name}: {events:?}");
    assert_eq!(stats.headers, 1);
    let rows = testkit::truth::number(&truth, "rows").unwrap();
    assert_eq!(counts.rows, rows);

    let expected_states = testkit::truth::numbers(&truth, "states_by_code").unwrap();
    let got_states: Vec<(String, u64)> =
        counts.states().map(|(s, n)| (format!("{s}"), n)).collect();
    assert_eq!(got_states, expected_states, "{name}");

    let kinds = testkit::truth::numbers(&truth, "row_kinds").unwrap();
    let kind = |k: &str| kinds.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap();
    assert_eq!(
        (counts.full_rows, counts.time_wait_rows, counts.request_rows),
        (kind("full"), kind("tw"), kind("req")),
        "{name}"
    );
    let sum = |key: &str| testkit::truth::number(&truth, key).unwrap();
    assert_eq!(
        counts.tx_queued_bytes(QueueSemantics::NodeExporter),
        sum("tx_queue_sum")
    );
    assert_eq!(
        counts.rx_queued_bytes(QueueSemantics::NodeExporter),
        sum("rx_queue_sum")
    );
    assert_eq!(
        counts.tx_queued_bytes(QueueSemantics::BytesOnly),
        sum("tx_queue_sum_excl_listen")
    );
    assert_eq!(
        counts.rx_queued_bytes(QueueSemantics::BytesOnly),
        sum("rx_queue_sum_excl_listen")
    );

    let (fast, fast_stats) = testkit::assert_chunking_invariant(&table, random_rounds, count_all);
    assert_eq!(
        fast, counts,
        "{name}: counting path disagrees with the full parse"
    );
    assert_eq!(fast_stats.rows, rows);
}

#[test]
fn synthetic_ipv4_10k() {
    check_against_truth("tcp_10k_seed1", 3);
}

#[test]
fn synthetic_ipv6_2k() {
    check_against_truth("tcp6_2k_seed6", 8);
}

#[test]
fn big_endian_captures() {
    check_against_truth("tcp_be_300_seed7", 32);
    check_against_truth("tcp6_be_300_seed8", 32);
}

#[test]
fn a_big_endian_capture_read_as_little_endian_gets_byte_swapped_addresses() {
    let table = data("tcp_be_300_seed7");
    let read = |order| {
        let config = Config::default().row(RowOptions::default().byte_order(order));
        let mut reader = TableReader::new(config);
        let rows: Vec<_> = reader
            .feed(&table)
            .filter_map(|e| match e {
                Event::Row(r) => Some(r.local()),
                _ => None,
            })
            .collect();
        rows
    };
    let right = read(ByteOrder::Big);
    let wrong = read(ByteOrder::Little);
    // The generator's local addresses are 10.0.0.x and 127.0.0.1 (or unspecified for listeners).
    assert!(right.iter().all(|a| {
        let o = match a.ip() {
            std::net::IpAddr::V4(v4) => v4.octets(),
            _ => unreachable!(),
        };
        o == [0, 0, 0, 0] || o[0] == 10 || o == [127, 0, 0, 1]
    }));
    assert_ne!(right, wrong);
}

#[test]
fn hand_made_edge_rows() {
    let table = data("tcp_edge_cases");
    let config = Config::default().row(RowOptions::default().byte_order(ByteOrder::Little));
    let (events, counts, stats) =
        testkit::assert_chunking_invariant(&table, 64, |chunks| read_all(chunks, config));
    assert_eq!(stats.malformed, 0, "{events:?}");
    // From tcp_edge_cases.README: 0A:2 03:1 06:1 05:1 01:2 0D:1; tx 16; rx 5.
    let states: Vec<(u8, u64)> = counts.states().map(|(s, n)| (s.0, n)).collect();
    assert_eq!(
        states,
        vec![
            (0x01, 2),
            (0x03, 1),
            (0x05, 1),
            (0x06, 1),
            (0x0A, 2),
            (0x0D, 1)
        ]
    );
    assert_eq!(counts.tx_queued_bytes(QueueSemantics::NodeExporter), 16);
    assert_eq!(counts.rx_queued_bytes(QueueSemantics::NodeExporter), 5);
    assert_eq!(counts.rx_queued_bytes(QueueSemantics::BytesOnly), 0);
    // The unknown state stays apart from every known one and from the queue sums.
    assert_eq!(
        counts.unknown_states().collect::<Vec<_>>(),
        vec![(TcpState(0x0D), 1)]
    );
    let ne: Vec<_> = counts
        .node_exporter_states(QueueSemantics::NodeExporter, false)
        .collect();
    assert_eq!(
        ne,
        vec![
            ("established", 2),
            ("fin_wait2", 1),
            ("listen", 2),
            ("rx_queued_bytes", 5),
            ("syn_recv", 1),
            ("time_wait", 1),
            ("tx_queued_bytes", 16),
        ]
    );
    assert_eq!(
        (counts.full_rows, counts.time_wait_rows, counts.request_rows),
        (5, 2, 1)
    );
    assert_eq!(count_all(&[&table]).0, counts);

    let mut reader = TableReader::new(config);
    let rows: Vec<_> = reader
        .feed(&table)
        .filter_map(|e| match e {
            Event::Row(r) => Some(*r.fields()),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0].pointer, Some(0));
    assert_eq!(rows[1].kind(), RowKind::Request);
    assert_eq!(
        (rows[1].ref_count, rows[1].inode, rows[1].retransmits),
        (Some(0), None, 1)
    );
    assert_eq!(rows[2].kind(), RowKind::TimeWait);
    assert_eq!(
        (rows[3].state, rows[3].timer, rows[3].kind()),
        (TcpState::FIN_WAIT2, TimerKind::TIME_WAIT, RowKind::TimeWait)
    );
    assert_eq!(rows[4].slot, 123_456);
    assert_eq!(rows[4].uid, 65534);
    assert_eq!(rows[4].inode, Some(5_000_000_001));
    assert_eq!(rows[4].tail.unwrap().ssthresh, -1);
    assert_eq!(rows[5].timer_expiry, 0xFFFF_FFFF_FFFF_FFF6);
    assert_eq!(rows[5].pointer, Some(0xc1a2_b3c4));
    assert_eq!(rows[6].state, TcpState::BOUND_INACTIVE);
    assert_eq!(rows[7].rx_queue, 5);
    assert_eq!(rows[7].tail.unwrap().ssthresh, 256);
    assert_eq!(rows[1].local.to_string(), "10.0.0.1:443");
}

#[test]
fn edge_rows_timer_helpers() {
    let table = data("tcp_edge_cases");
    let mut reader = TableReader::new(
        Config::default().row(RowOptions::default().byte_order(ByteOrder::Little)),
    );
    let rows: Vec<String> = reader
        .feed(&table)
        .filter_map(|e| match e {
            Event::Row(r) => Some(format!(
                "{} {:?} {:?}",
                r.timer_expiry_ticks(),
                r.timer_expiry(100),
                r.fastopen_max_qlen()
            )),
            _ => None,
        })
        .collect();
    assert_eq!(rows[2], "5999 Some(59.99s) None");
    assert_eq!(rows[5], "-10 None None");
    assert_eq!(rows[7], "0 Some(0ns) Some(256)");
}

#[test]
fn real_snapshot_matches_ss() {
    // ss -tan taken 12 ms after the files: 01:26 02:1 05:4 06:2 08:4 0A:9 over tcp and tcp6.
    let mut all = TcpCounts::default();
    for name in ["real_tcp", "real_tcp6"] {
        let table = data(name);
        let config = Config::default().row(
            RowOptions::default()
                .byte_order(ByteOrder::Little)
                .strict(true),
        );
        let (events, counts, stats) =
            testkit::assert_chunking_invariant(&table, 32, |chunks| read_all(chunks, config));
        assert_eq!(stats.malformed, 0, "{events:?}");
        all.merge(&counts);
    }
    let states: Vec<(u8, u64)> = all.states().map(|(s, n)| (s.0, n)).collect();
    assert_eq!(
        states,
        vec![
            (0x01, 26),
            (0x02, 1),
            (0x05, 4),
            (0x06, 2),
            (0x08, 4),
            (0x0A, 9)
        ]
    );
    let ss = String::from_utf8(data("real_ss_tan.txt")).unwrap();
    let from_ss = |label: &str| ss.lines().filter(|l| l.starts_with(label)).count() as u64;
    assert_eq!(all.state(TcpState::ESTABLISHED), from_ss("ESTAB"));
    assert_eq!(all.state(TcpState::LISTEN), from_ss("LISTEN"));
    assert_eq!(all.state(TcpState::CLOSE_WAIT), from_ss("CLOSE-WAIT"));
    // node_exporter 1.5.0 reported rx_queued_bytes 67483 from netlink: equal to the files' Σ rx.
    assert_eq!(all.rx_queued_bytes(QueueSemantics::NodeExporter), 67_483);
    assert_eq!(all.tx_queued_bytes(QueueSemantics::NodeExporter), 7_725_815);
}

#[test]
fn real_tcp6_decodes_ipv4_mapped_peers_both_ways() {
    let table = data("real_tcp6");
    let mut reader = TableReader::new(
        Config::default().row(RowOptions::default().byte_order(ByteOrder::Little)),
    );
    let mut mapped = 0;
    for event in reader.feed(&table) {
        let Event::Row(row) = event else {
            panic!("{event:?}")
        };
        if row.is_ipv4_mapped() {
            mapped += 1;
            assert!(row.local().is_ipv6());
            assert!(row.local_canonical().is_ipv4());
            assert!(row.local().to_string().starts_with("[::ffff:127.0.0.1]"));
        }
    }
    assert_eq!(mapped, 1);
}

#[test]
fn strict_mode_refuses_what_lenient_mode_tolerates() {
    let odd = b"   0: 0100007F:16 00000000:0 A 0:0 0:0 0 0 0 7\n";
    let read = |strict| {
        let config = Config::default().row(
            RowOptions::default()
                .byte_order(ByteOrder::Little)
                .strict(strict),
        );
        read_all(&[odd], config).2
    };
    assert_eq!((read(false).rows, read(false).malformed), (1, 0));
    assert_eq!((read(true).rows, read(true).malformed), (0, 1));
}
