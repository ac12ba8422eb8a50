#![no_main]
//! Fuzz target: see `checks/tracectx_tracestate.rs` for the properties checked (the same file `cargo test`
//! replays over the committed corpus).

include!("../checks/tracectx_tracestate.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
