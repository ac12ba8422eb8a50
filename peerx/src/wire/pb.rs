//! The few protobuf wire-format primitives `Any`, `Struct`, `Value` and `ListValue` need, read
//! in place: varints, tags, length-delimited fields, and skipping unknown fields.
#![deny(clippy::indexing_slicing)]

use crate::error::{Error, ErrorKind};

/// Protobuf wire types this reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Reads fields one by one from a message's bytes; `offset` tracks the position for errors.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
    /// Offset of `rest` from the start of the outermost buffer, for error positions.
    base: u64,
}

impl<'a> Fields<'a> {
    pub(crate) const fn new(bytes: &'a [u8], base: u64) -> Self {
        Self { rest: bytes, base }
    }

    fn error(&self, kind: ErrorKind) -> Error {
        Error::new(kind, self.base)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Error> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.rest.split_first() else {
                return Err(self.error(ErrorKind::Protobuf));
            };
            self.rest = rest;
            self.base += 1;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(self.error(ErrorKind::Protobuf));
            }
            value |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(ErrorKind::Protobuf))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.rest.len() {
            return Err(self.error(ErrorKind::Protobuf));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        self.base += n as u64;
        Ok(taken)
    }

    /// The next `(field number, value)`, `None` at the end of the message.
    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>, u64)>, Error> {
        // Nearly every field of these messages is length-delimited with a one-byte tag and a
        // one-byte length: take that shape without the general varint loop.
        if let [tag, len, rest @ ..] = self.rest
            && *tag < 0x80
            && *tag & 7 == 2
            && *tag >= 8
            && *len < 0x80
            && usize::from(*len) <= rest.len()
        {
            let (bytes, after) = rest.split_at(usize::from(*len));
            let start = self.base + 2;
            self.rest = after;
            self.base = start + u64::from(*len);
            return Ok(Some((u32::from(*tag >> 3), Wire::Bytes(bytes), start)));
        }
        if self.rest.is_empty() {
            return Ok(None);
        }
        let at = self.base;
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).ok().filter(|n| *n != 0);
        let Some(number) = number else {
            return Err(Error::new(ErrorKind::Protobuf, at));
        };
        let value = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let bytes: [u8; 8] = self
                    .take(8)?
                    .try_into()
                    .map_err(|_| self.error(ErrorKind::Protobuf))?;
                Wire::Fixed64(u64::from_le_bytes(bytes))
            }
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| self.error(ErrorKind::Protobuf))?;
                let start = self.base;
                let bytes = self.take(len)?;
                return Ok(Some((number, Wire::Bytes(bytes), start)));
            }
            5 => {
                let bytes: [u8; 4] = self
                    .take(4)?
                    .try_into()
                    .map_err(|_| self.error(ErrorKind::Protobuf))?;
                Wire::Fixed32(u32::from_le_bytes(bytes))
            }
            // Groups (3, 4) are not used by these messages and 6, 7 do not exist.
            _ => return Err(Error::new(ErrorKind::Protobuf, at)),
        };
        Ok(Some((number, value, at)))
    }
}

/// Appends a varint.
pub(crate) fn put_varint(out: &mut impl bytes::BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Bytes a varint takes.
pub(crate) const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn reads_every_wire_type_and_refuses_groups() {
        // 1:varint 150, 2:fixed64, 3:bytes "hi", 4:fixed32
        let mut msg = vec![0x08, 0x96, 0x01, 0x11];
        msg.extend_from_slice(&7u64.to_le_bytes());
        msg.extend_from_slice(&[0x1a, 0x02, b'h', b'i', 0x25]);
        msg.extend_from_slice(&9u32.to_le_bytes());
        let mut f = Fields::new(&msg, 0);
        assert_eq!(
            f.next_field().unwrap().map(|x| (x.0, x.1)),
            Some((1, Wire::Varint(150)))
        );
        assert_eq!(
            f.next_field().unwrap().map(|x| (x.0, x.1)),
            Some((2, Wire::Fixed64(7)))
        );
        assert_eq!(
            f.next_field().unwrap().map(|x| (x.0, x.1)),
            Some((3, Wire::Bytes(b"hi")))
        );
        assert_eq!(
            f.next_field().unwrap().map(|x| (x.0, x.1)),
            Some((4, Wire::Fixed32(9)))
        );
        assert_eq!(f.next_field().unwrap(), None);
        assert!(Fields::new(&[0x0b], 0).next_field().is_err());
        assert!(Fields::new(&[0x1a, 0x05, 1], 0).next_field().is_err());
        assert!(
            Fields::new(
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02
                ],
                0
            )
            .next_field()
            .is_err()
        );
        assert!(
            Fields::new(&[0x00, 0x00], 0).next_field().is_err(),
            "field number 0"
        );
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut f = Fields::new(&out, 0);
            assert_eq!(f.varint().unwrap(), v);
        }
    }
}
