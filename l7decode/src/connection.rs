//! Tier 2: one TCP connection's two byte streams in, request/response records out.
//!
//! The caller hands in each direction's in-order bytes (after reassembly) with their capture
//! timestamps, reports lost bytes with [`Connection::feed_gap`] and the end of each direction with
//! [`Connection::feed_eof`], and drains [`Connection::poll_event`] after every call.

#![deny(clippy::indexing_slicing)]

mod held;
mod recovery;
mod timeout;

use std::collections::VecDeque;

use bytes::Bytes;

use held::Held;

use crate::error::{Error, ErrorKind};
use crate::http::chunked::{ChunkedScanner, Scan};
use crate::http::head::{BodyFraming, Head, HeadStatus, parse_request, parse_response};
use crate::{Direction, Limits, Timestamp};

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
    /// A body ended early: its direction closed before its framing said it would.
    pub truncated: bool,
}

/// One side of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    head: Bytes,
    /// Decoded body bytes (chunked framing removed).
    pub body_bytes: u64,
    /// When the first byte arrived.
    pub first: Timestamp,
    /// When the last byte arrived.
    pub last: Timestamp,
}

impl Message {
    /// A message whose first byte arrived at `at`; its head is filled in once read.
    const fn starting(at: Timestamp) -> Self {
        Self {
            head: Bytes::new(),
            body_bytes: 0,
            first: at,
            last: at,
        }
    }

    /// The head as received (start line and header fields).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The first value of a header, OWS-trimmed, without allocating.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head
            .split(|b| *b == b'\n')
            .skip(1)
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|b| *b == b':')?;
                Some((
                    line.get(..colon)?.trim_ascii(),
                    line.get(colon + 1..)?.trim_ascii(),
                ))
            })
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    fn start_line(&self) -> &[u8] {
        let line = self.head.split(|b| *b == b'\n').next().unwrap_or_default();
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    fn word(&self, index: usize) -> Option<&str> {
        let line = self.start_line();
        let word = if index == 2 {
            // The reason phrase is the rest of the status line.
            let mut seen = 0;
            let at = line.iter().position(|b| {
                seen += usize::from(*b == b' ');
                seen == 2
            })?;
            line.get(at + 1..)?
        } else {
            line.split(|b| *b == b' ')
                .filter(|w| !w.is_empty())
                .nth(index)?
        };
        core::str::from_utf8(word).ok()
    }
}

/// An HTTP exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transaction {
    /// The request (absent for an orphan response).
    pub request: Option<Message>,
    /// The final response (absent when it never came).
    pub response: Option<Message>,
    /// Status codes of interim (1xx) responses, in order (at most 8 kept).
    pub interim: [u16; 8],
    /// How many of `interim` are set.
    pub interim_len: u8,
    /// Anomalies.
    pub flags: Flags,
}

impl Transaction {
    /// Request method.
    pub fn method(&self) -> Option<&str> {
        self.request.as_ref()?.word(0)
    }

    /// Request target.
    pub fn uri(&self) -> Option<&str> {
        self.request.as_ref()?.word(1)
    }

    /// Request version, `HTTP/1.x`.
    pub fn request_version(&self) -> Option<&str> {
        self.request.as_ref()?.word(2)
    }

    /// Final status code.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref()?.word(1)?.parse().ok()
    }

    /// Reason phrase.
    pub fn reason(&self) -> Option<&str> {
        self.response.as_ref()?.word(2)
    }

    /// Interim status codes.
    pub fn interim_statuses(&self) -> &[u16] {
        self.interim
            .get(..usize::from(self.interim_len))
            .unwrap_or_default()
    }

    /// Response's last byte minus request's last byte, in nanoseconds.
    pub fn latency_ns(&self) -> Option<u64> {
        Some(
            self.request
                .as_ref()?
                .last
                .nanos_until(self.response.as_ref()?.last),
        )
    }

    /// Response's first byte minus request's last byte, in nanoseconds.
    pub fn ttfb_ns(&self) -> Option<u64> {
        Some(
            self.request
                .as_ref()?
                .last
                .nanos_until(self.response.as_ref()?.first),
        )
    }
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
    /// Bytes skipped while resynchronising.
    pub skipped_bytes: u64,
    /// Transactions reported.
    pub transactions: u64,
    /// Messages read: HTTP heads, MySQL packets (logical payloads).
    pub messages: u64,
    /// Requests dropped because `Limits::max_pending` was reached.
    pub dropped_requests: u64,
}

#[derive(Debug, Clone)]
enum Body {
    Length(u64),
    Chunked(Box<ChunkedScanner>),
    UntilClose,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Nothing seen yet in this direction.
    Start,
    /// Waiting for (or gathering) a head.
    Head,
    /// In a body.
    Body(Body),
    /// Out of sync: looking for a plausible message start.
    Lost,
    /// Tunnel, TLS or an unknown protocol: bytes are only counted.
    Opaque,
    /// Handed to a sub-decoder (MySQL, MongoDB).
    Sub,
    /// The direction ended.
    Closed,
}

#[derive(Debug)]
struct Half {
    phase: Phase,
    /// A head being gathered, or while lost, a held candidate message start (or at the start,
    /// the first bytes being judged), each with its arrival time.
    buf: Held,
    /// Bytes skipped since the direction lost sync, not yet reported.
    skipped: u64,
    /// While lost: whether the last byte seen ended a line.
    line_start: bool,
    /// While lost: whether the held candidate began a line.
    held_line_start: bool,
    /// The message being read: head, body count, first time, gap seen.
    current: Option<(Message, bool)>,
    /// Bytes skipped before the connection's protocol was known.
    unrecognized: u64,
    /// What the fast path of [`Connection::feed`] may take and has taken without stepping.
    in_place: InPlace,
    /// Gathered bytes that turned out not to start a head: read again, after one skipped byte,
    /// each at the time it first arrived, as if in the feed calls that brought them.
    reread: Held,
}

impl Half {
    fn new() -> Self {
        Self {
            phase: Phase::Start,
            buf: Held::default(),
            skipped: 0,
            line_start: true,
            held_line_start: true,
            current: None,
            unrecognized: 0,
            in_place: InPlace::default(),
            reread: Held::default(),
        }
    }
}

/// Bytes a direction may take, and has taken, without stepping through the decoder: the body
/// bytes counted here belong to the current message and are handed to it (by
/// `commit_in_place`) before anything else looks at the state.
#[derive(Debug, Default, Clone, Copy)]
struct InPlace {
    /// How many more bytes may be taken in place.
    left: u64,
    /// What `left` was when armed: the difference is what was taken (kept this way so the fast
    /// path writes only two words).
    armed: u64,
    /// When the last of them arrived.
    last: Timestamp,
}

impl InPlace {
    /// Bytes taken since armed.
    const fn taken(&self) -> u64 {
        self.armed - self.left
    }
}

/// The protocol-specific decoder a connection hands its bytes to once it is known.
#[derive(Debug)]
enum Sub {
    Mysql(Box<crate::mysql::session::Session>),
    Mongo(Box<crate::mongo::session::Session>),
}

impl Sub {
    fn feed(&mut self, dir: Direction, now: Timestamp, input: &[u8], events: &mut VecDeque<Event>) {
        match self {
            Self::Mysql(s) => s.feed(dir, now, input, events),
            Self::Mongo(s) => s.feed(dir, now, input, events),
        }
    }

    fn gap(&mut self, dir: Direction, now: Timestamp, missing: u64, events: &mut VecDeque<Event>) {
        match self {
            Self::Mysql(s) => s.gap(dir, now, missing, events),
            Self::Mongo(s) => s.gap(dir, now, missing, events),
        }
    }

    fn eof(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        match self {
            Self::Mysql(s) => s.eof(dir, events),
            Self::Mongo(s) => s.eof(dir, events),
        }
    }

    fn skipped_total(&self) -> u64 {
        match self {
            Self::Mysql(s) => s.skipped_total(),
            Self::Mongo(s) => s.skipped_total(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Self::Mysql(s) => s.dropped(),
            Self::Mongo(s) => s.dropped(),
        }
    }

    fn messages(&self) -> u64 {
        match self {
            Self::Mysql(s) => s.messages(),
            Self::Mongo(s) => s.messages(),
        }
    }
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    message: Message,
    complete: bool,
    method_head: bool,
    method_connect: bool,
    interim: [u16; 8],
    interim_len: u8,
    flags: Flags,
}

/// The decoder for one connection.
#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    client: Half,
    server: Half,
    pending: VecDeque<Pending>,
    events: VecDeque<Event>,
    protocol: Option<Protocol>,
    /// What the server's port suggests; consulted only when the bytes cannot tell.
    hint: Option<Protocol>,
    /// The sub-decoder, once the connection is known to be MySQL or MongoDB.
    sub: Option<Sub>,
    stats: Stats,
}

impl Connection {
    /// A decoder at the start of a connection (or of a capture of one).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            client: Half::new(),
            server: Half::new(),
            pending: VecDeque::new(),
            events: VecDeque::new(),
            protocol: None,
            hint: None,
            sub: None,
            stats: Stats::default(),
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
        self
    }

    /// The next event; drain until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.bytes += self.client.in_place.taken() + self.server.in_place.taken();
        if let Some(sub) = &self.sub {
            stats.skipped_bytes += sub.skipped_total();
            stats.dropped_requests += sub.dropped();
            stats.messages += sub.messages();
        }
        stats
    }

    /// The protocol, once inferred.
    pub const fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// In-order bytes of one direction. Bodies are counted, never copied; a head cut by the end of
    /// `bytes` is kept (bounded by [`Limits::max_buffered`]). Returns the bytes accepted (all).
    ///
    /// # Errors
    /// [`ErrorKind::FedAfterEof`] after [`Connection::feed_eof`] for that direction.
    #[inline]
    pub fn feed(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) -> Result<usize, Error> {
        let len = bytes.len() as u64;
        let half = match dir {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        };
        // The bulk of a stream fed in small pieces: more of a body that these bytes do not end.
        let counter = &mut half.in_place;
        if len.wrapping_sub(1) < counter.left {
            counter.left -= len;
            counter.last = now;
            return Ok(bytes.len());
        }
        if self.gather_in_place(dir, now, bytes) {
            self.stats.bytes += len;
            return Ok(bytes.len());
        }
        self.commit_in_place();
        let fed = self.feed_stepwise(dir, now, bytes);
        self.arm_in_place();
        fed
    }

    /// More of a head being gathered that `bytes` cannot end (a head ends with a line end, and
    /// `bytes` holds none): kept exactly as the stepwise path would, without stepping.
    #[inline]
    fn gather_in_place(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) -> bool {
        let limit = self.limits.max_buffered;
        let half = self.half(dir);
        let fits = matches!(half.phase, Phase::Head)
            && !half.buf.is_empty()
            && half.reread.is_empty()
            && half.buf.len() + bytes.len() < limit;
        if !fits || bytes.contains(&b'\n') {
            return false;
        }
        half.buf.extend(bytes, now);
        true
    }

    /// Hands what the fast path counted to the message and phase it belongs to, so the stepwise
    /// code sees the state it would have built itself.
    fn commit_in_place(&mut self) {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let half = self.half(dir);
            let counted = half.in_place.taken();
            let last = half.in_place.last;
            half.in_place = InPlace::default();
            if counted == 0 {
                continue;
            }
            self.stats.bytes += counted;
            let half = self.half(dir);
            match &mut half.phase {
                Phase::Body(Body::Length(left)) => *left -= counted,
                Phase::Body(Body::UntilClose) => {}
                // Opaque bytes belong to no message.
                _ => continue,
            }
            self.add_body(dir, last, counted);
        }
    }

    /// How many bytes each direction may next take in place: all but the last byte of a body of
    /// known length (that one completes the message), any number in a close-delimited body or
    /// an opaque stream, none elsewhere.
    fn arm_in_place(&mut self) {
        for half in [&mut self.client, &mut self.server] {
            let left = if !half.reread.is_empty() {
                0
            } else {
                match half.phase {
                    Phase::Body(Body::Length(left)) => left.saturating_sub(1),
                    Phase::Body(Body::UntilClose) | Phase::Opaque => u64::MAX,
                    _ => 0,
                }
            };
            half.in_place = InPlace {
                left,
                armed: left,
                last: Timestamp(0),
            };
        }
    }

    fn feed_stepwise(
        &mut self,
        dir: Direction,
        now: Timestamp,
        bytes: &[u8],
    ) -> Result<usize, Error> {
        if matches!(self.half(dir).phase, Phase::Closed) {
            return Err(Error::new(ErrorKind::FedAfterEof, 0));
        }
        self.stats.bytes += bytes.len() as u64;
        self.run(dir, now, bytes);
        Ok(bytes.len())
    }

    /// Steps through `bytes`. When gathered bytes must be read again, they and the rest of
    /// `bytes` continue from an owned copy (only on that error path).
    fn run(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) {
        let mut owned: Option<Vec<u8>> = None;
        let mut pos = 0;
        // Bytes read again keep the times they first arrived at: from `pos` on, runs of them
        // (each stepped through apart from the rest, like the feed call that brought it), then
        // the rest of `bytes`, which came now.
        let mut again: VecDeque<(usize, Timestamp)> = VecDeque::new();
        loop {
            let (first, runs) = self.half(dir).reread.take_runs();
            if !first.is_empty() {
                // Bytes still to be read again from an earlier round keep their place (and
                // times) behind these.
                let mut next = Vec::from(first);
                let rest = owned.as_deref().unwrap_or(bytes).get(pos..);
                next.extend_from_slice(rest.unwrap_or_default());
                owned = Some(next);
                pos = 0;
                for run in runs.into_iter().rev() {
                    again.push_front(run);
                }
            }
            let all = owned.as_deref().unwrap_or(bytes);
            let (input, time) = match again.front() {
                Some(&(len, at)) => (all.get(pos..pos + len), at),
                None => (all.get(pos..), now),
            };
            let input = input.unwrap_or_default();
            if input.is_empty() {
                break;
            }
            let phase_before = core::mem::discriminant(&self.half(dir).phase);
            let used = self.step(dir, time, input);
            pos += used;
            if let Some((len, _)) = again.front_mut() {
                *len = len.saturating_sub(used);
                if *len == 0 {
                    again.pop_front();
                }
            }
            // A step that consumes nothing hands over to another phase (a message start found at
            // the chunk's first byte, a body that failed to parse) or asks for bytes to be read
            // again; if it did neither, the rest would never be read, so it is counted as
            // skipped rather than silently lost.
            if used == 0
                && self.half(dir).reread.is_empty()
                && core::mem::discriminant(&self.half(dir).phase) == phase_before
            {
                debug_assert!(false, "a step made no progress");
                let left = owned.as_deref().unwrap_or(bytes).len() - pos;
                self.note_skipped(dir, left);
                break;
            }
        }
    }

    /// Counts the sub-decoder's records among the events queued since `before`.
    fn count_records(&mut self, before: usize) {
        let new = self.events.iter().skip(before);
        let records = new.filter(|e| matches!(e, Event::Mysql(_) | Event::Mongo(_)));
        self.stats.transactions += records.count() as u64;
    }

    fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        }
    }

    /// Consumes a prefix of `input` in the current phase; returns its length.
    fn step(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> usize {
        let half = self.half(dir);
        match &half.phase {
            Phase::Start => self.start(dir, now, input),
            Phase::Head => self.head(dir, now, input),
            Phase::Lost => self.resync(dir, now, input),
            Phase::Opaque | Phase::Closed => input.len(),
            Phase::Sub => {
                let before = self.events.len();
                if let Some(sub) = self.sub.as_mut() {
                    sub.feed(dir, now, input, &mut self.events);
                }
                self.count_records(before);
                input.len()
            }
            // Moved out, not cloned (a chunked body's scanner is boxed and large); `body` always
            // stores the phase that follows.
            Phase::Body(_) => match core::mem::replace(&mut half.phase, Phase::Closed) {
                Phase::Body(body) => self.body(dir, now, input, body),
                other => {
                    half.phase = other;
                    0
                }
            },
        }
    }

    fn head(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> usize {
        let limit = self.limits.max_buffered;
        let parse = |buf| parse_head(dir, buf);
        let half = self.half(dir);
        if half.current.is_none() {
            half.current = Some((Message::starting(now), false));
        }
        let held = half.buf.len();
        if held == 0 {
            // The common case: the whole head is in this chunk, parsed in place.
            match parse(input) {
                // A head longer than the buffer limit is refused even when it came whole, as it
                // would be when gathered from pieces.
                Ok(HeadStatus::Complete(head)) if head.len <= limit => {
                    let (summary, len) = (head_summary(&head), head.len);
                    let bytes = Bytes::copy_from_slice(input.get(..len).unwrap_or_default());
                    self.on_head(dir, now, summary, bytes);
                    len
                }
                Ok(HeadStatus::Partial) if input.len() < limit => {
                    half.buf.extend(input, now);
                    input.len()
                }
                // Too long a head, or not a head: skip a byte and look for the next start.
                Ok(_) | Err(_) => {
                    self.lose(dir);
                    self.note_skipped(dir, 1);
                    1
                }
            }
        } else {
            // A head cut by earlier chunks: gather (bounded), then parse the whole.
            let take = input.len().min(limit.saturating_sub(held));
            half.buf.extend(input.get(..take).unwrap_or_default(), now);
            // Parse again only once the head's blank line has arrived: looking at the new bytes
            // (and the three before them) keeps a head trickled byte by byte linear, not quadratic.
            let tail = half.buf.get(held.saturating_sub(3)..).unwrap_or_default();
            // A head ends with an empty line after a line end: LF LF or LF CR LF (httparse
            // accepts bare LFs, so CRLF LF and LF CRLF end a head too).
            let ended =
                tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
            if !ended && half.buf.len() < limit {
                return take;
            }
            let verdict = match parse(&half.buf) {
                Ok(HeadStatus::Complete(head)) => Some(Ok((head_summary(&head), head.len))),
                Ok(HeadStatus::Partial) if half.buf.len() < limit => None,
                Ok(HeadStatus::Partial) | Err(_) => Some(Err(())),
            };
            match verdict {
                None => take,
                Some(Ok((summary, len))) => {
                    let bytes = half.buf.split_to(len);
                    // What was gathered past the head is still in `input`: it is read again.
                    half.buf.clear();
                    self.on_head(dir, now, summary, bytes);
                    len - held
                }
                Some(Err(())) => {
                    // This chunk's bytes are read again after the gathered ones.
                    self.reread_after_bad_head(dir, held);
                    0
                }
            }
        }
    }

    fn on_head(&mut self, dir: Direction, now: Timestamp, head: HeadSummary, bytes: Bytes) {
        self.stats.messages += 1;
        let half = self.half(dir);
        let Some((mut message, gap)) = half.current.take() else {
            return;
        };
        message.head = bytes;
        message.last = now;
        match dir {
            Direction::ClientToServer => {
                let framing = head.request_framing;
                let flags = Flags {
                    gap,
                    te_and_cl: head.te_and_cl,
                    ..Flags::default()
                };
                self.push_pending(Pending {
                    message,
                    complete: false,
                    method_head: head.method_head,
                    method_connect: head.method_connect,
                    interim: [0; 8],
                    interim_len: 0,
                    flags,
                });
                self.start_body(dir, framing);
            }
            Direction::ServerToClient => {
                self.settle(Direction::ClientToServer, now);
                if self.pending.is_empty() && !self.client.buf.is_empty() {
                    // Answered while the only request's head was still being gathered: the
                    // capture missed the head's end. Keep what was seen; find the next request.
                    self.salvage_head(Direction::ClientToServer);
                    if !self.pending.is_empty() {
                        self.client.phase = Phase::Lost;
                        self.client.line_start = false;
                    }
                }
                let status = head.status;
                if (100..200).contains(&status) && status != 101 {
                    // Interim: it belongs to the oldest request; the final response follows.
                    if let Some(p) = self.pending.front_mut()
                        && let Some(slot) = p.interim.get_mut(usize::from(p.interim_len))
                    {
                        *slot = status;
                        p.interim_len += 1;
                    }
                    self.server.phase = Phase::Head;
                    return;
                }
                let method = self.pending.front().map(|p| {
                    if p.method_head {
                        "HEAD"
                    } else if p.method_connect {
                        "CONNECT"
                    } else {
                        "GET"
                    }
                });
                let framing = head.response_framing(method);
                self.server.current = Some((message, gap));
                if head.te_and_cl
                    && let Some(p) = self.pending.front_mut()
                {
                    p.flags.te_and_cl = true;
                }
                match framing {
                    BodyFraming::Tunnel => {
                        self.finish_response(Flags {
                            upgraded: true,
                            ..Flags::default()
                        });
                        self.go_opaque();
                        self.events.push_back(Event::Tunnel);
                    }
                    other => self.start_body(dir, other),
                }
            }
        }
    }

    fn start_body(&mut self, dir: Direction, framing: BodyFraming) {
        let body = match framing {
            BodyFraming::Length(0) | BodyFraming::Empty | BodyFraming::Tunnel => None,
            BodyFraming::Length(n) => Some(Body::Length(n)),
            BodyFraming::Chunked => Some(Body::Chunked(Box::default())),
            BodyFraming::UntilClose => Some(Body::UntilClose),
        };
        match body {
            Some(b) => self.half(dir).phase = Phase::Body(b),
            None => self.message_done(dir, None),
        }
    }

    fn body(&mut self, dir: Direction, now: Timestamp, input: &[u8], body: Body) -> usize {
        let (used, done, next) = match body {
            Body::Length(left) => {
                let take = (input.len() as u64).min(left);
                (take as usize, take == left, Body::Length(left - take))
            }
            Body::UntilClose => (input.len(), false, Body::UntilClose),
            Body::Chunked(mut scanner) => {
                let before = scanner.body_bytes;
                match scanner.scan(input) {
                    Ok(Scan::Done(n)) => {
                        self.add_body(dir, now, scanner.body_bytes - before);
                        self.half(dir).phase = Phase::Body(Body::Chunked(scanner));
                        self.message_done(dir, Some(now));
                        return n;
                    }
                    Ok(Scan::NeedMore) => {
                        let counted = scanner.body_bytes - before;
                        self.add_body(dir, now, counted);
                        self.half(dir).phase = Phase::Body(Body::Chunked(scanner));
                        return input.len();
                    }
                    // What was framed before the bad byte belongs to the message; sync is lost
                    // from there, at the same stream position however the body was chunked.
                    Err(e) => {
                        self.add_body(dir, now, scanner.body_bytes - before);
                        self.lose(dir);
                        return usize::try_from(e.offset())
                            .unwrap_or(usize::MAX)
                            .min(input.len());
                    }
                }
            }
        };
        self.add_body(dir, now, used as u64);
        if done {
            self.message_done(dir, Some(now));
        } else {
            self.half(dir).phase = Phase::Body(next);
        }
        used
    }

    fn add_body(&mut self, dir: Direction, now: Timestamp, n: u64) {
        match dir {
            Direction::ClientToServer => {
                if let Some(p) = self.pending.back_mut() {
                    p.message.body_bytes += n;
                    p.message.last = now;
                }
            }
            Direction::ServerToClient => {
                if let Some((m, _)) = self.server.current.as_mut() {
                    m.body_bytes += n;
                    m.last = now;
                }
            }
        }
    }

    fn message_done(&mut self, dir: Direction, now: Option<Timestamp>) {
        self.half(dir).phase = Phase::Head;
        match dir {
            Direction::ClientToServer => {
                if let Some(p) = self.pending.back_mut() {
                    p.complete = true;
                    if let Some(now) = now {
                        p.message.last = now;
                    }
                }
            }
            Direction::ServerToClient => {
                if let (Some(now), Some((m, _))) = (now, self.server.current.as_mut()) {
                    m.last = now;
                }
                self.finish_response(Flags::default());
            }
        }
    }

    fn finish_response(&mut self, extra: Flags) {
        if self.server.current.is_none() {
            return;
        }
        let now = self
            .server
            .current
            .as_ref()
            .map_or(Timestamp(0), |(m, _)| m.last);
        self.settle(Direction::ClientToServer, now);
        let Some((response, gap)) = self.server.current.take() else {
            return;
        };
        // Skips are reported just before the record that follows them.
        self.report_skipped(Direction::ClientToServer);
        self.report_skipped(Direction::ServerToClient);
        let mut t = match self.pending.pop_front() {
            Some(p) => Transaction {
                // A request the capture lost entirely held its place with an empty head.
                request: (!p.message.head.is_empty()).then_some(p.message),
                response: Some(response),
                interim: p.interim,
                interim_len: p.interim_len,
                flags: p.flags,
            },
            None => Transaction {
                request: None,
                response: Some(response),
                interim: [0; 8],
                interim_len: 0,
                flags: Flags {
                    orphan: true,
                    ..Flags::default()
                },
            },
        };
        t.flags.gap |= gap;
        t.flags.upgraded |= extra.upgraded;
        t.flags.truncated |= extra.truncated;
        self.stats.transactions += 1;
        self.events.push_back(Event::Transaction(t));
    }

    /// Bytes lost by the capture in one direction. Inside a body of known length they are skipped
    /// and the decoder stays in sync; elsewhere it looks for the next message start, and a head
    /// the gap cut keeps its complete lines (its record is flagged `gap` and `truncated`).
    pub fn feed_gap(&mut self, dir: Direction, now: Timestamp, missing: u64) {
        self.commit_in_place();
        self.gap_stepwise(dir, now, missing);
        self.arm_in_place();
    }

    fn gap_stepwise(&mut self, dir: Direction, now: Timestamp, missing: u64) {
        self.stats.gap_bytes += missing;
        if matches!(self.half(dir).phase, Phase::Sub)
            && let Some(sub) = self.sub.as_mut()
        {
            let before = self.events.len();
            sub.gap(dir, now, missing, &mut self.events);
            self.count_records(before);
            return;
        }
        let mark = |c: &mut Self| match dir {
            Direction::ClientToServer => {
                if let Some(p) = c.pending.back_mut() {
                    p.flags.gap = true;
                }
            }
            Direction::ServerToClient => {
                if let Some((_, g)) = c.server.current.as_mut() {
                    *g = true;
                }
            }
        };
        match self.half(dir).phase.clone() {
            Phase::Body(Body::Length(left)) if missing <= left => {
                mark(self);
                self.add_body(dir, now, missing);
                if missing == left {
                    self.message_done(dir, None);
                } else {
                    self.half(dir).phase = Phase::Body(Body::Length(left - missing));
                }
            }
            Phase::Body(Body::UntilClose) => {
                mark(self);
                self.add_body(dir, now, missing);
            }
            Phase::Opaque | Phase::Closed => {}
            phase => {
                let between_messages =
                    matches!(phase, Phase::Head | Phase::Start) && self.half(dir).buf.is_empty();
                // A head cut by the gap (a snaplen, a lost segment) keeps its complete lines.
                self.settle(dir, now);
                self.salvage_head(dir);
                mark(self);
                match dir {
                    // A response cut inside its body is reported, flagged, with its request.
                    Direction::ServerToClient if self.server.current.is_some() => {
                        self.finish_response(Flags {
                            truncated: true,
                            ..Flags::default()
                        });
                    }
                    // The lost bytes began a response: the oldest request's answer is gone. It
                    // is reported without one rather than paired with the next response.
                    Direction::ServerToClient if between_messages => {
                        if let Some(p) = self.pending.pop_front() {
                            self.report_unanswered(
                                p,
                                Flags {
                                    gap: true,
                                    ..Flags::default()
                                },
                            );
                        }
                    }
                    // The lost bytes began a request: its place in the queue is kept, so its
                    // response does not pair with the next request.
                    Direction::ClientToServer if between_messages => {
                        self.push_pending(Pending {
                            message: Message::starting(now),
                            complete: true,
                            method_head: false,
                            method_connect: false,
                            interim: [0; 8],
                            interim_len: 0,
                            flags: Flags {
                                gap: true,
                                ..Flags::default()
                            },
                        });
                    }
                    _ => {}
                }
                self.lose(dir);
            }
        }
    }

    /// Queues a request for its response, within [`Limits::max_pending`].
    fn push_pending(&mut self, pending: Pending) {
        if self.pending.len() >= self.limits.max_pending {
            self.pending.pop_front();
            self.stats.dropped_requests += 1;
        }
        self.pending.push_back(pending);
    }

    /// Reports a request that will get no response.
    fn report_unanswered(&mut self, p: Pending, extra: Flags) {
        let flags = Flags {
            missing_response: true,
            gap: p.flags.gap || extra.gap,
            ..p.flags
        };
        self.stats.transactions += 1;
        self.events.push_back(Event::Transaction(Transaction {
            request: (!p.message.head.is_empty()).then_some(p.message),
            response: None,
            interim: p.interim,
            interim_len: p.interim_len,
            flags,
        }));
    }

    /// The end of one direction. A close-delimited response ends here; when the server's side
    /// ends, requests still waiting are reported without a response.
    pub fn feed_eof(&mut self, dir: Direction, now: Timestamp) {
        self.commit_in_place();
        self.eof_stepwise(dir, now);
        self.arm_in_place();
    }

    fn eof_stepwise(&mut self, dir: Direction, now: Timestamp) {
        if matches!(self.half(dir).phase, Phase::Sub)
            && let Some(sub) = self.sub.as_mut()
        {
            let before = self.events.len();
            sub.eof(dir, &mut self.events);
            self.count_records(before);
            self.half(dir).phase = Phase::Closed;
            return;
        }
        self.settle(dir, now);
        self.salvage_head(dir);
        match self.half(dir).phase.clone() {
            // The body's last byte is the last data before the close, not the close itself.
            Phase::Body(Body::UntilClose) => self.message_done(dir, None),
            Phase::Body(_) => {
                if dir == Direction::ServerToClient && self.server.current.is_some() {
                    self.finish_response(Flags {
                        truncated: true,
                        ..Flags::default()
                    });
                } else if let Some(p) = self.pending.back_mut() {
                    p.flags.truncated = true;
                }
            }
            _ => {}
        }
        // A held candidate or an unfinished head never became a message: its bytes were skipped.
        let held = self.half(dir).buf.len();
        if matches!(
            self.half(dir).phase,
            Phase::Start | Phase::Lost | Phase::Head
        ) {
            self.note_skipped(dir, held);
            self.half(dir).buf.clear();
        }
        self.report_skipped(dir);
        self.half(dir).phase = Phase::Closed;
        // Both sides ended with nothing recognised.
        let closed = |half: &Half| matches!(half.phase, Phase::Closed);
        if self.protocol.is_none()
            && self.stats.bytes > 0
            && closed(&self.client)
            && closed(&self.server)
        {
            self.give_up_recognising();
        }
        if dir == Direction::ServerToClient {
            while let Some(p) = self.pending.pop_front() {
                self.report_unanswered(p, Flags::default());
            }
        }
    }
}

fn parse_head(dir: Direction, buf: &[u8]) -> Result<HeadStatus<'_>, Error> {
    match dir {
        Direction::ClientToServer => parse_request(buf),
        Direction::ServerToClient => parse_response(buf),
    }
}

/// What the decoder needs from a head once its borrow of the input ends.
#[derive(Debug, Clone, Copy)]
struct HeadSummary {
    status: u16,
    method_head: bool,
    method_connect: bool,
    request_framing: BodyFraming,
    te_and_cl: bool,
    chunked: bool,
    other_te: bool,
    content_length: Option<u64>,
}

impl HeadSummary {
    fn response_framing(&self, method: Option<&str>) -> BodyFraming {
        let head = Head {
            method: None,
            uri: None,
            status: Some(self.status),
            reason: None,
            version: 1,
            len: 0,
            headers: &[],
            content_length: self.content_length,
            chunked: self.chunked,
            other_transfer_encoding: self.other_te,
            flags: Default::default(),
        };
        head.response_framing(method)
    }
}

fn head_summary(head: &Head<'_>) -> HeadSummary {
    HeadSummary {
        status: head.status.unwrap_or(0),
        method_head: head.method == Some("HEAD"),
        method_connect: head.method == Some("CONNECT"),
        request_framing: head.request_framing(),
        te_and_cl: head.flags.te_and_cl,
        chunked: head.chunked,
        other_te: head.other_transfer_encoding,
        content_length: head.content_length,
    }
}
