//! Where headers come from: any collection that can list every field of a name, matched
//! ASCII-case-insensitively, in order. Repeated fields are all seen (duplicate `traceparent` is
//! detected; `tracestate` and `baggage` fields are combined).

use crate::b3::{B3, B3_SINGLE_MAX_LEN, B3MultiBuf, write_b3_multi, write_b3_single};
use crate::baggage::{BAGGAGE_MAX_BYTES, BaggageWritten, Members};
use crate::w3c::{TRACEPARENT_LEN, TraceParent, TraceState, write_traceparent};

/// A read-only view of request headers.
pub trait Carrier {
    /// Every value of the header `name` (lowercase ASCII), in order.
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The first value of `name`.
    fn get_first<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }
}

impl Carrier for [(&str, &str)] {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

impl<const N: usize> Carrier for [(&str, &str); N] {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.as_slice().get_all(name)
    }
}

impl Carrier for [(&[u8], &[u8])] {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Carrier for http::HeaderMap {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        // HeaderMap names are lowercase already; `get_all` keeps repeated fields in order.
        Self::get_all(self, name)
            .into_iter()
            .map(http::HeaderValue::as_bytes)
    }
}

/// Where headers go: the write side of a [`Carrier`], as opentelemetry's `Injector`. The
/// `inject_*` functions ([`inject_traceparent`](crate::inject_traceparent),
/// [`inject_b3_single`](crate::inject_b3_single), [`inject_b3_multi`](crate::inject_b3_multi),
/// [`inject_tracestate`](crate::inject_tracestate), [`inject_baggage`](crate::inject_baggage))
/// write a header into one in a single call.
///
/// Values handed to an injector are always written by this crate (visible ASCII, no control
/// character), never copied from a request.
///
/// ```
/// use tracectx::{Injector, TraceFlags, TraceParent, TraceId, SpanId, inject_traceparent};
///
/// // Any header collection can be an injector; here a plain list.
/// struct Headers(Vec<(&'static str, String)>);
/// impl Injector for Headers {
///     fn set(&mut self, name: &'static str, value: &str) {
///         self.remove(name);
///         self.0.push((name, value.to_owned()));
///     }
///     fn remove(&mut self, name: &'static str) {
///         self.0.retain(|(n, _)| *n != name);
///     }
/// }
///
/// let tp = TraceParent::new(TraceId::from_u64(1), SpanId([0, 0, 0, 0, 0, 0, 0, 2]), TraceFlags(1));
/// let mut headers = Headers(vec![("traceparent", "stale".to_owned())]);
/// inject_traceparent(&tp, &mut headers);
/// assert_eq!(headers.0, [("traceparent", "00-00000000000000000000000000000001-0000000000000002-01".to_owned())]);
/// ```
pub trait Injector {
    /// Sets the header `name` (lowercase ASCII) to `value`, replacing every field of that name
    /// already present.
    fn set(&mut self, name: &'static str, value: &str);

    /// Removes every field of the header `name` (lowercase ASCII).
    fn remove(&mut self, name: &'static str);
}

impl<I: Injector + ?Sized> Injector for &mut I {
    fn set(&mut self, name: &'static str, value: &str) {
        (**self).set(name, value);
    }

    fn remove(&mut self, name: &'static str) {
        (**self).remove(name);
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Injector for http::HeaderMap {
    /// Replaces the header. Names and values from this crate are always valid; a name or value
    /// `http` refuses (only possible from a caller's own call) is not written.
    fn set(&mut self, name: &'static str, value: &str) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            self.insert(name, value);
        }
    }

    fn remove(&mut self, name: &'static str) {
        Self::remove(self, name);
    }
}

/// Sets `traceparent` from `tp` (see [`write_traceparent`](crate::write_traceparent)).
///
/// # Panics
/// Never.
pub fn inject_traceparent(tp: &TraceParent, headers: &mut impl Injector) {
    let mut out = [0u8; TRACEPARENT_LEN];
    headers.set("traceparent", write_traceparent(tp, &mut out));
}

/// Sets `tracestate` from `state`, at most [`TRACESTATE_INJECT_MAX_LEN`] bytes (see
/// [`TraceState::write`]); removes the header when no member is left.
///
/// # Panics
/// Never.
pub fn inject_tracestate(state: &TraceState<'_>, headers: &mut impl Injector) {
    let mut out = [0u8; TRACESTATE_INJECT_MAX_LEN];
    match state.write(&mut out, TRACESTATE_INJECT_MAX_LEN) {
        "" => headers.remove("tracestate"),
        value => headers.set("tracestate", value),
    }
}

/// How many bytes of `tracestate` [`inject_tracestate`] sends: 512, the length the W3C
/// recommends every vendor propagate.
pub const TRACESTATE_INJECT_MAX_LEN: usize = 512;

/// Sets the single `b3` header from `b3` (see [`write_b3_single`](crate::write_b3_single)).
///
/// # Panics
/// Never.
pub fn inject_b3_single(b3: &B3, headers: &mut impl Injector) {
    let mut out = [0u8; B3_SINGLE_MAX_LEN];
    headers.set("b3", write_b3_single(b3, &mut out));
}

/// Sets the `x-b3-*` headers from `b3` (see [`write_b3_multi`](crate::write_b3_multi)), first
/// removing every `x-b3-*` header it writes, so none from an earlier context is left behind.
///
/// # Panics
/// Never.
pub fn inject_b3_multi(b3: &B3, headers: &mut impl Injector) {
    for name in [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
    ] {
        headers.remove(name);
    }
    let mut buf = B3MultiBuf::default();
    for (name, value) in write_b3_multi(b3, &mut buf) {
        headers.set(name, value);
    }
}

/// Sets `baggage` from what [`extract_baggage`](crate::extract_baggage) read: the well-formed
/// members, re-encoded within the W3C limits (see [`Members::write`]); removes the header when
/// none is left. Returns what was written and left out.
///
/// ```
/// # #[cfg(feature = "http")] {
/// use tracectx::{Config, extract_baggage, inject_baggage};
///
/// let inbound = [("baggage", "user=alice, bad\r=1")];
/// let mut outbound = http::HeaderMap::new();
/// let written = inject_baggage(extract_baggage(&inbound, &Config::default()), &mut outbound);
/// assert_eq!((outbound["baggage"].to_str().unwrap(), written.invalid), ("user=alice", 1));
/// # }
/// ```
///
/// # Panics
/// Never.
pub fn inject_baggage<'a, F: Iterator<Item = &'a [u8]>>(
    members: Members<'a, F>,
    headers: &mut impl Injector,
) -> BaggageWritten {
    let mut out = [0u8; BAGGAGE_MAX_BYTES];
    let (value, written) = members.write(&mut out);
    if value.is_empty() {
        headers.remove("baggage");
    } else {
        headers.set("baggage", value);
    }
    written
}
