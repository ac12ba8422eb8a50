//! `tracehdr inspect`: one JSON object with a member per format (traceparent, tracestate, b3,
//! baggage, request_id, ot_span_context), each with its result (absent, valid, invalid; b3 also
//! sampling_only) and the fields read.

use serde_json::{Map, Value, json};
use tracectx::{
    B3, Carrier, Config, Error, Sampling, TraceState, decode_ot_span_context, extract_b3,
    extract_baggage, extract_traceparent, extract_tracestate, request_id_integer, sampling_bucket,
    trace_reason, validate_request_id,
};

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn absent() -> Value {
    json!({"result": "absent"})
}

fn invalid(e: &Error) -> Value {
    json!({"result": "invalid", "reason": e.to_string()})
}

/// What `tracectx` makes of the headers `h`, as one JSON object.
pub fn inspect(h: &[(&[u8], &[u8])]) -> Value {
    let config = Config::default();
    let (traceparent, tracestate) = w3c_json(h, &config);
    json!({
        "traceparent": traceparent,
        "tracestate": tracestate,
        "b3": b3_json(h, &config),
        "baggage": baggage_json(h, &config),
        "request_id": request_id_json(h),
        "ot_span_context": ot_json(h),
    })
}

fn tracestate_list(state: &TraceState<'_>) -> Value {
    Value::Array(
        state
            .iter()
            .map(|(k, v)| json!([lossy(k), lossy(v)]))
            .collect(),
    )
}

/// `traceparent` and `tracestate`; the latter is read only after a valid traceparent.
fn w3c_json(h: &[(&[u8], &[u8])], config: &Config) -> (Value, Value) {
    match extract_traceparent(h, config) {
        Ok(None) => (absent(), absent()),
        Err(e) => (invalid(&e), absent()),
        Ok(Some(tp)) => {
            let traceparent = json!({
                "result": "valid",
                "version": format!("{:02x}", tp.version),
                "trace_id": tp.trace_id.to_string(),
                "parent_id": tp.parent_id.to_string(),
                "flags": format!("{:02x}", tp.flags.0),
                "sampled": tp.flags.is_sampled(),
                "random": tp.flags.is_random(),
            });
            let tracestate = match extract_tracestate(h, config) {
                Ok(None) => absent(),
                Ok(Some(state)) => {
                    json!({"result": "valid", "tracestate": tracestate_list(&state)})
                }
                Err(e) => invalid(&e),
            };
            (traceparent, tracestate)
        }
    }
}

fn b3_json(h: &[(&[u8], &[u8])], config: &Config) -> Value {
    match extract_b3(h, config) {
        Ok(None) => absent(),
        Err(e) => invalid(&e),
        Ok(Some(B3::SamplingOnly(s))) => {
            json!({"result": "sampling_only", "sampled": s.sampled(), "debug": s == Sampling::Debug})
        }
        Ok(Some(B3::Context(c))) => {
            let mut v = json!({
                "result": "valid",
                "trace_id": c.trace_id.to_string(),
                "span_id": c.span_id.to_string(),
                "sampled": c.sampling.sampled(),
                "debug": c.sampling == Sampling::Debug,
                "trace_id_bits": c.trace_id.bits(),
            });
            if let Some(p) = c.parent_span_id {
                v["parent_span_id"] = json!(p.to_string());
            }
            v
        }
        // `B3` is non-exhaustive: a form this program does not know yet.
        Ok(Some(other)) => json!({"result": "unknown", "debug_repr": format!("{other:?}")}),
    }
}

/// Members as `[key, percent-decoded value, [properties]]`; a malformed member makes the whole
/// header invalid.
fn baggage_json(h: &[(&[u8], &[u8])], config: &Config) -> Value {
    if h.get_first("baggage").is_none() {
        return absent();
    }
    let mut members = Vec::new();
    let mut it = extract_baggage(h, config);
    for member in it.by_ref() {
        let m = match member {
            Ok(m) => m,
            Err(e) => return invalid(&e),
        };
        let mut buf = vec![0u8; m.raw_value().len() * 3 + 3];
        let value = match m.decode_value(&mut buf) {
            Ok(v) => v.to_owned(),
            Err(e) => return invalid(&e),
        };
        let props: Vec<String> = m
            .properties()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.to_owned(),
            })
            .collect();
        members.push(json!([m.key(), value, props]));
    }
    json!({"result": "valid", "baggage": members, "dropped": it.dropped()})
}

/// The first `x-request-id`: valid when `tracectx` would forward it (visible ASCII, bounded), and
/// what Envoy reads from it.
fn request_id_json(h: &[(&[u8], &[u8])]) -> Value {
    let id = h.get_first("x-request-id");
    let bytes = id.unwrap_or_default();
    let mut v = json!({
        "result": "absent",
        "value": id.map(lossy),
        "integer": request_id_integer(bytes),
        "sampling_bucket": sampling_bucket(bytes),
        "trace_reason": trace_reason(bytes).as_str(),
    });
    if id.is_some() {
        match validate_request_id(bytes) {
            Ok(_) => v["result"] = json!("valid"),
            Err(e) => {
                v["result"] = json!("invalid");
                v["reason"] = json!(e.to_string());
            }
        }
    }
    v
}

fn ot_json(h: &[(&[u8], &[u8])]) -> Value {
    let Some(value) = h.get_first("x-ot-span-context") else {
        return absent();
    };
    let mut scratch = vec![0u8; value.len()];
    match decode_ot_span_context(value, &mut scratch) {
        Ok(c) => {
            let baggage: Map<String, Value> =
                c.baggage().map(|(k, v)| (k.to_owned(), json!(v))).collect();
            json!({
                "result": "valid",
                "trace_id": c.trace_id.to_string(),
                "span_id": c.span_id.to_string(),
                "sampled": c.sampled,
                "baggage": baggage,
            })
        }
        Err(e) => invalid(&e),
    }
}
