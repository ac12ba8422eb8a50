//! Envoy's request id: UUIDv4 generation, the trace-reason nibble, the sampling bucket, and the
//! tracing decision in Envoy's order.
#![deny(clippy::indexing_slicing)]

use crate::error::{Error, ErrorKind, Field};
use crate::ids::encode_hex;
use crate::w3c::{ows_prefix, trim_ows};

/// Length of a UUID request id.
pub const REQUEST_ID_LEN: usize = 36;

/// Index of the trace-reason character (the UUID version digit).
pub const TRACE_REASON_INDEX: usize = 14;

/// The longest request id [`validate_request_id`] accepts, and the most of one [`decide`] keeps.
pub const REQUEST_ID_MAX_LEN: usize = 64;

/// An `x-request-id` value fit to forward: OWS (spaces and tabs) around it removed, then 1 to
/// [`REQUEST_ID_MAX_LEN`] visible ASCII characters (`!` to `~`). No control character (a bare CR
/// or LF would split the header on the next hop), no space, no byte outside ASCII. Any id Envoy
/// generates passes; the contents are otherwise opaque (not necessarily a UUID).
///
/// ```
/// use tracectx::{ErrorKind, validate_request_id};
///
/// assert_eq!(validate_request_id(b" 8cda17a5-eb41-9ced-9843-acc826f95c8c "), Ok("8cda17a5-eb41-9ced-9843-acc826f95c8c"));
/// let injected = validate_request_id(b"abc\rx-admin: 1").unwrap_err();
/// assert!(matches!(injected.kind(), ErrorKind::InvalidByte { .. }));
/// assert_eq!(injected.offset(), 3);
/// ```
///
/// # Errors
/// [`ErrorKind::Missing`] when empty (or only OWS), [`ErrorKind::TooLong`] past
/// [`REQUEST_ID_MAX_LEN`], [`ErrorKind::InvalidByte`] at the first byte that is not visible ASCII;
/// the field is [`Field::RequestId`] and the offset counts from the start of `value`.
pub fn validate_request_id(value: &[u8]) -> Result<&str, Error> {
    let lead = ows_prefix(value);
    let id = trim_ows(value);
    if id.is_empty() {
        return Err(Error::at(
            ErrorKind::Missing {
                field: Field::RequestId,
            },
            lead,
        ));
    }
    if id.len() > REQUEST_ID_MAX_LEN {
        return Err(Error::at(
            ErrorKind::TooLong {
                field: Field::RequestId,
                limit: REQUEST_ID_MAX_LEN as u16,
                found: u16::try_from(id.len()).unwrap_or(u16::MAX),
            },
            lead,
        ));
    }
    if let Some(i) = id.iter().position(|b| !b.is_ascii_graphic()) {
        return Err(Error::at(
            ErrorKind::InvalidByte {
                field: Field::RequestId,
            },
            lead + i,
        ));
    }
    Ok(core::str::from_utf8(id).unwrap_or_default())
}

/// A source of random bytes the caller provides (no RNG lives in this crate).
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    fn fill_bytes(&mut self, buf: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> RandomSource for F {
    fn fill_bytes(&mut self, buf: &mut [u8]) {
        self(buf);
    }
}

/// Why a request is traced, as Envoy packs it into the request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceReason {
    /// `4` (or any unknown character): not traced.
    NotTraceable,
    /// `9`: chosen by random sampling.
    Sampling,
    /// `a`: forced by `x-envoy-force-trace`.
    ServiceForced,
    /// `b`: forced by `x-client-trace-id`.
    ClientForced,
}

impl TraceReason {
    const fn nibble(self) -> u8 {
        match self {
            Self::NotTraceable => b'4',
            Self::Sampling => b'9',
            Self::ServiceForced => b'a',
            Self::ClientForced => b'b',
        }
    }

    /// The name Envoy uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotTraceable => "NotTraceable",
            Self::Sampling => "Sampling",
            Self::ServiceForced => "ServiceForced",
            Self::ClientForced => "ClientForced",
        }
    }
}

/// Writes a fresh UUIDv4 (version and variant bits set, lowercase) from `rng` into `out`.
pub fn generate_request_id<'o>(
    rng: &mut impl RandomSource,
    out: &'o mut [u8; REQUEST_ID_LEN],
) -> &'o str {
    let mut raw = [0u8; 16];
    rng.fill_bytes(&mut raw);
    raw[6] = (raw[6] & 0x0F) | 0x40;
    raw[8] = (raw[8] & 0x3F) | 0x80;
    let mut hex = [0u8; 32];
    encode_hex(&raw, &mut hex);
    let mut src = hex.iter();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = if matches!(i, 8 | 13 | 18 | 23) {
            b'-'
        } else {
            src.next().copied().unwrap_or(b'0')
        };
    }
    core::str::from_utf8(out).unwrap_or_default()
}

/// The reason packed in `id`: read only from 36-character ids, as Envoy does (it does not check
/// that the id is a UUID).
pub fn trace_reason(id: &[u8]) -> TraceReason {
    if id.len() != REQUEST_ID_LEN {
        return TraceReason::NotTraceable;
    }
    match id.get(TRACE_REASON_INDEX) {
        Some(b'9') => TraceReason::Sampling,
        Some(b'a') => TraceReason::ServiceForced,
        Some(b'b') => TraceReason::ClientForced,
        _ => TraceReason::NotTraceable,
    }
}

/// Packs `reason` into a 36-character id; returns whether it could.
pub fn set_trace_reason(id: &mut [u8], reason: TraceReason) -> bool {
    if id.len() != REQUEST_ID_LEN {
        return false;
    }
    id.get_mut(TRACE_REASON_INDEX)
        .map(|c| *c = reason.nibble())
        .is_some()
}

/// Envoy's integer: the first 8 characters as hex (either case). `None` when shorter or not hex
/// (Envoy's `strtoull` would also take signs, spaces and `0x`; this does not).
pub fn request_id_integer(id: &[u8]) -> Option<u64> {
    let head = id.get(..8)?;
    head.iter().try_fold(0u64, |acc, b| {
        Some(acc * 16 + u64::from((*b as char).to_digit(16)?))
    })
}

/// The sampling bucket, `integer % 10000`.
pub fn sampling_bucket(id: &[u8]) -> Option<u64> {
    request_id_integer(id).map(|n| n % 10_000)
}

/// Tracing configuration, in Envoy's units.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SamplingConfig {
    /// `tracing.client_enabled`: percent of requests with `x-client-trace-id` that are forced
    /// (drawn from the random source, not the request id, as Envoy does). Default 100.
    pub client_sampling: f64,
    /// `tracing.random_sampling`, percent. Default 100.
    pub random_sampling: f64,
    /// `tracing.global_enabled`, percent: the overall veto. Default 100.
    pub overall_sampling: f64,
    /// Pack the reason into the request id. When off, a client-supplied id is never changed.
    pub pack_trace_reason: bool,
    /// The request arrived from outside the mesh (Envoy's "edge").
    pub edge: bool,
    /// At the edge, keep a client's request id (with its reason reset) instead of replacing it.
    pub preserve_external_request_id: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            client_sampling: 100.0,
            random_sampling: 100.0,
            overall_sampling: 100.0,
            pack_trace_reason: true,
            edge: false,
            preserve_external_request_id: false,
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Why (or why not) the request is traced.
    pub reason: TraceReason,
    /// The request id to forward (`len` bytes of `id`).
    pub id: [u8; REQUEST_ID_MAX_LEN],
    /// Length of the id in `id`.
    pub len: usize,
    /// Whether the id was generated here.
    pub generated: bool,
}

impl Decision {
    /// The request id to forward.
    pub fn request_id(&self) -> &[u8] {
        self.id.get(..self.len).unwrap_or_default()
    }
}

/// Envoy's tracing decision for one request, in its order: at the edge `x-envoy-force-trace` is
/// ignored (Envoy strips it) and the id is replaced or, if preserved, has its reason reset; a
/// missing id is generated; an id whose integer cannot be read is never traced; otherwise an
/// unset reason becomes ClientForced (`x-client-trace-id`, drawn at `client_sampling`),
/// ServiceForced (`x-envoy-force-trace`) or Sampling (bucket below `random_sampling`), and any
/// reason is vetoed by `overall_sampling`. The final reason is packed into a 36-character id.
///
/// `request_id` longer than [`REQUEST_ID_MAX_LEN`] (64) bytes is treated as corrupt (kept as the
/// first 64 bytes; never traced). `decide` does not otherwise check the id's bytes: pass it
/// through [`validate_request_id`] first when it comes from a peer and will be forwarded.
pub fn decide(
    request_id: Option<&[u8]>,
    has_client_trace_id: bool,
    has_force_trace: bool,
    config: &SamplingConfig,
    rng: &mut impl RandomSource,
) -> Decision {
    let mut d = Decision {
        reason: TraceReason::NotTraceable,
        id: [0; REQUEST_ID_MAX_LEN],
        len: 0,
        generated: false,
    };
    let force = has_force_trace && !config.edge;
    match request_id.filter(|id| !id.is_empty()) {
        Some(id) if !config.edge || config.preserve_external_request_id => {
            d.len = id.len().min(REQUEST_ID_MAX_LEN);
            if let (Some(dst), Some(src)) = (d.id.get_mut(..d.len), id.get(..d.len)) {
                dst.copy_from_slice(src);
            }
            if config.edge && config.pack_trace_reason {
                set_trace_reason(
                    d.id.get_mut(..d.len).unwrap_or_default(),
                    TraceReason::NotTraceable,
                );
            }
        }
        _ => {
            let mut fresh = [0u8; REQUEST_ID_LEN];
            generate_request_id(rng, &mut fresh);
            if let Some(dst) = d.id.get_mut(..REQUEST_ID_LEN) {
                dst.copy_from_slice(&fresh);
            }
            d.len = REQUEST_ID_LEN;
            d.generated = true;
        }
    }
    let id = d.id.get(..d.len).unwrap_or_default();
    let Some(bucket) = sampling_bucket(id) else {
        return d;
    };
    // Percent to a numerator over 10 000, rounded to the nearest (no `f64::round` in core).
    let within =
        |percent: f64, value: u64| (value as f64) < ((percent * 100.0 + 0.5) as u64) as f64;
    let mut reason = trace_reason(id);
    if reason == TraceReason::NotTraceable {
        let mut draw = [0u8; 2];
        if has_client_trace_id {
            rng.fill_bytes(&mut draw);
        }
        let client_draw = u64::from(u16::from_le_bytes(draw)) % 10_000;
        reason = if has_client_trace_id && within(config.client_sampling, client_draw) {
            TraceReason::ClientForced
        } else if force {
            TraceReason::ServiceForced
        } else if within(config.random_sampling, bucket) {
            TraceReason::Sampling
        } else {
            TraceReason::NotTraceable
        };
    }
    if reason != TraceReason::NotTraceable && !within(config.overall_sampling, bucket) {
        reason = TraceReason::NotTraceable;
    }
    if config.pack_trace_reason {
        set_trace_reason(d.id.get_mut(..d.len).unwrap_or_default(), reason);
    }
    d.reason = reason;
    d
}
