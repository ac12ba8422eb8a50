//! `NETLINK_SOCK_DIAG` / `inet_diag`: the request that dumps TCP sockets, and the reply messages.
//!
//! Netlink headers are in host byte order; the addresses and ports of `inet_diag_sockid` are in
//! network order. The caller owns the `AF_NETLINK` socket: it sends [`encode_sock_diag_request`]'s
//! bytes and hands each received datagram to [`parse_netlink_message`] (or to a
//! [`DiagCounter`](crate::DiagCounter)).
#![deny(clippy::indexing_slicing)]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::num::NonZeroUsize;

use super::state::{RowKind, TcpState, TimerKind};
use crate::Status;
use crate::error::{Error, ErrorKind};

/// The netlink protocol number of sock_diag (`socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG)`).
pub const NETLINK_SOCK_DIAG: i32 = 4;
/// `AF_NETLINK`, for opening the socket.
pub const AF_NETLINK: i32 = 16;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NLMSG_HDRLEN: usize = 16;
const INET_DIAG_REQ_V2_LEN: usize = 56;
const INET_DIAG_MSG_LEN: usize = 72;

/// Length of the request [`encode_sock_diag_request`] writes.
pub const SOCK_DIAG_REQUEST_LEN: usize = NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN;

/// An address family of a sock_diag dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// `AF_INET`.
    Inet,
    /// `AF_INET6` (dual-stack sockets' IPv4 peers appear here as IPv4-mapped addresses).
    Inet6,
}

impl Family {
    const fn code(self) -> u8 {
        match self {
            Self::Inet => AF_INET,
            Self::Inet6 => AF_INET6,
        }
    }
}

/// A set of TCP states, as the bitmask `inet_diag_req_v2.idiag_states` takes (bit n = state n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateMask(pub u32);

impl StateMask {
    /// Every state `ss -a` and node_exporter ask for (`0xFFF`, codes 0–11). The kernel adds request
    /// sockets (`NEW_SYN_RECV`) whenever `SYN_RECV` is asked for and reports them as `03`.
    pub const ALL: Self = Self(0xFFF);

    /// Only `state`: asking for LISTEN alone lets the kernel skip the established hash entirely.
    pub const fn only(state: TcpState) -> Self {
        Self(if state.0 < 32 { 1 << state.0 } else { 0 })
    }

    /// This set plus `state`.
    pub const fn with(self, state: TcpState) -> Self {
        Self(self.0 | Self::only(state).0)
    }
}

/// What to ask the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SockDiagRequest {
    /// Which table.
    pub family: Family,
    /// Which states.
    pub states: StateMask,
    /// `idiag_ext` bits (e.g. `1 << (INET_DIAG_INFO - 1)` for `tcp_info`). 0 by default: counting
    /// needs none, and node_exporter's request for `tcp_info` costs about 40 % more dump time.
    pub extensions: u8,
    /// `nlmsg_seq`, echoed in every reply message.
    pub sequence: u32,
}

impl SockDiagRequest {
    /// A dump of every TCP socket of `family`, no extensions.
    pub const fn new(family: Family) -> Self {
        Self {
            family,
            states: StateMask::ALL,
            extensions: 0,
            sequence: 0,
        }
    }

    /// Sets [`SockDiagRequest::states`].
    pub const fn states(mut self, states: StateMask) -> Self {
        self.states = states;
        self
    }

    /// Sets [`SockDiagRequest::extensions`].
    pub const fn extensions(mut self, extensions: u8) -> Self {
        self.extensions = extensions;
        self
    }

    /// Sets [`SockDiagRequest::sequence`].
    pub const fn sequence(mut self, sequence: u32) -> Self {
        self.sequence = sequence;
        self
    }
}

/// Writes the `SOCK_DIAG_BY_FAMILY` dump request (`nlmsghdr` + `inet_diag_req_v2`) into `out`
/// and returns its length, [`SOCK_DIAG_REQUEST_LEN`].
///
/// # Errors
/// [`ErrorKind::BufferTooSmall`] when `out` is shorter than [`SOCK_DIAG_REQUEST_LEN`].
///
/// # Panics
/// Never.
pub fn encode_sock_diag_request(request: &SockDiagRequest, out: &mut [u8]) -> Result<usize, Error> {
    let Some(out) = out.get_mut(..SOCK_DIAG_REQUEST_LEN) else {
        let kind = ErrorKind::BufferTooSmall {
            needed: SOCK_DIAG_REQUEST_LEN,
        };
        return Err(Error::new(kind, 0));
    };
    out.fill(0);
    let mut w = Writer { out, pos: 0 };
    w.put(&(SOCK_DIAG_REQUEST_LEN as u32).to_ne_bytes());
    w.put(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    w.put(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    w.put(&request.sequence.to_ne_bytes());
    w.put(&0u32.to_ne_bytes()); // nlmsg_pid: 0 addresses the kernel
    w.put(&[request.family.code(), IPPROTO_TCP, request.extensions, 0]);
    w.put(&request.states.0.to_ne_bytes());
    // inet_diag_sockid stays zero: no filter on addresses, ports, interface or cookie.
    Ok(SOCK_DIAG_REQUEST_LEN)
}

struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.out.get_mut(self.pos..self.pos + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.pos += bytes.len();
    }
}

/// One netlink message of a sock_diag reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetlinkMessage<'a> {
    /// A socket.
    InetDiag(InetDiagMsg<'a>),
    /// The end of a dump. `errno` is 0 when the dump completed, else the positive error number
    /// the kernel put in the payload (e.g. 2, `ENOENT`, when `tcp_diag` is not available).
    Done {
        /// Positive errno, or 0.
        errno: i32,
    },
    /// `NLMSG_ERROR`: `errno` is 0 for an acknowledgement, else the positive error number.
    Error {
        /// Positive errno, or 0.
        errno: i32,
    },
    /// A message type this crate does not decode (`NLMSG_NOOP`, …), skipped.
    Other {
        /// `nlmsg_type`.
        kind: u16,
    },
}

/// `struct inet_diag_msg` and the attributes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetDiagMsg<'a> {
    /// State (request sockets are reported as `03`, TIME_WAIT minisockets by their substate).
    pub state: TcpState,
    /// Pending timer.
    pub timer: TimerKind,
    /// Retransmits (`idiag_retrans`).
    pub retransmits: u8,
    /// Local endpoint.
    pub local: SocketAddr,
    /// Remote endpoint.
    pub remote: SocketAddr,
    /// Bound interface index, 0 for none.
    pub interface: u32,
    /// The kernel's socket cookie.
    pub cookie: u64,
    /// Timer expiry in milliseconds.
    pub expires_ms: u32,
    /// Receive queue; for LISTEN, the accept backlog.
    pub rqueue: u32,
    /// Send queue; for LISTEN, the maximum backlog (`listen()`'s argument, capped by somaxconn).
    pub wqueue: u32,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode, `None` for 0.
    pub inode: Option<u64>,
    attributes: &'a [u8],
}

impl<'a> InetDiagMsg<'a> {
    /// The `rtattr` attributes that follow the message (extensions that were asked for).
    pub const fn attributes(&self) -> Attributes<'a> {
        Attributes {
            rest: self.attributes,
        }
    }

    /// The row kind, as far as sock_diag shows it: TIME_WAIT minisockets by state and timer,
    /// request sockets as `03` with the SYN-ACK timer and no inode. A TCP Fast Open child that is
    /// not yet accepted looks the same as a request socket here; `/proc` tells them apart.
    pub const fn kind(&self) -> RowKind {
        RowKind::classify(self.state, self.timer, self.inode.is_some())
    }
}

/// Iterator over `(rta_type, payload)` of a message's attributes; stops at the first one that
/// does not fit.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let len = usize::from(u16::from_ne_bytes(array(self.rest, 0)?));
        let kind = u16::from_ne_bytes(array(self.rest, 2)?);
        let payload = self.rest.get(4..len)?;
        self.rest = self.rest.get(align4(len)..).unwrap_or_default();
        Some((kind, payload))
    }
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u32_ne(buf: &[u8], at: usize) -> Option<u32> {
    array(buf, at).map(u32::from_ne_bytes)
}

/// Parses the netlink message at the start of `buf` (one received datagram holds one or more).
///
/// `consumed` includes the alignment padding, so the next message starts right after it.
///
/// # Errors
/// [`ErrorKind::NetlinkBadLength`] when `nlmsg_len` is shorter than the header,
/// [`ErrorKind::NetlinkTruncated`] when a message is shorter than its type requires, and
/// [`ErrorKind::UnknownFamily`] for an `inet_diag_msg` of another family.
///
/// # Panics
/// Never.
pub fn parse_netlink_message(buf: &[u8]) -> Result<Status<NetlinkMessage<'_>>, Error> {
    let Some(declared) = u32_ne(buf, 0) else {
        return Ok(Status::Partial {
            needed: NonZeroUsize::new(NLMSG_HDRLEN - buf.len()),
        });
    };
    let len = declared as usize;
    if len < NLMSG_HDRLEN {
        return Err(Error::new(ErrorKind::NetlinkBadLength { declared }, 0));
    }
    let Some(message) = buf.get(..len) else {
        return Ok(Status::Partial {
            needed: NonZeroUsize::new(len - buf.len()),
        });
    };
    let kind = array(message, 4).map_or(0, u16::from_ne_bytes);
    let payload = message.get(NLMSG_HDRLEN..).unwrap_or_default();
    let truncated = || Error::new(ErrorKind::NetlinkTruncated, NLMSG_HDRLEN as u64);
    let value = match kind {
        // A 4-byte payload, when present, holds the dump's result (older kernels send none).
        NLMSG_DONE => NetlinkMessage::Done {
            errno: array(payload, 0)
                .map_or(0, i32::from_ne_bytes)
                .saturating_neg()
                .max(0),
        },
        NLMSG_ERROR => {
            let error = array(payload, 0)
                .map(i32::from_ne_bytes)
                .ok_or_else(truncated)?;
            NetlinkMessage::Error {
                errno: error.saturating_neg(),
            }
        }
        SOCK_DIAG_BY_FAMILY => NetlinkMessage::InetDiag(parse_inet_diag(payload)?),
        _ => NetlinkMessage::Other { kind },
    };
    Ok(Status::Complete {
        value,
        consumed: align4(len).min(buf.len()),
    })
}

fn parse_inet_diag(payload: &[u8]) -> Result<InetDiagMsg<'_>, Error> {
    let at = NLMSG_HDRLEN as u64;
    let fixed: [u8; INET_DIAG_MSG_LEN] =
        array(payload, 0).ok_or_else(|| Error::new(ErrorKind::NetlinkTruncated, at))?;
    let [family, state, timer, retransmits] = [fixed[0], fixed[1], fixed[2], fixed[3]];
    let sport = u16::from_be_bytes([fixed[4], fixed[5]]);
    let dport = u16::from_be_bytes([fixed[6], fixed[7]]);
    let address = |start: usize| -> Result<IpAddr, Error> {
        let bytes: [u8; 16] = array(&fixed, start).unwrap_or_default();
        match family {
            AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
            _ => Err(Error::new(ErrorKind::UnknownFamily { family }, at)),
        }
    };
    let word = |i: usize| u32_ne(&fixed, i).unwrap_or(0);
    let inode = word(68);
    Ok(InetDiagMsg {
        state: TcpState(state),
        timer: TimerKind(timer),
        retransmits,
        local: SocketAddr::new(address(8)?, sport),
        remote: SocketAddr::new(address(24)?, dport),
        interface: word(40),
        cookie: u64::from(word(44)) | (u64::from(word(48)) << 32),
        expires_ms: word(52),
        rqueue: word(56),
        wqueue: word(60),
        uid: word(64),
        inode: (inode != 0).then_some(u64::from(inode)),
        attributes: payload.get(INET_DIAG_MSG_LEN..).unwrap_or_default(),
    })
}
