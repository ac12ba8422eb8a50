//! `l7decode`: turns the two captured byte streams of a TCP connection into HTTP/1.x, MySQL/MariaDB
//! and MongoDB request/response records, sans-IO.
//!
//! The caller owns capture, reassembly input and time: it feeds each direction's bytes with the
//! capture timestamp and drains events. The crate never performs I/O, reads a clock or spawns
//! threads; every buffer it keeps and every wait is bounded by a [`Limits`] field, and reaching a
//! bound is counted in [`Stats`].
//!
//! The layers, each usable on its own and each the only owner of its job:
//!
//! * [`reassembly`]: a per-direction TCP reassembler (sequence wrap-around, bounded out-of-order
//!   window, retransmissions trimmed, exact gap sizes, holes the peer acknowledged given up at
//!   once).
//! * [`flows`]: every connection of a capture point, from captured segments: the flow table,
//!   which side is the client, reassembly, closing, idle eviction, a global budget, and each
//!   connection's response deadlines.
//! * [`Connection`]: the two in-order streams of one connection in, [`Event`]s out. It recognises
//!   the protocol from each direction's first bytes (TLS is reported, never parsed; a port hint,
//!   [`Connection::with_hint`], only breaks ties) and hands both directions to that protocol's
//!   session.
//! * The sessions, one module each, also usable directly as a [`Decoder`] by a caller who knows
//!   the protocol ([`http::Decoder`], [`mysql::Decoder`], [`mongo::Decoder`]):
//!   * [`http`]: HTTP/1.x [`Transaction`]s with first/last-byte timestamps, RFC 9112 body framing
//!     (HEAD, 1xx, 204, 304, chunked with extensions and trailers, close-delimited, tunnels),
//!     pipelining, interim responses, mid-stream resynchronisation, gaps skipped inside bodies
//!     of known length. Bodies are counted, never copied.
//!   * [`mysql`]: [`Event::Mysql`] records of each command and its reply.
//!   * [`mongo`]: [`Event::Mongo`] records of each request and its reply or reply chain, from a
//!     zero-copy BSON walker ([`mongo::bson`]).
//!
//! A request nothing answers is reported once [`Limits::response_timeout`] has passed, in the
//! caller's time: call `handle_timeout` when `poll_timeout` says, and the record comes flagged
//! [`Flags::timed_out`]; a response that still comes is consumed, never reported as an orphan.
//!
//! ```
//! use l7decode::{Connection, Direction, Event, Limits, Timestamp};
//!
//! let mut conn = Connection::new(Limits::default());
//! conn.feed(Direction::ClientToServer, Timestamp(1_000), b"GET /items HTTP/1.1\r\nHost: shop\r\n\r\n")?;
//! conn.feed(Direction::ServerToClient, Timestamp(5_000), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
//! while let Some(event) = conn.poll_event() {
//!     if let Event::Transaction(t) = event {
//!         assert_eq!((t.method(), t.uri(), t.status()), (Some("GET"), Some("/items"), Some(200)));
//!         assert_eq!(t.latency_ns(), Some(4_000));
//!     }
//! }
//! // A request that gets no answer: reported at its deadline, a minute (by default) after it.
//! conn.feed(Direction::ClientToServer, Timestamp(9_000), b"GET /slow HTTP/1.1\r\n\r\n")?;
//! let now = Timestamp(9_000 + 60_000_000_000);
//! if conn.poll_timeout().is_some_and(|due| due <= now) {
//!     conn.handle_timeout(now);
//! }
//! let Some(Event::Transaction(t)) = conn.poll_event() else { panic!("the timed-out request") };
//! assert!(t.flags.timed_out && t.flags.missing_response && t.uri() == Some("/slow"));
//! assert_eq!(conn.stats().timed_out, 1);
//! # Ok::<(), l7decode::Error>(())
//! ```

#![forbid(unsafe_code)]

use core::time::Duration;

mod connection;
mod error;
pub mod flows;
mod held;
pub mod http;
pub mod mongo;
pub mod mysql;
pub mod reassembly;
mod session;
mod skipped;
mod window;

pub use connection::{Connection, Event, Flags, Protocol, Stats};
pub use error::{Error, ErrorKind};
pub use http::chunked::ChunkedScanner;
pub use http::head::{
    BodyFraming, FramingFlags, Head, MAX_HEADERS, looks_like_request, looks_like_response,
    parse_request, parse_response, starts_message_mid_line,
};
pub use http::{Message, Transaction};
pub use session::{Decoder, ProtocolSession};

/// What a parser made of input that may be incomplete: the one shape every tier-1 function of
/// this crate returns where a strict prefix of valid input is possible.
///
/// A strict prefix of a valid message is [`Status::Partial`], never an `Err`; `consumed` is never
/// more than the input's length.
///
/// ```
/// use l7decode::{Status, parse_request};
///
/// let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
/// assert!(matches!(parse_request(&head[..10])?, Status::Partial { .. }));
/// let Status::Complete { value, consumed } = parse_request(head)? else { panic!("a whole head") };
/// assert_eq!((value.method, consumed), (Some("GET"), head.len() - 4));
/// # Ok::<(), l7decode::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole value, read from the first `consumed` bytes of the input.
    Complete {
        /// What was parsed.
        value: T,
        /// Bytes of the input it took.
        consumed: usize,
    },
    /// The input ends before the value does.
    Partial {
        /// How many more bytes are needed at least, when the parser knows.
        needed: Option<core::num::NonZeroUsize>,
    },
}

impl<T> Status<T> {
    /// The value and its length, when complete.
    pub fn complete(self) -> Option<(T, usize)> {
        match self {
            Self::Complete { value, consumed } => Some((value, consumed)),
            Self::Partial { .. } => None,
        }
    }

    /// Whether more input is needed.
    pub const fn is_partial(&self) -> bool {
        matches!(self, Self::Partial { .. })
    }
}

/// Nanoseconds since an epoch the caller chooses (usually the capture's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Nanoseconds from `self` to `later`, zero when `later` is earlier (captures reorder).
    pub const fn nanos_until(self, later: Self) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

/// Which of the connection's two byte streams some bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes sent by the side that opened the connection.
    ClientToServer,
    /// Bytes sent by the side that accepted it.
    ServerToClient,
}

impl Direction {
    /// The other direction.
    pub const fn reverse(self) -> Self {
        match self {
            Self::ClientToServer => Self::ServerToClient,
            Self::ServerToClient => Self::ClientToServer,
        }
    }
}

/// One side of a MySQL command or a MongoDB operation: when its first and last bytes arrived and
/// how many bytes it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub first: Timestamp,
    /// Last byte.
    pub last: Timestamp,
    /// Bytes: a MySQL payload (headers excluded, all packets of a reply), or MongoDB messages
    /// as sent (headers included).
    pub bytes: u64,
}

/// Bounds on what one connection may make the decoder buffer, remember or wait for. Every bound
/// the decoders have is here, and each time one is reached it is counted in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Bytes buffered per direction for a message that straddles feeds (default 64 KiB): the
    /// longest HTTP head accepted (a longer one is skipped as out of sync), and the largest
    /// MongoDB message read whole, compressed or inflated (of a larger one only the first
    /// `max_buffered` bytes are read, and its record is flagged `truncated`). Counted in
    /// [`Stats::over_buffered`]. Also the MySQL bytes held after a loss inside a resultset while
    /// its rows are looked for again (rows that do not fit three at a time are not found; the
    /// terminator still is).
    pub max_buffered: usize,
    /// Requests awaiting their response (default 1024). Counted in [`Stats::dropped_requests`].
    pub max_pending: usize,
    /// Bytes one direction may skip while nothing recognisable has been seen in the connection,
    /// before it is given up as unknown (default 1 MiB; see [`Connection::with_hint`]). Counted
    /// in [`Stats::given_up`]. Also how far a MySQL reply that lost bytes inside a resultset is
    /// scanned for its rows before it is given up as `Missing` (the bytes scanned are counted
    /// in [`Stats::skipped_bytes`]).
    pub max_unrecognized: u64,
    /// MySQL prepared statements remembered per connection, oldest forgotten first (default
    /// 256). Counted in [`Stats::forgotten_statements`].
    pub max_statements: usize,
    /// Bytes kept of each MySQL payload to read its fields from (default 2048: a 512-character
    /// query in any UTF-8, an error message, a handshake with its attributes); the rest is
    /// counted, never buffered, so a 17 MB query or row costs no more than a short one. A
    /// query, error message or handshake cut here is counted in [`Stats::texts_cut`]
    /// ([`mysql::Command::query_truncated`] says so on the record).
    pub max_mysql_prefix: usize,
    /// How long a request waits for the first byte of its response, from its own last byte
    /// (or, queued behind another exchange, from the end of the response before it), before
    /// [`Connection::handle_timeout`] reports it, flagged `timed_out` and `missing_response`
    /// (default 60 s: longer than the usual proxy and client request timeouts, 15 s for Envoy's
    /// routes and 60 s for nginx's `proxy_read_timeout`, and than MongoDB's 10 s awaitable
    /// `hello`, so that only requests no one will answer any more are cut off, within a
    /// minute). A response that comes later is paired with the request reported and consumed
    /// without a second record. While a response is being read, nothing times out. Counted in
    /// [`Stats::timed_out`] and [`Stats::late_responses`].
    pub response_timeout: Duration,
}

impl Limits {
    /// Sets [`Limits::max_buffered`].
    pub const fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Sets [`Limits::max_pending`].
    pub const fn max_pending(mut self, requests: usize) -> Self {
        self.max_pending = requests;
        self
    }

    /// Sets [`Limits::max_statements`].
    pub const fn max_statements(mut self, statements: usize) -> Self {
        self.max_statements = statements;
        self
    }

    /// Sets [`Limits::max_unrecognized`].
    pub const fn max_unrecognized(mut self, bytes: u64) -> Self {
        self.max_unrecognized = bytes;
        self
    }

    /// Sets [`Limits::max_mysql_prefix`].
    pub const fn max_mysql_prefix(mut self, bytes: usize) -> Self {
        self.max_mysql_prefix = bytes;
        self
    }

    /// Sets [`Limits::response_timeout`].
    pub const fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// [`Limits::response_timeout`] in nanoseconds (saturating: `u64::MAX` is never).
    pub(crate) const fn response_timeout_ns(&self) -> u64 {
        let ns = self.response_timeout.as_nanos();
        if ns > u64::MAX as u128 {
            u64::MAX
        } else {
            ns as u64
        }
    }

    /// No bound at all: only for inputs you trust. Requests never time out.
    pub const fn unbounded_dangerous() -> Self {
        Self {
            max_buffered: usize::MAX,
            max_pending: usize::MAX,
            max_unrecognized: u64::MAX,
            max_statements: usize::MAX,
            max_mysql_prefix: usize::MAX,
            response_timeout: Duration::MAX,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_buffered: 64 << 10,
            max_pending: 1024,
            max_unrecognized: 1 << 20,
            max_statements: 256,
            max_mysql_prefix: 2048,
            response_timeout: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_where() {
        let e = Error::new(ErrorKind::FedAfterEof, 100);
        assert_eq!(e.to_string(), "input fed after end of stream at byte 100");
        assert_eq!((e.kind(), e.offset()), (ErrorKind::FedAfterEof, 100));
    }

    #[test]
    fn a_timeout_too_long_for_nanoseconds_never_comes() {
        assert_eq!(
            Limits::unbounded_dangerous().response_timeout_ns(),
            u64::MAX
        );
        assert_eq!(Limits::default().response_timeout_ns(), 60_000_000_000);
        assert_eq!(session::deadline(Timestamp(5), u64::MAX), None);
        assert_eq!(
            session::deadline(Timestamp(u64::MAX - 1), 10),
            Some(Timestamp(u64::MAX))
        );
    }

    #[test]
    fn latency_never_underflows() {
        assert_eq!(Timestamp(5).nanos_until(Timestamp(3)), 0);
        assert_eq!(Timestamp(3).nanos_until(Timestamp(5)), 2);
        assert_eq!(
            Direction::ClientToServer.reverse(),
            Direction::ServerToClient
        );
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
