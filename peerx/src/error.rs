//! The crate's one error type: a `Copy` kind plus the byte offset where it was found.

/// What went wrong, without borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The first four bytes are not the exchange magic `0x3D230467`.
    #[error("bad magic {found:#010x}, expected 0x3d230467")]
    BadMagic {
        /// The four bytes found, read big-endian.
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
    /// The header declares an empty payload, which carries no metadata.
    #[error("zero-length payload")]
    EmptyPayload,
}

/// An error with the byte offset (from the start of the parsed input) where it was detected.
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
