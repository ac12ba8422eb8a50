//! B3 propagation: the single `b3` header and the `X-B3-*` multi headers.
#![deny(clippy::indexing_slicing)]

use crate::carrier::Carrier;
use crate::config::{Config, InvalidB3Single};
use crate::error::{Error, ErrorKind, Field};
use crate::ids::{Sampling, SpanId, TraceId, bad_length};

/// Largest encoded single `b3` header: 32-hex trace id, span id, sampling flag and parent id.
pub const B3_SINGLE_MAX_LEN: usize = 68;

/// What a B3 header set carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum B3 {
    /// A span context.
    Context(B3Context),
    /// Only a sampling decision (`b3: 0|1|d`, or `X-B3-Sampled`/`X-B3-Flags` alone).
    SamplingOnly(Sampling),
}

/// A B3 span context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct B3Context {
    /// Trace id, 64 or 128 bits as received.
    pub trace_id: TraceId,
    /// This span's id.
    pub span_id: SpanId,
    /// The parent span's id (absent at the root; an all-zero parent reads as absent).
    pub parent_span_id: Option<SpanId>,
    /// The sampling state.
    pub sampling: Sampling,
}

impl B3Context {
    /// A context with no parent.
    pub const fn new(trace_id: TraceId, span_id: SpanId, sampling: Sampling) -> Self {
        Self {
            trace_id,
            span_id,
            parent_span_id: None,
            sampling,
        }
    }
}

fn invalid(field: Field, at: usize) -> Error {
    Error::at(ErrorKind::InvalidByte { field }, at)
}

fn sampling_char(c: &[u8], at: usize) -> Result<Sampling, Error> {
    match c {
        b"0" => Ok(Sampling::Deny),
        b"1" => Ok(Sampling::Accept),
        b"d" => Ok(Sampling::Debug),
        _ => Err(invalid(Field::Flags, at)),
    }
}

fn optional_parent(hex: &[u8], at: usize, config: &Config) -> Result<Option<SpanId>, Error> {
    match SpanId::parse(hex, Field::ParentSpanId, config) {
        Ok(id) => Ok(Some(id)),
        Err(e) if matches!(e.kind(), ErrorKind::ZeroId { .. }) => Ok(None),
        Err(e) => Err(Error::new(e.kind(), e.offset() + at as u64)),
    }
}

/// Parses a single `b3` header: `{trace}-{span}[-{state}[-{parent}]]`, `{trace}-{span}-{parent}`
/// (as Brave reads it), or `0|1|d` alone. Lengths are fixed (16 or 32, 16, 1, 16), hex is
/// lowercase, ids non-zero; no trailing `-`.
///
/// # Errors
/// A typed reason naming the field and byte.
///
/// # Panics
/// Never.
pub fn parse_b3_single(value: &[u8], config: &Config) -> Result<B3, Error> {
    let value = crate::w3c::trim_ows(value);
    if value.len() == 1 {
        return sampling_char(value, 0).map(B3::SamplingOnly);
    }
    if value.is_empty() {
        return Err(Error::at(ErrorKind::Missing { field: Field::B3 }, 0));
    }
    let mut parts = [(&[][..], 0usize); 4];
    let mut count = 0;
    let mut at: usize = 0;
    for part in value.split(|b| *b == b'-') {
        let Some(slot) = parts.get_mut(count) else {
            return Err(invalid(Field::B3, at.saturating_sub(1)));
        };
        *slot = (part, at);
        count += 1;
        at += part.len() + 1;
    }
    let [
        (trace, _),
        (span, span_at),
        (third, third_at),
        (fourth, fourth_at),
    ] = parts;
    if count < 2 {
        return Err(bad_length(Field::SpanId, 16, 0));
    }
    let trace_id = TraceId::parse(trace, config)?;
    let span_id = SpanId::parse(span, Field::SpanId, config)
        .map_err(|e| Error::new(e.kind(), e.offset() + span_at as u64))?;
    let mut context = B3Context::new(trace_id, span_id, Sampling::Defer);
    match count {
        2 => {}
        3 if third.len() == 16 => {
            context.parent_span_id = optional_parent(third, third_at, config)?
        }
        3 => context.sampling = sampling_char(third, third_at)?,
        _ => {
            context.sampling = sampling_char(third, third_at)?;
            context.parent_span_id = optional_parent(fourth, fourth_at, config)?;
        }
    }
    Ok(B3::Context(context))
}

/// Reads the multi headers (`X-B3-TraceId`, `X-B3-SpanId`, `X-B3-ParentSpanId`, `X-B3-Sampled`,
/// `X-B3-Flags`); the first value of each wins. `Ok(None)` when none is present.
///
/// # Errors
/// A malformed header, a span id without a trace id or the reverse.
pub fn extract_b3_multi<C: Carrier + ?Sized>(
    carrier: &C,
    config: &Config,
) -> Result<Option<B3>, Error> {
    let trace = carrier.get_first("x-b3-traceid");
    let span = carrier.get_first("x-b3-spanid");
    let parent = carrier.get_first("x-b3-parentspanid");
    let sampled = carrier.get_first("x-b3-sampled");
    let flags = carrier.get_first("x-b3-flags");
    let mut sampling = match sampled.map(crate::w3c::trim_ows) {
        None => Sampling::Defer,
        Some(b"1") => Sampling::Accept,
        Some(b"0") => Sampling::Deny,
        Some(v) if config.b3_sampled_true_false && v.eq_ignore_ascii_case(b"true") => {
            Sampling::Accept
        }
        Some(v) if config.b3_sampled_true_false && v.eq_ignore_ascii_case(b"false") => {
            Sampling::Deny
        }
        Some(_) => return Err(invalid(Field::Flags, 0)),
    };
    // Debug implies accept; any other X-B3-Flags value is ignored.
    if flags.map(crate::w3c::trim_ows) == Some(b"1") {
        sampling = Sampling::Debug;
    }
    match (trace, span) {
        (None, None) => {
            if parent.is_some() {
                return Err(Error::at(
                    ErrorKind::Missing {
                        field: Field::TraceId,
                    },
                    0,
                ));
            }
            Ok((sampled.is_some() || flags.is_some()).then_some(B3::SamplingOnly(sampling)))
        }
        (Some(_), None) => Err(Error::at(
            ErrorKind::Missing {
                field: Field::SpanId,
            },
            0,
        )),
        (None, Some(_)) => Err(Error::at(
            ErrorKind::Missing {
                field: Field::TraceId,
            },
            0,
        )),
        (Some(trace), Some(span)) => {
            let trace_id = TraceId::parse(crate::w3c::trim_ows(trace), config)?;
            let span_id = SpanId::parse(crate::w3c::trim_ows(span), Field::SpanId, config)?;
            let parent_span_id = match parent {
                Some(p) => optional_parent(crate::w3c::trim_ows(p), 0, config)?,
                None => None,
            };
            Ok(Some(B3::Context(B3Context {
                trace_id,
                span_id,
                parent_span_id,
                sampling,
            })))
        }
    }
}

/// Reads B3 the way a receiver should: the single header takes precedence; an invalid single
/// header falls back to the multi headers or fails, per [`Config::invalid_b3_single`].
///
/// ```
/// use tracectx::{B3, Config, Sampling, extract_b3};
///
/// let headers = [("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")];
/// let Some(B3::Context(ctx)) = extract_b3(&headers, &Config::default())? else { panic!() };
/// assert_eq!(ctx.sampling, Sampling::Accept);
/// assert_eq!(ctx.parent_span_id.unwrap().to_string(), "05e3ac9a4f6e3b90");
/// // No B3 header at all is not an error.
/// assert_eq!(extract_b3(&[("traceparent", "…")], &Config::default())?, None);
/// # Ok::<(), tracectx::Error>(())
/// ```
///
/// # Errors
/// As for [`parse_b3_single`] and [`extract_b3_multi`].
pub fn extract_b3<C: Carrier + ?Sized>(carrier: &C, config: &Config) -> Result<Option<B3>, Error> {
    match carrier.get_first("b3").map(|v| parse_b3_single(v, config)) {
        Some(Ok(b3)) => Ok(Some(b3)),
        Some(Err(e)) => match (config.invalid_b3_single, extract_b3_multi(carrier, config)) {
            (InvalidB3Single::FallBackToMulti, Ok(Some(multi))) => Ok(Some(multi)),
            _ => Err(e),
        },
        None => extract_b3_multi(carrier, config),
    }
}

/// Writes a single `b3` header value (`{trace}-{span}[-{state}[-{parent}]]`, or the state alone)
/// and returns it. The parent goes out only after a state: with a deferred decision it is left
/// out, because `{trace}-{span}-{parent}` is a form only some readers accept.
pub fn write_b3_single<'o>(b3: &B3, out: &'o mut [u8; B3_SINGLE_MAX_LEN]) -> &'o str {
    let mut at = 0;
    let mut push = |bytes: &[u8], out: &mut [u8; B3_SINGLE_MAX_LEN]| {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
            at += bytes.len();
        }
    };
    let state = |s: Sampling| -> &'static [u8] {
        match s {
            Sampling::Defer => b"",
            Sampling::Deny => b"0",
            Sampling::Accept => b"1",
            Sampling::Debug => b"d",
        }
    };
    match b3 {
        B3::SamplingOnly(s) => push(state(*s), out),
        B3::Context(c) => {
            let mut trace = [0u8; 32];
            let mut span = [0u8; 16];
            push(c.trace_id.write_hex(&mut trace).as_bytes(), out);
            push(b"-", out);
            push(c.span_id.write_hex(&mut span).as_bytes(), out);
            if c.sampling != Sampling::Defer {
                push(b"-", out);
                push(state(c.sampling), out);
                if let Some(parent) = c.parent_span_id {
                    push(b"-", out);
                    push(parent.write_hex(&mut span).as_bytes(), out);
                }
            }
        }
    }
    core::str::from_utf8(out.get(..at).unwrap_or_default()).unwrap_or_default()
}

/// Buffers for the multi-header values, so the `(name, value)` pairs can borrow them.
#[derive(Debug, Clone, Default)]
pub struct B3MultiBuf {
    trace: [u8; 32],
    span: [u8; 16],
    parent: [u8; 16],
}

/// The `X-B3-*` headers for `b3` (lowercase names): trace id, span id, parent if any, then
/// `x-b3-flags: 1` for debug (debug implies accept, so no `x-b3-sampled` with it) or
/// `x-b3-sampled: 1|0`; a deferred decision sends no state.
pub fn write_b3_multi<'b>(
    b3: &B3,
    buf: &'b mut B3MultiBuf,
) -> impl Iterator<Item = (&'static str, &'b str)> + 'b {
    let mut pairs: [Option<(&'static str, &'b str)>; 4] = [None; 4];
    let sampling = match b3 {
        B3::SamplingOnly(s) => *s,
        B3::Context(c) => c.sampling,
    };
    if let B3::Context(c) = b3 {
        let B3MultiBuf {
            trace,
            span,
            parent,
        } = buf;
        pairs[0] = Some(("x-b3-traceid", c.trace_id.write_hex(trace)));
        pairs[1] = Some(("x-b3-spanid", c.span_id.write_hex(span)));
        pairs[2] = c
            .parent_span_id
            .map(|p| ("x-b3-parentspanid", p.write_hex(parent)));
    }
    pairs[3] = match sampling {
        Sampling::Defer => None,
        Sampling::Deny => Some(("x-b3-sampled", "0")),
        Sampling::Accept => Some(("x-b3-sampled", "1")),
        Sampling::Debug => Some(("x-b3-flags", "1")),
    };
    pairs.into_iter().flatten()
}
