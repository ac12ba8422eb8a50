#![no_main]
//! Fuzz target: see `checks/tracectx_b3.rs` for the properties checked (the same file `cargo test`
//! replays over the committed corpus).

include!("../checks/tracectx_b3.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
