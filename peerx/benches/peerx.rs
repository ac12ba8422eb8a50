//! Criterion benches: frame decoding into the workload view against prost-types, encoding, and the
//! exchange machine's cost per connection.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use peerx::{Config, Exchange, Limits, Metadata, Status, Timestamp, encode_frame, parse_frame};
use prost::Message;

const FRAME: &[u8] = include_bytes!("../tests/data/02_modern_sender_realistic.bin");

fn ours(frame: &[u8]) -> usize {
    let Ok(Status::Complete { value, .. }) = parse_frame(frame, &Limits::default()) else {
        return 0;
    };
    value
        .metadata()
        .workload()
        .map_or(0, |w| w.app_name.len() + w.namespace.len())
}

fn prost_types_decode(frame: &[u8]) -> usize {
    let any = prost_types::Any::decode(&frame[8..]).expect("any");
    let outer = prost_types::Struct::decode(any.value.as_slice()).expect("struct");
    outer.fields.len()
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(FRAME.len() as u64));
    g.bench_function("peerx parse_frame + workload view", |b| {
        b.iter(|| ours(black_box(FRAME)))
    });
    g.bench_function("parse_frame only", |b| {
        b.iter(|| {
            matches!(
                parse_frame(black_box(FRAME), &Limits::default()),
                Ok(Status::Complete { .. })
            )
        })
    });
    let Ok(Status::Complete { value, .. }) = parse_frame(FRAME, &Limits::default()) else {
        return;
    };
    let md = value.metadata();
    g.bench_function("workload only", |b| {
        b.iter(|| black_box(md).workload().map(|w| w.app_name.len()))
    });
    g.bench_function("prost-types Any + Struct", |b| {
        b.iter(|| prost_types_decode(black_box(FRAME)))
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let Ok(Status::Complete { value, .. }) = parse_frame(FRAME, &Limits::default()) else {
        return;
    };
    let metadata = Metadata::from_view(&value.metadata());
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(FRAME.len() as u64));
    g.bench_function("encode_frame", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&metadata), &mut out)
        })
    });
    g.finish();
}

/// Both frames, then 64 KiB of application data through the receiving side in 16 KiB reads.
pub fn exchange_connection(app: &[u8]) -> usize {
    let frame = Bytes::from_static(FRAME);
    let mut ex = Exchange::new(Config::new(frame.clone()));
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    let sent = ex.poll_transmit().map_or(0, |f| f.len());
    let mut passed = 0;
    if let Ok(r) = ex.feed(Timestamp(1), &frame) {
        passed += r.len();
    }
    while ex.poll_event().is_some() {}
    for chunk in app.chunks(16 * 1024) {
        if let Ok(r) = ex.feed(Timestamp(2), chunk) {
            passed += r.len();
        }
    }
    sent + passed
}

fn bench_exchange(c: &mut Criterion) {
    let app = vec![0u8; 64 * 1024];
    let mut g = c.benchmark_group("exchange");
    g.throughput(Throughput::Bytes((app.len() + 2 * FRAME.len()) as u64));
    g.bench_function("both frames + 64 KiB pass-through", |b| {
        b.iter(|| exchange_connection(black_box(&app)))
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode, bench_exchange);
criterion_main!(benches);
