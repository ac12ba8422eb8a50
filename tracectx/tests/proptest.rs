//! Property tests: write → parse round trips for every format with an encoder, UUIDv4 version and
//! variant bits, tracestate editing rules, hostile bytes never panicking, and what is forwarded
//! (baggage re-encoded, request ids) staying within its bounds.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use proptest::prelude::*;
use tracectx::*;

fn trace_id() -> impl Strategy<Value = TraceId> {
    prop_oneof![
        any::<[u8; 16]>()
            .prop_filter("non-zero", |b| *b != [0; 16])
            .prop_map(TraceId::from_bytes),
        any::<u64>()
            .prop_filter("non-zero", |n| *n != 0)
            .prop_map(TraceId::from_u64),
    ]
}

fn span_id() -> impl Strategy<Value = SpanId> {
    any::<[u8; 8]>()
        .prop_filter("non-zero", |b| *b != [0; 8])
        .prop_map(SpanId)
}

fn sampling() -> impl Strategy<Value = Sampling> {
    prop_oneof![
        Just(Sampling::Defer),
        Just(Sampling::Deny),
        Just(Sampling::Accept),
        Just(Sampling::Debug)
    ]
}

proptest! {
    #[test]
    fn traceparent_round_trips(t in trace_id(), s in span_id(), flags in any::<u8>()) {
        let tp = TraceParent::new(t, s, TraceFlags(flags));
        let mut out = [0u8; TRACEPARENT_LEN];
        let text = write_traceparent(&tp, &mut out).to_owned();
        let back = parse_traceparent(text.as_bytes(), &Config::default()).unwrap();
        prop_assert_eq!(back.trace_id.bytes(), t.bytes());
        prop_assert_eq!(back.parent_id, s);
        // Only the defined bits go out; sampled and random survive.
        prop_assert_eq!(back.flags, TraceFlags(flags).defined());
    }

    #[test]
    fn b3_single_round_trips(t in trace_id(), s in span_id(), p in proptest::option::of(span_id()), state in sampling()) {
        let mut ctx = B3Context::new(t, s, state);
        ctx.parent_span_id = p;
        let mut out = [0u8; B3_SINGLE_MAX_LEN];
        let text = write_b3_single(&B3::Context(ctx), &mut out).to_owned();
        let Ok(B3::Context(back)) = parse_b3_single(text.as_bytes(), &Config::default()) else { panic!("{text}") };
        prop_assert_eq!(back.trace_id, t, "width kept");
        prop_assert_eq!(back.span_id, s);
        prop_assert_eq!(back.sampling, state);
        // A deferred decision cannot carry a parent in the unambiguous form.
        prop_assert_eq!(back.parent_span_id, if state == Sampling::Defer { None } else { p });
    }

    #[test]
    fn b3_multi_round_trips(t in trace_id(), s in span_id(), p in proptest::option::of(span_id()), state in sampling()) {
        let mut ctx = B3Context::new(t, s, state);
        ctx.parent_span_id = p;
        let mut buf = B3MultiBuf::default();
        let pairs: Vec<(String, String)> = write_b3_multi(&B3::Context(ctx), &mut buf).map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
        let headers: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let back = extract_b3(headers.as_slice(), &Config::strict()).unwrap().unwrap();
        prop_assert_eq!(back, B3::Context(ctx));
    }

    #[test]
    fn generated_request_ids_are_uuid_v4(seed in any::<u64>()) {
        let mut state = seed;
        let mut rng = |buf: &mut [u8]| {
            for b in buf {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                *b = (state >> 33) as u8;
            }
        };
        let mut out = [0u8; REQUEST_ID_LEN];
        let id = generate_request_id(&mut rng, &mut out).to_owned();
        let b = id.as_bytes();
        prop_assert_eq!(b[14], b'4', "version 4");
        prop_assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "variant 10xx");
        prop_assert!([8, 13, 18, 23].iter().all(|&i| b[i] == b'-'));
        prop_assert!(b.iter().enumerate().all(|(i, c)| [8, 13, 18, 23].contains(&i) || matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        prop_assert_eq!(trace_reason(b), TraceReason::NotTraceable);
        let mut mutable = out;
        for reason in [TraceReason::Sampling, TraceReason::ServiceForced, TraceReason::ClientForced, TraceReason::NotTraceable] {
            prop_assert!(set_trace_reason(&mut mutable, reason));
            prop_assert_eq!(trace_reason(&mutable), reason);
        }
        prop_assert!(sampling_bucket(b).unwrap() < 10_000);
    }

    #[test]
    fn tracestate_insert_moves_to_front_dedups_and_caps(keys in proptest::collection::vec("[a-z][a-z0-9]{0,6}", 1..50)) {
        let config = Config::default();
        let mut state = TraceState::default();
        for k in &keys {
            state.insert(k.as_bytes(), b"v", &config).unwrap();
            let first = state.iter().next().map(|(key, _)| key);
            prop_assert_eq!(first, Some(k.as_bytes()));
        }
        prop_assert!(state.len() <= TRACESTATE_MAX_MEMBERS);
        let listed: Vec<&[u8]> = state.iter().map(|(k, _)| k).collect();
        let mut unique = listed.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), listed.len(), "no duplicate keys");
        // Written and read back, the list is the same.
        let mut out = [0u8; 4096];
        let written = state.write(&mut out, 4096);
        let mut again = TraceState::default();
        again.push_field(written.as_bytes(), &config).unwrap();
        prop_assert_eq!(again, state);
    }

    #[test]
    fn hostile_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        let config = Config::default();
        let text = String::from_utf8_lossy(&value).into_owned();
        let _ = parse_traceparent(&value, &config);
        let _ = parse_b3_single(&value, &config);
        let headers = [("tracestate", text.as_str()), ("baggage", text.as_str()), ("x-b3-traceid", text.as_str())];
        let _ = extract_tracestate(&headers, &config);
        for m in extract_baggage(&headers, &config).flatten() {
            let mut buf = vec![0u8; m.raw_value().len() * 3 + 3];
            prop_assert!(m.decode_value(&mut buf).is_ok());
            let _ = m.properties().count();
        }
        let _ = extract_b3(&headers, &config);
        #[cfg(feature = "ot")]
        let _ = decode_ot_span_context(&value, &mut [0u8; 256]);
        let _ = request_id_integer(&value);
    }

    /// Whatever the input, the forwarded baggage is within the W3C limits, has no byte a header
    /// could be split or extended with, and reads back as exactly the members written.
    #[test]
    fn forwarded_baggage_is_bounded_clean_and_reads_back(
        text in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600)
                .prop_map(|v| String::from_utf8_lossy(&v).into_owned()),
            // Mostly baggage-shaped, with the bytes that must never pass.
            "[a-z0-9=,; %\t\r\n\u{0}\u{e9}]{0,600}",
        ],
        cap in 0usize..400,
    ) {
        let headers = [("baggage", text.as_str()), ("baggage", text.as_str())];
        let config = Config::default().baggage_limits(u16::MAX, u16::MAX);
        let mut out = vec![0u8; cap];
        let (written_value, written) = extract_baggage(&headers, &config).write(&mut out);
        prop_assert!(written_value.len() <= cap.min(BAGGAGE_MAX_BYTES));
        prop_assert!(usize::from(written.members) <= BAGGAGE_MAX_MEMBERS);
        prop_assert!(written_value.bytes().all(|b| b.is_ascii_graphic()));
        let total = extract_baggage(&headers, &config).count();
        prop_assert_eq!(total, usize::from(written.members) + written.dropped() as usize);
        let forwarded = [("baggage", written_value)];
        let again: Vec<_> = extract_baggage(&forwarded, &config).collect();
        prop_assert_eq!(again.len(), usize::from(written.members));
        prop_assert!(again.iter().all(Result::is_ok));
    }

    #[test]
    fn accepted_request_ids_are_visible_ascii(value in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(id) = validate_request_id(&value) {
            prop_assert!(!id.is_empty() && id.len() <= REQUEST_ID_MAX_LEN);
            prop_assert!(id.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
}

#[test]
fn tracestate_truncation_drops_long_members_first_then_from_the_right() {
    let config = Config::default();
    let long = "x".repeat(200);
    let mut state = TraceState::default();
    for (k, v) in [("a", "1"), ("big", long.as_str()), ("c", "3"), ("d", "4")] {
        state
            .push_field(format!("{k}={v}").leak().as_bytes(), &config)
            .unwrap();
    }
    let mut out = [0u8; 512];
    assert_eq!(state.write(&mut out, 20), "a=1,c=3,d=4");
    assert_eq!(state.write(&mut out, 8), "a=1,c=3");
}

#[cfg(feature = "ot")]
#[test]
fn ot_span_context_round_trips() {
    let mut out = [0u8; 256];
    let (trace, span) = (TraceId::from_u64(1), SpanId(2u64.to_be_bytes()));
    let text = write_ot_span_context(trace, span, true, &[("k", "v")], &mut out)
        .unwrap()
        .to_owned();
    assert_eq!(
        text, "EhwJAQAAAAAAAAARAgAAAAAAAAAYASIGCgFrEgF2",
        "byte-identical to Envoy's vector"
    );
    let mut scratch = [0u8; 64];
    let ctx = decode_ot_span_context(text.as_bytes(), &mut scratch).unwrap();
    assert_eq!(
        (ctx.trace_id, ctx.span_id, ctx.sampled),
        (trace, span, true)
    );
    assert_eq!(ctx.baggage().collect::<Vec<_>>(), vec![("k", "v")]);
}
