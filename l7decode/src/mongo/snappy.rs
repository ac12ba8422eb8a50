//! Snappy's raw format (MongoDB compressor 1), decoded into a caller's buffer: a varint length,
//! then literals and back-references. Bounded by the length announced, never panics.

#![deny(clippy::indexing_slicing)]

/// Decodes `input` into `out` (cleared first), at most its first `limit` bytes: `Some(true)` when
/// whole, `Some(false)` when cut at `limit` (what follows is not looked at); `None` when it is
/// not valid snappy or its length differs from `expected`.
pub(crate) fn decompress(
    input: &[u8],
    expected: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Option<bool> {
    out.clear();
    let (len, mut at) = varint(input)?;
    if len != expected {
        return None;
    }
    let limit = limit.min(len);
    out.reserve(limit);
    while at < input.len() {
        if out.len() == limit && limit < len {
            return Some(false);
        }
        let room = limit - out.len();
        let tag = *input.get(at)?;
        at += 1;
        match tag & 3 {
            0 => {
                let mut n = usize::from(tag >> 2) + 1;
                if n > 60 {
                    let bytes = n - 60;
                    let mut v = 0usize;
                    for i in 0..bytes {
                        v |= usize::from(*input.get(at + i)?) << (8 * i);
                    }
                    at += bytes;
                    n = v + 1;
                }
                let literal = input.get(at..at.checked_add(n)?)?;
                if out.len() + n > len {
                    return None;
                }
                out.extend_from_slice(literal.get(..n.min(room))?);
                at += n;
            }
            kind => {
                let (n, offset) = match kind {
                    1 => {
                        let low = usize::from(*input.get(at)?);
                        at += 1;
                        (
                            4 + usize::from((tag >> 2) & 7),
                            (usize::from(tag >> 5) << 8) | low,
                        )
                    }
                    2 => {
                        let o = u16::from_le_bytes(input.get(at..at + 2)?.try_into().ok()?);
                        at += 2;
                        (usize::from(tag >> 2) + 1, usize::from(o))
                    }
                    _ => {
                        let o = u32::from_le_bytes(input.get(at..at + 4)?.try_into().ok()?);
                        at += 4;
                        (usize::from(tag >> 2) + 1, usize::try_from(o).ok()?)
                    }
                };
                if offset == 0 || offset > out.len() || out.len() + n > len {
                    return None;
                }
                // Copies may overlap what they produce (a run): byte by byte.
                let start = out.len() - offset;
                for i in 0..n.min(room) {
                    let b = *out.get(start + i)?;
                    out.push(b);
                }
            }
        }
    }
    (out.len() == len).then_some(true)
}

fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, byte) in b.iter().enumerate().take(5) {
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_copies() {
        // "abcd" then a copy of 4 from offset 4, then a run copy (offset 1) of 6: "abcdabcddddddd".
        let mut input = vec![14];
        input.push(3 << 2); // literal of 4
        input.extend_from_slice(b"abcd");
        input.push(1); // copy with a 1-byte offset, length 4
        input.push(4);
        input.push(2 | (5 << 2)); // copy 2-byte offset, length 6
        input.extend_from_slice(&1u16.to_le_bytes());
        let mut out = Vec::new();
        assert_eq!(decompress(&input, 14, 99, &mut out), Some(true));
        assert_eq!(out, b"abcdabcddddddd");
        assert_eq!(decompress(&input, 15, 99, &mut out), None);
        assert_eq!(
            decompress(&[4, 1 | (2 << 2), 9], 4, 99, &mut out),
            None,
            "copy before data"
        );
        assert_eq!(
            decompress(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80], 1, 99, &mut out),
            None
        );
        // Cut inside a literal, inside a copy, and at a boundary: the first bytes, no more.
        for (limit, expected) in [
            (2, &b"ab"[..]),
            (6, b"abcdab"),
            (8, b"abcdabcd"),
            (14, b"abcdabcddddddd"),
        ] {
            let whole = limit == 14;
            assert_eq!(
                decompress(&input, 14, limit, &mut out),
                Some(whole),
                "{limit}"
            );
            assert_eq!(out, expected, "{limit}");
        }
    }
}
