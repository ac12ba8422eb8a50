//! The crate's one error type: a `Copy` kind plus the byte offset where it was found.

/// A column of a `/proc/net/tcp{,6}` row, named as the kernel's header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Column {
    /// `sl`: the row's running index, followed by `:`.
    Slot,
    /// `local_address`: hex address, `:`, hex port.
    LocalAddress,
    /// `rem_address` / `remote_address`.
    RemoteAddress,
    /// `st`: the state code.
    State,
    /// `tx_queue` (before the `:`).
    TxQueue,
    /// `rx_queue` (after the `:`).
    RxQueue,
    /// `tr`: the timer kind.
    TimerKind,
    /// `tm->when`: the timer expiry.
    TimerExpiry,
    /// `retrnsmt`.
    Retransmits,
    /// `uid`.
    Uid,
    /// `timeout` (really the count of unanswered probes).
    Probes,
    /// `inode`.
    Inode,
    /// The socket's reference count.
    RefCount,
    /// The (hashed) kernel address of the socket.
    Pointer,
    /// One of the five TCP-state columns of full rows (rto, ato, quick ack, cwnd, ssthresh).
    Tail,
}

/// What went wrong, without borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The row ends before a required column.
    #[error("row ends before the {missing:?} column")]
    MissingColumn {
        /// The first column that is absent.
        missing: Column,
    },
    /// A column does not follow its grammar (hex digits, decimal digits, separators, length).
    #[error("malformed {column:?} column")]
    BadColumn {
        /// The offending column.
        column: Column,
    },
    /// A row has columns beyond the kernel's layouts (strict mode only).
    #[error("row has {found} columns, the kernel prints 12 or 17")]
    UnexpectedColumnCount {
        /// Columns found.
        found: u8,
    },
    /// A line is longer than [`Limits::max_line`](crate::Limits::max_line).
    #[error("line longer than the limit of {limit} bytes")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// A netlink message is shorter than its headers or its declared length.
    #[error("netlink message truncated")]
    NetlinkTruncated,
    /// A netlink header declares a length that cannot be right (less than its own header).
    #[error("netlink message declares an impossible length of {declared} bytes")]
    NetlinkBadLength {
        /// The declared `nlmsg_len`.
        declared: u32,
    },
    /// The kernel answered a request with `NLMSG_ERROR` and a non-zero errno.
    #[error("the kernel answered with errno {errno}")]
    NetlinkErrno {
        /// The positive errno value (e.g. 13 for `EACCES`).
        errno: i32,
    },
    /// A netlink reply for an address family other than `AF_INET`/`AF_INET6`.
    #[error("sock_diag message for address family {family}")]
    UnknownFamily {
        /// The `idiag_family` byte.
        family: u8,
    },
    /// An output buffer is too small for the encoded message.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the output must hold (in total, not in addition).
        needed: usize,
    },
    /// A `/proc/net/sockstat` line that does not follow `PROTO: key value ...`.
    #[error("malformed sockstat line")]
    BadSockstat,
}

/// An error with the byte offset where it was detected: within the line for [`parse_row`],
/// within the stream for the streaming readers, within the buffer for netlink parsing.
///
/// [`parse_row`]: crate::parse_row
///
/// ```
/// use tcpwire::{Column, ErrorKind, RowOptions, parse_row};
///
/// let err = parse_row(b"   0: 0100007F:0016 00000000:0000 XY", RowOptions::default()).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::BadColumn { column: Column::State });
/// assert_eq!(err.offset(), 34); // where the state column starts
/// assert_eq!(err.to_string(), "malformed State column at byte 34");
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

    /// The same error with its offset moved by `base` (a line's offset in a stream).
    pub(crate) const fn rebased(self, base: u64) -> Self {
        Self {
            kind: self.kind,
            offset: self.offset.saturating_add(base),
        }
    }
}
