//! MySQL: the shared captures and one with large resultsets decoded end to end (pcap bytes in
//! memory → packets → TCP reassembly → MySQL records), side by side with tshark dissecting the
//! same files when it is installed; and the heap one connection holds while a 2,000-row and a
//! 17 MB-row resultset stream through it.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use examples::capture::Capture;
use examples::meshsniff::analyze;

use crate::alloc_count::{live_bytes, peak_bytes, reset_peak};
use crate::harness::{Comparison, compare, median_time, tshark_count};
use examples::capture::tcp_segment;
use l7decode::{Connection, Direction, Event, Limits, Timestamp};

struct Input {
    name: &'static str,
    path: PathBuf,
    /// The pcap file's bytes (shared, so a reader over them costs no copy).
    bytes: Bytes,
}

fn load(name: &'static str, path: PathBuf) -> Input {
    let raw = std::fs::read(&path).expect("bundled capture");
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("gzip");
        out
    } else {
        raw
    };
    Input {
        name,
        path,
        bytes: Bytes::from(bytes),
    }
}

/// Commands decoded (the login aside) and MySQL messages read.
fn decode(pcap: &Bytes) -> (u64, u64) {
    let capture = Capture::from_reader(std::io::Cursor::new(pcap.clone())).expect("a capture");
    let mut commands = 0;
    let (totals, failure) = analyze(capture, |r| {
        commands += u64::from(r.mysql().is_some_and(|c| c.code.is_some()));
    });
    assert!(failure.is_none());
    (commands, totals.messages)
}

/// Peak heap held by a `Connection` (above what the thread held before it existed) while the
/// 2,000-row and the 17 MB-row resultsets of `pcap` are decoded.
fn resultset_peaks(pcap: &Bytes) -> Vec<(&'static str, i64)> {
    let capture = Capture::from_reader(std::io::Cursor::new(pcap.clone())).expect("capture");
    let mut turns = Vec::new();
    for packet in capture.flatten() {
        let Some(seg) = tcp_segment(&packet) else {
            continue;
        };
        if seg.payload.is_empty() {
            continue;
        }
        let dir = if seg.src.port() == 3306 {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        turns.push((dir, Timestamp(packet.ts_ns), seg.payload.to_vec()));
    }
    let base = live_bytes();
    let mut conn = Connection::new(Limits::default());
    let (mut two_thousand, mut big_row) = (0i64, 0i64);
    let mut command = None::<(u64, u64)>;
    for (dir, now, bytes) in &turns {
        reset_peak();
        let _ = conn.feed(*dir, *now, bytes);
        let mut finished = None;
        while let Some(event) = conn.poll_event() {
            if let Event::Mysql(c) = event {
                finished = Some((c.rows, c.response.map_or(0, |s| s.bytes)));
            }
        }
        let peak = peak_bytes() - base;
        // Attribute the peak to the reply being read (known once it finishes).
        command = Some(command.map_or((0, peak as u64), |(n, p)| (n, p.max(peak as u64))));
        if let Some((rows, reply)) = finished {
            let held = command.take().map_or(0, |(_, p)| p as i64);
            if rows == 2000 {
                two_thousand = held;
            } else if rows == 1 && reply > 17_000_000 {
                big_row = held;
            }
        }
    }
    drop(conn);
    vec![
        ("the 2,000-row resultset", two_thousand),
        ("the 17,825,792-byte row", big_row),
    ]
}

/// The comparisons, plus notes (messages/s, memory).
pub fn run(samples: usize) -> (Vec<Comparison>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("examples/tests/data/mysql");
    let inputs = [
        load("mysql_cli", shared.join("mysql_cli.pcap")),
        load("mysql_stmt", shared.join("mysql_stmt.pcap")),
        load(
            "mysql_deprecate_eof",
            shared.join("mysql_deprecate_eof.pcap"),
        ),
        load("mysql_compressed", shared.join("mysql_compressed.pcap")),
        load(
            "mysql_large",
            root.join("bench/captures/mysql_large.pcap.gz"),
        ),
    ];
    let mut notes = Vec::new();
    let mut results = Vec::new();

    // Messages per second over the shared captures (the large one apart: one 17 MB row is
    // bytes, not messages).
    let small = &inputs[..4];
    let (mut messages, mut wire) = (0, 0);
    for i in small {
        messages += decode(&i.bytes).1;
        wire += i.bytes.len() as u64;
    }
    let median = median_time(samples, || {
        for i in small {
            std::hint::black_box(decode(std::hint::black_box(&i.bytes)));
        }
    });
    notes.push(format!(
        "l7decode MySQL: {messages} messages in the four shared captures ({wire} pcap bytes), decoded end to end from pcap bytes in {:.1} µs = {:.2} M messages/s (target >= 1 M/s per core)",
        median.as_secs_f64() * 1e6,
        messages as f64 / median.as_secs_f64() / 1e6
    ));

    // tshark side by side, when installed (its own start-up included, as a user runs it).
    for name in ["mysql_stmt", "mysql_large"] {
        let Some(input) = inputs.iter().find(|i| i.name == name) else {
            continue;
        };
        let path = if input.path.extension().is_some_and(|e| e == "gz") {
            let plain = std::env::temp_dir().join(format!("{name}.pcap"));
            std::fs::write(&plain, &input.bytes).expect("temp file");
            plain
        } else {
            input.path.clone()
        };
        if tshark_count(&path, "mysql.command").is_none() {
            notes.push(format!(
                "tshark not installed: no side-by-side run on {name} (the spec measured tshark 4.0 at 6.5-14.3 MB/s on mysql_big)"
            ));
            continue;
        }
        let runs = if name == "mysql_large" {
            3
        } else {
            samples.min(7)
        };
        results.push(compare(
            &format!("l7decode: {name} end to end (commands)"),
            "tshark 4.0 -Y mysql.command",
            input.bytes.len() as u64,
            runs,
            || decode(std::hint::black_box(&input.bytes)).0,
            || tshark_count(&path, "mysql.command").unwrap_or(0),
        ));
    }

    // Memory: the heap one connection's decoder holds while each resultset of the large capture
    // streams through it (its streams fed as captured, segment by segment).
    let large = &inputs[4];
    for (what, peak) in resultset_peaks(&large.bytes) {
        notes.push(format!(
            "memory: one connection's decoder peaked at {peak} bytes of heap during {what} (struct {} B inline; at most {} B kept of any payload, the rest only counted)",
            std::mem::size_of::<Connection>(),
            2048
        ));
    }
    (results, notes)
}
