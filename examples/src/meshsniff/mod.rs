//! The main job: a capture in, HTTP, MySQL and MongoDB records out. Packets go through
//! `l7decode`'s flow tracker (flows, direction, reassembly, gaps, closing, eviction), which hands
//! back each connection's records; this module adds what is about captures, the per-endpoint
//! aggregate the table and `/metrics` share, and the exposition.

pub mod endpoint;
pub mod metrics;
pub mod series;
pub mod sketch;
pub mod trace;
pub mod watch;

use std::cell::Cell;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use l7decode::flows::{FlowEvent, FlowEventKind, FlowLimits, FlowStats, FlowTracker};
use l7decode::mongo::Operation;
use l7decode::mysql::Command;
use l7decode::{Event, Protocol, Timestamp, Transaction};

use crate::capture::{Capture, CaptureError, PacketRef, segment_of};

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
    /// Bytes skipped while resynchronising inside HTTP, MySQL or MongoDB.
    pub skipped_bytes: u64,
    /// Bytes of connections in protocols not decoded (TLS, unknown): other traffic.
    pub other_bytes: u64,
    /// Connections that were TLS.
    pub tls_connections: u64,
    /// Connections that were neither HTTP nor TLS.
    pub unknown_connections: u64,
    /// Messages decoded (HTTP heads, MySQL packets).
    pub messages: u64,
    /// Connections the flow tracker evicted (silent too long, or over its bounds).
    pub evicted_connections: u64,
    /// Segments of connections already closed (late ACKs, retransmissions, replayed SYNs),
    /// dropped.
    pub late_segments: u64,
}

/// Decodes every flow of `capture` through an [`l7decode::flows::FlowTracker`] with the default
/// [`FlowLimits`], calling `on_record` for each exchange in the order they complete. Time is the
/// capture's: idle flows are evicted and unanswered requests reported as the capture's clock
/// passes their deadlines. A broken packet or connection never stops the rest.
///
/// # Errors
/// A capture that cannot be read at all; later errors (a truncated file) end the run with what
/// was decoded.
pub fn analyze(capture: Capture, on_record: impl FnMut(Record)) -> (Totals, Option<CaptureError>) {
    analyze_with(capture, FlowLimits::default(), on_record)
}

/// [`analyze`] with other flow-tracker limits.
pub fn analyze_with(
    capture: Capture,
    limits: FlowLimits,
    mut on_record: impl FnMut(Record),
) -> (Totals, Option<CaptureError>) {
    let mut capture = capture;
    analyze_until(&mut capture, limits, |r| {
        on_record(r);
        ControlFlow::Continue(())
    })
}

/// [`analyze_with`] that `on_record` can stop: once it returns [`ControlFlow::Break`] (its
/// output is gone, say), no further packet is read and no further record is made; the totals
/// are those so far, and flows still open are left as they are. The capture is borrowed, so
/// its [`Capture::stats`] and [`Capture::skipped_link_types`] can be read afterwards.
///
/// # Errors
/// As [`analyze`].
pub fn analyze_until(
    capture: &mut Capture,
    limits: FlowLimits,
    mut on_record: impl FnMut(Record) -> ControlFlow<()>,
) -> (Totals, Option<CaptureError>) {
    let mut pipeline = Pipeline::new(limits);
    let mut failure = None;
    let stopped = Cell::new(false);
    // Records of the same packet after a stop are dropped unseen.
    let mut sink = |r: Record| {
        if !stopped.get() && on_record(r).is_break() {
            stopped.set(true);
        }
    };
    loop {
        match capture.next_packet() {
            None => break,
            Some(Ok(packet)) => pipeline.packet(&packet, &mut sink),
            Some(Err(e)) => {
                failure = Some(e);
                break;
            }
        }
        if stopped.get() {
            return (pipeline.totals(), None);
        }
    }
    (pipeline.finish(&mut sink), failure)
}

/// Packets in, records out: the flow tracker driven by packet time, for captures read from a
/// file or live. Records are handed to the caller's closure as they complete.
#[derive(Debug)]
pub struct Pipeline {
    tracker: FlowTracker,
    totals: Totals,
    /// The latest time seen (packets or [`Pipeline::advance`]): time never runs backwards.
    now: Timestamp,
}

impl Pipeline {
    /// A pipeline with these flow-tracker limits.
    pub fn new(limits: FlowLimits) -> Self {
        Self {
            tracker: FlowTracker::new(limits),
            totals: Totals::default(),
            now: Timestamp(0),
        }
    }

    /// Feeds one captured packet (its timestamp is the pipeline's clock).
    pub fn packet(&mut self, packet: &PacketRef<'_>, on_record: &mut impl FnMut(Record)) {
        self.totals.packets += 1;
        self.advance(Timestamp(packet.ts_ns), on_record);
        if let Some(segment) = segment_of(packet) {
            self.totals.segments += 1;
            self.tracker.segment(self.now, &segment);
        }
        self.drain(on_record);
    }

    /// Moves the clock to `now` (ignored when earlier than what was seen), evicting idle flows
    /// and reporting unanswered requests whose deadlines passed: a live capture calls it while no
    /// packets arrive.
    pub fn advance(&mut self, now: Timestamp, on_record: &mut impl FnMut(Record)) {
        self.now = self.now.max(now);
        if self
            .tracker
            .poll_timeout()
            .is_some_and(|due| due <= self.now)
        {
            self.tracker.handle_timeout(self.now);
            self.drain(on_record);
        }
    }

    /// Ends every flow (end of the capture), reporting what they still held, and returns the
    /// run's totals.
    pub fn finish(&mut self, on_record: &mut impl FnMut(Record)) -> Totals {
        self.tracker.feed_eof(self.now);
        self.drain(on_record);
        self.totals()
    }

    /// Totals so far.
    pub fn totals(&self) -> Totals {
        let stats = self.tracker.stats();
        Totals {
            connections: stats.flows_opened,
            gap_bytes: stats.gap_bytes,
            evicted_connections: stats.evicted_idle
                + stats.evicted_max_flows
                + stats.evicted_budget,
            late_segments: stats.dropped_after_close,
            ..self.totals
        }
    }

    /// The flow tracker's counters.
    pub fn flow_stats(&self) -> FlowStats {
        self.tracker.stats()
    }

    fn drain(&mut self, on_record: &mut impl FnMut(Record)) {
        let totals = &mut self.totals;
        while let Some(FlowEvent {
            client,
            server,
            kind,
            ..
        }) = self.tracker.poll_event()
        {
            let exchange = match kind {
                FlowEventKind::Decoded(Event::Transaction(transaction)) => {
                    Exchange::Http(transaction)
                }
                FlowEventKind::Decoded(Event::Mysql(command)) => Exchange::Mysql(command),
                FlowEventKind::Decoded(Event::Mongo(operation)) => {
                    Exchange::Mongo(Box::new(operation))
                }
                FlowEventKind::Decoded(Event::Protocol(Protocol::Tls)) => {
                    totals.tls_connections += 1;
                    continue;
                }
                FlowEventKind::Decoded(Event::Protocol(Protocol::Unknown)) => {
                    totals.unknown_connections += 1;
                    continue;
                }
                FlowEventKind::Closed { stats, .. } => {
                    totals.skipped_bytes += stats.skipped_bytes;
                    totals.other_bytes += stats.other_bytes;
                    totals.messages += stats.messages;
                    continue;
                }
                _ => continue,
            };
            on_record(Record {
                client,
                server,
                exchange,
            });
        }
    }
}

/// `OK`, `CLIENT_ERROR`, `SERVER_ERROR`, or `MISSING` (no final response).
pub fn outcome(t: &Transaction) -> &'static str {
    outcome_of(t.status())
}

/// [`outcome`] of a final status code (`None`: no final response).
pub fn outcome_of(status: Option<u16>) -> &'static str {
    match status {
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
