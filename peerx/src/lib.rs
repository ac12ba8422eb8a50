//! `peerx`: Istio's TCP peer-metadata exchange (ALPN `istio-peer-exchange`), sans-IO and zero-copy.
//!
//! The wire format is an 8-byte header (magic `0x3D230467`, then the payload length, both
//! big-endian `u32`) followed by a protobuf `google.protobuf.Any` wrapping a `Struct` of workload
//! metadata. This crate reads and writes those bytes; it never performs I/O, reads a clock, spawns
//! threads or allocates on its parsing paths.
//!
//! This release carries the shared foundations (errors, parse status, limits); the frame codec
//! and the exchange machine follow.

#![forbid(unsafe_code)]

mod error;

pub use error::{Error, ErrorKind};

use core::num::NonZeroUsize;

/// Outcome of a tier-1 parse over a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Status<T> {
    /// A whole value was parsed from the first `consumed` bytes.
    Complete {
        /// The parsed value, borrowing from the input.
        value: T,
        /// Bytes of input it took.
        consumed: usize,
    },
    /// The input is a strict prefix of a valid value; `needed` more bytes, when known, complete it.
    Partial {
        /// How many more bytes are needed, when the framing tells.
        needed: Option<NonZeroUsize>,
    },
}

/// Bounds on what a peer may make us buffer or walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload a header may declare (default 64 KiB).
    pub max_payload: u32,
}

impl Limits {
    /// Sets [`Limits::max_payload`].
    pub const fn max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = bytes;
        self
    }

    /// No bound at all: only for inputs you trust.
    pub const fn unbounded_dangerous() -> Self {
        Self {
            max_payload: u32::MAX,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 64 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_kind_and_offset() {
        let e = Error::new(
            ErrorKind::PayloadTooLarge {
                limit: 10,
                declared: 11,
            },
            4,
        );
        assert_eq!(e.offset(), 4);
        assert_eq!(
            e.to_string(),
            "declared payload of 11 bytes exceeds the limit of 10 at byte 4"
        );
    }

    #[test]
    fn limits_default_is_bounded() {
        assert_eq!(Limits::default().max_payload, 65536);
        assert_eq!(Limits::default().max_payload(8).max_payload, 8);
        assert_eq!(Limits::unbounded_dangerous().max_payload, u32::MAX);
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
