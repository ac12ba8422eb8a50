//! Zero-copy views of `google.protobuf.Struct`, `Value` and `ListValue`.
//!
//! A view is validated once, when it is made ([`StructView::parse`]): wire types, UTF-8 of keys and
//! strings, and nesting depth against [`Limits::max_depth`](crate::Limits::max_depth). Walking a
//! validated view then cannot fail and never allocates.
#![deny(clippy::indexing_slicing)]

use core::fmt;

use super::pb::{Fields, Wire};
use crate::Limits;
use crate::error::{Error, ErrorKind};

/// A validated `google.protobuf.Struct`, borrowing its bytes. Two views are equal when their
/// bytes are.
#[derive(Clone, Copy)]
pub struct StructView<'a> {
    bytes: &'a [u8],
    base: u64,
}

/// A validated `google.protobuf.ListValue`. Two views are equal when their bytes are.
#[derive(Clone, Copy)]
pub struct ListView<'a> {
    bytes: &'a [u8],
    base: u64,
}

/// One `google.protobuf.Value`.
#[derive(Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ValueView<'a> {
    /// `null_value`, or a `Value` with no kind set.
    Null,
    /// `number_value` (a double).
    Number(f64),
    /// `string_value`.
    String(&'a str),
    /// `bool_value`.
    Bool(bool),
    /// `struct_value`.
    Struct(StructView<'a>),
    /// `list_value`.
    List(ListView<'a>),
}

impl<'a> ValueView<'a> {
    /// The string, if this is a `string_value`.
    pub const fn as_str(&self) -> Option<&'a str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The struct, if this is a `struct_value`.
    pub const fn as_struct(&self) -> Option<StructView<'a>> {
        match self {
            Self::Struct(s) => Some(*s),
            _ => None,
        }
    }
}

impl<'a> StructView<'a> {
    /// Validates `bytes` as a serialized `Struct`; `base` is their offset in the caller's buffer,
    /// used in error offsets.
    ///
    /// # Errors
    /// [`ErrorKind::Protobuf`] for malformed wire data or a wire type that does not match the
    /// field, [`ErrorKind::NotUtf8`] for a key or string that is not UTF-8,
    /// [`ErrorKind::TooDeep`] past [`Limits::max_depth`].
    ///
    /// # Panics
    /// Never.
    pub fn parse(bytes: &'a [u8], base: u64, limits: &Limits) -> Result<Self, Error> {
        validate_struct(bytes, base, limits.max_depth)?;
        Ok(Self { bytes, base })
    }

    /// A view over bytes [`StructView::parse`] already accepted with the same `base`.
    pub(crate) const fn validated(bytes: &'a [u8], base: u64) -> Self {
        Self { bytes, base }
    }

    /// The view over an empty struct.
    pub const fn empty() -> Self {
        Self {
            bytes: &[],
            base: 0,
        }
    }

    /// The serialized bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Entries in wire order, duplicates included (see [`StructView::get`] for map semantics).
    pub fn iter(&self) -> StructIter<'a> {
        StructIter {
            entries: self.raw_entries(),
        }
    }

    /// The value of `key`; when the key repeats, the last entry wins, as protobuf maps do.
    pub fn get(&self, key: &str) -> Option<ValueView<'a>> {
        // Keys compared as bytes: only the value found is decoded.
        self.raw_entries()
            .filter(|e| e.key == key.as_bytes())
            .last()
            .map(|e| e.value())
    }

    /// Entries with undecoded keys and values, for lookups that decode only what they use.
    pub(crate) fn raw_entries(&self) -> RawEntries<'a> {
        RawEntries {
            fields: Fields::new(self.bytes, self.base),
        }
    }

    /// The string value of `key`; `None` when absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(|v| v.as_str())
    }

    /// Whether the struct has no entries.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Number of entries on the wire (duplicates counted).
    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

impl<'a> ListView<'a> {
    /// The values in order.
    pub fn iter(&self) -> ListIter<'a> {
        ListIter {
            fields: Fields::new(self.bytes, self.base),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl PartialEq for StructView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for StructView<'_> {}

impl PartialEq for ListView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for ListView<'_> {}

impl fmt::Debug for StructView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl fmt::Debug for ListView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Debug for ValueView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Struct(s) => s.fmt(f),
            Self::List(l) => l.fmt(f),
        }
    }
}

/// A map entry as it lies on the wire (validated).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEntry<'a> {
    pub(crate) key: &'a [u8],
    value: &'a [u8],
    value_at: u64,
}

impl<'a> RawEntry<'a> {
    pub(crate) fn value(&self) -> ValueView<'a> {
        decode_value(self.value, self.value_at)
    }
}

/// Iterator over raw entries.
#[derive(Debug, Clone)]
pub(crate) struct RawEntries<'a> {
    fields: Fields<'a>,
}

impl<'a> Iterator for RawEntries<'a> {
    type Item = RawEntry<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawEntry<'a>> {
        loop {
            if let (1, Wire::Bytes(entry), at) = self.fields.next_field().ok()?? {
                return Some(raw_entry(entry, at));
            }
        }
    }
}

#[inline]
fn raw_entry(entry: &[u8], base: u64) -> RawEntry<'_> {
    canonical_entry(entry, base).unwrap_or_else(|| raw_entry_general(entry, base))
}

fn raw_entry_general(entry: &[u8], base: u64) -> RawEntry<'_> {
    let mut out = RawEntry {
        key: &[],
        value: &[],
        value_at: base,
    };
    let mut fields = Fields::new(entry, base);
    while let Ok(Some((number, wire, at))) = fields.next_field() {
        match (number, wire) {
            (1, Wire::Bytes(k)) => out.key = k,
            (2, Wire::Bytes(v)) => (out.value, out.value_at) = (v, at),
            _ => {}
        }
    }
    out
}

/// Iterator over a struct's `(key, value)` entries.
#[derive(Debug, Clone)]
pub struct StructIter<'a> {
    entries: RawEntries<'a>,
}

impl<'a> Iterator for StructIter<'a> {
    type Item = (&'a str, ValueView<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        // Validated at construction: keys are UTF-8.
        let entry = self.entries.next()?;
        Some((
            core::str::from_utf8(entry.key).unwrap_or_default(),
            entry.value(),
        ))
    }
}

/// Iterator over a list's values.
#[derive(Debug, Clone)]
pub struct ListIter<'a> {
    fields: Fields<'a>,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = ValueView<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.fields.next_field().ok()?? {
                (1, Wire::Bytes(value), at) => return Some(decode_value(value, at)),
                _ => continue,
            }
        }
    }
}

/// A length-delimited field `tag, len, payload` at the start of `bytes`: the payload, its offset
/// and what follows it.
#[inline(always)]
fn delimited(bytes: &[u8], tag: u8) -> Option<(&[u8], usize, &[u8])> {
    let [t, rest @ ..] = bytes else { return None };
    if *t != tag {
        return None;
    }
    let (len, n) = short_varint(rest)?;
    let payload = rest.get(n..n + len)?;
    Some((payload, 1 + n, rest.get(n + len..)?))
}

/// A varint of at most two bytes (every length in metadata this size), as `usize`.
#[inline(always)]
fn short_varint(bytes: &[u8]) -> Option<(usize, usize)> {
    match bytes {
        [b, ..] if *b < 0x80 => Some((usize::from(*b), 1)),
        [lo, hi, ..] if *hi < 0x80 => Some((usize::from(lo & 0x7F) | (usize::from(*hi) << 7), 2)),
        _ => None,
    }
}

/// The layout every encoder writes for a map entry (key, then value, nothing else), read without
/// the general field loop; `None` sends other layouts to it.
#[inline(always)]
fn canonical_entry(entry: &[u8], base: u64) -> Option<RawEntry<'_>> {
    let (key, _, rest) = delimited(entry, 0x0A)?;
    let (value, value_start, rest2) = delimited(rest, 0x12)?;
    if !rest2.is_empty() {
        return None;
    }
    let value_at = base + (entry.len() - rest.len() + value_start) as u64;
    Some(RawEntry {
        key,
        value,
        value_at,
    })
}

#[inline]
fn decode_value(bytes: &[u8], base: u64) -> ValueView<'_> {
    // The common case: a single length-delimited kind spanning the whole value.
    if let Some(tag @ (0x1A | 0x2A | 0x32)) = bytes.first().copied()
        && let Some((payload, start, [])) = delimited(bytes, tag)
    {
        let at = base + start as u64;
        return match tag {
            0x1A => ValueView::String(core::str::from_utf8(payload).unwrap_or_default()),
            0x2A => ValueView::Struct(StructView {
                bytes: payload,
                base: at,
            }),
            _ => ValueView::List(ListView {
                bytes: payload,
                base: at,
            }),
        };
    }
    decode_value_general(bytes, base)
}

fn decode_value_general(bytes: &[u8], base: u64) -> ValueView<'_> {
    // A oneof: the last kind on the wire wins.
    let mut value = ValueView::Null;
    let mut fields = Fields::new(bytes, base);
    while let Ok(Some((number, wire, at))) = fields.next_field() {
        value = match (number, wire) {
            (1, Wire::Varint(_)) => ValueView::Null,
            (2, Wire::Fixed64(bits)) => ValueView::Number(f64::from_bits(bits)),
            (3, Wire::Bytes(s)) => ValueView::String(core::str::from_utf8(s).unwrap_or_default()),
            (4, Wire::Varint(b)) => ValueView::Bool(b != 0),
            (5, Wire::Bytes(s)) => ValueView::Struct(StructView { bytes: s, base: at }),
            (6, Wire::Bytes(l)) => ValueView::List(ListView { bytes: l, base: at }),
            _ => continue,
        };
    }
    value
}

fn wrong_wire(at: u64) -> Error {
    Error::new(ErrorKind::Protobuf, at)
}

/// ASCII check eight bytes at a time (the standard one loops byte by byte on short slices).
#[inline]
fn is_ascii_words(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut high = 0u64;
    for word in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        high |= u64::from_le_bytes(eight);
    }
    let tail = words.remainder().iter().fold(0u8, |acc, b| acc | b);
    (high & 0x8080_8080_8080_8080) == 0 && tail < 0x80
}

fn utf8(bytes: &[u8], at: u64) -> Result<(), Error> {
    // Keys and values are nearly always short ASCII: a word-at-a-time check spares the general
    // UTF-8 validator's set-up.
    if is_ascii_words(bytes) {
        return Ok(());
    }
    core::str::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| Error::new(ErrorKind::NotUtf8, at))
}

fn descend(depth_left: u16, at: u64) -> Result<u16, Error> {
    depth_left
        .checked_sub(1)
        .ok_or_else(|| Error::new(ErrorKind::TooDeep, at))
}

fn validate_struct(bytes: &[u8], base: u64, depth_left: u16) -> Result<(), Error> {
    let mut fields = Fields::new(bytes, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1, Wire::Bytes(entry)) => validate_entry(entry, at, depth_left)?,
            (1, _) => return Err(wrong_wire(at)),
            _ => {} // unknown field: skipped, as protobuf does
        }
    }
    Ok(())
}

fn validate_entry(entry: &[u8], base: u64, depth_left: u16) -> Result<(), Error> {
    // The canonical layout with an ASCII key first; anything else (and any error position in a
    // key) is the general loop's.
    if let Some(e) = canonical_entry(entry, base)
        && is_ascii_words(e.key)
    {
        return validate_value(e.value, e.value_at, depth_left);
    }
    let mut fields = Fields::new(entry, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1, Wire::Bytes(key)) => utf8(key, at)?,
            (2, Wire::Bytes(value)) => validate_value(value, at, depth_left)?,
            (1 | 2, _) => return Err(wrong_wire(at)),
            _ => {}
        }
    }
    Ok(())
}

fn validate_value(bytes: &[u8], base: u64, depth_left: u16) -> Result<(), Error> {
    // The common case: a single length-delimited kind spanning the whole value.
    if let Some(tag @ (0x1A | 0x2A | 0x32)) = bytes.first().copied()
        && let Some((payload, start, [])) = delimited(bytes, tag)
    {
        let at = base + start as u64;
        return match tag {
            0x1A => utf8(payload, at),
            0x2A => validate_struct(payload, at, descend(depth_left, at)?),
            _ => validate_list(payload, at, descend(depth_left, at)?),
        };
    }
    let mut fields = Fields::new(bytes, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1 | 4, Wire::Varint(_)) | (2, Wire::Fixed64(_)) => {}
            (3, Wire::Bytes(s)) => utf8(s, at)?,
            (5, Wire::Bytes(s)) => validate_struct(s, at, descend(depth_left, at)?)?,
            (6, Wire::Bytes(l)) => validate_list(l, at, descend(depth_left, at)?)?,
            (1..=6, _) => return Err(wrong_wire(at)),
            _ => {}
        }
    }
    Ok(())
}

fn validate_list(bytes: &[u8], base: u64, depth_left: u16) -> Result<(), Error> {
    let mut fields = Fields::new(bytes, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1, Wire::Bytes(value)) => validate_value(value, at, depth_left)?,
            (1, _) => return Err(wrong_wire(at)),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The canonical fast paths give what the general field loops give, on every input where
    /// they answer (mutations of real entries and values).
    #[test]
    fn fast_paths_agree_with_the_general_loops() {
        let seeds: [&[u8]; 4] = [
            b"\x0a\x03app\x12\x0d\x1a\x0bproductpage",
            b"\x0a\x06LABELS\x12\x06\x2a\x04\x0a\x02\x0a\x00",
            b"\x0a\x01k\x12\x04\x32\x02\x08\x00",
            b"\x0a\x01n\x12\x09\x11\x00\x00\x00\x00\x00\x00\xf0\x3f",
        ];
        let mut rng = 0x853C_49E6_748F_EA9B_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as usize
        };
        let mut agreed = 0;
        for seed in seeds {
            for round in 0..5000 {
                let mut bytes: Vec<u8> = seed.to_vec();
                for _ in 0..round % 4 {
                    let at = next() % bytes.len();
                    bytes[at] =
                        [0x0a, 0x12, 0x1a, 0x2a, 0x32, 0x00, 0x01, 0x80, 0xff, b'a'][next() % 10];
                }
                if let Some(fast) = canonical_entry(&bytes, 7) {
                    let general = raw_entry_general(&bytes, 7);
                    assert_eq!(
                        (fast.key, fast.value, fast.value_at),
                        (general.key, general.value, general.value_at),
                        "{bytes:?}"
                    );
                    let (a, b) = (
                        decode_value(fast.value, fast.value_at),
                        decode_value_general(fast.value, fast.value_at),
                    );
                    assert_eq!(alloc::format!("{a:?}"), alloc::format!("{b:?}"));
                    agreed += 1;
                }
                // Debug output compares NaN with NaN and nested views by their bytes.
                let (a, b) = (decode_value(&bytes, 3), decode_value_general(&bytes, 3));
                assert_eq!(
                    alloc::format!("{a:?}"),
                    alloc::format!("{b:?}"),
                    "{bytes:?}"
                );
            }
        }
        assert!(agreed > 1000, "{agreed}");
    }
}
