//! Whitespace tokenising and the number grammars the kernel's `seq_printf` formats produce.
#![deny(clippy::indexing_slicing)]

/// Splits a line into space-separated tokens, remembering each token's offset in the line.
#[derive(Debug, Clone)]
pub(crate) struct Tokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    pub(crate) const fn new(line: &'a [u8]) -> Self {
        Self { line, pos: 0 }
    }

    /// Offset just past the last token returned (where the next search starts).
    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    /// What follows the last token returned, with surrounding blanks trimmed.
    pub(crate) fn rest(&self) -> &'a [u8] {
        trim_blanks(self.line.get(self.pos..).unwrap_or_default())
    }
}

impl<'a> Iterator for Tokens<'a> {
    /// `(offset in line, token)`.
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.line.get(self.pos..)?;
        let start = self.pos + rest.iter().position(|&b| !is_blank(b))?;
        let after = self.line.get(start..)?;
        let len = after
            .iter()
            .position(|&b| is_blank(b))
            .unwrap_or(after.len());
        self.pos = start + len;
        Some((start, after.get(..len)?))
    }
}

/// Blanks the kernel uses between and around columns (spaces; tabs and CR tolerated).
pub(crate) const fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `bytes` without leading and trailing blanks.
pub(crate) fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// 1 to 16 hex digits (either case) as a `u64`.
pub(crate) fn hex_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |acc, &b| Some((acc << 4) | u64::from(hex_value(b)?)))
}

/// 1 to 8 hex digits as a `u32`.
pub(crate) fn hex_u32(digits: &[u8]) -> Option<u32> {
    if digits.len() > 8 {
        return None;
    }
    hex_u64(digits).and_then(|v| u32::try_from(v).ok())
}

/// Unsigned decimal, no sign, no blanks, without overflow.
pub(crate) fn dec_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Signed decimal (`%d`): an optional `-`, then digits, within `i64`.
pub(crate) fn dec_i64(text: &[u8]) -> Option<i64> {
    match text.split_first() {
        Some((b'-', digits)) => {
            let magnitude = dec_u64(digits)?;
            0i64.checked_sub_unsigned(magnitude)
        }
        _ => i64::try_from(dec_u64(text)?).ok(),
    }
}

/// Splits `token` at its last `:` into the parts before and after it.
pub(crate) fn split_colon(token: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = memchr::memrchr(b':', token)?;
    Some((token.get(..at)?, token.get(at + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_report_offsets() {
        let toks: Vec<_> = Tokens::new(b"  0: ab  c \n").collect();
        assert_eq!(toks, vec![(2, &b"0:"[..]), (5, &b"ab"[..]), (9, &b"c"[..])]);
    }

    #[test]
    fn numbers_reject_what_the_kernel_never_prints() {
        assert_eq!(hex_u32(b"0100007F"), Some(0x0100_007F));
        assert_eq!(hex_u32(b"100000000"), None);
        assert_eq!(hex_u64(b"FFFFFFFFFFFFFFF6"), Some(0xFFFF_FFFF_FFFF_FFF6));
        assert_eq!(hex_u64(b""), None);
        assert_eq!(hex_u64(b"0x1"), None);
        assert_eq!(dec_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(dec_u64(b"18446744073709551616"), None);
        assert_eq!(dec_i64(b"-1"), Some(-1));
        assert_eq!(dec_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(dec_i64(b"-"), None);
        assert_eq!(dec_i64(b"+1"), None);
        assert_eq!(trim_blanks(b"  a b \n"), b"a b");
        assert_eq!(trim_blanks(b"   "), b"");
    }
}
