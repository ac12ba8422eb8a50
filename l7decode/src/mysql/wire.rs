//! Payload-level parsing of the MySQL/MariaDB client/server protocol: length-encoded integers and
//! the packets whose fields a record needs (greeting, handshake response, OK, ERR, EOF,
//! PREPARE_OK). Every function reads a payload's kept prefix and returns `None` when the bytes
//! do not hold what it looks for; none of them panics.

#![deny(clippy::indexing_slicing)]

/// Capability flags the decoder acts on (`CLIENT_*` in the protocol docs).
pub mod caps {
    /// Connects with a default schema.
    pub const CONNECT_WITH_DB: u32 = 0x0000_0008;
    /// The compressed protocol follows the handshake.
    pub const COMPRESS: u32 = 0x0000_0020;
    /// 4.1 protocol (every server this decoder meets).
    pub const PROTOCOL_41: u32 = 0x0000_0200;
    /// TLS follows an SSLRequest.
    pub const SSL: u32 = 0x0000_0800;
    /// The auth response carries a one-byte length (before `PLUGIN_AUTH_LENENC_DATA`).
    pub const SECURE_CONNECTION: u32 = 0x0000_8000;
    /// The handshake response names an auth plugin.
    pub const PLUGIN_AUTH: u32 = 0x0008_0000;
    /// The auth response's length is length-encoded.
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 0x0020_0000;
    /// OK replaces the EOF packets of resultsets.
    pub const DEPRECATE_EOF: u32 = 0x0100_0000;
    /// Resultsets may omit column metadata (a flag byte follows the column count).
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 0x0200_0000;
    /// COM_QUERY and COM_STMT_EXECUTE carry query attributes.
    pub const QUERY_ATTRIBUTES: u32 = 0x0800_0000;
}

/// `SERVER_MORE_RESULTS_EXISTS` in an OK or EOF status: another resultset follows.
pub const MORE_RESULTS_EXISTS: u16 = 0x0008;

/// A length-encoded integer at the start of `b`: its value and how many bytes it took.
/// `0xFB` (NULL in a row) and `0xFF` are not integers.
pub fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let wide = |n: usize| -> Option<(u64, usize)> {
        let bytes = b.get(1..=n)?;
        let mut v = 0u64;
        for (i, byte) in bytes.iter().enumerate() {
            v |= u64::from(*byte) << (8 * i);
        }
        Some((v, n + 1))
    };
    match first {
        0..=0xfa => Some((u64::from(first), 1)),
        0xfc => wide(2),
        0xfd => wide(3),
        0xfe => wide(8),
        _ => None,
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The NUL-terminated string at `at`, and the offset after its NUL.
fn nul_str(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|c| *c == 0)?;
    Some((rest.get(..end)?, at + end + 1))
}

/// The fields of a server greeting (Handshake v10) the decoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting<'a> {
    /// Server version string (MariaDB: `5.5.5-10.11.…-MariaDB`).
    pub version: &'a [u8],
    /// Capability flags (low and high words).
    pub capabilities: u32,
}

/// A Handshake v10: protocol version 10, a printable version string, and the capability words.
pub fn greeting(b: &[u8]) -> Option<Greeting<'_>> {
    if b.first() != Some(&10) {
        return None;
    }
    let (version, at) = nul_str(b, 1)?;
    if version.is_empty() || !version.iter().all(|c| (0x20..0x7f).contains(c)) {
        return None;
    }
    // connection id (4), auth data 1 (8), filler (1), then the low capability word.
    let low = u16_at(b, at + 13)?;
    // charset (1) and status (2) come before the high word, which older servers may omit.
    let high = u16_at(b, at + 18).unwrap_or(0);
    Some(Greeting {
        version,
        capabilities: u32::from(low) | (u32::from(high) << 16),
    })
}

/// What the client's first packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientHello<'a> {
    /// An SSLRequest: TLS follows.
    SslRequest,
    /// A HandshakeResponse41.
    Response {
        /// Client capability flags.
        capabilities: u32,
        /// Login user.
        user: &'a [u8],
        /// Default schema, when connecting with one.
        schema: Option<&'a [u8]>,
    },
}

/// A HandshakeResponse41, or an SSLRequest (32 bytes ending where the user name would start).
/// `len` is the whole payload's length (the kept prefix may be shorter).
pub fn client_hello(b: &[u8], len: u64) -> Option<ClientHello<'_>> {
    let capabilities = u32_at(b, 0)?;
    if capabilities & caps::PROTOCOL_41 == 0 {
        return None;
    }
    if len == 32 && capabilities & caps::SSL != 0 {
        return Some(ClientHello::SslRequest);
    }
    // capabilities (4), max packet (4), charset (1), 23 reserved bytes.
    let (user, mut at) = nul_str(b, 32)?;
    let auth_len = if capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        let (n, used) = lenenc(b.get(at..)?)?;
        at += used;
        n
    } else if capabilities & caps::SECURE_CONNECTION != 0 {
        let n = *b.get(at)?;
        at += 1;
        u64::from(n)
    } else {
        let (_, after) = nul_str(b, at)?;
        at = after;
        0
    };
    at = at.checked_add(usize::try_from(auth_len).ok()?)?;
    let schema = if capabilities & caps::CONNECT_WITH_DB != 0 {
        nul_str(b, at).map(|(s, _)| s)
    } else {
        None
    };
    Some(ClientHello::Response {
        capabilities,
        user,
        schema,
    })
}

/// An OK packet's counters (header `0x00`, or `0xFE` where it ends a resultset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkPacket {
    /// Rows changed.
    pub affected_rows: u64,
    /// AUTO_INCREMENT value generated.
    pub last_insert_id: u64,
    /// Server status flags.
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
}

/// The fields after an OK packet's header byte.
pub fn ok(b: &[u8]) -> Option<OkPacket> {
    let rest = b.get(1..)?;
    let (affected_rows, a) = lenenc(rest)?;
    let (last_insert_id, i) = lenenc(rest.get(a..)?)?;
    let status = u16_at(rest, a + i).unwrap_or(0);
    let warnings = u16_at(rest, a + i + 2).unwrap_or(0);
    Some(OkPacket {
        affected_rows,
        last_insert_id,
        status,
        warnings,
    })
}

/// An EOF packet's status flags (`0xFE`, warnings u16, status u16).
pub fn eof_status(b: &[u8]) -> u16 {
    u16_at(b, 3).unwrap_or(0)
}

/// An ERR packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrPacket<'a> {
    /// Error code (MariaDB's 0xFFFF is a progress report, not an error).
    pub code: u16,
    /// SQLSTATE, when the packet carries one.
    pub sqlstate: Option<&'a [u8]>,
    /// Human-readable message (as much of it as was kept).
    pub message: &'a [u8],
}

/// The fields of an ERR packet (header `0xFF`).
pub fn err(b: &[u8]) -> Option<ErrPacket<'_>> {
    if b.first() != Some(&0xff) {
        return None;
    }
    let code = u16_at(b, 1)?;
    let rest = b.get(3..).unwrap_or_default();
    let (sqlstate, message) = match rest.split_first() {
        Some((b'#', after)) if after.len() >= 5 => {
            (after.get(..5), after.get(5..).unwrap_or_default())
        }
        _ => (None, rest),
    };
    Some(ErrPacket {
        code,
        sqlstate,
        message,
    })
}

/// COM_STMT_PREPARE's OK: `0x00`, statement id, column and parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// The id later commands name.
    pub stmt_id: u32,
    /// Columns of its resultset.
    pub columns: u16,
    /// Its `?` placeholders.
    pub params: u16,
}

/// A PREPARE_OK payload (12 bytes at least).
pub fn prepare_ok(b: &[u8], len: u64) -> Option<PrepareOk> {
    if b.first() != Some(&0) || len < 12 {
        return None;
    }
    Some(PrepareOk {
        stmt_id: u32_at(b, 1)?,
        columns: u16_at(b, 5)?,
        params: u16_at(b, 7)?,
    })
}

/// The statement id a COM_STMT_* command names (bytes 1..5).
pub fn stmt_id(b: &[u8]) -> Option<u32> {
    u32_at(b, 1)
}

/// Where the SQL text starts in a COM_QUERY payload: after the command byte and, with query
/// attributes, after the parameter block (count, set count, null bitmap, bind flag, each
/// parameter's type and name, then the values of the non-null ones). `attributes` is `None`
/// when the handshake was not seen: a query never starts with a NUL, so `0x00 0x01` after the
/// command byte means an empty attribute block. `None` when the block does not fit the bytes kept.
pub fn query_text_offset(b: &[u8], attributes: Option<bool>) -> Option<usize> {
    let with_attributes = attributes.unwrap_or_else(|| matches!(b.get(1..3), Some([0, 1])));
    if !with_attributes {
        return Some(1);
    }
    let (count, a) = lenenc(b.get(1..)?)?;
    let (_sets, s) = lenenc(b.get(1 + a..)?)?;
    let mut at = 1 + a + s;
    if count == 0 {
        return Some(at);
    }
    let count = usize::try_from(count).ok()?;
    let bitmap = b.get(at..at + count.div_ceil(8))?;
    at += count.div_ceil(8);
    // The new-params-bound flag, then (type, name) per parameter.
    if *b.get(at)? != 1 {
        return None;
    }
    at += 1;
    let mut types = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        types.push(*b.get(at)?);
        at += 2;
        let (name_len, used) = lenenc(b.get(at..)?)?;
        at = at
            .checked_add(used)?
            .checked_add(usize::try_from(name_len).ok()?)?;
    }
    for (i, kind) in types.into_iter().enumerate() {
        let null = bitmap
            .get(i / 8)
            .is_some_and(|byte| byte & (1 << (i % 8)) != 0);
        if !null {
            at = at.checked_add(binary_value_len(kind, b.get(at..)?)?)?;
        }
    }
    (at <= b.len()).then_some(at)
}

/// Bytes a value of binary-protocol type `kind` takes at the start of `b`.
fn binary_value_len(kind: u8, b: &[u8]) -> Option<usize> {
    Some(match kind {
        0x06 => 0,
        0x01 => 1,
        0x02 | 0x0d => 2,
        0x03 | 0x04 | 0x09 => 4,
        0x05 | 0x08 => 8,
        // Dates and times: a length byte, then that many bytes.
        0x07 | 0x0a | 0x0b | 0x0c => 1 + usize::from(*b.first()?),
        // Strings, decimals, blobs, JSON, geometry: length-encoded.
        _ => {
            let (len, used) = lenenc(b)?;
            used.checked_add(usize::try_from(len).ok()?)?
        }
    })
}

/// Name of a command byte, as the protocol docs spell it.
pub const fn command_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x00 => "COM_SLEEP",
        0x01 => "COM_QUIT",
        0x02 => "COM_INIT_DB",
        0x03 => "COM_QUERY",
        0x04 => "COM_FIELD_LIST",
        0x05 => "COM_CREATE_DB",
        0x06 => "COM_DROP_DB",
        0x07 => "COM_REFRESH",
        0x08 => "COM_SHUTDOWN",
        0x09 => "COM_STATISTICS",
        0x0a => "COM_PROCESS_INFO",
        0x0b => "COM_CONNECT",
        0x0c => "COM_PROCESS_KILL",
        0x0d => "COM_DEBUG",
        0x0e => "COM_PING",
        0x0f => "COM_TIME",
        0x10 => "COM_DELAYED_INSERT",
        0x11 => "COM_CHANGE_USER",
        0x12 => "COM_BINLOG_DUMP",
        0x13 => "COM_TABLE_DUMP",
        0x14 => "COM_CONNECT_OUT",
        0x15 => "COM_REGISTER_SLAVE",
        0x16 => "COM_STMT_PREPARE",
        0x17 => "COM_STMT_EXECUTE",
        0x18 => "COM_STMT_SEND_LONG_DATA",
        0x19 => "COM_STMT_CLOSE",
        0x1a => "COM_STMT_RESET",
        0x1b => "COM_SET_OPTION",
        0x1c => "COM_STMT_FETCH",
        0x1d => "COM_DAEMON",
        0x1e => "COM_BINLOG_DUMP_GTID",
        0x1f => "COM_RESET_CONNECTION",
        0xfa => "COM_STMT_BULK_EXECUTE",
        _ => return None,
    })
}

/// Whether a seq-0 client payload of `len` bytes starting with `code` is a plausible command:
/// a known code whose fixed arguments fit the length. Used to find commands mid-stream.
pub fn plausible_command(code: u8, len: u64) -> bool {
    match code {
        // No argument.
        0x01 | 0x09 | 0x0e | 0x1f => len == 1,
        // A statement id.
        0x19 | 0x1a => len == 5,
        // A statement id and a row count.
        0x1c => len == 9,
        // Statement id, flags, iteration count.
        0x17 => len >= 10,
        // Statement id, parameter number, data.
        0x18 => len >= 7,
        0x1b => len == 3,
        // Text arguments.
        0x02..=0x04 | 0x16 => len >= 2,
        0x11 => len >= 3,
        0xfa => len >= 7,
        _ => false,
    }
}

/// Bytes [`command_start`] needs at most.
pub const COMMAND_PROBE: usize = 8;

/// Whether `w` starts a plausible command packet (sequence id 0, a known command whose fixed
/// arguments fit the length, printable text for text commands): `None` until enough bytes are
/// there (the whole of a short command, else [`COMMAND_PROBE`] bytes). Judging a prefix that
/// grows byte by byte gives the same answer however the bytes were chunked.
pub fn command_start(w: &[u8]) -> Option<bool> {
    let [l0, l1, l2, seq, code, ..] = *w else {
        return None;
    };
    let len = u64::from(u32::from_le_bytes([l0, l1, l2, 0]));
    if seq != 0 || !plausible_command(code, len) {
        return Some(false);
    }
    // A whole short command, or enough of a longer one to judge its start.
    let need = (4 + len).min(COMMAND_PROBE as u64) as usize;
    if w.len() < need {
        return None;
    }
    Some(match code {
        // Text arguments start printable (or, for a query, with an empty attribute block).
        0x02 | 0x03 | 0x16 => w.get(5..need).is_some_and(|text| {
            text.iter()
                .all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace())
                || (code == 0x03 && text.starts_with(&[0, 1]))
        }),
        _ => true,
    })
}

/// Bytes [`compressed_command_start`] needs at most: a compressed frame's header, then a command.
pub const COMPRESSED_COMMAND_PROBE: usize = 7 + COMMAND_PROBE;

/// Like [`command_start`], for the compressed protocol: a stored (uncompressed-length 0) frame
/// whose first packet is a plausible command that fits in it. Compressed frames cannot be judged
/// from their first bytes; a capture joined mid-stream finds the next small command, which
/// clients store rather than compress.
pub fn compressed_command_start(b: &[u8]) -> Option<bool> {
    let [c0, c1, c2, _seq, u0, u1, u2, ..] = *b else {
        return None;
    };
    let frame = u32::from_le_bytes([c0, c1, c2, 0]);
    if [u0, u1, u2] != [0, 0, 0] || frame < 5 {
        return Some(false);
    }
    let inner = b.get(7..).unwrap_or_default();
    if let [l0, l1, l2, ..] = *inner
        && u32::from_le_bytes([l0, l1, l2, 0]).saturating_add(4) > frame
    {
        return Some(false);
    }
    command_start(inner)
}

/// Whether `b` (8 bytes) starts a client's handshake response (or SSLRequest): sequence id 1, a
/// plausible length, and 4.1-protocol capabilities. Found when a capture missed the greeting.
pub fn hello_start(b: &[u8]) -> bool {
    let [l0, l1, l2, seq, c0, c1, c2, c3, ..] = *b else {
        return false;
    };
    let len = u32::from_le_bytes([l0, l1, l2, 0]);
    let capabilities = u32::from_le_bytes([c0, c1, c2, c3]);
    seq == 1
        && (32..=8192).contains(&len)
        && capabilities & caps::PROTOCOL_41 != 0
        && capabilities & caps::SECURE_CONNECTION != 0
}

/// Whether `b` (8 bytes) starts a server greeting: sequence id 0, protocol 10, a plausible
/// length, and a version string starting with a digit.
pub fn greeting_start(b: &[u8]) -> bool {
    let [l0, l1, l2, seq, protocol, v0, v1, v2, ..] = *b else {
        return false;
    };
    let len = u32::from_le_bytes([l0, l1, l2, 0]);
    seq == 0
        && protocol == 10
        && (30..=4096).contains(&len)
        && v0.is_ascii_digit()
        && v1.is_ascii_graphic()
        && v2.is_ascii_graphic()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_integers() {
        assert_eq!(lenenc(&[0xfa]), Some((250, 1)));
        assert_eq!(lenenc(&[0xfc, 0x2c, 0x01]), Some((300, 3)));
        assert_eq!(lenenc(&[0xfd, 1, 0, 1]), Some((0x01_0001, 4)));
        assert_eq!(
            lenenc(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 1]),
            Some(((1 << 56) + 1, 9))
        );
        assert_eq!(lenenc(&[0xfb]), None);
        assert_eq!(lenenc(&[0xfc, 1]), None);
        assert_eq!(lenenc(&[]), None);
    }

    #[test]
    fn err_with_and_without_sqlstate() {
        let e = err(b"\xff\x7a\x04#42S02Table 'x' doesn't exist").unwrap();
        assert_eq!(
            (e.code, e.sqlstate, e.message),
            (1146, Some(&b"42S02"[..]), &b"Table 'x' doesn't exist"[..])
        );
        let e = err(b"\xff\x15\x04Access denied").unwrap();
        assert_eq!((e.code, e.sqlstate), (1045, None));
        assert_eq!(err(b"\xff\x01"), None);
    }

    #[test]
    fn query_attributes_prefix() {
        assert_eq!(query_text_offset(b"\x03SELECT 1", Some(false)), Some(1));
        assert_eq!(
            query_text_offset(b"\x03\x00\x01SELECT 1", Some(true)),
            Some(3)
        );
        assert_eq!(query_text_offset(b"\x03\x00\x01SELECT 1", None), Some(3));
        assert_eq!(query_text_offset(b"\x03SELECT 1", None), Some(1));
        // One attribute, a string "tr" = "ab", then the query.
        let with_one = b"\x03\x01\x01\x00\x01\xfe\x00\x02tr\x02abSELECT 1";
        assert_eq!(query_text_offset(with_one, Some(true)), Some(13));
        // A null attribute has no value; a LONGLONG one takes 8 bytes.
        let two = b"\x03\x02\x01\x01\x01\xfe\x00\x01a\x08\x00\x01b\x07\x00\x00\x00\x00\x00\x00\x00SELECT 2";
        assert_eq!(query_text_offset(two, Some(true)), Some(21));
        // Cut short: the text cannot be found.
        assert_eq!(query_text_offset(b"\x03\x01\x01\x00\x01", Some(true)), None);
    }
}
