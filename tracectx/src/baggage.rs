//! W3C Baggage: members, properties and percent-decoding, across repeated header fields; and
//! the one re-encoder of what was kept, within the W3C limits.
#![deny(clippy::indexing_slicing)]

use crate::carrier::Carrier;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Field};
use crate::w3c::{ows_prefix, trim_ows};

/// One `key=value;prop;prop=v` member, borrowed; the value is still percent-encoded.
///
/// Its `Debug` shows the member as text (bytes outside printable ASCII escaped), not as arrays
/// of numbers:
///
/// ```
/// use tracectx::{Config, extract_baggage};
///
/// let headers = [("baggage", "user=alice%20b;ttl=30")];
/// let member = extract_baggage(&headers, &Config::default()).next().unwrap()?;
/// assert_eq!(
///     format!("{member:?}"),
///     r#"BaggageMember { key: "user", value: "alice%20b", properties: "ttl=30" }"#
/// );
/// # Ok::<(), tracectx::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BaggageMember<'a> {
    key: &'a str,
    value: &'a [u8],
    properties: &'a [u8],
}

impl core::fmt::Debug for BaggageMember<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BaggageMember")
            .field("key", &self.key)
            .field("value", &Text(self.value))
            .field("properties", &Text(self.properties))
            .finish()
    }
}

/// Bytes shown as a quoted string, non-printable bytes escaped.
struct Text<'a>(&'a [u8]);

impl core::fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

impl<'a> BaggageMember<'a> {
    /// The key (an RFC 7230 token).
    pub const fn key(&self) -> &'a str {
        self.key
    }

    /// The value as sent (percent-encoded).
    pub const fn raw_value(&self) -> &'a [u8] {
        self.value
    }

    /// Percent-decodes the value into `out` as UTF-8, invalid sequences replaced by U+FFFD. `out`
    /// needs at most three bytes per input byte.
    ///
    /// # Errors
    /// [`ErrorKind::BufferTooSmall`].
    pub fn decode_value<'o>(&self, out: &'o mut [u8]) -> Result<&'o str, Error> {
        percent_decode(self.value, out)
    }

    /// The properties: `(key, value)` with OWS trimmed; `value` is `None` for a bare key.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        self.properties.split(|b| *b == b';').filter_map(|p| {
            let p = trim_ows(p);
            if p.is_empty() {
                return None;
            }
            let (k, v) = match p.iter().position(|b| *b == b'=') {
                Some(i) => (trim_ows(p.get(..i)?), Some(trim_ows(p.get(i + 1..)?))),
                None => (p, None),
            };
            Some((
                core::str::from_utf8(k).ok()?,
                v.and_then(|v| core::str::from_utf8(v).ok()),
            ))
        })
    }
}

/// Reads every `baggage` field's members, in order, up to the configured member and byte limits
/// (whole members only; the rest is dropped and counted by [`Members::dropped`]).
pub fn extract_baggage<'a, C: Carrier + ?Sized>(
    carrier: &'a C,
    config: &Config,
) -> Members<'a, impl Iterator<Item = &'a [u8]> + 'a> {
    Members {
        fields: carrier.get_all("baggage"),
        current: &[],
        max_members: config.max_baggage_members,
        max_bytes: config.max_baggage_bytes,
        members: 0,
        bytes: 0,
        dropped: 0,
    }
}

/// Members of one or more `baggage` fields; each item is a member or the error of a malformed
/// one (the spec leaves malformed input undefined: a caller may skip it or drop the header).
#[derive(Debug)]
pub struct Members<'a, F> {
    fields: F,
    current: &'a [u8],
    max_members: u16,
    max_bytes: u16,
    members: u16,
    bytes: usize,
    dropped: u32,
}

impl<F> Members<'_, F> {
    /// Members dropped for the limits.
    pub const fn dropped(&self) -> u32 {
        self.dropped
    }
}

impl<'a, F: Iterator<Item = &'a [u8]>> Members<'a, F> {
    /// Re-encodes the members not read yet into `out` as one `baggage` value, as
    /// [`write_baggage`] does; [`BaggageWritten::over_limit`] also counts the members this reader
    /// dropped for its own limits (including any dropped before this call).
    ///
    /// ```
    /// use tracectx::{BAGGAGE_MAX_BYTES, Config, extract_baggage};
    ///
    /// let headers = [("baggage", "a=1;p, bad key=2"), ("baggage", "b = x%2Cy ;q = 3")];
    /// let mut out = [0u8; BAGGAGE_MAX_BYTES];
    /// let (value, written) = extract_baggage(&headers, &Config::default()).write(&mut out);
    /// assert_eq!(value, "a=1;p,b=x%2Cy;q=3");
    /// assert_eq!((written.members, written.invalid, written.over_limit), (2, 1, 0));
    /// ```
    pub fn write(mut self, out: &mut [u8]) -> (&str, BaggageWritten) {
        let (value, mut written) = write_baggage(self.by_ref(), out);
        written.over_limit = written.over_limit.saturating_add(self.dropped);
        (value, written)
    }
}

/// The most bytes of `baggage` a sender may count on every receiver to take whole, all fields
/// together (W3C Baggage, "Limits"); [`write_baggage`] never writes more.
pub const BAGGAGE_MAX_BYTES: usize = 8192;

/// The most members the W3C Baggage grammar allows in a header (`list-member 0*179( OWS "," OWS
/// list-member )`); [`write_baggage`] never writes more.
pub const BAGGAGE_MAX_MEMBERS: usize = 180;

/// What [`write_baggage`] wrote and what it left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BaggageWritten {
    /// Members written.
    pub members: u16,
    /// Malformed members left out (a bad key, value or property: control characters, bytes
    /// outside ASCII, a missing `=`...).
    pub invalid: u32,
    /// Well-formed members left out because they did not fit: past [`BAGGAGE_MAX_MEMBERS`],
    /// [`BAGGAGE_MAX_BYTES`] or the caller's buffer (and, from [`Members::write`], those the
    /// reader dropped for its limits).
    pub over_limit: u32,
}

impl BaggageWritten {
    /// Members left out, for whatever reason.
    pub const fn dropped(&self) -> u32 {
        self.invalid.saturating_add(self.over_limit)
    }
}

/// Re-encodes validated members into `out` as one `baggage` value, `key=value;prop;prop=value`
/// joined by `,`, without OWS, and returns it with what was left out. Malformed members (the
/// `Err` items of [`extract_baggage`]) are left out; so are whole members past
/// [`BAGGAGE_MAX_MEMBERS`] or past [`BAGGAGE_MAX_BYTES`] (or `out`'s length), in which case a
/// later, shorter member may still fit. Values keep their percent-encoding, except that a `%` not
/// followed by two hex digits is written `%25`, so the next hop decodes what this one did.
///
/// The value is ASCII made only of token characters, baggage octets, `,`, `;` and `=`: never a
/// control character, a space or a byte outside ASCII, whatever the input was. Empty (send no
/// header) when nothing was kept.
pub fn write_baggage<'a, 'o>(
    members: impl IntoIterator<Item = Result<BaggageMember<'a>, Error>>,
    out: &'o mut [u8],
) -> (&'o str, BaggageWritten) {
    let limit = out.len().min(BAGGAGE_MAX_BYTES);
    let out = out.get_mut(..limit).unwrap_or_default();
    let mut written = BaggageWritten::default();
    let mut len = 0;
    for member in members {
        let Ok(member) = member else {
            written.invalid = written.invalid.saturating_add(1);
            continue;
        };
        if usize::from(written.members) >= BAGGAGE_MAX_MEMBERS {
            written.over_limit = written.over_limit.saturating_add(1);
            continue;
        }
        let mut w = Writer {
            out: &mut *out,
            at: len,
            full: false,
        };
        if len > 0 {
            w.put(b",");
        }
        match encode_member(&member, &mut w) {
            Ok(()) if !w.full => {
                len = w.at;
                written.members += 1;
            }
            Ok(()) => written.over_limit = written.over_limit.saturating_add(1),
            Err(()) => written.invalid = written.invalid.saturating_add(1),
        }
    }
    let value = core::str::from_utf8(out.get(..len).unwrap_or_default()).unwrap_or_default();
    (value, written)
}

/// Appends to a buffer; past its end, `full` and nothing more is written.
struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
    full: bool,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        match self.out.get_mut(self.at..self.at + bytes.len()) {
            Some(dst) if !self.full => {
                dst.copy_from_slice(bytes);
                self.at += bytes.len();
            }
            _ => self.full = true,
        }
    }
}

/// Writes one member, checking every byte again as it goes (`Err` for a byte the grammar does
/// not allow: never written, whoever built the member).
fn encode_member(member: &BaggageMember<'_>, w: &mut Writer<'_>) -> Result<(), ()> {
    put_token(member.key.as_bytes(), w)?;
    w.put(b"=");
    put_value(member.value, w)?;
    for raw in member.properties.split(|b| *b == b';') {
        let property = trim_ows(raw);
        if property.is_empty() {
            continue;
        }
        w.put(b";");
        match property.iter().position(|b| *b == b'=') {
            Some(i) => {
                put_token(trim_ows(property.get(..i).unwrap_or_default()), w)?;
                w.put(b"=");
                put_value(trim_ows(property.get(i + 1..).unwrap_or_default()), w)?;
            }
            None => put_token(property, w)?,
        }
    }
    Ok(())
}

fn put_token(token: &[u8], w: &mut Writer<'_>) -> Result<(), ()> {
    if token.is_empty() || !token.iter().all(|b| token_char(*b)) {
        return Err(());
    }
    w.put(token);
    Ok(())
}

fn put_value(value: &[u8], w: &mut Writer<'_>) -> Result<(), ()> {
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        let escaped = b == b'%'
            && value
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if escaped {
            w.put(value.get(i..i + 3).unwrap_or_default());
            i += 3;
            continue;
        }
        if b == b'%' {
            w.put(b"%25");
        } else if baggage_octet(b) {
            w.put(core::slice::from_ref(&b));
        } else {
            return Err(());
        }
        i += 1;
    }
    Ok(())
}

impl<'a, F: Iterator<Item = &'a [u8]>> Iterator for Members<'a, F> {
    type Item = Result<BaggageMember<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_empty() {
                self.current = self.fields.next()?;
                if self.current.is_empty() {
                    continue;
                }
            }
            let end = self
                .current
                .iter()
                .position(|b| *b == b',')
                .unwrap_or(self.current.len());
            let raw = self.current.get(..end).unwrap_or_default();
            self.current = self.current.get(end + 1..).unwrap_or_default();
            if trim_ows(raw).is_empty() {
                continue;
            }
            if self.members >= self.max_members
                || self.bytes + raw.len() > usize::from(self.max_bytes)
            {
                self.dropped += 1;
                continue;
            }
            self.members += 1;
            self.bytes += raw.len() + 1;
            return Some(parse_member(raw));
        }
    }
}

const fn token_char(b: u8) -> bool {
    matches!(b, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

const fn baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn parse_member(raw: &[u8]) -> Result<BaggageMember<'_>, Error> {
    let lead = ows_prefix(raw);
    let (kv, properties, properties_at) = match raw.iter().position(|b| *b == b';') {
        Some(i) => (
            raw.get(..i).unwrap_or_default(),
            raw.get(i + 1..).unwrap_or_default(),
            i + 1,
        ),
        None => (raw, &[][..], raw.len()),
    };
    let eq = kv.iter().position(|b| *b == b'=').ok_or_else(|| {
        Error::at(
            ErrorKind::Missing {
                field: Field::BaggageValue,
            },
            lead,
        )
    })?;
    let key = trim_ows(kv.get(..eq).unwrap_or_default());
    if key.is_empty() {
        return Err(Error::at(
            ErrorKind::Missing {
                field: Field::BaggageKey,
            },
            lead,
        ));
    }
    if let Some(i) = key.iter().position(|b| !token_char(*b)) {
        return Err(Error::at(
            ErrorKind::InvalidByte {
                field: Field::BaggageKey,
            },
            lead + i,
        ));
    }
    let value = trim_ows(kv.get(eq + 1..).unwrap_or_default());
    if let Some(i) = value.iter().position(|b| !baggage_octet(*b)) {
        return Err(Error::at(
            ErrorKind::InvalidByte {
                field: Field::BaggageValue,
            },
            eq + 1 + i,
        ));
    }
    let key = core::str::from_utf8(key).map_err(|_| {
        Error::at(
            ErrorKind::InvalidByte {
                field: Field::BaggageKey,
            },
            lead,
        )
    })?;
    check_properties(properties, properties_at)?;
    Ok(BaggageMember {
        key,
        value,
        properties,
    })
}

/// The properties after a member's first `;`: each `key OWS [= OWS value]` with a token key and a
/// value of baggage octets (empty ones, as in `;;`, are skipped). `at` is where they start in the
/// member, for the error offset.
fn check_properties(properties: &[u8], mut at: usize) -> Result<(), Error> {
    let invalid = |offset| {
        Error::at(
            ErrorKind::InvalidByte {
                field: Field::BaggageProperty,
            },
            offset,
        )
    };
    for raw in properties.split(|b| *b == b';') {
        let start = at + ows_prefix(raw);
        at += raw.len() + 1;
        let property = trim_ows(raw);
        if property.is_empty() {
            continue;
        }
        let (key, value) = match property.iter().position(|b| *b == b'=') {
            Some(i) => (
                trim_ows(property.get(..i).unwrap_or_default()),
                Some((i + 1, property.get(i + 1..).unwrap_or_default())),
            ),
            None => (property, None),
        };
        if key.is_empty() {
            return Err(Error::at(
                ErrorKind::Missing {
                    field: Field::BaggageProperty,
                },
                start,
            ));
        }
        if let Some(i) = key.iter().position(|b| !token_char(*b)) {
            return Err(invalid(start + i));
        }
        if let Some((value_at, value)) = value {
            let lead = ows_prefix(value);
            if let Some(i) = trim_ows(value).iter().position(|b| !baggage_octet(*b)) {
                return Err(invalid(start + value_at + lead + i));
            }
        }
    }
    Ok(())
}

/// Percent-decodes `input` into `out`, replacing invalid UTF-8 with U+FFFD.
///
/// # Errors
/// [`ErrorKind::BufferTooSmall`].
pub fn percent_decode<'o>(input: &[u8], out: &'o mut [u8]) -> Result<&'o str, Error> {
    // First the raw bytes (a `%` not followed by two hex digits stays as is).
    let mut len = 0;
    let mut i = 0;
    let too_small = |required: usize| Error::at(ErrorKind::BufferTooSmall { needed: required }, 0);
    while let Some(&b) = input.get(i) {
        let hex = |j: usize| input.get(i + j).and_then(|c| (*c as char).to_digit(16));
        let (byte, step) = match (b, hex(1), hex(2)) {
            (b'%', Some(h), Some(l)) => ((h * 16 + l) as u8, 3),
            _ => (b, 1),
        };
        *out.get_mut(len).ok_or_else(|| too_small(input.len() * 3))? = byte;
        len += 1;
        i += step;
    }
    // Then repair invalid UTF-8 in place, back to front, so replacements never overwrite input
    // still to be read: each invalid byte becomes the three bytes of U+FFFD.
    let invalid = count_invalid(out.get(..len).unwrap_or_default());
    let total = len + 2 * invalid;
    if total > out.len() {
        return Err(too_small(total));
    }
    if invalid > 0 {
        expand_invalid(out, len, total);
    }
    Ok(core::str::from_utf8(out.get(..total).unwrap_or_default()).unwrap_or_default())
}

/// Bytes of `bytes` that are not part of a valid UTF-8 sequence.
fn count_invalid(mut bytes: &[u8]) -> usize {
    let mut invalid = 0;
    loop {
        match core::str::from_utf8(bytes) {
            Ok(_) => return invalid,
            Err(e) => {
                let skip = e
                    .error_len()
                    .unwrap_or_else(|| bytes.len() - e.valid_up_to());
                invalid += skip;
                bytes = bytes.get(e.valid_up_to() + skip..).unwrap_or_default();
            }
        }
    }
}

/// Rewrites `out[..len]` to `out[..total]` with every invalid byte replaced by U+FFFD.
fn expand_invalid(out: &mut [u8], len: usize, total: usize) {
    // Mark which input bytes are invalid, walking forward; then copy backward.
    let mut flags = [0u64; 1024];
    let mut at = 0;
    while at < len {
        let rest = out.get(at..len).unwrap_or_default();
        match core::str::from_utf8(rest) {
            Ok(_) => break,
            Err(e) => {
                let skip = e
                    .error_len()
                    .unwrap_or_else(|| rest.len() - e.valid_up_to());
                for k in 0..skip {
                    let idx = at + e.valid_up_to() + k;
                    if let Some(word) = flags.get_mut(idx / 64) {
                        *word |= 1 << (idx % 64);
                    }
                }
                at += e.valid_up_to() + skip;
            }
        }
    }
    let mut write = total;
    for read in (0..len).rev() {
        let bad = flags
            .get(read / 64)
            .is_some_and(|w| w & (1 << (read % 64)) != 0);
        if bad {
            write -= 3;
            if let Some(dst) = out.get_mut(write..write + 3) {
                dst.copy_from_slice("\u{FFFD}".as_bytes());
            }
        } else {
            write -= 1;
            let byte = out.get(read).copied().unwrap_or(0);
            if let Some(dst) = out.get_mut(write) {
                *dst = byte;
            }
        }
    }
}
