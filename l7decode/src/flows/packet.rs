//! Tier 1: the TCP segment inside the bytes of one IPv4 or IPv6 packet, read in place.
//!
//! [`parse_ip_packet`] is what an agent holding raw packets (AF_PACKET, a pcap file) calls after
//! stripping its link layer: it returns a [`Segment`] borrowing the packet, ready for
//! [`FlowTracker::segment`](super::FlowTracker::segment), or a typed [`Error`] for anything that
//! is not a whole TCP header over unfragmented IP. It never allocates.

#![deny(clippy::indexing_slicing)]

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{Error, ErrorKind};
use crate::reassembly::TcpFlags;

/// IP protocol number of TCP.
const TCP: u8 = 6;

/// One captured TCP segment: what [`FlowTracker::segment`](super::FlowTracker::segment) needs.
///
/// Build one with [`parse_ip_packet`], or fill the fields from your own packet parser.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when `flags` has [`TcpFlags::ACK`]).
    pub ack: u32,
    /// The TCP flags byte.
    pub flags: TcpFlags,
    /// The payload as captured, bounded by the IP length (link-layer padding excluded).
    pub payload: &'a [u8],
    /// Payload bytes the capture did not keep (a snaplen cut): the IP header announced
    /// `payload.len() + missing` bytes.
    pub missing: u32,
}

/// The payload is redacted: its length only.
impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("seq", &self.seq)
            .field("ack", &self.ack)
            .field("flags", &self.flags)
            .field("len", &self.payload.len())
            .field("missing", &self.missing)
            .finish()
    }
}

/// Reads the TCP segment of an IPv4 or IPv6 packet (`packet` starts at the IP header).
///
/// IPv6 extension headers (hop-by-hop, routing, destination options) are skipped. A packet cut
/// short by the capture inside its payload is fine: the cut is [`Segment::missing`]. The IP
/// header's length fields bound the payload, so Ethernet padding never becomes data.
///
/// # Errors
/// [`ErrorKind::NotIp`] when the version nibble is neither 4 nor 6; [`ErrorKind::NotTcp`] for
/// another transport (the protocol number is in the kind); [`ErrorKind::Fragment`] for a piece
/// of a fragmented datagram (reassemble IP first); [`ErrorKind::Truncated`] when the IP or TCP
/// header is cut short or its length fields contradict each other. The error's offset is the
/// byte where the problem was found.
///
/// # Panics
/// Never, on any input.
///
/// ```
/// use l7decode::ErrorKind;
/// use l7decode::flows::parse_ip_packet;
/// use l7decode::reassembly::TcpFlags;
///
/// # // An IPv4 packet carrying one TCP segment (checksums are not checked).
/// # fn ipv4_tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
/// #     let total = (40 + payload.len()) as u16;
/// #     let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 6, 0, 0];
/// #     p.extend_from_slice(&src.0);
/// #     p.extend_from_slice(&dst.0);
/// #     p.extend_from_slice(&src.1.to_be_bytes());
/// #     p.extend_from_slice(&dst.1.to_be_bytes());
/// #     p.extend_from_slice(&seq.to_be_bytes());
/// #     p.extend_from_slice(&ack.to_be_bytes());
/// #     p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
/// #     p.extend_from_slice(payload);
/// #     p
/// # }
/// let packet = ipv4_tcp(([10, 0, 0, 1], 40_000), ([10, 0, 0, 2], 80), 7, 0, 0x18, b"GET");
/// let segment = parse_ip_packet(&packet)?;
/// assert_eq!((segment.src.port(), segment.dst.port(), segment.seq), (40_000, 80, 7));
/// assert_eq!((segment.flags, segment.payload), (TcpFlags::PSH | TcpFlags::ACK, &b"GET"[..]));
/// // Cut inside the TCP header:
/// assert_eq!(parse_ip_packet(&packet[..30]).unwrap_err().kind(), ErrorKind::Truncated);
/// # Ok::<(), l7decode::Error>(())
/// ```
pub fn parse_ip_packet(packet: &[u8]) -> Result<Segment<'_>, Error> {
    let Some(first) = packet.first() else {
        return Err(truncated(0));
    };
    let version = first >> 4;
    let ip = match version {
        4 => ipv4(packet)?,
        6 => ipv6(packet)?,
        _ => return Err(Error::new(ErrorKind::NotIp { version }, 0)),
    };
    tcp(ip)
}

/// The network layer's part of a segment: addresses and the TCP bytes it announced.
struct IpPayload<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// Where the TCP header starts in the packet.
    offset: usize,
    /// The captured TCP bytes, cut at the IP length.
    bytes: &'a [u8],
    /// Announced bytes the capture did not keep.
    missing: u32,
}

fn truncated(offset: usize) -> Error {
    Error::new(ErrorKind::Truncated, offset as u64)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Cuts the announced `len` bytes starting at `offset` from what was captured.
fn announced(packet: &[u8], offset: usize, len: usize) -> (&[u8], u32) {
    let captured = packet.get(offset..).unwrap_or_default();
    let kept = captured.len().min(len);
    let missing = u32::try_from(len - kept).unwrap_or(u32::MAX);
    (captured.get(..kept).unwrap_or_default(), missing)
}

fn ipv4(packet: &[u8]) -> Result<IpPayload<'_>, Error> {
    let header = packet.get(..20).ok_or_else(|| truncated(packet.len()))?;
    let ihl = usize::from(header.first().map_or(0, |b| b & 0x0f)) * 4;
    // A total length of 0 is what captures on the sending host show for segments the NIC
    // splits (TSO): the packet is as long as what was captured.
    let total = match usize::from(be16(header, 2).unwrap_or(0)) {
        0 => packet.len(),
        n => n,
    };
    if ihl < 20 || total < ihl {
        return Err(truncated(0));
    }
    if packet.len() < ihl {
        return Err(truncated(packet.len()));
    }
    let frag = be16(header, 6).unwrap_or(0);
    // More-fragments set, or a non-zero offset: a piece of a larger datagram.
    if frag & 0x3fff != 0 {
        return Err(Error::new(ErrorKind::Fragment, 6));
    }
    let protocol = header.get(9).copied().unwrap_or(0);
    if protocol != TCP {
        return Err(Error::new(ErrorKind::NotTcp { protocol }, 9));
    }
    let addr = |at: usize| -> IpAddr {
        let b: [u8; 4] = header
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default();
        IpAddr::V4(Ipv4Addr::from(b))
    };
    let (bytes, missing) = announced(packet, ihl, total - ihl);
    Ok(IpPayload {
        src: addr(12),
        dst: addr(16),
        offset: ihl,
        bytes,
        missing,
    })
}

fn ipv6(packet: &[u8]) -> Result<IpPayload<'_>, Error> {
    let header = packet.get(..40).ok_or_else(|| truncated(packet.len()))?;
    let payload_len = usize::from(be16(header, 4).unwrap_or(0));
    let mut next = header.get(6).copied().unwrap_or(0);
    let mut offset = 40;
    // The end of the announced payload (a jumbogram's length 0 is not supported: truncated).
    let end = 40 + payload_len;
    loop {
        match next {
            TCP => break,
            // Hop-by-hop, routing, destination options (length in 8-byte units, minus 1) and
            // the authentication header (in 4-byte units, minus 2): skipped.
            0 | 43 | 60 | 51 => {
                let ext = packet
                    .get(offset..offset + 2)
                    .ok_or_else(|| truncated(offset))?;
                let units = usize::from(ext.get(1).copied().unwrap_or(0));
                let len = if next == 51 {
                    (units + 2) * 4
                } else {
                    (units + 1) * 8
                };
                next = ext.first().copied().unwrap_or(0);
                offset += len;
                if offset > end {
                    return Err(truncated(offset));
                }
            }
            44 => return Err(Error::new(ErrorKind::Fragment, offset as u64)),
            protocol => return Err(Error::new(ErrorKind::NotTcp { protocol }, offset as u64)),
        }
    }
    let addr = |at: usize| -> IpAddr {
        let b: [u8; 16] = header
            .get(at..at + 16)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default();
        IpAddr::V6(Ipv6Addr::from(b))
    };
    let (bytes, missing) = announced(packet, offset, end - offset);
    Ok(IpPayload {
        src: addr(8),
        dst: addr(24),
        offset,
        bytes,
        missing,
    })
}

fn tcp(ip: IpPayload<'_>) -> Result<Segment<'_>, Error> {
    let b = ip.bytes;
    let at = |rel: usize| ip.offset + rel;
    let data_offset = usize::from(b.get(12).map_or(0, |x| x >> 4)) * 4;
    if b.len() < 20 || b.len() < data_offset {
        return Err(truncated(at(b.len())));
    }
    if data_offset < 20 {
        return Err(truncated(at(12)));
    }
    let port = |rel| be16(b, rel).unwrap_or(0);
    Ok(Segment {
        src: SocketAddr::new(ip.src, port(0)),
        dst: SocketAddr::new(ip.dst, port(2)),
        seq: be32(b, 4).unwrap_or(0),
        ack: be32(b, 8).unwrap_or(0),
        flags: TcpFlags(b.get(13).copied().unwrap_or(0)),
        payload: b.get(data_offset..).unwrap_or_default(),
        missing: ip.missing,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An IPv4 packet carrying a TCP segment with `payload`.
    fn v4(payload: &[u8], flags: u8) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&[0x9c, 0x40, 0, 80]); // 40000 -> 80
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&2000u32.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn reads_an_ipv4_segment_and_ignores_padding() {
        let mut p = v4(b"GET", 0x18);
        p.extend_from_slice(&[0; 6]); // Ethernet padding
        let s = parse_ip_packet(&p).unwrap();
        assert_eq!(s.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "10.0.0.2:80".parse().unwrap());
        assert_eq!((s.seq, s.ack, s.flags.0), (1000, 2000, 0x18));
        assert_eq!((s.payload, s.missing), (&b"GET"[..], 0));
        assert!(format!("{s:?}").contains("len: 3"));
    }

    #[test]
    fn a_snaplen_cut_is_missing_bytes() {
        let p = v4(b"hello world", 0x18);
        let s = parse_ip_packet(&p[..p.len() - 6]).unwrap();
        assert_eq!((s.payload, s.missing), (&b"hello"[..], 6));
    }

    #[test]
    fn a_zero_total_length_means_the_captured_length() {
        let mut p = v4(b"segmented by the NIC", 0x18);
        p[2] = 0;
        p[3] = 0;
        let s = parse_ip_packet(&p).unwrap();
        assert_eq!((s.payload, s.missing), (&b"segmented by the NIC"[..], 0));
    }

    #[test]
    fn every_cut_inside_the_headers_is_truncated_never_a_panic() {
        let p = v4(b"x", 0x18);
        for cut in 0..40 {
            let e = parse_ip_packet(&p[..cut]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Truncated, "{cut}: {e}");
        }
    }

    #[test]
    fn fragments_and_other_transports_are_typed() {
        let mut p = v4(b"x", 0x18);
        p[6] = 0x20; // more fragments
        assert_eq!(parse_ip_packet(&p).unwrap_err().kind(), ErrorKind::Fragment);
        let mut p = v4(b"x", 0x18);
        p[9] = 17;
        assert_eq!(
            parse_ip_packet(&p).unwrap_err().kind(),
            ErrorKind::NotTcp { protocol: 17 }
        );
        assert_eq!(
            parse_ip_packet(&[0x25; 40]).unwrap_err().kind(),
            ErrorKind::NotIp { version: 2 }
        );
    }

    #[test]
    fn reads_ipv6_over_extension_headers() {
        let tcp = &v4(b"hi", 0x02)[20..];
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((8 + tcp.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 64]); // next: hop-by-hop
        p.extend_from_slice(&[0; 15]);
        p.push(1); // ::1
        p.extend_from_slice(&[0; 15]);
        p.push(2); // ::2
        p.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, next TCP, 8 bytes
        p.extend_from_slice(tcp);
        let s = parse_ip_packet(&p).unwrap();
        assert_eq!(s.src, "[::1]:40000".parse().unwrap());
        assert_eq!(s.dst, "[::2]:80".parse().unwrap());
        assert_eq!(s.payload, b"hi");
        assert!(s.flags.syn());
        p[6] = 44;
        assert_eq!(parse_ip_packet(&p).unwrap_err().kind(), ErrorKind::Fragment);
    }

    #[test]
    fn ipv6_skips_an_authentication_header() {
        let tcp = &v4(b"ah", 0x18)[20..];
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((12 + tcp.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[51, 64]); // next: AH
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&[6, 1, 0, 0]); // AH: next TCP, (1 + 2) * 4 = 12 bytes
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(tcp);
        assert_eq!(parse_ip_packet(&p).unwrap().payload, b"ah");
    }
}
