//! The crate's one error type: a `Copy` kind plus the byte offset where it was found.

/// What went wrong, without borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A field has the wrong length for its format.
    #[error("{field:?} has length {found}, expected {expected}")]
    BadLength {
        /// Which field.
        field: Field,
        /// Length required by the format (the first allowed one when several are).
        expected: u16,
        /// Length found (saturated at `u16::MAX`).
        found: u16,
    },
    /// A byte that the format does not allow at this position (the offset gives the byte).
    #[error("{field:?} has an invalid byte")]
    InvalidByte {
        /// Which field.
        field: Field,
    },
    /// An identifier that must be non-zero is all zeros.
    #[error("{field:?} is all zeros")]
    ZeroId {
        /// Which field.
        field: Field,
    },
    /// A header that may appear once appears several times (W3C `traceparent`).
    #[error("{field:?} appears in more than one header field")]
    Duplicate {
        /// Which field.
        field: Field,
    },
    /// More list members than the format allows (32 for `tracestate`).
    #[error("{field:?} has more than {limit} members")]
    TooManyMembers {
        /// Which list.
        field: Field,
        /// The limit.
        limit: u16,
    },
    /// A required part is missing (a B3 span id without a trace id, an empty value).
    #[error("{field:?} is missing")]
    Missing {
        /// Which field.
        field: Field,
    },
    /// A value longer than this crate accepts for its field (an `x-request-id` over
    /// [`REQUEST_ID_MAX_LEN`](crate::REQUEST_ID_MAX_LEN) bytes).
    #[error("{field:?} is {found} bytes long, more than {limit}")]
    TooLong {
        /// Which field.
        field: Field,
        /// The most bytes allowed.
        limit: u16,
        /// Length found (saturated at `u16::MAX`).
        found: u16,
    },
    /// A caller buffer is too small for the encoded value.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the output must hold (in total, not in addition; an upper bound where the exact
        /// size is only known once written).
        needed: usize,
    },
}

/// The header field an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// A trace id (W3C, B3 or OT).
    TraceId,
    /// A span or parent id.
    SpanId,
    /// A B3 parent span id.
    ParentSpanId,
    /// Trace flags or B3 sampling state.
    Flags,
    /// A version field.
    Version,
    /// The whole `traceparent` value.
    TraceParent,
    /// A `tracestate` key.
    TraceStateKey,
    /// A `tracestate` value.
    TraceStateValue,
    /// The `tracestate` list.
    TraceState,
    /// A `baggage` key.
    BaggageKey,
    /// A `baggage` value.
    BaggageValue,
    /// A `baggage` property.
    BaggageProperty,
    /// The `baggage` list.
    Baggage,
    /// The single `b3` header.
    B3,
    /// `x-ot-span-context`.
    OtSpanContext,
    /// Envoy's `x-request-id`.
    RequestId,
}

/// An error with the byte offset (within the header value) where it was detected.
///
/// ```
/// use tracectx::{Config, ErrorKind, Field, parse_traceparent};
///
/// // Uppercase hex is invalid unless `Config::uppercase_hex` allows it.
/// let err = parse_traceparent(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", &Config::default())
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidByte { field: Field::TraceId });
/// assert_eq!(err.offset(), 4); // the `B`: the first uppercase hex digit
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

    pub(crate) const fn at(kind: ErrorKind, offset: usize) -> Self {
        Self {
            kind,
            offset: offset as u64,
        }
    }
}
