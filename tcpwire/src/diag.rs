//! Tier 2 for sock_diag: counts a dump datagram by datagram into the same [`TcpCounts`].

use crate::Status;
use crate::counter::TcpCounts;
use crate::error::{Error, ErrorKind};
use crate::wire::netlink::{NetlinkMessage, parse_netlink_message};

/// Whether a dump has more datagrams to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpProgress {
    /// Keep receiving.
    More,
    /// `NLMSG_DONE` arrived: the dump is complete.
    Done,
}

/// What a [`DiagCounter`] has read so far; `Copy` counters for the caller's metrics backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DiagStats {
    /// Netlink messages read.
    pub messages: u64,
    /// Of those, messages of a type that was skipped (neither a socket, `NLMSG_DONE` nor
    /// `NLMSG_ERROR`).
    pub skipped: u64,
}

/// Counts the sockets of a sock_diag dump. The caller owns the netlink socket: it sends the
/// request from [`encode_sock_diag_request`](crate::encode_sock_diag_request), then feeds each
/// datagram it receives until [`DumpProgress::Done`].
///
/// Queue sums follow the kernel's `inet_diag` semantics: LISTEN sockets report their accept
/// backlog as `rqueue` and their maximum backlog as `wqueue` (see
/// [`QueueSemantics::NodeExporter`](crate::QueueSemantics::NodeExporter)).
///
/// ```
/// use tcpwire::{DiagCounter, DumpProgress, ErrorKind};
///
/// /// A netlink message: `nlmsghdr` (length, type, flags, sequence, port id) and a payload.
/// fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
///     let mut m = Vec::new();
///     m.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
///     m.extend_from_slice(&kind.to_ne_bytes());
///     m.extend_from_slice(&[0; 10]); // flags, sequence, port id
///     m.extend_from_slice(payload);
///     m
/// }
/// const NLMSG_ERROR: u16 = 2;
/// const NLMSG_DONE: u16 = 3;
///
/// let mut counter = DiagCounter::new();
/// let done = message(NLMSG_DONE, &0i32.to_ne_bytes());
/// assert_eq!(counter.feed_datagram(&done)?, DumpProgress::Done);
/// assert!(counter.is_done());
/// assert_eq!(counter.stats().messages, 1);
///
/// // The kernel refused the request (EACCES): an error, never a panic.
/// let refused = message(NLMSG_ERROR, &(-13i32).to_ne_bytes());
/// let err = counter.feed_datagram(&refused).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::NetlinkErrno { errno: 13 });
/// # Ok::<(), tcpwire::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct DiagCounter {
    counts: TcpCounts,
    stats: DiagStats,
    done: bool,
}

impl DiagCounter {
    /// A counter awaiting the first datagram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts every message of one received datagram.
    ///
    /// # Errors
    /// [`ErrorKind::NetlinkErrno`] when the kernel refused the request or ended the dump with an
    /// error, and the errors of
    /// [`parse_netlink_message`] (a datagram ending inside a message is
    /// [`ErrorKind::NetlinkTruncated`]); offsets are within the datagram. Messages before the
    /// error are counted.
    ///
    /// # Panics
    /// Never.
    pub fn feed_datagram(&mut self, datagram: &[u8]) -> Result<DumpProgress, Error> {
        // After a completed dump, the next datagram starts another one (IPv6 after IPv4) whose
        // sockets add to the same counts.
        self.done = false;
        let mut at = 0;
        while let Some(rest) = datagram.get(at..).filter(|r| !r.is_empty()) {
            let here = at as u64;
            let (message, consumed) =
                match parse_netlink_message(rest).map_err(|e| e.rebased(here))? {
                    Status::Complete { value, consumed } => (value, consumed),
                    Status::Partial { .. } => {
                        return Err(Error::new(ErrorKind::NetlinkTruncated, here));
                    }
                };
            at += consumed;
            self.stats.messages += 1;
            match message {
                NetlinkMessage::InetDiag(msg) => {
                    self.counts
                        .add(msg.state, msg.wqueue, msg.rqueue, msg.kind());
                }
                NetlinkMessage::Done { errno: 0 } => {
                    self.done = true;
                    return Ok(DumpProgress::Done);
                }
                NetlinkMessage::Done { errno } => {
                    return Err(Error::new(ErrorKind::NetlinkErrno { errno }, here));
                }
                NetlinkMessage::Error { errno: 0 } => {}
                NetlinkMessage::Error { errno } => {
                    return Err(Error::new(ErrorKind::NetlinkErrno { errno }, here));
                }
                NetlinkMessage::Other { .. } => self.stats.skipped += 1,
            }
        }
        Ok(if self.done {
            DumpProgress::Done
        } else {
            DumpProgress::More
        })
    }

    /// Sockets counted so far.
    pub const fn counts(&self) -> &TcpCounts {
        &self.counts
    }

    /// Counters so far.
    pub const fn stats(&self) -> DiagStats {
        self.stats
    }

    /// Whether the last datagram fed ended a dump with `NLMSG_DONE`.
    pub const fn is_done(&self) -> bool {
        self.done
    }
}
