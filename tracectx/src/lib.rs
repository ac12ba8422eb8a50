//! `tracectx`: trace-context headers (W3C `traceparent`/`tracestate`/`baggage`, B3 multi and
//! single, Envoy's `x-request-id`, `x-client-trace-id`, `x-envoy-force-trace`,
//! `x-ot-span-context`): extract, validate, generate and inject with zero allocations.
//!
//! Nothing here reads a clock or a random source: where randomness is needed the caller passes it
//! in, and every output is written into a caller buffer.
//!
//! This release carries the shared foundations (errors and the identifiers' lengths); the parsers
//! and injectors follow.

#![no_std]
#![forbid(unsafe_code)]

mod error;

pub use error::{Error, ErrorKind, Field};

/// Length in bytes of an encoded W3C `traceparent` value of version `00`.
pub const TRACEPARENT_LEN: usize = 55;

/// Largest encoded single `b3` header: 32-hex trace id, span id, sampling flag and parent id.
pub const B3_SINGLE_MAX_LEN: usize = 68;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_follow_their_grammar() {
        // "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex
        assert_eq!(TRACEPARENT_LEN, 3 + 32 + 1 + 16 + 1 + 2);
        // 32 hex + "-" + 16 hex + "-" + "d" + "-" + 16 hex
        assert_eq!(B3_SINGLE_MAX_LEN, 32 + 1 + 16 + 1 + 1 + 1 + 16);
    }

    #[test]
    fn errors_are_copy_and_locate_the_byte() {
        let e = Error::new(
            ErrorKind::InvalidByte {
                field: Field::TraceId,
            },
            7,
        );
        let copy = e;
        assert_eq!(copy.offset(), 7);
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidByte {
                field: Field::TraceId
            }
        );
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
