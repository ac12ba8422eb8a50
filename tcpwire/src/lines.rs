//! Line framing over arbitrary chunks with a bounded carry, shared by every streaming reader.
#![deny(clippy::indexing_slicing)]

/// One line of the stream, without its newline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    /// The line's bytes; empty when `overlong` (they were not kept).
    pub(crate) bytes: &'a [u8],
    /// Stream offset of the line's first byte.
    pub(crate) offset: u64,
    /// Longer than the limit: its bytes were dropped, only its position is known.
    pub(crate) overlong: bool,
}

/// Cuts a byte stream into lines. A line that fits in the caller's chunk is borrowed from it; a
/// line that straddles chunks is gathered in a carry buffer of at most `max_line` bytes.
#[derive(Debug)]
pub(crate) struct LineAssembler {
    max_line: usize,
    /// Partial line carried from earlier chunks.
    pending: Vec<u8>,
    pending_offset: u64,
    pending_overlong: bool,
    /// The carried line completed by the current chunk (read while iterating it).
    joined: Vec<u8>,
    /// Bytes fed so far: the stream offset of the next chunk.
    fed: u64,
}

impl LineAssembler {
    pub(crate) const fn new(max_line: usize) -> Self {
        Self {
            max_line,
            pending: Vec::new(),
            pending_offset: 0,
            pending_overlong: false,
            joined: Vec::new(),
            fed: 0,
        }
    }

    /// Bytes held over from earlier chunks (a partial line).
    pub(crate) const fn carried(&self) -> usize {
        self.pending.len()
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.pending_overlong
    }

    /// Adds bytes without a newline to the partial line, dropping them once it is overlong.
    fn carry(&mut self, bytes: &[u8], offset: u64) {
        if bytes.is_empty() || self.pending_overlong {
            return;
        }
        if self.pending.is_empty() {
            self.pending_offset = offset;
        }
        if self.pending.len() + bytes.len() > self.max_line {
            self.pending_overlong = true;
            self.pending.clear();
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Moves the partial line into `joined`, extended by `head`, and returns its description.
    fn complete_pending(&mut self, head: &[u8]) -> (u64, bool) {
        let overlong = self.pending_overlong || self.pending.len() + head.len() > self.max_line;
        self.joined.clear();
        if !overlong {
            self.joined.extend_from_slice(&self.pending);
            self.joined.extend_from_slice(head);
        }
        self.pending.clear();
        self.pending_overlong = false;
        (self.pending_offset, overlong)
    }

    /// Takes one chunk and returns the lines it completes. Its unterminated tail is carried.
    pub(crate) fn feed<'a>(&'a mut self, chunk: &'a [u8]) -> Lines<'a> {
        let base = self.fed;
        self.fed += chunk.len() as u64;
        let (Some(first_nl), Some(last_nl)) =
            (memchr::memchr(b'\n', chunk), memchr::memrchr(b'\n', chunk))
        else {
            self.carry(chunk, base);
            return Lines {
                first: None,
                body: &[],
                base,
                max_line: self.max_line,
            };
        };
        let mut first = None;
        let mut body_start = 0;
        if self.has_pending() {
            let (offset, overlong) =
                self.complete_pending(chunk.get(..first_nl).unwrap_or_default());
            first = Some((offset, overlong));
            body_start = first_nl + 1;
        }
        self.carry(
            chunk.get(last_nl + 1..).unwrap_or_default(),
            base + last_nl as u64 + 1,
        );
        let first = first.map(|(offset, overlong)| Line {
            bytes: if overlong { &[] } else { &self.joined },
            offset,
            overlong,
        });
        Lines {
            first,
            body: chunk.get(body_start..=last_nl).unwrap_or_default(),
            base: base + body_start as u64,
            max_line: self.max_line,
        }
    }

    /// Ends the stream: the partial line, if any, is returned as the last line.
    pub(crate) fn finish(&mut self) -> Option<Line<'_>> {
        if !self.has_pending() {
            return None;
        }
        let (offset, overlong) = self.complete_pending(&[]);
        Some(Line {
            bytes: if overlong { &[] } else { &self.joined },
            offset,
            overlong,
        })
    }
}

/// The complete lines of one chunk, in order.
#[derive(Debug)]
pub(crate) struct Lines<'a> {
    /// The line completed from the carry, if any; it comes before `body`.
    pub(crate) first: Option<Line<'a>>,
    /// Whole lines, each ending in `\n`, borrowed from the chunk.
    pub(crate) body: &'a [u8],
    /// Stream offset of `body[0]`.
    pub(crate) base: u64,
    pub(crate) max_line: usize,
}

impl Lines<'_> {
    /// Moves past the first `n` bytes of `body` (a line its caller read itself).
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.body = self.body.get(n..).unwrap_or_default();
        self.base += n as u64;
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let nl = memchr::memchr(b'\n', self.body)?;
        let bytes = self.body.get(..nl).unwrap_or_default();
        let line = Line {
            bytes,
            offset: self.base,
            overlong: bytes.len() > self.max_line,
        };
        self.body = self.body.get(nl + 1..).unwrap_or_default();
        self.base += nl as u64 + 1;
        Some(if line.overlong {
            Line { bytes: &[], ..line }
        } else {
            line
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize, chunks: &[&[u8]]) -> Vec<(Vec<u8>, u64, bool)> {
        assert_eq!(chunks.concat(), input);
        let mut asm = LineAssembler::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(
                asm.feed(chunk)
                    .map(|l| (l.bytes.to_vec(), l.offset, l.overlong)),
            );
        }
        out.extend(
            asm.finish()
                .map(|l| (l.bytes.to_vec(), l.offset, l.overlong)),
        );
        out
    }

    #[test]
    fn lines_are_the_same_in_any_chunking() {
        let input = b"ab\n\nlong-line-here\ncd\nunterminated";
        let lines = collect(input, 8, &[input]);
        // Every split into two or three chunks, and one byte at a time (no testkit here: unit
        // tests also run in the published package, where the workspace's dev-crates are absent).
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let chunks = [&input[..i], &input[i..j], &input[j..]];
                assert_eq!(collect(input, 8, &chunks), lines, "split at {i} and {j}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(collect(input, 8, &bytes), lines, "1-byte chunks");
        assert_eq!(lines[0], (b"ab".to_vec(), 0, false));
        assert_eq!(lines[1], (b"".to_vec(), 3, false));
        assert_eq!(lines[2], (b"".to_vec(), 4, true));
        assert_eq!(lines[3], (b"cd".to_vec(), 19, false));
        assert_eq!(lines[4], (b"".to_vec(), 22, true));
    }

    #[test]
    fn the_carry_never_exceeds_the_limit() {
        let mut asm = LineAssembler::new(16);
        for _ in 0..1000 {
            assert_eq!(asm.feed(&[b'x'; 100]).count(), 0);
            assert!(asm.carried() <= 16);
        }
        let last: Vec<_> = asm
            .feed(b"\nok\n")
            .map(|l| (l.overlong, l.offset))
            .collect();
        assert_eq!(last, vec![(true, 0), (false, 100_001)]);
    }
}
