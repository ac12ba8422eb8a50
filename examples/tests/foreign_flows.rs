//! Captures recorded here with traffic the corpus did not have (issue 16): replays after a
//! close, and protocols the decoder does not read. See `data/foreign/flows/README.md`.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use examples::capture::open;
use examples::meshsniff::{Record, Totals, analyze};

fn run(name: &str) -> (Vec<Record>, Totals) {
    let capture = open(&common::data(&format!("tests/data/foreign/flows/{name}"))).unwrap();
    let mut records = Vec::new();
    let (totals, failure) = analyze(capture, |r| records.push(r));
    assert!(failure.is_none());
    (records, totals)
}

#[test]
fn segments_replayed_after_a_close_are_dropped_not_a_second_connection() {
    let (records, totals) = run("replayed_syn.pcap");
    assert_eq!(records.len(), 1);
    let t = records[0].http().unwrap();
    assert_eq!(
        (t.method(), t.uri(), t.status()),
        (Some("GET"), Some("/boom"), Some(500))
    );
    assert!(!t.flags.orphan && !t.flags.gap && !t.flags.missing_response);
    assert_eq!(totals.connections, 1);
    assert_eq!(totals.gap_bytes, 0);
    assert_eq!(totals.late_segments, 2);
}

/// TCP payload bytes of the capture's packets to or from `port`, counted by etherparse.
fn payload_bytes(name: &str, port: u16) -> u64 {
    let mut capture = open(&common::data(&format!("tests/data/foreign/flows/{name}"))).unwrap();
    let mut total = 0;
    while let Some(packet) = capture.next_packet() {
        let packet = packet.unwrap();
        let sliced = etherparse::SlicedPacket::from_ethernet(packet.data).unwrap();
        if let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport
            && (tcp.source_port() == port || tcp.destination_port() == port)
        {
            total += tcp.payload().len() as u64;
        }
    }
    total
}

#[test]
fn tls_and_unknown_protocols_are_other_traffic_not_skipped_bytes() {
    let (records, totals) = run("other_traffic.pcap");
    let uris: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.http().unwrap().uri().unwrap().to_owned(),
                r.http().unwrap().status(),
            )
        })
        .collect();
    assert_eq!(
        uris,
        [
            ("/first".to_owned(), Some(200)),
            ("/second".to_owned(), Some(200))
        ]
    );
    assert_eq!(
        (
            totals.connections,
            totals.tls_connections,
            totals.unknown_connections
        ),
        (3, 1, 1)
    );
    let other =
        payload_bytes("other_traffic.pcap", 18443) + payload_bytes("other_traffic.pcap", 15432);
    assert!(other > 1000, "{other}");
    assert_eq!(totals.other_bytes, other);
    // Only the junk before the second HTTP request was skipped.
    assert_eq!(totals.skipped_bytes, 8);
    assert_eq!(totals.gap_bytes, 0);
}
