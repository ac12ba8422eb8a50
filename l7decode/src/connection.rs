//! Tier 2: one TCP connection's two byte streams in, request/response records out.
//!
//! The caller hands in each direction's in-order bytes (after reassembly) with their capture
//! timestamps, reports lost bytes with [`Connection::feed_gap`] and the end of each direction with
//! [`Connection::feed_eof`], and drains [`Connection::poll_event`] after every call.
//!
//! A connection only recognises its protocol (from each direction's first bytes, see `sniff`)
//! and hands both directions to that protocol's session ([`http`](crate::http),
//! [`mysql`](crate::mysql), [`mongo`](crate::mongo)), all of which push into its one event queue.

#![deny(clippy::indexing_slicing)]

mod sniff;
mod timeout;

use std::collections::VecDeque;

use crate::error::{Error, ErrorKind};
use crate::session::{Ends, Session};
use crate::{Direction, Limits, Timestamp, Transaction};

/// What a connection carries, as inferred from its first bytes (ports are never used alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.x.
    Http,
    /// A TLS record layer: reported as such, never parsed.
    Tls,
    /// The MySQL/MariaDB client/server protocol ([`crate::mysql`]).
    Mysql,
    /// The MongoDB wire protocol ([`crate::mongo`]).
    Mongo,
    /// Something else: bytes are counted, nothing is decoded.
    Unknown,
}

impl Protocol {
    /// What a server port conventionally carries, for [`Connection::with_hint`]: 80, 8000, 8008,
    /// 8080, 8081 and 8888 are HTTP; 443, 6443 and 8443 are TLS; 3306 is MySQL; 27017–27019
    /// are MongoDB.
    pub const fn for_port(port: u16) -> Option<Self> {
        match port {
            80 | 8000 | 8008 | 8080 | 8081 | 8888 => Some(Self::Http),
            443 | 6443 | 8443 => Some(Self::Tls),
            3306 => Some(Self::Mysql),
            27017..=27019 => Some(Self::Mongo),
            _ => None,
        }
    }
}

/// Flags on a transaction record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Flags {
    /// Bytes were lost inside one of the messages (skipped while staying in sync).
    pub gap: bool,
    /// The response came without a request seen (a capture that started mid-stream).
    pub orphan: bool,
    /// No response arrived before the server's direction ended.
    pub missing_response: bool,
    /// The response switched the connection to a tunnel (101, or 2xx to CONNECT).
    pub upgraded: bool,
    /// A message carried both Transfer-Encoding and Content-Length.
    pub te_and_cl: bool,
    /// A body ended early: its direction closed before its framing said it would (MySQL and
    /// MongoDB records: a text or message cut by the capture or a limit).
    pub truncated: bool,
    /// No response came within [`Limits::response_timeout`]: the request was reported at its
    /// deadline (with `missing_response`).
    pub timed_out: bool,
}

/// What the decoder reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // the MongoDB record is inline on purpose (see `Mongo`)
pub enum Event {
    /// The protocol was inferred.
    Protocol(Protocol),
    /// A completed exchange (or a request whose response never came, or an orphan response).
    Transaction(Transaction),
    /// A MySQL command and its reply (or the login and its outcome); boxed, as it is larger
    /// than the other events.
    Mysql(Box<crate::mysql::Command>),
    /// A MongoDB request and its reply (or reply chain), or an orphan reply. Kept inline (not
    /// boxed), so that decoding an uncompressed MongoDB message allocates nothing.
    Mongo(crate::mongo::Operation),
    /// Bytes of one direction could not be decoded and were skipped until the next plausible
    /// message start.
    Resynced {
        /// Which stream.
        direction: Direction,
        /// Bytes skipped.
        skipped: u64,
    },
    /// The connection became a tunnel; later bytes are only counted.
    Tunnel,
}

/// Counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes fed, both directions.
    pub bytes: u64,
    /// Bytes reported lost.
    pub gap_bytes: u64,
    /// Bytes skipped while resynchronising inside a decoded protocol (HTTP, MySQL, MongoDB).
    pub skipped_bytes: u64,
    /// Bytes of a connection whose protocol is not decoded ([`Protocol::Tls`],
    /// [`Protocol::Unknown`]): other traffic, all of it, never counted as skipped.
    pub other_bytes: u64,
    /// Transactions reported.
    pub transactions: u64,
    /// Messages read: HTTP heads, MySQL packets (logical payloads).
    pub messages: u64,
    /// Requests dropped because [`Limits::max_pending`] was reached.
    pub dropped_requests: u64,
    /// Messages larger than [`Limits::max_buffered`]: HTTP heads (skipped as out of sync) and
    /// MongoDB messages, compressed or inflated (read in part, flagged `truncated`).
    pub over_buffered: u64,
    /// MySQL queries, error messages and handshakes cut at [`Limits::max_mysql_prefix`].
    pub texts_cut: u64,
    /// MySQL prepared statements forgotten at [`Limits::max_statements`].
    pub forgotten_statements: u64,
    /// Connections given up as unrecognised at [`Limits::max_unrecognized`] (0 or 1 for one
    /// connection; one that ends before is not counted).
    pub given_up: u64,
    /// Requests reported at their deadline ([`Limits::response_timeout`]), flagged
    /// [`Flags::timed_out`].
    pub timed_out: u64,
    /// Responses that came after their request was reported timed out: paired with it and
    /// consumed, with no second record.
    pub late_responses: u64,
}

impl Stats {
    /// Adds `other`'s counters to these.
    pub(crate) const fn add(&mut self, other: &Self) {
        self.bytes += other.bytes;
        self.gap_bytes += other.gap_bytes;
        self.skipped_bytes += other.skipped_bytes;
        self.other_bytes += other.other_bytes;
        self.transactions += other.transactions;
        self.messages += other.messages;
        self.dropped_requests += other.dropped_requests;
        self.over_buffered += other.over_buffered;
        self.texts_cut += other.texts_cut;
        self.forgotten_statements += other.forgotten_statements;
        self.given_up += other.given_up;
        self.timed_out += other.timed_out;
        self.late_responses += other.late_responses;
    }
}

/// The session a connection hands its bytes to: HTTP until its bytes say otherwise (it is also
/// where an unrecognised connection looks for an HTTP message start, and what TLS and unknown
/// connections are counted by), MySQL or MongoDB once recognised.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // HTTP inline on purpose: no allocation per connection, no indirection on the hot path
enum Active {
    Http(crate::http::Session),
    Mysql(Box<crate::mysql::Session>),
    Mongo(Box<crate::mongo::Session>),
}

/// The trait implemented once for whichever session is active.
impl Session for Active {
    fn start(limits: &Limits) -> Self {
        Self::Http(crate::http::Session::unrecognised(limits))
    }

    #[inline]
    fn take_in_place(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> bool {
        match self {
            Self::Http(s) => s.take_in_place(dir, now, input),
            Self::Mysql(_) | Self::Mongo(_) => false,
        }
    }

    fn feed(&mut self, dir: Direction, now: Timestamp, input: &[u8], events: &mut VecDeque<Event>) {
        match self {
            Self::Http(s) => s.feed(dir, now, input, events),
            Self::Mysql(s) => s.feed(dir, now, input, events),
            Self::Mongo(s) => s.feed(dir, now, input, events),
        }
    }

    fn gap(&mut self, dir: Direction, now: Timestamp, missing: u64, events: &mut VecDeque<Event>) {
        match self {
            Self::Http(s) => s.gap(dir, now, missing, events),
            Self::Mysql(s) => s.gap(dir, now, missing, events),
            Self::Mongo(s) => s.gap(dir, now, missing, events),
        }
    }

    fn eof(&mut self, dir: Direction, now: Timestamp, events: &mut VecDeque<Event>) {
        match self {
            Self::Http(s) => s.eof(dir, now, events),
            Self::Mysql(s) => s.eof(dir, now, events),
            Self::Mongo(s) => s.eof(dir, now, events),
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match self {
            Self::Http(s) => s.poll_timeout(),
            Self::Mysql(s) => s.poll_timeout(),
            Self::Mongo(s) => s.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp, events: &mut VecDeque<Event>) {
        match self {
            Self::Http(s) => s.handle_timeout(now, events),
            Self::Mysql(s) => s.handle_timeout(now, events),
            Self::Mongo(s) => s.handle_timeout(now, events),
        }
    }

    fn stats(&self) -> Stats {
        match self {
            Self::Http(s) => s.stats(),
            Self::Mysql(s) => s.stats(),
            Self::Mongo(s) => s.stats(),
        }
    }

    fn buffered_bytes(&self) -> usize {
        match self {
            Self::Http(s) => s.buffered_bytes(),
            Self::Mysql(s) => size_of::<crate::mysql::Session>() + s.buffered_bytes(),
            Self::Mongo(s) => size_of::<crate::mongo::Session>() + s.buffered_bytes(),
        }
    }
}

/// The decoder for one connection: its two in-order byte streams in, [`Event`]s out, whichever
/// protocol it carries (see the [crate docs](crate) for a run loop with timeouts).
///
/// ```
/// use l7decode::{Connection, Direction, Event, Limits, Protocol, Timestamp};
///
/// let mut conn = Connection::new(Limits::default());
/// conn.feed(Direction::ClientToServer, Timestamp(10), b"GET /health HTTP/1.1\r\n\r\n")?;
/// conn.feed(Direction::ServerToClient, Timestamp(30), b"HTTP/1.1 204 No Content\r\n\r\n")?;
/// // The connection is reset: both directions end.
/// conn.feed_eof(Direction::ClientToServer, Timestamp(40));
/// conn.feed_eof(Direction::ServerToClient, Timestamp(40));
/// let mut records = 0;
/// while let Some(event) = conn.poll_event() {
///     match event {
///         Event::Protocol(p) => assert_eq!(p, Protocol::Http),
///         Event::Transaction(t) => records += usize::from(t.status() == Some(204)),
///         _ => {}
///     }
/// }
/// assert_eq!((records, conn.protocol()), (1, Some(Protocol::Http)));
/// # Ok::<(), l7decode::Error>(())
/// ```
pub struct Connection {
    limits: Limits,
    /// What the server's port suggests; consulted only when the bytes cannot tell.
    hint: Option<Protocol>,
    session: Active,
    events: VecDeque<Event>,
    closed: Ends,
    /// Bytes fed (those the session did not take in place) and reported lost.
    bytes: u64,
    gap_bytes: u64,
    /// The counters of the HTTP session given up when the bytes said MySQL or MongoDB (boxed:
    /// only such connections pay for them).
    earlier: Option<Box<Stats>>,
}

/// Shows the protocol, the session's state and the counters, never payload bytes.
impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("protocol", &self.protocol())
            .field("hint", &self.hint)
            .field("session", &self.session)
            .field("events", &self.events.len())
            .field("closed", &self.closed)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A decoder at the start of a connection (or of a capture of one).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            hint: None,
            session: Active::start(&limits),
            events: VecDeque::new(),
            closed: Ends::default(),
            bytes: 0,
            gap_bytes: 0,
            earlier: None,
        }
    }

    /// Breaks ties with what the connection is expected to carry (see [`Protocol::for_port`]).
    ///
    /// The bytes always decide when they can: TLS on an HTTP port is TLS, HTTP on any port is
    /// HTTP. The hint matters only for a connection whose bytes match nothing yet (a capture that
    /// started inside a body or inside encrypted records): without a hint, or with an unknown
    /// one, it is given up as [`Protocol::Unknown`] after [`Limits::max_unrecognized`] bytes in
    /// one direction (or when it ends), and only counted from then on; with an HTTP hint it keeps
    /// looking for the next message start however long the body; with a TLS hint it is reported
    /// as TLS instead of unknown.
    #[must_use]
    pub const fn with_hint(mut self, hint: Option<Protocol>) -> Self {
        self.hint = hint;
        if let Active::Http(http) = &mut self.session {
            http.set_hint(hint);
        }
        self
    }

    /// The next event; drain until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.session.stats();
        stats.bytes += self.bytes;
        stats.gap_bytes += self.gap_bytes;
        if let Some(earlier) = &self.earlier {
            stats.add(earlier);
        }
        if matches!(self.protocol(), Some(Protocol::Tls | Protocol::Unknown)) {
            // Nothing of it is decoded: what was skipped while looking for a message start is
            // other traffic, like everything after.
            stats.other_bytes = stats.bytes;
            stats.skipped_bytes = 0;
        }
        stats
    }

    /// The protocol, once inferred.
    pub const fn protocol(&self) -> Option<Protocol> {
        match &self.session {
            Active::Http(http) => http.protocol(),
            Active::Mysql(_) => Some(Protocol::Mysql),
            Active::Mongo(_) => Some(Protocol::Mongo),
        }
    }

    /// In-order bytes of one direction. Bodies are counted, never copied; a head cut by the end of
    /// `bytes` is kept (bounded by [`Limits::max_buffered`]). All of `bytes` is always taken: there
    /// is nothing to feed again.
    ///
    /// # Errors
    /// [`ErrorKind::FedAfterEof`] after [`Connection::feed_eof`] for that direction.
    ///
    /// # Panics
    /// Never, on any input.
    #[inline]
    pub fn feed(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) -> Result<(), Error> {
        // The bulk of an HTTP stream fed in small pieces: more of a body or a head that these
        // bytes do not end (never in a direction that ended).
        if self.session.take_in_place(dir, now, bytes) {
            return Ok(());
        }
        if self.closed.ended(dir) {
            return Err(Error::new(ErrorKind::FedAfterEof, 0));
        }
        self.bytes += bytes.len() as u64;
        match &mut self.session {
            Active::Http(http) if http.at_start(dir) => self.feed_first_bytes(dir, now, bytes),
            session => session.feed(dir, now, bytes, &mut self.events),
        }
        Ok(())
    }

    /// Bytes lost by the capture in one direction. Inside a body or packet of known length they
    /// are skipped and the decoder stays in sync; elsewhere it looks for the next message start,
    /// and an HTTP head the gap cut keeps its complete lines (its record is flagged `gap` and
    /// `truncated`).
    pub fn feed_gap(&mut self, dir: Direction, now: Timestamp, missing: u64) {
        self.gap_bytes += missing;
        if !self.closed.ended(dir) {
            self.session.gap(dir, now, missing, &mut self.events);
        }
    }

    /// The end of one direction. A close-delimited response ends here; when the server's side
    /// ends, requests still waiting are reported without a response. Later calls for the same
    /// direction do nothing.
    ///
    /// A FIN ends its direction only. A RST ends the connection: feed what the reassembler
    /// delivered before it (and, after a [`Reassembler::flush`](crate::reassembly::Reassembler::flush),
    /// what it held), then call `feed_eof` for **both** directions, so that a close-delimited
    /// response ends and the requests it left unanswered are reported (flagged
    /// `missing_response`) at once rather than at their timeout. [`crate::flows`] does this.
    pub fn feed_eof(&mut self, dir: Direction, now: Timestamp) {
        if self.closed.end(dir) {
            self.session.eof(dir, now, &mut self.events);
        }
    }
}
