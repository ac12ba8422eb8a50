//! Finding packet boundaries again inside a resultset after the capture lost bytes of it.
//!
//! Rows are the bulk of a reply and a capture that drops segments mostly drops rows. Outside a
//! resultset a loss leaves nothing to anchor on (the server's side waits for the next command),
//! but inside one the packets that follow have a known shape: rows of a known column count with
//! sequence ids going up by one, then a terminator (EOF, or OK with DEPRECATE_EOF, or ERR if the
//! server gave up). So the bytes after the loss are held (bounded) and each offset is judged as a
//! packet start:
//!
//! * [`CHAIN`] consecutive valid rows, each header's sequence id one more than the last, are
//!   trusted at once: reading goes on in sync from there;
//! * a chain never starts at a column definition (a loss can end inside them);
//! * a shorter chain (or none) is trusted only if it ends in the reply's final terminator exactly
//!   where the server's bytes stop when the reply must be over (the client sent its next command,
//!   or the server's side ended). A final terminator followed by more bytes before that is not one,
//!   since a server says nothing after its reply until it is asked again.
//!
//! The first packet's sequence id must also be reachable from the last one read before the loss:
//! every packet lost in between took at least [`MIN_PACKET`] bytes of what was lost. Every verdict
//! depends only on the bytes from the judged offset, never on how they were chunked.

#![deny(clippy::indexing_slicing)]

use super::framing::MAX_PACKET;
use super::wire;
use crate::held::Held;

/// Consecutive rows that are trusted as packet boundaries without waiting for the reply's end.
/// Two could be met by chance in binary rows (whose values cannot be checked without their
/// types); three chained headers with matching lengths and sequence ids practically cannot.
pub(crate) const CHAIN: usize = 3;

/// The fewest bytes a packet lost inside a resultset took: a 4-byte header and at least one byte
/// of payload (a row holds at least one value, each value at least a byte; terminators, column
/// counts and definitions are longer). Only the empty packet ending a 16 MB payload is shorter,
/// and it comes after 16 MB.
const MIN_PACKET: u64 = 5;

/// What the rows being looked for look like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Columns of the resultset being read.
    pub(crate) columns: u64,
    /// Binary rows (COM_STMT_EXECUTE), whose values cannot be checked without their types; text
    /// rows are checked value by value.
    pub(crate) binary: bool,
    /// Negotiated (or learnt), as the in-sync reader knows it.
    pub(crate) deprecate_eof: Option<bool>,
    /// The longest chain of packets judged, in bytes ([`crate::Limits::max_buffered`]).
    pub(crate) window: usize,
}

/// What is known of the bytes after those held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// More may come: a chain that runs past the held bytes waits for them.
    More,
    /// A loss comes next: nothing past the held bytes joins them, so a chain must be complete
    /// within them (and a final terminator at their end is not known to end the reply).
    Gap,
    /// The reply is over (the client spoke again, or the server's side ended): the chain must
    /// end with the reply's last packet exactly where the held bytes end.
    ReplyEnd,
}

/// What an offset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Undecided until this many bytes from the offset are there.
    NeedMore(usize),
    /// Not a packet start (or not one that can be trusted).
    Reject,
    /// Packets start here.
    Accept,
    /// (Only at [`Until::ReplyEnd`]) packets start here and chain over [`CHAIN`] rows, but they
    /// do not end the reply where its bytes end: no later offset can do better.
    Broken,
}

/// What a packet of the rows section is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Row,
    /// A terminator after which another resultset follows (MORE_RESULTS).
    More,
    /// The reply's last packet: a final terminator, or ERR.
    Last,
    /// A column count: the next resultset's packets follow in sync.
    NextResultset,
}

/// Judges `w` (the held bytes from one offset) as the start of the packets after a loss.
/// `last_seq` is the sequence id of the last header read before the loss and `lost` the bytes
/// lost or skipped since (this offset's included); `until` says what follows `w`.
pub(crate) fn judge(
    w: &[u8],
    shape: &Shape,
    last_seq: Option<u8>,
    lost: u64,
    until: Until,
) -> Verdict {
    let settled = until == Until::ReplyEnd;
    let mut at = 0usize;
    let mut rows = 0usize;
    let mut prev: Option<u8> = None;
    let mut between = false;
    // When the reply must be over, a chain of trusted length that fails says the end is broken
    // beyond what a later offset could mend.
    let fail = |rows: usize| {
        if settled && rows >= CHAIN {
            Verdict::Broken
        } else {
            Verdict::Reject
        }
    };
    loop {
        let Some(&[l0, l1, l2, seq]) = w.get(at..at.saturating_add(4)) else {
            // Every packet so far was valid, and none of them ended the reply.
            return match until {
                Until::More => Verdict::NeedMore(at + 4),
                _ => fail(rows),
            };
        };
        let reachable = match prev {
            Some(p) => seq == p.wrapping_add(1),
            None => last_seq.is_none_or(|last| {
                let skipped = u64::from(seq.wrapping_sub(last.wrapping_add(1)));
                // A header cut by the loss left up to 3 of its bytes before it.
                skipped * MIN_PACKET <= lost + 3
            }),
        };
        let len = u32::from_le_bytes([l0, l1, l2, 0]);
        let end = at + 4 + len as usize;
        // Empty packets only end 16 MB payloads, and those cannot be judged in the window.
        if !reachable || len == 0 || len >= MAX_PACKET || end > shape.window {
            return fail(rows);
        }
        let Some(payload) = w.get(at + 4..end) else {
            return match until {
                Until::More => Verdict::NeedMore(end),
                _ => fail(rows),
            };
        };
        let kind = if between {
            first_of_resultset(payload)
        } else if prev.is_none() && payload.starts_with(b"\x03def") {
            // A column definition (its catalog is always `def`), which with seven columns
            // reads as a valid row: a loss in the definitions must not start the rows there.
            None
        } else {
            row_or_terminator(payload, shape)
        };
        match kind {
            None => return fail(rows),
            Some(Kind::Row) => {
                rows += 1;
                if rows >= CHAIN && !settled {
                    return Verdict::Accept;
                }
            }
            Some(Kind::More) => between = true,
            Some(Kind::NextResultset) if !settled => return Verdict::Accept,
            // Settled: the next resultset's definitions are not checked here, so the reply
            // cannot be shown to end where its bytes do.
            Some(Kind::NextResultset) => return fail(rows),
            Some(Kind::Last) => {
                return match (end == w.len(), until) {
                    (true, Until::ReplyEnd) => Verdict::Accept,
                    // Nothing after it yet: it is the reply's end only if nothing more comes
                    // before the client speaks again.
                    (true, Until::More) => Verdict::NeedMore(end + 1),
                    // Followed by a loss, or by more bytes: the server was not done.
                    _ => fail(rows),
                };
            }
        }
        prev = Some(seq);
        at = end;
    }
}

/// A packet of the rows section: a row, a terminator (EOF, or OK with DEPRECATE_EOF) or ERR.
fn row_or_terminator(p: &[u8], shape: &Shape) -> Option<Kind> {
    let head = *p.first()?;
    if head == 0xff {
        return valid_err(p).then_some(Kind::Last);
    }
    if let Some(is_ok) = super::session::terminator(Some(head), p.len() as u64, shape.deprecate_eof)
    {
        let status = if is_ok { ok_status(p)? } else { eof_status(p)? };
        return Some(if status & wire::MORE_RESULTS_EXISTS != 0 {
            Kind::More
        } else {
            Kind::Last
        });
    }
    let valid = if shape.binary {
        binary_row(p, shape.columns)
    } else {
        text_row(p, shape.columns)
    };
    valid.then_some(Kind::Row)
}

/// The first packet after a MORE_RESULTS terminator: the next resultset's column count, or the
/// OK (or ERR) that ends a CALL.
fn first_of_resultset(p: &[u8]) -> Option<Kind> {
    match p.first()? {
        0xff => valid_err(p).then_some(Kind::Last),
        0x00 => {
            let status = ok_status(p)?;
            Some(if status & wire::MORE_RESULTS_EXISTS != 0 {
                Kind::More
            } else {
                Kind::Last
            })
        }
        _ => {
            // A column count, and at most the metadata-follows byte.
            let (n, used) = wire::lenenc(p)?;
            (n > 0 && p.len() - used <= 1).then_some(Kind::NextResultset)
        }
    }
}

/// A text row: exactly `columns` values (`0xFB` for NULL, else a length-encoded string) that fill
/// the payload.
fn text_row(p: &[u8], columns: u64) -> bool {
    if columns == 0 || columns > p.len() as u64 {
        return false;
    }
    let mut at = 0usize;
    for _ in 0..columns {
        let rest = p.get(at..).unwrap_or_default();
        if rest.first() == Some(&0xfb) {
            at += 1;
            continue;
        }
        let Some((n, used)) = wire::lenenc(rest) else {
            return false;
        };
        let Some(next) = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_add(used))
            .and_then(|n| n.checked_add(at))
        else {
            return false;
        };
        if next > p.len() {
            return false;
        }
        at = next;
    }
    at == p.len()
}

/// A binary row: header `0x00`, a NULL bitmap whose two reserved low bits and padding bits are
/// clear, and at least a byte for each value it does not mark NULL.
fn binary_row(p: &[u8], columns: u64) -> bool {
    let Ok(columns) = usize::try_from(columns) else {
        return false;
    };
    let bits = columns.saturating_add(2);
    let bitmap_len = bits.div_ceil(8);
    let Some(bitmap) = p.get(1..1 + bitmap_len) else {
        return false;
    };
    if columns == 0 || p.first() != Some(&0) {
        return false;
    }
    let padding = bits % 8;
    let reserved_clear = bitmap.first().is_some_and(|b| b & 0b11 == 0);
    let padding_clear = padding == 0 || bitmap.last().is_some_and(|b| b >> padding == 0);
    let nulls: usize = bitmap.iter().map(|b| b.count_ones() as usize).sum();
    reserved_clear && padding_clear && p.len() >= 1 + bitmap_len + (columns - nulls.min(columns))
}

/// An ERR packet as servers send it after the handshake: a code, `#` and a 5-character SQLSTATE
/// (MariaDB's progress reports never come inside rows).
fn valid_err(p: &[u8]) -> bool {
    let Some(e) = wire::err(p) else {
        return false;
    };
    e.code >= 1000
        && e.code != 0xffff
        && e.sqlstate
            .is_some_and(|s| s.iter().all(u8::is_ascii_alphanumeric))
}

/// An EOF's status: exactly `0xFE`, warnings and status (the 4.1 form every server sends).
fn eof_status(p: &[u8]) -> Option<u16> {
    (p.len() == 5).then(|| wire::eof_status(p))
}

/// An OK's status, once its fixed fields are all there.
fn ok_status(p: &[u8]) -> Option<u16> {
    let rest = p.get(1..)?;
    let (_, a) = wire::lenenc(rest)?;
    let (_, i) = wire::lenenc(rest.get(a..)?)?;
    let fixed = rest.get(a + i..a + i + 4)?;
    Some(u16::from_le_bytes([*fixed.first()?, *fixed.get(1)?]))
}

/// What a direction holds while it looks for the rows again.
#[derive(Debug, Default)]
pub(crate) struct RowScan {
    /// Bytes from the earliest offset not yet rejected, with their arrival times.
    pub(crate) held: Held,
    /// Sequence id of the last header read before the loss.
    pub(crate) last_seq: Option<u8>,
    /// Bytes lost or skipped since that header.
    pub(crate) lost: u64,
    /// Bytes this scan skipped (bounded by [`crate::Limits::max_unrecognized`]).
    pub(crate) scanned: u64,
    /// The scan started after a packet whose first byte was lost, not after lost bytes.
    unsure: bool,
    /// The front offset is undecided until `held` has this many bytes.
    need: usize,
}

/// What a scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// Packets start at the front of `held`.
    Packets,
    /// Undecided: more bytes are needed (or, before a loss, the scan goes on after it).
    Waiting,
    /// Nothing can be found (the reply is over without a chain that ends it, or the scan went
    /// past its bound).
    Nothing,
}

impl RowScan {
    /// Starts after a loss, `last_seq` being the last header read and `missing` the bytes lost
    /// (none when the last packet's first byte was lost: a row or the terminator, unsure).
    pub(crate) fn start(&mut self, last_seq: Option<u8>, missing: u64) {
        self.held.clear();
        self.last_seq = last_seq;
        self.lost = missing;
        self.scanned = 0;
        self.need = 0;
        self.unsure = missing == 0;
    }

    /// Whether packets found now follow the unsure packet straight on (nothing lost or skipped
    /// between): it was then a row, since after a final terminator the server says nothing and
    /// after one announcing more results a column count (never a valid row) comes first.
    pub(crate) const fn follows_unsure(&self) -> bool {
        self.unsure && self.lost == 0
    }

    /// Another loss, once what is held was judged with [`Until::Gap`]: it no longer joins what
    /// follows. Returns the bytes dropped.
    pub(crate) fn gap(&mut self, missing: u64) -> u64 {
        let dropped = self.held.len() as u64;
        self.held.clear();
        self.lost = self.lost.saturating_add(dropped).saturating_add(missing);
        self.scanned = self.scanned.saturating_add(dropped);
        self.need = 0;
        dropped
    }

    /// Whether the front offset could be decided now.
    pub(crate) fn ready(&self) -> bool {
        self.held.len() >= self.need
    }

    /// Judges offsets from the front, dropping those rejected; returns what was found and how
    /// many bytes were dropped. `until` says what follows the held bytes (see [`judge`]).
    pub(crate) fn find(&mut self, shape: &Shape, until: Until, max_scan: u64) -> (Found, u64) {
        self.need = 0;
        let mut at = 0usize;
        let found = loop {
            if self.scanned.saturating_add(at as u64) > max_scan {
                break Found::Nothing;
            }
            let Some(w) = self.held.get(at..).filter(|w| !w.is_empty()) else {
                break if until == Until::ReplyEnd {
                    Found::Nothing
                } else {
                    Found::Waiting
                };
            };
            let lost = self.lost.saturating_add(at as u64);
            match judge(w, shape, self.last_seq, lost, until) {
                Verdict::Accept => break Found::Packets,
                Verdict::Reject => at += 1,
                Verdict::Broken => break Found::Nothing,
                Verdict::NeedMore(n) => {
                    self.need = n;
                    break Found::Waiting;
                }
            }
        };
        let _ = self.held.split_to(at);
        self.lost = self.lost.saturating_add(at as u64);
        self.scanned = self.scanned.saturating_add(at as u64);
        (found, at as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;

    fn packet(payload: &[u8], seq: u8) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        out.push(seq);
        out.extend_from_slice(payload);
        out
    }

    const TEXT: Shape = Shape {
        columns: 2,
        binary: false,
        deprecate_eof: Some(false),
        window: 1 << 16,
    };

    #[test]
    fn text_rows_must_fill_their_payload_with_exactly_their_values() {
        assert!(text_row(b"\x011\x03abc", 2));
        assert!(text_row(b"\xfb\x00", 2));
        assert!(!text_row(b"\x011\x03abcd", 2));
        assert!(!text_row(b"\x011\x04abc", 2));
        assert!(!text_row(b"\x011", 2));
        assert!(!text_row(b"\xff\x00", 2));
    }

    #[test]
    fn binary_rows_keep_their_reserved_and_padding_bits_clear() {
        // 3 columns: 5 bitmap bits in one byte; the second column NULL (bit 3).
        assert!(binary_row(&[0, 0b1000, 1, 2], 3));
        assert!(!binary_row(&[0, 0b1001, 1, 2], 3), "reserved bit");
        assert!(!binary_row(&[0, 0b10_0000, 1, 2, 3], 3), "padding bit");
        assert!(!binary_row(&[0, 0, 1, 2], 3), "a byte per value");
        assert!(!binary_row(&[1, 0, 1, 2, 3], 3));
    }

    #[test]
    fn three_chained_rows_are_trusted_and_two_wait() {
        let mut w = packet(b"\x011\x03abc", 7);
        w.extend(packet(b"\x012\x02de", 8));
        assert_eq!(
            judge(&w, &TEXT, Some(5), 10, Until::More),
            Verdict::NeedMore(23)
        );
        w.extend(packet(b"\x013\xfb", 9));
        assert_eq!(judge(&w, &TEXT, Some(5), 10, Until::More), Verdict::Accept);
        // Sequence 7 after 5 needs one whole packet lost: 5 bytes at least.
        assert_eq!(judge(&w, &TEXT, Some(5), 1, Until::More), Verdict::Reject);
        let mut broken = packet(b"\x011\x03abc", 7);
        broken.extend(packet(b"\x012\x02de", 9));
        assert_eq!(judge(&broken, &TEXT, None, 0, Until::More), Verdict::Reject);
    }

    #[test]
    fn a_final_terminator_counts_only_where_the_reply_ends() {
        let mut w = packet(b"\x011\x03abc", 7);
        w.extend(packet(&[0xfe, 0, 0, 2, 0], 8));
        assert_eq!(
            judge(&w, &TEXT, None, 0, Until::More),
            Verdict::NeedMore(w.len() + 1)
        );
        assert_eq!(judge(&w, &TEXT, None, 0, Until::ReplyEnd), Verdict::Accept);
        let mut more = w.clone();
        more.push(1);
        assert_eq!(judge(&more, &TEXT, None, 0, Until::More), Verdict::Reject);
        assert_eq!(
            judge(&more, &TEXT, None, 0, Until::ReplyEnd),
            Verdict::Reject
        );
        // MORE_RESULTS: the next resultset's column count confirms it.
        let mut multi = packet(&[0xfe, 0, 0, 0x0a, 0], 8);
        multi.extend(packet(b"\x01", 9));
        assert_eq!(judge(&multi, &TEXT, None, 0, Until::More), Verdict::Accept);
    }

    #[test]
    fn err_and_ok_terminators() {
        let err = packet(b"\xff\xe2\x04#21000Subquery returns more than 1 row", 3);
        assert_eq!(
            judge(&err, &TEXT, None, 0, Until::ReplyEnd),
            Verdict::Accept
        );
        let bad = packet(b"\xff\xe2\x04!21000x", 3);
        assert_eq!(
            judge(&bad, &TEXT, None, 0, Until::ReplyEnd),
            Verdict::Reject
        );
        let deprecate = Shape {
            deprecate_eof: Some(true),
            ..TEXT
        };
        let ok = packet(&[0xfe, 0, 0, 0x22, 0, 0, 0], 4);
        assert_eq!(
            judge(&ok, &deprecate, None, 0, Until::ReplyEnd),
            Verdict::Accept
        );
        assert_eq!(
            judge(&ok[..9], &deprecate, None, 0, Until::ReplyEnd),
            Verdict::Reject
        );
    }

    #[test]
    fn before_a_loss_a_chain_waiting_for_bytes_past_it_gives_way() {
        // `x\x14\0\x06` reads as the header of a 5240-byte packet; three rows follow it.
        let mut w = b"x\x14\x00\x06".to_vec();
        w.extend(packet(b"\x011\x03abc", 7));
        w.extend(packet(b"\x012\x02de", 8));
        w.extend(packet(b"\x013\xfb", 9));
        let mut scan = RowScan::default();
        scan.start(Some(5), 100);
        scan.held.extend(&w, crate::Timestamp(0));
        assert_eq!(scan.find(&TEXT, Until::More, 1 << 20), (Found::Waiting, 0));
        assert!(!scan.ready());
        assert_eq!(scan.find(&TEXT, Until::Gap, 1 << 20), (Found::Packets, 4));
        assert_eq!(scan.held.len(), w.len() - 4);
        // Past its bound, a scan gives up.
        let mut scan = RowScan::default();
        scan.start(Some(5), 100);
        scan.held.extend(&w, crate::Timestamp(0));
        assert_eq!(scan.find(&TEXT, Until::Gap, 2), (Found::Nothing, 3));
    }
}
