//! A zero-copy BSON walker: a document's elements are read straight from its bytes (type, key,
//! and a value slice sized by its type), and values are decoded only on demand. Nothing is
//! allocated and no document is decoded whole; nesting is followed only where asked, to a fixed
//! depth.

#![deny(clippy::indexing_slicing)]

/// The deepest nesting [`Doc::path`] follows.
pub const MAX_DEPTH: usize = 8;

/// A BSON document: `len:i32` (itself included), elements, and a terminating 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doc<'a> {
    bytes: &'a [u8],
}

/// One element of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    /// Type byte.
    pub kind: u8,
    /// Key (a C string without its NUL).
    pub key: &'a [u8],
    /// Value bytes, exactly as long as the type says.
    pub value: &'a [u8],
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Doc<'a> {
    /// The document at the start of `b`, when its length prefix fits in `b` and it ends with a
    /// 0 byte. The bytes after it are not looked at.
    pub fn new(b: &'a [u8]) -> Option<Self> {
        let len = usize::try_from(i32_at(b, 0)?).ok()?;
        if len < 5 {
            return None;
        }
        let bytes = b.get(..len)?;
        (bytes.last() == Some(&0)).then_some(Self { bytes })
    }

    /// Its length in bytes.
    pub const fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it has no element.
    pub const fn is_empty(&self) -> bool {
        self.bytes.len() == 5
    }

    /// Its elements, in order. Iteration stops at the first malformed element.
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            rest: self
                .bytes
                .get(4..self.bytes.len().saturating_sub(1))
                .unwrap_or_default(),
        }
    }

    /// The first element.
    pub fn first(&self) -> Option<Element<'a>> {
        self.elements().next()
    }

    /// The element named `key` (the first one, if repeated).
    pub fn get(&self, key: &str) -> Option<Element<'a>> {
        self.elements().find(|e| e.key == key.as_bytes())
    }

    /// The element at a path of keys through embedded documents (`["cursor", "id"]`).
    pub fn path(&self, keys: &[&str]) -> Option<Element<'a>> {
        let (last, parents) = keys.split_last()?;
        if parents.len() >= MAX_DEPTH {
            return None;
        }
        let mut doc = *self;
        for key in parents {
            doc = doc.get(key)?.as_doc()?;
        }
        doc.get(last)
    }
}

/// Iterator over a document's elements.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        let (&kind, after) = self.rest.split_first()?;
        let nul = after.iter().position(|b| *b == 0)?;
        let key = after.get(..nul)?;
        let body = after.get(nul + 1..)?;
        let size = value_size(kind, body)?;
        let value = body.get(..size)?;
        self.rest = body.get(size..).unwrap_or_default();
        Some(Element { kind, key, value })
    }
}

/// Bytes a value of `kind` takes at the start of `b`.
fn value_size(kind: u8, b: &[u8]) -> Option<usize> {
    let prefixed =
        |extra: usize| -> Option<usize> { usize::try_from(i32_at(b, 0)?).ok()?.checked_add(extra) };
    Some(match kind {
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x02 | 0x0d | 0x0e => prefixed(4)?,
        0x03 | 0x04 | 0x0f => prefixed(0)?,
        0x05 => prefixed(5)?,
        0x06 | 0x0a | 0x7f | 0xff => 0,
        0x07 => 12,
        0x08 => 1,
        0x0b => {
            let first = b.iter().position(|c| *c == 0)?;
            let second = b.get(first + 1..)?.iter().position(|c| *c == 0)?;
            first + second + 2
        }
        0x0c => prefixed(4 + 12)?,
        0x10 => 4,
        0x13 => 16,
        _ => return None,
    })
}

impl<'a> Element<'a> {
    /// A string's bytes (without its NUL).
    pub fn as_str(&self) -> Option<&'a [u8]> {
        if self.kind != 0x02 {
            return None;
        }
        let len = usize::try_from(i32_at(self.value, 0)?).ok()?;
        self.value.get(4..4 + len.checked_sub(1)?)
    }

    /// An embedded document or array.
    pub fn as_doc(&self) -> Option<Doc<'a>> {
        matches!(self.kind, 0x03 | 0x04)
            .then(|| Doc::new(self.value))
            .flatten()
    }

    /// A number (double, int32, int64) or a bool, as f64 (how `ok` comes).
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            0x01 => Some(f64::from_le_bytes(self.value.try_into().ok()?)),
            0x10 => Some(f64::from(i32::from_le_bytes(self.value.try_into().ok()?))),
            0x12 => Some(i64::from_le_bytes(self.value.try_into().ok()?) as f64),
            0x08 => Some(f64::from(u8::from(*self.value.first()? != 0))),
            _ => None,
        }
    }

    /// An integer (int32, int64, or a double holding one).
    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            0x10 => Some(i64::from(i32::from_le_bytes(self.value.try_into().ok()?))),
            0x12 => Some(i64::from_le_bytes(self.value.try_into().ok()?)),
            0x01 => {
                let f = f64::from_le_bytes(self.value.try_into().ok()?);
                (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"find": "items", "n": 3, "cursor": {"id": 7i64, "firstBatch": [{}, {}]}, "ok": 1.0}`
    fn sample() -> Vec<u8> {
        let mut inner = Vec::new();
        inner.extend_from_slice(b"\x12id\x00");
        inner.extend_from_slice(&7i64.to_le_bytes());
        let batch = [
            &13i32.to_le_bytes()[..],
            b"\x030\x00\x05\x00\x00\x00\x00\x031\x00\x05\x00\x00\x00\x00\x00",
        ]
        .concat();
        let mut batch_doc = ((batch.len() + 4) as i32).to_le_bytes().to_vec();
        batch_doc.extend_from_slice(&batch[4..]);
        let _ = batch_doc;
        let arr = b"\x030\x00\x05\x00\x00\x00\x00\x031\x00\x05\x00\x00\x00\x00";
        let mut array = ((arr.len() + 5) as i32).to_le_bytes().to_vec();
        array.extend_from_slice(arr);
        array.push(0);
        inner.extend_from_slice(b"\x04firstBatch\x00");
        inner.extend_from_slice(&array);
        let mut cursor = ((inner.len() + 5) as i32).to_le_bytes().to_vec();
        cursor.extend_from_slice(&inner);
        cursor.push(0);
        let mut body = Vec::new();
        body.extend_from_slice(b"\x02find\x00\x06\x00\x00\x00items\x00");
        body.extend_from_slice(b"\x10n\x00\x03\x00\x00\x00");
        body.extend_from_slice(b"\x03cursor\x00");
        body.extend_from_slice(&cursor);
        body.extend_from_slice(b"\x01ok\x00");
        body.extend_from_slice(&1.0f64.to_le_bytes());
        let mut doc = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        doc.extend_from_slice(&body);
        doc.push(0);
        doc
    }

    #[test]
    fn keys_and_values_are_read_in_place() {
        let bytes = sample();
        let doc = Doc::new(&bytes).unwrap();
        let first = doc.first().unwrap();
        assert_eq!(
            (first.key, first.as_str()),
            (&b"find"[..], Some(&b"items"[..]))
        );
        assert_eq!(doc.get("n").unwrap().as_i64(), Some(3));
        assert_eq!(doc.get("ok").unwrap().as_f64(), Some(1.0));
        assert_eq!(doc.path(&["cursor", "id"]).unwrap().as_i64(), Some(7));
        let batch = doc
            .path(&["cursor", "firstBatch"])
            .unwrap()
            .as_doc()
            .unwrap();
        assert_eq!(batch.elements().count(), 2);
        assert_eq!(doc.elements().count(), 4);
    }

    #[test]
    fn malformed_documents_stop_the_walk_without_panicking() {
        let bytes = sample();
        assert!(Doc::new(&bytes[..bytes.len() - 1]).is_none());
        assert!(Doc::new(b"\x04\x00\x00\x00").is_none());
        // A string whose length runs past the document ends the iteration there.
        let bad = b"\x10\x00\x00\x00\x02s\x00\x40\x00\x00\x00abc\x00\x00";
        let doc = Doc::new(bad).unwrap();
        assert_eq!(doc.elements().count(), 0);
        // An unknown type ends it too.
        let unknown = b"\x0a\x00\x00\x00\x20k\x00\x00\x00\x00";
        assert_eq!(Doc::new(unknown).unwrap().elements().count(), 0);
    }
}
