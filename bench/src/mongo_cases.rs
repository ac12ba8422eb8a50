//! MongoDB: the shared captures decoded end to end (pcap bytes in memory → records), the
//! command-name path side by side with decoding the body with the `bson` crate, and the
//! allocations the decoder makes per uncompressed message.

use std::hint::black_box;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use examples::capture::{Capture, tcp_segment};
use examples::meshsniff::analyze;
use l7decode::mongo::bson::Doc;
use l7decode::{Connection, Direction, Event, Limits, Timestamp};

use crate::alloc_count::allocations_during;
use crate::harness::{Comparison, compare, median_time};

fn load(path: &Path) -> Bytes {
    let raw = std::fs::read(path).expect("bundled capture");
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("gzip");
        Bytes::from(out)
    } else {
        Bytes::from(raw)
    }
}

/// Operations decoded and MongoDB messages read.
fn decode(pcap: &Bytes) -> (u64, u64) {
    let capture = Capture::from_reader(std::io::Cursor::new(pcap.clone())).expect("a capture");
    let mut operations = 0;
    let (totals, failure) = analyze(capture, |r| operations += u64::from(r.mongo().is_some()));
    assert!(failure.is_none());
    (operations, totals.messages)
}

/// One connection's payloads in capture order, with their direction.
type Turns = Vec<(Direction, Vec<u8>)>;

/// Each connection's payloads in capture order.
fn turns(pcap: &Bytes) -> Vec<Turns> {
    let capture = Capture::from_reader(std::io::Cursor::new(pcap.clone())).expect("capture");
    let mut flows: Vec<((u16, u16), Turns)> = Vec::new();
    for packet in capture.flatten() {
        let Some(seg) = tcp_segment(&packet) else {
            continue;
        };
        if seg.payload.is_empty() {
            continue;
        }
        let (dir, key) = if seg.dst.port() == 27017 {
            (Direction::ClientToServer, (seg.src.port(), seg.dst.port()))
        } else {
            (Direction::ServerToClient, (seg.dst.port(), seg.src.port()))
        };
        match flows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, t)) => t.push((dir, seg.payload.to_vec())),
            None => flows.push((key, vec![(dir, seg.payload.to_vec())])),
        }
    }
    flows.into_iter().map(|(_, t)| t).collect()
}

/// Every OP_MSG kind-0 body (uncompressed) in the captures.
fn bodies(connections: &[Turns]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for turns in connections {
        for (_, bytes) in turns {
            let mut at = 0;
            while let Some(h) = bytes
                .get(at..)
                .and_then(|b| l7decode::mongo::wire::parse_header(b).complete())
                .map(|(h, _)| h)
            {
                let end = at + h.len as usize;
                if h.opcode == 2013
                    && let Some(body) = bytes.get(at + 21..end.min(bytes.len()))
                    && bytes.get(at + 20) == Some(&0)
                    && let Some(doc) = Doc::new(body)
                {
                    out.push(body.get(..doc.len()).unwrap_or_default().to_vec());
                }
                at = end;
            }
        }
    }
    out
}

/// The comparisons, plus notes (messages/s, allocations).
pub fn run(samples: usize) -> (Vec<Comparison>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tests/data/mongo");
    let captures = [
        load(&root.join("mongo_pymongo.pcap")),
        load(&root.join("mongo_legacy.pcap")),
    ];
    let mut notes = Vec::new();
    let mut results = Vec::new();

    let (mut messages, mut wire) = (0, 0);
    for c in &captures {
        messages += decode(c).1;
        wire += c.len() as u64;
    }
    let median = median_time(samples, || {
        for c in &captures {
            black_box(decode(black_box(c)));
        }
    });
    notes.push(format!(
        "l7decode MongoDB: {messages} messages in the two shared captures ({wire} pcap bytes), end to end from pcap bytes (pcap parsing, flows, reassembly, decoding) in {:.1} µs = {:.2} M messages/s",
        median.as_secs_f64() * 1e6,
        messages as f64 / median.as_secs_f64() / 1e6
    ));

    // The decoder alone, on the captures' payloads already in memory (what the target is
    // about: capture parsing and flow tracking above are the pipeline's, not the decoder's).
    let connections: Vec<_> = captures.iter().flat_map(turns).collect();
    let decode_payloads = || {
        let mut read = 0;
        for turns in &connections {
            let mut conn = Connection::new(Limits::default());
            for (i, (dir, bytes)) in turns.iter().enumerate() {
                let _ = conn.feed(*dir, Timestamp(i as u64), black_box(bytes));
                while conn.poll_event().is_some() {}
            }
            read += conn.stats().messages;
        }
        read
    };
    let in_memory = decode_payloads();
    let median = median_time(samples * 10, || {
        black_box(decode_payloads());
    });
    notes.push(format!(
        "l7decode MongoDB decoder on the same captures' payloads in memory: {in_memory} messages in {:.1} µs = {:.2} M messages/s (target >= 1 M/s per core)",
        median.as_secs_f64() * 1e6,
        in_memory as f64 / median.as_secs_f64() / 1e6
    ));

    // The command-name path: the first key read in place, against decoding the body with the
    // `bson` crate and taking its first key.
    let bodies = bodies(&connections);
    let body_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    results.push(compare(
        "l7decode: command name of OP_MSG bodies",
        "bson 2: Document::from_reader",
        body_bytes,
        samples,
        || {
            bodies
                .iter()
                .map(|b| {
                    let doc = Doc::new(black_box(b)).expect("a body");
                    doc.first().map_or(0, |e| e.key.len())
                })
                .sum::<usize>()
        },
        || {
            bodies
                .iter()
                .map(|b| {
                    let doc = bson::Document::from_reader(&mut black_box(&b[..])).expect("bson");
                    doc.keys().next().map_or(0, String::len)
                })
                .sum::<usize>()
        },
    ));

    // Allocations per message on the uncompressed path: every uncompressed connection fed as
    // captured, twice (the first pass sizes the reused buffers and queues).
    let plain: Vec<_> = connections
        .iter()
        .filter(|t| {
            t.iter()
                .all(|(_, b)| b.get(12..16) != Some(&2012i32.to_le_bytes()[..]))
        })
        .collect();
    let mut conns: Vec<Connection> = plain
        .iter()
        .map(|_| Connection::new(Limits::default()))
        .collect();
    let feed_all = |conns: &mut Vec<Connection>| {
        let mut records = 0u64;
        for (conn, turns) in conns.iter_mut().zip(&plain) {
            for (i, (dir, bytes)) in turns.iter().enumerate() {
                let _ = conn.feed(*dir, Timestamp(i as u64), bytes);
                while let Some(e) = conn.poll_event() {
                    records += u64::from(matches!(e, Event::Mongo(_)));
                }
            }
        }
        records
    };
    let _ = feed_all(&mut conns);
    let before: u64 = conns.iter().map(|c| c.stats().messages).sum();
    let (records, allocations) = allocations_during(|| feed_all(&mut conns));
    let after: u64 = conns.iter().map(|c| c.stats().messages).sum();
    notes.push(format!(
        "allocations: {allocations} while decoding {} uncompressed MongoDB messages ({records} operations) once the connections' buffers were sized (target: 0 per message)",
        after - before
    ));
    (results, notes)
}
