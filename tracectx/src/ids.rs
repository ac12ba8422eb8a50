//! Identifiers, flags and sampling states, and the lowercase-hex codec they share.
#![deny(clippy::indexing_slicing)]

use core::fmt;

use crate::Config;
use crate::error::{Error, ErrorKind, Field};

/// A trace id: 16 bytes, remembering whether it arrived as 64 or 128 bits so a 64-bit id is
/// re-emitted as 16 hex digits (as Envoy and Brave do).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId {
    bytes: [u8; 16],
    bits128: bool,
}

impl TraceId {
    /// A 128-bit id.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self {
            bytes,
            bits128: true,
        }
    }

    /// A 64-bit id (the high half is zero).
    pub const fn from_u64(id: u64) -> Self {
        Self {
            bytes: (id as u128).to_be_bytes(),
            bits128: false,
        }
    }

    /// The 16 bytes, big-endian (64-bit ids in the low half).
    pub const fn bytes(&self) -> [u8; 16] {
        self.bytes
    }

    /// 64 or 128.
    pub const fn bits(&self) -> u8 {
        if self.bits128 { 128 } else { 64 }
    }

    /// The same id emitted as 128 bits (32 hex digits).
    pub const fn widened(self) -> Self {
        Self {
            bytes: self.bytes,
            bits128: true,
        }
    }

    /// Whether every byte is zero (invalid in every format).
    pub fn is_zero(&self) -> bool {
        self.bytes == [0; 16]
    }

    /// Parses 16 or 32 lowercase hex digits (uppercase too under [`Config::uppercase_hex`]).
    ///
    /// # Errors
    /// [`ErrorKind::BadLength`], [`ErrorKind::InvalidByte`], [`ErrorKind::ZeroId`].
    pub fn parse(hex: &[u8], config: &Config) -> Result<Self, Error> {
        let mut bytes = [0u8; 16];
        match hex.len() {
            32 => decode_hex(hex, &mut bytes, Field::TraceId, config)?,
            16 => decode_hex(
                hex,
                bytes.get_mut(8..).unwrap_or_default(),
                Field::TraceId,
                config,
            )?,
            found => return Err(bad_length(Field::TraceId, 32, found)),
        }
        let id = Self {
            bytes,
            bits128: hex.len() == 32,
        };
        if id.is_zero() {
            return Err(Error::at(
                ErrorKind::ZeroId {
                    field: Field::TraceId,
                },
                0,
            ));
        }
        Ok(id)
    }

    /// Writes 16 or 32 lowercase hex digits into `out` and returns them.
    pub fn write_hex<'o>(&self, out: &'o mut [u8; 32]) -> &'o str {
        let (bytes, len) = if self.bits128 {
            (&self.bytes[..], 32)
        } else {
            (self.bytes.get(8..).unwrap_or_default(), 16)
        };
        encode_hex(bytes, out.get_mut(..len).unwrap_or_default());
        core::str::from_utf8(out.get(..len).unwrap_or_default()).unwrap_or_default()
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        f.write_str(self.write_hex(&mut buf))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A span (or parent) id: 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SpanId(pub [u8; 8]);

impl SpanId {
    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }

    /// Parses 16 lowercase hex digits; `field` names it in errors.
    ///
    /// # Errors
    /// [`ErrorKind::BadLength`], [`ErrorKind::InvalidByte`], [`ErrorKind::ZeroId`].
    pub fn parse(hex: &[u8], field: Field, config: &Config) -> Result<Self, Error> {
        if hex.len() != 16 {
            return Err(bad_length(field, 16, hex.len()));
        }
        let mut bytes = [0u8; 8];
        decode_hex(hex, &mut bytes, field, config)?;
        let id = Self(bytes);
        if id.is_zero() {
            return Err(Error::at(ErrorKind::ZeroId { field }, 0));
        }
        Ok(id)
    }

    /// Writes 16 lowercase hex digits.
    pub fn write_hex<'o>(&self, out: &'o mut [u8; 16]) -> &'o str {
        encode_hex(&self.0, out);
        core::str::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 16];
        f.write_str(self.write_hex(&mut buf))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// W3C trace flags. Bits are tested one by one; unknown bits are kept as received and zeroed on
/// output (the spec reserves them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(pub u8);

impl TraceFlags {
    /// Bit 0: the caller may have recorded the trace.
    pub const SAMPLED: u8 = 0x01;
    /// Bit 1 (Level 2): the right-most 7 bytes of the trace id are random.
    pub const RANDOM: u8 = 0x02;

    /// Whether `sampled` is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED != 0
    }

    /// Whether `random` is set.
    pub const fn is_random(self) -> bool {
        self.0 & Self::RANDOM != 0
    }

    /// The flags as emitted: only the defined bits.
    pub const fn defined(self) -> Self {
        Self(self.0 & (Self::SAMPLED | Self::RANDOM))
    }

    /// With `sampled` set or cleared.
    pub const fn with_sampled(self, sampled: bool) -> Self {
        Self(if sampled {
            self.0 | Self::SAMPLED
        } else {
            self.0 & !Self::SAMPLED
        })
    }
}

/// The B3 sampling state, kept apart from W3C flags (no bit collision, survives round trips).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sampling {
    /// No decision: the receiver decides.
    #[default]
    Defer,
    /// Not sampled (`0`).
    Deny,
    /// Sampled (`1`).
    Accept,
    /// Debug (`d`, `X-B3-Flags: 1`): sampled, and forced through.
    Debug,
}

impl Sampling {
    /// `Some(true)` for accept and debug, `Some(false)` for deny, `None` for defer.
    pub const fn sampled(self) -> Option<bool> {
        match self {
            Self::Defer => None,
            Self::Deny => Some(false),
            Self::Accept | Self::Debug => Some(true),
        }
    }
}

pub(crate) fn bad_length(field: Field, expected: u16, found: usize) -> Error {
    Error::at(
        ErrorKind::BadLength {
            field,
            expected,
            found: u16::try_from(found).unwrap_or(u16::MAX),
        },
        0,
    )
}

const fn hex_value(b: u8, uppercase: bool) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' if uppercase => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Digit values for lowercase hex (`LOWER`) and for either case (`ANY`); 0xFF elsewhere.
// Evaluated at compile time: an index out of bounds fails the build, it cannot panic.
#[allow(clippy::indexing_slicing)]
const fn hex_table(uppercase: bool) -> [u8; 256] {
    let mut table = [0xFF; 256];
    let mut b = 0;
    while b < 256 {
        if let Some(v) = hex_value(b as u8, uppercase) {
            table[b] = v;
        }
        b += 1;
    }
    table
}

// Built at compile time; the indices are bytes, always in range.
const LOWER: [u8; 256] = hex_table(false);
const ANY: [u8; 256] = hex_table(true);

/// Decodes `hex` (two digits per byte) into `out`; the error offset is the bad digit's.
pub(crate) fn decode_hex(
    hex: &[u8],
    out: &mut [u8],
    field: Field,
    config: &Config,
) -> Result<(), Error> {
    let table = if config.uppercase_hex { &ANY } else { &LOWER };
    let value = |b: u8| table.get(usize::from(b)).copied().unwrap_or(0xFF);
    let mut invalid = 0u8;
    for (pair, byte) in hex.chunks_exact(2).zip(out.iter_mut()) {
        let (hi, lo) = match pair {
            [h, l] => (value(*h), value(*l)),
            _ => (0xFF, 0xFF),
        };
        invalid |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0F);
    }
    // One branch at the end; find the offending digit only on failure.
    if invalid & 0x80 != 0 {
        let at = hex.iter().position(|b| value(*b) == 0xFF).unwrap_or(0);
        return Err(Error::at(ErrorKind::InvalidByte { field }, at));
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` into `out` (twice as long).
pub(crate) fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        if let [hi, lo] = pair {
            *hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            *lo = HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0');
        }
    }
}
