//! Zero heap use, counted: extract + inject of W3C (with a 2-member tracestate), B3 multi and B3
//! single, baggage decoding and request-id decisions. (The crate is `no_std` without `alloc`, so
//! it cannot allocate; this measures it anyway, the way the anchor's figures were measured.)

#![allow(clippy::unwrap_used)]
// a panic is how a test reports failure

use testkit::alloc_count::{CountingAlloc, allocations_during};

use tracectx::*;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn extract_and_inject_allocate_nothing() {
    let config = Config::default();
    let w3c = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ("baggage", "userId=Am%C3%A9lie;p=1,serverNode=DF%2028"),
    ];
    let multi = [
        ("X-B3-TraceId", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("X-B3-SpanId", "00f067aa0ba902b7"),
        ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
        ("X-B3-Sampled", "1"),
    ];
    let single = [(
        "b3",
        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90",
    )];
    let mut rng = |buf: &mut [u8]| buf.fill(9);
    let ((), n) = allocations_during(|| {
        let tp = extract_traceparent(&w3c, &config).unwrap().unwrap();
        let state = extract_tracestate(&w3c, &config).unwrap().unwrap();
        let mut out = [0u8; TRACEPARENT_LEN];
        let child = child_traceparent(&tp, &mut rng);
        assert_eq!(
            &write_traceparent(&child, &mut out)[..35],
            "00-4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut ts = [0u8; 512];
        assert_eq!(state.write(&mut ts, 512).len(), 39);
        let mut decoded = [0u8; 64];
        for m in extract_baggage(&w3c, &config) {
            let _ = m.unwrap().decode_value(&mut decoded).unwrap();
        }
        for headers in [&multi[..], &single[..]] {
            let Some(B3::Context(ctx)) = extract_b3(headers, &config).unwrap() else {
                panic!()
            };
            let child = child_b3(&ctx, &mut rng);
            let mut single_out = [0u8; B3_SINGLE_MAX_LEN];
            let _ = write_b3_single(&B3::Context(child), &mut single_out);
            let mut buf = B3MultiBuf::default();
            assert_eq!(write_b3_multi(&B3::Context(child), &mut buf).count(), 4);
        }
        let d = decide(
            Some(b"8cda17a5-eb41-4ced-9843-acc826f95c8c"),
            false,
            false,
            &SamplingConfig::default(),
            &mut rng,
        );
        assert_eq!(d.reason, TraceReason::Sampling);
    });
    assert_eq!(n, 0);
}
