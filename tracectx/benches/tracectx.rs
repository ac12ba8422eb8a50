//! Criterion benches: extract + inject per format, on the same headers as the opentelemetry
//! comparison in the `bench` crate.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tracectx::*;

const W3C: [(&str, &str); 2] = [
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
];
const B3_MULTI: [(&str, &str); 4] = [
    ("X-B3-TraceId", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("X-B3-SpanId", "00f067aa0ba902b7"),
    ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
    ("X-B3-Sampled", "1"),
];
const B3_SINGLE: [(&str, &str); 1] = [(
    "b3",
    "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90",
)];

fn w3c(headers: &[(&str, &str)], config: &Config) -> usize {
    let Ok(Some(tp)) = extract_traceparent(headers, config) else {
        return 0;
    };
    let mut out = [0u8; TRACEPARENT_LEN];
    let n = write_traceparent(&tp, &mut out).len();
    let mut ts = [0u8; 512];
    let mut state = TraceState::default();
    n + match extract_tracestate_into(headers, config, &mut state) {
        Ok(true) => state.write(&mut ts, 512).len(),
        _ => 0,
    }
}

fn b3(headers: &[(&str, &str)], config: &Config, single: bool) -> usize {
    let Ok(Some(b3)) = extract_b3(headers, config) else {
        return 0;
    };
    if single {
        let mut out = [0u8; B3_SINGLE_MAX_LEN];
        write_b3_single(&b3, &mut out).len()
    } else {
        let mut buf = B3MultiBuf::default();
        write_b3_multi(&b3, &mut buf).map(|(_, v)| v.len()).sum()
    }
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    let mut g = c.benchmark_group("extract+inject");
    g.bench_function("w3c traceparent + 2-member tracestate", |b| {
        b.iter(|| w3c(black_box(&W3C), &config))
    });
    g.bench_function("b3 multi", |b| {
        b.iter(|| b3(black_box(&B3_MULTI), &config, false))
    });
    g.bench_function("b3 single", |b| {
        b.iter(|| b3(black_box(&B3_SINGLE), &config, true))
    });
    g.bench_function("traceparent parse only", |b| {
        b.iter(|| parse_traceparent(black_box(W3C[0].1.as_bytes()), &config).is_ok())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
