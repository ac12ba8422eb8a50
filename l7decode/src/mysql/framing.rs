//! One direction's byte stream cut into MySQL packets (`len:u24le seq:u8 payload`), with packets
//! of 0xFFFFFF bytes joined to the next into one logical payload (a payload that is an exact
//! multiple of 0xFFFFFF ends with an empty packet). Payloads are never buffered whole: the first
//! `keep` bytes are kept for parsing, the rest only counted, so memory is bounded whatever the
//! payload size.

#![deny(clippy::indexing_slicing)]

use crate::Timestamp;

/// The longest physical packet payload; one this long continues in the next packet.
pub const MAX_PACKET: u32 = 0xFF_FFFF;

/// A logical payload, once complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Payload<'a> {
    /// Sequence id of its first packet.
    pub(crate) seq: u8,
    /// Its length (all packets joined, headers excluded).
    pub(crate) len: u64,
    /// Its first bytes (at most the framer's `keep`, and none past a gap).
    pub(crate) prefix: &'a [u8],
    /// When its first header byte arrived.
    pub(crate) first: Timestamp,
    /// When its last byte arrived.
    pub(crate) last: Timestamp,
    /// Bytes inside it were lost (skipped by a gap).
    pub(crate) gap: bool,
}

/// What [`Framer::gap`] did with lost bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapOutcome {
    /// They fell inside the current packet: skipped, still in sync.
    Skipped,
    /// They ended the current payload, which is now complete.
    Completed,
    /// They were not inside a known packet: sync is lost.
    Lost,
}

/// Cuts one direction into logical payloads. See the module docs.
#[derive(Debug)]
pub(crate) struct Framer {
    keep: usize,
    header: [u8; 4],
    header_len: usize,
    header_first: Timestamp,
    /// Payload bytes left in the current physical packet (once its header is read).
    left: u32,
    /// The current physical packet is `MAX_PACKET` long: the payload continues.
    more: bool,
    /// The logical payload being built.
    building: bool,
    seq: u8,
    len: u64,
    first: Timestamp,
    last: Timestamp,
    gap: bool,
    prefix: Vec<u8>,
    /// The last step completed a payload; it is cleared at the next step.
    complete: bool,
    /// Sequence id of the last complete header: where the packets after a loss must continue
    /// from (kept across [`Framer::reset`], which a loss calls).
    last_seq: Option<u8>,
}

impl Framer {
    /// A framer at a packet boundary, keeping the first `keep` bytes of each payload.
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            keep,
            header: [0; 4],
            header_len: 0,
            header_first: Timestamp(0),
            left: 0,
            more: false,
            building: false,
            seq: 0,
            len: 0,
            first: Timestamp(0),
            last: Timestamp(0),
            gap: false,
            prefix: Vec::new(),
            complete: false,
            last_seq: None,
        }
    }

    /// Back to a packet boundary, dropping anything partial.
    pub(crate) fn reset(&mut self) {
        self.header_len = 0;
        self.left = 0;
        self.more = false;
        self.building = false;
        self.complete = false;
        self.prefix.clear();
    }

    /// Heap bytes held (the kept prefix's allocation).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.prefix.capacity()
    }

    /// Bytes of an unfinished payload read so far (0 at a boundary or after a completed one).
    pub(crate) const fn partial_len(&self) -> u64 {
        let payload = if self.building && !self.complete {
            self.len
        } else {
            0
        };
        payload + self.header_len as u64
    }

    /// Sequence id of the last packet header read, if any.
    pub(crate) const fn last_seq(&self) -> Option<u8> {
        self.last_seq
    }

    /// Consumes a prefix of `input`; returns its length and whether a payload completed (read it
    /// with [`Framer::payload`] before the next step).
    pub(crate) fn step(&mut self, now: Timestamp, input: &[u8]) -> (usize, bool) {
        if self.complete {
            self.complete = false;
            self.building = false;
            self.prefix.clear();
        }
        if self.header_len < 4 {
            if self.header_len == 0 {
                self.header_first = now;
            }
            let take = (4 - self.header_len).min(input.len());
            for (slot, byte) in self
                .header
                .iter_mut()
                .skip(self.header_len)
                .zip(input.iter().take(take))
            {
                *slot = *byte;
            }
            self.header_len += take;
            if self.header_len < 4 {
                return (take, false);
            }
            let [l0, l1, l2, seq] = self.header;
            let len = u32::from_le_bytes([l0, l1, l2, 0]);
            self.last_seq = Some(seq);
            if !self.building {
                self.building = true;
                self.seq = seq;
                self.len = 0;
                self.first = self.header_first;
                self.gap = false;
            }
            self.last = now;
            self.left = len;
            self.more = len == MAX_PACKET;
            if len == 0 {
                self.header_len = 0;
                self.complete = !self.more;
                return (take, self.complete);
            }
            return (take, false);
        }
        let take = input.len().min(self.left as usize);
        // The kept prefix is contiguous: after a gap nothing more is kept.
        let room = if self.gap {
            0
        } else {
            self.keep.saturating_sub(self.prefix.len()).min(take)
        };
        self.prefix
            .extend_from_slice(input.get(..room).unwrap_or_default());
        self.len += take as u64;
        self.left -= take as u32;
        self.last = now;
        if self.left == 0 {
            self.header_len = 0;
            self.complete = !self.more;
        }
        (take, self.complete)
    }

    /// The payload the last step completed.
    pub(crate) fn payload(&self) -> Payload<'_> {
        Payload {
            seq: self.seq,
            len: self.len,
            prefix: &self.prefix,
            first: self.first,
            last: self.last,
            gap: self.gap,
        }
    }

    /// `missing` bytes lost by the capture at the current position.
    pub(crate) fn gap(&mut self, now: Timestamp, missing: u64) -> GapOutcome {
        if self.complete {
            self.complete = false;
            self.building = false;
            self.prefix.clear();
        }
        if self.header_len < 4 || missing > u64::from(self.left) {
            self.reset();
            return GapOutcome::Lost;
        }
        self.left -= missing as u32;
        self.len += missing;
        self.gap = true;
        self.last = now;
        if self.left > 0 {
            return GapOutcome::Skipped;
        }
        self.header_len = 0;
        if self.more {
            GapOutcome::Skipped
        } else {
            self.complete = true;
            GapOutcome::Completed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(stream: &[u8], chunk: usize) -> Vec<(u8, u64, Vec<u8>)> {
        let mut f = Framer::new(16);
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            let mut at = 0;
            while at < piece.len() {
                let (used, done) = f.step(Timestamp(0), &piece[at..]);
                at += used;
                if done {
                    let p = f.payload();
                    out.push((p.seq, p.len, p.prefix.to_vec()));
                }
            }
        }
        out
    }

    #[test]
    fn packets_and_empty_packets() {
        let stream = b"\x01\x00\x00\x00\x0e\x00\x00\x00\x01\x03\x00\x00\x02abc";
        for chunk in 1..stream.len() {
            assert_eq!(
                packets(stream, chunk),
                vec![(0, 1, vec![0x0e]), (1, 0, vec![]), (2, 3, b"abc".to_vec())]
            );
        }
    }

    #[test]
    fn a_payload_of_exactly_max_packet_ends_with_an_empty_packet() {
        let mut stream = vec![0xff, 0xff, 0xff, 0];
        stream.extend(std::iter::repeat_n(b'q', MAX_PACKET as usize));
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(&[1, 0, 0, 2, b'z']);
        let got = packets(&stream, 1 << 20);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1), (0, u64::from(MAX_PACKET)));
        assert_eq!(got[0].2, vec![b'q'; 16], "only the kept prefix is buffered");
        assert_eq!(got[1], (2, 1, b"z".to_vec()));
    }

    #[test]
    fn gaps_inside_a_packet_keep_sync_and_elsewhere_lose_it() {
        let mut f = Framer::new(8);
        assert_eq!(f.step(Timestamp(1), b"\x0a\x00\x00\x00abc"), (4, false));
        assert_eq!(f.step(Timestamp(1), b"abc"), (3, false));
        assert_eq!(f.gap(Timestamp(2), 4), GapOutcome::Skipped);
        assert_eq!(f.gap(Timestamp(3), 3), GapOutcome::Completed);
        let p = f.payload();
        assert_eq!(
            (p.len, p.gap, p.first, p.last),
            (10, true, Timestamp(1), Timestamp(3))
        );
        assert_eq!(f.gap(Timestamp(4), 1), GapOutcome::Lost);
        assert_eq!(f.partial_len(), 0);
    }
}
