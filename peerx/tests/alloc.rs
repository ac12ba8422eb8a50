//! Allocation counts are exact: decoding a realistic frame into the workload view allocates
//! nothing, and passing application bytes through the exchange allocates nothing.

#![allow(clippy::unwrap_used)]
// a panic is how a test reports failure

mod common;

use testkit::alloc_count::{CountingAlloc, allocations_during};

use common::*;
use peerx::{Exchange, Limits, Status, Timestamp, parse_frame};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn decoding_a_realistic_frame_allocates_nothing() {
    let bytes = data("02_modern_sender_realistic.bin");
    let limits = Limits::default();
    let ((), n) = allocations_during(|| {
        let Ok(Status::Complete { value, .. }) = parse_frame(&bytes, &limits) else {
            panic!()
        };
        let w = value.metadata().workload().unwrap();
        assert_eq!(w.app_name, "productpage");
        assert_eq!(value.metadata().id().map(str::len), Some(84));
        assert_eq!(w.labels.len(), 4);
    });
    assert_eq!(n, 0);
}

#[test]
fn passing_application_bytes_allocates_nothing() {
    let frame = data("02_modern_sender_realistic.bin");
    let mut ex = Exchange::new(default_config());
    ex.set_alpn(Timestamp(0), Some(b"istio-peer-exchange"));
    let _ = ex.poll_transmit();
    ex.feed(Timestamp(1), &frame).unwrap();
    while ex.poll_event().is_some() {}
    let app = vec![7u8; 64 * 1024];
    let ((), n) = allocations_during(|| {
        for chunk in app.chunks(4096) {
            assert_eq!(ex.feed(Timestamp(2), chunk).unwrap(), 0..chunk.len());
            assert!(ex.poll_event().is_none());
        }
    });
    assert_eq!(n, 0);
}
