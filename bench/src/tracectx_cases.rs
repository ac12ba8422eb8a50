//! tracectx against opentelemetry-rust 0.33: extract the incoming context, then inject it
//! unchanged, on the same headers; both sides must produce the same outgoing pairs (checked by
//! checksum), and allocations per operation are counted.
//!
//! The otel side uses a prebuilt `HashMap` carrier (its documented carrier), so its timings exclude
//! building that map; ours reads the `&[(&str, &str)]` headers directly.

use std::hint::black_box;

use tracectx::{
    B3, B3_SINGLE_MAX_LEN, B3MultiBuf, Config, TRACEPARENT_LEN, TraceState, extract_b3,
    extract_traceparent, extract_tracestate_into, write_b3_multi, write_b3_single,
    write_traceparent,
};

use crate::alloc_count::allocations_during;
use crate::harness::{Comparison, compare};
use crate::otel_cases as otel;

/// A cheap, order-independent digest of `(name, value)` pairs for the timed loops: lengths and the
/// last byte of each value. The exact check (FNV over every byte, [`otel::checksum_pairs`]) runs
/// once before timing; inside the loop a byte-serial hash would cost more than the operation
/// being measured.
fn digest<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    pairs.into_iter().fold(0u64, |acc, (name, value)| {
        let last = value.as_bytes().last().copied().unwrap_or(0);
        acc.wrapping_add((name.len() as u64) << 32 | (value.len() as u64) << 8 | u64::from(last))
    })
}

fn digest_map(map: &std::collections::HashMap<String, String>) -> u64 {
    digest(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Operations per sample (one is too short to time).
const BATCH: usize = 1000;

/// W3C: `traceparent` + 2-member `tracestate` in, the same two headers out.
pub fn ours_w3c(headers: &[(&str, &str)]) -> u64 {
    let config = Config::default();
    let Ok(Some(tp)) = extract_traceparent(headers, &config) else {
        return 0;
    };
    let mut tp_out = [0u8; TRACEPARENT_LEN];
    let tp_text = write_traceparent(&tp, &mut tp_out);
    let mut ts_out = [0u8; 512];
    let mut state = TraceState::default();
    let ts_text = match extract_tracestate_into(headers, &config, &mut state) {
        Ok(true) => state.write(&mut ts_out, 512),
        _ => "",
    };
    sum([("traceparent", tp_text), ("tracestate", ts_text)])
}

/// The B3 context otel re-injects: it checks the parent span id on extract and then drops it.
fn extracted_b3(headers: &[(&str, &str)]) -> Option<B3> {
    match extract_b3(headers, &Config::default()) {
        Ok(Some(B3::Context(mut c))) => {
            c.parent_span_id = None;
            Some(B3::Context(c))
        }
        Ok(other) => other,
        Err(_) => None,
    }
}

/// B3 multi headers in, `x-b3-traceid`/`x-b3-spanid`/`x-b3-sampled` out.
pub fn ours_b3_multi(headers: &[(&str, &str)]) -> u64 {
    let Some(b3) = extracted_b3(headers) else {
        return 0;
    };
    let mut buf = B3MultiBuf::default();
    // A fixed array, not a Vec: the measurement must not allocate on our side.
    let mut pairs = [("", ""); 4];
    let mut n = 0;
    for (slot, pair) in pairs.iter_mut().zip(write_b3_multi(&b3, &mut buf)) {
        *slot = pair;
        n += 1;
    }
    sum(pairs[..n].iter().copied())
}

/// Single `b3` in; out, as otel's single-header mode writes it: `b3` plus the multi headers.
pub fn ours_b3_single(headers: &[(&str, &str)]) -> u64 {
    let Some(b3) = extracted_b3(headers) else {
        return 0;
    };
    let mut single = [0u8; B3_SINGLE_MAX_LEN];
    let mut buf = B3MultiBuf::default();
    let text = write_b3_single(&b3, &mut single);
    let mut pairs = [("b3", text), ("", ""), ("", ""), ("", ""), ("", "")];
    let mut n = 1;
    for (slot, pair) in pairs.iter_mut().skip(1).zip(write_b3_multi(&b3, &mut buf)) {
        *slot = pair;
        n += 1;
    }
    sum(pairs[..n].iter().copied())
}

/// Both sides produce the same outgoing pairs, byte for byte (FNV over names and values).
fn exact_check(
    name: &str,
    headers: &[(&str, &str)],
    ours: fn(&[(&str, &str)]) -> u64,
    theirs_out: &std::collections::HashMap<String, String>,
) {
    EXACT.with(|exact| exact.set(true));
    let ours_sum = ours(headers);
    EXACT.with(|exact| exact.set(false));
    assert_eq!(
        ours_sum,
        otel::checksum_map(theirs_out),
        "{name}: outgoing headers differ"
    );
}

thread_local! {
    /// While set, our side reports the exact FNV checksum instead of the cheap digest.
    static EXACT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn sum<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> u64 {
    if EXACT.with(std::cell::Cell::get) {
        otel::checksum_pairs(pairs)
    } else {
        digest(pairs)
    }
}

type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    fn(&[(&str, &str)]) -> u64,
    fn(&std::collections::HashMap<String, String>) -> std::collections::HashMap<String, String>,
    &'static str,
);

/// The three comparisons, each followed by allocations per operation for both sides.
pub fn run(samples: usize) -> (Vec<Comparison>, Vec<String>) {
    let cases: [Case; 3] = [
        (
            "tracectx: W3C traceparent + 2-member tracestate",
            otel::W3C_HEADERS,
            ours_w3c,
            otel::w3c_round_trip,
            "TraceContextPropagator",
        ),
        (
            "tracectx: B3 multi",
            otel::B3_MULTI_HEADERS,
            ours_b3_multi,
            otel::b3_multi_round_trip,
            "zipkin Propagator (multi)",
        ),
        (
            "tracectx: B3 single",
            otel::B3_SINGLE_HEADERS,
            ours_b3_single,
            otel::b3_single_round_trip,
            "zipkin Propagator (single)",
        ),
    ];
    let mut results = Vec::new();
    let mut allocations = Vec::new();
    for (name, headers, ours, theirs, anchor) in cases {
        let carrier = otel::carrier(headers);
        exact_check(name, headers, ours, &theirs(&carrier));
        let theirs_once = || digest_map(&theirs(black_box(&carrier)));
        results.push(compare(
            &format!("{name}, {BATCH}× extract+inject"),
            &format!("otel-rust 0.33 {anchor}"),
            0,
            samples,
            || {
                (0..BATCH)
                    .map(|_| ours(black_box(headers)))
                    .fold(0u64, u64::wrapping_add)
            },
            || {
                (0..BATCH)
                    .map(|_| theirs_once())
                    .fold(0u64, u64::wrapping_add)
            },
        ));
        let (_, ours_allocs) = allocations_during(|| ours(black_box(headers)));
        let (_, theirs_allocs) = allocations_during(theirs_once);
        allocations.push(format!(
            "{name}: allocations per extract+inject: ours {ours_allocs}, otel-rust {theirs_allocs}"
        ));
    }
    (results, allocations)
}
