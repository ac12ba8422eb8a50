//! l7decode on `http_ab` (3,300 real ab transactions, MTU 1500): the payloads are loaded into
//! memory once, then reassembly + HTTP + pairing is timed against raw httparse parsing the same
//! heads, and feeding one connection's stream in 1-byte chunks against feeding it whole.

use std::hint::black_box;
use std::path::Path;

use examples::capture::{open, tcp_segment};
use l7decode::reassembly::{Event as TcpEvent, Reassembler, ReassemblyConfig, TcpFlags};
use l7decode::{Connection, Direction, Event, Limits, Timestamp};

use crate::harness::{Comparison, compare, tshark_count};

/// One TCP segment, owned.
struct Segment {
    dir: Direction,
    seq: u32,
    flags: TcpFlags,
    ts: u64,
    payload: Vec<u8>,
}

/// The capture's segments grouped by connection, client side first.
fn load() -> Vec<Vec<Segment>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/http_ab.pcap.gz");
    let mut flows: std::collections::HashMap<_, (Option<bool>, Vec<Segment>)> = Default::default();
    let mut generation: std::collections::HashMap<_, (u32, bool)> = Default::default();
    for packet in open(&path).expect("bundled capture").flatten() {
        let Some(seg) = tcp_segment(&packet) else {
            continue;
        };
        // Both directions of a connection under one key; `forward` from the lower endpoint.
        let forward = seg.src <= seg.dst;
        let key = if forward {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        // A SYN after a FIN on the same ports is a new connection (ab reuses client ports).
        let (gen_id, finished) = generation.entry(key).or_insert((0, false));
        if seg.flags.syn() && *finished {
            *gen_id += 1;
            *finished = false;
        }
        if seg.flags.fin() {
            *finished = true;
        }
        let flow = flows.entry((key, *gen_id)).or_default();
        // Oriented by the handshake (a SYN comes from the client, a SYN-ACK from the server);
        // a connection already open when the capture started (nginx's keep-alive upstream) by
        // its first payload's ports: the server's is the lower (well-known) one.
        if flow.0.is_none() {
            let sender_is_client = if seg.flags.syn() {
                Some(!seg.flags.ack())
            } else if !seg.payload.is_empty() {
                Some(seg.src.port() > seg.dst.port())
            } else {
                None
            };
            flow.0 = sender_is_client.map(|client| forward == client);
        }
        let Some(client_is_lo) = flow.0 else { continue };
        // SYN and FIN only, as before the flow tracker existed.
        let flags = TcpFlags(seg.flags.0 & (TcpFlags::SYN | TcpFlags::FIN).0);
        let dir = if forward == client_is_lo {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        flow.1.push(Segment {
            dir,
            seq: seg.seq,
            flags,
            ts: packet.ts_ns,
            payload: seg.payload.to_vec(),
        });
    }
    flows.into_values().map(|(_, segs)| segs).collect()
}

/// Reassembles one connection's segments, handing each event to `on` with its direction.
fn reassemble(flow: &[Segment], mut on: impl FnMut(Direction, TcpEvent<'_>)) {
    let config = ReassemblyConfig::default();
    let mut halves = [Reassembler::new(config), Reassembler::new(config)];
    for s in flow {
        let index = usize::from(s.dir == Direction::ServerToClient);
        let Some(half) = halves.get_mut(index) else {
            continue;
        };
        for event in half.segment(Timestamp(s.ts), s.seq, s.flags, &s.payload) {
            on(s.dir, event);
        }
    }
}

/// Reassembly + HTTP + pairing over every connection; returns the transactions.
fn decode(flows: &[Vec<Segment>]) -> u64 {
    let mut transactions = 0;
    let mut count = |conn: &mut Connection| {
        while let Some(e) = conn.poll_event() {
            transactions += u64::from(matches!(e, Event::Transaction(_)));
        }
    };
    for flow in flows {
        let mut conn = Connection::new(Limits::default());
        reassemble(flow, |dir, event| {
            match event {
                TcpEvent::Data { now, bytes } => {
                    let _ = conn.feed(dir, now, bytes);
                }
                TcpEvent::Fin { now } => conn.feed_eof(dir, now),
                TcpEvent::Gap { now, missing } => conn.feed_gap(dir, now, missing),
                _ => {}
            }
            count(&mut conn);
        });
        // The capture may end before a connection does (as meshsniff does at the end).
        conn.feed_eof(Direction::ClientToServer, Timestamp(0));
        conn.feed_eof(Direction::ServerToClient, Timestamp(0));
        count(&mut conn);
    }
    transactions
}

/// Every request and response head, as decoded (for the httparse anchor).
fn heads(flows: &[Vec<Segment>]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut requests, mut responses) = (Vec::new(), Vec::new());
    for flow in flows {
        let mut conn = Connection::new(Limits::default());
        reassemble(flow, |dir, event| {
            if let TcpEvent::Data { now, bytes } = event {
                let _ = conn.feed(dir, now, bytes);
            }
            while let Some(e) = conn.poll_event() {
                if let Event::Transaction(t) = e {
                    requests.extend(t.request.map(|m| m.head().to_vec()));
                    responses.extend(t.response.map(|m| m.head().to_vec()));
                }
            }
        });
    }
    (requests, responses)
}

/// One connection's client and server streams, in order.
fn streams(flows: &[Vec<Segment>]) -> (Vec<u8>, Vec<u8>) {
    let flow = flows
        .iter()
        .max_by_key(|f| f.iter().map(|s| s.payload.len()).sum::<usize>())
        .expect("flows");
    let (mut client, mut server) = (Vec::new(), Vec::new());
    reassemble(flow, |dir, event| {
        if let TcpEvent::Data { bytes, .. } = event {
            match dir {
                Direction::ClientToServer => client.extend_from_slice(bytes),
                Direction::ServerToClient => server.extend_from_slice(bytes),
            }
        }
    });
    (client, server)
}

fn feed_streams(client: &[u8], server: &[u8], chunk: usize) -> u64 {
    let mut conn = Connection::new(Limits::default());
    let mut n = 0;
    for (dir, stream) in [
        (Direction::ClientToServer, client),
        (Direction::ServerToClient, server),
    ] {
        for piece in stream.chunks(chunk) {
            let _ = conn.feed(dir, Timestamp(0), piece);
            while let Some(e) = conn.poll_event() {
                n += u64::from(matches!(e, Event::Transaction(_)));
            }
        }
    }
    n
}

/// The comparisons, plus notes (throughputs, and the tshark figure from the spec).
pub fn run(samples: usize) -> (Vec<Comparison>, Vec<String>) {
    let flows = load();
    let payload: u64 = flows.iter().flatten().map(|s| s.payload.len() as u64).sum();
    let (requests, responses) = heads(&flows);
    let head_bytes: u64 = requests
        .iter()
        .chain(&responses)
        .map(|h| h.len() as u64)
        .sum();
    let parse_heads = || {
        let mut n = 0u64;
        for r in &requests {
            let mut h = [httparse::EMPTY_HEADER; 64];
            n += u64::from(matches!(
                httparse::Request::new(&mut h).parse(black_box(r)),
                Ok(httparse::Status::Complete(_))
            ));
        }
        for r in &responses {
            let mut h = [httparse::EMPTY_HEADER; 64];
            n += u64::from(matches!(
                httparse::Response::new(&mut h).parse(black_box(r)),
                Ok(httparse::Status::Complete(_))
            ));
        }
        n / 2
    };
    let mut results = vec![compare(
        "l7decode: http_ab reassembly+HTTP+pairing",
        "httparse 1.10: the same heads only",
        payload,
        samples,
        || decode(black_box(&flows)),
        parse_heads,
    )];
    let (client, server) = streams(&flows);
    let stream_bytes = (client.len() + server.len()) as u64;
    results.push(compare(
        "l7decode: one connection, whole",
        "the same in 1-byte chunks",
        stream_bytes,
        samples,
        || feed_streams(black_box(&client), black_box(&server), usize::MAX),
        || feed_streams(black_box(&client), black_box(&server), 1),
    ));
    // Its request stream alone is all heads: what it costs is parsing, so this is where
    // re-parsing per chunk would show (bodies, skipped whole in one step, only show the per-call
    // floor).
    results.push(compare(
        "l7decode: its requests (heads only), whole",
        "the same in 1-byte chunks",
        client.len() as u64,
        samples,
        || feed_streams(black_box(&client), &[], usize::MAX),
        || feed_streams(black_box(&client), &[], 1),
    ));
    // tshark side by side when installed: the whole file, end to end for both (ours from the
    // pcap bytes in memory: parsing, flows, reassembly, HTTP), requests counted on both sides.
    let gz = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/http_ab.pcap.gz"),
    )
    .expect("bundled capture");
    let mut pcap = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut pcap)
        .expect("gzip");
    let pcap = bytes::Bytes::from(pcap);
    let file = std::env::temp_dir().join("http_ab.pcap");
    std::fs::write(&file, &pcap).expect("temp file");
    let count_requests = || {
        let capture = examples::capture::Capture::from_reader(std::io::Cursor::new(pcap.clone()))
            .expect("a capture");
        let mut n = 0u64;
        let _ = examples::meshsniff::analyze(capture, |r| {
            n += u64::from(r.http().is_some_and(|t| t.request.is_some()));
        });
        n
    };
    let mut tshark_rate = None;
    if tshark_count(&file, "http.request.method").is_some() {
        let c = compare(
            "l7decode: http_ab end to end (requests)",
            "tshark 4.0 -Y http.request.method",
            pcap.len() as u64,
            samples.min(5),
            count_requests,
            || tshark_count(&file, "http.request.method").unwrap_or(0),
        );
        tshark_rate = Some(pcap.len() as f64 / 1e6 / c.theirs.as_secs_f64());
        results.push(c);
    }
    let ours = &results[0];
    let ours_mb_s = payload as f64 / 1e6 / ours.ours.as_secs_f64();
    let heads_mb_s = head_bytes as f64 / 1e6 / ours.theirs.as_secs_f64();
    let notes = vec![
        format!(
            "l7decode http_ab: {payload} payload bytes, {} transactions: {ours_mb_s:.0} MB/s end to end",
            decode(&flows)
        ),
        format!(
            "httparse on the same {} heads ({head_bytes} bytes): {heads_mb_s:.0} MB/s of head bytes; ours/httparse = {:.2}",
            requests.len() + responses.len(),
            ours_mb_s / heads_mb_s
        ),
        format!(
            "tshark 4.0 dissects http_ab at 9.5 MB/s (spec, measured there): ours is {:.0}x",
            ours_mb_s / 9.5
        ),
        match tshark_rate {
            Some(rate) => format!(
                "tshark measured in this run: {rate:.1} MB/s over the file; ours on the payloads in memory is {:.0}x that rate (the end-to-end row above includes our pcap parsing and flow tracking)",
                ours_mb_s / rate
            ),
            None => "tshark not installed: no side-by-side run on http_ab".to_owned(),
        },
        format!(
            "memory per connection: {} B decoder + 2 x {} B reassembler inline; by default at most {} KiB of head and {} KiB out of order per direction, {} pending requests",
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<Reassembler>(),
            Limits::default().max_buffered >> 10,
            ReassemblyConfig::default().max_buffered >> 10,
            Limits::default().max_pending,
        ),
    ];
    (results, notes)
}
