//! `l7decode`: turns the two captured byte streams of a TCP connection into HTTP/1.x, MySQL/MariaDB
//! and MongoDB request/response records, sans-IO.
//!
//! The caller owns capture, reassembly input and time: it feeds each direction's bytes with the
//! capture timestamp and drains events. The crate never performs I/O, reads a clock or spawns
//! threads, and every buffer it keeps is bounded by [`Limits`].
//!
//! This release carries the shared foundations (errors, limits, timestamps, directions); the
//! protocol decoders follow.

#![forbid(unsafe_code)]

mod error;

pub use error::{Error, ErrorKind, Limit};

/// Nanoseconds since an epoch the caller chooses (usually the capture's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Nanoseconds from `self` to `later`, zero when `later` is earlier (captures reorder).
    pub const fn nanos_until(self, later: Self) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

/// Which of the connection's two byte streams some bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes sent by the side that opened the connection.
    ClientToServer,
    /// Bytes sent by the side that accepted it.
    ServerToClient,
}

impl Direction {
    /// The other direction.
    pub const fn reverse(self) -> Self {
        match self {
            Self::ClientToServer => Self::ServerToClient,
            Self::ServerToClient => Self::ClientToServer,
        }
    }
}

/// Bounds on what one connection may make the decoder buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Bytes buffered per direction for a message that straddles feeds (default 1 MiB).
    pub max_buffered: usize,
    /// Requests awaiting their response (default 1024).
    pub max_pending: usize,
}

impl Limits {
    /// Sets [`Limits::max_buffered`].
    pub const fn max_buffered(mut self, bytes: usize) -> Self {
        self.max_buffered = bytes;
        self
    }

    /// Sets [`Limits::max_pending`].
    pub const fn max_pending(mut self, requests: usize) -> Self {
        self.max_pending = requests;
        self
    }

    /// No bound at all: only for inputs you trust.
    pub const fn unbounded_dangerous() -> Self {
        Self {
            max_buffered: usize::MAX,
            max_pending: usize::MAX,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_buffered: 1 << 20,
            max_pending: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_limit() {
        let e = Error::new(
            ErrorKind::LimitExceeded {
                limit: Limit::Buffered,
                max: 8,
                value: 9,
            },
            100,
        );
        assert_eq!(
            e.to_string(),
            "Buffered limit of 8 exceeded by 9 at byte 100"
        );
        assert_eq!(
            e.kind(),
            ErrorKind::LimitExceeded {
                limit: Limit::Buffered,
                max: 8,
                value: 9
            }
        );
    }

    #[test]
    fn latency_never_underflows() {
        assert_eq!(Timestamp(5).nanos_until(Timestamp(3)), 0);
        assert_eq!(Timestamp(3).nanos_until(Timestamp(5)), 2);
        assert_eq!(
            Direction::ClientToServer.reverse(),
            Direction::ServerToClient
        );
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
