//! Every shared vector (from the specs and the anchors' own tests) as a data-driven test. The
//! agreement per kind is printed; every case must agree.

// The vectors include `x-ot-span-context` cases: all of them or none.
#![cfg(feature = "ot")]
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use serde_json::{Value, json};
use tracectx::*;

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors.json"
    ))
    .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn hex_trace(id: &TraceId) -> String {
    let mut b = [0u8; 32];
    id.write_hex(&mut b).to_owned()
}

fn hex_span(id: &SpanId) -> String {
    let mut b = [0u8; 16];
    id.write_hex(&mut b).to_owned()
}

fn tracestate_json(state: &TraceState<'_>) -> Value {
    Value::Array(
        state
            .iter()
            .map(|(k, v)| json!([String::from_utf8_lossy(k), String::from_utf8_lossy(v)]))
            .collect(),
    )
}

fn w3c(headers: &[(&str, &str)], config: &Config) -> Value {
    match extract_traceparent(headers, config) {
        Ok(None) => json!({"result": "absent", "tracestate": null}),
        Err(_) => json!({"result": "invalid"}),
        Ok(Some(tp)) => {
            let state = match extract_tracestate(headers, config) {
                Ok(Some(s)) => tracestate_json(&s),
                Ok(None) => json!([]),
                Err(_) => Value::Null,
            };
            json!({
                "result": "valid", "version": format!("{:02x}", tp.version), "trace_id": hex_trace(&tp.trace_id),
                "parent_id": hex_span(&tp.parent_id), "flags": format!("{:02x}", tp.flags.0),
                "sampled": tp.flags.is_sampled(), "random": tp.flags.is_random(), "tracestate": state,
            })
        }
    }
}

fn b3_json(b3: &B3) -> Value {
    match b3 {
        B3::SamplingOnly(s) => {
            json!({"result": "sampling_only", "sampled": s.sampled(), "debug": *s == Sampling::Debug})
        }
        B3::Context(c) => {
            let mut v = json!({
                "result": "valid", "trace_id": hex_trace(&c.trace_id), "span_id": hex_span(&c.span_id),
                "sampled": c.sampling.sampled(), "debug": c.sampling == Sampling::Debug, "trace_id_bits": c.trace_id.bits(),
            });
            if let Some(p) = c.parent_span_id {
                v["parent_span_id"] = json!(hex_span(&p));
            }
            v
        }
        _ => unreachable!(),
    }
}

fn b3(headers: &[(&str, &str)], config: &Config) -> Value {
    match extract_b3(headers, config) {
        Ok(None) => json!({"result": "absent"}),
        Ok(Some(b3)) => b3_json(&b3),
        Err(_) => json!({"result": "invalid"}),
    }
}

fn baggage(headers: &[(&str, &str)], config: &Config) -> Value {
    let mut members = Vec::new();
    for m in extract_baggage(headers, config) {
        let Ok(m) = m else {
            return json!({"result": "invalid"});
        };
        let mut buf = vec![0u8; m.raw_value().len() * 3 + 3];
        let value = m.decode_value(&mut buf).unwrap().to_owned();
        let props: Vec<String> = m
            .properties()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.to_owned(),
            })
            .collect();
        members.push(json!([m.key(), value, props]));
    }
    json!({"result": "valid", "baggage": members})
}

fn request_id(headers: &[(&str, &str)]) -> Value {
    let id = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
        .map_or(&b""[..], |(_, v)| v.as_bytes());
    json!({"result": "request_id", "integer": request_id_integer(id), "sampling_bucket": sampling_bucket(id), "trace_reason": trace_reason(id).as_str()})
}

fn decision(headers: &[(&str, &str)], expect: &Value) -> Value {
    let cfg = &expect["config"];
    let mut config = SamplingConfig::default();
    config.edge = cfg["edge"].as_bool().unwrap_or(false);
    config.client_sampling = cfg["client_sampling"].as_f64().unwrap_or(100.0);
    config.random_sampling = cfg["random_sampling"].as_f64().unwrap_or(100.0);
    config.overall_sampling = cfg["overall_sampling"].as_f64().unwrap_or(100.0);
    config.pack_trace_reason = cfg["pack_trace_reason"].as_bool().unwrap_or(true);
    config.preserve_external_request_id = cfg["preserve_external_request_id"]
        .as_bool()
        .unwrap_or(false);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    };
    let mut counter = 0u8;
    let mut rng = |buf: &mut [u8]| {
        for b in buf {
            counter = counter.wrapping_add(37);
            *b = counter;
        }
    };
    let d = decide(
        get("x-request-id"),
        get("x-client-trace-id").is_some(),
        get("x-envoy-force-trace").is_some(),
        &config,
        &mut rng,
    );
    let id = String::from_utf8_lossy(d.request_id()).into_owned();
    let out = if d.generated {
        if d.reason == TraceReason::Sampling {
            "<new uuid4 with [14]='9'>".to_owned()
        } else {
            "<new uuid4>".to_owned()
        }
    } else {
        id
    };
    json!({"result": "decision", "trace_reason": d.reason.as_str(), "x_request_id_out": out, "config": cfg})
}

fn ot(headers: &[(&str, &str)]) -> Value {
    let value = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-ot-span-context"))
        .map_or(&b""[..], |(_, v)| v.as_bytes());
    let mut scratch = [0u8; 256];
    match decode_ot_span_context(value, &mut scratch) {
        Ok(c) => {
            let baggage: serde_json::Map<String, Value> =
                c.baggage().map(|(k, v)| (k.to_owned(), json!(v))).collect();
            json!({"result": "valid", "trace_id": c.trace_id.to_string(), "span_id": c.span_id.to_string(), "sampled": c.sampled, "baggage": baggage})
        }
        Err(_) => json!({"result": "invalid"}),
    }
}

fn inject(expect: &Value) -> Value {
    let ctx = &expect["context"];
    let config = Config::default();
    let sampling = match (ctx["debug"].as_bool(), ctx["sampled"].as_bool()) {
        (Some(true), _) => Sampling::Debug,
        (_, Some(true)) => Sampling::Accept,
        (_, Some(false)) => Sampling::Deny,
        _ => Sampling::Defer,
    };
    let b3 = match ctx["trace_id"].as_str() {
        None => B3::SamplingOnly(sampling),
        Some(t) => {
            let mut c = B3Context::new(
                TraceId::parse(t.as_bytes(), &config).unwrap(),
                SpanId::parse(
                    ctx["span_id"].as_str().unwrap().as_bytes(),
                    Field::SpanId,
                    &config,
                )
                .unwrap(),
                sampling,
            );
            c.parent_span_id = ctx["parent_span_id"]
                .as_str()
                .map(|p| SpanId::parse(p.as_bytes(), Field::ParentSpanId, &config).unwrap());
            B3::Context(c)
        }
    };
    let expected = expect["headers_out"].as_array().unwrap();
    let single = expected.first().and_then(|h| h[0].as_str()) == Some("b3");
    let headers: Vec<Value> = if single {
        let mut out = [0u8; B3_SINGLE_MAX_LEN];
        vec![json!(["b3", write_b3_single(&b3, &mut out)])]
    } else {
        let mut buf = B3MultiBuf::default();
        write_b3_multi(&b3, &mut buf)
            .map(|(n, v)| json!([n, v]))
            .collect()
    };
    json!({"result": "inject", "headers_out": headers, "context": ctx})
}

fn evaluate(case: &Value) -> Value {
    let input: Vec<(String, String)> = case["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let headers: Vec<(&str, &str)> = input
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let config = Config::default();
    match case["kind"].as_str().unwrap() {
        "traceparent" | "tracestate" => w3c(&headers, &config),
        "b3-single" | "b3-multi" | "b3-mixed" => b3(&headers, &config),
        "baggage" => baggage(&headers, &config),
        "x-request-id" => request_id(&headers),
        "envoy-sampling" => decision(&headers, &case["expect"]),
        "x-ot-span-context" => ot(&headers),
        "inject" => inject(&case["expect"]),
        other => panic!("unknown kind {other}"),
    }
}

/// Whether `got` satisfies `expect`: every expected key agrees (`tracestate_any_of` lists the
/// allowed outcomes; `implementation_defined` accepts anything).
fn agrees(expect: &Value, got: &Value) -> bool {
    if expect["result"] == "implementation_defined" {
        return true;
    }
    expect
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| match k.as_str() {
            "note" => true,
            "tracestate_any_of" => v.as_array().unwrap().contains(&got["tracestate"]),
            _ => &got[k] == v,
        })
}

#[test]
fn every_vector_agrees() {
    let mut per_kind: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    let mut failures = Vec::new();
    for case in vectors() {
        let got = evaluate(&case);
        let ok = agrees(&case["expect"], &got);
        let entry = per_kind
            .entry(case["kind"].as_str().unwrap().to_owned())
            .or_default();
        entry.1 += 1;
        if ok {
            entry.0 += 1;
        } else {
            failures.push(format!(
                "{}: expected {} got {}",
                case["id"], case["expect"], got
            ));
        }
    }
    for (kind, (ok, all)) in &per_kind {
        eprintln!("{kind:20} {ok}/{all}");
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_is_not_vacuous() {
    let case = json!({"kind": "traceparent", "input": [["traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]],
        "expect": {"result": "valid", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4737"}});
    assert!(!agrees(&case["expect"], &evaluate(&case)));
    let case =
        json!({"kind": "b3-single", "input": [["b3", "0"]], "expect": {"result": "invalid"}});
    assert!(!agrees(&case["expect"], &evaluate(&case)));
}

#[cfg(feature = "http")]
#[test]
fn header_map_carrier_sees_every_field() {
    let mut map = http::HeaderMap::new();
    map.append(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    map.append("tracestate", http::HeaderValue::from_static("a=1"));
    map.append("tracestate", http::HeaderValue::from_static("b=2"));
    let config = Config::default();
    assert!(extract_traceparent(&map, &config).unwrap().is_some());
    let state = extract_tracestate(&map, &config).unwrap().unwrap();
    assert_eq!(state.len(), 2, "both tracestate fields combined");
    map.append(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    assert!(
        extract_traceparent(&map, &config).is_err(),
        "a repeated traceparent is invalid"
    );
}
