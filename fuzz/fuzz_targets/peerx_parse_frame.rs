#![no_main]
//! Fuzz target: see `checks/peerx_parse_frame.rs` for the properties checked (the same file `cargo test`
//! replays over the committed corpus).

include!("../checks/peerx_parse_frame.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
