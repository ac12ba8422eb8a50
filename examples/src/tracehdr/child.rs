//! `tracehdr child`: the headers a proxy sends for a child span. Every value is written by
//! `tracectx` from what it validated: a new traceparent (same trace, or a fresh one), the
//! tracestate re-written, a B3 child, the request id when it is fit to forward (else a fresh
//! one), and the well-formed baggage members re-encoded within the W3C limits.

use tracectx::{
    B3, B3_SINGLE_MAX_LEN, BAGGAGE_MAX_BYTES, Carrier, Config, ErrorKind, REQUEST_ID_LEN,
    RandomSource, Sampling, TRACEPARENT_LEN, TraceParent, child_b3, child_traceparent, extract_b3,
    extract_baggage, extract_traceparent, extract_tracestate, generate_request_id, new_traceparent,
    validate_request_id, write_b3_single, write_traceparent,
};

/// Room for a re-written `tracestate` (the spec asks to propagate at least 512 bytes).
const TRACESTATE_BUF: usize = 4096;

/// The child span's headers, and notes on what was not forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildHeaders {
    /// In order: traceparent, tracestate, b3, x-request-id, baggage.
    pub headers: Vec<(&'static str, String)>,
    /// One line per value left out or replaced, for stderr.
    pub notes: Vec<String>,
}

/// The incoming trace to continue, if the traceparent is valid, and its tracestate re-written
/// when present, valid and non-empty.
pub fn incoming_w3c(
    h: &[(&[u8], &[u8])],
    config: &Config,
) -> Option<(TraceParent, Option<String>)> {
    let tp = extract_traceparent(h, config).ok()??;
    let state = match extract_tracestate(h, config) {
        Ok(Some(state)) => {
            let mut buf = [0u8; TRACESTATE_BUF];
            let value = state.write(&mut buf, TRACESTATE_BUF);
            (!value.is_empty()).then(|| value.to_owned())
        }
        Ok(None) | Err(_) => None,
    };
    Some((tp, state))
}

/// `tp` as a header value.
pub fn traceparent_string(tp: &TraceParent) -> String {
    let mut out = [0u8; TRACEPARENT_LEN];
    write_traceparent(tp, &mut out).to_owned()
}

/// The headers a proxy sends for a child span of the request with headers `h`.
pub fn child(h: &[(&[u8], &[u8])], rng: &mut impl RandomSource) -> ChildHeaders {
    let config = Config::default();
    let mut out = ChildHeaders::default();
    match incoming_w3c(h, &config) {
        Some((tp, state)) => {
            out.headers.push((
                "traceparent",
                traceparent_string(&child_traceparent(&tp, rng)),
            ));
            if let Some(state) = state {
                out.headers.push(("tracestate", state));
            }
        }
        None => out.headers.push((
            "traceparent",
            traceparent_string(&new_traceparent(rng, true)),
        )),
    }
    let b3 = match extract_b3(h, &config) {
        Ok(Some(B3::Context(c))) => Some(B3::Context(child_b3(&c, rng))),
        Ok(Some(B3::SamplingOnly(s))) if s != Sampling::Defer => Some(B3::SamplingOnly(s)),
        _ => None,
    };
    if let Some(b3) = b3 {
        let mut buf = [0u8; B3_SINGLE_MAX_LEN];
        out.headers
            .push(("b3", write_b3_single(&b3, &mut buf).to_owned()));
    }
    let id = match h.get_first("x-request-id").map(validate_request_id) {
        Some(Ok(id)) => id.to_owned(),
        refused => {
            if let Some(Err(e)) = refused
                && !matches!(e.kind(), ErrorKind::Missing { .. })
            {
                out.notes.push(format!(
                    "x-request-id not forwarded ({e}); a new one was generated"
                ));
            }
            let mut buf = [0u8; REQUEST_ID_LEN];
            generate_request_id(rng, &mut buf).to_owned()
        }
    };
    out.headers.push(("x-request-id", id));
    let mut buf = [0u8; BAGGAGE_MAX_BYTES];
    let (baggage, written) = extract_baggage(h, &config).write(&mut buf);
    if !baggage.is_empty() {
        out.headers.push(("baggage", baggage.to_owned()));
    }
    if written.dropped() > 0 {
        out.notes.push(format!(
            "baggage: {} members forwarded, {} left out ({} malformed, {} past the limits)",
            written.members,
            written.dropped(),
            written.invalid,
            written.over_limit
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracehdr::SplitMix64;

    fn header<'a>(c: &'a ChildHeaders, name: &str) -> Option<&'a str> {
        c.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn only_validated_values_are_forwarded() {
        let h: [(&[u8], &[u8]); 3] = [
            (b"x-request-id", b"abc\rx-admin: 1"),
            (b"baggage", "ok=1,caf\u{e9}=2,k=v\r\n".as_bytes()),
            (b"baggage", b"two=2;p"),
        ];
        let c = child(&h, &mut SplitMix64::new(1));
        let id = header(&c, "x-request-id").unwrap_or_default();
        assert_eq!(id.len(), REQUEST_ID_LEN);
        assert_ne!(id, "abc\rx-admin: 1");
        assert_eq!(header(&c, "baggage"), Some("ok=1,two=2;p"));
        for (_, v) in &c.headers {
            assert!(v.bytes().all(|b| b.is_ascii_graphic()), "{v:?}");
        }
        assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
    }

    #[test]
    fn an_empty_request_id_is_replaced_without_a_note() {
        let h: [(&[u8], &[u8]); 1] = [(b"x-request-id", b"  ")];
        let c = child(&h, &mut SplitMix64::new(1));
        assert_eq!(
            header(&c, "x-request-id").map(str::len),
            Some(REQUEST_ID_LEN)
        );
        assert!(c.notes.is_empty());
        assert_eq!(header(&c, "baggage"), None);
    }
}
