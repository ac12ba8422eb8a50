//! MongoDB: the wire protocol decoded from the two streams of a connection, as one of
//! [`Connection`](crate::Connection)'s sub-decoders. Each request and its reply (or reply chain)
//! become an [`Operation`] record ([`Event::Mongo`](crate::Event::Mongo)).
//!
//! * Messages are framed by their MsgHeader (16 bytes to 48 MB); a message whole in one fed
//!   chunk is read in place, one cut by chunks is gathered in a reused, bounded buffer.
//! * Bodies are never decoded whole: [`bson`] walks a document's elements in place and reads only
//!   the values a record reports (command name = first key, `$db`, collection, `ok`, `errmsg`,
//!   `code`, `codeName`, `n`, write errors' codes and messages, cursor id and batch size).
//! * A command's reply (OP_MSG, OP_QUERY on `db.$cmd`) says how it went with `ok`; a query's
//!   legacy OP_REPLY (OP_QUERY on a collection, OP_GET_MORE) with its flags alone
//!   (QueryFailure, CursorNotFound): its documents are results, counted and never read.
//! * OP_MSG flag bits are honoured (CRC-32C verified, moreToCome both ways, exhaustAllowed;
//!   unknown required bits make a message invalid); kind-1 document sequences are counted per
//!   identifier. Legacy OP_QUERY (with `$query` wrapping), OP_REPLY (flags as bits), OP_INSERT,
//!   OP_UPDATE, OP_DELETE, OP_GET_MORE and OP_KILL_CURSORS are read too.
//! * OP_COMPRESSED is unwrapped (zlib with the `compression` feature, on by default; snappy with
//!   the `snappy` feature; noop always) and reported as compressed even when its codec is not
//!   built in (zstd is never).
//! * Replies pair with requests by requestID/responseTo in a bounded map; moreToCome requests get
//!   no reply; exhaust chains follow responseTo to the previous reply and count their messages.
//!   A request's own responseTo means nothing (the mongo shell up to 3.2 sends -1): a side joined
//!   mid-stream finds its next message by a header that side can send (see
//!   [`wire::plausible_start`]).
//! * Records keep their texts inline: decoding an uncompressed message allocates nothing.

#![deny(clippy::indexing_slicing)]

pub mod bson;
mod session;
#[cfg(feature = "snappy")]
mod snappy;
pub mod wire;

use crate::{Flags, Span};

pub use session::Session;

/// One MongoDB connection decoded without sniffing: both sides start at a message (a side
/// that does not is resynchronised on a plausible header). See [`crate::Decoder`] for the run
/// loop.
pub type Decoder = crate::Decoder<Session>;

/// How an operation ended.
///
/// A command's reply (OP_MSG, or OP_QUERY on `db.$cmd`) says it with `ok`; a query's legacy
/// OP_REPLY (OP_QUERY on a collection, OP_GET_MORE) with its responseFlags alone, its
/// documents being results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// `ok: 1`, or a query's OP_REPLY without a failure flag.
    Ok,
    /// A command's reply with `ok: 0` (or no `ok`).
    Error,
    /// `ok: 1` with `writeErrors` or a `writeConcernError`.
    WriteError,
    /// A legacy OP_REPLY with QueryFailure set (or a command's reply with a `$err` document).
    QueryFailure,
    /// A legacy OP_REPLY with CursorNotFound set: the OP_GET_MORE's cursor was gone.
    CursorNotFound,
    /// moreToCome requests and the legacy writes: the server never answers.
    NoResponseExpected,
    /// The reply never came.
    Missing,
}

impl Outcome {
    /// The outcome's name in upper snake case (`OK`, `ERROR`, `WRITE_ERROR`, `QUERY_FAILURE`,
    /// `CURSOR_NOT_FOUND`, `NO_RESPONSE_EXPECTED`, `MISSING`). Stable: fit for logs and metric
    /// labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Error => "ERROR",
            Self::WriteError => "WRITE_ERROR",
            Self::QueryFailure => "QUERY_FAILURE",
            Self::CursorNotFound => "CURSOR_NOT_FOUND",
            Self::NoResponseExpected => "NO_RESPONSE_EXPECTED",
            Self::Missing => "MISSING",
        }
    }
}

/// Bytes of text an operation keeps inline, shared by all its texts (command, database,
/// collection, sequence identifiers, errmsg, codeName), so a record needs no allocation and stays
/// small. A value that does not fit (or passes its own limit) is cut and flagged.
const TEXT_BYTES: usize = 256;

/// Where one text lies in an operation's [`Texts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TextRef {
    at: u16,
    len: u16,
    /// The value was longer than what was kept.
    cut: bool,
}

/// An operation's texts, packed one after another.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Texts {
    bytes: [u8; TEXT_BYTES],
    used: usize,
}

impl Default for Texts {
    fn default() -> Self {
        Self {
            bytes: [0; TEXT_BYTES],
            used: 0,
        }
    }
}

/// Only the texts stored are shown.
impl core::fmt::Debug for Texts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let used = self.bytes.get(..self.used).unwrap_or_default();
        f.debug_tuple("Texts")
            .field(&String::from_utf8_lossy(used))
            .finish()
    }
}

impl Texts {
    /// Stores up to `limit` bytes of `b`.
    pub(crate) fn push(&mut self, b: &[u8], limit: usize) -> TextRef {
        let room = TEXT_BYTES - self.used;
        let n = b.len().min(limit).min(room);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.used..self.used + n), b.get(..n)) {
            dst.copy_from_slice(src);
        }
        let r = TextRef {
            at: self.used as u16,
            len: n as u16,
            cut: n < b.len(),
        };
        self.used += n;
        r
    }

    /// A stored text (`None` when empty), up to its last whole character.
    pub(crate) fn get(&self, r: TextRef) -> Option<&str> {
        let start = usize::from(r.at);
        let b = self.bytes.get(start..start + usize::from(r.len))?;
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
const CHAIN: usize = 8;

/// How a request's replies are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replies {
    /// A command's (OP_MSG, OP_QUERY on `db.$cmd`): one document that says how it went (`ok`,
    /// `errmsg`, `code`, `writeErrors`, a cursor).
    Command,
    /// A query's (OP_QUERY on a collection, OP_GET_MORE): the documents are results, the
    /// user's data, which says nothing of the outcome (a document may well hold an `ok` or an
    /// `errmsg` field); only the OP_REPLY's flags do.
    Results,
    /// Not known yet (the request was missed): the first reply decides, a legacy one being a
    /// command's when its first document has `ok`.
    Unknown,
}

/// A request and its reply (or reply chain), or a reply whose request the capture missed.
///
/// `Debug` shows the command, namespace, outcome and counts; of the error messages, which can
/// quote document values (a duplicate key's), only their lengths.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Operation {
    /// The request's requestID (`None` for an orphan reply).
    pub request_id: Option<u32>,
    /// The request's opcode (inside OP_COMPRESSED, the original one).
    pub opcode: i32,
    /// The request came in OP_COMPRESSED, with this compressor id (0 noop, 1 snappy, 2 zlib,
    /// 3 zstd).
    pub compressor: Option<u8>,
    pub(crate) texts: Texts,
    pub(crate) command: TextRef,
    pub(crate) db: TextRef,
    pub(crate) collection: TextRef,
    pub(crate) cursor_collection: TextRef,
    pub(crate) sequences: [(TextRef, u32); SEQUENCES],
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
    pub(crate) errmsg: TextRef,
    /// From the first reply: `code`.
    pub code: Option<i64>,
    pub(crate) code_name: TextRef,
    /// From the first reply: `n`.
    pub n: Option<i64>,
    write_errors: [i64; WRITE_ERRORS],
    write_messages: [TextRef; WRITE_ERRORS],
    write_error_count: usize,
    /// A command's reply was a `{$err: ...}` document (a query failure without the flag).
    err_document: bool,
    pub(crate) replies: Replies,
    /// The first reply had a `writeConcernError`.
    pub write_concern_error: bool,
    /// From the first reply: `cursor.id` (or a query's legacy reply's cursorID).
    pub cursor_id: Option<i64>,
    /// Documents in `cursor.firstBatch`/`nextBatch` (or a query's legacy replies' documents
    /// that were there whole), over every reply of the chain.
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
    pub outcome: Outcome,
    /// Anomalies: `gap`, `orphan`, `missing_response`, `truncated` (a message over the size
    /// kept, or cut by the capture).
    pub flags: Flags,
}

impl core::fmt::Debug for Operation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        struct Sequences<'a>(&'a Operation);
        /// Codes, and of the messages only their lengths.
        struct WriteErrors<'a>(&'a Operation);
        impl core::fmt::Debug for WriteErrors<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .write_errors()
                            .map(|(code, errmsg)| (code, errmsg.map(str::len))),
                    )
                    .finish()
            }
        }
        impl core::fmt::Debug for Sequences<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_list().entries(self.0.sequences()).finish()
            }
        }
        f.debug_struct("Operation")
            .field("request_id", &self.request_id)
            .field("opcode", &self.opcode)
            .field("compressor", &self.compressor)
            .field("command", &self.command())
            .field("db", &self.db())
            .field("collection", &self.collection())
            .field("target_collection", &self.target_collection())
            .field("sequences", &Sequences(self))
            .field("text_cut", &self.text_cut())
            .field("more_to_come", &self.more_to_come)
            .field("exhaust_allowed", &self.exhaust_allowed)
            .field("request", &self.request)
            .field("response", &self.response)
            .field("response_opcode", &self.response_opcode)
            .field("response_compressed", &self.response_compressed)
            .field("response_messages", &self.response_messages)
            .field("reply_chain", &self.reply_chain())
            .field("ok", &self.ok)
            .field("errmsg_len", &self.errmsg().map(str::len))
            .field("code", &self.code)
            .field("code_name", &self.code_name())
            .field("n", &self.n)
            .field("write_errors", &WriteErrors(self))
            .field("write_concern_error", &self.write_concern_error)
            .field("cursor_id", &self.cursor_id)
            .field("batch_docs", &self.batch_docs)
            .field("reply_flags", &self.reply_flags)
            .field("number_returned", &self.number_returned)
            .field("checksum_ok", &self.checksum_ok)
            .field("invalid", &self.invalid)
            .field("outcome", &self.outcome)
            .field("flags", &self.flags)
            .finish()
    }
}

impl Operation {
    pub(crate) fn new(request_id: Option<u32>, opcode: i32) -> Self {
        Self {
            request_id,
            opcode,
            compressor: None,
            texts: Texts::default(),
            command: TextRef::default(),
            db: TextRef::default(),
            collection: TextRef::default(),
            cursor_collection: TextRef::default(),
            sequences: [(TextRef::default(), 0); SEQUENCES],
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
            errmsg: TextRef::default(),
            code: None,
            code_name: TextRef::default(),
            n: None,
            write_errors: [0; WRITE_ERRORS],
            write_messages: [TextRef::default(); WRITE_ERRORS],
            write_error_count: 0,
            err_document: false,
            replies: Replies::Unknown,
            write_concern_error: false,
            cursor_id: None,
            batch_docs: 0,
            reply_flags: None,
            number_returned: None,
            checksum_ok: None,
            invalid: false,
            outcome: Outcome::Missing,
            flags: Flags::default(),
        }
    }

    /// The command: the first key of the command document, or a legacy opcode's name.
    pub fn command(&self) -> Option<&str> {
        self.texts.get(self.command)
    }

    /// The database (`$db`, or a legacy namespace's first part).
    pub fn db(&self) -> Option<&str> {
        self.texts.get(self.db)
    }

    /// The collection, when the command's first element's value names one (`find: "users"`,
    /// `insert: "orders"`); `None` when it is not a string, as for getMore, whose first element
    /// is the cursor id (see [`Operation::target_collection`]).
    pub fn collection(&self) -> Option<&str> {
        self.texts.get(self.collection)
    }

    /// The collection the operation works on: [`Operation::collection`], or for getMore its
    /// `collection` field.
    pub fn target_collection(&self) -> Option<&str> {
        self.collection()
            .or_else(|| self.texts.get(self.cursor_collection))
    }

    /// Kind-1 document sequences: identifier and document count.
    pub fn sequences(&self) -> impl Iterator<Item = (&str, u32)> {
        self.sequences
            .iter()
            .take(self.sequence_count)
            .map(|(id, n)| (self.texts.get(*id).unwrap_or(""), *n))
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

    /// `errmsg` of the first reply (or `$err`, a query failure's message).
    pub fn errmsg(&self) -> Option<&str> {
        self.texts.get(self.errmsg)
    }

    /// `codeName` of the first reply.
    pub fn code_name(&self) -> Option<&str> {
        self.texts.get(self.code_name)
    }

    /// Whether a text of the record was cut to fit (a long collection, errmsg or write error
    /// message, or one past the room the record has for texts).
    pub fn text_cut(&self) -> bool {
        [
            self.command,
            self.db,
            self.collection,
            self.errmsg,
            self.code_name,
        ]
        .iter()
        .chain(self.write_messages.iter().take(self.write_error_count))
        .any(|r| r.cut)
    }

    /// `writeErrors[].code` of the first reply (the first 8 with a code).
    pub fn write_error_codes(&self) -> &[i64] {
        self.write_errors
            .get(..self.write_error_count)
            .unwrap_or_default()
    }

    /// `writeErrors[]` of the first reply (the first 8 with a code): each one's `code` and
    /// `errmsg` (such as `E11000 duplicate key error …`, which quotes the key's value). A
    /// message is kept up to 128 bytes and within the room the record has for texts (256 bytes
    /// for all of them): one cut is flagged by [`Operation::text_cut`], one with no room left is
    /// `None`.
    pub fn write_errors(&self) -> impl Iterator<Item = (i64, Option<&str>)> {
        self.write_error_codes()
            .iter()
            .zip(&self.write_messages)
            .map(|(code, errmsg)| (*code, self.texts.get(*errmsg)))
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
