//! MongoDB: the wire protocol decoded from the two streams of a connection, as one of
//! [`Connection`](crate::Connection)'s sub-decoders. Each request and its reply (or reply chain)
//! become an [`Operation`] record ([`Event::Mongo`](crate::Event::Mongo)).
//!
//! * Messages are framed by their MsgHeader (16 bytes to 48 MB); a message whole in one fed
//!   chunk is read in place, one cut by chunks is gathered in a reused, bounded buffer.
//! * Bodies are never decoded whole: [`bson`] walks a document's elements in place and reads only
//!   the values a record reports (command name = first key, `$db`, collection, `ok`, `errmsg`,
//!   `code`, `codeName`, `n`, write errors, cursor id and batch size).
//! * OP_MSG flag bits are honoured (CRC-32C verified, moreToCome both ways, exhaustAllowed;
//!   unknown required bits make a message invalid); kind-1 document sequences are counted per
//!   identifier. Legacy OP_QUERY (with `$query` wrapping), OP_REPLY (flags as bits), OP_INSERT,
//!   OP_UPDATE, OP_DELETE, OP_GET_MORE and OP_KILL_CURSORS are read too.
//! * OP_COMPRESSED is unwrapped (zlib with the `compression` feature, on by default; snappy with
//!   the `snappy` feature; noop always) and reported as compressed even when its codec is not
//!   built in (zstd is never).
//! * Replies pair with requests by requestID/responseTo in a bounded map; moreToCome requests get
//!   no reply; exhaust chains follow responseTo to the previous reply and count their messages.
//! * Records keep their texts inline: decoding an uncompressed message allocates nothing.

#![deny(clippy::indexing_slicing)]

pub mod bson;
pub(crate) mod session;
#[cfg(feature = "snappy")]
mod snappy;
pub mod wire;

use crate::{Flags, Span};

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `ok: 1`.
    Ok,
    /// `ok: 0` (or no `ok`).
    Error,
    /// `ok: 1` with `writeErrors` or a `writeConcernError`.
    WriteError,
    /// A legacy OP_REPLY with QueryFailure set (or a `$err` document).
    QueryFailure,
    /// moreToCome requests and the legacy writes: the server never answers.
    NoResponseExpected,
    /// The reply never came.
    Missing,
}

impl Status {
    /// The truth files' spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Error => "ERROR",
            Self::WriteError => "WRITE_ERROR",
            Self::QueryFailure => "QUERY_FAILURE",
            Self::NoResponseExpected => "NO_RESPONSE_EXPECTED",
            Self::Missing => "MISSING",
        }
    }
}

/// A short text kept inline, so a record needs no allocation; a longer value is cut at `N`
/// bytes (at a character boundary when read back).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    len: usize,
    bytes: [u8; N],
    /// Whether the value was longer than `N` bytes.
    pub cut: bool,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; N],
            cut: false,
        }
    }
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl<const N: usize> Text<N> {
    fn from_bytes(b: &[u8]) -> Self {
        let mut t = Self::default();
        let n = b.len().min(N);
        if let (Some(dst), Some(src)) = (t.bytes.get_mut(..n), b.get(..n)) {
            dst.copy_from_slice(src);
        }
        t.len = n;
        t.cut = b.len() > N;
        t
    }

    /// The text (`None` when empty), up to its last whole character.
    pub fn as_str(&self) -> Option<&str> {
        let b = self.bytes.get(..self.len)?;
        let s = match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(b.get(..e.valid_up_to())?).ok()?,
        };
        (!s.is_empty()).then_some(s)
    }
}

/// Kind-1 sections kept per record, write error codes, and reply chain ids.
const SEQUENCES: usize = wire::MAX_SEQUENCES;
const WRITE_ERRORS: usize = 8;
const CHAIN: usize = 16;

/// A request and its reply (or reply chain), or a reply whose request the capture missed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Operation {
    /// The request's requestID (`None` for an orphan reply).
    pub request_id: Option<u32>,
    /// The request's opcode (inside OP_COMPRESSED, the original one).
    pub opcode: i32,
    /// The request came in OP_COMPRESSED, with this compressor id (0 noop, 1 snappy, 2 zlib,
    /// 3 zstd).
    pub compressor: Option<u8>,
    pub(crate) command: Text<48>,
    pub(crate) db: Text<64>,
    pub(crate) collection: Text<128>,
    pub(crate) cursor_collection: Text<128>,
    pub(crate) sequences: [(Text<24>, u32); SEQUENCES],
    pub(crate) sequence_count: usize,
    /// The request set moreToCome (no reply expected).
    pub more_to_come: bool,
    /// The request set exhaustAllowed.
    pub exhaust_allowed: bool,
    /// The request message on the wire.
    pub request: Option<Span>,
    /// The reply messages on the wire, first byte of the first to last byte of the last.
    pub response: Option<Span>,
    /// The first reply's opcode (inside OP_COMPRESSED, the original one).
    pub response_opcode: Option<i32>,
    /// The first reply came compressed.
    pub response_compressed: bool,
    /// Reply messages (more than one for an exhaust or moreToCome chain).
    pub response_messages: u32,
    chain: [u32; CHAIN],
    /// From the first reply: `ok`.
    pub ok: Option<f64>,
    pub(crate) errmsg: Text<160>,
    /// From the first reply: `code`.
    pub code: Option<i64>,
    pub(crate) code_name: Text<48>,
    /// From the first reply: `n`.
    pub n: Option<i64>,
    write_errors: [i64; WRITE_ERRORS],
    write_error_count: usize,
    /// The first reply had a `writeConcernError`.
    pub write_concern_error: bool,
    /// From the first reply: `cursor.id` (or a legacy reply's cursorID).
    pub cursor_id: Option<i64>,
    /// Documents in `cursor.firstBatch`/`nextBatch`, over every reply of the chain.
    pub batch_docs: u64,
    /// Legacy OP_REPLY's responseFlags (bit 0 CursorNotFound, 1 QueryFailure, 3 AwaitCapable).
    pub reply_flags: Option<u32>,
    /// Legacy OP_REPLY's numberReturned.
    pub number_returned: Option<i32>,
    /// OP_MSG checksums: `Some(false)` when one did not match.
    pub checksum_ok: Option<bool>,
    /// A message of it broke the protocol (unknown required flag bits, sections that do not add
    /// up): what could be read is reported, the rest is not guessed.
    pub invalid: bool,
    /// How it ended.
    pub status: Status,
    /// Anomalies: `gap`, `orphan`, `missing_response`, `truncated` (a message over the size
    /// kept, or cut by the capture).
    pub flags: Flags,
}

impl Operation {
    pub(crate) fn new(request_id: Option<u32>, opcode: i32) -> Self {
        Self {
            request_id,
            opcode,
            compressor: None,
            command: Text::default(),
            db: Text::default(),
            collection: Text::default(),
            cursor_collection: Text::default(),
            sequences: [(Text::default(), 0); SEQUENCES],
            sequence_count: 0,
            more_to_come: false,
            exhaust_allowed: false,
            request: None,
            response: None,
            response_opcode: None,
            response_compressed: false,
            response_messages: 0,
            chain: [0; CHAIN],
            ok: None,
            errmsg: Text::default(),
            code: None,
            code_name: Text::default(),
            n: None,
            write_errors: [0; WRITE_ERRORS],
            write_error_count: 0,
            write_concern_error: false,
            cursor_id: None,
            batch_docs: 0,
            reply_flags: None,
            number_returned: None,
            checksum_ok: None,
            invalid: false,
            status: Status::Missing,
            flags: Flags::default(),
        }
    }

    /// The command: the first key of the command document, or a legacy opcode's name.
    pub fn command(&self) -> Option<&str> {
        self.command.as_str()
    }

    /// The database (`$db`, or a legacy namespace's first part).
    pub fn db(&self) -> Option<&str> {
        self.db.as_str()
    }

    /// The collection, when the command's first element names one (as the truth files have
    /// it: `None` for getMore, whose first element is the cursor id).
    pub fn collection(&self) -> Option<&str> {
        self.collection.as_str()
    }

    /// The collection the operation works on: [`Operation::collection`], or for getMore its
    /// `collection` field.
    pub fn target_collection(&self) -> Option<&str> {
        self.collection
            .as_str()
            .or_else(|| self.cursor_collection.as_str())
    }

    /// Kind-1 document sequences: identifier and document count.
    pub fn sequences(&self) -> impl Iterator<Item = (&str, u32)> {
        self.sequences
            .iter()
            .take(self.sequence_count)
            .map(|(id, n)| (id.as_str().unwrap_or(""), *n))
    }

    /// The requestIDs of the replies, when they were a chain.
    pub fn reply_chain(&self) -> &[u32] {
        let n = (self.response_messages as usize).min(CHAIN);
        if n > 1 {
            self.chain.get(..n).unwrap_or_default()
        } else {
            &[]
        }
    }

    /// `errmsg` of the first reply.
    pub fn errmsg(&self) -> Option<&str> {
        self.errmsg.as_str()
    }

    /// `codeName` of the first reply.
    pub fn code_name(&self) -> Option<&str> {
        self.code_name.as_str()
    }

    /// `writeErrors[].code` of the first reply.
    pub fn write_error_codes(&self) -> &[i64] {
        self.write_errors
            .get(..self.write_error_count)
            .unwrap_or_default()
    }

    /// Last reply byte minus request's last byte, in nanoseconds.
    pub fn latency_ns(&self) -> Option<u64> {
        Some(self.request?.last.nanos_until(self.response?.last))
    }

    /// First reply byte minus request's last byte, in nanoseconds.
    pub fn ttfb_ns(&self) -> Option<u64> {
        Some(self.request?.last.nanos_until(self.response?.first))
    }
}
