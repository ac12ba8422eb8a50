#![no_main]
//! Fuzz target: see `checks/tcpwire_sockstat.rs` for the properties checked (the same file `cargo test`
//! replays over the committed corpus).

include!("../checks/tcpwire_sockstat.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
