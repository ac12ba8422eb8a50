//! Losing and regaining sync: mid-stream starts and resynchronisation, gathered heads that turn
//! out bad (re-read as if whole), heads cut short (kept as truncated records), and the accounting
//! of every byte skipped on the way (against the connection's recognition budget while its
//! protocol is not known).

#![deny(clippy::indexing_slicing)]

use std::collections::VecDeque;

use super::{Event, Flags, Message, Phase, Session, head_summary, parse_head};
use crate::http::head::{looks_like_request, looks_like_response, starts_message_mid_line};
use crate::{Direction, Protocol, Timestamp};

impl Session {
    /// Judges a head still being gathered in `dir` as if all its bytes had come in one chunk
    /// (the gather path parses only once the blank line arrives, to stay linear). Called before
    /// anything the other direction reports, so records do not depend on chunking.
    ///
    /// A bad head's bytes are read again, and may start another head that is gathered in turn
    /// (the bytes keep the feed calls they came in): it is judged too, until the head held, if
    /// any, could still be one, as when a single chunk is parsed in place. Each round skips at
    /// least a byte of what is held, so this ends.
    pub(crate) fn settle(&mut self, dir: Direction, now: Timestamp, out: &mut VecDeque<Event>) {
        loop {
            let half = self.half(dir);
            if !matches!(half.phase, Phase::Head)
                || half.buf.is_empty()
                || parse_head(dir, &half.buf).is_ok()
            {
                return;
            }
            let held = half.buf.len();
            self.reread_after_bad_head(dir, held);
            self.run(dir, now, &[], out);
        }
    }

    /// A gathered head (its first `held` bytes) turned out bad: skip its first byte and read the
    /// others again, each at the time it arrived, as if in the feed calls that brought them.
    pub(super) fn reread_after_bad_head(&mut self, dir: Direction, held: usize) {
        let half = self.half(dir);
        half.reread = half.buf.range(1, held);
        half.buf.clear();
        self.lose(dir);
        self.note_skipped(dir, 1);
    }

    /// From here on both directions are only counted (TLS, a tunnel). Bytes still held (a
    /// candidate start, an unfinished head) are counted as skipped, not dropped.
    pub(crate) fn go_opaque(&mut self) {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let held = self.half(dir).buf.len();
            self.note_skipped(dir, held);
            self.end_blank_lines(dir);
            let half = self.half(dir);
            half.buf.clear();
            half.current = None;
            if !matches!(half.phase, Phase::Closed) {
                half.phase = Phase::Opaque;
            }
        }
    }

    /// Skips to the next plausible message start: a request or status line at the beginning of
    /// a line, or, where a body ended without a newline, a stronger `METHOD /` or `HTTP/1.x NNN`
    /// anywhere. A candidate cut by the end of a chunk is held (13 bytes at most) until it can be
    /// judged, so the outcome does not depend on how the stream was chunked.
    pub(super) fn resync(
        &mut self,
        dir: Direction,
        now: Timestamp,
        input: &[u8],
        out: &mut VecDeque<Event>,
    ) -> usize {
        const PROBE: usize = 8;
        const MAX_PROBE: usize = 13;
        let request = dir == Direction::ClientToServer;
        // `None`: too few bytes to tell.
        let judge = |s: &[u8], line_start: bool| -> Option<bool> {
            let plausible = |s: &[u8]| {
                if request {
                    looks_like_request(s)
                } else {
                    looks_like_response(s)
                }
            };
            if !line_start {
                starts_message_mid_line(s, request)
            } else if let Some(probe) = s.get(..PROBE) {
                Some(plausible(probe))
            } else if plausible(s) {
                None
            } else {
                Some(false)
            }
        };
        let half = self.half(dir);
        let mut skipped = 0;
        if !half.buf.is_empty() {
            let held = half.buf.len();
            let take = MAX_PROBE.saturating_sub(held).min(input.len());
            half.buf.extend(input.get(..take).unwrap_or_default(), now);
            match judge(&half.buf, half.held_line_start) {
                Some(true) => {
                    // The held bytes start the head, which began when the first of them
                    // arrived: the head parser gathers from here.
                    let since = half.buf.first_time().unwrap_or(now);
                    half.phase = Phase::Head;
                    half.current = Some((Message::starting(since), false));
                    self.found_http(out);
                    return take;
                }
                None => return take,
                // Not a start after all: skip its first byte. The other held bytes hold no line
                // end, but may start a candidate ("PO" then "P": "OPTIONS /"), so they are read
                // again, before this chunk, each at the time it arrived.
                Some(false) => {
                    skipped += 1;
                    half.line_start = false;
                    let again = half.buf.range(1, held);
                    half.buf.clear();
                    if !again.is_empty() {
                        half.reread = again;
                        self.note_skipped(dir, skipped);
                        return 0;
                    }
                }
            }
        }
        // Before anything was recognised, a direction may skip only so much (unless hinted
        // HTTP); the scan stops at that bound as it would at a chunk's end, so where the
        // connection is given up does not depend on chunking.
        let budget = self
            .unrecognized_budget(dir)
            .map(|left| left.saturating_sub(skipped as u64));
        if budget == Some(0) {
            self.note_skipped(dir, skipped);
            self.stats.given_up += 1;
            self.give_up_recognising(out);
            return 0;
        }
        let input = budget.map_or(input, |left| {
            input
                .get(..usize::try_from(left).unwrap_or(usize::MAX))
                .unwrap_or(input)
        });
        let half = self.half(dir);
        let mut found = None;
        for i in 0..input.len() {
            let line_start = if i == 0 {
                half.line_start
            } else {
                input.get(i - 1) == Some(&b'\n')
            };
            let first = input.get(i).copied().unwrap_or_default();
            let can_start = if request {
                matches!(first, b'G' | b'P' | b'H' | b'D' | b'O' | b'C' | b'T')
            } else {
                first == b'H'
            };
            if !can_start {
                continue;
            }
            let rest = input.get(i..).unwrap_or_default();
            match judge(rest, line_start) {
                Some(true) => {
                    found = Some(i);
                    break;
                }
                Some(false) => {}
                None => {
                    // A candidate cut by the chunk's end: hold it.
                    skipped += i;
                    half.buf.extend(rest, now);
                    half.held_line_start = line_start;
                    self.note_skipped(dir, skipped);
                    return input.len();
                }
            }
        }
        let end = found.unwrap_or(input.len());
        skipped += end;
        half.line_start = if end == 0 {
            half.line_start
        } else {
            input.get(end - 1) == Some(&b'\n')
        };
        if found.is_some() {
            half.phase = Phase::Head;
        }
        // Skipped bytes are reported before what was found after them, in any chunking.
        self.note_skipped(dir, skipped);
        if found.is_some() {
            self.found_http(out);
        }
        end
    }

    /// Counts skipped bytes; they are reported as [`Event::Resynced`] just before the next record
    /// (or when the direction ends), so the events do not depend on how the stream was chunked.
    pub(super) fn note_skipped(&mut self, dir: Direction, skipped: usize) {
        let unrecognized = self.protocol.is_none();
        self.stats.skipped_bytes += skipped as u64;
        let half = self.half(dir);
        // Bytes between a short gap and the next request line: the gap may have begun a request.
        half.kept_place &= skipped == 0;
        half.skipped += skipped as u64;
        if unrecognized {
            half.unrecognized += skipped as u64;
        }
    }

    /// How many more bytes `dir` may skip (or pass over as empty lines) before the connection is
    /// given up as unrecognised; `None` once recognised, or when hinted HTTP.
    pub(super) fn unrecognized_budget(&mut self, dir: Direction) -> Option<u64> {
        if self.protocol.is_some() || self.hint == Some(Protocol::Http) {
            return None;
        }
        let max = self.max_unrecognized;
        Some(max.saturating_sub(self.half(dir).unrecognized))
    }

    /// Nothing recognisable came: the connection is reported as what its hint says when that is
    /// TLS (whose records, joined mid-stream, match nothing), else as unknown, and only counted
    /// from here on.
    pub(super) fn give_up_recognising(&mut self, out: &mut VecDeque<Event>) {
        let protocol = match self.hint {
            Some(Protocol::Tls) => Protocol::Tls,
            _ => Protocol::Unknown,
        };
        self.protocol = Some(protocol);
        // No request was read (one would have said HTTP): only places a gap kept for requests
        // it may have cut, which are not HTTP records of a connection that is not HTTP.
        self.drop_pending();
        out.push_back(Event::Protocol(protocol));
        self.go_opaque();
    }

    pub(super) fn report_skipped(&mut self, dir: Direction, out: &mut VecDeque<Event>) {
        let skipped = core::mem::take(&mut self.half(dir).skipped);
        if skipped > 0 {
            out.push_back(Event::Resynced {
                direction: dir,
                skipped,
            });
        }
    }

    pub(super) fn found_http(&mut self, out: &mut VecDeque<Event>) {
        if self.protocol.is_none() {
            self.protocol = Some(Protocol::Http);
            out.push_back(Event::Protocol(Protocol::Http));
        }
    }

    /// A head cut short (its direction ended, or for a request, the server answered before it
    /// ended, so the capture missed its end): its complete lines, closed by an empty line, make
    /// a message flagged truncated. The partial last line is counted as skipped.
    pub(super) fn salvage_head(&mut self, dir: Direction, out: &mut VecDeque<Event>) {
        let half = self.half(dir);
        if !matches!(half.phase, Phase::Head) {
            return;
        }
        let Some(cut) = half.buf.iter().rposition(|b| *b == b'\n').map(|i| i + 1) else {
            return;
        };
        let mut closed = half.buf.get(..cut).unwrap_or_default().to_vec();
        closed.extend_from_slice(b"\r\n");
        let Ok(crate::Status::Complete { value: head, .. }) = parse_head(dir, &closed) else {
            return;
        };
        let summary = head_summary(&head);
        let partial_line = half.buf.len() - cut;
        // The message's last byte is the one that ends its last complete line.
        let first = half.current.as_ref().map_or(Timestamp(0), |(m, _)| m.first);
        let last = half.buf.time_at(cut - 1).unwrap_or(first);
        let lines = half.buf.split_to(cut);
        half.buf.clear();
        self.note_skipped(dir, partial_line);
        self.on_head(dir, last, summary, lines, out);
        match dir {
            Direction::ClientToServer => {
                if let Some(p) = self.pending.back_mut() {
                    p.flags.truncated = true;
                }
            }
            Direction::ServerToClient => {
                if self.server.current.is_some() {
                    self.finish_response(
                        Flags {
                            truncated: true,
                            ..Flags::default()
                        },
                        out,
                    );
                    // Its body never came: nothing more belongs to this response.
                    self.server.phase = Phase::Head;
                } else if let Some(Event::Transaction(t)) = out.back_mut() {
                    // A status without a body was reported as soon as its head was read.
                    t.flags.truncated = true;
                }
            }
        }
    }

    /// Sync is lost in `dir`: what it held is skipped, and the next message start is searched
    /// for from mid-line.
    pub(super) fn lose(&mut self, dir: Direction) {
        let half = self.half(dir);
        let dropped = half.buf.len();
        half.buf.clear();
        half.current = None;
        half.phase = Phase::Lost;
        half.line_start = false;
        self.note_skipped(dir, dropped);
        self.end_blank_lines(dir);
    }
}
