//! The compressed protocol (CLIENT_COMPRESS) as a stream layer under the packet framer: frames of
//! `comp_len:u24 comp_seq:u8 uncomp_len:u24` + payload, each zlib-compressed on its own, or stored
//! as is when `uncomp_len` is 0. Frames are not aligned with MySQL packets, so the inflated bytes
//! are handed on as a plain stream. Memory is one decompressor and its 32 KiB window, whatever
//! the frame size.
//!
//! The window is the output buffer: each step's bytes are handed on from it as they are
//! decoded, before the step's status is looked at. (A streaming inflate with an output buffer
//! of its own keeps decoded bytes that did not fit back, and drops them if the same step then
//! meets a bad byte; how many depends on how much input the step was given, so the plain bytes
//! handed on before a corrupt frame, and the count of those skipped after them, would depend on
//! how the compressed bytes were chunked.)

#![deny(clippy::indexing_slicing)]

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_COMPUTE_ADLER32, TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_PARSE_ZLIB_HEADER,
};
use miniz_oxide::inflate::core::{DecompressorOxide, TINFL_LZ_DICT_SIZE, decompress};

/// A zlib stream with more input to come, decoded into a wrapping window.
const FLAGS: u32 =
    TINFL_FLAG_PARSE_ZLIB_HEADER | TINFL_FLAG_COMPUTE_ADLER32 | TINFL_FLAG_HAS_MORE_INPUT;

/// What the compressed layer hands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Plain bytes, and whether they start a frame.
    Plain(&'a [u8], bool),
    /// The current frame did not inflate to its announced length: the plain stream has a hole
    /// of unknown shape. Its remaining compressed bytes are skipped; the next frame is read.
    Corrupt,
    /// Plain bytes of the current frame that will not be produced (it was given up on).
    Skipped(u64),
}

/// One direction's compressed framing. See the module docs.
pub(crate) struct Inflate {
    header: [u8; 7],
    header_len: usize,
    /// Compressed bytes left in the current frame.
    left: u32,
    /// Its uncompressed length (0: stored).
    plain_len: u32,
    /// Plain bytes produced for the current frame so far.
    produced: u32,
    /// The rest of the current frame is skipped (a gap broke its inflate state, or the packet
    /// layer gave up on it).
    broken: bool,
    /// No plain byte of the current frame was handed on yet.
    fresh: bool,

    decomp: Box<DecompressorOxide>,
    /// The decompressor's window (a power of two, used circularly), where its output lands.
    window: Box<[u8]>,
    /// Where the next decoded byte goes in `window`.
    at: usize,
}

impl core::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflate")
            .field("left", &self.left)
            .field("plain_len", &self.plain_len)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl Inflate {
    /// At a frame boundary.
    pub(crate) fn new() -> Self {
        Self {
            header: [0; 7],
            header_len: 0,
            left: 0,
            plain_len: 0,
            produced: 0,
            broken: false,
            fresh: false,
            decomp: Box::default(),
            window: vec![0; TINFL_LZ_DICT_SIZE].into_boxed_slice(),
            at: 0,
        }
    }

    /// Heap bytes held: the decompressor and its window.
    pub(crate) fn heap_bytes(&self) -> usize {
        size_of::<Self>() + size_of::<DecompressorOxide>() + self.window.len()
    }

    /// Feeds compressed bytes, handing each piece of the plain stream to `sink`. `sink` returns
    /// `false` to skip the rest of the current frame (the plain bytes it will not produce are
    /// then handed on as [`Piece::Skipped`], at once); frames after it are read as usual, so
    /// frame sync survives whatever the packets inside them do.
    pub(crate) fn feed(&mut self, mut input: &[u8], mut sink: impl FnMut(Piece<'_>) -> bool) {
        while !input.is_empty() {
            if self.header_len < 7 {
                let take = (7 - self.header_len).min(input.len());
                for (slot, byte) in self.header.iter_mut().skip(self.header_len).zip(input) {
                    *slot = *byte;
                }
                self.header_len += take;
                input = input.get(take..).unwrap_or_default();
                if self.header_len == 7 {
                    let [c0, c1, c2, _seq, u0, u1, u2] = self.header;
                    self.left = u32::from_le_bytes([c0, c1, c2, 0]);
                    self.plain_len = u32::from_le_bytes([u0, u1, u2, 0]);
                    self.produced = 0;
                    self.broken = false;
                    self.fresh = true;
                    if self.plain_len > 0 {
                        // A fresh stream: a distance reaching before its start reads zeros, not
                        // what earlier frames left (how much of a frame given up on was decoded
                        // depends on chunking).
                        self.decomp.init();
                        self.window.fill(0);
                        self.at = 0;
                    }
                    self.end_frame_if_done(&mut sink);
                }
                continue;
            }
            let take = input.len().min(self.left as usize);
            let (frame, rest) = input.split_at(take);
            input = rest;
            self.left -= take as u32;
            if self.broken {
                // Skipped: its plain bytes were counted when it broke.
            } else if self.plain_len == 0 {
                let fresh = core::mem::take(&mut self.fresh);
                self.produced = self.produced.saturating_add(frame.len() as u32);
                if !sink(Piece::Plain(frame, fresh)) {
                    self.break_frame(&mut sink);
                }
            } else {
                self.inflate_into(frame, &mut sink);
            }
            self.end_frame_if_done(&mut sink);
        }
    }

    /// The rest of the current frame is skipped; its plain bytes not yet produced are counted.
    fn break_frame(&mut self, sink: &mut impl FnMut(Piece<'_>) -> bool) {
        self.broken = true;
        let total = if self.plain_len == 0 {
            self.produced.saturating_add(self.left)
        } else {
            self.plain_len
        };
        let _ = sink(Piece::Skipped(u64::from(
            total.saturating_sub(self.produced),
        )));
    }

    fn inflate_into(&mut self, mut frame: &[u8], sink: &mut impl FnMut(Piece<'_>) -> bool) {
        loop {
            let at = self.at;
            let (status, consumed, written) =
                decompress(&mut self.decomp, frame, &mut self.window, at, FLAGS);
            frame = frame.get(consumed..).unwrap_or_default();
            self.at = (at + written) & (TINFL_LZ_DICT_SIZE - 1);
            // Everything decoded before a bad byte is handed on, then the frame is given up:
            // the same plain bytes come out however the compressed ones were chunked.
            let room = self.plain_len.saturating_sub(self.produced) as usize;
            let kept = written.min(room);
            let overflow = written > room;
            self.produced = self.produced.saturating_add(kept as u32);
            if kept > 0 {
                let fresh = core::mem::take(&mut self.fresh);
                let plain = self.window.get(at..at + kept).unwrap_or_default();
                if !sink(Piece::Plain(plain, fresh)) {
                    self.break_frame(sink);
                    return;
                }
            }
            match status {
                _ if overflow => {
                    self.corrupt(sink);
                    return;
                }
                // The window's end was reached: decoding goes on at its start.
                TINFLStatus::HasMoreOutput if consumed > 0 || written > 0 => {}
                // The stream ended (what follows in the frame is ignored), or more input is
                // needed (with more input announced, "cannot make progress" means the same).
                TINFLStatus::Done
                | TINFLStatus::NeedsMoreInput
                | TINFLStatus::FailedCannotMakeProgress
                | TINFLStatus::HasMoreOutput => return,
                _ => {
                    self.corrupt(sink);
                    return;
                }
            }
        }
    }

    /// The current frame cannot be inflated: the packet layer is told, the rest is skipped.
    fn corrupt(&mut self, sink: &mut impl FnMut(Piece<'_>) -> bool) {
        self.produced = self.produced.min(self.plain_len);
        let _ = sink(Piece::Corrupt);
        self.break_frame(sink);
    }

    fn end_frame_if_done(&mut self, sink: &mut impl FnMut(Piece<'_>) -> bool) {
        if self.left > 0 {
            return;
        }
        self.header_len = 0;
        if self.plain_len > 0 && !self.broken && self.produced != self.plain_len {
            self.corrupt(sink);
        }
    }

    /// `missing` compressed bytes were lost. Inside a frame, the plain bytes it can no longer
    /// produce are returned (to be reported missing to the packet layer) and the rest of the
    /// frame is skipped, keeping sync at the next frame; elsewhere `None`: sync is lost.
    pub(crate) fn gap(&mut self, missing: u64) -> Option<u64> {
        if self.header_len < 7 || missing > u64::from(self.left) {
            return None;
        }
        self.left -= missing as u32;
        let plain = if self.plain_len == 0 {
            missing
        } else if self.broken {
            0
        } else {
            self.broken = true;
            u64::from(self.plain_len - self.produced)
        };
        if self.left == 0 {
            self.header_len = 0;
        }
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(plain: &[u8], compress: bool) -> Vec<u8> {
        let body = if compress {
            miniz_oxide::deflate::compress_to_vec_zlib(plain, 6)
        } else {
            plain.to_vec()
        };
        let mut out = (body.len() as u32).to_le_bytes()[..3].to_vec();
        out.push(0);
        let announced = if compress { plain.len() as u32 } else { 0 };
        out.extend_from_slice(&announced.to_le_bytes()[..3]);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn stored_and_compressed_frames_in_any_chunking() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8 + b'a').collect();
        let mut stream = frame(b"hello ", false);
        stream.extend(frame(&big, true));
        stream.extend(frame(b" bye", false));
        let mut expected = b"hello ".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b" bye");
        for chunk in [1, 3, 100, 5000, usize::MAX] {
            let mut z = Inflate::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk.min(stream.len())) {
                z.feed(piece, |p| {
                    if let Piece::Plain(plain, _) = p {
                        got.extend_from_slice(plain);
                    }
                    true
                });
            }
            assert_eq!(got, expected, "chunks of {chunk}");
        }
    }

    /// Plain bytes handed on, then what came instead, for `stream` fed in `chunk`-byte pieces.
    fn outcome(stream: &[u8], chunk: usize) -> (Vec<u8>, Vec<String>) {
        let mut z = Inflate::new();
        let (mut plain, mut other) = (Vec::new(), Vec::new());
        for piece in stream.chunks(chunk.min(stream.len())) {
            z.feed(piece, |p| {
                match p {
                    Piece::Plain(bytes, _) => plain.extend_from_slice(bytes),
                    Piece::Corrupt => other.push("corrupt".to_owned()),
                    Piece::Skipped(n) => other.push(format!("skipped {n}")),
                }
                true
            });
        }
        (plain, other)
    }

    #[test]
    fn bytes_decoded_before_a_bad_one_come_out_in_any_chunking() {
        // Highly compressible, so one step decodes more than 16 KiB.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        // A bad checksum: every byte decodes, then the frame is corrupt.
        let mut checksum = frame(&big, true);
        if let Some(last) = checksum.last_mut() {
            *last ^= 1;
        }
        // Stored deflate blocks, the second one's length check broken: the first block's bytes
        // come out, then the frame is corrupt.
        let body = miniz_oxide::deflate::compress_to_vec_zlib(&big, 0);
        let mut stored = (body.len() as u32).to_le_bytes()[..3].to_vec();
        stored.push(0);
        stored.extend_from_slice(&(big.len() as u32).to_le_bytes()[..3]);
        stored.extend_from_slice(&body);
        // Each stored block: a header byte, LEN, NLEN, then LEN bytes.
        let first_len = usize::from(u16::from_le_bytes([body[3], body[4]]));
        assert!(first_len > 16 << 10 && first_len < big.len());
        stored[7 + 2 + 5 + first_len + 3] ^= 0xff;
        for (stream, plain_len) in [(checksum, big.len()), (stored, first_len)] {
            let whole = outcome(&stream, usize::MAX);
            assert_eq!(whole.0.len(), plain_len);
            assert_eq!(whole.0[..], big[..plain_len]);
            assert_eq!(
                whole.1,
                [
                    "corrupt".to_owned(),
                    format!("skipped {}", big.len() - plain_len)
                ]
            );
            for chunk in [1, 13, 1000] {
                assert_eq!(outcome(&stream, chunk), whole, "chunks of {chunk}");
            }
        }
    }

    #[test]
    fn a_gap_skips_the_rest_of_its_frame_and_reports_its_plain_bytes() {
        let mut stream = frame(&[b'x'; 3000], true);
        let cut = 10;
        let tail = stream.split_off(7 + cut);
        let mut z = Inflate::new();
        let mut got = 0;
        z.feed(&stream, |p| {
            if let Piece::Plain(plain, _) = p {
                got += plain.len();
            }
            true
        });
        let lost = z.gap(5).unwrap();
        assert_eq!(got as u64 + lost, 3000);
        let mut next = tail[5..].to_vec();
        next.extend(frame(b"ok", false));
        let mut after = Vec::new();
        z.feed(&next, |p| {
            if let Piece::Plain(plain, _) = p {
                after.extend_from_slice(plain);
            }
            true
        });
        assert_eq!(after, b"ok");
        assert_eq!(Inflate::new().gap(1), None);
    }

    #[test]
    fn garbage_is_corrupt_and_the_next_frame_is_read() {
        let mut z = Inflate::new();
        let mut stream = vec![5, 0, 0, 0, 100, 0, 0, 1, 2, 3, 4, 5];
        stream.extend(frame(b"next", false));
        let mut seen = Vec::new();
        z.feed(&stream, |p| {
            seen.push(match p {
                Piece::Plain(plain, fresh) => format!("{plain:?} {fresh}"),
                Piece::Corrupt => "corrupt".to_owned(),
                Piece::Skipped(n) => format!("skipped {n}"),
            });
            true
        });
        assert_eq!(
            seen,
            ["corrupt", "skipped 100", "[110, 101, 120, 116] true"]
        );
    }
}
