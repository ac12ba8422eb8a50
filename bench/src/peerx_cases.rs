//! peerx against prost-types: decoding the same realistic ~630-byte frame.

use std::hint::black_box;

use prost::Message;

use crate::harness::{Comparison, compare};

const FRAME: &[u8] = include_bytes!("../../peerx/tests/data/02_modern_sender_realistic.bin");

/// How many decodes one sample times (a single one is too short to time).
const BATCH: usize = 1000;

/// Ours: the frame into the borrowed workload view (no allocation); returns the outer key count.
pub fn ours(frame: &[u8]) -> usize {
    let Ok(peerx::Status::Complete { value, .. }) =
        peerx::parse_frame(frame, &peerx::Limits::default())
    else {
        return 0;
    };
    let metadata = value.metadata();
    black_box(metadata.workload());
    metadata.outer().len()
}

/// The anchor: prost-types decoding `Any`, then `Struct` (what a Rust agent does today).
pub fn prost_types(frame: &[u8]) -> usize {
    let Some(payload) = frame.get(8..) else {
        return 0;
    };
    let Ok(any) = prost_types::Any::decode(payload) else {
        return 0;
    };
    prost_types::Struct::decode(any.value.as_slice()).map_or(0, |s| s.fields.len())
}

/// The decode comparison, `BATCH` frames per sample.
pub fn run(samples: usize) -> Vec<Comparison> {
    vec![compare(
        &format!("peerx: {BATCH}× decode {}-byte frame", FRAME.len()),
        "prost-types 0.14 Any + Struct",
        (FRAME.len() * BATCH) as u64,
        samples,
        || (0..BATCH).map(|_| ours(black_box(FRAME))).sum::<usize>(),
        || {
            (0..BATCH)
                .map(|_| prost_types(black_box(FRAME)))
                .sum::<usize>()
        },
    )]
}
