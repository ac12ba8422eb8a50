//! The MySQL sub-decoder: framing (and decompression) per direction, the connection phase, and
//! each command's reply read by state. See the [module docs](super).

#![deny(clippy::indexing_slicing)]

use std::collections::VecDeque;

use bytes::Bytes;

#[cfg(feature = "compression")]
use super::compress::{Inflate, Piece};
use super::framing::{Framer, GapOutcome, Payload};
use super::rowsync::{self, Found, RowScan, Until};
use super::wire::{self, caps};
use super::{Command, Outcome, Span};
use crate::session::{ProtocolSession, Session as SessionApi};
use crate::skipped::Skipped;
use crate::window::Window;
use crate::{Direction, Event, Limits, Protocol, Stats, Timestamp};

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's greeting.
    Greeting,
    /// Waiting for the client's handshake response (or SSLRequest).
    Hello,
    /// Commands and replies (the login's own reply is read as its command's).
    Commands,
    /// TLS after an SSLRequest: only counted.
    Tls,
}

/// How packets travel: as they are, or inside compressed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Plain,
    Compressed,
}

/// Judges a resynchronisation window: `None` until enough bytes are there, `Some(None)` when it
/// starts nothing, else the framing of the command it starts. With the framing unknown (a
/// capture joined after the handshake), both are tried.
fn judge_window(w: &[u8], framing: Option<Framing>) -> Option<Option<Framing>> {
    let plain = match framing {
        Some(Framing::Compressed) => Some(false),
        _ => wire::command_start(w),
    };
    let packed = match framing {
        Some(Framing::Plain) => Some(false),
        #[cfg(feature = "compression")]
        _ => wire::compressed_command_start(w),
        #[cfg(not(feature = "compression"))]
        _ => Some(false),
    };
    match (plain, packed) {
        (Some(true), _) => Some(Some(Framing::Plain)),
        (_, Some(true)) => Some(Some(Framing::Compressed)),
        (Some(false), Some(false)) => Some(None),
        _ => None,
    }
}

/// What a reply still has to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Its first packet (or, after MORE_RESULTS, the next resultset's).
    First,
    /// Column or parameter definitions.
    Defs { left: u64, then: AfterDefs },
    /// The EOF after definitions (classic protocol), or with DEPRECATE_EOF unknown, the packet
    /// that tells.
    DefsEof { then: AfterDefs },
    /// Rows until the terminator.
    Rows,
    /// The login (or CHANGE_USER): auth switches and more-data rounds until OK or ERR.
    Auth,
    /// COM_FIELD_LIST: definitions until EOF.
    FieldList,
    /// COM_STATISTICS: one plain string.
    Statistics,
}

/// How one packet moved a reply on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The reply goes on.
    More,
    /// The reply moved to a state that reads this same packet.
    Again,
    /// The reply ended.
    Done(Outcome),
    /// A packet of the rows whose first byte the capture lost: a row, or the terminator, only
    /// what follows can tell.
    Unsure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterDefs {
    Rows,
    PrepareColumns(u64),
    Done,
}

#[derive(Debug)]
struct Pending {
    cmd: Command,
    reply: Reply,
    /// Found by resynchronisation: its reply must confirm it before it is reported.
    confirmed: bool,
    /// Reported at its deadline (if confirmed): it holds its place, so that a reply that still
    /// comes is read (and consumed) as its own rather than as the next command's.
    timed_out: bool,
    /// Columns of the resultset being read (for a CALL, the current one, which the record's
    /// `num_fields` is not): what its rows must hold to be found again after a loss.
    columns: Option<u64>,
}

/// What the state machine asks of the framing after a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    None,
    /// Both directions lost sync (a candidate command its reply did not confirm).
    LoseBoth,
    /// Both directions switch to the compressed framing after this payload.
    Compress,
    /// TLS follows: only count.
    Opaque,
    /// A client command completed: a server side still out of sync starts its reply next.
    Commanded,
    /// The server's packets are in sync but what the last one was is not known (its first byte
    /// was lost in the rows): the packets after it are judged as after a loss.
    RowsUnsure,
}

/// How a direction's bytes are read, each state by its own function of [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Packets, in sync (`frame`).
    Plain,
    /// Out of sync in the plain protocol: the client looks for a command at a packet start, the
    /// server waits for one to say where its reply starts (`resync`).
    PlainLost,
    /// Compressed frames, in sync, and the packets inside them too (`feed_compressed`).
    Compressed,
    /// Compressed frames in sync, the packets inside them not: the rest of a frame is skipped, a
    /// client command may start the next one (`feed_compressed`).
    CompressedPacketsLost,
    /// The frames lost sync too (a gap outside a frame, a capture joined mid-frame): raw bytes
    /// are scanned for a frame that starts a command (`resync`).
    CompressedLost,
    /// TLS after an SSLRequest, or the direction ended: bytes are only counted, and nothing
    /// moves the direction out of this state.
    Opaque,
    /// The server's side lost bytes inside a resultset's rows (plain protocol): the bytes after
    /// the loss are held and judged as packet starts until rows chain again or the reply's
    /// terminator is found where it ends (`scan_rows`, see [`rowsync`]). Not [`Read::lost`]:
    /// the reply is still this command's, and nothing else may claim these bytes.
    RowsLost,
}

impl Read {
    /// Whether packets are out of sync.
    const fn lost(self) -> bool {
        matches!(
            self,
            Self::PlainLost | Self::CompressedPacketsLost | Self::CompressedLost
        )
    }

    /// Whether the direction speaks the compressed protocol.
    #[cfg_attr(not(feature = "compression"), allow(dead_code))]
    const fn compressed(self) -> bool {
        matches!(
            self,
            Self::Compressed | Self::CompressedPacketsLost | Self::CompressedLost
        )
    }

    /// Packets lose sync (frames, if any, keep theirs).
    const fn lose(&mut self) {
        *self = match *self {
            Self::Plain => Self::PlainLost,
            Self::Compressed => Self::CompressedPacketsLost,
            other => other,
        };
    }

    /// Sync is found again at a packet (and frame) start.
    const fn regain(&mut self) {
        *self = match *self {
            Self::PlainLost => Self::Plain,
            Self::CompressedPacketsLost | Self::CompressedLost => Self::Compressed,
            other => other,
        };
    }

    /// The compressed protocol from the next frame on.
    const fn compress(&mut self) {
        *self = match *self {
            Self::Plain => Self::Compressed,
            Self::PlainLost => Self::CompressedPacketsLost,
            other => other,
        };
    }
}

#[derive(Debug)]
struct Half {
    framer: Framer,
    #[cfg(feature = "compression")]
    inflate: Option<Box<Inflate>>,
    read: Read,
    /// While lost: the bytes being judged as a command start, and when the first came.
    window: Window,
    /// While [`Read::RowsLost`]: the bytes being judged as packet starts.
    rows: RowScan,
    /// No byte of this side was seen yet: a command found at its first byte starts where the
    /// capture does.
    untouched: bool,
}

impl Half {
    /// A direction that starts at a packet (or `lost`), keeping the first `keep` bytes of each
    /// payload ([`Limits::max_mysql_prefix`]).
    fn new(lost: bool, keep: usize) -> Self {
        Self {
            framer: Framer::new(keep),
            #[cfg(feature = "compression")]
            inflate: None,
            read: if lost { Read::PlainLost } else { Read::Plain },
            window: Window::default(),
            rows: RowScan::default(),
            untouched: true,
        }
    }
}

/// The protocol state, apart from the framing so that a payload borrowed from a framer can be
/// read while the state changes.
#[derive(Debug)]
struct State {
    phase: Phase,
    server_caps: u32,
    server_version: Bytes,
    /// Negotiated, or inferred from replies when the handshake was missed.
    deprecate_eof: Option<bool>,
    attributes: Option<bool>,
    compress: bool,
    /// The handshake response came without the greeting: negotiated flags are not known.
    greeting_missed: bool,
    /// Known once the handshake or a found command said.
    framing: Option<Framing>,
    /// The next command was found by resynchronisation: its reply must confirm it.
    next_unconfirmed: bool,
    /// The next command starts the client's first captured bytes: a packet boundary the
    /// capture itself gives, trusted even for a command that gets no reply.
    next_at_capture_start: bool,
    pending: VecDeque<Pending>,
    max_pending: usize,
    /// Prepared statements: id, SQL kept, SQL length. Oldest first, bounded.
    statements: VecDeque<(u32, Bytes, u64)>,
    max_statements: usize,
    last_prepared: Option<u32>,
    /// Commands dropped because `max_pending` was reached.
    dropped: u64,
    skipped: Skipped,
    /// Logical payloads read.
    messages: u64,
    /// Records reported.
    records: u64,
    /// Texts cut at the kept prefix.
    texts_cut: u64,
    /// How many commands at the front of `pending` timed out (they hold their places).
    timed_out: usize,
    /// Commands reported at their deadline, and replies that came after it.
    timeouts: u64,
    late: u64,
    /// When the last reply ended: a command queued behind it waited from there.
    answered_at: Timestamp,
    /// [`Limits::response_timeout`], in nanoseconds.
    timeout: u64,
    /// The server's side ended: commands sent later are reported as the client's side ends.
    server_ended: bool,
    /// Statements forgotten at `max_statements`.
    forgotten: u64,
    /// [`Limits::max_buffered`]: the longest chain of packets judged after a loss in rows.
    max_window: usize,
    /// [`Limits::max_unrecognized`]: how far a scan for rows goes before it gives up.
    max_scan: u64,
}

/// One connection's MySQL/MariaDB session; see [`mysql::Decoder`](super::Decoder) to use it on
/// its own.
pub struct Session {
    halves: [Half; 2],
    st: State,
}

const fn index(dir: Direction) -> usize {
    match dir {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

/// Shows the connection's phase, the negotiated options and the counts, never SQL text.
impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.st.phase)
            .field("framing", &self.st.framing)
            .field("deprecate_eof", &self.st.deprecate_eof)
            .field("pending", &self.st.pending.len())
            .field("statements", &self.st.statements.len())
            .field("messages", &self.st.messages)
            .finish_non_exhaustive()
    }
}

impl ProtocolSession for Session {}

impl SessionApi for Session {
    /// Used on its own, a session starts where the connection does: at the server's greeting.
    fn start(limits: &Limits) -> Self {
        Self::from_greeting(limits)
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

    /// The deadline of the oldest command still waiting: from its last byte, or from the end
    /// of the reply before it; none while a reply is being read.
    fn poll_timeout(&self) -> Option<Timestamp> {
        let st = &self.st;
        let [_, server] = &self.halves;
        let replying = st.pending.front().is_some_and(|f| f.cmd.response.is_some());
        if replying || server.framer.partial_len() > 0 {
            return None;
        }
        let waiting = st.pending.get(st.timed_out)?;
        let sent = waiting.cmd.request.map_or(st.answered_at, |r| r.last);
        crate::session::deadline(sent.max(st.answered_at), st.timeout)
    }

    /// Reports each command past its deadline, `Missing` and flagged `timed_out` (one found by
    /// resynchronisation, which only its reply could confirm, is not reported), and keeps its
    /// place for a reply that may still come.
    fn handle_timeout(&mut self, now: Timestamp, events: &mut VecDeque<Event>) {
        while self.poll_timeout().is_some_and(|deadline| deadline <= now) {
            let st = &mut self.st;
            let Some(waiting) = st.pending.get_mut(st.timed_out) else {
                break;
            };
            waiting.timed_out = true;
            st.timed_out += 1;
            if waiting.confirmed {
                let mut record = waiting.cmd.clone();
                record.outcome = Outcome::Missing;
                record.flags.missing_response = true;
                record.flags.timed_out = true;
                st.records += 1;
                st.timeouts += 1;
                events.push_back(Event::Mysql(Box::new(record)));
            }
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            skipped_bytes: self.st.skipped.total(),
            transactions: self.st.records,
            messages: self.st.messages,
            dropped_requests: self.st.dropped,
            texts_cut: self.st.texts_cut,
            forgotten_statements: self.st.forgotten,
            timed_out: self.st.timeouts,
            late_responses: self.st.late,
            ..Stats::default()
        }
    }

    fn buffered_bytes(&self) -> usize {
        let half = |h: &Half| {
            #[cfg(feature = "compression")]
            let inflate = h.inflate.as_ref().map_or(0, |z| z.heap_bytes());
            #[cfg(not(feature = "compression"))]
            let inflate = 0;
            h.framer.heap_bytes() + h.window.heap_bytes() + h.rows.held.capacity() + inflate
        };
        self.halves.iter().map(half).sum::<usize>()
            + self.st.pending.capacity() * size_of::<Pending>()
            + self
                .st
                .pending
                .iter()
                .map(|p| p.cmd.heap_bytes())
                .sum::<usize>()
            + self.st.statements.capacity() * size_of::<(u32, Bytes, u64)>()
            + self
                .st
                .statements
                .iter()
                .map(|(_, text, _)| text.len())
                .sum::<usize>()
            + self.st.server_version.len()
    }
}

impl Session {
    /// A session that saw the connection start (its first server bytes are the greeting).
    pub(crate) fn from_greeting(limits: &Limits) -> Self {
        Self::new(Phase::Greeting, [false, false], limits)
    }

    /// A session joined at the client's handshake response, the greeting missed: the server's
    /// capabilities are unknown, so DEPRECATE_EOF and query attributes are learnt from the bytes.
    pub(crate) fn from_hello(limits: &Limits) -> Self {
        let mut session = Self::new(Phase::Hello, [false, false], limits);
        session.st.greeting_missed = true;
        session.st.server_caps = u32::MAX;
        session
    }

    /// A session joined mid-connection at a client command (the server side waits for it).
    pub(crate) fn mid_stream(limits: &Limits) -> Self {
        let mut session = Self::new(Phase::Commands, [false, true], limits);
        session.st.next_unconfirmed = true;
        session.st.next_at_capture_start = true;
        session
    }

    /// Like [`Session::mid_stream`], in the compressed protocol.
    pub(crate) fn mid_stream_compressed(limits: &Limits) -> Self {
        let mut session = Self::mid_stream(limits);
        session.st.compress = true;
        session.apply(
            Direction::ClientToServer,
            Action::Compress,
            &mut VecDeque::new(),
        );
        session
    }

    /// A session told by the port that this is MySQL but with no message start seen yet: both
    /// sides look for a command.
    pub(crate) fn searching(limits: &Limits) -> Self {
        Self::new(Phase::Commands, [true, true], limits)
    }

    fn new(phase: Phase, lost: [bool; 2], limits: &Limits) -> Self {
        let [client, server] = lost;
        Self {
            halves: [
                Half::new(client, limits.max_mysql_prefix),
                Half::new(server, limits.max_mysql_prefix),
            ],
            st: State {
                phase,
                server_caps: 0,
                server_version: Bytes::new(),
                deprecate_eof: None,
                attributes: None,
                compress: false,
                greeting_missed: false,
                framing: None,
                next_unconfirmed: false,
                next_at_capture_start: false,
                pending: VecDeque::new(),
                max_pending: limits.max_pending,
                statements: VecDeque::new(),
                max_statements: limits.max_statements,
                last_prepared: None,
                dropped: 0,
                skipped: Skipped::default(),
                messages: 0,
                records: 0,
                texts_cut: 0,
                timed_out: 0,
                timeouts: 0,
                late: 0,
                answered_at: Timestamp(0),
                timeout: limits.response_timeout_ns(),
                server_ended: false,
                forgotten: 0,
                max_window: limits.max_buffered,
                max_scan: limits.max_unrecognized,
            },
        }
    }

    fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ClientToServer => &mut self.halves[0],
            Direction::ServerToClient => &mut self.halves[1],
        }
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
            let used = match self.half(dir).read {
                Read::Plain => self.frame(dir, now, input, events),
                Read::PlainLost | Read::CompressedLost => self.resync(dir, now, input, events),
                Read::Compressed | Read::CompressedPacketsLost => {
                    self.feed_compressed(dir, now, input, events)
                }
                Read::RowsLost => self.scan_rows(now, input, events),
                Read::Opaque => input.len(),
            };
            input = input.get(used..).unwrap_or_default();
        }
    }

    /// Counts bytes of `dir` skipped out of sync (reported when sync returns or the side ends).
    fn skip(&mut self, dir: Direction, n: u64) {
        self.st.skipped.add(dir, n);
    }

    fn report_skipped(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        self.st.skipped.report(dir, events);
    }

    /// Steps the framer through `input` until it ends or the way the direction is read changes.
    fn frame(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        events: &mut VecDeque<Event>,
    ) -> usize {
        let i = index(dir);
        let read = self.half(dir).read;
        let mut at = 0;
        while at < input.len() {
            let Some(half) = self.halves.get_mut(i) else {
                break;
            };
            let (used, done) = half.framer.step(now, input.get(at..).unwrap_or_default());
            at += used;
            if done {
                let action = self.payload(dir, events);
                self.apply(dir, action, events);
                if self.half(dir).read != read {
                    break;
                }
            }
        }
        at
    }

    #[cfg(feature = "compression")]
    fn feed_compressed(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        events: &mut VecDeque<Event>,
    ) -> usize {
        let mut z = self
            .half(dir)
            .inflate
            .take()
            .unwrap_or_else(|| Box::new(Inflate::new()));
        // The frame layer stays in sync while the packet layer loses and regains it: the rest
        // of a frame the packets lost sync in is skipped, and a client command may start the
        // next frame (the server's side waits for one, as in the plain protocol).
        z.feed(input, |piece| {
            let (plain, frame_start) = match piece {
                Piece::Plain(plain, frame_start) => (plain, frame_start),
                Piece::Skipped(n) => {
                    self.skip(dir, n);
                    return true;
                }
                Piece::Corrupt => {
                    if self.half(dir).read == Read::Compressed {
                        self.lost_by_gap(dir, events);
                    }
                    return true;
                }
            };
            let half = self.half(dir);
            match half.read {
                Read::Opaque => {
                    self.skip(dir, plain.len() as u64);
                    return false;
                }
                Read::CompressedPacketsLost if dir == Direction::ClientToServer && frame_start => {
                    half.read.regain();
                    half.framer.reset();
                    self.found_command(events);
                }
                Read::CompressedPacketsLost => {
                    self.skip(dir, plain.len() as u64);
                    return true;
                }
                _ => {}
            }
            let used = self.frame(dir, now, plain, events);
            let read = self.half(dir).read;
            if read.lost() || read == Read::Opaque {
                self.skip(dir, (plain.len() - used) as u64);
                return false;
            }
            true
        });
        self.half(dir).inflate = Some(z);
        input.len()
    }

    #[cfg(not(feature = "compression"))]
    fn feed_compressed(
        &mut self,
        _dir: Direction,
        _now: Timestamp,
        input: &[u8],
        _events: &mut VecDeque<Event>,
    ) -> usize {
        self.skip(_dir, input.len() as u64);
        input.len()
    }

    /// Out of sync: the client looks for a plausible command at a packet start (held across
    /// chunks in a small window, so the outcome does not depend on chunking); the server waits
    /// until a client command says where its reply starts.
    fn resync(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        events: &mut VecDeque<Event>,
    ) -> usize {
        if dir == Direction::ServerToClient {
            self.skip(dir, input.len() as u64);
            return input.len();
        }
        let i = index(dir);
        for (at, byte) in input.iter().enumerate() {
            let Some(half) = self.halves.get_mut(i) else {
                break;
            };
            let framing = self.st.framing;
            let (dropped, found) = half.window.push(*byte, now, |w| judge_window(w, framing));
            let at_capture_start = half.untouched && dropped == 0;
            if dropped > 0 {
                half.untouched = false;
            }
            let window = found.map(|kind| {
                half.read.regain();
                half.untouched = false;
                half.framer.reset();
                (kind, half.window.take())
            });
            self.skip(dir, dropped);
            if let Some((kind, window)) = window {
                self.found_command(events);
                self.st.next_at_capture_start = at_capture_start;
                self.st.framing = Some(kind);
                if kind == Framing::Compressed {
                    self.st.compress = true;
                    // The found command starts a frame; the server's side switches too, at the
                    // frame its reply starts (it is realigned when the command completes).
                    for half in &mut self.halves {
                        if matches!(half.read, Read::Plain | Read::PlainLost) {
                            half.read = Read::CompressedLost;
                        }
                    }
                    let client = self.half(dir);
                    client.read = Read::Compressed;
                    #[cfg(feature = "compression")]
                    {
                        client.inflate = Some(Box::new(Inflate::new()));
                    }
                }
                // Each byte keeps its own arrival time, as if it had come in order.
                for (byte, at) in window {
                    self.feed_bytes(dir, at, &[byte], events);
                }
                return at + 1;
            }
        }
        input.len()
    }

    /// A client command was found after a loss: everything pending before it will never be
    /// answered in a way that can be read, and the server's next bytes start its reply.
    fn found_command(&mut self, events: &mut VecDeque<Event>) {
        self.report_skipped(Direction::ClientToServer, events);
        self.st.next_unconfirmed = true;
        if self.st.phase != Phase::Commands {
            self.st.phase = Phase::Commands;
        }
        while let Some(p) = self.st.pop_front() {
            self.st.report_missing(p, events, true);
        }
    }

    /// Reads the payload the framer of `dir` just completed.
    fn payload(&mut self, dir: Direction, events: &mut VecDeque<Event>) -> Action {
        // A client command means the reply before it is over: a rows scan still undecided
        // decides now, before the command claims the server's next bytes.
        if dir == Direction::ClientToServer
            && self.st.phase == Phase::Commands
            && self.halves[1].read == Read::RowsLost
            && self.halves[0].framer.payload().seq == 0
        {
            self.settle_rows(events);
        }
        let Self { halves, st } = self;
        st.messages += 1;
        let Some(half) = halves.get(index(dir)) else {
            return Action::None;
        };
        let p = half.framer.payload();
        match dir {
            Direction::ClientToServer => st.client_payload(&p, events),
            Direction::ServerToClient => st.server_payload(&p, events),
        }
    }

    fn apply(&mut self, dir: Direction, action: Action, events: &mut VecDeque<Event>) {
        match action {
            Action::None => {}
            Action::LoseBoth => {
                self.lose(Direction::ClientToServer);
                self.lose(Direction::ServerToClient);
            }
            Action::Compress => self.compress_from_here(),
            Action::RowsUnsure => {
                if !self.lost_in_rows(dir, 0) {
                    self.lost_by_gap(dir, events);
                }
            }
            Action::Opaque => {
                for half in &mut self.halves {
                    half.read = Read::Opaque;
                }
                events.push_back(Event::Protocol(Protocol::Tls));
            }
            Action::Commanded => {
                let server = &mut self.halves[1];
                if server.read.lost() {
                    #[cfg(feature = "compression")]
                    if server.read == Read::CompressedLost {
                        // Replies start a compressed frame of their own.
                        server.inflate = Some(Box::new(Inflate::new()));
                    }
                    server.read.regain();
                    server.framer.reset();
                    self.report_skipped(Direction::ServerToClient, events);
                    // Commands before this one had their replies in what was skipped.
                    let this = self.st.pending.pop_back();
                    while let Some(p) = self.st.pop_front() {
                        self.st.report_missing(p, events, false);
                    }
                    self.st.timed_out = usize::from(this.as_ref().is_some_and(|p| p.timed_out));
                    self.st.pending.extend(this);
                }
            }
        }
        let _ = dir;
    }

    /// Both sides speak the compressed protocol from their next byte (a frame boundary).
    fn compress_from_here(&mut self) {
        self.st.framing = Some(Framing::Compressed);
        for half in &mut self.halves {
            half.read.compress();
            #[cfg(feature = "compression")]
            {
                half.inflate = Some(Box::new(Inflate::new()));
            }
        }
    }

    fn lose(&mut self, dir: Direction) {
        let half = self.half(dir);
        half.read.lose();
        half.framer.reset();
        half.window.clear();
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
        if matches!(
            half.read,
            Read::Opaque | Read::PlainLost | Read::CompressedLost
        ) {
            half.window.clear();
            return;
        }
        if half.read == Read::RowsLost {
            // What is held is judged knowing nothing past it joins it (a chain waiting for bytes
            // beyond would otherwise hide rows after it); found, it is read in sync and the loss
            // falls on the packets as usual. Otherwise it is skipped and the scan goes on after.
            self.judge_rows(Until::Gap, events);
            let half = self.half(dir);
            if half.read == Read::RowsLost {
                let dropped = half.rows.gap(missing);
                self.skip(dir, dropped);
                return;
            }
        }
        #[cfg(feature = "compression")]
        let missing = {
            let half = self.half(dir);
            if half.read.compressed() {
                match half.inflate.as_mut().and_then(|z| z.gap(missing)) {
                    Some(plain) => plain,
                    None => {
                        half.read = Read::CompressedLost;
                        self.lost_by_gap(dir, events);
                        return;
                    }
                }
            } else {
                missing
            }
        };
        // Nothing to skip, or packets already out of sync (frames still in sync).
        if missing == 0 || self.half(dir).read.lost() {
            return;
        }
        match self.half(dir).framer.gap(now, missing) {
            GapOutcome::Skipped => self.st.mark_gap(dir),
            GapOutcome::Completed => {
                let action = self.payload(dir, events);
                self.apply(dir, action, events);
            }
            GapOutcome::Lost if self.lost_in_rows(dir, missing) => {}
            GapOutcome::Lost => self.lost_by_gap(dir, events),
        }
    }

    /// A gap `dir` could not skip in sync.
    fn lost_by_gap(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        self.st.mark_gap(dir);
        self.lose(dir);
        if dir == Direction::ServerToClient {
            // The reply being read can no longer be: it is reported as it stands.
            if let Some(p) = self.st.pop_front() {
                let login = p.cmd.code.is_none();
                self.st.report_missing(p, events, true);
                // A login that failed closes the connection; one that goes on succeeded, and
                // with compression negotiated, both sides now speak it.
                if login && self.st.compress {
                    self.compress_from_here();
                }
            }
        }
    }

    /// The shape of the rows the front command's reply is reading (or, in its column
    /// definitions, will read), if it knows their column count.
    fn rows_shape(&self) -> Option<rowsync::Shape> {
        let front = self.st.pending.front()?;
        let rows_next = match front.reply {
            Reply::Rows => true,
            Reply::Defs { then, .. } | Reply::DefsEof { then } => then == AfterDefs::Rows,
            _ => false,
        };
        if !rows_next {
            return None;
        }
        Some(rowsync::Shape {
            columns: front.columns?,
            binary: matches!(front.cmd.code, Some(0x17 | 0x1c | 0xfa)),
            deprecate_eof: self.st.deprecate_eof,
            window: self.st.max_window,
        })
    }

    /// A loss the framer of `dir` could not skip in sync: inside a resultset (plain protocol,
    /// server side), the reply is kept and its rows looked for again. A loss in the column
    /// definitions counts too: a small snaplen cuts the first segment of every resultset there.
    /// Returns whether that is what happens.
    fn lost_in_rows(&mut self, dir: Direction, missing: u64) -> bool {
        if dir != Direction::ServerToClient
            || self.half(dir).read != Read::Plain
            || self.rows_shape().is_none()
        {
            return false;
        }
        // The reply being read is the front command's (not the last queued one's).
        if let Some(front) = self.st.pending.front_mut() {
            front.cmd.flags.gap = true;
            // Found again, the packets are read as rows: a scan never starts at a definition.
            front.reply = Reply::Rows;
        }
        let half = self.half(dir);
        let last_seq = half.framer.last_seq();
        half.framer.reset();
        half.rows.start(last_seq, missing);
        half.read = Read::RowsLost;
        true
    }

    /// Server bytes while the rows are looked for again: held (at most [`Limits::max_buffered`]
    /// of them) and judged; once packets are found, what is held is read again in sync.
    fn scan_rows(&mut self, now: Timestamp, input: &[u8], events: &mut VecDeque<Event>) -> usize {
        let max_window = self.st.max_window;
        let half = &mut self.halves[1];
        // Never more than the window holds: a front offset still undecided needs no more than
        // that, so once judged, room is made.
        let room = max_window.saturating_sub(half.rows.held.len()).max(1);
        let take = input.len().min(room);
        half.rows
            .held
            .extend(input.get(..take).unwrap_or_default(), now);
        if half.rows.ready() {
            self.judge_rows(Until::More, events);
        }
        take
    }

    /// The reply must be over (the client spoke again, or the server's side ended): the rows
    /// scan is decided with what it holds.
    fn settle_rows(&mut self, events: &mut VecDeque<Event>) {
        self.judge_rows(Until::ReplyEnd, events);
        if self.halves[1].read == Read::RowsLost {
            self.rows_not_found(events);
        }
    }

    /// Judges what the rows scan holds; replays it in sync once packets are found, gives the
    /// reply up if nothing can be.
    fn judge_rows(&mut self, until: Until, events: &mut VecDeque<Event>) {
        let Some(shape) = self.rows_shape() else {
            self.rows_not_found(events);
            return;
        };
        let max_scan = self.st.max_scan;
        let (found, skipped) = self.halves[1].rows.find(&shape, until, max_scan);
        self.skip(Direction::ServerToClient, skipped);
        match found {
            Found::Waiting => {}
            Found::Nothing => self.rows_not_found(events),
            Found::Packets => {
                self.report_skipped(Direction::ServerToClient, events);
                if self.halves[1].rows.follows_unsure()
                    && let Some(cmd) = self.st.front()
                {
                    cmd.rows += 1;
                }
                let half = &mut self.halves[1];
                half.read = Read::Plain;
                half.framer.reset();
                let (bytes, runs) = half.rows.held.take_runs();
                // Each byte keeps its own arrival time, as if it had come in sync.
                let mut at = 0;
                for (len, time) in runs {
                    let run = bytes.get(at..at + len).unwrap_or_default();
                    self.feed_bytes(Direction::ServerToClient, time, run, events);
                    at += len;
                }
            }
        }
    }

    /// The rows could not be found again: the reply is reported as it stood (`Missing`, as for
    /// any loss out of sync), and the server's side waits for the next command.
    fn rows_not_found(&mut self, events: &mut VecDeque<Event>) {
        let dir = Direction::ServerToClient;
        let half = self.half(dir);
        let held = half.rows.held.len() as u64;
        half.rows.held.clear();
        half.read = Read::Plain;
        self.skip(dir, held);
        self.lost_by_gap(dir, events);
    }

    /// The end of `dir`: a half-read window or packet never became anything; when the server's
    /// side ends, commands still waiting are reported without a reply.
    fn end(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        if self.half(dir).read == Read::RowsLost {
            // The server said all it will: the reply must end where its bytes do.
            self.settle_rows(events);
        }
        let half = self.half(dir);
        let partial = half.window.len() as u64 + half.framer.partial_len();
        half.window.clear();
        half.framer.reset();
        half.read = Read::Opaque;
        self.skip(dir, partial);
        self.report_skipped(dir, events);
        self.st.server_ended |= dir == Direction::ServerToClient;
        if self.st.server_ended {
            while let Some(p) = self.st.pop_front() {
                self.st.report_missing(p, events, false);
            }
        }
    }
}

fn span(p: &Payload<'_>) -> Span {
    Span {
        first: p.first,
        last: p.last,
        bytes: p.len,
    }
}

impl State {
    /// Reports a command whose reply will not be read (the server's side ended, or sync was
    /// lost): `Missing`, flagged `truncated` when part of the reply had come, `gap` when a loss
    /// caused it.
    fn report_missing(&mut self, mut p: Pending, events: &mut VecDeque<Event>, gap: bool) {
        if !p.confirmed || p.timed_out {
            return;
        }
        p.cmd.outcome = Outcome::Missing;
        p.cmd.flags.missing_response = p.cmd.response.is_none();
        p.cmd.flags.truncated |= p.cmd.response.is_some();
        p.cmd.flags.gap |= gap;
        self.records += 1;
        events.push_back(Event::Mysql(Box::new(p.cmd)));
    }

    fn mark_gap(&mut self, dir: Direction) {
        if let Some(p) = self.pending.back_mut()
            && (dir == Direction::ServerToClient || p.cmd.response.is_none())
        {
            p.cmd.flags.gap = true;
        }
    }

    fn client_payload(&mut self, p: &Payload<'_>, events: &mut VecDeque<Event>) -> Action {
        match self.phase {
            Phase::Greeting => {
                // The client spoke first: the greeting was missed; read on as commands.
                self.phase = Phase::Commands;
                self.client_payload(p, events)
            }
            Phase::Hello => self.hello(p),
            Phase::Tls => Action::None,
            Phase::Commands => {
                if p.seq != 0 {
                    // Continuations: auth data, LOCAL INFILE data, long data. Not commands.
                    return Action::None;
                }
                self.command(p, events)
            }
        }
    }

    fn hello(&mut self, p: &Payload<'_>) -> Action {
        self.count_cut(p);
        match wire::client_hello(p.prefix, p.len) {
            Some(wire::ClientHello::SslRequest) => {
                self.phase = Phase::Tls;
                Action::Opaque
            }
            Some(wire::ClientHello::Response {
                capabilities,
                user,
                schema,
            }) => {
                let negotiated = capabilities & self.server_caps;
                if !self.greeting_missed {
                    self.deprecate_eof = Some(negotiated & caps::DEPRECATE_EOF != 0);
                    self.attributes = Some(negotiated & caps::QUERY_ATTRIBUTES != 0);
                }
                self.compress = negotiated & caps::COMPRESS != 0;
                if !self.compress {
                    self.framing = Some(Framing::Plain);
                }
                let mut cmd = Command::new(None);
                cmd.request = Some(span(p));
                cmd.user = Bytes::copy_from_slice(user);
                cmd.schema = Bytes::copy_from_slice(schema.unwrap_or_default());
                cmd.server_version = self.server_version.clone();
                cmd.flags.gap = p.gap;
                self.phase = Phase::Commands;
                self.push(Pending {
                    cmd,
                    reply: Reply::Auth,
                    confirmed: true,
                    timed_out: false,
                    columns: None,
                });
                Action::None
            }
            None => {
                // Not a handshake response: read on as commands, caps unknown.
                self.phase = Phase::Commands;
                Action::None
            }
        }
    }

    fn push(&mut self, pending: Pending) {
        if self.pending.len() >= self.max_pending {
            self.dropped += 1;
            return;
        }
        self.pending.push_back(pending);
    }

    fn command(&mut self, p: &Payload<'_>, events: &mut VecDeque<Event>) -> Action {
        let Some(&code) = p.prefix.first() else {
            return Action::None;
        };
        // A PREPARE whose definitions ended without a telling EOF: with DEPRECATE_EOF unknown,
        // the client moving on says there was none.
        if let Some(front) = self.pending.front()
            && front.reply
                == (Reply::DefsEof {
                    then: AfterDefs::Done,
                })
            && let Some(done) = self.pop_front()
        {
            self.deprecate_eof = Some(true);
            self.report(done, Outcome::Ok, events);
        }
        let mut cmd = Command::new(Some(code));
        cmd.request = Some(span(p));
        cmd.flags.gap = p.gap;
        let reply = match code {
            0x03 | 0x16 => {
                if let Some(at) = wire::query_text_offset(p.prefix, self.attributes) {
                    self.count_cut(p);
                    let text = p.prefix.get(at..).unwrap_or_default();
                    cmd.text = Bytes::copy_from_slice(text);
                    cmd.text_len = p.len.saturating_sub(at as u64);
                    cmd.flags.truncated = p.gap;
                }
                Reply::First
            }
            0x02 => {
                cmd.schema = Bytes::copy_from_slice(p.prefix.get(1..).unwrap_or_default());
                Reply::First
            }
            0x17 | 0x18 | 0x19 | 0x1a | 0x1c | 0xfa => {
                let id = wire::stmt_id(p.prefix);
                let id = match id {
                    Some(u32::MAX) => self.last_prepared.or(id),
                    other => other,
                };
                cmd.stmt_id = id;
                if let Some((_, text, len)) =
                    self.statements.iter().find(|(s, _, _)| Some(*s) == id)
                {
                    cmd.text = text.clone();
                    cmd.text_len = *len;
                }
                if code == 0x19 {
                    self.statements.retain(|(s, _, _)| Some(*s) != id);
                }
                if code == 0x1c {
                    Reply::Rows
                } else {
                    Reply::First
                }
            }
            0x04 => Reply::FieldList,
            0x09 => Reply::Statistics,
            0x11 => Reply::Auth,
            _ => Reply::First,
        };
        // Found by resynchronisation: reported once its reply fits (a command that gets no
        // reply cannot be confirmed, so it is not reported, and the next one waits instead).
        let at_capture_start = core::mem::take(&mut self.next_at_capture_start);
        let confirmed = !self.next_unconfirmed || at_capture_start;
        if confirmed {
            self.next_unconfirmed = false;
        }
        if matches!(code, 0x01 | 0x18 | 0x19) {
            if confirmed {
                cmd.outcome = Outcome::NoResponseExpected;
                self.records += 1;
                events.push_back(Event::Mysql(Box::new(cmd)));
            }
            return Action::None;
        }
        self.next_unconfirmed = false;
        self.push(Pending {
            cmd,
            reply,
            confirmed,
            timed_out: false,
            columns: None,
        });
        Action::Commanded
    }

    fn server_payload(&mut self, p: &Payload<'_>, events: &mut VecDeque<Event>) -> Action {
        if self.phase == Phase::Greeting {
            if let Some(g) = wire::greeting(p.prefix) {
                self.server_caps = g.capabilities;
                self.server_version = Bytes::copy_from_slice(g.version);
                self.phase = Phase::Hello;
                return Action::None;
            }
            self.phase = Phase::Commands;
        }
        let Some(front) = self.pending.front_mut() else {
            // A reply to nothing this decoder saw: ignored, in sync.
            return Action::None;
        };
        let first_packet = front.cmd.response.is_none();
        match &mut front.cmd.response {
            Some(r) => {
                r.last = p.last;
                r.bytes += p.len;
            }
            None => front.cmd.response = Some(span(p)),
        }
        front.cmd.flags.gap |= p.gap;
        if first_packet && !front.confirmed && !plausible_reply(front, p) {
            let _ = self.pop_front();
            return Action::LoseBoth;
        }
        front.confirmed = true;
        self.reply(p, events)
    }

    /// Advances the front command's reply by one packet, in the state the reply is in.
    fn reply(&mut self, p: &Payload<'_>, events: &mut VecDeque<Event>) -> Action {
        let Some(state) = self.pending.front().map(|f| f.reply) else {
            return Action::None;
        };
        let step = match state {
            Reply::First => self.reply_first(p),
            Reply::Defs { left, then } => self.reply_defs(p, left, then),
            Reply::DefsEof { then } => self.reply_defs_eof(p, then),
            Reply::Rows => self.reply_rows(p),
            Reply::Auth => self.reply_auth(p),
            Reply::FieldList => self.reply_field_list(p),
            Reply::Statistics => self.reply_statistics(p),
        };
        let status = match step {
            Step::More => return Action::None,
            // The packet belongs to the state the reply moved to.
            Step::Again => return self.reply(p, events),
            Step::Unsure => return Action::RowsUnsure,
            Step::Done(status) => status,
        };
        self.answered_at = p.last;
        let Some(finished) = self.pop_front() else {
            return Action::None;
        };
        let login_ok = finished.cmd.code.is_none() && status == Outcome::Ok;
        if matches!(finished.cmd.code, Some(0x11 | 0x1f)) && status == Outcome::Ok {
            self.statements.clear();
        }
        self.report(finished, status, events);
        if login_ok && self.compress {
            return Action::Compress;
        }
        Action::None
    }

    /// The command whose reply is being read.
    fn front(&mut self) -> Option<&mut Command> {
        self.pending.front_mut().map(|f| &mut f.cmd)
    }

    /// Moves the front command's reply to `next`.
    fn then(&mut self, next: Reply) -> Step {
        if let Some(front) = self.pending.front_mut() {
            front.reply = next;
        }
        Step::More
    }

    /// Where definitions lead: rows, the prepared statement's column definitions, or the end.
    fn after_defs(&mut self, then: AfterDefs) -> Step {
        match then {
            AfterDefs::Rows => self.then(Reply::Rows),
            AfterDefs::PrepareColumns(0) | AfterDefs::Done => Step::Done(Outcome::Ok),
            AfterDefs::PrepareColumns(columns) => self.then(Reply::Defs {
                left: columns,
                then: AfterDefs::Done,
            }),
        }
    }

    /// Counts a payload whose text was cut at the kept prefix (not by the capture).
    const fn count_cut(&mut self, p: &Payload<'_>) {
        if !p.gap && p.len > p.prefix.len() as u64 {
            self.texts_cut += 1;
        }
    }

    /// An ERR packet ends the reply.
    fn err(&mut self, p: &Payload<'_>) -> Step {
        self.count_cut(p);
        if let Some(cmd) = self.front() {
            take_err(cmd, p.prefix);
        }
        Step::Done(Outcome::Err)
    }

    /// The first packet of a reply (or, after MORE_RESULTS, of the next resultset): OK, ERR,
    /// PREPARE_OK, a LOCAL INFILE request, or a resultset's column count.
    fn reply_first(&mut self, p: &Payload<'_>) -> Step {
        let deprecate = self.deprecate_eof;
        let head = p.prefix.first().copied();
        let Some(cmd) = self.front() else {
            return Step::More;
        };
        if head_lost(p) {
            // OK, ERR or a resultset: the byte that says was lost, so is the outcome.
            cmd.flags.truncated = true;
            return Step::Done(Outcome::Missing);
        }
        match head {
            // A MariaDB progress report is not the reply.
            Some(0xff) if wire::err(p.prefix).is_some_and(|e| e.code == 0xffff) => Step::More,
            Some(0xff) => self.err(p),
            Some(0x00) if cmd.code == Some(0x16) => self.prepare_ok(p),
            Some(0x00 | 0xfe) => {
                let ok = wire::ok(p.prefix).unwrap_or_default();
                cmd.affected_rows.get_or_insert(ok.affected_rows);
                cmd.last_insert_id.get_or_insert(ok.last_insert_id);
                cmd.warnings = cmd.warnings.saturating_add(ok.warnings);
                if ok.status & wire::MORE_RESULTS_EXISTS != 0 && head == Some(0x00) {
                    Step::More
                } else {
                    Step::Done(Outcome::Ok)
                }
            }
            // LOCAL INFILE: the client sends the file (continuation packets), then the server
            // says OK or ERR, read as this reply's next first packet.
            Some(0xfb) => Step::More,
            _ => match wire::lenenc(p.prefix) {
                Some((columns, used)) if columns > 0 => {
                    cmd.num_fields.get_or_insert(columns);
                    cmd.resultsets += 1;
                    if let Some(front) = self.pending.front_mut() {
                        front.columns = Some(columns);
                    }
                    // With optional resultset metadata (MySQL 8) or MariaDB's metadata cache, a
                    // flag byte follows the count: 0 means no definitions follow.
                    let next = match p.prefix.get(used) {
                        Some(0) if deprecate == Some(true) => Reply::Rows,
                        Some(0) => Reply::DefsEof {
                            then: AfterDefs::Rows,
                        },
                        _ => Reply::Defs {
                            left: columns,
                            then: AfterDefs::Rows,
                        },
                    };
                    self.then(next)
                }
                _ => Step::Done(Outcome::Ok),
            },
        }
    }

    /// COM_STMT_PREPARE's OK: the statement is remembered (bounded), and its parameter and
    /// column definitions follow.
    fn prepare_ok(&mut self, p: &Payload<'_>) -> Step {
        let Some(ok) = wire::prepare_ok(p.prefix, p.len) else {
            return Step::Done(Outcome::Ok);
        };
        let Some(cmd) = self.front() else {
            return Step::More;
        };
        cmd.prepared_stmt_id = Some(ok.stmt_id);
        cmd.num_fields = Some(u64::from(ok.columns));
        let entry = (ok.stmt_id, cmd.text.clone(), cmd.text_len);
        if self.statements.len() >= self.max_statements && self.statements.pop_front().is_some() {
            self.forgotten += 1;
        }
        self.statements.retain(|(s, _, _)| *s != ok.stmt_id);
        self.statements.push_back(entry);
        self.last_prepared = Some(ok.stmt_id);
        let (params, columns) = (u64::from(ok.params), u64::from(ok.columns));
        if params > 0 {
            self.then(Reply::Defs {
                left: params,
                then: AfterDefs::PrepareColumns(columns),
            })
        } else if columns > 0 {
            self.then(Reply::Defs {
                left: columns,
                then: AfterDefs::Done,
            })
        } else {
            Step::Done(Outcome::Ok)
        }
    }

    /// Column or parameter definitions, `left` of them still to come.
    fn reply_defs(&mut self, p: &Payload<'_>, left: u64, then: AfterDefs) -> Step {
        if p.prefix.first() == Some(&0xff) {
            self.err(p)
        } else if left > 1 {
            self.then(Reply::Defs {
                left: left - 1,
                then,
            })
        } else if self.deprecate_eof == Some(true) {
            self.after_defs(then)
        } else {
            self.then(Reply::DefsEof { then })
        }
    }

    /// The EOF after definitions, or (with DEPRECATE_EOF unknown) the packet that says there is
    /// none, which is then read as what follows the definitions.
    fn reply_defs_eof(&mut self, p: &Payload<'_>, then: AfterDefs) -> Step {
        let head = p.prefix.first().copied();
        // Its first byte lost, the packet is taken for the EOF it most likely is, and nothing
        // is learnt from it: inferring DEPRECATE_EOF from a lost byte would misread every
        // resultset after it.
        if head_lost(p) {
            return self.after_defs(then);
        }
        if terminator(head, p.len, self.deprecate_eof) == Some(false) {
            self.deprecate_eof.get_or_insert(false);
            return self.after_defs(then);
        }
        self.deprecate_eof = Some(true);
        match self.after_defs(then) {
            Step::More => Step::Again,
            done => done,
        }
    }

    /// Rows until the resultset's terminator (an EOF, or an OK with DEPRECATE_EOF), after which
    /// MORE_RESULTS says whether another resultset follows.
    fn reply_rows(&mut self, p: &Payload<'_>) -> Step {
        if head_lost(p) {
            return Step::Unsure;
        }
        let head = p.prefix.first().copied();
        if head == Some(0xff) {
            return self.err(p);
        }
        let deprecate = self.deprecate_eof;
        let Some(is_ok) = terminator(head, p.len, deprecate) else {
            if let Some(cmd) = self.front() {
                cmd.rows += 1;
            }
            return Step::More;
        };
        let status = if is_ok {
            if deprecate.is_none() {
                self.deprecate_eof = Some(true);
            }
            wire::ok(p.prefix).unwrap_or_default().status
        } else {
            wire::eof_status(p.prefix)
        };
        if status & wire::MORE_RESULTS_EXISTS != 0 {
            self.then(Reply::First)
        } else {
            Step::Done(Outcome::Ok)
        }
    }

    /// The login (or CHANGE_USER): auth switches and more-data rounds until OK or ERR.
    fn reply_auth(&mut self, p: &Payload<'_>) -> Step {
        match p.prefix.first() {
            Some(0x00) => {
                if let (Some(ok), Some(cmd)) = (wire::ok(p.prefix), self.front()) {
                    cmd.affected_rows.get_or_insert(ok.affected_rows);
                    cmd.last_insert_id.get_or_insert(ok.last_insert_id);
                }
                Step::Done(Outcome::Ok)
            }
            Some(0xff) => self.err(p),
            _ => Step::More,
        }
    }

    /// COM_FIELD_LIST: definitions until EOF (or ERR).
    fn reply_field_list(&mut self, p: &Payload<'_>) -> Step {
        match p.prefix.first() {
            Some(0xff) => self.err(p),
            Some(0xfe) if p.len < 9 || self.deprecate_eof == Some(true) => Step::Done(Outcome::Ok),
            _ => Step::More,
        }
    }

    /// COM_STATISTICS: one plain string (or ERR).
    fn reply_statistics(&mut self, p: &Payload<'_>) -> Step {
        if p.prefix.first() == Some(&0xff) {
            self.err(p)
        } else {
            Step::Done(Outcome::Ok)
        }
    }

    /// Reports a command that got its reply; one already reported at its deadline had a late
    /// reply, consumed without a second record.
    fn report(&mut self, mut finished: Pending, status: Outcome, events: &mut VecDeque<Event>) {
        if finished.timed_out {
            self.late += 1;
            return;
        }
        finished.cmd.outcome = status;
        self.records += 1;
        events.push_back(Event::Mysql(Box::new(finished.cmd)));
    }

    /// The oldest command, keeping count of those that timed out.
    fn pop_front(&mut self) -> Option<Pending> {
        let front = self.pending.pop_front()?;
        self.timed_out -= usize::from(front.timed_out);
        Some(front)
    }
}

/// Whether a packet ends a resultset: `Some(true)` an OK (DEPRECATE_EOF), `Some(false)` an EOF,
/// `None` not at all (a row, whose first byte may be 0xFE too when its first value is long).
/// With DEPRECATE_EOF unknown, an EOF is exactly 5 bytes and a shorter-than-9 0xFE packet of
/// another length is an OK.
pub(super) fn terminator(head: Option<u8>, len: u64, deprecate: Option<bool>) -> Option<bool> {
    if head != Some(0xfe) {
        return None;
    }
    match deprecate {
        Some(true) => (len < u64::from(super::MAX_PACKET)).then_some(true),
        Some(false) => (len < 9).then_some(false),
        None if len == 5 => Some(false),
        None => (len < 9).then_some(true),
    }
}

/// Whether the capture lost a payload's first byte (which says what the packet is).
const fn head_lost(p: &Payload<'_>) -> bool {
    p.gap && p.prefix.is_empty() && p.len > 0
}

fn take_err(cmd: &mut Command, prefix: &[u8]) {
    if let Some(e) = wire::err(prefix) {
        cmd.error_code = Some(e.code);
        cmd.sqlstate = Bytes::copy_from_slice(e.sqlstate.unwrap_or_default());
        cmd.error_message = Bytes::copy_from_slice(e.message);
    }
}

/// Whether the first packet of a reply fits the command a resynchronisation guessed: sequence
/// id 1, and a first byte that command's replies can start with.
fn plausible_reply(p: &Pending, reply: &Payload<'_>) -> bool {
    if reply.seq != 1 {
        return false;
    }
    let head = reply.prefix.first().copied();
    match p.cmd.code {
        Some(0x09) => reply
            .prefix
            .iter()
            .all(|c| c.is_ascii_graphic() || *c == b' '),
        Some(0x03 | 0x17 | 0xfa) => match head {
            Some(0x00 | 0xff | 0xfb) => true,
            // A column count: a short lenenc integer, and at most the metadata-follows byte
            // (optional resultset metadata, MariaDB's metadata cache).
            _ => wire::lenenc(reply.prefix)
                .is_some_and(|(n, used)| n > 0 && reply.len.saturating_sub(used as u64) <= 1),
        },
        Some(0x16) => matches!(head, Some(0x00 | 0xff)),
        Some(0x04) => true,
        _ => matches!(head, Some(0x00 | 0xff | 0xfe)),
    }
}
