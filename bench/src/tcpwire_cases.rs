//! tcpwire against Rust `procfs-core` (typed parse), against reading the file (counting path), and
//! against a memchr line count (the floor any line-oriented reader pays).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Comparison, compare};
use procfs_core::FromReadSI;
use tcpwire::{Config, Event, Limits, StateCounter, TableReader};

/// Per-state counts as `(code, rows)`, the answer both sides must agree on.
type StateTally = Vec<(u8, u64)>;

/// Chunk size used for streaming: what a reader of a large capture would pick.
const CHUNK: usize = 64 * 1024;

/// Generates (once) a kernel-exact table of `rows` rows with the project's copy of the shared
/// generator, and returns its path.
///
/// # Panics
/// When python3 is missing or the generator fails: the bench cannot run without its input.
pub fn table_file(dir: &Path, family: u8, rows: u64, seed: u64) -> PathBuf {
    let path = dir.join(format!(
        "tcp{}_{rows}_seed{seed}",
        if family == 6 { "6" } else { "" }
    ));
    if !path.exists() {
        std::fs::create_dir_all(dir).expect("create bench data dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/gen_proc_net_tcp.py");
        let status = Command::new("python3")
            .arg(script)
            .args(["--family", &family.to_string(), "--rows", &rows.to_string()])
            .args(["--seed", &seed.to_string(), "--out"])
            .arg(&path)
            .arg("--truth")
            .arg(path.with_extension("truth.json"))
            .status()
            .expect("python3 runs the generator");
        assert!(status.success(), "generator failed");
    }
    path
}

fn tally(counts: &tcpwire::TcpCounts) -> StateTally {
    counts.states().map(|(s, n)| (s.0, n)).collect()
}

/// Ours, full typed parse: every column of every row decoded.
pub fn typed_parse(data: &[u8]) -> StateTally {
    let mut reader = TableReader::new(Config::default());
    let mut counts = tcpwire::TcpCounts::default();
    for chunk in data.chunks(CHUNK) {
        reader.feed(chunk).for_each(|event| {
            if let Event::Row(row) = event {
                counts.add_row(&row);
            }
        });
    }
    if let Some(Event::Row(row)) = reader.feed_eof() {
        counts.add_row(&row);
    }
    tally(&counts)
}

/// Ours, counting path.
pub fn count(data: &[u8]) -> StateTally {
    let mut counter = StateCounter::new(Limits::default());
    for chunk in data.chunks(CHUNK) {
        counter.feed(chunk);
    }
    counter.feed_eof();
    tally(counter.counts())
}

/// The anchor: procfs-core's `TcpNetEntries::from_read`, then the same tally.
pub fn procfs_parse(data: &[u8]) -> StateTally {
    procfs_parse_reader(data)
}

fn procfs_parse_reader(reader: impl Read) -> StateTally {
    let info = procfs_core::ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: true,
    };
    let entries = procfs_core::net::TcpNetEntries::from_read(reader, &info).expect("procfs parses");
    let mut by_code = [0u64; 256];
    for e in &entries.0 {
        by_code[usize::from(e.state.to_u8())] += 1;
    }
    (0..=255u8)
        .map(|c| (c, by_code[usize::from(c)]))
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// Streams a file through the counter with one reused buffer; returns bytes and the tally.
pub fn count_file(path: &Path) -> (u64, StateTally) {
    let mut file = std::fs::File::open(path).expect("open table");
    let mut buf = vec![0u8; CHUNK];
    let mut counter = StateCounter::new(Limits::default());
    loop {
        let n = file.read(&mut buf).expect("read table");
        if n == 0 {
            break;
        }
        counter.feed(&buf[..n]);
    }
    counter.feed_eof();
    (counter.stats().bytes, tally(counter.counts()))
}

/// The I/O floor: the same reads into the same reused buffer, nothing else.
pub fn read_file(path: &Path) -> u64 {
    let mut file = std::fs::File::open(path).expect("open table");
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).expect("read table");
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

/// Streams a file through the full typed reader with one reused buffer; returns the tally.
pub fn typed_file(path: &Path) -> StateTally {
    let mut file = std::fs::File::open(path).expect("open table");
    let mut buf = vec![0u8; CHUNK];
    let mut reader = TableReader::new(Config::default());
    let mut counts = tcpwire::TcpCounts::default();
    loop {
        let n = file.read(&mut buf).expect("read table");
        if n == 0 {
            break;
        }
        reader.feed(&buf[..n]).for_each(|event| {
            if let Event::Row(row) = event {
                counts.add_row(&row);
            }
        });
    }
    if let Some(Event::Row(row)) = reader.feed_eof() {
        counts.add_row(&row);
    }
    tally(&counts)
}

/// The anchor reading the file itself, as `TcpNetEntries::from_read(File)` does.
pub fn procfs_file(path: &Path) -> StateTally {
    procfs_parse_reader(std::fs::File::open(path).expect("open table"))
}

/// This host's live tables: the `/proc` files through the counting path, and a sock_diag dump.
/// Socket churn between the two reads makes their counts differ slightly, so only the time is
/// compared (both sides return `()`).
pub fn run_live(samples: usize) -> Vec<Comparison> {
    let proc_bytes: u64 = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|d| d.len() as u64)
        .sum();
    if examples::tcpsource::collect_netlink().is_err() {
        eprintln!("compare: sock_diag unavailable here, live case skipped");
        return Vec::new();
    }
    vec![compare(
        "live host: /proc/net/tcp{,6} read + count",
        "live host: sock_diag dump + count",
        proc_bytes,
        samples,
        || {
            examples::tcpsource::collect_proc(Path::new("/proc")).expect("read /proc");
        },
        || {
            examples::tcpsource::collect_netlink().expect("sock_diag");
        },
    )]
}

/// Every tcpwire comparison on a table of `rows` rows.
pub fn run(dir: &Path, rows: u64, samples: usize) -> Vec<Comparison> {
    let mut out = Vec::new();
    for family in [4u8, 6] {
        let rows = if family == 6 { rows / 10 } else { rows };
        let path = table_file(dir, family, rows, 1);
        let data = std::fs::read(&path).expect("read table");
        let bytes = data.len() as u64;
        let name = |what: &str| {
            format!(
                "tcp{} {rows} rows: {what}",
                if family == 6 { "6" } else { "" }
            )
        };
        out.push(compare(
            &name("typed parse"),
            "procfs-core 0.18 from_read",
            bytes,
            samples,
            || typed_parse(&data),
            || procfs_parse(&data),
        ));
        out.push(compare(
            &name("count (in memory)"),
            "procfs-core 0.18 from_read",
            bytes,
            samples,
            || count(&data),
            || procfs_parse(&data),
        ));
        out.push(compare(
            &name("count lines (in memory)"),
            "memchr newline count",
            bytes,
            samples,
            || {
                let mut c = StateCounter::new(Limits::default());
                data.chunks(CHUNK).for_each(|chunk| c.feed(chunk));
                c.feed_eof();
                c.stats().lines
            },
            || memchr::memchr_iter(b'\n', &data).count() as u64,
        ));
        out.push(compare(
            &name("read + count (file)"),
            "read into reused buffer",
            bytes,
            samples,
            || count_file(&path).0,
            || read_file(&path),
        ));
    }
    out
}
