//! Helpers the capture-driven tests share: a capture as classic pcap records, and the pipeline
//! run on a derived (cut, thinned, snapped) copy of it.

#![allow(clippy::unwrap_used, dead_code)] // a panic is how a test reports failure

pub mod netns;
pub mod slowloris;

/// A child's stderr, line by line on a channel, read by a thread of its own so the child never
/// blocks on a full pipe; each line is also echoed to the test's stderr after `echo` when given.
pub fn stderr_lines(
    child: &mut std::process::Child,
    echo: Option<&'static str>,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    std::thread::spawn(move || {
        for line in lines {
            let Ok(line) = line else { return };
            if let Some(prefix) = echo {
                eprintln!("{prefix} {line}");
            }
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

use std::io::Read;
use std::path::{Path, PathBuf};

use examples::capture::open;
use examples::meshsniff::{Record, Totals, analyze, seconds};
use l7decode::Timestamp;

/// One classic pcap record: its 16-byte header and its data.
pub type PcapRecord = (Vec<u8>, Vec<u8>);

/// A file under `examples/`.
pub fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A little-endian classic pcap (gzip'd or not) as its file header and records.
pub fn pcap_records(path: &str) -> (Vec<u8>, Vec<PcapRecord>) {
    let bytes = std::fs::read(data(path)).unwrap();
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap();
        raw
    } else {
        bytes
    };
    assert_eq!(
        raw[..4],
        [0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian classic pcap"
    );
    let mut records = Vec::new();
    let mut at = 24;
    while at < raw.len() {
        let incl = u32::from_le_bytes(raw[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push((
            raw[at..at + 16].to_vec(),
            raw[at + 16..at + 16 + incl].to_vec(),
        ));
        at += 16 + incl;
    }
    (raw[..24].to_vec(), records)
}

/// Runs the pipeline on records (each record's captured length is set from its data, so
/// cutting the data is a snaplen).
pub fn analyze_records(header: &[u8], records: &[PcapRecord]) -> Vec<Record> {
    let mut bytes = header.to_vec();
    for (head, data) in records {
        let mut head = head.clone();
        head[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(data);
    }
    let capture = examples::capture::Capture::from_reader(std::io::Cursor::new(bytes)).unwrap();
    let mut out = Vec::new();
    let (_, failure) = analyze(capture, |r| out.push(r));
    assert!(failure.is_none(), "{failure:?}");
    out
}

/// The pipeline on the capture with each frame that carries TCP payload lost in turn: `check`
/// gets the lost frame's number (1-based), its (source, destination) ports, and the records.
pub fn each_data_frame_lost(
    header: &[u8],
    records: &[PcapRecord],
    mut check: impl FnMut(u64, (u16, u16), Vec<Record>),
) {
    for drop in 0..records.len() {
        let (ends, payload) = ports_and_payload(&records[drop].1);
        if payload == 0 {
            continue;
        }
        let mut kept = records.to_vec();
        kept.remove(drop);
        check(drop as u64 + 1, ends, analyze_records(header, &kept));
    }
}

/// Epoch seconds to whole microseconds.
pub fn micros(seconds: f64) -> i64 {
    (seconds * 1e6).round() as i64
}

/// A timestamp in whole microseconds.
pub fn micros_of(t: Timestamp) -> i64 {
    micros(seconds(t))
}

/// The TCP ports and payload length of a captured Ethernet + IPv4 frame.
pub fn ports_and_payload(frame: &[u8]) -> ((u16, u16), usize) {
    let tcp = 14 + usize::from(frame[14] & 0x0f) * 4;
    let payload = frame.len() - tcp - usize::from(frame[tcp + 12] >> 4) * 4;
    (
        (
            u16::from_be_bytes([frame[tcp], frame[tcp + 1]]),
            u16::from_be_bytes([frame[tcp + 2], frame[tcp + 3]]),
        ),
        payload,
    )
}

/// A truth file under `examples/tests/data`.
pub fn truth(path: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data(path)).unwrap()).unwrap()
}

/// The pipeline on a bundled capture.
pub fn decode(path: &str) -> (Totals, Vec<Record>) {
    let capture = open(&data(path)).unwrap();
    let mut out = Vec::new();
    let (totals, failure) = analyze(capture, |r| out.push(r));
    assert!(failure.is_none(), "{failure:?}");
    (totals, out)
}

/// A truth file's transactions, in order of their request's last byte.
pub fn truth_by_request(path: &str) -> Vec<serde_json::Value> {
    let mut expected = truth(path)["transactions"].as_array().unwrap().clone();
    expected.sort_by(|a, b| {
        a["req_time"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["req_time"].as_f64().unwrap())
    });
    expected
}
