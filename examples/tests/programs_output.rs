//! What `meshsniff` (file mode) and `tcpstat` do with their output and exit status (issue 17):
//! a write error on stdout is a message and a non-zero exit; a closed pipe ends the program at
//! once and quietly (even in the middle of a capture that never ends); an input that could not
//! be read makes the exit non-zero after the rest is processed; packets of a link type with no
//! decoder are reported once per link type; every option is in `--help`.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("programs-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mesh_demo.pcap.gz")
}

fn tcpstat_root(test: &str) -> PathBuf {
    let root = scratch(test);
    std::fs::create_dir_all(root.join("net")).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tcpwire/tests/data");
    for name in ["tcp", "tcp6"] {
        std::fs::copy(
            data.join(format!("real_{name}")),
            root.join("net").join(name),
        )
        .unwrap();
    }
    root
}

/// Waits for `child` up to `limit`; kills it (and fails the test) past that.
fn wait_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pipe whose reading end is already closed: writing to it fails with `EPIPE`.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

// --- captures built here ---

fn pcap_header(link: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65_535u32.to_le_bytes());
    out.extend(link.to_le_bytes());
    out
}

fn pcap_record(out: &mut Vec<u8>, ts_us: u64, data: &[u8]) {
    out.extend(((ts_us / 1_000_000) as u32).to_le_bytes());
    out.extend(((ts_us % 1_000_000) as u32).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
}

/// Connection `i` of an endless series: handshake, `GET /items/i`, `200 OK`, both FINs; as
/// Ethernet frames in a classic pcap, one millisecond per packet.
fn http_connection(out: &mut Vec<u8>, i: u64) {
    let client = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let server = [10, 255, 0, 1];
    let (cport, sport) = (40_000 + (i % 20_000) as u16, 80);
    let request = format!("GET /items/{i} HTTP/1.1\r\nHost: shop\r\n\r\n");
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (c0, s0) = (1_000u32, 5_000u32);
    let (c1, s1) = (
        c0 + 1 + request.len() as u32,
        s0 + 1 + response.len() as u32,
    );
    let frame = |to_server: bool, seq: u32, ack: Option<u32>, flags: &str, payload: &[u8]| {
        let (src, dst, sp, dp) = if to_server {
            (client, server, cport, sport)
        } else {
            (server, client, sport, cport)
        };
        let mut builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 65_535);
        if flags.contains('S') {
            builder = builder.syn();
        }
        if flags.contains('F') {
            builder = builder.fin();
        }
        if flags.contains('P') {
            builder = builder.psh();
        }
        if let Some(ack) = ack {
            builder = builder.ack(ack);
        }
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        frame
    };
    let packets = [
        frame(true, c0, None, "S", b""),
        frame(false, s0, Some(c0 + 1), "S", b""),
        frame(true, c0 + 1, Some(s0 + 1), "", b""),
        frame(true, c0 + 1, Some(s0 + 1), "P", request.as_bytes()),
        frame(false, s0 + 1, Some(c1), "P", response),
        frame(true, c1, Some(s1), "F", b""),
        frame(false, s1, Some(c1 + 1), "F", b""),
        frame(true, c1 + 1, Some(s1 + 1), "", b""),
    ];
    for (k, p) in packets.iter().enumerate() {
        pcap_record(out, 1_700_000_000_000_000 + i * 1_000 + k as u64, p);
    }
}

/// A named pipe fed, on a thread, with a capture of HTTP connections that never ends (until
/// its reader goes away, or a minute has passed). Returns the path and a flag the thread sets
/// when it stops writing.
fn endless_capture(test: &str) -> (PathBuf, Arc<AtomicBool>) {
    let path = scratch(test).join("endless.pcap");
    let made = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success());
    let stopped = Arc::new(AtomicBool::new(false));
    let (fifo, done) = (path.clone(), Arc::clone(&stopped));
    std::thread::spawn(move || {
        let started = Instant::now();
        // Opening blocks until the program opens the other end.
        let mut out = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
        let mut chunk = pcap_header(1);
        let mut i = 0;
        while started.elapsed() < Duration::from_secs(60) {
            for _ in 0..100 {
                http_connection(&mut chunk, i);
                i += 1;
            }
            if out.write_all(&chunk).is_err() {
                break;
            }
            chunk.clear();
        }
        done.store(true, Ordering::SeqCst);
    });
    (path, stopped)
}

/// `option` has a line in `help` with a description after it (on that line, or on the next, as
/// clap's long help lays it out).
fn assert_described(help: &str, option: &str) {
    let lines: Vec<&str> = help.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(option) || l.contains(&format!(", {option}")))
        .unwrap_or_else(|| panic!("{option} missing: {help}"));
    let own = lines[at]
        .split_whitespace()
        .filter(|w| !w.starts_with('-') && !w.starts_with('<'))
        .count();
    let next = lines.get(at + 1).map_or(0, |l| {
        if l.trim_start().starts_with('-') {
            0
        } else {
            l.split_whitespace().count()
        }
    });
    assert!(own + next > 1, "{option} undescribed: {help}");
}

// --- meshsniff, file mode ---

fn meshsniff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsniff"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn meshsniff_stops_at_once_when_its_reader_goes_away() {
    // `meshsniff --json endless | head -1`: the first line, then the pipe closes.
    let (fifo, writer_stopped) = endless_capture("meshsniff-head");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
        .arg("--json")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(record["uri"], "/items/0", "{first}");
    // The reader is gone: the capture has no end, so only stopping ends the program.
    let status = wait_within(&mut child, Duration::from_secs(20), "meshsniff | head -1");
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "{status} {stderr}");
    assert!(stderr.is_empty(), "a closed pipe ends quietly: {stderr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !writer_stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        writer_stopped.load(Ordering::SeqCst),
        "the capture was left unread"
    );
}

#[test]
fn meshsniff_stops_at_once_when_its_output_fails() {
    // `meshsniff --json endless >/dev/full`: a message and a non-zero exit, without reading on.
    let (fifo, _) = endless_capture("meshsniff-full");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
        .arg("--json")
        .arg(&fifo)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_within(&mut child, Duration::from_secs(20), "meshsniff >/dev/full");
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("meshsniff: writing the output: No space left on device"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn meshsniff_output_errors_on_a_whole_capture() {
    for args in [&["--json"][..], &[][..]] {
        let full = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
            .args(args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&full.stderr);
        assert_eq!(full.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("writing the output: No space left on device"),
            "{args:?}: {stderr}"
        );
        let closed = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
            .args(args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        assert!(closed.status.success(), "{args:?}: {closed:?}");
        assert!(closed.stderr.is_empty(), "{args:?}: {closed:?}");
    }
}

#[test]
fn meshsniff_missing_and_good_capture_exits_non_zero_with_a_summary() {
    let dir = scratch("meshsniff-missing");
    let missing = dir.join("missing.pcap");
    let bundled = bundled();
    for json in [false, true] {
        let mut args = vec![missing.to_str().unwrap(), bundled.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = meshsniff(&args);
        let (stdout, stderr) = (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        );
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        // The good capture was processed all the same.
        if json {
            assert_eq!(stdout.lines().count(), 63, "{stdout}");
        } else {
            assert!(stdout.contains("63 transactions"), "{stdout}");
            assert!(
                stdout.contains("1 of 2 captures could not be read"),
                "{stdout}"
            );
        }
        assert!(stderr.contains("missing.pcap"), "{stderr}");
        assert!(
            stderr.contains("meshsniff: 1 of 2 captures could not be read"),
            "{stderr}"
        );
    }
    // A capture cut short was not read to its end either.
    let whole = std::fs::read(&bundled).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&whole[..]), &mut raw).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &raw[..raw.len() - 7]).unwrap();
    let out = meshsniff(&[cut.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("truncated capture"), "{stderr}");
    assert!(
        stderr.contains("1 of 1 captures could not be read to the end"),
        "{stderr}"
    );
    // All well: no summary line, exit 0.
    let out = meshsniff(&[bundled.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn meshsniff_warns_once_per_link_type_without_a_decoder() {
    let dir = scratch("meshsniff-link");
    // Eight IEEE 802.11 packets: nothing here decodes them.
    let mut wifi = pcap_header(105);
    for i in 0..8 {
        pcap_record(&mut wifi, i, &[0x08, 0x00, 0, 0, 1, 2, 3, 4]);
    }
    let path = dir.join("wifi.pcap");
    std::fs::write(&path, &wifi).unwrap();
    let out = meshsniff(&[path.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{stderr}");
    let warning = format!(
        "meshsniff: {}: 8 packets of link type 105 skipped: no decoder for it",
        path.display()
    );
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [warning.as_str()],
        "{stderr}"
    );
    assert!(stdout.contains("0 packets"), "{stdout}");

    // Decoded packets among them, in one file: one line per link type, with its count.
    let mut mixed = pcap_header(1);
    http_connection(&mut mixed, 7);
    let mixed_path = dir.join("mixed.pcap");
    std::fs::write(&mixed_path, &mixed).unwrap();
    let out = meshsniff(&[
        "--json",
        path.to_str().unwrap(),
        mixed_path.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    assert_eq!(stderr.matches("link type 105").count(), 2, "{stderr}");
}

#[test]
fn meshsniff_help_describes_every_option() {
    let out = meshsniff(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--json",
        "--top",
        "--max-series",
        "--interface",
        "--port",
        "--host",
        "--listen",
        "--duration",
        "--ring-mb",
        "--version",
    ] {
        assert_described(&help, option);
    }
    let version = meshsniff(&["--version"]);
    assert!(version.status.success());
    assert!(
        String::from_utf8(version.stdout)
            .unwrap()
            .starts_with("meshsniff ")
    );
    let bad = meshsniff(&["--top", "many"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(
        stderr.contains("--top") && stderr.contains("many"),
        "{stderr}"
    );
    // Help that cannot be written is an error too.
    let full = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
        .arg("--help")
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1), "{full:?}");
    assert!(!String::from_utf8_lossy(&full.stderr).contains("panicked"));
}

// --- tcpstat ---

fn tcpstat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpstat"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn tcpstat_output_errors() {
    let root = tcpstat_root("tcpstat-output");
    for format in ["prom", "json"] {
        let args = ["--proc-root", root.to_str().unwrap(), "--format", format];
        let full = Command::new(env!("CARGO_BIN_EXE_tcpstat"))
            .args(args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&full.stderr);
        assert_eq!(full.status.code(), Some(1), "{format}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            "tcpstat: writing the output: No space left on device (os error 28)",
            "{format}"
        );
        let closed = Command::new(env!("CARGO_BIN_EXE_tcpstat"))
            .args(args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        assert!(closed.status.success(), "{format}: {closed:?}");
        assert!(closed.stderr.is_empty(), "{format}: {closed:?}");
    }
}

#[test]
fn tcpstat_help_version_and_bad_flags() {
    let out = tcpstat(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--proc-root",
        "--source",
        "--format",
        "--byte-order",
        "--listen",
        "--version",
    ] {
        assert_described(&help, option);
    }
    for value in ["netlink", "json", "big"] {
        assert!(help.contains(value), "{value}: {help}");
    }
    let version = tcpstat(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert!(
        String::from_utf8(version.stdout)
            .unwrap()
            .starts_with("tcpstat ")
    );

    for (args, named) in [
        (&["--bogus"][..], &["--bogus"][..]),
        (&["--format", "xml"], &["--format", "xml"]),
        (&["--source", "kernel"], &["--source", "kernel"]),
        (&["--byte-order", "middle"], &["--byte-order", "middle"]),
        (&["--listen"], &["--listen"]),
    ] {
        let out = tcpstat(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        for name in named {
            assert!(stderr.contains(name), "{args:?}: {stderr}");
        }
    }
    let full = Command::new(env!("CARGO_BIN_EXE_tcpstat"))
        .arg("--help")
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1), "{full:?}");
    assert!(!String::from_utf8_lossy(&full.stderr).contains("panicked"));
}
