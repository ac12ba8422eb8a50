//! A streaming scanner for chunked bodies: it counts body bytes and finds the end of the
//! message without copying data; only a size or trailer line cut by a segment boundary is kept
//! (bounded).
#![deny(clippy::indexing_slicing)]

use crate::Status;
use crate::error::{Error, ErrorKind};

/// Longest chunk-size or trailer line kept across feeds.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a `size[;ext]` line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// The CRLF after chunk data (bytes of it seen so far).
    DataEnd(u8),
    /// Trailer lines after the last chunk; `true` once a line had content.
    Trailer,
    /// The message ended.
    Done,
}

/// Scans one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    line: [u8; MAX_LINE],
    line_len: usize,
    /// Decoded body bytes so far.
    pub body_bytes: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self {
            state: State::Size,
            line: [0; MAX_LINE],
            line_len: 0,
            body_bytes: 0,
        }
    }
}

impl ChunkedScanner {
    /// Whether the terminating chunk and trailers were seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds body bytes: [`Status::Complete`] when the body ended after `consumed` bytes of
    /// `input` (the rest is not the body's), [`Status::Partial`] when all of `input` belongs to
    /// the body, whose state the scanner keeps, and more is needed.
    ///
    /// # Errors
    /// [`ErrorKind::Malformed`] for a bad or over-long size line, or a missing CRLF after data.
    /// Its offset (into `input`) is where the body stopped making sense: the bad byte, the first
    /// byte past the line limit, or the end of an unparsable line; the same stream position
    /// however the body was chunked.
    pub fn scan(&mut self, input: &[u8]) -> Result<Status<()>, Error> {
        let mut at = 0;
        while at < input.len() {
            let rest = input.get(at..).unwrap_or_default();
            match self.state {
                State::Done => {
                    return Ok(Status::Complete {
                        value: (),
                        consumed: at,
                    });
                }
                State::Data(left) => {
                    let take = (rest.len() as u64).min(left) as usize;
                    self.body_bytes += take as u64;
                    at += take;
                    self.state = if left == take as u64 {
                        State::DataEnd(0)
                    } else {
                        State::Data(left - take as u64)
                    };
                }
                State::DataEnd(seen) => {
                    let expected = if seen == 0 { b'\r' } else { b'\n' };
                    match rest.first() {
                        Some(&b) if b == expected => {
                            at += 1;
                            self.state = if seen == 0 {
                                State::DataEnd(1)
                            } else {
                                State::Size
                            };
                        }
                        // A bare LF is tolerated.
                        Some(b'\n') if seen == 0 => {
                            at += 1;
                            self.state = State::Size;
                        }
                        _ => return Err(Error::new(ErrorKind::Malformed, at as u64)),
                    }
                }
                State::Size | State::Trailer => {
                    // Errors point at a stream position that does not depend on chunking: the
                    // first byte past the line limit, or the end of a line that does not parse.
                    let nl = rest.iter().position(|b| *b == b'\n');
                    let room = MAX_LINE.saturating_sub(self.line_len);
                    if nl.unwrap_or(rest.len()) > room {
                        return Err(Error::new(ErrorKind::Malformed, (at + room) as u64));
                    }
                    let Some(nl) = nl else {
                        self.keep(rest);
                        return Ok(Status::Partial { needed: None });
                    };
                    let line = self.complete_line(rest.get(..nl).unwrap_or_default());
                    at += nl + 1;
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.on_line(line)
                        .map_err(|e| Error::new(e.kind(), at as u64))?;
                }
            }
        }
        Ok(if self.state == State::Done {
            Status::Complete {
                value: (),
                consumed: at,
            }
        } else {
            Status::Partial { needed: None }
        })
    }

    /// Keeps a line's prefix; the caller checked it fits.
    fn keep(&mut self, part: &[u8]) {
        if let Some(dst) = self.line.get_mut(self.line_len..self.line_len + part.len()) {
            dst.copy_from_slice(part);
            self.line_len += part.len();
        }
    }

    /// The whole line: the kept prefix plus `tail` (copied only when a prefix was kept).
    fn complete_line(&mut self, tail: &[u8]) -> LineBuf {
        let mut out = LineBuf {
            bytes: [0; 64],
            len: 0,
        };
        let kept = self.line.get(..self.line_len).unwrap_or_default();
        for &b in kept.iter().chain(tail) {
            if let Some(slot) = out.bytes.get_mut(out.len) {
                *slot = b;
                out.len += 1;
            }
        }
        self.line_len = 0;
        out
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), Error> {
        match self.state {
            State::Size => {
                // `size[;ext]`: extensions and whitespace after the size are ignored.
                let digits: &[u8] = line
                    .split(|b| *b == b';' || *b == b' ' || *b == b'\t')
                    .next()
                    .unwrap_or_default();
                if digits.is_empty() || digits.len() > 16 {
                    return Err(Error::new(ErrorKind::Malformed, 0));
                }
                let size = digits.iter().try_fold(0u64, |acc, b| {
                    Some(acc * 16 + u64::from((*b as char).to_digit(16)?))
                });
                let size = size.ok_or(Error::new(ErrorKind::Malformed, 0))?;
                self.state = if size == 0 {
                    State::Trailer
                } else {
                    State::Data(size)
                };
            }
            State::Trailer if line.is_empty() => self.state = State::Done,
            _ => {} // a trailer field: skipped
        }
        Ok(())
    }
}

/// A line assembled from a kept prefix and the current input; only its first 64 bytes are kept:
/// a size line's digits come first, and a trailer line is only checked for emptiness.
struct LineBuf {
    bytes: [u8; 64],
    len: usize,
}

impl core::ops::Deref for LineBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}
