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

    // A plain byte loop: this is the innermost loop of every row, and iterator adaptors with
    // closures measured several times slower here.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let line = self.line;
        let mut i = self.pos;
        while line.get(i).is_some_and(|&b| is_blank(b)) {
            i += 1;
        }
        let start = i;
        while line.get(i).is_some_and(|&b| !is_blank(b)) {
            i += 1;
        }
        self.pos = i;
        if i == start {
            return None;
        }
        Some((start, line.get(start..i)?))
    }
}

/// Separators between columns: the space the kernel uses, and any ASCII control byte (tabs,
/// CR, newline) a copy of the file may have picked up. One definition, shared by the scalar and
/// the word-at-a-time scanners below, so every reader splits lines the same way.
#[inline]
pub(crate) const fn is_blank(b: u8) -> bool {
    b <= b' '
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `word` set where that byte [`is_blank`]: `(b | 0x80) - 0x21` keeps its
/// high bit exactly when `b & 0x7F > 0x20`, and never borrows across bytes.
#[inline]
const fn blank_bits(word: u64) -> u64 {
    !(word | HIGH_BITS).wrapping_sub(0x21 * LOW_BITS) & !word & HIGH_BITS
}

/// Eight bytes at `at`, first byte lowest.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let eight: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(eight))
}

/// Whether `bytes[at..at + len]` exists and holds no blank (`len` at least 8), checked a word at a
/// time with the last word overlapping.
#[inline]
pub(crate) fn all_nonblank(bytes: &[u8], at: usize, len: usize) -> bool {
    let Some(last) = (at + len).checked_sub(8).filter(|&l| l >= at) else {
        return false;
    };
    let mut i = at;
    while i < last {
        match word_at(bytes, i) {
            Some(w) if blank_bits(w) == 0 => i += 8,
            _ => return false,
        }
    }
    word_at(bytes, last).is_some_and(|w| blank_bits(w) == 0)
}

/// Number of tokens in `bytes`, counting no further than `limit` (a word at a time: a token
/// starts at each non-blank byte whose predecessor is blank).
#[inline]
pub(crate) fn count_tokens(bytes: &[u8], limit: usize) -> usize {
    // Bit 7 set when the byte before the current word was blank; the line starts after a blank.
    let mut previous_blank = 0x80;
    let mut count = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        count += token_starts(u64::from_le_bytes(eight), &mut previous_blank);
        if count >= limit {
            return limit;
        }
    }
    let mut eight = [b' '; 8];
    for (dst, src) in eight.iter_mut().zip(chunks.remainder()) {
        *dst = *src;
    }
    count += token_starts(u64::from_le_bytes(eight), &mut previous_blank);
    count.min(limit)
}

/// Non-blank bytes of `word` preceded by a blank (the previous word's last byte for the first).
#[inline]
fn token_starts(word: u64, previous_blank: &mut u64) -> usize {
    let blank = blank_bits(word);
    let starts = !blank & HIGH_BITS & ((blank << 8) | *previous_blank);
    *previous_blank = (blank >> 56) & 0x80;
    // One bit per byte at most: summing the bytes with a multiply beats `count_ones`, which is
    // a long bit-twiddling sequence on baseline x86-64 (no POPCNT).
    (((starts >> 7).wrapping_mul(LOW_BITS)) >> 56) as usize
}

/// Whether `bytes` holds only spaces and newlines (the kernel's padding), a word at a time.
#[inline]
pub(crate) fn only_padding(bytes: &[u8]) -> bool {
    let spaces = u64::from_le_bytes([b' '; 8]);
    let padding = |b: &u8| *b == b' ' || *b == b'\n';
    let mut chunks = bytes.chunks_exact(8);
    let words_ok = chunks.by_ref().all(|c| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(c);
        // All spaces is the common case; a word with a newline is checked byte by byte.
        u64::from_le_bytes(eight) == spaces || c.iter().all(padding)
    });
    words_ok && chunks.remainder().iter().all(padding)
}

/// `bytes` without its trailing spaces, skipped a word at a time (the IPv4 table's padding).
#[inline]
pub(crate) fn trim_padding_end(bytes: &[u8]) -> &[u8] {
    let spaces = u64::from_le_bytes([b' '; 8]);
    let mut end = bytes.len();
    while end >= 8 && word_at(bytes, end - 8) == Some(spaces) {
        end -= 8;
    }
    while end > 0 && bytes.get(end - 1) == Some(&b' ') {
        end -= 1;
    }
    bytes.get(..end).unwrap_or_default()
}

/// The offset of the first byte at or after `from` that is not a space, a word at a time (the
/// IPv4 table pads every line to 149 bytes).
#[inline]
pub(crate) fn skip_padding(bytes: &[u8], from: usize) -> usize {
    let spaces = u64::from_le_bytes([b' '; 8]);
    let mut i = from;
    while word_at(bytes, i) == Some(spaces) {
        i += 8;
    }
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// Exactly eight hex digits at `bytes[at..]` (either case) as a `u32`, decoded a word at a time.
#[inline(always)]
pub(crate) fn hex8_at(bytes: &[u8], at: usize) -> Option<u32> {
    let eight: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    let x = u64::from_be_bytes(eight);
    if x & HIGH_BITS != 0 {
        return None;
    }
    // For bytes below 0x80, `(b | 0x80) - n` keeps bit 7 exactly when b >= n.
    let at_least = |v: u64, n: u64| (v | HIGH_BITS).wrapping_sub(n * LOW_BITS) & HIGH_BITS;
    let digit = at_least(x, 0x30) & !at_least(x, 0x3A);
    let folded = x | (0x20 * LOW_BITS);
    let letter = at_least(folded, 0x61) & !at_least(folded, 0x67);
    if digit | letter != HIGH_BITS {
        return None;
    }
    let mut v = (x & (0x0F * LOW_BITS)) + (letter >> 7) * 9;
    v = (v | (v >> 4)) & 0x00FF_00FF_00FF_00FF;
    v = (v | (v >> 8)) & 0x0000_FFFF_0000_FFFF;
    v = (v | (v >> 16)) & 0x0000_0000_FFFF_FFFF;
    Some(v as u32)
}

/// `bytes` without leading and trailing blanks.
pub(crate) fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let mut start = 0;
    while bytes.get(start).is_some_and(|&b| is_blank(b)) {
        start += 1;
    }
    let mut end = bytes.len();
    while end > start && bytes.get(end - 1).is_some_and(|&b| is_blank(b)) {
        end -= 1;
    }
    bytes.get(start..end).unwrap_or_default()
}

/// Hex digit values, `0xFF` for every other byte: one lookup per digit instead of range tests.
// Evaluated at compile time: an index out of bounds here fails the build, it cannot panic.
#[allow(clippy::indexing_slicing)]
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'A' as usize + i] = 10 + i as u8;
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// 1 to 16 hex digits (either case) as a `u64`.
#[inline]
pub(crate) fn hex_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut acc = 0u64;
    let mut invalid = 0u8;
    for &b in digits {
        let v = HEX_VALUE.get(usize::from(b)).copied().unwrap_or(0xFF);
        invalid |= v;
        acc = (acc << 4) | u64::from(v & 0x0F);
    }
    // Only the invalid marker has the high bit set; checking once keeps the loop branch-free.
    (invalid & 0x80 == 0).then_some(acc)
}

/// 1 to 16 hex digits whose value fits a `u32` (leading zeros are harmless).
#[inline]
pub(crate) fn hex_u32(digits: &[u8]) -> Option<u32> {
    hex_u64(digits).and_then(|v| u32::try_from(v).ok())
}

/// Unsigned decimal, no sign, no blanks, without overflow.
#[inline]
pub(crate) fn dec_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut acc = 0u64;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(acc)
}

/// Signed decimal (`%d`): an optional `-`, then digits, within `i64`.
#[inline]
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
    let at = token.iter().rposition(|&b| b == b':')?;
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
    fn word_at_a_time_scanners_agree_with_byte_loops() {
        let mut rng = 0x1234_5678_u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 40) as usize;
            let alphabet = b" \t0123456789ABCDEFabcdefg:xX\x00\x7f\x80\xff\x1f!";
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((rng >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            let tokens = Tokens::new(&bytes).count();
            for limit in [0, 1, 3, 100] {
                assert_eq!(count_tokens(&bytes, limit), tokens.min(limit), "{bytes:?}");
            }
            if len >= 8 {
                for at in 0..=len - 8 {
                    let slice = &bytes[at..at + 8];
                    let scalar = if slice.iter().all(|b| b.is_ascii_hexdigit()) {
                        hex_u32(slice)
                    } else {
                        None
                    };
                    assert_eq!(hex8_at(&bytes, at), scalar, "{slice:?}");
                    assert_eq!(
                        all_nonblank(&bytes, at, len - at),
                        bytes[at..].iter().all(|&b| !is_blank(b))
                    );
                }
            }
        }
        assert_eq!(hex8_at(b"0100007F", 0), Some(0x0100_007F));
        assert_eq!(hex8_at(b"deadBEEF", 0), Some(0xDEAD_BEEF));
        assert_eq!(hex8_at(b"0100007G", 0), None);
        assert_eq!(hex8_at(b"0100007", 0), None);
    }

    #[test]
    fn numbers_reject_what_the_kernel_never_prints() {
        assert_eq!(hex_u32(b"0100007F"), Some(0x0100_007F));
        assert_eq!(hex_u32(b"100000000"), None);
        assert_eq!(hex_u32(b"000000001"), Some(1));
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
