#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Criterion benches: one group per entry point, on the shipped fixtures.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tcpwire::{
    Config, DiagCounter, Event, Limits, RowOptions, StateCounter, TableReader, TcpCounts, parse_row,
};

const TCP_10K: &[u8] = include_bytes!("../tests/data/tcp_10k_seed1");
const TCP6_2K: &[u8] = include_bytes!("../tests/data/tcp6_2k_seed6");
const REAL_TCP: &[u8] = include_bytes!("../tests/data/real_tcp");
const NETLINK: &[u8] = include_bytes!("../tests/data/netlink_dump_v4_v6.bin");

fn read_table(data: &[u8], chunk: usize) -> TcpCounts {
    let mut reader = TableReader::new(Config::default());
    let mut counts = TcpCounts::default();
    for piece in data.chunks(chunk) {
        for event in reader.feed(piece) {
            if let Event::Row(row) = event {
                counts.add_row(&row);
            }
        }
    }
    counts
}

fn count_table(data: &[u8], chunk: usize) -> TcpCounts {
    let mut counter = StateCounter::new(Limits::default());
    data.chunks(chunk).for_each(|piece| counter.feed(piece));
    counter.feed_eof();
    *counter.counts()
}

fn bench_parse_row(c: &mut Criterion) {
    let line = TCP_10K.split(|&b| b == b'\n').nth(500).unwrap_or_default();
    let mut g = c.benchmark_group("parse_row");
    g.throughput(Throughput::Bytes(line.len() as u64));
    g.bench_function("ipv4 full row", |b| {
        b.iter(|| parse_row(black_box(line), RowOptions::default()).map(|r| r.tx_queue()))
    });
    g.finish();
}

fn bench_reader(c: &mut Criterion) {
    let mut g = c.benchmark_group("table_reader");
    for (name, data, chunk) in [
        ("tcp 10k rows, 64 KiB chunks", TCP_10K, 64 * 1024),
        ("tcp 10k rows, 4 KiB chunks", TCP_10K, 4096),
        ("tcp6 2k rows, 4 KiB chunks", TCP6_2K, 4096),
        ("real tcp, 1-byte chunks", REAL_TCP, 1),
    ] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| b.iter(|| read_table(black_box(data), chunk)));
    }
    g.finish();
}

fn bench_counter(c: &mut Criterion) {
    let mut g = c.benchmark_group("state_counter");
    for (name, data, chunk) in [
        ("tcp 10k rows, 64 KiB chunks", TCP_10K, 64 * 1024),
        ("tcp 10k rows, 4 KiB chunks", TCP_10K, 4096),
        ("tcp6 2k rows, 4 KiB chunks", TCP6_2K, 4096),
    ] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| b.iter(|| count_table(black_box(data), chunk)));
    }
    g.finish();
}

fn bench_netlink(c: &mut Criterion) {
    let mut g = c.benchmark_group("diag_counter");
    g.throughput(Throughput::Bytes(NETLINK.len() as u64));
    g.bench_function("3-socket datagram", |b| {
        b.iter(|| {
            let mut counter = DiagCounter::new();
            counter
                .feed_datagram(black_box(NETLINK))
                .map(|_| counter.counts().rows)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_parse_row,
    bench_reader,
    bench_counter,
    bench_netlink
);
criterion_main!(benches);
