//! Tier 2 for a whole capture point: every TCP connection an agent sees, from captured segments
//! to the records of [`Connection`], with the bounds a long-running agent needs.
//!
//! A [`FlowTracker`] takes one call per captured segment ([`FlowTracker::segment`], with a
//! [`Segment`] from [`parse_ip_packet`] or from your own packet parser) and queues
//! [`FlowEvent`]s: each decoded [`Event`] tagged with its flow's id and endpoints, plus the
//! flows' lifecycle (opened, and closed by FIN, RST, reuse, eviction or the end of input). It
//! does what every agent would otherwise write around [`Connection`]:
//!
//! * a flow table keyed by the connection's two endpoints, whichever way a segment travels;
//! * which side is the client: the SYN or SYN-ACK when captured, else the first bytes' own
//!   evidence (a request line, a MySQL greeting, a MongoDB header), else the ports
//!   ([`Evidence`] says which, so a guessed direction is visible);
//! * per direction, a [`Reassembler`]; the peer's acknowledgements turn holes the capture lost
//!   into gaps at once; data, gaps and FINs go to the flow's [`Connection`];
//! * RST ends both directions at once (the held bytes of each are flushed as gaps and data,
//!   then both directions of its [`Connection`] get `feed_eof`, so what waited for an answer
//!   is reported at the reset, not at its timeout); a flow closed by FIN or RST is remembered for
//!   [`FlowLimits::closed_linger`] (like TIME_WAIT) so what still arrives for it (the last ACK,
//!   retransmissions, a replayed SYN with the same initial sequence number) is dropped and
//!   counted, never opening a second flow or counting lost bytes;
//! * bounds, all in [`FlowLimits`] and each counted in [`FlowStats`] when hit: idle timeouts
//!   (longer for established flows than for opening or closing ones), a maximum number of
//!   flows and a global byte budget over every flow's state and buffers (the quietest flow is
//!   evicted first, with its pending requests reported as unanswered), and a response timeout
//!   ([`Limits::response_timeout`]) after which a request without an answer is reported.
//!
//! Capture timestamps are expected to be roughly in order: silent flows are found from the
//! least recently touched one, so a flow stamped far in the future delays the idle eviction of
//! those behind it (`max_flows` and the byte budget still bound the memory). Addresses are kept
//! as IPv6, IPv4 mapped: an IPv6 packet from an IPv4-mapped address shares the IPv4 flow.
//!
//! Time is data: the tracker never reads a clock. After each input drain
//! [`FlowTracker::poll_event`]; when [`FlowTracker::poll_timeout`] has passed (in the capture's
//! time), call [`FlowTracker::handle_timeout`]; at the end of the input, [`FlowTracker::feed_eof`].
//!
//! ```
//! use l7decode::Timestamp;
//! use l7decode::flows::{FlowEventKind, FlowLimits, FlowTracker, parse_ip_packet};
//!
//! # fn packets() -> Vec<(u64, Vec<u8>)> { Vec::new() }
//! let mut tracker = FlowTracker::new(FlowLimits::default());
//! // After every call: drain the events (this is where many flows ending at once are closed,
//! // one at a time).
//! let drain = |tracker: &mut FlowTracker| {
//!     while let Some(event) = tracker.poll_event() {
//!         if let FlowEventKind::Decoded(record) = event.kind {
//!             println!("{} -> {}: {record:?}", event.client, event.server);
//!         }
//!     }
//! };
//! for (ts_ns, ip_packet) in packets() {
//!     let now = Timestamp(ts_ns);
//!     if tracker.poll_timeout().is_some_and(|t| t <= now) {
//!         tracker.handle_timeout(now);
//!         drain(&mut tracker);
//!     }
//!     // Anything that is not TCP over unfragmented IP is the caller's to count.
//!     let Ok(segment) = parse_ip_packet(&ip_packet) else { continue };
//!     tracker.segment(now, &segment);
//!     drain(&mut tracker);
//! }
//! tracker.feed_eof(Timestamp(u64::MAX));
//! drain(&mut tracker);
//! ```

mod closed;
mod direction;
mod lru;
mod packet;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use direction::Evidence;
pub use packet::{Segment, parse_ip_packet};

use crate::reassembly::{Delivered, Event as TcpEvent, Reassembler, ReassemblyConfig, TcpFlags};
use crate::{Connection, Direction, Event, Limits, Protocol, Stats, Timestamp};
use closed::{Closed, ClosedFlows};
use lru::Lru;

/// Bounds and timeouts of a [`FlowTracker`]. Every one of them, when hit, is counted in
/// [`FlowStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlowLimits {
    /// Flows tracked at once (default 100,000). A new flow past it evicts the quietest one
    /// ([`CloseCause::EvictedMaxFlows`]).
    pub max_flows: usize,
    /// Bytes all flows may hold together: each flow's fixed state, its reassembly buffers and
    /// its decoder's buffers (default 32 MiB). Past it, the quietest flows are evicted
    /// ([`CloseCause::EvictedBudget`]) until it holds again.
    pub max_bytes: usize,
    /// How long an established flow may stay silent before it is evicted
    /// ([`CloseCause::EvictedIdle`]; default 5 minutes).
    pub idle_timeout: Duration,
    /// The same for a flow still opening (only handshake segments seen) or closing (one side
    /// ended; default 30 seconds).
    pub transient_timeout: Duration,
    /// How long a flow closed by FIN or RST is remembered, so that late segments of it are
    /// dropped (default 60 seconds, Linux's TIME_WAIT).
    pub closed_linger: Duration,
    /// Closed flows remembered at once, oldest forgotten first (default 16,384). Their memory,
    /// about 200 bytes each (3 MiB by default), is bounded by this rather than by
    /// [`FlowLimits::max_bytes`].
    pub max_closed: usize,
    /// Each flow's decoder bounds, including its response timeout.
    pub connection: Limits,
    /// Each direction's reassembly bounds.
    pub reassembly: ReassemblyConfig,
}

impl Default for FlowLimits {
    fn default() -> Self {
        Self {
            max_flows: 100_000,
            max_bytes: 32 << 20,
            idle_timeout: Duration::from_secs(300),
            transient_timeout: Duration::from_secs(30),
            closed_linger: Duration::from_secs(60),
            max_closed: 16_384,
            connection: Limits::default(),
            reassembly: ReassemblyConfig::default(),
        }
    }
}

impl FlowLimits {
    /// No bound at all (no eviction but for silence, every closed flow remembered): only for
    /// inputs you trust.
    pub fn unbounded_dangerous() -> Self {
        Self {
            max_flows: usize::MAX,
            max_bytes: usize::MAX,
            max_closed: usize::MAX,
            connection: Limits::unbounded_dangerous(),
            reassembly: ReassemblyConfig::default()
                .max_buffered(usize::MAX)
                .max_segments(usize::MAX),
            ..Self::default()
        }
    }

    /// Sets [`FlowLimits::max_flows`].
    pub const fn max_flows(mut self, flows: usize) -> Self {
        self.max_flows = flows;
        self
    }

    /// Sets [`FlowLimits::max_bytes`].
    pub const fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets [`FlowLimits::idle_timeout`].
    pub const fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`FlowLimits::transient_timeout`].
    pub const fn transient_timeout(mut self, timeout: Duration) -> Self {
        self.transient_timeout = timeout;
        self
    }

    /// Sets [`FlowLimits::closed_linger`].
    pub const fn closed_linger(mut self, linger: Duration) -> Self {
        self.closed_linger = linger;
        self
    }

    /// Sets [`FlowLimits::max_closed`].
    pub const fn max_closed(mut self, flows: usize) -> Self {
        self.max_closed = flows;
        self
    }

    /// Sets [`FlowLimits::connection`].
    pub const fn connection(mut self, limits: Limits) -> Self {
        self.connection = limits;
        self
    }

    /// Sets [`FlowLimits::reassembly`].
    pub const fn reassembly(mut self, config: ReassemblyConfig) -> Self {
        self.reassembly = config;
        self
    }
}

/// A flow's identity, unique for the tracker's lifetime (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// What the tracker reports, about one flow.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FlowEvent {
    /// The flow.
    pub flow: FlowId,
    /// The side that opened the connection.
    pub client: SocketAddr,
    /// The side that accepted it.
    pub server: SocketAddr,
    /// What happened.
    pub kind: FlowEventKind,
}

/// What happened to a flow.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // `Event` is inline on purpose (see `Event::Mongo`)
pub enum FlowEventKind {
    /// A new flow: its first event.
    Opened {
        /// How client and server were told apart.
        evidence: Evidence,
    },
    /// What the flow's [`Connection`] decoded.
    Decoded(Event),
    /// The flow ended: its last event. Every record it held was reported before this.
    Closed {
        /// Why.
        cause: CloseCause,
        /// The flow's decoder counters (zero when it never carried a byte).
        stats: Stats,
    },
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCause {
    /// Both sides sent FIN and every byte before it was seen or reported missing.
    Fin,
    /// A RST ended both directions.
    Rst,
    /// A new SYN with another initial sequence number reused the addresses.
    Reused,
    /// Silent past [`FlowLimits::idle_timeout`] or [`FlowLimits::transient_timeout`].
    EvictedIdle,
    /// The quietest flow, evicted for a new one past [`FlowLimits::max_flows`].
    EvictedMaxFlows,
    /// The quietest flow, evicted to bring the tracker within [`FlowLimits::max_bytes`].
    EvictedBudget,
    /// [`FlowTracker::feed_eof`]: the input ended with the flow open.
    EndOfInput,
}

impl CloseCause {
    /// Whether the tracker ended the flow (a timeout or a bound) rather than the connection.
    pub const fn is_eviction(self) -> bool {
        matches!(
            self,
            Self::EvictedIdle | Self::EvictedMaxFlows | Self::EvictedBudget
        )
    }
}

/// Counters of a [`FlowTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FlowStats {
    /// Segments given to [`FlowTracker::segment`].
    pub segments: u64,
    /// Flows open now.
    pub flows_open: usize,
    /// Flows opened.
    pub flows_opened: u64,
    /// Flows closed by FIN from both sides.
    pub closed_fin: u64,
    /// Flows closed by RST.
    pub closed_rst: u64,
    /// Flows closed because a new connection reused their addresses.
    pub closed_reused: u64,
    /// Flows still open at [`FlowTracker::feed_eof`].
    pub closed_end_of_input: u64,
    /// Flows evicted for silence.
    pub evicted_idle: u64,
    /// Flows evicted for [`FlowLimits::max_flows`].
    pub evicted_max_flows: u64,
    /// Flows evicted for [`FlowLimits::max_bytes`].
    pub evicted_budget: u64,
    /// Bare ACKs of a recently closed flow (the last ACK of every close), dropped.
    pub late_acks: u64,
    /// Other segments of a recently closed flow, dropped: retransmitted data or FINs, RSTs,
    /// replayed SYNs.
    pub dropped_after_close: u64,
    /// Of those, SYNs replayed with the closed flow's initial sequence number.
    pub dropped_replayed_syn: u64,
    /// Segments that could not open a flow: no SYN and no payload (an ACK, FIN or RST of a
    /// connection the tracker never saw or already forgot).
    pub dropped_no_flow: u64,
    /// Bytes the capture lost, summed over every flow's gaps.
    pub gap_bytes: u64,
    /// Bytes a side sent (or the capture lost) after its FIN: counted, not decoded.
    pub bytes_after_end: u64,
    /// Bytes held by all flows now (what [`FlowLimits::max_bytes`] bounds).
    pub bytes_held: usize,
    /// The most bytes held at the end of any call.
    pub bytes_held_peak: usize,
    /// Closed flows remembered now.
    pub closed_remembered: usize,
}

/// One endpoint as integers: the address as IPv6 (IPv4 mapped) in two halves, then the port;
/// ordered as (address, port).
type Endpoint = (u64, u64, u16);

fn endpoint(addr: SocketAddr) -> Endpoint {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let ip = u128::from(ip);
    ((ip >> 64) as u64, ip as u64, addr.port())
}

fn socket_addr((high, low, port): Endpoint) -> SocketAddr {
    let v6 = Ipv6Addr::from((u128::from(high) << 64) | u128::from(low));
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    SocketAddr::new(ip, port)
}

/// A connection's two endpoints in canonical order (the smaller first), the same for both
/// directions: 40 bytes, compared as integers, hashed in one write (the table's keys are chosen
/// by whoever sends packets, so the hasher stays std's keyed SipHash; one write keeps it cheap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    /// The two addresses' halves: the first endpoint's, then the second's.
    ips: [u64; 4],
    ports: [u16; 2],
}

impl core::hash::Hash for FlowKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let mut bytes = [0u8; 36];
        let (ips, ports) = bytes.split_at_mut(32);
        for (chunk, word) in ips.chunks_exact_mut(8).zip(self.ips) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        for (chunk, port) in ports.chunks_exact_mut(2).zip(self.ports) {
            chunk.copy_from_slice(&port.to_ne_bytes());
        }
        state.write(&bytes);
    }
}

impl FlowKey {
    /// The key of a segment from `src` to `dst`, and whether it travels from the first endpoint
    /// to the second.
    fn of(src: SocketAddr, dst: SocketAddr) -> (Self, bool) {
        let (s, d) = (endpoint(src), endpoint(dst));
        let forward = s <= d;
        let (a, b) = if forward { (s, d) } else { (d, s) };
        let key = Self {
            ips: [a.0, a.1, b.0, b.1],
            ports: [a.2, b.2],
        };
        (key, forward)
    }

    /// The smaller endpoint.
    fn a(&self) -> SocketAddr {
        socket_addr((self.ips[0], self.ips[1], self.ports[0]))
    }

    /// The larger endpoint.
    fn b(&self) -> SocketAddr {
        socket_addr((self.ips[2], self.ips[3], self.ports[1]))
    }
}

/// Which idle timeout applies.
const ESTABLISHED: usize = 0;
const TRANSIENT: usize = 1;

/// A flow's decoding state, allocated at its first segment that is not a bare handshake, so a
/// flood of SYNs costs only the small [`Flow`] each.
#[derive(Debug)]
struct Streams {
    /// Client to server, then server to client.
    halves: [Reassembler; 2],
    conn: Connection,
    /// Whether each direction has ended (FIN or RST delivered to the connection).
    ended: [bool; 2],
    /// Whether a RST was seen.
    reset: bool,
    /// Initial sequence numbers (client, server), once a SYN or SYN-ACK was seen.
    isn: [Option<u32>; 2],
}

/// One tracked flow.
#[derive(Debug)]
struct Flow {
    key: FlowKey,
    id: FlowId,
    client_is_a: bool,
    last_seen: Timestamp,
    /// Initial sequence numbers from SYNs seen before the streams started (client, server).
    isn: [Option<u32>; 2],
    /// Bytes charged to the budget.
    cost: usize,
    /// The response deadline queued for this flow, if any.
    armed: Option<Timestamp>,
    streams: Option<Box<Streams>>,
}

impl Flow {
    fn endpoints(&self) -> (SocketAddr, SocketAddr) {
        if self.client_is_a {
            (self.key.a(), self.key.b())
        } else {
            (self.key.b(), self.key.a())
        }
    }

    fn class(&self) -> usize {
        match &self.streams {
            Some(s) if s.ended.iter().any(|e| *e) => TRANSIENT,
            Some(_) => ESTABLISHED,
            None if self.isn.iter().all(Option::is_some) => ESTABLISHED,
            None => TRANSIENT,
        }
    }
}

/// Heap bytes of a flow without streams: its slot, its link record and its table entry (twice
/// the entry, for the table's spare capacity).
const FLOW_BYTES: usize = size_of::<Option<Flow>>()
    + Lru::<2>::SLOT_BYTES
    + 2 * (size_of::<(FlowKey, u32)>() + 1)
    + size_of::<u32>();

/// Every TCP flow of a capture point; see the [module docs](self).
///
/// ```
/// use l7decode::flows::{FlowEventKind, FlowLimits, FlowTracker, parse_ip_packet};
/// use l7decode::{Event, Timestamp};
///
/// # // An IPv4 packet carrying one TCP segment (checksums are not checked).
/// # fn ipv4_tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
/// #     let total = (40 + payload.len()) as u16;
/// #     let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 6, 0, 0];
/// #     p.extend_from_slice(&src.0);
/// #     p.extend_from_slice(&dst.0);
/// #     p.extend_from_slice(&src.1.to_be_bytes());
/// #     p.extend_from_slice(&dst.1.to_be_bytes());
/// #     p.extend_from_slice(&seq.to_be_bytes());
/// #     p.extend_from_slice(&ack.to_be_bytes());
/// #     p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
/// #     p.extend_from_slice(payload);
/// #     p
/// # }
/// let (client, server) = (([10, 0, 0, 1], 40_000), ([10, 0, 0, 2], 80));
/// let (request, response): (&[u8], &[u8]) =
///     (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
/// let packets = [
///     ipv4_tcp(client, server, 100, 0, 0x02, b""),                   // SYN
///     ipv4_tcp(server, client, 500, 101, 0x12, b""),                 // SYN-ACK
///     ipv4_tcp(client, server, 101, 501, 0x18, request),             // PSH-ACK
///     ipv4_tcp(server, client, 501, 101 + request.len() as u32, 0x18, response),
///     ipv4_tcp(client, server, 101 + request.len() as u32, 0, 0x04, b""), // RST
/// ];
/// let mut tracker = FlowTracker::new(FlowLimits::default());
/// let mut seen = Vec::new();
/// for (i, packet) in packets.iter().enumerate() {
///     tracker.segment(Timestamp(i as u64 * 1_000), &parse_ip_packet(packet)?);
///     while let Some(event) = tracker.poll_event() {
///         match event.kind {
///             FlowEventKind::Decoded(Event::Transaction(t)) => seen.push(format!("{:?}", t.status())),
///             FlowEventKind::Closed { cause, .. } => seen.push(format!("{cause:?}")),
///             _ => {}
///         }
///     }
/// }
/// assert_eq!(seen, ["Some(200)", "Rst"]);
/// # Ok::<(), l7decode::Error>(())
/// ```
#[derive(Debug)]
pub struct FlowTracker {
    limits: FlowLimits,
    map: HashMap<FlowKey, u32>,
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    lru: Lru<2>,
    /// Response deadlines: (when, slot, flow). Stale entries are skipped when popped.
    deadlines: BinaryHeap<Reverse<(Timestamp, u32, FlowId)>>,
    closed: ClosedFlows,
    backlog: Backlog,
    out: Output,
    events: VecDeque<FlowEvent>,
    next_id: u64,
    stats: FlowStats,
}

impl FlowTracker {
    /// A tracker with no flow yet.
    pub fn new(limits: FlowLimits) -> Self {
        Self {
            limits,
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            lru: Lru::new(),
            deadlines: BinaryHeap::new(),
            closed: ClosedFlows::default(),
            backlog: Backlog::default(),
            out: Output::default(),
            events: VecDeque::new(),
            next_id: 0,
            stats: FlowStats::default(),
        }
    }

    /// The limits it was built with.
    pub const fn limits(&self) -> FlowLimits {
        self.limits
    }

    /// Counters so far.
    pub fn stats(&self) -> FlowStats {
        let mut stats = self.stats;
        stats.flows_open = self.map.len();
        stats.closed_remembered = self.closed.len();
        stats.gap_bytes = self.out.counts.gap_bytes;
        stats.bytes_after_end = self.out.counts.after_end;
        stats
    }

    /// The next event; drain until `None` after every call.
    ///
    /// The flows that [`FlowTracker::handle_timeout`] evicts and [`FlowTracker::feed_eof`]
    /// closes are closed here, one at a time as their events are drained, so the queue holds one
    /// flow's events however many flows end at once (until then [`FlowStats::flows_open`] still
    /// counts them). A call of another method first finishes that work.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<FlowEvent> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if !self.close_next_in_backlog() {
                return None;
            }
        }
    }

    /// When [`FlowTracker::handle_timeout`] must next be called: the earliest idle deadline,
    /// response deadline or closed-flow expiry.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let idle = |list: usize, timeout: Duration| {
            let slot = self.lru.front(list)?;
            let flow = self.flow(slot)?;
            Some(after(flow.last_seen, timeout))
        };
        [
            idle(ESTABLISHED, self.limits.idle_timeout),
            idle(TRANSIENT, self.limits.transient_timeout),
            self.deadlines.peek().map(|Reverse((at, ..))| *at),
            self.closed
                .oldest()
                .map(|at| after(at, self.limits.closed_linger)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does what is due at `now`: evicts silent flows, reports requests past their response
    /// timeout, forgets closed flows past their linger.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.finish_backlog();
        self.closed.expire(Timestamp(
            now.0.saturating_sub(nanos(self.limits.closed_linger)),
        ));
        // Silent flows are evicted as the events are drained (see `poll_event`).
        self.backlog.sweep = Some(now);
        // The flows whose response deadline passed, each once: a deadline a connection sets
        // again at or before `now` waits for the next call.
        let mut due = Vec::new();
        while let Some(&Reverse((at, slot, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(flow) = self
                .slots
                .get_mut(slot as usize)
                .and_then(Option::as_mut)
                .filter(|f| f.id == id && f.armed == Some(at))
            {
                flow.armed = None;
                due.push(slot);
            }
        }
        for slot in due {
            if let Some(streams) = self
                .slots
                .get_mut(slot as usize)
                .and_then(Option::as_mut)
                .and_then(|f| f.streams.as_mut())
            {
                streams.lend(&mut self.out, |s, _| s.conn.handle_timeout(now));
            }
            // Not a sign of life: the flow keeps its place among the quietest.
            self.after_input(slot, false);
        }
        self.prune_deadlines();
        self.note_peak();
    }

    /// One captured segment, in capture order. Segments of flows closed by FIN or RST, and
    /// segments that cannot open a flow, are dropped and counted.
    ///
    /// # Panics
    /// Never, on any input.
    pub fn segment(&mut self, now: Timestamp, segment: &Segment<'_>) {
        self.finish_backlog();
        self.stats.segments += 1;
        let (key, from_a) = FlowKey::of(segment.src, segment.dst);
        let slot = match self.map.get(&key) {
            Some(&slot) => match self.reused(slot, segment, from_a) {
                true => {
                    self.close(slot, now, CloseCause::Reused);
                    self.open(now, key, segment, from_a)
                }
                false => Some(slot),
            },
            None => self.open(now, key, segment, from_a),
        };
        if let Some(slot) = slot {
            self.on_segment(slot, now, segment, from_a);
            self.after_input(slot, true);
        }
        self.enforce_budget(now);
        self.note_peak();
    }

    /// The input ended at `now`: every open flow delivers what it held and is closed
    /// ([`CloseCause::EndOfInput`]), quietest first, as the events are drained (see
    /// [`FlowTracker::poll_event`]). Each flow ends as of its own last segment, so that its
    /// records do not depend on when the caller noticed the end.
    pub fn feed_eof(&mut self, now: Timestamp) {
        let _ = now;
        self.finish_backlog();
        let mut open: Vec<(Timestamp, FlowId, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, f)| {
                let f = f.as_ref()?;
                Some((f.last_seen, f.id, u32::try_from(slot).ok()?))
            })
            .collect();
        open.sort_unstable();
        self.backlog.ending = open.into_iter().map(|(_, id, slot)| (id, slot)).collect();
    }

    /// Closes the next flow the backlog holds; whether there was one.
    fn close_next_in_backlog(&mut self) -> bool {
        if let Some(now) = self.backlog.sweep {
            if self.evict_one_silent(now) {
                return true;
            }
            self.backlog.sweep = None;
        }
        while let Some((id, slot)) = self.backlog.ending.pop_front() {
            if let Some(flow) = self.flow(slot).filter(|f| f.id == id) {
                // Each flow ends as of its own last segment, so its records do not depend on
                // when the caller noticed the end.
                let last_seen = flow.last_seen;
                self.close(slot, last_seen, CloseCause::EndOfInput);
                self.note_peak();
                return true;
            }
        }
        false
    }

    /// Carries out every close the backlog still holds (its events are queued).
    fn finish_backlog(&mut self) {
        while self.close_next_in_backlog() {}
    }

    /// Evicts the silent flow whose idle deadline is the earliest, if it is due at `now`.
    fn evict_one_silent(&mut self, now: Timestamp) -> bool {
        let due = |list: usize, timeout: Duration| {
            let slot = self.lru.front(list)?;
            let deadline = after(self.flow(slot)?.last_seen, timeout);
            (deadline <= now).then_some((deadline, slot))
        };
        let earliest = match (
            due(ESTABLISHED, self.limits.idle_timeout),
            due(TRANSIENT, self.limits.transient_timeout),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some((_, slot)) = earliest else {
            return false;
        };
        self.close(slot, now, CloseCause::EvictedIdle);
        self.note_peak();
        true
    }

    fn flow(&self, slot: u32) -> Option<&Flow> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Whether a SYN (from the client) or SYN-ACK (from the server) starts a new connection on
    /// the flow's addresses: it does unless it repeats the side's known initial sequence number
    /// or, when that is unknown, falls near the side's stream.
    fn reused(&self, slot: u32, segment: &Segment<'_>, from_a: bool) -> bool {
        let Some(flow) = self.flow(slot) else {
            return false;
        };
        if !segment.flags.syn() {
            return false;
        }
        let from_client = from_a == flow.client_is_a;
        // A SYN-ACK from the client or a bare SYN from the server is a simultaneous open or
        // noise: not a sign of a new connection.
        if segment.flags.ack() == from_client {
            return false;
        }
        let side = usize::from(!from_client);
        let known = flow.isn.get(side).copied().flatten().or_else(|| {
            let streams = flow.streams.as_ref()?;
            streams.isn.get(side).copied().flatten()
        });
        if let Some(isn) = known {
            return isn != segment.seq;
        }
        flow.streams
            .as_ref()
            .and_then(|streams| streams.halves.get(side)?.next_seq())
            .is_some_and(|next| !closed::same_stream(segment.seq, next))
    }

    /// Opens a flow for a segment of unknown addresses, unless it belongs to a closed flow or
    /// cannot tell a direction.
    fn open(
        &mut self,
        now: Timestamp,
        key: FlowKey,
        segment: &Segment<'_>,
        from_a: bool,
    ) -> Option<u32> {
        if let Some(closed) = self.closed.get(&key) {
            let from_client = from_a == closed.client_is_a;
            if closed.owns(from_client, segment.flags.syn(), segment.seq) {
                let flags = segment.flags;
                let bare = segment.payload.is_empty()
                    && segment.missing == 0
                    && !(flags.syn() || flags.fin() || flags.rst());
                if bare {
                    self.stats.late_acks += 1;
                    return None;
                }
                self.stats.dropped_after_close += 1;
                if segment.flags.syn() && !segment.flags.ack() {
                    self.stats.dropped_replayed_syn += 1;
                }
                return None;
            }
        }
        let carries_data = !segment.payload.is_empty() || segment.missing > 0;
        let Some((sender_is_client, evidence)) = direction::sender_is_client(
            segment.src,
            segment.dst,
            segment.flags,
            segment.payload,
            carries_data,
        ) else {
            self.stats.dropped_no_flow += 1;
            return None;
        };
        // A new connection on the addresses of a closed one: the memory of the old one goes.
        self.closed.forget(&key);
        if self.map.len() >= self.limits.max_flows.max(1) {
            self.evict_quietest(now, CloseCause::EvictedMaxFlows);
        }
        let id = FlowId(self.next_id);
        self.next_id += 1;
        let flow = Flow {
            key,
            id,
            client_is_a: from_a == sender_is_client,
            last_seen: now,
            isn: [None; 2],
            cost: FLOW_BYTES,
            armed: None,
            streams: None,
        };
        let (client, server) = flow.endpoints();
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(place) = self.slots.get_mut(slot as usize) {
                    *place = Some(flow);
                }
                slot
            }
            None => {
                self.slots.push(Some(flow));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.map.insert(key, slot);
        self.stats.bytes_held += FLOW_BYTES;
        self.stats.flows_opened += 1;
        self.events.push_back(FlowEvent {
            flow: id,
            client,
            server,
            kind: FlowEventKind::Opened { evidence },
        });
        Some(slot)
    }

    fn on_segment(&mut self, slot: u32, now: Timestamp, segment: &Segment<'_>, from_a: bool) {
        let limits = self.limits;
        let Some(flow) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        flow.last_seen = flow.last_seen.max(now);
        let from_client = from_a == flow.client_is_a;
        let index = usize::from(!from_client);
        let flags = segment.flags;
        let bare = segment.payload.is_empty() && segment.missing == 0;
        if flow.streams.is_none() {
            if flags.syn() && bare && !flags.fin() && !flags.rst() {
                if let Some(isn) = flow.isn.get_mut(index) {
                    *isn = Some(segment.seq);
                }
                return;
            }
            if bare && !flags.fin() && !flags.rst() {
                // An ACK of a handshake: nothing to reassemble yet.
                return;
            }
            flow.streams = Some(Box::new(Streams::new(flow, &limits, now)));
        }
        let Some(streams) = flow.streams.as_mut() else {
            return;
        };
        let out = &mut self.out;
        let dir = if from_client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        if flags.ack() {
            streams.acknowledged(dir.reverse(), now, segment.ack, out);
        }
        streams.segment(dir, now, segment, out);
        if flags.rst() {
            // RST ends both directions at once: what each held is delivered now.
            streams.end(Direction::ClientToServer, now, out);
            streams.end(Direction::ServerToClient, now, out);
        }
    }

    /// After input reached a flow: its events are queued, its cost recharged, its response
    /// deadline updated, its place among the quietest moved to the back when `touched` (a
    /// segment arrived), and it is closed if both directions ended.
    fn after_input(&mut self, slot: u32, touched: bool) {
        let Some(flow) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let mut cost = FLOW_BYTES;
        let mut ended = None;
        if let Some(streams) = flow.streams.as_mut() {
            cost += streams.bytes();
            if streams.ended.iter().all(|e| *e) {
                ended = Some(if streams.reset {
                    CloseCause::Rst
                } else {
                    CloseCause::Fin
                });
            }
            if let Some(deadline) = streams.conn.poll_timeout()
                && flow.armed.is_none_or(|armed| deadline < armed)
            {
                flow.armed = Some(deadline);
                self.deadlines.push(Reverse((deadline, slot, flow.id)));
            }
        }
        if !self.out.decoded.is_empty() {
            let (client, server) = flow.endpoints();
            self.out.tag(&mut self.events, flow.id, client, server);
        }
        self.stats.bytes_held = self.stats.bytes_held - flow.cost + cost;
        flow.cost = cost;
        let last_seen = flow.last_seen;
        if touched {
            self.lru.touch(slot, flow.class());
        }
        if let Some(cause) = ended {
            self.close(slot, last_seen, cause);
        }
        // Stale deadlines (flows closed or re-armed) are dropped once they outnumber the flows.
        if self.deadlines.len() > 2 * self.map.len() + 1024 {
            let slots = &self.slots;
            self.deadlines.retain(|Reverse((at, slot, id))| {
                slots
                    .get(*slot as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|f| f.id == *id && f.armed == Some(*at))
            });
        }
    }

    /// Evicts the flow silent the longest, whichever its idle class.
    fn evict_quietest(&mut self, now: Timestamp, cause: CloseCause) -> bool {
        let candidate = |list| {
            let slot = self.lru.front(list)?;
            Some((self.flow(slot)?.last_seen, slot))
        };
        let quietest = match (candidate(ESTABLISHED), candidate(TRANSIENT)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some((_, slot)) = quietest else {
            return false;
        };
        self.close(slot, now, cause);
        true
    }

    fn enforce_budget(&mut self, now: Timestamp) {
        while self.stats.bytes_held > self.limits.max_bytes {
            if !self.evict_quietest(now, CloseCause::EvictedBudget) {
                break;
            }
        }
    }

    /// Ends a flow: what it held is delivered, unanswered requests reported, the close event
    /// queued, and (for FIN and RST) the flow remembered.
    fn close(&mut self, slot: u32, now: Timestamp, cause: CloseCause) {
        let Some(mut flow) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.map.remove(&flow.key);
        self.lru.remove(slot);
        self.free.push(slot);
        self.stats.bytes_held -= flow.cost;
        let (client, server) = flow.endpoints();
        let mut stats = Stats::default();
        let mut ends = [None; 2];
        let mut client_isn = flow.isn[0];
        if let Some(streams) = flow.streams.as_mut() {
            // What the flow held is delivered as of its last segment, whenever it is evicted.
            let at = flow.last_seen;
            streams.end(Direction::ClientToServer, at, &mut self.out);
            streams.end(Direction::ServerToClient, at, &mut self.out);
            self.out.tag(&mut self.events, flow.id, client, server);
            stats = streams.conn.stats();
            ends = [streams.halves[0].next_seq(), streams.halves[1].next_seq()];
            client_isn = client_isn.or(streams.isn[0]);
        }
        let counter = match cause {
            CloseCause::Fin => &mut self.stats.closed_fin,
            CloseCause::Rst => &mut self.stats.closed_rst,
            CloseCause::Reused => &mut self.stats.closed_reused,
            CloseCause::EvictedIdle => &mut self.stats.evicted_idle,
            CloseCause::EvictedMaxFlows => &mut self.stats.evicted_max_flows,
            CloseCause::EvictedBudget => &mut self.stats.evicted_budget,
            CloseCause::EndOfInput => &mut self.stats.closed_end_of_input,
        };
        *counter += 1;
        if matches!(cause, CloseCause::Fin | CloseCause::Rst) {
            let closed = Closed {
                client_is_a: flow.client_is_a,
                client_isn,
                ends,
                closed_at: now,
            };
            self.closed.insert(flow.key, closed, self.limits.max_closed);
        }
        self.events.push_back(FlowEvent {
            flow: flow.id,
            client,
            server,
            kind: FlowEventKind::Closed { cause, stats },
        });
        self.prune_deadlines();
    }

    /// Drops stale response deadlines (of closed or re-armed flows) from the top of the heap,
    /// so that `poll_timeout` never reports one; deeper ones go when they reach the top.
    fn prune_deadlines(&mut self) {
        while let Some(&Reverse((at, slot, id))) = self.deadlines.peek() {
            let live = self
                .flow(slot)
                .is_some_and(|f| f.id == id && f.armed == Some(at));
            if live {
                break;
            }
            self.deadlines.pop();
        }
    }

    fn note_peak(&mut self) {
        self.stats.bytes_held_peak = self.stats.bytes_held_peak.max(self.stats.bytes_held);
    }
}

/// `at` plus `duration`, saturating.
fn after(at: Timestamp, duration: Duration) -> Timestamp {
    Timestamp(at.0.saturating_add(nanos(duration)))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Closes a call asked for, carried out one flow at a time as the events are drained, so that
/// one call never queues the events of every flow at once.
#[derive(Debug, Default)]
struct Backlog {
    /// `handle_timeout`'s time: flows silent past their timeout by then are still to evict.
    sweep: Option<Timestamp>,
    /// `feed_eof`: the flows still to close, quietest first.
    ending: VecDeque<(FlowId, u32)>,
}

/// What the flows' connections produce while the tracker works on one of them.
#[derive(Debug, Default)]
struct Output {
    /// Decoded events: one queue, lent to whichever connection is being fed, so an idle
    /// connection holds no queue of its own (an empty queue that once held events keeps its
    /// capacity, several `Event`s' worth, for every flow).
    decoded: VecDeque<Event>,
    counts: Counts,
}

/// Byte counts over every flow's deliveries.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Bytes the capture lost.
    gap_bytes: u64,
    /// Bytes past the end of a direction (after its FIN), not decoded.
    after_end: u64,
}

impl Output {
    /// Moves the decoded events to the tracker's queue, tagged with their flow.
    fn tag(
        &mut self,
        events: &mut VecDeque<FlowEvent>,
        flow: FlowId,
        client: SocketAddr,
        server: SocketAddr,
    ) {
        events.extend(self.decoded.drain(..).map(|event| FlowEvent {
            flow,
            client,
            server,
            kind: FlowEventKind::Decoded(event),
        }));
    }
}

impl Streams {
    fn new(flow: &Flow, limits: &FlowLimits, now: Timestamp) -> Self {
        let mut halves = [
            Reassembler::new(limits.reassembly),
            Reassembler::new(limits.reassembly),
        ];
        // A handshake seen before the first data fixes where each stream starts.
        for (half, isn) in halves.iter_mut().zip(flow.isn) {
            if let Some(isn) = isn {
                let _ = half.segment(now, isn, TcpFlags::SYN, &[]).count();
            }
        }
        let server = flow.endpoints().1;
        let conn = Connection::new(limits.connection).with_hint(Protocol::for_port(server.port()));
        Self {
            halves,
            conn,
            ended: [false; 2],
            reset: false,
            isn: flow.isn,
        }
    }

    /// Heap bytes: this state, what the reassemblers hold out of order, what the decoder
    /// buffers.
    fn bytes(&self) -> usize {
        size_of::<Self>()
            + self
                .halves
                .iter()
                .map(Reassembler::heap_bytes)
                .sum::<usize>()
            + self.conn.buffered_bytes()
    }

    /// Runs `f` with the output's event queue lent to the connection.
    fn lend<R>(&mut self, out: &mut Output, f: impl FnOnce(&mut Self, &mut Counts) -> R) -> R {
        self.conn.swap_events(&mut out.decoded);
        let result = f(self, &mut out.counts);
        self.conn.swap_events(&mut out.decoded);
        result
    }

    /// Gives `dir`'s reassembler `input` and hands what it delivers to the connection, with the
    /// output's event queue lent to it.
    fn reassemble(&mut self, dir: Direction, now: Timestamp, input: Input<'_>, out: &mut Output) {
        let i = index(dir);
        self.lend(out, |s, counts| {
            let Self {
                halves,
                conn,
                ended,
                reset,
                ..
            } = s;
            if let (Some(half), Some(ended)) = (halves.get_mut(i), ended.get_mut(i)) {
                let delivered = match input {
                    Input::Acknowledged(ack) => half.acknowledged(now, ack),
                    Input::Segment(seg) => {
                        half.truncated_segment(now, seg.seq, seg.flags, seg.payload, seg.missing)
                    }
                    Input::Flush => half.flush(now),
                };
                deliver(delivered, conn, dir, ended, reset, counts);
            }
        });
    }

    /// `dir`'s peer acknowledged every byte of `dir` before `ack`.
    fn acknowledged(&mut self, dir: Direction, now: Timestamp, ack: u32, out: &mut Output) {
        self.reassemble(dir, now, Input::Acknowledged(ack), out);
    }

    /// A segment travelling in `dir`.
    fn segment(&mut self, dir: Direction, now: Timestamp, segment: &Segment<'_>, out: &mut Output) {
        let flags = segment.flags;
        // A SYN from the client or a SYN-ACK from the server: the side's stream starts here.
        if flags.syn()
            && flags.ack() == (dir == Direction::ServerToClient)
            && let Some(isn) = self.isn.get_mut(index(dir))
        {
            isn.get_or_insert(segment.seq);
        }
        self.reassemble(dir, now, Input::Segment(segment), out);
    }

    /// Ends `dir`: every hole is given up on, what was held delivered (even after a FIN: what
    /// was held past it is counted, not lost), then the end fed once.
    fn end(&mut self, dir: Direction, now: Timestamp, out: &mut Output) {
        self.reassemble(dir, now, Input::Flush, out);
        let i = index(dir);
        if let Some(ended) = self.ended.get_mut(i)
            && !*ended
        {
            self.lend(out, |s, _| s.conn.feed_eof(dir, now));
            if let Some(ended) = self.ended.get_mut(i) {
                *ended = true;
            }
        }
    }
}

/// What one direction's reassembler is given.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// The peer acknowledged everything before this sequence number.
    Acknowledged(u32),
    /// A segment of this direction.
    Segment(&'a Segment<'a>),
    /// The end: every hole given up on.
    Flush,
}

const fn index(dir: Direction) -> usize {
    match dir {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// Hands one direction's reassembled events to the decoder.
fn deliver(
    events: Delivered<'_>,
    conn: &mut Connection,
    dir: Direction,
    ended: &mut bool,
    reset: &mut bool,
    counts: &mut Counts,
) {
    for event in events {
        match event {
            TcpEvent::Data { now, bytes } if !*ended => {
                // Accepting everything is `feed`'s contract for an open direction.
                let _ = conn.feed(dir, now, bytes);
            }
            TcpEvent::Data { bytes, .. } => counts.after_end += bytes.len() as u64,
            TcpEvent::Gap { now, missing } if !*ended => {
                counts.gap_bytes += missing;
                conn.feed_gap(dir, now, missing);
            }
            TcpEvent::Gap { missing, .. } => counts.after_end += missing,
            TcpEvent::Fin { now } => {
                if !*ended {
                    conn.feed_eof(dir, now);
                    *ended = true;
                }
            }
            // The direction ends when the tracker flushes it: what it held out of order is
            // delivered (or reported missing) first.
            TcpEvent::Rst { .. } => *reset = true,
        }
    }
}
