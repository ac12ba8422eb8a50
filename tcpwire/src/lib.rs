//! `tcpwire`: Linux's TCP socket tables, read zero-copy and sans-IO.
//!
//! * `/proc/net/tcp` and `/proc/net/tcp6`: [`parse_row`] decodes one row into a borrowed
//!   [`TcpRow`] with every kernel column typed; [`TableReader`] takes the file in chunks of any size
//!   (the kernel hands out about 4 KiB per `read`) and yields rows, with a carry buffer bounded by
//!   [`Limits`]; [`StateCounter`] is the counting fast path, O(1) memory.
//! * [`TcpCounts`]: per-state counts and queue sums with node_exporter's semantics
//!   (`node_tcp_connection_states`), both the ≤ 1.3.1 file flavour and the ≥ 1.4 netlink flavour
//!   (see [`QueueSemantics`]).
//! * netlink `NETLINK_SOCK_DIAG`: [`encode_sock_diag_request`] builds the dump request,
//!   [`parse_netlink_message`] reads the reply and [`DiagCounter`] counts it into the same
//!   [`TcpCounts`]. The caller owns the socket.
//! * `/proc/net/sockstat`: [`parse_sockstat`] for O(1) totals.
//!
//! Encoders share one convention: the verb is `encode_*` ([`encode_row`],
//! [`encode_sock_diag_request`]), the output goes into the start of a caller's `&mut [u8]`, the
//! length written comes back, and a short buffer is [`ErrorKind::BufferTooSmall`] with the length
//! needed. Constants give sizes that always suffice ([`ROW_MAX_LEN`], [`SOCK_DIAG_REQUEST_LEN`]).
//!
//! The crate never performs I/O, reads a clock or spawns threads; it does not allocate per row.
//! Bad input is normal input: a malformed row is an [`Event::Malformed`] with its stream offset and
//! never spoils the rest of the table; unknown state codes are kept, never an error.
//!
//! # Reading a table
//! ```
//! use tcpwire::{Limits, StateCounter, TcpState};
//!
//! let file = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0016 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1061 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0016 0100007F:D2F0 01 00000010:00000000 01:00000014 00000000  1000        0 4242 2 0000000000000000 20 4 1 10 -1\n";
//! let mut counter = StateCounter::new(Limits::default());
//! for chunk in file.chunks(4096) {
//!     counter.feed(chunk);
//! }
//! counter.feed_eof();
//! let counts = counter.counts();
//! assert_eq!(counts.state(TcpState::LISTEN), 1);
//! assert_eq!(counts.state(TcpState::ESTABLISHED), 1);
//! assert_eq!(counts.tx_queue_other, 16);
//! ```
//!
//! # Snapshot semantics
//! The kernel builds these files as it walks its hash tables, one page per `read`; there is no
//! atomic snapshot, so rows can be missed or repeated while sockets come and go. `ss` and the
//! sock_diag source have the same property.

#![forbid(unsafe_code)]

mod counter;
mod diag;
mod error;
mod lines;
mod reader;
mod wire;

pub use counter::{QueueSemantics, StateCounter, TcpCounts};
pub use diag::{DiagCounter, DiagStats, DumpProgress};
pub use error::{Column, Error, ErrorKind};
pub use reader::{Config, Event, Limits, Rows, Stats, TableReader};
pub use wire::netlink::{
    AF_NETLINK, Attributes, Family, InetDiagMsg, NETLINK_SOCK_DIAG, NetlinkMessage,
    SOCK_DIAG_REQUEST_LEN, SockDiagRequest, StateMask, encode_sock_diag_request,
    parse_netlink_message,
};
pub use wire::row::{
    ByteOrder, FullTail, ROW_MAX_LEN, RowFields, RowOptions, TCP4_HEADER, TCP4_LINE_WIDTH,
    TCP6_HEADER, TcpRow, encode_row, is_blank_line, is_header, parse_row,
};
pub use wire::sockstat::{
    Sockstat, SockstatCounters, TcpSockstat, parse_sockstat, sockstat_counters,
};
pub use wire::state::{RowKind, TcpState, TimerKind};

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

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
