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
        // When the whole message is ASCII every string in it is too, and one pass over the bytes
        // replaces a UTF-8 check per key and string (metadata is nearly always ASCII).
        let all_ascii = bytes.is_ascii();
        validate_struct(bytes, base, limits.max_depth, all_ascii)?;
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

fn decode_value(bytes: &[u8], base: u64) -> ValueView<'_> {
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

fn utf8(bytes: &[u8], at: u64, all_ascii: bool) -> Result<(), Error> {
    // Short ASCII strings (nearly every key and value) are cheaper to check byte by byte than
    // through the general UTF-8 validator's set-up.
    if all_ascii || bytes.iter().all(|b| b.is_ascii()) {
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

fn validate_struct(bytes: &[u8], base: u64, depth_left: u16, all_ascii: bool) -> Result<(), Error> {
    let mut fields = Fields::new(bytes, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1, Wire::Bytes(entry)) => validate_entry(entry, at, depth_left, all_ascii)?,
            (1, _) => return Err(wrong_wire(at)),
            _ => {} // unknown field: skipped, as protobuf does
        }
    }
    Ok(())
}

fn validate_entry(entry: &[u8], base: u64, depth_left: u16, all_ascii: bool) -> Result<(), Error> {
    let mut fields = Fields::new(entry, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1, Wire::Bytes(key)) => utf8(key, at, all_ascii)?,
            (2, Wire::Bytes(value)) => validate_value(value, at, depth_left, all_ascii)?,
            (1 | 2, _) => return Err(wrong_wire(at)),
            _ => {}
        }
    }
    Ok(())
}

fn validate_value(bytes: &[u8], base: u64, depth_left: u16, all_ascii: bool) -> Result<(), Error> {
    let mut fields = Fields::new(bytes, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1 | 4, Wire::Varint(_)) | (2, Wire::Fixed64(_)) => {}
            (3, Wire::Bytes(s)) => utf8(s, at, all_ascii)?,
            (5, Wire::Bytes(s)) => validate_struct(s, at, descend(depth_left, at)?, all_ascii)?,
            (6, Wire::Bytes(l)) => validate_list(l, at, descend(depth_left, at)?, all_ascii)?,
            (1..=6, _) => return Err(wrong_wire(at)),
            _ => {}
        }
    }
    Ok(())
}

fn validate_list(bytes: &[u8], base: u64, depth_left: u16, all_ascii: bool) -> Result<(), Error> {
    let mut fields = Fields::new(bytes, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            (1, Wire::Bytes(value)) => validate_value(value, at, depth_left, all_ascii)?,
            (1, _) => return Err(wrong_wire(at)),
            _ => {}
        }
    }
    Ok(())
}
