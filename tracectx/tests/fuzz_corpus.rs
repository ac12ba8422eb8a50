//! Replays the committed cargo-fuzz corpus through the very checks the fuzz targets run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // the checks report failures by panicking

mod traceparent {
    include!("../../fuzz/checks/tracectx_traceparent.rs");
}
mod tracestate {
    include!("../../fuzz/checks/tracectx_tracestate.rs");
}
mod b3 {
    include!("../../fuzz/checks/tracectx_b3.rs");
}
mod baggage {
    include!("../../fuzz/checks/tracectx_baggage.rs");
}
#[cfg(feature = "ot")] // the check round-trips `x-ot-span-context` too
mod envoy {
    include!("../../fuzz/checks/tracectx_envoy.rs");
}

#[test]
fn corpus_tracectx() {
    assert!(testkit::replay_corpus("tracectx_traceparent", traceparent::check) > 0);
    assert!(testkit::replay_corpus("tracectx_tracestate", tracestate::check) > 0);
    assert!(testkit::replay_corpus("tracectx_b3", b3::check) > 0);
    assert!(testkit::replay_corpus("tracectx_baggage", baggage::check) > 0);
    #[cfg(feature = "ot")]
    assert!(testkit::replay_corpus("tracectx_envoy", envoy::check) > 0);
}
