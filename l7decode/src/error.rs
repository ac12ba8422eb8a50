//! The crate's one error type: a `Copy` kind plus the byte offset where it was found.

/// What went wrong, without borrowing the input. Only the tier-1 parsers report a peer's bytes
/// as an error ([`ErrorKind::Malformed`]); the tier-2 decoders report what breaks a protocol, or
/// reaches a [`Limits`](crate::Limits) bound, as an event or a flag on a record, and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bytes that do not follow the protocol's grammar where the decoder expected it to.
    #[error("malformed protocol data")]
    Malformed,
    /// Input was fed after `feed_eof` for that direction.
    #[error("input fed after end of stream")]
    FedAfterEof,
    /// A packet whose IP version nibble is neither 4 nor 6 ([`crate::flows::parse_ip_packet`]).
    #[error("not an IP packet (version {version})")]
    NotIp {
        /// The version nibble found.
        version: u8,
    },
    /// An IP packet carrying another transport than TCP.
    #[error("IP protocol {protocol} is not TCP")]
    NotTcp {
        /// The IP protocol number (IPv4) or next header (IPv6).
        protocol: u8,
    },
    /// A piece of a fragmented IP datagram: reassemble IP before reading TCP from it.
    #[error("IP fragment")]
    Fragment,
    /// An IP or TCP header cut short, or length fields that contradict each other.
    #[error("truncated or inconsistent packet header")]
    Truncated,
}

/// An error with the byte offset (from the start of the parsed input) where it was detected.
///
/// `Copy`, and it borrows nothing, so it can be kept or sent anywhere; match on [`Error::kind`].
///
/// ```
/// use l7decode::{Connection, Direction, ErrorKind, Limits, Timestamp, parse_request};
///
/// // A peer's bytes that break the grammar, from a tier-1 parser:
/// let err = parse_request(b"GET / HTTX/1.1\r\n\r\n").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Malformed);
/// // Caller misuse, from a tier-2 decoder:
/// let mut conn = Connection::new(Limits::default());
/// conn.feed_eof(Direction::ClientToServer, Timestamp(1));
/// let err = conn.feed(Direction::ClientToServer, Timestamp(2), b"GET").unwrap_err();
/// assert_eq!((err.kind(), err.to_string().as_str()), (ErrorKind::FedAfterEof, "input fed after end of stream at byte 0"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct Error {
    kind: ErrorKind,
    offset: u64,
}

impl Error {
    /// Builds an error of `kind` found at `offset`.
    pub const fn new(kind: ErrorKind, offset: u64) -> Self {
        Self { kind, offset }
    }

    /// What went wrong.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Byte offset where it was found.
    pub const fn offset(&self) -> u64 {
        self.offset
    }
}
