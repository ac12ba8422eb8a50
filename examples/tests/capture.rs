//! `examples::capture` against a real capture (the l7 fixture `http_curl.pcap`, stored gzip'd)
//! and against files derived from it: plain and re-gzip'd copies, byte-at-a-time readers,
//! big-endian and nanosecond pcap, pcapng with several interfaces and link types, truncated,
//! empty and non-capture inputs, and hand-edited packets (VLAN, fragments, snaplen cuts).

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use examples::capture::{self, Capture, CaptureError, Format, LinkType, Packet, tcp_segment};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

// Expected numbers for `http_curl.pcap` (sha256 7046307b…714e). tcpdump and tshark are not
// installed here, so they were computed once with a ~60-line Python pcap reader (struct.unpack
// of the record headers, Ethernet/IPv4/TCP headers, payload = IP total length - headers).
// The packet count also matches the fixture README's table (604).
const PACKETS: usize = 604;
const FLOWS: usize = 14;
const FLOWS_TO_8080: usize = 11;
const FLOWS_TO_8081: usize = 3;
/// TCP payload bytes sent to the server port (8080/8081), retransmissions included.
const BYTES_TO_SERVER: u64 = 409_453;
/// TCP payload bytes sent from the server port.
const BYTES_FROM_SERVER: u64 = 85_159;
const SYN_SEGMENTS: usize = 28;
const FIN_SEGMENTS: usize = 26;
const FIRST_TS_NS: u64 = 1_795_300_987_828_010_000;
const LAST_TS_NS: u64 = 1_795_300_988_640_450_000;

fn fixture_gz() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/http_curl.pcap.gz")
}

/// The fixture's pcap bytes (the stored copy is gzip'd to keep the repository small).
fn fixture_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(std::fs::File::open(fixture_gz()).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capture-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_all(capture: Capture) -> Vec<Packet> {
    capture.map(Result::unwrap).collect()
}

fn from_bytes(data: Vec<u8>) -> Result<Capture, CaptureError> {
    Capture::from_reader(std::io::Cursor::new(data))
}

/// Byte offsets of every record in a little-endian classic pcap.
fn record_offsets(pcap: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut off = 24;
    while off < pcap.len() {
        offsets.push(off);
        let caplen = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap());
        off += 16 + caplen as usize;
    }
    assert_eq!(off, pcap.len());
    offsets
}

/// A reader that hands out at most one byte per `read`.
struct Trickle<R>(R);

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

/// A connection's two endpoints in canonical order (`lo <= hi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    lo: SocketAddr,
    hi: SocketAddr,
}

/// The segment's flow, and whether it travels from `lo` to `hi`.
fn flow_key(seg: &l7decode::flows::Segment<'_>) -> (FlowKey, bool) {
    let forward = seg.src <= seg.dst;
    let (lo, hi) = if forward {
        (seg.src, seg.dst)
    } else {
        (seg.dst, seg.src)
    };
    (FlowKey { lo, hi }, forward)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    packets: usize,
    flows: BTreeMap<FlowKey, [u64; 2]>,
    to_server: u64,
    from_server: u64,
    syn: usize,
    fin: usize,
    first_ts: u64,
    last_ts: u64,
}

fn summarize(packets: &[Packet]) -> Summary {
    let mut s = Summary {
        packets: packets.len(),
        first_ts: packets.first().map_or(0, |p| p.ts_ns),
        last_ts: packets.last().map_or(0, |p| p.ts_ns),
        ..Summary::default()
    };
    for p in packets {
        assert_eq!(p.link, LinkType::Ethernet);
        assert!(!p.is_truncated());
        let seg = tcp_segment(p).unwrap_or_else(|| panic!("not TCP: {p:?}"));
        assert_eq!(seg.missing, 0);
        let server_ports = [8080, 8081];
        let to_server = server_ports.contains(&seg.dst.port());
        assert!(
            to_server || server_ports.contains(&seg.src.port()),
            "segment not on 8080/8081: {seg:?}"
        );
        let len = seg.payload.len() as u64;
        if to_server {
            s.to_server += len;
        } else {
            s.from_server += len;
        }
        s.syn += usize::from(seg.flags.syn());
        s.fin += usize::from(seg.flags.fin());
        assert!(!seg.flags.rst());
        let (key, forward) = flow_key(&seg);
        assert!(key.lo <= key.hi);
        s.flows.entry(key).or_default()[usize::from(!forward)] += len;
    }
    s
}

#[test]
fn fixture_packets_flows_and_bytes() {
    let capture = capture::open(&fixture_gz()).unwrap();
    assert!(capture.is_gzip());
    assert_eq!(
        capture.format(),
        Format::Pcap {
            nanosecond: false,
            big_endian: false
        }
    );
    let mut capture = capture;
    let packets: Vec<Packet> = capture.by_ref().map(Result::unwrap).collect();
    let stats = capture.stats();
    assert_eq!(stats.packets, PACKETS as u64);
    assert_eq!(stats.skipped_link_type, 0);
    assert_eq!(stats.skipped_blocks, 0);
    assert_eq!(stats.truncated_packets, 0);
    // The iterator stays finished.
    assert!(capture.next().is_none());

    let s = summarize(&packets);
    assert_eq!(s.packets, PACKETS);
    assert_eq!(s.flows.len(), FLOWS);
    let to_port = |port| {
        s.flows
            .keys()
            .filter(move |k| k.lo.port().min(k.hi.port()) == port)
    };
    assert_eq!(to_port(8080).count(), FLOWS_TO_8080);
    assert_eq!(to_port(8081).count(), FLOWS_TO_8081);
    assert_eq!(s.to_server, BYTES_TO_SERVER);
    assert_eq!(s.from_server, BYTES_FROM_SERVER);
    assert_eq!(s.syn, SYN_SEGMENTS);
    assert_eq!(s.fin, FIN_SEGMENTS);
    assert_eq!(s.first_ts, FIRST_TS_NS);
    assert_eq!(s.last_ts, LAST_TS_NS);
    // Per-flow forward/backward totals add up to the per-direction totals.
    let total: u64 = s.flows.values().flatten().sum();
    assert_eq!(total, BYTES_TO_SERVER + BYTES_FROM_SERVER);
    for key in s.flows.keys() {
        assert_eq!(key.lo.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // Timestamps never go backwards in this capture.
    assert!(packets.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
}

#[test]
fn plain_and_regzipped_copies_give_identical_results() {
    let dir = scratch("copies");
    let plain = dir.join("http_curl.pcap");
    let bytes = fixture_bytes();
    std::fs::write(&plain, &bytes).unwrap();
    let regz = dir.join("http_curl.pcap.gz");
    std::fs::write(&regz, gzip(&bytes)).unwrap();
    // Two gzip members back to back decode as the concatenation: the capture split in two.
    let split = record_offsets(&bytes)[300];
    let mut multi = gzip(&bytes[..split]);
    multi.extend(gzip(&bytes[split..]));
    let multi_path = dir.join("multi.pcap.gz");
    std::fs::write(&multi_path, multi).unwrap();

    let reference = read_all(capture::open(&fixture_gz()).unwrap());
    let plain_capture = capture::open(&plain).unwrap();
    assert!(!plain_capture.is_gzip());
    let from_plain = read_all(plain_capture);
    let regz_capture = capture::open(&regz).unwrap();
    assert!(regz_capture.is_gzip());
    let from_regz = read_all(regz_capture);
    let from_multi = read_all(capture::open(&multi_path).unwrap());
    assert_eq!(from_plain.len(), PACKETS);
    assert!(from_plain == reference);
    assert!(from_regz == reference);
    assert!(from_multi == reference);
    assert_eq!(summarize(&from_regz), summarize(&from_plain));

    // Readers that return one byte per call change nothing.
    let trickled = read_all(Capture::from_reader(Trickle(std::io::Cursor::new(bytes))).unwrap());
    assert!(trickled == reference);
    let gz = std::fs::read(fixture_gz()).unwrap();
    let trickled_gz = read_all(Capture::from_reader(Trickle(std::io::Cursor::new(gz))).unwrap());
    assert!(trickled_gz == reference);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_capture_empty_and_missing_inputs_are_clear_errors() {
    let err = from_bytes(b"GET / HTTP/1.1\r\n\r\n".to_vec()).unwrap_err();
    assert!(matches!(&err, CaptureError::NotCapture { magic, gzip: false } if magic == b"GET "));
    let msg = err.to_string();
    assert!(msg.starts_with("not a capture file"), "{msg}");
    assert!(msg.contains("47 45 54 20"), "{msg}");

    // A gzip'd text file is still not a capture.
    let err = from_bytes(gzip(b"hello, world")).unwrap_err();
    assert!(
        matches!(err, CaptureError::NotCapture { gzip: true, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("after gzip decompression"));

    // Shorter than a magic.
    let err = from_bytes(vec![0xd4, 0xc3]).unwrap_err();
    assert!(matches!(err, CaptureError::NotCapture { .. }), "{err}");

    let dir = scratch("empty");
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let err = capture::open(&empty).unwrap_err();
    assert!(matches!(err, CaptureError::Empty { gzip: false }), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    let err = from_bytes(gzip(b"")).unwrap_err();
    assert!(matches!(err, CaptureError::Empty { gzip: true }), "{err}");

    let err = capture::open(&dir.join("missing.pcap")).unwrap_err();
    assert!(matches!(err, CaptureError::Open { .. }), "{err}");
    assert!(err.to_string().contains("missing.pcap"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    // A pcap magic and half a file header.
    let bytes = fixture_bytes();
    let err = from_bytes(bytes[..10].to_vec()).unwrap_err();
    assert!(
        matches!(err, CaptureError::Truncated { offset: 0, .. }),
        "{err}"
    );
    // A pcapng magic with garbage after it.
    let err = from_bytes([0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff].to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            CaptureError::Truncated { .. } | CaptureError::Malformed { .. }
        ),
        "{err}"
    );
}

/// Reads a capture to its end: the packets before the first error, and that error.
fn until_error(capture: Capture) -> (Vec<Packet>, Option<CaptureError>) {
    let mut packets = Vec::new();
    let mut capture = capture;
    for item in capture.by_ref() {
        match item {
            Ok(p) => packets.push(p),
            Err(e) => {
                // Nothing follows an error item.
                assert!(capture.next().is_none());
                return (packets, Some(e));
            }
        }
    }
    (packets, None)
}

#[test]
fn truncated_file_yields_whole_packets_then_an_error() {
    let bytes = fixture_bytes();
    let reference = read_all(from_bytes(bytes.clone()).unwrap());
    let offsets = record_offsets(&bytes);
    for k in [0, 1, 250, PACKETS - 1] {
        let start = offsets[k];
        let end = offsets.get(k + 1).copied().unwrap_or(bytes.len());
        // Inside the record's data, and inside its 16-byte header.
        for cut in [start + 16 + (end - start - 16) / 2, start + 7] {
            let (packets, err) = until_error(from_bytes(bytes[..cut].to_vec()).unwrap());
            assert_eq!(packets.len(), k, "cut at {cut}");
            assert!(packets[..] == reference[..k]);
            let err = err.unwrap();
            match &err {
                CaptureError::Truncated {
                    offset, packets, ..
                } => {
                    assert_eq!(*offset, start as u64);
                    assert_eq!(*packets, k as u64);
                }
                other => panic!("expected Truncated, got {other}"),
            }
            assert!(err.to_string().starts_with("truncated capture"), "{err}");
        }
        // Cut exactly at a record boundary: a clean end.
        let (packets, err) = until_error(from_bytes(bytes[..start].to_vec()).unwrap());
        assert_eq!(packets.len(), k);
        assert!(err.is_none());
    }

    // A gzip stream cut short: whatever decompressed into whole records, then an error.
    let gz = std::fs::read(fixture_gz()).unwrap();
    let (packets, err) = until_error(from_bytes(gz[..gz.len() / 2].to_vec()).unwrap());
    assert!(!packets.is_empty() && packets.len() < PACKETS);
    assert!(packets[..] == reference[..packets.len()]);
    assert!(
        matches!(err, Some(CaptureError::Truncated { .. })),
        "{err:?}"
    );
    // Cut inside the gzip header.
    let err = from_bytes(gz[..5].to_vec()).unwrap_err();
    assert!(matches!(err, CaptureError::Truncated { .. }), "{err}");
}

/// A classic pcap holding `packets`, in the given byte order and timestamp resolution.
fn write_pcap(packets: &[Packet], link: u32, big_endian: bool, nanos: bool) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend(u16b(2));
    out.extend(u16b(4));
    out.extend(u32b(0));
    out.extend(u32b(0));
    out.extend(u32b(262_144));
    out.extend(u32b(link));
    for p in packets {
        let sec = (p.ts_ns / 1_000_000_000) as u32;
        let frac = p.ts_ns % 1_000_000_000;
        let frac = if nanos { frac } else { frac / 1_000 } as u32;
        out.extend(u32b(sec));
        out.extend(u32b(frac));
        out.extend(u32b(p.data.len() as u32));
        out.extend(u32b(p.orig_len));
        out.extend(&p.data);
    }
    out
}

#[test]
fn big_endian_and_nanosecond_pcap() {
    let reference: Vec<Packet> = read_all(capture::open(&fixture_gz()).unwrap())
        .into_iter()
        .take(40)
        .collect();
    for big_endian in [false, true] {
        for nanos in [false, true] {
            let file = write_pcap(&reference, 1, big_endian, nanos);
            let capture = from_bytes(file).unwrap();
            assert_eq!(
                capture.format(),
                Format::Pcap {
                    nanosecond: nanos,
                    big_endian
                }
            );
            assert!(read_all(capture) == reference, "be {big_endian} ns {nanos}");
        }
    }
    // Nanoseconds survive a nanosecond file.
    let mut odd = reference[0].clone();
    odd.ts_ns += 123;
    let got = read_all(from_bytes(write_pcap(&[odd.clone()], 1, true, true)).unwrap());
    assert_eq!(got[0].ts_ns, odd.ts_ns);
}

// --- pcapng ---

fn ng_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    out.extend(block_type.to_le_bytes());
    out.extend(total.to_le_bytes());
    out.extend(body);
    out.extend(std::iter::repeat_n(0u8, padded - body.len()));
    out.extend(total.to_le_bytes());
}

fn ng_shb(out: &mut Vec<u8>) {
    let mut body = Vec::new();
    body.extend(0x1a2b_3c4du32.to_le_bytes());
    body.extend(1u16.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend((-1i64).to_le_bytes());
    ng_block(out, 0x0a0d_0d0a, &body);
}

/// An interface description block; `tsresol` of `None` leaves the default (microseconds).
fn ng_idb(out: &mut Vec<u8>, link: u16, tsresol: Option<u8>) {
    let mut body = Vec::new();
    body.extend(link.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend(0u32.to_le_bytes()); // snaplen: no limit
    if let Some(r) = tsresol {
        body.extend(9u16.to_le_bytes()); // if_tsresol
        body.extend(1u16.to_le_bytes());
        body.extend([r, 0, 0, 0]);
        body.extend(0u32.to_le_bytes()); // opt_endofopt
    }
    ng_block(out, 1, &body);
}

fn ng_epb(out: &mut Vec<u8>, if_id: u32, ts: u64, data: &[u8], orig_len: u32) {
    let mut body = Vec::new();
    body.extend(if_id.to_le_bytes());
    body.extend(((ts >> 32) as u32).to_le_bytes());
    body.extend((ts as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend(orig_len.to_le_bytes());
    body.extend(data);
    body.extend(std::iter::repeat_n(
        0u8,
        data.len().div_ceil(4) * 4 - data.len(),
    ));
    ng_block(out, 6, &body);
}

/// The same IPv4 packet framed for each supported link type.
fn reframe(ethernet: &[u8], link: LinkType) -> Vec<u8> {
    let ip = &ethernet[14..];
    let mut out = Vec::new();
    match link {
        LinkType::Ethernet => out.extend(ethernet),
        LinkType::RawIp | LinkType::Ipv4 => out.extend(ip),
        LinkType::Null => {
            out.extend(2u32.to_le_bytes()); // AF_INET, little-endian host
            out.extend(ip);
        }
        LinkType::Loop => {
            out.extend(2u32.to_be_bytes());
            out.extend(ip);
        }
        LinkType::LinuxSll => {
            out.extend(0u16.to_be_bytes()); // packet type: to us
            out.extend(772u16.to_be_bytes()); // ARPHRD_LOOPBACK
            out.extend(6u16.to_be_bytes());
            out.extend([0u8; 8]);
            out.extend(0x0800u16.to_be_bytes());
            out.extend(ip);
        }
        LinkType::LinuxSll2 => {
            out.extend(0x0800u16.to_be_bytes());
            out.extend(0u16.to_be_bytes());
            out.extend(1u32.to_be_bytes()); // interface index
            out.extend(772u16.to_be_bytes());
            out.push(0);
            out.push(6);
            out.extend([0u8; 8]);
            out.extend(ip);
        }
        LinkType::Ipv6 => unreachable!("the fixture is IPv4"),
    }
    out
}

#[test]
fn pcapng_interfaces_link_types_and_skipped_blocks() {
    let reference: Vec<Packet> = read_all(capture::open(&fixture_gz()).unwrap())
        .into_iter()
        .take(60)
        .collect();
    let links = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Null,
        LinkType::Loop,
    ];
    let mut file = Vec::new();
    ng_shb(&mut file);
    // Interface i < links.len() has links[i] and nanosecond timestamps; the last interface is
    // IEEE 802.11 (105), which has no decoder here.
    for link in links {
        ng_idb(&mut file, link.code() as u16, Some(9));
    }
    ng_idb(&mut file, 105, None);
    // A block type nobody knows, and an interface statistics block: both skipped.
    ng_block(&mut file, 0x0bad_cafe, &[1, 2, 3, 4, 5]);
    let mut isb = Vec::new();
    isb.extend(0u32.to_le_bytes());
    isb.extend([0u8; 8]);
    ng_block(&mut file, 5, &isb);
    for (i, p) in reference.iter().enumerate() {
        let link = links[i % links.len()];
        let framed = reframe(&p.data, link);
        let orig_len = p.orig_len + framed.len() as u32 - p.data.len() as u32;
        ng_epb(
            &mut file,
            (i % links.len()) as u32,
            p.ts_ns,
            &framed,
            orig_len,
        );
        if i % 10 == 0 {
            ng_epb(&mut file, links.len() as u32, p.ts_ns, &p.data, p.orig_len);
        }
    }
    // A packet naming an interface that was never described.
    ng_epb(&mut file, 99, 0, &reference[0].data, reference[0].orig_len);

    let mut capture = from_bytes(file.clone()).unwrap();
    assert_eq!(capture.format(), Format::PcapNg);
    let got: Vec<Packet> = capture.by_ref().map(Result::unwrap).collect();
    let stats = capture.stats();
    assert_eq!(stats.packets, reference.len() as u64);
    assert_eq!(stats.skipped_link_type, 6);
    assert_eq!(stats.skipped_blocks, 3);
    assert_eq!(got.len(), reference.len());
    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
        let link = links[i % links.len()];
        assert_eq!(g.link, link);
        assert_eq!(g.ts_ns, r.ts_ns);
        assert!(!g.is_truncated());
        let (gs, rs) = (tcp_segment(g).unwrap(), tcp_segment(r).unwrap());
        assert_eq!(gs, rs, "packet {i} as {link:?}");
    }

    // Also when gzip'd and trickled one byte at a time.
    let trickled =
        read_all(Capture::from_reader(Trickle(std::io::Cursor::new(gzip(&file)))).unwrap());
    assert!(trickled == got);

    // A block whose trailing length disagrees with its leading one: Malformed, with a short
    // message, after every packet before it.
    let mut bad = file.clone();
    let last = bad.len() - 4;
    bad[last] ^= 0x40;
    let (packets, err) = until_error(from_bytes(bad).unwrap());
    assert_eq!(packets.len(), reference.len());
    let err = err.unwrap();
    assert!(matches!(err, CaptureError::Malformed { .. }), "{err}");
    assert!(err.to_string().len() < 200, "{err}");

    // Cut in the middle of the last block: everything before it, then Truncated.
    let (packets, err) = until_error(from_bytes(file[..file.len() - 20].to_vec()).unwrap());
    assert_eq!(packets.len(), reference.len());
    assert!(
        matches!(err, Some(CaptureError::Truncated { .. })),
        "{err:?}"
    );
}

#[test]
fn pcapng_timestamp_resolutions() {
    let data = read_all(capture::open(&fixture_gz()).unwrap())[0]
        .data
        .clone();
    let mut file = Vec::new();
    ng_shb(&mut file);
    ng_idb(&mut file, 1, None); // microseconds
    ng_idb(&mut file, 1, Some(9)); // nanoseconds
    ng_idb(&mut file, 1, Some(0x80 | 10)); // 2^-10 s
    ng_epb(
        &mut file,
        0,
        1_700_000_000_123_456,
        &data,
        data.len() as u32,
    );
    ng_epb(
        &mut file,
        1,
        1_700_000_000_123_456_789,
        &data,
        data.len() as u32,
    );
    ng_epb(
        &mut file,
        2,
        1_700_000_000 * 1024 + 512,
        &data,
        data.len() as u32,
    );
    // A second section forgets the first one's interfaces.
    ng_shb(&mut file);
    ng_idb(&mut file, 1, Some(3)); // milliseconds
    ng_epb(&mut file, 0, 1_700_000_000_123, &data, data.len() as u32);
    ng_epb(&mut file, 1, 0, &data, data.len() as u32); // interface 1 is gone: skipped
    let mut capture = from_bytes(file).unwrap();
    let ts: Vec<u64> = capture.by_ref().map(|p| p.unwrap().ts_ns).collect();
    assert_eq!(
        ts,
        [
            1_700_000_000_123_456_000,
            1_700_000_000_123_456_789,
            1_700_000_000_500_000_000,
            1_700_000_000_123_000_000,
        ]
    );
    assert_eq!(capture.stats().skipped_blocks, 1);
}

// --- tcp_segment on edited packets ---

fn first_with_payload() -> Packet {
    read_all(capture::open(&fixture_gz()).unwrap())
        .into_iter()
        .find(|p| tcp_segment(p).is_some_and(|s| s.payload.len() > 100))
        .unwrap()
}

#[test]
fn vlan_tags_fragments_and_snaplen_cuts() {
    let p = first_with_payload();
    let seg = tcp_segment(&p).unwrap();

    // One and two VLAN tags.
    for tags in [vec![0x8100u16], vec![0x88a8, 0x8100]] {
        let mut data = p.data[..12].to_vec();
        for tpid in &tags {
            data.extend(tpid.to_be_bytes());
            data.extend(42u16.to_be_bytes());
        }
        data.extend(&p.data[12..]);
        let tagged = Packet {
            orig_len: p.orig_len + 4 * tags.len() as u32,
            data,
            ..p.clone()
        };
        assert_eq!(tcp_segment(&tagged), Some(seg));
    }

    // Ethernet padding after the IP packet is not payload.
    let mut padded = p.clone();
    padded.data.extend([0u8; 6]);
    padded.orig_len += 6;
    assert_eq!(tcp_segment(&padded), Some(seg));

    // IPv4 fragments: more-fragments set, or a non-zero offset.
    for (byte6, byte7) in [(0x20, 0x00), (0x00, 0x10)] {
        let mut frag = p.clone();
        frag.data[14 + 6] = byte6;
        frag.data[14 + 7] = byte7;
        assert_eq!(tcp_segment(&frag), None);
    }

    // Not TCP: the same bytes labelled UDP.
    let mut udp = p.clone();
    udp.data[14 + 9] = 17;
    assert_eq!(tcp_segment(&udp), None);

    // Not IP at all (ARP ether type with garbage), and too short to be anything.
    let mut arp = p.clone();
    arp.data[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(tcp_segment(&arp), None);
    let tiny = Packet {
        data: p.data[..10].to_vec(),
        ..p.clone()
    };
    assert_eq!(tcp_segment(&tiny), None);

    // A snaplen cut inside the payload: the captured part, flagged truncated.
    let header_len = p.data.len() - seg.payload.len();
    let cut = Packet {
        data: p.data[..header_len + 10].to_vec(),
        ..p.clone()
    };
    assert!(cut.is_truncated());
    let cut_seg = tcp_segment(&cut).unwrap();
    assert_eq!(cut_seg.missing as usize, seg.payload.len() - 10);
    assert_eq!(cut_seg.payload, &seg.payload[..10]);
    assert_eq!(
        (cut_seg.seq, cut_seg.src, cut_seg.dst),
        (seg.seq, seg.src, seg.dst)
    );
    // A cut inside the TCP header leaves no segment.
    let cut = Packet {
        data: p.data[..14 + 20 + 10].to_vec(),
        ..p.clone()
    };
    assert_eq!(tcp_segment(&cut), None);
}

#[test]
fn ipv6_segments_and_flow_keys() {
    use etherparse::PacketBuilder;
    let client: [u8; 16] = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let server: [u8; 16] = "2001:db8::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let build = |src: [u8; 16], dst: [u8; 16], sport, dport, payload: &[u8]| {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(etherparse::VlanId::try_new(7).unwrap())
            .ipv6(src, dst, 64)
            .tcp(sport, dport, 1000, 65535)
            .ack(77)
            .fin();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        Packet {
            ts_ns: 5,
            link: LinkType::Ethernet,
            orig_len: out.len() as u32,
            data: out,
        }
    };
    let there = build(client, server, 40000, 3306, b"hello");
    let back = build(server, client, 3306, 40000, b"world!");
    let a = tcp_segment(&there).unwrap();
    let b = tcp_segment(&back).unwrap();
    assert_eq!(a.src, "[2001:db8::1]:40000".parse::<SocketAddr>().unwrap());
    assert_eq!(a.dst, "[2001:db8::2]:3306".parse::<SocketAddr>().unwrap());
    assert_eq!(
        (a.seq, a.ack, a.flags.fin(), a.flags.syn(), a.flags.rst()),
        (1000, 77, true, false, false)
    );
    assert_eq!(a.payload, b"hello");
    assert_eq!(b.payload, b"world!");
    let (ka, fa) = flow_key(&a);
    let (kb, fb) = flow_key(&b);
    assert_eq!(ka, kb);
    assert_ne!(fa, fb);
    assert!(fa, "[2001:db8::1]:40000 sorts first");

    // The same IPv6 packet as raw IPv6 (229) and raw IP (101).
    let ip_start = 14 + 4;
    for link in [LinkType::Ipv6, LinkType::RawIp] {
        let data = there.data[ip_start..].to_vec();
        let raw = Packet {
            link,
            orig_len: data.len() as u32,
            data,
            ..there.clone()
        };
        assert_eq!(tcp_segment(&raw), Some(a));
    }

    // The fixture: every flow's two directions share one key, with opposite directions.
    let mut directions: BTreeMap<FlowKey, BTreeSet<bool>> = BTreeMap::new();
    for p in read_all(capture::open(&fixture_gz()).unwrap()) {
        let seg = tcp_segment(&p).unwrap();
        let (key, forward) = flow_key(&seg);
        assert_eq!(forward, seg.src == key.lo);
        directions.entry(key).or_default().insert(forward);
    }
    assert_eq!(directions.len(), FLOWS);
    assert!(directions.values().all(|d| d.len() == 2));
}

#[test]
fn large_captures_stream_through_a_bounded_buffer() {
    fn assert_send<T: Send>() {}
    assert_send::<Capture>();

    // Four copies of the fixture (about 2.2 MB, twice the initial buffer) with a 3 MiB
    // packet in the middle, which makes the buffer grow once.
    let reference = read_all(capture::open(&fixture_gz()).unwrap());
    let mut packets: Vec<Packet> = Vec::new();
    for _ in 0..2 {
        packets.extend(reference.iter().cloned());
    }
    let mut huge = reference[0].clone();
    huge.data.resize(3 << 20, 0xab);
    huge.orig_len = huge.data.len() as u32;
    packets.push(huge);
    for _ in 0..2 {
        packets.extend(reference.iter().cloned());
    }
    let file = write_pcap(&packets, 1, false, false);
    assert!(file.len() > 4 * capture::INITIAL_BUFFER);
    let mut capture = from_bytes(file.clone()).unwrap();
    let got: Vec<Packet> = capture.by_ref().map(Result::unwrap).collect();
    assert_eq!(capture.stats().packets, packets.len() as u64);
    assert!(got == packets);
    let got = read_all(Capture::from_reader(std::io::Cursor::new(gzip(&file))).unwrap());
    assert!(got == packets);

    // A record header claiming more than the buffer limit, followed by enough zeros to fill
    // the largest buffer: an error, not an unbounded allocation.
    let mut header = write_pcap(&[], 1, false, false);
    header.extend([0u8; 8]);
    header.extend(((capture::MAX_BUFFER + 1000) as u32).to_le_bytes());
    header.extend(((capture::MAX_BUFFER + 1000) as u32).to_le_bytes());
    let zeros = std::io::repeat(0).take(capture::MAX_BUFFER as u64);
    let input = std::io::Cursor::new(header).chain(zeros);
    let (packets, err) = until_error(Capture::from_reader(input).unwrap());
    assert!(packets.is_empty());
    assert!(
        matches!(err, Some(CaptureError::RecordTooLarge { offset: 24, .. })),
        "{err:?}"
    );
    // The same header on a short file is a truncation.
    let mut short = write_pcap(&reference[..1], 1, false, false);
    short.truncate(24);
    short.extend([0u8; 8]);
    short.extend((1u32 << 30).to_le_bytes());
    short.extend((1u32 << 30).to_le_bytes());
    short.extend([0u8; 100]);
    let (_, err) = until_error(from_bytes(short).unwrap());
    assert!(
        matches!(err, Some(CaptureError::Truncated { offset: 24, .. })),
        "{err:?}"
    );
}

#[test]
fn packets_of_link_types_without_a_decoder_are_counted_per_link_type() {
    let reference = read_all(capture::open(&fixture_gz()).unwrap());
    // A classic pcap of eight IEEE 802.11 (105) packets: no packet, eight counted under 105.
    let mut capture = from_bytes(write_pcap(&reference[..8], 105, false, false)).unwrap();
    assert_eq!(capture.by_ref().count(), 0);
    assert_eq!(capture.stats().skipped_link_type, 8);
    assert_eq!(capture.skipped_link_types(), [(105, 8)]);
    // Decodable ones are not listed.
    let mut capture = from_bytes(write_pcap(&reference[..8], 1, false, false)).unwrap();
    assert_eq!(capture.by_ref().count(), 8);
    assert!(capture.skipped_link_types().is_empty());

    // pcapng: interfaces of 802.11 (105), radiotap (127) and Ethernet, in two sections (the
    // second redefines interface 0 as 802.11).
    let mut file = Vec::new();
    ng_shb(&mut file);
    ng_idb(&mut file, 127, None);
    ng_idb(&mut file, 1, None);
    ng_idb(&mut file, 105, None);
    for (i, p) in reference[..10].iter().enumerate() {
        ng_epb(&mut file, (i % 3) as u32, 0, &p.data, p.orig_len);
    }
    ng_shb(&mut file);
    ng_idb(&mut file, 105, None);
    ng_epb(&mut file, 0, 0, &reference[0].data, reference[0].orig_len);
    let mut capture = from_bytes(file).unwrap();
    assert_eq!(capture.by_ref().map(Result::unwrap).count(), 3);
    assert_eq!(capture.stats().skipped_link_type, 8);
    assert_eq!(capture.skipped_link_types(), [(105, 4), (127, 4)]);
}

/// An enhanced packet block whose captured-length field says `caplen` while it holds `data`.
fn ng_epb_claiming(out: &mut Vec<u8>, caplen: u32, data: &[u8]) -> usize {
    let at = out.len();
    ng_epb(out, 0, 0, data, data.len() as u32);
    out[at + 20..at + 24].copy_from_slice(&caplen.to_le_bytes());
    at
}

#[test]
fn a_pcapng_caplen_beyond_its_block_is_reported_as_such() {
    let reference = read_all(capture::open(&fixture_gz()).unwrap());
    let data = &reference[0].data;
    let mut head = Vec::new();
    ng_shb(&mut head);
    ng_idb(&mut head, 1, None);
    ng_epb(&mut head, 0, 0, data, data.len() as u32);
    let room = data.len().div_ceil(4) * 4;
    // The bad block last; followed by more packets; and followed by more than a buffer-full of
    // them (so the reader has not reached the end of the input when it meets the block).
    let mut more = Vec::new();
    while more.len() < 3 * capture::INITIAL_BUFFER {
        for p in &reference {
            ng_epb(&mut more, 0, 0, &p.data, p.orig_len);
        }
    }
    for tail in [&[][..], &more[..reference.len() * 3 / 2], &more[..]] {
        for claimed in [room as u32 + 1, 5000, u32::MAX - 10] {
            let mut file = head.clone();
            let at = ng_epb_claiming(&mut file, claimed, data);
            file.extend(tail);
            let inputs: [Box<dyn Fn() -> Capture>; 2] = [
                Box::new(|| from_bytes(file.clone()).unwrap()),
                Box::new(|| Capture::from_reader(std::io::Cursor::new(gzip(&file))).unwrap()),
            ];
            for input in inputs {
                let (packets, err) = until_error(input());
                assert_eq!(packets.len(), 1);
                match err {
                    Some(CaptureError::CaplenExceedsBlock {
                        offset,
                        caplen,
                        room: r,
                    }) => {
                        assert_eq!(offset, at as u64);
                        assert_eq!(caplen, claimed);
                        assert_eq!(r as usize, room);
                    }
                    other => panic!("claimed {claimed}, tail {}: {other:?}", tail.len()),
                }
            }
            let err = until_error(from_bytes(file.clone()).unwrap()).1.unwrap();
            let text = err.to_string();
            assert!(
                text.contains(&format!("captured length of {claimed} bytes"))
                    && text.contains(&format!("room for {room}"))
                    && !text.contains("truncated"),
                "{text}"
            );
        }
    }
    // A block whose contents are otherwise inconsistent with its length (a name resolution
    // block whose record runs past the block): malformed, not truncated.
    let mut file = Vec::new();
    ng_shb(&mut file);
    ng_idb(&mut file, 1, None);
    let at = file.len();
    let mut nrb = Vec::new();
    nrb.extend(1u16.to_le_bytes()); // an IPv4 record, declared 200 bytes long
    nrb.extend(200u16.to_le_bytes());
    nrb.extend([10, 0, 0, 1]);
    ng_block(&mut file, 4, &nrb);
    ng_epb(&mut file, 0, 0, data, data.len() as u32);
    let (_, err) = until_error(from_bytes(file).unwrap());
    match err {
        Some(CaptureError::Malformed { offset, detail }) => {
            assert_eq!(offset, at as u64);
            assert!(detail.contains("run past its length"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}
