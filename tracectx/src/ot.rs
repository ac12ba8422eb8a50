//! `x-ot-span-context`: the LightStep/OpenTracing single header Envoy's OpenTracing drivers used,
//! base64 of a protobuf `BinaryCarrier { BasicTracerCarrier basic_ctx = 2; }` with
//! `fixed64 trace_id = 1; fixed64 span_id = 2; bool sampled = 3; map<string,string> baggage_items = 4;`.
#![deny(clippy::indexing_slicing)]

use crate::error::{Error, ErrorKind, Field};
use crate::ids::{SpanId, TraceId};

/// A decoded OT span context; baggage borrows the decode buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtSpanContext<'a> {
    /// The trace id; the format carries 64 bits, so it is a 64-bit [`TraceId`].
    pub trace_id: TraceId,
    /// The span id.
    pub span_id: SpanId,
    /// Whether the trace is sampled.
    pub sampled: bool,
    basic: &'a [u8],
}

impl<'a> OtSpanContext<'a> {
    /// Baggage items `(key, value)` in wire order.
    pub fn baggage(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut fields = Pb(self.basic);
        core::iter::from_fn(move || {
            loop {
                let (number, wire, payload) = fields.next()?;
                if number == 4 && wire == 2 {
                    let mut entry = Pb(payload);
                    let (mut k, mut v) = ("", "");
                    while let Some((n, w, p)) = entry.next() {
                        match (n, w) {
                            (1, 2) => k = core::str::from_utf8(p).unwrap_or_default(),
                            (2, 2) => v = core::str::from_utf8(p).unwrap_or_default(),
                            _ => {}
                        }
                    }
                    return Some((k, v));
                }
            }
        })
    }
}

/// Decodes an `x-ot-span-context` value into `scratch` (at least `value.len() * 3 / 4` bytes).
///
/// # Errors
/// [`ErrorKind::InvalidByte`] for bad base64 or protobuf, [`ErrorKind::Missing`] when the value is
/// empty or carries no `basic_ctx`, [`ErrorKind::BufferTooSmall`].
pub fn decode_ot_span_context<'s>(
    value: &[u8],
    scratch: &'s mut [u8],
) -> Result<OtSpanContext<'s>, Error> {
    let value = crate::w3c::trim_ows(value);
    if value.is_empty() {
        return Err(Error::at(
            ErrorKind::Missing {
                field: Field::OtSpanContext,
            },
            0,
        ));
    }
    let len = base64_decode(value, scratch)?;
    let decoded: &'s [u8] = scratch.get(..len).unwrap_or_default();
    let corrupt = |at: usize| {
        Error::at(
            ErrorKind::InvalidByte {
                field: Field::OtSpanContext,
            },
            at,
        )
    };
    let mut basic = None;
    let mut outer = Pb(decoded);
    while !outer.0.is_empty() {
        let (number, wire, payload) = outer.next().ok_or_else(|| corrupt(0))?;
        if number == 2 && wire == 2 {
            basic = Some(payload);
        }
    }
    let basic = basic.ok_or_else(|| {
        Error::at(
            ErrorKind::Missing {
                field: Field::OtSpanContext,
            },
            0,
        )
    })?;
    let (mut trace_id, mut span_id, mut sampled) = (0u64, 0u64, false);
    let mut fields = Pb(basic);
    while !fields.0.is_empty() {
        let (number, wire, payload) = fields.next().ok_or_else(|| corrupt(0))?;
        let fixed = |p: &[u8]| -> Result<u64, Error> {
            Ok(u64::from_le_bytes(p.try_into().map_err(|_| corrupt(0))?))
        };
        match (number, wire) {
            (1, 1) => trace_id = fixed(payload)?,
            (2, 1) => span_id = fixed(payload)?,
            (3, 0) => sampled = payload.first().is_some_and(|b| *b != 0),
            _ => {}
        }
    }
    if trace_id == 0 || span_id == 0 {
        return Err(Error::at(
            ErrorKind::ZeroId {
                field: Field::OtSpanContext,
            },
            0,
        ));
    }
    Ok(OtSpanContext {
        trace_id: TraceId::from_u64(trace_id),
        span_id: SpanId(span_id.to_be_bytes()),
        sampled,
        basic,
    })
}

/// Writes an OT span context (ids, sampled, `baggage`) as the `x-ot-span-context` header value
/// into `out` and returns it.
///
/// The format carries 64-bit ids: a 128-bit `trace_id` is sent as its low 64 bits (its
/// rightmost 16 hex digits), as B3 receivers that only know 64 bits read it.
///
/// ```
/// use tracectx::{SpanId, TraceId, decode_ot_span_context, write_ot_span_context};
///
/// let (trace, span) = (TraceId::from_u64(0x0af7651916cd43dd), SpanId(0xb7ad6b7169203331u64.to_be_bytes()));
/// let mut out = [0u8; 128];
/// let value = write_ot_span_context(trace, span, true, &[("user", "alice")], &mut out)?;
/// let mut scratch = [0u8; 128];
/// let ctx = decode_ot_span_context(value.as_bytes(), &mut scratch)?;
/// assert_eq!((ctx.trace_id, ctx.span_id, ctx.sampled), (trace, span, true));
/// assert_eq!(ctx.baggage().collect::<Vec<_>>(), [("user", "alice")]);
/// # Ok::<(), tracectx::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::BufferTooSmall`] when `out` cannot hold the value, or the baggage is too large
/// for the encoder (more than 127 bytes of protobuf).
///
/// # Panics
/// Never.
pub fn write_ot_span_context<'o>(
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
    baggage: &[(&str, &str)],
    out: &'o mut [u8],
) -> Result<&'o str, Error> {
    // basic_ctx: 9 + 9 + 2 bytes plus the baggage entries; everything here is short, so lengths
    // fit one varint byte unless the baggage is large (then two).
    let mut raw = [0u8; 512];
    let mut at = 0;
    let mut put = |bytes: &[u8], at: &mut usize| -> Result<(), Error> {
        let dst = raw
            .get_mut(*at..*at + bytes.len())
            .ok_or_else(|| Error::at(ErrorKind::BufferTooSmall { needed: 512 }, 0))?;
        dst.copy_from_slice(bytes);
        *at += bytes.len();
        Ok(())
    };
    let entry_len = |k: &str, v: &str| 2 + k.len() + 2 + v.len();
    let basic_len: usize = 20
        + baggage
            .iter()
            .map(|(k, v)| 2 + entry_len(k, v))
            .sum::<usize>();
    if basic_len > 127 || baggage.iter().any(|(k, v)| entry_len(k, v) > 127) {
        return Err(Error::at(
            ErrorKind::BufferTooSmall { needed: basic_len },
            0,
        ));
    }
    put(&[0x12, basic_len as u8, 0x09], &mut at)?;
    let [_, _, _, _, _, _, _, _, t0, t1, t2, t3, t4, t5, t6, t7] = trace_id.bytes();
    put(
        &u64::from_be_bytes([t0, t1, t2, t3, t4, t5, t6, t7]).to_le_bytes(),
        &mut at,
    )?;
    put(&[0x11], &mut at)?;
    put(&u64::from_be_bytes(span_id.0).to_le_bytes(), &mut at)?;
    put(&[0x18, u8::from(sampled)], &mut at)?;
    for (k, v) in baggage {
        put(&[0x22, entry_len(k, v) as u8, 0x0A, k.len() as u8], &mut at)?;
        put(k.as_bytes(), &mut at)?;
        put(&[0x12, v.len() as u8], &mut at)?;
        put(v.as_bytes(), &mut at)?;
    }
    let n = base64_encode(raw.get(..at).unwrap_or_default(), out)?;
    Ok(core::str::from_utf8(out.get(..n).unwrap_or_default()).unwrap_or_default())
}

/// A minimal protobuf field reader: `(number, wire type, payload)`; varints come back as their
/// raw bytes.
struct Pb<'a>(&'a [u8]);

impl<'a> Pb<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.0.get(..n)?;
        self.0 = self.0.get(n..)?;
        Some(taken)
    }

    fn next(&mut self) -> Option<(u64, u8, &'a [u8])> {
        let tag = self.varint()?;
        let wire = (tag & 7) as u8;
        let start = self.0;
        let payload = match wire {
            0 => {
                self.varint()?;
                start.get(..start.len() - self.0.len())?
            }
            1 => self.take(8)?,
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                self.take(n)?
            }
            5 => self.take(4)?,
            _ => return None,
        };
        Some((tag >> 3, wire, payload))
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_decode(text: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let bad = |at: usize| {
        Error::at(
            ErrorKind::InvalidByte {
                field: Field::OtSpanContext,
            },
            at,
        )
    };
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut len = 0;
    for (i, &c) in text.iter().enumerate() {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| bad(i))? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let byte = (acc >> bits) as u8;
            let small = Error::at(ErrorKind::BufferTooSmall { needed: text.len() }, 0);
            *out.get_mut(len).ok_or(small)? = byte;
            len += 1;
        }
    }
    if text.len() % 4 == 1 {
        return Err(bad(text.len()));
    }
    Ok(len)
}

fn base64_encode(bytes: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let needed = bytes.len().div_ceil(3) * 4;
    if out.len() < needed {
        return Err(Error::at(ErrorKind::BufferTooSmall { needed }, 0));
    }
    for (chunk, dst) in bytes.chunks(3).zip(out.chunks_mut(4)) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let acc = (b(0) << 16) | (b(1) << 8) | b(2);
        for (j, slot) in dst.iter_mut().enumerate() {
            *slot = if j <= chunk.len() {
                ALPHABET
                    .get(((acc >> (18 - 6 * j)) & 63) as usize)
                    .copied()
                    .unwrap_or(b'A')
            } else {
                b'='
            };
        }
    }
    Ok(needed)
}
