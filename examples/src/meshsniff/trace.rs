//! The trace context an HTTP request carried (W3C `traceparent`, B3, or Envoy's `x-request-id`),
//! read with `tracectx` from the captured head: for `--json` records and for the exemplars that
//! link a latency bucket to a trace.

use l7decode::Message;
use tracectx::{B3, Carrier, Config, SpanId, TraceId};

/// A request head as a `tracectx` carrier (header names compared case-insensitively).
#[derive(Debug, Clone, Copy)]
pub struct HeadCarrier<'a>(pub &'a [u8]);

impl Carrier for HeadCarrier<'_> {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .split(|b| *b == b'\n')
            .skip(1)
            .filter_map(move |line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|b| *b == b':')?;
                let (field, value) = (line.get(..colon)?, line.get(colon + 1..)?);
                field
                    .trim_ascii()
                    .eq_ignore_ascii_case(name.as_bytes())
                    .then(|| value.trim_ascii())
            })
    }
}

/// How the trace context was propagated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// W3C `traceparent`.
    W3c,
    /// B3, single or multiple headers.
    B3,
}

impl TraceFormat {
    /// `w3c` or `b3`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::W3c => "w3c",
            Self::B3 => "b3",
        }
    }
}

/// A validated trace context.
#[derive(Debug, Clone, Copy)]
pub struct TraceContext {
    /// Its propagation format.
    pub format: TraceFormat,
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub span_id: SpanId,
    /// The sampling decision, when the format carries one.
    pub sampled: Option<bool>,
}

/// The trace context of a request head; `None` when it carries none or only an invalid one.
pub fn trace_context(head: &[u8]) -> Option<TraceContext> {
    // Only the names tracectx reads: `traceparent`, `b3` and `x-b3-*`. Checked first, because
    // most requests carry none and the lookup below is the costlier path.
    let traced = head.split(|b| *b == b'\n').skip(1).any(|line| {
        let name = |prefix: &[u8]| {
            line.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        name(b"traceparent:") || name(b"b3:") || name(b"x-b3-")
    });
    if !traced {
        return None;
    }
    let carrier = HeadCarrier(head);
    let config = Config::default();
    if let Ok(Some(tp)) = tracectx::extract_traceparent(&carrier, &config) {
        return Some(TraceContext {
            format: TraceFormat::W3c,
            trace_id: tp.trace_id,
            span_id: tp.parent_id,
            sampled: Some(tp.flags.is_sampled()),
        });
    }
    if let Ok(Some(B3::Context(c))) = tracectx::extract_b3(&carrier, &config) {
        return Some(TraceContext {
            format: TraceFormat::B3,
            trace_id: c.trace_id,
            span_id: c.span_id,
            sampled: c.sampling.sampled(),
        });
    }
    None
}

/// Longest `x-request-id` kept as an exemplar label (a UUID is 36).
const MAX_REQUEST_ID: usize = 64;

/// The exemplar label of a request: `("trace_id", hex)` for a W3C or B3 context, else
/// `("request_id", id)` for an `x-request-id` of letters, digits, `-`, `_` and `.` (at most 64).
pub fn exemplar_label(request: &Message) -> Option<(&'static str, String)> {
    if let Some(context) = trace_context(request.head()) {
        let mut hex = [0u8; 32];
        return Some(("trace_id", context.trace_id.write_hex(&mut hex).to_owned()));
    }
    let id = request.header("x-request-id")?;
    let plain = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    plain.then(|| ("request_id", String::from_utf8_lossy(id).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_b3_and_request_ids() {
        let w3c = b"GET / HTTP/1.1\r\nHost: a\r\nTraceParent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
        let c = trace_context(w3c).unwrap();
        assert_eq!(c.format, TraceFormat::W3c);
        assert_eq!(c.sampled, Some(true));
        let b3 =
            b"GET / HTTP/1.1\r\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0\r\n\r\n";
        let c = trace_context(b3).unwrap();
        assert_eq!(c.format, TraceFormat::B3);
        assert_eq!(c.sampled, Some(false));
        assert!(trace_context(b"GET / HTTP/1.1\r\ntraceparent: junk\r\n\r\n").is_none());
        assert!(trace_context(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_none());
        let carrier = HeadCarrier(b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a:  2 \r\n\r\n");
        assert_eq!(
            carrier.get_all("x-a").collect::<Vec<_>>(),
            [&b"1"[..], b"2"]
        );
    }
}
