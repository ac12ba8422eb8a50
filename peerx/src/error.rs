//! The crate's one error type: a `Copy` kind plus the byte offset where it was found.

/// What went wrong, without borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stream does not start with the exchange magic `0x3D230467` (the peer speaks something
    /// else, or sent a little-endian or Envoy-internal header).
    #[error("bad magic {found:#010x}, expected 0x3d230467")]
    BadMagic {
        /// The first four bytes found (zero-filled if fewer arrived), read big-endian.
        found: u32,
    },
    /// The header declares a payload larger than [`Limits::max_payload`](crate::Limits::max_payload).
    #[error("declared payload of {declared} bytes exceeds the limit of {limit}")]
    PayloadTooLarge {
        /// The configured limit.
        limit: u32,
        /// The length the header declared.
        declared: u32,
    },
    /// The header declares an empty payload, which cannot hold a `Struct`.
    #[error("zero-length payload")]
    EmptyPayload,
    /// The payload is not well-formed protobuf for `Any`/`Struct`/`Value` (truncated field,
    /// wrong wire type, bad varint).
    #[error("malformed protobuf")]
    Protobuf,
    /// A type URL, key or string that is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// The `Any` does not hold a `google.protobuf.Struct` (its type URL does not end in
    /// `/google.protobuf.Struct`).
    #[error("Any type URL is not a google.protobuf.Struct")]
    WrongTypeUrl,
    /// Structs nested deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("structs nested too deep")]
    TooDeep,
    /// An HTTP header value that is not base64.
    #[error("invalid base64")]
    Base64,
    /// An output buffer is too small.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the output must hold (in total, not in addition).
        needed: usize,
    },
    /// Caller misuse: peer bytes were fed before the negotiated ALPN was set
    /// ([`Exchange::set_alpn`](crate::Exchange::set_alpn)); the machine cannot yet tell whether
    /// the exchange runs at all. Call `set_alpn` (with `None` when no ALPN was negotiated) first.
    #[error("peer bytes fed before the ALPN was known")]
    AlpnNotSet,
    /// Caller misuse: peer bytes were fed after
    /// [`Exchange::feed_eof`](crate::Exchange::feed_eof) (the same name as in `l7decode`).
    #[error("input fed after end of input")]
    FedAfterEof,
    /// Caller misuse: input after [`Event::Close`](crate::Event::Close), where the policy asked
    /// the caller to close the connection.
    #[error("input after the exchange asked to close the connection")]
    Closed,
}

/// An error with the byte offset (from the start of the parsed input) where it was detected.
///
/// Malformed peer input met by [`Exchange`](crate::Exchange) is an
/// [`Event`](crate::Event), not an `Err`; an `Err` there is caller misuse. The tier-1 parsers
/// return errors for what they cannot read:
///
/// ```
/// use peerx::{ErrorKind, Limits, parse_frame};
///
/// let err = parse_frame(b"GET / HTTP/1.1\r\n", &Limits::default()).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::BadMagic { found: u32::from_be_bytes(*b"GET ") });
/// assert_eq!(err.offset(), 0);
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
