//! Flow tracking: segments per second through `l7decode::flows::FlowTracker` and the decoders
//! behind it (TCP segment parsing in place, the flow table, direction, reassembly, HTTP, draining
//! every event), side by side with the flow table `meshsniff` had before the tracker existed
//! (commit 366c472, kept below as [`legacy_analyze`]), on
//!
//! * `examples/data/http_ab.pcap.gz`, its packets loaded into memory first, and
//! * a synthetic capture built in memory: [`CONNECTIONS`] keep-alive HTTP connections, all open at
//!   once (handshakes, then [`EXCHANGES`] GET/200 exchanges each, then FINs, every phase
//!   round-robin over all connections), as raw IPv4 packets.
//!
//! Both sides are fed the same segments, parsed by the same `parse_ip_packet` inside the timed
//! loop, and must count the same records. Heap (peak, and per idle flow once every connection is
//! open and between exchanges) is measured with testkit's counting allocator, which the
//! `compare` binary installs.

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use examples::capture::{Packet, tcp_segment};
use examples::meshsniff::{Exchange, Record, Totals};
use l7decode::flows::{FlowEventKind, FlowLimits, FlowTracker, Segment, parse_ip_packet};
use l7decode::reassembly::{Event as TcpEvent, Reassembler, ReassemblyConfig, TcpFlags};
use l7decode::{Connection, Direction, Event, Limits, Protocol, Timestamp};

use crate::alloc_count::{live_bytes, peak_bytes_during};
use crate::harness::{Comparison, compare, median_time};

/// Concurrent connections in the synthetic capture.
pub const CONNECTIONS: u32 = 100_000;
/// GET/200 exchanges per synthetic connection.
pub const EXCHANGES: u32 = 4;
/// Bytes of each synthetic response body.
const BODY: usize = 256;
/// Capture time between two synthetic packets.
const TICK_NS: u64 = 1_000;

/// Packets held in memory, ready to be parsed.
pub enum Input {
    /// Packets read from a capture file (link layer included; parsed with `tcp_segment`).
    Captured(Vec<Packet>),
    /// Raw IPv4 packets back to back in one buffer, each `(ts_ns, start, end)` in it (parsed
    /// with `parse_ip_packet`, which is what `tcp_segment` calls once the link layer is off).
    Raw {
        /// The packets' bytes.
        bytes: Vec<u8>,
        /// Each packet: its capture time and its span in `bytes`.
        packets: Vec<(u64, usize, usize)>,
    },
}

impl Input {
    /// Every TCP segment, with its capture time, parsed in place as the iterator goes.
    pub fn segments(&self) -> Segments<'_> {
        match self {
            Self::Captured(packets) => Segments::Captured(packets.iter()),
            Self::Raw { bytes, packets } => Segments::Raw(bytes, packets.iter()),
        }
    }

    fn packet_count(&self) -> usize {
        match self {
            Self::Captured(p) => p.len(),
            Self::Raw { packets, .. } => packets.len(),
        }
    }

    /// The packets before index `end`.
    fn prefix(&self, end: usize) -> Segments<'_> {
        match self {
            Self::Captured(packets) => Segments::Captured(packets[..end].iter()),
            Self::Raw { bytes, packets } => Segments::Raw(bytes, packets[..end].iter()),
        }
    }
}

/// See [`Input::segments`].
pub enum Segments<'a> {
    /// From captured packets.
    Captured(std::slice::Iter<'a, Packet>),
    /// From raw IPv4 packets.
    Raw(&'a [u8], std::slice::Iter<'a, (u64, usize, usize)>),
}

impl<'a> Iterator for Segments<'a> {
    type Item = (Timestamp, Segment<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let parsed = match self {
                Self::Captured(packets) => {
                    let p = packets.next()?;
                    tcp_segment(p).map(|s| (Timestamp(p.ts_ns), s))
                }
                Self::Raw(bytes, packets) => {
                    let &(ts, start, end) = packets.next()?;
                    bytes
                        .get(start..end)
                        .and_then(|p| parse_ip_packet(p).ok())
                        .map(|s| (Timestamp(ts), s))
                }
            };
            if parsed.is_some() {
                return parsed;
            }
        }
    }
}

/// What one run counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Records decoded (HTTP transactions, MySQL commands, MongoDB operations).
    pub records: u64,
    /// Of those, HTTP transactions with a request.
    pub requests: u64,
    /// Flows (connections) opened.
    pub flows: u64,
}

fn count(counts: &mut Counts, event: &Event) {
    match event {
        Event::Transaction(t) => {
            counts.records += 1;
            counts.requests += u64::from(t.request.is_some());
        }
        Event::Mysql(_) | Event::Mongo(_) => counts.records += 1,
        _ => {}
    }
}

/// Feeds `segments` to `tracker` the way an agent's run loop does (timeouts as the capture's
/// clock passes them, every event drained after every segment).
fn feed_tracker<'a>(
    tracker: &mut FlowTracker,
    segments: impl Iterator<Item = (Timestamp, Segment<'a>)>,
    counts: &mut Counts,
) -> Timestamp {
    let mut last = Timestamp(0);
    for (now, segment) in segments {
        last = last.max(now);
        if tracker.poll_timeout().is_some_and(|due| due <= now) {
            tracker.handle_timeout(now);
        }
        tracker.segment(now, &segment);
        drain_tracker(tracker, counts);
    }
    last
}

fn drain_tracker(tracker: &mut FlowTracker, counts: &mut Counts) {
    while let Some(event) = tracker.poll_event() {
        if let FlowEventKind::Decoded(e) = &event.kind {
            count(counts, e);
        }
    }
}

/// The new path: every segment through one [`FlowTracker`], then the end of input.
pub fn tracked(input: &Input, limits: FlowLimits) -> Counts {
    let mut tracker = FlowTracker::new(limits);
    let mut counts = Counts::default();
    let last = feed_tracker(&mut tracker, input.segments(), &mut counts);
    tracker.feed_eof(last);
    drain_tracker(&mut tracker, &mut counts);
    counts.flows = tracker.stats().flows_opened;
    counts
}

/// The baseline: [`legacy_analyze`] over the same segments.
pub fn legacy(input: &Input) -> Counts {
    let mut counts = Counts::default();
    let totals = legacy_analyze(input.segments(), |r| match &r.exchange {
        Exchange::Http(t) => {
            counts.records += 1;
            counts.requests += u64::from(t.request.is_some());
        }
        Exchange::Mysql(_) | Exchange::Mongo(_) => counts.records += 1,
    });
    counts.flows = totals.connections;
    counts
}

// ------------------------------------------------------------------------------------------------
// BASELINE: a copy of `examples::meshsniff::analyze` as of commit 366c472, the flow table
// meshsniff had before `l7decode::flows` (a HashMap of flows keyed by their two endpoints, each
// with two reassemblers and a `Connection` inline, the direction guessed from the first segment
// that tells, no timeouts, no bounds). Kept here only as the baseline the tracker is measured
// against; do not use it for anything else. The changes from the original: it takes the new
// `Segment`s (with their capture time) instead of reading a `Capture`, so both sides parse the
// same packets the same way; a snaplen cut comes from `Segment::missing` rather than from the
// packet's lengths; and the old `capture::{FlowKey, flow_key, sender_is_client}` are copied
// below as `LegacyFlowKey`, `legacy_flow_key` and `legacy_sender_is_client`.
// ------------------------------------------------------------------------------------------------

/// A TCP connection's two endpoints in canonical order (`lo <= hi`), the same for both
/// directions. (Baseline copy of the old `examples::capture::FlowKey`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct LegacyFlowKey {
    lo: SocketAddr,
    hi: SocketAddr,
}

/// The segment's flow, and whether it travels forward (from `lo` to `hi`). (Baseline copy.)
fn legacy_flow_key(seg: &Segment<'_>) -> (LegacyFlowKey, bool) {
    if seg.src <= seg.dst {
        (
            LegacyFlowKey {
                lo: seg.src,
                hi: seg.dst,
            },
            true,
        )
    } else {
        (
            LegacyFlowKey {
                lo: seg.dst,
                hi: seg.src,
            },
            false,
        )
    }
}

/// Whether this segment's sender opened the connection, when the segment tells. (Baseline copy
/// of the old `examples::capture::sender_is_client`.)
fn legacy_sender_is_client(seg: &Segment<'_>) -> Option<bool> {
    use l7decode::mysql::wire;
    if seg.flags.syn() {
        return Some(!seg.flags.ack());
    }
    let start = seg.payload.get(..8).unwrap_or(seg.payload);
    let mongo = |request| l7decode::mongo::wire::plausible_header(seg.payload, request);
    if l7decode::looks_like_request(start) || mongo(true) {
        return Some(true);
    }
    if l7decode::looks_like_response(start) || mongo(false) || wire::greeting_start(seg.payload) {
        return Some(false);
    }
    let mysql_command = wire::command_start(seg.payload) == Some(true)
        || wire::compressed_command_start(seg.payload) == Some(true);
    mysql_command.then_some(true)
}

/// One flow of the baseline table.
struct LegacyFlow {
    /// Which endpoint is the client (`lo` when true).
    client_is_lo: Option<bool>,
    halves: [Reassembler; 2],
    conn: Connection,
    done: [bool; 2],
    /// When the flow's last packet was seen: what it held back is delivered as of then.
    last_seen: Timestamp,
}

impl LegacyFlow {
    fn new() -> Self {
        let config = ReassemblyConfig::default();
        Self {
            client_is_lo: None,
            halves: [Reassembler::new(config), Reassembler::new(config)],
            conn: Connection::new(Limits::default()),
            done: [false; 2],
            last_seen: Timestamp(0),
        }
    }
}

/// The baseline flow table (split out of the old `analyze` so its state can be measured while
/// flows are open).
#[derive(Default)]
pub struct LegacyTable {
    flows: HashMap<LegacyFlowKey, LegacyFlow>,
    totals: Totals,
}

impl LegacyTable {
    /// Flows open now.
    pub fn open(&self) -> usize {
        self.flows.len()
    }

    /// One segment (the old `analyze`'s loop body).
    pub fn segment(
        &mut self,
        now: Timestamp,
        seg: &Segment<'_>,
        on_record: &mut impl FnMut(Record),
    ) {
        let Self { flows, totals } = self;
        totals.segments += 1;
        let (key, forward) = legacy_flow_key(seg);
        // A bare ACK (or FIN) of a connection already closed must not open a new one.
        if !flows.contains_key(&key) && !seg.flags.syn() && seg.payload.is_empty() {
            return;
        }
        let flow = flows.entry(key).or_insert_with(|| {
            totals.connections += 1;
            LegacyFlow::new()
        });
        if flow.client_is_lo.is_none() {
            let known = |addr: SocketAddr| Protocol::for_port(addr.port()).is_some();
            if let Some(sender_is_client) = legacy_sender_is_client(seg) {
                flow.client_is_lo = Some(forward == sender_is_client);
            } else if !seg.payload.is_empty() {
                flow.client_is_lo = Some(match (known(key.lo), known(key.hi)) {
                    (true, false) => false,
                    (false, true) => true,
                    _ => key.lo.port() > key.hi.port(),
                });
            }
            if let Some(client_is_lo) = flow.client_is_lo {
                let (_, server) = legacy_endpoints(key, client_is_lo);
                flow.conn =
                    Connection::new(Limits::default()).with_hint(Protocol::for_port(server.port()));
            }
        }
        let Some(client_is_lo) = flow.client_is_lo else {
            return;
        };
        let dir = if forward == client_is_lo {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let index = usize::from(dir == Direction::ServerToClient);
        flow.last_seen = now;
        let flags = TcpFlags(seg.flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST).0);
        let LegacyFlow {
            halves, conn, done, ..
        } = flow;
        if seg.flags.ack()
            && let Some(other) = halves.get_mut(1 - index)
        {
            let ended = legacy_deliver(
                other.acknowledged(now, seg.ack),
                conn,
                dir.reverse(),
                totals,
            );
            if ended && let Some(d) = done.get_mut(1 - index) {
                *d = true;
            }
        }
        let Some(half) = halves.get_mut(index) else {
            return;
        };
        let ended = legacy_deliver(
            half.truncated_segment(now, seg.seq, flags, seg.payload, seg.missing),
            conn,
            dir,
            totals,
        );
        if ended && let Some(d) = done.get_mut(index) {
            *d = true;
        }
        legacy_drain(conn, key, client_is_lo, on_record, totals);
        if done.iter().all(|d| *d)
            && let Some(mut finished) = flows.remove(&key)
        {
            legacy_finish(&mut finished, key, on_record, totals);
        }
    }

    /// The end of the input: flows still open, in a fixed order (when they were last seen).
    pub fn finish(mut self, on_record: &mut impl FnMut(Record)) -> Totals {
        let mut open: Vec<(LegacyFlowKey, LegacyFlow)> = self.flows.drain().collect();
        open.sort_by_key(|(key, flow)| (flow.last_seen, *key));
        for (key, mut flow) in open {
            legacy_finish(&mut flow, key, on_record, &mut self.totals);
        }
        self.totals
    }
}

/// BASELINE: the old `meshsniff::analyze` (commit 366c472), fed pre-parsed segments.
pub fn legacy_analyze<'a>(
    segments: impl Iterator<Item = (Timestamp, Segment<'a>)>,
    mut on_record: impl FnMut(Record),
) -> Totals {
    let mut table = LegacyTable::default();
    for (now, seg) in segments {
        table.segment(now, &seg, &mut on_record);
    }
    table.finish(&mut on_record)
}

fn legacy_deliver(
    events: l7decode::reassembly::Delivered<'_>,
    conn: &mut Connection,
    dir: Direction,
    totals: &mut Totals,
) -> bool {
    let mut ended = false;
    for event in events {
        match event {
            TcpEvent::Data { now, bytes } if !ended => {
                let _ = conn.feed(dir, now, bytes);
            }
            TcpEvent::Gap { now, missing } => {
                totals.gap_bytes += missing;
                conn.feed_gap(dir, now, missing);
            }
            TcpEvent::Fin { now } | TcpEvent::Rst { now } => {
                if !ended {
                    conn.feed_eof(dir, now);
                }
                ended = true;
            }
            _ => {}
        }
    }
    ended
}

fn legacy_endpoints(key: LegacyFlowKey, client_is_lo: bool) -> (SocketAddr, SocketAddr) {
    if client_is_lo {
        (key.lo, key.hi)
    } else {
        (key.hi, key.lo)
    }
}

fn legacy_drain(
    conn: &mut Connection,
    key: LegacyFlowKey,
    client_is_lo: bool,
    on_record: &mut impl FnMut(Record),
    totals: &mut Totals,
) {
    while let Some(event) = conn.poll_event() {
        let exchange = match event {
            Event::Transaction(transaction) => Exchange::Http(transaction),
            Event::Mysql(command) => Exchange::Mysql(command),
            Event::Mongo(operation) => Exchange::Mongo(Box::new(operation)),
            Event::Protocol(Protocol::Tls) => {
                totals.tls_connections += 1;
                continue;
            }
            Event::Protocol(Protocol::Unknown) => {
                totals.unknown_connections += 1;
                continue;
            }
            _ => continue,
        };
        let (client, server) = legacy_endpoints(key, client_is_lo);
        on_record(Record {
            client,
            server,
            exchange,
        });
    }
}

fn legacy_finish(
    flow: &mut LegacyFlow,
    key: LegacyFlowKey,
    on_record: &mut impl FnMut(Record),
    totals: &mut Totals,
) {
    let Some(client_is_lo) = flow.client_is_lo else {
        return;
    };
    let LegacyFlow {
        halves,
        conn,
        done,
        last_seen,
        ..
    } = flow;
    let now = *last_seen;
    for (index, half) in halves.iter_mut().enumerate() {
        let dir = if index == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let already = done.get(index).copied().unwrap_or(true);
        let ended = legacy_deliver(half.flush(now), conn, dir, totals);
        if !already && !ended {
            conn.feed_eof(dir, now);
        }
    }
    let stats = conn.stats();
    totals.skipped_bytes += stats.skipped_bytes;
    totals.messages += stats.messages;
    legacy_drain(conn, key, client_is_lo, on_record, totals);
}

// ------------------------------------------------------------------------------------------------
// End of the baseline copy.
// ------------------------------------------------------------------------------------------------

/// The synthetic capture and where its FIN phase starts (every flow open and idle before it).
pub fn synthetic(connections: u32, exchanges: u32) -> (Input, usize) {
    let server = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 80));
    let client = |i: u32| {
        let ip = Ipv4Addr::new(10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
        SocketAddr::from((ip, 1024 + (i % 60_000) as u16))
    };
    // Initial sequence numbers spread over the whole space (some wrap during the run).
    let isn = |i: u32, salt: u32| (i ^ salt).wrapping_mul(0x9e37_79b9);
    let body = vec![b'x'; BODY];
    let response = {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\nContent-Length: {BODY}\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let request = |i: u32, round: u32| {
        format!(
            "GET /items/{i}/{round} HTTP/1.1\r\nHost: svc.local\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes()
    };
    let per_flow = 6 + 3 * exchanges as usize;
    let mut w = Writer {
        bytes: Vec::with_capacity(connections as usize * per_flow * 120),
        packets: Vec::with_capacity(connections as usize * per_flow),
        ts: 1_700_000_000_000_000_000,
    };
    // Next sequence number of each side, per connection (client, server).
    let mut seq: Vec<(u32, u32)> = (0..connections)
        .map(|i| (isn(i, 0x5eed), isn(i, 0xface)))
        .collect();
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;
    const FIN_ACK: u8 = 0x11;
    for (i, s) in (0..connections).zip(&mut seq) {
        w.packet(client(i), server, s.0, 0, SYN, b"");
        s.0 = s.0.wrapping_add(1);
    }
    for (i, s) in (0..connections).zip(&mut seq) {
        w.packet(server, client(i), s.1, s.0, SYN | ACK, b"");
        s.1 = s.1.wrapping_add(1);
    }
    for (i, s) in (0..connections).zip(&seq) {
        w.packet(client(i), server, s.0, s.1, ACK, b"");
    }
    for round in 0..exchanges {
        for (i, s) in (0..connections).zip(&mut seq) {
            let req = request(i, round);
            w.packet(client(i), server, s.0, s.1, PSH_ACK, &req);
            s.0 = s.0.wrapping_add(req.len() as u32);
        }
        for (i, s) in (0..connections).zip(&mut seq) {
            w.packet(server, client(i), s.1, s.0, PSH_ACK, &response);
            s.1 = s.1.wrapping_add(response.len() as u32);
        }
        for (i, s) in (0..connections).zip(&seq) {
            w.packet(client(i), server, s.0, s.1, ACK, b"");
        }
    }
    let fins = w.packets.len();
    for (i, s) in (0..connections).zip(&mut seq) {
        w.packet(client(i), server, s.0, s.1, FIN_ACK, b"");
        s.0 = s.0.wrapping_add(1);
    }
    for (i, s) in (0..connections).zip(&mut seq) {
        w.packet(server, client(i), s.1, s.0, FIN_ACK, b"");
        s.1 = s.1.wrapping_add(1);
    }
    for (i, s) in (0..connections).zip(&seq) {
        w.packet(client(i), server, s.0, s.1, ACK, b"");
    }
    (
        Input::Raw {
            bytes: w.bytes,
            packets: w.packets,
        },
        fins,
    )
}

/// Appends raw IPv4/TCP packets to one buffer.
struct Writer {
    bytes: Vec<u8>,
    packets: Vec<(u64, usize, usize)>,
    ts: u64,
}

impl Writer {
    fn packet(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) {
        let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
            unreachable!("the synthetic capture is IPv4");
        };
        let start = self.bytes.len();
        let total = (40 + payload.len()) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        self.bytes.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
        tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        // The TCP checksum is left 0: nothing on the path verifies it.
        self.bytes.extend_from_slice(&tcp);
        self.bytes.extend_from_slice(payload);
        self.packets.push((self.ts, start, self.bytes.len()));
        self.ts += TICK_NS;
    }
}

/// The IPv4 header checksum.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn http_ab() -> (Input, std::path::PathBuf) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/http_ab.pcap.gz");
    let gz = std::fs::read(&path).expect("bundled capture");
    let mut pcap = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut pcap)
        .expect("gzip");
    let file = std::env::temp_dir().join("http_ab_flows.pcap");
    std::fs::write(&file, &pcap).expect("temp file");
    let packets: Vec<Packet> = examples::capture::Capture::from_reader(std::io::Cursor::new(pcap))
        .expect("a capture")
        .collect::<Result<_, _>>()
        .expect("whole capture");
    (Input::Captured(packets), file)
}

/// Segments and payload bytes of an input.
fn volume(input: &Input) -> (u64, u64) {
    input
        .segments()
        .fold((0, 0), |(n, b), (_, s)| (n + 1, b + s.payload.len() as u64))
}

fn rates(what: &str, flows: u64, segments: u64, payload: u64, t: Duration) -> String {
    let s = t.as_secs_f64().max(1e-12);
    format!(
        "{what} {:.2} ms = {:.0} flows/s, {:.2} M segments/s, {:.3} GB/s of payload",
        s * 1e3,
        flows as f64 / s,
        segments as f64 / s / 1e6,
        payload as f64 / s / 1e9
    )
}

fn mib(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// One input measured both ways: the comparison and the notes.
fn measure(
    name: &str,
    input: &Input,
    limits: FlowLimits,
    samples: usize,
    notes: &mut Vec<String>,
) -> Comparison {
    let (segments, payload) = volume(input);
    let new = tracked(input, limits);
    let old = legacy(input);
    notes.push(format!(
        "flows {name}: {} packets, {segments} TCP segments, {payload} payload bytes; records: tracker {}, legacy {} ({}); flows opened: tracker {}, legacy {}",
        input.packet_count(),
        new.records,
        old.records,
        if new.records == old.records { "match" } else { "MISMATCH" },
        new.flows,
        old.flows,
    ));
    let c = compare(
        &format!("flows: {name} tracker+HTTP"),
        "legacy analyze (366c472 flow table)",
        payload,
        samples,
        || tracked(black_box(input), limits).records,
        || legacy(black_box(input)).records,
    );
    let parse = median_time(samples, || {
        black_box(volume(black_box(input)));
    });
    notes.push(format!(
        "flows {name}: {}",
        rates("tracker", new.flows, segments, payload, c.ours)
    ));
    notes.push(format!(
        "flows {name}: {}",
        rates("legacy ", old.flows, segments, payload, c.theirs)
    ));
    notes.push(format!(
        "flows {name}: time tracker/legacy = {:.2} (tracker {:.2}x the legacy speed); parsing the segments alone (parse_ip_packet) takes {:.2} ms of it",
        c.ours.as_secs_f64() / c.theirs.as_secs_f64().max(1e-12),
        c.speedup(),
        parse.as_secs_f64() * 1e3
    ));
    let (_, new_peak) = peak_bytes_during(|| tracked(input, limits));
    let (_, old_peak) = peak_bytes_during(|| legacy(input));
    notes.push(format!(
        "flows {name}: peak heap during a run: tracker {}, legacy {} (tracker/legacy = {:.2})",
        mib(new_peak),
        mib(old_peak),
        new_peak as f64 / (old_peak as f64).max(1.0)
    ));
    c
}

/// The comparisons, plus notes (rates, records, heap).
pub fn run(samples: usize) -> (Vec<Comparison>, Vec<String>) {
    let mut notes = Vec::new();
    let mut results = Vec::new();

    // (a) http_ab, as meshsniff runs it (default limits).
    let (ab, file) = http_ab();
    results.push(measure(
        "http_ab",
        &ab,
        FlowLimits::default(),
        samples,
        &mut notes,
    ));
    if crate::harness::tshark_count(&file, "http.request.method").is_some() {
        let requests = tracked(&ab, FlowLimits::default()).requests;
        let mut counted = 0;
        let t = median_time(samples.min(5), || {
            counted = crate::harness::tshark_count(&file, "http.request.method").unwrap_or(0);
        });
        notes.push(format!(
            "flows http_ab: tshark -Y http.request.method counted {counted} requests in {:.1} ms (whole file, its start-up included); the tracker counted {requests}",
            t.as_secs_f64() * 1e3
        ));
    } else {
        notes.push("flows http_ab: tshark not installed, no tshark figure".to_owned());
    }
    drop(ab);

    // (b) the synthetic capture: every connection open at once, so the table must hold them all
    // (bounds raised past the defaults of 100,000 flows and 32 MiB, so nothing is evicted).
    let limits = FlowLimits::default()
        .max_flows(2 * CONNECTIONS as usize)
        .max_bytes(8 << 30);
    let (synth, fins) = synthetic(CONNECTIONS, EXCHANGES);
    let name = format!("{}k open conns x{EXCHANGES} GETs", CONNECTIONS / 1000);
    let c = measure(&name, &synth, limits, samples.min(5), &mut notes);
    results.push(c);

    // Heap per idle flow: every connection open, between exchanges (the FINs not yet fed).
    let base = live_bytes();
    let mut tracker = FlowTracker::new(limits);
    let mut counts = Counts::default();
    let _ = feed_tracker(&mut tracker, synth.prefix(fins), &mut counts);
    let held = live_bytes() - base;
    let stats = tracker.stats();
    let open = stats.flows_open.max(1);
    drop(tracker);
    let base = live_bytes();
    let mut table = LegacyTable::default();
    let mut sink = |_: Record| {};
    for (now, seg) in synth.prefix(fins) {
        table.segment(now, &seg, &mut sink);
    }
    let old_held = live_bytes() - base;
    let old_open = table.open().max(1);
    drop(table);
    notes.push(format!(
        "flows {name}: heap with {open} flows open and idle: tracker {} = {} B per flow (its own budget counts {} B per flow), legacy {} flows {} = {} B per flow (tracker/legacy = {:.2})",
        mib(held as u64),
        held as usize / open,
        stats.bytes_held / open,
        old_open,
        mib(old_held as u64),
        old_held as usize / old_open,
        (held as f64 / open as f64) / (old_held as f64 / old_open as f64).max(1.0)
    ));
    notes.push(format!(
        "flows: inline sizes: Connection {} B, Reassembler {} B (the legacy table holds both reassemblers and the connection inline in its map; the tracker boxes them once a flow carries data)",
        size_of::<Connection>(),
        size_of::<Reassembler>(),
    ));
    (results, notes)
}

/// For profiling (`compare flows-profile tracker|legacy [RUNS]`): the synthetic capture through
/// one side only, `runs` times; returns the records of the last run.
pub fn profile(side: &str, runs: usize) -> u64 {
    let limits = FlowLimits::default()
        .max_flows(2 * CONNECTIONS as usize)
        .max_bytes(8 << 30);
    let (synth, _) = synthetic(CONNECTIONS, EXCHANGES);
    let mut records = 0;
    for _ in 0..runs {
        records = match side {
            "legacy" => legacy(&synth).records,
            _ => tracked(&synth, limits).records,
        };
    }
    records
}
