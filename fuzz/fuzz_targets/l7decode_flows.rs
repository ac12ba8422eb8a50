#![no_main]
//! Fuzz target: see `checks/l7decode_flows.rs` for the properties checked (the same file `cargo test`
//! replays over the committed corpus).

include!("../checks/l7decode_flows.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
