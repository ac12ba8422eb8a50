//! The HTTP variant: `x-envoy-peer-metadata` is the standard-alphabet base64 of the deterministic
//! inner `Struct` (padding written, optional when read); `x-envoy-peer-metadata-id` is the node id.
#![deny(clippy::indexing_slicing)]

use bytes::BufMut;

use super::structure::StructView;
use crate::Limits;
use crate::error::{Error, ErrorKind};

/// Header carrying the base64 inner struct.
pub const HEADER_PEER_METADATA: &str = "x-envoy-peer-metadata";
/// Header carrying the node id.
pub const HEADER_PEER_METADATA_ID: &str = "x-envoy-peer-metadata-id";

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Bytes [`decode_peer_metadata_header`] needs in its scratch buffer for a header `value`.
pub const fn decoded_len_max(value_len: usize) -> usize {
    value_len / 4 * 3 + 3
}

/// Decodes standard base64 into `out`, padding optional, and returns the decoded length.
///
/// # Errors
/// [`ErrorKind::Base64`] with the offset of the first bad character (or of a length no encoder
/// produces), [`ErrorKind::BufferTooSmall`] when `out` is too short.
pub fn decode_base64(text: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let unpadded = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    if unpadded.len() % 4 == 1 || (unpadded.len() != text.len() && !text.len().is_multiple_of(4)) {
        return Err(Error::new(ErrorKind::Base64, text.len() as u64));
    }
    let needed = unpadded.len() / 4 * 3 + (unpadded.len() % 4).saturating_sub(1);
    if out.len() < needed {
        return Err(Error::new(ErrorKind::BufferTooSmall { needed }, 0));
    }
    let mut written = 0;
    for (i, quad) in unpadded.chunks(4).enumerate() {
        let mut acc = 0u32;
        for (j, &c) in quad.iter().enumerate() {
            let v = sextet(c).ok_or_else(|| Error::new(ErrorKind::Base64, (i * 4 + j) as u64))?;
            acc |= u32::from(v) << (18 - 6 * j);
        }
        let bytes = acc.to_be_bytes();
        // Bits below the last whole byte are ignored, as lenient decoders do.
        let n = quad.len() - 1;
        let dst = out
            .get_mut(written..written + n)
            .ok_or_else(|| Error::new(ErrorKind::Base64, 0))?;
        dst.copy_from_slice(bytes.get(1..1 + n).unwrap_or_default());
        written += n;
    }
    Ok(written)
}

/// Encodes `bytes` as padded standard base64 (the `x-envoy-peer-metadata` value), appends it to
/// `out` and returns the length written.
///
/// ```
/// let mut value = Vec::new();
/// assert_eq!(peerx::encode_base64(b"peer", &mut value)?, 8);
/// assert_eq!(value, b"cGVlcg==");
/// # Ok::<(), peerx::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::BufferTooSmall`] when `out` has room for fewer than `4 * ceil(len / 3)` bytes
/// (a `Vec` or `BytesMut` always has room); nothing is written then.
///
/// # Panics
/// Never.
pub fn encode_base64(bytes: &[u8], out: &mut impl BufMut) -> Result<usize, Error> {
    let needed = bytes.len().div_ceil(3) * 4;
    if out.remaining_mut() < needed {
        return Err(Error::new(ErrorKind::BufferTooSmall { needed }, 0));
    }
    for chunk in bytes.chunks(3) {
        let mut three = [0u8; 3];
        three
            .get_mut(..chunk.len())
            .unwrap_or_default()
            .copy_from_slice(chunk);
        let acc = u32::from_be_bytes([0, three[0], three[1], three[2]]);
        let mut quad = [b'='; 4];
        for (j, slot) in quad.iter_mut().enumerate().take(chunk.len() + 1) {
            *slot = ALPHABET
                .get(((acc >> (18 - 6 * j)) & 63) as usize)
                .copied()
                .unwrap_or(b'=');
        }
        out.put_slice(&quad);
    }
    Ok(needed)
}

/// Decodes an `x-envoy-peer-metadata` value into `scratch` (at least
/// [`decoded_len_max`]`(value.len())` bytes) and returns the validated inner struct, borrowing
/// `scratch`. Use [`Workload::from_struct`](crate::Workload::from_struct) for the typed view.
///
/// # Errors
/// [`ErrorKind::Base64`], [`ErrorKind::BufferTooSmall`], and the errors of [`StructView::parse`]
/// (offsets then count decoded bytes).
///
/// # Panics
/// Never.
pub fn decode_peer_metadata_header<'s>(
    value: &[u8],
    scratch: &'s mut [u8],
    limits: &Limits,
) -> Result<StructView<'s>, Error> {
    let trimmed = value.trim_ascii();
    let len = decode_base64(trimmed, scratch)?;
    let decoded: &'s [u8] = scratch.get(..len).unwrap_or_default();
    StructView::parse(decoded, 0, limits)
}
