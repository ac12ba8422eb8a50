//! The MongoDB sub-decoder: framing per direction (in place when a message is whole in a chunk,
//! else gathered in a reused bounded buffer), unwrapping OP_COMPRESSED, and pairing replies with
//! requests. See the [module docs](super).

#![deny(clippy::indexing_slicing)]

use std::collections::VecDeque;

use super::bson::Doc;
use super::wire::{self, Header, Summary, op};
use super::{Operation, Outcome, Replies, TextRef};
use crate::session::{ProtocolSession, Session as SessionApi};
use crate::skipped::Skipped;
use crate::window::Window;
use crate::{Direction, Event, Limits, Span, Stats, Timestamp};

#[derive(Debug)]
struct Half {
    header: [u8; 16],
    header_len: usize,
    first: Timestamp,
    /// Body bytes still to come for the current message.
    need: u64,
    /// Bytes of the current message that arrived (header included, lost ones not).
    received: u64,
    /// The current message, gathered (header included) when it spans chunks.
    buf: Vec<u8>,
    /// Whether the current message is kept whole (else only its first bytes).
    whole: bool,
    gap: bool,
    lost: bool,
    /// While lost: the bytes being judged as a header, and each one's arrival.
    window: Window,
    /// Inflated bodies of compressed messages (reused).
    plain: Vec<u8>,
}

impl Half {
    fn new(lost: bool) -> Self {
        Self {
            header: [0; 16],
            header_len: 0,
            first: Timestamp(0),
            need: 0,
            received: 0,
            buf: Vec::new(),
            whole: true,
            gap: false,
            lost,
            window: Window::default(),
            plain: Vec::new(),
        }
    }
}

impl Half {
    /// What arrived of a message that has not ended (not only what of it was kept).
    const fn partial(&self) -> u64 {
        if self.header_len == 16 {
            self.received
        } else {
            self.header_len as u64
        }
    }
}

#[derive(Debug)]
struct Pending {
    op: Operation,
    /// After a moreToCome reply: the next reply answers this reply's requestID.
    chain_next: Option<u32>,
    /// Reported at its deadline: it holds its place, so that a reply that still comes is
    /// consumed rather than reported as an orphan.
    timed_out: bool,
}

impl Pending {
    /// Waiting for its first reply (and not reported yet).
    const fn waiting(&self) -> bool {
        !self.timed_out && self.op.response.is_none()
    }
}

/// One connection's MongoDB session; see [`mongo::Decoder`](super::Decoder) to use it on its
/// own.
pub struct Session {
    halves: [Half; 2],
    /// Requests in the order they came: waiting for a reply, in a reply chain, or holding the
    /// place of one reported at its deadline.
    pending: VecDeque<Pending>,
    /// Where in `pending` the first request still waiting is (every one before it is in a
    /// reply chain or timed out; `pending.len()` when none is): the one whose deadline comes
    /// first, found without a scan.
    waiting: usize,
    /// [`Limits::response_timeout`], in nanoseconds.
    timeout: u64,
    /// Requests reported at their deadline, and replies that came after it.
    timeouts: u64,
    late: u64,
    /// The server's side ended: requests sent later are reported as the client's side ends.
    server_ended: bool,
    max_pending: usize,
    /// The largest message read whole, and what is read of a larger one
    /// ([`Limits::max_buffered`], and at least the 16-byte header, which is kept apart).
    max_message: usize,
    messages: u64,
    /// Messages larger than `max_message`, compressed or inflated.
    over_buffered: u64,
    skipped: Skipped,
    dropped: u64,
    /// Records reported.
    records: u64,
}

/// Shows what each side is doing and the counts, never documents.
impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [client, server] = &self.halves;
        f.debug_struct("Session")
            .field("client_lost", &client.lost)
            .field("server_lost", &server.lost)
            .field("pending", &self.pending.len())
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl ProtocolSession for Session {}

impl SessionApi for Session {
    /// Used on its own, both sides start at a message.
    fn start(limits: &Limits) -> Self {
        Self::new(limits, [false, false])
    }

    fn feed(&mut self, dir: Direction, now: Timestamp, input: &[u8], events: &mut VecDeque<Event>) {
        self.feed_bytes(dir, now, input, events);
    }

    fn gap(&mut self, dir: Direction, now: Timestamp, missing: u64, events: &mut VecDeque<Event>) {
        self.gap_bytes(dir, now, missing, events);
    }

    fn eof(&mut self, dir: Direction, _now: Timestamp, events: &mut VecDeque<Event>) {
        self.end(dir, events);
    }

    /// The deadline of the oldest request waiting for its first reply, from its last byte;
    /// none while a reply message is being read.
    fn poll_timeout(&self) -> Option<Timestamp> {
        let [_, server] = &self.halves;
        if server.header_len > 0 {
            return None;
        }
        let request = self.pending.get(self.waiting)?.op.request?;
        crate::session::deadline(request.last, self.timeout)
    }

    /// Reports each request past its deadline, `Missing` and flagged `timed_out`, and keeps its
    /// place for a reply that may still come.
    fn handle_timeout(&mut self, now: Timestamp, events: &mut VecDeque<Event>) {
        while self.poll_timeout().is_some_and(|deadline| deadline <= now) {
            let Some(waiting) = self.pending.get_mut(self.waiting) else {
                break;
            };
            waiting.timed_out = true;
            let mut record = waiting.op.clone();
            record.outcome = Outcome::Missing;
            record.flags.missing_response = true;
            record.flags.timed_out = true;
            self.records += 1;
            self.timeouts += 1;
            events.push_back(Event::Mongo(record));
            self.find_waiting();
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            skipped_bytes: self.skipped.total(),
            transactions: self.records,
            messages: self.messages,
            dropped_requests: self.dropped,
            over_buffered: self.over_buffered,
            timed_out: self.timeouts,
            late_responses: self.late,
            ..Stats::default()
        }
    }

    fn buffered_bytes(&self) -> usize {
        let half = |h: &Half| h.buf.capacity() + h.plain.capacity() + h.window.heap_bytes();
        self.halves.iter().map(half).sum::<usize>() + self.pending.capacity() * size_of::<Pending>()
    }
}

/// A message read, with where its bytes came from.
struct Message<'a> {
    header: Header,
    /// The original opcode (inside OP_COMPRESSED).
    opcode: i32,
    compressor: Option<u8>,
    summary: Summary<'a>,
    span: Span,
    gap: bool,
    truncated: bool,
    /// Its compressed body inflates past the bound: only its first bytes were read.
    inflated_over: bool,
}

impl Session {
    /// A session whose `dir` starts at a message; the other side starts at one too when it has
    /// not spoken yet (`other_lost` when it has: it waits for a plausible header).
    pub(crate) fn new(limits: &Limits, lost: [bool; 2]) -> Self {
        let [client, server] = lost;
        Self {
            halves: [Half::new(client), Half::new(server)],
            pending: VecDeque::new(),
            waiting: 0,
            timeout: limits.response_timeout_ns(),
            timeouts: 0,
            late: 0,
            server_ended: false,
            max_pending: limits.max_pending,
            max_message: limits.max_buffered.max(16),
            messages: 0,
            over_buffered: 0,
            skipped: Skipped::default(),
            dropped: 0,
            records: 0,
        }
    }

    fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ClientToServer => &mut self.halves[0],
            Direction::ServerToClient => &mut self.halves[1],
        }
    }

    fn skip(&mut self, dir: Direction, n: u64) {
        self.skipped.add(dir, n);
    }

    fn report_skipped(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        self.skipped.report(dir, events);
    }

    /// In-order bytes of `dir`.
    fn feed_bytes(
        &mut self,
        dir: Direction,
        now: Timestamp,
        mut input: &[u8],
        events: &mut VecDeque<Event>,
    ) {
        while !input.is_empty() {
            let used = if self.half(dir).lost {
                self.resync(dir, now, input, events)
            } else {
                self.step(dir, now, input, events)
            };
            input = input.get(used..).unwrap_or_default();
        }
    }

    /// Consumes a prefix of `input` in sync.
    fn step(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        events: &mut VecDeque<Event>,
    ) -> usize {
        let request = dir == Direction::ClientToServer;
        let max_message = self.max_message;
        let half = self.half(dir);
        if half.header_len == 0 {
            // The common case: a whole message in this chunk, read in place (of a message over
            // the bound, what would have been gathered: its first bytes).
            if let Some(h) = input.get(..16).and_then(wire::header)
                && wire::sane_header(input, request)
                && let Some(whole) = input.get(..h.len as usize)
            {
                let span = Span {
                    first: now,
                    last: now,
                    bytes: u64::from(h.len),
                };
                let kept = whole.get(..max_message).unwrap_or(whole);
                let mut plain = core::mem::take(&mut half.plain);
                let msg = read(
                    kept,
                    whole.len() as u64,
                    span,
                    false,
                    &mut plain,
                    max_message,
                );
                self.over_buffered += u64::from(kept.len() < whole.len());
                self.on_message(dir, msg, events);
                self.half(dir).plain = plain;
                return whole.len();
            }
            half.first = now;
        }
        if half.header_len < 16 {
            let take = (16 - half.header_len).min(input.len());
            if let (Some(dst), Some(src)) = (
                half.header.get_mut(half.header_len..half.header_len + take),
                input.get(..take),
            ) {
                dst.copy_from_slice(src);
            }
            half.header_len += take;
            if half.header_len < 16 {
                return take;
            }
            if !wire::sane_header(&half.header, request) {
                // Not a message start: out of sync. The header's bytes are judged again.
                let header = half.header;
                half.header_len = 0;
                half.lost = true;
                half.window.clear();
                for byte in header.iter().skip(1) {
                    half.window.hold(*byte, half.first);
                }
                self.skip(dir, 1);
                self.lost_sync(dir, events);
                return take;
            }
            let len = wire::header(&half.header).map_or(16, |h| h.len);
            half.need = u64::from(len) - 16;
            half.received = 16;
            half.whole = len as usize <= max_message;
            half.gap = false;
            half.buf.clear();
            half.buf.extend_from_slice(&half.header);
            let (whole, need) = (half.whole, half.need);
            self.over_buffered += u64::from(!whole);
            if need == 0 {
                self.complete(dir, now, events);
            }
            return take;
        }
        let take = input
            .len()
            .min(usize::try_from(half.need).unwrap_or(usize::MAX));
        let room = if half.whole {
            take
        } else {
            max_message.saturating_sub(half.buf.len()).min(take)
        };
        half.buf
            .extend_from_slice(input.get(..room).unwrap_or_default());
        half.need -= take as u64;
        half.received += take as u64;
        if half.need == 0 {
            self.complete(dir, now, events);
        }
        take
    }

    /// The gathered message of `dir` ended at `now`.
    fn complete(&mut self, dir: Direction, now: Timestamp, events: &mut VecDeque<Event>) {
        let max_message = self.max_message;
        let half = self.half(dir);
        half.header_len = 0;
        let len = wire::header(&half.header).map_or(16, |h| h.len);
        let span = Span {
            first: half.first,
            last: now,
            bytes: u64::from(len),
        };
        let truncated = !half.whole;
        let gap = half.gap;
        let buf = core::mem::take(&mut half.buf);
        let mut plain = core::mem::take(&mut half.plain);
        let mut msg = read(
            &buf,
            u64::from(len),
            span,
            truncated,
            &mut plain,
            max_message,
        );
        msg.gap = gap;
        self.on_message(dir, msg, events);
        let half = self.half(dir);
        half.buf = buf;
        half.buf.clear();
        half.plain = plain;
    }

    /// Out of sync: a window slides until it holds a plausible message start for this side (a
    /// header, and for OP_MSG valid flag bits and section kind; judged byte by byte, so chunking
    /// does not matter); replies that follow are orphans.
    fn resync(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        events: &mut VecDeque<Event>,
    ) -> usize {
        let request = dir == Direction::ClientToServer;
        for (at, byte) in input.iter().enumerate() {
            let half = self.half(dir);
            let (dropped, found) = half.window.push(*byte, now, |w| {
                wire::plausible_start(w, request).map(|start| start.then_some(()))
            });
            let window = found.map(|()| {
                half.lost = false;
                half.window.take()
            });
            self.skip(dir, dropped);
            if let Some(window) = window {
                self.report_skipped(dir, events);
                for (byte, at) in window {
                    self.step(dir, at, &[byte], events);
                }
                return at + 1;
            }
        }
        input.len()
    }

    /// `dir` lost sync: a reply being waited on by the oldest request is lost with it.
    fn lost_sync(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        if dir == Direction::ServerToClient
            && let Some(mut p) = self.remove(0)
        {
            p.op.flags.gap = true;
            self.report_missing(p, events);
        }
    }

    /// Moves [`Session::waiting`] on to the first request still waiting.
    fn find_waiting(&mut self) {
        while self.pending.get(self.waiting).is_some_and(|p| !p.waiting()) {
            self.waiting += 1;
        }
    }

    /// Takes the request at `position` out of `pending`.
    fn remove(&mut self, position: usize) -> Option<Pending> {
        let removed = self.pending.remove(position)?;
        if position < self.waiting {
            self.waiting -= 1;
        }
        self.find_waiting();
        Some(removed)
    }

    /// Reports a request whose reply will not come (not one reported at its deadline).
    fn report_missing(&mut self, mut p: Pending, events: &mut VecDeque<Event>) {
        if p.timed_out {
            return;
        }
        p.op.outcome = Outcome::Missing;
        p.op.flags.missing_response = p.op.response.is_none();
        p.op.flags.truncated |= p.op.response.is_some();
        self.records += 1;
        events.push_back(Event::Mongo(p.op));
    }

    /// `missing` bytes of `dir` lost by the capture.
    fn gap_bytes(
        &mut self,
        dir: Direction,
        now: Timestamp,
        missing: u64,
        events: &mut VecDeque<Event>,
    ) {
        let half = self.half(dir);
        if half.lost {
            half.window.clear();
            return;
        }
        if half.header_len == 16 && missing <= half.need {
            // Inside a message: skipped in sync; what is kept stops here.
            half.need -= missing;
            half.gap = true;
            half.whole = false;
            if half.need == 0 {
                self.complete(dir, now, events);
            }
            return;
        }
        // The part of a message that arrived before the loss is skipped.
        let partial = half.partial();
        half.header_len = 0;
        half.buf.clear();
        half.lost = true;
        self.skip(dir, partial);
        self.lost_sync(dir, events);
    }

    /// The end of `dir`.
    fn end(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        let half = self.half(dir);
        let partial = half.window.len() as u64 + half.partial();
        half.window.clear();
        half.buf.clear();
        half.header_len = 0;
        half.lost = true;
        self.skip(dir, partial);
        self.report_skipped(dir, events);
        self.server_ended |= dir == Direction::ServerToClient;
        if self.server_ended {
            self.waiting = 0;
            for p in core::mem::take(&mut self.pending) {
                self.report_missing(p, events);
            }
        }
    }

    fn on_message(&mut self, dir: Direction, msg: Message<'_>, events: &mut VecDeque<Event>) {
        self.messages += 1;
        self.over_buffered += u64::from(msg.inflated_over);
        match dir {
            Direction::ClientToServer => self.request(msg, events),
            Direction::ServerToClient => self.reply(msg, events),
        }
    }

    fn request(&mut self, msg: Message<'_>, events: &mut VecDeque<Event>) {
        let mut op = Operation::new(Some(msg.header.request_id), msg.opcode);
        op.compressor = msg.compressor;
        op.request = Some(msg.span);
        op.flags.gap = msg.gap;
        op.flags.truncated = msg.truncated;
        op.checksum_ok = msg.summary.checksum_ok;
        op.invalid = msg.summary.invalid;
        let s = &msg.summary;
        op.more_to_come = s.flags & wire::flags::MORE_TO_COME != 0;
        op.exhaust_allowed = s.flags & wire::flags::EXHAUST_ALLOWED != 0;
        for (slot, (ident, n)) in op
            .sequences
            .iter_mut()
            .zip(s.sequences.iter().take(s.sequence_count))
        {
            *slot = (op.texts.push(ident, 24), *n);
        }
        op.sequence_count = s.sequence_count;
        let (db_of_ns, coll_of_ns) = split_ns(s.ns);
        // Only `db.$cmd` holds commands (not `db.$cmd.sys.inprog` and the like, whose replies
        // are results too).
        op.replies = match msg.opcode {
            op::MSG => Replies::Command,
            op::QUERY if coll_of_ns == b"$cmd" => Replies::Command,
            op::QUERY | op::GET_MORE => Replies::Results,
            _ => Replies::Unknown,
        };
        match msg.opcode {
            op::MSG => name_command(&mut op, s.body, None),
            op::QUERY if coll_of_ns == b"$cmd" => name_command(&mut op, s.body, Some(db_of_ns)),
            op::QUERY => {
                op.command = op.texts.push(b"OP_QUERY(find)", 48);
                op.db = op.texts.push(db_of_ns, 64);
                op.collection = op.texts.push(coll_of_ns, 128);
            }
            code => {
                if let Some(name) = wire::opcode_name(code) {
                    op.command = op.texts.push(name.as_bytes(), 48);
                }
                op.db = op.texts.push(db_of_ns, 64);
                op.collection = op.texts.push(coll_of_ns, 128);
            }
        }
        let no_reply = op.more_to_come
            || matches!(
                msg.opcode,
                op::UPDATE | op::INSERT | op::DELETE | op::KILL_CURSORS
            );
        if no_reply {
            op.outcome = Outcome::NoResponseExpected;
            self.records += 1;
            events.push_back(Event::Mongo(op));
            return;
        }
        if self.pending.len() >= self.max_pending {
            self.dropped += 1;
            if let Some(p) = self.remove(0) {
                self.report_missing(p, events);
            }
        }
        self.pending.push_back(Pending {
            op,
            chain_next: None,
            timed_out: false,
        });
    }

    fn reply(&mut self, msg: Message<'_>, events: &mut VecDeque<Event>) {
        let to = msg.header.response_to;
        let position = self
            .pending
            .iter()
            .position(|p| p.chain_next == Some(to))
            .or_else(|| {
                self.pending
                    .iter()
                    .position(|p| p.chain_next.is_none() && p.op.request_id == Some(to))
            });
        let Some(position) = position else {
            // A reply to a request the capture missed: counted, not paired.
            let mut op = Operation::new(None, msg.opcode);
            op.flags.orphan = true;
            take_reply(&mut op, &msg);
            op.outcome = status_from(&op);
            self.records += 1;
            events.push_back(Event::Mongo(op));
            return;
        };
        let Some(p) = self.pending.get_mut(position) else {
            return;
        };
        // A reply to a request reported at its deadline is consumed (a chain of them counted
        // once).
        self.late += u64::from(p.timed_out && p.op.response.is_none());
        take_reply(&mut p.op, &msg);
        if msg.summary.flags & wire::flags::MORE_TO_COME != 0 {
            p.chain_next = Some(msg.header.request_id);
            self.find_waiting();
            return;
        }
        if let Some(mut done) = self.remove(position)
            && !done.timed_out
        {
            done.op.outcome = status_from(&done.op);
            self.records += 1;
            events.push_back(Event::Mongo(done.op));
        }
    }
}

/// Reads a whole (or kept-prefix) message: the header, OP_COMPRESSED unwrapped into `plain`.
fn read<'a>(
    bytes: &'a [u8],
    total: u64,
    span: Span,
    truncated: bool,
    plain: &'a mut Vec<u8>,
    max_message: usize,
) -> Message<'a> {
    let header = wire::header(bytes).unwrap_or(Header {
        len: 16,
        request_id: 0,
        response_to: 0,
        opcode: 0,
    });
    let body = bytes.get(16..).unwrap_or_default();
    let mut msg = Message {
        header,
        opcode: header.opcode,
        compressor: None,
        summary: Summary::default(),
        span,
        gap: false,
        truncated: truncated || (bytes.len() as u64) < total,
        inflated_over: false,
    };
    if header.opcode != op::COMPRESSED {
        let whole = (!msg.truncated).then_some(bytes);
        msg.summary = wire::summarize(header.opcode, body, whole);
        return msg;
    }
    let Some((original, size, compressor)) = wire::compressed_prefix(body) else {
        return msg;
    };
    msg.opcode = original;
    msg.compressor = Some(compressor);
    let data = body.get(9..).unwrap_or_default();
    // What a codec inflates, whole or (past `max_message`) its first bytes.
    let size = size as usize;
    let keep = size.min(max_message);
    let inflated: Option<(&'a [u8], bool)> = match compressor {
        0 => Some((data, true)),
        #[cfg(feature = "compression")]
        2 if !msg.truncated => {
            plain.clear();
            plain.resize(keep, 0);
            match inflate_zlib(data, plain) {
                Some((n, true)) if n == size => Some((plain.as_slice(), true)),
                Some((n, false)) if keep < size => {
                    Some((plain.get(..n).unwrap_or_default(), false))
                }
                _ => None,
            }
        }
        #[cfg(feature = "snappy")]
        1 if !msg.truncated => super::snappy::decompress(data, size, keep, plain)
            .map(|whole| (plain.as_slice(), whole)),
        _ => None,
    };
    if let Some((inner, whole)) = inflated {
        msg.summary = wire::summarize(original, inner, None);
        msg.truncated |= !whole;
        msg.inflated_over = !whole;
    }
    #[cfg(not(any(feature = "compression", feature = "snappy")))]
    let _ = (keep, plain);
    msg
}

/// Inflates a zlib stream into `out`, as far as `out` goes: the bytes written, and whether the
/// stream ended there (`None` when it is broken).
#[cfg(feature = "compression")]
fn inflate_zlib(data: &[u8], out: &mut [u8]) -> Option<(usize, bool)> {
    use miniz_oxide::inflate::TINFLStatus;
    use miniz_oxide::inflate::core::inflate_flags::{
        TINFL_FLAG_PARSE_ZLIB_HEADER, TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    };
    use miniz_oxide::inflate::core::{DecompressorOxide, decompress};
    let flags = TINFL_FLAG_PARSE_ZLIB_HEADER | TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let mut state = DecompressorOxide::new();
    let (status, _, written) = decompress(&mut state, data, out, 0, flags);
    match status {
        TINFLStatus::Done => Some((written, true)),
        TINFLStatus::HasMoreOutput => Some((written, false)),
        _ => None,
    }
}

/// `db.collection` split at its first dot.
fn split_ns(ns: &[u8]) -> (&[u8], &[u8]) {
    match ns.iter().position(|c| *c == b'.') {
        Some(dot) => (
            ns.get(..dot).unwrap_or_default(),
            ns.get(dot + 1..).unwrap_or_default(),
        ),
        None => (ns, &[]),
    }
}

/// Command name (first key), `$db` (or the legacy namespace's db), and the collection (the first
/// element's string value, or `collection` for getMore).
fn name_command(op: &mut Operation, body: Option<Doc<'_>>, legacy_db: Option<&[u8]>) {
    let Some(body) = body else {
        return;
    };
    if let Some(first) = body.first() {
        op.command = op.texts.push(first.key, 48);
        if first.key == b"getMore" {
            if let Some(c) = body.get("collection").and_then(|e| e.as_str()) {
                op.cursor_collection = op.texts.push(c, 128);
            }
        } else if let Some(c) = first.as_str() {
            op.collection = op.texts.push(c, 128);
        }
    }
    let db = body.get("$db").and_then(|e| e.as_str()).or(legacy_db);
    if let Some(db) = db {
        op.db = op.texts.push(db, 64);
    }
}

/// Adds one reply message to an operation: the first one's fields, every one's batch.
fn take_reply(op: &mut Operation, msg: &Message<'_>) {
    let first = op.response.is_none();
    match &mut op.response {
        Some(r) => {
            r.last = msg.span.last;
            r.bytes += msg.span.bytes;
        }
        None => op.response = Some(msg.span),
    }
    if let Some(slot) = op.chain.get_mut(op.response_messages as usize) {
        *slot = msg.header.request_id;
    }
    op.response_messages += 1;
    op.flags.gap |= msg.gap;
    op.flags.truncated |= msg.truncated;
    op.invalid |= msg.summary.invalid;
    if msg.summary.checksum_ok == Some(false) {
        op.checksum_ok = Some(false);
    }
    let s = &msg.summary;
    let body = s.body;
    if first {
        op.replies = match op.replies {
            // Only a legacy reply carries a query's results.
            _ if msg.opcode != op::REPLY => Replies::Command,
            Replies::Unknown if body.is_some_and(|b| b.get("ok").is_some()) => Replies::Command,
            Replies::Unknown => Replies::Results,
            known => known,
        };
    }
    let failed = s.reply_flags.is_some_and(|f| {
        f & (wire::reply_flags::QUERY_FAILURE | wire::reply_flags::CURSOR_NOT_FOUND) != 0
    });
    if op.replies == Replies::Results {
        // Results are counted, never read: their fields are the user's.
        if !failed {
            op.batch_docs += u64::from(s.documents);
        }
    } else if let Some(cursor) = body.and_then(|b| b.get("cursor")).and_then(|e| e.as_doc()) {
        let batch = cursor
            .get("firstBatch")
            .or_else(|| cursor.get("nextBatch"))
            .and_then(|e| e.as_doc());
        op.batch_docs += batch.map_or(0, |b| b.elements().count() as u64);
        if first {
            op.cursor_id = cursor.get("id").and_then(|e| e.as_i64());
        }
    }
    if !first {
        return;
    }
    op.response_opcode = Some(msg.opcode);
    op.response_compressed = msg.compressor.is_some();
    op.reply_flags = s.reply_flags;
    if s.reply_flags.is_some() {
        op.number_returned = Some(s.number_returned);
    }
    let command = op.replies == Replies::Command;
    if !command && !failed {
        op.cursor_id = Some(s.reply_cursor);
        return;
    }
    let Some(body) = body else {
        return;
    };
    // One pass over the reply's top level for every field reported: a command's status
    // document, or a failed query's `{$err, code}`.
    for e in body.elements() {
        match e.key {
            b"$err" => {
                op.err_document = command;
                if let Some(m) = e.as_str().filter(|_| op.errmsg == TextRef::default()) {
                    op.errmsg = op.texts.push(m, 160);
                }
            }
            b"code" => op.code = e.as_i64(),
            _ if !command => {}
            b"ok" => op.ok = e.as_f64(),
            b"errmsg" => {
                if let Some(m) = e.as_str().filter(|_| op.errmsg == TextRef::default()) {
                    op.errmsg = op.texts.push(m, 160);
                }
            }
            b"codeName" => {
                if let Some(c) = e.as_str() {
                    op.code_name = op.texts.push(c, 48);
                }
            }
            b"n" => op.n = e.as_i64(),
            b"writeErrors" => take_write_errors(op, e.as_doc()),
            b"writeConcernError" => op.write_concern_error = true,
            _ => {}
        }
    }
}

/// `writeErrors`: each one's code and message, as many as the record keeps.
fn take_write_errors(op: &mut Operation, errors: Option<Doc<'_>>) {
    for error in errors.iter().flat_map(|d| d.elements()) {
        let Some(error) = error.as_doc() else {
            continue;
        };
        let Some(code) = error.get("code").and_then(|c| c.as_i64()) else {
            continue;
        };
        let at = op.write_error_count;
        if at >= op.write_errors.len() {
            break;
        }
        let errmsg = error.get("errmsg").and_then(|m| m.as_str());
        let errmsg = errmsg.map_or_else(TextRef::default, |m| op.texts.push(m, 128));
        if let (Some(code_slot), Some(message_slot)) =
            (op.write_errors.get_mut(at), op.write_messages.get_mut(at))
        {
            *code_slot = code;
            *message_slot = errmsg;
            op.write_error_count += 1;
        }
    }
}

/// The outcome of a finished operation, from its first reply: a legacy reply's failure flags
/// first; then a query's results are a success, and a command's `ok` decides.
fn status_from(op: &Operation) -> Outcome {
    let flags = op.reply_flags.unwrap_or(0);
    if flags & wire::reply_flags::QUERY_FAILURE != 0 || op.err_document {
        Outcome::QueryFailure
    } else if flags & wire::reply_flags::CURSOR_NOT_FOUND != 0 {
        Outcome::CursorNotFound
    } else if op.replies == Replies::Results {
        Outcome::Ok
    } else if op.ok == Some(1.0) {
        if op.write_error_count > 0 || op.write_concern_error {
            Outcome::WriteError
        } else {
            Outcome::Ok
        }
    } else {
        Outcome::Error
    }
}
