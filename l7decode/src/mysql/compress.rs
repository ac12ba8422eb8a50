//! The compressed protocol (CLIENT_COMPRESS) as a stream layer under the packet framer: frames of
//! `comp_len:u24 comp_seq:u8 uncomp_len:u24` + payload, each zlib-compressed on its own, or stored
//! as is when `uncomp_len` is 0. Frames are not aligned with MySQL packets, so the inflated bytes
//! are handed on as a plain stream. Memory is one inflate state and a fixed output buffer,
//! whatever the frame size.

#![deny(clippy::indexing_slicing)]

use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

const OUT: usize = 16 << 10;

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

    state: Box<InflateState>,
    out: Box<[u8]>,
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
            state: InflateState::new_boxed(DataFormat::Zlib),
            out: vec![0; OUT].into_boxed_slice(),
        }
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
                        self.state.reset(DataFormat::Zlib);
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
            let result = inflate(&mut self.state, frame, &mut self.out, MZFlush::None);
            frame = frame.get(result.bytes_consumed..).unwrap_or_default();
            // Everything inflated before a bad byte is handed on, then the frame is given up:
            // the same plain bytes come out however the compressed ones were chunked.
            let room = self.plain_len.saturating_sub(self.produced) as usize;
            let written = result.bytes_written.min(room);
            let overflow = result.bytes_written > room;
            self.produced = self.produced.saturating_add(written as u32);
            if written > 0 {
                let fresh = core::mem::take(&mut self.fresh);
                if !sink(Piece::Plain(
                    self.out.get(..written).unwrap_or_default(),
                    fresh,
                )) {
                    self.break_frame(sink);
                    return;
                }
            }
            match result.status {
                _ if overflow => {
                    self.corrupt(sink);
                    return;
                }
                Ok(MZStatus::StreamEnd) => return,
                Ok(_) if frame.is_empty() && written < self.out.len() => return,
                Ok(_) => {}
                // No progress possible: more input is needed.
                Err(MZError::Buf) => return,
                Err(_) => {
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
