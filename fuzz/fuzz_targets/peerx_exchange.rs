#![no_main]
//! Fuzz target: see `checks/peerx_exchange.rs` for the properties checked (the same file `cargo test`
//! replays over the committed corpus).

include!("../checks/peerx_exchange.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
