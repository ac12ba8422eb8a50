//! The HTTP/1.x session: each direction's heads parsed (in place when whole in a chunk, else
//! gathered, bounded), bodies framed per RFC 9112 and counted, empty lines between messages
//! ignored, requests queued for their responses (pipelining, interim responses, tunnels), sync
//! lost and regained mid-stream (stray bytes between messages included).
//!
//! It is also where a [`Connection`](crate::Connection) whose protocol is not known yet looks
//! for an HTTP message start: until one is found ([`Session::protocol`] is `None`), what it skips
//! counts against [`Limits::max_unrecognized`], and it gives the connection up as unknown when
//! that is spent.

#![deny(clippy::indexing_slicing)]

mod recovery;

use std::collections::VecDeque;

use bytes::Bytes;

use super::chunked::ChunkedScanner;
use super::head::{BodyFraming, Head, MIN_HEAD, parse_request, parse_response};
use super::transaction::{Message, Transaction};
use crate::Status;
use crate::error::Error;
use crate::held::Held;
use crate::session::{ProtocolSession, Session as SessionApi};
use crate::{Direction, Event, Flags, Limits, Protocol, Stats, Timestamp};

#[derive(Debug, Clone)]
enum Body {
    Length(u64),
    Chunked(Box<ChunkedScanner>),
    UntilClose,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Nothing seen yet in this direction (with a [`Connection`](crate::Connection), its first
    /// bytes are being judged, held in `buf`).
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

/// Whether a direction is where a message start is expected, so that empty lines there are
/// ignored: RFC 9112 §2.2 asks a recipient to ignore at least one empty line (CRLF) before a
/// start line, and senders do leave stray line ends after a body (a CRLF past its
/// Content-Length, or between pipelined requests). They are consumed as they come, never held,
/// so their number needs no bound of its own; they are not skipped bytes (nothing was lost) and
/// the message after them starts at its start line: its first byte, its time and its head never
/// include them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blank {
    /// Inside a message, or out of sync: line ends are bytes like any other.
    Off,
    /// At the direction's start or just after a message: CRLF and bare LF are ignored.
    On,
    /// As `On`, after a CR: an LF makes it an empty line; anything else makes the CR a stray
    /// byte, counted as skipped (httparse, too, refuses a CR that ends no line).
    Cr,
}

struct Half {
    phase: Phase,
    /// Whether empty lines are ignored here (at a message boundary).
    blank: Blank,
    /// No message has begun since the last one ended: sync lost now is lost between messages
    /// (stray bytes after a body), so bytes a gap takes here may begin the next message, as at
    /// a boundary in sync.
    idle: bool,
    /// The client's last gap, between messages and too short to hold a whole request, kept a
    /// place in the queue for a request it may have begun; nothing was read or skipped since.
    /// A request line starting right here means it began none, and the place goes.
    kept_place: bool,
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
    /// What the fast path of [`Session::feed`] may take and has taken without stepping.
    in_place: InPlace,
    /// Gathered bytes that turned out not to start a head: read again, after one skipped byte,
    /// each at the time it first arrived, as if in the feed calls that brought them.
    reread: Held,
}

impl Half {
    fn new() -> Self {
        Self {
            phase: Phase::Start,
            blank: Blank::On,
            idle: false,
            kept_place: false,
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

/// A request waiting for its response.
struct Pending {
    message: Message,
    complete: bool,
    method_head: bool,
    method_connect: bool,
    interim: [u16; 8],
    interim_len: u8,
    flags: Flags,
    /// Reported at its deadline: it only holds its place, so that a response that still comes
    /// pairs with it (and is consumed) rather than with the next request.
    timed_out: bool,
}

impl Pending {
    /// A request whose first line is read (or whose place a gap kept).
    const fn new(message: Message, flags: Flags) -> Self {
        Self {
            message,
            complete: false,
            method_head: false,
            method_connect: false,
            interim: [0; 8],
            interim_len: 0,
            flags,
            timed_out: false,
        }
    }
}

/// One connection's HTTP/1.x session; see [`http::Decoder`](crate::http::Decoder) to use it on
/// its own.
pub struct Session {
    /// [`Limits::max_buffered`], [`Limits::max_pending`], [`Limits::max_unrecognized`] (kept
    /// apart from the rest of `Limits`: a connection's fixed size counts).
    max_buffered: usize,
    max_pending: usize,
    max_unrecognized: u64,
    client: Half,
    server: Half,
    pending: VecDeque<Pending>,
    /// How many requests at the front of `pending` were reported at their deadline.
    timed_out: usize,
    /// When the last response ended: a request queued behind it waited from there.
    answered_at: Timestamp,
    /// [`Limits::response_timeout`], in nanoseconds.
    timeout: u64,
    /// What the connection is known to be: HTTP from the start for a session used on its own;
    /// for a [`Connection`](crate::Connection)'s, `None` until a message start is found (or
    /// another verdict is reached).
    protocol: Option<Protocol>,
    /// What the server's port suggests (while the protocol is not known).
    hint: Option<Protocol>,
    /// Some bytes came, in either direction.
    seen: bool,
    /// Bytes taken in place (see `take_in_place`), before the ones the counters hold now.
    taken: u64,
    stats: Stats,
}

/// Shows the state of each direction and the counts, never head bytes.
impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("protocol", &self.protocol)
            .field("client", &self.client.phase)
            .field("server", &self.server.phase)
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ProtocolSession for Session {}

impl SessionApi for Session {
    fn start(limits: &Limits) -> Self {
        let mut session = Self::unrecognised(limits);
        session.protocol = Some(Protocol::Http);
        session
    }

    /// The bulk of a stream fed in small pieces: more of a body that `bytes` do not end,
    /// counted without stepping, or more of a head they cannot end, gathered.
    #[inline]
    fn take_in_place(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) -> bool {
        let half = match dir {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        };
        let counter = &mut half.in_place;
        let len = bytes.len() as u64;
        if len.wrapping_sub(1) < counter.left {
            counter.left -= len;
            counter.last = now;
            return true;
        }
        if self.gather_in_place(dir, now, bytes) {
            self.taken += len;
            return true;
        }
        false
    }

    fn feed(&mut self, dir: Direction, now: Timestamp, bytes: &[u8], out: &mut VecDeque<Event>) {
        self.commit_in_place();
        self.seen |= !bytes.is_empty();
        self.run(dir, now, bytes, out);
        self.arm_in_place();
    }

    fn gap(&mut self, dir: Direction, now: Timestamp, missing: u64, out: &mut VecDeque<Event>) {
        self.commit_in_place();
        self.gap_stepwise(dir, now, missing, out);
        self.arm_in_place();
    }

    fn eof(&mut self, dir: Direction, now: Timestamp, out: &mut VecDeque<Event>) {
        self.commit_in_place();
        self.eof_stepwise(dir, now, out);
        self.arm_in_place();
    }

    /// The deadline of the oldest request still waiting, once it has been sent whole: from its
    /// last byte, or from the end of the response before it; none while a response's body is
    /// read, or before the connection is known to be HTTP.
    fn poll_timeout(&self) -> Option<Timestamp> {
        // A response head still being gathered does not count yet: whether it is one is only
        // judged when it ends (or as it would have been, whole), and deadlines must not depend
        // on how the bytes were cut. Before a message says HTTP, only places a gap kept wait.
        if matches!(self.server.phase, Phase::Body(_)) || self.protocol != Some(Protocol::Http) {
            return None;
        }
        let waiting = self.pending.get(self.timed_out)?;
        if !waiting.complete {
            return None;
        }
        crate::session::deadline(waiting.message.last.max(self.answered_at), self.timeout)
    }

    fn handle_timeout(&mut self, now: Timestamp, out: &mut VecDeque<Event>) {
        self.commit_in_place();
        while self.poll_timeout().is_some_and(|deadline| deadline <= now) {
            let Some(waiting) = self.pending.get_mut(self.timed_out) else {
                break;
            };
            let request = core::mem::replace(&mut waiting.message, Message::starting(now));
            waiting.timed_out = true;
            let flags = Flags {
                missing_response: true,
                timed_out: true,
                ..waiting.flags
            };
            let record = Transaction {
                request: (!request.head.is_empty()).then_some(request),
                response: None,
                interim: waiting.interim,
                interim_len: waiting.interim_len,
                flags,
            };
            self.timed_out += 1;
            self.stats.timed_out += 1;
            self.stats.transactions += 1;
            out.push_back(Event::Transaction(record));
        }
        self.arm_in_place();
    }

    fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.bytes = self.taken + self.client.in_place.taken() + self.server.in_place.taken();
        stats
    }

    fn buffered_bytes(&self) -> usize {
        let half = |h: &Half| {
            h.buf.capacity()
                + h.reread.capacity()
                + h.current.as_ref().map_or(0, |(m, _)| m.head.len())
        };
        half(&self.client)
            + half(&self.server)
            + self.pending.capacity() * size_of::<Pending>()
            + self
                .pending
                .iter()
                .map(|p| p.message.head.len())
                .sum::<usize>()
    }
}

impl Session {
    /// A session for a connection whose protocol is not known yet: each direction's first bytes
    /// are judged by the [`Connection`](crate::Connection) first (see [`Session::at_start`]).
    pub(crate) fn unrecognised(limits: &Limits) -> Self {
        Self {
            max_buffered: limits.max_buffered,
            max_pending: limits.max_pending,
            max_unrecognized: limits.max_unrecognized,
            client: Half::new(),
            server: Half::new(),
            pending: VecDeque::new(),
            timed_out: 0,
            answered_at: Timestamp(0),
            timeout: limits.response_timeout_ns(),
            protocol: None,
            hint: None,
            seen: false,
            taken: 0,
            stats: Stats::default(),
        }
    }

    /// What the server's port suggests, consulted while the protocol is not known.
    pub(crate) const fn set_hint(&mut self, hint: Option<Protocol>) {
        self.hint = hint;
    }

    /// What the connection is known to be, as far as this session knows.
    pub(crate) const fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// The connection was recognised as `protocol` by other means than an HTTP message (TLS).
    pub(crate) const fn recognise(&mut self, protocol: Protocol) {
        self.protocol = Some(protocol);
    }

    /// Whether nothing of `dir` was handed over yet: its first bytes are being judged.
    pub(crate) const fn at_start(&self, dir: Direction) -> bool {
        matches!(self.half_ref(dir).phase, Phase::Start)
    }

    /// The first bytes of `dir`, held while they are judged (see [`Session::at_start`]), where
    /// a gap, an end or a verdict on the other direction treats them like any bytes held.
    pub(crate) fn first_bytes(&mut self, dir: Direction) -> &mut Held {
        self.seen = true;
        &mut self.half(dir).buf
    }

    /// How many of `dir`'s first bytes are held, being judged.
    pub(crate) fn first_bytes_held(&self, dir: Direction) -> usize {
        if self.at_start(dir) {
            self.half_ref(dir).buf.len()
        } else {
            0
        }
    }

    /// `dir`'s first bytes are not TLS, MySQL or MongoDB: they are searched for an HTTP message
    /// start from a line start, each at the time it arrived (run by the next
    /// [`Session::run`]).
    pub(crate) fn hand_over(&mut self, dir: Direction) {
        let half = self.half(dir);
        half.phase = Phase::Lost;
        half.line_start = true;
        half.reread = core::mem::take(&mut half.buf);
    }

    /// The connection turned out to speak another protocol: what each direction held is counted
    /// as skipped, and returned with what was skipped and not reported yet, client then server.
    pub(crate) fn abandon(&mut self) -> [u64; 2] {
        [Direction::ClientToServer, Direction::ServerToClient].map(|d| {
            let held = self.half(d).buf.len();
            self.note_skipped(d, held);
            self.end_blank_lines(d);
            let half = self.half(d);
            half.buf.clear();
            core::mem::take(&mut half.skipped)
        })
    }

    /// More of a head being gathered that `bytes` cannot end (a head ends with a line end, and
    /// `bytes` holds none): kept exactly as the stepwise path would, without stepping.
    #[inline]
    fn gather_in_place(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) -> bool {
        let limit = self.max_buffered;
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
    pub(crate) fn commit_in_place(&mut self) {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let half = self.half(dir);
            let counted = half.in_place.taken();
            let last = half.in_place.last;
            half.in_place = InPlace::default();
            if counted == 0 {
                continue;
            }
            self.taken += counted;
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
    pub(crate) fn arm_in_place(&mut self) {
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

    /// Steps through `bytes`. When gathered bytes must be read again, they and the rest of
    /// `bytes` continue from an owned copy (only on that error path).
    pub(crate) fn run(
        &mut self,
        dir: Direction,
        now: Timestamp,
        bytes: &[u8],
        out: &mut VecDeque<Event>,
    ) {
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
            let used = self.step(dir, time, input, out);
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

    fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        }
    }

    const fn half_ref(&self, dir: Direction) -> &Half {
        match dir {
            Direction::ClientToServer => &self.client,
            Direction::ServerToClient => &self.server,
        }
    }

    /// Consumes a prefix of `input` in the current phase; returns its length.
    fn step(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        out: &mut VecDeque<Event>,
    ) -> usize {
        if let Some(used) = self.blank_lines(dir, input) {
            return used;
        }
        let half = self.half(dir);
        match &half.phase {
            // Used on its own, a direction is searched for a message start from its first
            // byte, as a line start.
            Phase::Start => {
                half.phase = Phase::Lost;
                half.line_start = true;
                0
            }
            Phase::Head => self.head(dir, now, input, out),
            Phase::Lost => self.resync(dir, now, input, out),
            Phase::Opaque | Phase::Closed => input.len(),
            // Moved out, not cloned (a chunked body's scanner is boxed and large); `body` always
            // stores the phase that follows.
            Phase::Body(_) => match core::mem::replace(&mut half.phase, Phase::Closed) {
                Phase::Body(body) => self.body(dir, now, input, body, out),
                other => {
                    half.phase = other;
                    0
                }
            },
        }
    }

    /// Consumes the empty lines at the front of `input` where a message start is expected (see
    /// [`Blank`]); `None` when there are none to consume, and the phase reads `input` from its
    /// first byte: the start line (whose first byte is the message's first), or bytes that are
    /// not one, which the phase skips as out of sync. A CR that no LF follows is such a byte;
    /// what follows it is read mid-line.
    fn blank_lines(&mut self, dir: Direction, input: &[u8]) -> Option<usize> {
        let half = self.half_ref(dir);
        // Bytes held (a head begun, a candidate start) mean a start line has begun: line ends
        // are part of it from there.
        if half.blank == Blank::Off
            || !half.buf.is_empty()
            || !matches!(half.phase, Phase::Head | Phase::Lost)
        {
            return None;
        }
        // Before the connection is known to be HTTP, empty lines are no evidence of it: they
        // count against the recognition budget like any bytes that are not a message, so a
        // stream of line ends is still given up at the bound (by `resync`, once it is spent).
        let budget = self.unrecognized_budget(dir);
        let room = budget.map_or(input.len(), |left| {
            usize::try_from(left).map_or(input.len(), |left| left.min(input.len()))
        });
        let half = self.half(dir);
        let mut used = 0;
        for &byte in input.get(..room).unwrap_or_default() {
            half.blank = match (half.blank, byte) {
                (_, b'\n') => Blank::On,
                (Blank::On, b'\r') => Blank::Cr,
                _ => break,
            };
            used += 1;
        }
        if budget.is_some() {
            half.unrecognized += used as u64;
        }
        if used > 0 {
            return Some(used);
        }
        if room == 0 {
            // The budget is spent: `resync` gives the connection up.
            return None;
        }
        // A start line, or junk: a CR before it ended no line, so it is read from mid-line.
        if half.blank == Blank::Cr {
            if matches!(half.phase, Phase::Head) {
                // Out of sync from here (the CR is counted as skipped); the step ends on the
                // change of phase, and `resync` reads `input` next.
                self.lose(dir);
                return Some(0);
            }
            half.line_start = false;
        }
        self.end_blank_lines(dir);
        None
    }

    /// Leaves a message boundary: a CR still waiting for its LF was a stray byte, counted as
    /// skipped (not against the recognition budget: it was, as it came).
    fn end_blank_lines(&mut self, dir: Direction) {
        let half = self.half(dir);
        if core::mem::replace(&mut half.blank, Blank::Off) == Blank::Cr {
            half.skipped += 1;
            self.stats.skipped_bytes += 1;
        }
    }

    fn head(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        out: &mut VecDeque<Event>,
    ) -> usize {
        let limit = self.max_buffered;
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
                Ok(Status::Complete { value: head, .. }) if head.len <= limit => {
                    let (summary, len) = (head_summary(&head), head.len);
                    let bytes = Bytes::copy_from_slice(input.get(..len).unwrap_or_default());
                    self.on_head(dir, now, summary, bytes, out);
                    len
                }
                Ok(Status::Partial { .. }) if input.len() < limit => {
                    half.buf.extend(input, now);
                    input.len()
                }
                // Too long a head, or not a head: skip a byte and look for the next start.
                verdict => {
                    self.stats.over_buffered += u64::from(verdict.is_ok());
                    self.lose(dir);
                    self.note_skipped(dir, 1);
                    1
                }
            }
        } else {
            // A head cut by earlier chunks: gather it up to its blank line (bounded), then parse
            // the whole. What follows the head in this chunk (a body) is neither copied nor
            // scanned twice.
            let room = input.get(..input.len().min(limit.saturating_sub(held)));
            let room = room.unwrap_or_default();
            let before = half.buf.get(held.saturating_sub(3)..).unwrap_or_default();
            let end = head_end(before, room);
            let take = end.unwrap_or(room.len());
            half.buf.extend(room.get(..take).unwrap_or_default(), now);
            // Parse again only once the head's blank line has arrived: looking at the new bytes
            // (and the three before them) keeps a head trickled byte by byte linear, not quadratic.
            if end.is_none() && half.buf.len() < limit {
                return take;
            }
            let verdict = match parse(&half.buf) {
                Ok(Status::Complete { value: head, .. }) => {
                    Some(Ok((head_summary(&head), head.len)))
                }
                Ok(Status::Partial { .. }) if half.buf.len() < limit => None,
                // Too long a head (counted), or not a head.
                Ok(Status::Partial { .. }) => Some(Err(true)),
                Err(_) => Some(Err(false)),
            };
            match verdict {
                None => take,
                Some(Ok((summary, len))) => {
                    let bytes = half.buf.split_to(len);
                    // What was gathered past the head is still in `input`: it is read again.
                    half.buf.clear();
                    self.on_head(dir, now, summary, bytes, out);
                    len - held
                }
                Some(Err(over)) => {
                    self.stats.over_buffered += u64::from(over);
                    // This chunk's bytes are read again after the gathered ones.
                    self.reread_after_bad_head(dir, held);
                    0
                }
            }
        }
    }

    fn on_head(
        &mut self,
        dir: Direction,
        now: Timestamp,
        head: HeadSummary,
        bytes: Bytes,
        out: &mut VecDeque<Event>,
    ) {
        self.stats.messages += 1;
        // Empty lines before a start line are consumed before the head is (`blank_lines`), and a
        // message found by `resync` starts at its first letter: a head that began with a line
        // end would have no start line to read a method or status from.
        debug_assert!(
            !matches!(bytes.first(), Some(b'\r' | b'\n')),
            "a head starts at its start line"
        );
        let half = self.half(dir);
        half.idle = false;
        let kept_place = core::mem::take(&mut half.kept_place);
        let Some((mut message, gap)) = half.current.take() else {
            return;
        };
        message.head = bytes;
        if kept_place && dir == Direction::ClientToServer {
            self.drop_kept_place();
        }
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
                    method_head: head.method_head,
                    method_connect: head.method_connect,
                    ..Pending::new(message, flags)
                });
                self.start_body(dir, framing, out);
            }
            Direction::ServerToClient => {
                self.settle(Direction::ClientToServer, now, out);
                if self.pending.is_empty() && !self.client.buf.is_empty() {
                    // Answered while the only request's head was still being gathered: the
                    // capture missed the head's end. Keep what was seen; find the next request.
                    self.salvage_head(Direction::ClientToServer, out);
                    if !self.pending.is_empty() {
                        self.client.phase = Phase::Lost;
                        self.client.line_start = false;
                        self.client.blank = Blank::Off;
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
                    // A whole message: the final response's start line is expected next.
                    self.server.phase = Phase::Head;
                    self.server.blank = Blank::On;
                    self.server.idle = true;
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
                        self.finish_response(
                            Flags {
                                upgraded: true,
                                ..Flags::default()
                            },
                            out,
                        );
                        self.go_opaque();
                        out.push_back(Event::Tunnel);
                    }
                    other => self.start_body(dir, other, out),
                }
            }
        }
    }

    fn start_body(&mut self, dir: Direction, framing: BodyFraming, out: &mut VecDeque<Event>) {
        let body = match framing {
            BodyFraming::Length(0) | BodyFraming::Empty | BodyFraming::Tunnel => None,
            BodyFraming::Length(n) => Some(Body::Length(n)),
            BodyFraming::Chunked => Some(Body::Chunked(Box::default())),
            BodyFraming::UntilClose => Some(Body::UntilClose),
        };
        match body {
            Some(b) => self.half(dir).phase = Phase::Body(b),
            None => self.message_done(dir, None, out),
        }
    }

    fn body(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        body: Body,
        out: &mut VecDeque<Event>,
    ) -> usize {
        let (used, done, next) = match body {
            Body::Length(left) => {
                let take = (input.len() as u64).min(left);
                (take as usize, take == left, Body::Length(left - take))
            }
            Body::UntilClose => (input.len(), false, Body::UntilClose),
            Body::Chunked(mut scanner) => {
                let before = scanner.body_bytes;
                match scanner.scan(input) {
                    Ok(Status::Complete { consumed: n, .. }) => {
                        self.add_body(dir, now, scanner.body_bytes - before);
                        self.half(dir).phase = Phase::Body(Body::Chunked(scanner));
                        self.message_done(dir, Some(now), out);
                        return n;
                    }
                    Ok(Status::Partial { .. }) => {
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
            self.message_done(dir, Some(now), out);
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

    fn message_done(&mut self, dir: Direction, now: Option<Timestamp>, out: &mut VecDeque<Event>) {
        let half = self.half(dir);
        half.phase = Phase::Head;
        half.blank = Blank::On;
        half.idle = true;
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
                self.finish_response(Flags::default(), out);
            }
        }
    }

    fn finish_response(&mut self, extra: Flags, out: &mut VecDeque<Event>) {
        if self.server.current.is_none() {
            return;
        }
        let now = self
            .server
            .current
            .as_ref()
            .map_or(Timestamp(0), |(m, _)| m.last);
        self.settle(Direction::ClientToServer, now, out);
        let Some((response, gap)) = self.server.current.take() else {
            return;
        };
        // Skips are reported just before the record that follows them.
        self.report_skipped(Direction::ClientToServer, out);
        self.report_skipped(Direction::ServerToClient, out);
        self.answered_at = response.last;
        if self.timed_out > 0 {
            // The response to a request reported at its deadline: consumed, no second record.
            let _ = self.pending.pop_front();
            self.timed_out -= 1;
            self.stats.late_responses += 1;
            return;
        }
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
        out.push_back(Event::Transaction(t));
    }

    /// Bytes lost by the capture in one direction. Inside a body of known length they are skipped
    /// and the decoder stays in sync; elsewhere it looks for the next message start, and a head
    /// the gap cut keeps its complete lines (its record is flagged `gap` and `truncated`).
    fn gap_stepwise(
        &mut self,
        dir: Direction,
        now: Timestamp,
        missing: u64,
        out: &mut VecDeque<Event>,
    ) {
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
                    self.message_done(dir, None, out);
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
                let half = self.half_ref(dir);
                let between_messages = half.buf.is_empty()
                    && (matches!(phase, Phase::Head | Phase::Start)
                        || (matches!(phase, Phase::Lost) && half.idle));
                // A head cut by the gap (a snaplen, a lost segment) keeps its complete lines.
                self.settle(dir, now, out);
                self.salvage_head(dir, out);
                mark(self);
                match dir {
                    // A response cut inside its body is reported, flagged, with its request.
                    Direction::ServerToClient if self.server.current.is_some() => {
                        self.finish_response(
                            Flags {
                                truncated: true,
                                ..Flags::default()
                            },
                            out,
                        );
                    }
                    // The lost bytes began a response: the oldest request's answer is gone. It
                    // is reported without one rather than paired with the next response (or,
                    // for a request already reported at its deadline, only its place goes).
                    Direction::ServerToClient if between_messages && self.timed_out > 0 => {
                        let _ = self.pending.pop_front();
                        self.timed_out -= 1;
                    }
                    Direction::ServerToClient if between_messages => {
                        if let Some(p) = self.pending.pop_front() {
                            self.report_unanswered(
                                p,
                                Flags {
                                    gap: true,
                                    ..Flags::default()
                                },
                                out,
                            );
                        }
                    }
                    // The lost bytes began a request: its place in the queue is kept, so its
                    // response does not pair with the next request.
                    Direction::ClientToServer if between_messages => {
                        let flags = Flags {
                            gap: true,
                            ..Flags::default()
                        };
                        self.push_pending(Pending {
                            complete: true,
                            ..Pending::new(Message::starting(now), flags)
                        });
                        // Too few bytes for a whole request: they can only have begun one, which a
                        // request line right after them rules out (a lost segment of line ends).
                        self.client.kept_place = missing < MIN_HEAD;
                    }
                    _ => {}
                }
                self.lose(dir);
                // What comes next is read as out of sync, and no longer known to follow a
                // whole message.
                self.half(dir).idle = false;
            }
        }
    }

    /// Queues a request for its response, within [`Limits::max_pending`] (a place held for a
    /// request reported at its deadline counts too).
    fn push_pending(&mut self, pending: Pending) {
        if self.pending.len() >= self.max_pending {
            let _ = self.pending.pop_front();
            self.timed_out = self.timed_out.saturating_sub(1);
            self.stats.dropped_requests += 1;
        }
        self.pending.push_back(pending);
    }

    /// A request line came right after a short gap that kept a place for a request it may have
    /// begun: it began none, so the place (the last one queued, unless a response took it or it
    /// was reported at its deadline) goes.
    fn drop_kept_place(&mut self) {
        let is_place = |p: &Pending| p.message.head.is_empty() && p.flags.gap && p.complete;
        if self.pending.len() > self.timed_out && self.pending.back().is_some_and(is_place) {
            let _ = self.pending.pop_back();
        }
    }

    /// Forgets every request waiting (and place held).
    pub(super) fn drop_pending(&mut self) {
        self.pending.clear();
        self.timed_out = 0;
    }

    /// The oldest request, or `None` once only places of requests reported at their deadline
    /// are left (those are dropped: their responses are not coming any more).
    fn pop_front(&mut self) -> Option<Pending> {
        for _ in 0..core::mem::take(&mut self.timed_out) {
            let _ = self.pending.pop_front();
        }
        self.pending.pop_front()
    }

    /// Reports a request that will get no response (not one reported at its deadline).
    fn report_unanswered(&mut self, p: Pending, extra: Flags, out: &mut VecDeque<Event>) {
        let flags = Flags {
            missing_response: true,
            gap: p.flags.gap || extra.gap,
            ..p.flags
        };
        self.stats.transactions += 1;
        out.push_back(Event::Transaction(Transaction {
            request: (!p.message.head.is_empty()).then_some(p.message),
            response: None,
            interim: p.interim,
            interim_len: p.interim_len,
            flags,
        }));
    }

    /// The end of one direction. A close-delimited response ends here; when the server's side
    /// ends (or the client's after it), requests still waiting are reported without a response.
    fn eof_stepwise(&mut self, dir: Direction, now: Timestamp, out: &mut VecDeque<Event>) {
        self.settle(dir, now, out);
        self.salvage_head(dir, out);
        match self.half(dir).phase.clone() {
            // The body's last byte is the last data before the close, not the close itself.
            Phase::Body(Body::UntilClose) => self.message_done(dir, None, out),
            Phase::Body(_) => {
                if dir == Direction::ServerToClient && self.server.current.is_some() {
                    self.finish_response(
                        Flags {
                            truncated: true,
                            ..Flags::default()
                        },
                        out,
                    );
                } else if let Some(p) = self.pending.back_mut() {
                    p.flags.truncated = true;
                }
            }
            _ => {}
        }
        // A held candidate or an unfinished head never became a message: its bytes were skipped
        // (and so was a CR that no LF followed).
        let held = self.half(dir).buf.len();
        if matches!(
            self.half(dir).phase,
            Phase::Start | Phase::Lost | Phase::Head
        ) {
            self.note_skipped(dir, held);
            self.half(dir).buf.clear();
        }
        self.end_blank_lines(dir);
        self.report_skipped(dir, out);
        self.half(dir).phase = Phase::Closed;
        // Both sides ended with nothing recognised.
        let closed = |half: &Half| matches!(half.phase, Phase::Closed);
        if self.protocol.is_none() && self.seen && closed(&self.client) && closed(&self.server) {
            self.give_up_recognising(out);
        }
        if matches!(self.server.phase, Phase::Closed) {
            while let Some(p) = self.pop_front() {
                self.report_unanswered(p, Flags::default(), out);
            }
        }
    }
}

fn parse_head(dir: Direction, buf: &[u8]) -> Result<Status<Head<'_>>, Error> {
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

/// Where a head's blank line ends in `new`, which follows `before` (the last bytes gathered;
/// three are enough): just after the LF of an LF LF or LF CR LF (httparse accepts bare LFs, so
/// CRLF LF and LF CRLF end a head too). Found with `memchr`, so a head followed in the same
/// chunk by a long body costs a vectorised scan for line ends, not a byte-by-byte search.
fn head_end(before: &[u8], new: &[u8]) -> Option<usize> {
    // The byte `back` positions before `new[i]`, reaching into `before`.
    let byte_before = |i: usize, back: usize| -> Option<u8> {
        match i.checked_sub(back) {
            Some(j) => new.get(j).copied(),
            None => {
                let from_end = back - i;
                before
                    .len()
                    .checked_sub(from_end)
                    .and_then(|j| before.get(j))
                    .copied()
            }
        }
    };
    memchr::memchr_iter(b'\n', new).find_map(|i| {
        let previous = byte_before(i, 1);
        let ends = previous == Some(b'\n')
            || (previous == Some(b'\r') && byte_before(i, 2) == Some(b'\n'));
        ends.then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn a_head_end_is_found_wherever_the_chunk_boundary_falls() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"[..],
            b"GET / HTTP/1.1\nHost: x\n\nbody",
        ] {
            let end = head.len() - 4;
            for cut in 0..=head.len() {
                let (before, new) = head.split_at(cut);
                let got = head_end(before, new).map(|at| cut + at);
                let want = (cut < end).then_some(end);
                assert_eq!(
                    got,
                    want,
                    "cut at {cut} of {:?}",
                    String::from_utf8_lossy(head)
                );
            }
        }
        assert_eq!(head_end(b"", b"no end\r\nhere"), None);
        assert_eq!(head_end(b"\n", b"\r\n"), Some(2));
    }
}
