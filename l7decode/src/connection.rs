//! Tier 2: one TCP connection's two byte streams in, request/response records out.
//!
//! The caller hands in each direction's in-order bytes (after reassembly) with their capture
//! timestamps, reports lost bytes with [`Connection::feed_gap`] and the end of each direction with
//! [`Connection::feed_eof`], and drains [`Connection::poll_event`] after every call.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, ErrorKind};
use crate::http::chunked::{ChunkedScanner, Scan};
use crate::http::head::{
    BodyFraming, Head, HeadStatus, looks_like_request, looks_like_response, parse_request,
    parse_response, starts_message_mid_line,
};
use crate::{Direction, Limits, Timestamp};

/// What a connection carries, as inferred from its first bytes (ports are never used alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.x.
    Http,
    /// A TLS record layer: reported as such, never parsed.
    Tls,
    /// Something else: bytes are counted, nothing is decoded.
    Unknown,
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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The protocol was inferred.
    Protocol(Protocol),
    /// A completed exchange (or a request whose response never came, or an orphan response).
    Transaction(Transaction),
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
    /// The direction ended.
    Closed,
}

#[derive(Debug)]
struct Half {
    phase: Phase,
    /// A head being gathered, or while lost, a held candidate message start.
    buf: BytesMut,
    /// Bytes skipped since the direction lost sync, not yet reported.
    skipped: u64,
    /// While lost: whether the last byte seen ended a line.
    line_start: bool,
    /// While lost: whether the held candidate began a line, and when it arrived.
    held_line_start: bool,
    held_since: Timestamp,
    /// The message being read: head, body count, first time, gap seen.
    current: Option<(Message, bool)>,
    /// Gathered bytes that turned out not to start a head: read again, after one skipped byte,
    /// exactly as if they had arrived in one chunk.
    reread: Vec<u8>,
    /// When the bytes to read again first arrived.
    reread_time: Timestamp,
}

impl Half {
    fn new() -> Self {
        Self {
            phase: Phase::Start,
            buf: BytesMut::new(),
            skipped: 0,
            line_start: true,
            held_line_start: true,
            held_since: Timestamp(0),
            current: None,
            reread: Vec::new(),
            reread_time: Timestamp(0),
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
            stats: Stats::default(),
        }
    }

    /// The next event; drain until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters so far.
    pub const fn stats(&self) -> Stats {
        self.stats
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
    pub fn feed(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) -> Result<usize, Error> {
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
        // Bytes read again keep the time they first arrived; they are stepped through apart
        // from the rest, like an earlier chunk.
        let mut reread_end: usize = 0;
        let mut reread_time = now;
        loop {
            let reread = core::mem::take(&mut self.half(dir).reread);
            if !reread.is_empty() {
                reread_time = self.half(dir).reread_time;
                // Bytes still to be read again from an earlier round keep their place in front.
                reread_end = reread.len() + reread_end.saturating_sub(pos);
                let mut next = reread;
                let rest = owned.as_deref().unwrap_or(bytes).get(pos..);
                next.extend_from_slice(rest.unwrap_or_default());
                owned = Some(next);
                pos = 0;
            }
            let all = owned.as_deref().unwrap_or(bytes);
            let (input, time) = if pos < reread_end {
                (all.get(pos..reread_end), reread_time)
            } else {
                (all.get(pos..), now)
            };
            let input = input.unwrap_or_default();
            if input.is_empty() {
                break;
            }
            let phase_before = core::mem::discriminant(&self.half(dir).phase);
            let used = self.step(dir, time, input);
            pos += used;
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

    /// Judges a head still being gathered in `dir` as if all its bytes had come in one chunk
    /// (the gather path parses only once the blank line arrives, to stay linear). Called before
    /// anything the other direction reports, so records do not depend on chunking.
    fn settle(&mut self, dir: Direction, now: Timestamp) {
        let half = self.half(dir);
        if !matches!(half.phase, Phase::Head)
            || half.buf.is_empty()
            || parse_head(dir, &half.buf).is_ok()
        {
            return;
        }
        let held = self.half(dir).buf.len();
        self.reread_after_bad_head(dir, held);
        self.run(dir, now, &[]);
    }

    /// A gathered head (its first `held` bytes) turned out bad: skip its first byte and read the
    /// others again, exactly as if they had arrived in one chunk.
    fn reread_after_bad_head(&mut self, dir: Direction, held: usize) {
        let half = self.half(dir);
        let mut gathered = core::mem::take(&mut half.buf);
        gathered.truncate(held);
        half.reread = gathered.get(1..).unwrap_or_default().to_vec();
        if let Some((message, _)) = &half.current {
            half.reread_time = message.first;
        }
        self.lose(dir);
        self.note_skipped(dir, 1);
    }

    fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        }
    }

    /// A direction's first bytes: TLS is recognised from its record header (three bytes, gathered
    /// if the first chunk is shorter); anything else is looked at as HTTP from a line start, the
    /// way a mid-stream start is, so a short first chunk is judged like a long one.
    fn start(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> usize {
        const TLS_PROBE: usize = 3;
        let half = self.half(dir);
        let take = (TLS_PROBE - half.buf.len()).min(input.len());
        half.buf
            .extend_from_slice(input.get(..take).unwrap_or_default());
        if half.buf.len() < TLS_PROBE {
            return take;
        }
        let probe = core::mem::take(&mut half.buf);
        let tls = matches!(
            probe.as_ref(),
            [0x16 | 0x17, 0x03, 0..=4] | [0x15 | 0x14, 0x03, _]
        );
        if !tls {
            half.phase = Phase::Lost;
            half.line_start = true;
            half.reread = probe.to_vec();
            half.reread_time = now;
            return take;
        }
        if self.protocol.is_none() {
            self.protocol = Some(Protocol::Tls);
            self.events.push_back(Event::Protocol(Protocol::Tls));
        }
        self.settle(dir.reverse(), now);
        self.go_opaque();
        take
    }

    /// From here on both directions are only counted (TLS, a tunnel). Bytes still held (a
    /// candidate start, an unfinished head) are counted as skipped, not dropped.
    fn go_opaque(&mut self) {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let held = self.half(dir).buf.len();
            self.note_skipped(dir, held);
            let half = self.half(dir);
            half.buf.clear();
            half.current = None;
            half.phase = Phase::Opaque;
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

    /// Skips to the next plausible message start: a request or status line at the beginning of
    /// a line, or, where a body ended without a newline, a stronger `METHOD /` or `HTTP/1.x NNN`
    /// anywhere. A candidate cut by the end of a chunk is held (13 bytes at most) until it can be
    /// judged, so the outcome does not depend on how the stream was chunked.
    fn resync(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> usize {
        const PROBE: usize = 8;
        const MAX_PROBE: usize = 13;
        let request = dir == Direction::ClientToServer;
        // `None`: too few bytes to tell.
        let judge = |s: &[u8], line_start: bool| -> Option<bool> {
            let plausible = |s: &[u8]| {
                if request {
                    looks_like_request(s)
                } else {
                    looks_like_response(s)
                }
            };
            if !line_start {
                starts_message_mid_line(s, request)
            } else if let Some(probe) = s.get(..PROBE) {
                Some(plausible(probe))
            } else if plausible(s) {
                None
            } else {
                Some(false)
            }
        };
        let half = self.half(dir);
        let mut skipped = 0;
        if !half.buf.is_empty() {
            let held = half.buf.len();
            let take = MAX_PROBE.saturating_sub(held).min(input.len());
            half.buf
                .extend_from_slice(input.get(..take).unwrap_or_default());
            match judge(&half.buf, half.held_line_start) {
                Some(true) => {
                    // The held bytes start the head, which began when they arrived: the head
                    // parser gathers from here.
                    half.phase = Phase::Head;
                    half.current = Some((
                        Message {
                            head: Bytes::new(),
                            body_bytes: 0,
                            first: half.held_since,
                            last: half.held_since,
                        },
                        false,
                    ));
                    self.found_http();
                    return take;
                }
                None => return take,
                // Not a start after all: skip its first byte. The other held bytes hold no line
                // end, but may start a candidate ("PO" then "P": "OPTIONS /"), so they are read
                // again, before this chunk, as if they had come with it.
                Some(false) => {
                    skipped += 1;
                    half.line_start = false;
                    let again = half.buf.get(1..held).unwrap_or_default().to_vec();
                    half.buf.clear();
                    if !again.is_empty() {
                        half.reread = again;
                        half.reread_time = half.held_since;
                        self.note_skipped(dir, skipped);
                        return 0;
                    }
                }
            }
        }
        let mut found = None;
        for i in 0..input.len() {
            let line_start = if i == 0 {
                half.line_start
            } else {
                input.get(i - 1) == Some(&b'\n')
            };
            let first = input.get(i).copied().unwrap_or_default();
            let can_start = if request {
                matches!(first, b'G' | b'P' | b'H' | b'D' | b'O' | b'C' | b'T')
            } else {
                first == b'H'
            };
            if !can_start {
                continue;
            }
            let rest = input.get(i..).unwrap_or_default();
            match judge(rest, line_start) {
                Some(true) => {
                    found = Some(i);
                    break;
                }
                Some(false) => {}
                None => {
                    // A candidate cut by the chunk's end: hold it.
                    skipped += i;
                    half.buf.extend_from_slice(rest);
                    half.held_line_start = line_start;
                    half.held_since = now;
                    self.note_skipped(dir, skipped);
                    return input.len();
                }
            }
        }
        let end = found.unwrap_or(input.len());
        skipped += end;
        half.line_start = if end == 0 {
            half.line_start
        } else {
            input.get(end - 1) == Some(&b'\n')
        };
        if found.is_some() {
            half.phase = Phase::Head;
        }
        // Skipped bytes are reported before what was found after them, in any chunking.
        self.note_skipped(dir, skipped);
        if found.is_some() {
            self.found_http();
        }
        end
    }

    /// Counts skipped bytes; they are reported as [`Event::Resynced`] just before the next record
    /// (or when the direction ends), so the events do not depend on how the stream was chunked.
    fn note_skipped(&mut self, dir: Direction, skipped: usize) {
        self.stats.skipped_bytes += skipped as u64;
        self.half(dir).skipped += skipped as u64;
    }

    fn report_skipped(&mut self, dir: Direction) {
        let skipped = core::mem::take(&mut self.half(dir).skipped);
        if skipped > 0 {
            self.events.push_back(Event::Resynced {
                direction: dir,
                skipped,
            });
        }
    }

    fn found_http(&mut self) {
        if self.protocol.is_none() {
            self.protocol = Some(Protocol::Http);
            self.events.push_back(Event::Protocol(Protocol::Http));
        }
    }

    fn head(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> usize {
        let limit = self.limits.max_buffered;
        let parse = |buf| parse_head(dir, buf);
        let half = self.half(dir);
        if half.current.is_none() {
            half.current = Some((
                Message {
                    head: Bytes::new(),
                    body_bytes: 0,
                    first: now,
                    last: now,
                },
                false,
            ));
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
                    half.buf.extend_from_slice(input);
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
            half.buf
                .extend_from_slice(input.get(..take).unwrap_or_default());
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
                    let bytes = half.buf.split_to(len).freeze();
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

    /// A head cut short (its direction ended, or for a request, the server answered before it
    /// ended, so the capture missed its end): its complete lines, closed by an empty line, make
    /// a message flagged truncated. The partial last line is counted as skipped.
    fn salvage_head(&mut self, dir: Direction) {
        let half = self.half(dir);
        if !matches!(half.phase, Phase::Head) {
            return;
        }
        let Some(cut) = half.buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1) else {
            return;
        };
        let mut closed = half.buf.get(..cut).unwrap_or_default().to_vec();
        closed.extend_from_slice(b"\r\n");
        let Ok(HeadStatus::Complete(head)) = parse_head(dir, &closed) else {
            return;
        };
        let summary = head_summary(&head);
        let partial_line = half.buf.len() - cut;
        let lines = half.buf.split_to(cut).freeze();
        half.buf.clear();
        let last = half.current.as_ref().map_or(Timestamp(0), |(m, _)| m.last);
        self.note_skipped(dir, partial_line);
        self.on_head(dir, last, summary, lines);
        match dir {
            Direction::ClientToServer => {
                if let Some(p) = self.pending.back_mut() {
                    p.flags.truncated = true;
                }
            }
            Direction::ServerToClient => {
                if self.server.current.is_some() {
                    self.finish_response(Flags {
                        truncated: true,
                        ..Flags::default()
                    });
                    // Its body never came: nothing more belongs to this response.
                    self.server.phase = Phase::Head;
                } else if let Some(Event::Transaction(t)) = self.events.back_mut() {
                    // A status without a body was reported as soon as its head was read.
                    t.flags.truncated = true;
                }
            }
        }
    }

    fn lose(&mut self, dir: Direction) {
        let half = self.half(dir);
        let dropped = half.buf.len();
        half.buf.clear();
        half.current = None;
        half.phase = Phase::Lost;
        half.line_start = false;
        self.note_skipped(dir, dropped);
    }

    fn on_head(&mut self, dir: Direction, now: Timestamp, head: HeadSummary, bytes: Bytes) {
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
        self.stats.gap_bytes += missing;
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
                            message: Message {
                                head: Bytes::new(),
                                body_bytes: 0,
                                first: now,
                                last: now,
                            },
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
