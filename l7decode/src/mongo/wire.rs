//! MongoDB messages: the 16-byte MsgHeader, OP_MSG sections (with CRC-32C), OP_COMPRESSED's
//! prefix, legacy OP_QUERY/OP_REPLY and the other legacy opcodes, read from a complete message
//! without copying (the BSON bodies stay in place, see [`super::bson`]).

#![deny(clippy::indexing_slicing)]

use super::bson::Doc;

/// Opcodes.
pub mod op {
    /// OP_REPLY (legacy reply).
    pub const REPLY: i32 = 1;
    /// OP_UPDATE (legacy, no reply).
    pub const UPDATE: i32 = 2001;
    /// OP_INSERT (legacy, no reply).
    pub const INSERT: i32 = 2002;
    /// OP_QUERY (legacy; commands to `db.$cmd`).
    pub const QUERY: i32 = 2004;
    /// OP_GET_MORE (legacy).
    pub const GET_MORE: i32 = 2005;
    /// OP_DELETE (legacy, no reply).
    pub const DELETE: i32 = 2006;
    /// OP_KILL_CURSORS (legacy, no reply).
    pub const KILL_CURSORS: i32 = 2007;
    /// OP_COMPRESSED.
    pub const COMPRESSED: i32 = 2012;
    /// OP_MSG.
    pub const MSG: i32 = 2013;
}

/// The largest message a server accepts (maxMessageSizeBytes).
pub const MAX_MESSAGE: u32 = 48_000_000;

/// The name of an opcode, as the truth files spell it.
pub const fn opcode_name(opcode: i32) -> Option<&'static str> {
    Some(match opcode {
        op::REPLY => "OP_REPLY",
        op::UPDATE => "OP_UPDATE",
        op::INSERT => "OP_INSERT",
        op::QUERY => "OP_QUERY",
        op::GET_MORE => "OP_GET_MORE",
        op::DELETE => "OP_DELETE",
        op::KILL_CURSORS => "OP_KILL_CURSORS",
        op::COMPRESSED => "OP_COMPRESSED",
        op::MSG => "OP_MSG",
        _ => return None,
    })
}

/// A MsgHeader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// messageLength, the header included.
    pub len: u32,
    /// requestID (an int32 on the wire, kept as u32 as tshark shows it).
    pub request_id: u32,
    /// responseTo: 0 for a request.
    pub response_to: u32,
    /// opCode.
    pub opcode: i32,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The header at the start of `b` (16 bytes).
pub fn header(b: &[u8]) -> Option<Header> {
    Some(Header {
        len: u32_at(b, 0)?,
        request_id: u32_at(b, 4)?,
        response_to: u32_at(b, 8)?,
        opcode: i32_at(b, 12)?,
    })
}

/// Whether `b` (16 bytes) is a plausible header of a message the client sends (`request`) or
/// the server sends: a sane length, a known opcode for that side, and responseTo 0 exactly for
/// requests. Used to find a message start; in sync, [`sane_header`] suffices (a reply to a
/// request numbered 0, as the mongo shell sends first, has responseTo 0 too).
pub fn plausible_header(b: &[u8], request: bool) -> bool {
    sane_header(b, request) && header(b).is_some_and(|h| (h.response_to == 0) == request)
}

/// Whether `b` (16 bytes) is a header the side can send: a sane length and a known opcode.
pub fn sane_header(b: &[u8], request: bool) -> bool {
    let Some(h) = header(b) else {
        return false;
    };
    let sane = (16..=MAX_MESSAGE).contains(&h.len);
    let opcode = if request {
        matches!(
            h.opcode,
            op::MSG | op::QUERY | op::COMPRESSED | 2001 | 2002 | 2005..=2007
        )
    } else {
        matches!(h.opcode, op::MSG | op::REPLY | op::COMPRESSED)
    };
    sane && opcode
}

/// Judges a candidate message start for resynchronisation: `None` until enough bytes are there
/// (16; 21 for OP_MSG, whose flag bits and first section kind are checked too).
pub fn plausible_start(b: &[u8], request: bool) -> Option<bool> {
    let h = b.get(..16)?;
    if !plausible_header(h, request) {
        return Some(false);
    }
    if header(h).is_some_and(|h| h.opcode == op::MSG) {
        let flag_bits = u32_at(b, 16)?;
        let kind = *b.get(20)?;
        return Some(flag_bits & flags::UNKNOWN_REQUIRED == 0 && kind <= 1);
    }
    Some(true)
}

/// Whether the first 4 bytes could be a message length (to stop waiting early).
pub fn plausible_length(b: &[u8]) -> bool {
    u32_at(b, 0).is_some_and(|len| (16..=MAX_MESSAGE).contains(&len))
}

/// OP_MSG flag bits.
pub mod flags {
    /// A CRC-32C follows the sections.
    pub const CHECKSUM_PRESENT: u32 = 1;
    /// More messages follow without a request (no reply to a request; a chain of replies).
    pub const MORE_TO_COME: u32 = 2;
    /// The client accepts a chain of replies.
    pub const EXHAUST_ALLOWED: u32 = 1 << 16;
    /// Bits 0–15 the decoder does not know: required, so the message is invalid.
    pub const UNKNOWN_REQUIRED: u32 = 0xffff & !(CHECKSUM_PRESENT | MORE_TO_COME);
}

/// A kind-1 section's identifier and how many documents it holds. At most this many are kept.
pub const MAX_SEQUENCES: usize = 4;

/// What one message says, read in place from its bytes (after the header; inflated first when
/// it was compressed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary<'a> {
    /// OP_MSG flag bits (0 for other opcodes).
    pub flags: u32,
    /// The CRC-32C matched (`Some(false)`: it did not; `None`: none was sent).
    pub checksum_ok: Option<bool>,
    /// The command document: OP_MSG's kind-0 body, OP_QUERY's query (unwrapped from `$query`),
    /// OP_REPLY's first document.
    pub body: Option<Doc<'a>>,
    /// Legacy namespace (`db.collection`).
    pub ns: &'a [u8],
    /// Kind-1 document sequences: identifier and document count.
    pub sequences: [(&'a [u8], u32); MAX_SEQUENCES],
    /// How many of `sequences` are set.
    pub sequence_count: usize,
    /// OP_REPLY's responseFlags, cursorID and numberReturned.
    pub reply_flags: Option<u32>,
    /// OP_REPLY's cursorID.
    pub reply_cursor: i64,
    /// OP_REPLY's numberReturned.
    pub number_returned: i32,
    /// Unknown required flag bits, or sections that do not add up.
    pub invalid: bool,
}

/// Reads a message of `opcode` whose bytes after the header are `body`. `whole` is the whole
/// message (header included) for the checksum, when it was not compressed.
pub fn summarize<'a>(opcode: i32, body: &'a [u8], whole: Option<&[u8]>) -> Summary<'a> {
    let mut s = Summary::default();
    match opcode {
        op::MSG => read_msg(body, whole, &mut s),
        op::QUERY => {
            // flags, fullCollectionName, numberToSkip, numberToReturn, query.
            let Some(end) = body.get(4..).and_then(|b| b.iter().position(|c| *c == 0)) else {
                s.invalid = true;
                return s;
            };
            s.ns = body.get(4..4 + end).unwrap_or_default();
            let query = body.get(4 + end + 1 + 8..).and_then(Doc::new);
            // `{$query: {...}, $readPreference: ...}` wraps the command.
            s.body = query.map(|q| {
                q.get("$query")
                    .and_then(|e| e.as_doc())
                    .filter(|_| q.first().is_some_and(|f| f.key == b"$query"))
                    .unwrap_or(q)
            });
            s.invalid = s.body.is_none();
        }
        op::REPLY => {
            s.reply_flags = u32_at(body, 0);
            s.reply_cursor = body
                .get(4..12)
                .and_then(|b| b.try_into().ok())
                .map_or(0, i64::from_le_bytes);
            s.number_returned = i32_at(body, 16).unwrap_or(0);
            s.body = body.get(20..).and_then(Doc::new);
            s.invalid = s.reply_flags.is_none();
        }
        op::UPDATE | op::INSERT | op::DELETE | op::GET_MORE => {
            // ZERO (or flags), fullCollectionName, ...
            let end = body.get(4..).and_then(|b| b.iter().position(|c| *c == 0));
            s.ns = end.and_then(|e| body.get(4..4 + e)).unwrap_or_default();
        }
        _ => {}
    }
    s
}

fn read_msg<'a>(body: &'a [u8], whole: Option<&[u8]>, s: &mut Summary<'a>) {
    let Some(flags) = u32_at(body, 0) else {
        s.invalid = true;
        return;
    };
    s.flags = flags;
    if flags & flags::UNKNOWN_REQUIRED != 0 {
        s.invalid = true;
        return;
    }
    let mut end = body.len();
    if flags & flags::CHECKSUM_PRESENT != 0 {
        end = end.saturating_sub(4);
        if let Some(whole) = whole
            && let Some(sent) = u32_at(whole, whole.len().saturating_sub(4))
        {
            let covered = whole.get(..whole.len() - 4).unwrap_or_default();
            s.checksum_ok = Some(crc32c(covered) == sent);
        }
    }
    let sections = body.get(4..end).unwrap_or_default();
    let mut at = 0;
    while let Some(&kind) = sections.get(at) {
        at += 1;
        let rest = sections.get(at..).unwrap_or_default();
        match kind {
            0 => {
                let Some(doc) = Doc::new(rest) else {
                    s.invalid = true;
                    return;
                };
                if s.body.is_some() {
                    // Exactly one body per message.
                    s.invalid = true;
                }
                s.body = Some(doc);
                at += doc.len();
            }
            1 => {
                let Some(size) = i32_at(rest, 0).and_then(|n| usize::try_from(n).ok()) else {
                    s.invalid = true;
                    return;
                };
                let Some(section) = rest.get(..size).filter(|_| size >= 4) else {
                    s.invalid = true;
                    return;
                };
                let Some(nul) = section
                    .get(4..)
                    .and_then(|b| b.iter().position(|c| *c == 0))
                else {
                    s.invalid = true;
                    return;
                };
                let ident = section.get(4..4 + nul).unwrap_or_default();
                let mut docs = 0u32;
                let mut d = 4 + nul + 1;
                while let Some(doc) = section.get(d..).and_then(Doc::new) {
                    docs += 1;
                    d += doc.len();
                }
                if d != size {
                    s.invalid = true;
                }
                if let Some(slot) = s.sequences.get_mut(s.sequence_count) {
                    *slot = (ident, docs);
                    s.sequence_count += 1;
                }
                at += size;
            }
            _ => {
                s.invalid = true;
                return;
            }
        }
    }
    if s.body.is_none() {
        s.invalid = true;
    }
}

/// OP_COMPRESSED's prefix: the original opcode, the uncompressed size and the compressor id.
pub fn compressed_prefix(body: &[u8]) -> Option<(i32, u32, u8)> {
    Some((i32_at(body, 0)?, u32_at(body, 4)?, *body.get(8)?))
}

/// CRC-32C (Castagnoli), as OP_MSG's checksum.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            // `i < 256`: a const loop cannot use the checked accessors.
            #[allow(clippy::indexing_slicing)]
            {
                table[i] = c;
            }
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for b in bytes {
        let index = usize::from((crc as u8) ^ b);
        crc = TABLE.get(index).copied().unwrap_or(0) ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn headers_are_judged_by_side() {
        let mut h = Vec::new();
        for v in [100u32, 7, 0, 2013] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        assert!(plausible_header(&h, true));
        assert!(!plausible_header(&h, false));
        h[8] = 1;
        assert!(plausible_header(&h, false));
        h[0..4].copy_from_slice(&49_000_000u32.to_le_bytes());
        assert!(!plausible_header(&h, false));
    }
}
