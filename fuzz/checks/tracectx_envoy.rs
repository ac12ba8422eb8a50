// Properties of the Envoy request-id functions and x-ot-span-context on arbitrary bytes: never
// panics; the decision is deterministic for the same inputs and random source, never packs a
// reason into an id that is not 36 bytes, never traces an id whose integer cannot be read (and then
// leaves it as it came), and a readable 36-byte id comes back with the nibble matching the reason; a decoded OT context re-encodes (without baggage) to a value that
// decodes to the same ids.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tracectx::{SamplingConfig, TraceReason, decide, decode_ot_span_context, write_ot_span_context, request_id_integer, trace_reason};
    let Some((&control, id)) = data.split_first() else { return };
    let mut config = SamplingConfig::default();
    config.random_sampling = f64::from(control % 101);
    config.edge = control & 0x80 != 0;
    config.preserve_external_request_id = control & 0x40 != 0;
    let run = || {
        let mut seed = u64::from(control);
        let mut rng = |buf: &mut [u8]| {
            for b in buf {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                *b = (seed >> 40) as u8;
            }
        };
        decide(Some(id), control & 1 != 0, control & 2 != 0, &config, &mut rng)
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    // An id whose integer cannot be read is never traced and left as it came (Envoy's order);
    // otherwise a 36-byte id carries the decided reason.
    let readable = request_id_integer(a.request_id()).is_some();
    if a.request_id().len() == 36 && readable {
        assert_eq!(trace_reason(a.request_id()), a.reason);
    } else if !readable {
        assert_eq!(a.reason, TraceReason::NotTraceable);
    }
    if !a.generated && !config.edge && !readable {
        assert_eq!(a.request_id(), &id[..id.len().min(64)]);
    }
    let mut scratch = vec![0u8; data.len() + 4];
    if let Ok(ctx) = decode_ot_span_context(data, &mut scratch) {
        let _ = ctx.baggage().count();
        let mut out = [0u8; 128];
        let text = write_ot_span_context(ctx.trace_id, ctx.span_id, ctx.sampled, &[], &mut out).expect("fits");
        let mut scratch2 = [0u8; 128];
        let again = decode_ot_span_context(text.as_bytes(), &mut scratch2).expect("our output decodes");
        assert_eq!((again.trace_id, again.span_id, again.sampled), (ctx.trace_id, ctx.span_id, ctx.sampled));
    }
}
