//! MongoDB messages: the 16-byte MsgHeader, OP_MSG sections (with CRC-32C), OP_COMPRESSED's
//! prefix, legacy OP_QUERY/OP_REPLY and the other legacy opcodes, read from a complete message
//! without copying (the BSON bodies stay in place, see [`super::bson`]).

#![deny(clippy::indexing_slicing)]

use super::bson::Doc;
use crate::Status;

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

/// The name of an opcode as MongoDB's wire protocol docs spell it (`OP_MSG`, `OP_QUERY`, …);
/// `None` for a code MongoDB does not define.
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
    /// requestID (an int32 on the wire, kept as u32: ids are compared, never signed, and
    /// Wireshark shows them unsigned).
    pub request_id: u32,
    /// responseTo: on a reply, the requestID it answers; on a request, nothing (0 from the
    /// drivers, [`NO_RESPONSE_TO`] from MongoDB's own C++ client up to 3.2, the mongo shell).
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

/// The header at the start of `b`: [`Status::Complete`] with `consumed` 16, or
/// [`Status::Partial`] with the bytes missing when `b` is shorter. Any 16 bytes are a header;
/// whether it is a sane one is [`sane_header`]'s and [`plausible_header`]'s question.
///
/// ```
/// use l7decode::Status;
/// use l7decode::mongo::wire::{self, op};
///
/// let msg = [&38u32.to_le_bytes()[..], &7u32.to_le_bytes(), &0u32.to_le_bytes(), &op::MSG.to_le_bytes()].concat();
/// let Status::Complete { value, consumed: 16 } = wire::parse_header(&msg) else { panic!("16 bytes") };
/// assert_eq!((value.len, value.request_id, value.opcode), (38, 7, op::MSG));
/// assert!(matches!(wire::parse_header(&msg[..10]), Status::Partial { needed: Some(n) } if n.get() == 6));
/// ```
pub fn parse_header(b: &[u8]) -> Status<Header> {
    match header(b) {
        Some(value) => Status::Complete {
            value,
            consumed: 16,
        },
        None => Status::Partial {
            needed: core::num::NonZeroUsize::new(16usize.saturating_sub(b.len())),
        },
    }
}

/// The header at the start of `b`, when it has 16 bytes.
pub(crate) fn header(b: &[u8]) -> Option<Header> {
    Some(Header {
        len: u32_at(b, 0)?,
        request_id: u32_at(b, 4)?,
        response_to: u32_at(b, 8)?,
        opcode: i32_at(b, 12)?,
    })
}

/// The responseTo MongoDB's own C++ client up to 3.2 (the mongo shell, mongos, replication)
/// puts on every request: -1 (`MessagingPort::say`'s default), where the drivers put 0.
pub const NO_RESPONSE_TO: u32 = u32::MAX;

/// Whether only a client sends `opcode` (the legacy requests): its messages are requests
/// whatever their responseTo says.
pub const fn request_only(opcode: i32) -> bool {
    matches!(
        opcode,
        op::UPDATE | op::INSERT | op::QUERY | op::GET_MORE | op::DELETE | op::KILL_CURSORS
    )
}

/// Whether `b` (16 bytes) is a plausible header of a message the client sends (`request`) or
/// the server sends, when nothing else is known of the stream (to find a message start, or to
/// tell the sides apart from a first message): a sane length, an opcode that side sends, and a
/// responseTo that fits.
///
/// * A request's responseTo means nothing (replies pair by their own), and clients differ:
///   0 from the drivers, -1 ([`NO_RESPONSE_TO`]) from the mongo shell up to 3.2. A legacy
///   request opcode ([`request_only`]) is a request whatever it says; OP_MSG and
///   OP_COMPRESSED, which both sides send, are requests only with 0 or -1, so that a reply
///   (responseTo = its request's id) is not taken for one.
/// * A reply's responseTo is a requestID, and must not be 0: zeros are common inside
///   documents, so this keeps junk from passing for an OP_REPLY header. (In sync,
///   [`sane_header`] suffices: a reply to a request numbered 0, as the mongo shell sends first,
///   has responseTo 0 too.)
pub fn plausible_header(b: &[u8], request: bool) -> bool {
    sane_header(b, request)
        && header(b).is_some_and(|h| {
            if request {
                request_only(h.opcode) || h.response_to == 0 || h.response_to == NO_RESPONSE_TO
            } else {
                h.response_to != 0
            }
        })
}

/// Whether `b` (16 bytes) is a header the side can send: a sane length and a known opcode.
pub fn sane_header(b: &[u8], request: bool) -> bool {
    let Some(h) = header(b) else {
        return false;
    };
    let sane = (16..=MAX_MESSAGE).contains(&h.len);
    let opcode = if request {
        request_only(h.opcode) || matches!(h.opcode, op::MSG | op::COMPRESSED)
    } else {
        matches!(h.opcode, op::MSG | op::REPLY | op::COMPRESSED)
    };
    sane && opcode
}

/// Judges a candidate message start for resynchronisation: `None` until enough bytes are there
/// (16; 20 for a legacy request, 21 for OP_MSG, whose first body bytes are checked too).
///
/// Beyond [`plausible_header`]: OP_MSG's flag bits (no unknown required bit) and first section
/// kind; a legacy request's first word (its flags, or the ZERO word), which has no bit the
/// protocol leaves reserved. The latter makes up for a legacy request's responseTo, which says
/// nothing: four bytes checked either way.
pub fn plausible_start(b: &[u8], request: bool) -> Option<bool> {
    let h = b.get(..16)?;
    if !plausible_header(h, request) {
        return Some(false);
    }
    let Some(h) = header(h) else {
        return Some(false);
    };
    if h.opcode == op::MSG {
        let flag_bits = u32_at(b, 16)?;
        let kind = *b.get(20)?;
        return Some(flag_bits & flags::UNKNOWN_REQUIRED == 0 && kind <= 1);
    }
    if request && request_only(h.opcode) {
        if h.len < 20 {
            // Too short to hold its first word: not a message.
            return Some(false);
        }
        let allowed = match h.opcode {
            // Tailable, SlaveOk, OplogReplay, NoCursorTimeout, AwaitData, Exhaust, Partial.
            op::QUERY => 0xfe,
            // ContinueOnError.
            op::INSERT => 1,
            // OP_UPDATE, OP_DELETE, OP_GET_MORE and OP_KILL_CURSORS start with a ZERO word.
            _ => 0,
        };
        return Some(u32_at(b, 16)? & !allowed == 0);
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

/// OP_REPLY responseFlags bits.
pub mod reply_flags {
    /// The getMore's cursor is gone (the reply holds no document).
    pub const CURSOR_NOT_FOUND: u32 = 1;
    /// The query failed: the one document is `{$err, code}`.
    pub const QUERY_FAILURE: u32 = 2;
    /// For mongos (set by mongod to ask it to refresh its config).
    pub const SHARD_CONFIG_STALE: u32 = 4;
    /// The server supports AwaitData.
    pub const AWAIT_CAPABLE: u32 = 8;
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
    /// OP_REPLY's documents that are there whole (fewer than numberReturned when the message
    /// was cut).
    pub documents: u32,
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
            // Counted by their length prefixes alone (a step per document, nothing decoded).
            let mut at = 20;
            while let Some(doc) = body.get(at..).and_then(Doc::new) {
                s.documents += 1;
                at += doc.len();
            }
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

    fn head(len: u32, request_id: u32, response_to: u32, opcode: i32) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [len, request_id, response_to] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&opcode.to_le_bytes());
        h
    }

    /// A legacy request's responseTo says nothing (the 3.0 shell sends -1); OP_MSG and
    /// OP_COMPRESSED, sent both ways, are still told from replies by it.
    #[test]
    fn a_request_is_known_by_its_opcode_whatever_its_response_to() {
        for opcode in [2001, 2002, 2004, 2005, 2006, 2007] {
            for to in [0, NO_RESPONSE_TO, 7] {
                let h = head(60, 3, to, opcode);
                assert!(plausible_header(&h, true), "{opcode} {to}");
                assert!(!plausible_header(&h, false), "{opcode} {to}");
            }
        }
        for opcode in [op::MSG, op::COMPRESSED] {
            let request = |to| plausible_header(&head(60, 3, to, opcode), true);
            let reply = |to| plausible_header(&head(60, 3, to, opcode), false);
            assert!(
                request(0) && request(NO_RESPONSE_TO) && !request(7),
                "{opcode}"
            );
            assert!(!reply(0) && reply(7), "{opcode}");
        }
        // An OP_REPLY is never a request; as a reply its responseTo must not be 0, which
        // documents are full of.
        assert!(!plausible_header(
            &head(60, 3, NO_RESPONSE_TO, op::REPLY),
            true
        ));
        assert!(plausible_header(&head(60, 3, 9, op::REPLY), false));
        assert!(!plausible_header(&head(60, 3, 0, op::REPLY), false));
        // The other checks stand: the length, the opcode.
        assert!(!plausible_header(
            &head(15, 3, NO_RESPONSE_TO, op::QUERY),
            true
        ));
        let too_long = MAX_MESSAGE + 1;
        assert!(!plausible_header(
            &head(too_long, 3, NO_RESPONSE_TO, op::QUERY),
            true
        ));
        assert!(!plausible_header(&head(60, 3, NO_RESPONSE_TO, 2003), true));
        assert!(!plausible_header(&head(60, 3, NO_RESPONSE_TO, 2010), true));
    }

    /// A legacy request's first word is checked instead: no reserved bit.
    #[test]
    fn a_legacy_request_start_needs_its_first_word_clean() {
        let start = |opcode: i32, len: u32, word: Option<u32>| {
            let mut b = head(len, 3, NO_RESPONSE_TO, opcode);
            if let Some(w) = word {
                b.extend_from_slice(&w.to_le_bytes());
            }
            plausible_start(&b, true)
        };
        // Judged once the word is there.
        assert_eq!(start(op::QUERY, 60, None), None);
        // OP_QUERY: SlaveOk (4) and Exhaust (64) are flags, bit 0 and bits 8-31 are reserved.
        assert_eq!(start(op::QUERY, 60, Some(4 | 64)), Some(true));
        assert_eq!(start(op::QUERY, 60, Some(1)), Some(false));
        assert_eq!(start(op::QUERY, 60, Some(0x100)), Some(false));
        // OP_INSERT: ContinueOnError only.
        assert_eq!(start(op::INSERT, 60, Some(1)), Some(true));
        assert_eq!(start(op::INSERT, 60, Some(2)), Some(false));
        // The others start with a ZERO word.
        for opcode in [op::UPDATE, op::GET_MORE, op::DELETE, op::KILL_CURSORS] {
            assert_eq!(start(opcode, 60, Some(0)), Some(true), "{opcode}");
            assert_eq!(start(opcode, 60, Some(0x2e)), Some(false), "{opcode}");
        }
        // Too short to hold the word: not a message, whatever follows.
        assert_eq!(start(op::QUERY, 19, None), Some(false));
        // A reply's start is judged on its header alone.
        assert_eq!(
            plausible_start(&head(60, 3, 9, op::REPLY), false),
            Some(true)
        );
    }

    #[test]
    fn reply_documents_are_counted_by_their_lengths() {
        let empty = [5u8, 0, 0, 0, 0];
        let mut body = Vec::new();
        body.extend_from_slice(&8u32.to_le_bytes());
        body.extend_from_slice(&77i64.to_le_bytes());
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(&3i32.to_le_bytes());
        for _ in 0..3 {
            body.extend_from_slice(&empty);
        }
        let s = summarize(op::REPLY, &body, None);
        assert_eq!(
            (
                s.reply_flags,
                s.reply_cursor,
                s.number_returned,
                s.documents
            ),
            (Some(8), 77, 3, 3)
        );
        // Cut inside the third: two are there whole.
        let s = summarize(op::REPLY, &body[..body.len() - 1], None);
        assert_eq!((s.number_returned, s.documents), (3, 2));
    }
}
