//! MySQL/MariaDB: the client/server protocol decoded from the two streams of a connection, as
//! one of [`Connection`](crate::Connection)'s sub-decoders. Each command and its reply become a
//! [`Command`] record ([`Event::Mysql`](crate::Event::Mysql)); the login is a record of its own.
//!
//! * Packets are framed by their 3-byte length and sequence id; payloads of 0xFFFFFF bytes are
//!   joined with the packets that continue them, and only their first bytes are kept, so a
//!   17 MB query or row costs no more memory than a short one.
//! * The handshake's capabilities drive what follows (DEPRECATE_EOF, COMPRESS,
//!   QUERY_ATTRIBUTES); an SSLRequest marks the connection TLS and leaves it alone.
//! * Replies are read by state, never by guessing from one byte: `0xFE` is an EOF, an OK ending a
//!   resultset, or a row, depending on its length and where it comes; `0x00` is an OK, a binary
//!   row, or a PREPARE_OK.
//! * Prepared statements are remembered (bounded), so an EXECUTE record carries the SQL it runs.
//! * The compressed protocol is a stream layer under the packets (feature `compression`, on by
//!   default).
//! * A capture that starts mid-connection resynchronises on a plausible command confirmed by its
//!   reply, learning DEPRECATE_EOF from the replies; a gap inside a packet is skipped in sync.
//!   A gap inside a resultset (its rows, or the column definitions before them) keeps the
//!   command: the packets after it are found again by their chained headers and the shape of
//!   the rows, and the terminator gives the real outcome (the record counts the rows seen and is
//!   flagged `gap`). Elsewhere the direction resynchronises at the next command. Records are
//!   flagged, never invented: an outcome whose deciding byte was lost is `Missing`.

#![deny(clippy::indexing_slicing)]

#[cfg(feature = "compression")]
mod compress;
mod framing;
mod rowsync;
mod session;
pub mod wire;

use bytes::Bytes;

use crate::Flags;
pub use crate::Span;

pub use framing::MAX_PACKET;
pub use session::Session;

/// One MySQL/MariaDB connection decoded without sniffing, from its start (the server's greeting
/// first) — or, when the client speaks first, from a command. See [`crate::Decoder`] for the run
/// loop and an example.
pub type Decoder = crate::Decoder<Session>;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// OK, a resultset, PREPARE_OK, or the statistics string.
    Ok,
    /// An ERR packet (see [`Command::error_code`]).
    Err,
    /// A command the server never answers (QUIT, STMT_CLOSE, STMT_SEND_LONG_DATA).
    NoResponseExpected,
    /// The reply never came (the connection or the capture ended first).
    Missing,
}

impl Outcome {
    /// The outcome's name in upper case, as MySQL's docs spell the packets: `OK`, `ERR`,
    /// `NO_RESPONSE_EXPECTED`, `MISSING`. Stable: fit for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Err => "ERR",
            Self::NoResponseExpected => "NO_RESPONSE_EXPECTED",
            Self::Missing => "MISSING",
        }
    }
}

/// A command and its reply (or the login and its outcome).
///
/// `Debug` shows the command, its outcome and counts, and only the lengths of the SQL text and
/// the error message, which can carry the statement's literals.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Command {
    /// Command byte; `None` for the login.
    pub code: Option<u8>,
    /// The command's payload.
    pub request: Option<Span>,
    /// The reply (all its packets), when one came.
    pub response: Option<Span>,
    /// How it ended.
    pub outcome: Outcome,
    pub(crate) text: Bytes,
    /// Full length of the SQL text in bytes (of which the first ones are kept).
    pub text_len: u64,
    pub(crate) user: Bytes,
    pub(crate) schema: Bytes,
    pub(crate) server_version: Bytes,
    /// Statement id a COM_STMT_* command names (for EXECUTE of `0xFFFFFFFF`, MariaDB's "last
    /// prepared", the id it resolves to).
    pub stmt_id: Option<u32>,
    /// The id a successful COM_STMT_PREPARE assigned.
    pub prepared_stmt_id: Option<u32>,
    /// ERR code.
    pub error_code: Option<u16>,
    pub(crate) sqlstate: Bytes,
    pub(crate) error_message: Bytes,
    /// From the first OK packet of the reply.
    pub affected_rows: Option<u64>,
    /// From the first OK packet of the reply.
    pub last_insert_id: Option<u64>,
    /// Warnings, over the reply's OK packets.
    pub warnings: u16,
    /// Columns of the first resultset (for PREPARE: of the statement's resultset).
    pub num_fields: Option<u64>,
    /// Rows, over every resultset of the reply: those seen, when the capture lost some
    /// (`flags.gap`).
    pub rows: u64,
    /// Resultsets in the reply.
    pub resultsets: u32,
    /// Anomalies: `gap` (bytes lost inside it; in a resultset, rows were lost and the status is
    /// still the terminator's), `orphan` (a reply whose command the capture missed),
    /// `missing_response`, `truncated` (its text, or the reply's end, was cut by the capture).
    pub flags: Flags,
}

impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Command")
            .field("code", &self.code)
            .field("name", &self.name())
            .field("request", &self.request)
            .field("response", &self.response)
            .field("outcome", &self.outcome)
            .field("text_len", &self.text_len)
            .field("text_kept", &self.text.len())
            .field("user", &self.user())
            .field("schema", &self.schema())
            .field("server_version", &self.server_version())
            .field("stmt_id", &self.stmt_id)
            .field("prepared_stmt_id", &self.prepared_stmt_id)
            .field("error_code", &self.error_code)
            .field("sqlstate", &self.sqlstate())
            .field("error_message_len", &self.error_message.len())
            .field("affected_rows", &self.affected_rows)
            .field("last_insert_id", &self.last_insert_id)
            .field("warnings", &self.warnings)
            .field("num_fields", &self.num_fields)
            .field("rows", &self.rows)
            .field("resultsets", &self.resultsets)
            .field("flags", &self.flags)
            .finish()
    }
}

impl Command {
    pub(crate) fn new(code: Option<u8>) -> Self {
        Self {
            code,
            request: None,
            response: None,
            outcome: Outcome::Missing,
            text: Bytes::new(),
            text_len: 0,
            user: Bytes::new(),
            schema: Bytes::new(),
            server_version: Bytes::new(),
            stmt_id: None,
            prepared_stmt_id: None,
            error_code: None,
            sqlstate: Bytes::new(),
            error_message: Bytes::new(),
            affected_rows: None,
            last_insert_id: None,
            warnings: 0,
            num_fields: None,
            rows: 0,
            resultsets: 0,
            flags: Flags::default(),
        }
    }

    /// Heap bytes its texts hold (some may be shared with the statement table).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.len()
            + self.user.len()
            + self.schema.len()
            + self.sqlstate.len()
            + self.error_message.len()
    }

    /// `LOGIN`, a `COM_*` name, or `None` for a code no server defines.
    pub fn name(&self) -> Option<&'static str> {
        match self.code {
            None => Some("LOGIN"),
            Some(code) => wire::command_name(code),
        }
    }

    /// The SQL text (COM_QUERY, COM_STMT_PREPARE, and for EXECUTE the prepared statement's), as
    /// far as it was kept and is valid UTF-8.
    pub fn query(&self) -> Option<&str> {
        (!self.text.is_empty() || self.text_len > 0).then(|| utf8_prefix(&self.text))
    }

    /// Whether [`Command::query`] holds less than the whole text.
    pub fn query_truncated(&self) -> bool {
        (self.text.len() as u64) < self.text_len
    }

    /// Login user (LOGIN, COM_CHANGE_USER).
    pub fn user(&self) -> Option<&str> {
        (!self.user.is_empty()).then(|| utf8_prefix(&self.user))
    }

    /// Schema: the login's default one, or COM_INIT_DB's.
    pub fn schema(&self) -> Option<&str> {
        (!self.schema.is_empty()).then(|| utf8_prefix(&self.schema))
    }

    /// The server's version string, from its greeting (on the login's record).
    pub fn server_version(&self) -> Option<&str> {
        (!self.server_version.is_empty()).then(|| utf8_prefix(&self.server_version))
    }

    /// ERR message.
    pub fn error_message(&self) -> Option<&str> {
        self.error_code.map(|_| utf8_prefix(&self.error_message))
    }

    /// ERR SQLSTATE.
    pub fn sqlstate(&self) -> Option<&str> {
        (!self.sqlstate.is_empty()).then(|| utf8_prefix(&self.sqlstate))
    }

    /// Reply's last byte minus command's last byte, in nanoseconds.
    pub fn latency_ns(&self) -> Option<u64> {
        Some(self.request?.last.nanos_until(self.response?.last))
    }

    /// Reply's first byte minus command's last byte, in nanoseconds.
    pub fn ttfb_ns(&self) -> Option<u64> {
        Some(self.request?.last.nanos_until(self.response?.first))
    }
}

/// The longest valid UTF-8 prefix (a kept prefix may end inside a character).
fn utf8_prefix(b: &[u8]) -> &str {
    match core::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(b.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or(""),
    }
}
