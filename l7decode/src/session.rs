//! What every protocol session is to the layers above it, and [`Decoder`], the tier-2 decoder of
//! one connection whose protocol the caller already knows.
//!
//! A session ([`http::Session`](crate::http::Session), [`mysql::Session`](crate::mysql::Session),
//! [`mongo::Session`](crate::mongo::Session)) reads both directions of one connection in one
//! protocol and pushes its events into a queue it is lent on every call. [`Connection`] sniffs
//! the protocol and dispatches to one; a [`Decoder`] owns one and its queue.
//!
//! [`Connection`]: crate::Connection

use std::collections::VecDeque;

use crate::error::{Error, ErrorKind};
use crate::{Direction, Event, Limits, Stats, Timestamp};

/// A protocol session a [`Decoder`] can drive: [`http::Session`](crate::http::Session),
/// [`mysql::Session`](crate::mysql::Session) or [`mongo::Session`](crate::mongo::Session).
///
/// Sealed: only this crate's sessions implement it.
pub trait ProtocolSession: Session {}

/// The crate-internal half of [`ProtocolSession`]: what a session does, each call pushing what it
/// reports into `events`. Callers count the bytes they feed (except those a session takes in
/// place, which it counts) and gaps, and refuse input after an end (sessions never see it).
#[allow(unnameable_types)] // the sealing half of `ProtocolSession`: named and called only inside the crate
pub trait Session: core::fmt::Debug {
    /// A session at the start of a connection whose protocol is known.
    fn start(limits: &Limits) -> Self
    where
        Self: Sized;

    /// Takes `input` without stepping when it cannot complete anything (more of an HTTP body or
    /// head), counting it in its own [`Session::stats`]; `false` when it must go to
    /// [`Session::feed`]. A fast path only: `feed` gives the same outcome.
    #[inline]
    fn take_in_place(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> bool {
        let _ = (dir, now, input);
        false
    }

    /// In-order bytes of `dir`, all consumed.
    fn feed(&mut self, dir: Direction, now: Timestamp, input: &[u8], events: &mut VecDeque<Event>);

    /// `missing` bytes of `dir` lost by the capture.
    fn gap(&mut self, dir: Direction, now: Timestamp, missing: u64, events: &mut VecDeque<Event>);

    /// The end of `dir` (fed once).
    fn eof(&mut self, dir: Direction, now: Timestamp, events: &mut VecDeque<Event>);

    /// The earliest response deadline, if a request waits for one.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Reports the requests whose deadline is `now` or earlier.
    fn handle_timeout(&mut self, now: Timestamp, events: &mut VecDeque<Event>);

    /// The session's counters (bytes fed and lost are counted by the caller).
    fn stats(&self) -> Stats;

    /// Heap bytes the session holds now beyond its own size.
    fn buffered_bytes(&self) -> usize;
}

/// One connection in a protocol the caller already knows (a port it trusts, a proxy's
/// configuration): the session of [`http`](crate::http), [`mysql`](crate::mysql) or
/// [`mongo`](crate::mongo) fed directly, without sniffing. Use it through its aliases,
/// [`http::Decoder`](crate::http::Decoder), [`mysql::Decoder`](crate::mysql::Decoder) and
/// [`mongo::Decoder`](crate::mongo::Decoder).
///
/// It gives the records a [`Connection`](crate::Connection) gives for the same streams once the
/// protocol is recognised, with no [`Event::Protocol`] for the protocol itself. Each direction
/// starts as the session's protocol expects (MySQL: the server's greeting; MongoDB: a message on
/// each side); HTTP looks for a message start.
///
/// The run loop is the crate's: feed each direction's in-order bytes, report gaps and ends, drain
/// [`Decoder::poll_event`] after every call, call [`Decoder::handle_timeout`] once
/// [`Decoder::poll_timeout`] has passed.
///
/// ```
/// use l7decode::{Direction, Event, Limits, Timestamp};
/// use l7decode::mysql::{Decoder, Outcome};
///
/// // A MySQL connection joined after its login: a COM_QUERY ("SELECT 1") and its reply.
/// let mut mysql = Decoder::new(Limits::default());
/// mysql.feed(Direction::ClientToServer, Timestamp(1_000), b"\x09\x00\x00\x00\x03SELECT 1")?;
/// let reply: &[u8] = b"\x01\x00\x00\x01\x01\x17\x00\x00\x02\x03def\x00\x00\x00\x01\x31\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00\x05\x00\x00\x03\xfe\x00\x00\x02\x00\x02\x00\x00\x04\x01\x31\x05\x00\x00\x05\xfe\x00\x00\x02\x00";
/// mysql.feed(Direction::ServerToClient, Timestamp(4_000), reply)?;
/// while let Some(event) = mysql.poll_event() {
///     if let Event::Mysql(c) = event {
///         assert_eq!((c.query(), c.outcome, c.rows), (Some("SELECT 1"), Outcome::Ok, 1));
///         assert_eq!(c.latency_ns(), Some(3_000));
///     }
/// }
/// assert_eq!(mysql.stats().transactions, 1);
/// # Ok::<(), l7decode::Error>(())
/// ```
pub struct Decoder<S> {
    session: S,
    events: VecDeque<Event>,
    /// Bytes and gaps fed.
    stats: Stats,
    closed: Ends,
}

/// Shows the session's state and counters, never payload bytes.
impl<S: ProtocolSession> core::fmt::Debug for Decoder<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decoder")
            .field("session", &self.session)
            .field("events", &self.events.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl<S: ProtocolSession> Decoder<S> {
    /// A decoder at the start of a connection (or of a capture of one).
    pub fn new(limits: Limits) -> Self {
        Self {
            session: S::start(&limits),
            events: VecDeque::new(),
            stats: Stats::default(),
            closed: Ends::default(),
        }
    }

    /// In-order bytes of one direction, all of them taken (what a message needs beyond them is
    /// kept, bounded by [`crate::Limits`]; nothing is handed back to feed again).
    ///
    /// # Errors
    /// [`ErrorKind::FedAfterEof`] after [`Decoder::feed_eof`] for that direction.
    ///
    /// # Panics
    /// Never, on any input.
    #[inline]
    pub fn feed(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) -> Result<(), Error> {
        // Never taken in place in a direction that ended.
        if self.session.take_in_place(dir, now, bytes) {
            return Ok(());
        }
        if self.closed.ended(dir) {
            return Err(Error::new(ErrorKind::FedAfterEof, 0));
        }
        self.stats.bytes += bytes.len() as u64;
        self.session.feed(dir, now, bytes, &mut self.events);
        Ok(())
    }

    /// Bytes of one direction lost by the capture: skipped in sync where the framing allows,
    /// else the direction resynchronises.
    pub fn feed_gap(&mut self, dir: Direction, now: Timestamp, missing: u64) {
        self.stats.gap_bytes += missing;
        if !self.closed.ended(dir) {
            self.session.gap(dir, now, missing, &mut self.events);
        }
    }

    /// The end of one direction; when the server's ends, requests still waiting are reported
    /// without a response. Later calls for the same direction do nothing.
    pub fn feed_eof(&mut self, dir: Direction, now: Timestamp) {
        if self.closed.end(dir) {
            self.session.eof(dir, now, &mut self.events);
        }
    }

    /// The next event; drain until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Decoder::handle_timeout`] must next be called: the earliest response deadline
    /// ([`Limits::response_timeout`] after a request ended).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.session.poll_timeout()
    }

    /// Reports each request whose response deadline is `now` or earlier, flagged
    /// [`timed_out`](crate::Flags::timed_out).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.session.handle_timeout(now, &mut self.events);
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.session.stats();
        stats.bytes += self.stats.bytes;
        stats.gap_bytes += self.stats.gap_bytes;
        stats
    }

    /// Heap bytes the decoder holds now beyond its own size (what a flow table would charge to
    /// a memory budget).
    pub fn buffered_bytes(&self) -> usize {
        self.session.buffered_bytes() + self.events.capacity() * size_of::<Event>()
    }
}

/// When a request waiting `since` times out after `timeout` nanoseconds (`u64::MAX`: never).
pub(crate) const fn deadline(since: Timestamp, timeout: u64) -> Option<Timestamp> {
    if timeout == u64::MAX {
        None
    } else {
        Some(Timestamp(since.0.saturating_add(timeout)))
    }
}

/// Which directions of a connection ended.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Ends {
    client: bool,
    server: bool,
}

impl Ends {
    /// Whether `dir` ended.
    pub(crate) const fn ended(self, dir: Direction) -> bool {
        match dir {
            Direction::ClientToServer => self.client,
            Direction::ServerToClient => self.server,
        }
    }

    /// Ends `dir`; `false` when it had ended already.
    pub(crate) const fn end(&mut self, dir: Direction) -> bool {
        let end = match dir {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        };
        !core::mem::replace(end, true)
    }
}
