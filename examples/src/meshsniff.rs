//! The main job: a capture in, HTTP and MySQL records out. Packets are grouped into TCP flows,
//! each direction goes through an `l7decode` reassembler, and the two in-order streams through an
//! `l7decode::Connection`; request headers go to `tracectx` for the trace context.

use std::collections::HashMap;
use std::net::SocketAddr;

use l7decode::mongo::Operation;
use l7decode::mysql::Command;
use l7decode::reassembly::{Event as TcpEvent, Reassembler, ReassemblyConfig, TcpFlags};
use l7decode::{Connection, Direction, Event, Limits, Protocol, Timestamp, Transaction};

use crate::capture::{Capture, CaptureError, FlowKey, flow_key, sender_is_client, tcp_segment};

/// One decoded exchange, with the flow's endpoints.
#[derive(Debug, Clone)]
pub struct Record {
    /// The side that opened the connection.
    pub client: SocketAddr,
    /// The side that accepted it.
    pub server: SocketAddr,
    /// The exchange.
    pub exchange: Exchange,
}

/// What was exchanged, by protocol.
#[derive(Debug, Clone)]
pub enum Exchange {
    /// An HTTP request and its response.
    Http(Transaction),
    /// A MySQL command and its reply (boxed: it is the larger record).
    Mysql(Box<Command>),
    /// A MongoDB request and its reply (or reply chain).
    Mongo(Box<Operation>),
}

impl Record {
    /// The HTTP exchange, if this is one.
    pub const fn http(&self) -> Option<&Transaction> {
        match &self.exchange {
            Exchange::Http(t) => Some(t),
            _ => None,
        }
    }

    /// The MySQL command, if this is one.
    pub const fn mysql(&self) -> Option<&Command> {
        match &self.exchange {
            Exchange::Mysql(c) => Some(c),
            _ => None,
        }
    }

    /// The MongoDB operation, if this is one.
    pub const fn mongo(&self) -> Option<&Operation> {
        match &self.exchange {
            Exchange::Mongo(o) => Some(o),
            _ => None,
        }
    }
}

/// Totals of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Packets read.
    pub packets: u64,
    /// TCP segments decoded.
    pub segments: u64,
    /// TCP connections seen.
    pub connections: u64,
    /// Bytes the capture lost (TCP holes).
    pub gap_bytes: u64,
    /// Bytes skipped while resynchronising.
    pub skipped_bytes: u64,
    /// Connections that were TLS.
    pub tls_connections: u64,
    /// Connections that were neither HTTP nor TLS.
    pub unknown_connections: u64,
    /// Messages decoded (HTTP heads, MySQL packets).
    pub messages: u64,
}

struct Flow {
    /// Which endpoint is the client (`FlowKey::lo` when true).
    client_is_lo: Option<bool>,
    halves: [Reassembler; 2],
    conn: Connection,
    done: [bool; 2],
    /// When the flow's last packet was seen: what it held back is delivered as of then.
    last_seen: Timestamp,
}

impl Flow {
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

/// Decodes every flow of `capture`, calling `on_record` for each exchange in the order they
/// complete. A broken packet or connection never stops the rest.
///
/// # Errors
/// A capture that cannot be read at all; later errors (a truncated file) end the run with what
/// was decoded.
pub fn analyze(
    capture: Capture,
    mut on_record: impl FnMut(Record),
) -> (Totals, Option<CaptureError>) {
    let mut totals = Totals::default();
    let mut flows: HashMap<FlowKey, Flow> = HashMap::new();
    let mut failure = None;
    for packet in capture {
        let packet = match packet {
            Ok(p) => p,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        totals.packets += 1;
        let Some(seg) = tcp_segment(&packet) else {
            continue;
        };
        totals.segments += 1;
        let (key, forward) = flow_key(&seg);
        // A bare ACK (or FIN) of a connection already closed must not open a new one.
        if !flows.contains_key(&key) && !seg.syn && seg.payload.is_empty() {
            continue;
        }
        let flow = flows.entry(key).or_insert_with(|| {
            totals.connections += 1;
            Flow::new()
        });
        // The side that sends the first SYN (or receives the first SYN-ACK), else the side whose
        // first bytes look like a request, else the side without a well-known port, else the
        // higher port (ephemeral ports are high) opened the connection.
        if flow.client_is_lo.is_none() {
            let known = |addr: SocketAddr| Protocol::for_port(addr.port()).is_some();
            if let Some(sender_is_client) = sender_is_client(&seg) {
                flow.client_is_lo = Some(forward == sender_is_client);
            } else if !seg.payload.is_empty() {
                flow.client_is_lo = Some(match (known(key.lo), known(key.hi)) {
                    (true, false) => false,
                    (false, true) => true,
                    _ => key.lo.port() > key.hi.port(),
                });
            }
            // The server's port breaks ties the first bytes cannot (see `with_hint`).
            if let Some(client_is_lo) = flow.client_is_lo {
                let (_, server) = endpoints(key, client_is_lo);
                flow.conn =
                    Connection::new(Limits::default()).with_hint(Protocol::for_port(server.port()));
            }
        }
        let Some(client_is_lo) = flow.client_is_lo else {
            continue;
        };
        let dir = if forward == client_is_lo {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let index = usize::from(dir == Direction::ServerToClient);
        let now = Timestamp(seg.ts_ns);
        flow.last_seen = now;
        let mut flags = TcpFlags::NONE;
        if seg.syn {
            flags |= TcpFlags::SYN;
        }
        if seg.fin {
            flags |= TcpFlags::FIN;
        }
        if seg.rst {
            flags |= TcpFlags::RST;
        }
        let Flow {
            halves, conn, done, ..
        } = flow;
        // What this side acknowledges the other side sent: a hole below it is the capture's
        // loss, reported now rather than after the other direction stalled.
        if seg.ack_flag
            && let Some(other) = halves.get_mut(1 - index)
        {
            let ended = deliver(
                other.acknowledged(now, seg.ack),
                conn,
                dir.reverse(),
                &mut totals,
            );
            if ended && let Some(d) = done.get_mut(1 - index) {
                *d = true;
            }
        }
        let Some(half) = halves.get_mut(index) else {
            continue;
        };
        // A snaplen cut: the bytes not captured are reported as missing at once.
        let cut = if seg.truncated {
            let captured = u32::try_from(packet.data.len()).unwrap_or(u32::MAX);
            packet.orig_len.saturating_sub(captured)
        } else {
            0
        };
        let ended = deliver(
            half.truncated_segment(now, seg.seq, flags, seg.payload, cut),
            conn,
            dir,
            &mut totals,
        );
        if ended && let Some(d) = done.get_mut(index) {
            *d = true;
        }
        drain(conn, key, client_is_lo, &mut on_record, &mut totals);
        if done.iter().all(|d| *d)
            && let Some(mut finished) = flows.remove(&key)
        {
            finish(&mut finished, key, &mut on_record, &mut totals);
        }
    }
    // Flows still open at the end, in a fixed order (when they were last seen), so a run's
    // output does not depend on hashing.
    let mut open: Vec<(FlowKey, Flow)> = flows.drain().collect();
    open.sort_by_key(|(key, flow)| (flow.last_seen, *key));
    for (key, mut flow) in open {
        finish(&mut flow, key, &mut on_record, &mut totals);
    }
    (totals, failure)
}

/// Hands reassembled events to the decoder; returns whether the direction ended.
fn deliver(
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

fn endpoints(key: FlowKey, client_is_lo: bool) -> (SocketAddr, SocketAddr) {
    if client_is_lo {
        (key.lo, key.hi)
    } else {
        (key.hi, key.lo)
    }
}

fn drain(
    conn: &mut Connection,
    key: FlowKey,
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
        let (client, server) = endpoints(key, client_is_lo);
        on_record(Record {
            client,
            server,
            exchange,
        });
    }
}

fn finish(flow: &mut Flow, key: FlowKey, on_record: &mut impl FnMut(Record), totals: &mut Totals) {
    let Some(client_is_lo) = flow.client_is_lo else {
        return;
    };
    let Flow {
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
        let ended = deliver(half.flush(now), conn, dir, totals);
        if !already && !ended {
            conn.feed_eof(dir, now);
        }
    }
    let stats = conn.stats();
    totals.skipped_bytes += stats.skipped_bytes;
    totals.messages += stats.messages;
    drain(conn, key, client_is_lo, on_record, totals);
}

/// `OK`, `CLIENT_ERROR`, `SERVER_ERROR`, or `MISSING` (no final response).
pub fn outcome(t: &Transaction) -> &'static str {
    match t.status() {
        None => "MISSING",
        Some(400..=499) => "CLIENT_ERROR",
        Some(500..=599) => "SERVER_ERROR",
        Some(_) => "OK",
    }
}

/// Epoch seconds of a capture timestamp, as the truth files write them.
pub fn seconds(t: Timestamp) -> f64 {
    t.0 as f64 / 1e9
}

/// A statement's shape for grouping: string and number literals become `?`, runs of whitespace
/// one space, lists of them one `?` (`IN (?)`, `VALUES (?)`), and the result is cut to 80
/// characters.
pub fn sql_shape(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len().min(256));
    let mut chars = sql.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // A quoted literal, with doubled or backslashed quotes inside.
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                out.push('?');
                in_word = false;
            }
            d if d.is_ascii_digit() && !in_word => {
                while chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '.')
                {
                    chars.next();
                }
                out.push('?');
            }
            w if w.is_whitespace() => {
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
                in_word = false;
            }
            other => {
                out.push(other);
                in_word = other.is_alphanumeric() || other == '_';
            }
        }
    }
    for (list, one) in [
        ("?, ?", "?"),
        ("?,?", "?"),
        ("(?), (?)", "(?)"),
        ("(?),(?)", "(?)"),
    ] {
        while out.contains(list) {
            out = out.replace(list, one);
        }
    }
    let out = out.trim_end();
    match out.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", out.get(..cut).unwrap_or(out)),
        None => out.to_owned(),
    }
}
