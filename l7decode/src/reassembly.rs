//! Sans-IO reassembly of one direction of a TCP connection into an in-order byte stream.
//!
//! A [`Reassembler`] takes the captured segments of **one direction** (sequence number, flags,
//! payload) in capture order and hands back what became contiguous, as [`Event`]s:
//!
//! * in-order bytes are delivered at once and **never copied**: the [`Event::Data`] slice borrows
//!   the payload the caller passed in;
//! * segments that arrive ahead of a hole are copied into a bounded, sequence-ordered store and
//!   delivered (from that store) as soon as the hole fills;
//! * retransmissions and overlaps are trimmed, so every stream byte is delivered at most once;
//! * a hole that cannot be filled (the store exceeds [`ReassemblyConfig::max_buffered`] or
//!   [`ReassemblyConfig::max_segments`], or [`Reassembler::flush`] at the end of a capture) is
//!   reported as an explicit [`Event::Gap`] carrying the exact number of missing bytes, and
//!   delivery continues after it, which is what decoders need to skip or resynchronise;
//! * FIN and RST become [`Event::Fin`] (once every byte before it was delivered) and
//!   [`Event::Rst`].
//!
//! Sequence arithmetic is modulo 2<sup>32</sup>: streams may start anywhere and wrap around. A
//! segment is placed by its signed distance from the next expected byte, so one more than
//! 2<sup>31</sup> bytes ahead reads as old and is dropped as a retransmission (RFC 1323's PAWS
//! problem; captures with such jumps need the caller to start a new `Reassembler`).
//!
//! The first segment fixes where the stream starts (see [`Reassembler::segment`]): bytes before it
//! are treated as already delivered, so feed a direction from its SYN when the capture has it.
//!
//! Overlapping copies are expected to carry the same bytes (real retransmissions do). Where they
//! differ, the copy already delivered or held wins, except that an in-order payload is always
//! delivered whole (that is what keeps it zero-copy) and replaces the held bytes it covers.
//!
//! Like the rest of the crate it never performs I/O, reads a clock or panics. Between calls it
//! keeps at most [`ReassemblyConfig::max_buffered`] bytes in at most
//! [`ReassemblyConfig::max_segments`] held pieces, plus the held segments the last call delivered
//! (released at the start of the next call); the bounds are checked after each segment is added,
//! so one call may briefly hold one more segment than the bounds allow.
//!
//! ```
//! use l7decode::Timestamp;
//! use l7decode::reassembly::{Event, ReassemblyConfig, Reassembler, TcpFlags};
//!
//! let mut r = Reassembler::new(ReassemblyConfig::default());
//! let mut stream = Vec::new();
//! // SYN with ISN 1000: the first data byte has sequence number 1001.
//! assert_eq!(r.segment(Timestamp(1), 1000, TcpFlags::SYN, b"").count(), 0);
//! // " world" arrives before "hello": it is held...
//! assert_eq!(r.segment(Timestamp(2), 1006, TcpFlags::NONE, b" world").count(), 0);
//! // ...and delivered right after "hello" fills the hole.
//! for event in r.segment(Timestamp(3), 1001, TcpFlags::NONE, b"hello") {
//!     if let Event::Data { bytes, .. } = event {
//!         stream.extend_from_slice(bytes);
//!     }
//! }
//! assert_eq!(stream, b"hello world");
//! ```

#![deny(clippy::indexing_slicing)]

use core::fmt;
use core::iter::FusedIterator;
use core::ops::{BitOr, BitOrAssign};
use std::collections::BTreeMap;

use crate::Timestamp;

/// The TCP header flags the reassembler looks at: an open newtype over the flags byte of the TCP
/// header (byte 13), so `TcpFlags(tcp_header[13])` can be passed straight through.
///
/// Every flag of that byte has its constant; the reassembler looks only at [`TcpFlags::FIN`],
/// [`TcpFlags::SYN`] and [`TcpFlags::RST`], the flow tracker ([`crate::flows`]) also at
/// [`TcpFlags::ACK`]; the others ([`TcpFlags::PSH`], [`TcpFlags::URG`], [`TcpFlags::ECE`],
/// [`TcpFlags::CWR`]) are ignored, so the byte can be passed as it is. Combine flags with `|`.
///
/// ```
/// use l7decode::reassembly::TcpFlags;
///
/// let tcp_header = [0u8; 20]; // …as captured
/// let flags = TcpFlags(tcp_header[13]);
/// assert!(!flags.rst());
/// assert!((TcpFlags::PSH | TcpFlags::ACK).ack());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flag set (an ordinary data segment).
    pub const NONE: Self = Self(0);
    /// FIN (`0x01`): the sender has no more data after this segment's payload.
    pub const FIN: Self = Self(0x01);
    /// SYN (`0x02`): opens the stream; consumes one sequence number before the data.
    pub const SYN: Self = Self(0x02);
    /// RST (`0x04`): the connection was reset.
    pub const RST: Self = Self(0x04);
    /// PSH (`0x08`): push the data to the application (ignored).
    pub const PSH: Self = Self(0x08);
    /// ACK (`0x10`): the acknowledgement number is meaningful.
    pub const ACK: Self = Self(0x10);
    /// URG (`0x20`): the urgent pointer is meaningful (ignored; urgent data stays in the stream).
    pub const URG: Self = Self(0x20);
    /// ECE (`0x40`): ECN echo (ignored).
    pub const ECE: Self = Self(0x40);
    /// CWR (`0x80`): congestion window reduced (ignored).
    pub const CWR: Self = Self(0x80);

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether SYN is set.
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }

    /// Whether FIN is set.
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }

    /// Whether RST is set.
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }

    /// Whether ACK is set.
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
}

impl BitOr for TcpFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// Bounds on what one direction's [`Reassembler`] holds while waiting for a hole to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReassemblyConfig {
    /// Bytes held out of order, waiting for a hole to fill (default 64 KiB). Past it, the first
    /// hole is given up on and reported as an [`Event::Gap`].
    pub max_buffered: usize,
    /// Out-of-order segments held at once (default 1024). Past it, the first hole is given up on.
    pub max_segments: usize,
}

impl ReassemblyConfig {
    /// Sets [`ReassemblyConfig::max_buffered`].
    pub const fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Sets [`ReassemblyConfig::max_segments`].
    pub const fn max_segments(mut self, segments: usize) -> Self {
        self.max_segments = segments;
        self
    }
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_buffered: 64 << 10,
            max_segments: 1024,
        }
    }
}

/// Counters of one [`Reassembler`], for the caller's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReassemblyStats {
    /// Bytes delivered in [`Event::Data`].
    pub bytes_delivered: u64,
    /// The most bytes held out of order at the end of any call (never above
    /// [`ReassemblyConfig::max_buffered`]).
    pub bytes_held_peak: usize,
    /// Segments that arrived ahead of the next expected byte and had bytes to hold.
    pub segments_out_of_order: u64,
    /// Bytes received more than once (retransmissions, overlaps) and trimmed.
    pub bytes_retransmitted: u64,
    /// [`Event::Gap`]s reported.
    pub gaps: u64,
    /// Bytes reported missing, summed over every [`Event::Gap`].
    pub bytes_missing: u64,
}

/// What one call to [`Reassembler::segment`] or [`Reassembler::flush`] produced, in stream order.
///
/// Every event of a call carries that call's `now`: the time its bytes became contiguous. The
/// exception: held bytes delivered because a hole before them was given up on keep the time they
/// arrived, as no later byte made them contiguous.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The next bytes of the stream. Borrowed from the caller's payload when they arrived in order
    /// (no copy), from the reassembler's store when they had been held.
    Data {
        /// Time of the call that delivered them (see the type docs for held bytes after a gap).
        now: Timestamp,
        /// The bytes, contiguous with everything delivered before.
        bytes: &'a [u8],
    },
    /// Bytes the capture lost: the stream continues `missing` bytes after the last delivered one.
    Gap {
        /// Time of the call that gave up on the hole.
        now: Timestamp,
        /// Exact number of stream bytes skipped (from the sequence numbers).
        missing: u64,
    },
    /// The sender closed its side: every byte before its FIN has been delivered (or reported
    /// missing). Emitted once.
    Fin {
        /// Time of the call that completed the stream.
        now: Timestamp,
    },
    /// The connection was reset. Emitted once, after the data that was in order at the time.
    ///
    /// Nothing more of this direction will be delivered by the network, though the capture may
    /// still show retransmissions of it. What to do: [`Reassembler::flush`] (any bytes held
    /// beyond a hole become a gap and data, as no retransmission will fill the hole), feed
    /// that to the [`Connection`](crate::Connection), then end **both** of its directions with
    /// [`Connection::feed_eof`](crate::Connection::feed_eof): a reset ends the connection, not
    /// one side of it. [`crate::flows::FlowTracker`] does exactly that.
    Rst {
        /// Time of the segment carrying the RST.
        now: Timestamp,
    },
}

impl Event<'_> {
    /// The time the event carries.
    pub const fn now(&self) -> Timestamp {
        match *self {
            Self::Data { now, .. }
            | Self::Gap { now, .. }
            | Self::Fin { now }
            | Self::Rst { now } => now,
        }
    }
}

/// Payloads are redacted: `Data` shows its length only.
impl fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Data { now, bytes } => f
                .debug_struct("Data")
                .field("now", now)
                .field("len", &bytes.len())
                .finish(),
            Self::Gap { now, missing } => f
                .debug_struct("Gap")
                .field("now", now)
                .field("missing", missing)
                .finish(),
            Self::Fin { now } => f.debug_struct("Fin").field("now", now).finish(),
            Self::Rst { now } => f.debug_struct("Rst").field("now", now).finish(),
        }
    }
}

/// The largest TCP window (RFC 7323, window scale 14): how far ahead an acknowledgement may be.
const MAX_WINDOW: i64 = 1 << 30;

/// One queued output of the current call; resolved into an [`Event`] by [`Delivered`].
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// `payload[from..]` of the current `segment` call.
    Payload {
        from: usize,
    },
    /// `ready[index][from..]`: a held segment that became contiguous; `arrived` when it did so
    /// because a hole before it was given up on (no byte filled it, so its own time stands).
    Held {
        index: usize,
        from: usize,
        arrived: Option<Timestamp>,
    },
    Gap(u64),
    Fin,
    Rst,
}

/// The stream of one TCP direction, put back in order. See the [module docs](self).
///
/// ```
/// use l7decode::Timestamp;
/// use l7decode::reassembly::{Event, Reassembler, ReassemblyConfig, TcpFlags};
///
/// let mut r = Reassembler::new(ReassemblyConfig::default());
/// let _ = r.segment(Timestamp(1), 1, TcpFlags::ACK, b"ab"); // fixes the start: "ab" delivered
/// let _ = r.segment(Timestamp(2), 5, TcpFlags::ACK, b"ef"); // held: "cd" is missing
/// // The capture never shows "cd": the end of the input gives the hole up.
/// let events: Vec<_> = r.flush(Timestamp(3)).collect();
/// assert_eq!(
///     events,
///     [Event::Gap { now: Timestamp(3), missing: 2 }, Event::Data { now: Timestamp(2), bytes: b"ef" }]
/// );
/// ```
pub struct Reassembler {
    config: ReassemblyConfig,
    /// Whether the first segment has fixed the stream's start.
    started: bool,
    /// Sequence number of the next expected byte.
    next_seq: u32,
    /// Stream offset of the next expected byte (bytes delivered plus bytes reported missing).
    next_off: u64,
    /// Out-of-order bytes by stream offset; never overlapping, every key above `next_off`.
    held: BTreeMap<u64, (Timestamp, Vec<u8>)>,
    held_bytes: usize,
    /// Stream offset of the FIN, once seen.
    fin_off: Option<u64>,
    fin_emitted: bool,
    rst_emitted: bool,
    /// Held segments delivered by the current call (dropped at the start of the next one).
    ready: Vec<Vec<u8>>,
    /// Outputs of the current call, in order.
    pending: Vec<Pending>,
    stats: ReassemblyStats,
}

/// Shows positions and counters, never held payload bytes.
impl fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembler")
            .field("config", &self.config)
            .field("next_seq", &self.next_seq())
            .field("stream_offset", &self.next_off)
            .field("segments_held", &self.held.len())
            .field("bytes_held", &self.held_bytes)
            .field("fin_emitted", &self.fin_emitted)
            .field("rst_emitted", &self.rst_emitted)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(ReassemblyConfig::default())
    }
}

impl Reassembler {
    /// A reassembler that has seen nothing yet: its first segment fixes where the stream starts.
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            started: false,
            next_seq: 0,
            next_off: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            fin_off: None,
            fin_emitted: false,
            rst_emitted: false,
            ready: Vec::new(),
            pending: Vec::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// Feeds one captured segment of this direction and returns what it made contiguous.
    ///
    /// `seq` is the segment's sequence number. The first segment fixes the stream's start: with
    /// SYN, the byte after the ISN (`seq + 1`); without (a capture that starts mid-stream), `seq`
    /// itself. Later SYNs (retransmitted, or carrying data) also place their data at `seq + 1`.
    ///
    /// The returned [`Delivered`] yields, in order: the in-order part of `payload` (borrowed, not
    /// copied), held bytes that became contiguous, [`Event::Gap`]s for holes given up on because
    /// the store exceeded its bounds, then [`Event::Fin`] / [`Event::Rst`].
    ///
    /// Drain it before the next call to see every event. The reassembler's state is fully updated
    /// before this returns, so dropping it early loses those events but never corrupts the stream.
    ///
    /// # Panics
    /// Never, on any input.
    pub fn segment<'a>(
        &'a mut self,
        now: Timestamp,
        seq: u32,
        flags: TcpFlags,
        payload: &'a [u8],
    ) -> Delivered<'a> {
        self.truncated_segment(now, seq, flags, payload, 0)
    }

    /// Like [`Reassembler::segment`], for a segment the capture cut short (a snaplen): `payload`
    /// is what was kept and `missing` how many of its bytes were not captured. When the segment
    /// is in order, those bytes are reported as an [`Event::Gap`] at once, instead of waiting
    /// for the out-of-order store to give up on the hole (unless bytes already held fall inside
    /// it, which then fill it as usual).
    ///
    /// # Panics
    /// Never, on any input.
    pub fn truncated_segment<'a>(
        &'a mut self,
        now: Timestamp,
        seq: u32,
        flags: TcpFlags,
        payload: &'a [u8],
        missing: u32,
    ) -> Delivered<'a> {
        self.pending.clear();
        self.ready.clear();

        let data_seq = seq.wrapping_add(u32::from(flags.syn()));
        if !self.started {
            self.started = true;
            self.next_seq = data_seq;
        }

        // Signed distance of the payload's first byte from the next expected byte.
        let dist = i64::from(data_seq.wrapping_sub(self.next_seq) as i32);
        let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        // Stream offset of the FIN (the byte after the payload), computed before delivery moves
        // `next_off`.
        let sent = len.saturating_add(u64::from(missing));
        let fin_off = flags.fin().then(|| self.offset_at(dist, sent));
        let end_off = self.offset_at(dist, sent);

        if dist <= 0 {
            // Starts at or before the next expected byte: trim what was already delivered and
            // deliver the rest in place.
            let old = dist.unsigned_abs().min(len);
            self.stats.bytes_retransmitted = self.stats.bytes_retransmitted.saturating_add(old);
            if old < len {
                let from = usize::try_from(old).unwrap_or(usize::MAX);
                self.pending.push(Pending::Payload { from });
                self.advance(len - old);
                self.drain_contiguous(false);
            }
            // The bytes the capture cut off are known to be missing: say so now.
            if missing > 0 && self.held.range(..end_off).next().is_none() {
                self.skip_to(end_off);
                self.drain_contiguous(true);
            }
        } else if len > 0 {
            self.stats.segments_out_of_order = self.stats.segments_out_of_order.saturating_add(1);
            let start = self.next_off.saturating_add(dist.unsigned_abs());
            self.hold(now, start, payload);
            self.enforce_bounds();
        }

        if self.fin_off.is_none() {
            self.fin_off = fin_off;
        }
        self.check_fin();
        if flags.rst() && !self.rst_emitted {
            self.rst_emitted = true;
            self.pending.push(Pending::Rst);
        }
        self.note_peak();
        self.delivered(now, payload)
    }

    /// The other direction acknowledged every byte before sequence number `ack` (pass the ACK
    /// field of each segment the other direction sends with its ACK flag set).
    ///
    /// The receiver has those bytes, so a hole below `ack` is a loss of the capture, not of the
    /// network: no retransmission will fill it. It is reported at once as an [`Event::Gap`],
    /// followed by the held bytes after it, instead of stalling this direction until the store
    /// gives up (by which time the other direction has long moved on, and a decoder pairing the
    /// two would see answers before their questions). A FIN's sequence number is not a byte, so
    /// acknowledging it reports nothing.
    ///
    /// An acknowledgement more than 2<sup>30</sup> bytes ahead (more than any TCP window, RFC 7323)
    /// is ignored: it cannot belong to this stream.
    ///
    /// This trusts the capture's order across directions: bytes that show up after an
    /// acknowledgement of them (a capture point that reorders the two directions) arrive as
    /// already reported missing and are trimmed like a retransmission.
    ///
    /// # Panics
    /// Never, on any input.
    pub fn acknowledged(&mut self, now: Timestamp, ack: u32) -> Delivered<'_> {
        self.pending.clear();
        self.ready.clear();
        let dist = i64::from(ack.wrapping_sub(self.next_seq) as i32);
        // No window is larger than 2^30 bytes (RFC 7323): an acknowledgement farther ahead than
        // that belongs to another stream (a new connection on the same addresses, a forged
        // segment) and says nothing about this one's holes.
        if self.started && !self.fin_emitted && dist > 0 && dist <= MAX_WINDOW {
            let mut acked = self.next_off.saturating_add(dist.unsigned_abs());
            if let Some(fin_off) = self.fin_off {
                acked = acked.min(fin_off);
            }
            while self.next_off < acked {
                let hole_end = self
                    .held
                    .keys()
                    .next()
                    .map_or(acked, |&start| start.min(acked));
                self.skip_to(hole_end);
                self.drain_contiguous(true);
            }
            self.check_fin();
        }
        self.delivered(now, &[])
    }

    /// Gives up on every hole: the end of the capture, or the connection is gone.
    ///
    /// Yields, in stream order, an [`Event::Gap`] for each hole and every held byte, then, when a
    /// FIN was seen, a gap for any bytes missing before it and [`Event::Fin`]. Afterwards nothing
    /// is held; the reassembler stays usable.
    ///
    /// Drain the result to see every event; dropping it early never corrupts the state.
    ///
    /// # Panics
    /// Never.
    pub fn flush(&mut self, now: Timestamp) -> Delivered<'_> {
        self.pending.clear();
        self.ready.clear();
        while let Some(&start) = self.held.keys().next() {
            self.skip_to(start);
            self.drain_contiguous(true);
        }
        if let Some(fin_off) = self.fin_off
            && !self.fin_emitted
        {
            self.skip_to(fin_off);
        }
        self.check_fin();
        self.delivered(now, &[])
    }

    /// The counters so far.
    pub const fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// The configuration it was built with.
    pub const fn config(&self) -> ReassemblyConfig {
        self.config
    }

    /// Sequence number of the next expected byte, once a segment has fixed the stream's start.
    pub const fn next_seq(&self) -> Option<u32> {
        if self.started {
            Some(self.next_seq)
        } else {
            None
        }
    }

    /// Stream offset of the next expected byte: bytes delivered plus bytes reported missing.
    pub const fn stream_offset(&self) -> u64 {
        self.next_off
    }

    /// Bytes currently held out of order.
    pub const fn bytes_held(&self) -> usize {
        self.held_bytes
    }

    /// Heap bytes the reassembler holds now: the bytes held out of order with their
    /// bookkeeping, and its scratch space.
    pub fn heap_bytes(&self) -> usize {
        // Per held piece: its allocation's header and a share of a B-tree node (about 11
        // entries of key, time and vector per node).
        const PER_PIECE: usize = size_of::<(u64, (Timestamp, Vec<u8>))>() * 3 / 2;
        self.held_bytes
            + self.held.len() * PER_PIECE
            + self.ready.iter().map(Vec::capacity).sum::<usize>()
            + self.ready.capacity() * size_of::<Vec<u8>>()
            + self.pending.capacity() * size_of::<Pending>()
    }

    /// Segments (or non-overlapping pieces of them) currently held out of order.
    pub fn segments_held(&self) -> usize {
        self.held.len()
    }

    /// Whether [`Event::Fin`] has been emitted.
    pub const fn is_finished(&self) -> bool {
        self.fin_emitted
    }

    /// Stream offset `dist + len` bytes after the next expected byte, clamped at 0.
    fn offset_at(&self, dist: i64, len: u64) -> u64 {
        if dist >= 0 {
            self.next_off
                .saturating_add(dist.unsigned_abs())
                .saturating_add(len)
        } else {
            self.next_off
                .saturating_add(len)
                .saturating_sub(dist.unsigned_abs())
        }
    }

    /// Moves the next expected byte forward over `n` delivered bytes.
    fn advance(&mut self, n: u64) {
        self.next_off = self.next_off.saturating_add(n);
        // Truncation is the modulo-2^32 arithmetic of sequence numbers.
        self.next_seq = self.next_seq.wrapping_add(n as u32);
        self.stats.bytes_delivered = self.stats.bytes_delivered.saturating_add(n);
    }

    /// Reports the bytes up to stream offset `off` missing (nothing if already there).
    fn skip_to(&mut self, off: u64) {
        let missing = off.saturating_sub(self.next_off);
        if missing == 0 {
            return;
        }
        self.pending.push(Pending::Gap(missing));
        self.next_off = off;
        self.next_seq = self.next_seq.wrapping_add(missing as u32);
        self.stats.gaps = self.stats.gaps.saturating_add(1);
        self.stats.bytes_missing = self.stats.bytes_missing.saturating_add(missing);
    }

    /// Delivers held segments that start at or before the next expected byte, trimming what was
    /// already delivered. After a hole was given up on, they keep their arrival times.
    fn drain_contiguous(&mut self, given_up: bool) {
        while let Some(entry) = self.held.first_entry() {
            let start = *entry.key();
            if start > self.next_off {
                break;
            }
            let (arrived, bytes) = entry.remove();
            self.held_bytes = self.held_bytes.saturating_sub(bytes.len());
            let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            let old = (self.next_off - start).min(len);
            self.stats.bytes_retransmitted = self.stats.bytes_retransmitted.saturating_add(old);
            if old < len {
                let from = usize::try_from(old).unwrap_or(usize::MAX);
                self.pending.push(Pending::Held {
                    index: self.ready.len(),
                    from,
                    arrived: given_up.then_some(arrived),
                });
                self.ready.push(bytes);
                self.advance(len - old);
            }
        }
    }

    /// Copies the parts of `payload` (stream offset `start`, above `next_off`) that no held
    /// segment covers yet: on overlap the first copy wins.
    fn hold(&mut self, now: Timestamp, start: u64, payload: &[u8]) {
        let len = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        let end = start.saturating_add(len);
        let mut cur = start;
        let mut kept = 0u64;
        // A held segment that starts earlier may cover the beginning.
        if let Some((&k, (_, v))) = self.held.range(..start).next_back() {
            cur = cur.max(k.saturating_add(v.len() as u64).min(end));
        }
        while cur < end {
            let next_held = self
                .held
                .range(cur..end)
                .next()
                .map(|(&k, (_, v))| (k, k.saturating_add(v.len() as u64)));
            let piece_end = next_held.map_or(end, |(k, _)| k);
            if piece_end > cur {
                let from = usize::try_from(cur - start).unwrap_or(usize::MAX);
                let to = usize::try_from(piece_end - start).unwrap_or(usize::MAX);
                if let Some(piece) = payload.get(from..to) {
                    self.held.insert(cur, (now, piece.to_vec()));
                    self.held_bytes = self.held_bytes.saturating_add(piece.len());
                    kept = kept.saturating_add(piece_end - cur);
                }
            }
            // Skip what the held segment already covers (held pieces are never empty).
            cur = next_held
                .map_or(end, |(_, held_end)| held_end.min(end))
                .max(piece_end);
        }
        self.stats.bytes_retransmitted = self
            .stats
            .bytes_retransmitted
            .saturating_add(len.saturating_sub(kept));
    }

    /// Gives up on holes while the store is over its bounds.
    fn enforce_bounds(&mut self) {
        while self.held_bytes > self.config.max_buffered
            || self.held.len() > self.config.max_segments
        {
            let Some(&start) = self.held.keys().next() else {
                break;
            };
            self.skip_to(start);
            self.drain_contiguous(true);
        }
    }

    fn check_fin(&mut self) {
        if let Some(fin_off) = self.fin_off
            && !self.fin_emitted
            && fin_off <= self.next_off
        {
            self.fin_emitted = true;
            self.pending.push(Pending::Fin);
        }
    }

    fn note_peak(&mut self) {
        self.stats.bytes_held_peak = self.stats.bytes_held_peak.max(self.held_bytes);
    }

    fn delivered<'a>(&'a self, now: Timestamp, payload: &'a [u8]) -> Delivered<'a> {
        Delivered {
            now,
            payload,
            ready: &self.ready,
            pending: self.pending.iter(),
        }
    }
}

/// The events of one [`Reassembler::segment`] or [`Reassembler::flush`] call, in stream order.
///
/// An iterator of [`Event`]s whose `Data` slices borrow the caller's payload or the reassembler.
///
/// Dropping it drains it: the events not yet iterated are consumed as if they had been (the
/// reassembler's state already counts them delivered) and are not produced again, so the stream
/// stays consistent and the next call starts after them. This is the workspace's one rule for a
/// borrowing iterator dropped early; to see every event, iterate it to the end.
#[must_use = "the events carry the reassembled bytes; drain them"]
pub struct Delivered<'a> {
    now: Timestamp,
    payload: &'a [u8],
    ready: &'a [Vec<u8>],
    pending: core::slice::Iter<'a, Pending>,
}

impl fmt::Debug for Delivered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivered")
            .field("now", &self.now)
            .field("remaining", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Iterator for Delivered<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        let now = self.now;
        Some(match *self.pending.next()? {
            Pending::Payload { from } => Event::Data {
                now,
                bytes: self.payload.get(from..).unwrap_or_default(),
            },
            Pending::Held {
                index,
                from,
                arrived,
            } => Event::Data {
                now: arrived.unwrap_or(now),
                bytes: self
                    .ready
                    .get(index)
                    .and_then(|held| held.get(from..))
                    .unwrap_or_default(),
            },
            Pending::Gap(missing) => Event::Gap { now, missing },
            Pending::Fin => Event::Fin { now },
            Pending::Rst => Event::Rst { now },
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pending.size_hint()
    }
}

impl ExactSizeIterator for Delivered<'_> {}

impl FusedIterator for Delivered<'_> {}
