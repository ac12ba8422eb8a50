//! Reading a TPACKET_V3 block: safe code over the block's bytes, so it is tested (and can be
//! fuzzed) without a kernel.
//!
//! A block starts with a `tpacket_block_desc` (`block_status` at 8, `num_pkts` at 12,
//! `offset_to_first_pkt` at 16, `blk_len` at 20, all native-endian u32) and holds `num_pkts`
//! packets. Each packet starts with a 48-byte `tpacket3_hdr` (`tp_next_offset`, `tp_sec`,
//! `tp_nsec`, `tp_snaplen`, `tp_len`, `tp_status` as u32 at 0..24, `tp_mac` as u16 at 24), then
//! a `sockaddr_ll` at 48 (`sll_ifindex` at 52, `sll_pkttype` at 58); its data is the
//! `tp_snaplen` bytes at `tp_mac`, and the next packet starts `tp_next_offset` bytes further.
//!
//! Every offset and length is checked against the block (and against `blk_len`, the part the
//! kernel filled): a malformed block ends the walk with a [`BlockError`], never a panic or a
//! read outside the slice.

use std::fmt;

use crate::capture::{LinkType, PacketRef};

/// Size of `struct tpacket_block_desc`, where the first packet may start at the earliest.
pub const BLOCK_DESC_LEN: usize = 48;
/// Size of a packet's headers: `tpacket3_hdr` (48) and the `sockaddr_ll` after it (20).
pub const PACKET_HDR_LEN: usize = 68;
/// Offset of the `sockaddr_ll` in a packet's headers.
pub const SOCKADDR_OFFSET: usize = 48;

/// `sll_pkttype` of a packet the host sent (`PACKET_OUTGOING`); on `lo` the second copy.
pub const PACKET_OUTGOING: u8 = 4;

/// A block's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// `block_status` (`TP_STATUS_*` bits).
    pub status: u32,
    /// `num_pkts`.
    pub num_pkts: u32,
    /// `offset_to_first_pkt`.
    pub offset_to_first_pkt: u32,
    /// `blk_len`: the bytes of the block in use, descriptor included.
    pub blk_len: u32,
}

/// One packet of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The packet as the capture layer sees it.
    pub packet: PacketRef<'a>,
    /// `sll_pkttype` (`PACKET_HOST` 0 … `PACKET_OUTGOING` 4).
    pub pkttype: u8,
    /// `sll_ifindex`.
    pub ifindex: i32,
    /// `tp_status` (`TP_STATUS_*` bits).
    pub status: u32,
}

/// Why a block could not be walked (to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The block is shorter than its descriptor.
    ShortBlock {
        /// Its length.
        len: usize,
    },
    /// `blk_len` is below the descriptor's size or beyond the block.
    BadLength {
        /// `blk_len`.
        blk_len: u32,
    },
    /// Packet `index`'s headers or data do not fit in the block, or its data overlaps its
    /// headers or the next packet.
    BadPacket {
        /// The packet's position in the block.
        index: u32,
        /// Its offset from the start of the block.
        offset: usize,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortBlock { len } => {
                write!(f, "a {len}-byte block is shorter than its descriptor")
            }
            Self::BadLength { blk_len } => write!(f, "block length {blk_len} is out of range"),
            Self::BadPacket { index, offset } => {
                write!(
                    f,
                    "packet {index} at offset {offset} does not fit in its block"
                )
            }
        }
    }
}

impl std::error::Error for BlockError {}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(field.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let field = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(field.try_into().ok()?))
}

/// Reads a block's descriptor.
///
/// # Errors
/// [`BlockError::ShortBlock`] when `block` is shorter than a descriptor.
pub fn header(block: &[u8]) -> Result<BlockHeader, BlockError> {
    let short = BlockError::ShortBlock { len: block.len() };
    if block.len() < BLOCK_DESC_LEN {
        return Err(short);
    }
    let field = |at| u32_at(block, at).ok_or(short);
    Ok(BlockHeader {
        status: field(8)?,
        num_pkts: field(12)?,
        offset_to_first_pkt: field(16)?,
        blk_len: field(20)?,
    })
}

/// The packets of `block`, framed as `link`.
///
/// # Errors
/// [`BlockError::ShortBlock`] or [`BlockError::BadLength`] for a bad descriptor; a bad packet
/// is reported by the iterator, as its last item.
pub fn packets(block: &[u8], link: LinkType) -> Result<Packets<'_>, BlockError> {
    let head = header(block)?;
    let used = usize::try_from(head.blk_len).unwrap_or(usize::MAX);
    if used < BLOCK_DESC_LEN || used > block.len() {
        return Err(BlockError::BadLength {
            blk_len: head.blk_len,
        });
    }
    Ok(Packets {
        block: &block[..used],
        link,
        offset: head.offset_to_first_pkt as usize,
        index: 0,
        count: head.num_pkts,
        failed: false,
    })
}

/// Iterator over a block's packets ([`packets`]); after an `Err` item it yields nothing.
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    block: &'a [u8],
    link: LinkType,
    offset: usize,
    index: u32,
    count: u32,
    failed: bool,
}

impl<'a> Packets<'a> {
    fn frame(&self) -> Option<(Frame<'a>, usize)> {
        let at = self.offset;
        if at < BLOCK_DESC_LEN {
            return None;
        }
        let hdr = self.block.get(at..at.checked_add(PACKET_HDR_LEN)?)?;
        let next = u32_at(hdr, 0)? as usize;
        let sec = u32_at(hdr, 4)?;
        let nsec = u32_at(hdr, 8)?;
        let snaplen = u32_at(hdr, 12)? as usize;
        let len = u32_at(hdr, 16)?;
        let status = u32_at(hdr, 20)?;
        let mac = usize::from(u16_at(hdr, 24)?);
        let ifindex = i32::from_ne_bytes(hdr.get(52..56)?.try_into().ok()?);
        let pkttype = *hdr.get(SOCKADDR_OFFSET + 10)?;
        if mac < PACKET_HDR_LEN {
            return None;
        }
        let end = mac.checked_add(snaplen)?;
        let data = self.block.get(at.checked_add(mac)?..at.checked_add(end)?)?;
        let last = self.index + 1 >= self.count;
        // The kernel sets `tp_next_offset` to the packet's aligned length, 0 on the last one.
        if !last && next < end {
            return None;
        }
        let frame = Frame {
            packet: PacketRef {
                ts_ns: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
                link: self.link,
                data,
                orig_len: len,
            },
            pkttype,
            ifindex,
            status,
        };
        Some((frame, next))
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<Frame<'a>, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.index >= self.count {
            return None;
        }
        let Some((frame, next)) = self.frame() else {
            self.failed = true;
            return Some(Err(BlockError::BadPacket {
                index: self.index,
                offset: self.offset,
            }));
        };
        self.index += 1;
        self.offset = self.offset.saturating_add(next);
        Some(Ok(frame))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// One synthetic packet: data, wire length, pkttype, and extra bytes between the headers
    /// and the data (the kernel's `tp_mac` padding).
    #[derive(Debug, Clone)]
    struct Synth {
        data: Vec<u8>,
        len: u32,
        pkttype: u8,
        pad: usize,
        sec: u32,
        nsec: u32,
    }

    fn put32(block: &mut [u8], at: usize, value: u32) {
        block[at..at + 4].copy_from_slice(&value.to_ne_bytes());
    }

    /// Writes a block the way the kernel lays one out (`prb_fill_curr_block`, `prb_close_block`).
    fn build(packets: &[Synth], block_size: usize) -> Vec<u8> {
        let mut block = vec![0u8; block_size];
        put32(&mut block, 8, 1); // TP_STATUS_USER
        put32(&mut block, 12, packets.len() as u32);
        put32(&mut block, 16, BLOCK_DESC_LEN as u32);
        let mut at = BLOCK_DESC_LEN;
        for (i, p) in packets.iter().enumerate() {
            let mac = PACKET_HDR_LEN + p.pad;
            let total = (mac + p.data.len()).next_multiple_of(8);
            let next = if i + 1 == packets.len() { 0 } else { total };
            put32(&mut block, at, next as u32);
            put32(&mut block, at + 4, p.sec);
            put32(&mut block, at + 8, p.nsec);
            put32(&mut block, at + 12, p.data.len() as u32);
            put32(&mut block, at + 16, p.len);
            put32(&mut block, at + 20, 1);
            block[at + 24..at + 26].copy_from_slice(&(mac as u16).to_ne_bytes());
            block[at + 52..at + 56].copy_from_slice(&7i32.to_ne_bytes());
            block[at + 58] = p.pkttype;
            block[at + mac..at + mac + p.data.len()].copy_from_slice(&p.data);
            at += total;
        }
        put32(&mut block, 20, at as u32);
        block
    }

    fn synth(data: &[u8]) -> Synth {
        Synth {
            data: data.to_vec(),
            len: data.len() as u32,
            pkttype: 0,
            pad: 14,
            sec: 1_700_000_000,
            nsec: 123,
        }
    }

    fn walk(block: &[u8]) -> Result<Vec<Frame<'_>>, BlockError> {
        packets(block, LinkType::Ethernet)?.collect()
    }

    #[test]
    fn reads_what_was_written() {
        let mut outgoing = synth(b"second, cut");
        outgoing.pkttype = PACKET_OUTGOING;
        outgoing.len = 1500;
        let block = build(&[synth(b"first packet"), outgoing, synth(b"")], 4096);
        let head = header(&block).unwrap();
        assert_eq!(head.num_pkts, 3);
        assert_eq!(head.status, 1);
        let frames = walk(&block).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].packet.data, b"first packet");
        assert_eq!(frames[0].packet.ts_ns, 1_700_000_000_000_000_123);
        assert_eq!(frames[0].packet.link, LinkType::Ethernet);
        assert_eq!(frames[0].pkttype, 0);
        assert_eq!(frames[0].ifindex, 7);
        assert!(!frames[0].packet.is_truncated());
        assert_eq!(frames[1].packet.data, b"second, cut");
        assert_eq!(frames[1].packet.orig_len, 1500);
        assert!(frames[1].packet.is_truncated());
        assert_eq!(frames[1].pkttype, PACKET_OUTGOING);
        assert_eq!(frames[2].packet.data, b"");
    }

    #[test]
    fn empty_block_has_no_packets() {
        let block = build(&[], 4096);
        assert!(walk(&block).unwrap().is_empty());
    }

    #[test]
    fn short_or_overlong_descriptors_are_errors() {
        assert_eq!(
            packets(&[0; 47], LinkType::Ethernet).unwrap_err(),
            BlockError::ShortBlock { len: 47 }
        );
        let mut block = build(&[synth(b"x")], 4096);
        put32(&mut block, 20, 4097);
        assert_eq!(
            walk(&block).unwrap_err(),
            BlockError::BadLength { blk_len: 4097 }
        );
        put32(&mut block, 20, 10);
        assert!(matches!(walk(&block), Err(BlockError::BadLength { .. })));
    }

    #[test]
    fn a_bad_packet_ends_the_walk_after_the_good_ones() {
        let mut block = build(&[synth(b"one"), synth(b"two"), synth(b"three")], 4096);
        // The second packet claims more data than the block holds.
        let second = BLOCK_DESC_LEN + (PACKET_HDR_LEN + 14 + 3).next_multiple_of(8);
        put32(&mut block, second + 12, 100_000);
        let items: Vec<_> = packets(&block, LinkType::Ethernet).unwrap().collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].unwrap().packet.data, b"one");
        assert_eq!(
            items[1],
            Err(BlockError::BadPacket {
                index: 1,
                offset: second
            })
        );
    }

    #[test]
    fn data_may_not_overlap_headers_or_the_next_packet() {
        let block = build(&[synth(b"one"), synth(b"two")], 4096);
        let mut overlap_hdr = block.clone();
        overlap_hdr[BLOCK_DESC_LEN + 24..BLOCK_DESC_LEN + 26].copy_from_slice(&40u16.to_ne_bytes());
        assert!(walk(&overlap_hdr).is_err());
        let mut overlap_next = block.clone();
        put32(&mut overlap_next, BLOCK_DESC_LEN, 8);
        assert!(walk(&overlap_next).is_err());
        // A zero `tp_next_offset` before the last packet would loop on one packet.
        let mut zero_next = block;
        put32(&mut zero_next, BLOCK_DESC_LEN, 0);
        assert!(walk(&zero_next).is_err());
    }

    #[test]
    fn more_packets_claimed_than_present_is_an_error_not_a_loop() {
        let mut block = build(&[synth(b"one")], 4096);
        put32(&mut block, 12, u32::MAX);
        let items: Vec<_> = packets(&block, LinkType::Ethernet).unwrap().collect();
        assert!(items.len() <= 2);
        assert!(items.last().unwrap().is_err());
    }

    fn arb_packet() -> impl Strategy<Value = Synth> {
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            0u32..2000,
            0u8..8,
            0usize..40,
            any::<u32>(),
            0u32..1_000_000_000,
        )
            .prop_map(|(data, extra, pkttype, pad, sec, nsec)| Synth {
                len: data.len() as u32 + extra,
                data,
                pkttype,
                pad,
                sec,
                nsec,
            })
    }

    /// Whether `inner` lies inside `outer` (by address).
    fn within(inner: &[u8], outer: &[u8]) -> bool {
        let start = outer.as_ptr() as usize;
        let at = inner.as_ptr() as usize;
        inner.is_empty() || (at >= start && at + inner.len() <= start + outer.len())
    }

    proptest! {
        #[test]
        fn synthetic_blocks_round_trip(batch in proptest::collection::vec(arb_packet(), 0..20)) {
            let block = build(&batch, 16384);
            let frames = walk(&block).unwrap();
            prop_assert_eq!(frames.len(), batch.len());
            for (frame, want) in frames.iter().zip(&batch) {
                prop_assert_eq!(frame.packet.data, &want.data[..]);
                prop_assert_eq!(frame.packet.orig_len, want.len);
                prop_assert_eq!(frame.pkttype, want.pkttype);
                prop_assert_eq!(
                    frame.packet.ts_ns,
                    u64::from(want.sec) * 1_000_000_000 + u64::from(want.nsec)
                );
            }
        }

        #[test]
        fn random_bytes_never_panic_or_escape(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(iter) = packets(&bytes, LinkType::RawIp) {
                let mut n = 0usize;
                for item in iter {
                    n += 1;
                    prop_assert!(n <= bytes.len() / PACKET_HDR_LEN + 1);
                    if let Ok(frame) = item {
                        prop_assert!(within(frame.packet.data, &bytes));
                    }
                }
            }
        }

        #[test]
        fn corrupted_blocks_never_panic_or_escape(
            batch in proptest::collection::vec(arb_packet(), 1..8),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        ) {
            let mut block = build(&batch, 8192);
            let used = header(&block).unwrap().blk_len as usize;
            for (at, value) in flips {
                let at = at.index(used);
                block[at] = value;
            }
            if let Ok(iter) = packets(&block, LinkType::Ethernet) {
                for frame in iter.flatten() {
                    prop_assert!(within(frame.packet.data, &block));
                }
            }
        }
    }
}
