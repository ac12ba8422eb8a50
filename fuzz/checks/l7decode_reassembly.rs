// Properties of the TCP reassembler on segments drawn from the input (each: 3 bytes of seq
// offset, 1 byte of flags, 1 byte of snaplen cut, 1 byte of length, then payload taken from a fixed
// pattern stream; a cut segment keeps its first bytes and reports the rest as not captured; a
// flags byte with its top bit set acknowledges up to the segment's end instead of sending it):
// never panics; memory stays within the configured bounds; every delivered byte equals the
// pattern at its stream offset; delivered + reported missing never exceeds what was sent past
// the start.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use l7decode::Timestamp;
    use l7decode::reassembly::{Event, ReassemblyConfig, Reassembler, TcpFlags};
    let pattern = |offset: u64| (offset.wrapping_mul(31) % 251) as u8;
    let config = ReassemblyConfig::default().max_buffered(4096).max_segments(16);
    let mut r = Reassembler::new(config);
    let isn: u32 = 0xFFFF_FF00; // close to the wrap, on purpose
    let mut delivered = 0u64;
    let check_events = |events: l7decode::reassembly::Delivered<'_>, delivered: &mut u64| {
        for event in events {
            match event {
                Event::Data { bytes, .. } => {
                    for (i, b) in bytes.iter().enumerate() {
                        assert_eq!(*b, pattern(*delivered + i as u64), "byte at {}", *delivered + i as u64);
                    }
                    *delivered += bytes.len() as u64;
                }
                Event::Gap { missing, .. } => *delivered += missing,
                _ => {}
            }
        }
    };
    let mut first = true;
    for record in data.chunks(6) {
        let [a, b, c, flag_byte, cut, len] = record else { break };
        let offset = u32::from_le_bytes([*a, *b, *c, 0]) % 8192;
        let len = usize::from(*len);
        let payload: Vec<u8> = (0..len).map(|i| pattern(u64::from(offset) + i as u64)).collect();
        let mut flags = TcpFlags(flag_byte & (TcpFlags::FIN.0 | TcpFlags::RST.0));
        if first {
            // The stream starts at offset 0 with a SYN, so offsets map to pattern positions.
            flags = TcpFlags::SYN;
            first = false;
            let events = r.segment(Timestamp(0), isn.wrapping_sub(1), flags, &[]);
            check_events(events, &mut delivered);
            flags = TcpFlags::NONE;
        }
        let seq = isn.wrapping_add(offset);
        if *flag_byte & 0x80 != 0 {
            let acked = seq.wrapping_add(len as u32);
            check_events(r.acknowledged(Timestamp(1), acked), &mut delivered);
            continue;
        }
        let cut = usize::from(*cut % 64).min(payload.len());
        let kept = payload.get(..payload.len() - cut).unwrap_or_default();
        let events = r.truncated_segment(Timestamp(1), seq, flags, kept, cut as u32);
        check_events(events, &mut delivered);
        assert!(r.bytes_held() <= 4096 + 256, "held {}", r.bytes_held());
    }
    let events = r.flush(Timestamp(2));
    check_events(events, &mut delivered);
}
